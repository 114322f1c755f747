/* test_errmsg.c - every public function that can fail on bad arguments names the problem in its message,
 * and the next successful call (the same function or a sibling) leaves the message empty (issue 8 item 2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* The call fails and the context's message contains `text`. */
#define FAILS(ctx, call, text)                                                                         \
    do {                                                                                               \
        int st_ = (call);                                                                              \
        TU_CHECK(st_ < 0, "%s returned %d, expected a failure", #call, st_);                           \
        TU_MSG(ctx, text);                                                                             \
    } while (0)
/* The call succeeds and leaves the context's message empty (each follows a FAILS, so it had one). */
#define CLEARS(ctx, call)                                                                              \
    do {                                                                                               \
        TU_OK(ctx, call);                                                                              \
        TU_CHECK(clt_errmsg(ctx)[0] == 0, "message '%s' left after %s succeeded", clt_errmsg(ctx), #call); \
    } while (0)
/* The same for an object with its own message (a model, a checkpoint). */
#define OBJ_FAILS(msg, call, text)                                                                     \
    do {                                                                                               \
        int st_ = (call);                                                                              \
        TU_CHECK(st_ < 0, "%s returned %d, expected a failure", #call, st_);                           \
        TU_CHECK(strstr((msg), (text)) != NULL, "%s: message '%s' does not say '%s'", #call, (msg), (text)); \
    } while (0)
#define OBJ_CLEARS(msg, call)                                                                          \
    do {                                                                                               \
        int st_ = (call);                                                                              \
        TU_CHECK(st_ == 0, "%s returned %d", #call, st_);                                              \
        TU_CHECK((msg)[0] == 0, "message '%s' left after %s succeeded", (msg), #call);                 \
    } while (0)

static void test_context(clt_context *ctx)
{
    /* A failed creation still hands back a context that holds the message. */
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = "no-such-device-xyz";
    cs.tune = CLT_TUNE_OFF;
    clt_context *bad = NULL;
    FAILS(bad, clt_context_create(&cs, &bad), "no-such-device-xyz");
    clt_device_info info;
    FAILS(bad, clt_context_device_info(bad, &info), "the context has no device");
    clt_context_destroy(bad);
    cl_context clc;
    cl_device_id cld;
    cl_command_queue clq;
    bad = NULL;
    if (TU_OK(ctx, clt_context_cl(ctx, &clc, &cld, &clq))) {
        FAILS(bad, clt_context_create_from_cl(clc, cld, NULL, &cs, &bad), "context, device and queue are required");
        clt_context_destroy(bad);
        bad = NULL;
        cs.device = NULL;
        TU_OK(bad, clt_context_create_from_cl(clc, cld, clq, &cs, &bad));
        TU_CHECK(clt_errmsg(bad)[0] == 0, "message '%s' after clt_context_create_from_cl succeeded", clt_errmsg(bad));
        clt_context_destroy(bad);
    }

    FAILS(ctx, clt_context_device_info(ctx, NULL), "info is NULL");
    CLEARS(ctx, clt_context_device_info(ctx, &info));
    double spent;
    FAILS(ctx, clt_context_tune_spent(ctx, NULL), "seconds is NULL");
    CLEARS(ctx, clt_context_tune_spent(ctx, &spent));
    FAILS(ctx, clt_context_tune_spent(ctx, NULL), "seconds is NULL");
    CLEARS(ctx, clt_context_cl(ctx, NULL, NULL, NULL));
    FAILS(ctx, clt_context_tune_spent(ctx, NULL), "seconds is NULL");
    CLEARS(ctx, clt_context_finish(ctx));
}

/* Graph building: each op function's own checks, then the same function (or a sibling) succeeding. */
static void test_building(clt_context *ctx)
{
    clt_graph *g = NULL;
    FAILS(ctx, clt_graph_create(ctx, NULL), "out is NULL");
    CLEARS(ctx, clt_graph_create(ctx, &g));
    if (!g) return;
    clt_tensor *x, *x4, *y, *p, *loss;
    int bad[1] = {0}, s2[2] = {2, 3}, s4[4] = {1, 1, 4, 4};
    FAILS(ctx, clt_input(g, "bad", 1, bad, &y), "bad");
    CLEARS(ctx, clt_input(g, "x", 2, s2, &x));
    FAILS(ctx, clt_graph_compile(g, NULL), "no operations");
    CLEARS(ctx, clt_input(g, "x4", 4, s4, &x4));

    FAILS(ctx, clt_relu(g, NULL, &y), "relu: input is NULL");
    CLEARS(ctx, clt_relu(g, x, &y));
    FAILS(ctx, clt_leaky_relu(g, x, 0.1f, NULL), "out is NULL");
    CLEARS(ctx, clt_leaky_relu(g, x, 0.1f, &y));
    FAILS(ctx, clt_sigmoid(g, NULL, &y), "sigmoid: input is NULL");
    CLEARS(ctx, clt_tanh(g, x, &y));
    FAILS(ctx, clt_gelu(g, NULL, &y), "gelu: input is NULL");
    CLEARS(ctx, clt_softmax(g, x, &y));
    FAILS(ctx, clt_softmax(g, NULL, &y), "clt_softmax");
    CLEARS(ctx, clt_sigmoid(g, x, &y));
    FAILS(ctx, clt_dropout(g, x, 1.5f, &y), "1.5");
    CLEARS(ctx, clt_dropout(g, x, 0.25f, &y));
    FAILS(ctx, clt_dense(g, x, 0, 1, CLT_INIT_DEFAULT, "fc", &y), "units");
    CLEARS(ctx, clt_dense(g, x, 4, 1, CLT_INIT_DEFAULT, "fc", &y)); // (2,4)
    FAILS(ctx, clt_bias_add(g, NULL, "b", &y), "clt_bias_add");
    CLEARS(ctx, clt_bias_add(g, x, "b", &y));
    FAILS(ctx, clt_add(g, x, y, NULL), "out is NULL");
    clt_tensor *z;
    CLEARS(ctx, clt_add(g, x, y, &z));
    FAILS(ctx, clt_reshape(g, x, 1, (int[]){5}, &y), "clt_reshape");
    CLEARS(ctx, clt_reshape(g, x, 1, (int[]){6}, &y));
    FAILS(ctx, clt_flatten(g, NULL, &y), "clt_flatten");
    CLEARS(ctx, clt_flatten(g, x4, &y));

    clt_conv2d_params cp;
    clt_conv2d_default_params(&cp, 2, 3);
    FAILS(ctx, clt_conv2d(g, x, &cp, "conv", &y), "clt_conv2d");
    CLEARS(ctx, clt_conv2d(g, x4, &cp, "conv", &y)); // (1,2,2,2)
    FAILS(ctx, clt_max_pool2d(g, x4, 0, 1, 0, &y), "clt_max_pool2d");
    CLEARS(ctx, clt_max_pool2d(g, x4, 2, 2, 0, &y));
    FAILS(ctx, clt_avg_pool2d(g, x, 2, 2, 0, &y), "clt_avg_pool2d");
    CLEARS(ctx, clt_avg_pool2d(g, x4, 2, 2, 0, &y));
    FAILS(ctx, clt_global_avg_pool(g, x, &y), "clt_global_avg_pool");
    CLEARS(ctx, clt_global_avg_pool(g, x4, &y));
    FAILS(ctx, clt_batch_norm(g, x4, 0.1f, -1.0f, "bn", &y), "clt_batch_norm");
    CLEARS(ctx, clt_batch_norm(g, x4, 0.1f, 1e-5f, "bn", &y));

    clt_tensor *labels, *t2;
    TU_OK(ctx, clt_input(g, "labels", 1, (int[]){2}, &labels));
    FAILS(ctx, clt_softmax_cross_entropy(g, x4, labels, 0.0f, &loss), "(N,K)");
    CLEARS(ctx, clt_softmax_cross_entropy(g, x, labels, 0.0f, &loss));
    TU_OK(ctx, clt_input(g, "t2", 2, s2, &t2));
    FAILS(ctx, clt_mse(g, x, labels, &loss), "clt_mse");
    CLEARS(ctx, clt_mse(g, x, t2, &loss));
    FAILS(ctx, clt_bce_with_logits(g, x, labels, &loss), "clt_bce_with_logits");
    CLEARS(ctx, clt_bce_with_logits(g, x, t2, &loss));

    p = clt_graph_state_tensor(g, 0, NULL);
    FAILS(ctx, clt_tensor_set_weight_decay(g, x, 1), "not a learned parameter");
    CLEARS(ctx, clt_tensor_set_weight_decay(g, p, 1));
    FAILS(ctx, clt_tensor_set_weight_decay(g, p, 2), "clt_tensor_set_weight_decay");
    int on;
    FAILS(ctx, clt_tensor_weight_decay(g, p, &on), "clt_tensor_weight_decay");
    FAILS(ctx, clt_graph_keep(g, NULL, 0), "clt_graph_keep");
    CLEARS(ctx, clt_graph_keep(g, y, 0));
    FAILS(ctx, clt_graph_memory(g, NULL, NULL), "not compiled");
    CLEARS(ctx, clt_graph_compile(g, NULL));
    FAILS(ctx, clt_tensor_weight_decay(g, p, NULL), "enabled is NULL");
    CLEARS(ctx, clt_tensor_weight_decay(g, p, &on));
    FAILS(ctx, clt_tensor_weight_decay(g, p, NULL), "enabled is NULL");
    CLEARS(ctx, clt_graph_memory(g, NULL, NULL));
    clt_graph_destroy(g);
}

/* Running a compiled training graph: x (2,3) -> dense 2 -> mse against t (2,2). */
static void test_running(clt_context *ctx)
{
    clt_graph *g = NULL, *ev = NULL;
    clt_tensor *x, *y, *t, *loss, *ex, *ey;
    if (!TU_OK(ctx, clt_graph_create(ctx, &g))) return;
    int s[2] = {2, 3}, st2[2] = {2, 2};
    TU_OK(ctx, clt_input(g, "x", 2, s, &x));
    TU_OK(ctx, clt_input(g, "t", 2, st2, &t));
    TU_OK(ctx, clt_dense(g, x, 2, 1, CLT_INIT_DEFAULT, "fc", &y));
    TU_OK(ctx, clt_mse(g, y, t, &loss));
    TU_OK(ctx, clt_graph_keep(g, y, 1));
    FAILS(ctx, clt_graph_forward(g, 0), "compile the graph first");
    CLEARS(ctx, clt_graph_compile(g, NULL));
    float xv[6] = {1, 2, 3, -1, 0, 1}, tv[4] = {0, 1, 1, 0}, buf[6];
    FAILS(ctx, clt_tensor_write(g, x, xv, 5), "clt_tensor_write");
    CLEARS(ctx, clt_tensor_write(g, x, xv, 6));
    FAILS(ctx, clt_tensor_write(g, t, NULL, 4), "data is NULL");
    CLEARS(ctx, clt_tensor_write(g, t, tv, 4));
    FAILS(ctx, clt_graph_backward(g, NULL), "clt_graph_backward");
    CLEARS(ctx, clt_graph_forward(g, 1));
    FAILS(ctx, clt_tensor_read(g, y, 0, NULL, 4), "data is NULL");
    CLEARS(ctx, clt_tensor_read(g, y, 0, buf, 4));
    FAILS(ctx, clt_graph_backward(g, y), "scalar");
    CLEARS(ctx, clt_graph_backward(g, loss));
    FAILS(ctx, clt_graph_backward_ex(g, y, 1.0f, 1), "clt_graph_backward_ex");
    CLEARS(ctx, clt_graph_backward_ex(g, loss, 2.0f, 0));
    FAILS(ctx, clt_graph_backward_ex(g, loss, 1.0f, 1), "accumulate_grads = 1");
    CLEARS(ctx, clt_graph_backward_ex(g, loss, 1.0f, 0));
    FAILS(ctx, clt_graph_backward_from(g, y, NULL, 4), "grad is NULL");
    CLEARS(ctx, clt_graph_backward_from(g, y, (float[]){1, 1, 1, 1}, 4));
    float norm;
    FAILS(ctx, clt_graph_clip_grad_norm(g, 0.0f, &norm), "clt_graph_clip_grad_norm");
    CLEARS(ctx, clt_graph_clip_grad_norm(g, 1.0f, &norm));
    FAILS(ctx, clt_graph_step(g, -1.0f), "learning rate");
    CLEARS(ctx, clt_graph_step(g, 0.01f));
    FAILS(ctx, clt_graph_step(g, -1.0f), "learning rate");
    CLEARS(ctx, clt_graph_zero_grad(g));
    clt_tensor *w = clt_graph_state_tensor(g, 0, NULL);
    size_t nw = clt_tensor_numel(w);
    float *wv = calloc(nw, sizeof *wv);
    FAILS(ctx, clt_tensor_read_slot(g, w, -1, wv, nw), "clt_tensor_read_slot");
    CLEARS(ctx, clt_tensor_read_slot(g, w, 0, wv, nw));
    FAILS(ctx, clt_tensor_write_slot(g, w, 0, wv, nw + 1), "clt_tensor_write_slot");
    CLEARS(ctx, clt_tensor_write_slot(g, w, 0, wv, nw));
    free(wv);
    uint64_t steps, passes;
    FAILS(ctx, clt_graph_profile(g, NULL, 0, NULL), "profile = 1");
    CLEARS(ctx, clt_graph_get_counters(g, &steps, &passes));
    FAILS(ctx, clt_graph_profile(g, NULL, 0, NULL), "profile = 1");
    CLEARS(ctx, clt_graph_set_counters(g, steps, passes));

    /* An inference graph refuses training calls. */
    if (TU_OK(ctx, clt_graph_create(ctx, &ev))) {
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        cs.training = 0;
        TU_OK(ctx, clt_input(ev, "x", 2, s, &ex));
        TU_OK(ctx, clt_relu(ev, ex, &ey));
        TU_OK(ctx, clt_graph_compile(ev, &cs));
        FAILS(ctx, clt_graph_forward(ev, 1), "compiled for inference");
        CLEARS(ctx, clt_graph_forward(ev, 0));
        FAILS(ctx, clt_graph_zero_grad(ev), "without training");
        CLEARS(ctx, clt_graph_forward(ev, 0));
        FAILS(ctx, clt_graph_model_tensors(ev, NULL, NULL), "no model was built");
        CLEARS(ctx, clt_graph_memory(ev, NULL, NULL));
        FAILS(ctx, clt_predict(ev, NULL, 0, NULL), "no model was built");
        CLEARS(ctx, clt_graph_memory(ev, NULL, NULL));
        FAILS(ctx, clt_checkpoint_apply(NULL, ev), "the checkpoint is NULL");
        CLEARS(ctx, clt_graph_memory(ev, NULL, NULL));
    }
    clt_graph_destroy(ev);
    clt_graph_destroy(g);
}

/* Models (their own message), model graphs, checkpoints (their own message) and inference. */
static void test_model_checkpoint(clt_context *ctx, const char *dir)
{
    clt_model *m = NULL, *bad = NULL;
    OBJ_FAILS(clt_model_errmsg(bad), clt_model_parse("dense\n", "bad.model", &bad), "bad.model:1");
    clt_model_destroy(bad);
    bad = NULL;
    OBJ_FAILS(clt_model_errmsg(bad), clt_model_preset("no-such-preset", &bad), "no-such-preset: not a preset");
    clt_model_destroy(bad);
    bad = NULL;
    OBJ_CLEARS(clt_model_errmsg(bad), clt_model_preset("mlp", &bad));
    clt_model_destroy(bad);
    bad = NULL;
    OBJ_FAILS(clt_model_errmsg(bad), clt_model_load(NULL, &bad), "name_or_path is NULL");
    clt_model_destroy(bad);
    bad = NULL;
    OBJ_CLEARS(clt_model_errmsg(bad), clt_model_load("mlp", &bad));
    clt_model_destroy(bad);
    if (clt_model_parse("flatten\ndense classes\n", "tiny.model", &m) != CLT_OK) {
        TU_CHECK(0, "cannot parse the test model: %s", clt_model_errmsg(m));
        clt_model_destroy(m);
        return;
    }
    OBJ_FAILS(clt_model_errmsg(m), clt_model_check(m, 0, 2, 2, 3, NULL, NULL, 0), "bad input shape");
    OBJ_CLEARS(clt_model_errmsg(m), clt_model_check(m, 1, 2, 2, 3, NULL, NULL, 0));
    clt_model_train_defaults d;
    OBJ_FAILS(clt_model_errmsg(m), clt_model_get_train_defaults(m, NULL), "d is NULL");
    OBJ_CLEARS(clt_model_errmsg(m), clt_model_get_train_defaults(m, &d));

    clt_graph *g = NULL, *g2 = NULL;
    clt_tensor *x, *logits, *in2, *lg2;
    int s[4] = {2, 1, 2, 2};
    if (!TU_OK(ctx, clt_graph_create(ctx, &g))) goto out;
    TU_OK(ctx, clt_input(g, "x", 4, s, &x));
    FAILS(ctx, clt_model_build(g, NULL, x, 3, &logits), "the model is NULL");
    CLEARS(ctx, clt_model_build(g, m, x, 3, &logits));
    FAILS(ctx, clt_model_build(g, m, x, 3, NULL), "logits is NULL");
    CLEARS(ctx, clt_graph_keep(g, logits, 0));
    TU_OK(ctx, clt_graph_compile(g, NULL));
    FAILS(ctx, clt_tensor_write(g, x, NULL, 8), "data is NULL");
    CLEARS(ctx, clt_graph_model_tensors(g, &in2, &lg2));
    float xv[12] = {1, 2, 3, 4, -1, -2, -3, -4, 0, 1, 0, 1}, lv[9];
    FAILS(ctx, clt_predict(g, NULL, 3, lv), "x is NULL");
    CLEARS(ctx, clt_predict(g, xv, 3, lv)); /* 3 images on a batch of 2: one padded batch */

    char path[512], missing[512];
    snprintf(path, sizeof path, "%s/tiny.ckpt", dir);
    snprintf(missing, sizeof missing, "%s/missing.ckpt", dir);
    FAILS(ctx, clt_graph_save(g, NULL, NULL, 0), "path is NULL");
    CLEARS(ctx, clt_graph_save(g, path, "meta", 4));

    clt_checkpoint *ck = NULL, *nock = NULL;
    OBJ_FAILS(clt_checkpoint_errmsg(nock), clt_checkpoint_open(missing, &nock), "missing.ckpt");
    FAILS(ctx, clt_checkpoint_apply(nock, g), "failed to open");
    FAILS(ctx, clt_checkpoint_build(nock, ctx, NULL, &g2), "failed to open");
    clt_checkpoint_close(nock);
    OBJ_CLEARS(clt_checkpoint_errmsg(ck), clt_checkpoint_open(path, &ck));
    if (ck) {
        FAILS(ctx, clt_checkpoint_apply(NULL, g), "the checkpoint is NULL");
        CLEARS(ctx, clt_checkpoint_apply(ck, g));
        clt_load_settings ls;
        clt_load_default_settings(&ls);
        ls.batch = 0;
        FAILS(ctx, clt_checkpoint_build(ck, ctx, &ls, &g2), "batch 0");
        ls.batch = 3;
        CLEARS(ctx, clt_checkpoint_build(ck, ctx, &ls, &g2));
        clt_graph_destroy(g2);
        g2 = NULL;
    }
    clt_checkpoint_close(ck);
    FAILS(ctx, clt_graph_load(ctx, missing, NULL, &g2), "missing.ckpt");
    CLEARS(ctx, clt_graph_load(ctx, path, NULL, &g2));
    clt_graph_destroy(g2);
    unlink(path);

    /* The host-only writer's message goes to its own buffer, by the same rule. */
    char msg[256];
    OBJ_FAILS(msg, clt_file_write_atomic(NULL, "a", 1, msg, sizeof msg), "path is NULL");
    OBJ_CLEARS(msg, clt_file_write_atomic(path, "a", 1, msg, sizeof msg));
    unlink(path);
out:
    clt_graph_destroy(g);
    clt_model_destroy(m);
}

static int count_entry(void *ud, const clt_tune_entry *e)
{
    (void)e;
    ++*(int *)ud;
    return 0;
}

/* GEMM tuning and benchmarks: messages in the context (of the problem). */
static void test_bench(clt_context *ctx)
{
    clt_gemm_shape zero = {.m = 0, .n = 2, .k = 2}, sh = {.m = 2, .n = 3, .k = 4};
    clt_gemm_choice ch;
    FAILS(ctx, clt_gemm_tune(ctx, &zero, &ch), "clt_gemm_tune");
    CLEARS(ctx, clt_gemm_tune(ctx, &sh, &ch));
    int n = 0;
    FAILS(ctx, clt_tune_list(ctx, NULL, NULL), "fn is NULL");
    CLEARS(ctx, clt_tune_list(ctx, count_entry, &n));
    clt_gemm_bench *b = NULL;
    FAILS(ctx, clt_gemm_bench_create(ctx, &zero, 1, &b), "clt_gemm_bench_create");
    CLEARS(ctx, clt_gemm_bench_create(ctx, &sh, 1, &b));
    if (!b) return;
    const float *a, *bm;
    float c[6], ref[6];
    FAILS(ctx, clt_gemm_bench_output(b, c, 6), "no C yet");
    CLEARS(ctx, clt_gemm_bench_inputs(b, &a, &bm));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            double acc = 0;
            for (int k = 0; k < 4; k++) acc += (double)a[i * 4 + k] * bm[k * 3 + j];
            ref[i * 3 + j] = (float)acc;
        }
    FAILS(ctx, clt_gemm_bench_set_reference(b, ref, 5), "count is 5");
    CLEARS(ctx, clt_gemm_bench_set_reference(b, ref, 6));
    clt_gemm_bench_result r;
    FAILS(ctx, clt_gemm_bench_run(b, CLT_GEMM_VARIANT_DEFAULT, 0, &r), "reps must be");
    CLEARS(ctx, clt_gemm_bench_run(b, CLT_GEMM_VARIANT_DEFAULT, 1, &r));
    TU_CHECK(r.checked && r.max_abs_err < 1e-5, "GEMM result off by %g", r.max_abs_err);
    FAILS(ctx, clt_gemm_bench_output(b, c, 5), "count is 5");
    CLEARS(ctx, clt_gemm_bench_output(b, c, 6));
    clt_gemm_bench_destroy(b);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    char dir[] = "/tmp/test_errmsg.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_context(ctx);
    test_building(ctx);
    test_running(ctx);
    test_model_checkpoint(ctx, dir);
    test_bench(ctx);
    rmdir(dir);
    clt_context_destroy(ctx);
    return tu_finish("errmsg");
}
