/* test_tool_checkpoint.c - checkpoint round trip (weights, optimizer slots, counters, metadata), refusal of
 * corrupt/truncated/foreign files, and saves that fail without touching the old file. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "tool.h"

static char root[256];

typedef struct net {
    clt_graph *g;
    clt_tensor *x, *y;
} net;

/* x (4,5) -> fc1 (6) -> tanh -> fc2 (hidden2) ; Adam so that both optimizer slots hold data. */
static int make_net(clt_context *ctx, net *n, int hidden2, uint64_t seed)
{
    int xs[2] = {4, 5};
    clt_tensor *h, *a;
    memset(n, 0, sizeof *n);
    if (!TU_OK(ctx, clt_graph_create(ctx, &n->g))) return 0;
    int ok = TU_OK(ctx, clt_input(n->g, "x", 2, xs, &n->x)) &&
             TU_OK(ctx, clt_dense(n->g, n->x, 6, 1, CLT_INIT_DEFAULT, "fc1", &h)) &&
             TU_OK(ctx, clt_tanh(n->g, h, &a)) &&
             TU_OK(ctx, clt_dense(n->g, a, hidden2, 1, CLT_INIT_DEFAULT, "fc2", &n->y)) &&
             TU_OK(ctx, clt_graph_keep(n->g, n->y, 0));
    if (!ok) return 0;
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    cs.seed = seed;
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_ADAM);
    return TU_OK(ctx, clt_graph_compile(n->g, &cs));
}

/* One training step with fixed data (the same on every call with the same k). */
static int train_step(clt_context *ctx, net *n, int k)
{
    float x[20], gy[12];
    tu_rng r = {(uint64_t)k + 100};
    tu_fill_uniform(&r, x, 20, -1, 1);
    size_t ny = clt_tensor_numel(n->y); /* 4 x hidden2 <= 12 */
    tu_fill_uniform(&r, gy, ny, -1, 1);
    return TU_OK(ctx, clt_tensor_write(n->g, n->x, x, 20)) && TU_OK(ctx, clt_graph_forward(n->g, 1)) &&
           TU_OK(ctx, clt_graph_backward_from(n->g, n->y, gy, ny)) && TU_OK(ctx, clt_graph_step(n->g, 0.01f));
}

/* Values (and slots) of every state tensor, concatenated. */
static float *dump(clt_context *ctx, net *n, size_t *len)
{
    size_t total = 0;
    for (int i = 0; i < clt_graph_state_count(n->g); i++) total += 3 * clt_tensor_numel(clt_graph_state_tensor(n->g, i, NULL));
    float *v = calloc(total, sizeof *v);
    size_t at = 0;
    for (int i = 0; i < clt_graph_state_count(n->g); i++) {
        int tr;
        clt_tensor *t = clt_graph_state_tensor(n->g, i, &tr);
        size_t k = clt_tensor_numel(t);
        TU_OK(ctx, clt_tensor_read(n->g, t, 0, v + at, k));
        TU_OK(ctx, clt_tensor_read_slot(n->g, t, 0, v + at + k, k));
        TU_OK(ctx, clt_tensor_read_slot(n->g, t, 1, v + at + 2 * k, k));
        at += 3 * k;
    }
    *len = total;
    return v;
}

