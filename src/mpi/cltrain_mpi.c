/* cltrain_mpi.c - data-parallel training over MPI on the public arena seam of <cltrain.h> (see cltrain_mpi.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cltrain_mpi.h"

typedef struct bucket {
    size_t lo, n; /* floats [lo, lo+n) of the gradient arena */
} bucket;

struct clt_mpi {
    clt_graph *g;
    MPI_Comm comm;
    int rank, size, comm_ok;
    cl_command_queue q;
    cl_mem grad, param, buf, slot[2], stage_mem;
    size_t grad_off, param_off, buf_off, slot_off[2];
    size_t nparam, nbuf, nslot[2];
    float *stage; /* host-mapped, max(nparam, nbuf) floats, mapped for d's whole life */
    int nbuckets;
    bucket *bk;       /* backward order */
    cl_event *ev;     /* per bucket: its device->host copy */
    MPI_Request *req; /* per bucket: its reduction */
    float weight;
    int begun;
    double t_begin;
    clt_mpi_stats st;
    char err[1024];
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(clt_mpi *d, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, sizeof d->err, fmt, ap);
    va_end(ap);
    return status;
}

/* An MPI call's result: the error string of MPI in the message. */
static int mpi_check(clt_mpi *d, int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return CLT_OK;
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", rc);
    return fail(d, CLT_ERR_IO, "%s failed on rank %d: %s", what, d->rank, s);
}

static int cl_check(clt_mpi *d, cl_int rc, const char *what)
{
    if (rc == CL_SUCCESS) return CLT_OK;
    return fail(d, CLT_ERR_OPENCL, "%s failed on rank %d (OpenCL error %d)", what, d->rank, (int)rc);
}

#define TRY(x)                  \
    do {                        \
        int st_ = (x);          \
        if (st_ < 0) return st_; \
    } while (0)

void clt_mpi_default_settings(clt_mpi_settings *s)
{
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->bucket_bytes = 4u << 20;
}

const char *clt_mpi_errmsg(const clt_mpi *d) { return d ? d->err : "clt_mpi: no handle (out of host memory)"; }
int clt_mpi_rank(const clt_mpi *d) { return d ? d->rank : -1; }
int clt_mpi_size(const clt_mpi *d) { return d ? d->size : 0; }

/* Buckets of about `bytes` at tensor boundaries, walking the parameters in backward order from the arena's end
 * (the tail padding goes with the first bucket, the head with the last). */
static int plan_buckets(clt_mpi *d, size_t bytes)
{
    int np = clt_graph_param_ranges(d->g);
    size_t per = bytes / sizeof(float) ? bytes / sizeof(float) : 1;
    d->bk = calloc((size_t)np + 1, sizeof *d->bk);
    if (!d->bk) return fail(d, CLT_ERR_NOMEM, "out of host memory");
    size_t hi = d->nparam;
    int nb = 0;
    for (int i = 0; i < np; i++) {
        size_t off, cnt;
        if (clt_graph_param_range(d->g, i, &off, &cnt, NULL) < 0)
            return fail(d, CLT_ERR_STATE, "%s", clt_errmsg(clt_graph_context(d->g)));
        int last = i == np - 1;
        if (last) off = 0;
        if (hi - off >= per || last) {
            /* MPI counts in int. */
            if (hi - off > (size_t)INT32_MAX)
                return fail(d, CLT_ERR_UNSUPPORTED, "a gradient bucket holds over 2^31 floats; use smaller buckets");
            d->bk[nb].lo = off;
            d->bk[nb].n = hi - off;
            nb++;
            hi = off;
        }
    }
    if (np == 0 && d->nparam) d->bk[nb++] = (bucket){0, d->nparam};
    d->nbuckets = nb;
    d->ev = calloc((size_t)nb + 1, sizeof *d->ev);
    d->req = calloc((size_t)nb + 1, sizeof *d->req);
    if (!d->ev || !d->req) return fail(d, CLT_ERR_NOMEM, "out of host memory");
    for (int b = 0; b < nb; b++) d->req[b] = MPI_REQUEST_NULL;
    return CLT_OK;
}

