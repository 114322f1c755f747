/* test_ops_clblast.c - the ops on CLBlast (CLTRAIN_GEMM=clblast): dense and im2col conv2d (including the batched
 * split-k weight gradient) forward and backward against the double reference, first on CLBlast's direct GEMM
 * kernel, then on its indirect one with the library's temporary buffer (CLBlastSgemmWithTempBuffer, asserted),
 * then CLBlast's parameter tuning in QUICK mode with a tiny budget. Links the library's objects to see the
 * GEMM decisions. */
#define _GNU_SOURCE /* mkdtemp, setenv */
#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemm.h"
#include "internal.h"
#include "testutil.h"
#include "tune.h"

typedef struct {
    int n, f, u, bias;
} dense_ud;

static void dense_ref(void *v, const double *const *in, const double *const *p, double *out)
{
    dense_ud *d = v;
    for (int r = 0; r < d->n; r++)
        for (int j = 0; j < d->u; j++) {
            double s = d->bias ? p[1][j] : 0;
            for (int k = 0; k < d->f; k++) s += in[0][r * d->f + k] * p[0][j * d->f + k];
            out[r * d->u + j] = s;
        }
}

/* The GEMM decision clt__gemm uses for (ta, tb, m, n, k): must be CLBlast. */
static void expect_clblast(clt_context *ctx, const char *label, int ta, int tb, size_t m, size_t n, size_t k)
{
    clt__gemm_args a = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k, .batch = 1};
    int algo = -1;
    clt__gemm_params p;
    TU_OK(ctx, clt__gemm_decision(ctx, &a, &algo, &p));
    TU_CHECK(algo == CLT__GEMM_CLBLAST, "%s: GEMM %zux%zux%zu runs on %d, not CLBlast", label, m, n, k, algo);
}

static void check_dense(clt_context *ctx, tu_rng *rng, const char *phase, const int *cs)
{
    int shape[2] = {cs[0], cs[1]};
    dense_ud u = {cs[0], cs[1], cs[2], cs[3]};
    char label[128];
    snprintf(label, sizeof label, "%s: dense (%d,%d) -> %d%s", phase, u.n, u.f, u.u, u.bias ? "" : " no bias");
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    if (TU_OK(ctx, clt_graph_create(ctx, &g)) && TU_OK(ctx, clt_input(g, "x", 2, shape, &x)) &&
        TU_OK(ctx, clt_dense(g, x, u.u, u.bias, CLT_INIT_DEFAULT, "fc", &y)) && TU_OK(ctx, clt_graph_keep(g, x, 1)) &&
        TU_OK(ctx, clt_graph_keep(g, y, 0)) && TU_OK(ctx, clt_graph_compile(g, NULL))) {
        if (getenv("CLTRAIN_GEMM")) expect_clblast(ctx, label, 0, 1, (size_t)u.n, (size_t)u.u, (size_t)u.f);
        float *xd = malloc((size_t)u.n * u.f * sizeof(float));
        tu_fill_uniform(rng, xd, (size_t)u.n * u.f, -1, 1);
        /* as in test_dense: y sums F products (+ bias), dW and db sum N rows, dx sums U units */
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = dense_ref, .ud = &u,
                        .training = 1, .seed = 3, .k = u.f + 1, .grad_k = u.n + 1,
                        .in_grad_rtol = tu_sum_rtol(u.u), .in_grad_atol = tu_sum_atol(u.u, 1)};
        tu_check_op(ctx, label, &c);
        free(xd);
    }
    clt_graph_destroy(g);
}

