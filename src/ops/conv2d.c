/* conv2d.c - 2-D convolution (NCHW): im2col + one batch-wide GEMM, or direct kernels for stride 1, chosen
 * per layer from measurements (cl/conv2d.cl). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "tune.h"

/* Attributes: conv_attr below; the direct algorithm's plan is in conv_priv.
 *
 * Private tensors are slots shared by the algorithms: saved[0], fscratch[0], bscratch[0..3], each as large as
 * the largest use among the algorithms the layer may run (one, or both while the choice is measured). Only
 * one algorithm runs a pass, so sharing is sound, and a decided layer pays for its own algorithm only.
 *   im2col: saved cols (K, N*OH*OW); fscratch y' (Cout, N*OH*OW) and bscratch[0] dy' when N > 1 (for N = 1
 *           the (Cout, OH*OW) layout already is NCHW); bscratch[1] the split-k partial weight gradients
 *           (S + 1, Cout, K), then dcols (K, N*OH*OW).
 *   direct: saved xp, the zero-padded input (N*C, HP, WP) + slack; fscratch the packed weights; bscratch[0]
 *           the packed flipped weights, [2] dy in rows of WP for the weight gradient, then the padded dy for
 *           the data gradient, [3] partial weight gradients when the images are split.
 * "Then": the backward finishes with the first use before the second starts (one in-order queue), so both
 * share one slot. That matters because everything a backward reads lives through the whole backward phase
 * (repeated backward passes, see graph.c): the peak is those values plus one layer's backward scratch. */
enum {
    K_IM2COL, K_TO_NCHW, K_TO_COLS, K_BIAS_GRAD, K_COL2IM, K_SUM_PARTS, /* im2col */
    K_D_PADX, K_D_PACKW, K_D_FWD, K_D_PADDYX, K_D_DW, K_D_SUMPARTS, K_D_PADDY, K_D_PACKWT, K_D_BWDX /* direct */
};
enum { NB = 4 }; /* bscratch slots */

/* Block sizes and buffer layout of the direct algorithm for one layer (see cl/conv2d.cl). */
typedef struct direct_plan {
    int vw, cob, rb, dcob, dvw;
    size_t hp, wp, ps, slack;   /* xp: (N*C, HP, WP) planes PS floats apart, then slack */
    size_t hq, wq, qs, qslack;  /* dy padded by (KH-1-PH, KW-1-PW): (N*Cout, HQ, WQ) */
    size_t dps;                 /* dy in rows of WP: plane stride, a multiple of VW */
    int nparts, nper;           /* weight gradient split over images */
    size_t n_xp, n_wt, n_wt2, n_dyp, n_dyx, n_parts; /* floats */
} direct_plan;

typedef struct conv_attr {
    clt__conv_geom geom;
    int bias;  /* a learned bias (param[1]) */
    int algo;  /* enum clt__conv_algo: CLT__CONV_MEASURE until prepare decides */
    int split; /* split-k chunks S of the im2col weight-gradient GEMM (0: no split) */
} conv_attr;
#define ATTR(n) CLT__ATTR(n, conv_attr)

typedef struct conv_priv {
    direct_plan d;
    int can_direct;
} conv_priv;

static cl_mem dcols_of(const clt__node *n) { return n->bscratch[1]->mem; }
static cl_mem parts_of(const clt__node *n) { return n->bscratch[1]->mem; }
static size_t cdiv(size_t a, size_t b) { return (a + b - 1) / b; }

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

static clt__conv_geom geom_of(const clt__node *n) { return CLT__ATTR(n, const conv_attr)->geom; }

int clt__conv2d_node_algo(const clt__node *n) { return CLT__ATTR(n, const conv_attr)->algo; }

int clt__conv2d_node_split(const clt__node *n)
{
    const conv_attr *a = CLT__ATTR(n, const conv_attr);
    if (a->algo == CLT__CONV_DIRECT) return ((const conv_priv *)n->priv)->d.nparts;
    return a->split;
}

/* Direct kernels: stride 1, padding smaller than the kernel (the data gradient pads dy by KH-1-PH), kernels
 * up to 7x7 (fully unrolled taps), and every buffer addressable as one private tensor. */
