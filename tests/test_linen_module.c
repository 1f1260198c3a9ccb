/* The Linen module system: init/apply, mutability, names, rng derivation, setup, errors.
 * Expected keys and parameters come from scripts/gen_linen_fixtures.py (the reference model),
 * expected messages from Flax's source; nothing is computed with the code under test. */
#include <string.h>

#include "fixtures/linen_fixtures.h"
#include "linnx/box.h"
#include "linnx/init.h"
#include "linnx/linen.h"
#include "linnx/tree.h"
#include "lx_test.h"

/* A one-array call record (static storage: callers never nest these). */
static lx_value a_slot_[1];
static lx_call a_call_;
static const lx_call *A(lx_array *x) {
    a_slot_[0] = lx_array_v(x);
    a_call_ = (lx_call){1, a_slot_, 0, NULL};
    return &a_call_;
}

static lx_array *leaf(const lx_tree *t, const char *path) {
    const lx_value *v = t ? lx_tree_find(t, path) : NULL;
    return v && v->kind == LX_V_ARRAY ? v->u.array : NULL;
}

static const lf_rng *fixture_rng(const char *path, const char *stream, uint32_t count) {
    for (size_t i = 0; i < sizeof LF_RNGS / sizeof LF_RNGS[0]; i++)
        if (strcmp(LF_RNGS[i].path, path) == 0 && strcmp(LF_RNGS[i].stream, stream) == 0 &&
            LF_RNGS[i].count == count)
            return &LF_RNGS[i];
    return NULL;
}

#define CHECK_RNG(got, path, stream, count)                                                     \
    do {                                                                                        \
        const lf_rng *f_ = fixture_rng(path, stream, count);                                    \
        LX_TEST_REPORT_(f_ && (got).k[0] == f_->key[0] && (got).k[1] == f_->key[1],             \
                        "make_rng %s %s #%d = [%u, %u]", path, stream, count, (got).k[0], (got).k[1]); \
    } while (0)

/* ---------------------------------------------------------------- test module types */

/* Lin: kernel (in, features) lecun_normal, bias zeros; then one more make_rng('params') whose
 * key is recorded (it must be count 3: the zeros bias consumed count 2). */
typedef struct { int64_t features; bool use_bias; } lin_config;
static const lx_field LIN_FIELDS[] = {
    LX_FIELD_REQUIRED_INT(lin_config, features),
    LX_FIELD_BOOL(lin_config, use_bias, true),
};
static lx_key lin_after_key;
static bool lin_record_after;
static lx_status lin_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const lin_config *cfg = linen_config(s);
    lx_array *x, *k, *b;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    lx_initializer ln = lx_init_lecun_normal(), z = lx_init_zeros();
    LX_TRY(linen_param(s, "kernel", &ln, LX_F32, 2, (int64_t[]){x->shape[x->ndim - 1], cfg->features}, &k));
    if (cfg->use_bias) LX_TRY(linen_param(s, "bias", &z, LX_F32, 1, (int64_t[]){cfg->features}, &b));
    if (lin_record_after) LX_TRY(linen_make_rng(s, "params", &lin_after_key));
    return linen_return_array(out, k);
}
static lx_status lin_encode(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    *out = lx_str_v(NULL);
    *out = lx_int_v(linen_is_initializing(s) ? 1 : 2);
    return LX_OK;
}
static const linen_method LIN_METHODS[] = {LINEN_METHOD("__call__", lin_call), LINEN_METHOD("encode", lin_encode)};
static const linen_type LIN = {
    .name = "Lin", .config_size = sizeof(lin_config), .config = LIN_FIELDS, .nconfig = LX_COUNT(LIN_FIELDS),
    .methods = LIN_METHODS, .nmethods = LX_COUNT(LIN_METHODS),
};

static linen_module *lin(int64_t features) {
    linen_module *m = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(features));
    CHECK(linen_module_new(&LIN, &c, &m) == LX_OK);
    return m;
}

/* Probe: records make_rng keys and what it sees of itself. */
static lx_key probe_keys[8];
static int probe_nkeys;
static const char *probe_stream = "params";
static linen_scope *probe_seen_current;
static lx_status probe_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    probe_seen_current = linen_current_scope();
    for (int i = 0; i < 2; i++) LX_TRY(linen_make_rng(s, probe_stream, &probe_keys[probe_nkeys++ & 7]));
    *out = lx_none();
    return LX_OK;
}
static const linen_method PROBE_METHODS[] = {LINEN_METHOD("__call__", probe_call)};
static const linen_type PROBE = {.name = "Probe", .methods = PROBE_METHODS, .nmethods = LX_COUNT(PROBE_METHODS)};

/* Outer: calls Probe twice (auto-named), Lin once, and a Probe named 'inner'. */
static lx_status outer_call(linen_scope *s, const lx_call *c, lx_value *out) {
    linen_module *p = NULL, *l = NULL;
    LX_TRY(linen_module_new(&PROBE, NULL, &p));
    lx_value v;
    lx_status st = linen_call_child(s, p, NULL, NULL, c, &v);
    if (st == LX_OK) st = linen_call_child(s, p, NULL, NULL, c, &v);
    if (st == LX_OK) st = linen_call_child(s, p, "inner", NULL, c, &v);
    lx_array *x = NULL;
    if (st == LX_OK) st = lx_call_array(c, 0, "inputs", &x);
    if (st == LX_OK) {
        l = lin(3);
        lx_array *y = linen_call_array(s, l, NULL, x);
        st = linen_return_array(out, y);
    }
    linen_module_release(p);
    linen_module_release(l);
    return st;
}
static const linen_method OUTER_METHODS[] = {LINEN_METHOD("__call__", outer_call)};
static const linen_type OUTER = {.name = "Outer", .methods = OUTER_METHODS, .nmethods = LX_COUNT(OUTER_METHODS)};

/* Counter: a counter variable incremented when 'counter' is mutable, a sow, a param. */
static lx_status zero_init(lx_key k, void *user, lx_value *leaf_out) {
    (void)k;
    (void)user;
    lx_array *a = lx_array_scalar_f32(0.0f);
    if (!a) return lx_last_status();
    *leaf_out = lx_array_v(a);
    return LX_OK;
}
static lx_status counter_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    lx_value v;
    LX_TRY(linen_variable(s, "counter", "count", zero_init, NULL, &v));
    lx_array *count = v.u.array;
    if (linen_is_mutable_collection(s, "counter")) {
        lx_array *n = lx_array_scalar_f32(lx_f32(count)[0] + 1.0f);
        lx_value nv = lx_array_v(n);
        lx_status st = linen_put_variable(s, "counter", "count", &nv);
        lx_release(n);
        LX_TRY(st);
    }
    lx_array *one = lx_autorelease(lx_array_scalar_f32(1.0f));
    LX_TRY(linen_sow(s, "intermediates", "seen", one));
    LX_TRY(linen_sow(s, "intermediates", "seen", one));
    lx_initializer o = lx_init_ones();
    lx_array *w;
    LX_TRY(linen_param(s, "w", &o, LX_F32, 1, (int64_t[]){2}, &w));
    return linen_return_array(out, w);
}
static const linen_method COUNTER_METHODS[] = {LINEN_METHOD("__call__", counter_call)};
static const linen_type COUNTER = {.name = "Counter", .methods = COUNTER_METHODS, .nmethods = LX_COUNT(COUNTER_METHODS)};

