/* add.c - elementwise a + b of same-shaped tensors (residual connections): forward and backward (cl/add.cl). */
#include "model.h"

/* Kernels: 0 forward, 1 one-gradient backward, 2 two-gradient backward. Their arguments that change per call: */
enum { ARG_B1_DX = 1, ARG_B1_SCALE = 2, ARG_B1_ACC = 3 }; /* add_backward1 */
enum { ARG_B2_ACC_A = 3, ARG_B2_ACC_B = 4 };               /* add_backward2 */

static int prepare(clt_graph *g, clt__node *n)
{
    cl_uint cnt = (cl_uint)n->out->numel;
    CLT_TRY(clt__kernel(g->ctx, "add", "", "add_forward", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->in[1]->mem), CLT_ARG(n->out->mem),
                         CLT_ARG(cnt)));
    if (!n->out->grad) return CLT_OK;
    float one = 1.0f;
    cl_int acc = 0;
    CLT_TRY(clt__kernel(g->ctx, "add", "", "add_backward1", &n->k[1]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(n->out->grad->mem), CLT_ARG(n->out->grad->mem), CLT_ARG(one),
                         CLT_ARG(acc), CLT_ARG(cnt)));
    if (n->in[0]->grad && n->in[1]->grad && n->in[0]->grad != n->in[1]->grad) {
        CLT_TRY(clt__kernel(g->ctx, "add", "", "add_backward2", &n->k[2]));
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[2], CLT_ARG(n->out->grad->mem), CLT_ARG(n->in[0]->grad->mem),
                             CLT_ARG(n->in[1]->grad->mem), CLT_ARG(acc), CLT_ARG(acc), CLT_ARG(cnt)));
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    size_t gs = n->out->numel, ls = 64;
    return clt__launch(g->ctx, n->k[0], 1, &gs, &ls);
}

static int backward1(clt_graph *g, clt__node *n, clt_tensor *dx, float scale, cl_int acc)
{
    CLT_CL(g->ctx, clSetKernelArg(n->k[1], ARG_B1_DX, sizeof(cl_mem), &dx->mem));
    CLT_CL(g->ctx, clSetKernelArg(n->k[1], ARG_B1_SCALE, sizeof scale, &scale));
    CLT_CL(g->ctx, clSetKernelArg(n->k[1], ARG_B1_ACC, sizeof acc, &acc));
    size_t gs = n->out->numel, ls = 64;
    return clt__launch(g->ctx, n->k[1], 1, &gs, &ls);
}

static int backward(clt_graph *g, clt__node *n)
{
    int na = n->need_dx[0], nb = n->need_dx[1];
    if (na && nb && n->in[0]->grad == n->in[1]->grad) {
        /* add(x, x), or two views of one tensor: one gradient memory receives dy twice. The graph counted
         * input 0 first, so its flag says whether anything was written before this node. */
        return backward1(g, n, n->in[0]->grad, 2.0f, n->acc_dx[0]);
    }
    if (na && nb) {
        cl_int aa = n->acc_dx[0], ab = n->acc_dx[1];
        CLT_CL(g->ctx, clSetKernelArg(n->k[2], ARG_B2_ACC_A, sizeof aa, &aa));
        CLT_CL(g->ctx, clSetKernelArg(n->k[2], ARG_B2_ACC_B, sizeof ab, &ab));
        size_t gs = n->out->numel, ls = 64;
        return clt__launch(g->ctx, n->k[2], 1, &gs, &ls);
    }
    if (na) return backward1(g, n, n->in[0]->grad, 1.0f, n->acc_dx[0]);
    if (nb) return backward1(g, n, n->in[1]->grad, 1.0f, n->acc_dx[1]);
    return CLT_OK;
}

static const clt__op op_add = {"add", prepare, forward, backward, NULL};

int clt_add(clt_graph *g, clt_tensor *a, clt_tensor *b, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_add: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_add"));
    CLT_TRY(clt__check_tensor(g, a, "clt_add", "a"));
    CLT_TRY(clt__check_tensor(g, b, "clt_add", "b"));
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (!same) {
        char sa[64], sb[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_add: shapes differ: '%s' %s and '%s' %s", a->name,
                        clt__shape_str(a, sa, sizeof sa), b->name, clt__shape_str(b, sb, sizeof sb));
    }
    clt_tensor *in[2] = {a, b};
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_add, NULL, 2, in, a->ndim, a->shape, &n));
    n->bwd_needs_in = 0;
    n->bwd_needs_out = 0;
    *out = n->out;
    return CLT_OK;
}

/* No layer keyword of its own in the model text format. */
const clt__op_def clt__opdef_add = {"add", NULL, 0};
