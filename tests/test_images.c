/* test_images.c - image folders (tools/images.c) on PNG and JPEG files written here with libpng and libjpeg, and
 * `cltrain images` / `predict` end to end. usage: test_images CLTRAIN_BINARY WORKDIR */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "testutil.h"
#include "tool.h"

static const char *g_bin;
static char g_dir[3000];

/* ------------------------------------------------------------------------------------------ writers */

/* Interleaved (h,w,ch) 8-bit pixels as a PNG (gray or RGB). */
static int write_png(const char *path, const uint8_t *pix, int w, int h, int ch)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, ch == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(pix + (size_t)y * w * ch));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f);
}

static int write_jpeg(const char *path, const uint8_t *pix, int w, int h, int ch, int quality)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr em;
    ci.err = jpeg_std_error(&em);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = ch;
    ci.in_color_space = ch == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * ch);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return fclose(f);
}

static int write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

static unsigned char *read_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    *len = (size_t)n;
    return b;
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
    p[3] = (unsigned char)v;
}

/* A PNG whose IHDR claims w x h pixels, with a valid CRC, followed by a small IDAT and IEND: only the header is
 * needed to refuse it. */
static int write_png_header_only(const char *path, uint32_t w, uint32_t h)
{
    unsigned char b[8 + 25 + 12 + 12 + 12];
    size_t at = 0;
    memcpy(b, "\x89PNG\r\n\x1a\n", 8);
    at = 8;
    unsigned char *c = b + at;
    be32(c, 13);
    memcpy(c + 4, "IHDR", 4);
    be32(c + 8, w);
    be32(c + 12, h);
    c[16] = 8, c[17] = 2, c[18] = 0, c[19] = 0, c[20] = 0;
    be32(c + 21, (uint32_t)crc32(crc32(0, NULL, 0), c + 4, 17));
    at += 25;
    c = b + at;
    be32(c, 8); /* IDAT: 8 arbitrary bytes */
    memcpy(c + 4, "IDAT", 4);
    memset(c + 8, 0, 4);
    at += 12; /* (deliberately short: the decoder must not get that far) */
    if (write_bytes(path, b, at) < 0) return -1;
    return 0;
}

static void path_in(char *out, size_t len, const char *a, const char *b) { snprintf(out, len, "%.3000s/%.1000s", a, b); }

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* An RGB image of class k (0: reddish, 1: bluish, 2: greenish) with noise, w x h. */
static void class_image(int k, int w, int h, uint64_t *s, uint8_t *pix)
{
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < 3; c++) {
            int v = (c == k ? 180 : 60) + (int)(rng(s) % 41) - 20;
            pix[i * 3 + c] = (uint8_t)v;
        }
}

/* ------------------------------------------------------------------------------------------ decode + resize */

/* Area resampling reference in double: each output pixel is the coverage-weighted mean of the source pixels. */
static double area_ref(const uint8_t *src, int w, int h, int ch, int size, int c, int oy, int ox)
{
    double sx = (double)w / size, sy = (double)h / size, acc = 0, ws = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double ox0 = fmax(ox * sx, x), ox1 = fmin((ox + 1) * sx, x + 1);
            double oy0 = fmax(oy * sy, y), oy1 = fmin((oy + 1) * sy, y + 1);
            if (ox1 <= ox0 || oy1 <= oy0) continue;
            double wt = (ox1 - ox0) * (oy1 - oy0);
            acc += wt * src[((size_t)y * w + x) * ch + c];
            ws += wt;
        }
    return acc / ws;
}

