/* test_bench_api.c - the public GEMM tuning/benchmark API and tuning-cache listing, through include/cltrain.h only:
 * every variant against a double host reference, tuning decisions listed from memory and from the cache file,
 * and the messages of bad arguments. */
#define _GNU_SOURCE /* mkdtemp, nftw */
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static clt_context *make_ctx(const char *cache_dir, int tune)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.cache_dir = cache_dir;
    s.tune = tune;
    s.tune_budget_s = 120;
    clt_context *ctx = NULL;
    if (clt_context_create(&s, &ctx) < 0) {
        fprintf(stderr, "cannot create a context: %s\n", clt_errmsg(ctx));
        clt_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

/* C = op(A) op(B) in double, per product of the batch. */
static void ref_gemm(const clt_gemm_shape *s, const float *a, const float *b, double *c)
{
    size_t batch = s->batch ? s->batch : 1;
    for (size_t z = 0; z < batch; z++) {
        const float *A = a + z * s->m * s->k, *B = b + z * s->k * s->n;
        for (size_t i = 0; i < s->m; i++)
            for (size_t j = 0; j < s->n; j++) {
                double sum = 0;
                for (size_t k = 0; k < s->k; k++)
                    sum += (double)(s->trans_a ? A[k * s->m + i] : A[i * s->k + k]) *
                           (double)(s->trans_b ? B[j * s->k + k] : B[k * s->n + j]);
                c[(z * s->m + i) * s->n + j] = sum;
            }
    }
}

static int expect_err(clt_context *ctx, int st, int want, const char *text)
{
    const char *msg = clt_errmsg(ctx);
    int ok = st == want && strstr(msg, text) != NULL;
    TU_CHECK(ok, "expected %s with \"%s\", got %d (%s): %s", clt_status_string(want), text, st,
             clt_status_string(st), msg);
    return ok;
}

/* Runs `variant` on the problem and checks timing, the path, and C element by element against the double
 * reference (and the library's own max error against the one measured here). */
static void check_variant(clt_gemm_bench *b, clt_context *ctx, const clt_gemm_shape *s, int variant,
                          const double *ref, const float *reff, const char *label)
{
    size_t nc = (s->batch ? s->batch : 1) * s->m * s->n;
    clt_gemm_bench_result r;
    memset(&r, 0xff, sizeof r);
    if (!TU_OK(ctx, clt_gemm_bench_run(b, variant, 3, &r))) return;
    TU_CHECK(r.variant == variant, "%s: variant %d reported as %d", label, variant, r.variant);
    TU_CHECK(r.ms_median > 0 && r.gflops > 0 && isfinite(r.gflops), "%s: ms %g gflops %g", label, r.ms_median,
             r.gflops);
    double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k * (double)(s->batch ? s->batch : 1);
    TU_CHECK(fabs(r.gflops - flops / r.ms_median * 1e-6) <= 1e-9 * r.gflops, "%s: gflops %g is not flops/time",
             label, r.gflops);
    int own = !strcmp(r.choice.algo, "own"), blas = !strcmp(r.choice.algo, "clblast");
    TU_CHECK(own || blas, "%s: algo '%s'", label, r.choice.algo);
    TU_CHECK(own ? !strncmp(r.choice.params, "MR=", 3) : r.choice.params[0] == 0, "%s: algo %s with params '%s'",
             label, r.choice.algo, r.choice.params);
    if (variant == CLT_GEMM_VARIANT_CLBLAST || variant == CLT_GEMM_VARIANT_CLBLAST_TUNED)
        TU_CHECK(blas, "%s: ran on '%s', not CLBlast", label, r.choice.algo);
    TU_CHECK(r.checked == 1, "%s: not checked against the reference", label);
    float *c = malloc(nc * sizeof *c);
    if (!c || !TU_OK(ctx, clt_gemm_bench_output(b, c, nc))) {
        free(c);
        return;
    }
    double worst = 0, worst_f = 0, mag_f = 0;
    size_t bad = 0;
    for (size_t i = 0; i < nc; i++) {
        double df = fabs((double)c[i] - (double)reff[i]);
        if (df > worst_f) worst_f = df;
        if (fabs((double)reff[i]) > mag_f) mag_f = fabs((double)reff[i]);
        double d = fabs((double)c[i] - ref[i]);
        /* float32 rounding of up to 13 products of values in [-1, 1) is ~1e-7: room for any summation order */
        if (!(d <= 1e-5 + 1e-5 * fabs(ref[i]))) bad++;
        if (isnan(d) || d > worst) worst = d;
    }
    TU_CHECK(bad == 0, "%s: %zu of %zu values off (max abs err %g)", label, bad, nc, worst);
    /* The library compared the same C with the float reference it was given: the same numbers exactly. */
    TU_CHECK(r.max_abs_err == worst_f && r.max_rel_err == worst_f / mag_f,
             "%s: library max_abs_err %g max_rel_err %g, measured %g %g", label, r.max_abs_err, r.max_rel_err, worst_f,
             worst_f / mag_f);
    free(c);
}

/* Benchmarks one shape in the variants given (count of them) on ctx. */
static void bench_shape(clt_context *ctx, const clt_gemm_shape *s, const int *variants, int count)
{
    char label[160];
    size_t batch = s->batch ? s->batch : 1, nc = batch * s->m * s->n;
    clt_gemm_bench *b = NULL;
    if (!TU_OK(ctx, clt_gemm_bench_create(ctx, s, 7, &b))) return;
    const float *ha = NULL, *hb = NULL;
    TU_OK(ctx, clt_gemm_bench_inputs(b, &ha, &hb));
    double *ref = malloc(nc * sizeof *ref);
    float *reff = malloc(nc * sizeof *reff);
    if (!ha || !hb || !ref || !reff) {
        TU_CHECK(0, "inputs or host memory missing");
        goto out;
    }
    ref_gemm(s, ha, hb, ref);
    for (size_t i = 0; i < nc; i++) reff[i] = (float)ref[i];
    TU_CHECK(ha[0] >= -1 && ha[0] < 1 && ha[0] != ha[1], "inputs not uniform in [-1, 1): %g %g", ha[0], ha[1]);
    /* Before a reference is set, runs are not checked. */
    clt_gemm_bench_result r;
    if (TU_OK(ctx, clt_gemm_bench_run(b, CLT_GEMM_VARIANT_DEFAULT, 1, &r)))
        TU_CHECK(r.checked == 0 && r.max_abs_err == 0, "unchecked run: checked %d err %g", r.checked, r.max_abs_err);
    TU_OK(ctx, clt_gemm_bench_set_reference(b, reff, nc));
    for (int v = 0; v < count; v++) {
        snprintf(label, sizeof label, "m=%zu n=%zu k=%zu ta=%d tb=%d batch=%zu variant %d", s->m, s->n, s->k,
                 s->trans_a, s->trans_b, batch, variants[v]);
        check_variant(b, ctx, s, variants[v], ref, reff, label);
    }
    /* A NaN in the reference must show as a NaN error, not vanish in a max(). */
    reff[nc / 2] = NAN;
    TU_OK(ctx, clt_gemm_bench_set_reference(b, reff, nc));
    if (TU_OK(ctx, clt_gemm_bench_run(b, CLT_GEMM_VARIANT_DEFAULT, 1, &r)))
        TU_CHECK(isnan(r.max_abs_err) && isnan(r.max_rel_err), "NaN reference: max_abs_err %g", r.max_abs_err);
out:
    free(ref);
    free(reff);
    clt_gemm_bench_destroy(b);
}

static void bad_arguments(clt_context *ctx)
{
    clt_gemm_bench *b = (clt_gemm_bench *)&b;
    clt_gemm_shape s = {.m = 0, .n = 3, .k = 4};
    expect_err(ctx, clt_gemm_bench_create(ctx, NULL, 1, &b), CLT_ERR_INVALID, "clt_gemm_bench_create: shape is NULL");
    TU_CHECK(b == NULL, "*out must be NULL after a failed create");
    expect_err(ctx, clt_gemm_bench_create(ctx, &s, 1, &b), CLT_ERR_INVALID,
               "clt_gemm_bench_create: m, n and k must be >= 1 (got m=0 n=3 k=4)");
    s = (clt_gemm_shape){.m = 2, .n = 3, .k = 4, .trans_a = 2};
    expect_err(ctx, clt_gemm_tune(ctx, &s, &(clt_gemm_choice){"", ""}), CLT_ERR_INVALID,
               "clt_gemm_tune: trans_a and trans_b must be 0 or 1 (got 2, 0)");
    s = (clt_gemm_shape){.m = 1 << 20, .n = 3, .k = 4096};
    expect_err(ctx, clt_gemm_bench_create(ctx, &s, 1, &b), CLT_ERR_INVALID,
               "A (batch 1 x 1048576 x 4096) has more than 2^31-1 values");
    s = (clt_gemm_shape){.m = 1, .n = 4, .k = 1, .batch = (size_t)1 << 29};
    expect_err(ctx, clt_gemm_bench_create(ctx, &s, 1, &b), CLT_ERR_INVALID,
               "B (batch 536870912 x 1 x 4) has more than 2^31-1 values");
    expect_err(ctx, clt_gemm_tune(ctx, &(clt_gemm_shape){.m = 2, .n = 2, .k = 2}, NULL), CLT_ERR_INVALID,
               "clt_gemm_tune: out is NULL");
    expect_err(ctx, clt_tune_list(ctx, NULL, NULL), CLT_ERR_INVALID, "clt_tune_list: fn is NULL");
    TU_CHECK(clt_gemm_bench_run(NULL, 0, 1, NULL) == CLT_ERR_INVALID, "NULL bench must be refused");
    TU_CHECK(clt_context_tune_spent(ctx, NULL) == CLT_ERR_INVALID, "NULL seconds must be refused");
    clt_gemm_bench_destroy(NULL);

    s = (clt_gemm_shape){.m = 3, .n = 7, .k = 5};
    b = NULL;
    if (!TU_OK(ctx, clt_gemm_bench_create(ctx, &s, 1, &b))) return;
    clt_gemm_bench_result r;
    float c[21];
    expect_err(ctx, clt_gemm_bench_output(b, c, 21), CLT_ERR_STATE, "clt_gemm_bench_output: no C yet");
    expect_err(ctx, clt_gemm_bench_run(b, CLT_GEMM_VARIANT_DEFAULT, 0, &r), CLT_ERR_INVALID,
               "clt_gemm_bench_run: reps must be 1..100000 (got 0)");
    expect_err(ctx, clt_gemm_bench_run(b, 9, 1, &r), CLT_ERR_INVALID,
               "clt_gemm_bench_run: unknown variant 9 (expected 0..3)");
    expect_err(ctx, clt_gemm_bench_run(b, CLT_GEMM_VARIANT_DEFAULT, 1, NULL), CLT_ERR_INVALID,
               "clt_gemm_bench_run: out is NULL");
    expect_err(ctx, clt_gemm_bench_set_reference(b, c, 3), CLT_ERR_INVALID,
               "clt_gemm_bench_set_reference: count is 3, C holds 21 values");
    expect_err(ctx, clt_gemm_bench_output(b, c, 20), CLT_ERR_INVALID,
               "clt_gemm_bench_output: count is 20, C holds 21 values");
    clt_gemm_bench_destroy(b);
}

typedef struct listing {
    int n, stop_after;
    int found;        /* entries with the kernel and shape looked for */
    const char *shape; /* gemm shape looked for */
    char value[256];   /* its value */
    int key_ok;        /* its full key names the kernel and shape */
} listing;

static int on_entry(void *ud, const clt_tune_entry *e)
{
    listing *l = ud;
    l->n++;
    TU_CHECK(e->kernel && e->shape && e->options && e->value && e->key, "entry %d has a NULL field", l->n);
    if (l->shape && e->kernel && e->shape && !strcmp(e->kernel, "gemm") && !strcmp(e->shape, l->shape)) {
        l->found++;
        snprintf(l->value, sizeof l->value, "%s", e->value);
        l->key_ok = strstr(e->key, "|kernel=gemm|") && strstr(e->key, l->shape);
    }
    return l->stop_after && l->n == l->stop_after ? 7 : 0;
}

/* The decision clt_gemm_tune made, as the listing must show it. */
static void expect_listed(clt_context *ctx, const char *shape, const clt_gemm_choice *c, const char *where)
{
    listing l = {.shape = shape};
    if (!TU_OK(ctx, clt_tune_list(ctx, on_entry, &l))) return;
    char want[200];
    snprintf(want, sizeof want, "algo=%s%s%s", c->algo, c->params[0] ? " " : "", c->params);
    TU_CHECK(l.found == 1 && !strcmp(l.value, want) && l.key_ok,
             "%s: gemm %s listed %d times, value '%s' (want '%s'), key ok %d", where, shape, l.found, l.value, want,
             l.key_ok);
    /* A non-zero return stops the listing and comes back. */
    listing one = {.stop_after = 1};
    int rc = clt_tune_list(ctx, on_entry, &one);
    TU_CHECK(rc == 7 && one.n == 1, "%s: stopping callback: rc %d after %d entries", where, rc, one.n);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(path);
}

int main(void)
{
    char dir[] = "/tmp/cltrain-bench-api-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    /* Tuning off: nothing is measured or listed; every variant but the tuned CLBlast one runs. */
    clt_context *ctx = make_ctx(dir, CLT_TUNE_OFF);
    if (!ctx) return 1;
    bad_arguments(ctx);
    const int plain[] = {CLT_GEMM_VARIANT_CLBLAST, CLT_GEMM_VARIANT_DEFAULT, CLT_GEMM_VARIANT_TUNED};
    bench_shape(ctx, &(clt_gemm_shape){.m = 7, .n = 9, .k = 5}, plain, 3);
    bench_shape(ctx, &(clt_gemm_shape){.m = 6, .n = 10, .k = 13, .batch = 2, .trans_a = 1, .trans_b = 1}, plain, 3);
    clt_gemm_bench *b = NULL;
    clt_gemm_bench_result r;
    if (TU_OK(ctx, clt_gemm_bench_create(ctx, &(clt_gemm_shape){.m = 2, .n = 2, .k = 2}, 1, &b)))
        expect_err(ctx, clt_gemm_bench_run(b, CLT_GEMM_VARIANT_CLBLAST_TUNED, 1, &r), CLT_ERR_STATE,
                   "CLT_GEMM_VARIANT_CLBLAST_TUNED needs a tune mode other than off");
    clt_gemm_bench_destroy(b);
    listing none = {0};
    TU_CHECK(clt_tune_list(ctx, on_entry, &none) == CLT_OK && none.n == 0, "tuning off listed %d entries", none.n);
    double spent = -1;
    TU_CHECK(clt_context_tune_spent(ctx, &spent) == CLT_OK && spent == 0, "tuning off spent %g s", spent);
    clt_context_destroy(ctx);

    /* Quick: tuning one shape measures, caches and lists the decision; the tuned variant follows it. */
    const clt_gemm_shape ts = {.m = 8, .n = 16, .k = 8};
    const char *tshape = "m=8,n=16,k=8,ta=0,tb=0,batch=1";
    clt_gemm_choice c = {"", ""};
    ctx = make_ctx(dir, CLT_TUNE_QUICK);
    if (!ctx) return 1;
    if (TU_OK(ctx, clt_gemm_tune(ctx, &ts, &c))) {
        TU_CHECK(!strcmp(c.algo, "clblast") ? c.params[0] == 0 : !strcmp(c.algo, "own") && !strncmp(c.params, "MR=", 3),
                 "tuned choice '%s' '%s'", c.algo, c.params);
        TU_CHECK(clt_context_tune_spent(ctx, &spent) == CLT_OK && spent > 0, "tuning spent %g s", spent);
        expect_listed(ctx, tshape, &c, "after tuning");
        if (TU_OK(ctx, clt_gemm_bench_create(ctx, &ts, 3, &b)) && TU_OK(ctx, clt_gemm_bench_run(b, CLT_GEMM_VARIANT_TUNED, 1, &r)))
            TU_CHECK(!strcmp(r.choice.algo, c.algo) && !strcmp(r.choice.params, c.params),
                     "tuned variant ran %s %s, clt_gemm_tune chose %s %s", r.choice.algo, r.choice.params, c.algo,
                     c.params);
        clt_gemm_bench_destroy(b);
    }
    clt_context_destroy(ctx);

    /* Cached, a new context: the decision comes back from the file, and the tuned CLBlast variant runs (with
     * cached CLBlast parameters or, none being cached, the built-in ones: cached mode never measures). */
    ctx = make_ctx(dir, CLT_TUNE_CACHED);
    if (!ctx) return 1;
    if (c.algo[0]) expect_listed(ctx, tshape, &c, "from the cache file");
    const int tuned[] = {CLT_GEMM_VARIANT_TUNED, CLT_GEMM_VARIANT_CLBLAST_TUNED};
    bench_shape(ctx, &(clt_gemm_shape){.m = 5, .n = 11, .k = 3, .trans_b = 1}, tuned, 2);
    TU_CHECK(clt_context_tune_spent(ctx, &spent) == CLT_OK && spent == 0, "cached mode measured for %g s", spent);
    clt_context_destroy(ctx);
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    return tu_finish("test_bench_api");
}