static void check_conv(clt_context *ctx, tu_rng *rng, const char *phase, const int *cs, int want_split)
{
    tu_conv_geom u = tu_conv_geom_of(cs);
    clt_conv2d_params p = tu_conv_params(&u);
    int shape[4] = {u.n, u.c, u.h, u.w};
    char label[128];
    snprintf(label, sizeof label, "%s: im2col conv (%d,%d,%d,%d) k%dx%d p%d co%d", phase, u.n, u.c, u.h, u.w, u.kh,
             u.kw, u.ph, u.co);
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    setenv("CLTRAIN_CONV_ALGO", "im2col", 1);
    int ok = TU_OK(ctx, clt_graph_create(ctx, &g)) && TU_OK(ctx, clt_input(g, "x", 4, shape, &x)) &&
             TU_OK(ctx, clt_conv2d(g, x, &p, "conv", &y));
    unsetenv("CLTRAIN_CONV_ALGO");
    if (ok && TU_OK(ctx, clt_graph_keep(g, x, 1)) && TU_OK(ctx, clt_graph_keep(g, y, 0)) &&
        TU_OK(ctx, clt_graph_compile(g, NULL))) {
        int algo = clt__conv2d_node_algo(g->nodes[0]), split = clt__conv2d_node_split(g->nodes[0]);
        TU_CHECK(algo == CLT__CONV_IM2COL, "%s: algorithm %d", label, algo);
        TU_CHECK(split == want_split, "%s: split-k %d chunks, want %d", label, split, want_split);
        size_t K = (size_t)u.c * u.kh * u.kw, NP = (size_t)u.n * u.oh * u.ow;
        expect_clblast(ctx, label, 0, 0, (size_t)u.co, NP, K);
        expect_clblast(ctx, label, 1, 0, K, NP, (size_t)u.co);
        size_t nx = clt_tensor_numel(x);
        float *xd = malloc(nx * sizeof(float));
        tu_fill_uniform(rng, xd, nx, -1, 1);
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = tu_conv_ref_op, .ud = &u,
                        .training = 1, .seed = 5, .fd_edges = 256};
        tu_conv_tolerances(&u, &c);
        tu_check_op(ctx, label, &c);
        free(xd);
    }
    clt_graph_destroy(g);
}

/* Each CLBlast routine is one program that POCL compiles for a minute or more on a cold cache, and every
 * parameter override makes it another: `all` runs the batched split-k case too (the strided-batched routine;
 * batched GEMMs never use the temporary buffer, so the indirect phase leaves it out). */
static void check_ops(clt_context *ctx, const char *phase, int all)
{
    double t0 = clt__now_ms();
    tu_rng rng = {41};
    int dense_cases[][4] = {{5, 7, 3, 1}, {9, 33, 10, 0}};
    for (int i = 0; i < 2; i++) check_dense(ctx, &rng, phase, dense_cases[i]);
    /* N, C, H, W, Cout, KH, KW, SH, SW, PH, PW, bias; the second splits its weight gradient into 2 chunks
     * (batched CLBlast GEMM) plus a remainder of one column */
    int conv_cases[][12] = {{2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1}, {1, 1, 91, 93, 2, 3, 3, 1, 1, 1, 1, 1}};
    check_conv(ctx, &rng, phase, conv_cases[0], 0);
    if (all) check_conv(ctx, &rng, phase, conv_cases[1], 2);
    printf("     %s: %.1f s\n", phase, (clt__now_ms() - t0) / 1000);
}

