/* test_cli.c - end-to-end tests of the cltrain binary on small generated, learnable datasets.
 * usage: test_cli CLTRAIN_BINARY MODE WORKDIR, MODE one of train_cifar, train_idx, resume, errors. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "tool.h"

static const char *g_bin;
static char g_dir[4096];
/* Seconds after which run() kills the command (0: never): a command that could hang (reading a FIFO) fails
 * the check instead of the whole test waiting for meson's timeout. */
static unsigned g_alarm;

/* ------------------------------------------------------------------------------------------ data */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int clamp255(int v) { return v < 0 ? 0 : v > 255 ? 255 : v; }

/* A 3x32x32 image of class k: a per-class colour (a base-3 code over the channels) with a class-dependent
 * brighter quadrant, plus noise. An MLP separates the classes from colour alone. */
static void cifar_image(int k, uint64_t *s, uint8_t *pix)
{
    static const int level[3] = {50, 128, 206};
    int code = k * 2 + 1; /* 10 distinct codes out of 27 */
    for (int c = 0; c < 3; c++) {
        int base = level[code % 3];
        code /= 3;
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) {
                int quad = (y >= 16) * 2 + (x >= 16);
                int v = base + (quad == k % 4 ? 25 : 0) + (int)(rng_next(s) % 61) - 30;
                pix[c * 1024 + y * 32 + x] = (uint8_t)clamp255(v);
            }
    }
}

/* A 1x28x28 image of class k: a bright 8x8 block at one of 10 places on a noisy dark background. */
static void idx_image(int k, uint64_t *s, uint8_t *pix)
{
    int by = 2 + (k / 5) * 14, bx = 1 + (k % 5) * 5;
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++) {
            int in = y >= by && y < by + 8 && x >= bx && x < bx + 6;
            pix[y * 28 + x] = (uint8_t)clamp255((in ? 200 : 30) + (int)(rng_next(s) % 41) - 20);
        }
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

static void path_in(char *out, size_t len, const char *a, const char *b) { snprintf(out, len, "%.3000s/%.1000s", a, b); }

