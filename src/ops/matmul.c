/* matmul.c - (batched) matrix product with either operand transposed, through clt__gemm (own kernel or
 * CLBlast); an operand may be a learned parameter of an op that shares it (weight tying). No kernels of its own. */
#include <string.h>

#include "model.h"

/* C (batch, M, N) = op(A) op(B). A is stored (batch, M, K), or (batch, K, M) with ta; B (batch, K, N) or
 * (batch, N, K) with tb; bcast: B is one matrix for every batch entry (then A is read as (batch*M, K), ta = 0). */
typedef struct mm_attr {
    int ta, tb, bcast;
    size_t batch, m, n, k;
} mm_attr;
#define ATTR(n) CLT__ATTR(n, mm_attr)

/* The three products of a pass, as clt__gemm arguments without memory (shared by prepare and the passes). */
static clt__gemm_args fwd_args(const mm_attr *a)
{
    size_t M = a->m, N = a->n, K = a->k;
    return (clt__gemm_args){.trans_a = a->ta, .trans_b = a->tb, .m = M, .n = N, .k = K, .alpha = 1,
                            .lda = a->ta ? M : K, .ldb = a->tb ? K : N, .ldc = N, .stride_a = M * K,
                            .stride_b = K * N, .stride_c = M * N, .batch = a->batch};
}

/* dA, stored like A: ta ? op(B) dC^T : dC op(B)^T. */
static clt__gemm_args da_args(const mm_attr *a)
{
    size_t M = a->m, N = a->n, K = a->k;
    clt__gemm_args r = {.alpha = 1, .stride_a = M * K, .stride_b = K * N, .stride_c = M * N, .batch = a->batch};
    if (a->ta)
        r.trans_a = a->tb, r.trans_b = 1, r.m = K, r.n = M, r.k = N, r.lda = a->tb ? K : N, r.ldb = N, r.ldc = M,
        r.stride_a = K * N, r.stride_b = M * N, r.stride_c = M * K;
    else
        r.trans_a = 0, r.trans_b = !a->tb, r.m = M, r.n = K, r.k = N, r.lda = N, r.ldb = a->tb ? K : N, r.ldc = K,
        r.stride_a = M * N, r.stride_b = K * N, r.stride_c = M * K;
    return r;
}

/* dB, stored like B: tb ? dC^T op(A) : op(A)^T dC. */
static clt__gemm_args db_args(const mm_attr *a)
{
    size_t M = a->m, N = a->n, K = a->k;
    clt__gemm_args r = {.alpha = 1, .batch = a->batch};
    if (a->tb)
        r.trans_a = 1, r.trans_b = a->ta, r.m = N, r.n = K, r.k = M, r.lda = N, r.ldb = a->ta ? M : K, r.ldc = K,
        r.stride_a = M * N, r.stride_b = M * K, r.stride_c = N * K;
    else
        r.trans_a = !a->ta, r.trans_b = 0, r.m = K, r.n = N, r.k = M, r.lda = a->ta ? M : K, r.ldb = N, r.ldc = N,
        r.stride_a = M * K, r.stride_b = M * N, r.stride_c = K * N;
    return r;
}

static int prepare(clt_graph *g, clt__node *n)
{
    const mm_attr *a = ATTR(n);
    clt__gemm_args f = fwd_args(a);
    CLT_TRY(clt__gemm_prepare(g->ctx, &f));
    if (n->in[0]->grad) {
        clt__gemm_args d = da_args(a);
        CLT_TRY(clt__gemm_prepare(g->ctx, &d));
    }
    if (n->in[1]->grad) {
        clt__gemm_args d = db_args(a);
        CLT_TRY(clt__gemm_prepare(g->ctx, &d));
    }
    return CLT_OK;
}

static int forward(clt_graph *g, clt__node *n, int training)
{
    (void)training;
    clt__gemm_args f = fwd_args(ATTR(n));
    f.a = n->in[0]->mem, f.b = n->in[1]->mem, f.c = n->out->mem, f.beta = 0;
    return clt__gemm(g->ctx, &f);
}

