/* cli.h - shared declarations of the cltrain command's own files (cltrain.c, train.c, report.c). */
#ifndef CLT_CLI_H
#define CLT_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "tool.h"

enum cli_schedule { CLI_SCHED_CONSTANT = 0, CLI_SCHED_STEP, CLI_SCHED_COSINE, CLI_SCHED_ONECYCLE };
extern const char *const cli_schedule_names[4];
extern const char *const cli_optimizer_names[3];

/* Options of `cltrain <dataset>`. Numbers < 0 (or NaN for floats) mean "not given". */
typedef struct cli_train_opts {
    const char *dataset;    /* "cifar10", "mnist", "fashion-mnist" */
    const char *data_dir;
    const char *model;
    int epochs, batch, optimizer, nesterov, schedule, augment, limit, verbose, resume, overwrite, tune;
    float lr, momentum, weight_decay, label_smoothing;
    int accumulate;         /* --accumulate K: micro-batches per step (0: not given, 1) */
    float clip;             /* --clip-grad-norm X: > 0 clips gradients to that global norm (0: off) */
    long long seed;
    const char *device, *checkpoint, *log, *plot;
} cli_train_opts;

int cli_train(const cli_train_opts *o);
int cli_eval(const char *checkpoint, const char *data_dir, const char *device, int tune, int batch, int verbose);
int cli_predict(const char *checkpoint, const char *device, int tune, int top, int nfiles, char **files);

typedef tool_data_meta cli_data_meta;

/* ---- report.c */
/* Per-class precision, recall, F1 and the confusion matrix (rows: true class, columns: predicted). */
void cli_print_class_report(FILE *f, const int64_t *confusion, int classes, const char (*names)[32]);
/* Rewrites `path` with one JSON object per epoch of the history. */
int cli_write_log(const char *path, const tool_epoch_metrics *h, int n, char *err);
/* Writes an SVG with loss and accuracy curves (train and test) per epoch. */
int cli_write_plot(const char *path, const tool_epoch_metrics *h, int n, const char *title, char *err);
/* The longest suffix a save appends to a name for its temporary file: ".tmp.PID.XXXXXX" with a 10-digit pid
 * (the log and plot writer; the checkpoint writer's ".tmp.PID" is shorter). */
#define CLI_TMP_SUFFIX_MAX 22
/* Checks an output path before a run starts, so that it cannot fail after the first epoch: not a folder or
 * special file, its folder exists and takes new files, the name and its temporary name fit the file system's
 * limits; unless `is_checkpoint`, an existing cltrain checkpoint is refused (never overwritten by a log or
 * plot). `opt` ("--log") starts the message. */
int cli_check_output(const char *opt, const char *path, int is_checkpoint, char *err);
struct timespec;
/* Removes the temporary files of `path` that a killed save left behind (names the writers use, owned by
 * us, older than `started`, whose pid is not running, or is ours); says so on `note` (may be NULL).
 * Returns how many were removed. */
int cli_clean_stale_temps(const char *path, const struct timespec *started, FILE *note);

/* Progress display: a redrawn bar on a terminal, nothing otherwise (the per-epoch line is printed by the
 * caller either way). */
typedef struct cli_progress {
    int tty;
    double last_draw_ms;
    int drawn;
} cli_progress;
void cli_progress_init(cli_progress *p, FILE *f);
void cli_progress_draw(cli_progress *p, FILE *f, int epoch, int epochs, int step, int steps, double loss,
                       double acc, double images_per_s, double eta_s);
/* "evaluating: done/total images" on a terminal. p may be NULL. */
void cli_progress_eval(cli_progress *p, FILE *f, int done, int total);
void cli_progress_clear(cli_progress *p, FILE *f);

double cli_now_s(void);
/* cli_now_s() when main() started: the time to the first training step is reported against it. */
extern double cli_start_s;

#endif
