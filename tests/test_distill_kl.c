/* test_distill_kl.c - the distillation loss against a double reference and finite differences (student logits;
 * teacher logits and labels without gradient), its limits (alpha 0 = cross-entropy, equal logits = no KL), the
 * label error and argument checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    int n, k;
    double t, a;
} ud_t;

static double lse(const double *x, int k, double scale)
{
    double m = x[0] * scale, s = 0;
    for (int j = 1; j < k; j++) m = fmax(m, x[j] * scale);
    for (int j = 0; j < k; j++) s += exp(x[j] * scale - m);
    return m + log(s);
}

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    ud_t *d = v;
    double total = 0;
    for (int r = 0; r < d->n; r++) {
        const double *s = in[0] + (size_t)r * d->k, *t = in[1] + (size_t)r * d->k;
        int y = (int)lround(in[2][r]);
        double ls = lse(s, d->k, 1 / d->t), lt = lse(t, d->k, 1 / d->t), kl = 0;
        for (int j = 0; j < d->k; j++) {
            double lq = t[j] / d->t - lt, lp = s[j] / d->t - ls;
            kl += exp(lq) * (lq - lp);
        }
        double ce = lse(s, d->k, 1) - s[y];
        total += d->a * d->t * d->t * kl + (1 - d->a) * ce;
    }
    out[0] = total / d->n;
}

static clt_graph *build(clt_context *ctx, int n, int k, float t, float a, int training, clt_tensor **x,
                        clt_tensor **te, clt_tensor **l, clt_tensor **loss)
{
    clt_graph *g = NULL;
    int xs[2] = {n, k}, ls[1] = {n};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "student", 2, xs, x));
    TU_OK(ctx, clt_input(g, "teacher", 2, xs, te));
    TU_OK(ctx, clt_input(g, "labels", 1, ls, l));
    TU_OK(ctx, clt_distill_kl(g, *x, *te, *l, t, a, loss));
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

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {77};
    int cases[][2] = {{1, 3}, {1, 1}, {4, 5}, {7, 10}, {33, 2}, {300, 17}};
    float temps[3] = {1.0f, 4.0f, 0.5f}, alphas[3] = {0.9f, 0.0f, 1.0f};
    for (int ci = 0; ci < 6; ci++)
        for (int vi = 0; vi < 3; vi++) {
            int n = cases[ci][0], k = cases[ci][1];
            float T = temps[(ci + vi) % 3], A = alphas[vi];
            clt_tensor *x, *te, *l, *loss;
            clt_graph *g = build(ctx, n, k, T, A, 1, &x, &te, &l, &loss);
            if (!g) continue;
            float *xd = malloc((size_t)n * k * sizeof(float)), *td = malloc((size_t)n * k * sizeof(float));
            float *ld = malloc((size_t)n * sizeof(float));
            tu_fill_uniform(&rng, xd, (size_t)n * k, -3, 3);
            tu_fill_uniform(&rng, td, (size_t)n * k, -3, 3);
            for (int r = 0; r < n; r++) ld[r] = (float)((int)(tu_uniform(&rng, 0, 1) * k) % k);
            ud_t u = {n, k, T, A};
            tu_opcheck c = {.g = g, .nin = 3, .in = {x, te, l}, .in_data = {xd, td, ld}, .no_grad = {0, 1, 1},
                            .out = loss, .ref = ref, .ud = &u, .training = 1, .seed = (uint64_t)(ci * 3 + vi + 1)};
            /* Row terms up to T^2 * (|x|/T + log K) in size, summed over N*K terms (float exp/log: 8 more u); each
             * gradient element is (alpha T (p - q) + (1 - alpha)(softmax - onehot)) / N: at most (T + 1) / N.
             * Finite-difference truncation: h^2/6 |f'''|, f''' ~ 1/T for the KL part (times T^2 alpha) and 1 for
             * the cross-entropy, per N. */
            double mag = (double)T * T * (3 / T + log(k) + 1) + 3 + log(k);
            c.rtol = tu_sum_rtol((double)n * k) + 16 * TU_U32;
            c.atol = tu_sum_atol((double)n * k, mag / n);
            c.grad_rtol = tu_sum_rtol(k) + 16 * TU_U32;
            c.grad_atol = tu_sum_atol(k, (T + 1.0) / n);
            c.fd_atol = 1e-6 / 6 * 2 * (T + 1) / n;
            char label[80];
            snprintf(label, sizeof label, "distill_kl N=%d K=%d T=%.1f alpha=%.1f", n, k, T, A);
            tu_check_op(ctx, label, &c);
            free(xd), free(td), free(ld);
            clt_graph_destroy(g);
        }

    /* alpha = 0 is the cross-entropy exactly as clt_softmax_cross_entropy computes it; a student equal to its
     * teacher has no KL (alpha = 1: loss 0, gradient 0). */
    {
        int n = 6, k = 5;
        float xd[30], ld[6];
        tu_fill_uniform(&rng, xd, 30, -2, 2);
        for (int r = 0; r < n; r++) ld[r] = (float)(r % k);
        clt_tensor *x, *te, *l, *loss, *x2, *l2, *ce;
        clt_graph *g = build(ctx, n, k, 4.0f, 1.0f, 1, &x, &te, &l, &loss), *g2 = NULL;
        int xs[2] = {n, k}, ls[1] = {n};
        TU_OK(ctx, clt_graph_create(ctx, &g2));
        TU_OK(ctx, clt_input(g2, "x", 2, xs, &x2));
        TU_OK(ctx, clt_input(g2, "l", 1, ls, &l2));
        TU_OK(ctx, clt_softmax_cross_entropy(g2, x2, l2, 0.0f, &ce));
        TU_OK(ctx, clt_graph_compile(g2, NULL));
        if (g) {
            float v = NAN, gx[30];
            TU_OK(ctx, clt_tensor_write(g, x, xd, 30));
            TU_OK(ctx, clt_tensor_write(g, te, xd, 30));
            TU_OK(ctx, clt_tensor_write(g, l, ld, 6));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_graph_backward(g, loss));
            TU_OK(ctx, clt_tensor_read(g, loss, 0, &v, 1));
            TU_OK(ctx, clt_tensor_read(g, x, 1, gx, 30));
            float gmax = 0;
            for (int i = 0; i < 30; i++) gmax = fmaxf(gmax, fabsf(gx[i]));
            TU_CHECK(fabsf(v) < 1e-5f && gmax < 1e-6f, "student = teacher: loss %g, max gradient %g", v, gmax);
            clt_graph_destroy(g);
        }
        g = build(ctx, n, k, 3.0f, 0.0f, 1, &x, &te, &l, &loss);
        if (g) {
            float v = NAN, w = NAN, td[30];
            tu_fill_uniform(&rng, td, 30, -2, 2);
            TU_OK(ctx, clt_tensor_write(g, x, xd, 30));
            TU_OK(ctx, clt_tensor_write(g, te, td, 30));
            TU_OK(ctx, clt_tensor_write(g, l, ld, 6));
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_tensor_read(g, loss, 0, &v, 1));
            TU_OK(ctx, clt_tensor_write(g2, x2, xd, 30));
            TU_OK(ctx, clt_tensor_write(g2, l2, ld, 6));
            TU_OK(ctx, clt_graph_forward(g2, 1));
            TU_OK(ctx, clt_tensor_read(g2, ce, 0, &w, 1));
            TU_CHECK(fabsf(v - w) <= 1e-6f * fabsf(w) + 1e-6f, "alpha 0: %.9g, cross-entropy %.9g", v, w);
            clt_graph_destroy(g);
        }
        clt_graph_destroy(g2);
    }

    /* A bad label fails the forward pass, naming the row; bad arguments are refused by text. */
    {
        int n = 4, k = 3;
        clt_tensor *x, *te, *l, *loss;
        clt_graph *g = build(ctx, n, k, 2.0f, 0.5f, 1, &x, &te, &l, &loss);
        if (g) {
            float xd[12] = {0}, ld[4] = {0, 1, 7, 1};
            TU_OK(ctx, clt_tensor_write(g, x, xd, 12));
            TU_OK(ctx, clt_tensor_write(g, te, xd, 12));
            TU_OK(ctx, clt_tensor_write(g, l, ld, 4));
            int st = clt_graph_forward(g, 1);
            TU_CHECK(st == CLT_ERR_INVALID && strstr(clt_errmsg(ctx), "row 2 of 'labels' = 7"), "bad label: %s",
                     clt_errmsg(ctx));
            clt_graph_destroy(g);
        }
        clt_graph *b = NULL;
        clt_tensor *s, *t, *t2, *lb, *o;
        int s2[2] = {4, 3}, s3[2] = {4, 2}, s1[1] = {4};
        TU_OK(ctx, clt_graph_create(ctx, &b));
        TU_OK(ctx, clt_input(b, "s", 2, s2, &s));
        TU_OK(ctx, clt_input(b, "t", 2, s2, &t));
        TU_OK(ctx, clt_input(b, "t2", 2, s3, &t2));
        TU_OK(ctx, clt_input(b, "lb", 1, s1, &lb));
        TU_CHECK(clt_distill_kl(b, s, t2, lb, 4, 0.9f, &o) == CLT_ERR_SHAPE &&
                 strstr(clt_errmsg(ctx), "teacher logits 't2' (4,2) must have the student's shape (4,3)"),
                 "teacher shape: %s", clt_errmsg(ctx));
        TU_CHECK(clt_distill_kl(b, s, t, lb, 0, 0.9f, &o) == CLT_ERR_INVALID &&
                 strstr(clt_errmsg(ctx), "temperature 0 (must be in (0, 1000])"), "temperature: %s", clt_errmsg(ctx));
        TU_CHECK(clt_distill_kl(b, s, t, lb, 4, 1.5f, &o) == CLT_ERR_INVALID &&
                 strstr(clt_errmsg(ctx), "alpha 1.5 (must be in [0, 1])"), "alpha: %s", clt_errmsg(ctx));
        clt_graph_destroy(b);
    }
    /* clt_tensor_copy: a kept tensor of one graph into the input of another, on the device; refusals by text. */
    {
        clt_graph *a = NULL, *b = NULL;
        clt_tensor *ax, *ay, *bx, *bin;
        int s6[2] = {2, 3}, s5[1] = {5};
        TU_OK(ctx, clt_graph_create(ctx, &a));
        TU_OK(ctx, clt_input(a, "ax", 2, s6, &ax));
        TU_OK(ctx, clt_relu(a, ax, &ay));
        TU_OK(ctx, clt_graph_keep(a, ay, 0));
        TU_OK(ctx, clt_graph_compile(a, NULL));
        TU_OK(ctx, clt_graph_create(ctx, &b));
        TU_OK(ctx, clt_input(b, "bx", 2, s6, &bx));
        TU_OK(ctx, clt_input(b, "short", 1, s5, &bin));
        clt_tensor *by;
        TU_OK(ctx, clt_relu(b, bx, &by)); /* a graph needs an operation to compile */
        TU_OK(ctx, clt_graph_compile(b, NULL));
        float v[6] = {-1, 2, -3, 4, 0.5f, -6}, got[6] = {0};
        TU_OK(ctx, clt_tensor_write(a, ax, v, 6));
        TU_OK(ctx, clt_graph_forward(a, 0));
        TU_OK(ctx, clt_tensor_copy(b, bx, a, ay));
        TU_OK(ctx, clt_tensor_read(b, bx, 0, got, 6));
        TU_CHECK(got[0] == 0 && got[1] == 2 && got[3] == 4 && got[4] == 0.5f && got[5] == 0, "copied relu values");
        TU_CHECK(clt_tensor_copy(b, bin, a, ay) == CLT_ERR_SHAPE && strstr(clt_errmsg(ctx), "holds 6 values, 'short' 5"),
                 "size mismatch: %s", clt_errmsg(ctx));
        TU_CHECK(clt_tensor_copy(a, ay, b, bx) == CLT_ERR_INVALID && strstr(clt_errmsg(ctx), "is not an input"),
                 "into a non-input: %s", clt_errmsg(ctx));
        TU_CHECK(clt_tensor_copy(b, bx, a, bx) == CLT_ERR_INVALID && strstr(clt_errmsg(ctx), "does not belong"),
                 "a foreign tensor: %s", clt_errmsg(ctx));
        clt_graph_destroy(a);
        clt_graph_destroy(b);
    }
    clt_context_destroy(ctx);
    return tu_finish("distill_kl");
}
