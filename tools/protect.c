/* protect.c - the tool's encryption options (--key-file, --encrypt, CLTRAIN_KEY_FILE) and `cltrain keygen`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

static const char *const usage_keygen =
    "usage: cltrain keygen --out KEY\n"
    "\n"
    "Writes a new random 32-byte key to the new file KEY (mode 0600; an existing file is never replaced). Give it\n"
    "to the commands that write or read checkpoints with --key-file KEY (or CLTRAIN_KEY_FILE=KEY): checkpoints\n"
    "are then written encrypted and authenticated. Keep it apart from the checkpoints: whoever has the key can\n"
    "read them, and without it they cannot be read at all.\n";

static struct {
    const char *file;   /* --key-file, else $CLTRAIN_KEY_FILE */
    int encrypt;        /* --encrypt */
    int loaded;
    unsigned char key[CLT_KEY_BYTES];
} kp;

/* Removes argv[i] (and n-1 more) from the argument list. */
static void drop(int *argc, char **argv, int i, int n)
{
    memmove(argv + i, argv + i + n, sizeof *argv * (size_t)(*argc - i - n + 1));
    *argc -= n;
}

int tool_protect_args(const char *cmd, int *argc, char **argv)
{
    for (int i = 1; i < *argc;) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) break;
        if (!strcmp(a, "--encrypt")) {
            kp.encrypt = 1;
            drop(argc, argv, i, 1);
        } else if (!strcmp(a, "--key-file")) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "cltrain %s: option --key-file needs a value\nTry 'cltrain %s --help'.\n", cmd, cmd);
                return 2;
            }
            kp.file = argv[i + 1];
            drop(argc, argv, i, 2);
        } else if (!strncmp(a, "--key-file=", 11)) {
            kp.file = a + 11;
            drop(argc, argv, i, 1);
        } else i++;
    }
    for (int i = 1; i < *argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 0; /* help needs no key */
    if (!kp.file) {
        const char *env = getenv("CLTRAIN_KEY_FILE");
        if (env && *env) kp.file = env;
    }
    if (kp.encrypt && !kp.file) {
        fprintf(stderr, "cltrain %s: --encrypt needs a key: --key-file KEY or CLTRAIN_KEY_FILE=KEY (make one with "
                "`cltrain keygen --out KEY`)\nTry 'cltrain %s --help'.\n", cmd, cmd);
        return 2;
    }
    if (kp.file) {
        char msg[1024];
        if (clt_key_load(kp.file, kp.key, msg, sizeof msg) < 0) {
            fprintf(stderr, "cltrain: error: %s\n", msg);
            return 1;
        }
        kp.loaded = 1;
    }
    return 0;
}

const unsigned char *tool_key(void) { return kp.loaded ? kp.key : NULL; }

/* The first bytes of an encrypted file (CLT__ENC_MAGIC in src/crypt.h, with its NUL). */
int tool_file_encrypted(const char *path)
{
    char err[TOOL_ERR_LEN];
    int fd = tool_open_regular(path, NULL, err);
    if (fd < 0) return 0;
    char m[8];
    ssize_t n = read(fd, m, sizeof m);
    close(fd);
    return n == 8 && !memcmp(m, "CLTENC\0", 8);
}

int tool_checkpoint_open(const char *path, clt_checkpoint **ck, char *err)
{
    *ck = NULL;
    int st = clt_checkpoint_open_key(path, tool_key(), ck);
    if (st >= 0) return 0;
    if (!tool_key() && tool_file_encrypted(path))
        return tool_fail(err, st, "%s: encrypted checkpoint: give its key with --key-file KEY (or CLTRAIN_KEY_FILE=KEY)",
                         path);
    return tool_fail(err, st, "%s", *ck ? clt_checkpoint_errmsg(*ck) : "out of memory");
}

int tool_graph_save(clt_graph *g, const char *path, const void *meta, size_t len)
{
    clt_save_settings ss;
    clt_save_default_settings(&ss);
    ss.key = tool_key();
    return clt_graph_save_ex(g, path, meta, len, &ss);
}

int tool_cmd_keygen(int argc, char **argv)
{
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_keygen, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strncmp(argv[i], "--out=", 6)) out = argv[i] + 6;
        else {
            fprintf(stderr, "cltrain keygen: %s '%s'\nTry 'cltrain keygen --help'.\n",
                    !strcmp(argv[i], "--out") ? "option needs a value:" : "unknown argument", argv[i]);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "cltrain keygen: --out KEY is required\nTry 'cltrain keygen --help'.\n");
        return 2;
    }
    char msg[1024];
    if (clt_key_generate(out, msg, sizeof msg) < 0) {
        fprintf(stderr, "cltrain: error: %s\n", msg);
        return 1;
    }
    printf("wrote a new key to %s (mode 0600); pass it with --key-file %s\n", out, out);
    return 0;
}
