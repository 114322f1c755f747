/* disk.c - files the library keeps on disk: cache folder, private folders, locks, bounded reads, one atomic writer. */
#define _GNU_SOURCE /* flock, dladdr, getrandom */
#include "disk.h"

#include <clblast_c.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

/* ---------------------------------------------------------------------------------------------- buffer */

void clt__buf_put(clt__buf *b, const void *data, size_t n)
{
    if (b->oom) return;
    if (n > SIZE_MAX - b->len - 1) {
        b->oom = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
}

void clt__buf_u32(clt__buf *b, uint32_t v)
{
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    clt__buf_put(b, c, 4);
}
void clt__buf_u64(clt__buf *b, uint64_t v)
{
    clt__buf_u32(b, (uint32_t)v);
    clt__buf_u32(b, (uint32_t)(v >> 32));
}
void clt__buf_f32(clt__buf *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    clt__buf_u32(b, u);
}
void clt__buf_str(clt__buf *b, const void *s, size_t n)
{
    clt__buf_u32(b, (uint32_t)n);
    clt__buf_put(b, s, n);
}
uint32_t clt__le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
float clt__lef32(const unsigned char *p)
{
    uint32_t u = clt__le32(p);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

const unsigned char *clt__rd_take(clt__rd *r, size_t n)
{
    if (r->bad || n > r->len - r->at) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *p = r->p + r->at;
    r->at += n;
    return p;
}
uint32_t clt__rd_u32(clt__rd *r)
{
    const unsigned char *p = clt__rd_take(r, 4);
    return p ? clt__le32(p) : 0;
}
uint64_t clt__rd_u64(clt__rd *r)
{
    uint64_t lo = clt__rd_u32(r);
    return lo | (uint64_t)clt__rd_u32(r) << 32;
}
float clt__rd_f32(clt__rd *r)
{
    const unsigned char *p = clt__rd_take(r, 4);
    return p ? clt__lef32(p) : 0.0f;
}

void clt__buf_puts(clt__buf *b, const char *s)
{
    clt__buf_put(b, s, strlen(s));
}

void clt__buf_printf(clt__buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        clt__buf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    clt__buf_put(b, big, (size_t)n);
    free(big);
}

void clt__buf_key_part(clt__buf *b, const char *name, const char *value, int first)
{
    if (!first) clt__buf_puts(b, "|");
    clt__buf_puts(b, name);
    clt__buf_puts(b, "=");
    for (const char *s = value; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\') clt__buf_puts(b, "\\\\");
        else if (c == '|') clt__buf_puts(b, "\\p");
        else if (c < 0x20 || c == 0x7f) clt__buf_printf(b, "\\x%02x", c);
        else clt__buf_put(b, &c, 1);
    }
}

void clt__buf_free(clt__buf *b)
{
    free(b->p);
    *b = (clt__buf){0};
}

uint64_t clt__fnv1a64(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void clt__vlog(const clt_context *ctx, const char *fmt, ...)
{
    if (!ctx || !ctx->verbose) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cltrain: %s\n", line); /* one call: lines of two threads do not interleave */
}

/* ---------------------------------------------------------------------------------------------- identity */

static char clblast_id[1200];
static pthread_once_t clblast_once = PTHREAD_ONCE_INIT;

static void clblast_id_init(void)
{
    int n = snprintf(clblast_id, sizeof clblast_id, "%d.%d.%d", CLBLAST_VERSION_MAJOR, CLBLAST_VERSION_MINOR,
                     CLBLAST_VERSION_PATCH);
    Dl_info info;
    if (dladdr((void *)(uintptr_t)&CLBlastSgemm, &info) && info.dli_fname) {
        struct stat st;
        if (stat(info.dli_fname, &st) == 0)
            snprintf(clblast_id + n, sizeof clblast_id - (size_t)n, " %s size=%lld mtime=%lld ino=%llu",
                     info.dli_fname, (long long)st.st_size, (long long)st.st_mtime, (unsigned long long)st.st_ino);
        else
            snprintf(clblast_id + n, sizeof clblast_id - (size_t)n, " %s", info.dli_fname);
    }
}

/* pthread_once: two contexts created on two threads must not fill the buffer at the same time. */
const char *clt__clblast_identity(void)
{
    pthread_once(&clblast_once, clblast_id_init);
    return clblast_id;
}

void clt__cache_id_of(const clt_context *ctx, clt__cache_id *id)
{
    *id = (clt__cache_id){
        .platform = ctx->info.platform_name,
        .platform_version = ctx->info.platform_version,
        .device = ctx->info.name,
        .device_version = ctx->info.device_version,
        .driver = ctx->info.driver_version,
        .opencl_c = ctx->info.opencl_c_version,
        .cltrain = CLT_VERSION_STRING,
        .clblast = clt__clblast_identity(),
    };
}

void clt__buf_cache_id(clt__buf *b, const clt__cache_id *id)
{
    clt__buf_key_part(b, "platform", id->platform, 1);
    clt__buf_key_part(b, "platform_version", id->platform_version, 0);
    clt__buf_key_part(b, "device", id->device, 0);
    clt__buf_key_part(b, "device_version", id->device_version, 0); /* POCL: names the LLVM target CPU */
    clt__buf_key_part(b, "driver", id->driver, 0);
    clt__buf_key_part(b, "opencl_c", id->opencl_c, 0);
    clt__buf_key_part(b, "cltrain", id->cltrain, 0);
    clt__buf_key_part(b, "clblast", id->clblast, 0);
}

/* ---------------------------------------------------------------------------------------------- folders */

char *clt__cache_dir_default(void)
{
    char buf[4096];
    const char *e = getenv("CLTRAIN_CACHE_DIR");
    if (e && *e) return clt__strdup(e);
    e = getenv("XDG_CACHE_HOME");
    if (e && *e) {
        snprintf(buf, sizeof buf, "%s/cltrain", e);
        return clt__strdup(buf);
    }
    e = getenv("HOME");
    if (e && *e) {
        snprintf(buf, sizeof buf, "%s/.cache/cltrain", e);
        return clt__strdup(buf);
    }
    return NULL;
}

static int mkdir_one(const char *p)
{
    if (mkdir(p, 0700) == 0) return 0;
    if (errno != EEXIST) return -1;
    struct stat st;
    if (stat(p, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int clt__mkdirs(const char *path)
{
    char *p = clt__strdup(path);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    int rc = 0;
    for (char *s = p + 1; *s && rc == 0; s++) {
        if (*s != '/') continue;
        *s = 0;
        rc = mkdir_one(p);
        *s = '/';
    }
    if (rc == 0) rc = mkdir_one(p);
    free(p);
    return rc;
}

int clt__check_private(const struct stat *st, char *why, size_t whylen)
{
    if (st->st_uid != geteuid()) {
        snprintf(why, whylen, "owned by uid %lu, not by uid %lu", (unsigned long)st->st_uid,
                 (unsigned long)geteuid());
        return -1;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, whylen, "writable by group or others (mode %04o)", (unsigned)(st->st_mode & 07777));
        return -1;
    }
    return 0;
}

int clt__check_private_path(const char *path, int want_dir, char *why, size_t whylen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, whylen, "cannot stat it (%s)", strerror(errno));
        return -1;
    }
    if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a %s", want_dir ? "folder" : "regular file");
        return -1;
    }
    return clt__check_private(&st, why, whylen);
}

/* Public forms of the two rules above, for diagnostics (`cltrain doctor`) that must not reach library internals. */
int clt_cache_dir_default(char *buf, size_t len)
{
    if (!buf || !len) return CLT_ERR_INVALID;
    buf[0] = 0;
    char *d = clt__cache_dir_default();
    if (!d) return CLT_ERR_INVALID;
    int fits = strlen(d) < len;
    if (fits) memcpy(buf, d, strlen(d) + 1);
    free(d);
    return fits ? CLT_OK : CLT_ERR_NOMEM;
}

int clt_cache_path_trusted(const char *path, int want_dir, char *why, size_t whylen)
{
    char tmp[256];
    if (!why || !whylen) why = tmp, whylen = sizeof tmp;
    why[0] = 0;
    if (!path) {
        snprintf(why, whylen, "no path");
        return CLT_ERR_INVALID;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, whylen, "cannot stat it (%s)", strerror(errno));
        return CLT_ERR_IO;
    }
    if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a %s", want_dir ? "folder" : "regular file");
        return 0;
    }
    return clt__check_private(&st, why, whylen) == 0;
}

