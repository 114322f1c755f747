/* bench.c - public GEMM tuning and benchmarking, and tuning-cache introspection, over the internal gemm/tune code. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "tune.h"

#define MAX_VALUES 0x7fffffffull /* per matrix: the kernels index with 32-bit ints */
#define MAX_REPS 100000

struct clt_gemm_bench {
    clt_context *ctx;
    clt_gemm_shape shape;
    clt__gemm_args a; /* the problem, compact layout, with its device buffers */
    float *ha, *hb, *hc, *ref;
    size_t na, nb, nc;
    int ran; /* hc holds the C of a finished run */
};

/* Checks a shape and sets *a to its compact layout (no device buffers); fn names the caller in messages. */
static int check_shape(clt_context *ctx, const char *fn, const clt_gemm_shape *s, clt__gemm_args *a)
{
    if (!s) return clt__err(ctx, CLT_ERR_INVALID, "%s: shape is NULL", fn);
    size_t batch = s->batch ? s->batch : 1;
    if (s->m == 0 || s->n == 0 || s->k == 0)
        return clt__err(ctx, CLT_ERR_INVALID, "%s: m, n and k must be >= 1 (got m=%zu n=%zu k=%zu)", fn, s->m, s->n,
                        s->k);
    if ((s->trans_a != 0 && s->trans_a != 1) || (s->trans_b != 0 && s->trans_b != 1))
        return clt__err(ctx, CLT_ERR_INVALID, "%s: trans_a and trans_b must be 0 or 1 (got %d, %d)", fn, s->trans_a,
                        s->trans_b);
    const size_t dims[3][2] = {{s->m, s->k}, {s->k, s->n}, {s->m, s->n}};
    const char *names = "ABC";
    for (int i = 0; i < 3; i++) {
        /* Divisions instead of products: no size_t overflow on the way. */
        if (dims[i][0] > MAX_VALUES / dims[i][1] || batch > MAX_VALUES / (dims[i][0] * dims[i][1]))
            return clt__err(ctx, CLT_ERR_INVALID, "%s: %c (batch %zu x %zu x %zu) has more than 2^31-1 values", fn,
                            names[i], batch, dims[i][0], dims[i][1]);
    }
    *a = (clt__gemm_args){.trans_a = s->trans_a, .trans_b = s->trans_b, .m = s->m, .n = s->n, .k = s->k,
                          .alpha = 1.0f, .beta = 0.0f, .batch = batch};
    a->lda = s->trans_a ? s->m : s->k;
    a->ldb = s->trans_b ? s->k : s->n;
    a->ldc = s->n;
    a->stride_a = s->m * s->k;
    a->stride_b = s->k * s->n;
    a->stride_c = s->m * s->n;
    return CLT_OK;
}

static void set_choice(clt_gemm_choice *c, int algo, const clt__gemm_params *p)
{
    memset(c, 0, sizeof *c);
    strcpy(c->algo, algo == CLT__GEMM_OWN ? "own" : "clblast");
    if (algo == CLT__GEMM_OWN) clt__gemm_params_str(p, c->params, sizeof c->params);
}

int clt_gemm_tune(clt_context *ctx, const clt_gemm_shape *shape, clt_gemm_choice *out)
{
    if (!ctx) return CLT_ERR_INVALID;
    if (!out) return clt__err(ctx, CLT_ERR_INVALID, "clt_gemm_tune: out is NULL");
    clt__gemm_args a;
    CLT_TRY(check_shape(ctx, "clt_gemm_tune", shape, &a));
    int algo;
    clt__gemm_params p;
    CLT_TRY(clt__gemm_prepare(ctx, &a));
    CLT_TRY(clt__gemm_decision(ctx, &a, &algo, &p));
    set_choice(out, algo, &p);
    return CLT_OK;
}

int clt_context_tune_spent(const clt_context *ctx, double *seconds)
{
    if (!ctx || !seconds) return CLT_ERR_INVALID;
    *seconds = ctx->tune_spent_s;
    return CLT_OK;
}

/* ---------------------------------------------------------------------------------------------- benchmark */

