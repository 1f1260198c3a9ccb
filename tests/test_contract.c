/* The error contract of the public headers: every "Errors: LX_ERR_..." a header states, for calls
 * no other test program pins down, and status.h's rules for failed inputs (a NULL that stands for
 * an earlier failure keeps that failure; a NULL met with nothing pending is reported as itself)
 * and for handled failures (no stale text once an op succeeds after lx_clear_error). */
#include <stdio.h>
#include <unistd.h>

#include "linnx/autodiff.h"
#include "linnx/checkpoint.h"
#include "linnx/fault.h"
#include "linnx/linen_layers.h"
#include "linnx/nnx_layers.h"
#include "linnx/llama_train.h"
#include "linnx/quant.h"
#include "linnx/sampling.h"
#include "linnx/optax.h"
#include "linnx/train.h"
#include "linnx/lift.h"
#include "linnx/to_linen.h"
#include "linnx/version.h"
#include "lx_test.h"

/* A failing op (reshape of a scalar to 2 elements): leaves a pending LX_ERR_SHAPE. */
static lx_array *llama_reshape_fails_(lx_array *unused) {
    (void)unused;
    return lx_reshape(lx_scalar(1), LX_SHAPE(2));
}

/* A tree_map fn: the leaf's array value copied (a Variable's or a box's), so a later comparison
 * sees the values of that moment, not the shared Variables. */
static lx_status copy_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    (void)path;
    (void)user;
    lx_array *a = lx_value_leaf_array(leaf);
    if (!a) return lx_value_dup(leaf, out);
    lx_array *c = lx_array_copy(a);
    if (!c) return lx_last_status();
    *out = lx_array_v(c);
    return LX_OK;
}

static lx_tree *tree_w(float v) {
    lx_tree *t = lx_tree_new();
    lx_array *a = lx_array_from_f32(1, (const int64_t[]){2}, (const float[]){v, v});
    lx_tree_set(t, "w", lx_array_v(a));
    lx_release(a);
    return t;
}

/* status.h: a NULL input fails the call (NULL, or LX_ERR_FAILED_INPUT from a call returning a
 * status); while a failure is pending its text and lx_last_status() are kept, with nothing pending
 * the message names the NULL. */
static void test_failed_inputs(void) {
    lx_array *bad = lx_reshape(lx_scalar(1), LX_SHAPE(2)); /* a pending failure */
    CHECK(bad == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    char first[256];
    snprintf(first, sizeof first, "%s", lx_last_error());
    CHECK(lx_array_copy(bad) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, first);
    lx_tree *t = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set(NULL, "a", lx_none()), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_IS(LX_ERR_SHAPE, first);
    optax_tx *tx = optax_sgd(OPTAX_CONST(0.1), false, 0, false);
    lx_tree *state = NULL;
    CHECK_EQ_INT(optax_init(NULL, t, &state), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_IS(LX_ERR_SHAPE, first);
    CHECK(optax_chain(2, (optax_tx *[]){optax_scale(1.0), NULL}) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, first);

    /* nothing pending: each NULL is reported as itself */
    CHECK_NULL_FAILS(lx_array_copy(NULL), LX_ERR_FAILED_INPUT, "array_copy: input is NULL");
    CHECK_FAILS(lx_tree_set(NULL, "a", lx_none()), LX_ERR_FAILED_INPUT, "tree_set: tree is NULL");
    CHECK_FAILS(optax_init(NULL, t, &state), LX_ERR_FAILED_INPUT, "init: the transformation is NULL");
    CHECK_NULL_FAILS(optax_chain(2, (optax_tx *[]){optax_scale(1.0), NULL}), LX_ERR_FAILED_INPUT,
                     "chain: transformation 1 is NULL");
    CHECK_NULL_FAILS(optax_masked(NULL, optax_mask_min_ndim(2)), LX_ERR_FAILED_INPUT,
                     "masked: the inner transformation is NULL");
    CHECK_NULL_FAILS(optax_scale_by_schedule(NULL), LX_ERR_FAILED_INPUT, "scale_by_schedule: the schedule is NULL");
    CHECK_NULL_FAILS(optax_join_schedules(2, (optax_schedule *[]){optax_constant_schedule(1), NULL},
                                          (const int64_t[]){3}),
                     LX_ERR_FAILED_INPUT, "join_schedules: schedule 1 is NULL");

    /* a handled failure (cleared) is not sticky: the next op that succeeds leaves no text */
    CHECK(lx_reshape(lx_scalar(1), LX_SHAPE(2)) == NULL);
    lx_clear_error();
    CHECK(lx_add(lx_scalar(1), lx_scalar(2)) != NULL);
    CHECK_EQ_INT(lx_last_status(), LX_OK);
    CHECK_STR(lx_last_error(), "");
    lx_tree_release(t);
    optax_tx_release(tx);
}

/* optax.h: the caller's trees are untouched after a failed step, and the failure is reported. */
static void test_optax_failure_keeps_inputs(void) {
    optax_tx *tx = optax_adam(OPTAX_CONST(0.1), NULL);
    lx_tree *params = tree_w(1.0f), *state = NULL;
    CHECK_EQ_INT(optax_init(tx, params, &state), LX_OK);
    lx_tree *grads = lx_tree_new();
    lx_array *g3 = lx_array_new(LX_F32, 1, (const int64_t[]){3});
    lx_tree_set(grads, "w", lx_array_v(g3));
    lx_release(g3);
    lx_tree *p0 = params, *s0 = state;
    lx_tree *pcopy = lx_tree_copy(params), *scopy = lx_tree_copy(state);
    CHECK_FAILS(optax_step(tx, grads, &params, &state), LX_ERR_SHAPE, "'w' has shape (3,)");
    CHECK(params == p0 && state == s0);
    CHECK(lx_tree_equal(params, pcopy) && lx_tree_equal(state, scopy));
    lx_tree *all[] = {params, state, grads, pcopy, scopy};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lx_tree_release(all[i]);
    optax_tx_release(tx);
}

/* train.h: TrainState.create takes tx; a NULL tx is the failure that produced it. */
static void test_train_state_null_tx(void) {
    lx_tree *params = tree_w(1.0f);
    linen_train_state *s = (linen_train_state *)1;
    CHECK_FAILS(linen_train_state_create(NULL, params, NULL, &s), LX_ERR_FAILED_INPUT,
                "TrainState.create: tx is NULL");
    CHECK(strstr(lx_last_error(), "earlier") == NULL); /* nothing was pending: the NULL is reported as itself */
    CHECK(s == NULL);
    s = (linen_train_state *)1;
    optax_tx *bad = optax_chain(-1, NULL); /* fails: INVALID_ARGUMENT, pending */
    CHECK(bad == NULL);
    CHECK_EQ_INT(linen_train_state_create(NULL, params, bad, &s), LX_ERR_FAILED_INPUT);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("chain: bad transformation list");
    CHECK(s == NULL);
    lx_tree_release(params);
}

/* llama_train.h: options, checkpoint configs, and a NULL batch (the failure that produced it). */
static void test_llama_train_errors(void) {
    llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
    o.learning_rate = 0;
    CHECK_NULL_FAILS(llama_lr_schedule(&o), LX_ERR_INVALID_ARGUMENT, "learning_rate must be positive, got 0");
    o = (llama_train_opts)LLAMA_TRAIN_DEFAULTS;
    o.warmup_fraction = 1.0;
    CHECK_NULL_FAILS(llama_optimizer(&o), LX_ERR_INVALID_ARGUMENT, "warmup_fraction must be in [0, 1), got 1");
    lx_tree *ck = lx_tree_new();
    llama_config c;
    CHECK_FAILS(llama_checkpoint_config(ck, &c), LX_ERR_NOT_FOUND, "no 'config' map");
    CHECK_EQ_INT(lx_tree_set_path(ck, "config/vocab_size", lx_str_v("many")), LX_OK);
    CHECK_FAILS(llama_checkpoint_config(ck, &c), LX_ERR_FORMAT, "config/vocab_size: expected an integer");
    lx_tree_release(ck);
    llama_config cfg = llama_config_tiny();
    cfg.vocab_size = 16, cfg.emb_dim = 8, cfg.num_query_heads = 2, cfg.num_kv_heads = 1, cfg.head_dim = 4;
    cfg.mlp_dim = 8, cfg.num_decoder_layers = 1, cfg.max_target_length = 8;
    llama_model *m = NULL;
    CHECK_EQ_INT(llama_model_new(&cfg, LLAMA_NNX_TOP, 0, &m), LX_OK);
    llama_trainer *t = NULL;
    o = (llama_train_opts)LLAMA_TRAIN_DEFAULTS;
    CHECK_EQ_INT(llama_trainer_new(m, &o, &t), LX_OK);
    float loss = -1;
    CHECK_FAILS(llama_trainer_step(t, NULL, &loss), LX_ERR_FAILED_INPUT, "llama_trainer_step: tokens is NULL");
    CHECK(llama_reshape_fails_(NULL) == NULL); /* a pending SHAPE failure */
    CHECK_EQ_INT(llama_trainer_step(t, NULL, &loss), LX_ERR_FAILED_INPUT);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    CHECK_ERROR_HAS("reshape");
    lx_array *ft = lx_autorelease(lx_array_new(LX_F32, 2, (const int64_t[]){1, 4}));
    CHECK_FAILS(llama_trainer_step(t, ft, &loss), LX_ERR_DTYPE, "tokens must be int32");
    CHECK_EQ_INT(llama_trainer_step_count(t), 0);
    lx_array *l = NULL;
    lx_tree *g = NULL;
    CHECK_FAILS(llama_value_and_grad(m, NULL, &l, &g), LX_ERR_FAILED_INPUT, "llama_value_and_grad: tokens is NULL");
    llama_trainer_free(t);
    llama_model_free(m);
}

/* linen_layers.h: values outside the supported subset fail with LX_ERR_UNSUPPORTED, param_dtype
 * included (a random initializer in bfloat16, any other param dtype), before anything is made. */
static void test_linen_layers_subset(void) {
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (const int64_t[]){2, 4}, 1.0f));
    lx_value a = lx_array_v(x);
    lx_call call = {1, &a, 0, NULL};
    const char *dts[] = {"bfloat16", "int32"};
    for (int i = 0; i < 2; i++) {
        lx_kwarg kw[] = {LX_KW("features", lx_int_v(3)), LX_KW("param_dtype", lx_str_v(dts[i]))};
        lx_call ctor = {0, NULL, 2, kw};
        linen_module *m = NULL;
        CHECK_EQ_INT(linen_module_new(&linen_Dense, &ctor, &m), LX_OK);
        lx_tree *vars = NULL;
        CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &call, NULL, &vars), LX_ERR_UNSUPPORTED,
                    "Dense: param_dtype=");
        CHECK(vars == NULL);
        linen_module_release(m);
    }
    lx_kwarg kw[] = {LX_KW("features", lx_int_v(3)), LX_KW("dtype", lx_str_v("bfloat16"))};
    lx_call ctor = {0, NULL, 2, kw};
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &ctor, &m), LX_OK);
    lx_tree *vars = NULL;
    CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &call, NULL, &vars), LX_ERR_UNSUPPORTED,
                "Dense: dtype=bfloat16 is not supported");
    linen_module_release(m);
    lx_kwarg ln[] = {LX_KW("param_dtype", lx_str_v("bfloat16"))}; /* ones / zeros: allowed */
    lx_call lctor = {0, NULL, 1, ln};
    CHECK_EQ_INT(linen_module_new(&linen_LayerNorm, &lctor, &m), LX_OK);
    lx_status st = linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &call, NULL, &vars);
    CHECK(st != LX_ERR_UNSUPPORTED);
    lx_tree_release(vars);
    linen_module_release(m);
}

