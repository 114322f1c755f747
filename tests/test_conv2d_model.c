/* test_conv2d_model.c - convolution algorithms must agree inside a planned multi-layer graph, where layers share
 * arena memory (single-layer tests cannot see a kernel that depends on memory another tensor reuses). */
#include <stdlib.h>

#include "testutil.h"

enum { B = 16, C = 3, H = 16, W = 16, K = 10 };

/* conv-bn-relu x2, maxpool, conv-bn-relu x2 (padded, like the cnn preset), maxpool, dense; one training step's
 * gradients of every parameter, with the given CLTRAIN_CONV_ALGO. Returns malloc'd gradients, *n values. */
static float *grads(clt_context *ctx, const char *algo, size_t *n, float *loss_out)
{
    setenv("CLTRAIN_CONV_ALGO", algo, 1);
    clt_graph *g = NULL;
    clt_tensor *x, *lab, *h, *loss;
    int xs[4] = {B, C, H, W}, ls[1] = {B};
    float *out = NULL;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
    TU_OK(ctx, clt_input(g, "labels", 1, ls, &lab));
    h = x;
    int chans[4] = {8, 8, 16, 16};
    for (int i = 0; i < 4; i++) {
        clt_conv2d_params p;
        clt_conv2d_default_params(&p, chans[i], 3);
        p.pad_h = p.pad_w = 1;
        p.bias = 0;
        TU_OK(ctx, clt_conv2d(g, h, &p, NULL, &h));
        TU_OK(ctx, clt_batch_norm(g, h, 0.1f, 1e-5f, NULL, &h));
        TU_OK(ctx, clt_relu(g, h, &h));
        if (i % 2) TU_OK(ctx, clt_max_pool2d(g, h, 2, 2, 0, &h));
    }
    TU_OK(ctx, clt_dense(g, h, K, 1, CLT_INIT_DEFAULT, "fc", &h));
    TU_OK(ctx, clt_softmax_cross_entropy(g, h, lab, 0.0f, &loss));
    if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
        tu_rng rng = {77};
        float *xd = malloc(sizeof(float) * B * C * H * W), ld[B];
        tu_fill_uniform(&rng, xd, (size_t)B * C * H * W, -1, 1);
        for (int i = 0; i < B; i++) ld[i] = (float)(i % K);
        TU_OK(ctx, clt_tensor_write(g, x, xd, (size_t)B * C * H * W));
        TU_OK(ctx, clt_tensor_write(g, lab, ld, B));
        free(xd);
        /* Two steps, so the second backward runs on memory the first pass left behind. */
        for (int s = 0; s < 2; s++) {
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_graph_backward(g, loss));
            if (s == 0) TU_OK(ctx, clt_graph_step(g, 0.01f));
        }
        TU_OK(ctx, clt_tensor_read(g, loss, 0, loss_out, 1));
        *n = 0;
        for (int i = 0; i < clt_graph_state_count(g); i++) {
            int tr;
            clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
            if (tr) *n += clt_tensor_numel(t);
        }
        out = malloc(*n * sizeof(float));
        size_t o = 0;
        for (int i = 0; i < clt_graph_state_count(g); i++) {
            int tr;
            clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
            if (!tr) continue;
            TU_OK(ctx, clt_tensor_read(g, t, 1, out + o, clt_tensor_numel(t)));
            o += clt_tensor_numel(t);
        }
    }
    clt_graph_destroy(g);
    return out;
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    size_t n1 = 0, n2 = 0;
    float l1 = 0, l2 = 0;
    float *a = grads(ctx, "im2col", &n1, &l1), *b = grads(ctx, "direct", &n2, &l2);
    TU_CHECK(a && b && n1 == n2, "both graphs must build");
    if (a && b && n1 == n2) {
        tu_close_f("parameter gradients, direct vs im2col", b, a, n1, 1e-3, 1e-5);
        TU_CHECK(l1 - l2 < 1e-4f && l2 - l1 < 1e-4f, "losses differ: %g vs %g", l1, l2);
    }
    free(a);
    free(b);
    clt_context_destroy(ctx);
    return tu_finish("test_conv2d_model");
}
