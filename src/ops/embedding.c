/* embedding.c - token embedding (ids stored as floats pick rows of a learned table) and learned position
 * embedding (a (T,C) table added to every sequence); deterministic gradients (cl/embedding.cl). */
#include <math.h>

#include "model.h"

/* ---------------------------------------------------------------------------------------- token embedding */

/* fscratch[0]: two flag floats (a bad id seen, one position holding it). Kernels: 0 forward, 1 backward. */
typedef struct emb_attr {
    int p, c, v; /* positions P (ids' numel), dims C, vocabulary V */
} emb_attr;
#define ATTR(n) CLT__ATTR(n, emb_attr)
enum { ARG_BWD_ACC = 3 }; /* emb_backward's argument that changes per call */

static int emb_prepare(clt_graph *g, clt__node *n)
{
    const emb_attr *a = ATTR(n);
    cl_uint P = (cl_uint)a->p, C = (cl_uint)a->c, V = (cl_uint)a->v;
    CLT_TRY(clt__kernel(g->ctx, "embedding", "", "emb_forward", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->param[0]->mem), CLT_ARG(n->out->mem),
                         CLT_ARG(n->fscratch[0]->mem), CLT_ARG(P), CLT_ARG(C), CLT_ARG(V)));
    if (n->param[0]->grad) {
        cl_int acc = 0;
        CLT_TRY(clt__kernel(g->ctx, "embedding", "", "emb_backward", &n->k[1]));
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(n->in[0]->mem), CLT_ARG(n->out->grad->mem),
                             CLT_ARG(n->param[0]->grad->mem), CLT_ARG(acc), CLT_ARG(P), CLT_ARG(C), CLT_ARG(V)));
    }
    return CLT_OK;
}

/* A bad id is found by one 8-byte blocking read per pass (like the label check of softmax_cross_entropy):
 * the pass fails with the position and the value instead of training on zero rows. */
static int emb_forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    clt_context *ctx = g->ctx;
    const emb_attr *a = ATTR(n);
    CLT_TRY(clt__fill(g, n->fscratch[0]->mem, 2, 0.0f));
    size_t gs[2] = {(size_t)a->c, (size_t)a->p}, ls[2] = {a->c < 32 ? (size_t)a->c : 32, 1};
    CLT_TRY(clt__launch(ctx, n->k[0], 2, gs, ls));
    float flag[2];
    CLT_CL(ctx, clEnqueueReadBuffer(ctx->queue, n->fscratch[0]->mem, CL_TRUE, 0, sizeof flag, flag, 0, NULL, NULL));
    if (flag[0] != 0.0f) {
        float bad = NAN;
        size_t p = flag[1] >= 0 && flag[1] < (float)a->p ? (size_t)flag[1] : 0;
        CLT_CL(ctx, clEnqueueReadBuffer(ctx->queue, n->in[0]->mem, CL_TRUE, p * sizeof(float), sizeof bad, &bad, 0,
                                        NULL, NULL));
        return clt__err(ctx, CLT_ERR_INVALID, "embedding '%s': id %g at position %zu of '%s' is not an integer in "
                        "[0, %d)", n->out->name, bad, p, n->in[0]->name, a->v);
    }
    return CLT_OK;
}

static int emb_backward(clt_graph *g, clt__node *n)
{
    const emb_attr *a = ATTR(n);
    /* Ids are piecewise constant: their gradient is zero (wanted only if someone kept it). */
    if (n->need_dx[0] && !n->acc_dx[0]) CLT_TRY(clt__fill(g, n->in[0]->grad->mem, n->in[0]->numel, 0.0f));
    cl_int acc = n->acc_param[0];
    CLT_CL(g->ctx, clSetKernelArg(n->k[1], ARG_BWD_ACC, sizeof acc, &acc));
    size_t gs[2] = {(size_t)a->c, (size_t)a->v}, ls[2] = {a->c < 32 ? (size_t)a->c : 32, 1};
    return clt__launch(g->ctx, n->k[1], 2, gs, ls);
}

static const clt__op op_embedding = {"embedding", emb_prepare, emb_forward, emb_backward, NULL};

