/* fuzz_idx.c - libFuzzer target for the MNIST/Fashion-MNIST IDX loader (tools/data.c tool_load_idx, test split).
 *
 * Input: byte 0 = flags (bit 0: the image file is named .gz, bit 1: the label file is named .gz, bit 2:
 * fashion class names), bytes 1..4 = length of the image file (little-endian, cut to what is there), then the
 * image file, then the label file. The contents are used as they are: a .gz name with plain bytes is an input
 * like any other. */
#include "fuzz_common.h"
#include "tool.h"

static const char *const names[4] = {"t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte",
                                     "t10k-labels-idx1-ubyte.gz"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5) return 0;
    int flags = data[0];
    size_t ilen = (size_t)data[1] | (size_t)data[2] << 8 | (size_t)data[3] << 16 | (size_t)data[4] << 24;
    const uint8_t *img = data + 5;
    size_t rest = size - 5;
    if (ilen > rest) ilen = rest;
    for (int i = 0; i < 4; i++) fz_drop(names[i]);
    fz_put(names[flags & 1], img, ilen);
    fz_put(names[2 + ((flags >> 1) & 1)], img + ilen, rest - ilen);

    tool_dataset d;
    char err[TOOL_ERR_LEN];
    if (tool_load_idx(fz_folder(), 0, (flags >> 2) & 1, &d, err) == 0) tool_dataset_free(&d);
    return 0;
}
