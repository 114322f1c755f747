/* gemm.c - the library's GEMM entry point: own packed register-blocked kernels or CLBlast, chosen per shape. */
#include <clblast_c.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "tune.h"

/* Parameter sets of cl/gemm.cl shipped and tuned over (measured on a 2-core AVX-512 POCL device: packed B
 * wins for K >= 64, reading B in place wins for small K where packing would cost as much as the product).
 * QUICK tuning tries the first NQUICK, FULL all of them. */
static const clt__gemm_params params[] = {
    {8, 16, 1, 4, 1, 0, 0},   /* CPU default */
    {8, 16, 1, 4, 1, 1, 0},   /* CPU default for small K and row-major B */
    {12, 16, 1, 4, 1, 0, 0},
    {8, 16, 1, 4, 1, 0, 256}, /* CPU default for large M, N and K */
    {14, 16, 1, 4, 1, 0, 0},
    {8, 16, 2, 4, 1, 0, 0},
    {6, 16, 2, 4, 1, 0, 0},
    {8, 16, 1, 4, 8, 0, 0},
    {8, 8, 2, 4, 1, 1, 0},
    {4, 16, 2, 4, 1, 1, 512},
};
#define NPARAMS ((int)(sizeof params / sizeof params[0]))
#define NQUICK 4
/* Changes whenever the candidate list or the decision format changes (part of the tuning key). */
#define GEMM_TUNE_VERSION "gemm-v1"

typedef struct own_kernels {
    clt__gemm_params p;
    cl_kernel pack_a, pack_b, tile;
} own_kernels;

typedef struct decision {
    int ta, tb;
    size_t m, n, k, batch;
    int algo;
    clt__gemm_params p;
    size_t clblast_temp; /* CLBlast temporary bytes of one entry, any layout; TEMP_UNKNOWN if not asked */
} decision;
#define TEMP_UNKNOWN ((size_t)-1)

struct clt__gemm_state {
    cl_mem ws_a, ws_b;       /* packing workspaces, grown on demand (normally at prepare time) */
    size_t cap_a, cap_b;     /* bytes */
    cl_mem ws_t;             /* CLBlast's temporary matrices (otherwise it allocates them in every call) */
    size_t cap_t;
    own_kernels ks[16];
    int nks;
    decision *dec;
    int ndec, cap_dec;
    int force;               /* CLTRAIN_GEMM: CLT__GEMM_CLBLAST / CLT__GEMM_OWN / AUTO */
    int clblast_done;        /* CLBlast parameter decision applied */
    unsigned long temp_calls; /* GEMMs run by CLBlastSgemmWithTempBuffer */
    size_t allocs;           /* device allocations: workspace growth, CLBlast calls that may allocate */
};

int clt__gemm_num_params(void)
{
    return NPARAMS;
}

const clt__gemm_params *clt__gemm_param(int i)
{
    return i >= 0 && i < NPARAMS ? &params[i] : NULL;
}

void clt__gemm_params_str(const clt__gemm_params *p, char *buf, size_t len)
{
    snprintf(buf, len, "MR=%d VW=%d NV=%d KU=%d LX=%d DB=%d KC=%d", p->mr, p->vw, p->nv, p->ku, p->lx, p->db,
             p->kc);
}

static int parse_params(const char *s, clt__gemm_params *p)
{
    return sscanf(s, "MR=%d VW=%d NV=%d KU=%d LX=%d DB=%d KC=%d", &p->mr, &p->vw, &p->nv, &p->ku, &p->lx, &p->db,
                  &p->kc) == 7;
}

static int params_in_range(const clt__gemm_params *p)
{
    return p->mr >= 1 && p->mr <= 16 && (p->vw == 4 || p->vw == 8 || p->vw == 16) && p->nv >= 1 && p->nv <= 4 &&
           p->ku >= 1 && p->ku <= 16 && p->lx >= 1 && p->lx <= 1024 && (p->db == 0 || p->db == 1) && p->kc >= 0 &&
           p->kc <= 65536;
}

int clt__gemm_env_check(clt_context *ctx)
{
    const char *e = getenv("CLTRAIN_GEMM");
    if (e && *e && strcmp(e, "auto") && strcmp(e, "own") && strcmp(e, "clblast"))
        return clt__err(ctx, CLT_ERR_INVALID, "environment variable CLTRAIN_GEMM=%.200s: unknown value (expected auto, "
                        "own or clblast, or unset)", e);
    e = getenv("CLTRAIN_GEMM_PARAMS");
    clt__gemm_params q;
    if (e && *e && !(parse_params(e, &q) && params_in_range(&q)))
        return clt__err(ctx, CLT_ERR_INVALID, "environment variable CLTRAIN_GEMM_PARAMS=%.200s: expected \"MR=8 VW=16 "
                        "NV=1 KU=4 LX=1 DB=0 KC=0\" with MR 1..16, VW 4, 8 or 16, NV 1..4, KU 1..16, LX 1..1024, DB 0 "
                        "or 1, KC 0..65536 (or unset)", e);
    return CLT_OK;
}

static int state(clt_context *ctx, clt__gemm_state **out)
{
    if (!ctx->gemm) {
        clt__gemm_state *s = calloc(1, sizeof *s);
        if (!s) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
        const char *e = getenv("CLTRAIN_GEMM");
        if (e && strcmp(e, "clblast") == 0) s->force = CLT__GEMM_CLBLAST;
        else if (e && strcmp(e, "own") == 0) s->force = CLT__GEMM_OWN;
        else if (e && *e && strcmp(e, "auto") != 0) {
            free(s);
            return clt__err(ctx, CLT_ERR_INVALID, "environment variable CLTRAIN_GEMM=%.200s: unknown value (expected "
                            "auto, own or clblast, or unset)", e);
        }
        ctx->gemm = s;
    }
    *out = ctx->gemm;
    return CLT_OK;
}

static int same_params(const clt__gemm_params *a, const clt__gemm_params *b)
{
    return a->mr == b->mr && a->vw == b->vw && a->nv == b->nv && a->ku == b->ku && a->lx == b->lx && a->db == b->db &&
           a->kc == b->kc;
}

