/* bench.c - `cltrain bench gemm` (GEMM speed: CLBlast, own kernel untuned/tuned, OpenBLAS) and `cltrain tune gemm`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool.h"

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

#ifdef CLT_HAVE_CBLAS
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Host reference and speed: OpenBLAS on the problem's data; the result becomes the bench's reference.
 * Returns 0, 1 when out of host memory (said so), or the status of a failed library call. */
static int host_blas(clt_gemm_bench *bench, const clt_gemm_shape *sh, int reps, double *ms)
{
    const float *ha, *hb;
    clt_gemm_bench_inputs(bench, &ha, &hb);
    size_t sa = sh->m * sh->k, sb = sh->k * sh->n, sc = sh->m * sh->n;
    int lda = (int)(sh->trans_a ? sh->m : sh->k), ldb = (int)(sh->trans_b ? sh->k : sh->n);
    float *hc = malloc(sh->batch * sc * sizeof(float));
    double *t = malloc((size_t)reps * sizeof *t);
    if (!hc || !t) {
        free(hc);
        free(t);
        fprintf(stderr, "cltrain: out of host memory\n");
        return 1;
    }
    for (int r = -1; r < reps; r++) {
        double t0 = now_ms();
        for (size_t b = 0; b < sh->batch; b++)
            cblas_sgemm(CblasRowMajor, sh->trans_a ? CblasTrans : CblasNoTrans,
                        sh->trans_b ? CblasTrans : CblasNoTrans, (int)sh->m, (int)sh->n, (int)sh->k, 1.0f,
                        ha + b * sa, lda, hb + b * sb, ldb, 0.0f, hc + b * sc, (int)sh->n);
        if (r >= 0) t[r] = now_ms() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    *ms = t[reps / 2];
    int st = clt_gemm_bench_set_reference(bench, hc, sh->batch * sc);
    free(hc);
    free(t);
    return st;
}
#endif

static void report(const char *what, const clt_gemm_bench_result *r)
{
    if (r->checked)
        printf("  %-34s %10.3f ms %9.2f GFLOP/s   max rel diff %.1e\n", what, r->ms_median, r->gflops,
               r->max_rel_err);
    else
        printf("  %-34s %10.3f ms %9.2f GFLOP/s\n", what, r->ms_median, r->gflops);
    if (r->variant != CLT_GEMM_VARIANT_CLBLAST && r->variant != CLT_GEMM_VARIANT_CLBLAST_TUNED &&
        !strcmp(r->choice.algo, "own"))
        printf("      %s\n", r->choice.params);
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
    clt_gemm_shape sh = {.m = o.m, .n = o.n, .k = o.k, .batch = o.batch, .trans_a = o.ta, .trans_b = o.tb};
    clt_gemm_bench *bench = NULL;
    clt_device_info info;
    int rc = 1;
    if (clt_gemm_bench_create(ctx, &sh, 42, &bench) < 0 || clt_context_device_info(ctx, &info) < 0) goto fail;
    printf("gemm m=%zu n=%zu k=%zu ta=%d tb=%d batch=%zu on %s, median of %d runs:\n", o.m, o.n, o.k, o.ta, o.tb,
           o.batch, info.name, o.reps);
    double ms_blas = -1;
#ifdef CLT_HAVE_CBLAS
    int hs = host_blas(bench, &sh, o.reps, &ms_blas);
    if (hs > 0) goto done;
    if (hs < 0) goto fail;
    printf("  %-34s %10.3f ms %9.2f GFLOP/s\n", "OpenBLAS cblas_sgemm (host)", ms_blas,
           2.0 * (double)o.m * (double)o.n * (double)o.k * (double)o.batch / ms_blas * 1e-6);
#endif
    clt_gemm_bench_result r, tuned;
    char label[200];
    /* (a) CLBlast with its built-in parameters: before any override is applied in this process. */
    if (clt_gemm_bench_run(bench, CLT_GEMM_VARIANT_CLBLAST, o.reps, &r) < 0) goto fail;
    report("CLBlast, built-in parameters", &r);
    /* (b) the library's untuned default for this device */
    if (clt_gemm_bench_run(bench, CLT_GEMM_VARIANT_DEFAULT, o.reps, &r) < 0) goto fail;
    snprintf(label, sizeof label, "default (%s)", r.choice.algo);
    report(label, &r);
    /* (c) tuned: what the library's GEMM does for this shape (measures in quick/full mode) */
    if (clt_gemm_bench_run(bench, CLT_GEMM_VARIANT_TUNED, o.reps, &tuned) < 0) goto fail;
    snprintf(label, sizeof label, "tuned (%s)", tuned.choice.algo);
    report(label, &tuned);
    /* (c') CLBlast with tuned parameters (measured now in quick/full mode, else cached if any). */
    if (o.tune != CLT_TUNE_OFF) {
        if (clt_gemm_bench_run(bench, CLT_GEMM_VARIANT_CLBLAST_TUNED, o.reps, &r) < 0) goto fail;
        report("CLBlast, tuned parameters", &r);
    }
    if (ms_blas > 0) printf("  tuned / OpenBLAS speed ratio: %.2f\n", ms_blas / tuned.ms_median);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "cltrain: bench failed: %s\n", clt_errmsg(ctx));
done:
    clt_gemm_bench_destroy(bench);
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
    clt_gemm_shape sh = {.m = o.m, .n = o.n, .k = o.k, .batch = o.batch, .trans_a = o.ta, .trans_b = o.tb};
    clt_gemm_choice c;
    double spent = 0;
    if (clt_gemm_tune(ctx, &sh, &c) < 0 || clt_context_tune_spent(ctx, &spent) < 0) {
        fprintf(stderr, "cltrain: tuning failed: %s\n", clt_errmsg(ctx));
        clt_context_destroy(ctx);
        return 1;
    }
    printf("gemm m=%zu n=%zu k=%zu ta=%d tb=%d batch=%zu: %s %s (tuning took %.1f s)\n", o.m, o.n, o.k, o.ta, o.tb,
           o.batch, c.algo, c.params, spent);
    clt_context_destroy(ctx);
    return 0;
}

static int print_entry(void *ud, const clt_tune_entry *e)
{
    int *n = ud;
    (*n)++;
    printf("  %-14s %s%s%s -> %s\n", e->kernel, e->shape, *e->options ? " " : "", e->options, e->value);
    return 0;
}

int tool_tune_list(const char *device)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.device = device;
    s.tune = CLT_TUNE_CACHED; /* reads the cache, never measures */
    clt_context *ctx = NULL;
    clt_device_info info;
    int n = 0, st = clt_context_create(&s, &ctx);
    if (st == CLT_OK) st = clt_context_device_info(ctx, &info);
    if (st == CLT_OK) {
        printf("tuning decisions cached for %s (kernel, shape, candidate set -> decision):\n", info.name);
        st = clt_tune_list(ctx, print_entry, &n);
    }
    if (st < 0) fprintf(stderr, "cltrain tune: cannot list the tuning cache: %s\n", clt_errmsg(ctx));
    else printf("%d decision(s)\n", n);
    clt_context_destroy(ctx);
    return st < 0 ? 1 : 0;
}
