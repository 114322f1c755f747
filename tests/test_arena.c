/* test_arena.c - the public arena seam (clt_graph_param_buffer / grad_buffer / buffer_buffer / slot_buffer and
 * clt_graph_param_range): per-tensor ranges in backward order tile the arena, the flat gradient buffer holds what
 * clt_tensor_read returns for each parameter's gradient, a write to the gradient arena is what clt_graph_step
 * uses, and the calls refuse an uncompiled graph and an out-of-range index with a message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

int main(void)
{
    clt_context *ctx = tu_context();
    if (!ctx) return 1;
    clt_graph *g = NULL;
    clt_tensor *x, *y, *logits, *loss;
    int xs[4] = {3, 1, 5, 5}, ys[1] = {3};
    clt_model *m = NULL;
    TU_CHECK(clt_model_parse("conv 2 3\nbatchnorm\nrelu\nflatten\ndense 4\nrelu\ndense classes\n", "t", &m) == 0,
             "parse: %s", clt_model_errmsg(m));
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 4, xs, &x));
    TU_OK(ctx, clt_model_build(g, m, x, 3, &logits));
    TU_OK(ctx, clt_input(g, "labels", 1, ys, &y));
    TU_OK(ctx, clt_softmax_cross_entropy(g, logits, y, 0.0f, &loss));
    cl_mem mem = NULL;
    size_t off = 1, cnt = 1;
    TU_CHECK(clt_graph_grad_buffer(g, &mem, &off, &cnt) == CLT_ERR_STATE &&
                 strstr(clt_errmsg(ctx), "clt_graph_grad_buffer: compile the graph first"),
             "uncompiled graph: '%s'", clt_errmsg(ctx));
    TU_CHECK(clt_graph_param_ranges(g) == 0, "ranges of an uncompiled graph");
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    clt_optimizer_default_settings(&cs.optimizer, CLT_OPT_SGD);
    cs.optimizer.momentum = 0.5f;
    TU_OK(ctx, clt_graph_compile(g, &cs));

    size_t np = 0, nb = 0, ns0 = 0, ns1 = 7;
    cl_mem pm, gm, bm, s0, s1 = (cl_mem)1;
    TU_OK(ctx, clt_graph_param_buffer(g, &pm, &off, &np));
    TU_CHECK(off == 0, "parameter arena offset %zu", off);
    TU_OK(ctx, clt_graph_grad_buffer(g, &gm, &off, &cnt));
    TU_CHECK(cnt == np && gm != pm, "gradient arena of %zu floats, parameters %zu", cnt, np);
    TU_OK(ctx, clt_graph_buffer_buffer(g, &bm, &off, &nb));
    TU_CHECK(nb >= 4, "buffer arena of %zu floats (batch norm of 2 channels has 4 running values)", nb);
    TU_OK(ctx, clt_graph_slot_buffer(g, 0, &s0, &off, &ns0));
    TU_OK(ctx, clt_graph_slot_buffer(g, 1, &s1, &off, &ns1));
    TU_CHECK(s0 && ns0 == np && !s1 && ns1 == 0, "SGD with momentum: slot 0 of %zu, slot 1 %p of %zu", ns0, (void *)s1,
             ns1);
    TU_CHECK(clt_graph_slot_buffer(g, 2, &s1, &off, &ns1) == CLT_ERR_INVALID &&
                 strstr(clt_errmsg(ctx), "slot 2 (0 or 1)"), "slot 2: '%s'", clt_errmsg(ctx));

    /* Ranges: backward order = decreasing offsets, disjoint, inside the arena; their sizes add up to the model's
     * trainable values (conv 2*9+2, gamma/beta 2+2, dense 18*4+4, dense 4*3+3). */
    int nr = clt_graph_param_ranges(g);
    TU_CHECK(nr == 8, "%d parameter tensors (want 8: conv weight and bias, bn gamma and beta, 2 x dense weight and "
             "bias)", nr);
    size_t prev = np, total = 0;
    float *flat = calloc(np, sizeof *flat);
    float rng_x[75], lab[3] = {0, 1, 2};
    tu_rng r = {.s = 42};
    tu_fill_uniform(&r, rng_x, 75, -1, 1);
    TU_OK(ctx, clt_tensor_write(g, x, rng_x, 75));
    TU_OK(ctx, clt_tensor_write(g, y, lab, 3));
    TU_OK(ctx, clt_graph_forward(g, 1));
    TU_OK(ctx, clt_graph_backward(g, loss));
    cl_command_queue q;
    clt_context_cl(ctx, NULL, NULL, &q);
    TU_CHECK(clEnqueueReadBuffer(q, gm, CL_TRUE, 0, np * sizeof(float), flat, 0, NULL, NULL) == CL_SUCCESS, "read");
    for (int i = 0; i < nr; i++) {
        size_t o, c;
        clt_tensor *t = NULL;
        TU_OK(ctx, clt_graph_param_range(g, i, &o, &c, &t));
        TU_CHECK(t && c == clt_tensor_numel(t) && o + c <= prev, "range %d: offset %zu + %zu floats, previous %zu", i,
                 o, c, prev);
        prev = o;
        total += c;
        float *gr = malloc(c * sizeof *gr);
        TU_OK(ctx, clt_tensor_read(g, t, 1, gr, c));
        size_t bad = 0;
        for (size_t k = 0; k < c; k++) bad += gr[k] != flat[o + k];
        TU_CHECK(bad == 0, "range %d ('%s'): %zu of %zu gradient values differ from the flat buffer", i,
                 clt_tensor_name(t), bad, c);
        free(gr);
    }
    TU_CHECK(total == 20 + 4 + 76 + 15, "the ranges hold %zu values", total);
    TU_CHECK(clt_graph_param_range(g, nr, NULL, NULL, NULL) == CLT_ERR_INVALID &&
                 strstr(clt_errmsg(ctx), "index 8 (the graph has 8 parameters)"), "index 8: '%s'", clt_errmsg(ctx));
    /* The last range (backward order) is the first parameter created: the convolution weight at offset 0. */
    size_t o_last;
    clt_graph_param_range(g, nr - 1, &o_last, NULL, NULL);
    TU_CHECK(o_last == 0, "the first parameter sits at offset %zu", o_last);

    /* A gradient written into the arena is the one the step uses: zero gradients, no momentum yet -> no change
     * (weight decay is 0 here). */
    float *before = calloc(np, sizeof *before), *after = calloc(np, sizeof *after), zero = 0;
    TU_CHECK(clEnqueueReadBuffer(q, pm, CL_TRUE, 0, np * sizeof(float), before, 0, NULL, NULL) == CL_SUCCESS, "read");
    clEnqueueFillBuffer(q, gm, &zero, sizeof zero, 0, np * sizeof(float), 0, NULL, NULL);
    TU_OK(ctx, clt_graph_step(g, 0.1f));
    TU_CHECK(clEnqueueReadBuffer(q, pm, CL_TRUE, 0, np * sizeof(float), after, 0, NULL, NULL) == CL_SUCCESS, "read");
    TU_CHECK(memcmp(before, after, np * sizeof(float)) == 0, "a step on zeroed gradients changed the parameters");
    free(before);
    free(after);
    free(flat);
    clt_graph_destroy(g);
    clt_model_destroy(m);
    clt_context_destroy(ctx);
    return tu_finish("arena");
}
