/* model_build.c - adds a parsed model description to a graph (clt_model_build): the walk of model.c with a
 * graph, residual shortcuts, and what the graph records about its model. */
#include <math.h>
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
    if (m->text && m->lm.layers > 0)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_model_build: %s is a language model (gpt line): build it with "
                        "clt_model_build_lm", m->origin);
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

/* ------------------------------------------------------------------------------------- language models */

/* clt_linear named `name` with its weight drawn from N(0, std). */
static int lm_linear(clt_graph *g, clt_tensor *x, int units, int bias, float std, const char *name, clt_tensor **y)
{
    char pn[CLT_NAME_LEN + 16];
    CLT_TRY(clt_linear(g, x, units, bias, CLT_INIT_DEFAULT, name, y));
    snprintf(pn, sizeof pn, "%s.weight", name);
    return clt_param_init_normal(g, clt_graph_param(g, pn), std);
}

static int lm_dropout(clt_graph *g, float p, clt_tensor **x)
{
    return p > 0 ? clt_dropout(g, *x, p, x) : CLT_OK;
}

/* One pre-norm block: x += c_proj(attn(c_attn(ln_1(x)))); x += c_proj(gelu(c_fc(ln_2(x)))). */
static int lm_block(clt_graph *g, const clt_model_lm_info *c, int l, clt_tensor **x)
{
    char nm[64];
    int C = c->dim;
    float std = 0.02f, proj_std = (float)(0.02 / sqrt(2.0 * c->layers));
    clt_tensor *h;
#define NM(suffix) (snprintf(nm, sizeof nm, "h%d.%s", l, suffix), nm)
    CLT_TRY(clt_layer_norm(g, *x, 1e-5f, NM("ln_1"), &h));
    CLT_TRY(lm_linear(g, h, 3 * C, c->bias, std, NM("attn.c_attn"), &h));
    CLT_TRY(clt_causal_attention(g, h, c->heads, &h));
    CLT_TRY(lm_linear(g, h, C, c->bias, proj_std, NM("attn.c_proj"), &h));
    CLT_TRY(lm_dropout(g, c->dropout, &h));
    CLT_TRY(clt_add(g, *x, h, x));
    CLT_TRY(clt_layer_norm(g, *x, 1e-5f, NM("ln_2"), &h));
    CLT_TRY(lm_linear(g, h, c->mlp * C, c->bias, std, NM("mlp.c_fc"), &h));
    CLT_TRY(clt_gelu_tanh(g, h, &h));
    CLT_TRY(lm_linear(g, h, C, c->bias, proj_std, NM("mlp.c_proj"), &h));
    CLT_TRY(lm_dropout(g, c->dropout, &h));
#undef NM
    return clt_add(g, *x, h, x);
}

static int lm_network(clt_graph *g, const clt_model_lm_info *c, clt_tensor *ids, int vocab, clt_tensor **logits)
{
    clt_tensor *x, *wte;
    CLT_TRY(clt_embedding(g, ids, vocab, c->dim, "wte", &x));
    wte = clt_graph_param(g, "wte.weight");
    CLT_TRY(clt_param_init_normal(g, wte, 0.02f));
    CLT_TRY(clt_pos_embedding(g, x, c->block, "wpe", &x));
    CLT_TRY(clt_param_init_normal(g, clt_graph_param(g, "wpe.weight"), 0.02f));
    CLT_TRY(lm_dropout(g, c->dropout, &x));
    for (int l = 0; l < c->layers; l++) CLT_TRY(lm_block(g, c, l, &x));
    CLT_TRY(clt_layer_norm(g, x, 1e-5f, "ln_f", &x));
    if (c->tied) CLT_TRY(clt_matmul(g, x, wte, 0, 1, &x));
    else CLT_TRY(lm_linear(g, x, vocab, 0, 0.02f, "lm_head", &x));
    int flat[2] = {ids->shape[0] * ids->shape[1], vocab};
    return clt_reshape(g, x, 2, flat, logits);
}

int clt_model_build_lm(clt_graph *g, const clt_model *m, clt_tensor *ids, int vocab, clt_tensor **logits)
{
    if (!logits) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_model_build_lm: logits is NULL") : CLT_ERR_INVALID;
    *logits = NULL;
    CLT_TRY(clt__check_building(g, "clt_model_build_lm"));
    if (!m || !m->text) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_model_build_lm: the model is NULL or unparsed");
    if (m->lm.layers <= 0)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_model_build_lm: %s has no gpt line (not a language model)",
                        m->origin);
    CLT_TRY(clt__check_tensor(g, ids, "clt_model_build_lm", "ids"));
    char b[64];
    if (ids->ndim != 2 || ids->shape[1] > m->lm.block)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_model_build_lm: ids '%s' %s must be (B, T) with T <= block = %d",
                        ids->name, clt__shape_str(ids, b, sizeof b), m->lm.block);
    if (vocab <= 0 || vocab > (1 << 24))
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_model_build_lm: vocabulary %d (1 to 2^24)", vocab);
    /* Before any op is added: what would fail on the arguments changes nothing. */
    clt_tensor *out = NULL;
    int st = lm_network(g, &m->lm, ids, vocab, &out);
    if (st < 0) return clt__graph_poison(g, st);
    char *text = clt__strdup(m->text);
    if (!text) return clt__graph_poison(g, clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory"));
    free(g->model_text);
    g->model_text = text;
    g->model_in[0] = 1, g->model_in[1] = 1, g->model_in[2] = ids->shape[1];
    g->model_classes = vocab;
    g->model_input = ids;
    g->model_output = out;
    g->model_count++;
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
