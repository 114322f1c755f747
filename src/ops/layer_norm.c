/* layer_norm.c - layer normalization over the last dimension with learnable scale and shift (cl/layer_norm.cl). */
#include "model.h"

/* saved[0]: (rows, 2) mean and 1/std per row. Kernels: 0 forward, 1 dx, 2 parameter gradients. */
typedef struct ln_attr {
    int rows, c;
    float eps;
} ln_attr;
#define ATTR(n) CLT__ATTR(n, ln_attr)
enum { ARG_DX_ACC = 5 }; /* ln_backward_dx's argument that changes per call */

static int prepare(clt_graph *g, clt__node *n)
{
    const ln_attr *a = ATTR(n);
    cl_uint rows = (cl_uint)a->rows, C = (cl_uint)a->c;
    cl_int acc = 0;
    cl_mem stats = n->saved[0]->mem;
    CLT_TRY(clt__kernel(g->ctx, "layer_norm", "", "ln_forward", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->param[0]->mem),
                         CLT_ARG(n->param[1]->mem), CLT_ARG(n->out->mem), CLT_ARG(stats), CLT_ARG(a->eps),
                         CLT_ARG(rows), CLT_ARG(C)));
    if (!n->out->grad) return CLT_OK;
    if (n->in[0]->grad) {
        CLT_TRY(clt__kernel(g->ctx, "layer_norm", "", "ln_backward_dx", &n->k[1]));
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(n->in[0]->mem), CLT_ARG(n->param[0]->mem), CLT_ARG(stats),
                             CLT_ARG(n->out->grad->mem), CLT_ARG(n->in[0]->grad->mem), CLT_ARG(acc), CLT_ARG(rows),
                             CLT_ARG(C)));
    }
    CLT_TRY(clt__kernel(g->ctx, "layer_norm", "", "ln_backward_params", &n->k[2]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[2], CLT_ARG(n->in[0]->mem), CLT_ARG(stats), CLT_ARG(n->out->grad->mem),
                         CLT_ARG(n->param[0]->grad->mem), CLT_ARG(n->param[1]->grad->mem), CLT_ARG(acc),
                         CLT_ARG(rows), CLT_ARG(C)));
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    size_t gs = (size_t)ATTR(n)->rows, ls = 16;
    return clt__launch(g->ctx, n->k[0], 1, &gs, &ls);
}

static int backward(clt_graph *g, clt__node *n)
{
    size_t gc = (size_t)ATTR(n)->c, lc = 16;
    CLT_TRY(clt__launch(g->ctx, n->k[2], 1, &gc, &lc));
    if (!n->need_dx[0]) return CLT_OK;
    cl_int acc = n->acc_dx[0];
    CLT_CL(g->ctx, clSetKernelArg(n->k[1], ARG_DX_ACC, sizeof acc, &acc));
    size_t gs = (size_t)ATTR(n)->rows, ls = 16;
    return clt__launch(g->ctx, n->k[1], 1, &gs, &ls);
}

static const clt__op op_layer_norm = {"layer_norm", prepare, forward, backward, NULL};

int clt_layer_norm(clt_graph *g, clt_tensor *x, float eps, const char *name, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_layer_norm: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_layer_norm"));
    CLT_TRY(clt__check_tensor(g, x, "clt_layer_norm", "input"));
    if (!(eps > 0 && eps < 1))
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_layer_norm: eps = %g (must be in (0, 1))", eps);
    int C = x->shape[x->ndim - 1];
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_layer_norm, name, 1, &x, x->ndim, x->shape, &n));
    *ATTR(n) = (ln_attr){(int)(x->numel / (size_t)C), C, eps};
    n->bwd_needs_in = 1;
    n->bwd_needs_out = 0;
    int cs[1] = {C};
    clt_tensor *t;
    CLT_TRY(clt__add_param(g, n, "weight", 1, cs, CLT_INIT_ZEROS, C, C, 1.0f, &t));
    CLT_TRY(clt__add_param(g, n, "bias", 1, cs, CLT_INIT_ZEROS, C, C, 0.0f, &t));
    CLT_TRY(clt__add_private(g, n, CLT__SAVED, "stats", 2 * (size_t)ATTR(n)->rows, &t));
    *out = n->out;
    return CLT_OK;
}

const clt__op_def clt__opdef_layer_norm = {"layer_norm", NULL, 0};