static int get_kernels(clt_context *ctx, clt__gemm_state *s, const clt__gemm_params *p, own_kernels **out)
{
    for (int i = 0; i < s->nks; i++) {
        /* lx and db are launch-time choices: kernels are shared between them */
        clt__gemm_params q = s->ks[i].p;
        q.lx = p->lx;
        q.db = p->db;
        q.kc = p->kc;
        if (same_params(&q, p)) {
            *out = &s->ks[i];
            return CLT_OK;
        }
    }
    if (s->nks == (int)(sizeof s->ks / sizeof s->ks[0]))
        return clt__err(ctx, CLT_ERR_INVALID, "too many GEMM parameter sets in use");
    if (p->mr < 1 || p->mr > 16 || (p->vw != 4 && p->vw != 8 && p->vw != 16) || p->nv < 1 || p->nv > 4 ||
        p->ku < 1 || p->ku > 16 || p->lx < 1 || p->lx > 1024)
        return clt__err(ctx, CLT_ERR_INVALID, "invalid GEMM parameters MR=%d VW=%d NV=%d KU=%d LX=%d", p->mr, p->vw,
                        p->nv, p->ku, p->lx);
    own_kernels *k = &s->ks[s->nks];
    memset(k, 0, sizeof *k);
    char opts[128];
    snprintf(opts, sizeof opts, "-DMR=%d -DVW=%d -DNV=%d -DKU=%d", p->mr, p->vw, p->nv, p->ku);
    int st = clt__kernel(ctx, "gemm", opts, "pack_a", &k->pack_a);
    if (st == CLT_OK) st = clt__kernel(ctx, "gemm", opts, "pack_b", &k->pack_b);
    if (st == CLT_OK) st = clt__kernel(ctx, "gemm", opts, "gemm_tile", &k->tile);
    if (st < 0) {
        if (k->pack_a) clReleaseKernel(k->pack_a);
        if (k->pack_b) clReleaseKernel(k->pack_b);
        return st;
    }
    k->p = *p;
    s->nks++;
    *out = k;
    return CLT_OK;
}

static int ensure_ws(clt_context *ctx, cl_mem *mem, size_t *cap, size_t bytes)
{
    if (bytes < 256) bytes = 256;
    if (*mem && *cap >= bytes) return CLT_OK;
    /* Released buffers stay alive until queued kernels that use them finish (OpenCL rule). */
    if (*mem) clReleaseMemObject(*mem);
    *mem = NULL;
    *cap = 0;
    if (bytes > ctx->info.max_alloc_bytes && ctx->info.max_alloc_bytes)
        return clt__err(ctx, CLT_ERR_DEVICE_MEMORY, "GEMM packing workspace of %zu bytes exceeds the device's "
                        "max allocation (%llu bytes)", bytes, (unsigned long long)ctx->info.max_alloc_bytes);
    cl_int err;
    *mem = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        *mem = NULL;
        return clt__cl_err(ctx, err, "clCreateBuffer(GEMM workspace)", __FILE__, __LINE__);
    }
    *cap = bytes;
    ctx->gemm->allocs++;
    return CLT_OK;
}

/* Workspace sizes (bytes) of the own path for a shape; also the launch geometry. */
typedef struct own_plan {
    size_t np, nq, nfull, ntail; /* row panels, column panels, of which read directly / packed */
    size_t ap_stride, bp_stride; /* floats per batch entry */
    int direct;
} own_plan;

static void plan(const clt__gemm_args *a, const clt__gemm_params *p, own_plan *pl)
{
    size_t nr = (size_t)p->vw * (size_t)p->nv;
    pl->np = (a->m + (size_t)p->mr - 1) / (size_t)p->mr;
    pl->nq = (a->n + nr - 1) / nr;
    pl->direct = p->db && !a->trans_b;
    pl->nfull = pl->direct ? a->n / nr : 0;
    pl->ntail = pl->nq - pl->nfull;
    pl->ap_stride = pl->np * (size_t)p->mr * a->k;
    pl->bp_stride = pl->ntail * nr * a->k;
}

static int check_dims(clt_context *ctx, const clt__gemm_args *a)
{
    const size_t lim = 0x7fffffff;
    if (a->m > lim || a->n > lim || a->k > lim || a->lda > lim || a->ldb > lim || a->ldc > lim)
        return clt__err(ctx, CLT_ERR_INVALID, "GEMM dimensions too large (m=%zu n=%zu k=%zu)", a->m, a->n, a->k);
    size_t ra = a->trans_a ? a->k : a->m, ca = a->trans_a ? a->m : a->k;
    size_t rb = a->trans_b ? a->n : a->k, cb = a->trans_b ? a->k : a->n;
    if ((ra > 0 && a->lda < ca) || (rb > 0 && a->ldb < cb) || a->ldc < a->n)
        return clt__err(ctx, CLT_ERR_INVALID, "GEMM leading dimensions too small (lda=%zu ldb=%zu ldc=%zu for "
                        "m=%zu n=%zu k=%zu ta=%d tb=%d)", a->lda, a->ldb, a->ldc, a->m, a->n, a->k, a->trans_a,
                        a->trans_b);
    return CLT_OK;
}

