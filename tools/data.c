/* data.c - data sets of the cltrain tool: CIFAR-10 (folder or tarball), MNIST/Fashion-MNIST IDX, where they live. */
#include <archive.h>
#include <archive_entry.h>
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

/* ------------------------------------------------------------------------------------------ CIFAR-10 tarball */

/* The members of the binary distribution we read, and where each is found (index into cifar_members). */
static const char *const cifar_members[7] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                             "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin",
                                             "batches.meta.txt"};
#define CIFAR_META 6
#define CIFAR_MAX_BATCH_BYTES (1ll << 31) /* the official batches are 30 MB; more is not a CIFAR batch */

/* Index of the member an entry name stands for, or -1. Only "NAME", "./NAME", "cifar-10-batches-bin/NAME"
 * (and "./" before that) match: anything with "..", an absolute path or another folder is not ours. */
static int cifar_member_of(const char *name)
{
    while (name[0] == '.' && name[1] == '/') name += 2;
    const char *dir = "cifar-10-batches-bin/";
    if (!strncmp(name, dir, strlen(dir))) name += strlen(dir);
    for (int i = 0; i < 7; i++)
        if (!strcmp(name, cifar_members[i])) return i;
    return -1;
}

/* Reads the current entry (size bytes from its header) into a new buffer; the entry must end there. */
static int archive_take(struct archive *a, const char *path, const char *name, long long size, unsigned char **buf,
                        char *err)
{
    *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!*buf) return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory reading %s (%lld bytes)", path, name, size);
    long long n = 0;
    while (n < size) {
        la_ssize_t got = archive_read_data(a, *buf + n, (size_t)(size - n > (1 << 20) ? (1 << 20) : size - n));
        if (got < 0)
            return tool_fail(err, CLT_ERR_FORMAT, "%s: cannot read %s (libarchive: %s)", path, name,
                             archive_error_string(a) ? archive_error_string(a) : "no message");
        if (got == 0)
            return tool_fail(err, CLT_ERR_FORMAT, "%s: %s is truncated: %lld of the %lld bytes its header gives "
                             "(the archive was cut short)", path, name, n, size);
        n += got;
    }
    return CLT_OK;
}

/* Copies whole CIFAR records into out at record `at`, checking labels. */
static int cifar_take_records(const unsigned char *buf, long long records, tool_dataset *out, size_t at,
                              const char *path, const char *name, char *err)
{
    for (long long r = 0; r < records; r++, at++) {
        const unsigned char *rec = buf + r * CIFAR_RECORD;
        if (rec[0] > 9)
            return tool_fail(err, CLT_ERR_FORMAT, "%s: %s: bad label %d at record %lld (labels are 0..9)", path, name,
                             rec[0], r);
        out->labels[at] = rec[0];
        memcpy(out->pixels + at * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS); /* already CHW */
    }
    return CLT_OK;
}

/* Class names from batches.meta.txt held in memory (as cifar_meta_names does for a file). */
static void cifar_meta_from(const unsigned char *buf, long long len, tool_dataset *d)
{
    char names[10][32];
    int n = 0;
    long long i = 0;
    while (n < 10 && i < len) {
        long long e = i;
        while (e < len && buf[e] != '\n') e++;
        long long s = i, t = e;
        while (s < t && (buf[s] == ' ' || buf[s] == '\t')) s++;
        while (t > s && (buf[t - 1] == '\r' || buf[t - 1] == ' ' || buf[t - 1] == '\t')) t--;
        if (t > s) snprintf(names[n++], sizeof names[0], "%.*s", (int)(t - s > 31 ? 31 : t - s), (const char *)buf + s);
        i = e + 1;
    }
    if (n == 10)
        for (int k = 0; k < 10; k++) memcpy(d->class_names[k], names[k], sizeof names[k]);
}

