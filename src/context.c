/* context.c - OpenCL platform/device discovery, device choice, and the clt_context life cycle. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gemm.h"
#include "internal.h"
#include "bincache.h"
#include "disk.h"
#include "tune.h"

typedef struct dev_ref {
    cl_platform_id platform;
    cl_device_id device;
    int platform_index;
} dev_ref;

/* All devices of all platforms, in platform order. */
static int enumerate(dev_ref **out, int *count)
{
    *out = NULL;
    *count = 0;
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */) return CLT_OK;
    if (err != CL_SUCCESS) return CLT_ERR_OPENCL; /* a failing ICD loader is not "no platform" */
    if (np == 0) return CLT_OK;
    cl_platform_id *ps = calloc(np, sizeof *ps);
    if (!ps) return CLT_ERR_NOMEM;
    if (clGetPlatformIDs(np, ps, NULL) != CL_SUCCESS) {
        free(ps);
        return CLT_ERR_OPENCL;
    }
    dev_ref *refs = NULL;
    int n = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0) continue;
        cl_device_id *ds = calloc(nd, sizeof *ds);
        dev_ref *nr = realloc(refs, (size_t)(n + (int)nd) * sizeof *refs);
        if (!ds || !nr) {
            free(ds);
            free(nr ? nr : refs);
            free(ps);
            return CLT_ERR_NOMEM;
        }
        refs = nr;
        if (clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, nd, ds, NULL) == CL_SUCCESS) {
            for (cl_uint d = 0; d < nd; d++) refs[n++] = (dev_ref){ps[p], ds[d], (int)p};
        }
        free(ds);
    }
    free(ps);
    *out = refs;
    *count = n;
    return CLT_OK;
}

/* A platform (d == NULL) or device string into a fixed field: a longer one is cut, not lost (a too-small
 * buffer makes the query fail outright). */
static void info_str(cl_platform_id p, cl_device_id d, cl_uint what, char *dst, size_t cap)
{
    size_t n = 0;
    cl_int err = d ? clGetDeviceInfo(d, what, 0, NULL, &n) : clGetPlatformInfo(p, what, 0, NULL, &n);
    char *tmp = err == CL_SUCCESS && n > 0 ? calloc(n + 1, 1) : NULL;
    if (tmp && (d ? clGetDeviceInfo(d, what, n, tmp, NULL) : clGetPlatformInfo(p, what, n, tmp, NULL)) == CL_SUCCESS)
        snprintf(dst, cap, "%s", tmp);
    free(tmp);
}

static void fill_info(cl_platform_id p, cl_device_id d, int index, int pindex, clt_device_info *info)
{
    memset(info, 0, sizeof *info);
    info->index = index;
    info->platform_index = pindex;
    info_str(p, NULL, CL_PLATFORM_NAME, info->platform_name, sizeof info->platform_name);
    info_str(p, NULL, CL_PLATFORM_VERSION, info->platform_version, sizeof info->platform_version);
    info_str(p, d, CL_DEVICE_NAME, info->name, sizeof info->name);
    info_str(p, d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    info_str(p, d, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
    info_str(p, d, CL_DEVICE_VERSION, info->device_version, sizeof info->device_version);
    info_str(p, d, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version, sizeof info->opencl_c_version);
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    info->is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
    info->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    cl_uint u = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof u, &u, NULL);
    info->compute_units = u;
    u = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof u, &u, NULL);
    info->max_clock_mhz = u;
    cl_ulong ul = 0;
    clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ul, &ul, NULL);
    info->global_mem_bytes = ul;
    ul = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ul, &ul, NULL);
    info->max_alloc_bytes = ul;
    ul = 0;
    clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ul, &ul, NULL);
    info->local_mem_bytes = ul;
    cl_device_local_mem_type lt = CL_LOCAL;
    clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_TYPE, sizeof lt, &lt, NULL);
    info->local_mem_is_global = lt == CL_GLOBAL;
    size_t wg = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    info->max_work_group_size = wg;
    u = 0;
    clGetDeviceInfo(d, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof u, &u, NULL);
    info->preferred_vector_width_float = u;
    /* Extension lists of GPU drivers can be long: ask for the size instead of guessing a buffer. */
    size_t next = 0;
    char *ext = NULL;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &next) == CL_SUCCESS && next > 0 &&
        (ext = calloc(next + 1, 1)) != NULL && clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, next, ext, NULL) == CL_SUCCESS) {
        info->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
        info->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
    }
    free(ext);
}

