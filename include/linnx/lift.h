/* linnx/lift.h - Linen lifted transforms: nn.vmap and nn.scan over a module, and stacked-layer
 * utilities (a scanned params tree <-> layers_0, layers_1, ...).
 *
 *   linen_lift_opts o = {
 *       .variable_axes = LINEN_VAR_AXES({"params", 1}, {"cache", 0}),
 *       .split_rngs = LINEN_NAMES("params", "dropout"),
 *       .length = 4, .partition_name = "layers"};
 *   linen_module *stack = NULL;
 *   linen_scan(block, &o, &stack);            // a module named ScanBlock (auto-name ScanBlock_0)
 *   linen_call_child(self, stack, "layers", NULL, &LX_CALL_ARGS(lx_array_v(x)), &out);
 *
 * How it runs: the body runs once per slice of the mapped axis (slicing the inputs and the
 * stacked variables, stacking the outputs and the variables made or changed), a loop rather
 * than batching rules, so every op (and its gradient) is the unrolled model's. The lifted
 * module's scope is transparent: `nn.scan(Block)` bound as `layers` keeps
 * params/layers/Dense_0/kernel, with the stacked axis inserted where variable_axes says.
 *
 * Keys (spec/jax-random.md §6.2): a stream in split_rngs gives copy i the key
 * split(K, length)[i] (K the key the enclosing frame holds for that stream), with the path
 * hashing unchanged; other streams give every copy K. The lifted scope shares its rng counters
 * with the body: vmap draws from the counts the body would use once; scan (as Flax's default
 * check_constancy_invariants=True, which traces the body twice) starts the body's counts past
 * one trace's draws, so a scanned Dense's kernel takes count 3 and its bias 4.
 *
 * Collections: one in variable_axes is stacked on that axis (any axis; negative counts from
 * the end of the stacked shape). One in variable_broadcast / variable_carry, or in neither
 * list, is shared by the copies: each copy sees what the one before left (carry semantics), and
 * the last state is kept. partition_name (Flax's metadata_params={PARTITION_NAME: name}) is
 * removed from Partitioned / LogicallyPartitioned / NNXMeta names on the way in (remove_axis)
 * and inserted on the way out (add_axis) at the collection's axis.
 *
 * Calls: vmap maps every positional array on its in_axes entry (0 when the list is shorter;
 * LINEN_AXIS_BROADCAST passes it whole) and stacks every array of the result (an array or a
 * tuple tree {"0": ..., "1": ...}) on out_axes. scan takes the carry as positional 0 and maps
 * positionals 1.. on in_axes (in_axes[0] is for positional 1); the body returns the tuple
 * (carry, y) and the scan returns (carry, ys) with ys stacked on out_axes (a None y stays None).
 * A body returning a bare array is taken as returning the carry alone; the scan returns the
 * final carry then. Keyword arguments are broadcast.
 *
 * Errors name the module path, the variable and the shapes: mapped inputs of different sizes, a
 * carry that changes shape or dtype, a variable_axes axis a variable lacks, a stacked variable
 * whose size on the axis is not the length (each LX_ERR_SHAPE), a split stream that does not
 * exist at init (LX_ERR_RNG). A failing call writes nothing to the variables tree.
 *
 * split_rngs naming a stream that the apply was not given is ignored outside init, as in Flax
 * (apply usually has no 'params' stream); at init it is an error.
 *
 * Ownership: linen_vmap / linen_scan return a module the caller owns (linen_module_release);
 * it holds its own copy of the options and a reference to the target. The stack utilities
 * return trees the caller owns; leaves are new arrays (stack) or views/copies (unstack).
 */
#ifndef LINNX_LIFT_H
#define LINNX_LIFT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "linnx/autodiff.h"
#include "linnx/linen.h"
#include "linnx/tree.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

#define LINEN_AXIS_BROADCAST INT_MIN /* in_axes entry None */

typedef struct linen_var_axis {
    const char *collection;
    int axis;
} linen_var_axis;

typedef struct linen_var_axes {
    int n;
    const linen_var_axis *v;
} linen_var_axes;
typedef struct linen_names {
    int n;
    const char *const *v;
} linen_names;
typedef struct linen_axes {
    int n;
    const int *v;
} linen_axes;

