/* qdense.c - int8 fully connected layer for inference: quantize the input, int32 dot products, dequantized float
 * output (cl/qdense.cl; the arithmetic is documented at clt_qdense in cltrain.h). */
#include <limits.h>
#include <string.h>

#include "model.h"
#include "quant.h"

typedef struct qdense_attr {
    int n, f, u; /* x (N,F), w (U,F), y (N,U) */
} qdense_attr;
#define ATTR(n) CLT__ATTR(n, qdense_attr)

static int prepare(clt_graph *g, clt__node *n)
{
    const qdense_attr *a = ATTR(n);
    clt__qparams *q = n->priv;
    CLT_TRY(clt__qparams_upload(g->ctx, q));
    cl_uint total = (cl_uint)((size_t)a->n * a->f), F = (cl_uint)a->f, U = (cl_uint)a->u, N = (cl_uint)a->n;
    cl_int hb = q->has_bias;
    cl_mem xq = n->fscratch[0]->mem;
    CLT_TRY(clt__kernel(g->ctx, "qdense", "", "qdense_quantize", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(xq), CLT_ARG(q->inv_x), CLT_ARG(total)));
    CLT_TRY(clt__kernel(g->ctx, "qdense", "", "qdense_forward", &n->k[1]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(xq), CLT_ARG(q->dw), CLT_ARG(q->dosc), CLT_ARG(q->dbias),
                         CLT_ARG(n->out->mem), CLT_ARG(F), CLT_ARG(U), CLT_ARG(N), CLT_ARG(hb)));
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    const qdense_attr *a = ATTR(n);
    size_t total = (size_t)a->n * a->f, ls = 64;
    CLT_TRY(clt__launch(g->ctx, n->k[0], 1, &total, &ls));
    size_t gs[2] = {(size_t)a->u, (size_t)a->n};
    return clt__launch(g->ctx, n->k[1], 2, gs, NULL);
}

static void destroy(clt__node *n) { clt__qparams_free(n->priv); }

static const clt__op op_qdense = {"qdense", prepare, forward, clt__qop_no_backward, destroy};

int clt_qdense(clt_graph *g, clt_tensor *x, int units, const int8_t *weight, const float *weight_scale,
               const float *bias, float x_scale, const char *name, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_qdense: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_qdense"));
    CLT_TRY(clt__check_tensor(g, x, "clt_qdense", "input"));
    if (units <= 0) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_qdense: units = %d (must be positive)", units);
    if (x->ndim < 2) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_qdense: input '%s' %s needs a batch dimension: (N, features...)",
                        x->name, clt__shape_str(x, b, sizeof b));
    }
    int N = x->shape[0];
    size_t F = x->numel / (size_t)N;
    if (F > (size_t)(INT_MAX / (127 * 127)))
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_qdense: %zu input features (at most %d for exact int32 sums)", F,
                        INT_MAX / (127 * 127));
    clt__qparams *q;
    CLT_TRY(clt__qparams_new(g->ctx, "clt_qdense", units, F * (size_t)units, weight, weight_scale, bias, x_scale, &q));
    int shape[2] = {N, units};
    clt__node *n;
    int st = clt__new_node(g, &op_qdense, name, 1, &x, 2, shape, &n);
    if (st) {
        clt__qparams_free(q);
        return st;
    }
    n->priv = q;
    n->no_backward = 1;
    *ATTR(n) = (qdense_attr){N, (int)F, units};
    clt_tensor *t;
    CLT_TRY(clt__add_private(g, n, CLT__FSCRATCH, "xq", (x->numel + 3) / 4, &t));
    *out = n->out;
    return CLT_OK;
}

/* No layer keyword: quantized checkpoints build these layers (src/quant_file.c). */
const clt__op_def clt__opdef_qdense = {"qdense", NULL, 0};
