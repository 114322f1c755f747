/* model.c - the model text format (documented in cltrain.h): presets, the line reader, parsing into layers
 * (each op's keywords come from the op table, src/ops/ops.def), canonical text, and the shape walk with the
 * limits a description may ask for. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The seed documents' networks for tables (`cltrain table`): a binary classifier on numeric features (its one
 * output goes through a sigmoid inside the binary cross-entropy) and a one-hidden-layer MLP trained with plain SGD
 * (Keras' SGD defaults: lr 0.01, no momentum; batch 32 as Keras' fit). */
static const char preset_seed_binary[] =
    "# seed-binary: dense64-relu-dense32-relu-dense1 (sigmoid + binary cross-entropy for a binary task).\n"
    "flatten\n"
    "dense 64\n"
    "relu\n"
    "dense 32\n"
    "relu\n"
    "dense classes\n"
    "train batch=32 optimizer=adam lr=0.001 epochs=10\n";

static const char preset_seed_mlp[] =
    "# seed-mlp: dense128-relu-dense(classes), trained with SGD.\n"
    "flatten\n"
    "dense 128\n"
    "relu\n"
    "dense classes\n"
    "train batch=32 optimizer=sgd lr=0.01 momentum=0 weight_decay=0 epochs=10\n";

static const char preset_gpt_tiny[] =
    "# gpt-tiny: nanoGPT's character-level shape for a CPU (4 blocks of 4 heads, 128 dims, context 64);\n"
    "# 0.8 M parameters with a 65-character vocabulary, tied embeddings, GPT-2 initialization.\n"
    "gpt layers=4 heads=4 dim=128 block=64 mlp=4 bias=1 tied=1 dropout=0\n"
    "train batch=12 optimizer=adamw lr=0.001 beta1=0.9 beta2=0.99 weight_decay=0.1 warmup=100 min_lr=0.0001 "
    "clip=1 steps=2000\n";
static const char preset_gpt_small[] =
    "# gpt-small: nanoGPT's shakespeare-char shape (6 blocks of 6 heads, 384 dims, context 256), a GPU shape;\n"
    "# 10.7 M parameters with a 65-character vocabulary.\n"
    "gpt layers=6 heads=6 dim=384 block=256 mlp=4 bias=1 tied=1 dropout=0.2\n"
    "train batch=64 optimizer=adamw lr=0.001 beta1=0.9 beta2=0.99 weight_decay=0.1 warmup=100 min_lr=0.0001 "
    "clip=1 steps=5000\n";

static const char *const preset_names[] = {"seed-cnn", "mlp", "cnn", "seed-binary", "seed-mlp", "gpt-tiny",
                                          "gpt-small", NULL};
static const char *const preset_texts[] = {preset_seed_cnn, preset_mlp, preset_cnn, preset_seed_binary,
                                          preset_seed_mlp, preset_gpt_tiny, preset_gpt_small};

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

const char *clt__fstr(float v, char *buf)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtof(buf, NULL) == v) break;
    }
    return buf;
}

/* ------------------------------------------------------------------------------------------ the line reader */

