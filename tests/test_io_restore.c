/* Restore into a target structure (Flax's from_state_dict checks and texts), the pure dict of
 * Variables and boxes, and the layout conversions: Linen <-> NNX through the bridge's names, and
 * MaxText's Linen and NNX train states both ways. */
#include "lx_test.h"

static lx_array *vec_f32(int n, float base) {
    float v[16];
    for (int i = 0; i < n; i++) v[i] = base + (float)i;
    return lx_array_from_f32(1, (int64_t[]){n}, v);
}

static const lx_array *arr_at(const lx_tree *t, const char *path) {
    const lx_value *v = lx_tree_find(t, path);
    return v && v->kind == LX_V_ARRAY ? v->u.array : NULL;
}

static void test_restore_checks(void) {
    lx_tree *target = lx_tree_new(), *state = lx_tree_new(), *out = NULL;
    lx_array *k = vec_f32(3, 0), *b = vec_f32(2, 0), *k2 = vec_f32(3, 10), *b2 = vec_f32(2, 10);
    CHECK(lx_tree_set_path(target, "params/Dense_0/kernel", lx_array_v(k)) == LX_OK);
    CHECK(lx_tree_set_path(target, "params/Dense_0/bias", lx_array_v(b)) == LX_OK);
    CHECK(lx_tree_set_path(state, "params/Dense_0/kernel", lx_array_v(k2)) == LX_OK);
    CHECK_FAILS(lx_ckpt_restore(target, state, NULL, &out), LX_ERR_NOT_FOUND,
                "The target dict keys and state dict keys do not match, target dict contains keys {'bias'} which are "
                "not present in state dict at path ./params/Dense_0");
    CHECK(out == NULL);
    CHECK(lx_tree_set_path(state, "params/Dense_0/bias", lx_array_v(b2)) == LX_OK);
    CHECK(lx_tree_set_path(state, "params/Dense_0/extra", lx_int_v(1)) == LX_OK);
    /* Flax ignores extra state keys; strict mode refuses them */
    CHECK(lx_ckpt_restore(target, state, NULL, &out) == LX_OK);
    CHECK(out && arr_at(out, "params/Dense_0/kernel") == k2 && !lx_tree_find(out, "params/Dense_0/extra"));
    lx_tree_release(out);
    out = NULL;
    lx_restore_opts strict = {false, true};
    CHECK_FAILS(lx_ckpt_restore(target, state, &strict, &out), LX_ERR_INVALID_ARGUMENT,
                "The state dict contains keys {'extra'} which are not present in the target dict at path ./params/Dense_0");
    /* shape and dtype mismatches name the path */
    lx_array *wrong = vec_f32(4, 0);
    CHECK(lx_tree_set_path(state, "params/Dense_0/kernel", lx_array_v(wrong)) == LX_OK);
    CHECK_FAILS(lx_ckpt_restore(target, state, NULL, &out), LX_ERR_SHAPE,
                "Shape mismatch at path ./params/Dense_0/kernel: target float32[3], state float32[4]");
    lx_restore_opts loose = {true, false};
    CHECK(lx_ckpt_restore(target, state, &loose, &out) == LX_OK);
    lx_tree_release(out);
    out = NULL;
    lx_array *ints = lx_array_new(LX_I32, 1, (int64_t[]){3});
    CHECK(lx_tree_set_path(state, "params/Dense_0/kernel", lx_array_v(ints)) == LX_OK);
    CHECK_FAILS(lx_ckpt_restore(target, state, NULL, &out), LX_ERR_DTYPE,
                "Dtype mismatch at path ./params/Dense_0/kernel: target float32[3], state int32[3]");
    CHECK(lx_tree_set_path(state, "params/Dense_0/kernel", lx_int_v(5)) == LX_OK);
    CHECK_FAILS(lx_ckpt_restore(target, state, NULL, &out), LX_ERR_TYPE,
                "Expected an array at path ./params/Dense_0/kernel, the state has 5");
    CHECK(lx_tree_set_path(state, "params/Dense_0", lx_int_v(5)) == LX_OK);
    CHECK_FAILS(lx_ckpt_restore(target, state, NULL, &out), LX_ERR_TYPE, "Expected a dict at path ./params/Dense_0");
    /* a raw float64 leaf where a float32 is expected */
    lx_raw *r;
    double d = 1;
    CHECK(lx_raw_new(LX_RAW_NDARRAY, "float64", 1, (int64_t[]){1}, &d, 8, &r) == LX_OK);
    lx_tree *t1 = lx_tree_new(), *s1 = lx_tree_new();
    lx_array *one = vec_f32(1, 0);
    CHECK(lx_tree_set(t1, "w", lx_array_v(one)) == LX_OK);
    CHECK(lx_tree_set(s1, "w", lx_raw_v(r)) == LX_OK);
    CHECK_FAILS(lx_ckpt_restore(t1, s1, NULL, &out), LX_ERR_DTYPE, "Dtype mismatch at path ./w: target float32[1], state float64");
    lx_raw_release(r);
    lx_tree_release(t1);
    lx_tree_release(s1);
    lx_release(one);
    lx_release(ints);
    lx_release(wrong);
    lx_release(k);
    lx_release(b);
    lx_release(k2);
    lx_release(b2);
    lx_tree_release(target);
    lx_tree_release(state);
}

