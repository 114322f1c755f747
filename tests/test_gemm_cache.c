/* test_gemm_cache.c - GEMM tuning-cache entries are checked before use (absurd values, another build's sets, a
 * kernel that computes wrong results), CLBlast failures while tuning reject a candidate, the CLBlast override
 * is restored when measuring fails, and two threads tune at once. Links the library's objects (src/gemm.h). */
#define _GNU_SOURCE /* mkdtemp */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gemm.h"
#include "testutil.h"
#include "tune.h"

static char base[1024];
static const char *kernel_dir; /* for contexts made by make_ctx */

static clt_context *make_ctx(const char *dir, int mode)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.cache_dir = dir;
    s.tune = mode;
    s.tune_budget_s = 60;
    s.verbose = 1;
    s.kernel_dir = kernel_dir;
    clt_context *ctx = NULL;
    if (clt_context_create(&s, &ctx) != CLT_OK) {
        fprintf(stderr, "cannot create an OpenCL context: %s\n", clt_errmsg(ctx));
        clt_context_destroy(ctx);
        tu_failures++;
        return NULL;
    }
    return ctx;
}

static void sub(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", base, name);
}

/* ---- verbose lines go to stderr: capture them to check their text (one thread at a time) */
static int cap_saved = -1;
static char cap_path[1200];

static void capture_begin(void)
{
    fflush(stderr);
    snprintf(cap_path, sizeof cap_path, "%s/stderr.txt", base);
    int fd = open(cap_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cap_saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

static char *capture_end(void)
{
    fflush(stderr);
    dup2(cap_saved, 2);
    close(cap_saved);
    FILE *f = fopen(cap_path, "rb");
    char *t = calloc(1, 1 << 20);
    if (f && t) {
        size_t n = fread(t, 1, (1 << 20) - 1, f);
        t[n] = 0;
    }
    if (f) fclose(f);
    fputs(t ? t : "", stderr); /* still in the test log */
    return t;
}

/* ---- one GEMM (row-major, no transposes) against a double reference, per element atol + rtol*|ref| */
static int gemm_ok(clt_context *ctx, const char *what, size_t m, size_t n, size_t k)
{
    float *a = malloc(m * k * sizeof(float)), *b = malloc(k * n * sizeof(float)), *c = malloc(m * n * sizeof(float));
    tu_rng rng = {m * 1000003 + n * 1009 + k};
    tu_fill_uniform(&rng, a, m * k, -1, 1);
    tu_fill_uniform(&rng, b, k * n, -1, 1);
    cl_context cl;
    cl_command_queue q;
    clt_context_cl(ctx, &cl, NULL, &q);
    cl_int e;
    clt__gemm_args g = {.m = m, .n = n, .k = k, .alpha = 1, .beta = 0, .lda = k, .ldb = n, .ldc = n, .batch = 1};
    g.a = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, m * k * sizeof(float), a, &e);
    g.b = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, k * n * sizeof(float), b, &e);
    g.c = clCreateBuffer(cl, CL_MEM_READ_WRITE, m * n * sizeof(float), NULL, &e);
    int ok = TU_OK(ctx, clt__gemm_prepare(ctx, &g)) && TU_OK(ctx, clt__gemm(ctx, &g)) &&
             clEnqueueReadBuffer(q, g.c, CL_TRUE, 0, m * n * sizeof(float), c, 0, NULL, NULL) == CL_SUCCESS;
    int bad = 0;
    for (size_t i = 0; ok && i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double r = 0;
            for (size_t t = 0; t < k; t++) r += (double)a[i * k + t] * b[t * n + j];
            if (!(fabs(c[i * n + j] - r) <= 2e-5 + 1e-5 * fabs(r))) {
                if (bad++ == 0)
                    fprintf(stderr, "FAIL %s: C[%zu,%zu] = %.7g, reference %.7g\n", what, i, j, c[i * n + j], r);
            }
        }
    clReleaseMemObject(g.a);
    clReleaseMemObject(g.b);
    clReleaseMemObject(g.c);
    free(a);
    free(b);
    free(c);
    if (!ok || bad) tu_failures++;
    return ok && !bad;
}

