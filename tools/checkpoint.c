/* checkpoint.c - checkpoint files of the cltrain tool: versioned, checksummed, written atomically.
 *
 * Layout (version 1, all numbers little-endian; str = u32 length + bytes, no terminator):
 *   "CLTCKPT\0"  u32 version  u64 file length (including the CRC)
 *   metadata: str dataset, str model_text_origin, i32 epochs_done, i32 epochs_total, u64 steps, u64 passes,
 *             u64 rng_state, optimizer (i32 type, f32 lr, f32 momentum, i32 nesterov, f32 beta1, f32 beta2,
 *             f32 eps, f32 weight_decay, f32 l1), i32 batch, i32 schedule, f32 lr, f32 momentum, i32 augment,
 *             i32 limit, u64 seed, i32 nhistory, nhistory x 6 f64 (train_loss, train_acc, test_loss, test_acc,
 *             seconds, images_per_s)
 *   str model text
 *   u32 tensor count, then per tensor: str name, u32 ndim, ndim x u32 dims, u8 trainable, f32 values[numel],
 *             and when trainable the optimizer slots 0 and 1 (f32[numel] each)
 *   u32 CRC-32 (zlib) of every byte before it
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "tool.h"

#define CKPT_MAGIC "CLTCKPT"  /* with its terminating NUL: 8 bytes */
#define CKPT_VERSION 1u
#define CKPT_PREFIX 20        /* magic + version + length */
#define CKPT_MAX_DIMS 4

/* ------------------------------------------------------------------------------------------ writing */

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
    int oom;
} wbuf;

