/* tune_fallback.c - TEMPORARY in-memory stand-in for the tuning cache (branch `tune`); deleted at merge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tune.h"

typedef struct entry {
    char *key, *value;
} entry;
struct clt__tuner {
    entry *e;
    int n, cap;
};

static void full_key(const clt__tune_key *k, char *buf, size_t len)
{
    snprintf(buf, len, "%s|%s|%s|%s", k->kernel, k->source ? k->source : "", k->options ? k->options : "",
             k->shape ? k->shape : "");
}

int clt__tune_get(clt_context *ctx, const clt__tune_key *key, char *value, size_t len)
{
    if (ctx->tune == CLT_TUNE_OFF || !ctx->tuner) return 0;
    char k[1024];
    full_key(key, k, sizeof k);
    for (int i = 0; i < ctx->tuner->n; i++)
        if (strcmp(ctx->tuner->e[i].key, k) == 0) {
            snprintf(value, len, "%s", ctx->tuner->e[i].value);
            return 1;
        }
    return 0;
}

int clt__tune_put(clt_context *ctx, const clt__tune_key *key, const char *value)
{
    if (!ctx->tuner && !(ctx->tuner = calloc(1, sizeof *ctx->tuner)))
        return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    clt__tuner *t = ctx->tuner;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        entry *ne = realloc(t->e, (size_t)cap * sizeof *ne);
        if (!ne) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
        t->e = ne;
        t->cap = cap;
    }
    char k[1024];
    full_key(key, k, sizeof k);
    t->e[t->n].key = clt__strdup(k);
    t->e[t->n].value = clt__strdup(value);
    t->n++;
    if (ctx->verbose) fprintf(stderr, "cltrain: tune %s %s -> %s\n", key->kernel, key->shape, value);
    return CLT_OK;
}

int clt__tune_may_measure(clt_context *ctx)
{
    if (ctx->tune == CLT_TUNE_FULL) return 1;
    return ctx->tune == CLT_TUNE_QUICK && ctx->tune_spent_s < ctx->tune_budget_s;
}

void clt__tune_charge(clt_context *ctx, double seconds)
{
    ctx->tune_spent_s += seconds;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int clt__tune_time(clt_context *ctx, clt__tune_run_fn run, void *ud, int reps, double *ms)
{
    if (reps < 1) reps = 1;
    double t[64];
    if (reps > 64) reps = 64;
    CLT_TRY(run(ctx, ud));
    CLT_CL(ctx, clFinish(ctx->queue));
    for (int r = 0; r < reps; r++) {
        double t0 = clt__now_ms();
        CLT_TRY(run(ctx, ud));
        CLT_CL(ctx, clFinish(ctx->queue));
        t[r] = clt__now_ms() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    *ms = t[reps / 2];
    return CLT_OK;
}

void clt__tuner_release(clt_context *ctx)
{
    if (!ctx->tuner) return;
    for (int i = 0; i < ctx->tuner->n; i++) {
        free(ctx->tuner->e[i].key);
        free(ctx->tuner->e[i].value);
    }
    free(ctx->tuner->e);
    free(ctx->tuner);
    ctx->tuner = NULL;
}
