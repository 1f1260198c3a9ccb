/* Bridge conversions (spec/flax-bridge.md §1.2): Linen leaves <-> NNX Variables, whole trees,
 * metadata boxes round-trips, and every error with its message. */
#include "lx_test.h"

#include "linnx/bridge.h"

static lx_array *vec(int n, float start) {
    int64_t shape[] = {n};
    lx_array *a = lx_array_new(LX_F32, 1, shape);
    for (int i = 0; i < n; i++) lx_f32(a)[i] = start + (float)i;
    return a;
}
/* r x c of start, start + 1, ... (a parameter that two sharding names can describe). */
static lx_array *mat(int r, int c, float start) {
    lx_array *a = lx_array_new(LX_F32, 2, (int64_t[]){r, c});
    for (int i = 0; i < r * c; i++) lx_f32(a)[i] = start + (float)i;
    return a;
}

static void test_array_leaf_roundtrip(void) {
    lx_array *a = vec(3, 1);
    lx_value leaf = lx_array_v(a);
    lx_variable *v = NULL;
    CHECK_EQ_INT(bridge_to_nnx_var("params", &leaf, &v), LX_OK);
    CHECK(lx_variable_type(v) == &lx_Param);
    CHECK(lx_variable_get_value(v) == a); /* one store: the same array, not a copy */
    CHECK(bridge_is_vanilla_variable(v));
    lx_value back;
    CHECK_EQ_INT(bridge_to_linen_var(v, &back), LX_OK);
    CHECK(back.kind == LX_V_ARRAY && back.u.array == a);
    lx_value_free(&back);
    lx_variable_release(v);

    leaf = lx_array_v(a);
    CHECK_EQ_INT(bridge_to_nnx_var("batch_stats", &leaf, &v), LX_OK);
    CHECK(lx_variable_type(v) == &lx_BatchStat);
    lx_variable_release(v);
    lx_release(a);
}

static void test_unknown_collection_registers(void) {
    lx_variable_registry_reset();
    lx_array *a = vec(1, 0);
    lx_value leaf = lx_array_v(a);
    lx_variable *v = NULL;
    CHECK_EQ_INT(bridge_to_nnx_var("counter", &leaf, &v), LX_OK);
    CHECK_STR(lx_variable_type(v)->name, "counter");
    const lx_vartype *t = NULL;
    CHECK_EQ_INT(lx_variable_type_from_name("counter", NULL, false, &t), LX_OK);
    CHECK(t == lx_variable_type(v));
    lx_variable_release(v);
    lx_release(a);
    lx_variable_registry_reset();
}

static void test_partitioned_roundtrip(void) {
    lx_array *a = mat(2, 2, 0);
    const char *names[] = {"in", NULL};
    lx_box *box = NULL;
    CHECK_EQ_INT(lx_box_partitioned(a, 2, names, "mesh0", &box), LX_OK);
    lx_value leaf = lx_box_v(box);
    lx_variable *v = NULL;
    CHECK_EQ_INT(bridge_to_nnx_var("params", &leaf, &v), LX_OK);
    CHECK(lx_variable_get_value(v) == a);
    const lx_value *os = lx_variable_meta_get(v, "out_sharding");
    CHECK(os && os->kind == LX_V_STRS && os->u.strs.n == 2 && strcmp(os->u.strs.v[0], "in") == 0 &&
          os->u.strs.v[1] == NULL);
    const lx_value *mesh = lx_variable_meta_get(v, "mesh");
    CHECK(mesh && mesh->kind == LX_V_STR && strcmp(mesh->u.s, "mesh0") == 0);
    const lx_value *mt = lx_variable_meta_get(v, "linen_meta_type");
    CHECK(mt && mt->kind == LX_V_INT && mt->u.i == LX_BOX_PARTITIONED);
    CHECK(!bridge_is_vanilla_variable(v));
    lx_value back;
    CHECK_EQ_INT(bridge_to_linen_var(v, &back), LX_OK);
    CHECK(back.kind == LX_V_BOX && lx_box_get_kind(back.u.box) == LX_BOX_PARTITIONED);
    CHECK(lx_box_equal(back.u.box, box));
    CHECK(lx_box_unbox(back.u.box) == a);
    lx_value_free(&back);
    lx_variable_release(v);
    lx_box_release(box);
    lx_release(a);
}

