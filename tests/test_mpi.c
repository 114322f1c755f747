/* test_mpi.c - data-parallel training over MPI (run by tests/mpi_run.sh under mpirun -np 2):
 *   equiv        the initial broadcast overwrites differently seeded ranks; parameter checksums are identical
 *                on every rank after every step; K steps of the ranks at global batch B (split unevenly, 4+3)
 *                equal K steps of one graph at batch B within float tolerance; the gradient is cut into
 *                several buckets; batch-norm running statistics are averaged over the ranks.
 *   fail-agree   rank 1 fails to open its data file; the error agreement ends every rank with the message.
 *   fail-abort   rank 1 fails while rank 0 waits in a gradient reduction; MPI_Abort after the message ends the
 *                job (the runner bounds the time).
 *   bench BYTES  (not a test; tools/bench_mpi.sh) the median time of MPI_Allreduce of BYTES of floats after a
 *                barrier over 50 tries: the transport alone, without waiting for a slower rank's backward pass. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain_mpi.h"
#include "testutil.h"

#define GB 7    /* global batch: 4 + 3 rows on two ranks */
#define K 4     /* steps */
#define C 1
#define HW 4
#define CLASSES 3
#define LR 0.1f

static int rank, nranks;

/* Exact bit checksum of a graph's parameter arena (FNV-1a over the floats' bytes). */
static uint64_t checksum(clt_graph *g)
{
    cl_mem m;
    size_t off, n;
    cl_command_queue q;
    clt_context_cl(clt_graph_context(g), NULL, NULL, &q);
    if (clt_graph_param_buffer(g, &m, &off, &n) < 0) return 0;
    float *h = malloc(n * sizeof *h);
    if (!h || clEnqueueReadBuffer(q, m, CL_TRUE, off, n * sizeof *h, h, 0, NULL, NULL) != CL_SUCCESS) {
        free(h);
        return 0;
    }
    uint64_t s = 1469598103934665603ull;
    const unsigned char *b = (const unsigned char *)h;
    for (size_t i = 0; i < n * sizeof *h; i++) s = (s ^ b[i]) * 1099511628211ull;
    free(h);
    return s;
}

/* All ranks' values of one uint64; 1 if they are all equal. */
static int all_equal(uint64_t v, uint64_t *all)
{
    MPI_Allgather(&v, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int r = 1; r < nranks; r++)
        if (all[r] != all[0]) return 0;
    return 1;
}

typedef struct net {
    clt_graph *g;
    clt_tensor *x, *y, *logits, *loss;
} net;

static int build(clt_context *ctx, const char *text, int batch, uint64_t seed, net *n)
{
    clt_model *m = NULL;
    int xs[4] = {batch, C, HW, HW}, ys[1] = {batch};
    int ok = TU_OK(ctx, clt_model_parse(text, "test", &m) < 0 ? CLT_ERR_INVALID : 0) &&
             TU_OK(ctx, clt_graph_create(ctx, &n->g)) && TU_OK(ctx, clt_input(n->g, "x", 4, xs, &n->x)) &&
             TU_OK(ctx, clt_model_build(n->g, m, n->x, CLASSES, &n->logits)) &&
             TU_OK(ctx, clt_input(n->g, "labels", 1, ys, &n->y)) &&
             TU_OK(ctx, clt_softmax_cross_entropy(n->g, n->logits, n->y, 0.0f, &n->loss));
    clt_model_destroy(m);
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_SGD);
    cs.optimizer.momentum = 0.9f; /* slot 0 in use: the broadcast carries it */
    cs.seed = seed;
    return ok && TU_OK(ctx, clt_graph_compile(n->g, &cs));
}

/* Rows [row0, row0+rows) of step s's global batch: the same numbers whichever rank asks. */
static void batch_rows(int s, int row0, int rows, float *x, float *y)
{
    for (int r = 0; r < rows; r++) {
        tu_rng g = {.s = 0x9E3779B97F4A7C15ull * (uint64_t)(s * 1000 + row0 + r + 1)};
        tu_fill_uniform(&g, x + (size_t)r * C * HW * HW, C * HW * HW, -1, 1);
        y[r] = (float)((s + row0 + r) % CLASSES);
    }
}

