/* distill.c - the teacher of `cltrain <dataset> --teacher CKPT`: evaluation graphs of a trained checkpoint that
 * give their logits for each training batch to the student's clt_distill_kl input, on the device. */
#include <stdlib.h>
#include <string.h>

#include "tool.h"

struct tool_teacher {
    clt_graph *g[2];       /* evaluation graphs of the full batch and of the last partial one (NULL: none) */
    clt_tensor *x[2], *logits[2];
    int batch[2];
    float scale[4], shift[4]; /* the student's normalized input -> the teacher's: x * scale + shift per channel */
    int same;                 /* both normalize alike: the batch is written as it is */
    size_t plane;             /* h * w */
    int c;
    float *buf;
};

int tool_teacher_open(clt_context *ctx, const char *path, const char *dataset, const tool_data_meta *dm, int batch,
                      int tail, tool_teacher **out, char *err)
{
    *out = NULL;
    tool_teacher *t = calloc(1, sizeof *t);
    tool_ckpt_meta *m = calloc(1, sizeof *m);
    clt_checkpoint *ck = NULL;
    tool_data_meta tm;
    int st = t && m ? 0 : tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    if (!st) st = tool_check_regular_file(path, "teacher checkpoint", err);
    if (!st) st = tool_checkpoint_open(path, &ck, err);
    if (!st) st = tool_meta_decode(ck, path, m, &tm, err);
    if (!st && strcmp(m->dataset, dataset))
        st = tool_fail(err, CLT_ERR_INVALID, "--teacher %s was trained on %s, not %s", path, m->dataset, dataset);
    if (!st && (tm.c != dm->c || tm.h != dm->h || tm.w != dm->w || tm.classes != dm->classes))
        st = tool_fail(err, CLT_ERR_INVALID, "--teacher %s takes %dx%dx%d images in %d classes; the student %dx%dx%d in %d",
                       path, tm.c, tm.h, tm.w, tm.classes, dm->c, dm->h, dm->w, dm->classes);
    for (int i = 0; i < 2 && !st; i++) {
        int b = i ? tail : batch;
        if (b <= 0) continue;
        clt_load_settings ls;
        clt_load_default_settings(&ls);
        ls.batch = b;
        ls.key = tool_key();
        t->batch[i] = b;
        if (clt_checkpoint_build(ck, ctx, &ls, &t->g[i]) < 0 || clt_graph_model_tensors(t->g[i], &t->x[i], &t->logits[i]) < 0)
            st = tool_fail(err, CLT_ERR_STATE, "--teacher %s: %s", path, clt_errmsg(ctx));
    }
    if (!st) {
        t->c = dm->c;
        t->plane = (size_t)dm->h * dm->w;
        t->same = 1;
        for (int c = 0; c < dm->c; c++) {
            t->scale[c] = dm->std[c] / tm.std[c];
            t->shift[c] = (dm->mean[c] - tm.mean[c]) / tm.std[c];
            t->same &= t->scale[c] == 1.0f && t->shift[c] == 0.0f;
        }
        if (!t->same && !(t->buf = malloc((size_t)batch * dm->c * t->plane * sizeof *t->buf)))
            st = tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    }
    clt_checkpoint_close(ck);
    free(m);
    if (st) {
        tool_teacher_free(t);
        return st;
    }
    *out = t;
    return 0;
}

int tool_teacher_run(tool_teacher *t, int tail, const float *x, clt_graph *student, clt_tensor *input)
{
    int i = tail ? 1 : 0;
    size_t n = (size_t)t->batch[i] * t->c * t->plane;
    const float *src = x;
    if (!t->same) {
        for (size_t k = 0; k < n; k++) {
            int c = (int)(k / t->plane % (size_t)t->c);
            t->buf[k] = x[k] * t->scale[c] + t->shift[c];
        }
        src = t->buf;
    }
    /* The logits stay on the device: copied straight into the student's input. */
    if (clt_tensor_write(t->g[i], t->x[i], src, n) < 0 || clt_graph_forward(t->g[i], 0) < 0) return -1;
    return clt_tensor_copy(student, input, t->g[i], t->logits[i]);
}

void tool_teacher_free(tool_teacher *t)
{
    if (!t) return;
    clt_graph_destroy(t->g[0]);
    clt_graph_destroy(t->g[1]);
    free(t->buf);
    free(t);
}
