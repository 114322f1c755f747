/* cltrain.c - entry point of the cltrain command: subcommand dispatch, option parsing, help, `devices`. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dist.h"

static const char *const usage_main =
    "usage: cltrain <command> [options]\n"
    "\n"
    "Train neural networks on any OpenCL device.\n"
    "\n"
    "commands:\n"
    "  cifar10          train on CIFAR-10 (binary version: data_batch_*.bin, test_batch.bin)\n"
    "  fashion-mnist    train on Fashion-MNIST (IDX files, plain or .gz)\n"
    "  mnist            train on MNIST (IDX files, plain or .gz)\n"
    "  images           train on your own images: a folder of class folders of JPEG/PNG files\n"
    "  table            train on a table: CSV, NumPy .npy or .npz (classify, binary, regress)\n"
    "  text             train a character-level GPT on a text file (see cltrain text --help)\n"
    "  generate         sample text from a `cltrain text` checkpoint\n"
    "  eval             evaluate a checkpoint on its dataset's test set\n"
    "  predict          classify images (or predict table rows) with a checkpoint\n"
    "  devices          list the OpenCL devices\n"
    "  bench            time the ops and a training step (see cltrain bench --help)\n"
    "  tune             tune kernels for a device (see cltrain tune --help)\n"
    "  doctor           check drivers, devices, caches and data sets; print a fix for each problem\n"
    "  keygen           write a new random key for encrypted checkpoints\n"
    "  prune            prune a checkpoint's weights by magnitude, optionally fine-tune with the mask\n"
    "  quantize         int8 post-training quantization of a checkpoint\n"
    "  export           write a checkpoint's network as an ONNX model\n"
    "\n"
    "options:\n"
    "  -h, --help       this help; `cltrain <command> --help` describes a command\n"
    "  --version        print the version\n"
    "\n"
    "environment:\n"
    "  CLTRAIN_DATA       first place to look for a data set without --data; then\n"
    "                     $XDG_DATA_HOME/cltrain/<dataset> (~/.local/share/cltrain/<dataset>), the current folder\n"
    "                     and, for Fashion-MNIST, /usr/share/datasets/fashion-mnist\n"
    "  CLTRAIN_DEVICE     default device (see --device)\n"
    "  CLTRAIN_CACHE_DIR  folder of the tuning and kernel caches (default ~/.cache/cltrain)\n"
    "  CLTRAIN_KERNEL_DIR load kernels from this folder instead of the built-in copies\n"
    "  CLTRAIN_KEY_FILE   key file of encrypted checkpoints when a command has no --key-file\n"
    "\n"
    "The last line a training or eval command prints is a summary for scripts:\n"
    "  final: epochs=10 test_acc=0.6512 test_loss=1.0200 train_images_per_s=1234.5 seconds=456.7\n"
    "Exit status: 0 on success, 1 on any error (with a message on stderr), 2 on bad usage, 130 if interrupted.\n";

static const char *const usage_train =
    "usage: cltrain %s [options]\n"
    "\n"
    "Trains a model on %s, evaluating on the test set after every epoch.\n"
    "\n"
    "data:\n"
    "  --data PATH            %s\n"
    "                         (default: the first that holds it of $CLTRAIN_DATA, $XDG_DATA_HOME/cltrain/%s\n"
    "                         (~/.local/share/cltrain/%s), the current folder%s)\n"
    "  --limit N              train on the first N training images only\n"
    "  --augment, --no-augment  random crop (4-pixel zero padding) + horizontal flip (default: %s)\n"
    "  --validation-split F   hold out the last fraction F of the training data (before shuffling; per class\n"
    "                         for image folders) and evaluate on it after every epoch instead of the test set\n"
    "  --early-stop N         stop when the evaluation loss has not improved for N epochs; the weights of the\n"
    "                         best epoch are restored (and saved to --checkpoint)\n"
    "model and optimization:\n"
    "  --model NAME|FILE      preset (seed-cnn, mlp, cnn; seed-binary, seed-mlp for tables) or model file (default: cnn)\n"
    "  --epochs N             total epochs (default 10)\n"
    "  --batch N              batch size (default: the model's `train` line, else 128)\n"
    "  --optimizer NAME       sgd, adam or adamw (default: the model's, else sgd)\n"
    "  --lr X                 peak learning rate (default: the model's, else 0.05 for sgd, 0.001 for adam(w))\n"
    "  --momentum X           sgd momentum (default 0.9)\n"
    "  --nesterov             Nesterov momentum (sgd)\n"
    "  --weight-decay X       L2 for sgd/adam, decoupled for adamw (default 5e-4 sgd, 0 adam, 0.01 adamw)\n"
    "  --schedule NAME        learning rate per step: constant, step (x0.1 at 50%% and 75%%), cosine, or\n"
    "                         onecycle (linear warm-up from lr/25 over 30%%, then cosine to 0; default)\n"
    "  --label-smoothing X    cross-entropy label smoothing (default 0)\n"
    "  --accumulate K         gradient accumulation: each step adds the gradients of K micro-batches of\n"
    "                         batch/K images (less memory; the same training as one batch for models\n"
    "                         without batch norm or dropout); images that do not fill a micro-batch at the\n"
    "                         end of an epoch are skipped. Not stored in checkpoints: repeat it to resume\n"
    "  --clip-grad-norm X     scale the gradients down to global norm X before each step (default off;\n"
    "                         not stored in checkpoints)\n"
    "  --seed N               seed of initialization, shuffling, augmentation, dropout (default 1)\n"
    "  --teacher CKPT         distill from a trained checkpoint of the same data set: loss = alpha*T^2*KL(teacher/T\n"
    "                         || student/T) + (1-alpha)*cross-entropy, the teacher evaluated on each batch (not\n"
    "                         stored in the checkpoint: give it again with --resume)\n"
    "  --distill-temperature T  softmax temperature of distillation (default 4)\n"
    "  --distill-alpha A      weight of the distillation term, 0..1 (default 0.9)\n"
    "run:\n"
    "  --device SPEC          OpenCL device: index, platform:device, or part of its name (see cltrain devices)\n"
    "  --tune MODE            kernel tuning: off, cached, quick (default), full\n"
    "  --checkpoint FILE      save the full training state after every epoch (written atomically)\n"
    "  --resume               continue from --checkpoint FILE (same result as an uninterrupted run; starts\n"
    "                         afresh if FILE does not exist yet); the stored settings are used, --epochs may\n"
    "                         raise the total\n"
    "  --overwrite            replace an existing checkpoint instead of refusing (never a non-checkpoint file)\n"
    "  --key-file KEY         write the checkpoint encrypted with KEY (cltrain keygen) and read it with KEY\n"
    "                         (default $CLTRAIN_KEY_FILE)\n"
    "  --encrypt              refuse to run without a key (checkpoints are encrypted whenever a key is given)\n"
    "  --log FILE             write one JSON object per epoch (rewritten after every epoch)\n"
    "  --plot FILE.svg        write learning curves (loss and accuracy, train and test) as SVG\n"
    "  --verbose              more detail (memory use, tuning decisions)\n"
    "\n"
    "model files: one layer per line, `#` starts a comment (defaults of options in brackets):\n";
/* After the layer list (which comes from the library's op table): */
static const char *const usage_train_tail =
    "  (`residual` adds the block's input to its output; `train` sets defaults that command-line options\n"
    "  override.) The network must end with `classes` values per image (usually `dense classes`).\n"
    "\n"
    "Input is normalized per channel with the mean and standard deviation of the training images used; they\n"
    "are stored in the checkpoint. The data is reshuffled every epoch from the seed. The last batch of an epoch\n"
    "is trained even when it is smaller than --batch (on a second graph of that size that shares the state);\n"
    "only a single image left over is skipped, because batch statistics need two. On a terminal a progress\n"
    "bar is shown; otherwise one line per epoch. At the end: per-class precision, recall, F1, the confusion\n"
    "matrix, and the `final:` line. Ctrl-C stops after the current step (the checkpoint keeps the last epoch).\n";

