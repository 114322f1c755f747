/* pool.cl - max, average and global average pooling with their gradients. Backward kernels gather per input
 * element (each work-item owns one input row), so overlapping windows need no atomics. */

/* Output rows oh whose window [oh*S - P, oh*S - P + K) contains input row i: oh in [*lo, *hi). */
inline void windows_of(int i, int K, int S, int P, int O, int *lo, int *hi)
{
    int a = i + P - K + 1;
    *lo = a <= 0 ? 0 : (a + S - 1) / S;
    *hi = min(O, (i + P) / S + 1);
}

/* y (NC,OH,OW) = max over each window of x (NC,H,W); arg holds the winner's index ih*W + iw in its plane.
 * Work-item (plane*OH + oh) does one output row. Padding is skipped, NaN wins (like PyTorch). */
kernel void max_pool_fwd(global const float *x, global float *y, global int *arg, const uint NC, const int H,
                         const int W, const int OH, const int OW, const int K, const int S, const int P)
{
    uint r = get_global_id(0);
    if (r >= NC * (uint)OH) return;
    uint plane = r / (uint)OH;
    int oh = (int)(r - plane * (uint)OH);
    global const float *xp = x + (size_t)plane * H * W;
    if (K == 2 && S == 2 && P == 0) {
        global const float *r0 = xp + 2 * oh * W, *r1 = r0 + W;
        global float *yr = y + (size_t)r * OW;
        global int *ar = arg + (size_t)r * OW;
        for (int ow = 0; ow < OW; ow++) {
            int i0 = 2 * ow;
            float a = r0[i0], b = r0[i0 + 1], c = r1[i0], d = r1[i0 + 1];
            float best = a;
            int bi = 2 * oh * W + i0;
            if (b > best || isnan(b)) best = b, bi = 2 * oh * W + i0 + 1;
            if (c > best || isnan(c)) best = c, bi = (2 * oh + 1) * W + i0;
            if (d > best || isnan(d)) best = d, bi = (2 * oh + 1) * W + i0 + 1;
            yr[ow] = best;
            ar[ow] = bi;
        }
        return;
    }
    int h0 = max(oh * S - P, 0), h1 = min(oh * S - P + K, H);
    for (int ow = 0; ow < OW; ow++) {
        int w0 = max(ow * S - P, 0), w1 = min(ow * S - P + K, W);
        float best = -INFINITY;
        int bi = -1;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) {
                float v = xp[ih * W + iw];
                if (bi < 0 || v > best || isnan(v)) best = v, bi = ih * W + iw;
            }
        y[(size_t)r * OW + ow] = best;
        arg[(size_t)r * OW + ow] = bi;
    }
}

/* dx (NC,H,W) = (acc ? dx : 0) + sum of dy over the windows whose winner is this element. Work-item
 * (plane*H + ih) owns input row ih: it visits each window covering that row once and adds dy where the
 * saved winner lies in its row, so no two work-items write the same element and no element tests every
 * window around it. */
kernel void max_pool_bwd(global const float *dy, global const int *arg, global float *dx, const uint NC,
                         const int H, const int W, const int OH, const int OW, const int K, const int S, const int P,
                         const int acc)
{
    uint r = get_global_id(0);
    if (r >= NC * (uint)H) return;
    uint plane = r / (uint)H;
    int ih = (int)(r - plane * (uint)H);
    int oh0, oh1;
    windows_of(ih, K, S, P, OH, &oh0, &oh1);
    global const float *dyp = dy + (size_t)plane * OH * OW;
    global const int *ap = arg + (size_t)plane * OH * OW;
    global float *row = dx + (size_t)r * W;
    if (!acc)
        for (int iw = 0; iw < W; iw++) row[iw] = 0.0f;
    uint lo = (uint)(ih * W);
    for (int oh = oh0; oh < oh1; oh++)
        for (int ow = 0; ow < OW; ow++) {
            uint d = (uint)ap[oh * OW + ow] - lo; /* an empty window's -1 wraps to a large value */
            if (d < (uint)W) row[d] += dyp[oh * OW + ow];
        }
}

