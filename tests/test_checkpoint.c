/* test_checkpoint.c - library checkpoints: bit-exact round trips (every op's state, each optimizer), refusal of
 * foreign, truncated, bit-flipped, forged, NaN, FIFO and future-version files, version-1 files, atomic saves. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

static char root[256];

/* Every op with state: conv (weight, bias), a conv without bias followed by bias_add, batch norm (scale, shift,
 * running mean and variance) in both image and vector form, a projected residual, dense layers, dropout. */
static const char *MODEL = "conv 4 3 pad=same\nbatchnorm\nrelu\nresidual project {\n  conv 6 3 stride=2 pad=same bias=0\n"
                           "  batchnorm\n}\nmaxpool 2\nflatten\ndense 5\nbatchnorm\ndropout 0.25\ndense classes\n";

typedef struct net {
    clt_graph *g;
    clt_model *m;
    clt_tensor *x, *y, *logits, *biased, *loss;
    int batch;
} net;

static void net_free(net *n)
{
    clt_graph_destroy(n->g);
    clt_model_destroy(n->m);
    memset(n, 0, sizeof *n);
}

/* x (B,2,6,6) -> MODEL (3 classes) -> bias_add -> cross-entropy. */
static int g_post = 1; /* add the bias_add after the model */

static int make_net(clt_context *ctx, net *n, const char *text, int batch, int opt, uint64_t seed, int training)
{
    memset(n, 0, sizeof *n);
    n->batch = batch;
    int xs[4] = {batch, 2, 6, 6}, ys[1] = {batch};
    if (clt_model_parse(text, "net", &n->m) < 0) {
        TU_CHECK(0, "parse: %s", clt_model_errmsg(n->m));
        return 0;
    }
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    cs.seed = seed;
    cs.training = training;
    clt_optimizer_default_settings(&cs.optimizer, opt);
    if (opt == CLT_OPT_SGD) {
        cs.optimizer.momentum = 0.9f;
        cs.optimizer.nesterov = 1;
    }
    int ok = TU_OK(ctx, clt_graph_create(ctx, &n->g)) && TU_OK(ctx, clt_input(n->g, "x", 4, xs, &n->x)) &&
             TU_OK(ctx, clt_model_build(n->g, n->m, n->x, 3, &n->logits)) &&
             TU_OK(ctx, clt_graph_keep(n->g, n->logits, 0));
    n->biased = n->logits;
    if (ok && g_post) ok = TU_OK(ctx, clt_bias_add(n->g, n->logits, "post", &n->biased));
    if (ok && training)
        ok = TU_OK(ctx, clt_input(n->g, "labels", 1, ys, &n->y)) &&
             TU_OK(ctx, clt_softmax_cross_entropy(n->g, n->biased, n->y, 0.0f, &n->loss));
    return ok && TU_OK(ctx, clt_graph_compile(n->g, &cs));
}

static void fill_batch(int k, int batch, float *x, float *y)
{
    tu_rng r = {(uint64_t)k * 7 + 1};
    tu_fill_uniform(&r, x, (size_t)batch * 72, -1, 1);
    for (int i = 0; i < batch; i++) y[i] = (float)((i + k) % 3);
}

static int train_step(clt_context *ctx, net *n, int k)
{
    float x[8 * 72], y[8];
    fill_batch(k, n->batch, x, y);
    return TU_OK(ctx, clt_tensor_write(n->g, n->x, x, (size_t)n->batch * 72)) &&
           TU_OK(ctx, clt_tensor_write(n->g, n->y, y, (size_t)n->batch)) && TU_OK(ctx, clt_graph_forward(n->g, 1)) &&
           TU_OK(ctx, clt_graph_backward(n->g, n->loss)) && TU_OK(ctx, clt_graph_step(n->g, 0.05f));
}