int clt_device_count(int *count)
{
    if (!count) return CLT_ERR_INVALID;
    dev_ref *refs;
    int st = enumerate(&refs, count);
    free(refs);
    return st;
}

int clt_device_get_info(int index, clt_device_info *info)
{
    if (!info) return CLT_ERR_INVALID;
    dev_ref *refs;
    int n;
    int st = enumerate(&refs, &n);
    if (st < 0) return st;
    if (index < 0 || index >= n) {
        free(refs);
        return CLT_ERR_NO_DEVICE;
    }
    fill_info(refs[index].platform, refs[index].device, index, refs[index].platform_index, info);
    free(refs);
    return CLT_OK;
}

void clt_context_default_settings(clt_context_settings *s)
{
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->tune = CLT_TUNE_QUICK;
    s->tune_budget_s = 20.0;
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return 1;
    }
    return n == 0;
}

/* Resolves a device spec to an index into refs; see clt_context_settings.device. */
static int choose_device(clt_context *ctx, const dev_ref *refs, int n, const char *spec)
{
    if (n == 0)
        return clt__err(ctx, CLT_ERR_NO_DEVICE,
                        "no OpenCL device found: install an OpenCL driver (e.g. Debian's pocl-opencl-icd for "
                        "the CPU) and check that /etc/OpenCL/vendors lists it (clinfo shows what is visible)");
    if (!spec || !*spec) {
        for (int i = 0; i < n; i++) {
            cl_device_type t = 0;
            clGetDeviceInfo(refs[i].device, CL_DEVICE_TYPE, sizeof t, &t, NULL);
            if (t & CL_DEVICE_TYPE_GPU) return i;
        }
        return 0;
    }
    char *end;
    long a = strtol(spec, &end, 10);
    if (end != spec && *end == 0) {
        if (a < 0 || a >= n)
            return clt__err(ctx, CLT_ERR_NO_DEVICE, "device index %ld out of range: %d device(s) found", a, n);
        return (int)a;
    }
    if (end != spec && *end == ':') {
        char *end2;
        long d = strtol(end + 1, &end2, 10);
        if (end2 != end + 1 && *end2 == 0) {
            int k = 0;
            for (int i = 0; i < n; i++)
                if (refs[i].platform_index == a && k++ == d) return i;
            return clt__err(ctx, CLT_ERR_NO_DEVICE, "no device %ld on platform %ld", d, a);
        }
    }
    for (int i = 0; i < n; i++) {
        clt_device_info info;
        fill_info(refs[i].platform, refs[i].device, i, refs[i].platform_index, &info);
        if (contains_ci(info.name, spec) || contains_ci(info.vendor, spec) || contains_ci(info.platform_name, spec))
            return i;
    }
    return clt__err(ctx, CLT_ERR_NO_DEVICE, "no OpenCL device matches '%s' (run 'cltrain devices' to list them)",
                    spec);
}

/* The environment variables with a fixed set of values, checked once when a context is created: an unknown
 * value is refused (naming the variable, the value and what it takes) instead of being ignored, or refused
 * only when the first layer that reads it is compiled. The readers stay where they are (gemm.c, conv2d.c,
 * tune.c). CLTRAIN_DEVICE is checked by the device choice, CLTRAIN_CACHE_DIR takes any folder. */
