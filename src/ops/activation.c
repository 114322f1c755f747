/* activation.c - ReLU, leaky ReLU, sigmoid, tanh and GELU (exact and tanh approximation): forward and backward (cl/activation.cl). */
#include <stdio.h>
#include <string.h>

#include "model.h"

enum { A_RELU, A_LEAKY, A_SIGMOID, A_TANH, A_GELU, A_GELU_TANH };
static const char *names[] = {"relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh"};

typedef struct act_attr {
    int kind;    /* A_*, the kernels' ACT */
    float slope; /* leaky_relu */
} act_attr;
#define ATTR(n) CLT__ATTR(n, act_attr)
/* act_backward's argument that changes per call. */
enum { ARG_BWD_ACC = 5 };

static int prepare(clt_graph *g, clt__node *n)
{
    char opts[32];
    const act_attr *a = ATTR(n);
    snprintf(opts, sizeof opts, "-DACT=%d", a->kind);
    CLT_TRY(clt__kernel(g->ctx, "activation", opts, "act_forward", &n->k[0]));
    cl_uint cnt = (cl_uint)n->out->numel;
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(n->out->mem), CLT_ARG(a->slope),
                         CLT_ARG(cnt)));
    if (n->in[0]->grad) {
        CLT_TRY(clt__kernel(g->ctx, "activation", opts, "act_backward", &n->k[1]));
        /* x or y may be unused by this function (and then not kept alive): pass y for both. */
        cl_mem x = n->bwd_needs_in ? n->in[0]->mem : n->out->mem;
        cl_int acc = 0;
        CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(x), CLT_ARG(n->out->mem), CLT_ARG(n->out->grad->mem),
                             CLT_ARG(n->in[0]->grad->mem), CLT_ARG(a->slope), CLT_ARG(acc), CLT_ARG(cnt)));
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    size_t gs = n->out->numel, ls = 64;
    return clt__launch(g->ctx, n->k[0], 1, &gs, &ls);
}

static int backward(clt_graph *g, clt__node *n)
{
    if (!n->need_dx[0]) return CLT_OK;
    cl_int acc = n->acc_dx[0];
    CLT_CL(g->ctx, clSetKernelArg(n->k[1], ARG_BWD_ACC, sizeof acc, &acc));
    size_t gs = n->out->numel, ls = 64;
    return clt__launch(g->ctx, n->k[1], 1, &gs, &ls);
}

static const clt__op op_activation = {"activation", prepare, forward, backward, NULL};

static int add_activation(clt_graph *g, clt_tensor *x, int kind, float slope, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_%s: out is NULL", names[kind]) : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, names[kind]));
    CLT_TRY(clt__check_tensor(g, x, names[kind], "input"));
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_activation, NULL, 1, &x, x->ndim, x->shape, &n));
    *ATTR(n) = (act_attr){kind, slope};
    /* relu, sigmoid and tanh differentiate from the output alone, so the input can be freed early. */
    n->bwd_needs_in = (kind == A_LEAKY || kind == A_GELU || kind == A_GELU_TANH) ? 1u : 0u;
    n->bwd_needs_out = (kind == A_RELU || kind == A_SIGMOID || kind == A_TANH);
    *out = n->out;
    return CLT_OK;
}

int clt_relu(clt_graph *g, clt_tensor *x, clt_tensor **out) { return add_activation(g, x, A_RELU, 0.0f, out); }
int clt_leaky_relu(clt_graph *g, clt_tensor *x, float negative_slope, clt_tensor **out)
{
    return add_activation(g, x, A_LEAKY, negative_slope, out);
}
int clt_sigmoid(clt_graph *g, clt_tensor *x, clt_tensor **out) { return add_activation(g, x, A_SIGMOID, 0.0f, out); }
int clt_tanh(clt_graph *g, clt_tensor *x, clt_tensor **out) { return add_activation(g, x, A_TANH, 0.0f, out); }
int clt_gelu(clt_graph *g, clt_tensor *x, clt_tensor **out) { return add_activation(g, x, A_GELU, 0.0f, out); }
int clt_gelu_tanh(clt_graph *g, clt_tensor *x, clt_tensor **out)
{
    return add_activation(g, x, A_GELU_TANH, 0.0f, out);
}

/* ------------------------------------------------------------------------------------------ model layers */

typedef struct act_args {
    int kind;    /* A_* */
    float slope; /* leaky_relu */
} act_args;

static int act_parse(clt__line *l, void *args)
{
    act_args a = {0, 0.0f};
    while (strcmp(l->kw, names[a.kind]) != 0) a.kind++; /* the table found the keyword among ours */
    if (a.kind == A_LEAKY) {
        a.slope = 0.01f;
        const char *s = clt__line_arg(l, 1);
        if (s && !clt__parse_float(s, 0, 1e6f, &a.slope)) return clt__line_fail(l, "leaky_relu: bad slope '%s'", s);
    }
    memcpy(args, &a, sizeof a);
    return CLT_OK;
}

static void act_print(const void *args, clt__sbuf *b)
{
    CLT__ARGS(act_args, a, args);
    char f[32];
    if (a.kind == A_LEAKY)
        clt__sb_printf(b, "leaky_relu %s\n", clt__fstr(a.slope, f));
    else
        clt__sb_printf(b, "%s\n", names[a.kind]);
}

static int act_build(clt_graph *g, const void *args, const char *name, const clt__shape *in, const clt__shape *out,
                     clt_tensor *x, clt_tensor **y)
{
    (void)name, (void)in, (void)out;
    CLT__ARGS(act_args, a, args);
    return add_activation(g, x, a.kind, a.slope, y);
}

#define ACT_LAYER(kw, usage) {kw, usage, NULL, NULL, act_parse, act_print, clt__layer_same_shape, act_build}
static const clt__layer_type layers[] = {
    ACT_LAYER("relu", "relu"),
    ACT_LAYER("leaky_relu", "leaky_relu [SLOPE=0.01]"),
    ACT_LAYER("sigmoid", "sigmoid"),
    ACT_LAYER("tanh", "tanh"),
    ACT_LAYER("gelu", "gelu"),
    ACT_LAYER("gelu_tanh", "gelu_tanh"),
};
const clt__op_def clt__opdef_activation = {"activation", layers, 6};
