/* test_tune.c - tuning cache (keys, persistence, corruption recovery, concurrent writers, OFF mode) and the
 * program binary cache. Links the library's objects to reach the internal API in src/tune.h, src/bincache.h. */
#define _GNU_SOURCE /* mkdtemp, setenv */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include <sodium.h>

#include "bincache.h"
#include "tune.h"

static char base[1024];

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rm_rf(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    size_t sl = strlen(suffix);
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l >= sl && strcmp(e->d_name + l - sl, suffix) == 0) n++;
    }
    closedir(d);
    return n;
}

static clt_context *make_ctx_v(const char *cache_dir, int mode, int profile, int verbose)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.cache_dir = cache_dir;
    s.tune = mode;
    s.verbose = verbose;
    s.profile = profile;
    clt_context *ctx = NULL;
    if (clt_context_create(&s, &ctx) != CLT_OK) {
        fprintf(stderr, "cannot create an OpenCL context: %s\n", clt_errmsg(ctx));
        clt_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

static clt_context *make_ctx(const char *cache_dir, int mode, int profile)
{
    return make_ctx_v(cache_dir, mode, profile, getenv("TUNE_TEST_QUIET") ? 0 : 1);
}

static void sub(char *out, const char *name)
{
    snprintf(out, 4096, "%s/%s", base, name);
}

/* ---- two processes putting 200 entries each into one file (run before this process touches OpenCL). */
static int child_writer(const char *dir, int id, int ready_fd, int go_fd)
{
    clt_context *ctx = make_ctx(dir, CLT_TUNE_FULL, 0);
    char c = 'r';
    if (write(ready_fd, &c, 1) != 1) return 2;
    if (read(go_fd, &c, 1) != 1) return 3;
    if (!ctx) return 4;
    int bad = 0;
    for (int i = 0; i < 200; i++) {
        char shape[64], value[64];
        snprintf(shape, sizeof shape, "writer=%d,i=%d", id, i);
        snprintf(value, sizeof value, "v%d_%d", id, i);
        clt__tune_key k = {"conc", NULL, "", shape};
        if (clt__tune_put(ctx, &k, value) != 0) bad++;
    }
    clt__tune_stats st;
    clt__tune_get_stats(ctx, &st);
    if (st.file_writes != 200) bad++;
    clt_context_destroy(ctx);
    return bad ? 5 : 0;
}

static void test_concurrent(void)
{
    char dir[4096];
    sub(dir, "conc");
    int ready[2], go[2];
    if (pipe(ready) || pipe(go)) {
        TU_CHECK(0, "pipe failed");
        return;
    }
    fflush(NULL);
    pid_t pid[2];
    for (int c = 0; c < 2; c++) {
        pid[c] = fork();
        if (pid[c] == 0) {
            setenv("TUNE_TEST_QUIET", "1", 1);
            _exit(child_writer(dir, c, ready[1], go[0]));
        }
        TU_CHECK(pid[c] > 0, "fork failed");
    }
    char buf[2];
    TU_CHECK(read(ready[0], buf, 1) == 1 && read(ready[0], buf + 1, 1) == 1, "children not ready");
    double t0 = clt__now_ms();
    TU_CHECK(write(go[1], "gg", 2) == 2, "cannot release children");
    for (int c = 0; c < 2; c++) {
        int status = 0;
        if (pid[c] > 0) waitpid(pid[c], &status, 0);
        TU_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d failed (status %d)", c, status);
    }
    fprintf(stderr, "concurrent writers: 2 x 200 puts in %.0f ms\n", clt__now_ms() - t0);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);

    clt_context *ctx = make_ctx(dir, CLT_TUNE_CACHED, 0);
    if (!ctx) {
        tu_failures++;
        return;
    }
    int found = 0;
    for (int id = 0; id < 2; id++)
        for (int i = 0; i < 200; i++) {
            char shape[64], want[64], got[64];
            snprintf(shape, sizeof shape, "writer=%d,i=%d", id, i);
            snprintf(want, sizeof want, "v%d_%d", id, i);
            clt__tune_key k = {"conc", NULL, "", shape};
            if (clt__tune_get(ctx, &k, got, sizeof got) == 1 && strcmp(got, want) == 0) found++;
        }
    clt__tune_stats st;
    clt__tune_get_stats(ctx, &st);
    TU_CHECK(found == 400, "concurrent writers: %d of 400 entries found", found);
    TU_CHECK(st.corrupt_files == 0 && st.bad_lines == 0, "concurrent writers left a corrupt file");
    TU_CHECK(count_files(dir, ".txt") == 1, "expected exactly one tuning file");
    int tmps = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) tmps++;
    if (d) closedir(d);
    TU_CHECK(tmps == 0, "%d temp files left behind", tmps);
    clt_context_destroy(ctx);
}

