/* model.h - library-private interface of the model text format: what an op file (src/ops/<op>.c) provides
 * to describe its layer keywords (parse, canonical print, shape rule, build), the line reader they use, and
 * the walk shared by clt_model_check and clt_model_build (model.c, model_build.c). */
#ifndef CLT_MODEL_H
#define CLT_MODEL_H

#include "internal.h"

#define CLT__MODEL_ERR_LEN 1024
#define CLT__LAYER_ARGS 48 /* bytes of a layer's own arguments (each layer type's args struct fits) */

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

/* A per-image shape: an image (c,h,w) or, with flat set, a vector of c values (h = w = 1). */
typedef struct clt__shape {
    int flat;
    int c, h, w;
} clt__shape;

/* One line of model text being parsed: its tokens, which of them a layer used, where messages go. */
#define CLT__MAXTOK 16
typedef struct clt__line {
    const char *origin;
    int line;
    const char *kw;
    char *tok[CLT__MAXTOK];
    int ntok;
    int used[CLT__MAXTOK]; /* tokens consumed, to report the rest */
    char *err;             /* CLT__MODEL_ERR_LEN bytes */
} clt__line;

/* Records "ORIGIN:LINE: message" and returns CLT_ERR_INVALID. */
int clt__line_fail(clt__line *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Positional argument i (1-based, counting only tokens without '='), or NULL. */
const char *clt__line_arg(clt__line *l, int i);
/* Value of option key=VALUE, or NULL (a repeated option was refused before the layer saw the line). */
const char *clt__line_opt(clt__line *l, const char *key);
/* Optional key=INT / key=NUMBER within [lo, hi]: leaves *v when absent; on a bad value fails with a message. */
int clt__line_int(clt__line *l, const char *key, int lo, int hi, int *v);
int clt__line_float(clt__line *l, const char *key, float lo, float hi, float *v);
/* Whole-string number within [lo, hi] (floats finite): 1 on success, 0 otherwise. */
int clt__parse_int(const char *s, int lo, int hi, int *out);
int clt__parse_float(const char *s, float lo, float hi, float *out);
/* Shortest decimal that reads back as the same float ("0.1"), into buf (32 bytes). */
const char *clt__fstr(float v, char *buf);

/* What a layer's shape rule reports besides the output shape. */
typedef struct clt__layer_cost {
    long long params; /* learned parameters */
    double macs;      /* forward multiply-adds per image */
} clt__layer_cost;

/* A layer keyword of the text format, defined by the op that implements it. `args` is the type's own
 * arguments struct (at most CLT__LAYER_ARGS bytes, copied with memcpy: it is stored as bytes). */
typedef struct clt__layer_type {
    const char *keyword;  /* "conv" */
    const char *usage;    /* "conv OUT K [stride=1] [pad=0|same] [bias=1]" (help texts list these) */
    const char *options;  /* option names for "unknown option" messages; NULL: "none" */
    const char *pname;    /* its parameters are named PNAME1.weight, PNAME2.bias, ... in layer order; NULL: the
                           * layer has no name (no parameters) */
    /* Reads the line's arguments into args (zeroed before); leftovers are refused by the caller. */
    int (*parse)(clt__line *l, void *args);
    /* Appends the canonical line (every option spelled out) with its '\n'. */
    void (*print)(const void *args, clt__sbuf *b);
    /* The shape rule: output of one image `in`; `classes` for layers sized by the class count. On failure
     * writes the message (no "ORIGIN:LINE: " prefix) into msg (CLT__MODEL_ERR_LEN) and returns CLT_ERR_SHAPE. */
    int (*shape)(const void *args, const clt__shape *in, int classes, clt__shape *out, clt__layer_cost *cost,
                 char *msg);
    /* Adds the layer's ops to g: x has the batch of `in`, *y must come out with the batch of `out`. Errors go
     * to the graph's context. NULL: the layer is the identity. */
    int (*build)(clt_graph *g, const void *args, const char *name, const clt__shape *in, const clt__shape *out,
                 clt_tensor *x, clt_tensor **y);
} clt__layer_type;

/* "(C,H,W)" or "(C)" into buf. */
void clt__shape_text(const clt__shape *s, char *buf, size_t n);
/* The shape rule of layers that keep their input's shape (elementwise ops); no parameters, no MACs. */
int clt__layer_same_shape(const void *args, const clt__shape *in, int classes, clt__shape *out,
                          clt__layer_cost *cost, char *msg);
/* Formats a shape-rule message into msg (CLT__MODEL_ERR_LEN) and returns CLT_ERR_SHAPE. */
int clt__layer_shape_fail(char *msg, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* One op's entry in the op table (src/ops/ops.def): each src/ops/<op>.c defines clt__opdef_<op>. */
typedef struct clt__op_def {
    const char *name;
    const clt__layer_type *layers; /* its layer keywords (may be none) */
    int nlayers;
} clt__op_def;

/* Layer keywords of every op in table order (table.c): the i-th, NULL past the last; and by keyword. */
const clt__layer_type *clt__layer_type_at(int i);
const clt__layer_type *clt__layer_type_find(const char *keyword);

/* Copies a layer's args into a typed local: CLT__ARGS(conv_args, a, args); */
#define CLT__ARGS(type, var, src)                                                                        \
    type var;                                                                                            \
    _Static_assert(sizeof(type) <= CLT__LAYER_ARGS, #type " is larger than CLT__LAYER_ARGS");            \
    memcpy(&var, (src), sizeof var)

/* ---- the parsed model */
enum clt__layer_kind {
    CLT__L_LAYER = 0, /* an op's layer: `type` says which */
    CLT__L_RESIDUAL,  /* opens a block; `project` says whether the shortcut is projected */
    CLT__L_END,       /* closes the innermost block */
};

typedef struct clt__layer {
    int kind;
    const clt__layer_type *type; /* CLT__L_LAYER */
    int line;                    /* in the text it was parsed from */
    int project;                 /* residual */
    union {
        unsigned char bytes[CLT__LAYER_ARGS];
        long long align_; /* keeps the bytes aligned for any args struct */
        double align2_;
    } args;
} clt__layer;

struct clt_model {
    clt_model_lm_info lm;         /* a `gpt` line: a language model (lm.layers > 0), and then no layer lines */
    int lm_line;
    char name[64];
    char origin[256];             /* file name or "preset NAME": messages name it with the line */
    char *text;                   /* canonical text (owned); NULL until parsed */
    clt_model_train_defaults train;
    clt__layer *l;                /* parsed layers, in order */
    int n, cap;
    char errmsg[CLT__MODEL_ERR_LEN];
};

/* Walks the parsed layers from an input image (c,h,w) with the shape rules and the limits of cltrain.h,
 * appending the per-layer table to `table` (if any). With g, also adds each layer to g on top of `input`
 * and returns the last tensor in *output. Errors: "ORIGIN:LINE: message" in err, negative status. */
int clt__model_walk(const clt_model *m, int c, int h, int w, int classes, clt_graph *g, clt_tensor *input,
                    clt_tensor **output, clt_model_info *info, clt__sbuf *table, char *err);
/* End of a residual block (model_build.c): y = block_out + shortcut(block_in), the shortcut projected when
 * `project` (a 1x1 convolution, or a dense layer for vectors). Errors go to g's context. */
int clt__model_residual(clt_graph *g, int project, const char *name, const clt__shape *in, const clt__shape *out,
                        clt_tensor *block_in, clt_tensor *block_out, clt_tensor **y);

#endif
