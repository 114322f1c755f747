/* text.c - `cltrain text` (train a character-level GPT on a text file) and `cltrain generate` (sample from it). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define TEXT_MAX_BYTES (1LL << 30)

static const char *const usage_text =
    "usage: cltrain text --data FILE.txt [options]\n"
    "\n"
    "Trains a character-level GPT on a text file. The vocabulary is the set of distinct bytes of the file (text\n"
    "is read byte-wise: any file works, UTF-8 multi-byte characters become several tokens); it is stored in the\n"
    "checkpoint. The first 90% of the file is for training (random windows from the seed), the last 10% for\n"
    "validation (a fixed set of evenly spaced windows).\n"
    "\n"
    "  --data FILE            the text (required; not empty)\n"
    "  --model NAME|FILE      gpt-tiny (default), gpt-small, or a description with a gpt line\n"
    "  --steps N              optimizer steps (default: the model's train line, else 2000)\n"
    "  --batch N              sequences per step (default: the model's)\n"
    "  --block T              context length (default: the model's block)\n"
    "  --lr X                 peak learning rate (default: the model's); warm-up and cosine decay to min_lr\n"
    "                         follow the model's train line\n"
    "  --eval-every N         validation loss every N steps (default 100) and at the end\n"
    "  --eval-batches N       validation windows = N * batch (default 8)\n"
    "  --seed N               initialization, windows, dropout (default 1)\n"
    "  --device SPEC          OpenCL device (see cltrain devices)\n"
    "  --tune MODE            kernel tuning: off, cached, quick (default), full\n"
    "  --verbose              more detail (tuning decisions)\n"
    "  --checkpoint FILE      save the training state at every evaluation (atomically)\n"
    "  --resume               continue from --checkpoint FILE (starts afresh if it does not exist)\n"
    "  --overwrite            replace an existing checkpoint instead of refusing\n"
    "  --log FILE             JSON lines, one per evaluation (\"epoch\" counts evaluations, test_loss is the\n"
    "                         validation loss, images_per_s the training tokens/s)\n"
    "  --plot FILE.svg        loss curves per evaluation\n"
    "  --profile              print a per-op profile of one training step and exit\n"
    "\n"
    "The last line is a summary for scripts:\n"
    "  final: steps=2000 val_loss=1.9000 train_loss=1.8000 tokens_per_s=5000.0 seconds=300.0\n";

static const char *const usage_generate =
    "usage: cltrain generate --checkpoint FILE [options]\n"
    "\n"
    "Samples text from a model trained by `cltrain text` and prints the prompt followed by the new text.\n"
    "\n"
    "  --checkpoint FILE      (required)\n"
    "  --prompt TEXT          start of the text (default: a newline if the vocabulary has one); every byte must\n"
    "                         be in the model's vocabulary\n"
    "  --tokens N             bytes to generate (default 200)\n"
    "  --temperature X        > 0 (default 1); lower is more conservative\n"
    "  --top-k K              sample among the K most likely bytes only (default 0: all)\n"
    "  --seed S               sampling seed (default 1)\n"
    "  --device SPEC          OpenCL device\n"
    "  --tune MODE            kernel tuning: off, cached, quick (default), full\n"
    "  --verbose              more detail\n";

static int usage(const char *cmd, const char *fmt, const char *a)
{
    fprintf(stderr, "cltrain %s: ", cmd);
    fprintf(stderr, fmt, a);
    fprintf(stderr, " (see cltrain %s --help)\n", cmd);
    return 2;
}

static uint64_t rand_below(uint64_t *s, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)tool_splitmix64(s) * n) >> 64);
}
static double rand01(uint64_t *s) { return (double)(tool_splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig)
{
    (void)sig;
    g_stop = 1;
    signal(SIGINT, SIG_DFL);
}

/* ------------------------------------------------------------------------------------------ options */

typedef struct opts {
    const char *data, *model, *device, *checkpoint, *log, *plot, *prompt;
    long long steps, batch, block, eval_every, eval_batches, seed, tokens, top_k;
    double lr, temperature;
    int tune, resume, overwrite, verbose, profile;
} opts;