/* ---- keys */
static void test_keys(void)
{
    clt__tune_key_parts b = {"Portable CL", "OpenCL 3.0 PoCL 3.1", "cpu-x86", "OpenCL 3.0 PoCL HSTR: x86", "3.1",
                             "OpenCL C 1.2", "0.1.0", "1.5.3", "gemm", 1, 0x1234, "-DMR=8", "m=64,n=64,k=64"};
    char *kb = clt__tune_key_string(&b);
    TU_CHECK(kb != NULL, "key string");
    if (!kb) return;
    TU_CHECK(!strchr(kb, '\t') && !strchr(kb, '\n'), "key has tabs/newlines");
    for (int part = 0; part < 14; part++) {
        clt__tune_key_parts p = b;
        switch (part) {
        case 0: p.platform = "Other CL"; break;
        case 1: p.platform_version = "OpenCL 3.0 PoCL 4.0"; break;
        case 2: p.device = "cpu-x86-2"; break;
        case 3: p.driver = "3.2"; break;
        case 4: p.opencl_c = "OpenCL C 2.0"; break;
        case 5: p.cltrain = "0.2.0"; break;
        case 6: p.clblast = "1.6.0"; break;
        case 7: p.kernel = "conv"; break;
        case 8: p.has_source = 0; break;
        case 9: p.source_hash = 0x1235; break;
        case 10: p.options = "-DMR=4"; break;
        case 11: p.shape = "m=64,n=64,k=65"; break;
        case 12: p.device_version = "OpenCL 3.0 PoCL HSTR: x86-avx2"; break;
        default: p.options = "-DMR=8 "; break;
        }
        char *k = clt__tune_key_string(&p);
        TU_CHECK(k && strcmp(k, kb) != 0, "changing key part %d leaves the key unchanged", part);
        free(k);
    }
    /* Separators inside parts must not make two different part lists collide. */
    clt__tune_key_parts x = b, y = b;
    x.options = "a|shape=b";
    x.shape = "";
    y.options = "a";
    y.shape = "b";
    char *kx = clt__tune_key_string(&x), *ky = clt__tune_key_string(&y);
    TU_CHECK(kx && ky && strcmp(kx, ky) != 0, "escaping: '|' in options collides");
    free(kx);
    free(ky);
    x.options = "tab\there\nnewline";
    kx = clt__tune_key_string(&x);
    TU_CHECK(kx && !strchr(kx, '\t') && !strchr(kx, '\n'), "control characters not escaped");
    free(kx);
    free(kb);
}

/* Source text changes (via kernel_dir) and source names change the key of a real context. */
static void test_source_keys(clt_context *ctx)
{
    char kdir[4096];
    sub(kdir, "kernels");
    mkdir(kdir, 0755);
    const char *names[] = {"common", "activation"};
    for (int i = 0; i < 2; i++) {
        char *text;
        size_t len;
        if (!TU_OK(ctx, clt__source_text(ctx, names[i], &text, &len))) return;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.cl", kdir, names[i]);
        FILE *f = fopen(path, "wb");
        if (!f) {
            free(text);
            TU_CHECK(0, "cannot write %s", path);
            return;
        }
        fwrite(text, 1, len, f);
        if (i == 1) fputs("\n/* edited */\n", f);
        fclose(f);
        free(text);
    }
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.tune = CLT_TUNE_CACHED;
    s.kernel_dir = kdir;
    clt_context *ed = NULL;
    if (!TU_OK(ed, clt_context_create(&s, &ed))) {
        clt_context_destroy(ed);
        return;
    }
    clt__tune_key ka = {"act", "activation", "-DACT=0", "n=10"};
    clt__tune_key kd = {"act", "dense", "-DACT=0", "n=10"};
    clt__tune_key kn = {"act", NULL, "-DACT=0", "n=10"};
    char *a = NULL, *d = NULL, *n = NULL, *e = NULL;
    TU_OK(ctx, clt__tune_full_key(ctx, &ka, &a));
    TU_OK(ctx, clt__tune_full_key(ctx, &kd, &d));
    TU_OK(ctx, clt__tune_full_key(ctx, &kn, &n));
    TU_OK(ed, clt__tune_full_key(ed, &ka, &e));
    TU_CHECK(a && d && n && e, "full keys");
    if (a && d && n && e) {
        TU_CHECK(strcmp(a, d) != 0 && strcmp(a, n) != 0 && strcmp(d, n) != 0, "source name not in the key");
        TU_CHECK(strcmp(a, e) != 0, "edited kernel source gives the same key");
        TU_CHECK(strstr(a, CLT_VERSION_STRING) && strstr(a, "driver="), "key lacks version/driver parts");
    }
    free(a);
    free(d);
    free(n);
    free(e);
    clt_context_destroy(ed);
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    *n = b ? fread(b, 1, (size_t)l, f) : 0;
    if (b) b[*n] = 0;
    fclose(f);
    return b;
}

