/* Metadata boxes: Partitioned, LogicallyPartitioned, NNXMeta; axes; NNX metadata; meta.unbox. */
#include <limits.h>

#include "lx_test.h"

#include "linnx/box.h"
#include "linnx/tree.h"
#include "linnx/variable.h"

static const char *name_at(const lx_box *b, int i) { return lx_box_names(b)->u.strs.v[i]; }
static int nnames(const lx_box *b) { return lx_box_names(b)->u.strs.n; }

static void test_partitioned(void) {
    int64_t shape[] = {4, 2};
    lx_array *a = lx_array_new(LX_F32, 2, shape);
    const char *names[] = {"data", NULL};
    lx_box *b = NULL;
    CHECK_EQ_INT(lx_box_partitioned(a, 2, names, NULL, &b), LX_OK);
    CHECK_EQ_INT(lx_box_get_kind(b), LX_BOX_PARTITIONED);
    CHECK(lx_box_unbox(b) == a);
    CHECK_EQ_INT(a->refcount, 2);
    CHECK_EQ_INT(nnames(b), 2);
    CHECK_STR(name_at(b, 0), "data");
    CHECK(name_at(b, 1) == NULL);
    CHECK(lx_box_mesh(b) == NULL && lx_box_rules(b) == NULL && lx_box_var_type(b) == NULL && !lx_box_metadata(b));
    char buf[512];
    CHECK_STR(lx_box_str(b, buf, sizeof buf), "Partitioned(value=float32[4,2], names=('data', None), mesh=None)");

    /* add_axis(0, 'layers'): ('data', None) -> ('layers', 'data', None); the box is unchanged. */
    lx_box *s = NULL;
    CHECK_EQ_INT(lx_box_add_axis(b, 0, "layers", &s), LX_OK);
    CHECK_EQ_INT(nnames(s), 3);
    CHECK_STR(name_at(s, 0), "layers");
    CHECK_STR(name_at(s, 1), "data");
    CHECK(name_at(s, 2) == NULL);
    CHECK(lx_box_unbox(s) == a);
    CHECK_EQ_INT(nnames(b), 2);
    CHECK_STR(lx_box_str(s, buf, sizeof buf),
              "Partitioned(value=float32[4,2], names=('layers', 'data', None), mesh=None)");
    /* remove_axis undoes it. */
    lx_box *r = NULL;
    CHECK_EQ_INT(lx_box_remove_axis(s, 0, "layers", &r), LX_OK);
    CHECK(lx_box_equal(r, b) && r != b);
    lx_box_release(r);
    /* ... and a wrong name, a bad index or no name at all are errors. */
    r = (lx_box *)1;
    CHECK_FAILS(lx_box_remove_axis(s, 0, "data", &r), LX_ERR_INVALID_ARGUMENT,
                "Partitioned.remove_axis: axis 0 is named 'layers', not 'data' (names ('layers', 'data', None))");
    CHECK(r == NULL);
    CHECK_FAILS(lx_box_remove_axis(s, 2, "x", &r), LX_ERR_INVALID_ARGUMENT,
                "Partitioned.remove_axis: axis 2 is named None, not 'x'");
    CHECK_FAILS(lx_box_remove_axis(s, 3, "x", &r), LX_ERR_INVALID_ARGUMENT,
                "Partitioned.remove_axis: axis 3 is out of range for names ('layers', 'data', None)");
    CHECK_FAILS(lx_box_remove_axis(s, -4, "x", &r), LX_ERR_INVALID_ARGUMENT, "axis -4 is out of range");
    CHECK_FAILS(lx_box_add_axis(b, 0, NULL, &r), LX_ERR_INVALID_ARGUMENT,
                "Trying to transform a Partitioned variable but \"partition_name\" is not specified in "
                "metadata_params: Partitioned(value=float32[4,2], names=('data', None), mesh=None) "
                "(https://flax.readthedocs.io/en/latest/api_reference/flax.errors.html"
                "#flax.errors.PartitioningUnspecifiedError)");
    CHECK_FAILS(lx_box_remove_axis(s, 0, NULL, &r), LX_ERR_INVALID_ARGUMENT, "PartitioningUnspecifiedError");
    /* Negative indices count from the end, as with Python lists. */
    CHECK_EQ_INT(lx_box_remove_axis(s, -2, "data", &r), LX_OK);
    CHECK_EQ_INT(nnames(r), 2);
    CHECK_STR(name_at(r, 0), "layers");
    lx_box_release(r);
    lx_box_release(s);

    CHECK_EQ_INT(lx_box_add_axis(b, -1, "x", &s), LX_OK); /* insert before the last */
    CHECK_STR(lx_box_str(s, buf, sizeof buf), "Partitioned(value=float32[4,2], names=('data', 'x', None), mesh=None)");
    lx_box_release(s);
    CHECK_EQ_INT(lx_box_add_axis(b, -9, "x", &s), LX_OK); /* clamps to the front */
    CHECK_STR(name_at(s, 0), "x");
    lx_box_release(s);
    CHECK_EQ_INT(lx_box_add_axis(b, 4, "x", &s), LX_OK); /* pads with None, as Flax does */
    CHECK_STR(lx_box_str(s, buf, sizeof buf),
              "Partitioned(value=float32[4,2], names=('data', None, None, None, 'x'), mesh=None)");
    lx_box_release(s);
    CHECK_EQ_INT(lx_box_add_axis(b, 2, "x", &s), LX_OK); /* appends */
    CHECK_EQ_INT(nnames(s), 3);
    CHECK_STR(name_at(s, 2), "x");
    lx_box_release(s);

    /* replace_boxed: same metadata, new value. */
    lx_array *a2 = lx_array_new(LX_F32, 2, shape);
    CHECK_EQ_INT(lx_box_replace_boxed(b, a2, &s), LX_OK);
    CHECK(lx_box_unbox(s) == a2 && lx_box_unbox(b) == a);
    CHECK_STR(name_at(s, 0), "data");
    CHECK(lx_box_equal(s, b)); /* values equal by content (both zeros) */
    lx_f32(a2)[0] = 1;
    CHECK(!lx_box_equal(s, b));
    CHECK_FAILS(lx_box_replace_boxed(b, NULL, &r), LX_ERR_FAILED_INPUT, "Partitioned: value is NULL");
    lx_box_release(s);

    /* With a mesh. */
    CHECK_EQ_INT(lx_box_partitioned(a, 2, names, "mesh0", &s), LX_OK);
    CHECK_STR(lx_box_mesh(s), "mesh0");
    CHECK(!lx_box_equal(s, b));
    CHECK_STR(lx_box_str(s, buf, sizeof buf), "Partitioned(value=float32[4,2], names=('data', None), mesh='mesh0')");
    lx_box_release(s);

    CHECK_FAILS(lx_box_partitioned(NULL, 2, names, NULL, &r), LX_ERR_FAILED_INPUT, "Partitioned: value is NULL");
    CHECK_FAILS(lx_box_partitioned(a, 2, NULL, NULL, &r), LX_ERR_INVALID_ARGUMENT, "Partitioned: bad names list");
    CHECK_FAILS(lx_box_add_axis(NULL, 0, "x", &r), LX_ERR_FAILED_INPUT, "add_axis: box is NULL");
    /* A huge index once overflowed `index + 1` (and asked for gigabytes of None padding): names
     * past LX_MAX_DIMS describe no array, so it is refused; index LX_MAX_DIMS - 1 still pads. */
    r = NULL;
    CHECK_FAILS(lx_box_add_axis(b, INT_MAX, "x", &r), LX_ERR_INVALID_ARGUMENT,
                "Partitioned.add_axis: axis 2147483647 would give 2147483648 axis names (names ('data', None)); "
                "arrays have at most 8 axes");
    CHECK(r == NULL);
    CHECK_FAILS(lx_box_add_axis(b, LX_MAX_DIMS, "x", &r), LX_ERR_INVALID_ARGUMENT, "would give 9 axis names");
    CHECK_EQ_INT(lx_box_add_axis(b, LX_MAX_DIMS - 1, "x", &s), LX_OK);
    CHECK_EQ_INT(nnames(s), LX_MAX_DIMS);
    CHECK_STR(name_at(s, LX_MAX_DIMS - 1), "x");
    CHECK_FAILS(lx_box_add_axis(s, 0, "y", &r), LX_ERR_INVALID_ARGUMENT, "would give 9 axis names");
    lx_box_release(s);

    lx_box_release(b);
    CHECK_EQ_INT(a->refcount, 1);
    lx_release(a);
    lx_release(a2);
}

