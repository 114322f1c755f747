/* test_bce.c - binary cross-entropy on logits against a double reference and finite differences (both inputs),
 * an aliased call bce(x, x), a parameterized input, extreme logits, and shape errors. */
#include <math.h>

#include "testutil.h"

/* Stable form: max(x,0) - x t + log1p(exp(-|x|)). */
static double term(double x, double t) { return fmax(x, 0) - x * t + log1p(exp(-fabs(x))); }

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {77};
    const tu_pair_loss l = {"bce", clt_bce_with_logits, term, -4, 4, 0, 1, 0, 1};
    tu_check_pair_loss(ctx, &rng, &l);

    /* bce(x, x): both gradients land in the same memory: d/dx = (sigmoid(x) - x) - x, over n. */
    {
        float xd[210], gx[210], v;
        double want[210];
        tu_fill_uniform(&rng, xd, 210, 0, 1);
        for (int i = 0; i < 210; i++) want[i] = (1 / (1 + exp(-(double)xd[i])) - 2.0 * xd[i]) / 210;
        if (tu_pair_loss_aliased(ctx, &l, xd, &v, gx)) tu_close("bce(x,x) gradient", gx, want, 210, 1e-5, 1e-7);
    }

    /* Extreme logits: finite loss and gradients, equal to the stable reference. */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *t, *loss;
        int xs[1] = {8};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 1, xs, &x));
        TU_OK(ctx, clt_input(g, "t", 1, xs, &t));
        TU_OK(ctx, clt_bce_with_logits(g, x, t, &loss));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            float xd[8] = {100, -100, 100, -100, 30, -30, 88.5f, -1e4f}, td[8] = {1, 0, 0, 1, 0.5f, 0.5f, 1, 0};
            double xdd[8], tdd[8], want, gw[8];
            float v = NAN, gx[8];
            for (int i = 0; i < 8; i++) {
                xdd[i] = xd[i], tdd[i] = td[i];
                gw[i] = (1 / (1 + exp(-xdd[i])) - tdd[i]) / 8;
            }
            double sum = 0;
            for (int i = 0; i < 8; i++) sum += term(xdd[i], tdd[i]);
            want = sum / 8;
            TU_OK(ctx, clt_tensor_write(g, x, xd, 8));
            TU_OK(ctx, clt_tensor_write(g, t, td, 8));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_graph_backward(g, loss));
            TU_OK(ctx, clt_tensor_read(g, loss, 0, &v, 1));
            TU_OK(ctx, clt_tensor_read(g, x, 1, gx, 8));
            TU_CHECK(isfinite(v) && fabs(v - want) <= 1e-5 * want, "extreme logits: loss %g want %g", v, want);
            tu_close("extreme logits gradient", gx, gw, 8, 1e-5, 1e-7);
        }
        clt_graph_destroy(g);
    }
    clt_context_destroy(ctx);
    return tu_finish("test_bce");
}
