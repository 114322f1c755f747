/* testutil.h - shared helpers for the test suite: contexts, random data, tolerances, gradient checks. */
#ifndef CLT_TESTUTIL_H
#define CLT_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cltrain.h"

/* A context on $CLTRAIN_DEVICE (or the default device), tuning off unless the test turns it on. Prints
 * the reason and returns NULL on failure. */
clt_context *tu_context(void);

/* Deterministic host RNG for test data. */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;
double tu_uniform(tu_rng *r, double lo, double hi);
double tu_normal(tu_rng *r);
void tu_fill_uniform(tu_rng *r, float *x, size_t n, double lo, double hi);

/* Counts failures; every test main returns tu_finish(). */
extern int tu_failures;
int tu_finish(const char *test);
#define TU_CHECK(cond, ...)                                                                            \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                       \
            fprintf(stderr, __VA_ARGS__);                                                              \
            fprintf(stderr, "\n");                                                                     \
            tu_failures++;                                                                             \
        }                                                                                              \
    } while (0)
/* Checks a status; on failure prints the context's message. Evaluates to 1 if ok. */
int tu_ok(clt_context *ctx, int status, const char *what, const char *file, int line);
#define TU_OK(ctx, call) tu_ok((ctx), (call), #call, __FILE__, __LINE__)

/* Compares got vs ref: |got-ref| <= atol + rtol * max(|ref|) over the array (magnitude-scaled).
 * Returns 1 if close; prints the worst element otherwise. */
int tu_close(const char *what, const float *got, const double *ref, size_t n, double rtol, double atol);
/* Per-element: |got[i]-ref[i]| <= atol + rtol * |ref[i]| for every i. Prints the worst element otherwise. */
int tu_close_elem(const char *what, const float *got, const double *ref, size_t n, double rtol, double atol);
int tu_close_f(const char *what, const float *got, const float *ref, size_t n, double rtol, double atol);

/* Generic op check. The graph holds inputs in[0..nin-1] (all kept with grad unless no_grad[i]) and the
 * op's output `out` (kept). `ref` computes the op's forward in double from inputs and the graph's trainable
 * parameters (in clt_graph_state_tensor order). The check: forward vs ref; then backward_from(out, R) for
 * random R against central finite differences of sum(R * ref(.)) in double, on up to `max_fd` elements of
 * each input and parameter. Inputs are written from `in_data`. Returns 1 if all close. */
typedef void (*tu_ref_fn)(void *ud, const double *const *inputs, const double *const *params, double *out);
typedef struct tu_opcheck {
    clt_graph *g;
    int nin;
    clt_tensor *in[4];
    const float *in_data[4];
    int no_grad[4];  /* inputs without a gradient (labels) */
    clt_tensor *out;
    tu_ref_fn ref;
    void *ud;
    int training;    /* forward mode */
    double rtol, atol;       /* forward tolerance */
    double grad_rtol, grad_atol;
    double fd_h;     /* finite-difference step (default 1e-3) */
    int max_fd;      /* elements per tensor checked by finite differences (default 64) */
    uint64_t seed;
    /* 1: tolerance per element, atol + rtol * |ref[i]| (tu_close_elem), and finite differences always include
     * each tensor's first and last elements (borders) besides the random ones. */
    int elementwise;
} tu_opcheck;
int tu_check_op(clt_context *ctx, const char *label, tu_opcheck *c);

/* Elementwise losses of a same-shape (pred, target) pair (clt_mse, clt_bce_with_logits): the mean over all
 * elements of term(pred, target). tu_check_pair_loss checks, against a double reference and finite
 * differences: several shapes with and without a target gradient (pred and target uniform in the given
 * ranges), pred from a dense layer (parameter gradients through the loss), and the refusal of mismatched
 * shapes and a NULL target. Labels start with `name`. */
typedef int (*tu_pair_loss_fn)(clt_graph *g, clt_tensor *pred, clt_tensor *target, clt_tensor **out);
typedef struct tu_pair_loss {
    const char *name;
    tu_pair_loss_fn fn;
    double (*term)(double pred, double target);
    double pred_lo, pred_hi, target_lo, target_hi;
    double dense_target_lo, dense_target_hi; /* targets of the dense-layer check */
} tu_pair_loss;
void tu_check_pair_loss(clt_context *ctx, tu_rng *rng, const tu_pair_loss *l);
/* loss = l->fn(x, x) with x (3,70) = xd (210 values), so both gradients land in the same memory: runs forward
 * and backward, reads the loss into *v and dL/dx into gx (210 values). Returns 1 if every call succeeded. */
int tu_pair_loss_aliased(clt_context *ctx, const tu_pair_loss *l, const float *xd, float *v, float *gx);


/* 2-D convolution for the conv tests: geometry from a case row {N, C, H, W, Cout, KH, KW, SH, SW, PH, PW, bias}
 * (output size derived), the layer's parameters, and the double reference x (N,C,H,W) * wt (Cout,C,KH,KW)
 * + b (Cout; NULL: none) -> out (N,Cout,OH,OW). */
typedef struct tu_conv_geom {
    int n, c, h, w, co, kh, kw, sh, sw, ph, pw, bias;
    int oh, ow;
} tu_conv_geom;
tu_conv_geom tu_conv_geom_of(const int *cs);
clt_conv2d_params tu_conv_params(const tu_conv_geom *d);
void tu_conv_ref(const tu_conv_geom *d, const double *x, const double *wt, const double *b, double *out);
/* tu_ref_fn of one conv layer: ud is its tu_conv_geom, params are the weight and (with bias) the bias. */
void tu_conv_ref_op(void *ud, const double *const *in, const double *const *p, double *out);

#endif