/* The model format's layer lines, as many to a line as fit in 110 columns. */
static void print_layer_usage(void)
{
    size_t col = 0;
    const char *u;
    for (int i = 0; (u = clt_model_layer_usage(i)); i++) {
        size_t n = strlen(u);
        if (col && col + 3 + n > 110) {
            fputc('\n', stdout);
            col = 0;
        }
        col += (size_t)printf("%s%s", col ? "   " : "  ", u);
    }
    fputc('\n', stdout);
}

static const char *const usage_images =
    "image folders (`cltrain images`):\n"
    "  --data DIR             required: one subfolder per class (2..10; the folder names are the class names,\n"
    "                         sorted) of .jpg/.jpeg/.png files; other files and hidden entries are ignored\n"
    "  --test DIR             evaluate on this folder (the same class folders); else give --validation-split\n"
    "  --size N               resize every image to N x N pixels (default 32; area averaging, stretched to a\n"
    "                         square, no cropping)\n"
    "  --channels 3|1         RGB or grayscale (default 3; alpha is dropped)\n"
    "  The normalization (per-channel mean and std) is computed from the training images and stored in the\n"
    "  checkpoint, with the size, channels and class names: eval and predict resize new images the same way.\n";

static const char *const usage_eval =
    "usage: cltrain eval --checkpoint FILE [--data PATH] [--batch N] [--device SPEC] [--tune MODE] [--verbose]\n"
    "                    [--key-file KEY]\n"
    "                    [--compare FILE]\n"
    "\n"
    "A quantized checkpoint (cltrain quantize) gets its int8 accuracy, file size and images/s; with --compare\n"
    "FILE (its float checkpoint) both side by side.\n"
    "Evaluates a checkpoint on the test set of the dataset it was trained on (the folder defaults as for\n"
    "training). Prints loss, accuracy, per-class metrics, the confusion matrix and a `final:` line. An encrypted\n"
    "checkpoint needs its key: --key-file KEY (or CLTRAIN_KEY_FILE).\n";

