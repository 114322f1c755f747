/* test_matmul.c - (batched) matmul with each transposition, on the own GEMM kernel and on CLBlast, against a
 * double reference and finite differences (per-element tolerances); weight tying (an embedding table used again
 * as the transposed output projection) with its summed, deterministic gradient; shape errors by message. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    int ta, tb, bcast;
    int batch, m, n, k;
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    ud_t *d = v;
    for (int b = 0; b < d->batch; b++) {
        const double *A = in[0] + (size_t)b * d->m * d->k, *B = in[1] + (d->bcast ? 0 : (size_t)b * d->k * d->n);
        for (int i = 0; i < d->m; i++)
            for (int j = 0; j < d->n; j++) {
                double s = 0;
                for (int q = 0; q < d->k; q++)
                    s += (d->ta ? A[q * d->m + i] : A[i * d->k + q]) * (d->tb ? B[j * d->k + q] : B[q * d->n + j]);
                out[((size_t)b * d->m + i) * d->n + j] = s;
            }
    }
}

/* case: ta, tb, ndim a, shape a[4], ndim b, shape b[4]; u: batch, m, n, k as the reference reads them. */
typedef struct {
    int ta, tb, na, sa[4], nb, sb[4];
    ud_t u;
} mm_case;

static void check_case(clt_context *ctx, tu_rng *rng, const mm_case *cs, const char *path, int ci)
{
    clt_graph *g = NULL;
    clt_tensor *a, *b, *y;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "a", cs->na, cs->sa, &a));
    TU_OK(ctx, clt_input(g, "b", cs->nb, cs->sb, &b));
    if (!TU_OK(ctx, clt_matmul(g, a, b, cs->ta, cs->tb, &y))) {
        clt_graph_destroy(g);
        return;
    }
    TU_CHECK(clt_tensor_numel(y) == (size_t)cs->u.batch * cs->u.m * cs->u.n, "output size");
    TU_OK(ctx, clt_graph_keep(g, a, 1));
    TU_OK(ctx, clt_graph_keep(g, b, 1));
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
        size_t na = clt_tensor_numel(a), nb = clt_tensor_numel(b);
        float *ad = malloc(na * sizeof(float)), *bd = malloc(nb * sizeof(float));
        tu_fill_uniform(rng, ad, na, -1, 1);
        tu_fill_uniform(rng, bd, nb, -1, 1);
        ud_t u = cs->u;
        tu_opcheck c = {.g = g, .nin = 2, .in = {a, b}, .in_data = {ad, bd}, .out = y, .ref = ref, .ud = &u,
                        .training = 1, .seed = (uint64_t)ci + 3, .rtol = 1e-4, .atol = 1e-5};
        char label[64];
        snprintf(label, sizeof label, "matmul %s case %d (ta %d tb %d)", path, ci, cs->ta, cs->tb);
        tu_check_op(ctx, label, &c);
        free(ad), free(bd);
    }
    clt_graph_destroy(g);
}

/* Weight tying: h = wte[ids] (P,C), logits = h wte^T (P,V); d/dwte sums the embedding's and the product's. */
typedef struct {
    int p, v, c;
} tie_t;

static void tie_ref(void *v, const double *const *in, const double *const *p, double *out)
{
    tie_t *d = v;
    for (int i = 0; i < d->p; i++) {
        const double *h = p[0] + (size_t)in[0][i] * d->c;
        for (int j = 0; j < d->v; j++) {
            double s = 0;
            for (int c = 0; c < d->c; c++) s += h[c] * p[0][(size_t)j * d->c + c];
            out[(size_t)i * d->v + j] = s;
        }
    }
}

