/* test_crypt.c - encrypted checkpoints and key files: bit-exact round trips, every tampering case (each byte
 * flipped, truncations at and inside chunk boundaries, swapped chunks, trailing bytes, a wrong key), the key
 * permission check, keygen's mode and its refusal to overwrite. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypt.h"
#include "internal.h"
#include "testutil.h"

static char root[256];

static unsigned char *slurp(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc((size_t)n + 1);
    *len = fread(d, 1, (size_t)n, f);
    fclose(f);
    return d;
}

static void spit(const char *path, const void *d, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    if (len) fwrite(d, 1, len, f);
    fclose(f);
}

static int contains(const unsigned char *h, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(h + i, needle, k)) return 1;
    return 0;
}

/* Decrypting `c` must fail with CLT_ERR_FORMAT and a message holding `needle` (NULL: any message). */
static int refused(const unsigned char *key, const unsigned char *c, size_t n, const char *needle)
{
    unsigned char *p = NULL;
    size_t pl = 0;
    char err[512] = "";
    int st = clt__decrypt(key, CLT__ENC_KIND_CHECKPOINT, c, n, &p, &pl, err, sizeof err);
    free(p);
    return st == CLT_ERR_FORMAT && p == NULL && err[0] && (!needle || strstr(err, needle));
}

/* The stream format on its own, with 64-byte chunks so that a small buffer spans several. */
static void test_stream(void)
{
    unsigned char key[CLT_KEY_BYTES], other[CLT_KEY_BYTES];
    for (int i = 0; i < CLT_KEY_BYTES; i++) key[i] = (unsigned char)i, other[i] = (unsigned char)(i + 1);
    size_t sizes[] = {0, 1, 63, 64, 256, 300};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        unsigned char plain[300];
        for (size_t i = 0; i < n; i++) plain[i] = (unsigned char)(i * 37 + 11);
        unsigned char *c = NULL, *p = NULL, *c2 = NULL;
        size_t cl = 0, pl = 0, cl2 = 0;
        char err[512] = "";
        int ok = clt__encrypt(key, CLT__ENC_KIND_CHECKPOINT, 64, plain, n, &c, &cl, err, sizeof err) == 0;
        TU_CHECK(ok && cl == 20 + 24 + n + (n / 64 + 1) * 17, "encrypt %zu bytes: %s (%zu)", n, err, cl);
        if (!ok) continue;
        ok = clt__decrypt(key, CLT__ENC_KIND_CHECKPOINT, c, cl, &p, &pl, err, sizeof err) == 0;
        TU_CHECK(ok && pl == n && (!n || !memcmp(p, plain, n)), "round trip of %zu bytes: %s", n, err);
        free(p);
        /* A random header per file: the same plaintext never gives the same bytes twice. */
        clt__encrypt(key, CLT__ENC_KIND_CHECKPOINT, 64, plain, n, &c2, &cl2, err, sizeof err);
        TU_CHECK(c2 && cl2 == cl && memcmp(c + 20, c2 + 20, cl - 20) != 0, "two encryptions of %zu bytes differ", n);
        free(c2);
        TU_CHECK(refused(other, c, cl, "wrong key"), "wrong key refused (%zu bytes)", n);
        unsigned char *m = malloc(cl + 1);
        size_t flips = 0;
        for (size_t i = 0; i < cl; i++)
            for (int b = 0; b < 8; b += 7) { /* lowest and highest bit of every byte */
                memcpy(m, c, cl);
                m[i] ^= (unsigned char)(1u << b);
                flips += refused(key, m, cl, NULL);
            }
        TU_CHECK(flips == 2 * cl, "%zu bytes: %zu of %zu bit flips refused", n, flips, 2 * cl);
        size_t cuts = 0;
        for (size_t l = 0; l < cl; l++) cuts += refused(key, c, l, NULL);
        TU_CHECK(cuts == cl, "%zu bytes: %zu of %zu truncations refused", n, cuts, cl);
        /* Cut exactly after a full chunk: that chunk authenticates but is not the final one. */
        if (n >= 128) {
            size_t at = 20 + 24 + 2 * (64 + 17);
            TU_CHECK(refused(key, c, at, "final chunk"), "cut at a chunk boundary names the missing final chunk");
            TU_CHECK(refused(key, c, at + 17 + 5, "fails authentication"), "cut inside a chunk fails authentication");
            /* Two chunks swapped: each still has a valid MAC under its own position only. */
            memcpy(m, c, cl);
            memcpy(m + 44, c + 44 + 81, 81);
            memcpy(m + 44 + 81, c + 44, 81);
            TU_CHECK(refused(key, m, cl, "chunk 1 of"), "swapped chunks refused at the first one");
            /* A chunk dropped (the file stays a valid length). */
            memcpy(m, c, 44);
            memcpy(m + 44, c + 44 + 81, cl - 44 - 81);
            TU_CHECK(refused(key, m, cl - 81, NULL), "a dropped chunk is refused");
        }
        memcpy(m, c, cl);
        m[cl] = 0;
        TU_CHECK(refused(key, m, cl + 1, NULL), "a trailing byte is refused (%zu bytes)", n);
        /* Version and kind are in the clear but bound as additional data. */
        memcpy(m, c, cl);
        m[8] = 2;
        TU_CHECK(refused(key, m, cl, "version 2"), "a newer version is named");
        memcpy(m, c, cl);
        m[12] = 7;
        TU_CHECK(refused(key, m, cl, "kind 7"), "another kind is named");
        free(m);
        free(c);
    }
}

