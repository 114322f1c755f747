/* copy.c - device-to-device copies between graphs of one context (a teacher's logits into a student's input). */
#include <stdio.h>

#include "internal.h"

static int owns(const clt_graph *g, const clt_tensor *t)
{
    for (int i = 0; i < g->ntensors; i++)
        if (g->tensors[i] == t) return 1;
    return 0;
}

int clt_tensor_copy(clt_graph *dst, clt_tensor *to, clt_graph *src, clt_tensor *from)
{
    if (!dst) return CLT_ERR_INVALID;
    const char *fn = "clt_tensor_copy";
    if (!src || !to || !from) return clt__err(dst->ctx, CLT_ERR_INVALID, "%s: a NULL graph or tensor", fn);
    if (src->ctx != dst->ctx)
        return clt__err(dst->ctx, CLT_ERR_INVALID, "%s: the graphs belong to different contexts", fn);
    if (!src->compiled || !dst->compiled) return clt__err(dst->ctx, CLT_ERR_STATE, "%s: compile both graphs first", fn);
    if (!owns(dst, to) || !owns(src, from))
        return clt__err(dst->ctx, CLT_ERR_INVALID, "%s: a tensor does not belong to its graph", fn);
    if (to->kind != CLT__INPUT)
        return clt__err(dst->ctx, CLT_ERR_INVALID, "%s: '%s' is not an input (only inputs are written by callers)", fn,
                        to->name);
    const clt_tensor *root = from;
    while (root->view_of) root = root->view_of;
    if (from->kind == CLT__ACT ? !(from->keep_value || root->keep_value)
                               : from->kind != CLT__INPUT && from->kind != CLT__PARAM && from->kind != CLT__BUFFER)
        return clt__err(dst->ctx, CLT_ERR_STATE, "%s: '%s' is an intermediate whose memory is reused (clt_graph_keep "
                        "it before compiling)", fn, from->name);
    if (to->numel != from->numel)
        return clt__err(dst->ctx, CLT_ERR_SHAPE, "%s: '%s' holds %zu values, '%s' %zu", fn, from->name, from->numel,
                        to->name, to->numel);
    /* One in-order queue per context: the copy runs after src's last pass and before dst's next one. */
    CLT_CL(dst->ctx, clEnqueueCopyBuffer(dst->ctx->queue, from->mem, to->mem, 0, 0, to->numel * sizeof(float), 0, NULL,
                                         NULL));
    return CLT_OK;
}
