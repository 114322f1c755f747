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
/* A command's messages on stderr (tools/util.c): "cltrain: error: <message>" and "cltrain: <message>", each one
 * line; both return 1, the exit status of a command that stops there. */
int tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int tool_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The tool's one splitmix64 step (tools/util.c): the next 64 random bits of the stream *state (the same
 * sequence as the library's). */
uint64_t tool_splitmix64(uint64_t *state);

/* Little-endian encoding of the tool's metadata blobs (str = u32 length + bytes, no terminator), tools/util.c.
 * A growable buffer: after an allocation failure `oom` is set and later appends do nothing (check at the end). */
typedef struct tool_buf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} tool_buf;
void tool_put(tool_buf *b, const void *v, size_t n);
void tool_put_u32(tool_buf *b, uint32_t v);
void tool_put_u64(tool_buf *b, uint64_t v);
void tool_put_f32(tool_buf *b, float v);
void tool_put_f64(tool_buf *b, double v);
void tool_put_str(tool_buf *b, const char *s, size_t n);
/* A bounded reader: a read past the end sets `bad` and yields NULL / 0, so a decoder checks `bad` once. */
typedef struct tool_rd {
    const unsigned char *p;
    size_t n, at;
    int bad;
} tool_rd;
const unsigned char *tool_take(tool_rd *r, size_t n);
uint32_t tool_get_u32(tool_rd *r);
uint64_t tool_get_u64(tool_rd *r);
float tool_get_f32(tool_rd *r);
double tool_get_f64(tool_rd *r);

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

/* Image folders (tools/images.c): JPEG through libjpeg(-turbo), PNG through libpng. */
#define TOOL_IMAGE_MAX_SIDE 30000        /* pixels per side a header may claim */
#define TOOL_IMAGE_MAX_PIXELS 100000000  /* and pixels in all */
#define TOOL_IMAGE_MAX_SIZE 512          /* the largest --size */
/* .jpg, .jpeg or .png, in any case. */
int tool_is_image_name(const char *name);
/* Area resampling of an interleaved (h,w,ch) image into a planar (ch,size,size) one (stretched, not cropped). */
void tool_resize_area(const uint8_t *src, int w, int h, int ch, int size, uint8_t *dst);
/* Decodes one JPEG or PNG file (told apart by its signature, not its name) as `channels` (1: gray, 3: RGB; alpha
 * dropped, 16-bit cut to 8) and resizes it into dst (channels*size*size bytes, CHW). The size its header claims is
 * checked (TOOL_IMAGE_MAX_*) before any pixel memory is allocated; libjpeg's warnings about corrupt or truncated
 * data are errors. */
int tool_read_image(const char *path, int size, int channels, uint8_t *dst, char *err);
/* `dir` holds one folder per class (2..10, hidden ones skipped, sorted by name: class k is the k-th name) of
 * .jpg/.jpeg/.png files (other files ignored); every image is decoded and resized to size x size. Images are
 * ordered round-robin over the classes: the first file (by name) of every class, then the second, ... A class folder without images, a folder name over 31 bytes or any image that
 * does not decode is an error naming the file. */
int tool_load_image_folder(const char *dir, int size, int channels, tool_dataset *out, char *err);
/* Moves the last fraction `frac` (0 < frac < 1) of d's samples, in their order, into *val (Keras' validation_split);
 * with per_class, the last fraction of each class's samples instead. Both parts keep their order. */
int tool_dataset_split(tool_dataset *d, double frac, int per_class, tool_dataset *val, char *err);

/* ------------------------------------------------------------------------------------------ tables */

#define TOOL_TABLE_MAX_COLS 100000       /* columns of a CSV header or .npy array */
#define TOOL_TABLE_MAX_CATEGORIES 1000   /* distinct values of a categorical column */
#define TOOL_TABLE_MAX_BYTES (4LL << 30) /* size of a table file */

/* Rows x columns of doubles (row-major) with column names; a categorical column holds the index of its value in
 * cats[c] (ncat[c] sorted strings; ncat[c] == 0 for a numeric column). */
typedef struct tool_table {
    int rows, cols;
    double *v;
    char (*names)[64];
    int *ncat;
    char ***cats;
} tool_table;
int tool_table_alloc(tool_table *t, int rows, int cols, char *err);
void tool_table_free(tool_table *t);
/* Index of the column `name`, or -1. */
int tool_table_find(const tool_table *t, const char *name);
/* A CSV file with a header row of unique names (tools/table.c): quoted fields, CRLF and a UTF-8 BOM are
 * understood, blank lines skipped. Columns named in `categorical` keep their text as categories; so does `target`
 * (may be NULL) when it holds any cell that is not a number; with need_target a header without it is an error. Every other cell must be a finite number: an empty,
 * non-numeric, NaN or Inf cell, a row with another number of fields than the header (ragged), an empty file, a
 * header without rows or more than TOOL_TABLE_MAX_COLS columns is an error naming the file, line and column. */
