/* test_conv2d.c - 2-D convolution against a double reference and finite differences, plus error cases. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* One conv layer checked by tu_check_op; training = 0 compiles an inference graph and checks the forward only.
 * algo: NULL for the default choice (direct kernels on CPU devices where they apply), or a CLTRAIN_CONV_ALGO value
 * (the split-k cases force im2col, whose weight gradient is the split GEMM; test_conv2d_direct asserts the split). */
static void check_case(clt_context *ctx, tu_rng *rng, int ci, const int *cs, int training, const char *algo)
{
    tu_conv_geom u = tu_conv_geom_of(cs);
    int shape[4] = {u.n, u.c, u.h, u.w};
    clt_conv2d_params p = tu_conv_params(&u);
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    char label[96];
    snprintf(label, sizeof label, "conv2d case %d%s (%d,%d,%d,%d) k%dx%d s%dx%d p%dx%d co%d%s%s%s", ci,
             training ? "" : " inference", u.n, u.c, u.h, u.w, u.kh, u.kw, u.sh, u.sw, u.ph, u.pw, u.co,
             u.bias ? "" : " no bias", algo ? " " : "", algo ? algo : "");
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, shape, &x));
    if (algo) setenv("CLTRAIN_CONV_ALGO", algo, 1);
    int added = TU_OK(ctx, clt_conv2d(g, x, &p, "conv", &y));
    if (algo) unsetenv("CLTRAIN_CONV_ALGO");
    if (!added) {
        clt_graph_destroy(g);
        return;
    }
    TU_CHECK(clt_tensor_dim(y, 0) == u.n && clt_tensor_dim(y, 1) == u.co && clt_tensor_dim(y, 2) == u.oh &&
                 clt_tensor_dim(y, 3) == u.ow, "%s: output shape", label);
    TU_OK(ctx, clt_graph_keep(g, x, training));
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    clt_compile_settings cs2;
    clt_compile_default_settings(&cs2);
    cs2.training = training;
    if (!TU_OK(ctx, clt_graph_compile(g, &cs2))) {
        clt_graph_destroy(g);
        return;
    }
    size_t nx = clt_tensor_numel(x);
    float *xd = malloc(nx * sizeof(float));
    tu_fill_uniform(rng, xd, nx, -1, 1);
    if (training) {
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = tu_conv_ref_op, .ud = &u,
                        .training = 1, .seed = (uint64_t)ci + 11};
        tu_conv_tolerances(&u, &c);
        tu_check_op(ctx, label, &c);
    } else {
        /* Parameters as initialized; read them back for the reference. */
        size_t nw = (size_t)u.co * u.c * u.kh * u.kw, ny = clt_tensor_numel(y);
        float *wf = malloc(nw * sizeof(float)), *bf = calloc((size_t)u.co, sizeof(float));
        float *yf = malloc(ny * sizeof(float));
        double *xdd = malloc(nx * sizeof(double)), *wd = malloc(nw * sizeof(double));
        double *bd = malloc((size_t)u.co * sizeof(double)), *yr = malloc(ny * sizeof(double));
        int tr;
        TU_OK(ctx, clt_tensor_read(g, clt_graph_state_tensor(g, 0, &tr), 0, wf, nw));
        if (u.bias) {
            for (int i = 0; i < u.co; i++) bf[i] = (float)(0.1 * i - 0.2);
            TU_OK(ctx, clt_tensor_write(g, clt_graph_state_tensor(g, 1, &tr), bf, (size_t)u.co));
        }
        for (size_t i = 0; i < nx; i++) xdd[i] = xd[i];
        for (size_t i = 0; i < nw; i++) wd[i] = wf[i];
        for (int i = 0; i < u.co; i++) bd[i] = bf[i];
        TU_OK(ctx, clt_tensor_write(g, x, xd, nx));
        if (TU_OK(ctx, clt_graph_forward(g, 0)) && TU_OK(ctx, clt_tensor_read(g, y, 0, yf, ny))) {
            const double *ins[1] = {xdd}, *ps[2] = {wd, bd};
            tu_conv_ref_op(&u, ins, ps, yr);
            tu_opcheck tol = {0};
            tu_conv_tolerances(&u, &tol);
            if (tu_close(label, yf, yr, ny, tol.rtol, tol.atol)) printf("ok   %s\n", label);
        }
        free(wf), free(bf), free(yf), free(xdd), free(wd), free(bd), free(yr);
    }
    free(xd);
    clt_graph_destroy(g);
}

