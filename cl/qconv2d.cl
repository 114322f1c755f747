/* qconv2d.cl - int8 convolution: the input quantized into a zero-padded int8 copy, int32 accumulation, a float
 * output dequantized per output channel (the arithmetic is documented at clt_qconv2d in cltrain.h). */

#ifndef COB
#define COB 4  /* output channels per work-item: each loaded input value is used COB times */
#endif
#ifndef OWB
#define OWB 16 /* output columns per work-item: the contiguous inner loop that CPU compilers vectorize */
#endif

/* q (N,C,HP,WP) = clamp(round(x * inv), -127, 127) with zeros in the pad_h/pad_w border; x (N,C,H,W). */
kernel void qconv2d_quantize(global const float *x, global char *q, const float inv, const uint H, const uint W,
                             const uint HP, const uint WP, const uint ph, const uint pw, const uint total)
{
    uint i = get_global_id(0);
    if (i >= total) return;
    uint wp = i % WP, t = i / WP, hp = t % HP, nc = t / HP;
    char v = 0;
    if (hp >= ph && hp < ph + H && wp >= pw && wp < pw + W) {
        float r = round(x[((size_t)nc * H + (hp - ph)) * W + (wp - pw)] * inv);
        v = (char)(int)clamp(r, -127.0f, 127.0f);
    }
    q[i] = v;
}

/* y (N,CO,OH,OW) = (float)(sum over c,kh,kw of q * w) * osc[co] + b[co]; q padded (N,C,HP,WP), w (CO,C,KH,KW).
 * Work-item: output row oh, columns ow0 .. ow0+OWB-1, channels co0 .. co0+COB-1, image n. */
kernel void qconv2d_forward(global const char *q, global const char *w, global const float *osc,
                            global const float *b, global float *y, const uint C, const uint HP, const uint WP,
                            const uint CO, const uint KH, const uint KW, const uint sh, const uint sw,
                            const uint OH, const uint OW, const int has_bias)
{
    uint owblocks = (OW + OWB - 1) / OWB;
    uint r = get_global_id(0), co0 = get_global_id(1) * COB, n = get_global_id(2);
    if (r >= owblocks * OH || co0 >= CO) return;
    uint oh = r / owblocks, ow0 = (r % owblocks) * OWB;
    uint cnt = OW - ow0 < OWB ? OW - ow0 : OWB;
    int acc[COB][OWB];
    for (int j = 0; j < COB; j++)
        for (int o = 0; o < OWB; o++) acc[j][o] = 0;
    for (uint c = 0; c < C; c++) {
        for (uint kh = 0; kh < KH; kh++) {
            global const char *row = q + (((size_t)n * C + c) * HP + oh * sh + kh) * WP + ow0 * sw;
            for (uint kw = 0; kw < KW; kw++) {
                int wv[COB];
                for (int j = 0; j < COB; j++) {
                    uint co = co0 + j < CO ? co0 + j : CO - 1; /* past the last channel: computed, not stored */
                    wv[j] = w[((co * C + c) * KH + kh) * KW + kw];
                }
                for (uint o = 0; o < cnt; o++) {
                    int xv = row[o * sw + kw];
                    for (int j = 0; j < COB; j++) acc[j][o] += xv * wv[j];
                }
            }
        }
    }
    for (int j = 0; j < COB; j++) {
        uint co = co0 + j;
        if (co >= CO) break;
        float s = osc[co], bb = has_bias ? b[co] : 0.0f;
        global float *yr = y + (((size_t)n * CO + co) * OH + oh) * OW + ow0;
        for (uint o = 0; o < cnt; o++) yr[o] = (float)acc[j][o] * s + bb;
    }
}

/* ---- stride-1 columns (sw = 1), built with -DQ_KH=.. -DQ_KW=..: work-item (row oh and 16 columns, COBV channels,
 * image n) keeps COBV int16 vectors of sums; per tap one unaligned 16-byte load widened to int16 and COBV broadcast
 * multiply-adds. The int8 input has at least 16 + KW bytes of slack after its last plane, so every load is in
 * bounds; columns past OW are computed from the next row's bytes and never stored. */
#ifdef Q_KH
#ifndef COBV
#define COBV 8 /* output channels per work-item; the packed weights (ceil(CO/COBV), C, KH, KW, COBV) match it */
#endif
#ifndef QRB
#define QRB 2  /* output rows per work-item: each weight broadcast serves QRB rows */
#endif
/* wt: the weights widened to int (a broadcast load each), packed (ceil(CO/COBV), C, KH, KW, COBV). */
kernel void qconv2d_forward16(global const char *q, global const int *wt, global const float *osc,
                              global const float *b, global float *y, const uint C, const uint PS, const uint WP,
                              const uint CO, const uint sh, const uint OH, const uint OW, const int has_bias)
{
    uint nsx = (OW + 15) / 16;
    uint s = get_global_id(0), cob = get_global_id(1), n = get_global_id(2);
    uint rg = s / nsx, ow0 = (s - rg * nsx) * 16, oh0 = rg * QRB;
    if (oh0 >= OH || cob * COBV >= CO) return;
    int16 a[QRB][COBV];
#pragma unroll
    for (int r = 0; r < QRB; r++)
#pragma unroll
        for (int o = 0; o < COBV; o++) a[r][o] = (int16)(0);
    /* rows past OH read the rows below (inside the padded plane or its slack) and are not stored */
    global const char *xb = q + (size_t)n * C * PS + (size_t)oh0 * sh * WP + ow0;
    global const int *wb = wt + (size_t)cob * C * (Q_KH * Q_KW * COBV);
    for (uint c = 0; c < C; c++, xb += PS, wb += Q_KH * Q_KW * COBV) {
#pragma unroll
        for (int kh = 0; kh < Q_KH; kh++) {
#pragma unroll
            for (int kw = 0; kw < Q_KW; kw++) {
                int16 xv[QRB];
#pragma unroll
                for (int r = 0; r < QRB; r++) xv[r] = convert_int16(vload16(0, xb + (r * sh + kh) * WP + kw));
                global const int *wk = wb + (kh * Q_KW + kw) * COBV;
#pragma unroll
                for (int o = 0; o < COBV; o++) {
                    int16 wv = (int16)(wk[o]);
#pragma unroll
                    for (int r = 0; r < QRB; r++) a[r][o] += xv[r] * wv;
                }
            }
        }
    }
    uint cnt = OW - ow0 < 16 ? OW - ow0 : 16;
#pragma unroll
    for (int o = 0; o < COBV; o++) {
        uint co = cob * COBV + o;
        if (co >= CO) continue;
        float sc = osc[co], bb = has_bias ? b[co] : 0.0f;
#pragma unroll
        for (int r = 0; r < QRB; r++) {
            if (oh0 + r >= OH) continue;
            float16 v = convert_float16(a[r][o]) * sc + bb;
            global float *yr = y + (((size_t)n * CO + co) * OH + oh0 + r) * OW + ow0;
            if (cnt == 16) {
                vstore16(v, 0, yr);
            } else {
                float t[16];
                vstore16(v, 0, t);
                for (uint i = 0; i < cnt; i++) yr[i] = t[i];
            }
        }
    }
}
#endif
