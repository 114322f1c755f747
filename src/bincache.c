/* bincache.c - compiled program binaries kept in <cache_dir>/programs/ so later processes skip the build.
 *
 * Binaries are written when the context is destroyed (or at clt__binary_cache_flush) rather than right after
 * the build: asking for CL_PROGRAM_BINARIES makes some drivers (POCL) generate machine code for every kernel,
 * which should not slow down start-up nor be paid for tuning candidates that lose (clt__binary_cache_discard).
 * File <fnv64(key) hex16>.bin:
 *     cltrain-binary<TAB>2\n<full key>\n<size> <mac hex64>\n<size bytes>
 * Binaries are native code run on the user's behalf, so nothing is taken from a place another user could write:
 * the cache folder and programs/ must be owned by the effective user and not writable by group or others (we
 * create them 0700), each entry likewise (written 0600, read without following symbolic links). An entry is
 * bound to its full key (device and library identity, BLAKE2b-256 of the whole source text, build options) and
 * to its bytes by a keyed BLAKE2b (libsodium crypto_generichash) whose 32-byte key, programs/mac-key, is random
 * per cache folder and readable by the user only: unlike a checksum, a valid tag cannot be computed for other
 * bytes (another program's binary) without that key. Anything that fails is refused (one verbose line), built
 * from source, and replaced by a good entry. */
#include "bincache.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"

#define BIN_HEADER "cltrain-binary\t2\n"
#define MAC_BYTES 32 /* crypto_generichash_BYTES */
#define MAC_KEY_NAME "mac-key"
#define BIN_MAX_BYTES ((size_t)1 << 30) /* a program binary of POCL is a few MiB */

typedef struct pending_bin { /* a program whose binary is written at flush time */
    cl_program prog;          /* retained */
    char *key, *path;
} pending_bin;

