/* linnx/dropout.h - dropout: the op shared by Linen's Dropout and NNX's Dropout, its mask, and
 * its arithmetic given a mask.
 *
 * Flax semantics (flax/linen/stochastic.py): keep_prob = 1 - rate;
 * mask = bernoulli(key, keep_prob, shape) with every axis listed in broadcast_dims set to 1 in
 * that shape (one mask value shared along it); out = where(mask, x / keep_prob, 0).
 * rate == 0 or deterministic: the input itself; rate == 1: zeros (no key is used in either
 * case). The bernoulli draw is JAX's (uniform(key, shape) < f32(keep_prob)), bit for bit, under
 * the process-wide bit scheme (random.h).
 *
 * Ownership: like every op, the result is owned by the innermost pool (for the identity cases a
 * new pool reference to x itself); NULL with a message on bad arguments; a NULL x keeps the
 * pending failure (status.h), or is LX_ERR_FAILED_INPUT when none is pending. An abstract x gives
 * an abstract result. Errors: x not float32 LX_ERR_DTYPE; rate outside [0, 1] or a NULL
 * broadcast_dims list with nbroadcast > 0 LX_ERR_INVALID_ARGUMENT; a broadcast axis out of range
 * for the shape (or a mask that does not broadcast to x) LX_ERR_SHAPE.
 * Observers see the primitive "dropout" with inputs (x, mask) and attribute `rate`.
 */
#ifndef LINNX_DROPOUT_H
#define LINNX_DROPOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/array.h"
#include "linnx/random.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* x: float32. rate in [0, 1]. broadcast_dims: nbroadcast axes of x (negative counts from the
 * end), may be NULL when nbroadcast is 0. */
lx_array *lx_dropout(lx_array *x, double rate, lx_key key, int nbroadcast,
                     const int64_t *broadcast_dims, bool deterministic);

/* The keep mask alone (bool, x's shape with the broadcast axes set to 1): what lx_dropout draws. */
lx_array *lx_dropout_mask(lx_key key, double rate, int ndim, const int64_t *shape, int nbroadcast,
                          const int64_t *broadcast_dims);

/* ---- dropout's arithmetic (the random mask comes from the caller) ----
 * keep_mask (bool, broadcastable to x): where true, x / keep with keep = (float)(1.0 - rate)
 * computed in double as Flax does (Python float, then x's dtype), like lx_dropout; elsewhere 0.
 * rate must be in [0, 1]; rate 1 gives zeros. Attribute: rate. */
lx_array *lx_dropout_apply(lx_array *x, lx_array *keep_mask, double rate);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