/* Values and both slots of every state tensor, concatenated. */
static float *dump(clt_context *ctx, clt_graph *g, size_t *len)
{
    size_t total = 0;
    for (int i = 0; i < clt_graph_state_count(g); i++) total += 3 * clt_tensor_numel(clt_graph_state_tensor(g, i, NULL));
    float *v = calloc(total + 1, sizeof *v);
    size_t at = 0;
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        int tr;
        clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
        size_t k = clt_tensor_numel(t);
        TU_OK(ctx, clt_tensor_read(g, t, 0, v + at, k));
        if (tr) {
            TU_OK(ctx, clt_tensor_read_slot(g, t, 0, v + at + k, k));
            TU_OK(ctx, clt_tensor_read_slot(g, t, 1, v + at + 2 * k, k));
        }
        at += 3 * k;
    }
    *len = total;
    return v;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc((size_t)n + 1);
    *len = fread(d, 1, (size_t)n, f);
    fclose(f);
    return d;
}

static void spit(const char *path, const unsigned char *d, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    if (len) fwrite(d, 1, len, f);
    fclose(f);
}

static void fix_crc(unsigned char *d, size_t len)
{
    uint32_t c = (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), d, len - 4);
    for (int b = 0; b < 4; b++) d[len - 4 + b] = (unsigned char)(c >> (8 * b));
}

/* Opens `path` expecting `status` and a message naming the file and holding `needle`. */
static void expect_open_err(const char *path, int status, const char *needle, const char *what)
{
    clt_checkpoint *ck = NULL;
    int st = clt_checkpoint_open(path, &ck);
    const char *msg = clt_checkpoint_errmsg(ck);
    TU_CHECK(st == status, "%s: status %d, expected %d (%s)", what, st, status, msg);
    TU_CHECK(strstr(msg, path) != NULL, "%s: message '%s' does not name the file", what, msg);
    TU_CHECK(strstr(msg, needle) != NULL, "%s: message '%s' does not contain '%s'", what, msg, needle);
    size_t ml = 1;
    clt_checkpoint_app_meta(ck, &ml);
    TU_CHECK(clt_checkpoint_version(ck) == 0 && ml == 0 && !clt_checkpoint_model_text(ck)[0],
             "%s: a refused checkpoint exposes nothing", what);
    clt_checkpoint_close(ck);
}

/* Save after two steps, open, check every field, apply to a fresh graph of another batch size, compare bits. */
static void round_trip(clt_context *ctx, int opt, const char *name)
{
    char path[400];
    snprintf(path, sizeof path, "%s/rt_%s.ckpt", root, name);
    net a, b;
    if (!make_net(ctx, &a, MODEL, 4, opt, 3, 1) || !train_step(ctx, &a, 1) || !train_step(ctx, &a, 2)) return;
    const char app[11] = "hello\0world";
    if (!TU_OK(ctx, clt_graph_save(a.g, path, app, sizeof app))) return;
    clt_checkpoint *ck = NULL;
    int st = clt_checkpoint_open(path, &ck);
    TU_CHECK(st == CLT_OK, "%s: open: %s", name, clt_checkpoint_errmsg(ck));
    TU_CHECK(clt_checkpoint_version(ck) == 2, "%s: version %d", name, clt_checkpoint_version(ck));
    TU_CHECK(strcmp(clt_checkpoint_model_text(ck), clt_model_text(a.m)) == 0, "%s: network text differs", name);
    int c, h, w, k;
    clt_checkpoint_input(ck, &c, &h, &w, &k);
    TU_CHECK(c == 2 && h == 6 && w == 6 && k == 3, "%s: input %dx%dx%d, %d classes", name, c, h, w, k);
    size_t ml;
    const void *meta = clt_checkpoint_app_meta(ck, &ml);
    TU_CHECK(ml == sizeof app && memcmp(meta, app, ml) == 0, "%s: application metadata differs (%zu bytes)", name, ml);
    uint64_t s1, p1, s2, p2;
    clt_graph_get_counters(a.g, &s1, &p1);
    clt_checkpoint_counters(ck, &s2, &p2);
    TU_CHECK(s1 == 2 && p1 == 2 && s2 == 2 && p2 == 2, "%s: counters %llu/%llu", name, (unsigned long long)s2,
             (unsigned long long)p2);
    clt_compile_settings cs;
    clt_checkpoint_compile_settings(ck, &cs);
    TU_CHECK(cs.seed == 3 && cs.optimizer.type == opt && cs.training == 1, "%s: compile settings", name);
    if (opt == CLT_OPT_SGD) TU_CHECK(cs.optimizer.momentum == 0.9f && cs.optimizer.nesterov == 1, "sgd settings");
    if (make_net(ctx, &b, MODEL, 2, opt, 99, 1)) {
        size_t la, lb;
        float *va = dump(ctx, a.g, &la), *vb = dump(ctx, b.g, &lb);
        TU_CHECK(la == lb && memcmp(va, vb, la * sizeof *va) != 0, "%s: a fresh graph differs before apply", name);
        free(vb);
        TU_OK(ctx, clt_checkpoint_apply(ck, b.g));
        vb = dump(ctx, b.g, &lb);
        size_t diff = 0;
        for (size_t i = 0; i < la && la == lb; i++) diff += memcmp(&va[i], &vb[i], 4) != 0;
        TU_CHECK(la == lb && diff == 0, "%s: %zu of %zu values or slots differ after apply", name, diff, la);
        clt_graph_get_counters(b.g, &s2, &p2);
        TU_CHECK(s2 == 2 && p2 == 2, "%s: counters not applied", name);
        /* Training goes on identically (same batch size and seed, which dropout masks are compiled from: a third
         * graph). */
        net c3;
        if (make_net(ctx, &c3, MODEL, 4, opt, 3, 1) && TU_OK(ctx, clt_checkpoint_apply(ck, c3.g)) &&
            train_step(ctx, &a, 3) && train_step(ctx, &c3, 3)) {
            free(va);
            free(vb);
            va = dump(ctx, a.g, &la);
            vb = dump(ctx, c3.g, &lb);
            TU_CHECK(la == lb && memcmp(va, vb, la * sizeof *va) == 0, "%s: a step after apply differs", name);
        }
        net_free(&c3);
        free(va);
        free(vb);
    }
    net_free(&b);
    clt_checkpoint_close(ck);
    net_free(&a);
}

