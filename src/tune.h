/* tune.h - per-device autotuning decisions persisted in an on-disk cache, and timing helpers for tuners. */
#ifndef CLT_TUNE_H
#define CLT_TUNE_H

#include <stddef.h>
#include <stdint.h>

#include "disk.h"
#include "internal.h"

typedef struct clt__tune_key {
    const char *kernel;  /* decision family, e.g. "gemm", "conv2d_algo", "clblast_xgemm" */
    const char *source;  /* name of the cl/<source>.cl whose text (plus cl/common.cl) is hashed into the key,
                            or NULL if no kernel source is involved (e.g. a CLBlast-only decision) */
    const char *options; /* build options / parameters that also define the candidate set ("" if none) */
    const char *shape;   /* problem shape, e.g. "m=64,n=10816,k=288,ta=0,tb=0,batch=1" */
} clt__tune_key;

/* Looks up a decision. Returns 1 and fills value (a short string such as "algo=own MR=8 NR=16 KU=4" or
 * "rejected") when found, 0 when missing (or tuning mode is OFF, or the entry is invalid: a value that does not
 * fit in len is, see clt__tune_invalid), <0 on error. Entries come from a file: callers check every value
 * against the decision's parameter space and the device's limits before using it (clt__tune_invalid if not).
 * The full key also includes: platform name + version, device name + version, driver version, OpenCL C version,
 * CLT_VERSION_STRING, CLBlast version, the hash of the kernel source text, the build options and the shape. */
int clt__tune_get(clt_context *ctx, const clt__tune_key *key, char *value, size_t len);
/* Drops the entry of `key` from this context's view of the cache because its value is not one the tuner could
 * have written (`why` says what is wrong; one verbose line): later lookups miss, so the caller's default is used
 * and a new measurement replaces the entry in the file. */
void clt__tune_invalid(clt_context *ctx, const clt__tune_key *key, const char *why);
/* Records a decision. OFF: ignored. CACHED: kept in memory only (nothing was measured). QUICK/FULL: kept in
 * memory and persisted at once (lock, re-read, merge, temp file + fsync + rename). A cache folder that cannot
 * be written only costs persistence (one warning in verbose mode), never an error. `value` must be a printable
 * single-line string (no tabs or control characters). */
int clt__tune_put(clt_context *ctx, const clt__tune_key *key, const char *value);
/* Calls fn(ud, full key, value) for every decision the context knows (its device's cache file, read once,
 * and its own) in insertion order; returns the first non-zero value fn returns, else 0. Mode OFF: none. */
int clt__tune_foreach(clt_context *ctx, int (*fn)(void *ud, const char *key, const char *value), void *ud);
/* 1 if measuring is allowed now (mode QUICK/FULL and budget left for QUICK), else 0. */
int clt__tune_may_measure(clt_context *ctx);
/* Charges measured seconds to the context's budget (ctx->tune_spent_s). */
void clt__tune_charge(clt_context *ctx, double seconds);

/* Times `reps` runs of a callback that enqueues one run (1 warm-up run first); *ms = median in ms.
 * clt__tune_time brackets each run with profiled markers when the queue has profiling, otherwise host time
 * around clFinish. The elapsed time is charged to the budget by the caller (clt__tune_charge). */
typedef int (*clt__tune_run_fn)(clt_context *ctx, void *ud);
int clt__tune_time(clt_context *ctx, clt__tune_run_fn run, void *ud, int reps, double *ms);
/* Same with a callback that may return the event of its (single) command in *ev (or leave it NULL): with
 * queue profiling the event's START..END is used, otherwise host time. The callee's event is released here. */
typedef int (*clt__tune_run_ev_fn)(clt_context *ctx, void *ud, cl_event *ev);
int clt__tune_time_ev(clt_context *ctx, clt__tune_run_ev_fn run, void *ud, int reps, double *ms);

/* Frees the context's tuner (called from clt_context_destroy). */
void clt__tuner_release(clt_context *ctx);

/* ---- for tests and diagnostics */
typedef struct clt__tune_stats {
    int file_loads, file_writes, corrupt_files, bad_lines;
    int invalid_entries; /* dropped by clt__tune_invalid */
} clt__tune_stats;
void clt__tune_get_stats(clt_context *ctx, clt__tune_stats *s);

/* Every part of a full key, explicit so that tests can vary one part at a time. */
typedef struct clt__tune_key_parts {
    const char *platform, *platform_version, *device, *device_version, *driver, *opencl_c; /* device */
    const char *cltrain, *clblast;                                        /* library identity */
    const char *kernel;
    int has_source;
    uint64_t source_hash; /* clt__fnv1a64 over cl/common.cl + cl/<source>.cl */
    const char *options, *shape;
} clt__tune_key_parts;
/* Full key as stored in the cache file (escaped, no tabs/newlines); malloc'd, NULL when out of memory. */
char *clt__tune_key_string(const clt__tune_key_parts *p);
/* Full key for `key` on ctx's device (source hashed from the context's kernel sources). Caller frees. */
int clt__tune_full_key(clt_context *ctx, const clt__tune_key *key, char **out);
/* Path of the tuning cache file of ctx's device (NULL if there is no cache folder); owned by the tuner. */
const char *clt__tune_file_path(clt_context *ctx);

#endif
