/* linnx/optax.h - optax's gradient transformations, optimizers and schedules, with optax's
 * arithmetic (spec/training.md §A).
 *
 * A transformation (optax_tx) is optax's GradientTransformation: init(params) -> state and
 * update(updates, state, params) -> (updates, new_state). Transformations compose with optax_chain,
 * optax_masked and optax_inject_hyperparams; the optimizers (sgd, adam, adamw, nadam, rmsprop, lion,
 * adafactor) are chains built exactly as optax/_src/alias.py builds them.
 *
 * Trees. params, gradients, updates are lx_trees (tree.h) whose leaves are arrays; a Variable
 * leaf (an NNX State) or a box leaf (Linen's Partitioned, ...) stands for the array it holds.
 * Leaves are paired by path, and a gradient tree must have exactly the params' paths and shapes:
 * anything else is LX_ERR_SHAPE naming the first path that differs. Leaves are float32 or
 * bfloat16; optimizer arithmetic runs in float32 (a bfloat16 gradient's updates come back as
 * float32 and apply_updates rounds to the param dtype).
 *
 * Optimizer state. The state is itself a tree with optax's layout, written as Flax's
 * serialization writes NamedTuples and tuples (flax.serialization.to_state_dict), so the
 * checkpoint code can store it unchanged:
 *   chain(a, b)                 {"0": state_a, "1": state_b}
 *   EmptyState()                {}                            (an empty map)
 *   ScaleByAdamState            {"count": int32[], "mu": <params tree>, "nu": <params tree>}
 *   ScaleByScheduleState        {"count"}          TraceState {"trace"}
 *   ScaleByRmsState             {"nu"} ({"count", "nu"} with bias_correction)
 *   EmaState                    {"count", "ema"}   ScaleByLionState {"count", "mu"}
 *   WeightDecaySchedule         {"count"}          MaskedState {"inner_state"}
 *   FactoredState               {"count", "v_row", "v_col", "v"}
 *   InjectStatefulHyperparamsState
 *                               {"count", "hyperparams": {name: float32[]},
 *                                "hyperparams_states": {name: {"count"}}, "inner_state"}
 * A leaf a mask leaves out is optax's MaskedNode: an empty map at its path. Counts are int32
 * scalars that saturate at INT32_MAX (numerics.safe_increment). optax_state_layout prints it.
 *
 * Failure. optax_update and optax_apply_updates compute into new arrays and build new trees: on any
 * error the caller's params, gradients and state are untouched. A state that does not match the
 * params (another optimizer's, another model's) fails naming the state path and the param path.
 * With optax_set_debug_nans(true), a NaN or Inf in the gradients or the updates fails
 * (LX_ERR_INVALID_ARGUMENT) naming the first bad leaf in optax's leaf order (sorted keys).
 *
 * Ownership. Transformations and schedules are reference counted and immutable. Constructors
 * that take an optax_tx * or an optax_schedule * TAKE OWNERSHIP of it (KANN-style composition:
 * optax_chain(2, (optax_tx *[]){optax_scale_by_adam(NULL), optax_scale(-0.1)})) and fail, releasing the
 * others, when one is NULL; every constructor returns a reference the caller owns (NULL + message
 * on failure). Trees returned through `**out` are owned by the caller (lx_tree_release).
 * Arithmetic follows optax's operation order with float32 rounding at each step (no fused
 * multiply-add), so results equal optax's to float32 rounding; reductions (global norm, block
 * RMS, Adafactor means) accumulate in double and are equal within a few ulps.
 */
#ifndef LINNX_OPTAX_H
#define LINNX_OPTAX_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "linnx/array.h"
#include "linnx/tree.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---------------------------------------------------------------- schedules (optax.schedules)
 * The arguments optax refuses with ValueError ("is an error" below) are LX_ERR_INVALID_ARGUMENT:
 * NULL and a message. */
typedef struct optax_schedule optax_schedule;

/* The value at `count`, in float32 exactly as optax computes it for an int32 count. */
float optax_schedule_eval(const optax_schedule *s, int64_t count);
optax_schedule *optax_schedule_retain(optax_schedule *s);
void optax_schedule_release(optax_schedule *s); /* NULL-safe */

optax_schedule *optax_constant_schedule(double value);
/* polynomial_schedule(init, end, power, transition_steps, transition_begin): steps <= 0 gives the
 * constant init and a negative transition_begin is 0 (optax logs both and falls back). */
