/* model.c - network descriptions of the cltrain tool: the text format, presets, parsing and shape checks.
 *
 * Format: one layer per line, applied in order to the input image (C,H,W); `#` starts a comment; blank lines
 * are ignored. Arguments are positional numbers then key=value options.
 *
 *   conv OUT K [stride=1] [pad=0|same] [bias=1]   KxK convolution with OUT channels; pad=same keeps the size
 *                                                 (odd K; with stride S the size becomes ceil(H/S))
 *   relu | sigmoid | tanh | gelu                  activations
 *   leaky_relu [SLOPE=0.01]
 *   maxpool K [stride=K] [pad=0]                  pooling (floor mode)
 *   avgpool K [stride=K] [pad=0]
 *   global_avgpool                                (C,H,W) -> C
 *   flatten                                       (C,H,W) -> C*H*W
 *   dense UNITS|classes [bias=1]                  fully connected (flattens an image input)
 *   dropout [P=0.5]                               inverted dropout, training passes only
 *   batchnorm [momentum=0.1] [eps=1e-5]
 *   residual {  ...  }                            adds the block's input to its output (same shape)
 *   residual project {  ...  }                    the shortcut goes through a 1x1 convolution (stride if the
 *                                                 size shrinks), or a dense layer for vectors
 *   train [batch=N] [optimizer=sgd|adam|adamw] [lr=X] [momentum=X] [nesterov=0|1] [weight_decay=X]
 *         [epochs=N]                              training defaults (command-line options override them)
 *
 * The network must end with `classes` values per image (usually `dense classes`); the loss applies softmax.
 * Errors are reported as "FILE:LINE: message". The canonical text (tool_model.text) spells out every option,
 * so that a checkpoint keeps meaning the same network when defaults change.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

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

const char *const tool_model_presets[] = {"seed-cnn", "mlp", "cnn", NULL};
static const char *const preset_texts[] = {preset_seed_cnn, preset_mlp, preset_cnn};

/* ------------------------------------------------------------------------------------------ parsing */

