/* test_conv2d_direct.c - every conv2d algorithm (forced with $CLTRAIN_CONV_ALGO) against the double reference
 * and finite differences on odd shapes, accumulated input gradients, and the measured, cached choice
 * (including the rejection of a wrong candidate). Links the library's objects to see the chosen algorithm. */
#define _GNU_SOURCE /* mkdtemp, setenv */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"
#include "tune.h"

static const char *algo_name(int a) { return a == CLT__CONV_DIRECT ? "direct" : a == CLT__CONV_IM2COL ? "im2col" : "?"; }

/* The algorithm the graph's conv node runs (after compile) or reserved (before). */
static int node_algo(clt_graph *g, int node) { return clt__conv2d_node_algo(g->nodes[node]); }

/* The split of the layer's weight gradient after compile: direct, the number of image parts; im2col, the number of
 * split-k chunks S (0: none). */
static int node_split(clt_graph *g, int node) { return clt__conv2d_node_split(g->nodes[node]); }

/* One layer with the algorithm forced: forward and all gradients vs the reference. want_split > 0: the weight
 * gradient must be split that many ways (see node_split). */
static void check_forced_split(clt_context *ctx, tu_rng *rng, int ci, const int *cs, const char *algo, int want_split)
{
    tu_conv_geom u = tu_conv_geom_of(cs);
    clt_conv2d_params p = tu_conv_params(&u);
    int shape[4] = {u.n, u.c, u.h, u.w};
    int expect = strcmp(algo, "direct") == 0 && u.sh == 1 && u.sw == 1 ? CLT__CONV_DIRECT : CLT__CONV_IM2COL;
    char label[128];
    snprintf(label, sizeof label, "%s case %d (%d,%d,%d,%d) k%dx%d s%dx%d p%dx%d co%d%s", algo_name(expect), ci,
             u.n, u.c, u.h, u.w, u.kh, u.kw, u.sh, u.sw, u.ph, u.pw, u.co, u.bias ? "" : " no bias");
    setenv("CLTRAIN_CONV_ALGO", algo, 1);
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, shape, &x));
    int ok = TU_OK(ctx, clt_conv2d(g, x, &p, "conv", &y));
    unsetenv("CLTRAIN_CONV_ALGO");
    if (!ok) {
        clt_graph_destroy(g);
        return;
    }
    TU_CHECK(node_algo(g, 0) == expect, "%s: algorithm %d reserved", label, node_algo(g, 0));
    TU_OK(ctx, clt_graph_keep(g, x, 1));
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    clt_compile_settings cs2;
    clt_compile_default_settings(&cs2);
    if (!TU_OK(ctx, clt_graph_compile(g, &cs2))) {
        clt_graph_destroy(g);
        return;
    }
    TU_CHECK(node_algo(g, 0) == expect, "%s: algorithm %d runs", label, node_algo(g, 0));
    if (want_split) {
        TU_CHECK(node_split(g, 0) == want_split, "%s: weight gradient split %d ways, want %d", label, node_split(g, 0),
                 want_split);
        if (node_split(g, 0) == want_split) printf("ok   %s: weight gradient split %d ways\n", label, want_split);
    }
    size_t nx = clt_tensor_numel(x);
    float *xd = malloc(nx * sizeof(float));
    tu_fill_uniform(rng, xd, nx, -1, 1);
    tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = tu_conv_ref_op, .ud = &u,
                    .training = 1, .seed = (uint64_t)ci + 101};
    tu_conv_tolerances(&u, &c);
    if (want_split) c.fd_edges = 256; /* large planes: a sample of their edges (corners always) */
    tu_check_op(ctx, label, &c);
    free(xd);
    clt_graph_destroy(g);
}

static void check_forced(clt_context *ctx, tu_rng *rng, int ci, const int *cs, const char *algo)
{
    check_forced_split(ctx, rng, ci, cs, algo, 0);
}

/* The split weight gradients against the reference, on shapes that really split (asserted):
 * - direct: the images are split into parts whose dy fits a core's L2 (plan_direct: NPER = 64 Ki floats /
 *   (Cout * DPS), DPS = OH*WP rounded up to 16), summed by sum_parts; seed-cnn on CIFAR runs 32 and 16 parts.
 *   (3,1,64,64) Cout 8: DPS 4224, NPER 1, 3 parts; (3,1,54,54) Cout 8: DPS 3024, NPER 2, 2 parts, the last one
 *   image short.
 * - im2col: the weight-gradient GEMM over N*OH*OW is split into S = N*OH*OW / 4096 chunks (split_k_chunks) run
 *   as one batched GEMM, the remainder as one more, then summed: (2,1,80,80) gives 12800 = 3 * 4266 + 2. */
