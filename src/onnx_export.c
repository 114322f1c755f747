/* onnx_export.c - a float checkpoint's network as an ONNX model (opset 13), built as protobuf-c messages of the
 * ONNX schema (third_party/onnx/onnx.proto, compiled by protoc-c at build time) and packed by protobuf-c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "onnx.pb-c.h"

#define OPSET 13
#define IR_VERSION 7 /* the IR version of opset 13 */

/* Everything the model's messages point to is allocated here and freed together after packing. */
typedef struct ox {
    clt_context *ctx;
    clt_graph *g;
    void **mem;
    size_t nmem, capmem;
    Onnx__NodeProto **node;
    size_t nnode, capnode;
    Onnx__TensorProto **init;
    size_t ninit, capinit;
    int used_state; /* state tensors of g written as initializers */
    int tmp;        /* counter of intermediate names */
    int oom;
    int status; /* the first failure's status (its message is in the context) */
} ox;

static int grow(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        void **q = realloc(*arr, c * sizeof *q);
        if (!q) return -1;
        *arr = q, *cap = c;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

static void *oalloc(ox *o, size_t n)
{
    void *p = o->oom ? NULL : calloc(1, n ? n : 1);
    if (!p || grow(&o->mem, &o->nmem, &o->capmem, p)) {
        free(p);
        o->oom = 1;
        return NULL;
    }
    return p;
}

static char *ostr(ox *o, const char *s)
{
    char *d = oalloc(o, strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

/* A fresh intermediate name "t12_<what>". */
static char *tname(ox *o, const char *what)
{
    char b[96];
    snprintf(b, sizeof b, "t%d_%s", ++o->tmp, what);
    return ostr(o, b);
}

static Onnx__AttributeProto *attr_ints(ox *o, const char *name, const int64_t *v, size_t n)
{
    Onnx__AttributeProto *a = oalloc(o, sizeof *a);
    int64_t *d = oalloc(o, n * sizeof *d);
    if (!a || !d) return NULL;
    onnx__attribute_proto__init(a);
    a->name = ostr(o, name);
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    memcpy(d, v, n * sizeof *d);
    a->n_ints = n, a->ints = d;
    return a;
}
static Onnx__AttributeProto *attr_int(ox *o, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = oalloc(o, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = ostr(o, name);
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1, a->i = v;
    return a;
}
static Onnx__AttributeProto *attr_float(ox *o, const char *name, float v)
{
    Onnx__AttributeProto *a = oalloc(o, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = ostr(o, name);
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1, a->f = v;
    return a;
}

/* Adds node op(inputs) -> out with attributes (NULL-terminated); returns out. */
static const char *node(ox *o, const char *op, const char *out, int nin, const char *const *in,
                        Onnx__AttributeProto *const *attrs)
{
    Onnx__NodeProto *n = oalloc(o, sizeof *n);
    char **ins = oalloc(o, (size_t)nin * sizeof *ins), **outs = oalloc(o, sizeof *outs);
    size_t na = 0;
    while (attrs && attrs[na]) na++;
    Onnx__AttributeProto **at = oalloc(o, (na + 1) * sizeof *at);
    if (!n || !ins || !outs || !at) return out;
    onnx__node_proto__init(n);
    n->op_type = ostr(o, op);
    for (int i = 0; i < nin; i++) ins[i] = ostr(o, in[i]);
    outs[0] = ostr(o, out);
    n->n_input = (size_t)nin, n->input = ins;
    n->n_output = 1, n->output = outs;
    for (size_t i = 0; i < na; i++) at[i] = attrs[i];
    n->n_attribute = na, n->attribute = at;
    if (grow((void ***)&o->node, &o->nnode, &o->capnode, n)) o->oom = 1;
    return out;
}
#define NODE(o, op, out, ...) node((o), (op), (out), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), \
                                   (const char *[]){__VA_ARGS__}, NULL)

/* An initializer of float data (copied). */
static int initializer(ox *o, const char *name, int ndim, const int64_t *dims, const float *v, size_t n)
{
    Onnx__TensorProto *t = oalloc(o, sizeof *t);
    int64_t *d = oalloc(o, (size_t)ndim * sizeof *d);
    float *data = oalloc(o, n * sizeof *data);
    if (!t || !d || !data) return o->status = clt__err(o->ctx, CLT_ERR_NOMEM, "ONNX export: out of host memory");
    onnx__tensor_proto__init(t);
    t->name = ostr(o, name);
    t->has_data_type = 1, t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    memcpy(d, dims, (size_t)ndim * sizeof *d);
    t->n_dims = (size_t)ndim, t->dims = d;
    memcpy(data, v, n * sizeof *data);
    t->n_float_data = n, t->float_data = data;
    if (grow((void ***)&o->init, &o->ninit, &o->capinit, t)) o->oom = 1;
    return CLT_OK;
}

static int scalar(ox *o, const char *name, float v)
{
    int64_t d[1] = {1};
    return initializer(o, name, 1, d, &v, 1);
}

/* The graph's state tensor `name` as an initializer of its own shape. */
static int state(ox *o, const char *name)
{
    for (int i = 0; i < clt_graph_state_count(o->g); i++) {
        clt_tensor *t = clt_graph_state_tensor(o->g, i, NULL);
        if (strcmp(clt_tensor_name(t), name)) continue;
        size_t n = clt_tensor_numel(t);
        float *v = malloc(n * sizeof *v);
        if (!v) return o->status = clt__err(o->ctx, CLT_ERR_NOMEM, "ONNX export: out of host memory");
        int64_t dims[4];
        for (int k = 0; k < clt_tensor_ndim(t); k++) dims[k] = clt_tensor_dim(t, k);
        int st = clt_tensor_read(o->g, t, 0, v, n);
        if (!st) st = initializer(o, name, clt_tensor_ndim(t), dims, v, n);
        free(v);
        o->used_state += !st;
        if (st) o->status = st;
        return st;
    }
    return o->status = clt__err(o->ctx, CLT_ERR_STATE, "ONNX export: the checkpoint has no tensor '%s'", name);
}

/* ------------------------------------------------------------------------------------------ the walk */

typedef struct oshape {
    int flat, c, h, w;
} oshape;

typedef struct oline {
    int line;
    char *tok[16];
    int ntok;
} oline;

static const char *opt(const oline *l, const char *key)
{
    size_t k = strlen(key);
    for (int i = 1; i < l->ntok; i++)
        if (!strncmp(l->tok[i], key, k) && l->tok[i][k] == '=') return l->tok[i] + k + 1;
    return NULL;
}
static int opti(const oline *l, const char *key, int def)
{
    const char *v = opt(l, key);
    return v ? atoi(v) : def;
}

/* Conv (with "<name>.weight", "<name>.bias" if bias) of x; returns the output name. */
static const char *conv(ox *o, const char *x, const char *name, int k, int stride, int pad, int bias)
{
    char w[80], b[80];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    if (state(o, w) || (bias && state(o, b))) return NULL;
    int64_t ks[2] = {k, k}, ss[2] = {stride, stride}, ps[4] = {pad, pad, pad, pad};
    Onnx__AttributeProto *at[] = {attr_ints(o, "kernel_shape", ks, 2), attr_ints(o, "strides", ss, 2),
                                  attr_ints(o, "pads", ps, 4), NULL};
    const char *in[3] = {x, w, b};
    return node(o, "Conv", tname(o, name), bias ? 3 : 2, in, at);
}

static const char *flatten(ox *o, const char *x, oshape *s)
{
    if (s->flat) return x;
    Onnx__AttributeProto *at[] = {attr_int(o, "axis", 1), NULL};
    const char *in[1] = {x};
    *s = (oshape){1, s->c * s->h * s->w, 1, 1};
    return node(o, "Flatten", tname(o, "flatten"), 1, in, at);
}

static const char *gemm(ox *o, const char *x, const char *name, int bias)
{
    char w[80], b[80];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    if (state(o, w) || (bias && state(o, b))) return NULL;
    Onnx__AttributeProto *at[] = {attr_int(o, "transB", 1), NULL};
    const char *in[3] = {x, w, b};
    return node(o, "Gemm", tname(o, name), bias ? 3 : 2, in, at);
}

static const char *pool(ox *o, const char *op, const char *x, int k, int stride, int pad, int avg)
{
    int64_t ks[2] = {k, k}, ss[2] = {stride, stride}, ps[4] = {pad, pad, pad, pad};
    Onnx__AttributeProto *at[] = {attr_ints(o, "kernel_shape", ks, 2), attr_ints(o, "strides", ss, 2),
                                  attr_ints(o, "pads", ps, 4), avg ? attr_int(o, "count_include_pad", 1) : NULL, NULL};
    const char *in[1] = {x};
    return node(o, op, tname(o, op), 1, in, at);
}

/* x * 0.5 * (1 + erf(x / sqrt 2)): GELU as an Erf composition (Gelu itself is an op of opset 20). */
static const char *gelu(ox *o, const char *x)
{
    int have = 0; /* the constants, once per model */
    for (size_t i = 0; i < o->ninit; i++) have |= !strcmp(o->init[i]->name, "gelu.sqrt2");
    if (!have && (scalar(o, "gelu.sqrt2", (float)sqrt(2.0)) || scalar(o, "gelu.one", 1.0f) ||
                  scalar(o, "gelu.half", 0.5f)))
        return NULL;
    const char *d = NODE(o, "Div", tname(o, "gelu_div"), x, "gelu.sqrt2");
    const char *e = NODE(o, "Erf", tname(o, "gelu_erf"), d);
    const char *a = NODE(o, "Add", tname(o, "gelu_add"), e, "gelu.one");
    const char *m = NODE(o, "Mul", tname(o, "gelu_mul"), x, a);
    return NODE(o, "Mul", tname(o, "gelu"), m, "gelu.half");
}

typedef struct oblock {
    const char *x;
    oshape s;
    int project;
} oblock;

/* Names as model.c gives them: a per-keyword count (conv1, fc2, bn3); residual blocks res1.. as they close. */
typedef struct ocount {
    int conv, dense, bn, res;
} ocount;

static const char *layer(ox *o, const oline *l, const char *x, oshape *s, ocount *cnt)
{
    const char *kw = l->tok[0];
    char name[48];
    if (!strcmp(kw, "conv")) {
        int out = atoi(l->tok[1]), k = atoi(l->tok[2]), st = opti(l, "stride", 1), pad = opti(l, "pad", 0);
        snprintf(name, sizeof name, "conv%d", ++cnt->conv);
        *s = (oshape){0, out, (s->h + 2 * pad - k) / st + 1, (s->w + 2 * pad - k) / st + 1};
        return conv(o, x, name, k, st, pad, opti(l, "bias", 1));
    }
    if (!strcmp(kw, "dense")) {
        snprintf(name, sizeof name, "fc%d", ++cnt->dense);
        x = flatten(o, x, s);
        char w[80];
        snprintf(w, sizeof w, "%s.weight", name);
        for (int i = 0; i < clt_graph_state_count(o->g); i++) {
            clt_tensor *t = clt_graph_state_tensor(o->g, i, NULL);
            if (!strcmp(clt_tensor_name(t), w)) s->c = clt_tensor_dim(t, 0);
        }
        return gemm(o, x, name, opti(l, "bias", 1));
    }
    if (!strcmp(kw, "batchnorm")) {
        snprintf(name, sizeof name, "bn%d", ++cnt->bn);
        const char *suf[4] = {"weight", "bias", "running_mean", "running_var"};
        char nm[4][80];
        for (int i = 0; i < 4; i++) {
            snprintf(nm[i], sizeof nm[i], "%s.%s", name, suf[i]);
            if (state(o, nm[i])) return NULL;
        }
        const char *v = opt(l, "eps");
        Onnx__AttributeProto *at[] = {attr_float(o, "epsilon", v ? strtof(v, NULL) : 1e-5f), NULL};
        const char *in[5] = {x, nm[0], nm[1], nm[2], nm[3]};
        return node(o, "BatchNormalization", tname(o, name), 5, in, at);
    }
    if (!strcmp(kw, "relu")) return NODE(o, "Relu", tname(o, "relu"), x);
    if (!strcmp(kw, "sigmoid")) return NODE(o, "Sigmoid", tname(o, "sigmoid"), x);
    if (!strcmp(kw, "tanh")) return NODE(o, "Tanh", tname(o, "tanh"), x);
    if (!strcmp(kw, "gelu")) return gelu(o, x);
    if (!strcmp(kw, "dropout")) return NODE(o, "Identity", tname(o, "dropout"), x);
    if (!strcmp(kw, "flatten")) return flatten(o, x, s);
    if (!strcmp(kw, "leaky_relu")) {
        Onnx__AttributeProto *at[] = {attr_float(o, "alpha", l->ntok > 1 ? strtof(l->tok[1], NULL) : 0.01f), NULL};
        const char *in[1] = {x};
        return node(o, "LeakyRelu", tname(o, "leaky_relu"), 1, in, at);
    }
    if (!strcmp(kw, "maxpool") || !strcmp(kw, "avgpool")) {
        int k = atoi(l->tok[1]), st = opti(l, "stride", k), pad = opti(l, "pad", 0), avg = kw[0] == 'a';
        *s = (oshape){0, s->c, (s->h + 2 * pad - k) / st + 1, (s->w + 2 * pad - k) / st + 1};
        return pool(o, avg ? "AveragePool" : "MaxPool", x, k, st, pad, avg);
    }
    if (!strcmp(kw, "global_avgpool")) {
        const char *p = NODE(o, "GlobalAveragePool", tname(o, "gap"), x);
        s->h = s->w = 1;
        s->flat = 0;
        return flatten(o, p, s);
    }
    o->status = clt__err(o->ctx, CLT_ERR_UNSUPPORTED, "ONNX export: line %d: layer '%s' has no ONNX equivalent in this exporter",
             l->line, kw);
    return NULL;
}

/* The end of a residual block: Add(block output, shortcut), the shortcut projected as model_build.c does. */
static const char *residual(ox *o, const oblock *b, const char *x, const oshape *s, ocount *cnt)
{
    char name[48];
    snprintf(name, sizeof name, "res%d.proj", ++cnt->res);
    const char *sc = b->x;
    if (b->project) {
        oshape t = b->s;
        if (s->flat) sc = gemm(o, flatten(o, sc, &t), name, 1);
        else sc = conv(o, sc, name, 1, (b->s.h + s->h - 1) / s->h, 0, 1);
        if (!sc) return NULL;
    }
    return NODE(o, "Add", tname(o, "add"), x, sc);
}

static int walk(ox *o, const char *text, int c, int h, int w, const char **out)
{
    char *t = clt__strdup(text);
    if (!t) return o->status = clt__err(o->ctx, CLT_ERR_NOMEM, "ONNX export: out of host memory");
    const char *x = "x";
    oshape s = {0, c, h, w};
    oblock stack[64];
    int depth = 0, st = CLT_OK, line = 0;
    ocount cnt = {0};
    for (char *save = NULL, *ln = strtok_r(t, "\n", &save); ln && !st; ln = strtok_r(NULL, "\n", &save)) {
        oline l = {++line, {0}, 0};
        char *hash = strchr(ln, '#');
        if (hash) *hash = 0;
        for (char *s2 = NULL, *tok = strtok_r(ln, " \t", &s2); tok && l.ntok < 16; tok = strtok_r(NULL, " \t", &s2))
            l.tok[l.ntok++] = tok;
        if (!l.ntok || !strcmp(l.tok[0], "train")) continue;
        if (!strcmp(l.tok[0], "residual")) {
            if (depth == 64) st = clt__err(o->ctx, CLT_ERR_UNSUPPORTED, "ONNX export: blocks nested too deep");
            else stack[depth++] = (oblock){x, s, l.ntok > 1 && !strcmp(l.tok[1], "project")};
            continue;
        }
        x = !strcmp(l.tok[0], "}") ? (depth ? residual(o, &stack[--depth], x, &s, &cnt) : NULL) : layer(o, &l, x, &s, &cnt);
        if (!x) st = o->status ? o->status : clt__err(o->ctx, CLT_ERR_FORMAT, "ONNX export: line %d: a '}' without "
                                                      "its block", line);
        if (o->oom) st = clt__err(o->ctx, CLT_ERR_NOMEM, "ONNX export: out of host memory");
    }
    free(t);
    *out = x;
    return st;
}

/* ------------------------------------------------------------------------------------------ the model */

/* A float tensor's value info: (N, dims...) with the batch symbolic. */
static Onnx__ValueInfoProto *value_info(ox *o, const char *name, int ndim, const int *dims)
{
    Onnx__ValueInfoProto *v = oalloc(o, sizeof *v);
    Onnx__TypeProto *tp = oalloc(o, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = oalloc(o, sizeof *tt);
    Onnx__TensorShapeProto *sh = oalloc(o, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **d = oalloc(o, (size_t)(ndim + 1) * sizeof *d);
    if (!v || !tp || !tt || !sh || !d) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i <= ndim; i++) {
        d[i] = oalloc(o, sizeof **d);
        if (!d[i]) return NULL;
        onnx__tensor_shape_proto__dimension__init(d[i]);
        if (i == 0) {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d[i]->dim_param = ostr(o, "N");
        } else {
            d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d[i]->dim_value = dims[i - 1];
        }
    }
    sh->n_dim = (size_t)ndim + 1, sh->dim = d;
    tt->has_elem_type = 1, tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp->tensor_type = tt;
    v->name = ostr(o, name), v->type = tp;
    return v;
}

static int pack_and_write(ox *o, int c, int h, int w, int classes, const char *path)
{
    int in_dims[3] = {c, h, w}, out_dims[1] = {classes};
    Onnx__ValueInfoProto *vin = value_info(o, "x", 3, in_dims), *vout = value_info(o, "logits", 1, out_dims);
    Onnx__ValueInfoProto **ins = oalloc(o, sizeof *ins), **outs = oalloc(o, sizeof *outs);
    Onnx__GraphProto *gp = oalloc(o, sizeof *gp);
    Onnx__ModelProto *mp = oalloc(o, sizeof *mp);
    Onnx__OperatorSetIdProto *ops = oalloc(o, sizeof *ops), **opsv = oalloc(o, sizeof *opsv);
    if (o->oom || !vin || !vout || !ins || !outs || !gp || !mp || !ops || !opsv)
        return clt__err(o->ctx, CLT_ERR_NOMEM, "ONNX export: out of host memory");
    onnx__graph_proto__init(gp);
    gp->name = ostr(o, "cltrain");
    gp->n_node = o->nnode, gp->node = o->node;
    gp->n_initializer = o->ninit, gp->initializer = o->init;
    ins[0] = vin, outs[0] = vout;
    gp->n_input = 1, gp->input = ins;
    gp->n_output = 1, gp->output = outs;
    onnx__operator_set_id_proto__init(ops);
    ops->domain = ostr(o, "");
    ops->has_version = 1, ops->version = OPSET;
    opsv[0] = ops;
    onnx__model_proto__init(mp);
    mp->has_ir_version = 1, mp->ir_version = IR_VERSION;
    mp->producer_name = ostr(o, "cltrain");
    mp->producer_version = ostr(o, CLT_VERSION_STRING);
    mp->n_opset_import = 1, mp->opset_import = opsv;
    mp->graph = gp;
    if (o->oom) return clt__err(o->ctx, CLT_ERR_NOMEM, "ONNX export: out of host memory");
    size_t n = onnx__model_proto__get_packed_size(mp);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return clt__err(o->ctx, CLT_ERR_NOMEM, "ONNX export: out of host memory (%zu bytes)", n);
    size_t got = onnx__model_proto__pack(mp, buf);
    char msg[1200];
    int st = got == n ? clt_file_write_atomic(path, buf, n, msg, sizeof msg) : CLT_ERR_STATE;
    free(buf);
    if (got != n) return clt__err(o->ctx, CLT_ERR_STATE, "ONNX export: protobuf-c packed %zu of %zu bytes", got, n);
    return st ? clt__err(o->ctx, st, "%s", msg) : CLT_OK;
}

int clt_onnx_export(clt_context *ctx, const char *ckpt_path, const char *onnx_path)
{
    if (!ctx) return CLT_ERR_INVALID;
    if (!ckpt_path || !onnx_path)
        return clt__err(ctx, CLT_ERR_INVALID, "clt_onnx_export: %s is NULL", ckpt_path ? "onnx_path" : "ckpt_path");
    if (clt_qcheckpoint_probe(ckpt_path) == 1)
        return clt__err(ctx, CLT_ERR_UNSUPPORTED, "ONNX export: %s is an int8 checkpoint; its qconv2d/qdense layers are "
                        "not exported (export the float checkpoint it was quantized from)", ckpt_path);
    clt_load_settings ls;
    clt_load_default_settings(&ls);
    ls.batch = 1;
    clt_graph *g = NULL;
    CLT_TRY(clt_graph_load(ctx, ckpt_path, &ls, &g));
    ox o = {.ctx = ctx, .g = g};
    const char *text = "", *last = NULL;
    int in[3], classes;
    clt__graph_model(g, &text, in, &classes, NULL, NULL);
    int st = walk(&o, text, in[0], in[1], in[2], &last);
    if (!st && o.used_state != clt_graph_state_count(g))
        st = clt__err(ctx, CLT_ERR_STATE, "ONNX export: %d of the checkpoint's %d tensors were exported (a layer of the "
                      "network is not handled)", o.used_state, clt_graph_state_count(g));
    if (!st) NODE(&o, "Identity", "logits", last);
    if (!st) st = pack_and_write(&o, in[0], in[1], in[2], classes, onnx_path);
    for (size_t i = 0; i < o.nmem; i++) free(o.mem[i]);
    free(o.mem);
    free(o.node);
    free(o.init);
    clt_graph_destroy(g);
    return st;
}
