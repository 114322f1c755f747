/* pool.c - max pooling (argmax saved for the backward), average pooling and global average pooling
 * (cl/pool.cl). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

enum { P_MAX, P_AVG, P_GAP };
static const char *fn_names[] = {"clt_max_pool2d", "clt_avg_pool2d", "clt_global_avg_pool"};

/* saved[0]: max pool argmax (ints stored in a float tensor, one per output; in the 2x2 fast path one uint of
 * 2-bit codes per chunk of fast_width outputs). k[0] forward, k[1] backward. */
typedef struct pool_attr {
    int kind;            /* P_* */
    int n, c, h, w;      /* input (N,C,H,W) */
    int oh, ow;          /* output (N,C,OH,OW) */
    int k, stride, pad;  /* window */
} pool_attr;
#define ATTR(n) CLT__ATTR(n, pool_attr)
/* The backward kernels' argument that changes per call (acc), by kernel. */
enum { ARG_GAP_BWD_ACC = 4, ARG_MAX2_BWD_ACC = 8, ARG_MAX_BWD_ACC = 11, ARG_AVG_BWD_ACC = 10 };

/* Max pooling 2x2, stride 2, no padding, at least 2 output columns: the vectorized kernels (max_pool2_*). */
static int fast2x2(const pool_attr *a)
{
    return a->kind == P_MAX && a->k == 2 && a->stride == 2 && a->pad == 0 && a->ow >= 2;
}
/* Their vector width (outputs per chunk): the largest of 8, 4, 2 that fits the output width OW. */
static int fast_width(int OW) { return OW >= 8 ? 8 : OW >= 4 ? 4 : 2; }

