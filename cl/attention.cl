/* attention.cl - fused causal multi-head self-attention on packed qkv (B, T, 3C): head h of q, k, v is columns
 * h*HD.. of each third. One work-item per (query row, batch*head) in forward and for dq; one per (key row,
 * batch*head) for dk and dv: every sum runs in a fixed order (deterministic), and row i reads keys 0..i only, so
 * later tokens cannot change earlier outputs. P (B*H, T, T) keeps the probabilities for backward. */
#ifndef HD
#define HD 32 /* head dimension C / H */
#endif

kernel void attn_forward(global const float *qkv, global float *y, global float *P, const float scale, const uint T,
                         const uint H, const uint BH)
{
    uint i = get_global_id(0), bh = get_global_id(1);
    if (i >= T || bh >= BH) return;
    uint b = bh / H, h = bh % H, C = H * HD;
    global const float *q = qkv + ((size_t)b * T + i) * 3 * C + h * HD;
    global const float *kb = qkv + (size_t)b * T * 3 * C + C + h * HD, *vb = kb + C;
    global float *p = P + ((size_t)bh * T + i) * T;
    float qr[HD];
    for (uint d = 0; d < HD; d++) qr[d] = q[d];
    float m = -INFINITY;
    for (uint j = 0; j <= i; j++) {
        global const float *k = kb + (size_t)j * 3 * C;
        float s = 0.0f;
        for (uint d = 0; d < HD; d++) s += qr[d] * k[d];
        s *= scale;
        p[j] = s;
        m = fmax(m, s);
    }
    float sum = 0.0f;
    for (uint j = 0; j <= i; j++) {
        float e = exp(p[j] - m);
        p[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum, acc[HD];
    for (uint d = 0; d < HD; d++) acc[d] = 0.0f;
    for (uint j = 0; j <= i; j++) {
        float pj = p[j] * inv;
        p[j] = pj;
        global const float *v = vb + (size_t)j * 3 * C;
        for (uint d = 0; d < HD; d++) acc[d] += pj * v[d];
    }
    global float *yr = y + ((size_t)b * T + i) * C + h * HD;
    for (uint d = 0; d < HD; d++) yr[d] = acc[d];
}

/* dS_ij = P_ij (dO_i . v_j - sum_j' P_ij' dO_i . v_j') into S; dq_i = scale sum_j dS_ij k_j (`acc` adds). */
kernel void attn_backward_q(global const float *qkv, global const float *P, global const float *dy, global float *S,
                            global float *dqkv, const float scale, const int acc, const uint T, const uint H,
                            const uint BH)
{
    uint i = get_global_id(0), bh = get_global_id(1);
    if (i >= T || bh >= BH) return;
    uint b = bh / H, h = bh % H, C = H * HD;
    global const float *kb = qkv + (size_t)b * T * 3 * C + C + h * HD, *vb = kb + C;
    global const float *p = P + ((size_t)bh * T + i) * T;
    global float *s = S + ((size_t)bh * T + i) * T;
    global const float *dor = dy + ((size_t)b * T + i) * C + h * HD;
    float dO[HD];
    for (uint d = 0; d < HD; d++) dO[d] = dor[d];
    float D = 0.0f;
    for (uint j = 0; j <= i; j++) {
        global const float *v = vb + (size_t)j * 3 * C;
        float dp = 0.0f;
        for (uint d = 0; d < HD; d++) dp += dO[d] * v[d];
        s[j] = dp;
        D += p[j] * dp;
    }
    float dq[HD];
    for (uint d = 0; d < HD; d++) dq[d] = 0.0f;
    for (uint j = 0; j <= i; j++) {
        float ds = p[j] * (s[j] - D);
        s[j] = ds;
        global const float *k = kb + (size_t)j * 3 * C;
        for (uint d = 0; d < HD; d++) dq[d] += ds * k[d];
    }
    global float *o = dqkv + ((size_t)b * T + i) * 3 * C + h * HD;
    for (uint d = 0; d < HD; d++) o[d] = acc ? o[d] + scale * dq[d] : scale * dq[d];
}

/* dk_j = scale sum_{i>=j} dS_ij q_i, dv_j = sum_{i>=j} P_ij dO_i (`acc` adds). */
kernel void attn_backward_kv(global const float *qkv, global const float *P, global const float *dy,
                             global const float *S, global float *dqkv, const float scale, const int acc,
                             const uint T, const uint H, const uint BH)
{
    uint j = get_global_id(0), bh = get_global_id(1);
    if (j >= T || bh >= BH) return;
    uint b = bh / H, h = bh % H, C = H * HD;
    global const float *qb = qkv + (size_t)b * T * 3 * C + h * HD;
    float dk[HD], dv[HD];
    for (uint d = 0; d < HD; d++) dk[d] = dv[d] = 0.0f;
    for (uint i = j; i < T; i++) {
        size_t r = ((size_t)bh * T + i) * T + j;
        float ds = S[r], pij = P[r];
        global const float *q = qb + (size_t)i * 3 * C;
        global const float *dor = dy + ((size_t)b * T + i) * C + h * HD;
        for (uint d = 0; d < HD; d++) {
            dk[d] += ds * q[d];
            dv[d] += pij * dor[d];
        }
    }
    global float *o = dqkv + ((size_t)b * T + j) * 3 * C + C + h * HD;
    for (uint d = 0; d < HD; d++) {
        o[d] = acc ? o[d] + scale * dk[d] : scale * dk[d];
        o[C + d] = acc ? o[C + d] + dv[d] : dv[d];
    }
}