int clt__parse_int(const char *s, int lo, int hi, int *out)
{
    if (!s || !*s) return 0;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

int clt__parse_float(const char *s, float lo, float hi, float *out)
{
    if (!s || !*s) return 0;
    errno = 0;
    char *end;
    float v = strtof(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int clt__line_fail(clt__line *l, const char *fmt, ...)
{
    char msg[CLT__MODEL_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mfail(l->err, CLT_ERR_INVALID, "%s:%d: %s", l->origin, l->line, msg);
}
#define LFAIL clt__line_fail

const char *clt__line_arg(clt__line *l, int i)
{
    for (int t = 1; t < l->ntok; t++)
        if (!strchr(l->tok[t], '=') && --i == 0) {
            l->used[t] = 1;
            return l->tok[t];
        }
    return NULL;
}

const char *clt__line_opt(clt__line *l, const char *key)
{
    size_t kl = strlen(key);
    for (int t = 1; t < l->ntok; t++)
        if (strncmp(l->tok[t], key, kl) == 0 && l->tok[t][kl] == '=') {
            l->used[t] = 1;
            return l->tok[t] + kl + 1;
        }
    return NULL;
}

int clt__line_int(clt__line *l, const char *key, int lo, int hi, int *v)
{
    const char *s = clt__line_opt(l, key);
    if (s && !clt__parse_int(s, lo, hi, v))
        return LFAIL(l, "%s: bad %s '%s' (an integer %d..%d)", l->kw, key, s, lo, hi);
    return 0;
}

int clt__line_float(clt__line *l, const char *key, float lo, float hi, float *v)
{
    const char *s = clt__line_opt(l, key);
    if (s && !clt__parse_float(s, lo, hi, v)) return LFAIL(l, "%s: bad %s '%s' (a number %g..%g)", l->kw, key, s, lo, hi);
    return 0;
}

/* Before a layer reads the line: the same option twice is a mistake, named as such. */
static int repeated_options(clt__line *l)
{
    for (int t = 1; t < l->ntok; t++) {
        const char *eq = strchr(l->tok[t], '=');
        if (!eq) continue;
        size_t kl = (size_t)(eq - l->tok[t]);
        for (int u = 1; u < t; u++)
            if (strncmp(l->tok[u], l->tok[t], kl + 1) == 0)
                return LFAIL(l, "%s: repeated option '%.*s'", l->kw, (int)kl, l->tok[t]);
    }
    return 0;
}

/* After a layer took its arguments: anything left over is an error. */
static int leftovers(clt__line *l, const char *known)
{
    for (int t = 1; t < l->ntok; t++) {
        if (l->used[t]) continue;
        if (strchr(l->tok[t], '='))
            return LFAIL(l, "%s: unknown option '%s' (options: %s)", l->kw, l->tok[t], known);
        return LFAIL(l, "%s: unexpected argument '%s'", l->kw, l->tok[t]);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ parsing */

/* The format's own lines, beside the ops' layer keywords (help texts list them after the layers). */
static const char *const structure_usage[] = {
    "residual [project] { ...layers... }",
    "train [batch=N] [optimizer=sgd|adam|adamw] [lr=X] [momentum=X] [nesterov=0|1] [weight_decay=X] [epochs=N]\n"
    "      [beta1=X] [beta2=X] [warmup=N] [min_lr=X] [clip=X] [steps=N]",
    "gpt layers=N heads=N dim=N block=T [mlp=4] [bias=1] [tied=1] [dropout=0]",
};

const char *clt_model_layer_usage(int i)
{
    int nt = 0;
    while (clt__layer_type_at(nt)) nt++;
    if (i < 0) return NULL;
    if (i < nt) return clt__layer_type_at(i)->usage;
    return i - nt < 3 ? structure_usage[i - nt] : NULL;
}

static int parse_train(clt__line *l, clt_model_train_defaults *m)
{
    if (clt__line_int(l, "batch", 1, 1 << 20, &m->batch) || clt__line_float(l, "lr", 0, 1e6f, &m->lr) ||
        clt__line_float(l, "momentum", 0, 1, &m->momentum) || clt__line_int(l, "nesterov", 0, 1, &m->nesterov) ||
        clt__line_float(l, "weight_decay", 0, 1e6f, &m->weight_decay) ||
        clt__line_int(l, "epochs", 1, 1 << 20, &m->epochs) || clt__line_float(l, "beta1", 0, 0.999999f, &m->beta1) ||
        clt__line_float(l, "beta2", 0, 0.999999f, &m->beta2) || clt__line_int(l, "warmup", 0, 1 << 30, &m->warmup) ||
        clt__line_float(l, "min_lr", 0, 1e6f, &m->min_lr) || clt__line_float(l, "clip", 0, 1e6f, &m->clip) ||
        clt__line_int(l, "steps", 1, 1 << 30, &m->steps))
        return CLT_ERR_INVALID;
    const char *s = clt__line_opt(l, "optimizer");
    if (s) {
        if (strcmp(s, "sgd") == 0)
            m->optimizer = CLT_OPT_SGD;
        else if (strcmp(s, "adam") == 0)
            m->optimizer = CLT_OPT_ADAM;
        else if (strcmp(s, "adamw") == 0)
            m->optimizer = CLT_OPT_ADAMW;
        else
            return LFAIL(l, "train: unknown optimizer '%s' (sgd, adam, adamw)", s);
    }
    return leftovers(l, "batch, optimizer, lr, momentum, nesterov, weight_decay, epochs, beta1, beta2, warmup, "
                        "min_lr, clip, steps");
}

/* The gpt line: every size given, so that a description never depends on defaults for its shape. */
static int parse_gpt(clt__line *l, clt_model_lm_info *g)
{
    *g = (clt_model_lm_info){0, 0, 0, 0, 4, 1, 1, 0.0f};
    static const char *const need[] = {"layers", "heads", "dim", "block"};
    for (int i = 0; i < 4; i++)
        if (!clt__line_opt(l, need[i])) return LFAIL(l, "gpt: missing %s=N (gpt layers=N heads=N dim=N block=T)", need[i]);
    if (clt__line_int(l, "layers", 1, 256, &g->layers) || clt__line_int(l, "heads", 1, 256, &g->heads) ||
        clt__line_int(l, "dim", 1, 1 << 16, &g->dim) || clt__line_int(l, "block", 1, 1 << 16, &g->block) ||
        clt__line_int(l, "mlp", 1, 64, &g->mlp) || clt__line_int(l, "bias", 0, 1, &g->bias) ||
        clt__line_int(l, "tied", 0, 1, &g->tied) || clt__line_float(l, "dropout", 0, 0.999f, &g->dropout))
        return CLT_ERR_INVALID;
    if (g->dim % g->heads != 0 || g->dim / g->heads > 256)
        return LFAIL(l, "gpt: %d heads do not divide dim=%d into heads of at most 256 values", g->heads, g->dim);
    /* A mistyped size must not run a machine out of memory: blocks hold (4 + 2 mlp) dim^2 weights each. */
    double params = (double)g->layers * (4.0 + 2.0 * g->mlp) * g->dim * g->dim + (double)g->block * g->dim;
    if (params > 2e9)
        return LFAIL(l, "gpt: about %.3g parameters (layers * (4 + 2 mlp) * dim^2); at most 2e9", params);
    if (clt__line_arg(l, 1)) return LFAIL(l, "gpt: unexpected '%s' (options are key=value)", clt__line_arg(l, 1));
    return leftovers(l, "layers, heads, dim, block, mlp, bias, tied, dropout");
}

static int parse_residual(clt__line *l, clt__layer *L)
{
    L->kind = CLT__L_RESIDUAL;
    int last = l->ntok - 1;
    if (strcmp(l->tok[last], "{") != 0) return LFAIL(l, "residual: the line must end with '{'");
    l->used[last] = 1;
    if (l->ntok == 3) {
        if (strcmp(l->tok[1], "project") != 0)
            return LFAIL(l, "residual: unexpected '%s' (residual { or residual project {)", l->tok[1]);
        L->project = 1;
        l->used[1] = 1;
    }
    return leftovers(l, "project");
}

static int unknown_layer(clt__line *l)
{
    char list[512] = "";
    size_t at = 0;
    for (int i = 0; clt__layer_type_at(i) && at < sizeof list; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s, ", clt__layer_type_at(i)->keyword);
    return LFAIL(l, "unknown layer '%s' (%sresidual, train)", l->kw, list);
}

/* One non-empty line: a layer (*L) or the train line (*is_train, into *m). */
static int parse_line(clt__line *l, clt__layer *L, clt_model_train_defaults *m, int *is_train)
{
    const char *kw = l->kw;
    memset(L, 0, sizeof *L);
    L->line = l->line;
    CLT_TRY(repeated_options(l));
    const clt__layer_type *t = clt__layer_type_find(kw);
    if (t) {
        L->kind = CLT__L_LAYER;
        L->type = t;
        CLT_TRY(t->parse(l, L->args.bytes));
        return leftovers(l, t->options ? t->options : "none");
    }
    if (strcmp(kw, "residual") == 0) return parse_residual(l, L);
    if (strcmp(kw, "}") == 0) {
        L->kind = CLT__L_END;
        return leftovers(l, "none");
    }
    if (strcmp(kw, "train") == 0) {
        *is_train = 1;
        return parse_train(l, m);
    }
    if (strcmp(kw, "softmax") == 0)
        return LFAIL(l, "softmax: not needed, the loss applies it to the last layer's output; remove the line");
    return unknown_layer(l);
}

static void canonical(clt__sbuf *b, const clt_model *mod)
{
    char f1[32];
    const clt_model_train_defaults *m = &mod->train;
    clt__sb_printf(b, "# cltrain model '%s'\n", mod->name);
    int depth = 0;
    for (int i = 0; i < mod->n; i++) {
        const clt__layer *L = &mod->l[i];
        if (L->kind == CLT__L_END) depth--;
        for (int d = 0; d < depth; d++) clt__sb_printf(b, "  ");
        if (L->kind == CLT__L_LAYER) {
            L->type->print(L->args.bytes, b);
        } else if (L->kind == CLT__L_RESIDUAL) {
            clt__sb_printf(b, "residual %s{\n", L->project ? "project " : "");
            depth++;
        } else {
            clt__sb_printf(b, "}\n");
        }
    }
    if (mod->lm.layers > 0) {
        const clt_model_lm_info *g = &mod->lm;
        clt__sb_printf(b, "gpt layers=%d heads=%d dim=%d block=%d mlp=%d bias=%d tied=%d dropout=%s\n", g->layers,
                       g->heads, g->dim, g->block, g->mlp, g->bias, g->tied, clt__fstr(g->dropout, f1));
    }
    int any = m->batch > 0 || m->optimizer >= 0 || m->lr > 0 || m->momentum >= 0 || m->nesterov >= 0 ||
              m->weight_decay >= 0 || m->epochs > 0 || m->beta1 >= 0 || m->beta2 >= 0 || m->warmup >= 0 ||
              m->min_lr >= 0 || m->clip >= 0 || m->steps > 0;
    if (!any) return;
    clt__sb_printf(b, "train");
    if (m->batch > 0) clt__sb_printf(b, " batch=%d", m->batch);
    if (m->optimizer >= 0)
        clt__sb_printf(b, " optimizer=%s", m->optimizer == CLT_OPT_SGD ? "sgd" : m->optimizer == CLT_OPT_ADAM ? "adam" : "adamw");
    if (m->lr > 0) clt__sb_printf(b, " lr=%s", clt__fstr(m->lr, f1));
    if (m->momentum >= 0) clt__sb_printf(b, " momentum=%s", clt__fstr(m->momentum, f1));
    if (m->nesterov >= 0) clt__sb_printf(b, " nesterov=%d", m->nesterov);
    if (m->weight_decay >= 0) clt__sb_printf(b, " weight_decay=%s", clt__fstr(m->weight_decay, f1));
    if (m->epochs > 0) clt__sb_printf(b, " epochs=%d", m->epochs);
    if (m->beta1 >= 0) clt__sb_printf(b, " beta1=%s", clt__fstr(m->beta1, f1));
    if (m->beta2 >= 0) clt__sb_printf(b, " beta2=%s", clt__fstr(m->beta2, f1));
    if (m->warmup >= 0) clt__sb_printf(b, " warmup=%d", m->warmup);
    if (m->min_lr >= 0) clt__sb_printf(b, " min_lr=%s", clt__fstr(m->min_lr, f1));
    if (m->clip >= 0) clt__sb_printf(b, " clip=%s", clt__fstr(m->clip, f1));
    if (m->steps > 0) clt__sb_printf(b, " steps=%d", m->steps);
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
    if (!m) return CLT_ERR_INVALID;
    if (!m->text) return CLT_ERR_STATE; /* the message stays the parse error, which says why */
    clt_model *mw = (clt_model *)m;     /* the message is not part of the model's logical state */
    mw->errmsg[0] = 0;
    if (!d) {
        snprintf(mw->errmsg, sizeof mw->errmsg, "clt_model_get_train_defaults: d is NULL");
        return CLT_ERR_INVALID;
    }
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
        clt__line lc = {.origin = origin, .line = lineno + 1, .err = err};
        for (char *t = strtok_r(line, " \t\r\f\v", &save); t; t = strtok_r(NULL, " \t\r\f\v", &save)) {
            if (lc.ntok == CLT__MAXTOK) return LFAIL(&lc, "too many arguments");
            lc.tok[lc.ntok++] = t;
        }
        line = next;
        if (lc.ntok == 0) continue;
        lc.kw = lc.tok[0];
        if (strcmp(lc.kw, "gpt") == 0) {
            if (out->lm_line) return LFAIL(&lc, "a second gpt line (the first is line %d)", out->lm_line);
            CLT_TRY(repeated_options(&lc));
            CLT_TRY(parse_gpt(&lc, &out->lm));
            out->lm_line = lc.line;
            continue;
        }
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
    if (out->lm_line && out->n > 0)
        return mfail(err, CLT_ERR_INVALID, "%s:%d: a gpt model has no other layer lines (line %d is one)", origin,
                     out->lm_line, out->l[0].line);
    if (out->n == 0 && !out->lm_line) return mfail(err, CLT_ERR_INVALID, "%s: no layers", origin);
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
    out->train = (clt_model_train_defaults){.optimizer = -1, .momentum = -1, .nesterov = -1, .weight_decay = -1,
                                            .beta1 = -1, .beta2 = -1, .warmup = -1, .min_lr = -1, .clip = -1};
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
    return mfail(m->errmsg, CLT_ERR_INVALID, "%s: not a preset (seed-cnn, mlp, cnn, seed-binary, seed-mlp, gpt-tiny, gpt-small)", name ? name : "(NULL)");
}

/* Reads a model file into *text (NUL-terminated; caller frees). Opens without blocking and checks it is a
 * regular file before reading, so that a FIFO or a device cannot hang the caller. */
static int read_model_file(const char *path, char **text, char *err)
{
    *text = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return mfail(err, CLT_ERR_IO, "%s: not a preset (seed-cnn, mlp, cnn, seed-binary, seed-mlp, gpt-tiny, gpt-small) and cannot open it as a file (%s)", path,
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

void clt__shape_text(const clt__shape *s, char *buf, size_t n)
{
    if (s->flat)
        snprintf(buf, n, "(%d)", s->c);
    else
        snprintf(buf, n, "(%d,%d,%d)", s->c, s->h, s->w);
}

int clt__layer_shape_fail(char *msg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, CLT__MODEL_ERR_LEN, fmt, ap);
    va_end(ap);
    return CLT_ERR_SHAPE;
}

int clt__layer_same_shape(const void *args, const clt__shape *in, int classes, clt__shape *out,
                          clt__layer_cost *cost, char *msg)
{
    (void)args, (void)classes, (void)cost, (void)msg;
    *out = *in;
    return CLT_OK;
}

/* Index of a layer type in the table (for per-type layer counts). */
static int type_index(const clt__layer_type *t)
{
    int i = 0;
    while (clt__layer_type_at(i) && clt__layer_type_at(i) != t) i++;
    return i;
}

/* The shape rule of a residual block's end: `bin` (block input) + shortcut must give `cur`. */
static int residual_shape(const clt__layer *B, const clt__shape *bin, const clt__shape *cur, clt__layer_cost *cost,
                          char *msg)
{
    char si[64], sa[64];
    clt__shape_text(bin, si, sizeof si);
    clt__shape_text(cur, sa, sizeof sa);
    int same = bin->flat == cur->flat && bin->c == cur->c && bin->h == cur->h && bin->w == cur->w;
    if (!B->project) {
        if (!same)
            return mfail(msg, CLT_ERR_SHAPE, "residual block (line %d) changes the shape %s -> %s; use "
                         "'residual project {' to project the shortcut", B->line, si, sa);
        return CLT_OK;
    }
    if (bin->flat != cur->flat)
        return mfail(msg, CLT_ERR_SHAPE, "residual project block (line %d) turns %s into %s; the shortcut can be "
                     "projected between images or between vectors only", B->line, si, sa);
    cost->params = (long long)bin->c * cur->c + cur->c;
    if (cur->flat) {
        cost->macs = (double)bin->c * cur->c;
        return CLT_OK;
    }
    int s = (bin->h + cur->h - 1) / cur->h;
    if (clt__window_out(bin->h, 1, s, 0) != cur->h || clt__window_out(bin->w, 1, s, 0) != cur->w)
        return mfail(msg, CLT_ERR_SHAPE, "residual project block (line %d): no 1x1 convolution stride maps %s to %s",
                     B->line, si, sa);
    cost->macs = (double)bin->c * cur->c * cur->h * cur->w;
    return CLT_OK;
}

/* The limits of cltrain.h, on the running totals after a layer whose output is `out`. */
static int check_limits(const clt__shape *out, double *act_bytes, double macs, char *msg)
{
    *act_bytes += 4.0 * out->c * out->h * out->w;
    if (*act_bytes > (double)CLT_MODEL_MAX_ACTIVATION_BYTES)
        return mfail(msg, CLT_ERR_SHAPE, "the layer outputs up to here need %.2f GiB per image (float32), above the "
                     "limit of %.2f GiB (CLT_MODEL_MAX_ACTIVATION_BYTES); use fewer channels or a smaller size",
                     *act_bytes / (1 << 30), (double)CLT_MODEL_MAX_ACTIVATION_BYTES / (1 << 30));
    if (macs > CLT_MODEL_MAX_MACS)
        return mfail(msg, CLT_ERR_SHAPE, "the layers up to here need %.3g multiply-adds per image, above the limit "
                     "of %.3g (CLT_MODEL_MAX_MACS); use fewer channels or a smaller size", macs, CLT_MODEL_MAX_MACS);
    return CLT_OK;
}

/* The graph and the walk must agree on shapes; a mismatch would make later messages misleading. */
static int shape_matches(const clt_tensor *y, const clt__shape *out)
{
    int nd = clt_tensor_ndim(y);
    return out->flat ? nd == 2 && clt_tensor_dim(y, 1) == out->c
                     : nd == 4 && clt_tensor_dim(y, 1) == out->c && clt_tensor_dim(y, 2) == out->h &&
                           clt_tensor_dim(y, 3) == out->w;
}

/* Adds one op layer to g (walk with a graph); the message, without the line prefix, into msg. */
static int build_layer(clt_graph *g, const clt__layer *L, const char *name, const clt__shape *in,
                       const clt__shape *out, clt_tensor *x, clt_tensor **y, char *msg)
{
    *y = x;
    int hooked = g->layer_hook ? g->layer_hook(g, L->type->keyword, name, x, y) : 0;
    if (hooked < 0) return mfail(msg, hooked, "%s: %s", name, clt_errmsg(g->ctx));
    if (!hooked && L->type->build) {
        int st = L->type->build(g, L->args.bytes, name, in, out, x, y);
        if (st) return mfail(msg, st, "%s: %s", name, clt_errmsg(g->ctx));
    }
    if (!shape_matches(*y, out))
        return mfail(msg, CLT_ERR_SHAPE, "internal error: %s produced a tensor of unexpected shape", name);
    return CLT_OK;
}

typedef struct walk_block {
    clt__shape in;
    clt_tensor *x;
    const clt__layer *begin;
} walk_block;

int clt__model_walk(const clt_model *m, int c, int h, int w, int classes, clt_graph *g, clt_tensor *input,
                    clt_tensor **output, clt_model_info *info, clt__sbuf *table, char *err)
{
    if (!m->text) return mfail(err, CLT_ERR_STATE, "%s: the model failed to parse (%s)", m->origin, m->errmsg);
    double act_bytes = 4.0 * c * h * w;
    if (c <= 0 || h <= 0 || w <= 0 || classes <= 0 || act_bytes > (double)CLT_MODEL_MAX_ACTIVATION_BYTES)
        return mfail(err, CLT_ERR_INVALID, "%s: bad input shape (%d,%d,%d) or class count %d", m->origin, c, h, w,
                     classes);
    clt_model_info inf = {0};
    clt__shape cur = {0, c, h, w};
    clt_tensor *x = input;
    walk_block stack[64];
    int depth = 0, nres = 0;
    int counts[256] = {0};
    char msg[CLT__MODEL_ERR_LEN];
    char sa[64], sb2[64];
    if (table) {
        clt__shape_text(&cur, sa, sizeof sa);
        clt__sb_printf(table, "%5s  %-24s %-16s %10s %10s\n", "line", "layer", "output", "params", "MMACs");
        clt__sb_printf(table, "%5s  %-24s %-16s\n", "", "input", sa);
    }
    for (int i = 0; i < m->n; i++) {
        const clt__layer *L = &m->l[i];
        clt__shape out = cur;
        clt__layer_cost cost = {0, 0};
        char name[48];
        int st = CLT_OK;
        msg[0] = 0;
        if (L->kind == CLT__L_LAYER) {
            int ti = type_index(L->type);
            counts[ti]++;
            snprintf(name, sizeof name, "%s%d", L->type->pname ? L->type->pname : L->type->keyword, counts[ti]);
            st = L->type->shape(L->args.bytes, &cur, classes, &out, &cost, msg);
            if (!st) st = check_limits(&out, &act_bytes, inf.macs + cost.macs, msg);
            if (!st && g) st = build_layer(g, L, name, &cur, &out, x, &x, msg);
        } else if (L->kind == CLT__L_RESIDUAL) {
            stack[depth++] = (walk_block){cur, x, L};
        } else {
            walk_block *B = &stack[--depth];
            snprintf(name, sizeof name, "res%d", ++nres);
            st = residual_shape(B->begin, &B->in, &cur, &cost, msg);
            if (!st) st = check_limits(&out, &act_bytes, inf.macs + cost.macs, msg);
            if (!st && g) {
                st = clt__model_residual(g, B->begin->project, name, &B->in, &cur, B->x, x, &x);
                if (st) mfail(msg, st, "%s: %s", name, clt_errmsg(g->ctx));
            }
        }
        if (st) return mfail(err, st, "%s:%d: %s", m->origin, L->line, msg);
        inf.params += cost.params;
        inf.macs += cost.macs;
        inf.layers++;
        if (table) {
            clt__shape_text(&out, sb2, sizeof sb2);
            char desc[64];
            if (L->kind == CLT__L_END)
                snprintf(desc, sizeof desc, "} add%s", stack[depth].begin->project ? " (projected)" : "");
            else
                snprintf(desc, sizeof desc, "%s", L->kind == CLT__L_RESIDUAL ? "residual" : L->type->keyword);
            int ind = 2 * (L->kind == CLT__L_RESIDUAL ? depth - 1 : depth);
            clt__sb_printf(table, "%5d  %*s%-*s %-16s %10lld %10.2f\n", L->line, ind, "", 24 - ind, desc,
                           L->kind == CLT__L_RESIDUAL ? "" : sb2, cost.params, cost.macs / 1e6);
        }
        cur = out;
    }
    if (info) *info = inf;
    if (!cur.flat || cur.c != classes) {
        clt__shape_text(&cur, sa, sizeof sa);
        return mfail(err, CLT_ERR_SHAPE, "%s: the network ends with shape %s but must give %d class scores per "
                     "image (end it with 'dense classes')", m->origin, sa, classes);
    }
    if (table)
        clt__sb_printf(table, "total: %lld parameters, %.2f M multiply-adds per image (forward)\n", inf.params,
                       inf.macs / 1e6);
    if (output) *output = x;
    return CLT_OK;
}

int clt_model_lm(const clt_model *m, clt_model_lm_info *info)
{
    if (!m) return CLT_ERR_INVALID;
    if (!m->text) return CLT_ERR_STATE;
    if (m->lm.layers <= 0) return 0;
    if (info) *info = m->lm;
    return 1;
}

int clt_model_check(clt_model *m, int c, int h, int w, int classes, clt_model_info *info, char *table,
                    size_t table_len)
{
    if (!m) return CLT_ERR_INVALID;
    if (m->text && m->lm.layers > 0)
        return mfail(m->errmsg, CLT_ERR_INVALID, "%s: a language model (gpt line) takes token ids, not images",
                     m->origin);
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
