/* conv2d.c - 2-D convolution (NCHW): im2col + one batch-wide GEMM forward and backward (cl/conv2d.cl). */
#include <stdio.h>

#include "internal.h"

/* iattr: 0..12 the clt__conv_geom fields in order (n c h w co kh kw sh sw ph pw oh ow), 13 has bias,
 * 14 algorithm, 15 split-k chunks S of the weight-gradient GEMM (0: no split). Private tensors: saved[0]
 * cols (K, N*OH*OW); fscratch[0] y' (Cout, N*OH*OW) and bscratch[0] dy' when N > 1 (for N = 1 the
 * (Cout, OH*OW) layout already is NCHW); then, with a split, the partial weight gradients (S + 1, Cout, K);
 * the last bscratch is dcols (K, N*OH*OW). */
enum { K_IM2COL, K_TO_NCHW, K_TO_COLS, K_BIAS_GRAD, K_COL2IM, K_SUM_PARTS };

static cl_mem dcols_of(const clt__node *n) { return n->bscratch[n->nbscratch - 1]->mem; }
static cl_mem parts_of(const clt__node *n) { return n->bscratch[n->iattr[0] > 1 ? 1 : 0]->mem; }

/* The weight gradient is a GEMM with a long inner dimension (N*OH*OW) and a small (Cout, K) result: one
 * such GEMM leaves most of a device idle (CLBlast on POCL: 7x slower than the split), so it runs as a
 * batch of S shorter GEMMs into partial results that one kernel sums. Returns S, or 0 for no split. */
static int split_k_chunks(size_t co, size_t k, size_t np)
{
    size_t big = co > k ? co : k;
    if (np < 8192 || np < 16 * big) return 0;
    size_t s = np / 4096;
    return (int)(s > 16 ? 16 : s);
}

static clt__conv_geom geom_of(const clt__node *n)
{
    const int *a = n->iattr;
    return (clt__conv_geom){a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12]};
}

/* The hook for an autotuner: only im2col exists today. A new algorithm adds its enum value, its own
 * private tensors in clt_conv2d and its branches in prepare/forward/backward. */
int clt__conv2d_algo(clt_context *ctx, const clt__conv_geom *geom)
{
    (void)ctx;
    (void)geom;
    return CLT__CONV_IM2COL;
}

/* The geometry arguments shared by im2col and col2im, starting at argument 2. */
static int set_geom_args(clt_context *ctx, cl_kernel k, const clt__conv_geom *s)
{
    cl_uint v[10] = {(cl_uint)s->n, (cl_uint)s->c, (cl_uint)s->h, (cl_uint)s->w, (cl_uint)s->oh,
                     (cl_uint)s->ow, (cl_uint)s->kh, (cl_uint)s->kw, (cl_uint)s->sh, (cl_uint)s->sw};
    for (cl_uint i = 0; i < 10; i++) CLT_CL(ctx, clSetKernelArg(k, 2 + i, sizeof(cl_uint), &v[i]));
    cl_int ph = s->ph, pw = s->pw;
    CLT_CL(ctx, clSetKernelArg(k, 12, sizeof ph, &ph));
    CLT_CL(ctx, clSetKernelArg(k, 13, sizeof pw, &pw));
    return CLT_OK;
}