static int prepare(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    const pool_attr *a = ATTR(n);
    int kind = a->kind;
    cl_uint NC = (cl_uint)(a->n * a->c);
    cl_int H = a->h, W = a->w, OH = a->oh, OW = a->ow, K = a->k, S = a->stride, P = a->pad, acc = 0;
    cl_mem x = n->in[0]->mem, y = n->out->mem;
    if (kind == P_GAP) {
        cl_uint HW = (cl_uint)(H * W);
        CLT_TRY(clt__kernel(ctx, "pool", "", "gap_fwd", &n->k[0]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[0], CLT_ARG(x), CLT_ARG(y), CLT_ARG(NC), CLT_ARG(HW)));
        if (n->in[0]->grad) {
            CLT_TRY(clt__kernel(ctx, "pool", "", "gap_bwd", &n->k[1]));
            CLT_TRY(CLT_SET_ARGS(ctx, n->k[1], CLT_ARG(n->out->grad->mem), CLT_ARG(n->in[0]->grad->mem), CLT_ARG(NC),
                                 CLT_ARG(HW), CLT_ARG(acc)));
        }
    } else if (kind == P_MAX) {
        cl_mem arg = n->saved[0]->mem;
        if (!arg) /* the graph gives SAVED tensors memory in inference graphs too */
            return clt__err(ctx, CLT_ERR_STATE, "max_pool2d '%s': no memory for the argmax", n->out->name);
        if (fast2x2(a)) {
            char opt[16];
            snprintf(opt, sizeof opt, "-DPV=%d", fast_width(OW));
            CLT_TRY(clt__kernel(ctx, "pool", opt, "max_pool2_fwd", &n->k[0]));
            CLT_TRY(CLT_SET_ARGS(ctx, n->k[0], CLT_ARG(x), CLT_ARG(y), CLT_ARG(arg), CLT_ARG(NC), CLT_ARG(H),
                                 CLT_ARG(W), CLT_ARG(OH), CLT_ARG(OW)));
            if (n->in[0]->grad) {
                CLT_TRY(clt__kernel(ctx, "pool", opt, "max_pool2_bwd", &n->k[1]));
                CLT_TRY(CLT_SET_ARGS(ctx, n->k[1], CLT_ARG(n->out->grad->mem), CLT_ARG(arg),
                                     CLT_ARG(n->in[0]->grad->mem), CLT_ARG(NC), CLT_ARG(H), CLT_ARG(W), CLT_ARG(OH),
                                     CLT_ARG(OW), CLT_ARG(acc)));
            }
            return CLT_OK;
        }
        CLT_TRY(clt__kernel(ctx, "pool", "", "max_pool_fwd", &n->k[0]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[0], CLT_ARG(x), CLT_ARG(y), CLT_ARG(arg), CLT_ARG(NC), CLT_ARG(H), CLT_ARG(W),
                             CLT_ARG(OH), CLT_ARG(OW), CLT_ARG(K), CLT_ARG(S), CLT_ARG(P)));
        if (n->in[0]->grad) {
            CLT_TRY(clt__kernel(ctx, "pool", "", "max_pool_bwd", &n->k[1]));
            CLT_TRY(CLT_SET_ARGS(ctx, n->k[1], CLT_ARG(n->out->grad->mem), CLT_ARG(arg), CLT_ARG(n->in[0]->grad->mem),
                                 CLT_ARG(NC), CLT_ARG(H), CLT_ARG(W), CLT_ARG(OH), CLT_ARG(OW), CLT_ARG(K), CLT_ARG(S),
                                 CLT_ARG(P), CLT_ARG(acc)));
        }
    } else {
        CLT_TRY(clt__kernel(ctx, "pool", "", "avg_pool_fwd", &n->k[0]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[0], CLT_ARG(x), CLT_ARG(y), CLT_ARG(NC), CLT_ARG(H), CLT_ARG(W), CLT_ARG(OH),
                             CLT_ARG(OW), CLT_ARG(K), CLT_ARG(S), CLT_ARG(P)));
        if (n->in[0]->grad) {
            CLT_TRY(clt__kernel(ctx, "pool", "", "avg_pool_bwd", &n->k[1]));
            CLT_TRY(CLT_SET_ARGS(ctx, n->k[1], CLT_ARG(n->out->grad->mem), CLT_ARG(n->in[0]->grad->mem), CLT_ARG(NC),
                                 CLT_ARG(H), CLT_ARG(W), CLT_ARG(OH), CLT_ARG(OW), CLT_ARG(K), CLT_ARG(S), CLT_ARG(P),
                                 CLT_ARG(acc)));
        }
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    const pool_attr *a = ATTR(n);
    size_t NC = (size_t)a->n * a->c;
    size_t gs = a->kind == P_GAP ? NC : NC * (size_t)a->oh;
    return clt__launch(g->ctx, n->k[0], 1, &gs, NULL);
}

static int backward(clt_graph *g, clt__node *n)
{
    if (!n->need_dx[0]) return CLT_OK;
    const pool_attr *a = ATTR(n);
    cl_int acc = n->acc_dx[0];
    cl_uint argi = a->kind == P_GAP ? ARG_GAP_BWD_ACC : fast2x2(a) ? ARG_MAX2_BWD_ACC
                 : a->kind == P_MAX ? ARG_MAX_BWD_ACC : ARG_AVG_BWD_ACC;
    CLT_CL(g->ctx, clSetKernelArg(n->k[1], argi, sizeof acc, &acc));
    size_t NC = (size_t)a->n * a->c;
    /* The 2x2 fast path writes two input rows per output row. */
    size_t gs = a->kind == P_GAP ? NC : NC * (size_t)(fast2x2(a) ? a->oh : a->h);
    return clt__launch(g->ctx, n->k[1], 1, &gs, NULL);
}

static const clt__op op_max = {"max_pool2d", prepare, forward, backward, NULL};
static const clt__op op_avg = {"avg_pool2d", prepare, forward, backward, NULL};
static const clt__op op_gap = {"global_avg_pool", prepare, forward, backward, NULL};

static int add_pool(clt_graph *g, clt_tensor *x, int kind, int k, int stride, int pad, clt_tensor **out)
{
    const char *fn = fn_names[kind];
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "%s: out is NULL", fn) : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, fn));
    CLT_TRY(clt__check_tensor(g, x, fn, "input"));
    char b[64];
    if (x->ndim != 4)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: input '%s' %s must be (N,C,H,W)", fn, x->name,
                        clt__shape_str(x, b, sizeof b));
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], OH = 1, OW = 1;
    if (kind != P_GAP) {
        /* pad <= k/2 keeps every window partly inside the input (PyTorch has the same rule). */
        if (k <= 0 || stride <= 0 || pad < 0 || pad > k / 2)
            return clt__err(g->ctx, CLT_ERR_INVALID,
                            "%s: kernel %d, stride %d, padding %d (kernel and stride must be positive, padding "
                            "between 0 and kernel/2)", fn, k, stride, pad);
        /* The kernels count a window's K*K cells in int (avg pooling divides by it). */
        if ((long long)k * k > INT_MAX)
            return clt__err(g->ctx, CLT_ERR_INVALID, "%s: kernel %d: its %lld-cell window is more than the kernels "
                            "can count (2^31-1)", fn, k, (long long)k * k);
        /* 64-bit, and the padded extent small enough for the kernels' int window arithmetic. */
        long long span = (long long)(H > W ? H : W) + 2LL * pad;
        long long oh = clt__window_out(H, k, stride, pad), ow = clt__window_out(W, k, stride, pad);
        if (!oh || !ow || span > INT_MAX / 4)
            return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: kernel %d does not fit input '%s' %s with padding %d", fn,
                            k, x->name, clt__shape_str(x, b, sizeof b), pad);
        /* A stride past the padded input gives one window per axis whatever its value: clamp it, so that the
         * kernels' (i + pad + stride) cannot overflow. */
        if (stride > span) stride = (int)span;
        OH = (int)oh;
        OW = (int)ow;
    }
    const clt__op *op = kind == P_MAX ? &op_max : kind == P_AVG ? &op_avg : &op_gap;
    int shape[4] = {N, C, OH, OW};
    clt__node *n;
    CLT_TRY(clt__new_node(g, op, NULL, 1, &x, kind == P_GAP ? 2 : 4, shape, &n));
    *ATTR(n) = (pool_attr){kind, N, C, H, W, OH, OW, k, stride, pad};
    n->bwd_needs_in = 0; /* max pool keeps its argmax; the averages need no values at all */
    n->bwd_needs_out = 0;
    if (kind == P_MAX) {
        clt_tensor *t;
        size_t numel = n->out->numel; /* one int per output, or one uint per chunk of the 2x2 path */
        if (fast2x2(ATTR(n))) numel = (size_t)N * C * OH * (size_t)((OW + fast_width(OW) - 1) / fast_width(OW));
        CLT_TRY(clt__add_private(g, n, CLT__SAVED, "argmax", numel, &t));
    }
    *out = n->out;
    return CLT_OK;
}

