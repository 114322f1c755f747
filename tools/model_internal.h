/* model_internal.h - parsed model descriptions shared by the parser/checker (model.c) and the graph builder
 * (model_build.c). The split keeps the parser free of graph ops, so it links and is tested on its own. */
#ifndef CLT_TOOL_MODEL_INTERNAL_H
#define CLT_TOOL_MODEL_INTERNAL_H

#include "tool.h"

enum tool_layer_kind {
    TL_CONV,
    TL_RELU,
    TL_LEAKY_RELU,
    TL_SIGMOID,
    TL_TANH,
    TL_GELU,
    TL_MAXPOOL,
    TL_AVGPOOL,
    TL_GLOBAL_AVGPOOL,
    TL_FLATTEN,
    TL_DENSE,
    TL_DROPOUT,
    TL_BATCHNORM,
    TL_RESIDUAL, /* opens a block; `project` says whether the shortcut is projected */
    TL_END,      /* closes the innermost block */
};

typedef struct tool_layer {
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
} tool_layer;

/* A per-image shape: an image (c,h,w) or, with flat set, a vector of c values (h = w = 1). */
typedef struct tool_shape {
    int flat;
    int c, h, w;
} tool_shape;

/* Hooks the walk calls to build a graph; `x`/`y` are the builder's tensors. Messages go to err without the
 * "FILE:LINE: " prefix, which the walk adds. */
typedef struct tool_model_builder {
    void *ud;
    int (*layer)(void *ud, const tool_layer *l, const char *name, const tool_shape *in, const tool_shape *out,
                 void *x, void **y, char *err);
    /* End of a residual block opened by `begin`: y = block_out + shortcut(block_in). */
    int (*residual)(void *ud, const tool_layer *begin, const char *name, const tool_shape *in,
                    const tool_shape *out, void *block_in, void *block_out, void **y, char *err);
} tool_model_builder;

/* Parses m->text and walks the layers from an input (c,h,w) with shape checks, calling the builder (if any)
 * for each layer. *output gets the final builder tensor. */
int tool__model_walk(const tool_model *m, int c, int h, int w, int classes, const tool_model_builder *b,
                     void *input, void **output, tool_model_info *info, FILE *table, char *err);

#endif
