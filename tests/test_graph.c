/* test_graph.c - graph-level behaviour: gradients through branches (one tensor feeding several nodes),
 * memory planning (reuse without aliasing bugs), error handling of bad calls, wrapping an application's
 * OpenCL objects, and seeded initialization. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* The last call's message names the problem (every call clears the message first, so an older one cannot pass). */
#define ERRMSG_HAS(ctx, text)                                                                          \
    TU_CHECK(strstr(clt_errmsg(ctx), (text)) != NULL, "message '%s' does not say '%s'", clt_errmsg(ctx), (text))
#define ERRMSG_EMPTY(ctx) TU_CHECK(clt_errmsg(ctx)[0] == 0, "message '%s' left after a successful call", clt_errmsg(ctx))

/* ---------------------------------------------------------------------------------------- (a) branches */

static double sigm(double v) { return 1 / (1 + exp(-v)); }

/* y (n,u) = x (n,f) W^T + b */
static void dense_ref(const double *x, const double *w, const double *b, int n, int f, int u, double *y)
{
    for (int r = 0; r < n; r++)
        for (int j = 0; j < u; j++) {
            double s = b[j];
            for (int k = 0; k < f; k++) s += x[r * f + k] * w[j * f + k];
            y[r * u + j] = s;
        }
}

enum { BN = 5, BF = 4, BH = 6, BO = 3 };

/* h = tanh(A x); loss = bce_with_logits(P h, sigmoid(R h)): h feeds two nodes, the target needs a gradient.
 * params: A.w, A.b, P.w, P.b, R.w, R.b */
static void ref_branch_h(void *ud, const double *const *in, const double *const *p, double *out)
{
    (void)ud;
    double h[BN * BH], u[BN * BO], v[BN * BO];
    dense_ref(in[0], p[0], p[1], BN, BF, BH, h);
    for (int i = 0; i < BN * BH; i++) h[i] = tanh(h[i]);
    dense_ref(h, p[2], p[3], BN, BH, BO, u);
    dense_ref(h, p[4], p[5], BN, BH, BO, v);
    double s = 0;
    for (int i = 0; i < BN * BO; i++) {
        double x = u[i], t = sigm(v[i]);
        s += fmax(x, 0) - x * t + log1p(exp(-fabs(x)));
    }
    out[0] = s / (BN * BO);
}

/* loss = mse(A x, tanh(B x)): the input x feeds two nodes. params: A.w, A.b, B.w, B.b */
static void ref_branch_x(void *ud, const double *const *in, const double *const *p, double *out)
{
    (void)ud;
    double a[BN * BO], b[BN * BO];
    dense_ref(in[0], p[0], p[1], BN, BF, BO, a);
    dense_ref(in[0], p[2], p[3], BN, BF, BO, b);
    double s = 0;
    for (int i = 0; i < BN * BO; i++) s += (a[i] - tanh(b[i])) * (a[i] - tanh(b[i]));
    out[0] = s / (BN * BO);
}

static void test_branches(clt_context *ctx)
{
    tu_rng rng = {3};
    float xd[BN * BF];
    tu_fill_uniform(&rng, xd, BN * BF, -1, 1);
    int xs[2] = {BN, BF};
    for (int which = 0; which < 2; which++) {
        clt_graph *g = NULL;
        clt_tensor *x, *h, *u, *v, *loss;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
        if (which == 0) {
            TU_OK(ctx, clt_dense(g, x, BH, 1, 0, "A", &h));
            TU_OK(ctx, clt_tanh(g, h, &h));
            TU_OK(ctx, clt_dense(g, h, BO, 1, 0, "P", &u));
            TU_OK(ctx, clt_dense(g, h, BO, 1, 0, "R", &v));
            TU_OK(ctx, clt_sigmoid(g, v, &v));
            TU_OK(ctx, clt_bce_with_logits(g, u, v, &loss));
        } else {
            TU_OK(ctx, clt_dense(g, x, BO, 1, 0, "A", &u));
            TU_OK(ctx, clt_dense(g, x, BO, 1, 0, "B", &v));
            TU_OK(ctx, clt_tanh(g, v, &v));
            TU_OK(ctx, clt_mse(g, u, v, &loss));
        }
        TU_OK(ctx, clt_graph_keep(g, x, 1));
        if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
            tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = loss,
                            .ref = which == 0 ? ref_branch_h : ref_branch_x, .training = 1, .seed = 11 + which};
            /* Dense layers (BF, BH terms), tanh/sigmoid/exp/log1p in float32, a mean over BN*BO: first-order
             * relative errors add along the chain (k = BF + BH + BN*BO, +16 u for the transcendentals);
             * gradients also sum over the BN rows; curved, so finite differences truncate by ~h^2/6 * 2. */
            double k = BF + BH + BN * BO;
            c.rtol = tu_sum_rtol(k) + 16 * TU_U32, c.atol = tu_sum_atol(k, 1);
            c.grad_rtol = tu_sum_rtol(k + BN) + 16 * TU_U32, c.grad_atol = tu_sum_atol(k + BN, 1);
            c.fd_atol = 1e-6 / 6 * 2;
            tu_check_op(ctx, which == 0 ? "branch: activation feeds two nodes" : "branch: input feeds two nodes", &c);
        }
        clt_graph_destroy(g);
    }
}

