/* tune.c - per-device tuning decisions persisted in an on-disk cache, and the timing helpers of tuners.
 *
 * Tuning file: <cache_dir>/tune-<fnv64 of the device+library identity>.txt, text:
 *     cltrain-tune<TAB>1
 *     <fnv64(key) hex16><TAB><full key><TAB><value><TAB><fnv64 of the line up to here, hex16>
 * The full key repeats the identity, so a line can never be reused by another driver, library or kernel
 * version even if two identities collided on the file name. Lines that fail their checksum are dropped (a
 * bad header drops the file); the next write rewrites the file from the valid entries only.
 * Writers serialise on flock(<file>.lock), re-read the file under the lock, merge, and replace it with a
 * temp file (fsync + rename), so readers never need the lock and always see a complete file.
 * Program binaries live in bincache.c; files, locks and the atomic writer in disk.c.
 */
#include "tune.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"

#define TUNE_HEADER "cltrain-tune\t1\n"
#define TUNE_MAX_BYTES (64u << 20) /* far above any real file: thousands of entries of < 1 KiB */

typedef struct tune_entry {
    uint64_t hash;
    char *key;
    char *value;
    int pending;  /* measured here, not yet persisted */
    int reported; /* verbose: hit already printed */
} tune_entry;

typedef struct ent_list {
    tune_entry *e;
    int n, cap;
} ent_list;

typedef struct src_hash {
    char *name;
    uint64_t hash;
} src_hash;

struct clt__tuner {
    clt__tune_key_parts id; /* identity parts; kernel/options/shape unused */
    char *dir;              /* cache folder or NULL */
    char *path, *lock_path; /* this device's tuning file */
    int disk;               /* tuning file usable (cleared after the first failure) */
    int loaded;
    ent_list mem;
    src_hash *src;
    int nsrc;
    clt__tune_stats stats;
};

static uint64_t fnv_str(const char *s)
{
    return clt__fnv1a64(CLT__FNV_OFFSET, s, strlen(s));
}

/* ---------------------------------------------------------------------------------------------- strings */

static void sb_identity(clt__buf *b, const clt__tune_key_parts *p)
{
    clt__cache_id id = {p->platform, p->platform_version, p->device, p->device_version, p->driver, p->opencl_c,
                        p->cltrain, p->clblast};
    clt__buf_cache_id(b, &id);
}

char *clt__tune_key_string(const clt__tune_key_parts *p)
{
    clt__buf b = {0};
    char hex[24];
    sb_identity(&b, p);
    clt__buf_key_part(&b, "kernel", p->kernel, 0);
    if (p->has_source) snprintf(hex, sizeof hex, "%016llx", (unsigned long long)p->source_hash);
    else snprintf(hex, sizeof hex, "-");
    clt__buf_key_part(&b, "src", hex, 0);
    clt__buf_key_part(&b, "options", p->options, 0);
    clt__buf_key_part(&b, "shape", p->shape, 0);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---------------------------------------------------------------------------------------------- entries */

static int list_find(const ent_list *l, uint64_t h, const char *key)
{
    for (int i = 0; i < l->n; i++)
        if (l->e[i].hash == h && strcmp(l->e[i].key, key) == 0) return i;
    return -1;
}

/* Adds or replaces; returns the index or -1 when out of memory. */
static int list_set(ent_list *l, uint64_t h, const char *key, const char *value, int pending)
{
    int i = list_find(l, h, key);
    char *v = clt__strdup(value);
    if (!v) return -1;
    if (i >= 0) {
        free(l->e[i].value);
        l->e[i].value = v;
        l->e[i].pending = pending;
        return i;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        tune_entry *ne = realloc(l->e, (size_t)cap * sizeof *ne);
        if (!ne) {
            free(v);
            return -1;
        }
        l->e = ne;
        l->cap = cap;
    }
    char *k = clt__strdup(key);
    if (!k) {
        free(v);
        return -1;
    }
    l->e[l->n] = (tune_entry){h, k, v, pending, 0};
    return l->n++;
}

static void list_free(ent_list *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->e[i].key);
        free(l->e[i].value);
    }
    free(l->e);
    *l = (ent_list){0};
}

