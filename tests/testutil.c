/* testutil.c - implementation of the shared test helpers. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

int tu_close(const char *what, const float *got, const double *ref, size_t n, double rtol, double atol)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    double tol = atol + rtol * scale, worst = -1;
    size_t wi = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= tol)) bad++;
        if (!(e <= worst)) worst = e, wi = i;
    }
    if (bad) {
        fprintf(stderr, "FAIL %s: %d of %zu values off (tol %.3g = %.1g + %.1g * %.3g); worst [%zu] got %.7g want %.7g\n",
                what, bad, n, tol, atol, rtol, scale, wi, got[wi], ref[wi]);
        tu_failures++;
        return 0;
    }
    return 1;
}

int tu_close_elem(const char *what, const float *got, const double *ref, size_t n, double rtol, double atol)
{
    double worst = -1;
    size_t wi = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]), tol = atol + rtol * fabs(ref[i]);
        if (!(e <= tol)) bad++;
        if (!(e - tol <= worst)) worst = e - tol, wi = i;
    }
    if (bad) {
        fprintf(stderr, "FAIL %s: %d of %zu values off (tol %.1g + %.1g * |ref|); worst [%zu] got %.7g want %.7g\n",
                what, bad, n, atol, rtol, wi, got[wi], ref[wi]);
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

typedef struct tensor_data {
    clt_tensor *t;
    size_t n;
    double *d;   /* values in double for the reference */
    float *grad; /* gradient from the device */
} tensor_data;

static double objective(tu_opcheck *c, double **ins, double **ps, double *out, const double *R, size_t nout)
{
    c->ref(c->ud, (const double *const *)ins, (const double *const *)ps, out);
    double s = 0;
    for (size_t i = 0; i < nout; i++) s += R[i] * out[i];
    return s;
}

int tu_check_op(clt_context *ctx, const char *label, tu_opcheck *c)
{
    int fails0 = tu_failures;
    char what[256];
    if (c->fd_h == 0) c->fd_h = 1e-3;
    if (c->max_fd == 0) c->max_fd = 64;
    if (c->rtol == 0 && c->atol == 0) c->rtol = 1e-4, c->atol = 1e-5;
    if (c->grad_rtol == 0 && c->grad_atol == 0) c->grad_rtol = 2e-3, c->grad_atol = 1e-4;
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
        (c->elementwise ? tu_close_elem : tu_close)(what, out, ref, nout, c->rtol, c->atol);
    }
    for (size_t i = 0; i < nout; i++) Rf[i] = (float)tu_uniform(&rng, -1, 1), R[i] = Rf[i];
    if (TU_OK(ctx, clt_graph_backward_from(g, c->out, Rf, nout))) {
        for (int i = 0; i < c->nin; i++)
            if (!c->no_grad[i]) TU_OK(ctx, clt_tensor_read(g, c->in[i], 1, in[i].grad, in[i].n));
        for (int i = 0; i < np; i++) TU_OK(ctx, clt_tensor_read(g, ps[i].t, 1, ps[i].grad, ps[i].n));
        /* Finite differences on the double reference. */
        for (int which = 0; which < 2; which++) {
            int cnt = which == 0 ? c->nin : np;
            for (int i = 0; i < cnt; i++) {
                tensor_data *td = which == 0 ? &in[i] : &ps[i];
                if (which == 0 && c->no_grad[i]) continue;
                size_t m = td->n < (size_t)c->max_fd ? td->n : (size_t)c->max_fd;
                float *got = malloc(m * sizeof(float));
                double *want = malloc(m * sizeof(double));
                for (size_t k = 0; k < m; k++) {
                    size_t j = td->n <= (size_t)c->max_fd ? k : (size_t)(tu_uniform(&rng, 0, 1) * td->n) % td->n;
                    if (c->elementwise && td->n > (size_t)c->max_fd && k < 2) j = k == 0 ? 0 : td->n - 1;
                    double save = td->d[j];
                    td->d[j] = save + c->fd_h;
                    double fp = objective(c, ins, pv, tmpo, R, nout);
                    td->d[j] = save - c->fd_h;
                    double fm = objective(c, ins, pv, tmpo, R, nout);
                    td->d[j] = save;
                    want[k] = (fp - fm) / (2 * c->fd_h);
                    got[k] = td->grad[j];
                }
                snprintf(what, sizeof what, "%s d/d%s", label, clt_tensor_name(td->t));
                (c->elementwise ? tu_close_elem : tu_close)(what, got, want, m, c->grad_rtol, c->grad_atol);
                free(got);
                free(want);
            }
        }
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
        TU_CHECK(clt_errmsg(ctx)[0] != 0, "%s: error message must be set", l->name);
        TU_CHECK(l->fn(g, a, NULL, &y) == CLT_ERR_INVALID, "%s: NULL target must be refused", l->name);
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

void tu_conv_ref_op(void *ud, const double *const *in, const double *const *p, double *out)
{
    const tu_conv_geom *d = ud;
    tu_conv_ref(d, in[0], p[0], d->bias ? p[1] : NULL, out);
}