static void write_all(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

/* ---- persistence across contexts, modes and budget */
static void test_roundtrip(void)
{
    char dir[4096];
    sub(dir, "rt/nested");
    clt_context *c1 = make_ctx(dir, CLT_TUNE_QUICK, 0);
    if (!c1) {
        tu_failures++;
        return;
    }
    clt__tune_key k1 = {"gemm", "activation", "-DX=1", "m=1,n=2,k=3"};
    clt__tune_key k2 = {"clblast_xgemm", NULL, "", "m=4,n=5,k=6"};
    char v[64];
    TU_CHECK(clt__tune_get(c1, &k1, v, sizeof v) == 0, "entry found in an empty cache");
    TU_OK(c1, clt__tune_put(c1, &k1, "algo=own MR=8 NR=16"));
    TU_OK(c1, clt__tune_put(c1, &k2, "rejected"));
    TU_CHECK(clt__tune_put(c1, &k2, "bad\tvalue") < 0, "tab in value accepted");
    /* A value longer than the caller's buffer is no entry the caller wrote: ignored (and dropped), never
     * truncated. */
    TU_CHECK(clt__tune_get(c1, &k1, v, 4) == 0 && v[0] == 0, "over-long value not ignored");
    clt__tune_stats ts;
    clt__tune_get_stats(c1, &ts);
    TU_CHECK(ts.invalid_entries == 1, "over-long value not counted as invalid (%d)", ts.invalid_entries);
    TU_CHECK(clt__tune_get(c1, &k1, v, sizeof v) == 0, "dropped entry still found");
    TU_OK(c1, clt__tune_put(c1, &k1, "algo=own MR=8 NR=16"));
    const char *path = clt__tune_file_path(c1);
    TU_CHECK(path && exists(path), "tuning file not written");
    /* Temp files of dead writers go once old; a live writer's or a recent one stays. */
    char dead_old[4200], dead_new[4200], live_old[4200];
    snprintf(dead_old, sizeof dead_old, "%s.tmp.999999999.0000000000000000", path);
    snprintf(dead_new, sizeof dead_new, "%s.tmp.999999999.0000000000000001", path);
    snprintf(live_old, sizeof live_old, "%s.tmp.%ld.0000000000000007", path, (long)getpid());
    write_all(dead_old, "x", 1);
    write_all(dead_new, "x", 1);
    write_all(live_old, "x", 1);
    struct timespec old_times[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
    utimensat(AT_FDCWD, dead_old, old_times, 0);
    utimensat(AT_FDCWD, live_old, old_times, 0);
    clt__tune_key k4 = {"gemm", NULL, "", "trigger"};
    TU_OK(c1, clt__tune_put(c1, &k4, "x"));
    TU_CHECK(!exists(dead_old) && exists(dead_new) && exists(live_old), "stale temp file cleanup wrong");
    unlink(dead_new);
    unlink(live_old);
    TU_CHECK(clt__tune_may_measure(c1) == 1, "QUICK with budget left may measure");
    clt__tune_charge(c1, 1e9);
    TU_CHECK(clt__tune_may_measure(c1) == 0, "QUICK beyond budget still measures");
    clt_context_destroy(c1);

    clt_context *c2 = make_ctx(dir, CLT_TUNE_CACHED, 0);
    if (!c2) {
        tu_failures++;
        return;
    }
    TU_CHECK(clt__tune_get(c2, &k1, v, sizeof v) == 1 && strcmp(v, "algo=own MR=8 NR=16") == 0,
             "k1 not read back (got '%s')", v);
    TU_CHECK(clt__tune_get(c2, &k2, v, sizeof v) == 1 && strcmp(v, "rejected") == 0, "k2 not read back");
    clt__tune_key k3 = k1;
    k3.shape = "m=1,n=2,k=4";
    TU_CHECK(clt__tune_get(c2, &k3, v, sizeof v) == 0, "other shape hit");
    k3 = k1;
    k3.source = "dense";
    TU_CHECK(clt__tune_get(c2, &k3, v, sizeof v) == 0, "other source hit");
    TU_CHECK(clt__tune_may_measure(c2) == 0, "CACHED may measure");
    /* CACHED: put keeps it in memory, never writes. */
    struct stat before, after;
    stat(clt__tune_file_path(c2), &before);
    k3.shape = "cached-only";
    TU_OK(c2, clt__tune_put(c2, &k3, "x"));
    TU_CHECK(clt__tune_get(c2, &k3, v, sizeof v) == 1, "CACHED put not kept in memory");
    stat(clt__tune_file_path(c2), &after);
    TU_CHECK(before.st_ino == after.st_ino && before.st_size == after.st_size, "CACHED mode wrote the file");
    clt_context_destroy(c2);

    clt_context *c3 = make_ctx(dir, CLT_TUNE_FULL, 0);
    if (c3) {
        TU_CHECK(clt__tune_may_measure(c3) == 1, "FULL may not measure");
        TU_CHECK(clt__tune_get(c3, &k3, v, sizeof v) == 0, "CACHED-mode put was persisted");
        clt_context_destroy(c3);
    }
}

static void test_off_mode(void)
{
    char dir[4096];
    sub(dir, "off/never");
    setenv("CLTRAIN_NO_BINARY_CACHE", "1", 1);
    clt_context *c = make_ctx(dir, CLT_TUNE_OFF, 0);
    if (!c) {
        unsetenv("CLTRAIN_NO_BINARY_CACHE");
        tu_failures++;
        return;
    }
    clt__tune_key k = {"gemm", "activation", "", "m=1"};
    char v[32];
    TU_OK(c, clt__tune_put(c, &k, "algo=own"));
    TU_CHECK(clt__tune_get(c, &k, v, sizeof v) == 0, "OFF mode returned a decision");
    TU_CHECK(clt__tune_may_measure(c) == 0, "OFF mode may measure");
    cl_kernel kern = NULL;
    TU_OK(c, clt__kernel(c, "activation", "-DACT=2", "act_forward", &kern));
    if (kern) clReleaseKernel(kern);
    clt_context_destroy(c);
    unsetenv("CLTRAIN_NO_BINARY_CACHE");
    char parent[4096];
    sub(parent, "off");
    TU_CHECK(!exists(parent), "OFF mode (binary cache disabled) created %s", parent);
}

/* ---- corruption: garbage, truncation, flipped byte; recovery on the next put */
static void test_corruption(void)
{
    for (int kind = 0; kind < 3; kind++) {
        char dir[4096];
        char name[32];
        snprintf(name, sizeof name, "corrupt%d", kind);
        sub(dir, name);
        clt_context *c = make_ctx(dir, CLT_TUNE_QUICK, 0);
        if (!c) {
            tu_failures++;
            return;
        }
        char shapes[4][16], v[32];
        for (int i = 0; i < 4; i++) {
            snprintf(shapes[i], sizeof shapes[i], "i=%d", i);
            clt__tune_key k = {"corr", NULL, "", shapes[i]};
            TU_OK(c, clt__tune_put(c, &k, "value"));
        }
        char path[4096];
        snprintf(path, sizeof path, "%s", clt__tune_file_path(c));
        clt_context_destroy(c);
        size_t n = 0;
        char *data = read_all(path, &n);
        if (!data) {
            TU_CHECK(0, "no tuning file");
            return;
        }
        /* Lines: header, i=0, i=1, i=2, i=3. */
        char *l2 = strchr(strchr(data, '\n') + 1, '\n') + 1; /* the i=1 line */
        int expect_lost;
        if (kind == 0) {
            memset(data, '#', n / 2);
            write_all(path, data, n);
            expect_lost = 4;
        } else if (kind == 1) {
            write_all(path, data, n - 7); /* the i=3 line loses its end */
            expect_lost = 1;
        } else {
            l2[strlen(l2) / 3] ^= 0x04; /* somewhere inside the i=1 line's key */
            write_all(path, data, n);
            expect_lost = 1;
        }
        free(data);
        c = make_ctx(dir, CLT_TUNE_QUICK, 0);
        if (!c) {
            tu_failures++;
            return;
        }
        int found = 0;
        for (int i = 0; i < 4; i++) {
            clt__tune_key k = {"corr", NULL, "", shapes[i]};
            found += clt__tune_get(c, &k, v, sizeof v) == 1;
        }
        clt__tune_stats st;
        clt__tune_get_stats(c, &st);
        TU_CHECK(found == 4 - expect_lost, "corruption %d: %d entries survived, expected %d", kind, found,
                 4 - expect_lost);
        TU_CHECK(kind == 0 ? st.corrupt_files == 1 : st.bad_lines == 1,
                 "corruption %d not reported (corrupt_files %d, bad_lines %d)", kind, st.corrupt_files,
                 st.bad_lines);
        clt__tune_key kn = {"corr", NULL, "", "new"};
        TU_OK(c, clt__tune_put(c, &kn, "fresh"));
        clt_context_destroy(c);
        /* Rebuilt: a new context reads a clean file with the survivors and the new entry. */
        c = make_ctx(dir, CLT_TUNE_CACHED, 0);
        if (!c) {
            tu_failures++;
            return;
        }
        found = 0;
        for (int i = 0; i < 4; i++) {
            clt__tune_key k = {"corr", NULL, "", shapes[i]};
            found += clt__tune_get(c, &k, v, sizeof v) == 1;
        }
        TU_CHECK(clt__tune_get(c, &kn, v, sizeof v) == 1 && strcmp(v, "fresh") == 0, "new entry missing");
        clt__tune_get_stats(c, &st);
        TU_CHECK(st.corrupt_files == 0 && st.bad_lines == 0, "corruption %d: file not rebuilt clean", kind);
        TU_CHECK(found == 4 - expect_lost, "corruption %d: rebuilt file has %d old entries", kind, found);
        clt_context_destroy(c);
    }
}

/* ---- unwritable cache folder: tuning works in memory, no error */
static void test_unwritable(void)
{
    char file[4096], dir[4200];
    sub(file, "plainfile");
    write_all(file, "x", 1);
    snprintf(dir, sizeof dir, "%s/sub", file); /* a folder below a regular file cannot exist */
    clt_context *c = make_ctx(dir, CLT_TUNE_QUICK, 0);
    if (!c) {
        tu_failures++;
        return;
    }
    clt__tune_key k = {"mem", NULL, "", "s"};
    char v[16];
    TU_OK(c, clt__tune_put(c, &k, "kept"));
    TU_CHECK(clt__tune_get(c, &k, v, sizeof v) == 1 && strcmp(v, "kept") == 0, "memory-only entry lost");
    cl_kernel kern = NULL;
    TU_OK(c, clt__kernel(c, "activation", "-DACT=3", "act_forward", &kern));
    if (kern) clReleaseKernel(kern);
    clt_context_destroy(c);
}

/* ---- program binaries */
static int run_act(clt_context *ctx, float *y)
{
    cl_kernel k = NULL;
    if (!TU_OK(ctx, clt__kernel(ctx, "activation", "-DACT=1", "act_forward", &k))) return 0;
    float x[4] = {-2, 3, -0.5f, 0};
    cl_int err;
    cl_mem bx = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x, x, &err);
    cl_mem by = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, sizeof x, NULL, &err);
    float slope = 0.5f;
    cl_uint n = 4;
    int ok = TU_OK(ctx, CLT_SET_ARGS(ctx, k, CLT_ARG(bx), CLT_ARG(by), CLT_ARG(slope), CLT_ARG(n)));
    size_t g = 4;
    ok = ok && TU_OK(ctx, clt__launch(ctx, k, 1, &g, NULL));
    ok = ok && clEnqueueReadBuffer(ctx->queue, by, CL_TRUE, 0, sizeof x, y, 0, NULL, NULL) == CL_SUCCESS;
    clReleaseMemObject(bx);
    clReleaseMemObject(by);
    clReleaseKernel(k);
    return ok;
}