static int parse_hex16(const char *s, size_t n, uint64_t *out)
{
    if (n != 16) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 1;
}

static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

/* Reads the valid entries of a tuning file into l. Returns 0 if the file is missing, 1 if read, -1 when out of
 * memory. *bad_header: the file is not a tuning file of this format; *bad_lines: lines dropped. */
static int load_entries(const char *path, ent_list *l, int *bad_header, int *bad_lines)
{
    *bad_header = 0;
    *bad_lines = 0;
    size_t n;
    char *buf;
    char err[512];
    int rd = clt__read_file(path, TUNE_MAX_BYTES, 0, &buf, &n, err, sizeof err);
    if (rd == 1) return 0;
    if (rd < 0) { /* a folder, FIFO, oversized file: as good as a corrupt one, rewritten on the next write */
        *bad_header = 1;
        return 1;
    }
    size_t hl = strlen(TUNE_HEADER);
    if (n < hl || memcmp(buf, TUNE_HEADER, hl) != 0) {
        *bad_header = 1;
        free(buf);
        return 1;
    }
    char *p = buf + hl, *end = buf + n;
    int rc = 1;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) { /* truncated last line */
            (*bad_lines)++;
            break;
        }
        char *f[4];
        size_t fl[4];
        int nf = 0;
        char *s = p;
        while (nf < 4) {
            char *tab = memchr(s, '\t', (size_t)(nl - s));
            f[nf] = s;
            fl[nf] = (size_t)((tab ? tab : nl) - s);
            nf++;
            if (!tab) break;
            s = tab + 1;
        }
        uint64_t h, chk;
        int ok = nf == 4 && f[3] + fl[3] == nl && parse_hex16(f[0], fl[0], &h) && parse_hex16(f[3], fl[3], &chk) &&
                 fl[1] > 0 && printable(f[1], fl[1]) && printable(f[2], fl[2]) &&
                 clt__fnv1a64(CLT__FNV_OFFSET, p, (size_t)(f[3] - 1 - p)) == chk &&
                 clt__fnv1a64(CLT__FNV_OFFSET, f[1], fl[1]) == h;
        if (ok) {
            f[1][fl[1]] = 0;
            f[2][fl[2]] = 0;
            if (list_set(l, h, f[1], f[2], 0) < 0) {
                rc = -1;
                break;
            }
        } else {
            (*bad_lines)++;
        }
        p = nl + 1;
    }
    free(buf);
    return rc;
}