static void check_splits(clt_context *ctx, tu_rng *rng)
{
    int direct3[12] = {3, 1, 64, 64, 8, 3, 3, 1, 1, 1, 1, 1}, direct2[12] = {3, 1, 54, 54, 8, 3, 3, 1, 1, 1, 1, 1};
    int splitk[12] = {2, 1, 80, 80, 4, 3, 3, 1, 1, 1, 1, 1};
    check_forced_split(ctx, rng, 100, direct3, "direct", 3);
    check_forced_split(ctx, rng, 101, direct2, "direct", 2);
    check_forced_split(ctx, rng, 102, splitk, "im2col", 3);
}

/* mse(conv_a(x), conv_b(x)): both convs write x's gradient, the second one adds to it. */
typedef struct {
    tu_conv_geom a, b;
} pair_t;

static void ref_pair(void *v, const double *const *in, const double *const *p, double *out)
{
    const pair_t *d = v;
    size_t ny = (size_t)d->a.n * d->a.co * d->a.oh * d->a.ow;
    double *ya = malloc(ny * sizeof(double)), *yb = malloc(ny * sizeof(double));
    tu_conv_ref(&d->a, in[0], p[0], p[1], ya);
    tu_conv_ref(&d->b, in[0], p[2], p[3], yb);
    double s = 0;
    for (size_t i = 0; i < ny; i++) s += (ya[i] - yb[i]) * (ya[i] - yb[i]);
    out[0] = s / (double)ny;
    free(ya), free(yb);
}

static void check_shared_input(clt_context *ctx, tu_rng *rng, const char *algo)
{
    int ca[12] = {2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1, 1}, cb[12] = {2, 3, 7, 9, 4, 1, 3, 1, 1, 0, 1, 1};
    pair_t u = {tu_conv_geom_of(ca), tu_conv_geom_of(cb)};
    clt_conv2d_params pa = tu_conv_params(&u.a), pb = tu_conv_params(&u.b);
    int shape[4] = {u.a.n, u.a.c, u.a.h, u.a.w};
    char label[64];
    snprintf(label, sizeof label, "%s: x feeds two convs (accumulated dx)", algo);
    setenv("CLTRAIN_CONV_ALGO", algo, 1);
    clt_graph *g = NULL;
    clt_tensor *x, *ya, *yb, *l;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, shape, &x));
    int ok = TU_OK(ctx, clt_conv2d(g, x, &pa, "a", &ya)) && TU_OK(ctx, clt_conv2d(g, x, &pb, "b", &yb)) &&
             TU_OK(ctx, clt_mse(g, ya, yb, &l));
    unsetenv("CLTRAIN_CONV_ALGO");
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    if (ok && TU_OK(ctx, clt_graph_keep(g, x, 1)) && TU_OK(ctx, clt_graph_keep(g, l, 0)) &&
        TU_OK(ctx, clt_graph_compile(g, &cs))) {
        int expect = strcmp(algo, "direct") == 0 ? CLT__CONV_DIRECT : CLT__CONV_IM2COL;
        TU_CHECK(node_algo(g, 0) == expect && node_algo(g, 1) == expect, "%s: algorithms %d %d", label,
                 node_algo(g, 0), node_algo(g, 1));
        size_t nx = clt_tensor_numel(x);
        float *xd = malloc(nx * sizeof(float));
        tu_fill_uniform(rng, xd, nx, -1, 1);
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = l, .ref = ref_pair, .ud = &u,
                        .training = 1, .seed = 7};
        /* mean((ya - yb)^2) over ny outputs, |ya - yb| <= 2*(C*KH*KW + 1) = 56: the loss sums ny squares (after
         * C*KH*KW-term convs); dx sums 2*Cout*KH*KW products of 2*(ya - yb)/ny and |w| <= 1. */
        double ny = (double)clt_tensor_numel(ya), ym = 2.0 * (u.a.c * u.a.kh * u.a.kw + 1);
        c.rtol = tu_sum_rtol(ny) + 2 * tu_sum_rtol(u.a.c * u.a.kh * u.a.kw + 1);
        c.atol = 0;
        c.grad_k = 2.0 * u.a.co * u.a.kh * u.a.kw + ny;
        c.grad_rtol = tu_sum_rtol(c.grad_k);
        c.grad_atol = tu_sum_atol(c.grad_k, 2 * ym / ny);
        c.border = 2;
        tu_check_op(ctx, label, &c);
        free(xd);
    }
    clt_graph_destroy(g);
}