/* status.h: a failure the caller handled by a successful outermost module call (retrying with
 * good input, no lx_clear_error) leaves no text once an op succeeds: not sticky. */
static void test_not_sticky_after_module_call(void) {
    lx_clear_error();
    lx_kwarg kw[] = {LX_KW("features", lx_int_v(3))};
    lx_call ctor = {0, NULL, 1, kw};
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &ctor, &m), LX_OK);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (const int64_t[]){2, 4}, 1.0f));
    lx_value a = lx_array_v(x);
    lx_call call = {1, &a, 0, NULL};
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &call, NULL, &vars), LX_OK);
    lx_array *x5 = lx_autorelease(lx_array_full_f32(2, (const int64_t[]){2, 5}, 1.0f));
    lx_value a5 = lx_array_v(x5);
    lx_call bad = {1, &a5, 0, NULL};
    lx_value out = lx_none();
    lx_tree *before = lx_tree_copy(vars);
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, &bad, NULL, &out, NULL) != LX_OK);
    CHECK(lx_error_pending());
    CHECK(lx_tree_equal(vars, before)); /* the failed call changed nothing */
    CHECK_EQ_INT(linen_apply(m, vars, LINEN_NO_RNGS, &call, NULL, &out, NULL), LX_OK);
    lx_value_free(&out);
    CHECK(!lx_error_pending());
    CHECK(lx_mul(x, x) != NULL);
    CHECK_EQ_INT(lx_last_status(), LX_OK);
    CHECK_STR(lx_last_error(), "");
    /* status.h: a module call whose input is a failed op's NULL returns that failure's status */
    lx_array *failed = lx_reshape(x, LX_SHAPE(7));
    lx_value af = lx_array_v(failed);
    lx_call fcall = {1, &af, 0, NULL};
    CHECK_EQ_INT(linen_apply(m, vars, LINEN_NO_RNGS, &fcall, NULL, &out, NULL), LX_ERR_SHAPE);
    CHECK_ERROR_HAS("reshape: cannot reshape array of shape (2, 4)");
    lx_clear_error(); /* nothing pending: the NULL is reported as itself */
    CHECK_EQ_INT(linen_apply(m, vars, LINEN_NO_RNGS, &fcall, NULL, &out, NULL), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_HAS("is NULL");
    lx_tree_release(before);
    lx_tree_release(vars);
    linen_module_release(m);
}

