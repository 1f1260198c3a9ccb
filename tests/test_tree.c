/* Trees: maps, paths, flatten/unflatten, merge, copy, equality, map, counts, printers. */
#include "lx_test.h"

#include "linnx/box.h"
#include "linnx/tree.h"
#include "linnx/variable.h"

static lx_array *arr(int ndim, const int64_t *shape, float start) {
    lx_array *a = lx_array_new(LX_F32, ndim, shape);
    for (int64_t i = 0; a && i < a->size; i++) lx_f32(a)[i] = start + (float)i;
    return a;
}

/* The whole text a printer writes. */
typedef lx_status (*printer)(FILE *, const lx_tree *);
static char *print_to_string(printer p, const lx_tree *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    p(f, t);
    fclose(f);
    return buf;
}

static void test_map_basics(void) {
    lx_tree *t = lx_tree_new();
    CHECK(t && lx_tree_len(t) == 0);
    CHECK_EQ_INT(lx_tree_set(t, "b", lx_int_v(1)), LX_OK);
    CHECK_EQ_INT(lx_tree_set(t, "a", lx_str_v("x")), LX_OK);
    CHECK_EQ_INT(lx_tree_set(t, "c", lx_float_v(0.5)), LX_OK);
    CHECK_EQ_INT(lx_tree_len(t), 3);
    /* Insertion order, not sorted order. */
    CHECK_STR(lx_tree_key(t, 0), "b");
    CHECK_STR(lx_tree_key(t, 1), "a");
    CHECK_STR(lx_tree_key(t, 2), "c");
    CHECK(lx_tree_key(t, 3) == NULL && lx_tree_at(t, 3) == NULL);
    CHECK_STR(lx_tree_get(t, "a")->u.s, "x");
    CHECK(lx_tree_get(t, "zz") == NULL);

    /* The stored string is a copy: the caller's buffer may change. */
    char name[] = "abc";
    lx_tree_set(t, "s", lx_str_v(name));
    name[0] = 'X';
    CHECK_STR(lx_tree_get(t, "s")->u.s, "abc");

    /* Replacing keeps the position. */
    CHECK_EQ_INT(lx_tree_set(t, "a", lx_int_v(42)), LX_OK);
    CHECK_EQ_INT(lx_tree_len(t), 4);
    CHECK_STR(lx_tree_key(t, 1), "a");
    CHECK_EQ_INT(lx_tree_at(t, 1)->u.i, 42);

    /* Delete keeps the others' order. */
    CHECK_EQ_INT(lx_tree_delete(t, "b"), LX_OK);
    CHECK_EQ_INT(lx_tree_len(t), 3);
    CHECK_STR(lx_tree_key(t, 0), "a");
    CHECK_STR(lx_tree_key(t, 1), "c");
    CHECK_STR(lx_tree_key(t, 2), "s");
    CHECK_FAILS(lx_tree_delete(t, "b"), LX_ERR_NOT_FOUND, "tree: no key 'b' at the root");

    /* Bad keys and failed inputs change nothing. */
    CHECK_FAILS(lx_tree_set(t, "", lx_int_v(1)), LX_ERR_INVALID_ARGUMENT, "tree: empty key");
    CHECK_FAILS(lx_tree_set(t, "a/b", lx_int_v(1)), LX_ERR_INVALID_ARGUMENT,
                "tree: key 'a/b' contains '/', the path separator");
    CHECK_FAILS(lx_tree_set(t, NULL, lx_int_v(1)), LX_ERR_INVALID_ARGUMENT, "tree: key is NULL");
    CHECK_FAILS(lx_tree_set(t, "n", lx_array_v(NULL)), LX_ERR_FAILED_INPUT, "tree_set: value is NULL");
    /* An earlier failure's message is kept: it explains the NULL better. */
    lx_fail(LX_ERR_SHAPE, "matmul: shapes (2, 3) and (4, 5) do not fit");
    CHECK_EQ_INT(lx_tree_set(t, "n", lx_array_v(NULL)), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_HAS("matmul: shapes");
    CHECK_FAILS(lx_tree_set(NULL, "n", lx_int_v(1)), LX_ERR_FAILED_INPUT, "tree is NULL");
    const lx_value *got = NULL;
    CHECK_FAILS(lx_tree_get_path(NULL, "a", &got), LX_ERR_FAILED_INPUT, "tree is NULL");
    CHECK_FAILS(lx_tree_set_path(NULL, "a", lx_int_v(1)), LX_ERR_FAILED_INPUT, "tree is NULL");
    CHECK_FAILS(lx_tree_set_path(t, "a/b", lx_tree_v(NULL)), LX_ERR_FAILED_INPUT, "tree_set_path: value is NULL");
    CHECK_FAILS(lx_tree_delete_path(NULL, "a"), LX_ERR_FAILED_INPUT, "tree is NULL");
    CHECK_FAILS(lx_tree_delete(NULL, "a"), LX_ERR_FAILED_INPUT, "tree is NULL");
    CHECK(lx_tree_get(NULL, "a") == NULL && lx_tree_find(NULL, "a") == NULL && lx_tree_len(NULL) == 0);
    CHECK_NULL_FAILS(lx_tree_copy(NULL), LX_ERR_FAILED_INPUT, "tree_copy: tree is NULL");
    lx_flat fl = {0};
    CHECK_FAILS(lx_flat_append(&fl, NULL, lx_int_v(1)), LX_ERR_INVALID_ARGUMENT, "flat: path is NULL");
    CHECK_FAILS(lx_flat_append(&fl, "p", lx_var_v(NULL)), LX_ERR_FAILED_INPUT, "flat_append: value is NULL");
    CHECK_EQ_INT(fl.len, 0);
    lx_flat_free(&fl);
    CHECK_EQ_INT(lx_tree_len(t), 3);

    /* A tree may not contain itself, directly or through a sub-map. */
    lx_tree *sub = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set(t, "sub", lx_tree_v(sub)), LX_OK);
    CHECK_FAILS(lx_tree_set(t, "self", lx_tree_v(t)), LX_ERR_INVALID_ARGUMENT, "reference cycle");
    CHECK_FAILS(lx_tree_set(sub, "up", lx_tree_v(t)), LX_ERR_INVALID_ARGUMENT, "reference cycle");
    CHECK_FAILS(lx_tree_set_path(t, "sub/x/up", lx_tree_v(t)), LX_ERR_INVALID_ARGUMENT, "reference cycle");
    CHECK_EQ_INT(lx_tree_len(sub), 0);
    /* Sharing is by reference: a change through `sub` is seen through `t`. */
    lx_tree_set(sub, "k", lx_int_v(5));
    CHECK_EQ_INT(lx_tree_find(t, "sub/k")->u.i, 5);
    lx_tree_release(sub);
    lx_tree_release(t);
}