/* data_batch_1..5.bin with `per_batch` records each and test_batch.bin with `ntest`. */
static int gen_cifar(const char *dir, int per_batch, int ntest, uint64_t seed)
{
    mkdir(dir, 0755);
    uint8_t rec[3073];
    uint64_t s = seed;
    char p[4200];
    for (int b = 0; b <= 5; b++) {
        char name[64];
        if (b < 5) snprintf(name, sizeof name, "data_batch_%d.bin", b + 1);
        else snprintf(name, sizeof name, "test_batch.bin");
        path_in(p, sizeof p, dir, name);
        FILE *f = fopen(p, "wb");
        if (!f) return -1;
        int n = b < 5 ? per_batch : ntest;
        for (int i = 0; i < n; i++) {
            int k = (int)(rng_next(&s) % 10);
            rec[0] = (uint8_t)k;
            cifar_image(k, &s, rec + 1);
            fwrite(rec, 1, sizeof rec, f);
        }
        if (fclose(f)) return -1;
    }
    return 0;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* MNIST-style IDX files; the training images are gzip-compressed to exercise that path. */
static int gen_idx(const char *dir, int ntrain, int ntest, uint64_t seed)
{
    mkdir(dir, 0755);
    uint64_t s = seed;
    char p[4200];
    for (int t = 0; t < 2; t++) {
        int n = t ? ntest : ntrain;
        size_t ilen = 16 + (size_t)n * 784, llen = 8 + (size_t)n;
        uint8_t *img = calloc(ilen, 1), *lab = calloc(llen, 1);
        if (!img || !lab) return -1;
        be32(img, 0x803), be32(img + 4, (uint32_t)n), be32(img + 8, 28), be32(img + 12, 28);
        be32(lab, 0x801), be32(lab + 4, (uint32_t)n);
        for (int i = 0; i < n; i++) {
            int k = (int)(rng_next(&s) % 10);
            lab[8 + i] = (uint8_t)k;
            idx_image(k, &s, img + 16 + (size_t)i * 784);
        }
        const char *pre = t ? "t10k" : "train";
        char name[64];
        int rc = 0;
        if (!t) {
            snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", pre);
            path_in(p, sizeof p, dir, name);
            gzFile gz = gzopen(p, "wb");
            if (!gz || gzwrite(gz, img, (unsigned)ilen) != (int)ilen) rc = -1;
            if (gz && gzclose(gz) != Z_OK) rc = -1;
        } else {
            snprintf(name, sizeof name, "%s-images-idx3-ubyte", pre);
            path_in(p, sizeof p, dir, name);
            rc |= write_file(p, img, ilen);
        }
        snprintf(name, sizeof name, "%s-labels-idx1-ubyte", pre);
        path_in(p, sizeof p, dir, name);
        rc |= write_file(p, lab, llen);
        free(img);
        free(lab);
        if (rc) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ running */

typedef struct result {
    int exited, code, signaled;
    char *out, *err;
    double seconds;
} result;

static void result_free(result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

/* Runs the cltrain binary with NULL-terminated arguments; captures stdout and stderr. */
static result run(const char *first, ...)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = g_bin;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 63; a = va_arg(ap, const char *)) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char po[4200], pe[4200];
    path_in(po, sizeof po, g_dir, "stdout.txt");
    path_in(pe, sizeof pe, g_dir, "stderr.txt");
    fprintf(stderr, "$ cltrain");
    for (int i = 1; i < n; i++) fprintf(stderr, " %s", argv[i]);
    fprintf(stderr, "\n");
    result r = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) _exit(127);
        dup2(fo, 1);
        dup2(fe, 2);
        if (g_alarm) alarm(g_alarm); /* survives execv */
        execv(g_bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) {
        r.exited = 0;
        return r;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r.seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    r.exited = WIFEXITED(st);
    r.code = r.exited ? WEXITSTATUS(st) : -1;
    r.signaled = WIFSIGNALED(st);
    r.out = read_all(po, NULL);
    r.err = read_all(pe, NULL);
    if (!r.out) r.out = calloc(1, 1);
    if (!r.err) r.err = calloc(1, 1);
    fprintf(stderr, "  -> exit %d in %.1f s\n", r.code, r.seconds);
    return r;
}

static void show(const result *r)
{
    fprintf(stderr, "---- stdout\n%s---- stderr\n%s----\n", r->out, r->err);
}

/* Parses the last line "final: epochs=.. test_acc=.. test_loss=.. train_images_per_s=.. seconds=..". */
static int parse_final(const char *out, int *epochs, double *acc, double *loss)
{
    const char *last = NULL;
    for (const char *p = out; (p = strstr(p, "final: ")); p++)
        if (p == out || p[-1] == '\n') last = p;
    if (!last) return -1;
    double ips, secs;
    if (sscanf(last, "final: epochs=%d test_acc=%lf test_loss=%lf train_images_per_s=%lf seconds=%lf", epochs, acc,
               loss, &ips, &secs) != 5)
        return -1;
    const char *end = strchr(last, '\n');
    if (!end || end[1] != 0) return -1; /* must be the last line */
    return 0;
}

/* Expects a clean failure: an exit code (no signal), non-zero, a message on stderr containing `needle`. */
static void expect_fail(const result *r, const char *needle, const char *what)
{
    int ok = r->exited && r->code != 0 && strstr(r->err, "cltrain") && (!needle || strstr(r->err, needle));
    TU_CHECK(ok, "%s: expected a clean failure mentioning '%s'", what, needle ? needle : "");
    if (!ok) show(r);
    else fprintf(stderr, "  stderr: %s", r->err);
}

static void expect_ok(const result *r, const char *what)
{
    int ok = r->exited && r->code == 0;
    TU_CHECK(ok, "%s: expected success", what);
    if (!ok) show(r);
}

static int same_file(const char *path, const char *content, size_t len)
{
    size_t l2;
    char *now = read_all(path, &l2);
    int same = now && l2 == len && !memcmp(now, content, len);
    free(now);
    return same;
}

/* ------------------------------------------------------------------------------------------ modes */

static void mode_train_cifar(void)
{
    char data[4200], ck[4200], log[4200], plot[4200], ppm[4200], pgm[4200], big[4200];
    path_in(data, sizeof data, g_dir, "cifar");
    path_in(ck, sizeof ck, g_dir, "c.ckpt");
    path_in(log, sizeof log, g_dir, "log.jsonl");
    path_in(plot, sizeof plot, g_dir, "curves.svg");
    TU_CHECK(gen_cifar(data, 60, 150, 7) == 0, "generating data");
    /* 300 images, batch 32: 9 full batches and a 12-image tail each epoch. */
    result r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "2", "--batch", "32", "--optimizer",
                   "adam", "--lr", "0.001", "--tune", "off", "--checkpoint", ck, "--log", log, "--plot", plot, NULL);
    expect_ok(&r, "training");
    int ep = 0;
    double acc = 0, loss = 0;
    TU_CHECK(parse_final(r.out, &ep, &acc, &loss) == 0, "final line missing or malformed");
    TU_CHECK(ep == 2 && acc > 0.6 && isfinite(loss), "final: epochs=%d test_acc=%.4f (chance 0.1)", ep, acc);
    TU_CHECK(strstr(r.out, "confusion matrix") && strstr(r.out, "airplane") && strstr(r.out, "precision"),
             "per-class report");
    fprintf(stderr, "%s", r.out);
    result_free(&r);
    char *l = read_all(log, NULL);
    int lines = 0;
    for (char *p = l; p && *p; p++) lines += *p == '\n';
    TU_CHECK(l && lines == 2 && strstr(l, "\"epoch\":2") && strstr(l, "\"test_acc\":"), "JSON log: %s", l ? l : "none");
    free(l);
    char *svg = read_all(plot, NULL);
    TU_CHECK(svg && strstr(svg, "<svg") && strstr(svg, "</svg>") && strstr(svg, "polyline") && strstr(svg, "epoch"),
             "SVG plot");
    free(svg);

    /* eval reproduces the last epoch's test numbers from the checkpoint. */
    r = run("eval", "--checkpoint", ck, "--data", data, "--tune", "off", NULL);
    expect_ok(&r, "eval");
    int ep2 = 0;
    double acc2 = 0, loss2 = 0;
    TU_CHECK(parse_final(r.out, &ep2, &acc2, &loss2) == 0 && ep2 == 2 && fabs(acc2 - acc) < 1e-9 &&
                 fabs(loss2 - loss) < 2e-4,
             "eval gives test_acc %.4f loss %.4f, training said %.4f %.4f", acc2, loss2, acc, loss);
    result_free(&r);

    /* predict: a PPM of a class-3 image, a record file, and refusals. */
    path_in(ppm, sizeof ppm, g_dir, "cat.ppm");
    path_in(pgm, sizeof pgm, g_dir, "gray.pgm");
    path_in(big, sizeof big, g_dir, "big.ppm");
    uint64_t s = 99;
    uint8_t chw[3072], hwc[3072 + 64];
    cifar_image(3, &s, chw);
    int hl = snprintf((char *)hwc, 64, "P6\n# test\n32 32\n255\n");
    for (int i = 0; i < 1024; i++)
        for (int c = 0; c < 3; c++) hwc[hl + i * 3 + c] = chw[c * 1024 + i];
    write_file(ppm, hwc, (size_t)hl + 3072);
    char pg[64 + 1024];
    int gl = snprintf(pg, 64, "P5 32 32 255\n");
    memset(pg + gl, 100, 1024);
    write_file(pgm, pg, (size_t)gl + 1024);
    char bg[64 + 3 * 64 * 64];
    int bl = snprintf(bg, 64, "P6 64 64 255\n");
    memset(bg + bl, 100, 3 * 64 * 64);
    write_file(big, bg, (size_t)bl + 3 * 64 * 64);
    char test_batch[4200];
    path_in(test_batch, sizeof test_batch, data, "test_batch.bin");
    r = run("predict", "--checkpoint", ck, "--tune", "off", ppm, test_batch, NULL);
    expect_ok(&r, "predict");
    TU_CHECK(strstr(r.out, "cat.ppm: cat "), "the class-3 PPM is predicted as 'cat'");
    int plines = 0;
    for (char *p = r.out; *p; p++) plines += *p == '\n';
    TU_CHECK(plines == 151, "predict prints one line per image (got %d)", plines);
    if (tu_failures) show(&r);
    result_free(&r);
    r = run("predict", "--checkpoint", ck, big, NULL);
    expect_fail(&r, "64x64", "predict with a wrong-size image");
    result_free(&r);
    r = run("predict", "--checkpoint", ck, pgm, NULL);
    expect_fail(&r, "channel", "predict with a PGM on an RGB model");
    result_free(&r);
    r = run("predict", "--checkpoint", ck, log, NULL);
    expect_fail(&r, "record", "predict with a non-image");
    result_free(&r);
}

static void mode_train_idx(void)
{
    char data[4200], ck[4200], model[4200];
    path_in(data, sizeof data, g_dir, "mnist");
    path_in(ck, sizeof ck, g_dir, "m.ckpt");
    path_in(model, sizeof model, g_dir, "tiny.model");
    TU_CHECK(gen_idx(data, 400, 200, 11) == 0, "generating data");
    result r = run("mnist", "--data", data, "--model", "mlp", "--epochs", "2", "--batch", "64", "--tune", "off",
                   "--checkpoint", ck, NULL);
    expect_ok(&r, "training on IDX");
    int ep = 0;
    double acc = 0, loss = 0;
    TU_CHECK(parse_final(r.out, &ep, &acc, &loss) == 0 && ep == 2 && acc > 0.6, "final: epochs=%d test_acc=%.4f", ep,
             acc);
    TU_CHECK(strstr(r.out, "augmentation off"), "augmentation is off by default for MNIST");
    fprintf(stderr, "%s", r.out);
    result_free(&r);
    /* predict a PGM of class 7 */
    uint64_t s = 5;
    uint8_t pix[784 + 64];
    int hl = snprintf((char *)pix, 64, "P5\n28 28\n255\n");
    idx_image(7, &s, pix + hl);
    char pgm[4200];
    path_in(pgm, sizeof pgm, g_dir, "seven.pgm");
    write_file(pgm, pix, (size_t)hl + 784);
    r = run("predict", "--checkpoint", ck, "--tune", "off", "--top", "2", pgm, NULL);
    expect_ok(&r, "predict on a PGM");
    TU_CHECK(strstr(r.out, "seven.pgm: 7 "), "class-7 PGM predicted as 7");
    if (tu_failures) show(&r);
    result_free(&r);
}

/* Reads every state tensor and optimizer slot of a checkpoint through a graph built from its model. */
static float *checkpoint_state(clt_context *ctx, const char *path, size_t *count)
{
    clt_checkpoint *c = NULL;
    if (clt_checkpoint_open(path, &c) < 0) {
        TU_CHECK(0, "%s", clt_checkpoint_errmsg(c));
        clt_checkpoint_close(c);
        return NULL;
    }
    clt_model *m = NULL;
    clt_graph *g = NULL;
    clt_tensor *x, *logits;
    int shape[4] = {8, 3, 32, 32};
    float *all = NULL;
    size_t n = 0;
    clt_compile_settings cs;
    clt_checkpoint_compile_settings(c, &cs);
    if (clt_model_parse(clt_checkpoint_model_text(c), path, &m) < 0 || clt_graph_create(ctx, &g) < 0 ||
        clt_input(g, "x", 4, shape, &x) < 0 || clt_model_build(g, m, x, 10, &logits) < 0 ||
        clt_graph_compile(g, &cs) < 0 || clt_checkpoint_apply(c, g) < 0) {
        TU_CHECK(0, "rebuilding %s: %s %s", path, clt_model_errmsg(m), clt_errmsg(ctx));
        goto done;
    }
    for (int i = 0; i < clt_graph_state_count(g); i++) n += 3 * clt_tensor_numel(clt_graph_state_tensor(g, i, NULL));
    all = malloc(n * sizeof *all);
    size_t at = 0;
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        int tr;
        clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
        size_t k = clt_tensor_numel(t);
        TU_OK(ctx, clt_tensor_read(g, t, 0, all + at, k));
        at += k;
        for (int s = 0; s < 2; s++) {
            if (tr) TU_OK(ctx, clt_tensor_read_slot(g, t, s, all + at, k));
            else memset(all + at, 0, k * sizeof *all);
            at += k;
        }
    }
    *count = n;
done:
    clt_graph_destroy(g);
    clt_model_destroy(m);
    clt_checkpoint_close(c);
    return all;
}

