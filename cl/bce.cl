/* bce.cl - binary cross-entropy on logits: first stage of the deterministic mean (reduce.cl), both gradients. */
#ifndef RED_P
#define RED_P 256 /* partial sums of the first stage (fixed: same summation order on every device) */
#endif

/* Stable form: max(x,0) - x t + log(1 + exp(-|x|)). */
inline float bce_term(float x, float t) { return fmax(x, 0.0f) - x * t + log1p(exp(-fabs(x))); }

/* Work-item p of RED_P sums elements p, p + RED_P, ... (neighbouring work-items read neighbouring values). */
kernel void bce_partial(global const float *x, global const float *t, global float *partial, const uint n)
{
    uint p = get_global_id(0);
    if (p >= RED_P) return;
    float s = 0.0f;
    for (uint i = p; i < n; i += RED_P) s += bce_term(x[i], t[i]);
    partial[p] = s;
}

/* dx = (sigmoid(x) - t) dL/n, dt = -x dL/n. Modes: 0 skip, 1 write, 2 add (the input feeds several nodes).
 * dx and dt may be the same memory (bce(x, x)): each work-item writes dx before it reads dt. */
kernel void bce_backward(global const float *x, global const float *t, global const float *dloss, global float *dx,
                         global float *dt, const int mode_x, const int mode_t, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float xi = x[i], ti = t[i], sc = dloss[0] / (float)n;
    if (mode_x) {
        float sg = 1.0f / (1.0f + exp(-xi));
        float d = (sg - ti) * sc;
        dx[i] = mode_x == 2 ? dx[i] + d : d;
    }
    if (mode_t) {
        float d = -xi * sc;
        dt[i] = mode_t == 2 ? dt[i] + d : d;
    }
}
