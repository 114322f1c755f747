/* softmax.cl - softmax over dim 1 of (N,C,HW) at each position (max-subtracted), and its gradient. */

/* Positions per work-item. Each work-item keeps per-position state in private arrays and walks the channels
 * with a contiguous inner loop over its positions: on CPU devices that inner loop is what gets vectorized. */
#ifndef SM_CHUNK
#define SM_CHUNK 16
#endif

/* global (ceil(HW / SM_CHUNK), N) */
kernel void softmax_forward(global const float *x, global float *y, const uint C, const uint HW, const uint N)
{
    uint s0 = get_global_id(0) * SM_CHUNK, n = get_global_id(1);
    if (s0 >= HW || n >= N) return;
    uint len = min((uint)SM_CHUNK, HW - s0);
    global const float *xb = x + (size_t)n * C * HW + s0;
    global float *yb = y + (size_t)n * C * HW + s0;
    float m[SM_CHUNK], sum[SM_CHUNK];
    for (uint j = 0; j < SM_CHUNK; j++) m[j] = -INFINITY, sum[j] = 0.0f;
    for (uint c = 0; c < C; c++)
        for (uint j = 0; j < len; j++) m[j] = fmax(m[j], xb[(size_t)c * HW + j]);
    for (uint c = 0; c < C; c++)
        for (uint j = 0; j < len; j++) {
            float e = exp(xb[(size_t)c * HW + j] - m[j]);
            yb[(size_t)c * HW + j] = e;
            sum[j] += e;
        }
    for (uint j = 0; j < SM_CHUNK; j++) sum[j] = 1.0f / sum[j];
    for (uint c = 0; c < C; c++)
        for (uint j = 0; j < len; j++) yb[(size_t)c * HW + j] *= sum[j];
}

/* dx = y * (dy - sum_c dy*y); `acc` adds into dx (the input feeds several nodes). */
kernel void softmax_backward(global const float *y, global const float *dy, global float *dx, const int acc,
                             const uint C, const uint HW, const uint N)
{
    uint s0 = get_global_id(0) * SM_CHUNK, n = get_global_id(1);
    if (s0 >= HW || n >= N) return;
    uint len = min((uint)SM_CHUNK, HW - s0);
    size_t base = (size_t)n * C * HW + s0;
    float dot[SM_CHUNK];
    for (uint j = 0; j < SM_CHUNK; j++) dot[j] = 0.0f;
    for (uint c = 0; c < C; c++)
        for (uint j = 0; j < len; j++) dot[j] += dy[base + (size_t)c * HW + j] * y[base + (size_t)c * HW + j];
    for (uint c = 0; c < C; c++)
        for (uint j = 0; j < len; j++) {
            size_t i = base + (size_t)c * HW + j;
            float d = y[i] * (dy[i] - dot[j]);
            dx[i] = acc ? dx[i] + d : d;
        }
}
