/* table_cmd.c - `cltrain table`: train on CSV/NPY/NPZ tables (classify, binary, regress), and predicting table rows. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

enum { TASK_CLASSIFY = 0, TASK_BINARY, TASK_REGRESS };
static const char *const task_names[3] = {"classify", "binary", "regress"};
#define MAX_CLASSES 100
#define MAX_CATEGORICAL 64

/* ------------------------------------------------------------------------------------------ the encoding */

/* How table columns become the network's inputs and targets; stored in the checkpoint. */
typedef struct tab_meta {
    int task;
    char target[64];
    int nsrc;                 /* source columns used as features, in order */
    char (*src)[64];          /* their names */
    int *src_ncat;            /* 0 numeric, else one-hot over src_cats */
    char ***src_cats;
    int nf;                   /* inputs after one-hot encoding */
    double *mean, *std;       /* per input: x = (v - mean) / std */
    int classes;              /* classify: K; binary, regress: 1 output */
    char (*class_names)[64];  /* classify and binary (2 names: negative, positive) */
    double y_mean, y_std;     /* regress: the network predicts (y - y_mean) / y_std */
    int target_col;           /* .npy: the target's column index in the training file (-1 otherwise) */
    char model_origin[256];
    int epochs_done, nhistory;
    tool_epoch_metrics history[1024];
} tab_meta;

static void tab_meta_free(tab_meta *m)
{
    for (int i = 0; m->src_cats && i < m->nsrc; i++) {
        for (int k = 0; k < m->src_ncat[i]; k++) free(m->src_cats[i][k]);
        free(m->src_cats[i]);
    }
    free(m->src_cats);
    free(m->src_ncat);
    free(m->src);
    free(m->mean);
    free(m->std);
    free(m->class_names);
    memset(m, 0, sizeof *m);
}

#define TAB_MAGIC "CLTTABLE"

static void put_str(tool_buf *b, const char *s) { tool_put_str(b, s, strlen(s)); }

/* Layout (little-endian, str = u32 length + bytes): "CLTTABLE" u32 version 1, u32 task, str target, i32 target_col,
 * u32 nsrc, nsrc x (str name, u32 ncat, ncat x str), u32 nf, nf x f64 mean, nf x f64 std, u32 classes,
 * (classify: classes, binary: 2) x str class name, f64 y_mean, f64 y_std, str model origin, u32 epochs_done,
 * u32 nhistory, nhistory x 6 f64. */
static int tab_meta_encode(const tab_meta *m, tool_buf *b)
{
    memset(b, 0, sizeof *b);
    tool_put(b, TAB_MAGIC, 8);
    tool_put_u32(b, 1);
    tool_put_u32(b, (uint32_t)m->task);
    put_str(b, m->target);
    tool_put_u32(b, (uint32_t)m->target_col);
    tool_put_u32(b, (uint32_t)m->nsrc);
    for (int i = 0; i < m->nsrc; i++) {
        put_str(b, m->src[i]);
        tool_put_u32(b, (uint32_t)m->src_ncat[i]);
        for (int k = 0; k < m->src_ncat[i]; k++) put_str(b, m->src_cats[i][k]);
    }
    tool_put_u32(b, (uint32_t)m->nf);
    for (int i = 0; i < m->nf; i++) tool_put_f64(b, m->mean[i]);
    for (int i = 0; i < m->nf; i++) tool_put_f64(b, m->std[i]);
    tool_put_u32(b, (uint32_t)m->classes);
    int names = m->task == TASK_CLASSIFY ? m->classes : m->task == TASK_BINARY ? 2 : 0;
    for (int i = 0; i < names; i++) put_str(b, m->class_names[i]);
    tool_put_f64(b, m->y_mean);
    tool_put_f64(b, m->y_std);
    put_str(b, m->model_origin);
    tool_put_u32(b, (uint32_t)m->epochs_done);
    tool_put_u32(b, (uint32_t)m->nhistory);
    for (int i = 0; i < m->nhistory; i++) {
        const tool_epoch_metrics *e = &m->history[i];
        tool_put_f64(b, e->train_loss);
        tool_put_f64(b, e->train_acc);
        tool_put_f64(b, e->test_loss);
        tool_put_f64(b, e->test_acc);
        tool_put_f64(b, e->seconds);
        tool_put_f64(b, e->images_per_s);
    }
    return b->oom ? -1 : 0;
}

/* Into a fixed field, or a malloc'd string when cap is 0 (returned). */
static char *get_str(tool_rd *r, char *dst, size_t cap)
{
    uint32_t n = tool_get_u32(r);
    if (r->bad || n > r->n - r->at || (cap && n >= cap) || n > 4096 || memchr(r->p + r->at, 0, n)) {
        r->bad = 1;
        if (dst) dst[0] = 0;
        return NULL;
    }
    char *s = dst ? dst : malloc(n + 1);
    if (!s) {
        r->bad = 1;
        return NULL;
    }
    memcpy(s, r->p + r->at, n);
    s[n] = 0;
    r->at += n;
    return s;
}

static int tab_meta_decode(const clt_checkpoint *ck, const char *path, tab_meta *m)
{
    memset(m, 0, sizeof *m);
    size_t len = 0;
    const unsigned char *p = clt_checkpoint_app_meta(ck, &len);
    tool_rd r = {p, len, 0, 0};
    if (len < 12 || memcmp(p, TAB_MAGIC, 8)) return tool_error("checkpoint %s is not a `cltrain table` checkpoint", path);
    r.at = 8;
    if (tool_get_u32(&r) != 1) return tool_error("checkpoint %s: table metadata of an unknown version", path);
    m->task = (int)tool_get_u32(&r);
    get_str(&r, m->target, sizeof m->target);
    m->target_col = (int)tool_get_u32(&r);
    m->nsrc = (int)tool_get_u32(&r);
    if (m->task < 0 || m->task > 2 || m->nsrc < 1 || m->nsrc > TOOL_TABLE_MAX_COLS) r.bad = 1;
    if (!r.bad) {
        m->src = calloc((size_t)m->nsrc, sizeof *m->src);
        m->src_ncat = calloc((size_t)m->nsrc, sizeof *m->src_ncat);
        m->src_cats = calloc((size_t)m->nsrc, sizeof *m->src_cats);
        if (!m->src || !m->src_ncat || !m->src_cats) r.bad = 1;
    }
    for (int i = 0; !r.bad && i < m->nsrc; i++) {
        get_str(&r, m->src[i], sizeof m->src[i]);
        int nc = (int)tool_get_u32(&r);
        if (nc < 0 || nc > TOOL_TABLE_MAX_CATEGORIES || !(m->src_cats[i] = calloc((size_t)nc + 1, sizeof(char *)))) {
            r.bad = 1;
            break;
        }
        for (int k = 0; k < nc && !r.bad; k++) {
            m->src_cats[i][k] = get_str(&r, NULL, 0);
            if (!r.bad) m->src_ncat[i] = k + 1;
        }
    }
    m->nf = (int)tool_get_u32(&r);
    if (!r.bad && (m->nf < 1 || m->nf > TOOL_TABLE_MAX_COLS * 10 || (size_t)m->nf * 16 > r.n - r.at)) r.bad = 1;
    if (!r.bad && (!(m->mean = malloc(sizeof(double) * m->nf)) || !(m->std = malloc(sizeof(double) * m->nf)))) r.bad = 1;
    for (int i = 0; !r.bad && i < m->nf; i++) m->mean[i] = tool_get_f64(&r);
    for (int i = 0; !r.bad && i < m->nf; i++)
        if (!isfinite(m->std[i] = tool_get_f64(&r)) || !(m->std[i] > 0) || !isfinite(m->mean[i])) r.bad = 1;
    m->classes = (int)tool_get_u32(&r);
    int names = m->task == TASK_CLASSIFY ? m->classes : m->task == TASK_BINARY ? 2 : 0;
    if (!r.bad && (m->classes < 1 || m->classes > MAX_CLASSES || names < 0)) r.bad = 1;
    if (!r.bad && names && !(m->class_names = calloc((size_t)names, sizeof *m->class_names))) r.bad = 1;
    for (int i = 0; !r.bad && i < names; i++) get_str(&r, m->class_names[i], sizeof m->class_names[i]);
    m->y_mean = tool_get_f64(&r);
    m->y_std = tool_get_f64(&r);
    get_str(&r, m->model_origin, sizeof m->model_origin);
    m->epochs_done = (int)tool_get_u32(&r);
    m->nhistory = (int)tool_get_u32(&r);
    if (m->nhistory < 0 || m->nhistory > 1024) r.bad = 1;
    for (int i = 0; !r.bad && i < m->nhistory; i++) {
        tool_epoch_metrics *e = &m->history[i];
        e->train_loss = tool_get_f64(&r), e->train_acc = tool_get_f64(&r), e->test_loss = tool_get_f64(&r);
        e->test_acc = tool_get_f64(&r), e->seconds = tool_get_f64(&r), e->images_per_s = tool_get_f64(&r);
    }
    int c, h, w, k;
    clt_checkpoint_input(ck, &c, &h, &w, &k);
    if (r.bad || r.at != r.n || !isfinite(m->y_mean) || !(m->y_std > 0) || c != m->nf || h != 1 || w != 1 ||
        k != m->classes) {
        tab_meta_free(m);
        return tool_error("checkpoint %s: malformed table metadata", path);
    }
    return 0;
}

