/* data.c - dataset loaders of the cltrain tool: CIFAR-10 binary batches and MNIST/Fashion-MNIST IDX files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "tool.h"

#define CIFAR_RECORD 3073 /* 1 label byte + 3*32*32 pixel bytes (R plane, G plane, B plane) */
#define CIFAR_PIXELS 3072

static const char *const cifar_names[10] = {"airplane", "automobile", "bird", "cat",  "deer",
                                            "dog",      "frog",       "horse", "ship", "truck"};
static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int check_data_folder(const char *dir, char *err);

static void set_names(tool_dataset *d, const char *const names[10])
{
    for (int i = 0; i < 10; i++) snprintf(d->class_names[i], sizeof d->class_names[i], "%s", names[i]);
}

void tool_dataset_free(tool_dataset *d)
{
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------------------------------------ CIFAR-10 */

/* batches.meta.txt holds one class name per line (possibly followed by blank lines). */
static int cifar_meta_names(const char *dir, tool_dataset *d, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) return CLT_OK; /* optional */
    FILE *f = tool_fopen_regular(path, NULL, err);
    if (!f) return CLT_ERR_IO;
    char names[10][32];
    int n = 0;
    char line[256];
    while (n < 10 && fgets(line, sizeof line, f)) {
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        size_t len = strlen(s);
        while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t'))
            s[--len] = 0;
        if (len == 0) continue;
        snprintf(names[n++], sizeof names[0], "%.31s", s); /* longer names are cut */
    }
    fclose(f);
    if (n == 10) /* a partial list is ignored: the standard names are better than a mix */
        for (int i = 0; i < 10; i++) memcpy(d->class_names[i], names[i], sizeof names[i]);
    return CLT_OK;
}

int tool_load_cifar10(const char *dir, int train, tool_dataset *out, char *err)
{
    if (!dir || !out) return tool_fail(err, CLT_ERR_INVALID, "tool_load_cifar10: NULL argument");
    memset(out, 0, sizeof *out);
    int cst = check_data_folder(dir, err);
    if (cst) return cst;
    const char *probe = train ? "data_batch_1.bin" : "test_batch.bin";
    char base[4096], path[4200];
    snprintf(base, sizeof base, "%s", dir);
    snprintf(path, sizeof path, "%s/%s", base, probe);
    if (!is_file(path)) {
        /* `dir` may be the parent of the folder the archive unpacks to. */
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
        snprintf(path, sizeof path, "%s/%s", sub, probe);
        if (is_file(path)) snprintf(base, sizeof base, "%s", sub);
    }
    const char *files[5];
    int nfiles = 0;
    if (train) {
        static const char *const tr[5] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                          "data_batch_4.bin", "data_batch_5.bin"};
        for (int i = 0; i < 5; i++) files[nfiles++] = tr[i];
    } else {
        files[nfiles++] = "test_batch.bin";
    }
    /* Sizes first, so that one allocation holds everything. */
    long long records[5], total = 0;
    for (int i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", base, files[i]);
        struct stat st;
        if (stat(path, &st) != 0 && errno != ENOENT) return tool_check_regular_file(path, NULL, err);
        if (stat(path, &st) != 0)
            return tool_fail(err, CLT_ERR_IO, "%s: missing (%s); expected the CIFAR-10 binary version "
                             "(cifar-10-binary.tar.gz) in %s or %s/cifar-10-batches-bin", path, strerror(errno), dir,
                             dir);
        if (!S_ISREG(st.st_mode))
            return tool_fail(err, CLT_ERR_IO, "%s: is %s, not a regular file", path, tool_file_kind(st.st_mode));
        if (st.st_size <= 0 || st.st_size % CIFAR_RECORD != 0)
            return tool_fail(err, CLT_ERR_FORMAT, "%s: wrong size: %lld bytes is not a non-zero multiple of the "
                             "%d-byte CIFAR-10 record (truncated or not a CIFAR-10 binary batch)", path,
                             (long long)st.st_size, CIFAR_RECORD);
        records[i] = st.st_size / CIFAR_RECORD;
        total += records[i];
    }
    if (total > 100000000) return tool_fail(err, CLT_ERR_FORMAT, "%s: unreasonably many records (%lld)", base, total);
    out->n = (int)total;
    out->c = 3;
    out->h = 32;
    out->w = 32;
    out->classes = 10;
    out->pixels = malloc((size_t)total * CIFAR_PIXELS);
    out->labels = malloc((size_t)total);
    unsigned char *rec = malloc(CIFAR_RECORD);
    if (!out->pixels || !out->labels || !rec) {
        free(rec);
        tool_dataset_free(out);
        return tool_fail(err, CLT_ERR_NOMEM, "out of memory loading CIFAR-10 from %s", base);
    }
    size_t at = 0;
    for (int i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", base, files[i]);
        FILE *f = tool_fopen_regular(path, NULL, err);
        if (!f) {
            free(rec);
            tool_dataset_free(out);
            return CLT_ERR_IO;
        }
        for (long long r = 0; r < records[i]; r++, at++) {
            if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
                int bad = ferror(f);
                fclose(f);
                free(rec);
                tool_dataset_free(out);
                return tool_fail(err, bad ? CLT_ERR_IO : CLT_ERR_FORMAT, "%s: %s at record %lld", path,
                                 bad ? "read error" : "truncated (file shrank while reading)", r);
            }
            if (rec[0] > 9) {
                int lab = rec[0];
                fclose(f);
                free(rec);
                tool_dataset_free(out);
                return tool_fail(err, CLT_ERR_FORMAT, "%s: bad label %d at record %lld (labels are 0..9)", path, lab,
                                 r);
            }
            out->labels[at] = rec[0];
            memcpy(out->pixels + at * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS); /* already CHW */
        }
        fclose(f);
    }
    free(rec);
    set_names(out, cifar_names);
    if (cifar_meta_names(base, out, err)) {
        tool_dataset_free(out);
        return CLT_ERR_IO;
    }
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ IDX */

