/* test_train_features.c - the training features transformers need, on any model: per-parameter weight decay
 * (matrices only), gradient clipping by global norm on the device, gradient accumulation over micro-batches,
 * and the warmup + cosine learning-rate schedule, each against a host computation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* |got - ref| <= atol + rtol * |ref| for every element (not scaled by the array's largest value). */
static int close_each(const char *what, const float *got, const double *ref, size_t n, double rtol, double atol)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= atol + rtol * fabs(ref[i]))) {
            TU_CHECK(0, "%s: element %zu of %zu is %.9g, expected %.9g (diff %.3g)", what, i, n, got[i], ref[i], d);
            return 0;
        }
    }
    return 1;
}

static int close_each_f(const char *what, const float *got, const float *ref, size_t n, double rtol, double atol)
{
    double *r = malloc(n * sizeof *r);
    for (size_t i = 0; i < n; i++) r[i] = ref[i];
    int ok = close_each(what, got, r, n, rtol, atol);
    free(r);
    return ok;
}

static int has(const char *msg, const char *part)
{
    return strstr(msg, part) != NULL;
}

/* All trainable tensors of g, their sizes and total. */
typedef struct {
    int n;
    clt_tensor *t[16];
    size_t numel[16], total;
} params;

static void list_params(clt_graph *g, params *p)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < clt_graph_state_count(g) && p->n < 16; i++) {
        int tr = 0;
        clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
        if (!tr) continue;
        p->t[p->n] = t;
        p->numel[p->n] = clt_tensor_numel(t);
        p->total += p->numel[p->n++];
    }
}

/* Reads every parameter (grad = 0) or gradient (grad = 1) into one host array, in state order. */
static void read_all(clt_context *ctx, clt_graph *g, const params *p, int grad, float *out)
{
    size_t o = 0;
    for (int i = 0; i < p->n; i++) {
        TU_OK(ctx, clt_tensor_read(g, p->t[i], grad, out + o, p->numel[i]));
        o += p->numel[i];
    }
}

static void write_all(clt_context *ctx, clt_graph *g, const params *p, const float *in)
{
    size_t o = 0;
    for (int i = 0; i < p->n; i++) {
        TU_OK(ctx, clt_tensor_write(g, p->t[i], in + o, p->numel[i]));
        o += p->numel[i];
    }
}

/* ------------------------------------------------------------------------------------------ weight decay */

/* x (6,3) -> fc1 dense(4) -> tanh -> fc2 dense(2) -> mse. */
typedef struct {
    clt_graph *g;
    clt_tensor *x, *t, *loss;
} mlp;

static int mlp_build(clt_context *ctx, mlp *m, int batch, int hidden)
{
    memset(m, 0, sizeof *m);
    clt_tensor *h, *a, *y;
    int xs[2] = {batch, 3}, ts[2] = {batch, 2};
    return TU_OK(ctx, clt_graph_create(ctx, &m->g)) && TU_OK(ctx, clt_input(m->g, "x", 2, xs, &m->x)) &&
           TU_OK(ctx, clt_input(m->g, "t", 2, ts, &m->t)) &&
           TU_OK(ctx, clt_dense(m->g, m->x, hidden, 1, CLT_INIT_DEFAULT, "fc1", &h)) &&
           TU_OK(ctx, clt_tanh(m->g, h, &a)) && TU_OK(ctx, clt_dense(m->g, a, 2, 1, CLT_INIT_DEFAULT, "fc2", &y)) &&
           TU_OK(ctx, clt_mse(m->g, y, m->t, &m->loss));
}

static clt_tensor *param_named(clt_graph *g, const char *name)
{
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        clt_tensor *t = clt_graph_state_tensor(g, i, NULL);
        if (!strcmp(clt_tensor_name(t), name)) return t;
    }
    return NULL;
}

/* Runs 3 steps of `type` with weight decay and checks each parameter against the host update with its
 * expected decay flag (order fc1.weight, fc1.bias, fc2.weight, fc2.bias). */
