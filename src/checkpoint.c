/* checkpoint.c - self-describing checkpoint files: writing (version 2), verified reading (versions 1 and 2), applying. */
/*
 * Layout of version 2 (all numbers little-endian; str = u32 length + bytes, no terminator):
 *   "CLTCKPT\0"  u32 version (2)  u64 file length (including the CRC)
 *   str network text (canonical model text; empty when the graph was not built with clt_model_build)
 *   i32 input c, h, w, i32 classes (zeros without a model)
 *   optimizer: i32 type, f32 lr, f32 momentum, i32 nesterov, f32 beta1, f32 beta2, f32 eps, f32 weight_decay, f32 l1
 *   u64 seed, u64 steps, u64 passes            (the graph's RNG is its seed and its count of training passes)
 *   u64 application metadata length, bytes
 *   u32 tensor count, then per tensor: str name, u32 ndim, ndim x u32 dims, u8 trainable, f32 values[numel],
 *             and when trainable the optimizer slots 0 and 1 (f32[numel] each)
 *   u32 CRC-32 (zlib) of every byte before it
 *
 * Version 1 (written by cltrain 0.1's tools/checkpoint.c) has the same prefix, tensors and CRC; between them it
 * holds the tool's metadata (dataset, epochs, counters, optimizer, seed, history: see read_v1_meta) and the
 * model text with the tool's data-settings comment block appended. Its reader converts: the network text is the
 * text before that block, input shape and classes come from the block, and the application metadata is the
 * metadata section followed by the stored text (str), so that the application that wrote it can convert its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <sodium.h>

#include "crypt.h"
#include "disk.h"
#include "internal.h"

#define CK_MAGIC "CLTCKPT" /* with its terminating NUL: 8 bytes */
#define CK_VERSION 2u
#define CK_PREFIX 20       /* magic + version + length */
#define CK_MAX_DIMS 4
#define CK_MAX_TEXT (1u << 20)           /* a model text (clt_model_load's limit) */
#define CK_MAX_META ((uint64_t)1 << 30)  /* application metadata */
#define CK_MAX_TENSORS (1u << 20)
#define CK_ERR_LEN 1024
#define V1_MARKER "# --- cltrain data settings"

typedef struct ck_tensor {
    char name[CLT_NAME_LEN];
    int ndim;
    int shape[CK_MAX_DIMS];
    int trainable;
    size_t numel;
    size_t at; /* file offset of the values; slots follow */
} ck_tensor;

struct clt_checkpoint {
    int version;
    char *path;
    unsigned char *data; /* the whole verified file */
    size_t len;
    char *text;          /* network text */
    int in[3], classes;
    clt_optimizer_settings opt;
    uint64_t seed, steps, passes;
    const unsigned char *meta;
    size_t meta_len;
    int ok;              /* opened and verified */
    int encrypted;       /* data is decrypted plaintext: zeroed before it is freed */
    int n;
    ck_tensor *t;
    char errmsg[CK_ERR_LEN];
};

/* ------------------------------------------------------------------------------------------ bytes */

/* crc32_z takes a size_t length (zlib's crc32 takes a uInt: one call would cover only part of a file > 4 GiB). */
static uint32_t crc_of(const unsigned char *p, size_t n)
{
    return (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), p, n);
}

/* Index of the first non-finite value of n floats, or -1. */
static long long first_nonfinite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return (long long)i;
    return -1;
}

/* ------------------------------------------------------------------------------------------ writing */

/* Appends every state tensor (values, then both optimizer slots of trainable ones) to b. */
static int put_tensors(clt__buf *b, clt_graph *g, const char *path)
{
    clt_context *ctx = g->ctx;
    int n = clt_graph_state_count(g);
    clt__buf_u32(b, (uint32_t)n);
    float *host = NULL;
    size_t cap = 0;
    int st = CLT_OK;
    for (int i = 0; i < n && !st && !b->oom; i++) {
        int trainable = 0;
        clt_tensor *t = clt_graph_state_tensor(g, i, &trainable);
        size_t numel = t->numel;
        clt__buf_str(b, t->name, strlen(t->name));
        clt__buf_u32(b, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) clt__buf_u32(b, (uint32_t)t->shape[d]);
        unsigned char tr = trainable ? 1 : 0;
        clt__buf_put(b, &tr, 1);
        if (numel > cap) {
            float *nh = realloc(host, numel * sizeof *nh);
            if (!nh) {
                st = clt__err(ctx, CLT_ERR_NOMEM, "clt_graph_save: out of host memory");
                break;
            }
            host = nh;
            cap = numel;
        }
        for (int s = -1; s < (trainable ? 2 : 0) && !st; s++) {
            st = s < 0 ? clt_tensor_read(g, t, 0, host, numel) : clt_tensor_read_slot(g, t, s, host, numel);
            if (st) break;
            long long bad = first_nonfinite(host, numel);
            if (bad >= 0) {
                char slot[48] = "";
                if (s >= 0) snprintf(slot, sizeof slot, "optimizer slot %d of ", s);
                st = clt__err(ctx, CLT_ERR_STATE, "%s: not saved: %stensor '%s' holds %g at index %lld (training "
                              "diverged?); the old file, if any, is unchanged", path, slot, t->name, host[bad], bad);
                break;
            }
            for (size_t k = 0; k < numel; k++) clt__buf_f32(b, host[k]);
        }
    }
    free(host);
    if (!st && b->oom) st = clt__err(ctx, CLT_ERR_NOMEM, "clt_graph_save: out of host memory");
    return st;
}

