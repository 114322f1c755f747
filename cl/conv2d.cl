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

/* dw (len) and db (lenb) = sums of the nparts partial gradients (nparts, len + lenb) of a split weight
 * gradient (the bias gradient, when there is one, follows the weights in each part). */
kernel void sum_parts(global const float *parts, global float *dw, global float *db, const uint nparts,
                      const uint len, const uint lenb)
{
    uint i = get_global_id(0), stride = len + lenb;
    if (i >= stride) return;
    float s = 0.0f;
    for (uint p = 0; p < nparts; p++) s += parts[(size_t)p * stride + i];
    if (i < len) dw[i] = s;
    else db[i - len] = s;
}

/* ---- direct convolution (stride 1), built with -DCONV_KH=.. -DCONV_KW=..; the block sizes are tunables.
 * The input is first copied into zero-padded planes with slack behind them, so that every vector load of
 * the inner loops is in bounds without a test; one program serves the forward (x, w) and the data gradient,
 * which is the same stride-1 convolution of the padded dy with the flipped, transposed weights. */
#ifdef CONV_KH
#ifndef COB
#define COB 8  /* output channels per work-item (forward and data gradient) */
#endif
#ifndef RB
#define RB 2   /* output rows per work-item */
#endif
#ifndef VW
#define VW 16  /* output pixels per vector: 8 or 16 */
#endif
#ifndef DCOB
#define DCOB 4 /* output channels per work-item of the weight gradient */
#endif
#ifndef DVW
#define DVW 16 /* vector width of the weight gradient's flat loop: 8 or 16 */
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define VT CAT(float, VW)
#define VLOAD CAT(vload, VW)
#define VSTORE CAT(vstore, VW)
#define DVT CAT(float, DVW)
#define DVLOAD CAT(vload, DVW)

inline float hsum(DVT v)
{
#if DVW == 16
    float8 a = v.lo + v.hi;
#else
    float8 a = v;
#endif
    float4 b = a.lo + a.hi;
    float2 c = b.lo + b.hi;
    return c.x + c.y;
}

/* dst + D0 (P, DH, DW) planes `DPS` floats apart: src (P, SRH, SRW) at row `top`, column `left`, zeros
 * around; also zeros each plane's tail (DPS - DH*DW) and `slack` floats after the last plane. A work-item
 * writes a whole plane: with a work-item per row, the per-work-group cost of CPU devices outweighed the copy. */
kernel void pad_planes(global const float *src, global float *dst, const uint P, const uint SRH, const uint SRW,
                       const uint DH, const uint DW, const uint DPS, const uint top, const uint left,
                       const uint slack, const uint D0)
{
    uint plane = get_global_id(0);
    if (plane >= P) return;
    global float *d = dst + D0 + (size_t)plane * DPS;
    global const float *s = src + (size_t)plane * SRH * SRW;
    uint r = 0, i = 0;
    for (; r < top; r++)
        for (uint j = 0; j < DW; j++) d[i++] = 0.0f;
    for (; r < top + SRH; r++, s += SRW) {
        for (uint j = 0; j < left; j++) d[i++] = 0.0f;
        for (uint j = 0; j < SRW; j++) d[i++] = s[j];
        for (uint j = left + SRW; j < DW; j++) d[i++] = 0.0f;
    }
    uint end = plane == P - 1 ? DPS + slack : DPS;
    for (; i < end; i++) d[i] = 0.0f;
}

/* wt (ceil(A/COB), B, KK, COB) from w: forward (flip 0): A = Cout, B = Cin, wt[a/COB][b][k][a%COB] =
 * w[a][b][k]; data gradient (flip 1): A = Cin, B = Cout, w[b][a][KK-1-k]. Channels past A read as 0, so
 * the convolution never tests them. Each group of COB floats is what one input vector meets. */
kernel void pack_weights(global const float *w, global float *wt, const uint A, const uint B, const uint KK,
                         const int flip)
{
    uint i = get_global_id(0);
    uint ab = (A + COB - 1) / COB;
    if (i >= ab * COB * B * KK) return;
    uint o = i % COB, t = i / COB, k = t % KK;
    t /= KK;
    uint b = t % B, a = (t / B) * COB + o;
    float v = 0.0f;
    if (a < A) v = flip ? w[((size_t)b * A + a) * KK + (KK - 1 - k)] : w[((size_t)a * B + b) * KK + k];
    wt[i] = v;
}

