/* test_gpt.c - a whole 2-layer GPT (clt_model_build_lm + softmax cross-entropy): its loss and the gradient of
 * EVERY parameter element against an independent double-precision host model of the same network (gradients by
 * central differences of the host loss), tied and untied heads; GPT-2 initialization statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { V = 7, B = 2, T = 5, BLOCK = 6, C = 8, H = 2, L = 2, F = 4 * C };

/* The host model's parameters by name (copied from the graph's state tensors). */
typedef struct {
    int n;
    char name[64][64];
    double *v[64];
    size_t len[64];
} params;

static const double *P(const params *p, const char *fmt, int l)
{
    char nm[64];
    snprintf(nm, sizeof nm, fmt, l);
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->name[i], nm) == 0) return p->v[i];
    fprintf(stderr, "test_gpt: no parameter %s\n", nm);
    exit(1);
}

static void ln(const double *x, const double *w, const double *b, double *y, int rows)
{
    for (int r = 0; r < rows; r++) {
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[r * C + c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[r * C + c] - m) * (x[r * C + c] - m);
        double rs = 1 / sqrt(v / C + 1e-5);
        for (int c = 0; c < C; c++) y[r * C + c] = (x[r * C + c] - m) * rs * w[c] + b[c];
    }
}

/* y (rows, out) = x (rows, in) W^T + b */
static void lin(const double *x, const double *w, const double *b, double *y, int rows, int in, int out)
{
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
            y[r * out + o] = s;
        }
}

static void attn(const double *qkv, double *y)
{
    int hd = C / H;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                double s[T], m = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    double d = 0;
                    for (int e = 0; e < hd; e++)
                        d += qkv[(b * T + i) * 3 * C + h * hd + e] * qkv[(b * T + j) * 3 * C + C + h * hd + e];
                    s[j] = d / sqrt((double)hd);
                    if (s[j] > m) m = s[j];
                }
                for (int j = 0; j <= i; j++) sum += s[j] = exp(s[j] - m);
                for (int e = 0; e < hd; e++) {
                    double a = 0;
                    for (int j = 0; j <= i; j++) a += s[j] / sum * qkv[(b * T + j) * 3 * C + 2 * C + h * hd + e];
                    y[(b * T + i) * C + h * hd + e] = a;
                }
            }
}

/* The mean cross-entropy of the GPT on ids -> targets, written from GPT-2's definition. */
static double host_loss(const params *p, const float *ids, const float *tgt, int tied)
{
    enum { N = B * T };
    static double x[N * C], h[N * C], qkv[N * 3 * C], a[N * C], f[N * F], logits[N * V];
    const double *wte = P(p, "wte.weight", 0), *wpe = P(p, "wpe.weight", 0);
    for (int r = 0; r < N; r++)
        for (int c = 0; c < C; c++) x[r * C + c] = wte[(int)ids[r] * C + c] + wpe[(r % T) * C + c];
    for (int l = 0; l < L; l++) {
        ln(x, P(p, "h%d.ln_1.weight", l), P(p, "h%d.ln_1.bias", l), h, N);
        lin(h, P(p, "h%d.attn.c_attn.weight", l), P(p, "h%d.attn.c_attn.bias", l), qkv, N, C, 3 * C);
        attn(qkv, a);
        lin(a, P(p, "h%d.attn.c_proj.weight", l), P(p, "h%d.attn.c_proj.bias", l), h, N, C, C);
        for (int i = 0; i < N * C; i++) x[i] += h[i];
        ln(x, P(p, "h%d.ln_2.weight", l), P(p, "h%d.ln_2.bias", l), h, N);
        lin(h, P(p, "h%d.mlp.c_fc.weight", l), P(p, "h%d.mlp.c_fc.bias", l), f, N, C, F);
        for (int i = 0; i < N * F; i++) {
            double v = f[i];
            f[i] = 0.5 * v * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
        }
        lin(f, P(p, "h%d.mlp.c_proj.weight", l), P(p, "h%d.mlp.c_proj.bias", l), h, N, F, C);
        for (int i = 0; i < N * C; i++) x[i] += h[i];
    }
    ln(x, P(p, "ln_f.weight", 0), P(p, "ln_f.bias", 0), h, N);
    lin(h, tied ? wte : P(p, "lm_head.weight", 0), NULL, logits, N, C, V);
    double loss = 0;
    for (int r = 0; r < N; r++) {
        double m = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) m = fmax(m, logits[r * V + v]);
        for (int v = 0; v < V; v++) s += exp(logits[r * V + v] - m);
        loss += log(s) + m - logits[r * V + (int)tgt[r]];
    }
    return loss / N;
}

