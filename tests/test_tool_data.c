/* test_tool_data.c - CIFAR-10 and IDX loaders of the tool: small generated files, and every refusal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "tool.h"

static char root[256];

static void path_of(char *buf, size_t n, const char *rel)
{
    snprintf(buf, n, "%s/%s", root, rel);
}

static void write_bytes(const char *rel, const unsigned char *data, size_t len)
{
    char p[512];
    path_of(p, sizeof p, rel);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fclose(f);
}

static void write_gz(const char *rel, const unsigned char *data, size_t len)
{
    char p[512];
    path_of(p, sizeof p, rel);
    gzFile f = gzopen(p, "wb");
    if (!f || gzwrite(f, data, (unsigned)len) != (int)len) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    gzclose(f);
}

static void mkd(const char *rel)
{
    char p[512];
    path_of(p, sizeof p, rel);
    mkdir(p, 0755);
}

/* A CIFAR batch of `n` records: record r of batch b has label (b + r) % 10 and pixels (b*31 + r*7 + i) % 256. */
static unsigned char *cifar_batch(int b, int n)
{
    unsigned char *d = malloc((size_t)n * 3073);
    for (int r = 0; r < n; r++) {
        d[(size_t)r * 3073] = (unsigned char)((b + r) % 10);
        for (int i = 0; i < 3072; i++) d[(size_t)r * 3073 + 1 + i] = (unsigned char)((b * 31 + r * 7 + i) % 256);
    }
    return d;
}

static void put_cifar(const char *dir, int b, int n)
{
    char rel[256];
    if (b == 0)
        snprintf(rel, sizeof rel, "%s/test_batch.bin", dir);
    else
        snprintf(rel, sizeof rel, "%s/data_batch_%d.bin", dir, b);
    unsigned char *d = cifar_batch(b, n);
    write_bytes(rel, d, (size_t)n * 3073);
    free(d);
}

/* Expects failure `status` with a message containing both needles. */
static void expect_err(int got, int status, const char *err, const char *n1, const char *n2, const char *what)
{
    TU_CHECK(got == status, "%s: status %d, expected %d (%s)", what, got, status, err);
    TU_CHECK(strstr(err, n1) != NULL, "%s: message '%s' does not contain '%s'", what, err, n1);
    if (n2) TU_CHECK(strstr(err, n2) != NULL, "%s: message '%s' does not contain '%s'", what, err, n2);
}

