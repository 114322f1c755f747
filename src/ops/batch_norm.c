/* batch_norm.c - batch normalization over dim 1 of (N,C) or (N,C,H,W): training (batch statistics, running
 * statistics updated) and evaluation (running statistics) passes, and the backward pass (cl/batch_norm.cl). */
#include <string.h>

#include "model.h"

/* param: 0 weight (gamma), 1 bias (beta). buf: 0 running_mean, 1 running_var. saved: 0 mean, 1 inv_std.
 * Kernels: 0 forward train, 1 forward eval, 2 backward after a training pass, 3 after an evaluation pass. */
typedef struct bn_attr {
    int n, c, hw;       /* x read as (N, C, HW) */
    int last_training;  /* the last forward was a training pass */
    float momentum, eps;
} bn_attr;
#define ATTR(n) CLT__ATTR(n, bn_attr)
/* bn_backward's arguments that change per call. */
enum { ARG_BWD_NEED_DX = 10, ARG_BWD_ACC = 11 };

static int prepare(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    const bn_attr *a = ATTR(n);
    cl_uint N = (cl_uint)a->n, C = (cl_uint)a->c, HW = (cl_uint)a->hw;
    float momentum = a->momentum, eps = a->eps;
    cl_mem x = n->in[0]->mem, y = n->out->mem, gamma = n->param[0]->mem, beta = n->param[1]->mem;
    cl_mem rm = n->buf[0]->mem, rv = n->buf[1]->mem;
    CLT_TRY(clt__kernel(ctx, "batch_norm", "", "bn_forward_eval", &n->k[1]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[1], CLT_ARG(x), CLT_ARG(y), CLT_ARG(gamma), CLT_ARG(beta), CLT_ARG(rm), CLT_ARG(rv),
                         CLT_ARG(eps), CLT_ARG(N), CLT_ARG(C), CLT_ARG(HW)));
    if (!g->training_alloc) return CLT_OK; /* saved statistics and gradients exist in training graphs only */
    cl_mem mean = n->saved[0]->mem, istd = n->saved[1]->mem;
    CLT_TRY(clt__kernel(ctx, "batch_norm", "", "bn_forward_train", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[0], CLT_ARG(x), CLT_ARG(y), CLT_ARG(gamma), CLT_ARG(beta), CLT_ARG(mean),
                         CLT_ARG(istd), CLT_ARG(rm), CLT_ARG(rv), CLT_ARG(eps), CLT_ARG(momentum), CLT_ARG(N),
                         CLT_ARG(C), CLT_ARG(HW)));
    if (!n->out->grad) return CLT_OK;
    cl_mem dy = n->out->grad->mem, dx = n->in[0]->grad ? n->in[0]->grad->mem : dy;
    cl_mem dgamma = n->param[0]->grad->mem, dbeta = n->param[1]->grad->mem;
    cl_int zero = 0;
    for (int k = 2; k <= 3; k++) {
        cl_int train = k == 2;
        cl_mem mu = train ? mean : rm, sd = train ? istd : rv;
        CLT_TRY(clt__kernel(ctx, "batch_norm", "", "bn_backward", &n->k[k]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[k], CLT_ARG(x), CLT_ARG(dy), CLT_ARG(dx), CLT_ARG(gamma), CLT_ARG(dgamma),
                             CLT_ARG(dbeta), CLT_ARG(mu), CLT_ARG(sd), CLT_ARG(eps), CLT_ARG(train), CLT_ARG(zero),
                             CLT_ARG(zero), CLT_ARG(N), CLT_ARG(C), CLT_ARG(HW)));
    }
    return CLT_OK;
}

/* One work-item per channel, on CPU devices in work-groups of one so that the channels spread over all
 * cores (elsewhere the driver chooses). */
static int launch(clt_graph *g, clt__node *n, cl_kernel k)
{
    size_t gs = (size_t)ATTR(n)->c, ls = 1;
    return clt__launch(g->ctx, k, 1, &gs, g->ctx->info.is_cpu ? &ls : NULL);
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    bn_attr *a = ATTR(n);
    a->last_training = training != 0;
    if (!training) return launch(g, n, n->k[1]);
    if ((size_t)a->n * (size_t)a->hw < 2)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "batch norm '%s': a training pass needs more than one value per "
                        "channel (batch %d of %d x 1 values)", n->out->name, a->n, a->hw);
    return launch(g, n, n->k[0]);
}

