/* prune.c - `cltrain prune`: magnitude pruning of a checkpoint (clt_graph_prune), optional masked fine-tuning. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tool.h"

static const char *const usage_prune =
    "usage: cltrain prune --checkpoint IN --sparsity S --out OUT [--global|--per-layer] [--fine-tune-epochs N]\n"
    "                     [--lr X] [--batch N] [--data PATH] [--device SPEC] [--tune MODE] [--key-file KEY]\n"
    "\n"
    "Sets the fraction S (0 <= S < 1) of the conv and dense weights with the smallest magnitudes to zero\n"
    "(biases and batch norm are kept), per layer (default) or over all layers together (--global), then\n"
    "optionally fine-tunes N epochs on the training set with the pruned weights held at zero (a mask applied\n"
    "after every step). Prints the sparsity of every layer and the test accuracy before pruning, after pruning\n"
    "and after fine-tuning, on the data set the checkpoint was trained on (--data as for eval), then writes\n"
    "OUT (never over an existing file). OUT stores pruned weights as zeros; pruning OUT again (e.g. with\n"
    "--sparsity 0 to fine-tune it further) keeps them pruned. With --key-file, IN may be encrypted and OUT is.\n"
    "  --checkpoint IN        the checkpoint to prune (required)\n"
    "  --sparsity S           fraction of weights to remove (required)\n"
    "  --out OUT              the pruned checkpoint (required)\n"
    "  --global               one magnitude threshold over all layers\n"
    "  --per-layer            the same fraction in every layer (default)\n"
    "  --fine-tune-epochs N   epochs of masked fine-tuning (default 0)\n"
    "  --lr X                 fine-tuning learning rate, constant (default: a tenth of the stored one)\n"
    "  --batch N              batch size (default 64)\n"
    "  --data PATH            the data set (default places as for training)\n"
    "  --device SPEC          OpenCL device\n"
    "  --tune MODE            kernel tuning: off, cached, quick (default), full\n"
    "  --key-file KEY         key of an encrypted IN; OUT is encrypted with it (default $CLTRAIN_KEY_FILE)\n";

typedef struct prune_opts {
    const char *in, *out, *data, *device;
    float sparsity, lr;
    int global, epochs, batch, tune;
} prune_opts;

static int perr(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "cltrain prune: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\nTry 'cltrain prune --help'.\n");
    return 2;
}

static int parse(int argc, char **argv, prune_opts *o)
{
    static const char *const tunes[4] = {"off", "cached", "quick", "full"};
    *o = (prune_opts){.sparsity = -1, .lr = NAN, .batch = 64, .tune = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *e = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_prune, stdout);
            return 1;
        }
        if (!strcmp(a, "--global")) o->global = 1;
        else if (!strcmp(a, "--per-layer")) o->global = 0;
        else if (a[0] == '-' && !v) return perr("option %s needs a value%s", a, "");
        else if (!strcmp(a, "--checkpoint")) o->in = argv[++i];
        else if (!strcmp(a, "--out")) o->out = argv[++i];
        else if (!strcmp(a, "--data")) o->data = argv[++i];
        else if (!strcmp(a, "--device")) o->device = argv[++i];
        else if (!strcmp(a, "--sparsity") || !strcmp(a, "--lr")) {
            double d = strtod(v, &e);
            int sp = !strcmp(a, "--sparsity");
            if (e == v || *e || !isfinite(d) || (sp ? d < 0 || d >= 1 : d <= 0 || d > 100))
                return perr(sp ? "--sparsity: '%s' is not a number in [0, 1)%s" : "--lr: '%s' is not a number in (0, 100]%s",
                            v, "");
            *(sp ? &o->sparsity : &o->lr) = (float)d;
            i++;
        } else if (!strcmp(a, "--fine-tune-epochs") || !strcmp(a, "--batch")) {
            errno = 0;
            long n = strtol(v, &e, 10);
            int ep = !strcmp(a, "--fine-tune-epochs");
            if (errno || e == v || *e || n < (ep ? 0 : 2) || n > (ep ? 1024 : 65536))
                return perr("%s: '%s' is out of range", a, v);
            *(ep ? &o->epochs : &o->batch) = (int)n;
            i++;
        } else if (!strcmp(a, "--tune")) {
            o->tune = -1;
            for (int t = 0; t < 4; t++)
                if (!strcmp(v, tunes[t])) o->tune = t;
            if (o->tune < 0) return perr("--tune: unknown value '%s' (one of: off cached quick full)%s", v, "");
            i++;
        } else if (a[0] == '-') return perr("unknown option '%s'%s", a, "");
        else return perr("unexpected argument '%s'%s", a, "");
    }
    if (!o->in) return perr("--checkpoint IN is required%s%s", "", "");
    if (!o->out) return perr("--out OUT is required%s%s", "", "");
    if (o->sparsity < 0) return perr("--sparsity S is required%s%s", "", "");
    return 0;
}

/* Images of a data set as normalized floats (N,C,H,W) with float labels. */
static int to_float(const tool_dataset *d, const tool_data_meta *dm, float **x, float **y)
{
    size_t img = (size_t)d->c * d->h * d->w;
    *x = malloc((size_t)d->n * img * sizeof **x);
    *y = malloc((size_t)d->n * sizeof **y);
    if (!*x || !*y) return -1;
    for (int i = 0; i < d->n; i++) {
        (*y)[i] = d->labels[i];
        for (size_t k = 0; k < img; k++) {
            int c = (int)(k / ((size_t)d->h * d->w));
            (*x)[i * img + k] = (d->pixels[i * img + k] / 255.0f - dm->mean[c]) / dm->std[c];
        }
    }
    return 0;
}

