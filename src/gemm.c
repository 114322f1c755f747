/* gemm.c - the library's GEMM entry point: row-major, batched, dispatched to CLBlast. */
#include <clblast_c.h>
#include <stdlib.h>

#include "internal.h"

static int clblast_err(clt_context *ctx, CLBlastStatusCode s, const char *what, const clt__gemm_args *a)
{
    int st = CLT_ERR_CLBLAST;
    if (s == CLBlastOpenCLOutOfResources || s == CLBlastTempBufferAllocFailure || s == CLBlastInsufficientMemoryTemp)
        st = CLT_ERR_DEVICE_MEMORY;
    return clt__err(ctx, st, "%s (m=%zu n=%zu k=%zu batch=%zu) failed: CLBlast status %d", what, a->m, a->n, a->k,
                    a->batch, (int)s);
}

int clt__gemm(clt_context *ctx, const clt__gemm_args *a)
{
    if (a->m == 0 || a->n == 0) return CLT_OK;
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

void clt__gemm_release(clt_context *ctx)
{
    (void)ctx;
}
