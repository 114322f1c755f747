/* test_model.c - the model description format (clt_model_*): presets, canonical text, shape checks and
 * line-numbered errors. Host-only: needs no OpenCL device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cltrain.h"
#include "testutil.h"

/* Parses `text`; expects failure whose message starts with "t.model:LINE:" and contains `needle`. */
static void expect_parse_err(const char *text, int line, const char *needle)
{
    clt_model *m = NULL;
    int st = clt_model_parse(text, "t.model", &m);
    const char *err = clt_model_errmsg(m);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t.model:%d: ", line);
    TU_CHECK(st != CLT_OK, "accepted: %s", text);
    TU_CHECK(m != NULL, "a failed parse still returns a model for its message");
    if (st != CLT_OK) {
        TU_CHECK(strncmp(err, prefix, strlen(prefix)) == 0, "message '%s' should start with '%s'", err, prefix);
        TU_CHECK(strstr(err, needle) != NULL, "message '%s' should contain '%s'", err, needle);
        TU_CHECK(strcmp(clt_model_text(m), "") == 0, "failed parse leaves an empty model");
        TU_CHECK(clt_model_check(m, 3, 8, 8, 10, NULL, NULL, 0) == CLT_ERR_STATE, "a failed model cannot be checked");
    }
    clt_model_destroy(m);
}

/* Parses fine, then the shape check against (c,h,w) fails at `line` (0: no line, the model's end). */
static void expect_shape_err(const char *text, int c, int h, int w, int line, const char *needle)
{
    clt_model *m = NULL;
    int st = clt_model_parse(text, "t.model", &m);
    TU_CHECK(st == CLT_OK, "parse failed: %s", clt_model_errmsg(m));
    if (st) {
        clt_model_destroy(m);
        return;
    }
    st = clt_model_check(m, c, h, w, 10, NULL, NULL, 0);
    const char *err = clt_model_errmsg(m);
    char prefix[64];
    if (line)
        snprintf(prefix, sizeof prefix, "t.model:%d: ", line);
    else
        snprintf(prefix, sizeof prefix, "t.model: ");
    TU_CHECK(st == CLT_ERR_SHAPE, "shape check status %d for: %s", st, text);
    TU_CHECK(strncmp(err, prefix, strlen(prefix)) == 0, "message '%s' should start with '%s'", err, prefix);
    TU_CHECK(strstr(err, needle) != NULL, "message '%s' should contain '%s'", err, needle);
    clt_model_destroy(m);
}

static long long conv_p(int in, int out, int k, int bias)
{
    return (long long)out * in * k * k + (bias ? out : 0);
}

/* Checks m against (c,h,w) with the table and prints it. */
static int check_print(clt_model *m, int c, int h, int w, clt_model_info *info)
{
    char table[8192];
    int st = clt_model_check(m, c, h, w, 10, info, table, sizeof table);
    fputs(table, stdout);
    TU_CHECK(info->table_bytes == strlen(table) + 1, "table_bytes %zu for a %zu-byte table", info->table_bytes,
             strlen(table));
    return st;
}

/* The language-model presets: their gpt line and train line, refused as image networks, canonical text stable. */
static void check_lm_preset(clt_model *m, const char *pname, const clt_model_lm_info *lm,
                            const clt_model_train_defaults *d)
{
    if (strcmp(pname, "gpt-tiny") == 0) {
        TU_CHECK(lm->layers == 4 && lm->heads == 4 && lm->dim == 128 && lm->block == 64 && lm->bias == 1 &&
                 lm->tied == 1 && lm->dropout == 0 && lm->mlp == 4, "gpt-tiny shape");
        TU_CHECK(d->batch == 12 && d->optimizer == CLT_OPT_ADAMW && d->lr == 0.001f && d->beta1 == 0.9f &&
                 d->beta2 == 0.99f && d->weight_decay == 0.1f && d->warmup == 100 && d->min_lr == 0.0001f &&
                 d->clip == 1.0f && d->steps == 2000, "gpt-tiny train defaults");
    } else {
        TU_CHECK(lm->layers == 6 && lm->heads == 6 && lm->dim == 384 && lm->block == 256 && lm->dropout == 0.2f &&
                 d->batch == 64 && d->steps == 5000 && d->lr == 0.001f, "gpt-small shape and train defaults");
    }
    TU_CHECK(clt_model_check(m, 3, 32, 32, 10, NULL, NULL, 0) == CLT_ERR_INVALID, "%s refused on images", pname);
    TU_CHECK(strstr(clt_model_errmsg(m), "a language model (gpt line) takes token ids, not images"), "message: %s",
             clt_model_errmsg(m));
    clt_model *m2 = NULL;
    TU_CHECK(clt_model_parse(clt_model_text(m), pname, &m2) == CLT_OK, "canonical text of %s: %s", pname,
             clt_model_errmsg(m2));
    TU_CHECK(strcmp(clt_model_text(m), clt_model_text(m2)) == 0, "canonical text of %s is not stable:\n%s\n---\n%s",
             pname, clt_model_text(m), clt_model_text(m2));
    clt_model_destroy(m2);
}

