/* train.c - the training, evaluation and prediction commands of cltrain: data pipeline, graphs, epochs. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

const char *const cli_schedule_names[4] = {"constant", "step", "cosine", "onecycle"};
const char *const cli_optimizer_names[3] = {"sgd", "adam", "adamw"};

#define CLI_MAX_IMAGE_VALUES (1 << 26)

static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cltrain: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cltrain: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

#define CLI_PI 3.14159265358979323846

static uint64_t mix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) without modulo bias worth mentioning for n << 2^64. */
static uint32_t rand_below(uint64_t *s, uint32_t n) { return (uint32_t)((mix64(s) >> 32) * (uint64_t)n >> 32); }

/* ------------------------------------------------------------------------------------------ interrupt */

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

/* ------------------------------------------------------------------------------------------ data */

/* The data path: --data as given, else the first default place holding the data set (tools/data.c); origin
 * says which place, for messages ("" for --data). */
static int resolve_data_dir(const char *dataset, const char *given, char *dir, size_t len, char *origin, char *err)
{
    return tool_data_find(dataset, given, dir, len, origin, 96, err);
}

/* Appended to a data error when the path came from a default place, not the command line. */
static void data_dir_origin(char *buf, size_t len, const char *origin)
{
    if (origin && *origin) snprintf(buf, len, " (the data was found through %s)", origin);
    else if (len) buf[0] = 0;
}

static int load_dataset(const char *dataset, const char *dir, int train, tool_dataset *ds, char *err)
{
    memset(ds, 0, sizeof *ds);
    return tool_load_data(dataset, dir, train, ds, err);
}

/* Per-channel mean and standard deviation of pixel/255 over the first n images. Integer sums make it
 * exact and independent of summation order. */
static void channel_stats(const tool_dataset *ds, int n, cli_data_meta *m)
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

static void prep_batch(const prep_spec *p, int start, float *x, float *y)
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

static void worker_submit(worker *w, const prep_spec *spec, int start, float *x, float *y)
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

static void worker_wait(worker *w)
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

/* The host side of a pass over a dataset: the worker fills one batch buffer while the device reads the other;
 * logits of a batch and the confusion matrix of an evaluation. */
typedef struct pipeline {
    worker w;
    float *xb[2], *yb[2], *logits;
    int64_t *confusion;
} pipeline;

/* Allocates the buffers for batches of `batch` images of `img` floats and starts the worker (message on failure;
 * pipeline_stop cleans up either way). */
static int pipeline_start(pipeline *p, int batch, size_t img, int classes)
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

static void pipeline_stop(pipeline *p)
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
static void prep_spec_normalize(prep_spec *spec, const cli_data_meta *dm)
{
    for (int c = 0; c < dm->c; c++) {
        spec->scale[c] = 1.0f / (255.0f * dm->std[c]);
        spec->shift[c] = -dm->mean[c] / dm->std[c];
    }
}

/* ------------------------------------------------------------------------------------------ graphs */

typedef struct net {
    clt_graph *g;
    clt_tensor *x, *y, *logits, *loss;
    int batch;
} net;

static void net_free(net *n)
{
    clt_graph_destroy(n->g);
    memset(n, 0, sizeof *n);
}

/* x (B,C,H,W) -> model -> logits (B,K); with `training` also labels (B) and the loss. */
static int net_build(clt_context *ctx, const clt_model *model, const cli_data_meta *dm, int batch, int training,
                     const clt_compile_settings *cs, net *n)
{
    memset(n, 0, sizeof *n);
    n->batch = batch;
    int xs[4] = {batch, dm->c, dm->h, dm->w}, ys[1] = {batch};
    if (clt_graph_create(ctx, &n->g) < 0 || clt_input(n->g, "x", 4, xs, &n->x) < 0)
        return fail("creating the graph: %s", clt_errmsg(ctx));
    if (clt_model_build(n->g, model, n->x, dm->classes, &n->logits) < 0)
        return fail("building model '%s': %s", clt_model_name(model), clt_errmsg(ctx));
    if (clt_tensor_ndim(n->logits) != 2 || clt_tensor_dim(n->logits, 0) != batch ||
        clt_tensor_dim(n->logits, 1) != dm->classes)
        return fail("model '%s' does not end in (batch, %d) logits", clt_model_name(model), dm->classes);
    if (clt_graph_keep(n->g, n->logits, 0) < 0) return fail("%s", clt_errmsg(ctx));
    if (training) {
        if (clt_input(n->g, "labels", 1, ys, &n->y) < 0 ||
            clt_softmax_cross_entropy(n->g, n->logits, n->y, dm->label_smoothing, &n->loss) < 0)
            return fail("adding the loss: %s", clt_errmsg(ctx));
    }
    clt_compile_settings s = *cs;
    s.training = training;
    if (clt_graph_compile(n->g, &s) < 0) return fail("compiling the graph (batch %d): %s", batch, clt_errmsg(ctx));
    return 0;
}

/* Copies every state tensor (and optimizer slots) and the counters from one graph to another built from
 * the same model: used to train the last partial batch on a graph of that size. */
static int copy_state(clt_context *ctx, clt_graph *src, clt_graph *dst, float *buf)
{
    int n = clt_graph_state_count(src);
    if (n != clt_graph_state_count(dst)) return fail("internal: graphs differ in state tensors");
    for (int i = 0; i < n; i++) {
        int tr;
        clt_tensor *a = clt_graph_state_tensor(src, i, &tr), *b = clt_graph_state_tensor(dst, i, NULL);
        size_t cnt = clt_tensor_numel(a);
        if (cnt != clt_tensor_numel(b) || strcmp(clt_tensor_name(a), clt_tensor_name(b)))
            return fail("internal: state tensor %d differs between graphs", i);
        if (clt_tensor_read(src, a, 0, buf, cnt) < 0 || clt_tensor_write(dst, b, buf, cnt) < 0)
            return fail("copying state: %s", clt_errmsg(ctx));
        for (int s = 0; tr && s < 2; s++)
            if (clt_tensor_read_slot(src, a, s, buf, cnt) < 0 || clt_tensor_write_slot(dst, b, s, buf, cnt) < 0)
                return fail("copying optimizer state: %s", clt_errmsg(ctx));
    }
    uint64_t steps, passes;
    clt_graph_get_counters(src, &steps, &passes);
    clt_graph_set_counters(dst, steps, passes);
    return 0;
}