/* One pass over the archive: the wanted members are read into bufs[], everything else is skipped. */
static int cifar_archive_scan(const char *path, const int want[7], unsigned char *bufs[7], long long sizes[7],
                              char *err)
{
    int fd = tool_open_regular(path, "data archive", err);
    if (fd < 0) return fd;
    struct archive *a = archive_read_new();
    if (!a) {
        close(fd);
        return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory", path);
    }
    /* gzip or nothing, tar in any of its dialects: no filter that runs an external program. */
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    int st = CLT_OK;
    if (archive_read_open_fd(a, fd, 1 << 17) != ARCHIVE_OK) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: cannot be read as a tar or tar.gz archive (libarchive: %s); expected "
                       "the CIFAR-10 binary version, cifar-10-binary.tar.gz", path,
                       archive_error_string(a) ? archive_error_string(a) : "no message");
        goto done;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: corrupt or truncated archive (libarchive: %s)", path,
                           archive_error_string(a) ? archive_error_string(a) : "no message");
            goto done;
        }
        const char *name = archive_entry_pathname(e);
        int m = name ? cifar_member_of(name) : -1;
        if (m < 0 || archive_entry_filetype(e) != AE_IFREG || !want[m]) continue; /* next_header skips the data */
        if (bufs[m]) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: %s appears twice in the archive", path, cifar_members[m]);
            goto done;
        }
        long long size = archive_entry_size_is_set(e) ? (long long)archive_entry_size(e) : -1;
        if (m != CIFAR_META && (size <= 0 || size % CIFAR_RECORD != 0 || size > CIFAR_MAX_BATCH_BYTES)) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: %s has %lld bytes, not a non-zero multiple of the %d-byte "
                           "CIFAR-10 record (not a CIFAR-10 binary batch)", path, name, size, CIFAR_RECORD);
            goto done;
        }
        if (m == CIFAR_META && (size < 0 || size > 65536)) continue; /* optional; an odd one is ignored */
        sizes[m] = size;
        if ((st = archive_take(a, path, name, size, &bufs[m], err)) != 0) goto done;
    }
done:
    archive_read_free(a); /* closes nothing: archive_read_open_fd leaves fd to us */
    close(fd);
    return st;
}

int tool_load_cifar10_archive(const char *path, int train, tool_dataset *out, char *err)
{
    if (!path || !out) return tool_fail(err, CLT_ERR_INVALID, "tool_load_cifar10_archive: NULL argument");
    memset(out, 0, sizeof *out);
    int want[7] = {0};
    for (int i = 0; i < 5; i++) want[i] = train;
    want[5] = !train;
    want[CIFAR_META] = 1;
    unsigned char *bufs[7] = {0};
    long long sizes[7] = {0}, total = 0;
    int st = cifar_archive_scan(path, want, bufs, sizes, err);
    for (int i = 0; i < 6 && !st; i++) {
        if (!want[i]) continue;
        if (!bufs[i])
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: no %s in the archive (expected the CIFAR-10 binary version, "
                           "cifar-10-binary.tar.gz, holding cifar-10-batches-bin/%s)", path, cifar_members[i],
                           cifar_members[i]);
        total += sizes[i] / CIFAR_RECORD;
    }
    if (!st) {
        out->n = (int)total, out->c = 3, out->h = 32, out->w = 32, out->classes = 10;
        out->pixels = malloc((size_t)total * CIFAR_PIXELS);
        out->labels = malloc((size_t)total);
        if (!out->pixels || !out->labels)
            st = tool_fail(err, CLT_ERR_NOMEM, "out of memory loading CIFAR-10 from %s", path);
    }
    size_t at = 0;
    for (int i = 0; i < 6 && !st; i++) {
        if (!want[i]) continue;
        st = cifar_take_records(bufs[i], sizes[i] / CIFAR_RECORD, out, at, path, cifar_members[i], err);
        at += (size_t)(sizes[i] / CIFAR_RECORD);
    }
    if (!st) {
        set_names(out, cifar_names);
        if (bufs[CIFAR_META]) cifar_meta_from(bufs[CIFAR_META], sizes[CIFAR_META], out);
    }
    for (int i = 0; i < 7; i++) free(bufs[i]);
    if (st) tool_dataset_free(out);
    return st;
}

/* ------------------------------------------------------------------------------------------ where data lives */

