/* test_gemm_alloc.c - "a training step allocates nothing" on the CLBlast path (CLTRAIN_GEMM=clblast), including
 * the batched GEMMs of the im2col weight gradient split and GEMMs with offsets, with CLBlast made to use its
 * indirect kernels (temporary buffers) for all but tiny problems; and what those GEMMs compute. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <clblast_c.h>

#include "gemm.h"
#include "testutil.h"

/* CLBlast runs its direct kernel (no temporaries) below m*n*k = XGEMM_MIN_INDIRECT_SIZE^3; on POCL that is
 * about 896^3, so without this override the ops' GEMMs would never need a temporary buffer. Process-wide
 * for the device, which is why this test has a process of its own. */
static int force_indirect(clt_context *ctx)
{
    cl_device_id dev;
    if (!TU_OK(ctx, clt_context_cl(ctx, NULL, &dev, NULL))) return 0;
    const char *names[1] = {"XGEMM_MIN_INDIRECT_SIZE"};
    const size_t vals[1] = {16};
    CLBlastStatusCode s = CLBlastOverrideParameters(dev, "GemmRoutine", CLBlastPrecisionSingle, 1, names, vals);
    TU_CHECK(s == CLBlastSuccess, "CLBlastOverrideParameters(GemmRoutine) failed: %d", (int)s);
    return s == CLBlastSuccess;
}

static cl_mem upload(clt_context *ctx, const float *h, size_t n)
{
    cl_context cl;
    cl_command_queue q;
    clt_context_cl(ctx, &cl, NULL, &q);
    cl_int err;
    cl_mem m = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof(float), (void *)h, &err);
    TU_CHECK(err == CL_SUCCESS, "clCreateBuffer: %d", (int)err);
    return err == CL_SUCCESS ? m : NULL;
}

/* A batched GEMM with offsets, strides and padded rows through clt__gemm (prepared first), against double:
 * checks the entry-by-entry temp-buffer path, and that after prepare the call allocates nothing. */
static void check_batched(clt_context *ctx)
{
    enum { M = 13, N = 17, K = 19, B = 3, PAD = 2, OFF = 3 }; /* m*n*k >= 16^3: indirect, with temporaries */
    size_t lda = M + PAD, ldb = K + PAD, ldc = N + PAD; /* A^T stored (K, M), B^T stored (N, K) */
    size_t sa = K * lda + 1, sb = N * ldb + 2, sc = M * ldc + 3;
    size_t na = OFF + B * sa, nb = OFF + B * sb, nc = OFF + B * sc;
    float *ha = malloc(na * sizeof(float)), *hb = malloc(nb * sizeof(float)), *hc = malloc(nc * sizeof(float));
    float *got = malloc(nc * sizeof(float));
    if (!ha || !hb || !hc || !got) {
        TU_CHECK(0, "out of host memory");
        goto out;
    }
    tu_rng r = {11};
    tu_fill_uniform(&r, ha, na, -1, 1);
    tu_fill_uniform(&r, hb, nb, -1, 1);
    tu_fill_uniform(&r, hc, nc, -1, 1);
    cl_mem a = upload(ctx, ha, na), b = upload(ctx, hb, nb), c = upload(ctx, hc, nc);
    clt__gemm_args g = {.trans_a = 1, .trans_b = 1, .m = M, .n = N, .k = K, .alpha = 0.75f, .beta = 0.5f, .a = a,
                        .b = b, .c = c, .off_a = OFF, .off_b = OFF, .off_c = OFF, .lda = lda, .ldb = ldb, .ldc = ldc,
                        .stride_a = sa, .stride_b = sb, .stride_c = sc, .batch = B};
    if (a && b && c && TU_OK(ctx, clt__gemm_prepare(ctx, &g))) {
        size_t before = clt__gemm_alloc_count(ctx);
        TU_OK(ctx, clt__gemm(ctx, &g));
        TU_CHECK(clt__gemm_alloc_count(ctx) == before, "a prepared batched CLBlast GEMM allocated (%zu -> %zu)",
                 before, clt__gemm_alloc_count(ctx));
        cl_command_queue q;
        clt_context_cl(ctx, NULL, NULL, &q);
        TU_CHECK(clEnqueueReadBuffer(q, c, CL_TRUE, 0, nc * sizeof(float), got, 0, NULL, NULL) == CL_SUCCESS, "read C");
        double worst = 0;
        for (size_t e = 0; e < B; e++)
            for (size_t i = 0; i < M; i++)
                for (size_t j = 0; j < N; j++) {
                    double s = 0;
                    for (size_t k = 0; k < K; k++)
                        s += (double)ha[OFF + e * sa + k * lda + i] * hb[OFF + e * sb + j * ldb + k];
                    size_t o = OFF + e * sc + i * ldc + j;
                    double want = 0.75 * s + 0.5 * hc[o];
                    worst = fmax(worst, fabs(want - got[o]) / (1e-5 + 1e-4 * fabs(want)));
                }
        /* Outside the matrices (offsets, padding, stride gaps) nothing may change. */
        int untouched = 1;
        for (size_t o = 0; o < nc; o++) {
            size_t rel = o < OFF ? sc : (o - OFF) % sc, e = o < OFF ? B : (o - OFF) / sc;
            int inside = e < B && rel < M * ldc && rel % ldc < N;
            if (!inside && memcmp(&got[o], &hc[o], sizeof(float)) != 0) untouched = 0;
        }
        TU_CHECK(worst <= 1, "batched CLBlast GEMM with temp buffer: error %.3g x tolerance", worst);
        TU_CHECK(untouched, "batched CLBlast GEMM wrote outside its matrices");
        printf("ok   batched CLBlast GEMM (batch %d, offsets, padded rows) on a prepared temp buffer\n", B);
    }
    if (a) clReleaseMemObject(a);
    if (b) clReleaseMemObject(b);
    if (c) clReleaseMemObject(c);
    /* The counter is real: the same GEMM on a shape nobody prepared lets CLBlast allocate. */
    {
        cl_mem a2 = upload(ctx, ha, na), b2 = upload(ctx, hb, nb), c2 = upload(ctx, hc, nc);
        clt__gemm_args u = g;
        u.a = a2, u.b = b2, u.c = c2, u.batch = B - 1; /* another shape (decisions are per batch too) */
        size_t before = clt__gemm_alloc_count(ctx);
        if (a2 && b2 && c2) TU_OK(ctx, clt__gemm(ctx, &u));
        TU_CHECK(clt__gemm_alloc_count(ctx) > before, "an unprepared indirect CLBlast GEMM was not counted");
        if (a2) clReleaseMemObject(a2);
        if (b2) clReleaseMemObject(b2);
        if (c2) clReleaseMemObject(c2);
    }
out:
    free(ha), free(hb), free(hc), free(got);
}

