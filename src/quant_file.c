/* quant_file.c - the quantized checkpoint: its format (documented at clt_quantize in cltrain.h), a verifying
 * reader, the writer, and the int8 inference graph built from it. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "disk.h"
#include "quant_file.h"

#define QMAGIC "CLTQUANT"
#define QVERSION 1u
#define QMAX_FILE ((size_t)1 << 31)

/* ------------------------------------------------------------------------------------------ writing */

static void put_i32(clt__buf *b, int v) { clt__buf_u32(b, (uint32_t)v); }

static uint32_t crc(const unsigned char *p, size_t n) { return (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), p, n); }

int clt__qfile_write(clt_context *ctx, const char *path, const clt_qcheckpoint *q, uint64_t *bytes)
{
    clt__buf b = {0};
    clt__buf_put(&b, QMAGIC, 8);
    clt__buf_u32(&b, QVERSION);
    clt__buf_u32(&b, 0); /* body length, patched below */
    clt__buf_str(&b, q->text, strlen(q->text));
    put_i32(&b, q->c), put_i32(&b, q->h), put_i32(&b, q->w), put_i32(&b, q->classes);
    clt__buf_str(&b, (const char *)q->meta, q->meta_len);
    clt__buf_u32(&b, (uint32_t)q->nq);
    for (int i = 0; i < q->nq; i++) {
        const clt__qlayer *l = &q->q[i];
        clt__buf_str(&b, l->name, strlen(l->name));
        int g[11] = {l->kind, l->cout, l->cin, l->kh, l->kw, l->sh, l->sw, l->ph, l->pw, l->has_bias, 0};
        for (int k = 0; k < 10; k++) put_i32(&b, g[k]);
        clt__buf_f32(&b, l->x_scale);
        for (int c = 0; c < l->cout; c++) clt__buf_f32(&b, l->w_scale[c]);
        if (l->has_bias)
            for (int c = 0; c < l->cout; c++) clt__buf_f32(&b, l->bias[c]);
        clt__buf_put(&b, l->w, clt__qlayer_wcount(l));
    }
    clt__buf_u32(&b, (uint32_t)q->nf);
    for (int i = 0; i < q->nf; i++) {
        const clt__ftensor *t = &q->f[i];
        clt__buf_str(&b, t->name, strlen(t->name));
        put_i32(&b, t->ndim);
        for (int k = 0; k < t->ndim; k++) put_i32(&b, t->shape[k]);
        for (size_t k = 0; k < t->numel; k++) clt__buf_f32(&b, t->v[k]);
    }
    if (b.oom || b.len + 4 > QMAX_FILE) {
        free(b.p);
        return clt__err(ctx, b.oom ? CLT_ERR_NOMEM : CLT_ERR_INVALID, "writing %s: %s", path,
                        b.oom ? "out of host memory" : "the quantized checkpoint would exceed 2 GiB");
    }
    uint32_t body = (uint32_t)(b.len - 16);
    for (int k = 0; k < 4; k++) ((unsigned char *)b.p)[12 + k] = (unsigned char)(body >> (8 * k));
    clt__buf_u32(&b, crc((const unsigned char *)b.p, b.len));
    if (b.oom) {
        free(b.p);
        return clt__err(ctx, CLT_ERR_NOMEM, "writing %s: out of host memory", path);
    }
    char msg[1200];
    int st = clt_file_write_atomic(path, b.p, b.len, msg, sizeof msg);
    if (bytes) *bytes = b.len;
    free(b.p);
    return st ? clt__err(ctx, st, "%s", msg) : CLT_OK;
}

/* ------------------------------------------------------------------------------------------ reading */

