/* testutil.h - shared helpers for the test suite: contexts, random data, tolerances, gradient checks. */
#ifndef CLT_TESTUTIL_H
#define CLT_TESTUTIL_H

#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h> /* TU_MSG */

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
/* The message of the last call names the problem: it contains `text`. Every library call
 * that takes the context clears the message first, so an older message cannot pass this. */
#define TU_MSG(ctx, text)                                                                              \
    TU_CHECK(strstr(clt_errmsg(ctx), (text)) != NULL, "message '%s' does not say '%s'", clt_errmsg(ctx), (text))

/* Tolerances (issue 8). Every element must satisfy |got_i - ref_i| <= atol + rtol*|ref_i| (its own |ref_i|,
 * never the array's largest value, which left small entries unchecked), and the whole array must pass a norm
 * check: ||got - ref||_2 <= 0.5 * ||allowed||_2 (1/sqrt(n) for n < 4 elements), i.e. the RMS error is at most
 * half the RMS allowance, so errors may reach the bound at isolated elements but not everywhere (a systematic
 * offset just under the per-element bound fails). On failure the worst element (largest error/allowed) is
 * printed with its index, values and allowance, together with the relative L2 error. With TU_SHOW_MARGIN set in
 * the environment every check prints how close it came (worst error/allowed, norm/bound) on stdout.
 *
 * How to pick atol/rtol honestly (the references run in double on the same float32 inputs, so the difference is
 * the device's float32 rounding, u = 2^-24):
 * - A value that is a float32 sum of K products, each term at most m in magnitude, has an absolute rounding
 *   error that does not shrink when the sum cancels: for random-signed terms its RMS is about u*m*K/2
 *   (sequential order; blocked/tree orders are smaller). tu_sum_atol(K, m) = 4*u*m*K covers that with margin.
 * - The relative part covers rounding of the result and of same-signed sums: tu_sum_rtol(K) = 8*u*(1+sqrt(K)).
 * - Transcendental functions (exp, log, tanh, sigmoid in float32) add a few ulp: tests using them add a few u
 *   to rtol (see the test), or an atol of a few u times the largest intermediate they subtract.
 * - Finite differences (central, step h on the double reference) add their own error: the rounding term
 *   4e-16 * sum|R_i*out_i| / (2h) is computed and added automatically; the truncation term ~h^2/6 * |f'''| is
 *   zero for ops linear in the perturbed value and is given by the test (fd_atol) for nonlinear ones. */
#define TU_U32 5.9604644775390625e-08 /* 2^-24, float32 unit roundoff */
double tu_sum_atol(double k, double m);
double tu_sum_rtol(double k);
/* Returns 1 if close; prints the worst element otherwise. */
int tu_close(const char *what, const float *got, const double *ref, size_t n, double rtol, double atol);
int tu_close_f(const char *what, const float *got, const float *ref, size_t n, double rtol, double atol);

/* Generic op check. The graph holds inputs in[0..nin-1] (all kept with grad unless no_grad[i]) and the
 * op's output `out` (kept). `ref` computes the op's forward in double from inputs and the graph's trainable
 * parameters (in clt_graph_state_tensor order). The check: forward vs ref; then backward_from(out, R) for
 * random R against central finite differences of sum(R * ref(.)) in double. Inputs are written from `in_data`.
 * Elements checked by finite differences, per input and parameter: all of them when the tensor has at most
 * fd_all elements; otherwise, without repetition, every "corner" (each coordinate within `border` of the first
 * or last index of its dimension), the "edges" (a spatial coordinate -- H, W of an (N,C,H,W) tensor, every
 * dimension otherwise -- within `border` of its ends: for conv and pool the elements that meet the padding;
 * all of them up to fd_edges, else that many drawn), and max_fd drawn from the interior.
 * Tolerances: forward rtol/atol and gradient grad_rtol/grad_atol; a pair left at 0 is derived from the
 * reduction lengths k (forward) and grad_k (gradients, default k) with term magnitude mag (default 1):
 * rtol = tu_sum_rtol(k), atol = tu_sum_atol(k, mag). Input gradients use in_grad_rtol/in_grad_atol when that
 * pair is set (e.g. a conv's dx sums Cout*KH*KW terms, its dW N*OH*OW), else the gradient pair. fd_atol is
 * added to the gradient allowance (finite-difference truncation of nonlinear ops). Returns 1 if all close. */
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
    double in_grad_rtol, in_grad_atol; /* input gradients, when they reduce differently (default grad_*) */
    double k, grad_k, mag;   /* reduction lengths and term magnitude for derived tolerances */
    double fd_atol;  /* finite-difference truncation allowance (nonlinear ops) */
    double fd_h;     /* finite-difference step (default 1e-3) */
    int max_fd;      /* interior elements per tensor checked by finite differences (default 64) */
    int fd_all;      /* tensors up to this size are checked everywhere (default 512) */
    int fd_edges;    /* at most this many edge elements (default 512) */
    int border;      /* border band width (default 1) */
    uint64_t seed;
} tu_opcheck;
int tu_check_op(clt_context *ctx, const char *label, tu_opcheck *c);
/* The indices tu_check_op checks by finite differences in a tensor of shape dims[0..ndim-1] (see above), in
 * idx (room for the tensor's element count); returns their count. */
size_t tu_fd_indices(int ndim, const int *dims, int border, size_t fd_all, size_t fd_edges, size_t max_fd,
                     tu_rng *rng, size_t *idx);

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
/* Tolerances and finite-difference borders of one conv layer with |x|, |w|, |b|, |R| <= 1 (see the tolerance
 * notes above): the forward sums C*KH*KW products (+ bias), the weight and bias gradients N*OH*OW, the data
 * gradient Cout*KH*KW; the border band is max(KH, KW) - 1 wide (the inputs whose windows meet the padding or
 * the edge), at least 1. */
void tu_conv_tolerances(const tu_conv_geom *d, tu_opcheck *c);

/* ---- running the command-line tool. A whole file as a NUL-terminated malloc'd string ("" when it cannot be read;
 * NULL only when out of memory). */
char *tu_slurp(const char *path);
/* One run: exit status (-1 when the program did not exit normally), stdout and stderr (never NULL unless out of
 * memory; free with tu_result_free). */
typedef struct tu_result {
    int code;
    char *out, *err;
} tu_result;
/* Runs bin with the NULL-terminated arguments `first, ap...` (at most 46), stdout and stderr into stdout.txt and
 * stderr.txt in dir; echoes "$ cltrain ARGS" and "  -> exit N" on stderr; the child gets alarm(280). */
tu_result tu_run_v(const char *bin, const char *dir, const char *first, va_list ap);
void tu_result_free(tu_result *r);
/* Checks that the run failed (exit > 0) with `needle` in its stderr, echoes that stderr, and frees r. */
void tu_expect_fail(tu_result r, const char *needle, const char *what);

#endif
