/* attention.c - fused causal multi-head self-attention on packed q, k, v (cl/attention.cl): split heads, scaled
 * QK^T, causal mask, softmax over keys, times V, merged heads, in one kernel per pass direction. */
#include <math.h>
#include <stdio.h>

#include "model.h"

/* saved[0] P (B*H, T, T) probabilities; bscratch[0] dS (B*H, T, T). Kernels: 0 forward, 1 dq, 2 dk/dv.
 * Memory: 2 * B*H*T^2 floats (gpt-tiny, B 12 H 4 T 64: 1.5 MiB; gpt-small, B 64 H 6 T 256: 192 MiB). */
typedef struct attn_attr {
    int b, t, h, hd;
    float scale;
} attn_attr;
#define ATTR(n) CLT__ATTR(n, attn_attr)
enum { ARG_Q_ACC = 6, ARG_KV_ACC = 6 }; /* the backward kernels' arguments that change per call */

static int prepare(clt_graph *g, clt__node *n)
{
    const attn_attr *a = ATTR(n);
    char opts[32];
    snprintf(opts, sizeof opts, "-DHD=%d", a->hd);
    cl_uint T = (cl_uint)a->t, H = (cl_uint)a->h, BH = (cl_uint)(a->b * a->h);
    CLT_TRY(clt__kernel(g->ctx, "attention", opts, "attn_forward", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->out->mem), CLT_ARG(n->saved[0]->mem),
                         CLT_ARG(a->scale), CLT_ARG(T), CLT_ARG(H), CLT_ARG(BH)));
    if (!n->in[0]->grad) return CLT_OK;
    cl_int acc = 0;
    CLT_TRY(clt__kernel(g->ctx, "attention", opts, "attn_backward_q", &n->k[1]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(n->in[0]->mem), CLT_ARG(n->saved[0]->mem),
                         CLT_ARG(n->out->grad->mem), CLT_ARG(n->bscratch[0]->mem), CLT_ARG(n->in[0]->grad->mem),
                         CLT_ARG(a->scale), CLT_ARG(acc), CLT_ARG(T), CLT_ARG(H), CLT_ARG(BH)));
    CLT_TRY(clt__kernel(g->ctx, "attention", opts, "attn_backward_kv", &n->k[2]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[2], CLT_ARG(n->in[0]->mem), CLT_ARG(n->saved[0]->mem),
                         CLT_ARG(n->out->grad->mem), CLT_ARG(n->bscratch[0]->mem), CLT_ARG(n->in[0]->grad->mem),
                         CLT_ARG(a->scale), CLT_ARG(acc), CLT_ARG(T), CLT_ARG(H), CLT_ARG(BH)));
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    const attn_attr *a = ATTR(n);
    size_t gs[2] = {(size_t)a->t, (size_t)(a->b * a->h)};
    return clt__launch(g->ctx, n->k[0], 2, gs, NULL);
}

static int backward(clt_graph *g, clt__node *n)
{
    if (!n->need_dx[0]) return CLT_OK;
    const attn_attr *a = ATTR(n);
    cl_int acc = n->acc_dx[0];
    size_t gs[2] = {(size_t)a->t, (size_t)(a->b * a->h)};
    CLT_CL(g->ctx, clSetKernelArg(n->k[1], ARG_Q_ACC, sizeof acc, &acc));
    CLT_TRY(clt__launch(g->ctx, n->k[1], 2, gs, NULL));
    CLT_CL(g->ctx, clSetKernelArg(n->k[2], ARG_KV_ACC, sizeof acc, &acc));
    return clt__launch(g->ctx, n->k[2], 2, gs, NULL);
}

static const clt__op op_attention = {"attention", prepare, forward, backward, NULL};

int clt_causal_attention(clt_graph *g, clt_tensor *qkv, int heads, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_causal_attention: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_causal_attention"));
    CLT_TRY(clt__check_tensor(g, qkv, "clt_causal_attention", "qkv"));
    char b[64];
    if (qkv->ndim != 3 || qkv->shape[2] % 3 != 0)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_causal_attention: qkv '%s' %s must be (B, T, 3*C): q, k and v "
                        "side by side", qkv->name, clt__shape_str(qkv, b, sizeof b));
    int C = qkv->shape[2] / 3;
    if (heads <= 0 || C % heads != 0 || C / heads > 256)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_causal_attention: %d heads do not divide C = %d into heads of at "
                        "most 256 values", heads, C);
    int B = qkv->shape[0], T = qkv->shape[1];
    size_t pt = (size_t)B * heads * T * T;
    if (pt > 0x7fffffff)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_causal_attention: B*H*T^2 = %zu attention weights (at most 2^31-1)",
                        pt);
    int shape[3] = {B, T, C};
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_attention, NULL, 1, &qkv, 3, shape, &n));
    int hd = C / heads;
    *ATTR(n) = (attn_attr){B, T, heads, hd, (float)(1.0 / sqrt((double)hd))};
    n->bwd_needs_in = 1;
    n->bwd_needs_out = 0;
    clt_tensor *t;
    CLT_TRY(clt__add_private(g, n, CLT__SAVED, "probs", pt, &t));
    CLT_TRY(clt__add_private(g, n, CLT__BSCRATCH, "dscores", pt, &t));
    *out = n->out;
    return CLT_OK;
}

const clt__op_def clt__opdef_attention = {"attention", NULL, 0};
