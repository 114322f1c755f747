/* graph.c - the computation graph: building, memory planning, automatic backward, and running passes. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------------------------------ building */

static int find_tensor(clt_graph *g, const clt_tensor *t, const char *fn);

int clt_graph_create(clt_context *ctx, clt_graph **out)
{
    clt__clear_error(ctx);
    if (!out) return clt__err(ctx, CLT_ERR_INVALID, "clt_graph_create: out is NULL");
    *out = NULL;
    if (!ctx) return CLT_ERR_INVALID;
    clt_graph *g = calloc(1, sizeof *g);
    if (!g) return clt__err(ctx, CLT_ERR_NOMEM, "out of host memory");
    g->ctx = ctx;
    clt_compile_default_settings(&g->settings);
    *out = g;
    return CLT_OK;
}

static void release_mem(cl_mem *m)
{
    if (*m) clReleaseMemObject(*m);
    *m = NULL;
}

clt_context *clt_graph_context(const clt_graph *g)
{
    return g ? g->ctx : NULL;
}

void clt_graph_destroy(clt_graph *g)
{
    if (!g) return;
    if (g->ctx && g->ctx->queue) clFinish(g->ctx->queue);
    for (int i = 0; i < g->nnodes; i++) {
        clt__node *n = g->nodes[i];
        for (int k = 0; k < CLT_MAX_KERNELS; k++)
            if (n->k[k]) clReleaseKernel(n->k[k]);
        if (n->op->destroy) n->op->destroy(n);
        free(n);
    }
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        release_mem(&t->mem);
        release_mem(&t->slot[0]);
        release_mem(&t->slot[1]);
        free(t);
    }
    release_mem(&g->act_arena);
    release_mem(&g->param_arena);
    release_mem(&g->grad_arena);
    release_mem(&g->slot_arena[0]);
    release_mem(&g->slot_arena[1]);
    release_mem(&g->buf_arena);
    release_mem(&g->clip_buf);
    release_mem(&g->acc_arena);
    cl_kernel ks[] = {g->k_optim, g->k_sumsq, g->k_norm, g->k_scale, g->k_acc};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        if (ks[i]) clReleaseKernel(ks[i]);
    release_mem(&g->prune_mask);
    if (g->k_prune) clReleaseKernel(g->k_prune);
    free(g->tensors);
    free(g->nodes);
    free(g->contrib);
    free(g->reached);
    free(g->model_text);
    free(g);
}

int clt__check_building(clt_graph *g, const char *op)
{
    if (!g) return CLT_ERR_INVALID;
    clt__clear_error(g->ctx); /* the first check of every building call: a message belongs to this call */
    if (g->compiled < 0)
        return clt__err(g->ctx, CLT_ERR_STATE, "%s: an earlier call on this graph failed part-way (see its error); "
                        "build a new graph", op);
    if (g->compiled) return clt__err(g->ctx, CLT_ERR_STATE, "%s: the graph is already compiled; build a new graph", op);
    return CLT_OK;
}

int clt__check_tensor(clt_graph *g, const clt_tensor *t, const char *op, const char *what)
{
    if (!t) return clt__err(g->ctx, CLT_ERR_INVALID, "%s: %s is NULL", op, what);
    for (int i = 0; i < g->ntensors; i++)
        if (g->tensors[i] == t) {
            /* Parameters are not op inputs: their owner overwrites their gradient, so a second use would be
             * silently lost. */
            if (t->kind == CLT__PARAM)
                return clt__err(g->ctx, CLT_ERR_INVALID, "%s: %s '%s' is a learned parameter; parameters cannot "
                                "feed other ops", op, what, t->name);
            if (t->kind != CLT__INPUT && t->kind != CLT__ACT)
                return clt__err(g->ctx, CLT_ERR_INVALID, "%s: %s is an internal tensor", op, what);
            return CLT_OK;
        }
    return clt__err(g->ctx, CLT_ERR_INVALID, "%s: %s belongs to another graph", op, what);
}

const char *clt__shape_str(const clt_tensor *t, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "(");
    for (int i = 0; i < t->ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ",%d" : "%d", t->shape[i]);
    if (o < len) snprintf(buf + o, len - o, ")");
    return buf;
}

int clt__new_tensor(clt_graph *g, int kind, const char *name, int ndim, const int *shape, clt_tensor **out)
{
    *out = NULL;
    if (ndim < 1 || ndim > 4 || !shape)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "tensor '%s': %d dimensions (1 to 4 supported)", name ? name : "?", ndim);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0)
            return clt__err(g->ctx, CLT_ERR_SHAPE, "tensor '%s': dimension %d is %d (must be positive)",
                            name ? name : "?", i, shape[i]);
        /* Kernels index tensors with 32-bit integers. */
        if (numel > (size_t)INT_MAX / (size_t)shape[i])
            return clt__err(g->ctx, CLT_ERR_SHAPE, "tensor '%s' is too large (more than %d elements)",
                            name ? name : "?", INT_MAX);
        numel *= (size_t)shape[i];
    }
    if (g->ntensors == g->cap_tensors) {
        int cap = g->cap_tensors ? g->cap_tensors * 2 : 64;
        clt_tensor **nt = realloc(g->tensors, (size_t)cap * sizeof *nt);
        if (!nt) return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory");
        g->tensors = nt;
        g->cap_tensors = cap;
    }
    clt_tensor *t = calloc(1, sizeof *t);
    if (!t) return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory");
    t->id = g->ntensors;
    t->kind = kind;
    if (name && *name) {
        size_t l = strlen(name); /* long names are cut, not refused */
        if (l >= sizeof t->name) l = sizeof t->name - 1;
        memcpy(t->name, name, l);
        t->name[l] = 0;
    } else
        snprintf(t->name, sizeof t->name, "t%d", t->id);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof(int));
    t->numel = numel;
    g->tensors[g->ntensors++] = t;
    *out = t;
    return CLT_OK;
}

int clt_input(clt_graph *g, const char *name, int ndim, const int *shape, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_input: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_input"));
    return clt__new_tensor(g, CLT__INPUT, name, ndim, shape, out);
}

