/* evaluate.c - graphs and checkpoints of cltrain's commands, evaluation passes, the eval and predict commands. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_internal.h"

/* ------------------------------------------------------------------------------------------ graphs */

void net_free(net *n)
{
    clt_graph_destroy(n->g);
    memset(n, 0, sizeof *n);
}

/* One line, once per process, when QUICK tuning stopped at its budget (what did not fit runs untuned). */
static int ctx_tune_mode = CLT_TUNE_QUICK; /* of the context make_context created */

static void tune_hint(clt_context *ctx, const clt_model *model, int batch)
{
    static int shown;
    clt_context_settings d;
    clt_context_default_settings(&d);
    double spent = 0;
    if (shown || ctx_tune_mode != CLT_TUNE_QUICK || clt_context_tune_spent(ctx, &spent) < 0 ||
        spent < d.tune_budget_s)
        return;
    shown = 1;
    fprintf(stderr, "cltrain: the %.0f s tuning budget ran out (%.0f s spent); the rest runs untuned: `cltrain tune "
            "--model %s --batch %d` measures it once, ahead of training\n", d.tune_budget_s, spent,
            clt_model_name(model), batch);
}

/* x (B,C,H,W) -> model -> logits (B,K); with `training` also labels (B) and the loss (with o->teacher the
 * distillation loss, its teacher logits an input). */
int net_build(clt_context *ctx, const clt_model *model, const cli_data_meta *dm, int batch, int training,
                     const clt_compile_settings *cs, const cli_train_opts *o, net *n)
{
    memset(n, 0, sizeof *n);
    n->batch = batch;
    int xs[4] = {batch, dm->c, dm->h, dm->w}, ys[1] = {batch};
    if (clt_graph_create(ctx, &n->g) < 0 || clt_input(n->g, "x", 4, xs, &n->x) < 0)
        return fail("creating the graph: %s", clt_errmsg(ctx));
    if (clt_model_build(n->g, model, n->x, dm->classes, &n->logits) < 0)
        return fail("building model '%s': %s", clt_model_name(model), clt_errmsg(ctx));
    if (clt_tensor_ndim(n->logits) != 2 || clt_tensor_dim(n->logits, 0) != batch ||
        clt_tensor_dim(n->logits, 1) != dm->classes)
        return fail("model '%s' does not end in (batch, %d) logits", clt_model_name(model), dm->classes);
    if (clt_graph_keep(n->g, n->logits, 0) < 0) return fail("%s", clt_errmsg(ctx));
    if (training) {
        int ts[2] = {batch, dm->classes};
        if (clt_input(n->g, "labels", 1, ys, &n->y) < 0 ||
            (o && o->teacher
                 ? clt_input(n->g, "teacher_logits", 2, ts, &n->teacher) < 0 ||
                       clt_distill_kl(n->g, n->logits, n->teacher, n->y,
                                      isnan(o->distill_temperature) ? 4.0f : o->distill_temperature,
                                      isnan(o->distill_alpha) ? 0.9f : o->distill_alpha, &n->loss) < 0
                 : clt_softmax_cross_entropy(n->g, n->logits, n->y, dm->label_smoothing, &n->loss) < 0))
            return fail("adding the loss: %s", clt_errmsg(ctx));
    }
    clt_compile_settings s = *cs;
    s.training = training;
    if (clt_graph_compile(n->g, &s) < 0) return fail("compiling the graph (batch %d): %s", batch, clt_errmsg(ctx));
    tune_hint(ctx, model, batch);
    return 0;
}

int make_context(const char *device, int tune, int verbose, clt_context **ctx)
{
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = device;
    if (tune >= 0) cs.tune = tune;
    cs.verbose = verbose;
    ctx_tune_mode = cs.tune;
    if (clt_context_create(&cs, ctx) < 0)
        return fail("cannot open the OpenCL device%s%s: %s", device ? " " : "", device ? device : "",
                    clt_errmsg(*ctx));
    return 0;
}