static int prepare(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    clt__conv_geom s = geom_of(n);
    cl_uint N = (cl_uint)s.n, CO = (cl_uint)s.co, P = (cl_uint)(s.oh * s.ow);
    int has_bias = n->iattr[13];
    cl_mem bias = has_bias ? n->param[1]->mem : n->param[0]->mem; /* any valid buffer when unused */

    if (!n->saved[0]->mem) /* the graph gives SAVED tensors memory in inference graphs too */
        return clt__err(ctx, CLT_ERR_STATE, "conv2d '%s': no memory for the im2col columns", n->out->name);
    CLT_TRY(clt__kernel(ctx, "conv2d", "", "im2col", &n->k[K_IM2COL]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_IM2COL], CLT_ARG(n->in[0]->mem), CLT_ARG(n->saved[0]->mem)));
    CLT_TRY(set_geom_args(ctx, n->k[K_IM2COL], &s));
    if (N > 1) {
        CLT_TRY(clt__kernel(ctx, "conv2d", "", "cols_to_nchw", &n->k[K_TO_NCHW]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_TO_NCHW], CLT_ARG(n->fscratch[0]->mem), CLT_ARG(n->out->mem), CLT_ARG(bias),
                             CLT_ARG(has_bias), CLT_ARG(N), CLT_ARG(CO), CLT_ARG(P)));
    } else if (has_bias) {
        CLT_TRY(clt__kernel(ctx, "conv2d", "", "bias_planes", &n->k[K_TO_NCHW]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_TO_NCHW], CLT_ARG(n->out->mem), CLT_ARG(bias), CLT_ARG(CO), CLT_ARG(P)));
    }
    if (!n->out->grad) return CLT_OK; /* inference, or nothing upstream needs a gradient */
    cl_mem dy = n->out->grad->mem;
    if (N > 1) {
        CLT_TRY(clt__kernel(ctx, "conv2d", "", "nchw_to_cols", &n->k[K_TO_COLS]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_TO_COLS], CLT_ARG(dy), CLT_ARG(n->bscratch[0]->mem), CLT_ARG(N), CLT_ARG(CO),
                             CLT_ARG(P)));
    }
    if (has_bias && n->param[1]->grad) {
        CLT_TRY(clt__kernel(ctx, "conv2d", "", "bias_grad", &n->k[K_BIAS_GRAD]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_BIAS_GRAD], CLT_ARG(dy), CLT_ARG(n->param[1]->grad->mem), CLT_ARG(N),
                             CLT_ARG(CO), CLT_ARG(P)));
    }
    if (n->in[0]->grad) {
        cl_mem dcols_mem = dcols_of(n);
        CLT_TRY(clt__kernel(ctx, "conv2d", "", "col2im", &n->k[K_COL2IM]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_COL2IM], CLT_ARG(dcols_mem), CLT_ARG(n->in[0]->grad->mem)));
        CLT_TRY(set_geom_args(ctx, n->k[K_COL2IM], &s));
        cl_int acc = 0;
        CLT_CL(ctx, clSetKernelArg(n->k[K_COL2IM], 14, sizeof acc, &acc));
    }
    int S = n->iattr[15];
    if (S) {
        size_t np = (size_t)N * P;
        cl_uint nparts = (cl_uint)(S + (np % (size_t)S != 0)), len = (cl_uint)(s.co * s.c * s.kh * s.kw);
        cl_mem parts = parts_of(n);
        CLT_TRY(clt__kernel(ctx, "conv2d", "", "sum_parts", &n->k[K_SUM_PARTS]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_SUM_PARTS], CLT_ARG(parts), CLT_ARG(n->param[0]->grad->mem), CLT_ARG(nparts),
                             CLT_ARG(len)));
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    clt_context *ctx = g->ctx;
    clt__conv_geom s = geom_of(n);
    size_t N = (size_t)s.n, CO = (size_t)s.co, K = (size_t)s.c * s.kh * s.kw, NP = N * s.oh * s.ow;
    size_t gi[2] = {N * s.oh, K};
    CLT_TRY(clt__launch(ctx, n->k[K_IM2COL], 2, gi, NULL));
    /* y' (Cout, N*OH*OW) = W (Cout, K) x cols (K, N*OH*OW); for N = 1 that is y itself */
    clt__gemm_args a = {.m = CO, .n = NP, .k = K, .alpha = 1, .beta = 0, .a = n->param[0]->mem, .lda = K,
                        .b = n->saved[0]->mem, .ldb = NP, .c = N > 1 ? n->fscratch[0]->mem : n->out->mem,
                        .ldc = NP, .batch = 1};
    CLT_TRY(clt__gemm(ctx, &a));
    if (n->k[K_TO_NCHW]) {
        size_t gp = N > 1 ? N * CO : CO;
        CLT_TRY(clt__launch(ctx, n->k[K_TO_NCHW], 1, &gp, NULL));
    }
    return CLT_OK;
}

