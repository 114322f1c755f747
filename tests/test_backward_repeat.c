/* test_backward_repeat.c - any number of backward passes after one forward give bit-identical gradients, for
 * every op with saved state (the memory planner must not let one backward's scratch or gradients overwrite
 * what a later backward reads). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* A graph under test: input x (gradient kept), the tensor `mid` to seed with backward_from, and a scalar
 * loss. Labels/targets (if any) are inputs without gradient. */
typedef struct rcase {
    clt_graph *g;
    clt_tensor *x, *mid, *loss;
    clt_tensor *extra[2]; /* other inputs (labels, targets) */
    int nextra;
    int extra_labels[2];  /* 1: class indices 0..2, 0: uniform in [0,1] */
} rcase;

/* Every gradient the caller can read: the kept input's and every parameter's, concatenated. */
static size_t grads_total(rcase *c)
{
    size_t total = clt_tensor_numel(c->x);
    for (int i = 0; i < clt_graph_state_count(c->g); i++) {
        int tr;
        clt_tensor *t = clt_graph_state_tensor(c->g, i, &tr);
        if (tr) total += clt_tensor_numel(t);
    }
    return total;
}

static int read_grads(clt_context *ctx, rcase *c, float *out)
{
    size_t n = clt_tensor_numel(c->x);
    if (!TU_OK(ctx, clt_tensor_read(c->g, c->x, 1, out, n))) return 0;
    out += n;
    for (int i = 0; i < clt_graph_state_count(c->g); i++) {
        int tr;
        clt_tensor *t = clt_graph_state_tensor(c->g, i, &tr);
        if (!tr) continue;
        if (!TU_OK(ctx, clt_tensor_read(c->g, t, 1, out, clt_tensor_numel(t)))) return 0;
        out += clt_tensor_numel(t);
    }
    return 1;
}

/* One backward: from the loss (seed < 0) or from `mid` with upstream gradient r. */
static int backward(clt_context *ctx, rcase *c, int from_mid, const float *r)
{
    if (from_mid) return TU_OK(ctx, clt_graph_backward_from(c->g, c->mid, r, clt_tensor_numel(c->mid)));
    return TU_OK(ctx, clt_graph_backward(c->g, c->loss));
}

/* Index and values of the first difference between a and b, -1 if bit-identical. */
static long first_diff(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return (long)i;
    return -1;
}

static void expect_same(const char *label, const char *what, const float *a, const float *b, size_t n)
{
    long d = first_diff(a, b, n);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)a[i]));
    }
    TU_CHECK(d < 0, "%s: %s differs from the first backward at gradient value %ld (%.9g vs %.9g; max |diff| %.3g, "
             "relative to max |grad| %.3g)", label, what, d, d < 0 ? 0.0 : a[d], d < 0 ? 0.0 : b[d], worst,
             scale > 0 ? worst / scale : 0.0);
}

/* Compiles c->g, runs one training forward, then backward passes in the order
 * mid, mid, loss, mid, loss, loss (each against the first of its kind). */