static int backward(clt_graph *g, clt__node *n)
{
    cl_kernel k = n->k[ATTR(n)->last_training ? 2 : 3];
    cl_int need = n->need_dx[0], acc = n->acc_dx[0];
    CLT_CL(g->ctx, clSetKernelArg(k, ARG_BWD_NEED_DX, sizeof need, &need));
    CLT_CL(g->ctx, clSetKernelArg(k, ARG_BWD_ACC, sizeof acc, &acc));
    return launch(g, n, k);
}

static const clt__op op_batch_norm = {"batch_norm", prepare, forward, backward, NULL};

int clt_batch_norm(clt_graph *g, clt_tensor *x, float momentum, float eps, const char *name, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_batch_norm: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_batch_norm"));
    CLT_TRY(clt__check_tensor(g, x, "clt_batch_norm", "input"));
    if (x->ndim != 2 && x->ndim != 4) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_batch_norm: input '%s' %s must be (N,C) or (N,C,H,W)", x->name,
                        clt__shape_str(x, b, sizeof b));
    }
    if (!(momentum >= 0.0f && momentum <= 1.0f) || !(eps > 0.0f))
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_batch_norm: momentum %g (must be in [0, 1]) or eps %g (must be "
                        "positive)", momentum, eps);
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_batch_norm, name, 1, &x, x->ndim, x->shape, &n));
    int C = x->shape[1];
    *ATTR(n) = (bn_attr){.n = x->shape[0], .c = C, .hw = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1,
                         .momentum = momentum, .eps = eps};
    n->bwd_needs_in = 1; /* x, to recompute xhat */
    n->bwd_needs_out = 0;
    int cs[1] = {C};
    clt_tensor *t;
    /* CLT_INIT_ZEROS fills with init_const: scale starts at 1, shift at 0. */
    CLT_TRY(clt__add_param(g, n, "weight", 1, cs, CLT_INIT_ZEROS, 0, 0, 1.0f, &t));
    CLT_TRY(clt__add_param(g, n, "bias", 1, cs, CLT_INIT_ZEROS, 0, 0, 0.0f, &t));
    CLT_TRY(clt__add_buffer(g, n, "running_mean", 1, cs, 0.0f, &t));
    CLT_TRY(clt__add_buffer(g, n, "running_var", 1, cs, 1.0f, &t));
    CLT_TRY(clt__add_private(g, n, CLT__SAVED, "mean", (size_t)C, &t));
    CLT_TRY(clt__add_private(g, n, CLT__SAVED, "inv_std", (size_t)C, &t));
    *out = n->out;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ model layer */

typedef struct bn_args {
    float momentum, eps;
} bn_args;

static int bn_parse(clt__line *l, void *args)
{
    bn_args a = {0.1f, 1e-5f};
    if (clt__line_float(l, "momentum", 0, 1, &a.momentum) || clt__line_float(l, "eps", 1e-12f, 1, &a.eps))
        return CLT_ERR_INVALID;
    memcpy(args, &a, sizeof a);
    return CLT_OK;
}

static void bn_print(const void *args, clt__sbuf *b)
{
    CLT__ARGS(bn_args, a, args);
    char f1[32], f2[32];
    clt__sb_printf(b, "batchnorm momentum=%s eps=%s\n", clt__fstr(a.momentum, f1), clt__fstr(a.eps, f2));
}

/* Same shape; a scale and a shift per channel. */
static int bn_shape(const void *args, const clt__shape *in, int classes, clt__shape *out, clt__layer_cost *cost,
                    char *msg)
{
    (void)args, (void)classes, (void)msg;
    *out = *in;
    cost->params = 2LL * in->c;
    return CLT_OK;
}

static int bn_build(clt_graph *g, const void *args, const char *name, const clt__shape *in, const clt__shape *out,
                    clt_tensor *x, clt_tensor **y)
{
    (void)in, (void)out;
    CLT__ARGS(bn_args, a, args);
    return clt_batch_norm(g, x, a.momentum, a.eps, name, y);
}

static const clt__layer_type layers[] = {
    {"batchnorm", "batchnorm [momentum=0.1] [eps=1e-5]", "momentum, eps", "bn", bn_parse, bn_print, bn_shape,
     bn_build},
};
const clt__op_def clt__opdef_batch_norm = {"batch_norm", layers, 1};