/* y (N,CO,OH,OW) = (acc ? y : 0) + [b +] conv(xp, wt), stride 1, xp padded planes (N*CI, HP, WP) `PS`
 * floats apart from xp + X0. Work-item (s, cob, n) computes RB rows x VW pixels x COB channels in registers: per input
 * tap, one unaligned vector load and COB broadcast FMAs per row. */
kernel void direct_fwd(global const float *xp, global const float *wt, global const float *b, global float *y,
                       const uint CI, const uint CO, const uint PS, const uint WP, const uint OH, const uint OW,
                       const int has_bias, const int acc, const uint X0)
{
    uint s = get_global_id(0), cob = get_global_id(1), n = get_global_id(2);
    uint nsx = (OW + VW - 1) / VW;
    uint rg = s / nsx, ow0 = (s - rg * nsx) * VW, oh0 = rg * RB;
    if (oh0 >= OH || cob * COB >= CO) return;
    VT a[RB][COB];
#pragma unroll
    for (int r = 0; r < RB; r++)
#pragma unroll
        for (int o = 0; o < COB; o++) a[r][o] = (VT)(0.0f);
    global const float *xb = xp + X0 + (size_t)n * CI * PS + oh0 * WP + ow0;
    global const float *wb = wt + (size_t)cob * CI * (CONV_KH * CONV_KW * COB);
    for (uint c = 0; c < CI; c++, xb += PS, wb += CONV_KH * CONV_KW * COB) {
#pragma unroll
        for (int kh = 0; kh < CONV_KH; kh++) {
#pragma unroll
            for (int kw = 0; kw < CONV_KW; kw++) {
                VT xv[RB];
#pragma unroll
                for (int r = 0; r < RB; r++) xv[r] = VLOAD(0, xb + (r + kh) * WP + kw);
                global const float *wk = wb + (kh * CONV_KW + kw) * COB;
#pragma unroll
                for (int o = 0; o < COB; o++) {
                    VT wv = (VT)(wk[o]);
#pragma unroll
                    for (int r = 0; r < RB; r++) a[r][o] = fma(xv[r], wv, a[r][o]);
                }
            }
        }
    }
    bool full = ow0 + VW <= OW;
#pragma unroll
    for (int o = 0; o < COB; o++) {
        uint co = cob * COB + o;
        if (co < CO) {
            float bv = has_bias ? b[co] : 0.0f;
#pragma unroll
            for (int r = 0; r < RB; r++) {
                if (oh0 + r < OH) {
                    global float *yr = y + (((size_t)n * CO + co) * OH + oh0 + r) * OW + ow0;
                    VT v = a[r][o] + bv;
                    if (full) {
                        if (acc) v += VLOAD(0, yr);
                        VSTORE(v, 0, yr);
                    } else {
                        float t[VW];
                        VSTORE(v, 0, t);
                        for (uint i = 0; i < OW - ow0; i++) yr[i] = acc ? yr[i] + t[i] : t[i];
                    }
                }
            }
        }
    }
}

/* Weight and bias gradients over images [part*NPER, ..): dw[co][c][kh][kw] = sum over n and q of
 * dq[n][co][q] * xp[n][c][q + kh*WS + kw], db[co] = sum of dq[n][co]. dq holds dy zero-padded in rows of WS,
 * x's row stride, so that one flat, unmasked vector loop of NQ floats (from DOFF into each plane, a multiple
 * of DVW floats from dq) runs over a plane: the lanes past a row's OW pixels read zeros. Work-item
 * (cob, c*KH + kh, part) keeps DCOB x KW vector sums; the extra work-items ckh = CI*KH keep the DCOB bias
 * sums (when has_bias), so the bias gradient costs no pass over dy of its own. Part `part` writes
 * dw + part*DWS and db + DBO + part*DWS (when the images are split, dw and db are one buffer of parts). */
