/* model.c - the model description format (documented in cltrain.h): presets, parsing, canonical text and
 * shape checks. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"

/* ------------------------------------------------------------------------------------------ presets */

static const char preset_seed_cnn[] =
    "# seed-cnn: a small baseline CNN.\n"
    "conv 32 3\n"
    "relu\n"
    "maxpool 2\n"
    "conv 64 3\n"
    "relu\n"
    "maxpool 2\n"
    "flatten\n"
    "dense 64\n"
    "relu\n"
    "dense classes\n"
    "train batch=64 optimizer=adam lr=0.001\n";

static const char preset_mlp[] =
    "# mlp: one hidden layer.\n"
    "flatten\n"
    "dense 512\n"
    "relu\n"
    "dropout 0.2\n"
    "dense classes\n"
    "train batch=64 optimizer=adam lr=0.001\n";

static const char preset_cnn[] =
    "# cnn: the default network. Three stages of two 3x3 convolutions with batch normalization, each stage\n"
    "# followed by 2x2 max pooling, then one dense layer. Lean enough to train on a CPU.\n"
    "# On 3x32x32 input (CIFAR-10): 38.6 M multiply-adds (77 MFLOP) forward per image, about 3x that to\n"
    "# train; 0.31 M parameters. On 1x28x28 (MNIST): 29.6 M multiply-adds.\n"
    "conv 32 3 pad=same bias=0\n"
    "batchnorm\n"
    "relu\n"
    "conv 32 3 pad=same bias=0\n"
    "batchnorm\n"
    "relu\n"
    "maxpool 2\n"
    "conv 64 3 pad=same bias=0\n"
    "batchnorm\n"
    "relu\n"
    "conv 64 3 pad=same bias=0\n"
    "batchnorm\n"
    "relu\n"
    "maxpool 2\n"
    "conv 128 3 pad=same bias=0\n"
    "batchnorm\n"
    "relu\n"
    "conv 128 3 pad=same bias=0\n"
    "batchnorm\n"
    "relu\n"
    "maxpool 2\n"
    "flatten\n"
    "dense classes\n"
    "train batch=128 optimizer=sgd lr=0.05 momentum=0.9 nesterov=1 weight_decay=0.0005\n";

static const char *const preset_names[] = {"seed-cnn", "mlp", "cnn", NULL};
static const char *const preset_texts[] = {preset_seed_cnn, preset_mlp, preset_cnn};

/* ------------------------------------------------------------------------------------------ messages */

/* Formats the message into err (CLT__MODEL_ERR_LEN bytes) and returns status. */
static int mfail(char *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int mfail(char *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, CLT__MODEL_ERR_LEN, fmt, ap);
    va_end(ap);
    return status;
}

/* ------------------------------------------------------------------------------------------ parsing */

