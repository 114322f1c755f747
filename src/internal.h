/* internal.h - library-private structures and helpers shared by the core and every op. */
#ifndef CLT_INTERNAL_H
#define CLT_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "cltrain.h"

#define CLT_MAX_IN 4
#define CLT_MAX_AUX 6
#define CLT_MAX_KERNELS 16
#define CLT_NAME_LEN 64

typedef struct clt__tuner clt__tuner;
typedef struct clt__bincache clt__bincache;
typedef struct clt__gemm_state clt__gemm_state;

typedef struct clt__program_entry {
    char *name;    /* source name, e.g. "conv2d" for cl/conv2d.cl */
    char *options; /* full build options */
    cl_program program;
} clt__program_entry;

struct clt_context {
    cl_context cl;
    cl_device_id dev;
    cl_command_queue queue;
    int queue_profiling;
    clt_device_info info;
    size_t mem_align; /* sub-buffer offset alignment in bytes */
    char *kernel_dir;
    char *cache_dir;
    int tune;
    double tune_budget_s;
    double tune_spent_s;
    int verbose;
    int profile;
    clt__program_entry *programs;
    int nprograms, cap_programs;
    clt__tuner *tuner;
    clt__bincache *bincache;
    clt__gemm_state *gemm;
    char errmsg[8192];
};