static int backward(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    clt__conv_geom s = geom_of(n);
    size_t N = (size_t)s.n, CO = (size_t)s.co, K = (size_t)s.c * s.kh * s.kw, NP = N * s.oh * s.ow;
    cl_mem dyp = n->out->grad->mem; /* dy' (Cout, N*OH*OW) */
    if (N > 1) {
        size_t gp = N * CO;
        CLT_TRY(clt__launch(ctx, n->k[K_TO_COLS], 1, &gp, NULL));
        dyp = n->bscratch[0]->mem;
    }
    /* dW (Cout, K) = dy' (Cout, NP) x cols^T (NP, K) */
    clt__gemm_args w = {.trans_b = 1, .m = CO, .n = K, .k = NP, .alpha = 1, .beta = 0, .a = dyp, .lda = NP,
                        .b = n->saved[0]->mem, .ldb = NP, .c = n->param[0]->grad->mem, .ldc = K, .batch = 1};
    size_t S = (size_t)n->iattr[15];
    if (S) {
        /* part j (Cout, K) = dy'[:, j*L .. (j+1)*L) x cols[:, same]^T; the remainder goes to part S */
        size_t L = NP / S, rest = NP - S * L;
        w.c = parts_of(n);
        w.k = L;
        w.stride_a = w.stride_b = L;
        w.stride_c = CO * K;
        w.batch = S;
        CLT_TRY(clt__gemm(ctx, &w));
        if (rest) {
            w.k = rest;
            w.off_a = w.off_b = S * L;
            w.off_c = S * CO * K;
            w.batch = 1;
            CLT_TRY(clt__gemm(ctx, &w));
        }
        size_t gl = CO * K;
        CLT_TRY(clt__launch(ctx, n->k[K_SUM_PARTS], 1, &gl, NULL));
    } else {
        CLT_TRY(clt__gemm(ctx, &w));
    }
    if (n->k[K_BIAS_GRAD]) {
        size_t gc = CO;
        CLT_TRY(clt__launch(ctx, n->k[K_BIAS_GRAD], 1, &gc, NULL));
    }
    if (n->need_dx[0]) {
        /* dcols (K, NP) = W^T (K, Cout) x dy' (Cout, NP), then gathered back onto dx */
        clt__gemm_args d = {.trans_a = 1, .m = K, .n = NP, .k = CO, .alpha = 1, .beta = 0, .a = n->param[0]->mem,
                            .lda = K, .b = dyp, .ldb = NP, .c = dcols_of(n), .ldc = NP, .batch = 1};
        CLT_TRY(clt__gemm(ctx, &d));
        cl_int acc = n->acc_dx[0];
        CLT_CL(ctx, clSetKernelArg(n->k[K_COL2IM], 14, sizeof acc, &acc));
        size_t gx[2] = {N * (size_t)s.c, (size_t)s.h};
        CLT_TRY(clt__launch(ctx, n->k[K_COL2IM], 2, gx, NULL));
    }
    return CLT_OK;
}

static const clt__op op_conv2d = {"conv2d", prepare, forward, backward, NULL};

void clt_conv2d_default_params(clt_conv2d_params *p, int out_channels, int k)
{
    if (!p) return;
    *p = (clt_conv2d_params){.out_channels = out_channels, .kernel_h = k, .kernel_w = k, .stride_h = 1,
                             .stride_w = 1, .pad_h = 0, .pad_w = 0, .bias = 1, .init = CLT_INIT_DEFAULT};
}