/* A small model saved plain and encrypted: the decrypted bytes equal the plain file; nothing readable leaks. */
static void test_checkpoint(clt_context *ctx)
{
    clt_model *m = NULL;
    clt_graph *g = NULL;
    clt_tensor *x, *logits;
    int xs[4] = {2, 1, 4, 4};
    if (clt_model_parse("conv 3 3 pad=same\nrelu\nflatten\ndense 5\nrelu\ndense classes\n", "secretnet", &m) < 0 ||
        !TU_OK(ctx, clt_graph_create(ctx, &g)) || !TU_OK(ctx, clt_input(g, "x", 4, xs, &x)) ||
        !TU_OK(ctx, clt_model_build(g, m, x, 3, &logits)) || !TU_OK(ctx, clt_graph_keep(g, logits, 0)) ||
        !TU_OK(ctx, clt_graph_compile(g, NULL))) {
        TU_CHECK(0, "building the model: %s", clt_errmsg(ctx));
        clt_graph_destroy(g);
        clt_model_destroy(m);
        return;
    }
    unsigned char key[CLT_KEY_BYTES], other[CLT_KEY_BYTES];
    for (int i = 0; i < CLT_KEY_BYTES; i++) key[i] = (unsigned char)(200 - i), other[i] = (unsigned char)i;
    char plain[300], enc[300], copy[300];
    snprintf(plain, sizeof plain, "%s/plain.ckpt", root);
    snprintf(enc, sizeof enc, "%s/enc.ckpt", root);
    snprintf(copy, sizeof copy, "%s/copy.ckpt", root);
    const char meta[] = "application secret";
    clt_save_settings ss;
    clt_save_default_settings(&ss);
    TU_CHECK(ss.key == NULL, "default save settings are plain");
    TU_OK(ctx, clt_graph_save(g, plain, meta, sizeof meta));
    ss.key = key;
    TU_OK(ctx, clt_graph_save_ex(g, enc, meta, sizeof meta, &ss));
    struct stat st;
    TU_CHECK(stat(enc, &st) == 0 && (st.st_mode & 0777) == 0600, "the encrypted checkpoint is mode 0600 (%o)",
             (unsigned)(st.st_mode & 0777));
    size_t pl, el;
    unsigned char *p = slurp(plain, &pl), *e = slurp(enc, &el);
    TU_CHECK(p && e && el > 44 && !memcmp(e, "CLTENC\0\0\1\0\0\0\1\0\0\0", 16), "clear header: magic, version, kind");
    if (!p || !e) return;
    unsigned char *d = NULL;
    size_t dl = 0;
    char err[512] = "";
    TU_CHECK(clt__decrypt(key, CLT__ENC_KIND_CHECKPOINT, e, el, &d, &dl, err, sizeof err) == 0 && dl == pl &&
             !memcmp(d, p, pl), "the decrypted file is the plain checkpoint, bit for bit (%s)", err);
    free(d);
    const char *clear[] = {"dense", "conv", ".weight", "application secret", "CLTCKPT"};
    for (size_t i = 0; i < sizeof clear / sizeof *clear; i++)
        TU_CHECK(!contains(e, el, clear[i]), "'%s' is not in the encrypted file", clear[i]);
    /* Opening: with the key it is the same checkpoint; without one, or with another, a clear refusal. */
    clt_checkpoint *a = NULL, *b = NULL;
    int sa = clt_checkpoint_open(plain, &a), sb = clt_checkpoint_open_key(enc, key, &b);
    size_t ma = 0, mb = 0;
    const void *pa = clt_checkpoint_app_meta(a, &ma), *pb = clt_checkpoint_app_meta(b, &mb);
    TU_CHECK(sa == 0 && sb == 0 && !strcmp(clt_checkpoint_model_text(a), clt_checkpoint_model_text(b)) && ma == mb &&
             ma == sizeof meta && !memcmp(pa, pb, ma), "encrypted open = plain open: %s", clt_checkpoint_errmsg(b));
    clt_checkpoint_close(a);
    clt_checkpoint_close(b);
    b = NULL;
    int s = clt_checkpoint_open(enc, &b);
    TU_CHECK(s == CLT_ERR_FORMAT && strstr(clt_checkpoint_errmsg(b), enc) &&
             strstr(clt_checkpoint_errmsg(b), "encrypted checkpoint: it can only be read with its key"),
             "no key: %d %s", s, clt_checkpoint_errmsg(b));
    TU_CHECK(!strcmp(clt_checkpoint_model_text(b), ""), "a refused checkpoint shows nothing");
    clt_checkpoint_close(b);
    s = clt_checkpoint_open_key(enc, other, &b);
    TU_CHECK(s == CLT_ERR_FORMAT && strstr(clt_checkpoint_errmsg(b), "wrong key, or the file was modified"),
             "wrong key: %d %s", s, clt_checkpoint_errmsg(b));
    clt_checkpoint_close(b);
    /* A plain file opens with a key too (nothing to decrypt). */
    s = clt_checkpoint_open_key(plain, key, &b);
    TU_CHECK(s == 0, "a plain checkpoint with a key: %s", clt_checkpoint_errmsg(b));
    clt_checkpoint_close(b);
    /* The file on disk: one flipped byte in the middle, a truncation. */
    e[el / 2] ^= 0x40;
    spit(copy, e, el);
    s = clt_checkpoint_open_key(copy, key, &b);
    TU_CHECK(s == CLT_ERR_FORMAT && strstr(clt_checkpoint_errmsg(b), "fails authentication"), "flipped: %s",
             clt_checkpoint_errmsg(b));
    clt_checkpoint_close(b);
    e[el / 2] ^= 0x40;
    spit(copy, e, el - 1);
    s = clt_checkpoint_open_key(copy, key, &b);
    TU_CHECK(s == CLT_ERR_FORMAT, "truncated: %s", clt_checkpoint_errmsg(b));
    clt_checkpoint_close(b);
    /* clt_graph_load with the key in the load settings: the same logits as from the plain file. */
    clt_load_settings ls;
    clt_load_default_settings(&ls);
    ls.batch = 2;
    clt_graph *g1 = NULL, *g2 = NULL;
    TU_CHECK(clt_graph_load(ctx, enc, &ls, &g2) == CLT_ERR_FORMAT && strstr(clt_errmsg(ctx), "its key"),
             "clt_graph_load without a key: %s", clt_errmsg(ctx));
    ls.key = key;
    float in[32], o1[6], o2[6];
    for (int i = 0; i < 32; i++) in[i] = (float)((i * 7) % 11) / 5.0f - 1.0f;
    if (TU_OK(ctx, clt_graph_load(ctx, plain, &ls, &g1)) && TU_OK(ctx, clt_graph_load(ctx, enc, &ls, &g2)) &&
        TU_OK(ctx, clt_predict(g1, in, 2, o1)) && TU_OK(ctx, clt_predict(g2, in, 2, o2)))
        TU_CHECK(!memcmp(o1, o2, sizeof o1), "logits from the encrypted checkpoint equal the plain one's");
    clt_graph_destroy(g1);
    clt_graph_destroy(g2);
    /* A failed encrypted save leaves the old file as it was. */
    char nodir[320];
    snprintf(nodir, sizeof nodir, "%s/missing/x.ckpt", root);
    TU_CHECK(clt_graph_save_ex(g, nodir, NULL, 0, &ss) == CLT_ERR_IO, "encrypted save into a missing folder fails");
    free(p);
    free(e);
    clt_graph_destroy(g);
    clt_model_destroy(m);
}