int tool_table_checkpoint(const char *path)
{
    clt_checkpoint *ck = NULL;
    int is = 0;
    if (clt_checkpoint_open(path, &ck) == 0) {
        size_t len = 0;
        const unsigned char *p = clt_checkpoint_app_meta(ck, &len);
        is = len >= 8 && !memcmp(p, TAB_MAGIC, 8);
    }
    clt_checkpoint_close(ck);
    return is;
}

/* ------------------------------------------------------------------------------------------ data */

/* A table file with its target: CSV (by column name), .npy (target: column index, negative from the end) or .npz
 * (target: the array's name). On return x holds the feature columns only and y the target (1 column). */
static int load_table(const char *path, const char *target, int ncat, const char *const *cats, tool_table *x,
                      tool_table *y, int *target_col, char *err)
{
    size_t l = strlen(path);
    memset(x, 0, sizeof *x);
    memset(y, 0, sizeof *y);
    *target_col = -1;
    if (l > 4 && !strcmp(path + l - 4, ".npz")) {
        if (ncat) return tool_fail(err, CLT_ERR_INVALID, "--categorical applies to CSV files only");
        return tool_read_npz(path, target, x, y, err);
    }
    tool_table t;
    int st, tc;
    int npy = l > 4 && !strcmp(path + l - 4, ".npy");
    if (npy) {
        if (ncat) return tool_fail(err, CLT_ERR_INVALID, "--categorical applies to CSV files only");
        if ((st = tool_read_npy(path, &t, err))) return st;
        char *e;
        long v = strtol(target, &e, 10);
        if (e == target || *e || v >= t.cols || v < -t.cols) {
            tool_table_free(&t);
            return tool_fail(err, CLT_ERR_INVALID, "%s: --target %s: a .npy array's target is a column index (0..%d, or "
                             "negative from the end)", path, target, t.cols - 1);
        }
        tc = (int)(v < 0 ? v + t.cols : v);
        *target_col = tc;
    } else {
        if ((st = tool_read_csv(path, ncat, cats, target, 1, &t, err))) return st;
        tc = tool_table_find(&t, target);
        if (tc < 0) {
            char cols[400] = "";
            for (int c = 0, n = 0; c < t.cols && n < 300; c++) n += snprintf(cols + n, sizeof cols - n, "%s%s", c ? ", " : "", t.names[c]);
            tool_fail(err, CLT_ERR_INVALID, "%s: no column '%s' (--target) in the header (columns: %s%s)", path, target,
                      cols, t.cols > 20 ? ", ..." : "");
            tool_table_free(&t);
            return CLT_ERR_INVALID;
        }
    }
    if (t.cols < 2) {
        tool_table_free(&t);
        return tool_fail(err, CLT_ERR_FORMAT, "%s: only the target column; a table needs feature columns too", path);
    }
    if ((st = tool_table_alloc(x, t.rows, t.cols - 1, err)) || (st = tool_table_alloc(y, t.rows, 1, err))) {
        tool_table_free(&t);
        tool_table_free(x);
        return st;
    }
    for (int c = 0, o = 0; c < t.cols; c++) {
        tool_table *d = c == tc ? y : x;
        int dc = c == tc ? 0 : o++;
        memcpy(d->names[dc], t.names[c], sizeof d->names[dc]);
        d->ncat[dc] = t.ncat[c];
        d->cats[dc] = t.cats[c];
        t.cats[c] = NULL;
        t.ncat[c] = 0;
        for (int r = 0; r < t.rows; r++) d->v[(size_t)r * d->cols + dc] = t.v[(size_t)r * t.cols + c];
    }
    tool_table_free(&t);
    return CLT_OK;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The task and the target encoding from the training targets: class values (sorted) or regression statistics. */
static int setup_target(const tool_table *y, int task_opt, tab_meta *m, double *vals, int *nvals, char *err)
{
    int n = y->rows, cat = y->ncat[0] > 0;
    double *s = malloc(sizeof(double) * (size_t)n + 1);
    if (!s) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    memcpy(s, y->v, sizeof(double) * n);
    qsort(s, (size_t)n, sizeof *s, cmp_dbl);
    int nd = 0, integral = 1;
    for (int i = 0; i < n; i++) {
        if (i == 0 || s[i] != s[i - 1]) {
            if (nd < MAX_CLASSES + 1) vals[nd] = s[i];
            nd++;
        }
        integral &= s[i] == floor(s[i]);
    }
    free(s);
    *nvals = nd < MAX_CLASSES + 1 ? nd : MAX_CLASSES + 1;
    int task = task_opt >= 0 ? task_opt : nd == 2 ? TASK_BINARY : (cat || (integral && nd <= 20)) ? TASK_CLASSIFY
                                                                                                   : TASK_REGRESS;
    m->task = task;
    if (task == TASK_REGRESS) {
        if (cat)
            return tool_fail(err, CLT_ERR_INVALID, "--task regress: the target column '%s' is not numeric", y->names[0]);
        double sum = 0, ss = 0;
        for (int i = 0; i < n; i++) sum += y->v[i];
        m->y_mean = sum / n;
        for (int i = 0; i < n; i++) ss += (y->v[i] - m->y_mean) * (y->v[i] - m->y_mean);
        m->y_std = ss > 0 ? sqrt(ss / n) : 1;
        m->classes = 1;
        return CLT_OK;
    }
    if (task == TASK_BINARY && nd != 2)
        return tool_fail(err, CLT_ERR_INVALID, "--task binary: the target column '%s' has %d distinct values in the "
                         "training rows; a binary task needs exactly 2", y->names[0], nd);
    if (nd < 2 || nd > MAX_CLASSES)
        return tool_fail(err, CLT_ERR_INVALID, "the target column '%s' has %d distinct values in the training rows; "
                         "classification needs 2 to %d (use --task regress for a numeric target)", y->names[0], nd,
                         MAX_CLASSES);
    m->classes = task == TASK_BINARY ? 1 : nd;
    m->y_mean = 0;
    m->y_std = 1;
    m->class_names = calloc((size_t)nd, sizeof *m->class_names);
    if (!m->class_names) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < nd; k++) {
        if (cat) snprintf(m->class_names[k], sizeof m->class_names[k], "%s", y->cats[0][(int)vals[k]]);
        else snprintf(m->class_names[k], sizeof m->class_names[k], "%.10g", vals[k]);
    }
    return CLT_OK;
}

/* Index of a target value among the classes (-1: unseen). */
static int class_of(double v, const double *vals, int nvals)
{
    for (int k = 0; k < nvals; k++)
        if (vals[k] == v) return k;
    return -1;
}