/* x (2,2,91,91): N*OH*OW = 16562, so both im2col weight gradients run as 4 batched split-k GEMMs plus a
 * 2-column remainder at an offset. Four training steps: their losses, the convolution weight gradients of
 * the last one, and the allocation counts after compile, after the first step and after the last. */
typedef struct run_out {
    float loss[4];
    float dw0[4 * 2 * 9], dw1[4 * 4 * 9];
    size_t after_compile, after_first, after_last;
} run_out;

static int train(clt_context *ctx, run_out *o)
{
    enum { STEPS = 4 };
    int xs[4] = {2, 2, 91, 91}, ls[1] = {2};
    clt_graph *g = NULL;
    clt_tensor *x, *lab, *y, *c0, *c1, *loss;
    clt_conv2d_params p;
    clt_conv2d_default_params(&p, 4, 3);
    p.pad_h = p.pad_w = 1;
    int ok = TU_OK(ctx, clt_graph_create(ctx, &g)) && TU_OK(ctx, clt_input(g, "x", 4, xs, &x)) &&
             TU_OK(ctx, clt_input(g, "labels", 1, ls, &lab)) && TU_OK(ctx, clt_conv2d(g, x, &p, "c0", &c0)) &&
             TU_OK(ctx, clt_relu(g, c0, &y)) && TU_OK(ctx, clt_conv2d(g, y, &p, "c1", &c1)) &&
             TU_OK(ctx, clt_relu(g, c1, &y)) && TU_OK(ctx, clt_avg_pool2d(g, y, 7, 7, 0, &y)) &&
             TU_OK(ctx, clt_flatten(g, y, &y)) && TU_OK(ctx, clt_dense(g, y, 32, 1, 0, "d0", &y)) &&
             TU_OK(ctx, clt_relu(g, y, &y)) && TU_OK(ctx, clt_dense(g, y, 3, 1, 0, "d1", &y)) &&
             TU_OK(ctx, clt_softmax_cross_entropy(g, y, lab, 0, &loss)) && TU_OK(ctx, clt_graph_compile(g, NULL));
    size_t nx = 2 * 2 * 91 * 91;
    float *xd = malloc(nx * sizeof(float)), labels[2] = {0, 2};
    ok = ok && xd;
    if (ok) {
        tu_rng r = {3};
        tu_fill_uniform(&r, xd, nx, -1, 1);
        o->after_compile = clt__gemm_alloc_count(ctx);
        ok = TU_OK(ctx, clt_tensor_write(g, x, xd, nx)) && TU_OK(ctx, clt_tensor_write(g, lab, labels, 2));
    }
    for (int s = 0; ok && s < STEPS; s++) {
        ok = TU_OK(ctx, clt_graph_forward(g, 1)) && TU_OK(ctx, clt_graph_backward(g, loss)) &&
             TU_OK(ctx, clt_tensor_read(g, loss, 0, &o->loss[s], 1)) && TU_OK(ctx, clt_graph_step(g, 0.05f)) &&
             TU_OK(ctx, clt_context_finish(ctx));
        if (s == 0) o->after_first = clt__gemm_alloc_count(ctx);
    }
    o->after_last = clt__gemm_alloc_count(ctx);
    for (int i = 0; ok && i < clt_graph_state_count(g); i++) {
        clt_tensor *t = clt_graph_state_tensor(g, i, NULL);
        if (!strcmp(clt_tensor_name(t), "c0.weight")) ok = TU_OK(ctx, clt_tensor_read(g, t, 1, o->dw0, 4 * 2 * 9));
        if (!strcmp(clt_tensor_name(t), "c1.weight")) ok = TU_OK(ctx, clt_tensor_read(g, t, 1, o->dw1, 4 * 4 * 9));
    }
    free(xd);
    clt_graph_destroy(g);
    return ok;
}