static int run_own(clt_context *ctx, const clt__gemm_args *a, const clt__gemm_params *p)
{
    clt__gemm_state *s = NULL;
    CLT_TRY(state(ctx, &s));
    CLT_TRY(check_dims(ctx, a));
    own_kernels *k = NULL;
    CLT_TRY(get_kernels(ctx, s, p, &k));
    own_plan pl;
    plan(a, p, &pl);
    size_t batch = a->batch ? a->batch : 1;
    CLT_TRY(ensure_ws(ctx, &s->ws_a, &s->cap_a, batch * pl.ap_stride * sizeof(float)));
    if (pl.ntail) CLT_TRY(ensure_ws(ctx, &s->ws_b, &s->cap_b, batch * pl.bp_stride * sizeof(float)));
    cl_uint M = (cl_uint)a->m, N = (cl_uint)a->n, K = (cl_uint)a->k;
    cl_uint nr = (cl_uint)(p->vw * p->nv);
    /* pack A: (K, row panels, batch) */
    {
        cl_ulong off = a->off_a, stride = a->stride_a, aps = pl.ap_stride;
        cl_uint lda = (cl_uint)a->lda, ta = (cl_uint)(a->trans_a != 0);
        CLT_TRY(CLT_SET_ARGS(ctx, k->pack_a, CLT_ARG(a->a), CLT_ARG(off), CLT_ARG(lda), CLT_ARG(stride), CLT_ARG(ta),
                             CLT_ARG(M), CLT_ARG(K), CLT_ARG(s->ws_a), CLT_ARG(aps)));
        size_t g[3] = {a->k, pl.np, batch};
        CLT_TRY(clt__launch(ctx, k->pack_a, 3, g, NULL));
    }
    if (pl.ntail) {
        cl_ulong off = a->off_b, stride = a->stride_b, bps = pl.bp_stride;
        cl_uint ldb = (cl_uint)a->ldb, tb = (cl_uint)(a->trans_b != 0), n0 = (cl_uint)(pl.nfull * nr);
        CLT_TRY(CLT_SET_ARGS(ctx, k->pack_b, CLT_ARG(a->b), CLT_ARG(off), CLT_ARG(ldb), CLT_ARG(stride), CLT_ARG(tb),
                             CLT_ARG(N), CLT_ARG(K), CLT_ARG(n0), CLT_ARG(s->ws_b), CLT_ARG(bps)));
        size_t g[3] = {a->k, pl.ntail, batch};
        CLT_TRY(clt__launch(ctx, k->pack_b, 3, g, NULL));
    }
    cl_ulong aps = pl.ap_stride, c_off = a->off_c, c_stride = a->stride_c, a_panel = (cl_ulong)a->k * p->mr;
    cl_uint ldc = (cl_uint)a->ldc;
    float alpha = a->alpha;
    /* K blocking keeps the panels of one block in cache; later blocks accumulate into C (beta = 1). */
    size_t kc = p->kc > 0 && a->k > (size_t)p->kc ? (size_t)p->kc : a->k;
    size_t k0 = 0;
    do {
        size_t kn = a->k - k0 < kc ? a->k - k0 : kc;
        float beta = k0 == 0 ? a->beta : 1.0f;
        cl_uint kblk = (cl_uint)kn;
        cl_ulong ap_off = k0 * (size_t)p->mr;
        for (int pass = 0; pass < 2; pass++) {
            size_t npan = pass == 0 ? pl.nfull : pl.ntail;
            if (npan == 0) continue;
            cl_mem b;
            cl_ulong b_off, b_stride, b_panel;
            cl_uint b_k, q0, qn = (cl_uint)npan;
            if (pass == 0) { /* B read in place: panel q starts at column q*NR of row-major B */
                b = a->b;
                b_off = a->off_b + k0 * a->ldb;
                b_stride = a->stride_b;
                b_panel = nr;
                b_k = (cl_uint)a->ldb;
                q0 = 0;
            } else {
                b = s->ws_b;
                b_off = k0 * nr;
                b_stride = pl.bp_stride;
                b_panel = (cl_ulong)K * nr;
                b_k = nr;
                q0 = (cl_uint)pl.nfull;
            }
            CLT_TRY(CLT_SET_ARGS(ctx, k->tile, CLT_ARG(s->ws_a), CLT_ARG(ap_off), CLT_ARG(aps), CLT_ARG(a_panel),
                                 CLT_ARG(b), CLT_ARG(b_off), CLT_ARG(b_stride), CLT_ARG(b_panel), CLT_ARG(b_k),
                                 CLT_ARG(a->c), CLT_ARG(c_off), CLT_ARG(c_stride), CLT_ARG(ldc), CLT_ARG(M), CLT_ARG(N),
                                 CLT_ARG(kblk), CLT_ARG(q0), CLT_ARG(qn), CLT_ARG(alpha), CLT_ARG(beta)));
            size_t g[3] = {npan, pl.np, batch}, l[3] = {(size_t)p->lx, 1, 1};
            if (l[0] > npan) l[0] = 1;
            CLT_TRY(clt__launch(ctx, k->tile, 3, g, l));
        }
        k0 += kn;
    } while (k0 < a->k);
    return CLT_OK;
}

static int clblast_err(clt_context *ctx, CLBlastStatusCode s, const char *what, const clt__gemm_args *a)
{
    int st = CLT_ERR_CLBLAST;
    if (s == CLBlastOpenCLOutOfResources || s == CLBlastTempBufferAllocFailure || s == CLBlastInsufficientMemoryTemp)
        st = CLT_ERR_DEVICE_MEMORY;
    return clt__err(ctx, st, "%s (m=%zu n=%zu k=%zu batch=%zu) failed: CLBlast status %d", what, a->m, a->n, a->k,
                    a->batch, (int)s);
}

int (*clt__gemm_clblast_hook)(void);

static int run_clblast(clt_context *ctx, const clt__gemm_args *a)
{
    if (clt__gemm_clblast_hook) {
        int st = clt__gemm_clblast_hook();
        if (st < 0) return clt__err(ctx, st, "CLBlast GEMM failed (injected by a test)");
    }
    CLBlastTranspose ta = a->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = a->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastStatusCode s;
    if (a->batch <= 1) {
        s = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, a->m, a->n, a->k, a->alpha, a->a, a->off_a, a->lda, a->b,
                         a->off_b, a->ldb, a->beta, a->c, a->off_c, a->ldc, &ctx->queue, NULL);
        if (s != CLBlastSuccess) return clblast_err(ctx, s, "CLBlastSgemm", a);
    } else {
        s = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, a->m, a->n, a->k, a->alpha, a->a, a->off_a,
                                       a->lda, a->stride_a, a->b, a->off_b, a->ldb, a->stride_b, a->beta, a->c,
                                       a->off_c, a->ldc, a->stride_c, a->batch, &ctx->queue, NULL);
        if (s != CLBlastSuccess) return clblast_err(ctx, s, "CLBlastSgemmStridedBatched", a);
    }
    return CLT_OK;
}

int clt__gemm_run(clt_context *ctx, const clt__gemm_args *a, int algo, const clt__gemm_params *p)
{
    if (a->m == 0 || a->n == 0) return CLT_OK;
    /* CLBlast refuses k = 0 (C = beta C); the own kernels handle it. */
    if (algo == CLT__GEMM_OWN || a->k == 0) return run_own(ctx, a, p ? p : &params[0]);
    return run_clblast(ctx, a);
}

void clt__gemm_default(clt_context *ctx, const clt__gemm_args *a, int *algo, clt__gemm_params *p)
{
    *p = params[a->k <= 32 && !a->trans_b ? 1 : 0];
    /* Large square-ish problems: K blocks of 256 keep the B panels in L2 (1024^3: ~1.5x faster measured). */
    if (a->k >= 512 && a->m >= 256 && a->n >= 256) *p = params[3];
    *algo = ctx->info.is_gpu ? CLT__GEMM_CLBLAST : CLT__GEMM_OWN;
    /* Developer knob for trying parameter sets: CLTRAIN_GEMM_PARAMS="MR=8 VW=16 NV=1 KU=4 LX=1 DB=1 KC=0". */
    const char *e = getenv("CLTRAIN_GEMM_PARAMS");
    clt__gemm_params q;
    if (e && parse_params(e, &q) && params_in_range(&q)) *p = q;
    clt__gemm_state *s = ctx->gemm;
    if (s && s->force) *algo = s->force;
}

