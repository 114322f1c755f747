/* test_tool_meta.c - the cltrain tool's metadata in checkpoints: round trip, version-1 conversion, refusals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "tool.h"

static char root[256];
static clt_graph *g_graph;

/* A compiled graph of a 1x3x2-image, 3-class network to save with the blobs. */
static int make_graph(clt_context *ctx)
{
    clt_model *m = NULL;
    clt_tensor *x, *lg;
    int shape[4] = {2, 1, 3, 2};
    if (clt_model_parse("flatten\ndense classes\n", "t", &m) < 0) {
        TU_CHECK(0, "parse: %s", clt_model_errmsg(m));
        clt_model_destroy(m);
        return 0;
    }
    int ok = TU_OK(ctx, clt_graph_create(ctx, &g_graph)) && TU_OK(ctx, clt_input(g_graph, "x", 4, shape, &x)) &&
             TU_OK(ctx, clt_model_build(g_graph, m, x, 3, &lg)) && TU_OK(ctx, clt_graph_compile(g_graph, NULL));
    clt_model_destroy(m);
    return ok;
}

static void sample(tool_ckpt_meta *m, tool_data_meta *dm)
{
    memset(m, 0, sizeof *m);
    memset(dm, 0, sizeof *dm);
    snprintf(m->dataset, sizeof m->dataset, "mnist");
    snprintf(m->model_text_origin, sizeof m->model_text_origin, "my.model");
    m->epochs_done = 2;
    m->epochs_total = 5;
    m->rng_state = 0xfeedfacecafebeefull;
    m->batch = 32;
    m->schedule = 2;
    m->lr = 0.25f;
    m->momentum = 0.5f;
    m->augment = 1;
    m->limit = 100;
    m->seed = 77;
    m->nhistory = 2;
    m->history[0] = (tool_epoch_metrics){1, 2, 3, 4, 5, 6};
    m->history[1] = (tool_epoch_metrics){0.5, 0.25, 0.125, 0.0625, 7, 8};
    dm->c = 1, dm->h = 3, dm->w = 2, dm->classes = 3;
    dm->mean[0] = 0.125f;
    dm->std[0] = 0.75f;
    dm->label_smoothing = 0.1f;
    snprintf(dm->class_names[0], 32, "zero");
    snprintf(dm->class_names[1], 32, "one");
    snprintf(dm->class_names[2], 32, "two");
}

/* Saves the graph with `blob` and decodes it again; returns the status and the message in err. */
static int through_file(clt_context *ctx, const void *blob, size_t len, tool_ckpt_meta *m, tool_data_meta *dm, char *err)
{
    char path[400];
    snprintf(path, sizeof path, "%s/m.ckpt", root);
    if (!TU_OK(ctx, clt_graph_save(g_graph, path, blob, len))) return -100;
    clt_checkpoint *ck = NULL;
    int st = clt_checkpoint_open(path, &ck);
    TU_CHECK(st == 0, "open: %s", clt_checkpoint_errmsg(ck));
    if (!st) st = tool_meta_decode(ck, path, m, dm, err);
    clt_checkpoint_close(ck);
    return st;
}