static double sample_std(const float *w, size_t n)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += w[i], s2 += (double)w[i] * w[i];
    return sqrt(s2 / n - (s / n) * (s / n));
}

static void check_gpt(clt_context *ctx, int tied)
{
    char text[256];
    snprintf(text, sizeof text, "gpt layers=%d heads=%d dim=%d block=%d mlp=4 bias=1 tied=%d dropout=0\n", L, H, C,
             BLOCK, tied);
    clt_model *m = NULL;
    if (clt_model_parse(text, "gpt2l", &m) != CLT_OK) {
        TU_CHECK(0, "parse: %s", clt_model_errmsg(m));
        clt_model_destroy(m);
        return;
    }
    clt_graph *g = NULL;
    clt_tensor *ids, *tgt, *logits, *loss, *tflat;
    int si[2] = {B, T}, st[1] = {B * T};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "ids", 2, si, &ids));
    TU_OK(ctx, clt_input(g, "targets", 1, st, &tgt));
    if (!TU_OK(ctx, clt_model_build_lm(g, m, ids, V, &logits))) goto out;
    TU_CHECK(clt_tensor_ndim(logits) == 2 && clt_tensor_dim(logits, 0) == B * T && clt_tensor_dim(logits, 1) == V,
             "logits (B*T, V)");
    tflat = tgt;
    TU_OK(ctx, clt_softmax_cross_entropy(g, logits, tflat, 0.0f, &loss));
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_ADAMW);
    cs.optimizer.decay_matrices_only = 1;
    if (!TU_OK(ctx, clt_graph_compile(g, &cs))) goto out;
    /* GPT-2's decay rule: linear weights decay; embeddings, biases and norms do not. */
    {
        static const char *const names[][2] = {{"wte.weight", "0"}, {"wpe.weight", "0"}, {"h0.ln_1.weight", "0"},
                                               {"h0.attn.c_attn.bias", "0"}, {"h1.mlp.c_fc.weight", "1"},
                                               {"h0.attn.c_proj.weight", "1"}};
        for (int i = 0; i < 6; i++) {
            int dec = -1;
            TU_OK(ctx, clt_tensor_weight_decay(g, clt_graph_param(g, names[i][0]), &dec));
            TU_CHECK(dec == names[i][1][0] - '0', "%s decays: %d", names[i][0], dec);
        }
    }
    /* GPT-2 initialization: N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)), biases 0, norms 1/0. */
    {
        static float w[F * C];
        clt_tensor *t = clt_graph_param(g, "h1.mlp.c_fc.weight");
        TU_OK(ctx, clt_tensor_read(g, t, 0, w, F * C));
        double sd = sample_std(w, F * C);
        TU_CHECK(fabs(sd - 0.02) < 0.004, "c_fc std %g (want 0.02)", sd);
        t = clt_graph_param(g, "h0.mlp.c_proj.weight");
        TU_OK(ctx, clt_tensor_read(g, t, 0, w, F * C));
        sd = sample_std(w, F * C);
        TU_CHECK(fabs(sd - 0.01) < 0.002, "c_proj std %g (want 0.02/sqrt(4))", sd);
        TU_OK(ctx, clt_tensor_read(g, clt_graph_param(g, "h0.attn.c_attn.bias"), 0, w, 3 * C));
        for (int i = 0; i < 3 * C; i++) TU_CHECK(w[i] == 0, "bias starts at 0");
        TU_OK(ctx, clt_tensor_read(g, clt_graph_param(g, "ln_f.weight"), 0, w, C));
        for (int i = 0; i < C; i++) TU_CHECK(w[i] == 1, "norm scale starts at 1");
    }
    /* Random parameters well away from the initialization, so that every path carries gradient. */
    params p = {0};
    tu_rng rng = {tied ? 3u : 4u};
    int ns = clt_graph_state_count(g);
    TU_CHECK(ns == 4 + 12 * L + (tied ? 0 : 1), "%d state tensors", ns);
    for (int i = 0; i < ns && p.n < 64; i++) {
        clt_tensor *t = clt_graph_state_tensor(g, i, NULL);
        size_t n = clt_tensor_numel(t);
        float *tmp = malloc(n * sizeof(float));
        tu_fill_uniform(&rng, tmp, n, -0.5, 0.5);
        if (strstr(clt_tensor_name(t), "ln_") && strstr(clt_tensor_name(t), "weight"))
            for (size_t j = 0; j < n; j++) tmp[j] += 1.0f;
        TU_OK(ctx, clt_tensor_write(g, t, tmp, n));
        snprintf(p.name[p.n], 64, "%s", clt_tensor_name(t));
        p.v[p.n] = malloc(n * sizeof(double));
        p.len[p.n] = n;
        for (size_t j = 0; j < n; j++) p.v[p.n][j] = tmp[j];
        p.n++;
        free(tmp);
    }
    float idv[B * T], tv[B * T];
    for (int i = 0; i < B * T; i++) idv[i] = (float)(i == 0 ? 0 : i == 1 ? V - 1 : (int)tu_uniform(&rng, 0, V) % V);
    for (int i = 0; i < B * T; i++) tv[i] = (float)((int)tu_uniform(&rng, 0, V) % V);
    TU_OK(ctx, clt_tensor_write(g, ids, idv, B * T));
    TU_OK(ctx, clt_tensor_write(g, tgt, tv, B * T));
    float lv = 0;
    TU_OK(ctx, clt_graph_forward(g, 1));
    TU_OK(ctx, clt_tensor_read(g, loss, 0, &lv, 1));
    TU_OK(ctx, clt_graph_backward(g, loss));
    double ref = host_loss(&p, idv, tv, tied);
    TU_CHECK(fabs(lv - ref) <= 1e-5 + 1e-5 * fabs(ref), "loss %.8g, host %.8g", lv, ref);
    /* Every element of every parameter: device gradient vs central differences of the host loss. */
    size_t total = 0;
    for (int i = 0; i < p.n; i++) {
        float *got = malloc(p.len[i] * sizeof(float));
        double *want = malloc(p.len[i] * sizeof(double));
        TU_OK(ctx, clt_tensor_read(g, clt_graph_param(g, p.name[i]), 1, got, p.len[i]));
        for (size_t j = 0; j < p.len[i]; j++) {
            double s = p.v[i][j], hh = 1e-5;
            p.v[i][j] = s + hh;
            double fp = host_loss(&p, idv, tv, tied);
            p.v[i][j] = s - hh;
            double fm = host_loss(&p, idv, tv, tied);
            p.v[i][j] = s;
            want[j] = (fp - fm) / (2 * hh);
        }
        char what[128];
        snprintf(what, sizeof what, "gpt (tied %d) d loss / d %s", tied, p.name[i]);
        tu_close(what, got, want, p.len[i], 2e-3, 2e-6);
        total += p.len[i];
        free(got), free(want);
    }
    for (int i = 0; i < p.n; i++) free(p.v[i]);
    printf("ok   gpt tied=%d: loss %.6f (host %.6f), %zu parameter gradients checked\n", tied, lv, ref, total);