const char *clt_tensor_name(const clt_tensor *t) { return t ? t->name : ""; }
int clt_tensor_ndim(const clt_tensor *t) { return t ? t->ndim : 0; }
int clt_tensor_dim(const clt_tensor *t, int i) { return t && i >= 0 && i < t->ndim ? t->shape[i] : 0; }
size_t clt_tensor_numel(const clt_tensor *t) { return t ? t->numel : 0; }

int clt__new_node(clt_graph *g, const clt__op *op, const char *name, int nin, clt_tensor *const *in, int ndim,
                  const int *shape, clt__node **out)
{
    *out = NULL;
    if (g->nnodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 32;
        clt__node **nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory");
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    clt__node *n = calloc(1, sizeof *n);
    if (!n) return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory");
    /* The op's checks passed: drop what a recovered step before them left (an unreadable tuning cache). */
    clt__clear_error(g->ctx);
    char auto_name[CLT_NAME_LEN];
    if (!name || !*name) {
        snprintf(auto_name, sizeof auto_name, "%s%d", op->name, g->nnodes);
        name = auto_name;
    }
    int st = clt__new_tensor(g, CLT__ACT, name, ndim, shape, &n->out);
    if (st < 0) {
        free(n);
        return st;
    }
    n->op = op;
    n->id = g->nnodes;
    n->nin = nin;
    for (int i = 0; i < nin; i++) n->in[i] = in[i];
    n->out->producer = n;
    n->bwd_needs_in = ~0u; /* conservative until the op says otherwise */
    n->bwd_needs_out = 1;
    g->nodes[g->nnodes++] = n;
    *out = n;
    return CLT_OK;
}

static int add_owned(clt_graph *g, clt__node *n, int kind, const char *suffix, int ndim, const int *shape,
                     clt_tensor **out)
{
    char name[CLT_NAME_LEN * 2];
    snprintf(name, sizeof name, "%s.%s", n->out->name, suffix);
    return clt__new_tensor(g, kind, name, ndim, shape, out);
}

/* An op function that fails after clt__new_node leaves a node without its parameters or private memory in the
 * graph; compiling or running it would dereference what is missing, so the graph refuses every later call. */
int clt__graph_poison(clt_graph *g, int status)
{
    if (status < 0 && g) g->compiled = -1;
    return status;
}

int clt__add_param(clt_graph *g, clt__node *n, const char *suffix, int ndim, const int *shape, int init,
                   int fan_in, int fan_out, float init_const, clt_tensor **out)
{
    if (n->nparam == CLT_MAX_AUX)
        return clt__graph_poison(g, clt__err(g->ctx, CLT_ERR_INVALID, "too many parameters in one node"));
    CLT_TRY(clt__graph_poison(g, add_owned(g, n, CLT__PARAM, suffix, ndim, shape, out)));
    (*out)->init = init;
    (*out)->fan_in = fan_in;
    (*out)->fan_out = fan_out;
    (*out)->init_const = init_const;
    (*out)->requires_grad = 1;
    (*out)->decay = ndim >= 2; /* matrices decay, vectors (biases, norm scales and shifts) do not */
    (*out)->decay_user = -1;
    n->param[n->nparam++] = *out;
    return CLT_OK;
}

int clt__add_buffer(clt_graph *g, clt__node *n, const char *suffix, int ndim, const int *shape, float init_const,
                    clt_tensor **out)
{
    if (n->nbuf == CLT_MAX_AUX)
        return clt__graph_poison(g, clt__err(g->ctx, CLT_ERR_INVALID, "too many buffers in one node"));
    CLT_TRY(clt__graph_poison(g, add_owned(g, n, CLT__BUFFER, suffix, ndim, shape, out)));
    (*out)->init_const = init_const;
    n->buf[n->nbuf++] = *out;
    return CLT_OK;
}

int clt__add_private(clt_graph *g, clt__node *n, int kind, const char *suffix, size_t numel, clt_tensor **out)
{
    clt_tensor **arr;
    int *cnt;
    if (kind == CLT__SAVED) arr = n->saved, cnt = &n->nsaved;
    else if (kind == CLT__FSCRATCH) arr = n->fscratch, cnt = &n->nfscratch;
    else if (kind == CLT__BSCRATCH) arr = n->bscratch, cnt = &n->nbscratch;
    else return clt__graph_poison(g, clt__err(g->ctx, CLT_ERR_INVALID, "clt__add_private: bad kind %d", kind));
    if (*cnt == CLT_MAX_AUX)
        return clt__graph_poison(g, clt__err(g->ctx, CLT_ERR_INVALID, "too many private tensors in one node"));
    if (numel == 0 || numel > INT_MAX)
        return clt__graph_poison(g, clt__err(g->ctx, CLT_ERR_SHAPE, "'%s': private tensor of %zu elements (at most "
                                             "%d)", n->out->name, numel, INT_MAX));
    int shape[1] = {(int)numel};
    CLT_TRY(clt__graph_poison(g, add_owned(g, n, kind, suffix, 1, shape, out)));
    arr[(*cnt)++] = *out;
    return CLT_OK;
}

int clt_graph_keep(clt_graph *g, clt_tensor *t, int grad)
{
    CLT_TRY(clt__check_building(g, "clt_graph_keep"));
    if (t && t->kind == CLT__PARAM && find_tensor(g, t, "clt_graph_keep") == CLT_OK) return CLT_OK; /* always kept */
    CLT_TRY(clt__check_tensor(g, t, "clt_graph_keep", "tensor"));
    t->keep_value = 1;
    if (grad) t->keep_grad = 1;
    return CLT_OK;
}

int clt_tensor_set_weight_decay(clt_graph *g, clt_tensor *param, int enabled)
{
    CLT_TRY(clt__check_building(g, "clt_tensor_set_weight_decay"));
    CLT_TRY(find_tensor(g, param, "clt_tensor_set_weight_decay"));
    if (param->kind != CLT__PARAM)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_tensor_set_weight_decay: '%s' is not a learned parameter",
                        param->name);
    if (enabled != 0 && enabled != 1)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_tensor_set_weight_decay: enabled is %d (0 or 1)", enabled);
    param->decay_user = enabled;
    return CLT_OK;
}