/* ------------------------------------------------------------------------------------ (b) memory plan */

static void test_relu_chain_reuse(clt_context *ctx)
{
    const int L = 20;
    int xs[2] = {64, 256};
    size_t tb = 64 * 256 * sizeof(float);
    for (int training = 0; training < 2; training++) {
        clt_graph *g = NULL;
        clt_tensor *x, *y, *loss;
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
        TU_OK(ctx, clt_dense(g, x, 256, 1, 0, "fc", &y));
        for (int i = 0; i < L; i++) TU_OK(ctx, clt_relu(g, y, &y));
        TU_OK(ctx, clt_mse(g, y, x, &loss));
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        cs.training = training;
        if (TU_OK(ctx, clt_graph_compile(g, &cs))) {
            size_t pb = 0, ab = 0;
            TU_OK(ctx, clt_graph_memory(g, &pb, &ab));
            /* All tensors: input, dense output, L relu outputs, and in training as many gradients. */
            size_t all = tb * (size_t)(2 + L) * (training ? 2 : 1);
            /* Inference: the chain ping-pongs between two buffers. Training: relu outputs stay alive for
             * backward, but the gradients share a couple of buffers. */
            size_t limit = training ? all * 6 / 10 : tb * 4;
            printf("     relu chain x%d (training %d): %zu activation bytes, all tensors %zu\n", L, training, ab, all);
            TU_CHECK(ab <= limit, "relu chain (training %d): %zu activation bytes, limit %zu (all tensors %zu)",
                     training, ab, limit, all);
            TU_CHECK(pb >= (256 * 256 + 256) * sizeof(float), "parameter bytes %zu", pb);
        }
        clt_graph_destroy(g);
    }
}

/* A mixed chain trained with nothing kept must give exactly what the same graph gives with every tensor
 * kept (no memory shared): a planner that lets two live tensors overlap would corrupt one of them. */
typedef struct {
    clt_graph *g;
    clt_tensor *x, *labels, *loss;
} mixed_t;

static int build_mixed(clt_context *ctx, mixed_t *m, int keep_all)
{
    int xs[2] = {16, 32}, ls[1] = {16};
    clt_tensor *all[32], *y;
    int na = 0;
    memset(m, 0, sizeof *m);
    TU_OK(ctx, clt_graph_create(ctx, &m->g));
    clt_graph *g = m->g;
    TU_OK(ctx, clt_input(g, "x", 2, xs, &m->x));
    TU_OK(ctx, clt_input(g, "labels", 1, ls, &m->labels));
    TU_OK(ctx, clt_dense(g, m->x, 32, 1, 0, "d1", &y)), all[na++] = y;
    TU_OK(ctx, clt_relu(g, y, &y)), all[na++] = y;
    TU_OK(ctx, clt_gelu(g, y, &y)), all[na++] = y;
    TU_OK(ctx, clt_dense(g, y, 24, 1, 0, "d2", &y)), all[na++] = y;
    TU_OK(ctx, clt_tanh(g, y, &y)), all[na++] = y;
    TU_OK(ctx, clt_leaky_relu(g, y, 0.1f, &y)), all[na++] = y;
    clt_tensor *branch = y;
    TU_OK(ctx, clt_dense(g, y, 24, 0, 0, "d3", &y)), all[na++] = y;
    TU_OK(ctx, clt_sigmoid(g, y, &y)), all[na++] = y;
    TU_OK(ctx, clt_mse(g, y, branch, &y)), all[na++] = y; /* a side loss: not the seed, but computed */
    TU_OK(ctx, clt_dense(g, branch, 16, 1, 0, "d4", &y)), all[na++] = y;
    TU_OK(ctx, clt_gelu(g, y, &y)), all[na++] = y;
    TU_OK(ctx, clt_dense(g, y, 5, 1, 0, "d5", &y)), all[na++] = y;
    TU_OK(ctx, clt_softmax_cross_entropy(g, y, m->labels, 0.05f, &m->loss));
    TU_OK(ctx, clt_graph_keep(g, m->x, 1));
    if (keep_all)
        for (int i = 0; i < na; i++) TU_OK(ctx, clt_graph_keep(g, all[i], 1));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_ADAM);
    cs.seed = 9;
    return TU_OK(ctx, clt_graph_compile(g, &cs));
}