static clt_context *make_ctx(int mode, double budget, const char *cache, int verbose)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.verbose = verbose;
    s.tune = mode;
    s.tune_budget_s = budget;
    s.cache_dir = cache;
    clt_context *ctx = NULL;
    if (clt_context_create(&s, &ctx) != CLT_OK) {
        fprintf(stderr, "FAIL context: %s\n", clt_errmsg(ctx));
        tu_failures++;
        clt_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

int main(void)
{
    setenv("CLTRAIN_GEMM", "clblast", 1);
    /* 1. CLBlast's direct kernel (what it picks for shapes this small): no temporary buffer. */
    clt_context *ctx = make_ctx(CLT_TUNE_OFF, 0, NULL, 0);
    if (!ctx) return tu_finish("test_ops_clblast");
    check_ops(ctx, "clblast direct", 1);
    cl_device_id dev = ctx->dev;
    clt_context_destroy(ctx);

    /* 2. Lower CLBlast's threshold for its indirect kernel, so the same shapes go through it: their padded
     * copies live in the temporary buffer the library sized at compile. A new context: decisions (and the
     * temporary sizes asked at prepare) are per context. */
    const char *name[1] = {"XGEMM_MIN_INDIRECT_SIZE"};
    size_t value[1] = {8};
    CLBlastStatusCode os = CLBlastOverrideParameters(dev, "GemmRoutine", CLBlastPrecisionSingle, 1, name, value);
    TU_CHECK(os == CLBlastSuccess, "CLBlastOverrideParameters(GemmRoutine) failed: %d", (int)os);
    ctx = make_ctx(CLT_TUNE_OFF, 0, NULL, 0);
    if (ctx && os == CLBlastSuccess) {
        check_ops(ctx, "clblast indirect", 0);
        unsigned long calls = clt__gemm_clblast_temp_calls(ctx);
        TU_CHECK(calls > 0, "CLBlastSgemmWithTempBuffer never ran");
        printf("ok   CLBlastSgemmWithTempBuffer ran %lu GEMMs\n", calls);
    }
    clt_context_destroy(ctx);

    /* 3. Tuning in QUICK mode with a tiny budget (CLTRAIN_GEMM unset: forcing skips tuning): the first GEMM
     * shape is measured on CLBlast and the own kernel's QUICK candidates and the winner recorded, later shapes
     * find the budget spent and take the default; the layer still matches the reference. With
     * TU_CLBLAST_TUNE=1 CLBlast's own kernel parameters are tuned too (clt__gemm_tune_clblast, which on CPU
     * devices only FULL mode or the bench tool do: ten more program compiles, minutes on a cold cache, so not
     * by default). */
    unsetenv("CLTRAIN_GEMM");
    char dir[] = "/tmp/clt_ops_clblast_XXXXXX";
    if (!mkdtemp(dir)) {
        TU_CHECK(0, "mkdtemp failed");
        return tu_finish("test_ops_clblast");
    }
    /* verbose: each measured candidate is reported on stderr, captured in a file */
    char log[] = "/tmp/clt_ops_clblast_log_XXXXXX";
    int log_fd = mkstemp(log), err_fd = dup(2);
    fflush(stderr);
    if (log_fd < 0 || err_fd < 0 || dup2(log_fd, 2) < 0) TU_CHECK(0, "test setup (stderr redirection) failed");
    ctx = make_ctx(CLT_TUNE_QUICK, 0.01, dir, 1);
    if (ctx) {
        double t0 = clt__now_ms();
        tu_rng rng = {43};
        int dc[4] = {9, 33, 10, 1};
        check_dense(ctx, &rng, "quick-tuned", dc);
        /* the first GEMM decided (the forward, N x U x F) was measured, CLBlast among the candidates, and
         * its decision recorded */
        fflush(stderr);
        dup2(err_fd, 2);
        char text[16384] = "";
        ssize_t got = pread(log_fd, text, sizeof text - 1, 0);
        text[got > 0 ? got : 0] = 0;
        const char *shape = "m=9,n=10,k=33,ta=0,tb=1,batch=1";
        char want[96], v[128] = "";
        snprintf(want, sizeof want, "tune gemm %s: clblast ", shape);
        TU_CHECK(strstr(text, want) != NULL, "QUICK tuning did not measure CLBlast on %s:\n%s", shape, text);
        TU_CHECK(strstr(text, "FAIL") == NULL, "failures while stderr was captured:\n%s", text);
        clt__tune_key key = {"gemm", "gemm", "gemm-v1", shape};
        TU_CHECK(clt__tune_get(ctx, &key, v, sizeof v) == 1 && strncmp(v, "algo=", 5) == 0,
                 "QUICK tuning recorded '%s' for %s", v, shape);
        TU_CHECK(ctx->tune_spent_s > 0.01, "QUICK tuning budget: %.3f s spent", ctx->tune_spent_s);
        if (strstr(text, want) && strncmp(v, "algo=", 5) == 0)
            printf("ok   QUICK tuning measured CLBlast, recorded '%s' (%.2f s measured, %.1f s)\n", v,
                   ctx->tune_spent_s, (clt__now_ms() - t0) / 1000);
    }
    fflush(stderr);
    if (err_fd >= 0) dup2(err_fd, 2), close(err_fd);
    if (log_fd >= 0) close(log_fd);
    unlink(log);
    clt_context_destroy(ctx);

    /* CLBlast's parameter tuning (TU_CLBLAST_TUNE=1, see above), then a layer on CLBlast under the choice */
    const char *full = getenv("TU_CLBLAST_TUNE");
    if (full && strcmp(full, "1") == 0) setenv("CLTRAIN_GEMM", "clblast", 1);
    if (full && strcmp(full, "1") == 0 && (ctx = make_ctx(CLT_TUNE_QUICK, 0.01, dir, 0)) != NULL) {
        double t0 = clt__now_ms();
        TU_OK(ctx, clt__gemm_tune_clblast(ctx, 1));
        clt__tune_key key = {"clblast_xgemm", NULL, "clblast-v1", "device"};
        char v[128] = "";
        int xg = -9, xd = -9;
        int ok = clt__tune_get(ctx, &key, v, sizeof v) == 1 && sscanf(v, "xgemm=%d direct=%d", &xg, &xd) == 2 &&
                 xg >= -1 && xg < 4 && xd >= -1 && xd < 4;
        TU_CHECK(ok, "CLBlast tuning recorded '%s'", v);
        if (ok) printf("ok   CLBlast parameter tuning recorded '%s' (%.1f s)\n", v, (clt__now_ms() - t0) / 1000);
        tu_rng rng = {47};
        int dc[4] = {5, 7, 3, 1};
        check_dense(ctx, &rng, "CLBlast-tuned", dc);
        clt_context_destroy(ctx);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return tu_finish("test_ops_clblast");
}