/* A run of 2 epochs and a run of 1 + 1 resumed must end with identical weights, optimizer state and test
 * results. The schedule must not depend on the total number of epochs (the first run of the pair is told 1). */
static void resume_case(const char *tag, const char *data, const char *model, const char *optimizer, const char *lr,
                        const char *extra)
{
    char a[4200], b[4200], la[4200], lb[4200], name[64];
    snprintf(name, sizeof name, "%s_a.ckpt", tag);
    path_in(a, sizeof a, g_dir, name);
    snprintf(name, sizeof name, "%s_b.ckpt", tag);
    path_in(b, sizeof b, g_dir, name);
    snprintf(name, sizeof name, "%s_a.jsonl", tag);
    path_in(la, sizeof la, g_dir, name);
    snprintf(name, sizeof name, "%s_b.jsonl", tag);
    path_in(lb, sizeof lb, g_dir, name);
    remove(a), remove(b), remove(la), remove(lb);
    /* 200 images, batch 48: a tail of 8 (trained on the second graph) every epoch. */
    const char *common[] = {"--data", data, "--model", model, "--batch", "48", "--optimizer", optimizer, "--lr", lr,
                            extra, "--schedule", "constant", "--augment", "--seed", "5", "--tune", "off"};
#define COMMON common[0], common[1], common[2], common[3], common[4], common[5], common[6], common[7], common[8], \
               common[9], common[10], common[11], common[12], common[13], common[14], common[15], common[16], common[17]
    result r = run("cifar10", COMMON, "--epochs", "2", "--checkpoint", a, "--log", la, NULL);
    expect_ok(&r, "2 epochs in one run");
    int ea = 0;
    double acc_a = 0, loss_a = 0;
    parse_final(r.out, &ea, &acc_a, &loss_a);
    result_free(&r);
    r = run("cifar10", COMMON, "--epochs", "1", "--checkpoint", b, NULL);
    expect_ok(&r, "first epoch");
    result_free(&r);
    r = run("cifar10", "--data", data, "--epochs", "2", "--checkpoint", b, "--resume", "--tune", "off", "--log", lb,
            NULL);
    expect_ok(&r, "resumed second epoch");
    TU_CHECK(strstr(r.out, "resuming"), "says it resumes");
    int eb = 0;
    double acc_b = 0, loss_b = 0;
    TU_CHECK(parse_final(r.out, &eb, &acc_b, &loss_b) == 0 && eb == 2, "resumed run reports 2 epochs");
    TU_CHECK(acc_a == acc_b && loss_a == loss_b, "same test results: %.4f/%.4f vs %.4f/%.4f", acc_a, loss_a, acc_b,
             loss_b);
    result_free(&r);
    char *jb = read_all(lb, NULL);
    int lines = 0;
    for (char *p = jb; p && *p; p++) lines += *p == '\n';
    TU_CHECK(lines == 2, "the resumed run's log holds both epochs (history restored)");
    free(jb);

    clt_context *ctx = tu_context();
    if (!ctx) {
        TU_CHECK(0, "no context");
        return;
    }
    size_t na = 0, nb = 0;
    float *wa = checkpoint_state(ctx, a, &na), *wb = checkpoint_state(ctx, b, &nb);
    TU_CHECK(wa && wb && na == nb && na > 0, "state sizes %zu vs %zu", na, nb);
    if (wa && wb && na == nb) {
        size_t diff = 0;
        for (size_t i = 0; i < na; i++) diff += memcmp(&wa[i], &wb[i], sizeof(float)) != 0;
        TU_CHECK(diff == 0, "%s: %zu of %zu state values differ between 2 epochs and 1+1 resumed", tag, diff, na);
        fprintf(stderr, "%s: compared %zu values of weights and optimizer state: %zu differ\n", tag, na, diff);
    }
    free(wa);
    free(wb);
    clt_context_destroy(ctx);

    /* Resuming a finished run only re-evaluates. */
    r = run("cifar10", "--data", data, "--checkpoint", b, "--resume", "--tune", "off", NULL);
    expect_ok(&r, "resume of a finished run");
    TU_CHECK(strstr(r.out, "already done"), "says it is done");
    result_free(&r);
}

