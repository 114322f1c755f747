/* export.c - `cltrain export`: a float checkpoint's network as an ONNX model (clt_onnx_export). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *const usage_export =
    "usage: cltrain export --checkpoint FILE --onnx FILE [--device SPEC]\n"
    "\n"
    "Writes the checkpoint's network with its weights as an ONNX model (opset 13): input \"x\" (N,C,H,W), output\n"
    "\"logits\" (N,classes). The model takes normalized input, x = (pixel/255 - mean) / std with the checkpoint's\n"
    "per-channel statistics (printed here), as `cltrain predict` feeds it. --onnx must not exist.\n";

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "cltrain export: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'cltrain export --help'.\n");
    return 2;
}

int tool_cmd_export(int argc, char **argv)
{
    const char *ckpt = NULL, *onnx = NULL, *device = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_export, stdout);
            return 0;
        }
        const char **dst = !strcmp(a, "--checkpoint") ? &ckpt : !strcmp(a, "--onnx") ? &onnx
                         : !strcmp(a, "--device")   ? &device : NULL;
        if (!dst) return usage(a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'", a);
        if (i + 1 >= argc) return usage("option %s needs a value", a);
        *dst = argv[++i];
    }
    if (!ckpt) return usage("%s", "--checkpoint FILE is required");
    if (!onnx) return usage("%s", "--onnx FILE is required");
    struct stat st;
    if (stat(onnx, &st) == 0) {
        fprintf(stderr, "cltrain: --onnx %s exists: choose a new name (nothing was overwritten)\n", onnx);
        return 1;
    }
    char err[TOOL_ERR_LEN] = "";
    if (tool_check_regular_file(ckpt, "checkpoint", err) < 0) {
        fprintf(stderr, "cltrain: %s\n", err);
        return 1;
    }
    clt_context_settings cs;
    clt_context_default_settings(&cs);
    cs.device = device;
    cs.tune = CLT_TUNE_OFF;
    clt_context *ctx = NULL;
    int rc = 1;
    if (clt_context_create(&cs, &ctx) < 0) fprintf(stderr, "cltrain: cannot open the OpenCL device: %s\n", clt_errmsg(ctx));
    else if (clt_onnx_export(ctx, ckpt, onnx) < 0) fprintf(stderr, "cltrain: %s\n", clt_errmsg(ctx));
    else {
        rc = 0;
        printf("exported %s -> %s (ONNX opset 13)\n", ckpt, onnx);
        clt_checkpoint *ck = NULL;
        tool_ckpt_meta *m = calloc(1, sizeof *m);
        tool_data_meta dm;
        if (m && clt_checkpoint_open(ckpt, &ck) == 0 && tool_meta_decode(ck, ckpt, m, &dm, err) == 0) {
            printf("input normalization (apply before the model): x = (pixel/255 - mean) / std per channel:");
            for (int c = 0; c < dm.c; c++) printf(" mean %.6g std %.6g%s", dm.mean[c], dm.std[c], c + 1 < dm.c ? ";" : "\n");
        }
        clt_checkpoint_close(ck);
        free(m);
    }
    clt_context_destroy(ctx);
    return rc;
}