int clt_conv2d(clt_graph *g, clt_tensor *x, const clt_conv2d_params *p, const char *name, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_conv2d: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_conv2d"));
    CLT_TRY(clt__check_tensor(g, x, "clt_conv2d", "input"));
    if (!p) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_conv2d: params is NULL (see clt_conv2d_default_params)");
    if (p->out_channels <= 0 || p->kernel_h <= 0 || p->kernel_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
        p->pad_h < 0 || p->pad_w < 0)
        return clt__err(g->ctx, CLT_ERR_INVALID,
                        "clt_conv2d: out_channels %d, kernel %dx%d, stride %dx%d, padding %dx%d (channels, kernel and "
                        "stride must be positive, padding not negative)", p->out_channels, p->kernel_h, p->kernel_w,
                        p->stride_h, p->stride_w, p->pad_h, p->pad_w);
    if (p->init < CLT_INIT_DEFAULT || p->init > CLT_INIT_ZEROS)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_conv2d: unknown init %d", p->init);
    char b[64];
    if (x->ndim != 4)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_conv2d: input '%s' %s must be (N,C,H,W)", x->name,
                        clt__shape_str(x, b, sizeof b));
    clt__conv_geom s = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], p->out_channels, p->kernel_h,
                        p->kernel_w, p->stride_h, p->stride_w, p->pad_h, p->pad_w, 0, 0};
    if (s.kh > s.h + 2 * s.ph || s.kw > s.w + 2 * s.pw)
        return clt__err(g->ctx, CLT_ERR_SHAPE,
                        "clt_conv2d: kernel %dx%d is larger than input '%s' %s with padding %dx%d", s.kh, s.kw,
                        x->name, clt__shape_str(x, b, sizeof b), s.ph, s.pw);
    s.oh = (s.h + 2 * s.ph - s.kh) / s.sh + 1;
    s.ow = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
    size_t K = (size_t)s.c * s.kh * s.kw, NP = (size_t)s.n * s.oh * s.ow;
    if (K > (size_t)INT32_MAX / NP || (size_t)s.co * NP > (size_t)INT32_MAX)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_conv2d: input '%s' %s with a %dx%d kernel needs %zu x %zu "
                        "im2col columns, too many; use a smaller batch", x->name, clt__shape_str(x, b, sizeof b),
                        s.kh, s.kw, K, NP);
    int algo = clt__conv2d_algo(g->ctx, &s);
    if (algo != CLT__CONV_IM2COL) return clt__err(g->ctx, CLT_ERR_UNSUPPORTED, "clt_conv2d: algorithm %d", algo);

    int shape[4] = {s.n, s.co, s.oh, s.ow};
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_conv2d, name, 1, &x, 4, shape, &n));
    int vals[13] = {s.n, s.c, s.h, s.w, s.co, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.oh, s.ow};
    for (int i = 0; i < 13; i++) n->iattr[i] = vals[i];
    n->iattr[13] = p->bias != 0;
    n->iattr[14] = algo;
    n->iattr[15] = split_k_chunks((size_t)s.co, K, NP);
    /* The saved columns hold everything the weight gradient needs from x. */
    n->bwd_needs_in = 0;
    n->bwd_needs_out = 0;
    int wshape[4] = {s.co, s.c, s.kh, s.kw}, bshape[1] = {s.co};
    int fan_in = (int)K, fan_out = s.co * s.kh * s.kw;
    clt_tensor *t;
    CLT_TRY(clt__add_param(g, n, "weight", 4, wshape, p->init, fan_in, fan_out, 0.0f, &t));
    if (p->bias) CLT_TRY(clt__add_param(g, n, "bias", 1, bshape, CLT_INIT_ZEROS, fan_in, fan_out, 0.0f, &t));
    CLT_TRY(clt__add_private(g, n, CLT__SAVED, "cols", K * NP, &t));
    if (s.n > 1) {
        CLT_TRY(clt__add_private(g, n, CLT__FSCRATCH, "ycols", (size_t)s.co * NP, &t));
        CLT_TRY(clt__add_private(g, n, CLT__BSCRATCH, "dycols", (size_t)s.co * NP, &t));
    }
    if (n->iattr[15])
        CLT_TRY(clt__add_private(g, n, CLT__BSCRATCH, "dwparts", (size_t)(n->iattr[15] + 1) * s.co * K, &t));
    CLT_TRY(clt__add_private(g, n, CLT__BSCRATCH, "dcols", K * NP, &t));
    *out = n->out;
    return CLT_OK;
}
