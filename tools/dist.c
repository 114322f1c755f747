/* dist.c - data-parallel training in the cltrain tool over MPI through libcltrain_mpi (see dist.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dist.h"

int dist_rank = 0, dist_size = 1;

#ifdef CLT_HAVE_MPI
#include "cltrain_mpi.h"

static int mpi_on, agreed_stop;

int dist_init(int *argc, char ***argv)
{
    /* Only under a launcher: MPI_Init of a lone process (singleton) is slow and may warn. */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") && !getenv("PMIX_RANK")) return 0;
    /* Not argc/argv: Open MPI would take options of ours (--tune) for its own. */
    (void)argc, (void)argv;
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        fprintf(stderr, "cltrain: MPI_Init failed\n");
        return -1;
    }
    mpi_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &dist_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &dist_size);
    if (dist_rank > 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "cltrain: rank %d: cannot silence stdout\n", dist_rank);
        return -1;
    }
    return 0;
}

int dist_exit(int rc)
{
    if (!mpi_on) return rc;
    fflush(stdout);
    fflush(stderr);
    if (rc != 2) dist_fail(rc); /* bad usage: every rank saw the same arguments and stopped alike */
    MPI_Finalize();
    return rc;
}

static int matches(const clt_device_info *di, const char *spec)
{
    if (!spec) return di->is_gpu;
    const char *hay[3] = {di->name, di->vendor, di->platform_name};
    size_t n = strlen(spec);
    for (int h = 0; h < 3; h++)
        for (const char *p = hay[h]; *p; p++)
            if (strncasecmp(p, spec, n) == 0) return 1;
    return 0;
}

const char *dist_device(const char *spec, char *buf, size_t len)
{
    if (spec && strchr(spec, ',')) {
        const char *p = spec;
        for (int r = 0; r < dist_rank && p; r++) p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
        if (!p || !*p || *p == ',') {
            fprintf(stderr, "cltrain: rank %d: --device %s lists no device for this rank (one per rank, comma-"
                    "separated)\n", dist_rank, spec);
            return NULL;
        }
        size_t n = strcspn(p, ",");
        snprintf(buf, len, "%.*s", (int)n, p);
        return buf;
    }
    if (dist_size == 1) return spec;
    if (!spec || !*spec) spec = getenv("CLTRAIN_DEVICE");
    if (spec && !*spec) spec = NULL;
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!lr) lr = getenv("MPI_LOCALRANKID");
    int local = lr ? atoi(lr) : dist_rank, count = 0;
    /* A spec that is a plain index ("1", "0:1") means that device on every rank. */
    if (spec && *spec && strspn(spec, "0123456789:") == strlen(spec)) return spec;
    if (clt_device_count(&count) < 0 || count == 0) return spec;
    int *idx = calloc((size_t)count, sizeof *idx), n = 0;
    if (!idx) return spec;
    for (int all = 0; all < (spec ? 1 : 2) && n == 0; all++)
        for (int i = 0; i < count; i++) {
            clt_device_info di;
            if (clt_device_get_info(i, &di) == 0 && (all || matches(&di, spec))) idx[n++] = i;
        }
    /* Nothing matches a spec: the context names the problem. Without a spec and no GPU: every device. */
    if (n == 0) {
        free(idx);
        return spec;
    }
    int pick = idx[local % n];
    free(idx);
    snprintf(buf, len, "%d", pick);
    return buf;
}

