/* distill_kl.c - knowledge distillation loss against a teacher's logits, with the hard-label cross-entropy
 * (cl/distill_kl.cl). The label check works as softmax_cross_entropy's: flags counted by the mean kernel, read
 * back with one blocking 8-byte read per forward, an exact error at the failing pass. */
#include <math.h>
#include <stdio.h>

#include "model.h"

/* saved[0] gradient coefficients (N,K); fscratch[0] row losses (N) and the two flag floats. Kernels: 0 rows,
 * 1 mean, 2 backward. */
typedef struct dkl_attr {
    int n, k; /* logits (N,K) */
    int wg;   /* work-group size of the mean (prepare) */
    float temperature, alpha;
} dkl_attr;
#define ATTR(n) CLT__ATTR(n, dkl_attr)
enum { ARG_BWD_ACC = 3 }; /* dkl_backward's argument that changes per call */

static int prepare(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    dkl_attr *a = ATTR(n);
    cl_uint N = (cl_uint)a->n, K = (cl_uint)a->k;
    cl_mem scratch = n->fscratch[0]->mem;
    cl_int save = n->in[0]->grad != NULL && n->saved[0]->mem != NULL;
    cl_mem c = save ? n->saved[0]->mem : scratch;
    int wg = 256;
    while ((size_t)wg > ctx->info.max_work_group_size && wg > 1) wg /= 2;
    char opts[32];
    for (;;) {
        snprintf(opts, sizeof opts, "-DDKL_WG=%d", wg);
        CLT_TRY(clt__kernel(ctx, "distill_kl", opts, "dkl_mean", &n->k[1]));
        size_t kmax;
        CLT_TRY(clt__kernel_wg_max(ctx, n->k[1], &kmax));
        if ((size_t)wg <= kmax || wg == 1) break;
        clReleaseKernel(n->k[1]);
        n->k[1] = NULL;
        wg /= 2;
    }
    a->wg = wg;
    CLT_TRY(clt__kernel(ctx, "distill_kl", opts, "dkl_rows", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->in[1]->mem), CLT_ARG(n->in[2]->mem),
                         CLT_ARG(c), CLT_ARG(scratch), CLT_ARG(a->temperature), CLT_ARG(a->alpha), CLT_ARG(save),
                         CLT_ARG(N), CLT_ARG(K)));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[1], CLT_ARG(scratch), CLT_ARG(n->in[2]->mem), CLT_ARG(n->out->mem), CLT_ARG(N),
                         CLT_ARG(K)));
    if (save) {
        CLT_TRY(clt__kernel(ctx, "distill_kl", opts, "dkl_backward", &n->k[2]));
        cl_int acc = 0;
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[2], CLT_ARG(n->saved[0]->mem), CLT_ARG(n->out->grad->mem),
                             CLT_ARG(n->in[0]->grad->mem), CLT_ARG(acc), CLT_ARG(N), CLT_ARG(K)));
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    clt_context *ctx = g->ctx;
    size_t N = (size_t)ATTR(n)->n, gs = N, ls = 64, wg = (size_t)ATTR(n)->wg;
    CLT_TRY(clt__launch(ctx, n->k[0], 1, &gs, &ls));
    CLT_TRY(clt__launch(ctx, n->k[1], 1, &wg, &wg));
    float flag[2];
    CLT_CL(ctx, clEnqueueReadBuffer(ctx->queue, n->fscratch[0]->mem, CL_TRUE, N * sizeof(float), sizeof flag, flag, 0,
                                    NULL, NULL));
    if (flag[0] != 0.0f) {
        float bad = NAN;
        size_t row = flag[1] >= 0 ? (size_t)flag[1] : 0;
        CLT_CL(ctx, clEnqueueReadBuffer(ctx->queue, n->in[2]->mem, CL_TRUE, row * sizeof(float), sizeof bad, &bad, 0,
                                        NULL, NULL));
        return clt__err(ctx, CLT_ERR_INVALID,
                        "distillation loss '%s': %.0f label(s) out of range; the first is row %zu of '%s' = %g "
                        "(labels must be integers 0..%d)", n->out->name, flag[0], row, n->in[2]->name, bad,
                        ATTR(n)->k - 1);
    }
    return CLT_OK;
}