static const char *const usage_predict =
    "usage: cltrain predict --checkpoint FILE [--top K | --csv] [--device SPEC] [--tune MODE] [--key-file KEY] IMAGE...\n"
    "\n"
    "Classifies images. (With a `cltrain table` checkpoint the arguments are CSV or .npy tables of the\n"
    "training file's columns instead, and the output is always CSV: file, row, then the predicted class and\n"
    "every class's probability, or the regression value.) An IMAGE is a JPEG or PNG file of any size (resized to the model's input as\n"
    "`cltrain images` does: area averaging, stretched to a square), a binary PPM (P6, for 3-channel models)\n"
    "or PGM (P5, for 1-channel models) of exactly the model's input size, or a record file in CIFAR-10's\n"
    "layout (records of 1 label byte + the pixels, channel by channel), like test_batch.bin. Prints one line\n"
    "per image: the predicted class and its probability, then the next K-1 (default --top 3); with --csv,\n"
    "a CSV table instead: a header `file,predicted,CLASS...`, then one row per image with the probability\n"
    "of every class.\n";

static const char *const usage_devices =
    "usage: cltrain devices\n"
    "\n"
    "Lists every OpenCL device with the index to pass to --device.\n";

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "cltrain%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'cltrain %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return 2;
}

/* ------------------------------------------------------------------------------------------ parsing */

typedef struct argp {
    int argc, i;
    char **argv;
    const char *cmd;
    const char *val; /* value of the current option */
    int bad;
} argp;