/* Writer: always writes the counter (fails when the collection is immutable). */
static lx_status writer_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    lx_array *n = lx_autorelease(lx_array_scalar_f32(5.0f));
    lx_value nv = lx_array_v(n);
    LX_TRY(linen_put_variable(s, "counter", "count", &nv));
    *out = lx_none();
    return LX_OK;
}
static const linen_method WRITER_METHODS[] = {LINEN_METHOD("__call__", writer_call)};
static const linen_type WRITER = {.name = "Writer", .methods = WRITER_METHODS, .nmethods = LX_COUNT(WRITER_METHODS)};

/* WriteThenFail: writes the counter and a new collection, then fails. */
static lx_status write_fail_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    (void)out;
    lx_array *n = lx_autorelease(lx_array_scalar_f32(7.0f));
    lx_value nv = lx_array_v(n);
    LX_TRY(linen_put_variable(s, "counter", "count", &nv));
    LX_TRY(linen_put_variable(s, "extra", "x", &nv));
    return lx_fail(LX_ERR_INVALID_ARGUMENT, "write_fail: on purpose");
}
static const linen_method WRITE_FAIL_METHODS[] = {LINEN_METHOD("__call__", write_fail_call)};
static const linen_type WRITE_FAIL = {.name = "WriteThenFail", .methods = WRITE_FAIL_METHODS, .nmethods = LX_COUNT(WRITE_FAIL_METHODS)};

/* Crowd: more names, children and auto-name prefixes than a scope keeps inline, names longer
 * than its inline reservation text, more params than a frame keeps inline, then (when
 * `crowd_clash`) a long name used twice. */
static bool crowd_clash;
static lx_status crowd_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_initializer z = lx_init_zeros();
    lx_array *p;
    char name[96];
    for (int i = 0; i < 18; i++) {
        snprintf(name, sizeof name, "a_parameter_name_longer_than_inline_text_%d", i);
        LX_TRY(linen_param(s, name, &z, LX_F32, 1, (int64_t[]){1}, &p));
    }
    if (crowd_clash) LX_TRY(linen_param(s, "a_parameter_name_longer_than_inline_text_3", &z, LX_F32, 1, (int64_t[]){1}, &p));
    /* A new instance per call: distinct children Probe_0..2, Lin_0, Lin_1, Counter_0 (one
     * instance called again would bind the same child, as in Flax). */
    linen_module *ct = NULL;
    lx_status st = linen_module_new(&COUNTER, NULL, &ct);
    lx_value v = lx_none();
    for (int i = 0; i < 3 && st == LX_OK; i++) {
        linen_module *pr = NULL;
        st = linen_module_new(&PROBE, NULL, &pr);
        if (st == LX_OK) st = linen_call_child(s, pr, NULL, NULL, c, &v);
        linen_module_release(pr);
    }
    for (int i = 0; i < 2 && st == LX_OK; i++) {
        linen_module *l = lin(2);
        st = linen_call_child(s, l, NULL, NULL, c, &v);
        lx_value_free(&v);
        linen_module_release(l);
    }
    if (st == LX_OK) st = linen_call_child(s, ct, NULL, NULL, c, &v);
    lx_value_free(&v);
    linen_module_release(ct);
    *out = lx_none();
    return st;
}
static const linen_method CROWD_METHODS[] = {LINEN_METHOD("__call__", crowd_call)};
static const linen_type CROWD = {.name = "Crowd", .methods = CROWD_METHODS, .nmethods = LX_COUNT(CROWD_METHODS)};

/* SetupMLP: children attached in setup as 'hidden' (Lin(8)) and 'out' (Lin(2)). */
static int setup_runs;
static lx_status setup_mlp_setup(linen_scope *s) {
    setup_runs++;
    linen_module *h = lin(8), *o = lin(2);
    lx_status st = linen_setup_child(s, "hidden", h);
    if (st == LX_OK) st = linen_setup_child(s, "out", o);
    linen_module_release(h);
    linen_module_release(o);
    return st;
}
static lx_status setup_mlp_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_value h;
    LX_TRY(linen_call_attr(s, "hidden", NULL, c, &h));
    lx_call c2 = LX_ARGS(h.u.array);
    lx_status st = linen_call_attr(s, "out", NULL, &c2, out);
    lx_value_free(&h);
    return st;
}
static const linen_method SETUP_MLP_METHODS[] = {LINEN_METHOD("__call__", setup_mlp_call)};
static const linen_type SETUP_MLP = {
    .name = "SetupMLP", .methods = SETUP_MLP_METHODS, .nmethods = LX_COUNT(SETUP_MLP_METHODS), .setup = setup_mlp_setup};

/* Twice: calls one SetupMLP instance twice under one name (a shared instance). */
static lx_status twice_call(linen_scope *s, const lx_call *c, lx_value *out) {
    linen_module *m = NULL;
    LX_TRY(linen_module_new(&SETUP_MLP, NULL, &m));
    lx_value a, b;
    lx_status st = linen_call_child(s, m, "shared", NULL, c, &a);
    if (st == LX_OK) {
        lx_value_free(&a);
        st = linen_call_child(s, m, "shared", NULL, c, &b);
        if (st == LX_OK) *out = b;
    }
    linen_module_release(m);
    return st;
}
static const linen_method TWICE_METHODS[] = {LINEN_METHOD("__call__", twice_call)};
static const linen_type TWICE = {.name = "Twice", .methods = TWICE_METHODS, .nmethods = LX_COUNT(TWICE_METHODS)};

/* Clash: a param and a submodule under one name, or two instances under one name. */
static lx_status clash_call(linen_scope *s, const lx_call *c, lx_value *out) {
    int64_t mode;
    LX_TRY(lx_call_int(c, 1, "mode", 0, &mode));
    lx_value x = lx_call_get(c, 0, "x") ? *lx_call_get(c, 0, "x") : lx_none();
    lx_call cc = LX_CALL_ARGS(x);
    linen_module *a = lin(2), *b = lin(2);
    lx_status st = LX_OK;
    lx_value v = lx_none();
    if (mode == 0) {
        lx_initializer z = lx_init_zeros();
        lx_array *p;
        st = linen_param(s, "x", &z, LX_F32, 1, (int64_t[]){1}, &p);
        if (st == LX_OK) st = linen_call_child(s, a, "x", NULL, &cc, &v);
    } else if (mode == 1) {
        st = linen_call_child(s, a, "dup", NULL, &cc, &v);
        lx_value_free(&v);
        if (st == LX_OK) st = linen_call_child(s, b, "dup", NULL, &cc, &v);
    } else {
        lx_initializer z = lx_init_zeros();
        lx_array *p;
        st = linen_param(s, "mean", &z, LX_F32, 1, (int64_t[]){1}, &p);
        if (st == LX_OK) st = linen_variable(s, "stats", "mean", zero_init, NULL, &v);
        v = lx_none();
    }
    lx_value_free(&v);
    linen_module_release(a);
    linen_module_release(b);
    *out = lx_none();
    return st;
}
static const linen_method CLASH_METHODS[] = {LINEN_METHOD("__call__", clash_call)};
static const linen_type CLASH = {.name = "Clash", .methods = CLASH_METHODS, .nmethods = LX_COUNT(CLASH_METHODS)};

/* Dispatcher: methods outside the table through the dispatch hook. */
static lx_status disp_dispatch(linen_scope *s, const char *method, const lx_call *c, lx_value *out) {
    (void)s;
    (void)c;
    if (strcmp(method, "forwarded") == 0) {
        *out = lx_int_v(42);
        return LX_OK;
    }
    return LX_ERR_NOT_FOUND; /* no message: "no such method" (a message would be a real failure) */
}
static lx_status disp_getattr(const linen_module *m, const char *name, lx_value *out) {
    (void)m;
    if (strcmp(name, "hidden_size") == 0) {
        *out = lx_int_v(16);
        return LX_OK;
    }
    return LX_ERR_NOT_FOUND;
}
static const linen_type DISPATCHER = {.name = "Dispatcher", .dispatch = disp_dispatch, .getattr = disp_getattr};

