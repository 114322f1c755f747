/* testutil.c - implementation of the shared test helpers. */
#include "testutil.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int tu_failures = 0;

clt_context *tu_context(void)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.tune = CLT_TUNE_OFF;
    clt_context *ctx = NULL;
    int st = clt_context_create(&s, &ctx);
    if (st != CLT_OK) {
        fprintf(stderr, "cannot create an OpenCL context: %s\n", clt_errmsg(ctx));
        clt_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

static uint64_t next(tu_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tu_uniform(tu_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(next(r) >> 11) / 9007199254740992.0);
}

double tu_normal(tu_rng *r)
{
    double u1 = tu_uniform(r, 1e-12, 1), u2 = tu_uniform(r, 0, 1);
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

void tu_fill_uniform(tu_rng *r, float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)tu_uniform(r, lo, hi);
}

int tu_finish(const char *test)
{
    if (tu_failures) {
        fprintf(stderr, "%s: %d check(s) FAILED\n", test, tu_failures);
        return 1;
    }
    printf("%s: all checks passed\n", test);
    return 0;
}

int tu_ok(clt_context *ctx, int status, const char *what, const char *file, int line)
{
    if (status == CLT_OK) return 1;
    fprintf(stderr, "FAIL %s:%d: %s returned %d (%s): %s\n", file, line, what, status, clt_status_string(status),
            clt_errmsg(ctx));
    tu_failures++;
    return 0;
}

double tu_sum_atol(double k, double m)
{
    return 4 * TU_U32 * m * (k < 1 ? 1 : k);
}

double tu_sum_rtol(double k)
{
    return 8 * TU_U32 * (1 + sqrt(k < 1 ? 1 : k));
}

int tu_close(const char *what, const float *got, const double *ref, size_t n, double rtol, double atol)
{
    double worst = -1, e2 = 0, r2 = 0, a2 = 0;
    size_t wi = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]), allowed = atol + rtol * fabs(ref[i]);
        double ratio = e == 0 ? 0 : allowed > 0 ? e / allowed : INFINITY;
        if (isnan(ratio)) ratio = INFINITY;
        if (!(e <= allowed)) bad++;
        if (ratio > worst) worst = ratio, wi = i;
        e2 += e * e, r2 += ref[i] * ref[i], a2 += allowed * allowed;
    }
    double rel = r2 > 0 ? sqrt(e2 / r2) : sqrt(e2);
    double nf = n < 4 ? 1 / sqrt((double)(n ? n : 1)) : 0.5; /* 1 for one element: the per-element bound */
    int norm_ok = sqrt(e2) <= nf * sqrt(a2);
    if (getenv("TU_SHOW_MARGIN")) /* how close each check came to its bound (for choosing tolerances) */
        printf("margin %-70.70s worst error/allowed %.3g, norm %.3g of its bound\n", what, worst,
               a2 > 0 ? sqrt(e2) / (nf * sqrt(a2)) : 0.0);
    if (bad || !norm_ok) {
        double allowed = n ? atol + rtol * fabs(ref[wi]) : 0;
        if (bad)
            fprintf(stderr, "FAIL %s: %zu of %zu values off (allowed atol %.3g + rtol %.3g * |ref|); worst [%zu] got "
                    "%.9g ref %.9g error %.3g allowed %.3g; relative L2 error %.3g\n", what, bad, n, atol, rtol, wi,
                    n ? got[wi] : 0.0f, n ? ref[wi] : 0.0, n ? fabs(got[wi] - ref[wi]) : 0.0, allowed, rel);
        else
            fprintf(stderr, "FAIL %s: norm check: ||got-ref|| %.3g > %.2g * ||allowed|| %.3g (relative L2 error %.3g; "
                    "atol %.3g, rtol %.3g); worst [%zu] got %.9g ref %.9g allowed %.3g\n", what, sqrt(e2), nf,
                    nf * sqrt(a2), rel, atol, rtol, wi, got[wi], ref[wi], allowed);
        tu_failures++;
        return 0;
    }
    return 1;
}

int tu_close_f(const char *what, const float *got, const float *ref, size_t n, double rtol, double atol)
{
    double *r = malloc(n * sizeof *r);
    if (!r) return 0;
    for (size_t i = 0; i < n; i++) r[i] = ref[i];
    int ok = tu_close(what, got, r, n, rtol, atol);
    free(r);
    return ok;
}