static size_t max_state_numel(clt_graph *g)
{
    size_t m = 1;
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        size_t c = clt_tensor_numel(clt_graph_state_tensor(g, i, NULL));
        if (c > m) m = c;
    }
    return m;
}

static int make_context(const char *device, int tune, int verbose, clt_context **ctx)
{
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = device;
    if (tune >= 0) cs.tune = tune;
    cs.verbose = verbose;
    if (clt_context_create(&cs, ctx) < 0)
        return fail("cannot open the OpenCL device%s%s: %s", device ? " " : "", device ? device : "",
                    clt_errmsg(*ctx));
    return 0;
}

/* Adds the host-side cross-entropy and accuracy of `valid` rows of logits to the sums. */
static void score_rows(const float *logits, const float *labels, int valid, int k, double *loss_sum, int64_t *correct,
                       int64_t *confusion)
{
    for (int r = 0; r < valid; r++) {
        const float *l = logits + (size_t)r * k;
        int best = 0;
        double mx = l[0];
        for (int j = 1; j < k; j++)
            if (l[j] > l[best]) best = j;
        mx = l[best];
        double se = 0;
        for (int j = 0; j < k; j++) se += exp((double)l[j] - mx);
        int t = (int)labels[r];
        *loss_sum += log(se) + mx - l[t];
        *correct += best == t;
        if (confusion) confusion[t * k + best]++;
    }
}

/* Evaluation pass (no dropout, batch-norm running statistics) over a whole dataset on a graph of any
 * batch size: the last batch is padded with zero rows whose outputs are ignored, which is exact because
 * evaluation passes treat every row independently. */
