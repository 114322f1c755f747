/* cltrain.h - public API of libcltrain: build, train and run neural networks on any OpenCL device. */
#ifndef CLTRAIN_H
#define CLTRAIN_H

/*
 * Conventions (they hold for every function below unless its comment says otherwise):
 *
 *  - Status codes. Functions return 0 (CLT_OK) on success and a negative clt_status on failure. They never
 *    exit, abort or print (except progress/tuning lines the caller asked for with `verbose`).
 *  - Messages. After a failure, clt_errmsg(ctx) returns a human-readable message naming what went wrong
 *    (the OpenCL build log for kernel build failures, the offending shapes for shape errors). Every call
 *    that returns a status and takes a context, a graph (tensors go with their graph) or a GEMM benchmark
 *    (its context) clears the message when it starts, so the message always belongs to the last such call:
 *    after a successful call clt_errmsg is empty (""). A failure on a NULL context, graph or benchmark has no
 *    context to hold a message. A clt_model keeps its own message by the same rule (clt_model_errmsg); a
 *    clt_checkpoint's (clt_checkpoint_errmsg) is that of its open. Functions that take none of these objects
 *    (clt_lr_schedule, clt_device_count, ...) have no message; clt_file_write_atomic and clt_cache_path_trusted
 *    write theirs into the caller's buffer. clt_status_string() names a code.
 *  - Ownership. Objects come in create/destroy pairs; destroy functions accept NULL. Tensors belong to their
 *    graph and die with it. Pointers passed in (names, host arrays) are copied or only read during the call.
 *  - Shapes. Tensors are float32, 1 to 4 dimensions, row-major, images in NCHW order. A `shape` argument is
 *    an array of `ndim` positive ints; a tensor holds at most 2^31-1 values (kernels index with 32-bit ints).
 *  - Threads. A context and everything made from it must be used by one thread at a time.
 */

#include <stddef.h>
#include <stdint.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#if defined(_WIN32) && defined(CLTRAIN_BUILDING)
#define CLT_API __declspec(dllexport)
#elif defined(__GNUC__)
#define CLT_API __attribute__((visibility("default")))
#else
#define CLT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define CLT_VERSION_STRING "0.1.0"

/* What the running library is and was built with, for diagnostics (`cltrain doctor`) and bug reports. */
typedef struct clt_version_info {
    char cltrain[32];            /* the library's version; equals CLT_VERSION_STRING when header and library match */
    int clblast_major, clblast_minor, clblast_patch; /* the CLBlast version the library was compiled against */
    char clblast_library[1024];  /* file of the CLBlast shared library in use; "" if it cannot be told */
    char opencl_library[1024];   /* file of the OpenCL ICD loader in use; "" if it cannot be told */
} clt_version_info;
/* Fills *v (host only: no device, no context). CLT_ERR_INVALID if v is NULL. */
CLT_API int clt_version_get(clt_version_info *v);

/* The cache folder a context uses when its settings give none: $CLTRAIN_CACHE_DIR, else
 * $XDG_CACHE_HOME/cltrain, else $HOME/.cache/cltrain, copied into buf (len bytes, NUL-terminated). Host only.
 * CLT_ERR_INVALID if buf is NULL or none of the variables is set; CLT_ERR_NOMEM if it does not fit. */
CLT_API int clt_cache_dir_default(char *buf, size_t len);
/* Whether the library trusts `path` (a folder with want_dir=1, else a regular file) with what only its owner
 * should write (compiled kernels, tuning decisions): owned by the effective user and not writable by group or
 * others. 1: trusted; 0: not trusted, the reason in `why` ("writable by group or others (mode 0777)"); negative:
 * it cannot be examined (CLT_ERR_IO, the reason in `why`). `why` (whylen bytes) may be NULL. Host only. */
CLT_API int clt_cache_path_trusted(const char *path, int want_dir, char *why, size_t whylen);

/* ---------------------------------------------------------------------------------------------- errors */

typedef enum clt_status {
    CLT_OK = 0,
    CLT_ERR_INVALID = -1,       /* bad argument: NULL where a value is needed, out-of-range number */
    CLT_ERR_SHAPE = -2,         /* tensor shapes do not fit the operation */
    CLT_ERR_NOMEM = -3,         /* host memory allocation failed */
    CLT_ERR_DEVICE_MEMORY = -4, /* device allocation failed or exceeds the device's limits */
    CLT_ERR_NO_DEVICE = -5,     /* no OpenCL platform/device, or none matches the requested one */
    CLT_ERR_OPENCL = -6,        /* an OpenCL call failed (message names the call and the cl_int) */
    CLT_ERR_BUILD = -7,         /* an OpenCL program failed to build (message holds the build log) */
    CLT_ERR_CLBLAST = -8,       /* a CLBlast call failed */
    CLT_ERR_STATE = -9,         /* call not valid now (e.g. adding ops after compile, reading a freed tensor) */
    CLT_ERR_IO = -10,           /* a file could not be opened, read or written */
    CLT_ERR_FORMAT = -11,       /* a file is corrupt, truncated or of an unknown version */
    CLT_ERR_UNSUPPORTED = -12,  /* the device or build lacks a needed feature */
} clt_status;

/* Static English name of a status code ("CLT_ERR_SHAPE: tensor shapes do not fit"). Never NULL. */
CLT_API const char *clt_status_string(int status);

/* ---------------------------------------------------------------------------------------------- devices */

typedef struct clt_device_info {
    int index;             /* global index over all platforms, as used by clt_context_settings.device */
    int platform_index;    /* index of the platform */
    char platform_name[128];
    char platform_version[128];
    char name[128];
    char vendor[128];
    char driver_version[128];
    char device_version[128];
    char opencl_c_version[128];
    int is_gpu, is_cpu;
    unsigned compute_units;
    unsigned max_clock_mhz;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    int local_mem_is_global; /* CL_GLOBAL local memory (most CPU devices): no point staging tiles in it */
    size_t max_work_group_size;
    unsigned preferred_vector_width_float;
    int fp16, fp64;
} clt_device_info;

/* Number of OpenCL devices over all platforms. *count is 0 (and CLT_OK returned) when no platform exists. */
CLT_API int clt_device_count(int *count);
/* Fills *info for device `index` (0 <= index < count). */
CLT_API int clt_device_get_info(int index, clt_device_info *info);

/* ---------------------------------------------------------------------------------------------- context */

typedef struct clt_context clt_context;

enum clt_tune_mode {
    CLT_TUNE_OFF = 0,    /* built-in defaults only, the tuning cache is neither read nor written */
    CLT_TUNE_CACHED = 1, /* use cached decisions, defaults where none; never measures */
    CLT_TUNE_QUICK = 2,  /* measure missing entries with a small candidate set within tune_budget_s */
    CLT_TUNE_FULL = 3,   /* measure missing entries with every candidate */
};
/* GEMMs (dense and convolution layers) run either on cltrain's own packed, register-blocked kernels or on
 * CLBlast, chosen per device and shape by tuning (untuned default: own kernels on CPUs, CLBlast elsewhere).
 * Environment: CLTRAIN_GEMM=clblast or CLTRAIN_GEMM=own forces one path for every GEMM of the process. */

typedef struct clt_context_settings {
    /* Device choice: NULL means $CLTRAIN_DEVICE, else the first GPU, else device 0. A spec is a global
     * index ("1"), "platform:device" ("0:1"), or a case-insensitive substring of the device, vendor or
     * platform name ("nvidia", "pthread"). */
    const char *device;
    /* Load kernels from this folder's *.cl files instead of the copies built into the library
     * (for kernel development). NULL: $CLTRAIN_KERNEL_DIR, else the built-in copies. */
    const char *kernel_dir;
    /* Folder for the tuning and program-binary caches. NULL: $CLTRAIN_CACHE_DIR, else
     * $XDG_CACHE_HOME/cltrain, else ~/.cache/cltrain. Compiled kernel binaries are cached in every tuning
     * mode (their key is exact: device, driver, library version, source text, options); set
     * $CLTRAIN_NO_BINARY_CACHE=1 to turn that off. An unwritable folder only costs the caching. Missing
     * folders are created 0700; binaries (native code) are never loaded from, nor written to, a folder or
     * file that is not owned by the effective user or is writable by group or others, and each carries a
     * keyed BLAKE2b tag binding it to its key. Cached tuning decisions are checked before use (an invalid
     * one is ignored and the default used). */
    const char *cache_dir;
    int tune;             /* enum clt_tune_mode; default CLT_TUNE_QUICK */
    double tune_budget_s; /* seconds of measuring allowed per context in QUICK mode; default 20 */
    int verbose;          /* 1: print tuning decisions and cache events to stderr */
    int profile;          /* 1: finish the queue after each op and time it (see clt_graph_profile); slows steps */
} clt_context_settings;

CLT_API void clt_context_default_settings(clt_context_settings *s);

/* Creates a context on a device chosen by `s` (NULL: defaults). Like sqlite3_open, *out is set even on
 * failure (unless host memory ran out, then it is NULL) so that clt_errmsg(*out) can say why; the caller
 * always calls clt_context_destroy(*out). CLT_ERR_INVALID if an environment variable cltrain reads has a value
 * it does not know (CLTRAIN_GEMM, CLTRAIN_CONV_ALGO, CLTRAIN_NO_BINARY_CACHE, CLTRAIN_GEMM_PARAMS; a
 * CLTRAIN_KERNEL_DIR that is not a folder): the message names the variable, the value and what it takes. */
CLT_API int clt_context_create(const clt_context_settings *s, clt_context **out);