/* Builds and compiles a one-conv training graph on ctx; returns the algorithm reserved at add time in
 * *at_add and the one running after compile in *at_run (-1 on failure). */
static void build_layer(clt_context *ctx, const int *cs, int *at_add, int *at_run)
{
    tu_conv_geom u = tu_conv_geom_of(cs);
    clt_conv2d_params p = tu_conv_params(&u);
    int shape[4] = {u.n, u.c, u.h, u.w};
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    clt_compile_settings s;
    clt_compile_default_settings(&s);
    *at_add = *at_run = -1;
    if (TU_OK(ctx, clt_graph_create(ctx, &g)) && TU_OK(ctx, clt_input(g, "x", 4, shape, &x)) &&
        TU_OK(ctx, clt_conv2d(g, x, &p, "conv", &y))) {
        *at_add = node_algo(g, 0);
        if (TU_OK(ctx, clt_graph_keep(g, x, 1)) && TU_OK(ctx, clt_graph_keep(g, y, 0)) &&
            TU_OK(ctx, clt_graph_compile(g, &s)))
            *at_run = node_algo(g, 0);
    }
    clt_graph_destroy(g);
}

static clt_context *tune_ctx(const char *cache, int mode, const char *kernel_dir)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.tune = mode;
    s.cache_dir = cache;
    s.kernel_dir = kernel_dir;
    clt_context *ctx = NULL;
    if (clt_context_create(&s, &ctx) != CLT_OK) {
        fprintf(stderr, "context: %s\n", clt_errmsg(ctx));
        clt_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

static int lookup(clt_context *ctx, const char *shape, char *v, size_t len)
{
    clt__tune_key key = {"conv2d_algo", "conv2d", "", shape};
    return clt__tune_get(ctx, &key, v, len);
}

/* Measuring picks a candidate, records it with both times, and a later context reuses it at add time. */
static void check_measured(const char *dir)
{
    char cache[512];
    snprintf(cache, sizeof cache, "%s/measured", dir);
    int cs[12] = {4, 8, 12, 12, 16, 3, 3, 1, 1, 1, 1, 1};
    const char *shape = "n=4,c=8,h=12,w=12,co=16,kh=3,kw=3,sh=1,sw=1,ph=1,pw=1,pass=fwd+bwd+dx";
    clt_context *ctx = tune_ctx(cache, CLT_TUNE_FULL, NULL);
    if (!ctx) {
        tu_failures++;
        return;
    }
    int at_add, at_run;
    char v[160] = "";
    build_layer(ctx, cs, &at_add, &at_run);
    TU_CHECK(at_add == CLT__CONV_MEASURE, "measuring: both candidates reserved at add time (got %d)", at_add);
    TU_CHECK(at_run == CLT__CONV_IM2COL || at_run == CLT__CONV_DIRECT, "measuring: an algorithm runs (got %d)", at_run);
    TU_CHECK(lookup(ctx, shape, v, sizeof v) == 1, "measuring: decision recorded");
    TU_CHECK(strstr(v, "im2col_ms=") && strstr(v, "direct_ms=") && strncmp(v, "algo=", 5) == 0 &&
                 strncmp(v + 5, algo_name(at_run), 6) == 0, "measuring: recorded '%s' for %s", v, algo_name(at_run));
    printf("ok   measured choice: %s\n", v);
    clt_context_destroy(ctx);
    /* A context that may not measure takes the cached decision when the layer is added. */
    ctx = tune_ctx(cache, CLT_TUNE_CACHED, NULL);
    if (!ctx) {
        tu_failures++;
        return;
    }
    build_layer(ctx, cs, &at_add, &at_run);
    TU_CHECK(at_add == at_run && at_run == (strncmp(v + 5, "direct", 6) == 0 ? CLT__CONV_DIRECT : CLT__CONV_IM2COL),
             "cached: decision '%s' reused at add time (add %d, run %d)", v, at_add, at_run);
    clt_context_destroy(ctx);
}

/* A direct kernel that computes wrong values loses to im2col and is recorded as rejected. */
static void check_rejected(const char *dir)
{
    char kdir[512], cache[512], cmd[4096];
    snprintf(kdir, sizeof kdir, "%s/kernels", dir);
    snprintf(cache, sizeof cache, "%s/rejected", dir);
    /* the forward adds 0.5 to every output */
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && cp '%s'/*.cl '%s'/ && sed -i 's/VT v = a\\[r\\]\\[o\\] + bv;/VT v = a[r][o] + bv + 0.5f;/' "
             "'%s/conv2d.cl' && grep -q 'bv + 0.5f' '%s/conv2d.cl'",
             kdir, TEST_CL_DIR, kdir, kdir, kdir);
    if (system(cmd) != 0) {
        TU_CHECK(0, "could not prepare a broken kernel folder (%s)", cmd);
        return;
    }
    clt_context *ctx = tune_ctx(cache, CLT_TUNE_FULL, kdir);
    if (!ctx) {
        tu_failures++;
        return;
    }
    int cs[12] = {2, 3, 9, 10, 5, 3, 3, 1, 1, 0, 0, 1};
    int at_add, at_run;
    char v[160] = "";
    build_layer(ctx, cs, &at_add, &at_run);
    TU_CHECK(at_run == CLT__CONV_IM2COL, "broken direct kernel must not be chosen (got %d)", at_run);
    TU_CHECK(lookup(ctx, "n=2,c=3,h=9,w=10,co=5,kh=3,kw=3,sh=1,sw=1,ph=0,pw=0,pass=fwd+bwd+dx", v, sizeof v) == 1 &&
                 strstr(v, "algo=im2col") && strstr(v, "direct=rejected"),
             "broken direct kernel recorded as rejected (got '%s')", v);
    printf("ok   rejected candidate: %s\n", v);
    clt_context_destroy(ctx);
}

int main(void)
{
    /* This test is about the convolution choice: im2col's GEMMs use the own kernel with its default parameters,
     * so FULL-mode contexts do not also tune GEMMs and CLBlast (minutes of kernel compiles on a cold machine). */
    setenv("CLTRAIN_GEMM", "own", 1);
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    /* N, C, H, W, Cout, KH, KW, SH, SW, PH, PW, bias */
    int cases[][12] = {
        {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1},    /* padding 1, Cout < channel block, odd rows */
        {3, 5, 11, 13, 6, 3, 3, 1, 1, 0, 0, 1},  /* valid, 16-wide strips with a partial one */
        {1, 4, 20, 19, 9, 3, 3, 1, 1, 1, 1, 1},  /* two channel blocks, batch 1 */
        {2, 2, 8, 7, 3, 5, 5, 1, 1, 2, 2, 1},    /* 5x5, padding 2 */
        {2, 3, 6, 9, 2, 2, 3, 1, 1, 0, 1, 0},    /* rectangular kernel, mixed padding, no bias */
        {3, 4, 5, 5, 5, 1, 1, 1, 1, 0, 0, 0},    /* 1x1 */
        {1, 1, 2, 3, 2, 3, 3, 1, 1, 1, 1, 0},    /* input smaller than the kernel */
        {3, 5, 11, 13, 6, 3, 3, 2, 2, 1, 1, 1},  /* stride 2: direct does not apply, im2col runs */
    };
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    tu_rng rng = {77};
    const char *algos[2] = {"im2col", "direct"};
    for (int a = 0; a < 2; a++)
        for (int ci = 0; ci < ncases; ci++) check_forced(ctx, &rng, ci, cases[ci], algos[a]);
    for (int a = 0; a < 2; a++) check_shared_input(ctx, &rng, algos[a]);
    check_splits(ctx, &rng);
    /* a bad value is an error, not a silent default */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *y = NULL;
        int s4[4] = {1, 2, 6, 6};
        clt_conv2d_params p;
        clt_conv2d_default_params(&p, 2, 3);
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 4, s4, &x));
        setenv("CLTRAIN_CONV_ALGO", "winograd", 1);
        TU_CHECK(clt_conv2d(g, x, &p, NULL, &y) == CLT_ERR_INVALID && y == NULL &&
                     strstr(clt_errmsg(ctx), "CLTRAIN_CONV_ALGO"), "unknown CLTRAIN_CONV_ALGO must be refused");
        unsetenv("CLTRAIN_CONV_ALGO");
        clt_graph_destroy(g);
    }
    clt_context_destroy(ctx);

    char dir[] = "/tmp/clt_conv_tune_XXXXXX";
    if (!mkdtemp(dir)) {
        TU_CHECK(0, "mkdtemp failed");
        return tu_finish("test_conv2d_direct");
    }
    check_measured(dir);
    check_rejected(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return tu_finish("test_conv2d_direct");
}