static void check_act(const char *what, clt_context *ctx)
{
    float y[4] = {0};
    int ok = run_act(ctx, y);
    TU_CHECK(ok && y[0] == -1.0f && y[1] == 3.0f && y[2] == -0.25f && y[3] == 0.0f,
             "%s: kernel gives %g %g %g %g", what, y[0], y[1], y[2], y[3]);
}

static void test_binaries(void)
{
    char dir[4096], pdir[4200];
    sub(dir, "bin");
    snprintf(pdir, sizeof pdir, "%s/programs", dir);
    clt__bin_stats st;
    clt_context *c = make_ctx(dir, CLT_TUNE_OFF, 0);
    if (!c) {
        tu_failures++;
        return;
    }
    check_act("cold", c);
    TU_CHECK(count_files(pdir, ".bin") == 0, "binary written before the flush");
    TU_CHECK(clt__binary_cache_flush(c) == 1, "flush stored nothing");
    clt__binary_cache_stats(c, &st);
    TU_CHECK(st.hits == 0 && st.misses == 1 && st.stores == 1, "cold: hits %d misses %d stores %d",
             st.hits, st.misses, st.stores);
    clt_context_destroy(c);
    TU_CHECK(count_files(pdir, ".bin") == 1, "binary file not written");

    c = make_ctx(dir, CLT_TUNE_OFF, 0);
    if (!c) {
        tu_failures++;
        return;
    }
    check_act("warm", c);
    clt__binary_cache_stats(c, &st);
    TU_CHECK(st.hits == 1 && st.misses == 0 && st.stores == 0, "warm: hits %d misses %d stores %d",
             st.hits, st.misses, st.stores);
    clt_context_destroy(c);

    /* Flip a byte in the binary payload: the entry is rejected, rebuilt from source and stored again. */
    DIR *d = opendir(pdir);
    struct dirent *e;
    char path[8400] = "";
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".bin")) snprintf(path, sizeof path, "%s/%s", pdir, e->d_name);
    if (d) closedir(d);
    size_t n = 0;
    char *data = read_all(path, &n);
    if (data && n > 100) {
        data[n - 50] ^= 0x10;
        write_all(path, data, n);
    }
    free(data);
    c = make_ctx(dir, CLT_TUNE_OFF, 0);
    if (!c) {
        tu_failures++;
        return;
    }
    check_act("corrupt binary", c);
    clt__binary_cache_flush(c);
    clt__binary_cache_stats(c, &st);
    TU_CHECK(st.hits == 0 && st.rejected == 1 && st.stores == 1,
             "corrupt binary: hits %d rejected %d stores %d", st.hits, st.rejected, st.stores);
    clt_context_destroy(c);

    /* Truncated file: rejected too. */
    data = read_all(path, &n);
    if (data && n > 100) write_all(path, data, n / 2);
    free(data);
    c = make_ctx(dir, CLT_TUNE_OFF, 0);
    if (c) {
        check_act("truncated binary", c);
        clt__binary_cache_flush(c);
        clt__binary_cache_stats(c, &st);
        TU_CHECK(st.hits == 0 && st.rejected == 1 && st.stores == 1,
                 "truncated binary: hits %d rejected %d stores %d", st.hits, st.rejected, st.stores);
        clt_context_destroy(c);
    }

    /* Other options: a different program, a miss. */
    c = make_ctx(dir, CLT_TUNE_OFF, 0);
    if (c) {
        cl_kernel k = NULL;
        TU_OK(c, clt__kernel(c, "activation", "-DACT=0", "act_forward", &k));
        if (k) clReleaseKernel(k);
        check_act("warm again", c);
        clt__binary_cache_stats(c, &st);
        TU_CHECK(st.hits == 1 && st.misses == 1, "options: hits %d misses %d", st.hits, st.misses);
        clt_context_destroy(c);
        TU_CHECK(count_files(pdir, ".bin") == 2, "binary of the second program not written at destroy");
    }

    /* A discarded program (a losing tuning candidate) is never written. */
    c = make_ctx(dir, CLT_TUNE_OFF, 0);
    if (c) {
        cl_program p = NULL;
        TU_OK(c, clt__program(c, "activation", "-DACT=3", &p));
        if (p) clt__binary_cache_discard(c, p);
        TU_CHECK(clt__binary_cache_flush(c) == 0, "discarded program stored");
        clt_context_destroy(c);
        TU_CHECK(count_files(pdir, ".bin") == 2, "discarded program written");
    }

    setenv("CLTRAIN_NO_BINARY_CACHE", "1", 1);
    c = make_ctx(dir, CLT_TUNE_QUICK, 0);
    if (c) {
        check_act("disabled", c);
        clt__binary_cache_stats(c, &st);
        TU_CHECK(st.hits == 0 && st.stores == 0, "CLTRAIN_NO_BINARY_CACHE ignored");
        clt_context_destroy(c);
    }
    unsetenv("CLTRAIN_NO_BINARY_CACHE");
}

