/* test_attention.c - fused causal multi-head self-attention against a plain-C double reference with the mask,
 * finite differences (per-element tolerances), the no-leak property (a later token leaves earlier outputs
 * bit-identical), and shape errors by message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    int b, t, c, h;
} ud_t;

static void ref(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)p;
    ud_t *d = v;
    int hd = d->c / d->h, C3 = 3 * d->c;
    double *s = malloc((size_t)d->t * sizeof(double));
    for (int b = 0; b < d->b; b++)
        for (int h = 0; h < d->h; h++)
            for (int i = 0; i < d->t; i++) {
                const double *q = in[0] + ((size_t)b * d->t + i) * C3 + h * hd;
                double m = -INFINITY, sum = 0;
                for (int j = 0; j < d->t; j++) {
                    const double *k = in[0] + ((size_t)b * d->t + j) * C3 + d->c + h * hd;
                    double dot = 0;
                    for (int e = 0; e < hd; e++) dot += q[e] * k[e];
                    s[j] = j <= i ? dot / sqrt((double)hd) : -INFINITY; /* the causal mask */
                    if (s[j] > m) m = s[j];
                }
                for (int j = 0; j < d->t; j++) sum += s[j] = exp(s[j] - m);
                for (int e = 0; e < hd; e++) {
                    double acc = 0;
                    for (int j = 0; j < d->t; j++)
                        acc += s[j] / sum * in[0][((size_t)b * d->t + j) * C3 + 2 * d->c + h * hd + e];
                    out[((size_t)b * d->t + i) * d->c + h * hd + e] = acc;
                }
            }
    free(s);
}

static clt_graph *build(clt_context *ctx, const ud_t *u, clt_tensor **x, clt_tensor **y)
{
    clt_graph *g = NULL;
    int shape[3] = {u->b, u->t, 3 * u->c};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "qkv", 3, shape, x));
    TU_OK(ctx, clt_causal_attention(g, *x, u->h, y));
    TU_OK(ctx, clt_graph_keep(g, *x, 1));
    TU_OK(ctx, clt_graph_keep(g, *y, 0));
    if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
        clt_graph_destroy(g);
        return NULL;
    }
    return g;
}

static void check_no_leak(clt_context *ctx, tu_rng *rng)
{
    ud_t u = {2, 6, 8, 2};
    clt_tensor *x, *y;
    clt_graph *g = build(ctx, &u, &x, &y);
    if (!g) return;
    enum { N = 2 * 6 * 24, NO = 2 * 6 * 8 };
    float xd[N], y1[NO], y2[NO];
    tu_fill_uniform(rng, xd, N, -2, 2);
    TU_OK(ctx, clt_tensor_write(g, x, xd, N));
    TU_OK(ctx, clt_graph_forward(g, 0));
    TU_OK(ctx, clt_tensor_read(g, y, 0, y1, NO));
    for (int e = 0; e < 24; e++) xd[4 * 24 + e] += 0.5f; /* token 4 of sequence 0: its q, k and v */
    TU_OK(ctx, clt_tensor_write(g, x, xd, N));
    TU_OK(ctx, clt_graph_forward(g, 0));
    TU_OK(ctx, clt_tensor_read(g, y, 0, y2, NO));
    TU_CHECK(memcmp(y1, y2, 4 * 8 * sizeof(float)) == 0, "tokens 0..3 changed when token 4 did");
    TU_CHECK(memcmp(y1 + 6 * 8, y2 + 6 * 8, 6 * 8 * sizeof(float)) == 0, "the other sequence changed");
    TU_CHECK(memcmp(y1 + 4 * 8, y2 + 4 * 8, 8 * sizeof(float)) != 0, "token 4 itself must change");
    clt_graph_destroy(g);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    /* (B, T, C, H): one token, odd T, head sizes 1, 3 and 4 (few kernel builds), one and several heads. */
    ud_t cases[] = {{1, 1, 3, 1}, {2, 5, 6, 2}, {2, 7, 12, 3}, {1, 9, 4, 1}, {3, 4, 4, 4}};
    tu_rng rng = {5};
    for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
        clt_tensor *x, *y;
        clt_graph *g = build(ctx, &cases[ci], &x, &y);
        if (!g) continue;
        size_t n = clt_tensor_numel(x);
        float *xd = malloc(n * sizeof(float));
        tu_fill_uniform(&rng, xd, n, -1.5, 1.5);
        tu_opcheck c = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref, .ud = &cases[ci],
                        .training = 1, .seed = (uint64_t)ci + 2, .rtol = 1e-4, .atol = 1e-5,
                        .grad_rtol = 3e-3, .grad_atol = 2e-4, .max_fd = 96};
        char label[64];
        snprintf(label, sizeof label, "attention case %d", ci);
        tu_check_op(ctx, label, &c);
        free(xd);
        clt_graph_destroy(g);
    }
    check_no_leak(ctx, &rng);
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    int s1[3] = {2, 3, 10}, s2[3] = {2, 3, 12};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "a", 3, s1, &x));
    TU_CHECK(clt_causal_attention(g, x, 2, &y) == CLT_ERR_SHAPE && !y, "3C not a multiple of 3");
    TU_CHECK(strstr(clt_errmsg(ctx), "qkv 'a' (2,3,10) must be (B, T, 3*C)"), "message: %s", clt_errmsg(ctx));
    TU_OK(ctx, clt_input(g, "b", 3, s2, &x));
    TU_CHECK(clt_causal_attention(g, x, 3, &y) == CLT_ERR_SHAPE, "3 heads of C = 4");
    TU_CHECK(strstr(clt_errmsg(ctx), "3 heads do not divide C = 4"), "message: %s", clt_errmsg(ctx));
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_attention");
}
