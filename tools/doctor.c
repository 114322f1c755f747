/* doctor.c - `cltrain doctor`: checks what goes wrong on real machines (OpenCL, devices, cache, data) and says how to fix it. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cli.h"

/* Below this much free space the caches (program binaries, a few MB per device) may fail to be written. */
#define DOCTOR_MIN_FREE_BYTES (64ull << 20)

static const char *const driver_fix =
    "install an OpenCL driver: `sudo apt-get install pocl-opencl-icd` (any CPU), or your GPU's: "
    "mesa-opencl-icd (AMD/Intel through Mesa), intel-opencl-icd (Intel), nvidia-opencl-icd (NVIDIA); "
    "`clinfo -l` shows what is visible";

typedef struct doctor {
    int problems;
    char list[32][1024]; /* the problems with their fixes, repeated at the end */
} doctor;

static void ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ok(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ok       ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

static void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("note     ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

/* A problem: what is wrong, then the fix. */
static void problem(doctor *d, const char *fix, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(doctor *d, const char *fix, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    printf("PROBLEM  %s\n         fix: %s\n", what, fix);
    if (d->problems < 32) snprintf(d->list[d->problems], sizeof d->list[0], "%.600s\n     fix: %.400s", what, fix);
    d->problems++;
}

static void fmt_bytes(char *b, size_t len, unsigned long long v)
{
    if (v >= (1ull << 30)) snprintf(b, len, "%.1f GiB", v / 1073741824.0);
    else if (v >= (1ull << 20)) snprintf(b, len, "%.1f MiB", v / 1048576.0);
    else snprintf(b, len, "%.1f KiB", v / 1024.0);
}

/* ------------------------------------------------------------------------------------------ OpenCL */

/* The .icd files the ICD loader reads: OCL_ICD_VENDORS (a folder or one file) replaces /etc/OpenCL/vendors. */
static int check_vendors(doctor *d)
{
    const char *env = getenv("OCL_ICD_VENDORS");
    const char *dir = env && *env ? env : "/etc/OpenCL/vendors";
    const char *from = env && *env ? "OCL_ICD_VENDORS" : "the ICD loader's default";
    struct stat st;
    if (stat(dir, &st) != 0) {
        problem(d, driver_fix, "OpenCL drivers: %s (%s) does not exist (%s)", dir, from, strerror(errno));
        return 0;
    }
    if (S_ISREG(st.st_mode)) {
        ok("OpenCL drivers: %s (one ICD file, from OCL_ICD_VENDORS)", dir);
        return 1;
    }
    DIR *dd = opendir(dir);
    if (!dd) {
        problem(d, driver_fix, "OpenCL drivers: cannot read %s (%s)", dir, strerror(errno));
        return 0;
    }
    char names[512] = "";
    size_t l = 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(dd));) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".icd")) continue;
        if (l < sizeof names) l += (size_t)snprintf(names + l, sizeof names - l, "%s%s", n ? ", " : "", e->d_name);
        n++;
    }
    closedir(dd);
    if (n == 0) {
        char fix[1024];
        snprintf(fix, sizeof fix, "%s%s", driver_fix,
                 env && *env ? "; or unset OCL_ICD_VENDORS, which replaces /etc/OpenCL/vendors" : "");
        problem(d, fix, "OpenCL drivers: no .icd file in %s (%s): no OpenCL driver is registered", dir, from);
        return 0;
    }
    ok("OpenCL drivers: %s in %s (%s)", names, dir, from);
    return 1;
}

/* A tiny graph on device `index` through the public API: y = dense(x + relu(x)) with known weights, checked
 * against the host. It builds the elementwise and GEMM kernels, runs them and reads the result back. */
