/* linnx/ops.h - elementwise, reduction and shape ops (jax.numpy / jax.nn names).
 *
 * Every op:
 *  - takes `lx_array *` inputs it never steals and returns a result owned by the innermost pool
 *    (array.h); lx_retain a result to keep it past lx_pool_close;
 *  - returns NULL with a message naming the op and the shapes ("add: operands could not be
 *    broadcast together with shapes (2, 3) (4,)") when shapes or dtypes do not fit
 *    (LX_ERR_SHAPE; LX_ERR_DTYPE for a dtype the op does not take or operands of two dtypes; an
 *    axis out of range is LX_ERR_SHAPE too);
 *  - returns NULL without touching the message when an input is NULL while a failure is pending,
 *    so a chain `lx_exp(lx_add(a, bad))` fails once and reports the first failure; a NULL met
 *    with nothing pending is reported as itself, LX_ERR_FAILED_INPUT "exp: input is NULL"
 *    (status.h);
 *  - returns an abstract result of the right shape and dtype, computing nothing, when any input
 *    is abstract (shape inference, nnx.eval_shape);
 *  - reports itself to primitive observers (primitive.h) by the name in the table of
 *    docs/ops.md, with its attributes (axes, keepdims, ...) as keyword values.
 *
 * Dtypes: f32 everywhere; i32/u32 for the integer-safe ops (integer arithmetic wraps like XLA's,
 * never signed overflow); bool from comparisons and for where/cast. Binary ops need operands of
 * one dtype (no implicit promotion: lx_cast first). Ops that are only defined on floats (exp,
 * div, mean, ...) reject integers with LX_ERR_DTYPE rather than promoting as jax.numpy does.
 */
#ifndef LINNX_OPS_H
#define LINNX_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/array.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* A tuple of ints on the spot: lx_sum(x, LX_AXES(0, -1), false), lx_reshape(x, LX_SHAPE(2, -1)).
 * Expands to two arguments: the count and a pointer. */
#define LX_AXES(...)                                                                     \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#define LX_SHAPE(...) LX_AXES(__VA_ARGS__)
/* axis=None: reduce over every axis. */
#define LX_ALL_AXES 0, NULL

/* ---- scalars ---- */
/* A pool-owned f32 scalar (shape ()). */
lx_array *lx_scalar(float v);
/* A pool-owned i32 scalar. */
lx_array *lx_scalar_i32(int32_t v);

/* ---- elementwise unary (f32 unless noted) ---- */
lx_array *lx_neg(lx_array *x);     /* f32, i32 */
lx_array *lx_abs(lx_array *x);     /* f32, i32 */
lx_array *lx_square(lx_array *x);  /* f32, i32, u32 */
lx_array *lx_exp(lx_array *x);
lx_array *lx_log(lx_array *x);
lx_array *lx_log1p(lx_array *x);
lx_array *lx_sqrt(lx_array *x);
lx_array *lx_rsqrt(lx_array *x);
lx_array *lx_tanh(lx_array *x);
lx_array *lx_sigmoid(lx_array *x);
lx_array *lx_relu(lx_array *x);
/* jax.nn.gelu: approximate=true (Flax's default) is the tanh form, false the exact erf form. */
lx_array *lx_gelu(lx_array *x, bool approximate);
lx_array *lx_silu(lx_array *x);
lx_array *lx_softplus(lx_array *x); /* log(1 + exp(x)), stable for large |x| */
/* jnp.clip(x, lo, hi): min(max(x, lo), hi), the minimum last, so lo > hi gives hi everywhere;
 * NaN stays NaN, and a NaN bound gives NaN everywhere (max/min propagate NaN). */
lx_array *lx_clip(lx_array *x, float lo, float hi);
/* x.astype(dtype) between f32, i32, u32, bool, bf16 and int8. Float to int truncates toward zero
 * and saturates (NaN -> 0), as XLA converts (300.0 -> int8 127); int to int wraps modulo 2^bits
 * like numpy and XLA (int32 300 -> int8 44, int8 -1 -> uint32 4294967295); bf16 rounds to
 * nearest even; to bool is x != 0. A dtype outside the enum is LX_ERR_DTYPE. */
