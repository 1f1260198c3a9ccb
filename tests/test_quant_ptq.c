/* PTQ as stored state (issue 13): quantize(model, rules) turns matched weights into int8 values +
 * float32 scales in the variables (Linen, NNX, to_linen, ToNNX); the quantized model runs on them
 * and gives, after a msgpack / safetensors round trip, bit-identical outputs; calibration of
 * static activation scales against hand-computed values; conv and attention's einsum quantized by
 * rules; the documented errors. */
#include <math.h>
#include <unistd.h>

#include "lx_test.h"
#include "nnx_two_linear.h"
#include "linnx/fault.h"
#include "linnx/quant.h"

static float xdat[2 * 4] = {0.3f, -1.2f, 0.05f, 0.9f, -0.7f, 0.11f, 0.42f, -0.33f};

static lx_qt_rules *compile(const lx_qt_rule *r, int n) {
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(r, n, &rs), LX_OK);
    return rs;
}

static bool bit_equal(const lx_array *a, const lx_array *b) {
    return a && b && a->dtype == LX_F32 && b->dtype == LX_F32 && lx_same_shape(a, b) &&
           memcmp(a->data, b->data, lx_array_nbytes(a)) == 0;
}

/* ---- a Linen MLP: Dense_0 (4 -> 8), relu, Dense_1 (8 -> 3) ---- */
static lx_status mlp_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return linen_return_array(out, linen_dense(s, NULL, 3, lx_relu(linen_dense(s, NULL, 8, x))));
}
static const linen_method MLP_METHODS[] = {LINEN_METHOD("__call__", mlp_call)};
static const linen_type LINEN_MLP = {.name = "MLP", .methods = MLP_METHODS, .nmethods = 1};

static lx_array *apply(const linen_module *m, const lx_tree *vars, lx_array *x) {
    lx_call c = LX_ARGS(x);
    lx_value y;
    if (linen_apply(m, vars, &c, LINEN_NO_RNGS, NULL, &y, NULL) != LX_OK) return NULL;
    return y.kind == LX_V_ARRAY ? lx_autorelease(y.u.array) : NULL;
}

/* The session's counters after a call (either pointer may be NULL), then the session ends. */
static void end_session(lx_qt_session *s, int64_t *int8_ops, int64_t *quantized) {
    if (int8_ops) *int8_ops = lx_qt_session_int8(s);
    if (quantized) *quantized = lx_qt_session_quantized(s);
    lx_qt_end(s);
}

/* apply() inside a session of `mode` (begin, apply, end); NULL when the session does not start. */
static lx_array *apply_in(const lx_qt_rules *rs, lx_qt_mode mode, const linen_module *m, const lx_tree *vars,
                          lx_array *x, int64_t *int8_ops, int64_t *quantized) {
    lx_qt_session *s = NULL;
    if (lx_qt_begin(rs, mode, &s) != LX_OK) return NULL;
    lx_array *y = apply(m, vars, x);
    end_session(s, int8_ops, quantized);
    return y;
}

/* apply() inside the PTQ session of the quantized variables. */
static lx_array *apply_ptq(const lx_qt_rules *rs, const linen_module *m, const lx_tree *vars, lx_array *x,
                           int64_t *int8_ops) {
    lx_qt_session *s = NULL;
    if (lx_qt_begin_ptq(rs, vars, &s) != LX_OK) return NULL;
    lx_array *y = apply(m, vars, x);
    end_session(s, int8_ops, NULL);
    return y;
}

/* An NNX module's call inside a session of `mode`. */
static lx_array *call_in(const lx_qt_rules *rs, lx_qt_mode mode, nnx_module *m, lx_array *x, int64_t *int8_ops) {
    lx_qt_session *s = NULL;
    if (lx_qt_begin(rs, mode, &s) != LX_OK) return NULL;
    lx_array *y = nnx_call_array(m, x);
    end_session(s, int8_ops, NULL);
    return y;
}

static const lx_array *tree_array(const lx_tree *t, const char *path) {
    const lx_value *v = lx_tree_find(t, path);
    if (!v) return NULL;
    if (v->kind == LX_V_ARRAY) return v->u.array;
    if (v->kind == LX_V_VARIABLE) return lx_variable_get_value(v->u.var);
    if (v->kind == LX_V_BOX) return lx_box_unbox(v->u.box);
    return NULL;
}