optax_schedule *optax_polynomial_schedule(double init_value, double end_value, double power,
                                    int64_t transition_steps, int64_t transition_begin);
optax_schedule *optax_linear_schedule(double init_value, double end_value, int64_t transition_steps,
                                int64_t transition_begin);
/* exponential_decay(init, transition_steps, decay_rate, transition_begin, staircase, end_value):
 * has_end_value = false is end_value=None. transition_steps <= 0 or decay_rate == 0 is the
 * constant init, a negative transition_begin is 0 (optax logs these and falls back). */
optax_schedule *optax_exponential_decay(double init_value, int64_t transition_steps, double decay_rate,
                                  int64_t transition_begin, bool staircase, bool has_end_value,
                                  double end_value);
/* cosine_decay_schedule(init, decay_steps, alpha, exponent); decay_steps <= 0 is an error. */
optax_schedule *optax_cosine_decay_schedule(double init_value, int64_t decay_steps, double alpha,
                                      double exponent);
/* warmup_cosine_decay_schedule(init, peak, warmup_steps, decay_steps, end_value, exponent):
 * decay_steps includes the warmup; decay_steps == warmup_steps is an error. */
optax_schedule *optax_warmup_cosine_decay_schedule(double init_value, double peak_value,
                                             int64_t warmup_steps, int64_t decay_steps,
                                             double end_value, double exponent);
/* warmup_constant_schedule(init, peak, warmup_steps): linear_schedule(init, peak, warmup_steps),
 * so peak from warmup_steps on; warmup_steps <= 0 is the constant init (linear_schedule's rule). */
optax_schedule *optax_warmup_constant_schedule(double init_value, double peak_value, int64_t warmup_steps);
/* join_schedules(schedules, boundaries): n schedules (owned) and n - 1 boundaries; schedule i
 * sees the step relative to boundary i - 1. Joins nested more than 256 deep are refused
 * (LX_ERR_INVALID_ARGUMENT "join_schedules: schedules nested more than 256 deep", the schedules
 * released), as optax_chain refuses deeper chains. */
optax_schedule *optax_join_schedules(int n, optax_schedule *const *schedules, const int64_t *boundaries);
/* piecewise_constant_schedule(init, {boundary: scale}): the pairs are sorted by boundary; a
 * negative scale is an error, as in optax. */
optax_schedule *optax_piecewise_constant_schedule(double init_value, int n, const int64_t *boundaries,
                                            const double *scales);

/* A hyperparameter that is a number or a schedule (optax's ScalarOrSchedule). */
typedef struct optax_sos {
    double value;
    optax_schedule *schedule; /* owned by the constructor it is passed to; NULL = the number */
} optax_sos;
#define OPTAX_CONST(v) ((optax_sos){(v), NULL})
#define OPTAX_SCHED(s) ((optax_sos){0.0, (s)})

/* ---------------------------------------------------------------- transformations */
typedef struct optax_tx optax_tx;

/* A mask (optax's mask callable): true for leaves the masked transformation applies to. */
typedef bool (*optax_mask_fn)(const char *path, const lx_array *param, void *user);
typedef struct optax_mask {
    optax_mask_fn fn; /* NULL = no mask */
    void *user;
} optax_mask;
#define OPTAX_NO_MASK ((optax_mask){NULL, NULL})
/* optax's mask pytree: a tree of bools (LX_V_BOOL leaves or bool/int scalar arrays) with the
 * params' structure or a prefix of it (a bool at a prefix covers its subtree); a path the tree
 * does not reach is not selected. The tree is borrowed: it must outlive the transformation. */
optax_mask optax_mask_tree(const lx_tree *mask);
/* The common Flax mask `lambda p: jax.tree.map(lambda x: x.ndim >= n, p)` (n = 2: decay kernels,
 * not biases or norm scales). */
optax_mask optax_mask_min_ndim(int n);

/* mu_dtype / accumulator dtype "None": the params' dtype. */
#define OPTAX_DTYPE_DEFAULT LX_DTYPE_COUNT

optax_tx *optax_tx_retain(optax_tx *tx);
void optax_tx_release(optax_tx *tx); /* NULL-safe */
/* optax's name of the transformation ("scale_by_adam", "chain", ...). */
const char *optax_tx_name(const optax_tx *tx);

