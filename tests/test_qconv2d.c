/* test_qconv2d.c - int8 convolution against a reference of the quantized arithmetic: exact integer sums (int64
 * on the host), quantization rounding half away from zero with saturation, then the documented dequantization. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct geom {
    int n, c, h, w, co, kh, kw, sh, sw, ph, pw;
} geom;

static int q8(double v) { double r = round(v); return (int)(r > 127 ? 127 : r < -127 ? -127 : r); }

/* y = (float)acc * osc + b as the documented arithmetic, acc summed exactly in int64. */
static void ref(const geom *d, int oh, int ow, const float *x, float inv, const int8_t *w, const float *osc,
                const float *b, float *y, long long *maxacc)
{
    for (int n = 0; n < d->n; n++)
        for (int co = 0; co < d->co; co++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    long long acc = 0;
                    for (int c = 0; c < d->c; c++)
                        for (int kh = 0; kh < d->kh; kh++)
                            for (int kw = 0; kw < d->kw; kw++) {
                                int ih = i * d->sh - d->ph + kh, iw = j * d->sw - d->pw + kw;
                                if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                                float xv = x[((n * d->c + c) * d->h + ih) * d->w + iw];
                                acc += (long long)q8((double)(xv * inv)) * w[((co * d->c + c) * d->kh + kh) * d->kw + kw];
                            }
                    if (llabs(acc) > *maxacc) *maxacc = llabs(acc);
                    y[((n * d->co + co) * oh + i) * ow + j] = (float)((double)acc * osc[co] + (b ? b[co] : 0.0));
                }
}

/* exact: power-of-two scales and biases on a 1/8 grid, so that every output is a float computed without
 * rounding and must match bit for bit; otherwise arbitrary scales, the float products rounded (2 ulp). */
