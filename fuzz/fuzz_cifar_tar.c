/* fuzz_cifar_tar.c - libFuzzer target for the CIFAR-10 tarball reader (tools/data.c tool_load_cifar10_archive,
 * test split, through libarchive's gzip filter and tar reader). Input: the archive file (tar or tar.gz). */
#include "fuzz_common.h"
#include "tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_put("cifar-10-binary.tar.gz", data, size);
    tool_dataset d;
    char err[TOOL_ERR_LEN];
    if (tool_load_cifar10_archive(path, 0, &d, err) == 0) tool_dataset_free(&d);
    return 0;
}
