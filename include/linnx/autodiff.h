/* linnx/autodiff.h - reverse-mode automatic differentiation: a tape over the primitive table and
 * value_and_grad over arrays, Linen params trees and NNX module state.
 *
 * The tape (Wengert list). While a tape is active on a thread, every primitive (primitive.h) whose
 * float output depends on a *watched* array is recorded: its id, a copy of its typed params, its
 * inputs and its output (retained). Ops whose inputs are all constants, abstract results and
 * non-float outputs (comparisons, argmax, masks) are not recorded. lx_tape_backward walks the
 * records newest first, calls each primitive's VJP rule (with recording off), accumulates
 * cotangents where a value is used more than once (gradients of a shared weight add), and releases
 * each record's arrays as soon as it has been processed: after the pass the tape holds nothing.
 * With no tape active an op pays one thread-local check (the same one observers use).
 *
 * Ownership: lx_tape_new returns a tape the caller frees with lx_tape_free (which also ends it);
 * gradients written to caller arrays (`grads`) are references the caller owns (lx_release).
 * Trees returned through `lx_tree **` are owned by the caller (lx_tree_release).
 *
 * Semantics follow JAX: the gradient of a float input that does not influence the loss is zeros
 * (not an error); integer/bool inputs cannot be differentiated (an error naming the path, as
 * jax.grad's "grad requires real- or complex-valued inputs"); the loss must be a float32 scalar
 * ("Gradient only defined for scalar-output functions. Output had shape: (3,)."). A failing call
 * leaves the params, the module and its state as they were. One tape per thread at a time (no
 * higher-order gradients yet).
 */
#ifndef LINNX_AUTODIFF_H
#define LINNX_AUTODIFF_H

#include <stdbool.h>

#include "linnx/array.h"
#include "linnx/linen.h"
#include "linnx/nnx.h"
#include "linnx/tree.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---- the tape ---- */
typedef struct lx_tape lx_tape;

/* A new tape, active on this thread until lx_tape_stop/free. LX_ERR_INVALID_ARGUMENT when a tape
 * is already active on this thread. */
lx_status lx_tape_new(lx_tape **out);
/* Differentiate with respect to x (float32; retained by the tape). Ops recorded before the watch
 * do not see it. Watching an array twice is a no-op. */
lx_status lx_tape_watch(lx_tape *t, lx_array *x);
/* Stop recording (the records are kept for lx_tape_backward). */
void lx_tape_stop(lx_tape *t);
/* Cotangents of the scalar `y` (float32: a y with axes is LX_ERR_SHAPE, another dtype
 * LX_ERR_DTYPE, JAX's TypeErrors) with respect to xs[0..n): grads[i] is a new array of xs[i]'s shape
 * (zeros when y does not depend on it), owned by the caller. Consumes the records: activations are
 * released as the pass goes, and the tape is empty afterwards (it can record again after a new
 * watch). On failure every grads[i] is NULL. */
lx_status lx_tape_backward(lx_tape *t, lx_array *y, int n, lx_array *const *xs, lx_array **grads);
/* "This gradient is final": a callback lx_tape_backward makes (on its thread, with recording off)
 * for each watched array x as soon as no remaining record can add to its gradient, i.e. right
 * after its last consumer's VJP, so gradients arrive in backward order (the last layer's first)
 * while the rest of the pass is still to run. g is x's gradient (borrowed: valid during the call,
 * the same array lx_tape_backward then returns for x; not to be changed), or NULL when the output
 * does not depend on x (its gradient is zeros). Every watched array of the pass is reported once
 * when the pass succeeds (those no record consumes at its end); a failing pass may stop
 * reporting. Per thread, for every backward pass on it (linen_value_and_grad, nnx_value_and_grad
 * included) until cleared with fn = NULL. distributed.h uses it to start gradient all-reduces
 * during the backward pass. */
typedef void (*lx_grad_ready_fn)(void *user, const lx_array *x, const lx_array *g);
void lx_tape_set_grad_ready(lx_grad_ready_fn fn, void *user);

/* The number of records held (tests use it to show nothing is retained). */
size_t lx_tape_size(const lx_tape *t);
void lx_tape_free(lx_tape *t);
/* Whether a tape records on this thread now. */
bool lx_tape_active(void);

/* jax.lax.stop_gradient: x itself as a constant (a view sharing x's data); the tape sees no
 * dependence through it. Pool-owned; primitive "stop_gradient". */
lx_array *lx_stop_gradient(lx_array *x);

