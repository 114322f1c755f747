/* train.c - the training command of cltrain: settings (new run or resume), data, graphs, epochs, steps, early stop. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "train_internal.h"

const char *const cli_schedule_names[4] = {"constant", "step", "cosine", "onecycle"};
const char *const cli_optimizer_names[3] = {"sgd", "adam", "adamw"};

#define CLI_MAX_IMAGE_VALUES (1 << 26)

#define CLI_PI 3.14159265358979323846

/* ------------------------------------------------------------------------------------------ interrupt */

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

/* ------------------------------------------------------------------------------------------ data */

/* The data path: --data as given, else the first default place holding the data set (tools/data.c); origin
 * says which place, for messages ("" for --data). */
int resolve_data_dir(const char *dataset, const char *given, char *dir, size_t len, char *origin, char *err)
{
    /* Image folders have no default place: they are the user's own. */
    if (!strcmp(dataset, "images") && !given)
        return tool_fail(err, CLT_ERR_INVALID, "images: give --data DIR, a folder with one folder of JPEG/PNG images "
                         "per class");
    return tool_data_find(dataset, given, dir, len, origin, 96, err);
}

/* Appended to a data error when the path came from a default place, not the command line. */
void data_dir_origin(char *buf, size_t len, const char *origin)
{
    if (origin && *origin) snprintf(buf, len, " (the data was found through %s)", origin);
    else if (len) buf[0] = 0;
}

int load_dataset(const char *dataset, const char *dir, int train, tool_dataset *ds, char *err)
{
    memset(ds, 0, sizeof *ds);
    return tool_load_data(dataset, dir, train, ds, err);
}

/* Class names of two image folders must agree, or a class index would mean different things. */
int same_classes(const tool_dataset *a, const char *adir, const tool_dataset *b, const char *bdir, char *err)
{
    int same = a->classes == b->classes;
    for (int k = 0; same && k < a->classes; k++) same = !strcmp(a->class_names[k], b->class_names[k]);
    if (same) return 0;
    return tool_fail(err, CLT_ERR_FORMAT, "%s has %d class folders (%s, ...) but %s has %d (%s, ...): the class folders "
                     "must have the same names", adir, a->classes, a->class_names[0], bdir, b->classes,
                     b->class_names[0]);
}

/* The training set and the one evaluated after every epoch: the dataset's test set, the folder of --test, or the
 * last --validation-split of the training data (per class for image folders). `dm`: the resumed run's data
 * settings (image size and channels), else NULL. */
static int load_train_test(const cli_train_opts *o, const char *dir, const cli_data_meta *dm, tool_dataset *train,
                           tool_dataset *test, char *err)
{
    int images = !strcmp(o->dataset, "images"), split = !isnan(o->validation_split);
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if (images) {
        int size = dm ? dm->h : o->image_size > 0 ? o->image_size : 32;
        int ch = dm ? dm->c : o->image_channels > 0 ? o->image_channels : 3;
        if (!o->test_dir && !split)
            return tool_fail(err, CLT_ERR_INVALID, "images: give --test DIR (a folder of the same class folders) or "
                             "--validation-split F (the last fraction of each class is held out)");
        int st = tool_load_image_folder(dir, size, ch, train, err);
        if (!st && o->test_dir) st = tool_load_image_folder(o->test_dir, size, ch, test, err);
        if (!st && o->test_dir) st = same_classes(train, dir, test, o->test_dir, err);
        else if (!st) st = tool_dataset_split(train, o->validation_split, 1, test, err);
        return st;
    }
    int st = load_dataset(o->dataset, dir, 1, train, err);
    if (!st && split) return tool_dataset_split(train, o->validation_split, 0, test, err);
    return st ? st : load_dataset(o->dataset, dir, 0, test, err);
}

/* Host copy of every state tensor with its optimizer slots: the weights of the best epoch (--early-stop). */
typedef struct state_copy {
    float *v;
    size_t n;
} state_copy;

static int state_copy_take(clt_graph *g, state_copy *c, int restore)
{
    size_t need = 0;
    for (int i = 0; i < clt_graph_state_count(g); i++) need += 3 * clt_tensor_numel(clt_graph_state_tensor(g, i, NULL));
    if (!c->v) {
        if (!(c->v = malloc(need * sizeof(float) + 1))) return fail("out of host memory");
        c->n = need;
    }
    float *p = c->v;
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        int tr;
        clt_tensor *t = clt_graph_state_tensor(g, i, &tr);
        size_t cnt = clt_tensor_numel(t);
        int st = restore ? clt_tensor_write(g, t, p, cnt) : clt_tensor_read(g, t, 0, p, cnt);
        for (int s = 0; tr && s < 2 && st >= 0; s++)
            st = restore ? clt_tensor_write_slot(g, t, s, p + (s + 1) * cnt, cnt)
                         : clt_tensor_read_slot(g, t, s, p + (s + 1) * cnt, cnt);
        if (st < 0) return fail("%s the best epoch's weights: %s", restore ? "restoring" : "keeping",
                                clt_errmsg(clt_graph_context(g)));
        p += 3 * cnt;
    }
    return 0;
}



/* Copies every state tensor (and optimizer slots) and the counters from one graph to another built from
 * the same model: used to train the last partial batch on a graph of that size. */
