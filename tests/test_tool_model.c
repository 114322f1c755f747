/* test_tool_model.c - model description format: presets, canonical text, shape checks and line-numbered errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "tool.h"

/* Parses `text`; expects failure whose message starts with "t.model:LINE:" and contains `needle`. */
static void expect_parse_err(const char *text, int line, const char *needle)
{
    tool_model m;
    char err[TOOL_ERR_LEN] = "";
    int st = tool_model_parse(text, "t.model", &m, err);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t.model:%d: ", line);
    TU_CHECK(st != CLT_OK, "accepted: %s", text);
    if (st == CLT_OK) {
        tool_model_free(&m);
        return;
    }
    TU_CHECK(strncmp(err, prefix, strlen(prefix)) == 0, "message '%s' should start with '%s'", err, prefix);
    TU_CHECK(strstr(err, needle) != NULL, "message '%s' should contain '%s'", err, needle);
    TU_CHECK(m.text == NULL && m.priv == NULL, "failed parse leaves an empty model");
}

/* Parses fine, then the shape check against (c,h,w) fails at `line` (0: no line, the model's end). */
static void expect_shape_err(const char *text, int c, int h, int w, int line, const char *needle)
{
    tool_model m;
    char err[TOOL_ERR_LEN] = "";
    int st = tool_model_parse(text, "t.model", &m, err);
    TU_CHECK(st == CLT_OK, "parse failed: %s", err);
    if (st) return;
    st = tool_model_check(&m, c, h, w, 10, NULL, NULL, err);
    char prefix[64];
    if (line)
        snprintf(prefix, sizeof prefix, "t.model:%d: ", line);
    else
        snprintf(prefix, sizeof prefix, "t.model: ");
    TU_CHECK(st == CLT_ERR_SHAPE, "shape check status %d for: %s", st, text);
    TU_CHECK(strncmp(err, prefix, strlen(prefix)) == 0, "message '%s' should start with '%s'", err, prefix);
    TU_CHECK(strstr(err, needle) != NULL, "message '%s' should contain '%s'", err, needle);
    tool_model_free(&m);
}

static long long conv_p(int in, int out, int k, int bias)
{
    return (long long)out * in * k * k + (bias ? out : 0);
}

static void test_presets(void)
{
    char err[TOOL_ERR_LEN];
    for (int i = 0; tool_model_presets[i]; i++) {
        tool_model m;
        int st = tool_model_load(tool_model_presets[i], &m, err);
        TU_CHECK(st == CLT_OK, "preset %s: %s", tool_model_presets[i], err);
        if (st) continue;
        TU_CHECK(strcmp(m.name, tool_model_presets[i]) == 0, "preset name %s", m.name);
        tool_model_info info;
        printf("preset %s on CIFAR-10:\n", m.name);
        st = tool_model_check(&m, 3, 32, 32, 10, &info, stdout, err);
        TU_CHECK(st == CLT_OK, "preset %s on 3x32x32: %s", m.name, err);
        st = tool_model_check(&m, 1, 28, 28, 10, NULL, NULL, err);
        TU_CHECK(st == CLT_OK, "preset %s on 1x28x28: %s", m.name, err);
        /* The canonical text parses to itself. */
        tool_model m2;
        st = tool_model_parse(m.text, m.name, &m2, err);
        TU_CHECK(st == CLT_OK, "canonical text of %s: %s\n%s", m.name, err, m.text);
        if (st == CLT_OK) {
            TU_CHECK(strcmp(m.text, m2.text) == 0, "canonical text of %s is not stable:\n%s\n---\n%s", m.name, m.text,
                     m2.text);
            TU_CHECK(m2.batch == m.batch && m2.optimizer == m.optimizer && m2.lr == m.lr && m2.momentum == m.momentum &&
                     m2.nesterov == m.nesterov && m2.weight_decay == m.weight_decay, "train defaults of %s", m.name);
            tool_model_free(&m2);
        }
        if (strcmp(m.name, "seed-cnn") == 0) {
            /* 3x32x32 -conv3-> 32x30x30 -pool-> 15 -conv3-> 64x13x13 -pool-> 6x6 -> 2304 -> 64 -> 10 */
            long long p = conv_p(3, 32, 3, 1) + conv_p(32, 64, 3, 1) + 2304LL * 64 + 64 + 64 * 10 + 10;
            TU_CHECK(info.params == p, "seed-cnn params %lld, expected %lld", info.params, p);
            double macs = 32.0 * 900 * 27 + 64.0 * 169 * 288 + 2304.0 * 64 + 640;
            TU_CHECK(info.macs == macs, "seed-cnn MACs %.0f, expected %.0f", info.macs, macs);
            TU_CHECK(m.batch == 64 && m.optimizer == CLT_OPT_ADAM && m.lr == 0.001f, "seed-cnn train defaults");
        }
        if (strcmp(m.name, "cnn") == 0) {
            long long p = conv_p(3, 32, 3, 0) + conv_p(32, 32, 3, 0) + conv_p(32, 64, 3, 0) + conv_p(64, 64, 3, 0) +
                          conv_p(64, 128, 3, 0) + conv_p(128, 128, 3, 0) + 2 * (32 + 32 + 64 + 64 + 128 + 128) +
                          2048 * 10 + 10;
            TU_CHECK(info.params == p, "cnn params %lld, expected %lld", info.params, p);
            TU_CHECK(m.optimizer == CLT_OPT_SGD && m.nesterov == 1 && m.momentum == 0.9f, "cnn train defaults");
        }
        if (strcmp(m.name, "mlp") == 0)
            TU_CHECK(info.params == 3072LL * 512 + 512 + 5120 + 10, "mlp params %lld", info.params);
        tool_model_free(&m);
    }
    tool_model m;
    int st = tool_model_load("no-such-preset-or-file", &m, err);
    TU_CHECK(st == CLT_ERR_IO && strstr(err, "no-such-preset-or-file") && strstr(err, "preset"), "unknown name: %s", err);
}

