/* quant.c - post-training int8 quantization of a float32 checkpoint: per-channel symmetric weights, input scales
 * calibrated on images, written as a quantized checkpoint (quant_file.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant_file.h"

void clt_quant_default_settings(clt_quant_settings *s)
{
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->percentile = 100.0;
    s->batch = 64;
}

#define HIST_BINS 8192

/* A layer to quantize: a top-level conv2d or dense node of the float graph, and its calibration statistics. */
typedef struct target {
    clt__node *n;
    int conv;
    double maxabs;
    uint64_t *hist; /* HIST_BINS bins of |x| over [0, maxabs] (percentile mode, second pass) */
    uint64_t count;
} target;

/* The float graph of the checkpoint with the inputs of its top-level conv/dense layers kept (names without a '.':
 * residual projections "res1.proj" stay float). */
static int build_float(clt_context *ctx, const clt_checkpoint *ck, int batch, clt_graph **gout, clt_tensor **x,
                       clt_tensor **logits, target **tg, int *ntg, int *nfloat)
{
    int c, h, w, k;
    clt_compile_settings cs;
    CLT_TRY(clt_checkpoint_compile_settings(ck, &cs));
    clt_checkpoint_input(ck, &c, &h, &w, &k);
    if (!clt_checkpoint_model_text(ck)[0])
        return clt__err(ctx, CLT_ERR_FORMAT, "the checkpoint holds no network description: it cannot be quantized");
    clt_model *m = NULL;
    int st = clt_model_parse(clt_checkpoint_model_text(ck), "checkpoint", &m);
    if (st) {
        st = clt__err(ctx, st, "the network stored in the checkpoint: %s", clt_model_errmsg(m));
        clt_model_destroy(m);
        return st;
    }
    clt_graph *g = NULL;
    int shape[4] = {batch, c, h, w};
    cs.training = 0;
    st = clt_graph_create(ctx, &g);
    if (!st) st = clt_input(g, "x", 4, shape, x);
    if (!st) st = clt_model_build(g, m, *x, k, logits);
    clt_model_destroy(m);
    if (!st) st = clt_graph_keep(g, *logits, 0);
    *tg = st ? NULL : calloc((size_t)g->nnodes + 1, sizeof **tg);
    if (!st && !*tg) st = clt__err(ctx, CLT_ERR_NOMEM, "out of host memory");
    *ntg = *nfloat = 0;
    for (int i = 0; !st && i < g->nnodes; i++) {
        clt__node *n = g->nodes[i];
        int conv = !strcmp(n->op->name, "conv2d"), dense = !strcmp(n->op->name, "dense");
        if (!conv && !dense) continue;
        if (strchr(n->out->name, '.')) {
            ++*nfloat;
            continue;
        }
        (*tg)[(*ntg)++] = (target){.n = n, .conv = conv};
        st = clt_graph_keep(g, n->in[0], 0);
    }
    if (!st) st = clt_graph_compile(g, &cs);
    if (!st) st = clt_checkpoint_apply(ck, g);
    if (st) clt_graph_destroy(g);
    else *gout = g;
    return st;
}

/* One calibration pass over the images: pass 0 takes max|x| of every target's input, pass 1 fills histograms. */
static int calib_pass(clt_graph *g, clt_tensor *x, const float *data, size_t n, target *tg, int ntg, int pass,
                      float *buf, float *xb)
{
    size_t batch = (size_t)x->shape[0], img = x->numel / batch;
    for (size_t at = 0; at < n; at += batch) {
        size_t cnt = n - at < batch ? n - at : batch;
        memset(xb, 0, batch * img * sizeof *xb);
        memcpy(xb, data + at * img, cnt * img * sizeof *xb);
        CLT_TRY(clt_tensor_write(g, x, xb, batch * img));
        CLT_TRY(clt_graph_forward(g, 0));
        for (int i = 0; i < ntg; i++) {
            clt_tensor *t = tg[i].n->in[0];
            CLT_TRY(clt_tensor_read(g, t, 0, buf, t->numel));
            size_t valid = t->numel / batch * cnt; /* the padding rows' values are not data */
            for (size_t j = 0; j < valid; j++) {
                double a = fabs((double)buf[j]);
                if (pass == 0) {
                    if (a > tg[i].maxabs) tg[i].maxabs = a;
                } else if (tg[i].maxabs > 0) {
                    size_t b = (size_t)(a / tg[i].maxabs * HIST_BINS);
                    tg[i].hist[b < HIST_BINS ? b : HIST_BINS - 1]++;
                }
            }
            tg[i].count += valid;
        }
    }
    return CLT_OK;
}

