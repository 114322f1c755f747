/* bench.c - `cltrain bench gemm` (GEMM speed: CLBlast, own kernel untuned/tuned, OpenBLAS) and `cltrain tune gemm`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "tool.h"
#include "tune.h"

#ifdef CLT_HAVE_CBLAS
#include <cblas.h>
#endif

typedef struct bench_opts {
    size_t m, n, k, batch;
    int ta, tb;
    int reps;
    const char *device;
    int tune;
    int verbose;
} bench_opts;

static int parse_tune(const char *s, int *mode)
{
    if (strcmp(s, "off") == 0) *mode = CLT_TUNE_OFF;
    else if (strcmp(s, "cached") == 0) *mode = CLT_TUNE_CACHED;
    else if (strcmp(s, "quick") == 0) *mode = CLT_TUNE_QUICK;
    else if (strcmp(s, "full") == 0) *mode = CLT_TUNE_FULL;
    else return -1;
    return 0;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v <= 0 || v > 0x7fffffff) return -1;
    *out = (size_t)v;
    return 0;
}

/* argv: <sub> gemm M N K [options]. Returns 0 or prints usage and returns -1. */
static int parse(int argc, char **argv, bench_opts *o, const char *usage)
{
    memset(o, 0, sizeof *o);
    o->reps = 10;
    o->batch = 1;
    o->tune = CLT_TUNE_QUICK;
    if (argc < 5 || strcmp(argv[1], "gemm") != 0 || parse_size(argv[2], &o->m) || parse_size(argv[3], &o->n) ||
        parse_size(argv[4], &o->k)) {
        fprintf(stderr, "usage: %s\n", usage);
        return -1;
    }
    for (int i = 5; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--reps") == 0 && v) {
            o->reps = atoi(v);
            i++;
            if (o->reps < 1 || o->reps > 1000) {
                fprintf(stderr, "--reps must be 1..1000\n");
                return -1;
            }
        } else if (strcmp(a, "--device") == 0 && v) {
            o->device = v;
            i++;
        } else if (strcmp(a, "--tune") == 0 && v) {
            if (parse_tune(v, &o->tune)) {
                fprintf(stderr, "--tune must be off, cached, quick or full (got '%s')\n", v);
                return -1;
            }
            i++;
        } else if (strcmp(a, "--batch") == 0 && v) {
            if (parse_size(v, &o->batch)) {
                fprintf(stderr, "--batch must be a positive integer\n");
                return -1;
            }
            i++;
        } else if (strcmp(a, "--ta") == 0) {
            o->ta = 1;
        } else if (strcmp(a, "--tb") == 0) {
            o->tb = 1;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            o->verbose = 1;
        } else {
            fprintf(stderr, "unknown or incomplete option '%s'\nusage: %s\n", a, usage);
            return -1;
        }
    }
    return 0;
}

static int make_context(const bench_opts *o, clt_context **ctx)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.device = o->device;
    s.tune = o->tune;
    s.verbose = o->verbose;
    s.tune_budget_s = 120;
    int st = clt_context_create(&s, ctx);
    if (st < 0) fprintf(stderr, "cltrain: cannot create an OpenCL context: %s\n", clt_errmsg(*ctx));
    return st;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct problem {
    clt__gemm_args a;
    float *ha, *hb, *hc, *ref;
    size_t na, nb, nc;
} problem;

static int time_path(clt_context *ctx, problem *pr, int algo, const clt__gemm_params *p, int reps, double *ms,
                     double *maxdiff)
{
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) return CLT_ERR_NOMEM;
    int st = clt__gemm_run(ctx, &pr->a, algo, p); /* warm-up (compiles) */
    if (st == CLT_OK) st = clt_context_finish(ctx);
    for (int r = 0; r < reps && st == CLT_OK; r++) {
        double t0 = clt__now_ms();
        st = clt__gemm_run(ctx, &pr->a, algo, p);
        if (st == CLT_OK) st = clt_context_finish(ctx);
        t[r] = clt__now_ms() - t0;
    }
    if (st == CLT_OK) {
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        *ms = t[reps / 2];
        cl_int e = clEnqueueReadBuffer(ctx->queue, pr->a.c, CL_TRUE, 0, pr->nc * sizeof(float), pr->hc, 0, NULL,
                                       NULL);
        if (e != CL_SUCCESS) st = CLT_ERR_OPENCL;
        *maxdiff = 0;
        if (pr->ref && st == CLT_OK) {
            double mag = 0;
            for (size_t i = 0; i < pr->nc; i++) mag = fmax(mag, fabs(pr->ref[i]));
            for (size_t i = 0; i < pr->nc; i++) {
                double d = fabs((double)pr->hc[i] - pr->ref[i]) / (mag > 0 ? mag : 1);
                if (!(d <= *maxdiff)) *maxdiff = d; /* NaN sticks */
            }
        }
    }
    free(t);
    return st;
}