static void test_paths(void) {
    int64_t ks[] = {2, 3};
    lx_array *k = arr(2, ks, 0);
    lx_tree *t = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set_path(t, "params/Dense_0/kernel", lx_array_v(k)), LX_OK);
    CHECK_EQ_INT(lx_tree_set_path(t, "params/Dense_0/bias", lx_int_v(0)), LX_OK);
    CHECK_EQ_INT(lx_tree_set_path(t, "params/Dense_1/kernel", lx_int_v(1)), LX_OK);
    const lx_value *v = NULL;
    CHECK_EQ_INT(lx_tree_get_path(t, "params/Dense_0/kernel", &v), LX_OK);
    CHECK(v && v->kind == LX_V_ARRAY && v->u.array == k);
    CHECK_EQ_INT(k->refcount, 2);
    CHECK_EQ_INT(lx_tree_get_path(t, "params", &v), LX_OK);
    CHECK(v->kind == LX_V_TREE && lx_tree_len(v->u.tree) == 2);
    CHECK_STR(lx_tree_key(v->u.tree, 1), "Dense_1");

    CHECK_FAILS(lx_tree_get_path(t, "params/Dense_0/scale", &v), LX_ERR_NOT_FOUND,
                "tree: no key 'scale' at params/Dense_0");
    CHECK_FAILS(lx_tree_get_path(t, "batch_stats/mean", &v), LX_ERR_NOT_FOUND, "tree: no key 'batch_stats' at the root");
    CHECK_FAILS(lx_tree_get_path(t, "params/Dense_0/kernel/x", &v), LX_ERR_NOT_FOUND,
                "tree: no key 'x' at params/Dense_0/kernel: it is a leaf (float32[2,3]), not a map");
    CHECK_FAILS(lx_tree_get_path(t, "params//kernel", &v), LX_ERR_INVALID_ARGUMENT,
                "tree: invalid path 'params//kernel' (empty key)");
    CHECK_FAILS(lx_tree_get_path(t, "", &v), LX_ERR_INVALID_ARGUMENT, "tree: invalid path '' (empty key)");
    CHECK_FAILS(lx_tree_get_path(t, "params/", &v), LX_ERR_INVALID_ARGUMENT, "invalid path 'params/'");

    /* find answers without recording a failure. */
    lx_clear_error();
    CHECK(lx_tree_find(t, "params/Dense_1/kernel") != NULL);
    CHECK(lx_tree_find(t, "params/nope") == NULL);
    CHECK(lx_tree_find(t, "a//b") == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_OK);

    /* A leaf in the way of set_path: an error, and nothing is created. */
    lx_tree *before = lx_tree_copy(t);
    CHECK_FAILS(lx_tree_set_path(t, "params/Dense_0/kernel/extra/deep", lx_int_v(1)), LX_ERR_TYPE,
                "tree: cannot set 'params/Dense_0/kernel/extra/deep': 'kernel' at params/Dense_0 is a leaf "
                "(float32[2,3]), not a map");
    CHECK(lx_tree_equal(t, before));
    CHECK_FAILS(lx_tree_set_path(t, "params/a//b", lx_int_v(1)), LX_ERR_INVALID_ARGUMENT, "empty key");
    CHECK(lx_tree_equal(t, before));
    lx_tree_release(before);

    /* set_path replaces in place (a map may be replaced by a leaf, as `d['a'] = 5` would). */
    CHECK_EQ_INT(lx_tree_set_path(t, "params/Dense_0", lx_int_v(9)), LX_OK);
    CHECK_EQ_INT(lx_tree_find(t, "params/Dense_0")->u.i, 9);
    CHECK_EQ_INT(k->refcount, 1); /* the old sub-map and its kernel are gone */

    /* delete_path keeps parents, even empty. */
    CHECK_EQ_INT(lx_tree_delete_path(t, "params/Dense_1/kernel"), LX_OK);
    CHECK(lx_tree_find(t, "params/Dense_1") != NULL);
    CHECK_EQ_INT(lx_tree_len(lx_tree_find(t, "params/Dense_1")->u.tree), 0);
    CHECK_FAILS(lx_tree_delete_path(t, "params/Dense_1/kernel"), LX_ERR_NOT_FOUND,
                "tree: no key 'kernel' at params/Dense_1");
    CHECK_FAILS(lx_tree_delete_path(t, "cache/x/y"), LX_ERR_NOT_FOUND, "tree: no key 'cache' at the root");
    CHECK_FAILS(lx_tree_delete_path(t, "params/Dense_0/x"), LX_ERR_TYPE,
                "tree: cannot delete 'params/Dense_0/x': 'Dense_0' at params is a leaf (9), not a map");
    /* Set into an existing (empty) map. */
    CHECK_EQ_INT(lx_tree_set_path(t, "params/Dense_1/w", lx_bool_v(true)), LX_OK);
    CHECK(lx_tree_find(t, "params/Dense_1/w")->u.b);
    lx_tree_release(t);
    lx_release(k);
}