static void test_cifar(void)
{
    char err[TOOL_ERR_LEN], p[512];
    tool_dataset d;
    mkd("cifar");
    mkd("cifar/cifar-10-batches-bin");
    int counts[6] = {4, 3, 2, 2, 2, 1}; /* test, batch 1..5 */
    for (int b = 0; b <= 5; b++) put_cifar("cifar/cifar-10-batches-bin", b, counts[b]);

    /* Parent folder, standard names (no meta file). */
    path_of(p, sizeof p, "cifar");
    int st = tool_load_cifar10(p, 1, &d, err);
    TU_CHECK(st == 0, "cifar train: %s", err);
    if (st == 0) {
        TU_CHECK(d.n == 10 && d.c == 3 && d.h == 32 && d.w == 32 && d.classes == 10, "cifar train shape n=%d", d.n);
        /* Record order: batch 1 first, records in file order. Index 5 is batch 2 record 2. */
        int ok = 1, idx = 0;
        for (int b = 1; b <= 5; b++)
            for (int r = 0; r < counts[b]; r++, idx++) {
                ok &= d.labels[idx] == (b + r) % 10;
                for (int i = 0; i < 3072; i += 511) ok &= d.pixels[(size_t)idx * 3072 + i] == (b * 31 + r * 7 + i) % 256;
            }
        TU_CHECK(ok, "cifar train contents differ");
        TU_CHECK(strcmp(d.class_names[0], "airplane") == 0 && strcmp(d.class_names[9], "truck") == 0,
                 "standard class names expected, got %s..%s", d.class_names[0], d.class_names[9]);
        tool_dataset_free(&d);
    }
    /* The batches folder itself, with names from batches.meta.txt. */
    const char *meta = "a0\na1\na2\na3\na4\na5\na6\na7\na8\na9\n\n";
    write_bytes("cifar/cifar-10-batches-bin/batches.meta.txt", (const unsigned char *)meta, strlen(meta));
    path_of(p, sizeof p, "cifar/cifar-10-batches-bin");
    st = tool_load_cifar10(p, 0, &d, err);
    TU_CHECK(st == 0, "cifar test: %s", err);
    if (st == 0) {
        TU_CHECK(d.n == 4 && d.labels[3] == 3 && d.pixels[3 * 3072 + 100] == (3 * 7 + 100) % 256, "cifar test contents");
        TU_CHECK(strcmp(d.class_names[0], "a0") == 0 && strcmp(d.class_names[9], "a9") == 0,
                 "meta class names expected, got %s", d.class_names[0]);
        tool_dataset_free(&d);
    }

    /* Missing batch: the message names it. */
    path_of(p, sizeof p, "cifar/cifar-10-batches-bin/data_batch_3.bin");
    char moved[600];
    snprintf(moved, sizeof moved, "%s.away", p);
    rename(p, moved);
    path_of(p, sizeof p, "cifar");
    expect_err(tool_load_cifar10(p, 1, &d, err), CLT_ERR_IO, err, "data_batch_3.bin", "missing", "missing batch");
    TU_CHECK(d.pixels == NULL && d.n == 0, "failed load leaves an empty dataset");
    path_of(p, sizeof p, "cifar/cifar-10-batches-bin/data_batch_3.bin");
    rename(moved, p);

    /* Truncated batch (wrong size). */
    unsigned char *b4 = cifar_batch(4, 2);
    write_bytes("cifar/cifar-10-batches-bin/data_batch_4.bin", b4, 2 * 3073 - 5);
    path_of(p, sizeof p, "cifar");
    expect_err(tool_load_cifar10(p, 1, &d, err), CLT_ERR_FORMAT, err, "data_batch_4.bin", "wrong size", "truncated");
    write_bytes("cifar/cifar-10-batches-bin/data_batch_4.bin", b4, 0);
    expect_err(tool_load_cifar10(p, 1, &d, err), CLT_ERR_FORMAT, err, "data_batch_4.bin", "wrong size", "empty");
    /* Bad label in record 1. */
    b4[3073] = 10;
    write_bytes("cifar/cifar-10-batches-bin/data_batch_4.bin", b4, 2 * 3073);
    expect_err(tool_load_cifar10(p, 1, &d, err), CLT_ERR_FORMAT, err, "data_batch_4.bin", "bad label 10 at record 1",
               "bad label");
    free(b4);
    /* Nothing there at all. */
    path_of(p, sizeof p, "nowhere");
    expect_err(tool_load_cifar10(p, 0, &d, err), CLT_ERR_IO, err, "test_batch.bin", "missing", "no folder");
}

/* IDX image file: n images rows x cols, pixel i of image k = (k*13 + i) % 256; labels k % 10. */
static size_t idx_images(unsigned char *buf, uint32_t n, uint32_t rows, uint32_t cols)
{
    uint32_t h[4] = {0x00000803, n, rows, cols};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) buf[i * 4 + j] = (unsigned char)(h[i] >> (24 - 8 * j));
    for (uint32_t k = 0; k < n; k++)
        for (uint32_t i = 0; i < rows * cols; i++) buf[16 + k * rows * cols + i] = (unsigned char)((k * 13 + i) % 256);
    return 16 + (size_t)n * rows * cols;
}

static size_t idx_labels(unsigned char *buf, uint32_t n)
{
    uint32_t h[2] = {0x00000801, n};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) buf[i * 4 + j] = (unsigned char)(h[i] >> (24 - 8 * j));
    for (uint32_t k = 0; k < n; k++) buf[8 + k] = (unsigned char)(k % 10);
    return 8 + n;
}

static void check_idx(const tool_dataset *d, int n, int rows, int cols, const char *what)
{
    TU_CHECK(d->n == n && d->c == 1 && d->h == rows && d->w == cols && d->classes == 10, "%s: shape", what);
    int ok = 1;
    for (int k = 0; k < n; k++) {
        ok &= d->labels[k] == k % 10;
        for (int i = 0; i < rows * cols; i++) ok &= d->pixels[(size_t)k * rows * cols + i] == (k * 13 + i) % 256;
    }
    TU_CHECK(ok, "%s: contents differ", what);
}