/* Variables and boxes: saved as pure dicts, restored into their own type and metadata. */
static void test_variables_boxes(void) {
    lx_array *k = vec_f32(3, 0), *k2 = vec_f32(3, 5);
    lx_variable *v;
    CHECK(lx_variable_new_kw(&lx_Param, k, 1, (lx_kwarg[]){LX_KW_STR("mesh", "m")}, &v) == LX_OK);
    lx_box *box;
    CHECK(lx_box_partitioned(k, 1, (const char *const[]){"in"}, NULL, &box) == LX_OK);
    lx_tree *target = lx_tree_new();
    CHECK(lx_tree_set_path(target, "linear/kernel", lx_var_v(v)) == LX_OK);
    CHECK(lx_tree_set_path(target, "boxed/kernel", lx_box_v(box)) == LX_OK);
    lx_tree *pure;
    CHECK(lx_ckpt_pure_dict(target, &pure) == LX_OK);
    CHECK(arr_at(pure, "linear/kernel") == k && arr_at(pure, "boxed/kernel/value") == k);
    /* through msgpack bytes with new values */
    lx_tree *state = lx_tree_copy(pure);
    CHECK(lx_tree_set_path(state, "linear/kernel", lx_array_v(k2)) == LX_OK);
    CHECK(lx_tree_set_path(state, "boxed/kernel/value", lx_array_v(k2)) == LX_OK);
    unsigned char *bytes;
    size_t n;
    CHECK(lx_msgpack_to_bytes(&(lx_value){LX_V_TREE, {.tree = state}}, NULL, &bytes, &n) == LX_OK);
    lx_value back;
    CHECK(lx_msgpack_from_bytes(bytes, n, &back) == LX_OK);
    lx_tree *out = NULL;
    CHECK(lx_ckpt_restore(target, back.u.tree, NULL, &out) == LX_OK);
    const lx_value *rv = out ? lx_tree_find(out, "linear/kernel") : NULL;
    CHECK(rv && rv->kind == LX_V_VARIABLE && lx_variable_type(rv->u.var) == &lx_Param &&
          lx_array_equal(lx_variable_get_value(rv->u.var), k2));
    const lx_value *mesh = rv ? lx_variable_meta_get(rv->u.var, "mesh") : NULL;
    CHECK(mesh && mesh->kind == LX_V_STR && !strcmp(mesh->u.s, "m"));
    const lx_value *rb = out ? lx_tree_find(out, "boxed/kernel") : NULL;
    CHECK(rb && rb->kind == LX_V_BOX && lx_box_get_kind(rb->u.box) == lx_box_get_kind(box) &&
          lx_array_equal(lx_box_unbox(rb->u.box), k2));
    /* the original Variable is untouched */
    CHECK(lx_array_equal(lx_variable_get_value(v), k));
    lx_tree_release(out);
    lx_value_free(&back);
    free(bytes);
    lx_tree_release(state);
    lx_tree_release(pure);
    lx_tree_release(target);
    lx_box_release(box);
    lx_variable_release(v);
    lx_release(k);
    lx_release(k2);
}

/* The bridge mapping: Linen params/ToLinen_0/linear/kernel <-> NNX linear/kernel, and
 * batch_stats merged into the NNX tree and split back out by name. */