lx_array *lx_cast(lx_array *x, lx_dtype dtype);

/* ---- elementwise binary, numpy broadcasting ---- */
lx_array *lx_add(lx_array *a, lx_array *b);     /* f32, i32, u32 */
lx_array *lx_sub(lx_array *a, lx_array *b);     /* f32, i32, u32 */
lx_array *lx_mul(lx_array *a, lx_array *b);     /* f32, i32, u32 */
lx_array *lx_div(lx_array *a, lx_array *b);     /* f32 (true division) */
lx_array *lx_pow(lx_array *a, lx_array *b);     /* f32 */
lx_array *lx_maximum(lx_array *a, lx_array *b); /* f32, i32, u32; NaN propagates */
lx_array *lx_minimum(lx_array *a, lx_array *b); /* f32, i32, u32; NaN propagates */
/* Comparisons: f32, i32, u32, bool operands; the result is bool. */
lx_array *lx_eq(lx_array *a, lx_array *b);
lx_array *lx_ne(lx_array *a, lx_array *b);
lx_array *lx_lt(lx_array *a, lx_array *b);
lx_array *lx_le(lx_array *a, lx_array *b);
lx_array *lx_gt(lx_array *a, lx_array *b);
lx_array *lx_ge(lx_array *a, lx_array *b);
/* jnp.where(cond, a, b): cond is bool, a and b share a dtype; three-way broadcasting. */
lx_array *lx_where(lx_array *cond, lx_array *a, lx_array *b);
/* x + v and x * v for an f32 x (the same primitives as lx_add / lx_mul with a scalar operand). */
lx_array *lx_add_scalar(lx_array *x, float v);
lx_array *lx_mul_scalar(lx_array *x, float v);

/* ---- reductions ----
 * `axes` lists `naxes` axes (negative counts from the end); axes == NULL means every axis
 * (axis=None). Duplicate or out-of-range axes are errors. keepdims keeps reduced axes as size 1.
 * sum/max/min take f32, i32, u32 (integer sums wrap); mean/var/logsumexp take f32. Sums
 * accumulate in double. max/min of a zero-size reduction is an error (no identity), as in
 * numpy; mean/var of one is NaN, logsumexp of one is -inf. */
lx_array *lx_sum(lx_array *x, int naxes, const int64_t *axes, bool keepdims);
lx_array *lx_mean(lx_array *x, int naxes, const int64_t *axes, bool keepdims);
lx_array *lx_max(lx_array *x, int naxes, const int64_t *axes, bool keepdims);
lx_array *lx_min(lx_array *x, int naxes, const int64_t *axes, bool keepdims);
/* Population variance (ddof = 0), like jnp.var. */
lx_array *lx_var(lx_array *x, int naxes, const int64_t *axes, bool keepdims);
/* log(sum(exp(x))) computed as m + log(sum(exp(x - m))) with m the max (0 where m is infinite). */
lx_array *lx_logsumexp(lx_array *x, int naxes, const int64_t *axes, bool keepdims);
/* Index of the first maximum along one axis, int32 (f32, i32, u32 input; the first NaN wins). */
lx_array *lx_argmax(lx_array *x, int64_t axis, bool keepdims);

/* ---- shape ---- */
/* x.reshape(shape), one -1 inferred. The result is a VIEW: it shares x's data (and keeps it
 * alive), so writing through one shows in the other. Same for expand_dims and squeeze. */
lx_array *lx_reshape(lx_array *x, int ndim, const int64_t *shape);
/* jnp.transpose(x, axes): `perm` is a permutation of x's axes (negative allowed); perm == NULL
 * reverses them (numpy's default). Copies. */
lx_array *lx_transpose(lx_array *x, int nperm, const int64_t *perm);
/* Insert a size-1 axis at `axis` (in -(ndim+1)..ndim). A view. */
lx_array *lx_expand_dims(lx_array *x, int64_t axis);
/* Drop the given size-1 axes (axes == NULL: every size-1 axis). A view. */
lx_array *lx_squeeze(lx_array *x, int naxes, const int64_t *axes);
/* jnp.broadcast_to: a copy with the given shape. */
lx_array *lx_broadcast_to(lx_array *x, int ndim, const int64_t *shape);

