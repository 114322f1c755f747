/* ckmeta.c - the cltrain tool's metadata inside library checkpoints (layout in tool.h), and version-1 conversion. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

#define HISTORY_CAP ((int)(sizeof ((tool_ckpt_meta *)0)->history / sizeof ((tool_ckpt_meta *)0)->history[0]))

/* ------------------------------------------------------------------------------------------ encoding */

int tool_meta_encode(const tool_ckpt_meta *m, const tool_data_meta *dm, unsigned char **blob, size_t *len, char *err)
{
    *blob = NULL;
    *len = 0;
    if (m->nhistory < 0 || m->nhistory > HISTORY_CAP || dm->classes < 0 || dm->classes > 10)
        return tool_fail(err, CLT_ERR_INVALID, "tool_meta_encode: %d history entries, %d classes", m->nhistory,
                         dm->classes);
    size_t dl = strnlen(m->dataset, sizeof m->dataset), ol = strnlen(m->model_text_origin, sizeof m->model_text_origin);
    tool_buf w = {0};
    tool_put(&w, TOOL_META_MAGIC, 8);
    tool_put_u32(&w, TOOL_META_VERSION);
    tool_put_str(&w, m->dataset, dl);
    tool_put_str(&w, m->model_text_origin, ol);
    tool_put_u32(&w, (uint32_t)m->epochs_done);
    tool_put_u32(&w, (uint32_t)m->epochs_total);
    tool_put_u64(&w, m->rng_state);
    tool_put_u32(&w, (uint32_t)m->batch);
    tool_put_u32(&w, (uint32_t)m->schedule);
    tool_put_f32(&w, m->lr);
    tool_put_f32(&w, m->momentum);
    tool_put_u32(&w, (uint32_t)m->augment);
    tool_put_u32(&w, (uint32_t)m->limit);
    tool_put_u64(&w, m->seed);
    tool_put_u32(&w, (uint32_t)m->nhistory);
    for (int i = 0; i < m->nhistory; i++) {
        const tool_epoch_metrics *e = &m->history[i];
        tool_put_f64(&w, e->train_loss);
        tool_put_f64(&w, e->train_acc);
        tool_put_f64(&w, e->test_loss);
        tool_put_f64(&w, e->test_acc);
        tool_put_f64(&w, e->seconds);
        tool_put_f64(&w, e->images_per_s);
    }
    tool_put_u32(&w, (uint32_t)dm->c);
    tool_put_u32(&w, (uint32_t)dm->h);
    tool_put_u32(&w, (uint32_t)dm->w);
    tool_put_u32(&w, (uint32_t)dm->classes);
    for (int i = 0; i < 4; i++) tool_put_f32(&w, dm->mean[i]);
    for (int i = 0; i < 4; i++) tool_put_f32(&w, dm->std[i]);
    tool_put_f32(&w, dm->label_smoothing);
    for (int i = 0; i < dm->classes; i++)
        tool_put_str(&w, dm->class_names[i], strnlen(dm->class_names[i], sizeof dm->class_names[i]));
    if (w.oom) {
        free(w.p);
        return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    }
    *blob = w.p;
    *len = w.n;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ decoding */

static int r_i32(tool_rd *r) { return (int)tool_get_u32(r); }
/* A string into a fixed field (which must hold it with its terminator, and no NUL inside). */
static void r_str(tool_rd *r, char *dst, size_t cap)
{
    uint32_t n = tool_get_u32(r);
    const unsigned char *p = n < cap ? tool_take(r, n) : NULL;
    if (!p || memchr(p, 0, n)) {
        r->bad = 1;
        dst[0] = 0;
        return;
    }
    memcpy(dst, p, n);
    dst[n] = 0;
}

static void r_history(tool_rd *r, tool_ckpt_meta *m)
{
    m->nhistory = r_i32(r);
    if (m->nhistory < 0 || m->nhistory > HISTORY_CAP) {
        r->bad = 1;
        m->nhistory = 0;
    }
    for (int i = 0; i < m->nhistory; i++) {
        tool_epoch_metrics *e = &m->history[i];
        e->train_loss = tool_get_f64(r);
        e->train_acc = tool_get_f64(r);
        e->test_loss = tool_get_f64(r);
        e->test_acc = tool_get_f64(r);
        e->seconds = tool_get_f64(r);
        e->images_per_s = tool_get_f64(r);
    }
}

static void decode_v2(tool_rd *r, tool_ckpt_meta *m, tool_data_meta *dm)
{
    const unsigned char *mg = tool_take(r, 8);
    if (!mg || memcmp(mg, TOOL_META_MAGIC, 8) != 0 || tool_get_u32(r) != TOOL_META_VERSION) {
        r->bad = 2;
        return;
    }
    r_str(r, m->dataset, sizeof m->dataset);
    r_str(r, m->model_text_origin, sizeof m->model_text_origin);
    m->epochs_done = r_i32(r);
    m->epochs_total = r_i32(r);
    m->rng_state = tool_get_u64(r);
    m->batch = r_i32(r);
    m->schedule = r_i32(r);
    m->lr = tool_get_f32(r);
    m->momentum = tool_get_f32(r);
    m->augment = r_i32(r);
    m->limit = r_i32(r);
    m->seed = tool_get_u64(r);
    r_history(r, m);
    dm->c = r_i32(r);
    dm->h = r_i32(r);
    dm->w = r_i32(r);
    dm->classes = r_i32(r);
    for (int i = 0; i < 4; i++) dm->mean[i] = tool_get_f32(r);
    for (int i = 0; i < 4; i++) dm->std[i] = tool_get_f32(r);
    dm->label_smoothing = tool_get_f32(r);
    if (dm->classes < 0 || dm->classes > 10) r->bad = 1;
    for (int i = 0; i < dm->classes && !r->bad; i++) r_str(r, dm->class_names[i], sizeof dm->class_names[i]);
}

/* Version 1: cltrain 0.1's metadata section, then its model text with the data block of comment lines. */
static void v1_block(const char *text, size_t n, tool_data_meta *dm, tool_rd *r)
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

static void decode_v1(tool_rd *r, tool_ckpt_meta *m, tool_data_meta *dm)
{
    r_str(r, m->dataset, sizeof m->dataset);
    r_str(r, m->model_text_origin, sizeof m->model_text_origin);
    m->epochs_done = r_i32(r);
    m->epochs_total = r_i32(r);
    tool_take(r, 16); /* counters: the library's */
    m->rng_state = tool_get_u64(r);
    tool_take(r, 36); /* optimizer: the library's */
    m->batch = r_i32(r);
    m->schedule = r_i32(r);
    m->lr = tool_get_f32(r);
    m->momentum = tool_get_f32(r);
    m->augment = r_i32(r);
    m->limit = r_i32(r);
    m->seed = tool_get_u64(r);
    r_history(r, m);
    uint32_t n = tool_get_u32(r);
    const unsigned char *text = tool_take(r, n);
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
    tool_rd r = {p, len, 0, 0};
    int v1 = clt_checkpoint_version(ck) == 1;
    if (v1) decode_v1(&r, m, dm);
    else decode_v2(&r, m, dm);
    if (r.bad == 2 || (!r.bad && r.at != r.n) || (r.bad && !v1 && len < 12))
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

/* The metadata a quantized checkpoint copied from its float one (always the version-2 blob: `cltrain quantize`
 * refuses version-1 files), with the shape checks of check(). */
int tool_meta_decode_quant(const clt_qcheckpoint *q, const char *path, tool_ckpt_meta *m, tool_data_meta *dm,
                           char *err)
{
    memset(m, 0, sizeof *m);
    memset(dm, 0, sizeof *dm);
    size_t len = 0;
    const unsigned char *p = clt_qcheckpoint_app_meta(q, &len);
    tool_rd r = {p, len, 0, 0};
    decode_v2(&r, m, dm);
    if (r.bad || r.at != r.n)
        return tool_fail(err, CLT_ERR_FORMAT, "quantized checkpoint %s holds no cltrain metadata of version %u", path,
                         TOOL_META_VERSION);
    for (int i = 0; i < dm->classes; i++)
        if (!dm->class_names[i][0]) snprintf(dm->class_names[i], sizeof dm->class_names[i], "class%d", i);
    int c, h, w, k;
    clt_qcheckpoint_input(q, &c, &h, &w, &k);
    if (dm->c < 1 || dm->c > 4 || dm->classes < 2 || dm->classes > 10 || dm->c != c || dm->h != h || dm->w != w ||
        dm->classes != k)
        return tool_fail(err, CLT_ERR_FORMAT, "quantized checkpoint %s: the data settings do not match its network",
                         path);
    for (int i = 0; i < dm->c; i++)
        if (!isfinite(dm->mean[i]) || !isfinite(dm->std[i]) || !(dm->std[i] > 0))
            return tool_fail(err, CLT_ERR_FORMAT, "quantized checkpoint %s: unusable normalization statistics", path);
    return CLT_OK;
}
