/* fuzz_common.h - shared by the libFuzzer targets: a private temp folder to hand inputs to loaders that read
 * files (the tool's loaders take paths, so each input goes through a real file, as in use). */
#ifndef CLT_FUZZ_COMMON_H
#define CLT_FUZZ_COMMON_H

#define _GNU_SOURCE /* mkdtemp */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_dir[512];

static inline void fz_cleanup(void)
{
    DIR *d = opendir(fz_dir);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", fz_dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(fz_dir);
}

/* Creates the folder once per process, in /dev/shm when there is one (no disk traffic per input). */
static inline const char *fz_folder(void)
{
    if (fz_dir[0]) return fz_dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fz_dir, sizeof fz_dir, "%s/cltrain-fuzz-XXXXXX", base);
    if (!mkdtemp(fz_dir)) {
        perror("fuzz: mkdtemp");
        abort(); /* not a finding: the harness cannot run */
    }
    atexit(fz_cleanup);
    return fz_dir;
}

/* Writes data to <folder>/name (len 0 makes an empty file) and returns its path in a static buffer slot. */
static inline const char *fz_put(const char *name, const uint8_t *data, size_t len)
{
    static char paths[4][1024];
    static int next;
    char *p = paths[next++ & 3];
    snprintf(p, sizeof paths[0], "%s/%s", fz_folder(), name);
    FILE *f = fopen(p, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror("fuzz: writing the input file");
        abort();
    }
    return p;
}

static inline void fz_drop(const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", fz_folder(), name);
    unlink(p);
}

#endif
