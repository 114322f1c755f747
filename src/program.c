/* program.c - finds kernel sources (embedded or on disk), builds and caches OpenCL programs, launches kernels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clt_config.h"
#include "embedded.h"
#include "internal.h"
#include "bincache.h"
#include "disk.h"

#define KERNEL_SOURCE_MAX ((size_t)16 << 20) /* our largest .cl file is a few dozen KiB */

int clt__source_text(clt_context *ctx, const char *name, char **text, size_t *len)
{
    *text = NULL;
    if (ctx->kernel_dir) {
        char path[4096], err[4200];
        snprintf(path, sizeof path, "%s/%s.cl", ctx->kernel_dir, name);
        int rc = clt__read_file(path, KERNEL_SOURCE_MAX, 0, text, len ? len : &(size_t){0}, err, sizeof err);
        if (rc == 1) return clt__err(ctx, CLT_ERR_IO, "cannot open kernel source %s (kernel_dir is set)", path);
        if (rc < 0) return clt__err(ctx, CLT_ERR_IO, "kernel source %s (kernel_dir is set)", err);
        return CLT_OK;
    }
    for (const clt__embedded_source *s = clt__embedded_sources; s->name; s++) {
        if (strcmp(s->name, name) == 0) {
            *text = malloc(s->len + 1);
            if (!*text) return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
            memcpy(*text, s->text, s->len + 1);
            if (len) *len = s->len;
            return CLT_OK;
        }
    }
    return clt__err(ctx, CLT_ERR_INVALID, "no kernel source named '%s' is built into the library", name);
}

static int build_log_error(clt_context *ctx, cl_program p, cl_int err, const char *name, const char *options)
{
    size_t n = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(p, ctx->dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) == CL_SUCCESS && n > 0) {
        log = malloc(n + 1);
        if (log && clGetProgramBuildInfo(p, ctx->dev, CL_PROGRAM_BUILD_LOG, n, log, NULL) == CL_SUCCESS)
            log[n] = 0;
        else if (log)
            log[0] = 0;
    }
    int st = clt__err(ctx, err == CL_BUILD_PROGRAM_FAILURE ? CLT_ERR_BUILD : CLT_ERR_OPENCL,
                      "building kernel program '%s' (options: %s) failed: %s\nbuild log:\n%s", name, options,
                      clt__cl_error_name(err), log ? log : "(none)");
    free(log);
    return st;
}

int clt__program(clt_context *ctx, const char *source, const char *options, cl_program *out)
{
    char opts[2048];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 %s %s", CLT_KERNEL_DEFINES, options ? options : "");
    for (int i = 0; i < ctx->nprograms; i++) {
        if (strcmp(ctx->programs[i].name, source) == 0 && strcmp(ctx->programs[i].options, opts) == 0) {
            *out = ctx->programs[i].program;
            return CLT_OK;
        }
    }
    char *common = NULL, *text = NULL;
    size_t lc = 0, lt = 0;
    int st = clt__source_text(ctx, "common", &common, &lc);
    if (st < 0) return st;
    st = clt__source_text(ctx, source, &text, &lt);
    if (st < 0) {
        free(common);
        return st;
    }
    /* One string (common.cl then the source): the binary cache keys on exactly the text that is compiled. */
    char *full = malloc(lc + lt + 1);
    if (!full) {
        free(common);
        free(text);
        return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    }
    memcpy(full, common, lc);
    memcpy(full + lc, text, lt);
    full[lc + lt] = 0;
    free(common);
    free(text);
    cl_program p = NULL;
    if (!clt__binary_cache_load(ctx, full, lc + lt, opts, &p)) {
        const char *src = full;
        size_t len = lc + lt;
        cl_int err;
        p = clCreateProgramWithSource(ctx->cl, 1, &src, &len, &err);
        if (err != CL_SUCCESS) {
            free(full);
            return clt__cl_err(ctx, err, "clCreateProgramWithSource", __FILE__, __LINE__);
        }
        err = clBuildProgram(p, 1, &ctx->dev, opts, NULL, NULL);
        if (err != CL_SUCCESS) {
            free(full);
            st = build_log_error(ctx, p, err, source, opts);
            clReleaseProgram(p);
            return st;
        }
        clt__binary_cache_store(ctx, full, len, opts, p);
    }
    free(full);
    if (ctx->nprograms == ctx->cap_programs) {
        int cap = ctx->cap_programs ? ctx->cap_programs * 2 : 16;
        clt__program_entry *np = realloc(ctx->programs, (size_t)cap * sizeof *np);
        if (!np) {
            clReleaseProgram(p);
            return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
        }
        ctx->programs = np;
        ctx->cap_programs = cap;
    }
    clt__program_entry *e = &ctx->programs[ctx->nprograms];
    e->name = clt__strdup(source);
    e->options = clt__strdup(opts);
    if (!e->name || !e->options) {
        free(e->name);
        free(e->options);
        clReleaseProgram(p);
        return clt__err(ctx, CLT_ERR_NOMEM, "out of memory");
    }
    e->program = p;
    ctx->nprograms++;
    *out = p;
    return CLT_OK;
}

