/* bench_step.c - `cltrain bench step`: times whole training steps of a model on random data, profiles them
 * per op, and measures the time from process start to the first finished training step. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

#define MAX_NODES 512

typedef struct bench_opts {
    const char *model;
    int batch, steps, warmup, profile_steps;
    int c, h, w, classes;
    const char *device;
    int tune;          /* -1: library default */
    int optimizer;     /* -1: the model's, else Adam */
    float lr;          /* 0: the model's, else the optimizer default */
    int json;
} bench_opts;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Milliseconds since the kernel started this process (Linux: /proc/self/stat field 22 against
 * CLOCK_BOOTTIME, 10 ms resolution), or -1 where that cannot be read. */
static double ms_since_process_start(void)
{
#ifdef __linux__
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return -1;
    char buf[2048];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return -1;
    p++;
    /* after ')' come fields 3.. ; starttime is field 22 */
    unsigned long long start = 0;
    int field = 2;
    char *tok = strtok(p, " ");
    while (tok) {
        if (++field == 22) {
            start = strtoull(tok, NULL, 10);
            break;
        }
        tok = strtok(NULL, " ");
    }
    long hz = sysconf(_SC_CLK_TCK);
    struct timespec t;
    if (field != 22 || hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &t) != 0) return -1;
    double ms = (t.tv_sec * 1e3 + t.tv_nsec / 1e6) - (double)start * 1e3 / (double)hz;
    return ms >= 0 ? ms : -1;
#else
    return -1;
#endif
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* q-quantile of n sorted values, linear interpolation. */
static double quantile(const double *v, int n, double q)
{
    if (n <= 0) return 0;
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return quantile(v, n, 0.5);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cltrain bench step --model NAME|FILE [--batch N] [--steps S] [--warmup W] [--profile-steps P]\n"
            "                          [--input C,H,W] [--classes K] [--device SPEC] [--tune off|cached|quick|full]\n"
            "                          [--optimizer sgd|adam|adamw] [--lr X] [--json]\n"
            "Times S training steps (forward, backward, optimizer step; clFinish each) after W warm-up steps on\n"
            "random data (default CIFAR-10 shape 3,32,32 with 10 classes), then P profiled steps per op.\n"
            "Defaults: batch 64 (or the model's), steps 50, warmup 5, profile-steps 5 (0: no profile).\n");
}

static int parse_int(const char *s, int lo, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > 1000000000L) return -1;
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.model = NULL, .batch = 0, .steps = 50, .warmup = 5, .profile_steps = 5, .c = 3, .h = 32,
                      .w = 32, .classes = 10, .tune = -1, .optimizer = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!v) {
            fprintf(stderr, "bench step: %s needs a value (or is unknown)\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--batch")) bad = parse_int(v, 1, &o->batch);
        else if (!strcmp(a, "--steps")) bad = parse_int(v, 1, &o->steps);
        else if (!strcmp(a, "--warmup")) bad = parse_int(v, 1, &o->warmup);
        else if (!strcmp(a, "--profile-steps")) bad = parse_int(v, 0, &o->profile_steps);
        else if (!strcmp(a, "--classes")) bad = parse_int(v, 2, &o->classes);
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--input")) {
            char extra;
            bad = sscanf(v, "%d,%d,%d%c", &o->c, &o->h, &o->w, &extra) != 3 || o->c < 1 || o->h < 1 || o->w < 1;
        } else if (!strcmp(a, "--tune")) {
            if (!strcmp(v, "off")) o->tune = CLT_TUNE_OFF;
            else if (!strcmp(v, "cached")) o->tune = CLT_TUNE_CACHED;
            else if (!strcmp(v, "quick")) o->tune = CLT_TUNE_QUICK;
            else if (!strcmp(v, "full")) o->tune = CLT_TUNE_FULL;
            else bad = 1;
        } else if (!strcmp(a, "--optimizer")) {
            if (!strcmp(v, "sgd")) o->optimizer = CLT_OPT_SGD;
            else if (!strcmp(v, "adam")) o->optimizer = CLT_OPT_ADAM;
            else if (!strcmp(v, "adamw")) o->optimizer = CLT_OPT_ADAMW;
            else bad = 1;
        } else if (!strcmp(a, "--lr")) {
            char *end;
            o->lr = strtof(v, &end);
            bad = *end || end == v || !(o->lr > 0);
        } else {
            fprintf(stderr, "bench step: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "bench step: bad value '%s' for %s\n", v, a);
            return -1;
        }
    }
    if (!o->model) {
        fprintf(stderr, "bench step: --model is required (a preset: ");
        for (int i = 0; clt_model_preset_name(i); i++) fprintf(stderr, "%s%s", i ? ", " : "", clt_model_preset_name(i));
        fprintf(stderr, "; or a model file)\n");
        return -1;
    }
    return 0;
}