int dist_agree(int why, int *first)
{
    if (!mpi_on || dist_size == 1) {
        if (first) *first = why ? 0 : -1;
        if (why) agreed_stop = 1;
        return why;
    }
    /* One reduction: the reason in the high bits, the inverted rank in the low ones. */
    long long mine = why ? (long long)why << 32 | (0xFFFFFFFFll - dist_rank) : 0, top = 0;
    if (MPI_Allreduce(&mine, &top, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
        fprintf(stderr, "cltrain: rank %d: the error agreement failed\n", dist_rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int r = (int)(top >> 32);
    if (first) *first = r ? (int)(0xFFFFFFFFll - (top & 0xFFFFFFFFll)) : -1;
    if (r) agreed_stop = 1;
    return r;
}

void dist_fail(int rc)
{
    if (!mpi_on || dist_size == 1 || rc == 0 || agreed_stop) return;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, rc);
}

int dist_bcast(void *p, size_t bytes)
{
    if (!mpi_on) return 0;
    return MPI_Bcast(p, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
}

int dist_sum_f64(double *v, int n)
{
    if (!mpi_on) return 0;
    return MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
}

int dist_sum_i64(int64_t *v, int n)
{
    if (!mpi_on) return 0;
    return MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
}

void dist_minmax(long long v, long long *lo, long long *hi)
{
    *lo = *hi = v;
    if (!mpi_on) return;
    MPI_Allreduce(&v, lo, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&v, hi, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
}

int dist_attach(clt_graph *g, dist_graph **out)
{
    *out = NULL;
    if (dist_size == 1) return 0;
    int st = clt_mpi_create(g, MPI_COMM_WORLD, NULL, out);
    if (st == 0) st = clt_mpi_broadcast(*out, 0);
    if (st < 0) fprintf(stderr, "cltrain: rank %d: %s\n", dist_rank, clt_mpi_errmsg(*out));
    return st < 0 ? -1 : 0;
}

int dist_reduce(dist_graph *d, int local_rows, int global_rows)
{
    if (!d) return 0;
    if (clt_mpi_allreduce_grads(d, (float)local_rows / (float)global_rows) < 0) {
        fprintf(stderr, "cltrain: rank %d: gradient reduction: %s\n", dist_rank, clt_mpi_errmsg(d));
        return -1;
    }
    return 0;
}

int dist_sync_buffers(dist_graph *d)
{
    if (!d) return 0;
    if (clt_mpi_average_buffers(d) < 0) {
        fprintf(stderr, "cltrain: rank %d: averaging batch-norm statistics: %s\n", dist_rank, clt_mpi_errmsg(d));
        return -1;
    }
    return 0;
}

double dist_reduce_ms(dist_graph *d, uint64_t *count)
{
    clt_mpi_stats st = {0};
    if (d) clt_mpi_get_stats(d, &st);
    if (count) *count = st.reductions;
    return st.comm_ms;
}

void dist_detach(dist_graph *d) { clt_mpi_destroy(d); }

#else /* one rank */

int dist_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}
int dist_exit(int rc) { return rc; }
const char *dist_device(const char *spec, char *buf, size_t len)
{
    (void)buf, (void)len;
    if (spec && strchr(spec, ',')) {
        fprintf(stderr, "cltrain: --device %s lists several devices, but this cltrain was built without MPI\n", spec);
        return NULL;
    }
    return spec;
}
int dist_agree(int why, int *first)
{
    if (first) *first = why ? 0 : -1;
    return why;
}
void dist_fail(int rc) { (void)rc; }
int dist_bcast(void *p, size_t bytes) { return (void)p, (void)bytes, 0; }
int dist_sum_f64(double *v, int n) { return (void)v, (void)n, 0; }
int dist_sum_i64(int64_t *v, int n) { return (void)v, (void)n, 0; }
void dist_minmax(long long v, long long *lo, long long *hi) { *lo = *hi = v; }
int dist_attach(clt_graph *g, dist_graph **out) { return (void)g, *out = NULL, 0; }
int dist_reduce(dist_graph *d, int l, int gr) { return (void)d, (void)l, (void)gr, 0; }
int dist_sync_buffers(dist_graph *d) { return (void)d, 0; }
double dist_reduce_ms(dist_graph *d, uint64_t *count) { return (void)d, (count && (*count = 0)), 0; }
void dist_detach(dist_graph *d) { (void)d; }
#endif

void dist_split(int total, int *count, int *offset)
{
    int base = total / dist_size, extra = total % dist_size;
    *count = base + (dist_rank < extra);
    *offset = dist_rank * base + (dist_rank < extra ? dist_rank : extra);
}

int dist_step(int st, int interrupted, dist_graph *d, int local_rows, int global_rows)
{
    if (dist_size == 1) return 0;
    int who, why = dist_agree(st < 0 ? 2 : interrupted ? 1 : 0, &who);
    if (why == 2 && st >= 0) {
        fprintf(stderr, "cltrain: rank %d: stopping: rank %d failed (its message is above)\n", dist_rank, who);
        return -1;
    }
    if (why) return st < 0 ? 0 : 1;
    return dist_reduce(d, local_rows, global_rows) < 0 ? -1 : 0;
}

int dist_plan(int B, int *tail, int *bl, int *boff, int *tl, int *toff)
{
    *bl = B, *boff = 0, *tl = *tail, *toff = 0;
    if (dist_size == 1) return 0;
    if (B < 2 * dist_size) {
        fprintf(stderr, "cltrain: --batch %d over %d ranks leaves a rank fewer than 2 images per step (batch "
                "statistics need 2); use --batch %d or more (--batch is the global batch)\n", B, dist_size,
                2 * dist_size);
        return -1;
    }
    dist_split(B, bl, boff);
    if (*tail && *tail < 2 * dist_size) {
        if (dist_rank == 0)
            printf("note: the last %d images do not fill a batch and are too few for %d ranks; they are skipped "
                   "each epoch\n", *tail, dist_size);
        *tail = 0;
    }
    *tl = 0;
    if (*tail) dist_split(*tail, tl, toff);
    return 0;
}