static void test_linen_nnx(void) {
    lx_array *k = vec_f32(3, 0), *bias = vec_f32(2, 0), *mean = vec_f32(2, 1);
    lx_tree *linen = lx_tree_new();
    CHECK(lx_tree_set_path(linen, "params/ToLinen_0/linear/kernel", lx_array_v(k)) == LX_OK);
    CHECK(lx_tree_set_path(linen, "params/ToLinen_0/bn/bias", lx_array_v(bias)) == LX_OK);
    CHECK(lx_tree_set_path(linen, "batch_stats/ToLinen_0/bn/mean", lx_array_v(mean)) == LX_OK);
    CHECK(lx_layout_detect(linen) == LX_LAYOUT_LINEN);
    lx_tree *nnx = NULL, *back = NULL;
    CHECK(lx_layout_convert(linen, LX_LAYOUT_AUTO, LX_LAYOUT_NNX, NULL, &nnx) == LX_OK);
    CHECK(nnx && arr_at(nnx, "linear/kernel") == k && arr_at(nnx, "bn/bias") == bias && arr_at(nnx, "bn/mean") == mean);
    CHECK(nnx && lx_tree_count_leaves(nnx) == 3);
    CHECK(lx_layout_detect(nnx) == LX_LAYOUT_NNX);
    CHECK(lx_layout_convert(nnx, LX_LAYOUT_NNX, LX_LAYOUT_LINEN, "ToLinen_0", &back) == LX_OK);
    CHECK(back && lx_tree_equal(back, linen));
    lx_tree_release(back);
    /* without a wrapper: plain collections; rng state is dropped */
    lx_array *key = lx_array_new(LX_U32, 1, (int64_t[]){2});
    CHECK(lx_tree_set_path(nnx, "rngs/dropout/key", lx_array_v(key)) == LX_OK);
    CHECK(lx_layout_convert(nnx, LX_LAYOUT_NNX, LX_LAYOUT_LINEN, NULL, &back) == LX_OK);
    CHECK(arr_at(back, "params/linear/kernel") == k && arr_at(back, "batch_stats/bn/mean") == mean);
    CHECK(lx_tree_count_leaves(back) == 3);
    lx_tree_release(back);
    /* a path in two collections is an error */
    CHECK(lx_tree_set_path(linen, "batch_stats/ToLinen_0/linear/kernel", lx_array_v(k)) == LX_OK);
    lx_tree *bad = NULL;
    CHECK_FAILS(lx_layout_convert(linen, LX_LAYOUT_LINEN, LX_LAYOUT_NNX, NULL, &bad), LX_ERR_EXISTS,
                "linear/kernel is in two collections (the second is batch_stats)");
    lx_release(key);
    lx_tree_release(nnx);
    lx_tree_release(linen);
    lx_release(k);
    lx_release(bias);
    lx_release(mean);
}

/* MaxText (spec/checkpoints.md §C.1, PR #3929): Linen {step: int32, params: {params: ..},
 * opt_state: chain with None} <-> NNX {model, optimizer: {step: uint32, opt_state: int-keyed}}. */
