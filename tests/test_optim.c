/* test_optim.c - SGD (plain, momentum, Nesterov), Adam and AdamW with L2 weight decay and L1 against a host
 * reference of PyTorch's update rules, applied to the device's own gradients over several steps; optimizer
 * slots and step counters. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define STEPS 5
#define MAXP 4

typedef struct {
    const char *label;
    int type;
    float lr, momentum;
    int nesterov;
    float beta1, beta2, wd, l1;
} config;

/* One parameter tensor's host mirror: value and optimizer state in double. */
typedef struct {
    clt_tensor *t;
    size_t n;
    double *w, *m, *v;
    float *got, *grad;
} pstate;

static double sgn(double x) { return (x > 0) - (x < 0); }

/* PyTorch's torch.optim.SGD / Adam / AdamW for one element at step t (1-based); L1 adds l1*sign(w) to the
 * gradient (cltrain's extension, same place as L2). */
static void ref_update(const config *c, double lr, int t, double *w, double *m, double *v, double g)
{
    if (c->type == CLT_OPT_SGD) {
        g += c->wd * *w + c->l1 * sgn(*w);
        if (c->momentum > 0) {
            *m = t == 1 ? g : c->momentum * *m + g;
            g = c->nesterov ? g + c->momentum * *m : *m;
        }
        *w -= lr * g;
        return;
    }
    g += c->l1 * sgn(*w);
    if (c->type == CLT_OPT_ADAMW)
        *w *= 1 - lr * c->wd;
    else
        g += c->wd * *w;
    *m = c->beta1 * *m + (1 - c->beta1) * g;
    *v = c->beta2 * *v + (1 - c->beta2) * g * g;
    double mh = *m / (1 - pow(c->beta1, t)), vh = *v / (1 - pow(c->beta2, t));
    *w -= lr * mh / (sqrt(vh) + 1e-8);
}

