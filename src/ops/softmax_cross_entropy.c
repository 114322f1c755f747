/* softmax_cross_entropy.c - softmax cross-entropy loss with label smoothing (cl/softmax_cross_entropy.cl).
 *
 * Label check: the mean kernel also counts invalid labels (< 0, >= K, not an integer, NaN) into two floats
 * of the node's forward scratch, and the forward reads them back with a blocking 8-byte read right after
 * enqueueing the mean. That costs one host/device round trip per forward pass (the forward is complete
 * by then anyway, since the loss is normally its last node; the device resumes as soon as the backward is
 * enqueued) and buys an exact error at the failing pass: CLT_ERR_INVALID naming the row and the value. */
#include <math.h>
#include <stdio.h>

#include "model.h"

/* saved[0] probabilities (N,K); fscratch[0] row losses (N) followed by the two flag floats. Kernels: 0 rows,
 * 1 mean, 2 backward. */
typedef struct sce_attr {
    int n, k;        /* logits (N,K) */
    int wg;          /* work-group size of the mean (prepare) */
    float smoothing;
} sce_attr;
#define ATTR(n) CLT__ATTR(n, sce_attr)
enum { ARG_BWD_ACC = 5 }; /* sce_backward's argument that changes per call */

static int prepare(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    sce_attr *a = ATTR(n);
    cl_uint N = (cl_uint)a->n, K = (cl_uint)a->k;
    cl_mem scratch = n->fscratch[0]->mem;
    /* Probabilities are kept only for backward; an inference graph has no SAVED memory at all. */
    cl_int save = n->in[0]->grad != NULL && n->saved[0]->mem != NULL;
    cl_mem p = save ? n->saved[0]->mem : scratch;
    /* The mean is one work-group of exactly SCE_WG (a power of two) work-items: within the device's limit and
     * the kernel's own (CL_KERNEL_WORK_GROUP_SIZE, which local memory and registers may lower). */
    int wg = 256;
    while ((size_t)wg > ctx->info.max_work_group_size && wg > 1) wg /= 2;
    char opts[32];
    for (;;) {
        snprintf(opts, sizeof opts, "-DSCE_WG=%d", wg);
        CLT_TRY(clt__kernel(ctx, "softmax_cross_entropy", opts, "sce_mean", &n->k[1]));
        size_t kmax;
        CLT_TRY(clt__kernel_wg_max(ctx, n->k[1], &kmax));
        if ((size_t)wg <= kmax || wg == 1) break;
        clReleaseKernel(n->k[1]);
        n->k[1] = NULL;
        wg /= 2;
    }
    a->wg = wg;
    CLT_TRY(clt__kernel(ctx, "softmax_cross_entropy", opts, "sce_rows", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->in[1]->mem), CLT_ARG(p), CLT_ARG(scratch),
                         CLT_ARG(a->smoothing), CLT_ARG(save), CLT_ARG(N), CLT_ARG(K)));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[1], CLT_ARG(scratch), CLT_ARG(n->in[1]->mem), CLT_ARG(n->out->mem),
                         CLT_ARG(N), CLT_ARG(K)));
    if (save) {
        CLT_TRY(clt__kernel(ctx, "softmax_cross_entropy", opts, "sce_backward", &n->k[2]));
        cl_int acc = 0;
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[2], CLT_ARG(n->saved[0]->mem), CLT_ARG(n->in[1]->mem),
                             CLT_ARG(n->out->grad->mem), CLT_ARG(n->in[0]->grad->mem), CLT_ARG(a->smoothing),
                             CLT_ARG(acc), CLT_ARG(N), CLT_ARG(K)));
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    clt_context *ctx = g->ctx;
    size_t N = (size_t)ATTR(n)->n;
    size_t gs = N, ls = 64;
    CLT_TRY(clt__launch(ctx, n->k[0], 1, &gs, &ls));
    size_t wg = (size_t)ATTR(n)->wg;
    CLT_TRY(clt__launch(ctx, n->k[1], 1, &wg, &wg));
    float flag[2];
    CLT_CL(ctx, clEnqueueReadBuffer(ctx->queue, n->fscratch[0]->mem, CL_TRUE, N * sizeof(float), sizeof flag, flag, 0,
                                    NULL, NULL));
    if (flag[0] != 0.0f) {
        float bad = NAN;
        size_t row = flag[1] >= 0 ? (size_t)flag[1] : 0;
        CLT_CL(ctx, clEnqueueReadBuffer(ctx->queue, n->in[1]->mem, CL_TRUE, row * sizeof(float), sizeof bad, &bad, 0,
                                        NULL, NULL));
        return clt__err(ctx, CLT_ERR_INVALID,
                        "softmax cross-entropy '%s': %.0f label(s) out of range; the first is row %zu of '%s' = %g "
                        "(labels must be integers 0..%d)", n->out->name, flag[0], row, n->in[1]->name, bad,
                        ATTR(n)->k - 1);
    }
    return CLT_OK;
}