/* Another network is refused, naming the mismatch, and the graph is left as it was. */
static void foreign(clt_context *ctx, const char *path)
{
    clt_checkpoint *ck = NULL;
    if (clt_checkpoint_open(path, &ck) < 0) {
        TU_CHECK(0, "open: %s", clt_checkpoint_errmsg(ck));
        clt_checkpoint_close(ck);
        return;
    }
    const char *wider = "conv 4 3 pad=same\nbatchnorm\nrelu\nresidual project {\n  conv 6 3 stride=2 pad=same bias=0\n"
                        "  batchnorm\n}\nmaxpool 2\nflatten\ndense 7\nbatchnorm\ndropout 0.25\ndense classes\n";
    const char *longer = "conv 4 3 pad=same\nbatchnorm\nrelu\nresidual project {\n  conv 6 3 stride=2 pad=same bias=0\n"
                         "  batchnorm\n}\nmaxpool 2\nflatten\ndense 5\nbatchnorm\ndropout 0.25\ndense classes\nbatchnorm\n";
    const char *shorter = "conv 4 3 pad=same\nbatchnorm\nrelu\nresidual project {\n  conv 6 3 stride=2 pad=same bias=0\n"
                          "  batchnorm\n}\nmaxpool 2\nflatten\ndense classes\n";
    struct {
        const char *text;
        int status;
        const char *needle;
    } cases[] = {
        {wider, CLT_ERR_SHAPE, "tensor 'fc1.weight' is (5,6) in the checkpoint but (7,6) in the graph"},
        {longer, CLT_ERR_FORMAT, "it was saved from another network"},
        {shorter, CLT_ERR_SHAPE, "tensor 'fc1.weight' is (5,6) in the checkpoint but (3,6) in the graph"},
    };
    for (int i = 0; i < 3; i++) {
        net n;
        if (!make_net(ctx, &n, cases[i].text, 2, CLT_OPT_ADAM, 5, 1)) continue;
        size_t l0, l1;
        float *before = dump(ctx, n.g, &l0);
        int st = clt_checkpoint_apply(ck, n.g);
        const char *msg = clt_errmsg(ctx);
        TU_CHECK(st == cases[i].status && strstr(msg, cases[i].needle) && strstr(msg, path),
                 "foreign %d: %d '%s', expected '%s'", i, st, msg, cases[i].needle);
        float *after = dump(ctx, n.g, &l1);
        TU_CHECK(l0 == l1 && memcmp(before, after, l0 * sizeof *before) == 0, "foreign %d: the graph was changed", i);
        free(before);
        free(after);
        net_free(&n);
    }
    /* Without the extra bias_add the checkpoint has a tensor the graph lacks. */
    net n;
    g_post = 0;
    if (make_net(ctx, &n, MODEL, 2, CLT_OPT_ADAM, 5, 0)) {
        int st = clt_checkpoint_apply(ck, n.g);
        TU_CHECK(st == CLT_ERR_FORMAT && strstr(clt_errmsg(ctx), "the checkpoint's tensor 'post.bias' does not exist "
                                                "in the graph"), "extra tensor: %d %s", st, clt_errmsg(ctx));
    }
    g_post = 1;
    net_free(&n);
    clt_checkpoint_close(ck);
}