static void test_lm_errors(void)
{
    static const char *const bad[][2] = {
        {"gpt layers=2 heads=2 dim=8\n", "m:1: gpt: missing block=N"},
        {"gpt layers=2 heads=3 dim=8 block=4\n", "m:1: gpt: 3 heads do not divide dim=8"},
        {"gpt layers=2 heads=2 dim=8 block=4 width=3\n", "m:1: gpt: unknown option 'width=3' (options: layers,"},
        {"gpt layers=2 heads=2 dim=8 block=4\ndense 10\n", "m:1: a gpt model has no other layer lines (line 2 is one)"},
        {"gpt layers=2 heads=2 dim=8 block=4\ngpt layers=2 heads=2 dim=8 block=4\n", "m:2: a second gpt line"},
        {"gpt layers=0 heads=2 dim=8 block=4\n", "m:1: gpt: bad layers '0'"},
        {"gpt layers=200 heads=64 dim=8192 block=4\n", "m:1: gpt: about 1.61e+11 parameters"},
        {"gpt layers=1 heads=1 dim=8 block=4\ntrain clip=-1\n", "m:2: train: bad clip '-1'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        clt_model *m = NULL;
        TU_CHECK(clt_model_parse(bad[i][0], "m", &m) != CLT_OK, "'%s' must fail", bad[i][0]);
        TU_CHECK(strstr(clt_model_errmsg(m), bad[i][1]) != NULL, "message '%s' should contain '%s'", clt_model_errmsg(m),
                 bad[i][1]);
        clt_model_destroy(m);
    }
    clt_model *m = NULL;
    TU_CHECK(clt_model_parse("gpt layers=2 heads=2 dim=8 block=4 tied=0 dropout=0.1\ntrain warmup=5 steps=50\n", "m",
                             &m) == CLT_OK, "gpt line: %s", clt_model_errmsg(m));
    TU_CHECK(strcmp(clt_model_text(m), "# cltrain model 'm'\ngpt layers=2 heads=2 dim=8 block=4 mlp=4 bias=1 tied=0 "
                    "dropout=0.1\ntrain warmup=5 steps=50\n") == 0, "canonical: %s", clt_model_text(m));
    clt_model_destroy(m);
}

static void test_presets(void)
{
    for (int i = 0; clt_model_preset_name(i); i++) {
        clt_model *m = NULL;
        const char *pname = clt_model_preset_name(i);
        int st = clt_model_load(pname, &m);
        TU_CHECK(st == CLT_OK, "preset %s: %s", pname, clt_model_errmsg(m));
        if (st) {
            clt_model_destroy(m);
            continue;
        }
        TU_CHECK(strcmp(clt_model_name(m), pname) == 0, "preset name %s", clt_model_name(m));
        TU_CHECK(strcmp(clt_model_errmsg(m), "") == 0, "no message after success: %s", clt_model_errmsg(m));
        clt_model_info info;
        clt_model_train_defaults d;
        TU_CHECK(clt_model_get_train_defaults(m, &d) == CLT_OK, "train defaults");
        clt_model_lm_info lm;
        if (clt_model_lm(m, &lm) == 1) {
            check_lm_preset(m, pname, &lm, &d);
            clt_model_destroy(m);
            continue;
        }
        TU_CHECK(clt_model_lm(m, &lm) == 0, "%s is not a language model", pname);
        printf("preset %s on CIFAR-10:\n", pname);
        st = check_print(m, 3, 32, 32, &info);
        TU_CHECK(st == CLT_OK, "preset %s on 3x32x32: %s", pname, clt_model_errmsg(m));
        st = clt_model_check(m, 1, 28, 28, 10, NULL, NULL, 0);
        TU_CHECK(st == CLT_OK, "preset %s on 1x28x28: %s", pname, clt_model_errmsg(m));
        /* The canonical text parses to itself. */
        clt_model *m2 = NULL;
        st = clt_model_parse(clt_model_text(m), pname, &m2);
        TU_CHECK(st == CLT_OK, "canonical text of %s: %s\n%s", pname, clt_model_errmsg(m2), clt_model_text(m));
        if (st == CLT_OK) {
            clt_model_train_defaults d2;
            clt_model_get_train_defaults(m2, &d2);
            TU_CHECK(strcmp(clt_model_text(m), clt_model_text(m2)) == 0, "canonical text of %s is not stable:\n%s\n---\n%s",
                     pname, clt_model_text(m), clt_model_text(m2));
            TU_CHECK(d2.batch == d.batch && d2.optimizer == d.optimizer && d2.lr == d.lr && d2.momentum == d.momentum &&
                     d2.nesterov == d.nesterov && d2.weight_decay == d.weight_decay, "train defaults of %s", pname);
        }
        clt_model_destroy(m2);
        if (strcmp(pname, "seed-cnn") == 0) {
            /* 3x32x32 -conv3-> 32x30x30 -pool-> 15 -conv3-> 64x13x13 -pool-> 6x6 -> 2304 -> 64 -> 10 */
            long long p = conv_p(3, 32, 3, 1) + conv_p(32, 64, 3, 1) + 2304LL * 64 + 64 + 64 * 10 + 10;
            TU_CHECK(info.params == p, "seed-cnn params %lld, expected %lld", info.params, p);
            double macs = 32.0 * 900 * 27 + 64.0 * 169 * 288 + 2304.0 * 64 + 640;
            TU_CHECK(info.macs == macs, "seed-cnn MACs %.0f, expected %.0f", info.macs, macs);
            TU_CHECK(d.batch == 64 && d.optimizer == CLT_OPT_ADAM && d.lr == 0.001f, "seed-cnn train defaults");
            /* The canonical text of the seed network is what its checkpoints store: it must not change. */
            const char *want = "# cltrain model 'seed-cnn'\nconv 32 3 stride=1 pad=0 bias=1\nrelu\nmaxpool 2 stride=2 pad=0\n"
                               "conv 64 3 stride=1 pad=0 bias=1\nrelu\nmaxpool 2 stride=2 pad=0\nflatten\ndense 64 bias=1\n"
                               "relu\ndense classes bias=1\ntrain batch=64 optimizer=adam lr=0.001\n";
            TU_CHECK(strcmp(clt_model_text(m), want) == 0, "seed-cnn canonical text:\n%s", clt_model_text(m));
        }
        if (strcmp(pname, "cnn") == 0) {
            long long p = conv_p(3, 32, 3, 0) + conv_p(32, 32, 3, 0) + conv_p(32, 64, 3, 0) + conv_p(64, 64, 3, 0) +
                          conv_p(64, 128, 3, 0) + conv_p(128, 128, 3, 0) + 2 * (32 + 32 + 64 + 64 + 128 + 128) +
                          2048 * 10 + 10;
            TU_CHECK(info.params == p, "cnn params %lld, expected %lld", info.params, p);
            TU_CHECK(d.optimizer == CLT_OPT_SGD && d.nesterov == 1 && d.momentum == 0.9f, "cnn train defaults");
        }
        if (strcmp(pname, "mlp") == 0)
            TU_CHECK(info.params == 3072LL * 512 + 512 + 5120 + 10, "mlp params %lld", info.params);
        /* A short table buffer truncates (NUL-terminated) and still reports the full size. */
        char small[16];
        clt_model_info i2;
        st = clt_model_check(m, 3, 32, 32, 10, &i2, small, sizeof small);
        TU_CHECK(st == CLT_OK && strlen(small) == sizeof small - 1 && i2.table_bytes == info.table_bytes,
                 "truncated table: '%s' %zu", small, i2.table_bytes);
        clt_model_destroy(m);
    }
    TU_CHECK(clt_model_preset_name(7) == NULL && clt_model_preset_name(-1) == NULL && clt_model_preset_name(4) && !strcmp(clt_model_preset_name(4), "seed-mlp") && clt_model_preset_name(6) && !strcmp(clt_model_preset_name(6), "gpt-small"), "preset list ends");
    clt_model *m = NULL;
    int st = clt_model_load("no-such-preset-or-file", &m);
    const char *err = clt_model_errmsg(m);
    TU_CHECK(st == CLT_ERR_IO && strstr(err, "no-such-preset-or-file") && strstr(err, "preset"), "unknown name: %s", err);
    clt_model_destroy(m);
    m = NULL;
    st = clt_model_preset("resnet", &m);
    TU_CHECK(st == CLT_ERR_INVALID && strcmp(clt_model_errmsg(m), "resnet: not a preset (seed-cnn, mlp, cnn, seed-binary, seed-mlp, gpt-tiny, gpt-small)") == 0,
             "unknown preset: %s", clt_model_errmsg(m));
    clt_model_destroy(m);
    TU_CHECK(strcmp(clt_model_errmsg(NULL), "") == 0 && strcmp(clt_model_text(NULL), "") == 0, "NULL model");
    clt_model_destroy(NULL);
}

static void test_format(void)
{
    /* Comments, blank lines, CRLF, tabs, options in any order, residual blocks, train line. */
    const char *text = "# a comment line\r\n"
                       "\n"
                       "conv 16 3 pad=same\tbias=0   # trailing comment\r\n"
                       "batchnorm eps=0.001 momentum=0.2\n"
                       "leaky_relu 0.1\n"
                       "residual {\n"
                       "  conv 16 3 pad=same\n"
                       "  gelu\n"
                       "}\n"
                       "residual project {\n"
                       "  conv 32 3 stride=2 pad=same\n"
                       "  tanh\n"
                       "}\n"
                       "avgpool 3 stride=2 pad=1\n"
                       "maxpool 2\n"
                       "global_avgpool\n"
                       "residual project {\n"
                       "  dense 20\n"
                       "  sigmoid\n"
                       "}\n"
                       "dropout 0.25\n"
                       "dense classes bias=0\n"
                       "train lr=0.1 optimizer=adamw batch=32 weight_decay=0.05 epochs=7\n";
    clt_model *m = NULL;
    int st = clt_model_parse(text, "dir/my.model", &m);
    TU_CHECK(st == CLT_OK, "format: %s", clt_model_errmsg(m));
    if (st == CLT_OK) {
        TU_CHECK(strcmp(clt_model_name(m), "my") == 0, "name from the file name: %s", clt_model_name(m));
        clt_model_train_defaults d;
        clt_model_get_train_defaults(m, &d);
        TU_CHECK(d.batch == 32 && d.optimizer == CLT_OPT_ADAMW && d.lr == 0.1f && d.weight_decay == 0.05f &&
                 d.epochs == 7 && d.momentum < 0 && d.nesterov == -1, "train line values");
        clt_model_info info;
        printf("format test model:\n");
        st = check_print(m, 3, 16, 16, &info);
        TU_CHECK(st == CLT_OK, "format check: %s", clt_model_errmsg(m));
        /* 16x16 -> res -> proj stride 2: 32x8x8 -> avgpool 3/2 pad 1: 4x4 -> maxpool 2: 2x2 -> gap 32 -> res
         * dense 20 + proj 32->20 -> dense 10 no bias */
        long long p = conv_p(3, 16, 3, 0) + 2 * 16 + conv_p(16, 16, 3, 1) + conv_p(16, 32, 3, 1) + conv_p(16, 32, 1, 1) +
                      (32 * 20 + 20) + (32 * 20 + 20) + 20 * 10;
        TU_CHECK(st || info.params == p, "format params %lld, expected %lld", info.params, p);
        TU_CHECK(strstr(clt_model_text(m), "residual project {\n  conv 32 3 stride=2 pad=1 bias=1\n") != NULL,
                 "canonical text:\n%s", clt_model_text(m));
        TU_CHECK(strstr(clt_model_text(m), "batchnorm momentum=0.2 eps=0.001\n") != NULL, "canonical batchnorm:\n%s",
                 clt_model_text(m));
    }
    clt_model_destroy(m);
    m = NULL;

    /* A model file: errors carry the file name and line. */
    char path[] = "/tmp/clt_model_XXXXXX";
    int fd = mkstemp(path);
    TU_CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        const char *bad = "conv 8 3\n# comment\n\nconv 8 x\n";
        TU_CHECK(write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad), "write");
        close(fd);
        st = clt_model_load(path, &m);
        const char *err = clt_model_errmsg(m);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s:4: ", path);
        TU_CHECK(st == CLT_ERR_INVALID && strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, "kernel"),
                 "file error: %s", err);
        clt_model_destroy(m);
        m = NULL;
        unlink(path);
    }

    /* Syntax errors. */
    expect_parse_err("conv 8 3\nrelu\nfrobnicate 3\n", 3, "unknown layer 'frobnicate'");
    expect_parse_err("conv\n", 1, "missing the number of output channels");
    expect_parse_err("conv 8\n", 1, "missing the kernel size");
    expect_parse_err("conv -8 3\n", 1, "bad number of output channels");
    expect_parse_err("conv 8 3 strid=2\n", 1, "unknown option 'strid=2'");
    expect_parse_err("conv 8 3 stride=0\n", 1, "bad stride");
    expect_parse_err("conv 8 4 pad=same\n", 1, "odd kernel");
    expect_parse_err("conv 8 3 pad=1x\n", 1, "bad pad");
    expect_parse_err("relu 3\n", 1, "unexpected argument '3'");
    expect_parse_err("\n\ndense\n", 3, "missing the number of units");
    expect_parse_err("dense 1.5\n", 1, "bad number of units");
    expect_parse_err("dropout 1\n", 1, "bad rate");
    expect_parse_err("dropout nan\n", 1, "bad rate");
    expect_parse_err("maxpool\n", 1, "missing the window size");
    expect_parse_err("maxpool 2 pad=2\n", 1, "more than half");
    expect_parse_err("leaky_relu abc\n", 1, "bad slope");
    expect_parse_err("batchnorm momentum=2\n", 1, "bad momentum");
    expect_parse_err("dense 10\nsoftmax\n", 2, "not needed");
    expect_parse_err("dense 10\n}\n", 2, "without an open residual block");
    expect_parse_err("dense 10\nresidual {\ndense 10\n", 2, "not closed");
    expect_parse_err("residual\n", 1, "must end with '{'");
    expect_parse_err("residual foo {\n", 1, "unexpected 'foo'");
    expect_parse_err("residual {\n}\n", 2, "empty residual block");
    expect_parse_err("dense 10\ntrain lr=0.1\ntrain batch=2\n", 3, "second train line");
    expect_parse_err("dense 10\ntrain optimizer=rmsprop\n", 2, "unknown optimizer");
    expect_parse_err("dense 10\ntrain lr=fast\n", 2, "bad lr");
    expect_parse_err("dense 10\ntrain batch=0\n", 2, "bad batch");
    {
        clt_model *m2 = NULL;
        st = clt_model_parse("# only a comment\n\n", "t.model", &m2);
        TU_CHECK(st == CLT_ERR_INVALID && strcmp(clt_model_errmsg(m2), "t.model: no layers") == 0, "empty model: %s",
                 clt_model_errmsg(m2));
        clt_model_destroy(m2);
    }

    /* Shape errors, on a 3x8x8 input. */
    expect_shape_err("flatten\nconv 8 3\ndense classes\n", 3, 8, 8, 2, "needs an image");
    expect_shape_err("conv 8 3\nconv 8 9\ndense classes\n", 3, 8, 8, 2, "does not fit");
    expect_shape_err("maxpool 2\nmaxpool 2\nmaxpool 2\nmaxpool 2\ndense classes\n", 3, 8, 8, 4, "does not fit");
    expect_shape_err("dense 5\nglobal_avgpool\ndense classes\n", 3, 8, 8, 2, "needs an image");
    expect_shape_err("conv 4 3 pad=1\nresidual {\n  conv 8 3 pad=1\n}\ndense classes\n", 3, 8, 8, 4,
                     "(line 2) changes the shape (4,8,8) -> (8,8,8)");
    expect_shape_err("conv 4 3 pad=1\nresidual project {\n  flatten\n}\ndense classes\n", 3, 8, 8, 4,
                     "between images or between vectors");
    expect_shape_err("conv 4 3\nrelu\n", 3, 8, 8, 0, "must give 10 class scores");
    expect_shape_err("dense 7\n", 3, 8, 8, 0, "ends with shape (7)");
    /* A projected stride-2 block and a padded odd size are fine. */
    clt_model *m3 = NULL;
    st = clt_model_parse("residual project {\nconv 8 3 stride=2 pad=same\n}\nflatten\ndense classes\n", "t", &m3);
    TU_CHECK(st == CLT_OK, "%s", clt_model_errmsg(m3));
    if (st == CLT_OK) {
        st = clt_model_check(m3, 3, 7, 7, 10, NULL, NULL, 0);
        TU_CHECK(st == CLT_OK, "projected stride-2 block on 7x7: %s", clt_model_errmsg(m3));
    }
    clt_model_destroy(m3);
}

