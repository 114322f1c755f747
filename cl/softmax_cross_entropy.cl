/* softmax_cross_entropy.cl - softmax cross-entropy with label smoothing: per-row losses, deterministic mean,
 * label check, and the logits gradient from the saved probabilities. */
#ifndef SCE_WG
#define SCE_WG 256 /* work-group size of the single-group reduction */
#endif

inline int sce_label_ok(float l, uint k) { return l >= 0.0f && l < (float)k && l == floor(l); }

/* One work-item per row of logits (N,K): stable log-softmax, row loss, and (if save) the probabilities
 * p (N,K) for backward. Invalid labels are clamped here (no out-of-bounds read) and reported by sce_mean. */
kernel void sce_rows(global const float *x, global const float *labels, global float *p, global float *row_loss,
                     const float smoothing, const int save, const uint n, const uint k)
{
    uint r = get_global_id(0);
    if (r >= n) return;
    global const float *xr = x + (size_t)r * k;
    float m = xr[0], sx = 0.0f;
    for (uint j = 0; j < k; j++) {
        m = fmax(m, xr[j]);
        sx += xr[j];
    }
    float s = 0.0f;
    for (uint j = 0; j < k; j++) s += exp(xr[j] - m);
    float lse = m + log(s);
    float l = labels[r];
    uint y = sce_label_ok(l, k) ? (uint)l : 0u;
    /* -sum_j target_j * logp_j with target = (1-s) onehot + s/K and sum_j logp_j = sum_j x_j - K lse */
    row_loss[r] = -(1.0f - smoothing) * (xr[y] - lse) - smoothing / (float)k * (sx - (float)k * lse);
    if (save) {
        global float *pr = p + (size_t)r * k;
        float inv = 1.0f / s;
        for (uint j = 0; j < k; j++) pr[j] = exp(xr[j] - m) * inv;
    }
}

/* One work-group of SCE_WG: out[0] = mean of row_loss[0..n) (fixed summation order: deterministic), and
 * the flags after the row losses: row_loss[n] = number of invalid labels, row_loss[n+1] = first invalid
 * row (as float; -1 if none). */
kernel void sce_mean(global float *row_loss, global const float *labels, global float *out, const uint n,
                     const uint k)
{
    local float sum[SCE_WG];
    local uint bad[SCE_WG], first[SCE_WG];
    uint t = get_local_id(0);
    float s = 0.0f;
    uint b = 0, f = 0xffffffffu;
    for (uint i = t; i < n; i += SCE_WG) {
        s += row_loss[i];
        if (!sce_label_ok(labels[i], k)) {
            if (b == 0) f = i;
            b++;
        }
    }
    sum[t] = s;
    bad[t] = b;
    first[t] = f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint w = SCE_WG / 2; w > 0; w >>= 1) {
        if (t < w) {
            sum[t] += sum[t + w];
            bad[t] += bad[t + w];
            first[t] = min(first[t], first[t + w]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0) {
        out[0] = sum[0] / (float)n;
        row_loss[n] = (float)bad[0];
        row_loss[n + 1] = bad[0] ? (float)first[0] : -1.0f;
    }
}

/* dx (N,K) = (p - target) * dL / N; acc adds into dx (the logits feed several nodes). */
kernel void sce_backward(global const float *p, global const float *labels, global const float *dloss,
                         global float *dx, const float smoothing, const int acc, const uint n, const uint k)
{
    uint j = get_global_id(0), r = get_global_id(1);
    if (j >= k || r >= n) return;
    size_t i = (size_t)r * k + j;
    float target = smoothing / (float)k + ((float)j == labels[r] ? 1.0f - smoothing : 0.0f);
    float d = (p[i] - target) * (dloss[0] / (float)n);
    dx[i] = acc ? dx[i] + d : d;
}