kernel void direct_dw(global const float *xp, global const float *dq, global float *dw, global float *db,
                      const uint N, const uint CI, const uint CO, const uint PS, const uint WS, const uint QS,
                      const uint DOFF, const uint NQ, const uint NPER, const uint DWS, const uint DBO,
                      const int has_bias)
{
    uint cob = get_global_id(0), ckh = get_global_id(1), part = get_global_id(2);
    if (cob * DCOB >= CO || ckh > CI * CONV_KH || (ckh == CI * CONV_KH && !has_bias) || part * NPER >= N) return;
    uint n1 = min(N, (part + 1) * NPER);
    if (ckh == CI * CONV_KH) {
        DVT a[DCOB];
#pragma unroll
        for (int o = 0; o < DCOB; o++) a[o] = (DVT)(0.0f);
        for (uint n = part * NPER; n < n1; n++) {
#pragma unroll
            for (int o = 0; o < DCOB; o++) {
                global const float *dr = dq + DOFF + ((size_t)n * CO + min(cob * DCOB + o, CO - 1)) * QS;
                for (uint q = 0; q < NQ; q += DVW) a[o] += DVLOAD(0, dr + q);
            }
        }
        global float *out = db + DBO + (size_t)part * DWS;
#pragma unroll
        for (int o = 0; o < DCOB; o++)
            if (cob * DCOB + o < CO) out[cob * DCOB + o] = hsum(a[o]);
        return;
    }
    uint c = ckh / CONV_KH, kh = ckh - c * CONV_KH;
    DVT a[DCOB][CONV_KW];
#pragma unroll
    for (int o = 0; o < DCOB; o++)
#pragma unroll
        for (int kw = 0; kw < CONV_KW; kw++) a[o][kw] = (DVT)(0.0f);
    for (uint n = part * NPER; n < n1; n++) {
        global const float *xr = xp + ((size_t)n * CI + c) * PS + kh * WS;
        global const float *dr[DCOB];
#pragma unroll
        for (int o = 0; o < DCOB; o++) dr[o] = dq + DOFF + ((size_t)n * CO + min(cob * DCOB + o, CO - 1)) * QS;
        for (uint q = 0; q < NQ; q += DVW) {
            DVT xv[CONV_KW];
#pragma unroll
            for (int kw = 0; kw < CONV_KW; kw++) xv[kw] = DVLOAD(0, xr + q + kw);
#pragma unroll
            for (int o = 0; o < DCOB; o++) {
                DVT d = DVLOAD(0, dr[o] + q);
#pragma unroll
                for (int kw = 0; kw < CONV_KW; kw++) a[o][kw] = fma(d, xv[kw], a[o][kw]);
            }
        }
    }
    global float *out = dw + (size_t)part * DWS;
#pragma unroll
    for (int o = 0; o < DCOB; o++) {
        uint co = cob * DCOB + o;
        if (co < CO)
#pragma unroll
            for (int kw = 0; kw < CONV_KW; kw++) out[((co * CI + c) * CONV_KH + kh) * CONV_KW + kw] = hsum(a[o][kw]);
    }
}

/* dy (DVW floats) at p where lanes [valid, DVW) would read past the end of dy: loads only the valid ones. */
inline DVT load_tail(global const float *p, uint valid)
{
    float t[DVW];
    for (uint i = 0; i < DVW; i++) t[i] = i < valid ? p[i] : 0.0f;
    return DVLOAD(0, t);
}

/* direct_dw for a backward without the data gradient, where no padded copy of dy is made: dy is read in
 * place (NCHW), DVW pixels of a row per vector (unaligned loads, which cost less than the copy); a
 * vector's lanes past OW hold the next row's dy, so they meet masked (zeroed) x, and the bias sums mask dy.
 * Work-items, parts and outputs as in direct_dw; xp rows are WS apart. */