static void test_idx(void)
{
    char err[TOOL_ERR_LEN], p[512];
    tool_dataset d;
    unsigned char img[16 + 12 * 5 * 4], lab[8 + 16]; /* room for 2 trailing bytes */
    mkd("idx");
    /* Plain files, train split, digit names. */
    size_t il = idx_images(img, 12, 5, 4), ll = idx_labels(lab, 12);
    write_bytes("idx/train-images-idx3-ubyte", img, il);
    write_bytes("idx/train-labels-idx1-ubyte", lab, ll);
    path_of(p, sizeof p, "idx");
    int st = tool_load_idx(p, 1, 0, &d, err);
    TU_CHECK(st == 0, "idx plain: %s", err);
    if (st == 0) {
        check_idx(&d, 12, 5, 4, "idx plain");
        TU_CHECK(strcmp(d.class_names[7], "7") == 0, "digit names");
        tool_dataset_free(&d);
    }
    /* Gzip files, test split, fashion names. */
    il = idx_images(img, 7, 3, 3);
    ll = idx_labels(lab, 7);
    write_gz("idx/t10k-images-idx3-ubyte.gz", img, il);
    write_gz("idx/t10k-labels-idx1-ubyte.gz", lab, ll);
    st = tool_load_idx(p, 0, 1, &d, err);
    TU_CHECK(st == 0, "idx gz: %s", err);
    if (st == 0) {
        check_idx(&d, 7, 3, 3, "idx gz");
        TU_CHECK(strcmp(d.class_names[0], "T-shirt/top") == 0 && strcmp(d.class_names[9], "Ankle boot") == 0,
                 "fashion names");
        tool_dataset_free(&d);
    }
    /* Truncated gzip stream. */
    {
        char gp[512];
        path_of(gp, sizeof gp, "idx/t10k-images-idx3-ubyte.gz");
        FILE *f = fopen(gp, "rb");
        unsigned char gzb[4096];
        size_t gl = fread(gzb, 1, sizeof gzb, f);
        fclose(f);
        write_bytes("idx/t10k-images-idx3-ubyte.gz", gzb, gl / 2);
        expect_err(tool_load_idx(p, 0, 1, &d, err), CLT_ERR_FORMAT, err, "t10k-images-idx3-ubyte.gz", NULL,
                   "truncated gz");
        write_bytes("idx/t10k-images-idx3-ubyte.gz", gzb, gl);
    }
    /* Image/label count mismatch. */
    ll = idx_labels(lab, 6);
    write_gz("idx/t10k-labels-idx1-ubyte.gz", lab, ll);
    expect_err(tool_load_idx(p, 0, 1, &d, err), CLT_ERR_FORMAT, err, "6 labels", "7 images", "count mismatch");

    /* Plain-file refusals. */
    il = idx_images(img, 12, 5, 4);
    ll = idx_labels(lab, 12);
    write_bytes("idx/train-images-idx3-ubyte", img, il - 3);
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_FORMAT, err, "train-images-idx3-ubyte", "truncated",
               "truncated images");
    write_bytes("idx/train-images-idx3-ubyte", img, 10);
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_FORMAT, err, "train-images-idx3-ubyte", "header",
               "truncated header");
    write_bytes("idx/train-images-idx3-ubyte", img, il);
    write_bytes("idx/train-labels-idx1-ubyte", lab, ll + 2);
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_FORMAT, err, "train-labels-idx1-ubyte", "trailing",
               "long labels");
    lab[3] = 0x03; /* an image magic in the label file */
    write_bytes("idx/train-labels-idx1-ubyte", lab, ll);
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_FORMAT, err, "train-labels-idx1-ubyte", "magic", "bad magic");
    lab[3] = 0x01;
    img[2] = 0x09;
    write_bytes("idx/train-images-idx3-ubyte", img, il);
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_FORMAT, err, "train-images-idx3-ubyte", "magic",
               "bad image magic");
    img[2] = 0x08;
    write_bytes("idx/train-images-idx3-ubyte", img, il);
    lab[8 + 5] = 10;
    write_bytes("idx/train-labels-idx1-ubyte", lab, ll);
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_FORMAT, err, "train-labels-idx1-ubyte",
               "bad label 10 at record 5", "bad label");
    char lp[512];
    path_of(lp, sizeof lp, "idx/train-labels-idx1-ubyte");
    unlink(lp);
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_IO, err, "train-labels-idx1-ubyte", "missing", "missing labels");
    /* Plain wins over gz when both exist. */
    write_bytes("idx/train-labels-idx1-ubyte", lab, ll); /* still has the bad label */
    lab[8 + 5] = 5;
    write_gz("idx/train-labels-idx1-ubyte.gz", lab, ll);
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_FORMAT, err, "train-labels-idx1-ubyte:", "bad label",
               "plain first");
    unlink(lp);
    st = tool_load_idx(p, 1, 0, &d, err);
    TU_CHECK(st == 0, "gz labels with plain images: %s", err);
    if (st == 0) tool_dataset_free(&d);
}