/* Evaluation graphs from the file, batched prediction with a partial last batch. */
static void inference(clt_context *ctx)
{
    char path[420];
    snprintf(path, sizeof path, "%s/inf.ckpt", root);
    net src;
    g_post = 0;
    int made = make_net(ctx, &src, MODEL, 4, CLT_OPT_SGD, 4, 1) && train_step(ctx, &src, 1) &&
               TU_OK(ctx, clt_graph_save(src.g, path, NULL, 0));
    g_post = 1;
    net_free(&src);
    if (!made) return;
    clt_load_settings ls;
    clt_load_default_settings(&ls);
    TU_CHECK(ls.batch == 64 && ls.training == 0, "load defaults");
    ls.batch = 4;
    clt_graph *g = NULL;
    clt_tensor *x = NULL, *lg = NULL;
    if (!TU_OK(ctx, clt_graph_load(ctx, path, &ls, &g)) || !TU_OK(ctx, clt_graph_model_tensors(g, &x, &lg))) return;
    TU_CHECK(clt_tensor_dim(x, 0) == 4 && clt_tensor_dim(lg, 1) == 3, "loaded graph shapes");
    size_t pb = 0, ab = 0, pt = 0, at = 0;
    clt_graph_memory(g, &pb, &ab);
    net t;
    if (make_net(ctx, &t, MODEL, 4, CLT_OPT_ADAM, 1, 1)) {
        clt_graph_memory(t.g, &pt, &at);
        TU_CHECK(pb < pt, "evaluation graph holds no gradients or optimizer state: %zu vs %zu bytes", pb, pt);
        TU_CHECK(clt_checkpoint_apply(NULL, t.g) == CLT_ERR_INVALID &&
                 strstr(clt_errmsg(ctx), "clt_checkpoint_apply: the checkpoint is NULL"), "NULL checkpoint");
    }
    float xs[7 * 72], got[7 * 3], ref[8 * 3], y[8];
    fill_batch(5, 7, xs, y);
    TU_OK(ctx, clt_predict(g, xs, 7, got));
    /* Reference: the same graph, two full batches by hand (the second zero-padded). */
    float pad[4 * 72];
    for (int s = 0; s < 2; s++) {
        memset(pad, 0, sizeof pad);
        memcpy(pad, xs + s * 4 * 72, (size_t)(s ? 3 : 4) * 72 * sizeof *pad);
        TU_OK(ctx, clt_tensor_write(g, x, pad, 4 * 72));
        TU_OK(ctx, clt_graph_forward(g, 0));
        TU_OK(ctx, clt_tensor_read(g, lg, 0, ref + s * 12, 12));
    }
    TU_CHECK(memcmp(got, ref, sizeof got) == 0, "clt_predict differs from the batches run by hand");
    int finite = 1;
    for (int i = 0; i < 21; i++) finite &= got[i] == got[i];
    TU_CHECK(finite, "predictions finite");
    TU_CHECK(clt_predict(g, NULL, 3, got) == CLT_ERR_INVALID && strstr(clt_errmsg(ctx), "clt_predict: x is NULL"),
             "NULL x: %s", clt_errmsg(ctx));
    clt_graph_destroy(g);
    net_free(&t);
    /* A graph without a model cannot predict. */
    clt_graph *bare = NULL;
    clt_tensor *in;
    int s2[2] = {2, 3};
    if (TU_OK(ctx, clt_graph_create(ctx, &bare)) && TU_OK(ctx, clt_input(bare, "x", 2, s2, &in)))
        TU_CHECK(clt_predict(bare, xs, 1, got) == CLT_ERR_STATE && strstr(clt_errmsg(ctx), "no model was built"),
                 "no model: %s", clt_errmsg(ctx));
    clt_graph_destroy(bare);
    /* A missing file: the open's message in the context. */
    char missing[420];
    snprintf(missing, sizeof missing, "%s/nope.ckpt", root);
    TU_CHECK(clt_graph_load(ctx, missing, &ls, &g) == CLT_ERR_IO && g == NULL && strstr(clt_errmsg(ctx), missing) &&
             strstr(clt_errmsg(ctx), "cannot open the checkpoint"), "load of a missing file: %s", clt_errmsg(ctx));
}