static void test_decode(void)
{
    char p[4200], err[TOOL_ERR_LEN];
    int sizes[][3] = {{7, 5, 4}, {20, 9, 8}, {3, 3, 6}, {1, 1, 2}, {13, 17, 5}}; /* w, h, size: down and up */
    uint64_t s = 7;
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int w = sizes[t][0], h = sizes[t][1], size = sizes[t][2];
        for (int ch = 1; ch <= 3; ch += 2) {
            uint8_t *src = malloc((size_t)w * h * ch), *dst = malloc((size_t)ch * size * size);
            for (int i = 0; i < w * h * ch; i++) src[i] = (uint8_t)(rng(&s) % 256);
            path_in(p, sizeof p, g_dir, "d.png");
            TU_CHECK(write_png(p, src, w, h, ch) == 0, "write %s", p);
            int st = tool_read_image(p, size, ch, dst, err);
            TU_CHECK(st == 0, "decode %dx%d PNG: %s", w, h, err);
            double worst = 0;
            /* Every output pixel, corners and borders included: PNG is lossless, so only rounding differs. */
            for (int c = 0; c < ch && !st; c++)
                for (int y = 0; y < size; y++)
                    for (int x = 0; x < size; x++) {
                        double ref = area_ref(src, w, h, ch, size, c, y, x);
                        double d = fabs(dst[((size_t)c * size + y) * size + x] - ref);
                        if (d > worst) worst = d;
                    }
            TU_CHECK(worst <= 0.5 + 1e-6, "PNG %dx%dx%d -> %d: worst difference %.3f from the area reference", w, h,
                     ch, size, worst);
            free(src);
            free(dst);
        }
    }
    /* Gray PNG read as RGB replicates the channel; RGB read as gray is close to a luminance. */
    uint8_t g[16], rgb[48], out3[48], out1[16];
    for (int i = 0; i < 16; i++) g[i] = (uint8_t)(i * 16);
    path_in(p, sizeof p, g_dir, "g.png");
    write_png(p, g, 4, 4, 1);
    TU_CHECK(tool_read_image(p, 4, 3, out3, err) == 0, "gray PNG as RGB: %s", err);
    int same = 1;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 16; i++) same &= out3[c * 16 + i] == g[i];
    TU_CHECK(same, "a gray PNG read as RGB has three equal planes");
    for (int i = 0; i < 16; i++) rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = (uint8_t)(255 - i * 16);
    path_in(p, sizeof p, g_dir, "rgb.png");
    write_png(p, rgb, 4, 4, 3);
    TU_CHECK(tool_read_image(p, 4, 1, out1, err) == 0, "RGB PNG as gray: %s", err);
    int close = 1;
    for (int i = 0; i < 16; i++) close &= abs(out1[i] - (255 - i * 16)) <= 1;
    TU_CHECK(close, "a gray-valued RGB PNG read as gray keeps its values");
    /* JPEG is lossy: a smooth image within a few levels at quality 95. */
    uint8_t smooth[16 * 12 * 3], outj[3 * 16 * 12];
    for (int y = 0; y < 12; y++)
        for (int x = 0; x < 16; x++)
            for (int c = 0; c < 3; c++) smooth[(y * 16 + x) * 3 + c] = (uint8_t)(40 + x * 8 + y * 4 + c * 20);
    path_in(p, sizeof p, g_dir, "s.jpg");
    write_jpeg(p, smooth, 16, 12, 3, 95);
    int st = tool_read_image(p, 8, 3, outj, err);
    TU_CHECK(st == 0, "decode JPEG: %s", err);
    double worst = 0;
    for (int c = 0; c < 3 && !st; c++)
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                double d = fabs(outj[(c * 8 + y) * 8 + x] - area_ref(smooth, 16, 12, 3, 8, c, y, x));
                if (d > worst) worst = d;
            }
    TU_CHECK(worst <= 6, "JPEG 16x12 -> 8: worst difference %.1f (at most 6 expected at quality 95)", worst);
}

/* Expects status < 0 and a message holding every needle. */
static void expect_err(int st, const char *err, const char *what, const char *n1, const char *n2)
{
    int ok = st < 0 && strstr(err, n1) && (!n2 || strstr(err, n2));
    TU_CHECK(ok, "%s: expected an error with '%s'%s%s, got status %d: %s", what, n1, n2 ? " and " : "", n2 ? n2 : "",
             st, err);
    if (ok) fprintf(stderr, "  ok (%s): %s\n", what, err);
}