/* Moves a random selection of `take` of cand[0..n-1] to its front (partial Fisher-Yates: no repetition). */
static size_t draw(tu_rng *rng, size_t *cand, size_t n, size_t take)
{
    if (take > n) take = n;
    for (size_t i = 0; i < take; i++) {
        size_t j = i + (size_t)(tu_uniform(rng, 0, 1) * (double)(n - i));
        if (j >= n) j = n - 1;
        size_t t = cand[i];
        cand[i] = cand[j], cand[j] = t;
    }
    return take;
}

size_t tu_fd_indices(int ndim, const int *dims, int border, size_t fd_all, size_t fd_edges, size_t max_fd,
                     tu_rng *rng, size_t *idx)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)dims[d];
    if (n <= fd_all) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        return n;
    }
    size_t *edge = malloc(n * sizeof *edge), *inner = malloc(n * sizeof *inner);
    if (!edge || !inner) {
        free(edge), free(inner);
        return 0;
    }
    size_t nc = 0, ne = 0, ni = 0;
    int first_spatial = ndim == 4 ? 2 : 0;
    for (size_t i = 0; i < n; i++) {
        size_t r = i;
        int all_band = 1, spatial_band = 0;
        for (int d = ndim - 1; d >= 0; d--) {
            size_t D = (size_t)dims[d], x = r % D;
            r /= D;
            int in_band = x < (size_t)border || x + (size_t)border >= D;
            all_band &= in_band;
            if (d >= first_spatial && in_band) spatial_band = 1;
        }
        if (all_band) idx[nc++] = i;
        else if (spatial_band) edge[ne++] = i;
        else inner[ni++] = i;
    }
    ne = draw(rng, edge, ne, fd_edges);
    ni = draw(rng, inner, ni, max_fd);
    memcpy(idx + nc, edge, ne * sizeof *idx);
    memcpy(idx + nc + ne, inner, ni * sizeof *idx);
    free(edge), free(inner);
    return nc + ne + ni;
}

typedef struct tensor_data {
    clt_tensor *t;
    size_t n;
    double *d;   /* values in double for the reference */
    float *grad; /* gradient from the device */
} tensor_data;

static double objective(tu_opcheck *c, double **ins, double **ps, double *out, const double *R, size_t nout,
                        double *abs_sum)
{
    c->ref(c->ud, (const double *const *)ins, (const double *const *)ps, out);
    double s = 0, a = 0;
    for (size_t i = 0; i < nout; i++) s += R[i] * out[i], a += fabs(R[i] * out[i]);
    if (abs_sum) *abs_sum = a;
    return s;
}

/* Finite differences of sum(R * ref) for the chosen elements of one tensor vs its device gradient. */
static void check_fd(tu_opcheck *c, const char *label, tensor_data *td, double **ins, double **pv, double *tmpo,
                     const double *R, size_t nout, tu_rng *rng, double rtol, double atol)
{
    char what[256];
    int dims[4] = {1, 1, 1, 1}, nd = clt_tensor_ndim(td->t);
    for (int d = 0; d < nd && d < 4; d++) dims[d] = clt_tensor_dim(td->t, d);
    size_t *idx = malloc(td->n * sizeof *idx);
    float *got = malloc(td->n * sizeof(float));
    double *want = malloc(td->n * sizeof(double));
    if (!idx || !got || !want) {
        TU_CHECK(0, "%s: out of host memory", label);
        free(idx), free(got), free(want);
        return;
    }
    size_t m = tu_fd_indices(nd, dims, c->border, (size_t)c->fd_all, (size_t)c->fd_edges, (size_t)c->max_fd, rng,
                             idx);
    double fd_round = 0;
    for (size_t k = 0; k < m; k++) {
        size_t j = idx[k];
        double save = td->d[j], ap, am;
        td->d[j] = save + c->fd_h;
        double fp = objective(c, ins, pv, tmpo, R, nout, &ap);
        td->d[j] = save - c->fd_h;
        double fm = objective(c, ins, pv, tmpo, R, nout, &am);
        td->d[j] = save;
        want[k] = (fp - fm) / (2 * c->fd_h);
        got[k] = td->grad[j];
        double r = 4e-16 * (ap > am ? ap : am) / (2 * c->fd_h);
        if (r > fd_round) fd_round = r;
    }
    snprintf(what, sizeof what, "%s d/d%s (%zu of %zu elements)", label, clt_tensor_name(td->t), m, td->n);
    tu_close(what, got, want, m, rtol, atol + c->fd_atol + fd_round);
    free(idx), free(got), free(want);
}

