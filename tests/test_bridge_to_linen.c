/* ToLinen / to_linen / to_linen_class / linen_rngs_dict: Flax's wrappers_test.py cases W10-W20
 * (spec/flax-bridge.md §2.1), named after their origin, the deliberate differences of DESIGN.md,
 * the worked problem of spec/nnx-inside-linen.md against reference fixtures, and every error.
 * Expected numbers come from scripts/gen_to_linen_fixtures.py (the reference model) or from
 * the model's own state (Flax's SELF checks); nothing is computed with the code under test. */
#include <string.h>

#include "fixtures/bridge_to_linen_fixtures.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/to_linen.h"
#include "lx_test.h"

#define LINNX_EXAMPLE_NO_MAIN
#include "../examples/nnx_inside_linen.c"

/* ---------------------------------------------------------------- helpers */

static lx_array *arr(int ndim, const int64_t *shape, const float *data) {
    return lx_autorelease(lx_array_from_f32(ndim, shape, data));
}
#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define ONES(...) lx_autorelease(lx_array_full_f32(NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), 1.0f))

static const lx_value *at(const lx_tree *t, const char *path) { return t ? lx_tree_find(t, path) : NULL; }
static lx_array *array_at(const lx_tree *t, const char *path) {
    const lx_value *v = at(t, path);
    if (!v) return NULL;
    if (v->kind == LX_V_ARRAY) return v->u.array;
    if (v->kind == LX_V_BOX) return lx_box_unbox(v->u.box);
    return NULL;
}
static bool has_shape(const lx_array *a, int ndim, const int64_t *shape) { return a && lx_shape_eq(a, ndim, shape); }
#define SHAPE_IS(a, ...) has_shape((a), NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

static lx_array *out_array(lx_value *v) { return v->kind == LX_V_ARRAY ? v->u.array : NULL; }

/* y == x @ k (+ b) within tolerance, for 2-D x. */
static bool collections_are(const lx_tree *v, int n, const char *const *names) {
    if (!v || (int)lx_tree_len(v) != n) return false;
    for (int i = 0; i < n; i++)
        if (!lx_tree_get(v, names[i])) return false;
    return true;
}

static linen_module *to_linen_args(const nnx_type *t, const lx_call *ctor, const bridge_to_linen_opts *o) {
    linen_module *m = NULL;
    CHECK_EQ_INT(bridge_to_linen(t, ctor, o, &m), LX_OK);
    return m;
}

/* Warnings captured with lx_set_warning_handler. */
static char warn_text[8][512];
static int nwarn;
static void capture_warning(const char *text, void *user) {
    (void)user;
    if (nwarn < 8) snprintf(warn_text[nwarn], sizeof warn_text[0], "%s", text);
    nwarn++;
}

/* ---------------------------------------------------------------- NNX test modules */

/* NNXInner(din, dout, *, rngs): w = Param(lecun_normal(rngs.params(), (din, dout))), dropout =
 * Dropout(0.5, rngs=rngs); __call__: dropout(x @ w). (W11, W20) */
typedef struct { int64_t din, dout; double rate; } inner_cfg;
typedef struct { nnx_module base; inner_cfg cfg; lx_variable *w; nnx_module *dropout; } inner_mod;
static lx_status inner_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    inner_mod *s = (inner_mod *)m;
    lx_key k;
    LX_TRY(nnx_rngs_draw(rngs, "params", &k));
    lx_initializer ln = lx_init_lecun_normal();
    LX_TRY(nnx_param_new(&lx_Param, &ln, k, LX_F32, 2, (int64_t[]){s->cfg.din, s->cfg.dout}, NULL, &s->w));
    lx_call d = LX_CALL_ARGS(lx_float_v(s->cfg.rate));
    return nnx_module_new(&nnx_Dropout, &d, rngs, &s->dropout);
}
static lx_status inner_call(nnx_module *m, const lx_call *c, lx_value *out) {
    inner_mod *s = (inner_mod *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return linen_return_array(out, nnx_call_array(s->dropout, lx_matmul(x, lx_variable_get_value(s->w))));
}
static const lx_field INNER_CFG[] = {LX_FIELD_REQUIRED_INT(inner_cfg, din), LX_FIELD_REQUIRED_INT(inner_cfg, dout),
                                     LX_FIELD_FLOAT(inner_cfg, rate, 0.5)};
static const nnx_field INNER_FIELDS[] = {NNX_CHILD(inner_mod, dropout), NNX_VAR(inner_mod, w)};
static const nnx_method INNER_METHODS[] = {NNX_METHOD("__call__", inner_call)};
static const nnx_type NNX_INNER = {
    .name = "NNXInner", .size = sizeof(inner_mod), .fields = INNER_FIELDS, .nfields = LX_COUNT(INNER_FIELDS), .config = INNER_CFG,
    .nconfig = LX_COUNT(INNER_CFG), .config_offset = offsetof(inner_mod, cfg), .methods = INNER_METHODS, .nmethods = LX_COUNT(INNER_METHODS),
    .init = inner_init,
};

/* W12: w Param + BatchNorm(dout, use_running_average=False) + LoRA(din, 3, dout). */
typedef struct { int64_t din, dout; bool use_running_average; } coll_cfg;
typedef struct { nnx_module base; coll_cfg cfg; lx_variable *w; nnx_module *bn, *lora; } coll_mod;
static lx_status coll_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    coll_mod *s = (coll_mod *)m;
    lx_key k;
    LX_TRY(nnx_rngs_draw(rngs, "params", &k));
    lx_initializer ln = lx_init_lecun_normal();
    LX_TRY(nnx_param_new(&lx_Param, &ln, k, LX_F32, 2, (int64_t[]){s->cfg.din, s->cfg.dout}, NULL, &s->w));
    lx_call bn = {1, (lx_value[]){lx_int_v(s->cfg.dout)}, 1,
                  (lx_kwarg[]){LX_KW_BOOL("use_running_average", s->cfg.use_running_average)}};
    LX_TRY(nnx_module_new(&nnx_BatchNorm, &bn, rngs, &s->bn));
    lx_call lo = LX_CALL_ARGS(lx_int_v(s->cfg.din), lx_int_v(3), lx_int_v(s->cfg.dout));
    return nnx_module_new(&nnx_LoRA, &lo, rngs, &s->lora);
}
static lx_status coll_call(nnx_module *m, const lx_call *c, lx_value *out) {
    coll_mod *s = (coll_mod *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_array *h = nnx_call_array(s->bn, lx_matmul(x, lx_variable_get_value(s->w)));
    return linen_return_array(out, lx_add(h, nnx_call_array(s->lora, x)));
}
static const lx_field COLL_CFG[] = {LX_FIELD_REQUIRED_INT(coll_cfg, din), LX_FIELD_REQUIRED_INT(coll_cfg, dout),
                                    LX_FIELD_BOOL(coll_cfg, use_running_average, false)};
static const nnx_field COLL_FIELDS[] = {NNX_CHILD(coll_mod, bn), NNX_CHILD(coll_mod, lora), NNX_VAR(coll_mod, w)};
static const nnx_method COLL_METHODS[] = {NNX_METHOD("__call__", coll_call)};
static const nnx_type NNX_COLL = {
    .name = "NNXColl", .size = sizeof(coll_mod), .fields = COLL_FIELDS, .nfields = LX_COUNT(COLL_FIELDS), .config = COLL_CFG,
    .nconfig = LX_COUNT(COLL_CFG), .config_offset = offsetof(coll_mod, cfg), .methods = COLL_METHODS, .nmethods = LX_COUNT(COLL_METHODS),
    .init = coll_init,
};

/* W13 / W16: Counter with count = Count(0); __call__ adds one (W16 also sets a new attribute
 * count_nonzero = Intermediate(1)). */
static const lx_vartype *COUNT;
typedef struct { bool sow; } counter_cfg;
typedef struct { nnx_module base; counter_cfg cfg; lx_variable *count; } counter_mod;
static lx_status counter_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    (void)rngs;
    lx_array *z = lx_array_new(LX_I32, 0, NULL);
    lx_status st = lx_variable_new(COUNT, z, &((counter_mod *)m)->count);
    lx_release(z);
    return st;
}
static lx_status counter_call(nnx_module *m, const lx_call *c, lx_value *out) {
    counter_mod *s = (counter_mod *)m;
    lx_array *cur = lx_variable_get_value(s->count);
    int32_t next = lx_i32(cur)[0] + 1;
    lx_array *n = lx_array_from_data(LX_I32, 0, NULL, &next);
    lx_status st = lx_variable_set_value(s->count, n, false);
    lx_release(n);
    if (st == LX_OK && s->cfg.sow) {
        int32_t one = 1;
        lx_array *a = lx_array_from_data(LX_I32, 0, NULL, &one);
        lx_variable *v = NULL;
        st = lx_variable_new(&lx_Intermediate, a, &v);
        lx_value vv = lx_var_v(v);
        if (st == LX_OK) st = nnx_setattr(m, "count_nonzero", &vv);
        lx_variable_release(v);
        lx_release(a);
    }
    *out = lx_none();
    return st;
}
static const lx_field COUNTER_CFG[] = {LX_FIELD_BOOL(counter_cfg, sow, false)};
static const nnx_field COUNTER_FIELDS[] = {NNX_VAR(counter_mod, count)};
static const nnx_method COUNTER_METHODS[] = {NNX_METHOD("__call__", counter_call)};
static const nnx_type NNX_COUNTER = {
    .name = "Counter", .size = sizeof(counter_mod), .fields = COUNTER_FIELDS, .nfields = LX_COUNT(COUNTER_FIELDS), .config = COUNTER_CFG,
    .nconfig = LX_COUNT(COUNTER_CFG), .config_offset = offsetof(counter_mod, cfg), .methods = COUNTER_METHODS, .nmethods = LX_COUNT(COUNTER_METHODS),
    .init = counter_init,
};

/* W20: Bias registered as 'bias'; NNXMiddle(din, dout): dot = NNXInner(din, dout), b = Bias(zeros
 * (1, dout)) drawn from rngs.params(). */
static const lx_vartype *BIAS;
typedef struct { int64_t din, dout; } mid_cfg;
typedef struct { nnx_module base; mid_cfg cfg; nnx_module *dot; lx_variable *b; } mid_mod;
static lx_status mid_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    mid_mod *s = (mid_mod *)m;
    lx_call ic = LX_CALL_ARGS(lx_int_v(s->cfg.din), lx_int_v(s->cfg.dout));
    LX_TRY(nnx_module_new(&NNX_INNER, &ic, rngs, &s->dot));
    lx_key k;
    LX_TRY(nnx_rngs_draw(rngs, "params", &k));
    lx_initializer z = lx_init_zeros();
    return nnx_param_new(BIAS, &z, k, LX_F32, 2, (int64_t[]){1, s->cfg.dout}, NULL, &s->b);
}
static lx_status mid_call(nnx_module *m, const lx_call *c, lx_value *out) {
    mid_mod *s = (mid_mod *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return linen_return_array(out, lx_add(nnx_call_array(s->dot, x), lx_variable_get_value(s->b)));
}
static const lx_field MID_CFG[] = {LX_FIELD_REQUIRED_INT(mid_cfg, din), LX_FIELD_REQUIRED_INT(mid_cfg, dout)};
static const nnx_field MID_FIELDS[] = {NNX_VAR(mid_mod, b), NNX_CHILD(mid_mod, dot)};
static const nnx_method MID_METHODS[] = {NNX_METHOD("__call__", mid_call)};
static const nnx_type NNX_MIDDLE = {
    .name = "NNXMiddle", .size = sizeof(mid_mod), .fields = MID_FIELDS, .nfields = LX_COUNT(MID_FIELDS), .config = MID_CFG,
    .nconfig = LX_COUNT(MID_CFG), .config_offset = offsetof(mid_mod, cfg), .methods = MID_METHODS, .nmethods = LX_COUNT(MID_METHODS),
    .init = mid_init,
};

/* ---------------------------------------------------------------- Linen test modules */

/* LinenOuter: @compact __call__(x): to_linen(<type>, *ctor)(x) as the auto-named ToLinen_0.
 * Which NNX type and call come from the config (an index into OUTER_CHILDREN). */
typedef struct { int64_t which; } outer_cfg;
static const nnx_type *outer_type[4];
static lx_call outer_ctor[4];
static lx_status outer_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const outer_cfg *cfg = linen_config(s);
    linen_module *m = NULL;
    LX_TRY(bridge_to_linen(outer_type[cfg->which], &outer_ctor[cfg->which], NULL, &m));
    lx_status st = linen_call_child(s, m, NULL, NULL, c, out);
    linen_module_release(m);
    return st;
}
static const lx_field OUTER_FIELDS[] = {LX_FIELD_INT(outer_cfg, which, 0)};
static const linen_method OUTER_METHODS[] = {LINEN_METHOD("__call__", outer_call)};
static const linen_type LINEN_OUTER = {
    .name = "LinenOuter", .config_size = sizeof(outer_cfg), .config = OUTER_FIELDS, .nconfig = LX_COUNT(OUTER_FIELDS),
    .methods = OUTER_METHODS, .nmethods = LX_COUNT(OUTER_METHODS),
};
static linen_module *outer(int which, const nnx_type *t, lx_call ctor) {
    outer_type[which] = t;
    outer_ctor[which] = ctor;
    linen_module *m = NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW_INT("which", which));
    CHECK_EQ_INT(linen_module_new(&LINEN_OUTER, &c, &m), LX_OK);
    return m;
}