static int num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || errno || !(d >= lo && d <= hi)) {
        fprintf(stderr, "cltrain %s: %s: bad value '%s' (a number from %g to %g)\n", cmd, opt, v ? v : "", lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

static int inum(const char *cmd, const char *opt, const char *v, long long lo, long long hi, long long *out)
{
    double d;
    if (num(cmd, opt, v, (double)lo, (double)hi, &d) < 0) return -1;
    if (d != floor(d)) {
        fprintf(stderr, "cltrain %s: %s: bad value '%s' (an integer)\n", cmd, opt, v);
        return -1;
    }
    *out = (long long)d;
    return 0;
}

/* Returns 0, 1 for --help (printed), 2 for bad usage (printed). */
static int parse_opts(const char *cmd, int argc, char **argv, opts *o)
{
    static const char *const tunes[] = {"off", "cached", "quick", "full"};
    *o = (opts){.steps = -1, .batch = -1, .block = -1, .eval_every = 100, .eval_batches = 8, .seed = 1,
                .tokens = 200, .top_k = 0, .lr = -1, .temperature = 1, .tune = -1};
    int gen = strcmp(cmd, "generate") == 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0, takes = 1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(gen ? usage_generate : usage_text, stdout);
            return 1;
        }
        if (!strcmp(a, "--resume") && !gen) o->resume = 1, takes = 0;
        else if (!strcmp(a, "--overwrite") && !gen) o->overwrite = 1, takes = 0;
        else if (!strcmp(a, "--verbose")) o->verbose = 1, takes = 0;
        else if (!strcmp(a, "--profile") && !gen) o->profile = 1, takes = 0;
        else if (!v) return usage(cmd, "option '%s' needs a value, or is unknown", a);
        else if (!strcmp(a, "--data") && !gen) o->data = v;
        else if (!strcmp(a, "--model") && !gen) o->model = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--checkpoint")) o->checkpoint = v;
        else if (!strcmp(a, "--log") && !gen) o->log = v;
        else if (!strcmp(a, "--plot") && !gen) o->plot = v;
        else if (!strcmp(a, "--prompt") && gen) o->prompt = v;
        else if (!strcmp(a, "--steps") && !gen) r = inum(cmd, a, v, 1, 1 << 30, &o->steps);
        else if (!strcmp(a, "--batch") && !gen) r = inum(cmd, a, v, 1, 1 << 16, &o->batch);
        else if (!strcmp(a, "--block") && !gen) r = inum(cmd, a, v, 1, 1 << 16, &o->block);
        else if (!strcmp(a, "--eval-every") && !gen) r = inum(cmd, a, v, 1, 1 << 30, &o->eval_every);
        else if (!strcmp(a, "--eval-batches") && !gen) r = inum(cmd, a, v, 1, 1 << 16, &o->eval_batches);
        else if (!strcmp(a, "--seed")) r = inum(cmd, a, v, 0, 1LL << 53, &o->seed);
        else if (!strcmp(a, "--tokens") && gen) r = inum(cmd, a, v, 0, 1 << 24, &o->tokens);
        else if (!strcmp(a, "--top-k") && gen) r = inum(cmd, a, v, 0, 256, &o->top_k);
        else if (!strcmp(a, "--lr") && !gen) r = num(cmd, a, v, 0, 1e3, &o->lr);
        else if (!strcmp(a, "--temperature") && gen) {
            r = num(cmd, a, v, 1e-6, 1e6, &o->temperature);
        } else if (!strcmp(a, "--tune")) {
            o->tune = -1;
            for (int t = 0; t < 4; t++)
                if (!strcmp(v, tunes[t])) o->tune = t;
            if (o->tune < 0) return usage(cmd, "--tune: unknown mode '%s' (off, cached, quick, full)", v);
        } else
            return usage(cmd, "unknown option '%s'", a);
        if (r < 0) return 2;
        i += takes;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ vocabulary */

typedef struct vocab {
    int n;
    unsigned char byte[256]; /* id -> byte */
    int id[256];             /* byte -> id, -1: not in the vocabulary */
} vocab;

static void vocab_from(vocab *v, const unsigned char *s, size_t n)
{
    int seen[256] = {0};
    for (size_t i = 0; i < n; i++) seen[s[i]] = 1;
    v->n = 0;
    for (int b = 0; b < 256; b++) {
        v->id[b] = seen[b] ? v->n : -1;
        if (seen[b]) v->byte[v->n++] = (unsigned char)b;
    }
}

/* The application metadata of a `cltrain text` checkpoint (clt_graph_save's blob; little-endian):
 *   "CLTTEXT\0" u32 version (1) u32 vocabulary size, its bytes in id order, u64 rng_state, i32 batch, f32 lr,
 *   u64 seed, i32 nhistory, nhistory x 6 f64 (tool_epoch_metrics).
 * The network text, optimizer, seed of the graph and counters are the library's part of the file. */
#define TEXT_META_MAGIC "CLTTEXT"
typedef struct wbuf {
    unsigned char *b;
    size_t n;
} wbuf;
static void put(wbuf *w, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) w->b[w->n++] = (unsigned char)(v >> (8 * i));
}
static void put_f32(wbuf *w, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put(w, u, 4);
}
static void put_f64(wbuf *w, double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    put(w, u, 8);
}

static unsigned char *meta_encode(const tool_ckpt_meta *m, const vocab *v, size_t *len)
{
    wbuf w = {malloc(8 + 8 + 256 + 32 + (size_t)m->nhistory * 48), 0};
    if (!w.b) return NULL;
    memcpy(w.b, TEXT_META_MAGIC, 8);
    w.n = 8;
    put(&w, 1, 4);
    put(&w, (uint64_t)v->n, 4);
    for (int i = 0; i < v->n; i++) put(&w, v->byte[i], 1);
    put(&w, m->rng_state, 8);
    put(&w, (uint32_t)m->batch, 4);
    put_f32(&w, m->lr);
    put(&w, m->seed, 8);
    put(&w, (uint32_t)m->nhistory, 4);
    for (int i = 0; i < m->nhistory; i++) {
        const tool_epoch_metrics *e = &m->history[i];
        put_f64(&w, e->train_loss), put_f64(&w, e->train_acc), put_f64(&w, e->test_loss);
        put_f64(&w, e->test_acc), put_f64(&w, e->seconds), put_f64(&w, e->images_per_s);
    }
    *len = w.n;
    return w.b;
}

typedef struct rbuf {
    const unsigned char *b;
    size_t n, at;
    int bad;
} rbuf;
static uint64_t get(rbuf *r, int bytes)
{
    uint64_t v = 0;
    if (r->bad || r->n - r->at < (size_t)bytes) return r->bad = 1, 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->b[r->at++] << (8 * i);
    return v;
}
static double get_f64(rbuf *r)
{
    uint64_t u = get(r, 8);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* Decodes the metadata of an opened checkpoint (counters from the library); -1 if it is not ours or damaged. */
static int meta_decode(const clt_checkpoint *ck, tool_ckpt_meta *m, vocab *v)
{
    size_t len = 0;
    rbuf r = {clt_checkpoint_app_meta(ck, &len), 0, 0, 0};
    r.n = len;
    if (len < 8 || memcmp(r.b, TEXT_META_MAGIC, 8) != 0) return -1;
    r.at = 8;
    if (get(&r, 4) != 1) return -1;
    v->n = (int)get(&r, 4);
    if (r.bad || v->n < 1 || v->n > 256) return -1;
    for (int b = 0; b < 256; b++) v->id[b] = -1;
    for (int i = 0; i < v->n; i++) {
        int x = (int)get(&r, 1);
        if (r.bad || v->id[x] >= 0) return -1;
        v->id[x] = i;
        v->byte[i] = (unsigned char)x;
    }
    memset(m, 0, sizeof *m);
    m->rng_state = get(&r, 8);
    m->batch = (int)(int32_t)get(&r, 4);
    uint32_t lr = (uint32_t)get(&r, 4);
    memcpy(&m->lr, &lr, 4);
    m->seed = get(&r, 8);
    m->nhistory = (int)(int32_t)get(&r, 4);
    if (r.bad || m->batch < 1 || m->nhistory < 0 || m->nhistory > 1024 || !(m->lr >= 0)) return -1;
    for (int i = 0; i < m->nhistory; i++) {
        tool_epoch_metrics *e = &m->history[i];
        e->train_loss = get_f64(&r), e->train_acc = get_f64(&r), e->test_loss = get_f64(&r);
        e->test_acc = get_f64(&r), e->seconds = get_f64(&r), e->images_per_s = get_f64(&r);
    }
    if (r.bad || r.at != r.n) return -1;
    clt_checkpoint_counters(ck, &m->steps, &m->passes);
    clt_compile_settings cs;
    clt_checkpoint_compile_settings(ck, &cs);
    m->opt = cs.optimizer;
    return 0;
}

static int read_text(const char *path, unsigned char **out, size_t *len)
{
    char err[1024];
    int fd = tool_open_regular(path, "--data", err);
    if (fd < 0) return tool_error("%s", err);
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size > TEXT_MAX_BYTES) {
        close(fd);
        return tool_error("%s: larger than 1 GiB", path);
    }
    unsigned char *b = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (b && got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!b || got != (size_t)st.st_size) {
        free(b);
        return tool_error("%s: cannot read the file", path);
    }
    if (got == 0) {
        free(b);
        return tool_error("%s: the text file is empty (nothing to train on)", path);
    }
    *out = b;
    *len = got;
    return 0;
}

/* ------------------------------------------------------------------------------------------ the model */

/* The model's text with `block=` replaced by T (for --block), parsed again. */
static int with_block(clt_model **m, int T)
{
    const char *t = clt_model_text(*m), *b = strstr(t, " block=");
    if (!b) return tool_error("model %s: no block= in its gpt line", clt_model_name(*m));
    const char *e = b + 7;
    while (*e >= '0' && *e <= '9') e++;
    size_t n = strlen(t) + 32;
    char *s = malloc(n), name[80];
    if (!s) return tool_error("out of memory");
    snprintf(s, n, "%.*s block=%d%s", (int)(b - t), t, T, e);
    snprintf(name, sizeof name, "%s", clt_model_name(*m));
    clt_model_destroy(*m);
    *m = NULL;
    int st = clt_model_parse(s, name, m);
    free(s);
    return st < 0 ? tool_error("%s", clt_model_errmsg(*m)) : 0;
}

typedef struct lm_run {
    clt_context *ctx;
    clt_graph *g;
    clt_tensor *ids, *tgt, *logits, *loss;
    int B, T, V;
} lm_run;

static int open_ctx(const opts *o, clt_context **ctx)
{
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = o->device;
    if (o->tune >= 0) cs.tune = o->tune;
    cs.verbose = o->verbose;
    cs.profile = o->profile;
    if (clt_context_create(&cs, ctx) < 0)
        return tool_error("cannot open the OpenCL device%s%s: %s", o->device ? " " : "", o->device ? o->device : "",
                    clt_errmsg(*ctx));
    return 0;
}

static int build_run(lm_run *r, const clt_model *m, int B, int T, int V, int training, const clt_optimizer_settings *opt,
                     uint64_t seed)
{
    r->B = B, r->T = T, r->V = V;
    int si[2] = {B, T}, st[1] = {B * T};
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    cs.seed = seed;
    cs.training = training;
    if (opt) cs.optimizer = *opt;
    if (clt_graph_create(r->ctx, &r->g) < 0 || clt_input(r->g, "ids", 2, si, &r->ids) < 0 ||
        clt_input(r->g, "targets", 1, st, &r->tgt) < 0 || clt_model_build_lm(r->g, m, r->ids, V, &r->logits) < 0 ||
        clt_softmax_cross_entropy(r->g, r->logits, r->tgt, 0.0f, &r->loss) < 0 ||
        clt_graph_keep(r->g, r->logits, 0) < 0 || clt_graph_compile(r->g, &cs) < 0)
        return tool_error("%s", clt_errmsg(r->ctx));
    return 0;
}

/* Windows starting at `starts`: ids are text[s..s+T), targets text[s+1..s+T+1). */
static int load_batch(lm_run *r, const unsigned char *text, const vocab *v, const size_t *starts, float *ids, float *tg)
{
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++) {
            ids[b * r->T + t] = (float)v->id[text[starts[b] + t]];
            tg[b * r->T + t] = (float)v->id[text[starts[b] + t + 1]];
        }
    if (clt_tensor_write(r->g, r->ids, ids, (size_t)r->B * r->T) < 0 ||
        clt_tensor_write(r->g, r->tgt, tg, (size_t)r->B * r->T) < 0)
        return tool_error("%s", clt_errmsg(r->ctx));
    return 0;
}