void clt_save_default_settings(clt_save_settings *s)
{
    if (s) memset(s, 0, sizeof *s);
}

/* The whole plaintext file (body + CRC) encrypted with key, written atomically as one part, mode 0600. */
static int write_encrypted(clt_context *ctx, const char *path, clt__buf *b, const unsigned char *tail,
                           const unsigned char *key)
{
    clt__buf_put(b, tail, 4);
    if (b->oom) return clt__err(ctx, CLT_ERR_NOMEM, "clt_graph_save: out of host memory");
    unsigned char *c = NULL;
    size_t clen = 0;
    char err[CK_ERR_LEN] = "";
    int st = clt__encrypt(key, CLT__ENC_KIND_CHECKPOINT, CLT__ENC_CHUNK, b->p, b->len, &c, &clen, err, sizeof err);
    if (st) return clt__err(ctx, st, "%s: not saved: encrypting failed (%s); the old file, if any, is unchanged", path, err);
    clt__remove_stale_tmp(path);
    const void *parts[1] = {c};
    size_t lens[1] = {clen};
    st = clt__atomic_write(path, parts, lens, 1, 0600, err, sizeof err);
    free(c);
    if (st) return clt__err(ctx, st, "%s", err);
    return CLT_OK;
}

int clt_graph_save(clt_graph *g, const char *path, const void *app_meta, size_t app_meta_len)
{
    return clt_graph_save_ex(g, path, app_meta, app_meta_len, NULL);
}

int clt_graph_save_ex(clt_graph *g, const char *path, const void *app_meta, size_t app_meta_len,
                      const clt_save_settings *s)
{
    if (!g) return CLT_ERR_INVALID;
    clt_context *ctx = g->ctx;
    clt__clear_error(ctx);
    if (!path || (!app_meta && app_meta_len))
        return clt__err(ctx, CLT_ERR_INVALID, "clt_graph_save: %s is NULL", path ? "app_meta" : "path");
    if (!g->compiled) return clt__err(ctx, CLT_ERR_STATE, "clt_graph_save: compile the graph first");
    if (app_meta_len > CK_MAX_META)
        return clt__err(ctx, CLT_ERR_INVALID, "clt_graph_save: %zu bytes of application metadata, more than %llu",
                        app_meta_len, (unsigned long long)CK_MAX_META);
    const char *text = "";
    int in[3] = {0, 0, 0}, classes = 0;
    clt__graph_model(g, &text, in, &classes, NULL, NULL);
    const clt_optimizer_settings *o = &g->settings.optimizer;
    clt__buf b = {0};
    clt__buf_put(&b, CK_MAGIC, 8);
    clt__buf_u32(&b, CK_VERSION);
    clt__buf_u64(&b, 0); /* length, patched below */
    clt__buf_str(&b, text, strlen(text));
    for (int i = 0; i < 3; i++) clt__buf_u32(&b, (uint32_t)in[i]);
    clt__buf_u32(&b, (uint32_t)classes);
    clt__buf_u32(&b, (uint32_t)o->type);
    clt__buf_f32(&b, o->lr);
    clt__buf_f32(&b, o->momentum);
    clt__buf_u32(&b, (uint32_t)o->nesterov);
    clt__buf_f32(&b, o->beta1);
    clt__buf_f32(&b, o->beta2);
    clt__buf_f32(&b, o->eps);
    clt__buf_f32(&b, o->weight_decay);
    clt__buf_f32(&b, o->l1);
    clt__buf_u64(&b, g->settings.seed);
    clt__buf_u64(&b, g->steps);
    clt__buf_u64(&b, g->passes);
    clt__buf_u64(&b, app_meta_len);
    clt__buf_put(&b, app_meta, app_meta_len);
    int st = put_tensors(&b, g, path);
    if (st) {
        clt__buf_free(&b);
        return st;
    }
    uint64_t total = b.len + 4;
    for (int i = 0; i < 8; i++) b.p[12 + i] = (char)(total >> (8 * i));
    uint32_t crc = crc_of((const unsigned char *)b.p, b.len);
    unsigned char tail[4] = {(unsigned char)crc, (unsigned char)(crc >> 8), (unsigned char)(crc >> 16),
                             (unsigned char)(crc >> 24)};
    if (s && s->key) {
        st = write_encrypted(ctx, path, &b, tail, s->key);
        sodium_memzero(b.p, b.len);
        clt__buf_free(&b);
        return st;
    }
    clt__remove_stale_tmp(path);
    const void *parts[2] = {b.p, tail};
    size_t lens[2] = {b.len, 4};
    char err[CK_ERR_LEN] = "";
    st = clt__atomic_write(path, parts, lens, 2, 0666, err, sizeof err);
    clt__buf_free(&b);
    if (st) return clt__err(ctx, st, "%s", err);
    return CLT_OK;
}

