/* util.c - small helpers shared by the tool modules (data sets, models, checkpoints). */
#include <stdarg.h>
#include <stdio.h>

#include "tool.h"

int tool_fail(char *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, TOOL_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return status;
}
