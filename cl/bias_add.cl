/* bias_add.cl - per-channel bias over dim 1 of (N,C,HW) and its gradient. */

/* y = x + b[c], one work-item per row of HW values (one channel of one sample): the contiguous inner loop
 * is what CPU compilers vectorize. For HW >= a few dozen. */
kernel void bias_add_rows(global const float *x, global const float *b, global float *y, const uint C,
                          const uint HW, const uint NC)
{
    uint r = get_global_id(0);
    if (r >= NC) return;
    float bc = b[r % C];
    size_t o = (size_t)r * HW;
    for (uint j = 0; j < HW; j++) y[o + j] = x[o + j] + bc;
}

/* The same, one work-item per value: for short rows such as (N,C) inputs. */
kernel void bias_add_elems(global const float *x, global const float *b, global float *y, const uint C,
                           const uint HW, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    y[i] = x[i] + b[(i / HW) % C];
}

/* dx = dy, `acc` adds into dx. */
kernel void bias_add_dx(global const float *dy, global float *dx, const int acc, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    dx[i] = acc ? dx[i] + dy[i] : dy[i];
}

#ifndef BA_LANES
#define BA_LANES 16
#endif

/* db[c] = sum over n and s of dy; one work-item per channel, contiguous inner loop over HW into BA_LANES
 * independent partial sums (the loop CPU compilers vectorize). */
kernel void bias_add_db(global const float *dy, global float *db, const uint N, const uint C, const uint HW)
{
    uint c = get_global_id(0);
    if (c >= C) return;
    float a[BA_LANES];
    for (uint k = 0; k < BA_LANES; k++) a[k] = 0.0f;
    for (uint n = 0; n < N; n++) {
        global const float *row = dy + ((size_t)n * C + c) * HW;
        uint j = 0;
        for (; j + BA_LANES <= HW; j += BA_LANES)
            for (uint k = 0; k < BA_LANES; k++) a[k] += row[j + k];
        for (uint k = 0; j + k < HW; k++) a[k] += row[j + k];
    }
    float s = 0.0f;
    for (uint k = 0; k < BA_LANES; k++) s += a[k];
    db[c] = s;
}