static int write_entries(clt__tuner *t, const ent_list *l)
{
    clt__buf b = {0};
    clt__buf_puts(&b, TUNE_HEADER);
    for (int i = 0; i < l->n; i++) {
        size_t start = b.len;
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%016llx\t", (unsigned long long)l->e[i].hash);
        clt__buf_puts(&b, tmp);
        clt__buf_puts(&b, l->e[i].key);
        clt__buf_puts(&b, "\t");
        clt__buf_puts(&b, l->e[i].value);
        if (b.oom) break;
        uint64_t chk = clt__fnv1a64(CLT__FNV_OFFSET, b.p + start, b.len - start);
        snprintf(tmp, sizeof tmp, "\t%016llx\n", (unsigned long long)chk);
        clt__buf_puts(&b, tmp);
    }
    if (b.oom) {
        free(b.p);
        errno = ENOMEM;
        return -1;
    }
    const void *parts[1] = {b.p};
    size_t lens[1] = {b.len};
    int rc = clt__atomic_write(t->path, parts, lens, 1, 0600, NULL, 0);
    free(b.p);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- tuner */

static void disk_failed(clt_context *ctx, clt__tuner *t, const char *what, const char *path)
{
    if (!t->disk) return;
    t->disk = 0;
    clt__vlog(ctx, "tuning cache: %s %s failed (%s); tuning results stay in memory for this context", what, path,
         strerror(errno));
}

static clt__tuner *get_tuner(clt_context *ctx)
{
    if (ctx->tuner) return ctx->tuner;
    clt__tuner *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->id = (clt__tune_key_parts){
        .platform = ctx->info.platform_name,
        .platform_version = ctx->info.platform_version,
        .device = ctx->info.name,
        .device_version = ctx->info.device_version,
        .driver = ctx->info.driver_version,
        .opencl_c = ctx->info.opencl_c_version,
        .cltrain = CLT_VERSION_STRING,
        .clblast = clt__clblast_identity(),
    };
    if (ctx->cache_dir && *ctx->cache_dir) {
        clt__buf id = {0};
        sb_identity(&id, &t->id);
        uint64_t h = id.oom ? 0 : fnv_str(id.p);
        free(id.p);
        size_t dl = strlen(ctx->cache_dir);
        t->dir = clt__strdup(ctx->cache_dir);
        t->path = malloc(dl + 40);
        t->lock_path = malloc(dl + 48);
        if (!t->dir || !t->path || !t->lock_path || h == 0) {
            free(t->dir);
            free(t->path);
            free(t->lock_path);
            free(t);
            return NULL;
        }
        snprintf(t->path, dl + 40, "%s/tune-%016llx.txt", ctx->cache_dir, (unsigned long long)h);
        snprintf(t->lock_path, dl + 48, "%s.lock", t->path);
        t->disk = 1;
    }
    ctx->tuner = t;
    return t;
}

static void load_once(clt_context *ctx, clt__tuner *t)
{
    if (t->loaded) return;
    t->loaded = 1;
    if (!t->path) return;
    int bad_header, bad_lines;
    int rc = load_entries(t->path, &t->mem, &bad_header, &bad_lines);
    if (rc > 0) t->stats.file_loads++;
    if (bad_header) {
        t->stats.corrupt_files++;
        clt__vlog(ctx, "tuning cache %s is not a valid cache file: ignored, it will be rebuilt on the next write",
             t->path);
    } else if (bad_lines) {
        t->stats.bad_lines += bad_lines;
        clt__vlog(ctx, "tuning cache %s: %d corrupt line(s) ignored, the file will be rebuilt on the next write",
             t->path, bad_lines);
    } else if (rc > 0) {
        clt__vlog(ctx, "tuning cache %s: %d entries", t->path, t->mem.n);
    }
}

/* Lock, re-read, merge pending entries, write, unlock. Failures switch the context to memory-only. */
static void persist(clt_context *ctx, clt__tuner *t)
{
    if (!t->disk) return;
    if (clt__mkdirs(t->dir) != 0) {
        disk_failed(ctx, t, "creating folder", t->dir);
        return;
    }
    int fd = clt__lock(t->lock_path);
    if (fd < 0) {
        disk_failed(ctx, t, "locking", t->lock_path);
        return;
    }
    clt__remove_stale_tmp(t->path);
    ent_list disk = {0};
    int bad_header, bad_lines;
    int rc = load_entries(t->path, &disk, &bad_header, &bad_lines);
    if (bad_header || bad_lines) {
        t->stats.corrupt_files += bad_header;
        t->stats.bad_lines += bad_lines;
        clt__vlog(ctx, "tuning cache %s was corrupt (%s): rebuilding it from the valid entries", t->path,
             bad_header ? "bad header" : "bad lines");
    }
    for (int i = 0; rc >= 0 && i < t->mem.n; i++)
        if (t->mem.e[i].pending && list_set(&disk, t->mem.e[i].hash, t->mem.e[i].key, t->mem.e[i].value, 0) < 0)
            rc = -1;
    /* Adopt what other processes measured meanwhile. */
    for (int i = 0; rc >= 0 && i < disk.n; i++) {
        int j = list_find(&t->mem, disk.e[i].hash, disk.e[i].key);
        if (j >= 0 && t->mem.e[j].pending) continue;
        if (j >= 0 && strcmp(t->mem.e[j].value, disk.e[i].value) == 0) continue;
        if (list_set(&t->mem, disk.e[i].hash, disk.e[i].key, disk.e[i].value, 0) < 0) rc = -1;
    }
    if (rc < 0) {
        errno = ENOMEM;
        disk_failed(ctx, t, "merging", t->path);
    } else if (write_entries(t, &disk) != 0) {
        disk_failed(ctx, t, "writing", t->path);
    } else {
        t->stats.file_writes++;
        for (int i = 0; i < t->mem.n; i++) t->mem.e[i].pending = 0;
    }
    list_free(&disk);
    clt__unlock(fd);
}

static int source_hash(clt_context *ctx, clt__tuner *t, const char *name, uint64_t *out)
{
    for (int i = 0; i < t->nsrc; i++)
        if (strcmp(t->src[i].name, name) == 0) {
            *out = t->src[i].hash;
            return CLT_OK;
        }
    char *common = NULL, *text = NULL;
    size_t lc = 0, lt = 0;
    CLT_TRY(clt__source_text(ctx, "common", &common, &lc));
    int st = clt__source_text(ctx, name, &text, &lt);
    if (st < 0) {
        free(common);
        return st;
    }
    /* Same bytes as the program text (common.cl followed by the source), so the hash matches the binary key. */
    uint64_t h = clt__fnv1a64(clt__fnv1a64(CLT__FNV_OFFSET, common, lc), text, lt);
    free(common);
    free(text);
    src_hash *ns = realloc(t->src, (size_t)(t->nsrc + 1) * sizeof *ns);
    char *nm = clt__strdup(name);
    if (!ns || !nm) {
        free(nm);
        if (ns) t->src = ns;
        return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    }
    t->src = ns;
    t->src[t->nsrc++] = (src_hash){nm, h};
    *out = h;
    return CLT_OK;
}

int clt__tune_full_key(clt_context *ctx, const clt__tune_key *key, char **out)
{
    *out = NULL;
    clt__tuner *t = get_tuner(ctx);
    if (!t) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    clt__tune_key_parts p = t->id;
    p.kernel = key->kernel;
    p.options = key->options ? key->options : "";
    p.shape = key->shape ? key->shape : "";
    if (key->source) {
        p.has_source = 1;
        CLT_TRY(source_hash(ctx, t, key->source, &p.source_hash));
    }
    *out = clt__tune_key_string(&p);
    if (!*out) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    return CLT_OK;
}

int clt__tune_get(clt_context *ctx, const clt__tune_key *key, char *value, size_t len)
{
    if (!key || !key->kernel || !value || len == 0)
        return clt__err(ctx, CLT_ERR_INVALID, "clt__tune_get: key, key->kernel and value are required");
    value[0] = 0;
    if (ctx->tune == CLT_TUNE_OFF) return 0;
    clt__tuner *t = get_tuner(ctx);
    if (!t) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    load_once(ctx, t);
    char *k;
    CLT_TRY(clt__tune_full_key(ctx, key, &k));
    int i = list_find(&t->mem, fnv_str(k), k);
    free(k);
    if (i < 0) return 0;
    tune_entry *e = &t->mem.e[i];
    size_t n = strlen(e->value);
    if (n >= len) { /* longer than any value the caller writes: not one of its entries */
        char why[96];
        snprintf(why, sizeof why, "%zu characters, more than the %zu its users write", n, len - 1);
        clt__tune_invalid(ctx, key, why);
        return 0;
    }
    memcpy(value, e->value, n + 1);
    if (!e->reported) {
        e->reported = 1;
        clt__vlog(ctx, "tune %s %s%s%s -> %s (cached)", key->kernel, key->shape ? key->shape : "",
             key->options && *key->options ? " " : "", key->options ? key->options : "", e->value);
    }
    return 1;
}

void clt__tune_invalid(clt_context *ctx, const clt__tune_key *key, const char *why)
{
    clt__tuner *t = ctx->tuner;
    char *k = NULL;
    if (!t || clt__tune_full_key(ctx, key, &k) < 0) {
        clt__clear_error(ctx);
        return;
    }
    int i = list_find(&t->mem, fnv_str(k), k);
    free(k);
    if (i < 0) return;
    tune_entry *e = &t->mem.e[i];
    size_t n = strlen(e->value);
    clt__vlog(ctx, "tuning cache: entry %s %s%s%s = '%.60s%s' is invalid (%s): ignored, the default is used "
              "(a new measurement replaces it)", key->kernel, key->shape ? key->shape : "",
              key->options && *key->options ? " " : "", key->options ? key->options : "", e->value,
              n > 60 ? "..." : "", why);
    t->stats.invalid_entries++;
    free(e->key);
    free(e->value);
    memmove(e, e + 1, (size_t)(--t->mem.n - i) * sizeof *e); /* keeps the others in insertion order */
}

int clt__tune_put(clt_context *ctx, const clt__tune_key *key, const char *value)
{
    if (!key || !key->kernel || !value)
        return clt__err(ctx, CLT_ERR_INVALID, "clt__tune_put: key, key->kernel and value are required");
    if (!printable(value, strlen(value)) || strchr(value, '\t'))
        return clt__err(ctx, CLT_ERR_INVALID, "clt__tune_put: value for %s has control characters", key->kernel);
    if (ctx->tune == CLT_TUNE_OFF) return 0;
    clt__tuner *t = get_tuner(ctx);
    if (!t) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    load_once(ctx, t);
    char *k;
    CLT_TRY(clt__tune_full_key(ctx, key, &k));
    int measured = ctx->tune >= CLT_TUNE_QUICK;
    int i = list_set(&t->mem, fnv_str(k), k, value, measured);
    free(k);
    if (i < 0) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    t->mem.e[i].reported = 1;
    clt__vlog(ctx, "tune %s %s%s%s -> %s", key->kernel, key->shape ? key->shape : "",
         key->options && *key->options ? " " : "", key->options ? key->options : "", value);
    if (measured) persist(ctx, t);
    return 0;
}

int clt__tune_foreach(clt_context *ctx, int (*fn)(void *ud, const char *key, const char *value), void *ud)
{
    if (ctx->tune == CLT_TUNE_OFF) return 0;
    clt__tuner *t = get_tuner(ctx);
    if (!t) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    load_once(ctx, t);
    for (int i = 0; i < t->mem.n; i++) {
        int rc = fn(ud, t->mem.e[i].key, t->mem.e[i].value);
        if (rc) return rc;
    }
    return 0;
}

int clt__tune_may_measure(clt_context *ctx)
{
    if (ctx->tune == CLT_TUNE_FULL) return 1;
    if (ctx->tune == CLT_TUNE_QUICK) return ctx->tune_spent_s < ctx->tune_budget_s;
    return 0;
}

void clt__tune_charge(clt_context *ctx, double seconds)
{
    if (seconds > 0) ctx->tune_spent_s += seconds;
}

const char *clt__tune_file_path(clt_context *ctx)
{
    clt__tuner *t = get_tuner(ctx);
    return t ? t->path : NULL;
}

void clt__tune_get_stats(clt_context *ctx, clt__tune_stats *s)
{
    clt__tuner *t = get_tuner(ctx);
    if (t) *s = t->stats;
    else memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------------------------------------- timing */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Start..end of the profiled commands a (first) and b (last), in ms; -1 if the device gave no times. */
static double profiled_ms(cl_event a, cl_profiling_info ia, cl_event b, cl_profiling_info ib)
{
    cl_ulong t0 = 0, t1 = 0;
    if (clGetEventProfilingInfo(a, ia, sizeof t0, &t0, NULL) != CL_SUCCESS) return -1;
    if (clGetEventProfilingInfo(b, ib, sizeof t1, &t1, NULL) != CL_SUCCESS) return -1;
    if (t1 < t0 || t0 == 0) return -1;
    return (double)(t1 - t0) * 1e-6;
}

int clt__tune_time(clt_context *ctx, clt__tune_run_fn run, void *ud, int reps, double *ms)
{
    if (reps < 1) reps = 1;
    double *v = malloc((size_t)reps * sizeof *v);
    if (!v) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    int st = run(ctx, ud);
    cl_int err = st < 0 ? CL_SUCCESS : clFinish(ctx->queue);
    if (err != CL_SUCCESS) st = clt__cl_err(ctx, err, "clFinish", __FILE__, __LINE__);
    int use_markers = ctx->queue_profiling;
    for (int r = 0; r < reps && st >= 0; r++) {
        double t0 = clt__now_ms();
        double dt = -1;
        cl_event e0 = NULL, e1 = NULL;
        if (use_markers && clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &e0) != CL_SUCCESS) e0 = NULL;
        st = run(ctx, ud);
        if (st >= 0 && e0 && clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &e1) != CL_SUCCESS) e1 = NULL;
        err = clFinish(ctx->queue);
        double t1 = clt__now_ms();
        if (st >= 0 && err != CL_SUCCESS) st = clt__cl_err(ctx, err, "clFinish", __FILE__, __LINE__);
        if (e0 && e1) dt = profiled_ms(e0, CL_PROFILING_COMMAND_END, e1, CL_PROFILING_COMMAND_END);
        if (e0) clReleaseEvent(e0);
        if (e1) clReleaseEvent(e1);
        if (dt < 0) {
            use_markers = 0;
            dt = t1 - t0;
        }
        v[r] = dt;
    }
    if (st >= 0) *ms = median(v, reps);
    free(v);
    return st < 0 ? st : CLT_OK;
}

