/* prune.cl - keeps pruned parameters at zero: an element-wise product with the 0/1 mask of the parameter arena. */

kernel void prune_mask(global float *a, global const float *mask, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    a[i] *= mask[i];
}