static void report(const char *what, double ms, double flops, double maxdiff, int have_ref)
{
    if (have_ref)
        printf("  %-34s %10.3f ms %9.2f GFLOP/s   max rel diff %.1e\n", what, ms, flops / ms * 1e-6, maxdiff);
    else
        printf("  %-34s %10.3f ms %9.2f GFLOP/s\n", what, ms, flops / ms * 1e-6);
}

int tool_cmd_bench(int argc, char **argv)
{
    const char *usage = "cltrain bench step --model NAME [--batch N] ... (see cltrain bench step --help)\n"
                        "cltrain bench gemm M N K [--ta] [--tb] [--batch B] [--reps R] [--device SPEC] "
                        "[--tune off|cached|quick|full] [--verbose]";
    bench_opts o;
    if (parse(argc, argv, &o, usage)) return 2;
    clt_context *ctx = NULL;
    if (make_context(&o, &ctx) < 0) {
        clt_context_destroy(ctx);
        return 1;
    }
    problem pr;
    memset(&pr, 0, sizeof pr);
    clt__gemm_args *a = &pr.a;
    *a = (clt__gemm_args){.trans_a = o.ta, .trans_b = o.tb, .m = o.m, .n = o.n, .k = o.k, .alpha = 1.0f,
                          .beta = 0.0f, .batch = o.batch};
    a->lda = o.ta ? o.m : o.k;
    a->ldb = o.tb ? o.k : o.n;
    a->ldc = o.n;
    a->stride_a = o.m * o.k;
    a->stride_b = o.k * o.n;
    a->stride_c = o.m * o.n;
    pr.na = o.batch * a->stride_a;
    pr.nb = o.batch * a->stride_b;
    pr.nc = o.batch * a->stride_c;
    pr.ha = malloc(pr.na * sizeof(float));
    pr.hb = malloc(pr.nb * sizeof(float));
    pr.hc = malloc(pr.nc * sizeof(float));
    int rc = 1, st = CLT_OK;
    if (!pr.ha || !pr.hb || !pr.hc) {
        fprintf(stderr, "cltrain: out of host memory\n");
        goto done;
    }
    uint64_t seed = 42;
    for (size_t i = 0; i < pr.na; i++) pr.ha[i] = (float)(clt__uniform01(&seed) * 2 - 1);
    for (size_t i = 0; i < pr.nb; i++) pr.hb[i] = (float)(clt__uniform01(&seed) * 2 - 1);
    cl_int e1, e2, e3;
    a->a = clCreateBuffer(ctx->cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, pr.na * sizeof(float), pr.ha, &e1);
    a->b = clCreateBuffer(ctx->cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, pr.nb * sizeof(float), pr.hb, &e2);
    a->c = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, pr.nc * sizeof(float), NULL, &e3);
    if (e1 != CL_SUCCESS || e2 != CL_SUCCESS || e3 != CL_SUCCESS) {
        fprintf(stderr, "cltrain: cannot allocate device buffers for the benchmark\n");
        goto done;
    }
    double flops = 2.0 * (double)o.m * (double)o.n * (double)o.k * (double)o.batch;
    printf("gemm m=%zu n=%zu k=%zu ta=%d tb=%d batch=%zu on %s, median of %d runs:\n", o.m, o.n, o.k, o.ta, o.tb,
           o.batch, ctx->info.name, o.reps);
    double ms_blas = -1, ms, diff;
#ifdef CLT_HAVE_CBLAS
    {
        /* Host reference and speed: OpenBLAS on the same data. */
        float *hc = malloc(pr.nc * sizeof(float));
        pr.ref = malloc(pr.nc * sizeof(double));
        double *t = malloc((size_t)o.reps * sizeof *t);
        if (!hc || !pr.ref || !t) {
            free(hc);
            free(t);
            fprintf(stderr, "cltrain: out of host memory\n");
            goto done;
        }
        for (int r = -1; r < o.reps; r++) {
            double t0 = clt__now_ms();
            for (size_t b = 0; b < o.batch; b++)
                cblas_sgemm(CblasRowMajor, o.ta ? CblasTrans : CblasNoTrans, o.tb ? CblasTrans : CblasNoTrans,
                            (int)o.m, (int)o.n, (int)o.k, 1.0f, pr.ha + b * a->stride_a, (int)a->lda,
                            pr.hb + b * a->stride_b, (int)a->ldb, 0.0f, hc + b * a->stride_c, (int)a->ldc);
            if (r >= 0) t[r] = clt__now_ms() - t0;
        }
        qsort(t, (size_t)o.reps, sizeof *t, cmp_d);
        ms_blas = t[o.reps / 2];
        for (size_t i = 0; i < pr.nc; i++) pr.ref[i] = hc[i];
        free(hc);
        free(t);
        report("OpenBLAS cblas_sgemm (host)", ms_blas, flops, 0, 0);
    }
