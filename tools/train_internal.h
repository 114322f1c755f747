/* train_internal.h - what the training, pipeline and evaluation files of cltrain (train.c, pipeline.c, evaluate.c) share. */
#ifndef CLT_TRAIN_INTERNAL_H
#define CLT_TRAIN_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "dist.h"

static inline int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cltrain: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static inline void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cltrain: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static inline uint64_t mix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) without modulo bias worth mentioning for n << 2^64. */
static inline uint32_t rand_below(uint64_t *s, uint32_t n) { return (uint32_t)((mix64(s) >> 32) * (uint64_t)n >> 32); }

/* ---- pipeline.c: batches prepared on a host thread (augmentation, normalization) */

/* How to turn a batch of images into floats: x = pixel * scale[c] + shift[c]. */
typedef struct prep_spec {
    const tool_dataset *ds;
    const int *order;    /* image index for each position of the epoch; NULL: identity */
    int total;           /* images in the pass */
    int batch;           /* rows per buffer; rows past the data are zero-filled */
    int augment;
    uint64_t seed;       /* augmentation stream of the epoch */
    float scale[4], shift[4];
} prep_spec;

/* A host thread that prepares the next batch while the device works on the current one. */
typedef struct worker {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, has_job, done, quit;
    const prep_spec *spec;
    int start;
    float *x, *y;
} worker;

/* The host side of a pass over a dataset: the worker fills one batch buffer while the device reads the other;
 * logits of a batch and the confusion matrix of an evaluation. */
typedef struct pipeline {
    worker w;
    float *xb[2], *yb[2], *logits;
    int64_t *confusion;
} pipeline;

void channel_stats(const tool_dataset *ds, int n, cli_data_meta *m);
void prep_batch(const prep_spec *p, int start, float *x, float *y);
void prep_spec_normalize(prep_spec *spec, const cli_data_meta *dm);
void worker_submit(worker *w, const prep_spec *spec, int start, float *x, float *y);
void worker_wait(worker *w);
int pipeline_start(pipeline *p, int batch, size_t img, int classes);
void pipeline_stop(pipeline *p);

/* ---- evaluate.c: graphs, checkpoints and evaluation shared by training, eval and predict */

typedef struct net {
    clt_graph *g;
    clt_tensor *x, *y, *logits, *loss;
    clt_tensor *teacher; /* the teacher's logits (B,K) when distilling */
    int batch;
} net;

void net_free(net *n);
int net_build(clt_context *ctx, const clt_model *model, const cli_data_meta *dm, int batch, int training,
              const clt_compile_settings *cs, const cli_train_opts *o, net *n);
int make_context(const char *device, int tune, int verbose, clt_context **ctx);
void score_rows(const float *logits, const float *labels, int valid, int k, double *loss_sum, int64_t *correct,
                int64_t *confusion);
int evaluate(clt_context *ctx, net *n, const tool_dataset *ds, const cli_data_meta *dm, pipeline *p,
             double *loss, double *acc, cli_progress *prog);
int evaluate_all(clt_context *ctx, net *n, const tool_dataset *ds, const cli_data_meta *dm, pipeline *p,
                 double *loss, double *acc, cli_progress *prog, dist_graph *d);
int checkpoint_open(const char *path, clt_checkpoint **ck, tool_ckpt_meta *m, cli_data_meta *dm);
int checkpoint_model(const clt_checkpoint *ck, const char *path, clt_model **model);
int check_data_fits(const char *path, const cli_data_meta *dm, const char *dir, const tool_dataset *ds);

/* ---- train.c: data loading and the summary line, shared with eval */

int resolve_data_dir(const char *dataset, const char *given, char *dir, size_t len, char *origin, char *err);
void data_dir_origin(char *buf, size_t len, const char *origin);
int load_dataset(const char *dataset, const char *dir, int train, tool_dataset *ds, char *err);
int same_classes(const tool_dataset *a, const char *adir, const tool_dataset *b, const char *bdir, char *err);
void print_final(const tool_epoch_metrics *h, int n, double test_acc, double test_loss);

#endif
