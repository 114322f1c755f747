/* test_build_error.c - a kernel that fails to compile gives CLT_ERR_BUILD with the OpenCL build log in the
 * message, and nothing crashes; kernels load from a kernel_dir copy of cl/. */
#define _GNU_SOURCE /* mkdtemp */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int copy_file(const char *from, const char *to, const char *append)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int ok = in && out;
    char buf[4096];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (ok && append) ok = fputs(append, out) >= 0;
    if (in) fclose(in);
    if (out && fclose(out)) ok = 0;
    return ok;
}

int main(void)
{
    char dir[] = "/tmp/cltrain-build-error-XXXXXX", from[4096], to[4096];
    if (!mkdtemp(dir)) return 1;
    const char *names[] = {"common", "activation"};
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/%s.cl", TEST_CL_DIR, names[i]);
        snprintf(to, sizeof to, "%s/%s.cl", dir, names[i]);
        /* A kernel calling an undeclared function: every OpenCL compiler rejects it and names it. */
        TU_CHECK(copy_file(from, to, i ? "\nkernel void broken(global float *x) { x[0] = no_such_function_xyz(); }\n"
                                       : NULL), "copying %s", from);
    }
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.tune = CLT_TUNE_OFF;
    s.kernel_dir = dir;
    setenv("CLTRAIN_NO_BINARY_CACHE", "1", 1);
    clt_context *ctx = NULL;
    if (!TU_OK(ctx, clt_context_create(&s, &ctx))) {
        clt_context_destroy(ctx);
        return tu_finish("test_build_error");
    }
    clt_graph *g = NULL;
    clt_tensor *x, *y;
    int shape[2] = {2, 3};
    TU_OK(ctx, clt_graph_create(ctx, &g));
    TU_OK(ctx, clt_input(g, "x", 2, shape, &x));
    TU_OK(ctx, clt_relu(g, x, &y));
    int st = clt_graph_compile(g, NULL);
    const char *msg = clt_errmsg(ctx);
    TU_CHECK(st == CLT_ERR_BUILD, "compile returned %d (%s), expected CLT_ERR_BUILD", st, clt_status_string(st));
    TU_CHECK(strstr(msg, "build log") && strstr(msg, "no_such_function_xyz"),
             "the message must carry the build log naming the error; got: %s", msg);
    TU_CHECK(clt_graph_forward(g, 1) == CLT_ERR_STATE, "a graph that failed to compile must refuse to run");
    clt_graph_destroy(g);
    clt_context_destroy(ctx);
    for (int i = 0; i < 2; i++) {
        snprintf(to, sizeof to, "%s/%s.cl", dir, names[i]);
        remove(to);
    }
    remove(dir);
    return tu_finish("test_build_error");
}
