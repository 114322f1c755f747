/* test_add.c - a + b against a reference and finite differences, including add(x, x) and fan-out. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    size_t n;
    int mode; /* 0: a + b; 1: x + x; 2: (a + b) + a; 3: (a + b) + b (one input feeds two nodes) */
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    ud_t *d = v;
    for (size_t i = 0; i < d->n; i++) {
        if (d->mode == 0) out[i] = in[0][i] + in[1][i];
        else if (d->mode == 1) out[i] = in[0][i] + in[0][i];
        else if (d->mode == 2) out[i] = in[0][i] + in[1][i] + in[0][i];
        else out[i] = in[0][i] + in[1][i] + in[1][i];
    }
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    int shapes[][5] = {{1, 7, 0, 0, 0}, {2, 1, 5, 0, 0}, {4, 3, 2, 3, 5}, {2, 5, 33, 0, 0}};
    tu_rng rng = {5};
    for (int mode = 0; mode < 4; mode++)
        for (int si = 0; si < 4; si++) {
            int nd = shapes[si][0];
            clt_graph *g = NULL;
            clt_tensor *a, *b = NULL, *y, *t;
            TU_OK(ctx, clt_graph_create(ctx, &g));
            TU_OK(ctx, clt_input(g, "a", nd, shapes[si] + 1, &a));
            if (mode != 1) TU_OK(ctx, clt_input(g, "b", nd, shapes[si] + 1, &b));
            if (mode == 0) TU_OK(ctx, clt_add(g, a, b, &y));
            if (mode == 1) TU_OK(ctx, clt_add(g, a, a, &y));
            if (mode >= 2) {
                TU_OK(ctx, clt_add(g, a, b, &t));
                TU_OK(ctx, clt_add(g, t, mode == 2 ? a : b, &y));
            }
            TU_OK(ctx, clt_graph_keep(g, a, 1));
            if (b) TU_OK(ctx, clt_graph_keep(g, b, 1));
            TU_OK(ctx, clt_graph_keep(g, y, 0));
            if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
                clt_graph_destroy(g);
                continue;
            }
            size_t n = clt_tensor_numel(a);
            float *ad = malloc(n * sizeof(float)), *bd = malloc(n * sizeof(float));
            tu_fill_uniform(&rng, ad, n, -1, 1);
            tu_fill_uniform(&rng, bd, n, -1, 1);
            ud_t u = {n, mode};
            tu_opcheck c = {.g = g, .nin = b ? 2 : 1, .in = {a, b}, .in_data = {ad, bd}, .out = y, .ref = ref,
                            .ud = &u, .training = 1, .seed = (uint64_t)(mode * 10 + si + 1),
                            .k = 3 /* at most three terms per element */};
            char label[64];
            snprintf(label, sizeof label, "add mode %d shape#%d", mode, si);
            tu_check_op(ctx, label, &c);
            free(ad);
            free(bd);
            clt_graph_destroy(g);
        }
    /* Shape errors name both shapes. */
    clt_graph *g = NULL;
    clt_tensor *a, *b, *c4, *y = NULL;
    int sa[2] = {2, 3}, sb[2] = {3, 2}, sc[4] = {2, 3, 1, 1};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "a", 2, sa, &a));
    TU_OK(ctx, clt_input(g, "b", 2, sb, &b));
    TU_OK(ctx, clt_input(g, "c", 4, sc, &c4));
    TU_CHECK(clt_add(g, a, b, &y) == CLT_ERR_SHAPE && y == NULL, "(2,3) + (3,2) must be refused");
    TU_CHECK(strstr(clt_errmsg(ctx), "(2,3)") && strstr(clt_errmsg(ctx), "(3,2)"), "message names the shapes: %s",
             clt_errmsg(ctx));
    TU_CHECK(clt_add(g, a, c4, &y) == CLT_ERR_SHAPE, "(2,3) + (2,3,1,1) must be refused");
    TU_CHECK(clt_add(g, a, NULL, &y) == CLT_ERR_INVALID, "NULL input must be refused");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_add");
}
