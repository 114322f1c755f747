/* test_disk.c - the library's file helpers (src/disk.c): atomic writer, stale temporaries, bounded reads,
 * private folders, the growable buffer. No OpenCL needed; links the library's objects to reach them. */
#define _GNU_SOURCE /* mkdtemp */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "disk.h"
#include "testutil.h"

static char base[1024];

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Files in dir whose name starts with prefix. */
static int count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int write_text(const char *path, const char *text, char *err, size_t errlen)
{
    const void *parts[2] = {text, "!"};
    size_t lens[2] = {strlen(text), 1};
    return clt__atomic_write(path, parts, lens, 2, 0644, err, errlen);
}

static int file_is(const char *path, const char *text)
{
    char *d = NULL, err[256];
    size_t n;
    int ok = clt__read_file(path, 1 << 20, 0, &d, &n, err, sizeof err) == 0 && n == strlen(text) &&
             memcmp(d, text, n) == 0;
    free(d);
    return ok;
}

static void test_atomic(void)
{
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/a.txt", base);
    TU_CHECK(write_text(path, "one", err, sizeof err) == 0, "first write: %s", err);
    TU_CHECK(file_is(path, "one!"), "first write content");
    /* A crashed writer of an earlier container with our pid left its temporaries (old fixed name and a
     * random one): the next write must still succeed. */
    char left1[1300], left2[1300];
    snprintf(left1, sizeof left1, "%s.tmp.%ld", path, (long)getpid());
    snprintf(left2, sizeof left2, "%s.tmp.%ld.0123456789abcdef", path, (long)getpid());
    put_file(left1, "x");
    put_file(left2, "x");
    TU_CHECK(write_text(path, "two", err, sizeof err) == 0, "write with our pid's leftovers: %s", err);
    TU_CHECK(file_is(path, "two!"), "second write content");
    TU_CHECK(count_prefix(base, "a.txt.tmp.") == 2, "temporaries of the writes stayed behind (or leftovers gone)");
    unlink(left1);
    unlink(left2);

    /* A write that fails midway (file size limit) keeps the old file and removes its temporary. */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        char big[10000];
        memset(big, 'z', sizeof big);
        big[sizeof big - 1] = 0;
        int rc = write_text(path, big, err, sizeof err);
        int ok = rc == CLT_ERR_IO && strstr(err, "writing the temporary file failed") &&
                 strstr(err, "the old file, if any, is unchanged");
        if (!ok) fprintf(stderr, "rc %d err '%s'\n", rc, err);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    TU_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "failed write not reported as such");
    TU_CHECK(file_is(path, "two!"), "old file changed by a failed write");
    TU_CHECK(count_prefix(base, "a.txt.tmp.") == 0, "failed write left its temporary");

    /* Rename onto a folder fails: message names the step; the temporary goes. */
    char dpath[1200];
    snprintf(dpath, sizeof dpath, "%s/adir", base);
    mkdir(dpath, 0700);
    char inner[1300];
    snprintf(inner, sizeof inner, "%s/keep", dpath);
    put_file(inner, "k");
    TU_CHECK(write_text(dpath, "x", err, sizeof err) == CLT_ERR_IO && strstr(err, "renaming the temporary file"),
             "rename over a folder: '%s'", err);
    TU_CHECK(count_prefix(base, "adir.tmp.") == 0 && exists(inner), "rename failure left a temporary");

    /* A name so long that "<name>.tmp.<pid>.<random>" would exceed NAME_MAX still gets written. */
    char lname[300];
    memset(lname, 'n', 250);
    lname[250] = 0;
    char lpath[1600];
    snprintf(lpath, sizeof lpath, "%s/%s", base, lname);
    TU_CHECK(write_text(lpath, "long", err, sizeof err) == 0, "250-character name: %s", err);
    TU_CHECK(file_is(lpath, "long!"), "250-character name content");
    TU_CHECK(write_text("", "x", err, sizeof err) == CLT_ERR_IO, "empty path accepted");
}

static void age(const char *path, int seconds)
{
    struct timespec t[2] = {{time(NULL) - seconds, 0}, {time(NULL) - seconds, 0}};
    utimensat(AT_FDCWD, path, t, 0);
}

