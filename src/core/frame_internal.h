/* Module frames as the runtimes keep them (internal; the public side is linnx/intercept.h).
 *
 * Every module method runs inside a frame, whether or not an interceptor is registered, so a
 * failure can name the module path (lx_fail puts it in front of every message). Pushing a frame
 * must cost next to nothing: the name is lent (a Linen scope's name lives as long as the call) or
 * resolved lazily by `name_fn` only when a path is actually wanted. */
#ifndef LINNX_FRAME_INTERNAL_H
#define LINNX_FRAME_INTERNAL_H

#include "linnx/intercept.h"

/* The path component of `obj` given the enclosing frame's object (`parent`; never called when the
 * enclosing frame is not of the same kind or is obj itself). LX_OK with *name a malloc'd string,
 * or *name NULL for "no component" (obj is not an attribute of parent: a module it made on the
 * spot, one held in a tree); LX_ERR_NO_MEMORY (*name NULL) when finding or copying the name ran
 * out of memory, which fails the whole path (lx_frame_path_), never drops one component. It
 * records no failure (a dropped interceptor event must leave none pending). The one
 * implementation is NNX's attribute name (src/nnx/module.c frame_name: only copying the name
 * allocates). */
typedef lx_status (*lx_frame_name_fn)(const void *parent, const void *obj, char **name);

/* Push a frame whose name is `name` (borrowed: it must outlive the frame; NULL = "") or, when
 * name_fn is given, resolved by it. Fails only past the inline depth when out of memory. */
lx_status lx_frame_enter_(lx_frame_kind kind, const char *name, lx_frame_name_fn name_fn, const void *obj,
                          lx_frame_param_fn is_param);
/* Pop the innermost frame. When that leaves the stack empty and the call succeeded, the
 * outermost module call is over and went well: a failure recorded before it counts as handled
 * (lx_error_pending() turns false), so a later NULL input is reported as itself. */
void lx_frame_leave_(lx_status st);
/* The current path with a status, for the library's own callers: LX_OK with *path the joined
 * path ("" only with no named frame: the root), borrowed until the next push or pop on this
 * thread; LX_ERR_NO_MEMORY with *path NULL when building it ran out of memory (a buffer, or a
 * name_fn), and also when asked again while the path is being built (a name_fn that records a
 * failure: status.c then asks for the path of that message). Records no failure itself: each
 * caller says what it could not do (quant_session.c fails the op, status.c leaves the path out
 * of the message). lx_frame_current_path (public) turns the failure into "". */
lx_status lx_frame_path_(const char **path);
/* Number of frames on this thread's stack. */
int lx_frame_depth_(void);
/* How many outermost module calls have ended on this thread (quantization restarts its per-module
 * op counts with each: the root module's second call counts from dot_general0 again). */
uint64_t lx_frame_outer_calls_(void);

/* status.c: the "handled" mark that lx_frame_leave_ sets. */
void lx_error_settle_(void);
/* A try that may fail without a trace (bind's int8 stand-in rule): save the failure state, and put
 * it back exactly. The saved text is a copy (4096 bytes). */
typedef struct {
    char msg[4096];
    size_t prefix;
    int status;
    bool pending;
} lx_error_saved_;
void lx_error_save_(lx_error_saved_ *s);
void lx_error_restore_(const lx_error_saved_ *s);

#endif
