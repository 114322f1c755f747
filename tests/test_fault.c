/* test_fault.c - fault tests of the cltrain binary: kill -9 during training and inside the checkpoint write,
 * Ctrl-C, and two processes tuning into one cache folder at once.
 * usage: test_fault CLTRAIN_BINARY MODE WORKDIR, MODE one of kill, tune.
 *
 * kill: an uninterrupted reference run, then runs killed with SIGKILL at several points: inside the Nth
 * checkpoint write (the process is stopped while its temp file exists, so the kill is known to land inside the
 * write, at a random point of it), and at random times. After each kill the checkpoint must be absent (killed
 * before the first save finished) or a valid checkpoint of the old or the new epoch, and --resume must end
 * with exactly the reference's weights and optimizer state. Then SIGINT: exit 130, a valid checkpoint, and
 * --resume again reaches the reference. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cltrain.h>

#include "testutil.h"

static const char *g_bin;
static char g_dir[4096];
static char g_data[4200];

static void path_in(char *out, size_t len, const char *a, const char *b) { snprintf(out, len, "%.3000s/%.1000s", a, b); }

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void sleep_us(long us)
{
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* MNIST-style IDX files, learnable: a bright block whose place is the class, on noise. */
static int gen_idx(const char *dir, int ntrain, int ntest)
{
    mkdir(dir, 0755);
    uint64_t s = 11;
    for (int t = 0; t < 2; t++) {
        int n = t ? ntest : ntrain;
        size_t ilen = 16 + (size_t)n * 784, llen = 8 + (size_t)n;
        uint8_t *img = calloc(ilen, 1), *lab = calloc(llen, 1);
        if (!img || !lab) return -1;
        be32(img, 0x803), be32(img + 4, (uint32_t)n), be32(img + 8, 28), be32(img + 12, 28);
        be32(lab, 0x801), be32(lab + 4, (uint32_t)n);
        for (int i = 0; i < n; i++) {
            int k = (int)(rng_next(&s) % 10), by = 2 + (k / 5) * 14, bx = 1 + (k % 5) * 5;
            lab[8 + i] = (uint8_t)k;
            for (int y = 0; y < 28; y++)
                for (int x = 0; x < 28; x++) {
                    int in = y >= by && y < by + 8 && x >= bx && x < bx + 6;
                    img[16 + (size_t)i * 784 + y * 28 + x] = (uint8_t)((in ? 190 : 30) + (int)(rng_next(&s) % 41));
                }
        }
        char p[4300];
        const char *pre = t ? "t10k" : "train";
        int rc = 0;
        for (int f = 0; f < 2; f++) {
            char name[64];
            snprintf(name, sizeof name, "%s-%s", pre, f ? "labels-idx1-ubyte" : "images-idx3-ubyte");
            path_in(p, sizeof p, dir, name);
            FILE *o = fopen(p, "wb");
            size_t len = f ? llen : ilen;
            if (!o || fwrite(f ? lab : img, 1, len, o) != len) rc = -1;
            if (o && fclose(o)) rc = -1;
        }
        free(img);
        free(lab);
        if (rc) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ processes */

/* Starts the binary with NULL-terminated arguments; stdout and stderr go to WORKDIR/<tag>.out / .err. */
static pid_t spawn(const char *tag, const char *const *args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = g_bin;
    for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
    argv[n] = NULL;
    fprintf(stderr, "$ cltrain");
    for (int i = 1; i < n; i++) fprintf(stderr, " %s", argv[i]);
    fprintf(stderr, "   [%s]\n", tag);
    char po[4300], pe[4300], name[128];
    snprintf(name, sizeof name, "%s.out", tag);
    path_in(po, sizeof po, g_dir, name);
    snprintf(name, sizeof name, "%s.err", tag);
    path_in(pe, sizeof pe, g_dir, name);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) _exit(127);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(g_bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static char *slurp(const char *tag, const char *ext)
{
    char p[4300], name[128];
    snprintf(name, sizeof name, "%s.%s", tag, ext);
    path_in(p, sizeof p, g_dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = calloc((size_t)n + 1, 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) b[0] = 0;
    fclose(f);
    return b;
}

/* Waits for the process; returns its exit code, or 128 + signal. */
static int reap(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

static int run_ok(const char *tag, const char *const *args)
{
    int rc = reap(spawn(tag, args));
    if (rc != 0) {
        char *e = slurp(tag, "err");
        fprintf(stderr, "  -> exit %d\n---- stderr\n%s----\n", rc, e);
        free(e);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ checkpoints */

/* Training steps per epoch, from the uninterrupted reference run (its steps / NEPOCHS); 0 until it is read. */
static uint64_t g_steps_per_epoch;

/* Training steps recorded in a checkpoint; -1 if it does not read back as valid (the message is printed). */
static long long ckpt_steps(const char *path)
{
    clt_checkpoint *ck = NULL;
    uint64_t steps = 0, passes = 0;
    long long r = -1;
    if (clt_checkpoint_open(path, &ck) < 0 || clt_checkpoint_counters(ck, &steps, &passes) < 0)
        fprintf(stderr, "  %s\n", ck ? clt_checkpoint_errmsg(ck) : "out of memory");
    else
        r = (long long)steps;
    clt_checkpoint_close(ck);
    return r;
}

/* Epochs recorded in a checkpoint (its steps in whole epochs of the reference run); -1 if it is not valid or
 * holds a step count that is not a whole number of epochs (the tool saves after each epoch only). */
static int ckpt_epochs(const char *path)
{
    long long s = ckpt_steps(path);
    if (s < 0 || !g_steps_per_epoch) return -1;
    if ((uint64_t)s % g_steps_per_epoch) {
        fprintf(stderr, "  %s: %lld steps, not a whole number of %llu-step epochs\n", path, s,
                (unsigned long long)g_steps_per_epoch);
        return -1;
    }
    return (int)((uint64_t)s / g_steps_per_epoch);
}

/* Every state tensor's values and both optimizer slots, rebuilt as `--resume` does: the stored network on a
 * training graph with the stored optimizer (clt_graph_load), its state applied. */
static float *ckpt_state(clt_context *ctx, const char *path, size_t *count)
{
    clt_graph *g = NULL;
    clt_load_settings ls;
    clt_load_default_settings(&ls);
    ls.batch = 8;
    ls.training = 1;
    float *all = NULL;
    size_t n = 0;
    if (clt_graph_load(ctx, path, &ls, &g) < 0) {
        TU_CHECK(0, "rebuilding %s: %s", path, clt_errmsg(ctx));
        return NULL;
    }
    for (int i = 0; i < clt_graph_state_count(g); i++) n += 3 * clt_tensor_numel(clt_graph_state_tensor(g, i, NULL));
    all = calloc(n, sizeof *all);
    size_t at = 0;
    for (int i = 0; all && i < clt_graph_state_count(g); i++) {
        int tr;
        clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
        size_t k = clt_tensor_numel(t);
        TU_OK(ctx, clt_tensor_read(g, t, 0, all + at, k));
        at += k;
        for (int s = 0; s < 2; s++, at += k)
            if (tr) TU_OK(ctx, clt_tensor_read_slot(g, t, s, all + at, k));
    }
    *count = n;
    clt_graph_destroy(g);
    return all;
}

static float *g_ref;
static size_t g_nref;
static double g_first_write_s, g_writes_span_s; /* start of a run to its first write; first to last write */

static void same_as_reference(clt_context *ctx, const char *path, const char *what)
{
    size_t n = 0;
    float *w = ckpt_state(ctx, path, &n);
    size_t diff = 0;
    if (w && n == g_nref)
        for (size_t i = 0; i < n; i++) diff += memcmp(&w[i], &g_ref[i], sizeof(float)) != 0;
    TU_CHECK(w && n == g_nref && diff == 0, "%s: resumed state differs from the uninterrupted run (%zu of %zu values, "
             "%zu expected)", what, diff, n, g_nref);
    fprintf(stderr, "  %s: %zu state values compared with the uninterrupted run, %zu differ\n", what, n, diff);
    free(w);
}

/* The temp files "<ckpt>.tmp.*" of checkpoint writers (any suffix: pid or random) in the work folder: counts
 * them, and removes them if `remove` (those left by killed writers, so that each case starts clean). */
static int temps(const char *ckpt_name, int remove)
{
    DIR *d = opendir(g_dir);
    if (!d) return 0;
    struct dirent *e;
    char pre[256], p[4300];
    snprintf(pre, sizeof pre, "%s.tmp.", ckpt_name);
    int n = 0;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, pre, strlen(pre))) {
            n++;
            path_in(p, sizeof p, g_dir, e->d_name);
            if (remove) unlink(p);
        }
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------------------------------ kill */

#define EPOCHS "4"
#define NEPOCHS 4

static void train_args(const char **a, const char *ckpt)
{
    const char *v[] = {"mnist", "--data", g_data, "--model", "mlp", "--epochs", EPOCHS, "--batch", "50",
                       "--optimizer", "adam", "--seed", "3", "--tune", "off", "--checkpoint", ckpt, NULL};
    memcpy(a, v, sizeof v);
}

/* Continues a killed run (or starts it afresh if it never saved) and checks the end state. */
static void resume_and_compare(clt_context *ctx, const char *ckpt, const char *what)
{
    const char *a[32];
    if (exists(ckpt)) {
        const char *v[] = {"mnist", "--data", g_data, "--checkpoint", ckpt, "--resume", "--tune", "off", NULL};
        memcpy(a, v, sizeof v);
    } else {
        train_args(a, ckpt);
    }
    TU_CHECK(run_ok("resume", a) == 0, "%s: --resume succeeds", what);
    TU_CHECK(ckpt_epochs(ckpt) == NEPOCHS, "%s: the resumed run finished all epochs", what);
    same_as_reference(ctx, ckpt, what);
}

/* One killed run. in_write > 0: kill inside the checkpoint write of epoch in_write, delay_us after its temp file
 * appears; else kill at_s seconds after the start, or after the first checkpoint exists if after_save.
 * Returns 1 if the kill landed inside a write, 0 if not, -1 if the run ended first (a write too short for the
 * poll to see, or at_s too late). Saves are counted by the checkpoint's inode (each rename brings a new one),
 * which stays for a whole epoch, so a missed temp file cannot shift which write is hit. */
static int kill_case(clt_context *ctx, int in_write, long delay_us, double at_s, int after_save)
{
    char ckpt[4300], what[160];
    path_in(ckpt, sizeof ckpt, g_dir, "k.ckpt");
    remove(ckpt);
    temps("k.ckpt", 1);
    if (in_write) snprintf(what, sizeof what, "kill inside write %d (+%ld us)", in_write, delay_us);
    else snprintf(what, sizeof what, "kill at %.2f s%s", at_s, after_save ? " after the first save" : "");
    const char *a[32];
    train_args(a, ckpt);
    pid_t pid = spawn("killed", a);
    double t0 = now_s(), first = 0;
    int saves = 0, finished = 0, status = 0;
    ino_t ino = 0;
    for (;;) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            finished = 1;
            break;
        }
        int p = temps("k.ckpt", 0) > 0;
        struct stat st;
        if (stat(ckpt, &st) == 0 && st.st_ino != ino) {
            ino = st.st_ino;
            if (++saves == 1) first = now_s() - t0;
            if (after_save && saves == 1) t0 = now_s();
        }
        if (in_write ? (p && saves == in_write - 1) : (!after_save || saves > 0) && now_s() - t0 >= at_s) {
            if (in_write == NEPOCHS) g_first_write_s = first, g_writes_span_s = now_s() - t0 - first;
            break;
        }
        sleep_us(50);
    }
    int inside = 0, before = -2;
    if (!finished) {
        if (in_write) sleep_us(delay_us);
        kill(pid, SIGSTOP); /* frozen: what exists now is what the kill leaves */
        waitpid(pid, &status, WUNTRACED);
        before = exists(ckpt) ? ckpt_epochs(ckpt) : -2;
        inside = temps("k.ckpt", 0) > 0;
        kill(pid, SIGKILL);
        reap(pid);
    }
    if (finished) {
        TU_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the run ended before the kill (status %d)",
                 what, status);
        fprintf(stderr, "  %s: the run finished first; trying again\n", what);
        return -1;
    }
    int after = exists(ckpt) ? ckpt_epochs(ckpt) : -2;
    fprintf(stderr, "  %s: killed %s the write; checkpoint %s (epochs %d; %d saves seen)\n", what,
            inside ? "INSIDE" : "outside", after == -2 ? "absent" : after < 0 ? "INVALID" : "valid", after, saves);
    TU_CHECK(after != -1, "%s: the checkpoint left behind reads back as valid", what);
    TU_CHECK(after == before, "%s: the kill left the checkpoint as it was (epochs %d before, %d after)", what, before,
             after);
    /* Killed inside a write, `before` was read while the writer was frozen before its rename: the old file (or
     * none). A poll that missed a short write would shift which write this is, so the epoch is not predicted. */
    resume_and_compare(ctx, ckpt, what);
    return inside;
}

static void sigint_case(clt_context *ctx)
{
    char ckpt[4300];
    path_in(ckpt, sizeof ckpt, g_dir, "i.ckpt");
    remove(ckpt);
    const char *a[32];
    train_args(a, ckpt);
    pid_t pid = spawn("sigint", a);
    double t0 = now_s();
    while (!exists(ckpt) && now_s() - t0 < 120) sleep_us(200); /* after the first epoch's save */
    kill(pid, SIGINT);
    int rc = reap(pid);
    char *err = slurp("sigint", "err");
    TU_CHECK(rc == 130, "SIGINT: exit code 130 (got %d)", rc);
    TU_CHECK(strstr(err, "interrupted during epoch") != NULL, "SIGINT: says 'interrupted during epoch' (stderr: %s)",
             err);
    free(err);
    int e = exists(ckpt) ? ckpt_epochs(ckpt) : -2;
    TU_CHECK(e >= 1 && e < NEPOCHS, "SIGINT: a valid checkpoint of a finished epoch stays (epochs %d)", e);
    fprintf(stderr, "  SIGINT: exit %d, checkpoint after epoch %d\n", rc, e);
    resume_and_compare(ctx, ckpt, "SIGINT");
}

static void mode_kill(void)
{
    path_in(g_data, sizeof g_data, g_dir, "data");
    TU_CHECK(gen_idx(g_data, 400, 100) == 0, "generating data");
    clt_context *ctx = tu_context();
    if (!ctx) {
        TU_CHECK(0, "no OpenCL context");
        return;
    }
    char ref[4300];
    path_in(ref, sizeof ref, g_dir, "ref.ckpt");
    remove(ref);
    const char *a[32];
    train_args(a, ref);
    double t0 = now_s();
    TU_CHECK(run_ok("reference", a) == 0, "uninterrupted reference run");
    double tref = now_s() - t0;
    long long ref_steps = ckpt_steps(ref);
    TU_CHECK(ref_steps > 0 && ref_steps % NEPOCHS == 0, "reference: %lld steps in %d epochs", ref_steps, NEPOCHS);
    if (ref_steps > 0) g_steps_per_epoch = (uint64_t)ref_steps / NEPOCHS;
    g_ref = ckpt_state(ctx, ref, &g_nref);
    TU_CHECK(g_ref && g_nref > 0, "reference state");
    fprintf(stderr, "reference: %.2f s, %zu state values\n", tref, g_nref);
    if (!g_ref) return;

    /* Inside the 1st, 2nd, 3rd and last write, at varying depths into it. */
    int inside = 0, tried = 0;
    uint64_t s = 42;
    for (int w = 1; w <= NEPOCHS; w++, tried++) {
        int r = -1;
        for (int try = 0; try < 3 && r < 0; try++) r = kill_case(ctx, w, (long)(rng_next(&s) % 1000), 0, 0);
        inside += r == 1;
    }
    /* At random times: one during start-up, two after the first save (training, evaluation or a later write),
     * timed by the runs above (not the reference run: it may have compiled the kernels). */
    if (g_writes_span_s <= 0) g_first_write_s = g_writes_span_s = 0.5; /* no run reached its last write */
    for (int i = 0; i < 3; i++) {
        double u = (double)(rng_next(&s) % 1000) / 1000.0;
        double at = i == 0 ? g_first_write_s * (0.3 + 0.7 * u) : g_writes_span_s * u;
        for (int try = 0; try < 3 && kill_case(ctx, 0, 0, at, i > 0) < 0; try++) at /= 2; /* it finished first */
    }
    fprintf(stderr, "%d of %d targeted kills landed inside a checkpoint write\n", inside, tried);
    TU_CHECK(inside >= 2, "at least 2 kills landed inside a checkpoint write (%d)", inside);
    sigint_case(ctx);
    free(g_ref);
    clt_context_destroy(ctx);
}

/* ------------------------------------------------------------------------------------------ tune */

/* Two `cltrain tune` processes at once into one fresh cache folder: both succeed, no temp file is left, and a
 * third run finds their decisions in the cache (`--tune cached` only reads it) without reporting it corrupt. */
static void mode_tune(void)
{
    char cache[4300], model[4300];
    path_in(cache, sizeof cache, g_dir, "cache");
    path_in(model, sizeof model, g_dir, "tiny.model");
    path_in(g_data, sizeof g_data, g_dir, "data");
    TU_CHECK(gen_idx(g_data, 64, 16) == 0, "generating data");
    char cmd[8800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
    TU_CHECK(system(cmd) == 0, "clearing %s", cache);
    FILE *f = fopen(model, "w");
    TU_CHECK(f != NULL, "writing %s", model);
    if (!f) return;
    fputs("conv 8 3 pad=same\nrelu\nmaxpool 2\nconv 16 3 pad=same\nrelu\nflatten\ndense 32\nrelu\ndense classes\n", f);
    fclose(f);
    setenv("CLTRAIN_CACHE_DIR", cache, 1);
    const char *t[] = {"tune", "--model", model, "--batch", "16", "--input", "1,28,28", "--budget", "4", NULL};
    double t0 = now_s();
    pid_t p1 = spawn("tune1", t), p2 = spawn("tune2", t);
    int r1 = reap(p1), r2 = reap(p2);
    fprintf(stderr, "  two concurrent tunes: exit %d and %d in %.1f s\n", r1, r2, now_s() - t0);
    TU_CHECK(r1 == 0 && r2 == 0, "both concurrent tuning runs succeed (exit %d, %d)", r1, r2);
    for (int i = 0; i < 2; i++) {
        char *e = slurp(i ? "tune2" : "tune1", "err");
        TU_CHECK(!strstr(e, "corrupt") && !strstr(e, "not a valid"), "tune%d reports no cache damage: %s", i + 1, e);
        free(e);
    }
    DIR *d = opendir(cache);
    int files = 0, temps = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        files += de->d_name[0] != '.';
        temps += strstr(de->d_name, ".tmp.") != NULL;
    }
    if (d) closedir(d);
    TU_CHECK(files > 0 && temps == 0, "the cache folder holds files (%d) and no temp file (%d)", files, temps);

    const char *u[] = {"mnist", "--data", g_data, "--model", model, "--batch", "16", "--epochs", "1", "--tune", "cached",
                       "--verbose", NULL};
    TU_CHECK(run_ok("third", u) == 0, "a third run with --tune cached succeeds");
    char *e = slurp("third", "err");
    int cached = 0;
    for (const char *p = e; (p = strstr(p, "(cached)")); p++) cached++;
    TU_CHECK(cached > 0, "the third run uses decisions from the cache (%d '(cached)' lines)", cached);
    TU_CHECK(!strstr(e, "corrupt") && !strstr(e, "not a valid"), "the third run finds the cache intact: %s", e);
    fprintf(stderr, "  third run: %d decisions read from the cache\n", cached);
    free(e);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_fault CLTRAIN_BINARY MODE WORKDIR\n");
        return 2;
    }
    g_bin = argv[1];
    snprintf(g_dir, sizeof g_dir, "%s/fault_%s", argv[3], argv[2]);
    mkdir(g_dir, 0755);
    if (!strcmp(argv[2], "kill")) mode_kill();
    else if (!strcmp(argv[2], "tune")) mode_tune();
    else {
        fprintf(stderr, "unknown mode %s\n", argv[2]);
        return 2;
    }
    return tu_finish(argv[2]);
}