/* The source columns of the training file become the encoding's inputs (one-hot for categorical ones). */
static int setup_features(const tool_table *x, tab_meta *m, char *err)
{
    m->nsrc = x->cols;
    m->src = calloc((size_t)x->cols, sizeof *m->src);
    m->src_ncat = calloc((size_t)x->cols, sizeof *m->src_ncat);
    m->src_cats = calloc((size_t)x->cols, sizeof *m->src_cats);
    if (!m->src || !m->src_ncat || !m->src_cats) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    long long nf = 0;
    for (int c = 0; c < x->cols; c++) {
        memcpy(m->src[c], x->names[c], sizeof m->src[c]);
        int nc = x->ncat[c];
        m->src_ncat[c] = nc;
        if (nc) {
            m->src_cats[c] = calloc((size_t)nc, sizeof(char *));
            if (!m->src_cats[c]) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
            for (int k = 0; k < nc; k++)
                if (!(m->src_cats[c][k] = strdup(x->cats[c][k]))) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
        }
        nf += nc ? nc : 1;
    }
    if (nf > TOOL_TABLE_MAX_COLS) return tool_fail(err, CLT_ERR_INVALID, "%lld inputs after one-hot encoding (at most %d)", nf, TOOL_TABLE_MAX_COLS);
    m->nf = (int)nf;
    m->mean = calloc((size_t)nf, sizeof *m->mean);
    m->std = calloc((size_t)nf, sizeof *m->std);
    if (!m->mean || !m->std) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    return CLT_OK;
}

/* Row r of a table with the training file's columns (src_map[i]: the table's column for source column i; a
 * categorical value is mapped through its category name) -> nf raw inputs. */
static int encode_row(const tab_meta *m, const tool_table *x, const int *src_map, int r, double *out, const char *path,
                      char *err)
{
    int o = 0;
    for (int i = 0; i < m->nsrc; i++) {
        double v = x->v[(size_t)r * x->cols + src_map[i]];
        if (!m->src_ncat[i]) {
            out[o++] = v;
            continue;
        }
        const char *name = x->ncat[src_map[i]] ? x->cats[src_map[i]][(int)v] : NULL;
        char num[64];
        if (!name) {
            snprintf(num, sizeof num, "%.17g", v);
            name = num;
        }
        int hit = -1;
        for (int k = 0; k < m->src_ncat[i] && hit < 0; k++)
            if (!strcmp(m->src_cats[i][k], name)) hit = k;
        if (hit < 0)
            return tool_fail(err, CLT_ERR_FORMAT, "%s: row %d, column '%s': value '%s' was not among the categories "
                             "seen in training", path, r + 1, m->src[i], name);
        for (int k = 0; k < m->src_ncat[i]; k++) out[o++] = k == hit;
    }
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ metrics */

typedef struct scores {
    double loss, acc, auc, best_thr, best_acc, mse, mae, r2;
} scores;

/* ROC AUC by ranks (ties share their mean rank), Mann-Whitney. */
static double roc_auc(const double *p, const float *y, int n)
{
    /* (probability, row) pairs sorted by probability give the ranks. */
    double *pair = malloc(sizeof(double) * 2 * (size_t)n);
    if (!pair) return NAN;
    for (int i = 0; i < n; i++) pair[2 * i] = p[i], pair[2 * i + 1] = i;
    qsort(pair, (size_t)n, 2 * sizeof(double), cmp_dbl);
    double rank_pos = 0;
    long long npos = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && pair[2 * j] == pair[2 * i]) j++;
        double r = (i + 1 + j) / 2.0;
        for (int k = i; k < j; k++)
            if (y[(int)pair[2 * k + 1]] > 0.5) rank_pos += r, npos++;
        i = j;
    }
    free(pair);
    long long nneg = n - npos;
    if (!npos || !nneg) return NAN;
    return (rank_pos - npos * (npos + 1) / 2.0) / ((double)npos * nneg);
}

/* The scores of outputs `out` (n x k) against targets y (encoded as for training). */
static void score(const tab_meta *m, const float *out, const float *y, int n, scores *s, int64_t *confusion,
                  int *scratch)
{
    memset(s, 0, sizeof *s);
    int k = m->classes;
    if (m->task == TASK_CLASSIFY) {
        int64_t correct = 0;
        for (int r = 0; r < n; r++) {
            const float *l = out + (size_t)r * k;
            int best = 0;
            for (int j = 1; j < k; j++)
                if (l[j] > l[best]) best = j;
            double se = 0;
            for (int j = 0; j < k; j++) se += exp((double)l[j] - l[best]);
            int t = (int)y[r];
            s->loss += log(se) + l[best] - l[t];
            correct += best == t;
            if (confusion) confusion[t * k + best]++;
        }
        s->loss /= n;
        s->acc = (double)correct / n;
    } else if (m->task == TASK_BINARY) {
        double *p = malloc(sizeof(double) * (size_t)n + 1);
        int64_t correct = 0;
        for (int r = 0; r < n; r++) {
            double z = out[r];
            /* log(1 + e^z) - y z, stable */
            s->loss += (z > 0 ? z + log1p(exp(-z)) : log1p(exp(z))) - y[r] * z;
            double pr = 1 / (1 + exp(-z));
            if (p) p[r] = pr;
            correct += (pr >= 0.5) == (y[r] > 0.5);
            if (confusion) confusion[(y[r] > 0.5) * 2 + (pr >= 0.5)]++;
        }
        s->loss /= n;
        s->acc = (double)correct / n;
        s->auc = p ? roc_auc(p, y, n) : NAN;
        (void)scratch;
        /* The threshold with the highest accuracy on these rows (midpoints between sorted probabilities). */
        s->best_thr = 0.5;
        s->best_acc = s->acc;
        if (p) {
            double *q = malloc(sizeof(double) * 2 * (size_t)n + 1);
            if (q) {
                for (int i = 0; i < n; i++) q[2 * i] = p[i], q[2 * i + 1] = y[i];
                qsort(q, (size_t)n, 2 * sizeof(double), cmp_dbl);
                long long pos_above = 0, neg_below = 0;
                for (int i = 0; i < n; i++) pos_above += q[2 * i + 1] > 0.5;
                for (int i = 0; i < n; i++) {
                    /* threshold just above q[i]: rows 0..i predicted negative */
                    if (q[2 * i + 1] > 0.5) pos_above--;
                    else neg_below++;
                    if (i + 1 < n && q[2 * (i + 1)] == q[2 * i]) continue;
                    double acc = (double)(pos_above + neg_below) / n;
                    if (acc > s->best_acc) {
                        s->best_acc = acc;
                        s->best_thr = i + 1 < n ? (q[2 * i] + q[2 * (i + 1)]) / 2 : q[2 * i] + 1e-6;
                    }
                }
                free(q);
            }
        }
        free(p);
    } else {
        double sy = 0, ss = 0;
        for (int r = 0; r < n; r++) sy += y[r];
        double my = sy / n;
        for (int r = 0; r < n; r++) {
            double d = (double)out[r] - y[r];
            s->loss += d * d;
            s->mae += fabs(d);
            ss += (y[r] - my) * (y[r] - my);
        }
        s->loss /= n;
        /* In the target's units. */
        s->mse = s->loss * m->y_std * m->y_std;
        s->mae = s->mae / n * m->y_std;
        s->r2 = ss > 0 ? 1 - s->loss * n / ss : NAN;
        s->acc = s->r2;
    }
}

/* ------------------------------------------------------------------------------------------ graphs */

typedef struct tnet {
    clt_graph *g;
    clt_tensor *x, *y, *out, *loss;
    int batch;
} tnet;

static void tnet_free(tnet *n)
{
    clt_graph_destroy(n->g);
    memset(n, 0, sizeof *n);
}

/* x (B,F,1,1) -> model -> out (B,K); the loss: softmax cross-entropy on class indices (B), binary cross-entropy
 * on logits or mean squared error against targets (B,1). */
