/* bench_conv2d.c - per-layer conv2d forward/backward times (batch 64) for the algorithm chosen, or the one
 * forced with $CLTRAIN_CONV_ALGO=im2col|direct. Not a test: run by hand, prints a table.
 * Usage: bench_conv2d [reps [first-layers]]. */
#include <stdio.h>
#include <stdlib.h>

#include "cltrain.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 10;
    int only = argc > 2 ? atoi(argv[2]) : 0; /* run only the first `only` layers when > 0 */
    /* name, N, C, H, W, Cout, K, pad */
    struct { const char *name; int n, c, h, w, co, k, pad; } L[] = {
        {"seed conv1 3->32 32x32 valid", 64, 3, 32, 32, 32, 3, 0},
        {"seed conv2 32->64 15x15 valid", 64, 32, 15, 15, 64, 3, 0},
        {"cnn 32->32 32x32 pad1", 64, 32, 32, 32, 32, 3, 1},
        {"cnn 64->64 16x16 pad1", 64, 64, 16, 16, 64, 3, 1},
        {"cnn 128->128 8x8 pad1", 64, 128, 8, 8, 128, 3, 1},
    };
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.profile = 1;
    cs.verbose = getenv("BENCH_VERBOSE") != NULL;
    clt_context *ctx = NULL;
    if (clt_context_create(&cs, &ctx)) {
        fprintf(stderr, "context: %s\n", clt_errmsg(ctx));
        return 1;
    }
    printf("%-32s %10s %10s %10s %10s\n", "layer", "fwd min", "bwd min", "fwd med", "bwd med");
    size_t nl = sizeof L / sizeof L[0];
    if (only > 0 && (size_t)only < nl) nl = (size_t)only;
    for (size_t li = 0; li < nl; li++) {
        clt_graph *g = NULL;
        clt_tensor *x, *y;
        int shape[4] = {L[li].n, L[li].c, L[li].h, L[li].w};
        clt_conv2d_params p;
        clt_conv2d_default_params(&p, L[li].co, L[li].k);
        p.pad_h = p.pad_w = L[li].pad;
        clt_compile_settings s;
        clt_compile_default_settings(&s);
        if (clt_graph_create(ctx, &g) || clt_input(g, "x", 4, shape, &x) || clt_conv2d(g, x, &p, "conv", &y) ||
            clt_graph_keep(g, x, getenv("BENCH_NODX") == NULL) || clt_graph_keep(g, y, 0) || clt_graph_compile(g, &s)) {
            fprintf(stderr, "%s: %s\n", L[li].name, clt_errmsg(ctx));
            return 1;
        }
        size_t nx = clt_tensor_numel(x), ny = clt_tensor_numel(y);
        float *xd = malloc(nx * sizeof(float)), *dy = malloc(ny * sizeof(float));
        for (size_t i = 0; i < nx; i++) xd[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        for (size_t i = 0; i < ny; i++) dy[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
        clt_tensor_write(g, x, xd, nx);
        double *f = malloc(reps * sizeof(double)), *b = malloc(reps * sizeof(double));
        for (int r = -2; r < reps; r++) {
            clt_op_profile pr[4];
            int cnt;
            if (clt_graph_forward(g, 1) || clt_graph_backward_from(g, y, dy, ny) ||
                clt_graph_profile(g, pr, 4, &cnt)) {
                fprintf(stderr, "%s: %s\n", L[li].name, clt_errmsg(ctx));
                return 1;
            }
            if (r >= 0) f[r] = pr[0].forward_ms, b[r] = pr[0].backward_ms;
        }
        qsort(f, reps, sizeof(double), cmp);
        qsort(b, reps, sizeof(double), cmp);
        printf("%-32s %10.3f %10.3f %10.3f %10.3f\n", L[li].name, f[0], b[0], f[reps / 2], b[reps / 2]);
        free(f), free(b), free(xd), free(dy);
        clt_graph_destroy(g);
    }
    clt_context_destroy(ctx);
    return 0;
}
