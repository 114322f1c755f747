/* fuzz_mutants.h - the standalone check shared by the fuzz harnesses: every truncation and single bit flip of a seed
 * must be refused by the reader. */
#ifndef CLT_FUZZ_MUTANTS_H
#define CLT_FUZZ_MUTANTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The reader under test: 0 when it accepts the bytes, negative when it refuses them. */
typedef int (*fuzz_one_fn)(const uint8_t *data, size_t size);

/* Feeds `one` every truncation of seed[0..n) and every single bit flip (mut: n bytes of scratch); prints
 * "NAME: R of C truncations and bit flips[FORM] refused" and returns 1 (after a FAIL line) when a mutant was accepted. */
static int fuzz_check_mutants(fuzz_one_fn one, const uint8_t *seed, size_t n, uint8_t *mut, const char *name,
                              const char *form)
{
    size_t refused = 0, cases = 0;
    for (size_t l = 0; l < n; l++, cases++) refused += one(seed, l) < 0;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 8; b++, cases++) {
            memcpy(mut, seed, n);
            mut[i] ^= (uint8_t)(1u << b);
            refused += one(mut, n) < 0;
        }
    fprintf(stderr, "%s: %zu of %zu truncations and bit flips%s refused\n", name, refused, cases, form);
    if (refused != cases) {
        fprintf(stderr, "FAIL: %zu mutants of %s were accepted\n", cases - refused, name);
        return 1;
    }
    return 0;
}

#endif