static int copy_state(clt_context *ctx, clt_graph *src, clt_graph *dst, float *buf)
{
    int n = clt_graph_state_count(src);
    if (n != clt_graph_state_count(dst)) return fail("internal: graphs differ in state tensors");
    for (int i = 0; i < n; i++) {
        int tr;
        clt_tensor *a = clt_graph_state_tensor(src, i, &tr), *b = clt_graph_state_tensor(dst, i, NULL);
        size_t cnt = clt_tensor_numel(a);
        if (cnt != clt_tensor_numel(b) || strcmp(clt_tensor_name(a), clt_tensor_name(b)))
            return fail("internal: state tensor %d differs between graphs", i);
        if (clt_tensor_read(src, a, 0, buf, cnt) < 0 || clt_tensor_write(dst, b, buf, cnt) < 0)
            return fail("copying state: %s", clt_errmsg(ctx));
        for (int s = 0; tr && s < 2; s++)
            if (clt_tensor_read_slot(src, a, s, buf, cnt) < 0 || clt_tensor_write_slot(dst, b, s, buf, cnt) < 0)
                return fail("copying optimizer state: %s", clt_errmsg(ctx));
    }
    uint64_t steps, passes;
    clt_graph_get_counters(src, &steps, &passes);
    clt_graph_set_counters(dst, steps, passes);
    return 0;
}

static size_t max_state_numel(clt_graph *g)
{
    size_t m = 1;
    for (int i = 0; i < clt_graph_state_count(g); i++) {
        size_t c = clt_tensor_numel(clt_graph_state_tensor(g, i, NULL));
        if (c > m) m = c;
    }
    return m;
}

/* ------------------------------------------------------------------------------------------ training step */

/* One step's batch on the host (rows of n->batch per micro-batch) and where its logits go. */
typedef struct micro_io {
    net *n;
    const float *x, *y;
    float *logits;
    size_t img;
    int classes;
    tool_teacher *teacher; /* distillation: its logits go to the student's input before each forward pass */
    int tail;              /* the step runs on the tail graphs (the teacher's too) */
} micro_io;

static int micro_fill(void *ud, int m, char *err)
{
    micro_io *io = ud;
    net *n = io->n;
    size_t r = (size_t)m * n->batch;
    if (clt_tensor_write(n->g, n->x, io->x + r * io->img, (size_t)n->batch * io->img) < 0 ||
        clt_tensor_write(n->g, n->y, io->y + r, (size_t)n->batch) < 0 ||
        (io->teacher && tool_teacher_run(io->teacher, io->tail, io->x + r * io->img, n->g, n->teacher) < 0))
        return tool_fail(err, -1, "%s", clt_errmsg(clt_graph_context(n->g)));
    return 0;
}

static int micro_after(void *ud, int m, char *err)
{
    micro_io *io = ud;
    net *n = io->n;
    float *dst = io->logits + (size_t)m * n->batch * io->classes;
    if (clt_tensor_read(n->g, n->logits, 0, dst, (size_t)n->batch * io->classes) < 0)
        return tool_fail(err, -1, "%s", clt_errmsg(clt_graph_context(n->g)));
    return 0;
}

/* The data-parallel agreement of one step (tool_step.sync): dist_step's verdict is kept for the caller. */
typedef struct step_sync {
    dist_graph *d;
    int local_rows, global_rows;
    int stop; /* <0: another rank failed (it printed why); >0: a rank was interrupted; 0: go on */
} step_sync;

static int sync_step(void *ud, int st)
{
    step_sync *s = ud;
    s->stop = dist_step(st, g_interrupted, s->d, s->local_rows, s->global_rows);
    return s->stop;
}

/* ------------------------------------------------------------------------------------------ schedule */

static double lr_at(int schedule, double base, uint64_t step, uint64_t total)
{
    double t = total ? (double)step / (double)total : 0;
    if (t > 1) t = 1;
    switch (schedule) {
    case CLI_SCHED_STEP: return base * (t < 0.5 ? 1.0 : t < 0.75 ? 0.1 : 0.01);
    case CLI_SCHED_COSINE: return base * 0.5 * (1 + cos(CLI_PI * t));
    case CLI_SCHED_ONECYCLE:
        /* Linear warm-up from base/25 over the first 30%, then cosine annealing to zero. */
        if (t < 0.3) return base * (0.04 + 0.96 * t / 0.3);
        return base * 0.5 * (1 + cos(CLI_PI * (t - 0.3) / 0.7));
    default: return base;
    }
}

/* ------------------------------------------------------------------------------------------ summary */