/* What a path that is not the expected kind of file is called, and that nothing blocks on a FIFO (alarm:
 * a hang fails the test instead of waiting for meson's timeout). */
static void test_special_files(void)
{
    char err[TOOL_ERR_LEN], p[512], q[512];
    tool_dataset d;
    unsigned char img[16 + 4 * 3 * 3], lab[8 + 4];
    alarm(60);
    mkd("sp");
    size_t il = idx_images(img, 4, 3, 3), ll = idx_labels(lab, 4);
    write_bytes("sp/train-images-idx3-ubyte", img, il);
    path_of(p, sizeof p, "sp/train-labels-idx1-ubyte");
    TU_CHECK(mkfifo(p, 0600) == 0, "mkfifo");
    path_of(q, sizeof q, "sp");
    expect_err(tool_load_idx(q, 1, 0, &d, err), CLT_ERR_IO, err, "train-labels-idx1-ubyte: is a FIFO, not a regular "
               "file", NULL, "IDX labels as a FIFO");
    unlink(p);
    /* A symbolic link loop, for the plain name and (plain missing) for the .gz name. */
    TU_CHECK(symlink("train-labels-idx1-ubyte", p) == 0, "symlink");
    expect_err(tool_load_idx(q, 1, 0, &d, err), CLT_ERR_IO, err, "train-labels-idx1-ubyte: too many levels of symbolic "
               "links", NULL, "IDX labels as a symlink loop");
    unlink(p);
    path_of(p, sizeof p, "sp/train-labels-idx1-ubyte.gz");
    TU_CHECK(symlink("train-labels-idx1-ubyte.gz", p) == 0, "symlink gz");
    expect_err(tool_load_idx(q, 1, 0, &d, err), CLT_ERR_IO, err, "train-labels-idx1-ubyte.gz: too many levels",
               NULL, "IDX .gz labels as a symlink loop");
    unlink(p);
    /* A folder where a file is expected. */
    mkd("sp/train-labels-idx1-ubyte");
    expect_err(tool_load_idx(q, 1, 0, &d, err), CLT_ERR_IO, err, "train-labels-idx1-ubyte: is a folder, not a "
               "regular file", NULL, "IDX labels as a folder");
    path_of(p, sizeof p, "sp/train-labels-idx1-ubyte");
    rmdir(p);
    write_bytes("sp/train-labels-idx1-ubyte", lab, ll);
    int st = tool_load_idx(q, 1, 0, &d, err);
    TU_CHECK(st == 0, "the repaired folder loads: %s", err);
    if (st == 0) tool_dataset_free(&d);
    /* The data folder itself: a file, a FIFO, a symlink loop. */
    path_of(p, sizeof p, "sp/train-images-idx3-ubyte");
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_IO, err, "train-images-idx3-ubyte: not a folder (it is a "
               "regular file)", NULL, "a file as the IDX folder");
    expect_err(tool_load_cifar10(p, 1, &d, err), CLT_ERR_IO, err, "not a folder (it is a regular file)", NULL,
               "a file as the CIFAR folder");
    path_of(p, sizeof p, "sp/fifo");
    TU_CHECK(mkfifo(p, 0600) == 0, "mkfifo folder");
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_IO, err, "sp/fifo: not a folder (it is a FIFO)", NULL,
               "a FIFO as the IDX folder");
    unlink(p);
    TU_CHECK(symlink("fifo", p) == 0, "symlink folder");
    expect_err(tool_load_idx(p, 1, 0, &d, err), CLT_ERR_IO, err, "sp/fifo: too many levels of symbolic links", NULL,
               "a symlink loop as the IDX folder");
    expect_err(tool_load_cifar10(p, 1, &d, err), CLT_ERR_IO, err, "sp/fifo: too many levels of symbolic links", NULL,
               "a symlink loop as the CIFAR folder");
    unlink(p);

    /* CIFAR: a FIFO as a batch and as the optional class-name file. */
    mkd("spc");
    for (int b = 0; b <= 5; b++) put_cifar("spc", b, 1);
    path_of(p, sizeof p, "spc/batches.meta.txt");
    TU_CHECK(mkfifo(p, 0600) == 0, "mkfifo meta");
    path_of(q, sizeof q, "spc");
    expect_err(tool_load_cifar10(q, 0, &d, err), CLT_ERR_IO, err, "batches.meta.txt: is a FIFO, not a regular file",
               NULL, "batches.meta.txt as a FIFO");
    unlink(p);
    path_of(p, sizeof p, "spc/test_batch.bin");
    unlink(p);
    TU_CHECK(mkfifo(p, 0600) == 0, "mkfifo batch");
    expect_err(tool_load_cifar10(q, 0, &d, err), CLT_ERR_IO, err, "test_batch.bin: is a FIFO, not a regular file",
               NULL, "a CIFAR batch as a FIFO");
    unlink(p);
    alarm(0);
}

