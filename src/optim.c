/* optim.c - optimizer settings and the device-side update of all parameters (cl/optim.cl). */
#include <math.h>
#include <string.h>

#include "internal.h"

void clt_optimizer_default_settings(clt_optimizer_settings *s, int type)
{
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->type = type;
    s->lr = type == CLT_OPT_SGD ? 0.01f : 0.001f;
    s->beta1 = 0.9f;
    s->beta2 = 0.999f;
    s->eps = 1e-8f;
    s->weight_decay = type == CLT_OPT_ADAMW ? 0.01f : 0.0f;
}

int clt__optim_prepare(clt_graph *g)
{
    const char *name = g->settings.optimizer.type == CLT_OPT_SGD ? "sgd_step" : "adam_step";
    /* One program: the clipping and accumulation kernels cost no extra build. */
    CLT_TRY(clt__kernel(g->ctx, "optim", "", name, &g->k_optim));
    CLT_TRY(clt__kernel(g->ctx, "optim", "", "grad_sumsq", &g->k_sumsq));
    CLT_TRY(clt__kernel(g->ctx, "optim", "", "grad_norm", &g->k_norm));
    CLT_TRY(clt__kernel(g->ctx, "optim", "", "grad_scale", &g->k_scale));
    if (g->acc_arena) CLT_TRY(clt__kernel(g->ctx, "optim", "", "grad_add", &g->k_acc));
    return CLT_OK;
}

int clt__optim_step(clt_graph *g, float lr)
{
    const clt_optimizer_settings *o = &g->settings.optimizer;
    cl_uint n = (cl_uint)g->param_elems, nd = (cl_uint)g->decay_elems;
    if (n == 0) return CLT_OK;
    cl_kernel k = g->k_optim;
    if (o->type == CLT_OPT_SGD) {
        cl_int nest = o->nesterov;
        cl_mem m = g->nslots ? g->slot_arena[0] : g->param_arena; /* unused when momentum == 0 */
        CLT_TRY(CLT_SET_ARGS(g->ctx, k, CLT_ARG(g->param_arena), CLT_ARG(g->grad_arena), CLT_ARG(m), CLT_ARG(lr),
                             CLT_ARG(o->momentum), CLT_ARG(nest), CLT_ARG(o->weight_decay), CLT_ARG(o->l1), CLT_ARG(n),
                             CLT_ARG(nd)));
    } else {
        double t = (double)(g->steps + 1);
        float bc1 = (float)(1.0 - pow(o->beta1, t)), bc2 = (float)(1.0 - pow(o->beta2, t));
        cl_int dec = o->type == CLT_OPT_ADAMW;
        CLT_TRY(CLT_SET_ARGS(g->ctx, k, CLT_ARG(g->param_arena), CLT_ARG(g->grad_arena), CLT_ARG(g->slot_arena[0]),
                             CLT_ARG(g->slot_arena[1]), CLT_ARG(lr), CLT_ARG(o->beta1), CLT_ARG(o->beta2),
                             CLT_ARG(o->eps), CLT_ARG(o->weight_decay), CLT_ARG(o->l1), CLT_ARG(dec), CLT_ARG(bc1),
                             CLT_ARG(bc2), CLT_ARG(n), CLT_ARG(nd)));
    }
    size_t gs = n, ls = 64;
    return clt__launch(g->ctx, k, 1, &gs, &ls);
}

int clt__clip_grad_norm(clt_graph *g, float max_norm, float *norm_out)
{
    cl_uint n = (cl_uint)g->param_elems;
    /* Padding between parameters in the arena stays zero (zero-filled at compile, never written). */
    size_t parts = CLT__CLIP_PARTS, one = 1, gs = n;
    CLT_TRY(CLT_SET_ARGS(g->ctx, g->k_sumsq, CLT_ARG(g->grad_arena), CLT_ARG(g->clip_buf), CLT_ARG(n)));
    CLT_TRY(clt__launch(g->ctx, g->k_sumsq, 1, &parts, NULL));
    CLT_TRY(CLT_SET_ARGS(g->ctx, g->k_norm, CLT_ARG(g->clip_buf), CLT_ARG(max_norm)));
    CLT_TRY(clt__launch(g->ctx, g->k_norm, 1, &one, &one));
    if (isfinite(max_norm) && n > 0) {
        size_t ls = 64;
        CLT_TRY(CLT_SET_ARGS(g->ctx, g->k_scale, CLT_ARG(g->grad_arena), CLT_ARG(g->clip_buf), CLT_ARG(n)));
        CLT_TRY(clt__launch(g->ctx, g->k_scale, 1, &gs, &ls));
    }
    if (norm_out)
        CLT_CL(g->ctx, clEnqueueReadBuffer(g->ctx->queue, g->clip_buf, CL_TRUE, CLT__CLIP_PARTS * sizeof(float),
                                           sizeof(float), norm_out, 0, NULL, NULL));
    return CLT_OK;
}

int clt__grad_accumulate_begin(clt_graph *g)
{
    if (g->param_elems == 0) return CLT_OK;
    CLT_CL(g->ctx, clEnqueueCopyBuffer(g->ctx->queue, g->grad_arena, g->acc_arena, 0, 0,
                                       g->param_elems * sizeof(float), 0, NULL, NULL));
    return CLT_OK;
}

int clt__grad_accumulate_end(clt_graph *g)
{
    cl_uint n = (cl_uint)g->param_elems;
    if (n == 0) return CLT_OK;
    size_t gs = n, ls = 64;
    CLT_TRY(CLT_SET_ARGS(g->ctx, g->k_acc, CLT_ARG(g->grad_arena), CLT_ARG(g->acc_arena), CLT_ARG(n)));
    return clt__launch(g->ctx, g->k_acc, 1, &gs, &ls);
}

void clt_lr_schedule_default_settings(clt_lr_schedule_settings *s, float lr)
{
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->lr = lr;
}

int clt_lr_schedule(const clt_lr_schedule_settings *s, uint64_t step, float *lr_out)
{
    if (!s || !lr_out) return CLT_ERR_INVALID;
    if (!isfinite(s->lr) || !isfinite(s->min_lr) || !(s->min_lr >= 0) || !(s->min_lr <= s->lr) ||
        (s->decay_steps > 0 && s->decay_steps < s->warmup_steps))
        return CLT_ERR_INVALID;
    double lr = s->lr, lo = s->min_lr, w = (double)s->warmup_steps;
    double r;
    if (step < s->warmup_steps) r = lr * ((double)step + 1) / (w + 1);
    else if (s->decay_steps == 0) r = lr;
    else if (step > s->decay_steps) r = lo;
    else if (s->decay_steps == s->warmup_steps) r = lr;
    else {
        double ratio = ((double)step - w) / ((double)s->decay_steps - w);
        r = lo + 0.5 * (1.0 + cos(3.14159265358979323846 * ratio)) * (lr - lo);
    }
    *lr_out = (float)r;
    return CLT_OK;
}