static void check_decay(clt_context *ctx, const char *label, int type, int matrices_only, const int *override,
                        const int *expect)
{
    int f0 = tu_failures;
    mlp m;
    if (!mlp_build(ctx, &m, 6, 4)) return;
    const char *names[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
    for (int i = 0; i < 4; i++)
        if (override[i] >= 0) TU_OK(ctx, clt_tensor_set_weight_decay(m.g, param_named(m.g, names[i]), override[i]));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, type);
    const double wd = 0.2, b1 = 0.9, b2 = 0.999, lr = 0.05;
    cs.optimizer.weight_decay = (float)wd;
    cs.optimizer.decay_matrices_only = matrices_only;
    if (!TU_OK(ctx, clt_graph_compile(m.g, &cs))) goto out;
    params p;
    list_params(m.g, &p);
    TU_CHECK(p.n == 4, "%s: %d parameters", label, p.n);
    for (int i = 0; i < 4; i++) {
        int e = -1;
        TU_OK(ctx, clt_tensor_weight_decay(m.g, param_named(m.g, names[i]), &e));
        TU_CHECK(e == expect[i], "%s: %s decays %d, expected %d", label, names[i], e, expect[i]);
    }
    tu_rng rng = {11};
    float xd[18], td[12], w[64], gr[64];
    tu_fill_uniform(&rng, xd, 18, -1, 1);
    tu_fill_uniform(&rng, td, 12, -1, 1);
    TU_OK(ctx, clt_tensor_write(m.g, m.x, xd, 18));
    TU_OK(ctx, clt_tensor_write(m.g, m.t, td, 12));
    tu_fill_uniform(&rng, w, p.total, -1, 1); /* non-zero biases: decay would show on every tensor */
    write_all(ctx, m.g, &p, w);
    double ref[64], mom[64] = {0}, vel[64] = {0};
    for (size_t j = 0; j < p.total; j++) ref[j] = w[j];
    for (int step = 1; step <= 3; step++) {
        TU_OK(ctx, clt_graph_forward(m.g, 1));
        TU_OK(ctx, clt_graph_backward(m.g, m.loss));
        read_all(ctx, m.g, &p, 1, gr);
        TU_OK(ctx, clt_graph_step(m.g, (float)lr));
        size_t o = 0;
        for (int i = 0; i < p.n; i++)
            for (size_t j = 0; j < p.numel[i]; j++, o++) {
                double d = expect[i] ? wd : 0, g = gr[o];
                if (type == CLT_OPT_SGD) {
                    ref[o] -= lr * (g + d * ref[o]);
                    continue;
                }
                if (type == CLT_OPT_ADAMW) ref[o] *= 1 - lr * d;
                else g += d * ref[o];
                mom[o] = b1 * mom[o] + (1 - b1) * g;
                vel[o] = b2 * vel[o] + (1 - b2) * g * g;
                ref[o] -= lr * (mom[o] / (1 - pow(b1, step))) / (sqrt(vel[o] / (1 - pow(b2, step))) + 1e-8);
            }
        read_all(ctx, m.g, &p, 0, w);
        char what[160];
        snprintf(what, sizeof what, "%s step %d", label, step);
        close_each(what, w, ref, p.total, 1e-5, 1e-6);
    }
out:
    clt_graph_destroy(m.g);
    if (tu_failures == f0) printf("ok   weight decay: %s\n", label);
}