/* W14 Foo: setup assigns embedding = to_linen(nnx.Embed, 2, 3); __call__ embeds, attend calls
 * self.embedding.attend(z). */
static lx_status foo_setup(linen_scope *s) {
    lx_call ctor = LX_CALL_ARGS(lx_int_v(2), lx_int_v(3));
    linen_module *e = NULL;
    LX_TRY(bridge_to_linen(&nnx_Embed, &ctor, NULL, &e));
    lx_status st = linen_setup_child(s, "embedding", e);
    linen_module_release(e);
    return st;
}
static lx_status foo_call(linen_scope *s, const lx_call *c, lx_value *out) {
    return linen_call_attr(s, "embedding", NULL, c, out);
}
static lx_status foo_attend(linen_scope *s, const lx_call *c, lx_value *out) {
    return linen_call_attr(s, "embedding", "attend", c, out);
}
static lx_status foo_nope(linen_scope *s, const lx_call *c, lx_value *out) {
    return linen_call_attr(s, "embedding", "nope", c, out);
}
static lx_status foo_features(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    const linen_module *e = NULL;
    LX_TRY(linen_get_attr_module(s, "embedding", &e));
    lx_value v;
    LX_TRY(linen_module_attr(e, "attend", &v)); /* a method: forwarded as a callable */
    if (!(v.kind == LX_V_PTR && strcmp(v.u.ptr.tag, "nnx_method") == 0))
        return lx_fail(LX_ERR_INTERNAL, "attend is not forwarded as a method");
    *out = lx_int_v(1);
    return LX_OK;
}
static const linen_method FOO_METHODS[] = {LINEN_METHOD("__call__", foo_call), LINEN_METHOD("attend", foo_attend),
                                           LINEN_METHOD("nope", foo_nope), LINEN_METHOD("features", foo_features)};
static const linen_type LINEN_FOO = {.name = "Foo", .methods = FOO_METHODS, .nmethods = LX_COUNT(FOO_METHODS), .setup = foo_setup};

/* W20 LinenMiddle(dout): dot = to_linen(NNXInner, x.shape[-1], dout, name='dot'); b =
 * self.variable('bias', 'b', zeros, (1, dout)); dot(x) + b. */
static lx_status zeros_1x3(lx_key key, void *user, lx_value *leaf) {
    (void)key;
    (void)user;
    *leaf = lx_array_v(lx_array_new(LX_F32, 2, (int64_t[]){1, 3}));
    return LX_OK;
}
static lx_status lmid_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_call ctor = LX_CALL_ARGS(lx_int_v(x->shape[x->ndim - 1]), lx_int_v(3));
    bridge_to_linen_opts o = {.name = "dot"};
    linen_module *dot = NULL;
    LX_TRY(bridge_to_linen(&NNX_INNER, &ctor, &o, &dot));
    lx_value y = lx_none(), b = lx_none();
    lx_status st = linen_call_child(s, dot, NULL, NULL, c, &y);
    linen_module_release(dot);
    if (st == LX_OK) st = linen_variable(s, "bias", "b", zeros_1x3, NULL, &b);
    if (st == LX_OK) st = linen_return_array(out, lx_add(y.u.array, b.u.array));
    lx_value_free(&y);
    return st;
}
static const linen_method LMID_METHODS[] = {LINEN_METHOD("__call__", lmid_call)};
static const linen_type LINEN_MIDDLE = {.name = "LinenMiddle", .methods = LMID_METHODS, .nmethods = LX_COUNT(LMID_METHODS)};

/* ---------------------------------------------------------------- W10-W20 */

static void test_w10_nnx_to_linen(void) {
    /* to_linen(nnx.Linear, 32, out_features=64).init_with_output(key(0), ones((1, 32))) */
    lx_call ctor = {1, (lx_value[]){lx_int_v(32)}, 1, (lx_kwarg[]){LX_KW_INT("out_features", 64)}};
    linen_module *m = to_linen_args(&nnx_Linear, &ctor, NULL);
    lx_array *x = ONES(1, 32);
    lx_call c = LX_ARGS(x);
    lx_value y;
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &y, &v), LX_OK);
    CHECK(SHAPE_IS(out_array(&y), 1, 64));
    CHECK(collections_are(v, 1, (const char *[]){"params"}));
    CHECK(SHAPE_IS(array_at(v, "params/kernel"), 32, 64));
    CHECK(SHAPE_IS(array_at(v, "params/bias"), 64));
    CHECK(at(v, "params/kernel")->kind == LX_V_ARRAY); /* a vanilla Param is stored raw */
    CHECK(affine_close(out_array(&y), x, array_at(v, "params/kernel"), NULL));
    lx_value y2;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y2, NULL), LX_OK);
    CHECK(out_array(&y2) && lx_array_equal(out_array(&y), out_array(&y2)));
    lx_value_free(&y);
    lx_value_free(&y2);
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_w11_multiple_rngs(void) {
    linen_module *m = outer(0, &NNX_INNER, LX_CALL_ARGS(lx_int_v(4), lx_int_v(3)));
    lx_array *x = arr(2, SHAPE(2, 4), (float[]){1, 2, 3, 4, -1, 0.5f, 2, -3});
    lx_call c = LX_ARGS(x);
    lx_value y1, y2;
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init_with_output(m, LINEN_RNGS({"params", lx_key_from_seed(1)}, {"dropout", lx_key_from_seed(2)}),
                                        &c, NULL, &y1, &v),
                 LX_OK);
    CHECK(collections_are(v, 1, (const char *[]){"params"})); /* RNG state is never exported */
    lx_array *w = array_at(v, "params/ToLinen_0/w");
    CHECK(SHAPE_IS(w, 4, 3));
    for (int i = 0; w && i < 12; i++) CHECK_EQ_U32(lx_ulp_distance(lx_f32(w)[i], TLF_W11_W[i]), 0);
    CHECK_EQ_INT(linen_apply(m, v, LINEN_RNGS({"dropout", lx_key_from_seed(3)}), &c, NULL, &y2, NULL), LX_OK);
    lx_array *a = out_array(&y1), *b = out_array(&y2);
    CHECK(a && b && !lx_array_equal(a, b)); /* dropout keys differ */
    /* Exact masks: the apply-time module is rebuilt abstractly with this apply's dropout key. */
    lx_array *xw = lx_matmul(x, w);
    for (int i = 0; a && b && xw && i < 6; i++) {
        float want = 2.0f * lx_f32(xw)[i];
        CHECK_NEAR(lx_f32(a)[i], TLF_W11_MASK_INIT[i] ? want : 0.0f, 1e-5);
        CHECK_NEAR(lx_f32(b)[i], TLF_W11_MASK_APPLY[i] ? want : 0.0f, 1e-5);
    }
    /* Without a dropout key, apply uses Rngs(default=0): a fixed mask (Flax's behaviour). */
    lx_value y3, y4;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y3, NULL), LX_OK);
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y4, NULL), LX_OK);
    CHECK(out_array(&y3) && out_array(&y4) && lx_array_equal(out_array(&y3), out_array(&y4)));
    lx_value_free(&y1);
    lx_value_free(&y2);
    lx_value_free(&y3);
    lx_value_free(&y4);
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_w11_dropout_needs_a_stream(void) {
    /* init with only a params key: the Dropout constructor finds no 'dropout' (nor 'default'). */
    linen_module *m = outer(0, &NNX_INNER, LX_CALL_ARGS(lx_int_v(4), lx_int_v(3)));
    lx_call c = LX_ARGS(ONES(2, 4));
    lx_tree *v = NULL;
    CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &v), LX_ERR_RNG,
                "No RngStream named 'dropout' found in Rngs.");
    CHECK(v == NULL);
    linen_module_release(m);
}

static void test_w12_multiple_collections(void) {
    lx_call ctor = LX_CALL_ARGS(lx_int_v(4), lx_int_v(3));
    linen_module *m = to_linen_args(&NNX_COLL, &ctor, NULL);
    lx_array *x = arr(2, SHAPE(2, 4), (float[]){1, 2, 3, 4, -1, 0.5f, 2, -3});
    lx_call c = LX_ARGS(x);
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_RNGS({"params", lx_key_from_seed(0)}, {"dropout", lx_key_from_seed(1)}), &c,
                            NULL, &v),
                 LX_OK);
    CHECK(collections_are(v, 3, (const char *[]){"LoRAParam", "params", "batch_stats"}));
    CHECK(SHAPE_IS(array_at(v, "params/w"), 4, 3));
    CHECK(SHAPE_IS(array_at(v, "params/bn/scale"), 3) && SHAPE_IS(array_at(v, "params/bn/bias"), 3));
    CHECK(SHAPE_IS(array_at(v, "batch_stats/bn/mean"), 3) && SHAPE_IS(array_at(v, "batch_stats/bn/var"), 3));
    CHECK(SHAPE_IS(array_at(v, "LoRAParam/lora/lora_a"), 4, 3) && SHAPE_IS(array_at(v, "LoRAParam/lora/lora_b"), 3, 3));
    /* Flax's order: collections first seen in the sorted flat state (bn < lora < w). */
    CHECK_STR(lx_tree_key(v, 0), "params");
    CHECK_STR(lx_tree_key(v, 1), "batch_stats");
    CHECK_STR(lx_tree_key(v, 2), "LoRAParam");
    /* init keeps the constructor's statistics (zeros / ones), as Linen's BatchNorm does. */
    lx_array *mean = array_at(v, "batch_stats/bn/mean"), *var = array_at(v, "batch_stats/bn/var");
    CHECK(mean && lx_f32(mean)[0] == 0.0f && var && lx_f32(var)[0] == 1.0f);
    /* Training-mode BatchNorm updates batch_stats: apply must allow it (see the immutable test). */
    linen_opts o = {.mutable = LINEN_MUTABLE("batch_stats"), .mutable_given = true};
    lx_value y;
    lx_tree *upd = NULL;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, &o, &y, &upd), LX_OK);
    CHECK(SHAPE_IS(out_array(&y), 2, 3));
    CHECK(collections_are(upd, 1, (const char *[]){"batch_stats"}));
    lx_array *m2 = array_at(upd, "batch_stats/bn/mean");
    CHECK(m2 && m2 != mean && lx_f32(m2)[0] != 0.0f);
    lx_value_free(&y);
    lx_tree_release(upd);
    lx_tree_release(v);
    linen_module_release(m);
}

