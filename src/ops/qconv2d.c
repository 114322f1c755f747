/* qconv2d.c - int8 convolution for inference: quantize the input, int32 accumulation, dequantized float output
 * (cl/qconv2d.cl; the arithmetic is documented at clt_qconv2d in cltrain.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "quant.h"

typedef struct qconv_attr {
    clt__conv_geom geom;
    int hp, wp; /* padded input plane of the int8 copy */
} qconv_attr;
#define ATTR(n) CLT__ATTR(n, qconv_attr)

#define COB 4  /* as cl/qconv2d.cl's defaults */
#define OWB 16
#define COBV 8 /* qconv2d_forward16 */
#define QRB 2  /* qconv2d_forward16's rows per work-item */

/* Stride-1 columns take the vector kernel; other strides the general one. */
static int vector_path(const clt__conv_geom *d) { return d->sw == 1 && d->kh <= 7 && d->kw <= 7; }

/* Bytes after the int8 input, so that the 16-byte loads of qconv2d_forward16 stay in bounds: its last work-items
 * read up to QRB-1 rows below the last output row and 15 + KW - 1 bytes past a row's end. */
static size_t slack(const clt__conv_geom *d, int wp) { return (size_t)(QRB * d->sh + d->kh) * wp + 16 + d->kw + 64; }

/* The weights as qconv2d_forward16 reads them: widened to int32 (one broadcast load each) and packed
 * (ceil(CO/COBV), C, KH, KW, COBV), zeros past CO. */
static int pack(clt_graph *g, clt__qparams *q, const clt__conv_geom *d)
{
    size_t kk = (size_t)d->kh * d->kw, blocks = (size_t)(d->co + COBV - 1) / COBV;
    int32_t *p = calloc(blocks * d->c * kk * COBV, sizeof *p);
    if (!p) return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory");
    for (int co = 0; co < d->co; co++)
        for (int c = 0; c < d->c; c++)
            for (size_t k = 0; k < kk; k++)
                p[(((size_t)(co / COBV) * d->c + c) * kk + k) * COBV + co % COBV] = q->w[((size_t)co * d->c + c) * kk + k];
    free(q->w);
    q->w = (int8_t *)p;
    q->wcount = blocks * d->c * kk * COBV * sizeof *p; /* bytes */
    return CLT_OK;
}

static int prepare(clt_graph *g, clt__node *n)
{
    const qconv_attr *a = ATTR(n);
    const clt__conv_geom *d = &a->geom;
    clt__qparams *q = n->priv;
    int vec = vector_path(d);
    if (vec && !q->dw) CLT_TRY(pack(g, q, d));
    CLT_TRY(clt__qparams_upload(g->ctx, q));
    cl_uint H = (cl_uint)d->h, W = (cl_uint)d->w, HP = (cl_uint)a->hp, WP = (cl_uint)a->wp, ph = (cl_uint)d->ph,
            pw = (cl_uint)d->pw, total = (cl_uint)((size_t)d->n * d->c * a->hp * a->wp);
    cl_mem xq = n->fscratch[0]->mem;
    CLT_TRY(clt__kernel(g->ctx, "qconv2d", "", "qconv2d_quantize", &n->k[0]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[0], CLT_ARG(n->in[0]->mem), CLT_ARG(xq), CLT_ARG(q->inv_x), CLT_ARG(H),
                         CLT_ARG(W), CLT_ARG(HP), CLT_ARG(WP), CLT_ARG(ph), CLT_ARG(pw), CLT_ARG(total)));
    cl_uint C = (cl_uint)d->c, CO = (cl_uint)d->co, KH = (cl_uint)d->kh, KW = (cl_uint)d->kw, sh = (cl_uint)d->sh,
            sw = (cl_uint)d->sw, OH = (cl_uint)d->oh, OW = (cl_uint)d->ow;
    cl_int hb = q->has_bias;
    if (vec) {
        char opts[64];
        cl_uint PS = HP * WP;
        snprintf(opts, sizeof opts, "-DQ_KH=%d -DQ_KW=%d -DCOBV=%d -DQRB=%d", d->kh, d->kw, COBV, QRB);
        CLT_TRY(clt__kernel(g->ctx, "qconv2d", opts, "qconv2d_forward16", &n->k[1]));
        return CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(xq), CLT_ARG(q->dw), CLT_ARG(q->dosc), CLT_ARG(q->dbias),
                            CLT_ARG(n->out->mem), CLT_ARG(C), CLT_ARG(PS), CLT_ARG(WP), CLT_ARG(CO), CLT_ARG(sh),
                            CLT_ARG(OH), CLT_ARG(OW), CLT_ARG(hb));
    }
    CLT_TRY(clt__kernel(g->ctx, "qconv2d", "", "qconv2d_forward", &n->k[1]));
    CLT_TRY(CLT_SET_ARGS(g->ctx, n->k[1], CLT_ARG(xq), CLT_ARG(q->dw), CLT_ARG(q->dosc), CLT_ARG(q->dbias),
                         CLT_ARG(n->out->mem), CLT_ARG(C), CLT_ARG(HP), CLT_ARG(WP), CLT_ARG(CO), CLT_ARG(KH),
                         CLT_ARG(KW), CLT_ARG(sh), CLT_ARG(sw), CLT_ARG(OH), CLT_ARG(OW), CLT_ARG(hb)));
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    const qconv_attr *a = ATTR(n);
    const clt__conv_geom *d = &a->geom;
    size_t total = (size_t)d->n * d->c * a->hp * a->wp, ls = 64;
    CLT_TRY(clt__launch(g->ctx, n->k[0], 1, &total, &ls));
    if (vector_path(d)) {
        size_t gv[3] = {(size_t)(d->ow + 15) / 16 * ((d->oh + QRB - 1) / QRB), (size_t)(d->co + COBV - 1) / COBV,
                        (size_t)d->n};
        return clt__launch(g->ctx, n->k[1], 3, gv, NULL);
    }
    size_t gs[3] = {(size_t)(d->ow + OWB - 1) / OWB * d->oh, (size_t)(d->co + COB - 1) / COB, (size_t)d->n};
    return clt__launch(g->ctx, n->k[1], 3, gs, NULL);
}

