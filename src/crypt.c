/* crypt.c - encrypted checkpoints (libsodium secretstream) and key files: generate, load with a permission check. */
/*
 * Layout of an encrypted file (little-endian):
 *   "CLTENC\0\0"  u32 version (1)  u32 kind (1: checkpoint)  u32 chunk bytes     (the 20-byte clear header)
 *   24-byte crypto_secretstream_xchacha20poly1305 header (random per file)
 *   chunks: each `chunk` bytes of plaintext + 17 bytes of tag and MAC, the last one shorter (possibly empty) and
 *   the only one tagged FINAL.
 * The plaintext is the whole checkpoint (network text, tensor names and shapes included). Every chunk carries the
 * clear header as additional data, so a changed version, kind or chunk size fails authentication; the stream's
 * chained state makes a reordered, dropped or duplicated chunk fail; a file cut at a chunk boundary ends without
 * the FINAL tag, and bytes after the FINAL chunk are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypt.h"
#include "disk.h"
#include "internal.h"

#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define SHBYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int sodium_ready;
static void start(void) { sodium_ready = sodium_init() >= 0; }
static int ready(void)
{
    pthread_once(&once, start);
    return sodium_ready;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int clt__is_encrypted(const void *data, size_t len)
{
    return len >= 8 && memcmp(data, CLT__ENC_MAGIC, 8) == 0;
}

int clt__encrypt(const unsigned char *key, uint32_t kind, uint32_t chunk, const void *plain, size_t len,
                 unsigned char **out, size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    if (!ready()) {
        snprintf(err, errlen, "libsodium failed to initialize");
        return CLT_ERR_UNSUPPORTED;
    }
    if (chunk < CLT__ENC_MIN_CHUNK || chunk > CLT__ENC_MAX_CHUNK) {
        snprintf(err, errlen, "chunk size %u out of range", chunk);
        return CLT_ERR_INVALID;
    }
    size_t nchunks = len / chunk + 1; /* the last one (possibly empty) carries FINAL */
    if (nchunks > (SIZE_MAX - CLT__ENC_HEAD - SHBYTES - len) / ABYTES) {
        snprintf(err, errlen, "too large to encrypt");
        return CLT_ERR_NOMEM;
    }
    size_t total = CLT__ENC_HEAD + SHBYTES + len + nchunks * ABYTES;
    unsigned char *c = malloc(total);
    if (!c) {
        snprintf(err, errlen, "out of host memory for %zu bytes", total);
        return CLT_ERR_NOMEM;
    }
    memcpy(c, CLT__ENC_MAGIC, 8);
    put32(c + 8, CLT__ENC_VERSION);
    put32(c + 12, kind);
    put32(c + 16, chunk);
    crypto_secretstream_xchacha20poly1305_state s;
    crypto_secretstream_xchacha20poly1305_init_push(&s, c + CLT__ENC_HEAD, key);
    const unsigned char *p = plain;
    size_t at = CLT__ENC_HEAD + SHBYTES;
    for (size_t i = 0; i < nchunks; i++) {
        size_t n = i + 1 < nchunks ? chunk : len - i * chunk;
        unsigned char tag = i + 1 < nchunks ? crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
                                            : crypto_secretstream_xchacha20poly1305_TAG_FINAL;
        unsigned long long clen = 0;
        crypto_secretstream_xchacha20poly1305_push(&s, c + at, &clen, p + i * (size_t)chunk, n, c, CLT__ENC_HEAD, tag);
        at += (size_t)clen;
    }
    sodium_memzero(&s, sizeof s);
    *out = c;
    *outlen = at;
    return CLT_OK;
}

