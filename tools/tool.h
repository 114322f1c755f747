/* tool.h - interfaces between the parts of the cltrain command-line tool (data, models, checkpoints, commands). */
#ifndef CLT_TOOL_H
#define CLT_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cltrain.h"

/* Every tool function returns 0 on success or a negative clt_status, with a message in err (which names
 * the file and the problem). */
#define TOOL_ERR_LEN 1024
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

/* A checkpoint read into memory and verified (magic, version, checksum, sizes). */
typedef struct tool_checkpoint {
    tool_ckpt_meta meta;
    char *model_text;
    void *priv;                 /* tensors by name */
} tool_checkpoint;

/* Writes atomically (temp file in the same folder, fsync, rename): on any failure the old file stays. */
int tool_checkpoint_save(const char *path, clt_graph *g, const tool_ckpt_meta *meta, const char *model_text,
                         char *err);
/* Reads and verifies; a corrupted or truncated file is refused with a message naming the problem. */
int tool_checkpoint_read(const char *path, tool_checkpoint *out, char *err);
/* Loads every state tensor (and optimizer slots) of the compiled graph g by name and shape from the
 * checkpoint, and the graph counters. Fails, before writing anything, if a tensor is missing on either side
 * or has another shape. */
int tool_checkpoint_apply(const tool_checkpoint *c, clt_graph *g, char *err);
void tool_checkpoint_free(tool_checkpoint *c);

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

#endif