static void test_nnx_metadata_round_trip(void) {
    int64_t shape[] = {8, 4};
    lx_array *a = lx_array_new(LX_F32, 2, shape);
    const char *names[] = {"embed", "mlp"};
    const char *rules[] = {"embed", "data", "mlp", NULL};

    /* Partitioned -> {out_sharding, mesh} -> Partitioned. */
    lx_box *p = NULL, *q = NULL;
    lx_box_partitioned(a, 2, names, "m", &p);
    lx_tree *md = NULL;
    CHECK_EQ_INT(lx_box_to_nnx_metadata(p, &md), LX_OK);
    CHECK_EQ_INT(lx_tree_len(md), 2);
    CHECK(lx_value_equal(lx_tree_get(md, "out_sharding"), &(lx_value){LX_V_STRS, {.strs = {2, names}}}));
    CHECK_STR(lx_tree_get(md, "mesh")->u.s, "m");
    /* Other keys (what a Variable also carries) are ignored on the way back. */
    lx_tree_set(md, "linen_meta_type", lx_int_v(LX_BOX_PARTITIONED));
    lx_tree_set(md, "hijax", lx_bool_v(false));
    CHECK_EQ_INT(lx_box_from_nnx_metadata(LX_BOX_PARTITIONED, a, md, &q), LX_OK);
    CHECK(lx_box_equal(p, q));
    lx_box_release(q);
    /* Through a Variable, as the bridge does it. */
    lx_variable *v = NULL;
    CHECK_EQ_INT(lx_variable_new_md(&lx_Param, lx_box_unbox(p), md, &v), LX_OK);
    CHECK(lx_variable_get_value(v) == a);
    CHECK_EQ_INT(lx_box_from_nnx_metadata(LX_BOX_PARTITIONED, lx_variable_get_value(v), lx_variable_metadata(v), &q),
                 LX_OK);
    CHECK(lx_box_equal(p, q) && lx_box_unbox(q) == a);
    lx_box_release(q);
    lx_variable_release(v);
    lx_tree_release(md);

    /* LogicallyPartitioned: also sharding_rules, and to_nnx_metadata leaves the box alone. */
    lx_box *l = NULL;
    CHECK_EQ_INT(lx_box_logically_partitioned(a, 2, names, NULL, 4, rules, &l), LX_OK);
    char buf[512];
    CHECK_STR(lx_box_str(l, buf, sizeof buf),
              "LogicallyPartitioned(value=float32[8,4], names=('embed', 'mlp'), mesh=None, "
              "rules=(('embed', 'data'), ('mlp', None)))");
    CHECK_EQ_INT(lx_box_to_nnx_metadata(l, &md), LX_OK);
    CHECK_EQ_INT(lx_tree_len(md), 3);
    CHECK(lx_tree_get(md, "mesh")->kind == LX_V_NONE);
    CHECK_EQ_INT(lx_tree_get(md, "sharding_rules")->u.strs.n, 4);
    CHECK_STR(lx_box_str(l, buf, sizeof buf),
              "LogicallyPartitioned(value=float32[8,4], names=('embed', 'mlp'), mesh=None, "
              "rules=(('embed', 'data'), ('mlp', None)))");
    CHECK_EQ_INT(lx_box_from_nnx_metadata(LX_BOX_LOGICALLY_PARTITIONED, a, md, &q), LX_OK);
    CHECK(lx_box_equal(l, q) && !lx_box_equal(l, p));
    lx_box_release(q);
    /* The logical box's names move with add_axis too; the rules stay. */
    CHECK_EQ_INT(lx_box_add_axis(l, 0, "layers", &q), LX_OK);
    CHECK_EQ_INT(nnames(q), 3);
    CHECK_STR(name_at(q, 0), "layers");
    CHECK(lx_value_equal(lx_box_rules(q), lx_box_rules(l)));
    lx_box_release(q);

    /* Missing sharding_rules: a clear error (Flax: a bare KeyError). */
    lx_tree_delete(md, "sharding_rules");
    q = (lx_box *)1;
    CHECK_FAILS(lx_box_from_nnx_metadata(LX_BOX_LOGICALLY_PARTITIONED, a, md, &q), LX_ERR_NOT_FOUND,
                "LogicallyPartitioned.from_nnx_metadata: the metadata has no 'sharding_rules'");
    CHECK(q == NULL);
    /* rules=None is a value, not an absence. */
    lx_tree_set(md, "sharding_rules", lx_none());
    CHECK_EQ_INT(lx_box_from_nnx_metadata(LX_BOX_LOGICALLY_PARTITIONED, a, md, &q), LX_OK);
    CHECK(lx_box_rules(q)->kind == LX_V_NONE);
    CHECK_STR(lx_box_str(q, buf, sizeof buf),
              "LogicallyPartitioned(value=float32[8,4], names=('embed', 'mlp'), mesh=None, rules=None)");
    lx_box_release(q);
    lx_tree_set(md, "sharding_rules", lx_strs_v(3, rules));
    CHECK_FAILS(lx_box_from_nnx_metadata(LX_BOX_LOGICALLY_PARTITIONED, a, md, &q), LX_ERR_INVALID_ARGUMENT,
                "LogicallyPartitioned: rules must be (logical, mesh) pairs, got 3 strings");
    lx_tree_delete(md, "out_sharding");
    CHECK_FAILS(lx_box_from_nnx_metadata(LX_BOX_PARTITIONED, a, md, &q), LX_ERR_NOT_FOUND,
                "Partitioned.from_nnx_metadata: the metadata has no 'out_sharding'");
    CHECK_FAILS(lx_box_from_nnx_metadata(LX_BOX_PARTITIONED, a, NULL, &q), LX_ERR_NOT_FOUND, "no 'out_sharding'");
    lx_tree_set(md, "out_sharding", lx_int_v(1));
    CHECK_FAILS(lx_box_from_nnx_metadata(LX_BOX_PARTITIONED, a, md, &q), LX_ERR_TYPE,
                "Partitioned: names must be a tuple of str, got int");
    lx_tree_set(md, "out_sharding", lx_strs_v(2, names));
    lx_tree_set(md, "mesh", lx_int_v(1));
    CHECK_FAILS(lx_box_from_nnx_metadata(LX_BOX_PARTITIONED, a, md, &q), LX_ERR_TYPE,
                "Partitioned.from_nnx_metadata: 'mesh' must be a mesh name (str or None), got int");
    CHECK_FAILS(lx_box_from_nnx_metadata(LX_BOX_NNX_META, a, md, &q), LX_ERR_INVALID_ARGUMENT,
                "NNXMeta.from_nnx_metadata: an NNXMeta needs its Variable type");
    CHECK_FAILS(lx_box_from_nnx_metadata((lx_box_kind)7, a, md, &q), LX_ERR_INVALID_ARGUMENT, "invalid box kind 7");
    const char *odd[] = {"embed"};
    CHECK_FAILS(lx_box_logically_partitioned(a, 2, names, NULL, 1, odd, &q), LX_ERR_INVALID_ARGUMENT,
                "rules must be (logical, mesh) pairs, got 1 strings");
    const char *nolog[] = {NULL, "data"};
    CHECK_FAILS(lx_box_logically_partitioned(a, 2, names, NULL, 2, nolog, &q), LX_ERR_INVALID_ARGUMENT,
                "rule 0 has no logical name");
    lx_tree_release(md);
    lx_box_release(l);
    lx_box_release(p);
    CHECK_EQ_INT(a->refcount, 1);
    lx_release(a);
}

