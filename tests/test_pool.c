/* test_pool.c - max, average and global average pooling against double references and finite differences. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { MAXP, AVGP, GAP };

typedef struct {
    int kind, n, c, h, w, k, s, p, oh, ow;
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    const ud_t *d = v;
    const double *x = in[0];
    for (int pl = 0; pl < d->n * d->c; pl++) {
        const double *xp = x + (size_t)pl * d->h * d->w;
        if (d->kind == GAP) {
            double s = 0;
            for (int i = 0; i < d->h * d->w; i++) s += xp[i];
            out[pl] = s / (d->h * d->w);
            continue;
        }
        for (int oh = 0; oh < d->oh; oh++)
            for (int ow = 0; ow < d->ow; ow++) {
                double s = 0, m = -INFINITY;
                for (int kh = 0; kh < d->k; kh++)
                    for (int kw = 0; kw < d->k; kw++) {
                        int ih = oh * d->s - d->p + kh, iw = ow * d->s - d->p + kw;
                        if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                        double xv = xp[ih * d->w + iw];
                        s += xv;
                        if (xv > m) m = xv;
                    }
                out[((size_t)pl * d->oh + oh) * d->ow + ow] = d->kind == MAXP ? m : s / (d->k * d->k);
            }
    }
}

/* Distinct values 0.01 apart in random order: no ties within a max window, even after a finite-difference
 * step of 1e-3. */
static void fill_distinct(tu_rng *rng, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(((double)i - n / 2.0) * 0.01);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(tu_uniform(rng, 0, 1) * (i + 1)) % (i + 1);
        float t = x[i];
        x[i] = x[j], x[j] = t;
    }
}

/* Tolerances (see testutil.h): a max pool copies values (k = 1) and routes each gradient element to one input,
 * where up to ceil(K/S)^2 overlapping windows add; an average pool sums K*K values and spreads dy/(K*K) the
 * same way; the global average sums H*W values. `pools` pools are added together. Max-pool inputs are the
 * distinct values of fill_distinct (|x| <= 0.005 * numel), others lie in [-1, 1]. The border band is K-1 wide
 * (the inputs whose windows meet the padding or the edge), at least 1. */
static void pool_tolerances(const ud_t *u, size_t nx, int pools, int distinct, tu_opcheck *c)
{
    /* In long long: a case has stride INT_MAX (one window), where k + s - 1 overflows an int. */
    int ov = u->kind == GAP ? 1 : (int)(((long long)u->k + u->s - 1) / u->s);
    double kf = u->kind == GAP ? (double)u->h * u->w : u->kind == MAXP ? 1 : (double)u->k * u->k;
    double mag = distinct ? 0.005 * (double)nx : 1;
    c->k = kf * pools + pools;
    c->grad_k = (double)ov * ov * pools;
    c->mag = mag > 1 ? mag : 1;
    c->border = u->kind == GAP || u->k < 2 ? 1 : u->k - 1;
}