/* Fn: a function-type module (no scope, no name). */
static lx_status fn_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    lx_key k;
    if (linen_make_rng(s, "params", &k) == LX_OK) return lx_fail(LX_ERR_INTERNAL, "function had an rng");
    return linen_return_array(out, x);
}
static const linen_method FN_METHODS[] = {LINEN_METHOD("__call__", fn_call)};
static const linen_type FN = {.name = "identity", .methods = FN_METHODS, .nmethods = LX_COUNT(FN_METHODS), .flags = LINEN_TYPE_FUNCTION};
static lx_status fn_user_call(linen_scope *s, const lx_call *c, lx_value *out) {
    linen_module *f = NULL, *l = lin(2);
    LX_TRY(linen_module_new(&FN, NULL, &f));
    lx_value v;
    lx_status st = linen_call_child(s, f, NULL, NULL, c, &v);
    if (st == LX_OK) {
        lx_array *y = linen_call_array(s, l, NULL, v.u.array);
        lx_value_free(&v);
        st = linen_return_array(out, y);
    }
    linen_module_release(f);
    linen_module_release(l);
    return st;
}
static const linen_method FN_USER_METHODS[] = {LINEN_METHOD("__call__", fn_user_call)};
static const linen_type FN_USER = {.name = "FnUser", .methods = FN_USER_METHODS, .nmethods = LX_COUNT(FN_USER_METHODS)};

/* ---------------------------------------------------------------- tests */

static lx_array *ones(int n0, int n1) { return lx_autorelease(lx_array_full_f32(2, (int64_t[]){n0, n1}, 1.0f)); }

static void test_module_values(void) {
    linen_module *m = NULL;
    CHECK_FAILS(linen_module_new(&LIN, NULL, &m), LX_ERR_TYPE,
                "Lin.__init__() missing 1 required positional argument: 'features'");
    CHECK(m == NULL);
    lx_call bad = LX_CALL_KWARGS(LX_KW_INT("feature", 3));
    CHECK_FAILS(linen_module_new(&LIN, &bad, &m), LX_ERR_TYPE, "Lin.__init__() got an unexpected keyword argument 'feature'");
    lx_call named = LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW_STR("name", "dense"));
    CHECK(linen_module_new(&LIN, &named, &m) == LX_OK);
    CHECK_STR(linen_module_name(m), "dense");
    lx_value v;
    CHECK(linen_module_attr(m, "features", &v) == LX_OK && v.kind == LX_V_INT && v.u.i == 3);
    CHECK(linen_module_attr(m, "name", &v) == LX_OK && v.kind == LX_V_STR);
    CHECK_FAILS(linen_module_attr(m, "kernel_size", &v), LX_ERR_NOT_FOUND, "\"Lin\" object has no attribute \"kernel_size\".");
    CHECK(((const lin_config *)linen_module_config(m))->use_bias);
    linen_module *c = NULL;
    lx_call ov = LX_CALL_KWARGS(LX_KW_BOOL("use_bias", false));
    CHECK(linen_module_clone(m, &ov, &c) == LX_OK);
    CHECK(!((const lin_config *)linen_module_config(c))->use_bias);
    CHECK(((const lin_config *)linen_module_config(m))->use_bias);
    CHECK_STR(linen_module_name(c), "dense");
    lx_call ovbad = LX_CALL_KWARGS(LX_KW_BOOL("bias", false));
    linen_module *c2 = NULL;
    CHECK_FAILS(linen_module_clone(m, &ovbad, &c2), LX_ERR_TYPE, "unexpected keyword argument 'bias'");
    CHECK(c2 == NULL);
    CHECK(linen_module_type(c) == &LIN);
    linen_module_retain(c);
    linen_module_release(c);
    linen_module_release(c);
    lx_call slash = LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW_STR("name", "a/b"));
    CHECK_FAILS(linen_module_new(&LIN, &slash, &c2), LX_ERR_INVALID_ARGUMENT, "may not contain '/'");
    linen_module_release(m);
    CHECK(linen_module_new(&DISPATCHER, NULL, &m) == LX_OK);
    CHECK(linen_module_attr(m, "hidden_size", &v) == LX_OK && v.u.i == 16);
    linen_module_release(m);
}

static void test_param_keys_match_flax(void) {
    linen_module *m = lin(8);
    lx_tree *vars = NULL;
    lin_record_after = true;
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 4)), NULL, &vars) == LX_OK);
    lin_record_after = false;
    CHECK(same_bits(leaf(vars, "params/kernel"), LF_DENSE_TOP_KERNEL, 32));
    lx_array *b = leaf(vars, "params/bias");
    CHECK(b && b->size == 8 && lx_f32(b)[0] == 0.0f && lx_f32(b)[7] == 0.0f);
    /* kernel count 1, bias (zeros) count 2, so the next make_rng is count 3 */
    CHECK_RNG(lin_after_key, "", "params", 3);
    CHECK_EQ_INT(lx_tree_len(vars), 1);
    lx_tree_release(vars);

    /* the legacy bit scheme */
    linen_module *m3 = lin(3);
    lx_random_set_legacy(true);
    CHECK(linen_init(m3, LINEN_KEY(lx_key_from_seed(42)), A(ones(1, 2)), NULL, &vars) == LX_OK);
    lx_random_set_legacy(false);
    CHECK(same_bits(leaf(vars, "params/kernel"), LF_DENSE_LEGACY_KERNEL, 6));
    lx_tree_release(vars);
    linen_module_release(m3);
    linen_module_release(m);
}