/* Wraps an OpenCL context, device and in-order queue the application already owns. cltrain retains them
 * while it uses them and releases only its own references: the application's objects stay valid. The
 * queue must belong to `context` and `device`; profiling is used only if the queue has it enabled.
 * *out follows the rule of clt_context_create. */
CLT_API int clt_context_create_from_cl(cl_context context, cl_device_id device, cl_command_queue queue,
                                       const clt_context_settings *s, clt_context **out);

/* Releases everything the context created. NULL is a no-op. Graphs made from it must be destroyed first. */
CLT_API void clt_context_destroy(clt_context *ctx);

/* Message of the last failure on this context ("" if none). Never NULL, even for ctx == NULL. */
CLT_API const char *clt_errmsg(const clt_context *ctx);
/* Info about the context's device. */
CLT_API int clt_context_device_info(const clt_context *ctx, clt_device_info *info);
/* OpenCL handles of the context (borrowed: do not release). Any may be NULL. */
CLT_API int clt_context_cl(const clt_context *ctx, cl_context *context, cl_device_id *device,
                           cl_command_queue *queue);
/* Waits for all queued work. */
CLT_API int clt_context_finish(clt_context *ctx);

/* ---------------------------------------------------------------------------------------------- graph */

typedef struct clt_graph clt_graph;
typedef struct clt_tensor clt_tensor; /* owned by its graph */

/* An empty graph. Build it with the op functions, then clt_graph_compile, then run steps. An op function or
 * clt_graph_compile that fails on its arguments changes nothing; one that fails after it started changing
 * the graph (out of memory, a parameter too large, device memory, a kernel build) leaves a graph on which
 * every later call fails with CLT_ERR_STATE: destroy it and build a new one. */
CLT_API int clt_graph_create(clt_context *ctx, clt_graph **out);
/* Frees the graph, its tensors and all its device memory. NULL is a no-op. */
CLT_API void clt_graph_destroy(clt_graph *g);
/* The context the graph was created on (for clt_errmsg after a failed call that takes only the graph). */
CLT_API clt_context *clt_graph_context(const clt_graph *g);

/* A tensor the caller fills before each forward pass (data, labels, targets). Labels for
 * clt_softmax_cross_entropy are class indices stored as floats. `name` may be NULL. */
CLT_API int clt_input(clt_graph *g, const char *name, int ndim, const int *shape, clt_tensor **out);

/* Tensor accessors. These never fail; on a NULL tensor they return 0 / "". */
CLT_API const char *clt_tensor_name(const clt_tensor *t);
CLT_API int clt_tensor_ndim(const clt_tensor *t);
CLT_API int clt_tensor_dim(const clt_tensor *t, int i);
CLT_API size_t clt_tensor_numel(const clt_tensor *t);

/* ---- initializers for learned parameters (seeded, portable: same seed, same weights everywhere) */
enum clt_init {
    CLT_INIT_DEFAULT = 0,   /* He-normal for layers followed by ReLU-like use: the op's documented default */
    CLT_INIT_HE_NORMAL,     /* N(0, 2/fan_in) */
    CLT_INIT_HE_UNIFORM,    /* U(-sqrt(6/fan_in), +) */
    CLT_INIT_GLOROT_NORMAL, /* N(0, 2/(fan_in+fan_out)) */
    CLT_INIT_GLOROT_UNIFORM,/* U(-sqrt(6/(fan_in+fan_out)), +) */
    CLT_INIT_ZEROS,
};

/* ---- ops. Each adds one node and returns its output tensor in *out. Learned parameters are created and
 * owned by the graph, named "<name>.weight", "<name>.bias" etc. (`name` may be NULL: an automatic one). */

typedef struct clt_conv2d_params {
    int out_channels;
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    int pad_h, pad_w;
    int bias;  /* 1: learnable per-output-channel bias (default) */
    int init;  /* enum clt_init for the weights; default He-normal. Biases start at zero. */
} clt_conv2d_params;
/* Square kernel `k`, stride 1, no padding, bias on, He-normal. */
CLT_API void clt_conv2d_default_params(clt_conv2d_params *p, int out_channels, int k);
/* x (N,C,H,W) -> (N,out_channels,OH,OW), OH = (H + 2*pad_h - kernel_h)/stride_h + 1.
 * Algorithm per layer: im2col + GEMM, or direct kernels (stride 1, padding < kernel, kernel up to 7x7).
 * A cached tuning decision for the layer's shape is used when there is one; otherwise, when tuning may
 * measure, both are timed (forward + backward) and checked against each other at compile, and the
 * decision is cached; otherwise direct on CPU devices, im2col elsewhere. $CLTRAIN_CONV_ALGO=im2col or
 * direct forces one (direct falls back to im2col where it does not apply); "auto" or unset: as above. */
CLT_API int clt_conv2d(clt_graph *g, clt_tensor *x, const clt_conv2d_params *p, const char *name,
                       clt_tensor **out);

/* x (N,C,H,W) -> (N,C,OH,OW), OH = (H + 2*pad - kernel)/stride + 1; pad <= kernel/2 (as in PyTorch).
 * Padding cells are ignored by max pooling; average pooling divides by the full window size (padding
 * counted as zeros, like PyTorch's default count_include_pad=True). */
CLT_API int clt_max_pool2d(clt_graph *g, clt_tensor *x, int kernel, int stride, int pad, clt_tensor **out);
CLT_API int clt_avg_pool2d(clt_graph *g, clt_tensor *x, int kernel, int stride, int pad, clt_tensor **out);
/* x (N,C,H,W) -> (N,C): mean over each channel's H*W values. */
CLT_API int clt_global_avg_pool(clt_graph *g, clt_tensor *x, clt_tensor **out);

/* Fully connected: x (N, F...) is read as (N, F) with F the product of the other dims; -> (N, units).
 * y = x W^T + b with W (units, F). GEMMs run on cltrain's own kernels or CLBlast (see enum clt_tune_mode). */
CLT_API int clt_dense(clt_graph *g, clt_tensor *x, int units, int bias, int init, const char *name,
                      clt_tensor **out);
/* Dense layer on the last dimension: x (..., F) -> (..., units), y = x W^T + b with W (units, F): the same
 * GEMMs as clt_dense over all leading positions at once (e.g. (B,T,C) -> (B,T,units) without flattening T). */
CLT_API int clt_linear(clt_graph *g, clt_tensor *x, int units, int bias, int init, const char *name,
                       clt_tensor **out);
/* Matrix product op(a) op(b), op = transpose when trans_a / trans_b is set. a (..., M, K) ((..., K, M) with
 * trans_a); b (..., K, N) with a's leading dimensions (a batched product, one GEMM per batch entry), or one
 * matrix (K, N) ((N, K) with trans_b) for every row of an untransposed a; out (..., M, N). An operand may be
 * a learned parameter of an op that can share it (clt_embedding's table: weight tying, e.g. logits =
 * matmul(h, wte, 0, 1)); its gradient is then the sum over its uses. GEMMs run as clt_dense's. */
CLT_API int clt_matmul(clt_graph *g, clt_tensor *a, clt_tensor *b, int trans_a, int trans_b, clt_tensor **out);
/* Adds a learnable bias per channel (dim 1) of x (N,C) or (N,C,H,W). */
CLT_API int clt_bias_add(clt_graph *g, clt_tensor *x, const char *name, clt_tensor **out);

/* Elementwise activations, any shape. */
CLT_API int clt_relu(clt_graph *g, clt_tensor *x, clt_tensor **out);
CLT_API int clt_leaky_relu(clt_graph *g, clt_tensor *x, float negative_slope, clt_tensor **out);
CLT_API int clt_sigmoid(clt_graph *g, clt_tensor *x, clt_tensor **out);
CLT_API int clt_tanh(clt_graph *g, clt_tensor *x, clt_tensor **out);
CLT_API int clt_gelu(clt_graph *g, clt_tensor *x, clt_tensor **out); /* exact: x * Phi(x) */
/* GPT-2's approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (PyTorch's approximate="tanh"). */
CLT_API int clt_gelu_tanh(clt_graph *g, clt_tensor *x, clt_tensor **out);
/* Softmax over dim 1 (classes/channels) of (N,C) or (N,C,H,W), at each position. */
CLT_API int clt_softmax(clt_graph *g, clt_tensor *x, clt_tensor **out);
/* Inverted dropout: in training passes zeroes each value with probability p and scales the rest by
 * 1/(1-p); identity in evaluation passes. Masks come from the graph's seed and its count of training
 * forward passes (the `passes` of clt_graph_get_counters); the backward pass reuses its forward's mask. */
CLT_API int clt_dropout(clt_graph *g, clt_tensor *x, float p, clt_tensor **out);
/* Batch normalization over dim 1 of (N,C) or (N,C,H,W) with learnable scale (1) and shift (0).
 * Training passes use batch statistics and update running ones: r = (1-momentum) r + momentum * batch
 * (unbiased variance for the running value, like PyTorch); evaluation passes use the running ones. */
CLT_API int clt_batch_norm(clt_graph *g, clt_tensor *x, float momentum, float eps, const char *name,
                           clt_tensor **out);
/* Token embedding: ids (any shape, at most 3-D, e.g. (B,T)) hold integers 0..vocab-1 stored as floats; out is
 * ids' shape + (dim), the rows of a learned table "<name>.weight" (vocab, dim) that starts N(0, 1) (as in
 * PyTorch; see clt_param_init_normal). A forward pass with an id that is not an integer in [0, vocab) fails with
 * CLT_ERR_INVALID naming the position and the value. The table's gradient sums, for each row, the gradients of
 * the positions holding its id in position order: the same result on every run and device (no atomics). The
 * table may also feed clt_matmul (weight tying): its gradient then sums both uses. Under decay_matrices_only the
 * table does not decay (as the position table of clt_pos_embedding). */