static void test_linen_ptq_and_checkpoint(void) {
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_MLP, NULL, &m), LX_OK);
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xdat));
    lx_call c = LX_ARGS(x);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(3)), &c, NULL, &vars), LX_OK);
    lx_qt_rule rules[] = {{.module_path = "Dense_0", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = compile(rules, 1);

    /* the on-the-fly int8 session on the float model: what the stored weights must reproduce */
    lx_array *y_fly = apply_in(rs, LX_QT_INT8, m, vars, x, NULL, NULL);
    CHECK(y_fly != NULL);

    lx_tree *q = NULL;
    CHECK_EQ_INT(lx_qt_quantize_linen(rs, m, vars, &c, &q), LX_OK);
    CHECK_STR(lx_qt_warnings(), "");
    const lx_array *w = tree_array(vars, "params/Dense_0/kernel"), *qk = tree_array(q, "params/Dense_0/kernel"),
                   *qs = tree_array(q, "params/Dense_0/kernel_scale");
    CHECK(w && w->dtype == LX_F32); /* the input tree is not changed */
    CHECK(qk && qk->dtype == LX_I8 && lx_shape_eq(qk, 2, (int64_t[]){4, 8}));
    CHECK(qs && qs->dtype == LX_F32 && lx_shape_eq(qs, 2, (int64_t[]){1, 8}));
    CHECK(tree_array(q, "params/Dense_1/kernel")->dtype == LX_F32); /* no rule: stays float */
    CHECK(tree_array(q, "params/Dense_1/kernel_scale") == NULL);
    /* the values by hand: per output channel (column) n, scale = max_k |w[k, n]| / 127 */
    for (int n = 0; w && qk && qs && n < 8; n++) {
        double mx = 0;
        for (int k = 0; k < 4; k++) mx = fmax(mx, fabs(lx_f32(w)[k * 8 + n]));
        float sc = (float)mx / 127.0f;
        CHECK_EQ_INT(lx_f32(qs)[n] == sc, 1);
        for (int k = 0; k < 4; k++) {
            double r = nearbyint(lx_f32(w)[k * 8 + n] * (1.0f / sc));
            CHECK_EQ_INT(lx_i8(qk)[k * 8 + n], (int)r);
        }
    }

    /* without a PTQ session the int8 weight fails the op, never silently wrong */
    lx_value yv;
    CHECK_FAILS(linen_apply(m, q, &c, LINEN_NO_RNGS, NULL, &yv, NULL), LX_ERR_DTYPE, "int8");

    int64_t n8 = 0;
    lx_array *y_ptq = apply_ptq(rs, m, q, x, &n8);
    CHECK(bit_equal(y_ptq, y_fly));
    CHECK_EQ_INT(n8, 1);

    /* checkpoint round trip, both formats: the int8 values and scales come back, outputs bit-equal */
    const char *files[2] = {"quant_ptq_test.msgpack", "quant_ptq_test.safetensors"};
    for (int f = 0; f < 2; f++) {
        CHECK_EQ_INT(lx_ckpt_save(files[f], q, LX_CKPT_AUTO), LX_OK);
        lx_tree *back = NULL;
        CHECK_EQ_INT(lx_ckpt_load(files[f], &back), LX_OK);
        const lx_array *bk = back ? tree_array(back, "params/Dense_0/kernel") : NULL;
        CHECK(bk && bk->dtype == LX_I8 && lx_array_equal(bk, qk));
        CHECK(back && lx_array_equal(tree_array(back, "params/Dense_0/kernel_scale"), qs));
        lx_array *y_back = back ? apply_ptq(rs, m, back, x, &n8) : NULL;
        CHECK(bit_equal(y_back, y_ptq));
        CHECK_EQ_INT(n8, 1);
        /* an int8 checkpoint restored into the float model's structure: a clear error */
        lx_tree *into = NULL;
        CHECK_FAILS(lx_ckpt_restore(vars, back, NULL, &into), LX_ERR_DTYPE, "target float32[4,8], state int8[4,8]");
        CHECK(into == NULL);
        lx_tree_release(back);
        unlink(files[f]);
    }

    /* an int8 weight without its scale: the PTQ session refuses the tree, nothing installed */
    lx_tree *noscale = lx_tree_copy(q);
    CHECK_EQ_INT(lx_tree_delete_path(noscale, "params/Dense_0/kernel_scale"), LX_OK);
    lx_qt_session *bad = NULL;
    CHECK_FAILS(lx_qt_begin_ptq(rs, noscale, &bad), LX_ERR_NOT_FOUND,
                "int8 values at 'params/Dense_0/kernel' have no float32 scale 'params/Dense_0/kernel_scale'");
    CHECK(bad == NULL && !lx_intercepting());
    lx_tree_release(noscale);
    /* a scale whose shape no tiling gives (5 scales for 8 output channels; 9): refused, never
     * read with scales skipped */
    for (int bad_n = 5; bad_n <= 9; bad_n += 4) {
        lx_tree *badscale = lx_tree_copy(q);
        lx_array *bs = lx_array_full_f32(2, (int64_t[]){1, bad_n}, 0.01f);
        CHECK_EQ_INT(lx_tree_set_path(badscale, "params/Dense_0/kernel_scale", lx_array_v(bs)), LX_OK);
        lx_release(bs);
        CHECK_FAILS(lx_qt_begin_ptq(rs, badscale, &bad), LX_ERR_SHAPE, "do not tile the 8 values of 'params/Dense_0/kernel'");
        CHECK(bad == NULL && !lx_intercepting());
        lx_tree_release(badscale);
    }
    CHECK_FAILS(lx_qt_begin(rs, LX_QT_CALIBRATE, &bad), LX_ERR_INVALID_ARGUMENT, "through lx_qt_calibrate_begin");
    CHECK_FAILS(lx_qt_calibrate_begin(rs, NULL, &bad), LX_ERR_INVALID_ARGUMENT, "NULL statistics tree");

    /* quantizing twice */
    lx_tree *twice = NULL;
    CHECK_FAILS(lx_qt_quantize_linen(rs, m, q, &c, &twice), LX_ERR_INVALID_ARGUMENT, "quantizing twice");
    CHECK(twice == NULL);

    /* a rule that matches nothing: a warning listing the paths seen */
    lx_qt_rule miss[] = {{.module_path = "Dense_0", .weight_qtype = "int8"}, {.module_path = "mlp/.*", .weight_qtype = "int8"}};
    lx_qt_rules *rm = compile(miss, 2);
    lx_tree *q2 = NULL;
    CHECK_EQ_INT(lx_qt_quantize_linen(rm, m, vars, &c, &q2), LX_OK);
    CHECK_STR(lx_qt_warnings(), "rule 1 (module_path 'mlp/.*') matched nothing; paths seen: Dense_0:dot_general0 "
                                "Dense_1:dot_general0");
    /* weight-only: the stored int8 weight is dequantized for the op (no int8 kernel) */
    lx_array *y_wo = apply_ptq(rm, m, q2, x, &n8);
    CHECK_EQ_INT(n8, 0);
    lx_array *y_fake = apply_in(rm, LX_QT_FAKE, m, vars, x, NULL, NULL);
    CHECK(bit_equal(y_wo, y_fake));
    lx_tree_release(q2);
    lx_qt_rules_free(rm);

    /* per tile: scales (ceil(8 / 3), out) on the contraction axis of Dense_1's (8, 3) kernel */
    lx_qt_rule tiled[] = {{.module_path = "Dense_1", .weight_qtype = "int8", .tile_size = 3}};
    lx_qt_rules *rt = compile(tiled, 1);
    lx_tree *qt = NULL;
    CHECK_EQ_INT(lx_qt_quantize_linen(rt, m, vars, &c, &qt), LX_OK);
    const lx_array *ts = qt ? tree_array(qt, "params/Dense_1/kernel_scale") : NULL;
    CHECK(ts && lx_shape_eq(ts, 2, (int64_t[]){3, 3}));
    const lx_array *w1 = tree_array(vars, "params/Dense_1/kernel");
    for (int t = 0; ts && t < 3; t++)
        for (int n = 0; n < 3; n++) {
            double mx = 0;
            for (int k = 3 * t; k < 3 * t + 3 && k < 8; k++) mx = fmax(mx, fabs(lx_f32(w1)[k * 3 + n]));
            CHECK_EQ_INT(lx_f32(ts)[t * 3 + n] == (float)mx / 127.0f, 1);
        }
    y_fake = apply_in(rt, LX_QT_FAKE, m, vars, x, NULL, NULL);
    CHECK(bit_equal(apply_ptq(rt, m, qt, x, NULL), y_fake));
    lx_tree_release(qt);
    lx_qt_rules_free(rt);

    /* per tile with int8 activations: the int8 kernel per tile (3 tiles of 3, 3, 2 rows), each
     * tile's int32 product rescaled by s_a * s_w[tile, n]; equal to the fake-quantized model up to
     * float summation order, for 2 rows and for 1 */
    lx_qt_rule tiled8[] = {{.module_path = "Dense_1", .weight_qtype = "int8", .act_qtype = "int8", .tile_size = 3}};
    rt = compile(tiled8, 1);
    CHECK_EQ_INT(lx_qt_quantize_linen(rt, m, vars, &c, &qt), LX_OK);
    lx_array *x1 = lx_autorelease(lx_array_from_f32(2, (int64_t[]){1, 4}, xdat + 4));
    for (int rows = 2; rows >= 1; rows--) {
        lx_array *xi = rows == 2 ? x : x1;
        y_fake = apply_in(rt, LX_QT_FAKE, m, vars, xi, NULL, NULL);
        lx_array *y8 = apply_ptq(rt, m, qt, xi, &n8);
        CHECK_EQ_INT(n8, 1);
        for (int i = 0; y8 && y_fake && i < 3 * rows; i++)
            CHECK_NEAR(lx_f32(y8)[i], lx_f32(y_fake)[i], 1e-5 * (1 + fabs(lx_f32(y_fake)[i])));
    }
    lx_tree_release(qt);
    lx_qt_rules_free(rt);

    lx_tree_release(q);
    lx_tree_release(vars);
    lx_qt_rules_free(rs);
    linen_module_release(m);
}

/* ---- NNX: a Linear quantized in place; ToNNX(Linen Dense) likewise ---- */
static void test_nnx_ptq(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(5, &r), LX_OK);
    nnx_linear *l = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 3, r, &l), LX_OK);
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xdat));
    lx_qt_rule rules[] = {{.module_path = ".*", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = compile(rules, 1);
    lx_qt_session *s = NULL;
    lx_array *y_fly = call_in(rs, LX_QT_INT8, (nnx_module *)l, x, NULL);
    CHECK(y_fly != NULL);

    lx_call c = LX_ARGS(x);
    CHECK_EQ_INT(lx_qt_quantize_nnx(rs, (nnx_module *)l, &c, NULL), LX_OK);
    CHECK(lx_variable_get_value(l->kernel)->dtype == LX_I8);
    lx_value sv;
    CHECK_EQ_INT(nnx_getattr((nnx_module *)l, "kernel_scale", &sv), LX_OK);
    CHECK(sv.kind == LX_V_VARIABLE && lx_vartype_is(lx_variable_type(sv.u.var), &lx_Param) &&
          lx_shape_eq(lx_variable_get_value(sv.u.var), 2, (int64_t[]){1, 3}));
    CHECK_FAILS(lx_qt_quantize_nnx(rs, (nnx_module *)l, &c, NULL), LX_ERR_INVALID_ARGUMENT, "quantizing twice");

    CHECK_EQ_INT(lx_qt_begin_ptq_nnx(rs, (nnx_module *)l, &s), LX_OK);
    CHECK_EQ_INT((int)lx_qt_session_weights(s), 1);
    lx_array *y1 = nnx_call_array((nnx_module *)l, x);
    lx_array *y2 = nnx_linear_forward(l, x); /* the typed call: the same frame, the same result */
    CHECK_EQ_INT((int)lx_qt_session_int8(s), 2);
    lx_qt_end(s);
    CHECK(bit_equal(y1, y_fly));
    CHECK(bit_equal(y2, y_fly));
    /* the NNX checkpoint round trip (Qwix: nnx.update(abs_ptq_model, ptq_params)): the pure dict
     * saved, restored against the PTQ state's structure, put into a fresh float Linear by
     * nnx_update (kernel takes the int8 value, kernel_scale is added): bit-identical outputs */
    lx_tree *st0 = NULL, *pure = NULL, *back = NULL;
    CHECK_EQ_INT(nnx_state((nnx_module *)l, 0, NULL, &st0), LX_OK);
    CHECK_EQ_INT(lx_ckpt_pure_dict(st0, &pure), LX_OK);
    CHECK_EQ_INT(lx_ckpt_save("quant_ptq_nnx.msgpack", pure, LX_CKPT_AUTO), LX_OK);
    CHECK_EQ_INT(lx_ckpt_load("quant_ptq_nnx.msgpack", &back), LX_OK);
    unlink("quant_ptq_nnx.msgpack");
    nnx_linear *l2 = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 3, r, &l2), LX_OK);
    lx_tree *vars2 = NULL; /* the PTQ state's structure as the template: Variables around the arrays */
    CHECK_EQ_INT(lx_ckpt_restore(st0, back, NULL, &vars2), LX_OK);
    CHECK_EQ_INT(nnx_update((nnx_module *)l2, 1, &vars2), LX_OK);
    lx_tree_release(vars2);
    CHECK(lx_variable_get_value(l2->kernel)->dtype == LX_I8);
    CHECK_EQ_INT(lx_qt_begin_ptq_nnx(rs, (nnx_module *)l2, &s), LX_OK);
    lx_array *y3 = nnx_call_array((nnx_module *)l2, x);
    lx_qt_end(s);
    CHECK(bit_equal(y3, y_fly));
    nnx_module_release((nnx_module *)l2);
    lx_tree_release(back), lx_tree_release(pure), lx_tree_release(st0);
    nnx_module_release((nnx_module *)l);

    /* ToNNX: a Linen Dense held by NNX; its Param becomes int8, Dense's code reads it */
    linen_module *dense = NULL;
    lx_call dc = LX_CALL_ARGS(lx_int_v(3));
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &dc, &dense), LX_OK);
    nnx_module *tn = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(dense, r, NULL, &tn), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(tn, NULL, &c), LX_OK);
    y_fly = call_in(rs, LX_QT_INT8, tn, x, NULL);
    CHECK(y_fly != NULL);
    CHECK_EQ_INT(lx_qt_quantize_nnx(rs, tn, &c, NULL), LX_OK);
    lx_tree *st = NULL;
    CHECK_EQ_INT(nnx_state(tn, 0, NULL, &st), LX_OK);
    CHECK(st && tree_array(st, "kernel")->dtype == LX_I8 && tree_array(st, "kernel_scale") != NULL);
    lx_tree_release(st);
    CHECK_EQ_INT(lx_qt_begin_ptq_nnx(rs, tn, &s), LX_OK);
    y1 = nnx_call_array(tn, x);
    CHECK_EQ_INT((int)lx_qt_session_int8(s), 1);
    lx_qt_end(s);
    CHECK(bit_equal(y1, y_fly));
    nnx_module_release(tn);
    linen_module_release(dense);
    lx_qt_rules_free(rs);
    nnx_rngs_release(r);
}

