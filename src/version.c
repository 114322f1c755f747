/* version.c - clt_version_get: the library's version and the CLBlast and OpenCL libraries it runs on. */
#define _GNU_SOURCE /* dladdr */
#include "internal.h"

#include <clblast_c.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The file a symbol was loaded from: the shared library actually in use, not the one a package claims. */
static void library_of(const void *sym, char *buf, size_t len)
{
    Dl_info info;
    buf[0] = 0;
    if (dladdr(sym, &info) && info.dli_fname) snprintf(buf, len, "%s", info.dli_fname);
}

CLT_API int clt_version_get(clt_version_info *v)
{
    if (!v) return CLT_ERR_INVALID;
    memset(v, 0, sizeof *v);
    snprintf(v->cltrain, sizeof v->cltrain, "%s", CLT_VERSION_STRING);
    v->clblast_major = CLBLAST_VERSION_MAJOR;
    v->clblast_minor = CLBLAST_VERSION_MINOR;
    v->clblast_patch = CLBLAST_VERSION_PATCH;
    library_of((const void *)(uintptr_t)&CLBlastSgemm, v->clblast_library, sizeof v->clblast_library);
    library_of((const void *)(uintptr_t)&clGetPlatformIDs, v->opencl_library, sizeof v->opencl_library);
    return CLT_OK;
}