static int tnet_build(clt_context *ctx, const clt_model *model, const tab_meta *m, int batch,
                      const clt_compile_settings *cs, tnet *n)
{
    memset(n, 0, sizeof *n);
    n->batch = batch;
    int xs[4] = {batch, m->nf, 1, 1}, ys1[1] = {batch}, ys2[2] = {batch, 1};
    if (clt_graph_create(ctx, &n->g) < 0 || clt_input(n->g, "x", 4, xs, &n->x) < 0)
        return tool_error("creating the graph: %s", clt_errmsg(ctx));
    if (clt_model_build(n->g, model, n->x, m->classes, &n->out) < 0)
        return tool_error("building model '%s': %s", clt_model_name(model), clt_errmsg(ctx));
    if (clt_graph_keep(n->g, n->out, 0) < 0) return tool_error("%s", clt_errmsg(ctx));
    int st = m->task == TASK_CLASSIFY ? clt_input(n->g, "labels", 1, ys1, &n->y) : clt_input(n->g, "targets", 2, ys2, &n->y);
    if (st >= 0)
        st = m->task == TASK_CLASSIFY ? clt_softmax_cross_entropy(n->g, n->out, n->y, 0, &n->loss)
             : m->task == TASK_BINARY ? clt_bce_with_logits(n->g, n->out, n->y, &n->loss)
                                      : clt_mse(n->g, n->out, n->y, &n->loss);
    if (st < 0) return tool_error("adding the loss: %s", clt_errmsg(ctx));
    if (clt_graph_compile(n->g, cs) < 0) return tool_error("compiling the graph (batch %d): %s", batch, clt_errmsg(ctx));
    return 0;
}

/* Every state tensor (and optimizer slots) from one graph to another of the same model, through buf. */
static int move_state(clt_graph *src, clt_graph *dst, float *buf)
{
    for (int i = 0; i < clt_graph_state_count(src); i++) {
        int tr;
        clt_tensor *a = clt_graph_state_tensor(src, i, &tr), *b = clt_graph_state_tensor(dst, i, NULL);
        size_t cnt = clt_tensor_numel(a);
        if (clt_tensor_read(src, a, 0, buf, cnt) < 0 || clt_tensor_write(dst, b, buf, cnt) < 0)
            return tool_error("copying state: %s", clt_errmsg(clt_graph_context(src)));
        for (int s = 0; tr && s < 2; s++)
            if (clt_tensor_read_slot(src, a, s, buf, cnt) < 0 || clt_tensor_write_slot(dst, b, s, buf, cnt) < 0)
                return tool_error("copying optimizer state: %s", clt_errmsg(clt_graph_context(src)));
    }
    uint64_t steps, passes;
    clt_graph_get_counters(src, &steps, &passes);
    clt_graph_set_counters(dst, steps, passes);
    return 0;
}

/* ------------------------------------------------------------------------------------------ options */

typedef struct topts {
    const char *data, *test, *target, *model, *checkpoint, *log, *plot, *device;
    const char *categorical[MAX_CATEGORICAL];
    int ncat, task, epochs, batch, optimizer, early_stop, tune, overwrite, verbose;
    float lr, momentum, weight_decay, validation_split;
    long long seed;
} topts;

static const char *const usage_table =
    "usage: cltrain table --data FILE.csv|FILE.npy|FILE.npz --target COLUMN [options]\n"
    "\n"
    "Trains a network on a table: one row per sample, the --target column is what to predict.\n"
    "\n"
    "data:\n"
    "  --data FILE            CSV with a header row of column names (numeric cells; see --categorical), a\n"
    "                         NumPy .npy 2-D array (float32/float64/integers, C order) or an .npz of two arrays\n"
    "  --target COLUMN        CSV: the column's name; .npy: its index (negative from the end); .npz: the name\n"
    "                         of the target array (the other array holds the features)\n"
    "  --categorical COLUMN   one-hot encode this CSV column (its distinct texts); repeatable. A target column\n"
    "                         that is not numeric holds class names\n"
    "  --task NAME            classify (softmax cross-entropy), binary (one output, sigmoid + binary\n"
    "                         cross-entropy) or regress (mean squared error). Default: binary for 2 distinct\n"
    "                         target values, classify for text or up to 20 distinct whole numbers, else regress\n"
    "  --validation-split F   hold out the last fraction F of the rows (Keras: before shuffling) to evaluate\n"
    "                         on after every epoch\n"
    "  --test FILE            evaluate on this table instead (the same columns)\n"
    "model and optimization:\n"
    "  --model NAME|FILE      seed-binary (dense64-relu-dense32-relu-dense1, Adam 1e-3, batch 32; default for\n"
    "                         binary and regress), seed-mlp (dense128-relu-dense, SGD lr 0.01, batch 32;\n"
    "                         default for classify) or any model file ending in `dense classes`\n"
    "  --epochs N             total epochs (default: the model's, else 10)\n"
    "  --batch N              batch size (default: the model's, else 32)\n"
    "  --optimizer NAME       sgd, adam or adamw (default: the model's)\n"
    "  --lr X                 learning rate (default: the model's)\n"
    "  --momentum X           sgd momentum (default: the model's, else 0)\n"
    "  --weight-decay X       weight decay (default: the model's, else 0)\n"
    "  --seed N               seed of initialization and shuffling (default 1)\n"
    "  --early-stop N         stop when the evaluation loss has not improved for N epochs and restore the\n"
    "                         best epoch's weights\n"
    "run:\n"
    "  --checkpoint FILE      save the network with the column encoding, standardization statistics and\n"
    "                         classes after every epoch (for `cltrain predict`)\n"
    "  --overwrite            replace an existing checkpoint\n"
    "  --log FILE             write one JSON object per epoch\n"
    "  --plot FILE.svg        write the learning curves (loss and accuracy or R^2) as SVG\n"
    "  --device SPEC          OpenCL device (see cltrain devices)\n"
    "  --tune MODE            kernel tuning: off, cached, quick (default), full\n"
    "  --verbose              more detail\n"
    "\n"
    "Inputs are standardized with the training rows' mean and standard deviation (a regression target too;\n"
    "metrics are in the target's units). Reports: classify: loss, accuracy, per-class metrics; binary: also ROC\n"
    "AUC and the decision threshold; regress: MSE, MAE and R^2. The last line is\n"
    "  final: epochs=N test_acc=A test_loss=L train_images_per_s=R seconds=S   (regress: test_acc is R^2)\n";

