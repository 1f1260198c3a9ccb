/* linnx/primitive.h - ops as primitives: one table, one bind, observers and substituters.
 *
 * Every op in ops.h / linalg.h / nn.h / dropout.h is a *primitive*: an entry of a table indexed by
 * `lx_prim_id` (ggml's `enum ggml_op`), with a name ("matmul", "add", "conv_general"), a typed
 * plain-data parameter struct (below: one per family, no kwargs), a shape/dtype rule (`rule`), the
 * forward kernel (`forward`), a backward rule (`vjp`, the reverse-mode tape's rule, autodiff.h)
 * and a batching-rule slot for vmap/scan (`batch`, the layer-stacking work).
 *
 * The public builders (lx_add, lx_conv_general, ...) keep their signatures and are thin: each
 * turns its arguments into the typed params and calls ONE function, lx_bind(prim, params, inputs),
 * which does in one place, in this order:
 *  1. failed-input propagation: a NULL required input returns NULL and keeps the first failure's
 *     message ("<op>: input is NULL" only when no failure is pending, status.h);
 *  2. the shape/dtype rule: checks dtypes and shapes, normalises the params (negative axes,
 *     SAME padding, ...) and computes the result's shape and dtype with checked arithmetic
 *     (an overflowing size is LX_ERR_SHAPE naming the op, never a wrapped shape);
 *  3. substituters (below), before anything computes: they may replace inputs or the result;
 *  4. abstract inputs (lx_array_abstract, nnx.eval_shape): an abstract result of the rule's shape
 *     and dtype, nothing computed and nothing recorded on a tape (observers still see it);
 *  5. the result, owned by the innermost pool, filled by the `forward` kernel;
 *  6. tape recording (autodiff.h) and the observer event, from the normalised params;
 *  7. errors: every failure goes through lx_fail, which puts the running module path in front
 *     ("ToLinen_0/l1: dot_general: ..."); and after a failure that was handled (status.h: no
 *     longer pending) a successful bind clears the stale message, so lx_last_error() is "".
 *
 * Cost when nothing listens: a params copy, the rule, and one thread-local load per listener
 * kind (no tape, no observer, no substituter).
 *
 * Ownership: events and everything they point to are borrowed for the duration of the callback;
 * an observer that keeps an array retains it. `params` point at the op's typed struct.
 */
#ifndef LINNX_PRIMITIVE_H
#define LINNX_PRIMITIVE_H

#include <stdbool.h>
#include <stddef.h>

#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/value.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---- the table ---- */
#define LX_PRIM_LIST(X)                                                                            \
    X(NEG, "neg") X(ABS, "abs") X(SQUARE, "square") X(EXP, "exp") X(LOG, "log") X(LOG1P, "log1p")   \
    X(SQRT, "sqrt") X(RSQRT, "rsqrt") X(TANH, "tanh") X(SIGMOID, "sigmoid") X(RELU, "relu")         \
    X(GELU, "gelu") X(SILU, "silu") X(SOFTPLUS, "softplus") X(CLIP, "clip") X(CAST, "cast")         \
    X(STOP_GRADIENT, "stop_gradient")                                                              \
    X(ADD, "add") X(SUB, "sub") X(MUL, "mul") X(DIV, "div") X(POW, "pow") X(MAXIMUM, "maximum")     \
    X(MINIMUM, "minimum") X(EQ, "eq") X(NE, "ne") X(LT, "lt") X(LE, "le") X(GT, "gt") X(GE, "ge")   \
    X(WHERE, "where")                                                                              \
    X(SUM, "sum") X(MEAN, "mean") X(MAX, "max") X(MIN, "min") X(VAR, "var")                         \
    X(LOGSUMEXP, "logsumexp") X(ARGMAX, "argmax")                                                  \
    X(RESHAPE, "reshape") X(TRANSPOSE, "transpose") X(EXPAND_DIMS, "expand_dims")                  \
    X(SQUEEZE, "squeeze") X(BROADCAST_TO, "broadcast_to") X(SLICE, "slice")                        \
    X(CONCATENATE, "concatenate") X(STACK, "stack") X(SPLIT, "split") X(PAD, "pad")                \
    X(TAKE, "take") X(ONE_HOT, "one_hot")                                                          \
    X(MATMUL, "matmul") X(DOT_GENERAL, "dot_general")                                              \
    X(SOFTMAX, "softmax") X(LOG_SOFTMAX, "log_softmax") X(LAYER_NORM, "layer_norm")                \
    X(RMS_NORM, "rms_norm") X(CONV_GENERAL, "conv_general") X(AVG_POOL, "avg_pool")                \
    X(MAX_POOL, "max_pool") X(SOFTMAX_CROSS_ENTROPY_INT, "softmax_cross_entropy_int")              \
    X(DOT_PRODUCT_ATTENTION, "dot_product_attention")                                              \
    X(DOT_PRODUCT_ATTENTION_WEIGHTS, "dot_product_attention_weights")                              \
    X(MAKE_CAUSAL_MASK, "make_causal_mask") X(DROPOUT, "dropout") X(DROPOUT_APPLY, "dropout_apply")   \
    X(PMEAN, "pmean") X(DENSE, "dense")