#endif
    /* (a) CLBlast with its built-in parameters: before any override is applied in this process. */
    st = time_path(ctx, &pr, CLT__GEMM_CLBLAST, NULL, o.reps, &ms, &diff);
    if (st < 0) goto fail;
    report("CLBlast, built-in parameters", ms, flops, diff, pr.ref != NULL);
    /* (b) the library's untuned default for this device */
    int algo;
    clt__gemm_params p;
    char pstr[128];
    clt__gemm_default(ctx, a, &algo, &p);
    clt__gemm_params_str(&p, pstr, sizeof pstr);
    st = time_path(ctx, &pr, algo, &p, o.reps, &ms, &diff);
    if (st < 0) goto fail;
    char label[200];
    snprintf(label, sizeof label, "default (%s)", algo == CLT__GEMM_OWN ? "own" : "clblast");
    report(label, ms, flops, diff, pr.ref != NULL);
    if (algo == CLT__GEMM_OWN) printf("      %s\n", pstr);
    /* (c) tuned: what clt__gemm does for this shape after prepare (measures in quick/full mode) */
    st = clt__gemm_prepare(ctx, a);
    if (st == CLT_OK) st = clt__gemm_decision(ctx, a, &algo, &p);
    if (st < 0) goto fail;
    double ms_tuned;
    st = time_path(ctx, &pr, algo, &p, o.reps, &ms_tuned, &diff);
    if (st < 0) goto fail;
    clt__gemm_params_str(&p, pstr, sizeof pstr);
    snprintf(label, sizeof label, "tuned (%s)", algo == CLT__GEMM_OWN ? "own" : "clblast");
    report(label, ms_tuned, flops, diff, pr.ref != NULL);
    if (algo == CLT__GEMM_OWN) printf("      %s\n", pstr);
    /* (c') CLBlast with tuned parameters (measured now in quick/full mode, else cached if any). */
    if (o.tune != CLT_TUNE_OFF) {
        st = clt__gemm_tune_clblast(ctx, o.tune >= CLT_TUNE_QUICK);
        if (st < 0) goto fail;
        st = time_path(ctx, &pr, CLT__GEMM_CLBLAST, NULL, o.reps, &ms, &diff);
        if (st < 0) goto fail;
        report("CLBlast, tuned parameters", ms, flops, diff, pr.ref != NULL);
    }
    if (ms_blas > 0) printf("  tuned / OpenBLAS speed ratio: %.2f\n", ms_blas / ms_tuned);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "cltrain: bench failed: %s\n", clt_errmsg(ctx));
done:
    if (a->a) clReleaseMemObject(a->a);
    if (a->b) clReleaseMemObject(a->b);
    if (a->c) clReleaseMemObject(a->c);
    free(pr.ha);
    free(pr.hb);
    free(pr.hc);
    free(pr.ref);
    clt_context_destroy(ctx);
    return rc;
}

int tool_cmd_tune(int argc, char **argv)
{
    const char *usage = "cltrain tune gemm M N K [--ta] [--tb] [--batch B] [--device SPEC] [--tune quick|full] "
                        "[--verbose]";
    bench_opts o;
    if (parse(argc, argv, &o, usage)) return 2;
    if (o.tune < CLT_TUNE_QUICK) {
        fprintf(stderr, "cltrain tune: --tune must be quick or full\n");
        return 2;
    }
    clt_context *ctx = NULL;
    if (make_context(&o, &ctx) < 0) {
        clt_context_destroy(ctx);
        return 1;
    }
    clt__gemm_args a = {.trans_a = o.ta, .trans_b = o.tb, .m = o.m, .n = o.n, .k = o.k, .batch = o.batch};
    int algo;
    clt__gemm_params p;
    int st = clt__gemm_prepare(ctx, &a);
    if (st == CLT_OK) st = clt__gemm_decision(ctx, &a, &algo, &p);
    if (st < 0) {
        fprintf(stderr, "cltrain: tuning failed: %s\n", clt_errmsg(ctx));
        clt_context_destroy(ctx);
        return 1;
    }
    char pstr[128];
    clt__gemm_params_str(&p, pstr, sizeof pstr);
    printf("gemm m=%zu n=%zu k=%zu ta=%d tb=%d batch=%zu: %s %s (tuning took %.1f s)\n", o.m, o.n, o.k, o.ta, o.tb,
           o.batch, algo == CLT__GEMM_OWN ? "own" : "clblast", algo == CLT__GEMM_OWN ? pstr : "", ctx->tune_spent_s);
    clt_context_destroy(ctx);
    return 0;
}
