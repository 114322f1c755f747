/* report.c - what cltrain shows and writes about a run: progress bar, per-class metrics, JSON log, SVG plot. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

double cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------------------------ progress */

void cli_progress_init(cli_progress *p, FILE *f)
{
    memset(p, 0, sizeof *p);
    p->tty = isatty(fileno(f));
}

static void fmt_time(char *buf, size_t len, double s)
{
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, len, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

void cli_progress_draw(cli_progress *p, FILE *f, int epoch, int epochs, int step, int steps, double loss,
                       double acc, double images_per_s, double eta_s)
{
    if (!p->tty) return;
    double now = cli_now_s() * 1000.0;
    /* Redrawing costs a write per call: at most ten per second, plus the last step. */
    if (step != steps && p->drawn && now - p->last_draw_ms < 100.0) return;
    p->last_draw_ms = now;
    p->drawn = 1;
    const int width = 24;
    int fill = steps > 0 ? (int)((double)step * width / steps) : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    char eta[32];
    fmt_time(eta, sizeof eta, eta_s);
    fprintf(f, "\r\033[Kepoch %d/%d [%s] %d/%d loss %.4f acc %.4f %.0f img/s ETA %s", epoch, epochs, bar, step,
            steps, loss, acc, images_per_s, eta);
    fflush(f);
}

void cli_progress_eval(cli_progress *p, FILE *f, int done, int total)
{
    if (!p || !p->tty) return;
    double now = cli_now_s() * 1000.0;
    if (done != total && p->drawn && now - p->last_draw_ms < 100.0) return;
    p->last_draw_ms = now;
    p->drawn = 1;
    fprintf(f, "\r\033[Kevaluating on the test set: %d/%d images", done, total);
    fflush(f);
}

void cli_progress_clear(cli_progress *p, FILE *f)
{
    if (!p) return;
    if (p->tty && p->drawn) {
        fprintf(f, "\r\033[K");
        fflush(f);
    }
    p->drawn = 0;
}

/* ------------------------------------------------------------------------------------------ metrics */

void cli_print_class_report(FILE *f, const int64_t *cm, int k, const char (*names)[32])
{
    int nw = 5;
    for (int i = 0; i < k; i++)
        if ((int)strlen(names[i]) > nw) nw = (int)strlen(names[i]);
    fprintf(f, "per-class metrics (test set):\n");
    fprintf(f, "  %-*s %9s %9s %9s %8s\n", nw, "class", "precision", "recall", "f1", "support");
    double sum_f1 = 0;
    int64_t total = 0, correct = 0;
    for (int i = 0; i < k; i++) {
        int64_t tp = cm[i * k + i], row = 0, col = 0;
        for (int j = 0; j < k; j++) {
            row += cm[i * k + j];
            col += cm[j * k + i];
        }
        double prec = col ? (double)tp / col : 0.0, rec = row ? (double)tp / row : 0.0;
        double f1 = prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0.0;
        sum_f1 += f1;
        total += row;
        correct += tp;
        fprintf(f, "  %-*s %9.4f %9.4f %9.4f %8lld\n", nw, names[i], prec, rec, f1, (long long)row);
    }
    fprintf(f, "  %-*s %9s %9s %9.4f %8lld   (accuracy %.4f)\n", nw, "macro", "", "", sum_f1 / k,
            (long long)total, total ? (double)correct / total : 0.0);
    /* Column headers are the first characters of each name so the matrix stays narrow. */
    int cw = 6;
    for (int i = 0; i < k * k; i++) {
        char b[32];
        int l = snprintf(b, sizeof b, "%lld", (long long)cm[i]);
        if (l + 1 > cw) cw = l + 1;
    }
    fprintf(f, "confusion matrix (rows: true class, columns: predicted):\n");
    fprintf(f, "  %-*s", nw, "");
    for (int j = 0; j < k; j++) fprintf(f, "%*.*s", cw, cw - 1, names[j]);
    fprintf(f, "\n");
    for (int i = 0; i < k; i++) {
        fprintf(f, "  %-*s", nw, names[i]);
        for (int j = 0; j < k; j++) fprintf(f, "%*lld", cw, (long long)cm[i * k + j]);
        fprintf(f, "\n");
    }
}

/* ------------------------------------------------------------------------------------------ files */

/* The file is composed in memory, then written by the library's atomic writer (a uniquely named temporary,
 * fsync, rename), so a reader never sees half a file and a crash leaves no obstacle to the next write. */
typedef struct memout {
    FILE *f;
    char *buf;
    size_t len;
} memout;

static FILE *open_mem(memout *m, char *err)
{
    memset(m, 0, sizeof *m);
    m->f = open_memstream(&m->buf, &m->len);
    if (!m->f) snprintf(err, TOOL_ERR_LEN, "out of memory");
    return m->f;
}

static int close_mem(memout *m, const char *path, char *err)
{
    int bad = ferror(m->f);
    if (fclose(m->f) != 0) bad = 1;
    int st = bad ? tool_fail(err, CLT_ERR_NOMEM, "out of memory composing %.900s", path)
                 : clt_file_write_atomic(path, m->buf, m->len, err, TOOL_ERR_LEN);
    free(m->buf);
    return st;
}

/* JSON has no NaN/Infinity: those become null. */
static void json_num(FILE *f, const char *key, double v, int last)
{
    if (isfinite(v))
        fprintf(f, "\"%s\":%.6g%s", key, v, last ? "" : ",");
    else
        fprintf(f, "\"%s\":null%s", key, last ? "" : ",");
}

int cli_write_log(const char *path, const tool_epoch_metrics *h, int n, char *err)
{
    memout mo;
    FILE *f = open_mem(&mo, err);
    if (!f) return CLT_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        fprintf(f, "{\"epoch\":%d,", i + 1);
        json_num(f, "train_loss", h[i].train_loss, 0);
        json_num(f, "train_acc", h[i].train_acc, 0);
        json_num(f, "test_loss", h[i].test_loss, 0);
        json_num(f, "test_acc", h[i].test_acc, 0);
        json_num(f, "seconds", h[i].seconds, 0);
        json_num(f, "images_per_s", h[i].images_per_s, 1);
        fprintf(f, "}\n");
    }
    return close_mem(&mo, path, err);
}

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about `want` ticks over `range`. */
static double nice_step(double range, int want)
{
    if (!(range > 0)) return 1;
    double raw = range / want, p = pow(10, floor(log10(raw))), r = raw / p;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * p;
}