static int eval_loss(lm_run *r, const unsigned char *text, size_t lo, size_t hi, const vocab *v, int nb, float *ids,
                     float *tg, size_t *starts, double *out)
{
    /* Evenly spaced windows over [lo, hi - T - 1]: the same set at every evaluation. */
    size_t span = hi - lo - (size_t)r->T - 1, count = (size_t)nb * r->B;
    double sum = 0;
    for (int b = 0; b < nb; b++) {
        for (int k = 0; k < r->B; k++) {
            size_t w = (size_t)b * r->B + k;
            starts[k] = lo + (count > 1 ? (size_t)((double)span * w / (count - 1)) : 0);
        }
        float l;
        if (load_batch(r, text, v, starts, ids, tg) || clt_graph_forward(r->g, 0) < 0 ||
            clt_tensor_read(r->g, r->loss, 0, &l, 1) < 0)
            return clt_errmsg(r->ctx)[0] ? tool_error("%s", clt_errmsg(r->ctx)) : 1;
        sum += l;
    }
    *out = sum / nb;
    return 0;
}

static void print_profile(lm_run *r)
{
    int n = 0;
    clt_graph_profile(r->g, NULL, 0, &n);
    clt_op_profile *p = calloc((size_t)n + 1, sizeof *p);
    if (!p) return;
    clt_graph_profile(r->g, p, n, &n);
    double tf = 0, tb = 0;
    const char *kinds[32];
    double kf[32] = {0}, kb[32] = {0};
    int nk = 0;
    for (int i = 0; i < n; i++) {
        tf += p[i].forward_ms, tb += p[i].backward_ms;
        int k = 0;
        while (k < nk && strcmp(kinds[k], p[i].op) != 0) k++;
        if (k == nk && nk < 32) kinds[nk++] = p[i].op;
        if (k < 32) kf[k] += p[i].forward_ms, kb[k] += p[i].backward_ms;
    }
    printf("profile of one training step (%d nodes), by op: forward ms, backward ms, share\n", n);
    for (int k = 0; k < nk; k++)
        printf("  %-22s %9.2f %9.2f %5.1f%%\n", kinds[k], kf[k], kb[k], 100.0 * (kf[k] + kb[k]) / (tf + tb));
    printf("  %-22s %9.2f %9.2f\n", "total", tf, tb);
    free(p);
}