static void test_make_rng_counters(void) {
    linen_module *p = NULL;
    CHECK(linen_module_new(&PROBE, NULL, &p) == LX_OK);
    lx_key k0 = lx_key_from_seed(0), k1 = lx_key_from_seed(1);
    lx_value out;
    /* top-level: counts 1, 2 of params */
    probe_nkeys = 0;
    probe_stream = "params";
    lx_tree *vars = NULL;
    CHECK(linen_init_with_output(p, LINEN_KEY(k0), NULL, NULL, &out, &vars) == LX_OK);
    CHECK_RNG(probe_keys[0], "", "params", 1);
    CHECK_RNG(probe_keys[1], "", "params", 2);
    lx_tree_release(vars);
    /* a named stream, in apply */
    probe_nkeys = 0;
    probe_stream = "dropout";
    lx_tree *empty = lx_tree_new();
    CHECK(linen_apply(p, empty, LINEN_RNGS({"params", k0}, {"dropout", k1}), NULL, NULL, &out, NULL) == LX_OK);
    CHECK_RNG(probe_keys[0], "", "dropout", 1);
    CHECK_RNG(probe_keys[1], "", "dropout", 2);
    /* a missing stream falls back to params (and its counter) */
    probe_nkeys = 0;
    CHECK(linen_apply(p, empty, LINEN_KEY(k0), NULL, NULL, &out, NULL) == LX_OK);
    CHECK_RNG(probe_keys[0], "", "params", 1);
    CHECK_RNG(probe_keys[1], "", "params", 2);
    /* no stream at all */
    CHECK_FAILS(linen_apply(p, empty, LINEN_NO_RNGS, NULL, NULL, &out, NULL), LX_ERR_RNG, "None needs PRNG for \"dropout\"");
    CHECK_FAILS(linen_apply(p, empty, LINEN_RNGS({"other", k1}), NULL, NULL, &out, NULL), LX_ERR_RNG,
                "None needs PRNG for \"dropout\"");

    /* children: the same Probe instance called twice is one child, Probe_0, whose counter goes
     * on (counts 1-4), as Flax names a compact child when it is created; then "inner" */
    linen_module *o = NULL;
    CHECK(linen_module_new(&OUTER, NULL, &o) == LX_OK);
    probe_nkeys = 0;
    probe_stream = "params";
    CHECK(linen_init(o, LINEN_KEY(k0), A(ones(1, 4)), NULL, &vars) == LX_OK);
    CHECK_EQ_INT(probe_nkeys, 6);
    CHECK_RNG(probe_keys[0], "Probe_0", "params", 1);
    CHECK_RNG(probe_keys[1], "Probe_0", "params", 2);
    CHECK_RNG(probe_keys[2], "Probe_0", "params", 3);
    CHECK_RNG(probe_keys[3], "Probe_0", "params", 4);
    CHECK_RNG(probe_keys[4], "inner", "params", 1);
    /* the Lin child is Lin_0 (auto-named per type), and Probes made no variables */
    CHECK(leaf(vars, "params/Lin_0/kernel") != NULL);
    CHECK(lx_tree_find(vars, "params/Probe_0") == NULL);
    CHECK_EQ_INT(lx_tree_len(lx_tree_get(vars, "params")->u.tree), 1);
    lx_tree_release(vars);
    probe_stream = "dropout";
    CHECK_FAILS(linen_init(o, LINEN_RNGS({"other", k0}), A(ones(1, 4)), NULL, &vars), LX_ERR_RNG,
                "Probe_0 needs PRNG for \"dropout\"");
    CHECK(vars == NULL);
    probe_stream = "params";
    lx_tree_release(empty);
    linen_module_release(o);
    linen_module_release(p);
}

static void test_mlp_children_match_flax(void) {
    /* Dense_0 / Dense_1 inside a parent: keys from ('Dense_0', 1) and ('Dense_1', 1); with setup
     * the names are the attributes. */
    linen_module *m = NULL;
    CHECK(linen_module_new(&SETUP_MLP, NULL, &m) == LX_OK);
    lx_tree *vars = NULL;
    setup_runs = 0;
    lx_value out;
    CHECK(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 4)), NULL, &out, &vars) == LX_OK);
    CHECK_EQ_INT(setup_runs, 1);
    CHECK(same_bits(leaf(vars, "params/hidden/kernel"), LF_MLP_SETUP_HIDDEN_KERNEL, 32));
    CHECK(leaf(vars, "params/out/kernel") && leaf(vars, "params/out/kernel")->shape[0] == 8);
    CHECK(out.kind == LX_V_ARRAY && out.u.array->shape[0] == 8); /* Lin returns its kernel (8, 2) */
    lx_value_free(&out);
    /* apply: no initializer runs, parameters are read */
    setup_runs = 0;
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, A(ones(1, 4)), NULL, &out, NULL) == LX_OK);
    CHECK_EQ_INT(setup_runs, 1);
    CHECK(out.kind == LX_V_ARRAY && out.u.array == leaf(vars, "params/out/kernel"));
    lx_value_free(&out);
    lx_tree_release(vars);
    linen_module_release(m);

    /* a shared instance called twice: one scope, setup once, same parameters */
    CHECK(linen_module_new(&TWICE, NULL, &m) == LX_OK);
    setup_runs = 0;
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 4)), NULL, &vars) == LX_OK);
    CHECK_EQ_INT(setup_runs, 1);
    CHECK(leaf(vars, "params/shared/hidden/kernel") != NULL);
    lx_tree_release(vars);
    linen_module_release(m);
}

/* lx_tree_map: each array leaf copied (lx_tree_copy shares the leaves, so only a copy of the
 * values sees a change made to an array in place). */
static lx_status deep_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    (void)path, (void)user;
    if (leaf->kind != LX_V_ARRAY) return lx_value_dup(leaf, out);
    lx_array *a = lx_array_copy(leaf->u.array);
    if (!a) return lx_last_status();
    *out = lx_array_v(a);
    return LX_OK;
}

static void test_param_errors(void) {
    linen_module *m = lin(8);
    lx_tree *vars = NULL;
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 4)), NULL, &vars) == LX_OK);
    lx_value out;
    CHECK_FAILS(linen_apply(m, vars, LINEN_NO_RNGS, A(ones(1, 5)), NULL, &out, NULL), LX_ERR_SHAPE,
                "For parameter \"kernel\" in \"/\", the given initializer is expected to generate shape (4, 8), "
                "but the existing parameter it received has shape (5, 8).");
    CHECK(out.kind == LX_V_NONE);
    lx_tree *empty = lx_tree_new();
    CHECK_FAILS(linen_apply(m, empty, LINEN_NO_RNGS, A(ones(1, 4)), NULL, &out, NULL), LX_ERR_NOT_FOUND,
                "Tried to access \"kernel\" from collection \"params\" in \"/\" but the collection is empty.");
    lx_tree *other = lx_tree_new();
    lx_tree_set_path(other, "params/weights", lx_array_v(ones(1, 1)));
    CHECK_FAILS(linen_apply(m, other, LINEN_NO_RNGS, A(ones(1, 4)), NULL, &out, NULL), LX_ERR_NOT_FOUND,
                "Could not find parameter named \"kernel\" in scope \"/\".");
    /* in a child scope */
    linen_module *o = NULL;
    CHECK(linen_module_new(&OUTER, NULL, &o) == LX_OK);
    CHECK_FAILS(linen_apply(o, other, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 4)), NULL, &out, NULL),
                LX_ERR_NOT_FOUND, "Could not find parameter named \"kernel\" in scope \"/Lin_0\".");
    /* a failed apply leaves the given variables untouched */
    lx_tree *copy = lx_tree_copy(vars), *values = NULL;
    CHECK_EQ_INT(lx_tree_map(vars, deep_leaf, NULL, &values), LX_OK);
    CHECK_FAILS(linen_apply(m, vars, LINEN_NO_RNGS, A(ones(1, 5)), NULL, &out, NULL), LX_ERR_SHAPE, "For parameter");
    CHECK(lx_tree_equal(copy, vars));   /* the structure */
    CHECK(values && lx_tree_equal(values, vars)); /* and every array's bytes */
    lx_tree_release(values);
    /* {'params': {'params': ...}} */
    lx_tree *nested = lx_tree_new();
    lx_tree_set(nested, "params", lx_tree_v(vars));
    CHECK_FAILS(linen_apply(m, nested, LINEN_NO_RNGS, A(ones(1, 4)), NULL, &out, NULL), LX_ERR_INVALID_ARGUMENT,
                "but got a dict with an extra params layer");
    lx_tree *notdict = lx_tree_new();
    lx_tree_set(notdict, "params", lx_int_v(3));
    CHECK_FAILS(linen_apply(m, notdict, LINEN_NO_RNGS, A(ones(1, 4)), NULL, &out, NULL), LX_ERR_TYPE,
                "should be a dictionary of collections");
    /* a failed input */
    CHECK_FAILS(linen_apply(m, vars, LINEN_NO_RNGS, A(NULL), NULL, &out, NULL), LX_ERR_FAILED_INPUT, "NULL");
    lx_tree_release(notdict);
    lx_tree_release(nested);
    lx_tree_release(copy);
    lx_tree_release(other);
    lx_tree_release(empty);
    lx_tree_release(vars);
    linen_module_release(o);
    linen_module_release(m);
}