static int backward(clt_graph *g, clt__node *n)
{
    const mm_attr *a = ATTR(n);
    cl_mem dc = n->out->grad->mem;
    if (n->need_dx[0]) {
        clt__gemm_args d = da_args(a);
        d.a = a->ta ? n->in[1]->mem : dc, d.b = a->ta ? dc : n->in[1]->mem, d.c = n->in[0]->grad->mem;
        d.beta = n->acc_dx[0] ? 1.0f : 0.0f;
        CLT_TRY(clt__gemm(g->ctx, &d));
    }
    if (n->need_dx[1]) {
        clt__gemm_args d = db_args(a);
        d.a = a->tb ? dc : n->in[0]->mem, d.b = a->tb ? n->in[0]->mem : dc, d.c = n->in[1]->grad->mem;
        d.beta = n->acc_dx[1] ? 1.0f : 0.0f;
        CLT_TRY(clt__gemm(g->ctx, &d));
    }
    return CLT_OK;
}

static const clt__op op_matmul = {"matmul", prepare, forward, backward, NULL};

/* An operand is an input or activation, or a parameter whose owner adds to its gradient (shares_params). */
static int check_operand(clt_graph *g, clt_tensor *t, const char *what)
{
    if (t && t->kind == CLT__PARAM) {
        for (int i = 0; i < g->nnodes; i++)
            for (int j = 0; j < g->nodes[i]->nparam; j++)
                if (g->nodes[i]->param[j] == t) {
                    if (g->nodes[i]->shares_params) return CLT_OK;
                    return clt__err(g->ctx, CLT_ERR_INVALID, "clt_matmul: %s '%s' is a parameter of a %s op, which "
                                    "cannot share it (embedding tables can)", what, t->name, g->nodes[i]->op->name);
                }
    }
    return clt__check_tensor(g, t, "clt_matmul", what);
}

int clt_matmul(clt_graph *g, clt_tensor *a, clt_tensor *b, int trans_a, int trans_b, clt_tensor **out)
{
    if (!out) return g ? clt__err(g->ctx, CLT_ERR_INVALID, "clt_matmul: out is NULL") : CLT_ERR_INVALID;
    *out = NULL;
    CLT_TRY(clt__check_building(g, "clt_matmul"));
    CLT_TRY(check_operand(g, a, "a"));
    CLT_TRY(check_operand(g, b, "b"));
    char sa[64], sb[64];
    int na = a->ndim, nb = b->ndim;
    if (na < 2 || nb < 2)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_matmul: a %s and b %s need at least 2 dimensions",
                        clt__shape_str(a, sa, sizeof sa), clt__shape_str(b, sb, sizeof sb));
    mm_attr at = {trans_a != 0, trans_b != 0, nb == 2 && na > 2, 1, 0, 0, 0};
    at.m = (size_t)a->shape[na - (at.ta ? 1 : 2)];
    at.k = (size_t)a->shape[na - (at.ta ? 2 : 1)];
    size_t kb = (size_t)b->shape[nb - (at.tb ? 1 : 2)];
    at.n = (size_t)b->shape[nb - (at.tb ? 2 : 1)];
    int same_batch = na == nb;
    for (int i = 0; same_batch && i < na - 2; i++) same_batch = a->shape[i] == b->shape[i];
    if (kb != at.k || !(same_batch || at.bcast))
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_matmul: a %s%s and b %s%s do not fit (inner sizes %zu and %zu; "
                        "b has a's leading dimensions or is one matrix)", clt__shape_str(a, sa, sizeof sa),
                        at.ta ? "^T" : "", clt__shape_str(b, sb, sizeof sb), at.tb ? "^T" : "", at.k, kb);
    if (at.bcast && at.ta)
        return clt__err(g->ctx, CLT_ERR_SHAPE, "clt_matmul: a %s is transposed and batched while b %s is one "
                        "matrix: give b the batch dimensions", clt__shape_str(a, sa, sizeof sa),
                        clt__shape_str(b, sb, sizeof sb));
    size_t lead = a->numel / (at.m * at.k);
    if (at.bcast) at.m *= lead; /* (batch*M, K) x one B: one GEMM */
    else at.batch = lead;
    int shape[4];
    memcpy(shape, a->shape, sizeof shape);
    shape[na - 2] = a->shape[na - (at.ta ? 1 : 2)];
    shape[na - 1] = (int)at.n;
    clt__node *n;
    clt_tensor *in[2] = {a, b};
    CLT_TRY(clt__new_node(g, &op_matmul, NULL, 2, in, na, shape, &n));
    *ATTR(n) = at;
    n->bwd_needs_in = 3;
    n->bwd_needs_out = 0;
    *out = n->out;
    return CLT_OK;
}

const clt__op_def clt__opdef_matmul = {"matmul", NULL, 0};
