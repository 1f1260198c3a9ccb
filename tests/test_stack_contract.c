/* The lifted transforms' error contract (lift.h, nnx_transforms.h, status.h) and the stacking
 * fixes of audit stack16:
 *  - a NULL output pointer is LX_ERR_INVALID_ARGUMENT naming the call, even with a failure
 *    pending; a NULL module input keeps a pending failure (LX_ERR_FAILED_INPUT, the earlier text)
 *    and with nothing pending names itself (S16-1); a constructor that returns LX_OK without a
 *    module is named (S16-2);
 *  - a mapped input of size 0 is named with its shape (S16-3);
 *  - linen_stack_layers refuses layers after a gap (S16-4);
 *  - nnx_scan_call stacks a y that is a tuple, leaf by leaf (S16-5);
 *  - a failing nnx_scan_call puts back the shared (StateAxes None) Variables it changed (S16-6). */
#include <stddef.h>

#include "lx_test.h"
#include "linnx/lift.h"
#include "linnx/nnx_transforms.h"

#define NULL_OUT(expr, needle) CHECK_FAILS(expr, LX_ERR_INVALID_ARGUMENT, needle)

static linen_module *dense(int64_t f) {
    linen_module *m = NULL;
    linen_module_new(&linen_Dense, &LX_CALL_KWARGS(LX_KW_INT("features", f)), &m);
    return m;
}

static lx_status no_module_ctor(nnx_rngs *r, void *u, nnx_module **out) {
    (void)r, (void)u;
    *out = NULL;
    return LX_OK;
}

/* Leaves a pending LX_ERR_SHAPE and returns its text. */
static const char *make_pending(char *buf, size_t cap) {
    lx_clear_error();
    lx_array *bad = lx_reshape(lx_scalar(1), LX_SHAPE(2));
    CHECK(bad == NULL && lx_error_pending());
    snprintf(buf, cap, "%s", lx_last_error());
    return buf;
}