int clt_max_pool2d(clt_graph *g, clt_tensor *x, int kernel, int stride, int pad, clt_tensor **out)
{
    return add_pool(g, x, P_MAX, kernel, stride, pad, out);
}
int clt_avg_pool2d(clt_graph *g, clt_tensor *x, int kernel, int stride, int pad, clt_tensor **out)
{
    return add_pool(g, x, P_AVG, kernel, stride, pad, out);
}
int clt_global_avg_pool(clt_graph *g, clt_tensor *x, clt_tensor **out)
{
    return add_pool(g, x, P_GAP, 1, 1, 0, out);
}

/* ------------------------------------------------------------------------------------------ model layers */

static const char *const layer_kw[] = {"maxpool", "avgpool", "global_avgpool"};

typedef struct pool_args {
    int kind; /* P_* */
    int k, stride, pad;
} pool_args;

static int pool_parse(clt__line *l, void *args)
{
    pool_args a = {0, 1, 1, 0};
    const char *kw = l->kw;
    while (strcmp(kw, layer_kw[a.kind]) != 0) a.kind++; /* the table found the keyword among ours */
    if (a.kind != P_GAP) {
        const char *s = clt__line_arg(l, 1);
        if (!s) return clt__line_fail(l, "%s: missing the window size (%s K)", kw, kw);
        if (!clt__parse_int(s, 1, 64, &a.k)) return clt__line_fail(l, "%s: bad window size '%s' (1..64)", kw, s);
        a.stride = a.k;
        if (clt__line_int(l, "stride", 1, 64, &a.stride) || clt__line_int(l, "pad", 0, 64, &a.pad))
            return CLT_ERR_INVALID;
        if (a.pad > a.k / 2) return clt__line_fail(l, "%s: pad %d is more than half the window %d", kw, a.pad, a.k);
    }
    memcpy(args, &a, sizeof a);
    return CLT_OK;
}

static void pool_print(const void *args, clt__sbuf *b)
{
    CLT__ARGS(pool_args, a, args);
    if (a.kind == P_GAP)
        clt__sb_printf(b, "global_avgpool\n");
    else
        clt__sb_printf(b, "%s %d stride=%d pad=%d\n", layer_kw[a.kind], a.k, a.stride, a.pad);
}

/* The op's rule (clt__window_out) on one image; global average pooling: (C,H,W) -> (C). */
static int pool_shape(const void *args, const clt__shape *in, int classes, clt__shape *out, clt__layer_cost *cost,
                      char *msg)
{
    (void)classes, (void)cost;
    CLT__ARGS(pool_args, a, args);
    char s[64];
    clt__shape_text(in, s, sizeof s);
    if (in->flat)
        return clt__layer_shape_fail(msg, "%s needs an image (C,H,W) input, got a vector %s", layer_kw[a.kind], s);
    if (a.kind == P_GAP) {
        *out = (clt__shape){1, in->c, 1, 1};
        return CLT_OK;
    }
    long long oh = clt__window_out(in->h, a.k, a.stride, a.pad), ow = clt__window_out(in->w, a.k, a.stride, a.pad);
    if (!oh || !ow)
        return clt__layer_shape_fail(msg, "%s window %dx%d (pad %d) does not fit the input %s", layer_kw[a.kind], a.k,
                                     a.k, a.pad, s);
    *out = (clt__shape){0, in->c, (int)oh, (int)ow};
    return CLT_OK;
}

static int pool_build(clt_graph *g, const void *args, const char *name, const clt__shape *in, const clt__shape *out,
                      clt_tensor *x, clt_tensor **y)
{
    (void)name, (void)in, (void)out;
    CLT__ARGS(pool_args, a, args);
    return add_pool(g, x, a.kind, a.k, a.stride, a.pad, y);
}

static const clt__layer_type layers[] = {
    {"maxpool", "maxpool K [stride=K] [pad=0]", "stride, pad", NULL, pool_parse, pool_print, pool_shape, pool_build},
    {"avgpool", "avgpool K [stride=K] [pad=0]", "stride, pad", NULL, pool_parse, pool_print, pool_shape, pool_build},
    {"global_avgpool", "global_avgpool", NULL, NULL, pool_parse, pool_print, pool_shape, pool_build},
};
const clt__op_def clt__opdef_pool = {"pool", layers, 3};