static void mode_resume(void)
{
    char data[4200], model[4200];
    path_in(data, sizeof data, g_dir, "cifar");
    TU_CHECK(gen_cifar(data, 40, 60, 3) == 0, "generating data");
    /* MLP with dropout (masks follow the step counter), SGD with Nesterov momentum. */
    resume_case("mlp", data, "mlp", "sgd", "0.02", "--nesterov");
    /* Convolution + batch normalization (running statistics are state too), AdamW (bias correction follows
     * the step counter), label smoothing. */
    path_in(model, sizeof model, g_dir, "tiny.model");
    const char *text = "# tiny conv net for tests\nconv 8 3 stride=2 pad=same\nbatchnorm\nrelu\nmaxpool 2\nflatten\n"
                       "dropout 0.1\ndense classes\n";
    write_file(model, text, strlen(text));
    resume_case("conv", data, model, "adamw", "0.003", "--label-smoothing=0.1");
}

static void copy_dir_file(const char *from, const char *to, const char *name, long truncate_to, int poke_at,
                          int poke_val)
{
    char a[4200], b[4200];
    path_in(a, sizeof a, from, name);
    path_in(b, sizeof b, to, name);
    size_t len;
    char *d = read_all(a, &len);
    if (!d) return;
    if (truncate_to >= 0 && (size_t)truncate_to < len) len = (size_t)truncate_to;
    if (poke_at >= 0 && (size_t)poke_at < len) d[poke_at] = (char)poke_val;
    write_file(b, d, len);
    free(d);
}

/* A copy of the generated CIFAR folder with one file altered. */
static void variant(const char *good, const char *dst, const char *file, long truncate_to, int poke_at, int poke_val)
{
    mkdir(dst, 0755);
    const char *names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                            "data_batch_5.bin", "test_batch.bin"};
    for (int i = 0; i < 6; i++) {
        int this = !strcmp(names[i], file);
        copy_dir_file(good, dst, names[i], this ? truncate_to : -1, this ? poke_at : -1, poke_val);
    }
}

/* Expects a failure before any training: `needle` in the message and no epoch line. */
static void expect_early_fail(const result *r, const char *needle, const char *what)
{
    expect_fail(r, needle, what);
    TU_CHECK(!strstr(r->out, "epoch 1/"), "%s: refused only after training started", what);
}

/* Inputs that are not regular files, output paths that cannot work, checkpoints a log would overwrite,
 * stale temporaries, environment values, and a machine without OpenCL (issue 8: 11, 15, 17, 18). */