/* A length-prefixed string into a new NUL-terminated copy (at most `max` bytes), NULL when bad. */
static char *get_str(clt__rd *r, size_t max, size_t *len)
{
    uint32_t n = clt__rd_u32(r);
    if (n > max) r->bad = 1;
    const unsigned char *p = clt__rd_take(r, n);
    char *s = p ? malloc((size_t)n + 1) : NULL;
    if (!s) {
        r->bad = 1;
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = 0;
    if (len) *len = n;
    return s;
}
static int get_name(clt__rd *r, char *dst)
{
    size_t n;
    char *s = get_str(r, CLT_NAME_LEN - 1, &n);
    if (!s) return -1;
    int ok = strlen(s) == n && n > 0;
    memcpy(dst, s, n + 1);
    free(s);
    return ok ? 0 : -1;
}

static int qfail(clt_qcheckpoint *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int qfail(clt_qcheckpoint *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(q->err, sizeof q->err, "%s: ", q->path);
    if (n > 0 && (size_t)n < sizeof q->err) vsnprintf(q->err + n, sizeof q->err - (size_t)n, fmt, ap);
    va_end(ap);
    return CLT_ERR_FORMAT;
}

size_t clt__qlayer_wcount(const clt__qlayer *l) { return (size_t)l->cout * l->cin * l->kh * l->kw; }

static int read_qlayer(clt_qcheckpoint *q, clt__rd *r, clt__qlayer *l)
{
    if (get_name(r, l->name)) return qfail(q, "bad layer name");
    int g[10];
    for (int k = 0; k < 10; k++) g[k] = (int)clt__rd_u32(r);
    l->kind = g[0], l->cout = g[1], l->cin = g[2], l->kh = g[3], l->kw = g[4], l->sh = g[5], l->sw = g[6];
    l->ph = g[7], l->pw = g[8], l->has_bias = g[9];
    int dense = l->kind == 1;
    if (r->bad || (l->kind != 0 && !dense) || l->cout < 1 || l->cin < 1 || l->kh < 1 || l->kw < 1 || l->sh < 1 ||
        l->sw < 1 || l->ph < 0 || l->pw < 0 || (l->has_bias != 0 && l->has_bias != 1) ||
        (dense && (l->kh != 1 || l->kw != 1 || l->sh != 1 || l->sw != 1 || l->ph || l->pw)) ||
        (double)l->cout * l->cin * l->kh * l->kw > (double)(r->len - r->at))
        return qfail(q, "layer %s: bad geometry", l->name);
    l->x_scale = clt__rd_f32(r);
    size_t co = (size_t)l->cout, wc = clt__qlayer_wcount(l);
    if (co * 8 > r->len - r->at) return qfail(q, "layer %s: truncated", l->name);
    l->w_scale = malloc(co * sizeof(float));
    l->bias = l->has_bias ? malloc(co * sizeof(float)) : NULL;
    l->w = malloc(wc);
    if (!l->w_scale || (l->has_bias && !l->bias) || !l->w) return qfail(q, "out of host memory");
    for (size_t c = 0; c < co; c++) l->w_scale[c] = clt__rd_f32(r);
    for (size_t c = 0; l->has_bias && c < co; c++) l->bias[c] = clt__rd_f32(r);
    const unsigned char *p = clt__rd_take(r, wc);
    if (!p) return qfail(q, "layer %s: truncated", l->name);
    memcpy(l->w, p, wc);
    if (!(l->x_scale > 0) || !isfinite(l->x_scale)) return qfail(q, "layer %s: bad input scale", l->name);
    for (size_t c = 0; c < co; c++)
        if (!(l->w_scale[c] > 0) || !isfinite(l->w_scale[c]) || (l->bias && !isfinite(l->bias[c])))
            return qfail(q, "layer %s: bad scale or bias of channel %zu", l->name, c);
    for (size_t i = 0; i < wc; i++)
        if (l->w[i] == -128) return qfail(q, "layer %s: weight -128 (outside the symmetric range)", l->name);
    return CLT_OK;
}

static int read_ftensor(clt_qcheckpoint *q, clt__rd *r, clt__ftensor *t)
{
    if (get_name(r, t->name)) return qfail(q, "bad tensor name");
    t->ndim = (int)clt__rd_u32(r);
    if (r->bad || t->ndim < 1 || t->ndim > 4) return qfail(q, "tensor %s: bad rank", t->name);
    double numel = 1;
    for (int k = 0; k < t->ndim; k++) {
        t->shape[k] = (int)clt__rd_u32(r);
        if (t->shape[k] < 1) return qfail(q, "tensor %s: bad shape", t->name);
        numel *= t->shape[k];
    }
    if (r->bad || numel * 4 > (double)(r->len - r->at)) return qfail(q, "tensor %s: truncated", t->name);
    t->numel = (size_t)numel;
    t->v = malloc(t->numel * sizeof(float));
    if (!t->v) return qfail(q, "out of host memory");
    for (size_t k = 0; k < t->numel; k++) {
        t->v[k] = clt__rd_f32(r);
        if (!isfinite(t->v[k])) return qfail(q, "tensor %s: value %zu is not finite", t->name, k);
    }
    return CLT_OK;
}

static int parse_body(clt_qcheckpoint *q, clt__rd *r)
{
    size_t n;
    q->text = get_str(r, 1u << 20, &n);
    if (!q->text || strlen(q->text) != n) return qfail(q, "bad model text");
    q->c = (int)clt__rd_u32(r), q->h = (int)clt__rd_u32(r), q->w = (int)clt__rd_u32(r), q->classes = (int)clt__rd_u32(r);
    if (r->bad || q->c < 1 || q->h < 1 || q->w < 1 || q->classes < 1) return qfail(q, "bad input shape");
    q->meta = (unsigned char *)get_str(r, 1u << 30, &q->meta_len);
    if (!q->meta) return qfail(q, "bad application metadata");
    uint32_t nq = clt__rd_u32(r);
    if (r->bad || nq > 4096) return qfail(q, "bad layer count");
    q->q = calloc((size_t)nq + 1, sizeof *q->q); /* + 1: the free loop may look at entry nq */
    if (!q->q) return qfail(q, "out of host memory");
    for (q->nq = 0; q->nq < (int)nq; q->nq++) CLT_TRY(read_qlayer(q, r, &q->q[q->nq]));
    uint32_t nf = clt__rd_u32(r);
    if (r->bad || nf > 65536) return qfail(q, "bad tensor count");
    q->f = calloc((size_t)nf + 1, sizeof *q->f);
    if (!q->f) return qfail(q, "out of host memory");
    for (q->nf = 0; q->nf < (int)nf; q->nf++) CLT_TRY(read_ftensor(q, r, &q->f[q->nf]));
    if (r->at != r->len) return qfail(q, "%zu bytes after the last tensor", r->len - r->at);
    return CLT_OK;
}

int clt_qcheckpoint_probe(const char *path)
{
    if (!path) return CLT_ERR_INVALID;
    /* Non-blocking open and a regular-file check first: a FIFO or device is "not a quantized checkpoint" at once
     * (the caller's reader then says what it is), never a read that blocks. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return CLT_ERR_IO;
    struct stat st;
    char m[8];
    ssize_t n = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) n = read(fd, m, sizeof m);
    close(fd);
    return n == 8 && !memcmp(m, QMAGIC, 8);
}

int clt_qcheckpoint_open(const char *path, clt_qcheckpoint **out)
{
    if (!out) return CLT_ERR_INVALID;
    clt_qcheckpoint *q = *out = calloc(1, sizeof *q);
    if (!q) return CLT_ERR_NOMEM;
    snprintf(q->path, sizeof q->path, "%s", path ? path : "(null)");
    if (!path) return qfail(q, "no path"), CLT_ERR_INVALID;
    char *data = NULL, err[1200];
    size_t len = 0;
    int rd = clt__read_file(path, QMAX_FILE, 0, &data, &len, err, sizeof err);
    if (rd) {
        if (rd == 1) snprintf(q->err, sizeof q->err, "%s: cannot open (No such file or directory)", path);
        else snprintf(q->err, sizeof q->err, "%s", err);
        return CLT_ERR_IO;
    }
    const unsigned char *p = (const unsigned char *)data;
    int st = CLT_OK;
    clt__rd h = {p, len, 0, 0};
    const unsigned char *m = clt__rd_take(&h, 8);
    uint32_t ver = clt__rd_u32(&h), body = clt__rd_u32(&h);
    if (!m || memcmp(m, QMAGIC, 8)) st = qfail(q, "not a quantized cltrain checkpoint (bad magic)");
    else if (ver != QVERSION) st = qfail(q, "quantized checkpoint format version %u; this build reads %u", ver, QVERSION);
    else if ((size_t)body + 20 != len) st = qfail(q, "truncated or extended: the header says %zu bytes, the file has %zu",
                                                  (size_t)body + 20, len);
    else {
        uint32_t c = (uint32_t)p[len - 4] | (uint32_t)p[len - 3] << 8 | (uint32_t)p[len - 2] << 16 |
                     (uint32_t)p[len - 1] << 24;
        if (c != crc(p, len - 4)) st = qfail(q, "CRC mismatch: the file is corrupt");
        else {
            clt__rd r = {p + 16, body, 0, 0};
            st = parse_body(q, &r);
        }
    }
    free(data);
    if (!st) q->ok = 1;
    return st;
}

void clt__qcheckpoint_free_parts(clt_qcheckpoint *q)
{
    for (int i = 0; q->q && i <= q->nq; i++) {
        free(q->q[i].w_scale);
        free(q->q[i].bias);
        free(q->q[i].w);
    }
    for (int i = 0; q->f && i <= q->nf; i++) free(q->f[i].v);
    free(q->q);
    free(q->f);
    free(q->text);
    free(q->meta);
}

void clt_qcheckpoint_close(clt_qcheckpoint *q)
{
    if (!q) return;
    clt__qcheckpoint_free_parts(q);
    free(q);
}

const char *clt_qcheckpoint_errmsg(const clt_qcheckpoint *q) { return q ? q->err : ""; }
const char *clt_qcheckpoint_model_text(const clt_qcheckpoint *q) { return q && q->ok ? q->text : ""; }
int clt_qcheckpoint_input(const clt_qcheckpoint *q, int *c, int *h, int *w, int *classes)
{
    if (!q || !q->ok) return CLT_ERR_STATE;
    if (c) *c = q->c;
    if (h) *h = q->h;
    if (w) *w = q->w;
    if (classes) *classes = q->classes;
    return CLT_OK;
}
const void *clt_qcheckpoint_app_meta(const clt_qcheckpoint *q, size_t *len)
{
    if (len) *len = q && q->ok ? q->meta_len : 0;
    return q && q->ok ? (const void *)q->meta : (const void *)"";
}

/* ------------------------------------------------------------------------------------------ building */

/* The model walk's hook (model.c): the stored int8 layer of this name, if any, replaces the float one. */
static int qhook(clt_graph *g, const char *keyword, const char *name, clt_tensor *x, clt_tensor **y)
{
    const clt_qcheckpoint *q = g->layer_hook_data;
    for (int i = 0; i < q->nq; i++) {
        const clt__qlayer *l = &q->q[i];
        if (strcmp(l->name, name)) continue;
        if (l->kind == 0) {
            if (strcmp(keyword, "conv"))
                return clt__err(g->ctx, CLT_ERR_FORMAT, "int8 layer %s is a convolution but the model has %s", name,
                                keyword);
            clt_conv2d_params p;
            clt_conv2d_default_params(&p, l->cout, l->kh);
            p.kernel_w = l->kw, p.stride_h = l->sh, p.stride_w = l->sw, p.pad_h = l->ph, p.pad_w = l->pw;
            if (clt_tensor_dim(x, 1) != l->cin)
                return clt__err(g->ctx, CLT_ERR_FORMAT, "int8 layer %s takes %d channels, the model gives %d", name,
                                l->cin, clt_tensor_dim(x, 1));
            CLT_TRY(clt_qconv2d(g, x, &p, l->w, l->w_scale, l->bias, l->x_scale, name, y));
        } else {
            if (strcmp(keyword, "dense"))
                return clt__err(g->ctx, CLT_ERR_FORMAT, "int8 layer %s is dense but the model has %s", name, keyword);
            if (clt_tensor_numel(x) / (size_t)clt_tensor_dim(x, 0) != (size_t)l->cin)
                return clt__err(g->ctx, CLT_ERR_FORMAT, "int8 layer %s takes %d features, the model gives %zu", name,
                                l->cin, clt_tensor_numel(x) / (size_t)clt_tensor_dim(x, 0));
            CLT_TRY(clt_qdense(g, x, l->cout, l->w, l->w_scale, l->bias, l->x_scale, name, y));
        }
        return 1;
    }
    return 0;
}

/* Writes the stored float tensors into g's state; each state tensor must have exactly one. */
static int apply_float(const clt_qcheckpoint *q, clt_graph *g)
{
    int n = clt_graph_state_count(g);
    if (n != q->nf)
        return clt__err(g->ctx, CLT_ERR_FORMAT, "%s: the int8 graph has %d float tensors, the file %d", q->path, n,
                        q->nf);
    for (int i = 0; i < n; i++) {
        clt_tensor *t = clt_graph_state_tensor(g, i, NULL);
        const clt__ftensor *f = NULL;
        for (int k = 0; k < q->nf && !f; k++)
            if (!strcmp(q->f[k].name, clt_tensor_name(t))) f = &q->f[k];
        int same = f && f->ndim == clt_tensor_ndim(t);
        for (int k = 0; same && k < f->ndim; k++) same = f->shape[k] == clt_tensor_dim(t, k);
        if (!same)
            return clt__err(g->ctx, CLT_ERR_FORMAT, "%s: tensor %s is %s in the file", q->path, clt_tensor_name(t),
                            f ? "of another shape" : "missing");
        CLT_TRY(clt_tensor_write(g, t, f->v, f->numel));
    }
    return CLT_OK;
}

int clt_qcheckpoint_build(const clt_qcheckpoint *q, clt_context *ctx, const clt_load_settings *s, clt_graph **out)
{
    if (!out) return ctx ? clt__err(ctx, CLT_ERR_INVALID, "clt_qcheckpoint_build: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    if (!ctx) return CLT_ERR_INVALID;
    if (!q || !q->ok)
        return clt__err(ctx, CLT_ERR_STATE, "clt_qcheckpoint_build: the quantized checkpoint failed to open: %s",
                        clt_qcheckpoint_errmsg(q));
    clt_load_settings def;
    clt_load_default_settings(&def);
    if (!s) s = &def;
    if (s->batch < 1) return clt__err(ctx, CLT_ERR_INVALID, "clt_qcheckpoint_build: batch %d (must be >= 1)", s->batch);
    if (s->training)
        return clt__err(ctx, CLT_ERR_UNSUPPORTED, "a quantized checkpoint builds inference graphs only (training = 0)");
    clt_model *m = NULL;
    int st = clt_model_parse(q->text, "quantized checkpoint", &m);
    if (st) {
        st = clt__err(ctx, st, "the network stored in the quantized checkpoint: %s", clt_model_errmsg(m));
        clt_model_destroy(m);
        return st;
    }
    clt_graph *g = NULL;
    clt_tensor *x, *logits;
    int shape[4] = {s->batch, q->c, q->h, q->w};
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    cs.training = 0;
    st = clt_graph_create(ctx, &g);
    if (!st) st = clt_input(g, "x", 4, shape, &x);
    if (!st) {
        g->layer_hook = qhook;
        g->layer_hook_data = q;
        st = clt_model_build(g, m, x, q->classes, &logits);
        g->layer_hook = NULL;
        g->layer_hook_data = NULL;
    }
    if (!st) st = clt_graph_keep(g, logits, 0);
    if (!st) st = clt_graph_compile(g, &cs);
    if (!st) st = apply_float(q, g);
    clt_model_destroy(m);
    if (st) {
        clt_graph_destroy(g);
        return st;
    }
    *out = g;
    return CLT_OK;
}