/* ------------------------------------------------------------------------------------------ tuning */

static void shape_str(const clt__gemm_args *a, char *buf, size_t len)
{
    snprintf(buf, len, "m=%zu,n=%zu,k=%zu,ta=%d,tb=%d,batch=%zu", a->m, a->n, a->k, a->trans_a != 0,
             a->trans_b != 0, a->batch ? a->batch : 1);
}

static double dur_s(double t0)
{
    return (clt__now_ms() - t0) / 1000.0;
}

/* Scratch problem with the tuned shape (compact layout) and host copies to check results against. */
typedef struct probe {
    clt__gemm_args a;
    float *ha, *hb, *hc;
    size_t na, nb, nc;
    int algo;
    const clt__gemm_params *p;
} probe;

static void probe_free(probe *pr)
{
    if (pr->a.a) clReleaseMemObject(pr->a.a);
    if (pr->a.b) clReleaseMemObject(pr->a.b);
    if (pr->a.c) clReleaseMemObject(pr->a.c);
    free(pr->ha);
    free(pr->hb);
    free(pr->hc);
    memset(pr, 0, sizeof *pr);
}

static int probe_make(clt_context *ctx, const clt__gemm_args *shape, probe *pr)
{
    memset(pr, 0, sizeof *pr);
    clt__gemm_args *a = &pr->a;
    size_t batch = shape->batch ? shape->batch : 1;
    *a = (clt__gemm_args){.trans_a = shape->trans_a, .trans_b = shape->trans_b, .m = shape->m, .n = shape->n,
                          .k = shape->k, .alpha = 1.0f, .beta = 0.0f, .batch = batch};
    a->lda = shape->trans_a ? shape->m : shape->k;
    a->ldb = shape->trans_b ? shape->k : shape->n;
    a->ldc = shape->n;
    a->stride_a = shape->m * shape->k;
    a->stride_b = shape->k * shape->n;
    a->stride_c = shape->m * shape->n;
    pr->na = batch * a->stride_a;
    pr->nb = batch * a->stride_b;
    pr->nc = batch * a->stride_c;
    pr->ha = malloc((pr->na + 1) * sizeof(float));
    pr->hb = malloc((pr->nb + 1) * sizeof(float));
    pr->hc = malloc((pr->nc + 1) * sizeof(float));
    if (!pr->ha || !pr->hb || !pr->hc) {
        probe_free(pr);
        return clt__err(ctx, CLT_ERR_NOMEM, "out of memory for GEMM tuning data");
    }
    uint64_t seed = 0x1234567;
    for (size_t i = 0; i < pr->na; i++) pr->ha[i] = (float)(clt__uniform01(&seed) * 2 - 1);
    for (size_t i = 0; i < pr->nb; i++) pr->hb[i] = (float)(clt__uniform01(&seed) * 2 - 1);
    cl_int err;
    cl_mem *mems[3] = {&a->a, &a->b, &a->c};
    float *hs[3] = {pr->ha, pr->hb, NULL};
    size_t ns[3] = {pr->na, pr->nb, pr->nc};
    for (int i = 0; i < 3; i++) {
        *mems[i] = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE | (hs[i] ? CL_MEM_COPY_HOST_PTR : 0),
                                  (ns[i] + 1) * sizeof(float), hs[i], &err);
        if (err != CL_SUCCESS) {
            *mems[i] = NULL;
            probe_free(pr);
            return clt__cl_err(ctx, err, "clCreateBuffer(GEMM tuning data)", __FILE__, __LINE__);
        }
    }
    return CLT_OK;
}

static int probe_run(clt_context *ctx, void *ud)
{
    probe *pr = ud;
    return clt__gemm_run(ctx, &pr->a, pr->algo, pr->p);
}

/* Compares up to 256 sampled entries of C with a double host reference. Returns 1 if all are within the
 * float32 error bound of a K-term dot product, 0 otherwise (-status on error). */
static int probe_check(clt_context *ctx, probe *pr)
{
    const clt__gemm_args *a = &pr->a;
    CLT_CL(ctx, clEnqueueReadBuffer(ctx->queue, a->c, CL_TRUE, 0, pr->nc * sizeof(float), pr->hc, 0, NULL, NULL));
    uint64_t seed = 99;
    int samples = pr->nc < 256 ? (int)pr->nc : 256;
    for (int sidx = 0; sidx < samples; sidx++) {
        size_t e = pr->nc < 256 ? (size_t)sidx : (size_t)(clt__uniform01(&seed) * (double)pr->nc) % pr->nc;
        size_t bz = e / a->stride_c, r = e % a->stride_c, i = r / a->n, j = r % a->n;
        const float *A = pr->ha + bz * a->stride_a, *B = pr->hb + bz * a->stride_b;
        double sum = 0, mag = 0;
        for (size_t k = 0; k < a->k; k++) {
            double x = a->trans_a ? A[k * a->lda + i] : A[i * a->lda + k];
            double y = a->trans_b ? B[j * a->ldb + k] : B[k * a->ldb + j];
            sum += x * y;
            mag += fabs(x * y);
        }
        double tol = (1e-6 + 2.4e-7 * (double)a->k) * mag + 1e-6;
        double got = pr->hc[e];
        if (!(fabs(got - sum) <= tol)) return 0; /* also catches NaN */
    }
    return 1;
}

/* One run of a candidate on the probe (the first compiles it) checked against the reference: 1 right, 0 wrong. */
static int probe_once(clt_context *ctx, probe *pr, int algo, const clt__gemm_params *p)
{
    pr->algo = algo;
    pr->p = p;
    CLT_CL(ctx, clEnqueueFillBuffer(ctx->queue, pr->a.c, &(float){NAN}, sizeof(float), 0,
                                    pr->nc * sizeof(float), 0, NULL, NULL));
    CLT_TRY(probe_run(ctx, pr));
    CLT_CL(ctx, clFinish(ctx->queue));
    return probe_check(ctx, pr);
}

/* Measures one candidate: first run (compiles), correctness check, then timing. ms < 0: rejected. */
static int measure(clt_context *ctx, probe *pr, int algo, const clt__gemm_params *p, double flops, double *ms)
{
    int ok = probe_once(ctx, pr, algo, p);
    if (ok < 0) return ok;
    if (!ok) {
        *ms = -1;
        return CLT_OK;
    }
    /* About 0.2 s of timing per candidate, at least 3 runs. */
    double est = flops / 20e9 * 1000.0; /* ms at 20 GFLOP/s */
    int reps = est > 0 ? (int)(200.0 / est) : 10;
    if (reps < 3) reps = 3;
    if (reps > 15) reps = 15;
    return clt__tune_time(ctx, probe_run, pr, reps, ms);
}