static void put(wbuf *b, const void *data, size_t n)
{
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 1 << 16;
        while (nc < b->len + n) nc *= 2;
        unsigned char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u8(wbuf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}

static void put_u32(wbuf *b, uint32_t v)
{
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    put(b, c, 4);
}

static void put_u64(wbuf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_i32(wbuf *b, int v)
{
    put_u32(b, (uint32_t)v);
}

static void put_f32(wbuf *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    put_u32(b, u);
}

static void put_f64(wbuf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64(b, u);
}

static void put_str(wbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_u32(b, (uint32_t)n);
    put(b, s, n);
}

static void put_floats(wbuf *b, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) put_f32(b, v[i]);
}

static void put_meta(wbuf *b, const tool_ckpt_meta *m, uint64_t steps, uint64_t passes)
{
    char s[sizeof m->model_text_origin + 1];
    snprintf(s, sizeof s, "%.*s", (int)sizeof m->dataset, m->dataset);
    put_str(b, s);
    snprintf(s, sizeof s, "%.*s", (int)sizeof m->model_text_origin, m->model_text_origin);
    put_str(b, s);
    put_i32(b, m->epochs_done);
    put_i32(b, m->epochs_total);
    put_u64(b, steps);
    put_u64(b, passes);
    put_u64(b, m->rng_state);
    put_i32(b, m->opt.type);
    put_f32(b, m->opt.lr);
    put_f32(b, m->opt.momentum);
    put_i32(b, m->opt.nesterov);
    put_f32(b, m->opt.beta1);
    put_f32(b, m->opt.beta2);
    put_f32(b, m->opt.eps);
    put_f32(b, m->opt.weight_decay);
    put_f32(b, m->opt.l1);
    put_i32(b, m->batch);
    put_i32(b, m->schedule);
    put_f32(b, m->lr);
    put_f32(b, m->momentum);
    put_i32(b, m->augment);
    put_i32(b, m->limit);
    put_u64(b, m->seed);
    put_i32(b, m->nhistory);
    for (int i = 0; i < m->nhistory; i++) {
        const tool_epoch_metrics *e = &m->history[i];
        put_f64(b, e->train_loss);
        put_f64(b, e->train_acc);
        put_f64(b, e->test_loss);
        put_f64(b, e->test_acc);
        put_f64(b, e->seconds);
        put_f64(b, e->images_per_s);
    }
}

/* Serializes the whole checkpoint into b. */
static int serialize(wbuf *b, clt_graph *g, const tool_ckpt_meta *meta, const char *model_text, char *err)
{
    clt_context *ctx = clt_graph_context(g);
    uint64_t steps = 0, passes = 0;
    clt_graph_get_counters(g, &steps, &passes);
    put(b, CKPT_MAGIC, 8);
    put_u32(b, CKPT_VERSION);
    put_u64(b, 0); /* length, patched below */
    put_meta(b, meta, steps, passes);
    put_str(b, model_text);
    int n = clt_graph_state_count(g);
    put_u32(b, (uint32_t)n);
    float *host = NULL;
    size_t host_cap = 0;
    for (int i = 0; i < n && !b->oom; i++) {
        int trainable = 0;
        clt_tensor *t = clt_graph_state_tensor(g, i, &trainable);
        size_t numel = clt_tensor_numel(t);
        int nd = clt_tensor_ndim(t);
        put_str(b, clt_tensor_name(t));
        put_u32(b, (uint32_t)nd);
        for (int d = 0; d < nd; d++) put_u32(b, (uint32_t)clt_tensor_dim(t, d));
        put_u8(b, trainable ? 1 : 0);
        if (numel > host_cap) {
            float *nh = realloc(host, numel * sizeof *nh);
            if (!nh) {
                free(host);
                return tool_fail(err, CLT_ERR_NOMEM, "out of memory writing a checkpoint");
            }
            host = nh;
            host_cap = numel;
        }
        int st = clt_tensor_read(g, t, 0, host, numel);
        if (st) {
            free(host);
            return tool_fail(err, st, "cannot read '%s' for the checkpoint: %s", clt_tensor_name(t), clt_errmsg(ctx));
        }
        put_floats(b, host, numel);
        for (int slot = 0; trainable && slot < 2; slot++) {
            st = clt_tensor_read_slot(g, t, slot, host, numel);
            if (st) {
                free(host);
                return tool_fail(err, st, "cannot read optimizer slot %d of '%s' for the checkpoint: %s", slot,
                                 clt_tensor_name(t), clt_errmsg(ctx));
            }
            put_floats(b, host, numel);
        }
    }
    free(host);
    if (b->oom) return tool_fail(err, CLT_ERR_NOMEM, "out of memory writing a checkpoint");
    uint64_t total = b->len + 4;
    for (int i = 0; i < 8; i++) b->p[12 + i] = (unsigned char)(total >> (8 * i));
    put_u32(b, (uint32_t)crc32(crc32(0L, Z_NULL, 0), b->p, (uInt)b->len));
    if (b->oom) return tool_fail(err, CLT_ERR_NOMEM, "out of memory writing a checkpoint");
    return CLT_OK;
}

/* fsync of the folder makes the rename itself durable. */
static int sync_dir(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int r = fsync(fd);
    /* Some file systems cannot sync folders; that is not a failure of the write. */
    if (r != 0 && (errno == EINVAL || errno == EBADF || errno == ENOTSUP)) r = 0;
    close(fd);
    return r;
}

int tool_checkpoint_save(const char *path, clt_graph *g, const tool_ckpt_meta *meta, const char *model_text,
                         char *err)
{
    if (!path || !g || !meta || !model_text)
        return tool_fail(err, CLT_ERR_INVALID, "tool_checkpoint_save: NULL argument");
    if (meta->nhistory < 0 || meta->nhistory > (int)(sizeof meta->history / sizeof meta->history[0]))
        return tool_fail(err, CLT_ERR_INVALID, "tool_checkpoint_save: nhistory %d out of range", meta->nhistory);
    wbuf b = {0};
    int st = serialize(&b, g, meta, model_text, err);
    if (st) {
        free(b.p);
        return st;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    /* O_EXCL: a file or symbolic link that happens to have this name is never truncated or followed. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(b.p);
        return tool_fail(err, CLT_ERR_IO, "%s: cannot create the temporary file %s (%s); the old checkpoint, if any, "
                         "is unchanged", path, tmp, strerror(e));
    }
    const char *what = NULL;
    if (fwrite(b.p, 1, b.len, f) != b.len)
        what = "write";
    else if (fflush(f) != 0)
        what = "write";
    else if (fsync(fileno(f)) != 0)
        what = "fsync";
    int e = errno;
    if (fclose(f) != 0 && !what) {
        what = "close";
        e = errno;
    }
    free(b.p);
    if (!what && rename(tmp, path) != 0) {
        what = "rename";
        e = errno;
    }
    if (what) {
        unlink(tmp);
        return tool_fail(err, CLT_ERR_IO, "%s: %s of the temporary file %s failed (%s); the old checkpoint, if any, is "
                         "unchanged", path, what, tmp, strerror(e));
    }
    if (sync_dir(path) != 0)
        return tool_fail(err, CLT_ERR_IO, "%s: written, but syncing its folder failed (%s)", path, strerror(errno));
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ reading */

typedef struct ckpt_tensor {
    char *name;
    int ndim;
    int shape[CKPT_MAX_DIMS];
    int trainable;
    size_t numel;
    float *value, *slot[2];
} ckpt_tensor;

typedef struct ckpt_priv {
    int n;
    ckpt_tensor *t;
} ckpt_priv;

typedef struct rbuf {
    const unsigned char *p;
    size_t len, at;
    int bad; /* ran past the end or found an impossible value */
} rbuf;

static const unsigned char *take(rbuf *r, size_t n)
{
    if (r->bad || n > r->len - r->at) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *p = r->p + r->at;
    r->at += n;
    return p;
}

static uint32_t get_u32(rbuf *r)
{
    const unsigned char *p = take(r, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24 : 0;
}

static uint64_t get_u64(rbuf *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

static int get_i32(rbuf *r)
{
    return (int)get_u32(r);
}

static float get_f32(rbuf *r)
{
    uint32_t u = get_u32(r);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static double get_f64(rbuf *r)
{
    uint64_t u = get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* A string into a fixed field (which must hold it with its terminator). */
static void get_str_fixed(rbuf *r, char *dst, size_t cap)
{
    uint32_t n = get_u32(r);
    if (n >= cap) {
        r->bad = 1;
        return;
    }
    const unsigned char *p = take(r, n);
    if (!p) return;
    memcpy(dst, p, n);
    dst[n] = 0;
}

static char *get_str_alloc(rbuf *r)
{
    uint32_t n = get_u32(r);
    const unsigned char *p = take(r, n);
    if (!p) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) {
        r->bad = 2;
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static float *get_floats(rbuf *r, size_t n)
{
    if (n > (r->len - r->at) / 4) {
        r->bad = 1;
        return NULL;
    }
    float *v = malloc(n * sizeof *v + 1);
    if (!v) {
        r->bad = 2;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) v[i] = get_f32(r);
    return v;
}

static void get_meta(rbuf *r, tool_ckpt_meta *m)
{
    get_str_fixed(r, m->dataset, sizeof m->dataset);
    get_str_fixed(r, m->model_text_origin, sizeof m->model_text_origin);
    m->epochs_done = get_i32(r);
    m->epochs_total = get_i32(r);
    m->steps = get_u64(r);
    m->passes = get_u64(r);
    m->rng_state = get_u64(r);
    m->opt.type = get_i32(r);
    m->opt.lr = get_f32(r);
    m->opt.momentum = get_f32(r);
    m->opt.nesterov = get_i32(r);
    m->opt.beta1 = get_f32(r);
    m->opt.beta2 = get_f32(r);
    m->opt.eps = get_f32(r);
    m->opt.weight_decay = get_f32(r);
    m->opt.l1 = get_f32(r);
    m->batch = get_i32(r);
    m->schedule = get_i32(r);
    m->lr = get_f32(r);
    m->momentum = get_f32(r);
    m->augment = get_i32(r);
    m->limit = get_i32(r);
    m->seed = get_u64(r);
    m->nhistory = get_i32(r);
    if (m->nhistory < 0 || m->nhistory > (int)(sizeof m->history / sizeof m->history[0])) {
        r->bad = 1;
        m->nhistory = 0;
        return;
    }
    for (int i = 0; i < m->nhistory; i++) {
        tool_epoch_metrics *e = &m->history[i];
        e->train_loss = get_f64(r);
        e->train_acc = get_f64(r);
        e->test_loss = get_f64(r);
        e->test_acc = get_f64(r);
        e->seconds = get_f64(r);
        e->images_per_s = get_f64(r);
    }
}

void tool_checkpoint_free(tool_checkpoint *c)
{
    if (!c) return;
    ckpt_priv *p = c->priv;
    if (p) {
        for (int i = 0; i < p->n; i++) {
            free(p->t[i].name);
            free(p->t[i].value);
            free(p->t[i].slot[0]);
            free(p->t[i].slot[1]);
        }
        free(p->t);
        free(p);
    }
    free(c->model_text);
    memset(c, 0, sizeof *c);
}

static int parse_body(rbuf *r, tool_checkpoint *out, const char *path, char *err)
{
    get_meta(r, &out->meta);
    /* What the tool indexes with: one history entry per finished epoch, within the history's capacity. */
    const tool_ckpt_meta *m = &out->meta;
    int cap = (int)(sizeof m->history / sizeof m->history[0]);
    if (!r->bad && (m->epochs_done < 0 || m->epochs_done > cap || m->epochs_total < 0 || m->epochs_total > cap ||
                    m->nhistory > m->epochs_done))
        r->bad = 1;
    out->model_text = get_str_alloc(r);
    uint32_t n = get_u32(r);
    /* Each tensor takes at least 13 bytes; a larger count cannot be right (and is not allocated). */
    if (!r->bad && n > (r->len - r->at) / 13) r->bad = 1;
    if (r->bad) n = 0;
    ckpt_priv *p = calloc(1, sizeof *p);
    out->priv = p;
    if (!p || (n && !(p->t = calloc(n, sizeof *p->t)))) return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory", path);
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        ckpt_tensor *t = &p->t[i];
        p->n = (int)i + 1;
        t->name = get_str_alloc(r);
        uint32_t nd = get_u32(r);
        if (nd < 1 || nd > CKPT_MAX_DIMS) {
            r->bad = 1;
            break;
        }
        t->ndim = (int)nd;
        t->numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint32_t v = get_u32(r);
            if (v < 1 || v > (1u << 30) || t->numel > ((size_t)1 << 40) / v) {
                r->bad = 1;
                break;
            }
            t->shape[d] = (int)v;
            t->numel *= v;
        }
        const unsigned char *tr = take(r, 1);
        if (!tr || *tr > 1) {
            r->bad = 1;
            break;
        }
        t->trainable = *tr;
        t->value = get_floats(r, t->numel);
        for (int s = 0; s < 2 && t->trainable; s++) t->slot[s] = get_floats(r, t->numel);
    }
    if (r->bad == 2) return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory", path);
    if (r->bad || !out->model_text)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: malformed checkpoint (a field runs past the end or holds an "
                         "impossible value) although its checksum matches", path);
    if (r->at != r->len)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: malformed checkpoint (unused bytes before the checksum)", path);
    return CLT_OK;
}

int tool_checkpoint_read(const char *path, tool_checkpoint *out, char *err)
{
    if (!path || !out) return tool_fail(err, CLT_ERR_INVALID, "tool_checkpoint_read: NULL argument");
    memset(out, 0, sizeof *out);
    /* Not fopen: opening a FIFO would block before fstat could refuse it. */
    FILE *f = tool_fopen_regular(path, "checkpoint", err);
    if (!f) return CLT_ERR_IO;
    struct stat stt;
    if (fstat(fileno(f), &stt) != 0 || !S_ISREG(stt.st_mode)) {
        fclose(f);
        return tool_fail(err, CLT_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)stt.st_size;
    unsigned char *data = malloc(len ? len : 1);
    if (!data) {
        fclose(f);
        return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, len);
    }
    size_t got = fread(data, 1, len, f);
    int rerr = ferror(f);
    fclose(f);
    int st = CLT_OK;
    if (rerr || got != len) {
        st = tool_fail(err, CLT_ERR_IO, "%s: read error", path);
        goto done;
    }
    if (len < 8 || memcmp(data, CKPT_MAGIC, 8) != 0) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: not a cltrain checkpoint (%s)", path,
                       len < 8 ? "file too short" : "bad magic bytes");
        goto done;
    }
    if (len < CKPT_PREFIX + 4) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: truncated checkpoint (%zu bytes)", path, len);
        goto done;
    }
    rbuf r = {data, len, 8, 0};
    uint32_t version = get_u32(&r);
    if (version != CKPT_VERSION) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: checkpoint format version %u; this cltrain reads version %u%s", path,
                       version, CKPT_VERSION, version > CKPT_VERSION ? " (written by a newer cltrain?)" : "");
        goto done;
    }
    uint64_t total = get_u64(&r);
    if (total != len) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: %s checkpoint: the header says %llu bytes, the file has %zu", path,
                       total > len ? "truncated" : "corrupt (trailing data)", (unsigned long long)total, len);
        goto done;
    }
    uint32_t want = (uint32_t)data[len - 4] | (uint32_t)data[len - 3] << 8 | (uint32_t)data[len - 2] << 16 |
                    (uint32_t)data[len - 1] << 24;
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)(len - 4));
    if (crc != want) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: corrupt checkpoint: checksum mismatch (CRC-32 %08x, stored %08x)",
                       path, crc, want);
        goto done;
    }
    r.len = len - 4;
    st = parse_body(&r, out, path, err);
