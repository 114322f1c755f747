/* bincache.h - compiled program binaries (CL_PROGRAM_BINARIES) kept in the cache folder across processes. */
#ifndef CLT_BINCACHE_H
#define CLT_BINCACHE_H

#include <stddef.h>

#include "internal.h"

/* One file per program under <cache_dir>/programs/, keyed by the device identity, cltrain version, the full
 * source text and the build options. On unless $CLTRAIN_NO_BINARY_CACHE is set to a non-empty value other than
 * "0" (the tuning mode does not matter: the key is exact, so a hit is always the program the source would have
 * built). Every failure only costs the cache, never an error. */
/* 1: *out is a program built from the cached binary; 0: miss (or unusable entry, which is then removed). */
int clt__binary_cache_load(clt_context *ctx, const char *source_text, size_t len, const char *options,
                           cl_program *out);
/* Schedules storing the binary of a program built from source for ctx->dev (the program is retained); the
 * binary is written by clt__binary_cache_flush, which context destruction calls. 1 if scheduled. */
int clt__binary_cache_store(clt_context *ctx, const char *source_text, size_t len, const char *options,
                            cl_program program);
/* Drops a scheduled store, e.g. for a tuning candidate that lost (get it with clGetKernelInfo(
 * CL_KERNEL_PROGRAM)); its binary is then never written. */
void clt__binary_cache_discard(clt_context *ctx, cl_program program);
/* Writes every scheduled binary now; returns how many were stored. */
int clt__binary_cache_flush(clt_context *ctx);
/* Flushes and frees the context's binary cache (called from clt_context_destroy). */
void clt__binary_cache_release(clt_context *ctx);

/* ---- for tests and diagnostics */
typedef struct clt__bin_stats {
    int hits, misses, stores;
    int rejected; /* a cached binary that failed its checks or to load (removed, rebuilt from source) */
} clt__bin_stats;
void clt__binary_cache_stats(clt_context *ctx, clt__bin_stats *s);

#endif
