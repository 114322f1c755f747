/* optim.cl - optimizer updates over the whole parameter arena in one launch. */

#ifndef CLIP_PARTS
#define CLIP_PARTS 1024 /* work-items of the first stage of the gradient norm (fixed: same order everywhere) */
#endif

/* Weight decay applies to elements [0, n_decay) of the arena: the graph puts decayed parameters first. */

/* SGD with optional momentum / Nesterov, L2 weight decay and L1 penalty (PyTorch semantics, dampening 0). */
kernel void sgd_step(global float *w, global const float *g, global float *m, const float lr,
                     const float momentum, const int nesterov, const float wd_all, const float l1, const uint n,
                     const uint n_decay)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float wd = i < n_decay ? wd_all : 0.0f;
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
                      const float b1, const float b2, const float eps, const float wd_all, const float l1,
                      const int decoupled, const float bc1, const float bc2, const uint n, const uint n_decay)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    float wd = i < n_decay ? wd_all : 0.0f;
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

/* ---- gradient norm and clipping: three launches, no host round trip. */

/* Stage 1: work-item p sums the squares of elements p, p + CLIP_PARTS, ... (coalesced on GPUs). */
kernel void grad_sumsq(global const float *g, global float *part, const uint n)
{
    uint p = get_global_id(0);
    if (p >= CLIP_PARTS) return;
    float s = 0.0f;
    for (uint i = p; i < n; i += CLIP_PARTS) s += g[i] * g[i];
    part[p] = s;
}

/* Stage 2: one work-item adds the partials in order; out[0] = norm, out[1] = the factor the gradients are
 * scaled by: min(1, max_norm / (norm + 1e-6)) as in torch.nn.utils.clip_grad_norm_, 1 when the norm is not
 * finite (the gradients are left alone; the caller sees the norm). */
kernel void grad_norm(global float *part, const float max_norm)
{
    if (get_global_id(0) != 0) return;
    float s = 0.0f;
    for (uint p = 0; p < CLIP_PARTS; p++) s += part[p];
    float norm = sqrt(s);
    float scale = max_norm / (norm + 1e-6f);
    if (!(scale < 1.0f) || !isfinite(norm)) scale = 1.0f;
    part[CLIP_PARTS] = norm;
    part[CLIP_PARTS + 1] = scale;
}

/* Stage 3: g *= scale (a multiplication by exactly 1 when under the norm). */
kernel void grad_scale(global float *g, global const float *part, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    g[i] *= part[CLIP_PARTS + 1];
}

/* Gradient accumulation: the backward pass wrote this micro-batch's gradient; add the sum so far. */
kernel void grad_add(global float *g, global const float *acc, const uint n)
{
    uint i = get_global_id(0);
    if (i >= n) return;
    g[i] += acc[i];
}