static void test_mutable_modes(void) {
    linen_module *m = NULL;
    CHECK(linen_module_new(&COUNTER, NULL, &m) == LX_OK);
    lx_tree *vars = NULL;
    /* init default: everything but intermediates */
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), NULL, NULL, &vars) == LX_OK);
    CHECK(lx_tree_get(vars, "params") && lx_tree_get(vars, "counter"));
    CHECK(lx_tree_get(vars, "intermediates") == NULL);
    CHECK_NEAR(lx_f32(leaf(vars, "counter/count"))[0], 1.0, 0); /* created 0, incremented at init */
    lx_tree *all = NULL;
    linen_opts everything = {.mutable = LINEN_MUTABLE_EVERYTHING, .mutable_given = true};
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), NULL, &everything, &all) == LX_OK);
    CHECK(lx_tree_find(all, "intermediates/seen/0") && lx_tree_find(all, "intermediates/seen/1"));
    CHECK(lx_tree_find(all, "intermediates/seen/2") == NULL);
    lx_tree_release(all);

    lx_value out;
    lx_tree *mut = NULL;
    /* immutable apply: no mutation, no mutated tree */
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, NULL, &out, &mut) == LX_OK);
    CHECK(mut == NULL);
    lx_value_free(&out);
    /* mutable=['counter']: only that collection comes back, with the new value */
    linen_opts counter = {.mutable = LINEN_MUTABLE("counter"), .mutable_given = true};
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, &counter, &out, &mut) == LX_OK);
    CHECK(mut && lx_tree_len(mut) == 1 && lx_tree_get(mut, "counter"));
    CHECK_NEAR(lx_f32(leaf(mut, "counter/count"))[0], 2.0, 0);
    CHECK_NEAR(lx_f32(leaf(vars, "counter/count"))[0], 1.0, 0); /* input untouched */
    lx_tree_release(mut);
    lx_value_free(&out);
    /* DenyList('params'): counter and intermediates */
    linen_opts deny = {.mutable = LINEN_DENY("params"), .mutable_given = true};
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, &deny, &out, &mut) == LX_OK);
    CHECK(mut && lx_tree_len(mut) == 2 && lx_tree_get(mut, "counter") && lx_tree_get(mut, "intermediates"));
    CHECK(lx_tree_get(mut, "params") == NULL);
    lx_tree_release(mut);
    lx_value_free(&out);
    /* mutable=True: every collection, unchanged params shared (same array) */
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, &everything, &out, &mut) == LX_OK);
    CHECK(mut && lx_tree_len(mut) == 3);
    CHECK(leaf(mut, "params/w") == leaf(vars, "params/w"));
    lx_tree_release(mut);
    lx_value_free(&out);
    /* mutable=['intermediates'] only: the counter is not touched (module checks mutability) */
    linen_opts inter = {.mutable = LINEN_MUTABLE("intermediates"), .mutable_given = true};
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, &inter, &out, &mut) == LX_OK);
    CHECK(mut && lx_tree_len(mut) == 1 && lx_tree_find(mut, "intermediates/seen/1"));
    lx_tree_release(mut);
    lx_value_free(&out);
    /* a mutable apply needs somewhere to put the result */
    CHECK_FAILS(linen_apply(m, vars, LINEN_NO_RNGS, NULL, &counter, &out, NULL), LX_ERR_INVALID_ARGUMENT, "mutated");
    /* mutable=False given explicitly */
    linen_opts none = {.mutable = LINEN_IMMUTABLE, .mutable_given = true};
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, &none, &out, &mut) == LX_OK && mut == NULL);
    lx_value_free(&out);

    /* writing an immutable collection */
    linen_module *wr = NULL;
    CHECK(linen_module_new(&WRITER, NULL, &wr) == LX_OK);
    CHECK_FAILS(linen_apply(wr, vars, LINEN_NO_RNGS, NULL, NULL, &out, NULL), LX_ERR_IMMUTABLE,
                "Cannot update variable \"count\" in \"/\" because collection \"counter\" is immutable.");
    /* a variable missing in apply */
    lx_tree *params_only = lx_tree_new();
    lx_tree_set(params_only, "params", *lx_tree_get(vars, "params"));
    lx_tree_set_path(params_only, "counter/other", lx_array_v(ones(1, 1)));
    CHECK_FAILS(linen_apply(m, params_only, LINEN_NO_RNGS, NULL, NULL, &out, NULL), LX_ERR_NOT_FOUND,
                "No Variable named \"count\" for collection \"counter\" exists in \"/\".");
    lx_tree_release(params_only);
    linen_module_release(wr);
    lx_tree_release(vars);
    linen_module_release(m);

    CHECK(linen_mutable_allows(&LINEN_MUTABLE("a", "b"), "b"));
    CHECK(!linen_mutable_allows(&LINEN_MUTABLE("a", "b"), "c"));
    CHECK(!linen_mutable_allows(&LINEN_DENY("a"), "a"));
    CHECK(linen_mutable_allows(&LINEN_DENY("a"), "params"));
    CHECK(!linen_mutable_allows(&LINEN_IMMUTABLE, "params"));
    CHECK(linen_mutable_allows(&LINEN_MUTABLE_EVERYTHING, "x"));
}

/* Every (path, leaf) of t is still there with the same value (the same array object), and
 * nothing was added: the caller's tree as `before` saw it. */
static bool tree_as_before(const lx_tree *t, const lx_flat *before) {
    lx_flat now = {0};
    if (lx_tree_flatten(t, &now) != LX_OK) return false;
    bool same = now.len == before->len;
    for (size_t i = 0; same && i < now.len; i++)
        same = strcmp(now.items[i].path, before->items[i].path) == 0 &&
               lx_value_equal(&now.items[i].value, &before->items[i].value) &&
               (now.items[i].value.kind != LX_V_ARRAY || now.items[i].value.u.array == before->items[i].value.u.array);
    lx_flat_free(&now);
    return same;
}

/* apply binds the caller's tree read-only when nothing is mutable and copies only the
 * collections it may write otherwise: the caller's tree never changes, arrays are shared. */
