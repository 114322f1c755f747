/* softmax.c - softmax over dim 1 (classes/channels) of (N,C) or (N,C,H,W): forward and backward (cl/softmax.cl). */
#include "model.h"

typedef struct softmax_attr {
    int n, c, hw; /* x read as (N, C, HW) */
} softmax_attr;
#define ATTR(n) CLT__ATTR(n, softmax_attr)
enum { ARG_BWD_ACC = 3 }; /* softmax_backward's argument that changes per call */

/* Positions per work-item (SM_CHUNK in cl/softmax.cl). */
#define SM_CHUNK 16
#define STR_(x) #x
#define STR(x) STR_(x)
#define SM_OPTS "-DSM_CHUNK=" STR(SM_CHUNK)

/* On CPU devices, work-groups of one: each work-item already loops over a contiguous chunk, and single
 * work-item groups spread evenly over the cores. Elsewhere the driver chooses (NULL local size). */
static int launch(clt_graph *g, clt__node *n, cl_kernel k)
{
    size_t gs[2] = {((size_t)ATTR(n)->hw + SM_CHUNK - 1) / SM_CHUNK, (size_t)ATTR(n)->n}, ls[2] = {1, 1};
    return clt__launch(g->ctx, k, 2, gs, g->ctx->info.is_cpu ? ls : NULL);
}

static int prepare(clt_graph *g, clt__node *n)
{
    const softmax_attr *a = ATTR(n);
    cl_uint N = (cl_uint)a->n, C = (cl_uint)a->c, HW = (cl_uint)a->hw;
    CLT_TRY(clt__kernel(g->ctx, "softmax", SM_OPTS, "softmax_forward", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->out->mem), CLT_ARG(C), CLT_ARG(HW),
                         CLT_ARG(N)));
    if (n->in[0]->grad) {
        cl_int acc = 0;
        CLT_TRY(clt__kernel(g->ctx, "softmax", SM_OPTS, "softmax_backward", &n->k[1]));
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(n->out->mem), CLT_ARG(n->out->grad->mem),
                             CLT_ARG(n->in[0]->grad->mem), CLT_ARG(acc), CLT_ARG(C), CLT_ARG(HW), CLT_ARG(N)));
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    return launch(g, n, n->k[0]);
}

static int backward(clt_graph *g, clt__node *n)
{
    if (!n->need_dx[0]) return CLT_OK;
    cl_int acc = n->acc_dx[0];
    CLT_CL(g->ctx, clSetKernelArg(n->k[1], ARG_BWD_ACC, sizeof acc, &acc));
    return launch(g, n, n->k[1]);
}

static const clt__op op_softmax = {"softmax", prepare, forward, backward, NULL};

int clt_softmax(clt_graph *g, clt_tensor *x, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_softmax: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_softmax"));
    CLT_TRY(clt__check_tensor(g, x, "clt_softmax", "input"));
    if (x->ndim != 2 && x->ndim != 4) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_softmax: input '%s' %s must be (N,C) or (N,C,H,W)", x->name,
                        clt__shape_str(x, b, sizeof b));
    }
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_softmax, NULL, 1, &x, x->ndim, x->shape, &n));
    *ATTR(n) = (softmax_attr){x->shape[0], x->shape[1], x->ndim == 4 ? x->shape[2] * x->shape[3] : 1};
    n->bwd_needs_in = 0; /* the gradient needs only y */
    n->bwd_needs_out = 1;
    *out = n->out;
    return CLT_OK;
}

/* No layer keyword of its own in the model text format. */
const clt__op_def clt__opdef_softmax = {"softmax", NULL, 0};