/* Parses `text`, then checks it on (c,h,w): expects CLT_ERR_SHAPE at `line` with exactly the message `want`
 * after the "t.model:LINE: " prefix. */
static void expect_check_msg(const char *text, int c, int h, int w, int line, const char *want)
{
    clt_model *m = NULL;
    int st = clt_model_parse(text, "t.model", &m);
    TU_CHECK(st == CLT_OK, "parse: %s", clt_model_errmsg(m));
    if (st == CLT_OK) {
        st = clt_model_check(m, c, h, w, 10, NULL, NULL, 0);
        char full[1200];
        snprintf(full, sizeof full, "t.model:%d: %s", line, want);
        TU_CHECK(st == CLT_ERR_SHAPE && strcmp(clt_model_errmsg(m), full) == 0, "status %d, message\n  '%s'\nwanted\n  '%s'",
                 st, clt_model_errmsg(m), full);
    }
    clt_model_destroy(m);
}

/* Sizes a description may ask for are bounded (CLT_MODEL_MAX_*), and no size product overflows. */
static void test_limits(void)
{
    /* Twenty padded layers grow 32x32 by 126 per layer (3x3, pad 64); the float32 outputs summed from the input on pass the
     * activation limit at the first layer where the running total exceeds it (computed here the same way). */
    char text[2048] = "";
    for (int i = 0; i < 20; i++) strcat(text, "conv 8 3 pad=64\n");
    strcat(text, "flatten\ndense classes\n");
    double total = 4.0 * 3 * 32 * 32;
    int line = 0;
    for (int i = 1; i <= 20 && !line; i++) {
        double side = 32 + 126.0 * i;
        total += 4.0 * 8 * side * side;
        if (total > (double)CLT_MODEL_MAX_ACTIVATION_BYTES) line = i;
    }
    TU_CHECK(line > 0, "the growing model should pass the activation limit");
    char want[512];
    snprintf(want, sizeof want, "the layer outputs up to here need %.2f GiB per image (float32), above the limit of "
             "1.00 GiB (CLT_MODEL_MAX_ACTIVATION_BYTES); use fewer channels or a smaller size", total / (1 << 30));
    expect_check_msg(text, 3, 32, 32, line, want);
    /* Multiply-adds: 4096 -> 4096 channels of 3x3 on 64x64 is 6.2e11 per image at the second layer. */
    snprintf(want, sizeof want, "the layers up to here need %.3g multiply-adds per image, above the limit of 5e+10 "
             "(CLT_MODEL_MAX_MACS); use fewer channels or a smaller size",
             4096.0 * 64 * 64 * 3 * 9 + 4096.0 * 64 * 64 * 4096 * 9);
    expect_check_msg("conv 4096 3 pad=1\nconv 4096 3 pad=1\nflatten\ndense classes\n", 3, 64, 64, 2, want);
    /* 65536 x 256 x 256 values per image: refused before a flatten could multiply C*H*W in int. */
    expect_check_msg("conv 65536 1\nflatten\ndense classes\n", 3, 256, 256, 1,
                     "the layer outputs up to here need 16.00 GiB per image (float32), above the limit of 1.00 GiB "
                     "(CLT_MODEL_MAX_ACTIVATION_BYTES); use fewer channels or a smaller size");
    /* An input whose C*H*W overflows int is refused as such. */
    clt_model *m = NULL;
    if (clt_model_parse("flatten\ndense classes\n", "t.model", &m) == CLT_OK) {
        int st = clt_model_check(m, 65536, 65536, 65536, 10, NULL, NULL, 0);
        TU_CHECK(st == CLT_ERR_INVALID &&
                 strcmp(clt_model_errmsg(m), "t.model: bad input shape (65536,65536,65536) or class count 10") == 0,
                 "huge input: %d %s", st, clt_model_errmsg(m));
    }
    clt_model_destroy(m);
}

