/* One rule for a NULL handed to a call (status.h, "Failed inputs"): the call fails with
 * LX_ERR_FAILED_INPUT. While an earlier failure is pending the NULL stands for it, so its message
 * and lx_last_status() are kept; with nothing pending the NULL is reported as itself (`fmt`). */
#ifndef LINNX_STATUS_INTERNAL_H
#define LINNX_STATUS_INTERNAL_H

#include <stdarg.h>

#include "linnx/status.h"

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static inline lx_status lx_null_input(const char *fmt, ...) {
    if (lx_error_pending() && lx_last_status() != LX_OK) return LX_ERR_FAILED_INPUT;
    va_list ap;
    va_start(ap, fmt);
    lx_vfail(LX_ERR_FAILED_INPUT, fmt, ap);
    va_end(ap);
    return LX_ERR_FAILED_INPUT;
}

/* A NULL out pointer handed to a public call: LX_ERR_INVALID_ARGUMENT "who: output is NULL" (a
 * caller's mistake, not a failed input). */
static inline lx_status lx_null_out(const char *who) {
    return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: output is NULL", who);
}

#endif