int clt_file_write_atomic(const char *path, const void *data, size_t len, char *msg, size_t msglen)
{
    if (msg && msglen) msg[0] = 0;
    if (!path || (!data && len)) {
        if (msg && msglen) snprintf(msg, msglen, "clt_file_write_atomic: %s is NULL", path ? "data" : "path");
        return CLT_ERR_INVALID;
    }
    clt__remove_stale_tmp(path);
    const void *parts[1] = {data ? data : ""};
    size_t lens[1] = {len};
    return clt__atomic_write(path, parts, lens, 1, 0666, msg, msglen);
}

/* ------------------------------------------------------------------------------------------ reading */

/* A string of at most `max` bytes: pointer into the file and its length. */
static const char *get_str(clt__rd *r, uint32_t max, uint32_t *n)
{
    *n = clt__rd_u32(r);
    if (*n > max) r->bad = 1;
    return (const char *)clt__rd_take(r, *n);
}

static int ck_fail(clt_checkpoint *ck, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int ck_fail(clt_checkpoint *ck, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(ck->errmsg, sizeof ck->errmsg, "%s: ", ck->path ? ck->path : "checkpoint");
    if (n < 0 || (size_t)n >= sizeof ck->errmsg) n = 0;
    vsnprintf(ck->errmsg + n, sizeof ck->errmsg - (size_t)n, fmt, ap);
    va_end(ap);
    return status;
}

static void get_opt(clt__rd *r, clt_optimizer_settings *o)
{
    o->type = (int)clt__rd_u32(r);
    o->lr = clt__rd_f32(r);
    o->momentum = clt__rd_f32(r);
    o->nesterov = (int)clt__rd_u32(r);
    o->beta1 = clt__rd_f32(r);
    o->beta2 = clt__rd_f32(r);
    o->eps = clt__rd_f32(r);
    o->weight_decay = clt__rd_f32(r);
    o->l1 = clt__rd_f32(r);
}

static int set_text(clt_checkpoint *ck, const char *s, size_t n)
{
    ck->text = malloc(n + 1);
    if (!ck->text) return ck_fail(ck, CLT_ERR_NOMEM, "out of host memory");
    memcpy(ck->text, s, n);
    ck->text[n] = 0;
    if (memchr(ck->text, 0, n)) return ck_fail(ck, CLT_ERR_FORMAT, "malformed checkpoint (a NUL in the network text)");
    return CLT_OK;
}

static int read_v2_head(clt_checkpoint *ck, clt__rd *r)
{
    uint32_t n;
    const char *s = get_str(r, CK_MAX_TEXT, &n);
    for (int i = 0; i < 3; i++) ck->in[i] = (int)clt__rd_u32(r);
    ck->classes = (int)clt__rd_u32(r);
    get_opt(r, &ck->opt);
    ck->seed = clt__rd_u64(r);
    ck->steps = clt__rd_u64(r);
    ck->passes = clt__rd_u64(r);
    uint64_t ml = clt__rd_u64(r);
    if (ml > CK_MAX_META) r->bad = 1;
    ck->meta = r->bad ? NULL : clt__rd_take(r, (size_t)ml);
    ck->meta_len = ck->meta ? (size_t)ml : 0;
    if (r->bad) return CLT_ERR_FORMAT;
    return set_text(ck, s, n);
}

/* Version 1: the tool's metadata section (read for its counters, optimizer and seed), then its text. */
static int read_v1_head(clt_checkpoint *ck, clt__rd *r)
{
    size_t start = r->at;
    uint32_t n;
    get_str(r, 4096, &n); /* dataset */
    get_str(r, 4096, &n); /* model text origin */
    clt__rd_take(r, 8);           /* epochs done, total */
    ck->steps = clt__rd_u64(r);
    ck->passes = clt__rd_u64(r);
    clt__rd_take(r, 8); /* host RNG */
    get_opt(r, &ck->opt);
    clt__rd_take(r, 24); /* batch, schedule, lr, momentum, augment, limit */
    ck->seed = clt__rd_u64(r);
    uint32_t nh = clt__rd_u32(r);
    if (nh > 1024) r->bad = 1;
    clt__rd_take(r, (size_t)nh * 48);
    const char *s = get_str(r, CK_MAX_TEXT, &n);
    if (r->bad) return CLT_ERR_FORMAT;
    ck->meta = r->p + start;
    ck->meta_len = r->at - start;
    /* The network is the text before the tool's block; the block names the input and the classes. */
    const char *mk = NULL;
    for (size_t i = 0; i + sizeof V1_MARKER - 1 <= n && !mk; i++)
        if (!memcmp(s + i, V1_MARKER, sizeof V1_MARKER - 1)) mk = s + i;
    CLT_TRY(set_text(ck, s, mk ? (size_t)(mk - s) : n));
    if (mk) {
        char *blk = malloc(n - (size_t)(mk - s) + 1);
        if (!blk) return ck_fail(ck, CLT_ERR_NOMEM, "out of host memory");
        memcpy(blk, mk, n - (size_t)(mk - s));
        blk[n - (mk - s)] = 0;
        const char *p = strstr(blk, "\n# input ");
        if (p && sscanf(p, "\n# input %d %d %d", &ck->in[0], &ck->in[1], &ck->in[2]) != 3) memset(ck->in, 0, sizeof ck->in);
        p = strstr(blk, "\n# classes ");
        if (p && sscanf(p, "\n# classes %d", &ck->classes) != 1) ck->classes = 0;
        free(blk);
    }
    return CLT_OK;
}

/* Per tensor: name, shape, trainable flag; values stay in the file buffer (offsets recorded), checked finite. */
static int read_tensors(clt_checkpoint *ck, clt__rd *r)
{
    uint32_t n = clt__rd_u32(r);
    /* Each tensor takes at least 17 bytes; a larger count cannot be right (and is not allocated). */
    if (r->bad || n > CK_MAX_TENSORS || n > (r->len - r->at) / 17) return CLT_ERR_FORMAT;
    ck->t = calloc(n ? n : 1, sizeof *ck->t);
    if (!ck->t) return ck_fail(ck, CLT_ERR_NOMEM, "out of host memory");
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        ck_tensor *t = &ck->t[i];
        ck->n = (int)i + 1;
        uint32_t ln;
        const char *nm = get_str(r, CLT_NAME_LEN - 1, &ln);
        if (!nm) return CLT_ERR_FORMAT;
        memcpy(t->name, nm, ln);
        uint32_t nd = clt__rd_u32(r);
        if (nd < 1 || nd > CK_MAX_DIMS) return CLT_ERR_FORMAT;
        t->ndim = (int)nd;
        t->numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint32_t v = clt__rd_u32(r);
            if (v < 1 || t->numel * v > 0x7fffffffu) return CLT_ERR_FORMAT; /* the library's tensor limit */
            t->shape[d] = (int)v;
            t->numel *= v;
        }
        const unsigned char *tr = clt__rd_take(r, 1);
        if (!tr || *tr > 1) return CLT_ERR_FORMAT;
        t->trainable = *tr;
        t->at = r->at;
        size_t copies = t->trainable ? 3 : 1;
        if (t->numel > (r->len - r->at) / 4 / copies) return CLT_ERR_FORMAT;
        for (size_t c = 0; c < copies; c++)
            for (size_t k = 0; k < t->numel; k++) {
                float v = clt__lef32(r->p + r->at + 4 * (c * t->numel + k));
                if (!isfinite(v))
                    return ck_fail(ck, CLT_ERR_FORMAT, "%s%stensor '%s' holds %g at index %zu: refused",
                                   c ? "optimizer slot " : "", c == 1 ? "0 of " : c == 2 ? "1 of " : "", t->name, v, k);
            }
        r->at += 4 * copies * t->numel;
    }
    return r->bad ? CLT_ERR_FORMAT : CLT_OK;
}