static void check_kernel(doctor *d, int index, const char *name)
{
    enum { N = 3, F = 5, U = 4 };
    char spec[16];
    snprintf(spec, sizeof spec, "%d", index);
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.device = spec;
    s.tune = CLT_TUNE_OFF; /* the check must not depend on (or write) tuning decisions */
    clt_context *ctx = NULL;
    clt_graph *g = NULL;
    clt_tensor *x, *r, *h, *y;
    double t0 = cli_now_s();
    int st = clt_context_create(&s, &ctx);
    if (st) {
        problem(d, "see the message; `cltrain devices` lists the devices, `clinfo` what the driver reports",
                "device %d (%s): cannot create a context: %s", index, name, ctx ? clt_errmsg(ctx) : clt_status_string(st));
        clt_context_destroy(ctx);
        return;
    }
    int xs[2] = {N, F};
    float xv[N * F], wv[U * F], yv[N * U];
    for (int i = 0; i < N * F; i++) xv[i] = (float)((i * 7) % 11 - 5) * 0.25f;
    for (int i = 0; i < U * F; i++) wv[i] = (float)((i * 5) % 9 - 4) * 0.125f;
    clt_compile_settings cs;
    clt_compile_default_settings(&cs);
    if (!(st = clt_graph_create(ctx, &g)) && !(st = clt_input(g, "x", 2, xs, &x)) && !(st = clt_relu(g, x, &r)) &&
        !(st = clt_add(g, x, r, &h)) && !(st = clt_dense(g, h, U, 0, CLT_INIT_DEFAULT, "w", &y)) &&
        !(st = clt_graph_keep(g, y, 0)) && !(st = clt_graph_compile(g, &cs))) {
        clt_tensor *w = clt_graph_state_tensor(g, 0, NULL);
        if (!w || clt_tensor_numel(w) != U * F) st = CLT_ERR_SHAPE; /* not the dense weight we made */
        else if (!(st = clt_tensor_write(g, w, wv, U * F)) && !(st = clt_tensor_write(g, x, xv, N * F)) &&
                 !(st = clt_graph_forward(g, 0)))
            st = clt_tensor_read(g, y, 0, yv, N * U);
    }
    if (st) {
        const char *msg = clt_errmsg(ctx);
        problem(d, "report it with the message (a driver or compiler bug is likely); try another device with "
                "--device or CLTRAIN_DEVICE", "device %d (%s): the test kernels fail: %s", index, name,
                msg && *msg ? msg : clt_status_string(st));
    } else {
        double worst = 0;
        int bad = -1;
        for (int n = 0; n < N; n++)
            for (int u = 0; u < U; u++) {
                double ref = 0;
                for (int f = 0; f < F; f++) {
                    double v = xv[n * F + f];
                    ref += (v + (v > 0 ? v : 0)) * wv[u * F + f];
                }
                double e = fabs(yv[n * U + u] - ref);
                if (!(e <= 1e-5 + 1e-4 * fabs(ref))) bad = n * U + u; /* NaN fails too */
                if (e > worst) worst = e;
            }
        if (bad >= 0)
            problem(d, "report it: this device computes wrong results (try another device with --device)",
                    "device %d (%s): the test kernels give wrong results (element %d: %g, expected about %g)", index,
                    name, bad, yv[bad], yv[bad] - worst);
        else
            ok("device %d (%s): test kernels (relu, add, dense) build and give the right answer (%.1f s)", index,
               name, cli_now_s() - t0);
    }
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
}

static void check_devices(doctor *d, int vendors_ok)
{
    int n = 0;
    int st = clt_device_count(&n);
    if (st < 0 || n == 0) {
        const char *env = getenv("OCL_ICD_VENDORS");
        char fix[1024];
        snprintf(fix, sizeof fix, "%s%s", driver_fix,
                 vendors_ok ? "; a registered driver failed to load: `OCL_ICD_DEBUG=7 clinfo -l` says why" : "");
        problem(d, fix, "no OpenCL platform or device found%s%s%s", st < 0 ? " (" : "",
                st < 0 ? clt_status_string(st) : "", st < 0 ? ")" : "");
        if (env && *env) info("OCL_ICD_VENDORS=%s replaces /etc/OpenCL/vendors", env);
        return;
    }
    for (int i = 0; i < n; i++) {
        clt_device_info di;
        if ((st = clt_device_get_info(i, &di)) < 0) {
            problem(d, "check the driver with `clinfo`", "device %d: cannot read its properties (%s)", i,
                    clt_status_string(st));
            continue;
        }
        char gm[32], ma[32], lm[32];
        fmt_bytes(gm, sizeof gm, di.global_mem_bytes);
        fmt_bytes(ma, sizeof ma, di.max_alloc_bytes);
        fmt_bytes(lm, sizeof lm, di.local_mem_bytes);
        ok("device %d: %s (%s, platform %d %s, %s; driver %s)", i, di.name, di.is_gpu ? "GPU" : di.is_cpu ? "CPU" : "other",
           di.platform_index, di.platform_name, di.device_version, di.driver_version);
        printf("         %u compute units, %s memory (largest buffer %s), %s local%s, work-group %zu, fp16 %s, "
               "fp64 %s, %s\n", di.compute_units, gm, ma, lm, di.local_mem_is_global ? " (emulated)" : "",
               di.max_work_group_size, di.fp16 ? "yes" : "no", di.fp64 ? "yes" : "no", di.opencl_c_version);
        if (di.max_alloc_bytes < (64ull << 20))
            problem(d, "use another device (--device); this one cannot hold a batch of activations",
                    "device %d: its largest buffer is only %s", i, ma);
        check_kernel(d, i, di.name);
    }
    const char *env = getenv("CLTRAIN_DEVICE");
    if (env && *env) {
        /* The default device as training would pick it, with the environment's spec. */
        clt_context_settings s;
        clt_context_default_settings(&s);
        s.tune = CLT_TUNE_OFF;
        clt_context *ctx = NULL;
        if (clt_context_create(&s, &ctx) == CLT_OK) {
            clt_device_info di;
            clt_context_device_info(ctx, &di);
            ok("CLTRAIN_DEVICE=%s selects device %d (%s)", env, di.index, di.name);
        } else {
            problem(d, "set CLTRAIN_DEVICE to an index, platform:device or part of a name from `cltrain devices`",
                    "CLTRAIN_DEVICE=%s: %s", env, ctx ? clt_errmsg(ctx) : "cannot create a context");
        }
        clt_context_destroy(ctx);
    }
}