static int make_buffer(clt_gemm_bench *b, cl_mem_flags flags, size_t count, float *host, cl_mem *out)
{
    cl_int e;
    *out = clCreateBuffer(b->ctx->cl, flags | (host ? CL_MEM_COPY_HOST_PTR : 0), count * sizeof(float), host, &e);
    if (e == CL_SUCCESS) return CLT_OK;
    *out = NULL;
    if (e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES || e == CL_INVALID_BUFFER_SIZE)
        return clt__err(b->ctx, CLT_ERR_DEVICE_MEMORY, "clt_gemm_bench_create: cannot allocate %zu bytes on %s (%s)",
                        count * sizeof(float), b->ctx->info.name, clt__cl_error_name(e));
    return clt__cl_err(b->ctx, e, "clCreateBuffer", __FILE__, __LINE__);
}

int clt_gemm_bench_create(clt_context *ctx, const clt_gemm_shape *shape, uint64_t seed, clt_gemm_bench **out)
{
    if (!ctx) return CLT_ERR_INVALID;
    if (!out) return clt__err(ctx, CLT_ERR_INVALID, "clt_gemm_bench_create: out is NULL");
    *out = NULL;
    clt__gemm_args a;
    CLT_TRY(check_shape(ctx, "clt_gemm_bench_create", shape, &a));
    clt_gemm_bench *b = calloc(1, sizeof *b);
    if (!b) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    b->ctx = ctx;
    b->shape = *shape;
    b->a = a;
    b->na = a.batch * a.stride_a;
    b->nb = a.batch * a.stride_b;
    b->nc = a.batch * a.stride_c;
    b->ha = malloc(b->na * sizeof(float));
    b->hb = malloc(b->nb * sizeof(float));
    b->hc = malloc(b->nc * sizeof(float));
    int st = CLT_OK;
    if (!b->ha || !b->hb || !b->hc) st = clt__err(ctx, CLT_ERR_NOMEM, "clt_gemm_bench_create: out of host memory");
    if (st == CLT_OK) {
        for (size_t i = 0; i < b->na; i++) b->ha[i] = (float)(clt__uniform01(&seed) * 2 - 1);
        for (size_t i = 0; i < b->nb; i++) b->hb[i] = (float)(clt__uniform01(&seed) * 2 - 1);
        st = make_buffer(b, CL_MEM_READ_ONLY, b->na, b->ha, &b->a.a);
    }
    if (st == CLT_OK) st = make_buffer(b, CL_MEM_READ_ONLY, b->nb, b->hb, &b->a.b);
    if (st == CLT_OK) st = make_buffer(b, CL_MEM_READ_WRITE, b->nc, NULL, &b->a.c);
    if (st < 0) {
        clt_gemm_bench_destroy(b);
        return st;
    }
    *out = b;
    return CLT_OK;
}

void clt_gemm_bench_destroy(clt_gemm_bench *b)
{
    if (!b) return;
    if (b->a.a) clReleaseMemObject(b->a.a);
    if (b->a.b) clReleaseMemObject(b->a.b);
    if (b->a.c) clReleaseMemObject(b->a.c);
    free(b->ha);
    free(b->hb);
    free(b->hc);
    free(b->ref);
    free(b);
}

int clt_gemm_bench_inputs(const clt_gemm_bench *b, const float **a, const float **bm)
{
    if (!b) return CLT_ERR_INVALID;
    if (a) *a = b->ha;
    if (bm) *bm = b->hb;
    return CLT_OK;
}

int clt_gemm_bench_set_reference(clt_gemm_bench *b, const float *c, size_t count)
{
    if (!b) return CLT_ERR_INVALID;
    if (!c) return clt__err(b->ctx, CLT_ERR_INVALID, "clt_gemm_bench_set_reference: c is NULL");
    if (count != b->nc)
        return clt__err(b->ctx, CLT_ERR_INVALID, "clt_gemm_bench_set_reference: count is %zu, C holds %zu values",
                        count, b->nc);
    if (!b->ref && !(b->ref = malloc(b->nc * sizeof(float))))
        return clt__err(b->ctx, CLT_ERR_NOMEM, "out of memory");
    memcpy(b->ref, c, b->nc * sizeof(float));
    return CLT_OK;
}

