/* tool.h - interfaces between the parts of the cltrain command-line tool (data, models, checkpoints, commands). */
#ifndef CLT_TOOL_H
#define CLT_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cltrain.h"

/* Every tool function returns 0 on success or a negative clt_status, with a message in err (which names
 * the file and the problem). */
#define TOOL_ERR_LEN 4096 /* room for a "not found" message that lists every place looked in */
/* Formats the message into err (TOOL_ERR_LEN bytes; err may be NULL) and returns status (tools/util.c). */
int tool_fail(char *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Input files (tools/util.c). Every path the tool reads goes through one of these, so that a FIFO, a
 * device or a folder is refused with what it is instead of blocking forever or being read as data.
 * `what` ("model file", "checkpoint", NULL) starts the message before the path. */
/* "a FIFO", "a folder", ... for a st_mode. */
const char *tool_file_kind(unsigned mode);
/* 0 if `path` is a regular file (after symbolic links), else CLT_ERR_IO: "cannot open (No such file or
 * directory)", "too many levels of symbolic links", "is a FIFO, not a regular file". */
int tool_check_regular_file(const char *path, const char *what, char *err);
/* Opens a regular file for reading without blocking on a FIFO (O_NONBLOCK, then fstat, then blocking again):
 * the descriptor, or a negative status with the message of tool_check_regular_file. */
int tool_open_regular(const char *path, const char *what, char *err);
/* The same as a FILE (mode "rb"); NULL on failure. */
FILE *tool_fopen_regular(const char *path, const char *what, char *err);
/* 0 if `path` is a folder, else CLT_ERR_IO: "not a folder (it is a FIFO)", symlink loops, other errors. */
int tool_check_folder(const char *path, const char *what, char *err);
/* A preset name, a missing file (the model loader's message lists the presets) or a regular file: 0; anything
 * else (a FIFO, a folder) is refused before the loader opens it. */
int tool_check_model_path(const char *name_or_path, char *err);

/* ------------------------------------------------------------------------------------------ data */

typedef struct tool_dataset {
    int n;               /* images */
    int c, h, w;         /* per-image shape, CHW */
    int classes;
    uint8_t *pixels;     /* n * c * h * w bytes, each image CHW */
    uint8_t *labels;     /* n labels, 0 .. classes-1 */
    char class_names[10][32];
} tool_dataset;

/* CIFAR-10 binary distribution: `dir` is the cifar-10-batches-bin folder or its parent. train=1 loads
 * data_batch_1..5.bin, train=0 test_batch.bin. Validates sizes (multiple of 3073 bytes) and labels (0..9).
 * Class names come from batches.meta.txt when present. */
int tool_load_cifar10(const char *dir, int train, tool_dataset *out, char *err);
/* MNIST / Fashion-MNIST IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte, plain or .gz).
 * `fashion` selects the class names. Validates magic numbers, counts and labels. */
int tool_load_idx(const char *dir, int train, int fashion, tool_dataset *out, char *err);
void tool_dataset_free(tool_dataset *d);

/* ---- where data sets live (tools/data.c). A data set is "cifar10", "mnist" or "fashion-mnist". */

/* CIFAR-10 from the official cifar-10-binary.tar.gz (or a .tar) read in memory through libarchive: nothing
 * is unpacked to disk. Only entries named data_batch_N.bin, test_batch.bin or batches.meta.txt, at the top or
 * under cifar-10-batches-bin/, are used; every other entry (including names with "..") is skipped unread.
 * Truncated or corrupt archives, duplicate entries and wrong sizes are refused with libarchive's message. */
int tool_load_cifar10_archive(const char *path, int train, tool_dataset *out, char *err);
/* Loads a split of `dataset` from `path`: for cifar10 the tarball itself, the cifar-10-batches-bin folder, or
 * a folder holding either; for the IDX sets the folder of the (plain or .gz) files, or one of those files. */
int tool_load_data(const char *dataset, const char *path, int train, tool_dataset *out, char *err);

/* A default place a data set is looked for in, in search order. */
#define TOOL_DATA_PLACES 4
typedef struct tool_data_place {
    char path[4096];   /* "" when the place is not defined (CLTRAIN_DATA unset, no HOME) */
    char origin[96];   /* how it was chosen: "$CLTRAIN_DATA", "$XDG_DATA_HOME/cltrain/cifar10", ... */
} tool_data_place;
/* Fills the places: $CLTRAIN_DATA, $XDG_DATA_HOME/cltrain/<dataset> (default ~/.local/share/cltrain/<dataset>),
 * the current folder and, for fashion-mnist, /usr/share/datasets/fashion-mnist. Returns how many. */
int tool_data_places(const char *dataset, tool_data_place places[TOOL_DATA_PLACES]);
/* 1 if `path` seems to hold the data set (its files, folder or tarball exist; they are not validated), else 0. */
int tool_data_present(const char *dataset, const char *path);
/* The path to load: `given` (--data) as it is, else the first default place holding the data set, with its
 * origin in `origin` ("" for --data). When none does: CLT_ERR_IO and a message naming every place looked in
 * and how to fill one. */
int tool_data_find(const char *dataset, const char *given, char *out, size_t outlen, char *origin,
                   size_t originlen, char *err);
/* Shell commands that put a data set into `dir` (its XDG place), for messages. */
void tool_data_howto(const char *dataset, const char *dir, char *buf, size_t len);
/* "CIFAR-10", "MNIST", "Fashion-MNIST". */
const char *tool_data_title(const char *dataset);

/* ------------------------------------------------------------------------------------------ checkpoints */

typedef struct tool_epoch_metrics {
    double train_loss, train_acc, test_loss, test_acc, seconds, images_per_s;
} tool_epoch_metrics;

typedef struct tool_ckpt_meta {
    char dataset[32];
    char model_text_origin[256];
    int epochs_done;
    int epochs_total;
    uint64_t steps, passes;      /* clt_graph counters */
    uint64_t rng_state;          /* host RNG (shuffling, augmentation) */
    clt_optimizer_settings opt;
    int batch;
    int schedule;
    float lr, momentum;
    int augment;
    int limit;
    uint64_t seed;
    int nhistory;
    tool_epoch_metrics history[1024];
} tool_ckpt_meta;

/* Data settings of a run: the image shape and classes the model takes, the per-channel normalization
 * (x = (pixel/255 - mean) / std), label smoothing and class names. */
typedef struct tool_data_meta {
    int c, h, w, classes;
    float mean[4], std[4];
    float label_smoothing;
    char class_names[10][32];
} tool_data_meta;

/* The tool's application metadata in a checkpoint (clt_graph_save's app_meta), tools/ckmeta.c. Layout (little-
 * endian; str = u32 length + bytes):
 *   "CLTMETA\0"  u32 version (1)
 *   str dataset, str model_text_origin, i32 epochs_done, i32 epochs_total, u64 rng_state, i32 batch, i32 schedule,
 *   f32 lr, f32 momentum, i32 augment, i32 limit, u64 seed, i32 nhistory, nhistory x 6 f64 (train_loss, train_acc,
 *   test_loss, test_acc, seconds, images_per_s),
 *   i32 c, h, w, classes, f32 mean[4], f32 std[4], f32 label_smoothing, classes x str class name
 * The optimizer settings and the counters are the library's (clt_checkpoint_compile_settings / _counters). */
#define TOOL_META_MAGIC "CLTMETA"
#define TOOL_META_VERSION 1u
/* Byte offset of `batch` in a blob with these string lengths (`schedule` follows it); for tests. */
#define TOOL_META_OFFSET_BATCH(dataset_len, origin_len) (12 + 4 + (dataset_len) + 4 + (origin_len) + 16)

/* A malloc'd blob of meta and dm (steps, passes and opt are not stored). */
int tool_meta_encode(const tool_ckpt_meta *m, const tool_data_meta *dm, unsigned char **blob, size_t *len, char *err);
/* Decodes and checks the metadata of an opened checkpoint into *m (optimizer and counters from the library) and
 * *dm: this blob for format 2, the converted metadata section and data block of a version-1 file. Refuses values
 * no run can have stored (NaN or Inf normalization statistics, a shape or class count other than the network's)
 * with a message naming the checkpoint. */
int tool_meta_decode(const clt_checkpoint *ck, const char *path, tool_ckpt_meta *m, tool_data_meta *dm, char *err);

/* ------------------------------------------------------------------------------------------ training steps */

/* How a training command steps (tools/util.c): gradient accumulation and clipping, the same for images and
 * text. The graph is built for micro-batches of batch/accumulate rows and, with accumulate > 1, compiled with
 * clt_compile_settings.accumulate_grads = 1. */
typedef struct tool_step {
    clt_graph *g;
    clt_tensor *loss;  /* the mean loss of one micro-batch */
    int accumulate;    /* micro-batches per optimizer step (--accumulate K), >= 1 */
    float clip;        /* > 0: clip the gradients to this global norm before each step (--clip-grad-norm) */
} tool_step;
/* Called per micro-batch m: `fill` writes its inputs before the forward pass, `after` (may be NULL) reads what
 * the caller needs (logits) after its backward pass. Return 0 or a negative status with a message in err. */
typedef int (*tool_micro_fn)(void *ud, int m, char *err);
/* One optimizer step over `micro` (1..accumulate) micro-batches of the same size: per micro-batch fill,
 * forward, backward with loss scale 1/micro (accumulating after the first), after; then clipping and the step
 * with learning rate lr. *mean_loss (may be NULL) is the mean of the micro-batches' losses, *grad_norm (may be
 * NULL) the norm before clipping (a blocking read; NaN without clipping). With micro = 1 and no clipping
 * this is forward, clt_graph_backward, clt_graph_step. Errors: the library's message in err. */
int tool_train_step(const tool_step *s, int micro, float lr, tool_micro_fn fill, tool_micro_fn after, void *ud,
                    float *mean_loss, float *grad_norm, char *err);

/* ------------------------------------------------------------------------------------------ commands */

/* Subcommands implemented outside cltrain.c; argv[0] is the subcommand name. Return a process exit code. */
int tool_cmd_bench(int argc, char **argv);
/* tools/text.c: `cltrain text` (train a character-level GPT) and `cltrain generate` (sample from it). */
int tool_cmd_text(int argc, char **argv);
int tool_cmd_generate(int argc, char **argv);
int tool_cmd_tune(int argc, char **argv);
/* `cltrain tune [--model ...]`: tunes everything a model's training step uses (tools/bench_step.c). */
int tool_tune_model(int argc, char **argv);
/* `cltrain tune --list`: prints the tuning decisions cached for a device (tools/bench.c). */
int tool_tune_list(const char *device);
/* `cltrain bench step`: training-step timing, per-op profile and time to the first step (tools/bench_step.c).
 * Options start at argv[1]. */
int tool_bench_step(int argc, char **argv);
/* `cltrain doctor`: checks drivers, devices, the cache folder and data sets (tools/doctor.c). */
int tool_cmd_doctor(int argc, char **argv);

#endif