static int own_ok(const clt__gemm_args *a, const clt__gemm_params *p)
{
    (void)a;
    (void)p;
    return 1;
}

/* Measures the candidates for a shape and records the winner. */
static int tune_shape(clt_context *ctx, const clt__gemm_args *a, const clt__tune_key *key, int *algo,
                      clt__gemm_params *best)
{
    double t0 = clt__now_ms();
    probe pr;
    CLT_TRY(probe_make(ctx, a, &pr));
    double flops = 2.0 * (double)a->m * (double)a->n * (double)a->k * (double)(a->batch ? a->batch : 1);
    int n = ctx->tune == CLT_TUNE_FULL ? NPARAMS : NQUICK;
    double best_ms = -1;
    int st = CLT_OK;
    char pstr[128], val[256];
    for (int i = -1; i < n && st == CLT_OK; i++) { /* -1: CLBlast */
        const clt__gemm_params *p = i < 0 ? NULL : &params[i];
        if (p && !own_ok(a, p)) continue;
        if (i >= 0) clt__gemm_params_str(p, pstr, sizeof pstr);
        else snprintf(pstr, sizeof pstr, "clblast");
        /* Candidates once rejected for this shape stay rejected. */
        clt__tune_key ck = {"gemm_candidate", key->source, pstr, key->shape};
        if (clt__tune_get(ctx, &ck, val, sizeof val) == 1 && strcmp(val, "rejected") == 0) continue;
        double ms = 0;
        st = measure(ctx, &pr, i < 0 ? CLT__GEMM_CLBLAST : CLT__GEMM_OWN, p, flops, &ms);
        if (st == CLT_ERR_CLBLAST || st == CLT_ERR_BUILD) { /* this candidate cannot run here: not the compile */
            clt__vlog(ctx, "tune gemm %s: %s failed (%s): rejected", key->shape, pstr, clt_errmsg(ctx));
            clt__clear_error(ctx);
            st = clt__tune_put(ctx, &ck, "rejected");
            continue;
        }
        if (st < 0) break;
        if (ms < 0) {
            clt__vlog(ctx, "tune gemm %s: %s gives wrong results: rejected", key->shape, pstr);
            st = clt__tune_put(ctx, &ck, "rejected");
            continue;
        }
        if (ctx->verbose)
            fprintf(stderr, "cltrain: tune gemm %s: %s %.3f ms (%.1f GFLOP/s)\n", key->shape, pstr, ms,
                    flops / ms * 1e-6);
        if (best_ms < 0 || ms < best_ms) {
            best_ms = ms;
            *algo = i < 0 ? CLT__GEMM_CLBLAST : CLT__GEMM_OWN;
            if (p) *best = *p;
        }
    }
    probe_free(&pr);
    clt__tune_charge(ctx, dur_s(t0));
    CLT_TRY(st);
    if (best_ms < 0) { /* nothing to record: the caller keeps its default */
        clt__vlog(ctx, "tune gemm %s: no candidate passed its check; the default is used", key->shape);
        return CLT_OK;
    }
    if (*algo == CLT__GEMM_CLBLAST) snprintf(val, sizeof val, "algo=clblast");
    else {
        clt__gemm_params_str(best, pstr, sizeof pstr);
        snprintf(val, sizeof val, "algo=own %s", pstr);
    }
    return clt__tune_put(ctx, key, val);
}

/* A cached decision is used only if the tuner could have written it: "algo=clblast", or "algo=own " and one of
 * this build's parameter sets exactly as clt__gemm_params_str prints it, with LX within the device's work-group
 * limit. NULL if valid (*algo, *p set), else what is wrong. */
static const char *check_cached(clt_context *ctx, const char *val, int *algo, clt__gemm_params *p)
{
    if (strcmp(val, "algo=clblast") == 0) {
        *algo = CLT__GEMM_CLBLAST;
        return NULL;
    }
    if (strncmp(val, "algo=own ", 9) != 0) return "neither 'algo=clblast' nor 'algo=own <parameters>'";
    clt__gemm_params q;
    char again[160];
    if (!parse_params(val + 9, &q)) return "unreadable parameters";
    clt__gemm_params_str(&q, again, sizeof again);
    if (strcmp(again, val + 9) != 0) return "malformed or extra text after the parameters";
    int shipped = 0;
    for (int i = 0; i < NPARAMS; i++) shipped |= same_params(&q, &params[i]);
    if (!shipped) return "not one of this build's GEMM parameter sets";
    if ((size_t)q.lx > ctx->info.max_work_group_size) return "LX above the device's work-group size limit";
    *algo = CLT__GEMM_OWN;
    *p = q;
    return NULL;
}

/* Cached parameter sets already checked in this process (by device, shape and value), so that each is run
 * against the reference once per process, not per context. */
static pthread_mutex_t verified_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t verified[256];
static int nverified;

static uint64_t verify_id(clt_context *ctx, const char *shape, const char *val)
{
    const char *parts[6] = {ctx->info.platform_name, ctx->info.name, ctx->info.driver_version, shape, val, "|"};
    uint64_t h = CLT__FNV_OFFSET;
    for (int i = 0; i < 6; i++) h = clt__fnv1a64(h, parts[i], strlen(parts[i]) + 1);
    return h;
}

/* The first time a cached own parameter set is used in this process it runs one small problem of the same
 * kind (transposes, batch; enough rows, columns and K to cover full and partial tiles and two K blocks)
 * against the double reference. NULL if it agrees, else why not (errors other than out-of-memory count as
 * disagreement: the caller then uses the default). */
static const char *verify_once(clt_context *ctx, const clt__gemm_args *a, const char *shape, const char *val,
                               const clt__gemm_params *p)
{
    uint64_t id = verify_id(ctx, shape, val);
    int known = 0;
    pthread_mutex_lock(&verified_mu);
    for (int i = 0; i < nverified && !known; i++) known = verified[i] == id;
    pthread_mutex_unlock(&verified_mu);
    if (known) return NULL;
    size_t nr = (size_t)p->vw * (size_t)p->nv, batch = a->batch ? a->batch : 1;
    size_t km = p->kc > 0 ? 2 * (size_t)p->kc + 3 : 67;
    clt__gemm_args sh = {.trans_a = a->trans_a, .trans_b = a->trans_b, .batch = batch < 2 ? batch : 2,
                         .m = a->m < 2 * (size_t)p->mr + 3 ? a->m : 2 * (size_t)p->mr + 3,
                         .n = a->n < 2 * nr + 5 ? a->n : 2 * nr + 5, .k = a->k < km ? a->k : km};
    probe pr;
    int st = probe_make(ctx, &sh, &pr);
    int ok = st < 0 ? st : probe_once(ctx, &pr, CLT__GEMM_OWN, p);
    if (st >= 0) probe_free(&pr);
    if (ok < 0) {
        clt__vlog(ctx, "gemm %s: checking the cached %s failed: %s", shape, val, clt_errmsg(ctx));
        clt__clear_error(ctx);
        return "running it on a small problem failed";
    }
    if (!ok) return "its output on a small problem differs from the reference";
    pthread_mutex_lock(&verified_mu);
    if (nverified < (int)(sizeof verified / sizeof verified[0])) verified[nverified++] = id;
    pthread_mutex_unlock(&verified_mu);
    return NULL;
}