int clt_gemm_bench_output(const clt_gemm_bench *b, float *c, size_t count)
{
    if (!b) return CLT_ERR_INVALID;
    if (!c) return clt__err(b->ctx, CLT_ERR_INVALID, "clt_gemm_bench_output: c is NULL");
    if (count != b->nc)
        return clt__err(b->ctx, CLT_ERR_INVALID, "clt_gemm_bench_output: count is %zu, C holds %zu values", count,
                        b->nc);
    if (!b->ran)
        return clt__err(b->ctx, CLT_ERR_STATE, "clt_gemm_bench_output: no C yet (no run, or the last one failed)");
    memcpy(c, b->hc, b->nc * sizeof(float));
    return CLT_OK;
}

static int cmp_d(const void *x, const void *y)
{
    double u = *(const double *)x, v = *(const double *)y;
    return (u > v) - (u < v);
}

/* Warm-up run, then `reps` timed runs of one path; *ms = median. */
static int time_path(clt_gemm_bench *b, int algo, const clt__gemm_params *p, int reps, double *ms)
{
    clt_context *ctx = b->ctx;
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    int st = clt__gemm_run(ctx, &b->a, algo, p); /* warm-up (compiles) */
    if (st == CLT_OK) st = clt_context_finish(ctx);
    for (int r = 0; r < reps && st == CLT_OK; r++) {
        double t0 = clt__now_ms();
        st = clt__gemm_run(ctx, &b->a, algo, p);
        if (st == CLT_OK) st = clt_context_finish(ctx);
        t[r] = clt__now_ms() - t0;
    }
    if (st == CLT_OK) {
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        *ms = t[reps / 2];
    }
    free(t);
    return st;
}

/* Reads C back and compares it with the reference, if one is set. */
static int check_result(clt_gemm_bench *b, clt_gemm_bench_result *r)
{
    clt_context *ctx = b->ctx;
    CLT_CL(ctx, clEnqueueReadBuffer(ctx->queue, b->a.c, CL_TRUE, 0, b->nc * sizeof(float), b->hc, 0, NULL, NULL));
    b->ran = 1;
    if (!b->ref) return CLT_OK;
    double mag = 0, err = 0;
    for (size_t i = 0; i < b->nc; i++) mag = fmax(mag, fabs((double)b->ref[i]));
    for (size_t i = 0; i < b->nc; i++) {
        double d = fabs((double)b->hc[i] - (double)b->ref[i]);
        if (isnan(d) || d > err) err = d; /* a NaN stays: nothing compares greater */
    }
    r->checked = 1;
    r->max_abs_err = err;
    r->max_rel_err = err / (mag > 0 ? mag : 1);
    return CLT_OK;
}

/* The path and parameters a variant runs, after whatever it must apply first. */
static int variant_path(clt_gemm_bench *b, int variant, int *algo, clt__gemm_params *p)
{
    clt_context *ctx = b->ctx;
    *p = *clt__gemm_param(0);
    switch (variant) {
    case CLT_GEMM_VARIANT_CLBLAST:
        *algo = CLT__GEMM_CLBLAST;
        return CLT_OK;
    case CLT_GEMM_VARIANT_DEFAULT:
        clt__gemm_default(ctx, &b->a, algo, p);
        return CLT_OK;
    case CLT_GEMM_VARIANT_TUNED:
        CLT_TRY(clt__gemm_prepare(ctx, &b->a));
        return clt__gemm_decision(ctx, &b->a, algo, p);
    case CLT_GEMM_VARIANT_CLBLAST_TUNED:
        if (ctx->tune == CLT_TUNE_OFF)
            return clt__err(ctx, CLT_ERR_STATE,
                            "clt_gemm_bench_run: CLT_GEMM_VARIANT_CLBLAST_TUNED needs a tune mode other than off");
        *algo = CLT__GEMM_CLBLAST;
        /* The bench measures CLBlast's parameters in QUICK mode even on CPUs, where compiles do not. */
        return clt__gemm_tune_clblast(ctx, ctx->tune >= CLT_TUNE_QUICK);
    default:
        return clt__err(ctx, CLT_ERR_INVALID, "clt_gemm_bench_run: unknown variant %d (expected 0..3)", variant);
    }
}