/* ---- program binaries are native code: trust only the user's own folder and files, and tagged bytes */
static int cap_saved = -1;
static char cap_path[4200];

/* Verbose lines go to stderr: capture them to check their text. */
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
    size_t n = 0;
    char *t = read_all(cap_path, &n);
    fputs(t ? t : "", stderr); /* still in the test log */
    return t ? t : calloc(1, 1);
}

/* The .bin file of the program built with `opt` (e.g. "-DACT=1"), or "" if none. */
static void find_entry(const char *pdir, const char *opt, char *out, size_t len)
{
    out[0] = 0;
    char want[64];
    snprintf(want, sizeof want, "%s\n", opt);
    DIR *d = opendir(pdir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strstr(e->d_name, ".bin")) continue;
        char p[8400];
        snprintf(p, sizeof p, "%s/%s", pdir, e->d_name);
        size_t n = 0;
        char *data = read_all(p, &n);
        if (data && memmem(data, n, want, strlen(want))) snprintf(out, len, "%s", p);
        free(data);
    }
    if (d) closedir(d);
}

/* Splits an entry into its key line and its binary. */
static int split_entry(char *data, size_t n, char **key, size_t *kl, char **bin, size_t *bl)
{
    char *k = memchr(data, '\n', n);
    char *ke = k ? memchr(k + 1, '\n', n - (size_t)(k + 1 - data)) : NULL;
    char *se = ke ? memchr(ke + 1, '\n', n - (size_t)(ke + 1 - data)) : NULL;
    if (!se) return 0;
    *key = k + 1;
    *kl = (size_t)(ke - *key);
    *bin = se + 1;
    *bl = n - (size_t)(*bin - data);
    return 1;
}