static void check_case(clt_context *ctx, const char *label, rcase *c, uint64_t seed)
{
    if (c->x) TU_OK(ctx, clt_graph_keep(c->g, c->x, 1));
    if (!TU_OK(ctx, clt_graph_compile(c->g, NULL))) {
        fprintf(stderr, "  (case %s)\n", label);
        return;
    }
    tu_rng rng = {seed};
    size_t nx = clt_tensor_numel(c->x), nm = clt_tensor_numel(c->mid), ng = grads_total(c);
    float *xd = malloc(nx * sizeof(float)), *r = malloc(nm * sizeof(float));
    float *ref_mid = malloc(ng * sizeof(float)), *ref_loss = malloc(ng * sizeof(float)), *got = malloc(ng * sizeof(float));
    if (!xd || !r || !ref_mid || !ref_loss || !got) {
        TU_CHECK(0, "%s: out of host memory", label);
        goto out;
    }
    tu_fill_uniform(&rng, xd, nx, -1, 1);
    tu_fill_uniform(&rng, r, nm, -1, 1);
    if (!TU_OK(ctx, clt_tensor_write(c->g, c->x, xd, nx))) goto out;
    for (int e = 0; e < c->nextra; e++) {
        size_t n = clt_tensor_numel(c->extra[e]);
        float *d = malloc(n * sizeof(float));
        if (!d) goto out;
        for (size_t i = 0; i < n; i++) d[i] = c->extra_labels[e] ? (float)(i % 3) : (float)tu_uniform(&rng, 0, 1);
        int ok = TU_OK(ctx, clt_tensor_write(c->g, c->extra[e], d, n));
        free(d);
        if (!ok) goto out;
    }
    if (!TU_OK(ctx, clt_graph_forward(c->g, 1))) goto out;
    static const int order[] = {1, 1, 0, 1, 0, 0};
    int have_mid = 0, have_loss = 0;
    for (int p = 0; p < (int)(sizeof order / sizeof order[0]); p++) {
        int from_mid = order[p];
        if (!c->loss && !from_mid) continue;
        if (!backward(ctx, c, from_mid, r)) goto out;
        float *dst = from_mid ? (have_mid ? got : ref_mid) : (have_loss ? got : ref_loss);
        if (!read_grads(ctx, c, dst)) goto out;
        if (dst == got) {
            char what[64];
            snprintf(what, sizeof what, "backward %d (from %s)", p + 1, from_mid ? clt_tensor_name(c->mid) : "the loss");
            expect_same(label, what, from_mid ? ref_mid : ref_loss, got, ng);
        } else {
            /* The reference itself must be a real gradient: finite and not all zero. */
            int finite = 1, nonzero = 0;
            for (size_t i = 0; i < ng; i++) finite &= isfinite(dst[i]) != 0, nonzero |= dst[i] != 0;
            TU_CHECK(finite && nonzero, "%s: first backward from %s gives %s gradients", label,
                     from_mid ? "mid" : "the loss", finite ? "all-zero" : "non-finite");
        }
        if (from_mid) have_mid = 1;
        else have_loss = 1;
    }
out:
    free(xd), free(r), free(ref_mid), free(ref_loss), free(got);
}

/* ---------------------------------------------------------------------------------------------- cases */

static clt_conv2d_params conv_p(int co, int k, int s, int pad, int bias)
{
    clt_conv2d_params p;
    clt_conv2d_default_params(&p, co, k);
    p.stride_h = p.stride_w = s;
    p.pad_h = p.pad_w = pad;
    p.bias = bias;
    return p;
}

/* Builds the start of a case: input x (N,C,H,W) and a first conv layer (3x3, pad 1) whose backward writes
 * scratch and gradients late in the backward phase, after the op under test has run its own. */
static int start(clt_context *ctx, rcase *c, int n, int ch, int h, int w, clt_tensor **y)
{
    memset(c, 0, sizeof *c);
    int xs[4] = {n, ch, h, w};
    clt_conv2d_params p = conv_p(4, 3, 1, 1, 1);
    return TU_OK(ctx, clt_graph_create(ctx, &c->g)) && TU_OK(ctx, clt_input(c->g, "x", 4, xs, &c->x)) &&
           TU_OK(ctx, clt_conv2d(c->g, c->x, &p, "conv0", y));
}

/* Ends a case: dense to 3 classes and softmax cross-entropy (`head` 0), mse (1) or bce (2). */
static int finish(clt_context *ctx, rcase *c, clt_tensor *y, int head)
{
    clt_tensor *f, *logits, *t;
    int n = clt_tensor_dim(y, 0);
    if (!TU_OK(ctx, clt_flatten(c->g, y, &f)) || !TU_OK(ctx, clt_dense(c->g, f, 3, 1, 0, "head", &logits)))
        return 0;
    int ls[1] = {n}, ts[2] = {n, 3};
    if (head == 0)
        return TU_OK(ctx, clt_input(c->g, "labels", 1, ls, &t)) &&
               (c->extra[c->nextra] = t, c->extra_labels[c->nextra++] = 1,
                TU_OK(ctx, clt_softmax_cross_entropy(c->g, logits, t, 0.1f, &c->loss)));
    if (!TU_OK(ctx, clt_input(c->g, "target", 2, ts, &t))) return 0;
    c->extra[c->nextra] = t, c->extra_labels[c->nextra++] = 0;
    return TU_OK(ctx, head == 1 ? clt_mse(c->g, logits, t, &c->loss) : clt_bce_with_logits(c->g, logits, t, &c->loss));
}