/* nnx.h: attribute and method errors (AttributeError: NOT_FOUND; a declared field: TYPE). */
static void test_nnx_attr_errors(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_linear *l = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 3, r, &l), LX_OK);
    nnx_module *m = (nnx_module *)l;
    lx_value v;
    CHECK_FAILS(nnx_getattr(m, "nope", &v), LX_ERR_NOT_FOUND, "'Linear' object has no attribute 'nope'");
    CHECK_FAILS(nnx_delattr(m, "nope"), LX_ERR_NOT_FOUND, "'Linear' object has no attribute 'nope'");
    CHECK_FAILS(nnx_delattr(m, "kernel"), LX_ERR_TYPE, "cannot delete attribute 'kernel' of 'Linear'");
    lx_value out = lx_none();
    CHECK_FAILS(nnx_call(m, "encode", NULL, &out), LX_ERR_NOT_FOUND, "'Linear' object has no attribute 'encode'");
    lx_value self = nnx_module_v(m);
    CHECK_FAILS(nnx_setattr(m, "me", &self), LX_ERR_INVALID_ARGUMENT, "a module cannot contain itself");
    CHECK_FAILS(nnx_getattr(m, "me", &v), LX_ERR_NOT_FOUND, "no attribute 'me'"); /* nothing was set */
    nnx_module_release(m);
    nnx_rngs_release(r);
}

/* train.h: a failed nnx.Optimizer update leaves the model and the optimizer as they were. */
static void test_optimizer_failure_keeps_state(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_linear *l = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 3, r, &l), LX_OK);
    nnx_module *m = (nnx_module *)l;
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    nnx_optimizer *o = NULL;
    CHECK_EQ_INT(nnx_optimizer_new(m, optax_adam(OPTAX_CONST(0.1), NULL), &param, &o), LX_OK);
    lx_tree *p0 = NULL, *grads = NULL;
    CHECK_EQ_INT(nnx_state(m, 1, &param, &p0), LX_OK);
    lx_tree *pcopy = NULL;
    CHECK_EQ_INT(lx_tree_map(p0, copy_leaf, NULL, &pcopy), LX_OK);
    lx_tree *s0 = lx_tree_copy(nnx_optimizer_opt_state(o));
    lx_tree *scopy = NULL;
    CHECK_EQ_INT(lx_tree_map(s0, copy_leaf, NULL, &scopy), LX_OK);
    grads = lx_tree_new();
    lx_array *gk = lx_array_full_f32(2, (const int64_t[]){4, 3}, 1.0f);
    lx_array *gb = lx_array_full_f32(1, (const int64_t[]){5}, 1.0f); /* bias is (3,) */
    lx_tree_set(grads, "kernel", lx_array_v(gk));
    lx_tree_set(grads, "bias", lx_array_v(gb));
    lx_release(gk);
    lx_release(gb);
    CHECK(nnx_optimizer_update(o, m, grads, NULL) == LX_ERR_SHAPE);
    CHECK_ERROR_HAS("bias");
    CHECK_EQ_INT(nnx_optimizer_step(o), 0);
    lx_tree *p1 = NULL, *s1 = NULL;
    CHECK_EQ_INT(nnx_state(m, 1, &param, &p1), LX_OK);
    CHECK_EQ_INT(lx_tree_map(p1, copy_leaf, NULL, &s1), LX_OK);
    CHECK(lx_tree_equal(s1, pcopy)); /* the params' values */
    lx_tree_release(s1);
    s1 = NULL;
    CHECK_EQ_INT(lx_tree_map(nnx_optimizer_opt_state(o), copy_leaf, NULL, &s1), LX_OK);
    CHECK(lx_tree_equal(s1, scopy)); /* the moments' values */
    lx_tree *all[] = {p0, p1, s0, s1, pcopy, scopy, grads};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lx_tree_release(all[i]);
    nnx_optimizer_free(o);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

/* random.h: a legacy split too large for int32 counters is UNSUPPORTED, checked before writing. */
static void test_random_split_limits(void) {
    lx_key ks[2] = {{{7, 7}}, {{7, 7}}};
    CHECK_FAILS(lx_key_split(lx_key_from_seed(0), (int64_t)1 << 31, true, ks), LX_ERR_UNSUPPORTED,
                "legacy split of 2147483648 keys is not supported");
    CHECK(ks[0].k[0] == 7 && ks[1].k[1] == 7);
    CHECK_FAILS(lx_key_split(lx_key_from_seed(0), 2, false, NULL), LX_ERR_INVALID_ARGUMENT, "split: output buffer is NULL");
}

/* autodiff.h: the loss must be a float32 scalar: axes are SHAPE, another dtype DTYPE. */
static lx_status loss_vec(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n;
    (void)user;
    *loss = lx_mul(xs[0], xs[0]); /* (2,): not a scalar */
    return *loss ? LX_OK : lx_last_status();
}
static lx_status loss_int(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n;
    (void)xs;
    (void)user;
    *loss = lx_scalar_i32(3);
    return *loss ? LX_OK : lx_last_status();
}
static lx_status lin_loss_vec(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)user;
    (void)aux;
    const lx_value *w = lx_tree_get(params, "w");
    *loss = lx_mul(w->u.array, w->u.array);
    return *loss ? LX_OK : lx_last_status();
}
static void test_grad_loss_kind(void) {
    lx_array *x = lx_autorelease(lx_array_from_f32(1, (const int64_t[]){2}, (const float[]){1, 2}));
    lx_array *v = (lx_array *)1, *g = (lx_array *)1;
    CHECK_FAILS(lx_value_and_grad(loss_vec, NULL, 1, &x, &v, &g), LX_ERR_SHAPE,
                "Gradient only defined for scalar-output functions. Output had shape: (2,)");
    CHECK(g == NULL);
    CHECK_FAILS(lx_value_and_grad(loss_int, NULL, 1, &x, &v, &g), LX_ERR_DTYPE,
                "grad requires real-valued outputs (float32 here), but got int32");
    lx_tree *p = tree_w(1.0f), *grads = NULL;
    lx_array *lv = NULL;
    CHECK_FAILS(linen_value_and_grad(lin_loss_vec, NULL, p, &lv, &grads, NULL), LX_ERR_SHAPE,
                "linen_value_and_grad: Gradient only defined for scalar-output functions");
    CHECK(grads == NULL);
    CHECK(!lx_tape_active()); /* the failed pass left no tape behind */
    lx_tree_release(p);
}

/* fault.h: an array over the per-array byte limit is LX_ERR_NO_MEMORY naming the size and the
 * limit; abstract arrays are not limited. */
static void test_max_array_bytes(void) {
    size_t old = lx_max_array_bytes();
    lx_set_max_array_bytes(1024);
    CHECK_EQ_INT(lx_max_array_bytes(), 1024);
    CHECK_NULL_FAILS(lx_array_new(LX_F32, 2, (const int64_t[]){16, 17}), LX_ERR_NO_MEMORY,
                     "needs 1088 bytes, over the limit of 1024 bytes per array");
    lx_array *ok = lx_array_new(LX_F32, 2, (const int64_t[]){16, 16});
    CHECK(ok != NULL);
    lx_release(ok);
    lx_array *ab = lx_array_abstract(LX_F32, 2, (const int64_t[]){1024, 1024});
    CHECK(ab != NULL);
    lx_release(ab);
    lx_set_max_array_bytes(old);
}

