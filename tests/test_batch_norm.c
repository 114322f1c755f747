/* test_batch_norm.c - batch normalization: training-mode forward and gradients (finite differences of the
 * training-mode reference), running statistics after a training pass, evaluation-mode forward and
 * gradients, and argument errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    int n, c, hw;
    int fan; /* y = op(x) + x: x feeds two nodes, so op's gradient adds to the one there */
    double eps;
    int train;
    const float *rm, *rv; /* running statistics for evaluation mode */
} ud_t;

static void stats(const ud_t *d, const double *x, int c, double *mean, double *var)
{
    double s = 0, q = 0, M = (double)d->n * d->hw;
    for (int n = 0; n < d->n; n++)
        for (int j = 0; j < d->hw; j++) s += x[((size_t)n * d->c + c) * d->hw + j];
    *mean = s / M;
    for (int n = 0; n < d->n; n++)
        for (int j = 0; j < d->hw; j++) {
            double e = x[((size_t)n * d->c + c) * d->hw + j] - *mean;
            q += e * e;
        }
    *var = q / M; /* biased */
}

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    ud_t *d = v;
    for (int c = 0; c < d->c; c++) {
        double mean, var;
        if (d->train) stats(d, in[0], c, &mean, &var);
        else mean = d->rm[c], var = d->rv[c];
        double is = 1 / sqrt(var + d->eps);
        for (int n = 0; n < d->n; n++)
            for (int j = 0; j < d->hw; j++) {
                size_t i = ((size_t)n * d->c + c) * d->hw + j;
                out[i] = (in[0][i] - mean) * is * p[0][c] + p[1][c];
            }
    }
    if (d->fan)
        for (size_t i = 0; i < (size_t)d->n * d->c * d->hw; i++) out[i] += in[0][i];
}

/* Tolerances from the conditioning of this case (see testutil.h). Training: the mean and the variance of the
 * shifted values (|x - K| <= 3, so terms <= 9) are sums over M = N*H*W; an error dv in the variance moves
 * y by |xhat| * istd^2 / 2 * dv, so the float32 sum bounds are scaled by kappa = 1 + 4.5 * istd_max^2 (istd of
 * the data's own channels, up to 1/sqrt(eps)); gradients reduce over M the same way, with the same
 * sensitivity; finite differences of the curved training map truncate by ~h^2/6 * 3 * istd^3. Evaluation:
 * y is elementwise (k = 1, rsqrt a few ulp); dgamma and dbeta sum M terms dy*xhat with |xhat| <= 6. */
