/* table.c - tables for the cltrain tool: the CSV reader (header row, numeric or categorical columns) and the table type. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tool.h"

void tool_table_free(tool_table *t)
{
    if (!t) return;
    for (int c = 0; t->cats && c < t->cols; c++) {
        for (int k = 0; k < t->ncat[c]; k++) free(t->cats[c][k]);
        free(t->cats[c]);
    }
    free(t->cats);
    free(t->ncat);
    free(t->names);
    free(t->v);
    memset(t, 0, sizeof *t);
}

int tool_table_alloc(tool_table *t, int rows, int cols, char *err)
{
    memset(t, 0, sizeof *t);
    t->rows = rows;
    t->cols = cols;
    t->v = malloc((size_t)rows * cols * sizeof *t->v + 1);
    t->names = calloc((size_t)cols, sizeof *t->names);
    t->ncat = calloc((size_t)cols, sizeof *t->ncat);
    t->cats = calloc((size_t)cols, sizeof *t->cats);
    if (!t->v || !t->names || !t->ncat || !t->cats) {
        tool_table_free(t);
        return tool_fail(err, CLT_ERR_NOMEM, "out of memory for a table of %d x %d", rows, cols);
    }
    return CLT_OK;
}

int tool_table_find(const tool_table *t, const char *name)
{
    for (int c = 0; c < t->cols; c++)
        if (!strcmp(t->names[c], name)) return c;
    return -1;
}

/* ------------------------------------------------------------------------------------------ CSV tokens */

/* The cells of one line: pointers into a scratch copy (quotes removed, spaces around cells trimmed). */
typedef struct csv_line {
    char *buf;
    size_t cap;
    char **cell;
    int ncell, capcell;
    int lineno; /* 1-based line of the file where the record starts */
} csv_line;

/* Parses the record at *pos (a line; quoted fields may hold commas, doubled quotes and line breaks). Returns 1
 * with the cells, 0 at the end, or a negative status (message in err). Blank lines are skipped. */
static int csv_next(const char *path, const char *s, size_t n, size_t *pos, int *line, int maxcells, csv_line *L,
                    char *err)
{
    while (*pos < n && (s[*pos] == '\n' || s[*pos] == '\r')) {
        if (s[*pos] == '\n') (*line)++;
        (*pos)++;
    }
    if (*pos >= n) return 0;
    L->lineno = *line;
    L->ncell = 0;
    size_t need = 0;
    /* Scratch space: the record's bytes plus one terminator per cell fit in twice its length. */
    size_t end = *pos;
    int inq = 0;
    while (end < n && (inq || (s[end] != '\n' && s[end] != '\r'))) {
        if (s[end] == '"') inq = !inq;
        end++;
    }
    if (inq) return tool_fail(err, CLT_ERR_FORMAT, "%s: line %d: a quoted field is not closed", path, *line);
    need = 2 * (end - *pos) + 2;
    if (need > L->cap) {
        char *nb = realloc(L->buf, need);
        if (!nb) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
        L->buf = nb;
        L->cap = need;
    }
    char *o = L->buf;
    size_t i = *pos;
    for (;;) {
        if (L->ncell == maxcells)
            return tool_fail(err, CLT_ERR_FORMAT, "%s: line %d has more than %d columns", path, *line, maxcells - 1);
        if (L->ncell == L->capcell) {
            int nc = L->capcell ? L->capcell * 2 : 64;
            char **ncl = realloc(L->cell, sizeof *ncl * (size_t)nc);
            if (!ncl) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
            L->cell = ncl;
            L->capcell = nc;
        }
        while (i < end && (s[i] == ' ' || s[i] == '\t')) i++;
        char *cs = o;
        if (i < end && s[i] == '"') {
            i++;
            for (; i < end; i++) {
                if (s[i] == '"') {
                    if (i + 1 < end && s[i + 1] == '"') {
                        *o++ = '"';
                        i++;
                        continue;
                    }
                    i++;
                    break;
                }
                if (s[i] == '\n') (*line)++;
                *o++ = s[i];
            }
            while (i < end && s[i] != ',') i++; /* anything after the closing quote is dropped */
        } else {
            while (i < end && s[i] != ',') *o++ = s[i++];
            while (o > cs && (o[-1] == ' ' || o[-1] == '\t')) o--;
        }
        *o++ = 0;
        L->cell[L->ncell++] = cs;
        if (i < end && s[i] == ',') {
            i++;
            continue;
        }
        break;
    }
    *pos = end;
    return 1;
}