/* {params: {Dense_0: {kernel, bias}, empty: {}}, batch_stats: {}, step: 3} */
static lx_tree *sample(lx_array *kernel, lx_array *bias) {
    lx_tree *t = lx_tree_new();
    lx_tree_set_path(t, "params/Dense_0/kernel", lx_array_v(kernel));
    lx_tree_set_path(t, "params/Dense_0/bias", lx_array_v(bias));
    /* Two distinct empty maps: one map stored twice would be one map seen at two paths. */
    lx_tree *e1 = lx_tree_new(), *e2 = lx_tree_new();
    lx_tree_set_path(t, "params/empty", lx_tree_v(e1));
    lx_tree_set(t, "batch_stats", lx_tree_v(e2));
    lx_tree_release(e1);
    lx_tree_release(e2);
    lx_tree_set(t, "step", lx_int_v(3));
    return t;
}

static void test_flatten_unflatten(void) {
    int64_t ks[] = {2, 3}, bs[] = {3};
    lx_array *k = arr(2, ks, 0), *b = arr(1, bs, 10);
    lx_tree *t = sample(k, b);
    lx_flat f;
    CHECK_EQ_INT(lx_tree_flatten(t, &f), LX_OK);
    /* Depth first, insertion order, empty sub-maps dropped. */
    CHECK_EQ_INT(f.len, 3);
    CHECK_STR(f.items[0].path, "params/Dense_0/kernel");
    CHECK_STR(f.items[1].path, "params/Dense_0/bias");
    CHECK_STR(f.items[2].path, "step");
    CHECK(f.items[0].value.u.array == k);
    CHECK_EQ_INT(f.items[2].value.u.i, 3);

    lx_tree *u = NULL;
    CHECK_EQ_INT(lx_tree_unflatten(&f, &u), LX_OK);
    /* Round trip: equal but for the dropped empty maps. */
    CHECK(!lx_tree_equal(t, u));
    lx_tree_delete_path(t, "params/empty");
    lx_tree_delete(t, "batch_stats");
    CHECK(lx_tree_equal(t, u));
    CHECK_STR(lx_tree_key(u, 0), "params");
    CHECK(lx_tree_find(u, "params/Dense_0/kernel")->u.array == k);
    lx_tree_release(u);

    /* A repeated path: later wins, in the first one's place. */
    lx_flat_append(&f, "params/Dense_0/kernel", lx_int_v(7));
    CHECK_EQ_INT(lx_tree_unflatten(&f, &u), LX_OK);
    CHECK_EQ_INT(lx_tree_find(u, "params/Dense_0/kernel")->u.i, 7);
    CHECK_STR(lx_tree_key(lx_tree_find(u, "params/Dense_0")->u.tree, 0), "kernel");
    lx_tree_release(u);

    /* A path that is a leaf and a map, either way round. */
    lx_flat_append(&f, "step/x", lx_int_v(1));
    u = (lx_tree *)1;
    CHECK_FAILS(lx_tree_unflatten(&f, &u), LX_ERR_TYPE, "tree: cannot set 'step/x': 'step' at the root is a leaf (3)");
    CHECK(u == NULL);
    lx_flat_free(&f);
    CHECK_EQ_INT(f.len, 0);
    lx_flat_append(&f, "a/b", lx_int_v(1));
    lx_flat_append(&f, "a", lx_int_v(2));
    CHECK_FAILS(lx_tree_unflatten(&f, &u), LX_ERR_TYPE, "tree: path 'a' is both a leaf and a map");
    lx_flat_free(&f);

    /* A tree-valued item is copied: later paths never write into the caller's map. */
    lx_tree *given = lx_tree_new();
    lx_flat_append(&f, "a", lx_tree_v(given));
    lx_flat_append(&f, "a/b", lx_int_v(2));
    CHECK_EQ_INT(lx_tree_unflatten(&f, &u), LX_OK);
    CHECK_EQ_INT(lx_tree_find(u, "a/b")->u.i, 2);
    CHECK(lx_tree_find(u, "a")->u.tree != given);
    CHECK_EQ_INT(lx_tree_len(given), 0);
    lx_tree_release(u);
    lx_flat_free(&f);
    lx_tree_release(given);

    /* The empty tree flattens to nothing and back. */
    lx_tree *e = lx_tree_new();
    CHECK_EQ_INT(lx_tree_flatten(e, &f), LX_OK);
    CHECK_EQ_INT(f.len, 0);
    CHECK_EQ_INT(lx_tree_unflatten(&f, &u), LX_OK);
    CHECK(lx_tree_equal(e, u));
    lx_tree_release(u);
    lx_tree_release(e);
    lx_flat_free(&f);
    lx_tree_release(t);
    lx_release(k);
    lx_release(b);
}