static void shape_key(size_t m, size_t n, size_t k, char *shape, size_t len, clt__tune_key *key)
{
    snprintf(shape, len, "m=%zu,n=%zu,k=%zu,ta=0,tb=0,batch=1", m, n, k);
    /* As src/gemm.c keys its decisions; if that changes, the "is invalid" checks below fail. */
    *key = (clt__tune_key){"gemm", "gemm", "gemm-v1", shape};
}

/* Writes one entry into the cache of folder dir (a QUICK context persists it). */
static void put_entry(const char *dir, const clt__tune_key *key, const char *value)
{
    clt_context *c = make_ctx(dir, CLT_TUNE_QUICK);
    if (!c) return;
    TU_OK(c, clt__tune_put(c, key, value));
    clt_context_destroy(c);
}

/* ---- absurd entries with valid checksums: ignored with a warning, default used, results right */
static void test_bad_entries(void)
{
    char pad[300];
    memset(pad, 'x', 260);
    pad[260] = 0;
    char longv[400], longwhy[80];
    snprintf(longv, sizeof longv, "algo=own MR=8 VW=16 NV=1 KU=4 LX=1 DB=0 KC=0 %s", pad);
    snprintf(longwhy, sizeof longwhy, "(%zu characters, more than the 255 its users write)", strlen(longv));
    const struct {
        const char *value, *why;
    } bad[] = {
        {"algo=own MR=99 VW=16 NV=1 KU=4 LX=1 DB=0 KC=0", "(not one of this build's GEMM parameter sets)"},
        {"algo=own MR=8 VW=3 NV=1 KU=4 LX=1 DB=0 KC=0", "(not one of this build's GEMM parameter sets)"},
        {"algo=own MR=8 VW=16 NV=1 KU=4 LX=99999 DB=0 KC=0", "(not one of this build's GEMM parameter sets)"},
        {longv, longwhy},
        {"algo=own MR=8 VW=16 NV=1 KU=4 LX=1 DB=0 KC=0 extra", "(malformed or extra text after the parameters)"},
        {"algo=own MR=-8 VW=16", "(unreadable parameters)"},
        {"algo=fastest", "(neither 'algo=clblast' nor 'algo=own <parameters>')"},
    };
    size_t m = 40, n = 50, k = 30;
    char shape[160];
    clt__tune_key key;
    shape_key(m, n, k, shape, sizeof shape, &key);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char dir[1200], what[80];
        snprintf(what, sizeof what, "bad%zu", i);
        sub(dir, sizeof dir, what);
        put_entry(dir, &key, bad[i].value);
        capture_begin();
        clt_context *c = make_ctx(dir, CLT_TUNE_CACHED);
        if (!c) {
            free(capture_end());
            continue;
        }
        snprintf(what, sizeof what, "bad entry %zu", i);
        gemm_ok(c, what, m, n, k);
        clt__gemm_args g = {.m = m, .n = n, .k = k, .batch = 1};
        int algo = -1, dalgo = -2;
        clt__gemm_params p, dp;
        TU_OK(c, clt__gemm_decision(c, &g, &algo, &p));
        clt__gemm_default(c, &g, &dalgo, &dp);
        TU_CHECK(algo == dalgo && (algo != CLT__GEMM_OWN || memcmp(&p, &dp, sizeof p) == 0),
                 "%s: the default decision was not used", what);
        clt_context_destroy(c);
        char *log = capture_end();
        char want[300];
        snprintf(want, sizeof want, "is invalid %s: ignored, the default is used", bad[i].why);
        TU_CHECK(log && strstr(log, want), "%s: no verbose line with '%s'", what, want);
        free(log);
    }

    /* A bad CLBlast entry likewise. */
    char dir[1200];
    sub(dir, sizeof dir, "badclblast");
    clt__tune_key ck = {"clblast_xgemm", NULL, "clblast-v1", "device"};
    put_entry(dir, &ck, "xgemm=99 direct=-7");
    capture_begin();
    clt_context *c = make_ctx(dir, CLT_TUNE_CACHED);
    if (c) {
        gemm_ok(c, "bad CLBlast entry", m, n, k);
        clt_context_destroy(c);
    }
    char *log = capture_end();
    TU_CHECK(log && strstr(log, "= 'xgemm=99 direct=-7' is invalid (not 'xgemm=X direct=D'"),
             "bad CLBlast entry: no verbose line");
    free(log);

    /* A retune replaces the bad entry: afterwards it is found valid and used. */
    sub(dir, sizeof dir, "bad0");
    c = make_ctx(dir, CLT_TUNE_QUICK);
    if (c) {
        gemm_ok(c, "retune", m, n, k);
        clt_context_destroy(c);
    }
    capture_begin();
    c = make_ctx(dir, CLT_TUNE_CACHED);
    if (c) {
        gemm_ok(c, "after retune", m, n, k);
        clt__tune_stats ts;
        clt__tune_get_stats(c, &ts);
        TU_CHECK(ts.invalid_entries == 0, "retuned entry still invalid");
        clt_context_destroy(c);
    }
    log = capture_end();
    TU_CHECK(log && strstr(log, "(cached)") && !strstr(log, "is invalid"), "retuned entry not used from the cache");
    free(log);
}

