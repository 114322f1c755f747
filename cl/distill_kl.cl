/* distill_kl.cl - knowledge distillation loss: alpha*T^2*KL(softmax(t/T) || softmax(s/T)) + (1-alpha)*CE(s, y),
 * per-row terms, a deterministic mean with the label check, and the logits gradient from the saved coefficients. */
#ifndef DKL_WG
#define DKL_WG 256 /* work-group size of the single-group reduction */
#endif

inline int dkl_label_ok(float l, uint k) { return l >= 0.0f && l < (float)k && l == floor(l); }

/* One work-item per row of the student logits s (N,K) and teacher logits t (N,K): the row's loss and, if save,
 * the gradient coefficients c (N,K) = alpha*T*(p - q) + (1-alpha)*(softmax(s) - onehot(y)), p = softmax(s/T),
 * q = softmax(t/T), so that dL/ds = c * dL / N. Invalid labels are clamped here and reported by dkl_mean. */
kernel void dkl_rows(global const float *s, global const float *t, global const float *labels, global float *c,
                     global float *row_loss, const float temp, const float alpha, const int save, const uint n,
                     const uint k)
{
    uint r = get_global_id(0);
    if (r >= n) return;
    global const float *sr = s + (size_t)r * k, *tr = t + (size_t)r * k;
    float ms = sr[0], mt = tr[0];
    for (uint j = 1; j < k; j++) {
        ms = fmax(ms, sr[j]);
        mt = fmax(mt, tr[j]);
    }
    float z1 = 0.0f, zs = 0.0f, zt = 0.0f; /* sums of exp(s - ms), exp((s - ms)/T), exp((t - mt)/T) */
    for (uint j = 0; j < k; j++) {
        z1 += exp(sr[j] - ms);
        zs += exp((sr[j] - ms) / temp);
        zt += exp((tr[j] - mt) / temp);
    }
    float lzs = log(zs), lzt = log(zt);
    float kl = 0.0f;
    for (uint j = 0; j < k; j++) {
        float lq = (tr[j] - mt) / temp - lzt, lp = (sr[j] - ms) / temp - lzs;
        kl += exp(lq) * (lq - lp);
    }
    float l = labels[r];
    uint y = dkl_label_ok(l, k) ? (uint)l : 0u;
    float ce = ms + log(z1) - sr[y];
    row_loss[r] = alpha * temp * temp * kl + (1.0f - alpha) * ce;
    if (save) {
        global float *cr = c + (size_t)r * k;
        for (uint j = 0; j < k; j++) {
            float p = exp((sr[j] - ms) / temp - lzs), q = exp((tr[j] - mt) / temp - lzt);
            float sm = exp(sr[j] - ms) / z1 - (j == y ? 1.0f : 0.0f);
            cr[j] = alpha * temp * (p - q) + (1.0f - alpha) * sm;
        }
    }
}

/* One work-group of DKL_WG: out[0] = mean of row_loss[0..n) (fixed order: deterministic); after the row losses,
 * row_loss[n] = number of invalid labels and row_loss[n+1] = the first invalid row (-1 if none). */
kernel void dkl_mean(global float *row_loss, global const float *labels, global float *out, const uint n, const uint k)
{
    local float sum[DKL_WG];
    local uint bad[DKL_WG], first[DKL_WG];
    uint t = get_local_id(0);
    float s = 0.0f;
    uint b = 0, f = 0xffffffffu;
    for (uint i = t; i < n; i += DKL_WG) {
        s += row_loss[i];
        if (!dkl_label_ok(labels[i], k)) {
            if (b == 0) f = i;
            b++;
        }
    }
    sum[t] = s;
    bad[t] = b;
    first[t] = f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint w = DKL_WG / 2; w > 0; w >>= 1) {
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

/* ds (N,K) = c * dL / N; acc adds into ds (the logits feed several nodes). */
kernel void dkl_backward(global const float *c, global const float *dloss, global float *ds, const int acc,
                         const uint n, const uint k)
{
    uint j = get_global_id(0), r = get_global_id(1);
    if (j >= k || r >= n) return;
    size_t i = (size_t)r * k + j;
    float d = c[i] * (dloss[0] / (float)n);
    ds[i] = acc ? ds[i] + d : d;
}
