/* quant_ops.c - what the int8 ops (src/ops/qconv2d.c, src/ops/qdense.c) share: their constant weights and scales. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

int clt__qparams_new(clt_context *ctx, const char *fn, int cout, size_t wcount, const int8_t *w,
                     const float *w_scale, const float *bias, float x_scale, clt__qparams **out)
{
    *out = NULL;
    if (!w || !w_scale) return clt__err(ctx, CLT_ERR_INVALID, "%s: the %s is NULL", fn, w ? "weight scale" : "weight");
    if (!(x_scale > 0) || !isfinite(x_scale) || !isfinite(1.0f / x_scale))
        return clt__err(ctx, CLT_ERR_INVALID, "%s: input scale %g (must be a positive finite number)", fn, x_scale);
    for (size_t i = 0; i < wcount; i++)
        if (w[i] == -128)
            return clt__err(ctx, CLT_ERR_INVALID, "%s: weight %zu is -128 (symmetric int8 weights are in -127..127)",
                            fn, i);
    for (int c = 0; c < cout; c++) {
        float o = x_scale * w_scale[c];
        if (!(w_scale[c] > 0) || !isfinite(o))
            return clt__err(ctx, CLT_ERR_INVALID, "%s: weight scale %d is %g (must be positive and finite)", fn, c,
                            w_scale[c]);
        if (bias && !isfinite(bias[c])) return clt__err(ctx, CLT_ERR_INVALID, "%s: bias %d is not finite", fn, c);
    }
    clt__qparams *q = calloc(1, sizeof *q);
    if (q) {
        q->w = malloc(wcount);
        q->osc = malloc(sizeof(float) * cout);
        q->bias = calloc((size_t)cout, sizeof(float));
    }
    if (!q || !q->w || !q->osc || !q->bias) {
        clt__qparams_free(q);
        return clt__err(ctx, CLT_ERR_NOMEM, "%s: out of host memory", fn);
    }
    q->cout = cout;
    q->wcount = wcount;
    memcpy(q->w, w, wcount);
    for (int c = 0; c < cout; c++) q->osc[c] = x_scale * w_scale[c];
    if (bias) memcpy(q->bias, bias, sizeof(float) * cout);
    q->has_bias = bias != NULL;
    q->inv_x = 1.0f / x_scale;
    *out = q;
    return CLT_OK;
}

static int upload(clt_context *ctx, const void *data, size_t bytes, cl_mem *m)
{
    cl_int e = CL_SUCCESS;
    *m = clCreateBuffer(ctx->cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, (void *)data, &e);
    CLT_CL(ctx, e);
    return CLT_OK;
}

int clt__qparams_upload(clt_context *ctx, clt__qparams *q)
{
    CLT_TRY(upload(ctx, q->w, q->wcount, &q->dw));
    CLT_TRY(upload(ctx, q->osc, sizeof(float) * q->cout, &q->dosc));
    return upload(ctx, q->bias, sizeof(float) * q->cout, &q->dbias);
}

void clt__qparams_free(clt__qparams *q)
{
    if (!q) return;
    if (q->dw) clReleaseMemObject(q->dw);
    if (q->dosc) clReleaseMemObject(q->dosc);
    if (q->dbias) clReleaseMemObject(q->dbias);
    free(q->w);
    free(q->osc);
    free(q->bias);
    free(q);
}

int clt__qop_no_backward(clt_graph *g, clt__node *n)
{
    return clt__err(g->ctx, CLT_ERR_UNSUPPORTED, "'%s': int8 layers (%s) are for inference only: they have no "
                    "gradient", n->out->name, n->op->name);
}
