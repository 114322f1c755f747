/* test_quant.c - post-training int8 quantization end to end: a small trained model quantized with calibration keeps
 * its accuracy on generated data; the quantized file is smaller, loads through clt_graph_load, and a flipped or
 * truncated file is refused with a message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define S 8
#define K 3

/* Class k: a bright horizontal bar (0), vertical bar (1) or diagonal (2) at a random place, on noise. */
static void gen(tu_rng *r, int n, float *x, float *y)
{
    for (int i = 0; i < n; i++) {
        int k = i % K, p = 1 + (int)tu_uniform(r, 0, S - 2);
        float *im = x + (size_t)i * S * S;
        for (int j = 0; j < S * S; j++) im[j] = (float)(0.7 * tu_normal(r));
        for (int t = 0; t < S; t++) {
            int row = k == 0 ? p : t, col = k == 1 ? p : k == 0 ? t : (t + p) % S;
            im[row * S + col] += 1.5f;
        }
        y[i] = (float)k;
    }
}

static double accuracy(const float *logits, const float *y, int n, int *argmax)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        int b = 0;
        for (int k = 1; k < K; k++) b = logits[i * K + k] > logits[i * K + b] ? k : b;
        if (argmax) argmax[i] = b;
        ok += b == (int)y[i];
    }
    return (double)ok / n;
}

static long fsize(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Trains the model and saves it to path; returns 1 on success. */
static int train(clt_context *ctx, const char *path, tu_rng *rng)
{
    const char *text = "conv 8 3 pad=same\nbatchnorm\nrelu\nmaxpool 2\nconv 8 3 pad=same bias=0\nrelu\nflatten\n"
                       "dense 16\nrelu\ndense classes\n";
    clt_model *m = NULL;
    clt_graph *g = NULL;
    clt_tensor *x, *lab, *logits, *loss;
    int xs[4] = {32, 1, S, S}, ls[1] = {32}, ok = 0;
    float xb[32 * S * S], yb[32];
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_ADAM);
    cs.seed = 3;
    if (TU_OK(ctx, clt_model_parse(text, "qtest", &m)) && TU_OK(ctx, clt_graph_create(ctx, &g)) &&
        TU_OK(ctx, clt_input(g, "x", 4, xs, &x)) && TU_OK(ctx, clt_input(g, "y", 1, ls, &lab)) &&
        TU_OK(ctx, clt_model_build(g, m, x, K, &logits)) &&
        TU_OK(ctx, clt_softmax_cross_entropy(g, logits, lab, 0, &loss)) && TU_OK(ctx, clt_graph_compile(g, &cs))) {
        ok = 1;
        for (int s = 0; s < 150 && ok; s++) {
            gen(rng, 32, xb, yb);
            ok = TU_OK(ctx, clt_tensor_write(g, x, xb, sizeof xb / sizeof *xb)) &&
                 TU_OK(ctx, clt_tensor_write(g, lab, yb, 32)) && TU_OK(ctx, clt_graph_forward(g, 1)) &&
                 TU_OK(ctx, clt_graph_backward(g, loss)) && TU_OK(ctx, clt_graph_step(g, 0.01f));
        }
        ok = ok && TU_OK(ctx, clt_graph_save(g, path, NULL, 0));
    }
    clt_graph_destroy(g);
    clt_model_destroy(m);
    return ok;
}

static double eval_file(clt_context *ctx, const char *path, const float *x, const float *y, int n, int *argmax)
{
    clt_graph *g = NULL;
    float *logits = malloc((size_t)n * K * sizeof *logits);
    double acc = -1;
    if (TU_OK(ctx, clt_graph_load(ctx, path, NULL, &g)) && TU_OK(ctx, clt_predict(g, x, (size_t)n, logits)))
        acc = accuracy(logits, y, n, argmax);
    clt_graph_destroy(g);
    free(logits);
    return acc;
}