/* An open IDX file, plain or gzip (gzread passes plain files through; gzdirect tells which it is). */
typedef struct idx_file {
    gzFile f;
    char path[4300];
    int gz;             /* 0: plain, read through as is */
    long long size;     /* bytes on disk */
} idx_file;

static void idx_close(idx_file *x)
{
    if (x->f) gzclose(x->f);
    x->f = NULL;
}

/* A folder that is a FIFO, a file or a symlink loop is named as such; a missing one is reported by the
 * caller with the file it looked for. */
static int check_data_folder(const char *dir, char *err)
{
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT) return CLT_OK;
    return tool_check_folder(dir, "data folder", err);
}

/* Finds NAME or NAME.gz in dir (plain first) and opens it. A .gz name that does not hold gzip data is
 * refused: zlib would read it as plain bytes and blame the IDX header. */
static int idx_open(const char *dir, const char *name, idx_file *x, char *err)
{
    memset(x, 0, sizeof *x);
    char plain[4096], gz[4200];
    snprintf(plain, sizeof plain, "%s/%s", dir, name);
    snprintf(gz, sizeof gz, "%s.gz", plain);
    struct stat st;
    const char *path = plain;
    if (stat(plain, &st) != 0) {
        if (errno != ENOENT) return tool_check_regular_file(plain, NULL, err);
        if (stat(gz, &st) != 0) {
            if (errno != ENOENT) return tool_check_regular_file(gz, NULL, err);
            return tool_fail(err, CLT_ERR_IO, "%s: missing (neither %s nor %s.gz exists)", plain, name, name);
        }
        path = gz;
    }
    snprintf(x->path, sizeof x->path, "%s", path);
    int fd = tool_open_regular(path, NULL, err);
    if (fd < 0) return fd;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tool_fail(err, CLT_ERR_IO, "%s: cannot read (%s)", path, strerror(e));
    }
    x->size = (long long)st.st_size;
    x->f = gzdopen(fd, "rb");
    if (!x->f) {
        close(fd);
        return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory", path);
    }
    gzbuffer(x->f, 1u << 17);
    x->gz = !gzdirect(x->f);
    size_t pl = strlen(path);
    if (!x->gz && pl > 3 && !strcmp(path + pl - 3, ".gz")) {
        idx_close(x);
        return tool_fail(err, CLT_ERR_FORMAT, "%s: not gzip data (a .gz file starts with the bytes 1f 8b; this one "
                         "is corrupt or was renamed)", path);
    }
    return CLT_OK;
}

