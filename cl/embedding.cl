/* embedding.cl - token embedding (rows of a table picked by ids stored as floats) and learned position
 * embedding; gradients summed in a fixed order (deterministic, no atomics). */

/* y (P, C) = weight[ids[p]]; an id that is not an integer in [0, V) gives a zero row and sets flag[0] (flag[1]:
 * one such position), which the host reads back after the pass. */
kernel void emb_forward(global const float *ids, global const float *w, global float *y, global float *flag,
                        const uint P, const uint C, const uint V)
{
    uint c = get_global_id(0), p = get_global_id(1);
    if (c >= C || p >= P) return;
    float f = ids[p];
    if (!(f >= 0.0f && f < (float)V && f == floor(f))) {
        y[(size_t)p * C + c] = 0.0f;
        if (c == 0) {
            flag[0] = 1.0f;
            flag[1] = (float)p;
        }
        return;
    }
    y[(size_t)p * C + c] = w[(size_t)(uint)f * C + c];
}

/* dw (V, C): one work-item per table entry sums dy over the positions holding its id, in position order, so the
 * result is the same on every run and device. `acc` adds to dw (the table also feeds a tied output layer). */
kernel void emb_backward(global const float *ids, global const float *dy, global float *dw, const int acc,
                         const uint P, const uint C, const uint V)
{
    uint c = get_global_id(0), v = get_global_id(1);
    if (c >= C || v >= V) return;
    float fv = (float)v, s = 0.0f;
    for (uint p = 0; p < P; p++)
        if (ids[p] == fv) s += dy[(size_t)p * C + c];
    size_t o = (size_t)v * C + c;
    dw[o] = acc ? dw[o] + s : s;
}

/* y (B, TC) = x + w (TC): the same position table added to every sequence. */
kernel void pos_forward(global const float *x, global const float *w, global float *y, const uint B, const uint TC)
{
    uint i = get_global_id(0), b = get_global_id(1);
    if (i >= TC || b >= B) return;
    size_t o = (size_t)b * TC + i;
    y[o] = x[o] + w[i];
}

/* dx = dy (added with `acc`); dw (TC) = sum over the batch of dy, in batch order. */
kernel void pos_backward_dx(global const float *dy, global float *dx, const int acc, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    dx[i] = acc ? dx[i] + dy[i] : dy[i];
}

kernel void pos_backward_w(global const float *dy, global float *dw, const uint B, const uint TC)
{
    uint i = get_global_id(0);
    if (i >= TC) return;
    float s = 0.0f;
    for (uint b = 0; b < B; b++) s += dy[(size_t)b * TC + i];
    dw[i] = s;
}
