/* crypt.h - internal interface of crypt.c: encrypting and decrypting whole files in authenticated chunks. */
#ifndef CLT_CRYPT_H
#define CLT_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain.h"

#define CLT__ENC_MAGIC "CLTENC\0" /* with its terminating NUL: 8 bytes */
#define CLT__ENC_VERSION 1u
#define CLT__ENC_HEAD 20u                 /* magic, version, kind, chunk size: the clear header */
#define CLT__ENC_KIND_CHECKPOINT 1u
#define CLT__ENC_CHUNK (64u * 1024u)      /* plaintext bytes per chunk the library writes */
#define CLT__ENC_MIN_CHUNK 16u            /* what a reader accepts (tests use small chunks) */
#define CLT__ENC_MAX_CHUNK (16u << 20)

/* 1 if the bytes start with the encrypted file magic. */
int clt__is_encrypted(const void *data, size_t len);
/* Encrypts len bytes of plain with key (CLT_KEY_BYTES) into a malloc'd *out (*outlen bytes) in chunks of `chunk`
 * plaintext bytes. 0, or a negative status with a message in err (errlen bytes). */
int clt__encrypt(const unsigned char *key, uint32_t kind, uint32_t chunk, const void *plain, size_t len,
                 unsigned char **out, size_t *outlen, char *err, size_t errlen);
/* Verifies and decrypts a whole encrypted file of `kind`: a malloc'd plaintext (the caller zeroes and frees it),
 * or CLT_ERR_FORMAT with the reason (wrong key or tampering, truncation, version, kind) in err. Nothing is
 * returned unless every chunk authenticated and the last one carried the FINAL tag. */
int clt__decrypt(const unsigned char *key, uint32_t kind, const unsigned char *in, size_t len, unsigned char **out,
                 size_t *outlen, char *err, size_t errlen);

#endif
