/* gemm.cl - the library's own SGEMM for CPU-like devices: pack A/B into panels, then register-blocked tiles. */

/* Tunables. A work-item computes MR rows x NR = NV*VW columns of C with MR*NV floatVW accumulators, over
 * A packed in MR-row panels (k-major: MR consecutive values per k) and B either packed in NR-column panels
 * or read directly from row-major B (one row segment per k). TM tiles (stacked along M, reusing the B
 * values loaded per k) per work-item. */
#ifndef MR
#define MR 8
#endif
#ifndef VW
#define VW 16
#endif
#ifndef NV
#define NV 1
#endif
#ifndef KU
#define KU 4
#endif
#define NR (VW * NV)

#define CLT_CAT_(a, b) a##b
#define CLT_CAT(a, b) CLT_CAT_(a, b)
#define floatV CLT_CAT(float, VW)
#define VLOAD CLT_CAT(vload, VW)
#define VSTORE CLT_CAT(vstore, VW)

/* Ap[bz][p][k][i] = op(A)[p*MR + i][k], zero for rows >= M. One work-item per (k, panel, batch).
 * op(A) is (M,K): A[i*lda + k], or A[k*lda + i] when transposed. */
kernel void pack_a(global const float *restrict A, ulong off, uint lda, ulong stride, uint trans,
                   uint M, uint K, global float *restrict Ap, ulong ap_stride)
{
    uint k = get_global_id(0), p = get_global_id(1), bz = get_global_id(2);
    if (k >= K) return;
    const global float *a = A + off + bz * stride;
    global float *dst = Ap + bz * ap_stride + ((ulong)p * K + k) * MR;
    uint i0 = p * MR;
#pragma unroll
    for (uint i = 0; i < MR; i++) {
        uint r = i0 + i;
        float v = 0.0f;
        if (r < M) v = trans ? a[(ulong)k * lda + r] : a[(ulong)r * lda + k];
        dst[i] = v;
    }
}

/* Bp[bz][q][k][j] = op(B)[k][n0 + q*NR + j], zero for columns >= N. op(B) is (K,N): B[k*ldb + j], or
 * B[j*ldb + k] when transposed. n0 lets the tail of a directly-read B be packed alone. */
kernel void pack_b(global const float *restrict B, ulong off, uint ldb, ulong stride, uint trans,
                   uint N, uint K, uint n0, global float *restrict Bp, ulong bp_stride)
{
    uint k = get_global_id(0), q = get_global_id(1), bz = get_global_id(2);
    if (k >= K) return;
    const global float *b = B + off + bz * stride;
    global float *dst = Bp + bz * bp_stride + ((ulong)q * K + k) * NR;
    uint j0 = n0 + q * NR;
    if (!trans && j0 + NR <= N) {
#pragma unroll
        for (uint v = 0; v < NV; v++) VSTORE(VLOAD(v, b + (ulong)k * ldb + j0), v, dst);
        return;
    }
#pragma unroll
    for (uint j = 0; j < NR; j++) {
        uint c = j0 + j;
        float x = 0.0f;
        if (c < N) x = trans ? b[(ulong)c * ldb + k] : b[(ulong)k * ldb + c];
        dst[j] = x;
    }
}

/* One k of the register tile: acc[i][..] += a[i] * b[0..NR) for i < MR, then a and b move to the next k. A
 * macro (expanded in place, unrolled as before) so the KU-unrolled loop and the remainder loop share one body. */
#define GEMM_K_STEP()                                                                                  \
    do {                                                                                               \
        floatV bv[NV];                                                                                 \
        _Pragma("unroll") for (uint v = 0; v < NV; v++) bv[v] = VLOAD(v, b);                           \
        _Pragma("unroll") for (uint i = 0; i < MR; i++) {                                              \
            floatV ai = (floatV)(a[i]);                                                                \
            _Pragma("unroll") for (uint v = 0; v < NV; v++) acc[i][v] = fma(ai, bv[v], acc[i][v]);     \
        }                                                                                              \
        a += MR;                                                                                       \
        b += b_k;                                                                                      \
    } while (0)

/* C[i0.., j0..] = alpha * Ap-panel x B-panel + beta * C over K values of k (one KC block of the panels:
 * the A panel p starts at Ap[ap_off + bz*ap_stride + p*a_panel]). Global ids: (column panel q, row panel p,
 * batch).
 * B element (k, j) of panel q sits at B[b_off + bz*b_stride + q*b_panel + k*b_k + j]: packed panels use
 * b_panel = K*NR, b_k = NR; direct row-major B uses b_panel = NR, b_k = ldb (only for full panels).
 * Work-item q (< nq) covers the columns of C from (q0 + q) * NR. */
kernel void gemm_tile(global const float *restrict Ap, ulong ap_off, ulong ap_stride, ulong a_panel,
                      global const float *restrict B, ulong b_off, ulong b_stride, ulong b_panel, uint b_k,
                      global float *restrict C, ulong c_off, ulong c_stride, uint ldc,
                      uint M, uint N, uint K, uint q0, uint nq, float alpha, float beta)
{
    uint q = get_global_id(0), p = get_global_id(1), bz = get_global_id(2);
    uint j0 = (q0 + q) * NR, i0 = p * MR;
    if (q >= nq || i0 >= M) return;
    const global float *a = Ap + ap_off + bz * ap_stride + (ulong)p * a_panel;
    const global float *b = B + b_off + bz * b_stride + q * b_panel;
    floatV acc[MR][NV];
#pragma unroll
    for (uint i = 0; i < MR; i++)
#pragma unroll
        for (uint v = 0; v < NV; v++) acc[i][v] = (floatV)(0.0f);
    uint k = 0;
    for (; k + KU <= K; k += KU) {
#pragma unroll
        for (uint u = 0; u < KU; u++) GEMM_K_STEP();
    }
    for (; k < K; k++) GEMM_K_STEP();
    global float *c = C + c_off + bz * c_stride + (ulong)i0 * ldc + j0;
    uint rows = min((uint)MR, M - i0);
    if (j0 + NR <= N) {
#pragma unroll
        for (uint i = 0; i < MR; i++) {
            if (i < rows) {
#pragma unroll
                for (uint v = 0; v < NV; v++) {
                    floatV r = alpha * acc[i][v];
                    if (beta != 0.0f) r = fma((floatV)(beta), VLOAD(v, c + (ulong)i * ldc), r);
                    VSTORE(r, v, c + (ulong)i * ldc);
                }
            }
        }
    } else {
        uint cols = N - j0;
        float tmp[NR];
        /* Unrolled so that acc is only ever indexed by constants and stays in registers. */
#pragma unroll
        for (uint i = 0; i < MR; i++) {
            if (i < rows) {
#pragma unroll
                for (uint v = 0; v < NV; v++) VSTORE(acc[i][v], v, tmp);
                global float *cr = c + (ulong)i * ldc;
                for (uint j = 0; j < cols; j++) {
                    float r = alpha * tmp[j];
                    if (beta != 0.0f) r = fma(beta, cr[j], r);
                    cr[j] = r;
                }
            }
        }
    }
}