struct clt__bincache {
    char *dir;   /* <cache_dir>/programs */
    char *id;    /* device and library identity, the start of every key */
    int disk;    /* folder usable (cleared after the first failure or when it is not trusted) */
    int checked; /* folders found trusted */
    int cleaned; /* stale temporaries of the folder removed */
    int have_mac_key;
    unsigned char mac_key[crypto_generichash_KEYBYTES];
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

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void sodium_start(void)
{
    sodium_ok = sodium_init() >= 0;
}

/* Refuses the folders (once per context, one verbose line) unless the cache folder and programs/ are owned
 * by us and not writable by group or others. create: make missing folders (0700) first; otherwise a missing
 * programs/ is simply an empty cache. 1: usable, 0: not (now or for the rest of the context). */
static int check_folders(clt_context *ctx, clt__bincache *c, int create)
{
    if (c->checked) return 1;
    if (create && clt__mkdirs(c->dir) != 0) {
        c->disk = 0;
        clt__vlog(ctx, "program binary cache: creating %s failed (%s); binaries are not cached", c->dir,
                  strerror(errno));
        return 0;
    }
    struct stat st;
    if (!create && stat(c->dir, &st) != 0) return 0; /* no folder yet (or none possible): an empty cache */
    const char *dirs[2] = {ctx->cache_dir, c->dir};
    char why[160];
    for (int i = 0; i < 2; i++) {
        if (clt__check_private_path(dirs[i], 1, why, sizeof why) != 0) {
            c->disk = 0;
            clt__vlog(ctx, "program binary cache: folder %s is not trusted (%s): no binary is loaded from it or "
                      "written to it, programs are built from source", dirs[i], why);
            return 0;
        }
    }
    c->checked = 1;
    return 1;
}

/* The folder's MAC key, read (or, with create, made under the folder's lock) once per context. A key file
 * that is not ours, or not exactly the key's size, is replaced: the entries it signed then fail and rebuild. */
static int get_mac_key(clt_context *ctx, clt__bincache *c, int create)
{
    if (c->have_mac_key) return 1;
    clt__buf path = {0}, lock = {0};
    clt__buf_printf(&path, "%s/" MAC_KEY_NAME, c->dir);
    clt__buf_printf(&lock, "%s/" MAC_KEY_NAME ".lock", c->dir);
    int fd = -1;
    for (int attempt = 0; attempt < 2 && !c->have_mac_key && !path.oom && !lock.oom; attempt++) {
        char *data = NULL, err[512];
        size_t n = 0;
        int rd = clt__read_file(path.p, 4096, CLT__READ_PRIVATE, &data, &n, err, sizeof err);
        if (rd == 0 && n == sizeof c->mac_key) {
            memcpy(c->mac_key, data, n);
            c->have_mac_key = 1;
        }
        free(data);
        if (c->have_mac_key || !create || attempt > 0) break;
        fd = clt__lock(lock.p); /* a second process may be making it right now: it wins, we read its key */
        if (fd < 0) break;
        rd = clt__read_file(path.p, 4096, CLT__READ_PRIVATE, &data, &n, err, sizeof err);
        int good = rd == 0 && n == sizeof c->mac_key;
        if (good) memcpy(c->mac_key, data, n);
        free(data);
        if (!good) {
            crypto_generichash_keygen(c->mac_key);
            const void *parts[1] = {c->mac_key};
            size_t lens[1] = {sizeof c->mac_key};
            if (rd != 1) { /* not ours or damaged */
                clt__vlog(ctx, "program binary cache: %s: replaced by a new key (every entry it signed is rebuilt)",
                          rd < 0 ? err : "key file of the wrong size");
                unlink(path.p);
            }
            good = clt__atomic_write(path.p, parts, lens, 1, 0600, err, sizeof err) == 0;
            if (!good) clt__vlog(ctx, "program binary cache: %s; binaries are not cached", err);
        }
        c->have_mac_key = good;
    }
    clt__unlock(fd);
    clt__buf_free(&path);
    clt__buf_free(&lock);
    if (!c->have_mac_key && create) c->disk = 0;
    return c->have_mac_key;
}

/* The switch is read per build so it can be flipped between builds (tests, debugging a driver). */
static clt__bincache *usable(clt_context *ctx)
{
    const char *nb = getenv("CLTRAIN_NO_BINARY_CACHE");
    if (nb && *nb && strcmp(nb, "0") != 0) return NULL;
    pthread_once(&sodium_once, sodium_start);
    if (!sodium_ok) return NULL;
    clt__bincache *c = get_cache(ctx);
    return c && c->disk ? c : NULL;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Identity, BLAKE2b-256 of the whole source text (the text decides the code), its length and the options. */
static char *bin_key(clt__bincache *c, const char *text, size_t len, const char *options)
{
    unsigned char h[crypto_generichash_BYTES];
    char hx[2 * sizeof h + 1], tmp[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)text, len, NULL, 0);
    hex(h, sizeof h, hx);
    clt__buf b = {0};
    clt__buf_puts(&b, c->id);
    clt__buf_key_part(&b, "src", hx, 0);
    snprintf(tmp, sizeof tmp, "%zu", len);
    clt__buf_key_part(&b, "len", tmp, 0);
    clt__buf_key_part(&b, "options", options, 0);
    if (b.oom) {
        clt__buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* Keyed BLAKE2b over the key's length, the key and the binary: the tag binds these bytes to this key. */
static void entry_mac(const clt__bincache *c, const char *key, const unsigned char *bin, size_t n, char *out_hex)
{
    crypto_generichash_state st;
    unsigned char tag[MAC_BYTES], kl[8];
    uint64_t l = strlen(key);
    for (int i = 0; i < 8; i++) kl[i] = (unsigned char)(l >> (8 * i));
    crypto_generichash_init(&st, c->mac_key, sizeof c->mac_key, sizeof tag);
    crypto_generichash_update(&st, kl, sizeof kl);
    crypto_generichash_update(&st, (const unsigned char *)key, l);
    crypto_generichash_update(&st, bin, n);
    crypto_generichash_final(&st, tag, sizeof tag);
    hex(tag, sizeof tag, out_hex);
}

static char *bin_path(clt__bincache *c, const char *key)
{
    clt__buf b = {0};
    clt__buf_printf(&b, "%s/%016llx.bin", c->dir,
                    (unsigned long long)clt__fnv1a64(CLT__FNV_OFFSET, key, strlen(key)));
    return b.oom ? (clt__buf_free(&b), NULL) : b.p;
}

/* Checks a cache file's framing, key and tag; on success *bin and *bsize point into data. NULL, or the reason. */
static const char *parse_entry(const clt__bincache *c, char *data, size_t n, const char *key,
                               const unsigned char **bin, size_t *bsize)
{
    size_t hl = strlen(BIN_HEADER), kl = strlen(key);
    char *p = data + hl;
    if (n < hl + kl + 1 || memcmp(data, BIN_HEADER, hl) != 0 || memcmp(p, key, kl) != 0 || p[kl] != '\n')
        return "header or key mismatch";
    p += kl + 1;
    /* "<size> <tag>\n", parsed by hand: the binary right after it may start with whitespace. */
    char *nl = memchr(p, '\n', (size_t)(data + n - p)), *e1 = NULL, *e2 = NULL;
    unsigned long long size = 0;
    if (nl) {
        size = strtoull(p, &e1, 10);
        if (e1 > p && *e1 == ' ' && nl - e1 - 1 == 2 * MAC_BYTES) e2 = nl + 1;
    }
    if (!e2 || size != (unsigned long long)(data + n - e2)) return "truncated";
    *bin = (const unsigned char *)e2;
    *bsize = (size_t)size;
    char want[2 * MAC_BYTES + 1];
    entry_mac(c, key, *bin, *bsize, want);
    if (sodium_memcmp(want, e1 + 1, 2 * MAC_BYTES) != 0) return "its tag does not match its key and bytes";
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
    int rd = 1;
    if (path && check_folders(ctx, c, 0) && get_mac_key(ctx, c, 0))
        rd = clt__read_file(path, BIN_MAX_BYTES, CLT__READ_PRIVATE, &data, &n, err, sizeof err);
    if (rd < 0) why = err;
    if (rd == 0) {
        const unsigned char *bin = NULL;
        size_t bsize = 0;
        why = parse_entry(c, data, n, key, &bin, &bsize);
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
    if (!check_folders(ctx, c, 1) || !get_mac_key(ctx, c, 1)) {
        free(bin);
        return 0;
    }
    if (!c->cleaned) {
        c->cleaned = 1;
        clt__remove_stale_tmp_all(c->dir);
    }
    char head[128], tag[2 * MAC_BYTES + 1], err[512];
    entry_mac(c, key, bin, size, tag);
    snprintf(head, sizeof head, "\n%zu %s\n", size, tag);
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
