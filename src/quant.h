/* quant.h - library-private pieces of int8 quantization shared by the qconv2d/qdense ops and the quantizer. */
#ifndef CLT_QUANT_H
#define CLT_QUANT_H

#include "internal.h"

/* The constant data of an int8 layer: host copies made when the op is added, device copies made at prepare. */
typedef struct clt__qparams {
    int cout;            /* output channels / units */
    size_t wcount;       /* bytes of w: the int8 weights (qconv2d may replace them by a packed int32 copy) */
    int8_t *w;           /* (cout, ...) */
    float *osc;          /* cout: x_scale * w_scale[c] */
    float *bias;         /* cout (zeros without bias) */
    int has_bias;
    float inv_x;         /* 1 / x_scale, as the kernels multiply by it */
    cl_mem dw, dosc, dbias;
} clt__qparams;

/* Checks and copies the arrays of clt_qconv2d / clt_qdense into a new clt__qparams (`fn` names the caller in
 * messages). */
int clt__qparams_new(clt_context *ctx, const char *fn, int cout, size_t wcount, const int8_t *w,
                     const float *w_scale, const float *bias, float x_scale, clt__qparams **out);
/* Uploads the device copies (at prepare). */
int clt__qparams_upload(clt_context *ctx, clt__qparams *q);
void clt__qparams_free(clt__qparams *q);
/* backward of the int8 ops: there is none. */
int clt__qop_no_backward(clt_graph *g, clt__node *n);

/* The geometry of a conv2d node (its attributes), for the quantizer. */
int clt__conv2d_node_geom(const clt__node *n, clt__conv_geom *geom);

#endif