static void test_bad_files(void)
{
    char p[4200], err[TOOL_ERR_LEN];
    uint8_t out[3 * 8 * 8], pix[16 * 16 * 3];
    uint64_t s = 3;
    class_image(0, 16, 16, &s, pix);
    /* Truncated JPEG and PNG. */
    char good_jpg[4200], good_png[4200];
    path_in(good_jpg, sizeof good_jpg, g_dir, "good.jpg");
    path_in(good_png, sizeof good_png, g_dir, "good.png");
    write_jpeg(good_jpg, pix, 16, 16, 3, 90);
    write_png(good_png, pix, 16, 16, 3);
    size_t lj, lp;
    unsigned char *bj = read_bytes(good_jpg, &lj), *bp = read_bytes(good_png, &lp);
    TU_CHECK(bj && bp && lj > 200 && lp > 100, "reference files written");
    path_in(p, sizeof p, g_dir, "trunc.jpg");
    write_bytes(p, bj, lj / 2);
    expect_err(tool_read_image(p, 8, 3, out, err), err, "truncated JPEG", "trunc.jpg: corrupt or truncated JPEG",
               "Premature end");
    path_in(p, sizeof p, g_dir, "trunc.png");
    write_bytes(p, bp, lp - 20);
    expect_err(tool_read_image(p, 8, 3, out, err), err, "truncated PNG", "trunc.png: corrupt or truncated PNG", NULL);
    /* A flipped byte in PNG pixel data breaks its CRC. */
    bp[lp - 20] ^= 0x55;
    path_in(p, sizeof p, g_dir, "crc.png");
    write_bytes(p, bp, lp);
    expect_err(tool_read_image(p, 8, 3, out, err), err, "corrupt PNG", "crc.png: corrupt or truncated PNG", NULL);
    /* Garbage after a JPEG signature. */
    unsigned char junk[300];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(rng(&s) % 256);
    junk[0] = 0xFF, junk[1] = 0xD8, junk[2] = 0xFF;
    path_in(p, sizeof p, g_dir, "junk.jpg");
    write_bytes(p, junk, sizeof junk);
    expect_err(tool_read_image(p, 8, 3, out, err), err, "corrupt JPEG", "junk.jpg: corrupt or truncated JPEG", NULL);
    /* Headers that claim huge images: refused from the header alone. */
    path_in(p, sizeof p, g_dir, "huge.png");
    write_png_header_only(p, 100000, 100000);
    expect_err(tool_read_image(p, 8, 3, out, err), err, "100000x100000 PNG",
               "huge.png: the PNG header claims 100000x100000 pixels", "refused");
    /* JPEG sizes are 16-bit: 60000x60000 in the SOF0 marker of a real file. */
    unsigned char *bj2 = malloc(lj);
    memcpy(bj2, bj, lj);
    int patched = 0;
    for (size_t i = 0; i + 9 < lj && !patched; i++)
        if (bj2[i] == 0xFF && bj2[i + 1] == 0xC0) {
            bj2[i + 5] = 60000 >> 8, bj2[i + 6] = 60000 & 255, bj2[i + 7] = 60000 >> 8, bj2[i + 8] = 60000 & 255;
            patched = 1;
        }
    TU_CHECK(patched, "SOF0 marker found");
    path_in(p, sizeof p, g_dir, "huge.jpg");
    write_bytes(p, bj2, lj);
    expect_err(tool_read_image(p, 8, 3, out, err), err, "60000x60000 JPEG",
               "huge.jpg: the JPEG header claims 60000x60000 pixels", NULL);
    free(bj2);
    /* Not an image, empty, missing, a folder. */
    path_in(p, sizeof p, g_dir, "text.png");
    write_bytes(p, "hello, world\n", 13);
    expect_err(tool_read_image(p, 8, 3, out, err), err, "text file", "text.png: neither a JPEG nor a PNG", NULL);
    path_in(p, sizeof p, g_dir, "empty.jpg");
    write_bytes(p, "", 0);
    expect_err(tool_read_image(p, 8, 3, out, err), err, "empty file", "empty.jpg: empty file", NULL);
    path_in(p, sizeof p, g_dir, "missing.png");
    expect_err(tool_read_image(p, 8, 3, out, err), err, "missing file", "missing.png", "No such file");
    free(bj);
    free(bp);
}

