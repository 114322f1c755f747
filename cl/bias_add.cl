/* bias_add.cl - per-channel bias over dim 1 of (N,C,HW) and its gradient. */

/* y = x + b[c]; global (HW, N*C): each row of HW values shares one channel. */
kernel void bias_add_forward(global const float *x, global const float *b, global float *y, const uint C,
                             const uint HW, const uint NC)
{
    uint s = get_global_id(0), r = get_global_id(1);
    if (s >= HW || r >= NC) return;
    size_t i = (size_t)r * HW + s;
    y[i] = x[i] + b[r % C];
}

/* dx = dy, `acc` adds into dx. */
kernel void bias_add_dx(global const float *dy, global float *dx, const int acc, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    dx[i] = acc ? dx[i] + dy[i] : dy[i];
}

/* db[c] = sum over n and s of dy; one work-item per channel, contiguous inner loop over HW. */
kernel void bias_add_db(global const float *dy, global float *db, const uint N, const uint C, const uint HW)
{
    uint c = get_global_id(0);
    if (c >= C) return;
    float s = 0.0f;
    for (uint n = 0; n < N; n++) {
        global const float *row = dy + ((size_t)n * C + c) * HW;
        float r = 0.0f;
        for (uint j = 0; j < HW; j++) r += row[j];
        s += r;
    }
    db[c] = s;
}
