/* layer_norm.cl - layer normalization over the last dimension (C values per row) with scale and shift. */

/* One work-item per row: mean and 1/std (two passes over the row, for precision), y = xhat * gamma + beta.
 * stats (rows, 2) keeps mean and rstd for the backward pass. */
kernel void ln_forward(global const float *x, global const float *gamma, global const float *beta, global float *y,
                       global float *stats, const float eps, const uint rows, const uint C)
{
    uint r = get_global_id(0);
    if (r >= rows) return;
    global const float *xr = x + (size_t)r * C;
    float s = 0.0f;
    for (uint c = 0; c < C; c++) s += xr[c];
    float mean = s / (float)C, v = 0.0f;
    for (uint c = 0; c < C; c++) {
        float d = xr[c] - mean;
        v += d * d;
    }
    float rstd = rsqrt(v / (float)C + eps);
    global float *yr = y + (size_t)r * C;
    for (uint c = 0; c < C; c++) yr[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
    stats[2 * r] = mean;
    stats[2 * r + 1] = rstd;
}

/* dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma; `acc` adds into dx. */
kernel void ln_backward_dx(global const float *x, global const float *gamma, global const float *stats,
                           global const float *dy, global float *dx, const int acc, const uint rows, const uint C)
{
    uint r = get_global_id(0);
    if (r >= rows) return;
    size_t o = (size_t)r * C;
    float mean = stats[2 * r], rstd = stats[2 * r + 1];
    float m1 = 0.0f, m2 = 0.0f;
    for (uint c = 0; c < C; c++) {
        float dh = dy[o + c] * gamma[c];
        m1 += dh;
        m2 += dh * (x[o + c] - mean) * rstd;
    }
    m1 /= (float)C;
    m2 /= (float)C;
    for (uint c = 0; c < C; c++) {
        float xh = (x[o + c] - mean) * rstd;
        float d = rstd * (dy[o + c] * gamma[c] - m1 - xh * m2);
        dx[o + c] = acc ? dx[o + c] + d : d;
    }
}

/* One work-item per column, rows summed in order (deterministic): dgamma = sum dy * xhat, dbeta = sum dy.
 * `acc` adds into the parameter gradients (a shared parameter). */
kernel void ln_backward_params(global const float *x, global const float *stats, global const float *dy,
                               global float *dgamma, global float *dbeta, const int acc, const uint rows,
                               const uint C)
{
    uint c = get_global_id(0);
    if (c >= C) return;
    float sg = 0.0f, sb = 0.0f;
    for (uint r = 0; r < rows; r++) {
        size_t o = (size_t)r * C + c;
        sg += dy[o] * (x[o] - stats[2 * r]) * stats[2 * r + 1];
        sb += dy[o];
    }
    dgamma[c] = acc ? dgamma[c] + sg : sg;
    dbeta[c] = acc ? dbeta[c] + sb : sb;
}
