/* test_softmax_cross_entropy.c - softmax cross-entropy (with label smoothing) against a double reference and
 * finite differences, inference graphs, and the out-of-range label error. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    int n, k;
    double s;
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    ud_t *d = v;
    double total = 0;
    for (int r = 0; r < d->n; r++) {
        const double *x = in[0] + (size_t)r * d->k;
        int y = (int)lround(in[1][r]);
        double m = x[0];
        for (int j = 1; j < d->k; j++) m = fmax(m, x[j]);
        double s = 0;
        for (int j = 0; j < d->k; j++) s += exp(x[j] - m);
        double lse = m + log(s);
        for (int j = 0; j < d->k; j++) {
            double target = d->s / d->k + (j == y ? 1 - d->s : 0);
            total -= target * (x[j] - lse);
        }
    }
    out[0] = total / d->n;
}

/* Builds logits (N,K) + labels (N) -> loss; logits kept with grad when `training`. */
static clt_graph *build(clt_context *ctx, int n, int k, float s, int training, clt_tensor **x, clt_tensor **l,
                        clt_tensor **loss)
{
    clt_graph *g = NULL;
    int xs[2] = {n, k}, ls[1] = {n};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "logits", 2, xs, x));
    TU_OK(ctx, clt_input(g, "labels", 1, ls, l));
    TU_OK(ctx, clt_softmax_cross_entropy(g, *x, *l, s, loss));
    if (training) TU_OK(ctx, clt_graph_keep(g, *x, 1));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    cs.training = training;
    if (!TU_OK(ctx, clt_graph_compile(g, &cs))) {
        clt_graph_destroy(g);
        return NULL;
    }
    return g;
}

