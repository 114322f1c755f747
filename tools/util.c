/* util.c - small helpers shared by the tool modules (data sets, models, checkpoints): messages, input files,
 * the training step over micro-batches. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

int tool_fail(char *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, TOOL_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return status;
}

const char *tool_file_kind(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a folder";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFLNK: return "a symbolic link";
    default: return "a special file";
    }
}

/* "WHAT PATH" or "PATH" at the start of a message. */
static void name_of(char *buf, size_t len, const char *path, const char *what)
{
    snprintf(buf, len, "%s%s%.3000s", what ? what : "", what ? " " : "", path);
}

static int stat_fail(const char *path, const char *what, int e, char *err)
{
    char n[3200];
    name_of(n, sizeof n, path, what);
    if (e == ELOOP) return tool_fail(err, CLT_ERR_IO, "%s: too many levels of symbolic links (a symlink loop?)", n);
    if (e == ENOTDIR) return tool_fail(err, CLT_ERR_IO, "%s: a part of the path is not a folder", n);
    return tool_fail(err, CLT_ERR_IO, "%s: cannot open (%s)", n, strerror(e));
}

static int kind_fail(const char *path, const char *what, unsigned mode, char *err)
{
    char n[3200];
    name_of(n, sizeof n, path, what);
    return tool_fail(err, CLT_ERR_IO, "%s: is %s, not a regular file", n, tool_file_kind(mode));
}

int tool_check_regular_file(const char *path, const char *what, char *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return stat_fail(path, what, errno, err);
    if (!S_ISREG(st.st_mode)) return kind_fail(path, what, (unsigned)st.st_mode, err);
    return CLT_OK;
}

int tool_open_regular(const char *path, const char *what, char *err)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return stat_fail(path, what, errno, err);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return stat_fail(path, what, e, err);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return kind_fail(path, what, (unsigned)st.st_mode, err);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl == -1 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
        int e = errno;
        close(fd);
        return stat_fail(path, what, e, err);
    }
    return fd;
}

FILE *tool_fopen_regular(const char *path, const char *what, char *err)
{
    int fd = tool_open_regular(path, what, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        tool_fail(err, CLT_ERR_NOMEM, "%.3000s: cannot open (%s)", path, strerror(errno));
        close(fd);
    }
    return f;
}

int tool_check_folder(const char *path, const char *what, char *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return stat_fail(path, what, errno, err);
    if (!S_ISDIR(st.st_mode)) {
        char n[3200];
        name_of(n, sizeof n, path, what);
        return tool_fail(err, CLT_ERR_IO, "%s: not a folder (it is %s)", n, tool_file_kind((unsigned)st.st_mode));
    }
    return CLT_OK;
}

int tool_check_model_path(const char *name_or_path, char *err)
{
    for (int i = 0; clt_model_preset_name(i); i++)
        if (!strcmp(name_or_path, clt_model_preset_name(i))) return CLT_OK;
    struct stat st;
    /* A missing file is left to the loader, whose message also lists the presets. */
    if (stat(name_or_path, &st) != 0) return errno == ENOENT ? CLT_OK : stat_fail(name_or_path, "model file", errno, err);
    if (!S_ISREG(st.st_mode)) return kind_fail(name_or_path, "model file", (unsigned)st.st_mode, err);
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ training steps */

int tool_train_step(const tool_step *s, int micro, float lr, tool_micro_fn fill, tool_micro_fn after, void *ud,
                    float *mean_loss, float *grad_norm, char *err)
{
    clt_context *ctx = clt_graph_context(s->g);
    if (micro < 1 || micro > s->accumulate || !fill)
        return tool_fail(err, CLT_ERR_INVALID, "internal: %d micro-batches in a step (at most %d)", micro,
                         s->accumulate);
    double sum = 0;
    float l = 0;
    int st = 0;
    for (int m = 0; m < micro; m++) {
        if ((st = fill(ud, m, err)) < 0) break;
        /* The gradient of the mean over the step's rows: each micro-batch's mean loss weighs 1/micro. One
         * micro-batch is exactly clt_graph_backward. */
        if ((st = clt_graph_forward(s->g, 1)) < 0 ||
            (st = clt_graph_backward_ex(s->g, s->loss, 1.0f / (float)micro, m > 0)) < 0) {
            tool_fail(err, st, "%s", clt_errmsg(ctx));
            break;
        }
        if (m + 1 == micro) break; /* the last one is read after the step: the queue runs on meanwhile */
        if ((st = clt_tensor_read(s->g, s->loss, 0, &l, 1)) < 0) {
            tool_fail(err, st, "%s", clt_errmsg(ctx));
            break;
        }
        sum += l;
        if (after && (st = after(ud, m, err)) < 0) break;
    }
    /* Data-parallel: every process reaches this point once per step, failed or not, so none waits forever. */
    int verdict = s->sync ? s->sync(s->sync_ud, st) : 0;
    if (st < 0) return st;
    if (verdict < 0) return TOOL_STEP_STOPPED;
    if (grad_norm) *grad_norm = NAN;
    if (!verdict && s->clip > 0 && (st = clt_graph_clip_grad_norm(s->g, s->clip, grad_norm)) < 0)
        return tool_fail(err, st, "%s", clt_errmsg(ctx));
    if ((!verdict && (st = clt_graph_step(s->g, lr)) < 0) || (st = clt_tensor_read(s->g, s->loss, 0, &l, 1)) < 0)
        return tool_fail(err, st, "%s", clt_errmsg(ctx));
    sum += l;
    if (after && (st = after(ud, micro - 1, err)) < 0) return st;
    if (mean_loss) *mean_loss = (float)(sum / micro);
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ bytes */

void tool_put(tool_buf *b, const void *v, size_t n)
{
    if (b->oom || !n) return;
    if (b->n + n > b->cap) {
        size_t nc = (b->cap + n) * 2;
        unsigned char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}
void tool_put_u32(tool_buf *b, uint32_t v)
{
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    tool_put(b, c, 4);
}
void tool_put_u64(tool_buf *b, uint64_t v)
{
    tool_put_u32(b, (uint32_t)v);
    tool_put_u32(b, (uint32_t)(v >> 32));
}
void tool_put_f32(tool_buf *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    tool_put_u32(b, u);
}
void tool_put_f64(tool_buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    tool_put_u64(b, u);
}
void tool_put_str(tool_buf *b, const char *s, size_t n)
{
    tool_put_u32(b, (uint32_t)n);
    tool_put(b, s, n);
}

const unsigned char *tool_take(tool_rd *r, size_t n)
{
    if (r->bad || n > r->n - r->at) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *p = r->p + r->at;
    r->at += n;
    return p;
}
uint32_t tool_get_u32(tool_rd *r)
{
    const unsigned char *p = tool_take(r, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24 : 0;
}
uint64_t tool_get_u64(tool_rd *r)
{
    uint64_t lo = tool_get_u32(r);
    return lo | (uint64_t)tool_get_u32(r) << 32;
}
float tool_get_f32(tool_rd *r)
{
    uint32_t u = tool_get_u32(r);
    float v;
    memcpy(&v, &u, 4);
    return v;
}
double tool_get_f64(tool_rd *r)
{
    uint64_t u = tool_get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* ------------------------------------------------------------------------------------------ messages */

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}
int tool_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("cltrain: error: ", fmt, ap);
    va_end(ap);
    return 1;
}
int tool_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("cltrain: ", fmt, ap);
    va_end(ap);
    return 1;
}

uint64_t tool_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