/* Reads exactly n bytes (a regular file: short only at its end). */
static int read_full(int fd, unsigned char *p, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t k = read(fd, p + *got, n - *got);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        *got += (size_t)k;
    }
    return 0;
}

/* Magic bytes, version and the length in the header (of the first `got` bytes) against the whole size. Sets
 * ck->version and ck->len. */
static int check_prefix(clt_checkpoint *ck, const unsigned char *head, size_t got, uint64_t size)
{
    if (got < 8 || memcmp(head, CK_MAGIC, 8) != 0)
        return ck_fail(ck, CLT_ERR_FORMAT, "not a cltrain checkpoint (%s)", got < 8 ? "file too short" : "bad magic bytes");
    if (got < CK_PREFIX) return ck_fail(ck, CLT_ERR_FORMAT, "truncated checkpoint (%zu bytes)", got);
    uint32_t version = clt__le32(head + 8);
    uint64_t total = (uint64_t)clt__le32(head + 12) | (uint64_t)clt__le32(head + 16) << 32;
    if (version != 1 && version != CK_VERSION)
        return ck_fail(ck, CLT_ERR_FORMAT, "checkpoint format version %u; this build reads %u (and converts version 1)%s",
                       version, CK_VERSION, version > CK_VERSION ? ": written by a newer cltrain?" : "");
    if (total != size)
        return ck_fail(ck, CLT_ERR_FORMAT, "%s checkpoint: the header says %llu bytes, the file has %llu",
                       total > size ? "truncated" : "corrupt (trailing data)", (unsigned long long)total,
                       (unsigned long long)size);
    if (total < CK_PREFIX + 4 || total > (uint64_t)SIZE_MAX / 2)
        return ck_fail(ck, CLT_ERR_FORMAT, "corrupt checkpoint (length %llu)", (unsigned long long)total);
    ck->version = (int)version;
    ck->len = (size_t)total;
    return CLT_OK;
}

