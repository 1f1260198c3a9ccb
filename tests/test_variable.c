/* Variable types, the collection registry (spec/flax-bridge.md 0.3) and Variables (1.2). */
#include "lx_test.h"

#include "linnx/box.h"
#include "linnx/tree.h"
#include "linnx/variable.h"

static const lx_vartype MyParam = {"MyParam", &lx_Param};

static void test_hierarchy(void) {
    CHECK(lx_vartype_is(&lx_Param, &lx_Variable));
    CHECK(lx_vartype_is(&lx_Param, &lx_Param));
    CHECK(lx_vartype_is(&lx_LoRAParam, &lx_Param));
    CHECK(lx_vartype_is(&lx_LoRAParam, &lx_Variable));
    CHECK(!lx_vartype_is(&lx_Param, &lx_LoRAParam));
    CHECK(!lx_vartype_is(&lx_LoRAParam, &lx_BatchStat));
    CHECK(lx_vartype_is(&lx_Perturbation, &lx_Intermediate));
    CHECK(!lx_vartype_is(&lx_Intermediate, &lx_Perturbation));
    CHECK(lx_vartype_is(&lx_RngKey, &lx_RngState) && lx_vartype_is(&lx_RngCount, &lx_RngState));
    CHECK(!lx_vartype_is(&lx_RngKey, &lx_RngCount));
    CHECK(lx_vartype_is(&lx_Cache, &lx_Variable) && lx_vartype_is(&lx_BatchStat, &lx_Variable));
    CHECK(!lx_vartype_is(&lx_Param, NULL) && !lx_vartype_is(NULL, &lx_Param));
    CHECK(lx_vartype_is(&MyParam, &lx_Param) && !lx_vartype_is(&lx_Param, &MyParam));

    const lx_vartype *t = NULL, *u = NULL, *w = NULL;
    CHECK_EQ_INT(lx_vartype_new("Counter", &lx_BatchStat, &t), LX_OK);
    CHECK_STR(t->name, "Counter");
    CHECK(t->base == &lx_BatchStat && lx_vartype_is(t, &lx_Variable));
    CHECK_EQ_INT(lx_vartype_new("Counter", NULL, &u), LX_OK);
    CHECK(u != t && u->base == &lx_Variable); /* two classes of one name are two types */
    CHECK_EQ_INT(lx_vartype_new("Sub", t, &w), LX_OK);
    CHECK(lx_vartype_is(w, &lx_BatchStat) && !lx_vartype_is(w, u));
    CHECK_FAILS(lx_vartype_new("", NULL, &t), LX_ERR_INVALID_ARGUMENT, "the type needs a name");
    CHECK(t == NULL);
    char buf[64];
    CHECK_STR(lx_vartype_str(&lx_LoRAParam, buf, sizeof buf), "<class 'LoRAParam'>");
}

static void test_registry_defaults(void) {
    lx_variable_registry_reset();
    const char *names[] = {"params", "batch_stats", "cache", "intermediates", "perturbations"};
    const lx_vartype *types[] = {&lx_Param, &lx_BatchStat, &lx_Cache, &lx_Intermediate, &lx_Perturbation};
    for (int i = 0; i < 5; i++) {
        const lx_vartype *t = NULL;
        const char *n = NULL;
        CHECK_EQ_INT(lx_variable_type_from_name(names[i], NULL, false, &t), LX_OK);
        CHECK(t == types[i]);
        CHECK_EQ_INT(lx_variable_name_from_type(types[i], false, &n), LX_OK);
        CHECK_STR(n, names[i]);
    }
    /* Exact types only: LoRAParam is a Param but is not `params`; the Rng types are not
     * registered at all. */
    const char *n = NULL;
    CHECK_FAILS(lx_variable_name_from_type(&lx_LoRAParam, false, &n), LX_ERR_NOT_FOUND,
                "Type <class 'LoRAParam'> is not registered in the registry. To register a new type, use "
                "register_variable_name() or set allow_register=True.");
    CHECK(n == NULL);
    CHECK_FAILS(lx_variable_name_from_type(&lx_RngKey, false, &n), LX_ERR_NOT_FOUND, "Type <class 'RngKey'>");
    CHECK_FAILS(lx_variable_name_from_type(&lx_Variable, false, &n), LX_ERR_NOT_FOUND, "Type <class 'Variable'>");
    const lx_vartype *t = NULL;
    CHECK_FAILS(lx_variable_type_from_name("rngs", NULL, false, &t), LX_ERR_NOT_FOUND,
                "Name rngs is not registered in the registry. To register a new name, use "
                "register_variable_name() or set allow_register=True.");
    CHECK(t == NULL);
    /* The message is the whole message: interpolated, no braces left. */
    CHECK(strchr(lx_last_error(), '{') == NULL);
}

