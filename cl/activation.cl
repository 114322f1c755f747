/* activation.cl - elementwise activations and their gradients. ACT selects the function at build time:
 * 0 relu, 1 leaky relu, 2 sigmoid, 3 tanh, 4 gelu (exact, x * Phi(x)), 5 gelu in GPT-2's tanh approximation. */
#ifndef ACT
#define ACT 0
#endif

kernel void act_forward(global const float *x, global float *y, const float slope, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float v = x[i];
#if ACT == 0
    y[i] = fmax(v, 0.0f);
#elif ACT == 1
    y[i] = v > 0.0f ? v : slope * v;
#elif ACT == 2
    y[i] = 1.0f / (1.0f + exp(-v));
#elif ACT == 3
    y[i] = tanh(v);
#elif ACT == 4
    y[i] = 0.5f * v * (1.0f + erf(v * 0.70710678118654752f));
#else
    y[i] = 0.5f * v * (1.0f + tanh(0.79788456080286536f * (v + 0.044715f * v * v * v)));
#endif
}

/* dx = dy * f'(.) ; `acc` adds into dx instead of overwriting (the input feeds several nodes). */
kernel void act_backward(global const float *x, global const float *y, global const float *dy, global float *dx,
                         const float slope, const int acc, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float d;
#if ACT == 0
    d = y[i] > 0.0f ? dy[i] : 0.0f;
#elif ACT == 1
    d = x[i] > 0.0f ? dy[i] : slope * dy[i];
#elif ACT == 2
    float s = y[i];
    d = dy[i] * s * (1.0f - s);
#elif ACT == 3
    float t = y[i];
    d = dy[i] * (1.0f - t * t);
#elif ACT == 5
    float v = x[i];
    float t = tanh(0.79788456080286536f * (v + 0.044715f * v * v * v));
    d = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * 0.79788456080286536f * (1.0f + 0.134145f * v * v));
#else
    float v = x[i];
    float cdf = 0.5f * (1.0f + erf(v * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * exp(-0.5f * v * v);
    d = dy[i] * (cdf + v * pdf);
#endif
    dx[i] = acc ? dx[i] + d : d;
}