static void check_refused(const char *what, const char *dir, const char *must_say, int expect_rejected)
{
    capture_begin();
    clt_context *c = make_ctx_v(dir, CLT_TUNE_OFF, 0, 1); /* the checks read its verbose lines */
    if (!c) {
        free(capture_end());
        tu_failures++;
        return;
    }
    check_act(what, c);
    clt__bin_stats st;
    clt__binary_cache_stats(c, &st);
    clt_context_destroy(c);
    char *log = capture_end();
    TU_CHECK(st.hits == 0 && st.rejected == expect_rejected, "%s: hits %d rejected %d", what, st.hits, st.rejected);
    TU_CHECK(strstr(log, must_say) != NULL, "%s: no verbose line saying '%s'", what, must_say);
    free(log);
}

static void test_binary_trust(void)
{
    char dir[4096], pdir[4200], a[8400], b[8400], keyf[4300];
    sub(dir, "bin");
    snprintf(pdir, sizeof pdir, "%s/programs", dir);
    snprintf(keyf, sizeof keyf, "%s/mac-key", pdir);
    struct stat st;
    TU_CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700, "cache folder created %o, not 0700",
             (unsigned)(st.st_mode & 0777));
    TU_CHECK(stat(pdir, &st) == 0 && (st.st_mode & 0777) == 0700, "programs folder created %o, not 0700",
             (unsigned)(st.st_mode & 0777));
    TU_CHECK(stat(keyf, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32, "mac-key mode %o size %lld",
             (unsigned)(st.st_mode & 0777), (long long)st.st_size);
    find_entry(pdir, "-DACT=1", a, sizeof a);
    find_entry(pdir, "-DACT=0", b, sizeof b);
    TU_CHECK(a[0] && b[0], "entries of ACT=1 and ACT=0 not found");
    if (!a[0] || !b[0]) return;
    TU_CHECK(stat(a, &st) == 0 && (st.st_mode & 0777) == 0600, "entry written %o, not 0600",
             (unsigned)(st.st_mode & 0777));

    /* Another program's binary (same kernel names, other code: ReLU instead of leaky ReLU) under A's key, with
     * the checksum the old format checked (FNV of the bytes), then with an unkeyed BLAKE2b: both refused. */
    size_t na = 0, nb = 0;
    char *da = read_all(a, &na), *db = read_all(b, &nb);
    char *ka, *ba, *kb, *bb;
    size_t kla, bla, klb, blb;
    if (da && db && split_entry(da, na, &ka, &kla, &ba, &bla) && split_entry(db, nb, &kb, &klb, &bb, &blb)) {
        for (int variant = 0; variant < 2; variant++) {
            char tag[80];
            if (variant == 0) {
                snprintf(tag, sizeof tag, "%016llx", (unsigned long long)clt__fnv1a64(CLT__FNV_OFFSET, bb, blb));
            } else {
                unsigned char h[32], kl[8];
                uint64_t l = kla;
                for (int i = 0; i < 8; i++) kl[i] = (unsigned char)(l >> (8 * i));
                crypto_generichash_state hs;
                crypto_generichash_init(&hs, NULL, 0, sizeof h);
                crypto_generichash_update(&hs, kl, 8);
                crypto_generichash_update(&hs, (const unsigned char *)ka, kla);
                crypto_generichash_update(&hs, (const unsigned char *)bb, blb);
                crypto_generichash_final(&hs, h, sizeof h);
                for (int i = 0; i < 32; i++) snprintf(tag + 2 * i, 3, "%02x", h[i]);
            }
            clt__buf f = {0};
            clt__buf_puts(&f, "cltrain-binary\t2\n");
            clt__buf_put(&f, ka, kla);
            clt__buf_printf(&f, "\n%zu %s\n", blb, tag);
            clt__buf_put(&f, bb, blb);
            write_all(a, f.p, f.len);
            clt__buf_free(&f);
            check_refused(variant == 0 ? "another program's binary, FNV" : "another program's binary, BLAKE2b", dir,
                          variant == 0 ? "unusable (truncated)" : "unusable (its tag does not match", 1);
        }
    } else {
        TU_CHECK(0, "cannot parse the cache entries");
    }
    free(da);
    free(db);

    /* The entry was replaced by a good one; a group-writable entry is refused, then replaced (0600). */
    chmod(a, 0666);
    check_refused("entry mode 0666", dir, "not trusted: writable by group or others (mode 0666)", 1);
    TU_CHECK(stat(a, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_uid == geteuid(), "entry not replaced");
    if (geteuid() == 0) {
        TU_CHECK(chown(a, 65534, 65534) == 0, "chown entry");
        check_refused("entry owned by nobody", dir, "not trusted: owned by uid 65534", 1);
        TU_CHECK(stat(a, &st) == 0 && st.st_uid == 0, "foreign entry not replaced");
    } else {
        fprintf(stderr, "skipped: entry owned by another user (needs root)\n");
    }

    /* A folder others may write: nothing loaded from it, nothing written to it. */
    int before = count_files(pdir, ".bin");
    chmod(dir, 0777);
    check_refused("cache folder mode 0777", dir, "is not trusted (writable by group or others (mode 0777))", 0);
    chmod(dir, 0700);
    chmod(pdir, 0770);
    check_refused("programs folder mode 0770", dir, "is not trusted (writable by group or others (mode 0770))", 0);
    chmod(pdir, 0700);
    if (geteuid() == 0) {
        TU_CHECK(chown(pdir, 65534, 65534) == 0, "chown folder");
        check_refused("programs folder owned by nobody", dir, "is not trusted (owned by uid 65534, not by uid 0)", 0);
        TU_CHECK(chown(pdir, 0, 0) == 0, "chown folder back");
    } else {
        fprintf(stderr, "skipped: folder owned by another user (needs root)\n");
    }
    TU_CHECK(count_files(pdir, ".bin") == before, "an untrusted folder was written to");

    /* A damaged key: entries it signed are rebuilt, the key replaced. */
    write_all(keyf, "short", 5);
    clt_context *c = make_ctx(dir, CLT_TUNE_OFF, 0);
    if (c) {
        check_act("damaged key", c);
        clt__bin_stats bs;
        clt__binary_cache_stats(c, &bs);
        TU_CHECK(bs.hits == 0, "hit with a damaged key");
        clt_context_destroy(c);
        TU_CHECK(stat(keyf, &st) == 0 && st.st_size == 32, "key not replaced");
    }
    c = make_ctx(dir, CLT_TUNE_OFF, 0);
    if (c) {
        check_act("after key replacement", c);
        clt__bin_stats bs;
        clt__binary_cache_stats(c, &bs);
        TU_CHECK(bs.hits == 1, "no hit after the key was replaced (hits %d)", bs.hits);
        clt_context_destroy(c);
    }
}

/* ---- a conv2d decision that is neither algorithm: ignored with a warning, the default rule decides */
static void test_conv_entry(void)
{
    char dir[4096];
    sub(dir, "conv");
    clt__conv_geom g = {2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 8, 8};
    char shape[256];
    snprintf(shape, sizeof shape, "n=%d,c=%d,h=%d,w=%d,co=%d,kh=%d,kw=%d,sh=%d,sw=%d,ph=%d,pw=%d,pass=%s", g.n, g.c,
             g.h, g.w, g.co, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, "fwd");
    clt__tune_key key = {"conv2d_algo", "conv2d", "", shape};
    const char *bad[2] = {"algo=im2colXL", "algo=direct2"};
    for (int i = 0; i < 2; i++) {
        clt_context *c = make_ctx(dir, CLT_TUNE_QUICK, 0);
        if (!c) {
            tu_failures++;
            return;
        }
        TU_OK(c, clt__tune_put(c, &key, bad[i]));
        clt_context_destroy(c);
        capture_begin();
        c = make_ctx_v(dir, CLT_TUNE_CACHED, 0, 1);
        int algo = c ? clt__conv2d_algo(c, &g) : -1;
        int want = c && c->info.is_cpu ? CLT__CONV_DIRECT : CLT__CONV_IM2COL; /* the default rule */
        clt_context_destroy(c);
        char *log = capture_end();
        TU_CHECK(algo == want, "'%s': algorithm %d, expected the default %d", bad[i], algo, want);
        TU_CHECK(strstr(log, "is invalid (neither 'algo=direct ...' nor 'algo=im2col ...')") != NULL,
                 "'%s': no verbose line", bad[i]);
        free(log);
    }
}

/* ---- timing */
typedef struct {
    cl_mem buf;
    size_t n;
} fill_ud;

static int run_fill(clt_context *ctx, void *ud)
{
    fill_ud *f = ud;
    float zero = 0;
    CLT_CL(ctx, clEnqueueFillBuffer(ctx->queue, f->buf, &zero, sizeof zero, 0, f->n * sizeof(float), 0, NULL,
                                    NULL));
    return 0;
}

static int run_fill_ev(clt_context *ctx, void *ud, cl_event *ev)
{
    fill_ud *f = ud;
    float zero = 0;
    CLT_CL(ctx, clEnqueueFillBuffer(ctx->queue, f->buf, &zero, sizeof zero, 0, f->n * sizeof(float), 0, NULL,
                                    ev));
    return 0;
}

static int run_fail(clt_context *ctx, void *ud)
{
    (void)ud;
    return clt__err(ctx, CLT_ERR_INVALID, "deliberate");
}

static void test_timing(void)
{
    for (int profile = 0; profile < 2; profile++) {
        clt_context *c = make_ctx(NULL, CLT_TUNE_OFF, profile);
        if (!c) {
            tu_failures++;
            return;
        }
        fill_ud f = {NULL, 1 << 22};
        cl_int err;
        f.buf = clCreateBuffer(c->cl, CL_MEM_READ_WRITE, f.n * sizeof(float), NULL, &err);
        double ms = -1, ms_ev = -1, small = -1;
        TU_OK(c, clt__tune_time(c, run_fill, &f, 5, &ms));
        TU_OK(c, clt__tune_time_ev(c, run_fill_ev, &f, 5, &ms_ev));
        fill_ud s = {f.buf, 1024};
        TU_OK(c, clt__tune_time(c, run_fill, &s, 5, &small));
        fprintf(stderr, "timing (profile %d): fill 16 MiB %.3f ms (events %.3f ms), 4 KiB %.3f ms\n", profile, ms,
                ms_ev, small);
        TU_CHECK(ms > 0 && ms < 10000 && ms_ev > 0 && ms_ev < 10000, "implausible times %g %g", ms, ms_ev);
        TU_CHECK(small < ms, "4 KiB fill (%g ms) not faster than 16 MiB (%g ms)", small, ms);
        double x = 123;
        TU_CHECK(clt__tune_time(c, run_fail, NULL, 3, &x) == CLT_ERR_INVALID && x == 123, "callback error lost");
        clReleaseMemObject(f.buf);
        clt_context_destroy(c);
    }
}

int main(void)
{
    const char *root = getenv("CLTRAIN_CACHE_DIR");
    if (!root || !*root) root = "/tmp";
    if (strlen(root) > sizeof base - 32) {
        fprintf(stderr, "CLTRAIN_CACHE_DIR is too long for this test\n");
        return 1;
    }
    mkdir(root, 0755);
    memcpy(base, root, strlen(root));
    memcpy(base + strlen(root), "/test_tune.XXXXXX", 18);
    if (!mkdtemp(base)) {
        fprintf(stderr, "mkdtemp(%s) failed: %s\n", base, strerror(errno));
        return 1;
    }

    test_keys();
    test_concurrent(); /* forks: before this process initialises OpenCL */
    clt_context *ctx = make_ctx(NULL, CLT_TUNE_CACHED, 0);
    if (!ctx) return 1;
    test_source_keys(ctx);
    clt_context_destroy(ctx);
    test_roundtrip();
    test_off_mode();
    test_corruption();
    test_unwritable();
    test_binaries();
    test_binary_trust();
    test_conv_entry();
    test_timing();
    if (tu_failures == 0) rm_rf(base);
    return tu_finish("tune");
}
