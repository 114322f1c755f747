/* disk.h - files the library keeps on disk: cache folder, private folders, locks, bounded reads, one atomic writer. */
#ifndef CLT_DISK_H
#define CLT_DISK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "internal.h"

/* ---- growable byte buffer (the one of the library). p stays NUL-terminated after every append, so text can be
 * built in it; after an allocation failure `oom` is set and later appends do nothing (check once at the end). */
typedef struct clt__buf {
    char *p;
    size_t len, cap;
    int oom;
} clt__buf;
void clt__buf_put(clt__buf *b, const void *data, size_t n);
void clt__buf_puts(clt__buf *b, const char *s);
void clt__buf_printf(clt__buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends "name=value" (preceded by '|' unless first) with value escaped so that the result stays one line
 * without tabs and the parts stay unambiguous: '\' -> "\\", '|' -> "\p", control bytes -> "\xHH". */
void clt__buf_key_part(clt__buf *b, const char *name, const char *value, int first);
void clt__buf_free(clt__buf *b);
/* Little-endian numbers and length-prefixed strings (u32 length + bytes, no terminator) of the binary files. */
void clt__buf_u32(clt__buf *b, uint32_t v);
void clt__buf_u64(clt__buf *b, uint64_t v);
void clt__buf_f32(clt__buf *b, float v);
void clt__buf_str(clt__buf *b, const void *s, size_t n);
uint32_t clt__le32(const unsigned char *p);
float clt__lef32(const unsigned char *p);

/* ---- bounded reader over bytes in memory: a read past the end sets `bad` and yields NULL / 0, so a parser can
 * read a whole section and check `bad` once. */
typedef struct clt__rd {
    const unsigned char *p;
    size_t len, at;
    int bad;
} clt__rd;
const unsigned char *clt__rd_take(clt__rd *r, size_t n);
uint32_t clt__rd_u32(clt__rd *r);
uint64_t clt__rd_u64(clt__rd *r);
float clt__rd_f32(clt__rd *r);

#define CLT__FNV_OFFSET 0xcbf29ce484222325ull
/* FNV-1a 64 continuing from h (start with CLT__FNV_OFFSET). A checksum against accidents, not an attacker. */
uint64_t clt__fnv1a64(uint64_t h, const void *data, size_t n);

/* The library's verbose log: "cltrain: <message>" on stderr, only when the context was created verbose. */
void clt__vlog(const clt_context *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- the identity every cache entry is bound to: the device and driver, and the library versions. */
typedef struct clt__cache_id {
    const char *platform, *platform_version, *device, *device_version, *driver, *opencl_c; /* device */
    const char *cltrain, *clblast;                                                        /* libraries */
} clt__cache_id;
/* Fills id from ctx's device info (strings owned by ctx and the library). */
void clt__cache_id_of(const clt_context *ctx, clt__cache_id *id);
/* "platform=..|platform_version=..|device=..|device_version=..|driver=..|opencl_c=..|cltrain=..|clblast=.." */
void clt__buf_cache_id(clt__buf *b, const clt__cache_id *id);
/* CLBlast version built against plus the identity of the library file loaded (path, size, mtime, inode), so
 * that replacing the library without rebuilding cltrain still invalidates cached decisions. Computed once per
 * process (thread-safe). */
const char *clt__clblast_identity(void);

/* ---- folders */
/* Default cache folder: $CLTRAIN_CACHE_DIR, else $XDG_CACHE_HOME/cltrain, else $HOME/.cache/cltrain. malloc'd;
 * NULL when none of them is set. */
char *clt__cache_dir_default(void);
/* Creates `path` and its missing parents with mode 0700 (existing folders are left as they are). 0, or -1 with
 * errno set (ENOTDIR when a component is not a folder). */
int clt__mkdirs(const char *path);
/* Whether a file or folder may be trusted with what only its owner should write (native code, decisions):
 * owned by the effective user and not writable by group or others. 0 if trusted; -1 with the reason in `why`
 * ("owned by uid 65534, not by uid 1000", "writable by group or others (mode 0777)"). */
int clt__check_private(const struct stat *st, char *why, size_t whylen);
/* Same for a path (stat, following symbolic links); `want_dir` also requires a folder, else a regular file. */
int clt__check_private_path(const char *path, int want_dir, char *why, size_t whylen);

/* ---- locks: an exclusive flock on `path` (created 0600 if missing). Returns the descriptor (>= 0) to pass to
 * clt__unlock, or -1 with errno set. Blocks until the lock is free. */
int clt__lock(const char *path);
void clt__unlock(int fd);

/* ---- reading. A whole file into a malloc'd buffer with a NUL after the data. Refuses without blocking
 * anything that is not a regular file (a FIFO, a folder, a device) and files larger than `max` bytes.
 * flags: CLT__READ_PRIVATE also refuses symbolic links and files that fail clt__check_private.
 * Returns 0 (read), 1 (missing: ENOENT, nothing in *data) or -1 with a message "<path>: reason" in err. */
enum { CLT__READ_PRIVATE = 1 };
int clt__read_file(const char *path, size_t max, int flags, char **data, size_t *len, char *err, size_t errlen);

/* ---- writing. The library's one atomic writer: the concatenated parts go to a new temporary file in path's
 * folder, "<name>.tmp.<pid>.<16 random hex digits>" (created O_EXCL with `mode` less the umask; a random part,
 * because after a crash a restarted container gets the same pid again), which is fsynced, renamed over `path`,
 * and the folder fsynced. On any failure before the rename the old file is untouched and the temporary removed.
 * Names too long for the folder (NAME_MAX) use "<first 160 bytes of name>~<fnv64 of name>" instead of <name>.
 * Returns 0, or CLT_ERR_IO with errno kept and a message in err ("writing <path>: <step> failed (<reason>); the
 * old file, if any, is unchanged"). err may be NULL. */
int clt__atomic_write(const char *path, const void *const *parts, const size_t *lens, int nparts, mode_t mode,
                      char *err, size_t errlen);
/* Removes temporaries that clt__atomic_write left behind for `path` (its writer was killed before the rename).
 * The rule: a temporary goes when it has not been modified for 10 minutes and no process with its pid exists
 * here, or when it has not been modified for 24 hours whatever its pid (pids are reused, e.g. by a restarted
 * container or another pid namespace sharing the folder; no writer pauses a day inside one write). A live
 * writer keeps modifying its temporary, so it is never removed under it. The fixed names "<name>.tmp.<pid>" of
 * earlier writers follow the same rule. Returns how many were removed. */
int clt__remove_stale_tmp(const char *path);
/* Same for the temporaries of every file in folder `dir`. */
int clt__remove_stale_tmp_all(const char *dir);

#endif