/* Matches "--name" (then takes the next argument as value if `needs`) or "--name=value". */
static int opt_is(argp *p, const char *name, int needs)
{
    const char *a = p->argv[p->i];
    size_t n = strlen(name);
    if (strncmp(a, name, n)) return 0;
    if (a[n] == 0) {
        if (!needs) return 1;
        if (p->i + 1 >= p->argc) {
            usage_error(p->cmd, "option %s needs a value", name);
            p->bad = 1;
            return 1;
        }
        p->val = p->argv[++p->i];
        return 1;
    }
    if (a[n] == '=' && needs) {
        p->val = a + n + 1;
        return 1;
    }
    return 0;
}

static int parse_int(argp *p, const char *name, long lo, long hi, int *out)
{
    if (p->bad) return -1;
    char *e;
    errno = 0;
    long v = strtol(p->val, &e, 10);
    if (errno || e == p->val || *e || v < lo || v > hi) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: '%%s' is not a whole number in %ld..%ld", name, lo, hi);
        usage_error(p->cmd, msg, p->val);
        p->bad = 1;
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_float(argp *p, const char *name, double lo, double hi, int hi_open, float *out)
{
    if (p->bad) return -1;
    char *e;
    errno = 0;
    double v = strtod(p->val, &e);
    if (errno || e == p->val || *e || !isfinite(v) || v < lo || v > hi || (hi_open && v >= hi)) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: '%%s' is not a number in [%g, %g%s", name, lo, hi, hi_open ? ")" : "]");
        usage_error(p->cmd, msg, p->val);
        p->bad = 1;
        return -1;
    }
    *out = (float)v;
    return 0;
}

static int parse_choice(argp *p, const char *name, const char *const *choices, int n, int *out)
{
    if (p->bad) return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(p->val, choices[i])) {
            *out = i;
            return 0;
        }
    char msg[512];
    int l = snprintf(msg, sizeof msg, "%s: unknown value '%%s' (one of:", name);
    for (int i = 0; i < n; i++) l += snprintf(msg + l, sizeof msg - (size_t)l, " %s", choices[i]);
    snprintf(msg + l, sizeof msg - (size_t)l, ")");
    usage_error(p->cmd, msg, p->val);
    p->bad = 1;
    return -1;
}

static const char *const tune_names[4] = {"off", "cached", "quick", "full"};

