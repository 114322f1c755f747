/* npy.c - NumPy .npy arrays and .npz archives (members read with libzip) as tables for the cltrain tool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zip.h>

#include "tool.h"

/* The value of `key` in the header dict ("'descr': '<f4', ..."): a pointer after the colon, or NULL. */
static const char *dict_value(const char *h, const char *key)
{
    char k[32];
    snprintf(k, sizeof k, "'%s'", key);
    const char *p = strstr(h, k);
    if (!p) return NULL;
    p += strlen(k);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

/* Parses an .npy image in memory (name: for messages) into a table of 1 column (1-D) or shape[1] columns (2-D). */
int tool_parse_npy(const char *name, const unsigned char *b, size_t len, tool_table *t, char *err)
{
    memset(t, 0, sizeof *t);
    if (len < 10 || memcmp(b, "\x93NUMPY", 6))
        return tool_fail(err, CLT_ERR_FORMAT, "%s: not a NumPy .npy array (no \\x93NUMPY magic)", name);
    int major = b[6];
    size_t hl, off;
    if (major == 1) hl = b[8] | (size_t)b[9] << 8, off = 10;
    else if ((major == 2 || major == 3) && len >= 12)
        hl = b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24, off = 12;
    else return tool_fail(err, CLT_ERR_FORMAT, "%s: .npy format version %d is not supported (1, 2 or 3)", name, major);
    if (hl > 65536 || off + hl > len) return tool_fail(err, CLT_ERR_FORMAT, "%s: truncated .npy header", name);
    char h[65537];
    memcpy(h, b + off, hl);
    h[hl] = 0;
    const char *d = dict_value(h, "descr"), *fo = dict_value(h, "fortran_order"), *sh = dict_value(h, "shape");
    if (!d || !fo || !sh || *d != '\'' || *sh != '(')
        return tool_fail(err, CLT_ERR_FORMAT, "%s: malformed .npy header (%.80s)", name, h);
    char descr[16] = "";
    const char *de = strchr(d + 1, '\'');
    if (!de || de - d - 1 >= (long)sizeof descr)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: malformed dtype in the .npy header", name);
    memcpy(descr, d + 1, (size_t)(de - d - 1));
    if (!strncmp(fo, "True", 4))
        return tool_fail(err, CLT_ERR_FORMAT, "%s: a Fortran-order array is not supported (save it in C order: "
                         "np.ascontiguousarray)", name);
    /* dtype: little-endian (or byte-sized) float32/64 and integers. */
    char kind = descr[1];
    int size = atoi(descr + 2);
    int ok = (descr[0] == '<' || descr[0] == '|' || descr[0] == '=') &&
             ((kind == 'f' && (size == 4 || size == 8)) ||
              ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)));
    if (descr[0] == '|' && size != 1) ok = 0;
    if (!ok)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: dtype '%s' is not supported (float32, float64 or a little-endian "
                         "integer type)", name, descr);
    long long dims[3] = {0, 0, 0};
    int nd = 0;
    const char *p = sh + 1;
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *e;
        long long v = strtoll(p, &e, 10);
        if (e == p || v < 0 || nd == 3) return tool_fail(err, CLT_ERR_FORMAT, "%s: malformed shape in the .npy header", name);
        dims[nd++] = v;
        p = e;
    }
    if (nd < 1 || nd > 2)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: a %d-dimensional array; a table is 1-D (one column) or 2-D (rows, "
                         "columns)", name, nd);
    long long rows = dims[0], cols = nd == 2 ? dims[1] : 1;
    if (rows < 1 || cols < 1 || cols > TOOL_TABLE_MAX_COLS || rows > 100000000)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: shape (%lld, %lld): need 1..10^8 rows and 1..%d columns", name, rows,
                         cols, TOOL_TABLE_MAX_COLS);
    size_t data = len - off - hl;
    if ((unsigned long long)rows * cols * size != data)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: its shape (%lld, %lld) of %s needs %llu bytes of data but the file "
                         "holds %zu", name, rows, cols, descr, (unsigned long long)rows * cols * size, data);
    int st = tool_table_alloc(t, (int)rows, (int)cols, err);
    if (st) return st;
    for (int c = 0; c < cols; c++) snprintf(t->names[c], sizeof t->names[c], "%d", c);
    const unsigned char *q = b + off + hl;
    for (size_t i = 0; i < (size_t)rows * cols; i++, q += size) {
        double v = 0;
        if (kind == 'f' && size == 4) {
            float f;
            memcpy(&f, q, 4);
            v = f;
        } else if (kind == 'f') {
            memcpy(&v, q, 8);
        } else {
            unsigned long long u = 0;
            for (int k = 0; k < size; k++) u |= (unsigned long long)q[k] << (8 * k);
            if (kind == 'i' && size < 8 && (u >> (8 * size - 1)) & 1) u |= ~0ull << (8 * size);
            v = kind == 'i' ? (double)(long long)u : (double)u;
        }
        if (!(v - v == 0)) {
            long long r = (long long)(i / cols), c = (long long)(i % cols);
            tool_table_free(t);
            return tool_fail(err, CLT_ERR_FORMAT, "%s: row %lld, column %lld is NaN or infinite (not allowed)", name, r,
                             c);
        }
        t->v[i] = v;
    }
    return CLT_OK;
}