static void test_stale(void)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/s.ckpt", base);
    put_file(path, "target");
    /* Pid 999999999 does not exist (pid_max is at most 4194304). */
    /* The writer's names end in ".<pid>.<16 hex digits>"; [8] has another suffix: not the writer's, it stays. */
    const char *names[] = {"s.ckpt.tmp.999999999.00000000000000aa", "s.ckpt.tmp.999999999.00000000000000bb",
                           "s.ckpt.tmp.%ld.00000000000000cc", "s.ckpt.tmp.%ld.00000000000000dd",
                           "other.tmp.999999999.00000000000000ee", "s.ckpt.tmp.x.00000000000000ff",
                           "s.ckpt.tmp.999999999", "s.ckpt.tmp.999999999x", "s.ckpt.tmp.999999999.aa"};
    int ages[] = {700, 60, 700, 90000, 700, 90000, 700, 90000, 90000};
    int expect_gone[] = {1, 0, 0, 1, 0, 0, 1, 0, 0}; /* [6]: an earlier version's fixed name */
    char p[9][1300];
    for (int i = 0; i < 9; i++) {
        char nm[200];
        snprintf(nm, sizeof nm, names[i], (long)getpid());
        snprintf(p[i], sizeof p[i], "%s/%s", base, nm);
        put_file(p[i], "x");
        age(p[i], ages[i]);
    }
    int removed = clt__remove_stale_tmp(path);
    TU_CHECK(removed == 3, "removed %d stale temporaries, expected 3", removed);
    for (int i = 0; i < 9; i++)
        TU_CHECK(exists(p[i]) != expect_gone[i], "%s: %s", p[i], expect_gone[i] ? "not removed" : "removed");
    TU_CHECK(exists(path), "the target itself was removed");
    /* The folder-wide variant also takes other targets' temporaries. */
    removed = clt__remove_stale_tmp_all(base);
    TU_CHECK(removed == 1 && !exists(p[4]) && exists(p[1]) && exists(p[5]) && exists(p[8]),
             "folder-wide cleanup removed %d", removed);
    for (int i = 0; i < 9; i++) unlink(p[i]);
}

static void test_read(void)
{
    char path[1200], err[512], *d = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/missing", base);
    TU_CHECK(clt__read_file(path, 100, 0, &d, &n, err, sizeof err) == 1 && !d, "missing file not reported as 1");
    /* A FIFO is refused at once (a plain open would wait for a writer forever). */
    snprintf(path, sizeof path, "%s/fifo", base);
    mkfifo(path, 0600);
    alarm(20); /* a hang fails the test rather than blocking it */
    err[0] = 0;
    TU_CHECK(clt__read_file(path, 100, 0, &d, &n, err, sizeof err) < 0 && strstr(err, "not a regular file (a FIFO)"),
             "FIFO: '%s'", err);
    alarm(0);
    TU_CHECK(clt__read_file(base, 100, 0, &d, &n, err, sizeof err) < 0 && strstr(err, "not a regular file (a folder)"),
             "folder: '%s'", err);
    snprintf(path, sizeof path, "%s/ten", base);
    put_file(path, "0123456789");
    TU_CHECK(clt__read_file(path, 9, 0, &d, &n, err, sizeof err) < 0 && strstr(err, "10 bytes, more than the 9"),
             "size limit: '%s'", err);
    TU_CHECK(clt__read_file(path, 10, 0, &d, &n, err, sizeof err) == 0 && n == 10 && d && d[10] == 0 &&
                 memcmp(d, "0123456789", 10) == 0,
             "exact-limit read");
    free(d);
    d = NULL;
    chmod(path, 0666);
    TU_CHECK(clt__read_file(path, 10, CLT__READ_PRIVATE, &d, &n, err, sizeof err) < 0 &&
                 strstr(err, "not trusted: writable by group or others (mode 0666)"),
             "group-writable private read: '%s'", err);
    chmod(path, 0600);
    TU_CHECK(clt__read_file(path, 10, CLT__READ_PRIVATE, &d, &n, err, sizeof err) == 0, "private read: %s", err);
    free(d);
    d = NULL;
    char link[1300];
    snprintf(link, sizeof link, "%s/link", base);
    TU_CHECK(symlink(path, link) == 0, "symlink");
    TU_CHECK(clt__read_file(link, 10, CLT__READ_PRIVATE, &d, &n, err, sizeof err) < 0 && strstr(err, "symbolic link"),
             "private read through a symlink: '%s'", err);
    TU_CHECK(clt__read_file(link, 10, 0, &d, &n, err, sizeof err) == 0, "plain read through a symlink: %s", err);
    free(d);
}