int clt_tensor_weight_decay(const clt_graph *g, const clt_tensor *param, int *enabled)
{
    if (!g) return CLT_ERR_INVALID;
    clt__clear_error(g->ctx);
    if (!enabled) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_tensor_weight_decay: enabled is NULL");
    CLT_TRY(find_tensor((clt_graph *)g, param, "clt_tensor_weight_decay"));
    if (param->kind != CLT__PARAM)
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_tensor_weight_decay: '%s' is not a learned parameter",
                        param->name);
    if (g->compiled != 1 || !g->training_alloc)
        return clt__err(g->ctx, CLT_ERR_STATE, "clt_tensor_weight_decay: compile the graph for training first");
    *enabled = param->decay_eff;
    return CLT_OK;
}

void clt_compile_default_settings(clt_compile_settings *s)
{
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->seed = 42;
    s->training = 1;
    clt_optimizer_default_settings(&s->optimizer, CLT_OPT_SGD);
}

/* ------------------------------------------------------------------------------------------ planning */

static clt_tensor *root_of(clt_tensor *t)
{
    while (t->view_of) t = t->view_of;
    return t;
}

static int imax(int a, int b) { return a > b ? a : b; }
static int imin(int a, int b) { return a < b ? a : b; }

static size_t tensor_bytes(const clt_graph *g, const clt_tensor *t)
{
    return clt__round_up(t->numel * sizeof(float), g->ctx->mem_align);
}

static int cmp_size_desc(const void *a, const void *b)
{
    const clt_tensor *x = *(clt_tensor *const *)a, *y = *(clt_tensor *const *)b;
    if (x->numel != y->numel) return x->numel < y->numel ? 1 : -1;
    return x->t_def - y->t_def;
}

typedef struct span {
    size_t lo, hi;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Greedy placement: largest first, each at the lowest offset free over its whole life span. */
static int place_all(clt_graph *g, clt_tensor **list, int n)
{
    qsort(list, (size_t)n, sizeof *list, cmp_size_desc);
    span *busy = malloc((size_t)(n ? n : 1) * sizeof *busy);
    if (!busy) return clt__err(g->ctx, CLT_ERR_NOMEM, "out of host memory");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        clt_tensor *t = list[i];
        size_t sz = tensor_bytes(g, t);
        int nb = 0;
        for (int j = 0; j < i; j++) {
            clt_tensor *u = list[j];
            if (u->t_def <= t->t_last && t->t_def <= u->t_last)
                busy[nb++] = (span){u->offset, u->offset + tensor_bytes(g, u)};
        }
        qsort(busy, (size_t)nb, sizeof *busy, cmp_span);
        size_t off = 0;
        for (int j = 0; j < nb; j++) {
            if (busy[j].lo >= off + sz) break;
            if (busy[j].hi > off) off = busy[j].hi;
        }
        t->offset = off;
        t->placed = 1;
        if (off + sz > total) total = off + sz;
    }
    free(busy);
    g->act_bytes = total;
    return CLT_OK;
}

static int create_buffer(clt_graph *g, size_t bytes, cl_mem *out, const char *what)
{
    clt_context *ctx = g->ctx;
    if (bytes == 0) bytes = ctx->mem_align;
    if (bytes > ctx->info.max_alloc_bytes)
        return clt__err(ctx, CLT_ERR_DEVICE_MEMORY,
                        "%s needs %.1f MiB in one buffer but the device allows at most %.1f MiB per allocation "
                        "(CL_DEVICE_MAX_MEM_ALLOC_SIZE); use a smaller batch or model",
                        what, bytes / 1048576.0, ctx->info.max_alloc_bytes / 1048576.0);
    cl_int err;
    *out = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return clt__err(ctx, CLT_ERR_DEVICE_MEMORY, "allocating %.1f MiB of device memory for %s failed: %s",
                        bytes / 1048576.0, what, clt__cl_error_name(err));
    }
    /* Some drivers allocate lazily: touch it now so an over-commit fails here, not in a step. */
    float zero = 0.0f;
    err = clEnqueueFillBuffer(ctx->queue, *out, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
    if (err == CL_SUCCESS) err = clFinish(ctx->queue);
    if (err != CL_SUCCESS)
        return clt__err(ctx, CLT_ERR_DEVICE_MEMORY, "initializing %.1f MiB of device memory for %s failed: %s",
                        bytes / 1048576.0, what, clt__cl_error_name(err));
    return CLT_OK;
}

static int sub_buffer(clt_graph *g, cl_mem parent, size_t offset, size_t bytes, cl_mem *out)
{
    cl_buffer_region r = {offset, bytes};
    cl_int err;
    *out = clCreateSubBuffer(parent, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return clt__cl_err(g->ctx, err, "clCreateSubBuffer", __FILE__, __LINE__);
    }
    return CLT_OK;
}

/* Marks which tensors depend on learned parameters (or on inputs whose gradient was asked for). */
static void propagate_requires_grad(clt_graph *g)
{
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->kind == CLT__PARAM) t->requires_grad = 1;
        if (t->kind == CLT__INPUT) t->requires_grad = t->keep_grad;
    }
    /* Keeping the gradient of a view of an input asks for the input's gradient. */
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->view_of && t->keep_grad && root_of(t)->kind == CLT__INPUT) root_of(t)->requires_grad = 1;
    }
    for (int i = 0; i < g->nnodes; i++) {
        clt__node *n = g->nodes[i];
        int rg = n->nparam > 0;
        for (int j = 0; j < n->nin; j++) rg |= n->in[j]->requires_grad;
        n->out->requires_grad = rg && !n->no_backward;
    }
}

