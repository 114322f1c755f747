/* test_activation.c - ReLU, leaky ReLU, sigmoid, tanh, GELU (exact and tanh approximation) against double references and finite differences. */
#include <math.h>
#include <stdlib.h>

#include "testutil.h"

typedef struct {
    int kind;
    size_t n;
    double slope;
} ud_t;

static void ref(void *u, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    ud_t *d = u;
    for (size_t i = 0; i < d->n; i++) {
        double x = in[0][i];
        switch (d->kind) {
        case 0: out[i] = x > 0 ? x : 0; break;
        case 1: out[i] = x > 0 ? x : d->slope * x; break;
        case 2: out[i] = 1 / (1 + exp(-x)); break;
        case 3: out[i] = tanh(x); break;
        case 4: out[i] = 0.5 * x * (1 + erf(x / sqrt(2.0))); break;
        default: out[i] = 0.5 * x * (1 + tanh(0.79788456080286536 * (x + 0.044715 * x * x * x))); break;
        }
    }
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    const char *names[] = {"relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh"};
    int shapes[3][4] = {{1, 7, 1, 1}, {3, 5, 4, 3}, {2, 300, 1, 1}};
    int nd[3] = {1, 4, 2};
    tu_rng rng = {7};
    for (int kind = 0; kind < 6; kind++) {
        for (int s = 0; s < 3; s++) {
            clt_graph *g = NULL;
            clt_tensor *x, *y;
            TU_OK(ctx, clt_graph_create(ctx, &g));
            TU_OK(ctx, clt_input(g, "x", nd[s], shapes[s], &x));
            int st = kind == 0 ? clt_relu(g, x, &y) : kind == 1 ? clt_leaky_relu(g, x, 0.1f, &y)
                   : kind == 2 ? clt_sigmoid(g, x, &y) : kind == 3 ? clt_tanh(g, x, &y)
                   : kind == 4 ? clt_gelu(g, x, &y) : clt_gelu_tanh(g, x, &y);
            TU_OK(ctx, st);
            TU_OK(ctx, clt_graph_keep(g, x, 1));
            TU_OK(ctx, clt_graph_keep(g, y, 0));
            if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
                clt_graph_destroy(g);
                continue;
            }
            size_t n = clt_tensor_numel(x);
            float *xd = malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) {
                double v = tu_uniform(&rng, 0.05, 3.0); /* away from the kink at 0 */
                xd[i] = (float)(tu_uniform(&rng, 0, 1) < 0.5 ? -v : v);
            }
            ud_t u = {kind, n, 0.1};
            tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref, .ud = &u,
                            .training = 1, .seed = (uint64_t)(kind * 10 + s + 1)};
            /* Elementwise (no reduction, k = 1). Sigmoid, tanh and GELU use float32 exp/tanh/erf (a few ulp:
             * 8 more u of rtol) and are curved: finite-difference truncation h^2/6 * |f'''| with |f'''| <= 2. */
            if (kind >= 2) {
                c.rtol = c.grad_rtol = tu_sum_rtol(1) + 8 * TU_U32;
                c.atol = c.grad_atol = tu_sum_atol(1, 1);
                c.fd_atol = 1e-6 / 6 * 2;
            }
            char label[64];
            snprintf(label, sizeof label, "%s shape#%d", names[kind], s);
            tu_check_op(ctx, label, &c);
            free(xd);
            clt_graph_destroy(g);
        }
    }
    clt_context_destroy(ctx);
    return tu_finish("test_activation");
}
