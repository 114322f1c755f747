/* optim.cl - optimizer updates over the whole parameter arena in one launch. */

/* SGD with optional momentum / Nesterov, L2 weight decay and L1 penalty (PyTorch semantics, dampening 0). */
kernel void sgd_step(global float *w, global const float *g, global float *m, const float lr,
                     const float momentum, const int nesterov, const float wd, const float l1, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float wi = w[i];
    float gi = g[i] + wd * wi + l1 * sign(wi);
    if (momentum > 0.0f) {
        float b = momentum * m[i] + gi; /* buffer starts at 0, so step 1 gives b = g as in PyTorch */
        m[i] = b;
        gi = nesterov ? gi + momentum * b : b;
    }
    w[i] = wi - lr * gi;
}

/* Adam (L2 added to the gradient) and AdamW (decoupled decay); bc1/bc2 are 1 - beta^t. */
kernel void adam_step(global float *w, global const float *g, global float *m, global float *v, const float lr,
                      const float b1, const float b2, const float eps, const float wd, const float l1,
                      const int decoupled, const float bc1, const float bc2, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float wi = w[i];
    float gi = g[i] + l1 * sign(wi);
    if (decoupled)
        wi = wi * (1.0f - lr * wd);
    else
        gi += wd * wi;
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - (lr / bc1) * mi / (sqrt(vi / bc2) + eps);
}