static void check_tied(clt_context *ctx, tu_rng *rng)
{
    enum { B = 2, T = 5, V = 6, C = 3 };
    clt_graph *g = NULL;
    clt_tensor *ids, *h, *y;
    int s[2] = {B, T};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "ids", 2, s, &ids));
    TU_OK(ctx, clt_embedding(g, ids, V, C, "wte", &h));
    clt_tensor *w = clt_graph_param(g, "wte.weight");
    TU_CHECK(w != NULL, "wte.weight");
    if (!TU_OK(ctx, clt_matmul(g, h, w, 0, 1, &y))) {
        clt_graph_destroy(g);
        return;
    }
    TU_CHECK(clt_tensor_ndim(y) == 3 && clt_tensor_dim(y, 2) == V, "logits (B,T,V)");
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
        float id[B * T];
        for (int i = 0; i < B * T; i++) id[i] = (float)((int)tu_uniform(rng, 0, V) % V);
        tie_t u = {B * T, V, C};
        tu_opcheck c = {.g = g, .nin = 1, .in = {ids}, .in_data = {id}, .no_grad = {1}, .out = y, .ref = tie_ref,
                        .ud = &u, .training = 1, .seed = 17, .max_fd = V * C};
        tu_check_op(ctx, "tied embedding + matmul", &c);
        /* The summed gradient is the same bits on a second identical pass. */
        float dy[B * T * V], g1[V * C], g2[V * C];
        tu_fill_uniform(rng, dy, B * T * V, -1, 1);
        for (int run = 0; run < 2; run++) {
            TU_OK(ctx, clt_graph_forward(g, 1));
            TU_OK(ctx, clt_graph_backward_from(g, y, dy, B * T * V));
            TU_OK(ctx, clt_tensor_read(g, w, 1, run ? g2 : g1, V * C));
        }
        TU_CHECK(memcmp(g1, g2, sizeof g1) == 0, "tied gradient differs between two identical passes");
    }
    clt_graph_destroy(g);
}

static void check_errors(clt_context *ctx)
{
    clt_graph *g = NULL;
    clt_tensor *a, *b, *x, *d, *y = NULL;
    int sa[3] = {2, 3, 4}, sb[2] = {5, 4}, sx[2] = {3, 4};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "a", 3, sa, &a));
    TU_OK(ctx, clt_input(g, "b", 2, sb, &b));
    TU_CHECK(clt_matmul(g, a, b, 0, 0, &y) == CLT_ERR_SHAPE && !y, "inner sizes differ");
    TU_CHECK(strstr(clt_errmsg(ctx), "clt_matmul: a (2,3,4) and b (5,4) do not fit (inner sizes 4 and 5;"),
             "message: %s", clt_errmsg(ctx));
    TU_CHECK(clt_matmul(g, a, b, 1, 1, &y) == CLT_ERR_SHAPE, "transposed batched a with one b");
    TU_CHECK(strstr(clt_errmsg(ctx), "do not fit") || strstr(clt_errmsg(ctx), "transposed and batched"),
             "message: %s", clt_errmsg(ctx));
    TU_OK(ctx, clt_input(g, "x", 2, sx, &x));
    TU_OK(ctx, clt_dense(g, x, 4, 1, 0, "fc", &d));
    TU_CHECK(clt_matmul(g, x, clt_graph_param(g, "fc.weight"), 0, 1, &y) == CLT_ERR_INVALID, "dense weight shared");
    TU_CHECK(strstr(clt_errmsg(ctx), "clt_matmul: b 'fc.weight' is a parameter of a dense op, which cannot share it"),
             "message: %s", clt_errmsg(ctx));
    clt_graph_destroy(g);
}

int main(void)
{
    static const mm_case cases[] = {
        {0, 0, 2, {3, 4}, 2, {4, 5}, {0, 0, 0, 1, 3, 5, 4}},
        {1, 0, 3, {2, 4, 3}, 3, {2, 4, 5}, {1, 0, 0, 2, 3, 5, 4}},
        {0, 1, 4, {2, 3, 5, 4}, 4, {2, 3, 6, 4}, {0, 1, 0, 6, 5, 6, 4}},
        {1, 1, 3, {2, 4, 3}, 3, {2, 5, 4}, {1, 1, 0, 2, 3, 5, 4}},
        {0, 1, 3, {2, 3, 4}, 2, {5, 4}, {0, 1, 1, 1, 6, 5, 4}},
        {0, 0, 3, {3, 2, 7}, 2, {7, 9}, {0, 0, 1, 1, 6, 9, 7}},
        {0, 0, 2, {1, 1}, 2, {1, 1}, {0, 0, 0, 1, 1, 1, 1}},
    };
    int nc = (int)(sizeof cases / sizeof cases[0]);
    tu_rng rng = {11};
    const char *paths[2] = {"own", "clblast"};
    for (int pi = 0; pi < 2; pi++) {
        setenv("CLTRAIN_GEMM", paths[pi], 1);
        clt_context *ctx = tu_context();
        if (!ctx) return 1;
        for (int ci = 0; ci < nc; ci++)
            if (pi == 0 || ci == 1 || ci == 2 || ci == 4) check_case(ctx, &rng, &cases[ci], paths[pi], ci);
        if (pi == 0) {
            check_tied(ctx, &rng);
            check_errors(ctx);
        }
        clt_context_destroy(ctx);
    }
    return tu_finish("test_matmul");
}