static void test_plan_matches_kept(clt_context *ctx)
{
    mixed_t a, b;
    int ok = build_mixed(ctx, &a, 0) & build_mixed(ctx, &b, 1);
    if (ok) {
        size_t ab = 0, bb = 0;
        TU_OK(ctx, clt_graph_memory(a.g, NULL, &ab));
        TU_OK(ctx, clt_graph_memory(b.g, NULL, &bb));
        printf("     mixed chain: %zu activation bytes planned, %zu with every tensor kept\n", ab, bb);
        TU_CHECK(ab < bb, "planned graph uses %zu activation bytes, all-kept graph %zu", ab, bb);
        tu_rng rng = {21};
        for (int step = 0; step < 4; step++) {
            float xd[16 * 32], ld[16], la = NAN, lb = NAN, ga[16 * 32], gb[16 * 32];
            tu_fill_uniform(&rng, xd, 16 * 32, -2, 2);
            for (int i = 0; i < 16; i++) ld[i] = (float)(i % 5);
            mixed_t *m[2] = {&a, &b};
            for (int k = 0; k < 2; k++) {
                TU_OK(ctx, clt_tensor_write(m[k]->g, m[k]->x, xd, 16 * 32));
                TU_OK(ctx, clt_tensor_write(m[k]->g, m[k]->labels, ld, 16));
                TU_OK(ctx, clt_graph_forward(m[k]->g, 1));
                TU_OK(ctx, clt_graph_backward(m[k]->g, m[k]->loss));
                TU_OK(ctx, clt_tensor_read(m[k]->g, m[k]->loss, 0, k ? &lb : &la, 1));
                TU_OK(ctx, clt_tensor_read(m[k]->g, m[k]->x, 1, k ? gb : ga, 16 * 32));
                TU_OK(ctx, clt_graph_step(m[k]->g, 0.01f));
            }
            TU_CHECK(la == lb, "step %d: loss %.9g (planned) vs %.9g (all kept)", step, la, lb);
            TU_CHECK(memcmp(ga, gb, sizeof ga) == 0, "step %d: input gradients differ", step);
        }
        int n = clt_graph_state_count(a.g);
        TU_CHECK(n == clt_graph_state_count(b.g) && n == 9, "state counts %d / %d", n, clt_graph_state_count(b.g));
        for (int i = 0; i < n; i++) {
            clt_tensor *ta = clt_graph_state_tensor(a.g, i, NULL), *tb = clt_graph_state_tensor(b.g, i, NULL);
            size_t cnt = clt_tensor_numel(ta);
            float *va = malloc(cnt * sizeof(float)), *vb = malloc(cnt * sizeof(float));
            TU_OK(ctx, clt_tensor_read(a.g, ta, 0, va, cnt));
            TU_OK(ctx, clt_tensor_read(b.g, tb, 0, vb, cnt));
            TU_CHECK(memcmp(va, vb, cnt * sizeof(float)) == 0, "parameter %s differs after training",
                     clt_tensor_name(ta));
            free(va), free(vb);
        }
    }
    clt_graph_destroy(a.g);
    clt_graph_destroy(b.g);
}