static void test_decay_rules(clt_context *ctx)
{
    const int none[4] = {-1, -1, -1, -1}, all[4] = {1, 1, 1, 1}, mat[4] = {1, 0, 1, 0};
    check_decay(ctx, "adamw, every parameter (default)", CLT_OPT_ADAMW, 0, none, all);
    check_decay(ctx, "adamw, matrices only", CLT_OPT_ADAMW, 1, none, mat);
    check_decay(ctx, "sgd L2, matrices only", CLT_OPT_SGD, 1, none, mat);
    check_decay(ctx, "adam L2, matrices only", CLT_OPT_ADAM, 1, none, mat);
    /* A parameter's own flag wins over either rule. */
    const int ov1[4] = {-1, 1, 0, -1}, ex1[4] = {1, 1, 0, 0};
    check_decay(ctx, "adamw, matrices only, fc1.bias on, fc2.weight off", CLT_OPT_ADAMW, 1, ov1, ex1);
    const int ov2[4] = {0, -1, -1, 0}, ex2[4] = {0, 1, 1, 0};
    check_decay(ctx, "adamw, every parameter, fc1.weight and fc2.bias off", CLT_OPT_ADAMW, 0, ov2, ex2);

    /* Conv weights are matrices; batch-norm scale and shift and the conv bias are not. */
    int f0 = tu_failures;
    clt_graph *g = NULL;
    clt_tensor *x, *c, *b, *y;
    int xs[4] = {2, 2, 5, 5};
    clt_conv2d_params cp;
    clt_conv2d_default_params(&cp, 3, 3);
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
    TU_OK(ctx, clt_conv2d(g, x, &cp, "conv1", &c));
    TU_OK(ctx, clt_batch_norm(g, c, 0.1f, 1e-5f, "bn1", &b));
    TU_OK(ctx, clt_dense(g, b, 2, 1, CLT_INIT_DEFAULT, "fc1", &y));
    clt_context *cx = ctx;
    /* Not a parameter; bad flag; before compile the query refuses. */
    TU_CHECK(clt_tensor_set_weight_decay(g, x, 0) == CLT_ERR_INVALID && has(clt_errmsg(cx), "'x' is not a learned parameter"),
             "set_weight_decay on an input: %s", clt_errmsg(cx));
    TU_CHECK(clt_tensor_set_weight_decay(g, param_named(g, "fc1.weight"), 2) == CLT_ERR_INVALID &&
                 has(clt_errmsg(cx), "enabled is 2 (0 or 1)"), "enabled 2: %s", clt_errmsg(cx));
    int e = -1;
    TU_CHECK(clt_tensor_weight_decay(g, param_named(g, "fc1.weight"), &e) == CLT_ERR_STATE &&
                 has(clt_errmsg(cx), "compile the graph for training first"), "query before compile: %s", clt_errmsg(cx));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_ADAMW);
    cs.optimizer.decay_matrices_only = 1;
    if (TU_OK(ctx, clt_graph_compile(g, &cs))) {
        const char *nm[] = {"conv1.weight", "conv1.bias", "bn1.gamma", "bn1.beta", "fc1.weight", "fc1.bias"};
        const int ex[] = {1, 0, 0, 0, 1, 0};
        int seen = 0;
        for (int i = 0; i < clt_graph_state_count(g); i++) {
            int tr;
            clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
            if (!tr) continue;
            for (int k = 0; k < 6; k++)
                if (!strcmp(clt_tensor_name(t), nm[k])) {
                    seen++;
                    TU_OK(ctx, clt_tensor_weight_decay(g, t, &e));
                    TU_CHECK(e == ex[k], "matrices only: %s decays %d, expected %d", nm[k], e, ex[k]);
                }
            if (tr && (strstr(clt_tensor_name(t), ".bias") || strstr(clt_tensor_name(t), "bn1."))) {
                TU_OK(ctx, clt_tensor_weight_decay(g, t, &e));
                TU_CHECK(e == 0, "%s (a vector) decays", clt_tensor_name(t));
            }
        }
        TU_CHECK(seen >= 4, "found %d of the expected parameter names", seen);
        TU_CHECK(clt_tensor_set_weight_decay(g, param_named(g, "fc1.weight"), 0) == CLT_ERR_STATE &&
                     has(clt_errmsg(cx), "already compiled"), "set after compile: %s", clt_errmsg(cx));
    }
    clt_graph_destroy(g);
    /* An invalid rule value is refused at compile. */
    mlp m;
    if (mlp_build(ctx, &m, 2, 2)) {
        clt_compile_default_settings(&cs);
        cs.optimizer.decay_matrices_only = 3;
        TU_CHECK(clt_graph_compile(m.g, &cs) == CLT_ERR_INVALID && has(clt_errmsg(cx), "decay_matrices_only 3"),
                 "decay_matrices_only 3: %s", clt_errmsg(cx));
    }
    clt_graph_destroy(m.g);
    if (tu_failures == f0) printf("ok   weight decay: conv/batch-norm defaults, errors\n");
}

/* ------------------------------------------------------------------------------------------ clipping */

