/* inference.c - graphs rebuilt from checkpoints, and batched prediction over any number of images. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void clt_load_default_settings(clt_load_settings *s)
{
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->batch = 64;
    s->training = 0;
}

int clt_checkpoint_build(const clt_checkpoint *ck, clt_context *ctx, const clt_load_settings *s, clt_graph **out)
{
    if (!out) return ctx ? clt__err(ctx, CLT_ERR_INVALID, "clt_checkpoint_build: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    if (!ctx) return CLT_ERR_INVALID;
    if (!ck) return clt__err(ctx, CLT_ERR_INVALID, "clt_checkpoint_build: the checkpoint is NULL");
    clt_load_settings def;
    clt_load_default_settings(&def);
    if (!s) s = &def;
    if (s->batch < 1) return clt__err(ctx, CLT_ERR_INVALID, "clt_checkpoint_build: batch %d (must be >= 1)", s->batch);
    clt_compile_settings cs;
    int c, h, w, classes;
    if (clt_checkpoint_compile_settings(ck, &cs) < 0 || clt_checkpoint_input(ck, &c, &h, &w, &classes) < 0)
        return clt__err(ctx, CLT_ERR_STATE, "clt_checkpoint_build: the checkpoint failed to open: %s",
                        clt_checkpoint_errmsg(ck));
    const char *text = clt_checkpoint_model_text(ck);
    if (!text[0])
        return clt__err(ctx, CLT_ERR_FORMAT, "the checkpoint holds no network description (its graph was not built "
                        "with clt_model_build): build the graph yourself and use clt_checkpoint_apply");
    clt_model *m = NULL;
    int st = clt_model_parse(text, "checkpoint", &m);
    if (st) {
        st = clt__err(ctx, st, "the network stored in the checkpoint: %s", clt_model_errmsg(m));
        clt_model_destroy(m);
        return st;
    }
    clt_graph *g = NULL;
    clt_tensor *x, *logits;
    int shape[4] = {s->batch, c, h, w};
    cs.training = s->training ? 1 : 0;
    st = clt_graph_create(ctx, &g);
    if (!st) st = clt_input(g, "x", 4, shape, &x);
    if (!st) st = clt_model_build(g, m, x, classes, &logits);
    if (!st) st = clt_graph_keep(g, logits, 0);
    if (!st) st = clt_graph_compile(g, &cs);
    if (!st) st = clt_checkpoint_apply(ck, g);
    clt_model_destroy(m);
    if (st) {
        clt_graph_destroy(g);
        return st;
    }
    *out = g;
    return CLT_OK;
}

int clt_graph_load(clt_context *ctx, const char *path, const clt_load_settings *s, clt_graph **out)
{
    if (out) *out = NULL;
    if (!ctx) return CLT_ERR_INVALID;
    clt_checkpoint *ck = NULL;
    int st = clt_checkpoint_open(path, &ck);
    if (st) st = clt__err(ctx, st, "%s", ck ? clt_checkpoint_errmsg(ck) : "out of host memory");
    else st = clt_checkpoint_build(ck, ctx, s, out);
    clt_checkpoint_close(ck);
    return st;
}

int clt_graph_model_tensors(const clt_graph *g, clt_tensor **input, clt_tensor **logits)
{
    if (input) *input = NULL;
    if (logits) *logits = NULL;
    if (!g) return CLT_ERR_INVALID;
    if (clt__graph_model(g, NULL, NULL, NULL, input, logits) < 0)
        return clt__err(g->ctx, CLT_ERR_STATE, "no model was built on this graph (clt_model_build)");
    return CLT_OK;
}

int clt_predict(clt_graph *g, const float *x, size_t n, float *logits)
{
    if (!g) return CLT_ERR_INVALID;
    clt_tensor *in, *out;
    CLT_TRY(clt_graph_model_tensors(g, &in, &out));
    if ((!x || !logits) && n)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_predict: %s is NULL", x ? "logits" : "x");
    if (!g->compiled) return clt__err(g->ctx, CLT_ERR_STATE, "clt_predict: compile the graph first");
    size_t batch = (size_t)in->shape[0], img = in->numel / batch, k = out->numel / batch;
    float *pad = NULL, *padout = NULL;
    int st = CLT_OK;
    for (size_t at = 0; at < n && !st; at += batch) {
        size_t cnt = n - at < batch ? n - at : batch;
        const float *src = x + at * img;
        float *dst = logits + at * k;
        if (cnt < batch) {
            /* The last partial batch: zero rows after the images, their outputs dropped. Exact, because an
             * evaluation pass treats every row on its own. */
            pad = calloc(batch * img, sizeof *pad);
            padout = malloc(batch * k * sizeof *padout);
            if (!pad || !padout) {
                st = clt__err(g->ctx, CLT_ERR_NOMEM, "clt_predict: out of host memory");
                break;
            }
            memcpy(pad, src, cnt * img * sizeof *pad);
            src = pad;
            dst = padout;
        }
        st = clt_tensor_write(g, in, src, batch * img);
        if (!st) st = clt_graph_forward(g, 0);
        if (!st) st = clt_tensor_read(g, out, 0, dst, batch * k);
        if (!st && dst == padout) memcpy(logits + at * k, padout, cnt * k * sizeof *padout);
    }
    free(pad);
    free(padout);
    return st;
}