/* array.h: NULL data is LX_ERR_INVALID_ARGUMENT unless the shape is empty; an unknown dtype name
 * is LX_ERR_DTYPE. */
static void test_array_errors(void) {
    CHECK_NULL_FAILS(lx_array_from_data(LX_F32, 1, (const int64_t[]){2}, NULL), LX_ERR_INVALID_ARGUMENT,
                     "array_from_data: data is NULL for float32(2,)");
    lx_array *e = lx_array_from_data(LX_F32, 1, (const int64_t[]){0}, NULL);
    CHECK(e && e->size == 0);
    lx_release(e);
    lx_dtype d = LX_I32;
    CHECK_FAILS(lx_dtype_from_name("float64", &d), LX_ERR_DTYPE, "unknown dtype 'float64'");
    CHECK_EQ_INT(d, LX_I32);
}

/* checkpoint.h: lx_raw_new's codes. */
static void test_raw_new(void) {
    unsigned char bytes[8] = {0};
    lx_raw *r = NULL;
    CHECK_FAILS(lx_raw_new(LX_RAW_NDARRAY, "float99", 1, (const int64_t[]){2}, bytes, 8, &r), LX_ERR_DTYPE,
                "unknown dtype 'float99'");
    CHECK_FAILS(lx_raw_new(LX_RAW_NDARRAY, "float64", 1, (const int64_t[]){2}, bytes, 8, &r), LX_ERR_INVALID_ARGUMENT,
                "8 bytes for 2 elements of float64 (want 16)");
    CHECK_FAILS(lx_raw_new(LX_RAW_NDARRAY, "float64", 1, (const int64_t[]){-1}, bytes, 8, &r), LX_ERR_SHAPE,
                "negative dimension -1");
    CHECK_FAILS(lx_raw_new(LX_RAW_NDARRAY, "float64", 1, NULL, bytes, 8, &r), LX_ERR_INVALID_ARGUMENT, "shape is NULL");
    CHECK_FAILS(lx_raw_new(LX_RAW_NDARRAY, "float64", 1, (const int64_t[]){1}, bytes, 8, NULL), LX_ERR_INVALID_ARGUMENT,
                "out is NULL");
    CHECK(r == NULL);
    CHECK_EQ_INT(lx_raw_new(LX_RAW_NDARRAY, "float64", 1, (const int64_t[]){1}, bytes, 8, &r), LX_OK);
    lx_array *a = NULL;
    CHECK_FAILS(lx_raw_to_array(r, &a), LX_ERR_DTYPE, "float64 is not one linnx computes with");
    CHECK(a == NULL);
    lx_raw_release(r);
}

/* checkpoint.h: lx_ckpt_sniff and lx_ckpt_load are LX_ERR_FORMAT for a file that is neither
 * format, LX_ERR_NOT_FOUND for one that does not exist. */
static void test_ckpt_sniff(void) {
    char path[] = "/tmp/linnx_contract_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, "hello, world\n", 13) == 13);
    close(fd);
    lx_ckpt_format f = LX_CKPT_AUTO;
    CHECK_FAILS(lx_ckpt_sniff(path, &f), LX_ERR_FORMAT, "is neither a safetensors file nor a Flax msgpack map");
    lx_tree *t = NULL;
    CHECK_FAILS(lx_ckpt_load(path, &t), LX_ERR_FORMAT, "");
    CHECK(t == NULL);
    unlink(path);
    CHECK_FAILS(lx_ckpt_sniff(path, &f), LX_ERR_NOT_FOUND, path);
    CHECK_FAILS(lx_ckpt_load(path, &t), LX_ERR_NOT_FOUND, path);
}

/* A NULL output pointer is the caller's mistake (LX_ERR_INVALID_ARGUMENT, its own message) even
 * while an earlier failure is pending; a NULL input with one pending stands for that failure. */
static void test_null_outputs_are_invalid(void) {
    lx_tree *t = lx_tree_new();
    lx_array *a = lx_array_scalar_f32(1.0f);
    lx_tree_set(t, "w", lx_array_v(a));
    lx_release(a);
    lx_array *bad = lx_reshape(a = lx_array_scalar_f32(2.0f), 1, (int64_t[]){3}); /* fails: pending */
    lx_release(a);
    CHECK(bad == NULL && lx_error_pending());
    lx_status st = lx_ckpt_restore(t, t, NULL, NULL);
    CHECK(st == LX_ERR_INVALID_ARGUMENT && strstr(lx_last_error(), "restore: out is NULL"));
    CHECK_FAILS(lx_layout_convert(t, LX_LAYOUT_AUTO, LX_LAYOUT_NNX, NULL, NULL), LX_ERR_INVALID_ARGUMENT, "layout: out is NULL");
    CHECK_FAILS(lx_layout_unbox(t, NULL), LX_ERR_INVALID_ARGUMENT, "layout: out is NULL");
    CHECK_FAILS(lx_safetensors_write(NULL, t, NULL), LX_ERR_INVALID_ARGUMENT, "safetensors: stream is NULL");
    /* these crashed (audit23 A23-5, the same rule) */
    size_t len = 0;
    unsigned char *bytes = NULL;
    const lx_value root = lx_tree_v(t);
    CHECK_FAILS(lx_msgpack_to_bytes(&root, NULL, NULL, &len), LX_ERR_INVALID_ARGUMENT, "msgpack: out or len is NULL");
    CHECK_FAILS(lx_msgpack_to_bytes(&root, NULL, &bytes, NULL), LX_ERR_INVALID_ARGUMENT, "msgpack: out or len is NULL");
    CHECK_FAILS(lx_msgpack_from_bytes("\x80", 1, NULL), LX_ERR_INVALID_ARGUMENT, "msgpack: out is NULL");
    CHECK_FAILS(lx_safetensors_to_bytes(t, NULL, NULL, &len), LX_ERR_INVALID_ARGUMENT, "safetensors: out or len is NULL");
    CHECK_EQ_INT(lx_safetensors_to_bytes(t, NULL, &bytes, &len), LX_OK);
    CHECK_FAILS(lx_safetensors_from_bytes(bytes, len, NULL, NULL, NULL), LX_ERR_INVALID_ARGUMENT,
                "safetensors: out is NULL");
    free(bytes);
    CHECK_FAILS(lx_ckpt_pure_dict(t, NULL), LX_ERR_INVALID_ARGUMENT, "pure_dict: out is NULL");
    CHECK_FAILS(lx_layout_from_name("nnx", NULL), LX_ERR_INVALID_ARGUMENT, "layout: out is NULL");
    CHECK_FAILS(lx_ckpt_sniff("/dev/null", NULL), LX_ERR_INVALID_ARGUMENT, "ckpt_sniff: path or out is NULL");
    CHECK_FAILS(lx_raw_to_array(NULL, NULL), LX_ERR_INVALID_ARGUMENT, "raw_to_array");
    CHECK_FAILS(lx_ckpt_manager_steps(NULL, NULL, NULL), LX_ERR_INVALID_ARGUMENT, "checkpoint manager");
    lx_tree *out = NULL;
    CHECK_FAILS(lx_layout_convert(NULL, LX_LAYOUT_AUTO, LX_LAYOUT_NNX, NULL, &out), LX_ERR_FAILED_INPUT, "layout: tree is NULL");
    lx_tree_release(t);
    lx_clear_error();
}

