/* dropout.cl - inverted dropout. The op is linear in x for a fixed mask, so one kernel serves the forward
 * pass (x -> y) and the backward pass (dy -> dx): the mask is recomputed from the counter-based hash. */

/* y = train ? (u < p ? 0 : x * scale) : x, u = clt_uniform(seed, counter, i); `acc` adds into y. */
kernel void dropout_apply(global const float *x, global float *y, const uint seed_lo, const uint seed_hi,
                          const uint counter, const float p, const float scale, const int train, const int acc,
                          const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float v = x[i];
    if (train) v = clt_uniform(seed_lo, seed_hi, counter, i) < p ? 0.0f : v * scale;
    y[i] = acc ? y[i] + v : v;
}