/* gzerror's text without the "<fd:3>: " that zlib puts before it for a gzdopen'ed file. */
static const char *zmsg(const char *m)
{
    if (m && !strncmp(m, "<fd:", 4)) {
        const char *c = strstr(m, ": ");
        if (c) return c + 2;
    }
    return m;
}

/* zlib's message for the last failure: corrupt data or a read error. */
static int idx_zfail(idx_file *x, const char *what, char *err)
{
    int zerr = Z_OK;
    const char *msg = zmsg(gzerror(x->f, &zerr));
    if (zerr == Z_ERRNO) return tool_fail(err, CLT_ERR_IO, "%s: read error (%s)", x->path, strerror(errno));
    return tool_fail(err, CLT_ERR_FORMAT, "%s: corrupt gzip data %s (zlib: %s)", x->path, what,
                     msg && *msg ? msg : "no message");
}

/* Reads exactly len bytes (what: "in the header", ...). A short read is a truncated file. */
static int idx_read(idx_file *x, unsigned char *buf, size_t len, const char *what, char *err)
{
    size_t n = 0;
    while (n < len) {
        size_t want = len - n > (1u << 30) ? (1u << 30) : len - n;
        int got = gzread(x->f, buf + n, (unsigned)want);
        if (got < 0) return idx_zfail(x, what, err);
        if (got == 0) {
            int zerr = Z_OK;
            const char *msg = zmsg(gzerror(x->f, &zerr));
            if (zerr != Z_OK && zerr != Z_BUF_ERROR) return idx_zfail(x, what, err);
            return tool_fail(err, CLT_ERR_FORMAT, "%s: truncated: %zu of the %zu bytes %s%s%s%s", x->path, n, len, what,
                             zerr == Z_BUF_ERROR ? " (zlib: " : "", zerr == Z_BUF_ERROR ? msg : "",
                             zerr == Z_BUF_ERROR ? ")" : "");
        }
        n += (size_t)got;
    }
    return CLT_OK;
}

/* After the bytes the header implies: the end of the file, and for gzip a valid end of the stream (its
 * CRC is checked there). */
static int idx_expect_end(idx_file *x, size_t body, char *err)
{
    unsigned char c;
    int got = gzread(x->f, &c, 1);
    if (got < 0) return idx_zfail(x, "at its end", err);
    if (got > 0)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: trailing data after the %zu bytes the header implies", x->path,
                         body);
    int zerr = Z_OK;
    gzerror(x->f, &zerr);
    if (zerr != Z_OK) return idx_zfail(x, "at its end", err);
    return CLT_OK;
}