static void test_merge(void) {
    lx_tree *a = lx_tree_new(), *b = lx_tree_new();
    lx_tree_set_path(a, "params/x", lx_int_v(1));
    lx_tree_set_path(a, "params/y", lx_int_v(2));
    lx_tree_set_path(a, "cache/c", lx_int_v(3));
    lx_tree_set_path(a, "empty/e", lx_int_v(0));
    lx_tree_delete_path(a, "empty/e"); /* leaves an empty map */
    lx_tree_set_path(b, "params/y", lx_int_v(20));
    lx_tree_set_path(b, "params/z", lx_int_v(30));
    lx_tree_set_path(b, "batch_stats/m", lx_int_v(4));
    lx_tree *m = NULL;
    CHECK_EQ_INT(lx_tree_merge(a, b, &m), LX_OK);
    CHECK_EQ_INT(lx_tree_find(m, "params/x")->u.i, 1);
    CHECK_EQ_INT(lx_tree_find(m, "params/y")->u.i, 20); /* later wins */
    CHECK_EQ_INT(lx_tree_find(m, "params/z")->u.i, 30);
    CHECK_EQ_INT(lx_tree_find(m, "cache/c")->u.i, 3);
    CHECK_EQ_INT(lx_tree_find(m, "batch_stats/m")->u.i, 4);
    CHECK(lx_tree_find(m, "empty") == NULL); /* empty sub-maps dropped */
    /* Order: a's paths first (y keeps its place), then b's new ones. */
    const lx_tree *p = lx_tree_find(m, "params")->u.tree;
    CHECK_STR(lx_tree_key(p, 0), "x");
    CHECK_STR(lx_tree_key(p, 1), "y");
    CHECK_STR(lx_tree_key(p, 2), "z");
    CHECK_STR(lx_tree_key(m, 2), "batch_stats");
    /* The inputs are untouched. */
    CHECK_EQ_INT(lx_tree_find(a, "params/y")->u.i, 2);
    CHECK(lx_tree_find(a, "params/z") == NULL);
    lx_tree_release(m);

    /* Structure conflicts are errors, whichever side has the leaf. */
    lx_tree *c = lx_tree_new();
    lx_tree_set(c, "params", lx_int_v(5));
    m = (lx_tree *)1;
    CHECK_FAILS(lx_tree_merge(a, c, &m), LX_ERR_TYPE, "tree: path 'params' is both a leaf and a map");
    CHECK(m == NULL);
    CHECK_FAILS(lx_tree_merge(c, a, &m), LX_ERR_TYPE, "'params' at the root is a leaf (5), not a map");
    CHECK_FAILS(lx_tree_merge(a, NULL, &m), LX_ERR_FAILED_INPUT, "tree_merge: tree is NULL");
    lx_tree_release(c);
    lx_tree_release(a);
    lx_tree_release(b);
}