/* Every truncation, every single-bit flip, forged sizes and values with a valid CRC, future versions. */
static void damaged(const char *path)
{
    size_t len;
    unsigned char *good = slurp(path, &len);
    TU_CHECK(good && len > 1000, "checkpoint size %zu", len);
    if (!good) return;
    char bad[420];
    snprintf(bad, sizeof bad, "%s/bad.ckpt", root);
    int fails = 0;
    for (size_t l = 0; l < len && fails < 5; l++) {
        spit(bad, good, l);
        clt_checkpoint *ck = NULL;
        int st = clt_checkpoint_open(bad, &ck);
        const char *msg = clt_checkpoint_errmsg(ck);
        const char *want = l < 8 ? "not a cltrain checkpoint (file too short)" : l < 20 ? "truncated checkpoint ("
                                                                                        : "truncated checkpoint: the header says";
        if (st != CLT_ERR_FORMAT || !strstr(msg, want)) {
            TU_CHECK(0, "truncated to %zu bytes: %d '%s', expected '%s'", l, st, msg, want);
            fails++;
        }
        clt_checkpoint_close(ck);
    }
    unsigned char *d = malloc(len + 8);
    fails = 0;
    for (size_t i = 0; i < len && fails < 5; i++) {
        memcpy(d, good, len);
        d[i] ^= (unsigned char)(1u << (i % 8));
        spit(bad, d, len);
        clt_checkpoint *ck = NULL;
        int st = clt_checkpoint_open(bad, &ck);
        const char *msg = clt_checkpoint_errmsg(ck);
        const char *want = i < 8 ? "bad magic bytes" : i < 12 ? "checkpoint format version" : i < 20 ? "the header says"
                                                                                                : "checksum mismatch";
        if (st != CLT_ERR_FORMAT || !strstr(msg, want)) {
            TU_CHECK(0, "bit %zu of byte %zu flipped: %d '%s', expected '%s'", i % 8, i, st, msg, want);
            fails++;
        }
        clt_checkpoint_close(ck);
    }
    /* Trailing data. */
    memcpy(d, good, len);
    memcpy(d + len, "JUNKJUNK", 8);
    spit(bad, d, len + 8);
    expect_open_err(bad, CLT_ERR_FORMAT, "corrupt (trailing data) checkpoint", "trailing data");
    /* Version 99 with an otherwise valid file, and version 0. */
    memcpy(d, good, len);
    d[8] = 99;
    fix_crc(d, len);
    spit(bad, d, len);
    expect_open_err(bad, CLT_ERR_FORMAT, "checkpoint format version 99; this build reads 2 (and converts version 1)",
                    "version 99");
    d[8] = 0;
    fix_crc(d, len);
    spit(bad, d, len);
    expect_open_err(bad, CLT_ERR_FORMAT, "checkpoint format version 0; this build reads 2", "version 0");
    /* Sizes forged under a valid CRC: the text length, the metadata length, beyond the file. */
    memcpy(d, good, len);
    d[23] = 0x7f;
    fix_crc(d, len);
    spit(bad, d, len);
    expect_open_err(bad, CLT_ERR_FORMAT, "malformed checkpoint", "forged text length");
    uint32_t tl = (uint32_t)good[20] | (uint32_t)good[21] << 8;
    size_t o_meta = 24 + tl + 16 + 36 + 24;
    memcpy(d, good, len);
    d[o_meta + 7] = 0x40;
    fix_crc(d, len);
    spit(bad, d, len);
    expect_open_err(bad, CLT_ERR_FORMAT, "malformed checkpoint", "forged metadata length");
    /* Tensor count: the u32 after the metadata (11 bytes here). */
    size_t o_count = o_meta + 8 + 11;
    memcpy(d, good, len);
    TU_CHECK(d[o_count] > 10 && d[o_count] < 40, "tensor count offset: %d", d[o_count]);
    d[o_count + 3] = 0x10;
    fix_crc(d, len);
    spit(bad, d, len);
    expect_open_err(bad, CLT_ERR_FORMAT, "malformed checkpoint", "forged tensor count");
    /* NaN in the first tensor's values ("conv1.weight", 4 dims) and in its second slot; Inf in the last value. */
    size_t o_val = o_count + 4 + 4 + strlen("conv1.weight") + 4 + 16 + 1;
    uint32_t numel = 4 * 2 * 3 * 3;
    const float nan = (float)NAN, inf = (float)INFINITY;
    memcpy(d, good, len);
    memcpy(d + o_val + 4 * 5, &nan, 4);
    fix_crc(d, len);
    spit(bad, d, len);
    expect_open_err(bad, CLT_ERR_FORMAT, "tensor 'conv1.weight' holds nan at index 5: refused", "NaN weight");
    memcpy(d, good, len);
    memcpy(d + o_val + 4 * (2 * numel + 1), &inf, 4);
    fix_crc(d, len);
    spit(bad, d, len);
    expect_open_err(bad, CLT_ERR_FORMAT, "optimizer slot 1 of tensor 'conv1.weight' holds inf at index 1", "Inf slot");
    /* Not a checkpoint at all, a folder, a missing file. */
    spit(bad, (const unsigned char *)"hello, world: not a checkpoint\n", 31);
    expect_open_err(bad, CLT_ERR_FORMAT, "not a cltrain checkpoint (bad magic bytes)", "text file");
    expect_open_err(root, CLT_ERR_IO, "not a regular file (a folder)", "folder");
    char missing[420];
    snprintf(missing, sizeof missing, "%s/nope.ckpt", root);
    expect_open_err(missing, CLT_ERR_IO, "cannot open the checkpoint", "missing");
    free(d);
    free(good);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "FAIL: opening a FIFO hangs\n";
    if (write(2, m, sizeof m - 1) < 0) _exit(1);
    _exit(1);
}

