/* test_tool_model_build.c - every preset and a residual model built into real graphs: shapes, parameter counts,
 * a forward and a training step that stay finite. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tool.h"

static void build_and_run(clt_context *ctx, const tool_model *m, int n, int c, int h, int w)
{
    char err[TOOL_ERR_LEN];
    tool_model_info info;
    int st = tool_model_check(m, c, h, w, 10, &info, NULL, err);
    TU_CHECK(st == CLT_OK, "%s: check: %s", m->name, err);
    if (st) return;
    clt_graph *g = NULL;
    clt_tensor *x, *labels, *logits = NULL, *loss;
    int xs[4] = {n, c, h, w}, ls[1] = {n};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
    TU_OK(ctx, clt_input(g, "labels", 1, ls, &labels));
    st = tool_model_build(m, g, x, 10, &logits, err);
    TU_CHECK(st == CLT_OK, "%s: build: %s", m->name, err);
    if (st) {
        clt_graph_destroy(g);
        return;
    }
    TU_CHECK(clt_tensor_ndim(logits) == 2 && clt_tensor_dim(logits, 0) == n && clt_tensor_dim(logits, 1) == 10,
             "%s: logits shape", m->name);
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
    TU_CHECK(params == info.params, "%s: graph has %lld parameters, check counted %lld", m->name, params, info.params);
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
        TU_CHECK(finite, "%s: non-finite loss or logits", m->name);
        TU_CHECK(l0 > 0.5 && l0 < 20, "%s: implausible initial loss %g", m->name, l0);
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
    char err[TOOL_ERR_LEN];
    for (int i = 0; tool_model_presets[i]; i++) {
        tool_model m;
        if (tool_model_load(tool_model_presets[i], &m, err)) {
            TU_CHECK(0, "%s", err);
            continue;
        }
        build_and_run(ctx, &m, 4, 3, 32, 32);
        build_and_run(ctx, &m, 3, 1, 28, 28);
        tool_model_free(&m);
    }
    const char *res = "conv 8 3 pad=same\nbatchnorm\nleaky_relu 0.1\n"
                      "residual {\n conv 8 3 pad=same\n gelu\n}\n"
                      "residual project {\n conv 16 3 stride=2 pad=same bias=0\n batchnorm\n tanh\n}\n"
                      "avgpool 2\nglobal_avgpool\n"
                      "residual project {\n dense 12\n sigmoid\n}\n"
                      "dropout 0.3\ndense classes\n";
    tool_model m;
    int st = tool_model_parse(res, "residual.model", &m, err);
    TU_CHECK(st == CLT_OK, "%s", err);
    if (st == CLT_OK) {
        build_and_run(ctx, &m, 2, 3, 9, 9);
        tool_model_free(&m);
    }
    /* A shape error found while building names the line, and nothing is returned. */
    st = tool_model_parse("flatten\nmaxpool 2\ndense classes\n", "bad.model", &m, err);
    if (st == CLT_OK) {
        clt_graph *g = NULL;
        clt_tensor *x, *lg = (clt_tensor *)&st;
        int xs[4] = {2, 1, 4, 4};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
        st = tool_model_build(&m, g, x, 10, &lg, err);
        TU_CHECK(st == CLT_ERR_SHAPE && strncmp(err, "bad.model:2: ", 13) == 0 && lg == NULL, "build error: %s", err);
        clt_graph_destroy(g);
        tool_model_free(&m);
    }
    clt_context_destroy(ctx);
    return tu_finish("test_tool_model_build");
}
