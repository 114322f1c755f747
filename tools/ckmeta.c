/* ckmeta.c - the cltrain tool's metadata inside library checkpoints (layout in tool.h), and version-1 conversion. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

#define HISTORY_CAP ((int)(sizeof ((tool_ckpt_meta *)0)->history / sizeof ((tool_ckpt_meta *)0)->history[0]))

/* ------------------------------------------------------------------------------------------ encoding */

/* A cursor over a buffer sized exactly beforehand. */
typedef struct wcur {
    unsigned char *p;
} wcur;

static void w_u32(wcur *w, uint32_t v)
{
    for (int i = 0; i < 4; i++) *w->p++ = (unsigned char)(v >> (8 * i));
}
static void w_u64(wcur *w, uint64_t v)
{
    w_u32(w, (uint32_t)v);
    w_u32(w, (uint32_t)(v >> 32));
}
static void w_f32(wcur *w, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    w_u32(w, u);
}
static void w_f64(wcur *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    w_u64(w, u);
}
static void w_str(wcur *w, const char *s, size_t n)
{
    w_u32(w, (uint32_t)n);
    memcpy(w->p, s, n);
    w->p += n;
}

int tool_meta_encode(const tool_ckpt_meta *m, const tool_data_meta *dm, unsigned char **blob, size_t *len, char *err)
{
    *blob = NULL;
    *len = 0;
    if (m->nhistory < 0 || m->nhistory > HISTORY_CAP || dm->classes < 0 || dm->classes > 10)
        return tool_fail(err, CLT_ERR_INVALID, "tool_meta_encode: %d history entries, %d classes", m->nhistory,
                         dm->classes);
    size_t dl = strnlen(m->dataset, sizeof m->dataset), ol = strnlen(m->model_text_origin, sizeof m->model_text_origin);
    size_t names = 0;
    for (int i = 0; i < dm->classes; i++) names += 4 + strnlen(dm->class_names[i], sizeof dm->class_names[i]);
    size_t n = 12 + 4 + dl + 4 + ol + 8 + 8 + 24 + 8 + 4 + (size_t)m->nhistory * 48 + 16 + 36 + names;
    unsigned char *b = malloc(n);
    if (!b) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    wcur w = {b};
    memcpy(w.p, TOOL_META_MAGIC, 8);
    w.p += 8;
    w_u32(&w, TOOL_META_VERSION);
    w_str(&w, m->dataset, dl);
    w_str(&w, m->model_text_origin, ol);
    w_u32(&w, (uint32_t)m->epochs_done);
    w_u32(&w, (uint32_t)m->epochs_total);
    w_u64(&w, m->rng_state);
    w_u32(&w, (uint32_t)m->batch);
    w_u32(&w, (uint32_t)m->schedule);
    w_f32(&w, m->lr);
    w_f32(&w, m->momentum);
    w_u32(&w, (uint32_t)m->augment);
    w_u32(&w, (uint32_t)m->limit);
    w_u64(&w, m->seed);
    w_u32(&w, (uint32_t)m->nhistory);
    for (int i = 0; i < m->nhistory; i++) {
        const tool_epoch_metrics *e = &m->history[i];
        w_f64(&w, e->train_loss);
        w_f64(&w, e->train_acc);
        w_f64(&w, e->test_loss);
        w_f64(&w, e->test_acc);
        w_f64(&w, e->seconds);
        w_f64(&w, e->images_per_s);
    }
    w_u32(&w, (uint32_t)dm->c);
    w_u32(&w, (uint32_t)dm->h);
    w_u32(&w, (uint32_t)dm->w);
    w_u32(&w, (uint32_t)dm->classes);
    for (int i = 0; i < 4; i++) w_f32(&w, dm->mean[i]);
    for (int i = 0; i < 4; i++) w_f32(&w, dm->std[i]);
    w_f32(&w, dm->label_smoothing);
    for (int i = 0; i < dm->classes; i++)
        w_str(&w, dm->class_names[i], strnlen(dm->class_names[i], sizeof dm->class_names[i]));
    *blob = b;
    *len = (size_t)(w.p - b);
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ decoding */

typedef struct rcur {
    const unsigned char *p;
    size_t len, at;
    int bad;
} rcur;

static const unsigned char *r_take(rcur *r, size_t n)
{
    if (r->bad || n > r->len - r->at) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *p = r->p + r->at;
    r->at += n;
    return p;
}
static uint32_t r_u32(rcur *r)
{
    const unsigned char *p = r_take(r, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24 : 0;
}
static uint64_t r_u64(rcur *r)
{
    uint64_t lo = r_u32(r);
    return lo | (uint64_t)r_u32(r) << 32;
}
static int r_i32(rcur *r) { return (int)r_u32(r); }
static float r_f32(rcur *r)
{
    uint32_t u = r_u32(r);
    float v;
    memcpy(&v, &u, 4);
    return v;
}
static double r_f64(rcur *r)
{
    uint64_t u = r_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}
/* A string into a fixed field (which must hold it with its terminator, and no NUL inside). */
static void r_str(rcur *r, char *dst, size_t cap)
{
    uint32_t n = r_u32(r);
    const unsigned char *p = n < cap ? r_take(r, n) : NULL;
    if (!p || memchr(p, 0, n)) {
        r->bad = 1;
        dst[0] = 0;
        return;
    }
    memcpy(dst, p, n);
    dst[n] = 0;
}

static void r_history(rcur *r, tool_ckpt_meta *m)
{
    m->nhistory = r_i32(r);
    if (m->nhistory < 0 || m->nhistory > HISTORY_CAP) {
        r->bad = 1;
        m->nhistory = 0;
    }
    for (int i = 0; i < m->nhistory; i++) {
        tool_epoch_metrics *e = &m->history[i];
        e->train_loss = r_f64(r);
        e->train_acc = r_f64(r);
        e->test_loss = r_f64(r);
        e->test_acc = r_f64(r);
        e->seconds = r_f64(r);
        e->images_per_s = r_f64(r);
    }
}

static void decode_v2(rcur *r, tool_ckpt_meta *m, tool_data_meta *dm)
{
    const unsigned char *mg = r_take(r, 8);
    if (!mg || memcmp(mg, TOOL_META_MAGIC, 8) != 0 || r_u32(r) != TOOL_META_VERSION) {
        r->bad = 2;
        return;
    }
    r_str(r, m->dataset, sizeof m->dataset);
    r_str(r, m->model_text_origin, sizeof m->model_text_origin);
    m->epochs_done = r_i32(r);
    m->epochs_total = r_i32(r);
    m->rng_state = r_u64(r);
    m->batch = r_i32(r);
    m->schedule = r_i32(r);
    m->lr = r_f32(r);
    m->momentum = r_f32(r);
    m->augment = r_i32(r);
    m->limit = r_i32(r);
    m->seed = r_u64(r);
    r_history(r, m);
    dm->c = r_i32(r);
    dm->h = r_i32(r);
    dm->w = r_i32(r);
    dm->classes = r_i32(r);
    for (int i = 0; i < 4; i++) dm->mean[i] = r_f32(r);
    for (int i = 0; i < 4; i++) dm->std[i] = r_f32(r);
    dm->label_smoothing = r_f32(r);
    if (dm->classes < 0 || dm->classes > 10) r->bad = 1;
    for (int i = 0; i < dm->classes && !r->bad; i++) r_str(r, dm->class_names[i], sizeof dm->class_names[i]);
}

/* Version 1: cltrain 0.1's metadata section, then its model text with the data block of comment lines. */
static void v1_block(const char *text, size_t n, tool_data_meta *dm, rcur *r)
{
    static const char marker[] = "# --- cltrain data settings";
    const char *mk = NULL;
    for (size_t i = 0; i + sizeof marker - 1 <= n && !mk; i++)
        if (!memcmp(text + i, marker, sizeof marker - 1)) mk = text + i;
    if (!mk) {
        r->bad = 1;
        return;
    }
    int got = 0;
    for (const char *p = mk; p < text + n;) {
        const char *eol = memchr(p, '\n', (size_t)(text + n - p));
        size_t l = eol ? (size_t)(eol - p) : (size_t)(text + n - p);
        char line[256];
        if (l >= sizeof line) l = sizeof line - 1;
        memcpy(line, p, l);
        line[l] = 0;
        int k;
        if (sscanf(line, "# input %d %d %d", &dm->c, &dm->h, &dm->w) == 3) got |= 1;
        else if (sscanf(line, "# classes %d", &dm->classes) == 1) got |= 2;
        else if (!strncmp(line, "# mean", 6) || !strncmp(line, "# std", 5)) {
            float *dst = line[2] == 'm' ? dm->mean : dm->std;
            char *q = line + (line[2] == 'm' ? 6 : 5);
            for (int i = 0; i < 4; i++) {
                char *e;
                double v = strtod(q, &e);
                if (e == q) break;
                dst[i] = (float)v;
                q = e;
            }
            got |= line[2] == 'm' ? 4 : 8;
        } else if (sscanf(line, "# label_smoothing %f", &dm->label_smoothing) == 1) got |= 16;
        else if (sscanf(line, "# class %d", &k) == 1 && k >= 0 && k < 10) {
            const char *nm = strchr(line + 8, ' ');
            if (nm) snprintf(dm->class_names[k], sizeof dm->class_names[k], "%s", nm + 1);
        }
        p = eol ? eol + 1 : text + n;
    }
    if ((got & 15) != 15) r->bad = 1;
}

static void decode_v1(rcur *r, tool_ckpt_meta *m, tool_data_meta *dm)
{
    r_str(r, m->dataset, sizeof m->dataset);
    r_str(r, m->model_text_origin, sizeof m->model_text_origin);
    m->epochs_done = r_i32(r);
    m->epochs_total = r_i32(r);
    r_take(r, 16); /* counters: the library's */
    m->rng_state = r_u64(r);
    r_take(r, 36); /* optimizer: the library's */
    m->batch = r_i32(r);
    m->schedule = r_i32(r);
    m->lr = r_f32(r);
    m->momentum = r_f32(r);
    m->augment = r_i32(r);
    m->limit = r_i32(r);
    m->seed = r_u64(r);
    r_history(r, m);
    uint32_t n = r_u32(r);
    const unsigned char *text = r_take(r, n);
    if (text) v1_block((const char *)text, n, dm, r);
}

/* What the tool indexes with or divides by must be in range; statistics must be usable numbers. */
static int check(const tool_ckpt_meta *m, const tool_data_meta *dm, const clt_checkpoint *ck, const char *path,
                 char *err)
{
    if (m->epochs_done < 0 || m->epochs_done > HISTORY_CAP || m->epochs_total < 0 || m->epochs_total > HISTORY_CAP ||
        m->nhistory > m->epochs_done)
        return tool_fail(err, CLT_ERR_FORMAT, "checkpoint %s: malformed cltrain metadata (%d of %d epochs, %d history "
                         "entries)", path, m->epochs_done, m->epochs_total, m->nhistory);
    int c, h, w, k;
    clt_checkpoint_input(ck, &c, &h, &w, &k);
    if (dm->c < 1 || dm->c > 4 || dm->classes < 2 || dm->classes > 10 || dm->c != c || dm->h != h || dm->w != w ||
        dm->classes != k)
        return tool_fail(err, CLT_ERR_FORMAT, "checkpoint %s: the data settings (%dx%dx%d images, %d classes) do not "
                         "match its network (%dx%dx%d, %d)", path, dm->c, dm->h, dm->w, dm->classes, c, h, w, k);
    for (int i = 0; i < dm->c; i++)
        if (!isfinite(dm->mean[i]) || !isfinite(dm->std[i]) || !(dm->std[i] > 0))
            return tool_fail(err, CLT_ERR_FORMAT, "checkpoint %s: the normalization statistics of channel %d (mean %g, "
                             "std %g) are not usable: refused", path, i, dm->mean[i], dm->std[i]);
    if (!isfinite(dm->label_smoothing) || dm->label_smoothing < 0 || dm->label_smoothing >= 1)
        return tool_fail(err, CLT_ERR_FORMAT, "checkpoint %s: label smoothing %g out of range", path,
                         dm->label_smoothing);
    return CLT_OK;
}

int tool_meta_decode(const clt_checkpoint *ck, const char *path, tool_ckpt_meta *m, tool_data_meta *dm, char *err)
{
    memset(m, 0, sizeof *m);
    memset(dm, 0, sizeof *dm);
    size_t len = 0;
    const unsigned char *p = clt_checkpoint_app_meta(ck, &len);
    rcur r = {p, len, 0, 0};
    int v1 = clt_checkpoint_version(ck) == 1;
    if (v1) decode_v1(&r, m, dm);
    else decode_v2(&r, m, dm);
    if (r.bad == 2 || (!r.bad && r.at != r.len) || (r.bad && !v1 && len < 12))
        return tool_fail(err, CLT_ERR_FORMAT, "checkpoint %s holds no cltrain metadata of version %u (saved by another "
                         "application?)", path, TOOL_META_VERSION);
    if (r.bad)
        return tool_fail(err, CLT_ERR_FORMAT, "checkpoint %s: malformed cltrain metadata%s", path,
                         v1 ? " (version-1 file)" : "");
    for (int i = 0; i < dm->classes; i++)
        if (!dm->class_names[i][0]) snprintf(dm->class_names[i], sizeof dm->class_names[i], "class%d", i);
    clt_compile_settings cs;
    clt_checkpoint_compile_settings(ck, &cs);
    m->opt = cs.optimizer;
    clt_checkpoint_counters(ck, &m->steps, &m->passes);
    return check(m, dm, ck, path, err);
}
