/* reshape.c - reshape and flatten: views that share their input's memory and gradient (no copy, no kernel). */
#include <stdio.h>
#include <string.h>

#include "model.h"

/* The graph gives a view its root's memory and gradient, so forward and backward have nothing to do. */
static const clt__op op_reshape = {"reshape", NULL, NULL, NULL, NULL};

static int add_view(clt_graph *g, clt_tensor *x, int ndim, const int *shape, clt_tensor **out)
{
    clt__node *n;
    CLT_TRY(clt__new_node(g, &op_reshape, NULL, 1, &x, ndim, shape, &n));
    n->out->view_of = x;
    n->bwd_needs_in = 0;
    n->bwd_needs_out = 0;
    *out = n->out;
    return CLT_OK;
}

int clt_reshape(clt_graph *g, clt_tensor *x, int ndim, const int *shape, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_reshape: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_reshape"));
    CLT_TRY(clt__check_tensor(g, x, "clt_reshape", "input"));
    if (!shape || ndim < 1 || ndim > 4)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_reshape: %d dimensions%s (1 to 4 supported)", ndim,
                        shape ? "" : " and a NULL shape");
    int s[4], infer = -1;
    size_t known = 1;
    char b[64];
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (shape[i] == -1 && infer < 0) {
            infer = i;
        } else if (shape[i] <= 0) {
            return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_reshape: '%s' %s: dimension %d of the new shape is %d "
                            "(must be positive, or -1 once)", x->name, clt__shape_str(x, b, sizeof b), i, shape[i]);
        } else if ((size_t)shape[i] > x->numel / known) {
            /* More values than x holds (checked before multiplying, so the product cannot wrap to 0). */
            return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_reshape: '%s' %s has %zu values, fewer than the new shape "
                            "holds", x->name, clt__shape_str(x, b, sizeof b), x->numel);
        } else {
            known *= (size_t)shape[i];
        }
    }
    if (infer >= 0) {
        if (x->numel % known != 0 || x->numel / known > (size_t)0x7fffffff)
            return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_reshape: '%s' %s has %zu values, not a multiple of %zu",
                            x->name, clt__shape_str(x, b, sizeof b), x->numel, known);
        s[infer] = (int)(x->numel / known);
        known *= (size_t)s[infer];
    }
    if (known != x->numel)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_reshape: '%s' %s has %zu values but the new shape holds %zu",
                        x->name, clt__shape_str(x, b, sizeof b), x->numel, known);
    return add_view(g, x, ndim, s, out);
}

int clt_flatten(clt_graph *g, clt_tensor *x, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_flatten: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_flatten"));
    CLT_TRY(clt__check_tensor(g, x, "clt_flatten", "input"));
    int s[2] = {x->shape[0], (int)(x->numel / (size_t)x->shape[0])};
    return add_view(g, x, 2, s, out);
}

/* ------------------------------------------------------------------------------------------ model layer */

static int flatten_parse(clt__line *l, void *args)
{
    (void)l, (void)args;
    return CLT_OK;
}

static void flatten_print(const void *args, clt__sbuf *b)
{
    (void)args;
    clt__sb_printf(b, "flatten\n");
}

/* (C,H,W) -> (C*H*W), as clt_flatten; 64-bit, so that no size can overflow. */
static int flatten_shape(const void *args, const clt__shape *in, int classes, clt__shape *out, clt__layer_cost *cost,
                         char *msg)
{
    (void)args, (void)classes, (void)cost;
    long long v = (long long)in->c * in->h * in->w;
    if (v > 0x7fffffff) {
        char s[64];
        clt__shape_text(in, s, sizeof s);
        return clt__layer_shape_fail(msg, "flatten: %s has %lld values per image, more than a tensor may hold", s, v);
    }
    *out = (clt__shape){1, (int)v, 1, 1};
    return CLT_OK;
}

static int flatten_build(clt_graph *g, const void *args, const char *name, const clt__shape *in,
                         const clt__shape *out, clt_tensor *x, clt_tensor **y)
{
    (void)args, (void)name, (void)out;
    if (in->flat) { /* already (N, F): nothing to do */
        *y = x;
        return CLT_OK;
    }
    return clt_flatten(g, x, y);
}

static const clt__layer_type layers[] = {
    {"flatten", "flatten", NULL, NULL, flatten_parse, flatten_print, flatten_shape, flatten_build},
};
const clt__op_def clt__opdef_reshape = {"reshape", layers, 1};
