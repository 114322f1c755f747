/* tune.h - per-device autotuning decisions persisted in an on-disk cache. */
#ifndef CLT_TUNE_H
#define CLT_TUNE_H

#include <stddef.h>

#include "internal.h"

typedef struct clt__tune_key {
    const char *kernel;  /* decision family, e.g. "gemm", "conv2d_algo", "clblast_xgemm" */
    const char *source;  /* cl/<source>.cl hashed into the key, or NULL */
    const char *options; /* build options / candidate set ("" if none) */
    const char *shape;   /* problem shape */
} clt__tune_key;

int clt__tune_get(clt_context *ctx, const clt__tune_key *key, char *value, size_t len);
int clt__tune_put(clt_context *ctx, const clt__tune_key *key, const char *value);
int clt__tune_may_measure(clt_context *ctx);
void clt__tune_charge(clt_context *ctx, double seconds);
typedef int (*clt__tune_run_fn)(clt_context *ctx, void *ud);
int clt__tune_time(clt_context *ctx, clt__tune_run_fn run, void *ud, int reps, double *ms);
void clt__tuner_release(clt_context *ctx);

#endif