CLT_API int clt_embedding(clt_graph *g, clt_tensor *ids, int vocab, int dim, const char *name, clt_tensor **out);
/* Learned position embedding: x (..., T, C) + rows 0..T-1 of a table "<name>.weight" (max_t, C), the same for
 * every sequence (max_t >= T: the model's context length, so that graphs of shorter contexts share the table);
 * starts N(0, 1) (see clt_param_init_normal). */
CLT_API int clt_pos_embedding(clt_graph *g, clt_tensor *x, int max_t, const char *name, clt_tensor **out);
/* The parameter or buffer (state tensor) named `name` ("fc1.weight"), or NULL. */
CLT_API clt_tensor *clt_graph_param(const clt_graph *g, const char *name);
/* Sets a learned parameter's initialization (before compile) to N(0, std^2), e.g. GPT-2's 0.02. */
CLT_API int clt_param_init_normal(clt_graph *g, clt_tensor *param, float std);
/* Causal multi-head self-attention, fused: qkv (B, T, 3C) holds q, k and v side by side (the output of one
 * clt_linear with 3C units, as GPT-2's c_attn); head h uses columns h*C/H.. of each. For each head,
 * softmax(q k^T / sqrt(C/H)) over keys 0..i only (the causal mask) times v; heads merged: out (B, T, C). Output
 * row i depends on rows 0..i alone (bit for bit). Memory: 2 B*H*T^2 floats (probabilities kept for backward,
 * their gradient). Sums run in a fixed order: deterministic. Head size at most 256. */
CLT_API int clt_causal_attention(clt_graph *g, clt_tensor *qkv, int heads, clt_tensor **out);
/* Layer normalization over the last dimension C of x (any shape): y = (x - mean) / sqrt(var + eps) * weight
 * + bias per row, with learnable weight (starts at 1) and bias (starts at 0), both (C); biased variance (as
 * in PyTorch). Gradients of every row and column are summed in a fixed order (deterministic). */
CLT_API int clt_layer_norm(clt_graph *g, clt_tensor *x, float eps, const char *name, clt_tensor **out);
/* a + b, same shapes (residual connections). */
CLT_API int clt_add(clt_graph *g, clt_tensor *a, clt_tensor *b, clt_tensor **out);
/* Same data, new shape with the same element count. One entry of `shape` may be -1 (inferred). */
CLT_API int clt_reshape(clt_graph *g, clt_tensor *x, int ndim, const int *shape, clt_tensor **out);
/* (N, ...) -> (N, product of the rest). */
CLT_API int clt_flatten(clt_graph *g, clt_tensor *x, clt_tensor **out);

/* ---- losses: each returns a scalar tensor (shape (1)) holding the batch mean. */
/* logits (N,K); labels (N) class indices 0..K-1 stored as floats. With smoothing s the target is
 * (1-s) one-hot + s/K. A label out of range makes the forward pass fail with CLT_ERR_INVALID. */
CLT_API int clt_softmax_cross_entropy(clt_graph *g, clt_tensor *logits, clt_tensor *labels,
                                      float label_smoothing, clt_tensor **out);
/* Knowledge distillation: student logits (N,K), the teacher's logits (N,K) for the same images (an input the
 * application fills, e.g. from an evaluation graph of the teacher; no gradient flows into it) and labels (N):
 * alpha * T^2 * KL(softmax(teacher/T) || softmax(logits/T)) + (1 - alpha) * CE(logits, labels), each summed
 * over the classes and averaged over the batch (the KL is not averaged over classes; T^2 keeps its gradient's
 * scale independent of T, as in Hinton et al. 2015). temperature in (0, 1000], alpha in [0, 1]; alpha = 0 is the
 * plain cross-entropy. A label out of range makes the forward pass fail with CLT_ERR_INVALID. */
CLT_API int clt_distill_kl(clt_graph *g, clt_tensor *logits, clt_tensor *teacher, clt_tensor *labels,
                           float temperature, float alpha, clt_tensor **out);
/* Binary cross-entropy on logits, numerically stable; logits and targets of the same shape, targets in
 * [0,1]; mean over all elements. */
CLT_API int clt_bce_with_logits(clt_graph *g, clt_tensor *logits, clt_tensor *targets, clt_tensor **out);
/* Mean squared error over all elements. */
CLT_API int clt_mse(clt_graph *g, clt_tensor *pred, clt_tensor *target, clt_tensor **out);

/* ---------------------------------------------------------------------------------------------- models */

/* A network description in cltrain's text format (what `cltrain --model FILE` reads and checkpoints store).
 *
 * Format: one layer per line, applied in order to the input image (C,H,W); `#` starts a comment; blank lines
 * are ignored; a UTF-8 byte-order mark at the start is skipped. Arguments are positional numbers then
 * key=value options (each option at most once).
 *
 *   conv OUT K [stride=1] [pad=0|same] [bias=1]   KxK convolution with OUT channels; pad=same keeps the size
 *                                                 (odd K; with stride S the size becomes ceil(H/S))
 *   relu | sigmoid | tanh | gelu | gelu_tanh      activations (gelu_tanh: GPT-2's tanh approximation)
 *   leaky_relu [SLOPE=0.01]
 *   maxpool K [stride=K] [pad=0]                  pooling (floor mode)
 *   avgpool K [stride=K] [pad=0]
 *   global_avgpool                                (C,H,W) -> C
 *   flatten                                       (C,H,W) -> C*H*W
 *   dense UNITS|classes [bias=1]                  fully connected (flattens an image input)
 *   dropout [P=0.5]                               inverted dropout, training passes only
 *   batchnorm [momentum=0.1] [eps=1e-5]
 *   residual {  ...  }                            adds the block's input to its output (same shape)
 *   residual project {  ...  }                    the shortcut goes through a 1x1 convolution (stride if the
 *                                                 size shrinks), or a dense layer for vectors
 *   train [batch=N] [optimizer=sgd|adam|adamw] [lr=X] [momentum=X] [nesterov=0|1] [weight_decay=X]
 *         [epochs=N] [beta1=X] [beta2=X] [warmup=N] [min_lr=X] [clip=X] [steps=N]
 *                                                 training defaults (an application's options override them)
 *
 * A language model is one line instead of layers (built by clt_model_build_lm, not clt_model_build):
 *
 *   gpt layers=N heads=N dim=N block=T [mlp=4] [bias=1] [tied=1] [dropout=0]
 *                                                 a GPT-2 style decoder: N pre-norm blocks of causal
 *                                                 self-attention and an MLP, context T (see clt_model_build_lm)
 *
 * Presets gpt-tiny (gpt layers=4 heads=4 dim=128 block=64, train batch=12 adamw lr 1e-3 betas 0.9/0.99 wd 0.1
 * warmup=100 min_lr=1e-4 clip=1 steps=2000) and gpt-small (6 layers, 6 heads, 384 dims, block 256, batch 64,
 * dropout 0.2, steps 5000) are nanoGPT's character-level shapes.
 *
 * The network must end with `classes` values per image (usually `dense classes`); a loss such as
 * clt_softmax_cross_entropy applies softmax. Messages have the form "ORIGIN:LINE: message". The canonical
 * text (clt_model_text) spells out every option, so that a stored description keeps meaning the same network
 * when defaults change. Layers are named conv1, conv2, fc1, bn1, res1 ... in order (parameters
 * "conv1.weight", "fc2.bias", "res1.proj.weight").
 *
 * Sizes are bounded: see CLT_MODEL_MAX_ACTIVATION_BYTES and CLT_MODEL_MAX_MACS below.
 *
 * A clt_model is plain host data: it needs no context and may be used for any number of graphs. Like a context,
 * it is used by one thread at a time (clt_model_check records its message in the model). */
typedef struct clt_model clt_model;

/* Parses `text`; `origin` (NULL: "model") names it in messages and gives the model its name (the base name
 * without extension). Like clt_context_create, *out is set even on failure (NULL only when host memory ran
 * out) so that clt_model_errmsg(*out) says why; the caller always calls clt_model_destroy(*out). A model that
 * failed to parse makes every other model function fail with CLT_ERR_STATE. */
CLT_API int clt_model_parse(const char *text, const char *origin, clt_model **out);
/* A built-in description by name (see clt_model_preset_name); *out as for clt_model_parse. */
CLT_API int clt_model_preset(const char *name, clt_model **out);
/* Layer line i (0, 1, ...) of the format with its arguments and defaults, e.g. "conv OUT K [stride=1] [pad=0|same]
 * [bias=1]", then the residual and train lines; NULL past the last (for help texts). */
CLT_API const char *clt_model_layer_usage(int i);
/* Name of preset i (0, 1, ...): "seed-cnn", "mlp", "cnn"; NULL past the last. */
CLT_API const char *clt_model_preset_name(int i);
/* A preset name, else a file in the text format (a regular file of at most 1 MiB; FIFOs, devices and
 * folders are refused without being read). *out as for clt_model_parse. */
CLT_API int clt_model_load(const char *name_or_path, clt_model **out);
CLT_API void clt_model_destroy(clt_model *m);
/* Message of the model's last failure ("" after success). Never NULL, even for m == NULL. */
CLT_API const char *clt_model_errmsg(const clt_model *m);
/* The canonical text, owned by the model ("" if it failed to parse). */
CLT_API const char *clt_model_text(const clt_model *m);
/* The model's name: the preset name or the origin's base name ("" for NULL). */
CLT_API const char *clt_model_name(const clt_model *m);