/* ------------------------------------------------------------------------------------- (c) bad calls */

static void test_bad_calls(clt_context *ctx)
{
    clt_graph *g = NULL, *g2 = NULL;
    clt_tensor *x, *x2, *h, *y, *loss, *t = NULL;
    int xs[2] = {3, 4}, bad0[2] = {3, 0}, xs5[2] = {3, 5};
    float buf[64] = {0};

    TU_CHECK(clt_graph_create(NULL, &g) == CLT_ERR_INVALID && g == NULL, "graph on a NULL context");
    TU_CHECK(clt_graph_create(ctx, NULL) == CLT_ERR_INVALID, "NULL out");
    ERRMSG_HAS(ctx, "clt_graph_create: out is NULL");
    TU_OK(ctx, clt_graph_create(ctx, &g));
    ERRMSG_EMPTY(ctx);
    TU_OK(ctx, clt_graph_create(ctx, &g2));
    TU_CHECK(clt_graph_compile(g, NULL) == CLT_ERR_STATE, "compiling an empty graph");
    ERRMSG_HAS(ctx, "the graph has no operations");
    TU_CHECK(clt_input(NULL, "x", 2, xs, &t) == CLT_ERR_INVALID, "input on a NULL graph");
    TU_CHECK(clt_input(g, "x", 2, xs, NULL) == CLT_ERR_INVALID, "input with NULL out");
    TU_CHECK(clt_input(g, "x", 2, bad0, &t) == CLT_ERR_SHAPE && !t, "zero dimension");
    ERRMSG_HAS(ctx, "tensor 'x': dimension 1 is 0");
    TU_CHECK(clt_input(g, "x", 5, xs, &t) == CLT_ERR_SHAPE, "5 dimensions");
    ERRMSG_HAS(ctx, "5 dimensions (1 to 4 supported)");
    TU_CHECK(clt_input(g, "x", 0, xs, &t) == CLT_ERR_SHAPE, "0 dimensions");
    TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    ERRMSG_EMPTY(ctx); /* success after a failure */
    TU_OK(ctx, clt_input(g2, "x2", 2, xs, &x2));
    TU_CHECK(clt_relu(g, NULL, &t) == CLT_ERR_INVALID, "relu of NULL");
    ERRMSG_HAS(ctx, "relu: input is NULL");
    TU_CHECK(clt_relu(g, x2, &t) == CLT_ERR_INVALID && !t, "tensor from another graph");
    TU_CHECK(strstr(clt_errmsg(ctx), "another graph") != NULL, "message '%s'", clt_errmsg(ctx));
    TU_CHECK(clt_relu(g, x, NULL) == CLT_ERR_INVALID, "relu with NULL out");
    TU_CHECK(clt_relu(NULL, x, &t) == CLT_ERR_INVALID, "relu on a NULL graph");
    TU_CHECK(clt_mse(g, x, x2, &t) == CLT_ERR_INVALID, "mse across graphs");
    ERRMSG_HAS(ctx, "belongs to another graph");
    TU_CHECK(clt_graph_forward(g, 1) == CLT_ERR_STATE, "forward before compile");
    ERRMSG_HAS(ctx, "clt_graph_forward: compile the graph first");
    TU_CHECK(clt_tensor_write(g, x, buf, 12) == CLT_ERR_STATE, "write before compile");
    ERRMSG_HAS(ctx, "clt_tensor_write: compile the graph first");
    TU_OK(ctx, clt_dense(g, x, 5, 1, 0, "fc", &h));
    ERRMSG_EMPTY(ctx);
    TU_OK(ctx, clt_relu(g, h, &y));
    TU_OK(ctx, clt_input(g, "t", 2, xs5, &t));
    TU_OK(ctx, clt_mse(g, y, t, &loss));
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    TU_CHECK(clt_graph_keep(g, x2, 0) == CLT_ERR_INVALID, "keep a tensor of another graph");
    ERRMSG_HAS(ctx, "clt_graph_keep: tensor belongs to another graph");
    if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
        ERRMSG_EMPTY(ctx);
        clt_tensor *z = NULL;
        TU_CHECK(clt_relu(g, y, &z) == CLT_ERR_STATE && !z, "op after compile");
        ERRMSG_HAS(ctx, "relu: the graph is already compiled");
        TU_CHECK(clt_input(g, "late", 2, xs, &z) == CLT_ERR_STATE, "input after compile");
        TU_CHECK(clt_graph_keep(g, y, 1) == CLT_ERR_STATE, "keep after compile");
        TU_CHECK(clt_graph_compile(g, NULL) == CLT_ERR_STATE, "second compile");
        ERRMSG_HAS(ctx, "clt_graph_compile: the graph is already compiled");
        TU_OK(ctx, clt_tensor_write(g, x, buf, 12));
        ERRMSG_EMPTY(ctx);
        TU_OK(ctx, clt_tensor_write(g, t, buf, 15));
        TU_OK(ctx, clt_graph_forward(g, 1));
        TU_CHECK(clt_tensor_read(g, h, 0, buf, 15) == CLT_ERR_STATE, "reading a non-kept intermediate");
        ERRMSG_HAS(ctx, "is an intermediate whose memory is reused");
        TU_OK(ctx, clt_tensor_read(g, y, 0, buf, 15));
        TU_OK(ctx, clt_tensor_read(g, loss, 0, buf, 1));
        TU_CHECK(clt_tensor_read(g, y, 1, buf, 15) == CLT_ERR_STATE, "reading a gradient that is not kept");
        TU_CHECK(clt_tensor_read(g, x, 1, buf, 12) == CLT_ERR_STATE, "reading an input gradient not asked for");
        ERRMSG_HAS(ctx, "the gradient of 'x' is not kept");
        TU_CHECK(clt_tensor_write(g, x, buf, 11) == CLT_ERR_SHAPE, "write with a wrong count");
        ERRMSG_HAS(ctx, "holds 12 values, got 11");
        TU_CHECK(clt_tensor_read(g, y, 0, buf, 16) == CLT_ERR_SHAPE, "read with a wrong count");
        TU_CHECK(clt_tensor_write(g, y, buf, 15) == CLT_ERR_STATE, "writing a computed tensor");
        ERRMSG_HAS(ctx, "is computed by the graph");
        TU_CHECK(clt_tensor_write(g, x, NULL, 12) == CLT_ERR_INVALID, "write from NULL");
        TU_CHECK(clt_tensor_read(g, x2, 0, buf, 12) == CLT_ERR_INVALID, "read a tensor of another graph");
        TU_CHECK(clt_tensor_write(g, NULL, buf, 12) == CLT_ERR_INVALID, "write a NULL tensor");
        TU_CHECK(clt_graph_backward(g, y) == CLT_ERR_SHAPE, "backward from a non-scalar");
        ERRMSG_HAS(ctx, "a loss is a scalar");
        TU_CHECK(clt_graph_backward(g, x) == CLT_ERR_STATE, "backward from an input without gradient");
        ERRMSG_HAS(ctx, "'x' does not depend on any parameter");
        TU_CHECK(clt_graph_backward_from(g, y, buf, 3) == CLT_ERR_SHAPE, "backward_from with a wrong count");
        TU_CHECK(clt_graph_backward(NULL, loss) == CLT_ERR_INVALID, "backward on a NULL graph");
        TU_OK(ctx, clt_graph_backward(g, loss));
        ERRMSG_EMPTY(ctx);
        TU_CHECK(clt_graph_step(g, -1.0f) == CLT_ERR_INVALID, "negative learning rate");
        ERRMSG_HAS(ctx, "learning rate -1");
        TU_OK(ctx, clt_graph_step(g, 0.1f));
        ERRMSG_EMPTY(ctx);
        TU_CHECK(clt_tensor_read(g, h, 0, buf, 15) == CLT_ERR_STATE, "reading a non-kept intermediate");
        TU_OK(ctx, clt_graph_memory(g, NULL, NULL));
        ERRMSG_EMPTY(ctx);
        TU_CHECK(clt_tensor_read(g, h, 0, buf, 15) == CLT_ERR_STATE, "reading a non-kept intermediate");
        TU_OK(ctx, clt_context_finish(ctx));
        ERRMSG_EMPTY(ctx);
    }
    TU_CHECK(clt_graph_memory(g2, NULL, NULL) == CLT_ERR_STATE, "memory of an uncompiled graph");
    ERRMSG_HAS(ctx, "clt_graph_memory: the graph is not compiled");
    clt_graph_destroy(g);
    clt_graph_destroy(g2);

    /* Allocations beyond the device's limits fail cleanly with CLT_ERR_DEVICE_MEMORY and a message. */
    {
        int big_f[2] = {1, 1 << 16};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, big_f, &x));
        /* 16 layers of 32767 x 65536 weights (each just under 2^31 values): 128 GiB of parameters */
        for (int i = 0; i < 16; i++) TU_OK(ctx, clt_dense(g, x, (1 << 15) - 1, 1, 0, NULL, &y));
        int st = clt_graph_compile(g, NULL);
        TU_CHECK(st == CLT_ERR_DEVICE_MEMORY, "giant weights: compile returned %d (%s)", st, clt_errmsg(ctx));
        ERRMSG_HAS(ctx, "MiB");
        TU_CHECK(clt_graph_forward(g, 1) == CLT_ERR_STATE, "forward after a failed compile");
        ERRMSG_HAS(ctx, "the graph failed to compile");
        /* A compile that failed part-way is not redone over the half-planned graph. */
        st = clt_graph_compile(g, NULL);
        TU_CHECK(st == CLT_ERR_STATE, "second compile after a failed one returned %d", st);
        ERRMSG_HAS(ctx, "failed part-way");
        clt_graph_destroy(g);

        /* Kernels index with 32-bit integers: tensors hold at most INT_MAX values. */
        int huge[2] = {64, 1 << 30}, y_ok[2] = {2, 1 << 16};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        st = clt_input(g, "huge", 2, huge, &x);
        TU_CHECK(st == CLT_ERR_SHAPE && x == NULL && strstr(clt_errmsg(ctx), "huge"), "2^36-value input: %d (%s)",
                 st, clt_errmsg(ctx));
        /* An op function that fails part-way (here: a 2^32-value weight) leaves an unusable graph: later calls
         * fail cleanly instead of compiling a node without its weight. */
        TU_OK(ctx, clt_input(g, "x", 2, y_ok, &x));
        st = clt_dense(g, x, 1 << 16, 1, 0, "fc", &y);
        TU_CHECK(st == CLT_ERR_SHAPE && y == NULL, "2^32-value weight: %d (%s)", st, clt_errmsg(ctx));
        TU_CHECK(clt_relu(g, x, &y) == CLT_ERR_STATE, "adding an op after a failed op function");
        ERRMSG_HAS(ctx, "an earlier call on this graph failed part-way");
        TU_CHECK(clt_graph_compile(g, NULL) == CLT_ERR_STATE, "compiling after a failed op function");
        TU_CHECK(clt_graph_forward(g, 1) == CLT_ERR_STATE, "forward after a failed op function");
        clt_graph_destroy(g);
    }

    /* NULL is fine for destroy functions and the message accessor. */
    clt_graph_destroy(NULL);
    clt_context_destroy(NULL);
    TU_CHECK(clt_errmsg(NULL) != NULL, "clt_errmsg(NULL) must not be NULL");
    TU_CHECK(clt_tensor_numel(NULL) == 0 && clt_tensor_name(NULL)[0] == 0, "accessors on NULL");

    /* A device spec that matches nothing. */
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.device = "no-such-device";
    s.tune = CLT_TUNE_OFF;
    clt_context *c2 = NULL;
    int st = clt_context_create(&s, &c2);
    TU_CHECK(st == CLT_ERR_NO_DEVICE, "bad device spec returned %d", st);
    TU_CHECK(c2 != NULL && strstr(clt_errmsg(c2), "no OpenCL device matches 'no-such-device'"), "bad device spec: "
             "message '%s'", c2 ? clt_errmsg(c2) : "");
    clt_context_destroy(c2);
    c2 = NULL;
    s.device = "999";
    TU_CHECK(clt_context_create(&s, &c2) == CLT_ERR_NO_DEVICE, "device index 999 must not exist");
    TU_CHECK(c2 && strstr(clt_errmsg(c2), "device index 999 out of range"), "index 999: message '%s'",
             c2 ? clt_errmsg(c2) : "");
    clt_context_destroy(c2);
}