/* A NULL out pointer of a public call that returns a status is LX_ERR_INVALID_ARGUMENT with the
 * call's name (status.h: errors are values; these crashed with SIGSEGV, audit23 A23-5), and the
 * call has no other effect (the tree, the registry and the hooks are as they were). */
#define NULL_OUT(expr, needle) CHECK_FAILS(expr, LX_ERR_INVALID_ARGUMENT, needle)
static void test_null_out_pointers_core(void) {
    lx_array *a = lx_array_new(LX_F32, 2, (const int64_t[]){2, 3});
    lx_tree *t = lx_tree_new();
    lx_tree_set(t, "x", lx_int_v(1));
    const char *names[] = {"a", "b"};
    lx_box *bx = NULL;
    CHECK_EQ_INT(lx_box_partitioned(a, 2, names, NULL, &bx), LX_OK);
    /* box.h */
    lx_value kind_v = lx_str_v("Partitioned");
    NULL_OUT(lx_box_kind_from_value(&kind_v, NULL), "box_kind_from_value: output is NULL");
    NULL_OUT(lx_box_partitioned(a, 2, names, NULL, NULL), "Partitioned: output is NULL");
    NULL_OUT(lx_box_logically_partitioned(a, 2, names, NULL, 0, NULL, NULL), "LogicallyPartitioned: output is NULL");
    lx_initializer wrapped, ln = lx_init_lecun_normal();
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 2, names, NULL, &wrapped), LX_OK);
    NULL_OUT(lx_box_from_initializer(&wrapped, a, NULL), "box_from_initializer: output is NULL");
    NULL_OUT(lx_box_nnx_meta(&lx_Param, a, NULL, NULL), "NNXMeta: output is NULL");
    NULL_OUT(lx_box_replace_boxed(bx, a, NULL), "replace_boxed: output is NULL");
    NULL_OUT(lx_box_add_axis(bx, 0, "x", NULL), "add_axis: output is NULL");
    NULL_OUT(lx_box_remove_axis(bx, 0, "a", NULL), "remove_axis: output is NULL");
    NULL_OUT(lx_box_to_nnx_metadata(bx, NULL), "to_nnx_metadata: output is NULL");
    NULL_OUT(lx_box_from_nnx_metadata(LX_BOX_PARTITIONED, a, t, NULL), "from_nnx_metadata: output is NULL");
    NULL_OUT(lx_tree_unbox(t, NULL), "tree_map: output is NULL");
    /* variable.h */
    NULL_OUT(lx_variable_new(&lx_Param, a, NULL), "Variable: output is NULL");
    NULL_OUT(lx_variable_new_kw(&lx_Param, a, 0, NULL, NULL), "Variable: output is NULL");
    NULL_OUT(lx_variable_new_md(&lx_Param, a, t, NULL), "Variable: output is NULL");
    lx_variable *v = NULL;
    CHECK_EQ_INT(lx_variable_new(&lx_Param, a, &v), LX_OK);
    NULL_OUT(lx_variable_copy(v, NULL), "variable_copy: output is NULL");
    NULL_OUT(lx_vartype_new("X", NULL, NULL), "vartype_new: output is NULL");
    NULL_OUT(lx_variable_type_from_name("params", NULL, false, NULL), "variable_type_from_name: output is NULL");
    NULL_OUT(lx_variable_type_from_name("never_registered_a23", NULL, true, NULL),
             "variable_type_from_name: output is NULL");
    const lx_vartype *vt = NULL;
    CHECK_FAILS(lx_variable_type_from_name("never_registered_a23", NULL, false, &vt), LX_ERR_NOT_FOUND, "");
    NULL_OUT(lx_variable_name_from_type(&lx_Param, false, NULL), "variable_name_from_type: output is NULL");
    /* tree.h */
    NULL_OUT(lx_tree_flatten(t, NULL), "tree_flatten: output is NULL");
    lx_flat empty = {0};
    NULL_OUT(lx_tree_unflatten(&empty, NULL), "tree_unflatten: output is NULL");
    NULL_OUT(lx_tree_merge(t, t, NULL), "tree_merge: output is NULL");
    NULL_OUT(lx_tree_map(t, copy_leaf, NULL, NULL), "tree_map: output is NULL");
    NULL_OUT(lx_tree_get_path(t, "x", NULL), "tree_get_path: output is NULL");
    NULL_OUT(lx_flat_append(NULL, "x", lx_int_v(1)), "flat_append: output is NULL");
    CHECK_EQ_INT(lx_tree_len(t), 1);
    /* value.h, config.h */
    const lx_call call = LX_NO_CALL;
    NULL_OUT(lx_call_int(&call, 0, "n", 1, NULL), "call_int: output is NULL");
    NULL_OUT(lx_call_float(&call, 0, "x", 1, NULL), "call_float: output is NULL");
    NULL_OUT(lx_call_bool(&call, 0, "b", true, NULL), "call_bool: output is NULL");
    NULL_OUT(lx_call_str(&call, 0, "s", "d", NULL), "call_str: output is NULL");
    NULL_OUT(lx_call_array(&call, 0, "a", NULL), "call_array: output is NULL");
    NULL_OUT(lx_call_dup(&call, NULL), "call: output is NULL");
    NULL_OUT(lx_call_with_kwargs(&call, 0, NULL, NULL), "call: output is NULL");
    NULL_OUT(lx_call_without(&call, 0, NULL, NULL), "call: output is NULL");
    const lx_value one = lx_int_v(1);
    NULL_OUT(lx_value_dup(&one, NULL), "value_dup: output is NULL");
    lx_value dup = lx_int_v(5);
    CHECK_FAILS(lx_value_dup(NULL, &dup), LX_ERR_FAILED_INPUT, "value_dup: value is NULL");
    CHECK(dup.kind == LX_V_NONE);
    typedef struct { int64_t n; } cfg_t;
    static const lx_field fields[] = {LX_FIELD_INT(cfg_t, n, 3)};
    cfg_t cfg = {0}, cfg2 = {0};
    CHECK_EQ_INT(lx_config_defaults(fields, 1, &cfg), LX_OK);
    CHECK_EQ_INT(cfg.n, 3);
    NULL_OUT(lx_config_defaults(fields, 1, NULL), "config_defaults: output is NULL");
    NULL_OUT(lx_config_bind(fields, 1, &call, NULL, "Cfg"), "Cfg: output is NULL");
    NULL_OUT(lx_config_override(fields, 1, &call, NULL, "Cfg"), "Cfg: output is NULL");
    NULL_OUT(lx_config_get(fields, 1, &cfg, "n", NULL), "config_get: output is NULL");
    lx_value got;
    NULL_OUT(lx_config_get(fields, 1, NULL, "n", &got), "config_get: config is NULL");
    NULL_OUT(lx_config_copy(fields, 1, NULL, &cfg), "config_copy: dst is NULL");
    NULL_OUT(lx_config_copy(fields, 1, &cfg2, NULL), "config_copy: src is NULL");
    /* array.h, init.h, random.h, primitive.h */
    NULL_OUT(lx_dtype_from_name("float32", NULL), "dtype_from_name: output is NULL");
    NULL_OUT(lx_array_fprint(NULL, a), "array_fprint: FILE is NULL");
    NULL_OUT(lx_compute_fans(2, (const int64_t[]){2, 3}, lx_axis(-2), lx_axis(-1), lx_no_axes(), NULL, NULL),
             "compute_fans: fan_in or fan_out is NULL");
    NULL_OUT(lx_initializer_from_name("zeros", NULL), "initializer_from_name: output is NULL");
    NULL_OUT(lx_init_variance_scaling(1, "fan_in", "normal", lx_axis(-2), lx_axis(-1), lx_no_axes(), NULL),
             "variance_scaling: output is NULL");
    NULL_OUT(lx_init_with_partitioning(&ln, 2, names, NULL, NULL), "with_partitioning");
    NULL_OUT(lx_init_with_logical_partitioning(&ln, 2, names, NULL, 0, NULL, NULL), "with_logical_partitioning");
    NULL_OUT(lx_init_apply_into(&ln, lx_key_from_seed(0), LX_F32, 2, (const int64_t[]){2, 3}, NULL),
             "lecun_normal: output buffer is NULL");
    NULL_OUT(lx_key_split(lx_key_from_seed(0), 2, false, NULL), "split: output buffer is NULL");
    NULL_OUT(lx_random_bits_into(lx_key_from_seed(0), 3, NULL), "output buffer is NULL");
    NULL_OUT(lx_random_uniform_into(lx_key_from_seed(0), 3, 0, 1, NULL), "output buffer is NULL");
    NULL_OUT(lx_random_normal_into(lx_key_from_seed(0), 3, NULL), "output buffer is NULL");
    NULL_OUT(lx_random_truncated_normal_into(lx_key_from_seed(0), -2, 2, 3, NULL), "output buffer is NULL");
    NULL_OUT(lx_random_bernoulli_into(lx_key_from_seed(0), 0.5f, 3, NULL), "output buffer is NULL");
    NULL_OUT(lx_random_permutation_into(lx_key_from_seed(0), 3, NULL), "output buffer is NULL");
    NULL_OUT(lx_random_randint_into(lx_key_from_seed(0), 3, 0, 5, NULL), "output buffer is NULL");
    NULL_OUT(lx_prim_find("add", NULL), "prim_find: output is NULL");
    /* ops.h, autodiff.h, sampling.h */
    NULL_OUT(lx_split(a, 2, 0, NULL), "split: outs is NULL");
    NULL_OUT(lx_tape_new(NULL), "tape_new: out is NULL");
    lx_array *vals = NULL;
    NULL_OUT(lx_top_k(a, 1, &vals, NULL), "top_k: values or indices is NULL");
    NULL_OUT(lx_top_k(a, 1, NULL, &vals), "top_k: values or indices is NULL");
    /* quant.h: no session is left installed by a refused begin */
    lx_qt_rules *rules = NULL;
    NULL_OUT(lx_qt_rules_compile(NULL, 0, NULL), "qt_rules_compile");
    CHECK_EQ_INT(lx_qt_rules_compile(NULL, 0, &rules), LX_OK);
    NULL_OUT(lx_qt_begin(rules, LX_QT_FAKE, NULL), "qt_begin: output is NULL");
    NULL_OUT(lx_qt_compare_begin(rules, NULL), "qt_begin: output is NULL");
    NULL_OUT(lx_qt_calibrate_begin(rules, t, NULL), "qt_calibrate_begin: output is NULL");
    NULL_OUT(lx_qt_begin_qat(rules, t, false, NULL), "qt_begin_qat: output is NULL");
    NULL_OUT(lx_qt_begin_ptq(rules, t, NULL), "qt_begin_ptq: output is NULL");
    CHECK(!lx_prim_observed());
    lx_qt_session *qs = NULL;
    CHECK_EQ_INT(lx_qt_begin(rules, LX_QT_FAKE, &qs), LX_OK); /* and one can still begin */
    lx_qt_end(qs);
    lx_qt_rules_free(rules);
    lx_variable_release(v);
    lx_box_release(bx);
    lx_tree_release(t);
    lx_release(a);
    lx_clear_error();
}