static void errors_paths(const char *data, const char *ck)
{
    char fifo[4200], p[4200], q[4200], cur[4200];
    path_in(fifo, sizeof fifo, g_dir, "fifo");
    unlink(fifo);
    TU_CHECK(mkfifo(fifo, 0600) == 0, "mkfifo: %s", strerror(errno));
    g_alarm = 60;
    result r = run("cifar10", "--data", data, "--model", fifo, "--epochs", "1", NULL);
    expect_early_fail(&r, "model file", "--model FIFO");
    TU_CHECK(strstr(r.err, "fifo: is a FIFO, not a regular file") != NULL, "--model FIFO: message says what it is");
    result_free(&r);
    r = run("eval", "--checkpoint", fifo, "--data", data, NULL);
    expect_fail(&r, "checkpoint", "eval --checkpoint FIFO");
    TU_CHECK(strstr(r.err, "fifo: is a FIFO, not a regular file") != NULL, "eval --checkpoint FIFO: what it is");
    result_free(&r);
    r = run("predict", "--checkpoint", ck, "--tune", "off", fifo, NULL);
    expect_fail(&r, "image", "predict FIFO");
    TU_CHECK(strstr(r.err, "fifo: is a FIFO, not a regular file") != NULL, "predict FIFO: what it is");
    result_free(&r);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--checkpoint", fifo, NULL);
    expect_early_fail(&r, "--checkpoint", "--checkpoint FIFO");
    TU_CHECK(strstr(r.err, "fifo: is a FIFO, not a regular file") != NULL, "--checkpoint FIFO: what it is");
    result_free(&r);
    /* An IDX folder that is a FIFO, a symbolic link loop, or a file. */
    r = run("mnist", "--data", fifo, "--model", "mlp", NULL);
    expect_fail(&r, "fifo: not a folder (it is a FIFO)", "IDX folder as a FIFO");
    result_free(&r);
    path_in(p, sizeof p, g_dir, "loop");
    unlink(p);
    TU_CHECK(symlink("loop", p) == 0, "symlink");
    r = run("mnist", "--data", p, "--model", "mlp", NULL);
    expect_fail(&r, "loop: too many levels of symbolic links", "IDX folder as a symlink loop");
    result_free(&r);
    r = run("mnist", "--data", ck, "--model", "mlp", NULL);
    expect_fail(&r, "good.ckpt: not a folder (it is a regular file)", "IDX folder as a file");
    result_free(&r);
    g_alarm = 0;

    /* Output paths, all refused before the data is even loaded. */
    path_in(p, sizeof p, g_dir, "no/such/folder/log.jsonl");
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--log", p, NULL);
    expect_early_fail(&r, "folder", "--log into a missing folder");
    TU_CHECK(strstr(r.err, "no/such/folder does not exist") != NULL, "--log into a missing folder: names it");
    result_free(&r);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--plot", g_dir, NULL);
    expect_early_fail(&r, "is a folder; give a file name", "--plot naming a folder");
    result_free(&r);
    snprintf(p, sizeof p, "%s/", g_dir);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--log", p, NULL);
    expect_early_fail(&r, "names a folder", "--log ending in /");
    result_free(&r);
    char name[251];
    memset(name, 'c', 245);
    memcpy(name + 245, ".ckpt", 6);
    path_in(p, sizeof p, g_dir, name);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--checkpoint", p, NULL);
    expect_early_fail(&r, "the file name is 250 characters", "a 250-character --checkpoint name");
    result_free(&r);
    /* A log or plot over an existing checkpoint (not the run's own) is refused, and it stays intact. */
    size_t len;
    char *good = read_all(ck, &len);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--log", ck, NULL);
    expect_early_fail(&r, "good.ckpt: is a cltrain checkpoint; refusing to overwrite it", "--log over a checkpoint");
    result_free(&r);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--plot", ck, NULL);
    expect_early_fail(&r, "is a cltrain checkpoint; refusing to overwrite it", "--plot over a checkpoint");
    TU_CHECK(good && same_file(ck, good, len), "the checkpoint named by --log/--plot was left untouched");
    result_free(&r);
    free(good);

    /* Stale temporaries of the outputs: those of a dead pid and of our own pid from before are removed; a live
     * process's, a recent one and other names stay. */
    path_in(cur, sizeof cur, g_dir, "h.ckpt");
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    /* {output, suffix, pid, must stay, age in seconds (negative: in the future, i.e. newer than the run)} */
    const struct {
        const char *out, *sfx;
        long pid;
        int stays, age;
    } cases[5] = {
        {"h.ckpt", ".tmp.%ld", (long)dead, 0, 3600},        /* the checkpoint writer's name, dead pid */
        {"h.jsonl", ".tmp.%ld.0123456789abcdef", (long)dead, 0, 3600}, /* the atomic writer's name, dead pid */
        {"h.ckpt", ".tmp.%ld", (long)getpid(), 1, 3600},    /* a live process (this test) may be saving */
        {"h.ckpt", ".tmp.%ld.x", (long)dead, 1, 3600},      /* not a name the writers use */
        {"h.svg", ".tmp.%ld", (long)dead, 1, -3600},        /* newer than the run */
    };
    char tmps[5][4300];
    for (int i = 0; i < 5; i++) {
        char sfx[64], base[4200];
        snprintf(sfx, sizeof sfx, cases[i].sfx, cases[i].pid);
        path_in(base, sizeof base, g_dir, cases[i].out);
        snprintf(tmps[i], sizeof tmps[i], "%s%s", base, sfx);
        write_file(tmps[i], "partial", 7);
        struct timespec t[2];
        clock_gettime(CLOCK_REALTIME, &t[0]);
        t[0].tv_sec -= cases[i].age;
        t[1] = t[0];
        TU_CHECK(utimensat(AT_FDCWD, tmps[i], t, 0) == 0, "utimensat %s", tmps[i]);
    }
    path_in(p, sizeof p, g_dir, "h.jsonl");
    path_in(q, sizeof q, g_dir, "h.svg");
    remove(cur);
    remove(p);
    remove(q);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--batch", "25", "--tune", "off",
            "--checkpoint", cur, "--log", p, "--plot", q, NULL);
    expect_ok(&r, "training with stale temporaries next to its outputs");
    for (int i = 0; i < 5; i++) {
        struct stat st;
        int there = stat(tmps[i], &st) == 0;
        TU_CHECK(there == cases[i].stays, "%s: %s", tmps[i], cases[i].stays ? "must stay" : "stale, must be removed");
    }
    TU_CHECK(strstr(r.err, "a temporary file left by an interrupted save"), "the removal is reported");
    char *lg = read_all(p, NULL);
    TU_CHECK(lg && strstr(lg, "\"epoch\":1"), "the log was written");
    free(lg);
    {
        /* The unique temporary name comes from mkstemp (mode 0600); the log still gets the usual mode. */
        struct stat st;
        mode_t um = umask(0);
        umask(um);
        TU_CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == (0666 & ~um), "the log has mode %o, expected %o",
                 (unsigned)(st.st_mode & 0777), (unsigned)(0666 & ~um));
    }
    result_free(&r);
    for (int i = 0; i < 5; i++) remove(tmps[i]);

    /* A log that cannot be written during training (its name became a non-empty folder after the checks)
     * warns and the run goes on. The folder appears once epoch 1 is printed, so at least epochs 2..4 warn. */
    {
        char po[4200], pe[4200], sub[4300];
        path_in(po, sizeof po, g_dir, "bg_stdout.txt");
        path_in(pe, sizeof pe, g_dir, "bg_stderr.txt");
        path_in(p, sizeof p, g_dir, "h2.jsonl");
        snprintf(sub, sizeof sub, "%s/x", p);
        remove(sub);
        remove(p);
        remove(po); /* an old one would already say "epoch 1/4" */
        fprintf(stderr, "$ cltrain cifar10 ... --epochs 4 --log %s (the log's name becomes a folder after epoch 1)\n", p);
        pid_t pid = fork();
        if (pid == 0) {
            int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fo < 0 || fe < 0) _exit(127);
            dup2(fo, 1);
            dup2(fe, 2);
            alarm(120);
            execl(g_bin, g_bin, "cifar10", "--data", data, "--model", "mlp", "--epochs", "4", "--batch", "25", "--tune",
                  "off", "--log", p, (char *)NULL);
            _exit(127);
        }
        int made = 0;
        for (int i = 0; i < 60000 && !made; i++) {
            char *o = read_all(po, NULL);
            if (o && strstr(o, "epoch 1/4")) {
                remove(p);
                made = mkdir(p, 0755) == 0 && write_file(sub, "x", 1) == 0;
            }
            free(o);
            int st;
            if (!made && waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                break;
            }
            nanosleep(&(struct timespec){0, 2000000}, NULL);
        }
        int st = 0;
        if (pid > 0) waitpid(pid, &st, 0);
        char *o = read_all(po, NULL), *e = read_all(pe, NULL);
        int ep = 0;
        double acc, loss;
        TU_CHECK(made, "the log's name could not be turned into a folder during the run");
        TU_CHECK(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && o && parse_final(o, &ep, &acc, &loss) == 0 &&
                     ep == 4,
                 "a failing --log write ends the run (status %d): %s", st, e ? e : "");
        TU_CHECK(e && strstr(e, "warning: --log not written after epoch 4:") && strstr(e, "(training continues)"),
                 "a failing --log write warns: %s", e ? e : "");
        if (e) fprintf(stderr, "  stderr: %s", e);
        free(o);
        free(e);
        remove(sub);
        remove(p);
    }

    /* Environment variables with unknown values are refused, naming the variable, the value and the choices. */
    setenv("CLTRAIN_GEMM", "cublas", 1);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--tune", "off", NULL);
    expect_early_fail(&r, "environment variable CLTRAIN_GEMM=cublas: unknown value (expected auto, own or clblast",
                      "CLTRAIN_GEMM=cublas");
    result_free(&r);
    unsetenv("CLTRAIN_GEMM");
    setenv("CLTRAIN_CONV_ALGO", "winograd", 1);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--tune", "off", NULL);
    expect_early_fail(&r, "environment variable CLTRAIN_CONV_ALGO=winograd: unknown value (expected auto, im2col or "
                      "direct", "CLTRAIN_CONV_ALGO=winograd");
    result_free(&r);
    unsetenv("CLTRAIN_CONV_ALGO");

    /* No OpenCL platform at all: the message goes to stderr and names the fix. */
    path_in(p, sizeof p, g_dir, "no-vendors");
    mkdir(p, 0755);
    char *old = getenv("OCL_ICD_VENDORS") ? strdup(getenv("OCL_ICD_VENDORS")) : NULL;
    setenv("OCL_ICD_VENDORS", p, 1);
    r = run("devices", NULL);
    expect_fail(&r, "pocl-opencl-icd", "devices without an OpenCL platform");
    TU_CHECK(r.code == 1 && !*r.out, "devices without a platform: exit 1 and nothing on stdout (got %d, '%s')", r.code,
             r.out);
    result_free(&r);
    if (old) setenv("OCL_ICD_VENDORS", old, 1);
    else unsetenv("OCL_ICD_VENDORS");
    free(old);
    unlink(fifo);
}