static void test_dirs(void)
{
    char path[1200], why[256];
    snprintf(path, sizeof path, "%s/x/y/z", base);
    mode_t old = umask(0);
    TU_CHECK(clt__mkdirs(path) == 0, "mkdirs: %s", strerror(errno));
    umask(old);
    struct stat st;
    TU_CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700, "created mode %o, expected 0700",
             (unsigned)(st.st_mode & 0777));
    TU_CHECK(clt__check_private_path(path, 1, why, sizeof why) == 0, "own 0700 folder not trusted: %s", why);
    chmod(path, 0777);
    TU_CHECK(clt__check_private_path(path, 1, why, sizeof why) < 0 && strstr(why, "mode 0777"), "0777: '%s'", why);
    chmod(path, 0700);
    TU_CHECK(clt__check_private_path(path, 0, why, sizeof why) < 0 && strstr(why, "not a regular file"),
             "folder as file: '%s'", why);
    if (geteuid() == 0) {
        TU_CHECK(chown(path, 65534, 65534) == 0, "chown");
        TU_CHECK(clt__check_private_path(path, 1, why, sizeof why) < 0 && strstr(why, "owned by uid 65534"),
                 "foreign owner: '%s'", why);
    } else {
        fprintf(stderr, "skipped: the foreign-owner case needs root\n");
    }
    char file[1300];
    snprintf(file, sizeof file, "%s/x/f", base);
    put_file(file, "f");
    snprintf(path, sizeof path, "%s/x/f/sub", base);
    TU_CHECK(clt__mkdirs(path) != 0 && errno == ENOTDIR, "folder below a file");
    /* Locks: a second lock on the same file from another process waits. */
    char lock[1300];
    snprintf(lock, sizeof lock, "%s/l.lock", base);
    int fd = clt__lock(lock);
    TU_CHECK(fd >= 0, "lock: %s", strerror(errno));
    pid_t pid = fork();
    if (pid == 0) {
        int f2 = open(lock, O_RDWR);
        _exit(f2 >= 0 && flock(f2, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    TU_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lock not exclusive");
    clt__unlock(fd);
}

static void test_buf(void)
{
    clt__buf b = {0};
    for (int i = 0; i < 1000; i++) clt__buf_printf(&b, "%d,", i);
    clt__buf_key_part(&b, "k", "a|b\\c\td", 0);
    TU_CHECK(!b.oom && b.p[b.len] == 0 && strncmp(b.p, "0,1,2,", 6) == 0, "buffer content");
    TU_CHECK(strstr(b.p, "999,|k=a\\pb\\\\c\\x09d") && b.p + b.len == strstr(b.p, "999,") + 19,
             "escaped key part: '%s'", strstr(b.p, "999,"));
    char big[600];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    size_t before = b.len;
    clt__buf_printf(&b, "[%s]", big);
    TU_CHECK(b.len == before + 601 && b.p[before] == '[' && b.p[b.len - 1] == ']', "long printf");
    clt__buf_free(&b);
    TU_CHECK(!b.p && !b.len, "freed buffer not reset");
}

int main(void)
{
    const char *root = getenv("CLTRAIN_CACHE_DIR");
    if (!root || !*root) root = "/tmp";
    mkdir(root, 0755);
    snprintf(base, sizeof base, "%s/test_disk.XXXXXX", root);
    if (!mkdtemp(base)) {
        fprintf(stderr, "mkdtemp(%s) failed: %s\n", base, strerror(errno));
        return 1;
    }
    test_atomic();
    test_stale();
    test_read();
    test_dirs();
    test_buf();
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (tu_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", base);
    return tu_finish("disk");
}
