/* test_gemm.c - the own GEMM kernels (every shipped parameter set), CLBlast and the tuned dispatch vs a double reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "testutil.h"

typedef struct gcase {
    int ta, tb;
    size_t m, n, k, batch;
    float alpha, beta;
    size_t pad;  /* extra elements per row of A, B and C (lda > minimum) */
    size_t off;  /* leading offset of every matrix */
} gcase;

typedef struct gdata {
    clt__gemm_args a;
    float *ha, *hb, *hc0;
    double *ref;
    size_t na, nb, nc;
} gdata;

static void make(clt_context *ctx, const gcase *c, tu_rng *rng, gdata *d)
{
    memset(d, 0, sizeof *d);
    clt__gemm_args *a = &d->a;
    size_t ra = c->ta ? c->k : c->m, ca = c->ta ? c->m : c->k;
    size_t rb = c->tb ? c->n : c->k, cb = c->tb ? c->k : c->n;
    *a = (clt__gemm_args){.trans_a = c->ta, .trans_b = c->tb, .m = c->m, .n = c->n, .k = c->k, .alpha = c->alpha,
                          .beta = c->beta, .batch = c->batch};
    a->lda = ca + c->pad;
    a->ldb = cb + c->pad;
    a->ldc = c->n + c->pad;
    a->stride_a = ra * a->lda + 3;
    a->stride_b = rb * a->ldb + 5;
    a->stride_c = c->m * a->ldc + 7;
    a->off_a = a->off_b = a->off_c = c->off;
    d->na = c->off + c->batch * a->stride_a;
    d->nb = c->off + c->batch * a->stride_b;
    d->nc = c->off + c->batch * a->stride_c;
    d->ha = malloc(d->na * sizeof(float));
    d->hb = malloc(d->nb * sizeof(float));
    d->hc0 = malloc(d->nc * sizeof(float));
    d->ref = malloc(d->nc * sizeof(double));
    tu_fill_uniform(rng, d->ha, d->na, -1, 1);
    tu_fill_uniform(rng, d->hb, d->nb, -1, 1);
    tu_fill_uniform(rng, d->hc0, d->nc, -1, 1);
    for (size_t i = 0; i < d->nc; i++) d->ref[i] = d->hc0[i]; /* untouched padding must stay as it was */
    for (size_t bz = 0; bz < c->batch; bz++) {
        const float *A = d->ha + c->off + bz * a->stride_a, *B = d->hb + c->off + bz * a->stride_b;
        const float *C0 = d->hc0 + c->off + bz * a->stride_c;
        double *R = d->ref + c->off + bz * a->stride_c;
        for (size_t i = 0; i < c->m; i++)
            for (size_t j = 0; j < c->n; j++) {
                double s = 0;
                for (size_t k = 0; k < c->k; k++)
                    s += (double)(c->ta ? A[k * a->lda + i] : A[i * a->lda + k]) *
                         (double)(c->tb ? B[j * a->ldb + k] : B[k * a->ldb + j]);
                R[i * a->ldc + j] = c->alpha * s + (c->beta != 0 ? c->beta * (double)C0[i * a->ldc + j] : 0);
            }
    }
    cl_context cl;
    clt_context_cl(ctx, &cl, NULL, NULL);
    cl_int e;
    a->a = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, d->na * sizeof(float), d->ha, &e);
    a->b = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, d->nb * sizeof(float), d->hb, &e);
    a->c = clCreateBuffer(cl, CL_MEM_READ_WRITE, d->nc * sizeof(float), NULL, &e);
}

static void release(gdata *d)
{
    clReleaseMemObject(d->a.a);
    clReleaseMemObject(d->a.b);
    clReleaseMemObject(d->a.c);
    free(d->ha);
    free(d->hb);
    free(d->hc0);
    free(d->ref);
}