static void destroy(clt__node *n) { clt__qparams_free(n->priv); }

static const clt__op op_qconv2d = {"qconv2d", prepare, forward, clt__qop_no_backward, destroy};

int clt_qconv2d(clt_graph *g, clt_tensor *x, const clt_conv2d_params *p, const int8_t *weight,
                const float *weight_scale, const float *bias, float x_scale, const char *name, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_qconv2d: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_qconv2d"));
    CLT_TRY(clt__check_tensor(g, x, "clt_qconv2d", "input"));
    if (!p) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_qconv2d: params is NULL");
    if (x->ndim != 4) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_qconv2d: input '%s' %s must be (N,C,H,W)", x->name,
                        clt__shape_str(x, b, sizeof b));
    }
    clt__conv_geom d = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], p->out_channels, p->kernel_h,
                        p->kernel_w, p->stride_h, p->stride_w, p->pad_h, p->pad_w, 0, 0};
    if (d.co <= 0 || d.kh <= 0 || d.kw <= 0 || d.sh <= 0 || d.sw <= 0 || d.ph < 0 || d.pw < 0)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_qconv2d: out_channels %d, kernel %dx%d, stride %dx%d, padding "
                        "%dx%d (sizes and strides must be positive, padding not negative)", d.co, d.kh, d.kw, d.sh,
                        d.sw, d.ph, d.pw);
    d.oh = (int)clt__window_out(d.h, d.kh, d.sh, d.ph);
    d.ow = (int)clt__window_out(d.w, d.kw, d.sw, d.pw);
    long long fan = (long long)d.c * d.kh * d.kw, hp = d.h + 2LL * d.ph, wp = d.w + 2LL * d.pw;
    if (d.oh <= 0 || d.ow <= 0)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_qconv2d: a %dx%d kernel does not fit the %dx%d input padded by "
                        "%dx%d", d.kh, d.kw, d.h, d.w, d.ph, d.pw);
    /* int32 sums of fan products of |v| <= 127 cannot overflow below this. */
    if (fan > INT_MAX / (127 * 127) || (double)d.n * d.c * hp * wp > INT_MAX)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_qconv2d: %lld inputs per output (at most %d for exact int32 sums) "
                        "or a padded input over 2^31 values", fan, INT_MAX / (127 * 127));
    clt__qparams *q;
    CLT_TRY(clt__qparams_new(g->ctx, "clt_qconv2d", d.co, (size_t)(d.co * fan), weight, weight_scale, bias, x_scale,
                             &q));
    int shape[4] = {d.n, d.co, d.oh, d.ow};
    clt__node *n;
    int st = clt__new_node(g, &op_qconv2d, name, 1, &x, 4, shape, &n);
    if (st) {
        clt__qparams_free(q);
        return st;
    }
    n->priv = q;
    n->no_backward = 1;
    *ATTR(n) = (qconv_attr){d, (int)hp, (int)wp};
    clt_tensor *t;
    /* The int8 copy of the padded input lives during the forward only (floats: 4 int8 values each). */
    CLT_TRY(clt__add_private(g, n, CLT__FSCRATCH, "xq", (size_t)((d.n * d.c * hp * wp + slack(&d, (int)wp) + 3) / 4),
                              &t));
    *out = n->out;
    return CLT_OK;
}

/* No layer keyword: quantized checkpoints build these layers (src/quant_file.c). */
const clt__op_def clt__opdef_qconv2d = {"qconv2d", NULL, 0};