static void fill(tu_rng *rng, float *xd, float *ld, int n, int k, double scale)
{
    tu_fill_uniform(rng, xd, (size_t)n * k, -scale, scale);
    for (int r = 0; r < n; r++) ld[r] = (float)((int)(tu_uniform(rng, 0, 1) * k) % k);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {31};
    int cases[][2] = {{1, 3}, {1, 1}, {4, 5}, {7, 10}, {33, 2}, {300, 17}};
    float smooth[2] = {0.0f, 0.1f};
    for (int ci = 0; ci < 6; ci++)
        for (int si = 0; si < 2; si++) {
            int n = cases[ci][0], k = cases[ci][1];
            clt_tensor *x, *l, *loss;
            clt_graph *g = build(ctx, n, k, smooth[si], 1, &x, &l, &loss);
            if (!g) continue;
            float *xd = malloc((size_t)n * k * sizeof(float)), *ld = malloc((size_t)n * sizeof(float));
            fill(&rng, xd, ld, n, k, 3.0);
            ud_t u = {n, k, smooth[si]};
            tu_opcheck c = {.g = g, .nin = 2, .in = {x, l}, .in_data = {xd, ld}, .no_grad = {0, 1}, .out = loss,
                            .ref = ref, .ud = &u, .training = 1, .seed = (uint64_t)(ci * 2 + si + 1)};
            /* The loss is a mean of N*K terms up to |x| + log K in size (k = N*K, float32 exp/log: 8 more u); each
             * gradient element is (softmax - target) / N from a row of K exps: magnitude 1/N. Curved: finite-
             * difference truncation h^2/6 * |f'''| / N. */
            c.rtol = tu_sum_rtol((double)n * k) + 8 * TU_U32;
            c.atol = tu_sum_atol((double)n * k, (3 + log(k)) / n);
            c.grad_rtol = tu_sum_rtol(k) + 8 * TU_U32;
            c.grad_atol = tu_sum_atol(k, 1.0 / n);
            c.fd_atol = 1e-6 / 6 * 2 / n;
            char label[64];
            snprintf(label, sizeof label, "softmax_cross_entropy N=%d K=%d s=%.1f", n, k, smooth[si]);
            tu_check_op(ctx, label, &c);
            free(xd), free(ld);
            clt_graph_destroy(g);
        }

    /* Large logits stay finite (stable log-softmax), and the mean is bitwise reproducible. */
    {
        int n = 5, k = 4;
        clt_tensor *x, *l, *loss;
        clt_graph *g = build(ctx, n, k, 0.0f, 1, &x, &l, &loss);
        if (g) {
            float xd[20], ld[5] = {0, 1, 2, 3, 0};
            double xdd[20], ldd[5];
            for (int i = 0; i < 20; i++) xd[i] = (float)((i % 3 - 1) * 500.0 + i), xdd[i] = xd[i];
            for (int i = 0; i < 5; i++) ldd[i] = ld[i];
            const double *ins[2] = {xdd, ldd};
            double want;
            ud_t u = {n, k, 0};
            ref(&u, ins, NULL, &want);
            float v1 = NAN, v2 = NAN;
            TU_OK(ctx, clt_tensor_write(g, x, xd, 20));
            TU_OK(ctx, clt_tensor_write(g, l, ld, 5));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_tensor_read(g, loss, 0, &v1, 1));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_tensor_read(g, loss, 0, &v2, 1));
            TU_CHECK(isfinite(v1) && fabs(v1 - want) <= 1e-4 * fabs(want) + 1e-4, "large logits: got %g want %g",
                     v1, want);
            TU_CHECK(memcmp(&v1, &v2, sizeof v1) == 0, "two passes differ: %.9g vs %.9g", v1, v2);
            clt_graph_destroy(g);
        }
    }

    /* Inference graph (no SAVED memory): same value as the reference. */
    {
        int n = 6, k = 7;
        clt_tensor *x, *l, *loss;
        clt_graph *g = build(ctx, n, k, 0.1f, 0, &x, &l, &loss);
        if (g) {
            float xd[42], ld[6];
            double xdd[42], ldd[6], want;
            fill(&rng, xd, ld, n, k, 2.0);
            for (int i = 0; i < 42; i++) xdd[i] = xd[i];
            for (int i = 0; i < 6; i++) ldd[i] = ld[i];
            const double *ins[2] = {xdd, ldd};
            ud_t u = {n, k, 0.1};
            ref(&u, ins, NULL, &want);
            float v = NAN;
            TU_OK(ctx, clt_tensor_write(g, x, xd, 42));
            TU_OK(ctx, clt_tensor_write(g, l, ld, 6));
            TU_OK(ctx, clt_graph_forward(g, 0));
            TU_OK(ctx, clt_tensor_read(g, loss, 0, &v, 1));
            TU_CHECK(fabs(v - want) <= 1e-5 * fabs(want) + 1e-6, "inference: got %g want %g", v, want);
            clt_graph_destroy(g);
        }
    }

    /* Labels kept with a gradient receive zeros (they are piecewise constant), logits the real one. */
    {
        int xs[2] = {3, 4}, ls[1] = {3};
        clt_graph *g = NULL;
        clt_tensor *x, *l, *loss;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "logits", 2, xs, &x));
        TU_OK(ctx, clt_input(g, "labels", 1, ls, &l));
        TU_OK(ctx, clt_softmax_cross_entropy(g, x, l, 0.0f, &loss));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        TU_OK(ctx, clt_graph_keep(g, l, 1));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            float xd[12] = {0}, ld[3] = {1, 2, 3}, lg[3] = {7, 7, 7}, xg[12];
            float junk[3] = {5, 5, 5};
            TU_OK(ctx, clt_tensor_write(g, x, xd, 12));
            TU_OK(ctx, clt_tensor_write(g, l, ld, 3));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_graph_backward_from(g, loss, junk, 1)); /* dL = 5 */
            TU_OK(ctx, clt_tensor_read(g, l, 1, lg, 3));
            TU_OK(ctx, clt_tensor_read(g, x, 1, xg, 12));
            TU_CHECK(lg[0] == 0 && lg[1] == 0 && lg[2] == 0, "label gradient %g %g %g", lg[0], lg[1], lg[2]);
            /* uniform p = 1/4: dx = (1/4 - onehot) * 5 / 3 */
            TU_CHECK(fabsf(xg[0] - 5.0f / 12) < 1e-5f && fabsf(xg[1] - (0.25f - 1) * 5 / 3) < 1e-5f,
                     "logit gradient %g %g", xg[0], xg[1]);
        }
        clt_graph_destroy(g);
    }

    /* Out-of-range labels fail the forward pass with CLT_ERR_INVALID and a message; a good batch works after. */
    {
        int n = 4, k = 3;
        clt_tensor *x, *l, *loss;
        clt_graph *g = build(ctx, n, k, 0.0f, 1, &x, &l, &loss);
        if (g) {
            float xd[12], good[4] = {0, 1, 2, 1};
            tu_fill_uniform(&rng, xd, 12, -1, 1);
            TU_OK(ctx, clt_tensor_write(g, x, xd, 12));
            float bads[] = {-1.0f, 3.0f, 1.5f, NAN, 1e9f, -0.5f};
            for (size_t b = 0; b < sizeof bads / sizeof bads[0]; b++) {
                float ld[4] = {0, 1, 2, 1};
                ld[2] = bads[b];
                TU_OK(ctx, clt_tensor_write(g, l, ld, 4));
                int st = clt_graph_forward(g, 1);
                TU_CHECK(st == CLT_ERR_INVALID, "label %g: forward returned %d", bads[b], st);
                TU_CHECK(strstr(clt_errmsg(ctx), "row 2") != NULL, "label %g: message '%s'", bads[b], clt_errmsg(ctx));
            }
            TU_OK(ctx, clt_tensor_write(g, l, good, 4));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_graph_backward(g, loss));
            float v = NAN;
            TU_OK(ctx, clt_tensor_read(g, loss, 0, &v, 1));
            TU_CHECK(isfinite(v) && v > 0, "loss after recovery %g", v);
            clt_graph_destroy(g);
        }
    }

    /* Argument and shape errors. */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *l, *l2, *y = NULL;
        int xs[2] = {4, 3}, ls[1] = {4}, ls2[1] = {5};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "logits", 2, xs, &x));
        TU_OK(ctx, clt_input(g, "labels", 1, ls, &l));
        TU_OK(ctx, clt_input(g, "labels5", 1, ls2, &l2));
        TU_CHECK(clt_softmax_cross_entropy(g, x, l2, 0, &y) == CLT_ERR_SHAPE && !y, "label count must match");
        TU_MSG(ctx, "labels 'labels5' (5) must hold one class index per row of logits (4,3)");
        TU_CHECK(clt_softmax_cross_entropy(g, l, l, 0, &y) == CLT_ERR_SHAPE, "1-D logits must be refused");
        TU_MSG(ctx, "logits 'labels' (4) must be (N,K)");
        TU_CHECK(clt_softmax_cross_entropy(g, x, l, 1.5f, &y) == CLT_ERR_INVALID, "smoothing 1.5 must be refused");
        TU_MSG(ctx, "label_smoothing 1.5");
        TU_CHECK(clt_softmax_cross_entropy(g, x, NULL, 0, &y) == CLT_ERR_INVALID, "NULL labels must be refused");
        TU_MSG(ctx, "clt_softmax_cross_entropy: labels is NULL");
        TU_CHECK(clt_softmax_cross_entropy(g, x, l, 0, NULL) == CLT_ERR_INVALID, "NULL out must be refused");
        TU_MSG(ctx, "clt_softmax_cross_entropy: out is NULL");
        clt_graph_destroy(g);
    }
    clt_context_destroy(ctx);
    return tu_finish("test_softmax_cross_entropy");
}
