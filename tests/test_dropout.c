/* test_dropout.c - inverted dropout: identity in evaluation, drop rate, scaling, gradient = mask * scale,
 * masks reproducible from (seed, pass counter) and different between passes, layers and seeds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void ref_identity(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    size_t n = *(size_t *)v;
    for (size_t i = 0; i < n; i++) out[i] = in[0][i];
}

static void ref_double(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    size_t n = *(size_t *)v;
    for (size_t i = 0; i < n; i++) out[i] = 2 * in[0][i];
}

/* x (N) -> dropout(x, p) twice (two layers on the same input), compiled with `seed`. */
typedef struct {
    clt_graph *g;
    clt_tensor *x, *y, *y2;
} net;

static int build(clt_context *ctx, net *m, int n, float p, uint64_t seed)
{
    int shape[2] = {n / 100, 100};
    memset(m, 0, sizeof *m);
    if (!TU_OK(ctx, clt_graph_create(ctx, &m->g))) return 0;
    TU_OK(ctx, clt_input(m->g, "x", 2, shape, &m->x));
    TU_OK(ctx, clt_dropout(m->g, m->x, p, &m->y));
    TU_OK(ctx, clt_dropout(m->g, m->x, p, &m->y2));
    TU_OK(ctx, clt_graph_keep(m->g, m->x, 1));
    TU_OK(ctx, clt_graph_keep(m->g, m->y, 0));
    TU_OK(ctx, clt_graph_keep(m->g, m->y2, 0));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    cs.seed = seed;
    return TU_OK(ctx, clt_graph_compile(m->g, &cs));
}

/* Training-mode residual: h = x (dense = 0) or h = dense(x) with U units (dense = 1); y = add(dropout(h), h), so
 * the dropout's backward adds into the gradient the add already wrote to h. The mask (1: kept) is fixed, read
 * from a forward pass with the same (seed, pass counter) as the checked one. */
typedef struct {
    int dense, n, f, u;
    const unsigned char *mask;
    double scale;
} resid_ud;

static void ref_resid(void *v, const double *const *in, const double *const *p, double *out)
{
    const resid_ud *d = v;
    int cols = d->dense ? d->u : d->f;
    for (int r = 0; r < d->n; r++)
        for (int j = 0; j < cols; j++) {
            double h = d->dense ? p[1][j] : in[0][r * d->f + j];
            if (d->dense)
                for (int k = 0; k < d->f; k++) h += in[0][r * d->f + k] * p[0][j * d->f + k];
            size_t i = (size_t)r * cols + j;
            out[i] = h + (d->mask[i] ? d->scale * h : 0);
        }
}

static void check_train_residual(clt_context *ctx, tu_rng *rng, int dense)
{
    const int N = 6, F = 10, U = 8;
    const float p = 0.4f;
    int xs[2] = {N, F};
    clt_graph *g = NULL;
    clt_tensor *x, *h, *d, *y;
    char label[96];
    snprintf(label, sizeof label, "dropout training, residual %s (accumulated gradient)",
             dense ? "after dense" : "on x");
    int ok = TU_OK(ctx, clt_graph_create(ctx, &g)) && TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    h = x;
    if (ok && dense) ok = TU_OK(ctx, clt_dense(g, x, U, 1, CLT_INIT_DEFAULT, "fc", &h));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    cs.seed = 77;
    if (ok && TU_OK(ctx, clt_dropout(g, h, p, &d)) && TU_OK(ctx, clt_add(g, d, h, &y)) &&
        TU_OK(ctx, clt_graph_keep(g, x, 1)) && TU_OK(ctx, clt_graph_keep(g, d, 0)) &&
        TU_OK(ctx, clt_graph_keep(g, y, 0)) && TU_OK(ctx, clt_graph_compile(g, &cs))) {
        size_t nx = (size_t)N * F, ny = clt_tensor_numel(y);
        float *xd = malloc(nx * sizeof(float)), *dv = malloc(ny * sizeof(float));
        unsigned char *mask = malloc(ny);
        tu_fill_uniform(rng, xd, nx, 0.5, 1.5); /* h != 0, so a zero in d means dropped */
        size_t kept = 0;
        if (TU_OK(ctx, clt_tensor_write(g, x, xd, nx)) && TU_OK(ctx, clt_graph_forward(g, 1)) &&
            TU_OK(ctx, clt_tensor_read(g, d, 0, dv, ny))) {
            for (size_t i = 0; i < ny; i++) kept += mask[i] = dv[i] != 0.0f;
            TU_CHECK(kept > ny / 4 && kept < ny, "%s: %zu of %zu kept", label, kept, ny);
            /* pass counter back to 0: the checked forward draws the same mask */
            TU_OK(ctx, clt_graph_set_counters(g, 0, 0));
            resid_ud u = {dense, N, F, U, mask, 1.0 / (1.0 - (double)p)};
            /* y = h + scale*h: k = 2 (after the dense layer's F products + bias); dW and db sum N rows of
             * (1 + scale) * dy, dx sums U units */
            tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref_resid, .ud = &u,
                            .training = 1, .seed = 21 + (uint64_t)dense, .k = dense ? F + 3 : 2,
                            .grad_k = N + 2, .mag = 1 / (1 - p)};
            double kx = dense ? U + 2 : 2;
            c.in_grad_rtol = tu_sum_rtol(kx), c.in_grad_atol = tu_sum_atol(kx, 1 / (1 - p));
            tu_check_op(ctx, label, &c);
        }
        free(xd), free(dv), free(mask);
    }
    clt_graph_destroy(g);
}