/* ---------------------------------------------------------------------- (d) application's cl objects */

static int dev_of_ctx(clt_context *ctx, cl_platform_id *plat, cl_device_id *dev)
{
    cl_device_id d = NULL;
    if (clt_context_cl(ctx, NULL, &d, NULL) != CLT_OK || !d) return 0;
    *dev = d;
    return clGetDeviceInfo(d, CL_DEVICE_PLATFORM, sizeof *plat, plat, NULL) == CL_SUCCESS;
}

static void test_from_cl(clt_context *ctx)
{
    cl_platform_id plat;
    cl_device_id dev;
    if (!dev_of_ctx(ctx, &plat, &dev)) {
        TU_CHECK(0, "cannot get the device of the test context");
        return;
    }
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)plat, 0};
    cl_context mine = clCreateContext(props, 1, &dev, NULL, NULL, &err);
    TU_CHECK(err == CL_SUCCESS, "clCreateContext: %d", err);
    cl_command_queue q = clCreateCommandQueue(mine, dev, 0, &err);
    TU_CHECK(err == CL_SUCCESS, "clCreateCommandQueue: %d", err);
    if (!mine || !q) return;

    clt_context_settings s;
    clt_context_default_settings(&s);
    s.tune = CLT_TUNE_OFF;
    clt_context *c = NULL;
    if (TU_OK(c, clt_context_create_from_cl(mine, dev, q, &s, &c))) {
        cl_context got_ctx = NULL;
        cl_command_queue got_q = NULL;
        TU_OK(c, clt_context_cl(c, &got_ctx, NULL, &got_q));
        TU_CHECK(got_ctx == mine && got_q == q, "the wrapped context must use the application's objects");
        clt_graph *g = NULL;
        clt_tensor *x, *y, *loss;
        int xs[2] = {4, 3};
        TU_OK(c, clt_graph_create(c, &g));
        TU_OK(c, clt_input(g, "x", 2, xs, &x));
        TU_OK(c, clt_dense(g, x, 3, 1, 0, "fc", &y));
        TU_OK(c, clt_mse(g, y, x, &loss));
        if (TU_OK(c, clt_graph_compile(g, NULL))) {
            float xd[12], l0 = NAN, l1 = NAN;
            tu_rng rng = {8};
            tu_fill_uniform(&rng, xd, 12, -1, 1);
            TU_OK(c, clt_tensor_write(g, x, xd, 12));
            TU_OK(c, clt_graph_forward(g, 1));
            TU_OK(c, clt_tensor_read(g, loss, 0, &l0, 1));
            TU_OK(c, clt_graph_backward(g, loss));
            TU_OK(c, clt_graph_step(g, 0.05f));
            TU_OK(c, clt_graph_forward(g, 1));
            TU_OK(c, clt_tensor_read(g, loss, 0, &l1, 1));
            TU_CHECK(l1 < l0, "one SGD step on the wrapped context: loss %g -> %g", l0, l1);
        }
        clt_graph_destroy(g);
    }
    clt_context_destroy(c);

    /* Our objects still work after cltrain released its references. */
    float in[16], out[16];
    for (int i = 0; i < 16; i++) in[i] = (float)i * 1.5f, out[i] = -1;
    cl_mem b = clCreateBuffer(mine, CL_MEM_READ_WRITE, sizeof in, NULL, &err);
    TU_CHECK(err == CL_SUCCESS, "clCreateBuffer on the application's context after destroy: %d", err);
    if (b) {
        TU_CHECK(clEnqueueWriteBuffer(q, b, CL_TRUE, 0, sizeof in, in, 0, NULL, NULL) == CL_SUCCESS, "write on our queue");
        TU_CHECK(clEnqueueReadBuffer(q, b, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL) == CL_SUCCESS, "read on our queue");
        TU_CHECK(memcmp(in, out, sizeof in) == 0, "data round trip on our queue");
        clReleaseMemObject(b);
    }
    TU_CHECK(clFinish(q) == CL_SUCCESS, "clFinish on our queue");

    /* A queue of another context is refused. */
    cl_context other = clCreateContext(props, 1, &dev, NULL, NULL, &err);
    if (other) {
        c = NULL;
        TU_CHECK(clt_context_create_from_cl(other, dev, q, &s, &c) == CLT_ERR_INVALID, "mismatched queue accepted");
        TU_CHECK(c && strstr(clt_errmsg(c), "the queue belongs to another context or device"),
                 "mismatched queue: message '%s'", c ? clt_errmsg(c) : "");
        clt_context_destroy(c);
        clReleaseContext(other);
    }
    c = NULL;
    TU_CHECK(clt_context_create_from_cl(NULL, dev, q, &s, &c) == CLT_ERR_INVALID, "NULL context accepted");
    clt_context_destroy(c);
    TU_CHECK(clReleaseCommandQueue(q) == CL_SUCCESS, "releasing our queue");
    TU_CHECK(clReleaseContext(mine) == CL_SUCCESS, "releasing our context");
}