/* The same rule for the module systems, the bridge and training (linen.h, nnx.h, bridge.h,
 * to_linen.h, to_nnx.h, train.h): a NULL out-parameter is LX_ERR_INVALID_ARGUMENT naming it, never
 * a crash (linen_return_array, bridge_to_linen_var, bridge_get_col_name and the two metadata_fns
 * crashed; the others said only "NULL argument" or named another function). */
static void test_null_out_pointers_modules(void) {
    nnx_rngs *r = NULL;
    nnx_linear *lin = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(3, 2, r, &lin), LX_OK);
    nnx_module *m = &lin->base;
    lx_array *x = lx_array_full_f32(2, (int64_t[]){1, 3}, 1.0f);
    linen_module *dense = NULL;
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &LX_CALL_KWARGS(LX_KW_INT("features", 2)), &dense), LX_OK);
    CHECK_EQ_INT(linen_init(dense, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &vars), LX_OK);
    lx_variable *v = NULL;
    CHECK_EQ_INT(lx_variable_new(&lx_Param, x, &v), LX_OK);
    /* linen.h, linen_layers.h */
    const lx_call kw = LX_CALL_KWARGS(LX_KW_INT("features", 2));
    NULL_OUT(linen_module_new(&linen_Dense, &kw, NULL), "linen_module_new: out is NULL");
    NULL_OUT(linen_module_new_named(&linen_Dense, &kw, "d", NULL), "linen_module_new: out is NULL");
    NULL_OUT(linen_module_attr(dense, "features", NULL), "linen_module_attr: out is NULL");
    NULL_OUT(linen_module_clone(dense, NULL, NULL), "linen_module_clone: out is NULL");
    NULL_OUT(linen_init(dense, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, NULL), "linen_init: variables is NULL");
    NULL_OUT(linen_sequential_new(1, &dense, NULL), "linen_sequential_new: out is NULL");
    NULL_OUT(linen_merge_param("deterministic", NULL, NULL, NULL), "merge_param: out is NULL");
    NULL_OUT(linen_return_array(NULL, x), "linen_return_array: out is NULL");
    NULL_OUT(linen_unstack_layers(vars, "layers", (linen_var_axes){0}, NULL, NULL), "linen_unstack_layers: output is NULL");
    NULL_OUT(linen_stack_layers(vars, "layers", (linen_var_axes){0}, NULL, NULL), "linen_stack_layers: output is NULL");
    /* nnx.h */
    NULL_OUT(nnx_getattr(m, "in_features", NULL), "nnx_getattr: out is NULL");
    NULL_OUT(nnx_call(m, NULL, &LX_ARGS(x), NULL), "nnx_call: out is NULL");
    nnx_graphdef *g = NULL;
    NULL_OUT(nnx_split(m, 0, NULL, &g, NULL), "split: states is NULL");
    CHECK(g == NULL);
    NULL_OUT(nnx_state(m, 0, NULL, NULL), "state: out is NULL");
    nnx_module *stream = NULL;
    CHECK_EQ_INT(nnx_rngs_fork_stream(r, "default", &stream), LX_OK);
    NULL_OUT(nnx_rngs_stream_draw(stream, NULL), "RngStream: out is NULL");
    NULL_OUT(nnx_state_flatten(vars, NULL), "state_flatten: out is NULL");
    NULL_OUT(nnx_state_unflatten(&(lx_flat){0}, NULL), "state_unflatten: out is NULL");
    NULL_OUT(nnx_state_fprint(NULL, vars, 3), "state_fprint: FILE is NULL");
    lx_initializer zeros = lx_init_zeros();
    NULL_OUT(nnx_param_new(&lx_Param, &zeros, lx_key_from_seed(0), LX_F32, 1, (const int64_t[]){2}, NULL, NULL),
             "nnx_param_new: out is NULL");
    NULL_OUT(nnx_initializer_metadata(&zeros, NULL), "nnx_initializer_metadata: out is NULL");
    nnx_functional *fn = NULL;
    const lx_call ctor = LX_CALL_ARGS(lx_int_v(3), lx_int_v(2));
    NULL_OUT(nnx_functional_new(&nnx_Linear, &ctor, NULL), "functional: out is NULL");
    CHECK_EQ_INT(nnx_functional_new(&nnx_Linear, &ctor, &fn), LX_OK);
    NULL_OUT(nnx_functional_init(fn, r, NULL), "Functional.init: state is NULL");
    lx_tree *st = NULL;
    CHECK_EQ_INT(nnx_functional_init(fn, r, &st), LX_OK);
    NULL_OUT(nnx_functional_apply(fn, 1, &st, NULL, &LX_ARGS(x), NULL, NULL), "Functional.apply: out is NULL");
    /* bridge.h, to_linen.h */
    NULL_OUT(bridge_to_linen_var(v, NULL), "to_linen_var: output is NULL");
    NULL_OUT(bridge_metadata_to_linen_var(v, NULL, NULL), "to_linen_var: output is NULL");
    NULL_OUT(bridge_metadata_to_logically_partitioned(v, NULL, NULL), "variable_to_logically_partitioned: output is NULL");
    const lx_value none = lx_none();
    NULL_OUT(bridge_to_nnx_var("params", &none, NULL), "to_nnx_var: output is NULL");
    NULL_OUT(bridge_get_col_name("params/x", NULL, 8), "get_col_name: buf is NULL");
    NULL_OUT(bridge_linen_vars_to_nnx_attrs(vars, NULL), "linen_vars_to_nnx_attrs: output is NULL");
    NULL_OUT(bridge_nnx_attrs_to_linen_vars(vars, NULL), "nnx_attrs_to_linen_vars: output is NULL");
    NULL_OUT(bridge_with_partitioning(1, (const char *const[]){"a"}, NULL, NULL), "with_partitioning: output is NULL");
    /* train.h */
    linen_train_state *ts = NULL;
    CHECK_EQ_INT(linen_train_state_create(NULL, vars, optax_sgd(OPTAX_CONST(0.1), false, 0, false), &ts), LX_OK);
    NULL_OUT(linen_train_state_dict(ts, NULL), "TrainState state dict: out is NULL");
    nnx_filter wrt = NNX_OF_TYPE(&lx_Param);
    nnx_optimizer *opt = NULL;
    CHECK_EQ_INT(nnx_optimizer_new(m, optax_sgd(OPTAX_CONST(0.1), false, 0, false), &wrt, &opt), LX_OK);
    NULL_OUT(nnx_optimizer_state(opt, NULL), "nnx.state(optimizer): out is NULL");
    NULL_OUT(lx_batcher_init(NULL, 4, 2, false), "lx_batcher_init: b is NULL");
    /* nothing was changed by the refused calls: the model still computes what it did */
    lx_value y = lx_none();
    CHECK_EQ_INT(nnx_call(m, NULL, &LX_ARGS(x), &y), LX_OK);
    CHECK(y.kind == LX_V_ARRAY && y.u.array->shape[1] == 2);
    lx_value_free(&y);
    nnx_optimizer_free(opt);
    linen_train_state_free(ts);
    lx_tree_release(st);
    nnx_functional_free(fn);
    nnx_module_release(stream);
    lx_variable_release(v);
    lx_tree_release(vars);
    linen_module_release(dense);
    lx_release(x);
    nnx_module_release(m);
    nnx_rngs_release(r);
    lx_clear_error();
}