static linen_module *counter_to_linen(bool sow) {
    /* bridge.ToLinen(Counter, skip_rng=True), built from the Linen type by its fields. */
    lx_call ctor = {0, NULL, 1, (lx_kwarg[]){LX_KW_BOOL("sow", sow)}};
    lx_call c = {1, (lx_value[]){lx_ptr_v("nnx_type", (void *)&NNX_COUNTER)}, 2,
                 (lx_kwarg[]){LX_KW("ctor", lx_ptr_v("lx_call", &ctor)), LX_KW_BOOL("skip_rng", true)}};
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&bridge_ToLinen, &c, &m), LX_OK);
    return m;
}

static int count_at(const lx_tree *t, const char *path) {
    lx_array *a = array_at(t, path);
    return a && a->dtype == LX_I32 ? lx_i32(a)[0] : -999;
}

static void test_w13_nnx_to_linen_mutable(void) {
    CHECK_EQ_INT(lx_variable_register_name("Count", COUNT, true), LX_OK);
    linen_module *m = counter_to_linen(false);
    lx_call none = LX_NO_CALL;
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &none, NULL, &v), LX_OK);
    CHECK_EQ_INT(count_at(v, "Count/count"), 0); /* the constructor's value */
    linen_opts o = {.mutable = LINEN_MUTABLE("Count"), .mutable_given = true};
    lx_tree *upd = NULL;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &none, &o, NULL, &upd), LX_OK);
    CHECK_EQ_INT(count_at(upd, "Count/count"), 1);
    CHECK_EQ_INT(count_at(v, "Count/count"), 0); /* the caller's tree is never written */
    /* variables | updates, applied again (mutable: a plain apply would change an immutable
     * collection, which linnx refuses; see test_immutable_change_fails). */
    lx_tree *merged = NULL, *upd2 = NULL;
    CHECK_EQ_INT(lx_tree_merge(v, upd, &merged), LX_OK);
    CHECK_EQ_INT(linen_apply(m, merged, LINEN_NO_RNGS, &none, &o, NULL, &upd2), LX_OK);
    CHECK_EQ_INT(count_at(upd2, "Count/count"), 2);
    lx_tree_release(merged);
    lx_tree_release(upd);
    lx_tree_release(upd2);
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_w14_to_linen_method_call(void) {
    linen_module *foo = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_FOO, NULL, &foo), LX_OK);
    int32_t one = 1;
    lx_array *x = lx_autorelease(lx_array_from_data(LX_I32, 1, SHAPE(1), &one));
    lx_array *z = ONES(1, 3);
    lx_call cx = LX_ARGS(x), cz = LX_ARGS(z);
    lx_value y;
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init_with_output(foo, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &y, &v), LX_OK);
    CHECK(SHAPE_IS(out_array(&y), 1, 3));
    CHECK(SHAPE_IS(array_at(v, "params/embedding/embedding"), 2, 3));
    lx_value a;
    linen_opts o = {.method = "attend"};
    CHECK_EQ_INT(linen_apply(foo, v, LINEN_NO_RNGS, &cz, &o, &a, NULL), LX_OK);
    CHECK(SHAPE_IS(out_array(&a), 1, 2));
    lx_value_free(&a);
    /* a method the NNX class does not have, reached through the parent */
    o.method = "nope";
    CHECK_FAILS(linen_apply(foo, v, LINEN_NO_RNGS, &cz, &o, &a, NULL), LX_ERR_NOT_FOUND,
                "\"ToLinen\" object has no attribute \"nope\".");
    o.method = "features";
    CHECK_EQ_INT(linen_apply(foo, v, LINEN_NO_RNGS, &cz, &o, &a, NULL), LX_OK);
    lx_value_free(&y);
    lx_tree_release(v);
    linen_module_release(foo);
}

static void test_w15_to_linen_nnx_method_arg(void) {
    lx_call ctor = LX_CALL_ARGS(lx_int_v(2), lx_int_v(3));
    linen_module *m = to_linen_args(&nnx_Embed, &ctor, NULL);
    int32_t one = 1;
    lx_array *x = lx_autorelease(lx_array_from_data(LX_I32, 1, SHAPE(1), &one));
    lx_array *z = ONES(1, 3);
    lx_call cx = LX_ARGS(x);
    lx_value y;
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &y, &v), LX_OK);
    CHECK(SHAPE_IS(out_array(&y), 1, 3));
    CHECK(SHAPE_IS(array_at(v, "params/embedding"), 2, 3));
    lx_call cz = {1, (lx_value[]){lx_array_v(z)}, 1, (lx_kwarg[]){LX_KW_STR("nnx_method", "attend")}};
    lx_value a;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &cz, NULL, &a, NULL), LX_OK);
    CHECK(SHAPE_IS(out_array(&a), 1, 2));
    /* the same by function (Flax's nnx_method=nnx.Embed.attend) and through apply(method=) */
    lx_value fn;
    CHECK_EQ_INT(linen_module_attr(m, "attend", &fn), LX_OK);
    lx_call cf = {1, (lx_value[]){lx_array_v(z)}, 1, (lx_kwarg[]){LX_KW("nnx_method", fn)}};
    lx_value b, d;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &cf, NULL, &b, NULL), LX_OK);
    CHECK(out_array(&a) && out_array(&b) && lx_array_equal(out_array(&a), out_array(&b)));
    linen_opts o = {.method = "attend"};
    lx_call cz2 = LX_ARGS(z);
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &cz2, &o, &d, NULL), LX_OK);
    CHECK(out_array(&d) && out_array(&a) && lx_array_equal(out_array(&a), out_array(&d)));
    lx_value_free(&y);
    lx_value_free(&a);
    lx_value_free(&b);
    lx_value_free(&d);
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_w16_mutated_static_data(void) {
    CHECK_EQ_INT(lx_variable_register_name("Count", COUNT, true), LX_OK);
    linen_module *m = counter_to_linen(true);
    lx_call none = LX_NO_CALL;
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &none, NULL, &v), LX_OK);
    CHECK_EQ_INT(count_at(v, "Count/count"), 0);
    CHECK(!lx_tree_get(v, "intermediates")); /* init's default mutability denies intermediates */
    linen_opts o = {.mutable = LINEN_MUTABLE("Count", "intermediates"), .mutable_given = true};
    lx_tree *upd = NULL;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &none, &o, NULL, &upd), LX_OK);
    CHECK_EQ_INT(count_at(upd, "Count/count"), 1);
    CHECK_EQ_INT(count_at(upd, "intermediates/count_nonzero"), 1);
    /* del updates['intermediates']; apply(variables | updates) */
    CHECK_EQ_INT(lx_tree_delete(upd, "intermediates"), LX_OK);
    lx_tree *merged = NULL, *upd2 = NULL;
    CHECK_EQ_INT(lx_tree_merge(v, upd, &merged), LX_OK);
    linen_opts oc = {.mutable = LINEN_MUTABLE("Count"), .mutable_given = true};
    CHECK_EQ_INT(linen_apply(m, merged, LINEN_NO_RNGS, &none, &oc, NULL, &upd2), LX_OK);
    CHECK_EQ_INT(count_at(upd2, "Count/count"), 2);
    /* the new Intermediate of an immutable collection is dropped, as Linen's sow would */
    CHECK(!lx_tree_get(upd2, "intermediates"));
    /* the cached module did not keep the attribute the call added: a fresh apply sees none */
    lx_tree *upd3 = NULL;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &none, &o, NULL, &upd3), LX_OK);
    CHECK_EQ_INT(count_at(upd3, "Count/count"), 1);
    CHECK_EQ_INT(count_at(upd3, "intermediates/count_nonzero"), 1);
    lx_tree_release(upd3);
    lx_tree_release(merged);
    lx_tree_release(upd);
    lx_tree_release(upd2);
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_w18_nnx_to_linen_metadata(void) {
    const char *names[] = {"in", "out"};
    lx_tree *md = NULL;
    CHECK_EQ_INT(nnx_sharding_metadata(2, names, NULL, &md), LX_OK);
    lx_call ctor = {2, (lx_value[]){lx_int_v(32), lx_int_v(64)}, 1, (lx_kwarg[]){LX_KW("kernel_metadata", lx_tree_v(md))}};
    linen_module *m = to_linen_args(&nnx_Linear, &ctor, NULL);
    lx_tree_release(md);
    lx_array *x = ONES(1, 32);
    lx_call c = LX_ARGS(x);
    lx_value y;
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &y, &v), LX_OK);
    CHECK(SHAPE_IS(out_array(&y), 1, 64));
    const lx_value *k = at(v, "params/kernel");
    CHECK(k && k->kind == LX_V_BOX && lx_box_get_kind(k->u.box) == LX_BOX_NNX_META);
    if (k && k->kind == LX_V_BOX) {
        CHECK(lx_box_var_type(k->u.box) == &lx_Param);
        const lx_value *nm = lx_box_names(k->u.box);
        CHECK(nm && nm->u.strs.n == 2 && strcmp(nm->u.strs.v[0], "in") == 0 && strcmp(nm->u.strs.v[1], "out") == 0);
    }
    CHECK(at(v, "params/bias")->kind == LX_V_ARRAY);
    CHECK(affine_close(out_array(&y), x, array_at(v, "params/kernel"), NULL));
    /* apply unboxes; unchanged state is not written back: the caller's box comes back as is */
    linen_opts o = {.mutable = LINEN_MUTABLE_EVERYTHING, .mutable_given = true};
    lx_value y2;
    lx_tree *upd = NULL;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, &o, &y2, &upd), LX_OK);
    CHECK(out_array(&y2) && lx_array_equal(out_array(&y), out_array(&y2)));
    CHECK(at(upd, "params/kernel") && k && at(upd, "params/kernel")->u.box == k->u.box);
    lx_value_free(&y);
    lx_value_free(&y2);
    lx_tree_release(upd);
    lx_tree_release(v);
    linen_module_release(m);
}

/* W18 as Flax writes it: kernel_init=nnx.with_partitioning(lecun_normal(), ('in', 'out')) (an
 * initializer, not kernel_metadata). params/kernel is an NNXMeta whose metadata has out_sharding
 * and mesh=None (spec/flax-bridge.md §4.4 (a)); its value is the plain to_linen(Linear)'s for the
 * same key; apply (which builds the module abstractly) unboxes it and returns the box as is. */
static void test_w18_with_partitioning_initializer(void) {
    lx_initializer ln = lx_init_lecun_normal(), kinit;
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 2, (const char *[]){"in", "out"}, NULL, &kinit), LX_OK);
    lx_call ctor = {2, (lx_value[]){lx_int_v(32), lx_int_v(64)}, 1,
                    (lx_kwarg[]){LX_KW("kernel_init", lx_ptr_v("initializer", &kinit))}};
    linen_module *m = to_linen_args(&nnx_Linear, &ctor, NULL);
    lx_array *x = ONES(1, 32);
    lx_call c = LX_ARGS(x);
    lx_value y;
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &y, &v), LX_OK);
    const lx_value *k = at(v, "params/kernel");
    CHECK(k && k->kind == LX_V_BOX && lx_box_get_kind(k->u.box) == LX_BOX_NNX_META);
    if (k && k->kind == LX_V_BOX) {
        CHECK(lx_box_var_type(k->u.box) == &lx_Param);
        const lx_value *nm = lx_box_names(k->u.box);
        CHECK(nm && nm->u.strs.n == 2 && strcmp(nm->u.strs.v[0], "in") == 0 && strcmp(nm->u.strs.v[1], "out") == 0);
        const lx_value *mesh = lx_tree_get(lx_box_metadata(k->u.box), "mesh");
        CHECK(mesh && mesh->kind == LX_V_NONE);
        CHECK(lx_tree_get(lx_box_metadata(k->u.box), "linen_meta_type") == NULL);
    }
    CHECK(at(v, "params/bias")->kind == LX_V_ARRAY);
    CHECK(affine_close(out_array(&y), x, array_at(v, "params/kernel"), NULL));

    lx_call pctor = {2, (lx_value[]){lx_int_v(32), lx_int_v(64)}, 0, NULL};
    linen_module *plain = to_linen_args(&nnx_Linear, &pctor, NULL);
    lx_tree *pv = NULL;
    CHECK_EQ_INT(linen_init(plain, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &pv), LX_OK);
    CHECK(array_at(pv, "params/kernel") && lx_array_equal(array_at(pv, "params/kernel"), array_at(v, "params/kernel")));
    lx_tree_release(pv);
    linen_module_release(plain);

    linen_opts o = {.mutable = LINEN_MUTABLE_EVERYTHING, .mutable_given = true};
    lx_value y2;
    lx_tree *upd = NULL;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, &o, &y2, &upd), LX_OK);
    CHECK(out_array(&y2) && lx_array_equal(out_array(&y), out_array(&y2)));
    CHECK(at(upd, "params/kernel") && k && at(upd, "params/kernel")->u.box == k->u.box);
    lx_value_free(&y);
    lx_value_free(&y2);
    lx_tree_release(upd);
    lx_tree_release(v);
    linen_module_release(m);
}