/* ---- remat (jax.checkpoint / nn.remat / nnx.remat) ----
 * lx_remat_call(fn, user, ...) runs fn(user, false, out) now. While a tape records, the call
 * becomes ONE tape entry instead of a record per op: it keeps the arrays the function read that
 * the tape differentiates through (parameters, incoming activations) and its outputs, and drops
 * everything computed inside (the activations are freed when the call returns). The backward
 * pass runs fn(user, true, out) again under an inner tape, differentiates it, and feeds the
 * inputs' cotangents back: the gradients equal the unrematerialised ones bit for bit when the
 * function is deterministic. With no tape recording, fn runs once and that is all.
 *
 * The recomputation (recompute == true) must read the same arrays and compute the same values
 * (same rng keys and counts), and change nothing outside (no variable writes): it is the
 * closure's job to have captured what it needs. It runs inside a module frame holding the path
 * that was current at the call (intercept.h), so its ops report the forward's paths although the
 * backward pass runs outside the module. Outputs: an array or a tuple tree of arrays
 * (the float arrays in it are the entry's outputs; others are constants).
 *
 * Policies (jax.checkpoint_policies): LX_REMAT_NOTHING_SAVEABLE keeps nothing inside;
 * LX_REMAT_DOTS_SAVEABLE keeps the outputs of the contractions (matmul, dot_general,
 * conv_general), which the recomputation takes back instead of recomputing them.
 *
 * Ownership: `user` belongs to linnx from the call on: user_free(user) (may be NULL) runs when the
 * tape entry is released (after the backward pass, or with the tape), or before the call
 * returns when no entry was made (no tape, no dependence on a watched array, or a failure).
 * *out is an owned value (lx_value_free). */
typedef enum lx_remat_policy { LX_REMAT_NOTHING_SAVEABLE = 0, LX_REMAT_DOTS_SAVEABLE = 1 } lx_remat_policy;
typedef lx_status (*lx_remat_fn)(void *user, bool recompute, lx_value *out);
lx_status lx_remat_call(lx_remat_fn fn, void *user, void (*user_free)(void *), lx_remat_policy policy, lx_value *out);
/* Whether the backward pass is re-running a remat call's forward on this thread now (fn called
 * with recompute == true). Interceptors that keep running statistics (QAT's moving activation
 * scales) read them then without updating them, so the recomputation sees the forward's values. */
bool lx_remat_recomputing(void);

/* jax_debug_nans-style checking (per thread, off by default): when on, a loss or gradient holding
 * NaN or Inf makes lx_value_and_grad / linen_value_and_grad / nnx_value_and_grad fail with
 * LX_ERR_INVALID_ARGUMENT naming the first bad leaf's path (or input index) and element; nothing is
 * returned and the params, module and state are as before the call. */
void lx_set_debug_nans(bool on);
bool lx_debug_nans(void);

/* ---- value_and_grad over arrays (jax.value_and_grad with argnums = all) ----
 * fn computes the loss from xs and writes it (a float32 scalar, pool-owned or retained: linnx
 * retains it) to *loss; `user` is passed through (has_aux: write the aux into your user struct).
 * *value receives the loss (caller owns), grads[i] the gradient for xs[i] (caller owns). A loss
 * that is not a float32 scalar fails as lx_tape_backward says (SHAPE / DTYPE); a non-float32
 * input is LX_ERR_DTYPE; so for linen_value_and_grad and nnx_value_and_grad below. */
typedef lx_status (*lx_loss_fn)(int n, lx_array *const *xs, void *user, lx_array **loss);
lx_status lx_value_and_grad(lx_loss_fn fn, void *user, int n, lx_array *const *xs, lx_array **value,
                            lx_array **grads);

/* ---- Linen: jax.value_and_grad(loss_fn, has_aux=True)(params) around linen_apply ----
 * `params` is the tree being differentiated (the 'params' collection, or any tree of float arrays
 * and boxes). fn receives it (the same leaves, watched) and computes the loss, typically
 * linen_apply(module, {'params': params, 'batch_stats': ...}, ...) then a loss; other collections
 * it reads are constants. Whatever fn writes to *aux (a tree it owns, e.g. the mutated
 * batch_stats from linen_apply) is handed to the caller through *aux (NULL when the caller passes
 * aux == NULL: then it is released).
 * *grads: a tree with exactly params' paths and structure; a leaf that is a box (Partitioned,
 * LogicallyPartitioned, NNXMeta) comes back as the same kind of box holding the gradient, with the
 * same names/metadata (as JAX pytrees do); a Variable leaf comes back as a Variable of its type.
 * A non-float leaf is an error naming its path (LX_ERR_DTYPE) and nothing is returned. */
typedef lx_status (*linen_loss_fn)(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux);
lx_status linen_value_and_grad(linen_loss_fn fn, void *user, const lx_tree *params, lx_array **value,
                               lx_tree **grads, lx_tree **aux);

/* ---- NNX: nnx.value_and_grad(loss_fn, argnums=0 / DiffState(0, filter))(model) ----
 * Differentiates w.r.t. the model's Variables matching `wrt` (NULL: nnx.Param and its subclasses,
 * e.g. NNX_OF_TYPE(&lx_LoRAParam) for LoRA only). fn runs the model (in place: Variables it
 * changes, such as BatchNorm statistics and Rngs counts, stay changed, i.e. are written back as
 * nnx.value_and_grad does). *grads is a State with exactly the paths of
 * nnx_state(model, 1, wrt), each leaf a Variable of the original type holding the gradient.
 * When fn or the differentiation fails, every Variable of the model is restored to the value it
 * had before the call. */
typedef lx_status (*nnx_loss_fn)(nnx_module *model, void *user, lx_array **loss);
lx_status nnx_value_and_grad(nnx_module *model, const nnx_filter *wrt, nnx_loss_fn fn, void *user,
                             lx_array **value, lx_tree **grads);
/* nnx.grad: the same without the value. */
lx_status nnx_grad(nnx_module *model, const nnx_filter *wrt, nnx_loss_fn fn, void *user, lx_tree **grads);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