typedef enum lx_prim_id {
#define LX_PRIM_ENUM_(id, name) LX_PRIM_##id,
    LX_PRIM_LIST(LX_PRIM_ENUM_)
#undef LX_PRIM_ENUM_
    LX_PRIM_COUNT
} lx_prim_id;

/* ---- typed parameters (plain data; axes normalised to non-negative) ----
 * Ops without parameters (neg, add, matmul, where, softmax_cross_entropy_int, ...) pass NULL. */
typedef struct lx_gelu_params { bool approximate; } lx_gelu_params;
/* clip: min(max(x, lo), hi). Its gradient is jnp.clip's (1/2 at x == lo and at x == hi, the
 * max/min ties) unless zero_grad_at_bounds, which gives 0 there (jax.nn.relu6's custom_jvp,
 * select((x > lo) & (x < hi), g, 0)). An int, not a bool: the struct has no padding bytes. */
typedef struct lx_clip_params {
    float lo, hi;
    int32_t zero_grad_at_bounds;
} lx_clip_params;
typedef struct lx_cast_params { lx_dtype dtype; } lx_cast_params;
/* sum/mean/max/min/var/logsumexp/argmax: the reduced axes (all of them for axis=None). */
typedef struct lx_reduce_params {
    int naxes;
    int64_t axes[LX_MAX_DIMS];
    bool keepdims;
} lx_reduce_params;
/* reshape/broadcast_to: the result shape; transpose: perm (ndim entries); squeeze: the dropped
 * axes; expand_dims/concatenate/stack/take/softmax/log_softmax: `axis` alone. */
typedef struct lx_shape_params {
    int ndim;
    int64_t dims[LX_MAX_DIMS];
    int64_t axis;
} lx_shape_params;
/* slice: per axis of x (every axis, normalised): the first index, the step, the count. */
typedef struct lx_slice_params {
    int ndim;
    int64_t start[LX_MAX_DIMS], step[LX_MAX_DIMS], len[LX_MAX_DIMS];
    int64_t stop[LX_MAX_DIMS]; /* the clamped stop of Python's slice.indices (observers' "stop") */
} lx_slice_params;
/* One piece of split: x[..., start:stop, ...] along axis; index is the piece number. */
typedef struct lx_split_params { int64_t axis, start, stop, index; } lx_split_params;
typedef struct lx_pad_params {
    int ndim;
    int64_t before[LX_MAX_DIMS], after[LX_MAX_DIMS];
    float value;
} lx_pad_params;
typedef struct lx_one_hot_params { int64_t num_classes; } lx_one_hot_params;
typedef struct lx_dot_general_params {
    int ncontract, nbatch;
    int64_t lhs_contract[LX_MAX_DIMS], rhs_contract[LX_MAX_DIMS];
    int64_t lhs_batch[LX_MAX_DIMS], rhs_batch[LX_MAX_DIMS];
} lx_dot_general_params;
/* layer_norm: the normalised (trailing) axes; rms_norm: the last axis. */
typedef struct lx_norm_params {
    float epsilon;
    int naxes;
    int64_t axes[LX_MAX_DIMS];
} lx_norm_params;
/* conv_general: lx_conv_params (nn.h) resolved: every field set, padding EXPLICIT. */
/* avg_pool / max_pool with the window geometry resolved (explicit pads). */
typedef struct lx_pool_params {
    int nwin;
    int64_t window[LX_MAX_DIMS], strides[LX_MAX_DIMS], lo[LX_MAX_DIMS], hi[LX_MAX_DIMS];
    bool count_include_pad;
    /* Builders only: true while `mode` (VALID, SAME, ...) is still to be resolved against x's
     * shape into lo/hi (lo/hi read only for EXPLICIT); the rule resolves it and clears the flag,
     * so recorded params are always explicit. */
    bool resolve;
    lx_pad_mode mode;
} lx_pool_params;
/* dot_product_attention(_weights): scale as applied (1/sqrt(d) for Flax's default). flax_scaling
 * is true when q was divided by sqrt(d) before the product (scale 0 given). */