/* ------------------------------------------------------------------------------------------ cltrain text */

typedef struct text_state {
    opts o;
    unsigned char *text;
    size_t len, ntrain;
    vocab v;
    clt_model *m;
    clt_model_train_defaults d;
    lm_run r;
    float *ids, *tg;
    size_t *starts;
    clt_checkpoint *ck; /* the one being resumed, until applied */
    tool_ckpt_meta *meta;
} text_state;

static int text_setup(text_state *s)
{
    opts *o = &s->o;
    if (read_text(o->data, &s->text, &s->len)) return 1;
    vocab_from(&s->v, s->text, s->len);
    const char *model = o->model ? o->model : "gpt-tiny";
    clt_checkpoint *ck = NULL;
    char err[2048];
    int resumed = 0;
    s->meta = calloc(1, sizeof *s->meta);
    if (!s->meta) return tool_error("out of memory");
    if (o->checkpoint) {
        if (cli_check_output("--checkpoint", o->checkpoint, 1, err) < 0) return tool_error("%s", err);
        struct stat st;
        int exists = stat(o->checkpoint, &st) == 0;
        if (exists && !o->resume && !o->overwrite)
            return tool_error("%s exists: pass --resume to continue it or --overwrite to replace it", o->checkpoint);
        if (exists && o->resume) {
            vocab cv;
            if (clt_checkpoint_open(o->checkpoint, &ck) < 0) {
                int r = tool_error("%s", clt_checkpoint_errmsg(ck));
                clt_checkpoint_close(ck);
                return r;
            }
            if (meta_decode(ck, s->meta, &cv) < 0) {
                clt_checkpoint_close(ck);
                return tool_error("%s: not a checkpoint of `cltrain text`", o->checkpoint);
            }
            if (cv.n != s->v.n || memcmp(cv.byte, s->v.byte, (size_t)cv.n) != 0) {
                clt_checkpoint_close(ck);
                return tool_error("%s: its vocabulary (%d bytes) is not the one of %s (%d bytes)", o->checkpoint, cv.n,
                            o->data, s->v.n);
            }
            if (clt_model_parse(clt_checkpoint_model_text(ck), o->checkpoint, &s->m) < 0) {
                clt_checkpoint_close(ck);
                return tool_error("%s: %s", o->checkpoint, clt_model_errmsg(s->m));
            }
            s->ck = ck;
            resumed = 1;
        }
    }
    if (!resumed) {
        if (clt_model_load(model, &s->m) < 0) return tool_error("%s", clt_model_errmsg(s->m));
    }
    clt_model_lm_info lm;
    if (clt_model_lm(s->m, &lm) != 1)
        return tool_error("model %s is not a language model (it needs a gpt line; try --model gpt-tiny)", model);
    if (!resumed && o->block > 0 && o->block != lm.block) {
        if (with_block(&s->m, (int)o->block)) return 1;
        clt_model_lm(s->m, &lm);
    }
    clt_model_get_train_defaults(s->m, &s->d);
    int T = lm.block, B = resumed ? s->meta->batch : (int)(o->batch > 0 ? o->batch : s->d.batch > 0 ? s->d.batch : 12);
    s->ntrain = s->len * 9 / 10;
    if (s->ntrain < (size_t)T + 1 || s->len - s->ntrain < (size_t)T + 1)
        return tool_error("--block %d is larger than the text allows: %s has %zu bytes, %zu for training and %zu for "
                    "validation, and each needs at least block+1 = %d", T, o->data, s->len, s->ntrain,
                    s->len - s->ntrain, T + 1);
    clt_optimizer_settings opt;
    clt_optimizer_default_settings(&opt, s->d.optimizer >= 0 ? s->d.optimizer : CLT_OPT_ADAMW);
    if (s->d.beta1 >= 0) opt.beta1 = s->d.beta1;
    if (s->d.beta2 >= 0) opt.beta2 = s->d.beta2;
    if (s->d.weight_decay >= 0) opt.weight_decay = s->d.weight_decay;
    /* GPT-2's rule: weight decay on the matrices of the linear layers only (not biases, norms, embeddings). */
    opt.decay_matrices_only = 1;
    opt.lr = o->lr >= 0 ? (float)o->lr : s->d.lr > 0 ? s->d.lr : 1e-3f;
    if (resumed) opt = s->meta->opt;
    if (open_ctx(o, &s->r.ctx)) return 1;
    if (build_run(&s->r, s->m, B, T, s->v.n, 1, &opt, resumed ? s->meta->seed : (uint64_t)o->seed)) return 1;
    if (resumed) {
        int st3 = clt_checkpoint_apply(s->ck, s->r.g);
        clt_checkpoint_close(s->ck);
        s->ck = NULL;
        if (st3 < 0) return tool_error("%s: %s", o->checkpoint, clt_errmsg(s->r.ctx));
        fprintf(stderr, "cltrain: resuming %s at step %llu\n", o->checkpoint, (unsigned long long)s->meta->steps);
    } else {
        s->meta->opt = opt;
        s->meta->batch = B;
        s->meta->lr = opt.lr;
        s->meta->seed = (uint64_t)o->seed;
        s->meta->rng_state = (uint64_t)o->seed * 0x2545F4914F6CDD1Dull + 7;
    }
    s->ids = malloc((size_t)B * T * sizeof(float));
    s->tg = malloc((size_t)B * T * sizeof(float));
    s->starts = malloc((size_t)B * sizeof(size_t));
    if (!s->ids || !s->tg || !s->starts) return tool_error("out of memory");
    return 0;
}