/* ---- a valid-looking entry whose kernel computes wrong results here: found out on first use */
static int copy_file(const char *from, const char *to, const char *find, const char *repl)
{
    FILE *f = fopen(from, "rb");
    if (!f) return 0;
    char *t = calloc(1, 1 << 20);
    size_t n = fread(t, 1, (1 << 20) - 1, f);
    fclose(f);
    t[n] = 0;
    FILE *o = fopen(to, "wb");
    if (!o) {
        free(t);
        return 0;
    }
    char *at = find ? strstr(t, find) : NULL;
    if (at) {
        fwrite(t, 1, (size_t)(at - t), o);
        fputs(repl, o);
        fputs(at + strlen(find), o);
    } else {
        fputs(t, o);
    }
    fclose(o);
    free(t);
    return !find || at;
}

static void test_verify(void)
{
    char cl[1200];
    sub(cl, sizeof cl, "cl");
    mkdir(cl, 0700);
    const char *names[] = {"common", "gemm"};
    int ok = 1;
    for (int i = 0; i < 2; i++) {
        char from[1400], to[1400];
        snprintf(from, sizeof from, "%s/%s.cl", TEST_CL_DIR, names[i]);
        snprintf(to, sizeof to, "%s/%s.cl", cl, names[i]);
        /* MR=12 tiles add 1 to every full-tile element: compiles, runs, wrong. */
        ok &= copy_file(from, to, i ? "floatV r = alpha * acc[i][v];" : NULL,
                        "floatV r = alpha * acc[i][v] + (floatV)(MR == 12 ? 1.0f : 0.0f);");
    }
    TU_CHECK(ok, "cannot make the modified kernel copy");
    if (!ok) return;
    kernel_dir = cl;
    size_t m = 40, n = 50, k = 70;
    char shape[160], dir[1200];
    clt__tune_key key;
    shape_key(m, n, k, shape, sizeof shape, &key);
    sub(dir, sizeof dir, "verify");
    put_entry(dir, &key, "algo=own MR=12 VW=16 NV=1 KU=4 LX=1 DB=0 KC=0");
    capture_begin();
    clt_context *c = make_ctx(dir, CLT_TUNE_CACHED);
    if (c) {
        gemm_ok(c, "wrong cached kernel", m, n, k);
        clt_context_destroy(c);
    }
    char *log = capture_end();
    TU_CHECK(log && strstr(log, "is invalid (its output on a small problem differs from the reference)"),
             "a cached set computing wrong results was not caught");
    free(log);
    /* Control: a set that computes right passes the check and is used. */
    put_entry(dir, &key, "algo=own MR=8 VW=8 NV=2 KU=4 LX=1 DB=1 KC=0");
    capture_begin();
    c = make_ctx(dir, CLT_TUNE_CACHED);
    if (c) {
        gemm_ok(c, "right cached kernel", m, n, k);
        clt__gemm_args g = {.m = m, .n = n, .k = k, .batch = 1};
        int algo = -1;
        clt__gemm_params p;
        TU_OK(c, clt__gemm_decision(c, &g, &algo, &p));
        TU_CHECK(algo == CLT__GEMM_OWN && p.mr == 8 && p.vw == 8 && p.nv == 2 && p.db == 1, "checked set not used");
        clt_context_destroy(c);
    }
    log = capture_end();
    TU_CHECK(log && !strstr(log, "is invalid"), "a right cached set was refused");
    free(log);
    kernel_dir = NULL;
}