/* tx.init(params): *state is a new tree (layout above). */
lx_status optax_init(const optax_tx *tx, const lx_tree *params, lx_tree **state);
/* tx.update(grads, state, params): *updates (the params' structure, float32 arrays) and
 * *new_state are new trees. params may be NULL for transformations that do not read them
 * (add_decayed_weights, scale_by_param_block_rms, adafactor and masked ones need them:
 * ValueError's NO_PARAMS_MSG otherwise, LX_ERR_INVALID_ARGUMENT). Nothing the caller holds
 * changes. */
lx_status optax_update(const optax_tx *tx, const lx_tree *grads, const lx_tree *state,
                       const lx_tree *params, lx_tree **updates, lx_tree **new_state);
/* optax.apply_updates(params, updates): each leaf p + u in float32, cast back to p's dtype. A
 * Variable leaf becomes a new Variable (same type and metadata), a box a new box; the new tree
 * has the params' structure. Mismatched structures or shapes fail naming the path. */
lx_status optax_apply_updates(const lx_tree *params, const lx_tree *updates, lx_tree **out);
/* One optimizer step in place: update then apply_updates, and only when both succeed *params and
 * *state are replaced by the new trees (the old references are released). */
lx_status optax_step(const optax_tx *tx, const lx_tree *grads, lx_tree **params, lx_tree **state);

/* The fused step. optax_step, TrainState.apply_gradients and nnx.Optimizer.update (when the
 * caller does not ask for the updates) run the chains of adam, adamw (constant, unmasked weight
 * decay) and sgd (with or without momentum / Nesterov), with a constant or scheduled learning
 * rate, over float32 params, gradients and moments, as ONE pass per leaf: the gradient, the old
 * moments and the param are read once, the new moments and the new param written once (no
 * `updates` temporaries). Each element goes through the same float32 operations in the same order
 * as update followed by apply_updates, so results are bit-identical; the state keeps optax's
 * layout. Anything else (other chains, masks, Nesterov Adam, bfloat16, debug_nans) runs unfused.
 * This counts the steps of this thread that took the fused pass (a diagnostic for tests). */
uint64_t optax_fused_steps(void);

/* Buffers: a step's outputs take their data from the array storage cache (linnx/array.h), which
 * holds the blocks of the old state and params a finished step released (once optax_step,
 * TrainState_free or nnx.Optimizer's update replaced them and nobody else held them), so a
 * steady-state training step allocates no array data. optax_release_buffers frees what that cache
 * holds (lx_array_cache_release; call it when training is over if the memory matters). */
void optax_release_buffers(void);

/* debug_nans-style checking of gradients and updates (thread-local; off by default). */
void optax_set_debug_nans(bool on);
bool optax_debug_nans(void);

/* One line per state leaf: "path dtype[shape]", empty maps shown as "path {}" (EmptyState,
 * MaskedNode): the layout a checkpoint stores. */
lx_status optax_state_layout(FILE *f, const lx_tree *state);

/* ---- the transformations of optax/_src/transform.py and optax/transforms ---- */
optax_tx *optax_identity(void);                        /* EmptyState; updates unchanged */
optax_tx *optax_scale(double step_size);               /* u = step_size * g */
/* A number gives scale(-lr) (scale(lr) without flip_sign); a schedule gives scale_by_schedule of
 * -lr(count), evaluated at the pre-increment count. */
optax_tx *optax_scale_by_learning_rate(optax_sos learning_rate, bool flip_sign);
optax_tx *optax_scale_by_schedule(optax_schedule *step_size_fn); /* u = fn(count) * g */

typedef struct optax_adam_opts {
    double b1, b2, eps, eps_root;
    lx_dtype mu_dtype;   /* OPTAX_DTYPE_DEFAULT, LX_F32 or LX_BF16 */
    bool nesterov;
    double weight_decay; /* adamw only */
    optax_mask mask;        /* adamw only: which leaves decay */
    /* adamw only: a weight-decay schedule instead of the number (optax's ScalarOrSchedule),
     * evaluated at add_decayed_weights' own count ({"count"} in its state). NULL = weight_decay.
     * Taken by optax_adam, optax_adamw, optax_nadam and optax_nadamw (the adam ones release
     * it, also when they fail); optax_scale_by_adam does not read it. */
    optax_schedule *weight_decay_schedule;
} optax_adam_opts;
#define OPTAX_ADAM_DEFAULTS {0.9, 0.999, 1e-8, 0.0, OPTAX_DTYPE_DEFAULT, false, 0.0, OPTAX_NO_MASK, NULL}
#define OPTAX_ADAMW_DEFAULTS {0.9, 0.999, 1e-8, 0.0, OPTAX_DTYPE_DEFAULT, false, 1e-4, OPTAX_NO_MASK, NULL}
/* scale_by_adam: eps outside the square root, eps_root inside, bias correction 1 - b**t. NULL
 * opts = the defaults. */