/* Runs (algo, p) on d (C reset first) and returns C in got (nc floats). */
static int run(clt_context *ctx, gdata *d, int algo, const clt__gemm_params *p, int dispatch, float *got)
{
    cl_command_queue q;
    clt_context_cl(ctx, NULL, NULL, &q);
    clEnqueueWriteBuffer(q, d->a.c, CL_TRUE, 0, d->nc * sizeof(float), d->hc0, 0, NULL, NULL);
    int st = dispatch ? clt__gemm(ctx, &d->a) : clt__gemm_run(ctx, &d->a, algo, p);
    if (!TU_OK(ctx, st)) return 0;
    return clEnqueueReadBuffer(q, d->a.c, CL_TRUE, 0, d->nc * sizeof(float), got, 0, NULL, NULL) == CL_SUCCESS;
}

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    tu_rng rng = {2024};
    const gcase cases[] = {
        {0, 0, 1, 1, 1, 1, 1.0f, 0.0f, 0, 0},
        {0, 0, 7, 13, 5, 1, 1.0f, 0.0f, 0, 0},
        {0, 0, 65, 33, 129, 1, 1.0f, 0.0f, 0, 0},
        {1, 0, 65, 33, 129, 1, 1.0f, 0.0f, 0, 0},
        {0, 1, 65, 33, 129, 1, 1.0f, 0.0f, 0, 0},
        {1, 1, 65, 33, 129, 1, 1.0f, 0.0f, 0, 0},
        {0, 0, 17, 40, 9, 1, 1.5f, -0.5f, 3, 11},  /* alpha/beta, padded lds, offsets */
        {1, 1, 9, 19, 31, 1, -2.0f, 1.0f, 2, 5},
        {0, 1, 10, 21, 6, 3, 0.5f, 2.0f, 1, 4},    /* strided batch */
        {1, 0, 5, 48, 3, 2, 1.0f, 0.0f, 0, 0},
        {0, 0, 4, 7, 0, 1, 1.0f, 0.5f, 0, 0},      /* K = 0: C = beta C */
    };
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    /* Every shipped parameter set plus variants that exercise K blocking and direct B reads. */
    int np = clt__gemm_num_params();
    clt__gemm_params extra[2] = {*clt__gemm_param(0), *clt__gemm_param(0)};
    extra[0].kc = 16;
    extra[0].db = 1;
    extra[1].kc = 7;
    extra[1].db = 0;
    extra[1].lx = 4;
    for (int ci = 0; ci < ncases; ci++) {
        gdata d;
        make(ctx, &cases[ci], &rng, &d);
        float *got = malloc(d.nc * sizeof(float));
        char what[160];
        /* alpha * (K products of values in [-1, 1]) + beta * C: see the tolerance notes in testutil.h */
        double mag = fmax(1, fmax(fabs(cases[ci].alpha), fabs(cases[ci].beta)));
        double rtol = tu_sum_rtol((double)cases[ci].k + 1), atol = tu_sum_atol((double)cases[ci].k + 1, mag);
        for (int pi = 0; pi < np + 2; pi++) {
            const clt__gemm_params *p = pi < np ? clt__gemm_param(pi) : &extra[pi - np];
            char ps[96];
            clt__gemm_params_str(p, ps, sizeof ps);
            snprintf(what, sizeof what, "own case %d [%s]", ci, ps);
            if (run(ctx, &d, CLT__GEMM_OWN, p, 0, got)) tu_close(what, got, d.ref, d.nc, rtol, atol);
        }
        snprintf(what, sizeof what, "clblast case %d", ci);
        if (run(ctx, &d, CLT__GEMM_CLBLAST, NULL, 0, got)) tu_close(what, got, d.ref, d.nc, rtol, atol);
        snprintf(what, sizeof what, "dispatch case %d", ci);
        if (run(ctx, &d, 0, NULL, 1, got)) tu_close(what, got, d.ref, d.nc, rtol, atol);
        free(got);
        release(&d);
    }

    /* Tuned vs untuned: a QUICK-tuned context (cache in the test's folder) must give the same results. */
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.tune = CLT_TUNE_QUICK;
    s.tune_budget_s = 30;
    clt_context *tctx = NULL;
    if (TU_OK(tctx, clt_context_create(&s, &tctx))) {
        const gcase tc[] = {{0, 1, 40, 70, 50, 1, 1.0f, 0.0f, 0, 0}, {1, 0, 24, 100, 33, 2, 1.0f, 1.0f, 0, 0}};
        for (int ci = 0; ci < 2; ci++) {
            gdata du, dt;
            tu_rng r1 = {77 + (uint64_t)ci}, r2 = {77 + (uint64_t)ci};
            make(ctx, &tc[ci], &r1, &du);
            make(tctx, &tc[ci], &r2, &dt);
            TU_OK(tctx, clt__gemm_prepare(tctx, &dt.a));
            int algo = -1;
            clt__gemm_params p;
            TU_OK(tctx, clt__gemm_decision(tctx, &dt.a, &algo, &p));
            TU_CHECK(algo == CLT__GEMM_OWN || algo == CLT__GEMM_CLBLAST, "tuned decision %d", algo);
            float *gu = malloc(du.nc * sizeof(float)), *gt = malloc(dt.nc * sizeof(float));
            if (run(ctx, &du, 0, NULL, 1, gu) && run(tctx, &dt, 0, NULL, 1, gt)) {
                char what[64];
                snprintf(what, sizeof what, "tuned case %d vs reference", ci);
                double rtol = tu_sum_rtol((double)tc[ci].k + 1), atol = tu_sum_atol((double)tc[ci].k + 1, 1);
                tu_close(what, gt, dt.ref, dt.nc, rtol, atol);
                snprintf(what, sizeof what, "tuned case %d vs untuned", ci);
                tu_close_f(what, gt, gu, dt.nc, 2 * rtol, 2 * atol); /* both carry rounding errors */
            }
            free(gu);
            free(gt);
            release(&du);
            release(&dt);
        }
    }
    clt_context_destroy(tctx);
    clt_context_destroy(ctx);
    return tu_finish("test_gemm");
}