static void test_registry_register(void) {
    lx_variable_registry_reset();
    /* allow_register on a name: a new type named exactly after the collection, of the given base. */
    const lx_vartype *t = NULL, *t2 = NULL;
    CHECK_EQ_INT(lx_variable_type_from_name("counts", &lx_Intermediate, true, &t), LX_OK);
    CHECK(t != NULL);
    CHECK_STR(t->name, "counts");
    CHECK(t->base == &lx_Intermediate && lx_vartype_is(t, &lx_Intermediate));
    CHECK_EQ_INT(lx_variable_type_from_name("counts", &lx_Param, true, &t2), LX_OK);
    CHECK(t2 == t); /* registered now; the base is ignored */
    const char *n = NULL;
    CHECK_EQ_INT(lx_variable_name_from_type(t, false, &n), LX_OK);
    CHECK_STR(n, "counts");
    CHECK_EQ_INT(lx_variable_type_from_name("other", NULL, true, &t2), LX_OK);
    CHECK(t2->base == &lx_Variable);

    /* allow_register on a type: registered under its class name. */
    CHECK_EQ_INT(lx_variable_name_from_type(&lx_LoRAParam, true, &n), LX_OK);
    CHECK_STR(n, "LoRAParam");
    CHECK_EQ_INT(lx_variable_type_from_name("LoRAParam", NULL, false, &t2), LX_OK);
    CHECK(t2 == &lx_LoRAParam);
    /* ... unless the class name is another type's collection. */
    static const lx_vartype fake = {"batch_stats", &lx_Variable};
    CHECK_FAILS(lx_variable_name_from_type(&fake, true, &n), LX_ERR_EXISTS,
                "Name batch_stats is already registered in the registry as <class 'BatchStat'>. It cannot be "
                "linked with this type <class 'batch_stats'>.");

    /* Duplicate registration, then overwrite. */
    CHECK_FAILS(lx_variable_register_name("params", &MyParam, false), LX_ERR_EXISTS,
                "Name params already mapped to type <class 'Param'>. To overwrite, call register_variable_name() "
                "with `overwrite=True`.");
    /* Even the same pair is refused without overwrite, as in Flax. */
    CHECK_FAILS(lx_variable_register_name("params", &lx_Param, false), LX_ERR_EXISTS, "Name params already mapped");
    CHECK_EQ_INT(lx_variable_type_from_name("params", NULL, false, &t2), LX_OK);
    CHECK(t2 == &lx_Param);
    CHECK_EQ_INT(lx_variable_register_name("params", &MyParam, true), LX_OK);
    CHECK_EQ_INT(lx_variable_type_from_name("params", NULL, false, &t2), LX_OK);
    CHECK(t2 == &MyParam);
    CHECK_EQ_INT(lx_variable_name_from_type(&MyParam, false, &n), LX_OK);
    CHECK_STR(n, "params");
    CHECK_FAILS(lx_variable_name_from_type(&lx_Param, false, &n), LX_ERR_NOT_FOUND, "Type <class 'Param'>");

    /* One type under two names: lookups by type give the first registered. */
    CHECK_EQ_INT(lx_variable_register_name("sown", &lx_Intermediate, false), LX_OK);
    CHECK_EQ_INT(lx_variable_name_from_type(&lx_Intermediate, false, &n), LX_OK);
    CHECK_STR(n, "intermediates");
    /* Overwriting keeps the name's place in that order. */
    CHECK_EQ_INT(lx_variable_register_name("cache", &lx_Intermediate, true), LX_OK);
    CHECK_EQ_INT(lx_variable_name_from_type(&lx_Intermediate, false, &n), LX_OK);
    CHECK_STR(n, "cache");

    CHECK_FAILS(lx_variable_register_name("", &lx_Param, false), LX_ERR_INVALID_ARGUMENT, "empty collection name");
    CHECK_FAILS(lx_variable_register_name("x", NULL, false), LX_ERR_INVALID_ARGUMENT, "type is NULL");
    CHECK_FAILS(lx_variable_type_from_name(NULL, NULL, true, &t2), LX_ERR_INVALID_ARGUMENT, "empty collection name");
    CHECK_FAILS(lx_variable_name_from_type(NULL, true, &n), LX_ERR_INVALID_ARGUMENT, "type is NULL");

    /* Reset: the five defaults again; types made meanwhile stay valid. */
    lx_variable_registry_reset();
    CHECK_EQ_INT(lx_variable_type_from_name("params", NULL, false, &t2), LX_OK);
    CHECK(t2 == &lx_Param);
    CHECK_FAILS(lx_variable_type_from_name("counts", NULL, false, &t2), LX_ERR_NOT_FOUND, "Name counts is not");
    CHECK_STR(t->name, "counts");
    CHECK_EQ_INT(lx_variable_name_from_type(&lx_Intermediate, false, &n), LX_OK);
    CHECK_STR(n, "intermediates");
    /* Growing past the static first block of entries keeps every name, in order; reset after
     * that gives the defaults back. */
    for (int i = 0; i < 30; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "coll%d", i);
        CHECK_EQ_INT(lx_variable_register_name(nm, i == 0 ? &MyParam : &lx_Cache, false), LX_OK);
    }
    CHECK_EQ_INT(lx_variable_type_from_name("coll29", NULL, false, &t2), LX_OK);
    CHECK(t2 == &lx_Cache);
    CHECK_EQ_INT(lx_variable_name_from_type(&MyParam, false, &n), LX_OK);
    CHECK_STR(n, "coll0");
    CHECK_EQ_INT(lx_variable_name_from_type(&lx_Cache, false, &n), LX_OK);
    CHECK_STR(n, "cache");
    lx_variable_registry_reset();
    CHECK_FAILS(lx_variable_type_from_name("coll3", NULL, false, &t2), LX_ERR_NOT_FOUND, "Name coll3 is not");
    CHECK_EQ_INT(lx_variable_type_from_name("perturbations", NULL, false, &t2), LX_OK);
    CHECK(t2 == &lx_Perturbation);
}

