/* bias_add.c - learnable per-channel bias over dim 1 of (N,C) or (N,C,H,W): forward and backward (cl/bias_add.cl). */
#include "model.h"

/* Kernels: 0 forward, 1 dx, 2 db. */
typedef struct bias_attr {
    int n, c, hw; /* x read as (N, C, HW) */
} bias_attr;
#define ATTR(n) CLT__ATTR(n, bias_attr)
enum { ARG_DX_ACC = 2 }; /* bias_add_dx's argument that changes per call */

/* Rows at least this long get one work-item per row (a vectorizable loop), shorter ones one per value. */
#define ROW_MIN 16

static int rows_kernel(const clt__node *n) { return CLT__ATTR(n, const bias_attr)->hw >= ROW_MIN; }

static int prepare(clt_graph *g, clt__node *n)
{
    const bias_attr *a = ATTR(n);
    cl_uint N = (cl_uint)a->n, C = (cl_uint)a->c, HW = (cl_uint)a->hw, NC = N * C;
    cl_uint cnt = (cl_uint)n->out->numel;
    CLT_TRY(clt__kernel(g->ctx, "bias_add", "", rows_kernel(n) ? "bias_add_rows" : "bias_add_elems", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->param[0]->mem), CLT_ARG(n->out->mem),
                         CLT_ARG(C), CLT_ARG(HW), rows_kernel(n) ? CLT_ARG(NC) : CLT_ARG(cnt)));
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
    if (!rows_kernel(n)) {
        size_t gs = n->out->numel, ls = 64;
        return clt__launch(g->ctx, n->k[0], 1, &gs, &ls);
    }
    /* Work-groups of one on CPU devices spread the rows evenly over the cores; elsewhere the driver chooses. */
    size_t rows = (size_t)ATTR(n)->n * (size_t)ATTR(n)->c, one = 1;
    return clt__launch(g->ctx, n->k[0], 1, &rows, g->ctx->info.is_cpu ? &one : NULL);
}

static int backward(clt_graph *g, clt__node *n)
{
    /* Channels spread over work-groups of one so that every core sums some. */
    size_t gc = (size_t)ATTR(n)->c, lc = 1;
    CLT_TRY(clt__launch(g->ctx, n->k[2], 1, &gc, g->ctx->info.is_cpu ? &lc : NULL));
    if (n->need_dx[0]) {
        cl_int acc = n->acc_dx[0];
        CLT_CL(g->ctx, clSetKernelArg(n->k[1], ARG_DX_ACC, sizeof acc, &acc));
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
    *ATTR(n) = (bias_attr){x->shape[0], x->shape[1], x->ndim == 4 ? x->shape[2] * x->shape[3] : 1};
    n->bwd_needs_in = 0;
    n->bwd_needs_out = 0;
    int bshape[1] = {x->shape[1]};
    clt_tensor *t;
    CLT_TRY(clt__add_param(g, n, "bias", 1, bshape, CLT_INIT_ZEROS, 0, 0, 0.0f, &t));
    *out = n->out;
    return CLT_OK;
}

/* No layer keyword of its own in the model text format. */
const clt__op_def clt__opdef_bias_add = {"bias_add", NULL, 0};