static void test_clip(clt_context *ctx)
{
    int f0 = tu_failures;
    mlp m;
    /* fc1 (40,3)+40, fc2 (2,40)+2: 242 values, then a wider one: more than the 1024 first-stage work-items. */
    for (int round = 0; round < 2; round++) {
        int hidden = round ? 600 : 40;
        if (!mlp_build(ctx, &m, 5, hidden)) return;
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        if (!TU_OK(ctx, clt_graph_compile(m.g, &cs))) {
            clt_graph_destroy(m.g);
            return;
        }
        params p;
        list_params(m.g, &p);
        tu_rng rng = {21 + (uint64_t)round};
        float xd[15], td[10];
        tu_fill_uniform(&rng, xd, 15, -2, 2);
        tu_fill_uniform(&rng, td, 10, -3, 3);
        TU_OK(ctx, clt_tensor_write(m.g, m.x, xd, 15));
        TU_OK(ctx, clt_tensor_write(m.g, m.t, td, 10));
        float *g0 = malloc(p.total * sizeof(float)), *g1 = malloc(p.total * sizeof(float));
        double *ref = malloc(p.total * sizeof(double));
        TU_OK(ctx, clt_graph_forward(m.g, 1));
        TU_OK(ctx, clt_graph_backward(m.g, m.loss));
        read_all(ctx, m.g, &p, 1, g0);
        double ss = 0;
        for (size_t i = 0; i < p.total; i++) ss += (double)g0[i] * g0[i];
        double norm = sqrt(ss);
        TU_CHECK(norm > 0.01, "round %d: gradient norm %g is too small to test with", round, norm);

        /* Measuring only (INFINITY): the norm, gradients untouched (bitwise). */
        float got = -1;
        TU_OK(ctx, clt_graph_clip_grad_norm(m.g, INFINITY, &got));
        TU_CHECK(fabs(got - norm) <= 1e-5 * norm, "round %d: norm %.9g, host %.9g", round, got, norm);
        read_all(ctx, m.g, &p, 1, g1);
        TU_CHECK(!memcmp(g0, g1, p.total * sizeof(float)), "round %d: measuring changed the gradients", round);

        /* Under the norm: a no-op, bitwise. */
        got = -1;
        TU_OK(ctx, clt_graph_clip_grad_norm(m.g, (float)(norm * 1.5), &got));
        read_all(ctx, m.g, &p, 1, g1);
        TU_CHECK(!memcmp(g0, g1, p.total * sizeof(float)), "round %d: clipping under the norm changed gradients", round);
        TU_CHECK(fabs(got - norm) <= 1e-5 * norm, "round %d: norm %.9g, host %.9g", round, got, norm);

        /* Over the norm: scaled by max / (norm + 1e-6); the new norm is max. Without norm_out nothing is read. */
        double mx = norm * 0.25;
        TU_OK(ctx, clt_graph_clip_grad_norm(m.g, (float)mx, NULL));
        read_all(ctx, m.g, &p, 1, g1);
        for (size_t i = 0; i < p.total; i++) ref[i] = g0[i] * (mx / (norm + 1e-6));
        char what[64];
        snprintf(what, sizeof what, "round %d: clipped gradients", round);
        close_each(what, g1, ref, p.total, 2e-5, 1e-9);
        got = -1;
        TU_OK(ctx, clt_graph_clip_grad_norm(m.g, INFINITY, &got));
        TU_CHECK(fabs(got - mx) <= 2e-5 * mx, "round %d: norm after clipping %.9g, expected %.9g", round, got, mx);

        /* The step uses the clipped gradients: SGD lr 1 moves each weight by exactly its clipped gradient. */
        float *w0 = malloc(p.total * sizeof(float)), *w1 = malloc(p.total * sizeof(float));
        read_all(ctx, m.g, &p, 0, w0);
        TU_OK(ctx, clt_graph_step(m.g, 1.0f));
        read_all(ctx, m.g, &p, 0, w1);
        for (size_t i = 0; i < p.total; i++) ref[i] = (double)w0[i] - g1[i];
        snprintf(what, sizeof what, "round %d: step after clipping", round);
        close_each(what, w1, ref, p.total, 1e-6, 1e-7);

        /* Non-finite gradients: the norm says so, the gradients stay as they are. */
        if (round == 0) {
            float up[1] = {INFINITY};
            TU_OK(ctx, clt_graph_forward(m.g, 1));
            TU_OK(ctx, clt_graph_backward_from(m.g, m.loss, up, 1));
            read_all(ctx, m.g, &p, 1, g0);
            TU_OK(ctx, clt_graph_clip_grad_norm(m.g, 1.0f, &got));
            read_all(ctx, m.g, &p, 1, g1);
            TU_CHECK(!isfinite(got), "infinite gradients: norm %g", got);
            TU_CHECK(!memcmp(g0, g1, p.total * sizeof(float)), "non-finite norm: the gradients were changed");
        }
        free(w0), free(w1), free(g0), free(g1), free(ref);
        /* Errors. */
        TU_CHECK(clt_graph_clip_grad_norm(m.g, 0.0f, NULL) == CLT_ERR_INVALID && has(clt_errmsg(ctx), "max_norm is 0"),
                 "max_norm 0: %s", clt_errmsg(ctx));
        TU_CHECK(clt_graph_clip_grad_norm(m.g, NAN, NULL) == CLT_ERR_INVALID && has(clt_errmsg(ctx), "must be > 0"),
                 "max_norm NaN: %s", clt_errmsg(ctx));
        clt_graph_destroy(m.g);
    }
    if (mlp_build(ctx, &m, 2, 2)) {
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        cs.training = 0;
        TU_CHECK(clt_graph_clip_grad_norm(m.g, 1.0f, NULL) == CLT_ERR_STATE && has(clt_errmsg(ctx), "compile the graph first"),
                 "clip before compile: %s", clt_errmsg(ctx));
        if (TU_OK(ctx, clt_graph_compile(m.g, &cs)))
            TU_CHECK(clt_graph_clip_grad_norm(m.g, 1.0f, NULL) == CLT_ERR_STATE &&
                         has(clt_errmsg(ctx), "compiled without training"), "clip on inference: %s", clt_errmsg(ctx));
    }
    clt_graph_destroy(m.g);
    if (tu_failures == f0) printf("ok   gradient clipping by global norm\n");
}