int tool_read_csv(const char *path, int ncat, const char *const *categorical, const char *target, int need_target,
                  tool_table *t, char *err);
/* NumPy (tools/npy.c): a 1-D or 2-D C-order array of float32/float64 or a little-endian integer type (columns named
 * "0", "1", ...); another dtype, Fortran order, a shape that disagrees with the data size or a NaN/Inf value is
 * refused naming the file. tool_parse_npy reads an image in memory (`name` for messages). */
int tool_parse_npy(const char *name, const unsigned char *b, size_t len, tool_table *t, char *err);
int tool_read_npy(const char *path, tool_table *t, char *err);
/* An .npz archive (read with libzip: stored or deflated members) of exactly two arrays: `target` (1-D) into *y
 * and the other one (the features) into *x, with the same number of rows. */
int tool_read_npz(const char *path, const char *target, tool_table *x, tool_table *y, char *err);

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
    /* Optional (data-parallel training, NULL otherwise): called once per step after the last backward pass, with
     * the step's status so far (negative when it failed before: the other processes learn of it), before clipping
     * and the update. Returns < 0: the step ends without the update and tool_train_step returns TOOL_STEP_STOPPED;
     * > 0: the update is skipped (the losses are still read); 0: go on. */
    int (*sync)(void *ud, int st);
    void *sync_ud;
} tool_step;
#define TOOL_STEP_STOPPED 1 /* tool_train_step: `sync` said stop (another process failed) */
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
/* `cltrain quantize` and `cltrain eval` of a quantized checkpoint (tools/quantize.c); compare: a float checkpoint
 * evaluated side by side, or NULL. */
int tool_cmd_quantize(int argc, char **argv);
/* `cltrain export` (tools/export.c). */
int tool_cmd_export(int argc, char **argv);
int tool_quant_eval(const char *path, const char *compare, const char *data_dir, const char *device, int tune,
                    int batch);
/* The tool's metadata that a quantized checkpoint carries (tools/ckmeta.c). */
int tool_meta_decode_quant(const clt_qcheckpoint *q, const char *path, tool_ckpt_meta *m, tool_data_meta *dm,
                           char *err);

/* `cltrain table` (tools/table_cmd.c). */
int tool_cmd_table(int argc, char **argv);
/* 1 if `path` is a checkpoint written by `cltrain table` (then predict goes to tool_table_predict, which writes a
 * CSV of probabilities or values for every row of the CSV/NPY files). */
int tool_table_checkpoint(const char *path);
int tool_table_predict(const char *path, const char *device, int tune, int nfiles, char **files);
/* ---- encryption options (tools/protect.c). */
/* Takes --key-file KEY (--key-file=KEY) and --encrypt out of a command's arguments (before any "--") and loads
 * the key (--key-file, else $CLTRAIN_KEY_FILE) through clt_key_load. Returns 0, 2 (bad usage, printed) or 1 (the
 * key cannot be used, printed). With a key, every checkpoint the command writes is encrypted (--encrypt only
 * states the intent and requires a key), so an encrypted run never writes a plain copy. */
int tool_protect_args(const char *cmd, int *argc, char **argv);
/* The loaded key (CLT_KEY_BYTES), or NULL. */
const unsigned char *tool_key(void);
/* 1 if path starts with the encrypted file magic. */
int tool_file_encrypted(const char *path);
/* clt_checkpoint_open_key with the loaded key; an encrypted file without a key gets "PATH: encrypted checkpoint:
 * give its key with --key-file KEY (or CLTRAIN_KEY_FILE=KEY)". 0, or the status with the message in err. */
int tool_checkpoint_open(const char *path, clt_checkpoint **ck, char *err);
/* clt_graph_save_ex, encrypted with the loaded key if there is one. */
int tool_graph_save(clt_graph *g, const char *path, const void *meta, size_t len);
/* ---- the teacher of distillation (tools/distill.c). */
typedef struct tool_teacher tool_teacher;
/* Evaluation graphs (batch and, when tail > 0, tail images) of the checkpoint at path on ctx, with the loaded key;
 * refused unless it was trained on `dataset` with the student's image shape and classes (dm). */
int tool_teacher_open(clt_context *ctx, const char *path, const char *dataset, const tool_data_meta *dm, int batch,
                      int tail, tool_teacher **out, char *err);
/* The teacher's logits for the student's normalized batch x (the tail graph when `tail`), renormalized to the
 * teacher's statistics if they differ, copied on the device into the student's input. <0: clt_errmsg(ctx). */
int tool_teacher_run(tool_teacher *t, int tail, const float *x, clt_graph *student, clt_tensor *input);
void tool_teacher_free(tool_teacher *t);

/* `cltrain prune` (tools/prune.c). */
int tool_cmd_prune(int argc, char **argv);
/* `cltrain keygen --out KEY`. */
int tool_cmd_keygen(int argc, char **argv);

#endif
