/* add.cl - elementwise a + b and its gradient. */

kernel void add_forward(global const float *a, global const float *b, global float *y, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    y[i] = a[i] + b[i];
}

/* da = scale * dy (scale 2 when a and b share one gradient: add(x, x)); `acc` adds into da. */
kernel void add_backward1(global const float *dy, global float *da, const float scale, const int acc, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float d = scale * dy[i];
    da[i] = acc ? da[i] + d : d;
}

/* Both gradients in one pass over dy (da and db are distinct memory). */
kernel void add_backward2(global const float *dy, global float *da, global float *db, const int acc_a,
                          const int acc_b, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float d = dy[i];
    da[i] = acc_a ? da[i] + d : d;
    db[i] = acc_b ? db[i] + d : d;
}
