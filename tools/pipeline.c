/* pipeline.c - the host side of cltrain's passes: batch preparation on a worker thread, augmentation, normalization, channel statistics. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

/* Per-channel mean and standard deviation of pixel/255 over the first n images. Integer sums make it
 * exact and independent of summation order. */
void channel_stats(const tool_dataset *ds, int n, cli_data_meta *m)
{
    size_t hw = (size_t)ds->h * ds->w;
    for (int c = 0; c < ds->c; c++) {
        uint64_t s = 0, ss = 0;
        for (int i = 0; i < n; i++) {
            const uint8_t *p = ds->pixels + ((size_t)i * ds->c + c) * hw;
            for (size_t j = 0; j < hw; j++) {
                s += p[j];
                ss += (uint64_t)p[j] * p[j];
            }
        }
        double cnt = (double)n * hw, mean = s / cnt, var = ss / cnt - mean * mean;
        m->mean[c] = (float)(mean / 255.0);
        m->std[c] = (float)(var > 1e-6 ? sqrt(var) / 255.0 : 1.0);
    }
}

void prep_batch(const prep_spec *p, int start, float *x, float *y)
{
    const tool_dataset *ds = p->ds;
    int C = ds->c, H = ds->h, W = ds->w;
    size_t img = (size_t)C * H * W;
    for (int r = 0; r < p->batch; r++) {
        int pos = start + r;
        float *dst = x + r * img;
        if (pos >= p->total) {
            /* Padding rows of an evaluation batch: their outputs are ignored. */
            memset(dst, 0, img * sizeof *dst);
            y[r] = 0;
            continue;
        }
        int idx = p->order ? p->order[pos] : pos;
        const uint8_t *src = ds->pixels + (size_t)idx * img;
        y[r] = (float)ds->labels[idx];
        int dx = 0, dy = 0, flip = 0;
        if (p->augment) {
            /* Each image's draw depends only on (epoch seed, position): the same whatever thread runs it. */
            uint64_t s = p->seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(pos + 1));
            dy = (int)rand_below(&s, 9) - 4;
            dx = (int)rand_below(&s, 9) - 4;
            flip = (int)(mix64(&s) >> 63);
        }
        for (int c = 0; c < C; c++) {
            float sc = p->scale[c], sh = p->shift[c];
            const uint8_t *sp = src + (size_t)c * H * W;
            float *dp = dst + (size_t)c * H * W;
            if (!p->augment) {
                for (int i = 0; i < H * W; i++) dp[i] = sp[i] * sc + sh;
                continue;
            }
            for (int yy = 0; yy < H; yy++) {
                int sy = yy + dy;
                for (int xx = 0; xx < W; xx++) {
                    int sx = (flip ? W - 1 - xx : xx) + dx;
                    /* Zero padding of the raw image, as a crop of the 4-pixel padded picture. */
                    uint8_t v = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? sp[sy * W + sx] : 0;
                    dp[yy * W + xx] = v * sc + sh;
                }
            }
        }
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->has_job && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit) break;
        const prep_spec *spec = w->spec;
        int start = w->start;
        float *x = w->x, *y = w->y;
        pthread_mutex_unlock(&w->mu);
        prep_batch(spec, start, x, y);
        pthread_mutex_lock(&w->mu);
        w->has_job = 0;
        w->done = 1;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static int worker_start(worker *w)
{
    memset(w, 0, sizeof *w);
    if (pthread_mutex_init(&w->mu, NULL)) return -1;
    if (pthread_cond_init(&w->cv, NULL)) {
        pthread_mutex_destroy(&w->mu);
        return -1;
    }
    if (pthread_create(&w->th, NULL, worker_main, w)) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        return -1;
    }
    w->started = 1;
    return 0;
}

void worker_submit(worker *w, const prep_spec *spec, int start, float *x, float *y)
{
    pthread_mutex_lock(&w->mu);
    w->spec = spec;
    w->start = start;
    w->x = x;
    w->y = y;
    w->done = 0;
    w->has_job = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void worker_wait(worker *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void worker_stop(worker *w)
{
    if (!w->started) return;
    pthread_mutex_lock(&w->mu);
    while (w->has_job) pthread_cond_wait(&w->cv, &w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->started = 0;
}

/* Allocates the buffers for batches of `batch` images of `img` floats and starts the worker (message on failure;
 * pipeline_stop cleans up either way). */
int pipeline_start(pipeline *p, int batch, size_t img, int classes)
{
    for (int i = 0; i < 2; i++) {
        p->xb[i] = malloc((size_t)batch * img * sizeof(float));
        p->yb[i] = malloc((size_t)batch * sizeof(float));
    }
    p->logits = malloc((size_t)batch * classes * sizeof(float));
    p->confusion = calloc((size_t)classes * classes, sizeof *p->confusion);
    if (!p->xb[0] || !p->xb[1] || !p->yb[0] || !p->yb[1] || !p->logits || !p->confusion)
        return fail("out of host memory");
    if (worker_start(&p->w)) return fail("cannot start the batch preparation thread");
    return 0;
}

void pipeline_stop(pipeline *p)
{
    worker_stop(&p->w);
    for (int i = 0; i < 2; i++) {
        free(p->xb[i]);
        free(p->yb[i]);
    }
    free(p->logits);
    free(p->confusion);
    memset(p, 0, sizeof *p);
}

/* Normalization of the data set's pixels with the stored per-channel statistics. */
void prep_spec_normalize(prep_spec *spec, const cli_data_meta *dm)
{
    for (int c = 0; c < dm->c; c++) {
        spec->scale[c] = 1.0f / (255.0f * dm->std[c]);
        spec->shift[c] = -dm->mean[c] / dm->std[c];
    }
}
