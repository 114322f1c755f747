/* test_prune.c - clt_graph_prune: the requested sparsity per layer and globally, the smallest magnitudes go, pruned
 * weights stay exactly zero through SGD (momentum, weight decay) and Adam steps, masks come back from a checkpoint's
 * zeros, and without the mask the same steps would revive them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static const char *MODEL = "conv 4 3 pad=same\nbatchnorm\nrelu\nflatten\ndense 6\nrelu\ndense classes\n";

typedef struct net {
    clt_graph *g;
    clt_model *m;
    clt_tensor *x, *y, *loss;
} net;

static int make(clt_context *ctx, net *n, int opt)
{
    memset(n, 0, sizeof *n);
    int xs[4] = {4, 1, 6, 6}, ys[1] = {4};
    clt_tensor *logits;
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, opt);
    cs.optimizer.momentum = 0.9f;
    cs.optimizer.weight_decay = 1e-3f;
    cs.seed = 3;
    return clt_model_parse(MODEL, "net", &n->m) == 0 && TU_OK(ctx, clt_graph_create(ctx, &n->g)) &&
           TU_OK(ctx, clt_input(n->g, "x", 4, xs, &n->x)) && TU_OK(ctx, clt_model_build(n->g, n->m, n->x, 3, &logits)) &&
           TU_OK(ctx, clt_input(n->g, "labels", 1, ys, &n->y)) &&
           TU_OK(ctx, clt_softmax_cross_entropy(n->g, logits, n->y, 0.0f, &n->loss)) &&
           TU_OK(ctx, clt_graph_compile(n->g, &cs));
}

static void drop(net *n)
{
    clt_graph_destroy(n->g);
    clt_model_destroy(n->m);
}

static int steps(clt_context *ctx, net *n, int k, float lr)
{
    float x[4 * 36], y[4];
    for (int s = 0; s < k; s++) {
        tu_rng r = {(uint64_t)s * 13 + 5};
        tu_fill_uniform(&r, x, 4 * 36, -1, 1);
        for (int i = 0; i < 4; i++) y[i] = (float)((i + s) % 3);
        if (!TU_OK(ctx, clt_tensor_write(n->g, n->x, x, 4 * 36)) || !TU_OK(ctx, clt_tensor_write(n->g, n->y, y, 4)) ||
            !TU_OK(ctx, clt_graph_forward(n->g, 1)) || !TU_OK(ctx, clt_graph_backward(n->g, n->loss)) ||
            !TU_OK(ctx, clt_graph_step(n->g, lr)))
            return 0;
    }
    return 1;
}

/* The prunable weights of n, concatenated (their sizes in len[]). */
static float *weights(clt_context *ctx, net *n, size_t *len, size_t *total)
{
    int c = clt_graph_prune_count(n->g);
    *total = 0;
    clt_tensor *t[8];
    int k = 0;
    for (int l = 0; l < c && l < 8; l++) {
        clt_prune_layer pl;
        TU_OK(ctx, clt_graph_prune_layer(n->g, l, &pl));
        for (int i = 0; i < clt_graph_state_count(n->g); i++) {
            clt_tensor *s = clt_graph_state_tensor(n->g, i, NULL);
            if (!strcmp(clt_tensor_name(s), pl.name) && strstr(pl.name, ".weight")) t[k++] = s;
        }
    }
    TU_CHECK(k == c && c == 3, "3 prunable weights (conv, two dense), each a state tensor: %d, %d", c, k);
    for (int i = 0; i < k; i++) *total += (len[i] = clt_tensor_numel(t[i]));
    float *v = malloc(*total * sizeof *v);
    size_t at = 0;
    for (int i = 0; i < k; i++) {
        TU_OK(ctx, clt_tensor_read(n->g, t[i], 0, v + at, len[i]));
        at += len[i];
    }
    return v;
}

static size_t zeros(const float *v, size_t n)
{
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += v[i] == 0.0f;
    return z;
}

/* Every zero of `before` is still zero in `after`; how many of the other values changed. */
static int zeros_kept(const float *before, const float *after, size_t n, size_t *changed)
{
    int ok = 1;
    *changed = 0;
    for (size_t i = 0; i < n; i++) {
        if (before[i] == 0.0f && after[i] != 0.0f) ok = 0;
        if (before[i] != 0.0f && after[i] != before[i]) (*changed)++;
    }
    return ok;
}

static void test_per_layer(clt_context *ctx, int opt)
{
    net n;
    if (!make(ctx, &n, opt) || !steps(ctx, &n, 3, 0.05f)) return;
    size_t len[3], total;
    float *w0 = weights(ctx, &n, len, &total);
    TU_CHECK(zeros(w0, total) == 0, "no zeros before pruning");
    TU_OK(ctx, clt_graph_prune(n.g, 0.5f, CLT_PRUNE_PER_LAYER));
    float *w1 = weights(ctx, &n, len, &total);
    size_t at = 0;
    for (int l = 0; l < 3; l++) {
        clt_prune_layer pl;
        TU_OK(ctx, clt_graph_prune_layer(n.g, l, &pl));
        size_t z = zeros(w1 + at, len[l]);
        TU_CHECK(z == len[l] / 2 && pl.zeros == z && pl.numel == len[l], "layer %d (%s): %zu of %zu zero, want %zu", l,
                 pl.name, z, len[l], len[l] / 2);
        /* The smallest magnitudes went: every pruned |w| <= every kept |w|; kept values unchanged. */
        float maxp = 0, mink = INFINITY;
        int same = 1;
        for (size_t i = 0; i < len[l]; i++) {
            if (w1[at + i] == 0.0f) maxp = fmaxf(maxp, fabsf(w0[at + i]));
            else mink = fminf(mink, fabsf(w0[at + i])), same &= w1[at + i] == w0[at + i];
        }
        TU_CHECK(maxp <= mink && same, "layer %d: pruned max %g <= kept min %g, kept values unchanged", l, maxp, mink);
        at += len[l];
    }
    if (!steps(ctx, &n, 10, 0.05f)) return;
    float *w2 = weights(ctx, &n, len, &total);
    size_t changed;
    TU_CHECK(zeros_kept(w1, w2, total, &changed) && changed > total / 4,
             "%s: pruned weights stay zero through 10 steps (%zu of the others changed)",
             opt == CLT_OPT_SGD ? "sgd" : "adam", changed);
    free(w0);
    free(w1);
    free(w2);
    drop(&n);
}