int clt_graph_compile(clt_graph *g, const clt_compile_settings *s)
{
    if (!g) return CLT_ERR_INVALID;
    clt_context *ctx = g->ctx;
    CLT_TRY(clt__check_building(g, "clt_graph_compile"));
    if (g->nnodes == 0) return clt__err(ctx, CLT_ERR_STATE, "clt_graph_compile: the graph has no operations");
    if (s) g->settings = *s;
    const clt_optimizer_settings *o = &g->settings.optimizer;
    if (g->settings.training) {
        if (o->type < CLT_OPT_SGD || o->type > CLT_OPT_ADAMW)
            return clt__err(ctx, CLT_ERR_INVALID, "unknown optimizer type %d", o->type);
        if (!(o->lr >= 0) || !(o->momentum >= 0 && o->momentum < 1) || (o->nesterov && o->momentum <= 0) ||
            !(o->weight_decay >= 0) || !(o->l1 >= 0) || !(o->beta1 >= 0 && o->beta1 < 1) ||
            !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0 || o->type == CLT_OPT_SGD) ||
            (o->decay_matrices_only != 0 && o->decay_matrices_only != 1))
            return clt__err(ctx, CLT_ERR_INVALID,
                            "invalid optimizer settings (lr %g, momentum %g, nesterov %d, betas %g/%g, eps %g, "
                            "weight decay %g, decay_matrices_only %d, l1 %g)", o->lr, o->momentum, o->nesterov,
                            o->beta1, o->beta2, o->eps, o->weight_decay, o->decay_matrices_only, o->l1);
    }
    if (g->settings.accumulate_grads != 0 && g->settings.accumulate_grads != 1)
        return clt__err(ctx, CLT_ERR_INVALID, "clt_graph_compile: accumulate_grads is %d (0 or 1)",
                        g->settings.accumulate_grads);
    /* From here on the graph changes; until everything below succeeded it refuses every call, so that a
     * failure part-way never leaves a half-planned graph that a second compile would plan again. */
    g->compiled = -1;
    g->training_alloc = g->settings.training;
    const int N = g->nnodes;
    const int SEED_T = N;