static void test_apply_leaves_callers_tree(void) {
    linen_module *m = NULL, *wf = NULL, *o = NULL;
    CHECK(linen_module_new(&COUNTER, NULL, &m) == LX_OK);
    CHECK(linen_module_new(&WRITE_FAIL, NULL, &wf) == LX_OK);
    CHECK(linen_module_new(&OUTER, NULL, &o) == LX_OK);
    lx_tree *vars = NULL;
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), NULL, NULL, &vars) == LX_OK);
    lx_flat before = {0};
    CHECK(lx_tree_flatten(vars, &before) == LX_OK);
    const lx_value *params_map = lx_tree_get(vars, "params"), *counter_map = lx_tree_get(vars, "counter");

    /* immutable: the param handed to the module is the caller's array itself */
    lx_value out;
    lx_tree *mut = NULL;
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && out.u.array == leaf(vars, "params/w"));
    lx_value_free(&out);
    CHECK(tree_as_before(vars, &before));

    /* mutable=['counter']: the result is a new map; changing it does not reach the caller */
    linen_opts counter = {.mutable = LINEN_MUTABLE("counter"), .mutable_given = true};
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, &counter, &out, &mut) == LX_OK);
    lx_value_free(&out);
    CHECK(mut && lx_tree_get(mut, "counter") && lx_tree_get(mut, "counter")->u.tree != counter_map->u.tree);
    CHECK_NEAR(lx_f32(leaf(mut, "counter/count"))[0], 2.0, 0);
    CHECK(lx_tree_set_path(mut, "counter/added", lx_array_v(ones(1, 1))) == LX_OK);
    CHECK(tree_as_before(vars, &before));
    lx_tree_release(mut);

    /* mutable=True: every collection comes back as its own map, unchanged leaves shared */
    linen_opts everything = {.mutable = LINEN_MUTABLE_EVERYTHING, .mutable_given = true};
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, &everything, &out, &mut) == LX_OK);
    lx_value_free(&out);
    CHECK(mut && lx_tree_get(mut, "params") && lx_tree_get(mut, "params")->u.tree != params_map->u.tree);
    CHECK(leaf(mut, "params/w") == leaf(vars, "params/w"));
    CHECK(lx_tree_find(mut, "intermediates/seen/0") != NULL);
    lx_tree_release(mut);
    CHECK(tree_as_before(vars, &before));

    /* a call that writes (an existing and a new collection) and then fails */
    CHECK_FAILS(linen_apply(wf, vars, LINEN_NO_RNGS, NULL, &everything, &out, &mut), LX_ERR_INVALID_ARGUMENT,
                "on purpose");
    CHECK(mut == NULL);
    CHECK(tree_as_before(vars, &before));
    /* and the immutable one refuses the write with the same message as ever */
    CHECK_FAILS(linen_apply(wf, vars, LINEN_NO_RNGS, NULL, NULL, &out, NULL), LX_ERR_IMMUTABLE,
                "Cannot update variable \"count\" in \"/\" because collection \"counter\" is immutable.");
    CHECK(tree_as_before(vars, &before));
    lx_flat_free(&before);
    lx_tree_release(vars);

    /* nested scopes, immutable: params found by walking the caller's maps, nothing written */
    lx_array *x = ones(1, 4);
    CHECK(linen_init(o, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &vars) == LX_OK);
    CHECK(lx_tree_flatten(vars, &before) == LX_OK);
    lx_value first, again;
    CHECK(linen_apply(o, vars, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &first, NULL) == LX_OK);
    CHECK(linen_apply(o, vars, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &again, NULL) == LX_OK);
    CHECK(first.kind == LX_V_ARRAY && again.kind == LX_V_ARRAY && lx_value_equal(&first, &again));
    CHECK(tree_as_before(vars, &before));
    lx_value_free(&first);
    lx_value_free(&again);
    lx_flat_free(&before);
    lx_tree_release(vars);
    linen_module_release(o);
    linen_module_release(wf);
    linen_module_release(m);
}

/* A scope's names, children and auto-name cursors outgrow their inline storage correctly. */
static void test_scope_outgrows_inline_storage(void) {
    linen_module *m = NULL;
    CHECK(linen_module_new(&CROWD, NULL, &m) == LX_OK);
    lx_array *x = ones(1, 3);
    lx_tree *vars = NULL;
    lx_value out;
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &vars) == LX_OK);
    CHECK(leaf(vars, "params/a_parameter_name_longer_than_inline_text_0") != NULL);
    CHECK(leaf(vars, "params/a_parameter_name_longer_than_inline_text_17") != NULL);
    CHECK(leaf(vars, "params/Lin_0/kernel") && leaf(vars, "params/Lin_1/kernel"));
    CHECK(leaf(vars, "params/Counter_0/w") && leaf(vars, "counter/Counter_0/count"));
    CHECK(linen_apply(m, vars, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &out, NULL) == LX_OK);
    lx_value_free(&out);
    /* more streams than a frame keeps inline: Probe's draws still come from 'params' */
    probe_nkeys = 0;
    CHECK(linen_apply(m, vars, LINEN_RNGS({"a", lx_key_from_seed(1)}, {"b", lx_key_from_seed(2)}, {"c", lx_key_from_seed(3)},
                                 {"d", lx_key_from_seed(4)}, {"params", lx_key_from_seed(0)}),
                      A(x),
                      NULL, &out, NULL) == LX_OK);
    lx_value_free(&out);
    lx_key with_five[6];
    memcpy(with_five, probe_keys, sizeof with_five);
    probe_nkeys = 0;
    CHECK(linen_apply(m, vars, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &out, NULL) == LX_OK);
    lx_value_free(&out);
    CHECK(memcmp(with_five, probe_keys, sizeof with_five) == 0);
    crowd_clash = true;
    CHECK_FAILS(linen_apply(m, vars, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &out, NULL), LX_ERR_EXISTS,
                "Could not create param \"a_parameter_name_longer_than_inline_text_3\" in Module Crowd: Name in use.");
    crowd_clash = false;
    lx_tree_release(vars);
    linen_module_release(m);
}

static void test_methods(void) {
    linen_module *m = lin(8);
    lx_tree *vars = NULL;
    lx_value out;
    linen_opts enc = {.method = "encode"};
    CHECK(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), NULL, &enc, &out, &vars) == LX_OK);
    CHECK(out.kind == LX_V_INT && out.u.i == 1); /* is_initializing */
    CHECK(lx_tree_len(vars) == 0);
    lx_tree_release(vars);
    lx_tree *empty = lx_tree_new();
    CHECK(linen_apply(m, empty, LINEN_NO_RNGS, NULL, &enc, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_INT && out.u.i == 2);
    linen_opts byfn = {.method_fn = lin_encode};
    CHECK(linen_apply(m, empty, LINEN_NO_RNGS, NULL, &byfn, &out, NULL) == LX_OK && out.u.i == 2);
    linen_opts unknown = {.method = "decode"};
    CHECK_FAILS(linen_apply(m, empty, LINEN_NO_RNGS, NULL, &unknown, &out, NULL), LX_ERR_NOT_FOUND,
                "\"Lin\" object has no attribute \"decode\".");
    linen_opts field = {.method = "features"};
    CHECK_FAILS(linen_apply(m, empty, LINEN_NO_RNGS, NULL, &field, &out, NULL), LX_ERR_TYPE,
                "'Lin.features' must be a callable, got <class 'int'>.");
    linen_module *d = NULL;
    CHECK(linen_module_new(&DISPATCHER, NULL, &d) == LX_OK);
    linen_opts fw = {.method = "forwarded"};
    CHECK(linen_apply(d, empty, LINEN_NO_RNGS, NULL, &fw, &out, NULL) == LX_OK && out.u.i == 42);
    linen_opts nope = {.method = "nope"};
    CHECK_FAILS(linen_apply(d, empty, LINEN_NO_RNGS, NULL, &nope, &out, NULL), LX_ERR_NOT_FOUND,
                "\"Dispatcher\" object has no attribute \"nope\".");
    linen_opts hs = {.method = "hidden_size"};
    CHECK_FAILS(linen_apply(d, empty, LINEN_NO_RNGS, NULL, &hs, &out, NULL), LX_ERR_TYPE,
                "'Dispatcher.hidden_size' must be a callable, got <class 'int'>.");
    CHECK_FAILS(linen_apply(d, empty, LINEN_NO_RNGS, NULL, NULL, &out, NULL), LX_ERR_NOT_FOUND,
                "\"Dispatcher\" object has no attribute \"__call__\".");
    linen_module_release(d);
    lx_tree_release(empty);
    linen_module_release(m);
}

