/* test_softmax.c - softmax over dim 1 against a double reference and finite differences. */
#include <math.h>
#include <stdlib.h>

#include "testutil.h"

typedef struct {
    int n, c, hw;
    int fan; /* y = op(x) + x: x feeds two nodes, so op's gradient adds to the one there */
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    ud_t *d = v;
    for (int n = 0; n < d->n; n++)
        for (int s = 0; s < d->hw; s++) {
            const double *x = in[0] + (size_t)n * d->c * d->hw + s;
            double *y = out + (size_t)n * d->c * d->hw + s, m = -INFINITY, sum = 0;
            for (int c = 0; c < d->c; c++) m = fmax(m, x[c * d->hw]);
            for (int c = 0; c < d->c; c++) sum += exp(x[c * d->hw] - m);
            for (int c = 0; c < d->c; c++) y[c * d->hw] = exp(x[c * d->hw] - m) / sum;
        }
    if (d->fan)
        for (size_t i = 0; i < (size_t)d->n * d->c * d->hw; i++) out[i] += in[0][i];
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    /* (N, C, H, W) with ndim 2 or 4; batch 1, odd sizes, one class, wide rows. */
    int cases[][5] = {{2, 1, 10, 1, 1}, {2, 5, 7, 1, 1}, {2, 3, 1, 1, 1}, {4, 2, 3, 5, 3}, {4, 1, 4, 2, 2},
                      {2, 3, 130, 1, 1}, {4, 2, 6, 9, 10}};
    tu_rng rng = {11};
    for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
        int *cs = cases[ci], nd = cs[0];
        clt_graph *g = NULL;
        clt_tensor *x, *y, *y0;
        int fan = ci == 3;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", nd, cs + 1, &x));
        TU_OK(ctx, clt_softmax(g, x, &y0));
        if (fan) TU_OK(ctx, clt_add(g, y0, x, &y));
        else y = y0;
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        TU_OK(ctx, clt_graph_keep(g, y, 0));
        if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
            clt_graph_destroy(g);
            continue;
        }
        size_t n = clt_tensor_numel(x);
        float *xd = malloc(n * sizeof(float));
        tu_fill_uniform(&rng, xd, n, -3, 3);
        if (ci == 1) xd[3] = 100.0f, xd[4] = 99.0f; /* large logits: exp would overflow without the max shift */
        ud_t u = {cs[1], cs[2], nd == 4 ? cs[3] * cs[4] : 1, fan};
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref, .ud = &u,
                        .training = 1, .seed = (uint64_t)ci + 3};
        /* A row of C exps summed (k = C), float32 exp (8 more u of rtol); curved (finite-difference truncation
         * h^2/6 * |f'''|, |f'''| <= 2 for softmax with |R| <= 1). */
        c.rtol = c.grad_rtol = tu_sum_rtol(cs[2]) + 8 * TU_U32;
        c.atol = c.grad_atol = tu_sum_atol(cs[2], 1);
        c.fd_atol = 1e-6 / 6 * 2;
        char label[64];
        snprintf(label, sizeof label, "softmax case %d", ci);
        tu_check_op(ctx, label, &c);
        free(xd);
        clt_graph_destroy(g);
    }
    /* Shape errors. */
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    int s3[3] = {2, 3, 4};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 3, s3, &x));
    TU_CHECK(clt_softmax(g, x, &y) == CLT_ERR_SHAPE && y == NULL, "3-D input must be refused");
    TU_MSG(ctx, "clt_softmax: input 'x' (2,3,4) must be (N,C) or (N,C,H,W)");
    TU_CHECK(clt_softmax(g, NULL, &y) == CLT_ERR_INVALID, "NULL input must be refused");
    TU_MSG(ctx, "clt_softmax: input is NULL");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_softmax");
}