static int plan_direct(const clt__conv_geom *s, direct_plan *d)
{
    memset(d, 0, sizeof *d);
    if (s->sh != 1 || s->sw != 1 || s->ph >= s->kh || s->pw >= s->kw || s->kh > 7 || s->kw > 7) return 0;
    size_t N = (size_t)s->n, C = (size_t)s->c, CO = (size_t)s->co, KK = (size_t)s->kh * s->kw;
    d->vw = s->ow <= 8 ? 8 : 16;
    d->cob = 8;
    d->rb = 2;
    d->dcob = s->kw <= 3 ? 8 : s->kw <= 5 ? 4 : 2; /* DCOB x KW vector sums in registers */
    d->dvw = 16;
    d->hp = (size_t)s->h + 2 * (size_t)s->ph, d->wp = (size_t)s->w + 2 * (size_t)s->pw;
    d->ps = d->hp * d->wp;
    d->slack = (size_t)d->rb * d->wp + 2 * (size_t)(d->vw + d->dvw) + (size_t)s->kw;
    d->hq = (size_t)s->oh + 2 * (size_t)(s->kh - 1 - s->ph), d->wq = (size_t)s->ow + 2 * (size_t)(s->kw - 1 - s->pw);
    d->qs = d->hq * d->wq;
    d->qslack = (size_t)d->rb * d->wq + 2 * (size_t)d->vw + (size_t)s->kw;
    d->dps = cdiv((size_t)s->oh * d->wp, (size_t)d->dvw) * (size_t)d->dvw;
    /* The weight gradient runs over the images in parts of NPER, each part one pass of all (co, c, kh)
     * work-items over the same images: size a part so that its dy (NPER*Cout*DPS floats, read once per
     * (c, kh)) stays in a core's L2, then sum the parts. */
    size_t per = (size_t)(256 << 10) / (CO * d->dps * sizeof(float));
    if (per < 1) per = 1;
    if (per > N) per = N;
    d->nper = (int)per;
    d->nparts = (int)cdiv(N, per);
    d->n_xp = N * C * d->ps + d->slack;
    d->n_wt = cdiv(CO, (size_t)d->cob) * (size_t)d->cob * C * KK;
    d->n_wt2 = cdiv(C, (size_t)d->cob) * (size_t)d->cob * CO * KK;
    d->n_dyp = N * CO * d->qs + d->qslack;
    d->n_dyx = N * CO * d->dps;
    d->n_parts = d->nparts > 1 ? (size_t)d->nparts * CO * C * KK : 0;
    size_t lim = (size_t)INT32_MAX;
    return d->n_xp < lim && d->n_wt < lim && d->n_wt2 < lim && d->n_dyp < lim && d->n_dyx < lim && d->n_parts < lim;
}

/* ---------------------------------------------------------------------------------- algorithm choice */

static const char *pass_names[3] = {"fwd", "fwd+bwd", "fwd+bwd+dx"};

static void key_shape(const clt__conv_geom *s, const char *pass, char *buf, size_t len)
{
    snprintf(buf, len, "n=%d,c=%d,h=%d,w=%d,co=%d,kh=%d,kw=%d,sh=%d,sw=%d,ph=%d,pw=%d,pass=%s", s->n, s->c, s->h,
             s->w, s->co, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw, pass);
}

/* Cached decision for (geometry, pass): algorithm, or -1 when none. */
static int cached_algo(clt_context *ctx, const clt__conv_geom *s, const char *pass)
{
    char shape[200], v[160];
    key_shape(s, pass, shape, sizeof shape);
    clt__tune_key key = {"conv2d_algo", "conv2d", "", shape};
    if (clt__tune_get(ctx, &key, v, sizeof v) != 1) return -1;
    /* Only values as measure() writes them. Callers ask only for layers that can run both algorithms, and both
     * are exact programs, so a valid choice cannot make results wrong (only slower). */
    int end = v[11] == 0 || v[11] == ' ';
    if (strncmp(v, "algo=direct", 11) == 0 && end) return CLT__CONV_DIRECT;
    if (strncmp(v, "algo=im2col", 11) == 0 && end) return CLT__CONV_IM2COL;
    clt__tune_invalid(ctx, &key, "neither 'algo=direct ...' nor 'algo=im2col ...'");
    return -1;
}

/* Without a measurement: direct kernels on CPU devices (several times faster than im2col + GEMM there),
 * im2col + GEMM elsewhere. */
static int default_algo(clt_context *ctx, int can_direct)
{
    return can_direct && ctx->info.is_cpu ? CLT__CONV_DIRECT : CLT__CONV_IM2COL;
}

int clt__conv2d_algo(clt_context *ctx, const clt__conv_geom *geom)
{
    direct_plan d;
    int can_direct = plan_direct(geom, &d);
    const char *e = getenv("CLTRAIN_CONV_ALGO");
    if (e && *e && strcmp(e, "auto") != 0) {
        if (strcmp(e, "im2col") == 0) return CLT__CONV_IM2COL;
        if (strcmp(e, "direct") == 0) return can_direct ? CLT__CONV_DIRECT : CLT__CONV_IM2COL;
        return clt__err(ctx, CLT_ERR_INVALID, "environment variable CLTRAIN_CONV_ALGO=%.200s: unknown value (expected "
                        "auto, im2col or direct, or unset)", e);
    }
    if (!can_direct) return CLT__CONV_IM2COL;
    /* The pass (inference, training with or without dx) is known only at compile: if the cached decisions
     * of the passes this layer may run agree, take that one; if they differ, reserve both and let prepare
     * pick the entry of the real pass. */
    int agreed = -1;
    for (int i = 0; i < 3; i++) {
        int a = cached_algo(ctx, geom, pass_names[i]);
        if (a < 0) continue;
        if (agreed < 0) agreed = a;
        else if (agreed != a) return CLT__CONV_MEASURE;
    }
    if (agreed >= 0) return agreed;
    return clt__tune_may_measure(ctx) ? CLT__CONV_MEASURE : default_algo(ctx, can_direct);
}

/* ------------------------------------------------------------------------------------------ im2col */

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

