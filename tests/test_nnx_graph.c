/* NNX object model, graph API, filters and Rngs on small hand-written module types. */
#include "linnx/nnx.h"
#include "lx_test.h"

#include "fixtures/nnx_fixtures.h"

/* ---- a module type: Block(features) with a Param, a BatchStat, an optional child and a list */
typedef struct {
    int64_t features;
} block_cfg;
typedef struct {
    nnx_module base;
    block_cfg cfg;
    lx_variable *w, *stats;
    nnx_module *child;
    nnx_list items;
} block;

static lx_status block_init(nnx_module *self, const lx_call *c, nnx_rngs *rngs) {
    block *b = (block *)self;
    lx_key k = {{0, 0}};
    if (rngs) LX_TRY(nnx_rngs_draw(rngs, "params", &k));
    lx_initializer ln = lx_init_lecun_normal(), z = lx_init_zeros();
    int64_t s2[] = {b->cfg.features, b->cfg.features}, s1[] = {b->cfg.features};
    LX_TRY(nnx_param_new(&lx_Param, &ln, k, LX_F32, 2, s2, NULL, &b->w));
    return nnx_param_new(&lx_BatchStat, &z, k, LX_F32, 1, s1, NULL, &b->stats);
}

/* y = sum(x * w, axis=1) + stats, and stats += 1 (a stateful call). */
static lx_status block_call(nnx_module *self, const lx_call *c, lx_value *out) {
    block *b = (block *)self;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_array *stats = lx_variable_get_value(b->stats);
    lx_array *y = lx_add(lx_sum(lx_mul(x, lx_variable_get_value(b->w)), LX_AXES(1), false), stats);
    if (!y) return lx_last_status();
    LX_TRY(lx_variable_set_value(b->stats, lx_add_scalar(stats, 1.0f), false));
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}

static const lx_field BLOCK_CONFIG[] = {LX_FIELD_REQUIRED_INT(block_cfg, features)};
static const nnx_field BLOCK_FIELDS[] = {NNX_VAR(block, w), NNX_VAR(block, stats), NNX_CHILD(block, child),
                                         NNX_LIST(block, items)};
static const nnx_method BLOCK_METHODS[] = {NNX_METHOD("__call__", block_call)};
static const nnx_type BLOCK = {
    .name = "Block", .size = sizeof(block), .fields = BLOCK_FIELDS, .nfields = LX_COUNT(BLOCK_FIELDS), .config = BLOCK_CONFIG,
    .nconfig = LX_COUNT(BLOCK_CONFIG), .config_offset = offsetof(block, cfg), .methods = BLOCK_METHODS, .nmethods = LX_COUNT(BLOCK_METHODS),
    .init = block_init,
};

static nnx_module *new_block(int64_t f, nnx_rngs *r) {
    nnx_module *m = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(f));
    CHECK_EQ_INT(nnx_module_new(&BLOCK, &c, r, &m), LX_OK);
    return m;
}

static bool key_is(lx_key k, const uint32_t *want) { return k.k[0] == want[0] && k.k[1] == want[1]; }

static uint32_t count_of(nnx_rngs *r, const char *stream) {
    lx_value v;
    if (nnx_getattr(nnx_rngs_module(r), stream, &v) != LX_OK) return 9999;
    nnx_module *s = nnx_module_from_value(&v);
    lx_value c;
    if (!s || nnx_getattr(s, "count", &c) != LX_OK) return 9999;
    return lx_u32(lx_variable_get_value(c.u.var))[0];
}

/* ------------------------------------------------------------------ Rngs */

static void test_rngs_draws(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    lx_key k;
    const uint32_t *want[] = {FX_DRAW_0, FX_DRAW_1, FX_DRAW_2, FX_DRAW_3};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(nnx_rngs_draw(r, i % 2 ? "params" : "dropout", &k), LX_OK); /* fall back to default */
        CHECK(key_is(k, want[i]));
    }
    CHECK_EQ_U32(count_of(r, "default"), 4);
    CHECK(nnx_rngs_has(r, "default") && !nnx_rngs_has(r, "params"));
    CHECK_EQ_INT(nnx_rngs_num_streams(r), 1);
    CHECK_STR(nnx_rngs_stream_name(r, 0), "default");
    CHECK(nnx_rngs_stream_name(r, 1) == NULL);

    /* State: rngs streams are graph nodes with RngKey / RngCount Variables, tagged. */
    lx_tree *st = NULL;
    CHECK_EQ_INT(nnx_state(nnx_rngs_module(r), 0, NULL, &st), LX_OK);
    const lx_value *cnt = lx_tree_find(st, "default/count"), *key = lx_tree_find(st, "default/key");
    CHECK(cnt && cnt->kind == LX_V_VARIABLE && lx_variable_type(cnt->u.var) == &lx_RngCount);
    CHECK(key && key->kind == LX_V_VARIABLE && lx_variable_type(key->u.var) == &lx_RngKey);
    CHECK_EQ_INT(lx_tree_len(lx_tree_find(st, "default")->u.tree), 2);
    CHECK_STR(lx_tree_key(lx_tree_find(st, "default")->u.tree, 0), "count"); /* sorted */
    lx_tree_release(st);
    nnx_filter f = NNX_NOT_RNG_STATE;
    CHECK_EQ_INT(nnx_state(nnx_rngs_module(r), 1, &f, &st), LX_OK);
    CHECK_EQ_INT(lx_tree_len(st), 0);
    lx_tree_release(st);
    nnx_rngs_release(r);

    /* Named streams without default: the error names the stream. */
    nnx_stream_spec specs[] = {{"params", false, 1, {{0, 0}}}, {"dropout", false, 2, {{0, 0}}}};
    CHECK_EQ_INT(nnx_rngs_new(2, specs, &r), LX_OK);
    CHECK_FAILS(nnx_rngs_draw(r, "noise", &k), LX_ERR_RNG, "No RngStream named 'noise' found in Rngs.");
    nnx_rngs *f2 = NULL;
    CHECK_EQ_INT(nnx_rngs_fork(r, &f2), LX_OK);
    CHECK_EQ_INT(nnx_rngs_num_streams(f2), 2);
    CHECK_EQ_U32(count_of(r, "params"), 1);
    CHECK_EQ_U32(count_of(f2, "params"), 0);
    lx_value v;
    CHECK_EQ_INT(nnx_getattr(nnx_rngs_module(f2), "params", &v), LX_OK);
    lx_value kv;
    CHECK_EQ_INT(nnx_getattr(nnx_module_from_value(&v), "key", &kv), LX_OK);
    CHECK(lx_u32(lx_variable_get_value(kv.u.var))[0] == FX_FORK_PARAMS[0] &&
          lx_u32(lx_variable_get_value(kv.u.var))[1] == FX_FORK_PARAMS[1]);
    CHECK_EQ_INT(nnx_getattr(nnx_rngs_module(f2), "dropout", &v), LX_OK);
    CHECK_EQ_INT(nnx_getattr(nnx_module_from_value(&v), "key", &kv), LX_OK);
    CHECK(lx_u32(lx_variable_get_value(kv.u.var))[1] == FX_FORK_DROPOUT[1]);
    nnx_rngs_release(f2);

    /* Explicit keys, duplicates and bad names. */
    nnx_stream_spec dup[] = {{"a", true, 0, {{1, 2}}}, {"a", false, 3, {{0, 0}}}};
    CHECK_FAILS(nnx_rngs_new(2, dup, &f2), LX_ERR_INVALID_ARGUMENT, "stream 'a' given twice");
    nnx_stream_spec bad[] = {{"a/b", false, 0, {{0, 0}}}};
    CHECK_FAILS(nnx_rngs_new(1, bad, &f2), LX_ERR_INVALID_ARGUMENT, "invalid stream name 'a/b'");
    CHECK_EQ_INT(nnx_rngs_new(1, dup, &f2), LX_OK);
    CHECK_EQ_INT(nnx_rngs_draw(f2, "a", &k), LX_OK);
    CHECK(k.k[0] == lx_key_fold_in((lx_key){{1, 2}}, 0).k[0]);
    nnx_rngs_release(f2);

    /* stream fork: tag of the stream it came from. */
    nnx_module *s = NULL;
    CHECK_EQ_INT(nnx_rngs_fork_stream(r, "dropout", &s), LX_OK);
    CHECK_EQ_INT(nnx_rngs_stream_draw(s, &k), LX_OK);
    CHECK_EQ_INT(nnx_getattr(s, "tag", &v), LX_OK);
    CHECK_STR(v.u.s, "dropout");
    CHECK_FAILS(nnx_rngs_stream_draw(nnx_rngs_module(r), &k), LX_ERR_TYPE, "not an RngStream");
    nnx_module_release(s);
    nnx_rngs_release(r);
}