static void run_case(clt_context *ctx, const geom *d, int exact, int bias, tu_rng *rng)
{
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    int xs[4] = {d->n, d->c, d->h, d->w};
    size_t nx = (size_t)d->n * d->c * d->h * d->w, nw = (size_t)d->co * d->c * d->kh * d->kw;
    float *xd = malloc(nx * sizeof *xd), *ws = malloc(d->co * sizeof *ws), *bd = malloc(d->co * sizeof *bd);
    float *osc = malloc(d->co * sizeof *osc);
    int8_t *wd = malloc(nw);
    float x_scale = exact ? 0.0625f : (float)tu_uniform(rng, 0.01, 0.2);
    float inv = 1.0f / x_scale;
    for (size_t i = 0; i < nx; i++) {
        /* integers around the int8 range (some saturate), halves (rounding direction), quarters */
        double k = floor(tu_uniform(rng, -140, 140)), frac = (double)((int)tu_uniform(rng, 0, 4)) * 0.25;
        xd[i] = exact ? (float)((k + frac) * x_scale) : (float)tu_uniform(rng, -150 * x_scale, 150 * x_scale);
    }
    for (size_t i = 0; i < nw; i++) wd[i] = (int8_t)floor(tu_uniform(rng, -127, 128));
    wd[0] = 127, wd[nw - 1] = -127;
    for (int c = 0; c < d->co; c++) {
        ws[c] = exact ? ldexpf(1.0f, -6 - c % 3) : (float)tu_uniform(rng, 0.001, 0.05);
        bd[c] = exact ? (float)(floor(tu_uniform(rng, -16, 16)) / 8) : (float)tu_uniform(rng, -1, 1);
        osc[c] = x_scale * ws[c];
    }
    clt_conv2d_params p;
    clt_conv2d_default_params(&p, d->co, d->kh);
    p.kernel_w = d->kw, p.stride_h = d->sh, p.stride_w = d->sw, p.pad_h = d->ph, p.pad_w = d->pw;
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
    if (TU_OK(ctx, clt_qconv2d(g, x, &p, wd, ws, bias ? bd : NULL, x_scale, "qc", &y)) &&
        TU_OK(ctx, clt_graph_keep(g, y, 0))) {
        clt_compile_settings cs;
        clt_compile_default_settings(&cs);
        cs.training = 0;
        int oh = clt_tensor_dim(y, 2), ow = clt_tensor_dim(y, 3);
        size_t ny = clt_tensor_numel(y);
        float *got = malloc(ny * sizeof *got), *want = malloc(ny * sizeof *want);
        long long maxacc = 0;
        ref(d, oh, ow, xd, inv, wd, osc, bias ? bd : NULL, want, &maxacc);
        if (TU_OK(ctx, clt_graph_compile(g, &cs)) && TU_OK(ctx, clt_tensor_write(g, x, xd, nx)) &&
            TU_OK(ctx, clt_graph_forward(g, 0)) && TU_OK(ctx, clt_tensor_read(g, y, 0, got, ny))) {
            char label[96];
            snprintf(label, sizeof label, "qconv2d %dx%d s%d p%d co%d %s", d->kh, d->kw, d->sh, d->ph, d->co,
                     exact ? "exact" : "rounded");
            if (exact) {
                TU_CHECK(maxacc < (1 << 24), "%s: the test's sums must stay exact in float (max %lld)", label, maxacc);
                size_t bad = 0;
                for (size_t i = 0; i < ny; i++) bad += got[i] != want[i];
                TU_CHECK(bad == 0, "%s: %zu of %zu outputs differ from the exact integer reference", label, bad, ny);
            } else {
                tu_close_f(label, got, want, ny, 4 * TU_U32, 1e-6);
            }
        }
        free(got);
        free(want);
    }
    clt_graph_destroy(g);
    free(xd), free(ws), free(bd), free(osc), free(wd);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {7};
    /* padding and stride, rows longer than a work-item's 16 columns, channel counts not a multiple of 4, 1x1 */
    geom cases[] = {{2, 3, 7, 19, 5, 3, 3, 1, 1, 1, 1}, {1, 2, 8, 8, 4, 3, 3, 2, 2, 1, 1}, {1, 4, 5, 6, 3, 1, 1, 1, 1, 0, 0},
                    {2, 1, 9, 35, 6, 3, 2, 1, 2, 0, 1}};
    for (int i = 0; i < 4; i++) {
        run_case(ctx, &cases[i], 1, i != 2, &rng);
        run_case(ctx, &cases[i], 0, 1, &rng);
    }
    /* Bad arguments: clear messages, nothing added. */
    clt_graph *g = NULL;
    clt_tensor *x, *y = NULL;
    int xs[4] = {1, 2, 5, 5};
    int8_t w[2 * 2 * 9] = {0};
    float s[2] = {1, 1};
    clt_conv2d_params p;
    clt_conv2d_default_params(&p, 2, 3);
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
    TU_CHECK(clt_qconv2d(g, x, &p, w, s, NULL, 0.0f, NULL, &y) == CLT_ERR_INVALID &&
             strstr(clt_errmsg(ctx), "input scale 0") != NULL, "a zero input scale must be refused: %s", clt_errmsg(ctx));
    w[3] = -128;
    TU_CHECK(clt_qconv2d(g, x, &p, w, s, NULL, 1.0f, NULL, &y) == CLT_ERR_INVALID &&
             strstr(clt_errmsg(ctx), "weight 3 is -128") != NULL, "-128 must be refused: %s", clt_errmsg(ctx));
    w[3] = 0;
    s[1] = -1;
    TU_CHECK(clt_qconv2d(g, x, &p, w, s, NULL, 1.0f, NULL, &y) == CLT_ERR_INVALID &&
             strstr(clt_errmsg(ctx), "weight scale 1 is -1") != NULL, "a negative scale must be refused: %s",
             clt_errmsg(ctx));
    TU_CHECK(y == NULL, "a refused op returns no tensor");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    return tu_finish("test_qconv2d");
}
