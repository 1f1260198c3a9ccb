/* Internal to src/train/optax_*.c: the flat leaf view a transformation works on, the
 * transformation record, and the state helpers that check a state against the params. */
#ifndef LINNX_OPTAX_INTERNAL_H
#define LINNX_OPTAX_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "linnx/optax.h"
#include "linnx/tree.h"

/* The params (or, without params, the gradients) flattened once per update: leaf i has a path,
 * a reference array (its shape), the param array (NULL without params) and whether the current
 * mask selects it. `order` lists the leaves in optax's order (keys sorted at every level, JAX's
 * pytree flatten order): reductions over leaves and NaN reports follow it. */
typedef struct lx_leaves {
    int n;
    char **paths;
    lx_array **ref;    /* borrowed: shape and dtype of each leaf */
    lx_array **params; /* borrowed, NULL entries when update got no params */
    bool *active;
    int *order;
    bool have_params;
} lx_leaves;

typedef struct lx_tx_ops {
    const char *name;
    /* Fill `state` (a new empty map) for the active leaves. */
    lx_status (*init)(const optax_tx *tx, const lx_leaves *lv, lx_tree *state);
    /* Replace u[i] (owned references, active leaves only) and fill `new_state` (a new empty map)
     * from `state`; `spath` is the state's path for messages ("0/mu" ...). */
    lx_status (*update)(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                        const char *spath, lx_tree *new_state);
} lx_tx_ops;

enum { LX_TX_MAX_HP = 8 };

/* inject_hyperparams' static arguments: optax keeps bools, dtypes and None out of `hyperparams`
 * and hands them unchanged to every rebuild of the inner optimizer. */
typedef struct lx_inject_statics {
    bool nesterov, centered, eps_in_sqrt, bias_correction;
    lx_dtype dtype; /* mu_dtype (adam family, lion) or accumulator_dtype (sgd) */
} lx_inject_statics;
#define LX_INJECT_STATICS_DEFAULT {false, false, true, false, OPTAX_DTYPE_DEFAULT}
/* Sets them on a transformation optax_inject_hyperparams made (the expression parser's use). */
void lx_optax_inject_set_statics(optax_tx *tx, const lx_inject_statics *s);
/* Whether optax_inject_hyperparams takes this optimizer name (the expression parser asks before
 * binding arguments, so an optimizer it cannot inject is NOT_FOUND, not a binding error). */
bool lx_optax_inject_knows(const char *alias);
/* optax.sgd with its accumulator_dtype (optax_sgd is this with the default dtype). */
optax_tx *lx_optax_sgd_acc(optax_sos lr, bool has_momentum, double momentum, bool nesterov, lx_dtype accumulator);

/* How deep chain and masked may nest transformations: init, update and release recurse once a
 * level, so a deeper one is refused when it is built (optax_chain, optax_masked) instead of
 * overflowing the stack when it runs. The expression parser's own bound (64) is below it. */
enum { LX_OPTAX_MAX_NEST = 256 };

struct optax_tx {
    const lx_tx_ops *ops;
    int refcount;
    int depth;          /* levels of chain / masked below this one (0: none) */
    double p[6];        /* numeric hyperparameters, per transformation */
    float f[6];         /* their float32 forms as optax's arithmetic sees them */
    int64_t i[3];
    bool flag[3];
    lx_dtype dtype;     /* mu / accumulator dtype (OPTAX_DTYPE_DEFAULT = the params') */
    optax_schedule *sched;
    optax_mask mask;
    int n;
    optax_tx **subs;
    /* inject_hyperparams */
    char *alias;
    int nhp;
    char *hp_names[LX_TX_MAX_HP];
    double hp_values[LX_TX_MAX_HP];
    optax_schedule *hp_scheds[LX_TX_MAX_HP];
    bool hp_given[LX_TX_MAX_HP];
    lx_inject_statics hp_static;
};

optax_tx *lx_tx_alloc(const lx_tx_ops *ops);
/* The same with one hyperparameter: p[0] = v (double, for schedules and state), f[0] = (float)v. */
optax_tx *lx_tx_alloc1(const lx_tx_ops *ops, double v);

/* float32(1 - b) the way optax's arithmetic forms it: 1 - b in double, rounded once, for a Python
 * float hyperparameter; 1.0f - f32(b) for a float32 array one (inject_hyperparams). */
float lx_optax_one_minus(double b);
/* Set while inject_hyperparams builds its inner transformation (thread-local). */
void lx_optax_set_strong_hparams(bool on);

/* Runs tx's update with `lv` (used by chain, masked and inject to run their children). */
lx_status lx_tx_run_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                           const char *spath, lx_tree **new_state);
lx_status lx_tx_run_init(const optax_tx *tx, const lx_leaves *lv, lx_tree **state);

/* ---- state helpers ---- */
/* LX_ERR_SHAPE "the optimizer state has no '<spath>/<field>'". */
lx_status lx_state_missing(const char *spath, const char *field);
/* state[field] must be an int32 scalar. */
lx_status lx_state_get_count(const lx_tree *state, const char *field, const char *spath, int32_t *out);
lx_status lx_state_put_count(lx_tree *state, const char *field, int32_t count);
int32_t lx_safe_increment(int32_t c);
/* state[field] must be a tree with an array of leaf i's shape at path i for every active leaf,
 * and nothing else (MaskedNode {} at the inactive ones allowed); arrays out[i] are borrowed. */