static int cmd_train(const char *dataset, int argc, char **argv)
{
    cli_train_opts o = {.dataset = dataset, .epochs = -1, .batch = -1, .optimizer = -1, .schedule = -1,
                        .augment = -1, .nesterov = -1, .limit = -1, .tune = -1, .seed = -1, .lr = NAN, .momentum = NAN,
                        .weight_decay = NAN, .label_smoothing = NAN, .distill_temperature = NAN,
                        .distill_alpha = NAN};
    argp p = {.argc = argc, .argv = argv, .cmd = dataset, .i = 1};
    int images = !strcmp(dataset, "images");
    const char *what = !strcmp(dataset, "cifar10") ? "CIFAR-10" : !strcmp(dataset, "mnist") ? "MNIST"
                       : images ? "a folder of JPEG/PNG images sorted by class" : "Fashion-MNIST";
    const char *datapath = !strcmp(dataset, "cifar10")
                               ? "cifar-10-binary.tar.gz (read as it is), the cifar-10-batches-bin folder or its parent"
                           : images ? "the folder of class folders (one per class, JPEG/PNG files)"
                                    : "the folder of the IDX files (plain or .gz), or one of them";
    const char *lastdir =
        !strcmp(dataset, "fashion-mnist") ? ",\n                         /usr/share/datasets/fashion-mnist" : "";
    o.test_dir = NULL;
    o.image_size = o.image_channels = o.early_stop = -1;
    o.validation_split = NAN;
    for (; p.i < argc && !p.bad; p.i++) {
        const char *a = argv[p.i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(usage_train, dataset, what, datapath, dataset, dataset, lastdir,
                   !strcmp(dataset, "cifar10") ? "on for CIFAR-10" : images ? "on for image folders" : "off");
            print_layer_usage();
            fputs(usage_train_tail, stdout);
            if (images) fputs(usage_images, stdout);
            return 0;
        }
        if (opt_is(&p, "--data", 1)) o.data_dir = p.val;
        else if (opt_is(&p, "--validation-split", 1)) parse_float(&p, "--validation-split", 0, 1, 1, &o.validation_split);
        else if (opt_is(&p, "--early-stop", 1)) parse_int(&p, "--early-stop", 1, 1024, &o.early_stop);
        else if (images && opt_is(&p, "--test", 1)) o.test_dir = p.val;
        else if (images && opt_is(&p, "--size", 1)) parse_int(&p, "--size", 1, TOOL_IMAGE_MAX_SIZE, &o.image_size);
        else if (images && opt_is(&p, "--channels", 1)) {
            if (strcmp(p.val, "1") && strcmp(p.val, "3"))
                return usage_error(dataset, "--channels: '%s' is not 1 or 3", p.val);
            o.image_channels = p.val[0] - '0';
        }
        else if (opt_is(&p, "--model", 1)) o.model = p.val;
        else if (opt_is(&p, "--epochs", 1)) parse_int(&p, "--epochs", 1, 1024, &o.epochs);
        else if (opt_is(&p, "--batch", 1)) parse_int(&p, "--batch", 1, 65536, &o.batch);
        else if (opt_is(&p, "--optimizer", 1)) parse_choice(&p, "--optimizer", cli_optimizer_names, 3, &o.optimizer);
        else if (opt_is(&p, "--lr", 1)) parse_float(&p, "--lr", 1e-12, 100, 0, &o.lr);
        else if (opt_is(&p, "--momentum", 1)) parse_float(&p, "--momentum", 0, 1, 1, &o.momentum);
        else if (opt_is(&p, "--nesterov", 0)) o.nesterov = 1;
        else if (opt_is(&p, "--weight-decay", 1)) parse_float(&p, "--weight-decay", 0, 1, 0, &o.weight_decay);
        else if (opt_is(&p, "--schedule", 1)) parse_choice(&p, "--schedule", cli_schedule_names, 4, &o.schedule);
        else if (opt_is(&p, "--augment", 0)) o.augment = 1;
        else if (opt_is(&p, "--no-augment", 0)) o.augment = 0;
        else if (opt_is(&p, "--seed", 1)) {
            char *e;
            errno = 0;
            long long v = strtoll(p.val, &e, 10);
            if (errno || e == p.val || *e || v < 0) {
                p.bad = 1;
                return usage_error(dataset, "--seed: '%s' is not a non-negative whole number", p.val);
            }
            o.seed = v;
        } else if (opt_is(&p, "--device", 1)) o.device = p.val;
        else if (opt_is(&p, "--tune", 1)) parse_choice(&p, "--tune", tune_names, 4, &o.tune);
        else if (opt_is(&p, "--checkpoint", 1)) o.checkpoint = p.val;
        else if (opt_is(&p, "--resume", 0)) o.resume = 1;
        else if (opt_is(&p, "--overwrite", 0)) o.overwrite = 1;
        else if (opt_is(&p, "--log", 1)) o.log = p.val;
        else if (opt_is(&p, "--plot", 1)) o.plot = p.val;
        else if (opt_is(&p, "--limit", 1)) parse_int(&p, "--limit", 1, INT_MAX, &o.limit);
        else if (opt_is(&p, "--label-smoothing", 1)) parse_float(&p, "--label-smoothing", 0, 1, 1, &o.label_smoothing);
        else if (opt_is(&p, "--accumulate", 1)) parse_int(&p, "--accumulate", 1, 65536, &o.accumulate);
        else if (opt_is(&p, "--clip-grad-norm", 1)) parse_float(&p, "--clip-grad-norm", 1e-12, 1e12, 0, &o.clip);
        else if (opt_is(&p, "--teacher", 1)) o.teacher = p.val;
        else if (opt_is(&p, "--distill-temperature", 1))
            parse_float(&p, "--distill-temperature", 0.01, 1000, 0, &o.distill_temperature);
        else if (opt_is(&p, "--distill-alpha", 1)) parse_float(&p, "--distill-alpha", 0, 1, 0, &o.distill_alpha);
        else if (opt_is(&p, "--verbose", 0) || !strcmp(a, "-v")) o.verbose = 1;
        else if (a[0] == '-') return usage_error(dataset, "unknown option '%s'", a);
        else return usage_error(dataset, "unexpected argument '%s'", a);
    }
    if (p.bad) return 2;
    if (o.resume && o.overwrite) return usage_error(dataset, "%s", "--resume and --overwrite contradict each other");
    if (!isnan(o.validation_split) && !(o.validation_split > 0))
        return usage_error(dataset, "%s", "--validation-split: give a fraction above 0 and below 1");
    if (images && !o.data_dir) return usage_error(dataset, "%s", "--data DIR (the folder of class folders) is required");
    if (o.test_dir && !isnan(o.validation_split))
        return usage_error(dataset, "%s", "--test and --validation-split contradict each other (give one)");
    return cli_train(&o);
}