#define FT(i) (i)
#define BT(i) (2 * N - (i))

    if (g->training_alloc) propagate_requires_grad(g);
    else
        for (int i = 0; i < g->ntensors; i++) g->tensors[i]->requires_grad = 0;

    /* Life spans. */
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        t->t_def = INT_MAX;
        t->t_last = -1;
    }
    /* What any backward reads (saved tensors, and the values of inputs and outputs an op's backward needs)
     * lives to the end of the backward phase, not only to its reader's backward: a later backward after the
     * same forward (clt_graph_backward twice, or from another seed) reads it again, after the earlier nodes'
     * backward of the first pass ran with their scratch and gradients. Nothing else is kept longer. */
    const int BWD_END = BT(0);
    for (int i = 0; i < N; i++) {
        clt__node *n = g->nodes[i];
        clt_tensor *r = root_of(n->out);
        r->t_def = imin(r->t_def, FT(i));
        r->t_last = imax(r->t_last, FT(i));
        if (n->bwd_needs_out && n->out->requires_grad) r->t_last = imax(r->t_last, BWD_END);
        for (int j = 0; j < n->nin; j++) {
            clt_tensor *ri = root_of(n->in[j]);
            ri->t_last = imax(ri->t_last, FT(i));
            if ((n->bwd_needs_in >> j & 1) && n->out->requires_grad) ri->t_last = imax(ri->t_last, BWD_END);
        }
        for (int j = 0; j < n->nsaved; j++)
            n->saved[j]->t_def = FT(i), n->saved[j]->t_last = n->out->requires_grad ? BWD_END : FT(i);
        for (int j = 0; j < n->nfscratch; j++) n->fscratch[j]->t_def = n->fscratch[j]->t_last = FT(i);
        for (int j = 0; j < n->nbscratch; j++) n->bscratch[j]->t_def = n->bscratch[j]->t_last = BT(i);
    }
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->keep_value || t->keep_grad) root_of(t)->t_last = INT_MAX;
    }

    /* Gradient tensors of activations: from the first consumer's backward (or the seed) to the producer's. */
    int ntens_before = g->ntensors;
    if (g->training_alloc) {
        for (int i = 0; i < ntens_before; i++) {
            clt_tensor *t = g->tensors[i];
            if (!t->requires_grad || t->view_of || (t->kind != CLT__ACT && t->kind != CLT__INPUT)) continue;
            char name[CLT_NAME_LEN * 2];
            snprintf(name, sizeof name, "%s.grad", t->name);
            clt_tensor *gr;
            CLT_TRY(clt__new_tensor(g, CLT__GRAD, name, t->ndim, t->shape, &gr));
            gr->value = t;
            t->grad = gr;
            int first = INT_MAX;
            for (int k = 0; k < N; k++) {
                clt__node *n = g->nodes[k];
                for (int j = 0; j < n->nin; j++)
                    if (root_of(n->in[j]) == t) first = imin(first, BT(k));
            }
            /* A seed written by clt_graph_backward_from before any consumer's backward is safe: nodes after
             * the seed are not run, and what earlier nodes still need is live across this whole span. */
            gr->t_def = first == INT_MAX ? SEED_T : first;
            gr->t_last = t->producer ? BT(t->producer->id) : INT_MAX;
            if (t->keep_grad || t->kind == CLT__INPUT) gr->t_last = INT_MAX;
            /* Views of t see the same gradient memory. */
        }
        for (int i = 0; i < ntens_before; i++) {
            clt_tensor *t = g->tensors[i];
            if (t->view_of && t->requires_grad) t->grad = root_of(t)->grad;
            if (t->keep_grad && t->view_of && root_of(t)->grad) root_of(t)->grad->t_last = INT_MAX;
        }
    }

    /* Activation arena: everything with a finite plan. Inputs get their own buffers. */
    clt_tensor **list = malloc((size_t)g->ntensors * sizeof *list);
    if (!list) return clt__err(ctx, CLT_ERR_NOMEM, "out of host memory");
    int nl = 0;
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->view_of) continue;
        if (t->kind == CLT__ACT || t->kind == CLT__SAVED || t->kind == CLT__FSCRATCH || t->kind == CLT__BSCRATCH ||
            (t->kind == CLT__GRAD && t->value->kind == CLT__ACT)) {
            if (t->t_def == INT_MAX) t->t_def = 0;       /* never written: still give it memory */
            if (t->t_last < t->t_def) t->t_last = t->t_def;
            /* Inference graphs still give SAVED tensors memory (living through the forward only): ops use
             * them as forward scratch too (conv2d's im2col columns, max pool's argmax). */
            if (t->kind == CLT__BSCRATCH && !g->training_alloc) continue;
            list[nl++] = t;
        }
    }
    int st = place_all(g, list, nl);
    if (st == CLT_OK) st = create_buffer(g, g->act_bytes, &g->act_arena, "the activation arena");
    for (int i = 0; st == CLT_OK && i < nl; i++)
        st = sub_buffer(g, g->act_arena, list[i]->offset, list[i]->numel * sizeof(float), &list[i]->mem);
    free(list);
    if (st < 0) return st;

    /* Inputs (and their kept gradients) own their buffers: the caller may write them at any time. */
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->kind == CLT__INPUT || (t->kind == CLT__GRAD && t->value->kind == CLT__INPUT))
            CLT_TRY(create_buffer(g, t->numel * sizeof(float), &t->mem, t->name));
    }
    /* Parameter arenas: one buffer each for values, gradients and optimizer slots, identical layouts, so the
     * optimizer is one kernel over all parameters. */
    size_t align_el = ctx->mem_align / sizeof(float);
    g->param_elems = g->buf_elems = 0;
    /* Decayed parameters first, then the others: the optimizer decays elements [0, decay_elems). With every
     * parameter decayed (the default) this is graph order, as it always was. */
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->kind == CLT__PARAM)
            t->decay_eff = t->decay_user >= 0 ? t->decay_user : o->decay_matrices_only ? t->decay : 1;
    }
    for (int pass = 1; pass >= 0; pass--) {
        for (int i = 0; i < g->ntensors; i++) {
            clt_tensor *t = g->tensors[i];
            if (t->kind != CLT__PARAM || t->decay_eff != pass) continue;
            t->param_offset = g->param_elems;
            g->param_elems += clt__round_up(t->numel, align_el);
        }
        if (pass == 1) g->decay_elems = g->param_elems;
    }
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->kind == CLT__BUFFER) {
            t->param_offset = g->buf_elems;
            g->buf_elems += clt__round_up(t->numel, align_el);
        }
    }
    /* The optimizer kernel counts in 32 bits (a larger arena than the device allows fails just below). */
    if (g->param_elems > (size_t)UINT_MAX && g->param_elems * sizeof(float) <= ctx->info.max_alloc_bytes)
        return clt__err(ctx, CLT_ERR_UNSUPPORTED, "the parameters hold %zu values; the optimizer handles at most %u",
                        g->param_elems, UINT_MAX);
    g->nslots = 0;
    if (g->training_alloc)
        g->nslots = o->type == CLT_OPT_SGD ? (o->momentum > 0 ? 1 : 0) : 2;
    CLT_TRY(create_buffer(g, g->param_elems * sizeof(float), &g->param_arena, "parameters"));
    if (g->training_alloc) {
        CLT_TRY(create_buffer(g, g->param_elems * sizeof(float), &g->grad_arena, "gradients"));
        CLT_TRY(create_buffer(g, (CLT__CLIP_PARTS + 2) * sizeof(float), &g->clip_buf, "the gradient norm"));
        if (g->settings.accumulate_grads)
            CLT_TRY(create_buffer(g, g->param_elems * sizeof(float), &g->acc_arena, "gradient accumulation"));
    }
    for (int s2 = 0; s2 < g->nslots; s2++)
        CLT_TRY(create_buffer(g, g->param_elems * sizeof(float), &g->slot_arena[s2], "optimizer state"));
    CLT_TRY(create_buffer(g, g->buf_elems * sizeof(float), &g->buf_arena, "buffers"));
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        size_t off = t->param_offset * sizeof(float), bytes = t->numel * sizeof(float);
        if (t->kind == CLT__PARAM) {
            CLT_TRY(sub_buffer(g, g->param_arena, off, bytes, &t->mem));
            for (int s2 = 0; s2 < g->nslots; s2++) CLT_TRY(sub_buffer(g, g->slot_arena[s2], off, bytes, &t->slot[s2]));
            if (g->training_alloc) {
                char name[CLT_NAME_LEN * 2];
                snprintf(name, sizeof name, "%s.grad", t->name);
                clt_tensor *gr;
                CLT_TRY(clt__new_tensor(g, CLT__GRAD, name, t->ndim, t->shape, &gr));
                gr->value = t;
                t->grad = gr;
                CLT_TRY(sub_buffer(g, g->grad_arena, off, bytes, &gr->mem));
            }
        } else if (t->kind == CLT__BUFFER) {
            CLT_TRY(sub_buffer(g, g->buf_arena, off, bytes, &t->mem));
        }
    }
    /* Views share their root's memory (and gradient): after the parameter arenas, so views of parameters
     * work too. */
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->view_of) {
            cl_mem m = root_of(t)->mem;
            if (m) CLT_CL(ctx, clRetainMemObject(m)); /* held before stored: destroy releases what is stored */
            t->mem = m;
            if (t->requires_grad && !t->grad) t->grad = root_of(t)->grad;
        }
    }
    g->contrib = calloc((size_t)g->ntensors, sizeof *g->contrib);
    g->reached = calloc((size_t)g->ntensors, sizeof *g->reached);
    if (!g->contrib || !g->reached) return clt__err(ctx, CLT_ERR_NOMEM, "out of host memory");

    CLT_TRY(clt__init_params(g));
    for (int i = 0; i < N; i++) {
        clt__node *n = g->nodes[i];
        if (n->op->prepare) CLT_TRY(n->op->prepare(g, n));
    }
    if (g->training_alloc) CLT_TRY(clt__optim_prepare(g));
    CLT_CL(ctx, clFinish(ctx->queue));
    g->compiled = 1;
    clt__clear_error(ctx); /* tuning and caching recover from their own failures */
    return CLT_OK;
#undef FT
#undef BT
}

