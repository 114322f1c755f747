/* init.c - portable seeded RNG and parameter initialization (same seed, same weights on every platform). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint64_t clt__splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* 53 random bits -> [0,1) exactly representable, so no platform rounding differences. */
double clt__uniform01(uint64_t *state)
{
    return (double)(clt__splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* Box-Muller; the rare last-ulp difference between libms cannot survive rounding to float. */
double clt__normal(uint64_t *state)
{
    double u1 = clt__uniform01(state), u2 = clt__uniform01(state);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int clt__init_params(clt_graph *g)
{
    int pindex = 0;
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->kind != CLT__PARAM && t->kind != CLT__BUFFER) continue;
        float *h = malloc(t->numel * sizeof(float));
        if (!h) return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory initializing '%s'", t->name);
        /* One stream per parameter, so adding a layer at the end does not change earlier layers. */
        uint64_t st = g->settings.seed ^ (0xA0761D6478BD642Full * (uint64_t)(++pindex));
        clt__splitmix64(&st);
        double fi = t->fan_in > 0 ? t->fan_in : 1, fo = t->fan_out > 0 ? t->fan_out : 1;
        int init = t->kind == CLT__PARAM ? t->init : CLT_INIT_ZEROS;
        if (init == CLT_INIT_DEFAULT) init = CLT_INIT_HE_NORMAL;
        for (size_t j = 0; j < t->numel; j++) {
            double v;
            switch (init) {
            case CLT_INIT_HE_NORMAL: v = clt__normal(&st) * sqrt(2.0 / fi); break;
            case CLT_INIT_HE_UNIFORM: v = (2 * clt__uniform01(&st) - 1) * sqrt(6.0 / fi); break;
            case CLT_INIT_GLOROT_NORMAL: v = clt__normal(&st) * sqrt(2.0 / (fi + fo)); break;
            case CLT_INIT_GLOROT_UNIFORM: v = (2 * clt__uniform01(&st) - 1) * sqrt(6.0 / (fi + fo)); break;
            case CLT__INIT_NORMAL_STD: v = clt__normal(&st) * t->init_const; break;
            default: v = t->init_const; break;
            }
            h[j] = (float)v;
        }
        cl_int err = clEnqueueWriteBuffer(g->ctx->queue, t->mem, CL_TRUE, 0, t->numel * sizeof(float), h, 0, NULL, NULL);
        free(h);
        if (err != CL_SUCCESS) return clt__cl_err(g->ctx, err, "clEnqueueWriteBuffer(initial parameters)", __FILE__, __LINE__);
    }
    return CLT_OK;
}

int clt_param_init_normal(clt_graph *g, clt_tensor *param, float std)
{
    CLT_TRY(clt__check_building(g, "clt_param_init_normal"));
    int found = 0;
    for (int i = 0; i < g->ntensors && !found; i++) found = g->tensors[i] == param;
    if (!param || !found || param->kind != CLT__PARAM)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_param_init_normal: not a learned parameter of this graph");
    if (!(std >= 0 && std < 1e6f))
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_param_init_normal: std %g (must be in [0, 1e6))", std);
    param->init = CLT__INIT_NORMAL_STD;
    param->init_const = std;
    return CLT_OK;
}

clt_tensor *clt_graph_param(const clt_graph *g, const char *name)
{
    if (!g || !name) return NULL;
    for (int i = 0; i < g->ntensors; i++)
        if ((g->tensors[i]->kind == CLT__PARAM || g->tensors[i]->kind == CLT__BUFFER) &&
            strcmp(g->tensors[i]->name, name) == 0)
            return g->tensors[i];
    return NULL;
}