static void test_maxtext(void) {
    lx_array *w0 = vec_f32(2, 0), *w1 = vec_f32(2, 2), *m0 = vec_f32(2, 10), *m1 = vec_f32(2, 12);
    lx_array *n0 = vec_f32(2, 20), *n1 = vec_f32(2, 22), *emb = vec_f32(3, 7);
    lx_array *count = lx_array_from_data(LX_I32, 0, NULL, (int32_t[]){7});
    lx_array *step = lx_array_from_data(LX_I32, 0, NULL, (int32_t[]){42});
    lx_tree *lin = lx_tree_new(), *none_holder = NULL;
    (void)none_holder;
    CHECK(lx_tree_set(lin, "step", lx_array_v(step)) == LX_OK);
    CHECK(lx_tree_set_path(lin, "params/params/decoder/layers_0/w", lx_array_v(w0)) == LX_OK);
    CHECK(lx_tree_set_path(lin, "params/params/decoder/layers_1/w", lx_array_v(w1)) == LX_OK);
    CHECK(lx_tree_set_path(lin, "params/params/token_embedder/embedding", lx_array_v(emb)) == LX_OK);
    CHECK(lx_tree_set_path(lin, "opt_state/0/count", lx_array_v(count)) == LX_OK);
    CHECK(lx_tree_set_path(lin, "opt_state/0/mu/params/decoder/layers_0/w", lx_array_v(m0)) == LX_OK);
    CHECK(lx_tree_set_path(lin, "opt_state/0/mu/params/decoder/layers_1/w", lx_array_v(m1)) == LX_OK);
    CHECK(lx_tree_set_path(lin, "opt_state/0/nu/params/decoder/layers_0/w", lx_array_v(n0)) == LX_OK);
    CHECK(lx_tree_set_path(lin, "opt_state/0/nu/params/decoder/layers_1/w", lx_array_v(n1)) == LX_OK);
    CHECK(lx_tree_set_path(lin, "opt_state/1", lx_none()) == LX_OK);
    CHECK(lx_layout_detect(lin) == LX_LAYOUT_MAXTEXT_LINEN);
    lx_tree *nnx = NULL, *back = NULL;
    CHECK(lx_layout_convert(lin, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_NNX, NULL, &nnx) == LX_OK);
    CHECK(nnx && lx_layout_detect(nnx) == LX_LAYOUT_MAXTEXT_NNX);
    CHECK(arr_at(nnx, "model/decoder/layers/0/w") == w0 && arr_at(nnx, "model/decoder/layers/1/w") == w1);
    CHECK(arr_at(nnx, "model/token_embedder/embedding") == emb);
    const lx_array *s = arr_at(nnx, "optimizer/step");
    CHECK(s && s->dtype == LX_U32 && s->ndim == 0 && lx_u32(s)[0] == 42);
    CHECK(arr_at(nnx, "optimizer/opt_state/0/count") == count);
    CHECK(arr_at(nnx, "optimizer/opt_state/0/mu/decoder/layers/1/w") == m1);
    CHECK(arr_at(nnx, "optimizer/opt_state/0/nu/decoder/layers/0/w") == n0);
    const lx_value *e = lx_tree_find(nnx, "optimizer/opt_state/1");
    CHECK(e && e->kind == LX_V_TREE && lx_tree_len(e->u.tree) == 0);
    CHECK(lx_layout_convert(nnx, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_LINEN, NULL, &back) == LX_OK);
    CHECK(back && lx_tree_equal(back, lin));
    /* NNX rng state is dropped on the way to Linen; a bare int step is accepted */
    lx_array *key = lx_array_new(LX_U32, 1, (int64_t[]){2});
    CHECK(lx_tree_set_path(nnx, "model/rngs/dropout/key", lx_array_v(key)) == LX_OK);
    CHECK(lx_tree_set_path(nnx, "optimizer/step", lx_int_v(42)) == LX_OK);
    lx_tree_release(back);
    CHECK(lx_layout_convert(nnx, LX_LAYOUT_MAXTEXT_NNX, LX_LAYOUT_MAXTEXT_LINEN, NULL, &back) == LX_OK);
    CHECK(back && lx_tree_equal(back, lin));
    lx_tree_release(back);
    /* the model alone */
    CHECK(lx_layout_convert(lin, LX_LAYOUT_MAXTEXT_LINEN, LX_LAYOUT_LINEN, NULL, &back) == LX_OK);
    CHECK(back && arr_at(back, "params/decoder/layers_0/w") == w0 && lx_tree_len(back) == 1);
    lx_tree_release(back);
    lx_tree *bad = NULL;
    CHECK(lx_tree_set_path(nnx, "optimizer/step", lx_float_v(1.5)) == LX_OK);
    CHECK_FAILS(lx_layout_convert(nnx, LX_LAYOUT_MAXTEXT_NNX, LX_LAYOUT_MAXTEXT_LINEN, NULL, &bad), LX_ERR_TYPE,
                "step must be an integer");
    lx_layout l;
    CHECK_FAILS(lx_layout_from_name("orbax", &l), LX_ERR_INVALID_ARGUMENT, "unknown layout 'orbax'");
    CHECK(lx_layout_from_name("maxtext-nnx", &l) == LX_OK && l == LX_LAYOUT_MAXTEXT_NNX);
    lx_release(key);
    lx_tree_release(nnx);
    lx_tree_release(lin);
    lx_release(w0);
    lx_release(w1);
    lx_release(m0);
    lx_release(m1);
    lx_release(n0);
    lx_release(n1);
    lx_release(emb);
    lx_release(count);
    lx_release(step);
}

int main(void) {
    RUN(test_restore_checks);
    RUN(test_variables_boxes);
    RUN(test_linen_nnx);
    RUN(test_maxtext);
    CHECK_EQ_INT(lx_array_live_count(), 0);
    return lx_test_finish();
}
