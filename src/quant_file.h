/* quant_file.h - the quantized checkpoint in memory, shared by its reader/builder (quant_file.c) and the
 * quantizer (quant.c). */
#ifndef CLT_QUANT_FILE_H
#define CLT_QUANT_FILE_H

#include <stdarg.h>

#include "quant.h"

typedef struct clt__qlayer {
    char name[CLT_NAME_LEN]; /* the model layer's name: conv1, fc2 */
    int kind;                /* 0 conv (weight (cout,cin,kh,kw)), 1 dense (weight (cout,cin), kh = kw = 1) */
    int cout, cin, kh, kw, sh, sw, ph, pw, has_bias;
    float x_scale;
    float *w_scale, *bias; /* cout each; bias NULL without */
    int8_t *w;
} clt__qlayer;

typedef struct clt__ftensor {
    char name[CLT_NAME_LEN];
    int ndim, shape[4];
    size_t numel;
    float *v;
} clt__ftensor;

struct clt_qcheckpoint {
    char path[1024];
    int ok;
    char *text;
    int c, h, w, classes;
    unsigned char *meta;
    size_t meta_len;
    clt__qlayer *q;
    int nq;
    clt__ftensor *f;
    int nf;
    char err[2048];
};

size_t clt__qlayer_wcount(const clt__qlayer *l);
/* Writes q to path atomically; *bytes gets the file size. */
int clt__qfile_write(clt_context *ctx, const char *path, const clt_qcheckpoint *q, uint64_t *bytes);
/* Frees what q points to (not q). */
void clt__qcheckpoint_free_parts(clt_qcheckpoint *q);

#endif
