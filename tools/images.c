/* images.c - image folders for the cltrain tool: JPEG (libjpeg-turbo) and PNG (libpng) decoding, resizing, loading. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

#include "tool.h"

/* ------------------------------------------------------------------------------------------ names */

static int has_ext(const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    if (n <= e) return 0;
    for (size_t i = 0; i < e; i++)
        if (tolower((unsigned char)name[n - e + i]) != ext[i]) return 0;
    return 1;
}

int tool_is_image_name(const char *name)
{
    return has_ext(name, ".jpg") || has_ext(name, ".jpeg") || has_ext(name, ".png");
}

/* ------------------------------------------------------------------------------------------ resize */

/* Area (box) resampling of an interleaved (H,W,C) image into a planar (C,size,size) one: each output pixel is the
 * mean of the source area it covers, weighted by coverage. Down-scaling averages every source pixel (no aliasing);
 * up-scaling repeats pixels, blending at the seams. The aspect ratio is not kept (the image is stretched). */
void tool_resize_area(const uint8_t *src, int w, int h, int ch, int size, uint8_t *dst)
{
    double sx = (double)w / size, sy = (double)h / size;
    for (int oy = 0; oy < size; oy++) {
        double y0 = oy * sy, y1 = y0 + sy;
        for (int ox = 0; ox < size; ox++) {
            double x0 = ox * sx, x1 = x0 + sx;
            double acc[4] = {0, 0, 0, 0}, wsum = 0;
            for (int y = (int)y0; y < h && y < y1; y++) {
                double wy = (y + 1 < y1 ? y + 1 : y1) - (y > y0 ? y : y0);
                if (wy <= 0) continue;
                for (int x = (int)x0; x < w && x < x1; x++) {
                    double wx = (x + 1 < x1 ? x + 1 : x1) - (x > x0 ? x : x0);
                    if (wx <= 0) continue;
                    const uint8_t *p = src + ((size_t)y * w + x) * ch;
                    for (int c = 0; c < ch; c++) acc[c] += wx * wy * p[c];
                    wsum += wx * wy;
                }
            }
            for (int c = 0; c < ch; c++) {
                double v = wsum > 0 ? acc[c] / wsum + 0.5 : 0;
                dst[((size_t)c * size + oy) * size + ox] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ JPEG */

typedef struct jerr {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr;

static void jpeg_fail_exit(j_common_ptr cinfo)
{
    jerr *e = (jerr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* libjpeg only warns about corrupt or truncated data (and fills the rest with grey): an image that is not what
 * its file says is refused instead of training on it. */
static void jpeg_warn(j_common_ptr cinfo, int level)
{
    if (level < 0) jpeg_fail_exit(cinfo);
}

static int check_dims(const char *path, const char *kind, unsigned long w, unsigned long h, char *err)
{
    if (w < 1 || h < 1 || w > TOOL_IMAGE_MAX_SIDE || h > TOOL_IMAGE_MAX_SIDE ||
        (unsigned long long)w * h > TOOL_IMAGE_MAX_PIXELS)
        return tool_fail(err, CLT_ERR_FORMAT, "%s: the %s header claims %lux%lu pixels, more than this tool decodes "
                         "(at most %dx%d and %d megapixels): refused", path, kind, w, h, TOOL_IMAGE_MAX_SIDE,
                         TOOL_IMAGE_MAX_SIDE, TOOL_IMAGE_MAX_PIXELS / 1000000);
    return CLT_OK;
}

/* Decodes into a malloc'd interleaved buffer of ch (1 or 3) channels. volatile: live across longjmp. */
static int decode_jpeg(FILE *f, const char *path, int ch, uint8_t **out, int *ow, int *oh, char *err)
{
    struct jpeg_decompress_struct ci;
    jerr je;
    uint8_t *volatile buf = NULL;
    ci.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_fail_exit;
    je.mgr.emit_message = jpeg_warn;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        free(buf);
        return tool_fail(err, CLT_ERR_FORMAT, "%s: corrupt or truncated JPEG (libjpeg: %s)", path, je.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_stdio_src(&ci, f);
    jpeg_read_header(&ci, TRUE);
    /* The size comes from the header: checked before anything is allocated for the pixels. */
    int st = check_dims(path, "JPEG", ci.image_width, ci.image_height, err);
    if (st) {
        jpeg_destroy_decompress(&ci);
        return st;
    }
    ci.out_color_space = ch == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_start_decompress(&ci);
    int w = (int)ci.output_width, h = (int)ci.output_height;
    if (ci.output_components != ch) {
        jpeg_destroy_decompress(&ci);
        return tool_fail(err, CLT_ERR_FORMAT, "%s: JPEG colour space not convertible to %d channels", path, ch);
    }
    buf = malloc((size_t)w * h * ch);
    if (!buf) {
        jpeg_destroy_decompress(&ci);
        return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory (%dx%d pixels)", path, w, h);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = buf + (size_t)ci.output_scanline * w * ch;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    *out = buf;
    *ow = w;
    *oh = h;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ PNG */

typedef struct perr {
    jmp_buf jb;
    char msg[256];
} perr;

static void png_fail(png_structp png, png_const_charp msg)
{
    perr *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}
static void png_warn(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* warnings (an unknown chunk, a bad gamma value) do not change the pixels' meaning */
}

static int decode_png(FILE *f, const char *path, int ch, uint8_t **out, int *ow, int *oh, char *err)
{
    perr pe = {.msg = ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &pe, png_fail, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return tool_fail(err, CLT_ERR_NOMEM, "%s: out of memory", path);
    }
    if (setjmp(pe.jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(buf);
        free(rows);
        return tool_fail(err, CLT_ERR_FORMAT, "%s: corrupt or truncated PNG (libpng: %s)", path, pe.msg);
    }
    png_init_io(png, f);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int st = check_dims(path, "PNG", w, h, err);
    if (st) {
        png_destroy_read_struct(&png, &info, NULL);
        return st;
    }
    /* Everything becomes 8-bit gray or RGB: palettes expanded, 16 bits cut, alpha dropped. */
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    int ct = png_get_color_type(png, info);
    int gray = !(ct & PNG_COLOR_MASK_COLOR);
    if (ch == 3 && gray) png_set_gray_to_rgb(png);
    if (ch == 1 && !gray) png_set_rgb_to_gray_fixed(png, 1, -1, -1);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if ((int)png_get_channels(png, info) != ch || png_get_rowbytes(png, info) != (size_t)w * ch)
        png_error(png, "unexpected pixel layout after conversion");
    buf = malloc((size_t)w * h * ch);
    rows = malloc(sizeof(png_bytep) * h);
    if (!buf || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = buf + (size_t)y * w * ch;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *out = buf;
    *ow = (int)w;
    *oh = (int)h;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ one file */

int tool_read_image(const char *path, int size, int channels, uint8_t *dst, char *err)
{
    FILE *f = tool_fopen_regular(path, "image", err);
    if (!f) return CLT_ERR_IO;
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, f);
    rewind(f);
    uint8_t *pix = NULL;
    int w = 0, h = 0, st;
    if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF)
        st = decode_jpeg(f, path, channels, &pix, &w, &h, err);
    else if (got == 8 && !png_sig_cmp(sig, 0, 8))
        st = decode_png(f, path, channels, &pix, &w, &h, err);
    else if (got == 0)
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: empty file, not an image", path);
    else
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: neither a JPEG nor a PNG file (its first bytes are no JPEG or PNG "
                       "signature)", path);
    fclose(f);
    if (st) return st;
    tool_resize_area(pix, w, h, channels, size, dst);
    free(pix);
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ folders */

typedef struct name_list {
    char **v;
    int n, cap;
} name_list;

static void names_free(name_list *l)
{
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int names_push(name_list *l, const char *s)
{
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, sizeof *nv * (size_t)nc);
        if (!nv) return -1;
        l->v = nv;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Entries of `dir` (hidden ones skipped) that are folders (want_dirs) or image files, sorted by name so that the
 * class numbers and the order of images do not depend on the file system. */
static int list_dir(const char *dir, int want_dirs, name_list *out, int *others, char *err)
{
    DIR *d = opendir(dir);
    if (!d) return tool_fail(err, CLT_ERR_IO, "%s: cannot open the folder (%s)", dir, strerror(errno));
    struct dirent *e;
    char path[8192];
    int st = CLT_OK;
    while ((e = readdir(d)) && !st) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat s;
        if (stat(path, &s) != 0) continue; /* a dangling link is no image */
        int isdir = S_ISDIR(s.st_mode);
        if (want_dirs ? isdir : (S_ISREG(s.st_mode) && tool_is_image_name(e->d_name))) {
            if (names_push(out, e->d_name)) st = tool_fail(err, CLT_ERR_NOMEM, "out of memory listing %s", dir);
        } else if (others) {
            (*others)++;
        }
    }
    closedir(d);
    if (!st && out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return st;
}

int tool_load_image_folder(const char *dir, int size, int channels, tool_dataset *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (size < 1 || size > TOOL_IMAGE_MAX_SIZE || (channels != 1 && channels != 3))
        return tool_fail(err, CLT_ERR_INVALID, "images: size %d (1..%d) or channels %d (1 or 3) out of range", size,
                         TOOL_IMAGE_MAX_SIZE, channels);
    int st = tool_check_folder(dir, "image folder", err);
    if (st) return st;
    name_list classes = {0};
    name_list *files = NULL;
    int others = 0;
    if ((st = list_dir(dir, 1, &classes, &others, err))) goto out;
    if (classes.n < 2) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: found %d class folder%s; an image folder holds one subfolder per class "
                       "(at least 2) of JPEG/PNG files", dir, classes.n, classes.n == 1 ? "" : "s");
        goto out;
    }
    if (classes.n > 10) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: %d class folders; cltrain supports at most 10 classes", dir,
                       classes.n);
        goto out;
    }
    files = calloc((size_t)classes.n, sizeof *files);
    if (!files) {
        st = tool_fail(err, CLT_ERR_NOMEM, "out of memory");
        goto out;
    }
    long long total = 0;
    char path[8192];
    for (int k = 0; k < classes.n; k++) {
        if (strlen(classes.v[k]) > 31) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s/%s: class folder names are at most 31 bytes", dir, classes.v[k]);
            goto out;
        }
        snprintf(path, sizeof path, "%s/%s", dir, classes.v[k]);
        if ((st = list_dir(path, 0, &files[k], NULL, err))) goto out;
        if (files[k].n == 0) {
            st = tool_fail(err, CLT_ERR_FORMAT, "%s: class folder with no images (no .jpg, .jpeg or .png files)", path);
            goto out;
        }
        total += files[k].n;
    }
    size_t img = (size_t)channels * size * size;
    if (total > 100000000 || (double)total * img > 16e9) {
        st = tool_fail(err, CLT_ERR_FORMAT, "%s: %lld images of %dx%dx%d are more than this tool holds in memory", dir,
                       total, channels, size, size);
        goto out;
    }
    out->pixels = malloc((size_t)total * img);
    out->labels = malloc((size_t)total);
    if (!out->pixels || !out->labels) {
        st = tool_fail(err, CLT_ERR_NOMEM, "out of memory for %lld images", total);
        goto out;
    }
    out->n = (int)total;
    out->c = channels;
    out->h = out->w = size;
    out->classes = classes.n;
    for (int k = 0; k < classes.n; k++)
        snprintf(out->class_names[k], sizeof out->class_names[k], "%s", classes.v[k]);
    /* Round-robin over the classes (the i-th file of every class, then the (i+1)-th): the first N images (--limit)
     * hold every class. */
    size_t at = 0;
    for (int i = 0; at < (size_t)total && !st; i++)
        for (int k = 0; k < classes.n && !st; k++) {
            if (i >= files[k].n) continue;
            snprintf(path, sizeof path, "%s/%s/%s", dir, classes.v[k], files[k].v[i]);
            st = tool_read_image(path, size, channels, out->pixels + at * img, err);
            out->labels[at++] = (uint8_t)k;
        }
out:
    for (int k = 0; files && k < classes.n; k++) names_free(&files[k]);
    free(files);
    names_free(&classes);
    if (st) tool_dataset_free(out);
    return st;
}

/* ------------------------------------------------------------------------------------------ split */

int tool_dataset_split(tool_dataset *d, double frac, int per_class, tool_dataset *val, char *err)
{
    memset(val, 0, sizeof *val);
    if (!(frac > 0 && frac < 1)) return tool_fail(err, CLT_ERR_INVALID, "validation split %g is not in (0, 1)", frac);
    size_t img = (size_t)d->c * d->h * d->w;
    char *to_val = calloc((size_t)d->n + 1, 1);
    if (!to_val) return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    int nval = 0;
    if (!per_class) {
        /* Keras: the last fraction of the samples, in their order, before any shuffling. */
        int first = d->n - (int)(frac * d->n);
        for (int i = first; i < d->n; i++) to_val[i] = 1;
    } else {
        /* The last fraction of each class's (name-sorted) images, so that every class is validated. */
        for (int k = 0; k < d->classes; k++) {
            int cnt = 0, seen = 0;
            for (int i = 0; i < d->n; i++) cnt += d->labels[i] == k;
            int keep = cnt - (int)(frac * cnt);
            for (int i = 0; i < d->n; i++)
                if (d->labels[i] == k && seen++ >= keep) to_val[i] = 1;
        }
    }
    for (int i = 0; i < d->n; i++) nval += to_val[i];
    if (nval < 1 || nval >= d->n - 1) {
        free(to_val);
        return tool_fail(err, CLT_ERR_INVALID, "validation split %g of %d samples leaves %d for validation and %d for "
                         "training (each needs at least %d)", frac, d->n, nval, d->n - nval, nval < 1 ? 1 : 2);
    }
    *val = *d;
    val->n = nval;
    val->pixels = malloc((size_t)nval * img);
    val->labels = malloc((size_t)nval);
    if (!val->pixels || !val->labels) {
        free(to_val);
        tool_dataset_free(val);
        return tool_fail(err, CLT_ERR_NOMEM, "out of memory");
    }
    /* Stable compaction: training samples keep their order in place. */
    int a = 0, b = 0;
    for (int i = 0; i < d->n; i++) {
        const uint8_t *src = d->pixels + (size_t)i * img;
        if (to_val[i]) {
            memcpy(val->pixels + (size_t)b * img, src, img);
            val->labels[b++] = d->labels[i];
        } else {
            if (a != i) memmove(d->pixels + (size_t)a * img, src, img);
            d->labels[a++] = d->labels[i];
        }
    }
    d->n = a;
    free(to_val);
    return CLT_OK;
}