static void test_reseed(void) {
    nnx_stream_spec specs[] = {{"dropout", false, 3, {{0, 0}}}, {"params", false, 4, {{0, 0}}}};
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_new(2, specs, &r), LX_OK);
    nnx_module *fork = NULL;
    CHECK_EQ_INT(nnx_rngs_fork_stream(r, "dropout", &fork), LX_OK);
    nnx_module *holder = new_block(2, r);
    lx_value fv = nnx_module_v(fork);
    CHECK_EQ_INT(nnx_setattr(holder, "drop", &fv), LX_OK);
    lx_key k1, k2, a, b;
    CHECK_EQ_INT(nnx_rngs_stream_draw(fork, &k1), LX_OK);
    CHECK_EQ_INT(nnx_rngs_reseed(holder, "dropout", 7), LX_OK);
    CHECK_EQ_INT(nnx_rngs_stream_draw(fork, &a), LX_OK);
    CHECK(key_is(a, (const uint32_t[]){lx_key_fold_in((lx_key){{FX_RESEED_7[0], FX_RESEED_7[1]}}, 0).k[0],
                                       lx_key_fold_in((lx_key){{FX_RESEED_7[0], FX_RESEED_7[1]}}, 0).k[1]}));
    CHECK_EQ_INT(nnx_rngs_stream_draw(fork, &k2), LX_OK);
    CHECK_EQ_INT(nnx_rngs_reseed(holder, "dropout", 7), LX_OK);
    CHECK_EQ_INT(nnx_rngs_stream_draw(fork, &b), LX_OK);
    CHECK(key_is(a, b.k));
    CHECK(!key_is(a, k1.k));
    /* A tag nobody has changes nothing; the params stream was not a graph member anyway. */
    CHECK_EQ_INT(nnx_rngs_reseed(holder, "nothing", 1), LX_OK);
    CHECK_FAILS(nnx_rngs_reseed(holder, "", 1), LX_ERR_INVALID_ARGUMENT, "invalid stream name");
    nnx_module_release(fork);
    nnx_module_release(holder);
    nnx_rngs_release(r);
}

/* ------------------------------------------------------------------ modules */

