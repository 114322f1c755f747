/* bias_add.c - learnable per-channel bias over dim 1 of (N,C) or (N,C,H,W): forward and backward (cl/bias_add.cl). */
#include "internal.h"

/* iattr: 0 N, 1 C, 2 HW. Kernels: 0 forward, 1 dx (arg 2 acc), 2 db. */

static int prepare(clt_graph *g, clt__node *n)
{
    cl_uint N = (cl_uint)n->iattr[0], C = (cl_uint)n->iattr[1], HW = (cl_uint)n->iattr[2], NC = N * C;
    cl_uint cnt = (cl_uint)n->out->numel;
    CLT_TRY(clt__kernel(g->ctx, "bias_add", "", "bias_add_forward", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->param[0]->mem), CLT_ARG(n->out->mem),
                         CLT_ARG(C), CLT_ARG(HW), CLT_ARG(NC)));
    if (n->in[0]->grad) {
        cl_int acc = 0;
        CLT_TRY(clt__kernel(g->ctx, "bias_add", "", "bias_add_dx", &n->k[1]));
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(n->out->grad->mem), CLT_ARG(n->in[0]->grad->mem), CLT_ARG(acc),
                             CLT_ARG(cnt)));
    }
    if (n->param[0]->grad) {
        CLT_TRY(clt__kernel(g->ctx, "bias_add", "", "bias_add_db", &n->k[2]));
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[2], CLT_ARG(n->out->grad->mem), CLT_ARG(n->param[0]->grad->mem),
                             CLT_ARG(N), CLT_ARG(C), CLT_ARG(HW)));
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    size_t hw = (size_t)n->iattr[2], rows = (size_t)n->iattr[0] * (size_t)n->iattr[1];
    size_t gs[2] = {hw, rows}, ls[2];
    ls[0] = hw >= 64 ? 64 : hw;
    ls[1] = hw >= 64 ? 1 : (rows < 64 / ls[0] ? rows : 64 / ls[0]);
    return clt__launch(g->ctx, n->k[0], 2, gs, ls);
}

static int backward(clt_graph *g, clt__node *n)
{
    /* Channels spread over work-groups of one so that every core sums some. */
    size_t gc = (size_t)n->iattr[1], lc = 1;
    CLT_TRY(clt__launch(g->ctx, n->k[2], 1, &gc, &lc));
    if (n->need_dx[0]) {
        cl_int acc = n->acc_dx[0];
        CLT_CL(g->ctx, clSetKernelArg(n->k[1], 2, sizeof acc, &acc));
        size_t gs = n->out->numel, ls = 64;
        CLT_TRY(clt__launch(g->ctx, n->k[1], 1, &gs, &ls));
    }
    return CLT_OK;
}

static const clt__op op_bias_add = {"bias_add", prepare, forward, backward, NULL};

int clt_bias_add(clt_graph *g, clt_tensor *x, const char *name, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_bias_add: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_bias_add"));
    CLT_TRY(clt__check_tensor(g, x, "clt_bias_add", "input"));
    if (x->ndim != 2 && x->ndim != 4) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_bias_add: input '%s' %s must be (N,C) or (N,C,H,W)", x->name,
                        clt__shape_str(x, b, sizeof b));
    }
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_bias_add, name, 1, &x, x->ndim, x->shape, &n));
    n->iattr[0] = x->shape[0];
    n->iattr[1] = x->shape[1];
    n->iattr[2] = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    n->bwd_needs_in = 0;
    n->bwd_needs_out = 0;
    int bshape[1] = {x->shape[1]};
    clt_tensor *t;
    CLT_TRY(clt__add_param(g, n, "bias", 1, bshape, CLT_INIT_ZEROS, 0, 0, 0.0f, &t));
    *out = n->out;
    return CLT_OK;
}