int clt__kernel(clt_context *ctx, const char *source, const char *options, const char *kernel, cl_kernel *out)
{
    cl_program p;
    CLT_TRY(clt__program(ctx, source, options, &p));
    cl_int err;
    /* A slot filled again (conv2d prepares both algorithms to measure them, then the winner) drops its old
     * kernel, which also holds its program. */
    if (*out) clReleaseKernel(*out);
    *out = clCreateKernel(p, kernel, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return clt__err(ctx, CLT_ERR_OPENCL, "clCreateKernel(%s) from cl/%s.cl failed: %s", kernel, source,
                        clt__cl_error_name(err));
    }
    return CLT_OK;
}

int clt__set_args(clt_context *ctx, cl_kernel k, int n, const clt__arg *args)
{
    for (int i = 0; i < n; i++) {
        cl_int err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].ptr);
        if (err != CL_SUCCESS) {
            char name[128] = "?";
            clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
            return clt__err(ctx, CLT_ERR_OPENCL, "clSetKernelArg(%s, arg %d) failed: %s", name, i,
                            clt__cl_error_name(err));
        }
    }
    return CLT_OK;
}

int clt__kernel_wg_max(clt_context *ctx, cl_kernel k, size_t *out)
{
    *out = 0;
    CLT_CL(ctx, clGetKernelWorkGroupInfo(k, ctx->dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof *out, out, NULL));
    return CLT_OK;
}

size_t clt__round_up(size_t x, size_t m)
{
    return m ? (x + m - 1) / m * m : x;
}

int clt__launch(clt_context *ctx, cl_kernel k, int dims, const size_t *global, const size_t *local)
{
    size_t g[3] = {1, 1, 1}, prod = 1;
    for (int i = 0; local && i < dims; i++) prod *= local[i];
    /* Respect the device's limit rather than assuming every device takes our preferred group size. */
    if (local && prod > ctx->info.max_work_group_size) local = NULL;
    for (int i = 0; i < dims; i++) {
        g[i] = local ? clt__round_up(global[i], local[i]) : global[i];
        if (g[i] == 0) return CLT_OK; /* nothing to do */
    }
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, k, (cl_uint)dims, NULL, g, local, 0, NULL, NULL);
    if (err == CL_INVALID_WORK_GROUP_SIZE && local) {
        /* A kernel may allow less than the device (CL_KERNEL_WORK_GROUP_SIZE: registers, local memory). Our
         * group sizes are hints except where a kernel says otherwise (those size themselves at prepare), so
         * let the driver choose. Only on this error path: steps pay no query. */
        size_t kmax = 0;
        if (clGetKernelWorkGroupInfo(k, ctx->dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax, &kmax, NULL) == CL_SUCCESS &&
            prod > kmax)
            err = clEnqueueNDRangeKernel(ctx->queue, k, (cl_uint)dims, NULL, g, NULL, 0, NULL, NULL);
    }
    if (err != CL_SUCCESS) {
        char name[128] = "?";
        clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
        return clt__err(ctx, err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES
                                 ? CLT_ERR_DEVICE_MEMORY : CLT_ERR_OPENCL,
                        "clEnqueueNDRangeKernel(%s, global %zu x %zu x %zu) failed: %s", name, g[0],
                        dims > 1 ? g[1] : 1, dims > 2 ? g[2] : 1, clt__cl_error_name(err));
    }
    return CLT_OK;
}
