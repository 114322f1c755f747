/* model_build.c - turns a parsed model description into graph ops (clt_model_build). */
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "model.h"

typedef struct build_ctx {
    clt_graph *g;
} build_ctx;

/* The library's message for a failed op, for the walk to prefix with the line. */
static int op_fail(build_ctx *b, int st, const char *what, char *err)
{
    snprintf(err, CLT__MODEL_ERR_LEN, "%s: %s", what, clt_errmsg(clt_graph_context(b->g)));
    return st;
}

static int build_layer(void *ud, const clt__layer *l, const char *name, const clt__shape *in, const clt__shape *out,
                       void *xv, void **yv, char *err)
{
    build_ctx *b = ud;
    clt_graph *g = b->g;
    clt_tensor *x = xv, *y = NULL;
    int st = CLT_OK;
    switch (l->kind) {
    case CLT__L_CONV: {
        clt_conv2d_params p;
        clt_conv2d_default_params(&p, l->n, l->k);
        p.stride_h = p.stride_w = l->stride;
        p.pad_h = p.pad_w = l->pad;
        p.bias = l->bias;
        st = clt_conv2d(g, x, &p, name, &y);
        break;
    }
    case CLT__L_RELU: st = clt_relu(g, x, &y); break;
    case CLT__L_LEAKY_RELU: st = clt_leaky_relu(g, x, l->f, &y); break;
    case CLT__L_SIGMOID: st = clt_sigmoid(g, x, &y); break;
    case CLT__L_TANH: st = clt_tanh(g, x, &y); break;
    case CLT__L_GELU: st = clt_gelu(g, x, &y); break;
    case CLT__L_MAXPOOL: st = clt_max_pool2d(g, x, l->k, l->stride, l->pad, &y); break;
    case CLT__L_AVGPOOL: st = clt_avg_pool2d(g, x, l->k, l->stride, l->pad, &y); break;
    case CLT__L_GLOBAL_AVGPOOL: st = clt_global_avg_pool(g, x, &y); break;
    case CLT__L_FLATTEN:
        if (in->flat) /* already (N, F): nothing to do */
            y = x;
        else
            st = clt_flatten(g, x, &y);
        break;
    case CLT__L_DENSE: st = clt_dense(g, x, out->c, l->bias, CLT_INIT_DEFAULT, name, &y); break;
    case CLT__L_DROPOUT:
        if (l->f == 0) /* rate 0 is the identity */
            y = x;
        else
            st = clt_dropout(g, x, l->f, &y);
        break;
    case CLT__L_BATCHNORM: st = clt_batch_norm(g, x, l->f, l->eps, name, &y); break;
    default: snprintf(err, CLT__MODEL_ERR_LEN, "internal error: layer kind %d", l->kind); return CLT_ERR_INVALID;
    }
    if (st) return op_fail(b, st, name, err);
    /* The library and the walk must agree on shapes; a mismatch would make later messages misleading. */
    int nd = clt_tensor_ndim(y);
    int ok = out->flat ? nd == 2 && clt_tensor_dim(y, 1) == out->c
                       : nd == 4 && clt_tensor_dim(y, 1) == out->c && clt_tensor_dim(y, 2) == out->h &&
                             clt_tensor_dim(y, 3) == out->w;
    if (!ok) {
        snprintf(err, CLT__MODEL_ERR_LEN, "internal error: %s produced a tensor of unexpected shape", name);
        return CLT_ERR_SHAPE;
    }
    *yv = y;
    return CLT_OK;
}

static int build_residual(void *ud, const clt__layer *begin, const char *name, const clt__shape *in,
                          const clt__shape *out, void *block_in, void *block_out, void **yv, char *err)
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

/* Records on g what a checkpoint needs to describe the graph (see clt__graph_model). */
static int record_model(clt_graph *g, const clt_model *m, clt_tensor *input, int classes, clt_tensor *logits)
{
    char *text = clt__strdup(m->text);
    if (!text) return clt__graph_poison(g, clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory"));
    free(g->model_text);
    g->model_text = text;
    for (int i = 0; i < 3; i++) g->model_in[i] = input->shape[i + 1];
    g->model_classes = classes;
    g->model_input = input;
    g->model_output = logits;
    g->model_count++;
    return CLT_OK;
}

int clt_model_build(clt_graph *g, const clt_model *m, clt_tensor *input, int classes, clt_tensor **logits)
{
    if (!logits) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_model_build: logits is NULL") : CLT_ERR_INVALID;
    *logits = NULL;
    CLT_TRY(clt__check_building(g, "clt_model_build"));
    if (!m) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_model_build: the model is NULL");
    CLT_TRY(clt__check_tensor(g, input, "clt_model_build", "input"));
    if (input->ndim != 4) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_model_build: the input '%s' %s must be (N,C,H,W)", input->name,
                        clt__shape_str(input, b, sizeof b));
    }
    char err[CLT__MODEL_ERR_LEN] = "";
    int c = input->shape[1], h = input->shape[2], w = input->shape[3];
    /* The whole description first, so that a shape error leaves the graph as it was. */
    int st = clt__model_walk(m, c, h, w, classes, NULL, NULL, NULL, NULL, NULL, err);
    if (st) return clt__err(g->ctx, st, "%s", err);
    build_ctx bc = {g};
    clt__model_builder b = {&bc, build_layer, build_residual};
    void *out = NULL;
    st = clt__model_walk(m, c, h, w, classes, &b, input, &out, NULL, NULL, err);
    if (st) return clt__graph_poison(g, clt__err(g->ctx, st, "%s", err));
    CLT_TRY(record_model(g, m, input, classes, out));
    *logits = out;
    return CLT_OK;
}

int clt__graph_model(const clt_graph *g, const char **text, int in[3], int *classes, clt_tensor **input,
                     clt_tensor **output)
{
    if (!g || !g->model_text) return CLT_ERR_STATE;
    if (text) *text = g->model_text;
    if (in)
        for (int i = 0; i < 3; i++) in[i] = g->model_in[i];
    if (classes) *classes = g->model_classes;
    if (input) *input = g->model_input;
    if (output) *output = g->model_output;
    return CLT_OK;
}
