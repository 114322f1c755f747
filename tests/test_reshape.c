/* test_reshape.c - reshape/flatten views: a view of a view, views feeding several consumers, a kept view, a
 * view as the output, the gradient of a kept view of an input, and the shape errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Graph A on x (2,3,2,2): h = tanh(x); v2 = reshape(reshape(h, (2,12)), (6,4)); v3 = reshape(h, (6,4));
 * y = reshape((softmax(v2) + v3) + (v2 + v3), (24)). */
static void ref_a(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)v, (void)p;
    double h[24];
    for (int i = 0; i < 24; i++) h[i] = tanh(in[0][i]);
    for (int r = 0; r < 6; r++) {
        double m = -INFINITY, sum = 0;
        for (int c = 0; c < 4; c++) m = fmax(m, h[r * 4 + c]);
        for (int c = 0; c < 4; c++) sum += exp(h[r * 4 + c] - m);
        for (int c = 0; c < 4; c++) {
            int i = r * 4 + c;
            out[i] = exp(h[i] - m) / sum + h[i] + h[i] + h[i];
        }
    }
}

/* Graph C on x (3,8): y = softmax(flatten(x as (3,2,2,2))) as (3,2,2,2) over its 2 channels, flattened back. */
static void ref_c(void *v, const double *const *in, const double *const *p, double *out)
{
    (void)v, (void)p;
    for (int n = 0; n < 3; n++)
        for (int s = 0; s < 4; s++) {
            double a = in[0][n * 8 + s], b = in[0][n * 8 + 4 + s], m = fmax(a, b);
            double ea = exp(a - m), eb = exp(b - m);
            out[n * 8 + s] = ea / (ea + eb);
            out[n * 8 + 4 + s] = eb / (ea + eb);
        }
}

static void graph_a(clt_context *ctx)
{
    clt_graph *g = NULL;
    clt_tensor *x, *h, *v1, *v2, *v3, *s, *a, *b, *c, *y;
    int xs[4] = {2, 3, 2, 2}, s1[2] = {2, 12}, s2[2] = {-1, 4}, s3[2] = {6, 4}, s4[1] = {-1};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
    TU_OK(ctx, clt_tanh(g, x, &h));
    TU_OK(ctx, clt_reshape(g, h, 2, s1, &v1));
    TU_OK(ctx, clt_reshape(g, v1, 2, s2, &v2));
    TU_CHECK(clt_tensor_dim(v2, 0) == 6 && clt_tensor_dim(v2, 1) == 4, "-1 inferred as %d", clt_tensor_dim(v2, 0));
    TU_OK(ctx, clt_reshape(g, h, 2, s3, &v3));
    TU_OK(ctx, clt_softmax(g, v2, &s));
    TU_OK(ctx, clt_add(g, s, v3, &a));
    TU_OK(ctx, clt_add(g, v2, v3, &b)); /* two views of one tensor: one gradient memory */
    TU_OK(ctx, clt_add(g, a, b, &c));
    TU_OK(ctx, clt_reshape(g, c, 1, s4, &y));
    TU_OK(ctx, clt_graph_keep(g, x, 1));
    TU_OK(ctx, clt_graph_keep(g, v1, 0)); /* a kept view keeps its root */
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
        clt_graph_destroy(g);
        return;
    }
    tu_rng rng = {3};
    float xd[24], hv[24];
    double want[24];
    tu_fill_uniform(&rng, xd, 24, -2, 2);
    tu_opcheck ch = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref_a, .training = 1, .seed = 9,
                     /* tanh, a softmax over 4 and three adds: short sums (k = 8), float32 tanh/exp (8 more u); the
                      * curvature of tanh and softmax truncates finite differences by ~h^2/6 * 2 */
                     .rtol = tu_sum_rtol(8) + 8 * TU_U32, .atol = tu_sum_atol(8, 1), .fd_atol = 1e-6 / 6 * 2};
    tu_check_op(ctx, "views: chain, fan-out, aliasing add, view output", &ch);
    /* The kept view still holds tanh(x) after the backward pass. */
    if (TU_OK(ctx, clt_tensor_read(g, v1, 0, hv, 24))) {
        for (int i = 0; i < 24; i++) want[i] = tanh((double)xd[i]);
        tu_close("kept view value", hv, want, 24, 1e-5, 1e-6);
    }
    clt_graph_destroy(g);
}

static void graph_c(clt_context *ctx)
{
    clt_graph *g = NULL;
    clt_tensor *x, *v, *s, *y;
    int xs[2] = {3, 8}, vs[4] = {3, 2, 2, 2};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    TU_OK(ctx, clt_reshape(g, x, 4, vs, &v)); /* a view of an input */
    TU_OK(ctx, clt_softmax(g, v, &s));
    TU_OK(ctx, clt_flatten(g, s, &y));
    TU_CHECK(clt_tensor_ndim(y) == 2 && clt_tensor_dim(y, 0) == 3 && clt_tensor_dim(y, 1) == 8, "flatten shape");
    TU_OK(ctx, clt_graph_keep(g, x, 1));
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
        clt_graph_destroy(g);
        return;
    }
    tu_rng rng = {4};
    float xd[24];
    tu_fill_uniform(&rng, xd, 24, -2, 2);
    tu_opcheck ch = {.g = g, .nin = 1, .in = {x}, .in_data = {xd}, .out = y, .ref = ref_c, .training = 1, .seed = 2,
                     /* a softmax over 2 channels: k = 2, float32 exp, curved */
                     .rtol = tu_sum_rtol(2) + 8 * TU_U32, .atol = tu_sum_atol(2, 1), .fd_atol = 1e-6 / 6 * 2};
    tu_check_op(ctx, "views: of an input, flatten output", &ch);
    clt_graph_destroy(g);
}

