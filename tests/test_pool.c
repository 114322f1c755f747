/* test_pool.c - max, average and global average pooling against double references and finite differences. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

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
        tu_check_op(ctx, label, &c);
        free(xd);
    }
    clt_graph_destroy(g);
}

/* x feeds a max pool and an average pool whose outputs are added: the pool that runs its backward second
 * must add into x's gradient (acc) instead of overwriting it. `max_first` picks which one that is. */
static void ref_both(void *v, const double *const *in, const double *const *p, double *out)
{
    ud_t u = *(const ud_t *)v;
    size_t n = (size_t)u.n * u.c * u.oh * u.ow;
    double *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return;
    u.kind = MAXP;
    ref(&u, in, p, out);
    u.kind = AVGP;
    ref(&u, in, p, tmp);
    for (size_t i = 0; i < n; i++) out[i] += tmp[i];
    free(tmp);
}

static void check_shared_input(clt_context *ctx, tu_rng *rng, const int *cs, int max_first)
{
    ud_t u = {MAXP, cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6], 0, 0};
    u.oh = (u.h + 2 * u.p - u.k) / u.s + 1;
    u.ow = (u.w + 2 * u.p - u.k) / u.s + 1;
    char label[96];
    snprintf(label, sizeof label, "max+avg pool of one input (%s first) k%d s%d p%d", max_first ? "max" : "avg", u.k,
             u.s, u.p);
    int shape[4] = {u.n, u.c, u.h, u.w};
    clt_graph *g = NULL;
    clt_tensor *x, *a = NULL, *b = NULL, *y = NULL;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, shape, &x));
    if (max_first)
        TU_OK(ctx, clt_max_pool2d(g, x, u.k, u.s, u.p, &a)), TU_OK(ctx, clt_avg_pool2d(g, x, u.k, u.s, u.p, &b));
    else
        TU_OK(ctx, clt_avg_pool2d(g, x, u.k, u.s, u.p, &a)), TU_OK(ctx, clt_max_pool2d(g, x, u.k, u.s, u.p, &b));
    if (TU_OK(ctx, clt_add(g, a, b, &y)) && TU_OK(ctx, clt_graph_keep(g, x, 1)) &&
        TU_OK(ctx, clt_graph_keep(g, y, 0)) && TU_OK(ctx, clt_graph_compile(g, NULL))) {
        size_t nx = clt_tensor_numel(x);
        float *xd = malloc(nx * sizeof(float));
        fill_distinct(rng, xd, nx);
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref_both, .ud = &u,
                        .training = 1, .seed = (uint64_t)(500 + max_first), .max_fd = 96};
        tu_check_op(ctx, label, &c);
        free(xd);
    }
    clt_graph_destroy(g);
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
    for (int mf = 0; mf < 2; mf++) {
        check_shared_input(ctx, &rng, cases[0], mf);
        check_shared_input(ctx, &rng, cases[1], mf);
    }
    int gcases[][7] = {{2, 3, 5, 7}, {1, 1, 1, 1}, {4, 8, 3, 3}};
    for (int ci = 0; ci < 3; ci++) check_case(ctx, &rng, GAP, ci, gcases[ci]);

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
    TU_CHECK(clt_errmsg(ctx)[0] != 0, "shape error message must be set");
    TU_CHECK(clt_avg_pool2d(g, x, 6, 1, 0, &y) == CLT_ERR_SHAPE, "6x6 window on 4x4 must be refused");
    TU_CHECK(clt_max_pool2d(g, x, 2, 0, 0, &y) == CLT_ERR_INVALID, "stride 0 must be refused");
    TU_CHECK(clt_max_pool2d(g, x, 2, 2, 2, &y) == CLT_ERR_INVALID, "padding above kernel/2 must be refused");
    TU_CHECK(clt_avg_pool2d(g, NULL, 2, 2, 0, &y) == CLT_ERR_INVALID, "NULL input must be refused");
    TU_CHECK(clt_max_pool2d(g, x, 2, 2, 0, NULL) == CLT_ERR_INVALID, "NULL out must be refused");
    TU_CHECK(clt_global_avg_pool(g, x2, &y) == CLT_ERR_SHAPE, "2-D input must be refused");
    TU_CHECK(clt_max_pool2d(g, x, 5, 1, 2, &y) == CLT_OK && y, "5x5 window on 4x4 with padding 2 fits");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_pool");
}