static int save_state(text_state *s, long long step)
{
    char err[2048];
    (void)step;
    if (s->o.checkpoint) {
        size_t len = 0;
        unsigned char *blob = meta_encode(s->meta, &s->v, &len);
        if (!blob) return tool_error("out of memory");
        int st = clt_graph_save(s->r.g, s->o.checkpoint, blob, len);
        free(blob);
        if (st < 0) return tool_error("%s", clt_errmsg(s->r.ctx));
    }
    if (s->o.log && cli_write_log(s->o.log, s->meta->history, s->meta->nhistory, err) < 0) return tool_error("%s", err);
    if (s->o.plot && cli_write_plot(s->o.plot, s->meta->history, s->meta->nhistory, "cltrain text", err) < 0)
        return tool_error("%s", err);
    return 0;
}

static int text_loop(text_state *s)
{
    lm_run *r = &s->r;
    opts *o = &s->o;
    long long steps = o->steps > 0 ? o->steps : s->d.steps > 0 ? s->d.steps : 2000;
    long long decay = s->d.steps > 0 ? s->d.steps : steps;
    int warmup = s->d.warmup >= 0 ? s->d.warmup : 0;
    float min_lr = s->d.min_lr >= 0 ? s->d.min_lr : s->meta->lr / 10, clip = s->d.clip > 0 ? s->d.clip : 0;
    long long step = (long long)s->meta->steps;
    cli_progress pr;
    cli_progress_init(&pr, stderr);
    double t0 = cli_now_s(), interval_loss = 0, val = NAN, last_train = NAN;
    long long interval_n = 0, tokens = 0, clipped = 0;
    double train_s = 0;
    if (o->profile) steps = step + 2;
    printf("cltrain text: %s, %zu bytes, vocabulary %d; model %s (block %d, batch %d); %lld steps\n", o->data,
           s->len, s->v.n, clt_model_name(s->m), r->T, r->B, steps);
    while (step < steps && !g_stop) {
        for (int b = 0; b < r->B; b++) s->starts[b] = (size_t)rand_below(&s->meta->rng_state, s->ntrain - r->T);
        clt_lr_schedule_settings ls = {s->meta->lr, min_lr < s->meta->lr ? min_lr : s->meta->lr, (uint64_t)warmup,
                                       (uint64_t)(decay > warmup ? decay : warmup)};
        float lr = 0, l;
        if (clt_lr_schedule(&ls, (uint64_t)step, &lr) < 0) return tool_error("bad learning-rate schedule (warmup %d)", warmup);
        double ts = cli_now_s();
        if (load_batch(r, s->text, &s->v, s->starts, s->ids, s->tg)) return 1;
        if (clt_graph_forward(r->g, 1) < 0 || clt_tensor_read(r->g, r->loss, 0, &l, 1) < 0 ||
            clt_graph_backward(r->g, r->loss) < 0)
            return tool_error("step %lld: %s", step + 1, clt_errmsg(r->ctx));
        if (clip > 0) {
            /* On the device; reading the norm back costs one value (the loss read above already waited). */
            float norm = 0;
            if (clt_graph_clip_grad_norm(r->g, clip, &norm) < 0)
                return tool_error("step %lld: %s", step + 1, clt_errmsg(r->ctx));
            clipped += norm > clip;
        }
        if (clt_graph_step(r->g, lr) < 0) return tool_error("step %lld: %s", step + 1, clt_errmsg(r->ctx));
        if (!isfinite(l)) return tool_error("step %lld: the loss is %g (diverged; try a lower --lr)", step + 1, l);
        step++;
        if (o->profile && step == steps) {
            print_profile(r);
            return 0;
        }
        double dt = cli_now_s() - ts;
        /* The first step of a run compiles and tunes: leave it out of the throughput. */
        if (step > (long long)s->meta->steps + 1) train_s += dt, tokens += (long long)r->B * r->T;
        interval_loss += l, interval_n++;
        double tps = train_s > 0 ? tokens / train_s : 0;
        cli_progress_draw(&pr, stderr, 1, 1, (int)step, (int)steps, l, 0, tps, tps > 0 ? (steps - step) * r->B * r->T / tps : 0);
        if (step % o->eval_every == 0 || step == steps) {
            if (eval_loss(r, s->text, s->ntrain, s->len, &s->v, (int)o->eval_batches, s->ids, s->tg, s->starts, &val))
                return 1;
            last_train = interval_loss / interval_n;
            cli_progress_clear(&pr, stderr);
            printf("step %lld/%lld: train_loss %.4f val_loss %.4f lr %.2e tokens/s %.0f clipped %lld/%lld\n", step,
                   steps, last_train, val, lr, tps, clipped, interval_n);
            fflush(stdout);
            if (s->meta->nhistory < 1024)
                s->meta->history[s->meta->nhistory++] = (tool_epoch_metrics){last_train, 0, val, 0, cli_now_s() - t0,
                                                                             tps};
            interval_loss = 0, interval_n = 0, clipped = 0;
            if (save_state(s, step)) return 1;
        }
    }
    cli_progress_clear(&pr, stderr);
    if (g_stop) {
        fprintf(stderr, "cltrain: interrupted at step %lld%s\n", step,
                o->checkpoint ? " (the checkpoint holds the last evaluation's state)" : "");
        return 130;
    }
    printf("final: steps=%lld val_loss=%.4f train_loss=%.4f tokens_per_s=%.1f seconds=%.1f\n", step, val, last_train,
           train_s > 0 ? tokens / train_s : 0.0, cli_now_s() - t0);
    return 0;
}