/* ---- to_linen: Linen Dense_0, then an NNX Linear as ToLinen_0 ---- */
static lx_status mixed_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    x = lx_relu(linen_dense(s, NULL, 6, x));
    linen_module *w = BRIDGE_TO_LINEN(&nnx_Linear, LX_KW_INT("in_features", 6), LX_KW_INT("out_features", 3));
    if (!w || !x) return lx_last_status();
    lx_call cx = LX_ARGS(x);
    lx_status st = linen_call_child(s, w, NULL, NULL, &cx, out);
    linen_module_release(w);
    return st;
}
static const linen_method MIXED_METHODS[] = {LINEN_METHOD("__call__", mixed_call)};
static const linen_type LINEN_MIXED = {.name = "Mixed", .methods = MIXED_METHODS, .nmethods = 1};

static void test_to_linen_ptq(void) {
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_MIXED, NULL, &m), LX_OK);
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xdat));
    lx_call c = LX_ARGS(x);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(7)), &c, NULL, &vars), LX_OK);
    lx_qt_rule rules[] = {{.module_path = "ToLinen_0", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = compile(rules, 1);
    int64_t n8 = 0;
    lx_array *y_fly = apply_in(rs, LX_QT_INT8, m, vars, x, &n8, NULL);
    CHECK_EQ_INT(n8, 1);
    lx_tree *q = NULL;
    CHECK_EQ_INT(lx_qt_quantize_linen(rs, m, vars, &c, &q), LX_OK);
    CHECK(q && tree_array(q, "params/ToLinen_0/kernel")->dtype == LX_I8);
    CHECK(q && tree_array(q, "params/ToLinen_0/kernel_scale") != NULL);
    CHECK(q && tree_array(q, "params/Dense_0/kernel")->dtype == LX_F32);
    n8 = 0;
    lx_array *y = q ? apply_ptq(rs, m, q, x, &n8) : NULL;
    CHECK(bit_equal(y, y_fly));
    CHECK_EQ_INT(n8, 1);
    lx_tree_release(q);
    lx_tree_release(vars);
    lx_qt_rules_free(rs);
    linen_module_release(m);
}

/* ---- calibration: static activation scales from quant_stats, by hand ---- */
static void test_calibration(void) {
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_MLP, NULL, &m), LX_OK);
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xdat));
    lx_call c = LX_ARGS(x);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(11)), &c, NULL, &vars), LX_OK);
    lx_qt_rule rules[] = {
        {.module_path = "Dense_0", .weight_qtype = "int8", .act_qtype = "int8", .act_static_scale = true}};
    lx_qt_rules *rs = compile(rules, 1);

    lx_tree *q = NULL;
    CHECK_FAILS(lx_qt_quantize_linen(rs, m, vars, &c, &q), LX_ERR_NOT_FOUND, "no calibration statistics");
    CHECK(q == NULL);

    /* two calibration batches with max |x| 2 and 4: the calibrated absmax is their mean, 3 */
    float b1[8] = {0.5f, -2.0f, 1.0f, 0.25f, 0, 0, 1.5f, -1.0f}, b2[8] = {4.0f, 0, -3.0f, 1, 2, -1, 0.5f, 0};
    lx_tree *stats = lx_tree_new();
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_calibrate_begin(rs, stats, &s), LX_OK);
    lx_array *y_cal = apply(m, vars, lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, b1)));
    apply(m, vars, lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, b2)));
    lx_qt_end(s);
    CHECK(bit_equal(y_cal, apply(m, vars, lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, b1)))));
    const lx_array *cnt = tree_array(stats, "Dense_0/dot_general0_lhs/count"),
                   *sum = tree_array(stats, "Dense_0/dot_general0_lhs/sum_of_absmax");
    CHECK(cnt && cnt->dtype == LX_I32 && cnt->ndim == 0 && lx_i32(cnt)[0] == 2);
    CHECK(sum && lx_shape_eq(sum, 2, (int64_t[]){1, 1}) && lx_f32(sum)[0] == 6.0f);
    CHECK(tree_array(stats, "Dense_1/dot_general0_lhs/count") == NULL); /* no rule there */

    lx_tree *with = lx_tree_copy(vars);
    CHECK_EQ_INT(lx_tree_set(with, "quant_stats", lx_tree_v(stats)), LX_OK);
    CHECK_EQ_INT(lx_qt_quantize_linen(rs, m, with, &c, &q), LX_OK);
    CHECK(q && lx_tree_get(q, "quant_stats") == NULL);
    const lx_array *sa = q ? tree_array(q, "params/Dense_0/dot_general0_lhs_scale") : NULL;
    CHECK(sa && lx_shape_eq(sa, 2, (int64_t[]){1, 1}) && lx_f32(sa)[0] == 3.0f / 127.0f);

    /* the static scale is used: an input beyond 3 saturates at 127; the result is the integer
     * sum rescaled, reproduced here from the stored int8 weight and the formula */
    float xin[8] = {3.5f, -0.8f, 1.0f, 0.1f, -4.0f, 2.9f, 0.0f, 0.33f};
    lx_array *xi = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xin));
    int64_t n8 = 0;
    lx_qt_session *ps = NULL;
    CHECK_EQ_INT(lx_qt_begin_ptq(rs, q, &ps), LX_OK);
    /* the whole MLP against a reference built independently of the quantizer, from the float
     * kernel of `vars` and the rules of docs/quantization.md: per output column n the weight scale
     * max_k |w[k, n]| / 127 and int8 values clamp(round_half_even(w / scale), -127, 127); the
     * activation scale 3 / 127 (hand-computed above); Dense_0 in integers, Dense_1 in float (no
     * rule) */
    lx_array *y = apply(m, q, xi);
    n8 = lx_qt_session_int8(ps);
    lx_qt_end(ps);
    CHECK_EQ_INT(n8, 1);
    const lx_array *k0 = tree_array(vars, "params/Dense_0/kernel");
    const lx_array *b0 = tree_array(vars, "params/Dense_0/bias"), *k1 = tree_array(vars, "params/Dense_1/kernel"),
                   *bb1 = tree_array(vars, "params/Dense_1/bias");
    float ws[8];
    int32_t wq[4 * 8];
    for (int n = 0; k0 && n < 8; n++) {
        float mx = 0;
        for (int k = 0; k < 4; k++) mx = fmaxf(mx, fabsf(lx_f32(k0)[k * 8 + n]));
        ws[n] = mx > 0 ? mx / 127.0f : 1.0f;
        for (int k = 0; k < 4; k++) {
            float r = nearbyintf(lx_f32(k0)[k * 8 + n] * (1.0f / ws[n]));
            wq[k * 8 + n] = (int32_t)(r > 127 ? 127 : r < -127 ? -127 : r);
        }
    }
    float s_a = 3.0f / 127.0f;
    for (int mrow = 0; y && k0 && mrow < 2; mrow++) {
        float h[8];
        for (int n = 0; n < 8; n++) {
            int32_t acc = 0;
            for (int k = 0; k < 4; k++) {
                float r = nearbyintf(xin[mrow * 4 + k] * (1.0f / s_a));
                r = r > 127 ? 127 : r < -127 ? -127 : r;
                acc += (int32_t)r * wq[k * 8 + n];
            }
            h[n] = fmaxf((float)acc * s_a * ws[n] + lx_f32(b0)[n], 0.0f);
        }
        for (int n = 0; n < 3; n++) {
            double e = lx_f32(bb1)[n];
            for (int k = 0; k < 8; k++) e += (double)h[k] * lx_f32(k1)[k * 3 + n];
            CHECK_NEAR(lx_f32(y)[mrow * 3 + n], e, 1e-5);
        }
    }
    /* statistics with count 0 */
    lx_tree *zero = lx_tree_copy(stats);
    lx_array *z = lx_array_new(LX_I32, 0, NULL);
    CHECK_EQ_INT(lx_tree_set_path(zero, "Dense_0/dot_general0_lhs/count", lx_array_v(z)), LX_OK);
    lx_release(z);
    lx_tree *with0 = lx_tree_copy(vars), *q0 = NULL;
    CHECK_EQ_INT(lx_tree_set(with0, "quant_stats", lx_tree_v(zero)), LX_OK);
    CHECK_FAILS(lx_qt_quantize_linen(rs, m, with0, &c, &q0), LX_ERR_INVALID_ARGUMENT, "count 0");
    lx_tree_release(with0);
    lx_tree_release(zero);

    lx_tree_release(q);
    lx_tree_release(with);
    lx_tree_release(stats);
    lx_tree_release(vars);
    lx_qt_rules_free(rs);
    linen_module_release(m);
}