/* nnx.h: a list refuses an item from which the list is reachable (seq.layers.append(seq), or a
 * module holding seq), as nnx_setattr does: counted references would make the cycle immortal. */
static void test_list_append_refuses_cycle(void) {
    nnx_rngs *r = NULL;
    nnx_linear *lin = NULL, *holder = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(3, 3, r, &lin), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(3, 3, r, &holder), LX_OK);
    nnx_module *seq = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_Sequential, &LX_CALL_ARGS(nnx_module_v(&lin->base)), NULL, &seq), LX_OK);
    nnx_sequential *sq = (nnx_sequential *)seq;
    CHECK_FAILS(nnx_list_append(&sq->layers, nnx_module_v(seq)), LX_ERR_INVALID_ARGUMENT,
                "nnx_list_append: a module cannot contain itself");
    const lx_value sv = nnx_module_v(seq);
    CHECK_EQ_INT(nnx_setattr(&holder->base, "parent", &sv), LX_OK);
    CHECK_FAILS(nnx_list_append(&sq->layers, nnx_module_v(&holder->base)), LX_ERR_INVALID_ARGUMENT,
                "a module cannot contain itself");
    CHECK_EQ_INT(sq->layers.n, 1);
    /* sharing is no cycle: the same layer twice is fine */
    CHECK_EQ_INT(nnx_list_append(&sq->layers, nnx_module_v(&lin->base)), LX_OK);
    CHECK_EQ_INT(sq->layers.n, 2);
    nnx_module_release(&holder->base); /* frees seq's last outside reference too */
    nnx_module_release(seq);
    nnx_module_release(&lin->base);
    nnx_rngs_release(r);
}

/* A printable picture of everything nnx_update may change: every Variable (value and metadata)
 * by path, and the dynamic attribute names. */
static void model_picture(nnx_module *m, char *buf, size_t cap) {
    lx_tree *st = NULL;
    size_t n = 0;
    buf[0] = '\0';
    if (nnx_state(m, 0, NULL, &st) != LX_OK) {
        snprintf(buf, cap, "state failed: %s", lx_last_error());
        return;
    }
    lx_flat f = {0};
    if (lx_tree_flatten(st, &f) == LX_OK)
        for (size_t i = 0; i < f.len && n < cap; i++) {
            const lx_variable *v = f.items[i].value.u.var;
            const float *d = lx_f32(lx_variable_get_value(v));
            const lx_tree *md = lx_variable_metadata(v);
            n += (size_t)snprintf(buf + n, cap - n, "%s %s %g %g md%zu", f.items[i].path, lx_variable_type(v)->name,
                                  (double)d[0], (double)d[lx_variable_get_value(v)->size - 1], lx_tree_len(md));
            for (size_t k = 0; k < lx_tree_len(md) && n < cap; k++) n += (size_t)snprintf(buf + n, cap - n, " %s", lx_tree_key(md, k));
            if (n < cap) n += (size_t)snprintf(buf + n, cap - n, "\n");
        }
    for (int i = 0; i < nnx_attr_count(m) && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, "attr %s\n", nnx_attr_name(m, i));
    lx_flat_free(&f);
    lx_tree_release(st);
}