int clt__decrypt(const unsigned char *key, uint32_t kind, const unsigned char *in, size_t len, unsigned char **out,
                 size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    if (!ready()) {
        snprintf(err, errlen, "libsodium failed to initialize");
        return CLT_ERR_UNSUPPORTED;
    }
    if (!clt__is_encrypted(in, len)) {
        snprintf(err, errlen, "not an encrypted cltrain file (bad magic bytes)");
        return CLT_ERR_FORMAT;
    }
    if (len < CLT__ENC_HEAD + SHBYTES + ABYTES) {
        snprintf(err, errlen, "truncated encrypted file (%zu bytes)", len);
        return CLT_ERR_FORMAT;
    }
    uint32_t version = get32(in + 8), k = get32(in + 12), chunk = get32(in + 16);
    if (version != CLT__ENC_VERSION) {
        snprintf(err, errlen, "encryption format version %u; this build reads %u%s", version, CLT__ENC_VERSION,
                 version > CLT__ENC_VERSION ? ": written by a newer cltrain?" : "");
        return CLT_ERR_FORMAT;
    }
    if (k != kind) {
        snprintf(err, errlen, "an encrypted file of kind %u, not a checkpoint (kind %u)", k, kind);
        return CLT_ERR_FORMAT;
    }
    if (chunk < CLT__ENC_MIN_CHUNK || chunk > CLT__ENC_MAX_CHUNK) {
        snprintf(err, errlen, "corrupt encrypted file (chunk size %u)", chunk);
        return CLT_ERR_FORMAT;
    }
    size_t body = len - CLT__ENC_HEAD - SHBYTES, full = (size_t)chunk + ABYTES;
    size_t nchunks = body / full + 1, last = body % full; /* a FINAL chunk of `last` bytes ends the stream */
    if (last < ABYTES) {
        /* The file ends where no chunk can end: cut inside a chunk, or after a full one (no FINAL tag). */
        snprintf(err, errlen, "truncated or corrupt encrypted file (%zu bytes do not end with a final chunk)", len);
        return CLT_ERR_FORMAT;
    }
    unsigned char *p = malloc(body - nchunks * ABYTES + 1);
    if (!p) {
        snprintf(err, errlen, "out of host memory");
        return CLT_ERR_NOMEM;
    }
    crypto_secretstream_xchacha20poly1305_state s;
    int st = CLT_OK;
    if (crypto_secretstream_xchacha20poly1305_init_pull(&s, in + CLT__ENC_HEAD, key) != 0) st = CLT_ERR_FORMAT;
    const unsigned char *c = in + CLT__ENC_HEAD + SHBYTES;
    size_t got = 0;
    for (size_t i = 0; i < nchunks && !st; i++) {
        size_t n = i + 1 < nchunks ? full : last;
        unsigned long long plen = 0;
        unsigned char tag = 0;
        if (crypto_secretstream_xchacha20poly1305_pull(&s, p + got, &plen, &tag, c, n, in, CLT__ENC_HEAD) != 0) {
            snprintf(err, errlen, "cannot decrypt: wrong key, or the file was modified, truncated or reordered "
                     "(chunk %zu of %zu fails authentication)", i + 1, nchunks);
            st = CLT_ERR_FORMAT;
            break;
        }
        int final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
        if (final != (i + 1 == nchunks)) {
            snprintf(err, errlen, "cannot decrypt: %s (chunk %zu of %zu)",
                     final ? "data after the final chunk" : "truncated: the file ends without its final chunk", i + 1,
                     nchunks);
            st = CLT_ERR_FORMAT;
            break;
        }
        got += (size_t)plen;
        c += n;
    }
    if (st && !err[0]) snprintf(err, errlen, "cannot decrypt: bad stream header");
    sodium_memzero(&s, sizeof s);
    if (st) {
        sodium_memzero(p, got);
        free(p);
        return st;
    }
    *out = p;
    *outlen = got;
    return CLT_OK;
}

/* ------------------------------------------------------------------------------------------ key files */