/* max |a - b| / max |b| (1 when the shapes differ or one is missing) */
static double max_rel_diff(const lx_array *a, const lx_array *b) {
    if (!a || !b || !lx_same_shape(a, b) || a->dtype != LX_F32 || b->dtype != LX_F32) return 1;
    double num = 0, den = 0;
    for (int64_t i = 0; i < a->size; i++) {
        num = lx_worse(num, fabs((double)lx_f32(a)[i] - lx_f32(b)[i]));
        den = fmax(den, fabs((double)lx_f32(b)[i]));
    }
    return den > 0 ? num / den : num;
}

/* ---- int8 convolutions (LX_QT_INT8): im2col in int8 and the int8 GEMM, against the
 * fake-quantized conv (the same quantized values, summed in float), over strides, padding,
 * kernel dilation, 1 to 3 spatial axes, batch > 1; grouped convs take the dequantizing path ---- */
static void conv_case(const char *what, lx_call cc, int nd, const int64_t *xshape, int want_int8) {
    linen_module *conv = NULL;
    CHECK_EQ_INT(linen_module_new(&linen_Conv, &cc, &conv), LX_OK);
    lx_array *x = lx_autorelease(lx_array_empty(LX_F32, nd, xshape));
    for (int64_t i = 0; i < x->size; i++) lx_f32(x)[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    lx_call c = LX_ARGS(x);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(conv, LINEN_KEY(lx_key_from_seed(3)), &c, NULL, &vars), LX_OK);
    lx_qt_rule rules[] = {{.module_path = ".*", .op_names = "conv_general", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = compile(rules, 1);
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_FAKE, &s), LX_OK);
    lx_array *y_fake = apply(conv, vars, x);
    lx_qt_end(s);
    CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_INT8, &s), LX_OK);
    lx_array *y8 = apply(conv, vars, x);
    int64_t n8 = lx_qt_session_int8(s), nq = lx_qt_session_quantized(s);
    lx_qt_end(s);
    double d = max_rel_diff(y8, y_fake);
    if (!(d < 1e-5) || n8 != want_int8) fprintf(stderr, "  %s: rel diff %g, int8 ops %lld\n", what, d, (long long)n8);
    CHECK(d < (want_int8 ? 1e-5 : 0) || (!want_int8 && bit_equal(y8, y_fake)));
    CHECK_EQ_INT((int)n8, want_int8);
    CHECK_EQ_INT((int)nq, 1);
    lx_tree_release(vars);
    lx_qt_rules_free(rs);
    linen_module_release(conv);
}