/* Keeping the gradient of a view of an input makes the backward pass compute it. */
static void graph_b(clt_context *ctx)
{
    clt_graph *g = NULL;
    clt_tensor *x, *v, *y;
    int xs[2] = {3, 4}, vs[2] = {4, 3};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    TU_OK(ctx, clt_reshape(g, x, 2, vs, &v));
    TU_OK(ctx, clt_softmax(g, v, &y));
    TU_OK(ctx, clt_graph_keep(g, v, 1));
    TU_OK(ctx, clt_graph_keep(g, y, 0));
    if (!TU_OK(ctx, clt_graph_compile(g, NULL))) {
        clt_graph_destroy(g);
        return;
    }
    tu_rng rng = {5};
    float xd[12], R[12], yv[12], gv[12];
    double want[12];
    tu_fill_uniform(&rng, xd, 12, -2, 2);
    tu_fill_uniform(&rng, R, 12, -1, 1);
    if (TU_OK(ctx, clt_tensor_write(g, x, xd, 12)) && TU_OK(ctx, clt_graph_forward(g, 1)) &&
        TU_OK(ctx, clt_tensor_read(g, y, 0, yv, 12)) && TU_OK(ctx, clt_graph_backward_from(g, y, R, 12)) &&
        TU_OK(ctx, clt_tensor_read(g, v, 1, gv, 12))) {
        for (int r = 0; r < 4; r++) {
            double dot = 0;
            for (int c = 0; c < 3; c++) dot += (double)R[r * 3 + c] * yv[r * 3 + c];
            for (int c = 0; c < 3; c++) want[r * 3 + c] = yv[r * 3 + c] * (R[r * 3 + c] - dot);
        }
        /* y * (R - sum R*y) over rows of 3, from the device's own y: short sums (k = 4) */
        tu_close("gradient of a kept view of an input", gv, want, 12, tu_sum_rtol(4), tu_sum_atol(4, 1));
    }
    clt_graph_destroy(g);
}

static void errors(clt_context *ctx)
{
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    int xs[2] = {4, 6};
    int bad_count[2] = {5, 5}, two_infer[3] = {-1, -1, 6}, zero[2] = {0, 24}, neg[2] = {-2, -12},
        no_divide[2] = {-1, 5}, ok5[5] = {1, 2, 2, 3, 2};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, xs, &x));
    TU_CHECK(clt_reshape(g, x, 2, bad_count, &y) == CLT_ERR_SHAPE && y == NULL, "24 values into (5,5)");
    TU_CHECK(strstr(clt_errmsg(ctx), "(4,6)") != NULL, "message names the input shape: %s", clt_errmsg(ctx));
    TU_CHECK(clt_reshape(g, x, 3, two_infer, &y) == CLT_ERR_SHAPE, "two -1 entries");
    TU_CHECK(clt_reshape(g, x, 2, zero, &y) == CLT_ERR_SHAPE, "zero dimension");
    TU_CHECK(clt_reshape(g, x, 2, neg, &y) == CLT_ERR_SHAPE, "negative dimension other than -1");
    TU_CHECK(clt_reshape(g, x, 2, no_divide, &y) == CLT_ERR_SHAPE, "-1 with a non-divisor");
    TU_CHECK(clt_reshape(g, x, 5, ok5, &y) == CLT_ERR_SHAPE, "5 dimensions");
    TU_CHECK(clt_reshape(g, x, 2, NULL, &y) == CLT_ERR_SHAPE, "NULL shape");
    TU_CHECK(clt_reshape(g, NULL, 2, xs, &y) == CLT_ERR_INVALID, "NULL input");
    TU_CHECK(clt_flatten(g, NULL, &y) == CLT_ERR_INVALID, "NULL input to flatten");
    /* 2^30 * 2^30 * 16 = 2^64 wraps a size_t product to 0, which then divided by zero (undefined: a SIGFPE
     * with some compilers, a trap under -fsanitize=undefined). */
    int wrap0[4] = {-1, 1 << 30, 1 << 30, 16};
    TU_CHECK(clt_reshape(g, x, 4, wrap0, &y) == CLT_ERR_SHAPE && y == NULL, "-1 with a known product of 2^64");
    clt_graph_destroy(g);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    graph_a(ctx);
    graph_b(ctx);
    graph_c(ctx);
    errors(ctx);
    clt_context_destroy(ctx);
    return tu_finish("test_reshape");
}