static void test_format(void)
{
    char err[TOOL_ERR_LEN];
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
    tool_model m;
    int st = tool_model_parse(text, "dir/my.model", &m, err);
    TU_CHECK(st == CLT_OK, "format: %s", err);
    if (st == CLT_OK) {
        TU_CHECK(strcmp(m.name, "my") == 0, "name from the file name: %s", m.name);
        TU_CHECK(m.batch == 32 && m.optimizer == CLT_OPT_ADAMW && m.lr == 0.1f && m.weight_decay == 0.05f &&
                 m.epochs == 7 && m.momentum < 0 && m.nesterov == -1, "train line values");
        tool_model_info info;
        printf("format test model:\n");
        st = tool_model_check(&m, 3, 16, 16, 10, &info, stdout, err);
        TU_CHECK(st == CLT_OK, "format check: %s", err);
        /* 16x16 -> res -> proj stride 2: 32x8x8 -> avgpool 3/2 pad 1: 4x4 -> maxpool 2: 2x2 -> gap 32 -> res
         * dense 20 + proj 32->20 -> dense 10 no bias */
        long long p = conv_p(3, 16, 3, 0) + 2 * 16 + conv_p(16, 16, 3, 1) + conv_p(16, 32, 3, 1) + conv_p(16, 32, 1, 1) +
                      (32 * 20 + 20) + (32 * 20 + 20) + 20 * 10;
        TU_CHECK(st || info.params == p, "format params %lld, expected %lld", info.params, p);
        TU_CHECK(strstr(m.text, "residual project {\n  conv 32 3 stride=2 pad=1 bias=1\n") != NULL,
                 "canonical text:\n%s", m.text);
        TU_CHECK(strstr(m.text, "batchnorm momentum=0.2 eps=0.001\n") != NULL, "canonical batchnorm:\n%s", m.text);
        tool_model_free(&m);
    }

    /* A model file: errors carry the file name and line. */
    char path[] = "/tmp/clt_tool_model_XXXXXX";
    int fd = mkstemp(path);
    TU_CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        const char *bad = "conv 8 3\n# comment\n\nconv 8 x\n";
        TU_CHECK(write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad), "write");
        close(fd);
        st = tool_model_load(path, &m, err);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s:4: ", path);
        TU_CHECK(st == CLT_ERR_INVALID && strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, "kernel"),
                 "file error: %s", err);
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
        tool_model m2;
        st = tool_model_parse("# only a comment\n\n", "t.model", &m2, err);
        TU_CHECK(st == CLT_ERR_INVALID && strstr(err, "no layers"), "empty model: %s", err);
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
    tool_model m3;
    st = tool_model_parse("residual project {\nconv 8 3 stride=2 pad=same\n}\nflatten\ndense classes\n", "t", &m3, err);
    TU_CHECK(st == CLT_OK, "%s", err);
    if (st == CLT_OK) {
        st = tool_model_check(&m3, 3, 7, 7, 10, NULL, NULL, err);
        TU_CHECK(st == CLT_OK, "projected stride-2 block on 7x7: %s", err);
        tool_model_free(&m3);
    }
}

int main(void)
{
    test_presets();
    test_format();
    return tu_finish("test_tool_model");
}