static int cmd_eval(int argc, char **argv)
{
    const char *ckpt = NULL, *data = NULL, *device = NULL, *compare = NULL;
    int tune = -1, batch = -1, verbose = 0;
    argp p = {.argc = argc, .argv = argv, .cmd = "eval", .i = 1};
    for (; p.i < argc && !p.bad; p.i++) {
        const char *a = argv[p.i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_eval, stdout);
            return 0;
        }
        if (opt_is(&p, "--checkpoint", 1)) ckpt = p.val;
        else if (opt_is(&p, "--data", 1)) data = p.val;
        else if (opt_is(&p, "--device", 1)) device = p.val;
        else if (opt_is(&p, "--tune", 1)) parse_choice(&p, "--tune", tune_names, 4, &tune);
        else if (opt_is(&p, "--batch", 1)) parse_int(&p, "--batch", 1, 65536, &batch);
        else if (opt_is(&p, "--verbose", 0)) verbose = 1;
        else if (opt_is(&p, "--compare", 1)) compare = p.val;
        else if (a[0] == '-') return usage_error("eval", "unknown option '%s'", a);
        else return usage_error("eval", "unexpected argument '%s'", a);
    }
    if (p.bad) return 2;
    if (!ckpt) return usage_error("eval", "%s", "--checkpoint FILE is required");
    if (tool_table_checkpoint(ckpt)) {
        fprintf(stderr, "cltrain: error: %s is a `cltrain table` checkpoint: evaluate a table with `cltrain table ... "
                "--test FILE`, or predict its rows with `cltrain predict --checkpoint %s FILE.csv`\n", ckpt, ckpt);
        return 1;
    }
    if (clt_qcheckpoint_probe(ckpt) == 1) return tool_quant_eval(ckpt, compare, data, device, tune, batch);
    if (compare) return usage_error("eval", "%s", "--compare is for quantized checkpoints");
    return cli_eval(ckpt, data, device, tune, batch, verbose);
}