static void test_current_scope_and_names(void) {
    CHECK(linen_current_scope() == NULL);
    linen_module *o = NULL;
    CHECK(linen_module_new(&OUTER, NULL, &o) == LX_OK);
    lx_tree *vars = NULL;
    probe_seen_current = NULL;
    CHECK(linen_init(o, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 4)), NULL, &vars) == LX_OK);
    CHECK(probe_seen_current != NULL); /* the last Probe ("inner") saw itself on top */
    CHECK(linen_current_scope() == NULL);
    lx_tree_release(vars);
    linen_module_release(o);

    linen_module *c = NULL;
    CHECK(linen_module_new(&CLASH, NULL, &c) == LX_OK);
    lx_call mode0 = LX_CALL_ARGS(lx_array_v(ones(1, 2)), lx_int_v(0));
    CHECK_FAILS(linen_init(c, LINEN_KEY(lx_key_from_seed(0)), &mode0, NULL, &vars), LX_ERR_EXISTS,
                "Could not create submodule \"x\" in Module Clash: Name in use.");
    lx_call mode1 = LX_CALL_ARGS(lx_array_v(ones(1, 2)), lx_int_v(1));
    CHECK_FAILS(linen_init(c, LINEN_KEY(lx_key_from_seed(0)), &mode1, NULL, &vars), LX_ERR_EXISTS,
                "Could not create submodule \"dup\" in Module Clash: Name in use.");
    lx_call mode2 = LX_CALL_ARGS(lx_array_v(ones(1, 2)), lx_int_v(2));
    CHECK_FAILS(linen_init(c, LINEN_KEY(lx_key_from_seed(0)), &mode2, NULL, &vars), LX_ERR_EXISTS,
                "Could not create variable \"mean\" in Module Clash: Name in use.");
    CHECK(vars == NULL);
    CHECK(linen_current_scope() == NULL);
    linen_module_release(c);

    /* a function-type child takes no name: the Lin after it is Lin_0 and has params */
    linen_module *fu = NULL;
    CHECK(linen_module_new(&FN_USER, NULL, &fu) == LX_OK);
    CHECK(linen_init(fu, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 4)), NULL, &vars) == LX_OK);
    CHECK(leaf(vars, "params/Lin_0/kernel") != NULL);
    CHECK_EQ_INT(lx_tree_len(lx_tree_get(vars, "params")->u.tree), 1);
    lx_tree_release(vars);
    linen_module_release(fu);
}

/* ScopeInfo: the scope's own view (path, name, variables, rng names, setup-attribute errors). */
static lx_status info_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    lx_initializer o = lx_init_ones();
    lx_array *w;
    LX_TRY(linen_param(s, "w", &o, LX_F32, 1, (int64_t[]){3}, &w));
    lx_tree *v = NULL;
    LX_TRY(linen_variables(s, &v));
    *out = lx_tree_v(v);
    const char *names[4];
    int n = linen_rng_names(s, names, 4);
    if (n != 2 || strcmp(names[0], "params") != 0 || strcmp(names[1], "dropout") != 0)
        return lx_fail(LX_ERR_INTERNAL, "rng names");
    if (!linen_has_variable(s, "params", "w") || linen_has_variable(s, "params", "v"))
        return lx_fail(LX_ERR_INTERNAL, "has_variable");
    lx_value g;
    if (linen_get_variable(s, "params", "w", &g) != LX_OK || g.u.array != w) return lx_fail(LX_ERR_INTERNAL, "get");
    if (linen_get_variable(s, "params", "nope", &g) != LX_ERR_NOT_FOUND) return lx_fail(LX_ERR_INTERNAL, "get missing");
    const linen_module *am;
    if (linen_get_attr_module(s, "hidden", &am) != LX_ERR_NOT_FOUND) return lx_fail(LX_ERR_INTERNAL, "attr");
    if (linen_setup_child(s, "late", linen_self(s)) != LX_ERR_INVALID_ARGUMENT) return lx_fail(LX_ERR_INTERNAL, "setup");
    if (strcmp(linen_scope_name(s), "Info_0") != 0 || strcmp(linen_scope_path(s), "/Info_0") != 0)
        return lx_fail(LX_ERR_INTERNAL, "path %s", linen_scope_path(s));
    if (linen_scope_mutable(s)->kind != LINEN_MUTABLE_DENY) return lx_fail(LX_ERR_INTERNAL, "mutable");
    return LX_OK;
}
static const linen_method INFO_METHODS[] = {LINEN_METHOD("__call__", info_call)};
static const linen_type INFO = {.name = "Info", .methods = INFO_METHODS, .nmethods = LX_COUNT(INFO_METHODS)};
static lx_status info_parent_call(linen_scope *s, const lx_call *c, lx_value *out) {
    linen_module *i = NULL;
    LX_TRY(linen_module_new(&INFO, NULL, &i));
    lx_status st = linen_call_child(s, i, NULL, NULL, c, out);
    linen_module_release(i);
    if (strcmp(linen_scope_path(s), "/") != 0 || strcmp(linen_scope_name(s), "") != 0) return LX_ERR_INTERNAL;
    return st;
}
static const linen_method INFO_PARENT_METHODS[] = {LINEN_METHOD("__call__", info_parent_call)};
static const linen_type INFO_PARENT = {.name = "InfoParent", .methods = INFO_PARENT_METHODS, .nmethods = LX_COUNT(INFO_PARENT_METHODS)};

static void test_scope_views(void) {
    linen_module *m = NULL;
    CHECK(linen_module_new(&INFO_PARENT, NULL, &m) == LX_OK);
    lx_value out;
    lx_tree *vars = NULL;
    CHECK(linen_init_with_output(m, LINEN_RNGS({"params", lx_key_from_seed(0)}, {"dropout", lx_key_from_seed(1)}), NULL,
                                 NULL, &out, &vars) == LX_OK);
    CHECK(out.kind == LX_V_TREE && lx_tree_find(out.u.tree, "params/w") != NULL);
    CHECK(lx_tree_find(out.u.tree, "params/Info_0") == NULL);
    lx_value_free(&out);
    lx_tree_release(vars);
    CHECK_FAILS(linen_init(m, LINEN_RNGS({"params", lx_key_from_seed(0)}, {"params", lx_key_from_seed(1)}), NULL, NULL, &vars),
                LX_ERR_INVALID_ARGUMENT, "given twice");
    linen_module_release(m);
}

static void test_boxed_params(void) {
    /* A stored Partitioned param is unboxed for the layer, and Variable.value keeps the box. */
    linen_module *m = lin(2);
    lx_tree *vars = NULL;
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 3)), NULL, &vars) == LX_OK);
    lx_array *k = leaf(vars, "params/kernel");
    lx_box *b = NULL;
    CHECK(lx_box_partitioned(k, 2, (const char *const[]){"in", "out"}, NULL, &b) == LX_OK);
    lx_tree *boxed = lx_tree_copy(vars);
    CHECK(lx_tree_set_path(boxed, "params/kernel", lx_box_v(b)) == LX_OK);
    lx_value out;
    CHECK(linen_apply(m, boxed, LINEN_NO_RNGS, A(ones(1, 3)), NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && out.u.array == k);
    lx_value_free(&out);
    lx_box_release(b);
    lx_tree_release(boxed);
    lx_tree_release(vars);
    linen_module_release(m);
}

static lx_status rebox_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    lx_array *n = lx_autorelease(lx_array_full_f32(1, (int64_t[]){2}, 7.0f));
    LX_TRY(linen_variable_set(s, "stats", "v", n));
    *out = lx_none();
    return LX_OK;
}
static const linen_method REBOX_METHODS[] = {LINEN_METHOD("__call__", rebox_call)};
static const linen_type REBOX = {.name = "Rebox", .methods = REBOX_METHODS, .nmethods = LX_COUNT(REBOX_METHODS)};