static int parse_num(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *e;
    errno = 0;
    double d = strtod(v, &e);
    if (errno || e == v || *e || !isfinite(d) || d < lo || d > hi) {
        fprintf(stderr, "cltrain table: %s: '%s' is not a number in [%g, %g]\nTry 'cltrain table --help'.\n", opt, v,
                lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_opts(int argc, char **argv, topts *o)
{
    memset(o, 0, sizeof *o);
    o->task = o->epochs = o->batch = o->optimizer = o->early_stop = o->tune = -1;
    o->lr = o->momentum = o->weight_decay = o->validation_split = NAN;
    o->seed = -1;
    static const char *const tunes[4] = {"off", "cached", "quick", "full"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
#define VAL()                                                                                                         \
    do {                                                                                                              \
        if (!v) {                                                                                                     \
            fprintf(stderr, "cltrain table: option %s needs a value\nTry 'cltrain table --help'.\n", a);              \
            return 2;                                                                                                 \
        }                                                                                                             \
        i++;                                                                                                          \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_table, stdout);
            return 1;
        }
        if (!strcmp(a, "--data")) { VAL(); o->data = v; }
        else if (!strcmp(a, "--test")) { VAL(); o->test = v; }
        else if (!strcmp(a, "--target")) { VAL(); o->target = v; }
        else if (!strcmp(a, "--model")) { VAL(); o->model = v; }
        else if (!strcmp(a, "--checkpoint")) { VAL(); o->checkpoint = v; }
        else if (!strcmp(a, "--log")) { VAL(); o->log = v; }
        else if (!strcmp(a, "--plot")) { VAL(); o->plot = v; }
        else if (!strcmp(a, "--device")) { VAL(); o->device = v; }
        else if (!strcmp(a, "--overwrite")) o->overwrite = 1;
        else if (!strcmp(a, "--verbose")) o->verbose = 1;
        else if (!strcmp(a, "--categorical")) {
            VAL();
            if (o->ncat == MAX_CATEGORICAL) return fprintf(stderr, "cltrain table: at most %d --categorical\n", MAX_CATEGORICAL), 2;
            o->categorical[o->ncat++] = v;
        } else if (!strcmp(a, "--task") || !strcmp(a, "--optimizer") || !strcmp(a, "--tune")) {
            VAL();
            const char *const *names = a[2] == 't' && a[3] == 'a' ? task_names : a[2] == 'o' ? cli_optimizer_names : tunes;
            int n = names == tunes ? 4 : 3, hit = -1;
            for (int k = 0; k < n; k++)
                if (!strcmp(v, names[k])) hit = k;
            if (hit < 0) return fprintf(stderr, "cltrain table: %s: unknown value '%s'\nTry 'cltrain table --help'.\n", a, v), 2;
            *(names == task_names ? &o->task : names == tunes ? &o->tune : &o->optimizer) = hit;
        } else if (!strcmp(a, "--epochs") || !strcmp(a, "--batch") || !strcmp(a, "--early-stop") || !strcmp(a, "--seed")) {
            VAL();
            if (parse_num(a, v, a[2] == 's' ? 0 : 1, a[2] == 's' ? 1e15 : a[2] == 'b' ? 65536 : 1024, &d) || d != floor(d))
                return 2;
            if (a[2] == 'e' && a[3] == 'p') o->epochs = (int)d;
            else if (a[2] == 'b') o->batch = (int)d;
            else if (a[2] == 'e') o->early_stop = (int)d;
            else o->seed = (long long)d;
        } else if (!strcmp(a, "--lr") || !strcmp(a, "--momentum") || !strcmp(a, "--weight-decay") ||
                   !strcmp(a, "--validation-split")) {
            VAL();
            if (parse_num(a, v, a[2] == 'l' ? 1e-12 : 0, a[2] == 'l' ? 100 : 1, &d)) return 2;
            if (a[2] == 'l') o->lr = (float)d;
            else if (a[2] == 'm') o->momentum = (float)d;
            else if (a[2] == 'w') o->weight_decay = (float)d;
            else if (!(d > 0 && d < 1)) return fprintf(stderr, "cltrain table: --validation-split: give a fraction above 0 and below 1\n"), 2;
            else o->validation_split = (float)d;
        } else if (!strcmp(a, "--resume")) {
            return fprintf(stderr, "cltrain table: --resume is not supported for tables (training a table is quick: "
                           "start again)\n"), 2;
        } else if (a[0] == '-') {
            return fprintf(stderr, "cltrain table: unknown option '%s'\nTry 'cltrain table --help'.\n", a), 2;
        } else {
            return fprintf(stderr, "cltrain table: unexpected argument '%s'\nTry 'cltrain table --help'.\n", a), 2;
        }
#undef VAL
    }
    if (!o->data || !o->target)
        return fprintf(stderr, "cltrain table: --data FILE and --target COLUMN are required\nTry 'cltrain table "
                       "--help'.\n"), 2;
    if (o->early_stop > 0 && !o->test && isnan(o->validation_split))
        return fprintf(stderr, "cltrain table: --early-stop watches the evaluation loss: give --validation-split F or "
                       "--test FILE\n"), 2;
    if (o->test && !isnan(o->validation_split))
        return fprintf(stderr, "cltrain table: --test and --validation-split contradict each other (give one)\n"), 2;
    return 0;
}

/* ------------------------------------------------------------------------------------------ encoding rows */

/* Column of `x` for each source column of the encoding (by name), or an error naming the missing one. */
static int map_columns(const tab_meta *m, const tool_table *x, const char *path, int *map, char *err)
{
    for (int i = 0; i < m->nsrc; i++) {
        map[i] = tool_table_find(x, m->src[i]);
        if (map[i] < 0)
            return tool_fail(err, CLT_ERR_FORMAT, "%s: no column '%s' (the network was trained with it)", path, m->src[i]);
    }
    return CLT_OK;
}

/* Raw inputs of every row of x (n x nf doubles). */
static int encode_rows(const tab_meta *m, const tool_table *x, const char *path, double **out, char *err)
{
    int *map = malloc(sizeof(int) * (size_t)m->nsrc);
    *out = malloc(sizeof(double) * (size_t)x->rows * m->nf + 1);
    int st = !map || !*out ? tool_fail(err, CLT_ERR_NOMEM, "out of memory") : map_columns(m, x, path, map, err);
    for (int r = 0; !st && r < x->rows; r++) st = encode_row(m, x, map, r, *out + (size_t)r * m->nf, path, err);
    free(map);
    if (st) {
        free(*out);
        *out = NULL;
    }
    return st;
}

/* Targets of rows [lo, hi) of y in the training encoding. */
static int encode_targets(const tab_meta *m, const tool_table *y, int lo, int hi, const double *vals, int nvals,
                          const tool_table *ytrain, float *out, const char *path, char *err)
{
    for (int r = lo; r < hi; r++) {
        double v = y->v[r];
        if (m->task == TASK_REGRESS) {
            out[r - lo] = (float)((v - m->y_mean) / m->y_std);
            continue;
        }
        /* Category indices of another file are mapped through their text. */
        if (y != ytrain && y->ncat[0]) {
            const char *name = y->cats[0][(int)v];
            int k = -1;
            for (int j = 0; j < nvals && k < 0; j++)
                if (!strcmp(m->class_names[j], name)) k = j;
            if (k < 0) return tool_fail(err, CLT_ERR_FORMAT, "%s: row %d: target '%s' is not one of the training classes", path, r + 1, name);
            out[r - lo] = (float)k;
            continue;
        }
        int k = class_of(v, vals, nvals);
        if (k < 0)
            return tool_fail(err, CLT_ERR_FORMAT, "%s: row %d: target %g is not one of the training classes", path, r + 1, v);
        out[r - lo] = (float)k;
    }
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ train */

typedef struct tset {
    int n;
    float *x, *y;
} tset;

static int save_ckpt(const char *path, clt_graph *g, const tab_meta *m)
{
    tool_buf b;
    if (tab_meta_encode(m, &b)) {
        free(b.p);
        return tool_error("out of memory");
    }
    int st = clt_graph_save(g, path, b.p, b.n);
    free(b.p);
    if (st < 0) return tool_error("saving the checkpoint: %s", clt_errmsg(clt_graph_context(g)));
    return 0;
}

/* One pass over s with evaluation passes (the graph's batch, padded at the end). */
static int evaluate_set(tnet *n, const tab_meta *m, const tset *s, float *outbuf, scores *sc, int64_t *confusion,
                        int *scratch)
{
    float *zero = calloc((size_t)n->batch, sizeof(float));
    int st = zero ? clt_tensor_write(n->g, n->y, zero, (size_t)n->batch) : -1;
    free(zero);
    if (st >= 0) st = clt_predict(n->g, s->x, (size_t)s->n, outbuf);
    if (st < 0) return tool_error("evaluation: %s", clt_errmsg(clt_graph_context(n->g)));
    score(m, outbuf, s->y, s->n, sc, confusion, scratch);
    return 0;
}

static void print_scores(const char *what, const tab_meta *m, const scores *s)
{
    if (m->task == TASK_REGRESS)
        printf("%s: mse %.6g, mae %.6g, r2 %.4f (loss %.4f on the standardized target)\n", what, s->mse, s->mae, s->r2,
               s->loss);
    else if (m->task == TASK_BINARY)
        printf("%s: loss %.4f, accuracy %.4f at threshold 0.5, ROC AUC %.4f; the threshold %.4f would give accuracy "
               "%.4f on these rows\n", what, s->loss, s->acc, s->auc, s->best_thr, s->best_acc);
    else
        printf("%s: loss %.4f, accuracy %.4f\n", what, s->loss, s->acc);
}

/* Data of a run: tables, the encoding, standardized training and evaluation sets. */
typedef struct tdata {
    tool_table x, y, xt, yt;
    tab_meta m;
    tset tr, ev;
    double vals[MAX_CLASSES + 1];
    int nvals;
} tdata;

static void tdata_free(tdata *d)
{
    tool_table_free(&d->x);
    tool_table_free(&d->y);
    tool_table_free(&d->xt);
    tool_table_free(&d->yt);
    tab_meta_free(&d->m);
    free(d->tr.x);
    free(d->tr.y);
    free(d->ev.x);
    free(d->ev.y);
}

/* Standardized float copies of rows [lo, hi) of raw inputs. */
static int standardize(const tab_meta *m, const double *raw, int lo, int hi, float **out)
{
    *out = malloc(sizeof(float) * (size_t)(hi - lo) * m->nf + 1);
    if (!*out) return -1;
    for (int r = lo; r < hi; r++)
        for (int j = 0; j < m->nf; j++)
            (*out)[(size_t)(r - lo) * m->nf + j] = (float)((raw[(size_t)r * m->nf + j] - m->mean[j]) / m->std[j]);
    return 0;
}

static int prepare(const topts *o, tdata *d, char *err)
{
    int st = load_table(o->data, o->target, o->ncat, o->categorical, &d->x, &d->y, &d->m.target_col, err);
    if (st) return st;
    int n = d->x.rows, ntrain = n, dummy;
    if (!isnan(o->validation_split)) {
        int nval = (int)(o->validation_split * n);
        ntrain = n - nval;
        if (nval < 1 || ntrain < 2)
            return tool_fail(err, CLT_ERR_INVALID, "--validation-split %g of %d rows leaves %d for validation and %d for "
                             "training", o->validation_split, n, nval, ntrain);
    }
    if (o->test && (st = load_table(o->test, o->target, o->ncat, o->categorical, &d->xt, &d->yt, &dummy, err))) return st;
    tab_meta *m = &d->m;
    snprintf(m->target, sizeof m->target, "%s", d->y.names[0]);
    int rows = d->y.rows;
    d->y.rows = ntrain; /* the encoding comes from the training rows only */
    st = setup_target(&d->y, o->task, m, d->vals, &d->nvals, err);
    d->y.rows = rows;
    if (st || (st = setup_features(&d->x, m, err))) return st;
    double *raw = NULL, *rawt = NULL;
    if ((st = encode_rows(m, &d->x, o->data, &raw, err))) return st;
    if (o->test && (st = encode_rows(m, &d->xt, o->test, &rawt, err))) {
        free(raw);
        return st;
    }
    for (int j = 0; j < m->nf; j++) {
        double s = 0, ss = 0;
        for (int r = 0; r < ntrain; r++) s += raw[(size_t)r * m->nf + j];
        double mean = s / ntrain;
        for (int r = 0; r < ntrain; r++) ss += (raw[(size_t)r * m->nf + j] - mean) * (raw[(size_t)r * m->nf + j] - mean);
        m->mean[j] = mean;
        m->std[j] = ss / ntrain > 1e-12 ? sqrt(ss / ntrain) : 1;
    }
    d->tr.n = ntrain;
    d->ev.n = o->test ? d->xt.rows : n - ntrain;
    d->tr.y = malloc(sizeof(float) * (size_t)d->tr.n + 1);
    d->ev.y = malloc(sizeof(float) * (size_t)d->ev.n + 1);
    if (!d->tr.y || !d->ev.y || standardize(m, raw, 0, ntrain, &d->tr.x) ||
        (o->test ? standardize(m, rawt, 0, d->xt.rows, &d->ev.x) : standardize(m, raw, ntrain, n, &d->ev.x)))
        st = tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    free(raw);
    free(rawt);
    if (!st) st = encode_targets(m, &d->y, 0, ntrain, d->vals, d->nvals, &d->y, d->tr.y, o->data, err);
    if (!st && o->test) st = encode_targets(m, &d->yt, 0, d->xt.rows, d->vals, d->nvals, &d->y, d->ev.y, o->test, err);
    else if (!st) st = encode_targets(m, &d->y, ntrain, n, d->vals, d->nvals, &d->y, d->ev.y, o->data, err);
    return st;
}

/* Optimizer settings from the options and the model's `train` line. */
static void run_settings(const topts *o, clt_model *model, int ntrain, clt_compile_settings *cs, int *batch, int *epochs)
{
    clt_model_train_defaults md;
    clt_model_get_train_defaults(model, &md);
    clt_compile_default_settings(cs);
    cs->seed = o->seed >= 0 ? (uint64_t)o->seed : 1;
    int opt = o->optimizer >= 0 ? o->optimizer : md.optimizer >= 0 ? md.optimizer : CLT_OPT_ADAM;
    clt_optimizer_default_settings(&cs->optimizer, opt);
    cs->optimizer.lr = !isnan(o->lr) ? o->lr : md.lr > 0 ? md.lr : opt == CLT_OPT_SGD ? 0.01f : 0.001f;
    if (opt == CLT_OPT_SGD) cs->optimizer.momentum = !isnan(o->momentum) ? o->momentum : md.momentum >= 0 ? md.momentum : 0;
    cs->optimizer.weight_decay = !isnan(o->weight_decay) ? o->weight_decay : md.weight_decay >= 0 ? md.weight_decay : 0;
    cs->training = 1;
    *batch = o->batch > 0 ? o->batch : md.batch > 0 ? md.batch : 32;
    if (*batch > ntrain) *batch = ntrain;
    *epochs = o->epochs > 0 ? o->epochs : md.epochs > 0 ? md.epochs : 10;
}

typedef struct trun {
    clt_context *ctx;
    clt_model *model;
    tnet tr, tail;
    float *xb, *yb, *out, *evout, *statebuf, *best;
    int *order, *scratch;
    int64_t *confusion;
} trun;

static void trun_free(trun *r)
{
    tnet_free(&r->tr);
    tnet_free(&r->tail);
    clt_context_destroy(r->ctx);
    clt_model_destroy(r->model);
    free(r->xb), free(r->yb), free(r->out), free(r->evout), free(r->statebuf), free(r->best);
    free(r->order), free(r->scratch), free(r->confusion);
}

/* Host copy of every state tensor with its slots (restore = 0: take, 1: put back). */
static int best_state(clt_graph *g, float *p, int restore)
{
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        int tr;
        clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
        size_t cnt = clt_tensor_numel(t);
        int st = restore ? clt_tensor_write(g, t, p, cnt) : clt_tensor_read(g, t, 0, p, cnt);
        for (int s = 0; tr && s < 2 && st >= 0; s++)
            st = restore ? clt_tensor_write_slot(g, t, s, p + (s + 1) * cnt, cnt)
                         : clt_tensor_read_slot(g, t, s, p + (s + 1) * cnt, cnt);
        if (st < 0) return tool_error("keeping the best weights: %s", clt_errmsg(clt_graph_context(g)));
        p += 3 * cnt;
    }
    return 0;
}

/* One training epoch in shuffled order; the last partial batch runs on the tail graph. */
static int train_epoch(trun *r, const tab_meta *m, const tset *s, int B, float lr, uint64_t *rng, double *loss_out,
                       double *acc_out)
{
    int n = s->n, nfull = n / B, rem = n % B;
    for (int i = 0; i < n; i++) r->order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)((tool_splitmix64(rng) >> 33) % (uint64_t)(i + 1)), t = r->order[i];
        r->order[i] = r->order[j];
        r->order[j] = t;
    }
    double loss_sum = 0, acc_sum = 0;
    int seen = 0, steps = nfull + (rem >= 2);
    for (int j = 0; j < steps; j++) {
        tnet *nt = j < nfull ? &r->tr : &r->tail;
        int b = nt->batch;
        for (int k = 0; k < b; k++) {
            int idx = r->order[j * B + k];
            memcpy(r->xb + (size_t)k * m->nf, s->x + (size_t)idx * m->nf, sizeof(float) * m->nf);
            r->yb[k] = s->y[idx];
        }
        float loss = 0;
        int st = nt == &r->tail ? move_state(r->tr.g, r->tail.g, r->statebuf) ? -1 : 0 : 0;
        if (st >= 0) st = clt_tensor_write(nt->g, nt->x, r->xb, (size_t)b * m->nf);
        if (st >= 0) st = clt_tensor_write(nt->g, nt->y, r->yb, (size_t)b);
        if (st >= 0) st = clt_graph_forward(nt->g, 1);
        if (st >= 0) st = clt_graph_backward(nt->g, nt->loss);
        if (st >= 0) st = clt_graph_step(nt->g, lr);
        if (st >= 0) st = clt_tensor_read(nt->g, nt->loss, 0, &loss, 1);
        if (st >= 0) st = clt_tensor_read(nt->g, nt->out, 0, r->out, (size_t)b * m->classes);
        if (st >= 0 && nt == &r->tail) st = move_state(r->tail.g, r->tr.g, r->statebuf) ? -1 : 0;
        if (st < 0) return tool_error("training step: %s", clt_errmsg(r->ctx));
        if (!isfinite(loss)) return tool_error("the loss became %g: training diverged (try a lower --lr)", loss);
        scores sc;
        score(m, r->out, r->yb, b, &sc, NULL, r->scratch);
        loss_sum += (double)loss * b;
        acc_sum += sc.acc * b;
        seen += b;
    }
    *loss_out = loss_sum / seen;
    *acc_out = m->task == TASK_REGRESS ? 1 - *loss_out : acc_sum / seen;
    return 0;
}

