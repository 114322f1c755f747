/* errors.c - status names, OpenCL error names and the per-context error message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

const char *clt_status_string(int status)
{
    switch (status) {
    case CLT_OK: return "CLT_OK: success";
    case CLT_ERR_INVALID: return "CLT_ERR_INVALID: invalid argument";
    case CLT_ERR_SHAPE: return "CLT_ERR_SHAPE: tensor shapes do not fit the operation";
    case CLT_ERR_NOMEM: return "CLT_ERR_NOMEM: out of host memory";
    case CLT_ERR_DEVICE_MEMORY: return "CLT_ERR_DEVICE_MEMORY: out of device memory or over the device's limits";
    case CLT_ERR_NO_DEVICE: return "CLT_ERR_NO_DEVICE: no matching OpenCL device";
    case CLT_ERR_OPENCL: return "CLT_ERR_OPENCL: an OpenCL call failed";
    case CLT_ERR_BUILD: return "CLT_ERR_BUILD: an OpenCL program failed to build";
    case CLT_ERR_CLBLAST: return "CLT_ERR_CLBLAST: a CLBlast call failed";
    case CLT_ERR_STATE: return "CLT_ERR_STATE: call not valid in the current state";
    case CLT_ERR_IO: return "CLT_ERR_IO: file input/output failed";
    case CLT_ERR_FORMAT: return "CLT_ERR_FORMAT: corrupt, truncated or unsupported file";
    case CLT_ERR_UNSUPPORTED: return "CLT_ERR_UNSUPPORTED: feature not supported by this device or build";
    default: return "unknown cltrain status";
    }
}

const char *clt__cl_error_name(cl_int err)
{
    switch (err) {
#define E(x) case x: return #x;
    E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET) E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE)
    E(CL_DEVICE_PARTITION_FAILED) E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE)
    E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
    E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
    E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
    E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
    E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL_DEFINITION)
    E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
    E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
    E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
    E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
    E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
    E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
    E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL platform installed)";
    default: return "unknown OpenCL error";
    }
}

int clt__err(clt_context *ctx, int status, const char *fmt, ...)
{
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
        va_end(ap);
    }
    return status;
}

int clt__cl_err(clt_context *ctx, cl_int err, const char *what, const char *file, int line)
{
    int status = CLT_ERR_OPENCL;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES || err == CL_INVALID_BUFFER_SIZE)
        status = CLT_ERR_DEVICE_MEMORY;
    else if (err == CL_OUT_OF_HOST_MEMORY)
        status = CLT_ERR_NOMEM;
    else if (err == CL_BUILD_PROGRAM_FAILURE)
        status = CLT_ERR_BUILD;
    const char *base = strrchr(file, '/');
    return clt__err(ctx, status, "%s failed: %s (%d) [%s:%d]", what, clt__cl_error_name(err), (int)err,
                    base ? base + 1 : file, line);
}

void clt__clear_error(clt_context *ctx)
{
    if (ctx) ctx->errmsg[0] = 0;
}

const char *clt_errmsg(const clt_context *ctx)
{
    return ctx ? ctx->errmsg : "no context (it could not be allocated)";
}

double clt__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

char *clt__strdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