/* ------------------------------------------------------------------------------------------ CSV */

/* A number, or 0 with *bad set: 1 not a number, 2 NaN or Inf, 3 empty. */
static double parse_cell(const char *c, int *bad)
{
    *bad = 0;
    if (!*c) {
        *bad = 3;
        return 0;
    }
    char *e;
    errno = 0;
    double v = strtod(c, &e);
    if (e == c || *e) {
        *bad = 1;
        return 0;
    }
    if (!isfinite(v)) *bad = 2;
    return v;
}

static int cmp_cat(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds a category string of column c (kept unique; sorted at the end). */
static int add_category(tool_table *t, int c, const char *v, const char *path, char *err)
{
    for (int k = 0; k < t->ncat[c]; k++)
        if (!strcmp(t->cats[c][k], v)) return CLT_OK;
    if (t->ncat[c] >= TOOL_TABLE_MAX_CATEGORIES)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: column '%s' has more than %d distinct values (too many to one-hot "
                         "encode)", path, t->names[c], TOOL_TABLE_MAX_CATEGORIES);
    if (t->ncat[c] % 16 == 0) {
        char **nc = realloc(t->cats[c], sizeof *nc * (size_t)(t->ncat[c] + 16));
        if (!nc) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
        t->cats[c] = nc;
    }
    if (!(t->cats[c][t->ncat[c]] = strdup(v))) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    t->ncat[c]++;
    return CLT_OK;
}

static int read_whole(const char *path, char **buf, size_t *len, char *err)
{
    FILE *f = tool_fopen_regular(path, "table", err);
    if (!f) return CLT_ERR_IO;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size > (off_t)TOOL_TABLE_MAX_BYTES) {
        fclose(f);
        return tool_fail(err, CLT_ERR_FORMAT, "%s: larger than %lld bytes: refused", path,
                         (long long)TOOL_TABLE_MAX_BYTES);
    }
    *buf = malloc((size_t)st.st_size + 1);
    if (!*buf) {
        fclose(f);
        return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory", path);
    }
    *len = fread(*buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(*buf);
        return tool_fail(err, CLT_ERR_IO, "%s: read error", path);
    }
    (*buf)[*len] = 0;
    return CLT_OK;
}