static void test_nnx_meta(void) {
    int64_t shape[] = {32, 64};
    lx_array *a = lx_array_abstract(LX_F32, 2, shape);
    const char *names[] = {"in", "out"};
    lx_tree *md = lx_tree_new();
    lx_tree_set(md, "out_sharding", lx_strs_v(2, names));
    lx_tree_set(md, "mesh", lx_none());
    lx_tree_set(md, "eager_sharding", lx_bool_v(true));
    lx_box *b = NULL;
    CHECK_EQ_INT(lx_box_nnx_meta(&lx_Param, a, md, &b), LX_OK);
    CHECK_EQ_INT(lx_box_get_kind(b), LX_BOX_NNX_META);
    CHECK(lx_box_var_type(b) == &lx_Param && lx_box_unbox(b) == a);
    CHECK(lx_tree_equal(lx_box_metadata(b), md) && lx_box_metadata(b) != md);
    CHECK_STR(name_at(b, 1), "out");
    CHECK(lx_box_mesh(b) == NULL && lx_box_rules(b) == NULL);
    char buf[512];
    CHECK_STR(lx_box_str(b, buf, sizeof buf),
              "NNXMeta(var_type=Param, value=float32[32,64], metadata={'out_sharding': ('in', 'out'), "
              "'mesh': None, 'eager_sharding': True})");

    /* add_axis updates out_sharding (Flax's NNXMeta returns itself unchanged: #5589). */
    lx_box *s = NULL, *r = NULL;
    CHECK_EQ_INT(lx_box_add_axis(b, 0, "layers", &s), LX_OK);
    const lx_value *os = lx_tree_get(lx_box_metadata(s), "out_sharding");
    CHECK(os && os->u.strs.n == 3);
    CHECK_STR(os->u.strs.v[0], "layers");
    CHECK_STR(os->u.strs.v[2], "out");
    CHECK(lx_box_var_type(s) == &lx_Param && lx_box_unbox(s) == a);
    CHECK_EQ_INT(lx_tree_len(lx_box_metadata(s)), 3); /* the other entries stay, in place */
    CHECK_STR(lx_tree_key(lx_box_metadata(s), 0), "out_sharding");
    CHECK_EQ_INT(nnames(b), 2); /* the original is untouched */
    CHECK_FAILS(lx_box_remove_axis(s, 1, "layers", &r), LX_ERR_INVALID_ARGUMENT,
                "NNXMeta.remove_axis: axis 1 is named 'in', not 'layers'");
    CHECK_EQ_INT(lx_box_remove_axis(s, 0, "layers", &r), LX_OK);
    CHECK(lx_box_equal(r, b));
    lx_box_release(r);
    lx_box_release(s);
    CHECK_FAILS(lx_box_add_axis(b, 0, NULL, &s), LX_ERR_INVALID_ARGUMENT, "\"partition_name\" is not specified");

    /* replace_boxed keeps type and metadata. */
    lx_array *c = lx_array_new(LX_F32, 2, shape);
    CHECK_EQ_INT(lx_box_replace_boxed(b, c, &s), LX_OK);
    CHECK(lx_box_unbox(s) == c && lx_box_var_type(s) == &lx_Param);
    CHECK(lx_tree_equal(lx_box_metadata(s), lx_box_metadata(b)));
    CHECK(!lx_box_equal(s, b)); /* abstract vs concrete value */
    lx_box_release(s);

    /* to_nnx_metadata: a copy of the metadata. */
    lx_tree *m2 = NULL;
    CHECK_EQ_INT(lx_box_to_nnx_metadata(b, &m2), LX_OK);
    CHECK(lx_tree_equal(m2, md) && m2 != lx_box_metadata(b));
    lx_tree_release(m2);

    /* Without out_sharding there are no names to move: add/remove give an equal box. */
    lx_tree_delete(md, "out_sharding");
    lx_box *plain = NULL;
    CHECK_EQ_INT(lx_box_nnx_meta(&lx_BatchStat, a, md, &plain), LX_OK);
    CHECK(lx_box_names(plain) == NULL);
    CHECK_EQ_INT(lx_box_add_axis(plain, 0, NULL, &s), LX_OK);
    CHECK(lx_box_equal(s, plain) && s != plain);
    lx_box_release(s);
    CHECK_EQ_INT(lx_box_remove_axis(plain, 0, "x", &s), LX_OK);
    CHECK(lx_box_equal(s, plain));
    lx_box_release(s);
    CHECK(!lx_box_equal(plain, b));

    /* The metadata is validated like a Variable's. */
    lx_tree_set(md, "out_sharding", lx_int_v(2));
    CHECK_FAILS(lx_box_nnx_meta(&lx_Param, a, md, &s), LX_ERR_TYPE,
                "NNXMeta: metadata 'out_sharding' must be a tuple of str (or None), got int");
    CHECK_FAILS(lx_box_nnx_meta(NULL, a, md, &s), LX_ERR_INVALID_ARGUMENT, "NNXMeta: var_type is NULL");
    lx_box *e = NULL;
    CHECK_EQ_INT(lx_box_nnx_meta(&lx_Cache, a, NULL, &e), LX_OK);
    CHECK_EQ_INT(lx_tree_len(lx_box_metadata(e)), 0);
    lx_box_release(e);

    lx_tree_release(md);
    lx_box_release(plain);
    lx_box_release(b);
    lx_release(c);
    CHECK_EQ_INT(a->refcount, 1);
    lx_release(a);
}