static size_t state_floats(clt_graph *g, size_t *max1)
{
    size_t all = 0;
    *max1 = 1;
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        size_t c = clt_tensor_numel(clt_graph_state_tensor(g, i, NULL));
        all += 3 * c;
        if (c > *max1) *max1 = c;
    }
    return all;
}

static void print_final_report(const tab_meta *m, const scores *s, const int64_t *confusion, int has_eval)
{
    if (!has_eval) return;
    if (m->task == TASK_CLASSIFY && m->classes <= 10) {
        char names[10][32];
        for (int k = 0; k < m->classes; k++) snprintf(names[k], sizeof names[k], "%.31s", m->class_names[k]);
        cli_print_class_report(stdout, confusion, m->classes, (const char(*)[32])names);
    } else if (m->task == TASK_BINARY) {
        printf("confusion at threshold 0.5 (rows: true, columns: predicted; positive class '%s'):\n", m->class_names[1]);
        printf("  %-12.12s %8s %8s\n", "", m->class_names[0], m->class_names[1]);
        for (int t = 0; t < 2; t++)
            printf("  %-12.12s %8lld %8lld\n", m->class_names[t], (long long)confusion[t * 2], (long long)confusion[t * 2 + 1]);
    }
    (void)s;
}

int tool_cmd_table(int argc, char **argv)
{
    topts o;
    int pr = parse_opts(argc, argv, &o);
    if (pr) return pr == 1 ? 0 : pr;
    char err[TOOL_ERR_LEN] = "";
    tdata d;
    trun r;
    memset(&d, 0, sizeof d);
    memset(&r, 0, sizeof r);
    int rc = 1;
    const char *outs[3] = {o.checkpoint, o.log, o.plot}, *what[3] = {"--checkpoint", "--log", "--plot"};
    for (int i = 0; i < 3; i++)
        if (outs[i] && cli_check_output(what[i], outs[i], i == 0, err) < 0) return tool_error("%s", err);
    struct stat sst;
    if (o.checkpoint && stat(o.checkpoint, &sst) == 0 && !o.overwrite)
        return tool_error("checkpoint %s already exists: add --overwrite to replace it", o.checkpoint);
    if (prepare(&o, &d, err)) {
        tool_error("%s", err);
        goto out;
    }
    tab_meta *m = &d.m;
    const char *mname = o.model ? o.model : m->task == TASK_CLASSIFY ? "seed-mlp" : "seed-binary";
    if (tool_check_model_path(mname, err) < 0) {
        tool_error("%s", err);
        goto out;
    }
    if (clt_model_load(mname, &r.model) < 0) {
        tool_error("%s", clt_model_errmsg(r.model));
        goto out;
    }
    snprintf(m->model_origin, sizeof m->model_origin, "%s", mname);
    clt_model_info mi = {0};
    if (clt_model_check(r.model, m->nf, 1, 1, m->classes, &mi, NULL, 0) < 0) {
        tool_error("model %s does not fit %d inputs and %d outputs: %s", mname, m->nf, m->classes, clt_model_errmsg(r.model));
        goto out;
    }
    clt_compile_settings cs;
    int B, epochs;
    run_settings(&o, r.model, d.tr.n, &cs, &B, &epochs);
    int rem = d.tr.n % B;
    clt_context_settings ctxs;
    clt_context_default_settings(&ctxs);
    ctxs.device = o.device;
    if (o.tune >= 0) ctxs.tune = o.tune;
    ctxs.verbose = o.verbose;
    if (clt_context_create(&ctxs, &r.ctx) < 0) {
        tool_error("cannot open the OpenCL device: %s", clt_errmsg(r.ctx));
        goto out;
    }
    if (tnet_build(r.ctx, r.model, m, B, &cs, &r.tr) || (rem >= 2 && tnet_build(r.ctx, r.model, m, rem, &cs, &r.tail)))
        goto out;
    size_t max1, all = state_floats(r.tr.g, &max1);
    int nev = d.ev.n > 0 ? d.ev.n : 1;
    r.xb = malloc(sizeof(float) * (size_t)B * m->nf);
    r.yb = malloc(sizeof(float) * (size_t)B);
    r.out = malloc(sizeof(float) * (size_t)B * m->classes);
    r.evout = malloc(sizeof(float) * (size_t)nev * m->classes);
    r.statebuf = malloc(sizeof(float) * max1);
    r.best = malloc(sizeof(float) * all + 1);
    r.order = malloc(sizeof(int) * (size_t)d.tr.n);
    r.scratch = malloc(sizeof(int) * (size_t)(nev > B ? nev : B));
    r.confusion = calloc((size_t)m->classes * m->classes + 4, sizeof(int64_t));
    if (!r.xb || !r.yb || !r.out || !r.evout || !r.statebuf || !r.best || !r.order || !r.scratch || !r.confusion) {
        tool_error("out of host memory");
        goto out;
    }
    clt_device_info di;
    clt_context_device_info(r.ctx, &di);
    printf("cltrain %s: table %s, target '%s', task %s, model %s\n", CLT_VERSION_STRING, o.data, m->target,
           task_names[m->task], mname);
    printf("data: %d training rows, %d %s rows, %d inputs (%d columns)", d.tr.n, d.ev.n,
           o.test ? "test" : d.ev.n ? "validation" : "evaluation", m->nf, m->nsrc);
    if (m->task == TASK_REGRESS) printf(", target mean %.6g std %.6g\n", m->y_mean, m->y_std);
    else {
        printf(", classes:");
        for (int k = 0; k < (m->task == TASK_BINARY ? 2 : m->classes) && k < 12; k++) printf(" %s", m->class_names[k]);
        printf("%s\n", m->task == TASK_BINARY ? " (the second is the positive class)" : "");
    }
    printf("model: %lld parameters; device: %s\n", mi.params, di.name);
    printf("training: %d epochs, batch %d, %s lr %g weight decay %g, seed %llu\n", epochs, B,
           cli_optimizer_names[cs.optimizer.type], cs.optimizer.lr, cs.optimizer.weight_decay,
           (unsigned long long)cs.seed);
    fflush(stdout);
    cli_plot_eval_label = o.test ? "test" : "validation";
    uint64_t rng = cs.seed ^ 0x5DEECE66Dull;
    int best_epoch = -1;
    double best_loss = 0;
    scores ev = {0};
    for (int e = 0; e < epochs; e++) {
        double t0 = cli_now_s(), tl = 0, ta = 0;
        if (train_epoch(&r, m, &d.tr, B, cs.optimizer.lr, &rng, &tl, &ta)) goto out;
        tool_epoch_metrics *h = &m->history[m->nhistory++];
        h->train_loss = tl;
        h->train_acc = ta;
        h->test_loss = h->test_acc = NAN;
        if (d.ev.n) {
            if (evaluate_set(&r.tr, m, &d.ev, r.evout, &ev, NULL, r.scratch)) goto out;
            h->test_loss = ev.loss;
            h->test_acc = m->task == TASK_REGRESS ? ev.r2 : ev.acc;
        }
        h->seconds = cli_now_s() - t0;
        h->images_per_s = d.tr.n / (h->seconds > 0 ? h->seconds : 1e-9);
        m->epochs_done++;
        printf("epoch %d/%d train_loss=%.4f train_%s=%.4f", e + 1, epochs, tl, m->task == TASK_REGRESS ? "r2" : "acc", ta);
        const char *pf = o.test ? "test" : "val"; /* what the evaluated rows are */
        if (d.ev.n && m->task == TASK_REGRESS)
            printf(" %s_loss=%.4f %s_mse=%.6g %s_mae=%.6g %s_r2=%.4f", pf, ev.loss, pf, ev.mse, pf, ev.mae, pf, ev.r2);
        else if (d.ev.n) printf(" %s_loss=%.4f %s_acc=%.4f", pf, ev.loss, pf, ev.acc);
        if (d.ev.n && m->task == TASK_BINARY) printf(" %s_auc=%.4f", pf, ev.auc);
        printf(" time=%.2fs\n", h->seconds);
        fflush(stdout);
        if (o.checkpoint && save_ckpt(o.checkpoint, r.tr.g, m)) goto out;
        if (o.log && cli_write_log(o.log, m->history, m->nhistory, err) < 0) fprintf(stderr, "cltrain: warning: %s\n", err);
        if (o.plot) {
            char title[400];
            snprintf(title, sizeof title, "cltrain table %s, target %s, model %s", o.data, m->target, mname);
            if (cli_write_plot(o.plot, m->history, m->nhistory, title, err) < 0) fprintf(stderr, "cltrain: warning: %s\n", err);
        }
        if (o.early_stop > 0 && d.ev.n) {
            int last = e + 1 == epochs;
            if (best_epoch < 0 || ev.loss < best_loss) {
                best_loss = ev.loss;
                best_epoch = e;
                if (!last && best_state(r.tr.g, r.best, 0)) goto out;
            } else if (e - best_epoch >= o.early_stop || last) {
                if (best_state(r.tr.g, r.best, 1)) goto out;
                printf("early stop: restoring the weights of epoch %d (lowest %s loss %.4f)%s\n", best_epoch + 1,
                       cli_plot_eval_label, best_loss, last ? "" : "; no improvement since");
                if (o.checkpoint && save_ckpt(o.checkpoint, r.tr.g, m)) goto out;
                break;
            }
        }
    }
    double fl = NAN, fa = NAN;
    if (d.ev.n) {
        memset(r.confusion, 0, sizeof(int64_t) * ((size_t)m->classes * m->classes + 4));
        if (evaluate_set(&r.tr, m, &d.ev, r.evout, &ev, r.confusion, r.scratch)) goto out;
        print_scores(o.test ? "test" : "validation", m, &ev);
        print_final_report(m, &ev, r.confusion, 1);
        fl = ev.loss;
        fa = m->task == TASK_REGRESS ? ev.r2 : ev.acc;
    }
    if (o.checkpoint) printf("checkpoint: %s\n", o.checkpoint);
    double secs = 0;
    for (int i = 0; i < m->nhistory; i++) secs += m->history[i].seconds;
    printf("final: epochs=%d test_acc=%.4f test_loss=%.4f train_images_per_s=%.1f seconds=%.1f\n", m->epochs_done, fa,
           fl, secs > 0 ? d.tr.n * m->epochs_done / secs : 0.0, secs);
    rc = 0;
out:
    trun_free(&r);
    tdata_free(&d);
    return rc;
}