int tool_cmd_text(int argc, char **argv)
{
    text_state s = {0};
    int rc = parse_opts("text", argc, argv, &s.o);
    if (rc) return rc == 1 ? 0 : 2;
    if (!s.o.data) return usage("text", "%s", "--data FILE is required");
    if (s.o.log) {
        char err[1024];
        if (cli_check_output("--log", s.o.log, 0, err) < 0) return tool_error("%s", err);
    }
    if (s.o.plot) {
        char err[1024];
        if (cli_check_output("--plot", s.o.plot, 0, err) < 0) return tool_error("%s", err);
    }
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    rc = text_setup(&s);
    if (!rc) rc = text_loop(&s);
    sigaction(SIGINT, &old, NULL);
    clt_graph_destroy(s.r.g);
    clt_context_destroy(s.r.ctx);
    clt_model_destroy(s.m);
    free(s.text), free(s.ids), free(s.tg), free(s.starts), free(s.meta);
    clt_checkpoint_close(s.ck);
    return rc;
}

/* ------------------------------------------------------------------------------------------ generate */

/* Samples an id from logits (V) with temperature and top-k. */
static int sample(const float *logits, int V, double temp, int top_k, uint64_t *rng)
{
    double p[256], m = -INFINITY;
    for (int i = 0; i < V; i++) m = fmax(m, logits[i] / temp);
    double kth = -INFINITY;
    if (top_k > 0 && top_k < V) {
        /* the k-th largest logit: ties at the threshold are all kept */
        float sorted[256];
        memcpy(sorted, logits, (size_t)V * sizeof(float));
        for (int i = 0; i < top_k; i++)
            for (int j = i + 1; j < V; j++)
                if (sorted[j] > sorted[i]) {
                    float t = sorted[i];
                    sorted[i] = sorted[j], sorted[j] = t;
                }
        kth = sorted[top_k - 1];
    }
    double sum = 0;
    for (int i = 0; i < V; i++) sum += p[i] = logits[i] >= kth ? exp(logits[i] / temp - m) : 0;
    double u = rand01(rng) * sum;
    for (int i = 0; i < V; i++) {
        if (u < p[i]) return i;
        u -= p[i];
    }
    for (int i = V - 1; i >= 0; i--)
        if (p[i] > 0) return i;
    return 0;
}

