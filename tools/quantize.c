/* quantize.c - `cltrain quantize` (int8 post-training quantization of a checkpoint) and `cltrain eval` of a
 * quantized checkpoint: float32 and int8 accuracy, file size and inference speed side by side. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *const usage_quantize =
    "usage: cltrain quantize --checkpoint FILE --out FILE [--calibrate N] [--percentile P] [--data PATH]\n"
    "                        [--batch N] [--device SPEC] [--tune MODE]\n"
    "\n"
    "Post-training int8 quantization: per-output-channel symmetric int8 weights for every conv and dense layer,\n"
    "their input scales calibrated on the first N training images (default 1000) as max|x| (or the P-th\n"
    "percentile of |x|, P in 90..100, default 100 = max). Writes a quantized checkpoint (--out must not exist),\n"
    "then evaluates both checkpoints on the test set and prints accuracy, file size and images/s side by side.\n"
    "`cltrain eval` takes the quantized file (see cltrain eval --help).\n";

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "cltrain quantize: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'cltrain quantize --help'.\n");
    return 2;
}

/* Images [0, n) of ds as the network's input, normalized as in training: x = pixel * scale[c] + shift[c]. */
static void normalize(const tool_dataset *ds, const tool_data_meta *dm, int from, int n, float *x)
{
    size_t hw = (size_t)ds->h * ds->w;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ds->c; c++) {
            float scale = 1.0f / (255.0f * dm->std[c]), shift = -dm->mean[c] / dm->std[c];
            const uint8_t *p = ds->pixels + ((size_t)(from + i) * ds->c + c) * hw;
            float *d = x + ((size_t)i * ds->c + c) * hw;
            for (size_t j = 0; j < hw; j++) d[j] = (float)p[j] * scale + shift;
        }
}

typedef struct qresult {
    double acc, images_per_s;
    long long bytes;
    long long weight_bytes; /* 4 bytes per value of the graph's state tensors (float graphs) */
} qresult;

/* Accuracy and inference speed of a loaded graph on the test set; the clock covers clt_predict only, after one
 * untimed batch (kernel builds). */
static int eval_graph(clt_context *ctx, clt_graph *g, const tool_dataset *ds, const tool_data_meta *dm, int batch,
                      qresult *r)
{
    size_t img = (size_t)ds->c * ds->h * ds->w;
    float *x = malloc((size_t)batch * img * sizeof *x), *logits = malloc((size_t)batch * dm->classes * sizeof *logits);
    if (!x || !logits) {
        free(x), free(logits);
        return tool_say("out of memory");
    }
    normalize(ds, dm, 0, batch < ds->n ? batch : ds->n, x);
    int st = clt_predict(g, x, (size_t)(batch < ds->n ? batch : ds->n), logits);
    long long correct = 0;
    double secs = 0;
    for (int at = 0; !st && at < ds->n; at += batch) {
        int cnt = ds->n - at < batch ? ds->n - at : batch;
        normalize(ds, dm, at, cnt, x);
        double t0 = cli_now_s();
        st = clt_predict(g, x, (size_t)cnt, logits);
        secs += cli_now_s() - t0;
        for (int i = 0; !st && i < cnt; i++) {
            const float *l = logits + (size_t)i * dm->classes;
            int best = 0;
            for (int k = 1; k < dm->classes; k++) best = l[k] > l[best] ? k : best;
            correct += best == ds->labels[at + i];
        }
    }
    free(x), free(logits);
    if (st) return tool_say("evaluation: %s", clt_errmsg(ctx));
    r->acc = (double)correct / ds->n;
    r->images_per_s = ds->n / (secs > 0 ? secs : 1e-9);
    return 0;
}

static long long file_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Loads `path` (float or quantized: clt_graph_load tells them apart) and evaluates it. */
static int eval_file(clt_context *ctx, const char *path, const tool_dataset *ds, const tool_data_meta *dm, int batch,
                     qresult *r)
{
    clt_load_settings ls;
    clt_load_default_settings(&ls);
    ls.batch = batch;
    clt_graph *g = NULL;
    if (clt_graph_load(ctx, path, &ls, &g) < 0) return tool_say("%s", clt_errmsg(ctx));
    int rc = eval_graph(ctx, g, ds, dm, batch, r);
    r->weight_bytes = 0;
    for (int i = 0; i < clt_graph_state_count(g); i++)
        r->weight_bytes += 4 * (long long)clt_tensor_numel(clt_graph_state_tensor(g, i, NULL));
    clt_graph_destroy(g);
    r->bytes = file_bytes(path);
    return rc;
}