int clt_key_generate(const char *path, char *msg, size_t msglen)
{
    if (msg && msglen) msg[0] = 0;
    char dummy[8];
    if (!msg || !msglen) msg = dummy, msglen = sizeof dummy;
    if (!path) {
        snprintf(msg, msglen, "clt_key_generate: path is NULL");
        return CLT_ERR_INVALID;
    }
    if (!ready()) {
        snprintf(msg, msglen, "%s: libsodium failed to initialize", path);
        return CLT_ERR_UNSUPPORTED;
    }
    /* O_EXCL: an existing file (or a symbolic link, even a dangling one) is never replaced. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(msg, msglen, "%s: %s", path,
                 errno == EEXIST ? "already exists: refusing to overwrite a key (remove it first if you mean it; "
                                   "files encrypted with it can only be read with it)"
                                 : strerror(errno));
        return CLT_ERR_IO;
    }
    unsigned char key[CLT_KEY_BYTES];
    randombytes_buf(key, sizeof key);
    size_t done = 0;
    int st = CLT_OK;
    while (done < sizeof key) {
        ssize_t k = write(fd, key + done, sizeof key - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            st = CLT_ERR_IO;
            break;
        }
        done += (size_t)k;
    }
    sodium_memzero(key, sizeof key);
    /* fchmod: the umask may have removed bits, never added; 0600 exactly is what clt_key_load wants. */
    if (!st && (fchmod(fd, 0600) != 0 || fsync(fd) != 0)) st = CLT_ERR_IO;
    if (close(fd) != 0 && !st) st = CLT_ERR_IO;
    if (st) {
        snprintf(msg, msglen, "%s: writing the key failed (%s); the partial file was removed", path, strerror(errno));
        unlink(path);
        return st;
    }
    return CLT_OK;
}

int clt_key_load(const char *path, unsigned char key[CLT_KEY_BYTES], char *msg, size_t msglen)
{
    char dummy[8];
    if (!msg || !msglen) msg = dummy, msglen = sizeof dummy;
    msg[0] = 0;
    if (!path || !key) {
        snprintf(msg, msglen, "clt_key_load: %s is NULL", path ? "key" : "path");
        return CLT_ERR_INVALID;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(msg, msglen, "key file %s: cannot open (%s)", path, strerror(errno));
        return CLT_ERR_IO;
    }
    struct stat st;
    int s = CLT_OK;
    unsigned char buf[CLT_KEY_BYTES + 1];
    ssize_t n = 0;
    if (fstat(fd, &st) != 0) {
        snprintf(msg, msglen, "key file %s: cannot stat (%s)", path, strerror(errno));
        s = CLT_ERR_IO;
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(msg, msglen, "key file %s: not a regular file", path);
        s = CLT_ERR_IO;
    } else if (st.st_mode & 077) {
        snprintf(msg, msglen, "key file %s: readable or writable by group or others (mode %04o); refused: make it "
                 "private with `chmod 600 %s`", path, (unsigned)(st.st_mode & 07777), path);
        s = CLT_ERR_IO;
    } else if (st.st_uid != geteuid()) {
        snprintf(msg, msglen, "key file %s: owned by another user (uid %u); refused", path, (unsigned)st.st_uid);
        s = CLT_ERR_IO;
    } else {
        size_t got = 0;
        while (got < sizeof buf) {
            n = read(fd, buf + got, sizeof buf - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (n < 0) {
            snprintf(msg, msglen, "key file %s: read error (%s)", path, strerror(errno));
            s = CLT_ERR_IO;
        } else if (got != CLT_KEY_BYTES) {
            snprintf(msg, msglen, "key file %s: %s%zu bytes; a key is exactly %d random bytes (cltrain keygen --out "
                     "FILE makes one)", path, got > CLT_KEY_BYTES ? "more than " : "", got > CLT_KEY_BYTES ? (size_t)CLT_KEY_BYTES : got,
                     CLT_KEY_BYTES);
            s = CLT_ERR_FORMAT;
        } else memcpy(key, buf, CLT_KEY_BYTES);
    }
    sodium_memzero(buf, sizeof buf);
    close(fd);
    return s;
}
