/* Checkpoints across the bridge, end to end with real modules: a Linen model holding
 * to_linen(nnx.Linear(4, 8)) as its compact child (variables params/ToLinen_0/{kernel,bias}) and
 * its NNX twin nnx.Linear(4, 8) ({kernel, bias}) load each other's files through the documented
 * layout mapping, and both compute the same outputs afterwards. */
#include <unistd.h>

#include "linnx/linen.h"
#include "linnx/nnx_layers.h"
#include "linnx/to_linen.h"
#include "lx_test.h"

static lx_status outer_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_call ctor = LX_CALL_ARGS(lx_int_v(4), lx_int_v(8));
    linen_module *m = NULL;
    LX_TRY(bridge_to_linen(&NNX_LINEAR_TYPE, &ctor, NULL, &m));
    lx_status st = linen_call_child(s, m, NULL, NULL, c, out);
    linen_module_release(m);
    return st;
}
static const linen_method OUTER_METHODS[] = {LINEN_METHOD("__call__", outer_call)};
static const linen_type OUTER = {.name = "Outer", .methods = OUTER_METHODS, .nmethods = 1};

static lx_array *x_input(void) {
    float v[8] = {0.5f, -1, 2, 0.25f, 1, 1, -0.5f, 3};
    return lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, v));
}

static lx_array *linen_out(linen_module *m, const lx_tree *vars) {
    lx_call c = LX_ARGS(x_input());
    lx_value y = lx_none();
    if (linen_apply(m, vars, &c, LINEN_NO_RNGS, NULL, &y, NULL) != LX_OK || y.kind != LX_V_ARRAY) return NULL;
    lx_array *a = lx_autorelease(lx_retain(y.u.array));
    lx_value_free(&y);
    return a;
}

static void test_linen_file_into_nnx(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/linnx_bridge_%ld.msgpack", (long)getpid());
    linen_module *lm = NULL;
    CHECK(linen_module_new(&OUTER, NULL, &lm) == LX_OK);
    lx_call c = LX_ARGS(x_input());
    lx_tree *vars = NULL;
    CHECK(linen_init(lm, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &vars) == LX_OK);
    CHECK(lx_tree_find(vars, "params/ToLinen_0/kernel") != NULL);
    lx_array *y_linen = linen_out(lm, vars);
    CHECK(lx_ckpt_save(path, vars, LX_CKPT_AUTO) == LX_OK);

    /* the NNX twin, built from another seed, takes the Linen file */
    nnx_rngs *rngs = NULL;
    CHECK(nnx_rngs_from_seed(7, &rngs) == LX_OK);
    nnx_module *nm = NULL;
    lx_call ctor = LX_CALL_ARGS(lx_int_v(4), lx_int_v(8));
    CHECK(nnx_module_new(&NNX_LINEAR_TYPE, &ctor, rngs, &nm) == LX_OK);
    lx_array *y_before = nnx_call_array(nm, x_input());
    CHECK(y_linen && y_before && !lx_array_allclose(y_before, y_linen, 1e-6, 1e-6));
    lx_tree *loaded = NULL, *as_nnx = NULL, *state = NULL, *restored = NULL;
    CHECK(lx_ckpt_load(path, &loaded) == LX_OK);
    CHECK(lx_layout_convert(loaded, LX_LAYOUT_AUTO, LX_LAYOUT_NNX, NULL, &as_nnx) == LX_OK);
    CHECK(nnx_state(nm, 0, NULL, &state) == LX_OK);
    CHECK(lx_ckpt_restore(state, as_nnx, NULL, &restored) == LX_OK);
    CHECK(restored && nnx_update(nm, 1, &restored) == LX_OK);
    lx_array *y_nnx = nnx_call_array(nm, x_input());
    CHECK(y_nnx && y_linen && lx_array_max_ulp(y_nnx, y_linen, NULL) == 0);

    /* and back: the NNX state saved as a pure dict, loaded into the Linen variables */
    lx_tree *fresh = NULL, *pure = NULL, *as_linen = NULL, *loaded2 = NULL, *vars2 = NULL, *target = NULL;
    CHECK(nnx_state(nm, 0, NULL, &fresh) == LX_OK);
    CHECK(lx_ckpt_pure_dict(fresh, &pure) == LX_OK);
    CHECK(lx_ckpt_save(path, pure, LX_CKPT_AUTO) == LX_OK);
    CHECK(lx_ckpt_load(path, &loaded2) == LX_OK);
    CHECK(lx_layout_convert(loaded2, LX_LAYOUT_NNX, LX_LAYOUT_LINEN, "ToLinen_0", &as_linen) == LX_OK);
    /* the target: the Linen model initialized from another seed */
    CHECK(linen_init(lm, LINEN_KEY(lx_key_from_seed(3)), &c, NULL, &target) == LX_OK);
    CHECK(lx_ckpt_restore(target, as_linen, &(lx_restore_opts){false, true}, &vars2) == LX_OK);
    lx_array *y_back = vars2 ? linen_out(lm, vars2) : NULL;
    CHECK(y_back && lx_array_max_ulp(y_back, y_linen, NULL) == 0);
    /* a missing wrapper is caught with Flax's text */
    lx_tree *nowrap = NULL, *bad = NULL;
    CHECK(lx_layout_convert(loaded2, LX_LAYOUT_NNX, LX_LAYOUT_LINEN, NULL, &nowrap) == LX_OK);
    CHECK_FAILS(lx_ckpt_restore(target, nowrap, NULL, &bad), LX_ERR_NOT_FOUND,
                "target dict contains keys {'ToLinen_0'} which are not present in state dict at path ./params");
    lx_tree_release(nowrap);
    lx_tree_release(fresh);
    lx_tree_release(pure);
    lx_tree_release(as_linen);
    lx_tree_release(loaded2);
    lx_tree_release(vars2);
    lx_tree_release(target);
    lx_tree_release(loaded);
    lx_tree_release(as_nnx);
    lx_tree_release(state);
    lx_tree_release(restored);
    nnx_module_release(nm);
    nnx_rngs_release(rngs);
    lx_tree_release(vars);
    linen_module_release(lm);
    unlink(path);
}

int main(void) {
    RUN(test_linen_file_into_nnx);
    bridge_to_linen_cache_clear(); /* the ToLinen pool keeps the abstract module's placeholders */
    lx_pool_drain();
    CHECK_EQ_INT(lx_array_live_count(), 0);
    return lx_test_finish();
}
