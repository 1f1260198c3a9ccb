/* Status codes and the thread-local last-error message. */
#include "linnx/status.h"

#include <stdio.h>
#include <string.h>

#define LX_MSG_CAP 4096

static _Thread_local char lx_msg[LX_MSG_CAP];
static _Thread_local lx_status lx_msg_status = LX_OK;

lx_status lx_vfail(lx_status status, const char *fmt, va_list ap) {
    vsnprintf(lx_msg, sizeof lx_msg, fmt, ap);
    lx_msg_status = status;
    return status;
}

lx_status lx_fail(lx_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lx_vfail(status, fmt, ap);
    va_end(ap);
    return status;
}

lx_status lx_fail_context(lx_status status, const char *fmt, ...) {
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t np = strlen(prefix), nold = strlen(lx_msg);
    if (np >= LX_MSG_CAP) np = LX_MSG_CAP - 1;
    if (np + nold >= LX_MSG_CAP) nold = LX_MSG_CAP - 1 - np;
    memmove(lx_msg + np, lx_msg, nold);
    memcpy(lx_msg, prefix, np);
    lx_msg[np + nold] = '\0';
    lx_msg_status = status;
    return status;
}

const char *lx_last_error(void) { return lx_msg; }

lx_status lx_last_status(void) { return lx_msg_status; }

void lx_clear_error(void) {
    lx_msg[0] = '\0';
    lx_msg_status = LX_OK;
}

const char *lx_status_name(lx_status s) {
    switch (s) {
    case LX_OK: return "LX_OK";
    case LX_ERR_INVALID_ARGUMENT: return "LX_ERR_INVALID_ARGUMENT";
    case LX_ERR_SHAPE: return "LX_ERR_SHAPE";
    case LX_ERR_DTYPE: return "LX_ERR_DTYPE";
    case LX_ERR_NOT_FOUND: return "LX_ERR_NOT_FOUND";
    case LX_ERR_EXISTS: return "LX_ERR_EXISTS";
    case LX_ERR_IMMUTABLE: return "LX_ERR_IMMUTABLE";
    case LX_ERR_RNG: return "LX_ERR_RNG";
    case LX_ERR_NO_MEMORY: return "LX_ERR_NO_MEMORY";
    case LX_ERR_IO: return "LX_ERR_IO";
    case LX_ERR_FORMAT: return "LX_ERR_FORMAT";
    case LX_ERR_TYPE: return "LX_ERR_TYPE";
    case LX_ERR_UNSUPPORTED: return "LX_ERR_UNSUPPORTED";
    case LX_ERR_FAILED_INPUT: return "LX_ERR_FAILED_INPUT";
    case LX_ERR_INTERNAL: return "LX_ERR_INTERNAL";
    }
    return "LX_ERR_UNKNOWN";
}

/* ---- warnings ---- */

static void default_warning(const char *text, void *user) {
    (void)user;
    fprintf(stderr, "linnx: warning: %s\n", text);
}

static lx_warning_handler warn_fn = default_warning;
static void *warn_user;

void lx_set_warning_handler(lx_warning_handler fn, void *user) {
    warn_fn = fn ? fn : default_warning;
    warn_user = fn ? user : NULL;
}

void lx_warn(const char *fmt, ...) {
    char text[LX_MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    warn_fn(text, warn_user);
}
