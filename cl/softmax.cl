/* softmax.cl - softmax over dim 1 of (N,C,HW) at each position (max-subtracted), and its gradient. */

/* One work-item per (n, s): adjacent work-items read adjacent positions, so loads stay contiguous. */
kernel void softmax_forward(global const float *x, global float *y, const uint C, const uint HW, const uint N)
{
    uint s = get_global_id(0), n = get_global_id(1);
    if (s >= HW || n >= N) return;
    size_t base = (size_t)n * C * HW + s;
    float m = -INFINITY;
    for (uint c = 0; c < C; c++) m = fmax(m, x[base + (size_t)c * HW]);
    float sum = 0.0f;
    for (uint c = 0; c < C; c++) {
        float e = exp(x[base + (size_t)c * HW] - m);
        y[base + (size_t)c * HW] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (uint c = 0; c < C; c++) y[base + (size_t)c * HW] *= inv;
}

/* dx = y * (dy - sum_c dy*y); `acc` adds into dx (the input feeds several nodes). */
kernel void softmax_backward(global const float *y, global const float *dy, global float *dx, const int acc,
                             const uint C, const uint HW, const uint N)
{
    uint s = get_global_id(0), n = get_global_id(1);
    if (s >= HW || n >= N) return;
    size_t base = (size_t)n * C * HW + s;
    float dot = 0.0f;
    for (uint c = 0; c < C; c++) dot += dy[base + (size_t)c * HW] * y[base + (size_t)c * HW];
    for (uint c = 0; c < C; c++) {
        size_t i = base + (size_t)c * HW;
        float d = y[i] * (dy[i] - dot);
        dx[i] = acc ? dx[i] + d : d;
    }
}