static void test_kinds(void) {
    CHECK_STR(lx_box_kind_name(LX_BOX_PARTITIONED), "Partitioned");
    CHECK_STR(lx_box_kind_name(LX_BOX_LOGICALLY_PARTITIONED), "LogicallyPartitioned");
    CHECK_STR(lx_box_kind_name(LX_BOX_NNX_META), "NNXMeta");
    lx_box_kind k;
    lx_value s = lx_str_v("LogicallyPartitioned"), i = lx_int_v(LX_BOX_NNX_META), f = lx_float_v(1);
    CHECK(lx_box_kind_from_value(&s, &k) == LX_OK && k == LX_BOX_LOGICALLY_PARTITIONED);
    CHECK(lx_box_kind_from_value(&i, &k) == LX_OK && k == LX_BOX_NNX_META);
    CHECK_FAILS(lx_box_kind_from_value(&f, &k), LX_ERR_INVALID_ARGUMENT, "linen_meta_type: 1 names no box kind");
}

/* meta.unbox over a variables tree. */
static void test_tree_unbox(void) {
    int64_t shape[] = {3};
    lx_array *a = lx_array_new(LX_F32, 1, shape), *b = lx_array_new(LX_F32, 1, shape);
    const char *names[] = {"embed"};
    lx_box *p = NULL, *n = NULL;
    lx_box_partitioned(a, 1, names, NULL, &p);
    lx_box_nnx_meta(&lx_Param, b, NULL, &n);
    lx_variable *v = NULL;
    lx_variable_new(&lx_BatchStat, b, &v);
    lx_tree *t = lx_tree_new(), *e = lx_tree_new();
    lx_tree_set_path(t, "params/w", lx_box_v(p));
    lx_tree_set_path(t, "params/sub/k", lx_box_v(n));
    lx_tree_set_path(t, "batch_stats/mean", lx_var_v(v));
    lx_tree_set_path(t, "params/raw", lx_array_v(a));
    lx_tree_set_path(t, "params/empty", lx_tree_v(e));
    lx_tree *u = NULL;
    CHECK_EQ_INT(lx_tree_unbox(t, &u), LX_OK);
    CHECK(lx_tree_find(u, "params/w")->kind == LX_V_ARRAY && lx_tree_find(u, "params/w")->u.array == a);
    CHECK(lx_tree_find(u, "params/sub/k")->u.array == b);
    CHECK(lx_tree_find(u, "batch_stats/mean")->u.var == v); /* Variables are not boxes */
    CHECK(lx_tree_find(u, "params/raw")->u.array == a);
    CHECK(lx_tree_find(u, "params/empty") != NULL);
    CHECK(lx_tree_find(t, "params/w")->kind == LX_V_BOX); /* the input is untouched */
    CHECK_EQ_INT(lx_tree_count_params(u), lx_tree_count_params(t));
    lx_tree_release(u);
    CHECK_FAILS(lx_tree_unbox(NULL, &u), LX_ERR_FAILED_INPUT, "tree is NULL");
    lx_tree_release(t);
    lx_tree_release(e);
    lx_variable_release(v);
    lx_box_release(p);
    lx_box_release(n);
    CHECK_EQ_INT(a->refcount + b->refcount, 2);
    lx_release(a);
    lx_release(b);
}