static int decide(clt_context *ctx, const clt__gemm_args *a, decision **out)
{
    clt__gemm_state *s;
    CLT_TRY(state(ctx, &s));
    size_t batch = a->batch ? a->batch : 1;
    for (int i = 0; i < s->ndec; i++) {
        decision *d = &s->dec[i];
        if (d->m == a->m && d->n == a->n && d->k == a->k && d->batch == batch && d->ta == (a->trans_a != 0) &&
            d->tb == (a->trans_b != 0)) {
            *out = d;
            return CLT_OK;
        }
    }
    if (s->ndec == s->cap_dec) {
        int cap = s->cap_dec ? 2 * s->cap_dec : 16;
        decision *nd = realloc(s->dec, (size_t)cap * sizeof *nd);
        if (!nd) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
        s->dec = nd;
        s->cap_dec = cap;
    }
    decision d = {a->trans_a != 0, a->trans_b != 0, a->m, a->n, a->k, batch, 0, params[0], TEMP_UNKNOWN};
    clt__gemm_default(ctx, a, &d.algo, &d.p);
    if (!s->force && ctx->tune != CLT_TUNE_OFF) {
        CLT_TRY(clt__gemm_tune_clblast(ctx, 0));
        char shape[160], val[256];
        shape_str(a, shape, sizeof shape);
        clt__tune_key key = {"gemm", "gemm", GEMM_TUNE_VERSION, shape};
        int got = clt__tune_get(ctx, &key, val, sizeof val);
        CLT_TRY(got);
        int use = 0;
        if (got == 1) {
            int ca = 0;
            clt__gemm_params cp = d.p;
            const char *why = check_cached(ctx, val, &ca, &cp);
            if (!why && ca == CLT__GEMM_OWN) why = verify_once(ctx, a, shape, val, &cp);
            if (why) {
                clt__tune_invalid(ctx, &key, why);
            } else {
                use = 1;
                d.algo = ca;
                d.p = cp;
            }
        }
        if (!use && clt__tune_may_measure(ctx)) CLT_TRY(tune_shape(ctx, a, &key, &d.algo, &d.p));
    }
    if (ctx->verbose) {
        char pstr[128];
        clt__gemm_params_str(&d.p, pstr, sizeof pstr);
        fprintf(stderr, "cltrain: gemm m=%zu n=%zu k=%zu ta=%d tb=%d batch=%zu -> %s%s\n", a->m, a->n, a->k,
                d.ta, d.tb, batch, d.algo == CLT__GEMM_CLBLAST ? "clblast" : "own ",
                d.algo == CLT__GEMM_CLBLAST ? "" : pstr);
    }
    s->dec[s->ndec] = d;
    *out = &s->dec[s->ndec++];
    return CLT_OK;
}

int clt__gemm_decision(clt_context *ctx, const clt__gemm_args *a, int *algo, clt__gemm_params *p)
{
    decision *d;
    CLT_TRY(decide(ctx, a, &d));
    *algo = d->algo;
    *p = d->p;
    return CLT_OK;
}

size_t clt__gemm_alloc_count(const clt_context *ctx)
{
    return ctx->gemm ? ctx->gemm->allocs : 0;
}

/* CLBlast's temporary bytes for one (m, n, k) problem of any layout: 0 where it runs its direct kernel (no
 * temporaries, batched or not), else its padded copies of all three matrices, the most any offsets or leading
 * dimensions need (asked with offsets, which rule out using a matrix in place). */
static int clblast_temp_bound(clt_context *ctx, const decision *d, size_t *bytes)
{
    CLBlastStatusCode cs = CLBlastSGemmTempBufferSize(
        CLBlastLayoutRowMajor, d->ta ? CLBlastTransposeYes : CLBlastTransposeNo,
        d->tb ? CLBlastTransposeYes : CLBlastTransposeNo, d->m, d->n, d->k, 1, d->ta ? d->m : d->k, 1,
        d->tb ? d->k : d->n, 1, d->n, &ctx->queue, bytes);
    return cs == CLBlastSuccess;
}

int clt__gemm_prepare(clt_context *ctx, const clt__gemm_args *shape)
{
    decision *d;
    CLT_TRY(decide(ctx, shape, &d));
    if (d->algo == CLT__GEMM_CLBLAST && d->clblast_temp == TEMP_UNKNOWN && d->k > 0) {
        /* CLBlast's indirect GEMM copies (pads, transposes) its operands into a temporary buffer that it
         * allocates per call unless given one (its batched GEMM always allocates): size one here, for steps
         * that allocate nothing. */
        size_t bytes = 0;
        if (clblast_temp_bound(ctx, d, &bytes)) { /* else CLBlast allocates (and reports any error) */
            if (bytes > 0) CLT_TRY(ensure_ws(ctx, &ctx->gemm->ws_t, &ctx->gemm->cap_t, bytes));
            d->clblast_temp = bytes;
        }
    }
    if (d->algo != CLT__GEMM_OWN) return CLT_OK;
    clt__gemm_state *s = ctx->gemm;
    own_kernels *k;
    CLT_TRY(get_kernels(ctx, s, &d->p, &k));
    own_plan pl;
    plan(shape, &d->p, &pl);
    size_t batch = shape->batch ? shape->batch : 1;
    CLT_TRY(ensure_ws(ctx, &s->ws_a, &s->cap_a, batch * pl.ap_stride * sizeof(float)));
    if (pl.ntail) CLT_TRY(ensure_ws(ctx, &s->ws_b, &s->cap_b, batch * pl.bp_stride * sizeof(float)));
    return CLT_OK;
}