int tu_check_op(clt_context *ctx, const char *label, tu_opcheck *c)
{
    int fails0 = tu_failures;
    char what[256];
    if (c->fd_h == 0) c->fd_h = 1e-3;
    if (c->max_fd == 0) c->max_fd = 64;
    if (c->fd_all == 0) c->fd_all = 512;
    if (c->fd_edges == 0) c->fd_edges = 512;
    if (c->border == 0) c->border = 1;
    if (c->k == 0) c->k = 1;
    if (c->grad_k == 0) c->grad_k = c->k;
    if (c->mag == 0) c->mag = 1;
    if (c->rtol == 0 && c->atol == 0) c->rtol = tu_sum_rtol(c->k), c->atol = tu_sum_atol(c->k, c->mag);
    if (c->grad_rtol == 0 && c->grad_atol == 0)
        c->grad_rtol = tu_sum_rtol(c->grad_k), c->grad_atol = tu_sum_atol(c->grad_k, c->mag);
    if (c->in_grad_rtol == 0 && c->in_grad_atol == 0) c->in_grad_rtol = c->grad_rtol, c->in_grad_atol = c->grad_atol;
    tu_rng rng = {c->seed ? c->seed : 1234};
    clt_graph *g = c->g;

    tensor_data in[4] = {{0}}, ps[16] = {{0}};
    double *ins[4], *pv[16];
    int np = 0;
    for (int i = 0; i < c->nin; i++) {
        in[i].t = c->in[i];
        in[i].n = clt_tensor_numel(c->in[i]);
        in[i].d = malloc(in[i].n * sizeof(double));
        in[i].grad = malloc(in[i].n * sizeof(float));
        for (size_t j = 0; j < in[i].n; j++) in[i].d[j] = c->in_data[i][j];
        ins[i] = in[i].d;
        TU_OK(ctx, clt_tensor_write(g, c->in[i], c->in_data[i], in[i].n));
    }
    int nstate = clt_graph_state_count(g);
    for (int i = 0; i < nstate && np < 16; i++) {
        int tr = 0;
        clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
        if (!tr) continue;
        ps[np].t = t;
        ps[np].n = clt_tensor_numel(t);
        float *tmp = malloc(ps[np].n * sizeof(float));
        /* Non-trivial parameter values: biases start at zero, which would hide bias bugs. */
        tu_fill_uniform(&rng, tmp, ps[np].n, -1, 1);
        TU_OK(ctx, clt_tensor_write(g, t, tmp, ps[np].n));
        ps[np].d = malloc(ps[np].n * sizeof(double));
        ps[np].grad = malloc(ps[np].n * sizeof(float));
        for (size_t j = 0; j < ps[np].n; j++) ps[np].d[j] = tmp[j];
        free(tmp);
        pv[np] = ps[np].d;
        np++;
    }
    size_t nout = clt_tensor_numel(c->out);
    float *out = malloc(nout * sizeof(float));
    double *ref = malloc(nout * sizeof(double)), *tmpo = malloc(nout * sizeof(double));
    double *R = malloc(nout * sizeof(double));
    float *Rf = malloc(nout * sizeof(float));

    if (TU_OK(ctx, clt_graph_forward(g, c->training)) && TU_OK(ctx, clt_tensor_read(g, c->out, 0, out, nout))) {
        c->ref(c->ud, (const double *const *)ins, (const double *const *)pv, ref);
        snprintf(what, sizeof what, "%s forward", label);
        tu_close(what, out, ref, nout, c->rtol, c->atol);
    }
    for (size_t i = 0; i < nout; i++) Rf[i] = (float)tu_uniform(&rng, -1, 1), R[i] = Rf[i];
    if (TU_OK(ctx, clt_graph_backward_from(g, c->out, Rf, nout))) {
        for (int i = 0; i < c->nin; i++)
            if (!c->no_grad[i]) TU_OK(ctx, clt_tensor_read(g, c->in[i], 1, in[i].grad, in[i].n));
        for (int i = 0; i < np; i++) TU_OK(ctx, clt_tensor_read(g, ps[i].t, 1, ps[i].grad, ps[i].n));
        /* Finite differences on the double reference. */
        for (int i = 0; i < c->nin; i++)
            if (!c->no_grad[i])
                check_fd(c, label, &in[i], ins, pv, tmpo, R, nout, &rng, c->in_grad_rtol, c->in_grad_atol);
        for (int i = 0; i < np; i++)
            check_fd(c, label, &ps[i], ins, pv, tmpo, R, nout, &rng, c->grad_rtol, c->grad_atol);
    }
    for (int i = 0; i < c->nin; i++) free(in[i].d), free(in[i].grad);
    for (int i = 0; i < np; i++) free(ps[i].d), free(ps[i].grad);
    free(out), free(ref), free(tmpo), free(R), free(Rf);
    if (tu_failures == fails0) printf("ok   %s\n", label);
    return tu_failures == fails0;
}