/* One compiled training setup: context, graph, random batch written once. */
typedef struct setup {
    clt_context *ctx;
    clt_graph *g;
    clt_tensor *x, *labels, *loss;
    float lr;
    double ctx_ms, build_ms, compile_ms;
} setup;

static void setup_free(setup *s)
{
    clt_graph_destroy(s->g);
    clt_context_destroy(s->ctx);
    memset(s, 0, sizeof *s);
}

static int fail(setup *s, const char *what, int st)
{
    fprintf(stderr, "bench step: %s failed: %s\n", what, s->ctx ? clt_errmsg(s->ctx) : clt_status_string(st));
    return st;
}

static int make_setup(const bench_opts *o, const clt_model *model, int batch, int profile, setup *s)
{
    memset(s, 0, sizeof *s);
    clt_model_train_defaults md, *m = &md;
    clt_model_get_train_defaults(model, &md);
    double t0 = now_ms();
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = o->device;
    if (o->tune >= 0) cs.tune = o->tune;
    cs.profile = profile;
    int st = clt_context_create(&cs, &s->ctx);
    if (st) return fail(s, "creating the OpenCL context", st);
    double t1 = now_ms();
    s->ctx_ms = t1 - t0;
    if ((st = clt_graph_create(s->ctx, &s->g))) return fail(s, "clt_graph_create", st);
    int xs[4] = {batch, o->c, o->h, o->w}, ls[1] = {batch};
    if ((st = clt_input(s->g, "images", 4, xs, &s->x))) return fail(s, "clt_input", st);
    if ((st = clt_input(s->g, "labels", 1, ls, &s->labels))) return fail(s, "clt_input", st);
    clt_tensor *logits;
    if ((st = clt_model_build(s->g, model, s->x, o->classes, &logits))) {
        fprintf(stderr, "bench step: %s\n", clt_errmsg(s->ctx));
        return st;
    }
    if ((st = clt_softmax_cross_entropy(s->g, logits, s->labels, 0.0f, &s->loss)))
        return fail(s, "clt_softmax_cross_entropy", st);
    double t2 = now_ms();
    s->build_ms = t2 - t1;
    clt_compile_settings comp;
    clt_compile_default_settings(&comp);
    int type = o->optimizer >= 0 ? o->optimizer : m->optimizer >= 0 ? m->optimizer : CLT_OPT_ADAM;
    clt_optimizer_default_settings(&comp.optimizer, type);
    if (type == CLT_OPT_SGD && m->momentum >= 0 && o->optimizer < 0) comp.optimizer.momentum = m->momentum;
    if (type == CLT_OPT_SGD && m->nesterov >= 0 && o->optimizer < 0) comp.optimizer.nesterov = m->nesterov;
    if (m->weight_decay >= 0 && o->optimizer < 0) comp.optimizer.weight_decay = m->weight_decay;
    s->lr = o->lr > 0 ? o->lr : (m->lr > 0 && o->optimizer < 0) ? m->lr : comp.optimizer.lr;
    comp.optimizer.lr = s->lr;
    if ((st = clt_graph_compile(s->g, &comp))) return fail(s, "clt_graph_compile", st);
    s->compile_ms = now_ms() - t2;

    /* Random images in [0,1) and labels, like the PyTorch reference's torch.rand / randint. */
    size_t nx = clt_tensor_numel(s->x);
    float *hx = malloc(nx * sizeof *hx), *hl = malloc((size_t)batch * sizeof *hl);
    if (!hx || !hl) {
        free(hx);
        free(hl);
        fprintf(stderr, "bench step: out of host memory\n");
        return CLT_ERR_NOMEM;
    }
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < nx; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        hx[i] = (float)((r >> 40) * (1.0 / 16777216.0));
    }
    for (int i = 0; i < batch; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        hl[i] = (float)((r >> 33) % (uint64_t)o->classes);
    }
    st = clt_tensor_write(s->g, s->x, hx, nx);
    if (!st) st = clt_tensor_write(s->g, s->labels, hl, (size_t)batch);
    free(hx);
    free(hl);
    if (st) return fail(s, "clt_tensor_write", st);
    return CLT_OK;
}