void print_final(const tool_epoch_metrics *h, int n, double test_acc, double test_loss)
{
    double secs = 0, inv = 0;
    int nips = 0;
    for (int i = 0; i < n; i++) {
        secs += h[i].seconds;
        if (h[i].images_per_s > 0) {
            inv += 1.0 / h[i].images_per_s;
            nips++;
        }
    }
    printf("final: epochs=%d test_acc=%.4f test_loss=%.4f train_images_per_s=%.1f seconds=%.1f\n", n, test_acc,
           test_loss, nips ? nips / inv : 0.0, secs);
    fflush(stdout);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Equal names, or two names of one existing file. */
static int same_path(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!strcmp(a, b)) return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Saves the training graph with the tool's metadata. */
static int checkpoint_save(const char *path, clt_graph *g, const tool_ckpt_meta *m, const cli_data_meta *dm)
{
    char err[TOOL_ERR_LEN] = "";
    unsigned char *blob = NULL;
    size_t len = 0;
    if (tool_meta_encode(m, dm, &blob, &len, err) < 0) return fail("saving the checkpoint: %s", err);
    int st = tool_graph_save(g, path, blob, len);
    free(blob);
    if (st < 0) return fail("saving the checkpoint after epoch %d: %s", m->epochs_done, clt_errmsg(clt_graph_context(g)));
    return 0;
}

/* Prints the model's per-layer table (the check's message follows if it failed). */
static void print_model_table(clt_model *model, const cli_data_meta *dm, size_t bytes)
{
    char *table = malloc(bytes);
    if (!table) return;
    clt_model_check(model, dm->c, dm->h, dm->w, dm->classes, NULL, table, bytes);
    fputs(table, stdout);
    free(table);
}

/* Graph settings of a run: its seed and optimizer (from the options or the checkpoint). */
static void run_compile_settings(const tool_ckpt_meta *meta, clt_compile_settings *cs)
{
    clt_compile_default_settings(cs);
    cs->seed = meta->seed;
    cs->optimizer = meta->opt;
}

/* ------------------------------------------------------------------------------------------ train */

/* Everything one training run holds, shared by the stages of cli_train (freed at its end). */
typedef struct train_run {
    const cli_train_opts *o;
    char err[TOOL_ERR_LEN];
    char dir[4096], origin[96];
    tool_dataset train, test;
    clt_model *model;
    clt_checkpoint *ck;
    cli_data_meta dm;
    tool_ckpt_meta *meta, *ckmeta;
    clt_context *ctx;
    clt_device_info di;
    clt_model_info mi;
    net tr, tail;
    dist_graph *dtr, *dtail;
    tool_teacher *teacher;
    pipeline pl;
    float *statebuf;
    int *order;
    state_copy best;
    int resume, ntrain;
    /* Batch plan: B images a step, K micro-batches of M, nfull full steps and rem images left; the tail step's
     * size (tail_n, or tail_micro micro-batches) and this rank's rows (Bl from Boff; Tl from Toff in the tail). */
    int B, K, M, nfull, rem, tail_n, tail_micro, Bl, Boff, Tl, Toff, steps_per_epoch;
    size_t img;
    cli_progress prog;
    prep_spec spec;
    uint64_t total_steps;
    double last_test_acc, last_test_loss, best_loss;
    int evaluated, start_epoch_for_timing, best_epoch;
    const char *split_name;
} train_run;

/* Output files: each is rewritten every epoch, so two names for one file would replace each other (a log written
 * over the checkpoint loses it). */
static int check_outputs(const cli_train_opts *o, char *err)
{
    {
        const char *outs[3] = {o->checkpoint, o->log, o->plot}, *what[3] = {"--checkpoint", "--log", "--plot"};
        for (int i = 0; i < 3; i++)
            for (int j = i + 1; j < 3; j++)
                if (outs[i] && outs[j] && same_path(outs[i], outs[j])) {
                    fail("%s and %s name the same file (%s)", what[i], what[j], outs[j]);
                    return 1;
                }
        /* Every name is checked now rather than failing after the first epoch; then the temporaries an
         * interrupted save of an earlier run left next to them are removed. */
        struct timespec started;
        clock_gettime(CLOCK_REALTIME, &started);
        for (int i = 0; i < 3; i++)
            if (outs[i] && cli_check_output(what[i], outs[i], i == 0, err) < 0) {
                fail("%s", err);
                return 1;
            }
        for (int i = 0; i < 3; i++)
            if (outs[i] && dist_rank == 0) cli_clean_stale_temps(outs[i], &started, stderr);
    }
    return 0;
}

/* Checkpoint policy: resume from it, or refuse to destroy anything that is not ours. */
static int checkpoint_policy(train_run *r)
{
    const cli_train_opts *o = r->o;
    r->resume = 0;
    if (o->checkpoint) {
        if (file_exists(o->checkpoint)) {
            if (checkpoint_open(o->checkpoint, &r->ck, r->ckmeta, &r->dm)) {
                note("the file was left untouched (remove it or choose another --checkpoint file)");
                return 1;
            }
            if (!o->resume && !o->overwrite) {
                fail("checkpoint %s already exists (%d of %d epochs done): add --resume to continue it or "
                     "--overwrite to start over", o->checkpoint, r->ckmeta->epochs_done, r->ckmeta->epochs_total);
                return 1;
            }
            r->resume = o->resume;
        } else if (o->resume) {
            note("no checkpoint at %s yet: starting from scratch", o->checkpoint);
        }
    } else if (o->resume) {
        fail("--resume needs --checkpoint FILE");
        return 1;
    }
    return 0;
}

/* A resumed run's settings: those stored in the checkpoint (only --epochs may extend it). */
static int resume_settings(train_run *r)
{
    const cli_train_opts *o = r->o;
    tool_ckpt_meta *meta = r->meta;
    {
        *meta = *r->ckmeta;
        /* The checksum only says the file is what was written: refuse settings no run could have stored (they
         * index name tables and divide by the batch). */
        if (meta->batch < 1 || meta->schedule < 0 || meta->schedule > CLI_SCHED_ONECYCLE || meta->opt.type < 0 ||
            meta->opt.type > CLT_OPT_ADAMW || meta->limit < 0) {
            fail("checkpoint %s holds invalid training settings (batch %d, schedule %d, optimizer %d, limit %d); "
                 "the file was left untouched", o->checkpoint, meta->batch, meta->schedule, meta->opt.type,
                 meta->limit);
            return 1;
        }
        if (strcmp(meta->dataset, o->dataset)) {
            fail("checkpoint %s was trained on %s, not %s", o->checkpoint, meta->dataset, o->dataset);
            return 1;
        }
        if (checkpoint_model(r->ck, o->checkpoint, &r->model)) return 1;
        const char *ignored[16];
        int ni = 0;
        if (o->model) ignored[ni++] = "--model";
        if (o->batch > 0) ignored[ni++] = "--batch";
        if (o->optimizer >= 0) ignored[ni++] = "--optimizer";
        if (!isnan(o->lr)) ignored[ni++] = "--lr";
        if (!isnan(o->momentum)) ignored[ni++] = "--momentum";
        if (o->nesterov > 0) ignored[ni++] = "--nesterov";
        if (!isnan(o->weight_decay)) ignored[ni++] = "--weight-decay";
        if (o->schedule >= 0) ignored[ni++] = "--schedule";
        if (o->augment >= 0) ignored[ni++] = "--augment";
        if (o->seed >= 0) ignored[ni++] = "--seed";
        if (o->limit > 0) ignored[ni++] = "--limit";
        if (!isnan(o->label_smoothing)) ignored[ni++] = "--label-smoothing";
        for (int i = 0; i < ni; i++)
            note("%s ignored: a resumed run keeps the settings stored in %s", ignored[i], o->checkpoint);
        if (o->epochs > 0) {
            if (o->epochs < meta->epochs_done) {
                fail("--epochs %d: checkpoint %s has already done %d epochs", o->epochs, o->checkpoint,
                     meta->epochs_done);
                return 1;
            }
            meta->epochs_total = o->epochs;
        }
    }
    return 0;
}

/* A new run's settings: the options, else the model's training defaults, else the tool's. */
static int new_settings(train_run *r)
{
    const cli_train_opts *o = r->o;
    tool_ckpt_meta *meta = r->meta;
    {
        const char *mname = o->model ? o->model : "cnn";
        if (tool_check_model_path(mname, r->err) < 0) {
            fail("%s", r->err);
            return 1;
        }
        if (clt_model_load(mname, &r->model) < 0) {
            fail("%s", clt_model_errmsg(r->model));
            return 1;
        }
        clt_model_train_defaults md;
        clt_model_get_train_defaults(r->model, &md);
        memset(meta, 0, sizeof *meta);
        snprintf(meta->dataset, sizeof meta->dataset, "%s", o->dataset);
        snprintf(meta->model_text_origin, sizeof meta->model_text_origin, "%s", mname);
        int opt = o->optimizer >= 0 ? o->optimizer : md.optimizer >= 0 ? md.optimizer : CLT_OPT_SGD;
        clt_optimizer_default_settings(&meta->opt, opt);
        meta->opt.lr = !isnan(o->lr) ? o->lr : md.lr > 0 ? md.lr : opt == CLT_OPT_SGD ? 0.05f : 0.001f;
        if (opt == CLT_OPT_SGD) {
            meta->opt.momentum = !isnan(o->momentum) ? o->momentum : md.momentum >= 0 ? md.momentum : 0.9f;
            meta->opt.nesterov = o->nesterov > 0 || (o->nesterov < 0 && md.nesterov > 0);
            meta->opt.weight_decay = !isnan(o->weight_decay) ? o->weight_decay
                                     : md.weight_decay >= 0 ? md.weight_decay : 5e-4f;
        } else {
            if (!isnan(o->momentum)) note("--momentum applies to sgd only; %s uses beta1 %.3g", cli_optimizer_names[opt],
                                          meta->opt.beta1);
            if (o->nesterov > 0) {
                fail("--nesterov needs --optimizer sgd");
                return 1;
            }
            if (!isnan(o->weight_decay)) meta->opt.weight_decay = o->weight_decay;
            else if (md.weight_decay >= 0) meta->opt.weight_decay = md.weight_decay;
        }
        if (meta->opt.nesterov && !(meta->opt.momentum > 0)) {
            fail("--nesterov needs a momentum above 0");
            return 1;
        }
        meta->lr = meta->opt.lr;
        meta->momentum = meta->opt.momentum;
        meta->batch = o->batch > 0 ? o->batch : md.batch > 0 ? md.batch : 128;
        meta->schedule = o->schedule >= 0 ? o->schedule : CLI_SCHED_ONECYCLE;
        meta->augment = o->augment >= 0 ? o->augment : !strcmp(o->dataset, "cifar10") || !strcmp(o->dataset, "images");
        meta->limit = o->limit > 0 ? o->limit : 0;
        meta->seed = o->seed >= 0 ? (uint64_t)o->seed : 1;
        meta->epochs_total = o->epochs > 0 ? o->epochs : md.epochs > 0 ? md.epochs : 10;
        meta->rng_state = meta->seed ^ 0x5DEECE66Dull;
        memset(&r->dm, 0, sizeof r->dm);
        r->dm.label_smoothing = !isnan(o->label_smoothing) ? o->label_smoothing : 0.0f;
    }
    return 0;
}

/* The training and evaluation sets, the data settings (new run: channel statistics) agreed over the ranks, and
 * the model checked against the images. */
static int load_data(train_run *r)
{
    const cli_train_opts *o = r->o;
    tool_ckpt_meta *meta = r->meta;
    cli_data_meta *dm = &r->dm;
    char why[200];
    if (load_train_test(o, r->dir, r->resume ? dm : NULL, &r->train, &r->test, r->err) < 0) {
        data_dir_origin(why, sizeof why, r->origin);
        fail("%s%s", r->err, why);
        return 1;
    }
    tool_dataset *train = &r->train, *test = &r->test;
    if (test->c != train->c || test->h != train->h || test->w != train->w || train->c > 4 || train->classes > 10) {
        fail("%s: training images are %dx%dx%d but test images %dx%dx%d", r->dir, train->c, train->h, train->w,
             test->c, test->h, test->w);
        return 1;
    }
    /* Rank 0's settings everywhere (a rank without the checkpoint file would otherwise start afresh). */
    if (dist_bcast(meta, sizeof *meta)) return 1;
    int ntrain = train->n;
    if (meta->limit > 0 && meta->limit < ntrain) ntrain = meta->limit;
    r->ntrain = ntrain;
    if (r->resume) {
        if (check_data_fits(o->checkpoint, dm, r->dir, train)) return 1;
        if (!strcmp(o->dataset, "images")) {
            tool_dataset names = {.classes = dm->classes};
            memcpy(names.class_names, dm->class_names, sizeof names.class_names);
            if (same_classes(&names, o->checkpoint, train, r->dir, r->err)) {
                fail("%s", r->err);
                return 1;
            }
        }
    } else {
        dm->c = train->c, dm->h = train->h, dm->w = train->w, dm->classes = train->classes;
        memcpy(dm->class_names, train->class_names, sizeof dm->class_names);
        channel_stats(train, ntrain, dm);
    }
    if (dist_size > 1) {
        long long lo, hi;
        dist_minmax(ntrain, &lo, &hi);
        if (lo != hi) {
            fail("the ranks hold different training sets (%lld to %lld images): every rank needs the same files", lo, hi);
            return 1;
        }
        if (dist_bcast(dm, sizeof *dm)) return 1;
    }
    int mst = clt_model_check(r->model, dm->c, dm->h, dm->w, dm->classes, &r->mi, NULL, 0);
    if (o->verbose) print_model_table(r->model, dm, r->mi.table_bytes);
    if (mst < 0) {
        fail("model %s does not fit %dx%dx%d images in %d classes: %s", meta->model_text_origin, dm->c, dm->h, dm->w,
             dm->classes, clt_model_errmsg(r->model));
        return 1;
    }
    return 0;
}

/* The batch plan: images a step, micro-batches (--accumulate), the last partial step, this rank's rows. */
static int plan_batches(train_run *r)
{
    const cli_train_opts *o = r->o;
    int ntrain = r->ntrain, batch = r->meta->batch;
    int B = batch < ntrain ? batch : ntrain;
    /* --accumulate K: the graph holds micro-batches of M = batch/K images; a step adds K of them. */
    int K = o->accumulate > 1 ? o->accumulate : 1, M = B;
    if (K > 1) {
        if (batch % K) {
            fail("--accumulate %d: the batch (%d) must be a multiple of it", K, batch);
            return 1;
        }
        M = batch / K < ntrain ? batch / K : ntrain;
        if (M < 2) {
            fail("--accumulate %d: micro-batches of %d image(s) (batch %d); batch statistics need two", K, M,
                 batch);
            return 1;
        }
        B = M * K;
        if (dist_size > 1) {
            fail("--accumulate with several ranks is not supported yet (each rank already takes its share of "
                 "--batch: drop --accumulate, or run one process)");
            return 1;
        }
    }
    r->B = B, r->K = K, r->M = M;
    r->nfull = ntrain / B, r->rem = ntrain % B;
    /* A training pass needs two values per channel for batch statistics: a lone last image is left out. With
     * micro-batches the last step takes the whole micro-batches that are left. */
    r->tail_n = K == 1 && r->rem >= 2 ? r->rem : 0;
    r->tail_micro = K > 1 ? r->rem / M : 0;
    /* With several ranks: this rank's rows of each batch (Bl from Boff) and of the last partial one. */
    if (dist_plan(B, &r->tail_n, &r->Bl, &r->Boff, &r->Tl, &r->Toff)) return 1;
    r->steps_per_epoch = r->nfull + (r->tail_n > 0 || r->tail_micro > 0);
    return 0;
}

/* The device, the training graphs (full and last partial batch), the teacher, the host buffers and the worker. */
static int build_graphs(train_run *r)
{
    const cli_train_opts *o = r->o;
    int K = r->K;
    char devbuf[32];
    const char *device = dist_device(o->device, devbuf, sizeof devbuf);
    if ((o->device && !device) || make_context(device, o->tune, o->verbose, &r->ctx)) return 1;
    clt_context_device_info(r->ctx, &r->di);
    clt_compile_settings cs;
    run_compile_settings(r->meta, &cs);
    cs.accumulate_grads = K > 1;
    if (net_build(r->ctx, r->model, &r->dm, K > 1 ? r->M : r->Bl, 1, &cs, o, &r->tr)) return 1;
    if (r->tail_n && net_build(r->ctx, r->model, &r->dm, r->Tl, 1, &cs, o, &r->tail)) return 1;
    if (o->teacher && tool_teacher_open(r->ctx, o->teacher, o->dataset, &r->dm, K > 1 ? r->M : r->Bl,
                                        r->tail_n ? r->Tl : 0, &r->teacher, r->err) < 0) {
        fail("%s", r->err);
        return 1;
    }
    if (r->resume && clt_checkpoint_apply(r->ck, r->tr.g) < 0) {
        fail("%s", clt_errmsg(r->ctx));
        return 1;
    }

    r->img = (size_t)r->dm.c * r->dm.h * r->dm.w;
    r->statebuf = malloc(max_state_numel(r->tr.g) * sizeof(float));
    r->order = malloc((size_t)r->ntrain * sizeof *r->order);
    if (!r->statebuf || !r->order) {
        fail("out of host memory");
        return 1;
    }
    if (dist_attach(r->tr.g, &r->dtr) || (r->tail_n && dist_attach(r->tail.g, &r->dtail))) return 1;
    if (pipeline_start(&r->pl, r->Bl, r->img, r->dm.classes)) return 1;
    return 0;
}

/* The run's opening lines: data, model, device, settings, notes. */
static void print_header(const train_run *r)
{
    const cli_train_opts *o = r->o;
    const tool_ckpt_meta *meta = r->meta;
    const cli_data_meta *dm = &r->dm;
    int B = r->B, K = r->K, M = r->M, rem = r->rem, ntrain = r->ntrain;
    size_t pbytes = 0, abytes = 0;
    clt_graph_memory(r->tr.g, &pbytes, &abytes);
    printf("cltrain %s: %s, model %s, %d training / %d test images of %dx%dx%d, %d classes\n", CLT_VERSION_STRING,
           o->dataset, meta->model_text_origin, ntrain, r->test.n, dm->c, dm->h, dm->w, dm->classes);
    printf("model: %lld parameters, %.1f M multiply-adds per image forward\n", r->mi.params, r->mi.macs / 1e6);
    printf("device: %s (%s)\n", r->di.name, r->di.platform_name);
    printf("training: %d epochs, batch %d, %s lr %g", meta->epochs_total, B, cli_optimizer_names[meta->opt.type],
           meta->opt.lr);
    if (K > 1) printf(" (%d micro-batches of %d)", K, M);
    if (meta->opt.type == CLT_OPT_SGD) printf(" momentum %g%s", meta->opt.momentum, meta->opt.nesterov ? " nesterov" : "");
    printf(" weight decay %g, %s schedule, augmentation %s, label smoothing %g, seed %llu\n", meta->opt.weight_decay,
           cli_schedule_names[meta->schedule], meta->augment ? "on" : "off", dm->label_smoothing,
           (unsigned long long)meta->seed);
    if (dist_size > 1) printf("data parallel: %d ranks, %d to %d images each per step\n", dist_size, B / dist_size,
                              (B + dist_size - 1) / dist_size);
    if (r->resume) printf("resuming %s after epoch %d\n", o->checkpoint, meta->epochs_done);
    if (r->teacher)
        printf("distillation: teacher %s, temperature %g, alpha %g (the teacher's logits copied on the device)\n",
               o->teacher, isnan(o->distill_temperature) ? 4.0 : o->distill_temperature,
               isnan(o->distill_alpha) ? 0.9 : o->distill_alpha);
    if (K == 1 && rem == 1) printf("note: %d images do not fill the last batch; the single image left over is skipped each epoch\n", ntrain);
    if (K > 1 && rem % M)
        printf("note: %d images do not fill a micro-batch at the end of an epoch; they are skipped each epoch\n",
               rem % M);
    if (o->clip > 0) printf("gradients clipped to global norm %g\n", o->clip);
    if (o->verbose)
        printf("memory: %.1f MiB parameters and state, %.1f MiB activations\n", pbytes / 1048576.0,
               abytes / 1048576.0);
    fflush(stdout);
}

/* The state of the epoch loop: progress display, batch preparation of the training set, early stopping. */
static int train_prepare(train_run *r)
{
    const cli_train_opts *o = r->o;
    tool_ckpt_meta *meta = r->meta;
    cli_progress_init(&r->prog, stdout);
    if (dist_size > 1) r->prog.tty = 0; /* mpirun hands ranks a pseudo-terminal whatever its own output is */
    r->last_test_acc = NAN, r->last_test_loss = NAN;
    r->evaluated = 0;
    r->total_steps = (uint64_t)r->steps_per_epoch * meta->epochs_total;
    r->spec = (prep_spec){.ds = &r->train, .order = r->order, .total = r->ntrain, .batch = r->Bl,
                          .augment = meta->augment};
    prep_spec_normalize(&r->spec, &r->dm);
    if (meta->epochs_total > (int)(sizeof meta->history / sizeof meta->history[0])) {
        fail("at most %d epochs", (int)(sizeof meta->history / sizeof meta->history[0]));
        return 1;
    }

    r->start_epoch_for_timing = meta->epochs_done;
    r->best_epoch = -1;
    r->best_loss = 0;
    r->split_name = isnan(o->validation_split) ? "test" : "validation";
    cli_plot_eval_label = r->split_name;
    if (!isnan(o->validation_split) || o->test_dir)
        printf("evaluating after every epoch on %d %s (reported as test_*)\n", r->test.n,
               o->test_dir ? o->test_dir : "held-out validation images");
    return 0;
}

/* This rank's first row of step j. */
static int row0(const train_run *r, int j) { return j * r->B + (j >= r->nfull ? r->Toff : r->Boff); }

/* The epoch's shuffle and augmentation come from a stream stored in the checkpoint. */
static void shuffle_epoch(train_run *r)
{
    int *order = r->order, ntrain = r->ntrain;
    uint64_t es = mix64(&r->meta->rng_state);
    r->spec.seed = mix64(&es);
    for (int i = 0; i < ntrain; i++) order[i] = i;
    for (int i = ntrain - 1; i > 0; i--) {
        int j = (int)rand_below(&es, (uint32_t)i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* Leaves an epoch before its end: the progress bar goes, the batch the worker is preparing is waited for. */
static void stop_pass(train_run *r, int j)
{
    cli_progress_clear(&r->prog, stdout);
    if (j + 1 < r->steps_per_epoch) worker_wait(&r->pl.w);
}

/* Step j of an epoch on the batch (x, y): its loss and the rows it covered (message and 1 on failure). */
static int train_step(train_run *r, int epoch, int j, const float *x, const float *y, float *loss, int *rows)
{
    int K = r->K;
    int is_tail = j >= r->nfull;
    net *n = is_tail && K == 1 ? &r->tail : &r->tr;
    uint64_t step;
    clt_graph_get_counters(r->tr.g, &step, NULL);
    float lr = (float)lr_at(r->meta->schedule, r->meta->opt.lr, step, r->total_steps);
    int st = 0;
    /* Micro-batches of this step (K, or those left at the end of an epoch) and the rows they cover. */
    int micro = K > 1 && is_tail ? r->tail_micro : K;
    *rows = K > 1 ? micro * r->M : n->batch;
    /* Several ranks: after the backward pass they agree that all got there, then average the gradients
     * (dist_step; a no-op with one rank). */
    step_sync ss = {is_tail ? r->dtail : r->dtr, *rows, is_tail ? r->tail_n : r->B, 0};
    if (is_tail && K == 1) st = copy_state(r->ctx, r->tr.g, r->tail.g, r->statebuf) ? -1 : 0;
    if (st >= 0) {
        micro_io io = {n, x, y, r->pl.logits, r->img, r->dm.classes, r->teacher, is_tail && K == 1};
        tool_step ts = {n->g, n->loss, K, r->o->clip, sync_step, &ss};
        st = tool_train_step(&ts, micro, lr, micro_fill, micro_after, &io, loss, NULL, r->err);
    } else {
        snprintf(r->err, sizeof r->err, "%s", clt_errmsg(r->ctx));
        sync_step(&ss, st); /* the other ranks learn of the failure */
    }
    if (ss.stop < 0) {
        stop_pass(r, j);
        return 1;
    }
    if (ss.stop > 0) g_interrupted = 1; /* Ctrl-C on some rank: every rank stops here, without the update */
    if (st >= 0 && is_tail && K == 1) {
        st = copy_state(r->ctx, r->tail.g, r->tr.g, r->statebuf) ? -1 : 0;
        if (st < 0) snprintf(r->err, sizeof r->err, "%s", clt_errmsg(r->ctx));
    }
    if (st < 0) {
        stop_pass(r, j);
        fail("training step %d of epoch %d: %s", j + 1, epoch + 1, r->err);
        return 1;
    }
    return 0;
}

/* The steps of one epoch, the worker preparing the next batch meanwhile: the sums of loss, correct and seen rows.
 * Returns 0, 1 (failed, message printed) or 130 (interrupted). */
static int train_epoch_steps(train_run *r, int epoch, double t0, double *loss_sum, int64_t *correct, int64_t *seen)
{
    const cli_train_opts *o = r->o;
    worker *w = &r->pl.w;
    float **xb = r->pl.xb, **yb = r->pl.yb;
    int steps_per_epoch = r->steps_per_epoch;
    worker_submit(w, &r->spec, row0(r, 0), xb[0], yb[0]);
    for (int j = 0; j < steps_per_epoch; j++) {
        worker_wait(w);
        float *x = xb[j & 1], *y = yb[j & 1];
        if (j + 1 < steps_per_epoch) worker_submit(w, &r->spec, row0(r, j + 1), xb[(j + 1) & 1], yb[(j + 1) & 1]);
        float loss = 0;
        int rows;
        if (train_step(r, epoch, j, x, y, &loss, &rows)) return 1;
        if (o->verbose && epoch == r->start_epoch_for_timing && j == 0)
            printf("startup: first training step finished %.2f s after the command started\n",
                   cli_now_s() - cli_start_s);
        if (!isfinite(loss)) {
            stop_pass(r, j);
            fail("the loss became %g at step %d of epoch %d: training diverged (try a lower --lr)", loss, j + 1,
                 epoch + 1);
            if (o->checkpoint && r->meta->epochs_done > 0)
                note("%s holds the last good state, after epoch %d", o->checkpoint, r->meta->epochs_done);
            return 1;
        }
        double dummy = 0;
        score_rows(r->pl.logits, y, rows, r->dm.classes, &dummy, correct, NULL);
        *loss_sum += (double)loss * rows;
        *seen += rows;
        double el = cli_now_s() - t0;
        cli_progress_draw(&r->prog, stdout, epoch + 1, r->meta->epochs_total, j + 1, steps_per_epoch,
                          *loss_sum / *seen, (double)*correct / *seen, *seen / el,
                          el / (j + 1) * (steps_per_epoch - j - 1));
        if (g_interrupted) {
            stop_pass(r, j);
            if (o->checkpoint && r->meta->epochs_done > 0)
                note("interrupted during epoch %d; %s holds the state after epoch %d (continue with --resume)",
                     epoch + 1, o->checkpoint, r->meta->epochs_done);
            else
                note("interrupted during epoch %d; nothing was saved", epoch + 1);
            return 130;
        }
    }
    return 0;
}

/* Keras' EarlyStopping(monitor="val_loss", restore_best_weights=True): the weights of the epoch with the lowest
 * evaluation loss are kept on the host and put back when training ends. Returns 0 (go on), 1 (failed) or -1
 * (stopped: the best weights are back, evaluated and saved). */
static int early_stop(train_run *r, int epoch, double tl)
{
    const cli_train_opts *o = r->o;
    tool_ckpt_meta *meta = r->meta;
    int last = meta->epochs_done == meta->epochs_total;
    if (r->best_epoch < 0 || tl < r->best_loss) {
        r->best_loss = tl;
        r->best_epoch = epoch;
        if (!last && state_copy_take(r->tr.g, &r->best, 0)) return 1;
    } else if (epoch - r->best_epoch >= o->early_stop || last) {
        if (state_copy_take(r->tr.g, &r->best, 1)) return 1;
        if (!last)
            printf("early stop: the %s loss has not improved for %d epochs; restoring the weights of epoch "
                   "%d (loss %.4f)\n", r->split_name, epoch - r->best_epoch, r->best_epoch + 1, r->best_loss);
        else
            printf("early stop: restoring the weights of epoch %d (lowest %s loss %.4f)\n", r->best_epoch + 1,
                   r->split_name, r->best_loss);
        if (evaluate(r->ctx, &r->tr, &r->test, &r->dm, &r->pl, &r->last_test_loss, &r->last_test_acc, &r->prog))
            return 1;
        meta->epochs_total = meta->epochs_done;
        if (o->checkpoint && checkpoint_save(o->checkpoint, r->tr.g, meta, &r->dm)) return 1;
        return -1;
    }
    return 0;
}

/* After an epoch's steps: evaluation, the history and the epoch line, checkpoint, log, plot, early stop.
 * Returns 0 (go on), 1 (failed) or -1 (stopped early). */
static int end_epoch(train_run *r, int epoch, double t0, double t_train, double loss_sum, int64_t correct,
                     int64_t seen)
{
    const cli_train_opts *o = r->o;
    tool_ckpt_meta *meta = r->meta;
    char *err = r->err;
    if (dist_size > 1) {
        double sums[3] = {loss_sum, (double)correct, (double)seen};
        if (dist_sum_f64(sums, 3)) return 1;
        loss_sum = sums[0], correct = (int64_t)sums[1], seen = (int64_t)sums[2];
    }
    double tl, ta;
    if (evaluate_all(r->ctx, &r->tr, &r->test, &r->dm, &r->pl, &tl, &ta, &r->prog, r->dtr)) return 1;
    r->evaluated = 1;
    r->last_test_loss = tl;
    r->last_test_acc = ta;
    tool_epoch_metrics *h = &meta->history[meta->nhistory++];
    h->train_loss = loss_sum / seen;
    h->train_acc = (double)correct / seen;
    h->test_loss = tl;
    h->test_acc = ta;
    h->seconds = cli_now_s() - t0;
    h->images_per_s = seen / t_train;
    meta->epochs_done++;
    clt_graph_get_counters(r->tr.g, &meta->steps, &meta->passes);
    printf("epoch %d/%d train_loss=%.4f train_acc=%.4f test_loss=%.4f test_acc=%.4f time=%.1fs images/s=%.1f\n",
           epoch + 1, meta->epochs_total, h->train_loss, h->train_acc, tl, ta, h->seconds, h->images_per_s);
    fflush(stdout);
    if (o->checkpoint && dist_rank == 0 && checkpoint_save(o->checkpoint, r->tr.g, meta, &r->dm)) return 1;
    /* The log and the plot only report: a failure to write them warns and the run goes on. */
    if (o->log && dist_rank == 0 && cli_write_log(o->log, meta->history, meta->nhistory, err) < 0)
        note("warning: --log not written after epoch %d: %s (training continues)", epoch + 1, err);
    if (o->plot && dist_rank == 0) {
        char title[400];
        snprintf(title, sizeof title, "cltrain %s, model %s", o->dataset, meta->model_text_origin);
        if (cli_write_plot(o->plot, meta->history, meta->nhistory, title, err) < 0)
            note("warning: --plot not written after epoch %d: %s (training continues)", epoch + 1, err);
    }
    if (o->early_stop > 0) return early_stop(r, epoch, tl);
    return 0;
}

/* The epochs left to do. Returns 0, 1 (failed, message printed) or 130 (interrupted). */
static int train_epochs(train_run *r)
{
    while (r->meta->epochs_done < r->meta->epochs_total) {
        int epoch = r->meta->epochs_done; /* 0-based */
        double t0 = cli_now_s();
        shuffle_epoch(r);
        double loss_sum = 0;
        int64_t correct = 0, seen = 0;
        int st = train_epoch_steps(r, epoch, t0, &loss_sum, &correct, &seen);
        if (st) return st;
        double t_train = cli_now_s() - t0;
        cli_progress_clear(&r->prog, stdout);
        st = end_epoch(r, epoch, t0, t_train, loss_sum, correct, seen);
        if (st < 0) break;
        if (st) return st;
    }
    return 0;
}

/* The end of the run: the evaluation of a run resumed when already done, reduce timings, the class report and
 * the final line. */
static int final_report(train_run *r)
{
    const cli_train_opts *o = r->o;
    tool_ckpt_meta *meta = r->meta;
    if (!r->evaluated) {
        /* Resumed a finished run: report the stored weights. */
        if (evaluate_all(r->ctx, &r->tr, &r->test, &r->dm, &r->pl, &r->last_test_loss, &r->last_test_acc, &r->prog,
                         r->dtr))
            return 1;
        printf("all %d epochs were already done; test_loss=%.4f test_acc=%.4f\n", meta->epochs_total,
               r->last_test_loss, r->last_test_acc);
    }
    if (dist_size > 1) {
        uint64_t nred;
        double ms = dist_reduce_ms(r->dtr, &nred);
        if (nred) printf("data parallel: gradient all-reduce %.3f ms per step (gradients on the host to reduced, waiting for "
                         "slower ranks included; mean of %llu full-batch steps)\n",
                         ms / nred, (unsigned long long)nred);
    }
    cli_print_class_report(stdout, r->pl.confusion, r->dm.classes, (const char(*)[32])r->dm.class_names);
    if (o->checkpoint) printf("checkpoint: %s\n", o->checkpoint);
    print_final(meta->history, meta->nhistory, r->last_test_acc, r->last_test_loss);
    return 0;
}

int cli_train(const cli_train_opts *o)
{
    int rc = 1;
    train_run *r = calloc(1, sizeof *r);
    if (!r) return fail("out of memory");
    r->o = o;
    struct sigaction old_sa;
    int sa_set = 0;

    if (resolve_data_dir(o->dataset, o->data_dir, r->dir, sizeof r->dir, r->origin, r->err)) {
        fail("%s", r->err);
        free(r);
        return 1;
    }
    r->meta = calloc(1, sizeof *r->meta);
    r->ckmeta = calloc(1, sizeof *r->ckmeta);
    if (!r->meta || !r->ckmeta) {
        free(r->meta);
        free(r->ckmeta);
        free(r);
        return fail("out of memory");
    }
    if (check_outputs(o, r->err) || checkpoint_policy(r) || (r->resume ? resume_settings(r) : new_settings(r)) ||
        load_data(r) || plan_batches(r) || build_graphs(r))
        goto out;
    print_header(r);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    if (sigaction(SIGINT, &sa, &old_sa) == 0) sa_set = 1;

    if (train_prepare(r)) goto out;
    if ((rc = train_epochs(r)) != 0) goto out;
    rc = 1;
    if (final_report(r)) goto out;
    rc = 0;
out:
    dist_fail(rc); /* one rank's error that the others do not know of ends the whole job */
    if (sa_set) sigaction(SIGINT, &old_sa, NULL);
    pipeline_stop(&r->pl);
    dist_detach(r->dtail);
    dist_detach(r->dtr);
    tool_teacher_free(r->teacher);
    net_free(&r->tail);
    net_free(&r->tr);
    clt_context_destroy(r->ctx);
    free(r->statebuf);
    free(r->order);
    free(r->best.v);
    clt_model_destroy(r->model);
    clt_checkpoint_close(r->ck);
    free(r->ckmeta);
    tool_dataset_free(&r->train);
    tool_dataset_free(&r->test);
    free(r->meta);
    free(r);
    return rc;
}