/* Every GEMM of an im2col layer (forward, split-k weight gradient with a remainder, data gradient) is
 * decided and its workspace sized at compile: a verbose context prints each new GEMM decision, and a
 * training step must print none (deciding in the step would allocate there, or even tune). The compile's
 * decisions show the split: N*OH*OW = 8463 in 2 chunks of 4231 (one batched GEMM) and a remainder of 1. */
static void gemm_decided_at_compile(void)
{
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.tune = CLT_TUNE_OFF;
    cs.verbose = 1;
    clt_context *ctx = NULL;
    const char *old = getenv("CLTRAIN_CONV_ALGO");
    char *saved = old ? strdup(old) : NULL;
    setenv("CLTRAIN_CONV_ALGO", "im2col", 1);
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    int xs[4] = {1, 1, 91, 93};
    clt_conv2d_params p;
    clt_conv2d_default_params(&p, 2, 3);
    p.pad_h = p.pad_w = 1;
    char cpath[64] = "/tmp/clt_conv_compile_XXXXXX", ctext[8192] = "";
    int cfd = mkstemp(cpath), saved_err = dup(2), compiled = 0;
    if (TU_OK(ctx, clt_context_create(&cs, &ctx)) && TU_OK(ctx, clt_graph_create(ctx, &g)) &&
        TU_OK(ctx, clt_input(g, "x", 4, xs, &x)) && TU_OK(ctx, clt_conv2d(g, x, &p, "c", &y)) &&
        TU_OK(ctx, clt_graph_keep(g, x, 1))) {
        fflush(stderr);
        int redirected = cfd >= 0 && saved_err >= 0 && dup2(cfd, 2) >= 0;
        compiled = clt_graph_compile(g, NULL) == CLT_OK;
        fflush(stderr);
        if (redirected) dup2(saved_err, 2);
        ssize_t got = cfd >= 0 ? pread(cfd, ctext, sizeof ctext - 1, 0) : -1;
        ctext[got > 0 ? got : 0] = 0;
        TU_CHECK(redirected, "test setup (stderr redirection) failed");
        TU_CHECK(compiled, "compile failed: %s\n%s", clt_errmsg(ctx), ctext);
        TU_CHECK(strstr(ctext, "gemm m=2 n=9 k=4231 ta=0 tb=1 batch=2") &&
                     strstr(ctext, "gemm m=2 n=9 k=1 ta=0 tb=1 batch=1"),
                 "split-k weight gradient (2 chunks of 4231 + 1) not decided at compile:\n%s", ctext);
    }
    if (saved_err >= 0) close(saved_err);
    if (cfd >= 0) close(cfd), unlink(cpath);
    if (compiled) {
        size_t nx = clt_tensor_numel(x), ny = clt_tensor_numel(y);
        float *buf = calloc(nx > ny ? nx : ny, sizeof(float));
        char path[64] = "/tmp/clt_conv_gemm_XXXXXX";
        int fd = mkstemp(path);
        fflush(stderr);
        int err_fd = dup(2);
        if (buf && fd >= 0 && err_fd >= 0 && dup2(fd, 2) >= 0) {
            TU_OK(ctx, clt_tensor_write(g, x, buf, nx));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_graph_backward_from(g, y, buf, ny));
            TU_OK(ctx, clt_context_finish(ctx));
            fflush(stderr);
            dup2(err_fd, 2);
            char text[4096] = "";
            ssize_t got = pread(fd, text, sizeof text - 1, 0);
            text[got > 0 ? got : 0] = 0;
            TU_CHECK(strstr(text, "gemm") == NULL, "GEMMs decided during a training step:\n%s", text);
        } else {
            TU_CHECK(0, "test setup (stderr redirection) failed");
        }
        if (err_fd >= 0) close(err_fd);
        if (fd >= 0) close(fd);
        unlink(path);
        free(buf);
    }
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    if (saved) setenv("CLTRAIN_CONV_ALGO", saved, 1);
    else unsetenv("CLTRAIN_CONV_ALGO");
    free(saved);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    /* N, C, H, W, Cout, KH, KW, SH, SW, PH, PW, bias */
    int cases[][12] = {
        {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1},  /* Cin 3, padding 1, rectangular input, batch 2 */
        {1, 2, 9, 9, 3, 3, 3, 2, 2, 1, 1, 1},  /* stride 2, batch 1 (GEMM writes NCHW directly) */
        {3, 4, 5, 5, 5, 1, 1, 1, 1, 0, 0, 0},  /* 1x1, no bias */
        {2, 2, 8, 7, 3, 5, 5, 1, 1, 2, 2, 1},  /* 5x5, padding 2 */
        {2, 3, 6, 9, 2, 2, 3, 2, 1, 0, 1, 1},  /* rectangular kernel, mixed stride and padding */
        {1, 1, 5, 5, 2, 5, 5, 1, 1, 0, 0, 1},  /* kernel covers the whole input: 1x1 output */
        {2, 2, 8, 8, 2, 2, 2, 3, 3, 0, 0, 1},  /* stride > kernel: some inputs get no gradient */
        {3, 5, 11, 13, 6, 3, 3, 2, 2, 1, 1, 1}, /* odd sizes, stride 2, padding 1, batch 3 */
        {1, 1, 2, 3, 2, 3, 3, 1, 1, 1, 1, 0},  /* input smaller than the kernel, padding makes it fit */
        {1, 1, 91, 93, 2, 3, 3, 1, 1, 1, 1, 1}, /* long N*OH*OW: split-k weight gradient, with a remainder */
        {2, 2, 64, 65, 3, 3, 3, 1, 1, 1, 1, 1}, /* split-k without a remainder, batch 2 */
    };
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    tu_rng rng = {2024};
    const int first_split = 9; /* the split-k cases run im2col */
    for (int ci = 0; ci < ncases; ci++) check_case(ctx, &rng, ci, cases[ci], 1, ci >= first_split ? "im2col" : NULL);
    /* Inference graphs (no gradients, saved columns used as forward scratch). */
    check_case(ctx, &rng, 0, cases[0], 0, NULL);
    check_case(ctx, &rng, 1, cases[1], 0, NULL);
    gemm_decided_at_compile();

    /* Errors come back as statuses with messages. */
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    int s4[4] = {1, 2, 4, 4}, s2[2] = {3, 4};
    clt_conv2d_params p;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, s4, &x));
    clt_conv2d_default_params(&p, 3, 5);
    TU_CHECK(clt_conv2d(g, x, &p, NULL, &y) == CLT_ERR_SHAPE && y == NULL, "5x5 kernel on a 4x4 input must be refused");
    TU_MSG(ctx, "kernel 5x5 is larger than input 'x' (1,2,4,4) with padding 0x0");
    p.pad_h = p.pad_w = 1;
    TU_CHECK(clt_conv2d(g, x, &p, NULL, &y) == CLT_OK && y != NULL, "5x5 kernel on a 4x4 input with padding 1 fits");
    TU_CHECK(clt_errmsg(ctx)[0] == 0, "a successful call after a failed one left the message '%s'", clt_errmsg(ctx));
    TU_CHECK(clt_conv2d(g, x, NULL, NULL, &y) == CLT_ERR_INVALID && y == NULL, "NULL params must be refused");
    TU_MSG(ctx, "clt_conv2d: params is NULL");
    clt_conv2d_default_params(&p, 3, 3);
    p.stride_h = 0;
    TU_CHECK(clt_conv2d(g, x, &p, NULL, &y) == CLT_ERR_INVALID, "stride 0 must be refused");
    TU_MSG(ctx, "stride 0x1");
    clt_conv2d_default_params(&p, 0, 3);
    TU_CHECK(clt_conv2d(g, x, &p, NULL, &y) == CLT_ERR_INVALID, "0 output channels must be refused");
    TU_MSG(ctx, "out_channels 0");
    clt_conv2d_default_params(&p, 3, 3);
    TU_CHECK(clt_conv2d(g, NULL, &p, NULL, &y) == CLT_ERR_INVALID, "NULL input must be refused");
    TU_MSG(ctx, "clt_conv2d: input is NULL");
    clt_tensor *x2;
    TU_OK(ctx, clt_input(g, "x2", 2, s2, &x2));
    TU_CHECK(clt_conv2d(g, x2, &p, NULL, &y) == CLT_ERR_SHAPE, "2-D input must be refused");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_conv2d");
}