static double accuracy(clt_graph *g, const float *x, const float *y, int n, int classes, float *logits)
{
    if (clt_predict(g, x, (size_t)n, logits) < 0) return -1;
    int right = 0;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < classes; k++)
            if (logits[(size_t)i * classes + k] > logits[(size_t)i * classes + best]) best = k;
        right += best == (int)y[i];
    }
    return (double)right / n;
}

typedef struct pnet {
    clt_graph *g;
    clt_model *m;
    clt_tensor *x, *y, *loss;
} pnet;

/* The stored network as a training graph (cross-entropy on its logits, logits kept), the checkpoint applied. */
static int build(clt_context *ctx, const clt_checkpoint *ck, const tool_data_meta *dm, int batch, pnet *n, char *err)
{
    clt_tensor *logits;
    int xs[4] = {batch, dm->c, dm->h, dm->w}, ys[1] = {batch};
    clt_compile_settings cs;
    if (clt_model_parse(clt_checkpoint_model_text(ck), "checkpoint", &n->m) < 0)
        return tool_fail(err, CLT_ERR_FORMAT, "the stored model: %s", clt_model_errmsg(n->m));
    clt_checkpoint_compile_settings(ck, &cs);
    if (clt_graph_create(ctx, &n->g) < 0 || clt_input(n->g, "x", 4, xs, &n->x) < 0 ||
        clt_model_build(n->g, n->m, n->x, dm->classes, &logits) < 0 || clt_graph_keep(n->g, logits, 0) < 0 ||
        clt_input(n->g, "labels", 1, ys, &n->y) < 0 ||
        clt_softmax_cross_entropy(n->g, logits, n->y, dm->label_smoothing, &n->loss) < 0 ||
        clt_graph_compile(n->g, &cs) < 0 || clt_checkpoint_apply(ck, n->g) < 0)
        return tool_fail(err, CLT_ERR_STATE, "%s", clt_errmsg(ctx));
    return 0;
}

