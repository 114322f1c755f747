/* test_text.c - `cltrain text` and `cltrain generate` end to end through the binary, on generated text: a tiny
 * GPT overfits a short repeated text and generate reproduces it; bad input (empty file, block larger than the
 * text, prompt bytes outside the vocabulary, an image model) fails with its message; non-UTF-8 is byte-wise.
 * Usage: test_text CLTRAIN_EXE MODE BUILD_DIR (MODE: overfit or errors). */
#define _DEFAULT_SOURCE // realpath
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static const char *exe, *dir;
static char out[1 << 16], err[1 << 16];

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* Runs `cltrain ARGS` in dir; stdout and stderr into out / err. Returns the exit status. */
static int run(const char *args)
{
    char cmd[4096], o[1024], e[1024];
    snprintf(o, sizeof o, "%s/text_out.txt", dir);
    snprintf(e, sizeof e, "%s/text_err.txt", dir);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s > '%s' 2> '%s'", dir, exe, args, o, e);
    int st = system(cmd);
    slurp(o, out, sizeof out);
    slurp(e, err, sizeof err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_file(const char *name, const void *data, size_t n)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) fwrite(data, 1, n, f), fclose(f);
}

static double field(const char *text, const char *key)
{
    const char *f = strstr(text, "final:");
    const char *k = f ? strstr(f, key) : NULL;
    return k ? atof(k + strlen(key)) : -1;
}

static const char tiny_model[] =
    "gpt layers=1 heads=2 dim=32 block=16 mlp=2 bias=1 tied=1 dropout=0\n"
    "train batch=8 optimizer=adamw lr=0.01 beta1=0.9 beta2=0.99 weight_decay=0 warmup=0 min_lr=0.01 clip=1 steps=150\n";

static void overfit(void)
{
    char text[2000] = "";
    for (int i = 0; i < 100; i++) strcat(text, "hello, world!\n");
    write_file("hw.txt", text, strlen(text));
    write_file("tiny.model", tiny_model, sizeof tiny_model - 1);
    int rc = run("text --data hw.txt --model tiny.model --eval-every 50 --checkpoint hw.ckpt --overwrite --seed 3 "
                 "--log hw.jsonl --plot hw.svg");
    TU_CHECK(rc == 0, "text: exit %d\n%s%s", rc, out, err);
    double vl = field(out, "val_loss="), tl = field(out, "train_loss="), tps = field(out, "tokens_per_s=");
    TU_CHECK(vl >= 0 && vl < 0.15 && tl >= 0 && tl < 0.2 && tps > 0, "near-zero loss: val %g train %g tokens/s %g\n%s",
             vl, tl, tps, out);
    TU_CHECK(strstr(out, "vocabulary 11") != NULL, "11 distinct bytes: %s", out);
    char p[1024];
    snprintf(p, sizeof p, "%s/hw.jsonl", dir);
    slurp(p, err, sizeof err);
    TU_CHECK(strstr(err, "{\"epoch\":3,\"train_loss\":") && strstr(err, "\"test_loss\":"), "log: %s", err);
    snprintf(p, sizeof p, "%s/hw.svg", dir);
    slurp(p, err, sizeof err);
    TU_CHECK(strstr(err, "<svg") != NULL, "plot written");
    rc = run("generate --checkpoint hw.ckpt --prompt hel --tokens 40 --top-k 1");
    TU_CHECK(rc == 0, "generate: exit %d: %s", rc, err);
    TU_CHECK(strncmp(out, "hello, world!\nhello, world!\nhello, world!\n", 42) == 0, "generated:\n%s", out);
    /* Sampling is seeded: the same seed gives the same text. */
    static char first[sizeof out];
    rc = run("generate --checkpoint hw.ckpt --tokens 60 --temperature 0.8 --seed 9");
    snprintf(first, sizeof first, "%s", out);
    rc |= run("generate --checkpoint hw.ckpt --tokens 60 --temperature 0.8 --seed 9");
    TU_CHECK(rc == 0 && strcmp(first, out) == 0 && strlen(out) == 62, "seeded sampling:\n%s---\n%s", first, out);
    /* An interrupted run resumed from its checkpoint ends exactly where the uninterrupted one did. */
    double vl_full = vl;
    rc = run("text --data hw.txt --model tiny.model --steps 100 --eval-every 50 --checkpoint r.ckpt --overwrite "
             "--seed 3");
    rc |= run("text --data hw.txt --model tiny.model --steps 150 --eval-every 50 --checkpoint r.ckpt --resume");
    TU_CHECK(rc == 0 && field(out, "val_loss=") == vl_full, "resumed run: val_loss %g, uninterrupted %g\n%s%s",
             field(out, "val_loss="), vl_full, out, err);
    /* --resume continues the stored run: 20 more steps. */
    rc = run("text --data hw.txt --model tiny.model --steps 170 --eval-every 50 --checkpoint hw.ckpt --resume");
    TU_CHECK(rc == 0 && strstr(err, "resuming hw.ckpt at step 150") && field(out, "steps=") == 170,
             "resume: %d\n%s%s", rc, out, err);
}