/* ------------------------------------------------------------------------------------------ predict */

/* A file to predict: CSV (columns by name; the target column, if there, is ignored) or .npy (the training file's
 * columns by position, with or without the target column). */
static int read_rows(const tab_meta *m, const char *path, tool_table *x, char *err)
{
    size_t l = strlen(path);
    if (l > 4 && !strcmp(path + l - 4, ".npy")) {
        int st = tool_read_npy(path, x, err);
        if (st) return st;
        int with_target = m->target_col >= 0 && x->cols == m->nsrc + 1;
        if (x->cols != m->nsrc && !with_target) {
            int c = x->cols;
            tool_table_free(x);
            return tool_fail(err, CLT_ERR_FORMAT, "%s: %d columns; the network was trained on %d (plus the target)",
                             path, c, m->nsrc);
        }
        for (int c = 0, o = 0; c < x->cols; c++) {
            if (with_target && c == m->target_col) snprintf(x->names[c], sizeof x->names[c], "%s", m->target);
            else snprintf(x->names[c], sizeof x->names[c], "%s", m->src[o++]);
        }
        return CLT_OK;
    }
    const char *cats[MAX_CATEGORICAL];
    int nc = 0;
    for (int i = 0; i < m->nsrc && nc < MAX_CATEGORICAL; i++)
        if (m->src_ncat[i]) cats[nc++] = m->src[i];
    /* The target may be absent; when present it may hold text. */
    return tool_read_csv(path, nc, cats, m->target, 0, x, err);
}

