/* embed.c - what an application embedding libcltrain does: its own OpenCL context, train, save, load, predict. */
/*
 * The application owns the OpenCL platform, context and queue and hands them to cltrain. It trains a small MLP
 * (from cltrain's model text) on generated data, saves a checkpoint with its own metadata, loads the checkpoint
 * into a fresh OpenCL and cltrain context as an evaluation graph, predicts, and checks that the predictions are
 * bit-identical to those of the trained graph. Exit status 0 when all of that holds.
 *
 *   cc embed.c $(pkg-config --cflags --libs cltrain) -o embed && ./embed /tmp/embed.ckpt
 */
#include <cltrain.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEATURES 8
#define CLASSES 3
#define BATCH 32
#define N_TRAIN 384
#define N_TEST 100 /* not a multiple of BATCH: clt_predict pads the last batch */

/* The application's OpenCL objects: the first GPU, else the first device of any kind. */
typedef struct app_cl {
    cl_context context;
    cl_device_id device;
    cl_command_queue queue;
} app_cl;

static int app_cl_open(app_cl *a)
{
    cl_platform_id platforms[8];
    cl_uint np = 0;
    memset(a, 0, sizeof *a);
    if (clGetPlatformIDs(8, platforms, &np) != CL_SUCCESS || np == 0) return -1;
    for (int pass = 0; pass < 2 && !a->device; pass++)
        for (cl_uint i = 0; i < np && !a->device; i++) {
            cl_uint nd = 0;
            cl_device_type type = pass == 0 ? CL_DEVICE_TYPE_GPU : CL_DEVICE_TYPE_ALL;
            if (clGetDeviceIDs(platforms[i], type, 1, &a->device, &nd) != CL_SUCCESS || nd == 0) a->device = NULL;
        }
    if (!a->device) return -1;
    cl_int err;
    a->context = clCreateContext(NULL, 1, &a->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) return -1;
    a->queue = clCreateCommandQueue(a->context, a->device, 0, &err);
    return err == CL_SUCCESS ? 0 : -1;
}

static void app_cl_close(app_cl *a)
{
    if (a->queue) clReleaseCommandQueue(a->queue);
    if (a->context) clReleaseContext(a->context);
}

static clt_context *wrap(app_cl *a)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.tune = CLT_TUNE_OFF; /* same kernels in both contexts, so the predictions can be compared bit for bit */
    clt_context *ctx = NULL;
    if (clt_context_create_from_cl(a->context, a->device, a->queue, &s, &ctx) < 0) {
        fprintf(stderr, "embed: clt_context_create_from_cl: %s\n", clt_errmsg(ctx));
        clt_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

/* Three Gaussian clusters in FEATURES dimensions; label = cluster. */
static uint64_t rng = 12345;
static float uniform(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / 16777216.0);
}
static void make_data(float *x, float *y, int n)
{
    for (int i = 0; i < n; i++) {
        int c = i % CLASSES;
        y[i] = (float)c;
        for (int f = 0; f < FEATURES; f++)
            x[i * FEATURES + f] = (f % CLASSES == c ? 1.5f : -0.5f) + (uniform() + uniform() + uniform() - 1.5f);
    }
}