/* Max pooling with a 2x2 window, stride 2, no padding (the common CNN case), vectorized across output columns:
 * work-item (plane*OH + oh) does output row oh in chunks of PV outputs, each from one vload of 2*PV floats of
 * both input rows, split into even and odd columns. The winner is saved as a 2-bit code 0..3 (top-left,
 * top-right, bottom-left, bottom-right) instead of an int index, packed into one uint per chunk (an aligned
 * scalar store: POCL splits a vstore of bytes into single byte stores). Rows with OW not a multiple of PV end
 * with a chunk that overlaps the previous one (the host picks PV <= OW); each row has ceil(OW/PV) code words. */
#ifndef PV
#define PV 8
#endif
#define PCAT_(a, b) a##b
#define PCAT(a, b) PCAT_(a, b)
#if PV == 2
#define PV2 4
#define P_IOTA (int2)(0, 1)
#elif PV == 4
#define PV2 8
#define P_IOTA (int4)(0, 1, 2, 3)
#elif PV == 8
#define PV2 16
#define P_IOTA (int8)(0, 1, 2, 3, 4, 5, 6, 7)
#else
#error "PV must be 2, 4 or 8"
#endif
#define PF PCAT(float, PV)
#define PF2 PCAT(float, PV2)
#define PI PCAT(int, PV)
#define PLOAD PCAT(vload, PV)
#define PLOAD2 PCAT(vload, PV2)
#define PSTORE PCAT(vstore, PV)
#define PSTORE2 PCAT(vstore, PV2)

/* Lane i's code (0..3) at bits 2i..2i+1. */
inline uint pack_codes(PI k)
{
    k <<= 2 * P_IOTA;
#if PV == 8
    int4 k4 = k.lo | k.hi;
    int2 k2 = k4.lo | k4.hi;
#elif PV == 4
    int2 k2 = k.lo | k.hi;
#else
    int2 k2 = k;
#endif
    return (uint)(k2.x | k2.y);
}

/* y (NC,OH,OW), code (NC,OH,ceil(OW/PV)) from x (NC,H,W) with OH = H/2, OW = W/2 (an odd last row/column is
 * dropped). Same winner as max_pool_fwd: the first maximum in row-major window order, but the last NaN if any. */
kernel void max_pool2_fwd(global const float *x, global float *y, global uint *code, const uint NC, const int H,
                          const int W, const int OH, const int OW)
{
    uint r = get_global_id(0);
    if (r >= NC * (uint)OH) return;
    uint plane = r / (uint)OH;
    int oh = (int)(r - plane * (uint)OH);
    global const float *x0 = x + ((size_t)plane * H + 2 * oh) * W, *x1 = x0 + W;
    global float *yr = y + (size_t)r * OW;
    global uint *cr = code + (size_t)r * ((OW + PV - 1) / PV);
    for (int s = 0;; s += PV, cr++) {
        int s0 = min(s, OW - PV);
        PF2 t = PLOAD2(0, x0 + 2 * s0), b = PLOAD2(0, x1 + 2 * s0);
        PF m = t.even, v = t.odd;
        PI k = (PI)0, u = isgreater(v, m) | isnan(v);
        m = select(m, v, u), k = select(k, (PI)1, u);
        v = b.even, u = isgreater(v, m) | isnan(v);
        m = select(m, v, u), k = select(k, (PI)2, u);
        v = b.odd, u = isgreater(v, m) | isnan(v);
        m = select(m, v, u), k = select(k, (PI)3, u);
        PSTORE(m, 0, yr + s0);
        *cr = pack_codes(k);
        if (s0 + PV >= OW) break;
    }
}

/* dx (NC,H,W) = (acc ? dx : 0) + dy routed to each window's saved winner. Work-item (plane*OH + oh) writes
 * input rows 2oh and 2oh+1 whole (windows do not overlap); without acc it also zeroes an odd last column and
 * (for the last oh) an odd last row, which are in no window. */