int tool_table_predict(const char *path, const char *device, int tune, int nfiles, char **files)
{
    clt_checkpoint *ck = NULL;
    tab_meta m;
    memset(&m, 0, sizeof m);
    char err[TOOL_ERR_LEN] = "";
    int rc = 1;
    clt_context *ctx = NULL;
    clt_graph *g = NULL;
    double *raw = NULL;
    float *x = NULL, *out = NULL;
    tool_table t = {0};
    if (clt_checkpoint_open(path, &ck) < 0) {
        tool_error("%s", clt_checkpoint_errmsg(ck));
        goto out;
    }
    if (tab_meta_decode(ck, path, &m)) goto out;
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = device;
    if (tune >= 0) cs.tune = tune;
    clt_load_settings ls;
    clt_load_default_settings(&ls);
    clt_tensor *xin, *logits;
    if (clt_context_create(&cs, &ctx) < 0 || clt_checkpoint_build(ck, ctx, &ls, &g) < 0 ||
        clt_graph_model_tensors(g, &xin, &logits) < 0) {
        tool_error("%s", clt_errmsg(ctx));
        goto out;
    }
    int k = m.classes;
    printf("file,row");
    if (m.task == TASK_REGRESS) printf(",%s\n", m.target);
    else if (m.task == TASK_BINARY) printf(",predicted,p(%s)\n", m.class_names[1]);
    else {
        printf(",predicted");
        for (int j = 0; j < k; j++) printf(",%s", m.class_names[j]);
        printf("\n");
    }
    for (int f = 0; f < nfiles; f++) {
        if (read_rows(&m, files[f], &t, err) || encode_rows(&m, &t, files[f], &raw, err)) {
            tool_error("%s", err);
            goto out;
        }
        x = malloc(sizeof(float) * (size_t)t.rows * m.nf + 1);
        out = malloc(sizeof(float) * (size_t)t.rows * k + 1);
        if (!x || !out) {
            tool_error("out of memory");
            goto out;
        }
        for (size_t i = 0; i < (size_t)t.rows * m.nf; i++) x[i] = (float)((raw[i] - m.mean[i % m.nf]) / m.std[i % m.nf]);
        if (clt_predict(g, x, (size_t)t.rows, out) < 0) {
            tool_error("prediction: %s", clt_errmsg(ctx));
            goto out;
        }
        for (int r = 0; r < t.rows; r++) {
            const float *o = out + (size_t)r * k;
            printf("%s,%d", files[f], r + 1);
            if (m.task == TASK_REGRESS) printf(",%.9g\n", o[0] * m.y_std + m.y_mean);
            else if (m.task == TASK_BINARY) {
                double p = 1 / (1 + exp(-(double)o[0]));
                printf(",%s,%.6f\n", m.class_names[p >= 0.5], p);
            } else {
                int best = 0;
                double se = 0;
                for (int j = 1; j < k; j++)
                    if (o[j] > o[best]) best = j;
                for (int j = 0; j < k; j++) se += exp((double)o[j] - o[best]);
                printf(",%s", m.class_names[best]);
                for (int j = 0; j < k; j++) printf(",%.6f", exp((double)o[j] - o[best]) / se);
                printf("\n");
            }
        }
        tool_table_free(&t);
        free(raw), free(x), free(out);
        raw = NULL, x = out = NULL;
    }
    rc = 0;
out:
    tool_table_free(&t);
    free(raw), free(x), free(out);
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    clt_checkpoint_close(ck);
    tab_meta_free(&m);
    return rc;
}