static void mode_errors(void)
{
    char data[4200], bad[4200], ck[4200], p[4200];
    path_in(data, sizeof data, g_dir, "cifar");
    path_in(ck, sizeof ck, g_dir, "good.ckpt");
    TU_CHECK(gen_cifar(data, 20, 30, 1) == 0, "generating data");
    result r;

    /* usage errors: exit status 2, no device needed */
    r = run("cifar10", "--epochs", "abc", NULL);
    TU_CHECK(r.exited && r.code == 2 && strstr(r.err, "--epochs"), "bad number");
    result_free(&r);
    r = run("cifar10", "--frobnicate", NULL);
    TU_CHECK(r.exited && r.code == 2 && strstr(r.err, "unknown option"), "unknown option");
    result_free(&r);
    r = run("cifar10", "--optimizer", "rmsprop", NULL);
    TU_CHECK(r.exited && r.code == 2 && strstr(r.err, "sgd"), "unknown optimizer lists the choices");
    result_free(&r);
    r = run("frobnicate", NULL);
    TU_CHECK(r.exited && r.code == 2 && strstr(r.err, "unknown command"), "unknown command");
    result_free(&r);
    r = run("eval", NULL);
    TU_CHECK(r.exited && r.code == 2 && strstr(r.err, "--checkpoint"), "eval without checkpoint");
    result_free(&r);
    r = run("--help", NULL);
    TU_CHECK(r.exited && r.code == 0 && strstr(r.out, "predict") && strstr(r.out, "devices"), "--help");
    result_free(&r);
    r = run("cifar10", "--help", NULL);
    TU_CHECK(r.exited && r.code == 0 && strstr(r.out, "--label-smoothing") && strstr(r.out, "--resume"),
             "cifar10 --help documents the options");
    result_free(&r);
    r = run("--version", NULL);
    TU_CHECK(r.exited && r.code == 0 && strstr(r.out, "cltrain 0."), "--version");
    result_free(&r);

    /* data errors */
    r = run("cifar10", "--data", "/nonexistent/cifar", "--model", "mlp", NULL);
    expect_fail(&r, "missing", "missing data folder");
    result_free(&r);
    path_in(bad, sizeof bad, g_dir, "truncated");
    variant(data, bad, "data_batch_3.bin", 20 * 3073 - 100, -1, 0);
    r = run("cifar10", "--data", bad, "--model", "mlp", NULL);
    expect_fail(&r, "data_batch_3.bin", "truncated batch");
    result_free(&r);
    path_in(bad, sizeof bad, g_dir, "badlabel");
    variant(data, bad, "test_batch.bin", -1, 5 * 3073, 12);
    r = run("cifar10", "--data", bad, "--model", "mlp", NULL);
    expect_fail(&r, "label", "label 12");
    result_free(&r);
    path_in(bad, sizeof bad, g_dir, "idx_bad");
    gen_idx(bad, 50, 20, 2);
    path_in(p, sizeof p, bad, "t10k-labels-idx1-ubyte");
    {
        size_t len;
        char *d = read_all(p, &len);
        d[2] = 9; /* wrong magic */
        write_file(p, d, len);
        free(d);
    }
    r = run("mnist", "--data", bad, "--model", "mlp", NULL);
    expect_fail(&r, "t10k-labels", "IDX with a wrong magic number");
    result_free(&r);
    path_in(p, sizeof p, bad, "t10k-labels-idx1-ubyte");
    {
        uint8_t lab[8 + 19];
        be32(lab, 0x801), be32(lab + 4, 19);
        memset(lab + 8, 1, 19);
        write_file(p, lab, sizeof lab);
    }
    r = run("mnist", "--data", bad, "--model", "mlp", NULL);
    expect_fail(&r, NULL, "IDX label count differs from image count");
    result_free(&r);

    /* model errors */
    path_in(p, sizeof p, g_dir, "bad.model");
    write_file(p, "frobnicate 3\n", 13);
    r = run("cifar10", "--data", data, "--model", p, "--epochs", "1", NULL);
    expect_fail(&r, "bad.model", "unknown model keyword");
    result_free(&r);
    r = run("cifar10", "--data", data, "--model", "no-such-preset", NULL);
    expect_fail(&r, "no-such-preset", "unknown preset");
    result_free(&r);

    /* checkpoint errors */
    path_in(p, sizeof p, g_dir, "notes.txt");
    write_file(p, "my precious notes\n", 18);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--checkpoint", p, "--tune", "off", NULL);
    expect_fail(&r, "notes.txt", "a non-checkpoint file as --checkpoint");
    TU_CHECK(same_file(p, "my precious notes\n", 18), "the file was left untouched");
    result_free(&r);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--checkpoint", p, "--overwrite", NULL);
    expect_fail(&r, "notes.txt", "--overwrite of a non-checkpoint file");
    TU_CHECK(same_file(p, "my precious notes\n", 18), "the file was left untouched by --overwrite");
    result_free(&r);

    /* A run that diverges stops at the step, naming it, and keeps the last good checkpoint (SGD with lr 100 on
     * this data: epoch 1 ends with a huge but finite loss, epoch 2 reaches NaN). */
    char div[4200];
    path_in(div, sizeof div, g_dir, "diverged.ckpt");
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "3", "--batch", "25", "--optimizer", "sgd", "--lr",
            "100", "--schedule", "constant", "--tune", "off", "--checkpoint", div, NULL);
    expect_fail(&r, "training diverged", "a diverging run");
    TU_CHECK(strstr(r.err, "the loss became nan at step ") && strstr(r.err, "of epoch 2") &&
             strstr(r.err, "diverged.ckpt holds the last good state, after epoch 1"), "divergence message: %s", r.err);
    result_free(&r);
    {
        clt_checkpoint *dc = NULL;
        tool_ckpt_meta *dm_meta = calloc(1, sizeof *dm_meta);
        tool_data_meta dd;
        char derr[TOOL_ERR_LEN] = "";
        int st = clt_checkpoint_open(div, &dc);
        if (!st) st = tool_meta_decode(dc, div, dm_meta, &dd, derr);
        TU_CHECK(st == 0 && dm_meta->epochs_done == 1, "the diverged run's checkpoint: %d %s %s (epochs %d)", st,
                 clt_checkpoint_errmsg(dc), derr, dm_meta->epochs_done);
        clt_checkpoint_close(dc);
        free(dm_meta);
    }

    /* A log or plot written over the checkpoint (or each other) would lose it every epoch. */
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--checkpoint", p, "--log", p, NULL);
    expect_fail(&r, "same file", "--log naming the --checkpoint file");
    TU_CHECK(same_file(p, "my precious notes\n", 18), "the file was left untouched by --log = --checkpoint");
    result_free(&r);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--log", p, "--plot", p, NULL);
    expect_fail(&r, "same file", "--plot naming the --log file");
    TU_CHECK(same_file(p, "my precious notes\n", 18), "the file was left untouched by --log = --plot");
    result_free(&r);

    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--batch", "25", "--checkpoint", ck, "--tune",
            "off", NULL);
    expect_ok(&r, "a checkpoint to corrupt");
    result_free(&r);
    size_t len;
    char *good = read_all(ck, &len);
    TU_CHECK(good && len > 100, "checkpoint written");
    if (!good) return;
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--checkpoint", ck, NULL);
    expect_fail(&r, "--resume", "existing checkpoint without --resume");
    TU_CHECK(same_file(ck, good, len), "the checkpoint was left untouched");
    result_free(&r);
    /* A log or plot never replaces a checkpoint, even one that is not this run's --checkpoint. */
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--log", ck, NULL);
    expect_fail(&r, "is a cltrain checkpoint; refusing to overwrite it", "--log naming another checkpoint");
    TU_CHECK(same_file(ck, good, len), "the checkpoint named by --log was left untouched");
    result_free(&r);
    r = run("cifar10", "--data", data, "--model", "mlp", "--epochs", "1", "--plot", ck, NULL);
    expect_fail(&r, "--plot", "--plot naming a checkpoint");
    TU_CHECK(same_file(ck, good, len), "the checkpoint named by --plot was left untouched");
    result_free(&r);

    char corrupt[4200];
    path_in(corrupt, sizeof corrupt, g_dir, "corrupt.ckpt");
    char *d = malloc(len);
    memcpy(d, good, len);
    d[len / 2] ^= 0x40;
    write_file(corrupt, d, len);
    r = run("eval", "--checkpoint", corrupt, "--data", data, NULL);
    expect_fail(&r, "corrupt.ckpt", "eval of a corrupted checkpoint");
    result_free(&r);
    r = run("cifar10", "--data", data, "--epochs", "2", "--checkpoint", corrupt, "--resume", NULL);
    expect_fail(&r, "corrupt.ckpt", "resume from a corrupted checkpoint");
    TU_CHECK(same_file(corrupt, d, len), "the corrupted checkpoint was not overwritten");
    result_free(&r);
    write_file(corrupt, good, len / 3);
    r = run("cifar10", "--data", data, "--epochs", "2", "--checkpoint", corrupt, "--resume", NULL);
    expect_fail(&r, "corrupt.ckpt", "resume from a truncated checkpoint");
    TU_CHECK(same_file(corrupt, good, len / 3), "the truncated checkpoint was not overwritten");
    result_free(&r);
    r = run("predict", "--checkpoint", corrupt, corrupt, NULL);
    expect_fail(&r, "corrupt.ckpt", "predict with a truncated checkpoint");
    result_free(&r);
    r = run("mnist", "--data", data, "--checkpoint", ck, "--resume", NULL);
    expect_fail(&r, "cifar10", "resuming a CIFAR-10 checkpoint as MNIST");
    result_free(&r);
    /* Settings no run can store, with a valid checksum: batch 0 (the epoch loop divides by it) and schedule 7
     * (a name-table index). Offsets follow the tool's metadata layout (tools/tool.h), found in the file. */
    size_t o_batch = 0;
    clt_checkpoint *ckp = NULL;
    if (clt_checkpoint_open(ck, &ckp) == 0) {
        size_t ml;
        const char *blob = clt_checkpoint_app_meta(ckp, &ml);
        for (size_t i = 0; i + ml <= len && ml > 0 && !o_batch; i++)
            if (!memcmp(good + i, blob, ml)) o_batch = i + TOOL_META_OFFSET_BATCH(strlen("cifar10"), strlen("mlp"));
    }
    clt_checkpoint_close(ckp);
    TU_CHECK(o_batch > 0, "the tool's metadata found in the checkpoint");
    for (int v = 0; v < 2; v++) {
        memcpy(d, good, len);
        TU_CHECK(d[o_batch] == 25 && d[o_batch + 4] == 3, "batch/schedule offsets: %d %d", d[o_batch], d[o_batch + 4]);
        memset(d + o_batch + 4 * v, 0, 4);
        if (v) d[o_batch + 4] = 7;
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const unsigned char *)d, (uInt)(len - 4));
        for (int b = 0; b < 4; b++) d[len - 4 + b] = (char)(crc >> (8 * b));
        write_file(corrupt, d, len);
        r = run("cifar10", "--data", data, "--epochs", "2", "--checkpoint", corrupt, "--resume", "--tune", "off", NULL);
        expect_fail(&r, "invalid training settings", v ? "resume with schedule 7" : "resume with batch 0");
        TU_CHECK(same_file(corrupt, d, len), "the invalid checkpoint was not overwritten");
        result_free(&r);
    }
    /* An input size whose c*h*w overflows an int (3x65536x65536), with a valid checksum: in format 2 the input
     * shape (i32 c, h, w) follows the network text (u32 length + bytes) after the 20-byte header. */
    {
        memcpy(d, good, len);
        uint32_t tl = 0;
        memcpy(&tl, d + 20, 4);
        size_t at = 24 + (size_t)tl;
        int32_t in[3];
        TU_CHECK(at + 12 <= len, "the input shape lies inside the file");
        if (at + 12 <= len) memcpy(in, d + at, 12);
        TU_CHECK(at + 12 <= len && in[0] == 3 && in[1] == 32 && in[2] == 32, "the input shape (3,32,32) was found");
        if (at + 12 <= len && in[0] == 3 && in[1] == 32 && in[2] == 32) {
            in[1] = in[2] = 65536;
            memcpy(d + at, in, 12);
            uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const unsigned char *)d, (uInt)(len - 4));
            for (int b = 0; b < 4; b++) d[len - 4 + b] = (char)(crc >> (8 * b));
            write_file(corrupt, d, len);
            r = run("predict", "--checkpoint", corrupt, ck, NULL);
            expect_fail(&r, "malformed checkpoint (input 3x65536x65536", "a checkpoint whose input size overflows");
            result_free(&r);
        }
    }
    free(d);
    free(good);
    errors_paths(data, ck);
}