/* ------------------------------------------------------------------------------------------ folders */

static void mkdirs(const char *a, const char *b)
{
    char p[4200];
    mkdir(a, 0755);
    if (b) {
        path_in(p, sizeof p, a, b);
        mkdir(p, 0755);
    }
}

/* DIR/{blue,green,red}/NNN.{png,jpg}: n images per class of w x h pixels (sizes vary when vary). */
static void gen_folder(const char *dir, int n, int w, int h, int vary, uint64_t seed)
{
    static const char *names[3] = {"red", "green", "blue"};
    uint64_t s = seed;
    mkdirs(dir, NULL);
    for (int k = 0; k < 3; k++) {
        mkdirs(dir, names[k]);
        for (int i = 0; i < n; i++) {
            int ww = vary ? w + i % 5 : w, hh = vary ? h + (i * 3) % 7 : h;
            uint8_t *pix = malloc((size_t)ww * hh * 3);
            class_image(k, ww, hh, &s, pix);
            char p[4200];
            snprintf(p, sizeof p, "%s/%s/%03d.%s", dir, names[k], i, i % 2 ? "jpg" : "png");
            if (i % 2) write_jpeg(p, pix, ww, hh, 3, 90);
            else write_png(p, pix, ww, hh, 3);
            free(pix);
        }
    }
}

static void test_folders(void)
{
    char dir[4200], p[4200], err[TOOL_ERR_LEN];
    tool_dataset d, v;
    path_in(dir, sizeof dir, g_dir, "f1");
    gen_folder(dir, 5, 12, 10, 1, 11);
    path_in(p, sizeof p, dir, "blue/notes.txt");
    write_bytes(p, "ignored", 7);
    int st = tool_load_image_folder(dir, 8, 3, &d, err);
    TU_CHECK(st == 0, "load %s: %s", dir, err);
    if (st == 0) {
        TU_CHECK(d.n == 15 && d.classes == 3 && d.c == 3 && d.h == 8 && d.w == 8, "15 images of 3x8x8 in 3 classes "
                 "(got %d, %d, %dx%dx%d)", d.n, d.classes, d.c, d.h, d.w);
        TU_CHECK(!strcmp(d.class_names[0], "blue") && !strcmp(d.class_names[1], "green") &&
                 !strcmp(d.class_names[2], "red"), "class names sorted: %s %s %s", d.class_names[0], d.class_names[1],
                 d.class_names[2]);
        int rr = 1;
        for (int i = 0; i < d.n; i++) rr &= d.labels[i] == i % 3;
        TU_CHECK(rr, "images round-robin over the classes");
        /* red images (class 2) have a bright R plane. */
        const uint8_t *im = d.pixels + (size_t)2 * 3 * 64;
        TU_CHECK(im[0] > 140 && im[64] < 100 && im[128] < 100, "class red decoded red (%d %d %d)", im[0], im[64],
                 im[128]);
        st = tool_dataset_split(&d, 0.4, 1, &v, err);
        TU_CHECK(st == 0 && d.n == 9 && v.n == 6, "per-class split 0.4 of 5+5+5: 9 + 6 (got %d + %d): %s", d.n, v.n,
                 err);
        int per[3] = {0, 0, 0};
        for (int i = 0; i < v.n; i++) per[v.labels[i]]++;
        TU_CHECK(per[0] == 2 && per[1] == 2 && per[2] == 2, "2 validation images per class");
        tool_dataset_free(&v);
        st = tool_dataset_split(&d, 0.34, 0, &v, err);
        TU_CHECK(st == 0 && d.n == 6 && v.n == 3, "tail split of 9 by 0.34: 6 + 3 (got %d + %d)", d.n, v.n);
        tool_dataset_free(&v);
        expect_err(tool_dataset_split(&d, 0.01, 0, &v, err), err, "split leaving nothing", "leaves 0 for validation",
                   NULL);
        tool_dataset_free(&d);
    }
    /* A class folder without images. */
    path_in(dir, sizeof dir, g_dir, "f2");
    gen_folder(dir, 2, 8, 8, 0, 12);
    mkdirs(dir, "zebra");
    path_in(p, sizeof p, dir, "zebra/readme.txt");
    write_bytes(p, "x", 1);
    expect_err(tool_load_image_folder(dir, 8, 3, &d, err), err, "empty class", "f2/zebra: class folder with no images",
               NULL);
    /* One class only; a missing folder; a bad image inside names its file. */
    path_in(dir, sizeof dir, g_dir, "f3");
    mkdirs(dir, "only");
    path_in(p, sizeof p, dir, "only/a.png");
    uint8_t px[12] = {0};
    write_png(p, px, 2, 2, 3);
    expect_err(tool_load_image_folder(dir, 8, 3, &d, err), err, "one class", "found 1 class folder", "at least 2");
    path_in(dir, sizeof dir, g_dir, "no-such-folder");
    expect_err(tool_load_image_folder(dir, 8, 3, &d, err), err, "missing folder", "no-such-folder", NULL);
    path_in(dir, sizeof dir, g_dir, "f4");
    gen_folder(dir, 2, 8, 8, 0, 13);
    path_in(p, sizeof p, dir, "green/bad.jpg");
    write_bytes(p, "\xff\xd8\xff\xe0 not really", 15);
    expect_err(tool_load_image_folder(dir, 8, 3, &d, err), err, "bad image in folder", "f4/green/bad.jpg: corrupt", NULL);
    /* Eleven classes are refused. */
    path_in(dir, sizeof dir, g_dir, "f5");
    mkdirs(dir, NULL);
    for (int k = 0; k < 11; k++) {
        char sub[32];
        snprintf(sub, sizeof sub, "c%02d", k);
        mkdirs(dir, sub);
    }
    expect_err(tool_load_image_folder(dir, 8, 3, &d, err), err, "11 classes", "11 class folders", "at most 10");
}