/* Messages that name the actual mistake; a byte-order mark; files that are not regular files. */
static void test_messages(void)
{
    expect_parse_err("conv 8 3 stride=1 stride=2\n", 1, "conv: repeated option 'stride'");
    expect_parse_err("dense 10\ntrain lr=0.1 lr=0.2\n", 2, "train: repeated option 'lr'");
    /* A UTF-8 byte-order mark at the start is skipped; line numbers stay right. */
    clt_model *m = NULL;
    int st = clt_model_parse("\xEF\xBB\xBF" "conv 8 3\nflatten\ndense classes\n", "bom.model", &m);
    TU_CHECK(st == CLT_OK && strncmp(clt_model_text(m), "# cltrain model 'bom'\nconv 8 3 ", 30) == 0,
             "BOM: %d %s", st, clt_model_errmsg(m));
    clt_model_destroy(m);
    expect_parse_err("\xEF\xBB\xBF" "frobnicate 3\n", 1, "unknown layer 'frobnicate' (");
    /* Through a file. */
    char path[] = "/tmp/clt_model_bom_XXXXXX";
    int fd = mkstemp(path);
    TU_CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        const char *text = "\xEF\xBB\xBF# with a BOM\r\nconv 4 3\r\nflatten\r\ndense classes\r\n";
        TU_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
        close(fd);
        m = NULL;
        st = clt_model_load(path, &m);
        TU_CHECK(st == CLT_OK, "BOM file: %s", clt_model_errmsg(m));
        clt_model_destroy(m);
        unlink(path);
    }
    /* A FIFO would block a reader forever and a folder is no text: both are refused without reading. */
    char fifo[] = "/tmp/clt_model_fifo_XXXXXX";
    fd = mkstemp(fifo);
    if (fd >= 0) {
        close(fd);
        unlink(fifo);
        TU_CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
        m = NULL;
        st = clt_model_load(fifo, &m);
        char want[256];
        snprintf(want, sizeof want, "%s: not a regular file (a FIFO, socket or device); a model description is a "
                 "text file", fifo);
        TU_CHECK(st == CLT_ERR_IO && strcmp(clt_model_errmsg(m), want) == 0, "FIFO: %d %s", st, clt_model_errmsg(m));
        clt_model_destroy(m);
        unlink(fifo);
    }
    m = NULL;
    st = clt_model_load("/tmp", &m);
    TU_CHECK(st == CLT_ERR_IO && strcmp(clt_model_errmsg(m), "/tmp: not a regular file (a folder); a model "
             "description is a text file") == 0, "folder: %d %s", st, clt_model_errmsg(m));
    clt_model_destroy(m);
    /* The layer list of help texts comes from the op table, then the format's own lines. */
    int n = 0, conv = 0;
    for (const char *u; (u = clt_model_layer_usage(n)); n++)
        conv += strcmp(u, "conv OUT K [stride=1] [pad=0|same] [bias=1]") == 0;
    TU_CHECK(n > 2 && conv == 1 && clt_model_layer_usage(-1) == NULL &&
             strcmp(clt_model_layer_usage(n - 3), "residual [project] { ...layers... }") == 0 &&
             strncmp(clt_model_layer_usage(n - 2), "train [batch=N] ", 16) == 0 &&
             strncmp(clt_model_layer_usage(n - 1), "gpt layers=N ", 13) == 0, "layer usage list: %d lines", n);
}

int main(void)
{
    test_presets();
    test_lm_errors();
    test_format();
    test_limits();
    test_messages();
    return tu_finish("test_model");
}
