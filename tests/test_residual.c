/* test_residual.c - gradients through a residual connection: x -> dense A -> relu -> r; b = dense B(r);
 * y = add(r, b) -> dense C -> mse(target), against finite differences of a hand-written double reference.
 * Needs clt_add (src/ops/add.c); register it in tests/meson.build once that op is merged. */
#include <math.h>
#include <stdlib.h>

#include "testutil.h"

enum { N = 4, F = 5, H = 6, O = 3 };

/* y (n,u) = x (n,f) W^T + b */
static void dense_ref(const double *x, const double *w, const double *b, int n, int f, int u, double *y)
{
    for (int r = 0; r < n; r++)
        for (int j = 0; j < u; j++) {
            double s = b[j];
            for (int k = 0; k < f; k++) s += x[r * f + k] * w[j * f + k];
            y[r * u + j] = s;
        }
}

/* inputs: x, target; params: A.w, A.b, B.w, B.b, C.w, C.b */
static void ref(void *ud, const double *const *in, const double *const *p, double *out)
{
    (void)ud;
    double r[N * H], b[N * H], c[N * O];
    dense_ref(in[0], p[0], p[1], N, F, H, r);
    for (int i = 0; i < N * H; i++) r[i] = r[i] > 0 ? r[i] : 0;
    dense_ref(r, p[2], p[3], N, H, H, b);
    for (int i = 0; i < N * H; i++) b[i] += r[i];
    dense_ref(b, p[4], p[5], N, H, O, c);
    double s = 0;
    for (int i = 0; i < N * O; i++) s += (c[i] - in[1][i]) * (c[i] - in[1][i]);
    out[0] = s / (N * O);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    int xs[2] = {N, F}, ts[2] = {N, O};
    for (int variant = 0; variant < 2; variant++) {
        clt_graph *g = NULL;
        clt_tensor *x, *t, *r, *b, *y, *c, *loss;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
        TU_OK(ctx, clt_input(g, "target", 2, ts, &t));
        TU_OK(ctx, clt_dense(g, x, H, 1, 0, "A", &r));
        TU_OK(ctx, clt_relu(g, r, &r));
        TU_OK(ctx, clt_dense(g, r, H, 1, 0, "B", &b));
        /* Both argument orders: the skip path first or second. */
        TU_OK(ctx, variant ? clt_add(g, b, r, &y) : clt_add(g, r, b, &y));
        TU_OK(ctx, clt_dense(g, y, O, 1, 0, "C", &c));
        TU_OK(ctx, clt_mse(g, c, t, &loss));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            float xd[N * F], td[N * O];
            tu_rng rng = {17};
            tu_fill_uniform(&rng, xd, N * F, -1, 1);
            tu_fill_uniform(&rng, td, N * O, -1, 1);
            tu_opcheck ck = {.g = g, .nin = 2, .in = {x, t}, .in_data = {xd, td}, .no_grad = {0, 1}, .out = loss,
                             .ref = ref, .training = 1, .seed = 40 + variant,
                             /* A chain of dense layers (F, H, H terms) into a mean of N*O squares: first-order
                              * relative errors add along the chain, k = F + 2H + N*O; the gradients also sum
                              * over the N rows. The relu is piecewise linear (no truncation; the random
                              * parameters keep pre-activations away from 0 by far more than h here). */
                             .k = F + 2 * H + N * O, .grad_k = F + 2 * H + N * O + N};
            tu_check_op(ctx, variant ? "residual add(B(r), r)" : "residual add(r, B(r))", &ck);
        }
        clt_graph_destroy(g);
    }
    /* add(x, x): the same tensor twice must give a gradient of 2 dy. */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *y;
        int s[2] = {3, 7};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, s, &x));
        TU_OK(ctx, clt_add(g, x, x, &y));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        TU_OK(ctx, clt_graph_keep(g, y, 0));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            float xd[21], dy[21], gx[21], yv[21];
            double want[21], wy[21];
            tu_rng rng = {5};
            tu_fill_uniform(&rng, xd, 21, -1, 1);
            tu_fill_uniform(&rng, dy, 21, -1, 1);
            for (int i = 0; i < 21; i++) want[i] = 2.0 * dy[i], wy[i] = 2.0 * xd[i];
            TU_OK(ctx, clt_tensor_write(g, x, xd, 21));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_tensor_read(g, y, 0, yv, 21));
            TU_OK(ctx, clt_graph_backward_from(g, y, dy, 21));
            TU_OK(ctx, clt_tensor_read(g, x, 1, gx, 21));
            tu_close("add(x,x) value", yv, wy, 21, 1e-6, 0);
            tu_close("add(x,x) gradient", gx, want, 21, 1e-6, 0);
        }
        clt_graph_destroy(g);
    }
    clt_context_destroy(ctx);
    return tu_finish("test_residual");
}