static int cmd_predict(int argc, char **argv)
{
    const char *ckpt = NULL, *device = NULL;
    int tune = -1, top = 3, csv = 0;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    int nfiles = 0, rc;
    if (!files) {
        fprintf(stderr, "cltrain: error: out of memory\n");
        return 1;
    }
    argp p = {.argc = argc, .argv = argv, .cmd = "predict", .i = 1};
    for (; p.i < argc && !p.bad; p.i++) {
        const char *a = argv[p.i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_predict, stdout);
            free(files);
            return 0;
        }
        if (!strcmp(a, "--")) {
            while (++p.i < argc) files[nfiles++] = argv[p.i];
            break;
        }
        if (opt_is(&p, "--checkpoint", 1)) ckpt = p.val;
        else if (opt_is(&p, "--device", 1)) device = p.val;
        else if (opt_is(&p, "--tune", 1)) parse_choice(&p, "--tune", tune_names, 4, &tune);
        else if (opt_is(&p, "--top", 1)) parse_int(&p, "--top", 1, 10, &top);
        else if (opt_is(&p, "--csv", 0)) csv = 1;
        else if (a[0] == '-' && a[1]) {
            free(files);
            return usage_error("predict", "unknown option '%s'", a);
        } else files[nfiles++] = argv[p.i];
    }
    if (p.bad) rc = 2;
    else if (!ckpt) rc = usage_error("predict", "%s", "--checkpoint FILE is required");
    else if (!nfiles) rc = usage_error("predict", "%s", "no IMAGE given");
    else if (tool_table_checkpoint(ckpt)) rc = tool_table_predict(ckpt, device, tune, nfiles, files);
    else rc = cli_predict(ckpt, device, tune, csv ? -1 : top, nfiles, files);
    free(files);
    return rc;
}

/* ------------------------------------------------------------------------------------------ devices */

static void fmt_bytes(char *b, size_t len, uint64_t v)
{
    if (v >= (1ull << 30)) snprintf(b, len, "%.1f GiB", v / 1073741824.0);
    else if (v >= (1ull << 20)) snprintf(b, len, "%.1f MiB", v / 1048576.0);
    else snprintf(b, len, "%.1f KiB", v / 1024.0);
}

static int cmd_devices(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_devices, stdout);
            return 0;
        }
        return usage_error("devices", "unexpected argument '%s'", argv[i]);
    }
    int n = 0;
    int st = clt_device_count(&n);
    if (st < 0) {
        fprintf(stderr, "cltrain: error: cannot list OpenCL devices: %s\n", clt_status_string(st));
        return 1;
    }
    if (n == 0) {
        const char *vendors = getenv("OCL_ICD_VENDORS");
        fprintf(stderr, "cltrain: error: no OpenCL platform or device found: install an OpenCL driver (ICD), e.g. "
                "Debian's pocl-opencl-icd for the CPU or your GPU vendor's ICD package, and check that %s lists it "
                "(clinfo shows what is visible)\n", vendors && *vendors ? "OCL_ICD_VENDORS" : "/etc/OpenCL/vendors");
        if (vendors && *vendors) fprintf(stderr, "cltrain: note: OCL_ICD_VENDORS=%s replaces /etc/OpenCL/vendors\n", vendors);
        return 1;
    }
    const char *env = getenv("CLTRAIN_DEVICE");
    for (int i = 0; i < n; i++) {
        clt_device_info d;
        st = clt_device_get_info(i, &d);
        if (st < 0) {
            fprintf(stderr, "cltrain: error: device %d: %s\n", i, clt_status_string(st));
            return 1;
        }
        char g[32], a[32], l[32];
        fmt_bytes(g, sizeof g, d.global_mem_bytes);
        fmt_bytes(a, sizeof a, d.max_alloc_bytes);
        fmt_bytes(l, sizeof l, d.local_mem_bytes);
        printf("device %d (--device %d or %d:%d): %s\n", d.index, d.index, d.platform_index,
               d.index, d.name);
        printf("  vendor:          %s\n", d.vendor);
        printf("  platform:        %s (%s)\n", d.platform_name, d.platform_version);
        printf("  type:            %s\n", d.is_gpu ? "GPU" : d.is_cpu ? "CPU" : "accelerator/other");
        printf("  compute units:   %u at %u MHz\n", d.compute_units, d.max_clock_mhz);
        printf("  global memory:   %s (max allocation %s)\n", g, a);
        printf("  local memory:    %s%s\n", l, d.local_mem_is_global ? " (emulated in global memory)" : "");
        printf("  work-group size: %zu, preferred float vector width %u\n", d.max_work_group_size,
               d.preferred_vector_width_float);
        printf("  fp16: %s, fp64: %s\n", d.fp16 ? "yes" : "no", d.fp64 ? "yes" : "no");
        printf("  versions:        %s, %s, driver %s\n", d.device_version, d.opencl_c_version, d.driver_version);
    }
    if (env && *env) printf("CLTRAIN_DEVICE=%s selects the default device\n", env);
    return 0;
}