typedef struct parsed {
    tool_layer *l;
    int n, cap;
} parsed;

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
    char msg[TOOL_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tool_fail(lc->err, CLT_ERR_INVALID, "%s:%d: %s", lc->origin, lc->line, msg);
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

static int parse_line(line_ctx *lc, tool_layer *L, tool_model *m, int *is_train)
{
    const char *kw = lc->kw;
    memset(L, 0, sizeof *L);
    L->line = lc->line;
    L->bias = 1;
    const char *s;
    if (strcmp(kw, "conv") == 0) {
        L->kind = TL_CONV;
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
        L->kind = kw[0] == 'r' ? TL_RELU : kw[0] == 's' ? TL_SIGMOID : kw[0] == 't' ? TL_TANH
                : kw[1] == 'e' ? TL_GELU : kw[0] == 'g' ? TL_GLOBAL_AVGPOOL : TL_FLATTEN;
        return leftovers(lc, "none");
    }
    if (strcmp(kw, "leaky_relu") == 0) {
        L->kind = TL_LEAKY_RELU;
        L->f = 0.01f;
        s = positional(lc, 1);
        if (s && !parse_float(s, 0, 1e6f, &L->f)) return LFAIL(lc, "leaky_relu: bad slope '%s'", s);
        return leftovers(lc, "none");
    }
    if (strcmp(kw, "maxpool") == 0 || strcmp(kw, "avgpool") == 0) {
        L->kind = kw[0] == 'm' ? TL_MAXPOOL : TL_AVGPOOL;
        s = positional(lc, 1);
        if (!s) return LFAIL(lc, "%s: missing the window size (%s K)", kw, kw);
        if (!parse_int(s, 1, 64, &L->k)) return LFAIL(lc, "%s: bad window size '%s' (1..64)", kw, s);
        L->stride = L->k;
        if (int_opt(lc, "stride", 1, 64, &L->stride) || int_opt(lc, "pad", 0, 64, &L->pad)) return CLT_ERR_INVALID;
        if (L->pad > L->k / 2) return LFAIL(lc, "%s: pad %d is more than half the window %d", kw, L->pad, L->k);
        return leftovers(lc, "stride, pad");
    }
    if (strcmp(kw, "dense") == 0) {
        L->kind = TL_DENSE;
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
        L->kind = TL_DROPOUT;
        L->f = 0.5f;
        s = positional(lc, 1);
        if (s && (!parse_float(s, 0, 1, &L->f) || L->f >= 1))
            return LFAIL(lc, "dropout: bad rate '%s' (0 <= p < 1)", s);
        return leftovers(lc, "none");
    }
    if (strcmp(kw, "batchnorm") == 0) {
        L->kind = TL_BATCHNORM;
        L->f = 0.1f;
        L->eps = 1e-5f;
        if (float_opt(lc, "momentum", 0, 1, &L->f) || float_opt(lc, "eps", 1e-12f, 1, &L->eps)) return CLT_ERR_INVALID;
        return leftovers(lc, "momentum, eps");
    }
    if (strcmp(kw, "residual") == 0) {
        L->kind = TL_RESIDUAL;
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
        L->kind = TL_END;
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

/* Appends to a growing string; returns 0 when out of memory. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
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

static void canonical(sbuf *b, const tool_model *m, const parsed *p)
{
    char f1[32], f2[32];
    sb_printf(b, "# cltrain model '%s'\n", m->name);
    int depth = 0;
    for (int i = 0; i < p->n; i++) {
        const tool_layer *L = &p->l[i];
        if (L->kind == TL_END) depth--;
        for (int d = 0; d < depth; d++) sb_printf(b, "  ");
        switch (L->kind) {
        case TL_CONV:
            sb_printf(b, "conv %d %d stride=%d pad=%d bias=%d\n", L->n, L->k, L->stride, L->pad, L->bias);
            break;
        case TL_RELU: sb_printf(b, "relu\n"); break;
        case TL_LEAKY_RELU: sb_printf(b, "leaky_relu %s\n", fstr(L->f, f1)); break;
        case TL_SIGMOID: sb_printf(b, "sigmoid\n"); break;
        case TL_TANH: sb_printf(b, "tanh\n"); break;
        case TL_GELU: sb_printf(b, "gelu\n"); break;
        case TL_MAXPOOL:
        case TL_AVGPOOL:
            sb_printf(b, "%s %d stride=%d pad=%d\n", L->kind == TL_MAXPOOL ? "maxpool" : "avgpool", L->k, L->stride,
                      L->pad);
            break;
        case TL_GLOBAL_AVGPOOL: sb_printf(b, "global_avgpool\n"); break;
        case TL_FLATTEN: sb_printf(b, "flatten\n"); break;
        case TL_DENSE:
            if (L->n < 0)
                sb_printf(b, "dense classes bias=%d\n", L->bias);
            else
                sb_printf(b, "dense %d bias=%d\n", L->n, L->bias);
            break;
        case TL_DROPOUT: sb_printf(b, "dropout %s\n", fstr(L->f, f1)); break;
        case TL_BATCHNORM: sb_printf(b, "batchnorm momentum=%s eps=%s\n", fstr(L->f, f1), fstr(L->eps, f2)); break;
        case TL_RESIDUAL:
            sb_printf(b, "residual %s{\n", L->project ? "project " : "");
            depth++;
            break;
        case TL_END: sb_printf(b, "}\n"); break;
        }
    }
    int any = m->batch > 0 || m->optimizer >= 0 || m->lr > 0 || m->momentum >= 0 || m->nesterov >= 0 ||
              m->weight_decay >= 0 || m->epochs > 0;
    if (!any) return;
    sb_printf(b, "train");
    if (m->batch > 0) sb_printf(b, " batch=%d", m->batch);
    if (m->optimizer >= 0)
        sb_printf(b, " optimizer=%s", m->optimizer == CLT_OPT_SGD ? "sgd" : m->optimizer == CLT_OPT_ADAM ? "adam" : "adamw");
    if (m->lr > 0) sb_printf(b, " lr=%s", fstr(m->lr, f1));
    if (m->momentum >= 0) sb_printf(b, " momentum=%s", fstr(m->momentum, f1));
    if (m->nesterov >= 0) sb_printf(b, " nesterov=%d", m->nesterov);
    if (m->weight_decay >= 0) sb_printf(b, " weight_decay=%s", fstr(m->weight_decay, f1));
    if (m->epochs > 0) sb_printf(b, " epochs=%d", m->epochs);
    sb_printf(b, "\n");
}

void tool_model_free(tool_model *m)
{
    if (!m) return;
    free(m->text);
    parsed *p = m->priv;
    if (p) free(p->l);
    free(p);
    memset(m, 0, sizeof *m);
}

/* `name` NULL: derived from origin. */
static int parse_named(const char *text, const char *origin, const char *name, tool_model *out, char *err)
{
    if (!text || !out) return tool_fail(err, CLT_ERR_INVALID, "tool_model_parse: NULL argument");
    if (!origin) origin = "model";
    memset(out, 0, sizeof *out);
    out->optimizer = -1;
    out->momentum = -1;
    out->nesterov = -1;
    out->weight_decay = -1;
    snprintf(out->origin, sizeof out->origin, "%s", origin);
    /* The name: a file's base name without extension. */
    const char *base = strrchr(origin, '/');
    base = base ? base + 1 : origin;
    snprintf(out->name, sizeof out->name, "%s", base);
    char *dot = strrchr(out->name, '.');
    if (dot && dot != out->name) *dot = 0;
    if (name) snprintf(out->name, sizeof out->name, "%s", name);

    parsed *p = calloc(1, sizeof *p);
    char *copy = strdup(text);
    if (!p || !copy) {
        free(p);
        free(copy);
        return tool_fail(err, CLT_ERR_NOMEM, "out of memory parsing %s", origin);
    }
    out->priv = p;
    int st = CLT_OK, depth = 0, train_line = 0, open_line[64];
    int lineno = 0;
    char *save = NULL;
    /* Split by hand rather than strtok on "\n", which would merge empty lines and shift line numbers. */
    for (char *line = copy; line && st == CLT_OK; lineno++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *next = nl ? nl + 1 : NULL;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        line_ctx lc = {.origin = origin, .line = lineno + 1, .err = err};
        for (char *t = strtok_r(line, " \t\r\f\v", &save); t; t = strtok_r(NULL, " \t\r\f\v", &save)) {
            if (lc.ntok == MAXTOK) {
                st = LFAIL(&lc, "too many arguments");
                break;
            }
            lc.tok[lc.ntok++] = t;
        }
        line = next;
        if (st || lc.ntok == 0) continue;
        lc.kw = lc.tok[0];
        tool_layer L;
        int is_train = 0;
        st = parse_line(&lc, &L, out, &is_train);
        if (st) break;
        if (is_train) {
            if (train_line) {
                st = LFAIL(&lc, "a second train line (the first is line %d)", train_line);
                break;
            }
            train_line = lc.line;
            continue;
        }
        if (L.kind == TL_RESIDUAL) {
            if (depth == 64) {
                st = LFAIL(&lc, "residual blocks nested too deeply");
                break;
            }
            open_line[depth++] = lc.line;
        } else if (L.kind == TL_END) {
            if (depth == 0) {
                st = LFAIL(&lc, "'}' without an open residual block");
                break;
            }
            if (p->n > 0 && p->l[p->n - 1].kind == TL_RESIDUAL) {
                st = LFAIL(&lc, "empty residual block");
                break;
            }
            depth--;
        }
        if (p->n == p->cap) {
            int nc = p->cap ? p->cap * 2 : 32;
            tool_layer *nl2 = realloc(p->l, (size_t)nc * sizeof *nl2);
            if (!nl2) {
                st = tool_fail(err, CLT_ERR_NOMEM, "out of memory parsing %s", origin);
                break;
            }
            p->l = nl2;
            p->cap = nc;
        }
        p->l[p->n++] = L;
    }
    free(copy);
    if (st == CLT_OK && depth > 0)
        st = tool_fail(err, CLT_ERR_INVALID, "%s:%d: residual block is not closed with '}'", origin,
                       open_line[depth - 1]);
    if (st == CLT_OK && p->n == 0) st = tool_fail(err, CLT_ERR_INVALID, "%s: no layers", origin);
    if (st == CLT_OK) {
        sbuf b = {0};
        canonical(&b, out, p);
        if (b.oom) {
            free(b.s);
            st = tool_fail(err, CLT_ERR_NOMEM, "out of memory parsing %s", origin);
        } else {
            out->text = b.s;
        }
    }
    if (st) tool_model_free(out);
    return st;
}

int tool_model_parse(const char *text, const char *origin, tool_model *out, char *err)
{
    return parse_named(text, origin, NULL, out, err);
}

int tool_model_load(const char *name_or_path, tool_model *out, char *err)
{
    if (!name_or_path || !out) return tool_fail(err, CLT_ERR_INVALID, "tool_model_load: NULL argument");
    for (int i = 0; tool_model_presets[i]; i++)
        if (strcmp(name_or_path, tool_model_presets[i]) == 0) {
            char origin[96];
            snprintf(origin, sizeof origin, "preset %s", tool_model_presets[i]);
            return parse_named(preset_texts[i], origin, tool_model_presets[i], out, err);
        }
    FILE *f = fopen(name_or_path, "rb");
    if (!f)
        return tool_fail(err, CLT_ERR_IO, "%s: not a preset (seed-cnn, mlp, cnn) and cannot open it as a file (%s)",
                         name_or_path, strerror(errno));
    sbuf b = {0};
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (memchr(chunk, 0, got)) {
            fclose(f);
            free(b.s);
            return tool_fail(err, CLT_ERR_FORMAT, "%s: not a text file", name_or_path);
        }
        sb_printf(&b, "%.*s", (int)got, chunk);
        if (b.len > (1u << 20)) {
            fclose(f);
            free(b.s);
            return tool_fail(err, CLT_ERR_FORMAT, "%s: too large for a model description", name_or_path);
        }
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr || b.oom) {
        free(b.s);
        return tool_fail(err, rerr ? CLT_ERR_IO : CLT_ERR_NOMEM, "%s: cannot read", name_or_path);
    }
    int st = tool_model_parse(b.s ? b.s : "", name_or_path, out, err);
    free(b.s);
    return st;
}

/* ------------------------------------------------------------------------------------------ shapes */

static void shape_str(const tool_shape *s, char *buf, size_t n)
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

int tool__model_walk(const tool_model *m, int c, int h, int w, int classes, const tool_model_builder *b,
                     void *input, void **output, tool_model_info *info, FILE *table, char *err)
{
    if (!m || !m->priv) return tool_fail(err, CLT_ERR_INVALID, "tool_model: the model was not parsed");
    if (c <= 0 || h <= 0 || w <= 0 || classes <= 0)
        return tool_fail(err, CLT_ERR_INVALID, "%s: bad input shape (%d,%d,%d) or class count %d", m->origin, c, h, w,
                         classes);
    const parsed *p = m->priv;
    tool_model_info inf = {0};
    tool_shape cur = {0, c, h, w};
    void *x = input;
    struct {
        tool_shape in;
        void *x;
        const tool_layer *begin;
    } stack[64];
    int depth = 0;
    int counts[TL_END + 1] = {0};
    char msg[TOOL_ERR_LEN];
    char sa[64], sb2[64];
    if (table) {
        shape_str(&cur, sa, sizeof sa);
        fprintf(table, "%5s  %-24s %-16s %10s %10s\n", "line", "layer", "output", "params", "MMACs");
        fprintf(table, "%5s  %-24s %-16s\n", "", "input", sa);
    }
    for (int i = 0; i < p->n; i++) {
        const tool_layer *L = &p->l[i];
        tool_shape out = cur;
        long long params = 0;
        double macs = 0;
        char name[48];
        msg[0] = 0;
        counts[L->kind]++;
        snprintf(name, sizeof name, "%s%d", L->kind == TL_DENSE ? "fc" : L->kind == TL_BATCHNORM ? "bn" : kind_name(L->kind),
                 counts[L->kind]);
        shape_str(&cur, sa, sizeof sa);
        switch (L->kind) {
        case TL_CONV:
        case TL_MAXPOOL:
        case TL_AVGPOOL: {
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
            if (L->kind == TL_CONV) {
                out.c = L->n;
                params = (long long)L->n * cur.c * L->k * L->k + (L->bias ? L->n : 0);
                macs = (double)out.c * out.h * out.w * cur.c * L->k * L->k;
            }
            break;
        }
        case TL_GLOBAL_AVGPOOL:
            if (cur.flat) {
                snprintf(msg, sizeof msg, "global_avgpool needs an image (C,H,W) input, got a vector %s", sa);
                break;
            }
            out = (tool_shape){1, cur.c, 1, 1};
            break;
        case TL_FLATTEN:
            out = (tool_shape){1, cur.c * cur.h * cur.w, 1, 1};
            break;
        case TL_DENSE: {
            int units = L->n < 0 ? classes : L->n;
            long long f = (long long)cur.c * cur.h * cur.w;
            out = (tool_shape){1, units, 1, 1};
            params = f * units + (L->bias ? units : 0);
            macs = (double)f * units;
            break;
        }
        case TL_BATCHNORM:
            params = 2LL * cur.c;
            break;
        case TL_RESIDUAL:
            stack[depth].in = cur;
            stack[depth].x = x;
            stack[depth].begin = L;
            depth++;
            break;
        case TL_END: {
            depth--;
            const tool_layer *B = stack[depth].begin;
            tool_shape bin = stack[depth].in;
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
        if (!msg[0] && b && L->kind != TL_RESIDUAL) {
            void *y = NULL;
            int st;
            if (L->kind == TL_END) {
                snprintf(name, sizeof name, "res%d", counts[TL_END]);
                st = b->residual(b->ud, stack[depth].begin, name, &stack[depth].in, &cur, stack[depth].x, x, &y, msg);
            } else {
                st = b->layer(b->ud, L, name, &cur, &out, x, &y, msg);
            }
            if (st) return tool_fail(err, st, "%s:%d: %s", m->origin, L->line, msg);
            x = y;
        }
        if (msg[0]) return tool_fail(err, CLT_ERR_SHAPE, "%s:%d: %s", m->origin, L->line, msg);
        inf.params += params;
        inf.macs += macs;
        inf.layers++;
        if (table) {
            shape_str(&out, sb2, sizeof sb2);
            char desc[64];
            if (L->kind == TL_END)
                snprintf(desc, sizeof desc, "} add%s", stack[depth].begin->project ? " (projected)" : "");
            else
                snprintf(desc, sizeof desc, "%s", kind_name(L->kind));
            int ind = 2 * (L->kind == TL_RESIDUAL ? depth - 1 : depth);
            fprintf(table, "%5d  %*s%-*s %-16s %10lld %10.2f\n", L->line, ind, "", 24 - ind, desc,
                    L->kind == TL_RESIDUAL ? "" : sb2, params, macs / 1e6);
        }
        cur = out;
    }
    if (!cur.flat || cur.c != classes) {
        shape_str(&cur, sa, sizeof sa);
        return tool_fail(err, CLT_ERR_SHAPE, "%s: the network ends with shape %s but must give %d class scores per "
                         "image (end it with 'dense classes')", m->origin, sa, classes);
    }
    if (table) fprintf(table, "total: %lld parameters, %.2f M multiply-adds per image (forward)\n", inf.params, inf.macs / 1e6);
    if (info) *info = inf;
    if (output) *output = x;
    return CLT_OK;
}

int tool_model_check(const tool_model *m, int c, int h, int w, int classes, tool_model_info *info, FILE *table,
                     char *err)
{
    return tool__model_walk(m, c, h, w, classes, NULL, NULL, NULL, info, table, err);
}