/* One training step, finished on the device. opt_ms (may be NULL) gets the optimizer's share. */
static int train_step(setup *s, double *opt_ms)
{
    int st;
    if ((st = clt_graph_forward(s->g, 1))) return fail(s, "clt_graph_forward", st);
    if ((st = clt_graph_backward(s->g, s->loss))) return fail(s, "clt_graph_backward", st);
    double t = 0;
    if (opt_ms) { /* the optimizer's time alone: wait for the backward first */
        if ((st = clt_context_finish(s->ctx))) return fail(s, "clFinish", st);
        t = now_ms();
    }
    if ((st = clt_graph_step(s->g, s->lr))) return fail(s, "clt_graph_step", st);
    if ((st = clt_context_finish(s->ctx))) return fail(s, "clFinish", st);
    if (opt_ms) *opt_ms = now_ms() - t;
    return CLT_OK;
}

static void shape_str(const clt_op_profile *p, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    for (int d = 0; d < p->ndim && k + 1 < len; d++)
        k += (size_t)snprintf(buf + k, len - k, "%s%d", d ? "x" : "", p->shape[d]);
}

/* Per-op medians over P profiled steps. */
typedef struct prof_result {
    int count;
    clt_op_profile ops[MAX_NODES]; /* names and shapes from the last run */
    double fwd[MAX_NODES], bwd[MAX_NODES];
    double opt_ms, step_ms; /* medians: optimizer, whole profiled step */
} prof_result;