/* One panel: frame, grid, ticks, axis labels, two curves and a legend. */
static void svg_panel(FILE *f, double x0, double y0, double w, double hgt, const char *title, const char *ylabel,
                      const tool_epoch_metrics *h, int n, int acc)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double a = acc ? h[i].train_acc : h[i].train_loss, b = acc ? h[i].test_acc : h[i].test_loss;
        if (isfinite(a)) lo = fmin(lo, a), hi = fmax(hi, a);
        if (isfinite(b)) lo = fmin(lo, b), hi = fmax(hi, b);
    }
    if (acc) lo = fmin(lo, 0), hi = fmax(hi, 1);
    if (!isfinite(lo)) lo = 0, hi = 1;
    if (!acc) lo = fmin(lo, 0);
    if (hi - lo < 1e-9) hi = lo + 1;
    double ystep = nice_step(hi - lo, 5);
    lo = floor(lo / ystep) * ystep;
    hi = ceil(hi / ystep) * ystep;
    int xmax = n > 1 ? n : 2;
    double xstep = ceil(nice_step(xmax - 1, 8));
    if (xstep < 1) xstep = 1;
#define SX(e) (x0 + ((e) - 1) / (double)(xmax - 1) * w)
#define SY(v) (y0 + hgt - ((v) - lo) / (hi - lo) * hgt)
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">%s</text>\n",
            x0 + w / 2, y0 - 12, title);
    for (double v = lo; v <= hi + ystep * 1e-6; v += ystep) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, SY(v), x0 + w, SY(v));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%g</text>\n", x0 - 6,
                SY(v) + 4, fabs(v) < ystep * 1e-6 ? 0.0 : v);
    }
    for (double e = 1; e <= xmax + 1e-9; e += xstep) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", SX(e), y0 + hgt,
                SX(e), y0 + hgt + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%g</text>\n", SX(e),
                y0 + hgt + 18, e);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", x0,
            y0, w, hgt);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">epoch</text>\n", x0 + w / 2,
            y0 + hgt + 36);
    fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n",
            x0 - 44, y0 + hgt / 2, ylabel);
    const char *colors[2] = {"#1f77b4", "#d62728"};
    const char *labels[2] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[s]);
        for (int i = 0; i < n; i++) {
            double v = acc ? (s ? h[i].test_acc : h[i].train_acc) : (s ? h[i].test_loss : h[i].train_loss);
            if (isfinite(v)) fprintf(f, "%.1f,%.1f ", SX(i + 1), SY(v));
        }
        fprintf(f, "\"/>\n");
        for (int i = 0; i < n; i++) {
            double v = acc ? (s ? h[i].test_acc : h[i].train_acc) : (s ? h[i].test_loss : h[i].train_loss);
            if (isfinite(v))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", SX(i + 1), SY(v), colors[s]);
        }
        double lx = x0 + w - 90, ly = y0 + 16 + 18 * s;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n", lx,
                ly, lx + 24, ly, colors[s]);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n", lx + 30, ly + 4, labels[s]);
    }
