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