int clt_graph_memory(const clt_graph *g, size_t *param_bytes, size_t *activation_bytes)
{
    if (!g) return CLT_ERR_INVALID;
    clt__clear_error(g->ctx);
    if (g->compiled != 1) return clt__err(g->ctx, CLT_ERR_STATE, "clt_graph_memory: the graph is not compiled");
    size_t p = g->param_elems * sizeof(float) * (1 + (g->training_alloc ? 1 : 0) + (size_t)g->nslots +
                                                 (g->acc_arena ? 1 : 0)) + g->buf_elems * sizeof(float);
    size_t a = g->act_bytes;
    for (int i = 0; i < g->ntensors; i++) {
        const clt_tensor *t = g->tensors[i];
        if (t->kind == CLT__INPUT || (t->kind == CLT__GRAD && t->value->kind == CLT__INPUT)) a += t->numel * sizeof(float);
    }
    if (param_bytes) *param_bytes = p;
    if (activation_bytes) *activation_bytes = a;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ running */

/* The first check of every call that runs a compiled graph: a message belongs to this call. */
static int check_compiled(clt_graph *g, const char *fn)
{
    if (!g) return CLT_ERR_INVALID;
    clt__clear_error(g->ctx);
    if (g->compiled == 0) return clt__err(g->ctx, CLT_ERR_STATE, "%s: compile the graph first", fn);
    if (g->compiled < 0)
        return clt__err(g->ctx, CLT_ERR_STATE, "%s: the graph failed to compile (or an op function failed part-way)",
                        fn);
    return CLT_OK;
}

static int find_tensor(clt_graph *g, const clt_tensor *t, const char *fn)
{
    if (!t) return clt__err(g->ctx, CLT_ERR_INVALID, "%s: tensor is NULL", fn);
    for (int i = 0; i < g->ntensors; i++)
        if (g->tensors[i] == t) return CLT_OK;
    return clt__err(g->ctx, CLT_ERR_INVALID, "%s: tensor belongs to another graph", fn);
}

int clt_tensor_write(clt_graph *g, clt_tensor *t, const float *data, size_t count)
{
    CLT_TRY(check_compiled(g, "clt_tensor_write"));
    CLT_TRY(find_tensor(g, t, "clt_tensor_write"));
    if (!data) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_tensor_write: data is NULL");
    if (t->kind != CLT__INPUT && t->kind != CLT__PARAM && t->kind != CLT__BUFFER)
        return clt__err(g->ctx, CLT_ERR_STATE, "clt_tensor_write: '%s' is computed by the graph; only inputs, "
                        "parameters and buffers can be written", t->name);
    if (count != t->numel) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_tensor_write: '%s' %s holds %zu values, got %zu", t->name,
                        clt__shape_str(t, b, sizeof b), t->numel, count);
    }
    CLT_CL(g->ctx, clEnqueueWriteBuffer(g->ctx->queue, t->mem, CL_TRUE, 0, count * sizeof(float), data, 0, NULL, NULL));
    return CLT_OK;
}

int clt_tensor_read(clt_graph *g, clt_tensor *t, int grad, float *data, size_t count)
{
    CLT_TRY(check_compiled(g, "clt_tensor_read"));
    CLT_TRY(find_tensor(g, t, "clt_tensor_read"));
    if (!data) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_tensor_read: data is NULL");
    if (count != t->numel) {
        char b[64];
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_tensor_read: '%s' %s holds %zu values, asked for %zu", t->name,
                        clt__shape_str(t, b, sizeof b), t->numel, count);
    }
    cl_mem m;
    if (grad) {
        if (!t->grad || !(t->kind == CLT__PARAM || t->keep_grad || root_of(t)->keep_grad))
            return clt__err(g->ctx, CLT_ERR_STATE, "clt_tensor_read: the gradient of '%s' is not kept (call "
                            "clt_graph_keep(g, t, 1) before compiling, with a training graph)", t->name);
        m = t->grad->mem;
    } else {
        if (t->kind == CLT__ACT && !t->keep_value && !root_of(t)->keep_value)
            return clt__err(g->ctx, CLT_ERR_STATE, "clt_tensor_read: '%s' is an intermediate whose memory is reused; "
                            "call clt_graph_keep before compiling to read it", t->name);
        if (t->kind != CLT__ACT && t->kind != CLT__INPUT && t->kind != CLT__PARAM && t->kind != CLT__BUFFER)
            return clt__err(g->ctx, CLT_ERR_STATE, "clt_tensor_read: '%s' is internal", t->name);
        m = t->mem;
    }
    CLT_CL(g->ctx, clEnqueueReadBuffer(g->ctx->queue, m, CL_TRUE, 0, count * sizeof(float), data, 0, NULL, NULL));
    return CLT_OK;
}

int clt__fill(clt_graph *g, cl_mem mem, size_t count, float value)
{
    CLT_CL(g->ctx, clEnqueueFillBuffer(g->ctx->queue, mem, &value, sizeof value, 0, count * sizeof(float), 0, NULL,
                                       NULL));
    return CLT_OK;
}

int clt_graph_forward(clt_graph *g, int training)
{
    CLT_TRY(check_compiled(g, "clt_graph_forward"));
    clt_context *ctx = g->ctx;
    if (training && !g->training_alloc)
        return clt__err(ctx, CLT_ERR_STATE, "clt_graph_forward: training pass on a graph compiled for inference");
    for (int i = 0; i < g->nnodes; i++) {
        clt__node *n = g->nodes[i];
        double t0 = ctx->profile ? clt__now_ms() : 0;
        if (n->op->forward) CLT_TRY(n->op->forward(g, n, training));
        if (ctx->profile) {
            CLT_CL(ctx, clFinish(ctx->queue));
            n->fwd_ms = clt__now_ms() - t0;
        }
    }
    if (training) g->passes++;
    return CLT_OK;
}

static int run_backward(clt_graph *g, clt_tensor *seed_t)
{
    clt_context *ctx = g->ctx;
    /* Which nodes lie on a path to the seed, and which input gradients they must produce. */
    memset(g->contrib, 0, (size_t)g->ntensors * sizeof *g->contrib);
    int *reached = g->reached; /* allocated at compile: backward passes allocate nothing */
    memset(reached, 0, (size_t)g->ntensors * sizeof *reached);
    reached[root_of(seed_t)->id] = 1;
    g->contrib[root_of(seed_t)->id] = 1;
    for (int i = g->nnodes - 1; i >= 0; i--) {
        clt__node *n = g->nodes[i];
        n->in_backward = reached[root_of(n->out)->id] && n->out->requires_grad && !n->no_backward;
        for (int j = 0; j < n->nin; j++) {
            n->need_dx[j] = n->in_backward && n->in[j]->requires_grad;
            n->acc_dx[j] = 0;
            if (n->need_dx[j]) {
                int r = root_of(n->in[j])->id;
                reached[r] = 1;
                n->acc_dx[j] = g->contrib[r]++ > 0;
            }
        }
        /* A parameter used by later ops (weight tying) already has their gradient: its owner adds to it. Users
         * always come after the owner (the owner creates the parameter), so they are counted by now. */
        for (int j = 0; j < n->nparam; j++) n->acc_param[j] = g->contrib[n->param[j]->id] > 0;
    }
    for (int i = g->nnodes - 1; i >= 0; i--) {
        clt__node *n = g->nodes[i];
        if (!n->in_backward) {
            for (int j = 0; j < n->nparam; j++)
                if (!n->acc_param[j]) CLT_TRY(clt__fill(g, n->param[j]->grad->mem, n->param[j]->numel, 0.0f));
            continue;
        }
        double t0 = ctx->profile ? clt__now_ms() : 0;
        if (n->op->backward) CLT_TRY(n->op->backward(g, n));
        if (ctx->profile) {
            CLT_CL(ctx, clFinish(ctx->queue));
            n->bwd_ms = clt__now_ms() - t0;
        }
    }
    return CLT_OK;
}