static int setup(clt_mpi *d, MPI_Comm comm, const clt_mpi_settings *s)
{
    clt_context *ctx = clt_graph_context(d->g);
    cl_context clc;
    cl_device_id dev;
    TRY(mpi_check(d, MPI_Comm_dup(comm, &d->comm), "MPI_Comm_dup"));
    d->comm_ok = 1;
    TRY(mpi_check(d, MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler"));
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    if (clt_context_cl(ctx, &clc, &dev, &d->q) < 0 || clt_graph_grad_buffer(d->g, &d->grad, &d->grad_off, &d->nparam) < 0 ||
        clt_graph_param_buffer(d->g, &d->param, &d->param_off, NULL) < 0 ||
        clt_graph_buffer_buffer(d->g, &d->buf, &d->buf_off, &d->nbuf) < 0 ||
        clt_graph_slot_buffer(d->g, 0, &d->slot[0], &d->slot_off[0], &d->nslot[0]) < 0 ||
        clt_graph_slot_buffer(d->g, 1, &d->slot[1], &d->slot_off[1], &d->nslot[1]) < 0)
        return fail(d, CLT_ERR_STATE, "clt_mpi_create: %s", clt_errmsg(ctx));
    /* Different models on different ranks would reduce garbage: compare the arena sizes first. */
    unsigned long long mine[2] = {d->nparam, d->nbuf}, lo[2], hi[2];
    TRY(mpi_check(d, MPI_Allreduce(mine, lo, 2, MPI_UNSIGNED_LONG_LONG, MPI_MIN, d->comm), "MPI_Allreduce"));
    TRY(mpi_check(d, MPI_Allreduce(mine, hi, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, d->comm), "MPI_Allreduce"));
    if (lo[0] != hi[0] || lo[1] != hi[1])
        return fail(d, CLT_ERR_INVALID, "clt_mpi_create: the ranks' graphs differ (parameter arenas of %llu to %llu "
                    "floats, buffer arenas of %llu to %llu): every rank must build the same model", lo[0], hi[0],
                    lo[1], hi[1]);
    size_t ns = d->nparam > d->nbuf ? d->nparam : d->nbuf;
    if (ns == 0) ns = 1;
    cl_int err;
    d->stage_mem = clCreateBuffer(clc, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, ns * sizeof(float), NULL, &err);
    TRY(cl_check(d, err, "allocating the host-mapped staging buffer"));
    d->stage = clEnqueueMapBuffer(d->q, d->stage_mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, ns * sizeof(float), 0,
                                  NULL, NULL, &err);
    if (err != CL_SUCCESS) d->stage = NULL;
    TRY(cl_check(d, err, "mapping the staging buffer"));
    TRY(plan_buckets(d, s->bucket_bytes));
    d->st.buckets = d->nbuckets;
    d->st.grad_bytes = d->nparam * sizeof(float);
    return CLT_OK;
}

int clt_mpi_create(clt_graph *g, MPI_Comm comm, const clt_mpi_settings *s, clt_mpi **out)
{
    if (!out) return CLT_ERR_INVALID;
    *out = calloc(1, sizeof **out);
    clt_mpi *d = *out;
    if (!d) return CLT_ERR_NOMEM;
    d->comm = MPI_COMM_NULL;
    d->rank = -1;
    if (!g) return fail(d, CLT_ERR_INVALID, "clt_mpi_create: g is NULL");
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) return fail(d, CLT_ERR_STATE, "clt_mpi_create: MPI is not initialized (call MPI_Init first)");
    d->g = g;
    clt_mpi_settings defs;
    clt_mpi_default_settings(&defs);
    return setup(d, comm, s ? s : &defs);
}

void clt_mpi_destroy(clt_mpi *d)
{
    if (!d) return;
    if (d->q) clFinish(d->q);
    for (int b = 0; b < d->nbuckets; b++) {
        if (d->ev && d->ev[b]) clReleaseEvent(d->ev[b]);
        if (d->req && d->req[b] != MPI_REQUEST_NULL) MPI_Request_free(&d->req[b]);
    }
    if (d->stage) {
        clEnqueueUnmapMemObject(d->q, d->stage_mem, d->stage, 0, NULL, NULL);
        clFinish(d->q);
    }
    if (d->stage_mem) clReleaseMemObject(d->stage_mem);
    int fin = 0;
    MPI_Finalized(&fin);
    if (d->comm_ok && !fin) MPI_Comm_free(&d->comm);
    free(d->bk);
    free(d->ev);
    free(d->req);
    free(d);
}

/* Broadcasts `n` floats of one arena through the staging buffer. */
static int bcast_arena(clt_mpi *d, cl_mem m, size_t off, size_t n, int root, const char *what)
{
    if (!m || n == 0) return CLT_OK;
    if (n > (size_t)INT32_MAX) return fail(d, CLT_ERR_UNSUPPORTED, "%s: over 2^31 floats", what);
    if (d->rank == root)
        TRY(cl_check(d, clEnqueueReadBuffer(d->q, m, CL_TRUE, off, n * sizeof(float), d->stage, 0, NULL, NULL), what));
    TRY(mpi_check(d, MPI_Bcast(d->stage, (int)n, MPI_FLOAT, root, d->comm), "MPI_Bcast"));
    if (d->rank != root)
        TRY(cl_check(d, clEnqueueWriteBuffer(d->q, m, CL_TRUE, off, n * sizeof(float), d->stage, 0, NULL, NULL), what));
    return CLT_OK;
}

int clt_mpi_broadcast(clt_mpi *d, int root)
{
    if (!d || !d->stage) return CLT_ERR_STATE;
    if (root < 0 || root >= d->size)
        return fail(d, CLT_ERR_INVALID, "clt_mpi_broadcast: root %d (the communicator has %d ranks)", root, d->size);
    if (d->begun) return fail(d, CLT_ERR_STATE, "clt_mpi_broadcast: a gradient reduction is under way");
    TRY(cl_check(d, clFinish(d->q), "clFinish"));
    TRY(bcast_arena(d, d->param, d->param_off, d->nparam, root, "broadcasting the parameters"));
    TRY(bcast_arena(d, d->buf, d->buf_off, d->nbuf, root, "broadcasting the buffers"));
    for (int s = 0; s < 2; s++)
        TRY(bcast_arena(d, d->slot[s], d->slot_off[s], d->nslot[s], root, "broadcasting the optimizer state"));
    uint64_t c[2] = {0, 0};
    clt_graph_get_counters(d->g, &c[0], &c[1]);
    TRY(mpi_check(d, MPI_Bcast(c, 2, MPI_UINT64_T, root, d->comm), "MPI_Bcast"));
    clt_graph_set_counters(d->g, c[0], c[1]);
    return CLT_OK;
}

int clt_mpi_allreduce_begin(clt_mpi *d, float weight)
{
    if (!d || !d->stage) return CLT_ERR_STATE;
    if (d->begun) return fail(d, CLT_ERR_STATE, "clt_mpi_allreduce_begin: the last reduction was not ended");
    if (!(weight == weight)) return fail(d, CLT_ERR_INVALID, "clt_mpi_allreduce_begin: weight is NaN");
    d->t_begin = now_ms();
    d->weight = weight;
    for (int b = 0; b < d->nbuckets; b++) {
        size_t lo = d->bk[b].lo;
        cl_int e = clEnqueueReadBuffer(d->q, d->grad, CL_FALSE, d->grad_off + lo * sizeof(float),
                                       d->bk[b].n * sizeof(float), d->stage + lo, 0, NULL, &d->ev[b]);
        if (e != CL_SUCCESS) {
            for (int k = 0; k < b; k++) clReleaseEvent(d->ev[k]), d->ev[k] = NULL;
            d->ev[b] = NULL;
            clFinish(d->q);
            return cl_check(d, e, "copying gradients to the host");
        }
    }
    TRY(cl_check(d, clFlush(d->q), "clFlush"));
    d->begun = 1;
    return CLT_OK;
}

/* Waits for the rest after a failure part-way, so nothing is left in flight on d's buffers. */
static void drain(clt_mpi *d)
{
    for (int b = 0; b < d->nbuckets; b++) {
        if (d->ev[b]) clWaitForEvents(1, &d->ev[b]), clReleaseEvent(d->ev[b]), d->ev[b] = NULL;
        if (d->req[b] != MPI_REQUEST_NULL) MPI_Wait(&d->req[b], MPI_STATUS_IGNORE);
    }
    d->begun = 0;
}

int clt_mpi_allreduce_end(clt_mpi *d)
{
    if (!d || !d->stage) return CLT_ERR_STATE;
    if (!d->begun) return fail(d, CLT_ERR_STATE, "clt_mpi_allreduce_end: no reduction was begun");
    int st = CLT_OK;
    double t_first = d->t_begin;
    /* Each bucket's reduction starts once its copy is done; testing the earlier requests drives MPI's
     * progress on them while later copies complete. */
    for (int b = 0; b < d->nbuckets && st == CLT_OK; b++) {
        st = cl_check(d, clWaitForEvents(1, &d->ev[b]), "copying gradients to the host");
        clReleaseEvent(d->ev[b]);
        d->ev[b] = NULL;
        if (st < 0) break;
        if (b == 0) t_first = now_ms();
        float *p = d->stage + d->bk[b].lo, w = d->weight;
        size_t n = d->bk[b].n;
        if (w != 1.0f)
            for (size_t i = 0; i < n; i++) p[i] *= w;
        st = mpi_check(d, MPI_Iallreduce(MPI_IN_PLACE, p, (int)n, MPI_FLOAT, MPI_SUM, d->comm, &d->req[b]),
                       "MPI_Iallreduce");
        int flag;
        if (st == CLT_OK && b > 0) st = mpi_check(d, MPI_Testall(b, d->req, &flag, MPI_STATUSES_IGNORE), "MPI_Testall");
    }
    for (int b = 0; b < d->nbuckets && st == CLT_OK; b++) {
        st = mpi_check(d, MPI_Wait(&d->req[b], MPI_STATUS_IGNORE), "MPI_Wait");
        size_t lo = d->bk[b].lo;
        if (st == CLT_OK)
            st = cl_check(d, clEnqueueWriteBuffer(d->q, d->grad, CL_FALSE, d->grad_off + lo * sizeof(float),
                                                  d->bk[b].n * sizeof(float), d->stage + lo, 0, NULL, NULL),
                          "copying reduced gradients to the device");
    }
    if (st == CLT_OK) st = cl_check(d, clFlush(d->q), "clFlush");
    if (st < 0) {
        drain(d);
        return st;
    }
    d->begun = 0;
    d->st.reductions++;
    double t_end = now_ms();
    d->st.last_ms = t_end - d->t_begin;
    d->st.total_ms += d->st.last_ms;
    d->st.device_wait_ms += t_first - d->t_begin;
    d->st.comm_ms += t_end - t_first;
    return CLT_OK;
}

int clt_mpi_allreduce_grads(clt_mpi *d, float weight)
{
    TRY(clt_mpi_allreduce_begin(d, weight));
    return clt_mpi_allreduce_end(d);
}

int clt_mpi_average_buffers(clt_mpi *d)
{
    if (!d || !d->stage) return CLT_ERR_STATE;
    if (d->begun) return fail(d, CLT_ERR_STATE, "clt_mpi_average_buffers: a gradient reduction is under way");
    if (!d->buf || d->nbuf == 0) return CLT_OK;
    size_t n = d->nbuf;
    TRY(cl_check(d, clEnqueueReadBuffer(d->q, d->buf, CL_TRUE, d->buf_off, n * sizeof(float), d->stage, 0, NULL, NULL),
                 "reading the buffers"));
    TRY(mpi_check(d, MPI_Allreduce(MPI_IN_PLACE, d->stage, (int)n, MPI_FLOAT, MPI_SUM, d->comm), "MPI_Allreduce"));
    float inv = 1.0f / (float)d->size;
    for (size_t i = 0; i < n; i++) d->stage[i] *= inv;
    return cl_check(d, clEnqueueWriteBuffer(d->q, d->buf, CL_TRUE, d->buf_off, n * sizeof(float), d->stage, 0, NULL,
                                            NULL), "writing the buffers");
}

int clt_mpi_agree(clt_mpi *d, int failed, int *nfailed, int *first_failed)
{
    if (!d || d->comm == MPI_COMM_NULL) return CLT_ERR_STATE;
    int in[2] = {failed ? 1 : 0, failed ? d->rank : d->size}, out_sum = 0, out_min = d->size;
    TRY(mpi_check(d, MPI_Allreduce(&in[0], &out_sum, 1, MPI_INT, MPI_SUM, d->comm), "MPI_Allreduce"));
    if (out_sum) TRY(mpi_check(d, MPI_Allreduce(&in[1], &out_min, 1, MPI_INT, MPI_MIN, d->comm), "MPI_Allreduce"));
    if (nfailed) *nfailed = out_sum;
    if (first_failed) *first_failed = out_sum ? out_min : -1;
    return CLT_OK;
}

int clt_mpi_get_stats(const clt_mpi *d, clt_mpi_stats *st)
{
    if (!d || !st) return CLT_ERR_INVALID;
    *st = d->st;
    return CLT_OK;
}