static int generate(const opts *o, lm_run *r, const vocab *v, int *ctx_ids, int n)
{
    uint64_t rng = (uint64_t)o->seed * 0x9E3779B97F4A7C15ull + 1;
    float *ids = calloc((size_t)r->T, sizeof(float)), *logits = malloc((size_t)r->T * r->V * sizeof(float));
    if (!ids || !logits) {
        free(ids), free(logits);
        return tool_error("out of memory");
    }
    int rc = 0;
    for (long long k = 0; k < o->tokens && !rc; k++) {
        /* The last T tokens; positions after them are padding the causal mask keeps out of row c-1. */
        int c = n < r->T ? n : r->T;
        for (int t = 0; t < r->T; t++) ids[t] = t < c ? (float)ctx_ids[n - c + t] : 0.0f;
        if (clt_tensor_write(r->g, r->ids, ids, (size_t)r->T) < 0 || clt_graph_forward(r->g, 0) < 0 ||
            clt_tensor_read(r->g, r->logits, 0, logits, (size_t)r->T * r->V) < 0) {
            rc = tool_error("%s", clt_errmsg(r->ctx));
            break;
        }
        int id = sample(logits + (size_t)(c - 1) * r->V, r->V, o->temperature, (int)o->top_k, &rng);
        ctx_ids[n++] = id;
        fputc(v->byte[id], stdout);
    }
    fputc('\n', stdout);
    free(ids), free(logits);
    return rc;
}

