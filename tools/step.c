/* step.c - one optimizer step over micro-batches (gradient accumulation) with optional clipping, for every
 * training command of the tool (images and text). */
#include <math.h>

#include "tool.h"

int tool_train_step(const tool_step *s, int micro, float lr, tool_micro_fn fill, tool_micro_fn after, void *ud,
                    float *mean_loss, float *grad_norm, char *err)
{
    clt_context *ctx = clt_graph_context(s->g);
    if (micro < 1 || micro > s->accumulate || !fill)
        return tool_fail(err, CLT_ERR_INVALID, "internal: %d micro-batches in a step (at most %d)", micro,
                         s->accumulate);
    double sum = 0;
    float l = 0;
    int st;
    for (int m = 0; m < micro; m++) {
        if ((st = fill(ud, m, err)) < 0) return st;
        /* The gradient of the mean over the step's rows: each micro-batch's mean loss weighs 1/micro. One
         * micro-batch is exactly clt_graph_backward. */
        if ((st = clt_graph_forward(s->g, 1)) < 0 ||
            (st = clt_graph_backward_ex(s->g, s->loss, 1.0f / (float)micro, m > 0)) < 0)
            return tool_fail(err, st, "%s", clt_errmsg(ctx));
        if (m + 1 == micro) break; /* the last one is read after the step: the queue runs on meanwhile */
        if ((st = clt_tensor_read(s->g, s->loss, 0, &l, 1)) < 0) return tool_fail(err, st, "%s", clt_errmsg(ctx));
        sum += l;
        if (after && (st = after(ud, m, err)) < 0) return st;
    }
    if (grad_norm) *grad_norm = NAN;
    if (s->clip > 0 && (st = clt_graph_clip_grad_norm(s->g, s->clip, grad_norm)) < 0)
        return tool_fail(err, st, "%s", clt_errmsg(ctx));
    if ((st = clt_graph_step(s->g, lr)) < 0 || (st = clt_tensor_read(s->g, s->loss, 0, &l, 1)) < 0)
        return tool_fail(err, st, "%s", clt_errmsg(ctx));
    sum += l;
    if (after && (st = after(ud, micro - 1, err)) < 0) return st;
    if (mean_loss) *mean_loss = (float)(sum / micro);
    return CLT_OK;
}