static int prepare_im2col(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    clt__conv_geom s = geom_of(n);
    cl_uint N = (cl_uint)s.n, CO = (cl_uint)s.co, P = (cl_uint)(s.oh * s.ow);
    int has_bias = ATTR(n)->bias;
    cl_mem bias = has_bias ? n->param[1]->mem : n->param[0]->mem; /* any valid buffer when unused */

    /* Decide (and tune) the layer's GEMMs and size their workspaces now, not in the first step. */
    size_t K = (size_t)s.c * s.kh * s.kw, NP = (size_t)N * P;
    CLT_TRY(clt__gemm_prepare(ctx, &(clt__gemm_args){.m = CO, .n = NP, .k = K, .batch = 1}));
    if (n->out->grad) {
        size_t S = (size_t)ATTR(n)->split;
        if (S) {
            size_t L = NP / S, rest = NP - S * L;
            CLT_TRY(clt__gemm_prepare(ctx, &(clt__gemm_args){.trans_b = 1, .m = CO, .n = K, .k = L, .batch = S}));
            if (rest)
                CLT_TRY(clt__gemm_prepare(ctx, &(clt__gemm_args){.trans_b = 1, .m = CO, .n = K, .k = rest, .batch = 1}));
        } else {
            CLT_TRY(clt__gemm_prepare(ctx, &(clt__gemm_args){.trans_b = 1, .m = CO, .n = K, .k = NP, .batch = 1}));
        }
        if (n->in[0]->grad)
            CLT_TRY(clt__gemm_prepare(ctx, &(clt__gemm_args){.trans_a = 1, .m = K, .n = NP, .k = CO, .batch = 1}));
    }
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
    if (n->in[0]->grad) {
        cl_mem dcols_mem = dcols_of(n);
        CLT_TRY(clt__kernel(ctx, "conv2d", "", "col2im", &n->k[K_COL2IM]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_COL2IM], CLT_ARG(dcols_mem), CLT_ARG(n->in[0]->grad->mem)));
        CLT_TRY(set_geom_args(ctx, n->k[K_COL2IM], &s));
        cl_int acc = 0;
        CLT_CL(ctx, clSetKernelArg(n->k[K_COL2IM], 14, sizeof acc, &acc));
    }
    int S = ATTR(n)->split;
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

