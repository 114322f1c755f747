/* fuzz_model.c - libFuzzer target for the model-description parser (clt_model_parse) and, for a description it
 * accepts, the shape checks (clt_model_check) against a CIFAR-sized and an MNIST-sized input, with the layer table.
 * Input: the text. Invariants beyond "no crash": a refusal has a message, and the canonical text of an accepted
 * description parses again to the same canonical text (what a checkpoint stores must mean the same network). */
#include "fuzz_common.h"
#include <cltrain.h>

static void fz_require(int ok, const char *what, const char *detail)
{
    if (ok) return;
    fprintf(stderr, "fuzz_model: %s: %s\n", what, detail ? detail : "");
    abort(); /* a finding: libFuzzer saves the input */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1); /* the parser takes a NUL-terminated string; an embedded NUL ends it */
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    clt_model *m = NULL;
    if (clt_model_parse(text, "fuzz.model", &m) == 0) {
        static char table[4096];
        clt_model_info info;
        if (clt_model_check(m, 3, 32, 32, 10, &info, table, sizeof table) < 0)
            fz_require(clt_model_errmsg(m)[0] != 0, "clt_model_check failed without a message", NULL);
        if (clt_model_check(m, 1, 28, 28, 10, NULL, NULL, 0) < 0)
            fz_require(clt_model_errmsg(m)[0] != 0, "clt_model_check failed without a message", NULL);
        clt_model *again = NULL;
        int st = clt_model_parse(clt_model_text(m), "fuzz.model", &again);
        fz_require(st == 0, "the canonical text does not parse again", clt_model_errmsg(again));
        fz_require(!strcmp(clt_model_text(again), clt_model_text(m)), "the canonical text changes when parsed again",
                   clt_model_text(again));
        clt_model_destroy(again);
    } else if (m) {
        fz_require(clt_model_errmsg(m)[0] != 0, "clt_model_parse failed without a message", NULL);
    }
    clt_model_destroy(m);
    free(text);
    return 0;
}
