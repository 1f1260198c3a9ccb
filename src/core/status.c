/* Status codes and the thread-local last-error message. */
#include "linnx/status.h"
#include "linnx/version.h"

#include <stdio.h>
#include <string.h>

#include "frame_internal.h"

#define LX_MSG_CAP 4096
/* A module path longer than this is shown by its tail ("...decoder/layers_9/mlp"). */
#define LX_PATH_SHOWN 1024

static _Thread_local char lx_msg[LX_MSG_CAP];
static _Thread_local lx_status lx_msg_status = LX_OK;
static _Thread_local size_t lx_msg_prefix; /* length of the "<module path>: " that starts lx_msg */
static _Thread_local uint64_t lx_msg_generation;
static _Thread_local bool lx_msg_pending;

/* The message is formatted into a local buffer first (its arguments may point into lx_msg:
 * lx_fail(s, "%s", lx_last_error())), then the module path is resolved (which may itself record
 * and discard a failure) and put in front, unless the text already starts with it. A path that
 * cannot be built (out of memory) is left out: the message is the text alone, as at the root. */
lx_status lx_vfail(lx_status status, const char *fmt, va_list ap) {
    char text[LX_MSG_CAP];
    vsnprintf(text, sizeof text, fmt, ap);
    const char *path;
    if (lx_frame_path_(&path) != LX_OK) path = "";
    size_t plen = strlen(path);
    const char *shown = path;
    if (plen > LX_PATH_SHOWN) shown = path + plen - LX_PATH_SHOWN;
    size_t slen = strlen(shown);
    if (slen && !(strncmp(text, shown, slen) == 0 && text[slen] == ':')) {
        int n = snprintf(lx_msg, sizeof lx_msg, "%s%s: %s", shown == path ? "" : "...", shown, text);
        size_t pre = (shown == path ? 0 : 3) + slen + 2;
        lx_msg_prefix = n > 0 && (size_t)n >= pre ? pre : 0;
    } else {
        memcpy(lx_msg, text, strlen(text) + 1);
        lx_msg_prefix = 0;
    }
    lx_msg_status = status;
    lx_msg_generation++;
    lx_msg_pending = true;
    return status;
}

lx_status lx_fail(lx_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lx_vfail(status, fmt, ap);
    va_end(ap);
    return status;
}

/* The context goes after the module path, so the path stays first: "l1: matmul of shapes ...: ". */
lx_status lx_fail_context(lx_status status, const char *fmt, ...) {
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t at = lx_msg_prefix;
    size_t np = strlen(prefix), nold = strlen(lx_msg + at);
    if (at + np >= LX_MSG_CAP) np = LX_MSG_CAP - 1 - at;
    if (at + np + nold >= LX_MSG_CAP) nold = LX_MSG_CAP - 1 - at - np;
    memmove(lx_msg + at + np, lx_msg + at, nold);
    memcpy(lx_msg + at, prefix, np);
    lx_msg[at + np + nold] = '\0';
    lx_msg_status = status;
    lx_msg_generation++;
    lx_msg_pending = true;
    return status;
}

const char *lx_last_error(void) { return lx_msg; }

lx_status lx_last_status(void) { return lx_msg_status; }

uint64_t lx_error_generation(void) { return lx_msg_generation; }

bool lx_error_pending(void) { return lx_msg_pending; }

void lx_error_settle_(void) { lx_msg_pending = false; }

_Static_assert(sizeof(((lx_error_saved_ *)0)->msg) == LX_MSG_CAP, "lx_error_saved_ holds a whole message");

void lx_error_save_(lx_error_saved_ *s) {
    memcpy(s->msg, lx_msg, strlen(lx_msg) + 1);
    s->prefix = lx_msg_prefix;
    s->status = (int)lx_msg_status;
    s->pending = lx_msg_pending;
}

void lx_error_restore_(const lx_error_saved_ *s) {
    memcpy(lx_msg, s->msg, strlen(s->msg) + 1);
    lx_msg_prefix = s->prefix;
    lx_msg_status = (lx_status)s->status;
    lx_msg_pending = s->pending;
}

void lx_clear_error(void) {
    lx_msg[0] = '\0';
    lx_msg_status = LX_OK;
    lx_msg_prefix = 0;
    lx_msg_pending = false;
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

/* The version of the running library (linnx/version.h): the header's macros as they were when
 * the library was built. */
const char *lx_version(void) { return LINNX_VERSION; }
int lx_version_number(void) { return LINNX_VERSION_NUMBER; }