static void test_int8_conv(void) {
    int64_t k33[] = {3, 3}, k32[] = {3, 2}, s21[] = {2, 1}, d12[] = {1, 2}, k1[] = {3}, s2[] = {2}, k222[] = {2, 2, 2};
    conv_case("3x3 SAME", LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW("kernel_size", lx_ints_v(2, k33))), 4,
              (int64_t[]){1, 5, 5, 2}, 1);
    conv_case("3x2 strided dilated VALID",
              LX_CALL_KWARGS(LX_KW_INT("features", 5), LX_KW("kernel_size", lx_ints_v(2, k32)),
                             LX_KW("strides", lx_ints_v(2, s21)), LX_KW("kernel_dilation", lx_ints_v(2, d12)),
                             LX_KW_STR("padding", "VALID")),
              4, (int64_t[]){2, 7, 6, 3}, 1);
    conv_case("3x3 stride 2 SAME, 32 -> 40 channels (the GEMM at 8+ rows)",
              LX_CALL_KWARGS(LX_KW_INT("features", 40), LX_KW("kernel_size", lx_ints_v(2, k33)),
                             LX_KW("strides", lx_ints_v(2, (int64_t[]){2, 2}))),
              4, (int64_t[]){2, 9, 8, 32}, 1);
    conv_case("1-D stride 2", LX_CALL_KWARGS(LX_KW_INT("features", 6), LX_KW("kernel_size", lx_ints_v(1, k1)),
                                             LX_KW("strides", lx_ints_v(1, s2))),
              3, (int64_t[]){2, 9, 4}, 1);
    conv_case("1-D CAUSAL", LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW("kernel_size", lx_ints_v(1, k1)),
                                           LX_KW_STR("padding", "CAUSAL")),
              3, (int64_t[]){1, 6, 2}, 1);
    conv_case("3-D 2x2x2", LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW("kernel_size", lx_ints_v(3, k222))), 5,
              (int64_t[]){1, 4, 3, 3, 2}, 1);
    conv_case("grouped (dequantizing path)",
              LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW("kernel_size", lx_ints_v(2, k32)),
                             LX_KW_INT("feature_group_count", 2)),
              4, (int64_t[]){1, 4, 3, 4}, 0);
}

/* ---- conv and einsum quantized by rules ---- */
static void ref_fq(float *v, int64_t n, int64_t st) {
    float mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(v[i * st]));
    float s = mx > 0 ? mx / 127.0f : 1.0f;
    for (int64_t i = 0; i < n; i++) {
        float r = nearbyintf(v[i * st] * (1.0f / s));
        v[i * st] = fminf(127.f, fmaxf(-127.f, r)) * s;
    }
}