static void check_case(clt_context *ctx, tu_rng *rng, int kind, int ci, const int *cs)
{
    ud_t u = {kind, cs[0], cs[1], cs[2], cs[3], 0, 0, 0, 1, 1};
    if (kind != GAP) {
        u.k = cs[4], u.s = cs[5], u.p = cs[6];
        u.oh = (u.h + 2 * u.p - u.k) / u.s + 1;
        u.ow = (u.w + 2 * u.p - u.k) / u.s + 1;
    }
    static const char *names[] = {"max_pool2d", "avg_pool2d", "global_avg_pool"};
    char label[96];
    snprintf(label, sizeof label, "%s case %d (%d,%d,%d,%d) k%d s%d p%d", names[kind], ci, u.n, u.c, u.h, u.w, u.k,
             u.s, u.p);
    int shape[4] = {u.n, u.c, u.h, u.w};
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, shape, &x));
    int st = kind == MAXP   ? clt_max_pool2d(g, x, u.k, u.s, u.p, &y)
             : kind == AVGP ? clt_avg_pool2d(g, x, u.k, u.s, u.p, &y)
                            : clt_global_avg_pool(g, x, &y);
    if (!TU_OK(ctx, st)) {
        clt_graph_destroy(g);
        return;
    }
    if (kind == GAP)
        TU_CHECK(clt_tensor_ndim(y) == 2 && clt_tensor_dim(y, 0) == u.n && clt_tensor_dim(y, 1) == u.c,
                 "%s: output shape", label);
    else
        TU_CHECK(clt_tensor_ndim(y) == 4 && clt_tensor_dim(y, 2) == u.oh && clt_tensor_dim(y, 3) == u.ow,
                 "%s: output shape", label);
    TU_OK(ctx, clt_graph_keep(g, x, 1));
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
        size_t nx = clt_tensor_numel(x);
        float *xd = malloc(nx * sizeof(float));
        if (kind == MAXP) fill_distinct(rng, xd, nx);
        else tu_fill_uniform(rng, xd, nx, -1, 1);
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref, .ud = &u,
                        .training = 1, .seed = (uint64_t)(kind * 100 + ci + 1), .max_fd = 96};
        pool_tolerances(&u, nx, kind == MAXP ? 1 : 2, kind == MAXP, &c);
        tu_check_op(ctx, label, &c);
        free(xd);
    }
    clt_graph_destroy(g);
}

/* x feeds a max pool and a second pool (average, or max again) whose outputs are added: the pool that runs its
 * backward second must add into x's gradient (acc) instead of overwriting it. `max_first` picks which one that
 * is; ud_t.kind is the second pool's kind. */
static void ref_both(void *v, const double *const *in, const double *const *p, double *out)
{
    ud_t u = *(const ud_t *)v;
    int other = u.kind;
    size_t n = (size_t)u.n * u.c * u.oh * u.ow;
    double *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return;
    u.kind = MAXP;
    ref(&u, in, p, out);
    u.kind = other;
    ref(&u, in, p, tmp);
    for (size_t i = 0; i < n; i++) out[i] += tmp[i];
    free(tmp);
}

static void check_shared_input(clt_context *ctx, tu_rng *rng, const int *cs, int max_first, int other)
{
    ud_t u = {other, cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6], 0, 0};
    u.oh = (u.h + 2 * u.p - u.k) / u.s + 1;
    u.ow = (u.w + 2 * u.p - u.k) / u.s + 1;
    const char *on = other == MAXP ? "max" : "avg";
    char label[128];
    snprintf(label, sizeof label, "max+%s pool of one input (%s first) (%d,%d,%d,%d) k%d s%d p%d", on,
             max_first ? "max" : on, u.n, u.c, u.h, u.w, u.k, u.s, u.p);
    int shape[4] = {u.n, u.c, u.h, u.w};
    clt_graph *g = NULL;
    clt_tensor *x, *a = NULL, *b = NULL, *y = NULL;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, shape, &x));
    int (*second)(clt_graph *, clt_tensor *, int, int, int, clt_tensor **) =
        other == MAXP ? clt_max_pool2d : clt_avg_pool2d;
    if (max_first)
        TU_OK(ctx, clt_max_pool2d(g, x, u.k, u.s, u.p, &a)), TU_OK(ctx, second(g, x, u.k, u.s, u.p, &b));
    else
        TU_OK(ctx, second(g, x, u.k, u.s, u.p, &a)), TU_OK(ctx, clt_max_pool2d(g, x, u.k, u.s, u.p, &b));
    if (TU_OK(ctx, clt_add(g, a, b, &y)) && TU_OK(ctx, clt_graph_keep(g, x, 1)) &&
        TU_OK(ctx, clt_graph_keep(g, y, 0)) && TU_OK(ctx, clt_graph_compile(g, NULL))) {
        size_t nx = clt_tensor_numel(x);
        float *xd = malloc(nx * sizeof(float));
        fill_distinct(rng, xd, nx);
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref_both, .ud = &u,
                        .training = 1, .seed = (uint64_t)(500 + max_first + 2 * other), .max_fd = 96};
        pool_tolerances(&u, nx, 2, 1, &c);
        tu_check_op(ctx, label, &c);
        free(xd);
    }
    clt_graph_destroy(g);
}

