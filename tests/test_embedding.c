/* test_embedding.c - token and position embeddings against double references and finite differences
 * (per-element tolerances), a deterministic gradient (bit-identical over runs), and bad ids refused by message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    int p, c; /* positions, dims */
    int t;    /* pos: T */
} ud_t;

static void emb_ref(void *v, const double *const *in, const double *const *p, double *out)
{
    ud_t *d = v;
    for (int i = 0; i < d->p; i++)
        for (int c = 0; c < d->c; c++) out[(size_t)i * d->c + c] = p[0][(size_t)in[0][i] * d->c + c];
}

static void pos_ref(void *v, const double *const *in, const double *const *p, double *out)
{
    ud_t *d = v; /* p = numel of x */
    size_t tc = (size_t)d->t * d->c;
    for (size_t i = 0; i < (size_t)d->p; i++) out[i] = in[0][i] + p[0][i % tc];
}

static void check_embedding(clt_context *ctx, tu_rng *rng, int nd, const int *shape, int V, int C, int ci)
{
    clt_graph *g = NULL;
    clt_tensor *ids, *y;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "ids", nd, shape, &ids));
    TU_OK(ctx, clt_embedding(g, ids, V, C, "wte", &y));
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
        clt_graph_destroy(g);
        return;
    }
    size_t P = clt_tensor_numel(ids);
    float *id = malloc(P * sizeof(float));
    /* Every id once at the borders (0 and V-1), the rest random: repeated ids sum their gradients. */
    for (size_t i = 0; i < P; i++) id[i] = (float)(i == 0 ? 0 : i == P - 1 ? V - 1 : (int)tu_uniform(rng, 0, V) % V);
    ud_t u = {(int)P, C, 0};
    tu_opcheck c = {.g = g, .nin = 1, .in = {ids}, .in_data = {id}, .no_grad = {1}, .out = y, .ref = emb_ref,
                    .ud = &u, .training = 1, .seed = (uint64_t)ci + 5, .max_fd = 200};
    char label[64];
    snprintf(label, sizeof label, "embedding case %d", ci);
    tu_check_op(ctx, label, &c);
    free(id);
    clt_graph_destroy(g);
}

static void check_pos(clt_context *ctx, tu_rng *rng, int nd, const int *shape, int ci)
{
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", nd, shape, &x));
    TU_OK(ctx, clt_pos_embedding(g, x, shape[nd - 2] + (ci == 1 ? 2 : 0), "wpe", &y));
    TU_OK(ctx, clt_graph_keep(g, x, 1));
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
        clt_graph_destroy(g);
        return;
    }
    TU_CHECK(clt_graph_param(g, "wpe.weight") != NULL, "wpe.weight by name");
    int dec = -1;
    TU_OK(ctx, clt_tensor_weight_decay(g, clt_graph_param(g, "wpe.weight"), &dec));
    TU_CHECK(dec == 1, "with decay_matrices_only 0 every parameter decays (%d)", dec);
    size_t n = clt_tensor_numel(x);
    float *xd = malloc(n * sizeof(float));
    tu_fill_uniform(rng, xd, n, -1, 1);
    ud_t u = {(int)n, shape[nd - 1], shape[nd - 2]};
    tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = pos_ref, .ud = &u,
                    .training = 1, .seed = (uint64_t)ci + 9};
    char label[64];
    snprintf(label, sizeof label, "pos_embedding case %d", ci);
    tu_check_op(ctx, label, &c);
    free(xd);
    clt_graph_destroy(g);
}

/* Many positions share few ids: two backward passes give bit-identical table gradients, equal to the sums. */
static void check_deterministic(clt_context *ctx, tu_rng *rng)
{
    enum { P = 300, V = 3, C = 5 };
    clt_graph *g = NULL;
    clt_tensor *ids, *y;
    int s[1] = {P};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "ids", 1, s, &ids));
    TU_OK(ctx, clt_embedding(g, ids, V, C, "e", &y));
    if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
        clt_graph_destroy(g);
        return;
    }
    static float id[P], dy[P * C], g1[V * C], g2[V * C];
    for (int i = 0; i < P; i++) id[i] = (float)((int)tu_uniform(rng, 0, V) % V);
    tu_fill_uniform(rng, dy, P * C, -1, 1);
    TU_OK(ctx, clt_tensor_write(g, ids, id, P));
    clt_tensor *w = clt_graph_param(g, "e.weight");
    for (int run = 0; run < 2; run++) {
        TU_OK(ctx, clt_graph_forward(g, 1));
        TU_OK(ctx, clt_graph_backward_from(g, y, dy, P * C));
        TU_OK(ctx, clt_tensor_read(g, w, 1, run ? g2 : g1, V * C));
    }
    TU_CHECK(memcmp(g1, g2, sizeof g1) == 0, "embedding gradient differs between two identical passes");
    double ref[V * C] = {0};
    for (int i = 0; i < P; i++)
        for (int c = 0; c < C; c++) ref[(int)id[i] * C + c] += dy[i * C + c];
    tu_close("embedding deterministic sums", g1, ref, V * C, 1e-5, 1e-5);
    clt_graph_destroy(g);
}