static void test_copy_equal(void) {
    int64_t ks[] = {2, 3}, bs[] = {3};
    lx_array *k = arr(2, ks, 0), *b = arr(1, bs, 10);
    lx_tree *t = sample(k, b);
    lx_tree *c = lx_tree_copy(t);
    CHECK(c && lx_tree_equal(t, c));
    /* New maps, shared leaves. */
    CHECK(lx_tree_find(c, "params")->u.tree != lx_tree_find(t, "params")->u.tree);
    CHECK(lx_tree_find(c, "params/Dense_0/kernel")->u.array == k);
    CHECK_EQ_INT(k->refcount, 3);
    lx_tree_set_path(c, "params/Dense_0/extra", lx_int_v(1));
    CHECK(lx_tree_find(t, "params/Dense_0/extra") == NULL);
    CHECK(!lx_tree_equal(t, c));
    lx_tree_release(c);
    CHECK_EQ_INT(k->refcount, 2);

    /* Equality ignores key order (Python dict semantics) but not values or nesting. */
    lx_tree *x = lx_tree_new(), *y = lx_tree_new();
    lx_tree_set_path(x, "a/p", lx_int_v(1));
    lx_tree_set_path(x, "a/q", lx_array_v(k));
    lx_tree_set_path(x, "b", lx_str_v("s"));
    lx_tree_set_path(y, "b", lx_str_v("s"));
    lx_tree_set_path(y, "a/q", lx_array_v(k));
    lx_tree_set_path(y, "a/p", lx_int_v(1));
    CHECK(lx_tree_equal(x, y) && lx_tree_equal(y, x));
    /* Arrays compare by content. */
    lx_array *k2 = lx_array_copy(k);
    lx_tree_set_path(y, "a/q", lx_array_v(k2));
    CHECK(lx_tree_equal(x, y));
    lx_f32(k2)[0] = 99;
    CHECK(!lx_tree_equal(x, y));
    lx_tree_set_path(y, "a/q", lx_array_v(k));
    lx_tree_set_path(y, "a/p", lx_int_v(2));
    CHECK(!lx_tree_equal(x, y));
    lx_tree_set_path(y, "a/p", lx_int_v(1));
    lx_tree_set_path(y, "c", lx_none());
    CHECK(!lx_tree_equal(x, y) && !lx_tree_equal(y, x));
    CHECK(lx_tree_equal(NULL, NULL) && !lx_tree_equal(x, NULL));
    lx_release(k2);
    lx_tree_release(x);
    lx_tree_release(y);
    lx_tree_release(t);
    lx_release(k);
    lx_release(b);
}