/* Gzip IDX files: the header is checked before the body is inflated, a damaged stream is an error naming
 * the file and zlib's message, and exactly the implied bytes are read. */
static void test_idx_gzip(void)
{
    char err[TOOL_ERR_LEN], p[512];
    tool_dataset d;
    unsigned char img[16 + 5 * 4 * 4], lab[8 + 5];
    mkd("gz");
    path_of(p, sizeof p, "gz");
    size_t il = idx_images(img, 5, 4, 4), ll = idx_labels(lab, 5);
    write_bytes("gz/t10k-labels-idx1-ubyte", lab, ll);
    write_gz("gz/t10k-images-idx3-ubyte.gz", img, il);
    int st = tool_load_idx(p, 0, 0, &d, err);
    TU_CHECK(st == 0, "gz images: %s", err);
    if (st == 0) tool_dataset_free(&d);
    char gp[512];
    path_of(gp, sizeof gp, "gz/t10k-images-idx3-ubyte.gz");
    size_t gl = 0;
    unsigned char gzb[4096];
    {
        FILE *f = fopen(gp, "rb");
        gl = fread(gzb, 1, sizeof gzb, f);
        fclose(f);
    }
    unsigned char bad[4096];
    /* A damaged gzip magic: zlib would pass the bytes through as a plain file. */
    memcpy(bad, gzb, gl);
    bad[0] ^= 0x01;
    write_bytes("gz/t10k-images-idx3-ubyte.gz", bad, gl);
    expect_err(tool_load_idx(p, 0, 0, &d, err), CLT_ERR_FORMAT, err, "t10k-images-idx3-ubyte.gz: not gzip data", NULL,
               "gz with a damaged magic");
    /* A damaged compression method byte. */
    memcpy(bad, gzb, gl);
    bad[2] = 9;
    write_bytes("gz/t10k-images-idx3-ubyte.gz", bad, gl);
    expect_err(tool_load_idx(p, 0, 0, &d, err), CLT_ERR_FORMAT, err, "t10k-images-idx3-ubyte.gz: corrupt gzip data",
               "zlib: unknown compression method", "gz with a damaged header");
    /* A damaged CRC at the end of the stream (the data itself inflates). */
    memcpy(bad, gzb, gl);
    bad[gl - 6] ^= 0xff;
    write_bytes("gz/t10k-images-idx3-ubyte.gz", bad, gl);
    expect_err(tool_load_idx(p, 0, 0, &d, err), CLT_ERR_FORMAT, err, "t10k-images-idx3-ubyte.gz: corrupt gzip data",
               "incorrect data check", "gz with a wrong CRC");
    /* Gzip data without the .gz name is still inflated. */
    write_bytes("gz/t10k-images-idx3-ubyte", gzb, gl);
    st = tool_load_idx(p, 0, 0, &d, err);
    TU_CHECK(st == 0, "gzip data under the plain name: %s", err);
    if (st == 0) {
        check_idx(&d, 5, 4, 4, "gzip data under the plain name");
        tool_dataset_free(&d);
    }
    path_of(gp, sizeof gp, "gz/t10k-images-idx3-ubyte");
    unlink(gp);
    /* Trailing data inside the stream, and a stream shorter than its header says. */
    unsigned char big[16 + 5 * 4 * 4 + 3] = {0};
    memcpy(big, img, il);
    write_gz("gz/t10k-images-idx3-ubyte.gz", big, il + 3);
    expect_err(tool_load_idx(p, 0, 0, &d, err), CLT_ERR_FORMAT, err, "t10k-images-idx3-ubyte.gz: trailing data after "
               "the 80 bytes", NULL, "gz with trailing data");
    write_gz("gz/t10k-images-idx3-ubyte.gz", img, il - 7);
    expect_err(tool_load_idx(p, 0, 0, &d, err), CLT_ERR_FORMAT, err, "t10k-images-idx3-ubyte.gz: truncated: 73 of the 80 "
               "bytes of pixels", NULL, "gz shorter than its header");
    /* A header claiming 60000 images of 4096x4096 (over the limit) in a tiny file: refused from the header. */
    uint32_t h[4] = {0x00000803, 60000, 4096, 4096};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) big[i * 4 + j] = (unsigned char)(h[i] >> (24 - 8 * j));
    write_gz("gz/t10k-images-idx3-ubyte.gz", big, 16);
    expect_err(tool_load_idx(p, 0, 0, &d, err), CLT_ERR_FORMAT, err, "t10k-images-idx3-ubyte.gz: implausible "
               "dimensions 60000 x 4096 x 4096", NULL, "a header over the size limit");
    /* 1000 images of 28x28 claimed by a 16-byte stream: truncated, reported after reading only the header. */
    h[1] = 1000, h[2] = 28, h[3] = 28;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) big[i * 4 + j] = (unsigned char)(h[i] >> (24 - 8 * j));
    write_gz("gz/t10k-images-idx3-ubyte.gz", big, 16);
    expect_err(tool_load_idx(p, 0, 0, &d, err), CLT_ERR_FORMAT, err, "5 labels", "1000 images",
               "label count checked before the pixels are inflated");
    /* A truncated gzip header. */
    write_bytes("gz/t10k-images-idx3-ubyte.gz", gzb, 5);
    expect_err(tool_load_idx(p, 0, 0, &d, err), CLT_ERR_FORMAT, err, "t10k-images-idx3-ubyte.gz", "of the header",
               "gz cut inside its header");
}

/* Debian's dataset-fashion-mnist package, when installed. */
static void test_debian_fashion(void)
{
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat s;
    if (stat(dir, &s) != 0) {
        printf("skip: %s not installed\n", dir);
        return;
    }
    char err[TOOL_ERR_LEN];
    tool_dataset d;
    int st = tool_load_idx(dir, 0, 1, &d, err);
    TU_CHECK(st == 0, "fashion-mnist test split: %s", err);
    if (st == 0) {
        TU_CHECK(d.n == 10000 && d.h == 28 && d.w == 28 && d.c == 1, "fashion test n=%d %dx%d", d.n, d.h, d.w);
        int hist[10] = {0};
        for (int i = 0; i < d.n; i++) hist[d.labels[i]]++;
        for (int k = 0; k < 10; k++) TU_CHECK(hist[k] == 1000, "class %d has %d test images", k, hist[k]);
        tool_dataset_free(&d);
    }
}

static void rm_rf(const char *p)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", p);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/clt_tool_data_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_cifar();
    test_idx();
    test_special_files();
    test_idx_gzip();
    test_debian_fashion();
    rm_rf(root);
    return tu_finish("test_tool_data");
}