/* ---- errors: every helper returns the (negative) status it records, so `return clt__err(...)` works. */
int clt__err(clt_context *ctx, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
int clt__cl_err(clt_context *ctx, cl_int err, const char *what, const char *file, int line);
const char *clt__cl_error_name(cl_int err);
void clt__clear_error(clt_context *ctx);

/* Checks an OpenCL call; on failure records "what failed: CL_XXX" and returns the mapped status. */
#define CLT_CL(ctx, call)                                                                              \
    do {                                                                                               \
        cl_int clt_e_ = (call);                                                                        \
        if (clt_e_ != CL_SUCCESS) return clt__cl_err((ctx), clt_e_, #call, __FILE__, __LINE__);        \
    } while (0)
/* Propagates a negative status. */
#define CLT_TRY(expr)                                                                                  \
    do {                                                                                               \
        int clt_s_ = (expr);                                                                           \
        if (clt_s_ < 0) return clt_s_;                                                                 \
    } while (0)

/* ---- kernel arguments: CLT_SET_ARGS(ctx, kernel, CLT_ARG(a), CLT_ARG(b), ...) sets args 0..n-1. */
typedef struct clt__arg {
    size_t size;
    const void *ptr;
} clt__arg;
#define CLT_ARG(v) ((clt__arg){sizeof(v), &(v)})
#define CLT_LOCAL(bytes) ((clt__arg){(bytes), NULL})
int clt__set_args(clt_context *ctx, cl_kernel k, int n, const clt__arg *args);
#define CLT_SET_ARGS(ctx, k, ...)                                                                      \
    clt__set_args((ctx), (k), (int)(sizeof((clt__arg[]){__VA_ARGS__}) / sizeof(clt__arg)),              \
                  (clt__arg[]){__VA_ARGS__})

/* ---- programs (program.c): sources embedded at build time, or read from kernel_dir. Programs are
 * cached per (source, options) in the context; `options` are added to the common defines. */
int clt__program(clt_context *ctx, const char *source, const char *options, cl_program *out);
/* *out is NULL or a kernel the caller owns, which is released and replaced. */
int clt__kernel(clt_context *ctx, const char *source, const char *options, const char *kernel,
                cl_kernel *out);
/* Source text of cl/<name>.cl (embedded or from kernel_dir); caller frees. */
int clt__source_text(clt_context *ctx, const char *name, char **text, size_t *len);
/* Enqueues a kernel; global sizes are rounded up to multiples of the local ones (kernels bound-check).
 * `local` may be NULL to let the driver choose. `local` is a hint: over the device's or the kernel's
 * work-group limit the driver chooses instead, so a kernel that needs its exact group size must check
 * clt__kernel_wg_max at prepare. */
int clt__launch(clt_context *ctx, cl_kernel k, int dims, const size_t *global, const size_t *local);
size_t clt__round_up(size_t x, size_t m);
/* Largest work-group the kernel can run with on the context's device (CL_KERNEL_WORK_GROUP_SIZE). */
int clt__kernel_wg_max(clt_context *ctx, cl_kernel k, size_t *out);

/* ---- GEMM (gemm.c): row-major C = alpha op(A) op(B) + beta C, batched with strides (batch 1: plain).
 * Chooses CLBlast or the library's own kernels per device and shape (tuned; see tune.c). */
typedef struct clt__gemm_args {
    int trans_a, trans_b;
    size_t m, n, k;
    float alpha, beta;
    cl_mem a, b, c;
    size_t off_a, off_b, off_c; /* in elements */
    size_t lda, ldb, ldc;
    size_t stride_a, stride_b, stride_c; /* in elements, for batch > 1 */
    size_t batch;
} clt__gemm_args;
int clt__gemm(clt_context *ctx, const clt__gemm_args *g);
/* Optional, from an op's prepare(): decides (and, when tuning may measure, tunes) the algorithm for this
 * shape and pre-sizes the packing workspaces, so that clt__gemm with this shape allocates nothing later.
 * Only the shape fields (trans_a/b, m, n, k, batch) of `shape` are read. */
int clt__gemm_prepare(clt_context *ctx, const clt__gemm_args *shape);
void clt__gemm_release(clt_context *ctx);

/* ---- conv2d algorithm (conv2d.c). Chosen per layer when the op is added; a tuner may extend the choice. */
enum clt__conv_algo {
    CLT__CONV_IM2COL = 0,  /* im2col + one GEMM over the whole batch; columns kept for the backward */
    CLT__CONV_DIRECT = 1,  /* stride 1 only: direct kernels on zero-padded planes, no GEMM */
    CLT__CONV_MEASURE = 2, /* not an algorithm: memory for every candidate, chosen by measuring at prepare */
};
typedef struct clt__conv_geom {
    int n, c, h, w;       /* input (N,C,H,W) */
    int co, kh, kw;       /* weight (Cout,C,KH,KW) */
    int sh, sw, ph, pw;   /* stride, padding */
    int oh, ow;           /* output (N,Cout,OH,OW) */
} clt__conv_geom;
/* The algorithm (or CLT__CONV_MEASURE) for a layer being added: $CLTRAIN_CONV_ALGO, then cached tuning
 * decisions, then measuring if tuning may measure, else a default rule. <0 on error. */
int clt__conv2d_algo(clt_context *ctx, const clt__conv_geom *geom);

/* ---- the shape rule of sliding windows (conv2d, pooling: their op functions and their model layers). Output
 * positions of a `k`-cell window moved by `stride` over `in` cells padded by `pad` on both sides (floor mode);
 * 0 when the window does not fit. 64-bit, so that no size can overflow. */
static inline long long clt__window_out(long long in, long long k, long long stride, long long pad)
{
    if (k <= 0 || stride <= 0 || pad < 0 || in + 2 * pad < k) return 0;
    return (in + 2 * pad - k) / stride + 1;
}

/* ---- tensors and graph */
enum clt__tensor_kind {
    CLT__INPUT = 0,  /* written by the caller; persistent */
    CLT__PARAM,      /* trainable, in the parameter arena */
    CLT__BUFFER,     /* persistent non-trainable state (batch-norm running stats) */
    CLT__ACT,        /* output of a node */
    CLT__SAVED,      /* node-private, lives from the node's forward to its backward */
    CLT__FSCRATCH,   /* node-private, lives during the node's forward only */
    CLT__BSCRATCH,   /* node-private, lives during the node's backward only */
    CLT__GRAD,       /* gradient of an ACT/INPUT tensor */
};

typedef struct clt__node clt__node;

/* Node n's attributes as the op's own struct `type` (its size is checked at compile time):
 * CLT__ATTR(n, pool_attr)->kernel. Nodes are zero-filled when created. */
#define CLT__ATTR_BYTES 128
#define CLT__ATTR(n, type)                                                                             \
    ((type *)(void *)((n)->attr.bytes + 0 * sizeof(char[sizeof(type) <= CLT__ATTR_BYTES ? 1 : -1])))

struct clt_tensor {
    int id;
    int kind;
    char name[CLT_NAME_LEN];
    int ndim;
    int shape[4];
    size_t numel;
    clt__node *producer;  /* ACT: the node that writes it */
    clt_tensor *view_of;  /* reshape: shares the memory of this tensor */
    clt_tensor *grad;     /* gradient tensor (persistent for params) */
    clt_tensor *value;    /* for GRAD tensors: whose gradient this is */
    int requires_grad;
    int keep_value, keep_grad;
    /* parameters */
    int init;
    int fan_in, fan_out;
    float init_const;     /* CLT_INIT_ZEROS-like constant fill (batch-norm scale starts at 1) */
    /* Weight decay (clt_tensor_set_weight_decay): `decay` is the op's default for matrices-only decay
     * (clt__add_param: 1 for parameters of 2 or more dims, i.e. conv/dense/matmul weights; 0 for vectors:
     * biases, norm scales and shifts). Ops whose matrix must not decay (embedding tables) set it to 0 after
     * clt__add_param. decay_user is -1 (not set) or the caller's 0/1; decay_eff is what compile decided. */
    int decay, decay_user, decay_eff;
    size_t param_offset;  /* elements into the parameter / buffer arena */
    /* planning */
    int t_def, t_last;    /* life span in the schedule, inclusive; t_last = INT_MAX: forever */
    size_t offset;        /* bytes into the activation arena */
    int placed;
    cl_mem mem;           /* a sub-buffer (or own buffer for inputs); NULL until compile */
    cl_mem slot[2];       /* optimizer state sub-buffers (params) */
};

typedef struct clt__op {
    const char *name;
    /* Called once after memory is allocated: create kernels, set arguments that never change. */
    int (*prepare)(clt_graph *g, clt__node *n);
    int (*forward)(clt_graph *g, clt__node *n, int training);
    /* Writes gradients of inputs i with n->need_dx[i] (accumulating when n->acc_dx[i]) and of params. */
    int (*backward)(clt_graph *g, clt__node *n);
    void (*destroy)(clt__node *n); /* frees priv; kernels in n->k are released by the graph */
} clt__op;

struct clt__node {
    const clt__op *op;
    int id;
    clt_tensor *in[CLT_MAX_IN];
    int nin;
    clt_tensor *out;
    clt_tensor *param[CLT_MAX_AUX];   /* trainable: weight, bias, gamma, beta */
    int nparam;
    clt_tensor *buf[CLT_MAX_AUX];     /* non-trainable persistent */
    int nbuf;
    clt_tensor *saved[CLT_MAX_AUX];   /* forward -> backward */
    int nsaved;
    clt_tensor *fscratch[CLT_MAX_AUX];
    int nfscratch;
    clt_tensor *bscratch[CLT_MAX_AUX];
    int nbscratch;
    /* What backward reads: bit i set = value of in[i]; needs_out = value of out. */
    unsigned bwd_needs_in;
    int bwd_needs_out;
    int no_backward;  /* op has no gradient path (e.g. labels only) */
    /* Set per backward pass by the graph. */
    int need_dx[CLT_MAX_IN];
    int acc_dx[CLT_MAX_IN];
    int in_backward;
    /* Weight sharing: an op whose parameters may also feed later ops (clt_matmul with a parameter operand)
     * sets shares_params and, in backward, adds into param[j]'s gradient when the graph sets acc_param[j]
     * (a later op already wrote its share this pass). */
    int shares_params;
    int acc_param[CLT_MAX_AUX];
    /* The op's own attributes: a struct of the op's file, stored in place (see CLT__ATTR). */
    union {
        unsigned char bytes[CLT__ATTR_BYTES];
        long long align_;
        double align2_;
        void *align3_;
    } attr;
    void *priv;
    cl_kernel k[CLT_MAX_KERNELS];
    double fwd_ms, bwd_ms;
};

/* The algorithm a conv2d node runs (enum clt__conv_algo; CLT__CONV_MEASURE before compile decides), for tests. */
int clt__conv2d_node_algo(const clt__node *n);
/* How a conv2d node's weight gradient is split, for tests: direct, the number of image parts (1: none); im2col,
 * the split-k chunks S (0: none). */
int clt__conv2d_node_split(const clt__node *n);

struct clt_graph {
    clt_context *ctx;
    clt_tensor **tensors;
    int ntensors, cap_tensors;
    clt__node **nodes;
    int nnodes, cap_nodes;
    int compiled;
    int training_alloc; /* gradients allocated */
    clt_compile_settings settings;
    uint64_t steps, passes;
    /* memory */
    cl_mem act_arena;
    size_t act_bytes;
    cl_mem param_arena, grad_arena, slot_arena[2], buf_arena;
    size_t param_elems, buf_elems; /* padded totals */
    cl_kernel k_optim;
    cl_kernel k_fill;
    int nslots;
    /* Parameters that weight decay applies to come first in the arenas: elements [0, decay_elems). */
    size_t decay_elems;
    /* Gradient clipping (optim.c): partial sums of squares, then norm and scale, then scaling. */
    cl_mem clip_buf;       /* CLT__CLIP_PARTS partial sums, then [norm, scale] */
    cl_kernel k_sumsq, k_norm, k_scale;
    /* Gradient accumulation (compile setting accumulate_grads): the sum so far while a backward overwrites
     * grad_arena, and the kernel that adds it back. */
    cl_mem acc_arena;
    cl_kernel k_acc;
    /* per-backward bookkeeping */
    int *contrib; /* scratch: per-tensor count of gradient writes in the current backward */
    int *reached; /* scratch: per-tensor "on a path to the seed" in the current backward */
    int auto_name;
    /* What clt_model_build added (model_build.c), so that a checkpoint of the graph describes itself. */
    char *model_text;          /* canonical text of the model (owned); NULL: no model was built */
    int model_in[3];           /* its input image (c,h,w) */
    int model_classes;
    clt_tensor *model_input;   /* (N,C,H,W) */
    clt_tensor *model_output;  /* logits (N,classes) */
    int model_count;           /* models built on this graph; the fields describe the last one */
    /* Pruning (prune.c): 0/1 per element of the parameter arena, applied around every optimizer step. */
    cl_mem prune_mask;         /* NULL until clt_graph_prune */
    cl_kernel k_prune;
    /* Set while a quantized checkpoint builds its model (quant_file.c): the walk offers it each layer first; 1: it
     * added the layer (an int8 one) itself, 0: build the float layer, < 0: error. */
    int (*layer_hook)(clt_graph *g, const char *keyword, const char *name, clt_tensor *x, clt_tensor **y);
    const void *layer_hook_data;
};

/* The model clt_model_build added to g (the last one if several): its canonical text (owned by g), input
 * image (c,h,w), class count, input and logits tensors; any output pointer may be NULL. CLT_ERR_STATE (no
 * message) when no model was built on g. */
int clt__graph_model(const clt_graph *g, const char **text, int in[3], int *classes, clt_tensor **input,
                     clt_tensor **output);

/* Multiplies an arena of param_elems floats by the pruning mask (no-op before clt_graph_prune; prune.c). */
int clt__prune_apply(clt_graph *g, cl_mem buf);

/* clt_checkpoint_open on `len` bytes in memory (`name` in messages), with the same checks (checkpoint.c); for
 * fuzz targets and tests that link the library's objects. */
int clt__checkpoint_open_mem(const void *data, size_t len, const char *name, clt_checkpoint **out);
/* The same with a key for an encrypted file (NULL: refused as clt_checkpoint_open refuses it). */
int clt__checkpoint_open_mem_key(const void *data, size_t len, const char *name, const unsigned char *key,
                                 clt_checkpoint **out);

/* Graph building helpers for ops (graph.c). All set the error message on failure. */
int clt__check_building(clt_graph *g, const char *op);
int clt__check_tensor(clt_graph *g, const clt_tensor *t, const char *op, const char *what);
int clt__new_tensor(clt_graph *g, int kind, const char *name, int ndim, const int *shape, clt_tensor **out);
/* A node with inputs; its output tensor has `ndim`/`shape`. `name` is the user's name (may be NULL). */
int clt__new_node(clt_graph *g, const clt__op *op, const char *name, int nin, clt_tensor *const *in, int ndim,
                  const int *shape, clt__node **out);
/* Learned parameter of node n: name "<out name>.<suffix>". Its weight-decay default for matrices-only decay
 * (t->decay) is 1 when ndim >= 2, else 0; an op overrides it by setting (*out)->decay after the call. */
int clt__add_param(clt_graph *g, clt__node *n, const char *suffix, int ndim, const int *shape, int init,
                   int fan_in, int fan_out, float init_const, clt_tensor **out);
int clt__add_buffer(clt_graph *g, clt__node *n, const char *suffix, int ndim, const int *shape, float init_const,
                    clt_tensor **out);
/* Marks the graph unusable (every later call fails with CLT_ERR_STATE) when status < 0; returns status. For op
 * functions that fail after clt__new_node (the add_* helpers below do it themselves). */
int clt__graph_poison(clt_graph *g, int status);
/* Node-private device tensors (kinds SAVED, FSCRATCH, BSCRATCH), flat with `numel` floats. */
int clt__add_private(clt_graph *g, clt__node *n, int kind, const char *suffix, size_t numel, clt_tensor **out);
/* Shape string like "(64,3,32,32)" into buf. */
const char *clt__shape_str(const clt_tensor *t, char *buf, size_t len);
/* Zero-fills `count` floats of a tensor's memory starting at element `offset`. */
int clt__fill(clt_graph *g, cl_mem mem, size_t count, float value);

/* Elementwise losses (ops/loss_common.c): node with inputs (a, b) of the same shape and a scalar output, the
 * mean over all elements. Kernels <source>_partial (RED_P partial sums) and <source>_backward come from
 * cl/<source>.cl; the final sum is cl/reduce.cl. The op's prepare calls clt__pair_loss_prepare with its source. */
int clt__pair_loss_new(clt_graph *g, const clt__op *op, const char *fn, clt_tensor *a, const char *a_what,
                       clt_tensor *b, const char *b_what, clt_tensor **out);
int clt__pair_loss_prepare(clt_graph *g, clt__node *n, const char *source);
int clt__pair_loss_forward(clt_graph *g, clt__node *n, int training);
int clt__pair_loss_backward(clt_graph *g, clt__node *n);

/* Internal init kind (init.c): N(0, init_const^2), set by clt_param_init_normal. */
#define CLT__INIT_NORMAL_STD 100
/* Portable RNG (init.c). */
uint64_t clt__splitmix64(uint64_t *state);
double clt__uniform01(uint64_t *state);
double clt__normal(uint64_t *state);
int clt__init_params(clt_graph *g);

/* Optimizer (optim.c). */
#define CLT__CLIP_PARTS 1024 /* work-items of the first stage of the gradient norm (fixed summation order) */
int clt__optim_prepare(clt_graph *g);
int clt__optim_step(clt_graph *g, float lr);
/* Gradient clipping and accumulation over the gradient arena (optim.c). */
int clt__clip_grad_norm(clt_graph *g, float max_norm, float *norm_out);
int clt__grad_accumulate_begin(clt_graph *g); /* acc_arena = grad_arena */
int clt__grad_accumulate_end(clt_graph *g);   /* grad_arena += acc_arena */

/* Host time in milliseconds (monotonic). */
double clt__now_ms(void);
/* strdup that returns NULL on NULL. */
char *clt__strdup(const char *s);

#endif
