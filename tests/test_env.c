/* test_env.c - every environment variable cltrain reads with a fixed set of values refuses an unknown value at
 * context creation with a message naming the variable, the value and the accepted values. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int create(const char *device, clt_context **ctx)
{
    clt_context_settings s;
    clt_context_default_settings(&s);
    s.tune = CLT_TUNE_OFF;
    s.device = device;
    *ctx = NULL;
    return clt_context_create(&s, ctx);
}

/* name=value must be refused with CLT_ERR_INVALID and a message containing `needle`; `good` accepted. */
static void check_var(const char *name, const char *bad, const char *needle, const char *good)
{
    clt_context *ctx;
    setenv(name, bad, 1);
    int st = create(NULL, &ctx);
    const char *msg = clt_errmsg(ctx);
    TU_CHECK(st == CLT_ERR_INVALID, "%s=%s: status %d, expected CLT_ERR_INVALID (%s)", name, bad, st, msg);
    TU_CHECK(strstr(msg, needle) != NULL, "%s=%s: message '%s' lacks '%s'", name, bad, msg, needle);
    clt_context_destroy(ctx);
    setenv(name, good, 1);
    st = create(NULL, &ctx);
    TU_CHECK(st == CLT_OK, "%s=%s must be accepted: %s", name, good, clt_errmsg(ctx));
    /* The same check applies to a context around the application's OpenCL objects. */
    if (st == CLT_OK) {
        cl_context c;
        cl_device_id d;
        cl_command_queue q;
        clt_context_cl(ctx, &c, &d, &q);
        setenv(name, bad, 1);
        clt_context *ctx2 = NULL;
        int st2 = clt_context_create_from_cl(c, d, q, NULL, &ctx2);
        TU_CHECK(st2 == CLT_ERR_INVALID && strstr(clt_errmsg(ctx2), needle),
                 "%s=%s through clt_context_create_from_cl: status %d, message '%s'", name, bad, st2,
                 clt_errmsg(ctx2));
        clt_context_destroy(ctx2);
    }
    clt_context_destroy(ctx);
    unsetenv(name);
}

int main(void)
{
    const char *dev = getenv("CLTRAIN_DEVICE");
    char *saved_dev = dev ? strdup(dev) : NULL;
    unsetenv("CLTRAIN_DEVICE");
    check_var("CLTRAIN_GEMM", "cublas",
              "environment variable CLTRAIN_GEMM=cublas: unknown value (expected auto, own or clblast, or unset)",
              "own");
    check_var("CLTRAIN_CONV_ALGO", "winograd",
              "environment variable CLTRAIN_CONV_ALGO=winograd: unknown value (expected auto, im2col or direct", "direct");
    check_var("CLTRAIN_NO_BINARY_CACHE", "yes",
              "environment variable CLTRAIN_NO_BINARY_CACHE=yes: unknown value (expected 1 (no program binary cache) "
              "or 0", "1");
    check_var("CLTRAIN_GEMM_PARAMS", "MR=99 VW=16 NV=1 KU=4 LX=1 DB=0 KC=0",
              "environment variable CLTRAIN_GEMM_PARAMS=MR=99 VW=16 NV=1 KU=4 LX=1 DB=0 KC=0: expected",
              "MR=8 VW=16 NV=1 KU=4 LX=1 DB=0 KC=0");
    check_var("CLTRAIN_GEMM_PARAMS", "fast", "CLTRAIN_GEMM_PARAMS=fast: expected \"MR=8", "MR=4 VW=8 NV=2 KU=4 LX=8 DB=1 KC=256");
    check_var("CLTRAIN_KERNEL_DIR", "/nonexistent/cl",
              "environment variable CLTRAIN_KERNEL_DIR=/nonexistent/cl: not a folder", "");

    /* An empty value means unset. */
    setenv("CLTRAIN_GEMM", "", 1);
    clt_context *ctx;
    TU_CHECK(create(NULL, &ctx) == CLT_OK, "CLTRAIN_GEMM= (empty) must be accepted: %s", clt_errmsg(ctx));
    clt_context_destroy(ctx);
    unsetenv("CLTRAIN_GEMM");

    /* A device spec from the environment says so; the same spec from the settings does not. */
    setenv("CLTRAIN_DEVICE", "no-such-device-xyz", 1);
    int st = create(NULL, &ctx);
    TU_CHECK(st == CLT_ERR_NO_DEVICE && strstr(clt_errmsg(ctx), "environment variable CLTRAIN_DEVICE=no-such-device-xyz: "
                                                             "no OpenCL device matches 'no-such-device-xyz'"),
             "CLTRAIN_DEVICE: status %d, message '%s'", st, clt_errmsg(ctx));
    clt_context_destroy(ctx);
    unsetenv("CLTRAIN_DEVICE");
    st = create("no-such-device-xyz", &ctx);
    TU_CHECK(st == CLT_ERR_NO_DEVICE && !strstr(clt_errmsg(ctx), "CLTRAIN_DEVICE") &&
                 strstr(clt_errmsg(ctx), "no OpenCL device matches 'no-such-device-xyz'"),
             "settings.device: status %d, message '%s'", st, clt_errmsg(ctx));
    clt_context_destroy(ctx);
    if (saved_dev) setenv("CLTRAIN_DEVICE", saved_dev, 1);
    free(saved_dev);
    return tu_finish("test_env");
}