enum {
    C_ISSUE, C_CONV, C_CONV_S2, C_CONV_SPLITK, C_CONV_PARTS, C_MAXPOOL2, C_MAXPOOL3, C_AVGPOOL, C_GAP, C_BN4, C_BN2,
    C_DROPOUT, C_DROPOUT_RES, C_SOFTMAX4, C_SOFTMAX2, C_RELU, C_LEAKY, C_SIGMOID, C_TANH, C_GELU, C_DENSE, C_ADD,
    C_RESHAPE, C_BIAS, C_MSE, C_BCE, C_COUNT
};
static const char *case_names[C_COUNT] = {
    "issue 8: conv-bn-relu-maxpool-conv", "conv2d 3x3 pad 1", "conv2d stride 2", "conv2d im2col split-k",
    "conv2d direct split over images", "max pool 2x2", "max pool 3 stride 2 pad 1", "avg pool 3 pad 1",
    "global avg pool", "batch norm (N,C,H,W)", "batch norm (N,C)", "dropout", "dropout into a residual add",
    "softmax (N,C,H,W)", "softmax (N,C)", "relu", "leaky relu", "sigmoid", "tanh", "gelu", "dense", "add (residual)",
    "reshape", "bias_add", "mse loss", "bce loss"};

static int build(clt_context *ctx, int which, rcase *c)
{
    clt_graph *g;
    clt_tensor *y, *z, *f;
    int head = 0;
    clt_conv2d_params p3 = conv_p(5, 3, 1, 1, 1);
    switch (which) {
    case C_ISSUE: {
        /* The audit's case: x (3,6,12,10), conv3x3 -> batch_norm -> relu -> maxpool2 -> conv3x3, seeded at the
         * max pool's output. */
        memset(c, 0, sizeof *c);
        int xs[4] = {3, 6, 12, 10};
        clt_conv2d_params a = conv_p(8, 3, 1, 1, 1), b = conv_p(5, 3, 1, 0, 1);
        if (!TU_OK(ctx, clt_graph_create(ctx, &c->g)) || !TU_OK(ctx, clt_input(c->g, "x", 4, xs, &c->x))) return 0;
        g = c->g;
        if (!TU_OK(ctx, clt_conv2d(g, c->x, &a, "conv1", &y)) || !TU_OK(ctx, clt_batch_norm(g, y, 0.1f, 1e-5f, "bn", &y)) ||
            !TU_OK(ctx, clt_relu(g, y, &y)) || !TU_OK(ctx, clt_max_pool2d(g, y, 2, 2, 0, &c->mid)) ||
            !TU_OK(ctx, clt_conv2d(g, c->mid, &b, "conv2", &y)))
            return 0;
        return finish(ctx, c, y, 0);
    }
    case C_CONV_SPLITK: {
        /* N*OH*OW = 8192 >= 16 * max(Cout, K): the im2col weight gradient runs as a batch of split-k GEMMs. */
        memset(c, 0, sizeof *c);
        int xs[4] = {2, 1, 64, 64};
        clt_conv2d_params a = conv_p(2, 3, 1, 1, 1);
        if (!TU_OK(ctx, clt_graph_create(ctx, &c->g)) || !TU_OK(ctx, clt_input(c->g, "x", 4, xs, &c->x))) return 0;
        if (!TU_OK(ctx, clt_conv2d(c->g, c->x, &a, "conv0", &y)) || !TU_OK(ctx, clt_relu(c->g, y, &y)) ||
            !TU_OK(ctx, clt_conv2d(c->g, y, &a, "conv1", &c->mid)) || !TU_OK(ctx, clt_avg_pool2d(c->g, c->mid, 8, 8, 0, &y)))
            return 0;
        return finish(ctx, c, y, 0);
    }
    case C_CONV_PARTS: {
        /* (4,1,45,45) into 8 channels: the direct weight gradient runs over the images in 2 parts. */
        memset(c, 0, sizeof *c);
        int xs[4] = {4, 1, 45, 45};
        clt_conv2d_params a = conv_p(8, 3, 1, 1, 0);
        if (!TU_OK(ctx, clt_graph_create(ctx, &c->g)) || !TU_OK(ctx, clt_input(c->g, "x", 4, xs, &c->x))) return 0;
        if (!TU_OK(ctx, clt_conv2d(c->g, c->x, &a, "conv0", &y)) || !TU_OK(ctx, clt_relu(c->g, y, &y)) ||
            !TU_OK(ctx, clt_conv2d(c->g, y, &a, "conv1", &c->mid)) || !TU_OK(ctx, clt_max_pool2d(c->g, c->mid, 5, 5, 0, &y)))
            return 0;
        return finish(ctx, c, y, 0);
    }
    default:
        break;
    }
    if (!start(ctx, c, 3, 3, 8, 6, &y)) return 0;
    g = c->g;
    int st = CLT_OK;
    clt_conv2d_params s2 = conv_p(5, 3, 2, 1, 0);
    switch (which) {
    case C_CONV: st = clt_conv2d(g, y, &p3, "conv1", &c->mid); break;
    case C_CONV_S2: st = clt_conv2d(g, y, &s2, "conv1", &c->mid); break;
    case C_MAXPOOL2: st = clt_max_pool2d(g, y, 2, 2, 0, &c->mid); break;
    case C_MAXPOOL3: st = clt_max_pool2d(g, y, 3, 2, 1, &c->mid); break;
    case C_AVGPOOL: st = clt_avg_pool2d(g, y, 3, 1, 1, &c->mid); break;
    case C_GAP: st = clt_global_avg_pool(g, y, &c->mid); break;
    case C_BN4: st = clt_batch_norm(g, y, 0.1f, 1e-5f, "bn", &c->mid); break;
    case C_BN2:
        st = clt_flatten(g, y, &f);
        if (!st) st = clt_dense(g, f, 7, 1, 0, "d", &z);
        if (!st) st = clt_batch_norm(g, z, 0.1f, 1e-5f, "bn", &c->mid);
        break;
    case C_DROPOUT: st = clt_dropout(g, y, 0.5f, &c->mid); break;
    case C_DROPOUT_RES:
        st = clt_dropout(g, y, 0.3f, &z);
        if (!st) st = clt_add(g, z, y, &c->mid);
        break;
    case C_SOFTMAX4: st = clt_softmax(g, y, &c->mid); break;
    case C_SOFTMAX2:
        st = clt_flatten(g, y, &f);
        if (!st) st = clt_dense(g, f, 6, 1, 0, "d", &z);
        if (!st) st = clt_softmax(g, z, &c->mid);
        break;
    case C_RELU: st = clt_relu(g, y, &c->mid); break;
    case C_LEAKY: st = clt_leaky_relu(g, y, 0.1f, &c->mid); break;
    case C_SIGMOID: st = clt_sigmoid(g, y, &c->mid); break;
    case C_TANH: st = clt_tanh(g, y, &c->mid); break;
    case C_GELU: st = clt_gelu(g, y, &c->mid); break;
    case C_DENSE:
        st = clt_flatten(g, y, &f);
        if (!st) st = clt_dense(g, f, 9, 1, 0, "d", &c->mid);
        break;
    case C_ADD:
        st = clt_relu(g, y, &z);
        if (!st) st = clt_conv2d(g, z, &(clt_conv2d_params){4, 3, 3, 1, 1, 1, 1, 1, 0}, "conv1", &z);
        if (!st) st = clt_add(g, y, z, &c->mid);
        break;
    case C_RESHAPE: {
        int s[2] = {-1, 8 * 6};
        st = clt_reshape(g, y, 2, s, &z);
        if (!st) st = clt_tanh(g, z, &c->mid);
        break;
    }
    case C_BIAS:
        st = clt_tanh(g, y, &z);
        if (!st) st = clt_bias_add(g, z, "b", &c->mid);
        break;
    case C_MSE: st = clt_sigmoid(g, y, &c->mid), head = 1; break;
    case C_BCE: st = clt_tanh(g, y, &c->mid), head = 2; break;
    }
    if (!TU_OK(ctx, st)) return 0;
    /* An op after the one under test, so that its input gradient and scratch are planned too. */
    if (clt_tensor_ndim(c->mid) == 4 && !TU_OK(ctx, clt_relu(g, c->mid, &z))) return 0;
    return finish(ctx, c, clt_tensor_ndim(c->mid) == 4 ? z : c->mid, head);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    /* Convolutions under both algorithms (the variable is read when a conv layer is added). */
    static const char *algos[] = {"im2col", "direct"};
    for (int a = 0; a < 2; a++) {
        setenv("CLTRAIN_CONV_ALGO", algos[a], 1);
        for (int w = 0; w < C_COUNT; w++) {
            int conv_case = w == C_ISSUE || w == C_CONV || w == C_CONV_S2 || w == C_CONV_SPLITK || w == C_CONV_PARTS ||
                            w == C_ADD;
            if (a == 1 && !conv_case) continue; /* the other ops once (their first layer is a conv) */
            if ((w == C_CONV_SPLITK && a == 1) || (w == C_CONV_PARTS && a == 0)) continue; /* paths of one algorithm */
            char label[128];
            snprintf(label, sizeof label, "%s [%s]", case_names[w], algos[a]);
            rcase c;
            memset(&c, 0, sizeof c);
            if (build(ctx, w, &c)) check_case(ctx, label, &c, 100 + (uint64_t)w);
            else fprintf(stderr, "  (building case %s failed)\n", label);
            clt_graph_destroy(c.g);
        }
    }
    unsetenv("CLTRAIN_CONV_ALGO");
    clt_context_destroy(ctx);
    return tu_finish("test_backward_repeat");
}