/* Adds the host-side cross-entropy and accuracy of `valid` rows of logits to the sums. */
void score_rows(const float *logits, const float *labels, int valid, int k, double *loss_sum, int64_t *correct,
                       int64_t *confusion)
{
    for (int r = 0; r < valid; r++) {
        const float *l = logits + (size_t)r * k;
        int best = 0;
        double mx = l[0];
        for (int j = 1; j < k; j++)
            if (l[j] > l[best]) best = j;
        mx = l[best];
        double se = 0;
        for (int j = 0; j < k; j++) se += exp((double)l[j] - mx);
        int t = (int)labels[r];
        *loss_sum += log(se) + mx - l[t];
        *correct += best == t;
        if (confusion) confusion[t * k + best]++;
    }
}

/* Evaluation pass (no dropout, batch-norm running statistics) over a whole dataset on a graph of any
 * batch size: the last batch is padded with zero rows whose outputs are ignored, which is exact because
 * evaluation passes treat every row independently. */
int evaluate(clt_context *ctx, net *n, const tool_dataset *ds, const cli_data_meta *dm, pipeline *p,
                    double *loss, double *acc, cli_progress *prog)
{
    prep_spec spec = {.ds = ds, .total = ds->n, .batch = n->batch};
    prep_spec_normalize(&spec, dm);
    worker *w = &p->w;
    float **xb = p->xb, **yb = p->yb, *logits = p->logits;
    int64_t *confusion = p->confusion;
    int k = dm->classes, steps = (ds->n + n->batch - 1) / n->batch;
    double loss_sum = 0;
    int64_t correct = 0;
    memset(confusion, 0, sizeof(int64_t) * k * k);
    worker_submit(w, &spec, 0, xb[0], yb[0]);
    for (int j = 0; j < steps; j++) {
        worker_wait(w);
        float *x = xb[j & 1], *y = yb[j & 1];
        if (j + 1 < steps) worker_submit(w, &spec, (j + 1) * n->batch, xb[(j + 1) & 1], yb[(j + 1) & 1]);
        int valid = ds->n - j * n->batch < n->batch ? ds->n - j * n->batch : n->batch;
        /* A training graph's loss reads the labels too (an evaluation graph has none). */
        int st = n->y ? clt_tensor_write(n->g, n->y, y, (size_t)n->batch) : 0;
        if (st >= 0) st = clt_predict(n->g, x, (size_t)valid, logits);
        if (st < 0) {
            if (j + 1 < steps) worker_wait(w);
            cli_progress_clear(prog, stdout);
            return fail("evaluation: %s", clt_errmsg(ctx));
        }
        score_rows(logits, y, valid, k, &loss_sum, &correct, confusion);
        cli_progress_eval(prog, stdout, j * n->batch + valid, ds->n);
    }
    cli_progress_clear(prog, stdout);
    *loss = loss_sum / ds->n;
    *acc = (double)correct / ds->n;
    return 0;
}

/* Evaluation with several ranks: batch-norm statistics averaged first, then each rank scores its contiguous
 * share of the data set and the sums (loss, correct, confusion) are added over the ranks. */