static void test_variable_basics(void) {
    int64_t shape[] = {2, 3};
    lx_array *a = lx_array_new(LX_F32, 2, shape);
    lx_variable *v = NULL;
    CHECK_EQ_INT(lx_variable_new(&lx_Param, a, &v), LX_OK);
    CHECK(lx_variable_type(v) == &lx_Param);
    CHECK(lx_variable_get_value(v) == a);
    CHECK_EQ_INT(a->refcount, 2);
    CHECK_EQ_INT(lx_tree_len(lx_variable_metadata(v)), 0);
    CHECK(lx_variable_is_vanilla(v));
    char buf[256];
    CHECK_STR(lx_variable_str(v, buf, sizeof buf), "Param(float32[2,3])");

    /* set_value: replaces; with check_shape a different shape or dtype is refused. */
    int64_t other[] = {3};
    lx_array *b = lx_array_new(LX_F32, 1, other);
    lx_array *c = lx_array_new(LX_F32, 2, shape);
    lx_array *d = lx_array_new(LX_I32, 2, shape);
    CHECK_FAILS(lx_variable_set_value(v, b, true), LX_ERR_SHAPE,
                "Param: cannot set a value of float32[3] over a value of float32[2,3]");
    CHECK_FAILS(lx_variable_set_value(v, d, true), LX_ERR_SHAPE, "int32[2,3] over a value of float32[2,3]");
    CHECK(lx_variable_get_value(v) == a);
    CHECK_EQ_INT(lx_variable_set_value(v, c, true), LX_OK);
    CHECK(lx_variable_get_value(v) == c);
    CHECK_EQ_INT(a->refcount, 1);
    CHECK_EQ_INT(lx_variable_set_value(v, c, true), LX_OK); /* the same array again */
    CHECK_EQ_INT(c->refcount, 2);
    CHECK_EQ_INT(lx_variable_set_value(v, b, false), LX_OK);
    CHECK(lx_variable_get_value(v) == b);
    CHECK_FAILS(lx_variable_set_value(v, NULL, false), LX_ERR_FAILED_INPUT, "Param: value is NULL");
    CHECK(lx_variable_get_value(v) == b);

    /* Abstract values are fine (eval_shape). */
    lx_array *abs_ = lx_array_abstract(LX_F32, 2, shape);
    lx_variable *va = NULL;
    CHECK_EQ_INT(lx_variable_new(&lx_Cache, abs_, &va), LX_OK);
    CHECK(lx_is_abstract(lx_variable_get_value(va)));

    lx_variable *bad = (lx_variable *)1;
    CHECK_FAILS(lx_variable_new(NULL, a, &bad), LX_ERR_INVALID_ARGUMENT, "Variable: type is NULL");
    CHECK(bad == NULL);
    CHECK_FAILS(lx_variable_new(&lx_Param, NULL, &bad), LX_ERR_FAILED_INPUT, "Param: value is NULL");

    /* NULL Variables (failed inputs) are refused, not dereferenced. */
    CHECK_FAILS(lx_variable_copy(NULL, &bad), LX_ERR_FAILED_INPUT, "variable_copy: Variable is NULL");
    CHECK_FAILS(lx_variable_set_value(NULL, a, false), LX_ERR_FAILED_INPUT, "Variable is NULL");
    CHECK_FAILS(lx_variable_meta_set(NULL, "mesh", lx_none()), LX_ERR_FAILED_INPUT, "Variable is NULL");
    CHECK_FAILS(lx_variable_meta_del(NULL, "mesh"), LX_ERR_FAILED_INPUT, "Variable is NULL");
    CHECK(lx_variable_get_value(NULL) == NULL && lx_variable_type(NULL) == NULL && !lx_variable_metadata(NULL));
    CHECK(lx_variable_equal(NULL, NULL) && !lx_variable_equal(v, NULL));
    CHECK_STR(lx_variable_str(NULL, buf, sizeof buf), "<NULL Variable>");

    lx_variable_release(va);
    lx_variable_release(v);
    CHECK_EQ_INT(b->refcount, 1);
    lx_release(abs_);
    lx_release(a);
    lx_release(b);
    lx_release(c);
    lx_release(d);
}