/* Doubles every f32 array; keeps other leaves; fails on a leaf named "bad". */
static lx_status double_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    int *calls = user;
    (*calls)++;
    if (strstr(path, "bad")) {
        *out = lx_array_v(lx_array_scalar_f32(1)); /* a partial result the map must free */
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "double_leaf: cannot map %s", path);
    }
    if (leaf->kind != LX_V_ARRAY) return lx_value_dup(leaf, out);
    lx_array *a = lx_array_copy(leaf->u.array);
    for (int64_t i = 0; i < a->size; i++) lx_f32(a)[i] *= 2;
    *out = lx_array_v(a); /* the new tree takes this reference */
    return LX_OK;
}

static void test_map_and_counts(void) {
    int64_t ks[] = {2, 3}, bs[] = {3};
    lx_array *k = arr(2, ks, 1), *b = arr(1, bs, 10);
    lx_tree *t = sample(k, b);
    int64_t live = lx_array_live_count();
    int calls = 0;
    lx_tree *m = NULL;
    CHECK_EQ_INT(lx_tree_map(t, double_leaf, &calls, &m), LX_OK);
    CHECK_EQ_INT(calls, 3);
    CHECK_EQ_INT(lx_array_live_count(), live + 2);
    const lx_array *mk = lx_tree_find(m, "params/Dense_0/kernel")->u.array;
    CHECK(mk != k);
    CHECK_NEAR(lx_f32(mk)[5], 12, 0);
    CHECK_EQ_INT(lx_tree_find(m, "step")->u.i, 3);
    /* The structure is kept, empty maps included. */
    CHECK(lx_tree_find(m, "params/empty") && lx_tree_find(m, "batch_stats"));
    CHECK_STR(lx_tree_key(m, 0), "params");
    lx_tree_release(m);
    CHECK_EQ_INT(lx_array_live_count(), live);

    lx_tree_set_path(t, "params/bad", lx_array_v(b));
    m = (lx_tree *)1;
    CHECK_FAILS(lx_tree_map(t, double_leaf, &calls, &m), LX_ERR_INVALID_ARGUMENT,
                "double_leaf: cannot map params/bad");
    CHECK(m == NULL);
    CHECK_EQ_INT(lx_array_live_count(), live);
    CHECK_FAILS(lx_tree_map(t, NULL, NULL, &m), LX_ERR_INVALID_ARGUMENT, "function is NULL");
    lx_tree_delete_path(t, "params/bad");

    CHECK_EQ_INT(lx_tree_count_leaves(t), 3);
    CHECK_EQ_INT(lx_tree_count_params(t), 9);
    /* Variables and boxes count their values. */
    lx_variable *v = NULL;
    lx_box *bx = NULL;
    lx_variable_new(&lx_BatchStat, b, &v);
    const char *names[] = {"embed"};
    lx_box_partitioned(b, 1, names, NULL, &bx);
    lx_tree_set_path(t, "batch_stats/mean", lx_var_v(v));
    lx_tree_set_path(t, "params/boxed", lx_box_v(bx));
    CHECK_EQ_INT(lx_tree_count_leaves(t), 5);
    CHECK_EQ_INT(lx_tree_count_params(t), 15);
    CHECK_EQ_INT(lx_tree_count_leaves(NULL), 0);
    lx_variable_release(v);
    lx_box_release(bx);
    lx_tree_release(t);
    lx_release(k);
    lx_release(b);
}