/* x (6,3) -> dense(2) -> tanh -> dense(2) -> mse(target). */
static void run_config(clt_context *ctx, const config *c)
{
    int fails0 = tu_failures;
    clt_graph *g = NULL;
    clt_tensor *x, *t, *h, *a, *y, *loss;
    int xs[2] = {6, 3}, ts[2] = {6, 2};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    TU_OK(ctx, clt_input(g, "t", 2, ts, &t));
    TU_OK(ctx, clt_dense(g, x, 2, 1, CLT_INIT_DEFAULT, "fc1", &h));
    TU_OK(ctx, clt_tanh(g, h, &a));
    TU_OK(ctx, clt_dense(g, a, 2, 1, CLT_INIT_DEFAULT, "fc2", &y));
    TU_OK(ctx, clt_mse(g, y, t, &loss));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, c->type);
    cs.optimizer.lr = 123.0f; /* must be ignored: clt_graph_step's rate counts */
    cs.optimizer.momentum = c->momentum;
    cs.optimizer.nesterov = c->nesterov;
    if (c->beta1 > 0) cs.optimizer.beta1 = c->beta1, cs.optimizer.beta2 = c->beta2;
    cs.optimizer.weight_decay = c->wd;
    cs.optimizer.l1 = c->l1;
    if (!TU_OK(ctx, clt_graph_compile(g, &cs))) {
        clt_graph_destroy(g);
        return;
    }
    config cc = *c;
    cc.beta1 = cs.optimizer.beta1, cc.beta2 = cs.optimizer.beta2;
    tu_rng rng = {5};
    float xd[18], td[12];
    tu_fill_uniform(&rng, xd, 18, -1, 1);
    tu_fill_uniform(&rng, td, 12, -1, 1);
    TU_OK(ctx, clt_tensor_write(g, x, xd, 18));
    TU_OK(ctx, clt_tensor_write(g, t, td, 12));

    pstate ps[MAXP];
    int np = 0;
    for (int i = 0; i < clt_graph_state_count(g) && np < MAXP; i++) {
        int tr = 0;
        clt_tensor *pt = clt_graph_state_tensor(g, i, &tr);
        if (!tr) continue;
        pstate *p = &ps[np++];
        p->t = pt;
        p->n = clt_tensor_numel(pt);
        p->w = calloc(p->n, sizeof(double)), p->m = calloc(p->n, sizeof(double)), p->v = calloc(p->n, sizeof(double));
        p->got = malloc(p->n * sizeof(float)), p->grad = malloc(p->n * sizeof(float));
        /* Non-zero biases, so that decay and L1 act on every tensor. */
        tu_fill_uniform(&rng, p->got, p->n, -1, 1);
        TU_OK(ctx, clt_tensor_write(g, pt, p->got, p->n));
        for (size_t j = 0; j < p->n; j++) p->w[j] = p->got[j];
    }
    TU_CHECK(np == 4, "%s: %d trainable tensors, expected 4", c->label, np);
    for (int step = 1; step <= STEPS + 1; step++) {
        float lr = c->lr * (step % 2 ? 1.0f : 0.5f); /* the rate may change per step */
        if (step == STEPS + 1) {
            /* Slots and counters round-trip: restore state as a checkpoint would, then one more step. */
            uint64_t st = 0, pa = 0;
            TU_OK(ctx, clt_graph_get_counters(g, &st, &pa));
            TU_CHECK(st == STEPS && pa == STEPS, "%s: counters %llu/%llu after %d steps", c->label,
                     (unsigned long long)st, (unsigned long long)pa, STEPS);
            TU_OK(ctx, clt_graph_set_counters(g, 40, 41));
            TU_OK(ctx, clt_graph_get_counters(g, &st, &pa));
            TU_CHECK(st == 40 && pa == 41, "%s: set_counters did not stick", c->label);
            for (int i = 0; i < np; i++) {
                float *m = malloc(ps[i].n * sizeof(float)), *v = malloc(ps[i].n * sizeof(float));
                for (size_t j = 0; j < ps[i].n; j++) {
                    ps[i].m[j] = m[j] = (float)(0.01 * (double)(j + 1));
                    ps[i].v[j] = v[j] = (float)(0.001 * (double)(j + 2));
                }
                TU_OK(ctx, clt_tensor_write_slot(g, ps[i].t, 0, m, ps[i].n));
                TU_OK(ctx, clt_tensor_write_slot(g, ps[i].t, 1, v, ps[i].n));
                if (c->type == CLT_OPT_SGD) {
                    /* Slots the optimizer lacks read as zeros and ignore writes. */
                    TU_OK(ctx, clt_tensor_read_slot(g, ps[i].t, 1, v, ps[i].n));
                    for (size_t j = 0; j < ps[i].n; j++) TU_CHECK(v[j] == 0, "%s: unused slot 1 reads %g", c->label, v[j]);
                    if (c->momentum == 0) {
                        TU_OK(ctx, clt_tensor_read_slot(g, ps[i].t, 0, m, ps[i].n));
                        for (size_t j = 0; j < ps[i].n; j++) TU_CHECK(m[j] == 0, "%s: unused slot 0 reads %g", c->label, m[j]);
                    }
                }
                free(m), free(v);
            }
        }
        if (!TU_OK(ctx, clt_graph_forward(g, 1)) || !TU_OK(ctx, clt_graph_backward(g, loss))) break;
        for (int i = 0; i < np; i++) TU_OK(ctx, clt_tensor_read(g, ps[i].t, 1, ps[i].grad, ps[i].n));
        if (!TU_OK(ctx, clt_graph_step(g, lr))) break;
        int tstep = step == STEPS + 1 ? 41 : step;
        for (int i = 0; i < np; i++) {
            for (size_t j = 0; j < ps[i].n; j++)
                ref_update(&cc, lr, tstep, &ps[i].w[j], &ps[i].m[j], &ps[i].v[j], ps[i].grad[j]);
            TU_OK(ctx, clt_tensor_read(g, ps[i].t, 0, ps[i].got, ps[i].n));
            char what[128];
            snprintf(what, sizeof what, "%s step %d %s", c->label, step, clt_tensor_name(ps[i].t));
            tu_close(what, ps[i].got, ps[i].w, ps[i].n, 1e-5, 1e-6);
            /* Optimizer state: momentum buffer / Adam moments. */
            int nslots = c->type == CLT_OPT_SGD ? (c->momentum > 0) : 2;
            for (int s = 0; s < nslots; s++) {
                float *sv = malloc(ps[i].n * sizeof(float));
                TU_OK(ctx, clt_tensor_read_slot(g, ps[i].t, s, sv, ps[i].n));
                snprintf(what, sizeof what, "%s step %d %s slot %d", c->label, step, clt_tensor_name(ps[i].t), s);
                tu_close(what, sv, s ? ps[i].v : ps[i].m, ps[i].n, 1e-5, 1e-9);
                free(sv);
            }
        }
    }
    /* The update really moved the parameters (a no-op optimizer would match a no-op reference only if
     * the reference were wrong the same way; this rules out "nothing happened"). */
    float w0[6];
    TU_OK(ctx, clt_tensor_read(g, ps[0].t, 0, w0, 6));
    int moved = 0;
    tu_rng r2 = {5};
    float skip[30];
    tu_fill_uniform(&r2, skip, 30, -1, 1); /* replays x, t: the next 6 values are fc1.weight's start */
    float start[6];
    tu_fill_uniform(&r2, start, 6, -1, 1);
    for (int j = 0; j < 6; j++) moved |= fabsf(w0[j] - start[j]) > 1e-4f;
    TU_CHECK(moved, "%s: parameters did not change", c->label);
    for (int i = 0; i < np; i++) free(ps[i].w), free(ps[i].m), free(ps[i].v), free(ps[i].got), free(ps[i].grad);
    clt_graph_destroy(g);
    if (tu_failures == fails0) printf("ok   %s\n", c->label);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    const config cfgs[] = {
        {"sgd", CLT_OPT_SGD, 0.1f, 0, 0, 0, 0, 0, 0},
        {"sgd momentum", CLT_OPT_SGD, 0.1f, 0.9f, 0, 0, 0, 0, 0},
        {"sgd nesterov + L2", CLT_OPT_SGD, 0.1f, 0.9f, 1, 0, 0, 0.05f, 0},
        {"sgd momentum + L2 + L1", CLT_OPT_SGD, 0.1f, 0.5f, 0, 0, 0, 0.05f, 0.01f},
        {"sgd + L1", CLT_OPT_SGD, 0.05f, 0, 0, 0, 0, 0, 0.02f},
        {"adam", CLT_OPT_ADAM, 0.01f, 0, 0, 0, 0, 0, 0},
        {"adam + L2 + L1, betas 0.8/0.99", CLT_OPT_ADAM, 0.01f, 0, 0, 0.8f, 0.99f, 0.1f, 0.01f},
        {"adamw", CLT_OPT_ADAMW, 0.01f, 0, 0, 0, 0, 0.1f, 0},
        {"adamw + L1, betas 0.5/0.9", CLT_OPT_ADAMW, 0.02f, 0, 0, 0.5f, 0.9f, 0.05f, 0.01f},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) run_config(ctx, &cfgs[i]);

    /* Invalid settings and calls. */
    {
        clt_graph *g = NULL;
        clt_tensor *x, *y, *loss;
        int xs[2] = {2, 2};
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
        TU_OK(ctx, clt_dense(g, x, 2, 1, 0, "fc", &y));
        TU_OK(ctx, clt_mse(g, y, x, &loss));
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        cs.optimizer.nesterov = 1; /* needs momentum */
        TU_CHECK(clt_graph_compile(g, &cs) == CLT_ERR_INVALID, "nesterov without momentum must be refused");
        TU_MSG(ctx, "nesterov 1");
        cs.optimizer.nesterov = 0;
        cs.optimizer.type = 7;
        TU_CHECK(clt_graph_compile(g, &cs) == CLT_ERR_INVALID, "unknown optimizer must be refused");
        TU_MSG(ctx, "unknown optimizer type 7");
        clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_ADAM);
        cs.optimizer.beta2 = 1.0f;
        TU_CHECK(clt_graph_compile(g, &cs) == CLT_ERR_INVALID, "beta2 = 1 must be refused");
        TU_MSG(ctx, "betas 0.9/1");
        cs.optimizer.beta2 = 0.999f;
        if (TU_OK(ctx, clt_graph_compile(g, &cs))) {
            float buf[4];
            clt_tensor *w = clt_graph_state_tensor(g, 0, NULL);
            TU_CHECK(clt_graph_step(g, -1.0f) == CLT_ERR_INVALID, "negative learning rate must be refused");
            TU_CHECK(clt_graph_step(g, NAN) == CLT_ERR_INVALID, "NaN learning rate must be refused");
            TU_CHECK(clt_tensor_read_slot(g, w, 2, buf, 4) == CLT_ERR_INVALID, "slot 2 must be refused");
            TU_CHECK(clt_tensor_read_slot(g, w, 0, buf, 3) == CLT_ERR_SHAPE, "wrong count must be refused");
            TU_CHECK(clt_tensor_read_slot(g, x, 0, buf, 4) == CLT_ERR_INVALID, "an input has no slots");
            TU_CHECK(clt_tensor_write_slot(g, w, 0, NULL, 4) == CLT_ERR_INVALID, "NULL data must be refused");
            TU_CHECK(clt_graph_state_tensor(g, 99, NULL) == NULL, "state tensor 99 does not exist");
        }
        clt_graph_destroy(g);

        /* Inference graphs have no optimizer. */
        TU_OK(ctx, clt_graph_create(ctx, &g));
        TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
        TU_OK(ctx, clt_dense(g, x, 2, 1, 0, "fc", &y));
        clt_compile_default_settings(&cs);
        cs.training = 0;
        if (TU_OK(ctx, clt_graph_compile(g, &cs))) {
            TU_CHECK(clt_graph_step(g, 0.1f) == CLT_ERR_STATE, "step on an inference graph must be refused");
            TU_CHECK(clt_graph_forward(g, 1) == CLT_ERR_STATE, "training pass on an inference graph must be refused");
        }
        clt_graph_destroy(g);
        TU_CHECK(clt_graph_get_counters(NULL, NULL, NULL) == CLT_ERR_INVALID, "NULL graph must be refused");
    }
    clt_context_destroy(ctx);
    return tu_finish("test_optim");
}