/* ------------------------------------------------------------------------------------------ the command */

typedef tu_result result;

static result run(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    result r = tu_run_v(g_bin, g_dir, first, ap);
    va_end(ap);
    return r;
}

static double final_acc(const char *out)
{
    const char *last = NULL;
    for (const char *p = out; (p = strstr(p, "final: ")); p++) last = p;
    double acc = -1;
    if (last && sscanf(last, "final: epochs=%*d test_acc=%lf", &acc) != 1) acc = -1;
    return acc;
}

static void test_command(void)
{
    char tr[4200], te[4200], ck[4200], ck2[4200], big[4200], p[4200];
    path_in(tr, sizeof tr, g_dir, "train");
    path_in(te, sizeof te, g_dir, "test");
    path_in(ck, sizeof ck, g_dir, "img.ckpt");
    path_in(ck2, sizeof ck2, g_dir, "img2.ckpt");
    remove(ck);
    remove(ck2);
    gen_folder(tr, 24, 12, 10, 1, 21);
    gen_folder(te, 8, 20, 16, 1, 22);
    /* Learns colour classes from images of mixed sizes and formats. */
    result r = run("images", "--data", tr, "--test", te, "--size", "8", "--model", "mlp", "--epochs", "4", "--batch",
                   "16", "--lr", "0.05", "--tune", "off", "--checkpoint", ck, NULL);
    TU_CHECK(r.code == 0, "images training: exit %d\n%s%s", r.code, r.out, r.err);
    double acc = final_acc(r.out);
    TU_CHECK(acc >= 0.95, "images: test accuracy %.4f (at least 0.95 expected)", acc);
    TU_CHECK(strstr(r.out, "72 training / 24 test images of 3x8x8, 3 classes") != NULL, "summary line of the data");
    tu_result_free(&r);
    /* Resuming on a folder whose classes have other names is refused. */
    char other[4200];
    path_in(other, sizeof other, g_dir, "f7");
    mkdirs(other, NULL);
    for (int k = 0; k < 3; k++) {
        char sub[8] = {(char)('a' + k), 0}, q[4300];
        mkdirs(other, sub);
        uint8_t px[4 * 4 * 3];
        uint64_t s7 = (uint64_t)k;
        class_image(k, 4, 4, &s7, px);
        for (int i = 0; i < 3; i++) {
            snprintf(q, sizeof q, "%s/%s/%d.png", other, sub, i);
            write_png(q, px, 4, 4, 3);
        }
    }
    tu_expect_fail(run("images", "--data", other, "--validation-split", "0.34", "--checkpoint", ck, "--resume", "--epochs", "5",
                        "--tune", "off", NULL), "img.ckpt has 3 class folders (blue, ...) but", "resume on other classes");
    /* eval on the folder, with the checkpoint's size and class names. */
    r = run("eval", "--checkpoint", ck, "--data", te, "--tune", "off", NULL);
    TU_CHECK(r.code == 0 && fabs(final_acc(r.out) - acc) < 1e-4, "eval reproduces the accuracy %.4f: %.4f\n%s%s",
             acc, final_acc(r.out), r.out, r.err);
    tu_result_free(&r);
    /* predict: a PNG of another size, as CSV with every class's probability. */
    uint8_t pix[40 * 30 * 3];
    uint64_t s = 99;
    class_image(0, 40, 30, &s, pix); /* class 0 of gen_folder: red */
    path_in(big, sizeof big, g_dir, "big_red.png");
    write_png(big, pix, 40, 30, 3);
    r = run("predict", "--checkpoint", ck, "--csv", "--tune", "off", big, NULL);
    TU_CHECK(r.code == 0 && !strncmp(r.out, "file,predicted,blue,green,red\n", 30), "predict --csv header:\n%s%s",
             r.out, r.err);
    char row[4300];
    snprintf(row, sizeof row, "%s,red,", big);
    TU_CHECK(strstr(r.out, row) != NULL, "predict: the red image is predicted red:\n%s", r.out);
    double pb, pg, pr;
    const char *line = strchr(r.out, '\n');
    line = line ? strstr(line + 1, ",red,") : NULL;
    TU_CHECK(line && sscanf(line + 5, "%lf,%lf,%lf", &pb, &pg, &pr) == 3 && fabs(pb + pg + pr - 1) < 1e-4 && pr > 0.5,
             "probabilities sum to 1 and favour red");
    tu_result_free(&r);
    /* Validation split and early stopping (on a validation loss that stops improving at a high learning rate). */
    r = run("images", "--data", tr, "--validation-split", "0.25", "--size", "8", "--model", "mlp", "--epochs", "30",
            "--batch", "16", "--lr", "0.05", "--tune", "off", "--early-stop", "2", "--schedule", "constant",
            "--checkpoint", ck2, NULL);
    TU_CHECK(r.code == 0 && strstr(r.out, "54 training / 18 test images") &&
             strstr(r.out, "evaluating after every epoch on 18 held-out validation images"),
             "validation split 0.25 of 24 per class: 54 + 18\n%s%s", r.out, r.err);
    TU_CHECK(strstr(r.out, "early stop: ") != NULL, "early stop reported\n%s", r.out);
    /* The restored weights are the best epoch's: the final loss is the lowest of the epoch lines. */
    double lowest = INFINITY, fin = NAN;
    for (const char *q = r.out; q && *q; q = strchr(q, '\n') ? strchr(q, '\n') + 1 : NULL) {
        const char *t = strstr(q, " test_loss="), *eol = strchr(q, '\n');
        if (!strncmp(q, "epoch ", 6) && t && (!eol || t < eol) && strtod(t + 11, NULL) < lowest)
            lowest = strtod(t + 11, NULL);
    }
    const char *fl = strstr(r.out, "final: ");
    if (fl && (fl = strstr(fl, "test_loss="))) fin = strtod(fl + 10, NULL);
    TU_CHECK(fabs(lowest - fin) < 1e-4, "early stop: final test loss %.4f is the best epoch's %.4f", fin, lowest);
    tu_result_free(&r);
    /* --validation-split on a built-in dataset: the last fraction of CIFAR-10's training records. */
    char cif[4200];
    path_in(cif, sizeof cif, g_dir, "cifar");
    mkdirs(cif, NULL);
    for (int b = 0; b < 6; b++) {
        char q[4300];
        if (b < 5) snprintf(q, sizeof q, "%s/data_batch_%d.bin", cif, b + 1);
        else snprintf(q, sizeof q, "%s/test_batch.bin", cif);
        FILE *f = fopen(q, "wb");
        uint64_t sc = (uint64_t)b;
        for (int i = 0; i < 20 && f; i++) {
            uint8_t rec[3073], hwc[3072];
            rec[0] = (uint8_t)(i % 3);
            class_image(i % 3, 32, 32, &sc, hwc);
            for (int c = 0; c < 3; c++)
                for (int j = 0; j < 1024; j++) rec[1 + c * 1024 + j] = hwc[j * 3 + c];
            fwrite(rec, 1, sizeof rec, f);
        }
        if (f) fclose(f);
    }
    r = run("cifar10", "--data", cif, "--validation-split", "0.25", "--epochs", "1", "--model", "mlp", "--tune", "off",
            NULL);
    TU_CHECK(r.code == 0 && strstr(r.out, "75 training / 25 test images") &&
             strstr(r.out, "evaluating after every epoch on 25 held-out validation images"),
             "cifar10 --validation-split 0.25 of 100 records: 75 + 25\n%s%s", r.out, r.err);
    tu_result_free(&r);
    /* Usage and data errors. */
    tu_expect_fail(run("images", "--data", tr, "--tune", "off", NULL), "give --test DIR", "neither --test nor split");
    tu_expect_fail(run("images", "--tune", "off", NULL), "--data DIR (the folder of class folders) is required",
                    "no --data");
    tu_expect_fail(run("images", "--data", tr, "--test", te, "--validation-split", "0.2", NULL), "contradict",
                    "--test and --validation-split");
    tu_expect_fail(run("images", "--data", tr, "--channels", "2", NULL), "--channels: '2' is not 1 or 3", "channels");
    path_in(p, sizeof p, g_dir, "f2");
    tu_expect_fail(run("images", "--data", p, "--validation-split", "0.2", "--tune", "off", NULL),
                    "f2/zebra: class folder with no images", "empty class folder");
    path_in(p, sizeof p, g_dir, "f6");
    mkdirs(p, "cat");
    mkdirs(p, "dog");
    char q[4300];
    snprintf(q, sizeof q, "%s/cat/a.png", p);
    write_png(q, pix, 40, 30, 3);
    snprintf(q, sizeof q, "%s/dog/a.png", p);
    write_png(q, pix, 40, 30, 3);
    tu_expect_fail(run("images", "--data", tr, "--test", p, "--tune", "off", NULL), "must have the same names",
                    "other classes in --test");
    path_in(p, sizeof p, g_dir, "huge.png");
    tu_expect_fail(run("predict", "--checkpoint", ck, "--tune", "off", p, NULL), "claims 100000x100000 pixels",
                    "predict a huge PNG header");
    path_in(p, sizeof p, g_dir, "trunc.jpg");
    tu_expect_fail(run("predict", "--checkpoint", ck, "--tune", "off", p, NULL), "trunc.jpg: corrupt or truncated JPEG",
                    "predict a truncated JPEG");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_images CLTRAIN_BINARY WORKDIR\n");
        return 2;
    }
    g_bin = argv[1];
    snprintf(g_dir, sizeof g_dir, "%s/images_test", argv[2]);
    mkdir(g_dir, 0755);
    test_decode();
    test_bad_files();
    test_folders();
    test_command();
    return tu_finish("images");
}