/* ---------------------------------------------------------------------------------------------- locks */

int clt__lock(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    return fd;
}

void clt__unlock(int fd)
{
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);
}

/* ---------------------------------------------------------------------------------------------- reading */

static int fail(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int clt__read_file(const char *path, size_t max, int flags, char **data, size_t *len, char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. */
    int oflags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (flags & CLT__READ_PRIVATE ? O_NOFOLLOW : 0);
    int fd = open(path, oflags);
    if (fd < 0) {
        if (errno == ENOENT) return 1;
        return fail(err, errlen, "%s: cannot open (%s)", path, errno == ELOOP ? "a symbolic link" : strerror(errno));
    }
    struct stat st;
    char why[128];
    int rc = -1;
    if (fstat(fd, &st) != 0) fail(err, errlen, "%s: cannot stat (%s)", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        fail(err, errlen, "%s: not a regular file (%s)", path,
             S_ISDIR(st.st_mode) ? "a folder" : S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket");
    else if ((flags & CLT__READ_PRIVATE) && clt__check_private(&st, why, sizeof why) != 0)
        fail(err, errlen, "%s: not trusted: %s", path, why);
    else if ((unsigned long long)st.st_size > (unsigned long long)max)
        fail(err, errlen, "%s: %lld bytes, more than the %zu this file may have", path, (long long)st.st_size, max);
    else
        rc = 0;
    char *buf = rc == 0 ? malloc((size_t)st.st_size + 1) : NULL;
    if (rc == 0 && !buf) rc = fail(err, errlen, "%s: out of memory for %lld bytes", path, (long long)st.st_size);
    size_t n = 0, want = rc == 0 ? (size_t)st.st_size : 0;
    while (rc == 0 && n < want) {
        ssize_t r = read(fd, buf + n, want - n);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) rc = fail(err, errlen, "%s: read failed (%s)", path, strerror(errno));
        else if (r == 0) break; /* shrank meanwhile: the caller's format checks see the short data */
        else n += (size_t)r;
    }
    close(fd);
    if (rc != 0) {
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

/* ---------------------------------------------------------------------------------------------- writing */

/* Start of every temporary's name for target file name `base`: "<base>.tmp." (or the shortened form). */
static void tmp_prefix(const char *base, char *out, size_t outlen)
{
    size_t bl = strlen(base);
    if (bl + 40 <= NAME_MAX) {
        snprintf(out, outlen, "%s.tmp.", base);
        return;
    }
    snprintf(out, outlen, "%.160s~%016llx.tmp.", base, (unsigned long long)clt__fnv1a64(CLT__FNV_OFFSET, base, bl));
}

static uint64_t random64(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r) return r;
    /* No entropy source: time, pid and a counter still differ between a crashed writer and its successor. */
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 17) ^
                 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    return clt__splitmix64(&s);
}

/* Splits path into its folder ("." when none) and file name; 0 or -1 (ENOMEM / ENAMETOOLONG). */
static int split_path(const char *path, char **dir, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    size_t dl = slash ? (size_t)(slash - path) : 1;
    if (slash && dl == 0) dl = 1; /* "/name" */
    *dir = malloc(dl + 1);
    if (!*dir) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(*dir, slash ? path : ".", dl);
    (*dir)[dl] = 0;
    if (!**base || strlen(*base) > NAME_MAX) {
        free(*dir);
        errno = **base ? ENAMETOOLONG : EISDIR;
        return -1;
    }
    return 0;
}

static int write_parts(int fd, const void *const *parts, const size_t *lens, int nparts)
{
    for (int i = 0; i < nparts; i++) {
        const char *p = parts[i];
        size_t left = lens[i];
        while (left > 0) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return -1;
            if (w == 0) {
                errno = EIO;
                return -1;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    /* Some file systems cannot fsync a folder; that is no reason to call the write failed. */
    if (rc != 0 && (errno == EINVAL || errno == EBADF || errno == ENOTSUP)) rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int clt__atomic_write(const char *path, const void *const *parts, const size_t *lens, int nparts, mode_t mode,
                      char *err, size_t errlen)
{
    char *dir;
    const char *base;
    if (split_path(path, &dir, &base) != 0) {
        int e = errno;
        fail(err, errlen, "writing %s: bad file name (%s); the old file, if any, is unchanged", path, strerror(e));
        errno = e;
        return CLT_ERR_IO;
    }
    char prefix[NAME_MAX + 1];
    tmp_prefix(base, prefix, sizeof prefix);
    size_t tl = strlen(dir) + strlen(prefix) + 48;
    char *tmp = malloc(tl);
    int fd = -1;
    for (int attempt = 0; tmp && fd < 0 && attempt < 16; attempt++) {
        snprintf(tmp, tl, "%s/%s%ld.%016llx", dir, prefix, (long)getpid(), (unsigned long long)random64());
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0 && errno != EEXIST) break;
    }
    const char *step = NULL;
    int e = 0;
    if (!tmp) {
        step = "allocating the temporary name";
        e = ENOMEM;
    } else if (fd < 0) {
        step = "creating a temporary file";
        e = errno;
    } else {
        if (write_parts(fd, parts, lens, nparts) != 0) step = "writing the temporary file";
        else if (fsync(fd) != 0) step = "fsync of the temporary file";
        e = errno;
        if (close(fd) != 0 && !step) {
            step = "closing the temporary file";
            e = errno;
        }
        if (!step && rename(tmp, path) != 0) {
            step = "renaming the temporary file";
            e = errno;
        }
        if (step) unlink(tmp);
    }
    int rc = 0;
    if (step) {
        fail(err, errlen, "writing %s: %s failed (%s); the old file, if any, is unchanged", path, step, strerror(e));
        rc = CLT_ERR_IO;
    } else if (fsync_dir(dir) != 0) {
        e = errno;
        fail(err, errlen, "writing %s: written, but syncing its folder %s failed (%s)", path, dir, strerror(e));
        rc = CLT_ERR_IO;
    }
    free(tmp);
    free(dir);
    if (rc) errno = e;
    return rc;
}

/* "<pid>.<anything>" after a temporary prefix (or just "<pid>": the fixed names of earlier versions): the pid,
 * or -1 when the name is no temporary of ours. */
static long tmp_pid(const char *s)
{
    char *end;
    errno = 0;
    long pid = strtol(s, &end, 10);
    if (end == s || (*end != '.' && *end != 0) || pid <= 0 || errno) return -1;
    if (!*end) return pid; /* the old fixed "<name>.tmp.<pid>" */
    /* The writer's "<pid>.<16 hex digits>": any other name is someone else's file and stays. */
    size_t n = strlen(end + 1);
    if (n != 16 || strspn(end + 1, "0123456789abcdef") != 16) return -1;
    return pid;
}

static int stale(const char *dir, const char *name, long pid, time_t now)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) return 0;
    snprintf(p, n, "%s/%s", dir, name);
    struct stat st;
    int removed = 0;
    if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
        double idle = difftime(now, st.st_mtime);
        int dead = kill((pid_t)pid, 0) != 0 && errno == ESRCH;
        if ((idle > 600 && dead) || idle > 86400) removed = unlink(p) == 0;
    }
    free(p);
    return removed;
}

/* prefix NULL: any "<name>.tmp.<pid>.<x>" (or shortened "<name>~<hash>.tmp.<pid>.<x>") in dir. */
static int scan_stale(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    time_t now = time(NULL);
    size_t pl = prefix ? strlen(prefix) : 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = -1;
        if (prefix) {
            if (strncmp(e->d_name, prefix, pl) == 0) pid = tmp_pid(e->d_name + pl);
        } else {
            const char *s = strstr(e->d_name, ".tmp.");
            if (s && s > e->d_name) pid = tmp_pid(s + 5);
        }
        if (pid > 0) removed += stale(dir, e->d_name, pid, now);
    }
    closedir(d);
    return removed;
}

int clt__remove_stale_tmp(const char *path)
{
    char *dir;
    const char *base;
    if (split_path(path, &dir, &base) != 0) return 0;
    char prefix[NAME_MAX + 1];
    tmp_prefix(base, prefix, sizeof prefix);
    int n = scan_stale(dir, prefix);
    free(dir);
    return n;
}

int clt__remove_stale_tmp_all(const char *dir)
{
    return scan_stale(dir, NULL);
}
