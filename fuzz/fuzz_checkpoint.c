/* fuzz_checkpoint.c - libFuzzer target for the checkpoint reader (clt__checkpoint_open_mem, versions 1 and 2) and
 * the tool's metadata decoder; without libFuzzer (FUZZ_STANDALONE) a test that feeds it every truncation and
 * single-bit flip of the seed files and requires each mutant to be refused.
 *
 * As a fuzz target: a random mutation almost never keeps the stored length and CRC-32 right, which would stop
 * nearly every input at the checksum; so when the input is long enough to hold them, the harness first writes the
 * true length (bytes 12..19) and the CRC-32 of everything before the last 4 bytes (stored last), and the fuzzer
 * reaches the body parsers. (Refusing a wrong length or checksum is what the standalone test checks.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "internal.h"
#include "tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 0: accepted (with the tool's metadata decoded), else the status of the refusal. */
static int one(const uint8_t *data, size_t size)
{
    clt_checkpoint *ck = NULL;
    int st = clt__checkpoint_open_mem(data, size, "fuzz.ckpt", &ck);
    if (st == 0) {
        /* Everything an application reads of an accepted file. */
        int c, h, w, k;
        size_t ml;
        clt_checkpoint_input(ck, &c, &h, &w, &k);
        clt_checkpoint_app_meta(ck, &ml);
        clt_model *m = NULL;
        clt_model_parse(clt_checkpoint_model_text(ck), "fuzz", &m);
        clt_model_destroy(m);
        tool_ckpt_meta *meta = malloc(sizeof *meta);
        tool_data_meta dm;
        char err[TOOL_ERR_LEN];
        if (meta) st = tool_meta_decode(ck, "fuzz.ckpt", meta, &dm, err);
        free(meta);
    } else if (!clt_checkpoint_errmsg(ck)[0] && ck) {
        st = 1000; /* a refusal without a message */
    }
    clt_checkpoint_close(ck);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 24) {
        one(data, size);
        return 0;
    }
    uint8_t *b = malloc(size);
    if (!b) return 0;
    memcpy(b, data, size);
    for (int i = 0; i < 8; i++) b[12 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    uint32_t crc = (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), b, size - 4);
    for (int i = 0; i < 4; i++) b[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    one(b, size);
    free(b);
    return 0;
}

#ifdef FUZZ_STANDALONE
#include "fuzz_mutants.h"

int main(int argc, char **argv)
{
    int failures = 0;
    for (int a = 1; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        static uint8_t buf[1 << 16], mut[1 << 16];
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        if (!n || n == sizeof buf) {
            fprintf(stderr, "FAIL: cannot read the seed %s (or over 64 KiB)\n", argv[a]);
            return 1;
        }
        int st = one(buf, n);
        if (st != 0) {
            fprintf(stderr, "FAIL: the seed %s is refused (%d)\n", argv[a], st);
            failures++;
        }
        failures += fuzz_check_mutants(one, buf, n, mut, argv[a], "");
    }
    return failures != 0;
}
#endif