static int check_seed(clt_graph *g, clt_tensor *t, const char *fn)
{
    CLT_TRY(check_compiled(g, fn));
    CLT_TRY(find_tensor(g, t, fn));
    if (!g->training_alloc)
        return clt__err(g->ctx, CLT_ERR_STATE, "%s: the graph was compiled without training (no gradients)", fn);
    if (!t->requires_grad || !t->grad)
        return clt__err(g->ctx, CLT_ERR_STATE, "%s: '%s' does not depend on any parameter or kept input", fn, t->name);
    return CLT_OK;
}

int clt_graph_backward(clt_graph *g, clt_tensor *loss)
{
    return clt_graph_backward_ex(g, loss, 1.0f, 0);
}

int clt_graph_backward_ex(clt_graph *g, clt_tensor *loss, float loss_scale, int accumulate)
{
    const char *fn = accumulate || loss_scale != 1.0f ? "clt_graph_backward_ex" : "clt_graph_backward";
    CLT_TRY(check_seed(g, loss, fn));
    if (loss->numel != 1)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: '%s' has %zu values; a loss is a scalar "
                        "(use clt_graph_backward_from for others)", fn, loss->name, loss->numel);
    if (!isfinite(loss_scale))
        return clt__err(g->ctx, CLT_ERR_INVALID, "%s: loss_scale is %g", fn, loss_scale);
    if (accumulate != 0 && accumulate != 1)
        return clt__err(g->ctx, CLT_ERR_INVALID, "%s: accumulate is %d (0 or 1)", fn, accumulate);
    if (accumulate && !g->acc_arena)
        return clt__err(g->ctx, CLT_ERR_STATE, "%s: accumulating gradients needs a graph compiled with "
                        "accumulate_grads = 1", fn);
    if (accumulate) CLT_TRY(clt__grad_accumulate_begin(g));
    CLT_TRY(clt__fill(g, loss->grad->mem, 1, loss_scale));
    CLT_TRY(run_backward(g, loss));
    if (accumulate) CLT_TRY(clt__grad_accumulate_end(g));
    return CLT_OK;
}

int clt_graph_zero_grad(clt_graph *g)
{
    CLT_TRY(check_compiled(g, "clt_graph_zero_grad"));
    if (!g->training_alloc)
        return clt__err(g->ctx, CLT_ERR_STATE, "clt_graph_zero_grad: the graph was compiled without training");
    if (g->param_elems) CLT_TRY(clt__fill(g, g->grad_arena, g->param_elems, 0.0f));
    return CLT_OK;
}

int clt_graph_clip_grad_norm(clt_graph *g, float max_norm, float *norm_out)
{
    CLT_TRY(check_compiled(g, "clt_graph_clip_grad_norm"));
    if (!g->training_alloc)
        return clt__err(g->ctx, CLT_ERR_STATE, "clt_graph_clip_grad_norm: the graph was compiled without training");
    if (!(max_norm > 0))
        return clt__err(g->ctx, CLT_ERR_INVALID, "clt_graph_clip_grad_norm: max_norm is %g (must be > 0; INFINITY "
                        "only measures the norm)", max_norm);
    return clt__clip_grad_norm(g, max_norm, norm_out);
}

int clt_graph_backward_from(clt_graph *g, clt_tensor *t, const float *grad, size_t count)
{
    CLT_TRY(check_seed(g, t, "clt_graph_backward_from"));
    if (!grad) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_graph_backward_from: grad is NULL");
    if (count != t->numel)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_graph_backward_from: '%s' has %zu values, got %zu", t->name,
                        t->numel, count);
    CLT_CL(g->ctx, clEnqueueWriteBuffer(g->ctx->queue, t->grad->mem, CL_TRUE, 0, count * sizeof(float), grad, 0,
                                        NULL, NULL));
    return run_backward(g, t);
}

