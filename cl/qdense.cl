/* qdense.cl - int8 fully connected layer: the input quantized to int8, int32 dot products, a float output
 * dequantized per unit (the arithmetic is documented at clt_qdense in cltrain.h). */

/* q = clamp(round(x * inv), -127, 127), elementwise. */
kernel void qdense_quantize(global const float *x, global char *q, const float inv, const uint total)
{
    uint i = get_global_id(0);
    if (i >= total) return;
    q[i] = (char)(int)clamp(round(x[i] * inv), -127.0f, 127.0f);
}

/* y (N,U) = (float)(q (N,F) . w (U,F) per row and unit) * osc[u] + b[u]. Work-item: one unit u of one row n. */
kernel void qdense_forward(global const char *q, global const char *w, global const float *osc,
                           global const float *b, global float *y, const uint F, const uint U, const uint N,
                           const int has_bias)
{
    uint u = get_global_id(0), n = get_global_id(1);
    if (u >= U || n >= N) return;
    global const char *qr = q + (size_t)n * F, *wr = w + (size_t)u * F;
    int acc = 0;
    for (uint f = 0; f < F; f++) acc += (int)qr[f] * (int)wr[f];
    y[(size_t)n * U + u] = (float)acc * osc[u] + (has_bias ? b[u] : 0.0f);
}
