/* model.h - library-private parts of the model description format, shared by the parser/checker (model.c)
 * and the graph builder (model_build.c). */
#ifndef CLT_MODEL_H
#define CLT_MODEL_H

#include "internal.h"

#define CLT__MODEL_ERR_LEN 1024

enum clt__layer_kind {
    CLT__L_CONV,
    CLT__L_RELU,
    CLT__L_LEAKY_RELU,
    CLT__L_SIGMOID,
    CLT__L_TANH,
    CLT__L_GELU,
    CLT__L_MAXPOOL,
    CLT__L_AVGPOOL,
    CLT__L_GLOBAL_AVGPOOL,
    CLT__L_FLATTEN,
    CLT__L_DENSE,
    CLT__L_DROPOUT,
    CLT__L_BATCHNORM,
    CLT__L_RESIDUAL, /* opens a block; `project` says whether the shortcut is projected */
    CLT__L_END,      /* closes the innermost block */
};

typedef struct clt__layer {
    int kind;
    int line;    /* in the text it was parsed from */
    int n;       /* conv: output channels; dense: units (-1: the number of classes) */
    int k;       /* conv/pool kernel */
    int stride;
    int pad;     /* -1: "same" */
    int bias;
    float f;     /* leaky_relu slope, dropout rate, batchnorm momentum */
    float eps;   /* batchnorm */
    int project; /* residual */
} clt__layer;

struct clt_model {
    char name[64];
    char origin[256];             /* file name or "preset NAME": messages name it with the line */
    char *text;                   /* canonical text (owned); NULL until parsed */
    clt_model_train_defaults train;
    clt__layer *l;                /* parsed layers, in order */
    int n, cap;
    char errmsg[CLT__MODEL_ERR_LEN];
};

/* A per-image shape: an image (c,h,w) or, with flat set, a vector of c values (h = w = 1). */
typedef struct clt__shape {
    int flat;
    int c, h, w;
} clt__shape;

/* Hooks the walk calls to build a graph; `x`/`y` are the builder's tensors. Messages go to err
 * (CLT__MODEL_ERR_LEN bytes) without the "FILE:LINE: " prefix, which the walk adds. */
typedef struct clt__model_builder {
    void *ud;
    int (*layer)(void *ud, const clt__layer *l, const char *name, const clt__shape *in, const clt__shape *out,
                 void *x, void **y, char *err);
    /* End of a residual block opened by `begin`: y = block_out + shortcut(block_in). */
    int (*residual)(void *ud, const clt__layer *begin, const char *name, const clt__shape *in,
                    const clt__shape *out, void *block_in, void *block_out, void **y, char *err);
} clt__model_builder;

/* Growable text (out of memory sticks in `oom`). */
typedef struct clt__sbuf {
    char *s;
    size_t len, cap;
    int oom;
} clt__sbuf;
void clt__sb_printf(clt__sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Walks the parsed layers from an input (c,h,w) with shape checks, calling the builder (if any) for each
 * layer, and appending the per-layer table to `table` (if any). *output gets the final builder tensor.
 * Errors: message in err ("ORIGIN:LINE: ..."), negative status. */
int clt__model_walk(const clt_model *m, int c, int h, int w, int classes, const clt__model_builder *b,
                    void *input, void **output, clt_model_info *info, clt__sbuf *table, char *err);

#endif