static void test_null_outputs(void) {
    linen_module *d = dense(4);
    linen_lift_opts o = {.variable_axes = LINEN_VAR_AXES({"params", 0}), .length = 2};
    NULL_OUT(linen_vmap(d, &o, NULL), "linen_vmap: output is NULL");
    NULL_OUT(linen_scan(d, &o, NULL), "linen_scan: output is NULL");
    NULL_OUT(linen_vmap_named(d, &o, "layers", NULL), "linen_vmap_named: output is NULL");
    NULL_OUT(linen_scan_named(d, &o, "layers", NULL), "linen_scan_named: output is NULL");
    NULL_OUT(linen_remat(d, LX_REMAT_NOTHING_SAVEABLE, NULL), "linen_remat: output is NULL");
    NULL_OUT(linen_checkpoint(d, LX_REMAT_DOTS_SAVEABLE, NULL), "linen_remat: output is NULL");
    NULL_OUT(linen_remat_named(d, LX_REMAT_NOTHING_SAVEABLE, "b", NULL), "linen_remat_named: output is NULL");
    lx_tree *t = lx_tree_new();
    NULL_OUT(linen_unstack_layers(t, "layers", LINEN_VAR_AXES({"params", 1}), NULL, NULL),
             "linen_unstack_layers: output is NULL");
    NULL_OUT(linen_stack_layers(t, "layers", LINEN_VAR_AXES({"params", 1}), NULL, NULL),
             "linen_stack_layers: output is NULL");
    lx_tree *to = NULL;
    CHECK_FAILS(linen_unstack_layers(t, NULL, LINEN_VAR_AXES({"params", 1}), NULL, &to), LX_ERR_INVALID_ARGUMENT,
                "linen_unstack_layers: prefix is NULL");
    CHECK_FAILS(linen_stack_layers(t, NULL, LINEN_VAR_AXES({"params", 1}), NULL, &to), LX_ERR_INVALID_ARGUMENT,
                "linen_stack_layers: prefix is NULL");
    CHECK(to == NULL);

    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    lx_call c = LX_CALL_ARGS(lx_int_v(3), lx_int_v(3));
    NULL_OUT(nnx_vmap_create(&nnx_Linear, &c, r, 2, NULL, NULL, NULL), "nnx_vmap_create: output is NULL");
    NULL_OUT(nnx_vmap_create_fn(no_module_ctor, NULL, r, 2, NULL, NULL, NULL), "nnx_vmap_create_fn: output is NULL");
    nnx_module *st = NULL;
    CHECK_FAILS(nnx_vmap_create(NULL, &c, r, 2, NULL, NULL, &st), LX_ERR_INVALID_ARGUMENT,
                "nnx_vmap_create: type is NULL");
    CHECK_FAILS(nnx_vmap_create_fn(NULL, NULL, r, 2, NULL, NULL, &st), LX_ERR_INVALID_ARGUMENT,
                "nnx_vmap_create_fn: ctor is NULL");
    CHECK_FAILS(nnx_vmap_create_fn(no_module_ctor, NULL, r, 2, NULL, NULL, &st), LX_ERR_INVALID_ARGUMENT,
                "nnx_vmap_create_fn: the constructor returned LX_OK but no module for copy 0");
    CHECK(st == NULL);
    CHECK_EQ_INT(nnx_vmap_create(&nnx_Linear, &c, r, 2, NULL, NULL, &st), LX_OK);
    lx_array *x = lx_array_new(LX_F32, 2, (const int64_t[]){2, 3});
    NULL_OUT(nnx_scan_call(st, NULL, NULL, NULL, &LX_ARGS(x), NULL), "nnx_scan_call: output is NULL");
    NULL_OUT(nnx_scan_call_remat(st, NULL, NULL, NULL, LX_REMAT_NOTHING_SAVEABLE, &LX_ARGS(x), NULL),
             "nnx_scan_call_remat: output is NULL");
    NULL_OUT(nnx_remat_call(st, NULL, LX_REMAT_NOTHING_SAVEABLE, &LX_ARGS(x), NULL), "nnx_remat_call: output is NULL");
    NULL_OUT(nnx_stack_slice(st, 0, NULL, NULL, NULL), "nnx_stack_slice: output is NULL");
    lx_value v = lx_none();
    CHECK_FAILS(nnx_scan_call(st, NULL, NULL, NULL, NULL, &v), LX_ERR_INVALID_ARGUMENT, "nnx_scan_call: call is NULL");
    CHECK_FAILS(nnx_remat_call(st, NULL, LX_REMAT_NOTHING_SAVEABLE, NULL, &v), LX_ERR_INVALID_ARGUMENT,
                "nnx_remat_call: call is NULL");
    CHECK(v.kind == LX_V_NONE);

    /* a NULL output stays the caller's mistake while a failure is pending */
    char first[256];
    make_pending(first, sizeof first);
    CHECK_EQ_INT(linen_scan(d, &o, NULL), LX_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("linen_scan: output is NULL");
    make_pending(first, sizeof first);
    CHECK_EQ_INT(nnx_scan_call(st, NULL, NULL, NULL, &LX_ARGS(x), NULL), LX_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("nnx_scan_call: output is NULL");
    lx_clear_error();

    lx_release(x);
    nnx_module_release(st);
    nnx_rngs_release(r);
    lx_tree_release(t);
    linen_module_release(d);
}

/* status.h: a NULL input with a failure pending keeps that failure; with none pending it is
 * LX_ERR_FAILED_INPUT naming the argument. Before the fix both were LX_ERR_INVALID_ARGUMENT
 * "vmap/scan: NULL argument", replacing the pending text. */
static void test_null_inputs(void) {
    linen_lift_opts o = {.length = 2};
    linen_module *m = NULL;
    nnx_module *nm = NULL;
    lx_tree *to = NULL;
    lx_value v = lx_none();
    lx_array *x = lx_array_new(LX_F32, 2, (const int64_t[]){2, 3});
    CHECK_FAILS(linen_vmap(NULL, &o, &m), LX_ERR_FAILED_INPUT, "linen_vmap: target is NULL");
    CHECK_FAILS(linen_scan_named(NULL, &o, "layers", &m), LX_ERR_FAILED_INPUT, "linen_scan_named: target is NULL");
    CHECK_FAILS(linen_remat(NULL, LX_REMAT_NOTHING_SAVEABLE, &m), LX_ERR_FAILED_INPUT, "linen_remat: target is NULL");
    CHECK_FAILS(linen_unstack_layers(NULL, "layers", LINEN_VAR_AXES({"params", 1}), NULL, &to), LX_ERR_FAILED_INPUT,
                "linen_unstack_layers: variables is NULL");
    CHECK_FAILS(linen_stack_layers(NULL, "layers", LINEN_VAR_AXES({"params", 1}), NULL, &to), LX_ERR_FAILED_INPUT,
                "linen_stack_layers: variables is NULL");
    CHECK_FAILS(nnx_scan_call(NULL, NULL, NULL, NULL, &LX_ARGS(x), &v), LX_ERR_FAILED_INPUT,
                "nnx_scan_call: stacked is NULL");
    CHECK_FAILS(nnx_scan_call_remat(NULL, NULL, NULL, NULL, LX_REMAT_DOTS_SAVEABLE, &LX_ARGS(x), &v),
                LX_ERR_FAILED_INPUT, "nnx_scan_call_remat: stacked is NULL");
    CHECK_FAILS(nnx_remat_call(NULL, NULL, LX_REMAT_NOTHING_SAVEABLE, &LX_ARGS(x), &v), LX_ERR_FAILED_INPUT,
                "nnx_remat_call: module is NULL");
    CHECK_FAILS(nnx_stack_slice(NULL, 0, NULL, NULL, &nm), LX_ERR_FAILED_INPUT, "nnx_stack_slice: stacked is NULL");
    CHECK(m == NULL && nm == NULL && to == NULL && v.kind == LX_V_NONE);

    /* the pending failure is kept: linen_vmap(Dense that failed to build) */
    char first[256];
    make_pending(first, sizeof first);
    CHECK_EQ_INT(linen_vmap(NULL, &o, &m), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_IS(LX_ERR_SHAPE, first);
    CHECK_EQ_INT(linen_remat(NULL, LX_REMAT_NOTHING_SAVEABLE, &m), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_IS(LX_ERR_SHAPE, first);
    CHECK_EQ_INT(nnx_scan_call(NULL, NULL, NULL, NULL, &LX_ARGS(x), &v), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_IS(LX_ERR_SHAPE, first);
    CHECK_EQ_INT(linen_stack_layers(NULL, "layers", LINEN_VAR_AXES({"params", 1}), NULL, &to), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_IS(LX_ERR_SHAPE, first);
    lx_clear_error();
    lx_release(x);
}

/* S16-3: vmap over an input whose mapped axis has size 0. */
static void test_size0_mapped(void) {
    linen_module *d = dense(4), *v = NULL;
    linen_lift_opts o = {.variable_axes = LINEN_VAR_AXES({"params", 0}), .split_rngs = LINEN_NAMES("params")};
    CHECK_EQ_INT(linen_vmap(d, &o, &v), LX_OK);
    lx_array *x0 = lx_array_new(LX_F32, 3, (const int64_t[]){0, 2, 5});
    lx_tree *vars = NULL;
    CHECK_FAILS(linen_init(v, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x0), NULL, &vars), LX_ERR_SHAPE,
                "vmap/scan in \"/\": argument 0 has shape (0, 2, 5), size 0 on the mapped axis 0");
    CHECK(vars == NULL);
    lx_release(x0);
    linen_module_release(v);
    linen_module_release(d);
}

static void put(lx_tree *t, const char *path, float base) {
    lx_array *a = lx_array_new(LX_F32, 2, (const int64_t[]){2, 3});
    for (int i = 0; i < 6; i++) lx_f32(a)[i] = base + (float)i;
    lx_tree_set_path(t, path, lx_array_v(a));
    lx_release(a);
}

/* S16-4: layers_0, layers_1, layers_3: the stray layers_3 is named, nothing is returned; with no
 * gap the layers stack (layer axis 1) and unstack back to the same values. */
static void test_stack_gap(void) {
    lx_tree *t = lx_tree_new(), *out = NULL;
    put(t, "params/dec/layers_0/k", 0);
    put(t, "params/dec/layers_1/k", 10);
    put(t, "params/dec/layers_3/k", 30);
    CHECK_FAILS(linen_stack_layers(t, "dec/layers", LINEN_VAR_AXES({"params", 1}), NULL, &out), LX_ERR_INVALID_ARGUMENT,
                "stack: params/dec/layers_3 exists but params/dec/layers_2 does not");
    CHECK(out == NULL);
    CHECK(lx_tree_find(t, "params/dec/layers_3/k") && !lx_tree_find(t, "params/dec/layers"));
    /* no layers_0 at all but a layers_1 */
    lx_tree *t1 = lx_tree_new();
    put(t1, "params/layers_1/k", 0);
    CHECK_FAILS(linen_stack_layers(t1, "layers", LINEN_VAR_AXES({"params", 1}), NULL, &out), LX_ERR_INVALID_ARGUMENT,
                "stack: params/layers_1 exists but params/layers_0 does not");
    /* names that only look alike are not layers */
    lx_tree *t2 = lx_tree_new();
    put(t2, "params/layers_0/k", 0);
    put(t2, "params/layers_1/k", 10);
    put(t2, "params/layers_x/k", 99);
    put(t2, "params/layers_norm/k", 99);
    CHECK_EQ_INT(linen_stack_layers(t2, "layers", LINEN_VAR_AXES({"params", 1}), NULL, &out), LX_OK);
    const lx_value *k = out ? lx_tree_find(out, "params/layers/k") : NULL;
    const lx_array *ka = k && k->kind == LX_V_ARRAY ? k->u.array : NULL;
    CHECK(ka && ka->ndim == 3 && ka->shape[0] == 2 && ka->shape[1] == 2 && ka->shape[2] == 3);
    /* k[i, l, j] = 10 l + 3 i + j */
    bool ok = ka != NULL;
    for (int i = 0; ok && i < 2; i++)
        for (int l = 0; l < 2; l++)
            for (int j = 0; j < 3; j++) ok = ok && lx_f32(ka)[(i * 2 + l) * 3 + j] == (float)(10 * l + 3 * i + j);
    CHECK(ok);
    CHECK(out && lx_tree_find(out, "params/layers_x/k") && lx_tree_find(out, "params/layers_norm/k"));
    lx_tree *back = NULL;
    CHECK_EQ_INT(linen_unstack_layers(out, "layers", LINEN_VAR_AXES({"params", 1}), NULL, &back), LX_OK);
    const lx_value *b1 = back ? lx_tree_find(back, "params/layers_1/k") : NULL;
    const lx_value *a1 = lx_tree_find(t2, "params/layers_1/k");
    CHECK(b1 && b1->kind == LX_V_ARRAY && lx_array_equal(b1->u.array, a1->u.array));
    lx_tree_release(back);
    lx_tree_release(out);
    lx_tree_release(t2);
    lx_tree_release(t1);
    lx_tree_release(t);
}

/* ---- NNX: a layer y = x * w with a shared counter n (BatchStat) ---- */
typedef struct mul_cfg {
    int64_t features;
    int64_t fail_at; /* the call fails once n reaches this (0: never) */
} mul_cfg;
typedef struct mul_layer {
    nnx_module base;
    mul_cfg cfg;
    lx_variable *w, *n;
} mul_layer;

static lx_status mul_init(nnx_module *self, const lx_call *c, nnx_rngs *rngs) {
    (void)c;
    mul_layer *m = (mul_layer *)self;
    lx_key k = {{0, 0}};
    if (rngs) LX_TRY(nnx_rngs_draw(rngs, "params", &k));
    lx_initializer nrm = lx_init_normal(1.0), z = lx_init_zeros();
    int64_t s1[] = {m->cfg.features};
    LX_TRY(nnx_param_new(&lx_Param, &nrm, k, LX_F32, 1, s1, NULL, &m->w));
    return nnx_param_new(&lx_BatchStat, &z, k, LX_F32, 1, s1, NULL, &m->n);
}

/* (carry) -> (carry * w, (carry * w, carry * w + 1)); n += 1 */
static lx_status mul_call(nnx_module *self, const lx_call *c, lx_value *out) {
    mul_layer *m = (mul_layer *)self;
    lx_array *x = NULL;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_array *n = lx_variable_get_value(m->n);
    if (m->cfg.fail_at > 0 && lx_f32(n)[0] >= (float)m->cfg.fail_at)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "mul: called too often");
    LX_TRY(lx_variable_set_value(m->n, lx_add_scalar(n, 1.0f), false));
    lx_array *y = lx_mul(x, lx_variable_get_value(m->w));
    lx_array *y1 = lx_add_scalar(y, 1.0f);
    if (!y || !y1) return lx_last_status();
    lx_tree *ys = lx_tree_new(), *t = lx_tree_new();
    lx_status st = ys && t ? LX_OK : LX_ERR_NO_MEMORY;
    if (st == LX_OK) st = lx_tree_set(ys, "0", lx_array_v(y));
    if (st == LX_OK) st = lx_tree_set(ys, "1", lx_array_v(y1));
    if (st == LX_OK) st = lx_tree_set(t, "0", lx_array_v(y));
    if (st == LX_OK) st = lx_tree_set(t, "1", lx_tree_v(ys));
    lx_tree_release(ys);
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    *out = lx_tree_v(t);
    return LX_OK;
}

static const lx_field MUL_CONFIG[] = {LX_FIELD_REQUIRED_INT(mul_cfg, features), LX_FIELD_INT(mul_cfg, fail_at, 0)};
static const nnx_field MUL_FIELDS[] = {NNX_VAR(mul_layer, w), NNX_VAR(mul_layer, n)};
static const nnx_method MUL_METHODS[] = {NNX_METHOD("__call__", mul_call)};
static const nnx_type MUL = {
    .name = "Mul", .size = sizeof(mul_layer), .fields = MUL_FIELDS, .nfields = LX_COUNT(MUL_FIELDS),
    .config = MUL_CONFIG, .nconfig = LX_COUNT(MUL_CONFIG), .config_offset = offsetof(mul_layer, cfg),
    .methods = MUL_METHODS, .nmethods = LX_COUNT(MUL_METHODS), .init = mul_init,
};


/* S16-5: ys = (y, y + 1) per layer comes back as a tuple of two (L, F) arrays (was None). */
static void test_scan_tuple_ys(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(1, &r), LX_OK);
    nnx_module *st = NULL;
    CHECK_EQ_INT(nnx_vmap_create(&MUL, &LX_CALL_ARGS(lx_int_v(3)), r, 3, NULL, NULL, &st), LX_OK);
    lx_array *x = lx_array_from_f32(1, (const int64_t[]){3}, (const float[]){1.0f, -2.0f, 0.5f});
    lx_value out = lx_none();
    CHECK_EQ_INT(nnx_scan_call(st, NULL, NULL, NULL, &LX_ARGS(x), &out), LX_OK);
    const lx_value *carry = out.kind == LX_V_TREE ? lx_tree_get(out.u.tree, "0") : NULL;
    const lx_value *ys = out.kind == LX_V_TREE ? lx_tree_get(out.u.tree, "1") : NULL;
    CHECK(ys && ys->kind == LX_V_TREE && lx_tree_len(ys->u.tree) == 2);
    const lx_value *y0 = ys && ys->kind == LX_V_TREE ? lx_tree_get(ys->u.tree, "0") : NULL;
    const lx_value *y1 = ys && ys->kind == LX_V_TREE ? lx_tree_get(ys->u.tree, "1") : NULL;
    CHECK(y0 && y0->kind == LX_V_ARRAY && y0->u.array->ndim == 2 && y0->u.array->shape[0] == 3 &&
          y0->u.array->shape[1] == 3);
    CHECK(y1 && y1->kind == LX_V_ARRAY && y1->u.array->ndim == 2 && y1->u.array->shape[0] == 3);
    lx_array *w = lx_test_var_value(st, "w");
    double h[3] = {1.0, -2.0, 0.5}, err = 0;
    for (int l = 0; w && y0 && y1 && l < 3; l++)
        for (int j = 0; j < 3; j++) {
            h[j] *= lx_f32(w)[l * 3 + j];
            err = lx_worse(err, fabs(h[j] - lx_f32(y0->u.array)[l * 3 + j]));
            err = lx_worse(err, fabs(h[j] + 1.0 - lx_f32(y1->u.array)[l * 3 + j]));
        }
    for (int j = 0; carry && j < 3; j++) err = lx_worse(err, fabs(h[j] - lx_f32(carry->u.array)[j]));
    CHECK(w && carry && err < 1e-5);
    lx_value_free(&out);
    lx_release(x);
    nnx_module_release(st);
    nnx_rngs_release(r);
}

/* The tuple ys carry gradients, rematerialised per layer too: L = sum_l sum_j (h_lj + 1)^2 over
 * ys[1] = h + 1 of a 2-layer stack (h_0 = x w_0, h_1 = h_0 w_1), against the hand derivative. */
static lx_status tuple_loss(nnx_module *m, void *user, lx_array **loss) {
    lx_value out = lx_none();
    LX_TRY(nnx_scan_call_remat(m, NULL, NULL, NULL, LX_REMAT_NOTHING_SAVEABLE, &LX_ARGS((lx_array *)user), &out));
    const lx_value *ys = lx_tree_get(out.u.tree, "1");
    const lx_value *y1 = ys && ys->kind == LX_V_TREE ? lx_tree_get(ys->u.tree, "1") : NULL;
    lx_status st = y1 && y1->kind == LX_V_ARRAY ? LX_OK : lx_fail(LX_ERR_TYPE, "tuple_loss: no ys[1]");
    if (st == LX_OK) *loss = lx_sum(lx_mul(y1->u.array, y1->u.array), 0, NULL, false);
    lx_value_free(&out);
    if (st == LX_OK && !*loss) st = lx_last_status();
    return st;
}

static void test_scan_tuple_ys_grads(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *st = NULL;
    CHECK_EQ_INT(nnx_vmap_create(&MUL, &LX_CALL_ARGS(lx_int_v(3)), r, 2, NULL, NULL, &st), LX_OK);
    lx_array *x = lx_array_from_f32(1, (const int64_t[]){3}, (const float[]){1.0f, 2.0f, 3.0f});
    lx_array *w = st ? lx_array_copy(lx_test_var_value(st, "w")) : NULL;
    lx_array *val = NULL;
    lx_tree *grads = NULL;
    CHECK_EQ_INT(nnx_value_and_grad(st, NULL, tuple_loss, x, &val, &grads), LX_OK);
    const lx_value *gv = grads ? lx_tree_find(grads, "w") : NULL;
    lx_array *g = gv && gv->kind == LX_V_VARIABLE ? lx_variable_get_value(gv->u.var) : NULL;
    CHECK(w && g && g->size == 6 && val);
    double loss = 0, err = 0;
    for (int j = 0; w && g && j < 3; j++) {
        double xj = lx_f32(x)[j], a = lx_f32(w)[j], b = lx_f32(w)[3 + j];
        double h0 = xj * a, h1 = h0 * b;
        loss += (h0 + 1) * (h0 + 1) + (h1 + 1) * (h1 + 1);
        double ga = 2 * (h0 + 1) * xj + 2 * (h1 + 1) * xj * b, gb = 2 * (h1 + 1) * h0;
        err = lx_worse(err, fabs(ga - lx_f32(g)[j]) / (1 + fabs(ga)));
        err = lx_worse(err, fabs(gb - lx_f32(g)[3 + j]) / (1 + fabs(gb)));
    }
    CHECK(val && fabs(lx_f32(val)[0] - loss) < 1e-4 * (1 + loss));
    CHECK(err < 1e-5);
    lx_release(val);
    lx_tree_release(grads);
    lx_release(w);
    lx_release(x);
    nnx_module_release(st);
    nnx_rngs_release(r);
}

/* S16-6: n shared by the layers (StateAxes({BatchStat: None})); the second layer's call fails:
 * the scan fails and n is 0 again (was left at 1). A scan that succeeds keeps n = L. */
static void test_scan_failure_restores_shared(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(2, &r), LX_OK);
    nnx_filter f[] = {NNX_OF_TYPE(&lx_BatchStat)};
    int axes[] = {NNX_AXIS_BROADCAST};
    nnx_state_axes sa = {1, f, axes};
    nnx_module *st = NULL, *ok = NULL;
    lx_call failing = LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW_INT("fail_at", 1));
    CHECK_EQ_INT(nnx_vmap_create(&MUL, &failing, r, 2, &sa, NULL, &st), LX_OK);
    lx_array *n = st ? lx_test_var_value(st, "n") : NULL;
    CHECK(n && n->ndim == 1 && n->shape[0] == 3);
    lx_array *w_before = st ? lx_array_copy(lx_test_var_value(st, "w")) : NULL;
    lx_array *x = lx_array_from_f32(1, (const int64_t[]){3}, (const float[]){1.0f, 2.0f, 3.0f});
    lx_value out = lx_none();
    CHECK_FAILS(nnx_scan_call(st, NULL, &sa, NULL, &LX_ARGS(x), &out), LX_ERR_INVALID_ARGUMENT,
                "mul: called too often");
    CHECK(out.kind == LX_V_NONE);
    n = lx_test_var_value(st, "n");
    CHECK(n && lx_f32(n)[0] == 0.0f && lx_f32(n)[1] == 0.0f && lx_f32(n)[2] == 0.0f);
    CHECK(w_before && lx_array_equal(lx_test_var_value(st, "w"), w_before));
    /* the same with remat per layer */
    lx_clear_error();
    CHECK_FAILS(nnx_scan_call_remat(st, NULL, &sa, NULL, LX_REMAT_NOTHING_SAVEABLE, &LX_ARGS(x), &out),
                LX_ERR_INVALID_ARGUMENT, "mul: called too often");
    n = lx_test_var_value(st, "n");
    CHECK(n && lx_f32(n)[0] == 0.0f && lx_f32(n)[2] == 0.0f);
    /* success: each layer added 1 to the shared n */
    CHECK_EQ_INT(nnx_vmap_create(&MUL, &LX_CALL_ARGS(lx_int_v(3)), r, 2, &sa, NULL, &ok), LX_OK);
    CHECK_EQ_INT(nnx_scan_call(ok, NULL, &sa, NULL, &LX_ARGS(x), &out), LX_OK);
    n = ok ? lx_test_var_value(ok, "n") : NULL;
    CHECK(n && lx_f32(n)[0] == 2.0f && lx_f32(n)[1] == 2.0f && lx_f32(n)[2] == 2.0f);
    lx_value_free(&out);
    lx_release(w_before);
    lx_release(x);
    nnx_module_release(ok);
    nnx_module_release(st);
    nnx_rngs_release(r);
}

int main(void) {
    RUN(test_null_outputs);
    RUN(test_null_inputs);
    RUN(test_size0_mapped);
    RUN(test_stack_gap);
    RUN(test_scan_tuple_ys);
    RUN(test_scan_tuple_ys_grads);
    RUN(test_scan_failure_restores_shared);
    return lx_test_finish();
}