typedef struct pair_ud {
    const tu_pair_loss *l;
    size_t n;
    int dense; /* pred = dense(x) with U=3 outputs from F=4 features, N = n/3 rows */
} pair_ud;

static void pair_ref(void *v, const double *const *in, const double *const *p, double *out)
{
    pair_ud *d = v;
    double s = 0;
    for (size_t i = 0; i < d->n; i++) {
        double pr = in[0][i];
        if (d->dense) {
            size_t r = i / 3, j = i % 3;
            pr = p[1][j];
            for (int f = 0; f < 4; f++) pr += in[0][r * 4 + f] * p[0][j * 4 + f];
        }
        s += d->l->term(pr, in[1][i]);
    }
    out[0] = s / (double)d->n;
}

/* Largest |term| and |d term / d pred| over the corners of [plo, phi] x [tlo, thi] (both losses are convex in
 * pred and convex or linear in target, so the corners bound them). */
static void pair_bounds(const tu_pair_loss *l, double plo, double phi, double tlo, double thi, double *tm, double *dm)
{
    double ps[2] = {plo, phi}, ts[2] = {tlo, thi}, h = 1e-4;
    *tm = *dm = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            *tm = fmax(*tm, fabs(l->term(ps[i], ts[j])));
            *dm = fmax(*dm, fabs(l->term(ps[i] + h, ts[j]) - l->term(ps[i] - h, ts[j])) / (2 * h));
        }
}

/* Tolerances of mean(term) over n elements (see testutil.h): the loss sums n terms of at most tm/n (k = n,
 * float32 exp/log: 8 more u); each gradient element is term'/n (k = 1, at most dm/n), after a dense layer also
 * summed over rows and units (gk); the forward then also sums the dense layer's products (k). Finite
 * differences truncate by ~h^2/6 * |term'''| / n with |term'''| <= 1 for both losses (0 for the squared
 * error). */
static void pair_tolerances(double n, double k, double tm, double dm, double gk, tu_opcheck *c)
{
    c->rtol = tu_sum_rtol(k) + 8 * TU_U32;
    c->atol = tu_sum_atol(k, tm / n);
    c->grad_rtol = tu_sum_rtol(gk) + 8 * TU_U32;
    c->grad_atol = tu_sum_atol(gk, dm / n);
    c->fd_atol = 1e-6 / 6 / n;
}