/* The input scale: max|x| / 127, or the percentile's upper bin edge / 127. */
static float input_scale(const target *t, double percentile)
{
    double v = t->maxabs;
    if (percentile < 100 && t->hist && t->count) {
        uint64_t need = (uint64_t)ceil(percentile / 100.0 * (double)t->count / 2), acc = 0;
        /* count was summed over both passes: each pass saw every value once */
        for (int b = 0; b < HIST_BINS; b++) {
            acc += t->hist[b];
            if (acc >= need) {
                v = t->maxabs * (b + 1) / HIST_BINS;
                break;
            }
        }
    }
    float s = (float)(v / 127.0);
    return s > 0 && isfinite(s) ? s : 1.0f; /* an all-zero input: any scale gives zeros */
}

/* Per-output-channel symmetric int8 weights of target t into l. */
static int quantize_layer(clt_graph *g, const target *t, float xs, clt__qlayer *l)
{
    clt__node *n = t->n;
    clt_tensor *w = n->param[0], *b = n->nparam > 1 ? n->param[1] : NULL;
    snprintf(l->name, sizeof l->name, "%s", n->out->name);
    l->kind = t->conv ? 0 : 1;
    l->cout = w->shape[0];
    if (t->conv) {
        clt__conv_geom d;
        clt__conv2d_node_geom(n, &d);
        l->cin = d.c, l->kh = d.kh, l->kw = d.kw, l->sh = d.sh, l->sw = d.sw, l->ph = d.ph, l->pw = d.pw;
    } else {
        l->cin = (int)(w->numel / (size_t)l->cout), l->kh = l->kw = l->sh = l->sw = 1, l->ph = l->pw = 0;
    }
    l->has_bias = b != NULL;
    l->x_scale = xs;
    size_t per = w->numel / (size_t)l->cout;
    float *wf = malloc(w->numel * sizeof *wf);
    l->w = malloc(w->numel);
    l->w_scale = malloc(sizeof(float) * l->cout);
    l->bias = b ? malloc(sizeof(float) * l->cout) : NULL;
    if (!wf || !l->w || !l->w_scale || (b && !l->bias)) {
        free(wf);
        return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory");
    }
    int st = clt_tensor_read(g, w, 0, wf, w->numel);
    if (!st && b) st = clt_tensor_read(g, b, 0, l->bias, b->numel);
    for (int c = 0; !st && c < l->cout; c++) {
        const float *row = wf + (size_t)c * per;
        float mx = 0;
        for (size_t j = 0; j < per; j++) mx = fabsf(row[j]) > mx ? fabsf(row[j]) : mx;
        float s = mx > 0 ? mx / 127.0f : 1.0f;
        l->w_scale[c] = s;
        for (size_t j = 0; j < per; j++) {
            float r = roundf(row[j] / s);
            l->w[(size_t)c * per + j] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
        }
    }
    free(wf);
    return st;
}

/* Every state tensor that no int8 layer took, as float32. */
static int collect_float(clt_graph *g, const target *tg, int ntg, clt_qcheckpoint *q)
{
    int n = clt_graph_state_count(g);
    q->f = calloc((size_t)n + 1, sizeof *q->f);
    if (!q->f) return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < n; i++) {
        clt_tensor *t = clt_graph_state_tensor(g, i, NULL);
        int taken = 0;
        for (int k = 0; k < ntg && !taken; k++)
            for (int p = 0; p < tg[k].n->nparam; p++) taken |= tg[k].n->param[p] == t;
        if (taken) continue;
        clt__ftensor *f = &q->f[q->nf++];
        snprintf(f->name, sizeof f->name, "%s", t->name);
        f->ndim = t->ndim;
        memcpy(f->shape, t->shape, sizeof f->shape);
        f->numel = t->numel;
        f->v = malloc(t->numel * sizeof(float));
        if (!f->v) return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory");
        CLT_TRY(clt_tensor_read(g, t, 0, f->v, t->numel));
    }
    return CLT_OK;
}