/* Training defaults from the description's `train` line. Values not set there read as: batch 0,
 * optimizer -1 (else enum clt_optimizer_type), lr 0, momentum -1, nesterov -1, weight_decay -1, epochs 0. */
typedef struct clt_model_train_defaults {
    int batch;
    int optimizer;
    float lr;
    float momentum;
    int nesterov;
    float weight_decay;
    int epochs;
    /* For step-counted training (language models); not set: beta1/beta2/min_lr/clip -1, warmup -1, steps 0. */
    float beta1, beta2; /* Adam/AdamW */
    int warmup;         /* linear warm-up steps of the learning rate */
    float min_lr;       /* cosine decay from lr to min_lr at `steps` */
    float clip;         /* clip gradients to this global norm (0: off) */
    int steps;          /* optimizer steps of a run */
} clt_model_train_defaults;
/* (The type and the function cannot share a name in C.) */
CLT_API int clt_model_get_train_defaults(const clt_model *m, clt_model_train_defaults *d);

/* A language model: the description's `gpt` line (see the format above). */
typedef struct clt_model_lm_info {
    int layers, heads, dim; /* transformer blocks, attention heads, embedding width C */
    int block;              /* context length T (the position table's size) */
    int mlp;                /* MLP hidden width as a multiple of dim */
    int bias;               /* biases in the linear layers and layer norms' shift */
    int tied;               /* output projection = token embedding table, transposed */
    float dropout;          /* after the embeddings, each residual branch (attention output, MLP) */
} clt_model_lm_info;
/* Fills *info when m is a language model (returns 1), else returns 0; negative on a bad or unparsed model. */
CLT_API int clt_model_lm(const clt_model *m, clt_model_lm_info *info);
/* Adds the GPT described by m to g on top of `ids` (B, T) (T <= block; token ids 0..vocab-1 as floats) and
 * returns the logits (B*T, vocab) in *logits (give clt_softmax_cross_entropy targets reshaped to (B*T)). The
 * network is GPT-2's (pre-norm blocks: x += attn(ln_1(x)); x += mlp(ln_2(x)); ln_f; head), as nanoGPT builds it:
 * wte and wpe embeddings, per block ln_1, attn.c_attn (C -> 3C), clt_causal_attention, attn.c_proj, ln_2,
 * mlp.c_fc (C -> mlp*C), clt_gelu_tanh, mlp.c_proj; ln_f; the head (tied: clt_matmul with wte, else lm_head).
 * Parameters are named wte.weight, wpe.weight, h0.ln_1.weight, h0.attn.c_attn.weight, ..., ln_f.bias,
 * lm_head.weight; weights start N(0, 0.02), the residual projections (c_proj) N(0, 0.02/sqrt(2*layers)),
 * biases 0, layer norms 1 and 0. Errors as for clt_model_build; CLT_ERR_INVALID for a model without a gpt line. */
CLT_API int clt_model_build_lm(clt_graph *g, const clt_model *m, clt_tensor *ids, int vocab, clt_tensor **logits);

/* What a description may ask for, per image; clt_model_check and clt_model_build refuse more with a message
 * naming the layer (a mistyped size must not run a machine out of memory or compile for hours). */
#define CLT_MODEL_MAX_ACTIVATION_BYTES (1LL << 30) /* float32 outputs of the input and all layers, summed */
#define CLT_MODEL_MAX_MACS 5e10                    /* forward multiply-adds of the whole network */

typedef struct clt_model_info {
    long long params;   /* learned parameters */
    double macs;        /* forward multiply-adds per image (convolutions and dense layers) */
    int layers;         /* layer lines */
    size_t table_bytes; /* size the whole per-layer table needs, with its terminating NUL */
} clt_model_info;
/* Checks the description against an input image (c,h,w) and `classes` outputs without building anything
 * (the same shape rules as clt_model_build). `info` may be NULL. With `table` (table_len bytes) it also
 * writes a per-layer table (line, layer, output shape, parameters, multiply-adds), truncated to fit and
 * always NUL-terminated; info->table_bytes says how much the whole table needs. After a failure `info`
 * and `table` hold what the check got to (the table up to the failing layer). Errors (CLT_ERR_SHAPE for a
 * network that does not fit the input) in clt_model_errmsg(m), naming the line. */
CLT_API int clt_model_check(clt_model *m, int c, int h, int w, int classes, clt_model_info *info, char *table,
                            size_t table_len);
/* Adds the network to g on top of `input` (N,C,H,W) and returns the logits (N,classes) in *logits. The whole
 * description is checked first: a shape error changes nothing in g. Errors (naming the line) go to
 * clt_errmsg(clt_graph_context(g)); a failure while adding ops leaves g unusable, as for op functions. The graph
 * records the model's canonical text, input shape and class count (for self-describing checkpoints). */
CLT_API int clt_model_build(clt_graph *g, const clt_model *m, clt_tensor *input, int classes, clt_tensor **logits);

/* ---------------------------------------------------------------------------------------------- compile */

enum clt_optimizer_type { CLT_OPT_SGD = 0, CLT_OPT_ADAM = 1, CLT_OPT_ADAMW = 2 };

typedef struct clt_optimizer_settings {
    int type;           /* enum clt_optimizer_type */
    float lr;           /* default learning rate; clt_graph_step takes the one to use */
    float momentum;     /* SGD: 0 = plain SGD */
    int nesterov;       /* SGD: Nesterov momentum (needs momentum > 0) */
    float beta1, beta2, eps; /* Adam/AdamW */
    float weight_decay; /* SGD/Adam: L2, adds wd*w to the gradient; AdamW: decoupled, w -= lr*wd*w */
    float l1;           /* L1 penalty: adds l1*sign(w) to the gradient (every parameter, whatever its decay flag) */
    /* Which parameters weight_decay applies to. 0 (default): every parameter, as PyTorch's optimizers do
     * with one parameter group. 1: matrices only, the GPT-2/nanoGPT rule: weights of conv2d, dense and other
     * parameters of 2 or more dimensions decay; biases, batch/layer-norm scales and shifts (vectors) and
     * embedding tables do not. A parameter's own flag (clt_tensor_set_weight_decay) overrides either rule. */
    int decay_matrices_only;
} clt_optimizer_settings;
/* Defaults for `type`: lr 0.01 (SGD) or 0.001 (Adam/AdamW), momentum 0, betas 0.9/0.999, eps 1e-8,
 * weight decay 0 (AdamW: 0.01), l1 0, decay_matrices_only 0. */
CLT_API void clt_optimizer_default_settings(clt_optimizer_settings *s, int type);

typedef struct clt_compile_settings {
    uint64_t seed;                /* parameter initialization and dropout masks */
    int training;                 /* 1: allocate gradients and optimizer state (default 1) */
    clt_optimizer_settings optimizer;
    /* 1: allocate a second gradient arena (one more copy of the parameters' size) so that
     * clt_graph_backward_ex can accumulate gradients over micro-batches. Default 0. */
    int accumulate_grads;
} clt_compile_settings;
CLT_API void clt_compile_default_settings(clt_compile_settings *s);

/* Sets whether weight decay applies to one learned parameter (a tensor of clt_graph_state_tensor with
 * trainable = 1, e.g. "fc1.bias"): enabled 1 or 0. It overrides the rule chosen by
 * clt_optimizer_settings.decay_matrices_only for this parameter. Before compile only (the graph lays out
 * decayed parameters together): CLT_ERR_STATE after it. CLT_ERR_INVALID for a tensor that is not a
 * parameter of g or enabled other than 0/1. The flag is a training setting: checkpoints do not store it. */
CLT_API int clt_tensor_set_weight_decay(clt_graph *g, clt_tensor *param, int enabled);
/* Whether weight decay applies to `param` in the compiled training graph (*enabled = 0 or 1), after the
 * flag and the rule. CLT_ERR_STATE before compile or on an inference graph; CLT_ERR_INVALID as above. */
CLT_API int clt_tensor_weight_decay(const clt_graph *g, const clt_tensor *param, int *enabled);

/* Marks a tensor whose value (and, with grad=1, its gradient) must stay readable after a pass. Other
 * intermediate tensors share device memory once dead and cannot be read. Losses and parameters are always
 * kept. Keeping the gradient of an input makes the backward pass compute it. Before compile only. */
CLT_API int clt_graph_keep(clt_graph *g, clt_tensor *t, int grad);

/* Plans device memory (tensors whose lifetimes do not overlap share memory), allocates it all at once,
 * builds the kernels, and initializes parameters from the seed. After this no op can be added, and
 * forward/backward/step allocate nothing: GEMM workspaces and CLBlast's temporary buffers are sized here too
 * (batched GEMMs on the CLBlast path then run entry by entry on that buffer, since CLBlast's batched GEMM
 * would allocate its own in every call). The one exception: when CLBlast's kernel parameters change after
 * this compile (a context compiled later in the process tunes them), a GEMM whose buffer became too small
 * lets CLBlast allocate per call. Fails with CLT_ERR_DEVICE_MEMORY if the plan does not fit. */
CLT_API int clt_graph_compile(clt_graph *g, const clt_compile_settings *s);
/* Bytes of device memory the compiled graph holds (parameters, gradients, optimizer state, activations). */
CLT_API int clt_graph_memory(const clt_graph *g, size_t *param_bytes, size_t *activation_bytes);

/* ---------------------------------------------------------------------------------------------- run */