/* to_linen keeps its own copy of an initializer passed in the constructor call: the caller's
 * struct (often on the stack) may change or go away before init and apply. */
static void test_ctor_initializer_is_copied(void) {
    lx_initializer init = lx_init_ones();
    lx_call ctor = {2, (lx_value[]){lx_int_v(3), lx_int_v(2)}, 1,
                    (lx_kwarg[]){LX_KW("kernel_init", lx_ptr_v("initializer", &init))}};
    linen_module *m = to_linen_args(&nnx_Linear, &ctor, NULL);
    init = lx_init_zeros(); /* what a reused stack slot would do */
    lx_array *x = ONES(1, 3);
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &v), LX_OK);
    lx_array *k = v ? array_at(v, "params/kernel") : NULL;
    CHECK(k && SHAPE_IS(k, 3, 2));
    for (int i = 0; k && i < 6; i++) CHECK_EQ_INT((int)lx_f32(k)[i], 1);
    lx_tree_release(v);
    linen_module_release(m);
}

/* spec/flax-bridge.md §4.4 (b): kernel_init=bridge.with_partitioning(lecun_normal(), ('in', 'out'))
 * leaves NNX through ToLinen as a real nn.Partitioned box (not an NNXMeta), and a Linen apply
 * unboxes it. */
static void test_bridge_with_partitioning(void) {
    const char *names[] = {"in", "out"};
    lx_tree *md = NULL;
    CHECK_EQ_INT(bridge_with_partitioning(2, names, NULL, &md), LX_OK);
    lx_call ctor = {2, (lx_value[]){lx_int_v(4), lx_int_v(3)}, 1, (lx_kwarg[]){LX_KW("kernel_metadata", lx_tree_v(md))}};
    linen_module *m = to_linen_args(&nnx_Linear, &ctor, NULL);
    lx_tree_release(md);
    lx_array *x = ONES(2, 4);
    lx_call c = LX_ARGS(x);
    lx_value y;
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &y, &v), LX_OK);
    const lx_value *k = at(v, "params/kernel");
    CHECK(k && k->kind == LX_V_BOX && lx_box_get_kind(k->u.box) == LX_BOX_PARTITIONED);
    if (k && k->kind == LX_V_BOX) {
        const lx_value *nm = lx_box_names(k->u.box);
        CHECK(nm && nm->u.strs.n == 2 && strcmp(nm->u.strs.v[0], "in") == 0 && strcmp(nm->u.strs.v[1], "out") == 0);
        CHECK(lx_box_mesh(k->u.box) == NULL);
        CHECK(SHAPE_IS(lx_box_unbox(k->u.box), 4, 3));
    }
    CHECK(at(v, "params/bias") && at(v, "params/bias")->kind == LX_V_ARRAY);
    lx_value y2;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y2, NULL), LX_OK);
    CHECK(out_array(&y2) && lx_array_equal(out_array(&y), out_array(&y2)));
    CHECK(affine_close(out_array(&y2), x, array_at(v, "params/kernel"), NULL));
    lx_value_free(&y);
    lx_value_free(&y2);
    lx_tree_release(v);
    linen_module_release(m);
    /* bad arguments are refused (a NULL names array with a count used to crash), *out NULL */
    md = (lx_tree *)&md;
    CHECK_FAILS(bridge_with_partitioning(2, NULL, NULL, &md), LX_ERR_INVALID_ARGUMENT, "with_partitioning: names is NULL");
    CHECK(md == NULL);
    CHECK_FAILS(bridge_with_partitioning(-1, names, NULL, &md), LX_ERR_INVALID_ARGUMENT,
                "with_partitioning: -1 names; an array has 0 to 8 axes to name");
    CHECK_FAILS(bridge_with_partitioning(9, names, NULL, &md), LX_ERR_INVALID_ARGUMENT, "9 names");
    CHECK_EQ_INT(bridge_with_partitioning(0, NULL, "mesh", &md), LX_OK); /* names=() */
    const lx_value *os = md ? lx_tree_get(md, "out_sharding") : NULL;
    CHECK(os && os->kind == LX_V_STRS && os->u.strs.n == 0);
    lx_tree_release(md);
    /* More names than the kernel's rank: init fails as the initializer route does (LX_ERR_SHAPE
     * naming the attribute) instead of storing Partitioned(float32[4,3], names=('a', 'b', 'c')). */
    const char *three[] = {"a", "b", "c"};
    CHECK_EQ_INT(bridge_with_partitioning(3, three, NULL, &md), LX_OK);
    lx_call ctor3 = {2, (lx_value[]){lx_int_v(4), lx_int_v(3)}, 1, (lx_kwarg[]){LX_KW("kernel_metadata", lx_tree_v(md))}};
    m = to_linen_args(&nnx_Linear, &ctor3, NULL);
    lx_tree_release(md);
    v = (lx_tree *)&v;
    CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &v), LX_ERR_SHAPE,
                "Linear.kernel: Param: out_sharding ('a', 'b', 'c') has 3 entries, more than the rank of a value of "
                "shape (4, 3)");
    CHECK(v == NULL);
    linen_module_release(m);
}

/* jax.tree.structure equality: the same set of paths (dict order does not matter), arrays of
 * the same shapes. */
static bool same_structure(const lx_tree *a, const lx_tree *b) {
    lx_flat fa = {0}, fb = {0};
    bool ok = lx_tree_flatten(a, &fa) == LX_OK && lx_tree_flatten(b, &fb) == LX_OK && fa.len == fb.len;
    for (size_t i = 0; ok && i < fa.len; i++) {
        const lx_value *w = lx_tree_find(b, fa.items[i].path);
        const lx_array *x = fa.items[i].value.kind == LX_V_ARRAY ? fa.items[i].value.u.array : NULL;
        const lx_array *y = w && w->kind == LX_V_ARRAY ? w->u.array : NULL;
        ok = x && y && lx_same_shape(x, y);
    }
    lx_flat_free(&fa);
    lx_flat_free(&fb);
    return ok;
}

static void test_w20_pytree_structure_consistency(void) {
    CHECK_EQ_INT(lx_variable_register_name("bias", BIAS, true), LX_OK);
    lx_array *x = arr(2, SHAPE(2, 4), (float[]){1, 2, 3, 4, -1, 0.5f, 2, -3});
    lx_call c = LX_ARGS(x);
    linen_rngs keys = LINEN_RNGS({"params", lx_key_from_seed(0)}, {"dropout", lx_key_from_seed(1)});
    lx_call ctor = {0, NULL, 2, (lx_kwarg[]){LX_KW_INT("din", 4), LX_KW_INT("dout", 3)}};
    linen_module *top = to_linen_args(&NNX_MIDDLE, &ctor, NULL);
    linen_module *mid = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_MIDDLE, NULL, &mid), LX_OK);
    lx_tree *from_top = NULL, *from_middle = NULL;
    CHECK_EQ_INT(linen_init(top, keys, &c, NULL, &from_top), LX_OK);
    CHECK_EQ_INT(linen_init(mid, keys, &c, NULL, &from_middle), LX_OK);
    CHECK(same_structure(from_top, from_middle));
    CHECK(SHAPE_IS(array_at(from_top, "params/dot/w"), 4, 3) && SHAPE_IS(array_at(from_top, "bias/b"), 1, 3));
    lx_tree_release(from_top);
    lx_tree_release(from_middle);
    linen_module_release(top);
    linen_module_release(mid);
    lx_variable_registry_reset();
}

/* ---------------------------------------------------------------- the worked problem */

static void test_nnx_inside_linen_numbers(void) {
    for (size_t i = 0; i < sizeof TLF_CASES / sizeof TLF_CASES[0]; i++) {
        const tlf_case *t = &TLF_CASES[i];
        lx_array *y = nnx_inside_linen(t->seed, t->x, t->n, t->features);
        CHECK(y && y->ndim == 1 && y->shape[0] == t->features);
        for (int j = 0; y && j < t->features; j++) CHECK_NEAR(lx_f32(y)[j], t->y[j], 1e-6 * (1 + fabs(t->y[j])));
        lx_release(y);
        /* the parameters, bit for bit */
        linen_module *m = BRIDGE_TO_LINEN(&MY_NNX, LX_KW_INT("in_features", t->n), LX_KW_INT("out_features", t->features));
        lx_call c = LX_ARGS(arr(1, SHAPE(t->n), t->x));
        lx_tree *v = NULL;
        CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(t->seed)), &c, NULL, &v), LX_OK);
        lx_array *k = array_at(v, "params/linear/kernel");
        CHECK(SHAPE_IS(k, t->n, t->features));
        for (int j = 0; k && j < t->n * t->features; j++) CHECK_EQ_U32(lx_ulp_distance(lx_f32(k)[j], t->kernel[j]), 0);
        CHECK(SHAPE_IS(array_at(v, "params/linear/bias"), t->features));
        lx_tree_release(v);
        linen_module_release(m);
    }
}

static void test_child_key_and_name(void) {
    /* A compact child is auto-named ToLinen_0 and draws its key from the hash of
     * ('ToLinen_0', 1). */
    linen_module *m = outer(1, &nnx_Linear, LX_CALL_ARGS(lx_int_v(4), lx_int_v(8)));
    lx_call c = LX_ARGS(ONES(2, 4));
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &v), LX_OK);
    lx_array *k = array_at(v, "params/ToLinen_0/kernel");
    CHECK(SHAPE_IS(k, 4, 8));
    for (int j = 0; k && j < 32; j++) CHECK_EQ_U32(lx_ulp_distance(lx_f32(k)[j], TLF_CHILD_KERNEL[j]), 0);
    lx_value y;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
    CHECK(affine_close(out_array(&y), c.args[0].u.array, k, array_at(v, "params/ToLinen_0/bias")));
    lx_value_free(&y);
    lx_tree_release(v);
    linen_module_release(m);
}

/* ---------------------------------------------------------------- deliberate differences */

static int64_t big_allocs;
static size_t big_threshold;
static void count_big(size_t nbytes, void *user) {
    (void)user;
    if (nbytes >= big_threshold) big_allocs++;
}

