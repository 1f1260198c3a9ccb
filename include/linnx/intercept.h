/* linnx/intercept.h - op interceptors: each matmul/dot_general/conv with its module path and
 * operand roles, as MaxText's bridge provides them for quantization (maxtext-wrappers.md §1.7,
 * §3: Qwix needs `decoder/layers_0/mlp/wi_0` and to know which operand is a weight).
 *
 * The Linen and NNX runtimes keep a thread-local stack of module frames whenever a module method
 * runs (also when no interceptor is registered: failure messages start with the same path,
 * status.h). A Linen scope contributes its name, an NNX module called by its parent
 * contributes its attribute name in that parent (list items their index). The path of an op is
 * the names of all frames joined with '/', across bridge boundaries in both directions: an NNX
 * module run by ToLinen at `decoder/layers_0` shows `decoder/layers_0/mlp/wi_0`; a Linen module
 * run by ToNNX held at NNX attribute `block` shows `block/Dense_0`.
 *
 * An operand's role is LX_OPERAND_PARAM when it is the value of a Param (or subclass) of the
 * innermost module frame, else LX_OPERAND_ACTIVATION. The role is always decided: the Linen and
 * NNX frames answer from what the module holds without allocating, so memory pressure cannot
 * show a weight as an activation (there is no "unknown" role).
 *
 * Out of memory: a path is built only when wanted (an event, a failure's message, a quantization
 * rule), into a buffer that grows, from names an NNX frame finds by looking its module up in the
 * parent's attributes; either can run out of memory. Such a path is never passed off as the
 * root's "" or as a path missing a component: the op's event is dropped (the op itself runs on,
 * nothing is recorded; lx_interceptor_dropped counts it), lx_frame_path fails with
 * LX_ERR_NO_MEMORY, quantization fails the op (docs/quantization.md),
 * remat's call fails, a failure's message goes without its path. An NNX module that is no
 * attribute of its parent (made on the spot, held in a tree) adds no component: that is a name,
 * not a failure.
 *
 * Ownership: the event and everything in it are borrowed for the callback's duration.
 * Interceptors are per thread, like primitive observers.
 */
#ifndef LINNX_INTERCEPT_H
#define LINNX_INTERCEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "linnx/primitive.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef enum lx_operand_role { LX_OPERAND_ACTIVATION = 0, LX_OPERAND_PARAM = 1 } lx_operand_role;

typedef struct lx_intercept_event {
    const char *path;              /* "decoder/layers_0/mlp/wi_0"; "" at the root */
    const char *op;                /* "matmul", "dot_general", "conv_general", or "einsum": attention's
                                    * q.k^T (inputs q, k; output the softmax weights, fused). While an
                                    * interceptor listens, dot_product_attention runs as that einsum
                                    * then weights.v as a "dot_general", so both products are events. */
    int ninputs;
    lx_array *const *inputs;
    const lx_operand_role *roles;  /* one per input */
    lx_array *output;
    int nattrs;
    const lx_kwarg *attrs;
} lx_intercept_event;

typedef void (*lx_interceptor_fn)(const lx_intercept_event *ev, void *user);

lx_status lx_interceptor_add(lx_interceptor_fn fn, void *user, int *handle);
void lx_interceptor_remove(int handle);
/* True while an interceptor is registered on this thread. */
bool lx_intercepting(void);
/* How many events this thread's interceptors did not get, since the thread started: an op whose
 * module path could not be built, or copied for the event, for lack of memory (see "Out of
 * memory" above). The op itself ran and its result is right; no failure is recorded. Nothing
 * else drops an event. An interceptor that must see every op (a trace, a census) reads it before
 * and after the run and treats a difference as its own failure (lx_qt_trace_end does). */
uint64_t lx_interceptor_dropped(void);

/* ---- module frames (called by the Linen and NNX runtimes, not by users) ---- */
typedef enum lx_frame_kind { LX_FRAME_LINEN = 1, LX_FRAME_NNX = 2 } lx_frame_kind;
/* Does `obj` hold array `a` as the value of a Param? It has no way to fail, so it must answer from
 * what obj holds without allocating (as the Linen and NNX frames do): false means "not a Param". */
typedef bool (*lx_frame_param_fn)(const void *obj, const lx_array *a);
/* Push a frame: `name` is copied whole, whatever its length ("" adds no path component); frames
 * nest to any depth. Only running out of memory fails (LX_ERR_NO_MEMORY, nothing pushed). */
lx_status lx_frame_push(lx_frame_kind kind, const char *name, const void *obj, lx_frame_param_fn is_param);
void lx_frame_pop(void);
/* The innermost frame's object and kind (NULL / 0 when there is none). */
const void *lx_frame_top(lx_frame_kind *kind);
/* Is `a` a Param of the innermost frame (an operand's role as an event would report it)? For
 * substituters, which run before the op's event exists (quant.h). False with no frame. Cannot
 * fail (lx_frame_param_fn): out of memory never turns a weight into "false". */
bool lx_frame_is_param(const lx_array *a);
/* The current path, joined with '/' ("" with no frames, or none named): borrowed, valid until the
 * next push or pop on this thread. An event's `path` is this string, never shortened. Also ""
 * when building it ran out of memory (it cannot fail: the signature predates that case), so ""
 * from here does not prove the root: a caller that must tell uses lx_frame_path. Records no
 * failure. */
const char *lx_frame_current_path(void);
/* The current path copied into buf. A path that does not fit is not cut: NULL and
 * LX_ERR_INVALID_ARGUMENT with a message giving the size it needs. Out of memory building the
 * path: NULL and LX_ERR_NO_MEMORY (then "" in buf is the root's path and nothing else). */
const char *lx_frame_path(char *buf, size_t cap);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