/* ------------------------------------------------------------------------------------------ cache, versions */

static const char *user_name(unsigned uid, char *buf, size_t len)
{
    struct passwd *pw = getpwuid(uid);
    if (pw && pw->pw_name) snprintf(buf, len, "%s", pw->pw_name);
    else snprintf(buf, len, "uid %u", uid);
    return buf;
}

/* A cache folder (or its programs/ subfolder) that another user can write lets them plant the native code
 * and decisions cltrain loads; doctor applies the library's rule for trusting cache files (clt_cache_path_trusted)
 * to the folders and says how to fix them. */
static int check_cache_folder(doctor *d, const char *dir, const char *label)
{
    struct stat st;
    char why[256], fix[1200], owner[64];
    if (stat(dir, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) {
        snprintf(fix, sizeof fix, "remove or rename %.500s (cltrain makes the folder), or set CLTRAIN_CACHE_DIR to a "
                 "folder of yours", dir);
        problem(d, fix, "%s %s is %s, not a folder: nothing can be cached", label, dir, tool_file_kind(st.st_mode));
        return -1;
    }
    if (clt_cache_path_trusted(dir, 1, why, sizeof why) == 0) {
        snprintf(fix, sizeof fix, "`chown %s %.400s && chmod 700 %.400s`, or set CLTRAIN_CACHE_DIR to a folder of "
                 "yours", user_name((unsigned)geteuid(), owner, sizeof owner), dir, dir);
        problem(d, fix, "%s %s is %s: another user could replace the compiled kernels and tuning decisions "
                "cached there", label, dir, why);
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(fix, sizeof fix, "`chmod u+rwx %.500s`, or set CLTRAIN_CACHE_DIR to a writable folder", dir);
        problem(d, fix, "%s %s is not writable (%s): nothing can be cached", label, dir, strerror(errno));
        return -1;
    }
    ok("%s %s (owner %s, mode %04o)", label, dir, user_name((unsigned)st.st_uid, owner, sizeof owner),
       (unsigned)(st.st_mode & 07777));
    return 1;
}

static void check_cache(doctor *d)
{
    char dirbuf[4096], *dir = dirbuf;
    if (clt_cache_dir_default(dirbuf, sizeof dirbuf) < 0) {
        problem(d, "set CLTRAIN_CACHE_DIR (or HOME)", "cache folder: none (CLTRAIN_CACHE_DIR, XDG_CACHE_HOME and HOME "
                "are all unset): kernels are rebuilt and retuned every run");
        return;
    }
    const char *from = getenv("CLTRAIN_CACHE_DIR") && *getenv("CLTRAIN_CACHE_DIR") ? "$CLTRAIN_CACHE_DIR"
                       : getenv("XDG_CACHE_HOME") && *getenv("XDG_CACHE_HOME") ? "$XDG_CACHE_HOME/cltrain"
                                                                                : "~/.cache/cltrain";
    char label[64], free_s[32], fix[1200];
    snprintf(label, sizeof label, "cache folder (%s):", from);
    int r = check_cache_folder(d, dir, label);
    if (r == 0) {
        /* Not made yet: the nearest existing parent must take it. */
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", dir);
        struct stat st;
        while (stat(parent, &st) != 0) {
            char *s = strrchr(parent, '/');
            if (!s) {
                snprintf(parent, sizeof parent, ".");
                break;
            }
            if (s == parent) s[1] = 0;
            else *s = 0;
        }
        if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode) || access(parent, W_OK | X_OK) != 0) {
            snprintf(fix, sizeof fix, "create it (`mkdir -p -m 700 %.500s`) or set CLTRAIN_CACHE_DIR to a folder of "
                     "yours", dir);
            problem(d, fix, "%s %s does not exist and cannot be created in %s", label, dir, parent);
            r = -1;
        } else {
            ok("%s %s (not made yet; it will be created in %s)", label, dir, parent);
        }
    } else if (r > 0) {
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/programs", dir);
        if (check_cache_folder(d, sub, "program cache:") < 0) r = -1;
    }
    struct statvfs vs;
    char at[4096];
    snprintf(at, sizeof at, "%s", dir);
    while (statvfs(at, &vs) != 0) { /* the nearest existing folder holds it */
        char *s = strrchr(at, '/');
        if (!s || s == at) {
            snprintf(at, sizeof at, "%s", s ? "/" : ".");
            break;
        }
        *s = 0;
    }
    if (statvfs(at, &vs) == 0) {
        unsigned long long avail = (unsigned long long)vs.f_bavail * vs.f_frsize;
        fmt_bytes(free_s, sizeof free_s, avail);
        if (avail < DOCTOR_MIN_FREE_BYTES) {
            snprintf(fix, sizeof fix, "free some space on that file system or set CLTRAIN_CACHE_DIR elsewhere");
            problem(d, fix, "cache folder %s: only %s free", dir, free_s);
        } else {
            ok("cache folder: %s free", free_s);
        }
    }
}