/* Copies `count` floats into an input, parameter or buffer (state) tensor (count must equal its numel).
 * Blocking. */
CLT_API int clt_tensor_write(clt_graph *g, clt_tensor *t, const float *data, size_t count);
/* Reads a kept tensor's value (or, with grad=1, its gradient) into `data` (count == numel). Blocking. */
CLT_API int clt_tensor_read(clt_graph *g, clt_tensor *t, int grad, float *data, size_t count);

/* Forward pass over the whole graph. training=1: dropout active, batch norm uses batch statistics. */
CLT_API int clt_graph_forward(clt_graph *g, int training);
/* Backward pass from the scalar `loss` (seed 1). Parameter gradients are overwritten, not accumulated.
 * Repeated backward passes: any number of clt_graph_backward / clt_graph_backward_from calls, from any seeds
 * in any order, may follow one clt_graph_forward; each gives exactly (bit for bit) the gradients it gives as
 * the first backward after that forward. The memory plan keeps everything a backward reads (saved tensors,
 * the forward values ops differentiate from) until the end of the backward phase for this. Change
 * parameters (clt_graph_step, clt_tensor_write) only before the next forward: a backward after such a change
 * mixes the last forward's values with the new parameters. */
CLT_API int clt_graph_backward(clt_graph *g, clt_tensor *loss);
/* Backward pass from the scalar `loss` with seed `loss_scale` (finite): the gradients are those of
 * loss_scale * loss. accumulate = 0: parameter gradients are overwritten (clt_graph_backward is
 * loss_scale 1, accumulate 0). accumulate = 1: they are added to the parameter gradients already there
 * (needs a graph compiled with accumulate_grads = 1, else CLT_ERR_STATE; costs one copy and one addition over
 * the parameters). Gradients of kept inputs and activations are always overwritten.
 *
 * Gradient accumulation over K micro-batches of B/K rows, equal to one batch of B up to float summation order:
 *     for m in 0..K-1: write micro-batch m; clt_graph_forward(g, 1); clt_graph_backward_ex(g, loss, 1.0f/K, m > 0);
 *     (optionally clt_graph_clip_grad_norm), then one clt_graph_step.
 * (or clt_graph_zero_grad first and accumulate = 1 for every micro-batch). The graph is built for B/K rows.
 * Equality holds for models whose rows are independent: batch normalization normalizes each micro-batch
 * with its own statistics (and updates its running statistics once per micro-batch), and dropout draws a new
 * mask per forward pass, so such models train differently (by design, as in PyTorch). */
CLT_API int clt_graph_backward_ex(clt_graph *g, clt_tensor *loss, float loss_scale, int accumulate);
/* Sets every parameter gradient to zero (then clt_graph_backward_ex with accumulate = 1 adds to zeros).
 * CLT_ERR_STATE on an uncompiled or inference graph. */
CLT_API int clt_graph_zero_grad(clt_graph *g);
/* Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: norm = sqrt(sum of the squares of
 * every parameter gradient); if norm > max_norm all of them are multiplied by max_norm / (norm + 1e-6),
 * otherwise left unchanged. Computed on the device (a reduction over the gradient arena, then the scaling,
 * with no host round trip); with norm_out non-NULL the norm is read back into *norm_out (a blocking read of
 * one value), with NULL nothing waits. A norm that is not finite (NaN or inf gradients) leaves the gradients
 * as they are. max_norm = INFINITY only measures. Call it between the backward pass(es) and clt_graph_step.
 * Errors: CLT_ERR_INVALID for max_norm not > 0 (NaN included), CLT_ERR_STATE on an uncompiled or inference
 * graph. The summation order is fixed: same gradients, same norm, on every run. */
CLT_API int clt_graph_clip_grad_norm(clt_graph *g, float max_norm, float *norm_out);
/* Backward pass from any tensor `t` with the given upstream gradient dL/dt (count == numel(t)). */
CLT_API int clt_graph_backward_from(clt_graph *g, clt_tensor *t, const float *grad, size_t count);
/* One optimizer update of every parameter with learning rate `lr`, from the last backward's gradients. */
CLT_API int clt_graph_step(clt_graph *g, float lr);

/* ---- learning-rate schedule: linear warmup, then cosine decay (nanoGPT's get_lr). */
typedef struct clt_lr_schedule_settings {
    float lr;              /* peak (base) learning rate, >= 0 */
    float min_lr;          /* floor of the decay, 0 <= min_lr <= lr */
    uint64_t warmup_steps; /* steps 0 .. warmup_steps-1 ramp up: lr * (step + 1) / (warmup_steps + 1) */
    uint64_t decay_steps;  /* the cosine ends here: min_lr from then on. 0: no decay (lr after the warmup);
                            * otherwise decay_steps >= warmup_steps */
} clt_lr_schedule_settings;
/* lr, min_lr 0, no warmup, no decay: a constant learning rate. */
CLT_API void clt_lr_schedule_default_settings(clt_lr_schedule_settings *s, float lr);
/* The learning rate for 0-based optimizer step `step` (clt_graph_get_counters' `steps` before the step),
 * into *lr_out, in double precision then rounded:
 *     step < warmup:          lr * (step + 1) / (warmup + 1)
 *     step > decay_steps:     min_lr
 *     otherwise:              min_lr + 0.5 * (1 + cos(pi * (step - warmup) / (decay_steps - warmup))) * (lr - min_lr)
 * (decay_steps == warmup: lr at that step, min_lr after it). This is nanoGPT's get_lr (train.py, since its
 * warmup starts at lr/(warmup+1) rather than 0). CLT_ERR_INVALID (no message: there is no context) for NULL
 * arguments, lr or min_lr negative or not finite, min_lr > lr, or 0 < decay_steps < warmup_steps. */
CLT_API int clt_lr_schedule(const clt_lr_schedule_settings *s, uint64_t step, float *lr_out);

/* ---- parameters and state (for checkpoints). A state tensor is a parameter (trainable) or a buffer
 * such as batch-norm running statistics (not trainable). */
CLT_API int clt_graph_state_count(const clt_graph *g);
/* The i-th state tensor, or NULL if out of range. `trainable` may be NULL. */
CLT_API clt_tensor *clt_graph_state_tensor(const clt_graph *g, int i, int *trainable);
/* Optimizer slot `slot` (0: first moment / momentum, 1: second moment) of a trainable state tensor. Slots
 * that the optimizer does not use read as zeros and writes to them are ignored. */
CLT_API int clt_tensor_read_slot(clt_graph *g, clt_tensor *t, int slot, float *data, size_t count);
CLT_API int clt_tensor_write_slot(clt_graph *g, clt_tensor *t, int slot, const float *data, size_t count);
/* Number of optimizer steps and forward training passes done (drives Adam bias correction and dropout). */
CLT_API int clt_graph_get_counters(const clt_graph *g, uint64_t *steps, uint64_t *passes);
CLT_API int clt_graph_set_counters(clt_graph *g, uint64_t steps, uint64_t passes);

/* ---- the flat arenas (for data-parallel training: an application averages gradients over processes with any
 * communicator, MPI, NCCL or its own; see <cltrain_mpi.h> for a ready MPI one). A compiled graph keeps all
 * parameters in one device buffer, their gradients in a second with the identical layout, each optimizer slot in
 * another, and non-trainable buffers (batch-norm running statistics) in one more. Each function returns the
 * buffer, the byte offset at which the arena starts in it and its length in floats; any pointer may be NULL.
 * The length includes alignment padding between tensors (padding of the gradient arena holds zeros, and the
 * optimizer never writes padding of parameters, so reducing or broadcasting the whole arena is safe).
 * Ownership: the graph owns the buffers (do not release them; they live until clt_graph_destroy).
 * Ordering: the graph enqueues all its work on the context's queue (clt_context_cl); commands enqueued there
 * after clt_graph_backward see its gradients, and a clt_graph_step enqueued after writes to the gradient arena
 * uses the written values. Work on another queue must synchronize itself (clFinish, events).
 * Call order: after clt_graph_compile (CLT_ERR_STATE before); the gradient arena needs a training graph. */
CLT_API int clt_graph_param_buffer(clt_graph *g, cl_mem *mem, size_t *offset_bytes, size_t *count);
CLT_API int clt_graph_grad_buffer(clt_graph *g, cl_mem *mem, size_t *offset_bytes, size_t *count);
/* The arena of non-trainable state tensors (batch-norm running mean and variance). */
CLT_API int clt_graph_buffer_buffer(clt_graph *g, cl_mem *mem, size_t *offset_bytes, size_t *count);
/* Optimizer slot 0 or 1 (same layout as the parameters); *mem NULL and *count 0 for a slot the optimizer does
 * not use. */
CLT_API int clt_graph_slot_buffer(clt_graph *g, int slot, cl_mem *mem, size_t *offset_bytes, size_t *count);
/* Number of trainable parameter tensors of a compiled graph (0 when not compiled). */
CLT_API int clt_graph_param_ranges(const clt_graph *g);
/* Parameter i in BACKWARD order (i = 0 is the one whose gradient the backward pass finishes first): its offset
 * in floats from the start of the parameter (and gradient, and slot) arena, its element count and its tensor
 * (any pointer may be NULL). Offsets decrease with i, so the ranges 0..k cover a tail of the arena: gradient
 * buckets for overlapped reduction are contiguous. CLT_ERR_INVALID for i out of range. */
CLT_API int clt_graph_param_range(clt_graph *g, int i, size_t *offset, size_t *count, clt_tensor **tensor);

