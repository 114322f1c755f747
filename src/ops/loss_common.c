/* loss_common.c - shared machinery of the elementwise losses (mse, bce): same-shape (pred, target) pair,
 * deterministic two-stage mean (cl/<op>.cl partial sums, cl/reduce.cl final sum), gradients for both inputs. */
#include <stdio.h>

#include "internal.h"

/* fscratch[0]: RED_P partial sums (RED_P of cl/reduce.cl). Kernels: 0 partial, 1 final, 2 backward. No
 * attributes: the shapes are the tensors'. */
enum { ARG_BWD_MODE_X = 5, ARG_BWD_MODE_T = 6 }; /* <source>_backward's arguments that change per call */
#define RED_P 256

int clt__pair_loss_prepare(clt_graph *g, clt__node *n, const char *source)
{
    clt_context *ctx = g->ctx;
    cl_uint cnt = (cl_uint)n->in[0]->numel;
    cl_mem part = n->fscratch[0]->mem;
    char name[64];
    snprintf(name, sizeof name, "%s_partial", source);
    CLT_TRY(clt__kernel(ctx, source, "", name, &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->in[1]->mem), CLT_ARG(part), CLT_ARG(cnt)));
    CLT_TRY(clt__kernel(ctx, "reduce", "", "mean_final", &n->k[1]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[1], CLT_ARG(part), CLT_ARG(n->out->mem), CLT_ARG(cnt)));
    if (n->out->grad) {
        /* An input without a gradient gets a stand-in buffer that the kernel never touches (mode 0). */
        cl_mem dl = n->out->grad->mem;
        cl_mem dx = n->in[0]->grad ? n->in[0]->grad->mem : dl, dt = n->in[1]->grad ? n->in[1]->grad->mem : dl;
        cl_int mode = 0;
        snprintf(name, sizeof name, "%s_backward", source);
        CLT_TRY(clt__kernel(ctx, source, "", name, &n->k[2]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[2], CLT_ARG(n->in[0]->mem), CLT_ARG(n->in[1]->mem), CLT_ARG(dl), CLT_ARG(dx),
                             CLT_ARG(dt), CLT_ARG(mode), CLT_ARG(mode), CLT_ARG(cnt)));
    }
    return CLT_OK;
}

int clt__pair_loss_forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    size_t gs = RED_P, ls = 64, one = 1;
    CLT_TRY(clt__launch(g->ctx, n->k[0], 1, &gs, &ls));
    return clt__launch(g->ctx, n->k[1], 1, &one, &one);
}

int clt__pair_loss_backward(clt_graph *g, clt__node *n)
{
    if (!n->need_dx[0] && !n->need_dx[1]) return CLT_OK;
    cl_int mx = n->need_dx[0] ? 1 + n->acc_dx[0] : 0, mt = n->need_dx[1] ? 1 + n->acc_dx[1] : 0;
    CLT_CL(g->ctx, clSetKernelArg(n->k[2], ARG_BWD_MODE_X, sizeof mx, &mx));
    CLT_CL(g->ctx, clSetKernelArg(n->k[2], ARG_BWD_MODE_T, sizeof mt, &mt));
    size_t gs = n->in[0]->numel, ls = 64;
    return clt__launch(g->ctx, n->k[2], 1, &gs, &ls);
}

int clt__pair_loss_new(clt_graph *g, const clt__op *op, const char *fn, clt_tensor *a, const char *a_what,
                       clt_tensor *b, const char *b_what, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "%s: out is NULL", fn) : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, fn));
    CLT_TRY(clt__check_tensor(g, a, fn, a_what));
    CLT_TRY(clt__check_tensor(g, b, fn, b_what));
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (!same) {
        /* No broadcasting: (N,1) against (N) is almost always a bug. */
        char b1[64], b2[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: %s '%s' %s and %s '%s' %s must have the same shape", fn, a_what,
                        a->name, clt__shape_str(a, b1, sizeof b1), b_what, b->name, clt__shape_str(b, b2, sizeof b2));
    }
    clt_tensor *in[2] = {a, b};
    int shape[1] = {1};
    clt__node *n;
    CLT_TRY(clt__new_node(g, op, NULL, 2, in, 1, shape, &n));
    n->bwd_needs_in = 3u;
    n->bwd_needs_out = 0;
    n->out->keep_value = 1;
    clt_tensor *t;
    CLT_TRY(clt__add_private(g, n, CLT__FSCRATCH, "partial", RED_P, &t));
    *out = n->out;
    return CLT_OK;
}