done:
    free(data);
    if (st) tool_checkpoint_free(out);
    return st;
}

/* ------------------------------------------------------------------------------------------ applying */

static void shape_str(int nd, const int *s, char *buf, size_t n)
{
    size_t at = 0;
    at += (size_t)snprintf(buf + at, n - at, "(");
    for (int i = 0; i < nd && at < n; i++) at += (size_t)snprintf(buf + at, n - at, i ? ",%d" : "%d", s[i]);
    if (at < n) snprintf(buf + at, n - at, ")");
}

int tool_checkpoint_apply(const tool_checkpoint *c, clt_graph *g, char *err)
{
    if (!c || !c->priv || !g) return tool_fail(err, CLT_ERR_INVALID, "tool_checkpoint_apply: NULL argument");
    const ckpt_priv *p = c->priv;
    clt_context *ctx = clt_graph_context(g);
    int n = clt_graph_state_count(g);
    /* Check everything before writing anything, so a mismatch leaves the graph as it was. */
    int *match = malloc(((size_t)n + 1) * sizeof *match);
    char *used = calloc((size_t)p->n + 1, 1);
    if (!match || !used) {
        free(match);
        free(used);
        return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    }
    int st = CLT_OK;
    for (int i = 0; i < n && !st; i++) {
        int trainable;
        clt_tensor *t = clt_graph_state_tensor(g, i, &trainable);
        const char *name = clt_tensor_name(t);
        match[i] = -1;
        for (int j = 0; j < p->n; j++)
            if (!used[j] && strcmp(p->t[j].name, name) == 0) {
                match[i] = j;
                break;
            }
        int nd = clt_tensor_ndim(t), shape[CKPT_MAX_DIMS] = {0};
        for (int d = 0; d < nd && d < CKPT_MAX_DIMS; d++) shape[d] = clt_tensor_dim(t, d);
        char a[96], b[96];
        shape_str(nd, shape, a, sizeof a);
        if (match[i] < 0) {
            st = tool_fail(err, CLT_ERR_FORMAT, "the checkpoint has no tensor '%s' %s: it was saved from another model",
                           name, a);
            break;
        }
        const ckpt_tensor *ct = &p->t[match[i]];
        used[match[i]] = 1;
        shape_str(ct->ndim, ct->shape, b, sizeof b);
        if (ct->ndim != nd || memcmp(ct->shape, shape, sizeof shape) != 0)
            st = tool_fail(err, CLT_ERR_SHAPE, "tensor '%s' is %s in the checkpoint but %s in the model", name, b, a);
        else if (trainable && !ct->trainable)
            st = tool_fail(err, CLT_ERR_FORMAT, "tensor '%s' is trainable in the model but a buffer in the checkpoint",
                           name);
    }
    for (int j = 0; j < p->n && !st; j++)
        if (!used[j])
            st = tool_fail(err, CLT_ERR_FORMAT, "the checkpoint's tensor '%s' does not exist in the model: it was "
                           "saved from another model", p->t[j].name);
    for (int i = 0; i < n && !st; i++) {
        int trainable;
        clt_tensor *t = clt_graph_state_tensor(g, i, &trainable);
        const ckpt_tensor *ct = &p->t[match[i]];
        st = clt_tensor_write(g, t, ct->value, ct->numel);
        for (int s = 0; s < 2 && !st && trainable; s++) st = clt_tensor_write_slot(g, t, s, ct->slot[s], ct->numel);
        if (st) st = tool_fail(err, st, "cannot restore '%s': %s", ct->name, clt_errmsg(ctx));
    }
    free(match);
    free(used);
    if (st) return st;
    clt_graph_set_counters(g, c->meta.steps, c->meta.passes);
    return CLT_OK;
}