static int quantize_graph(clt_context *ctx, const clt_checkpoint *ck, clt_graph *g, clt_tensor *x, const float *data,
                          size_t n, const clt_quant_settings *s, target *tg, int ntg, clt_qcheckpoint *q)
{
    size_t maxn = x->numel;
    for (int i = 0; i < ntg; i++) maxn = tg[i].n->in[0]->numel > maxn ? tg[i].n->in[0]->numel : maxn;
    float *buf = malloc(maxn * sizeof *buf), *xb = malloc(x->numel * sizeof *xb);
    int st = buf && xb ? CLT_OK : clt__err(ctx, CLT_ERR_NOMEM, "out of host memory");
    if (!st) st = calib_pass(g, x, data, n, tg, ntg, 0, buf, xb);
    if (!st && s->percentile < 100) {
        for (int i = 0; i < ntg && !st; i++)
            if (!(tg[i].hist = calloc(HIST_BINS, sizeof *tg[i].hist))) st = clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
        if (!st) st = calib_pass(g, x, data, n, tg, ntg, 1, buf, xb);
    }
    free(buf);
    free(xb);
    q->q = st ? NULL : calloc((size_t)ntg + 1, sizeof *q->q);
    if (!st && !q->q) st = clt__err(ctx, CLT_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < ntg && !st; i++, q->nq++)
        st = quantize_layer(g, &tg[i], input_scale(&tg[i], s->percentile), &q->q[i]);
    if (!st) st = collect_float(g, tg, ntg, q);
    if (st) return st;
    size_t len = 0;
    const void *meta = clt_checkpoint_app_meta(ck, &len);
    q->text = clt__strdup(clt_checkpoint_model_text(ck));
    q->meta = malloc(len + 1);
    if (!q->text || !q->meta) return clt__err(ctx, CLT_ERR_NOMEM, "out of host memory");
    memcpy(q->meta, meta, len);
    q->meta_len = len;
    clt_checkpoint_input(ck, &q->c, &q->h, &q->w, &q->classes);
    return CLT_OK;
}

int clt_quantize(clt_context *ctx, const char *in_path, const float *x, size_t n, const clt_quant_settings *s,
                 const char *out_path, clt_quant_report *report)
{
    if (!ctx) return CLT_ERR_INVALID;
    if (!in_path || !out_path || !x || n == 0)
        return clt__err(ctx, CLT_ERR_INVALID, "clt_quantize: %s", !in_path ? "in_path is NULL" : !out_path ?
                        "out_path is NULL" : "no calibration images (x is NULL or n is 0)");
    clt_quant_settings def;
    clt_quant_default_settings(&def);
    if (!s) s = &def;
    if (!(s->percentile >= 90 && s->percentile <= 100) || s->batch < 1)
        return clt__err(ctx, CLT_ERR_INVALID, "clt_quantize: percentile %g (takes 90..100) or batch %d (>= 1)",
                        s->percentile, s->batch);
    if (!strcmp(in_path, out_path))
        return clt__err(ctx, CLT_ERR_INVALID, "clt_quantize: the output %s is the input checkpoint", out_path);
    clt_checkpoint *ck = NULL;
    int st = clt_checkpoint_open(in_path, &ck);
    if (st) {
        st = clt__err(ctx, st, "%s", ck ? clt_checkpoint_errmsg(ck) : "out of host memory");
        clt_checkpoint_close(ck);
        return st;
    }
    clt_graph *g = NULL;
    clt_tensor *xin, *logits;
    target *tg = NULL;
    int ntg = 0, nfloat = 0;
    clt_qcheckpoint q = {0};
    snprintf(q.path, sizeof q.path, "%s", out_path);
    st = build_float(ctx, ck, (size_t)s->batch < n ? s->batch : (int)n, &g, &xin, &logits, &tg, &ntg, &nfloat);
    if (!st) st = quantize_graph(ctx, ck, g, xin, x, n, s, tg, ntg, &q);
    uint64_t bytes = 0;
    if (!st) st = clt__qfile_write(ctx, out_path, &q, &bytes);
    if (!st && report) *report = (clt_quant_report){ntg, nfloat, bytes};
    for (int i = 0; tg && i < ntg; i++) free(tg[i].hist);
    free(tg);
    clt__qcheckpoint_free_parts(&q);
    clt_graph_destroy(g);
    clt_checkpoint_close(ck);
    return st;
}