static void test_conv_and_einsum(void) {
    /* Linen Conv(4, (3, 3)) on NHWC (1, 5, 5, 2): kernel HWIO (3, 3, 2, 4), one scale per O */
    linen_module *conv = NULL;
    lx_call cc = LX_CALL_ARGS(lx_int_v(4), lx_ints_v(2, (int64_t[]){3, 3}));
    CHECK_EQ_INT(linen_module_new(&linen_Conv, &cc, &conv), LX_OK);
    float xd[50];
    for (int i = 0; i < 50; i++) xd[i] = (float)((i * 13) % 17) / 8.0f - 1.0f;
    lx_array *x = lx_autorelease(lx_array_from_f32(4, (int64_t[]){1, 5, 5, 2}, xd));
    lx_call c = LX_ARGS(x);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(conv, LINEN_KEY(lx_key_from_seed(2)), &c, NULL, &vars), LX_OK);
    lx_qt_rule rules[] = {{.module_path = ".*", .op_names = "conv_general", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = compile(rules, 1);
    int64_t nq = 0;
    lx_array *y_fake = apply_in(rs, LX_QT_FAKE, conv, vars, x, NULL, &nq);
    CHECK_EQ_INT(nq, 1);
    /* reference: the op on the round-tripped operands */
    const lx_array *k = tree_array(vars, "params/kernel");
    float kq[72], xq[50];
    memcpy(kq, lx_f32(k), sizeof kq);
    memcpy(xq, xd, sizeof xq);
    for (int o = 0; o < 4; o++) ref_fq(kq + o, 18, 4);
    ref_fq(xq, 50, 1);
    lx_conv_params p = {0};
    p.padding.mode = LX_PAD_SAME;
    lx_array *y_ref = lx_conv_general(lx_autorelease(lx_array_from_f32(4, (int64_t[]){1, 5, 5, 2}, xq)),
                                      lx_autorelease(lx_array_from_f32(4, (int64_t[]){3, 3, 2, 4}, kq)), &p);
    y_ref = lx_add(y_ref, (lx_array *)tree_array(vars, "params/bias"));
    CHECK(bit_equal(y_fake, y_ref));
    /* PTQ: the conv kernel stored int8 (3, 3, 2, 4) with scales (1, 1, 1, 4); same outputs */
    lx_tree *q = NULL;
    CHECK_EQ_INT(lx_qt_quantize_linen(rs, conv, vars, &c, &q), LX_OK);
    CHECK(q && tree_array(q, "params/kernel")->dtype == LX_I8);
    CHECK(q && lx_shape_eq(tree_array(q, "params/kernel_scale"), 4, (int64_t[]){1, 1, 1, 4}));
    /* the int8 conv path (int8_conv): the same values up to float summation order */
    int64_t ops = 0;
    CHECK(q && max_rel_diff(apply_ptq(rs, conv, q, x, &ops), y_fake) < 1e-5);
    CHECK_EQ_INT((int)ops, 1);
    lx_tree_release(q);
    lx_tree_release(vars);
    lx_qt_rules_free(rs);
    linen_module_release(conv);

    /* attention's q.k^T (op "einsum"): both activations, one scale per tensor */
    float qd[2 * 3 * 2 * 4], kd[2 * 3 * 2 * 4];
    for (int i = 0; i < 48; i++) qd[i] = (float)((i * 7) % 11) / 5.0f - 1.0f, kd[i] = (float)((i * 5) % 13) / 6.0f - 1.0f;
    lx_array *qa = lx_autorelease(lx_array_from_f32(4, (int64_t[]){2, 3, 2, 4}, qd));
    lx_array *ka = lx_autorelease(lx_array_from_f32(4, (int64_t[]){2, 3, 2, 4}, kd));
    lx_qt_rule er[] = {{.op_names = "einsum", .act_qtype = "int8"}};
    rs = compile(er, 1);
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_INT8, &s), LX_OK);
    lx_array *w = lx_dot_product_attention_weights(qa, ka, NULL, NULL, false, 0.5f);
    CHECK_EQ_INT((int)lx_qt_session_quantized(s), 1);
    lx_qt_end(s);
    float qq[48], kk[48];
    memcpy(qq, qd, sizeof qq), memcpy(kk, kd, sizeof kk);
    ref_fq(qq, 48, 1), ref_fq(kk, 48, 1);
    lx_array *wr = lx_dot_product_attention_weights(lx_autorelease(lx_array_from_f32(4, (int64_t[]){2, 3, 2, 4}, qq)),
                                                    lx_autorelease(lx_array_from_f32(4, (int64_t[]){2, 3, 2, 4}, kk)),
                                                    NULL, NULL, false, 0.5f);
    CHECK(bit_equal(w, wr));
    CHECK(!bit_equal(w, lx_dot_product_attention_weights(qa, ka, NULL, NULL, false, 0.5f)));
    lx_qt_rules_free(rs);
}

/* ---- static scales for an op of two activations (attention's q.k^T), kept under the module ---- */
static lx_status attn_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)s;
    lx_array *q, *k;
    LX_TRY(lx_call_array(c, 0, "q", &q));
    LX_TRY(lx_call_array(c, 1, "k", &k));
    return linen_return_array(out, lx_dot_product_attention_weights(q, k, NULL, NULL, false, 0.5f));
}
static const linen_method ATTN_METHODS[] = {LINEN_METHOD("__call__", attn_call)};
static const linen_type LINEN_ATTN = {.name = "Attn", .methods = ATTN_METHODS, .nmethods = 1};

static float fill(float *v, int n, int seed, float amp) { /* values in [-amp, amp]; returns max |v| */
    float mx = 0;
    for (int i = 0; i < n; i++) {
        v[i] = amp * ((float)((i * 7 + seed * 13) % 17) / 8.0f - 1.0f);
        mx = fmaxf(mx, fabsf(v[i]));
    }
    return mx;
}