static int evaluate(clt_context *ctx, net *n, const tool_dataset *ds, const cli_data_meta *dm, pipeline *p,
                    double *loss, double *acc, cli_progress *prog)
{
    prep_spec spec = {.ds = ds, .total = ds->n, .batch = n->batch};
    prep_spec_normalize(&spec, dm);
    worker *w = &p->w;
    float **xb = p->xb, **yb = p->yb, *logits = p->logits;
    int64_t *confusion = p->confusion;
    int k = dm->classes, steps = (ds->n + n->batch - 1) / n->batch;
    double loss_sum = 0;
    int64_t correct = 0;
    memset(confusion, 0, sizeof(int64_t) * k * k);
    worker_submit(w, &spec, 0, xb[0], yb[0]);
    for (int j = 0; j < steps; j++) {
        worker_wait(w);
        float *x = xb[j & 1], *y = yb[j & 1];
        if (j + 1 < steps) worker_submit(w, &spec, (j + 1) * n->batch, xb[(j + 1) & 1], yb[(j + 1) & 1]);
        int valid = ds->n - j * n->batch < n->batch ? ds->n - j * n->batch : n->batch;
        /* A training graph's loss reads the labels too (an evaluation graph has none). */
        int st = n->y ? clt_tensor_write(n->g, n->y, y, (size_t)n->batch) : 0;
        if (st >= 0) st = clt_predict(n->g, x, (size_t)valid, logits);
        if (st < 0) {
            if (j + 1 < steps) worker_wait(w);
            cli_progress_clear(prog, stdout);
            return fail("evaluation: %s", clt_errmsg(ctx));
        }
        score_rows(logits, y, valid, k, &loss_sum, &correct, confusion);
        cli_progress_eval(prog, stdout, j * n->batch + valid, ds->n);
    }
    cli_progress_clear(prog, stdout);
    *loss = loss_sum / ds->n;
    *acc = (double)correct / ds->n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ training step */

/* One step's batch on the host (rows of n->batch per micro-batch) and where its logits go. */
typedef struct micro_io {
    net *n;
    const float *x, *y;
    float *logits;
    size_t img;
    int classes;
} micro_io;

static int micro_fill(void *ud, int m, char *err)
{
    micro_io *io = ud;
    net *n = io->n;
    size_t r = (size_t)m * n->batch;
    if (clt_tensor_write(n->g, n->x, io->x + r * io->img, (size_t)n->batch * io->img) < 0 ||
        clt_tensor_write(n->g, n->y, io->y + r, (size_t)n->batch) < 0)
        return tool_fail(err, -1, "%s", clt_errmsg(clt_graph_context(n->g)));
    return 0;
}

static int micro_after(void *ud, int m, char *err)
{
    micro_io *io = ud;
    net *n = io->n;
    float *dst = io->logits + (size_t)m * n->batch * io->classes;
    if (clt_tensor_read(n->g, n->logits, 0, dst, (size_t)n->batch * io->classes) < 0)
        return tool_fail(err, -1, "%s", clt_errmsg(clt_graph_context(n->g)));
    return 0;
}

/* ------------------------------------------------------------------------------------------ schedule */

static double lr_at(int schedule, double base, uint64_t step, uint64_t total)
{
    double t = total ? (double)step / (double)total : 0;
    if (t > 1) t = 1;
    switch (schedule) {
    case CLI_SCHED_STEP: return base * (t < 0.5 ? 1.0 : t < 0.75 ? 0.1 : 0.01);
    case CLI_SCHED_COSINE: return base * 0.5 * (1 + cos(CLI_PI * t));
    case CLI_SCHED_ONECYCLE:
        /* Linear warm-up from base/25 over the first 30%, then cosine annealing to zero. */
        if (t < 0.3) return base * (0.04 + 0.96 * t / 0.3);
        return base * 0.5 * (1 + cos(CLI_PI * (t - 0.3) / 0.7));
    default: return base;
    }
}

/* ------------------------------------------------------------------------------------------ summary */

static void print_final(const tool_epoch_metrics *h, int n, double test_acc, double test_loss)
{
    double secs = 0, inv = 0;
    int nips = 0;
    for (int i = 0; i < n; i++) {
        secs += h[i].seconds;
        if (h[i].images_per_s > 0) {
            inv += 1.0 / h[i].images_per_s;
            nips++;
        }
    }
    printf("final: epochs=%d test_acc=%.4f test_loss=%.4f train_images_per_s=%.1f seconds=%.1f\n", n, test_acc,
           test_loss, nips ? nips / inv : 0.0, secs);
    fflush(stdout);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Equal names, or two names of one existing file. */
static int same_path(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!strcmp(a, b)) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* ------------------------------------------------------------------------------------------ checkpoints */

/* Opens and verifies a checkpoint and decodes the tool's metadata (NULL m or dm: not wanted). */
static int checkpoint_open(const char *path, clt_checkpoint **ck, tool_ckpt_meta *m, cli_data_meta *dm)
{
    char err[TOOL_ERR_LEN] = "";
    *ck = NULL;
    if (tool_check_regular_file(path, "checkpoint", err) < 0) return fail("%s", err);
    if (clt_checkpoint_open(path, ck) < 0) return fail("%s", *ck ? clt_checkpoint_errmsg(*ck) : "out of memory");
    tool_ckpt_meta *mm = m ? m : calloc(1, sizeof *mm);
    cli_data_meta d;
    int st = mm ? tool_meta_decode(*ck, path, mm, dm ? dm : &d, err) : tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    if (mm != m) free(mm);
    return st < 0 ? fail("%s", err) : 0;
}

/* Parses the model stored in an opened checkpoint. */
static int checkpoint_model(const clt_checkpoint *ck, const char *path, clt_model **model)
{
    int st = clt_model_parse(clt_checkpoint_model_text(ck), path, model);
    if (st < 0) return fail("%s (the model stored in the checkpoint)", clt_model_errmsg(*model));
    return 0;
}

/* Saves the training graph with the tool's metadata. */
static int checkpoint_save(const char *path, clt_graph *g, const tool_ckpt_meta *m, const cli_data_meta *dm)
{
    char err[TOOL_ERR_LEN] = "";
    unsigned char *blob = NULL;
    size_t len = 0;
    if (tool_meta_encode(m, dm, &blob, &len, err) < 0) return fail("saving the checkpoint: %s", err);
    int st = clt_graph_save(g, path, blob, len);
    free(blob);
    if (st < 0) return fail("saving the checkpoint after epoch %d: %s", m->epochs_done, clt_errmsg(clt_graph_context(g)));
    return 0;
}

/* Prints the model's per-layer table (the check's message follows if it failed). */
static void print_model_table(clt_model *model, const cli_data_meta *dm, size_t bytes)
{
    char *table = malloc(bytes);
    if (!table) return;
    clt_model_check(model, dm->c, dm->h, dm->w, dm->classes, NULL, table, bytes);
    fputs(table, stdout);
    free(table);
}

/* Refuses a data set whose images or classes differ from those the checkpoint's model was trained on. */
static int check_data_fits(const char *path, const cli_data_meta *dm, const char *dir, const tool_dataset *ds)
{
    if (dm->c != ds->c || dm->h != ds->h || dm->w != ds->w || dm->classes != ds->classes)
        return fail("checkpoint %s expects %dx%dx%d images in %d classes; %s has %dx%dx%d in %d", path, dm->c, dm->h,
                    dm->w, dm->classes, dir, ds->c, ds->h, ds->w, ds->classes);
    return 0;
}

/* Graph settings of a run: its seed and optimizer (from the options or the checkpoint). */
static void run_compile_settings(const tool_ckpt_meta *meta, clt_compile_settings *cs)
{
    clt_compile_default_settings(cs);
    cs->seed = meta->seed;
    cs->optimizer = meta->opt;
}

/* ------------------------------------------------------------------------------------------ train */

int cli_train(const cli_train_opts *o)
{
    int rc = 1;
    char err[TOOL_ERR_LEN] = "";
    tool_dataset train = {0}, test = {0};
    clt_model *model = NULL;
    clt_checkpoint *ck = NULL;
    cli_data_meta dm = {0};
    tool_ckpt_meta *meta = NULL;
    clt_context *ctx = NULL;
    net tr = {0}, tail = {0};
    pipeline pl = {0};
    float *statebuf = NULL;
    int *order = NULL;
    struct sigaction old_sa;
    int sa_set = 0;

    char dir[4096], origin[96], why[200];
    if (resolve_data_dir(o->dataset, o->data_dir, dir, sizeof dir, origin, err)) return fail("%s", err);
    meta = calloc(1, sizeof *meta);
    tool_ckpt_meta *ckmeta = calloc(1, sizeof *ckmeta);
    if (!meta || !ckmeta) {
        free(meta);
        free(ckmeta);
        return fail("out of memory");
    }

    /* ---- output files: each is rewritten every epoch, so two names for one file would replace each other
     * (a log written over the checkpoint loses it). */
    {
        const char *outs[3] = {o->checkpoint, o->log, o->plot}, *what[3] = {"--checkpoint", "--log", "--plot"};
        for (int i = 0; i < 3; i++)
            for (int j = i + 1; j < 3; j++)
                if (outs[i] && outs[j] && same_path(outs[i], outs[j])) {
                    fail("%s and %s name the same file (%s)", what[i], what[j], outs[j]);
                    goto out;
                }
        /* Every name is checked now rather than failing after the first epoch; then the temporaries an
         * interrupted save of an earlier run left next to them are removed. */
        struct timespec started;
        clock_gettime(CLOCK_REALTIME, &started);
        for (int i = 0; i < 3; i++)
            if (outs[i] && cli_check_output(what[i], outs[i], i == 0, err) < 0) {
                fail("%s", err);
                goto out;
            }
        for (int i = 0; i < 3; i++)
            if (outs[i]) cli_clean_stale_temps(outs[i], &started, stderr);
    }
    /* ---- checkpoint policy: resume from it, or refuse to destroy anything that is not ours. */
    int resume = 0;
    if (o->checkpoint) {
        if (file_exists(o->checkpoint)) {
            if (checkpoint_open(o->checkpoint, &ck, ckmeta, &dm)) {
                note("the file was left untouched (remove it or choose another --checkpoint file)");
                goto out;
            }
            if (!o->resume && !o->overwrite) {
                fail("checkpoint %s already exists (%d of %d epochs done): add --resume to continue it or "
                     "--overwrite to start over", o->checkpoint, ckmeta->epochs_done, ckmeta->epochs_total);
                goto out;
            }
            resume = o->resume;
        } else if (o->resume) {
            note("no checkpoint at %s yet: starting from scratch", o->checkpoint);
        }
    } else if (o->resume) {
        fail("--resume needs --checkpoint FILE");
        goto out;
    }

    if (resume) {
        *meta = *ckmeta;
        /* The checksum only says the file is what was written: refuse settings no run could have stored (they
         * index name tables and divide by the batch). */
        if (meta->batch < 1 || meta->schedule < 0 || meta->schedule > CLI_SCHED_ONECYCLE || meta->opt.type < 0 ||
            meta->opt.type > CLT_OPT_ADAMW || meta->limit < 0) {
            fail("checkpoint %s holds invalid training settings (batch %d, schedule %d, optimizer %d, limit %d); "
                 "the file was left untouched", o->checkpoint, meta->batch, meta->schedule, meta->opt.type,
                 meta->limit);
            goto out;
        }
        if (strcmp(meta->dataset, o->dataset)) {
            fail("checkpoint %s was trained on %s, not %s", o->checkpoint, meta->dataset, o->dataset);
            goto out;
        }
        if (checkpoint_model(ck, o->checkpoint, &model)) goto out;
        const char *ignored[16];
        int ni = 0;
        if (o->model) ignored[ni++] = "--model";
        if (o->batch > 0) ignored[ni++] = "--batch";
        if (o->optimizer >= 0) ignored[ni++] = "--optimizer";
        if (!isnan(o->lr)) ignored[ni++] = "--lr";
        if (!isnan(o->momentum)) ignored[ni++] = "--momentum";
        if (o->nesterov > 0) ignored[ni++] = "--nesterov";
        if (!isnan(o->weight_decay)) ignored[ni++] = "--weight-decay";
        if (o->schedule >= 0) ignored[ni++] = "--schedule";
        if (o->augment >= 0) ignored[ni++] = "--augment";
        if (o->seed >= 0) ignored[ni++] = "--seed";
        if (o->limit > 0) ignored[ni++] = "--limit";
        if (!isnan(o->label_smoothing)) ignored[ni++] = "--label-smoothing";
        for (int i = 0; i < ni; i++)
            note("%s ignored: a resumed run keeps the settings stored in %s", ignored[i], o->checkpoint);
        if (o->epochs > 0) {
            if (o->epochs < meta->epochs_done) {
                fail("--epochs %d: checkpoint %s has already done %d epochs", o->epochs, o->checkpoint,
                     meta->epochs_done);
                goto out;
            }
            meta->epochs_total = o->epochs;
        }
    } else {
        const char *mname = o->model ? o->model : "cnn";
        if (tool_check_model_path(mname, err) < 0) {
            fail("%s", err);
            goto out;
        }
        if (clt_model_load(mname, &model) < 0) {
            fail("%s", clt_model_errmsg(model));
            goto out;
        }
        clt_model_train_defaults md;
        clt_model_get_train_defaults(model, &md);
        memset(meta, 0, sizeof *meta);
        snprintf(meta->dataset, sizeof meta->dataset, "%s", o->dataset);
        snprintf(meta->model_text_origin, sizeof meta->model_text_origin, "%s", mname);
        int opt = o->optimizer >= 0 ? o->optimizer : md.optimizer >= 0 ? md.optimizer : CLT_OPT_SGD;
        clt_optimizer_default_settings(&meta->opt, opt);
        meta->opt.lr = !isnan(o->lr) ? o->lr : md.lr > 0 ? md.lr : opt == CLT_OPT_SGD ? 0.05f : 0.001f;
        if (opt == CLT_OPT_SGD) {
            meta->opt.momentum = !isnan(o->momentum) ? o->momentum : md.momentum >= 0 ? md.momentum : 0.9f;
            meta->opt.nesterov = o->nesterov > 0 || (o->nesterov < 0 && md.nesterov > 0);
            meta->opt.weight_decay = !isnan(o->weight_decay) ? o->weight_decay
                                     : md.weight_decay >= 0 ? md.weight_decay : 5e-4f;
        } else {
            if (!isnan(o->momentum)) note("--momentum applies to sgd only; %s uses beta1 %.3g", cli_optimizer_names[opt],
                                          meta->opt.beta1);
            if (o->nesterov > 0) {
                fail("--nesterov needs --optimizer sgd");
                goto out;
            }
            if (!isnan(o->weight_decay)) meta->opt.weight_decay = o->weight_decay;
            else if (md.weight_decay >= 0) meta->opt.weight_decay = md.weight_decay;
        }
        if (meta->opt.nesterov && !(meta->opt.momentum > 0)) {
            fail("--nesterov needs a momentum above 0");
            goto out;
        }
        meta->lr = meta->opt.lr;
        meta->momentum = meta->opt.momentum;
        meta->batch = o->batch > 0 ? o->batch : md.batch > 0 ? md.batch : 128;
        meta->schedule = o->schedule >= 0 ? o->schedule : CLI_SCHED_ONECYCLE;
        meta->augment = o->augment >= 0 ? o->augment : !strcmp(o->dataset, "cifar10");
        meta->limit = o->limit > 0 ? o->limit : 0;
        meta->seed = o->seed >= 0 ? (uint64_t)o->seed : 1;
        meta->epochs_total = o->epochs > 0 ? o->epochs : md.epochs > 0 ? md.epochs : 10;
        meta->rng_state = meta->seed ^ 0x5DEECE66Dull;
        memset(&dm, 0, sizeof dm);
        dm.label_smoothing = !isnan(o->label_smoothing) ? o->label_smoothing : 0.0f;
    }

    /* ---- data */
    if (load_dataset(o->dataset, dir, 1, &train, err) < 0 || load_dataset(o->dataset, dir, 0, &test, err) < 0) {
        data_dir_origin(why, sizeof why, origin);
        fail("%s%s", err, why);
        goto out;
    }
    if (test.c != train.c || test.h != train.h || test.w != train.w || train.c > 4 || train.classes > 10) {
        fail("%s: training images are %dx%dx%d but test images %dx%dx%d", dir, train.c, train.h, train.w, test.c,
             test.h, test.w);
        goto out;
    }
    int ntrain = train.n;
    if (meta->limit > 0 && meta->limit < ntrain) ntrain = meta->limit;
    if (resume) {
        if (check_data_fits(o->checkpoint, &dm, dir, &train)) goto out;
    } else {
        dm.c = train.c, dm.h = train.h, dm.w = train.w, dm.classes = train.classes;
        memcpy(dm.class_names, train.class_names, sizeof dm.class_names);
        channel_stats(&train, ntrain, &dm);
    }
    clt_model_info mi = {0};
    int mst = clt_model_check(model, dm.c, dm.h, dm.w, dm.classes, &mi, NULL, 0);
    if (o->verbose) print_model_table(model, &dm, mi.table_bytes);
    if (mst < 0) {
        fail("model %s does not fit %dx%dx%d images in %d classes: %s", meta->model_text_origin, dm.c, dm.h, dm.w,
             dm.classes, clt_model_errmsg(model));
        goto out;
    }
    int B = meta->batch < ntrain ? meta->batch : ntrain;
    /* --accumulate K: the graph holds micro-batches of M = batch/K images; a step adds K of them. */
    int K = o->accumulate > 1 ? o->accumulate : 1, M = B;
    if (K > 1) {
        if (meta->batch % K) {
            fail("--accumulate %d: the batch (%d) must be a multiple of it", K, meta->batch);
            goto out;
        }
        M = meta->batch / K < ntrain ? meta->batch / K : ntrain;
        if (M < 2) {
            fail("--accumulate %d: micro-batches of %d image(s) (batch %d); batch statistics need two", K, M,
                 meta->batch);
            goto out;
        }
        B = M * K;
    }
    int nfull = ntrain / B, rem = ntrain % B;
    /* A training pass needs two values per channel for batch statistics: a lone last image is left out. With
     * micro-batches the last step takes the whole micro-batches that are left. */
    int tail_n = K == 1 && rem >= 2 ? rem : 0;
    int tail_micro = K > 1 ? rem / M : 0;
    int steps_per_epoch = nfull + (tail_n > 0 || tail_micro > 0);

    /* ---- device and graphs */
    if (make_context(o->device, o->tune, o->verbose, &ctx)) goto out;
    clt_device_info di;
    clt_context_device_info(ctx, &di);
    clt_compile_settings cs;
    run_compile_settings(meta, &cs);
    cs.accumulate_grads = K > 1;
    if (net_build(ctx, model, &dm, M, 1, &cs, &tr)) goto out;
    if (tail_n && net_build(ctx, model, &dm, tail_n, 1, &cs, &tail)) goto out;
    if (resume && clt_checkpoint_apply(ck, tr.g) < 0) {
        fail("%s", clt_errmsg(ctx));
        goto out;
    }

    size_t img = (size_t)dm.c * dm.h * dm.w;
    statebuf = malloc(max_state_numel(tr.g) * sizeof(float));
    order = malloc((size_t)ntrain * sizeof *order);
    if (!statebuf || !order) {
        fail("out of host memory");
        goto out;
    }
    if (pipeline_start(&pl, B, img, dm.classes)) goto out;

    size_t pbytes = 0, abytes = 0;
    clt_graph_memory(tr.g, &pbytes, &abytes);
    printf("cltrain %s: %s, model %s, %d training / %d test images of %dx%dx%d, %d classes\n", CLT_VERSION_STRING,
           o->dataset, meta->model_text_origin, ntrain, test.n, dm.c, dm.h, dm.w, dm.classes);
    printf("model: %lld parameters, %.1f M multiply-adds per image forward\n", mi.params, mi.macs / 1e6);
    printf("device: %s (%s)\n", di.name, di.platform_name);
    printf("training: %d epochs, batch %d, %s lr %g", meta->epochs_total, B, cli_optimizer_names[meta->opt.type],
           meta->opt.lr);
    if (K > 1) printf(" (%d micro-batches of %d)", K, M);
    if (meta->opt.type == CLT_OPT_SGD) printf(" momentum %g%s", meta->opt.momentum, meta->opt.nesterov ? " nesterov" : "");
    printf(" weight decay %g, %s schedule, augmentation %s, label smoothing %g, seed %llu\n", meta->opt.weight_decay,
           cli_schedule_names[meta->schedule], meta->augment ? "on" : "off", dm.label_smoothing,
           (unsigned long long)meta->seed);
    if (resume) printf("resuming %s after epoch %d\n", o->checkpoint, meta->epochs_done);
    if (K == 1 && rem == 1) printf("note: %d images do not fill the last batch; the single image left over is skipped each epoch\n", ntrain);
    if (K > 1 && rem % M)
        printf("note: %d images do not fill a micro-batch at the end of an epoch; they are skipped each epoch\n",
               rem % M);
    if (o->clip > 0) printf("gradients clipped to global norm %g\n", o->clip);
    if (o->verbose)
        printf("memory: %.1f MiB parameters and state, %.1f MiB activations\n", pbytes / 1048576.0,
               abytes / 1048576.0);
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    if (sigaction(SIGINT, &sa, &old_sa) == 0) sa_set = 1;

    cli_progress prog;
    cli_progress_init(&prog, stdout);
    double last_test_acc = NAN, last_test_loss = NAN;
    int evaluated = 0;
    uint64_t total_steps = (uint64_t)steps_per_epoch * meta->epochs_total;
    prep_spec spec = {.ds = &train, .order = order, .total = ntrain, .batch = B, .augment = meta->augment};
    prep_spec_normalize(&spec, &dm);
    worker *w = &pl.w;
    float **xb = pl.xb, **yb = pl.yb, *logits = pl.logits;
    if (meta->epochs_total > (int)(sizeof meta->history / sizeof meta->history[0])) {
        fail("at most %d epochs", (int)(sizeof meta->history / sizeof meta->history[0]));
        goto out;
    }

    const int start_epoch_for_timing = meta->epochs_done;
    while (meta->epochs_done < meta->epochs_total) {
        int epoch = meta->epochs_done; /* 0-based */
        double t0 = cli_now_s();
        /* The epoch's shuffle and augmentation come from a stream stored in the checkpoint. */
        uint64_t es = mix64(&meta->rng_state);
        spec.seed = mix64(&es);
        for (int i = 0; i < ntrain; i++) order[i] = i;
        for (int i = ntrain - 1; i > 0; i--) {
            int j = (int)rand_below(&es, (uint32_t)i + 1);
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double loss_sum = 0;
        int64_t correct = 0, seen = 0;
        worker_submit(w, &spec, 0, xb[0], yb[0]);
        for (int j = 0; j < steps_per_epoch; j++) {
            worker_wait(w);
            float *x = xb[j & 1], *y = yb[j & 1];
            if (j + 1 < steps_per_epoch) worker_submit(w, &spec, (j + 1) * B, xb[(j + 1) & 1], yb[(j + 1) & 1]);
            int is_tail = j >= nfull;
            net *n = is_tail && K == 1 ? &tail : &tr;
            uint64_t step;
            clt_graph_get_counters(tr.g, &step, NULL);
            float lr = (float)lr_at(meta->schedule, meta->opt.lr, step, total_steps);
            float loss = 0;
            int st = 0;
            /* Micro-batches of this step (K, or those left at the end of an epoch) and the rows they cover. */
            int micro = K > 1 && is_tail ? tail_micro : K, rows = K > 1 ? micro * M : n->batch;
            if (is_tail && K == 1) st = copy_state(ctx, tr.g, tail.g, statebuf) ? -1 : 0;
            if (st >= 0) {
                micro_io io = {n, x, y, logits, img, dm.classes};
                tool_step ts = {n->g, n->loss, K, o->clip};
                st = tool_train_step(&ts, micro, lr, micro_fill, micro_after, &io, &loss, NULL, err);
            } else
                snprintf(err, sizeof err, "%s", clt_errmsg(ctx));
            if (st >= 0 && is_tail && K == 1) {
                st = copy_state(ctx, tail.g, tr.g, statebuf) ? -1 : 0;
                if (st < 0) snprintf(err, sizeof err, "%s", clt_errmsg(ctx));
            }
            if (st < 0) {
                cli_progress_clear(&prog, stdout);
                if (j + 1 < steps_per_epoch) worker_wait(w);
                fail("training step %d of epoch %d: %s", j + 1, epoch + 1, err);
                goto out;
            }
            if (o->verbose && epoch == start_epoch_for_timing && j == 0)
                printf("startup: first training step finished %.2f s after the command started\n",
                       cli_now_s() - cli_start_s);
            if (!isfinite(loss)) {
                cli_progress_clear(&prog, stdout);
                if (j + 1 < steps_per_epoch) worker_wait(w);
                fail("the loss became %g at step %d of epoch %d: training diverged (try a lower --lr)", loss, j + 1,
                     epoch + 1);
                if (o->checkpoint && meta->epochs_done > 0)
                    note("%s holds the last good state, after epoch %d", o->checkpoint, meta->epochs_done);
                goto out;
            }
            double dummy = 0;
            score_rows(logits, y, rows, dm.classes, &dummy, &correct, NULL);
            loss_sum += (double)loss * rows;
            seen += rows;
            double el = cli_now_s() - t0;
            cli_progress_draw(&prog, stdout, epoch + 1, meta->epochs_total, j + 1, steps_per_epoch, loss_sum / seen,
                              (double)correct / seen, seen / el, el / (j + 1) * (steps_per_epoch - j - 1));
            if (g_interrupted) {
                cli_progress_clear(&prog, stdout);
                if (j + 1 < steps_per_epoch) worker_wait(w);
                if (o->checkpoint && meta->epochs_done > 0)
                    note("interrupted during epoch %d; %s holds the state after epoch %d (continue with --resume)",
                         epoch + 1, o->checkpoint, meta->epochs_done);
                else
                    note("interrupted during epoch %d; nothing was saved", epoch + 1);
                rc = 130;
                goto out;
            }
        }
        double t_train = cli_now_s() - t0;
        cli_progress_clear(&prog, stdout);
        double tl, ta;
        if (evaluate(ctx, &tr, &test, &dm, &pl, &tl, &ta, &prog)) goto out;
        evaluated = 1;
        last_test_loss = tl;
        last_test_acc = ta;
        tool_epoch_metrics *h = &meta->history[meta->nhistory++];
        h->train_loss = loss_sum / seen;
        h->train_acc = (double)correct / seen;
        h->test_loss = tl;
        h->test_acc = ta;
        h->seconds = cli_now_s() - t0;
        h->images_per_s = seen / t_train;
        meta->epochs_done++;
        clt_graph_get_counters(tr.g, &meta->steps, &meta->passes);
        printf("epoch %d/%d train_loss=%.4f train_acc=%.4f test_loss=%.4f test_acc=%.4f time=%.1fs images/s=%.1f\n",
               epoch + 1, meta->epochs_total, h->train_loss, h->train_acc, tl, ta, h->seconds, h->images_per_s);
        fflush(stdout);
        if (o->checkpoint && checkpoint_save(o->checkpoint, tr.g, meta, &dm)) goto out;
        /* The log and the plot only report: a failure to write them warns and the run goes on. */
        if (o->log && cli_write_log(o->log, meta->history, meta->nhistory, err) < 0)
            note("warning: --log not written after epoch %d: %s (training continues)", epoch + 1, err);
        if (o->plot) {
            char title[400];
            snprintf(title, sizeof title, "cltrain %s, model %s", o->dataset, meta->model_text_origin);
            if (cli_write_plot(o->plot, meta->history, meta->nhistory, title, err) < 0)
                note("warning: --plot not written after epoch %d: %s (training continues)", epoch + 1, err);
        }
    }
    if (!evaluated) {
        /* Resumed a finished run: report the stored weights. */
        if (evaluate(ctx, &tr, &test, &dm, &pl, &last_test_loss, &last_test_acc, &prog)) goto out;
        printf("all %d epochs were already done; test_loss=%.4f test_acc=%.4f\n", meta->epochs_total, last_test_loss,
               last_test_acc);
    }
    cli_print_class_report(stdout, pl.confusion, dm.classes, (const char(*)[32])dm.class_names);
    if (o->checkpoint) printf("checkpoint: %s\n", o->checkpoint);
    print_final(meta->history, meta->nhistory, last_test_acc, last_test_loss);
    rc = 0;
out:
    if (sa_set) sigaction(SIGINT, &old_sa, NULL);
    pipeline_stop(&pl);
    net_free(&tail);
    net_free(&tr);
    clt_context_destroy(ctx);
    free(statebuf);
    free(order);
    clt_model_destroy(model);
    clt_checkpoint_close(ck);
    free(ckmeta);
    tool_dataset_free(&train);
    tool_dataset_free(&test);
    free(meta);
    return rc;
}

/* An evaluation graph of an opened checkpoint with `batch` rows (the library's inference graph). */
static int load_for_inference(const clt_checkpoint *ck, const char *device, int tune, int verbose, int batch,
                              const cli_data_meta *dm, clt_context **ctx, net *n)
{
    if (make_context(device, tune, verbose, ctx)) return 1;
    clt_load_settings ls;
    clt_load_default_settings(&ls);
    ls.batch = batch;
    memset(n, 0, sizeof *n);
    n->batch = batch;
    if (clt_checkpoint_build(ck, *ctx, &ls, &n->g) < 0 || clt_graph_model_tensors(n->g, &n->x, &n->logits) < 0)
        return fail("%s", clt_errmsg(*ctx));
    if (clt_tensor_dim(n->logits, 1) != dm->classes) return fail("internal: the network has another class count");
    return 0;
}

int cli_eval(const char *path, const char *data_dir, const char *device, int tune, int batch, int verbose)
{
    int rc = 1;
    clt_checkpoint *ck = NULL;
    tool_ckpt_meta *meta = calloc(1, sizeof *meta);
    cli_data_meta dm;
    clt_context *ctx = NULL;
    net n = {0};
    tool_dataset test = {0};
    pipeline pl = {0};
    char err[TOOL_ERR_LEN] = "";
    if (!meta) return fail("out of memory");
    /* The dataset comes from the checkpoint; read it before opening the device to fail fast. */
    if (checkpoint_open(path, &ck, meta, &dm)) goto out;
    const char *dataset = meta->dataset;
    int b = batch > 0 ? batch : meta->batch > 0 ? meta->batch : 128;
    char dir[4096], origin[96], why[200];
    if (resolve_data_dir(dataset, data_dir, dir, sizeof dir, origin, err)) {
        fail("%s", err);
        goto out;
    }
    if (load_dataset(dataset, dir, 0, &test, err) < 0) {
        data_dir_origin(why, sizeof why, origin);
        fail("%s%s", err, why);
        goto out;
    }
    if (b > test.n) b = test.n;
    if (check_data_fits(path, &dm, dir, &test)) goto out;
    if (load_for_inference(ck, device, tune, verbose, b, &dm, &ctx, &n)) goto out;
    if (pipeline_start(&pl, b, (size_t)dm.c * dm.h * dm.w, dm.classes)) goto out;
    cli_progress prog;
    cli_progress_init(&prog, stdout);
    double t0 = cli_now_s(), loss = 0, acc = 0;
    if (evaluate(ctx, &n, &test, &dm, &pl, &loss, &acc, &prog)) goto out;
    double secs = cli_now_s() - t0;
    printf("checkpoint %s: %s, model %s, %d epochs trained\n", path, dataset, meta->model_text_origin, meta->epochs_done);
    printf("test: %d images, loss %.4f, accuracy %.4f (%.1f s, %.1f images/s)\n", test.n, loss, acc, secs,
           test.n / secs);
    cli_print_class_report(stdout, pl.confusion, dm.classes, (const char(*)[32])dm.class_names);
    print_final(meta->history, meta->nhistory < meta->epochs_done ? meta->nhistory : meta->epochs_done,
                acc, loss);
    rc = 0;
out:
    pipeline_stop(&pl);
    net_free(&n);
    clt_context_destroy(ctx);
    clt_checkpoint_close(ck);
    free(meta);
    tool_dataset_free(&test);
    return rc;
}

/* ------------------------------------------------------------------------------------------ predict */

typedef struct pimage {
    char label[600];
    uint8_t *pix; /* CHW */
} pimage;

/* Next token of a PNM header (skips whitespace and # comments). */
static int pnm_int(FILE *f, int *v)
{
    int c;
    for (;;) {
        c = fgetc(f);
        if (c == '#')
            while (c != '\n' && c != EOF) c = fgetc(f);
        else if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
    }
    if (c < '0' || c > '9') return -1;
    long x = 0;
    while (c >= '0' && c <= '9') {
        x = x * 10 + (c - '0');
        if (x > 1000000) return -1;
        c = fgetc(f);
    }
    *v = (int)x; /* the single whitespace after maxval is consumed here */
    return 0;
}

/* Appends an image (taking ownership of pix) to *imgs; NULL (pix freed) when out of memory. */
static pimage *push_image(pimage **imgs, int *n, int *cap, uint8_t *pix)
{
    if (*n == *cap) {
        int ncap = *cap ? *cap * 2 : 16;
        pimage *ni = realloc(*imgs, (size_t)ncap * sizeof *ni);
        if (!ni) {
            free(pix);
            return NULL;
        }
        *imgs = ni;
        *cap = ncap;
    }
    pimage *p = &(*imgs)[(*n)++];
    p->pix = pix;
    return p;
}

/* Reads one file into images of the model's shape (appending to *imgs). */
static int read_images(const char *path, const cli_data_meta *dm, pimage **imgs, int *n, int *cap)
{
    size_t img = (size_t)dm->c * dm->h * dm->w;
    char err[TOOL_ERR_LEN] = "";
    FILE *f = tool_fopen_regular(path, "image", err);
    if (!f) return fail("%s", err);
    unsigned char magic[2] = {0, 0};
    size_t got = fread(magic, 1, 2, f);
    int rc = 1;
    if (got == 2 && magic[0] == 'P' && (magic[1] == '5' || magic[1] == '6')) {
        int ch = magic[1] == '6' ? 3 : 1, w, h, maxv;
        if (pnm_int(f, &w) || pnm_int(f, &h) || pnm_int(f, &maxv) || w < 1 || h < 1 || maxv < 1 || maxv > 65535) {
            fail("%s: malformed %s header", path, ch == 3 ? "PPM (P6)" : "PGM (P5)");
            goto done;
        }
        if (maxv > 255) {
            fail("%s: 16-bit images (maxval %d) are not supported; save it with 8 bits per sample", path, maxv);
            goto done;
        }
        if (ch != dm->c) {
            fail("%s is a %d-channel %s image but the model takes %d-channel images (%s)", path, ch,
                 ch == 3 ? "PPM" : "PGM", dm->c, dm->c == 3 ? "binary PPM, P6" : "binary PGM, P5");
            goto done;
        }
        if (w != dm->w || h != dm->h) {
            fail("%s is %dx%d pixels but the model takes %dx%d (resize it first)", path, w, h, dm->w, dm->h);
            goto done;
        }
        uint8_t *raw = malloc(img), *pix = malloc(img);
        if (!raw || !pix) {
            free(raw);
            free(pix);
            fail("out of memory");
            goto done;
        }
        if (fread(raw, 1, img, f) != img) {
            free(raw);
            free(pix);
            fail("%s: truncated image data (expected %zu bytes after the header)", path, img);
            goto done;
        }
        /* PNM is interleaved (HWC) and may use a maxval below 255. */
        for (int c = 0; c < ch; c++)
            for (int i = 0; i < w * h; i++) pix[(size_t)c * w * h + i] = (uint8_t)(raw[(size_t)i * ch + c] * 255 / maxv);
        free(raw);
        pimage *pi = push_image(imgs, n, cap, pix);
        if (!pi) {
            fail("out of memory");
            goto done;
        }
        snprintf(pi->label, sizeof pi->label, "%s", path);
        rc = 0;
        goto done;
    }
    /* Otherwise a record file in CIFAR's layout: one label byte + the image's bytes (CHW) per record. */
    if (fseek(f, 0, SEEK_END) != 0) {
        fail("%s: cannot seek: %s", path, strerror(errno));
        goto done;
    }
    long size = ftell(f);
    size_t rec = img + 1;
    if (size <= 0 || (size_t)size % rec != 0) {
        fail("%s is neither a binary PPM/PGM image nor a record file of %zu-byte records (1 label byte + %dx%dx%d "
             "pixels): it has %ld bytes", path, rec, dm->c, dm->h, dm->w, size);
        goto done;
    }
    rewind(f);
    size_t nrec = (size_t)size / rec;
    for (size_t r = 0; r < nrec; r++) {
        uint8_t *buf = malloc(rec);
        if (!buf) {
            fail("out of memory");
            goto done;
        }
        if (fread(buf, 1, rec, f) != rec) {
            free(buf);
            fail("%s: read error", path);
            goto done;
        }
        int lab = buf[0];
        memmove(buf, buf + 1, img);
        pimage *pi = push_image(imgs, n, cap, buf);
        if (!pi) {
            fail("out of memory");
            goto done;
        }
        if (lab < dm->classes)
            snprintf(pi->label, sizeof pi->label, "%s#%zu (label %s)", path, r, dm->class_names[lab]);
        else
            snprintf(pi->label, sizeof pi->label, "%s#%zu", path, r);
    }
    rc = 0;
done:
    fclose(f);
    return rc;
}

int cli_predict(const char *path, const char *device, int tune, int top, int nfiles, char **files)
{
    int rc = 1;
    clt_checkpoint *ck = NULL;
    cli_data_meta dm;
    clt_context *ctx = NULL;
    net n = {0};
    pimage *imgs = NULL;
    int nimg = 0, cap = 0;
    float *x = NULL, *logits = NULL;
    /* Validate every image against the model's input before touching the device. */
    if (checkpoint_open(path, &ck, NULL, &dm)) goto out;
    for (int i = 0; i < nfiles; i++)
        if (read_images(files[i], &dm, &imgs, &nimg, &cap)) goto out;
    int b = nimg < 64 ? nimg : 64;
    size_t img = (size_t)dm.c * dm.h * dm.w;
    x = malloc(((size_t)nimg * img + 1) * sizeof *x);
    logits = malloc(((size_t)nimg * dm.classes + 1) * sizeof *logits);
    if (!x || !logits) {
        fail("out of memory");
        goto out;
    }
    for (int r = 0; r < nimg; r++)
        for (int c = 0; c < dm.c; c++)
            for (size_t i = 0; i < (size_t)dm.h * dm.w; i++) {
                size_t o = (size_t)c * dm.h * dm.w + i;
                x[(size_t)r * img + o] = (imgs[r].pix[o] / 255.0f - dm.mean[c]) / dm.std[c];
            }
    if (load_for_inference(ck, device, tune, 0, b, &dm, &ctx, &n)) goto out;
    if (clt_predict(n.g, x, (size_t)nimg, logits) < 0) {
        fail("prediction: %s", clt_errmsg(ctx));
        goto out;
    }
    if (top < 1) top = 1;
    if (top > dm.classes) top = dm.classes;
    for (int r = 0; r < nimg; r++) {
        const float *l = logits + (size_t)r * dm.classes;
        double mx = l[0], se = 0, p[10];
        int idx[10];
        for (int j = 1; j < dm.classes; j++) mx = l[j] > mx ? l[j] : mx;
        for (int j = 0; j < dm.classes; j++) se += p[j] = exp(l[j] - mx);
        for (int j = 0; j < dm.classes; j++) {
            p[j] /= se;
            idx[j] = j;
        }
        for (int a = 0; a < dm.classes; a++)
            for (int bb = a + 1; bb < dm.classes; bb++)
                if (p[idx[bb]] > p[idx[a]]) {
                    int t = idx[a];
                    idx[a] = idx[bb];
                    idx[bb] = t;
                }
        printf("%s: %s %.4f", imgs[r].label, dm.class_names[idx[0]], p[idx[0]]);
        if (top > 1) {
            printf("  (");
            for (int j = 1; j < top; j++) printf("%s%s %.4f", j > 1 ? ", " : "", dm.class_names[idx[j]], p[idx[j]]);
            printf(")");
        }
        printf("\n");
    }
    rc = 0;
out:
    net_free(&n);
    clt_context_destroy(ctx);
    for (int i = 0; i < nimg; i++) free(imgs[i].pix);
    free(imgs);
    free(x);
    free(logits);
    clt_checkpoint_close(ck);
    return rc;
}