int clt__gemm(clt_context *ctx, const clt__gemm_args *a)
{
    if (a->m == 0 || a->n == 0) return CLT_OK;
    decision *d;
    CLT_TRY(decide(ctx, a, &d));
    clt__gemm_state *s = ctx->gemm;
    if (d->algo == CLT__GEMM_CLBLAST && a->k > 0) {
        /* Known to need no temporaries: CLBlast's direct kernels, batched or not, allocate nothing. */
        if (d->clblast_temp == 0) return clt__gemm_run(ctx, a, d->algo, &d->p);
        if (d->clblast_temp != TEMP_UNKNOWN && d->clblast_temp <= s->cap_t) {
            /* CLBlast has no batched GEMM with a caller's temporary buffer: the entries run one by one on the
             * prepared one (the in-order queue keeps them from sharing it at the same time). */
            size_t batch = a->batch ? a->batch : 1, i;
            CLBlastStatusCode st = CLBlastSuccess;
            for (i = 0; i < batch && st == CLBlastSuccess; i++)
                st = CLBlastSgemmWithTempBuffer(
                    CLBlastLayoutRowMajor, a->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                    a->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, a->m, a->n, a->k, a->alpha, a->a,
                    a->off_a + i * a->stride_a, a->lda, a->b, a->off_b + i * a->stride_b, a->ldb, a->beta, a->c,
                    a->off_c + i * a->stride_c, a->ldc, &ctx->queue, NULL, s->ws_t);
            if (st == CLBlastSuccess) s->temp_calls += batch;
            /* Every entry needs the same size, which CLBlast checks before it enqueues anything: a too small
             * buffer fails the first entry, with nothing computed yet. */
            if (st != CLBlastInsufficientMemoryTemp || i != 1)
                return st == CLBlastSuccess ? CLT_OK : clblast_err(ctx, st, "CLBlastSgemmWithTempBuffer", a);
            d->clblast_temp = TEMP_UNKNOWN; /* CLBlast's parameters changed since prepare: let it allocate */
        }
        s->allocs++; /* without a size for its temporaries, CLBlast may allocate them in this call */
    }
    return clt__gemm_run(ctx, a, d->algo, &d->p);
}

/* ------------------------------------------------------------------------------------------ CLBlast params */

static const char *xgemm_names[] = {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
                                    "NDIMC", "NWG", "SA", "SB", "STRM", "STRN", "VWM", "VWN"};
/* Moderate register tiles only (MWG/MDIMC x NWG/NDIMC <= 64 per work-item): bigger ones take POCL minutes
 * to compile. The first is close to CLBlast's generic default. */
static const size_t xgemm_cands[][16] = {
    {0, 1, 32, 2, 16, 16, 64, 16, 16, 64, 0, 0, 1, 0, 2, 2},
    {0, 1, 16, 2, 8, 8, 32, 8, 8, 64, 0, 0, 0, 0, 4, 8},
    {0, 1, 16, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4},
    {0, 1, 16, 2, 4, 4, 16, 4, 4, 32, 0, 0, 0, 0, 4, 8},
};
static const char *direct_names[] = {"KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB",
                                     "VWMD", "VWND", "WGD"};
static const size_t direct_cands[][10] = {
    {2, 8, 8, 8, 8, 1, 1, 1, 1, 32},
    {2, 4, 4, 4, 4, 1, 1, 4, 4, 32},
    {8, 8, 8, 8, 8, 1, 1, 4, 4, 64},
    {2, 4, 4, 4, 4, 1, 1, 4, 4, 16},
};
#define NXG ((int)(sizeof xgemm_cands / sizeof xgemm_cands[0]))
#define NXD ((int)(sizeof direct_cands / sizeof direct_cands[0]))
#define CLBLAST_TUNE_VERSION "clblast-v1"

/* CLBlast's overrides are process-wide (per device) and cannot be dropped again (its C API has no way back to
 * the built-in database). So overrides are applied and measured under one process-wide lock, and the library
 * records which set is active per device: whatever happens while measuring, the device is left with a set
 * chosen on purpose (the best one measured, else the one active before). */
static pthread_mutex_t clblast_mu = PTHREAD_MUTEX_INITIALIZER;
typedef struct clblast_active {
    cl_device_id dev;
    int set[2]; /* Xgemm, XgemmDirect; -1: built-in */
} clblast_active;
static clblast_active active[16];
static int nactive;

/* The record of dev (clblast_mu held); NULL when the table is full (then nothing can be restored). */
static clblast_active *active_of(cl_device_id dev)
{
    for (int i = 0; i < nactive; i++)
        if (active[i].dev == dev) return &active[i];
    if (nactive == (int)(sizeof active / sizeof active[0])) return NULL;
    active[nactive] = (clblast_active){dev, {-1, -1}};
    return &active[nactive++];
}

void clt__gemm_clblast_active(clt_context *ctx, int *xgemm, int *direct)
{
    pthread_mutex_lock(&clblast_mu);
    clblast_active *r = active_of(ctx->dev);
    *xgemm = r ? r->set[0] : -1;
    *direct = r ? r->set[1] : -1;
    pthread_mutex_unlock(&clblast_mu);
}

/* Applies set xg of Xgemm and xd of XgemmDirect (-1: leave that kernel as it is). clblast_mu held. */
static int clblast_apply(clt_context *ctx, int xg, int xd)
{
    CLBlastStatusCode s;
    clblast_active *r = active_of(ctx->dev);
    if (xg >= 0) {
        s = CLBlastOverrideParameters(ctx->dev, "Xgemm", CLBlastPrecisionSingle, 16, xgemm_names, xgemm_cands[xg]);
        if (s != CLBlastSuccess)
            return clt__err(ctx, CLT_ERR_CLBLAST, "CLBlastOverrideParameters(Xgemm, set %d) failed: status %d", xg,
                            (int)s);
        if (r) r->set[0] = xg;
    }
    if (xd >= 0) {
        s = CLBlastOverrideParameters(ctx->dev, "XgemmDirect", CLBlastPrecisionSingle, 10, direct_names,
                                      direct_cands[xd]);
        if (s != CLBlastSuccess)
            return clt__err(ctx, CLT_ERR_CLBLAST, "CLBlastOverrideParameters(XgemmDirect, set %d) failed: status %d",
                            xd, (int)s);
        if (r) r->set[1] = xd;
    }
    return CLT_OK;
}

