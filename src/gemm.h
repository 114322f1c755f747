/* gemm.h - internals of the GEMM dispatcher shared with its tests and the bench tool. */
#ifndef CLT_GEMM_H
#define CLT_GEMM_H

#include "internal.h"

/* One parameter set of the own kernel (cl/gemm.cl): tiles of MR x (NV*VW) per work-item, K unrolled KU
 * times, LX work-items per work-group along N, DB = 1 reads row-major B directly instead of packing it,
 * KC > 0 splits K into blocks of KC (panels of a block stay in cache; C accumulates over blocks). */
typedef struct clt__gemm_params {
    int mr, vw, nv, ku, lx, db, kc;
} clt__gemm_params;

enum { CLT__GEMM_AUTO = 0, CLT__GEMM_CLBLAST = 1, CLT__GEMM_OWN = 2 };

/* The shipped parameter sets; index 0 is the CPU default. */
int clt__gemm_num_params(void);
const clt__gemm_params *clt__gemm_param(int i);
/* "MR=8 VW=16 NV=1 KU=4 LX=1 DB=1 KC=0" */
void clt__gemm_params_str(const clt__gemm_params *p, char *buf, size_t len);

/* Refuses an unknown CLTRAIN_GEMM or a malformed CLTRAIN_GEMM_PARAMS (CLT_ERR_INVALID with the variable, its
 * value and what it takes); called when a context is created. */
int clt__gemm_env_check(clt_context *ctx);
/* Runs one GEMM on a given path, bypassing the per-shape decision (p may be NULL for CLBlast). */
int clt__gemm_run(clt_context *ctx, const clt__gemm_args *a, int algo, const clt__gemm_params *p);
/* The decision clt__gemm uses for this shape (after clt__gemm_prepare): algo and params (own). */
int clt__gemm_decision(clt_context *ctx, const clt__gemm_args *a, int *algo, clt__gemm_params *p);
/* Default decision without tuning, by device type. */
void clt__gemm_default(clt_context *ctx, const clt__gemm_args *a, int *algo, clt__gemm_params *p);
/* Applies (and in FULL mode, or QUICK mode on non-CPU devices, measures) CLBlast's own kernel parameters
 * (Xgemm, XgemmDirect) for this device. Idempotent per context. */
int clt__gemm_tune_clblast(clt_context *ctx, int force_measure);
/* How many GEMMs of this context CLBlast ran with the library's temporary buffer (CLBlastSgemmWithTempBuffer);
 * for the tests, which must see that path run. */
unsigned long clt__gemm_clblast_temp_calls(clt_context *ctx);

/* Tests only: when set, every CLBlast GEMM call first asks it; a negative clt status fails the call with it
 * (to exercise the paths where CLBlast fails during tuning). NULL in normal use. */
extern int (*clt__gemm_clblast_hook)(void);
/* The CLBlast parameter overrides this process applied for ctx's device (Xgemm, XgemmDirect set index; -1:
 * CLBlast's built-in database), as recorded by the library. */
void clt__gemm_clblast_active(clt_context *ctx, int *xgemm, int *direct);

/* Device allocations the dispatcher made or let CLBlast make so far: workspace creations and growth, and
 * clt__gemm calls on the CLBlast path for which no temporary buffer was prepared (CLBlast then allocates
 * its temporaries itself, unless its direct kernel runs). After clt__gemm_prepare of every shape it stays
 * constant: a step allocates nothing. */
size_t clt__gemm_alloc_count(const clt_context *ctx);

#endif