static void errors(void)
{
    write_file("tiny.model", tiny_model, sizeof tiny_model - 1);
    write_file("empty.txt", "", 0);
    int rc = run("text --data empty.txt --model tiny.model");
    TU_CHECK(rc == 1 && strstr(err, "empty.txt: the text file is empty (nothing to train on)"), "empty: %d %s", rc, err);
    write_file("short.txt", "abcdefghijklmnopqrstuvwxyz", 26);
    rc = run("text --data short.txt --model tiny.model --block 12");
    TU_CHECK(rc == 1 && strstr(err, "--block 12 is larger than the text allows: short.txt has 26 bytes, 23 for "
                               "training and 3 for validation, and each needs at least block+1 = 13"),
             "block: %d %s", rc, err);
    rc = run("text --data short.txt --model cnn");
    TU_CHECK(rc == 1 && strstr(err, "model cnn is not a language model"), "image model: %d %s", rc, err);
    rc = run("text --model tiny.model");
    TU_CHECK(rc == 2 && strstr(err, "--data FILE is required"), "no data: %d %s", rc, err);
    /* Not UTF-8: read byte-wise, one token per byte. */
    unsigned char bin[600];
    for (int i = 0; i < 600; i++) bin[i] = (unsigned char)(0x80 + (i * 7) % 5 * 13);
    write_file("bin.txt", bin, sizeof bin);
    rc = run("text --data bin.txt --model tiny.model --steps 4 --eval-every 2 --checkpoint bin.ckpt --overwrite");
    TU_CHECK(rc == 0 && strstr(out, "600 bytes, vocabulary 5") && strstr(out, "final: steps=4"), "bytes: %d\n%s%s",
             rc, out, err);
    /* More steps than the checkpoint format has epochs of history: the checkpoint still reads back. */
    rc = run("text --data bin.txt --model tiny.model --block 4 --batch 2 --steps 1100 --eval-every 1100 "
             "--eval-batches 1 --checkpoint long.ckpt --overwrite");
    TU_CHECK(rc == 0 && strstr(out, "final: steps=1100"), "1100 steps: %d\n%s%s", rc, out, err);
    rc = run("generate --checkpoint long.ckpt --tokens 3");
    TU_CHECK(rc == 0 && strlen(out) == 4, "generate after 1100 steps: %d %s", rc, err);
    rc = run("generate --checkpoint bin.ckpt --prompt Zx");
    TU_CHECK(rc == 1 && strstr(err, "--prompt: character 'Z' (byte 0x5a, position 0) is not in the model's "
                               "vocabulary (5 bytes of its training text)"), "prompt: %d %s", rc, err);
    rc = run("generate --checkpoint bin.ckpt --tokens 5");
    TU_CHECK(rc == 0 && strlen(out) == 6, "generate from no prompt: %d %zu %s", rc, strlen(out), err);
    rc = run("text --data bin.txt --model tiny.model --steps 4 --checkpoint bin.ckpt");
    TU_CHECK(rc == 1 && strstr(err, "bin.ckpt exists: pass --resume to continue it or --overwrite to replace it"),
             "existing checkpoint: %d %s", rc, err);
    rc = run("text --data short.txt --model tiny.model --steps 4 --block 4 --checkpoint bin.ckpt --resume");
    TU_CHECK(rc == 1 && strstr(err, "bin.ckpt: its vocabulary (5 bytes) is not the one of short.txt (26 bytes)"),
             "other vocabulary: %d %s", rc, err);
    rc = run("generate --checkpoint empty.txt");
    TU_CHECK(rc == 1, "generate from a non-checkpoint: %d %s", rc, err);
}

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    /* Each mode in its own folder (meson runs them in parallel); the binary by absolute path. */
    static char exe_abs[4096], sub[4096];
    if (!realpath(argv[1], exe_abs)) return 2;
    snprintf(sub, sizeof sub, "%s/text_%s", argv[3], argv[2]);
    mkdir(sub, 0755);
    exe = exe_abs, dir = sub;
    if (strcmp(argv[2], "overfit") == 0) overfit();
    else errors();
    return tu_finish(argv[2]);
}
