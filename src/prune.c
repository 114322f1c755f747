/* prune.c - magnitude pruning of conv/dense weights with a device mask kept through training (clt_graph_prune). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One weight value of the pool being ranked: |w| and where it is. */
typedef struct mag {
    float a;
    uint32_t t; /* index into the prunable list */
    uint32_t i; /* element */
} mag;

static int by_mag(const void *x, const void *y)
{
    const mag *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    if (p->t != q->t) return p->t < q->t ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}

/* The weights pruning applies to: the first parameter (the weight) of every conv2d and dense node. */
static int prunable(const clt_graph *g, clt_tensor **out, int max)
{
    int n = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const clt__node *nd = g->nodes[i];
        if (nd->nparam < 1 || (strcmp(nd->op->name, "conv2d") && strcmp(nd->op->name, "dense"))) continue;
        if (out && n < max) out[n] = nd->param[0];
        n++;
    }
    return n;
}

int clt_graph_prune_count(const clt_graph *g) { return g ? prunable(g, NULL, 0) : 0; }

int clt_graph_prune_layer(clt_graph *g, int i, clt_prune_layer *out)
{
    if (!g || !out) return CLT_ERR_INVALID;
    int n = prunable(g, NULL, 0);
    if (i < 0 || i >= n) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_graph_prune_layer: index %d of %d", i, n);
    if (!g->compiled) return clt__err(g->ctx, CLT_ERR_STATE, "clt_graph_prune_layer: compile the graph first");
    clt_tensor **t = malloc(sizeof *t * (size_t)n);
    if (!t) return clt__err(g->ctx, CLT_ERR_NOMEM, "clt_graph_prune_layer: out of host memory");
    prunable(g, t, n);
    clt_tensor *w = t[i];
    free(t);
    float *v = malloc(w->numel * sizeof *v);
    if (!v) return clt__err(g->ctx, CLT_ERR_NOMEM, "clt_graph_prune_layer: out of host memory");
    int st = clt_tensor_read(g, w, 0, v, w->numel);
    if (!st) {
        memset(out, 0, sizeof *out);
        snprintf(out->name, sizeof out->name, "%s", w->name);
        out->numel = w->numel;
        for (size_t k = 0; k < w->numel; k++) out->zeros += v[k] == 0.0f;
    }
    free(v);
    return st;
}

/* Applies the mask to one arena of param_elems floats (parameters, gradients or an optimizer slot). */
int clt__prune_apply(clt_graph *g, cl_mem buf)
{
    if (!g->prune_mask) return CLT_OK;
    cl_uint n = (cl_uint)g->param_elems;
    CLT_TRY(CLT_SET_ARGS(g->ctx, g->k_prune, CLT_ARG(buf), CLT_ARG(g->prune_mask), CLT_ARG(n)));
    size_t gs = n, ls = 64;
    return clt__launch(g->ctx, g->k_prune, 1, &gs, &ls);
}

/* Zeroes the chosen weights on the host copies and marks them in the mask. */
static void choose(clt_tensor **t, float **v, int n, float sparsity, int scope, float *mask, mag *pool)
{
    for (int s = 0; s < (scope == CLT_PRUNE_GLOBAL ? 1 : n); s++) {
        size_t m = 0, total = 0;
        for (int j = 0; j < n; j++) {
            if (scope != CLT_PRUNE_GLOBAL && j != s) continue;
            for (size_t k = 0; k < t[j]->numel; k++) pool[m++] = (mag){fabsf(v[j][k]), (uint32_t)j, (uint32_t)k};
            total += t[j]->numel;
        }
        qsort(pool, m, sizeof *pool, by_mag);
        size_t cut = (size_t)floor((double)sparsity * (double)total + 1e-9);
        /* Weights already exactly zero stay pruned (a pruned checkpoint's masks come back from its zeros). */
        for (size_t k = 0; k < m && (k < cut || pool[k].a == 0.0f); k++) {
            v[pool[k].t][pool[k].i] = 0.0f;
            mask[t[pool[k].t]->param_offset + pool[k].i] = 0.0f;
        }
    }
}

int clt_graph_prune(clt_graph *g, float sparsity, int scope)
{
    if (!g) return CLT_ERR_INVALID;
    if (!(sparsity >= 0.0f && sparsity < 1.0f))
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_graph_prune: sparsity %g is not in [0, 1)", sparsity);
    if (scope != CLT_PRUNE_PER_LAYER && scope != CLT_PRUNE_GLOBAL)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_graph_prune: unknown scope %d", scope);
    if (!g->compiled) return clt__err(g->ctx, CLT_ERR_STATE, "clt_graph_prune: compile the graph first");
    int n = prunable(g, NULL, 0);
    if (n == 0) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_graph_prune: the graph has no conv2d or dense weights");
    clt_tensor **t = calloc((size_t)n, sizeof *t);
    float **v = calloc((size_t)n, sizeof *v);
    float *mask = malloc(g->param_elems * sizeof *mask);
    size_t total = 0;
    int st = t && v && mask ? CLT_OK : CLT_ERR_NOMEM;
    if (!st) prunable(g, t, n);
    for (int j = 0; j < n && !st; j++) {
        total += t[j]->numel;
        if (!(v[j] = malloc(t[j]->numel * sizeof **v))) st = CLT_ERR_NOMEM;
        else st = clt_tensor_read(g, t[j], 0, v[j], t[j]->numel);
    }
    mag *pool = st ? NULL : malloc((total ? total : 1) * sizeof *pool);
    if (!st && !pool) st = CLT_ERR_NOMEM;
    if (st == CLT_ERR_NOMEM) st = clt__err(g->ctx, st, "clt_graph_prune: out of host memory");
    if (!st) {
        for (size_t k = 0; k < g->param_elems; k++) mask[k] = 1.0f;
        choose(t, v, n, sparsity, scope, mask, pool);
        for (int j = 0; j < n && !st; j++) st = clt_tensor_write(g, t[j], v[j], t[j]->numel);
    }
    if (!st && !g->k_prune) st = clt__kernel(g->ctx, "prune", "", "prune_mask", &g->k_prune);
    if (!st && !g->prune_mask) {
        cl_int e = CL_SUCCESS;
        g->prune_mask = clCreateBuffer(g->ctx->cl, CL_MEM_READ_ONLY, g->param_elems * sizeof(float), NULL, &e);
        if (e != CL_SUCCESS) {
            g->prune_mask = NULL;
            st = clt__cl_err(g->ctx, e, "clCreateBuffer(prune mask)", __FILE__, __LINE__);
        }
    }
    if (!st) {
        cl_int e = clEnqueueWriteBuffer(g->ctx->queue, g->prune_mask, CL_TRUE, 0, g->param_elems * sizeof(float), mask,
                                        0, NULL, NULL);
        if (e != CL_SUCCESS) st = clt__cl_err(g->ctx, e, "clEnqueueWriteBuffer(prune mask)", __FILE__, __LINE__);
    }
    /* Optimizer state of pruned weights is dropped too, so momentum cannot push them back between masks. */
    for (int s = 0; s < g->nslots && !st; s++) st = clt__prune_apply(g, g->slot_arena[s]);
    for (int j = 0; j < n && v; j++) free(v[j]);
    free(v);
    free(t);
    free(mask);
    free(pool);
    return st;
}