/* The rest of an encrypted file (its first `got` bytes are in head), decrypted into ck->data and checked as a
 * plaintext checkpoint's prefix. */
static int load_encrypted(clt_checkpoint *ck, int fd, const unsigned char *head, size_t got, uint64_t size,
                          const unsigned char *key)
{
    if (!key)
        return ck_fail(ck, CLT_ERR_FORMAT, "encrypted checkpoint: it can only be read with its key "
                       "(clt_checkpoint_open_key; cltrain: --key-file KEY or CLTRAIN_KEY_FILE)");
    if (size > (uint64_t)SIZE_MAX / 2) return ck_fail(ck, CLT_ERR_FORMAT, "corrupt encrypted checkpoint (size)");
    unsigned char *c = malloc((size_t)size + 1);
    if (!c) return ck_fail(ck, CLT_ERR_NOMEM, "out of host memory for %llu bytes", (unsigned long long)size);
    memcpy(c, head, got);
    size_t more = 0;
    int s = CLT_OK;
    if (read_full(fd, c + got, (size_t)size - got, &more) != 0) s = ck_fail(ck, CLT_ERR_IO, "read error (%s)", strerror(errno));
    else if (got + more != size) s = ck_fail(ck, CLT_ERR_FORMAT, "truncated checkpoint (the file shrank while being read)");
    unsigned char *p = NULL;
    size_t plen = 0;
    char err[512] = "";
    if (!s && (s = clt__decrypt(key, CLT__ENC_KIND_CHECKPOINT, c, (size_t)size, &p, &plen, err, sizeof err)))
        ck_fail(ck, s, "encrypted checkpoint: %s", err);
    free(c);
    if (s) return s;
    ck->data = p;
    ck->encrypted = 1;
    ck->len = plen;
    s = check_prefix(ck, p, plen < CK_PREFIX ? plen : CK_PREFIX, plen);
    if (s == CLT_OK && ck->version != CK_VERSION)
        s = ck_fail(ck, CLT_ERR_FORMAT, "malformed encrypted checkpoint (format version %d inside)", ck->version);
    return s;
}