kernel void direct_dw_rows(global const float *xp, global const float *dy, global float *dw, global float *db,
                           const uint N, const uint CI, const uint CO, const uint PS, const uint WS, const uint OH,
                           const uint OW, const uint NPER, const uint DWS, const uint DBO, const int has_bias)
{
    uint cob = get_global_id(0), ckh = get_global_id(1), part = get_global_id(2);
    if (cob * DCOB >= CO || ckh > CI * CONV_KH || (ckh == CI * CONV_KH && !has_bias) || part * NPER >= N) return;
    uint n1 = min(N, (part + 1) * NPER), P = OH * OW, nfull = OW / DVW, tail = OW - nfull * DVW;
    size_t dylen = (size_t)N * CO * P;
#if DVW == 16
    int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#else
    int8 lane = (int8)(0, 1, 2, 3, 4, 5, 6, 7);
#endif
    DVT zero = (DVT)(0.0f);
    if (ckh == CI * CONV_KH) {
        DVT a[DCOB];
#pragma unroll
        for (int o = 0; o < DCOB; o++) a[o] = zero;
        for (uint n = part * NPER; n < n1; n++) {
#pragma unroll
            for (int o = 0; o < DCOB; o++) {
                size_t off = ((size_t)n * CO + min(cob * DCOB + o, CO - 1)) * P;
                global const float *dr = dy + off;
                for (uint oh = 0; oh < OH; oh++, dr += OW, off += OW) {
                    for (uint v = 0; v < nfull; v++) a[o] += DVLOAD(0, dr + v * DVW);
                    if (tail) {
                        uint q = nfull * DVW;
                        DVT d = off + q + DVW <= dylen ? DVLOAD(0, dr + q) : load_tail(dr + q, tail);
                        a[o] += select(zero, d, lane < (int)tail);
                    }
                }
            }
        }
        global float *out = db + DBO + (size_t)part * DWS;
#pragma unroll
        for (int o = 0; o < DCOB; o++)
            if (cob * DCOB + o < CO) out[cob * DCOB + o] = hsum(a[o]);
        return;
    }
    uint c = ckh / CONV_KH, kh = ckh - c * CONV_KH;
    DVT a[DCOB][CONV_KW];
#pragma unroll
    for (int o = 0; o < DCOB; o++)
#pragma unroll
        for (int kw = 0; kw < CONV_KW; kw++) a[o][kw] = zero;
    for (uint n = part * NPER; n < n1; n++) {
        global const float *xr = xp + ((size_t)n * CI + c) * PS + kh * WS;
        size_t off0 = ((size_t)n * CO + cob * DCOB) * P;
        global const float *dr[DCOB];
#pragma unroll
        for (int o = 0; o < DCOB; o++) dr[o] = dy + ((size_t)n * CO + min(cob * DCOB + o, CO - 1)) * P;
        for (uint oh = 0; oh < OH; oh++, xr += WS) {
            uint q = 0;
            for (uint v = 0; v < nfull; v++, q += DVW) {
                DVT xv[CONV_KW];
#pragma unroll
                for (int kw = 0; kw < CONV_KW; kw++) xv[kw] = DVLOAD(0, xr + q + kw);
#pragma unroll
                for (int o = 0; o < DCOB; o++) {
                    DVT d = DVLOAD(0, dr[o] + q);
#pragma unroll
                    for (int kw = 0; kw < CONV_KW; kw++) a[o][kw] = fma(d, xv[kw], a[o][kw]);
                }
            }
            if (tail) {
                DVT xv[CONV_KW];
#pragma unroll
                for (int kw = 0; kw < CONV_KW; kw++) xv[kw] = select(zero, DVLOAD(0, xr + q + kw), lane < (int)tail);
                /* only the last plane's last row can reach past dy: its tail loads the valid lanes only */
                bool safe = off0 + (size_t)(DCOB - 1) * P + (size_t)oh * OW + q + DVW <= dylen;
#pragma unroll
                for (int o = 0; o < DCOB; o++) {
                    DVT d = safe ? DVLOAD(0, dr[o] + q) : load_tail(dr[o] + q, tail);
#pragma unroll
                    for (int kw = 0; kw < CONV_KW; kw++) a[o][kw] = fma(d, xv[kw], a[o][kw]);
                }
            }
#pragma unroll
            for (int o = 0; o < DCOB; o++) dr[o] += OW;
        }
    }
    global float *out = dw + (size_t)part * DWS;
#pragma unroll
    for (int o = 0; o < DCOB; o++) {
        uint co = cob * DCOB + o;
        if (co < CO)
#pragma unroll
            for (int kw = 0; kw < CONV_KW; kw++) out[((co * CI + c) * CONV_KH + kh) * CONV_KW + kw] = hsum(a[o][kw]);
    }
}
#endif