int tool_cmd_generate(int argc, char **argv)
{
    opts o;
    int rc = parse_opts("generate", argc, argv, &o);
    if (rc) return rc == 1 ? 0 : 2;
    if (!o.checkpoint) return usage("generate", "%s", "--checkpoint FILE is required");
    clt_checkpoint *ck = NULL;
    tool_ckpt_meta *meta = calloc(1, sizeof *meta);
    vocab v;
    if (!meta) return tool_error("out of memory");
    if (clt_checkpoint_open(o.checkpoint, &ck) < 0) {
        rc = tool_error("%s", clt_checkpoint_errmsg(ck));
        clt_checkpoint_close(ck);
        free(meta);
        return rc;
    }
    if (meta_decode(ck, meta, &v) < 0) {
        clt_checkpoint_close(ck);
        free(meta);
        return tool_error("%s: not a checkpoint of `cltrain text`", o.checkpoint);
    }
    free(meta);
    const char *prompt = o.prompt ? o.prompt : v.id['\n'] >= 0 ? "\n" : "";
    size_t pl = strlen(prompt);
    for (size_t i = 0; i < pl; i++) {
        unsigned char c = (unsigned char)prompt[i];
        if (v.id[c] < 0) {
            clt_checkpoint_close(ck);
            if (c >= 0x20 && c < 0x7f)
                return tool_error("--prompt: character '%c' (byte 0x%02x, position %zu) is not in the model's vocabulary "
                            "(%d bytes of its training text)", c, c, i, v.n);
            return tool_error("--prompt: byte 0x%02x (position %zu) is not in the model's vocabulary (%d bytes of its "
                        "training text)", c, i, v.n);
        }
    }
    clt_model *m = NULL;
    lm_run r = {0};
    int *ctx_ids = malloc((pl + (size_t)o.tokens + 1) * sizeof(int));
    rc = 0;
    if (!ctx_ids) rc = tool_error("out of memory");
    else if (clt_model_parse(clt_checkpoint_model_text(ck), o.checkpoint, &m) < 0)
        rc = tool_error("%s: %s", o.checkpoint, clt_model_errmsg(m));
    clt_model_lm_info lm;
    if (!rc && clt_model_lm(m, &lm) != 1) rc = tool_error("%s: not a language model", o.checkpoint);
    if (!rc) rc = open_ctx(&o, &r.ctx);
    if (!rc) rc = build_run(&r, m, 1, lm.block, v.n, 0, NULL, 1);
    if (!rc && clt_checkpoint_apply(ck, r.g) < 0) rc = tool_error("%s: %s", o.checkpoint, clt_errmsg(r.ctx));
    if (!rc) {
        int n = 0;
        for (size_t i = 0; i < pl; i++) ctx_ids[n++] = v.id[(unsigned char)prompt[i]];
        fwrite(prompt, 1, pl, stdout);
        if (n == 0) ctx_ids[n++] = 0; /* no prompt and no newline in the vocabulary: start from id 0 */
        rc = generate(&o, &r, &v, ctx_ids, n);
    }
    free(ctx_ids);
    clt_checkpoint_close(ck);
    clt_graph_destroy(r.g);
    clt_context_destroy(r.ctx);
    clt_model_destroy(m);
    return rc;
}
