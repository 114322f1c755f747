/* dense.c - fully connected layer y = x W^T + b: GEMMs through clt__gemm, bias kernels in cl/dense.cl. */
#include <string.h>

#include "model.h"

typedef struct dense_attr {
    int n, f, u; /* rows N, in features F, units U: x (N,F), W (U,F), y (N,U) */
    int bias;
} dense_attr;
#define ATTR(n) CLT__ATTR(n, dense_attr)

static int prepare(clt_graph *g, clt__node *n)
{
    const dense_attr *a = ATTR(n);
    cl_uint rows = (cl_uint)a->n, cols = (cl_uint)a->u;
    /* Decide/tune the GEMMs of forward and backward now and size their workspaces (none at step time). */
    size_t N = (size_t)a->n, F = (size_t)a->f, U = (size_t)a->u;
    CLT_TRY(clt__gemm_prepare(g->ctx, &(clt__gemm_args){.trans_b = 1, .m = N, .n = U, .k = F, .batch = 1}));
    if (n->param[0]->grad) {
        CLT_TRY(clt__gemm_prepare(g->ctx, &(clt__gemm_args){.trans_a = 1, .m = U, .n = F, .k = N, .batch = 1}));
        CLT_TRY(clt__gemm_prepare(g->ctx, &(clt__gemm_args){.m = N, .n = F, .k = U, .batch = 1}));
    }
    if (a->bias) {
        CLT_TRY(clt__kernel(g->ctx, "dense", "", "bias_rows", &n->k[0]));
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->out->mem), CLT_ARG(n->param[1]->mem), CLT_ARG(rows),
                             CLT_ARG(cols)));
        if (n->param[1]->grad) {
            CLT_TRY(clt__kernel(g->ctx, "dense", "", "bias_grad_rows", &n->k[1]));
            CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(n->out->grad->mem), CLT_ARG(n->param[1]->grad->mem),
                                 CLT_ARG(rows), CLT_ARG(cols)));
        }
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    const dense_attr *at = ATTR(n);
    size_t N = (size_t)at->n, F = (size_t)at->f, U = (size_t)at->u;
    /* (N,U) = (N,F) x (U,F)^T */
    clt__gemm_args a = {.trans_a = 0, .trans_b = 1, .m = N, .n = U, .k = F, .alpha = 1, .beta = 0,
                        .a = n->in[0]->mem, .lda = F, .b = n->param[0]->mem, .ldb = F, .c = n->out->mem, .ldc = U,
                        .batch = 1};
    CLT_TRY(clt__gemm(g->ctx, &a));
    if (at->bias) {
        size_t gs[2] = {U, N}, ls[2] = {U < 64 ? U : 64, 1};
        CLT_TRY(clt__launch(g->ctx, n->k[0], 2, gs, ls));
    }
    return CLT_OK;
}

static int backward(clt_graph *g, clt__node *n)
{
    const dense_attr *a = ATTR(n);
    size_t N = (size_t)a->n, F = (size_t)a->f, U = (size_t)a->u;
    cl_mem dy = n->out->grad->mem;
    /* dW (U,F) = dy^T (U,N) x x (N,F) */
    clt__gemm_args w = {.trans_a = 1, .trans_b = 0, .m = U, .n = F, .k = N, .alpha = 1, .beta = 0, .a = dy,
                        .lda = U, .b = n->in[0]->mem, .ldb = F, .c = n->param[0]->grad->mem, .ldc = F, .batch = 1};
    CLT_TRY(clt__gemm(g->ctx, &w));
    if (a->bias) {
        size_t gs = U, ls = U < 64 ? U : 64;
        CLT_TRY(clt__launch(g->ctx, n->k[1], 1, &gs, &ls));
    }
    if (n->need_dx[0]) {
        /* dx (N,F) = dy (N,U) x W (U,F) */
        clt__gemm_args x = {.trans_a = 0, .trans_b = 0, .m = N, .n = F, .k = U, .alpha = 1,
                            .beta = n->acc_dx[0] ? 1.0f : 0.0f, .a = dy, .lda = U, .b = n->param[0]->mem, .ldb = F,
                            .c = n->in[0]->grad->mem, .ldc = F, .batch = 1};
        CLT_TRY(clt__gemm(g->ctx, &x));
    }
    return CLT_OK;
}

static const clt__op op_dense = {"dense", prepare, forward, backward, NULL};