static void print_table(const char *fp32, const qresult *f, const char *int8, const qresult *q, int n)
{
    printf("%-8s %-40s %10s %12s %12s\n", "", "file", "accuracy", "bytes", "images/s");
    if (f) printf("%-8s %-40s %10.4f %12lld %12.1f\n", "float32", fp32, f->acc, f->bytes, f->images_per_s);
    printf("%-8s %-40s %10.4f %12lld %12.1f\n", "int8", int8, q->acc, q->bytes, q->images_per_s);
    if (f)
        printf("int8 vs float32: accuracy %+.2f points, file %.2fx smaller (%.2fx smaller than the float32 weights "
               "alone, %lld bytes: the float checkpoint also holds optimizer state), inference %.2fx the speed (%d "
               "test images)\n", 100 * (q->acc - f->acc), (double)f->bytes / (double)q->bytes,
               (double)f->weight_bytes / (double)q->bytes, f->weight_bytes, q->images_per_s / f->images_per_s, n);
    printf("final: test_acc_int8=%.4f%s", q->acc, f ? "" : "\n");
    if (f) printf(" test_acc_fp32=%.4f size_ratio=%.2f speed_ratio=%.2f\n", f->acc, (double)f->bytes / q->bytes,
                  q->images_per_s / f->images_per_s);
}

static int make_ctx(const char *device, int tune, clt_context **ctx)
{
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = device;
    if (tune >= 0) cs.tune = tune;
    if (clt_context_create(&cs, ctx) < 0) return tool_say("cannot open the OpenCL device: %s", clt_errmsg(*ctx));
    return 0;
}

static int load_split(const char *dataset, const char *data_dir, int train, tool_dataset *ds)
{
    char dir[4096], origin[96], err[TOOL_ERR_LEN];
    if (tool_data_find(dataset, data_dir, dir, sizeof dir, origin, sizeof origin, err) < 0) return tool_say("%s", err);
    if (tool_load_data(dataset, dir, train, ds, err) < 0) return tool_say("%s", err);
    return 0;
}

int tool_quant_eval(const char *path, const char *compare, const char *data_dir, const char *device, int tune,
                    int batch)
{
    clt_qcheckpoint *q = NULL;
    tool_ckpt_meta *meta = calloc(1, sizeof *meta);
    tool_data_meta dm;
    tool_dataset test = {0};
    clt_context *ctx = NULL;
    char err[TOOL_ERR_LEN];
    int rc = 1;
    qresult rq = {0}, rf = {0};
    if (!meta) return tool_say("out of memory");
    if (clt_qcheckpoint_open(path, &q) < 0) {
        tool_say("%s", q ? clt_qcheckpoint_errmsg(q) : "out of memory");
        goto out;
    }
    if (tool_meta_decode_quant(q, path, meta, &dm, err) < 0) {
        tool_say("%s", err);
        goto out;
    }
    if (load_split(meta->dataset, data_dir, 0, &test) || make_ctx(device, tune, &ctx)) goto out;
    int b = batch > 0 ? batch : 128;
    if (compare && eval_file(ctx, compare, &test, &dm, b, &rf)) goto out;
    if (eval_file(ctx, path, &test, &dm, b, &rq)) goto out;
    printf("quantized checkpoint %s: %s, model %s\n", path, meta->dataset, meta->model_text_origin);
    print_table(compare ? compare : "", compare ? &rf : NULL, path, &rq, test.n);
    rc = 0;
out:
    clt_context_destroy(ctx);
    clt_qcheckpoint_close(q);
    tool_dataset_free(&test);
    free(meta);
    return rc;
}

typedef struct qopts {
    const char *ckpt, *out, *data, *device;
    int calibrate, batch, tune;
    double percentile;
} qopts;