/* One axis of a basic slice, Python's start:stop:step. LX_NIL is None (an open end); negative
 * start/stop count from the end and out-of-range ends are clipped, as in Python. step != 0. */
#define LX_NIL INT64_MIN
typedef struct lx_range {
    int64_t start, stop, step;
} lx_range;
#define LX_RANGE(start_, stop_) ((lx_range){(start_), (stop_), 1})
#define LX_RANGE_STEP(start_, stop_, step_) ((lx_range){(start_), (stop_), (step_)})
#define LX_RANGE_ALL ((lx_range){LX_NIL, LX_NIL, 1})
/* x[r0, r1, ...]: `nranges` <= ndim ranges, the remaining axes taken whole. Copies. */
lx_array *lx_slice(lx_array *x, int nranges, const lx_range *ranges);

/* jnp.concatenate(xs, axis): one dtype, shapes equal except along axis. */
lx_array *lx_concatenate(int n, lx_array *const *xs, int64_t axis);
/* jnp.stack(xs, axis): n arrays of one shape and dtype along a new axis. */
lx_array *lx_stack(int n, lx_array *const *xs, int64_t axis);
/* jnp.split(x, nsections, axis): `outs` receives nsections pool-owned arrays of equal size
 * along axis. On failure every outs[i] is NULL. Observers see one "split" event per piece. */
lx_status lx_split(lx_array *x, int64_t nsections, int64_t axis, lx_array **outs);
/* jnp.split(x, indices, axis): `outs` receives nindices + 1 pieces, x[:i0], x[i0:i1], ...,
 * x[i_last:], with Python slice semantics for the indices (clipped, possibly empty). */
lx_status lx_split_at(lx_array *x, int nindices, const int64_t *indices, int64_t axis,
                      lx_array **outs);
/* jnp.pad(x, [(before_i, after_i)...], constant_values=value): before/after have x->ndim
 * non-negative entries; value is converted to x's dtype by lx_cast's rules (any dtype). */
lx_array *lx_pad(lx_array *x, const int64_t *before, const int64_t *after, float value);
/* jnp.take(a, indices, axis): i32 indices; result shape a.shape[:axis] + indices.shape +
 * a.shape[axis+1:]. Negative indices count from the end; an index out of range is an error
 * (numpy's behaviour; jax.numpy would fill with NaN instead). */
lx_array *lx_take(lx_array *a, lx_array *indices, int64_t axis);
/* jax.nn.one_hot(labels, num_classes): i32 labels -> f32 of shape labels.shape + (num_classes,);
 * a label outside 0..num_classes-1 gives an all-zero row, as in JAX. */
lx_array *lx_one_hot(lx_array *labels, int64_t num_classes);


/* ---- collectives ---- */
/* jax.lax.pmean(x, axis_name): the mean of the float32 array x over the processes of the named
 * mesh axis, as a differentiable primitive ("pmean"): its VJP is the pmean of the cotangent (JAX's
 * transpose of pmean), an all-reduce inside the backward pass. The communication is a hook that
 * the distributed engine installs (lx_dist_init, distributed.h: over MPI, axis 'data'); with no
 * hook (one process, no lx_dist_init, a build without MPI) the mean over the one process is x
 * itself (a copy) and the VJP passes the cotangent through. Every process must bind it at the same
 * point (a collective). axis_name: non-empty, under LX_AXIS_NAME_MAX (primitive.h) bytes.
 * Pool-owned; NULL on failure (a failing hook's error). lx_dist_pmean checks the axis name first. */
lx_array *lx_pmean(lx_array *x, const char *axis_name);
/* The hook: average n floats in place over the processes of axis_name (the same call on every
 * process); LX_OK or a failure recorded with lx_fail. Process-wide; NULL removes it. */
typedef lx_status (*lx_pmean_hook_fn)(const char *axis_name, float *buf, int64_t n);
void lx_set_pmean_hook(lx_pmean_hook_fn fn);
lx_pmean_hook_fn lx_get_pmean_hook(void);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