int tool_read_csv(const char *path, int ncat, const char *const *categorical, const char *target, int need_target,
                  tool_table *t, char *err)
{
    memset(t, 0, sizeof *t);
    char *s = NULL;
    size_t n = 0, pos = 0;
    int st = read_whole(path, &s, &n, err), line = 1;
    if (st) return st;
    csv_line L = {0};
    int *is_cat = NULL;
    size_t start = 0;
    if (n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) start = pos = 3; /* UTF-8 byte-order mark */
    st = csv_next(path, s, n, &pos, &line, TOOL_TABLE_MAX_COLS + 1, &L, err);
    if (st == 0) st = tool_fail(err, CLT_ERR_FORMAT, "%s: empty file (a CSV table needs a header row of column names "
                                "and data rows)", path);
    if (st < 0) goto out;
    int cols = L.ncell;
    /* Rows: counted (and their widths checked) before the values are allocated. */
    int rows = 0;
    size_t data_start = pos;
    int dline = line;
    for (;;) {
        int r = csv_next(path, s, n, &pos, &line, cols + 1, &L, err);
        if (r < 0) {
            if (strstr(err, "columns") && strstr(err, "more than")) /* the width is the header's */
                tool_fail(err, CLT_ERR_FORMAT, "%s: line %d has more fields than the header's %d columns (a ragged row)",
                          path, line, cols);
            st = CLT_ERR_FORMAT;
            goto out;
        }
        if (r == 0) break;
        if (L.ncell != cols) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: line %d has %d fields but the header has %d columns (a ragged row)",
                           path, L.lineno, L.ncell, cols);
            goto out;
        }
        if (++rows > 100000000) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: more than 10^8 rows: refused", path);
            goto out;
        }
    }
    if (rows == 0) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: a header row but no data rows", path);
        goto out;
    }
    if ((double)rows * cols > 4e8) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: %d rows x %d columns is more than this tool holds in memory", path, rows,
                       cols);
        goto out;
    }
    /* The header again, into the table's names. */
    pos = start;
    line = 1;
    csv_next(path, s, n, &pos, &line, cols + 1, &L, err);
    if ((st = tool_table_alloc(t, rows, cols, err))) goto out;
    is_cat = calloc((size_t)cols, sizeof *is_cat);
    if (!is_cat) {
        st = tool_fail(err, CLT_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int c = 0; c < cols; c++) {
        if (!L.cell[c][0] || strlen(L.cell[c]) >= sizeof t->names[0]) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: line 1, column %d: a column name must have 1 to %d bytes", path,
                           c + 1, (int)sizeof t->names[0] - 1);
            goto out;
        }
        snprintf(t->names[c], sizeof t->names[c], "%s", L.cell[c]);
        for (int j = 0; j < c; j++)
            if (!strcmp(t->names[j], t->names[c])) {
                st = tool_fail(err, CLT_ERR_FORMAT, "%s: column name '%s' appears twice in the header", path,
                               t->names[c]);
                goto out;
            }
    }
    for (int i = 0; i < ncat; i++) {
        int c = tool_table_find(t, categorical[i]);
        if (c < 0) {
            st = tool_fail(err, CLT_ERR_INVALID, "%s: --categorical %s: no such column in the header", path,
                           categorical[i]);
            goto out;
        }
        is_cat[c] = 1;
    }
    int tc = target ? tool_table_find(t, target) : -1;
    if (tc < 0 && target && need_target) {
        char cols[400] = "";
        for (int c = 0, k = 0; c < t->cols && k < 300; c++)
            k += snprintf(cols + k, sizeof cols - (size_t)k, "%s%s", c ? ", " : "", t->names[c]);
        st = tool_fail(err, CLT_ERR_INVALID, "%s: no column '%s' (--target) in the header (columns: %s%s)", path, target,
                       cols, t->cols > 20 ? ", ..." : "");
        goto out;
    }
    /* A target column that is not all numbers holds class names. */
    if (tc >= 0 && !is_cat[tc]) {
        pos = data_start;
        line = dline;
        while (!is_cat[tc] && csv_next(path, s, n, &pos, &line, cols + 1, &L, err) == 1) {
            int bad;
            parse_cell(L.cell[tc], &bad);
            if (bad == 1) is_cat[tc] = 1;
        }
    }
    /* Categories, then the values. */
    pos = data_start;
    line = dline;
    for (int r = 0; csv_next(path, s, n, &pos, &line, cols + 1, &L, err) == 1; r++)
        for (int c = 0; c < cols; c++)
            if (is_cat[c] && (st = add_category(t, c, L.cell[c], path, err))) goto out;
    for (int c = 0; c < cols; c++)
        if (is_cat[c]) qsort(t->cats[c], (size_t)t->ncat[c], sizeof *t->cats[c], cmp_cat);
    pos = data_start;
    line = dline;
    for (int r = 0; csv_next(path, s, n, &pos, &line, cols + 1, &L, err) == 1; r++)
        for (int c = 0; c < cols; c++) {
            double *dst = &t->v[(size_t)r * cols + c];
            if (is_cat[c]) {
                char *key = L.cell[c];
                char **hit = bsearch(&key, t->cats[c], (size_t)t->ncat[c], sizeof *t->cats[c], cmp_cat);
                *dst = (double)(hit - t->cats[c]);
                continue;
            }
            int bad;
            *dst = parse_cell(L.cell[c], &bad);
            if (bad) {
                static const char *const why[4] = {"", "is not a number", "is NaN or infinite (not allowed)",
                                                   "is empty (missing values are not supported)"};
                st = tool_fail(err, CLT_ERR_FORMAT, "%s: line %d, column '%s' (%d): '%.40s' %s%s", path, L.lineno,
                               t->names[c], c + 1, L.cell[c], why[bad],
                               bad == 1 ? "; declare the column with --categorical to one-hot encode it" : "");
                goto out;
            }
        }
out:
    free(is_cat);
    free(L.buf);
    free(L.cell);
    free(s);
    if (st) tool_table_free(t);
    return st;
}