/* The box a partitioned initializer makes, and a plain one refused. */
static void test_box_from_initializer(void) {
    lx_array *a = lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){8, 4}));
    lx_initializer ln = lx_init_lecun_normal(), p, l;
    lx_box *b = NULL;
    char buf[256];
    CHECK_FAILS(lx_box_from_initializer(&ln, a, &b), LX_ERR_INVALID_ARGUMENT, "the initializer has no partitioning");
    CHECK(b == NULL);
    CHECK_FAILS(lx_box_from_initializer(NULL, a, &b), LX_ERR_INVALID_ARGUMENT, "no partitioning");
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 2, (const char *[]){NULL, "mlp"}, "mesh0", &p), LX_OK);
    CHECK_EQ_INT(lx_box_from_initializer(&p, a, &b), LX_OK);
    CHECK_STR(b ? lx_box_str(b, buf, sizeof buf) : NULL, "Partitioned(value=float32[8,4], names=(None, 'mlp'), mesh='mesh0')");
    CHECK(b && lx_box_unbox(b) == a);
    lx_box_release(b);
    CHECK_EQ_INT(lx_init_with_logical_partitioning(&ln, 1, (const char *[]){"embed"}, NULL, 0, NULL, &l), LX_OK);
    CHECK_EQ_INT(lx_box_from_initializer(&l, a, &b), LX_OK);
    CHECK_STR(b ? lx_box_str(b, buf, sizeof buf) : NULL,
              "LogicallyPartitioned(value=float32[8,4], names=('embed',), mesh=None, rules=None)");
    lx_box_release(b);
    CHECK_FAILS(lx_box_from_initializer(&p, NULL, &b), LX_ERR_FAILED_INPUT, "");
    CHECK_EQ_INT(lx_init_check_partition_rank(&ln, 0, NULL), LX_OK);
    CHECK_EQ_INT(lx_init_check_partition_rank(&p, 2, (int64_t[]){8, 4}), LX_OK);
    CHECK_FAILS(lx_init_check_partition_rank(&p, 1, (int64_t[]){8}), LX_ERR_SHAPE,
                "with_partitioning: names (None, 'mlp') have 2 entries, more than the rank of a value of shape (8,)");
    CHECK_FAILS(lx_init_check_partition_rank(&l, 0, NULL), LX_ERR_SHAPE,
                "with_logical_partitioning: names ('embed',) have 1 entry, more than the rank of a value of shape ()");
}