#undef SX
#undef SY
}

static void xml_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

int cli_write_plot(const char *path, const tool_epoch_metrics *h, int n, const char *title, char *err)
{
    memout mo;
    FILE *f = open_mem(&mo, err);
    if (!f) return CLT_ERR_NOMEM;
    const double W = 900, H = 420;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">", W / 2);
    xml_escaped(f, title);
    fprintf(f, "</text>\n");
    svg_panel(f, 70, 70, 340, 280, "Loss", "cross-entropy loss", h, n, 0);
    svg_panel(f, 530, 70, 340, 280, "Accuracy", "accuracy", h, n, 1);
    fprintf(f, "</svg>\n");
    return close_mem(&mo, path, err);
}

/* ------------------------------------------------------------------------------------------ output paths */

/* The folder part of a path ("." for a bare name). */
static void dir_of(const char *path, char *dir, size_t len)
{
    snprintf(dir, len, "%s", path);
    char *sl = strrchr(dir, '/');
    if (!sl) snprintf(dir, len, ".");
    else if (sl == dir) dir[1] = 0;
    else *sl = 0;
}

static const char *base_of(const char *path)
{
    const char *sl = strrchr(path, '/');
    return sl ? sl + 1 : path;
}

/* The first 8 bytes of every checkpoint (CKPT_MAGIC in tools/checkpoint.c, with its NUL). */
static int is_checkpoint_file(const char *path)
{
    char err[TOOL_ERR_LEN];
    int fd = tool_open_regular(path, NULL, err);
    if (fd < 0) return 0;
    char m[8];
    ssize_t n = read(fd, m, sizeof m);
    close(fd);
    return n == 8 && !memcmp(m, "CLTCKPT", 8);
}