static int backward(clt_graph *g, clt__node *n)
{
    if (n->need_dx[1] && !n->acc_dx[1]) /* labels are piecewise constant: zero gradient */
        CLT_TRY(clt__fill(g, n->in[1]->grad->mem, n->in[1]->numel, 0.0f));
    if (!n->need_dx[0]) return CLT_OK;
    cl_int acc = n->acc_dx[0];
    CLT_CL(g->ctx, clSetKernelArg(n->k[2], ARG_BWD_ACC, sizeof acc, &acc));
    size_t K = (size_t)ATTR(n)->k, N = (size_t)ATTR(n)->n;
    size_t gs[2] = {K, N}, ls[2] = {K < 64 ? K : 64, 1};
    return clt__launch(g->ctx, n->k[2], 2, gs, ls);
}

static const clt__op op_sce = {"softmax_cross_entropy", prepare, forward, backward, NULL};

int clt_softmax_cross_entropy(clt_graph *g, clt_tensor *logits, clt_tensor *labels, float label_smoothing,
                              clt_tensor **out)
{
    const char *fn = "clt_softmax_cross_entropy";
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "%s: out is NULL", fn) : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, fn));
    CLT_TRY(clt__check_tensor(g, logits, fn, "logits"));
    CLT_TRY(clt__check_tensor(g, labels, fn, "labels"));
    char b1[64], b2[64];
    if (logits->ndim != 2)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: logits '%s' %s must be (N,K)", fn, logits->name,
                        clt__shape_str(logits, b1, sizeof b1));
    int N = logits->shape[0], K = logits->shape[1];
    if (labels->numel != (size_t)N || labels->shape[0] != N)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: labels '%s' %s must hold one class index per row of logits %s",
                        fn, labels->name, clt__shape_str(labels, b1, sizeof b1), clt__shape_str(logits, b2, sizeof b2));
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
        return clt__err(g->ctx, CLT_ERR_INVALID, "%s: label_smoothing %g (must be in [0,1])", fn, label_smoothing);
    clt_tensor *in[2] = {logits, labels};
    int shape[1] = {1};
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_sce, NULL, 2, in, 1, shape, &n));
    *ATTR(n) = (sce_attr){.n = N, .k = K, .smoothing = label_smoothing};
    n->bwd_needs_in = 2u; /* labels; the logits' role is taken by the saved probabilities */
    n->bwd_needs_out = 0;
    n->out->keep_value = 1;
    clt_tensor *t;
    CLT_TRY(clt__add_private(g, n, CLT__SAVED, "probs", (size_t)N * (size_t)K, &t));
    CLT_TRY(clt__add_private(g, n, CLT__FSCRATCH, "rows", (size_t)N + 2, &t));
    *out = n->out;
    return CLT_OK;
}

/* No layer keyword of its own in the model text format. */
const clt__op_def clt__opdef_softmax_cross_entropy = {"softmax_cross_entropy", NULL, 0};