static void expect_refused(clt_context *ctx, const tool_ckpt_meta *m, const tool_data_meta *dm, const char *needle,
                           const char *what)
{
    unsigned char *blob;
    size_t len;
    char err[TOOL_ERR_LEN] = "";
    if (tool_meta_encode(m, dm, &blob, &len, err) != 0) {
        TU_CHECK(0, "%s: encode: %s", what, err);
        return;
    }
    tool_ckpt_meta *got = calloc(1, sizeof *got);
    tool_data_meta d;
    int st = through_file(ctx, blob, len, got, &d, err);
    TU_CHECK(st == CLT_ERR_FORMAT && strstr(err, needle), "%s: %d '%s', expected '%s'", what, st, err, needle);
    free(got);
    free(blob);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/clt_meta_%ld", (long)getpid());
    mkdir(root, 0755);
    clt_context *ctx = tu_context();
    if (!ctx || !make_graph(ctx)) return 1;
    tool_ckpt_meta *m = calloc(1, sizeof *m), *got = calloc(1, sizeof *got);
    tool_data_meta dm, d;
    char err[TOOL_ERR_LEN] = "";

    /* Round trip. */
    sample(m, &dm);
    unsigned char *blob;
    size_t len;
    TU_CHECK(tool_meta_encode(m, &dm, &blob, &len, err) == 0, "encode: %s", err);
    TU_CHECK(len == 12 + 9 + 12 + 16 + 24 + 8 + 4 + 96 + 16 + 36 + 22, "blob of %zu bytes", len);
    TU_CHECK(blob[TOOL_META_OFFSET_BATCH(5, 8)] == 32 && blob[TOOL_META_OFFSET_BATCH(5, 8) + 4] == 2,
             "TOOL_META_OFFSET_BATCH names the batch and the schedule");
    int st = through_file(ctx, blob, len, got, &d, err);
    TU_CHECK(st == 0, "decode: %s", err);
    TU_CHECK(!strcmp(got->dataset, "mnist") && !strcmp(got->model_text_origin, "my.model") && got->epochs_done == 2 &&
             got->epochs_total == 5 && got->rng_state == m->rng_state && got->batch == 32 && got->schedule == 2 &&
             got->lr == 0.25f && got->momentum == 0.5f && got->augment == 1 && got->limit == 100 && got->seed == 77 &&
             got->nhistory == 2 && !memcmp(got->history, m->history, 2 * sizeof m->history[0]),
             "training metadata differs after the round trip");
    TU_CHECK(!memcmp(&d, &dm, sizeof d), "data settings differ after the round trip");
    TU_CHECK(got->opt.type == CLT_OPT_SGD && got->steps == 0, "optimizer and counters come from the library");
    /* Cut short, trailing bytes, another application's blob. */
    st = through_file(ctx, blob, len - 3, got, &d, err);
    TU_CHECK(st == CLT_ERR_FORMAT && strstr(err, "malformed cltrain metadata"), "truncated blob: %d %s", st, err);
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, blob, len);
    longer[len] = 0;
    st = through_file(ctx, longer, len + 1, got, &d, err);
    TU_CHECK(st == CLT_ERR_FORMAT && strstr(err, "holds no cltrain metadata"), "trailing byte: %d %s", st, err);
    free(longer);
    st = through_file(ctx, "hello", 5, got, &d, err);
    TU_CHECK(st == CLT_ERR_FORMAT && strstr(err, "holds no cltrain metadata of version 1 (saved by another application?)"),
             "foreign blob: %d %s", st, err);
    free(blob);

    /* Values no run stores. */
    sample(m, &dm);
    dm.mean[0] = (float)NAN;
    expect_refused(ctx, m, &dm, "the normalization statistics of channel 0 (mean nan, std 0.75) are not usable", "NaN mean");
    sample(m, &dm);
    dm.std[0] = (float)INFINITY;
    expect_refused(ctx, m, &dm, "(mean 0.125, std inf) are not usable", "Inf std");
    sample(m, &dm);
    dm.std[0] = 0;
    expect_refused(ctx, m, &dm, "std 0) are not usable", "zero std");
    sample(m, &dm);
    dm.c = 3;
    expect_refused(ctx, m, &dm, "the data settings (3x3x2 images, 3 classes) do not match its network (1x3x2, 3)",
                   "other shape");
    sample(m, &dm);
    m->nhistory = 3;
    expect_refused(ctx, m, &dm, "malformed cltrain metadata (2 of 5 epochs, 3 history entries)", "history");

    /* A version-1 file (cltrain 0.1's writer): its metadata and data block converted. */
    const char *v1 = TEST_DATA_DIR "/v1_mlp.ckpt";
    clt_checkpoint *ck = NULL;
    st = clt_checkpoint_open(v1, &ck);
    if (!st) st = tool_meta_decode(ck, v1, got, &d, err);
    TU_CHECK(st == 0, "v1: %s %s", clt_checkpoint_errmsg(ck), err);
    TU_CHECK(!strcmp(got->dataset, "cifar10") && !strcmp(got->model_text_origin, "v1") && got->epochs_done == 1 &&
             got->epochs_total == 2 && got->rng_state == 0x123456789abcdefull && got->batch == 2 && got->seed == 11 &&
             got->nhistory == 1 && got->history[0].test_acc == 0.5 && got->steps == 7 && got->passes == 9 &&
             got->opt.momentum == 0.9f, "v1 training metadata");
    TU_CHECK(d.c == 1 && d.h == 3 && d.w == 2 && d.classes == 3 && d.mean[0] == 0.5f && d.std[0] == 0.25f &&
             !strcmp(d.class_names[2], "c"), "v1 data settings");
    clt_checkpoint_close(ck);

    free(m);
    free(got);
    clt_graph_destroy(g_graph);
    clt_context_destroy(ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_tool_meta");
}