static void fifo(void)
{
    char p[420];
    snprintf(p, sizeof p, "%s/fifo.ckpt", root);
    unlink(p);
    if (mkfifo(p, 0600) != 0) {
        TU_CHECK(0, "mkfifo: %s", strerror(errno));
        return;
    }
    signal(SIGALRM, on_alarm);
    alarm(20);
    expect_open_err(p, CLT_ERR_IO, "not a regular file (a FIFO)", "FIFO");
    alarm(0);
    unlink(p);
}

static float fixture_value(int tensor, int copy, size_t k) { return (float)(tensor + 1) * 0.125f + (float)copy * 0.5f + (float)k * 0.0078125f; }

/* A version-1 file written by cltrain 0.1's writer (tests/data/gen_v1_fixture.c) is converted. */
static void version1(clt_context *ctx)
{
    const char *path = TEST_DATA_DIR "/v1_mlp.ckpt";
    clt_checkpoint *ck = NULL;
    int st = clt_checkpoint_open(path, &ck);
    TU_CHECK(st == CLT_OK, "v1 open: %s", clt_checkpoint_errmsg(ck));
    if (st) {
        clt_checkpoint_close(ck);
        return;
    }
    TU_CHECK(clt_checkpoint_version(ck) == 1, "version %d", clt_checkpoint_version(ck));
    clt_model *m = NULL;
    clt_model_parse("flatten\ndense 4\nbatchnorm\nrelu\ndense classes\n", "v1", &m);
    TU_CHECK(strcmp(clt_checkpoint_model_text(ck), clt_model_text(m)) == 0, "v1 network text '%s'",
             clt_checkpoint_model_text(ck));
    clt_model_destroy(m);
    int c, h, w, k;
    clt_checkpoint_input(ck, &c, &h, &w, &k);
    TU_CHECK(c == 1 && h == 3 && w == 2 && k == 3, "v1 input %dx%dx%d, %d classes", c, h, w, k);
    uint64_t steps, passes;
    clt_checkpoint_counters(ck, &steps, &passes);
    TU_CHECK(steps == 7 && passes == 9, "v1 counters");
    clt_compile_settings cs;
    clt_checkpoint_compile_settings(ck, &cs);
    TU_CHECK(cs.seed == 11 && cs.optimizer.type == CLT_OPT_SGD && cs.optimizer.momentum == 0.9f, "v1 optimizer");
    size_t ml;
    const unsigned char *meta = clt_checkpoint_app_meta(ck, &ml);
    /* The metadata section (str "cifar10" first) and the stored text with the tool's block at its end. */
    TU_CHECK(ml > 100 && meta[0] == 7 && memcmp(meta + 4, "cifar10", 7) == 0 &&
             memcmp(meta + ml - 12, "# class 2 c\n", 12) == 0, "v1 application metadata (%zu bytes)", ml);
    clt_load_settings ls;
    clt_load_default_settings(&ls);
    ls.batch = 2;
    ls.training = 1;
    clt_graph *g = NULL;
    if (TU_OK(ctx, clt_checkpoint_build(ck, ctx, &ls, &g))) {
        size_t bad = 0, total = 0;
        for (int i = 0; i < clt_graph_state_count(g); i++) {
            int tr;
            clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
            size_t n = clt_tensor_numel(t);
            float *v = malloc(n * sizeof *v);
            for (int cp = 0; cp < (tr ? 3 : 1); cp++) {
                TU_OK(ctx, cp ? clt_tensor_read_slot(g, t, cp - 1, v, n) : clt_tensor_read(g, t, 0, v, n));
                /* SGD with momentum keeps one slot: the second reads as zeros. */
                for (size_t j = 0; j < n; j++) bad += v[j] != (cp == 2 ? 0.0f : fixture_value(i, cp, j));
                total += n;
            }
            free(v);
        }
        TU_CHECK(bad == 0 && total > 50, "v1 state: %zu of %zu values differ", bad, total);
        clt_graph_get_counters(g, &steps, &passes);
        TU_CHECK(steps == 7 && passes == 9, "v1 counters applied");
    }
    clt_graph_destroy(g);
    clt_checkpoint_close(ck);
}