static void bn_tolerances(const ud_t *u, const float *xd, tu_opcheck *c)
{
    double M = (double)u->n * u->hw, is_max = 0;
    for (int ch = 0; ch < u->c; ch++) {
        double var;
        if (u->train) {
            double s = 0, q = 0;
            for (int n = 0; n < u->n; n++)
                for (int j = 0; j < u->hw; j++) s += xd[((size_t)n * u->c + ch) * u->hw + j];
            s /= M;
            for (int n = 0; n < u->n; n++)
                for (int j = 0; j < u->hw; j++) {
                    double e = xd[((size_t)n * u->c + ch) * u->hw + j] - s;
                    q += e * e;
                }
            var = q / M;
        } else {
            var = u->rv[ch];
        }
        double is = 1 / sqrt(var + u->eps);
        if (is > is_max) is_max = is;
    }
    if (u->train) {
        double kappa = 1 + 4.5 * is_max * is_max;
        c->rtol = c->grad_rtol = kappa * tu_sum_rtol(M);
        c->atol = c->grad_atol = kappa * tu_sum_atol(M, 1);
        c->fd_atol = 1e-6 / 6 * 3 * is_max * is_max * is_max;
    } else {
        c->rtol = tu_sum_rtol(1) + 8 * TU_U32;
        c->atol = tu_sum_atol(1, 6);
        c->grad_rtol = tu_sum_rtol(M) + 8 * TU_U32;
        c->grad_atol = tu_sum_atol(M, 6);
    }
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    /* ndim, then (N, C, H, W): 2-D and 4-D, batch 1 (4-D) and more, odd sizes, many channels. */
    int cases[][5] = {{2, 5, 3, 1, 1}, {2, 2, 70, 1, 1}, {4, 1, 4, 3, 3}, {4, 3, 2, 5, 7}, {4, 2, 5, 1, 1}};
    const float momentum = 0.3f, eps = 0.05f; /* large enough that dropping it shows */
    tu_rng rng = {31};
    for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
        int *cs = cases[ci], nd = cs[0], C = cs[2];
        for (int train = 1; train >= 0; train--) {
            clt_graph *g = NULL;
            clt_tensor *x, *y, *y0;
            int fan = ci == 3;
            TU_OK(ctx, clt_graph_create(ctx, &g));
            TU_OK(ctx, clt_input(g, "x", nd, cs + 1, &x));
            TU_OK(ctx, clt_batch_norm(g, x, momentum, eps, "bn", &y0));
            if (fan) TU_OK(ctx, clt_add(g, y0, x, &y));
            else y = y0;
            TU_OK(ctx, clt_graph_keep(g, x, 1));
            TU_OK(ctx, clt_graph_keep(g, y, 0));
            if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
                clt_graph_destroy(g);
                continue;
            }
            /* State order: weight, bias (trainable), running_mean, running_var (buffers). */
            int tr[4] = {0};
            clt_tensor *st[4];
            for (int i = 0; i < 4; i++) st[i] = clt_graph_state_tensor(g, i, &tr[i]);
            TU_CHECK(clt_graph_state_count(g) == 4 && tr[0] && tr[1] && !tr[2] && !tr[3], "two params, two buffers");
            TU_CHECK(strcmp(clt_tensor_name(st[2]), "bn.running_mean") == 0, "name %s", clt_tensor_name(st[2]));
            float init[4][80];
            for (int i = 0; i < 4; i++) TU_OK(ctx, clt_tensor_read(g, st[i], 0, init[i], (size_t)C));
            for (int c = 0; c < C; c++)
                TU_CHECK(init[0][c] == 1 && init[1][c] == 0 && init[2][c] == 0 && init[3][c] == 1,
                         "initial weight 1, bias 0, running mean 0, running var 1");
            float rm[80], rv[80];
            if (!train) {
                tu_fill_uniform(&rng, rm, (size_t)C, 1, 3);
                tu_fill_uniform(&rng, rv, (size_t)C, 0.2, 2);
                TU_OK(ctx, clt_tensor_write(g, st[2], rm, (size_t)C));
                TU_OK(ctx, clt_tensor_write(g, st[3], rv, (size_t)C));
            }
            size_t n = clt_tensor_numel(x);
            float *xd = malloc(n * sizeof(float));
            tu_fill_uniform(&rng, xd, n, 1, 4); /* mean far from 0 */
            ud_t u = {cs[1], C, nd == 4 ? cs[3] * cs[4] : 1, fan, eps, train, rm, rv};
            tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref, .ud = &u,
                            .training = train, .seed = (uint64_t)ci + 1};
            bn_tolerances(&u, xd, &c);
            char label[64];
            snprintf(label, sizeof label, "batch_norm case %d %s", ci, train ? "training" : "evaluation");
            tu_check_op(ctx, label, &c);
            /* Running statistics after the one forward pass. */
            float got_m[80], got_v[80];
            double want_m[80], want_v[80];
            if (TU_OK(ctx, clt_tensor_read(g, st[2], 0, got_m, (size_t)C)) &&
                TU_OK(ctx, clt_tensor_read(g, st[3], 0, got_v, (size_t)C))) {
                double *xdd = malloc(n * sizeof(double));
                for (size_t i = 0; i < n; i++) xdd[i] = xd[i];
                double M = (double)u.n * u.hw;
                for (int ch = 0; ch < C; ch++) {
                    double mean, var;
                    stats(&u, xdd, ch, &mean, &var);
                    want_m[ch] = train ? (1 - momentum) * 0.0 + momentum * mean : rm[ch];
                    want_v[ch] = train ? (1 - momentum) * 1.0 + momentum * var * M / (M - 1) : rv[ch];
                }
                free(xdd);
                snprintf(label, sizeof label, "case %d %s running mean", ci, train ? "training" : "evaluation");
                tu_close(label, got_m, want_m, (size_t)C, 1e-5, 1e-6);
                snprintf(label, sizeof label, "case %d %s running var", ci, train ? "training" : "evaluation");
                tu_close(label, got_v, want_v, (size_t)C, 1e-5, 1e-6);
            }
            free(xd);
            clt_graph_destroy(g);
        }
    }
    /* Inference-only graph: evaluation passes work without gradients or saved statistics. */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *y;
        int s[4] = {2, 3, 2, 2};
        float xd[24], yd[24];
        double want[24];
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 4, s, &x));
        TU_OK(ctx, clt_batch_norm(g, x, 0.1f, 1e-5f, NULL, &y));
        TU_OK(ctx, clt_graph_keep(g, y, 0));
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        cs.training = 0;
        tu_fill_uniform(&rng, xd, 24, -2, 2);
        if (TU_OK(ctx, clt_graph_compile(g, &cs)) && TU_OK(ctx, clt_tensor_write(g, x, xd, 24)) &&
            TU_OK(ctx, clt_graph_forward(g, 0)) && TU_OK(ctx, clt_tensor_read(g, y, 0, yd, 24))) {
            for (int i = 0; i < 24; i++) want[i] = xd[i] / sqrt(1 + 1e-5);
            tu_close("inference graph, initial running statistics", yd, want, 24, 1e-5, 1e-6);
        }
        clt_graph_destroy(g);
    }
    /* Errors. */
    clt_graph *g = NULL;
    clt_tensor *x, *x1, *y = NULL;
    int s3[3] = {2, 3, 4}, s1[2] = {1, 4};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 3, s3, &x));
    TU_OK(ctx, clt_input(g, "x1", 2, s1, &x1));
    TU_CHECK(clt_batch_norm(g, x, 0.1f, 1e-5f, NULL, &y) == CLT_ERR_SHAPE && y == NULL, "3-D input must be refused");
    TU_MSG(ctx, "clt_batch_norm: input 'x' (2,3,4) must be (N,C) or (N,C,H,W)");
    TU_CHECK(clt_batch_norm(g, x1, 1.5f, 1e-5f, NULL, &y) == CLT_ERR_INVALID, "momentum 1.5 must be refused");
    TU_MSG(ctx, "momentum 1.5 (must be in [0, 1])");
    TU_CHECK(clt_batch_norm(g, x1, 0.1f, 0.0f, NULL, &y) == CLT_ERR_INVALID, "eps 0 must be refused");
    TU_MSG(ctx, "eps 0 (must be positive)");
    /* One value per channel: evaluation works, a training pass is refused. */
    TU_OK(ctx, clt_batch_norm(g, x1, 0.1f, 1e-5f, NULL, &y));
    if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
        float one[4] = {1, 2, 3, 4};
        TU_OK(ctx, clt_tensor_write(g, x1, one, 4));
        TU_OK(ctx, clt_graph_forward(g, 0));
        TU_CHECK(clt_graph_forward(g, 1) == CLT_ERR_SHAPE, "training pass with batch 1 of (N,C) must be refused");
        TU_CHECK(strstr(clt_errmsg(ctx), "more than one value") != NULL, "message: %s", clt_errmsg(ctx));
    }
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_batch_norm");
}