static void tamper(const char *src, const char *dst, long at, long keep)
{
    FILE *f = fopen(src, "rb");
    long n = fsize(src);
    unsigned char *b = malloc((size_t)n);
    if (!f || !b || fread(b, 1, (size_t)n, f) != (size_t)n) abort();
    fclose(f);
    if (at >= 0) b[at] ^= 0x10;
    f = fopen(dst, "wb");
    fwrite(b, 1, (size_t)(keep >= 0 ? keep : n), f);
    fclose(f);
    free(b);
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv;
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    char fp[512], qp[512], bad[512];
    const char *dir = getenv("CLTRAIN_CACHE_DIR") ? getenv("CLTRAIN_CACHE_DIR") : ".";
    snprintf(fp, sizeof fp, "%s/test_quant.ckpt", dir);
    snprintf(qp, sizeof qp, "%s/test_quant.q8", dir);
    snprintf(bad, sizeof bad, "%s/test_quant_bad.q8", dir);
    remove(qp);
    tu_rng rng = {5};
    if (!train(ctx, fp, &rng)) return tu_finish("test_quant");
    enum { NCAL = 96, NTEST = 600 };
    float *cx = malloc(NCAL * S * S * sizeof(float)), cy[NCAL];
    float *tx = malloc(NTEST * S * S * sizeof(float)), *ty = malloc(NTEST * sizeof(float));
    gen(&rng, NCAL, cx, cy);
    gen(&rng, NTEST, tx, ty);
    clt_quant_report rep = {0};
    clt_quant_settings qs;
    clt_quant_default_settings(&qs);
    TU_CHECK(clt_quantize(ctx, fp, cx, NCAL, &qs, fp, &rep) == CLT_ERR_INVALID &&
             strstr(clt_errmsg(ctx), "is the input checkpoint"), "writing over the input must be refused: %s",
             clt_errmsg(ctx));
    if (TU_OK(ctx, clt_quantize(ctx, fp, cx, NCAL, &qs, qp, &rep))) {
        TU_CHECK(rep.layers_int8 == 4 && rep.layers_float == 0, "4 int8 layers expected, got %d (+%d float)",
                 rep.layers_int8, rep.layers_float);
        TU_CHECK((long)rep.bytes == fsize(qp) && fsize(qp) < fsize(fp), "quantized file %ld bytes (report %llu), float "
                 "%ld", fsize(qp), (unsigned long long)rep.bytes, fsize(fp));
        TU_CHECK(clt_qcheckpoint_probe(qp) == 1 && clt_qcheckpoint_probe(fp) == 0, "probe tells the files apart");
        int *af = malloc(NTEST * sizeof(int)), *aq = malloc(NTEST * sizeof(int));
        double accf = eval_file(ctx, fp, tx, ty, NTEST, af), accq = eval_file(ctx, qp, tx, ty, NTEST, aq);
        int agree = 0;
        for (int i = 0; i < NTEST; i++) agree += af[i] == aq[i];
        printf("float32 accuracy %.4f, int8 %.4f, argmax agreement %d/%d, files %ld -> %ld bytes\n", accf, accq,
               agree, NTEST, fsize(fp), fsize(qp));
        TU_CHECK(accf >= 0.9, "the float model must have learned (accuracy %.3f)", accf);
        TU_CHECK(accq >= accf - 0.02, "int8 accuracy %.4f must stay within 2 points of float32 %.4f", accq, accf);
        TU_CHECK(agree >= NTEST * 97 / 100, "int8 and float32 must agree on >= 97%% of images (%d/%d)", agree, NTEST);
        /* percentile calibration works too */
        qs.percentile = 99.9;
        remove(bad);
        if (TU_OK(ctx, clt_quantize(ctx, fp, cx, NCAL, &qs, bad, &rep))) {
            double accp = eval_file(ctx, bad, tx, ty, NTEST, NULL);
            TU_CHECK(accp >= accf - 0.03, "percentile-calibrated accuracy %.4f vs float %.4f", accp, accf);
        }
        free(af), free(aq);
        /* a flipped byte in the weights, a truncated file */
        clt_qcheckpoint *q = NULL;
        tamper(qp, bad, fsize(qp) / 2, -1);
        TU_CHECK(clt_qcheckpoint_open(bad, &q) == CLT_ERR_FORMAT && strstr(clt_qcheckpoint_errmsg(q), "CRC mismatch"),
                 "a flipped byte must be refused: %s", clt_qcheckpoint_errmsg(q));
        clt_qcheckpoint_close(q);
        clt_graph *g = NULL;
        TU_CHECK(clt_graph_load(ctx, bad, NULL, &g) == CLT_ERR_FORMAT && g == NULL &&
                 strstr(clt_errmsg(ctx), "CRC mismatch"), "clt_graph_load must refuse it: %s", clt_errmsg(ctx));
        tamper(qp, bad, -1, fsize(qp) - 7);
        TU_CHECK(clt_qcheckpoint_open(bad, &q) == CLT_ERR_FORMAT && strstr(clt_qcheckpoint_errmsg(q), "truncated"),
                 "a truncated file must be refused: %s", clt_qcheckpoint_errmsg(q));
        clt_qcheckpoint_close(q);
        clt_load_settings ls;
        clt_load_default_settings(&ls);
        ls.training = 1;
        TU_CHECK(clt_graph_load(ctx, qp, &ls, &g) == CLT_ERR_UNSUPPORTED && strstr(clt_errmsg(ctx), "inference"),
                 "a training graph of an int8 file must be refused: %s", clt_errmsg(ctx));
    }
    free(cx), free(tx), free(ty);
    clt_context_destroy(ctx);
    return tu_finish("test_quant");
}