static void test_variable_set_keeps_box(void) {
    linen_module *m = NULL;
    CHECK(linen_module_new(&REBOX, NULL, &m) == LX_OK);
    lx_tree *vars = lx_tree_new();
    lx_box *b = NULL;
    CHECK(lx_box_partitioned(lx_autorelease(lx_array_new(LX_F32, 1, (int64_t[]){2})), 1, (const char *const[]){"x"},
                             NULL, &b) == LX_OK);
    lx_tree_set_path(vars, "stats/v", lx_box_v(b));
    lx_value out;
    lx_tree *mut = NULL;
    linen_opts o = {.mutable = LINEN_MUTABLE("stats"), .mutable_given = true};
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, NULL, &o, &out, &mut) == LX_OK);
    const lx_value *nv = mut ? lx_tree_find(mut, "stats/v") : NULL;
    CHECK(nv && nv->kind == LX_V_BOX && lx_f32(lx_box_unbox(nv->u.box))[1] == 7.0f);
    CHECK(nv && lx_box_get_kind(nv->u.box) == LX_BOX_PARTITIONED);
    lx_tree_release(mut);
    lx_box_release(b);
    lx_tree_release(vars);
    linen_module_release(m);
}

static void test_merge_param(void) {
    bool d;
    lx_value t = lx_bool_v(true), none = lx_none(), f = lx_bool_v(false);
    CHECK(linen_merge_param("deterministic", &t, &none, &d) == LX_OK && d);
    CHECK(linen_merge_param("deterministic", &none, &f, &d) == LX_OK && !d);
    CHECK(linen_merge_param("deterministic", NULL, &t, &d) == LX_OK && d);
    CHECK_FAILS(linen_merge_param("deterministic", &none, NULL, &d), LX_ERR_INVALID_ARGUMENT,
                "Parameter \"deterministic\" must be passed to the constructor or at call time.");
    CHECK_FAILS(linen_merge_param("deterministic", &t, &f, &d), LX_ERR_INVALID_ARGUMENT,
                "Parameter \"deterministic\" was passed to the constructor and at call time. Should be passed just once.");
}

static void test_temporaries_released(void) {
    int64_t before = lx_array_live_count();
    size_t pool_before = lx_pool_size();
    linen_module *o = NULL;
    CHECK(linen_module_new(&OUTER, NULL, &o) == LX_OK);
    lx_array *x = lx_array_full_f32(2, (int64_t[]){1, 4}, 1.0f);
    lx_tree *vars = NULL;
    lx_value out;
    CHECK(linen_init_with_output(o, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &out, &vars) == LX_OK);
    CHECK_EQ_INT(lx_pool_size(), pool_before);
    lx_value_free(&out);
    for (int i = 0; i < 3; i++) {
        CHECK(linen_apply(o, vars, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &out, NULL) == LX_OK);
        lx_value_free(&out);
    }
    CHECK_EQ_INT(lx_pool_size(), pool_before);
    lx_tree_release(vars);
    lx_release(x);
    linen_module_release(o);
    CHECK_EQ_INT(lx_array_live_count(), before);
}

/* d = nn.Dense(3); return d(d(x)): one instance called twice is one child (Dense_0) whose
 * params are shared, as Flax names a compact child when it is created. Two instances of the
 * same type are Dense_0 and Dense_1. */
static linen_module *shared_dense_;
static lx_array *twice_fn(linen_scope *s, lx_array *x) {
    return linen_call_array(s, shared_dense_, NULL, linen_call_array(s, shared_dense_, NULL, x));
}
static const linen_method SHARED_TWICE_METHODS[] = {LINEN_ARRAY_METHOD("__call__", twice_fn)};
static const linen_type SHARED_TWICE = {.name = "SharedTwice", .methods = SHARED_TWICE_METHODS, .nmethods = LX_COUNT(SHARED_TWICE_METHODS)};

static void test_same_child_twice_shares_params(void) {
    lx_call kw = LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW_BOOL("use_bias", false));
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &kw, &shared_dense_), LX_OK);
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&SHARED_TWICE, NULL, &m), LX_OK);
    lx_array *x = ones(1, 3);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &vars), LX_OK);
    CHECK(vars && lx_tree_find(vars, "params/Dense_0/kernel") != NULL);
    CHECK(vars && lx_tree_find(vars, "params/Dense_1") == NULL);
    CHECK_EQ_INT(vars ? lx_tree_count_leaves(vars) : 0, 1);
    /* The output is x @ k @ k with the one kernel, checked in double precision. */
    lx_value y;
    CHECK_EQ_INT(linen_apply(m, vars, LINEN_NO_RNGS, &LX_ARGS(x), NULL, &y, NULL), LX_OK);
    const lx_value *kv = vars ? lx_tree_find(vars, "params/Dense_0/kernel") : NULL;
    if (kv && kv->kind == LX_V_ARRAY && y.kind == LX_V_ARRAY) {
        const float *k = lx_f32(kv->u.array);
        double h[3] = {0, 0, 0}, o[3] = {0, 0, 0};
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 3; i++) h[j] += 1.0 * k[i * 3 + j];
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 3; i++) o[j] += h[i] * k[i * 3 + j];
        for (int j = 0; j < 3; j++) CHECK_NEAR(lx_f32(y.u.array)[j], o[j], 1e-5);
    } else {
        CHECK(!"kernel and output");
    }
    lx_value_free(&y);
    lx_tree_release(vars);
    linen_module_release(m);
    linen_module_release(shared_dense_);
}

/* A malformed call record (a keyword count with no array, a negative count, an unnamed keyword)
 * is refused before anything reads it, as nnx_module_new refuses one: no crash, no module. */
static void test_malformed_call_refused(void) {
    linen_module *m = (linen_module *)&m;
    lx_call no_kwargs = {0, NULL, 2, NULL};
    CHECK_FAILS(linen_module_new(&LIN, &no_kwargs, &m), LX_ERR_INVALID_ARGUMENT,
                "Lin.__init__(): malformed call: 0 positional (NULL), 2 keyword (NULL)");
    CHECK(m == NULL);
    lx_call neg = {-1, NULL, 0, NULL};
    CHECK_FAILS(linen_module_new(&LIN, &neg, &m), LX_ERR_INVALID_ARGUMENT,
                "Lin.__init__(): malformed call: -1 positional (NULL), 0 keyword (NULL)");
    lx_kwarg unnamed[] = {{"features", lx_int_v(3)}, {NULL, lx_int_v(1)}};
    lx_call anon = {0, NULL, 2, unnamed};
    CHECK_FAILS(linen_module_new_named(&LIN, &anon, "d", &m), LX_ERR_INVALID_ARGUMENT,
                "Lin.__init__(): keyword argument 1 has no name");
    CHECK(m == NULL);
    lx_call good = {0, NULL, 1, unnamed};
    CHECK_EQ_INT(linen_module_new(&LIN, &good, &m), LX_OK);
    linen_module_release(m);
}

int main(void) {
    RUN(test_module_values);
    RUN(test_malformed_call_refused);
    RUN(test_same_child_twice_shares_params);
    RUN(test_param_keys_match_flax);
    RUN(test_make_rng_counters);
    RUN(test_mlp_children_match_flax);
    RUN(test_param_errors);
    RUN(test_mutable_modes);
    RUN(test_apply_leaves_callers_tree);
    RUN(test_scope_outgrows_inline_storage);
    RUN(test_methods);
    RUN(test_current_scope_and_names);
    RUN(test_scope_views);
    RUN(test_boxed_params);
    RUN(test_variable_set_keeps_box);
    RUN(test_merge_param);
    RUN(test_temporaries_released);
    return lx_test_finish();
}
