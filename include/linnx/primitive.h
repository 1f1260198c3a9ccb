/* linnx/primitive.h - ops as named primitives that observers can record.
 *
 * Every op in ops.h / linalg.h / nn.h reports itself after it computed its output: its name
 * ("matmul", "add", "conv_general"), its inputs, its attributes as keyword values, and its
 * output. A reverse-mode tape (gradients) and op interceptors (module paths for quantization)
 * are observers. With no observer registered the cost is one thread-local load per op.
 *
 * Ownership: the event and everything it points to are borrowed for the duration of the
 * callback; an observer that keeps an array retains it.
 */
#ifndef LINNX_PRIMITIVE_H
#define LINNX_PRIMITIVE_H

#include <stdbool.h>

#include "linnx/value.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef struct lx_prim_event {
    const char *op;              /* the primitive's name */
    int ninputs;
    lx_array *const *inputs;
    lx_array *output;
    int nattrs;
    const lx_kwarg *attrs;       /* axes, strides, padding, ... */
} lx_prim_event;

typedef void (*lx_prim_observer)(const lx_prim_event *ev, void *user);

#define LX_MAX_OBSERVERS 16

/* Register an observer on this thread; *handle receives an id for lx_prim_unobserve. */
lx_status lx_prim_observe(lx_prim_observer fn, void *user, int *handle);
void lx_prim_unobserve(int handle);
bool lx_prim_observed(void);
/* Called by ops: deliver the event to every observer, newest first. */
void lx_prim_emit(const lx_prim_event *ev);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