static void test_variable_metadata(void) {
    int64_t shape[] = {2, 3};
    lx_array *a = lx_array_new(LX_F32, 2, shape);
    const char *names[] = {"in", "out"};
    const char *rules[] = {"embed", "data", "mlp", NULL};
    lx_variable *v = NULL;
    CHECK_EQ_INT(lx_variable_new_kw(&lx_Param, a, 4,
                                    LX_KWARGS(LX_KW("sharding_names", lx_strs_v(2, names)), LX_KW_STR("mesh", "m"),
                                              LX_KW("sharding_rules", lx_strs_v(4, rules)),
                                              LX_KW_INT("linen_meta_type", LX_BOX_LOGICALLY_PARTITIONED)),
                                    &v),
                 LX_OK);
    /* The alias is stored as out_sharding, and reading through either alias finds that entry. */
    const lx_value *os = lx_variable_meta_get(v, "out_sharding");
    CHECK(os && lx_variable_meta_get(v, "sharding_names") == os && lx_variable_meta_get(v, "sharding") == os);
    CHECK_EQ_INT(lx_tree_len(lx_variable_metadata(v)), 4);
    CHECK(os && os->kind == LX_V_STRS && os->u.strs.n == 2);
    CHECK_STR(os->u.strs.v[1], "out");
    CHECK_STR(lx_tree_key(lx_variable_metadata(v), 0), "out_sharding");
    CHECK(!lx_variable_is_vanilla(v));
    char buf[512];
    CHECK_STR(lx_variable_str(v, buf, sizeof buf),
              "Param(float32[2,3], out_sharding=('in', 'out'), mesh='m', sharding_rules=('embed', 'data', 'mlp', "
              "None), linen_meta_type=2)");

    /* Copy: a new Variable over the same array, with its own metadata. */
    lx_variable *c = NULL;
    CHECK_EQ_INT(lx_variable_copy(v, &c), LX_OK);
    CHECK(c != v && lx_variable_get_value(c) == a && lx_variable_type(c) == &lx_Param);
    CHECK(lx_variable_equal(v, c));
    CHECK_EQ_INT(lx_variable_meta_set(c, "sharding", lx_strs_v(1, names)), LX_OK);
    CHECK_EQ_INT(lx_variable_meta_get(c, "out_sharding")->u.strs.n, 1);
    CHECK_EQ_INT(lx_variable_meta_get(v, "out_sharding")->u.strs.n, 2);
    CHECK(!lx_variable_equal(v, c));
    CHECK_EQ_INT(lx_variable_meta_del(c, "mesh"), LX_OK);
    CHECK(lx_variable_meta_get(c, "mesh") == NULL);
    CHECK_FAILS(lx_variable_meta_del(c, "mesh"), LX_ERR_NOT_FOUND, "Param: no metadata 'mesh'");
    /* del resolves the aliases too: it removes out_sharding, and a second del finds nothing */
    CHECK_EQ_INT(lx_variable_meta_del(c, "sharding_names"), LX_OK);
    CHECK(lx_variable_meta_get(c, "out_sharding") == NULL && lx_variable_meta_get(c, "sharding") == NULL);
    CHECK_FAILS(lx_variable_meta_del(c, "sharding"), LX_ERR_NOT_FOUND, "Param: no metadata 'sharding'");
    CHECK_EQ_INT(lx_variable_meta_set(c, "sharding", lx_strs_v(1, names)), LX_OK);
    CHECK_EQ_INT(a->refcount, 3);

    /* Validation: wrong kinds, odd rules, unknown box kinds, 'value', duplicates. Nothing
     * changes on failure. */
    CHECK_FAILS(lx_variable_meta_set(c, "out_sharding", lx_int_v(3)), LX_ERR_TYPE,
                "Param: metadata 'out_sharding' must be a tuple of str (or None), got int");
    CHECK_FAILS(lx_variable_meta_set(c, "sharding", lx_int_v(3)), LX_ERR_TYPE, "metadata 'out_sharding' must be");
    CHECK_EQ_INT(lx_variable_meta_get(c, "out_sharding")->u.strs.n, 1);
    CHECK_FAILS(lx_variable_meta_set(c, "sharding_rules", lx_strs_v(3, rules)), LX_ERR_INVALID_ARGUMENT,
                "Param: metadata 'sharding_rules' must hold (logical, mesh) pairs, got 3 strings");
    CHECK_FAILS(lx_variable_meta_set(c, "mesh", lx_int_v(1)), LX_ERR_TYPE,
                "metadata 'mesh' must be a mesh name (str or None), got int");
    CHECK_FAILS(lx_variable_meta_set(c, "tag", lx_int_v(1)), LX_ERR_TYPE, "metadata 'tag' must be a stream name");
    CHECK_FAILS(lx_variable_meta_set(c, "linen_meta_type", lx_str_v("Boxed")), LX_ERR_INVALID_ARGUMENT,
                "linen_meta_type: 'Boxed' names no box kind");
    CHECK_FAILS(lx_variable_meta_set(c, "linen_meta_type", lx_int_v(9)), LX_ERR_INVALID_ARGUMENT,
                "linen_meta_type: 9 names no box kind");
    CHECK_EQ_INT(lx_variable_meta_set(c, "linen_meta_type", lx_str_v("Partitioned")), LX_OK);
    CHECK_FAILS(lx_variable_meta_set(c, "value", lx_int_v(1)), LX_ERR_INVALID_ARGUMENT, "'value' is not a metadata key");
    CHECK_FAILS(lx_variable_meta_set(c, "", lx_int_v(1)), LX_ERR_INVALID_ARGUMENT, "empty metadata key");
    lx_variable *bad = (lx_variable *)1;
    CHECK_FAILS(lx_variable_new_kw(&lx_Param, a, 2,
                                   LX_KWARGS(LX_KW("out_sharding", lx_strs_v(2, names)),
                                             LX_KW("sharding", lx_strs_v(2, names))),
                                   &bad),
                LX_ERR_INVALID_ARGUMENT, "Param: metadata 'out_sharding' given twice (also as its alias 'sharding')");
    CHECK(bad == NULL);
    CHECK_FAILS(lx_variable_new_kw(&lx_Param, a, 2, LX_KWARGS(LX_KW_STR("tag", "a"), LX_KW_STR("tag", "b")), &bad),
                LX_ERR_INVALID_ARGUMENT, "Param: metadata 'tag' given twice");
    CHECK_FAILS(lx_variable_new_kw(&lx_Param, a, 1, NULL, &bad), LX_ERR_INVALID_ARGUMENT, "bad metadata list");
    CHECK_EQ_INT(a->refcount, 3);

    /* More sharding names than the value has axes: the rank rule of partitioned initializers
     * (init.h) for every route that puts names next to a value (Flax fails when eager sharding
     * applies them at Variable creation). set leaves the metadata as it was; new_kw makes nothing. */
    const char *three[] = {"a", "b", "c"};
    CHECK_FAILS(lx_variable_meta_set(c, "out_sharding", lx_strs_v(3, three)), LX_ERR_SHAPE,
                "Param: out_sharding ('a', 'b', 'c') has 3 entries, more than the rank of a value of shape (2, 3)");
    CHECK_FAILS(lx_variable_meta_set(c, "sharding_names", lx_strs_v(3, three)), LX_ERR_SHAPE,
                "Param: out_sharding ('a', 'b', 'c') has 3 entries");
    CHECK_EQ_INT(lx_variable_meta_get(c, "out_sharding")->u.strs.n, 1);
    CHECK_STR(lx_variable_meta_get(c, "out_sharding")->u.strs.v[0], "in");
    CHECK_EQ_INT(lx_variable_meta_set(c, "out_sharding", lx_strs_v(2, three)), LX_OK); /* as many as axes */
    CHECK_EQ_INT(lx_variable_meta_set(c, "out_sharding", lx_strs_v(0, NULL)), LX_OK);  /* () */
    CHECK_EQ_INT(lx_variable_meta_set(c, "out_sharding", lx_none()), LX_OK);           /* None */
    lx_array *s0 = lx_array_scalar_f32(0.0f);
    lx_variable *sv = NULL;
    CHECK_EQ_INT(lx_variable_new(&lx_BatchStat, s0, &sv), LX_OK);
    CHECK_FAILS(lx_variable_meta_set(sv, "sharding", lx_strs_v(1, three)), LX_ERR_SHAPE,
                "BatchStat: out_sharding ('a',) has 1 entry, more than the rank of a value of shape ()");
    CHECK(lx_variable_meta_get(sv, "out_sharding") == NULL);
    lx_variable_release(sv);
    lx_release(s0);
    CHECK_FAILS(lx_variable_new_kw(&lx_Param, a, 1, LX_KWARGS(LX_KW("sharding", lx_strs_v(3, three))), &bad),
                LX_ERR_SHAPE, "Param: out_sharding ('a', 'b', 'c') has 3 entries, more than the rank");
    CHECK(bad == NULL);
    CHECK_EQ_INT(a->refcount, 3);

    /* From a metadata map (what NNXMeta and boxes carry). */
    lx_tree *md = lx_tree_new();
    lx_tree_set(md, "sharding", lx_strs_v(2, names));
    lx_tree_set(md, "custom", lx_float_v(0.5));
    lx_variable *m = NULL;
    CHECK_EQ_INT(lx_variable_new_md(&lx_LoRAParam, a, md, &m), LX_OK);
    CHECK(lx_variable_meta_get(m, "out_sharding") != NULL);
    CHECK_NEAR(lx_variable_meta_get(m, "custom")->u.f, 0.5, 0);
    lx_tree_set(md, "custom", lx_float_v(1.5)); /* the Variable kept a copy */
    CHECK_NEAR(lx_variable_meta_get(m, "custom")->u.f, 0.5, 0);
    lx_tree_set(md, "value", lx_int_v(0));
    CHECK_FAILS(lx_variable_new_md(&lx_Param, a, md, &bad), LX_ERR_INVALID_ARGUMENT, "'value' is not a metadata key");
    lx_variable *plain = NULL;
    CHECK_EQ_INT(lx_variable_new_md(&lx_RngCount, a, NULL, &plain), LX_OK);
    CHECK(lx_variable_is_vanilla(plain));
    CHECK(!lx_variable_equal(plain, m)); /* different types */

    lx_tree_release(md);
    lx_variable_release(plain);
    lx_variable_release(m);
    lx_variable_release(c);
    lx_variable_release(v);
    lx_release(a);
}