int clt_graph_step(clt_graph *g, float lr)
{
    CLT_TRY(check_compiled(g, "clt_graph_step"));
    if (!g->training_alloc)
        return clt__err(g->ctx, CLT_ERR_STATE, "clt_graph_step: the graph was compiled without training");
    if (!(lr >= 0)) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_graph_step: learning rate %g", lr);
    CLT_TRY(clt__optim_step(g, lr));
    g->steps++;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ state */

int clt_graph_state_count(const clt_graph *g)
{
    if (!g) return 0;
    int n = 0;
    for (int i = 0; i < g->ntensors; i++)
        n += g->tensors[i]->kind == CLT__PARAM || g->tensors[i]->kind == CLT__BUFFER;
    return n;
}

clt_tensor *clt_graph_state_tensor(const clt_graph *g, int idx, int *trainable)
{
    if (!g || idx < 0) return NULL;
    for (int i = 0; i < g->ntensors; i++) {
        clt_tensor *t = g->tensors[i];
        if (t->kind == CLT__PARAM || t->kind == CLT__BUFFER) {
            if (idx-- == 0) {
                if (trainable) *trainable = t->kind == CLT__PARAM;
                return t;
            }
        }
    }
    return NULL;
}

static int slot_check(clt_graph *g, clt_tensor *t, int slot, void *data, size_t count, const char *fn)
{
    CLT_TRY(check_compiled(g, fn));
    CLT_TRY(find_tensor(g, t, fn));
    if (!data) return clt__err(g->ctx, CLT_ERR_INVALID, "%s: data is NULL", fn);
    if (t->kind != CLT__PARAM) return clt__err(g->ctx, CLT_ERR_INVALID, "%s: '%s' is not a trainable parameter", fn, t->name);
    if (slot < 0 || slot > 1) return clt__err(g->ctx, CLT_ERR_INVALID, "%s: slot %d (0 or 1)", fn, slot);
    if (count != t->numel) return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: '%s' holds %zu values, got %zu", fn, t->name, t->numel, count);
    return CLT_OK;
}

int clt_tensor_read_slot(clt_graph *g, clt_tensor *t, int slot, float *data, size_t count)
{
    CLT_TRY(slot_check(g, t, slot, data, count, "clt_tensor_read_slot"));
    if (slot >= g->nslots) {
        memset(data, 0, count * sizeof(float));
        return CLT_OK;
    }
    CLT_CL(g->ctx, clEnqueueReadBuffer(g->ctx->queue, t->slot[slot], CL_TRUE, 0, count * sizeof(float), data, 0, NULL, NULL));
    return CLT_OK;
}

int clt_tensor_write_slot(clt_graph *g, clt_tensor *t, int slot, const float *data, size_t count)
{
    CLT_TRY(slot_check(g, t, slot, (void *)data, count, "clt_tensor_write_slot"));
    if (slot >= g->nslots) return CLT_OK;
    CLT_CL(g->ctx, clEnqueueWriteBuffer(g->ctx->queue, t->slot[slot], CL_TRUE, 0, count * sizeof(float), data, 0, NULL, NULL));
    return CLT_OK;
}

int clt_graph_get_counters(const clt_graph *g, uint64_t *steps, uint64_t *passes)
{
    if (!g) return CLT_ERR_INVALID;
    clt__clear_error(g->ctx);
    if (steps) *steps = g->steps;
    if (passes) *passes = g->passes;
    return CLT_OK;
}

int clt_graph_set_counters(clt_graph *g, uint64_t steps, uint64_t passes)
{
    if (!g) return CLT_ERR_INVALID;
    clt__clear_error(g->ctx);
    g->steps = steps;
    g->passes = passes;
    return CLT_OK;
}

int clt_graph_profile(clt_graph *g, clt_op_profile *entries, int max, int *count)
{
    if (!g) return CLT_ERR_INVALID;
    clt__clear_error(g->ctx);
    if (!g->ctx->profile)
        return clt__err(g->ctx, CLT_ERR_STATE, "clt_graph_profile: create the context with profile = 1");
    for (int i = 0; i < g->nnodes && i < max && entries; i++) {
        entries[i].op = g->nodes[i]->op->name;
        entries[i].name = g->nodes[i]->out->name;
        entries[i].forward_ms = g->nodes[i]->fwd_ms;
        entries[i].backward_ms = g->nodes[i]->in_backward ? g->nodes[i]->bwd_ms : 0;
        entries[i].ndim = g->nodes[i]->out->ndim;
        for (int d = 0; d < 4; d++) entries[i].shape[d] = d < entries[i].ndim ? g->nodes[i]->out->shape[d] : 0;
    }
    if (count) *count = g->nnodes;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ arenas (seam for
 * data-parallel training: an application reduces gradients with its own communicator) */

/* One arena of a compiled graph as (buffer, byte offset, float count); the offset is 0 today but is part of the
 * contract so that arenas may later live inside a larger allocation. */
static int arena_out(clt_graph *g, cl_mem m, size_t elems, cl_mem *mem, size_t *offset_bytes, size_t *count)
{
    if (mem) *mem = m;
    if (offset_bytes) *offset_bytes = 0;
    if (count) *count = elems;
    (void)g;
    return CLT_OK;
}

int clt_graph_param_buffer(clt_graph *g, cl_mem *mem, size_t *offset_bytes, size_t *count)
{
    CLT_TRY(check_compiled(g, "clt_graph_param_buffer"));
    return arena_out(g, g->param_arena, g->param_elems, mem, offset_bytes, count);
}

int clt_graph_grad_buffer(clt_graph *g, cl_mem *mem, size_t *offset_bytes, size_t *count)
{
    CLT_TRY(check_compiled(g, "clt_graph_grad_buffer"));
    if (!g->training_alloc)
        return clt__err(g->ctx, CLT_ERR_STATE, "clt_graph_grad_buffer: the graph was compiled without training "
                        "(no gradients)");
    return arena_out(g, g->grad_arena, g->param_elems, mem, offset_bytes, count);
}

int clt_graph_buffer_buffer(clt_graph *g, cl_mem *mem, size_t *offset_bytes, size_t *count)
{
    CLT_TRY(check_compiled(g, "clt_graph_buffer_buffer"));
    return arena_out(g, g->buf_arena, g->buf_elems, mem, offset_bytes, count);
}

int clt_graph_slot_buffer(clt_graph *g, int slot, cl_mem *mem, size_t *offset_bytes, size_t *count)
{
    CLT_TRY(check_compiled(g, "clt_graph_slot_buffer"));
    if (slot < 0 || slot > 1) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_graph_slot_buffer: slot %d (0 or 1)", slot);
    if (slot >= g->nslots) return arena_out(g, NULL, 0, mem, offset_bytes, count); /* unused by this optimizer */
    return arena_out(g, g->slot_arena[slot], g->param_elems, mem, offset_bytes, count);
}

int clt_graph_param_ranges(const clt_graph *g)
{
    if (!g || g->compiled != 1) return 0;
    int n = 0;
    for (int i = 0; i < g->ntensors; i++) n += g->tensors[i]->kind == CLT__PARAM;
    return n;
}

/* Parameters sit in the arena in creation (forward) order, so backward order is the reverse. */
int clt_graph_param_range(clt_graph *g, int i, size_t *offset, size_t *count, clt_tensor **tensor)
{
    CLT_TRY(check_compiled(g, "clt_graph_param_range"));
    int k = i;
    for (int j = g->ntensors - 1; j >= 0 && k >= 0; j--) {
        clt_tensor *t = g->tensors[j];
        if (t->kind != CLT__PARAM) continue;
        if (k-- == 0) {
            if (offset) *offset = t->param_offset;
            if (count) *count = t->numel;
            if (tensor) *tensor = t;
            return CLT_OK;
        }
    }
    return clt__err(g->ctx, CLT_ERR_INVALID, "clt_graph_param_range: index %d (the graph has %d parameters)", i,
                    clt_graph_param_ranges(g));
}