static int check_env(clt_context *ctx, const clt_context_settings *s)
{
    static const struct {
        const char *name, *values[4], *expected;
    } vars[] = {
        {"CLTRAIN_GEMM", {"auto", "own", "clblast", NULL}, "auto, own or clblast"},
        {"CLTRAIN_CONV_ALGO", {"auto", "im2col", "direct", NULL}, "auto, im2col or direct"},
        {"CLTRAIN_NO_BINARY_CACHE", {"0", "1", NULL}, "1 (no program binary cache) or 0"},
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *e = getenv(vars[i].name);
        if (!e || !*e) continue;
        int ok = 0;
        for (int j = 0; vars[i].values[j]; j++) ok |= !strcmp(e, vars[i].values[j]);
        if (!ok)
            return clt__err(ctx, CLT_ERR_INVALID, "environment variable %s=%.200s: unknown value (expected %s, or "
                            "unset)", vars[i].name, e, vars[i].expected);
    }
    int st = clt__gemm_env_check(ctx);
    if (st < 0) return st;
    const char *kd = getenv("CLTRAIN_KERNEL_DIR");
    struct stat sb;
    if (!(s && s->kernel_dir) && kd && *kd && (stat(kd, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        return clt__err(ctx, CLT_ERR_INVALID, "environment variable CLTRAIN_KERNEL_DIR=%.200s: not a folder (it must "
                        "hold the cl/*.cl kernel sources; unset it to use the built-in copies)", kd);
    return CLT_OK;
}

static clt_context *alloc_context(const clt_context_settings *s)
{
    clt_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    clt_context_settings d;
    if (!s) {
        clt_context_default_settings(&d);
        s = &d;
    }
    const char *kd = s->kernel_dir ? s->kernel_dir : getenv("CLTRAIN_KERNEL_DIR");
    ctx->kernel_dir = kd && *kd ? clt__strdup(kd) : NULL;
    ctx->cache_dir = s->cache_dir ? clt__strdup(s->cache_dir) : clt__cache_dir_default();
    ctx->tune = s->tune;
    ctx->tune_budget_s = s->tune_budget_s;
    ctx->verbose = s->verbose;
    ctx->profile = s->profile;
    return ctx;
}

static int finish_setup(clt_context *ctx)
{
    cl_platform_id p = NULL;
    CLT_CL(ctx, clGetDeviceInfo(ctx->dev, CL_DEVICE_PLATFORM, sizeof p, &p, NULL));
    fill_info(p, ctx->dev, -1, -1, &ctx->info);
    /* Find our global index so info matches clt_device_get_info. */
    dev_ref *refs;
    int n;
    if (enumerate(&refs, &n) == CLT_OK) {
        for (int i = 0; i < n; i++)
            if (refs[i].device == ctx->dev) {
                ctx->info.index = i;
                ctx->info.platform_index = refs[i].platform_index;
            }
        free(refs);
    }
    cl_uint align_bits = 0;
    CLT_CL(ctx, clGetDeviceInfo(ctx->dev, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL));
    ctx->mem_align = align_bits / 8 < 64 ? 64 : align_bits / 8;
    return CLT_OK;
}

int clt_context_create(const clt_context_settings *s, clt_context **out)
{
    if (!out) return CLT_ERR_INVALID;
    clt_context *ctx = *out = alloc_context(s);
    if (!ctx) return CLT_ERR_NOMEM;
    int st = check_env(ctx, s);
    if (st < 0) return st;
    const char *spec = s && s->device ? s->device : getenv("CLTRAIN_DEVICE");
    dev_ref *refs;
    int n;
    st = enumerate(&refs, &n);
    if (st < 0) return clt__err(ctx, st, "listing OpenCL platforms failed (%s)", clt_status_string(st));
    int idx = choose_device(ctx, refs, n, spec);
    if (idx < 0) {
        free(refs);
        if (n > 0 && spec && !(s && s->device)) {
            /* Say where the spec came from: nothing on the command line asked for it. */
            char m[1024];
            snprintf(m, sizeof m, "%.1000s", ctx->errmsg);
            return clt__err(ctx, idx, "environment variable CLTRAIN_DEVICE=%.200s: %s", spec, m);
        }
        return idx;
    }
    ctx->dev = refs[idx].device;
    cl_platform_id plat = refs[idx].platform;
    free(refs);
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)plat, 0};
    cl_int err;
    ctx->cl = clCreateContext(props, 1, &ctx->dev, NULL, NULL, &err);
    if (err != CL_SUCCESS) return clt__cl_err(ctx, err, "clCreateContext", __FILE__, __LINE__);
    ctx->queue = clCreateCommandQueue(ctx->cl, ctx->dev, ctx->profile ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (err != CL_SUCCESS) return clt__cl_err(ctx, err, "clCreateCommandQueue", __FILE__, __LINE__);
    ctx->queue_profiling = ctx->profile;
    return finish_setup(ctx);
}

int clt_context_create_from_cl(cl_context context, cl_device_id device, cl_command_queue queue,
                               const clt_context_settings *s, clt_context **out)
{
    if (!out) return CLT_ERR_INVALID;
    clt_context *ctx = *out = alloc_context(s);
    if (!ctx) return CLT_ERR_NOMEM;
    if (!context || !device || !queue)
        return clt__err(ctx, CLT_ERR_INVALID, "clt_context_create_from_cl: context, device and queue are required");
    int st = check_env(ctx, s);
    if (st < 0) return st;
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    CLT_CL(ctx, clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL));
    CLT_CL(ctx, clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL));
    if (qctx != context || qdev != device)
        return clt__err(ctx, CLT_ERR_INVALID, "clt_context_create_from_cl: the queue belongs to another context or device");
    cl_command_queue_properties qp = 0;
    CLT_CL(ctx, clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL));
    if (qp & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
        return clt__err(ctx, CLT_ERR_UNSUPPORTED, "clt_context_create_from_cl: the queue must be in-order");
    /* Our own references: the application's stay untouched. */
    CLT_CL(ctx, clRetainContext(context));
    ctx->cl = context;
    CLT_CL(ctx, clRetainCommandQueue(queue));
    ctx->queue = queue;
    ctx->dev = device;
    ctx->queue_profiling = (qp & CL_QUEUE_PROFILING_ENABLE) != 0;
    return finish_setup(ctx);
}