void tu_check_pair_loss(clt_context *ctx, tu_rng *rng, const tu_pair_loss *l)
{
    int shapes[][4] = {{1, 1, 1, 1}, {4, 3, 1, 1}, {2, 3, 4, 5}, {1000, 1, 1, 1}, {3, 257, 1, 1}};
    int nd[] = {1, 2, 4, 1, 2};
    for (int si = 0; si < 5; si++)
        for (int tg = 0; tg < 2; tg++) {
            clt_graph *g = NULL;
            clt_tensor *x, *t, *loss;
            TU_OK(ctx, clt_graph_create(ctx, &g));
            TU_OK(ctx, clt_input(g, "pred", nd[si], shapes[si], &x));
            TU_OK(ctx, clt_input(g, "target", nd[si], shapes[si], &t));
            TU_OK(ctx, l->fn(g, x, t, &loss));
            TU_OK(ctx, clt_graph_keep(g, x, 1));
            if (tg) TU_OK(ctx, clt_graph_keep(g, t, 1));
            if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
                clt_graph_destroy(g);
                continue;
            }
            size_t n = clt_tensor_numel(x);
            float *xd = malloc(n * sizeof(float)), *td = malloc(n * sizeof(float));
            tu_fill_uniform(rng, xd, n, l->pred_lo, l->pred_hi);
            tu_fill_uniform(rng, td, n, l->target_lo, l->target_hi);
            pair_ud u = {l, n, 0};
            tu_opcheck c = {.g = g, .nin = 2, .in = {x, t}, .in_data = {xd, td}, .no_grad = {0, !tg}, .out = loss,
                            .ref = pair_ref, .ud = &u, .training = 1, .seed = (uint64_t)(si * 2 + tg + 1)};
            double tm, dm;
            pair_bounds(l, l->pred_lo, l->pred_hi, l->target_lo, l->target_hi, &tm, &dm);
            pair_tolerances((double)n, (double)n, tm, dm, 1, &c);
            char label[64];
            snprintf(label, sizeof label, "%s shape#%d target grad %d", l->name, si, tg);
            tu_check_op(ctx, label, &c);
            free(xd), free(td);
            clt_graph_destroy(g);
        }

    /* pred from a dense layer: parameter gradients flow through the loss. */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *t, *y, *loss;
        int xs[2] = {5, 4}, ts[2] = {5, 3};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
        TU_OK(ctx, clt_input(g, "target", 2, ts, &t));
        TU_OK(ctx, clt_dense(g, x, 3, 1, CLT_INIT_DEFAULT, "fc", &y));
        TU_OK(ctx, l->fn(g, y, t, &loss));
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            float xd[20], td[15];
            tu_fill_uniform(rng, xd, 20, -1, 1);
            tu_fill_uniform(rng, td, 15, l->dense_target_lo, l->dense_target_hi);
            pair_ud u = {l, 15, 1};
            tu_opcheck c = {.g = g, .nin = 2, .in = {x, t}, .in_data = {xd, td}, .no_grad = {0, 1}, .out = loss,
                            .ref = pair_ref, .ud = &u, .training = 1, .seed = 99};
            /* pred = 4 products + bias, |pred| <= 5; the gradients sum over 5 rows and 3 units */
            double tm, dm;
            pair_bounds(l, -5, 5, l->dense_target_lo, l->dense_target_hi, &tm, &dm);
            pair_tolerances(15, 15 + 5, tm, dm * 5, 5 + 3 + 4, &c);
            char label[64];
            snprintf(label, sizeof label, "%s after dense", l->name);
            tu_check_op(ctx, label, &c);
        }
        clt_graph_destroy(g);
    }

    /* Shapes must match exactly (no broadcasting). */
    {
        clt_graph *g = NULL;
        clt_tensor *a, *b, *y = NULL;
        int as[2] = {4, 1}, bs[1] = {4};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "a", 2, as, &a));
        TU_OK(ctx, clt_input(g, "b", 1, bs, &b));
        TU_CHECK(l->fn(g, a, b, &y) == CLT_ERR_SHAPE && !y, "%s: (4,1) vs (4) must be refused", l->name);
        TU_MSG(ctx, "must have the same shape");
        TU_CHECK(l->fn(g, a, NULL, &y) == CLT_ERR_INVALID, "%s: NULL target must be refused", l->name);
        TU_MSG(ctx, " is NULL");
        clt_graph_destroy(g);
    }
}

int tu_pair_loss_aliased(clt_context *ctx, const tu_pair_loss *l, const float *xd, float *v, float *gx)
{
    clt_graph *g = NULL;
    clt_tensor *x, *loss;
    int xs[2] = {3, 70};
    int ok = TU_OK(ctx, clt_graph_create(ctx, &g)) && TU_OK(ctx, clt_input(g, "x", 2, xs, &x)) &&
             TU_OK(ctx, l->fn(g, x, x, &loss)) && TU_OK(ctx, clt_graph_keep(g, x, 1)) &&
             TU_OK(ctx, clt_graph_compile(g, NULL)) && TU_OK(ctx, clt_tensor_write(g, x, xd, 210)) &&
             TU_OK(ctx, clt_graph_forward(g, 1)) && TU_OK(ctx, clt_graph_backward(g, loss)) &&
             TU_OK(ctx, clt_tensor_read(g, loss, 0, v, 1)) && TU_OK(ctx, clt_tensor_read(g, x, 1, gx, 210));
    clt_graph_destroy(g);
    return ok;
}

