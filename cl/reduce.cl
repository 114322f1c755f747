/* reduce.cl - final stage of the deterministic two-stage means of the elementwise losses (mse, bce). */
#ifndef RED_P
#define RED_P 256 /* partial sums of the first stage (fixed: same summation order on every device) */
#endif

/* A single work-item adds the RED_P partials in order: out[0] = mean. */
kernel void mean_final(global const float *partial, global float *out, const uint n)
{
    if (get_global_id(0) != 0) return;
    float s = 0.0f;
    for (uint p = 0; p < RED_P; p++) s += partial[p];
    out[0] = s / (float)n;
}
