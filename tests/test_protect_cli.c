/* test_protect_cli.c - `cltrain keygen`, --key-file/--encrypt and CLTRAIN_KEY_FILE, and `cltrain prune` end to
 * end: exit codes, messages, file modes, the sparsity printed and met, and that a refused key, checkpoint or output
 * leaves every file as it was.
 * usage: test_protect_cli CLTRAIN_BINARY WORKDIR */
#define _DEFAULT_SOURCE /* realpath */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"

static const char *g_bin;
static char g_dir[2048];
static char g_out[1 << 16];

/* Runs `cltrain ARGS` (a shell line, in g_dir) with stderr joined to stdout into g_out; the exit code. */
static int run(const char *env, const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s' %s 2>&1", g_dir, env ? env : "", g_bin, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(g_out, 1, sizeof g_out - 1, p);
    g_out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(int rc, int want, const char *needle, const char *what)
{
    TU_CHECK(rc == want && (!needle || strstr(g_out, needle)), "%s: exit %d (want %d), output wants '%s':\n%s", what,
             rc, want, needle ? needle : "", g_out);
}

static unsigned char *slurp(const char *name, size_t *len)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    *len = 0;
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    unsigned char *d = malloc(1 << 24);
    *len = d ? fread(d, 1, 1 << 24, f) : 0;
    fclose(f);
    return d;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Plain IDX files of a learnable toy problem: class k is a bright 8x8 block at one of 10 places. */
static int gen_idx(const char *dir, int ntrain, int ntest)
{
    mkdir(dir, 0755);
    uint64_t s = 12345;
    for (int t = 0; t < 2; t++) {
        int n = t ? ntest : ntrain;
        size_t ilen = 16 + (size_t)n * 784, llen = 8 + (size_t)n;
        uint8_t *img = calloc(ilen, 1), *lab = calloc(llen, 1);
        if (!img || !lab) return -1;
        be32(img, 0x803), be32(img + 4, (uint32_t)n), be32(img + 8, 28), be32(img + 12, 28);
        be32(lab, 0x801), be32(lab + 4, (uint32_t)n);
        for (int i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            int k = (int)((s >> 33) % 10), by = 2 + (k / 5) * 14, bx = 1 + (k % 5) * 5;
            lab[8 + i] = (uint8_t)k;
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++) img[16 + (size_t)i * 784 + (by + y) * 28 + bx + x] = 220;
        }
        char p[4200];
        FILE *f;
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, t ? "t10k" : "train");
        if (!(f = fopen(p, "wb")) || fwrite(img, 1, ilen, f) != ilen) return -1;
        fclose(f);
        snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, t ? "t10k" : "train");
        if (!(f = fopen(p, "wb")) || fwrite(lab, 1, llen, f) != llen) return -1;
        fclose(f);
        free(img);
        free(lab);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_protect_cli CLTRAIN_BINARY WORKDIR\n");
        return 2;
    }
    static char bin[4096];
    if (!realpath(argv[1], bin)) return 2; /* the commands run in g_dir */
    g_bin = bin;
    snprintf(g_dir, sizeof g_dir, "%s/cli_protect", argv[2]);
    char cmd[4200], data[2200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    if (system(cmd) != 0) return 1;
    snprintf(data, sizeof data, "%s/data", g_dir);
    if (gen_idx(data, 256, 100) != 0) return 1;
    const char *train = "mnist --data data --model mlp --epochs 1 --batch 32 --tune off --checkpoint c.ckpt";

    /* keygen: mode 0600 whatever the umask; never over an existing file. */
    expect(run("umask 000 &&", "keygen --out k"), 0, "wrote a new key to k", "keygen");
    struct stat st;
    char kp[2200];
    snprintf(kp, sizeof kp, "%s/k", g_dir);
    TU_CHECK(stat(kp, &st) == 0 && (st.st_mode & 07777) == 0600 && st.st_size == 32, "key: mode 0600, 32 bytes");
    size_t kl, kl2;
    unsigned char *key = slurp("k", &kl);
    expect(run(NULL, "keygen --out k"), 1, "already exists: refusing to overwrite", "keygen over an existing key");
    unsigned char *key2 = slurp("k", &kl2);
    TU_CHECK(key && key2 && kl == kl2 && !memcmp(key, key2, kl), "the existing key is unchanged");
    expect(run(NULL, "keygen"), 2, "--out KEY is required", "keygen without --out");
    run(NULL, "keygen --out other");

    /* Training with a key writes an encrypted checkpoint (mode 0600); --encrypt without a key is bad usage. */
    snprintf(cmd, sizeof cmd, "%s --encrypt", train);
    expect(run(NULL, cmd), 2, "--encrypt needs a key", "--encrypt without a key");
    snprintf(cmd, sizeof cmd, "%s --encrypt --key-file k", train);
    expect(run(NULL, cmd), 0, "final: epochs=1", "training with --encrypt --key-file");
    size_t cl;
    unsigned char *ck = slurp("c.ckpt", &cl);
    TU_CHECK(ck && cl > 16 && !memcmp(ck, "CLTENC", 6), "the checkpoint is encrypted");
    char cpath[2200];
    snprintf(cpath, sizeof cpath, "%s/c.ckpt", g_dir);
    TU_CHECK(stat(cpath, &st) == 0 && (st.st_mode & 0777) == 0600, "the encrypted checkpoint is mode 0600");

    /* Reading: without the key, with it, through the environment, with another key, a public key file. */
    expect(run(NULL, "eval --checkpoint c.ckpt --data data --tune off"), 1,
           "c.ckpt: encrypted checkpoint: give its key with --key-file KEY", "eval without a key");
    expect(run(NULL, "eval --checkpoint c.ckpt --data data --tune off --key-file k"), 0, "final:", "eval with the key");
    expect(run(NULL, "eval --checkpoint c.ckpt --data data --tune off --key-file=k"), 0, "final:", "--key-file=KEY");
    expect(run("CLTRAIN_KEY_FILE=k", "eval --checkpoint c.ckpt --data data --tune off"), 0, "final:",
           "eval with CLTRAIN_KEY_FILE");
    expect(run(NULL, "eval --checkpoint c.ckpt --data data --tune off --key-file other"), 1,
           "cannot decrypt: wrong key, or the file was modified", "eval with another key");
    expect(run(NULL, "predict --checkpoint c.ckpt --tune off --key-file other data/t10k-images-idx3-ubyte"), 1,
           "wrong key", "predict with another key");
    chmod(kp, 0644);
    expect(run(NULL, "eval --checkpoint c.ckpt --data data --tune off --key-file k"), 1, "`chmod 600 k`",
           "a key file readable by others");
    chmod(kp, 0600);
    expect(run(NULL, "devices --key-file k"), 2, "unexpected argument '--key-file'", "a command without checkpoints takes no key");

    /* Resuming keeps the file encrypted; a tampered file is refused and left as it was. */
    snprintf(cmd, sizeof cmd, "%s --resume --epochs 2 --key-file k", train);
    expect(run(NULL, cmd), 0, "final: epochs=2", "resume with the key");
    free(ck);
    ck = slurp("c.ckpt", &cl);
    TU_CHECK(ck && cl > 16 && !memcmp(ck, "CLTENC", 6), "the resumed checkpoint is still encrypted");
    snprintf(cmd, sizeof cmd, "%s --resume --epochs 2", train);
    expect(run(NULL, cmd), 1, "encrypted checkpoint: give its key", "resume without a key");
    if (ck) {
        ck[cl / 2] ^= 1;
        FILE *f = fopen(cpath, "wb");
        if (f) fwrite(ck, 1, cl, f), fclose(f);
        snprintf(cmd, sizeof cmd, "%s --resume --epochs 3 --key-file k", train);
        expect(run(NULL, cmd), 1, "fails authentication", "resume from a tampered checkpoint");
        size_t al;
        unsigned char *after = slurp("c.ckpt", &al);
        TU_CHECK(after && al == cl && !memcmp(after, ck, cl), "the tampered file was left untouched");
        free(after);
        ck[cl / 2] ^= 1; /* the good file again, for prune below */
        if ((f = fopen(cpath, "wb"))) fwrite(ck, 1, cl, f), fclose(f);
    }
    free(ck);

    /* prune: a plain checkpoint, 50% per layer and 70% global, fine-tuned; the output keeps its zeros. */
    expect(run(NULL, "mnist --data data --model mlp --epochs 2 --batch 32 --tune off --checkpoint p.ckpt"), 0,
           "final:", "training the checkpoint to prune");
    expect(run(NULL, "prune --checkpoint p.ckpt --sparsity 0.5 --out p50.ckpt --data data --tune off"), 0,
           "fc1.weight                  401408 weights     200704 zero  sparsity 0.5000", "prune per layer");
    TU_CHECK(strstr(g_out, "fc2.weight                    5120 weights       2560 zero  sparsity 0.5000") &&
             strstr(g_out, "test accuracy: before pruning ") && strstr(g_out, "final: sparsity=0.5000 acc_before="),
             "prune prints every layer and the accuracies:\n%s", g_out);
    expect(run(NULL, "prune --checkpoint p.ckpt --sparsity 0.7 --global --fine-tune-epochs 2 --out p70.ckpt "
                     "--data data --tune off"), 0, "  all                         406528 weights     284569 zero  sparsity 0.7000",
           "prune global with fine-tuning");
    TU_CHECK(strstr(g_out, "fine-tune epoch 2/2") && strstr(g_out, "after fine-tuning:\n") &&
             strstr(strstr(g_out, "after fine-tuning:\n"), "284569 zero"), "fine-tuning keeps the zeros:\n%s", g_out);
    const char *acc = strstr(g_out, "acc_finetuned=");
    TU_CHECK(acc && atof(acc + 14) > 0.5, "the fine-tuned toy model still classifies: %s", acc ? acc : "");
    expect(run(NULL, "prune --checkpoint p70.ckpt --sparsity 0 --out p70b.ckpt --data data --tune off"), 0,
           "284569 zero", "pruning the output again with sparsity 0 finds its zeros");
    size_t b1, b2;
    unsigned char *o1 = slurp("p50.ckpt", &b1);
    expect(run(NULL, "prune --checkpoint p.ckpt --sparsity 0.5 --out p50.ckpt --data data --tune off"), 1,
           "--out p50.ckpt already exists: refusing to overwrite it", "prune never overwrites");
    unsigned char *o2 = slurp("p50.ckpt", &b2);
    TU_CHECK(o1 && o2 && b1 == b2 && !memcmp(o1, o2, b1), "the existing output is unchanged");
    free(o1);
    free(o2);
    expect(run(NULL, "prune --checkpoint p.ckpt --sparsity 1 --out x.ckpt"), 2, "--sparsity: '1' is not a number in [0, 1)",
           "sparsity 1");
    expect(run(NULL, "prune --checkpoint p.ckpt --out x.ckpt"), 2, "--sparsity S is required", "no sparsity");
    /* Encrypted in, encrypted out; without the key the encrypted input is refused. */
    expect(run(NULL, "prune --checkpoint c.ckpt --sparsity 0.5 --out ce.ckpt --data data --tune off"), 1,
           "encrypted checkpoint: give its key", "prune an encrypted checkpoint without the key");
    expect(run(NULL, "prune --checkpoint c.ckpt --sparsity 0.5 --out ce.ckpt --data data --tune off --key-file k"), 0,
           "wrote ce.ckpt (encrypted)", "prune with the key");
    o1 = slurp("ce.ckpt", &b1);
    TU_CHECK(o1 && b1 > 16 && !memcmp(o1, "CLTENC", 6), "the pruned output of an encrypted checkpoint is encrypted");
    free(o1);

    /* Distillation: the student takes its teacher's logits; an encrypted teacher needs the key. */
    expect(run(NULL, "mnist --data data --model mlp --epochs 1 --batch 30 --tune off --teacher p.ckpt "
                     "--distill-temperature 3 --distill-alpha 0.5"), 0,
           "distillation: teacher p.ckpt, temperature 3, alpha 0.5", "training with a teacher");
    acc = strstr(g_out, "final: epochs=1 test_acc=");
    TU_CHECK(acc && atof(acc + 25) > 0.3, "the distilled toy student learns: %s", acc ? acc : g_out);
    expect(run(NULL, "mnist --data data --model mlp --epochs 1 --tune off --teacher c.ckpt"), 1,
           "c.ckpt: encrypted checkpoint: give its key", "an encrypted teacher without the key");
    expect(run(NULL, "mnist --data data --model mlp --epochs 1 --tune off --teacher c.ckpt --key-file k"), 0,
           "distillation: teacher c.ckpt", "an encrypted teacher with the key");
    expect(run(NULL, "mnist --data data --model mlp --epochs 1 --tune off --teacher nothere.ckpt"), 1,
           "nothere.ckpt", "a missing teacher");
    expect(run(NULL, "mnist --data data --model mlp --epochs 1 --tune off --teacher p.ckpt --distill-alpha 2"), 2,
           "--distill-alpha", "alpha out of range");
    free(key);
    free(key2);
    return tu_finish("protect_cli");
}