static clt_context *context_with(const char *gemm)
{
    setenv("CLTRAIN_GEMM", gemm, 1); /* read when the context's GEMM state is made */
    return tu_context();
}

int main(void)
{
    setenv("CLTRAIN_CONV_ALGO", "im2col", 1); /* convolutions through GEMMs */
    clt_context *ctx = context_with("clblast");
    if (!ctx) return 1;
    run_out cb, own;
    memset(&cb, 0, sizeof cb);
    memset(&own, 0, sizeof own);
    if (force_indirect(ctx)) {
        check_batched(ctx);
        if (train(ctx, &cb)) {
            printf("     CLBlast: %zu allocations after compile, %zu after step 1, %zu after step 4; loss %.5f -> %.5f\n",
                   cb.after_compile, cb.after_first, cb.after_last, cb.loss[0], cb.loss[3]);
            TU_CHECK(cb.after_first == cb.after_compile && cb.after_last == cb.after_compile,
                     "training steps on the CLBlast path allocated: %zu after compile, %zu after step 1, %zu after "
                     "step 4", cb.after_compile, cb.after_first, cb.after_last);
        }
    }
    clt_context_destroy(ctx);
    /* The same steps on the own kernels: the CLBlast path (entry by entry on the temp buffer) computes them. */
    ctx = context_with("own");
    if (!ctx) return 1;
    if (train(ctx, &own)) {
        TU_CHECK(own.after_last == own.after_compile, "training steps on the own kernels allocated (%zu -> %zu)",
                 own.after_compile, own.after_last);
        for (int s = 0; s < 4; s++)
            TU_CHECK(fabs(cb.loss[s] - own.loss[s]) <= 1e-4 * (1 + fabs(own.loss[s])), "step %d: loss %.7f (CLBlast) vs "
                     "%.7f (own)", s + 1, cb.loss[s], own.loss[s]);
        double e0 = 0, e1 = 0, m0 = 0, m1 = 0;
        for (int i = 0; i < 4 * 2 * 9; i++) e0 = fmax(e0, fabs(cb.dw0[i] - own.dw0[i])), m0 = fmax(m0, fabs(own.dw0[i]));
        for (int i = 0; i < 4 * 4 * 9; i++) e1 = fmax(e1, fabs(cb.dw1[i] - own.dw1[i])), m1 = fmax(m1, fabs(own.dw1[i]));
        TU_CHECK(m0 > 0 && e0 <= 1e-4 * m0 + 1e-6, "c0 weight gradient: CLBlast vs own differ by %.3g (max %.3g)", e0, m0);
        TU_CHECK(m1 > 0 && e1 <= 1e-4 * m1 + 1e-6, "c1 weight gradient: CLBlast vs own differ by %.3g (max %.3g)", e1, m1);
    }
    clt_context_destroy(ctx);
    return tu_finish("test_gemm_alloc");
}
