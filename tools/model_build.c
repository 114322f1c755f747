/* model_build.c - turns a parsed model description into cltrain graph ops (tool_model_build). */
#include <stdio.h>
#include <string.h>

#include "model_internal.h"

typedef struct build_ctx {
    clt_graph *g;
} build_ctx;

/* The library's message for a failed op, for the walk to prefix with the line. */
static int op_fail(build_ctx *b, int st, const char *what, char *err)
{
    snprintf(err, TOOL_ERR_LEN, "%s: %s", what, clt_errmsg(clt_graph_context(b->g)));
    return st;
}

static int build_layer(void *ud, const tool_layer *l, const char *name, const tool_shape *in, const tool_shape *out,
                       void *xv, void **yv, char *err)
{
    build_ctx *b = ud;
    clt_graph *g = b->g;
    clt_tensor *x = xv, *y = NULL;
    int st = CLT_OK;
    switch (l->kind) {
    case TL_CONV: {
        clt_conv2d_params p;
        clt_conv2d_default_params(&p, l->n, l->k);
        p.stride_h = p.stride_w = l->stride;
        p.pad_h = p.pad_w = l->pad;
        p.bias = l->bias;
        st = clt_conv2d(g, x, &p, name, &y);
        break;
    }
    case TL_RELU: st = clt_relu(g, x, &y); break;
    case TL_LEAKY_RELU: st = clt_leaky_relu(g, x, l->f, &y); break;
    case TL_SIGMOID: st = clt_sigmoid(g, x, &y); break;
    case TL_TANH: st = clt_tanh(g, x, &y); break;
    case TL_GELU: st = clt_gelu(g, x, &y); break;
    case TL_MAXPOOL: st = clt_max_pool2d(g, x, l->k, l->stride, l->pad, &y); break;
    case TL_AVGPOOL: st = clt_avg_pool2d(g, x, l->k, l->stride, l->pad, &y); break;
    case TL_GLOBAL_AVGPOOL: st = clt_global_avg_pool(g, x, &y); break;
    case TL_FLATTEN:
        if (in->flat) /* already (N, F): nothing to do */
            y = x;
        else
            st = clt_flatten(g, x, &y);
        break;
    case TL_DENSE: st = clt_dense(g, x, out->c, l->bias, CLT_INIT_DEFAULT, name, &y); break;
    case TL_DROPOUT:
        if (l->f == 0) /* rate 0 is the identity */
            y = x;
        else
            st = clt_dropout(g, x, l->f, &y);
        break;
    case TL_BATCHNORM: st = clt_batch_norm(g, x, l->f, l->eps, name, &y); break;
    default: snprintf(err, TOOL_ERR_LEN, "internal error: layer kind %d", l->kind); return CLT_ERR_INVALID;
    }
    if (st) return op_fail(b, st, name, err);
    /* The library and the walk must agree on shapes; a mismatch would make later messages misleading. */
    int nd = clt_tensor_ndim(y);
    int ok = out->flat ? nd == 2 && clt_tensor_dim(y, 1) == out->c
                       : nd == 4 && clt_tensor_dim(y, 1) == out->c && clt_tensor_dim(y, 2) == out->h &&
                             clt_tensor_dim(y, 3) == out->w;
    if (!ok) {
        snprintf(err, TOOL_ERR_LEN, "internal error: %s produced a tensor of unexpected shape", name);
        return CLT_ERR_SHAPE;
    }
    *yv = y;
    return CLT_OK;
}

static int build_residual(void *ud, const tool_layer *begin, const char *name, const tool_shape *in,
                          const tool_shape *out, void *block_in, void *block_out, void **yv, char *err)
{
    build_ctx *b = ud;
    clt_tensor *shortcut = block_in, *y = NULL;
    int st = CLT_OK;
    if (begin->project) {
        char pname[64];
        snprintf(pname, sizeof pname, "%s.proj", name);
        if (out->flat) {
            st = clt_dense(b->g, shortcut, out->c, 1, CLT_INIT_DEFAULT, pname, &shortcut);
        } else {
            clt_conv2d_params p;
            clt_conv2d_default_params(&p, out->c, 1);
            p.stride_h = p.stride_w = (in->h + out->h - 1) / out->h;
            st = clt_conv2d(b->g, shortcut, &p, pname, &shortcut);
        }
        if (st) return op_fail(b, st, pname, err);
    }
    st = clt_add(b->g, block_out, shortcut, &y);
    if (st) return op_fail(b, st, name, err);
    *yv = y;
    return CLT_OK;
}

int tool_model_build(const tool_model *m, clt_graph *g, clt_tensor *input, int classes, clt_tensor **logits,
                     char *err)
{
    if (!m || !g || !input || !logits) {
        if (err) snprintf(err, TOOL_ERR_LEN, "tool_model_build: NULL argument");
        return CLT_ERR_INVALID;
    }
    *logits = NULL;
    int nd = clt_tensor_ndim(input);
    if (nd != 4) {
        if (err) snprintf(err, TOOL_ERR_LEN, "tool_model_build: the input must be (N,C,H,W), it has %d dims", nd);
        return CLT_ERR_SHAPE;
    }
    build_ctx bc = {g};
    tool_model_builder b = {&bc, build_layer, build_residual};
    void *out = NULL;
    int st = tool__model_walk(m, clt_tensor_dim(input, 1), clt_tensor_dim(input, 2), clt_tensor_dim(input, 3),
                              classes, &b, input, &out, NULL, NULL, err);
    if (st) return st;
    *logits = out;
    return CLT_OK;
}