static void test_global(clt_context *ctx)
{
    net n;
    if (!make(ctx, &n, CLT_OPT_SGD) || !steps(ctx, &n, 2, 0.05f)) return;
    size_t len[3], total;
    float *w0 = weights(ctx, &n, len, &total);
    TU_OK(ctx, clt_graph_prune(n.g, 0.7f, CLT_PRUNE_GLOBAL));
    float *w1 = weights(ctx, &n, len, &total);
    size_t want = (size_t)floor(0.7 * (double)total);
    TU_CHECK(zeros(w1, total) == want, "global: %zu of %zu zero, want %zu", zeros(w1, total), total, want);
    float maxp = 0, mink = INFINITY;
    for (size_t i = 0; i < total; i++)
        if (w1[i] == 0.0f) maxp = fmaxf(maxp, fabsf(w0[i]));
        else mink = fminf(mink, fabsf(w0[i]));
    TU_CHECK(maxp <= mink, "global: one threshold over all layers (%g <= %g)", maxp, mink);
    size_t z0 = zeros(w1, len[0]), z2 = zeros(w1 + len[0] + len[1], len[2]);
    TU_CHECK(z0 * len[2] != z2 * len[0], "global sparsity differs between layers (%zu/%zu, %zu/%zu)", z0, len[0], z2,
             len[2]);
    /* Errors. */
    TU_CHECK(clt_graph_prune(n.g, 1.0f, CLT_PRUNE_GLOBAL) == CLT_ERR_INVALID &&
             strstr(clt_errmsg(ctx), "sparsity 1 is not in [0, 1)"), "sparsity 1 refused: %s", clt_errmsg(ctx));
    TU_CHECK(clt_graph_prune(n.g, 0.5f, 7) == CLT_ERR_INVALID && strstr(clt_errmsg(ctx), "unknown scope 7"),
             "bad scope refused: %s", clt_errmsg(ctx));
    free(w0);
    free(w1);
    drop(&n);
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    int xs[2] = {2, 3};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    TU_OK(ctx, clt_dense(g, x, 2, 1, 0, "d", &y));
    TU_CHECK(clt_graph_prune(g, 0.5f, 0) == CLT_ERR_STATE && strstr(clt_errmsg(ctx), "compile the graph first"),
             "before compile: %s", clt_errmsg(ctx));
    clt_graph_destroy(g);
}

/* A pruned checkpoint: loaded into a new graph, its zeros come back as masks with clt_graph_prune(g, 0, ...);
 * without them the same steps revive the zeros (the mask is what keeps them). */
static void test_checkpoint(clt_context *ctx)
{
    net a, b, c;
    if (!make(ctx, &a, CLT_OPT_SGD) || !steps(ctx, &a, 2, 0.05f)) return;
    TU_OK(ctx, clt_graph_prune(a.g, 0.6f, CLT_PRUNE_PER_LAYER));
    char path[256];
    snprintf(path, sizeof path, "/tmp/cltrain_test_prune_%ld.ckpt", (long)getpid());
    TU_OK(ctx, clt_graph_save(a.g, path, NULL, 0));
    clt_checkpoint *ck = NULL;
    TU_OK(ctx, clt_checkpoint_open(path, &ck) ? CLT_ERR_FORMAT : 0);
    if (!make(ctx, &b, CLT_OPT_SGD) || !make(ctx, &c, CLT_OPT_SGD)) return;
    TU_OK(ctx, clt_checkpoint_apply(ck, b.g));
    TU_OK(ctx, clt_checkpoint_apply(ck, c.g));
    clt_checkpoint_close(ck);
    unlink(path);
    size_t len[3], total, changed;
    float *w0 = weights(ctx, &b, len, &total);
    TU_OK(ctx, clt_graph_prune(b.g, 0.0f, CLT_PRUNE_PER_LAYER));
    float *w1 = weights(ctx, &b, len, &total);
    TU_CHECK(!memcmp(w0, w1, total * sizeof *w0) && zeros(w1, total) > total / 2,
             "prune(0) on a loaded pruned graph changes nothing (%zu zeros)", zeros(w1, total));
    if (!steps(ctx, &b, 5, 0.05f) || !steps(ctx, &c, 5, 0.05f)) return;
    float *wb = weights(ctx, &b, len, &total), *wc = weights(ctx, &c, len, &total);
    TU_CHECK(zeros_kept(w0, wb, total, &changed), "masks from the checkpoint's zeros keep them zero");
    size_t revived = 0;
    for (size_t i = 0; i < total; i++) revived += w0[i] == 0.0f && wc[i] != 0.0f;
    TU_CHECK(revived > total / 4, "without a mask the same steps revive %zu pruned weights", revived);
    free(w0);
    free(w1);
    free(wb);
    free(wc);
    drop(&a);
    drop(&b);
    drop(&c);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return tu_finish("prune");
    test_per_layer(ctx, CLT_OPT_SGD);
    test_per_layer(ctx, CLT_OPT_ADAM);
    test_global(ctx);
    test_checkpoint(ctx);
    clt_context_destroy(ctx);
    return tu_finish("prune");
}