static int train_step(clt_context *ctx, net *n, int s, int row0, int rows, clt_mpi *d)
{
    float x[GB * C * HW * HW], y[GB];
    batch_rows(s, row0, rows, x, y);
    int ok = TU_OK(ctx, clt_tensor_write(n->g, n->x, x, (size_t)rows * C * HW * HW)) &&
             TU_OK(ctx, clt_tensor_write(n->g, n->y, y, (size_t)rows)) && TU_OK(ctx, clt_graph_forward(n->g, 1)) &&
             TU_OK(ctx, clt_graph_backward(n->g, n->loss));
    if (ok && d) {
        int st = clt_mpi_allreduce_grads(d, (float)rows / GB);
        TU_CHECK(st == 0, "clt_mpi_allreduce_grads: %s", clt_mpi_errmsg(d));
        ok = st == 0;
    }
    return ok && TU_OK(ctx, clt_graph_step(n->g, LR));
}

static void read_params(net *n, float *out, size_t cap)
{
    cl_mem m;
    size_t off, cnt;
    cl_command_queue q;
    clt_context_cl(clt_graph_context(n->g), NULL, NULL, &q);
    clt_graph_param_buffer(n->g, &m, &off, &cnt);
    TU_CHECK(cnt <= cap, "parameter arena of %zu floats", cnt);
    clEnqueueReadBuffer(q, m, CL_TRUE, off, cnt * sizeof(float), out, 0, NULL, NULL);
}

static void test_equiv(clt_context *ctx)
{
    const char *text = "flatten\ndense 8\nrelu\ndense classes\n";
    int rows = GB / nranks + (rank < GB % nranks), row0 = 0;
    for (int r = 0; r < rank; r++) row0 += GB / nranks + (r < GB % nranks);
    net n = {0}, ref = {0};
    if (!build(ctx, text, rows, 11 + 1000 * (uint64_t)rank, &n)) return;
    uint64_t all[64];
    uint64_t before = checksum(n.g);
    TU_CHECK(!all_equal(before, all), "differently seeded ranks start with the same parameters: the broadcast "
             "check would prove nothing");
    uint64_t root_before = all[0];
    clt_mpi_settings ms;
    clt_mpi_default_settings(&ms);
    ms.bucket_bytes = 64; /* several buckets even for this small model */
    clt_mpi *d = NULL;
    int st = clt_mpi_create(n.g, MPI_COMM_WORLD, &ms, &d);
    TU_CHECK(st == 0, "clt_mpi_create: %s", clt_mpi_errmsg(d));
    if (st == 0) {
        st = clt_mpi_broadcast(d, 0);
        TU_CHECK(st == 0, "clt_mpi_broadcast: %s", clt_mpi_errmsg(d));
        uint64_t after = checksum(n.g);
        TU_CHECK(all_equal(after, all) && all[0] == root_before,
                 "after the broadcast rank %d holds checksum %016llx, rank 0 had %016llx", rank,
                 (unsigned long long)after, (unsigned long long)root_before);
        clt_mpi_stats sts;
        clt_mpi_get_stats(d, &sts);
        TU_CHECK(sts.buckets > 2, "only %d gradient buckets at 64 bytes per bucket", sts.buckets);
        if (rank == 0) printf("     %d ranks (rank 0: %d of %d rows), %d gradient buckets over %zu bytes\n", nranks, rows, GB,
                              sts.buckets, sts.grad_bytes);
    }
    if (rank == 0) build(ctx, text, GB, 11, &ref);
    float init[4096], got[4096], want[4096];
    if (rank == 0) read_params(&ref, init, 4096);
    for (int s = 0; s < K && st == 0; s++) {
        if (!train_step(ctx, &n, s, row0, rows, d)) break;
        if (rank == 0 && !train_step(ctx, &ref, s, 0, GB, NULL)) break;
        uint64_t c = checksum(n.g);
        TU_CHECK(all_equal(c, all), "step %d: rank %d's parameter checksum %016llx differs from rank 0's %016llx", s,
                 rank, (unsigned long long)c, (unsigned long long)all[0]);
    }
    if (rank == 0 && ref.g) {
        size_t cnt;
        clt_graph_param_buffer(n.g, NULL, NULL, &cnt);
        read_params(&n, got, 4096);
        read_params(&ref, want, 4096);
        double worst = 0, moved = 0;
        size_t bad = 0;
        for (size_t i = 0; i < cnt; i++) {
            double e = fabs((double)got[i] - want[i]);
            if (e > 1e-5 + 1e-4 * fabs(want[i])) bad++;
            if (e > worst) worst = e;
            if (fabs((double)want[i] - init[i]) > moved) moved = fabs((double)want[i] - init[i]);
        }
        TU_CHECK(bad == 0, "%zu of %zu parameters differ from one rank at batch %d after %d steps (worst %.3g)", bad,
                 cnt, GB, K, worst);
        TU_CHECK(moved > 1e-3, "training moved no parameter by more than %.3g: the comparison proves nothing", moved);
        printf("     %d steps on %d ranks vs 1 rank at batch %d: worst difference %.3g (parameters moved up to %.3g)\n",
               K, nranks, GB, worst, moved);
    }
    clt_mpi_destroy(d);
    clt_graph_destroy(ref.g);
    clt_graph_destroy(n.g);
}