/* ------------------------------------------------------------------------------------------ accumulation */

/* The network of an accumulation check: an MLP or a small conv net (no batch norm), softmax cross-entropy. */
typedef struct {
    clt_graph *g;
    clt_tensor *x, *y, *loss;
    size_t xsz; /* floats per row */
} net;

static int net_build(clt_context *ctx, net *n, int conv, int batch, int accumulate)
{
    memset(n, 0, sizeof *n);
    clt_tensor *a, *b, *c, *o;
    int ys[1] = {batch};
    int ok = TU_OK(ctx, clt_graph_create(ctx, &n->g));
    if (conv) {
        int xs[4] = {batch, 2, 6, 6};
        clt_conv2d_params cp;
        clt_conv2d_default_params(&cp, 3, 3);
        cp.pad_h = cp.pad_w = 1;
        n->xsz = 2 * 6 * 6;
        ok = ok && TU_OK(ctx, clt_input(n->g, "x", 4, xs, &n->x)) && TU_OK(ctx, clt_conv2d(n->g, n->x, &cp, "conv1", &a)) &&
             TU_OK(ctx, clt_relu(n->g, a, &b)) && TU_OK(ctx, clt_max_pool2d(n->g, b, 2, 2, 0, &c)) &&
             TU_OK(ctx, clt_dense(n->g, c, 4, 1, CLT_INIT_DEFAULT, "fc1", &o));
    } else {
        int xs[2] = {batch, 5};
        n->xsz = 5;
        ok = ok && TU_OK(ctx, clt_input(n->g, "x", 2, xs, &n->x)) &&
             TU_OK(ctx, clt_dense(n->g, n->x, 6, 1, CLT_INIT_DEFAULT, "fc1", &a)) && TU_OK(ctx, clt_tanh(n->g, a, &b)) &&
             TU_OK(ctx, clt_dense(n->g, b, 4, 1, CLT_INIT_DEFAULT, "fc2", &o));
    }
    ok = ok && TU_OK(ctx, clt_input(n->g, "y", 1, ys, &n->y)) &&
         TU_OK(ctx, clt_softmax_cross_entropy(n->g, o, n->y, 0.0f, &n->loss));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_ADAM);
    cs.accumulate_grads = accumulate;
    return ok && TU_OK(ctx, clt_graph_compile(n->g, &cs));
}

/* One batch of B rows on one graph vs K micro-batches of B/K on another with the same weights: gradients,
 * then the parameters after 3 Adam steps. zero_first: clt_graph_zero_grad then accumulate every micro-batch. */
