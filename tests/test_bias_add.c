/* test_bias_add.c - per-channel bias against a double reference and finite differences. */
#include <stdlib.h>

#include "testutil.h"

typedef struct {
    int n, c, hw;
    int fan; /* y = op(x) + x: x feeds two nodes, so op's gradient adds to the one there */
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    ud_t *d = v;
    for (int n = 0; n < d->n; n++)
        for (int c = 0; c < d->c; c++)
            for (int s = 0; s < d->hw; s++) {
                size_t i = ((size_t)n * d->c + c) * d->hw + s;
                out[i] = in[0][i] + p[0][c];
            }
    if (d->fan)
        for (size_t i = 0; i < (size_t)d->n * d->c * d->hw; i++) out[i] += in[0][i];
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    /* ndim, then (N, C, H, W): batch 1, odd sizes, 2-D and 4-D, more than 64 positions. */
    int cases[][5] = {{2, 1, 5, 1, 1}, {2, 7, 3, 1, 1}, {4, 1, 3, 2, 3}, {4, 3, 4, 5, 1}, {4, 2, 3, 9, 11},
                      {2, 70, 2, 1, 1}};
    tu_rng rng = {21};
    for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
        int *cs = cases[ci], nd = cs[0];
        clt_graph *g = NULL;
        clt_tensor *x, *y, *y0;
        int fan = ci == 4;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", nd, cs + 1, &x));
        TU_OK(ctx, clt_bias_add(g, x, "b", &y0));
        if (fan) TU_OK(ctx, clt_add(g, y0, x, &y));
        else y = y0;
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        TU_OK(ctx, clt_graph_keep(g, y, 0));
        if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
            clt_graph_destroy(g);
            continue;
        }
        /* The bias starts at zero. */
        float b0[128];
        clt_tensor *bias = clt_graph_state_tensor(g, 0, NULL);
        TU_CHECK(bias && clt_tensor_numel(bias) == (size_t)cs[2], "one bias per channel");
        if (bias && TU_OK(ctx, clt_tensor_read(g, bias, 0, b0, (size_t)cs[2])))
            for (int i = 0; i < cs[2]; i++) TU_CHECK(b0[i] == 0.0f, "initial bias %g", b0[i]);
        size_t n = clt_tensor_numel(x);
        float *xd = malloc(n * sizeof(float));
        tu_fill_uniform(&rng, xd, n, -1, 1);
        ud_t u = {cs[1], cs[2], nd == 4 ? cs[3] * cs[4] : 1, fan};
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref, .ud = &u,
                        .training = 1, .seed = (uint64_t)ci + 1,
                        /* forward: x + b (+ x); the bias gradient sums N*H*W terms */
                        .k = 3, .grad_k = (double)u.n * u.hw, /* dx: dy (+ dy) */
                        .in_grad_rtol = tu_sum_rtol(2), .in_grad_atol = tu_sum_atol(2, 1)};
        char label[64];
        snprintf(label, sizeof label, "bias_add case %d", ci);
        tu_check_op(ctx, label, &c);
        free(xd);
        clt_graph_destroy(g);
    }
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    int s3[3] = {2, 3, 4};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 3, s3, &x));
    TU_CHECK(clt_bias_add(g, x, NULL, &y) == CLT_ERR_SHAPE && y == NULL, "3-D input must be refused");
    TU_MSG(ctx, "clt_bias_add: input 'x' (2,3,4) must be (N,C) or (N,C,H,W)");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_bias_add");
}