optax_tx *optax_scale_by_adam(const optax_adam_opts *opts);
optax_tx *optax_scale_by_rms(double decay, double eps, double initial_scale, bool eps_in_sqrt,
                       bool bias_correction); /* optax defaults: 0.9, 1e-8, 0.0, true, false */
/* scale_by_stddev (centered RMSProp): mu, nu moments; u = g * rsqrt(nu - mu**2 + eps) (or
 * g / (sqrt(nu - mu**2) + eps)). State {"mu", "nu"} ({"count", "mu", "nu"} with bias_correction). */
optax_tx *optax_scale_by_stddev(double decay, double eps, double initial_scale, bool eps_in_sqrt,
                                bool bias_correction);
/* trace: t = g + decay * t; the update is t, or g + decay * t with nesterov. */
optax_tx *optax_trace(double decay, bool nesterov, lx_dtype accumulator_dtype);
/* ema: e = (1 - decay) * g + decay * e; debias divides by 1 - decay**count. */
optax_tx *optax_ema(double decay, bool debias, lx_dtype accumulator_dtype);
/* add_decayed_weights: u = g + wd * p (EmptyState; a schedule keeps a count). A mask wraps it in
 * masked(). A constant 0 passes the updates through. */
optax_tx *optax_add_decayed_weights(optax_sos weight_decay, optax_mask mask);
optax_tx *optax_clip(double max_delta);               /* element-wise clip to [-max_delta, max_delta] */
optax_tx *optax_clip_by_block_rms(double threshold);  /* u / max(1, rms(u) / threshold) per leaf */
/* clip_by_global_norm, optax's select form: u if norm < max_norm else (u / norm) * max_norm. */
optax_tx *optax_clip_by_global_norm(double max_norm);
typedef enum optax_lion_mode { OPTAX_LION_HARD = 0, OPTAX_LION_SMOOTH, OPTAX_LION_REFINED } optax_lion_mode;
optax_tx *optax_scale_by_lion(double b1, double b2, lx_dtype mu_dtype, optax_lion_mode mode,
                        double smooth_beta); /* optax defaults: 0.9, 0.99, DEFAULT, HARD, 1.0 */
/* scale_by_factored_rms (Adafactor's second moment): the two largest axes are factored when the
 * second largest is >= min_dim_size_to_factor. Defaults: true, 0.8, 0, 128, 1e-30. */
optax_tx *optax_scale_by_factored_rms(bool factored, double decay_rate, int64_t step_offset,
                                int64_t min_dim_size_to_factor, double epsilon);
optax_tx *optax_scale_by_param_block_rms(double min_scale); /* u * max(rms(p), min_scale); 1e-3 */

/* chain(*txs): the n transformations (owned) in order; the state is their tuple. */
optax_tx *optax_chain(int n, optax_tx *const *txs);
/* masked(inner, mask): inner (owned) sees only the leaves the mask selects; the others pass
 * through and are MaskedNode ({}) in inner's state. */
optax_tx *optax_masked(optax_tx *inner, optax_mask mask);

/* ---- the optimizers of optax/_src/alias.py ---- */
/* sgd(lr, momentum, nesterov): has_momentum = false is momentum=None (no trace). */
optax_tx *optax_sgd(optax_sos learning_rate, bool has_momentum, double momentum, bool nesterov);
optax_tx *optax_adam(optax_sos learning_rate, const optax_adam_opts *opts);
/* adamw: chain(scale_by_adam, add_decayed_weights(wd, mask), scale_by_learning_rate): the decay
 * is added to the Adam direction before the learning rate. NULL opts = OPTAX_ADAMW_DEFAULTS.
 * The weight decay is a number or a schedule (opts->weight_decay_schedule), as in optax. */
