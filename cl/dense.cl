/* dense.cl - bias helpers for the fully connected layer (the GEMMs run through clt__gemm). */

/* y (rows, cols) += b (cols) */
kernel void bias_rows(global float *y, global const float *b, const uint rows, const uint cols)
{
    uint c = get_global_id(0), r = get_global_id(1);
    if (c >= cols || r >= rows) return;
    y[r * cols + c] += b[c];
}

/* db (cols) = sum over rows of dy (rows, cols) */
kernel void bias_grad_rows(global const float *dy, global float *db, const uint rows, const uint cols)
{
    uint c = get_global_id(0);
    if (c >= cols) return;
    float s = 0.0f;
    for (uint r = 0; r < rows; r++) s += dy[r * cols + c];
    db[c] = s;
}
