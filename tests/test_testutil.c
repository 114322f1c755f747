/* test_testutil.c - the checks themselves can fail: per-element tolerances (a small entry is not hidden by a
 * large one), the norm check, the worst-element report, and the finite-difference index choice (no repeats,
 * every corner and border element, everything in small tensors). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Runs tu_close and reports whether it passed, without counting its failure. */
static int close_passes(const float *got, const double *ref, size_t n, double rtol, double atol)
{
    int before = tu_failures, ok = tu_close("self-test (a FAIL line here is expected)", got, ref, n, rtol, atol);
    tu_failures = before;
    return ok;
}

static void check_close(void)
{
    /* ref 1000 and 1e-3; the small entry is off by 1e-4, ten times its own allowance: the old scheme
     * (tolerance scaled by max |ref| = 1000) passed it. */
    double ref[2] = {1000, 1e-3};
    float got[2] = {1000, 1.1e-3f};
    TU_CHECK(!close_passes(got, ref, 2, 1e-5, 1e-6), "a small entry off by 100x its allowance must fail");
    got[1] = (float)1e-3;
    TU_CHECK(close_passes(got, ref, 2, 1e-5, 1e-6), "equal arrays must pass");
    /* Every element just under its bound (0.9 of it): each passes, the RMS error does not. */
    enum { N = 100 };
    double r[N];
    float g[N];
    for (int i = 0; i < N; i++) r[i] = 1.0 + i, g[i] = (float)(r[i] + 0.9 * (1e-3 + 1e-3 * r[i]));
    TU_CHECK(!close_passes(g, r, N, 1e-3, 1e-3), "a systematic offset under the per-element bound must fail the norm");
    /* Isolated errors at the bound with the rest exact pass. */
    for (int i = 0; i < N; i++) g[i] = (float)r[i];
    g[7] = (float)(r[7] + 0.9 * (1e-3 + 1e-3 * r[7]));
    TU_CHECK(close_passes(g, r, N, 1e-3, 1e-3), "one element near its bound passes");
    g[7] = NAN;
    TU_CHECK(!close_passes(g, r, N, 1e-3, 1e-3), "NaN must fail");
    g[7] = (float)r[7];
    double rz[1] = {0};
    float gz[1] = {1e-30f};
    TU_CHECK(!close_passes(gz, rz, 1, 0, 0), "zero tolerance: any difference fails");
    printf("ok   tu_close\n");
}

static void check_indices(void)
{
    tu_rng rng = {5};
    /* Small: every element. */
    int small[4] = {2, 3, 4, 5};
    size_t idx[4096];
    size_t m = tu_fd_indices(4, small, 1, 512, 512, 64, &rng, idx);
    TU_CHECK(m == 120, "small tensor: %zu of 120 indices", m);
    for (size_t i = 0; i < m; i++) TU_CHECK(idx[i] == i, "small tensor: index %zu is %zu", i, idx[i]);
    /* Large (2,3,20,30), border 2: no repeats; every element within 2 of an H or W end; 64 of the interior. */
    int dims[4] = {2, 3, 20, 30};
    size_t n = 2 * 3 * 20 * 30;
    m = tu_fd_indices(4, dims, 2, 512, 4096, 64, &rng, idx);
    char *seen = calloc(n, 1);
    size_t border = 0, inner = 0, dup = 0;
    for (size_t i = 0; i < m; i++) {
        TU_CHECK(idx[i] < n, "index %zu out of range", idx[i]);
        if (idx[i] >= n) continue;
        dup += seen[idx[i]]++ != 0;
        size_t w = idx[i] % 30, h = idx[i] / 30 % 20;
        if (h < 2 || h >= 18 || w < 2 || w >= 28) border++;
        else inner++;
    }
    size_t want_border = 6 * (20 * 30 - 16 * 26);
    TU_CHECK(dup == 0, "%zu repeated indices", dup);
    TU_CHECK(border == want_border, "border elements: %zu of %zu", border, want_border);
    TU_CHECK(inner == 64, "interior elements: %zu, want 64", inner);
    /* Corners stay even when the edges are capped. */
    memset(seen, 0, n);
    m = tu_fd_indices(4, dims, 1, 512, 10, 5, &rng, idx);
    for (size_t i = 0; i < m; i++) seen[idx[i]] = 1;
    size_t corners[4] = {0, 29, 19 * 30, 19 * 30 + 29}, last = n - 600; /* image 1, channel 2 */
    for (int c = 0; c < 4; c++)
        TU_CHECK(seen[corners[c]] && seen[last + corners[c]], "corner %zu missing with capped edges", corners[c]);
    TU_CHECK(m == 16 + 10 + 5, "capped: %zu indices, want 16 corners + 10 edges + 5 interior", m);
    free(seen);
    printf("ok   tu_fd_indices\n");
}

int main(void)
{
    check_close();
    check_indices();
    return tu_finish("test_testutil");
}
