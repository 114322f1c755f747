/* bincache.c - compiled program binaries kept in <cache_dir>/programs/ so later processes skip the build.
 *
 * Binaries are written when the context is destroyed (or at clt__binary_cache_flush) rather than right after
 * the build: asking for CL_PROGRAM_BINARIES makes some drivers (POCL) generate machine code for every kernel,
 * which should not slow down start-up nor be paid for tuning candidates that lose (clt__binary_cache_discard).
 * File <fnv64(key) hex16>.bin:
 *     cltrain-binary<TAB>1\n<full key>\n<size> <fnv64 of the bytes hex16>\n<size bytes>
 */
#include "bincache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk.h"

#define BIN_HEADER "cltrain-binary\t1\n"
#define BIN_MAX_BYTES ((size_t)1 << 30) /* a program binary of POCL is a few MiB */

typedef struct pending_bin { /* a program whose binary is written at flush time */
    cl_program prog;          /* retained */
    char *key, *path;
} pending_bin;

struct clt__bincache {
    char *dir;   /* <cache_dir>/programs */
    char *id;    /* device and library identity, the start of every key */
    int disk;    /* folder usable (cleared after the first failure) */
    int cleaned; /* stale temporaries of the folder removed */
    pending_bin *pend;
    int npend, cap_pend;
    clt__bin_stats stats;
};

static clt__bincache *get_cache(clt_context *ctx)
{
    if (ctx->bincache) return ctx->bincache;
    if (!ctx->cache_dir || !*ctx->cache_dir) return NULL;
    clt__bincache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    clt__cache_id id;
    clt__cache_id_of(ctx, &id);
    clt__buf b = {0};
    clt__buf_cache_id(&b, &id);
    clt__buf d = {0};
    clt__buf_printf(&d, "%s/programs", ctx->cache_dir);
    if (b.oom || d.oom) {
        clt__buf_free(&b);
        clt__buf_free(&d);
        free(c);
        return NULL;
    }
    c->id = b.p;
    c->dir = d.p;
    c->disk = 1;
    ctx->bincache = c;
    return c;
}

/* The switch is read per build so it can be flipped between builds (tests, debugging a driver). */
static clt__bincache *usable(clt_context *ctx)
{
    const char *nb = getenv("CLTRAIN_NO_BINARY_CACHE");
    if (nb && *nb && strcmp(nb, "0") != 0) return NULL;
    clt__bincache *c = get_cache(ctx);
    return c && c->disk ? c : NULL;
}

static char *bin_key(clt__bincache *c, const char *text, size_t len, const char *options)
{
    clt__buf b = {0};
    clt__buf_puts(&b, c->id);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%016llx", (unsigned long long)clt__fnv1a64(CLT__FNV_OFFSET, text, len));
    clt__buf_key_part(&b, "src", tmp, 0);
    snprintf(tmp, sizeof tmp, "%zu", len);
    clt__buf_key_part(&b, "len", tmp, 0);
    clt__buf_key_part(&b, "options", options, 0);
    if (b.oom) {
        clt__buf_free(&b);
        return NULL;
    }
    return b.p;
}

static char *bin_path(clt__bincache *c, const char *key)
{
    clt__buf b = {0};
    clt__buf_printf(&b, "%s/%016llx.bin", c->dir,
                    (unsigned long long)clt__fnv1a64(CLT__FNV_OFFSET, key, strlen(key)));
    return b.oom ? (clt__buf_free(&b), NULL) : b.p;
}

static int parse_hex16(const char *s, size_t n, uint64_t *out)
{
    if (n != 16) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < 16; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 1;
}

/* Checks a cache file's framing and key; on success *bin and *bsize point into data. NULL, or the reason. */
static const char *parse_entry(char *data, size_t n, const char *key, const unsigned char **bin, size_t *bsize)
{
    size_t hl = strlen(BIN_HEADER), kl = strlen(key);
    char *p = data + hl;
    if (n < hl + kl + 1 || memcmp(data, BIN_HEADER, hl) != 0 || memcmp(p, key, kl) != 0 || p[kl] != '\n')
        return "header or key mismatch";
    p += kl + 1;
    /* "<size> <checksum>\n", parsed by hand: the binary right after it may start with whitespace. */
    char *nl = memchr(p, '\n', (size_t)(data + n - p)), *e1 = NULL, *e2 = NULL;
    unsigned long long size = 0;
    uint64_t chk = 0;
    if (nl) {
        size = strtoull(p, &e1, 10);
        if (e1 > p && *e1 == ' ' && parse_hex16(e1 + 1, (size_t)(nl - e1 - 1), &chk)) e2 = nl + 1;
    }
    if (!e2 || size != (unsigned long long)(data + n - e2)) return "truncated";
    *bin = (const unsigned char *)e2;
    *bsize = (size_t)size;
    if (clt__fnv1a64(CLT__FNV_OFFSET, *bin, *bsize) != chk) return "checksum mismatch";
    return NULL;
}

static const char *build_from_binary(clt_context *ctx, const unsigned char *bin, size_t bsize, const char *options,
                                     cl_program *out)
{
    cl_int bst = CL_SUCCESS, err;
    cl_program prog = clCreateProgramWithBinary(ctx->cl, 1, &ctx->dev, &bsize, &bin, &bst, &err);
    if (err != CL_SUCCESS || bst != CL_SUCCESS) {
        if (err == CL_SUCCESS) clReleaseProgram(prog);
        return "clCreateProgramWithBinary rejected it";
    }
    err = clBuildProgram(prog, 1, &ctx->dev, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        clReleaseProgram(prog);
        return "clBuildProgram failed on it";
    }
    *out = prog;
    return NULL;
}