static void check_bad_ids(clt_context *ctx)
{
    clt_graph *g = NULL;
    clt_tensor *ids, *y = NULL;
    int s[2] = {2, 3};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "ids", 2, s, &ids));
    TU_CHECK(clt_embedding(g, ids, 0, 4, NULL, &y) == CLT_ERR_INVALID && !y, "vocabulary 0 refused");
    TU_CHECK(strstr(clt_errmsg(ctx), "clt_embedding: vocabulary 0 and dimension 4") != NULL, "message: %s",
             clt_errmsg(ctx));
    int s4[4] = {1, 1, 1, 2};
    clt_tensor *i4;
    TU_OK(ctx, clt_input(g, "i4", 4, s4, &i4));
    TU_CHECK(clt_embedding(g, i4, 5, 4, NULL, &y) == CLT_ERR_SHAPE, "4-D ids refused");
    TU_CHECK(strstr(clt_errmsg(ctx), "at most 3 dimensions") != NULL, "message: %s", clt_errmsg(ctx));
    TU_CHECK(clt_pos_embedding(g, ids, 2, NULL, &y) == CLT_OK, "pos embedding of (2,3)");
    TU_CHECK(clt_pos_embedding(g, ids, 1, NULL, &y) == CLT_ERR_SHAPE, "table shorter than T: %s", clt_errmsg(ctx));
    TU_CHECK(strstr(clt_errmsg(ctx), "input 'ids' has 2 positions, more than the table's 1"), "message: %s",
             clt_errmsg(ctx));
    TU_OK(ctx, clt_embedding(g, ids, 7, 4, "tok", &y));
    if (TU_OK(ctx, clt_graph_compile(g, NULL))) {
        float bad1[6] = {0, 1, 2, 3, 7, 6}, bad2[6] = {0, 2.5f, 1, 1, 1, 1}, good[6] = {0, 6, 1, 2, 3, 4};
        TU_OK(ctx, clt_tensor_write(g, ids, bad1, 6));
        TU_CHECK(clt_graph_forward(g, 0) == CLT_ERR_INVALID, "id 7 of 7 refused");
        TU_CHECK(strstr(clt_errmsg(ctx), "embedding 'tok': id 7 at position 4 of 'ids' is not an integer in [0, 7)"),
                 "message: %s", clt_errmsg(ctx));
        TU_OK(ctx, clt_tensor_write(g, ids, bad2, 6));
        TU_CHECK(clt_graph_forward(g, 0) == CLT_ERR_INVALID, "id 2.5 refused");
        TU_CHECK(strstr(clt_errmsg(ctx), "id 2.5 at position 1 of 'ids'"), "message: %s", clt_errmsg(ctx));
        TU_OK(ctx, clt_tensor_write(g, ids, good, 6));
        TU_OK(ctx, clt_graph_forward(g, 0));
    }
    clt_graph_destroy(g);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {31};
    int s1[1] = {3}, s2[2] = {2, 5}, s3[3] = {2, 3, 7};
    check_embedding(ctx, &rng, 1, s1, 1, 1, 0);
    check_embedding(ctx, &rng, 2, s2, 7, 3, 1);
    check_embedding(ctx, &rng, 3, s3, 40, 33, 2);
    int p1[2] = {4, 2}, p2[3] = {3, 5, 3}, p3[4] = {2, 2, 3, 37};
    check_pos(ctx, &rng, 2, p1, 0);
    check_pos(ctx, &rng, 3, p2, 1);
    check_pos(ctx, &rng, 4, p3, 2);
    check_deterministic(ctx, &rng);
    check_bad_ids(ctx);
    clt_context_destroy(ctx);
    return tu_finish("test_embedding");
}