int cli_check_output(const char *opt, const char *path, int is_checkpoint, char *err)
{
    if (!*path) return tool_fail(err, CLT_ERR_INVALID, "%s: empty file name", opt);
    size_t len = strlen(path);
    if (path[len - 1] == '/')
        return tool_fail(err, CLT_ERR_INVALID, "%s %s: names a folder; give a file name", opt, path);
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return tool_fail(err, CLT_ERR_INVALID, "%s %s: is a folder; give a file name (e.g. %s/%s)", opt, path, path,
                             is_checkpoint ? "run.ckpt" : !strcmp(opt, "--plot") ? "curves.svg" : "log.jsonl");
        if (!S_ISREG(st.st_mode))
            return tool_fail(err, CLT_ERR_INVALID, "%s %s: is %s, not a regular file", opt, path,
                             tool_file_kind((unsigned)st.st_mode));
        /* The log and the plot are rewritten every epoch: never over someone's checkpoint. */
        if (!is_checkpoint && is_checkpoint_file(path))
            return tool_fail(err, CLT_ERR_INVALID, "%s %s: is a cltrain checkpoint; refusing to overwrite it (choose "
                             "another file name)", opt, path);
    } else if (errno != ENOENT) {
        return tool_fail(err, CLT_ERR_IO, "%s %s: %s", opt, path, strerror(errno));
    }
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    if (stat(dir, &st) != 0)
        return tool_fail(err, CLT_ERR_IO, "%s %s: folder %s%s%s", opt, path, dir,
                         errno == ENOENT ? " does not exist" : ": ", errno == ENOENT ? "" : strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return tool_fail(err, CLT_ERR_IO, "%s %s: %s is %s, not a folder", opt, path, dir,
                         tool_file_kind((unsigned)st.st_mode));
    if (access(dir, W_OK | X_OK) != 0)
        return tool_fail(err, CLT_ERR_IO, "%s %s: cannot create files in folder %s (%s)", opt, path, dir,
                         strerror(errno));
    /* Every save writes NAME + a temporary suffix first: the longer name must be legal too. */
    long name_max = pathconf(dir, _PC_NAME_MAX);
    if (name_max <= 0) name_max = NAME_MAX;
    size_t bl = strlen(base_of(path));
    if ((long)(bl + CLI_TMP_SUFFIX_MAX) > name_max)
        return tool_fail(err, CLT_ERR_INVALID, "%s: the file name is %zu characters; saving writes it with a temporary "
                         "suffix of up to %d more first, over this file system's limit of %ld: use a name of at most "
                         "%ld characters", opt, bl, CLI_TMP_SUFFIX_MAX, name_max, name_max - CLI_TMP_SUFFIX_MAX);
    if (len + CLI_TMP_SUFFIX_MAX >= PATH_MAX)
        return tool_fail(err, CLT_ERR_INVALID, "%s: the path is %zu characters, over the limit of %d", opt, len,
                         PATH_MAX - 1 - CLI_TMP_SUFFIX_MAX);
    return CLT_OK;
}

/* NAME.tmp.PID (the old checkpoint writer) or NAME.tmp.PID.<16 hex> (the library's writer); the pid, or -1. */
static long temp_pid(const char *entry, const char *base)
{
    size_t bl = strlen(base);
    if (strncmp(entry, base, bl) || strncmp(entry + bl, ".tmp.", 5)) return -1;
    const char *p = entry + bl + 5, *d = p;
    long pid = 0;
    while (*d >= '0' && *d <= '9' && d - p < 10) pid = pid * 10 + (*d++ - '0');
    if (d == p || pid <= 0) return -1;
    if (!*d) return pid;
    /* The library's atomic writer (clt_file_write_atomic, clt_graph_save): "<pid>.<16 hex digits>". */
    if (*d != '.' || strlen(d + 1) != 16 || strspn(d + 1, "0123456789abcdef") != 16) return -1;
    return pid;
}

int cli_clean_stale_temps(const char *path, const struct timespec *started, FILE *note)
{
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    const char *base = base_of(path);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = temp_pid(e->d_name, base);
        if (pid < 0) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            st.st_uid != geteuid())
            continue;
        /* Older than this process, and its writer is gone: our own pid means a previous life of it (a restarted
         * container reuses pids); another live pid may be a run saving right now. */
        int older = st.st_mtim.tv_sec < started->tv_sec ||
                    (st.st_mtim.tv_sec == started->tv_sec && st.st_mtim.tv_nsec < started->tv_nsec);
        int gone = pid == (long)getpid() || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
        if (!older || !gone) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
            removed++;
            if (note)
                fprintf(note, "cltrain: removed %s/%s, a temporary file left by an interrupted save (%lld bytes)\n",
                        dir, e->d_name, (long long)st.st_size);
        }
    }
    closedir(d);
    return removed;
}