int clt__binary_cache_load(clt_context *ctx, const char *source_text, size_t len, const char *options,
                           cl_program *out)
{
    *out = NULL;
    clt__bincache *c = usable(ctx);
    if (!c) return 0;
    options = options ? options : "";
    char *key = bin_key(c, source_text, len, options);
    char *path = key ? bin_path(c, key) : NULL;
    size_t n = 0;
    char *data = NULL;
    char err[512];
    const char *why = NULL;
    int rd = path ? clt__read_file(path, BIN_MAX_BYTES, 0, &data, &n, err, sizeof err) : 1;
    if (rd < 0) why = err;
    if (rd == 0) {
        const unsigned char *bin = NULL;
        size_t bsize = 0;
        why = parse_entry(data, n, key, &bin, &bsize);
        if (!why) why = build_from_binary(ctx, bin, bsize, options, out);
    }
    int hit = *out != NULL;
    if (hit) {
        c->stats.hits++;
        clt__vlog(ctx, "program binary cache hit: %s", path);
    } else {
        c->stats.misses++;
        if (why) {
            c->stats.rejected++;
            clt__vlog(ctx, "program binary %s unusable (%s): removed, building from source", path, why);
            unlink(path);
        }
    }
    free(data);
    free(path);
    free(key);
    return hit;
}

/* Writes the binary of one program; 1 if stored. */
static int write_binary(clt_context *ctx, clt__bincache *c, cl_program program, const char *key, const char *path)
{
    cl_uint ndev = 0;
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_NUM_DEVICES, sizeof ndev, &ndev, NULL) != CL_SUCCESS || ndev != 1 ||
        clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
        return 0; /* the driver offers no binary: nothing to cache */
    unsigned char *bin = malloc(size);
    int ok = 0;
    if (!bin || clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS) {
        free(bin);
        return 0;
    }
    if (clt__mkdirs(c->dir) != 0) {
        c->disk = 0;
        clt__vlog(ctx, "program binary cache: creating %s failed (%s); binaries are not cached", c->dir,
                  strerror(errno));
        free(bin);
        return 0;
    }
    if (!c->cleaned) {
        c->cleaned = 1;
        clt__remove_stale_tmp_all(c->dir);
    }
    char head[64], err[512];
    snprintf(head, sizeof head, "\n%zu %016llx\n", size, (unsigned long long)clt__fnv1a64(CLT__FNV_OFFSET, bin, size));
    const void *parts[4] = {BIN_HEADER, key, head, bin};
    size_t lens[4] = {strlen(BIN_HEADER), strlen(key), strlen(head), size};
    if (clt__atomic_write(path, parts, lens, 4, 0600, err, sizeof err) == 0) {
        ok = 1;
        c->stats.stores++;
        clt__vlog(ctx, "program binary stored: %s (%zu bytes)", path, size);
    } else {
        c->disk = 0;
        clt__vlog(ctx, "program binary cache: %s; binaries are not cached", err);
    }
    free(bin);
    return ok;
}

int clt__binary_cache_store(clt_context *ctx, const char *source_text, size_t len, const char *options,
                            cl_program program)
{
    clt__bincache *c = usable(ctx);
    if (!c) return 0;
    if (c->npend == c->cap_pend) {
        int cap = c->cap_pend ? 2 * c->cap_pend : 16;
        pending_bin *np = realloc(c->pend, (size_t)cap * sizeof *np);
        if (!np) return 0;
        c->pend = np;
        c->cap_pend = cap;
    }
    char *key = bin_key(c, source_text, len, options ? options : "");
    char *path = key ? bin_path(c, key) : NULL;
    if (!path || clRetainProgram(program) != CL_SUCCESS) {
        free(key);
        free(path);
        return 0;
    }
    c->pend[c->npend++] = (pending_bin){program, key, path};
    return 1;
}

static void drop_pending(clt__bincache *c, int i)
{
    clReleaseProgram(c->pend[i].prog);
    free(c->pend[i].key);
    free(c->pend[i].path);
    c->pend[i] = c->pend[--c->npend];
}

void clt__binary_cache_discard(clt_context *ctx, cl_program program)
{
    clt__bincache *c = ctx->bincache;
    for (int i = 0; c && i < c->npend; i++)
        if (c->pend[i].prog == program) drop_pending(c, i--);
}

int clt__binary_cache_flush(clt_context *ctx)
{
    clt__bincache *c = ctx->bincache;
    int n = 0;
    while (c && c->npend > 0) {
        pending_bin *b = &c->pend[c->npend - 1];
        if (usable(ctx)) n += write_binary(ctx, c, b->prog, b->key, b->path);
        drop_pending(c, c->npend - 1);
    }
    return n;
}

void clt__binary_cache_stats(clt_context *ctx, clt__bin_stats *s)
{
    if (ctx->bincache) *s = ctx->bincache->stats;
    else memset(s, 0, sizeof *s);
}

void clt__binary_cache_release(clt_context *ctx)
{
    clt__bincache *c = ctx->bincache;
    if (!c) return;
    clt__binary_cache_flush(ctx);
    free(c->pend);
    free(c->id);
    free(c->dir);
    free(c);
    ctx->bincache = NULL;
}