int clt_gemm_bench_run(clt_gemm_bench *b, int variant, int reps, clt_gemm_bench_result *out)
{
    if (!b) return CLT_ERR_INVALID;
    clt_context *ctx = b->ctx;
    if (!out) return clt__err(ctx, CLT_ERR_INVALID, "clt_gemm_bench_run: out is NULL");
    if (reps < 1 || reps > MAX_REPS)
        return clt__err(ctx, CLT_ERR_INVALID, "clt_gemm_bench_run: reps must be 1..%d (got %d)", MAX_REPS, reps);
    int algo;
    clt__gemm_params p;
    b->ran = 0;
    CLT_TRY(variant_path(b, variant, &algo, &p));
    clt_gemm_bench_result r;
    memset(&r, 0, sizeof r);
    r.variant = variant;
    set_choice(&r.choice, algo, &p);
    CLT_TRY(time_path(b, algo, algo == CLT__GEMM_OWN ? &p : NULL, reps, &r.ms_median));
    double flops = 2.0 * (double)b->a.m * (double)b->a.n * (double)b->a.k * (double)b->a.batch;
    r.gflops = flops / r.ms_median * 1e-6;
    CLT_TRY(check_result(b, &r));
    *out = r;
    return CLT_OK;
}

/* ---------------------------------------------------------------------------------------------- tune cache */

typedef struct list_ctx {
    clt_context *ctx;
    clt_tune_entry_fn fn;
    void *ud;
    char *buf; /* unescaped parts of the current key */
    size_t cap;
    int oom;
} list_ctx;

/* Undoes tune.c's key escaping (\\ \p \xNN) of one part [s, e) into d; returns the end of what it wrote. */
static char *unescape(const char *s, const char *e, char *d)
{
    while (s < e) {
        if (*s != '\\' || s + 1 >= e) {
            *d++ = *s++;
        } else if (s[1] == '\\') {
            *d++ = '\\', s += 2;
        } else if (s[1] == 'p') {
            *d++ = '|', s += 2;
        } else if (s[1] == 'x' && s + 3 < e) {
            char hex[3] = {s[2], s[3], 0};
            *d++ = (char)strtol(hex, NULL, 16);
            s += 4;
        } else {
            *d++ = *s++;
        }
    }
    *d++ = 0;
    return d;
}

/* Splits "name=value|name=value|..." and calls the user's callback with the parts it names. */
static int list_one(void *ud, const char *key, const char *value)
{
    list_ctx *l = ud;
    size_t need = strlen(key) + 4;
    if (need > l->cap) {
        char *nb = realloc(l->buf, need);
        if (!nb) {
            l->oom = 1;
            return 1;
        }
        l->buf = nb;
        l->cap = need;
    }
    clt_tune_entry e = {"", "", "", value, key};
    char *d = l->buf;
    for (const char *s = key; *s;) {
        const char *end = strchr(s, '|');
        if (!end) end = s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        if (eq) {
            const char **slot = NULL;
            size_t n = (size_t)(eq - s);
            if (n == 6 && !memcmp(s, "kernel", 6)) slot = &e.kernel;
            else if (n == 5 && !memcmp(s, "shape", 5)) slot = &e.shape;
            else if (n == 7 && !memcmp(s, "options", 7)) slot = &e.options;
            if (slot) {
                *slot = d;
                d = unescape(eq + 1, end, d);
            }
        }
        s = *end ? end + 1 : end;
    }
    return l->fn(l->ud, &e);
}

int clt_tune_list(clt_context *ctx, clt_tune_entry_fn fn, void *ud)
{
    if (!ctx) return CLT_ERR_INVALID;
    if (!fn) return clt__err(ctx, CLT_ERR_INVALID, "clt_tune_list: fn is NULL");
    list_ctx l = {ctx, fn, ud, NULL, 0, 0};
    int rc = clt__tune_foreach(ctx, list_one, &l);
    free(l.buf);
    if (l.oom) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    return rc;
}