/* For a plain file the size is known before reading: a wrong size is refused without reading the body. */
static int idx_check_size(const idx_file *x, size_t want, const char *what, char *err)
{
    if (x->gz || (unsigned long long)x->size == (unsigned long long)want) return CLT_OK;
    return tool_fail(err, CLT_ERR_FORMAT, "%s: %lld bytes, but the header (%s) implies %zu (%s)", x->path, x->size, what,
                     want, (unsigned long long)x->size < want ? "truncated" : "trailing data");
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The largest pixel block accepted: 4 GiB (MNIST's training images are 47 MB). */
#define IDX_MAX_PIXELS (4ull << 30)

/* Opens both files and checks both headers (magic, dimensions, counts) before any body is read. */
static int idx_headers(const char *dir, int train, idx_file *fi, idx_file *fl, uint32_t *n, uint32_t *rows,
                       uint32_t *cols, char *err)
{
    const char *img_name = train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    const char *lab_name = train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte";
    unsigned char h[16];
    int st = idx_open(dir, img_name, fi, err);
    if (st) return st;
    /* Images: magic 0x00000803 (unsigned bytes, 3 dims), count, rows, cols, then pixels row-major. */
    if (!fi->gz && fi->size < 16)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: truncated header (%lld bytes; an IDX image file starts with 16)",
                         fi->path, fi->size);
    if ((st = idx_read(fi, h, 16, "of the header", err)) != 0) return st;
    if (be32(h) != 0x00000803)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: bad magic number 0x%08x (expected 0x00000803: unsigned-byte images "
                         "with 3 dimensions)", fi->path, be32(h));
    *n = be32(h + 4), *rows = be32(h + 8), *cols = be32(h + 12);
    if (*n == 0 || *rows == 0 || *cols == 0 || *rows > 4096 || *cols > 4096 || *n > 100000000 ||
        (uint64_t)*n * *rows * *cols > IDX_MAX_PIXELS)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: implausible dimensions %u x %u x %u (at most 100000000 images of "
                         "4096x4096 and 4 GiB of pixels)", fi->path, *n, *rows, *cols);
    char what[96];
    snprintf(what, sizeof what, "%u images of %ux%u", *n, *rows, *cols);
    if ((st = idx_check_size(fi, 16 + (size_t)*n * *rows * *cols, what, err)) != 0) return st;
    /* Labels: magic 0x00000801, count, then one byte each. */
    if ((st = idx_open(dir, lab_name, fl, err)) != 0) return st;
    if (!fl->gz && fl->size < 8)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: truncated header (%lld bytes; an IDX label file starts with 8)",
                         fl->path, fl->size);
    if ((st = idx_read(fl, h, 8, "of the header", err)) != 0) return st;
    if (be32(h) != 0x00000801)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: bad magic number 0x%08x (expected 0x00000801: unsigned-byte labels "
                         "with 1 dimension)", fl->path, be32(h));
    uint32_t nl = be32(h + 4);
    snprintf(what, sizeof what, "%u labels", nl);
    if ((st = idx_check_size(fl, 8 + (size_t)nl, what, err)) != 0) return st;
    if (nl != *n)
        return tool_fail(err, CLT_ERR_FORMAT, "%s has %u labels but %s has %u images", fl->path, nl, fi->path, *n);
    return CLT_OK;
}

int tool_load_idx(const char *dir, int train, int fashion, tool_dataset *out, char *err)
{
    if (!dir || !out) return tool_fail(err, CLT_ERR_INVALID, "tool_load_idx: NULL argument");
    memset(out, 0, sizeof *out);
    idx_file fi = {0}, fl = {0};
    uint32_t n = 0, rows = 0, cols = 0;
    int st = check_data_folder(dir, err);
    if (!st) st = idx_headers(dir, train, &fi, &fl, &n, &rows, &cols, err);
    if (st) goto done;
    size_t npix = (size_t)n * rows * cols;
    out->pixels = malloc(npix);
    out->labels = malloc(n);
    if (!out->pixels || !out->labels) {
        st = tool_fail(err, CLT_ERR_NOMEM, "out of memory loading %s (%zu bytes)", fi.path, npix);
        goto done;
    }
    if ((st = idx_read(&fi, out->pixels, npix, "of pixels the header implies", err)) != 0 ||
        (st = idx_expect_end(&fi, npix, err)) != 0 ||
        (st = idx_read(&fl, out->labels, n, "of labels the header implies", err)) != 0 ||
        (st = idx_expect_end(&fl, n, err)) != 0)
        goto done;
    for (uint32_t i = 0; i < n; i++)
        if (out->labels[i] > 9) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: bad label %d at record %u (labels are 0..9)", fl.path,
                           out->labels[i], i);
            goto done;
        }
    out->n = (int)n;
    out->c = 1;
    out->h = (int)rows;
    out->w = (int)cols;
    out->classes = 10;
    if (fashion) {
        set_names(out, fashion_names);
    } else {
        for (int i = 0; i < 10; i++) snprintf(out->class_names[i], sizeof out->class_names[i], "%d", i);
    }
done:
    if (st) tool_dataset_free(out);
    idx_close(&fi);
    idx_close(&fl);
    return st;
}