void clt_context_destroy(clt_context *ctx)
{
    if (!ctx) return;
    if (ctx->queue) clFinish(ctx->queue);
    clt__gemm_release(ctx);
    clt__binary_cache_release(ctx);
    clt__tuner_release(ctx);
    for (int i = 0; i < ctx->nprograms; i++) {
        clReleaseProgram(ctx->programs[i].program);
        free(ctx->programs[i].name);
        free(ctx->programs[i].options);
    }
    free(ctx->programs);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->cl) clReleaseContext(ctx->cl);
    free(ctx->kernel_dir);
    free(ctx->cache_dir);
    free(ctx);
}

int clt_context_device_info(const clt_context *ctx, clt_device_info *info)
{
    clt__clear_error((clt_context *)ctx); /* the message is not part of the context's logical state */
    if (!ctx || !info || !ctx->dev) return CLT_ERR_INVALID;
    *info = ctx->info;
    return CLT_OK;
}

int clt_context_cl(const clt_context *ctx, cl_context *context, cl_device_id *device, cl_command_queue *queue)
{
    clt__clear_error((clt_context *)ctx);
    if (!ctx) return CLT_ERR_INVALID;
    if (context) *context = ctx->cl;
    if (device) *device = ctx->dev;
    if (queue) *queue = ctx->queue;
    return CLT_OK;
}

int clt_context_finish(clt_context *ctx)
{
    if (!ctx) return CLT_ERR_INVALID;
    clt__clear_error(ctx);
    CLT_CL(ctx, clFinish(ctx->queue));
    return CLT_OK;
}