int evaluate_all(clt_context *ctx, net *n, const tool_dataset *ds, const cli_data_meta *dm, pipeline *p,
                        double *loss, double *acc, cli_progress *prog, dist_graph *d)
{
    if (dist_size == 1) return evaluate(ctx, n, ds, dm, p, loss, acc, prog);
    if (dist_sync_buffers(d)) return 1;
    int cnt, off;
    dist_split(ds->n, &cnt, &off);
    tool_dataset part = *ds;
    part.n = cnt;
    part.pixels += (size_t)off * ds->c * ds->h * ds->w;
    part.labels += off;
    double l = 0, a = 0;
    memset(p->confusion, 0, sizeof(int64_t) * dm->classes * dm->classes);
    if (cnt > 0 && evaluate(ctx, n, &part, dm, p, &l, &a, prog)) return 1;
    double s[2] = {l * cnt, (double)llround(a * cnt)};
    if (dist_sum_f64(s, 2) || dist_sum_i64(p->confusion, dm->classes * dm->classes)) return fail("reducing metrics");
    *loss = s[0] / ds->n;
    *acc = s[1] / ds->n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ checkpoints */

/* Opens and verifies a checkpoint and decodes the tool's metadata (NULL m or dm: not wanted). */
int checkpoint_open(const char *path, clt_checkpoint **ck, tool_ckpt_meta *m, cli_data_meta *dm)
{
    char err[TOOL_ERR_LEN] = "";
    *ck = NULL;
    if (tool_check_regular_file(path, "checkpoint", err) < 0) return fail("%s", err);
    if (tool_checkpoint_open(path, ck, err) < 0) return fail("%s", err);
    tool_ckpt_meta *mm = m ? m : calloc(1, sizeof *mm);
    cli_data_meta d;
    int st = mm ? tool_meta_decode(*ck, path, mm, dm ? dm : &d, err) : tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    if (mm != m) free(mm);
    return st < 0 ? fail("%s", err) : 0;
}

/* Parses the model stored in an opened checkpoint. */
int checkpoint_model(const clt_checkpoint *ck, const char *path, clt_model **model)
{
    int st = clt_model_parse(clt_checkpoint_model_text(ck), path, model);
    if (st < 0) return fail("%s (the model stored in the checkpoint)", clt_model_errmsg(*model));
    return 0;
}


/* Refuses a data set whose images or classes differ from those the checkpoint's model was trained on. */
int check_data_fits(const char *path, const cli_data_meta *dm, const char *dir, const tool_dataset *ds)
{
    if (dm->c != ds->c || dm->h != ds->h || dm->w != ds->w || dm->classes != ds->classes)
        return fail("checkpoint %s expects %dx%dx%d images in %d classes; %s has %dx%dx%d in %d", path, dm->c, dm->h,
                    dm->w, dm->classes, dir, ds->c, ds->h, ds->w, ds->classes);
    return 0;
}

/* ------------------------------------------------------------------------------------------ eval */

/* An evaluation graph of an opened checkpoint with `batch` rows (the library's inference graph). */
static int load_for_inference(const clt_checkpoint *ck, const char *device, int tune, int verbose, int batch,
                              const cli_data_meta *dm, clt_context **ctx, net *n)
{
    if (make_context(device, tune, verbose, ctx)) return 1;
    clt_load_settings ls;
    clt_load_default_settings(&ls);
    ls.batch = batch;
    memset(n, 0, sizeof *n);
    n->batch = batch;
    if (clt_checkpoint_build(ck, *ctx, &ls, &n->g) < 0 || clt_graph_model_tensors(n->g, &n->x, &n->logits) < 0)
        return fail("%s", clt_errmsg(*ctx));
    if (clt_tensor_dim(n->logits, 1) != dm->classes) return fail("internal: the network has another class count");
    return 0;
}

int cli_eval(const char *path, const char *data_dir, const char *device, int tune, int batch, int verbose)
{
    int rc = 1;
    clt_checkpoint *ck = NULL;
    tool_ckpt_meta *meta = calloc(1, sizeof *meta);
    cli_data_meta dm;
    clt_context *ctx = NULL;
    net n = {0};
    tool_dataset test = {0};
    pipeline pl = {0};
    char err[TOOL_ERR_LEN] = "";
    if (!meta) return fail("out of memory");
    /* The dataset comes from the checkpoint; read it before opening the device to fail fast. */
    if (checkpoint_open(path, &ck, meta, &dm)) goto out;
    const char *dataset = meta->dataset;
    int b = batch > 0 ? batch : meta->batch > 0 ? meta->batch : 128;
    char dir[4096], origin[96], why[200];
    if (resolve_data_dir(dataset, data_dir, dir, sizeof dir, origin, err)) {
        fail("%s", err);
        goto out;
    }
    int lst = !strcmp(dataset, "images") ? tool_load_image_folder(dir, dm.h, dm.c, &test, err)
                                         : load_dataset(dataset, dir, 0, &test, err);
    if (lst >= 0 && !strcmp(dataset, "images")) {
        tool_dataset names = {.classes = dm.classes};
        memcpy(names.class_names, dm.class_names, sizeof names.class_names);
        lst = same_classes(&names, path, &test, dir, err);
    }
    if (lst < 0) {
        data_dir_origin(why, sizeof why, origin);
        fail("%s%s", err, why);
        goto out;
    }
    if (b > test.n) b = test.n;
    if (check_data_fits(path, &dm, dir, &test)) goto out;
    if (load_for_inference(ck, device, tune, verbose, b, &dm, &ctx, &n)) goto out;
    if (pipeline_start(&pl, b, (size_t)dm.c * dm.h * dm.w, dm.classes)) goto out;
    cli_progress prog;
    cli_progress_init(&prog, stdout);
    double t0 = cli_now_s(), loss = 0, acc = 0;
    if (evaluate(ctx, &n, &test, &dm, &pl, &loss, &acc, &prog)) goto out;
    double secs = cli_now_s() - t0;
    printf("checkpoint %s: %s, model %s, %d epochs trained\n", path, dataset, meta->model_text_origin, meta->epochs_done);
    printf("test: %d images, loss %.4f, accuracy %.4f (%.1f s, %.1f images/s)\n", test.n, loss, acc, secs,
           test.n / secs);
    cli_print_class_report(stdout, pl.confusion, dm.classes, (const char(*)[32])dm.class_names);
    print_final(meta->history, meta->nhistory < meta->epochs_done ? meta->nhistory : meta->epochs_done,
                acc, loss);
    rc = 0;
out:
    pipeline_stop(&pl);
    net_free(&n);
    clt_context_destroy(ctx);
    clt_checkpoint_close(ck);
    free(meta);
    tool_dataset_free(&test);
    return rc;
}

/* ------------------------------------------------------------------------------------------ predict */

typedef struct pimage {
    char label[600];
    uint8_t *pix; /* CHW */
} pimage;

/* Next token of a PNM header (skips whitespace and # comments). */
static int pnm_int(FILE *f, int *v)
{
    int c;
    for (;;) {
        c = fgetc(f);
        if (c == '#')
            while (c != '\n' && c != EOF) c = fgetc(f);
        else if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
    }
    if (c < '0' || c > '9') return -1;
    long x = 0;
    while (c >= '0' && c <= '9') {
        x = x * 10 + (c - '0');
        if (x > 1000000) return -1;
        c = fgetc(f);
    }
    *v = (int)x; /* the single whitespace after maxval is consumed here */
    return 0;
}

/* Appends an image (taking ownership of pix) to *imgs; NULL (pix freed) when out of memory. */
static pimage *push_image(pimage **imgs, int *n, int *cap, uint8_t *pix)
{
    if (*n == *cap) {
        int ncap = *cap ? *cap * 2 : 16;
        pimage *ni = realloc(*imgs, (size_t)ncap * sizeof *ni);
        if (!ni) {
            free(pix);
            return NULL;
        }
        *imgs = ni;
        *cap = ncap;
    }
    pimage *p = &(*imgs)[(*n)++];
    p->pix = pix;
    return p;
}

/* Reads one file into images of the model's shape (appending to *imgs). */
static int read_images(const char *path, const cli_data_meta *dm, pimage **imgs, int *n, int *cap)
{
    size_t img = (size_t)dm->c * dm->h * dm->w;
    char err[TOOL_ERR_LEN] = "";
    FILE *f = tool_fopen_regular(path, "image", err);
    if (!f) return fail("%s", err);
    unsigned char magic[2] = {0, 0};
    size_t got = fread(magic, 1, 2, f);
    int rc = 1;
    if (got == 2 && ((magic[0] == 0xFF && magic[1] == 0xD8) || (magic[0] == 0x89 && magic[1] == 'P'))) {
        /* JPEG or PNG of any size: decoded and resized as the image folders of `cltrain images` are. */
        uint8_t *pix = malloc(img);
        if (!pix) fail("out of memory");
        else if (dm->h != dm->w) fail("%s: the model takes %dx%d images; JPEG/PNG files are resized to square models "
                                      "only", path, dm->w, dm->h);
        else if (tool_read_image(path, dm->h, dm->c, pix, err) < 0) fail("%s", err);
        else {
            pimage *pi = push_image(imgs, n, cap, pix); /* owns pix from here, freed on failure */
            pix = NULL;
            if (!pi) fail("out of memory");
            else {
                snprintf(pi->label, sizeof pi->label, "%s", path);
                rc = 0;
            }
        }
        free(pix);
        goto done;
    }
    if (got == 2 && magic[0] == 'P' && (magic[1] == '5' || magic[1] == '6')) {
        int ch = magic[1] == '6' ? 3 : 1, w, h, maxv;
        if (pnm_int(f, &w) || pnm_int(f, &h) || pnm_int(f, &maxv) || w < 1 || h < 1 || maxv < 1 || maxv > 65535) {
            fail("%s: malformed %s header", path, ch == 3 ? "PPM (P6)" : "PGM (P5)");
            goto done;
        }
        if (maxv > 255) {
            fail("%s: 16-bit images (maxval %d) are not supported; save it with 8 bits per sample", path, maxv);
            goto done;
        }
        if (ch != dm->c) {
            fail("%s is a %d-channel %s image but the model takes %d-channel images (%s)", path, ch,
                 ch == 3 ? "PPM" : "PGM", dm->c, dm->c == 3 ? "binary PPM, P6" : "binary PGM, P5");
            goto done;
        }
        if (w != dm->w || h != dm->h) {
            fail("%s is %dx%d pixels but the model takes %dx%d (resize it first)", path, w, h, dm->w, dm->h);
            goto done;
        }
        uint8_t *raw = malloc(img), *pix = malloc(img);
        if (!raw || !pix) {
            free(raw);
            free(pix);
            fail("out of memory");
            goto done;
        }
        if (fread(raw, 1, img, f) != img) {
            free(raw);
            free(pix);
            fail("%s: truncated image data (expected %zu bytes after the header)", path, img);
            goto done;
        }
        /* PNM is interleaved (HWC) and may use a maxval below 255. */
        for (int c = 0; c < ch; c++)
            for (int i = 0; i < w * h; i++) pix[(size_t)c * w * h + i] = (uint8_t)(raw[(size_t)i * ch + c] * 255 / maxv);
        free(raw);
        pimage *pi = push_image(imgs, n, cap, pix);
        if (!pi) {
            fail("out of memory");
            goto done;
        }
        snprintf(pi->label, sizeof pi->label, "%s", path);
        rc = 0;
        goto done;
    }
    /* Otherwise a record file in CIFAR's layout: one label byte + the image's bytes (CHW) per record. */
    if (fseek(f, 0, SEEK_END) != 0) {
        fail("%s: cannot seek: %s", path, strerror(errno));
        goto done;
    }
    long size = ftell(f);
    size_t rec = img + 1;
    if (size <= 0 || (size_t)size % rec != 0) {
        fail("%s is neither a binary PPM/PGM image nor a record file of %zu-byte records (1 label byte + %dx%dx%d "
             "pixels): it has %ld bytes", path, rec, dm->c, dm->h, dm->w, size);
        goto done;
    }
    rewind(f);
    size_t nrec = (size_t)size / rec;
    for (size_t r = 0; r < nrec; r++) {
        uint8_t *buf = malloc(rec);
        if (!buf) {
            fail("out of memory");
            goto done;
        }
        if (fread(buf, 1, rec, f) != rec) {
            free(buf);
            fail("%s: read error", path);
            goto done;
        }
        int lab = buf[0];
        memmove(buf, buf + 1, img);
        pimage *pi = push_image(imgs, n, cap, buf);
        if (!pi) {
            fail("out of memory");
            goto done;
        }
        if (lab < dm->classes)
            snprintf(pi->label, sizeof pi->label, "%s#%zu (label %s)", path, r, dm->class_names[lab]);
        else
            snprintf(pi->label, sizeof pi->label, "%s#%zu", path, r);
    }
    rc = 0;
done:
    fclose(f);
    return rc;
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_field(const char *v)
{
    if (!strpbrk(v, ",\"\r\n")) {
        fputs(v, stdout);
        return;
    }
    putchar('"');
    for (; *v; v++) {
        if (*v == '"') putchar('"');
        putchar(*v);
    }
    putchar('"');
}

int cli_predict(const char *path, const char *device, int tune, int top, int nfiles, char **files)
{
    int rc = 1;
    clt_checkpoint *ck = NULL;
    cli_data_meta dm;
    clt_context *ctx = NULL;
    net n = {0};
    pimage *imgs = NULL;
    int nimg = 0, cap = 0;
    float *x = NULL, *logits = NULL;
    /* Validate every image against the model's input before touching the device. */
    if (checkpoint_open(path, &ck, NULL, &dm)) goto out;
    for (int i = 0; i < nfiles; i++)
        if (read_images(files[i], &dm, &imgs, &nimg, &cap)) goto out;
    int b = nimg < 64 ? nimg : 64;
    size_t img = (size_t)dm.c * dm.h * dm.w;
    x = malloc(((size_t)nimg * img + 1) * sizeof *x);
    logits = malloc(((size_t)nimg * dm.classes + 1) * sizeof *logits);
    if (!x || !logits) {
        fail("out of memory");
        goto out;
    }
    for (int r = 0; r < nimg; r++)
        for (int c = 0; c < dm.c; c++)
            for (size_t i = 0; i < (size_t)dm.h * dm.w; i++) {
                size_t o = (size_t)c * dm.h * dm.w + i;
                x[(size_t)r * img + o] = (imgs[r].pix[o] / 255.0f - dm.mean[c]) / dm.std[c];
            }
    if (load_for_inference(ck, device, tune, 0, b, &dm, &ctx, &n)) goto out;
    if (clt_predict(n.g, x, (size_t)nimg, logits) < 0) {
        fail("prediction: %s", clt_errmsg(ctx));
        goto out;
    }
    int csv = top < 0; /* --csv: one row per image, the probability of every class */
    if (csv) {
        printf("file,predicted");
        for (int j = 0; j < dm.classes; j++) {
            putchar(',');
            csv_field(dm.class_names[j]);
        }
        putchar('\n');
    }
    if (top < 1) top = 1;
    if (top > dm.classes) top = dm.classes;
    for (int r = 0; r < nimg; r++) {
        const float *l = logits + (size_t)r * dm.classes;
        double mx = l[0], se = 0, p[10];
        int idx[10];
        for (int j = 1; j < dm.classes; j++) mx = l[j] > mx ? l[j] : mx;
        for (int j = 0; j < dm.classes; j++) se += p[j] = exp(l[j] - mx);
        for (int j = 0; j < dm.classes; j++) {
            p[j] /= se;
            idx[j] = j;
        }
        for (int a = 0; a < dm.classes; a++)
            for (int bb = a + 1; bb < dm.classes; bb++)
                if (p[idx[bb]] > p[idx[a]]) {
                    int t = idx[a];
                    idx[a] = idx[bb];
                    idx[bb] = t;
                }
        if (csv) {
            csv_field(imgs[r].label);
            putchar(',');
            csv_field(dm.class_names[idx[0]]);
            for (int j = 0; j < dm.classes; j++) printf(",%.6f", p[j]);
            putchar('\n');
            continue;
        }
        printf("%s: %s %.4f", imgs[r].label, dm.class_names[idx[0]], p[idx[0]]);
        if (top > 1) {
            printf("  (");
            for (int j = 1; j < top; j++) printf("%s%s %.4f", j > 1 ? ", " : "", dm.class_names[idx[j]], p[idx[j]]);
            printf(")");
        }
        printf("\n");
    }
    rc = 0;
out:
    net_free(&n);
    clt_context_destroy(ctx);
    for (int i = 0; i < nimg; i++) free(imgs[i].pix);
    free(imgs);
    free(x);
    free(logits);
    clt_checkpoint_close(ck);
    return rc;
}