static void test_logically_partitioned_roundtrip(void) {
    lx_array *a = vec(2, 0);
    const char *names[] = {"out-alias"};
    const char *rules[] = {"out-alias", "out"};
    lx_box *box = NULL;
    CHECK_EQ_INT(lx_box_logically_partitioned(a, 1, names, NULL, 2, rules, &box), LX_OK);
    lx_value leaf = lx_box_v(box);
    lx_variable *v = NULL;
    CHECK_EQ_INT(bridge_to_nnx_var("params", &leaf, &v), LX_OK);
    const lx_value *sr = lx_variable_meta_get(v, "sharding_rules");
    CHECK(sr && sr->kind == LX_V_STRS && sr->u.strs.n == 2 && strcmp(sr->u.strs.v[1], "out") == 0);
    lx_value back;
    CHECK_EQ_INT(bridge_to_linen_var(v, &back), LX_OK);
    CHECK(back.kind == LX_V_BOX && lx_box_equal(back.u.box, box));
    lx_value_free(&back);

    /* MaxText's metadata_fn makes LogicallyPartitioned from out_sharding. */
    lx_value lp;
    CHECK_EQ_INT(bridge_metadata_to_logically_partitioned(v, NULL, &lp), LX_OK);
    CHECK(lp.kind == LX_V_BOX && lx_box_get_kind(lp.u.box) == LX_BOX_LOGICALLY_PARTITIONED);
    CHECK(lx_box_rules(lp.u.box) && lx_box_rules(lp.u.box)->u.strs.n == 2);
    lx_value_free(&lp);
    lx_variable_release(v);
    lx_box_release(box);

    lx_variable *plain = NULL;
    lx_variable_new(&lx_Param, a, &plain);
    CHECK_EQ_INT(bridge_metadata_to_logically_partitioned(plain, NULL, &lp), LX_OK);
    CHECK(lp.kind == LX_V_ARRAY && lp.u.array == a);
    lx_value_free(&lp);
    lx_variable_release(plain);
    lx_release(a);
}

static void test_nnx_meta(void) {
    lx_array *a = mat(1, 2, 5);
    const char *names[] = {"in", "out"};
    lx_variable *v = NULL;
    lx_kwarg md[] = {LX_KW("out_sharding", lx_strs_v(2, names))};
    CHECK_EQ_INT(lx_variable_new_kw(&lx_Param, a, 1, md, &v), LX_OK);
    lx_value leaf;
    CHECK_EQ_INT(bridge_to_linen_var(v, &leaf), LX_OK);
    CHECK(leaf.kind == LX_V_BOX && lx_box_get_kind(leaf.u.box) == LX_BOX_NNX_META);
    CHECK(lx_box_var_type(leaf.u.box) == &lx_Param);
    lx_variable *v2 = NULL;
    CHECK_EQ_INT(bridge_to_nnx_var("params", &leaf, &v2), LX_OK);
    CHECK(lx_variable_equal(v, v2));
    CHECK(lx_variable_get_value(v2) == a);
    lx_variable_release(v2);
    CHECK_FAILS(bridge_to_nnx_var("batch_stats", &leaf, &v2), LX_ERR_TYPE,
                "Type stored in NNXMeta <class 'Param'> != type inferred from collection name <class 'BatchStat'>");
    lx_value_free(&leaf);
    lx_variable_release(v);

    lx_value bad = lx_int_v(3);
    CHECK_FAILS(bridge_to_nnx_var("params", &bad, &v2), LX_ERR_TYPE,
                "to_nnx_var: collection 'params' holds 3, expected an array or a box");
    lx_release(a);
}