typedef struct lx_attention_params {
    bool causal, flax_scaling;
    float scale;
} lx_attention_params;
typedef struct lx_dropout_params { double rate; } lx_dropout_params;
/* pmean (ops.h lx_pmean): the named mesh axis the mean runs over ("data"); non-empty. */
#define LX_AXIS_NAME_MAX 32
typedef struct lx_pmean_params { char axis_name[LX_AXIS_NAME_MAX]; } lx_pmean_params;

/* dense (linalg.h lx_dense): inputs x (..., K), kernel (K, N), bias (N,) or NULL; the activation
 * applied after the bias. */
typedef struct lx_dense_params { lx_activation act; } lx_dense_params;

/* ---- descriptors ---- */
/* What a shape rule computes: the result's dtype and shape (jax's ShapedArray). */
typedef struct lx_prim_aval {
    lx_dtype dtype;
    int ndim;
    int64_t shape[LX_MAX_DIMS];
} lx_prim_aval;
/* The shape/dtype rule: checks the (non-NULL, possibly abstract) inputs, normalises `params` in
 * place (bind's own copy: axes made non-negative, defaults filled in) and writes the result's
 * aval. Every size product or sum goes through the checked helpers (core/checked.h). Errors are
 * lx_fail(LX_ERR_SHAPE / LX_ERR_DTYPE, "<op>: ...") with the texts the builders always had. */
typedef lx_status (*lx_prim_rule_fn)(lx_prim_id id, void *params, int nin, lx_array *const *inputs,
                                     lx_prim_aval *out);
/* The forward kernel on concrete inputs, given the normalised params: fills *out (allocated by
 * bind from the aval, pool-owned; a LX_PRIM_VIEW primitive sets *out itself, to a pool-owned
 * array of the aval's shape). A fused op may set *saved (pool-owned) to what its backward needs
 * (layer_norm's mean/rstd): the tape keeps it as an extra input. */
typedef lx_status (*lx_prim_forward_fn)(lx_prim_id id, const void *params, int nin, lx_array *const *inputs,
                                        lx_array **out, lx_array **saved);
/* The observer attributes of an op (names and values as Flax/lax spell them) from its normalised
 * params: writes at most LX_PRIM_MAX_ATTRS entries to attrs, may point into params or into
 * `scratch` (64 int64), returns the count. */
#define LX_PRIM_MAX_ATTRS 8
typedef int (*lx_prim_attrs_fn)(lx_prim_id id, const void *params, int nin, lx_array *const *inputs,
                                lx_kwarg *attrs, int64_t *scratch);
/* Kept for layout: every entry is bound through `rule`/`forward`, so `apply` is NULL (lx_bind
 * is what runs a primitive again from its params). */
typedef lx_array *(*lx_prim_apply_fn)(const void *params, int nin, lx_array *const *inputs);
/* The reverse-mode rule: given the inputs, the output and the output's cotangent `ct` (shape and
 * dtype of `out`), write each input's cotangent (the input's shape; pool-owned) to in_ct[i], or
 * NULL where the input gets no gradient (integer, bool, mask, labels). wants[i] is false for
 * inputs nobody differentiates (constants): a rule may skip their work (the data input of a first
 * layer). Runs with recording off. */
typedef lx_status (*lx_prim_vjp_fn)(const void *params, int nin, lx_array *const *inputs, lx_array *out,
                                    lx_array *ct, const bool *wants, lx_array **in_ct);
/* vmap's batching rule (the layer-stacking work): inputs with a batched axis each (-1: none). */
typedef lx_status (*lx_prim_batch_fn)(const void *params, int nin, lx_array *const *inputs, const int *in_axes,
                                      lx_array **out, int *out_axis);

