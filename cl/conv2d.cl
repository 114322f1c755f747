/* conv2d.cl - 2-D convolution helpers around the GEMMs: im2col, col2im (gather, no atomics), the layout
 * permutes between (Cout, N*OH*OW) and NCHW with the bias, and the bias gradient.
 *
 * Every kernel gives one work-item a whole contiguous row (OW or W floats, or one output plane), which on
 * CPU devices turns into a streaming loop per work-item. Geometry is passed at run time so one program
 * serves every conv layer (fewer programs to compile). */

/* cols (K = C*KH*KW, N*OH*OW) from x (N,C,H,W); column = n*OH*OW + oh*OW + ow, padding reads as 0.
 * Work-item (n*OH + oh, k) writes the OW floats of row k for that output row. */
kernel void im2col(global const float *x, global float *cols, const uint N, const uint C, const uint H,
                   const uint W, const uint OH, const uint OW, const uint KH, const uint KW, const uint SH,
                   const uint SW, const int PH, const int PW)
{
    uint r = get_global_id(0), k = get_global_id(1);
    if (r >= N * OH || k >= C * KH * KW) return;
    uint n = r / OH, oh = r - n * OH;
    uint c = k / (KH * KW), kk = k - c * KH * KW, kh = kk / KW, kw = kk - kh * KW;
    global float *dst = cols + (size_t)k * (N * OH * OW) + (size_t)r * OW;
    int ih = (int)(oh * SH) - PH + (int)kh;
    if (ih < 0 || ih >= (int)H) {
        for (uint ow = 0; ow < OW; ow++) dst[ow] = 0.0f;
        return;
    }
    global const float *src = x + ((size_t)(n * C + c) * H + (uint)ih) * W;
    int iw0 = (int)kw - PW;
    if (SW == 1 && iw0 >= 0 && iw0 + (int)OW <= (int)W) {
        /* interior row: a plain copy */
        for (uint ow = 0; ow < OW; ow++) dst[ow] = src[iw0 + (int)ow];
        return;
    }
    for (uint ow = 0; ow < OW; ow++) {
        int iw = (int)(ow * SW) + iw0;
        dst[ow] = (iw >= 0 && iw < (int)W) ? src[iw] : 0.0f;
    }
}

/* dx (N,C,H,W) = (acc ? dx : 0) + col2im(dcols (K, N*OH*OW)). Work-item (n*C + c, ih) owns input row ih
 * and adds every (kh, kw, ow) that read it, so no two work-items write the same element. */
kernel void col2im(global const float *dcols, global float *dx, const uint N, const uint C, const uint H,
                   const uint W, const uint OH, const uint OW, const uint KH, const uint KW, const uint SH,
                   const uint SW, const int PH, const int PW, const int acc)
{
    uint plane = get_global_id(0), ih = get_global_id(1);
    if (plane >= N * C || ih >= H) return;
    uint n = plane / C, c = plane - n * C;
    global float *row = dx + ((size_t)plane * H + ih) * W;
    if (!acc)
        for (uint iw = 0; iw < W; iw++) row[iw] = 0.0f;
    size_t NP = (size_t)N * OH * OW;
    for (uint kh = 0; kh < KH; kh++) {
        int t = (int)ih + PH - (int)kh; /* = oh * SH */
        if (t < 0 || t % (int)SH != 0) continue;
        uint oh = (uint)t / SH;
        if (oh >= OH) continue;
        for (uint kw = 0; kw < KW; kw++) {
            global const float *src =
                dcols + (size_t)((c * KH + kh) * KW + kw) * NP + ((size_t)n * OH + oh) * OW;
            /* ow range whose iw = ow*SW - PW + kw falls inside [0, W) */
            int lo = PW - (int)kw; /* iw >= 0  <=> ow*SW >= lo */
            uint ow0 = lo <= 0 ? 0u : (uint)(lo + (int)SW - 1) / SW;
            int hi = (int)W - 1 + PW - (int)kw; /* iw <= W-1 <=> ow*SW <= hi */
            if (hi < 0) continue;
            uint ow1 = min(OW, (uint)hi / SW + 1u);
            if (SW == 1) {
                int sh = (int)kw - PW;
                for (uint ow = ow0; ow < ow1; ow++) row[(int)ow + sh] += src[ow];
            } else {
                for (uint ow = ow0; ow < ow1; ow++) row[(int)(ow * SW) + (int)kw - PW] += src[ow];
            }
        }
    }
}

/* y (N,Cout,P) = y' (Cout, N*P) + b. Work-item (n*Cout + co) copies one output plane of P floats. */
kernel void cols_to_nchw(global const float *yp, global float *y, global const float *b, const int has_bias,
                         const uint N, const uint CO, const uint P)
{
    uint plane = get_global_id(0);
    if (plane >= N * CO) return;
    uint n = plane / CO, co = plane - n * CO;
    float bv = has_bias ? b[co] : 0.0f;
    global const float *src = yp + (size_t)co * N * P + (size_t)n * P;
    global float *dst = y + (size_t)plane * P;
    for (uint p = 0; p < P; p++) dst[p] = src[p] + bv;
}

/* y (Cout, P) += b: the N = 1 case, where the GEMM already wrote NCHW. */
kernel void bias_planes(global float *y, global const float *b, const uint CO, const uint P)
{
    uint co = get_global_id(0);
    if (co >= CO) return;
    float bv = b[co];
    global float *d = y + (size_t)co * P;
    for (uint p = 0; p < P; p++) d[p] += bv;
}

/* dy' (Cout, N*P) from dy (N,Cout,P). Work-item (n*Cout + co) moves one plane. */
kernel void nchw_to_cols(global const float *dy, global float *dyp, const uint N, const uint CO, const uint P)
{
    uint plane = get_global_id(0);
    if (plane >= N * CO) return;
    uint n = plane / CO, co = plane - n * CO;
    global const float *src = dy + (size_t)plane * P;
    global float *dst = dyp + (size_t)co * N * P + (size_t)n * P;
    for (uint p = 0; p < P; p++) dst[p] = src[p];
}

/* db (Cout) = sum over n and p of dy (N,Cout,P). */
kernel void bias_grad(global const float *dy, global float *db, const uint N, const uint CO, const uint P)
{
    uint co = get_global_id(0);
    if (co >= CO) return;
    float s = 0.0f;
    for (uint n = 0; n < N; n++) {
        global const float *src = dy + ((size_t)n * CO + co) * P;
        float t = 0.0f;
        for (uint p = 0; p < P; p++) t += src[p];
        s += t;
    }
    db[co] = s;
}

/* dw (len) = sum of the nparts partial weight gradients (nparts, len) of the split-k GEMM. */
kernel void sum_parts(global const float *parts, global float *dw, const uint nparts, const uint len)
{
    uint i = get_global_id(0);
    if (i >= len) return;
    float s = 0.0f;
    for (uint p = 0; p < nparts; p++) s += parts[(size_t)p * len + i];
    dw[i] = s;
}