static void check_accumulate(clt_context *ctx, int conv, int B, int K, int zero_first)
{
    int f0 = tu_failures;
    net big, mic;
    char label[96];
    snprintf(label, sizeof label, "%s, batch %d as %d x %d%s", conv ? "conv net" : "mlp", B, K, B / K,
             zero_first ? " (zero_grad first)" : "");
    if (!net_build(ctx, &big, conv, B, 0) || !net_build(ctx, &mic, conv, B / K, 1)) goto out;
    params pb, pm;
    list_params(big.g, &pb);
    list_params(mic.g, &pm);
    TU_CHECK(pb.total == pm.total && pb.n == pm.n, "%s: parameter lists differ", label);
    float *w = malloc(pb.total * sizeof(float)), *gb = malloc(pb.total * sizeof(float)),
          *gm = malloc(pb.total * sizeof(float));
    read_all(ctx, big.g, &pb, 0, w);
    write_all(ctx, mic.g, &pm, w);
    tu_rng rng = {31 + (uint64_t)B};
    float *x = malloc((size_t)B * big.xsz * sizeof(float)), *y = malloc((size_t)B * sizeof(float));
    for (int step = 0; step < 3; step++) {
        tu_fill_uniform(&rng, x, (size_t)B * big.xsz, -1, 1);
        for (int i = 0; i < B; i++) y[i] = (float)(int)tu_uniform(&rng, 0, 3.999);
        TU_OK(ctx, clt_tensor_write(big.g, big.x, x, (size_t)B * big.xsz));
        TU_OK(ctx, clt_tensor_write(big.g, big.y, y, (size_t)B));
        TU_OK(ctx, clt_graph_forward(big.g, 1));
        TU_OK(ctx, clt_graph_backward(big.g, big.loss));
        float lb = 0, lsum = 0;
        TU_OK(ctx, clt_tensor_read(big.g, big.loss, 0, &lb, 1));
        if (zero_first) TU_OK(ctx, clt_graph_zero_grad(mic.g));
        int M = B / K;
        for (int k = 0; k < K; k++) {
            TU_OK(ctx, clt_tensor_write(mic.g, mic.x, x + (size_t)k * M * mic.xsz, (size_t)M * mic.xsz));
            TU_OK(ctx, clt_tensor_write(mic.g, mic.y, y + (size_t)k * M, (size_t)M));
            TU_OK(ctx, clt_graph_forward(mic.g, 1));
            TU_OK(ctx, clt_graph_backward_ex(mic.g, mic.loss, 1.0f / (float)K, zero_first || k > 0));
            float l = 0;
            TU_OK(ctx, clt_tensor_read(mic.g, mic.loss, 0, &l, 1));
            lsum += l / (float)K;
        }
        TU_CHECK(fabsf(lsum - lb) <= 1e-5f * fabsf(lb) + 1e-6f, "%s step %d: mean micro loss %.8g, batch loss %.8g",
                 label, step, lsum, lb);
        read_all(ctx, big.g, &pb, 1, gb);
        read_all(ctx, mic.g, &pm, 1, gm);
        char what[160];
        snprintf(what, sizeof what, "%s step %d: accumulated gradients", label, step);
        close_each_f(what, gm, gb, pb.total, 1e-4, 1e-6);
        float gmax = 0;
        for (size_t i = 0; i < pb.total; i++) gmax = fmaxf(gmax, fabsf(gb[i]));
        TU_CHECK(gmax > 1e-3f, "%s: gradients are all near zero (%g)", label, gmax);
        TU_OK(ctx, clt_graph_step(big.g, 0.01f));
        TU_OK(ctx, clt_graph_step(mic.g, 0.01f));
    }
    read_all(ctx, big.g, &pb, 0, gb);
    read_all(ctx, mic.g, &pm, 0, gm);
    char what[160];
    snprintf(what, sizeof what, "%s: parameters after 3 steps", label);
    close_each_f(what, gm, gb, pb.total, 1e-4, 1e-5);
    free(w), free(gb), free(gm), free(x), free(y);
out:
    clt_graph_destroy(big.g);
    clt_graph_destroy(mic.g);
    if (tu_failures == f0) printf("ok   gradient accumulation: %s\n", label);
}