static int forward_im2col(clt_graph *g, clt__node *n)
{
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

static int backward_im2col(clt_graph *g, clt__node *n)
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
    size_t S = (size_t)ATTR(n)->split;
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

/* ------------------------------------------------------------------------------------------ direct */

/* pad_planes arguments: src (P, SRH, SRW) into dst (P, DH, DW) planes DPS apart at (top, left). */
static int set_pad_args(clt_context *ctx, cl_kernel k, cl_mem src, cl_mem dst, size_t P, size_t srh, size_t srw,
                        size_t dh, size_t dw, size_t dps, size_t top, size_t left, size_t slack)
{
    cl_uint v[9] = {(cl_uint)P, (cl_uint)srh, (cl_uint)srw, (cl_uint)dh, (cl_uint)dw, (cl_uint)dps,
                    (cl_uint)top, (cl_uint)left, (cl_uint)slack};
    CLT_TRY(CLT_SET_ARGS(ctx, k, CLT_ARG(src), CLT_ARG(dst)));
    for (cl_uint i = 0; i < 9; i++) CLT_CL(ctx, clSetKernelArg(k, 2 + i, sizeof(cl_uint), &v[i]));
    return CLT_OK;
}

/* direct_fwd arguments: conv of planes xp (N*CI, ., WP) PS apart with packed weights into y (N,CO,OH,OW). */
static int set_fwd_args(clt_context *ctx, cl_kernel k, cl_mem xp, cl_mem wt, cl_mem b, cl_mem y, size_t ci,
                        size_t co, size_t ps, size_t wp, size_t oh, size_t ow, int has_bias)
{
    cl_uint CI = (cl_uint)ci, CO = (cl_uint)co, PS = (cl_uint)ps, WP = (cl_uint)wp, OH = (cl_uint)oh,
            OW = (cl_uint)ow;
    cl_int hb = has_bias, acc = 0;
    return CLT_SET_ARGS(ctx, k, CLT_ARG(xp), CLT_ARG(wt), CLT_ARG(b), CLT_ARG(y), CLT_ARG(CI), CLT_ARG(CO),
                        CLT_ARG(PS), CLT_ARG(WP), CLT_ARG(OH), CLT_ARG(OW), CLT_ARG(hb), CLT_ARG(acc));
}

static int prepare_direct(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    clt__conv_geom s = geom_of(n);
    const direct_plan *d = &((conv_priv *)n->priv)->d;
    char opt[160];
    snprintf(opt, sizeof opt, "-DCONV_KH=%d -DCONV_KW=%d -DCOB=%d -DRB=%d -DVW=%d -DDCOB=%d -DDVW=%d", s.kh, s.kw,
             d->cob, d->rb, d->vw, d->dcob, d->dvw);
    size_t N = (size_t)s.n, C = (size_t)s.c, CO = (size_t)s.co, KK = (size_t)s.kh * s.kw;
    int has_bias = ATTR(n)->bias;
    cl_mem w = n->param[0]->mem, bias = has_bias ? n->param[1]->mem : w;
    cl_mem xp = n->saved[0]->mem, wt = n->fscratch[0]->mem;
    CLT_TRY(clt__kernel(ctx, "conv2d", opt, "pad_planes", &n->k[K_D_PADX]));
    CLT_TRY(set_pad_args(ctx, n->k[K_D_PADX], n->in[0]->mem, xp, N * C, (size_t)s.h, (size_t)s.w, d->hp, d->wp, d->ps,
                         (size_t)s.ph, (size_t)s.pw, d->slack));
    cl_uint A = (cl_uint)CO, B = (cl_uint)C, KKu = (cl_uint)KK;
    cl_int flip = 0;
    CLT_TRY(clt__kernel(ctx, "conv2d", opt, "pack_weights", &n->k[K_D_PACKW]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_D_PACKW], CLT_ARG(w), CLT_ARG(wt), CLT_ARG(A), CLT_ARG(B), CLT_ARG(KKu),
                         CLT_ARG(flip)));
    CLT_TRY(clt__kernel(ctx, "conv2d", opt, "direct_fwd", &n->k[K_D_FWD]));
    CLT_TRY(set_fwd_args(ctx, n->k[K_D_FWD], xp, wt, bias, n->out->mem, C, CO, d->ps, d->wp, (size_t)s.oh,
                         (size_t)s.ow, has_bias));
    if (!n->out->grad) return CLT_OK;
    cl_mem dy = n->out->grad->mem;
    cl_mem dyx = n->bscratch[2]->mem, dw = n->param[0]->grad->mem;
    CLT_TRY(clt__kernel(ctx, "conv2d", opt, "pad_planes", &n->k[K_D_PADDYX]));
    CLT_TRY(set_pad_args(ctx, n->k[K_D_PADDYX], dy, dyx, N * CO, (size_t)s.oh, (size_t)s.ow, (size_t)s.oh, d->wp,
                         d->dps, 0, 0, 0));
    cl_uint Nu = (cl_uint)N, Cu = (cl_uint)C, COu = (cl_uint)CO, PS = (cl_uint)d->ps, WP = (cl_uint)d->wp,
            DPS = (cl_uint)d->dps, NPER = (cl_uint)d->nper;
    cl_mem dwout = d->nparts > 1 ? n->bscratch[3]->mem : dw;
    CLT_TRY(clt__kernel(ctx, "conv2d", opt, "direct_dw", &n->k[K_D_DW]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_D_DW], CLT_ARG(xp), CLT_ARG(dyx), CLT_ARG(dwout), CLT_ARG(Nu), CLT_ARG(Cu),
                         CLT_ARG(COu), CLT_ARG(PS), CLT_ARG(WP), CLT_ARG(DPS), CLT_ARG(NPER)));
    if (d->nparts > 1) {
        cl_uint np = (cl_uint)d->nparts, len = (cl_uint)(CO * C * KK);
        CLT_TRY(clt__kernel(ctx, "conv2d", "", "sum_parts", &n->k[K_D_SUMPARTS]));
        CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_D_SUMPARTS], CLT_ARG(dwout), CLT_ARG(dw), CLT_ARG(np), CLT_ARG(len)));
    }
    if (!n->in[0]->grad) return CLT_OK;
    cl_mem wt2 = n->bscratch[0]->mem, dyp = n->bscratch[2]->mem; /* dyx is dead by then */
    CLT_TRY(clt__kernel(ctx, "conv2d", opt, "pad_planes", &n->k[K_D_PADDY]));
    CLT_TRY(set_pad_args(ctx, n->k[K_D_PADDY], dy, dyp, N * CO, (size_t)s.oh, (size_t)s.ow, d->hq, d->wq, d->qs,
                         (size_t)(s.kh - 1 - s.ph), (size_t)(s.kw - 1 - s.pw), d->qslack));
    A = (cl_uint)C, B = (cl_uint)CO, flip = 1;
    CLT_TRY(clt__kernel(ctx, "conv2d", opt, "pack_weights", &n->k[K_D_PACKWT]));
    CLT_TRY(CLT_SET_ARGS(ctx, n->k[K_D_PACKWT], CLT_ARG(w), CLT_ARG(wt2), CLT_ARG(A), CLT_ARG(B), CLT_ARG(KKu),
                         CLT_ARG(flip)));
    CLT_TRY(clt__kernel(ctx, "conv2d", opt, "direct_fwd", &n->k[K_D_BWDX]));
    CLT_TRY(set_fwd_args(ctx, n->k[K_D_BWDX], dyp, wt2, w, n->in[0]->grad->mem, CO, C, d->qs, d->wq, (size_t)s.h,
                         (size_t)s.w, 0));
    return CLT_OK;
}

/* Launches direct_fwd over an (N, CO, OH, OW) output: one work-group per (channel block, image). */
static int launch_direct_conv(clt_context *ctx, cl_kernel k, const direct_plan *d, size_t n, size_t co, size_t oh,
                              size_t ow)
{
    size_t strips = cdiv(ow, (size_t)d->vw) * cdiv(oh, (size_t)d->rb);
    size_t gl[3] = {strips, cdiv(co, (size_t)d->cob), n}, lo[3] = {strips, 1, 1};
    return clt__launch(ctx, k, 3, gl, strips <= ctx->info.max_work_group_size ? lo : NULL);
}

/* The small kernels get explicit work-groups: left to the driver, POCL may pick 1 for awkward sizes. */
static int launch_pad(clt_context *ctx, cl_kernel k, size_t planes, size_t rows)
{
    size_t gl[2] = {planes, rows + 1}, lo[2] = {1, rows + 1}; /* row `rows` zeros the tails */
    return clt__launch(ctx, k, 2, gl, rows + 1 <= ctx->info.max_work_group_size ? lo : NULL);
}