static unsigned char *slurp(const char *path, size_t *len)
{
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
    if (!f || fwrite(d, 1, len, f) != len) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static void expect_read_err(const char *path, int status, const char *needle, const char *what)
{
    tool_checkpoint c;
    char err[TOOL_ERR_LEN] = "";
    int st = tool_checkpoint_read(path, &c, err);
    TU_CHECK(st == status, "%s: status %d, expected %d (%s)", what, st, status, err);
    TU_CHECK(strstr(err, path) != NULL, "%s: message '%s' does not name the file", what, err);
    TU_CHECK(strstr(err, needle) != NULL, "%s: message '%s' does not contain '%s'", what, err, needle);
    TU_CHECK(c.priv == NULL && c.model_text == NULL, "%s: failed read leaves an empty checkpoint", what);
    if (st == CLT_OK) tool_checkpoint_free(&c);
}

static int no_temp_left(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q '\\.tmp\\.'", root);
    return system(cmd) != 0;
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/clt_tool_ckpt_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    char err[TOOL_ERR_LEN], path[400];
    snprintf(path, sizeof path, "%s/run.ckpt", root);

    net a;
    if (!make_net(ctx, &a, 2, 11)) return tu_finish("test_tool_checkpoint");
    for (int k = 0; k < 3; k++) train_step(ctx, &a, k);

    static tool_ckpt_meta meta; /* large (history) */
    snprintf(meta.dataset, sizeof meta.dataset, "cifar10");
    snprintf(meta.model_text_origin, sizeof meta.model_text_origin, "preset cnn");
    meta.epochs_done = 3;
    meta.epochs_total = 20;
    meta.rng_state = 0x123456789abcdef0ull;
    clt_optimizer_default_settings(&meta.opt, CLT_OPT_ADAM);
    meta.opt.weight_decay = 0.25f;
    meta.batch = 64;
    meta.schedule = 2;
    meta.lr = 0.05f;
    meta.momentum = 0.9f;
    meta.augment = 1;
    meta.limit = 500;
    meta.seed = 42;
    meta.nhistory = 3;
    for (int i = 0; i < 3; i++)
        meta.history[i] = (tool_epoch_metrics){1.5 - i, 0.3 + 0.1 * i, 1.6 - i, 0.25 + 0.1 * i, 10.5 + i, 1234.5};
    const char *text = "# cltrain model 'tiny'\ndense 6 bias=1\ntanh\ndense classes bias=1\n";

    int st = tool_checkpoint_save(path, a.g, &meta, text, err);
    TU_CHECK(st == CLT_OK, "save: %s", err);
    TU_CHECK(no_temp_left(), "a temporary file was left behind");

    /* Round trip. */
    tool_checkpoint c;
    st = tool_checkpoint_read(path, &c, err);
    TU_CHECK(st == CLT_OK, "read: %s", err);
    if (st == CLT_OK) {
        TU_CHECK(strcmp(c.model_text, text) == 0, "model text differs");
        tool_ckpt_meta *m = &c.meta;
        TU_CHECK(strcmp(m->dataset, "cifar10") == 0 && strcmp(m->model_text_origin, "preset cnn") == 0 &&
                 m->epochs_done == 3 && m->epochs_total == 20 && m->rng_state == meta.rng_state &&
                 m->opt.type == CLT_OPT_ADAM && m->opt.weight_decay == 0.25f && m->opt.beta2 == meta.opt.beta2 &&
                 m->batch == 64 && m->schedule == 2 && m->lr == 0.05f && m->momentum == 0.9f && m->augment == 1 &&
                 m->limit == 500 && m->seed == 42 && m->nhistory == 3, "metadata differs");
        TU_CHECK(memcmp(m->history, meta.history, 3 * sizeof meta.history[0]) == 0, "history differs");
        TU_CHECK(m->steps == 3 && m->passes == 3, "counters %llu/%llu, expected 3/3", (unsigned long long)m->steps,
                 (unsigned long long)m->passes);

        net b;
        if (make_net(ctx, &b, 2, 999)) {
            size_t la, lb;
            float *va = dump(ctx, &a, &la), *vb = dump(ctx, &b, &lb);
            TU_CHECK(la == lb && memcmp(va, vb, la * sizeof *va) != 0, "fresh graph should differ before applying");
            free(vb);
            st = tool_checkpoint_apply(&c, b.g, err);
            TU_CHECK(st == CLT_OK, "apply: %s", err);
            vb = dump(ctx, &b, &lb);
            TU_CHECK(la == lb && memcmp(va, vb, la * sizeof *va) == 0, "weights or slots differ after apply");
            uint64_t s1, p1;
            clt_graph_get_counters(b.g, &s1, &p1);
            TU_CHECK(s1 == 3 && p1 == 3, "counters not restored: %llu/%llu", (unsigned long long)s1,
                     (unsigned long long)p1);
            /* Training goes on identically (Adam's bias correction depends on the restored step count). */
            train_step(ctx, &a, 7);
            train_step(ctx, &b, 7);
            free(va);
            free(vb);
            va = dump(ctx, &a, &la);
            vb = dump(ctx, &b, &lb);
            TU_CHECK(la == lb && memcmp(va, vb, la * sizeof *va) == 0, "training after resume diverges");
            free(va);
            free(vb);
            clt_graph_destroy(b.g);
        }
        /* Another model: a shape mismatch and a missing tensor are refused by name. */
        net d;
        if (make_net(ctx, &d, 3, 1)) {
            st = tool_checkpoint_apply(&c, d.g, err);
            TU_CHECK(st == CLT_ERR_SHAPE && strstr(err, "fc2.weight") && strstr(err, "(2,6)") && strstr(err, "(3,6)"),
                     "shape mismatch: %d %s", st, err);
            clt_graph_destroy(d.g);
        }
        clt_graph *e = NULL;
        clt_tensor *ex, *ey;
        int xs[2] = {4, 5};
        TU_OK(ctx, clt_graph_create(ctx, &e));
        TU_OK(ctx, clt_input(e, "x", 2, xs, &ex));
        TU_OK(ctx, clt_dense(e, ex, 6, 1, CLT_INIT_DEFAULT, "fc1", &ey));
        TU_OK(ctx, clt_dense(e, ey, 2, 1, CLT_INIT_DEFAULT, "other", &ey));
        if (TU_OK(ctx, clt_graph_compile(e, NULL))) {
            st = tool_checkpoint_apply(&c, e, err);
            TU_CHECK(st == CLT_ERR_FORMAT && strstr(err, "other.weight"), "missing tensor: %d %s", st, err);
        }
        clt_graph_destroy(e);
        tool_checkpoint_free(&c);
    }

    /* Damaged files. */
    size_t len;
    unsigned char *orig = slurp(path, &len);
    char bad[420];
    snprintf(bad, sizeof bad, "%s/bad.ckpt", root);
    TU_CHECK(orig && len > 200, "checkpoint size %zu", len);
    if (orig && len > 200) {
        unsigned char *d = malloc(len);
        memcpy(d, orig, len);
        d[len / 2] ^= 0x10;
        spit(bad, d, len);
        expect_read_err(bad, CLT_ERR_FORMAT, "checksum", "flipped byte");
        memcpy(d, orig, len);
        d[len - 1] ^= 1;
        spit(bad, d, len);
        expect_read_err(bad, CLT_ERR_FORMAT, "checksum", "flipped CRC byte");
        spit(bad, orig, len - 10);
        expect_read_err(bad, CLT_ERR_FORMAT, "truncated", "truncated");
        spit(bad, orig, 30);
        expect_read_err(bad, CLT_ERR_FORMAT, "truncated", "truncated to 30 bytes");
        spit(bad, orig, 0);
        expect_read_err(bad, CLT_ERR_FORMAT, "not a cltrain checkpoint", "empty");
        memcpy(d, orig, len);
        d[0] = 'X';
        spit(bad, d, len);
        expect_read_err(bad, CLT_ERR_FORMAT, "not a cltrain checkpoint", "bad magic");
        /* A future version, with a valid checksum: refused for its version. */
        memcpy(d, orig, len);
        d[8] = 2;
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), d, (uInt)(len - 4));
        for (int i = 0; i < 4; i++) d[len - 4 + i] = (unsigned char)(crc >> (8 * i));
        spit(bad, d, len);
        expect_read_err(bad, CLT_ERR_FORMAT, "version 2", "future version");
        /* Impossible values with a valid checksum (anyone can compute one): refused, nothing huge allocated.
         * Offsets follow the layout at the top of tools/checkpoint.c. */
        size_t o_done = 20 + 4 + strlen(meta.dataset) + 4 + strlen(meta.model_text_origin);
        size_t o_count = o_done + 8 + 24 + 36 + 8 + 8 + 8 + 8 + 4 + (size_t)meta.nhistory * 48 + 4 + strlen(text);
        struct {
            size_t off;
            uint32_t v;
            const char *what;
        } patches[] = {{o_done, (uint32_t)-1, "epochs_done -1"},
                       {o_done, 2, "3 history entries for 2 epochs done"},
                       {o_done + 4, 5000, "epochs_total 5000"},
                       {o_count, 0xffffffffu, "2^32-1 tensors"}};
        for (int i = 0; i < 4; i++) {
            memcpy(d, orig, len);
            for (int b = 0; b < 4; b++) d[patches[i].off + b] = (unsigned char)(patches[i].v >> (8 * b));
            crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), d, (uInt)(len - 4));
            for (int b = 0; b < 4; b++) d[len - 4 + b] = (unsigned char)(crc >> (8 * b));
            spit(bad, d, len);
            expect_read_err(bad, CLT_ERR_FORMAT, "malformed", patches[i].what);
        }
        /* The unpatched offsets hold what was written (so the patches above hit the intended fields). */
        TU_CHECK(orig[o_done] == 3 && orig[o_done + 4] == 20 && orig[o_count] == clt_graph_state_count(a.g) &&
                     orig[o_count + 1] == 0,
                 "field offsets: %u %u %u", orig[o_done], orig[o_done + 4], orig[o_count]);
        free(d);
    }
    char missing[420];
    snprintf(missing, sizeof missing, "%s/nope.ckpt", root);
    expect_read_err(missing, CLT_ERR_IO, "cannot open", "missing");

    /* Failed saves keep the old file. */
    train_step(ctx, &a, 9); /* the next save would differ */
    char tmpdir[420];
    snprintf(tmpdir, sizeof tmpdir, "%s.tmp.%ld", path, (long)getpid());
    mkdir(tmpdir, 0755); /* the temporary file cannot be created */
    st = tool_checkpoint_save(path, a.g, &meta, text, err);
    TU_CHECK(st == CLT_ERR_IO && strstr(err, path) && strstr(err, "unchanged"), "blocked temp: %d %s", st, err);
    rmdir(tmpdir);
    /* A user's file that happens to have the temporary name is neither truncated nor renamed over the
     * checkpoint. */
    spit(tmpdir, (const unsigned char *)"mine", 4);
    st = tool_checkpoint_save(path, a.g, &meta, text, err);
    TU_CHECK(st == CLT_ERR_IO && strstr(err, "unchanged"), "temp name taken: %d %s", st, err);
    size_t lmine;
    unsigned char *mine = slurp(tmpdir, &lmine);
    TU_CHECK(mine && lmine == 4 && memcmp(mine, "mine", 4) == 0, "a file with the temporary name was changed");
    free(mine);
    unlink(tmpdir);
    size_t len2;
    unsigned char *now = slurp(path, &len2);
    TU_CHECK(now && len2 == len && memcmp(now, orig, len) == 0, "old checkpoint changed by a failed save");
    free(now);

    /* Out of space midway: a file-size limit makes the write fail after some bytes. */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old_lim, lim;
    getrlimit(RLIMIT_FSIZE, &old_lim);
    lim = old_lim;
    lim.rlim_cur = 100;
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        st = tool_checkpoint_save(path, a.g, &meta, text, err);
        setrlimit(RLIMIT_FSIZE, &old_lim);
        TU_CHECK(st == CLT_ERR_IO && strstr(err, "unchanged"), "write failure: %d %s", st, err);
        now = slurp(path, &len2);
        TU_CHECK(now && len2 == len && memcmp(now, orig, len) == 0, "old checkpoint changed by a failed write");
        free(now);
        TU_CHECK(no_temp_left(), "temporary file left after a failed write");
    } else {
        TU_CHECK(0, "setrlimit failed");
    }
    /* A folder that does not exist. */
    char nodir[420];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.ckpt", root);
    st = tool_checkpoint_save(nodir, a.g, &meta, text, err);
    TU_CHECK(st == CLT_ERR_IO && strstr(err, nodir), "missing folder: %d %s", st, err);
    /* And a successful overwrite replaces it. */
    st = tool_checkpoint_save(path, a.g, &meta, text, err);
    TU_CHECK(st == CLT_OK, "overwrite: %s", err);
    now = slurp(path, &len2);
    TU_CHECK(now && len2 == len && memcmp(now, orig, len) != 0, "overwrite did not replace the file");
    free(now);
    free(orig);

    clt_graph_destroy(a.g);
    clt_context_destroy(ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_tool_checkpoint");
}