/* One store, two views: a Variable put in two trees is one object over one array. */
static void test_shared_variable(void) {
    int64_t ks[] = {4, 4};
    int64_t live = lx_array_live_count();
    lx_array *k = arr(2, ks, 0);
    lx_variable *v = NULL;
    CHECK_EQ_INT(lx_variable_new(&lx_Param, k, &v), LX_OK);
    lx_tree *linen = lx_tree_new(), *nnx = lx_tree_new();
    lx_tree_set_path(linen, "params/Dense_0/kernel", lx_array_v(k));
    lx_tree_set_path(nnx, "Dense_0/kernel", lx_var_v(v));
    CHECK_EQ_INT(lx_array_live_count(), live + 1);
    CHECK(lx_variable_get_value(lx_tree_find(nnx, "Dense_0/kernel")->u.var) ==
          lx_tree_find(linen, "params/Dense_0/kernel")->u.array);
    /* A write through the NNX view is seen by the Linen view. */
    lx_f32(lx_variable_get_value(lx_tree_find(nnx, "Dense_0/kernel")->u.var))[0] = 42;
    CHECK_NEAR(lx_f32(lx_tree_find(linen, "params/Dense_0/kernel")->u.array)[0], 42, 0);
    CHECK_EQ_INT(k->refcount, 3); /* ours, the Variable's, the Linen tree's */
    lx_tree_release(linen);
    lx_tree_release(nnx);
    lx_variable_release(v);
    CHECK_EQ_INT(k->refcount, 1);
    lx_release(k);
    CHECK_EQ_INT(lx_array_live_count(), live);
}

/* {params: {Dense_0: {kernel: Param, bias: Param}, w: Partitioned}, batch_stats: {mean: array},
 *  step: 7, empty: {}} */
