/* linnx/train.h - train states: Linen's flax.training.train_state.TrainState, NNX's
 * nnx.Optimizer, and shuffled minibatches (spec/training.md §B).
 *
 * Linen: a TrainState is a value. create() builds step 0 and tx.init(params);
 * apply_gradients(grads) returns a NEW state (step + 1, params after optax.apply_updates, the new
 * optimizer state) and leaves the old one as it was, as the Flax dataclass does; a failed call
 * changes nothing. linen_train_state_dict gives Flax's serialized layout {"step", "params",
 * "opt_state"} (apply_fn and tx are static and not serialized).
 *
 * NNX: nnx.Optimizer(model, tx, wrt=filter) keeps `step` (an OptState Variable holding a uint32
 * scalar) and `opt_state` (optax's state tree whose leaves are Variables: OptVariable for a
 * leaf that belongs to a param, carrying the param's metadata, OptArray for the rest, like
 * Flax's to_opt_state). update(model, grads) runs tx.update on the pure arrays of
 * nnx.state(model, wrt) and of the gradients (filtered by wrt), then writes the new params into
 * the model's own Variables (the Variable objects stay; every view of them sees the new arrays:
 * "one store, two views") and the new optimizer state into the opt_state Variables, and adds 1 to
 * step. Every check (tree structure, shapes, NaN checking when optax_set_debug_nans is on) runs
 * before anything is written: after a failed update the model and the optimizer are unchanged.
 *
 * Data: lx_batcher reproduces the Flax examples' epoch loop: perm = jax.random.permutation(key, n),
 * cut into n // batch_size batches (the remainder dropped unless keep_remainder), each batch the
 * rows x[perm[i*bs:(i+1)*bs]] of every array.
 *
 * Ownership: create/new functions give the caller an object to free with the matching *_free.
 * They take the optax_tx they are given (optax.h's rule for constructors); a TrainState retains
 * its params and opt_state trees, and states made by apply_gradients share the tx.
 * Accessors return borrowed pointers valid while the owner lives.
 */
#ifndef LINNX_TRAIN_H
#define LINNX_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/nnx.h"
#include "linnx/optax.h"
#include "linnx/random.h"
#include "linnx/tree.h"
#include "linnx/variable.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---------------------------------------------------------------- Linen TrainState */
typedef struct linen_train_state {
    int64_t step;          /* a Python int in Flax: 0, 1, 2, ... */
    const void *apply_fn;  /* static, not owned: e.g. the linen_module the params belong to */
    lx_tree *params;       /* owned reference */
    optax_tx *tx;          /* owned reference */
    lx_tree *opt_state;    /* owned reference */
} linen_train_state;

/* TrainState.create(apply_fn=, params=, tx=): params are retained (the caller keeps its
 * reference); tx is TAKEN, as optax constructors take theirs, so `optax_adam(...)` can be passed
 * on the spot (a NULL tx is LX_ERR_FAILED_INPUT; the message stays that of the pending failure
 * that produced it, status.h). With a '_overwrite_with_gradient'
 * collection in params only params['params'] is given to tx, as in Flax (no 'params' collection
 * beside it is LX_ERR_NOT_FOUND). *out is NULL after a failure. */
lx_status linen_train_state_create(const void *apply_fn, lx_tree *params, optax_tx *tx,
                                   linen_train_state **out);
/* state.apply_gradients(grads=grads): a new state; *out is the caller's to free. With a
 * '_overwrite_with_gradient' collection in grads the new params are {'params': updated
 * params['params'], '_overwrite_with_gradient': grads['_overwrite_with_gradient']}, as in Flax. */
lx_status linen_train_state_apply_gradients(const linen_train_state *s, const lx_tree *grads,
                                            linen_train_state **out);
/* state = state.apply_gradients(grads=grads) with the old state donated, as in a train step
 * under jax.jit(..., donate_argnums=0): on success *state is freed and replaced by the new state;
 * on failure it is left as it was. For adam / adamw over float32 params, when nothing else holds
 * the old params and optimizer state (no other reference to their trees or arrays), the new
 * moments and params are written over the old ones: one pass that reads and writes each array in
 * place instead of writing fresh ones (the same bits as apply_gradients). */
