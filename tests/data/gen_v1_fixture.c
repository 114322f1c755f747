/* gen_v1_fixture.c - how tests/data/v1_mlp.ckpt was made: cltrain 0.1's own writer (version 1), not built by meson.
 *
 * Build against the version-1 writer of main (before checkpoints moved into the library):
 *   git show f4c77b5:tools/checkpoint.c > checkpoint.c; git show f4c77b5:tools/tool.h > tool.h
 *   git show f4c77b5:tools/util.c > util.c
 *   cc -I. -Iinclude gen_v1_fixture.c checkpoint.c util.c -Lbuild -lcltrain -lz -lOpenCL -o gen
 *   LD_LIBRARY_PATH=build ./gen tests/data/v1_mlp.ckpt
 * The values are a formula of (tensor, copy, index) so that tests/test_checkpoint.c can check every one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

/* What cltrain 0.1's train.c appended to the model text (cli_meta_append). */
static const char *BLOCK = "# --- cltrain data settings (written by cltrain; do not edit) ---\n# input 1 3 2\n"
                           "# classes 3\n# mean 0.5\n# std 0.25\n# label_smoothing 0\n# class 0 a\n# class 1 b\n"
                           "# class 2 c\n";

float fixture_value(int tensor, int copy, size_t k) { return (float)(tensor + 1) * 0.125f + (float)copy * 0.5f + (float)k * 0.0078125f; }

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    clt_context *ctx = NULL;
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.tune = CLT_TUNE_OFF;
    if (clt_context_create(&s, &ctx) < 0) return 1;
    clt_model *m = NULL;
    if (clt_model_parse("flatten\ndense 4\nbatchnorm\nrelu\ndense classes\n", "v1", &m) < 0) return 1;
    clt_graph *g = NULL;
    clt_tensor *x, *logits;
    int shape[4] = {2, 1, 3, 2};
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_SGD);
    cs.optimizer.momentum = 0.9f;
    cs.seed = 11;
    if (clt_graph_create(ctx, &g) < 0 || clt_input(g, "x", 4, shape, &x) < 0 ||
        clt_model_build(g, m, x, 3, &logits) < 0 || clt_graph_compile(g, &cs) < 0) {
        fprintf(stderr, "%s\n", clt_errmsg(ctx));
        return 1;
    }
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        int tr;
        clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
        size_t n = clt_tensor_numel(t);
        float *v = malloc(n * sizeof *v);
        for (int c = 0; c < (tr ? 3 : 1); c++) {
            for (size_t k = 0; k < n; k++) v[k] = fixture_value(i, c, k);
            if (c == 0) clt_tensor_write(g, t, v, n);
            else clt_tensor_write_slot(g, t, c - 1, v, n);
        }
        free(v);
    }
    clt_graph_set_counters(g, 7, 9);
    tool_ckpt_meta *meta = calloc(1, sizeof *meta);
    snprintf(meta->dataset, sizeof meta->dataset, "cifar10");
    snprintf(meta->model_text_origin, sizeof meta->model_text_origin, "v1");
    meta->epochs_done = 1;
    meta->epochs_total = 2;
    meta->rng_state = 0x123456789abcdefull;
    meta->opt = cs.optimizer;
    meta->batch = 2;
    meta->schedule = 0;
    meta->lr = cs.optimizer.lr;
    meta->momentum = 0.9f;
    meta->limit = 0;
    meta->seed = 11;
    meta->nhistory = 1;
    meta->history[0] = (tool_epoch_metrics){1.5, 0.25, 1.25, 0.5, 2.0, 100.0};
    char text[4096];
    snprintf(text, sizeof text, "%s%s", clt_model_text(m), BLOCK);
    char err[TOOL_ERR_LEN];
    if (tool_checkpoint_save(argv[1], g, meta, text, err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    return 0;
}
