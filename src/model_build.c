/* model_build.c - adds a parsed model description to a graph (clt_model_build): the walk of model.c with a
 * graph, residual shortcuts, and what the graph records about its model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int clt__model_residual(clt_graph *g, int project, const char *name, const clt__shape *in, const clt__shape *out,
                        clt_tensor *block_in, clt_tensor *block_out, clt_tensor **y)
{
    clt_tensor *shortcut = block_in;
    if (project) {
        char pname[64];
        snprintf(pname, sizeof pname, "%s.proj", name);
        if (out->flat) {
            CLT_TRY(clt_dense(g, shortcut, out->c, 1, CLT_INIT_DEFAULT, pname, &shortcut));
        } else {
            clt_conv2d_params p;
            clt_conv2d_default_params(&p, out->c, 1);
            p.stride_h = p.stride_w = (in->h + out->h - 1) / out->h;
            CLT_TRY(clt_conv2d(g, shortcut, &p, pname, &shortcut));
        }
    }
    return clt_add(g, block_out, shortcut, y);
}

/* Records on g what a checkpoint needs to describe the graph (see clt__graph_model). */
static int record_model(clt_graph *g, const clt_model *m, clt_tensor *input, int classes, clt_tensor *logits)
{
    char *text = clt__strdup(m->text);
    if (!text) return clt__graph_poison(g, clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory"));
    free(g->model_text);
    g->model_text = text;
    for (int i = 0; i < 3; i++) g->model_in[i] = input->shape[i + 1];
    g->model_classes = classes;
    g->model_input = input;
    g->model_output = logits;
    g->model_count++;
    return CLT_OK;
}

int clt_model_build(clt_graph *g, const clt_model *m, clt_tensor *input, int classes, clt_tensor **logits)
{
    if (!logits) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_model_build: logits is NULL") : CLT_ERR_INVALID;
    *logits = NULL;
    CLT_TRY(clt__check_building(g, "clt_model_build"));
    if (!m) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_model_build: the model is NULL");
    CLT_TRY(clt__check_tensor(g, input, "clt_model_build", "input"));
    if (input->ndim != 4) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_model_build: the input '%s' %s must be (N,C,H,W)", input->name,
                        clt__shape_str(input, b, sizeof b));
    }
    char err[CLT__MODEL_ERR_LEN] = "";
    int c = input->shape[1], h = input->shape[2], w = input->shape[3];
    /* The whole description first, so that a shape error leaves the graph as it was. */
    int st = clt__model_walk(m, c, h, w, classes, NULL, NULL, NULL, NULL, NULL, err);
    if (st) return clt__err(g->ctx, st, "%s", err);
    clt_tensor *out = NULL;
    st = clt__model_walk(m, c, h, w, classes, g, input, &out, NULL, NULL, err);
    if (st) return clt__graph_poison(g, clt__err(g->ctx, st, "%s", err));
    CLT_TRY(record_model(g, m, input, classes, out));
    *logits = out;
    return CLT_OK;
}

int clt__graph_model(const clt_graph *g, const char **text, int in[3], int *classes, clt_tensor **input,
                     clt_tensor **output)
{
    if (!g || !g->model_text) return CLT_ERR_STATE;
    if (text) *text = g->model_text;
    if (in)
        for (int i = 0; i < 3; i++) in[i] = g->model_in[i];
    if (classes) *classes = g->model_classes;
    if (input) *input = g->model_input;
    if (output) *output = g->model_output;
    return CLT_OK;
}