static void test_static_scales_two_activations(void) {
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_ATTN, NULL, &m), LX_OK);
    lx_qt_rule rules[] = {{.op_names = "einsum", .act_qtype = "int8", .act_static_scale = true}};
    lx_qt_rules *rs = compile(rules, 1);
    const int64_t shp[4] = {1, 3, 2, 4};
    float q1[24], k1[24], q2[24], k2[24];
    float aq = fill(q1, 24, 1, 1.5f) + fill(q2, 24, 2, 3.0f), ak = fill(k1, 24, 3, 0.5f) + fill(k2, 24, 4, 2.0f);
    lx_tree *stats = lx_tree_new(), *vars = lx_tree_new(), *empty = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set(vars, "params", lx_tree_v(empty)), LX_OK);
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_calibrate_begin(rs, stats, &s), LX_OK);
    for (int b = 0; b < 2; b++) { /* two calls of the root module: both count as its einsum0 */
        lx_call c = LX_ARGS(lx_autorelease(lx_array_from_f32(4, shp, b ? q2 : q1)),
                            lx_autorelease(lx_array_from_f32(4, shp, b ? k2 : k1)));
        lx_value y;
        CHECK_EQ_INT(linen_apply(m, vars, &c, LINEN_NO_RNGS, NULL, &y, NULL), LX_OK);
        lx_value_free(&y);
    }
    lx_qt_end(s);
    CHECK(tree_array(stats, "einsum0_lhs/count") && lx_i32(tree_array(stats, "einsum0_lhs/count"))[0] == 2);
    CHECK(tree_array(stats, "einsum0_rhs/sum_of_absmax") &&
          lx_f32(tree_array(stats, "einsum0_rhs/sum_of_absmax"))[0] == ak);
    CHECK(tree_array(stats, "einsum1_lhs/count") == NULL);
    CHECK_EQ_INT(lx_tree_set(vars, "quant_stats", lx_tree_v(stats)), LX_OK);
    float q3[24], k3[24];
    fill(q3, 24, 5, 4.0f), fill(k3, 24, 6, 1.0f);
    lx_array *qa = lx_autorelease(lx_array_from_f32(4, shp, q3)), *ka = lx_autorelease(lx_array_from_f32(4, shp, k3));
    lx_call c3 = LX_ARGS(qa, ka);
    lx_tree *q = NULL;
    CHECK_EQ_INT(lx_qt_quantize_linen(rs, m, vars, &c3, &q), LX_OK);
    const lx_array *sq = q ? tree_array(q, "params/einsum0_lhs_scale") : NULL,
                   *sk = q ? tree_array(q, "params/einsum0_rhs_scale") : NULL;
    CHECK(sq && lx_shape_eq(sq, 4, (int64_t[]){1, 1, 1, 1}) && lx_f32(sq)[0] == aq / 2 / 127.0f);
    CHECK(sk && lx_f32(sk)[0] == ak / 2 / 127.0f);
    /* the PTQ run uses them: q3 reaches 4 > the calibrated 2.25 and saturates */
    lx_qt_session *ps = NULL;
    lx_value yv = lx_none();
    if (q && lx_qt_begin_ptq(rs, q, &ps) == LX_OK) {
        CHECK_EQ_INT(linen_apply(m, q, &c3, LINEN_NO_RNGS, NULL, &yv, NULL), LX_OK);
        lx_qt_end(ps);
    }
    float qq[24], kk[24], rsq = aq / 2 / 127.0f, rsk = ak / 2 / 127.0f; /* the calibrated means, by hand */
    for (int i = 0; i < 24; i++) {
        float a = nearbyintf(q3[i] * (1.0f / rsq)), b = nearbyintf(k3[i] * (1.0f / rsk));
        qq[i] = fminf(127.f, fmaxf(-127.f, a)) * rsq;
        kk[i] = fminf(127.f, fmaxf(-127.f, b)) * rsk;
    }
    lx_array *ref = lx_dot_product_attention_weights(lx_autorelease(lx_array_from_f32(4, shp, qq)),
                                                     lx_autorelease(lx_array_from_f32(4, shp, kk)), NULL, NULL, false,
                                                     0.5f);
    CHECK(yv.kind == LX_V_ARRAY && bit_equal(yv.u.array, ref));
    lx_value_free(&yv);
    lx_tree_release(q);
    lx_tree_release(empty), lx_tree_release(vars), lx_tree_release(stats);
    lx_qt_rules_free(rs);
    linen_module_release(m);
}


/* ---- all or nothing under allocation failure (review finding Q1): an allocation failing half
 * way through an update used to leave new kernel_scale / *_lhs_scale attributes (and int8
 * kernels) in the module, which the next quantize refused as "quantizing twice"; nnx_update now
 * plans everything before its first write. Every allocation of lx_qt_quantize_nnx and of the
 * statistics store is failed in turn: each failure leaves the state exactly as it was (same
 * leaves, same arrays). ---- */


static void test_nnx_all_or_nothing(void) {
    if (!lx_fault_available()) return;
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xdat));
    lx_call c = LX_ARGS(x);
    lx_qt_rule rules[] = {{.module_path = ".*", .weight_qtype = "int8", .act_qtype = "int8", .act_static_scale = true}};
    lx_qt_rules *rs = compile(rules, 1);
    for (int what = 0; what < 2; what++) { /* 0: lx_qt_quantize_nnx, 1: lx_qt_stats_store_nnx */
        int failed = 0, changed = 0;
        bool done = false;
        for (int64_t n = 1; n < 5000 && !done; n++) {
            nnx_rngs *r = NULL;
            CHECK_EQ_INT(nnx_rngs_from_seed(1, &r), LX_OK);
            nnx_module *m = NULL;
            CHECK_EQ_INT(nnx_module_new(&NNX_TWO_LIN, NULL, r, &m), LX_OK);
            lx_tree *stats = lx_tree_new();
            lx_qt_session *s = NULL;
            CHECK_EQ_INT(lx_qt_calibrate_begin(rs, stats, &s), LX_OK);
            CHECK(nnx_call_array(m, x) != NULL);
            lx_qt_end(s);
            if (what == 0) CHECK_EQ_INT(lx_qt_stats_store_nnx(m, stats), LX_OK);
            lx_flat before = lx_test_nnx_state_flat(m);
            lx_fault_set(n, false);
            lx_status st = what == 0 ? lx_qt_quantize_nnx(rs, m, &c, NULL) : lx_qt_stats_store_nnx(m, stats);
            done = !lx_fault_fired();
            lx_fault_set(-1, false);
            lx_flat after = lx_test_nnx_state_flat(m);
            if (st != LX_OK) {
                failed++;
                if (!lx_test_same_leaves(&before, &after)) {
                    changed++;
                    LX_TEST_REPORT_(false, "%s: allocation %lld failed (%s) and the state changed: %zu -> %zu leaves",
                                    what == 0 ? "quantize_nnx" : "stats_store_nnx", (long long)n, lx_last_error(),
                                    before.len, after.len);
                }
            } else if (what == 0) {
                CHECK_EQ_INT(lx_variable_get_value(((nnx_linear *)((two_lin *)m)->a)->kernel)->dtype, LX_I8);
            }
            lx_clear_error();
            lx_flat_free(&before), lx_flat_free(&after);
            lx_tree_release(stats);
            nnx_module_release(m);
            nnx_rngs_release(r);
        }
        CHECK(done && failed > 0 && changed == 0);
    }
    lx_qt_rules_free(rs);
}

/* ---- a weight a lookup also reads (review finding Q3): a tied embedding, e(tokens) then
 * e.attend(h). Stored as int8 the lookup gathered int8 rows and the PTQ model failed
 * ("dot_general: expected float32 operands, got int8"); the table now stays float32 with a
 * warning, and the PTQ session quantizes attend's use on the fly: outputs equal the on-the-fly
 * int8 session's. ---- */