static int parse(int argc, char **argv, qopts *o)
{
    static const char *const tunes[4] = {"off", "cached", "quick", "full"};
    *o = (qopts){.calibrate = 1000, .batch = 64, .tune = -1, .percentile = 100};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_quantize, stdout);
            return 0;
        }
        int takes = !strcmp(a, "--checkpoint") || !strcmp(a, "--out") || !strcmp(a, "--data") ||
                    !strcmp(a, "--device") || !strcmp(a, "--calibrate") || !strcmp(a, "--batch") ||
                    !strcmp(a, "--tune") || !strcmp(a, "--percentile");
        if (!takes) return usage(a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'", a);
        if (!v) return usage("option %s needs a value", a);
        i++;
        errno = 0;
        if (!strcmp(a, "--checkpoint")) o->ckpt = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--percentile")) {
            o->percentile = strtod(v, &end);
            if (*end || end == v || !(o->percentile >= 90 && o->percentile <= 100))
                return usage("--percentile takes a number in 90..100, not '%s'", v);
        } else if (!strcmp(a, "--tune")) {
            o->tune = -1;
            for (int k = 0; k < 4; k++) o->tune = strcmp(v, tunes[k]) ? o->tune : k;
            if (o->tune < 0) return usage("--tune takes off, cached, quick or full, not '%s'", v);
        } else {
            long n = strtol(v, &end, 10);
            if (*end || end == v || errno || n < 1 || n > 1000000) return usage("%s takes a number 1..1000000", a);
            *(!strcmp(a, "--batch") ? &o->batch : &o->calibrate) = (int)n;
        }
    }
    if (!o->ckpt) return usage("%s", "--checkpoint FILE is required");
    if (!o->out) return usage("%s", "--out FILE is required");
    return -1;
}

static int quantize_run(const qopts *o, clt_checkpoint *ck, const tool_ckpt_meta *meta, const tool_data_meta *dm)
{
    tool_dataset train = {0}, test = {0};
    clt_context *ctx = NULL;
    float *x = NULL;
    int rc = 1;
    if (load_split(meta->dataset, o->data, 1, &train) || load_split(meta->dataset, o->data, 0, &test)) goto out;
    int n = o->calibrate < train.n ? o->calibrate : train.n;
    x = malloc((size_t)n * train.c * train.h * train.w * sizeof *x);
    if (!x) {
        tool_say("out of memory");
        goto out;
    }
    normalize(&train, dm, 0, n, x);
    if (make_ctx(o->device, o->tune, &ctx)) goto out;
    clt_quant_settings qs;
    clt_quant_default_settings(&qs);
    qs.percentile = o->percentile;
    qs.batch = o->batch;
    clt_quant_report rep;
    double t0 = cli_now_s();
    if (clt_quantize(ctx, o->ckpt, x, (size_t)n, &qs, o->out, &rep) < 0) {
        tool_say("%s", clt_errmsg(ctx));
        goto out;
    }
    printf("quantized %s -> %s: %d int8 layers, %d float convolutions, calibrated on %d training images (%s) in "
           "%.1f s\n", o->ckpt, o->out, rep.layers_int8, rep.layers_float, n,
           o->percentile < 100 ? "percentile of |x|" : "max |x|", cli_now_s() - t0);
    qresult rf = {0}, rq = {0};
    (void)ck;
    if (eval_file(ctx, o->ckpt, &test, dm, o->batch, &rf) || eval_file(ctx, o->out, &test, dm, o->batch, &rq)) goto out;
    print_table(o->ckpt, &rf, o->out, &rq, test.n);
    rc = 0;
out:
    free(x);
    clt_context_destroy(ctx);
    tool_dataset_free(&train);
    tool_dataset_free(&test);
    return rc;
}

int tool_cmd_quantize(int argc, char **argv)
{
    qopts o;
    int pr = parse(argc, argv, &o);
    if (pr >= 0) return pr;
    struct stat st;
    if (stat(o.out, &st) == 0) return tool_say("--out %s exists: choose a new name (nothing was overwritten)", o.out);
    char err[TOOL_ERR_LEN] = "";
    if (tool_check_regular_file(o.ckpt, "checkpoint", err) < 0) return tool_say("%s", err);
    clt_checkpoint *ck = NULL;
    tool_ckpt_meta *meta = calloc(1, sizeof *meta);
    tool_data_meta dm;
    int rc = 1;
    if (!meta) return tool_say("out of memory");
    if (clt_checkpoint_open(o.ckpt, &ck) < 0) tool_say("%s", ck ? clt_checkpoint_errmsg(ck) : "out of memory");
    else if (clt_checkpoint_version(ck) != 2)
        tool_say("%s is a version-%d checkpoint: resume it once with cltrain to convert it, then quantize", o.ckpt,
              clt_checkpoint_version(ck));
    else if (tool_meta_decode(ck, o.ckpt, meta, &dm, err) < 0) tool_say("%s", err);
    else rc = quantize_run(&o, ck, meta, &dm);
    clt_checkpoint_close(ck);
    free(meta);
    return rc;
}