static int launch_1d(clt_context *ctx, cl_kernel k, size_t count)
{
    size_t lo = 64;
    return clt__launch(ctx, k, 1, &count, lo <= ctx->info.max_work_group_size ? &lo : NULL);
}

static int forward_direct(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    clt__conv_geom s = geom_of(n);
    const direct_plan *d = &((conv_priv *)n->priv)->d;
    CLT_TRY(launch_pad(ctx, n->k[K_D_PADX], (size_t)s.n * s.c, d->hp));
    CLT_TRY(launch_1d(ctx, n->k[K_D_PACKW], d->n_wt));
    return launch_direct_conv(ctx, n->k[K_D_FWD], d, (size_t)s.n, (size_t)s.co, (size_t)s.oh, (size_t)s.ow);
}

static int backward_direct(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    clt__conv_geom s = geom_of(n);
    const direct_plan *d = &((conv_priv *)n->priv)->d;
    size_t P = (size_t)s.n * s.co;
    CLT_TRY(launch_pad(ctx, n->k[K_D_PADDYX], P, (size_t)s.oh));
    /* a work-group per part and group of (c, kh), so that a core keeps the part's dy in its cache */
    size_t ncob = cdiv((size_t)s.co, (size_t)d->dcob), ckh = (size_t)s.c * s.kh, l1 = 256 / ncob;
    l1 = l1 < 1 ? 1 : l1 > ckh ? ckh : l1;
    size_t gd[3] = {ncob, ckh, (size_t)d->nparts}, ld[3] = {ncob, l1, 1};
    CLT_TRY(clt__launch(ctx, n->k[K_D_DW], 3, gd, ncob * l1 <= ctx->info.max_work_group_size ? ld : NULL));
    if (d->nparts > 1) {
        size_t gl = (size_t)s.co * s.c * s.kh * s.kw;
        CLT_TRY(clt__launch(ctx, n->k[K_D_SUMPARTS], 1, &gl, NULL));
    }
    if (n->need_dx[0]) {
        CLT_TRY(launch_pad(ctx, n->k[K_D_PADDY], P, d->hq));
        CLT_TRY(launch_1d(ctx, n->k[K_D_PACKWT], d->n_wt2));
        cl_int acc = n->acc_dx[0];
        CLT_CL(ctx, clSetKernelArg(n->k[K_D_BWDX], 11, sizeof acc, &acc));
        CLT_TRY(launch_direct_conv(ctx, n->k[K_D_BWDX], d, (size_t)s.n, (size_t)s.c, (size_t)s.h, (size_t)s.w));
    }
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------- dispatch */

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    return ATTR(n)->algo == CLT__CONV_DIRECT ? forward_direct(g, n) : forward_im2col(g, n);
}

static int backward(clt_graph *g, clt__node *n)
{
    if (n->k[K_BIAS_GRAD]) {
        clt__conv_geom s = geom_of(n);
        size_t gc = (size_t)s.co;
        CLT_TRY(clt__launch(g->ctx, n->k[K_BIAS_GRAD], 1, &gc, NULL));
    }
    return ATTR(n)->algo == CLT__CONV_DIRECT ? backward_direct(g, n) : backward_im2col(g, n);
}

/* The bias gradient reads dy as it is (NCHW), the same for every algorithm. */
static int prepare_bias_grad(clt_graph *g, clt__node *n)
{
    if (!n->out->grad || !ATTR(n)->bias || !n->param[1]->grad || n->k[K_BIAS_GRAD]) return CLT_OK;
    clt__conv_geom s = geom_of(n);
    cl_uint N = (cl_uint)s.n, CO = (cl_uint)s.co, P = (cl_uint)(s.oh * s.ow);
    CLT_TRY(clt__kernel(g->ctx, "conv2d", "", "bias_grad", &n->k[K_BIAS_GRAD]));
    return CLT_SET_ARGS(g->ctx, n->k[K_BIAS_GRAD], CLT_ARG(n->out->grad->mem), CLT_ARG(n->param[1]->grad->mem),
                        CLT_ARG(N), CLT_ARG(CO), CLT_ARG(P));
}

/* -------------------------------------------------------------------------------------- measuring */

typedef struct run_ud {
    clt_graph *g;
    clt__node *n;
    int bwd;
} run_ud;

static int run_pass(clt_context *ctx, void *ud)
{
    (void)ctx;
    run_ud *u = ud;
    return u->bwd ? backward(u->g, u->n) : forward(u->g, u->n, 1);
}

/* Results of one candidate on the measuring data. */
typedef struct cand_out {
    double fwd_ms, bwd_ms;
    float *y, *dw, *db, *dx;
} cand_out;

static int read_mem(clt_context *ctx, cl_mem m, float *dst, size_t count)
{
    CLT_CL(ctx, clEnqueueReadBuffer(ctx->queue, m, CL_TRUE, 0, count * sizeof(float), dst, 0, NULL, NULL));
    return CLT_OK;
}

static int write_mem(clt_context *ctx, cl_mem m, const float *src, size_t count)
{
    CLT_CL(ctx, clEnqueueWriteBuffer(ctx->queue, m, CL_TRUE, 0, count * sizeof(float), src, 0, NULL, NULL));
    return CLT_OK;
}