static int backward(clt_graph *g, clt__node *n)
{
    /* The teacher's logits and the labels are data of the step: they get zero gradients if anyone asks. */
    for (int i = 1; i < 3; i++)
        if (n->need_dx[i] && !n->acc_dx[i]) CLT_TRY(clt__fill(g, n->in[i]->grad->mem, n->in[i]->numel, 0.0f));
    if (!n->need_dx[0]) return CLT_OK;
    cl_int acc = n->acc_dx[0];
    CLT_CL(g->ctx, clSetKernelArg(n->k[2], ARG_BWD_ACC, sizeof acc, &acc));
    size_t K = (size_t)ATTR(n)->k, N = (size_t)ATTR(n)->n;
    size_t gs[2] = {K, N}, ls[2] = {K < 64 ? K : 64, 1};
    return clt__launch(g->ctx, n->k[2], 2, gs, ls);
}

static const clt__op op_dkl = {"distill_kl", prepare, forward, backward, NULL};

int clt_distill_kl(clt_graph *g, clt_tensor *logits, clt_tensor *teacher, clt_tensor *labels, float temperature,
                   float alpha, clt_tensor **out)
{
    const char *fn = "clt_distill_kl";
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "%s: out is NULL", fn) : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, fn));
    CLT_TRY(clt__check_tensor(g, logits, fn, "logits"));
    CLT_TRY(clt__check_tensor(g, teacher, fn, "teacher"));
    CLT_TRY(clt__check_tensor(g, labels, fn, "labels"));
    char b1[64], b2[64];
    if (logits->ndim != 2)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: logits '%s' %s must be (N,K)", fn, logits->name,
                        clt__shape_str(logits, b1, sizeof b1));
    int N = logits->shape[0], K = logits->shape[1];
    if (teacher->ndim != 2 || teacher->shape[0] != N || teacher->shape[1] != K)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: teacher logits '%s' %s must have the student's shape %s", fn,
                        teacher->name, clt__shape_str(teacher, b1, sizeof b1), clt__shape_str(logits, b2, sizeof b2));
    if (labels->numel != (size_t)N || labels->shape[0] != N)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: labels '%s' %s must hold one class index per row of logits %s",
                        fn, labels->name, clt__shape_str(labels, b1, sizeof b1), clt__shape_str(logits, b2, sizeof b2));
    if (!(temperature > 0.0f && temperature <= 1000.0f))
        return clt__err(g->ctx, CLT_ERR_INVALID, "%s: temperature %g (must be in (0, 1000])", fn, temperature);
    if (!(alpha >= 0.0f && alpha <= 1.0f))
        return clt__err(g->ctx, CLT_ERR_INVALID, "%s: alpha %g (must be in [0, 1])", fn, alpha);
    clt_tensor *in[3] = {logits, teacher, labels};
    int shape[1] = {1};
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_dkl, NULL, 3, in, 1, shape, &n));
    *ATTR(n) = (dkl_attr){.n = N, .k = K, .temperature = temperature, .alpha = alpha};
    n->bwd_needs_in = 0; /* the saved coefficients hold everything backward needs */
    n->bwd_needs_out = 0;
    n->out->keep_value = 1;
    clt_tensor *t;
    CLT_TRY(clt__add_private(g, n, CLT__SAVED, "coef", (size_t)N * (size_t)K, &t));
    CLT_TRY(clt__add_private(g, n, CLT__FSCRATCH, "rows", (size_t)N + 2, &t));
    *out = n->out;
    return CLT_OK;
}

/* No layer keyword of its own in the model text format. */
const clt__op_def clt__opdef_distill_kl = {"distill_kl", NULL, 0};