static void test_apply_runs_no_initializer(void) {
    /* Linear(512, 512): a 1 MiB kernel; activations of a (1, 512) input are 2 KiB. Any
     * allocation >= the kernel's size during apply would be an initializer running. */
    linen_module *m = BRIDGE_TO_LINEN(&nnx_Linear, LX_KW_INT("in_features", 512), LX_KW_INT("out_features", 512));
    lx_array *x = ONES(1, 512);
    lx_call c = LX_ARGS(x);
    lx_tree *v = NULL;
    big_threshold = 512 * 512 * sizeof(float);
    big_allocs = 0;
    lx_set_alloc_hook(count_big, NULL);
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &v), LX_OK);
    CHECK_EQ_INT(big_allocs, 1); /* the kernel, once: the hook sees initializers */
    big_allocs = 0;
    int64_t live = lx_array_live_count();
    for (int i = 0; i < 3; i++) {
        lx_value y;
        CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
        CHECK(affine_close(out_array(&y), x, array_at(v, "params/kernel"), NULL));
        lx_value_free(&y);
    }
    CHECK_EQ_INT(big_allocs, 0);
    /* the cache keeps placeholders only: the caller's arrays are not held after apply */
    lx_array *kernel = array_at(v, "params/kernel");
    CHECK_EQ_INT(kernel->refcount, 1);
    CHECK(lx_array_live_count() - live <= 4); /* the cached abstract module's placeholders */
    /* a module with RNG streams is rebuilt per apply, abstractly: still nothing big */
    linen_module *d = outer(2, &NNX_INNER, LX_CALL_ARGS(lx_int_v(512), lx_int_v(512)));
    lx_tree *vd = NULL;
    CHECK_EQ_INT(linen_init(d, LINEN_RNGS({"params", lx_key_from_seed(0)}, {"dropout", lx_key_from_seed(1)}), &c, NULL,
                            &vd),
                 LX_OK);
    big_allocs = 0;
    lx_value yd;
    CHECK_EQ_INT(linen_apply(d, vd, LINEN_RNGS({"dropout", lx_key_from_seed(2)}), &c, NULL, &yd, NULL), LX_OK);
    CHECK_EQ_INT(big_allocs, 0);
    lx_set_alloc_hook(NULL, NULL);
    lx_value_free(&yd);
    lx_tree_release(vd);
    linen_module_release(d);
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_init_keeps_variables_created_in_call(void) {
    /* Flax exports the state before the init call: count_nonzero (made by __call__) is lost
     * there. linnx stores after the call; the constructor's count keeps its value 0. */
    CHECK_EQ_INT(lx_variable_register_name("Count", COUNT, true), LX_OK);
    linen_module *m = counter_to_linen(true);
    lx_call none = LX_NO_CALL;
    linen_opts all = {.mutable = LINEN_MUTABLE_EVERYTHING, .mutable_given = true};
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &none, &all, &v), LX_OK);
    CHECK_EQ_INT(count_at(v, "intermediates/count_nonzero"), 1);
    CHECK_EQ_INT(count_at(v, "Count/count"), 0);
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_duplicate_path_is_an_error(void) {
    linen_module *m = BRIDGE_TO_LINEN(&nnx_Linear, LX_KW_INT("in_features", 2), LX_KW_INT("out_features", 3));
    lx_call c = LX_ARGS(ONES(1, 2));
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &v), LX_OK);
    lx_tree *bad = lx_tree_copy(v);
    CHECK_EQ_INT(lx_tree_set_path(bad, "other/kernel", lx_array_v(array_at(v, "params/kernel"))), LX_OK);
    lx_value y;
    CHECK_FAILS(linen_apply(m, bad, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_ERR_EXISTS,
                "Found duplicate variable path ('kernel',) with variables Param(float32[2,3]) and other(float32[2,3]). "
                "This is not allowed in NNX.");
    /* the module still works afterwards */
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
    lx_value_free(&y);
    lx_tree_release(bad);
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_immutable_change_fails(void) {
    lx_call ctor = LX_CALL_ARGS(lx_int_v(4), lx_int_v(3));
    linen_module *m = to_linen_args(&NNX_COLL, &ctor, NULL);
    lx_array *x = arr(2, SHAPE(2, 4), (float[]){1, 2, 3, 4, -1, 0.5f, 2, -3});
    lx_call c = LX_ARGS(x);
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &v), LX_OK);
    lx_value y = lx_int_v(5);
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_ERR_IMMUTABLE,
                "Cannot update variable \"bn/mean\" in \"/\" because collection \"batch_stats\" is immutable.");
    CHECK(y.kind == LX_V_NONE);
    /* mutable=['params'] is not enough either: the statistics are batch_stats */
    linen_opts op = {.mutable = LINEN_MUTABLE("params"), .mutable_given = true};
    lx_tree *upd = NULL;
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &c, &op, &y, &upd), LX_ERR_IMMUTABLE, "\"batch_stats\" is immutable");
    CHECK(upd == NULL);
    /* eval mode changes nothing: a plain apply works, and with batch_stats mutable the
     * unchanged statistics are not written back (the caller's arrays come back as they were) */
    lx_call ctor2 = {2, (lx_value[]){lx_int_v(4), lx_int_v(3)}, 1, (lx_kwarg[]){LX_KW_BOOL("use_running_average", true)}};
    linen_module *e = to_linen_args(&NNX_COLL, &ctor2, NULL);
    lx_tree *ve = NULL;
    CHECK_EQ_INT(linen_init(e, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &ve), LX_OK);
    CHECK_EQ_INT(linen_apply(e, ve, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
    lx_value_free(&y);
    linen_opts ob = {.mutable = LINEN_MUTABLE("batch_stats"), .mutable_given = true};
    CHECK_EQ_INT(linen_apply(e, ve, LINEN_NO_RNGS, &c, &ob, &y, &upd), LX_OK);
    CHECK(array_at(upd, "batch_stats/bn/mean") == array_at(ve, "batch_stats/bn/mean"));
    CHECK(array_at(upd, "batch_stats/bn/var") == array_at(ve, "batch_stats/bn/var"));
    lx_value_free(&y);
    lx_tree_release(upd);
    lx_tree_release(ve);
    linen_module_release(e);
    lx_tree_release(v);
    linen_module_release(m);
}

static lx_status raw_md(const lx_variable *v, void *user, lx_value *out) {
    (*(int *)user)++;
    *out = lx_array_v(lx_retain(lx_variable_get_value(v)));
    return LX_OK;
}

static void test_to_linen_class(void) {
    /* LinearToLinen = to_linen_class(nnx.Linear, base_skip_rng=True, in_features=4, out_features=2) */
    lx_call partial = LX_CALL_KWARGS(LX_KW_INT("in_features", 4), LX_KW_INT("out_features", 2));
    linen_type *cls = NULL;
    CHECK_EQ_INT(bridge_to_linen_class(&nnx_Linear, &partial, NULL, NULL, true, &cls), LX_OK);
    CHECK_STR(cls->name, "LinearToLinen");
    /* constructible directly with the NNX constructor's kwargs; partial < kwargs= < keywords */
    lx_call kw = LX_CALL_KWARGS(LX_KW_INT("out_features", 5));
    lx_call c = LX_CALL_KWARGS(LX_KW("kwargs", lx_ptr_v("lx_call", &kw)), LX_KW_INT("out_features", 6),
                               LX_KW_BOOL("skip_rng", false));
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(cls, &c, &m), LX_OK);
    lx_value f;
    CHECK_EQ_INT(linen_module_attr(m, "out_features", &f), LX_OK);
    CHECK(f.kind == LX_V_INT && f.u.i == 6);
    CHECK_EQ_INT(linen_module_attr(m, "in_features", &f), LX_OK);
    CHECK(f.kind == LX_V_INT && f.u.i == 4);
    CHECK_EQ_INT(linen_module_attr(m, "skip_rng", &f), LX_OK);
    CHECK(f.kind == LX_V_BOOL && !f.u.b); /* skip_rng=False switched the base value off */
    CHECK(bridge_to_linen_nnx_type(m) == &nnx_Linear);
    lx_call cx = LX_ARGS(ONES(1, 4));
    lx_tree *v = NULL;
    lx_value y;
    CHECK_EQ_INT(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &y, &v), LX_OK);
    CHECK(SHAPE_IS(array_at(v, "params/kernel"), 4, 6));
    CHECK(SHAPE_IS(out_array(&y), 1, 6));
    lx_value_free(&y);
    lx_tree_release(v);
    /* without the override the base skip_rng=True holds: Linear then lacks rngs */
    linen_module *s = NULL;
    CHECK_EQ_INT(linen_module_new(cls, NULL, &s), LX_OK);
    CHECK_FAILS(linen_init(s, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_ERR_TYPE,
                "Linear.__init__() missing 1 required keyword-only argument: 'rngs'");
    linen_module_release(s);
    /* a compact child takes the class name: LinearToLinen_0 */
    linen_module_release(m);
    bridge_to_linen_class_free(cls);

    /* metadata_fn=None switches a base metadata_fn off */
    int calls = 0;
    const char *names[] = {"in", "out"};
    lx_tree *md = NULL;
    CHECK_EQ_INT(nnx_sharding_metadata(2, names, NULL, &md), LX_OK);
    lx_call p2 = LX_CALL_KWARGS(LX_KW_INT("in_features", 4), LX_KW_INT("out_features", 2),
                                LX_KW("kernel_metadata", lx_tree_v(md)));
    CHECK_EQ_INT(bridge_to_linen_class(&nnx_Linear, &p2, raw_md, &calls, false, &cls), LX_OK);
    CHECK_EQ_INT(linen_module_new(cls, NULL, &m), LX_OK);
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_OK);
    CHECK_EQ_INT(calls, 2); /* the base metadata_fn ran for kernel and bias */
    lx_tree_release(v);
    linen_module_release(m);
    lx_call off = LX_CALL_KWARGS(LX_KW("metadata_fn", lx_none()));
    CHECK_EQ_INT(linen_module_new(cls, &off, &m), LX_OK);
    calls = 0;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_OK);
    CHECK_EQ_INT(calls, 0);
    CHECK(at(v, "params/kernel") && at(v, "params/kernel")->kind == LX_V_ARRAY); /* raw, no NNXMeta */
    lx_tree_release(v);
    linen_module_release(m);
    /* the default (no base metadata_fn) boxes it */
    bridge_to_linen_class_free(cls);
    CHECK_EQ_INT(bridge_to_linen_class(&nnx_Linear, &p2, NULL, NULL, false, &cls), LX_OK);
    CHECK_EQ_INT(linen_module_new(cls, NULL, &m), LX_OK);
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_OK);
    CHECK(at(v, "params/kernel") && at(v, "params/kernel")->kind == LX_V_BOX);
    lx_tree_release(v);
    linen_module_release(m);
    /* errors of the class constructor */
    lx_call bad = LX_CALL_KWARGS(LX_KW_STR("skip_rng", "yes"));
    CHECK_FAILS(linen_module_new(cls, &bad, &m), LX_ERR_TYPE, "LinearToLinen.__init__(): argument 'skip_rng' must be a bool");
    lx_call bad2 = LX_CALL_KWARGS(LX_KW_INT("metadata_fn", 3));
    CHECK_FAILS(linen_module_new(cls, &bad2, &m), LX_ERR_TYPE, "argument 'metadata_fn' must be None or a bridge_metadata");
    bridge_to_linen_class_free(cls);
    bridge_to_linen_class_free(NULL);
    lx_tree_release(md);
}

/* ---------------------------------------------------------------- warnings, errors, misc */