static lx_tree *printed_tree(void) {
    int64_t ks[] = {2, 3}, bs[] = {3}, ws[] = {4, 2};
    lx_array *k = arr(2, ks, 0), *b = arr(1, bs, 0), *w = arr(2, ws, 0), *m = arr(1, bs, 0);
    lx_variable *vk, *vb;
    lx_box *bw;
    lx_variable_new(&lx_Param, k, &vk);
    lx_variable_new(&lx_Param, b, &vb);
    const char *names[] = {"layers", NULL};
    lx_box_partitioned(w, 2, names, NULL, &bw);
    lx_tree *t = lx_tree_new(), *e = lx_tree_new();
    lx_tree_set_path(t, "params/Dense_0/kernel", lx_var_v(vk));
    lx_tree_set_path(t, "params/Dense_0/bias", lx_var_v(vb));
    lx_tree_set_path(t, "params/w", lx_box_v(bw));
    lx_tree_set_path(t, "batch_stats/mean", lx_array_v(m));
    lx_tree_set(t, "step", lx_int_v(7));
    lx_tree_set(t, "empty", lx_tree_v(e));
    lx_variable_release(vk);
    lx_variable_release(vb);
    lx_box_release(bw);
    lx_tree_release(e);
    lx_release(k);
    lx_release(b);
    lx_release(w);
    lx_release(m);
    return t;
}

static void test_printers(void) {
    lx_tree *t = printed_tree();
    char *s = print_to_string(lx_tree_fprint_table, t);
    CHECK_STR(s,
              "path                   type         shape   dtype    params\n"
              "params/Dense_0/kernel  Param        (2, 3)  float32       6\n"
              "params/Dense_0/bias    Param        (3,)    float32       3\n"
              "params/w               Partitioned  (4, 2)  float32       8\n"
              "batch_stats/mean       Array        (3,)    float32       3\n"
              "step                   int                                0\n"
              "Total                                                    20\n");
    free(s);
    s = print_to_string(lx_tree_fprint, t);
    CHECK_STR(s,
              "{\n"
              "  'params': {\n"
              "    'Dense_0': {\n"
              "      'kernel': Param(float32[2,3]),\n"
              "      'bias': Param(float32[3]),\n"
              "    },\n"
              "    'w': Partitioned(value=float32[4,2], names=('layers', None), mesh=None),\n"
              "  },\n"
              "  'batch_stats': {\n"
              "    'mean': float32[3],\n"
              "  },\n"
              "  'step': 7,\n"
              "  'empty': {},\n"
              "}\n");
    free(s);
    lx_tree_release(t);

    /* The empty tree: a header and a zero total. */
    lx_tree *e = lx_tree_new();
    s = print_to_string(lx_tree_fprint_table, e);
    CHECK_STR(s,
              "path   type  shape  dtype  params\n"
              "Total                           0\n");
    free(s);
    s = print_to_string(lx_tree_fprint, e);
    CHECK_STR(s, "{}\n");
    free(s);
    CHECK_FAILS(lx_tree_fprint(NULL, e), LX_ERR_INVALID_ARGUMENT, "FILE is NULL");
    CHECK_FAILS(lx_tree_fprint_table(NULL, e), LX_ERR_INVALID_ARGUMENT, "FILE is NULL");
    CHECK_FAILS(lx_tree_fprint(stderr, NULL), LX_ERR_FAILED_INPUT, "tree is NULL");
    CHECK_FAILS(lx_tree_fprint_table(stderr, NULL), LX_ERR_FAILED_INPUT, "tree is NULL");
    lx_tree_release(e);
}

int main(void) {
    RUN(test_map_basics);
    RUN(test_paths);
    RUN(test_flatten_unflatten);
    RUN(test_merge);
    RUN(test_copy_equal);
    RUN(test_map_and_counts);
    RUN(test_shared_variable);
    RUN(test_printers);
    return lx_test_finish();
}