/* Running statistics after one step on rank-dependent data differ; averaging makes them the ranks' mean. */
static void test_batchnorm(clt_context *ctx)
{
    net n = {0};
    if (!build(ctx, "conv 2 3 pad=same bias=0\nbatchnorm\nrelu\nflatten\ndense classes\n", 4, 5, &n)) return;
    clt_mpi *d = NULL;
    int st = clt_mpi_create(n.g, MPI_COMM_WORLD, NULL, &d);
    TU_CHECK(st == 0, "clt_mpi_create: %s", clt_mpi_errmsg(d));
    if (st == 0) train_step(ctx, &n, 100 + rank, 0, 4, d);
    cl_mem m;
    size_t off, cnt;
    cl_command_queue q;
    clt_context_cl(ctx, NULL, NULL, &q);
    clt_graph_buffer_buffer(n.g, &m, &off, &cnt);
    float pre[256], post[256], sum[256];
    TU_CHECK(cnt > 0 && cnt <= 256, "buffer arena of %zu floats", cnt);
    if (st == 0 && cnt > 0 && cnt <= 256) {
        clEnqueueReadBuffer(q, m, CL_TRUE, off, cnt * sizeof(float), pre, 0, NULL, NULL);
        MPI_Allreduce(pre, sum, (int)cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        st = clt_mpi_average_buffers(d);
        TU_CHECK(st == 0, "clt_mpi_average_buffers: %s", clt_mpi_errmsg(d));
        clEnqueueReadBuffer(q, m, CL_TRUE, off, cnt * sizeof(float), post, 0, NULL, NULL);
        double spread = 0;
        size_t bad = 0;
        for (size_t i = 0; i < cnt; i++) {
            double mean = sum[i] / nranks;
            if (fabs(post[i] - mean) > 1e-6 + 1e-5 * fabs(mean)) bad++;
            spread = fmax(spread, fabs(pre[i] - mean));
        }
        TU_CHECK(bad == 0, "%zu of %zu running statistics are not the mean over the ranks", bad, cnt);
        TU_CHECK(spread > 1e-6, "running statistics were equal on every rank before averaging: nothing was tested");
        uint64_t all[64], h = 1469598103934665603ull;
        for (size_t i = 0; i < cnt * sizeof(float); i++) h = (h ^ ((unsigned char *)post)[i]) * 1099511628211ull;
        TU_CHECK(all_equal(h, all), "averaged running statistics differ between the ranks");
    }
    clt_mpi_destroy(d);
    clt_graph_destroy(n.g);
}

/* A rank whose data file is missing reports it through the agreement; every rank stops with the message. */
static int test_fail_agree(clt_context *ctx)
{
    net n = {0};
    if (!build(ctx, "flatten\ndense classes\n", 2, 1, &n)) return 1;
    clt_mpi *d = NULL;
    if (clt_mpi_create(n.g, MPI_COMM_WORLD, NULL, &d) < 0) return fprintf(stderr, "%s\n", clt_mpi_errmsg(d)), 1;
    char msg[256] = "";
    for (int s = 0; s < 3; s++) {
        int failed = 0;
        if (rank == 1 && s == 1) {
            const char *path = "/nonexistent/cltrain-test/train-images.bin";
            FILE *f = fopen(path, "rb");
            if (!f) {
                snprintf(msg, sizeof msg, "rank 1: cannot open %s: %s", path, strerror(errno));
                failed = 1;
            } else
                fclose(f);
        }
        if (failed) fprintf(stderr, "%s\n", msg);
        int nf = 0, first = -1;
        if (clt_mpi_agree(d, failed, &nf, &first) < 0) return fprintf(stderr, "%s\n", clt_mpi_errmsg(d)), 1;
        if (nf) {
            fprintf(stderr, "rank %d: stopping at step %d: %d rank(s) failed, first rank %d\n", rank, s, nf, first);
            clt_mpi_destroy(d);
            clt_graph_destroy(n.g);
            return 1;
        }
        if (!train_step(ctx, &n, s, 0, 2, d)) return 1;
    }
    fprintf(stderr, "rank %d: no failure was reported\n", rank);
    return 0;
}

/* Rank 1 fails between backward and reduction; rank 0 is already waiting in the reduction. */
static int test_fail_abort(clt_context *ctx)
{
    net n = {0};
    if (!build(ctx, "flatten\ndense classes\n", 2, 1, &n)) return 1;
    clt_mpi *d = NULL;
    if (clt_mpi_create(n.g, MPI_COMM_WORLD, NULL, &d) < 0) return fprintf(stderr, "%s\n", clt_mpi_errmsg(d)), 1;
    for (int s = 0; s < 3; s++) {
        if (rank == 1 && s == 1) {
            fprintf(stderr, "rank 1: injected device failure at step 1; aborting the job\n");
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        if (!train_step(ctx, &n, s, 0, 2, d)) return 1;
    }
    fprintf(stderr, "rank %d: finished although rank 1 failed\n", rank);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_allreduce(size_t bytes)
{
    size_t n = bytes / sizeof(float) ? bytes / sizeof(float) : 1;
    float *v = calloc(n, sizeof *v);
    double t[50];
    if (!v) return 1;
    for (int i = 0; i < 50; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        t[i] = (MPI_Wtime() - t0) * 1e3;
    }
    qsort(t, 50, sizeof *t, cmp_double);
    if (rank == 0) printf("allreduce %zu bytes on %d ranks: median %.3f ms (min %.3f, max %.3f)\n", n * sizeof(float),
                          nranks, (t[24] + t[25]) / 2, t[0], t[49]);
    free(v);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    const char *mode = argc > 1 ? argv[1] : "equiv";
    if (nranks < 2 || nranks > 64) {
        fprintf(stderr, "test_mpi: run with 2 to 64 ranks (got %d)\n", nranks);
        MPI_Finalize();
        return 1;
    }
    if (!strcmp(mode, "bench") && argc > 2) {
        int rc = bench_allreduce((size_t)strtoull(argv[2], NULL, 10));
        MPI_Finalize();
        return rc;
    }
    clt_context *ctx = tu_context();
    int ok = ctx != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    int rc = 1;
    if (all_ok) {
        if (!strcmp(mode, "equiv")) {
            test_equiv(ctx);
            test_batchnorm(ctx);
            int f = tu_failures, any = 0;
            MPI_Allreduce(&f, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
            rc = any ? 1 : 0;
            if (rank == 0) tu_finish("mpi");
        } else if (!strcmp(mode, "fail-agree"))
            rc = test_fail_agree(ctx);
        else if (!strcmp(mode, "fail-abort"))
            rc = test_fail_abort(ctx);
        else
            fprintf(stderr, "test_mpi: unknown mode '%s'\n", mode);
    }
    clt_context_destroy(ctx);
    MPI_Finalize();
    return rc;
}
