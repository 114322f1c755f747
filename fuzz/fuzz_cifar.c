/* fuzz_cifar.c - libFuzzer target for the CIFAR-10 loader (tools/data.c tool_load_cifar10, test split).
 *
 * Input: byte 0 = length L of a batches.meta.txt (0: no such file), then L bytes of it, then the whole
 * test_batch.bin. */
#include "fuzz_common.h"
#include "tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t meta = data[0];
    if (meta > size - 1) meta = size - 1;
    if (meta) fz_put("batches.meta.txt", data + 1, meta);
    else fz_drop("batches.meta.txt");
    fz_put("test_batch.bin", data + 1 + meta, size - 1 - meta);

    tool_dataset d;
    char err[TOOL_ERR_LEN];
    if (tool_load_cifar10(fz_folder(), 0, &d, err) == 0) tool_dataset_free(&d);
    return 0;
}