static void test_unknown_paths_warned_once(void) {
    linen_module *m = BRIDGE_TO_LINEN(&nnx_Linear, LX_KW_INT("in_features", 2), LX_KW_INT("out_features", 3));
    lx_call c = LX_ARGS(ONES(1, 2));
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &v), LX_OK);
    lx_tree *extra = lx_tree_copy(v);
    lx_array *e = ONES(2);
    CHECK_EQ_INT(lx_tree_set_path(extra, "params/extra/w", lx_array_v(e)), LX_OK);
    nwarn = 0;
    lx_set_warning_handler(capture_warning, NULL);
    lx_value y;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(linen_apply(m, extra, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
        lx_value_free(&y);
    }
    CHECK_EQ_INT(nwarn, 1);
    CHECK_STR(warn_text[0], "Found unknown module paths in incoming state:\n  - extra/w");
    /* a new unknown path is warned about; the one already reported is not repeated */
    CHECK_EQ_INT(lx_tree_set_path(extra, "params/more", lx_array_v(e)), LX_OK);
    CHECK_EQ_INT(linen_apply(m, extra, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
    lx_value_free(&y);
    CHECK_EQ_INT(nwarn, 2);
    CHECK_STR(warn_text[1], "Found unknown module paths in incoming state:\n  - more");
    /* the known paths still give the right answer; known-only applies stay silent */
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
    CHECK(affine_close(out_array(&y), ONES(1, 2), array_at(v, "params/kernel"), NULL));
    lx_value_free(&y);
    CHECK_EQ_INT(nwarn, 2);
    lx_set_warning_handler(NULL, NULL);
    lx_tree_release(extra);
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_compact_children_share_the_cache(void) {
    /* LinenOuter makes a new ToLinen on every call; the released one's cache (and the paths it
     * warned about) passes to the next equal one, so the warning is not repeated per apply. */
    linen_module *m = outer(3, &nnx_Linear, LX_CALL_ARGS(lx_int_v(2), lx_int_v(3)));
    lx_call c = LX_ARGS(ONES(1, 2));
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &v), LX_OK);
    lx_tree *extra = lx_tree_copy(v);
    CHECK_EQ_INT(lx_tree_set_path(extra, "params/ToLinen_0/stale", lx_array_v(ONES(3))), LX_OK);
    big_threshold = 1;
    /* count every array the apply makes: with the storage cache on, reused blocks are not
     * heap allocations and the hook would not see them */
    size_t cache_limit = lx_array_cache_limit();
    lx_array_cache_set_limit(0);
    for (int i = 0; i < 3; i++) {
        lx_value y;
        big_allocs = 0;
        lx_set_alloc_hook(count_big, NULL);
        CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
        lx_set_alloc_hook(NULL, NULL);
        CHECK(affine_close(out_array(&y), c.args[0].u.array, array_at(v, "params/ToLinen_0/kernel"),
                           array_at(v, "params/ToLinen_0/bias")));
        lx_value_free(&y);
        /* after the first apply the cached module is reused: the only array allocated is the
         * output of the forward pass (Linear's one fused dense op, linalg.h lx_dense); a rebuild
         * would allocate the Rngs' key and count arrays too */
        if (i > 0) CHECK_EQ_INT(big_allocs, 1);
    }
    lx_array_cache_set_limit(cache_limit);
    nwarn = 0;
    lx_set_warning_handler(capture_warning, NULL);
    for (int i = 0; i < 3; i++) {
        lx_value y;
        CHECK_EQ_INT(linen_apply(m, extra, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
        lx_value_free(&y);
    }
    lx_set_warning_handler(NULL, NULL);
    CHECK_EQ_INT(nwarn, 1);
    /* another constructor call does not take that cache */
    linen_module *m2 = outer(2, &nnx_Linear, LX_CALL_ARGS(lx_int_v(2), lx_int_v(5)));
    lx_tree *v2 = NULL;
    lx_value y2;
    CHECK_EQ_INT(linen_init(m2, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &v2), LX_OK);
    CHECK_EQ_INT(linen_apply(m2, v2, LINEN_NO_RNGS, &c, NULL, &y2, NULL), LX_OK);
    CHECK(SHAPE_IS(out_array(&y2), 1, 5));
    lx_value_free(&y2);
    bridge_to_linen_cache_clear();
    CHECK_EQ_INT(linen_apply(m2, v2, LINEN_NO_RNGS, &c, NULL, &y2, NULL), LX_OK);
    lx_value_free(&y2);
    lx_tree_release(v2);
    linen_module_release(m2);
    lx_tree_release(extra);
    lx_tree_release(v);
    linen_module_release(m);
}

static lx_status rngs_probe(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    nnx_stream_spec sp[4];
    int n = 0;
    LX_TRY(bridge_linen_rngs_dict(NULL, true, 4, sp, &n));
    if (n != 2 || strcmp(sp[0].name, "dropout") != 0 || !sp[0].has_key || strcmp(sp[1].name, "default") != 0 ||
        sp[1].has_key || sp[1].seed != 0)
        return lx_fail(LX_ERR_INTERNAL, "unexpected rngs dict");
    /* one make_rng per stream: the next make_rng('dropout') here is count 2 */
    lx_key k2;
    LX_TRY(linen_make_rng(s, "dropout", &k2));
    *out = lx_int_v(k2.k[0] == lx_linen_make_rng_key(lx_key_from_seed(5), 0, NULL, 2).k[0] &&
                    sp[0].key.k[0] == lx_linen_make_rng_key(lx_key_from_seed(5), 0, NULL, 1).k[0]);
    LX_TRY(bridge_linen_rngs_dict(s, false, 1, sp, &n)); /* no default added */
    if (n != 1) return lx_fail(LX_ERR_INTERNAL, "add_default=false added a stream");
    return bridge_linen_rngs_dict(s, true, 1, sp, &n); /* two do not fit in one */
}
static const linen_method PROBE_METHODS[] = {LINEN_METHOD("__call__", rngs_probe)};
static const linen_type RNGS_PROBE = {.name = "Probe", .methods = PROBE_METHODS, .nmethods = LX_COUNT(PROBE_METHODS)};

static void test_linen_rngs_dict(void) {
    nnx_stream_spec sp[2];
    int n;
    CHECK_FAILS(bridge_linen_rngs_dict(NULL, false, 2, sp, &n), LX_ERR_INVALID_ARGUMENT,
                "linen_rngs_dict() must be called inside a Linen module.");
    nnx_rngs *r = NULL;
    CHECK_FAILS(bridge_linen_rngs(NULL, false, &r), LX_ERR_INVALID_ARGUMENT,
                "linen_rngs_dict() must be called inside a Linen module.");
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&RNGS_PROBE, NULL, &m), LX_OK);
    lx_tree *v = lx_tree_new();
    lx_value out;
    lx_call none = LX_NO_CALL;
    CHECK_FAILS(linen_apply(m, v, LINEN_RNGS({"dropout", lx_key_from_seed(5)}), &none, NULL, &out, NULL),
                LX_ERR_INVALID_ARGUMENT, "2 streams do not fit in 1");
    lx_tree_release(v);
    linen_module_release(m);
}

static void test_errors(void) {
    linen_module *m = NULL;
    lx_call none = LX_NO_CALL;
    CHECK_FAILS(bridge_to_linen(NULL, NULL, NULL, &m), LX_ERR_INVALID_ARGUMENT, "to_linen: nnx_class is NULL");
    CHECK_FAILS(bridge_to_linen(&nnx_Linear, NULL, NULL, NULL), LX_ERR_INVALID_ARGUMENT, "to_linen: out is NULL");
    CHECK(bridge_to_linen_nnx_type(NULL) == NULL && bridge_to_linen_ctor(NULL) == NULL);
    /* ToLinen's own constructor */
    CHECK_FAILS(linen_module_new(&bridge_ToLinen, &none, &m), LX_ERR_TYPE,
                "ToLinen.__init__() missing 1 required positional argument: 'nnx_class'");
    lx_call c1 = LX_CALL_ARGS(lx_int_v(3));
    CHECK_FAILS(linen_module_new(&bridge_ToLinen, &c1, &m), LX_ERR_TYPE, "argument 'nnx_class' must be an NNX type");
    lx_call c2 = {1, (lx_value[]){lx_ptr_v("nnx_type", (void *)&nnx_Linear)}, 1, (lx_kwarg[]){LX_KW_INT("foo", 1)}};
    CHECK_FAILS(linen_module_new(&bridge_ToLinen, &c2, &m), LX_ERR_TYPE,
                "ToLinen.__init__() got an unexpected keyword argument 'foo'");
    lx_call c3 = {2, (lx_value[]){lx_ptr_v("nnx_type", (void *)&nnx_Linear), lx_int_v(1)}, 0, NULL};
    CHECK_FAILS(linen_module_new(&bridge_ToLinen, &c3, &m), LX_ERR_TYPE, "argument 'ctor' must be a call record");
    lx_call c4 = {1, (lx_value[]){lx_ptr_v("nnx_type", (void *)&nnx_Linear)}, 1,
                  (lx_kwarg[]){LX_KW("nnx_class", lx_ptr_v("nnx_type", (void *)&nnx_Linear))}};
    CHECK_FAILS(linen_module_new(&bridge_ToLinen, &c4, &m), LX_ERR_TYPE, "got multiple values for argument 'nnx_class'");
    lx_call c5 = {1, (lx_value[]){lx_ptr_v("nnx_type", (void *)&nnx_Linear)}, 1, (lx_kwarg[]){LX_KW_STR("skip_rng", "x")}};
    CHECK_FAILS(linen_module_new(&bridge_ToLinen, &c5, &m), LX_ERR_TYPE, "argument 'skip_rng' must be a bool");
    CHECK(m == NULL);

    /* a bad constructor call surfaces at init, with NNX's message */
    m = BRIDGE_TO_LINEN(&nnx_Linear, LX_KW_INT("in_features", 2), LX_KW_INT("out_feature", 3));
    lx_call cx = LX_ARGS(ONES(1, 2));
    lx_tree *v = NULL;
    CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_ERR_TYPE,
                "Linear.__init__() got an unexpected keyword argument 'out_feature'");
    linen_module_release(m);

    m = BRIDGE_TO_LINEN(&nnx_Linear, LX_KW_INT("in_features", 2), LX_KW_INT("out_features", 3));
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_OK);
    /* attribute forwarding */
    lx_value a;
    CHECK_EQ_INT(linen_module_attr(m, "out_features", &a), LX_OK);
    CHECK(a.kind == LX_V_INT && a.u.i == 3);
    CHECK_FAILS(linen_module_attr(m, "use_bias", &a), LX_ERR_NOT_FOUND, "\"ToLinen\" object has no attribute \"use_bias\".");
    CHECK(bridge_to_linen_ctor(m) && bridge_to_linen_ctor(m)->nkwargs == 2);
    /* methods: not callable, unknown, not a name or function */
    lx_value y = lx_none();
    lx_call m1 = {1, (lx_value[]){lx_array_v(ONES(1, 2))}, 1, (lx_kwarg[]){LX_KW_STR("nnx_method", "in_features")}};
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &m1, NULL, &y, NULL), LX_ERR_TYPE,
                "'Linear.in_features' must be a callable, got <class 'int'>.");
    lx_call m2 = {1, (lx_value[]){lx_array_v(ONES(1, 2))}, 1, (lx_kwarg[]){LX_KW_STR("nnx_method", "encode")}};
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &m2, NULL, &y, NULL), LX_ERR_NOT_FOUND,
                "type object 'Linear' has no attribute 'encode'");
    lx_call m3 = {1, (lx_value[]){lx_array_v(ONES(1, 2))}, 1, (lx_kwarg[]){LX_KW_INT("nnx_method", 3)}};
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &m3, NULL, &y, NULL), LX_ERR_TYPE, "'3' must be a callable, got <class 'int'>.");
    linen_opts om = {.method = "encode"};
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &cx, &om, &y, NULL), LX_ERR_NOT_FOUND,
                "\"ToLinen\" object has no attribute \"encode\".");
    om.method = "out_features";
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &cx, &om, &y, NULL), LX_ERR_TYPE,
                "'ToLinen.out_features' must be a callable, got <class 'int'>.");
    om.method = "__call__";
    lx_call twice = {1, (lx_value[]){lx_array_v(ONES(1, 2))}, 1, (lx_kwarg[]){LX_KW_STR("nnx_method", "__call__")}};
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &twice, NULL, &y, NULL), LX_OK); /* by name */
    lx_value_free(&y);
    /* missing, mistyped and misshapen incoming variables */
    lx_tree *miss = lx_tree_copy(v);
    CHECK_EQ_INT(lx_tree_delete_path(miss, "params/bias"), LX_OK);
    CHECK_FAILS(linen_apply(m, miss, LINEN_NO_RNGS, &cx, NULL, &y, NULL), LX_ERR_NOT_FOUND,
                "ToLinen(Linear) in \"/\": no incoming value for Variable \"bias\" (collection \"params\")");
    lx_tree *shp = lx_tree_copy(v);
    CHECK_EQ_INT(lx_tree_set_path(shp, "params/bias", lx_array_v(ONES(4))), LX_OK);
    CHECK_FAILS(linen_apply(m, shp, LINEN_NO_RNGS, &cx, NULL, &y, NULL), LX_ERR_SHAPE,
                "incoming variable \"bias\" of collection \"params\" is float32[4], but the module's Variable is float32[3]");
    lx_tree *typ = lx_tree_copy(v);
    CHECK_EQ_INT(lx_tree_set_path(typ, "params/bias", lx_str_v("zero")), LX_OK);
    CHECK_FAILS(linen_apply(m, typ, LINEN_NO_RNGS, &cx, NULL, &y, NULL), LX_ERR_TYPE,
                "incoming variable \"bias\" of collection \"params\" is 'zero', not an array");
    /* the module still works after each failure */
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &cx, NULL, &y, NULL), LX_OK);
    lx_value_free(&y);
    lx_tree_release(miss);
    lx_tree_release(shp);
    lx_tree_release(typ);
    lx_tree_release(v);
    linen_module_release(m);
}