out:
    clt_graph_destroy(g);
    clt_model_destroy(m);
}

static void check_errors(clt_context *ctx)
{
    clt_model *m = NULL, *img = NULL;
    clt_graph *g = NULL;
    clt_tensor *ids, *y = NULL;
    int s[2] = {2, BLOCK + 1};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "ids", 2, s, &ids));
    if (clt_model_parse("gpt layers=1 heads=2 dim=8 block=6\n", "g6", &m) == CLT_OK) {
        TU_CHECK(clt_model_build_lm(g, m, ids, V, &y) == CLT_ERR_SHAPE && !y, "T > block");
        TU_CHECK(strstr(clt_errmsg(ctx), "clt_model_build_lm: ids 'ids' (2,7) must be (B, T) with T <= block = 6"),
                 "message: %s", clt_errmsg(ctx));
    }
    if (clt_model_parse("dense 3\n", "img", &img) == CLT_OK) {
        TU_CHECK(clt_model_build_lm(g, img, ids, V, &y) == CLT_ERR_INVALID, "image model");
        TU_CHECK(strstr(clt_errmsg(ctx), "clt_model_build_lm: img has no gpt line (not a language model)"),
                 "message: %s", clt_errmsg(ctx));
    }
    clt_graph_destroy(g);
    clt_model_destroy(m);
    clt_model_destroy(img);
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    check_gpt(ctx, 1);
    check_gpt(ctx, 0);
    check_errors(ctx);
    clt_context_destroy(ctx);
    return tu_finish("test_gpt");
}
