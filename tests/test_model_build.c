/* test_model_build.c - clt_model_build: every preset and a residual model built into real graphs: shapes, parameter counts,
 * a forward and a training step that stay finite. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain.h"
#include "testutil.h"

static void build_and_run(clt_context *ctx, clt_model *m, int n, int c, int h, int w)
{
    clt_model_info info;
    int st = clt_model_check(m, c, h, w, 10, &info, NULL, 0);
    TU_CHECK(st == CLT_OK, "%s: check: %s", clt_model_name(m), clt_model_errmsg(m));
    if (st) return;
    clt_graph *g = NULL;
    clt_tensor *x, *labels, *logits = NULL, *loss;
    int xs[4] = {n, c, h, w}, ls[1] = {n};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
    TU_OK(ctx, clt_input(g, "labels", 1, ls, &labels));
    st = clt_model_build(g, m, x, 10, &logits);
    TU_CHECK(st == CLT_OK, "%s: build: %s", clt_model_name(m), clt_errmsg(ctx));
    if (st) {
        clt_graph_destroy(g);
        return;
    }
    TU_CHECK(clt_tensor_ndim(logits) == 2 && clt_tensor_dim(logits, 0) == n && clt_tensor_dim(logits, 1) == 10,
             "%s: logits shape", clt_model_name(m));
    TU_OK(ctx, clt_softmax_cross_entropy(g, logits, labels, 0, &loss));
    TU_OK(ctx, clt_graph_keep(g, logits, 0));
    /* The graph's trainable parameters are exactly what the check counted. */
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_SGD);
    if (!TU_OK(ctx, clt_graph_compile(g, &cs))) {
        clt_graph_destroy(g);
        return;
    }
    long long params = 0;
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        int trainable;
        clt_tensor *t = clt_graph_state_tensor(g, i, &trainable);
        if (trainable) params += (long long)clt_tensor_numel(t);
    }
    TU_CHECK(params == info.params, "%s: graph has %lld parameters, check counted %lld", clt_model_name(m), params, info.params);
    size_t nx = (size_t)n * c * h * w;
    float *xd = malloc(nx * sizeof(float)), *ld = malloc((size_t)n * sizeof(float)),
          *out = malloc((size_t)n * 10 * sizeof(float));
    tu_rng rng = {7};
    tu_fill_uniform(&rng, xd, nx, 0, 1);
    for (int i = 0; i < n; i++) ld[i] = (float)(i % 10);
    TU_OK(ctx, clt_tensor_write(g, x, xd, nx));
    TU_OK(ctx, clt_tensor_write(g, labels, ld, (size_t)n));
    float l0 = NAN;
    if (TU_OK(ctx, clt_graph_forward(g, 1)) && TU_OK(ctx, clt_graph_backward(g, loss)) &&
        TU_OK(ctx, clt_graph_step(g, 0.01f)) && TU_OK(ctx, clt_tensor_read(g, loss, 0, &l0, 1)) &&
        TU_OK(ctx, clt_graph_forward(g, 0)) && TU_OK(ctx, clt_tensor_read(g, logits, 0, out, (size_t)n * 10))) {
        int finite = isfinite(l0);
        for (int i = 0; i < n * 10; i++) finite &= isfinite(out[i]);
        TU_CHECK(finite, "%s: non-finite loss or logits", clt_model_name(m));
        TU_CHECK(l0 > 0.5 && l0 < 20, "%s: implausible initial loss %g", clt_model_name(m), l0);
    }
    free(xd);
    free(ld);
    free(out);
    clt_graph_destroy(g);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    for (int i = 0; clt_model_preset_name(i); i++) {
        clt_model *m = NULL;
        if (clt_model_preset(clt_model_preset_name(i), &m)) {
            TU_CHECK(0, "%s", clt_model_errmsg(m));
        } else if (clt_model_lm(m, NULL) == 1) {
            /* Language models take token ids (tests/test_gpt.c); clt_model_build refuses them by name. */
            clt_graph *g = NULL;
            clt_tensor *x, *y = NULL;
            int s4[4] = {2, 3, 8, 8};
            TU_OK(ctx, clt_graph_create(ctx, &g));
            TU_OK(ctx, clt_input(g, "x", 4, s4, &x));
            TU_CHECK(clt_model_build(g, m, x, 10, &y) == CLT_ERR_INVALID && !y, "language model on images");
            TU_CHECK(strstr(clt_errmsg(ctx), "is a language model (gpt line): build it with clt_model_build_lm"),
                     "message: %s", clt_errmsg(ctx));
            clt_graph_destroy(g);
        } else {
            build_and_run(ctx, m, 4, 3, 32, 32);
            build_and_run(ctx, m, 3, 1, 28, 28);
        }
        clt_model_destroy(m);
    }
    const char *res = "conv 8 3 pad=same\nbatchnorm\nleaky_relu 0.1\n"
                      "residual {\n conv 8 3 pad=same\n gelu\n}\n"
                      "residual project {\n conv 16 3 stride=2 pad=same bias=0\n batchnorm\n tanh\n}\n"
                      "avgpool 2\nglobal_avgpool\n"
                      "residual project {\n dense 12\n sigmoid\n}\n"
                      "dropout 0.3\ndense classes\n";
    clt_model *m = NULL;
    int st = clt_model_parse(res, "residual.model", &m);
    TU_CHECK(st == CLT_OK, "%s", clt_model_errmsg(m));
    if (st == CLT_OK) build_and_run(ctx, m, 2, 3, 9, 9);
    clt_model_destroy(m);
    m = NULL;
    /* A shape error found while building names the line, and nothing is returned. */
    st = clt_model_parse("flatten\nmaxpool 2\ndense classes\n", "bad.model", &m);
    if (st == CLT_OK) {
        clt_graph *g = NULL;
        clt_tensor *x, *lg = (clt_tensor *)&st;
        int xs[4] = {2, 1, 4, 4};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
        st = clt_model_build(g, m, x, 10, &lg);
        const char *err = clt_errmsg(ctx);
        TU_CHECK(st == CLT_ERR_SHAPE && strcmp(err, "bad.model:2: maxpool needs an image (C,H,W) input, got a vector (16)") == 0 &&
                 lg == NULL, "build error: %s", err);
        /* A shape error changes nothing: the graph takes the right model afterwards. */
        clt_model *ok = NULL;
        if (clt_model_parse("flatten\ndense classes\n", "ok.model", &ok) == CLT_OK) {
            TU_OK(ctx, clt_model_build(g, ok, x, 10, &lg));
            TU_CHECK(clt_tensor_ndim(lg) == 2 && clt_tensor_dim(lg, 1) == 10, "model after a failed build");
        }
        clt_model_destroy(ok);
        clt_graph_destroy(g);
    }
    clt_model_destroy(m);
    /* A layer whose output cannot be a tensor is blamed for its output size, with the line and layer name. */
    m = NULL;
    if (clt_model_parse("conv 65536 3\nflatten\ndense classes\n", "wide.model", &m) == CLT_OK) {
        clt_graph *g = NULL;
        clt_tensor *x, *lg = NULL;
        int xs[4] = {64, 3, 32, 32};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
        st = clt_model_build(g, m, x, 10, &lg);
        TU_CHECK(st == CLT_ERR_SHAPE && lg == NULL &&
                 strcmp(clt_errmsg(ctx), "wide.model:1: conv1: clt_conv2d: the output (64,65536,30,30) of input 'x' "
                        "(64,3,32,32) would hold 3774873600 values, more than a tensor may (2^31-1); use fewer output "
                        "channels or a smaller batch") == 0, "wide conv: %d %s", st, clt_errmsg(ctx));
        clt_graph_destroy(g);
    }
    clt_model_destroy(m);
    clt_context_destroy(ctx);
    return tu_finish("test_model_build");
}