#define CHECK(ctx, call)                                                                         \
    do {                                                                                         \
        if ((call) < 0) {                                                                        \
            fprintf(stderr, "embed: %s failed: %s\n", #call, clt_errmsg(ctx));                   \
            return 1;                                                                            \
        }                                                                                        \
    } while (0)

/* Trains, predicts the test points into `pred` and saves to `path`. */
static int train_and_save(clt_context *ctx, const char *path, const float *xt, float *pred)
{
    static float x[N_TRAIN * FEATURES], y[N_TRAIN];
    make_data(x, y, N_TRAIN);
    clt_model *model = NULL;
    if (clt_model_parse("flatten\ndense 16\nrelu\ndense classes\n", "embed", &model) < 0) {
        fprintf(stderr, "embed: %s\n", clt_model_errmsg(model));
        clt_model_destroy(model);
        return 1;
    }
    clt_graph *g = NULL;
    clt_tensor *in, *labels, *logits, *loss;
    int xs[4] = {BATCH, 1, 1, FEATURES}, ys[1] = {BATCH};
    CHECK(ctx, clt_graph_create(ctx, &g));
    CHECK(ctx, clt_input(g, "x", 4, xs, &in));
    CHECK(ctx, clt_model_build(g, model, in, CLASSES, &logits));
    clt_model_destroy(model);
    CHECK(ctx, clt_graph_keep(g, logits, 0));
    CHECK(ctx, clt_input(g, "labels", 1, ys, &labels));
    CHECK(ctx, clt_softmax_cross_entropy(g, logits, labels, 0.0f, &loss));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_SGD);
    cs.optimizer.momentum = 0.9f;
    CHECK(ctx, clt_graph_compile(g, &cs));
    float first = 0, last = 0;
    for (int step = 0; step < 120; step++) {
        int at = (step * BATCH) % N_TRAIN;
        CHECK(ctx, clt_tensor_write(g, in, x + at * FEATURES, BATCH * FEATURES));
        CHECK(ctx, clt_tensor_write(g, labels, y + at, BATCH));
        CHECK(ctx, clt_graph_forward(g, 1));
        CHECK(ctx, clt_graph_backward(g, loss));
        CHECK(ctx, clt_graph_step(g, 0.05f));
        CHECK(ctx, clt_tensor_read(g, loss, 0, step ? &last : &first, 1));
    }
    printf("embed: training loss %.4f -> %.4f\n", first, last);
    CHECK(ctx, clt_predict(g, xt, N_TEST, pred));
    static const char meta[] = "embed example, 3 clusters";
    CHECK(ctx, clt_graph_save(g, path, meta, sizeof meta));
    clt_graph_destroy(g);
    return !(last < 0.5f * first);
}

/* Loads `path` into a fresh context as an evaluation graph of the same batch and predicts the test points. */
static int load_and_predict(clt_context *ctx, const char *path, const float *xt, float *pred)
{
    clt_load_settings ls;
    clt_load_default_settings(&ls); /* training = 0: no gradients, no optimizer memory */
    ls.batch = BATCH;
    clt_graph *g = NULL;
    CHECK(ctx, clt_graph_load(ctx, path, &ls, &g));
    CHECK(ctx, clt_predict(g, xt, N_TEST, pred));
    clt_graph_destroy(g);
    /* The application's own metadata comes back as it was saved. */
    clt_checkpoint *ck = NULL;
    int st = clt_checkpoint_open(path, &ck);
    size_t len = 0;
    const char *got = clt_checkpoint_app_meta(ck, &len);
    if (st < 0 || len != sizeof "embed example, 3 clusters" || strcmp(got, "embed example, 3 clusters") != 0) {
        fprintf(stderr, "embed: metadata: %s\n", clt_checkpoint_errmsg(ck));
        st = -1;
    }
    clt_checkpoint_close(ck);
    return st < 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "embed.ckpt";
    static float xt[N_TEST * FEATURES], yt[N_TEST], before[N_TEST * CLASSES], after[N_TEST * CLASSES];
    make_data(xt, yt, N_TEST);
    app_cl a, b;
    if (app_cl_open(&a) < 0) {
        fprintf(stderr, "embed: no OpenCL device\n");
        return 1;
    }
    clt_context *ctx = wrap(&a);
    int rc = !ctx || train_and_save(ctx, path, xt, before);
    clt_context_destroy(ctx);
    app_cl_close(&a); /* the first context is gone before the checkpoint is loaded */
    if (!rc && app_cl_open(&b) == 0) {
        ctx = wrap(&b);
        rc = !ctx || load_and_predict(ctx, path, xt, after);
        clt_context_destroy(ctx);
        app_cl_close(&b);
    } else if (!rc) {
        rc = 1;
    }
    if (rc) return 1;
    int correct = 0, differ = 0;
    for (int i = 0; i < N_TEST; i++) {
        int best = 0;
        for (int k = 1; k < CLASSES; k++) best = after[i * CLASSES + k] > after[i * CLASSES + best] ? k : best;
        correct += best == (int)yt[i];
    }
    for (int i = 0; i < N_TEST * CLASSES; i++) differ += memcmp(&before[i], &after[i], sizeof(float)) != 0;
    printf("embed: test accuracy %d/%d; %d of %d logits differ after save and load\n", correct, N_TEST, differ,
           N_TEST * CLASSES);
    return differ == 0 && correct >= 90 ? 0 : 1;
}