optax_tx *optax_adamw(optax_sos learning_rate, const optax_adam_opts *opts);
optax_tx *optax_nadam(optax_sos learning_rate, const optax_adam_opts *opts); /* adam with nesterov */
optax_tx *optax_nadamw(optax_sos learning_rate, const optax_adam_opts *opts);
typedef struct optax_rmsprop_opts {
    double decay, eps, initial_scale;
    bool eps_in_sqrt, bias_correction;
    bool centered; /* scale_by_stddev instead of scale_by_rms */
    bool has_momentum;
    double momentum;
    bool nesterov;
} optax_rmsprop_opts;
#define OPTAX_RMSPROP_DEFAULTS {0.9, 1e-8, 0.0, true, false, false, false, 0.0, false}
optax_tx *optax_rmsprop(optax_sos learning_rate, const optax_rmsprop_opts *opts);
typedef struct optax_lion_opts {
    double b1, b2;
    lx_dtype mu_dtype;
    double weight_decay;
    optax_mask mask;
    optax_schedule *weight_decay_schedule; /* as adamw's: a schedule instead of weight_decay (taken) */
} optax_lion_opts;
#define OPTAX_LION_DEFAULTS {0.9, 0.99, OPTAX_DTYPE_DEFAULT, 1e-3, OPTAX_NO_MASK, NULL}
optax_tx *optax_lion(optax_sos learning_rate, const optax_lion_opts *opts);
typedef struct optax_adafactor_opts {
    int64_t min_dim_size_to_factor;
    double decay_rate;
    int64_t decay_offset;
    bool multiply_by_parameter_scale;
    bool has_clipping_threshold;
    double clipping_threshold;
    bool has_momentum;
    double momentum;
    bool has_weight_decay_rate;
    optax_sos weight_decay_rate;
    double eps;
    bool factored;
    optax_mask weight_decay_mask;
} optax_adafactor_opts;
#define OPTAX_ADAFACTOR_DEFAULTS                                                                 \
    {128, 0.8, 0, true, true, 1.0, false, 0.0, false, {0.0, NULL}, 1e-30, true, OPTAX_NO_MASK}
/* adafactor(learning_rate=None...): has_learning_rate = false leaves the lr step out. */
optax_tx *optax_adafactor(bool has_learning_rate, optax_sos learning_rate, const optax_adafactor_opts *opts);

/* ---- inject_hyperparams(alias)(**hyperparams) ----
 * The named optimizer ("sgd", "adam", "adamw", "nadam", "nadamw", "rmsprop", "lion") with every
 * numeric argument of its signature in the state's `hyperparams` (float32 scalars, in signature
 * order, the defaults filled in), so a checkpoint holds the learning rate and a caller may edit
 * one between steps (optax_inject_set_hyperparam). A hyperparameter given as a schedule is evaluated
 * at its own count each step ({"count"} in `hyperparams_states`); editing it has no effect, as in
 * optax. As in optax the values are float32 arrays, so a derived constant like 1 - b1 is computed
 * in float32 (1 - f32(0.9)), not in double. Unknown, repeated or missing (learning_rate) arguments
 * fail with Python's TypeError text (LX_ERR_TYPE); an unknown alias is LX_ERR_NOT_FOUND. */
typedef struct optax_hparam {
    const char *name;
    optax_sos value; /* a schedule is owned by the call */
} optax_hparam;
optax_tx *optax_inject_hyperparams(const char *alias, int n, const optax_hparam *hparams);
/* state.hyperparams[name] = value in a state tree made by an injected optimizer (copy on write:
 * *state becomes a new tree, the old reference is released). A state without `hyperparams` or a
 * name it does not hold is LX_ERR_NOT_FOUND (*state unchanged). */
lx_status optax_inject_set_hyperparam(lx_tree **state, const char *name, float value);

/* ---- optax expressions as Python writes them (for command lines and config files) ----
 * "adam(1e-3)", "adamw(3e-4, weight_decay=0.1)", "sgd(0.1, momentum=0.9, nesterov=True)",
 * "adam(learning_rate=warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000))",
 * "chain(clip_by_global_norm(1.0), adamw(1e-3))", "inject_hyperparams(adam)(learning_rate=1e-3)",
 * "piecewise_constant_schedule(1.0, {100: 0.1, 200: 0.01})", "join_schedules([...], [10])".
 * Every function of this header by its optax name (an `optax.` prefix is accepted), arguments
 * positional or by keyword as in optax's signatures; Python's TypeError texts (LX_ERR_TYPE) for
 * unknown, repeated or missing arguments and arguments of the wrong kind, LX_ERR_NOT_FOUND for a
 * function optax does not have, LX_ERR_FORMAT with the offset for syntax errors. Masks cannot be
 * written (None only: LX_ERR_UNSUPPORTED). The caller owns the result. */
optax_tx *optax_from_string(const char *src);
optax_schedule *optax_schedule_from_string(const char *src);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