static void test_keys(void)
{
    char k1[300], k2[300], bad[300];
    snprintf(k1, sizeof k1, "%s/k1", root);
    snprintf(k2, sizeof k2, "%s/k2", root);
    snprintf(bad, sizeof bad, "%s/bad", root);
    char msg[1024];
    mode_t old = umask(0);
    int s = clt_key_generate(k1, msg, sizeof msg);
    umask(old);
    struct stat st;
    TU_CHECK(s == 0 && stat(k1, &st) == 0 && (st.st_mode & 07777) == 0600 && st.st_size == CLT_KEY_BYTES,
             "keygen: mode 0600, 32 bytes even with umask 0 (%s)", msg);
    size_t n1, n2;
    unsigned char *before = slurp(k1, &n1);
    s = clt_key_generate(k1, msg, sizeof msg);
    unsigned char *after = slurp(k1, &n2);
    TU_CHECK(s == CLT_ERR_IO && strstr(msg, "already exists: refusing to overwrite") && n1 == n2 && before && after &&
             !memcmp(before, after, n1), "keygen never overwrites: %s", msg);
    TU_CHECK(symlink("nowhere", bad) == 0 && clt_key_generate(bad, msg, sizeof msg) == CLT_ERR_IO && lstat(bad, &st) == 0 &&
             S_ISLNK(st.st_mode), "keygen does not follow a symbolic link: %s", msg);
    unlink(bad);
    clt_key_generate(k2, NULL, 0);
    unsigned char a[CLT_KEY_BYTES], b[CLT_KEY_BYTES];
    TU_CHECK(clt_key_load(k1, a, msg, sizeof msg) == 0 && clt_key_load(k2, b, msg, sizeof msg) == 0 &&
             !memcmp(a, before, CLT_KEY_BYTES) && memcmp(a, b, CLT_KEY_BYTES), "two keys load and differ: %s", msg);
    const mode_t modes[] = {0640, 0604, 0660, 0700 | 0020};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        chmod(k1, modes[i]);
        char want[400];
        snprintf(want, sizeof want, "make it private with `chmod 600 %s`", k1);
        s = clt_key_load(k1, a, msg, sizeof msg);
        TU_CHECK(s == CLT_ERR_IO && strstr(msg, "readable or writable by group or others") && strstr(msg, want),
                 "mode %o refused: %s", (unsigned)modes[i], msg);
    }
    chmod(k1, 0400);
    TU_CHECK(clt_key_load(k1, a, msg, sizeof msg) == 0, "mode 0400 is fine: %s", msg);
    spit(bad, before, 31);
    chmod(bad, 0600);
    s = clt_key_load(bad, a, msg, sizeof msg);
    TU_CHECK(s == CLT_ERR_FORMAT && strstr(msg, "31 bytes; a key is exactly 32"), "short key: %s", msg);
    unsigned char big[40] = {0};
    spit(bad, big, sizeof big);
    s = clt_key_load(bad, a, msg, sizeof msg);
    TU_CHECK(s == CLT_ERR_FORMAT && strstr(msg, "more than 32 bytes"), "long key: %s", msg);
    s = clt_key_load(root, a, msg, sizeof msg);
    TU_CHECK(s == CLT_ERR_IO && strstr(msg, "not a regular file"), "a folder as key: %s", msg);
    free(before);
    free(after);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/cltrain_test_crypt_%ld", (long)getpid());
    mkdir(root, 0700);
    test_stream();
    test_keys();
    clt_context *ctx = tu_context();
    if (ctx) test_checkpoint(ctx);
    clt_context_destroy(ctx);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", root);
    return tu_finish("crypt");
}
