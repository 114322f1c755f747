/* test_learn.c - end-to-end learning: small MLPs must learn XOR to 100% accuracy within a bounded number of
 * Adam steps, with binary cross-entropy on one logit and with softmax cross-entropy on two classes. */
#include <math.h>
#include <stdlib.h>

#include "testutil.h"

#define MAX_STEPS 600

static const float X[8] = {0, 0, 0, 1, 1, 0, 1, 1};
static const float Y[4] = {0, 1, 1, 0};

/* Trains until every point is classified right on an evaluation pass (checked every 10 steps); returns the
 * number of steps, or -1. */
static int learn_xor(clt_context *ctx, int softmax, uint64_t seed)
{
    clt_graph *g = NULL;
    clt_tensor *x, *t, *h, *logits, *loss;
    int xs[2] = {4, 2}, ts[2] = {4, 1}, ls[1] = {4};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    TU_OK(ctx, softmax ? clt_input(g, "labels", 1, ls, &t) : clt_input(g, "t", 2, ts, &t));
    TU_OK(ctx, clt_dense(g, x, 8, 1, CLT_INIT_GLOROT_UNIFORM, "hidden", &h));
    TU_OK(ctx, softmax ? clt_leaky_relu(g, h, 0.1f, &h) : clt_tanh(g, h, &h));
    TU_OK(ctx, clt_dense(g, h, softmax ? 2 : 1, 1, CLT_INIT_GLOROT_UNIFORM, "out", &logits));
    TU_OK(ctx, softmax ? clt_softmax_cross_entropy(g, logits, t, 0.0f, &loss)
                       : clt_bce_with_logits(g, logits, t, &loss));
    TU_OK(ctx, clt_graph_keep(g, logits, 0));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_ADAM);
    cs.seed = seed;
    int result = -1;
    if (TU_OK(ctx, clt_graph_compile(g, &cs))) {
        TU_OK(ctx, clt_tensor_write(g, x, X, 8));
        TU_OK(ctx, clt_tensor_write(g, t, Y, 4));
        float first = NAN, last = NAN;
        for (int step = 1; step <= MAX_STEPS && result < 0; step++) {
            if (!TU_OK(ctx, clt_graph_forward(g, 1)) || !TU_OK(ctx, clt_graph_backward(g, loss)) ||
                !TU_OK(ctx, clt_graph_step(g, 0.05f)))
                break;
            if (step % 10) continue;
            float out[8];
            TU_OK(ctx, clt_graph_forward(g, 0));
            TU_OK(ctx, clt_tensor_read(g, loss, 0, &last, 1));
            if (step == 10) first = last;
            TU_OK(ctx, clt_tensor_read(g, logits, 0, out, softmax ? 8 : 4));
            int correct = 0;
            for (int i = 0; i < 4; i++) {
                int pred = softmax ? out[2 * i + 1] > out[2 * i] : out[i] > 0;
                correct += pred == (int)Y[i];
            }
            if (correct == 4 && last < 0.3f) result = step;
        }
        printf("     xor %s seed %llu: loss %.4f -> %.4f, %s after %d steps\n", softmax ? "softmax-ce" : "bce",
               (unsigned long long)seed, first, last, result > 0 ? "solved" : "NOT solved",
               result > 0 ? result : MAX_STEPS);
    }
    clt_graph_destroy(g);
    return result;
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    for (int softmax = 0; softmax < 2; softmax++)
        for (uint64_t seed = 1; seed <= 3; seed++) {
            int steps = learn_xor(ctx, softmax, seed);
            TU_CHECK(steps > 0, "XOR (%s, seed %llu) not learned within %d Adam steps", softmax ? "softmax" : "bce",
                     (unsigned long long)seed, MAX_STEPS);
        }
    clt_context_destroy(ctx);
    return tu_finish("test_learn");
}
