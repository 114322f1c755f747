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
    return clt__kernel(g->ctx, "optim", "", name, &g->k_optim);
}

int clt__optim_step(clt_graph *g, float lr)
{
    const clt_optimizer_settings *o = &g->settings.optimizer;
    cl_uint n = (cl_uint)g->param_elems;
    if (n == 0) return CLT_OK;
    cl_kernel k = g->k_optim;
    CLT_TRY(clt__prune_apply(g, g->grad_arena)); /* pruned weights get no gradient, their slots stay zero */
    if (o->type == CLT_OPT_SGD) {
        cl_int nest = o->nesterov;
        cl_mem m = g->nslots ? g->slot_arena[0] : g->param_arena; /* unused when momentum == 0 */
        CLT_TRY(CLT_SET_ARGS(g->ctx, k, CLT_ARG(g->param_arena), CLT_ARG(g->grad_arena), CLT_ARG(m), CLT_ARG(lr),
                             CLT_ARG(o->momentum), CLT_ARG(nest), CLT_ARG(o->weight_decay), CLT_ARG(o->l1), CLT_ARG(n)));
    } else {
        double t = (double)(g->steps + 1);
        float bc1 = (float)(1.0 - pow(o->beta1, t)), bc2 = (float)(1.0 - pow(o->beta2, t));
        cl_int dec = o->type == CLT_OPT_ADAMW;
        CLT_TRY(CLT_SET_ARGS(g->ctx, k, CLT_ARG(g->param_arena), CLT_ARG(g->grad_arena), CLT_ARG(g->slot_arena[0]),
                             CLT_ARG(g->slot_arena[1]), CLT_ARG(lr), CLT_ARG(o->beta1), CLT_ARG(o->beta2),
                             CLT_ARG(o->eps), CLT_ARG(o->weight_decay), CLT_ARG(o->l1), CLT_ARG(dec), CLT_ARG(bc1),
                             CLT_ARG(bc2), CLT_ARG(n)));
    }
    size_t gs = n, ls = 64;
    CLT_TRY(clt__launch(g->ctx, k, 1, &gs, &ls));
    return clt__prune_apply(g, g->param_arena); /* weight decay and momentum cannot revive them either */
}