/* ------------------------------------------------------------------------------------------ main */

double cli_start_s;

int main(int argc, char **argv)
{
    cli_start_s = cli_now_s();
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        if (!strcmp(cmd, "help") && argc > 2) {
            static char help_opt[] = "--help";
            static char *hargv[4];
            hargv[0] = argv[0], hargv[1] = argv[2], hargv[2] = help_opt, hargv[3] = NULL;
            cmd = argv[2];
            argc = 3;
            argv = hargv;
        } else {
            fputs(usage_main, stdout);
            return 0;
        }
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("cltrain %s\n", CLT_VERSION_STRING);
        return 0;
    }
    int sargc = argc - 1;
    char **sargv = argv + 1;
    /* Commands that read or write checkpoints take --key-file/--encrypt (tools/protect.c). */
    static const char *const keyed[] = {"cifar10", "mnist", "fashion-mnist", "images", "eval", "predict", "prune",
                                        "quantize", "export"};
    for (size_t i = 0; i < sizeof keyed / sizeof *keyed; i++) {
        int krc = strcmp(cmd, keyed[i]) ? 0 : tool_protect_args(cmd, &sargc, sargv);
        if (krc) return krc;
    }
    if (!strcmp(cmd, "cifar10") || !strcmp(cmd, "mnist") || !strcmp(cmd, "fashion-mnist") || !strcmp(cmd, "images")) {
        /* Under mpirun each process is one rank of a data-parallel run (tools/dist.c). */
        if (dist_init(&argc, &argv)) return 1;
        return dist_exit(cmd_train(cmd, sargc, sargv));
    }
    if (!strcmp(cmd, "table")) return tool_cmd_table(sargc, sargv);
    if (!strcmp(cmd, "text")) return tool_cmd_text(sargc, sargv);
    if (!strcmp(cmd, "generate")) return tool_cmd_generate(sargc, sargv);
    if (!strcmp(cmd, "eval")) return cmd_eval(sargc, sargv);
    if (!strcmp(cmd, "predict")) return cmd_predict(sargc, sargv);
    if (!strcmp(cmd, "devices")) return cmd_devices(sargc, sargv);
    if (!strcmp(cmd, "doctor")) return tool_cmd_doctor(sargc, sargv);
    if (!strcmp(cmd, "keygen")) return tool_cmd_keygen(sargc, sargv);
    if (!strcmp(cmd, "prune")) return tool_cmd_prune(sargc, sargv);
    if (!strcmp(cmd, "quantize")) return tool_cmd_quantize(sargc, sargv);
    if (!strcmp(cmd, "export")) return tool_cmd_export(sargc, sargv);
    if (!strcmp(cmd, "bench"))
        return sargc > 1 && !strcmp(sargv[1], "step") ? tool_bench_step(sargc - 1, sargv + 1) : tool_cmd_bench(sargc, sargv);
    if (!strcmp(cmd, "tune"))
        return sargc > 1 && !strcmp(sargv[1], "gemm") ? tool_cmd_tune(sargc, sargv) : tool_tune_model(sargc, sargv);
    if (cmd[0] == '-') return usage_error(NULL, "unknown option '%s'", cmd);
    return usage_error(NULL, "unknown command '%s'", cmd);
}
