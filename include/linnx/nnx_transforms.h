/* linnx/nnx_transforms.h - NNX lifted transforms for stacked layers: the Flax idiom
 *
 *   @nnx.split_rngs(splits=L)
 *   @nnx.vmap(in_axes=(state_axes,), out_axes=state_axes, transform_metadata={PARTITION_NAME: p})
 *   def create(rngs): return Type(*args, rngs=rngs)
 *
 * and nnx.scan of a method over such a stacked module with a carry.
 *
 * Keys (spec/jax-random.md §6.2b): for each stream, split_rngs draws fold_in(K, c0) (the stream's
 * count becomes c0 + 1) and splits it in L; copy i is built with the stream key k_i and count 0,
 * so its first draw is fold_in(k_i, 0). The caller's Rngs ends with key K and count c0 + 1, as
 * Flax restores it, so a layer built afterwards draws at c0 + 1.
 *
 * State axes (nnx.StateAxes): filter i puts the Variables it matches (first match wins) on
 * axes[i], or shares one copy (NNX_AXIS_BROADCAST, StateAxes' None: the copy 0 value, as vmap
 * with out_axes None keeps). Variables no filter matches, and every Variable when n == 0, go on
 * axis 0. With a partition name, each stacked Variable's out_sharding gets it inserted at its
 * axis (add_axis) on the way out, and removed (remove_axis) in the per-layer view scan builds.
 *
 * Both run the body per slice (as lift.h's Linen transforms do): the ops, and the gradients
 * nnx_value_and_grad takes through them, are the unrolled model's.
 *
 * Ownership: *out is a module the caller owns. nnx_scan_call's *out is an owned value; the
 * stacked module's Variables that the method changed (BatchStat, Cache) are updated in place,
 * only after every layer ran.
 */
#ifndef LINNX_NNX_TRANSFORMS_H
#define LINNX_NNX_TRANSFORMS_H

#include <limits.h>

#include "linnx/autodiff.h"
#include "linnx/nnx.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

#define NNX_AXIS_BROADCAST INT_MIN

typedef struct nnx_state_axes {
    int n;
    const nnx_filter *filters;
    const int *axes;
} nnx_state_axes;

/* The stacked module: L copies of Type(*call, rngs=split) stacked per state_axes (NULL: all
 * on axis 0). partition_name may be NULL. */
lx_status nnx_vmap_create(const nnx_type *type, const lx_call *call, nnx_rngs *rngs, int64_t length,
                          const nnx_state_axes *state_axes, const char *partition_name, nnx_module **out);

/* The same over any constructor function (a ToNNX + lazy_init, a closure): ctor builds one copy
 * from the split Rngs it is given (borrowed; retain or fork it to keep it). */
typedef lx_status (*nnx_ctor_fn)(nnx_rngs *rngs, void *user, nnx_module **out);
lx_status nnx_vmap_create_fn(nnx_ctor_fn ctor, void *user, nnx_rngs *rngs, int64_t length,
                             const nnx_state_axes *state_axes, const char *partition_name, nnx_module **out);

/* nnx.scan over the layer axis: positional 0 of `call` is the carry, the other array
 * positionals are scanned on axis 0; layer i's method gets (carry, x_i...). The method returns
 * (carry, y) as a tuple tree {"0", "1"} (the result is (carry, ys), ys stacked on axis 0 leaf by
 * leaf: y may be an array, None or a tuple tree of those, the same structure from every layer) or
 * the carry alone (the result is the final carry). A failure leaves every Variable of the stack
 * as it was, the shared (NNX_AXIS_BROADCAST) ones included.
 * Errors: a NULL out is LX_ERR_INVALID_ARGUMENT naming the call; a NULL stacked module
 * LX_ERR_FAILED_INPUT (a pending failure keeps its text), as for every function here. */
lx_status nnx_scan_call(nnx_module *stacked, const char *method, const nnx_state_axes *state_axes,
                        const char *partition_name, const lx_call *call, lx_value *out);

/* nnx.remat(f, policy=...)(module, *args): call `method` (NULL: __call__) of m so that, while a
 * tape records, the call is one tape entry and its activations are recomputed in the backward
 * pass (lx_remat_call). The forward runs on m itself (Variables it changes stay changed); the
 * recomputation runs on a module merged from a snapshot of m's state at the call (the same
 * arrays, keys and counts), so gradients equal the plain call's. With no tape it is nnx_call. */
lx_status nnx_remat_call(nnx_module *m, const char *method, lx_remat_policy policy, const lx_call *call, lx_value *out);
/* nnx.scan(nnx.remat(layer)): nnx_scan_call with every layer's call rematerialised. */
lx_status nnx_scan_call_remat(nnx_module *stacked, const char *method, const nnx_state_axes *state_axes,
                              const char *partition_name, lx_remat_policy policy, const lx_call *call, lx_value *out);

/* One layer of a stacked module as its own module (Variables hold slices; gradients flow to
 * the stacked arrays). */
lx_status nnx_stack_slice(nnx_module *stacked, int64_t index, const nnx_state_axes *state_axes,
                          const char *partition_name, nnx_module **out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