int clt__tune_time_ev(clt_context *ctx, clt__tune_run_ev_fn run, void *ud, int reps, double *ms)
{
    if (reps < 1) reps = 1;
    double *v = malloc((size_t)reps * sizeof *v);
    if (!v) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    cl_event ev = NULL;
    int st = run(ctx, ud, &ev);
    if (ev) clReleaseEvent(ev);
    cl_int err = st < 0 ? CL_SUCCESS : clFinish(ctx->queue);
    if (err != CL_SUCCESS) st = clt__cl_err(ctx, err, "clFinish", __FILE__, __LINE__);
    for (int r = 0; r < reps && st >= 0; r++) {
        ev = NULL;
        double t0 = clt__now_ms();
        st = run(ctx, ud, &ev);
        err = clFinish(ctx->queue);
        double t1 = clt__now_ms();
        if (st >= 0 && err != CL_SUCCESS) st = clt__cl_err(ctx, err, "clFinish", __FILE__, __LINE__);
        double dt = -1;
        if (ev && ctx->queue_profiling)
            dt = profiled_ms(ev, CL_PROFILING_COMMAND_START, ev, CL_PROFILING_COMMAND_END);
        if (ev) clReleaseEvent(ev);
        v[r] = dt >= 0 ? dt : t1 - t0;
    }
    if (st >= 0) *ms = median(v, reps);
    free(v);
    return st < 0 ? st : CLT_OK;
}

void clt__tuner_release(clt_context *ctx)
{
    clt__tuner *t = ctx->tuner;
    if (!t) return;
    list_free(&t->mem);
    for (int i = 0; i < t->nsrc; i++) free(t->src[i].name);
    free(t->src);
    free(t->dir);
    free(t->path);
    free(t->lock_path);
    free(t);
    ctx->tuner = NULL;
}