static size_t count_diff(const float *a, const float *b, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {17};

    /* Evaluation passes: identity forward, identity gradient (2-D and 4-D, batch 1 and more). */
    int shapes[][5] = {{2, 1, 7, 0, 0}, {4, 3, 2, 5, 3}};
    for (int si = 0; si < 2; si++) {
        clt_graph *g = NULL;
        clt_tensor *x, *y;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", shapes[si][0], shapes[si] + 1, &x));
        TU_OK(ctx, clt_dropout(g, x, 0.5f, &y));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        TU_OK(ctx, clt_graph_keep(g, y, 0));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            size_t n = clt_tensor_numel(x);
            float *xd = malloc(n * sizeof(float));
            tu_fill_uniform(&rng, xd, n, -1, 1);
            tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref_identity, .ud = &n,
                            .training = 0, .rtol = 0, .atol = 0, .seed = (uint64_t)si + 1};
            c.rtol = c.atol = c.grad_rtol = c.grad_atol = 0; /* identity: exact */
            c.atol = 1e-300; /* (a zero pair would mean "derive"); any difference fails */
            char label[64];
            snprintf(label, sizeof label, "dropout eval shape#%d", si);
            tu_check_op(ctx, label, &c);
            free(xd);
        }
        clt_graph_destroy(g);
    }

    /* The input also feeds another node, so the dropout gradient is added to the one already there:
     * y = dropout(x) + x is 2x in evaluation passes. */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *d, *y;
        int s[4] = {3, 2, 4, 5};
        size_t n = 120;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 4, s, &x));
        TU_OK(ctx, clt_dropout(g, x, 0.25f, &d));
        TU_OK(ctx, clt_add(g, d, x, &y));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        TU_OK(ctx, clt_graph_keep(g, y, 0));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            float xd[120];
            tu_fill_uniform(&rng, xd, n, -1, 1);
            tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref_double, .ud = &n,
                            .training = 0, .seed = 3};
            tu_check_op(ctx, "dropout eval, input feeds two nodes", &c);
        }
        clt_graph_destroy(g);
    }

    /* Training passes through a residual: the dropout's gradient accumulates. */
    check_train_residual(ctx, &rng, 0);
    check_train_residual(ctx, &rng, 1);

    /* Training passes on a large tensor. */
    const int N = 200000;
    const float p = 0.3f;
    const double scale = 1.0 / (1.0 - (double)p);
    float *x = malloc(N * sizeof(float)), *y0 = malloc(N * sizeof(float)), *y1 = malloc(N * sizeof(float));
    float *yb = malloc(N * sizeof(float)), *y2 = malloc(N * sizeof(float)), *R = malloc(N * sizeof(float));
    float *dx = malloc(N * sizeof(float));
    double *want = malloc(N * sizeof(double));
    tu_fill_uniform(&rng, x, N, 0.5, 1.5); /* nonzero: a zero output means dropped */
    tu_fill_uniform(&rng, R, N, -1, 1);
    net a, b;
    if (build(ctx, &a, N, p, 1234) && TU_OK(ctx, clt_tensor_write(a.g, a.x, x, N))) {
        /* pass 0 */
        if (TU_OK(ctx, clt_graph_forward(a.g, 1)) && TU_OK(ctx, clt_tensor_read(a.g, a.y, 0, y0, N)) &&
            TU_OK(ctx, clt_tensor_read(a.g, a.y2, 0, y2, N))) {
            size_t zeros = 0;
            for (int i = 0; i < N; i++) {
                zeros += y0[i] == 0.0f;
                want[i] = y0[i] == 0.0f ? 0.0 : x[i] * scale;
            }
            double frac = (double)zeros / N;
            TU_CHECK(fabs(frac - p) < 0.01, "dropped fraction %.4f, want %.2f", frac, p);
            tu_close("kept values scaled by 1/(1-p)", y0, want, N, 1e-6, 0);
            size_t d = count_diff(y0, y2, N);
            TU_CHECK(d > N / 4, "two dropout layers draw different masks (%zu of %d differ)", d, N);
            /* The backward pass (after the graph counted the pass) uses the forward's mask. */
            if (TU_OK(ctx, clt_graph_backward_from(a.g, a.y, R, N)) && TU_OK(ctx, clt_tensor_read(a.g, a.x, 1, dx, N))) {
                for (int i = 0; i < N; i++) want[i] = y0[i] == 0.0f ? 0.0 : R[i] * scale;
                tu_close("gradient = mask * scale * dy", dx, want, N, 1e-6, 0);
            }
        }
        uint64_t steps = 9, passes = 9;
        TU_OK(ctx, clt_graph_get_counters(a.g, &steps, &passes));
        TU_CHECK(passes == 1, "one training pass counted, got %llu", (unsigned long long)passes);
        /* pass 1: a new mask */
        if (TU_OK(ctx, clt_graph_forward(a.g, 1)) && TU_OK(ctx, clt_tensor_read(a.g, a.y, 0, y1, N))) {
            size_t d = count_diff(y0, y1, N);
            TU_CHECK(d > N / 4, "successive passes draw different masks (%zu of %d differ)", d, N);
        }
        /* An evaluation pass neither counts nor drops. */
        if (TU_OK(ctx, clt_graph_forward(a.g, 0)) && TU_OK(ctx, clt_tensor_read(a.g, a.y, 0, yb, N)))
            TU_CHECK(count_diff(yb, x, N) == 0, "evaluation pass is the identity");
        TU_OK(ctx, clt_graph_get_counters(a.g, &steps, &passes));
        TU_CHECK(passes == 2, "evaluation passes are not counted, got %llu", (unsigned long long)passes);
        /* Resuming at counter 0 repeats pass 0's mask. */
        TU_OK(ctx, clt_graph_set_counters(a.g, 0, 0));
        if (TU_OK(ctx, clt_graph_forward(a.g, 1)) && TU_OK(ctx, clt_tensor_read(a.g, a.y, 0, yb, N)))
            TU_CHECK(count_diff(yb, y0, N) == 0, "same seed and counter give the same mask");
    }
    /* Another graph with the same seed, set to counter 1, repeats pass 1; another seed differs. */
    if (build(ctx, &b, N, p, 1234) && TU_OK(ctx, clt_tensor_write(b.g, b.x, x, N))) {
        TU_OK(ctx, clt_graph_set_counters(b.g, 0, 1));
        if (TU_OK(ctx, clt_graph_forward(b.g, 1)) && TU_OK(ctx, clt_tensor_read(b.g, b.y, 0, yb, N)))
            TU_CHECK(count_diff(yb, y1, N) == 0, "a new graph with the same seed and counter gives the same mask");
    }
    clt_graph_destroy(b.g);
    if (build(ctx, &b, N, p, 999) && TU_OK(ctx, clt_tensor_write(b.g, b.x, x, N))) {
        if (TU_OK(ctx, clt_graph_forward(b.g, 1)) && TU_OK(ctx, clt_tensor_read(b.g, b.y, 0, yb, N))) {
            size_t d = count_diff(yb, y0, N);
            TU_CHECK(d > N / 4, "another seed draws another mask (%zu of %d differ)", d, N);
        }
    }
    clt_graph_destroy(b.g);
    clt_graph_destroy(a.g);
    /* p = 0 in training: identity. */
    if (build(ctx, &a, 1000, 0.0f, 5) && TU_OK(ctx, clt_tensor_write(a.g, a.x, x, 1000)) &&
        TU_OK(ctx, clt_graph_forward(a.g, 1)) && TU_OK(ctx, clt_tensor_read(a.g, a.y, 0, yb, 1000)))
        TU_CHECK(count_diff(yb, x, 1000) == 0, "p = 0 keeps everything");
    clt_graph_destroy(a.g);
    free(x), free(y0), free(y1), free(yb), free(y2), free(R), free(dx), free(want);

    /* p outside [0, 1) is refused with a message. */
    clt_graph *g = NULL;
    clt_tensor *xi, *yo = NULL;
    int s1[1] = {10};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 1, s1, &xi));
    TU_CHECK(clt_dropout(g, xi, 1.0f, &yo) == CLT_ERR_INVALID && yo == NULL, "p = 1 must be refused");
    TU_CHECK(strstr(clt_errmsg(ctx), "p = 1") != NULL, "message names p: %s", clt_errmsg(ctx));
    TU_CHECK(clt_dropout(g, xi, -0.1f, &yo) == CLT_ERR_INVALID, "p < 0 must be refused");
    TU_CHECK(clt_dropout(g, xi, NAN, &yo) == CLT_ERR_INVALID, "p = NaN must be refused");
    TU_CHECK(clt_dropout(g, NULL, 0.5f, &yo) == CLT_ERR_INVALID, "NULL input must be refused");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_dropout");
}
