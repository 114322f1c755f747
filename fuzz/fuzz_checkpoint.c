/* fuzz_checkpoint.c - libFuzzer target for the checkpoint reader (tools/checkpoint.c tool_checkpoint_read).
 *
 * Input: a checkpoint file. A random mutation almost never keeps the stored length and CRC-32 right, which
 * would stop every input at the checksum; so when the input is long enough to hold them, the harness writes
 * the true length (bytes 12..19) and the CRC-32 of everything before the last 4 bytes (stored last) first,
 * and the fuzzer reaches the body parser. Inputs shorter than that go through unchanged. */
#include <zlib.h>

#include "fuzz_common.h"
#include "tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return 0;
    memcpy(b, data, size);
    if (size >= 24) {
        for (int i = 0; i < 8; i++) b[12 + i] = (uint8_t)((uint64_t)size >> (8 * i));
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(size - 4));
        for (int i = 0; i < 4; i++) b[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    const char *path = fz_put("in.ckpt", b, size);
    free(b);

    tool_checkpoint c;
    char err[TOOL_ERR_LEN];
    if (tool_checkpoint_read(path, &c, err) == 0) tool_checkpoint_free(&c);
    return 0;
}
