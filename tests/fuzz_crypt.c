/* fuzz_crypt.c - libFuzzer target for the encrypted checkpoint reader (fixed key); without libFuzzer
 * (FUZZ_STANDALONE) a test that encrypts each plain seed file (in 256-byte chunks, so that it spans several) and
 * requires the result to be accepted and every truncation and single-bit flip of it to be refused. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt.h"
#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The key of the corpus (tests/fuzz_corpus/encrypted was written with it): bytes 0, 1, ..., 31. */
static const unsigned char fuzz_key[CLT_KEY_BYTES] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                                      11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                                      22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

/* 0: accepted, else the status of the refusal (1000: refused without a message). */
static int one(const uint8_t *data, size_t size)
{
    clt_checkpoint *ck = NULL;
    int st = clt__checkpoint_open_mem_key(data, size, "fuzz.ckpt", fuzz_key, &ck);
    if (st == 0) {
        /* Everything an application reads of an accepted file. */
        int c, h, w, k;
        size_t ml;
        clt_checkpoint_input(ck, &c, &h, &w, &k);
        clt_checkpoint_app_meta(ck, &ml);
        clt_model *m = NULL;
        clt_model_parse(clt_checkpoint_model_text(ck), "fuzz", &m);
        clt_model_destroy(m);
    } else if (ck && !clt_checkpoint_errmsg(ck)[0]) {
        st = 1000;
    }
    clt_checkpoint_close(ck);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size);
    return 0;
}

#ifdef FUZZ_STANDALONE
#include "../fuzz/fuzz_mutants.h"

int main(int argc, char **argv)
{
    int failures = 0;
    for (int a = 1; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        static uint8_t buf[1 << 16];
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        if (!n || n == sizeof buf) {
            fprintf(stderr, "FAIL: cannot read the seed %s (or over 64 KiB)\n", argv[a]);
            return 1;
        }
        unsigned char *c = NULL;
        size_t cl = 0;
        char err[256] = "";
        if (clt__is_encrypted(buf, n)) {
            c = malloc(n);
            if (c) memcpy(c, buf, n), cl = n;
        } else if (clt__encrypt(fuzz_key, CLT__ENC_KIND_CHECKPOINT, 256, buf, n, &c, &cl, err, sizeof err) != 0) {
            fprintf(stderr, "FAIL: cannot encrypt %s: %s\n", argv[a], err);
            return 1;
        }
        uint8_t *mut = malloc(cl + 1);
        if (!c || !mut) return 1;
        int st = one(c, cl);
        if (st != 0) {
            fprintf(stderr, "FAIL: the encrypted seed %s is refused (%d)\n", argv[a], st);
            failures++;
        }
        failures += fuzz_check_mutants(one, c, cl, mut, argv[a], " of its encrypted form");
        free(mut);
        free(c);
    }
    return failures != 0;
}
#endif