/* ---------------------------------------------------------------------------------------------- checkpoints */

/* A checkpoint file describes itself: the network text of the graph's model (clt_model_build), its input image
 * and class count, every state tensor (name, shape, values; optimizer slots of trainable ones), the optimizer
 * settings, the seed and the counters (with the seed they are the graph's RNG: dropout masks follow from them),
 * and an opaque application metadata blob (where an application keeps what only it understands, such as
 * normalization, class names or a learning-rate schedule). Files are checked with a CRC-32 over every byte and
 * written atomically. Format version 2; files of version 1 (cltrain 0.1) are read and converted. */
typedef struct clt_checkpoint clt_checkpoint;

/* Writes g's state to `path` with `app_meta_len` bytes of `app_meta` (copied; NULL when the length is 0; at
 * most 1 GiB). The file goes to a new temporary in path's folder ("<name>.tmp.<pid>.<random>"), is fsynced and
 * renamed over `path`, then the folder is fsynced; temporaries that killed writers left for `path` are removed
 * first. On any failure `path` keeps its old content. A graph holding a NaN or Inf value (a parameter, buffer
 * or optimizer slot) is refused with CLT_ERR_STATE naming the tensor, so that a diverged run never replaces
 * the last good checkpoint. A graph not built with clt_model_build is saved without a network text (then only
 * clt_checkpoint_apply can use the file). Call after clt_graph_compile; errors (CLT_ERR_IO with the step and
 * the reason) in clt_errmsg(clt_graph_context(g)). */
CLT_API int clt_graph_save(clt_graph *g, const char *path, const void *app_meta, size_t app_meta_len);

/* Reads and verifies a whole checkpoint before anything of it is used: a regular file (a FIFO, folder or
 * device is refused without blocking), the magic bytes, the format version ("checkpoint format version N; this
 * build reads 2 ..."), the length in the header against the file's size (before the body is read or memory
 * allocated for it), the CRC, every count and size against the bytes that are there, and every value: a NaN or
 * Inf in a tensor or an optimizer slot is refused naming the tensor. Needs no context. Like clt_model_parse,
 * *out is set even on failure (NULL only when host memory ran out) so that clt_checkpoint_errmsg(*out) says why
 * ("PATH: reason"); the caller always calls clt_checkpoint_close(*out). A checkpoint that failed to open makes
 * every accessor below return nothing (0, "", CLT_ERR_STATE). */
CLT_API int clt_checkpoint_open(const char *path, clt_checkpoint **out);
CLT_API void clt_checkpoint_close(clt_checkpoint *ck);
/* Message of the failed open ("" after success). Never NULL, even for ck == NULL. */
CLT_API const char *clt_checkpoint_errmsg(const clt_checkpoint *ck);
/* Format version of the file (1 or 2). */
CLT_API int clt_checkpoint_version(const clt_checkpoint *ck);
/* Canonical network text ("" when saved without a model), owned by ck; pass it to clt_model_parse. */
CLT_API const char *clt_checkpoint_model_text(const clt_checkpoint *ck);
/* Input image (c,h,w) and class count of the stored model (all 0 without a model). Any pointer may be NULL. */
CLT_API int clt_checkpoint_input(const clt_checkpoint *ck, int *c, int *h, int *w, int *classes);
/* The application metadata (owned by ck, valid until clt_checkpoint_close; never NULL) and its length. For a
 * version-1 file it is that file's metadata section followed by its stored model text (u32 length + bytes),
 * for the application that wrote version 1 (cltrain) to convert. */
CLT_API const void *clt_checkpoint_app_meta(const clt_checkpoint *ck, size_t *len);
/* Compile settings that continue the stored run: defaults with the stored seed and optimizer, training = 1. */
CLT_API int clt_checkpoint_compile_settings(const clt_checkpoint *ck, clt_compile_settings *s);
/* Stored counters (see clt_graph_get_counters). */
CLT_API int clt_checkpoint_counters(const clt_checkpoint *ck, uint64_t *steps, uint64_t *passes);
/* Writes the stored state into a compiled graph g, matching tensors by name and shape, optimizer slots (ignored
 * by an evaluation graph) and the counters. A checkpoint of another network is refused before anything is
 * written, naming the first mismatch: a tensor missing on either side, another shape, trainable against buffer.
 * The batch size does not matter. The seed is not applied (dropout kernels are compiled with it): compile g with
 * clt_checkpoint_compile_settings to continue the stored run exactly. Errors in clt_errmsg(clt_graph_context(g)). */
CLT_API int clt_checkpoint_apply(const clt_checkpoint *ck, clt_graph *g);

/* The library's atomic file writer, for an application's own files (logs, reports) next to its checkpoints:
 * `len` bytes of `data` go to a new temporary "<name>.tmp.<pid>.<random>" in path's folder (created exclusively,
 * mode 0666 less the umask), which is fsynced and renamed over `path`; then the folder is fsynced. Temporaries that
 * killed writers left for `path` are removed first. On failure `path` is unchanged and CLT_ERR_IO (CLT_ERR_INVALID
 * for a NULL argument) is returned with "writing <path>: <step> failed (<reason>); the old file, if any, is
 * unchanged" in msg (msglen bytes, always NUL-terminated; msg may be NULL). Needs no context. */
CLT_API int clt_file_write_atomic(const char *path, const void *data, size_t len, char *msg, size_t msglen);

/* Copies the values of tensor `from` of graph src into the input `to` of graph dst on the device (no host round
 * trip; queued in order, like every call on the context), e.g. a teacher's logits into a student's input for
 * clt_distill_kl. Both graphs compiled on the same context; `from` an input, parameter, buffer or kept tensor;
 * the same number of values (shapes may differ). */
CLT_API int clt_tensor_copy(clt_graph *dst, clt_tensor *to, clt_graph *src, clt_tensor *from);

/* ---- pruning: magnitude pruning of the weights of conv2d and dense layers (not biases, batch norm or other
 * parameters). After clt_graph_prune the graph holds a 0/1 mask of its parameters on the device (allocated once,
 * by the first call); every clt_graph_step multiplies the gradients by it before the update and the parameters
 * after it, so pruned weights stay exactly zero through training (their optimizer state is zeroed at pruning).
 * Checkpoints store no mask: a pruned weight is stored as its zero, and clt_graph_prune keeps every weight that is
 * already exactly zero pruned, so after loading a pruned checkpoint clt_graph_prune(g, 0, scope) brings its masks
 * back. (A trained weight that is exactly 0.0f by chance is then pruned too, which changes nothing.) */
enum clt_prune_scope {
    CLT_PRUNE_PER_LAYER = 0, /* each weight tensor loses floor(sparsity * its size) values of smallest |w| */
    CLT_PRUNE_GLOBAL = 1,    /* floor(sparsity * all weights) values of smallest |w| over all of them together */
};
/* Prunes a compiled graph: zeroes the chosen weights (ties by position) and installs or replaces the mask; 0 <=
 * sparsity < 1. CLT_ERR_INVALID for another sparsity or scope or a graph without conv2d/dense weights;
 * CLT_ERR_STATE before compile. A graph compiled without training is pruned too (no mask is used then). */
CLT_API int clt_graph_prune(clt_graph *g, float sparsity, int scope);
/* The weight tensors pruning applies to, in graph order. */
CLT_API int clt_graph_prune_count(const clt_graph *g);
typedef struct clt_prune_layer {
    char name[64];   /* the weight tensor ("conv1.weight") */
    size_t numel;    /* its values */
    size_t zeros;    /* how many are exactly zero now */
} clt_prune_layer;
/* Fills *out for weight i (0 <= i < clt_graph_prune_count), reading it from the device. */
CLT_API int clt_graph_prune_layer(clt_graph *g, int i, clt_prune_layer *out);

/* ---- encrypted checkpoints. Protects checkpoint files at rest and in transit (copies, backups, transfers): a
 * file written with a key holds, in the clear, only a 20-byte header ("CLTENC", format version, file kind, chunk
 * size); the whole checkpoint (network text, tensor names, shapes, values, metadata) is inside a libsodium
 * crypto_secretstream_xchacha20poly1305 stream with a random header per file, in authenticated chunks of 64 KiB
 * with the clear header as additional data. A wrong key, any changed byte, a truncated file, reordered chunks or
 * bytes after the final chunk are refused (CLT_ERR_FORMAT) before any of it is used. It cannot protect weights in
 * the memory of a process or device that holds the key (decrypted checkpoints, graphs on the device), and key
 * management (making, storing, sharing, rotating keys) is the application's. A key is CLT_KEY_BYTES random bytes. */
#define CLT_KEY_BYTES 32
/* Writes a new random key (libsodium randombytes_buf) to a new file `path`, mode 0600. An existing file (or a
 * symbolic link) is never replaced: CLT_ERR_IO "PATH: already exists: refusing to overwrite a key ...". Messages go
 * to msg (msglen bytes, NUL-terminated; may be NULL). Needs no context. */
CLT_API int clt_key_generate(const char *path, char *msg, size_t msglen);
/* Reads a key file into key: a regular file of exactly CLT_KEY_BYTES bytes, owned by the effective user and not
 * readable or writable by group or others (else CLT_ERR_IO "key file PATH: readable or writable by group or others
 * (mode 0644); refused: make it private with `chmod 600 PATH`"); a wrong size is CLT_ERR_FORMAT. Needs no context. */
CLT_API int clt_key_load(const char *path, unsigned char key[CLT_KEY_BYTES], char *msg, size_t msglen);