/* nnx.h nnx_update: "every path is checked before anything changes" holds for allocation failures
 * too. The update below sets a value from a plain array, a value and metadata from a Variable,
 * inserts a new attribute, a new nested attribute and entries of an existing tree attribute; every
 * allocation it makes is failed in turn: each failing run leaves the model exactly as it was, and
 * the first run without a failure gives the full update. */
static void test_update_all_or_nothing(void) {
    if (!lx_fault_available()) return;
    char before[4096], after[4096], want[4096] = "";
    int failing = 0, changed = 0;
    for (int64_t n = 1; n < 1000; n++) {
        nnx_rngs *r = NULL;
        nnx_linear *lin = NULL;
        CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
        CHECK_EQ_INT(nnx_linear_new(3, 2, r, &lin), LX_OK);
        nnx_module *m = &lin->base;
        lx_array *k7 = lx_array_full_f32(2, (int64_t[]){3, 2}, 7.0f), *b5 = lx_array_full_f32(1, (int64_t[]){2}, 5.0f);
        lx_variable *kv = NULL, *ev = NULL, *old = NULL;
        CHECK_EQ_INT(lx_variable_new_kw(&lx_Param, k7, 1, (const lx_kwarg[]){LX_KW_STR("note", "hi")}, &kv), LX_OK);
        CHECK_EQ_INT(lx_variable_new(&lx_BatchStat, b5, &ev), LX_OK);
        CHECK_EQ_INT(lx_variable_new(&lx_BatchStat, b5, &old), LX_OK);
        lx_tree *stats = lx_tree_new();
        CHECK_EQ_INT(lx_tree_set(stats, "a", lx_var_v(old)), LX_OK);
        const lx_value sv = lx_tree_v(stats);
        CHECK_EQ_INT(nnx_setattr(m, "stats", &sv), LX_OK);
        lx_tree *up = lx_tree_new();
        lx_tree_set(up, "kernel", lx_var_v(kv));
        lx_tree_set(up, "bias", lx_array_v(b5));
        lx_tree_set_path(up, "extra", lx_var_v(ev));
        lx_tree_set_path(up, "sub/deep/x", lx_var_v(ev));
        lx_tree_set_path(up, "stats/b", lx_var_v(ev));
        lx_tree_set_path(up, "stats/c/d", lx_var_v(ev));
        model_picture(m, before, sizeof before);
        lx_fault_set(n, false);
        lx_status s = nnx_update(m, 1, &up);
        bool fired = lx_fault_fired();
        lx_fault_set(-1, false);
        model_picture(m, after, sizeof after);
        if (s != LX_OK) {
            failing++;
            CHECK_EQ_INT(s, LX_ERR_NO_MEMORY);
            if (strcmp(before, after) != 0) changed++;
        } else {
            snprintf(want, sizeof want, "%s", after);
        }
        lx_tree *all[] = {up, stats};
        for (size_t i = 0; i < 2; i++) lx_tree_release(all[i]);
        lx_variable_release(kv), lx_variable_release(ev), lx_variable_release(old);
        lx_release(k7), lx_release(b5);
        nnx_module_release(m);
        nnx_rngs_release(r);
        if (s == LX_OK && !fired) break;
    }
    CHECK(failing > 5);
    CHECK_EQ_INT(changed, 0);
    CHECK_STR(want, "bias Param 5 5 md0\nextra BatchStat 5 5 md0\nkernel Param 7 7 md1 note\nstats/a BatchStat 5 5 md0\n"
                    "attr stats\nattr extra\nattr sub\n");
    lx_clear_error();
}

/* linen_layers.h Conv: Flax refuses a bare int kernel_size (a TypeError at the call); linnx at
 * construction, and now on clone(kernel_size=3) too, which used to give a 1-D kernel (3,). */
static void test_conv_clone_int_kernel_size(void) {
    linen_module *conv = NULL, *c2 = (linen_module *)1;
    const lx_call kw = LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW("kernel_size", lx_ints_v(2, (const int64_t[]){3, 3})));
    CHECK_EQ_INT(linen_module_new(&linen_Conv, &kw, &conv), LX_OK);
    const char *msg = "Expected Conv kernel_size to be a tuple/list of integers (eg.: [3, 3]) but got 3.";
    CHECK_FAILS(linen_module_new(&linen_Conv, &LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW_INT("kernel_size", 3)), &c2),
                LX_ERR_TYPE, msg);
    CHECK(c2 == NULL);
    c2 = (linen_module *)1;
    CHECK_FAILS(linen_module_clone(conv, &LX_CALL_KWARGS(LX_KW_INT("kernel_size", 3)), &c2), LX_ERR_TYPE, msg);
    CHECK(c2 == NULL);
    /* a tuple override and other fields are fine */
    CHECK_EQ_INT(linen_module_clone(conv, &LX_CALL_KWARGS(LX_KW("kernel_size", lx_ints_v(1, (const int64_t[]){5}))), &c2), LX_OK);
    const linen_conv_config *cc = linen_module_config(c2);
    CHECK(cc->kernel_size.n == 1 && cc->kernel_size.v[0] == 5);
    linen_module_release(c2);
    linen_module_release(conv);
}

/* version.h: the headers' version macros agree with each other and with the loaded library. */
static void test_version(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", LINNX_VERSION_MAJOR, LINNX_VERSION_MINOR, LINNX_VERSION_PATCH);
    CHECK_STR(LINNX_VERSION, want);
    CHECK_STR(lx_version(), LINNX_VERSION);
    CHECK_EQ_INT(lx_version_number(), LINNX_VERSION_NUMBER);
    CHECK_EQ_INT(LINNX_VERSION_NUMBER, LINNX_VERSION_MAJOR * 1000000 + LINNX_VERSION_MINOR * 1000 + LINNX_VERSION_PATCH);
}

int main(void) {
    RUN(test_null_outputs_are_invalid);
    RUN(test_null_out_pointers_core);
    RUN(test_null_out_pointers_modules);
    RUN(test_list_append_refuses_cycle);
    RUN(test_update_all_or_nothing);
    RUN(test_conv_clone_int_kernel_size);
    RUN(test_version);
    RUN(test_failed_inputs);
    RUN(test_optax_failure_keeps_inputs);
    RUN(test_train_state_null_tx);
    RUN(test_llama_train_errors);
    RUN(test_linen_layers_subset);
    RUN(test_not_sticky_after_module_call);
    RUN(test_nnx_attr_errors);
    RUN(test_optimizer_failure_keeps_state);
    RUN(test_random_split_limits);
    RUN(test_grad_loss_kind);
    RUN(test_max_array_bytes);
    RUN(test_array_errors);
    RUN(test_raw_new);
    RUN(test_ckpt_sniff);
    return lx_test_finish();
}