/* --------------------------------------------------------------------------------- (e) determinism */

static int init_weights(clt_context *ctx, uint64_t seed, int extra_layer, float *w1, float *w2)
{
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    int xs[2] = {2, 10};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    TU_OK(ctx, clt_dense(g, x, 8, 1, CLT_INIT_HE_NORMAL, "a", &y));
    TU_OK(ctx, clt_dense(g, y, 6, 1, CLT_INIT_GLOROT_UNIFORM, "b", &y));
    if (extra_layer) TU_OK(ctx, clt_dense(g, y, 4, 1, 0, "c", &y));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    cs.seed = seed;
    int ok = TU_OK(ctx, clt_graph_compile(g, &cs));
    if (ok) {
        TU_OK(ctx, clt_tensor_read(g, clt_graph_state_tensor(g, 0, NULL), 0, w1, 80));
        TU_OK(ctx, clt_tensor_read(g, clt_graph_state_tensor(g, 2, NULL), 0, w2, 48));
    }
    clt_graph_destroy(g);
    return ok;
}

static void test_seeds(clt_context *ctx)
{
    float a1[80], a2[48], b1[80], b2[48], c1[80], c2[48], d1[80], d2[48];
    if (!(init_weights(ctx, 7, 0, a1, a2) && init_weights(ctx, 7, 0, b1, b2) && init_weights(ctx, 8, 0, c1, c2) &&
          init_weights(ctx, 7, 1, d1, d2)))
        return;
    TU_CHECK(!memcmp(a1, b1, sizeof a1) && !memcmp(a2, b2, sizeof a2), "same seed, different weights");
    int same1 = 0, same2 = 0;
    for (int i = 0; i < 80; i++) same1 += a1[i] == c1[i];
    for (int i = 0; i < 48; i++) same2 += a2[i] == c2[i];
    TU_CHECK(same1 == 0 && same2 == 0, "different seeds share %d + %d weights", same1, same2);
    TU_CHECK(!memcmp(a1, d1, sizeof a1) && !memcmp(a2, d2, sizeof a2),
             "adding a layer at the end changed the earlier layers' initial weights");
    /* The distributions are the documented ones (loose: 80 and 48 samples). */
    double s = 0, mx = 0, lim = sqrt(6.0 / (8 + 6));
    for (int i = 0; i < 80; i++) s += (double)a1[i] * a1[i];
    for (int i = 0; i < 48; i++) mx = fmax(mx, fabs(a2[i]));
    double sd = sqrt(s / 80), want = sqrt(2.0 / 10);
    TU_CHECK(sd > 0.7 * want && sd < 1.3 * want, "He-normal std %g, expected about %g", sd, want);
    TU_CHECK(mx <= lim && mx > 0.7 * lim, "Glorot-uniform max %g, limit %g", mx, lim);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    int f0 = tu_failures;
    test_branches(ctx);
    test_relu_chain_reuse(ctx);
    test_plan_matches_kept(ctx);
    if (tu_failures == f0) printf("ok   memory planning\n");
    f0 = tu_failures;
    test_bad_calls(ctx);
    if (tu_failures == f0) printf("ok   bad calls\n");
    f0 = tu_failures;
    test_from_cl(ctx);
    if (tu_failures == f0) printf("ok   clt_context_create_from_cl\n");
    f0 = tu_failures;
    test_seeds(ctx);
    if (tu_failures == f0) printf("ok   seeded initialization\n");
    clt_context_destroy(ctx);
    return tu_finish("test_graph");
}
