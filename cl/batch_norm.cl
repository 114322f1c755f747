/* batch_norm.cl - batch normalization over dim 1 of (N,C,HW). One work-item per channel walks the channel's
 * N rows of HW contiguous values: statistics and normalization in one launch, no atomics. */

/* Independent partial sums per channel: the inner loop over them is what CPU compilers vectorize. */
#ifndef BN_LANES
#define BN_LANES 16
#endif

/* Training pass: batch mean and biased variance normalize; the running statistics move towards the batch
 * ones with the unbiased variance (PyTorch). mean/istd are saved for the backward pass. */
kernel void bn_forward_train(global const float *x, global float *y, global const float *gamma,
                             global const float *beta, global float *mean_out, global float *istd_out,
                             global float *run_mean, global float *run_var, const float eps, const float momentum,
                             const uint N, const uint C, const uint HW)
{
    uint c = get_global_id(0);
    if (c >= C) return;
    const float M = (float)N * (float)HW;
    /* Sums of x - K with K a value of the channel: no catastrophic cancellation when |mean| >> std. */
    const float K = x[(size_t)c * HW];
    float a1[BN_LANES], a2[BN_LANES];
    for (uint k = 0; k < BN_LANES; k++) a1[k] = a2[k] = 0.0f;
    for (uint n = 0; n < N; n++) {
        global const float *row = x + ((size_t)n * C + c) * HW;
        uint j = 0;
        for (; j + BN_LANES <= HW; j += BN_LANES)
            for (uint k = 0; k < BN_LANES; k++) {
                float d = row[j + k] - K;
                a1[k] += d;
                a2[k] += d * d;
            }
        for (uint k = 0; j + k < HW; k++) {
            float d = row[j + k] - K;
            a1[k] += d;
            a2[k] += d * d;
        }
    }
    float s1 = 0.0f, s2 = 0.0f;
    for (uint k = 0; k < BN_LANES; k++) s1 += a1[k], s2 += a2[k];
    float dm = s1 / M;
    float var = fmax(s2 / M - dm * dm, 0.0f);
    float mean = K + dm;
    float istd = rsqrt(var + eps);
    mean_out[c] = mean;
    istd_out[c] = istd;
    float unbiased = M > 1.0f ? var * (M / (M - 1.0f)) : var;
    run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * mean;
    run_var[c] = (1.0f - momentum) * run_var[c] + momentum * unbiased;
    float a = gamma[c] * istd, b = beta[c] - mean * a;
    for (uint n = 0; n < N; n++) {
        size_t o = ((size_t)n * C + c) * HW;
        for (uint j = 0; j < HW; j++) y[o + j] = x[o + j] * a + b;
    }
}

/* Evaluation pass: the running statistics normalize. */
kernel void bn_forward_eval(global const float *x, global float *y, global const float *gamma,
                            global const float *beta, global const float *run_mean, global const float *run_var,
                            const float eps, const uint N, const uint C, const uint HW)
{
    uint c = get_global_id(0);
    if (c >= C) return;
    float a = gamma[c] * rsqrt(run_var[c] + eps), b = beta[c] - run_mean[c] * a;
    for (uint n = 0; n < N; n++) {
        size_t o = ((size_t)n * C + c) * HW;
        for (uint j = 0; j < HW; j++) y[o + j] = x[o + j] * a + b;
    }
}

/* dgamma = sum dy*xhat, dbeta = sum dy; dx (if need_dx; `acc` adds) is the full batch-statistics gradient
 * after a training pass, gamma*istd*dy after an evaluation pass. `sd` holds istd (training: saved) or the
 * running variance (evaluation). */
kernel void bn_backward(global const float *x, global const float *dy, global float *dx, global const float *gamma,
                        global float *dgamma, global float *dbeta, global const float *mean, global const float *sd,
                        const float eps, const int train, const int need_dx, const int acc, const uint N,
                        const uint C, const uint HW)
{
    uint c = get_global_id(0);
    if (c >= C) return;
    const float mu = mean[c], istd = train ? sd[c] : rsqrt(sd[c] + eps);
    float a1[BN_LANES], a2[BN_LANES]; /* lanes of sum dy, sum dy * (x - mu) */
    for (uint k = 0; k < BN_LANES; k++) a1[k] = a2[k] = 0.0f;
    for (uint n = 0; n < N; n++) {
        global const float *g = dy + ((size_t)n * C + c) * HW, *xr = x + ((size_t)n * C + c) * HW;
        uint j = 0;
        for (; j + BN_LANES <= HW; j += BN_LANES)
            for (uint k = 0; k < BN_LANES; k++) {
                a1[k] += g[j + k];
                a2[k] += g[j + k] * (xr[j + k] - mu);
            }
        for (uint k = 0; j + k < HW; k++) {
            a1[k] += g[j + k];
            a2[k] += g[j + k] * (xr[j + k] - mu);
        }
    }
    float sdy = 0.0f, sdyx = 0.0f;
    for (uint k = 0; k < BN_LANES; k++) sdy += a1[k], sdyx += a2[k];
    dgamma[c] = sdyx * istd;
    dbeta[c] = sdy;
    if (!need_dx) return;
    const float M = (float)N * (float)HW;
    /* dx = a*dy + b*(x - mu) + d, folded per channel. */
    float a = gamma[c] * istd, b = 0.0f, d = 0.0f;
    if (train) {
        b = -a * istd * istd * sdyx / M;
        d = -a * sdy / M;
    }
    for (uint n = 0; n < N; n++) {
        size_t o = ((size_t)n * C + c) * HW;
        for (uint j = 0; j < HW; j++) {
            float v = a * dy[o + j] + b * (x[o + j] - mu) + d;
            dx[o + j] = acc ? dx[o + j] + v : v;
        }
    }
}