typedef struct clt_save_settings {
    const unsigned char *key; /* CLT_KEY_BYTES: write an encrypted checkpoint (mode 0600); NULL (default): plain */
} clt_save_settings;
CLT_API void clt_save_default_settings(clt_save_settings *s);
/* clt_graph_save with settings (s NULL: defaults, the same as clt_graph_save); every rule of clt_graph_save holds.
 * The plaintext copy of the file in host memory is zeroed before it is freed. */
CLT_API int clt_graph_save_ex(clt_graph *g, const char *path, const void *app_meta, size_t app_meta_len,
                              const clt_save_settings *s);
/* clt_checkpoint_open for a file that may be encrypted: with key (CLT_KEY_BYTES) an encrypted file is
 * authenticated and decrypted whole, then checked as a plain one; a plain file is read as clt_checkpoint_open
 * reads it (the key is unused). Without a key (key NULL, and clt_checkpoint_open) an encrypted file is refused
 * with CLT_ERR_FORMAT "PATH: encrypted checkpoint: it can only be read with its key ...". A wrong key or a
 * tampered file: CLT_ERR_FORMAT "PATH: encrypted checkpoint: cannot decrypt: wrong key, or the file was modified,
 * truncated or reordered (chunk I of N fails authentication)". The decrypted bytes are zeroed on close. */
CLT_API int clt_checkpoint_open_key(const char *path, const unsigned char *key, clt_checkpoint **out);

/* ---------------------------------------------------------------------------------------------- inference */

typedef struct clt_load_settings {
    int batch;    /* rows of the rebuilt graph's input (default 64); clt_predict takes any number of images */
    int training; /* 0 (default): an evaluation graph, no gradients or optimizer memory; 1: a training graph
                   * with the stored optimizer and its state (a loss cannot be added after compile, so training
                   * applications build their own graph from clt_checkpoint_model_text and apply the checkpoint) */
    const unsigned char *key; /* CLT_KEY_BYTES for an encrypted checkpoint (see clt_checkpoint_open_key); NULL: none */
} clt_load_settings;
CLT_API void clt_load_default_settings(clt_load_settings *s);

/* Rebuilds the stored network on ctx: an input "x" (batch,C,H,W) of the stored image shape, the model, its logits
 * kept, compiled with the stored seed and optimizer, the state applied. *out is the new graph (the caller
 * destroys it), NULL on failure; errors in clt_errmsg(ctx). ck is only read and may be closed afterwards. */
CLT_API int clt_checkpoint_build(const clt_checkpoint *ck, clt_context *ctx, const clt_load_settings *s,
                                 clt_graph **out);
/* clt_checkpoint_open_key (with s->key) + clt_checkpoint_build + clt_checkpoint_close; the open's message goes to
 * clt_errmsg(ctx). */
CLT_API int clt_graph_load(clt_context *ctx, const char *path, const clt_load_settings *s, clt_graph **out);
/* The input and logits tensors of the model clt_model_build (or clt_graph_load) put on g. CLT_ERR_STATE if none. */
CLT_API int clt_graph_model_tensors(const clt_graph *g, clt_tensor **input, clt_tensor **logits);
/* Evaluation passes over n images: x holds n*C*H*W floats (already normalized as in training), logits receives
 * n*classes. Runs batches of the graph's input size; the last partial batch is padded with zero rows whose
 * outputs are dropped (exact: evaluation rows are independent). The graph's logits must be kept (clt_graph_load
 * keeps them; otherwise clt_graph_keep before compile). Other inputs of g (labels) keep their values. */
CLT_API int clt_predict(clt_graph *g, const float *x, size_t n, float *logits);

/* ---- profiling (context created with profile=1): per-node time of the last forward and backward. */
typedef struct clt_op_profile {
    const char *op;        /* op kind, e.g. "conv2d" */
    const char *name;      /* node output's name */
    double forward_ms, backward_ms;
    int ndim;              /* the node output's shape */
    int shape[4];
} clt_op_profile;
/* Fills up to `max` entries in graph order, sets *count to the number of nodes. */
CLT_API int clt_graph_profile(clt_graph *g, clt_op_profile *entries, int max, int *count);

/* ---------------------------------------------------------------------------------------------- tuning, benchmarks */

/* Tuning a model ahead of time needs no function of its own: build its graph on a context created with
 * tune = CLT_TUNE_QUICK or CLT_TUNE_FULL and compile it; clt_graph_compile measures and caches every
 * decision its layers need (this is `cltrain tune`). The functions below tune and time single GEMMs and
 * list the tuning cache (`cltrain bench gemm`, `cltrain tune gemm`, `cltrain tune --list`). */

/* One GEMM problem: C = op(A) op(B), row-major float32, batch independent products stored one after the
 * other. Per product A is (M,K), or (K,M) used transposed when trans_a = 1; B is (K,N), or (N,K) with
 * trans_b = 1; C is (M,N). */
typedef struct clt_gemm_shape {
    size_t m, n, k;       /* each >= 1 */
    size_t batch;         /* 0 or 1: a single product */
    int trans_a, trans_b; /* 0 or 1 */
} clt_gemm_shape;

/* The path a GEMM takes. */
typedef struct clt_gemm_choice {
    char algo[16];    /* "own" (cltrain's kernels, cl/gemm.cl) or "clblast" */
    char params[128]; /* own: its parameter set, e.g. "MR=8 VW=16 NV=1 KU=4 LX=1 DB=1 KC=0"; clblast: "" */
} clt_gemm_choice;

/* Decides the path for this GEMM shape exactly as layers do when a graph is compiled: a cached decision if
 * there is one, else (when the context's tune mode and remaining budget allow) measures the candidates,
 * checks their results and caches the decision, else the untuned default. Fills *out. Measuring time is
 * charged to the context's budget (see clt_context_tune_spent). Errors: CLT_ERR_INVALID (NULL argument, a
 * zero size, trans flags other than 0/1, more than 2^31-1 values in A, B or C), and those of building and
 * running the candidates. */
CLT_API int clt_gemm_tune(clt_context *ctx, const clt_gemm_shape *shape, clt_gemm_choice *out);

/* Seconds this context has spent measuring tuning candidates so far (all kernels, not only GEMMs). */
CLT_API int clt_context_tune_spent(const clt_context *ctx, double *seconds);

/* What clt_gemm_bench_run times. */
enum clt_gemm_variant {
    /* CLBlast with the kernel parameters in effect for the device now: CLBlast's built-in ones until tuned
     * ones are applied in this process, which cannot be undone (CLT_GEMM_VARIANT_CLBLAST_TUNED, and with
     * tuning on also CLT_GEMM_VARIANT_TUNED, clt_gemm_tune and compiling a graph with GEMMs apply cached
     * ones). Run it first to time the built-in parameters. */
    CLT_GEMM_VARIANT_CLBLAST = 0,
    /* the library's untuned default for this device and shape (own kernels on CPUs, CLBlast elsewhere) */
    CLT_GEMM_VARIANT_DEFAULT = 1,
    /* what the library's GEMM uses for this shape: decided first as by clt_gemm_tune */
    CLT_GEMM_VARIANT_TUNED = 2,
    /* CLBlast after applying tuned CLBlast parameters: cached ones, else in QUICK/FULL mode measured now
     * (within the budget; built-in ones if nothing was measured). Needs a tune mode other than OFF. */
    CLT_GEMM_VARIANT_CLBLAST_TUNED = 3,
};

typedef struct clt_gemm_bench clt_gemm_bench; /* a GEMM problem with its host and device data */

/* Creates a benchmark problem of this shape: host A and B filled with uniform values in [-1, 1) from
 * `seed` (the library's portable RNG: same seed, same data on every platform) and device buffers for A, B
 * and C. On failure *out is NULL and clt_errmsg(ctx) says why: CLT_ERR_INVALID (as clt_gemm_tune),
 * CLT_ERR_NOMEM, CLT_ERR_DEVICE_MEMORY. Destroy it before its context. */
CLT_API int clt_gemm_bench_create(clt_context *ctx, const clt_gemm_shape *shape, uint64_t seed,
                                  clt_gemm_bench **out);
/* Frees the problem's host and device memory. NULL is a no-op. */
CLT_API void clt_gemm_bench_destroy(clt_gemm_bench *b);
/* The host inputs (owned by b, valid until it is destroyed; either pointer may be NULL), e.g. to compute a
 * host reference: A holds batch*m*k values, B batch*k*n, laid out as clt_gemm_shape says. */
CLT_API int clt_gemm_bench_inputs(const clt_gemm_bench *b, const float **a, const float **bm);
/* Sets the expected C (count = batch*m*n values, copied) that later runs are compared with. */
CLT_API int clt_gemm_bench_set_reference(clt_gemm_bench *b, const float *c, size_t count);

typedef struct clt_gemm_bench_result {
    int variant;            /* enum clt_gemm_variant */
    clt_gemm_choice choice; /* the path that ran */
    double ms_median;       /* median wall time of one run, enqueue to clFinish, in ms */
    double gflops;          /* 2*m*n*k*batch / ms_median */
    int checked;            /* 1: compared with the reference set by clt_gemm_bench_set_reference */
    double max_abs_err;     /* max |C - ref| (NaN if any C value is NaN); 0 when not checked */
    double max_rel_err;     /* max_abs_err / max |ref| (/ 1 when the reference is all zeros) */
} clt_gemm_bench_result;

/* Times one variant on the problem: one untimed warm-up run (it builds kernels), then `reps` (1..100000)
 * runs, each finished with clFinish; the median goes into *out. Then C is read back and, if a reference is
 * set, compared with it. Errors (in clt_errmsg of the problem's context): CLT_ERR_INVALID (NULL argument,
 * unknown variant, reps out of range), CLT_ERR_STATE (CLT_GEMM_VARIANT_CLBLAST_TUNED on a context with
 * tuning off), and those of the GEMM itself. */