static int count_tmp(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c '\\.tmp\\.'", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* Saves that fail leave the old file; stale temporaries go; a NaN state is never saved. */
static void saving(clt_context *ctx)
{
    char dir[420], path[460];
    snprintf(dir, sizeof dir, "%s/save", root);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/s.ckpt", dir);
    net a;
    if (!make_net(ctx, &a, MODEL, 2, CLT_OPT_ADAMW, 8, 1) || !train_step(ctx, &a, 1)) return;
    /* The old fixed temporary name of this pid (a crash of an earlier process with the same pid) is no obstacle;
     * a stale temporary of a killed writer (modified a day ago) is removed. */
    char fixed[520], stale_tmp[560];
    snprintf(fixed, sizeof fixed, "%s.tmp.%ld", path, (long)getpid());
    spit(fixed, (const unsigned char *)"mine", 4);
    snprintf(stale_tmp, sizeof stale_tmp, "%s.tmp.%ld.0123456789abcdef", path, (long)getpid());
    spit(stale_tmp, (const unsigned char *)"old", 3);
    struct timeval tv[2];
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= 25 * 3600;
    tv[1] = tv[0];
    utimes(stale_tmp, tv);
    TU_OK(ctx, clt_graph_save(a.g, path, NULL, 0));
    TU_CHECK(access(stale_tmp, F_OK) != 0, "a stale temporary was left");
    size_t lm;
    unsigned char *mine = slurp(fixed, &lm);
    TU_CHECK(mine && lm == 4 && memcmp(mine, "mine", 4) == 0, "a file with the old temporary name was changed");
    free(mine);
    unlink(fixed);
    TU_CHECK(count_tmp(dir) == 0, "temporaries left after a save: %d", count_tmp(dir));
    size_t len, l2;
    unsigned char *orig = slurp(path, &len);
    /* Out of space midway: a file-size limit makes the write fail after some bytes. */
    train_step(ctx, &a, 2);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old_lim, lim;
    getrlimit(RLIMIT_FSIZE, &old_lim);
    lim = old_lim;
    lim.rlim_cur = 100;
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        int st = clt_graph_save(a.g, path, NULL, 0);
        setrlimit(RLIMIT_FSIZE, &old_lim);
        TU_CHECK(st == CLT_ERR_IO && strstr(clt_errmsg(ctx), "unchanged"), "write failure: %d %s", st, clt_errmsg(ctx));
        unsigned char *now = slurp(path, &l2);
        TU_CHECK(now && l2 == len && memcmp(now, orig, len) == 0, "old checkpoint changed by a failed write");
        free(now);
        TU_CHECK(count_tmp(dir) == 0, "temporary left after a failed write");
    }
    /* A folder that does not exist. */
    char nodir[520];
    snprintf(nodir, sizeof nodir, "%s/no/such/x.ckpt", dir);
    int st = clt_graph_save(a.g, nodir, NULL, 0);
    TU_CHECK(st == CLT_ERR_IO && strstr(clt_errmsg(ctx), nodir), "missing folder: %d %s", st, clt_errmsg(ctx));
    /* A NaN weight (a diverged run) is refused and the last good file stays. */
    clt_tensor *t = clt_graph_state_tensor(a.g, 2, NULL);
    size_t n = clt_tensor_numel(t);
    float *v = malloc(n * sizeof *v);
    TU_OK(ctx, clt_tensor_read(a.g, t, 0, v, n));
    v[n - 1] = (float)NAN;
    TU_OK(ctx, clt_tensor_write(a.g, t, v, n));
    st = clt_graph_save(a.g, path, NULL, 0);
    char want[200];
    snprintf(want, sizeof want, "not saved: tensor '%s' holds nan at index %zu", clt_tensor_name(t), n - 1);
    TU_CHECK(st == CLT_ERR_STATE && strstr(clt_errmsg(ctx), want), "NaN save: %d '%s'", st, clt_errmsg(ctx));
    unsigned char *now = slurp(path, &l2);
    TU_CHECK(now && l2 == len && memcmp(now, orig, len) == 0, "the last good checkpoint was replaced");
    free(now);
    free(v);
    free(orig);
    TU_CHECK(clt_graph_save(a.g, NULL, NULL, 0) == CLT_ERR_INVALID && strstr(clt_errmsg(ctx), "path is NULL"),
             "NULL path: %s", clt_errmsg(ctx));
    /* The same writer for an application's own files. */
    char own[520], msg[600];
    snprintf(own, sizeof own, "%s/log.txt", dir);
    TU_CHECK(clt_file_write_atomic(own, "one\n", 4, msg, sizeof msg) == 0 && msg[0] == 0, "own file: %s", msg);
    TU_CHECK(clt_file_write_atomic(own, "two!\n", 5, msg, sizeof msg) == 0, "own file replaced: %s", msg);
    unsigned char *txt = slurp(own, &l2);
    TU_CHECK(txt && l2 == 5 && !memcmp(txt, "two!\n", 5), "own file content");
    free(txt);
    TU_CHECK(clt_file_write_atomic(nodir, "x", 1, msg, sizeof msg) == CLT_ERR_IO && strstr(msg, nodir) &&
             strstr(msg, "the old file, if any, is unchanged"), "own file in a missing folder: '%s'", msg);
    TU_CHECK(clt_file_write_atomic(NULL, "x", 1, msg, sizeof msg) == CLT_ERR_INVALID &&
             !strcmp(msg, "clt_file_write_atomic: path is NULL"), "NULL path: '%s'", msg);
    TU_CHECK(count_tmp(dir) == 0, "temporaries left by clt_file_write_atomic");
    net_free(&a);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/clt_ckpt_%ld", (long)getpid());
    mkdir(root, 0755);
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    round_trip(ctx, CLT_OPT_SGD, "sgd");
    round_trip(ctx, CLT_OPT_ADAM, "adam");
    round_trip(ctx, CLT_OPT_ADAMW, "adamw");
    char path[400];
    snprintf(path, sizeof path, "%s/rt_adam.ckpt", root);
    foreign(ctx, path);
    inference(ctx);
    damaged(path);
    fifo();
    version1(ctx);
    saving(ctx);
    clt_context_destroy(ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_checkpoint");
}