static int parse_int(const char *s, int lo, int hi, int *out)
{
    if (!s || !*s) return 0;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

static int parse_float(const char *s, float lo, float hi, float *out)
{
    if (!s || !*s) return 0;
    errno = 0;
    char *end;
    float v = strtof(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

#define MAXTOK 16

typedef struct line_ctx {
    const char *origin;
    int line;
    const char *kw;
    char *tok[MAXTOK];
    int ntok;
    int used[MAXTOK]; /* options consumed, to report unknown ones */
    char *err;
} line_ctx;

#define LFAIL(lc, ...) line_fail((lc), __VA_ARGS__)
static int line_fail(line_ctx *lc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int line_fail(line_ctx *lc, const char *fmt, ...)
{
    char msg[CLT__MODEL_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mfail(lc->err, CLT_ERR_INVALID, "%s:%d: %s", lc->origin, lc->line, msg);
}

/* Positional argument i (1-based, counting only tokens without '='), or NULL. */
static const char *positional(line_ctx *lc, int i)
{
    for (int t = 1; t < lc->ntok; t++)
        if (!strchr(lc->tok[t], '=') && --i == 0) {
            lc->used[t] = 1;
            return lc->tok[t];
        }
    return NULL;
}

static const char *option(line_ctx *lc, const char *key)
{
    size_t kl = strlen(key);
    for (int t = 1; t < lc->ntok; t++)
        if (strncmp(lc->tok[t], key, kl) == 0 && lc->tok[t][kl] == '=') {
            lc->used[t] = 1;
            return lc->tok[t] + kl + 1;
        }
    return NULL;
}

/* After a layer took its arguments: anything left over is an error. */
static int leftovers(line_ctx *lc, const char *known)
{
    for (int t = 1; t < lc->ntok; t++) {
        if (lc->used[t]) continue;
        if (strchr(lc->tok[t], '='))
            return LFAIL(lc, "%s: unknown option '%s' (options: %s)", lc->kw, lc->tok[t], known);
        return LFAIL(lc, "%s: unexpected argument '%s'", lc->kw, lc->tok[t]);
    }
    return 0;
}

static int int_opt(line_ctx *lc, const char *key, int lo, int hi, int *v)
{
    const char *s = option(lc, key);
    if (s && !parse_int(s, lo, hi, v))
        return LFAIL(lc, "%s: bad %s '%s' (an integer %d..%d)", lc->kw, key, s, lo, hi);
    return 0;
}

static int float_opt(line_ctx *lc, const char *key, float lo, float hi, float *v)
{
    const char *s = option(lc, key);
    if (s && !parse_float(s, lo, hi, v)) return LFAIL(lc, "%s: bad %s '%s' (a number %g..%g)", lc->kw, key, s, lo, hi);
    return 0;
}

/* Pooling and convolution sizes share these limits. */
#define MAXDIM 65536

static int parse_line(line_ctx *lc, clt__layer *L, clt_model_train_defaults *m, int *is_train)
{
    const char *kw = lc->kw;
    memset(L, 0, sizeof *L);
    L->line = lc->line;
    L->bias = 1;
    const char *s;
    if (strcmp(kw, "conv") == 0) {
        L->kind = CLT__L_CONV;
        s = positional(lc, 1);
        if (!s) return LFAIL(lc, "conv: missing the number of output channels (conv OUT K)");
        if (!parse_int(s, 1, MAXDIM, &L->n)) return LFAIL(lc, "conv: bad number of output channels '%s'", s);
        s = positional(lc, 2);
        if (!s) return LFAIL(lc, "conv: missing the kernel size (conv OUT K)");
        if (!parse_int(s, 1, 64, &L->k)) return LFAIL(lc, "conv: bad kernel size '%s' (1..64)", s);
        L->stride = 1;
        if (int_opt(lc, "stride", 1, 64, &L->stride)) return CLT_ERR_INVALID;
        s = option(lc, "pad");
        if (s && strcmp(s, "same") == 0) {
            if (L->k % 2 == 0) return LFAIL(lc, "conv: pad=same needs an odd kernel size, not %d", L->k);
            L->pad = L->k / 2;
        } else if (s && !parse_int(s, 0, 64, &L->pad)) {
            return LFAIL(lc, "conv: bad pad '%s' (a number or 'same')", s);
        }
        if (int_opt(lc, "bias", 0, 1, &L->bias)) return CLT_ERR_INVALID;
        return leftovers(lc, "stride, pad, bias");
    }
    if (strcmp(kw, "relu") == 0 || strcmp(kw, "sigmoid") == 0 || strcmp(kw, "tanh") == 0 ||
        strcmp(kw, "gelu") == 0 || strcmp(kw, "global_avgpool") == 0 || strcmp(kw, "flatten") == 0) {
        L->kind = kw[0] == 'r' ? CLT__L_RELU : kw[0] == 's' ? CLT__L_SIGMOID : kw[0] == 't' ? CLT__L_TANH
                : kw[1] == 'e' ? CLT__L_GELU : kw[0] == 'g' ? CLT__L_GLOBAL_AVGPOOL : CLT__L_FLATTEN;
        return leftovers(lc, "none");
    }
    if (strcmp(kw, "leaky_relu") == 0) {
        L->kind = CLT__L_LEAKY_RELU;
        L->f = 0.01f;
        s = positional(lc, 1);
        if (s && !parse_float(s, 0, 1e6f, &L->f)) return LFAIL(lc, "leaky_relu: bad slope '%s'", s);
        return leftovers(lc, "none");
    }
    if (strcmp(kw, "maxpool") == 0 || strcmp(kw, "avgpool") == 0) {
        L->kind = kw[0] == 'm' ? CLT__L_MAXPOOL : CLT__L_AVGPOOL;
        s = positional(lc, 1);
        if (!s) return LFAIL(lc, "%s: missing the window size (%s K)", kw, kw);
        if (!parse_int(s, 1, 64, &L->k)) return LFAIL(lc, "%s: bad window size '%s' (1..64)", kw, s);
        L->stride = L->k;
        if (int_opt(lc, "stride", 1, 64, &L->stride) || int_opt(lc, "pad", 0, 64, &L->pad)) return CLT_ERR_INVALID;
        if (L->pad > L->k / 2) return LFAIL(lc, "%s: pad %d is more than half the window %d", kw, L->pad, L->k);
        return leftovers(lc, "stride, pad");
    }
    if (strcmp(kw, "dense") == 0) {
        L->kind = CLT__L_DENSE;
        s = positional(lc, 1);
        if (!s) return LFAIL(lc, "dense: missing the number of units (dense N or dense classes)");
        if (strcmp(s, "classes") == 0)
            L->n = -1;
        else if (!parse_int(s, 1, 1 << 24, &L->n))
            return LFAIL(lc, "dense: bad number of units '%s' (a number or 'classes')", s);
        if (int_opt(lc, "bias", 0, 1, &L->bias)) return CLT_ERR_INVALID;
        return leftovers(lc, "bias");
    }
    if (strcmp(kw, "dropout") == 0) {
        L->kind = CLT__L_DROPOUT;
        L->f = 0.5f;
        s = positional(lc, 1);
        if (s && (!parse_float(s, 0, 1, &L->f) || L->f >= 1))
            return LFAIL(lc, "dropout: bad rate '%s' (0 <= p < 1)", s);
        return leftovers(lc, "none");
    }
    if (strcmp(kw, "batchnorm") == 0) {
        L->kind = CLT__L_BATCHNORM;
        L->f = 0.1f;
        L->eps = 1e-5f;
        if (float_opt(lc, "momentum", 0, 1, &L->f) || float_opt(lc, "eps", 1e-12f, 1, &L->eps)) return CLT_ERR_INVALID;
        return leftovers(lc, "momentum, eps");
    }
    if (strcmp(kw, "residual") == 0) {
        L->kind = CLT__L_RESIDUAL;
        int last = lc->ntok - 1;
        if (strcmp(lc->tok[last], "{") != 0) return LFAIL(lc, "residual: the line must end with '{'");
        lc->used[last] = 1;
        if (lc->ntok == 3) {
            if (strcmp(lc->tok[1], "project") != 0)
                return LFAIL(lc, "residual: unexpected '%s' (residual { or residual project {)", lc->tok[1]);
            L->project = 1;
            lc->used[1] = 1;
        }
        return leftovers(lc, "project");
    }
    if (strcmp(kw, "}") == 0) {
        L->kind = CLT__L_END;
        return leftovers(lc, "none");
    }
    if (strcmp(kw, "train") == 0) {
        *is_train = 1;
        if (int_opt(lc, "batch", 1, 1 << 20, &m->batch) || float_opt(lc, "lr", 0, 1e6f, &m->lr) ||
            float_opt(lc, "momentum", 0, 1, &m->momentum) || int_opt(lc, "nesterov", 0, 1, &m->nesterov) ||
            float_opt(lc, "weight_decay", 0, 1e6f, &m->weight_decay) || int_opt(lc, "epochs", 1, 1 << 20, &m->epochs))
            return CLT_ERR_INVALID;
        s = option(lc, "optimizer");
        if (s) {
            if (strcmp(s, "sgd") == 0)
                m->optimizer = CLT_OPT_SGD;
            else if (strcmp(s, "adam") == 0)
                m->optimizer = CLT_OPT_ADAM;
            else if (strcmp(s, "adamw") == 0)
                m->optimizer = CLT_OPT_ADAMW;
            else
                return LFAIL(lc, "train: unknown optimizer '%s' (sgd, adam, adamw)", s);
        }
        return leftovers(lc, "batch, optimizer, lr, momentum, nesterov, weight_decay, epochs");
    }
    if (strcmp(kw, "softmax") == 0)
        return LFAIL(lc, "softmax: not needed, the loss applies it to the last layer's output; remove the line");
    return LFAIL(lc, "unknown layer '%s' (conv, relu, leaky_relu, sigmoid, tanh, gelu, maxpool, avgpool, "
                 "global_avgpool, flatten, dense, dropout, batchnorm, residual, train)", kw);
}

void clt__sb_printf(clt__sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
}

/* Shortest decimal that reads back as the same float, so canonical text stays readable ("0.1"). */
static const char *fstr(float v, char *buf)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtof(buf, NULL) == v) break;
    }
    return buf;
}

static void canonical(clt__sbuf *b, const clt_model *mod)
{
    char f1[32], f2[32];
    const clt_model_train_defaults *m = &mod->train;
    clt__sb_printf(b, "# cltrain model '%s'\n", mod->name);
    int depth = 0;
    for (int i = 0; i < mod->n; i++) {
        const clt__layer *L = &mod->l[i];
        if (L->kind == CLT__L_END) depth--;
        for (int d = 0; d < depth; d++) clt__sb_printf(b, "  ");
        switch (L->kind) {
        case CLT__L_CONV:
            clt__sb_printf(b, "conv %d %d stride=%d pad=%d bias=%d\n", L->n, L->k, L->stride, L->pad, L->bias);
            break;
        case CLT__L_RELU: clt__sb_printf(b, "relu\n"); break;
        case CLT__L_LEAKY_RELU: clt__sb_printf(b, "leaky_relu %s\n", fstr(L->f, f1)); break;
        case CLT__L_SIGMOID: clt__sb_printf(b, "sigmoid\n"); break;
        case CLT__L_TANH: clt__sb_printf(b, "tanh\n"); break;
        case CLT__L_GELU: clt__sb_printf(b, "gelu\n"); break;
        case CLT__L_MAXPOOL:
        case CLT__L_AVGPOOL:
            clt__sb_printf(b, "%s %d stride=%d pad=%d\n", L->kind == CLT__L_MAXPOOL ? "maxpool" : "avgpool", L->k, L->stride,
                      L->pad);
            break;
        case CLT__L_GLOBAL_AVGPOOL: clt__sb_printf(b, "global_avgpool\n"); break;
        case CLT__L_FLATTEN: clt__sb_printf(b, "flatten\n"); break;
        case CLT__L_DENSE:
            if (L->n < 0)
                clt__sb_printf(b, "dense classes bias=%d\n", L->bias);
            else
                clt__sb_printf(b, "dense %d bias=%d\n", L->n, L->bias);
            break;
        case CLT__L_DROPOUT: clt__sb_printf(b, "dropout %s\n", fstr(L->f, f1)); break;
        case CLT__L_BATCHNORM: clt__sb_printf(b, "batchnorm momentum=%s eps=%s\n", fstr(L->f, f1), fstr(L->eps, f2)); break;
        case CLT__L_RESIDUAL:
            clt__sb_printf(b, "residual %s{\n", L->project ? "project " : "");
            depth++;
            break;
        case CLT__L_END: clt__sb_printf(b, "}\n"); break;
        }
    }
    int any = m->batch > 0 || m->optimizer >= 0 || m->lr > 0 || m->momentum >= 0 || m->nesterov >= 0 ||
              m->weight_decay >= 0 || m->epochs > 0;
    if (!any) return;
    clt__sb_printf(b, "train");
    if (m->batch > 0) clt__sb_printf(b, " batch=%d", m->batch);
    if (m->optimizer >= 0)
        clt__sb_printf(b, " optimizer=%s", m->optimizer == CLT_OPT_SGD ? "sgd" : m->optimizer == CLT_OPT_ADAM ? "adam" : "adamw");
    if (m->lr > 0) clt__sb_printf(b, " lr=%s", fstr(m->lr, f1));
    if (m->momentum >= 0) clt__sb_printf(b, " momentum=%s", fstr(m->momentum, f1));
    if (m->nesterov >= 0) clt__sb_printf(b, " nesterov=%d", m->nesterov);
    if (m->weight_decay >= 0) clt__sb_printf(b, " weight_decay=%s", fstr(m->weight_decay, f1));
    if (m->epochs > 0) clt__sb_printf(b, " epochs=%d", m->epochs);
    clt__sb_printf(b, "\n");
}

/* Forgets the parse result, keeping name, origin and message. */
static void model_clear(clt_model *m)
{
    free(m->text);
    free(m->l);
    m->text = NULL;
    m->l = NULL;
    m->n = m->cap = 0;
}

void clt_model_destroy(clt_model *m)
{
    if (!m) return;
    model_clear(m);
    free(m);
}

const char *clt_model_errmsg(const clt_model *m) { return m ? m->errmsg : ""; }
const char *clt_model_text(const clt_model *m) { return m && m->text ? m->text : ""; }
const char *clt_model_name(const clt_model *m) { return m ? m->name : ""; }
const char *clt_model_preset_name(int i)
{
    return i >= 0 && i < (int)(sizeof preset_texts / sizeof *preset_texts) ? preset_names[i] : NULL;
}

int clt_model_get_train_defaults(const clt_model *m, clt_model_train_defaults *d)
{
    if (!m || !d) return CLT_ERR_INVALID;
    if (!m->text) return CLT_ERR_STATE;
    *d = m->train;
    return CLT_OK;
}

/* Appends layer L to m; returns 0 when out of memory. */
static int push_layer(clt_model *m, const clt__layer *L)
{
    if (m->n == m->cap) {
        int nc = m->cap ? m->cap * 2 : 32;
        clt__layer *nl = realloc(m->l, (size_t)nc * sizeof *nl);
        if (!nl) return 0;
        m->l = nl;
        m->cap = nc;
    }
    m->l[m->n++] = *L;
    return 1;
}

/* Parses `copy` (modified in place) line by line into m's layers and train defaults. */
static int parse_lines(clt_model *out, char *copy, const char *origin, char *err)
{
    int st = CLT_OK, depth = 0, train_line = 0, open_line[64];
    int lineno = 0;
    char *save = NULL;
    /* A UTF-8 byte-order mark (editors on some systems write one) is not part of the first keyword. */
    if ((unsigned char)copy[0] == 0xEF && (unsigned char)copy[1] == 0xBB && (unsigned char)copy[2] == 0xBF) copy += 3;
    /* Split by hand rather than strtok on "\n", which would merge empty lines and shift line numbers. */
    for (char *line = copy; line && st == CLT_OK; lineno++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *next = nl ? nl + 1 : NULL;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        line_ctx lc = {.origin = origin, .line = lineno + 1, .err = err};
        for (char *t = strtok_r(line, " \t\r\f\v", &save); t; t = strtok_r(NULL, " \t\r\f\v", &save)) {
            if (lc.ntok == MAXTOK) return LFAIL(&lc, "too many arguments");
            lc.tok[lc.ntok++] = t;
        }
        line = next;
        if (lc.ntok == 0) continue;
        lc.kw = lc.tok[0];
        clt__layer L;
        int is_train = 0;
        st = parse_line(&lc, &L, &out->train, &is_train);
        if (st) return st;
        if (is_train) {
            if (train_line) return LFAIL(&lc, "a second train line (the first is line %d)", train_line);
            train_line = lc.line;
            continue;
        }
        if (L.kind == CLT__L_RESIDUAL) {
            if (depth == 64) return LFAIL(&lc, "residual blocks nested too deeply");
            open_line[depth++] = lc.line;
        } else if (L.kind == CLT__L_END) {
            if (depth == 0) return LFAIL(&lc, "'}' without an open residual block");
            if (out->n > 0 && out->l[out->n - 1].kind == CLT__L_RESIDUAL) return LFAIL(&lc, "empty residual block");
            depth--;
        }
        if (!push_layer(out, &L)) return mfail(err, CLT_ERR_NOMEM, "out of memory parsing %s", origin);
    }
    if (depth > 0)
        return mfail(err, CLT_ERR_INVALID, "%s:%d: residual block is not closed with '}'", origin, open_line[depth - 1]);
    if (out->n == 0) return mfail(err, CLT_ERR_INVALID, "%s: no layers", origin);
    return CLT_OK;
}

/* `name` NULL: derived from origin. */
static int parse_named(const char *text, const char *origin, const char *name, clt_model **mout)
{
    if (!mout) return CLT_ERR_INVALID;
    clt_model *out = *mout = calloc(1, sizeof *out);
    if (!out) return CLT_ERR_NOMEM;
    char *err = out->errmsg;
    if (!text) return mfail(err, CLT_ERR_INVALID, "clt_model_parse: text is NULL");
    if (!origin) origin = "model";
    out->train = (clt_model_train_defaults){.optimizer = -1, .momentum = -1, .nesterov = -1, .weight_decay = -1};
    snprintf(out->origin, sizeof out->origin, "%s", origin);
    /* The name: a file's base name without extension. */
    const char *base = strrchr(origin, '/');
    base = base ? base + 1 : origin;
    snprintf(out->name, sizeof out->name, "%s", base);
    char *dot = strrchr(out->name, '.');
    if (dot && dot != out->name) *dot = 0;
    if (name) snprintf(out->name, sizeof out->name, "%s", name);

    char *copy = clt__strdup(text);
    if (!copy) return mfail(err, CLT_ERR_NOMEM, "out of memory parsing %s", origin);
    int st = parse_lines(out, copy, origin, err);
    free(copy);
    if (st == CLT_OK) {
        clt__sbuf b = {0};
        canonical(&b, out);
        if (b.oom) {
            free(b.s);
            st = mfail(err, CLT_ERR_NOMEM, "out of memory parsing %s", origin);
        } else {
            out->text = b.s;
        }
    }
    if (st) model_clear(out);
    return st;
}

int clt_model_parse(const char *text, const char *origin, clt_model **out)
{
    return parse_named(text, origin, NULL, out);
}

int clt_model_preset(const char *name, clt_model **out)
{
    for (int i = 0; name && preset_names[i]; i++)
        if (strcmp(name, preset_names[i]) == 0) {
            char origin[96];
            snprintf(origin, sizeof origin, "preset %s", preset_names[i]);
            return parse_named(preset_texts[i], origin, preset_names[i], out);
        }
    if (!out) return CLT_ERR_INVALID;
    clt_model *m = *out = calloc(1, sizeof *m);
    if (!m) return CLT_ERR_NOMEM;
    return mfail(m->errmsg, CLT_ERR_INVALID, "%s: not a preset (seed-cnn, mlp, cnn)", name ? name : "(NULL)");
}

/* Reads a model file into *text (NUL-terminated; caller frees). Opens without blocking and checks it is a
 * regular file before reading, so that a FIFO or a device cannot hang the caller. */
static int read_model_file(const char *path, char **text, char *err)
{
    *text = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return mfail(err, CLT_ERR_IO, "%s: not a preset (seed-cnn, mlp, cnn) and cannot open it as a file (%s)", path,
                     strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int dir = S_ISDIR(sb.st_mode);
        close(fd);
        return mfail(err, CLT_ERR_IO, "%s: not a regular file (%s); a model description is a text file", path,
                     dir ? "a folder" : "a FIFO, socket or device");
    }
    if (sb.st_size > (1 << 20)) {
        close(fd);
        return mfail(err, CLT_ERR_FORMAT, "%s: too large for a model description", path);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return mfail(err, CLT_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    }
    clt__sbuf b = {0};
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (memchr(chunk, 0, got)) {
            fclose(f);
            free(b.s);
            return mfail(err, CLT_ERR_FORMAT, "%s: not a text file", path);
        }
        clt__sb_printf(&b, "%.*s", (int)got, chunk);
        if (b.len > (1u << 20)) {
            fclose(f);
            free(b.s);
            return mfail(err, CLT_ERR_FORMAT, "%s: too large for a model description", path);
        }
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr || b.oom) {
        free(b.s);
        return mfail(err, rerr ? CLT_ERR_IO : CLT_ERR_NOMEM, "%s: cannot read", path);
    }
    *text = b.s;
    return CLT_OK;
}

int clt_model_load(const char *name_or_path, clt_model **out)
{
    if (!out) return CLT_ERR_INVALID;
    for (int i = 0; name_or_path && preset_names[i]; i++)
        if (strcmp(name_or_path, preset_names[i]) == 0) return clt_model_preset(name_or_path, out);
    if (!name_or_path) {
        clt_model *m = *out = calloc(1, sizeof *m);
        return m ? mfail(m->errmsg, CLT_ERR_INVALID, "clt_model_load: name_or_path is NULL") : CLT_ERR_NOMEM;
    }
    char err[CLT__MODEL_ERR_LEN], *text = NULL;
    int st = read_model_file(name_or_path, &text, err);
    if (st) {
        clt_model *m = *out = calloc(1, sizeof *m);
        if (!m) return CLT_ERR_NOMEM;
        snprintf(m->origin, sizeof m->origin, "%s", name_or_path);
        memcpy(m->errmsg, err, sizeof err);
        return st;
    }
    st = clt_model_parse(text ? text : "", name_or_path, out);
    free(text);
    return st;
}

/* ------------------------------------------------------------------------------------------ shapes */

static void shape_str(const clt__shape *s, char *buf, size_t n)
{
    if (s->flat)
        snprintf(buf, n, "(%d)", s->c);
    else
        snprintf(buf, n, "(%d,%d,%d)", s->c, s->h, s->w);
}

static const char *kind_name(int k)
{
    static const char *const names[] = {"conv",    "relu",          "leaky_relu", "sigmoid", "tanh",
                                        "gelu",    "maxpool",       "avgpool",    "global_avgpool",
                                        "flatten", "dense",         "dropout",    "batchnorm",
                                        "residual", "}"};
    return names[k];
}

/* Output size of a window over `in` cells; 0 when it does not fit. */
static int window_out(int in, int k, int stride, int pad)
{
    if (in + 2 * pad < k) return 0;
    return (in + 2 * pad - k) / stride + 1;
}

int clt__model_walk(const clt_model *m, int c, int h, int w, int classes, const clt__model_builder *b,
                     void *input, void **output, clt_model_info *info, clt__sbuf *table, char *err)
{
    if (!m->text) return mfail(err, CLT_ERR_STATE, "%s: the model failed to parse (%s)", m->origin, m->errmsg);
    if (c <= 0 || h <= 0 || w <= 0 || classes <= 0)
        return mfail(err, CLT_ERR_INVALID, "%s: bad input shape (%d,%d,%d) or class count %d", m->origin, c, h, w,
                         classes);
    clt_model_info inf = {0};
    clt__shape cur = {0, c, h, w};
    void *x = input;
    struct {
        clt__shape in;
        void *x;
        const clt__layer *begin;
    } stack[64];
    int depth = 0;
    int counts[CLT__L_END + 1] = {0};
    char msg[CLT__MODEL_ERR_LEN];
    char sa[64], sb2[64];
    if (table) {
        shape_str(&cur, sa, sizeof sa);
        clt__sb_printf(table, "%5s  %-24s %-16s %10s %10s\n", "line", "layer", "output", "params", "MMACs");
        clt__sb_printf(table, "%5s  %-24s %-16s\n", "", "input", sa);
    }
    for (int i = 0; i < m->n; i++) {
        const clt__layer *L = &m->l[i];
        clt__shape out = cur;
        long long params = 0;
        double macs = 0;
        char name[48];
        msg[0] = 0;
        counts[L->kind]++;
        snprintf(name, sizeof name, "%s%d", L->kind == CLT__L_DENSE ? "fc" : L->kind == CLT__L_BATCHNORM ? "bn" : kind_name(L->kind),
                 counts[L->kind]);
        shape_str(&cur, sa, sizeof sa);
        switch (L->kind) {
        case CLT__L_CONV:
        case CLT__L_MAXPOOL:
        case CLT__L_AVGPOOL: {
            if (cur.flat) {
                snprintf(msg, sizeof msg, "%s needs an image (C,H,W) input, got a vector %s", kind_name(L->kind), sa);
                break;
            }
            out.h = window_out(cur.h, L->k, L->stride, L->pad);
            out.w = window_out(cur.w, L->k, L->stride, L->pad);
            if (!out.h || !out.w) {
                snprintf(msg, sizeof msg, "%s window %dx%d (pad %d) does not fit the input %s", kind_name(L->kind),
                         L->k, L->k, L->pad, sa);
                break;
            }
            if (L->kind == CLT__L_CONV) {
                out.c = L->n;
                params = (long long)L->n * cur.c * L->k * L->k + (L->bias ? L->n : 0);
                macs = (double)out.c * out.h * out.w * cur.c * L->k * L->k;
            }
            break;
        }
        case CLT__L_GLOBAL_AVGPOOL:
            if (cur.flat) {
                snprintf(msg, sizeof msg, "global_avgpool needs an image (C,H,W) input, got a vector %s", sa);
                break;
            }
            out = (clt__shape){1, cur.c, 1, 1};
            break;
        case CLT__L_FLATTEN:
            out = (clt__shape){1, cur.c * cur.h * cur.w, 1, 1};
            break;
        case CLT__L_DENSE: {
            int units = L->n < 0 ? classes : L->n;
            long long f = (long long)cur.c * cur.h * cur.w;
            out = (clt__shape){1, units, 1, 1};
            params = f * units + (L->bias ? units : 0);
            macs = (double)f * units;
            break;
        }
        case CLT__L_BATCHNORM:
            params = 2LL * cur.c;
            break;
        case CLT__L_RESIDUAL:
            stack[depth].in = cur;
            stack[depth].x = x;
            stack[depth].begin = L;
            depth++;
            break;
        case CLT__L_END: {
            depth--;
            const clt__layer *B = stack[depth].begin;
            clt__shape bin = stack[depth].in;
            char si[64];
            shape_str(&bin, si, sizeof si);
            int same = bin.flat == cur.flat && bin.c == cur.c && bin.h == cur.h && bin.w == cur.w;
            if (!B->project) {
                if (!same)
                    snprintf(msg, sizeof msg, "residual block (line %d) changes the shape %s -> %s; use "
                             "'residual project {' to project the shortcut", B->line, si, sa);
                break;
            }
            if (bin.flat != cur.flat) {
                snprintf(msg, sizeof msg, "residual project block (line %d) turns %s into %s; the shortcut can be "
                         "projected between images or between vectors only", B->line, si, sa);
                break;
            }
            if (cur.flat) {
                params = (long long)bin.c * cur.c + cur.c;
                macs = (double)bin.c * cur.c;
            } else {
                int s = (bin.h + cur.h - 1) / cur.h;
                if (window_out(bin.h, 1, s, 0) != cur.h || window_out(bin.w, 1, s, 0) != cur.w) {
                    snprintf(msg, sizeof msg, "residual project block (line %d): no 1x1 convolution stride maps "
                             "%s to %s", B->line, si, sa);
                    break;
                }
                params = (long long)bin.c * cur.c + cur.c;
                macs = (double)bin.c * cur.c * cur.h * cur.w;
            }
            break;
        }
        default: /* elementwise */
            break;
        }
        if (!msg[0] && b && L->kind != CLT__L_RESIDUAL) {
            void *y = NULL;
            int st;
            if (L->kind == CLT__L_END) {
                snprintf(name, sizeof name, "res%d", counts[CLT__L_END]);
                st = b->residual(b->ud, stack[depth].begin, name, &stack[depth].in, &cur, stack[depth].x, x, &y, msg);
            } else {
                st = b->layer(b->ud, L, name, &cur, &out, x, &y, msg);
            }
            if (st) return mfail(err, st, "%s:%d: %s", m->origin, L->line, msg);
            x = y;
        }
        if (msg[0]) return mfail(err, CLT_ERR_SHAPE, "%s:%d: %s", m->origin, L->line, msg);
        inf.params += params;
        inf.macs += macs;
        inf.layers++;
        if (table) {
            shape_str(&out, sb2, sizeof sb2);
            char desc[64];
            if (L->kind == CLT__L_END)
                snprintf(desc, sizeof desc, "} add%s", stack[depth].begin->project ? " (projected)" : "");
            else
                snprintf(desc, sizeof desc, "%s", kind_name(L->kind));
            int ind = 2 * (L->kind == CLT__L_RESIDUAL ? depth - 1 : depth);
            clt__sb_printf(table, "%5d  %*s%-*s %-16s %10lld %10.2f\n", L->line, ind, "", 24 - ind, desc,
                    L->kind == CLT__L_RESIDUAL ? "" : sb2, params, macs / 1e6);
        }
        cur = out;
    }
    if (!cur.flat || cur.c != classes) {
        shape_str(&cur, sa, sizeof sa);
        return mfail(err, CLT_ERR_SHAPE, "%s: the network ends with shape %s but must give %d class scores per "
                         "image (end it with 'dense classes')", m->origin, sa, classes);
    }
    if (table) clt__sb_printf(table, "total: %lld parameters, %.2f M multiply-adds per image (forward)\n", inf.params, inf.macs / 1e6);
    if (info) *info = inf;
    if (output) *output = x;
    return CLT_OK;
}

int clt_model_check(clt_model *m, int c, int h, int w, int classes, clt_model_info *info, char *table,
                    size_t table_len)
{
    if (!m) return CLT_ERR_INVALID;
    char err[CLT__MODEL_ERR_LEN] = "";
    clt__sbuf tb = {0};
    clt_model_info inf = {0};
    int st = clt__model_walk(m, c, h, w, classes, NULL, NULL, NULL, &inf, &tb, err);
    if (table && table_len) {
        size_t n = tb.len < table_len - 1 ? tb.len : table_len - 1;
        if (n) memcpy(table, tb.s, n);
        table[n] = 0;
    }
    inf.table_bytes = tb.len + 1;
    int oom = tb.oom;
    free(tb.s);
    if (!st && oom) st = mfail(err, CLT_ERR_NOMEM, "out of memory writing the layer table of %s", m->origin);
    snprintf(m->errmsg, sizeof m->errmsg, "%s", st ? err : "");
    if (info) *info = inf;
    return st;
}