/* The winner of each window: the last NaN in row-major window order if there is one, else the first maximum.
 * Returns its index in the plane. */
static int winner(const float *xp, const ud_t *u, int oh, int ow)
{
    int nan_at = -1, best = -1;
    for (int kh = 0; kh < u->k; kh++)
        for (int kw = 0; kw < u->k; kw++) {
            int ih = oh * u->s - u->p + kh, iw = ow * u->s - u->p + kw;
            if (ih < 0 || ih >= u->h || iw < 0 || iw >= u->w) continue;
            int i = ih * u->w + iw;
            if (isnan(xp[i])) nan_at = i;
            else if (best < 0 || xp[i] > xp[best]) best = i;
        }
    return nan_at >= 0 ? nan_at : best;
}

/* Inputs with NaNs, -inf and many ties (values from a handful of levels): the output must be the winner's
 * value (NaN wins, like PyTorch) and the whole gradient dy routed exactly to the winners, zero elsewhere. Two
 * rounds with different inputs: the second backward must overwrite the first's gradient, not add to it. */
static void check_nan_ties(clt_context *ctx, tu_rng *rng, const int *cs)
{
    ud_t u = {MAXP, cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6], 0, 0};
    u.oh = (u.h + 2 * u.p - u.k) / u.s + 1;
    u.ow = (u.w + 2 * u.p - u.k) / u.s + 1;
    char label[96];
    snprintf(label, sizeof label, "max_pool2d NaN/ties (%d,%d,%d,%d) k%d s%d p%d", u.n, u.c, u.h, u.w, u.k, u.s,
             u.p);
    int shape[4] = {u.n, u.c, u.h, u.w};
    size_t nx = (size_t)u.n * u.c * u.h * u.w, ny = (size_t)u.n * u.c * u.oh * u.ow;
    float *x = malloc(nx * sizeof *x), *dx = malloc(nx * sizeof *dx), *ref_dx = malloc(nx * sizeof *ref_dx);
    float *y = malloc(ny * sizeof *y), *dy = malloc(ny * sizeof *dy);
    clt_graph *g = NULL;
    clt_tensor *xt, *yt;
    int ok = x && dx && ref_dx && y && dy && TU_OK(ctx, clt_graph_create(ctx, &g)) &&
             TU_OK(ctx, clt_input(g, "x", 4, shape, &xt)) && TU_OK(ctx, clt_max_pool2d(g, xt, u.k, u.s, u.p, &yt)) &&
             TU_OK(ctx, clt_graph_keep(g, xt, 1)) && TU_OK(ctx, clt_graph_keep(g, yt, 0)) &&
             TU_OK(ctx, clt_graph_compile(g, NULL));
    for (int round = 0; ok && round < 2; round++) {
        for (size_t i = 0; i < nx; i++) {
            double r = tu_uniform(rng, 0, 1);
            x[i] = r < 0.15 ? NAN : r < 0.2 ? -INFINITY : (float)(int)(tu_uniform(rng, 0, 3) + 3 * round) - 1.0f;
        }
        for (size_t i = 0; i < ny; i++) dy[i] = (float)((i * 7 + (size_t)round * 3) % 11) + 1.0f;
        ok = TU_OK(ctx, clt_tensor_write(g, xt, x, nx)) && TU_OK(ctx, clt_graph_forward(g, 1)) &&
             TU_OK(ctx, clt_tensor_read(g, yt, 0, y, ny)) && TU_OK(ctx, clt_graph_backward_from(g, yt, dy, ny)) &&
             TU_OK(ctx, clt_tensor_read(g, xt, 1, dx, nx));
        if (!ok) break;
        for (size_t i = 0; i < nx; i++) ref_dx[i] = 0.0f;
        int bad_y = 0, bad_dx = 0;
        for (int pl = 0; pl < u.n * u.c; pl++)
            for (int oh = 0; oh < u.oh; oh++)
                for (int ow = 0; ow < u.ow; ow++) {
                    const float *xp = x + (size_t)pl * u.h * u.w;
                    size_t o = ((size_t)pl * u.oh + oh) * u.ow + ow;
                    int w = winner(xp, &u, oh, ow);
                    float e = xp[w];
                    if (isnan(e) ? !isnan(y[o]) : y[o] != e) bad_y++;
                    ref_dx[(size_t)pl * u.h * u.w + w] += dy[o];
                }
        for (size_t i = 0; i < nx; i++) bad_dx += dx[i] != ref_dx[i];
        TU_CHECK(bad_y == 0, "%s round %d: %d outputs differ from the winners' values", label, round, bad_y);
        TU_CHECK(bad_dx == 0, "%s round %d: %d gradient elements differ", label, round, bad_dx);
        if (!bad_y && !bad_dx) printf("ok   %s round %d\n", label, round);
    }
    clt_graph_destroy(g);
    free(x), free(dx), free(ref_dx), free(y), free(dy);
}