/* ---- CLBlast failing while tuning */
static int hook_calls, hook_fail_from_opencl;

static int failing_clblast(void)
{
    int call = hook_calls++;
    if (hook_fail_from_opencl >= 0 && call >= hook_fail_from_opencl) return CLT_ERR_OPENCL;
    return CLT_ERR_CLBLAST;
}

static void test_clblast_errors(void)
{
    /* A QUICK tune whose CLBlast candidate fails: rejected, the compile goes on with the own kernel. */
    char dir[1200];
    sub(dir, sizeof dir, "clblast_fail");
    hook_calls = 0;
    hook_fail_from_opencl = -1;
    clt__gemm_clblast_hook = failing_clblast;
    capture_begin();
    clt_context *c = make_ctx(dir, CLT_TUNE_QUICK);
    size_t m = 24, n = 20, k = 16;
    if (c) {
        gemm_ok(c, "CLBlast failing while tuning", m, n, k);
        clt__gemm_args g = {.m = m, .n = n, .k = k, .batch = 1};
        int algo = -1;
        clt__gemm_params p;
        TU_OK(c, clt__gemm_decision(c, &g, &algo, &p));
        TU_CHECK(algo == CLT__GEMM_OWN, "CLBlast chosen although it failed");
        clt_context_destroy(c);
    }
    char *log = capture_end();
    TU_CHECK(log && strstr(log, "tune gemm m=24,n=20,k=16,ta=0,tb=0,batch=1: clblast failed (CLBlast GEMM failed "
                                "(injected by a test)): rejected"),
             "no verbose line for the rejected CLBlast candidate");
    free(log);
    TU_CHECK(hook_calls >= 1, "the CLBlast candidate never ran (hook calls %d)", hook_calls);

    /* The override active before measuring is put back when measuring fails midway. */
    char da[1200];
    sub(da, sizeof da, "clblast_a");
    clt__tune_key ck = {"clblast_xgemm", NULL, "clblast-v1", "device"};
    clt__gemm_clblast_hook = NULL;
    put_entry(da, &ck, "xgemm=2 direct=3");
    c = make_ctx(da, CLT_TUNE_CACHED);
    int xg = -9, xd = -9;
    if (c) {
        TU_OK(c, clt__gemm_tune_clblast(c, 0));
        clt__gemm_clblast_active(c, &xg, &xd);
        TU_CHECK(xg == 2 && xd == 3, "cached CLBlast sets not applied (%d %d)", xg, xd);
        clt_context_destroy(c);
    }
    for (int variant = 0; variant < 2; variant++) {
        /* 0: the built-in run and set 0 fail as CLBlast errors (rejected), set 1 fails with an OpenCL error,
         * which ends the measurement; 1: every run fails as a CLBlast error (all rejected). */
        char db[1200];
        sub(db, sizeof db, variant ? "clblast_c" : "clblast_b");
        hook_calls = 0;
        hook_fail_from_opencl = variant ? -1 : 2;
        clt__gemm_clblast_hook = failing_clblast;
        c = make_ctx(db, CLT_TUNE_QUICK);
        if (!c) continue;
        int st = clt__gemm_tune_clblast(c, 1);
        if (variant == 0)
            TU_CHECK(st == CLT_ERR_OPENCL && strstr(clt_errmsg(c), "injected by a test"),
                     "error while measuring: status %d '%s'", st, clt_errmsg(c));
        else
            TU_CHECK(st == CLT_OK, "all CLBlast sets rejected: status %d '%s'", st, clt_errmsg(c));
        clt__gemm_clblast_active(c, &xg, &xd);
        TU_CHECK(xg == 2 && xd == 3, "variant %d: override not restored (active %d %d, expected 2 3)", variant, xg,
                 xd);
        TU_CHECK(hook_calls >= 3, "variant %d: measuring stopped early (%d calls)", variant, hook_calls);
        char v[64];
        TU_CHECK(clt__tune_get(c, &ck, v, sizeof v) == 0, "variant %d: a decision was recorded ('%s')", variant, v);
        clt_context_destroy(c);
    }
    clt__gemm_clblast_hook = NULL;
}

