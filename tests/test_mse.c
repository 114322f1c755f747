/* test_mse.c - mean squared error against a double reference and finite differences (both inputs),
 * an aliased call mse(x, x), a parameterized input, and shape errors. */
#include <math.h>

#include "testutil.h"

static double term(double p, double t) { return (p - t) * (p - t); }

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {77};
    const tu_pair_loss l = {"mse", clt_mse, term, -2, 2, -2, 2, -1, 1};
    tu_check_pair_loss(ctx, &rng, &l);

    /* mse(x, x): both gradients land in the same memory and cancel; the loss is 0. */
    {
        float xd[210], gx[210], v = NAN;
        tu_fill_uniform(&rng, xd, 210, -3, 3);
        if (tu_pair_loss_aliased(ctx, &l, xd, &v, gx)) {
            double mx = 0;
            for (int i = 0; i < 210; i++) mx = fmax(mx, fabs(gx[i]));
            TU_CHECK(v == 0 && mx == 0, "mse(x,x): loss %g, max |grad| %g", v, mx);
        }
    }
    clt_context_destroy(ctx);
    return tu_finish("test_mse");
}
