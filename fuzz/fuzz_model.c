/* fuzz_model.c - libFuzzer target for the model-description parser (tools/model.c tool_model_parse) and, for a
 * description it accepts, the shape checks against a CIFAR-sized input (tool_model_check). Input: the text. */
#include "fuzz_common.h"
#include "tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1); /* the parser takes a NUL-terminated string; an embedded NUL ends it */
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    tool_model m;
    char err[TOOL_ERR_LEN];
    memset(&m, 0, sizeof m);
    if (tool_model_parse(text, "fuzz.model", &m, err) == 0) {
        tool_model_check(&m, 3, 32, 32, 10, NULL, NULL, err);
        tool_model_free(&m);
    }
    free(text);
    return 0;
}
