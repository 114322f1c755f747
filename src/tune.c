/* tune.c - per-device tuning decisions and compiled program binaries, persisted in an on-disk cache.
 *
 * Tuning file: <cache_dir>/tune-<fnv64 of the device+library identity>.txt, text:
 *     cltrain-tune<TAB>1
 *     <fnv64(key) hex16><TAB><full key><TAB><value><TAB><fnv64 of the line up to here, hex16>
 * The full key repeats the identity, so a line can never be reused by another driver, library or kernel
 * version even if two identities collided on the file name. Lines that fail their checksum are dropped (a
 * bad header drops the file); the next write rewrites the file from the valid entries only.
 * Writers serialise on flock(<file>.lock), re-read the file under the lock, merge, and replace it with a
 * temp file (fsync + rename), so readers never need the lock and always see a complete file.
 *
 * Program binaries: <cache_dir>/programs/<fnv64(key) hex16>.bin, written when the context is destroyed (or at
 * clt__binary_cache_flush) rather than right after the build: asking for CL_PROGRAM_BINARIES makes some drivers
 * (POCL) generate machine code for every kernel, which should not slow down start-up nor be paid for tuning
 * candidates that lose (clt__binary_cache_discard). Format:
 *     cltrain-binary<TAB>1\n<full key>\n<size> <fnv64 of the bytes hex16>\n<size bytes>
 */
#define _GNU_SOURCE /* flock, dladdr */
#include "tune.h"

#include <clblast_c.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TUNE_HEADER "cltrain-tune\t1\n"
#define BIN_HEADER "cltrain-binary\t1\n"

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

typedef struct pending_bin { /* a program whose binary is written at flush time */
    cl_program prog;          /* retained */
    char *key, *path;
} pending_bin;

typedef struct src_hash {
    char *name;
    uint64_t hash;
} src_hash;

struct clt__tuner {
    clt__tune_key_parts id; /* identity parts; kernel/options/shape unused */
    char *dir;              /* cache folder or NULL */
    char *path, *lock_path; /* this device's tuning file */
    char *bin_dir;
    int disk;               /* tuning file usable (cleared after the first failure) */
    int bin_disk;           /* program folder usable */
    int bin_cleaned;        /* stale temp files of the program folder removed */
    pending_bin *pend;
    int npend, cap_pend;
    int loaded;
    ent_list mem;
    src_hash *src;
    int nsrc;
    unsigned tmp_counter;
    clt__tune_stats stats;
};