/* Runs one candidate the way the graph would (x written, forward; dy written, backward), timing each pass.
 * Forward and backward are timed separately because a backward may reuse the memory of x. */
static int run_candidate(clt_graph *g, clt__node *n, int algo, const float *x, const float *dy, int reps,
                         cand_out *o)
{
    clt_context *ctx = g->ctx;
    ATTR(n)->algo = algo;
    run_ud u = {g, n, 0};
    CLT_TRY(write_mem(ctx, n->in[0]->mem, x, n->in[0]->numel));
    CLT_TRY(clt__tune_time(ctx, run_pass, &u, reps, &o->fwd_ms));
    CLT_TRY(read_mem(ctx, n->out->mem, o->y, n->out->numel));
    o->bwd_ms = 0;
    if (!n->out->grad) return CLT_OK;
    u.bwd = 1;
    CLT_TRY(write_mem(ctx, n->out->grad->mem, dy, n->out->numel));
    CLT_TRY(clt__tune_time(ctx, run_pass, &u, reps, &o->bwd_ms));
    CLT_TRY(read_mem(ctx, n->param[0]->grad->mem, o->dw, n->param[0]->numel));
    if (o->db) CLT_TRY(read_mem(ctx, n->param[1]->grad->mem, o->db, n->param[1]->numel));
    if (o->dx) CLT_TRY(read_mem(ctx, n->in[0]->grad->mem, o->dx, n->in[0]->numel));
    return CLT_OK;
}

/* 1 if got matches ref to float accuracy: |got - ref| <= 1e-3 max|ref| + 1e-5 everywhere (an indexing error
 * is off by the size of the values themselves). */
static int agrees(const float *got, const float *ref, size_t count)
{
    if (!got) return 1;
    double mx = 0, err = 0;
    for (size_t i = 0; i < count; i++) mx = fmax(mx, fabs(ref[i]));
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= err)) err = isnan(e) ? INFINITY : e;
    }
    return err <= 1e-3 * mx + 1e-5;
}

/* Times im2col and direct on the layer's own buffers and shapes (forward, plus backward in training
 * graphs), checks direct against im2col, and records the decision. */
static int measure(clt_graph *g, clt__node *n, const char *pass, int *algo)
{
    clt_context *ctx = g->ctx;
    double t0 = clt__now_ms();
    clt__conv_geom s = geom_of(n);
    size_t nx = n->in[0]->numel, ny = n->out->numel, nw = n->param[0]->numel;
    size_t nb = ATTR(n)->bias ? n->param[1]->numel : 0;
    int train = n->out->grad != NULL, dx = train && n->in[0]->grad != NULL, db = train && nb && n->param[1]->grad;
    size_t per = ny + (train ? nw + (db ? nb : 0) + (dx ? nx : 0) : 0);
    float *buf = malloc((nx + ny + 2 * per) * sizeof(float));
    if (!buf) return clt__err(ctx, CLT_ERR_NOMEM, "out of host memory");
    float *x = buf, *dy = x + nx, *p = dy + ny;
    uint64_t rng = 0x5eed0c0417ull;
    for (size_t i = 0; i < nx; i++) x[i] = (float)(2 * clt__uniform01(&rng) - 1);
    for (size_t i = 0; i < ny; i++) dy[i] = (float)(2 * clt__uniform01(&rng) - 1);
    cand_out c[2];
    for (int a = 0; a < 2; a++) {
        c[a].y = p, p += ny;
        c[a].dw = train ? p : NULL, p += train ? nw : 0;
        c[a].db = db ? p : NULL, p += db ? nb : 0;
        c[a].dx = dx ? p : NULL, p += dx ? nx : 0;
    }
    int save_need = n->need_dx[0], save_acc = n->acc_dx[0];
    n->need_dx[0] = dx, n->acc_dx[0] = 0;
    int reps = ctx->tune == CLT_TUNE_FULL ? 7 : 3;
    int st = run_candidate(g, n, CLT__CONV_IM2COL, x, dy, reps, &c[0]);
    if (st >= 0) st = run_candidate(g, n, CLT__CONV_DIRECT, x, dy, reps, &c[1]);
    n->need_dx[0] = save_need, n->acc_dx[0] = save_acc;
    if (st < 0) {
        free(buf);
        return st;
    }
    int ok = agrees(c[1].y, c[0].y, ny) && agrees(c[1].dw, c[0].dw, nw) && agrees(c[1].db, c[0].db, nb) &&
             agrees(c[1].dx, c[0].dx, nx);
    free(buf);
    double ms[2] = {c[0].fwd_ms + c[0].bwd_ms, c[1].fwd_ms + c[1].bwd_ms};
    *algo = ok && ms[1] < ms[0] ? CLT__CONV_DIRECT : CLT__CONV_IM2COL;
    char v[160], shape[200];
    if (ok)
        snprintf(v, sizeof v, "algo=%s im2col_ms=%.3f+%.3f direct_ms=%.3f+%.3f",
                 *algo == CLT__CONV_DIRECT ? "direct" : "im2col", c[0].fwd_ms, c[0].bwd_ms, c[1].fwd_ms, c[1].bwd_ms);
    else
        snprintf(v, sizeof v, "algo=im2col im2col_ms=%.3f+%.3f direct=rejected", c[0].fwd_ms, c[0].bwd_ms);
    key_shape(&s, pass, shape, sizeof shape);
    clt__tune_key key = {"conv2d_algo", "conv2d", "", shape};
    CLT_TRY(clt__tune_put(ctx, &key, v));
    clt__tune_charge(ctx, (clt__now_ms() - t0) / 1000.0);
    return CLT_OK;
}

