/* data.c - dataset loaders of the cltrain tool: CIFAR-10 binary batches and MNIST/Fashion-MNIST IDX files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
static void cifar_meta_names(const char *dir, tool_dataset *d)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
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
}

int tool_load_cifar10(const char *dir, int train, tool_dataset *out, char *err)
{
    if (!dir || !out) return tool_fail(err, CLT_ERR_INVALID, "tool_load_cifar10: NULL argument");
    memset(out, 0, sizeof *out);
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
        if (stat(path, &st) != 0)
            return tool_fail(err, CLT_ERR_IO, "%s: missing (%s); expected the CIFAR-10 binary version "
                             "(cifar-10-binary.tar.gz) in %s or %s/cifar-10-batches-bin", path, strerror(errno), dir,
                             dir);
        if (!S_ISREG(st.st_mode)) return tool_fail(err, CLT_ERR_IO, "%s: not a regular file", path);
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
        FILE *f = fopen(path, "rb");
        if (!f) {
            int e = errno;
            free(rec);
            tool_dataset_free(out);
            return tool_fail(err, CLT_ERR_IO, "%s: cannot open (%s)", path, strerror(e));
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
    cifar_meta_names(base, out);
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ IDX */

/* Reads a whole IDX file, plain or gzip (gzread passes plain files through, but the name decides which
 * file is opened). On success *data holds *len bytes. */
static int read_idx_file(const char *dir, const char *name, char *used, size_t used_len, unsigned char **data,
                         size_t *len, char *err)
{
    char plain[4096], gz[4200];
    snprintf(plain, sizeof plain, "%s/%s", dir, name);
    snprintf(gz, sizeof gz, "%s.gz", plain);
    const char *path = is_file(plain) ? plain : is_file(gz) ? gz : NULL;
    if (!path)
        return tool_fail(err, CLT_ERR_IO, "%s: missing (neither %s nor %s.gz exists)", plain, name, name);
    snprintf(used, used_len, "%s", path);
    gzFile f = gzopen(path, "rb");
    if (!f) return tool_fail(err, CLT_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        gzclose(f);
        return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= ((size_t)1 << 32)) {
                free(buf);
                gzclose(f);
                return tool_fail(err, CLT_ERR_FORMAT, "%s: larger than 4 GiB, not an MNIST-like IDX file", path);
            }
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                gzclose(f);
                return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t want = cap - n > (1u << 30) ? (1u << 30) : cap - n;
        int got = gzread(f, buf + n, (unsigned)want);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            char m[256];
            snprintf(m, sizeof m, "%s", zerr == Z_ERRNO ? strerror(errno) : msg);
            free(buf);
            gzclose(f);
            return tool_fail(err, zerr == Z_ERRNO ? CLT_ERR_IO : CLT_ERR_FORMAT, "%s: corrupt or unreadable (%s)", path,
                             m);
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    /* A truncated gzip stream ends without an error from gzread on some zlib versions; gzerror tells. */
    int zerr = Z_OK;
    const char *msg = gzerror(f, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        char m[256];
        snprintf(m, sizeof m, "%s", msg);
        free(buf);
        gzclose(f);
        return tool_fail(err, CLT_ERR_FORMAT, "%s: corrupt or truncated gzip data (%s)", path, m);
    }
    gzclose(f);
    *data = buf;
    *len = n;
    return CLT_OK;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int tool_load_idx(const char *dir, int train, int fashion, tool_dataset *out, char *err)
{
    if (!dir || !out) return tool_fail(err, CLT_ERR_INVALID, "tool_load_idx: NULL argument");
    memset(out, 0, sizeof *out);
    const char *img_name = train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    const char *lab_name = train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte";
    char ipath[4300], lpath[4300];
    unsigned char *img = NULL, *lab = NULL;
    size_t ilen = 0, llen = 0;
    int st = read_idx_file(dir, img_name, ipath, sizeof ipath, &img, &ilen, err);
    if (st) return st;
    st = read_idx_file(dir, lab_name, lpath, sizeof lpath, &lab, &llen, err);
    if (st) {
        free(img);
        return st;
    }
    /* Images: magic 0x00000803 (unsigned bytes, 3 dims), count, rows, cols, then pixels row-major. */
    if (ilen < 16) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: truncated header (%zu bytes; an IDX image file starts with 16)", ipath,
                       ilen);
        goto done;
    }
    if (be32(img) != 0x00000803) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: bad magic number 0x%08x (expected 0x00000803: unsigned-byte images "
                       "with 3 dimensions)", ipath, be32(img));
        goto done;
    }
    uint32_t n = be32(img + 4), rows = be32(img + 8), cols = be32(img + 12);
    if (n == 0 || rows == 0 || cols == 0 || rows > 4096 || cols > 4096 || n > 100000000) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: implausible dimensions %u x %u x %u", ipath, n, rows, cols);
        goto done;
    }
    size_t want = 16 + (size_t)n * rows * cols;
    if (ilen != want) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: %zu bytes, but the header (%u images of %ux%u) implies %zu (%s)",
                       ipath, ilen, n, rows, cols, want, ilen < want ? "truncated" : "trailing data");
        goto done;
    }
    /* Labels: magic 0x00000801, count, then one byte each. */
    if (llen < 8) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: truncated header (%zu bytes; an IDX label file starts with 8)", lpath,
                       llen);
        goto done;
    }
    if (be32(lab) != 0x00000801) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: bad magic number 0x%08x (expected 0x00000801: unsigned-byte labels "
                       "with 1 dimension)", lpath, be32(lab));
        goto done;
    }
    uint32_t nl = be32(lab + 4);
    if (llen != 8 + (size_t)nl) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: %zu bytes, but the header (%u labels) implies %zu (%s)", lpath, llen,
                       nl, 8 + (size_t)nl, llen < 8 + (size_t)nl ? "truncated" : "trailing data");
        goto done;
    }
    if (nl != n) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s has %u labels but %s has %u images", lpath, nl, ipath, n);
        goto done;
    }
    for (uint32_t i = 0; i < n; i++)
        if (lab[8 + i] > 9) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: bad label %d at record %u (labels are 0..9)", lpath, lab[8 + i],
                           i);
            goto done;
        }
    out->pixels = malloc((size_t)n * rows * cols);
    out->labels = malloc(n);
    if (!out->pixels || !out->labels) {
        tool_dataset_free(out);
        st = tool_fail(err, CLT_ERR_NOMEM, "out of memory loading %s", ipath);
        goto done;
    }
    memcpy(out->pixels, img + 16, (size_t)n * rows * cols);
    memcpy(out->labels, lab + 8, n);
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
    free(img);
    free(lab);
    return st;
}
