/* linnx/status.h - status codes and the thread-local message of the last failure.
 *
 * Every fallible public call returns an lx_status (or NULL) and leaves a message that names
 * what failed. The library never aborts, exits or prints to stdout.
 *
 * Every message starts with the module path of the method that was running when it failed,
 * across the bridge in both directions: "ToLinen_0/l1: dot_general: contracting dimensions ...".
 * A failure outside any module method has no path in front.
 *
 * Failed inputs: an op or call handed a NULL that stands for an earlier failure fails too,
 * keeping that earlier message, so a chain of calls is checked once at its end. That holds only
 * while the earlier failure is *pending*: every failure makes it pending; lx_clear_error() and the
 * successful end of an outermost module call (linen_init, linen_apply, nnx_call, a constructor
 * called from user code) mark it handled. A NULL input met when no failure is pending is reported
 * as itself ("matmul: input is NULL ...", LX_ERR_FAILED_INPUT), never with the message of a
 * failure already handled. What the failing call returns: an op or other pointer-returning call
 * NULL (lx_last_status() is the earlier failure's status); a call returning a status
 * LX_ERR_FAILED_INPUT (trees, optax, TrainState, checkpoints); a module call (linen_init,
 * linen_apply, nnx_call) whose method meets the NULL returns the earlier failure's status.
 *
 * A handled failure leaves no stale text: once it is no longer pending, the next successful op
 * (lx_bind, primitive.h) clears it, so lx_last_error() is "" and lx_last_status() LX_OK.
 *
 * Ownership: lx_last_error() returns a thread-local buffer owned by linnx; it stays valid until
 * the next failing call, or the next op that clears a handled failure, on the same thread.
 */
#ifndef LINNX_STATUS_H
#define LINNX_STATUS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef enum lx_status {
    LX_OK = 0,
    LX_ERR_INVALID_ARGUMENT, /* a value that is out of range or of the wrong kind */
    LX_ERR_SHAPE,            /* shapes that do not fit together */
    LX_ERR_DTYPE,            /* a dtype the operation does not take */
    LX_ERR_NOT_FOUND,        /* a name, path or stream that does not exist */
    LX_ERR_EXISTS,           /* a name that is already taken */
    LX_ERR_IMMUTABLE,        /* a write to a collection that is not mutable */
    LX_ERR_RNG,              /* no random stream for a request */
    LX_ERR_NO_MEMORY,        /* an allocation failed */
    LX_ERR_IO,               /* a file could not be read or written */
    LX_ERR_FORMAT,           /* a file or string that does not parse */
    LX_ERR_TYPE,             /* a value of the wrong type (Python's TypeError) */
    LX_ERR_UNSUPPORTED,      /* valid, but not implemented here */
    LX_ERR_FAILED_INPUT,     /* an input was NULL because an earlier call failed */
    LX_ERR_INTERNAL          /* a broken invariant inside linnx */
} lx_status;

/* Record a failure: formats the message (printf-style) and returns `status` unchanged, so
 * `return lx_fail(LX_ERR_SHAPE, "...", ...)` reads naturally. */
lx_status lx_fail(lx_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
lx_status lx_vfail(lx_status status, const char *fmt, va_list ap);

/* Prepend context to the current message ("in Dense_0: " + old message). Returns status. */
lx_status lx_fail_context(lx_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The message of the last failure on this thread ("" if none, or if it was handled and an op
 * succeeded since). */
const char *lx_last_error(void);
/* The status of the last failure on this thread (LX_OK if none since the last clear). */
lx_status lx_last_status(void);
/* Forget the last failure: the message becomes "", the status LX_OK, nothing is pending. */
void lx_clear_error(void);
/* Whether the last failure on this thread is still pending (see the top of this header). Op
 * code and method functions that meet a NULL input record their own failure only when nothing
 * is pending. */
bool lx_error_pending(void);
/* A counter that every recorded failure on this thread increments: compare it before and after
 * a call to learn whether that call recorded a message (a dispatch hook's "no such method" is
 * LX_ERR_NOT_FOUND with no message). */
uint64_t lx_error_generation(void);

/* A short stable name for a status code: "LX_ERR_SHAPE". */
const char *lx_status_name(lx_status status);

/* Warnings (Python's warnings.warn): the library never prints on its own; it hands the text to
 * the handler, which by default writes "linnx: warning: <text>" to stderr. A NULL handler
 * restores the default; `user` is passed back. */
typedef void (*lx_warning_handler)(const char *text, void *user);
void lx_set_warning_handler(lx_warning_handler fn, void *user);
void lx_warn(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Evaluate a status expression and return it from the enclosing function if it failed. */
#define LX_TRY(expr)                         \
    do {                                     \
        lx_status lx_try_s_ = (expr);        \
        if (lx_try_s_ != LX_OK) return lx_try_s_; \
    } while (0)

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
/* Deprecated spellings of renamed names, so code written against them keeps building. */
#include "linnx/compat.h"

#endif
