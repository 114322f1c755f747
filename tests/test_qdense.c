/* test_qdense.c - int8 fully connected layer against a reference of the quantized arithmetic: exact integer dot
 * products (int64 on the host), rounding half away from zero with saturation, the documented dequantization. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int q8(double v) { double r = round(v); return (int)(r > 127 ? 127 : r < -127 ? -127 : r); }

static void run_case(clt_context *ctx, int n, int f, int u, int exact, int bias, tu_rng *rng)
{
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    int xs[2] = {n, f};
    float *xd = malloc((size_t)n * f * sizeof *xd), *ws = malloc(u * sizeof *ws), *bd = malloc(u * sizeof *bd);
    int8_t *wd = malloc((size_t)u * f);
    float xsc = exact ? 0.125f : (float)tu_uniform(rng, 0.01, 0.3), inv = 1.0f / xsc;
    for (int i = 0; i < n * f; i++) {
        double k = floor(tu_uniform(rng, -135, 135)), frac = (double)((int)tu_uniform(rng, 0, 4)) * 0.25;
        xd[i] = exact ? (float)((k + frac) * xsc) : (float)tu_uniform(rng, -140 * xsc, 140 * xsc);
    }
    for (int i = 0; i < u * f; i++) wd[i] = (int8_t)floor(tu_uniform(rng, -127, 128));
    for (int c = 0; c < u; c++) {
        ws[c] = exact ? ldexpf(1.0f, -5 - c % 4) : (float)tu_uniform(rng, 0.001, 0.05);
        bd[c] = exact ? (float)(floor(tu_uniform(rng, -16, 16)) / 4) : (float)tu_uniform(rng, -1, 1);
    }
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    if (TU_OK(ctx, clt_qdense(g, x, u, wd, ws, bias ? bd : NULL, xsc, "qd", &y)) && TU_OK(ctx, clt_graph_keep(g, y, 0))) {
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        cs.training = 0;
        float *got = malloc((size_t)n * u * sizeof *got), *want = malloc((size_t)n * u * sizeof *want);
        long long maxacc = 0;
        for (int r = 0; r < n; r++)
            for (int c = 0; c < u; c++) {
                long long acc = 0;
                for (int k = 0; k < f; k++) acc += (long long)q8((double)(xd[r * f + k] * inv)) * wd[c * f + k];
                if (llabs(acc) > maxacc) maxacc = llabs(acc);
                float osc = xsc * ws[c];
                want[r * u + c] = (float)((double)acc * osc + (bias ? bd[c] : 0.0));
            }
        if (TU_OK(ctx, clt_graph_compile(g, &cs)) && TU_OK(ctx, clt_tensor_write(g, x, xd, (size_t)n * f)) &&
            TU_OK(ctx, clt_graph_forward(g, 0)) && TU_OK(ctx, clt_tensor_read(g, y, 0, got, (size_t)n * u))) {
            char label[64];
            snprintf(label, sizeof label, "qdense %dx%d->%d %s", n, f, u, exact ? "exact" : "rounded");
            if (exact) {
                TU_CHECK(maxacc < (1 << 24), "%s: sums must stay exact in float (max %lld)", label, maxacc);
                int bad = 0;
                for (int i = 0; i < n * u; i++) bad += got[i] != want[i];
                TU_CHECK(bad == 0, "%s: %d of %d outputs differ from the exact integer reference", label, bad, n * u);
            } else {
                tu_close_f(label, got, want, (size_t)n * u, 4 * TU_U32, 1e-6);
            }
        }
        free(got);
        free(want);
    }
    clt_graph_destroy(g);
    free(xd), free(ws), free(bd), free(wd);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {11};
    int cases[][3] = {{1, 5, 3}, {4, 33, 10}, {3, 300, 7}, {2, 17, 1}};
    for (int i = 0; i < 4; i++) {
        run_case(ctx, cases[i][0], cases[i][1], cases[i][2], 1, i != 1, &rng);
        run_case(ctx, cases[i][0], cases[i][1], cases[i][2], 0, 1, &rng);
    }
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    int xs[1] = {5};
    int8_t w[5] = {0};
    float s[1] = {1};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 1, xs, &x));
    TU_CHECK(clt_qdense(g, x, 1, w, s, NULL, 1.0f, NULL, &y) == CLT_ERR_SHAPE &&
             strstr(clt_errmsg(ctx), "needs a batch dimension") != NULL, "1-D input must be refused: %s", clt_errmsg(ctx));
    TU_CHECK(clt_qdense(g, x, 1, NULL, s, NULL, 1.0f, NULL, &y) < 0, "NULL weights must be refused");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_qdense");
}