const char *tool_data_title(const char *dataset)
{
    return !strcmp(dataset, "cifar10") ? "CIFAR-10" : !strcmp(dataset, "mnist") ? "MNIST" : "Fashion-MNIST";
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int exists_in(const char *dir, const char *name)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return exists(p);
}

#define CIFAR_TARBALL "cifar-10-binary.tar.gz"

int tool_data_present(const char *dataset, const char *path)
{
    struct stat st;
    if (!path || !*path || stat(path, &st) != 0) return 0;
    if (!strcmp(dataset, "cifar10")) {
        if (S_ISREG(st.st_mode)) return 1;
        return exists_in(path, "data_batch_1.bin") || exists_in(path, "test_batch.bin") ||
               exists_in(path, "cifar-10-batches-bin") || exists_in(path, CIFAR_TARBALL);
    }
    return exists_in(path, "train-images-idx3-ubyte") || exists_in(path, "train-images-idx3-ubyte.gz") ||
           exists_in(path, "t10k-images-idx3-ubyte") || exists_in(path, "t10k-images-idx3-ubyte.gz");
}

int tool_load_data(const char *dataset, const char *path, int train, tool_dataset *out, char *err)
{
    if (!dataset || !path || !out) return tool_fail(err, CLT_ERR_INVALID, "tool_load_data: NULL argument");
    memset(out, 0, sizeof *out);
    int cifar = !strcmp(dataset, "cifar10");
    if (!cifar && strcmp(dataset, "mnist") && strcmp(dataset, "fashion-mnist"))
        return tool_fail(err, CLT_ERR_INVALID, "unknown dataset '%s'", dataset);
    struct stat st;
    int is_reg = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    if (cifar) {
        if (is_reg) return tool_load_cifar10_archive(path, train, out, err);
        /* The unpacked folder (or its parent) wins over a tarball next to it: it is faster to read. */
        if (exists(path) && !exists_in(path, "data_batch_1.bin") && !exists_in(path, "test_batch.bin") &&
            !exists_in(path, "cifar-10-batches-bin") && exists_in(path, CIFAR_TARBALL)) {
            char tar[4200];
            snprintf(tar, sizeof tar, "%s/%s", path, CIFAR_TARBALL);
            return tool_load_cifar10_archive(tar, train, out, err);
        }
        return tool_load_cifar10(path, train, out, err);
    }
    if (is_reg) {
        /* One of the IDX files: the folder holding it. */
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        if (!strstr(base, "-ubyte")) /* not an IDX file: the loader says the folder is a file */
            return tool_load_idx(path, train, !strcmp(dataset, "fashion-mnist"), out, err);
        char dir[4096];
        if (!slash) snprintf(dir, sizeof dir, ".");
        else snprintf(dir, sizeof dir, "%.*s", (int)(slash == path ? 1 : slash - path), path);
        return tool_load_idx(dir, train, !strcmp(dataset, "fashion-mnist"), out, err);
    }
    return tool_load_idx(path, train, !strcmp(dataset, "fashion-mnist"), out, err);
}

int tool_data_places(const char *dataset, tool_data_place places[TOOL_DATA_PLACES])
{
    memset(places, 0, sizeof(tool_data_place) * TOOL_DATA_PLACES);
    const char *e = getenv("CLTRAIN_DATA");
    if (e && *e) snprintf(places[0].path, sizeof places[0].path, "%s", e);
    snprintf(places[0].origin, sizeof places[0].origin, "$CLTRAIN_DATA");
    const char *x = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (x && *x) {
        snprintf(places[1].path, sizeof places[1].path, "%s/cltrain/%s", x, dataset);
        snprintf(places[1].origin, sizeof places[1].origin, "$XDG_DATA_HOME/cltrain/%s", dataset);
    } else {
        if (home && *home) snprintf(places[1].path, sizeof places[1].path, "%s/.local/share/cltrain/%s", home, dataset);
        snprintf(places[1].origin, sizeof places[1].origin, "~/.local/share/cltrain/%s", dataset);
    }
    if (!getcwd(places[2].path, sizeof places[2].path)) snprintf(places[2].path, sizeof places[2].path, ".");
    snprintf(places[2].origin, sizeof places[2].origin, "the current folder");
    if (strcmp(dataset, "fashion-mnist")) return 3;
    snprintf(places[3].path, sizeof places[3].path, "/usr/share/datasets/fashion-mnist");
    snprintf(places[3].origin, sizeof places[3].origin, "Debian's dataset-fashion-mnist");
    return 4;
}