static void test_module_basics(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *m = new_block(3, r);
    CHECK(m && m->refcount == 1 && m->type == &BLOCK);
    CHECK_EQ_INT(((const block_cfg *)nnx_config(m))->features, 3);
    lx_value v;
    CHECK_EQ_INT(nnx_getattr(m, "features", &v), LX_OK);
    CHECK(v.kind == LX_V_INT && v.u.i == 3);
    CHECK_EQ_INT(nnx_getattr(m, "w", &v), LX_OK);
    CHECK(v.kind == LX_V_VARIABLE && lx_variable_type(v.u.var) == &lx_Param);
    /* The kernel is lecun_normal from draw 0 (the key is the spec's). */
    lx_initializer ln = lx_init_lecun_normal();
    lx_array *want = lx_init_apply(&ln, (lx_key){{FX_DRAW_0[0], FX_DRAW_0[1]}}, LX_F32, 2, (int64_t[]){3, 3});
    CHECK(lx_array_equal(lx_variable_get_value(v.u.var), want));
    CHECK_EQ_INT(nnx_getattr(m, "child", &v), LX_OK);
    CHECK(v.kind == LX_V_NONE);
    CHECK_FAILS(nnx_getattr(m, "nope", &v), LX_ERR_NOT_FOUND, "'Block' object has no attribute 'nope'");

    /* Config binding errors carry Python's wording. */
    nnx_module *bad = NULL;
    lx_call none = LX_NO_CALL;
    CHECK_FAILS(nnx_module_new(&BLOCK, &none, r, &bad), LX_ERR_TYPE,
                "Block.__init__() missing 1 required positional argument: 'features'");
    lx_call kw = LX_CALL_KWARGS(LX_KW_INT("features", 2), LX_KW_INT("feature", 2));
    CHECK_FAILS(nnx_module_new(&BLOCK, &kw, r, &bad), LX_ERR_TYPE, "unexpected keyword argument 'feature'");
    lx_call rk = LX_CALL_KWARGS(LX_KW_INT("features", 2), LX_KW("rngs", lx_int_v(1)));
    CHECK_FAILS(nnx_module_new(&BLOCK, &rk, NULL, &bad), LX_ERR_TYPE, "argument 'rngs' must be an Rngs");
    CHECK(bad == NULL);
    /* rngs may come as a keyword (how the bridge forwards kwargs). */
    lx_call rk2 = LX_CALL_KWARGS(LX_KW_INT("features", 2), LX_KW("rngs", nnx_module_v(nnx_rngs_module(r))));
    CHECK_EQ_INT(nnx_module_new(&BLOCK, &rk2, NULL, &bad), LX_OK);
    nnx_module_release(bad);

    /* Dynamic attributes: ordered, replace in place, delete; fields and config by name. */
    lx_tree *t = lx_tree_new();
    lx_value tv = lx_tree_v(t), iv = lx_int_v(5), sv = lx_str_v("hi");
    CHECK_EQ_INT(nnx_setattr(m, "zeta", &iv), LX_OK);
    CHECK_EQ_INT(nnx_setattr(m, "alpha", &tv), LX_OK);
    CHECK_EQ_INT(nnx_setattr(m, "zeta", &sv), LX_OK);
    CHECK_EQ_INT(nnx_attr_count(m), 2);
    CHECK_STR(nnx_attr_name(m, 0), "zeta");
    CHECK_EQ_INT(nnx_getattr(m, "zeta", &v), LX_OK);
    CHECK_STR(v.u.s, "hi");
    CHECK_EQ_INT(nnx_delattr(m, "zeta"), LX_OK);
    CHECK_FAILS(nnx_delattr(m, "zeta"), LX_ERR_NOT_FOUND, "has no attribute 'zeta'");
    CHECK_FAILS(nnx_delattr(m, "w"), LX_ERR_TYPE, "declared by the type");
    CHECK_FAILS(nnx_setattr(m, "a/b", &iv), LX_ERR_INVALID_ARGUMENT, "invalid attribute name");
    CHECK_FAILS(nnx_setattr(m, "w", &iv), LX_ERR_TYPE, "Block.w holds a Variable or None");
    lx_value self = nnx_module_v(m);
    CHECK_FAILS(nnx_setattr(m, "child", &self), LX_ERR_INVALID_ARGUMENT, "cannot contain itself");
    /* Nor inside a tree, nor in a config field: either would be a reference cycle that never
     * frees (module values are counted). */
    lx_tree *owner = lx_tree_new();
    lx_tree_set_path(owner, "deep/owner", self);
    lx_value ov = lx_tree_v(owner);
    CHECK_FAILS(nnx_setattr(m, "extra", &ov), LX_ERR_INVALID_ARGUMENT, "cannot contain itself");
    CHECK_FAILS(nnx_setattr(m, "features", &self), LX_ERR_INVALID_ARGUMENT, "cannot contain itself");
    lx_tree_release(owner);
    lx_value f9 = lx_int_v(9);
    CHECK_EQ_INT(nnx_setattr(m, "features", &f9), LX_OK); /* config by name */
    CHECK_EQ_INT(((const block_cfg *)nnx_config(m))->features, 9);
    lx_value fs = lx_str_v("x");
    CHECK_FAILS(nnx_setattr(m, "features", &fs), LX_ERR_TYPE, "argument 'features' (position 0) must be an int, got str");
    CHECK_EQ_INT(((const block_cfg *)nnx_config(m))->features, 9);
    lx_tree_release(t);

    /* Methods. */
    lx_value out;
    CHECK_FAILS(nnx_call(m, "encode", NULL, &out), LX_ERR_NOT_FOUND, "'Block' object has no attribute 'encode'");
    CHECK(nnx_find_method(&BLOCK, NULL) == &BLOCK_METHODS[0]);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

/* Outer graph: a and b share one Block; the Block's list holds a LoRAParam and the shared Block's
 * own Variable w again. */
static nnx_module *make_shared_graph(nnx_rngs *r, nnx_module **shared_out) {
    nnx_module *outer = new_block(2, r), *shared = new_block(2, r);
    lx_value sv = nnx_module_v(shared);
    CHECK_EQ_INT(nnx_setattr(outer, "child", &sv), LX_OK);
    CHECK_EQ_INT(nnx_setattr(outer, "b_alias", &sv), LX_OK);
    lx_variable *lora = NULL;
    lx_array *z = lx_array_new(LX_F32, 1, (int64_t[]){2});
    CHECK_EQ_INT(lx_variable_new(&lx_LoRAParam, z, &lora), LX_OK);
    lx_release(z);
    CHECK_EQ_INT(nnx_list_append(&((block *)outer)->items, lx_var_v(lora)), LX_OK);
    CHECK_EQ_INT(nnx_list_append(&((block *)outer)->items, lx_var_v(((block *)shared)->w)), LX_OK);
    lx_variable_release(lora);
    *shared_out = shared;
    nnx_module_release(shared); /* outer holds it */
    return outer;
}

static lx_array *run(nnx_module *m) {
    lx_array *x = lx_array_full_f32(1, (int64_t[]){2}, 1.5f);
    lx_array *y = nnx_call_array(m, lx_autorelease(x));
    return y;
}

static void test_split_merge(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *shared;
    nnx_module *outer = make_shared_graph(r, &shared);
    CHECK_EQ_INT(shared->refcount, 2); /* the child field and the b_alias attribute */

    nnx_graphdef *g = NULL;
    lx_tree *st[3];
    nnx_filter fs[] = {NNX_OF_TYPE(&lx_Param), NNX_OF_TYPE(&lx_BatchStat)};
    CHECK_EQ_INT(nnx_split(outer, 2, fs, &g, st), LX_OK);
    /* Params: w, the shared block's w, items/0 (LoRAParam is a Param); items/1 is the shared
     * block's w again. Shared objects appear once, under their first path in sorted order:
     * b_alias < child < items < stats < w. */
    lx_flat f = {0};
    CHECK_EQ_INT(nnx_state_flatten(st[0], &f), LX_OK);
    const char *want[] = {"b_alias/w", "items/0", "w"};
    CHECK_EQ_INT(f.len, 3);
    for (size_t i = 0; i < f.len && i < 3; i++) CHECK_STR(f.items[i].path, want[i]);
    lx_flat_free(&f);
    CHECK(lx_tree_find(st[1], "b_alias/stats") && lx_tree_find(st[1], "stats"));
    CHECK(!lx_tree_find(st[1], "child"));
    CHECK_EQ_INT(lx_tree_count_leaves(st[2]), 0);
    /* The state holds the module's own Variables. */
    CHECK(lx_tree_find(st[0], "w")->u.var == ((block *)outer)->w);

    lx_array *y0 = lx_retain(run(outer));
    nnx_module *m2 = NULL;
    CHECK_EQ_INT(nnx_merge(g, 3, st, &m2), LX_OK);
    CHECK(m2 && m2 != outer && m2->type == &BLOCK);
    block *b2 = (block *)m2;
    /* Sharing survives: b_alias is the same module as child, items/1 is child's w. */
    lx_value av;
    CHECK_EQ_INT(nnx_getattr(m2, "b_alias", &av), LX_OK);
    CHECK(nnx_module_from_value(&av) == b2->child);
    CHECK(b2->items.n == 2 && b2->items.items[1].u.var == ((block *)b2->child)->w);
    CHECK(lx_variable_type(b2->items.items[0].u.var) == &lx_LoRAParam);
    CHECK_EQ_INT(((const block_cfg *)nnx_config(m2))->features, 2);
    /* Same Variables (one store), so the outputs are bit-identical: y = x.w + stats, stats+1. */
    lx_array *y1 = run(m2);
    CHECK(y1 && !lx_array_equal(y0, y1)); /* stats moved by the first call... */
    lx_array *s = lx_variable_get_value(((block *)outer)->stats);
    CHECK(lx_array_get(s, 0) == 2.0); /* ...shared between outer and m2 */
    lx_release(y0);

    /* graphdef is stable and equal for equal structure. */
    nnx_graphdef *g2 = NULL;
    CHECK_EQ_INT(nnx_graphdef_of(m2, &g2), LX_OK);
    CHECK(nnx_graphdef_equal(g, g2));
    nnx_graphdef_free(g2);
    nnx_module *other = new_block(3, r);
    CHECK_EQ_INT(nnx_graphdef_of(other, &g2), LX_OK);
    CHECK(!nnx_graphdef_equal(g, g2));
    nnx_graphdef_free(g2);
    nnx_module_release(other);

    /* Merge from plain arrays (a "pure" state) builds Variables of the recorded type. */
    lx_tree *pure = lx_tree_new();
    lx_flat all = {0};
    lx_tree *full = NULL;
    CHECK_EQ_INT(nnx_merge_state(3, st, &full), LX_OK);
    CHECK_EQ_INT(nnx_state_flatten(full, &all), LX_OK);
    for (size_t i = 0; i < all.len; i++)
        lx_tree_set_path(pure, all.items[i].path, lx_array_v(lx_variable_get_value(all.items[i].value.u.var)));
    lx_flat_free(&all);
    nnx_module *m3 = NULL;
    CHECK_EQ_INT(nnx_merge(g, 1, &pure, &m3), LX_OK);
    CHECK(lx_variable_type(((block *)m3)->stats) == &lx_BatchStat);
    CHECK(((block *)m3)->w != ((block *)outer)->w);
    CHECK(lx_variable_get_value(((block *)m3)->w) == lx_variable_get_value(((block *)outer)->w));
    nnx_module_release(m3);

    /* Merge errors: a missing leaf, an extra leaf, a bad leaf. Nothing is returned. */
    lx_tree *partial = lx_tree_copy(full);
    lx_tree_delete_path(partial, "b_alias/w");
    CHECK_FAILS(nnx_merge(g, 1, &partial, &m3), LX_ERR_NOT_FOUND, "merge: the state has no value for 'b_alias/w' (a Param float32[2,2])");
    CHECK(m3 == NULL);
    lx_tree_release(partial);
    partial = lx_tree_copy(full);
    lx_tree_set_path(partial, "child/extra", lx_var_v(((block *)outer)->w));
    CHECK_FAILS(nnx_merge(g, 1, &partial, &m3), LX_ERR_NOT_FOUND, "merge: the state has 'child/extra', which the graphdef does not have");
    lx_tree_set_path(partial, "child/extra", lx_int_v(1));
    lx_tree_delete_path(partial, "child/extra");
    lx_tree_set_path(partial, "w", lx_int_v(3));
    CHECK_FAILS(nnx_merge(g, 1, &partial, &m3), LX_ERR_TYPE, "the state value at 'w' is int");
    lx_tree_release(partial);
    lx_tree_release(full);
    lx_tree_release(pure);

    for (int i = 0; i < 3; i++) lx_tree_release(st[i]);
    nnx_graphdef_free(g);
    nnx_module_release(m2);
    nnx_module_release(outer);
    nnx_rngs_release(r);
}

static void test_roundtrip_bit_identical(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(1, &r), LX_OK);
    nnx_module *shared, *m = make_shared_graph(r, &shared);
    nnx_module *c = NULL;
    CHECK_EQ_INT(nnx_clone(m, &c), LX_OK);
    /* A clone has its own Variables and arrays; sharing inside it is kept. */
    CHECK(((block *)c)->w != ((block *)m)->w);
    CHECK(lx_variable_get_value(((block *)c)->w) != lx_variable_get_value(((block *)m)->w));
    CHECK(((block *)c)->items.items[1].u.var == ((block *)((block *)c)->child)->w);
    lx_array *a = lx_retain(run(m)), *b = run(c);
    CHECK(lx_array_equal(a, b));
    lx_release(a);
    /* split -> merge -> split gives the same graphdef; outputs equal after a round trip. */
    nnx_graphdef *g = NULL, *g2 = NULL;
    lx_tree *st = NULL, *st2 = NULL;
    CHECK_EQ_INT(nnx_split(c, 0, NULL, &g, &st), LX_OK);
    nnx_module *d = NULL;
    CHECK_EQ_INT(nnx_merge(g, 1, &st, &d), LX_OK);
    CHECK_EQ_INT(nnx_split(d, 0, NULL, &g2, &st2), LX_OK);
    CHECK(nnx_graphdef_equal(g, g2));
    CHECK(lx_tree_equal(st, st2));
    nnx_graphdef_free(g);
    nnx_graphdef_free(g2);
    lx_tree_release(st);
    lx_tree_release(st2);
    nnx_module_release(d);
    nnx_module_release(c);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

static bool only_stats(const char *path, const lx_variable *v, void *user) {
    (*(int *)user)++;
    return strstr(path, "stats") != NULL;
}

static void test_filters(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *shared, *m = make_shared_graph(r, &shared);
    nnx_module *drop = NULL;
    CHECK_EQ_INT(nnx_rngs_fork_stream(r, "dropout", &drop), LX_OK);
    lx_value dv = nnx_module_v(drop);
    CHECK_EQ_INT(nnx_setattr(m, "rngs", &dv), LX_OK);
    nnx_module_release(drop);

    struct {
        nnx_filter f;
        int n;
    } cases[] = {
        {NNX_OF_TYPE(&lx_Param), 3},       {NNX_OF_TYPE(&lx_LoRAParam), 1}, {NNX_OF_TYPE(&lx_BatchStat), 2},
        {NNX_OF_TYPE(&lx_RngState), 2},    {NNX_TAG("default"), 2},         {NNX_TAG("dropout"), 0},
        {NNX_EVERYTHING, 7},               {NNX_NOTHING, 0},                {NNX_PATH_CONTAINS("b_alias"), 2},
        {NNX_PATH_CONTAINS("b_alia"), 0},    {NNX_NOT_RNG_STATE, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lx_tree *s = NULL;
        CHECK_EQ_INT(nnx_state(m, 1, &cases[i].f, &s), LX_OK);
        LX_TEST_REPORT_((int)lx_tree_count_leaves(s) == cases[i].n, "filter case %zu: %zu leaves, want %d", i,
                        lx_tree_count_leaves(s), cases[i].n);
        lx_tree_release(s);
    }
    nnx_filter subs[] = {NNX_OF_TYPE(&lx_Param), NNX_PATH_CONTAINS("b_alias")};
    nnx_filter all = NNX_ALL(2, subs), any = NNX_ANY(2, subs);
    lx_tree *s = NULL;
    CHECK_EQ_INT(nnx_state(m, 1, &all, &s), LX_OK);
    CHECK_EQ_INT(lx_tree_count_leaves(s), 1);
    CHECK(lx_tree_find(s, "b_alias/w") != NULL);
    lx_tree_release(s);
    CHECK_EQ_INT(nnx_state(m, 1, &any, &s), LX_OK);
    CHECK_EQ_INT(lx_tree_count_leaves(s), 4);
    lx_tree_release(s);
    int calls = 0;
    nnx_filter fn = NNX_FN(only_stats, &calls);
    CHECK_EQ_INT(nnx_state(m, 1, &fn, &s), LX_OK);
    CHECK_EQ_INT(lx_tree_count_leaves(s), 2);
    CHECK_EQ_INT(calls, 7);
    lx_tree_release(s);
    /* Split: first match wins, the rest last. */
    lx_tree *st[3];
    nnx_filter two[] = {NNX_OF_TYPE(&lx_Variable), NNX_OF_TYPE(&lx_Param)};
    CHECK_EQ_INT(nnx_split(m, 2, two, NULL, st), LX_OK);
    CHECK_EQ_INT(lx_tree_count_leaves(st[0]), 7);
    CHECK_EQ_INT(lx_tree_count_leaves(st[1]), 0);
    for (int i = 0; i < 3; i++) lx_tree_release(st[i]);
    CHECK_FAILS(nnx_state(m, 1, NULL, &s), LX_ERR_INVALID_ARGUMENT, "bad filter list");
    nnx_module_release(m);
    nnx_rngs_release(r);
}

static void test_update(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *m = new_block(2, r);
    lx_variable *w = ((block *)m)->w;
    lx_array *ones = lx_array_full_f32(2, (int64_t[]){2, 2}, 1.0f);
    lx_variable *nw = NULL;
    CHECK_EQ_INT(lx_variable_new(&lx_Param, ones, &nw), LX_OK);
    lx_tree *st = lx_tree_new();
    lx_tree_set_path(st, "w", lx_var_v(nw));                    /* existing: value replaced in place */
    lx_tree_set_path(st, "extra", lx_var_v(nw));                /* new attribute */
    lx_tree_set_path(st, "cache/layer0/k", lx_var_v(nw));       /* new tree of Variables */
    CHECK_EQ_INT(nnx_update(m, 1, &st), LX_OK);
    CHECK(((block *)m)->w == w && lx_variable_get_value(w) == ones);
    lx_value v;
    CHECK_EQ_INT(nnx_getattr(m, "extra", &v), LX_OK);
    CHECK(v.kind == LX_V_VARIABLE && v.u.var == nw);
    CHECK_EQ_INT(nnx_getattr(m, "cache", &v), LX_OK);
    CHECK(v.kind == LX_V_TREE && lx_tree_find(v.u.tree, "layer0/k"));
    /* Inserted names are state now. */
    lx_tree *s2 = NULL;
    CHECK_EQ_INT(nnx_state(m, 0, NULL, &s2), LX_OK);
    /* nw is shared by cache/layer0/k and extra: once, under the first sorted path. */
    CHECK(lx_tree_find(s2, "cache/layer0/k") && !lx_tree_find(s2, "extra"));
    lx_tree_release(s2);
    /* A second update into the tree attribute inserts beside. */
    lx_tree_release(st);
    st = lx_tree_new();
    lx_tree_set_path(st, "cache/layer1/k", lx_var_v(nw));
    CHECK_EQ_INT(nnx_update(m, 1, &st), LX_OK);
    CHECK_EQ_INT(nnx_getattr(m, "cache", &v), LX_OK);
    CHECK(lx_tree_find(v.u.tree, "layer1/k") != NULL);
    lx_tree_release(st);

    /* Bad updates change nothing, even when an earlier path was fine. */
    lx_array *twos = lx_array_full_f32(2, (int64_t[]){2, 2}, 2.0f);
    st = lx_tree_new();
    lx_tree_set_path(st, "w", lx_array_v(twos));
    lx_tree_set_path(st, "features", lx_array_v(twos));
    CHECK_FAILS(nnx_update(m, 1, &st), LX_ERR_TYPE, "update: 'features' is a static attribute of Block");
    CHECK(lx_variable_get_value(w) == ones);
    lx_tree_delete_path(st, "features");
    lx_tree_set_path(st, "items/3", lx_array_v(twos));
    CHECK_FAILS(nnx_update(m, 1, &st), LX_ERR_NOT_FOUND, "no item '3' in a list of 0");
    lx_tree_delete_path(st, "items/3");
    lx_tree_set_path(st, "brand_new", lx_array_v(twos));
    CHECK_FAILS(nnx_update(m, 1, &st), LX_ERR_TYPE, "cannot insert a plain array at 'brand_new'");
    lx_tree_delete_path(st, "brand_new");
    lx_tree_set_path(st, "w2", lx_int_v(1));
    CHECK_FAILS(nnx_update(m, 1, &st), LX_ERR_TYPE, "the state value at 'w2' is int");
    lx_tree_delete_path(st, "w2");
    lx_tree_set_path(st, "child/w", lx_var_v(nw));
    CHECK_FAILS(nnx_update(m, 1, &st), LX_ERR_NOT_FOUND, "Block.child is None");
    lx_tree_release(st);
    st = lx_tree_new();
    lx_tree_set_path(st, "w/deeper", lx_var_v(nw));
    CHECK_FAILS(nnx_update(m, 1, &st), LX_ERR_TYPE, "reaches past a leaf");
    CHECK(lx_variable_get_value(w) == ones);
    lx_tree_release(st);
    /* Plain arrays update existing Variables. */
    st = lx_tree_new();
    lx_tree_set_path(st, "w", lx_array_v(twos));
    CHECK_EQ_INT(nnx_update(m, 1, &st), LX_OK);
    CHECK(lx_variable_get_value(w) == twos);
    lx_tree_release(st);

    /* Flax's Variable.update_from_state: a Variable in the state brings its metadata too (the
     * module's Variable object and type stay); a plain array changes only the value. */
    const char *names[] = {"in", "out"};
    lx_variable *sharded = NULL;
    CHECK_EQ_INT(lx_variable_new_kw(&lx_Param, ones, 2,
                                    LX_KWARGS(LX_KW("out_sharding", lx_strs_v(2, names)), LX_KW_STR("mesh", "m")),
                                    &sharded),
                 LX_OK);
    CHECK_EQ_INT(lx_variable_meta_set(w, "note", lx_int_v(3)), LX_OK);
    st = lx_tree_new();
    lx_tree_set_path(st, "w", lx_var_v(sharded));
    CHECK_EQ_INT(nnx_update(m, 1, &st), LX_OK);
    CHECK(((block *)m)->w == w && lx_variable_get_value(w) == ones && lx_variable_type(w) == &lx_Param);
    CHECK(lx_tree_equal(lx_variable_metadata(w), lx_variable_metadata(sharded)));
    CHECK(lx_variable_meta_get(w, "note") == NULL);
    CHECK(lx_variable_meta_get(w, "mesh") && strcmp(lx_variable_meta_get(w, "mesh")->u.s, "m") == 0);
    lx_tree_release(st);
    st = lx_tree_new();
    lx_tree_set_path(st, "w", lx_array_v(twos));
    CHECK_EQ_INT(nnx_update(m, 1, &st), LX_OK);
    CHECK(lx_variable_get_value(w) == twos && lx_tree_equal(lx_variable_metadata(w), lx_variable_metadata(sharded)));
    lx_tree_release(st);
    /* ... and a Variable without metadata clears it */
    st = lx_tree_new();
    lx_tree_set_path(st, "w", lx_var_v(nw));
    CHECK_EQ_INT(nnx_update(m, 1, &st), LX_OK);
    CHECK(lx_variable_get_value(w) == ones && lx_tree_len(lx_variable_metadata(w)) == 0);
    lx_tree_release(st);
    lx_variable_release(sharded);

    lx_release(ones);
    lx_release(twos);
    lx_variable_release(nw);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

typedef struct {
    char paths[32][64];
    int n;
} visit_log;

static lx_status log_visit(const char *path, const lx_value *node, void *user) {
    visit_log *l = user;
    if (l->n < 32) snprintf(l->paths[l->n++], 64, "%s", path);
    return LX_OK;
}

static void test_iter_graph(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *shared, *m = make_shared_graph(r, &shared);
    visit_log l = {.n = 0};
    CHECK_EQ_INT(nnx_iter_graph(m, log_visit, &l), LX_OK);
    /* Post-order over sorted names; the shared child is visited once, under b_alias. */
    const char *want[] = {"b_alias/items", "b_alias/stats", "b_alias/w", "b_alias", "items/0", "items",
                          "stats", "w", ""};
    CHECK_EQ_INT(l.n, 9);
    for (int i = 0; i < l.n && i < 9; i++) CHECK_STR(l.paths[i], want[i]);
    CHECK_EQ_INT(nnx_set_initializing(m, true), LX_OK);
    CHECK(m->initializing && shared->initializing);
    nnx_graphdef *g;
    lx_tree *st;
    CHECK_EQ_INT(nnx_split(m, 0, NULL, &g, &st), LX_OK);
    nnx_module *m2;
    CHECK_EQ_INT(nnx_merge(g, 1, &st, &m2), LX_OK);
    CHECK(m2->initializing && ((block *)m2)->child->initializing); /* survives split/merge */
    nnx_graphdef_free(g);
    lx_tree_release(st);
    nnx_module_release(m2);
    CHECK_EQ_INT(nnx_set_initializing(m, false), LX_OK);
    CHECK(!shared->initializing);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

static void test_eval_shape(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    int64_t live = lx_array_live_count();
    nnx_module *m = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(1000));
    CHECK_EQ_INT(nnx_eval_shape(&BLOCK, &c, r, &m), LX_OK);
    CHECK(!nnx_abstract_mode());
    lx_array *w = lx_variable_get_value(((block *)m)->w);
    CHECK(lx_is_abstract(w) && w->shape[0] == 1000 && w->shape[1] == 1000);
    CHECK(lx_is_abstract(lx_variable_get_value(((block *)m)->stats)));
    CHECK(lx_array_live_count() - live <= 4); /* two abstract arrays, no data */
    CHECK_EQ_U32(count_of(r, "default"), 0);   /* the caller's Rngs is untouched */
    nnx_module_release(m);
    lx_call bad = LX_NO_CALL;
    CHECK_FAILS(nnx_eval_shape(&BLOCK, &bad, r, &m), LX_ERR_TYPE, "missing 1 required positional argument");
    CHECK(!nnx_abstract_mode());
    nnx_rngs_release(r);
}

static void test_fprint(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    FILE *f = tmpfile();
    CHECK_EQ_INT(nnx_module_fprint_state(f, nnx_rngs_module(r), -1), LX_OK);
    nnx_module *m = new_block(2, NULL);
    CHECK_EQ_INT(nnx_module_fprint_state(f, m, 2), LX_OK);
    rewind(f);
    char buf[1024] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    CHECK(strstr(buf, "default/count RngCount uint32[]: 0 [rng]\n") != NULL);
    CHECK(strstr(buf, "default/key RngKey uint32[2]: 0 0 [rng]\n") != NULL);
    CHECK(strstr(buf, "stats BatchStat float32[2]: 0 0\n") != NULL);
    CHECK(strstr(buf, "w Param float32[2,2]: ") != NULL && strstr(buf, " ...\n") != NULL);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

static void test_shared_child_frees(void) {
    int64_t live = lx_array_live_count();
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *shared, *m = make_shared_graph(r, &shared);
    nnx_module_retain(shared);
    nnx_module_release(m);
    CHECK_EQ_INT(shared->refcount, 1); /* only our reference is left */
    nnx_module_release(shared);
    nnx_rngs_release(r);
    lx_pool_drain();
    CHECK_EQ_INT(lx_array_live_count(), live);
}

/* Module values are counted (value.h): a tree, a config VALUE field, a graphdef and a functional
 * each hold a reference of their own, and merge rebuilds a module kept in a tree. */
typedef struct {
    lx_value inner;
} holder_cfg;
typedef struct {
    nnx_module base;
    holder_cfg cfg;
} holder;
static lx_status holder_init(nnx_module *self, const lx_call *c, nnx_rngs *rngs) {
    (void)self, (void)c, (void)rngs;
    return LX_OK;
}
static const lx_field HOLDER_CONFIG[] = {LX_FIELD_VALUE(holder_cfg, inner)};
static const nnx_type HOLDER = {.name = "Holder", .size = sizeof(holder), .config = HOLDER_CONFIG, .nconfig = LX_COUNT(HOLDER_CONFIG),
                                .config_offset = offsetof(holder, cfg), .init = holder_init};

static void test_module_values_are_counted(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *inner = new_block(2, r), *outer = new_block(2, r);
    lx_value iv = nnx_module_v(inner);
    /* a tree attribute holding a module */
    lx_tree *t = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set(t, "blk", iv), LX_OK);
    CHECK_EQ_INT(inner->refcount, 2);
    lx_value tv = lx_tree_v(t);
    CHECK_EQ_INT(nnx_setattr(outer, "t", &tv), LX_OK);
    lx_tree_release(t);
    CHECK_EQ_INT(inner->refcount, 2);
    nnx_graphdef *g = NULL;
    lx_tree *st[1] = {NULL};
    CHECK_EQ_INT(nnx_split(outer, 0, NULL, &g, st), LX_OK);
    CHECK(lx_tree_find(st[0], "t/blk/w") != NULL);
    nnx_module *m2 = NULL;
    CHECK_EQ_INT(nnx_merge(g, 1, st, &m2), LX_OK);
    lx_value got;
    CHECK_EQ_INT(nnx_getattr(m2, "t", &got), LX_OK);
    const lx_value *blk = got.kind == LX_V_TREE ? lx_tree_get(got.u.tree, "blk") : NULL;
    nnx_module *rebuilt = blk ? nnx_module_from_value(blk) : NULL;
    CHECK(rebuilt && rebuilt != inner && rebuilt->type == &BLOCK);
    if (rebuilt) {
        CHECK_EQ_INT(rebuilt->refcount, 1); /* held by the merged tree only */
        lx_array *x = lx_autorelease(lx_array_full_f32(2, (const int64_t[]){1, 2}, 1.0f));
        CHECK(nnx_call_array(rebuilt, x) != NULL);
    }
    nnx_module_release(m2);
    nnx_graphdef_free(g);
    lx_tree_release(st[0]);

    /* a config VALUE field: the module, its graphdef and a merge each hold one */
    lx_call hc = LX_CALL_KWARGS(LX_KW("inner", iv));
    nnx_module *h = NULL;
    CHECK_EQ_INT(nnx_module_new(&HOLDER, &hc, NULL, &h), LX_OK);
    CHECK_EQ_INT(inner->refcount, 3);
    CHECK_EQ_INT(nnx_graphdef_of(h, &g), LX_OK);
    CHECK_EQ_INT(inner->refcount, 4);
    nnx_module *h2 = NULL;
    CHECK_EQ_INT(nnx_merge(g, 0, NULL, &h2), LX_OK);
    CHECK_EQ_INT(inner->refcount, 5);
    CHECK(nnx_module_from_value(&((holder *)h2)->cfg.inner) == inner);
    nnx_graphdef_free(g);
    nnx_module_release(h2);
    CHECK_EQ_INT(inner->refcount, 3);
    /* it is what the module was built from: fixed, like ToNNX's Linen module */
    lx_value other = nnx_module_v(outer);
    CHECK_FAILS(nnx_setattr(h, "inner", &other), LX_ERR_TYPE,
                "cannot set attribute 'inner' of 'Holder': it is fixed at construction");
    nnx_module_release(h);
    CHECK_EQ_INT(inner->refcount, 2);

    /* functional(Type)(module) keeps it */
    nnx_functional *f = NULL;
    CHECK_EQ_INT(nnx_functional_new(&HOLDER, &hc, &f), LX_OK);
    CHECK_EQ_INT(inner->refcount, 3);
    nnx_functional_free(f);
    CHECK_EQ_INT(inner->refcount, 2);

    nnx_module_release(outer); /* drops the tree attribute's reference */
    CHECK_EQ_INT(inner->refcount, 1);
    nnx_module_release(inner);
    nnx_rngs_release(r);
}

/* A type with a config and no constructor binds its arguments into the config; only a type with
 * neither takes no arguments (Python's object.__init__). */
typedef struct {
    int64_t features;
    double rate;
} cfg_only_cfg;
typedef struct {
    nnx_module base;
    cfg_only_cfg cfg;
} cfg_only;
static const lx_field CFG_ONLY_CONFIG[] = {LX_FIELD_INT(cfg_only_cfg, features, 1),
                                           LX_FIELD_FLOAT(cfg_only_cfg, rate, 0.5)};
static const nnx_type CFG_ONLY = {.name = "CfgOnly", .size = sizeof(cfg_only), .config = CFG_ONLY_CONFIG,
                                  .nconfig = LX_COUNT(CFG_ONLY_CONFIG), .config_offset = offsetof(cfg_only, cfg)};
static const nnx_type BARE = {.name = "Bare", .size = sizeof(nnx_module)};

static void test_config_without_init(void) {
    nnx_module *m = NULL;
    lx_call c = {1, LX_VALUES(lx_int_v(4)), 1, LX_KWARGS(LX_KW_FLOAT("rate", 0.25))};
    CHECK_EQ_INT(nnx_module_new(&CFG_ONLY, &c, NULL, &m), LX_OK);
    if (m) {
        const cfg_only_cfg *cfg = nnx_config(m);
        CHECK(cfg->features == 4 && cfg->rate == 0.25);
        nnx_module *m2 = NULL;
        CHECK_EQ_INT(nnx_clone(m, &m2), LX_OK);
        CHECK(m2 && ((const cfg_only_cfg *)nnx_config(m2))->features == 4);
        nnx_module_release(m2);
        nnx_module_release(m);
    }
    lx_call bad = LX_CALL_KWARGS(LX_KW_INT("feature", 4));
    CHECK_FAILS(nnx_module_new(&CFG_ONLY, &bad, NULL, &m), LX_ERR_TYPE,
                "CfgOnly.__init__() got an unexpected keyword argument 'feature'");
    CHECK_FAILS(nnx_module_new(&BARE, &c, NULL, &m), LX_ERR_TYPE, "Bare.__init__() takes no arguments");
    CHECK_EQ_INT(nnx_module_new(&BARE, NULL, NULL, &m), LX_OK);
    nnx_module_release(m);

    /* A malformed call record (a count without its array, a negative count, an unnamed keyword)
     * is refused before anything reads it (NULL kwargs with a count used to crash), *out NULL. */
    lx_call nokw = {0, NULL, 2, NULL};
    m = (nnx_module *)&m;
    CHECK_FAILS(nnx_module_new(&CFG_ONLY, &nokw, NULL, &m), LX_ERR_INVALID_ARGUMENT,
                "CfgOnly.__init__(): malformed call: 0 positional (NULL), 2 keyword (NULL)");
    CHECK(m == NULL);
    lx_call noargs = {1, NULL, 0, NULL};
    CHECK_FAILS(nnx_module_new(&CFG_ONLY, &noargs, NULL, &m), LX_ERR_INVALID_ARGUMENT,
                "CfgOnly.__init__(): malformed call: 1 positional (NULL), 0 keyword (NULL)");
    lx_call neg = {-1, NULL, 0, NULL};
    CHECK_FAILS(nnx_module_new(&CFG_ONLY, &neg, NULL, &m), LX_ERR_INVALID_ARGUMENT, "malformed call: -1 positional");
    lx_call negkw = {0, NULL, -1, NULL};
    CHECK_FAILS(nnx_module_new(&BARE, &negkw, NULL, &m), LX_ERR_INVALID_ARGUMENT,
                "Bare.__init__(): malformed call: 0 positional (NULL), -1 keyword (NULL)");
    lx_kwarg unnamed[] = {{NULL, lx_float_v(0.25)}};
    lx_call un = {0, NULL, 1, unnamed};
    CHECK_FAILS(nnx_module_new(&CFG_ONLY, &un, NULL, &m), LX_ERR_INVALID_ARGUMENT,
                "CfgOnly.__init__(): keyword argument 0 has no name");
    CHECK_FAILS(nnx_eval_shape(&CFG_ONLY, &nokw, NULL, &m), LX_ERR_INVALID_ARGUMENT, "malformed call");
    CHECK(m == NULL);
}

/* Config hooks and failures: a config that failed to bind or to copy was never config_retain'ed,
 * so nothing may config_release it. The hooks here count a reference held through an OBJ field. */
typedef struct {
    int refs;
} tally;
typedef struct {
    tally *t;
} tally_ref;
static tally TALLY;
static const tally_ref TALLY_REF = {&TALLY};
typedef struct {
    tally_ref ref;
    lx_ints dims;
} hooked_cfg;
typedef struct {
    nnx_module base;
    hooked_cfg cfg;
} hooked;
static lx_status hooked_retain(void *cfg) {
    if (((hooked_cfg *)cfg)->ref.t) ((hooked_cfg *)cfg)->ref.t->refs++;
    return LX_OK;
}
static void hooked_release(void *cfg) {
    if (((hooked_cfg *)cfg)->ref.t) ((hooked_cfg *)cfg)->ref.t->refs--;
}
static const lx_field HOOKED_CONFIG[] = {LX_FIELD_OBJ(hooked_cfg, ref, "tally_ref", &TALLY_REF),
                                         LX_FIELD_REQUIRED_INTS(hooked_cfg, dims)};
static const nnx_type HOOKED = {.name = "Hooked", .size = sizeof(hooked), .config = HOOKED_CONFIG, .nconfig = LX_COUNT(HOOKED_CONFIG),
                                .config_offset = offsetof(hooked, cfg), .config_retain = hooked_retain,
                                .config_release = hooked_release};

static void test_config_failures_release_nothing(void) {
    nnx_module *m = NULL;
    /* bind fails (a required argument is missing): the default OBJ was copied, never retained */
    CHECK_FAILS(nnx_module_new(&HOOKED, NULL, NULL, &m), LX_ERR_TYPE, "missing 1 required positional argument: 'dims'");
    CHECK_EQ_INT(TALLY.refs, 0);
    lx_call c = LX_CALL_KWARGS(LX_KW("dims", lx_ints_v(1, (const int64_t[]){2})));
    CHECK_EQ_INT(nnx_module_new(&HOOKED, &c, NULL, &m), LX_OK);
    CHECK_EQ_INT(TALLY.refs, 1);
    /* copying the config into a graphdef fails (a tuple longer than a config can hold): the
     * partial copy was never retained, so freeing the graphdef releases nothing */
    hooked *h = (hooked *)m;
    h->cfg.dims.n = LX_MAX_DIMS + 1;
    nnx_graphdef *g = NULL;
    CHECK_FAILS(nnx_graphdef_of(m, &g), LX_ERR_INVALID_ARGUMENT, "argument 'dims' has");
    CHECK(g == NULL);
    CHECK_EQ_INT(TALLY.refs, 1);
    h->cfg.dims.n = 1;
    CHECK_EQ_INT(nnx_graphdef_of(m, &g), LX_OK);
    CHECK_EQ_INT(TALLY.refs, 2);
    nnx_graphdef_free(g);
    CHECK_EQ_INT(TALLY.refs, 1);
    nnx_module_release(m);
    CHECK_EQ_INT(TALLY.refs, 0);
}

int main(void) {
    RUN(test_rngs_draws);
    RUN(test_reseed);
    RUN(test_module_basics);
    RUN(test_split_merge);
    RUN(test_roundtrip_bit_identical);
    RUN(test_filters);
    RUN(test_update);
    RUN(test_iter_graph);
    RUN(test_eval_shape);
    RUN(test_fprint);
    RUN(test_shared_child_frees);
    RUN(test_module_values_are_counted);
    RUN(test_config_without_init);
    RUN(test_config_failures_release_nothing);
    return lx_test_finish();
}