lx_status lx_state_get_moment(const lx_tree *state, const char *field, const char *spath,
                              const lx_leaves *lv, lx_array **out);
/* The same with an expected shape per leaf (Adafactor's factored rows and columns). */
typedef struct lx_shape_want {
    int ndim;
    int64_t shape[LX_MAX_DIMS];
} lx_shape_want;
lx_status lx_state_get_moment_shaped(const lx_tree *state, const char *field, const char *spath,
                                     const lx_leaves *lv, const lx_shape_want *want, lx_array **out);
/* state[field] = a tree holding arrs[i] (stolen) at the active leaves' paths, {} at the others. */
lx_status lx_state_put_moment(lx_tree *state, const char *field, const lx_leaves *lv, lx_array **arrs);
/* New zero (or `fill`) arrays shaped like the active leaves, in `dtype` (DEFAULT = leaf dtype). */
lx_status lx_state_put_full(lx_tree *state, const char *field, const lx_leaves *lv, lx_dtype dtype,
                            float fill);

/* ---- leaf arithmetic helpers ---- */
/* The array a leaf stands for: an array, a Variable's value, a box's value; NULL otherwise. */
lx_array *lx_optax_leaf_array(const lx_value *v);
/* A new float32 array shaped like a (its data from the array storage cache when a block fits). */
lx_array *lx_optax_new_f32(const lx_array *a);
/* Give back a reference (lx_release: the last one's data block goes to the storage cache). */
void lx_optax_recycle(lx_array *a);
/* Release a tree (its arrays' data blocks that nobody else holds go to the storage cache). */
void lx_optax_recycle_tree(lx_tree *t);
/* Element i of a float32 or bfloat16 array, as float (inline: the optimizer loops call it per
 * element). */
static inline float lx_optax_get(const lx_array *a, int64_t i) {
    if (a->dtype == LX_F32) return ((const float *)a->data)[i];
    uint32_t b = (uint32_t)((const uint16_t *)a->data)[i] << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}
/* Round a float32 value to bfloat16 (nearest even) and back. */
static inline float lx_optax_round_bf16(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    if ((b & 0x7fffffffu) > 0x7f800000u) b |= 0x00400000u; /* quiet NaN */
    else b += 0x7fffu + ((b >> 16) & 1u);
    b &= 0xffff0000u;
    memcpy(&x, &b, sizeof x);
    return x;
}
/* A copy of a float32 array stored in dtype (F32: retained as is). Owned. */
lx_array *lx_optax_store(lx_array *a, lx_dtype dtype);
/* Sum of squares of a (float32 or bf16), accumulated in double and rounded to float32. */
float lx_optax_sumsq(const lx_array *a);

extern const char LX_NO_PARAMS_MSG[];

/* ---- flat views (optax_core.c) ---- */
/* Flatten `t` (params, or grads when !are_params) into lv (freed with lx_optax_leaves_free);
 * `who`/`what` name the call and the tree in messages. */
lx_status lx_optax_leaves_from_tree(const char *who, const char *what, const lx_tree *t, bool are_params,
                                    lx_leaves *lv);
void lx_optax_leaves_free(lx_leaves *lv);
/* The arrays of `t` (grads or updates) at lv's paths, checked leaf for leaf: out[i] borrowed. */
lx_status lx_optax_match_tree(const char *who, const char *what, const char *against, const lx_tree *t,
                              const lx_leaves *lv, lx_array **out);
/* The params' tree with np[i] (retained) at leaf i, each leaf keeping its kind (Variable, box). */
lx_status lx_optax_params_like(const lx_tree *params, const lx_leaves *lv, lx_array **np, lx_tree **out);

/* ---- the fused step (optax_fused.c) ---- */
/* update + apply_updates in one pass per leaf for adam / adamw / sgd chains over float32 leaves,
 * bit-identical to the two calls. *fused = false (nothing recorded, nothing changed) when the
 * chain or the leaves are not of that kind or any check fails: run the unfused path then. On
 * success *new_params and *new_state are new trees (buffers from the optax cache). */
lx_status lx_optax_fused_step(const optax_tx *tx, const lx_tree *grads, const lx_tree *state, const lx_tree *params,
                              lx_tree **new_params, lx_tree **new_state, bool *fused);
/* The same with `donated`: the caller gives up `state` and `params` (it releases them right after
 * a successful step, as optax_step does, like jax.jit's donate_argnums). For adam, when nothing
 * else holds those trees or their arrays, the pass then writes the new moments and params over
 * the old ones (one read and one write of each array instead of a read and a fresh write), and
 * the new trees hold those arrays. */
lx_status lx_optax_fused_step_ex(const optax_tx *tx, const lx_tree *grads, const lx_tree *state, const lx_tree *params,
                                 bool donated, lx_tree **new_params, lx_tree **new_state, bool *fused);

#endif