/* lx_prim_def.flags */
#define LX_PRIM_VIEW 1u /* forward makes its own result (a view or a retained input) */

typedef struct lx_prim_def {
    lx_prim_id id;
    const char *name;          /* what observers see: "dot_general" */
    size_t params_size;        /* sizeof the typed params (0: none) */
    lx_prim_apply_fn apply;    /* NULL: lx_bind runs every primitive from rule/forward */
    lx_prim_vjp_fn vjp;        /* NULL: not differentiable (comparisons, argmax, one_hot, masks) */
    lx_prim_batch_fn batch;    /* NULL until the layer-stacking work */
    lx_prim_rule_fn rule;      /* the shape/dtype rule (bind's step 2) */
    lx_prim_forward_fn forward; /* the kernel (bind's step 5) */
    lx_prim_attrs_fn attrs;    /* observer attributes (NULL: none) */
    int arity;                 /* number of inputs (-1: any number >= 1, concatenate/stack) */
    unsigned optional;         /* bit i set: input i may be NULL (an absent optional operand) */
    unsigned flags;            /* LX_PRIM_VIEW */
} lx_prim_def;

/* The table entry of a primitive (NULL for an id out of range). */
const lx_prim_def *lx_prim_get(lx_prim_id id);
/* Look a primitive up by name: LX_ERR_NOT_FOUND naming it when unknown. */
lx_status lx_prim_find(const char *name, const lx_prim_def **out);

/* bind(prim, inputs, params): the one entry point every builder goes through (steps 1-7 at the
 * top of this header), and the generic one for code that handles every op alike (vmap,
 * quantization, replaying a recorded op). `params` are the op's typed struct (copied; NULL for
 * ops without); optional operands (layer_norm's scale/bias, attention's bias/mask) may be NULL.
 * Returns the pool-owned result, or NULL with the failure recorded (a wrong id, input count or
 * missing params is LX_ERR_INVALID_ARGUMENT "bind: ..."). Any number of inputs for the variadic
 * ones (concatenate, stack). */
lx_array *lx_bind(lx_prim_id id, const void *params, int nin, lx_array *const *inputs);

/* ---- observers (after compute) ---- */
typedef struct lx_prim_event {
    const char *op;              /* the primitive's name */
    int ninputs;
    lx_array *const *inputs;
    lx_array *output;
    int nattrs;
    const lx_kwarg *attrs;       /* axes, strides, padding, ... */
    lx_prim_id id;               /* the table entry */
    const void *params;          /* its typed parameters (NULL for ops that have none) */
} lx_prim_event;

typedef void (*lx_prim_observer)(const lx_prim_event *ev, void *user);

#define LX_MAX_OBSERVERS 16

/* Register an observer on this thread; *handle receives an id for lx_prim_unobserve. */
lx_status lx_prim_observe(lx_prim_observer fn, void *user, int *handle);
void lx_prim_unobserve(int handle);
bool lx_prim_observed(void);
/* Called by lx_prim_record: deliver the event to every observer, newest first. */
void lx_prim_emit(const lx_prim_event *ev);

/* ---- substituters (before compute) ----
 * A substituter sees every primitive bound, after its shape rule and before it computes (the
 * params it gets are normalised; dot_product_attention_weights passes (q, k, bias, mask): attention's
 * q.k^T, the einsum quantization rules match). It may replace inputs in place (inputs[i] = another array of
 * the same shape and dtype, pool-owned or borrowed for the call) and/or return a result
 * (pool-owned, the op's shape and dtype: bind checks it, LX_ERR_SHAPE otherwise), which bind
 * returns without computing or recording the primitive; NULL lets the op compute. A substituter
 * that fails records it (lx_fail) and returns NULL: the op then fails with that message instead
 * of computing unsubstituted (a failure it handled itself, lx_clear_error, does not count). Ops a
 * substituter runs do not re-enter substituters. Per thread, like observers. */
typedef lx_array *(*lx_prim_substitute_fn)(lx_prim_id id, const void *params, int nin, lx_array **inputs,
                                           void *user);
lx_status lx_prim_substitute_add(lx_prim_substitute_fn fn, void *user, int *handle);
void lx_prim_substitute_remove(int handle);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