/* last: clt_linear (rows are all leading positions, the output keeps them), else clt_dense (N rows). */
static int add_dense(clt_graph *g, clt_tensor *x, int units, int bias, int init, const char *name, int last,
                     clt_tensor **out)
{
    const char *fn = last ? "clt_linear" : "clt_dense";
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "%s: out is NULL", fn) : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, fn));
    CLT_TRY(clt__check_tensor(g, x, fn, "input"));
    if (units <= 0) return clt__err(g->ctx, CLT_ERR_INVALID, "%s: units = %d (must be positive)", fn, units);
    if (x->ndim < 2) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: input '%s' %s needs a batch dimension: (N, features...)", fn,
                        x->name, clt__shape_str(x, b, sizeof b));
    }
    size_t F = last ? (size_t)x->shape[x->ndim - 1] : x->numel / (size_t)x->shape[0];
    int N = (int)(x->numel / F);
    int shape[4] = {N, units}, ndim = 2;
    if (last) {
        ndim = x->ndim;
        memcpy(shape, x->shape, sizeof shape);
        shape[ndim - 1] = units;
    }
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_dense, name, 1, &x, ndim, shape, &n));
    *ATTR(n) = (dense_attr){N, (int)F, units, bias != 0};
    n->bwd_needs_in = 1; /* x for dW */
    n->bwd_needs_out = 0;
    int wshape[2] = {units, (int)F}, bshape[1] = {units};
    clt_tensor *t;
    CLT_TRY(clt__add_param(g, n, "weight", 2, wshape, init, (int)F, units, 0.0f, &t));
    if (bias) CLT_TRY(clt__add_param(g, n, "bias", 1, bshape, CLT_INIT_ZEROS, (int)F, units, 0.0f, &t));
    *out = n->out;
    return CLT_OK;
}

int clt_dense(clt_graph *g, clt_tensor *x, int units, int bias, int init, const char *name, clt_tensor **out)
{
    return add_dense(g, x, units, bias, init, name, 0, out);
}

int clt_linear(clt_graph *g, clt_tensor *x, int units, int bias, int init, const char *name, clt_tensor **out)
{
    return add_dense(g, x, units, bias, init, name, 1, out);
}

/* ------------------------------------------------------------------------------------------ model layer */

typedef struct dense_args {
    int units; /* -1: the number of classes */
    int bias;
} dense_args;

static int dense_parse(clt__line *l, void *args)
{
    dense_args a = {0, 1};
    const char *s = clt__line_arg(l, 1);
    if (!s) return clt__line_fail(l, "dense: missing the number of units (dense N or dense classes)");
    if (strcmp(s, "classes") == 0)
        a.units = -1;
    else if (!clt__parse_int(s, 1, 1 << 24, &a.units))
        return clt__line_fail(l, "dense: bad number of units '%s' (a number or 'classes')", s);
    if (clt__line_int(l, "bias", 0, 1, &a.bias)) return CLT_ERR_INVALID;
    memcpy(args, &a, sizeof a);
    return CLT_OK;
}

static void dense_print(const void *args, clt__sbuf *b)
{
    CLT__ARGS(dense_args, a, args);
    if (a.units < 0)
        clt__sb_printf(b, "dense classes bias=%d\n", a.bias);
    else
        clt__sb_printf(b, "dense %d bias=%d\n", a.units, a.bias);
}

/* (C,H,W) or (C) -> (units): the input is read as C*H*W features, as clt_dense does. */
static int dense_shape(const void *args, const clt__shape *in, int classes, clt__shape *out, clt__layer_cost *cost,
                       char *msg)
{
    (void)msg;
    CLT__ARGS(dense_args, a, args);
    int units = a.units < 0 ? classes : a.units;
    long long f = (long long)in->c * in->h * in->w;
    *out = (clt__shape){1, units, 1, 1};
    cost->params = f * units + (a.bias ? units : 0);
    cost->macs = (double)f * units;
    return CLT_OK;
}

static int dense_build(clt_graph *g, const void *args, const char *name, const clt__shape *in, const clt__shape *out,
                       clt_tensor *x, clt_tensor **y)
{
    (void)in;
    CLT__ARGS(dense_args, a, args);
    return clt_dense(g, x, out->c, a.bias, CLT_INIT_DEFAULT, name, y);
}

static const clt__layer_type layers[] = {
    {"dense", "dense UNITS|classes [bias=1]", "bias", "fc", dense_parse, dense_print, dense_shape, dense_build},
};
const clt__op_def clt__opdef_dense = {"dense", layers, 1};