/* Trees of boxes compare by structure (lx_tree_equal / lx_value_equal): two separately built
 * stacks of the same layers, each Partitioned box given the stacking axis by add_axis, are equal;
 * a different value, name, mesh or kind is not. */
static lx_tree *stacked(float w0, const char *axis, const char *mesh, bool logical) {
    lx_array *a = lx_array_from_f32(2, (int64_t[]){2, 2}, (const float[]){w0, 2, 3, 4});
    const char *names[] = {"embed", NULL};
    lx_box *b = NULL, *s = NULL;
    lx_status st = logical ? lx_box_logically_partitioned(a, 2, names, mesh, 0, NULL, &b)
                           : lx_box_partitioned(a, 2, names, mesh, &b);
    if (st == LX_OK) st = lx_box_add_axis(b, 0, axis, &s);
    lx_tree *t = lx_tree_new();
    if (st == LX_OK) st = lx_tree_set_path(t, "params/layers/kernel", lx_box_v(s));
    if (st == LX_OK) st = lx_tree_set_path(t, "params/layers/n", lx_int_v(2));
    CHECK_EQ_INT(st, LX_OK);
    lx_box_release(s);
    lx_box_release(b);
    lx_release(a);
    return t;
}

/* More names than the value has axes: the rank rule of partitioned initializers (init.h) holds
 * for every constructor that puts names next to a value (LX_ERR_SHAPE, *out NULL, the value not
 * retained). Fewer are fine (trailing axes unsharded). add_axis is exempt: a lifted transform
 * names the new axis before or after the value gains it. */