static int run_profile(const bench_opts *o, const clt_model *m, int batch, prof_result *pr)
{
    setup s;
    int st = make_setup(o, m, batch, 1, &s);
    if (st) {
        setup_free(&s);
        return st;
    }
    int P = o->profile_steps;
    double *fw = calloc((size_t)P * MAX_NODES, sizeof *fw), *bw = calloc((size_t)P * MAX_NODES, sizeof *bw);
    double *opt = calloc((size_t)P, sizeof *opt), *tot = calloc((size_t)P, sizeof *tot);
    double col[64];
    if (!fw || !bw || !opt || !tot) {
        st = CLT_ERR_NOMEM;
        fprintf(stderr, "bench step: out of host memory\n");
        goto done;
    }
    for (int i = 0; i < 2 && !st; i++) st = train_step(&s, NULL); /* warm the profiled context too */
    for (int i = 0; i < P && !st; i++) {
        double t = now_ms();
        if ((st = train_step(&s, &opt[i]))) break;
        tot[i] = now_ms() - t;
        int n = 0;
        if ((st = clt_graph_profile(s.g, pr->ops, MAX_NODES, &n))) {
            fail(&s, "clt_graph_profile", st);
            break;
        }
        pr->count = n < MAX_NODES ? n : MAX_NODES;
        for (int j = 0; j < pr->count; j++) {
            fw[(size_t)i * MAX_NODES + j] = pr->ops[j].forward_ms;
            bw[(size_t)i * MAX_NODES + j] = pr->ops[j].backward_ms;
        }
    }
    if (!st) {
        int R = P < 64 ? P : 64;
        for (int j = 0; j < pr->count; j++) {
            for (int i = 0; i < R; i++) col[i] = fw[(size_t)i * MAX_NODES + j];
            pr->fwd[j] = median_of(col, R);
            for (int i = 0; i < R; i++) col[i] = bw[(size_t)i * MAX_NODES + j];
            pr->bwd[j] = median_of(col, R);
        }
        pr->opt_ms = median_of(opt, P);
        pr->step_ms = median_of(tot, P);
        /* Names point into the graph, which dies below: keep stable copies. */
        static char names[MAX_NODES][2][64];
        for (int j = 0; j < pr->count; j++) {
            snprintf(names[j][0], 64, "%s", pr->ops[j].op ? pr->ops[j].op : "");
            snprintf(names[j][1], 64, "%s", pr->ops[j].name ? pr->ops[j].name : "");
            pr->ops[j].op = names[j][0];
            pr->ops[j].name = names[j][1];
        }
    }
done:
    free(fw);
    free(bw);
    free(opt);
    free(tot);
    setup_free(&s);
    return st;
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

int tool_bench_step(int argc, char **argv)
{
    double t_entry = now_ms();
    double since_start = ms_since_process_start();
    double start_ms = since_start >= 0 ? t_entry - since_start : t_entry; /* process start on our clock */
    bench_opts o;
    int st = parse_args(argc, argv, &o);
    if (st) return st > 0 ? 0 : 2;
    clt_model *m = NULL;
    char err[TOOL_ERR_LEN] = "";
    if (tool_check_model_path(o.model, err) || clt_model_load(o.model, &m)) {
        fprintf(stderr, "bench step: %s\n", m ? clt_model_errmsg(m) : err[0] ? err : "out of memory");
        clt_model_destroy(m);
        return 2;
    }
    clt_model_train_defaults md;
    clt_model_get_train_defaults(m, &md);
    int batch = o.batch ? o.batch : md.batch ? md.batch : 64;
    clt_model_info info;
    if (clt_model_check(m, o.c, o.h, o.w, o.classes, &info, NULL, 0)) {
        fprintf(stderr, "bench step: %s\n", clt_model_errmsg(m));
        clt_model_destroy(m);
        return 2;
    }

    setup s;
    double *times = malloc((size_t)o.steps * sizeof *times);
    prof_result *pr = calloc(1, sizeof *pr);
    if (!times || !pr) {
        fprintf(stderr, "bench step: out of host memory\n");
        free(times);
        free(pr);
        clt_model_destroy(m);
        return 1;
    }
    int rc = 1;
    if (make_setup(&o, m, batch, 0, &s)) goto out;
    double t = now_ms();
    if (train_step(&s, NULL)) goto out;
    double first_step_ms = now_ms() - t;
    double to_first_ms = now_ms() - start_ms;
    for (int i = 1; i < o.warmup; i++)
        if (train_step(&s, NULL)) goto out;
    for (int i = 0; i < o.steps; i++) {
        t = now_ms();
        if (train_step(&s, NULL)) goto out;
        times[i] = now_ms() - t;
    }
    float loss = 0;
    clt_tensor_read(s.g, s.loss, 0, &loss, 1);
    clt_device_info dev;
    clt_context_device_info(s.ctx, &dev);
    double mean = 0;
    for (int i = 0; i < o.steps; i++) mean += times[i];
    mean /= o.steps;
    qsort(times, (size_t)o.steps, sizeof *times, cmp_double);
    double med = quantile(times, o.steps, 0.5), p10 = quantile(times, o.steps, 0.1),
           p90 = quantile(times, o.steps, 0.9);
    double ips = batch * 1000.0 / med;
    double ctx_ms = s.ctx_ms, build_ms = s.build_ms, compile_ms = s.compile_ms;
    float lr = s.lr;
    setup_free(&s);

    if (!o.json) {
        printf("model %s  input %d,%d,%d  classes %d  batch %d  params %lld  %.1f MMAC/image fwd\n", clt_model_name(m), o.c, o.h,
               o.w, o.classes, batch, info.params, info.macs / 1e6);
        printf("device %s (%s)  lr %g\n", dev.name, dev.platform_name, lr);
        printf("start: process start -> first finished training step %.0f ms%s (context %.0f ms, build %.0f ms, "
               "compile %.0f ms, first step %.0f ms)\n", to_first_ms, since_start >= 0 ? "" : " (from tool entry)",
               ctx_ms, build_ms, compile_ms, first_step_ms);
        printf("step: median %.2f ms  p10 %.2f  p90 %.2f  mean %.2f  (%d steps after %d warm-up)  %.0f images/s  "
               "loss %.4f\n", med, p10, p90, mean, o.steps, o.warmup, ips, loss);
        fflush(stdout);
    }
    if (o.profile_steps > 0 && run_profile(&o, m, batch, pr)) goto out;

    if (o.json) {
        printf("{\"model\": ");
        json_str(clt_model_name(m));
        printf(", \"device\": ");
        json_str(dev.name);
        printf(", \"batch\": %d, \"input\": [%d, %d, %d], \"classes\": %d, \"steps\": %d, \"warmup\": %d, "
               "\"median_ms\": %.4f, \"p10_ms\": %.4f, \"p90_ms\": %.4f, \"mean_ms\": %.4f, \"images_per_s\": %.1f, "
               "\"start_to_first_step_ms\": %.1f, \"context_ms\": %.1f, \"build_ms\": %.1f, \"compile_ms\": %.1f, "
               "\"first_step_ms\": %.1f, \"loss\": %.6f",
               batch, o.c, o.h, o.w, o.classes, o.steps, o.warmup, med, p10, p90, mean, ips, to_first_ms, ctx_ms,
               build_ms, compile_ms, first_step_ms, loss);
        if (o.profile_steps > 0) {
            printf(", \"profile\": {\"step_ms\": %.4f, \"optimizer_ms\": %.4f, \"ops\": [", pr->step_ms, pr->opt_ms);
            for (int j = 0; j < pr->count; j++) {
                char sh[64];
                shape_str(&pr->ops[j], sh, sizeof sh);
                printf("%s{\"op\": ", j ? ", " : "");
                json_str(pr->ops[j].op);
                printf(", \"name\": ");
                json_str(pr->ops[j].name);
                printf(", \"shape\": ");
                json_str(sh);
                printf(", \"forward_ms\": %.4f, \"backward_ms\": %.4f}", pr->fwd[j], pr->bwd[j]);
            }
            printf("]}");
        }
        printf("}\n");
    } else if (o.profile_steps > 0) {
        double sum = pr->opt_ms, fsum = 0, bsum = 0;
        for (int j = 0; j < pr->count; j++) {
            fsum += pr->fwd[j];
            bsum += pr->bwd[j];
        }
        sum += fsum + bsum;
        printf("\nprofile (median of %d steps, each op finished before the next; profiled step %.2f ms):\n",
               o.profile_steps, pr->step_ms);
        printf("  %-22s %-22s %-16s %9s %9s %7s\n", "op", "name", "output", "fwd ms", "bwd ms", "share");
        for (int j = 0; j < pr->count; j++) {
            char sh[64];
            shape_str(&pr->ops[j], sh, sizeof sh);
            printf("  %-22s %-22s %-16s %9.3f %9.3f %6.1f%%\n", pr->ops[j].op, pr->ops[j].name, sh, pr->fwd[j],
                   pr->bwd[j], sum > 0 ? 100.0 * (pr->fwd[j] + pr->bwd[j]) / sum : 0);
        }
        printf("  %-22s %-22s %-16s %9s %9.3f %6.1f%%\n", "optimizer", "(all parameters)", "", "", pr->opt_ms,
               sum > 0 ? 100.0 * pr->opt_ms / sum : 0);
        printf("  %-22s %-22s %-16s %9.3f %9.3f %6.1f%%\n", "total", "", "", fsum, bsum + pr->opt_ms, 100.0);
    }
    rc = 0;
out:
    if (rc) setup_free(&s);
    free(times);
    free(pr);
    clt_model_destroy(m);
    return rc;
}

/* `cltrain tune`: builds the model's training graph with measuring allowed, so that compiling it tunes every
 * GEMM shape and convolution algorithm the network uses and stores the decisions in the cache. */
int tool_tune_model(int argc, char **argv)
{
    const char *model = "cnn", *device = NULL;
    int batch = 0, full = 0, c = 3, h = 32, w = 32, classes = 10, verbose = 1, list = 0;
    double budget = 120;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--full")) full = 1;
        else if (!strcmp(a, "--quiet")) verbose = 0;
        else if (!strcmp(a, "--list")) list = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: cltrain tune [--model NAME|FILE] [--batch N] [--budget SECONDS] [--full] [--input C,H,W]\n"
                   "                    [--classes K] [--device SPEC] [--quiet]\n"
                   "       cltrain tune --list [--device SPEC]\n"
                   "Measures the GEMM kernels and convolution algorithms of the model's training step for this\n"
                   "device (within --budget seconds, default 120; --full: every candidate, no budget) and stores\n"
                   "the decisions in the tuning cache that training then uses. `cltrain tune gemm M N K` tunes one\n"
                   "GEMM shape. `--list` prints the decisions cached for the device.\n");
            return 0;
        } else if (v && !strcmp(a, "--model")) model = v, i++;
        else if (v && !strcmp(a, "--device")) device = v, i++;
        else if (v && !strcmp(a, "--batch") && !parse_int(v, 1, &batch)) i++;
        else if (v && !strcmp(a, "--classes") && !parse_int(v, 2, &classes)) i++;
        else if (v && !strcmp(a, "--budget") && (budget = strtod(v, NULL)) > 0) i++;
        else if (v && !strcmp(a, "--input") && sscanf(v, "%d,%d,%d", &c, &h, &w) == 3 && c > 0 && h > 0 && w > 0) i++;
        else {
            fprintf(stderr, "cltrain tune: bad or unknown option '%s' (see cltrain tune --help)\n", a);
            return 2;
        }
    }
    if (list) return tool_tune_list(device);
    clt_model *m = NULL;
    char err[TOOL_ERR_LEN] = "";
    if (tool_check_model_path(model, err) || clt_model_load(model, &m)) {
        fprintf(stderr, "cltrain tune: %s\n", m ? clt_model_errmsg(m) : err[0] ? err : "out of memory");
        clt_model_destroy(m);
        return 1;
    }
    clt_model_train_defaults md;
    clt_model_get_train_defaults(m, &md);
    if (batch == 0) batch = md.batch > 0 ? md.batch : 64;
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = device;
    cs.tune = full ? CLT_TUNE_FULL : CLT_TUNE_QUICK;
    cs.tune_budget_s = budget;
    cs.verbose = verbose;
    clt_context *ctx = NULL;
    clt_graph *g = NULL;
    clt_tensor *x, *labels, *logits, *loss;
    int xs[4] = {batch, c, h, w}, ls[1] = {batch};
    double t0 = now_ms();
    int st = clt_context_create(&cs, &ctx);
    if (!st) st = clt_graph_create(ctx, &g);
    if (!st) st = clt_input(g, "images", 4, xs, &x);
    if (!st) st = clt_input(g, "labels", 1, ls, &labels);
    if (!st && (st = clt_model_build(g, m, x, classes, &logits))) {
        fprintf(stderr, "cltrain tune: %s\n", clt_errmsg(ctx));
    } else {
        if (!st) st = clt_softmax_cross_entropy(g, logits, labels, 0.0f, &loss);
        clt_compile_settings comp;
        clt_compile_default_settings(&comp);
        clt_optimizer_default_settings(&comp.optimizer, md.optimizer >= 0 ? md.optimizer : CLT_OPT_SGD);
        if (!st) st = clt_graph_compile(g, &comp);
        if (st) fprintf(stderr, "cltrain tune: %s\n", clt_errmsg(ctx));
    }
    if (!st) printf("tuned %s (batch %d, input %d,%d,%d) in %.1f s; decisions are cached for this device\n", model,
                    batch, c, h, w, (now_ms() - t0) / 1000);
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    clt_model_destroy(m);
    return st ? 1 : 0;
}