tu_conv_geom tu_conv_geom_of(const int *cs)
{
    tu_conv_geom u = {cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6], cs[7], cs[8], cs[9], cs[10], cs[11], 0, 0};
    u.oh = (u.h + 2 * u.ph - u.kh) / u.sh + 1;
    u.ow = (u.w + 2 * u.pw - u.kw) / u.sw + 1;
    return u;
}

clt_conv2d_params tu_conv_params(const tu_conv_geom *d)
{
    clt_conv2d_params p;
    clt_conv2d_default_params(&p, d->co, d->kh);
    p.kernel_w = d->kw;
    p.stride_h = d->sh, p.stride_w = d->sw, p.pad_h = d->ph, p.pad_w = d->pw, p.bias = d->bias;
    return p;
}

void tu_conv_ref(const tu_conv_geom *d, const double *x, const double *wt, const double *b, double *out)
{
    for (int n = 0; n < d->n; n++)
        for (int co = 0; co < d->co; co++)
            for (int oh = 0; oh < d->oh; oh++)
                for (int ow = 0; ow < d->ow; ow++) {
                    double s = b ? b[co] : 0;
                    for (int c = 0; c < d->c; c++)
                        for (int kh = 0; kh < d->kh; kh++)
                            for (int kw = 0; kw < d->kw; kw++) {
                                int ih = oh * d->sh - d->ph + kh, iw = ow * d->sw - d->pw + kw;
                                if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                                s += x[((n * d->c + c) * d->h + ih) * d->w + iw] *
                                     wt[((co * d->c + c) * d->kh + kh) * d->kw + kw];
                            }
                    out[((n * d->co + co) * d->oh + oh) * d->ow + ow] = s;
                }
}

void tu_conv_tolerances(const tu_conv_geom *d, tu_opcheck *c)
{
    double kf = (double)d->c * d->kh * d->kw + 1, kw = (double)d->n * d->oh * d->ow, kx = (double)d->co * d->kh * d->kw;
    c->rtol = tu_sum_rtol(kf);
    c->atol = tu_sum_atol(kf, 1);
    c->grad_rtol = tu_sum_rtol(kw);
    c->grad_atol = tu_sum_atol(kw, 1);
    c->in_grad_rtol = tu_sum_rtol(kx);
    c->in_grad_atol = tu_sum_atol(kx, 1);
    int b = (d->kh > d->kw ? d->kh : d->kw) - 1;
    c->border = b < 1 ? 1 : b;
}

void tu_conv_ref_op(void *ud, const double *const *in, const double *const *p, double *out)
{
    const tu_conv_geom *d = ud;
    tu_conv_ref(d, in[0], p[0], d->bias ? p[1] : NULL, out);
}

/* ------------------------------------------------------------------------------------------ running the tool */

char *tu_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = calloc((size_t)n + 1, 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) b[0] = 0;
    fclose(f);
    return b;
}

tu_result tu_run_v(const char *bin, const char *dir, const char *first, va_list ap)
{
    const char *argv[48];
    int n = 0;
    argv[n++] = bin;
    for (const char *a = first; a && n < 47; a = va_arg(ap, const char *)) argv[n++] = a;
    argv[n] = NULL;
    char po[4200], pe[4200];
    snprintf(po, sizeof po, "%.3000s/%.1000s", dir, "stdout.txt");
    snprintf(pe, sizeof pe, "%.3000s/%.1000s", dir, "stderr.txt");
    fprintf(stderr, "$ cltrain");
    for (int i = 1; i < n; i++) fprintf(stderr, " %s", argv[i]);
    fprintf(stderr, "\n");
    tu_result r = {-1, NULL, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) _exit(127);
        dup2(fo, 1);
        dup2(fe, 2);
        alarm(280);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st)) r.code = WEXITSTATUS(st);
    r.out = tu_slurp(po);
    r.err = tu_slurp(pe);
    fprintf(stderr, "  -> exit %d\n", r.code);
    return r;
}

void tu_result_free(tu_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

void tu_expect_fail(tu_result r, const char *needle, const char *what)
{
    int ok = r.code > 0 && strstr(r.err, needle);
    TU_CHECK(ok, "%s: expected a failure mentioning '%s' (exit %d)\n%s%s", what, needle, r.code, r.out, r.err);
    if (ok) fprintf(stderr, "  stderr: %s", r.err);
    tu_result_free(&r);
}
