/* test_dense.c - fully connected layer against a double reference and finite differences. */
#include <stdlib.h>

#include "testutil.h"

typedef struct {
    int n, f, u, bias;
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    ud_t *d = v;
    for (int r = 0; r < d->n; r++)
        for (int j = 0; j < d->u; j++) {
            double s = d->bias ? p[1][j] : 0;
            for (int k = 0; k < d->f; k++) s += in[0][r * d->f + k] * p[0][j * d->f + k];
            out[r * d->u + j] = s;
        }
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    /* (N, C, H, W) inputs, flattened by the layer; batch 1 and odd sizes. */
    int cases[][6] = {{1, 5, 1, 1, 3, 1}, {4, 3, 2, 3, 7, 1}, {9, 33, 1, 1, 10, 0}, {2, 17, 1, 1, 1, 1}};
    tu_rng rng = {99};
    for (int ci = 0; ci < 4; ci++) {
        int *cs = cases[ci];
        int shape[4] = {cs[0], cs[1], cs[2], cs[3]};
        clt_graph *g = NULL;
        clt_tensor *x, *y;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 4, shape, &x));
        TU_OK(ctx, clt_dense(g, x, cs[4], cs[5], CLT_INIT_DEFAULT, "fc", &y));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        TU_OK(ctx, clt_graph_keep(g, y, 0));
        if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
            clt_graph_destroy(g);
            continue;
        }
        size_t n = clt_tensor_numel(x);
        float *xd = malloc(n * sizeof(float));
        tu_fill_uniform(&rng, xd, n, -1, 1);
        ud_t u = {cs[0], cs[1] * cs[2] * cs[3], cs[4], cs[5]};
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref, .ud = &u,
                        .training = 1, .seed = (uint64_t)ci + 5,
                        /* y sums F products (+ bias); dW and db sum over the N rows, dx over the U units */
                        .k = u.f + 1, .grad_k = u.n + 1,
                        .in_grad_rtol = tu_sum_rtol(u.u), .in_grad_atol = tu_sum_atol(u.u, 1)};
        char label[64];
        snprintf(label, sizeof label, "dense case %d", ci);
        tu_check_op(ctx, label, &c);
        free(xd);
        clt_graph_destroy(g);
    }
    /* clt_linear: the last dimension only, (B,T,F) -> (B,T,U) and 4-D, leading dims kept. */
    int lcases[][6] = {{3, 2, 3, 5, 4, 1}, {4, 2, 2, 3, 7, 0}};
    for (int ci = 0; ci < 2; ci++) {
        int *cs = lcases[ci], nd = cs[0];
        int shape[4] = {cs[1], cs[2], cs[3], cs[4]};
        if (nd == 3) shape[2] = cs[3];
        int F = shape[nd - 1], U = 6;
        clt_graph *g = NULL;
        clt_tensor *x, *y;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", nd, shape, &x));
        TU_OK(ctx, clt_linear(g, x, U, cs[5], CLT_INIT_DEFAULT, "lin", &y));
        TU_CHECK(clt_tensor_ndim(y) == nd && clt_tensor_dim(y, nd - 1) == U && clt_tensor_dim(y, 1) == shape[1],
                 "linear keeps the leading dimensions");
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        TU_OK(ctx, clt_graph_keep(g, y, 0));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            size_t n = clt_tensor_numel(x);
            float *xd = malloc(n * sizeof(float));
            tu_fill_uniform(&rng, xd, n, -1, 1);
            ud_t u = {(int)(n / (size_t)F), F, U, cs[5]};
            tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref, .ud = &u,
                            .training = 1, .seed = (uint64_t)ci + 50};
            char label[64];
            snprintf(label, sizeof label, "linear case %d", ci);
            tu_check_op(ctx, label, &c);
            free(xd);
        }
        clt_graph_destroy(g);
    }
    /* Shape and argument errors come back as statuses with messages. */
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    int s1[1] = {5};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 1, s1, &x));
    TU_CHECK(clt_dense(g, x, 4, 1, 0, NULL, &y) == CLT_ERR_SHAPE && y == NULL, "1-D input must be refused");
    TU_MSG(ctx, "clt_dense: input 'x' (5) needs a batch dimension");
    TU_CHECK(clt_dense(g, NULL, 4, 1, 0, NULL, &y) == CLT_ERR_INVALID, "NULL input must be refused");
    TU_MSG(ctx, "clt_dense: input is NULL");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_dense");
}