/* ---- two contexts on two threads creating and tuning at once (shared cache folder) */
typedef struct thread_arg {
    int id, ok;
} thread_arg;

static void *tune_thread(void *p)
{
    thread_arg *t = p;
    char dir[1200];
    sub(dir, sizeof dir, "threads");
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.cache_dir = dir;
    s.tune = CLT_TUNE_QUICK;
    s.tune_budget_s = 60;
    clt_context *ctx = NULL;
    if (clt_context_create(&s, &ctx) != CLT_OK) {
        clt_context_destroy(ctx);
        return NULL;
    }
    int before = tu_failures;
    char what[64];
    snprintf(what, sizeof what, "thread %d", t->id);
    gemm_ok(ctx, what, 33, 29, 40 + (size_t)t->id); /* distinct shapes: both measure */
    gemm_ok(ctx, what, 33, 29, 40);                  /* one shape in common: both write its entry */
    clt_context_destroy(ctx);
    t->ok = tu_failures == before;
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[2];
    thread_arg a[2] = {{1, 0}, {2, 0}};
    for (int i = 0; i < 2; i++) TU_CHECK(pthread_create(&th[i], NULL, tune_thread, &a[i]) == 0, "pthread_create");
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    TU_CHECK(a[0].ok && a[1].ok, "a tuning thread failed (%d %d)", a[0].ok, a[1].ok);
    /* The shared cache holds valid entries for all three shapes. */
    char dir[1200];
    sub(dir, sizeof dir, "threads");
    clt_context *c = make_ctx(dir, CLT_TUNE_CACHED);
    if (!c) return;
    size_t ks[3] = {40, 41, 42};
    for (int i = 0; i < 3; i++) {
        char shape[160], v[256];
        clt__tune_key key;
        shape_key(33, 29, ks[i], shape, sizeof shape, &key);
        TU_CHECK(clt__tune_get(c, &key, v, sizeof v) == 1 && strncmp(v, "algo=", 5) == 0, "entry %s missing", shape);
    }
    clt__tune_stats ts;
    clt__tune_get_stats(c, &ts);
    TU_CHECK(ts.corrupt_files == 0 && ts.bad_lines == 0, "concurrent writers corrupted the cache");
    clt_context_destroy(c);
}

int main(void)
{
    const char *root = getenv("CLTRAIN_CACHE_DIR");
    if (!root || !*root) root = "/tmp";
    mkdir(root, 0755);
    snprintf(base, sizeof base, "%s/test_gemm_cache.XXXXXX", root);
    if (!mkdtemp(base)) {
        fprintf(stderr, "mkdtemp(%s) failed: %s\n", base, strerror(errno));
        return 1;
    }
    if (getenv("CLTRAIN_GEMM")) unsetenv("CLTRAIN_GEMM"); /* the tests choose the paths themselves */
    test_bad_entries();
    test_verify();
    test_clblast_errors();
    test_threads();
    if (tu_failures == 0) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", base);
    }
    return tu_finish("gemm_cache");
}