static void test_accumulate(clt_context *ctx)
{
    check_accumulate(ctx, 0, 8, 2, 0);
    check_accumulate(ctx, 0, 12, 4, 1);
    check_accumulate(ctx, 1, 6, 3, 0);

    int f0 = tu_failures;
    net n;
    if (net_build(ctx, &n, 0, 2, 0)) {
        TU_CHECK(clt_graph_backward_ex(n.g, n.loss, 1.0f, 1) == CLT_ERR_STATE &&
                     has(clt_errmsg(ctx), "needs a graph compiled with accumulate_grads = 1"),
                 "accumulate without the arena: %s", clt_errmsg(ctx));
        TU_CHECK(clt_graph_backward_ex(n.g, n.loss, 1.0f, 2) == CLT_ERR_INVALID &&
                     has(clt_errmsg(ctx), "accumulate is 2 (0 or 1)"), "accumulate 2: %s", clt_errmsg(ctx));
        TU_CHECK(clt_graph_backward_ex(n.g, n.loss, NAN, 0) == CLT_ERR_INVALID && has(clt_errmsg(ctx), "loss_scale is nan"),
                 "loss_scale NaN: %s", clt_errmsg(ctx));
        /* A loss scale scales the gradients; zero_grad zeroes them. */
        params p;
        list_params(n.g, &p);
        float *a = malloc(p.total * sizeof(float)), *b = malloc(p.total * sizeof(float));
        float xd[10], yd[2] = {1, 3};
        tu_rng rng = {41};
        tu_fill_uniform(&rng, xd, 10, -1, 1);
        TU_OK(ctx, clt_tensor_write(n.g, n.x, xd, 10));
        TU_OK(ctx, clt_tensor_write(n.g, n.y, yd, 2));
        TU_OK(ctx, clt_graph_forward(n.g, 1));
        TU_OK(ctx, clt_graph_backward(n.g, n.loss));
        read_all(ctx, n.g, &p, 1, a);
        TU_OK(ctx, clt_graph_forward(n.g, 1)); /* a backward pass reuses memory its forward's values were in */
        TU_OK(ctx, clt_graph_backward_ex(n.g, n.loss, -2.5f, 0));
        read_all(ctx, n.g, &p, 1, b);
        double *r = calloc(p.total, sizeof(double));
        for (size_t i = 0; i < p.total; i++) r[i] = -2.5 * a[i];
        close_each("loss_scale -2.5", b, r, p.total, 1e-6, 1e-9);
        TU_OK(ctx, clt_graph_zero_grad(n.g));
        read_all(ctx, n.g, &p, 1, b);
        int zeros = 1;
        for (size_t i = 0; i < p.total; i++) zeros &= b[i] == 0.0f;
        TU_CHECK(zeros, "zero_grad left non-zero gradients");
        free(a), free(b), free(r);
        size_t pb0 = 0, pb1 = 0;
        TU_OK(ctx, clt_graph_memory(n.g, &pb0, NULL));
        net n2;
        if (net_build(ctx, &n2, 0, 2, 1)) {
            TU_OK(ctx, clt_graph_memory(n2.g, &pb1, NULL));
            TU_CHECK(pb1 > pb0, "accumulate_grads: parameter memory %zu, without %zu", pb1, pb0);
        }
        clt_graph_destroy(n2.g);
    }
    clt_graph_destroy(n.g);
    mlp m;
    if (mlp_build(ctx, &m, 2, 2)) {
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        cs.accumulate_grads = 2;
        TU_CHECK(clt_graph_compile(m.g, &cs) == CLT_ERR_INVALID && has(clt_errmsg(ctx), "accumulate_grads is 2"),
                 "accumulate_grads 2: %s", clt_errmsg(ctx));
        TU_CHECK(clt_graph_zero_grad(m.g) == CLT_ERR_STATE, "zero_grad before compile");
    }
    clt_graph_destroy(m.g);
    if (tu_failures == f0) printf("ok   gradient accumulation: errors, loss scale, zero_grad\n");
}

/* ------------------------------------------------------------------------------------------ schedule */

/* nanoGPT's get_lr (train.py), in double. */
static double nanogpt_lr(double lr, double min_lr, double warmup, double decay, double it)
{
    if (it < warmup) return lr * (it + 1) / (warmup + 1);
    if (it > decay) return min_lr;
    double ratio = (it - warmup) / (decay - warmup);
    return min_lr + 0.5 * (1.0 + cos(3.14159265358979323846 * ratio)) * (lr - min_lr);
}