/* The pool's input is an intermediate (x -> relu -> max pool), so its gradient lives in planned memory that
 * earlier passes left dirty: the backward must write every element, the last row and column that no window
 * covers included. x > 0, so relu passes the gradient through unchanged. */
static void check_dirty_grad(clt_context *ctx, tu_rng *rng, const int *cs)
{
    int n = cs[0], c = cs[1], h = cs[2], w = cs[3], oh = h / 2, ow = w / 2;
    int shape[4] = {n, c, h, w};
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * oh * ow;
    float *x = malloc(nx * sizeof *x), *dx = malloc(nx * sizeof *dx), *ref_dx = malloc(nx * sizeof *ref_dx);
    float *dy = malloc(ny * sizeof *dy);
    clt_graph *g = NULL;
    clt_tensor *xt, *rt, *yt;
    int ok = x && dx && ref_dx && dy && TU_OK(ctx, clt_graph_create(ctx, &g)) &&
             TU_OK(ctx, clt_input(g, "x", 4, shape, &xt)) && TU_OK(ctx, clt_relu(g, xt, &rt)) &&
             TU_OK(ctx, clt_max_pool2d(g, rt, 2, 2, 0, &yt)) && TU_OK(ctx, clt_graph_keep(g, xt, 1)) &&
             TU_OK(ctx, clt_graph_compile(g, NULL));
    for (int round = 0; ok && round < 3; round++) {
        fill_distinct(rng, x, nx);
        for (size_t i = 0; i < nx; i++) x[i] += (float)nx * 0.01f;
        for (size_t i = 0; i < ny; i++) dy[i] = (float)((i * 5 + (size_t)round) % 13) + 1.0f;
        ok = TU_OK(ctx, clt_tensor_write(g, xt, x, nx)) && TU_OK(ctx, clt_graph_forward(g, 1)) &&
             TU_OK(ctx, clt_graph_backward_from(g, yt, dy, ny)) && TU_OK(ctx, clt_tensor_read(g, xt, 1, dx, nx));
        if (!ok) break;
        ud_t u = {MAXP, n, c, h, w, 2, 2, 0, oh, ow};
        for (size_t i = 0; i < nx; i++) ref_dx[i] = 0.0f;
        for (int pl = 0; pl < n * c; pl++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                    ref_dx[(size_t)pl * h * w + winner(x + (size_t)pl * h * w, &u, i, j)] +=
                        dy[((size_t)pl * oh + i) * ow + j];
        int bad = 0;
        for (size_t i = 0; i < nx; i++) bad += dx[i] != ref_dx[i];
        TU_CHECK(bad == 0, "max_pool2d of an intermediate (%d,%d,%d,%d) round %d: %d gradient elements differ", n, c,
                 h, w, round, bad);
        if (!bad) printf("ok   max_pool2d of an intermediate (%d,%d,%d,%d) round %d\n", n, c, h, w, round);
    }
    clt_graph_destroy(g);
    free(x), free(dx), free(ref_dx), free(dy);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {77};
    /* N, C, H, W, kernel, stride, pad */
    int cases[][7] = {
        {2, 3, 6, 7, 2, 2, 0},  /* non-overlapping, odd width (last column dropped) */
        {1, 2, 7, 7, 3, 2, 1},  /* overlapping windows with padding */
        {2, 1, 9, 8, 3, 1, 1},  /* stride 1: every element in up to 9 windows */
        {1, 2, 6, 9, 5, 2, 2},  /* 5x5 with padding 2 */
        {3, 2, 4, 4, 4, 4, 0},  /* one window covers the plane */
        {1, 1, 8, 8, 2, 3, 0},  /* stride > kernel: some elements in no window */
        {1, 2, 5, 5, 2, INT_MAX, 0}, /* one window per axis; (row + stride) used to overflow in the kernels */
    };
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    for (int ci = 0; ci < ncases; ci++) check_case(ctx, &rng, MAXP, ci, cases[ci]);
    for (int ci = 0; ci < ncases; ci++) check_case(ctx, &rng, AVGP, ci, cases[ci]);
    /* The vectorized 2x2 stride-2 path: chunks of 8, 4 or 2 outputs, a last chunk overlapping the one before
     * when the output width is not a multiple of the chunk, odd heights and widths (last row/column in no
     * window), batch 1, and an output width of 1 (general path). */
    int fcases[][7] = {
        {1, 2, 8, 30, 2, 2, 0},  /* 15 columns: 8 + overlapping 8 (the seed CNN's first pool) */
        {2, 2, 13, 13, 2, 2, 0}, /* 6 columns: 4 + overlapping 4, odd H and W (the second pool) */
        {1, 3, 5, 17, 2, 2, 0},  /* exactly 8 columns, odd H and W */
        {2, 1, 4, 8, 2, 2, 0},   /* exactly 4 columns */
        {1, 2, 2, 4, 2, 2, 0},   /* 2 columns, one row */
        {1, 1, 3, 3, 2, 2, 0},   /* 1 column: general kernels */
        {1, 1, 3, 41, 2, 2, 0},  /* 20 columns: 8 + 8 + overlapping 8 */
    };
    int nf = (int)(sizeof fcases / sizeof fcases[0]);
    for (int ci = 0; ci < nf; ci++) check_case(ctx, &rng, MAXP, ncases + ci, fcases[ci]);
    for (int mf = 0; mf < 2; mf++) {
        check_shared_input(ctx, &rng, cases[0], mf, AVGP);
        check_shared_input(ctx, &rng, cases[1], mf, AVGP);
        check_shared_input(ctx, &rng, fcases[0], mf, AVGP);
        check_shared_input(ctx, &rng, fcases[1], mf, AVGP);
    }
    check_shared_input(ctx, &rng, fcases[1], 1, MAXP);
    check_shared_input(ctx, &rng, fcases[6], 1, MAXP);
    check_shared_input(ctx, &rng, cases[1], 1, MAXP);
    /* NaN and ties, fast (8- and 4-wide chunks) and general kernels. */
    int ncs[][7] = {{1, 2, 5, 19, 2, 2, 0}, {2, 1, 4, 13, 2, 2, 0}, {1, 2, 7, 7, 3, 2, 1}};
    for (int ci = 0; ci < 3; ci++) check_nan_ties(ctx, &rng, ncs[ci]);
    int dcs[][4] = {{2, 3, 7, 19}, {1, 2, 13, 13}};
    for (int ci = 0; ci < 2; ci++) check_dirty_grad(ctx, &rng, dcs[ci]);
    int gcases[][7] = {{2, 3, 5, 7}, {1, 1, 1, 1}, {4, 8, 3, 3}};
    for (int ci = 0; ci < 3; ci++) check_case(ctx, &rng, GAP, ci, gcases[ci]);

    /* A window whose K*K cells overflow int is refused (it fits a 1x1 input with padding K/2). */
    {
        int shape[4] = {1, 1, 1, 1};
        clt_graph *g = NULL;
        clt_tensor *x, *y = NULL;
        if (TU_OK(ctx, clt_graph_create(ctx, &g)) && TU_OK(ctx, clt_input(g, "x", 4, shape, &x))) {
            int st = clt_avg_pool2d(g, x, 65536, 1, 32768, &y);
            TU_CHECK(st == CLT_ERR_INVALID && y == NULL && strcmp(clt_errmsg(ctx), "clt_avg_pool2d: kernel 65536: its "
                     "4294967296-cell window is more than the kernels can count (2^31-1)") == 0,
                     "huge pooling window: %d %s", st, clt_errmsg(ctx));
        }
        clt_graph_destroy(g);
    }

    /* Inference graph: the argmax scratch must still have memory. */
    {
        ud_t u = {MAXP, 2, 3, 7, 6, 3, 2, 1, 4, 3};
        int shape[4] = {2, 3, 7, 6};
        clt_graph *g = NULL;
        clt_tensor *x, *y;
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        cs.training = 0;
        float xf[252], yf[72];
        double xd[252], yr[72];
        fill_distinct(&rng, xf, 252);
        for (int i = 0; i < 252; i++) xd[i] = xf[i];
        if (TU_OK(ctx, clt_graph_create(ctx, &g)) && TU_OK(ctx, clt_input(g, "x", 4, shape, &x)) &&
            TU_OK(ctx, clt_max_pool2d(g, x, 3, 2, 1, &y)) && TU_OK(ctx, clt_graph_keep(g, y, 0)) &&
            TU_OK(ctx, clt_graph_compile(g, &cs)) && TU_OK(ctx, clt_tensor_write(g, x, xf, 252)) &&
            TU_OK(ctx, clt_graph_forward(g, 0)) && TU_OK(ctx, clt_tensor_read(g, y, 0, yf, 72))) {
            const double *ins[1] = {xd};
            ref(&u, ins, NULL, yr);
            if (tu_close("max_pool2d inference forward", yf, yr, 72, 0, 0)) printf("ok   max_pool2d inference\n");
        }
        clt_graph_destroy(g);
    }

    /* Errors. */
    clt_graph *g = NULL;
    clt_tensor *x, *x2, *y = NULL;
    int s4[4] = {1, 2, 4, 4}, s2[2] = {3, 4};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, s4, &x));
    TU_OK(ctx, clt_input(g, "x2", 2, s2, &x2));
    TU_CHECK(clt_max_pool2d(g, x, 5, 1, 0, &y) == CLT_ERR_SHAPE && y == NULL, "5x5 window on 4x4 must be refused");
    TU_MSG(ctx, "clt_max_pool2d: kernel 5 does not fit input 'x' (1,2,4,4) with padding 0");
    TU_CHECK(clt_avg_pool2d(g, x, 6, 1, 0, &y) == CLT_ERR_SHAPE, "6x6 window on 4x4 must be refused");
    TU_MSG(ctx, "clt_avg_pool2d: kernel 6 does not fit");
    TU_CHECK(clt_max_pool2d(g, x, 2, 0, 0, &y) == CLT_ERR_INVALID, "stride 0 must be refused");
    TU_MSG(ctx, "kernel 2, stride 0, padding 0");
    TU_CHECK(clt_max_pool2d(g, x, 2, 2, 2, &y) == CLT_ERR_INVALID, "padding above kernel/2 must be refused");
    TU_MSG(ctx, "kernel 2, stride 2, padding 2");
    TU_CHECK(clt_avg_pool2d(g, NULL, 2, 2, 0, &y) == CLT_ERR_INVALID, "NULL input must be refused");
    TU_MSG(ctx, "clt_avg_pool2d: input is NULL");
    TU_CHECK(clt_max_pool2d(g, x, 2, 2, 0, NULL) == CLT_ERR_INVALID, "NULL out must be refused");
    TU_MSG(ctx, "clt_max_pool2d: out is NULL");
    TU_CHECK(clt_global_avg_pool(g, x2, &y) == CLT_ERR_SHAPE, "2-D input must be refused");
    TU_MSG(ctx, "clt_global_avg_pool: input 'x2' (3,4) must be (N,C,H,W)");
    TU_CHECK(clt_max_pool2d(g, x, 5, 1, 2, &y) == CLT_OK && y, "5x5 window on 4x4 with padding 2 fits");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_pool");
}