lx_status linen_train_state_apply_gradients_donated(linen_train_state **state, const lx_tree *grads);
void linen_train_state_free(linen_train_state *s);
/* flax.serialization.to_state_dict(state): {"step": int, "params": ..., "opt_state": ...}; the
 * trees are shared with the state, the map is new (caller releases it). */
lx_status linen_train_state_dict(const linen_train_state *s, lx_tree **out);

/* ---------------------------------------------------------------- nnx.Optimizer */
/* Flax's OptState <: Variable, OptArray <: OptState, OptVariable <: OptState. */
extern const lx_vartype lx_OptState, lx_OptArray, lx_OptVariable;

typedef struct nnx_optimizer nnx_optimizer;
/* nnx.Optimizer(model, tx, wrt=wrt): wrt NULL is Flax's TypeError "Missing required argument
 * `wrt`. ..." (LX_ERR_TYPE); a NULL tx as TrainState's. The filter (and what it points to) must outlive the optimizer. tx is TAKEN (also
 * when the call fails), like TrainState's. */
lx_status nnx_optimizer_new(nnx_module *model, optax_tx *tx, const nnx_filter *wrt, nnx_optimizer **out);
/* optimizer.update(model, grads): grads is a State (Variable or array leaves) with the paths of
 * nnx.state(model, wrt); gradients of Variables the filter does not select are ignored, as
 * nnx.state(grads, wrt) drops them. *updates (optional) receives optax's updates (owned). */
lx_status nnx_optimizer_update(nnx_optimizer *o, nnx_module *model, const lx_tree *grads, lx_tree **updates);
void nnx_optimizer_free(nnx_optimizer *o);
/* optimizer.step (borrowed OptState Variable, uint32 scalar) and step as a number. */
lx_variable *nnx_optimizer_step_var(const nnx_optimizer *o);
uint32_t nnx_optimizer_step(const nnx_optimizer *o);
/* optimizer.opt_state (borrowed tree of OptArray / OptVariable leaves, optax's layout). */
const lx_tree *nnx_optimizer_opt_state(const nnx_optimizer *o);
const optax_tx *nnx_optimizer_tx(const nnx_optimizer *o);
/* nnx.state(optimizer): {"opt_state": ..., "step": OptState} sharing the Variables (owned map). */
lx_status nnx_optimizer_state(const nnx_optimizer *o, lx_tree **out);
/* nnx.update(optimizer, state): values (Variable or array leaves) for existing paths only, shapes
 * and dtypes checked for every leaf before any is written (a checkpoint restore): a path the
 * optimizer lacks or another shape/dtype is LX_ERR_SHAPE, and nothing is written. */
lx_status nnx_optimizer_load_state(nnx_optimizer *o, const lx_tree *state);

/* ---------------------------------------------------------------- minibatches */
typedef struct lx_batcher {
    int64_t n, batch_size, nbatches, next;
    int32_t *perm; /* owned */
} lx_batcher;

/* n examples in batches of batch_size; before the first shuffle the order is 0..n-1. */
lx_status lx_batcher_init(lx_batcher *b, int64_t n, int64_t batch_size, bool keep_remainder);
/* Start an epoch in the order jax.random.permutation(key, n). */
lx_status lx_batcher_shuffle(lx_batcher *b, lx_key key);
/* The next batch: outs[i] = rows of arrays[i] (axis 0, every array has n rows) at the batch's
 * indices, pool-owned. Returns false at the end of the epoch (outs untouched) or on failure
 * (outs NULL, message set; lx_last_status() tells the two apart). Failures: a NULL or unmade b,
 * a negative narrays, NULL arrays or outs (LX_ERR_INVALID_ARGUMENT, "lx_batcher_next: b is
 * NULL", ...); a NULL arrays[i] (LX_ERR_FAILED_INPUT "lx_batcher_next: arrays[i] is NULL", or
 * the earlier failure it stands for while that one is pending: status.h); an array without n
 * rows (LX_ERR_SHAPE). */
bool lx_batcher_next(lx_batcher *b, int narrays, lx_array *const *arrays, lx_array **outs);
/* The indices of batch i of this epoch (borrowed, *len elements); NULL and *len 0 for a NULL or
 * unmade b or an i outside 0..nbatches-1 (LX_ERR_INVALID_ARGUMENT naming it). */
const int32_t *lx_batcher_indices(const lx_batcher *b, int64_t i, int64_t *len);
void lx_batcher_free(lx_batcher *b);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