/* One epoch over the full batches of a fresh permutation (a leftover partial batch is skipped). */
static int fine_tune_epoch(clt_graph *g, const pnet *n, const float *x, const float *y, int count, int batch, size_t img,
                           float lr, uint64_t *rng, float *bx, float *by, int *perm)
{
    for (int i = 0; i < count; i++) perm[i] = i;
    for (int i = count - 1; i > 0; i--) {
        *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
        int j = (int)(*rng % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int at = 0; at + batch <= count; at += batch) {
        for (int b = 0; b < batch; b++) {
            memcpy(bx + (size_t)b * img, x + (size_t)perm[at + b] * img, img * sizeof *bx);
            by[b] = y[perm[at + b]];
        }
        if (clt_tensor_write(g, n->x, bx, (size_t)batch * img) < 0 || clt_tensor_write(g, n->y, by, (size_t)batch) < 0 ||
            clt_graph_forward(g, 1) < 0 || clt_graph_backward(g, n->loss) < 0 || clt_graph_step(g, lr) < 0)
            return -1;
    }
    return 0;
}

static void print_layers(clt_graph *g)
{
    size_t all = 0, zero = 0;
    for (int i = 0; i < clt_graph_prune_count(g); i++) {
        clt_prune_layer l;
        if (clt_graph_prune_layer(g, i, &l) < 0) continue;
        printf("  %-24s %9zu weights  %9zu zero  sparsity %.4f\n", l.name, l.numel, l.zeros,
               l.numel ? (double)l.zeros / l.numel : 0.0);
        all += l.numel, zero += l.zeros;
    }
    printf("  %-24s %9zu weights  %9zu zero  sparsity %.4f\n", "all", all, zero, all ? (double)zero / all : 0.0);
}

static int run(const prune_opts *o)
{
    char err[TOOL_ERR_LEN] = "", dir[4096], origin[96];
    clt_checkpoint *ck = NULL;
    clt_context *ctx = NULL;
    tool_ckpt_meta *meta = calloc(1, sizeof *meta);
    tool_data_meta dm;
    tool_dataset test = {0}, train = {0};
    float *tx = NULL, *ty = NULL, *rx = NULL, *ry = NULL, *logits = NULL, *bx = NULL, *by = NULL;
    int *perm = NULL, rc = 1;
    pnet n = {0};
    struct stat st;
    if (!meta) return 1;
    if (stat(o->out, &st) == 0) {
        tool_fail(err, CLT_ERR_IO, "--out %s already exists: refusing to overwrite it (choose another name)", o->out);
        goto out;
    }
    if (tool_check_regular_file(o->in, "checkpoint", err) < 0 || tool_checkpoint_open(o->in, &ck, err) < 0 ||
        tool_meta_decode(ck, o->in, meta, &dm, err) < 0)
        goto out;
    if (tool_data_find(meta->dataset, o->data, dir, sizeof dir, origin, sizeof origin, err) < 0 ||
        tool_load_data(meta->dataset, dir, 0, &test, err) < 0 ||
        (o->epochs && tool_load_data(meta->dataset, dir, 1, &train, err) < 0))
        goto out;
    if (test.c != dm.c || test.h != dm.h || test.w != dm.w || test.classes != dm.classes) {
        tool_fail(err, CLT_ERR_INVALID, "%s holds %dx%dx%d images in %d classes; the checkpoint expects %dx%dx%d in %d",
                  dir, test.c, test.h, test.w, test.classes, dm.c, dm.h, dm.w, dm.classes);
        goto out;
    }
    size_t img = (size_t)dm.c * dm.h * dm.w;
    if (to_float(&test, &dm, &tx, &ty) < 0 || (o->epochs && to_float(&train, &dm, &rx, &ry) < 0) ||
        !(logits = malloc((size_t)test.n * dm.classes * sizeof *logits)) ||
        !(bx = malloc((size_t)o->batch * img * sizeof *bx)) || !(by = malloc((size_t)o->batch * sizeof *by)) ||
        !(perm = malloc(((size_t)train.n + 1) * sizeof *perm))) {
        tool_fail(err, CLT_ERR_NOMEM, "out of memory");
        goto out;
    }
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = o->device;
    if (o->tune >= 0) cs.tune = o->tune;
    if (clt_context_create(&cs, &ctx) < 0) {
        tool_fail(err, CLT_ERR_NO_DEVICE, "%s", clt_errmsg(ctx));
        goto out;
    }
    if (build(ctx, ck, &dm, o->batch, &n, err) < 0) goto out;
    double before = accuracy(n.g, tx, ty, test.n, dm.classes, logits);
    if (before < 0 || clt_graph_prune(n.g, o->sparsity, o->global ? CLT_PRUNE_GLOBAL : CLT_PRUNE_PER_LAYER) < 0) {
        tool_fail(err, CLT_ERR_STATE, "%s", clt_errmsg(ctx));
        goto out;
    }
    printf("pruned %s to sparsity %.4f (%s):\n", o->in, o->sparsity, o->global ? "global" : "per layer");
    print_layers(n.g);
    double pruned = accuracy(n.g, tx, ty, test.n, dm.classes, logits), tuned = pruned;
    printf("test accuracy: before pruning %.4f, after pruning %.4f\n", before, pruned);
    clt_compile_settings ccs;
    clt_checkpoint_compile_settings(ck, &ccs);
    float lr = !isnan(o->lr) ? o->lr : ccs.optimizer.lr / 10;
    uint64_t rng = meta->seed * 2654435761u + 1;
    for (int e = 0; e < o->epochs; e++) {
        if (fine_tune_epoch(n.g, &n, rx, ry, train.n, o->batch, img, lr, &rng, bx, by, perm) < 0 ||
            (tuned = accuracy(n.g, tx, ty, test.n, dm.classes, logits)) < 0) {
            tool_fail(err, CLT_ERR_STATE, "fine-tuning: %s", clt_errmsg(ctx));
            goto out;
        }
        printf("fine-tune epoch %d/%d (lr %g): test accuracy %.4f\n", e + 1, o->epochs, lr, tuned);
        fflush(stdout);
    }
    if (o->epochs) {
        printf("after fine-tuning:\n");
        print_layers(n.g);
    }
    unsigned char *blob = NULL;
    size_t len = 0;
    if (tool_meta_encode(meta, &dm, &blob, &len, err) < 0) goto out;
    int s = tool_graph_save(n.g, o->out, blob, len);
    free(blob);
    if (s < 0) {
        tool_fail(err, s, "saving %s: %s", o->out, clt_errmsg(ctx));
        goto out;
    }
    printf("wrote %s%s\n", o->out, tool_key() ? " (encrypted)" : "");
    printf("final: sparsity=%.4f acc_before=%.4f acc_pruned=%.4f acc_finetuned=%.4f fine_tune_epochs=%d\n", o->sparsity,
           before, pruned, tuned, o->epochs);
    rc = 0;
out:
    if (rc) fprintf(stderr, "cltrain: error: %s\n", err);
    clt_graph_destroy(n.g);
    clt_model_destroy(n.m);
    clt_context_destroy(ctx);
    clt_checkpoint_close(ck);
    tool_dataset_free(&test);
    tool_dataset_free(&train);
    free(tx), free(ty), free(rx), free(ry), free(logits), free(bx), free(by), free(perm), free(meta);
    return rc;
}

int tool_cmd_prune(int argc, char **argv)
{
    prune_opts o;
    int r = parse(argc, argv, &o);
    if (r) return r == 1 ? 0 : r;
    return run(&o);
}