static void check_versions(void)
{
    clt_version_info v;
    if (clt_version_get(&v) != CLT_OK) return;
    ok("cltrain %s; CLBlast %d.%d.%d (%s); OpenCL ICD loader %s", v.cltrain, v.clblast_major, v.clblast_minor,
       v.clblast_patch, v.clblast_library[0] ? v.clblast_library : "library file unknown",
       v.opencl_library[0] ? v.opencl_library : "(file unknown)");
}

/* ------------------------------------------------------------------------------------------ data sets */

static void check_data(doctor *d)
{
    static const char *const sets[3] = {"cifar10", "fashion-mnist", "mnist"};
    const char *env = getenv("CLTRAIN_DATA");
    struct stat st;
    if (env && *env && stat(env, &st) != 0)
        problem(d, "point CLTRAIN_DATA at a data folder or tarball, or unset it", "CLTRAIN_DATA=%s: %s", env,
                strerror(errno));
    for (int i = 0; i < 3; i++) {
        char path[4096], origin[96], err[TOOL_ERR_LEN];
        const char *title = tool_data_title(sets[i]);
        if (tool_data_find(sets[i], NULL, path, sizeof path, origin, sizeof origin, err) != CLT_OK) {
            /* Not a fault of the machine: a note with the places and how to fill one. */
            printf("note     data %s: ", title);
            for (const char *l = err; *l;) { /* the message's lines, indented under the note */
                const char *e = strchr(l, '\n');
                int n = e ? (int)(e - l) : (int)strlen(l);
                printf("%s%.*s\n", l == err ? "" : "           ", n, l);
                l += n + (e != NULL);
            }
            continue;
        }
        tool_dataset ds;
        if (tool_load_data(sets[i], path, 0, &ds, err) != CLT_OK) {
            char fix[1200], how[1000];
            tool_data_howto(sets[i], path, how, sizeof how);
            snprintf(fix, sizeof fix, "replace it with a good copy: %s", how);
            problem(d, fix, "data %s at %s (%s) does not load: %s", title, path, origin, err);
            continue;
        }
        ok("data %s: %s (%s; test split: %d images of %dx%dx%d)", title, path, origin, ds.n, ds.c, ds.h, ds.w);
        tool_dataset_free(&ds);
    }
}

/* ------------------------------------------------------------------------------------------ command */

int tool_cmd_doctor(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs("usage: cltrain doctor\n"
                  "\n"
                  "Checks this machine for what cltrain needs and prints a fix for each problem: the OpenCL\n"
                  "drivers and platforms, every device (its capabilities, and whether a small test graph builds\n"
                  "and computes the right answer there), the cache folder (location, owner, mode, free space),\n"
                  "the CLBlast and OpenCL libraries, and where each data set is found.\n"
                  "Exit status: 0 when all is well, 1 with the list of problems otherwise.\n", stdout);
            return 0;
        }
        fprintf(stderr, "cltrain doctor: unexpected argument '%s'\nTry 'cltrain doctor --help'.\n", argv[i]);
        return 2;
    }
    doctor d = {0};
    fflush(stdout);
    check_versions();
    int vendors_ok = check_vendors(&d);
    check_devices(&d, vendors_ok);
    check_cache(&d);
    check_data(&d);
    if (d.problems == 0) {
        printf("all is well\n");
        return 0;
    }
    printf("\n%d problem%s:\n", d.problems, d.problems > 1 ? "s" : "");
    for (int i = 0; i < d.problems && i < 32; i++) printf("  %d. %s\n", i + 1, d.list[i]);
    return 1;
}