int tool_read_npy(const char *path, tool_table *t, char *err)
{
    memset(t, 0, sizeof *t);
    FILE *f = tool_fopen_regular(path, "array", err);
    if (!f) return CLT_ERR_IO;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    if (n < 0 || n > (long)TOOL_TABLE_MAX_BYTES) {
        fclose(f);
        return tool_fail(err, CLT_ERR_FORMAT, "%s: larger than %lld bytes: refused", path, (long long)TOOL_TABLE_MAX_BYTES);
    }
    unsigned char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(b);
        return tool_fail(err, CLT_ERR_IO, "%s: cannot read it", path);
    }
    fclose(f);
    int st = tool_parse_npy(path, b, (size_t)n, t, err);
    free(b);
    return st;
}

/* One member ("NAME.npy") of an open archive. */
static int npz_member(zip_t *z, const char *path, const char *name, tool_table *t, char *err)
{
    char mname[300], label[4400];
    snprintf(mname, sizeof mname, "%s.npy", name);
    snprintf(label, sizeof label, "%s (array '%s')", path, name);
    zip_int64_t idx = zip_name_locate(z, mname, 0);
    if (idx < 0) return tool_fail(err, CLT_ERR_FORMAT, "%s: no array '%s' in the archive", path, name);
    zip_stat_t zs;
    if (zip_stat_index(z, (zip_uint64_t)idx, 0, &zs) < 0 || !(zs.valid & ZIP_STAT_SIZE) ||
        zs.size > (zip_uint64_t)TOOL_TABLE_MAX_BYTES)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: unreadable or too large member", label);
    unsigned char *b = malloc((size_t)zs.size + 1);
    zip_file_t *zf = b ? zip_fopen_index(z, (zip_uint64_t)idx, 0) : NULL;
    zip_int64_t got = zf ? zip_fread(zf, b, zs.size) : -1;
    const char *why = zf ? zip_file_strerror(zf) : zip_strerror(z);
    int st = CLT_OK;
    if (!b) st = tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    else if (got < 0 || (zip_uint64_t)got != zs.size)
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: cannot read the member (libzip: %s)", label, why);
    if (zf) zip_fclose(zf);
    if (!st) st = tool_parse_npy(label, b, (size_t)zs.size, t, err);
    free(b);
    return st;
}

int tool_read_npz(const char *path, const char *target, tool_table *x, tool_table *y, char *err)
{
    memset(x, 0, sizeof *x);
    memset(y, 0, sizeof *y);
    int st = tool_check_regular_file(path, "archive", err);
    if (st) return st;
    int zerr = 0;
    zip_t *z = zip_open(path, ZIP_RDONLY, &zerr);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: not a readable .npz (zip) archive (libzip: %s)", path,
                       zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    /* The features: the one member that is not the target. */
    zip_int64_t n = zip_get_num_entries(z, 0);
    char feat[300] = "";
    int others = 0;
    for (zip_int64_t i = 0; i < n; i++) {
        const char *nm = zip_get_name(z, (zip_uint64_t)i, 0);
        size_t l = nm ? strlen(nm) : 0;
        if (l < 5 || strcmp(nm + l - 4, ".npy") || l - 4 >= sizeof feat) continue;
        if (!strncmp(nm, target, l - 4) && strlen(target) == l - 4) continue;
        others++;
        memcpy(feat, nm, l - 4);
        feat[l - 4] = 0;
    }
    if (others != 1) st = tool_fail(err, CLT_ERR_FORMAT, "%s: expected two arrays, the features and --target %s (e.g. "
                                    "np.savez(f, x=X, %s=y)); found %d other arrays", path, target, target, others);
    if (!st) st = npz_member(z, path, target, y, err);
    if (!st && y->cols != 1)
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: the target array '%s' has %d columns; it must be 1-D", path, target,
                       y->cols);
    if (!st) st = npz_member(z, path, feat, x, err);
    if (!st && x->rows != y->rows)
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: '%s' has %d rows but the target '%s' has %d", path, feat, x->rows,
                       target, y->rows);
    zip_discard(z);
    if (st) {
        tool_table_free(x);
        tool_table_free(y);
    }
    return st;
}