static void test_names_rank(void) {
    lx_array *a = lx_array_new(LX_F32, 2, (int64_t[]){2, 3});
    const char *three[] = {"a", "b", "c"};
    const char *rules[] = {"a", "data"};
    lx_box *b = (lx_box *)1;
    CHECK_FAILS(lx_box_partitioned(a, 3, three, NULL, &b), LX_ERR_SHAPE,
                "Partitioned: names ('a', 'b', 'c') have 3 entries, more than the rank of a value of shape (2, 3)");
    CHECK(b == NULL);
    CHECK_FAILS(lx_box_logically_partitioned(a, 3, three, "m", 2, rules, &b), LX_ERR_SHAPE,
                "LogicallyPartitioned: names ('a', 'b', 'c') have 3 entries");
    CHECK(b == NULL);
    lx_tree *md = lx_tree_new();
    lx_tree_set(md, "out_sharding", lx_strs_v(3, three));
    CHECK_FAILS(lx_box_from_nnx_metadata(LX_BOX_PARTITIONED, a, md, &b), LX_ERR_SHAPE,
                "Partitioned: names ('a', 'b', 'c') have 3 entries");
    CHECK_FAILS(lx_box_nnx_meta(&lx_Param, a, md, &b), LX_ERR_SHAPE,
                "NNXMeta: out_sharding ('a', 'b', 'c') has 3 entries, more than the rank of a value of shape (2, 3)");
    CHECK(b == NULL);
    CHECK_EQ_INT(a->refcount, 1);
    CHECK_EQ_INT(lx_box_partitioned(a, 2, three, NULL, &b), LX_OK);
    lx_box_release(b);
    CHECK_EQ_INT(lx_box_partitioned(a, 1, three, NULL, &b), LX_OK);
    /* ('a',) -> ('a', 'layers') -> ('x', 'a', 'layers') around the same 2-D value: add_axis edits names only */
    lx_box *s = NULL;
    CHECK_EQ_INT(lx_box_add_axis(b, 1, "layers", &s), LX_OK);
    lx_box *s2 = NULL;
    CHECK_EQ_INT(lx_box_add_axis(s, 0, "x", &s2), LX_OK);
    CHECK_EQ_INT(nnames(s2), 3);
    lx_box_release(s2);
    lx_box_release(s);
    lx_box_release(b);
    lx_tree_release(md);
    lx_release(a);
}

static void test_tree_equal_boxes(void) {
    lx_tree *a = stacked(1, "layers", NULL, false), *b = stacked(1, "layers", NULL, false);
    CHECK(lx_tree_get(a, "params") != NULL);
    CHECK(lx_tree_equal(a, b));
    CHECK(lx_tree_equal(b, a));
    lx_tree *c[] = {stacked(9, "layers", NULL, false), stacked(1, "stack", NULL, false),
                    stacked(1, "layers", "mesh", false), stacked(1, "layers", NULL, true)};
    for (int i = 0; i < 4; i++) {
        LX_TEST_REPORT_(!lx_tree_equal(a, c[i]), "variant %d compares equal", i);
        lx_tree_release(c[i]);
    }
    lx_tree_release(a);
    lx_tree_release(b);
}

int main(void) {
    RUN(test_partitioned);
    RUN(test_tree_equal_boxes);
    RUN(test_names_rank);
    RUN(test_nnx_metadata_round_trip);
    RUN(test_nnx_meta);
    RUN(test_kinds);
    RUN(test_tree_unbox);
    RUN(test_box_from_initializer);
    return lx_test_finish();
}