#define LINEN_VAR_AXES(...)                                                                       \
    ((linen_var_axes){(int)(sizeof((linen_var_axis[]){__VA_ARGS__}) / sizeof(linen_var_axis)),    \
                      (const linen_var_axis[]){__VA_ARGS__}})
#define LINEN_NAMES(...)                                                                          \
    ((linen_names){(int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),          \
                   (const char *const[]){__VA_ARGS__}})
#define LINEN_AXES(...) \
    ((linen_axes){(int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (const int[]){__VA_ARGS__}})

typedef struct linen_lift_opts {
    linen_var_axes variable_axes;
    linen_names split_rngs;
    linen_names variable_broadcast;
    linen_names variable_carry;
    linen_axes in_axes;
    int out_axes;              /* 0 by default */
    int64_t length;            /* axis_size / length; 0: from the mapped inputs */
    const char *partition_name; /* metadata_params={PARTITION_NAME: ...}; NULL: none */
    bool no_constancy_check;    /* scan's check_constancy_invariants=False */
    int unroll;                 /* accepted for parity; the loop runs slice by slice anyway */
} linen_lift_opts;

/* nn.vmap(target, ...) / nn.scan(target, ...) as a module: type name "Vmap<T>" / "Scan<T>". */
lx_status linen_vmap(const linen_module *target, const linen_lift_opts *opts, linen_module **out);
lx_status linen_scan(const linen_module *target, const linen_lift_opts *opts, linen_module **out);
/* The same with Flax's name=... */
lx_status linen_vmap_named(const linen_module *target, const linen_lift_opts *opts, const char *name,
                           linen_module **out);
lx_status linen_scan_named(const linen_module *target, const linen_lift_opts *opts, const char *name,
                           linen_module **out);

/* nn.remat(target, policy=...) / nn.checkpoint: a module "Checkpoint<T>" (auto-name
 * CheckpointBlock_0) whose calls are recomputed in the backward pass instead of kept
 * (lx_remat_call in autodiff.h: one tape entry holding the call's inputs, or with
 * LX_REMAT_DOTS_SAVEABLE also its contraction outputs). Its scope is transparent:
 * nn.remat(Block) bound as `block` keeps params/block/Dense_0/kernel, and the keys, counts and
 * variables are those of the plain module, so init gives the same parameters and apply the same
 * values and gradients. Mutable collections (batch_stats, intermediates) are written by the
 * forward only. Compose with scan as Flax does: linen_scan(remat_of_block, ...). The module
 * holds a reference to the target; the caller owns *out. */
lx_status linen_remat(const linen_module *target, lx_remat_policy policy, linen_module **out);
lx_status linen_remat_named(const linen_module *target, lx_remat_policy policy, const char *name,
                            linen_module **out);
#define linen_checkpoint linen_remat

/* ---- stacked <-> unrolled layouts (MaxText #4369) ----
 * Unstack: in every collection, every leaf under `prefix` (a path inside the collection, such
 * as "decoder/layers") is split along its stacked axis into prefix_0, prefix_1, ...
 * (params/decoder/layers -> params/decoder/layers_0, params/decoder/layers_1, ...);
 * `axes` gives the axis per collection (params at 1 and the rest at 0 for MaxText), a
 * collection not listed uses axis 0. Boxes keep their metadata; with partition_name their
 * names lose it (remove_axis). Stack is the inverse: prefix_0 .. prefix_{n-1} must exist with
 * equal structure and shapes; a prefix_<i> after a gap (layers_0, layers_1, layers_3) is
 * LX_ERR_INVALID_ARGUMENT naming it. Other entries of the tree are kept as they are.
 * Errors of every function here: a NULL out is LX_ERR_INVALID_ARGUMENT naming the call (even
 * with a failure pending); a NULL target / variables is LX_ERR_FAILED_INPUT, keeping a pending
 * failure's text (status.h). */
lx_status linen_unstack_layers(const lx_tree *variables, const char *prefix, linen_var_axes axes,
                               const char *partition_name, lx_tree **out);
lx_status linen_stack_layers(const lx_tree *variables, const char *prefix, linen_var_axes axes,
                             const char *partition_name, lx_tree **out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