uint64_t clt__fnv1a64(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t fnv_str(const char *s)
{
    return clt__fnv1a64(CLT__FNV_OFFSET, s, strlen(s));
}

static void vlog(clt_context *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void vlog(clt_context *ctx, const char *fmt, ...)
{
    if (!ctx->verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("cltrain: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------------- strings */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

/* Key parts may hold anything; escaping keeps the key on one line, free of tabs, and unambiguous ('|'
 * separates parts). */
static void sb_esc(sbuf *b, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        if (c == '\\') sb_puts(b, "\\\\");
        else if (c == '|') sb_puts(b, "\\p");
        else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            sb_puts(b, tmp);
        } else sb_putn(b, (const char *)&c, 1);
    }
}

static void sb_part(sbuf *b, const char *name, const char *value, int first)
{
    if (!first) sb_puts(b, "|");
    sb_puts(b, name);
    sb_puts(b, "=");
    sb_esc(b, value);
}

static void sb_identity(sbuf *b, const clt__tune_key_parts *p)
{
    sb_part(b, "platform", p->platform, 1);
    sb_part(b, "platform_version", p->platform_version, 0);
    sb_part(b, "device", p->device, 0);
    sb_part(b, "device_version", p->device_version, 0); /* POCL: names the LLVM target CPU */
    sb_part(b, "driver", p->driver, 0);
    sb_part(b, "opencl_c", p->opencl_c, 0);
    sb_part(b, "cltrain", p->cltrain, 0);
    sb_part(b, "clblast", p->clblast, 0);
}

char *clt__tune_key_string(const clt__tune_key_parts *p)
{
    sbuf b = {0};
    char hex[24];
    sb_identity(&b, p);
    sb_part(&b, "kernel", p->kernel, 0);
    if (p->has_source) snprintf(hex, sizeof hex, "%016llx", (unsigned long long)p->source_hash);
    else snprintf(hex, sizeof hex, "-");
    sb_part(&b, "src", hex, 0);
    sb_part(&b, "options", p->options, 0);
    sb_part(&b, "shape", p->shape, 0);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---------------------------------------------------------------------------------------------- identity */

/* CLBlast version we were built against plus the identity of the library file actually loaded (path, size,
 * mtime, inode), so replacing the library without rebuilding cltrain still invalidates the entries. */
static const char *clblast_identity(void)
{
    static char id[1200];
    if (id[0]) return id;
    int n = snprintf(id, sizeof id, "%d.%d.%d", CLBLAST_VERSION_MAJOR, CLBLAST_VERSION_MINOR,
                     CLBLAST_VERSION_PATCH);
    Dl_info info;
    if (dladdr((void *)(uintptr_t)&CLBlastSgemm, &info) && info.dli_fname) {
        struct stat st;
        if (stat(info.dli_fname, &st) == 0)
            snprintf(id + n, sizeof id - (size_t)n, " %s size=%lld mtime=%lld ino=%llu", info.dli_fname,
                     (long long)st.st_size, (long long)st.st_mtime, (unsigned long long)st.st_ino);
        else
            snprintf(id + n, sizeof id - (size_t)n, " %s", info.dli_fname);
    }
    return id;
}

/* ---------------------------------------------------------------------------------------------- files */

static int mkdirs(const char *path)
{
    char *p = clt__strdup(path);
    if (!p) return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
    struct stat st;
    if (rc == 0 && (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))) rc = -1;
    if (rc == 0 && access(p, W_OK | X_OK) != 0) rc = -1;
    free(p);
    return rc;
}

/* Whole file into a NUL-terminated buffer; NULL with errno ENOENT if missing. */
static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0) {
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            free(buf);
            buf = NULL;
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (!buf) return NULL;
    buf[n] = 0;
    *len = n;
    return buf;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Writes data to a unique temp file in `dir`, fsyncs and renames it over `path`. 0 or -1 (errno set). */
static int atomic_write(clt__tuner *t, const char *dir, const char *path, const void *const *parts,
                        const size_t *lens, int nparts)
{
    size_t pl = strlen(path) + 64;
    char *tmp = malloc(pl);
    if (!tmp) return -1;
    snprintf(tmp, pl, "%s.tmp.%ld.%u", path, (long)getpid(), t->tmp_counter++);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    int ok = 1;
    for (int i = 0; i < nparts && ok; i++) {
        const char *p = parts[i];
        size_t left = lens[i];
        while (left > 0) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                ok = 0;
                break;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    if (ok && fsync(fd) != 0) ok = 0;
    if (close(fd) != 0) ok = 0;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
        int e = errno;
        unlink(tmp);
        errno = e;
    } else {
        fsync_dir(dir);
    }
    free(tmp);
    return ok ? 0 : -1;
}

/* Temp files "<name>.tmp.<pid>.<n>" of writers that died before their rename: removed once they are 10 minutes
 * old and their process is gone (the age guards against pid namespaces sharing one cache folder). */
static void remove_stale_tmp(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return;
    size_t pl = strlen(prefix), dl = strlen(dir);
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, pl) != 0) continue;
        const char *s = strstr(e->d_name + pl, ".tmp.");
        if (!s) continue;
        char *end;
        long pid = strtol(s + 5, &end, 10);
        if (end == s + 5 || *end != '.' || pid <= 0) continue;
        char *path = malloc(dl + strlen(e->d_name) + 2);
        if (!path) break;
        sprintf(path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && now - st.st_mtime > 600 && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
            unlink(path);
        free(path);
    }
    closedir(d);
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
    char *buf = slurp(path, &n);
    if (!buf) return 0;
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
    sbuf b = {0};
    sb_puts(&b, TUNE_HEADER);
    for (int i = 0; i < l->n; i++) {
        size_t start = b.n;
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%016llx\t", (unsigned long long)l->e[i].hash);
        sb_puts(&b, tmp);
        sb_puts(&b, l->e[i].key);
        sb_puts(&b, "\t");
        sb_puts(&b, l->e[i].value);
        if (b.oom) break;
        uint64_t chk = clt__fnv1a64(CLT__FNV_OFFSET, b.p + start, b.n - start);
        snprintf(tmp, sizeof tmp, "\t%016llx\n", (unsigned long long)chk);
        sb_puts(&b, tmp);
    }
    if (b.oom) {
        free(b.p);
        errno = ENOMEM;
        return -1;
    }
    const void *parts[1] = {b.p};
    size_t lens[1] = {b.n};
    int rc = atomic_write(t, t->dir, t->path, parts, lens, 1);
    free(b.p);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- tuner */

static void disk_failed(clt_context *ctx, clt__tuner *t, const char *what, const char *path)
{
    if (!t->disk) return;
    t->disk = 0;
    vlog(ctx, "tuning cache: %s %s failed (%s); tuning results stay in memory for this context", what, path,
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
        .clblast = clblast_identity(),
    };
    if (ctx->cache_dir && *ctx->cache_dir) {
        sbuf id = {0};
        sb_identity(&id, &t->id);
        uint64_t h = id.oom ? 0 : fnv_str(id.p);
        free(id.p);
        size_t dl = strlen(ctx->cache_dir);
        t->dir = clt__strdup(ctx->cache_dir);
        t->path = malloc(dl + 40);
        t->lock_path = malloc(dl + 48);
        t->bin_dir = malloc(dl + 16);
        if (!t->dir || !t->path || !t->lock_path || !t->bin_dir || h == 0) {
            free(t->dir);
            free(t->path);
            free(t->lock_path);
            free(t->bin_dir);
            free(t);
            return NULL;
        }
        snprintf(t->path, dl + 40, "%s/tune-%016llx.txt", ctx->cache_dir, (unsigned long long)h);
        snprintf(t->lock_path, dl + 48, "%s.lock", t->path);
        snprintf(t->bin_dir, dl + 16, "%s/programs", ctx->cache_dir);
        t->disk = 1;
        t->bin_disk = 1;
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
        vlog(ctx, "tuning cache %s is not a valid cache file: ignored, it will be rebuilt on the next write",
             t->path);
    } else if (bad_lines) {
        t->stats.bad_lines += bad_lines;
        vlog(ctx, "tuning cache %s: %d corrupt line(s) ignored, the file will be rebuilt on the next write",
             t->path, bad_lines);
    } else if (rc > 0) {
        vlog(ctx, "tuning cache %s: %d entries", t->path, t->mem.n);
    }
}

/* Lock, re-read, merge pending entries, write, unlock. Failures switch the context to memory-only. */
static void persist(clt_context *ctx, clt__tuner *t)
{
    if (!t->disk) return;
    if (mkdirs(t->dir) != 0) {
        disk_failed(ctx, t, "creating folder", t->dir);
        return;
    }
    int fd = open(t->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        disk_failed(ctx, t, "opening lock file", t->lock_path);
        return;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            disk_failed(ctx, t, "locking", t->lock_path);
            close(fd);
            return;
        }
    }
    remove_stale_tmp(t->dir, "tune-");
    ent_list disk = {0};
    int bad_header, bad_lines;
    int rc = load_entries(t->path, &disk, &bad_header, &bad_lines);
    if (bad_header || bad_lines) {
        t->stats.corrupt_files += bad_header;
        t->stats.bad_lines += bad_lines;
        vlog(ctx, "tuning cache %s was corrupt (%s): rebuilding it from the valid entries", t->path,
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
    flock(fd, LOCK_UN);
    close(fd);
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
    if (n >= len)
        return clt__err(ctx, CLT_ERR_INVALID, "clt__tune_get: cached value for %s (%zu chars) does not fit in %zu",
                        key->kernel, n, len);
    memcpy(value, e->value, n + 1);
    if (!e->reported) {
        e->reported = 1;
        vlog(ctx, "tune %s %s%s%s -> %s (cached)", key->kernel, key->shape ? key->shape : "",
             key->options && *key->options ? " " : "", key->options ? key->options : "", e->value);
    }
    return 1;
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
    vlog(ctx, "tune %s %s%s%s -> %s", key->kernel, key->shape ? key->shape : "",
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

/* ---------------------------------------------------------------------------------------------- binaries */

static char *bin_key(clt__tuner *t, const char *text, size_t len, const char *options)
{
    sbuf b = {0};
    char tmp[64];
    sb_identity(&b, &t->id);
    snprintf(tmp, sizeof tmp, "%016llx", (unsigned long long)clt__fnv1a64(CLT__FNV_OFFSET, text, len));
    sb_part(&b, "src", tmp, 0);
    snprintf(tmp, sizeof tmp, "%zu", len);
    sb_part(&b, "len", tmp, 0);
    sb_part(&b, "options", options, 0);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static char *bin_path(clt__tuner *t, const char *key)
{
    size_t n = strlen(t->bin_dir) + 32;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%016llx.bin", t->bin_dir, (unsigned long long)fnv_str(key));
    return p;
}

/* The switch is read per build so it can be flipped between builds (tests, debugging a driver). */
static clt__tuner *bin_tuner(clt_context *ctx)
{
    clt__tuner *t = get_tuner(ctx);
    const char *nb = getenv("CLTRAIN_NO_BINARY_CACHE");
    int off = nb && *nb && strcmp(nb, "0") != 0;
    return t && !off && t->bin_disk ? t : NULL;
}

int clt__binary_cache_load(clt_context *ctx, const char *source_text, size_t len, const char *options,
                           cl_program *out)
{
    *out = NULL;
    clt__tuner *t = bin_tuner(ctx);
    if (!t) return 0;
    char *key = bin_key(t, source_text, len, options ? options : "");
    char *path = key ? bin_path(t, key) : NULL;
    size_t n = 0;
    char *data = path ? slurp(path, &n) : NULL;
    int hit = 0;
    const char *why = NULL;
    if (!data) goto done;
    size_t hl = strlen(BIN_HEADER), kl = strlen(key);
    char *p = data + hl;
    unsigned long long size = 0;
    uint64_t chk = 0;
    if (n < hl + kl + 1 || memcmp(data, BIN_HEADER, hl) != 0 || memcmp(p, key, kl) != 0 || p[kl] != '\n') {
        why = "header or key mismatch";
        goto done;
    }
    p += kl + 1;
    /* "<size> <checksum>\n", parsed by hand: the binary right after it may start with whitespace. */
    char *nl = memchr(p, '\n', (size_t)(data + n - p)), *e1 = NULL, *e2 = NULL;
    if (nl) {
        size = strtoull(p, &e1, 10);
        if (e1 > p && *e1 == ' ' && parse_hex16(e1 + 1, (size_t)(nl - e1 - 1), &chk)) e2 = nl + 1;
    }
    if (!e2 || size != (unsigned long long)(data + n - e2)) {
        why = "truncated";
        goto done;
    }
    const unsigned char *bin = (const unsigned char *)e2;
    size_t bsize = (size_t)size;
    if (clt__fnv1a64(CLT__FNV_OFFSET, bin, bsize) != chk) {
        why = "checksum mismatch";
        goto done;
    }
    cl_int bst = CL_SUCCESS, err;
    cl_program prog = clCreateProgramWithBinary(ctx->cl, 1, &ctx->dev, &bsize, &bin, &bst, &err);
    if (err != CL_SUCCESS || bst != CL_SUCCESS) {
        if (err == CL_SUCCESS) clReleaseProgram(prog);
        why = "clCreateProgramWithBinary rejected it";
        goto done;
    }
    err = clBuildProgram(prog, 1, &ctx->dev, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        clReleaseProgram(prog);
        why = "clBuildProgram failed on it";
        goto done;
    }
    *out = prog;
    hit = 1;
done:
    if (hit) {
        t->stats.bin_hits++;
        vlog(ctx, "program binary cache hit: %s", path);
    } else {
        t->stats.bin_misses++;
        if (why) {
            t->stats.bin_rejected++;
            vlog(ctx, "program binary %s unusable (%s): removed, building from source", path, why);
            unlink(path);
        }
    }
    free(data);
    free(path);
    free(key);
    return hit;
}

/* Writes the binary of one program; 1 if stored. */
static int write_binary(clt_context *ctx, clt__tuner *t, cl_program program, const char *key, const char *path)
{
    cl_uint ndev = 0;
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_NUM_DEVICES, sizeof ndev, &ndev, NULL) != CL_SUCCESS || ndev != 1 ||
        clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
        return 0; /* the driver offers no binary: nothing to cache */
    unsigned char *bin = malloc(size);
    int ok = 0;
    if (bin && clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS) {
        if (mkdirs(t->bin_dir) != 0) {
            t->bin_disk = 0;
            vlog(ctx, "program binary cache: creating %s failed (%s); binaries are not cached", t->bin_dir,
                 strerror(errno));
        } else {
            if (!t->bin_cleaned) {
                t->bin_cleaned = 1;
                remove_stale_tmp(t->bin_dir, "");
            }
            char head[64];
            snprintf(head, sizeof head, "\n%zu %016llx\n", size,
                     (unsigned long long)clt__fnv1a64(CLT__FNV_OFFSET, bin, size));
            const void *parts[4] = {BIN_HEADER, key, head, bin};
            size_t lens[4] = {strlen(BIN_HEADER), strlen(key), strlen(head), size};
            if (atomic_write(t, t->bin_dir, path, parts, lens, 4) == 0) {
                ok = 1;
                t->stats.bin_stores++;
                vlog(ctx, "program binary stored: %s (%zu bytes)", path, size);
            } else {
                t->bin_disk = 0;
                vlog(ctx, "program binary cache: writing %s failed (%s); binaries are not cached", path,
                     strerror(errno));
            }
        }
    }
    free(bin);
    return ok;
}

int clt__binary_cache_store(clt_context *ctx, const char *source_text, size_t len, const char *options,
                            cl_program program)
{
    clt__tuner *t = bin_tuner(ctx);
    if (!t) return 0;
    if (t->npend == t->cap_pend) {
        int cap = t->cap_pend ? 2 * t->cap_pend : 16;
        pending_bin *np = realloc(t->pend, (size_t)cap * sizeof *np);
        if (!np) return 0;
        t->pend = np;
        t->cap_pend = cap;
    }
    char *key = bin_key(t, source_text, len, options ? options : "");
    char *path = key ? bin_path(t, key) : NULL;
    if (!path || clRetainProgram(program) != CL_SUCCESS) {
        free(key);
        free(path);
        return 0;
    }
    t->pend[t->npend++] = (pending_bin){program, key, path};
    return 1;
}

static void drop_pending(clt__tuner *t, int i)
{
    clReleaseProgram(t->pend[i].prog);
    free(t->pend[i].key);
    free(t->pend[i].path);
    t->pend[i] = t->pend[--t->npend];
}

void clt__binary_cache_discard(clt_context *ctx, cl_program program)
{
    clt__tuner *t = ctx->tuner;
    for (int i = 0; t && i < t->npend; i++)
        if (t->pend[i].prog == program) drop_pending(t, i--);
}

int clt__binary_cache_flush(clt_context *ctx)
{
    clt__tuner *t = ctx->tuner;
    int n = 0;
    while (t && t->npend > 0) {
        pending_bin *b = &t->pend[t->npend - 1];
        if (bin_tuner(ctx)) n += write_binary(ctx, t, b->prog, b->key, b->path);
        drop_pending(t, t->npend - 1);
    }
    return n;
}

void clt__tuner_release(clt_context *ctx)
{
    clt__tuner *t = ctx->tuner;
    if (!t) return;
    clt__binary_cache_flush(ctx);
    free(t->pend);
    list_free(&t->mem);
    for (int i = 0; i < t->nsrc; i++) free(t->src[i].name);
    free(t->src);
    free(t->dir);
    free(t->path);
    free(t->lock_path);
    free(t->bin_dir);
    free(t);
    ctx->tuner = NULL;
}
