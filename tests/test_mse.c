/* test_mse.c - mean squared error against a double reference and finite differences (both inputs),
 * an aliased call mse(x, x), a parameterized input, and shape errors. */
#include <math.h>
#include <stdlib.h>

#include "testutil.h"

typedef struct {
    size_t n;
    int dense; /* pred = dense(x) with U=3 outputs from F=4 features, N = n/3 rows */
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    ud_t *d = v;
    double s = 0;
    for (size_t i = 0; i < d->n; i++) {
        double pr = in[0][i];
        if (d->dense) {
            size_t r = i / 3, j = i % 3;
            pr = p[1][j];
            for (int f = 0; f < 4; f++) pr += in[0][r * 4 + f] * p[0][j * 4 + f];
        }
        double e = pr - in[1][i];
        s += e * e;
    }
    out[0] = s / (double)d->n;
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {77};
    int shapes[][4] = {{1, 1, 1, 1}, {4, 3, 1, 1}, {2, 3, 4, 5}, {1000, 1, 1, 1}, {3, 257, 1, 1}};
    int nd[] = {1, 2, 4, 1, 2};
    for (int si = 0; si < 5; si++)
        for (int tg = 0; tg < 2; tg++) {
            clt_graph *g = NULL;
            clt_tensor *x, *t, *loss;
            TU_OK(ctx, clt_graph_create(ctx, &g));
            TU_OK(ctx, clt_input(g, "pred", nd[si], shapes[si], &x));
            TU_OK(ctx, clt_input(g, "target", nd[si], shapes[si], &t));
            TU_OK(ctx, clt_mse(g, x, t, &loss));
            TU_OK(ctx, clt_graph_keep(g, x, 1));
            if (tg) TU_OK(ctx, clt_graph_keep(g, t, 1));
            if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
                clt_graph_destroy(g);
                continue;
            }
            size_t n = clt_tensor_numel(x);
            float *xd = malloc(n * sizeof(float)), *td = malloc(n * sizeof(float));
            tu_fill_uniform(&rng, xd, n, -2, 2);
            tu_fill_uniform(&rng, td, n, -2, 2);
            ud_t u = {n, 0};
            tu_opcheck c = {.g = g, .nin = 2, .in = {x, t}, .in_data = {xd, td}, .no_grad = {0, !tg}, .out = loss,
                            .ref = ref, .ud = &u, .training = 1, .seed = (uint64_t)(si * 2 + tg + 1)};
            char label[64];
            snprintf(label, sizeof label, "mse shape#%d target grad %d", si, tg);
            tu_check_op(ctx, label, &c);
            free(xd), free(td);
            clt_graph_destroy(g);
        }

    /* pred from a dense layer: parameter gradients flow through the loss. */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *t, *y, *loss;
        int xs[2] = {5, 4}, ts[2] = {5, 3};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
        TU_OK(ctx, clt_input(g, "target", 2, ts, &t));
        TU_OK(ctx, clt_dense(g, x, 3, 1, CLT_INIT_DEFAULT, "fc", &y));
        TU_OK(ctx, clt_mse(g, y, t, &loss));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            float xd[20], td[15];
            tu_fill_uniform(&rng, xd, 20, -1, 1);
            tu_fill_uniform(&rng, td, 15, -1, 1);
            ud_t u = {15, 1};
            tu_opcheck c = {.g = g, .nin = 2, .in = {x, t}, .in_data = {xd, td}, .no_grad = {0, 1}, .out = loss,
                            .ref = ref, .ud = &u, .training = 1, .seed = 99};
            tu_check_op(ctx, "mse after dense", &c);
        }
        clt_graph_destroy(g);
    }

    /* mse(x, x): both gradients land in the same memory and cancel; the loss is 0. */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *loss;
        int xs[2] = {3, 70};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
        TU_OK(ctx, clt_mse(g, x, x, &loss));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            float xd[210], gx[210], v = NAN;
            tu_fill_uniform(&rng, xd, 210, -3, 3);
            TU_OK(ctx, clt_tensor_write(g, x, xd, 210));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_graph_backward(g, loss));
            TU_OK(ctx, clt_tensor_read(g, loss, 0, &v, 1));
            TU_OK(ctx, clt_tensor_read(g, x, 1, gx, 210));
            double mx = 0;
            for (int i = 0; i < 210; i++) mx = fmax(mx, fabs(gx[i]));
            TU_CHECK(v == 0 && mx == 0, "mse(x,x): loss %g, max |grad| %g", v, mx);
        }
        clt_graph_destroy(g);
    }

    /* Shapes must match exactly (no broadcasting). */
    {
        clt_graph *g = NULL;
        clt_tensor *a, *b, *y = NULL;
        int as[2] = {4, 1}, bs[1] = {4};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "a", 2, as, &a));
        TU_OK(ctx, clt_input(g, "b", 1, bs, &b));
        TU_CHECK(clt_mse(g, a, b, &y) == CLT_ERR_SHAPE && !y, "(4,1) vs (4) must be refused");
        TU_CHECK(clt_errmsg(ctx)[0] != 0, "error message must be set");
        TU_CHECK(clt_mse(g, a, NULL, &y) == CLT_ERR_INVALID, "NULL target must be refused");
        clt_graph_destroy(g);
    }
    clt_context_destroy(ctx);
    return tu_finish("test_mse");
}