static lx_status failing_md(const lx_variable *v, void *user, lx_value *out) {
    (void)v;
    (void)user;
    (void)out;
    return lx_fail(LX_ERR_INVALID_ARGUMENT, "metadata_fn refused");
}
static lx_status attend_twice(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_call c2 = {c->nargs, c->args, 1, (lx_kwarg[]){LX_KW_STR("nnx_method", "attend")}};
    return linen_call_attr(s, "embedding", "attend", &c2, out);
}
static const linen_method FOO2_METHODS[] = {LINEN_METHOD("__call__", foo_call), LINEN_METHOD("twice", attend_twice)};
static const linen_type LINEN_FOO2 = {.name = "Foo", .methods = FOO2_METHODS, .nmethods = LX_COUNT(FOO2_METHODS), .setup = foo_setup};
static const nnx_type NNX_NO_CALL = {.name = "NoCall", .size = sizeof(nnx_module)};

static void test_more_errors(void) {
    /* a metadata_fn failure stops init and nothing is returned */
    bridge_to_linen_opts o = {.metadata_fn = failing_md};
    lx_call ctor = LX_CALL_ARGS(lx_int_v(2), lx_int_v(3));
    linen_module *m = to_linen_args(&nnx_Linear, &ctor, &o);
    lx_call cx = LX_ARGS(ONES(1, 2));
    lx_tree *v = NULL;
    CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_ERR_INVALID_ARGUMENT, "metadata_fn refused");
    CHECK(v == NULL);
    linen_module_release(m);
    /* a class with no __call__ */
    m = to_linen_args(&NNX_NO_CALL, NULL, NULL);
    CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_ERR_NOT_FOUND,
                "type object 'NoCall' has no attribute '__call__'");
    linen_module_release(m);
    /* a forwarded method given nnx_method as well */
    linen_module *foo = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_FOO2, NULL, &foo), LX_OK);
    int32_t one = 1;
    lx_call ci = LX_ARGS(lx_autorelease(lx_array_from_data(LX_I32, 1, SHAPE(1), &one)));
    CHECK_EQ_INT(linen_init(foo, LINEN_KEY(lx_key_from_seed(0)), &ci, NULL, &v), LX_OK);
    linen_opts ot = {.method = "twice"};
    lx_value y;
    lx_call cz = LX_ARGS(ONES(1, 3));
    CHECK_FAILS(linen_apply(foo, v, LINEN_NO_RNGS, &cz, &ot, &y, NULL), LX_ERR_TYPE,
                "got multiple values for argument 'nnx_method'");
    lx_tree_release(v);
    linen_module_release(foo);
    /* a malformed constructor call is refused before it is copied (these crashed) */
    CHECK(bridge_to_linen_kw(&nnx_Linear, 2, NULL) == NULL);
    CHECK_STR(lx_last_error(), "to_linen: malformed call: 0 positional (NULL), 2 keyword (NULL)");
    lx_clear_error();
    CHECK(bridge_to_linen_kw(&nnx_Linear, -1, NULL) == NULL);
    CHECK_STR(lx_last_error(), "to_linen: malformed call: 0 positional (NULL), -1 keyword (NULL)");
    lx_clear_error();
    lx_call unnamed = {0, NULL, 1, (lx_kwarg[]){{NULL, lx_int_v(3)}}};
    m = NULL;
    CHECK_FAILS(bridge_to_linen(&nnx_Linear, &unnamed, NULL, &m), LX_ERR_INVALID_ARGUMENT,
                "to_linen: keyword argument 0 has no name");
    CHECK(m == NULL);
    linen_type *cls = NULL;
    lx_call noargs = {3, NULL, 0, NULL};
    CHECK_FAILS(bridge_to_linen_class(&nnx_Linear, &noargs, NULL, NULL, false, &cls), LX_ERR_INVALID_ARGUMENT,
                "to_linen_class: malformed call: 3 positional (NULL)");
    CHECK(cls == NULL);
    CHECK_EQ_INT(bridge_to_linen_class(&nnx_Linear, NULL, NULL, NULL, false, &cls), LX_OK);
    lx_call kwbad = LX_CALL_KWARGS(LX_KW("kwargs", lx_ptr_v("lx_call", &noargs)));
    CHECK_FAILS(linen_module_new(cls, &kwbad, &m), LX_ERR_INVALID_ARGUMENT,
                "LinearToLinen.__init__(): malformed call: 3 positional (NULL)");
    lx_call ctorbad = {2, (lx_value[]){lx_ptr_v("nnx_type", (void *)&nnx_Linear), lx_ptr_v("lx_call", &noargs)}, 0, NULL};
    CHECK_FAILS(linen_module_new(&bridge_ToLinen, &ctorbad, &m), LX_ERR_INVALID_ARGUMENT,
                "ToLinen.__init__(): malformed call: 3 positional (NULL)");
    bridge_to_linen_class_free(cls);
}

/* Flax's ToLinen calls method(module, *args, **kwargs), so Python binds the arguments: a call the
 * NNX method's signature refuses fails with Python's TypeError, as a direct nnx_call does, at init
 * and apply alike, before anything is built or written (bridge9 F1). */
static void test_method_arguments_are_checked(void) {
    linen_module *m = BRIDGE_TO_LINEN(&nnx_Linear, LX_KW_INT("in_features", 2), LX_KW_INT("out_features", 3));
    lx_array *x = ONES(1, 2);
    lx_call foo = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_BOOL("foo", true)));
    lx_tree *v = NULL;
    CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &foo, NULL, &v), LX_ERR_TYPE,
                "Linear.__call__() got an unexpected keyword argument 'foo'");
    CHECK(v == NULL);
    lx_call cx = LX_ARGS(x);
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_OK);
    lx_value y = lx_none();
    lx_tree *upd = NULL;
    linen_opts all = {.mutable = LINEN_MUTABLE_EVERYTHING, .mutable_given = true};
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &foo, &all, &y, &upd), LX_ERR_TYPE,
                "Linear.__call__() got an unexpected keyword argument 'foo'");
    CHECK(upd == NULL && y.kind == LX_V_NONE);
    lx_call two = LX_CALL_ARGS(lx_array_v(x), lx_array_v(x));
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &two, NULL, &y, NULL), LX_ERR_TYPE,
                "Linear.__call__() takes 2 positional arguments but 3 were given");
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &LX_NO_CALL, NULL, &y, NULL), LX_ERR_TYPE,
                "Linear.__call__() missing 1 required positional argument: 'inputs'");
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &cx, NULL, &y, NULL), LX_OK); /* still usable */
    CHECK(affine_close(out_array(&y), x, array_at(v, "params/kernel"), array_at(v, "params/bias")));
    lx_value_free(&y);
    lx_tree_release(v);
    linen_module_release(m);

    /* A misspelt keyword is refused by name; it used to be dropped, and training-mode BatchNorm
     * then failed with an unrelated immutable-collection error. */
    m = BRIDGE_TO_LINEN(&nnx_BatchNorm, LX_KW_INT("num_features", 2));
    lx_call bx = LX_ARGS(arr(2, SHAPE(2, 2), (float[]){1, 2, 3, 5}));
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &bx, NULL, &v), LX_OK);
    lx_call typo = LX_CALL(LX_ARGS_LIST(bx.args[0]), LX_KWARGS_LIST(LX_KW_BOOL("use_running_averag", true)));
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &typo, NULL, &y, NULL), LX_ERR_TYPE,
                "BatchNorm.__call__() got an unexpected keyword argument 'use_running_averag'");
    lx_call twice = LX_CALL(LX_ARGS_LIST(bx.args[0], lx_bool_v(true)), LX_KWARGS_LIST(LX_KW_BOOL("use_running_average", true)));
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &twice, NULL, &y, NULL), LX_ERR_TYPE,
                "BatchNorm.__call__() got multiple values for argument 'use_running_average'");
    lx_call eval = LX_CALL(LX_ARGS_LIST(bx.args[0]), LX_KWARGS_LIST(LX_KW_BOOL("use_running_average", true)));
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &eval, NULL, &y, NULL), LX_OK);
    lx_value_free(&y);
    lx_tree_release(v);
    linen_module_release(m);

    /* Methods by name (nnx_method=) are checked against their own signature. */
    m = BRIDGE_TO_LINEN(&nnx_Embed, LX_KW_INT("num_embeddings", 2), LX_KW_INT("features", 3));
    int32_t ids[1] = {1};
    lx_call ci = LX_ARGS(lx_autorelease(lx_array_from_data(LX_I32, 1, SHAPE(1), ids)));
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &ci, NULL, &v), LX_OK);
    lx_call att = LX_CALL(LX_ARGS_LIST(lx_array_v(ONES(1, 3))),
                          LX_KWARGS_LIST(LX_KW_STR("nnx_method", "attend"), LX_KW_BOOL("inputs", true)));
    CHECK_FAILS(linen_apply(m, v, LINEN_NO_RNGS, &att, NULL, &y, NULL), LX_ERR_TYPE,
                "Embed.attend() got an unexpected keyword argument 'inputs'");
    lx_tree_release(v);
    linen_module_release(m);
}

/* A metadata box the caller gave around a variable the NNX method changes stays around the new
 * value in a mutable apply (Linen's Variable.value = v keeps a box: replace_boxed), at the top
 * level and nested. Flax's ToLinen rebuilds every leaf from the constructor's Variables and drops
 * it; Linen's own BatchNorm keeps it (bridge9 F7). */