static void test_trees(void) {
    lx_array *k = vec(4, 0), *b = vec(2, 0), *m = vec(2, 1);
    lx_tree *vars = lx_tree_new();
    lx_tree_set_path(vars, "params/Dense_0/kernel", lx_array_v(k));
    lx_tree_set_path(vars, "params/Dense_0/bias", lx_array_v(b));
    lx_tree_set_path(vars, "batch_stats/mean", lx_array_v(m));
    lx_tree *attrs = NULL;
    CHECK_EQ_INT(bridge_linen_vars_to_nnx_attrs(vars, &attrs), LX_OK);
    const lx_value *kv = lx_tree_find(attrs, "Dense_0/kernel");
    CHECK(kv && kv->kind == LX_V_VARIABLE && lx_variable_type(kv->u.var) == &lx_Param &&
          lx_variable_get_value(kv->u.var) == k);
    const lx_value *mv = lx_tree_find(attrs, "mean");
    CHECK(mv && mv->kind == LX_V_VARIABLE && lx_variable_type(mv->u.var) == &lx_BatchStat);
    CHECK(lx_tree_find(attrs, "params") == NULL); /* collection level dropped */

    lx_tree *again = NULL;
    CHECK_EQ_INT(bridge_nnx_attrs_to_linen_vars(attrs, &again), LX_OK);
    CHECK(lx_tree_equal(vars, again));
    CHECK_STR(lx_tree_key(again, 0), "params");
    CHECK_STR(lx_tree_key(again, 1), "batch_stats");
    lx_tree_release(again);

    /* A non-Variable value among the attributes is an error naming it. */
    lx_tree_set(attrs, "note", lx_int_v(7));
    CHECK_FAILS(bridge_nnx_attrs_to_linen_vars(attrs, &again), LX_ERR_TYPE,
                "Cannot infer collection name from value: 7");
    lx_tree_delete(attrs, "note");
    /* An unregistered type is an error too (no auto-registration in this direction). */
    lx_variable *lora = NULL;
    lx_variable_new(&lx_LoRAParam, b, &lora);
    lx_tree_set(attrs, "lora", lx_var_v(lora));
    lx_variable_release(lora);
    CHECK_FAILS(bridge_nnx_attrs_to_linen_vars(attrs, &again), LX_ERR_NOT_FOUND,
                "Type <class 'LoRAParam'> is not registered in the registry");
    lx_tree_release(attrs);

    /* The same path in two collections. */
    lx_tree *dup = lx_tree_new();
    lx_tree_set_path(dup, "params/w", lx_array_v(b));
    lx_tree_set_path(dup, "batch_stats/w", lx_array_v(m));
    CHECK_FAILS(bridge_linen_vars_to_nnx_attrs(dup, &attrs), LX_ERR_EXISTS,
                "Found duplicate variable path ('w',) with variables Param(float32[2]) and "
                "BatchStat(float32[2]). This is not allowed in NNX.");
    lx_tree_release(dup);
    dup = lx_tree_new();
    lx_tree_set_path(dup, "params/a/w", lx_array_v(b));
    lx_tree_set_path(dup, "cache/a/w", lx_array_v(m));
    CHECK_FAILS(bridge_linen_vars_to_nnx_attrs(dup, &attrs), LX_ERR_EXISTS,
                "Found duplicate variable path ('a', 'w') with");
    lx_tree_release(dup);
    lx_tree *notmap = lx_tree_new();
    lx_tree_set(notmap, "params", lx_array_v(b));
    CHECK_FAILS(bridge_linen_vars_to_nnx_attrs(notmap, &attrs), LX_ERR_TYPE,
                "collection 'params' is not a mapping");
    lx_tree_release(notmap);
    lx_tree_release(vars);
    lx_release(k);
    lx_release(b);
    lx_release(m);
}

static void test_col_name(void) {
    char buf[32];
    CHECK_EQ_INT(bridge_get_col_name("params/Dense_0/kernel", buf, sizeof buf), LX_OK);
    CHECK_STR(buf, "params");
    CHECK_EQ_INT(bridge_get_col_name("cache", buf, sizeof buf), LX_OK);
    CHECK_STR(buf, "cache");
    CHECK_FAILS(bridge_get_col_name("", buf, sizeof buf), LX_ERR_INVALID_ARGUMENT, "empty path");
}

int main(void) {
    RUN(test_array_leaf_roundtrip);
    RUN(test_unknown_collection_registers);
    RUN(test_partitioned_roundtrip);
    RUN(test_logically_partitioned_roundtrip);
    RUN(test_nnx_meta);
    RUN(test_trees);
    RUN(test_col_name);
    return lx_test_finish();
}
