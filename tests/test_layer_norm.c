/* test_layer_norm.c - layer normalization over the last dimension against a double reference and finite
 * differences (per-element tolerances), odd shapes, a fan-out input, and its argument errors by message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    int rows, c;
    int fan; /* y = ln(x) + x */
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    ud_t *d = v;
    for (int r = 0; r < d->rows; r++) {
        const double *x = in[0] + (size_t)r * d->c;
        double m = 0, var = 0;
        for (int c = 0; c < d->c; c++) m += x[c];
        m /= d->c;
        for (int c = 0; c < d->c; c++) var += (x[c] - m) * (x[c] - m);
        var /= d->c;
        double rs = 1 / sqrt(var + 1e-5);
        for (int c = 0; c < d->c; c++) {
            double y = (x[c] - m) * rs * p[0][c] + p[1][c];
            out[(size_t)r * d->c + c] = y + (d->fan ? x[c] : 0);
        }
    }
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    /* ndim then shape: 1 row, 2-D, 3-D (B,T,C) with odd sizes, 4-D, one column, more rows than a work-group. */
    int cases[][5] = {{1, 7, 0, 0, 0}, {2, 3, 5, 0, 0}, {3, 2, 3, 7, 0}, {4, 2, 1, 3, 5}, {2, 4, 1, 0, 0},
                      {3, 3, 23, 9, 0}};
    tu_rng rng = {77};
    for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
        int *cs = cases[ci], nd = cs[0];
        clt_graph *g = NULL;
        clt_tensor *x, *y, *y0;
        int fan = ci == 2;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", nd, cs + 1, &x));
        TU_OK(ctx, clt_layer_norm(g, x, 1e-5f, "ln", &y0));
        if (fan) TU_OK(ctx, clt_add(g, y0, x, &y));
        else y = y0;
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        TU_OK(ctx, clt_graph_keep(g, y, 0));
        if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
            clt_graph_destroy(g);
            continue;
        }
        int C = cs[nd];
        /* Scale starts at 1, shift at 0. */
        float p0[64];
        clt_tensor *gamma = clt_graph_state_tensor(g, 0, NULL), *beta = clt_graph_state_tensor(g, 1, NULL);
        TU_CHECK(gamma && beta && clt_tensor_numel(gamma) == (size_t)C, "scale and shift per column");
        TU_CHECK(strcmp(clt_tensor_name(gamma), "ln.weight") == 0, "name %s", clt_tensor_name(gamma));
        if (TU_OK(ctx, clt_tensor_read(g, gamma, 0, p0, (size_t)C)))
            for (int i = 0; i < C; i++) TU_CHECK(p0[i] == 1.0f, "initial scale %g", p0[i]);
        if (TU_OK(ctx, clt_tensor_read(g, beta, 0, p0, (size_t)C)))
            for (int i = 0; i < C; i++) TU_CHECK(p0[i] == 0.0f, "initial shift %g", p0[i]);
        size_t n = clt_tensor_numel(x);
        float *xd = malloc(n * sizeof(float));
        tu_fill_uniform(&rng, xd, n, -2, 2);
        ud_t u = {(int)(n / (size_t)C), C, fan};
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref, .ud = &u,
                        .training = 1, .seed = (uint64_t)ci + 1, .rtol = 1e-4, .atol = 2e-5,
                        .grad_rtol = 3e-3, .grad_atol = 3e-4};
        char label[64];
        snprintf(label, sizeof label, "layer_norm case %d", ci);
        tu_check_op(ctx, label, &c);
        free(xd);
        clt_graph_destroy(g);
    }
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    int s2[2] = {2, 3};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, s2, &x));
    TU_CHECK(clt_layer_norm(g, x, 0.0f, NULL, &y) == CLT_ERR_INVALID && y == NULL, "eps 0 must be refused");
    TU_CHECK(strstr(clt_errmsg(ctx), "clt_layer_norm: eps = 0 (must be in (0, 1))") != NULL, "message: %s",
             clt_errmsg(ctx));
    TU_CHECK(clt_layer_norm(g, NULL, 1e-5f, NULL, &y) == CLT_ERR_INVALID, "NULL input");
    TU_CHECK(strstr(clt_errmsg(ctx), "clt_layer_norm: input is NULL") != NULL, "message: %s", clt_errmsg(ctx));
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_layer_norm");
}