/* Times CLBlast on a probe under parameter set `idx` (-1: what is active now). ms < 0: rejected. */
static int clblast_try(clt_context *ctx, probe *pr, int direct, int idx, double *ms)
{
    int st = idx >= 0 ? clblast_apply(ctx, direct ? -1 : idx, direct ? idx : -1) : CLT_OK;
    double flops = 2.0 * (double)pr->a.m * (double)pr->a.n * (double)pr->a.k;
    if (st == CLT_OK) st = measure(ctx, pr, CLT__GEMM_CLBLAST, NULL, flops, ms);
    if (st == CLT_ERR_CLBLAST || st == CLT_ERR_BUILD) { /* an invalid set for this device */
        clt__clear_error(ctx);
        *ms = -1;
        return CLT_OK;
    }
    return st;
}

/* A cached "xgemm=X direct=D" is used only as the tuner writes it, with X and D naming candidates or -1. */
static int parse_clblast(const char *val, int *xg, int *xd)
{
    char again[64];
    if (sscanf(val, "xgemm=%d direct=%d", xg, xd) != 2 || *xg < -1 || *xg >= NXG || *xd < -1 || *xd >= NXD) return 0;
    snprintf(again, sizeof again, "xgemm=%d direct=%d", *xg, *xd);
    return strcmp(again, val) == 0;
}

/* Measures the built-in entry and each candidate of both kernels; choice[w] = best candidate or -1. */
static int clblast_measure(clt_context *ctx, double base[2], double best[2], int choice[2])
{
    /* Xgemm serves large problems, XgemmDirect small ones: one representative shape each. */
    static const size_t shapes[2][3] = {{512, 512, 512}, {64, 576, 64}};
    int st = CLT_OK;
    for (int w = 0; w < 2 && st == CLT_OK; w++) {
        clt__gemm_args sh = {.m = shapes[w][0], .n = shapes[w][1], .k = shapes[w][2], .batch = 1};
        probe pr;
        st = probe_make(ctx, &sh, &pr);
        if (st < 0) break;
        st = clblast_try(ctx, &pr, w, -1, &base[w]);
        for (int i = 0; st == CLT_OK && i < (w ? NXD : NXG); i++) {
            double ms;
            st = clblast_try(ctx, &pr, w, i, &ms);
            if (st == CLT_OK)
                clt__vlog(ctx, "tune clblast %s set %d: %.3f ms (built-in %.3f ms)", w ? "XgemmDirect" : "Xgemm", i,
                          ms, base[w]);
            if (st == CLT_OK && ms >= 0 && (best[w] < 0 || ms < best[w])) {
                best[w] = ms;
                choice[w] = i;
            }
        }
        probe_free(&pr);
    }
    return st;
}

static int tune_clblast_locked(clt_context *ctx, clt__gemm_state *s, int force_measure)
{
    clt__tune_key key = {"clblast_xgemm", NULL, CLBLAST_TUNE_VERSION, "device"};
    char val[128];
    int got = clt__tune_get(ctx, &key, val, sizeof val);
    CLT_TRY(got);
    int xg = -1, xd = -1;
    if (got == 1 && parse_clblast(val, &xg, &xd)) {
        s->clblast_done = 1;
        return clblast_apply(ctx, xg, xd);
    }
    if (got == 1) clt__tune_invalid(ctx, &key, "not 'xgemm=X direct=D' with X and D candidates of this build or -1");
    /* CPU devices get the own kernel; their CLBlast parameters are measured only when asked (FULL mode or
     * the bench tool), because each candidate costs a CLBlast kernel compile. */
    int want = force_measure || ctx->tune == CLT_TUNE_FULL || (!ctx->info.is_cpu && ctx->tune == CLT_TUNE_QUICK);
    if (!want || !clt__tune_may_measure(ctx)) return CLT_OK;
    s->clblast_done = 1;
    double t0 = clt__now_ms();
    clblast_active *r = active_of(ctx->dev);
    int before[2] = {r ? r->set[0] : -1, r ? r->set[1] : -1};
    /* The built-in entry is measured first; an override cannot be undone, so once one is tried the best
     * candidate stays applied even when the built-in entry was faster (reported as such). */
    double base[2] = {-1, -1}, best[2] = {-1, -1};
    int choice[2] = {-1, -1};
    int st = clblast_measure(ctx, base, best, choice);
    clt__tune_charge(ctx, dur_s(t0));
    /* Every path, the error ones too: the best set measured, else the one active before. */
    int keep[2] = {choice[0] >= 0 ? choice[0] : before[0], choice[1] >= 0 ? choice[1] : before[1]};
    char msg[sizeof ctx->errmsg];
    snprintf(msg, sizeof msg, "%s", ctx->errmsg);
    int rst = clblast_apply(ctx, keep[0], keep[1]);
    if (st < 0) {
        snprintf(ctx->errmsg, sizeof ctx->errmsg, "%s", msg); /* the measuring error is the one to report */
        return st;
    }
    CLT_TRY(rst);
    if (base[0] < 0 && best[0] < 0 && base[1] < 0 && best[1] < 0) {
        clt__vlog(ctx, "tune clblast: nothing ran; no decision recorded");
        return CLT_OK;
    }
    /* Record "-1" when the built-in entry was as good, so that later processes leave CLBlast's database alone. */
    int rec0 = choice[0] >= 0 && (base[0] < 0 || best[0] < 0.97 * base[0]) ? choice[0] : -1;
    int rec1 = choice[1] >= 0 && (base[1] < 0 || best[1] < 0.97 * base[1]) ? choice[1] : -1;
    snprintf(val, sizeof val, "xgemm=%d direct=%d", rec0, rec1);
    return clt__tune_put(ctx, &key, val);
}

int clt__gemm_tune_clblast(clt_context *ctx, int force_measure)
{
    clt__gemm_state *s = NULL;
    CLT_TRY(state(ctx, &s));
    if (s->clblast_done) return CLT_OK;
    pthread_mutex_lock(&clblast_mu);
    int st = tune_clblast_locked(ctx, s, force_measure);
    pthread_mutex_unlock(&clblast_mu);
    return st;
}

unsigned long clt__gemm_clblast_temp_calls(clt_context *ctx)
{
    return ctx && ctx->gemm ? ctx->gemm->temp_calls : 0;
}

void clt__gemm_release(clt_context *ctx)
{
    clt__gemm_state *s = ctx->gemm;
    if (!s) return;
    for (int i = 0; i < s->nks; i++) {
        clReleaseKernel(s->ks[i].pack_a);
        clReleaseKernel(s->ks[i].pack_b);
        clReleaseKernel(s->ks[i].tile);
    }
    if (s->ws_a) clReleaseMemObject(s->ws_a);
    if (s->ws_b) clReleaseMemObject(s->ws_b);
    if (s->ws_t) clReleaseMemObject(s->ws_t);
    free(s->dec);
    free(s);
    ctx->gemm = NULL;
}
