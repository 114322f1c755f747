/* onnx_ref.c - helper of test_onnx.py: trains two small networks covering every exportable layer for a few steps
 * (so batch-norm statistics and weights are not their initial values), saves them, exports them to ONNX, and
 * writes an input batch and cltrain's logits for it (raw float32) next to each model, with a line per model in
 * cases.txt ("name n c h w classes"). Also checks that an int8 checkpoint is refused naming its ops. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *const models[2][2] = {
    {"a", "conv 8 3 stride=2 pad=same\nbatchnorm\nleaky_relu 0.1\nmaxpool 2\navgpool 3 stride=1 pad=1\n"
          "residual project {\n conv 16 3 pad=same\n gelu\n}\nresidual {\n conv 16 3 pad=same\n batchnorm\n sigmoid\n"
          " tanh\n}\nglobal_avgpool\ndropout 0.3\nresidual project {\n dense 12\n relu\n}\ndense classes\n"},
    {"b", "conv 4 3\nrelu\nconv 6 2 stride=2 pad=1 bias=0\nflatten\ndense 8 bias=0\nbatchnorm\nrelu\ndense classes\n"},
};
enum { N = 6, C = 3, H = 12, W = 12, K = 4 };

static int run(clt_context *ctx, const char *dir, const char *name, const char *text, FILE *cases, tu_rng *rng)
{
    char ck[512], onnx[512], xp[512], lp[512];
    snprintf(ck, sizeof ck, "%s/%s.ckpt", dir, name);
    snprintf(onnx, sizeof onnx, "%s/%s.onnx", dir, name);
    snprintf(xp, sizeof xp, "%s/%s_x.bin", dir, name);
    snprintf(lp, sizeof lp, "%s/%s_logits.bin", dir, name);
    clt_model *m = NULL;
    clt_graph *g = NULL, *ev = NULL;
    clt_tensor *x, *lab, *logits, *loss;
    int xs[4] = {N, C, H, W}, ls[1] = {N}, ok = 1;
    float xb[N * C * H * W], yb[N], out[N * K];
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    ok = TU_OK(ctx, clt_model_parse(text, name, &m)) && TU_OK(ctx, clt_graph_create(ctx, &g)) &&
         TU_OK(ctx, clt_input(g, "x", 4, xs, &x)) && TU_OK(ctx, clt_input(g, "y", 1, ls, &lab)) &&
         TU_OK(ctx, clt_model_build(g, m, x, K, &logits)) &&
         TU_OK(ctx, clt_softmax_cross_entropy(g, logits, lab, 0, &loss)) && TU_OK(ctx, clt_graph_compile(g, &cs));
    for (int s = 0; ok && s < 4; s++) {
        tu_fill_uniform(rng, xb, sizeof xb / sizeof *xb, -2, 2);
        for (int i = 0; i < N; i++) yb[i] = (float)(i % K);
        ok = TU_OK(ctx, clt_tensor_write(g, x, xb, sizeof xb / sizeof *xb)) && TU_OK(ctx, clt_tensor_write(g, lab, yb, N)) &&
             TU_OK(ctx, clt_graph_forward(g, 1)) && TU_OK(ctx, clt_graph_backward(g, loss)) &&
             TU_OK(ctx, clt_graph_step(g, 0.05f));
    }
    ok = ok && TU_OK(ctx, clt_graph_save(g, ck, NULL, 0));
    remove(onnx);
    ok = ok && TU_OK(ctx, clt_onnx_export(ctx, ck, onnx));
    tu_fill_uniform(rng, xb, sizeof xb / sizeof *xb, -2, 2);
    ok = ok && TU_OK(ctx, clt_graph_load(ctx, ck, NULL, &ev)) && TU_OK(ctx, clt_predict(ev, xb, N, out));
    if (ok) {
        FILE *f = fopen(xp, "wb"), *l = fopen(lp, "wb");
        ok = f && l && fwrite(xb, sizeof xb, 1, f) == 1 && fwrite(out, sizeof out, 1, l) == 1;
        if (f) fclose(f);
        if (l) fclose(l);
        fprintf(cases, "%s %d %d %d %d %d\n", name, N, C, H, W, K);
    }
    if (ok && !strcmp(name, "b")) {
        /* an int8 checkpoint is refused, naming its ops */
        char q[512];
        snprintf(q, sizeof q, "%s/%s.q8", dir, name);
        remove(q);
        ok = TU_OK(ctx, clt_quantize(ctx, ck, xb, N, NULL, q, NULL));
        TU_CHECK(clt_onnx_export(ctx, q, onnx) == CLT_ERR_UNSUPPORTED && strstr(clt_errmsg(ctx), "qconv2d/qdense"),
                 "an int8 checkpoint must be refused naming its ops: %s", clt_errmsg(ctx));
    }
    clt_graph_destroy(ev);
    clt_graph_destroy(g);
    clt_model_destroy(m);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: onnx_ref OUTDIR\n");
        return 2;
    }
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    char cp[512];
    snprintf(cp, sizeof cp, "%s/cases.txt", argv[1]);
    FILE *cases = fopen(cp, "w");
    if (!cases) return 1;
    tu_rng rng = {21};
    for (int i = 0; i < 2; i++) run(ctx, argv[1], models[i][0], models[i][1], cases, &rng);
    fclose(cases);
    clt_context_destroy(ctx);
    return tu_finish("onnx_ref");
}