void tool_data_howto(const char *dataset, const char *dir, char *buf, size_t len)
{
    if (!strcmp(dataset, "cifar10"))
        snprintf(buf, len, "mkdir -p %.500s && wget -P %.500s https://www.cs.toronto.edu/~kriz/" CIFAR_TARBALL
                 "  (the tarball is read as it is; unpacking it there works too)", dir, dir);
    else if (!strcmp(dataset, "fashion-mnist"))
        snprintf(buf, len, "sudo apt-get install dataset-fashion-mnist  (or put the four IDX .gz files in %.900s)", dir);
    else
        snprintf(buf, len, "mkdir -p %.500s && wget -P %.500s https://ossci-datasets.s3.amazonaws.com/mnist/"
                 "{train-images-idx3-ubyte,train-labels-idx1-ubyte,t10k-images-idx3-ubyte,t10k-labels-idx1-ubyte}.gz",
                 dir, dir);
}

/* Why a place does not hold the data set, for the "not found" message. */
static void place_why(const char *dataset, const tool_data_place *p, char *buf, size_t len)
{
    struct stat st;
    if (!p->path[0]) snprintf(buf, len, "%s is not set", !strcmp(p->origin, "$CLTRAIN_DATA") ? "CLTRAIN_DATA" : "HOME");
    else if (stat(p->path, &st) != 0) snprintf(buf, len, "%.900s: %s", p->path, strerror(errno));
    else if (!S_ISDIR(st.st_mode)) snprintf(buf, len, "%.900s: is %s", p->path, tool_file_kind(st.st_mode));
    else if (!strcmp(dataset, "cifar10"))
        snprintf(buf, len, "%.900s: no data_batch_1.bin, cifar-10-batches-bin/ or " CIFAR_TARBALL, p->path);
    else snprintf(buf, len, "%.900s: no train-images-idx3-ubyte[.gz]", p->path);
}

int tool_data_find(const char *dataset, const char *given, char *out, size_t outlen, char *origin,
                   size_t originlen, char *err)
{
    if (given) {
        snprintf(out, outlen, "%s", given);
        if (origin) snprintf(origin, originlen, "%s", "");
        return CLT_OK;
    }
    tool_data_place pl[TOOL_DATA_PLACES];
    int n = tool_data_places(dataset, pl);
    for (int i = 0; i < n; i++)
        if (pl[i].path[0] && tool_data_present(dataset, pl[i].path)) {
            snprintf(out, outlen, "%s", pl[i].path);
            if (origin) snprintf(origin, originlen, "%s", pl[i].origin);
            return CLT_OK;
        }
    char msg[TOOL_ERR_LEN], why[1200], how[1200];
    size_t l = (size_t)snprintf(msg, sizeof msg, "%s not found (no --data given). Looked in:", tool_data_title(dataset));
    for (int i = 0; i < n && l < sizeof msg; i++) {
        place_why(dataset, &pl[i], why, sizeof why);
        l += (size_t)snprintf(msg + l, sizeof msg - l, "\n  %s (%s)", pl[i].origin, why);
    }
    const char *fill = pl[1].path[0] ? pl[1].path : "DIR";
    tool_data_howto(dataset, fill, how, sizeof how);
    if (l < sizeof msg)
        snprintf(msg + l, sizeof msg - l, "\nTo fill one: %s\nor pass --data with %s.", how,
                 !strcmp(dataset, "cifar10") ? "the tarball, the cifar-10-batches-bin folder or its parent"
                                             : "the folder holding the IDX files");
    return tool_fail(err, CLT_ERR_IO, "%s", msg);
}