/* Parses the train_loss and test_loss of "epoch E/N ..." lines into loss[2*(E-1)], loss[2*(E-1)+1]; the count. */
static int parse_epoch_losses(const char *out, double *loss, int max)
{
    int n = 0;
    for (const char *p = out; (p = strstr(p, "epoch ")) && n < max; p++) {
        if (p != out && p[-1] != '\n') continue;
        int e, t;
        double tl, ta, sl;
        if (sscanf(p, "epoch %d/%d train_loss=%lf train_acc=%lf test_loss=%lf", &e, &t, &tl, &ta, &sl) == 5 &&
            e == n + 1)
            loss[2 * n] = tl, loss[2 * n + 1] = sl, n++;
    }
    return n;
}

/* --accumulate K trains a model without batch norm or dropout as one batch does (up to float summation order);
 * --clip-grad-norm; the options' errors. */
static void mode_accumulate(void)
{
    char data[4200];
    path_in(data, sizeof data, g_dir, "cifar");
    TU_CHECK(gen_cifar(data, 60, 150, 7) == 0, "generating data");
    /* 300 images, batch 30: 10 steps an epoch, none partial, with or without micro-batches. */
    double ref[4], got[4];
    result r = run("cifar10", "--data", data, "--model", "seed-cnn", "--epochs", "2", "--batch", "30", "--optimizer",
                   "adam", "--tune", "off", NULL);
    expect_ok(&r, "training without accumulation");
    TU_CHECK(parse_epoch_losses(r.out, ref, 2) == 2, "epoch lines missing");
    result_free(&r);
    const char *ks[] = {"2", "3"};
    for (int i = 0; i < 2; i++) {
        r = run("cifar10", "--data", data, "--model", "seed-cnn", "--epochs", "2", "--batch", "30", "--optimizer",
                "adam", "--tune", "off", "--accumulate", ks[i], NULL);
        expect_ok(&r, "training with --accumulate");
        char want[64];
        snprintf(want, sizeof want, "(%s micro-batches of %d)", ks[i], 30 / atoi(ks[i]));
        TU_CHECK(strstr(r.out, want) != NULL, "--accumulate %s: the training line lacks '%s'", ks[i], want);
        TU_CHECK(parse_epoch_losses(r.out, got, 2) == 2, "--accumulate %s: epoch lines missing", ks[i]);
        /* Printed with 4 decimals; summation order moves them by far less than the 5e-4 allowed. */
        for (int j = 0; j < 4; j++)
            TU_CHECK(fabs(got[j] - ref[j]) <= 5e-4, "--accumulate %s: %s loss of epoch %d is %.4f, one batch gives "
                     "%.4f", ks[i], j % 2 ? "test" : "train", j / 2 + 1, got[j], ref[j]);
        result_free(&r);
    }
    /* Images left over at the end of an epoch: 300 = 4 steps of 64 + 44 = 2 micro-batches of 16 + 12 skipped. */
    r = run("cifar10", "--data", data, "--model", "seed-cnn", "--epochs", "1", "--batch", "64", "--tune", "off",
            "--accumulate", "4", "--clip-grad-norm", "0.5", NULL);
    expect_ok(&r, "--accumulate 4 with a remainder, --clip-grad-norm");
    TU_CHECK(strstr(r.out, "note: 12 images do not fill a micro-batch"), "the skipped remainder is not reported");
    TU_CHECK(strstr(r.out, "gradients clipped to global norm 0.5"), "clipping is not reported");
    int ep = 0;
    double acc = 0, loss = 0;
    TU_CHECK(parse_final(r.out, &ep, &acc, &loss) == 0 && ep == 1 && isfinite(loss), "final line");
    result_free(&r);
    r = run("cifar10", "--data", data, "--model", "seed-cnn", "--epochs", "1", "--batch", "30", "--tune", "off",
            "--accumulate", "7", NULL);
    expect_fail(&r, "--accumulate 7: the batch (30) must be a multiple of it", "--accumulate not dividing the batch");
    result_free(&r);
    r = run("cifar10", "--data", data, "--model", "seed-cnn", "--epochs", "1", "--batch", "30", "--tune", "off",
            "--accumulate", "30", NULL);
    expect_fail(&r, "micro-batches of 1 image(s) (batch 30); batch statistics need two", "micro-batches of 1");
    result_free(&r);
    r = run("cifar10", "--data", data, "--accumulate", "0", NULL);
    expect_fail(&r, "--accumulate", "--accumulate 0");
    result_free(&r);
    r = run("cifar10", "--data", data, "--clip-grad-norm", "-1", NULL);
    expect_fail(&r, "--clip-grad-norm", "--clip-grad-norm -1");
    result_free(&r);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_cli CLTRAIN_BINARY MODE WORKDIR\n");
        return 2;
    }
    g_bin = argv[1];
    snprintf(g_dir, sizeof g_dir, "%s/cli_%s", argv[3], argv[2]);
    mkdir(g_dir, 0755);
    /* Stale outputs from an earlier run would change the outcome (existing checkpoints are refused). */
    const char *stale[] = {"c.ckpt", "m.ckpt", "good.ckpt", "corrupt.ckpt", "diverged.ckpt", "log.jsonl", "curves.svg",
                           "h.ckpt", "h.jsonl", "h.svg"};
    for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) {
        char p[4200];
        path_in(p, sizeof p, g_dir, stale[i]);
        remove(p);
    }
    if (!strcmp(argv[2], "train_cifar")) mode_train_cifar();
    else if (!strcmp(argv[2], "train_idx")) mode_train_idx();
    else if (!strcmp(argv[2], "resume")) mode_resume();
    else if (!strcmp(argv[2], "errors")) mode_errors();
    else if (!strcmp(argv[2], "accumulate")) mode_accumulate();
    else {
        fprintf(stderr, "unknown mode %s\n", argv[2]);
        return 2;
    }
    return tu_finish(argv[2]);
}