CLT_API int clt_gemm_bench_run(clt_gemm_bench *b, int variant, int reps, clt_gemm_bench_result *out);

/* Copies C of the last clt_gemm_bench_run (count = batch*m*n values) into c. CLT_ERR_STATE if no run
 * succeeded yet or the last one failed. */
CLT_API int clt_gemm_bench_output(const clt_gemm_bench *b, float *c, size_t count);

/* One cached tuning decision, as passed to a clt_tune_list callback (valid during the call only). */
typedef struct clt_tune_entry {
    const char *kernel;  /* decision family: "gemm", "conv2d_algo", "clblast_xgemm", ... */
    const char *shape;   /* problem shape, e.g. "m=64,n=10816,k=288,ta=0,tb=0,batch=1" ("" if none) */
    const char *options; /* build options or candidate-set version the decision depends on ("" if none) */
    const char *value;   /* the decision, e.g. "algo=own MR=8 VW=16 NV=1 KU=4 LX=1 DB=1 KC=0" */
    const char *key;     /* the full key as stored (device, driver, library versions, source hash, ...) */
} clt_tune_entry;
typedef int (*clt_tune_entry_fn)(void *ud, const clt_tune_entry *e);

/* Calls fn for each tuning decision the context knows for its device: those of the cache file (read once
 * per context) and those it made itself, in the order they were added. fn returns 0 to go on; a non-zero
 * value stops the listing and is returned. fn must not call functions that take this context. A context
 * with tune = CLT_TUNE_OFF reads no cache, so it lists nothing. Errors: CLT_ERR_INVALID (NULL ctx or fn),
 * CLT_ERR_NOMEM. */
CLT_API int clt_tune_list(clt_context *ctx, clt_tune_entry_fn fn, void *ud);

/* Re-validates the context's cached GEMM decisions (`cltrain tune --check`): each decision that differs from
 * the shape's untuned default is checked and timed again against that default in alternating, paired runs,
 * with the tuner's rule (it must beat the default by more than the measured noise, and by at least 3%); a
 * decision that no longer wins is replaced in the cache by the default. *checked: decisions looked at,
 * *replaced: those replaced. Convolution algorithm decisions are not re-measured here. Errors:
 * CLT_ERR_INVALID (NULL argument), CLT_ERR_STATE (tune mode other than quick or full), and those of running
 * the GEMMs. */
CLT_API int clt_tune_check(clt_context *ctx, int *checked, int *replaced);

/* ---------------------------------------------------------------------------------------------- int8 quantization */

/* Post-training int8 quantization (src/quant*.c, ops qconv2d and qdense). Arithmetic of an int8 layer, exactly:
 *   xq = clamp(round(x * (1/x_scale)), -127, 127)     round half away from zero; 1/x_scale computed in float
 *   wq = clamp(round(w / w_scale[c]), -127, 127)      per output channel c, w_scale[c] = max|w_c| / 127
 *   acc = sum xq * wq                                  exact int32 accumulation (no overflow for F*127*127 < 2^31)
 *   y = (float)acc * out_scale[c] + bias[c]            out_scale[c] = x_scale * w_scale[c] as a float product
 * Activations between layers stay float32: an int8 layer quantizes its input, accumulates in int32 and
 * dequantizes its output (so ops without an int8 kernel, such as batch norm or pooling, run as before). The
 * layer's input scale comes from calibration: x_scale = max|x| / 127 over the calibration images (or the
 * given percentile of |x|). Inference only: these ops have no gradient. */

/* x (N,C,H,W) -> (N,p->out_channels,OH,OW) as clt_conv2d with p's geometry (p->bias and p->init are ignored).
 * weight: Cout*C*KH*KW int8 values (Cout,C,KH,KW); weight_scale: Cout floats > 0; bias: Cout floats or NULL;
 * x_scale > 0. The arrays are copied. */
CLT_API int clt_qconv2d(clt_graph *g, clt_tensor *x, const clt_conv2d_params *p, const int8_t *weight,
                        const float *weight_scale, const float *bias, float x_scale, const char *name,
                        clt_tensor **out);
/* x (N,F...) read as (N,F) -> (N,units); weight (units,F) int8, weight_scale/bias (units) as above. */
CLT_API int clt_qdense(clt_graph *g, clt_tensor *x, int units, const int8_t *weight, const float *weight_scale,
                       const float *bias, float x_scale, const char *name, clt_tensor **out);

typedef struct clt_quant_settings {
    /* Scale of each int8 layer's input from its calibration values: 100 (default) takes max|x|; a value in
     * [90, 100) takes that percentile of |x| (clips rare outliers; values above it saturate at +-127). */
    double percentile;
    int batch;        /* rows per calibration pass (default 64) */
} clt_quant_settings;
CLT_API void clt_quant_default_settings(clt_quant_settings *s);

typedef struct clt_quant_report {
    int layers_int8;      /* conv and dense layers turned into int8 layers */
    int layers_float;     /* convolutions left in float32 (residual projections) */
    uint64_t bytes;       /* size of the written file */
} clt_quant_report;

/* Quantizes the float32 checkpoint `in_path` into the quantized checkpoint `out_path`: every top-level conv and
 * dense layer of its model gets per-output-channel symmetric int8 weights and an input scale calibrated on
 * `n` images `x` (n*C*H*W floats, normalized as for clt_predict, n >= 1); every other state tensor (batch-norm
 * statistics, residual projections) is stored as float32; the model text, input shape and the checkpoint's
 * application metadata are copied. Quantized file format (little-endian), checked by a CRC-32 over all bytes:
 *   "CLTQUANT" u32 version(1) u32 body_len, body, u32 crc32(header and body)
 *   body: str model_text, i32 c,h,w,classes, str app_meta, u32 nq, nq x qlayer, u32 nf, nf x ftensor
 *   qlayer: str name, i32 kind (0 conv, 1 dense), i32 cout, cin, kh, kw, sh, sw, ph, pw, i32 has_bias,
 *           f32 x_scale, cout x f32 w_scale, cout x f32 bias (if has_bias), cout*cin*kh*kw x i8 weight
 *   ftensor: str name, i32 ndim, ndim x i32 dim, numel x f32        (str: u32 length + bytes)
 * Written atomically (clt_file_write_atomic); `out_path` may not be `in_path`. Errors in clt_errmsg(ctx). */
CLT_API int clt_quantize(clt_context *ctx, const char *in_path, const float *x, size_t n,
                         const clt_quant_settings *s, const char *out_path, clt_quant_report *report);

/* A quantized checkpoint read and verified in memory (magic, version, lengths, CRC, every count and value). */
typedef struct clt_qcheckpoint clt_qcheckpoint;
/* 1 if the file begins with the quantized checkpoint's magic, 0 if not, negative if it cannot be read. */
CLT_API int clt_qcheckpoint_probe(const char *path);
/* Like clt_checkpoint_open: *out is set even on failure (NULL only without memory); always close it. */
CLT_API int clt_qcheckpoint_open(const char *path, clt_qcheckpoint **out);
CLT_API void clt_qcheckpoint_close(clt_qcheckpoint *q);
CLT_API const char *clt_qcheckpoint_errmsg(const clt_qcheckpoint *q);
CLT_API const char *clt_qcheckpoint_model_text(const clt_qcheckpoint *q);
CLT_API int clt_qcheckpoint_input(const clt_qcheckpoint *q, int *c, int *h, int *w, int *classes);
CLT_API const void *clt_qcheckpoint_app_meta(const clt_qcheckpoint *q, size_t *len);
/* An int8 inference graph of the stored model (input "x" (batch,C,H,W), logits kept), as clt_checkpoint_build;
 * s->training must be 0. clt_graph_load does this for a quantized file. */
CLT_API int clt_qcheckpoint_build(const clt_qcheckpoint *q, clt_context *ctx, const clt_load_settings *s,
                                  clt_graph **out);

/* ---------------------------------------------------------------------------------------------- ONNX export */

/* Writes the network of the float checkpoint `ckpt_path` as an ONNX model (opset 13, IR version 7) to
 * `onnx_path` (atomically), encoded with protobuf-c from the ONNX schema: input "x" (N,C,H,W) float with a
 * symbolic batch N, output "logits" (N,classes); weights as initializers. Layers map to standard ops: conv -> Conv,
 * dense -> Gemm (transB=1; an image input is Flattened first), batchnorm -> BatchNormalization (running
 * statistics), relu/sigmoid/tanh -> Relu/Sigmoid/Tanh, leaky_relu -> LeakyRelu, gelu -> x*0.5*(1+Erf(x/sqrt 2)),
 * maxpool -> MaxPool, avgpool -> AveragePool (count_include_pad=1), global_avgpool -> GlobalAveragePool + Flatten,
 * flatten -> Flatten, dropout -> Identity, residual -> Add (projection: a 1x1 Conv or a Gemm). The model takes
 * input normalized as for clt_predict: normalization belongs to the application and is not stored by the library.
 * A layer without an ONNX equivalent (or an int8 checkpoint) is refused with CLT_ERR_UNSUPPORTED naming it.
 * Errors in clt_errmsg(ctx); the device context is used to read the checkpoint's tensors. */
CLT_API int clt_onnx_export(clt_context *ctx, const char *ckpt_path, const char *onnx_path);

#ifdef __cplusplus
}
#endif
#endif