static int prepare(clt_graph *g, clt__node *n)
{
    clt_context *ctx = g->ctx;
    conv_priv *pr = n->priv;
    if (!n->saved[0]->mem) /* the graph gives SAVED tensors memory in inference graphs too */
        return clt__err(ctx, CLT_ERR_STATE, "conv2d '%s': no memory for the saved tensor", n->out->name);
    int algo = ATTR(n)->algo;
    if (algo == CLT__CONV_MEASURE) {
        clt__conv_geom s = geom_of(n);
        int pass = !n->out->grad ? 0 : n->in[0]->grad ? 2 : 1;
        algo = cached_algo(ctx, &s, pass_names[pass]);
        /* Measuring writes the layer's input: only where that memory holds nothing yet at compile. */
        int writable = n->in[0]->kind == CLT__INPUT || n->in[0]->kind == CLT__ACT;
        if (algo < 0 && pr->can_direct && writable && clt__tune_may_measure(ctx)) {
            CLT_TRY(prepare_im2col(g, n));
            CLT_TRY(prepare_direct(g, n));
            CLT_TRY(prepare_bias_grad(g, n));
            CLT_TRY(measure(g, n, pass_names[pass], &algo));
        }
        if (algo < 0) algo = default_algo(ctx, pr->can_direct);
        ATTR(n)->algo = algo;
    }
    CLT_TRY(algo == CLT__CONV_DIRECT ? prepare_direct(g, n) : prepare_im2col(g, n));
    return prepare_bias_grad(g, n);
}

static void destroy(clt__node *n)
{
    free(n->priv);
    n->priv = NULL;
}

static const clt__op op_conv2d = {"conv2d", prepare, forward, backward, destroy};

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
    /* 64-bit: huge paddings must give an error, not an overflow. */
    long long oh = clt__window_out(s.h, s.kh, s.sh, s.ph), ow = clt__window_out(s.w, s.kw, s.sw, s.pw);
    if (!oh || !ow || (long long)s.h + 2LL * s.ph > INT32_MAX || (long long)s.w + 2LL * s.pw > INT32_MAX)
        return clt__err(g->ctx, CLT_ERR_SHAPE,
                        "clt_conv2d: kernel %dx%d is larger than input '%s' %s with padding %dx%d", s.kh, s.kw,
                        x->name, clt__shape_str(x, b, sizeof b), s.ph, s.pw);
    s.oh = (int)oh;
    s.ow = (int)ow;
    size_t K = (size_t)s.c * s.kh * s.kw, NP = (size_t)s.n * s.oh * s.ow;
    /* The output itself must be a tensor (at most 2^31-1 values); only then can the columns be the problem. */
    if ((double)s.co * (double)NP > (double)INT32_MAX)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_conv2d: the output (%d,%d,%d,%d) of input '%s' %s would hold "
                        "%.0f values, more than a tensor may (2^31-1); use fewer output channels or a smaller batch",
                        s.n, s.co, s.oh, s.ow, x->name, clt__shape_str(x, b, sizeof b), (double)s.co * (double)NP);
    int algo = clt__conv2d_algo(g->ctx, &s);
    CLT_TRY(algo);
    direct_plan dp;
    int can_direct = plan_direct(&s, &dp);
    if (K > (size_t)INT32_MAX / NP || (size_t)s.co * NP > (size_t)INT32_MAX) {
        if (can_direct && algo != CLT__CONV_IM2COL) algo = CLT__CONV_DIRECT; /* im2col cannot run this layer */
        else
            return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_conv2d: input '%s' %s with a %dx%d kernel needs %zu x %zu "
                            "im2col columns, too many; use a smaller batch", x->name, clt__shape_str(x, b, sizeof b),
                            s.kh, s.kw, K, NP);
    }

    int shape[4] = {s.n, s.co, s.oh, s.ow};
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_conv2d, name, 1, &x, 4, shape, &n));
    conv_priv *pr = calloc(1, sizeof *pr);
    if (!pr) return clt__graph_poison(g, clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory"));
    n->priv = pr;
    pr->d = dp;
    pr->can_direct = can_direct;
    *ATTR(n) = (conv_attr){s, p->bias != 0, algo, split_k_chunks((size_t)s.co, K, NP)};
    /* The saved columns (im2col) or padded input (direct) hold everything the weight gradient needs from x. */
    n->bwd_needs_in = 0;
    n->bwd_needs_out = 0;
    int wshape[4] = {s.co, s.c, s.kh, s.kw}, bshape[1] = {s.co};
    size_t fo = (size_t)s.co * s.kh * s.kw; /* a weight tensor this large is refused by clt__add_param */
    int fan_in = K > INT32_MAX ? INT32_MAX : (int)K, fan_out = fo > INT32_MAX ? INT32_MAX : (int)fo;
    clt_tensor *t;
    CLT_TRY(clt__add_param(g, n, "weight", 4, wshape, p->init, fan_in, fan_out, 0.0f, &t));
    if (p->bias) CLT_TRY(clt__add_param(g, n, "bias", 1, bshape, CLT_INIT_ZEROS, fan_in, fan_out, 0.0f, &t));
    /* Slot sizes: the largest use among the algorithms this layer may run (see the top of the file). */
    size_t sv = 1, fs = 1, bs[NB] = {1, 1, 1, 1};
#define GROW(v, x) ((v) = (x) > (v) ? (x) : (v))
    if (algo != CLT__CONV_DIRECT) {
        GROW(sv, K * NP);
        if (s.n > 1) GROW(fs, (size_t)s.co * NP), GROW(bs[0], (size_t)s.co * NP);
        if (ATTR(n)->split) GROW(bs[1], (size_t)(ATTR(n)->split + 1) * s.co * K);
        GROW(bs[1], K * NP);
    }
    if (algo != CLT__CONV_IM2COL) {
        GROW(sv, dp.n_xp);
        GROW(fs, dp.n_wt);
        GROW(bs[0], dp.n_wt2), GROW(bs[2], dp.n_dyp), GROW(bs[2], dp.n_dyx), GROW(bs[3], dp.n_parts);
    }
#undef GROW
    CLT_TRY(clt__add_private(g, n, CLT__SAVED, "saved", sv, &t));
    CLT_TRY(clt__add_private(g, n, CLT__FSCRATCH, "fscratch", fs, &t));
    for (int i = 0; i < NB; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "bscratch%d", i);
        CLT_TRY(clt__add_private(g, n, CLT__BSCRATCH, nm, bs[i], &t));
    }
    *out = n->out;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ model layer */