static void test_schedule(void)
{
    int f0 = tu_failures;
    clt_lr_schedule_settings s;
    clt_lr_schedule_default_settings(&s, 1e-3f);
    s.min_lr = 1e-4f;
    s.warmup_steps = 100;
    s.decay_steps = 2000;
    /* Values printed by Python running nanoGPT's get_lr with these settings (gpt-tiny's schedule). */
    const struct {
        uint64_t it;
        double lr;
    } py[] = {{0, 9.900990099009901e-06},   {1, 1.9801980198019803e-05}, {50, 0.000504950495049505},
              {99, 0.0009900990099009901}, {100, 0.001},                {101, 0.0009999993848585915},
              {1000, 0.0005871607054625496}, {1050, 0.00055},          {1999, 0.00010000061514140841},
              {2000, 0.0001},              {2001, 0.0001},              {5000, 0.0001}};
    for (size_t i = 0; i < sizeof py / sizeof py[0]; i++) {
        float got = -1;
        TU_CHECK(clt_lr_schedule(&s, py[i].it, &got) == CLT_OK, "schedule at %llu", (unsigned long long)py[i].it);
        TU_CHECK(fabs(got - py[i].lr) <= 1e-6 * py[i].lr, "step %llu: lr %.9g, nanoGPT %.9g",
                 (unsigned long long)py[i].it, got, py[i].lr);
    }
    /* Every step of two other settings against the transcription. */
    const clt_lr_schedule_settings more[] = {{0.5f, 0.0f, 7, 40}, {2e-3f, 2e-3f, 0, 10}, {1.0f, 0.1f, 0, 25}};
    for (size_t k = 0; k < sizeof more / sizeof more[0]; k++)
        for (uint64_t it = 0; it < 60; it++) {
            float got = -1;
            TU_OK(NULL, clt_lr_schedule(&more[k], it, &got));
            double ref = nanogpt_lr(more[k].lr, more[k].min_lr, (double)more[k].warmup_steps,
                                    (double)more[k].decay_steps, (double)it);
            TU_CHECK(fabs(got - ref) <= 1e-6 * ref + 1e-12, "settings %zu step %llu: %.9g, expected %.9g", k,
                     (unsigned long long)it, got, ref);
        }
    /* Defaults: constant; warmup without decay: flat after it; decay == warmup: peak then floor. */
    clt_lr_schedule_default_settings(&s, 0.25f);
    float got = 0;
    for (uint64_t it = 0; it < 1000000; it = it * 3 + 1) {
        TU_OK(NULL, clt_lr_schedule(&s, it, &got));
        TU_CHECK(got == 0.25f, "constant schedule at %llu: %g", (unsigned long long)it, got);
    }
    s.warmup_steps = 3;
    TU_OK(NULL, clt_lr_schedule(&s, 0, &got));
    TU_CHECK(got == 0.0625f, "warmup step 0: %g", got);
    TU_OK(NULL, clt_lr_schedule(&s, 500, &got));
    TU_CHECK(got == 0.25f, "after warmup without decay: %g", got);
    s.decay_steps = 3;
    s.min_lr = 0.01f;
    TU_OK(NULL, clt_lr_schedule(&s, 3, &got));
    TU_CHECK(got == 0.25f, "decay == warmup, at it: %g", got);
    TU_OK(NULL, clt_lr_schedule(&s, 4, &got));
    TU_CHECK(got == 0.01f, "decay == warmup, after: %g", got);
    /* Invalid settings. */
    clt_lr_schedule_settings bad[] = {{1.0f, 2.0f, 0, 0}, {-1.0f, 0.0f, 0, 0}, {NAN, 0.0f, 0, 0},
                                      {1.0f, -0.5f, 0, 0}, {1.0f, 0.0f, 10, 5}, {INFINITY, 0.0f, 0, 0}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        TU_CHECK(clt_lr_schedule(&bad[k], 1, &got) == CLT_ERR_INVALID, "invalid schedule %zu accepted", k);
    TU_CHECK(clt_lr_schedule(NULL, 1, &got) == CLT_ERR_INVALID, "NULL settings");
    TU_CHECK(clt_lr_schedule(&s, 1, NULL) == CLT_ERR_INVALID, "NULL output");
    if (tu_failures == f0) printf("ok   learning-rate schedule (nanoGPT get_lr)\n");
}

int main(void)
{
    test_schedule();
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    test_decay_rules(ctx);
    test_clip(ctx);
    test_accumulate(ctx);
    clt_context_destroy(ctx);
    return tu_finish("train_features");
}
