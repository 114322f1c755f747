/* embedded.h - table of OpenCL sources compiled into the library by tools/embed_cl.py. */
#ifndef CLT_EMBEDDED_H
#define CLT_EMBEDDED_H
#include <stddef.h>
typedef struct clt__embedded_source {
    const char *name; /* file name without .cl */
    const char *text;
    size_t len;
} clt__embedded_source;
extern const clt__embedded_source clt__embedded_sources[]; /* ends with {0,0,0} */
#endif