kernel void max_pool2_bwd(global const float *dy, global const uint *code, global float *dx, const uint NC,
                          const int H, const int W, const int OH, const int OW, const int acc)
{
    uint r = get_global_id(0);
    if (r >= NC * (uint)OH) return;
    uint plane = r / (uint)OH;
    int oh = (int)(r - plane * (uint)OH);
    global float *d0 = dx + ((size_t)plane * H + 2 * oh) * W, *d1 = d0 + W;
    global const float *gr = dy + (size_t)r * OW;
    global const uint *cr = code + (size_t)r * ((OW + PV - 1) / PV);
    for (int s = 0;; s += PV, cr++) {
        int s0 = min(s, OW - PV);
        PF g = PLOAD(0, gr + s0);
        PI c = ((PI)(int)*cr >> (2 * P_IOTA)) & 3;
        PF2 o0 = (PF2)0.0f, o1 = (PF2)0.0f;
        if (acc) {
            /* Lanes below s were finished by the previous chunk (overlapping last chunk): route nothing more
             * into them. Without acc, writing them again writes the same values. */
            g = select(g, (PF)0.0f, (s0 + P_IOTA) < s);
            o0 = PLOAD2(0, d0 + 2 * s0), o1 = PLOAD2(0, d1 + 2 * s0);
        }
        o0.even += select((PF)0.0f, g, c == 0), o0.odd += select((PF)0.0f, g, c == 1);
        o1.even += select((PF)0.0f, g, c == 2), o1.odd += select((PF)0.0f, g, c == 3);
        PSTORE2(o0, 0, d0 + 2 * s0), PSTORE2(o1, 0, d1 + 2 * s0);
        if (s0 + PV >= OW) break;
    }
    if (!acc) {
        if (W & 1) d0[W - 1] = 0.0f, d1[W - 1] = 0.0f;
        if ((H & 1) && oh == OH - 1)
            for (int i = 0; i < W; i++) d1[W + i] = 0.0f;
    }
}

/* y = mean over each K*K window of x, padding counted as zeros (count_include_pad). */
kernel void avg_pool_fwd(global const float *x, global float *y, const uint NC, const int H, const int W,
                         const int OH, const int OW, const int K, const int S, const int P)
{
    uint r = get_global_id(0);
    if (r >= NC * (uint)OH) return;
    uint plane = r / (uint)OH;
    int oh = (int)(r - plane * (uint)OH);
    global const float *xp = x + (size_t)plane * H * W;
    int h0 = max(oh * S - P, 0), h1 = min(oh * S - P + K, H);
    float inv = 1.0f / (float)(K * K);
    for (int ow = 0; ow < OW; ow++) {
        int w0 = max(ow * S - P, 0), w1 = min(ow * S - P + K, W);
        float s = 0.0f;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) s += xp[ih * W + iw];
        y[(size_t)r * OW + ow] = s * inv;
    }
}

kernel void avg_pool_bwd(global const float *dy, global float *dx, const uint NC, const int H, const int W,
                         const int OH, const int OW, const int K, const int S, const int P, const int acc)
{
    uint r = get_global_id(0);
    if (r >= NC * (uint)H) return;
    uint plane = r / (uint)H;
    int ih = (int)(r - plane * (uint)H);
    int oh0, oh1;
    windows_of(ih, K, S, P, OH, &oh0, &oh1);
    global const float *dyp = dy + (size_t)plane * OH * OW;
    global float *row = dx + (size_t)r * W;
    float inv = 1.0f / (float)(K * K);
    for (int iw = 0; iw < W; iw++) {
        int ow0, ow1;
        windows_of(iw, K, S, P, OW, &ow0, &ow1);
        float s = 0.0f;
        for (int oh = oh0; oh < oh1; oh++)
            for (int ow = ow0; ow < ow1; ow++) s += dyp[oh * OW + ow];
        s *= inv;
        row[iw] = acc ? row[iw] + s : s;
    }
}

/* y (NC) = mean of each plane of x (NC, HW). */
kernel void gap_fwd(global const float *x, global float *y, const uint NC, const uint HW)
{
    uint plane = get_global_id(0);
    if (plane >= NC) return;
    global const float *xp = x + (size_t)plane * HW;
    float s = 0.0f;
    for (uint p = 0; p < HW; p++) s += xp[p];
    y[plane] = s / (float)HW;
}

kernel void gap_bwd(global const float *dy, global float *dx, const uint NC, const uint HW, const int acc)
{
    uint plane = get_global_id(0);
    if (plane >= NC) return;
    float g = dy[plane] / (float)HW;
    global float *d = dx + (size_t)plane * HW;
    if (acc)
        for (uint p = 0; p < HW; p++) d[p] += g;
    else
        for (uint p = 0; p < HW; p++) d[p] = g;
}