static void test_caller_boxes_survive_write_back(void) {
    lx_call ctor = LX_CALL_ARGS(lx_int_v(2), lx_int_v(2));
    linen_module *m = to_linen_args(&NNX_COLL, &ctor, NULL); /* w, bn (BatchNorm), lora */
    lx_array *x = arr(2, SHAPE(3, 2), (float[]){1, 2, 3, 5, 6, 7});
    lx_call c = LX_ARGS(x);
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_RNGS({"params", lx_key_from_seed(0)}), &c, NULL, &v), LX_OK);
    const char *nm[] = {"embed"};
    lx_box *bm = NULL, *bs = NULL;
    CHECK_EQ_INT(lx_box_partitioned(array_at(v, "batch_stats/bn/mean"), 1, nm, "m", &bm), LX_OK);
    CHECK_EQ_INT(lx_box_logically_partitioned(array_at(v, "params/bn/scale"), 1, nm, NULL, 0, NULL, &bs), LX_OK);
    lx_tree *w = lx_tree_copy(v);
    CHECK_EQ_INT(lx_tree_set_path(w, "batch_stats/bn/mean", lx_box_v(bm)), LX_OK);
    CHECK_EQ_INT(lx_tree_set_path(w, "params/bn/scale", lx_box_v(bs)), LX_OK);
    linen_opts all = {.mutable = LINEN_MUTABLE_EVERYTHING, .mutable_given = true};
    lx_value y = lx_none();
    lx_tree *upd = NULL;
    CHECK_EQ_INT(linen_apply(m, w, LINEN_NO_RNGS, &c, &all, &y, &upd), LX_OK);
    const lx_value *mean = at(upd, "batch_stats/bn/mean");
    CHECK(mean && mean->kind == LX_V_BOX && lx_box_get_kind(mean->u.box) == LX_BOX_PARTITIONED);
    if (mean && mean->kind == LX_V_BOX) {
        const lx_value *names = lx_box_names(mean->u.box);
        CHECK(names && names->u.strs.n == 1 && strcmp(names->u.strs.v[0], "embed") == 0);
        CHECK(lx_box_mesh(mean->u.box) && strcmp(lx_box_mesh(mean->u.box), "m") == 0);
        /* the new statistics: x @ w has column means m_j; mean = 0.01 * m_j (momentum 0.99 from 0) */
        const float *wk = lx_f32(array_at(v, "params/w")), *xs = lx_f32(x);
        const float *got = lx_f32(lx_box_unbox(mean->u.box));
        for (int j = 0; j < 2; j++) {
            double m = 0;
            for (int r = 0; r < 3; r++) m += (double)xs[r * 2] * wk[j] + (double)xs[r * 2 + 1] * wk[2 + j];
            CHECK(fabs(got[j] - 0.01 * m / 3) < 1e-6);
        }
    }
    /* unchanged leaves come back as given; plain ones stay plain */
    const lx_value *scale = at(upd, "params/bn/scale");
    CHECK(scale && scale->kind == LX_V_BOX && lx_box_equal(scale->u.box, bs));
    CHECK(at(upd, "batch_stats/bn/var") && at(upd, "batch_stats/bn/var")->kind == LX_V_ARRAY);
    lx_value_free(&y);
    lx_tree_release(upd);
    lx_tree_release(w);
    lx_tree_release(v);
    lx_box_release(bm);
    lx_box_release(bs);
    linen_module_release(m);
}

static void test_clone_and_cache(void) {
    linen_module *m = BRIDGE_TO_LINEN(&nnx_Linear, LX_KW_INT("in_features", 2), LX_KW_INT("out_features", 3));
    lx_call cx = LX_ARGS(arr(2, SHAPE(2, 2), (float[]){1, 2, 3, 4}));
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_OK);
    linen_module *c = NULL;
    CHECK_EQ_INT(linen_module_clone(m, NULL, &c), LX_OK);
    CHECK(bridge_to_linen_nnx_type(c) == &nnx_Linear);
    lx_value y1, y2, y3;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &cx, NULL, &y1, NULL), LX_OK);
    CHECK_EQ_INT(linen_apply(c, v, LINEN_NO_RNGS, &cx, NULL, &y2, NULL), LX_OK);
    /* new arrays, same structure: the cached module takes them */
    lx_tree *v2 = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(1)), &cx, NULL, &v2), LX_OK);
    CHECK_EQ_INT(linen_apply(m, v2, LINEN_NO_RNGS, &cx, NULL, &y3, NULL), LX_OK);
    CHECK(lx_array_equal(out_array(&y1), out_array(&y2)));
    CHECK(!lx_array_equal(out_array(&y1), out_array(&y3)));
    CHECK(affine_close(out_array(&y3), cx.args[0].u.array, array_at(v2, "params/kernel"), array_at(v2, "params/bias")));
    /* a different set of rng streams rebuilds the cache (a constructor may look at them) */
    lx_value y4;
    CHECK_EQ_INT(linen_apply(m, v, LINEN_RNGS({"dropout", lx_key_from_seed(3)}), &cx, NULL, &y4, NULL), LX_OK);
    CHECK(lx_array_equal(out_array(&y1), out_array(&y4)));
    lx_value_free(&y1);
    lx_value_free(&y2);
    lx_value_free(&y3);
    lx_value_free(&y4);
    lx_tree_release(v);
    lx_tree_release(v2);
    linen_module_release(c);
    linen_module_release(m);
}

/* A method that replaces a child (re-initialising a layer) through nnx_setattr frees the module
 * the cached instance was built with; the graph's version moves, so the apply walks the state,
 * sees the new layer and writes its parameters back (and the second apply, on a rebuilt
 * instance, does the same). */
typedef struct {
    nnx_module base;
    nnx_module *lin;
} swap_m;
static lx_status swap_init(nnx_module *m, const lx_call *c, nnx_rngs *r) {
    (void)c;
    nnx_linear *l;
    LX_TRY(nnx_linear_new(2, 2, r, &l));
    ((swap_m *)m)->lin = (nnx_module *)l;
    return LX_OK;
}
static lx_status swap_call(nnx_module *m, const lx_call *c, lx_value *out) {
    nnx_rngs *r;
    LX_TRY(nnx_rngs_from_seed(1, &r));
    nnx_linear *l;
    lx_status s = nnx_linear_new(2, 2, r, &l);
    nnx_rngs_release(r);
    LX_TRY(s);
    lx_value v = nnx_module_v((nnx_module *)l);
    s = nnx_setattr(m, "lin", &v); /* releases the Linear built with the module */
    nnx_module_release((nnx_module *)l);
    LX_TRY(s);
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_array *y = nnx_linear_forward((nnx_linear *)((swap_m *)m)->lin, x);
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}
static const nnx_field SWAP_FIELDS[] = {NNX_CHILD(swap_m, lin)};
static const nnx_method SWAP_METHODS[] = {NNX_METHOD("__call__", swap_call)};
static const nnx_type SWAP = {.name = "Swap", .size = sizeof(swap_m), .fields = SWAP_FIELDS, .nfields = LX_COUNT(SWAP_FIELDS),
                              .methods = SWAP_METHODS, .nmethods = LX_COUNT(SWAP_METHODS), .init = swap_init};

static void test_method_replacing_a_child(void) {
    linen_module *m = NULL;
    CHECK_EQ_INT(bridge_to_linen(&SWAP, NULL, NULL, &m), LX_OK);
    lx_call cx = LX_ARGS(arr(2, SHAPE(1, 2), (float[]){1, 2}));
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_OK);
    /* the Linear the method builds, made here on its own */
    nnx_rngs *r = NULL;
    nnx_linear *want = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(1, &r), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(2, 2, r, &want), LX_OK);
    linen_opts o = {.mutable = LINEN_MUTABLE_EVERYTHING, .mutable_given = true};
    for (int rep = 0; rep < 2; rep++) { /* the second apply runs on the cached instance */
        lx_value y;
        lx_tree *upd = NULL;
        CHECK_EQ_INT(linen_apply(m, v, LINEN_NO_RNGS, &cx, &o, &y, &upd), LX_OK);
        CHECK(lx_array_equal(array_at(upd, "params/lin/kernel"), lx_variable_get_value(want->kernel)));
        CHECK(lx_array_equal(array_at(upd, "params/lin/bias"), lx_variable_get_value(want->bias)));
        CHECK(!lx_array_equal(array_at(upd, "params/lin/kernel"), array_at(v, "params/lin/kernel")));
        CHECK(affine_close(out_array(&y), cx.args[0].u.array, lx_variable_get_value(want->kernel), lx_variable_get_value(want->bias)));
        lx_value_free(&y);
        lx_tree_release(upd);
    }
    nnx_module_release((nnx_module *)want);
    nnx_rngs_release(r);
    lx_tree_release(v);
    linen_module_release(m);
}

/* to_linen(nnx.LoRA, 3, 2, 4, base_module=linear): the ToLinen's copy of the constructor call
 * keeps the module alive after the caller lets go of it; so does a to_linen_class partial. */
static void test_ctor_keeps_modules(void) {
    nnx_rngs *r = NULL;
    nnx_linear *base = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(3, 4, r, &base), LX_OK);
    lx_array *kernel = lx_retain(lx_variable_get_value(base->kernel));
    lx_value bv = nnx_module_v((nnx_module *)base);
    lx_call ctor = {3, LX_VALUES(lx_int_v(3), lx_int_v(2), lx_int_v(4)), 1, LX_KWARGS(LX_KW("base_module", bv))};
    linen_module *m = NULL;
    CHECK_EQ_INT(bridge_to_linen(&nnx_LoRA, &ctor, NULL, &m), LX_OK);
    CHECK_EQ_INT(base->base.refcount, 2);
    lx_call partial = LX_CALL_KWARGS(LX_KW_INT("in_features", 3), LX_KW_INT("lora_rank", 2),
                                     LX_KW_INT("out_features", 4), LX_KW("base_module", bv));
    linen_type *cls = NULL;
    CHECK_EQ_INT(bridge_to_linen_class(&nnx_LoRA, &partial, NULL, NULL, false, &cls), LX_OK);
    linen_module *mc = NULL;
    CHECK_EQ_INT(linen_module_new(cls, NULL, &mc), LX_OK);
    nnx_module_release((nnx_module *)base); /* the caller is done with it */
    nnx_rngs_release(r);
    lx_call cx = LX_ARGS(arr(2, SHAPE(1, 3), (float[]){1, 2, 3}));
    linen_module *both[] = {m, mc};
    for (int i = 0; i < 2; i++) {
        lx_tree *v = NULL;
        CHECK_EQ_INT(linen_init(both[i], LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &v), LX_OK);
        CHECK(lx_array_equal(array_at(v, "params/base_module/kernel"), kernel));
        CHECK(SHAPE_IS(array_at(v, "LoRAParam/lora_a"), 3, 2));
        lx_value y;
        CHECK_EQ_INT(linen_apply(both[i], v, LINEN_NO_RNGS, &cx, NULL, &y, NULL), LX_OK);
        CHECK(SHAPE_IS(out_array(&y), 1, 4));
        lx_value_free(&y);
        lx_tree_release(v);
    }
    linen_module_release(m);
    linen_module_release(mc);
    bridge_to_linen_class_free(cls);
    lx_release(kernel);
}

int main(void) {
    CHECK_EQ_INT(lx_vartype_new("Count", NULL, &COUNT), LX_OK);
    CHECK_EQ_INT(lx_vartype_new("Bias", NULL, &BIAS), LX_OK);
    int64_t live = lx_array_live_count();
    RUN(test_w10_nnx_to_linen);
    RUN(test_w11_multiple_rngs);
    RUN(test_w11_dropout_needs_a_stream);
    RUN(test_w12_multiple_collections);
    RUN(test_w13_nnx_to_linen_mutable);
    RUN(test_w14_to_linen_method_call);
    RUN(test_w15_to_linen_nnx_method_arg);
    RUN(test_w16_mutated_static_data);
    RUN(test_w18_nnx_to_linen_metadata);
    RUN(test_w18_with_partitioning_initializer);
    RUN(test_bridge_with_partitioning);
    RUN(test_ctor_initializer_is_copied);
    RUN(test_w20_pytree_structure_consistency);
    RUN(test_nnx_inside_linen_numbers);
    RUN(test_child_key_and_name);
    RUN(test_apply_runs_no_initializer);
    RUN(test_init_keeps_variables_created_in_call);
    RUN(test_duplicate_path_is_an_error);
    RUN(test_immutable_change_fails);
    RUN(test_to_linen_class);
    RUN(test_unknown_paths_warned_once);
    RUN(test_compact_children_share_the_cache);
    RUN(test_linen_rngs_dict);
    RUN(test_errors);
    RUN(test_more_errors);
    RUN(test_method_arguments_are_checked);
    RUN(test_caller_boxes_survive_write_back);
    RUN(test_clone_and_cache);
    RUN(test_method_replacing_a_child);
    RUN(test_ctor_keeps_modules);
    lx_variable_registry_reset();
    bridge_to_linen_cache_clear();
    lx_pool_drain();
    lx_test_current = "leaks";
    CHECK_EQ_INT(lx_array_live_count(), live);
    return lx_test_finish();
}
