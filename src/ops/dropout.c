/* dropout.c - inverted dropout: masks from the graph's seed and pass counter, recomputed in backward (cl/dropout.cl). */
#include <stdint.h>
#include <string.h>

#include "model.h"

typedef struct dropout_attr {
    float p, scale;       /* drop probability, 1/(1-p) */
    int train;            /* the last forward was a training pass (with p > 0) */
    unsigned counter;     /* pass counter (low 32 bits) that forward used */
} dropout_attr;
#define ATTR(n) CLT__ATTR(n, dropout_attr)
/* dropout_apply's arguments that change per call. */
enum { ARG_COUNTER = 4, ARG_TRAIN = 7, ARG_ACC = 8 };

static int prepare(clt_graph *g, clt__node *n)
{
    uint64_t seed = g->settings.seed;
    /* The node id enters the seed so that two dropout layers of the same shape draw different masks. */
    cl_uint lo = (cl_uint)seed, hi = (cl_uint)(seed >> 32) ^ (0x9E3779B9u * (cl_uint)(n->id + 1));
    cl_uint counter = 0, cnt = (cl_uint)n->out->numel;
    cl_int train = 0, acc = 0;
    const dropout_attr *a = ATTR(n);
    CLT_TRY(clt__kernel(g->ctx, "dropout", "", "dropout_apply", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->out->mem), CLT_ARG(lo), CLT_ARG(hi),
                         CLT_ARG(counter), CLT_ARG(a->p), CLT_ARG(a->scale), CLT_ARG(train), CLT_ARG(acc),
                         CLT_ARG(cnt)));
    if (n->in[0]->grad) {
        CLT_TRY(clt__kernel(g->ctx, "dropout", "", "dropout_apply", &n->k[1]));
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(n->out->grad->mem), CLT_ARG(n->in[0]->grad->mem), CLT_ARG(lo),
                             CLT_ARG(hi), CLT_ARG(counter), CLT_ARG(a->p), CLT_ARG(a->scale),
                             CLT_ARG(train), CLT_ARG(acc), CLT_ARG(cnt)));
    }
    return CLT_OK;
}

static int run(clt_graph *g, clt__node *n, cl_kernel k, cl_int acc)
{
    cl_uint counter = (cl_uint)ATTR(n)->counter;
    cl_int train = ATTR(n)->train;
    CLT_CL(g->ctx, clSetKernelArg(k, ARG_COUNTER, sizeof counter, &counter));
    CLT_CL(g->ctx, clSetKernelArg(k, ARG_TRAIN, sizeof train, &train));
    CLT_CL(g->ctx, clSetKernelArg(k, ARG_ACC, sizeof acc, &acc));
    size_t gs = n->out->numel, ls = 64;
    return clt__launch(g->ctx, k, 1, &gs, &ls);
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    /* The graph increments g->passes after this pass; backward must use the counter of this one. */
    dropout_attr *a = ATTR(n);
    a->train = training != 0 && a->p > 0.0f;
    a->counter = (unsigned)(cl_uint)g->passes;
    return run(g, n, n->k[0], 0);
}

static int backward(clt_graph *g, clt__node *n)
{
    if (!n->need_dx[0]) return CLT_OK;
    return run(g, n, n->k[1], n->acc_dx[0]);
}

static const clt__op op_dropout = {"dropout", prepare, forward, backward, NULL};

int clt_dropout(clt_graph *g, clt_tensor *x, float p, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_dropout: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_dropout"));
    CLT_TRY(clt__check_tensor(g, x, "clt_dropout", "input"));
    if (!(p >= 0.0f && p < 1.0f))
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_dropout: drop probability p = %g (must be in [0, 1))", p);
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_dropout, NULL, 1, &x, x->ndim, x->shape, &n));
    *ATTR(n) = (dropout_attr){.p = p, .scale = 1.0f / (1.0f - p)};
    n->bwd_needs_in = 0; /* the mask is recomputed from counters */
    n->bwd_needs_out = 0;
    *out = n->out;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ model layer */

typedef struct dropout_args {
    float p;
} dropout_args;

static int dropout_parse(clt__line *l, void *args)
{
    dropout_args a = {0.5f};
    const char *s = clt__line_arg(l, 1);
    if (s && (!clt__parse_float(s, 0, 1, &a.p) || a.p >= 1))
        return clt__line_fail(l, "dropout: bad rate '%s' (0 <= p < 1)", s);
    memcpy(args, &a, sizeof a);
    return CLT_OK;
}

static void dropout_print(const void *args, clt__sbuf *b)
{
    CLT__ARGS(dropout_args, a, args);
    char f[32];
    clt__sb_printf(b, "dropout %s\n", clt__fstr(a.p, f));
}

static int dropout_build(clt_graph *g, const void *args, const char *name, const clt__shape *in,
                         const clt__shape *out, clt_tensor *x, clt_tensor **y)
{
    (void)name, (void)in, (void)out;
    CLT__ARGS(dropout_args, a, args);
    if (a.p == 0) { /* rate 0 is the identity */
        *y = x;
        return CLT_OK;
    }
    return clt_dropout(g, x, a.p, y);
}

static const clt__layer_type layers[] = {
    {"dropout", "dropout [P=0.5]", NULL, NULL, dropout_parse, dropout_print, clt__layer_same_shape, dropout_build},
};
const clt__op_def clt__opdef_dropout = {"dropout", layers, 1};