/* is_vanilla_variable: only hijax / ref / eager_sharding and empty *_hooks keep a Variable vanilla. */
static void test_vanilla(void) {
    lx_array *a = lx_array_scalar_f32(1);
    lx_variable *v = NULL;
    CHECK_EQ_INT(lx_variable_new_kw(&lx_Param, a, 5,
                                    LX_KWARGS(LX_KW_BOOL("hijax", false), LX_KW_BOOL("ref", false),
                                              LX_KW_BOOL("eager_sharding", true),
                                              LX_KW("on_get_value_hooks", lx_ints_v(0, NULL)),
                                              LX_KW("on_set_value_hooks", lx_strs_v(0, NULL))),
                                    &v),
                 LX_OK);
    CHECK(lx_variable_is_vanilla(v));
    const char *hook[] = {"log"};
    lx_variable_meta_set(v, "on_set_value_hooks", lx_strs_v(1, hook));
    CHECK(!lx_variable_is_vanilla(v));
    lx_variable_meta_del(v, "on_set_value_hooks");
    CHECK(lx_variable_is_vanilla(v));
    /* The deprecated hook names (no _hooks suffix) are ordinary metadata. */
    lx_variable_meta_set(v, "on_get_value", lx_none());
    CHECK(!lx_variable_is_vanilla(v));
    lx_variable_meta_del(v, "on_get_value");
    lx_variable_meta_set(v, "mesh", lx_none());
    CHECK(!lx_variable_is_vanilla(v));
    lx_variable_meta_del(v, "mesh");
    lx_variable_meta_set(v, "tag", lx_str_v("dropout"));
    CHECK(!lx_variable_is_vanilla(v));
    CHECK(!lx_variable_is_vanilla(NULL));
    lx_variable_release(v);
    lx_release(a);
}

int main(void) {
    RUN(test_hierarchy);
    RUN(test_registry_defaults);
    RUN(test_registry_register);
    RUN(test_variable_basics);
    RUN(test_variable_metadata);
    RUN(test_vanilla);
    lx_variable_registry_reset();
    return lx_test_finish();
}