typedef struct {
    nnx_module base;
    nnx_module *e;
} tied_mod;
static lx_status tied_init(nnx_module *m, const lx_call *c, nnx_rngs *r) {
    (void)c;
    lx_call k = LX_CALL_KWARGS(LX_KW_INT("num_embeddings", 5), LX_KW_INT("features", 4));
    return nnx_module_new(&nnx_Embed, &k, r, &((tied_mod *)m)->e);
}
static lx_status tied_call(nnx_module *m, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    nnx_embed *e = (nnx_embed *)((tied_mod *)m)->e;
    return linen_return_array(out, nnx_embed_attend(e, nnx_embed_forward(e, x)));
}
static const nnx_field TIED_FIELDS[] = {NNX_CHILD(tied_mod, e)};
static const nnx_method TIED_METHODS[] = {{"__call__", tied_call}};
static const nnx_type NNX_TIED = {.name = "Tied", .size = sizeof(tied_mod), .fields = TIED_FIELDS, .nfields = 1,
                                  .methods = TIED_METHODS, .nmethods = 1, .init = tied_init};

static void test_tied_embedding(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(1, &r), LX_OK);
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&NNX_TIED, NULL, r, &m), LX_OK);
    lx_array *tok = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 3}, (int32_t[]){0, 3, 4}));
    lx_qt_rule rules[] = {{.module_path = ".*", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = compile(rules, 1);
    lx_array *y_fly = call_in(rs, LX_QT_INT8, m, tok, NULL);
    lx_array *y_fake = call_in(rs, LX_QT_FAKE, m, tok, NULL);
    lx_array *y_f32 = nnx_call_array(m, tok);
    CHECK(y_fly && y_fake && y_f32 && !lx_array_equal(y_fake, y_f32)); /* attend really is quantized */
    lx_call c = LX_ARGS(tok);
    CHECK_EQ_INT(lx_qt_quantize_nnx(rs, m, &c, NULL), LX_OK);
    CHECK(strstr(lx_qt_warnings(), "'e/embedding' is also read by an op that is not a contraction") != NULL);
    nnx_embed *e = (nnx_embed *)((tied_mod *)m)->e;
    CHECK_EQ_INT(lx_variable_get_value(e->embedding)->dtype, LX_F32);
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_begin_ptq_nnx(rs, m, &s), LX_OK);
    lx_array *y_ptq = nnx_call_array(m, tok);
    lx_qt_end(s);
    CHECK(y_ptq != NULL);
    CHECK(bit_equal(y_ptq, y_fly));
    lx_qt_rules_free(rs);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

/* ---- a layer called twice in one forward (review finding Q8): its ops are dot_general0 and
 * dot_general1 with statistics of their own; PTQ stored only dot_general0_lhs_scale, so the
 * second call ran on its per-call max and the PTQ model differed from the QAT model in
 * evaluation (14.70 against 11.04 on a saturating input). Both scales are stored now. ---- */
typedef struct {
    nnx_module base;
    nnx_module *l1;
} twice_mod;
static lx_status twice_init(nnx_module *m, const lx_call *c, nnx_rngs *r) {
    (void)c;
    return nnx_linear_new(4, 4, r, (nnx_linear **)&((twice_mod *)m)->l1);
}
static lx_status twice_call(nnx_module *m, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    nnx_module *l1 = ((twice_mod *)m)->l1;
    lx_array *h = lx_mul(nnx_call_array(l1, x), lx_autorelease(lx_array_full_f32(0, NULL, 10.0f)));
    return linen_return_array(out, nnx_call_array(l1, h));
}
static const nnx_field TWICE_FIELDS[] = {NNX_CHILD(twice_mod, l1)};
static const nnx_method TWICE_METHODS[] = {{"__call__", twice_call}};
static const nnx_type NNX_TWICE = {.name = "Twice", .size = sizeof(twice_mod), .fields = TWICE_FIELDS, .nfields = 1,
                                   .methods = TWICE_METHODS, .nmethods = 1, .init = twice_init};

static void test_layer_called_twice(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(1, &r), LX_OK);
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&NNX_TWICE, NULL, r, &m), LX_OK);
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xdat));
    float big[8];
    memcpy(big, xdat, sizeof big);
    big[0] = 3.0f; /* beyond the calibrated range of dot_general0 */
    lx_array *x2 = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, big));
    lx_qt_rule rules[] = {{.module_path = ".*", .weight_qtype = "int8", .act_qtype = "int8", .act_static_scale = true}};
    lx_qt_rules *rs = compile(rules, 1);
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_calibrate_begin_nnx(rs, m, &s), LX_OK);
    CHECK(nnx_call_array(m, x) != NULL);
    CHECK_EQ_INT(lx_qt_finish(s), LX_OK);
    lx_tree *stats = NULL;
    CHECK_EQ_INT(lx_qt_stats_nnx(m, &stats), LX_OK);
    const lx_array *a0 = stats ? tree_array(stats, "l1/dot_general0_lhs/sum_of_absmax") : NULL,
                   *a1 = stats ? tree_array(stats, "l1/dot_general1_lhs/sum_of_absmax") : NULL;
    CHECK(a0 && a1 && lx_f32(a0)[0] == 1.2f && lx_f32(a1)[0] > 1.2f);
    CHECK_EQ_INT(lx_qt_begin_qat_nnx(rs, m, false, &s), LX_OK);
    lx_array *y_qat = nnx_call_array(m, x2);
    CHECK_EQ_INT(lx_qt_finish(s), LX_OK);
    lx_call c = LX_ARGS(x);
    CHECK_EQ_INT(lx_qt_quantize_nnx(rs, m, &c, NULL), LX_OK);
    lx_tree *st = NULL;
    CHECK_EQ_INT(nnx_state(m, 0, NULL, &st), LX_OK);
    const lx_array *s0 = st ? tree_array(st, "l1/dot_general0_lhs_scale") : NULL,
                   *s1 = st ? tree_array(st, "l1/dot_general1_lhs_scale") : NULL;
    CHECK(s0 && a0 && lx_f32(s0)[0] == lx_f32(a0)[0] / 127.0f);
    CHECK(s1 && a1 && lx_f32(s1)[0] == lx_f32(a1)[0] / 127.0f);
    CHECK_EQ_INT(lx_qt_begin_ptq_nnx(rs, m, &s), LX_OK);
    lx_array *y_ptq = nnx_call_array(m, x2);
    lx_qt_end(s);
    for (int i = 0; y_qat && y_ptq && i < 8; i++)
        CHECK_NEAR(lx_f32(y_ptq)[i], lx_f32(y_qat)[i], 1e-5 * (1 + fabs(lx_f32(y_qat)[i])));
    CHECK(y_qat && y_ptq);
    lx_tree_release(st);
    lx_tree_release(stats);
    lx_qt_rules_free(rs);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

int main(void) {
    RUN(test_layer_called_twice);
    RUN(test_tied_embedding);
    RUN(test_nnx_all_or_nothing);
    RUN(test_static_scales_two_activations);
    RUN(test_linen_ptq_and_checkpoint);
    RUN(test_nnx_ptq);
    RUN(test_to_linen_ptq);
    RUN(test_calibration);
    RUN(test_conv_and_einsum);
    RUN(test_int8_conv);
    lx_pool_drain();
    return lx_test_finish();
}