typedef struct conv_args {
    int out, k, stride, pad, bias;
} conv_args;

static int conv_parse(clt__line *l, void *args)
{
    conv_args a = {0, 0, 1, 0, 1};
    const char *s = clt__line_arg(l, 1);
    if (!s) return clt__line_fail(l, "conv: missing the number of output channels (conv OUT K)");
    if (!clt__parse_int(s, 1, 65536, &a.out)) return clt__line_fail(l, "conv: bad number of output channels '%s'", s);
    s = clt__line_arg(l, 2);
    if (!s) return clt__line_fail(l, "conv: missing the kernel size (conv OUT K)");
    if (!clt__parse_int(s, 1, 64, &a.k)) return clt__line_fail(l, "conv: bad kernel size '%s' (1..64)", s);
    if (clt__line_int(l, "stride", 1, 64, &a.stride)) return CLT_ERR_INVALID;
    s = clt__line_opt(l, "pad");
    if (s && strcmp(s, "same") == 0) {
        if (a.k % 2 == 0) return clt__line_fail(l, "conv: pad=same needs an odd kernel size, not %d", a.k);
        a.pad = a.k / 2;
    } else if (s && !clt__parse_int(s, 0, 64, &a.pad)) {
        return clt__line_fail(l, "conv: bad pad '%s' (a number or 'same')", s);
    }
    if (clt__line_int(l, "bias", 0, 1, &a.bias)) return CLT_ERR_INVALID;
    memcpy(args, &a, sizeof a);
    return CLT_OK;
}

static void conv_print(const void *args, clt__sbuf *b)
{
    CLT__ARGS(conv_args, a, args);
    clt__sb_printf(b, "conv %d %d stride=%d pad=%d bias=%d\n", a.out, a.k, a.stride, a.pad, a.bias);
}

/* The op's rule (clt__window_out) on one image. */
static int conv_shape(const void *args, const clt__shape *in, int classes, clt__shape *out, clt__layer_cost *cost,
                      char *msg)
{
    (void)classes;
    CLT__ARGS(conv_args, a, args);
    char s[64];
    clt__shape_text(in, s, sizeof s);
    if (in->flat) return clt__layer_shape_fail(msg, "conv needs an image (C,H,W) input, got a vector %s", s);
    long long oh = clt__window_out(in->h, a.k, a.stride, a.pad), ow = clt__window_out(in->w, a.k, a.stride, a.pad);
    if (!oh || !ow)
        return clt__layer_shape_fail(msg, "conv window %dx%d (pad %d) does not fit the input %s", a.k, a.k, a.pad, s);
    *out = (clt__shape){0, a.out, (int)oh, (int)ow};
    cost->params = (long long)a.out * in->c * a.k * a.k + (a.bias ? a.out : 0);
    cost->macs = (double)a.out * oh * ow * in->c * a.k * a.k;
    return CLT_OK;
}

static int conv_build(clt_graph *g, const void *args, const char *name, const clt__shape *in, const clt__shape *out,
                      clt_tensor *x, clt_tensor **y)
{
    (void)in, (void)out;
    CLT__ARGS(conv_args, a, args);
    clt_conv2d_params p;
    clt_conv2d_default_params(&p, a.out, a.k);
    p.stride_h = p.stride_w = a.stride;
    p.pad_h = p.pad_w = a.pad;
    p.bias = a.bias;
    return clt_conv2d(g, x, &p, name, y);
}

static const clt__layer_type layers[] = {
    {"conv", "conv OUT K [stride=1] [pad=0|same] [bias=1]", "stride, pad, bias", "conv", conv_parse, conv_print,
     conv_shape, conv_build},
};
const clt__op_def clt__opdef_conv2d = {"conv2d", layers, 1};