/* Header first (checked against the file's size), then the body is allocated and read. */
static int load_file(clt_checkpoint *ck, const unsigned char *key)
{
    /* O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever. */
    int fd = open(ck->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return ck_fail(ck, CLT_ERR_IO, "cannot open the checkpoint (%s)", strerror(errno));
    struct stat st;
    unsigned char head[CK_PREFIX];
    size_t got = 0;
    int s = CLT_OK;
    if (fstat(fd, &st) != 0) s = ck_fail(ck, CLT_ERR_IO, "cannot stat (%s)", strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = ck_fail(ck, CLT_ERR_IO, "not a regular file (%s)",
                    S_ISDIR(st.st_mode) ? "a folder" : S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket");
    else if (read_full(fd, head, CK_PREFIX, &got) != 0) s = ck_fail(ck, CLT_ERR_IO, "read error (%s)", strerror(errno));
    else if (clt__is_encrypted(head, got)) {
        s = load_encrypted(ck, fd, head, got, (uint64_t)st.st_size, key);
        close(fd);
        return s;
    } else s = check_prefix(ck, head, got, (uint64_t)st.st_size);
    if (!s && !(ck->data = malloc(ck->len)))
        s = ck_fail(ck, CLT_ERR_NOMEM, "out of host memory for %zu bytes", ck->len);
    if (!s) {
        memcpy(ck->data, head, CK_PREFIX);
        size_t want = ck->len - CK_PREFIX;
        if (read_full(fd, ck->data + CK_PREFIX, want, &got) != 0) s = ck_fail(ck, CLT_ERR_IO, "read error (%s)", strerror(errno));
        else if (got != want) s = ck_fail(ck, CLT_ERR_FORMAT, "truncated checkpoint (the file shrank while being read)");
    }
    close(fd);
    return s;
}

/* The CRC over the whole buffer, then every field. */
static int parse(clt_checkpoint *ck)
{
    uint32_t want = clt__le32(ck->data + ck->len - 4), crc = crc_of(ck->data, ck->len - 4);
    if (crc != want)
        return ck_fail(ck, CLT_ERR_FORMAT, "corrupt checkpoint: checksum mismatch (CRC-32 %08x, stored %08x)", crc, want);
    clt__rd r = {ck->data, ck->len - 4, CK_PREFIX, 0};
    int s = ck->version == 1 ? read_v1_head(ck, &r) : read_v2_head(ck, &r);
    if (!s) s = read_tensors(ck, &r);
    if (s == CLT_ERR_FORMAT && !ck->errmsg[0])
        return ck_fail(ck, s, "malformed checkpoint (a field runs past the end or holds an impossible value) "
                       "although its checksum matches");
    if (s) return s;
    if (r.at != r.len) return ck_fail(ck, CLT_ERR_FORMAT, "malformed checkpoint (unused bytes before the checksum)");
    int c = ck->in[0], h = ck->in[1], w = ck->in[2];
    int none = !ck->text[0] && !c && !h && !w && !ck->classes;
    if (!none && (c < 1 || h < 1 || w < 1 || ck->classes < 1 || (double)c * h * w > 0x7fffffff))
        return ck_fail(ck, CLT_ERR_FORMAT, "malformed checkpoint (input %dx%dx%d, %d classes)", c, h, w, ck->classes);
    if (ck->opt.type < CLT_OPT_SGD || ck->opt.type > CLT_OPT_ADAMW)
        return ck_fail(ck, CLT_ERR_FORMAT, "malformed checkpoint (optimizer type %d)", ck->opt.type);
    return CLT_OK;
}

/* After load or copy: parse, and on failure leave nothing of the file reachable. */
static int finish_open(clt_checkpoint *ck, int s)
{
    if (!s) s = parse(ck);
    if (s) {
        if (ck->encrypted && ck->data) sodium_memzero(ck->data, ck->len);
        free(ck->data);
        ck->data = NULL;
        ck->meta = NULL;
        ck->meta_len = 0;
        ck->n = 0;
        return s;
    }
    ck->errmsg[0] = 0;
    ck->ok = 1;
    return CLT_OK;
}

int clt_checkpoint_open(const char *path, clt_checkpoint **out)
{
    return clt_checkpoint_open_key(path, NULL, out);
}

int clt_checkpoint_open_key(const char *path, const unsigned char *key, clt_checkpoint **out)
{
    if (!out) return CLT_ERR_INVALID;
    clt_checkpoint *ck = calloc(1, sizeof *ck);
    *out = ck;
    if (!ck) return CLT_ERR_NOMEM;
    if (!path) return ck_fail(ck, CLT_ERR_INVALID, "clt_checkpoint_open: path is NULL");
    ck->path = clt__strdup(path);
    if (!ck->path) return ck_fail(ck, CLT_ERR_NOMEM, "out of host memory");
    return finish_open(ck, load_file(ck, key));
}

int clt__checkpoint_open_mem(const void *data, size_t len, const char *name, clt_checkpoint **out)
{
    return clt__checkpoint_open_mem_key(data, len, name, NULL, out);
}

int clt__checkpoint_open_mem_key(const void *data, size_t len, const char *name, const unsigned char *key,
                                 clt_checkpoint **out)
{
    if (!out) return CLT_ERR_INVALID;
    clt_checkpoint *ck = calloc(1, sizeof *ck);
    *out = ck;
    if (!ck) return CLT_ERR_NOMEM;
    ck->path = clt__strdup(name ? name : "checkpoint");
    if (!ck->path || (!data && len)) return ck_fail(ck, CLT_ERR_INVALID, "clt__checkpoint_open_mem: bad argument");
    if (clt__is_encrypted(data, len)) {
        if (!key) return ck_fail(ck, CLT_ERR_FORMAT, "encrypted checkpoint: it can only be read with its key");
        unsigned char *p = NULL;
        size_t plen = 0;
        char err[512] = "";
        int s = clt__decrypt(key, CLT__ENC_KIND_CHECKPOINT, data, len, &p, &plen, err, sizeof err);
        if (s) return ck_fail(ck, s, "encrypted checkpoint: %s", err);
        ck->data = p;
        ck->encrypted = 1;
        ck->len = plen;
        s = check_prefix(ck, p, plen < CK_PREFIX ? plen : CK_PREFIX, plen);
        if (!s && ck->version != CK_VERSION)
            s = ck_fail(ck, CLT_ERR_FORMAT, "malformed encrypted checkpoint (format version %d inside)", ck->version);
        return finish_open(ck, s);
    }
    int s = check_prefix(ck, data, len < CK_PREFIX ? len : CK_PREFIX, len);
    if (!s && !(ck->data = malloc(ck->len))) s = ck_fail(ck, CLT_ERR_NOMEM, "out of host memory");
    if (!s) memcpy(ck->data, data, ck->len);
    return finish_open(ck, s);
}

void clt_checkpoint_close(clt_checkpoint *ck)
{
    if (!ck) return;
    free(ck->path);
    if (ck->encrypted && ck->data) sodium_memzero(ck->data, ck->len);
    free(ck->data);
    free(ck->text);
    free(ck->t);
    free(ck);
}

const char *clt_checkpoint_errmsg(const clt_checkpoint *ck) { return ck ? ck->errmsg : ""; }
int clt_checkpoint_version(const clt_checkpoint *ck) { return ck && ck->ok ? ck->version : 0; }
const char *clt_checkpoint_model_text(const clt_checkpoint *ck) { return ck && ck->ok ? ck->text : ""; }

int clt_checkpoint_input(const clt_checkpoint *ck, int *c, int *h, int *w, int *classes)
{
    if (!ck || !ck->ok) return ck ? CLT_ERR_STATE : CLT_ERR_INVALID;
    if (c) *c = ck->in[0];
    if (h) *h = ck->in[1];
    if (w) *w = ck->in[2];
    if (classes) *classes = ck->classes;
    return CLT_OK;
}

const void *clt_checkpoint_app_meta(const clt_checkpoint *ck, size_t *len)
{
    if (len) *len = ck && ck->ok ? ck->meta_len : 0;
    return ck && ck->ok && ck->meta ? (const void *)ck->meta : (const void *)"";
}

int clt_checkpoint_compile_settings(const clt_checkpoint *ck, clt_compile_settings *s)
{
    if (!ck || !s) return CLT_ERR_INVALID;
    if (!ck->ok) return CLT_ERR_STATE;
    clt_compile_default_settings(s);
    s->seed = ck->seed;
    s->optimizer = ck->opt;
    return CLT_OK;
}

int clt_checkpoint_counters(const clt_checkpoint *ck, uint64_t *steps, uint64_t *passes)
{
    if (!ck) return CLT_ERR_INVALID;
    if (!ck->ok) return CLT_ERR_STATE;
    if (steps) *steps = ck->steps;
    if (passes) *passes = ck->passes;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ applying */

static void shape_str(int nd, const int *s, char *buf, size_t n)
{
    size_t at = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < nd && at < n; i++) at += (size_t)snprintf(buf + at, n - at, i ? ",%d" : "%d", s[i]);
    if (at < n) snprintf(buf + at, n - at, ")");
}

/* Pairs every state tensor of g with one of ck (match[i]); the first mismatch is reported, naming it. */
static int match_tensors(const clt_checkpoint *ck, clt_graph *g, int *match, char *used)
{
    int n = clt_graph_state_count(g);
    for (int i = 0; i < n; i++) {
        int trainable;
        clt_tensor *t = clt_graph_state_tensor(g, i, &trainable);
        match[i] = -1;
        for (int j = 0; j < ck->n && match[i] < 0; j++)
            if (!used[j] && strcmp(ck->t[j].name, t->name) == 0) match[i] = j;
        char a[96], b[96];
        shape_str(t->ndim, t->shape, a, sizeof a);
        if (match[i] < 0)
            return clt__err(g->ctx, CLT_ERR_FORMAT, "%s: the checkpoint has no tensor '%s' %s: it was saved from "
                            "another network", ck->path, t->name, a);
        const ck_tensor *c = &ck->t[match[i]];
        used[match[i]] = 1;
        shape_str(c->ndim, c->shape, b, sizeof b);
        if (c->ndim != t->ndim || memcmp(c->shape, t->shape, sizeof(int) * (size_t)t->ndim) != 0)
            return clt__err(g->ctx, CLT_ERR_SHAPE, "%s: tensor '%s' is %s in the checkpoint but %s in the graph",
                            ck->path, t->name, b, a);
        if (trainable != c->trainable)
            return clt__err(g->ctx, CLT_ERR_FORMAT, "%s: tensor '%s' is %s in the graph but %s in the checkpoint",
                            ck->path, t->name, trainable ? "trainable" : "a buffer", c->trainable ? "trainable" : "a buffer");
    }
    for (int j = 0; j < ck->n; j++)
        if (!used[j])
            return clt__err(g->ctx, CLT_ERR_FORMAT, "%s: the checkpoint's tensor '%s' does not exist in the graph: it "
                            "was saved from another network", ck->path, ck->t[j].name);
    return CLT_OK;
}

static int write_tensors(const clt_checkpoint *ck, clt_graph *g, const int *match)
{
    size_t cap = 1;
    for (int j = 0; j < ck->n; j++) cap = ck->t[j].numel > cap ? ck->t[j].numel : cap;
    float *host = malloc(cap * sizeof *host);
    if (!host) return clt__err(g->ctx, CLT_ERR_NOMEM, "clt_checkpoint_apply: out of host memory");
    int st = CLT_OK;
    for (int i = 0; i < clt_graph_state_count(g) && !st; i++) {
        int trainable;
        clt_tensor *t = clt_graph_state_tensor(g, i, &trainable);
        const ck_tensor *c = &ck->t[match[i]];
        for (int s = -1; s < (trainable ? 2 : 0) && !st; s++) {
            const unsigned char *p = ck->data + c->at + 4 * c->numel * (size_t)(s + 1);
            for (size_t k = 0; k < c->numel; k++) host[k] = clt__lef32(p + 4 * k);
            st = s < 0 ? clt_tensor_write(g, t, host, c->numel) : clt_tensor_write_slot(g, t, s, host, c->numel);
        }
    }
    free(host);
    return st;
}

int clt_checkpoint_apply(const clt_checkpoint *ck, clt_graph *g)
{
    if (!g) return CLT_ERR_INVALID;
    clt__clear_error(g->ctx);
    if (!ck) return clt__err(g->ctx, CLT_ERR_INVALID, "clt_checkpoint_apply: the checkpoint is NULL");
    if (!ck->ok)
        return clt__err(g->ctx, CLT_ERR_STATE, "clt_checkpoint_apply: the checkpoint failed to open: %s", ck->errmsg);
    if (!g->compiled) return clt__err(g->ctx, CLT_ERR_STATE, "clt_checkpoint_apply: compile the graph first");
    int n = clt_graph_state_count(g);
    /* Everything is checked before anything is written, so a mismatch leaves the graph as it was. */
    int *match = malloc(((size_t)n + 1) * sizeof *match);
    char *used = calloc((size_t)ck->n + 1, 1);
    int st = match && used ? match_tensors(ck, g, match, used)
                           : clt__err(g->ctx, CLT_ERR_NOMEM, "clt_checkpoint_apply: out of host memory");
    if (!st) st = write_tensors(ck, g, match);
    free(match);
    free(used);
    if (st) return st;
    g->steps = ck->steps;
    g->passes = ck->passes;
    return CLT_OK;
}