int clt_embedding(clt_graph *g, clt_tensor *ids, int vocab, int dim, const char *name, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_embedding: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_embedding"));
    CLT_TRY(clt__check_tensor(g, ids, "clt_embedding", "ids"));
    if (vocab <= 0 || dim <= 0 || vocab > (1 << 24))
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_embedding: vocabulary %d and dimension %d (must be positive, "
                        "vocabulary at most 2^24 so that ids are exact floats)", vocab, dim);
    if (ids->ndim > 3) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_embedding: ids '%s' %s: at most 3 dimensions (the output adds "
                        "one)", ids->name, clt__shape_str(ids, b, sizeof b));
    }
    int shape[4];
    for (int i = 0; i < ids->ndim; i++) shape[i] = ids->shape[i];
    shape[ids->ndim] = dim;
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_embedding, name, 1, &ids, ids->ndim + 1, shape, &n));
    *ATTR(n) = (emb_attr){(int)ids->numel, dim, vocab};
    n->bwd_needs_in = 1; /* the ids */
    n->bwd_needs_out = 0;
    n->shares_params = 1;
    int ws[2] = {vocab, dim};
    clt_tensor *t;
    CLT_TRY(clt__add_param(g, n, "weight", 2, ws, CLT__INIT_NORMAL_STD, dim, vocab, 1.0f, &t));
    t->decay = 0; /* embedding tables are not matrices of decay_matrices_only (GPT-2's rule) */
    CLT_TRY(clt__add_private(g, n, CLT__FSCRATCH, "flag", 2, &t));
    *out = n->out;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------- position embedding */

typedef struct pos_attr {
    int b, tc; /* x read as (B, T*C) */
} pos_attr;
#define PATTR(n) CLT__ATTR(n, pos_attr)
enum { ARG_DX_ACC = 2 }; /* pos_backward_dx's argument that changes per call */

static int pos_prepare(clt_graph *g, clt__node *n)
{
    const pos_attr *a = PATTR(n);
    cl_uint B = (cl_uint)a->b, TC = (cl_uint)a->tc, cnt = (cl_uint)n->out->numel;
    cl_int acc = 0;
    CLT_TRY(clt__kernel(g->ctx, "embedding", "", "pos_forward", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->param[0]->mem), CLT_ARG(n->out->mem),
                         CLT_ARG(B), CLT_ARG(TC)));
    if (!n->out->grad) return CLT_OK;
    CLT_TRY(clt__kernel(g->ctx, "embedding", "", "pos_backward_w", &n->k[1]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(n->out->grad->mem), CLT_ARG(n->param[0]->grad->mem), CLT_ARG(B),
                         CLT_ARG(TC)));
    if (n->in[0]->grad) {
        CLT_TRY(clt__kernel(g->ctx, "embedding", "", "pos_backward_dx", &n->k[2]));
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[2], CLT_ARG(n->out->grad->mem), CLT_ARG(n->in[0]->grad->mem), CLT_ARG(acc),
                             CLT_ARG(cnt)));
    }
    return CLT_OK;
}

static int pos_forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    const pos_attr *a = PATTR(n);
    size_t gs[2] = {(size_t)a->tc, (size_t)a->b}, ls[2] = {64, 1};
    return clt__launch(g->ctx, n->k[0], 2, gs, ls);
}

static int pos_backward(clt_graph *g, clt__node *n)
{
    size_t gs = (size_t)PATTR(n)->tc, ls = 64;
    CLT_TRY(clt__launch(g->ctx, n->k[1], 1, &gs, &ls));
    if (!n->need_dx[0]) return CLT_OK;
    cl_int acc = n->acc_dx[0];
    CLT_CL(g->ctx, clSetKernelArg(n->k[2], ARG_DX_ACC, sizeof acc, &acc));
    size_t gn = n->out->numel;
    return clt__launch(g->ctx, n->k[2], 1, &gn, &ls);
}

static const clt__op op_pos_embedding = {"pos_embedding", pos_prepare, pos_forward, pos_backward, NULL};

int clt_pos_embedding(clt_graph *g, clt_tensor *x, int max_t, const char *name, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_pos_embedding: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_pos_embedding"));
    CLT_TRY(clt__check_tensor(g, x, "clt_pos_embedding", "input"));
    if (x->ndim < 2) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_pos_embedding: input '%s' %s needs (..., T, C)", x->name,
                        clt__shape_str(x, b, sizeof b));
    }
    int T = x->shape[x->ndim - 2], C = x->shape[x->ndim - 1];
    if (max_t < T)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_pos_embedding: input '%s' has %d positions, more than the table's "
                        "%d", x->name, T, max_t);
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_pos_embedding, name, 1, &x, x->ndim, x->shape, &n));
    *PATTR(n) = (pos_attr){(int)(x->numel / ((size_t)T * C)), T * C};
    n->bwd_needs_in = 0;
    n->bwd_needs_out = 0;
    int ws[2] = {max_t, C}; /* rows T.. are unused by this graph (a shorter context than the table) */
    clt_tensor *t;
    CLT_TRY(clt__add_param(g, n, "weight", 2, ws, CLT__INIT_NORMAL_STD, C, max_t, 1.0f, &t));
    t->decay = 0; /* as for token embeddings */
    *out = n->out;
    return CLT_OK;
}

const clt__op_def clt__opdef_embedding = {"embedding", NULL, 0};
