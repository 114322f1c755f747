/* mse.cl - mean squared error: first stage of the deterministic mean (see reduce.cl), gradients of both inputs. */
#ifndef RED_P
#define RED_P 256 /* partial sums of the first stage (fixed: same summation order on every device) */
#endif

/* Work-item p of RED_P sums elements p, p + RED_P, ... (neighbouring work-items read neighbouring values). */
kernel void mse_partial(global const float *x, global const float *t, global float *partial, const uint n)
{
    uint p = get_global_id(0);
    if (p >= RED_P) return;
    float s = 0.0f;
    for (uint i = p; i < n; i += RED_P) {
        float d = x[i] - t[i];
        s += d * d;
    }
    partial[p] = s;
}

/* dx = 2 (x - t) dL/n, dt = -dx. Modes: 0 skip, 1 write, 2 add (the input feeds several nodes).
 * dx and dt may be the same memory (mse(x, x)): each work-item writes dx before it reads dt. */
kernel void mse_backward(global const float *x, global const float *t, global const float *dloss, global float *dx,
                         global float *dt, const int mode_x, const int mode_t, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float d = 2.0f * (x[i] - t[i]) * (dloss[0] / (float)n);
    if (mode_x) dx[i] = mode_x == 2 ? dx[i] + d : d;
    if (mode_t) dt[i] = mode_t == 2 ? dt[i] - d : -d;
}
