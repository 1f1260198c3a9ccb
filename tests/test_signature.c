/* Flax-conformant argument handling (issue 12, items 5 and 6): a method call Python would refuse
 * fails with Python's TypeError text; options that are accepted are honoured (MultiHeadAttention's
 * decode and sow_weights); a NULL state is refused by nnx_update. */
#include "lx_test.h"
#include "../src/core/signature.h"

static nnx_rngs *seed(uint64_t s) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(s, &r), LX_OK);
    return r;
}

static lx_status call_status(nnx_module *m, lx_call c) {
    lx_value out = lx_none();
    lx_clear_error();
    lx_status s = nnx_call(m, NULL, &c, &out);
    lx_value_free(&out);
    return s;
}

static void test_check_sig(void) {
    lx_array *x = lx_autorelease(lx_array_full_f32(1, (int64_t[]){2}, 1.0f));
    lx_value a = lx_array_v(x);
    const char *sig = "inputs_q, inputs_k=None, *, mask=None, deterministic";
    CHECK_FAILS(lx_call_check_sig("M", "f", sig, &(lx_call){3, (lx_value[]){a, a, a}, 0, NULL}), LX_ERR_TYPE,
                "M.f() takes from 2 to 3 positional arguments but 4 were given");
    CHECK_FAILS(lx_call_check_sig("M", "f", sig, &(lx_call){1, (lx_value[]){a}, 0, NULL}), LX_ERR_TYPE,
                "M.f() missing 1 required keyword-only argument: 'deterministic'");
    CHECK_FAILS(lx_call_check_sig("M", "f", sig, &(lx_call){0, NULL, 1, LX_KWARGS(LX_KW_BOOL("deterministic", true))}),
                LX_ERR_TYPE, "M.f() missing 1 required positional argument: 'inputs_q'");
    CHECK_FAILS(lx_call_check_sig("M", "f", "a, b, c", &(lx_call){0, NULL, 0, NULL}), LX_ERR_TYPE,
                "M.f() missing 3 required positional arguments: 'a', 'b', and 'c'");
    CHECK_FAILS(lx_call_check_sig("M", "f", "a, b", &(lx_call){0, NULL, 0, NULL}), LX_ERR_TYPE,
                "M.f() missing 2 required positional arguments: 'a' and 'b'");
    CHECK_FAILS(lx_call_check_sig("M", "f", "", &(lx_call){1, (lx_value[]){a}, 0, NULL}), LX_ERR_TYPE,
                "M.f() takes 1 positional argument but 2 were given");
    CHECK_EQ_INT(lx_call_check_sig("M", "f", sig, &(lx_call){2, (lx_value[]){a, a}, 2,
                                                             LX_KWARGS(LX_KW_BOOL("deterministic", true), LX_KW("mask", a))}),
                 LX_OK);
    CHECK_EQ_INT(lx_call_check_sig("M", "f", "x, **kwargs", &(lx_call){1, (lx_value[]){a}, 1, LX_KWARGS(LX_KW_INT("z", 1))}),
                 LX_OK);
}

static void test_nnx_linear_args(void) {
    nnx_rngs *r = seed(0);
    nnx_linear *lin = NULL;
    CHECK_EQ_INT(nnx_linear_new(2, 3, r, &lin), LX_OK);
    nnx_module *m = (nnx_module *)lin;
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (int64_t[]){1, 2}, 1.0f));
    lx_value xv = lx_array_v(x);
    CHECK_FAILS(call_status(m, (lx_call){1, (lx_value[]){xv}, 1, LX_KWARGS(LX_KW_BOOL("foo", false))}), LX_ERR_TYPE,
                "Linear.__call__() got an unexpected keyword argument 'foo'");
    CHECK_FAILS(call_status(m, (lx_call){2, (lx_value[]){xv, xv}, 0, NULL}), LX_ERR_TYPE,
                "Linear.__call__() takes 2 positional arguments but 3 were given");
    CHECK_FAILS(call_status(m, (lx_call){0, NULL, 0, NULL}), LX_ERR_TYPE,
                "Linear.__call__() missing 1 required positional argument: 'inputs'");
    CHECK_FAILS(call_status(m, (lx_call){1, (lx_value[]){xv}, 1, LX_KWARGS(LX_KW("inputs", xv))}), LX_ERR_TYPE,
                "Linear.__call__() got multiple values for argument 'inputs'");
    CHECK_EQ_INT(call_status(m, (lx_call){0, NULL, 1, LX_KWARGS(LX_KW("inputs", xv))}), LX_OK);

    /* nnx_update with a NULL state (a failed call's result) is refused, never "no update" */
    lx_tree *states[1] = {NULL};
    lx_clear_error();
    CHECK_FAILS(nnx_update(m, 1, states), LX_ERR_FAILED_INPUT, "update: state 0 is NULL");
    nnx_module_release(m);
    nnx_rngs_release(r);
}

static void test_linen_dense_args(void) {
    linen_module *d = NULL;
    lx_call dc = LX_CALL_KWARGS(LX_KW_INT("features", 3));
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &dc, &d), LX_OK);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (int64_t[]){1, 2}, 1.0f));
    lx_tree *vars = NULL;
    CHECK_FAILS(linen_init(d, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x, x), NULL, &vars), LX_ERR_TYPE,
                "Dense.__call__() takes 2 positional arguments but 3 were given");
    CHECK(vars == NULL);
    lx_call kc = {1, (lx_value[]){lx_array_v(x)}, 1, LX_KWARGS(LX_KW_BOOL("deterministic", true))};
    CHECK_FAILS(linen_init(d, LINEN_KEY(lx_key_from_seed(0)), &kc, NULL, &vars), LX_ERR_TYPE,
                "Dense.__call__() got an unexpected keyword argument 'deterministic'");
    CHECK_EQ_INT(linen_init(d, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &vars), LX_OK);
    lx_tree_release(vars);
    linen_module_release(d);
}

static nnx_module *mha(nnx_rngs *r, int ndecode, lx_value decode) {
    lx_call c = {2, LX_VALUES(lx_int_v(2), lx_int_v(4)), ndecode, LX_KWARGS(LX_KW("decode", decode))};
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&NNX_MHA_TYPE, &c, r, &m), LX_OK);
    return m;
}

static void test_mha_decode_and_sow(void) {
    nnx_rngs *r = seed(0);
    lx_array *x = lx_autorelease(lx_array_full_f32(3, (int64_t[]){1, 3, 4}, 0.5f));
    lx_value xv = lx_array_v(x);
    /* decode None at construction and call: Flax's first_from error */
    nnx_module *m = mha(r, 0, lx_none());
    CHECK_FAILS(call_status(m, (lx_call){1, (lx_value[]){xv}, 0, NULL}), LX_ERR_INVALID_ARGUMENT,
                "No `decode` argument was provided to MultiHeadAttention as either a __call__ argument, class "
                "attribute, or nnx.flag.");
    /* decode=True at the call: no cache was initialised */
    CHECK_FAILS(call_status(m, (lx_call){1, (lx_value[]){xv}, 1, LX_KWARGS(LX_KW_BOOL("decode", true))}),
                LX_ERR_INVALID_ARGUMENT, "Autoregressive cache not initialized, call ``init_cache`` first.");
    CHECK_EQ_INT(call_status(m, (lx_call){1, (lx_value[]){xv}, 1, LX_KWARGS(LX_KW_BOOL("decode", false))}), LX_OK);
    CHECK_FAILS(call_status(m, (lx_call){4, (lx_value[]){xv, xv, xv, xv}, 0, NULL}), LX_ERR_TYPE,
                "MultiHeadAttention.__call__() takes from 2 to 4 positional arguments but 5 were given");
    nnx_module_release(m);
    /* decode=True at construction is accepted (as in Flax); the call needs the cache */
    m = mha(r, 1, lx_bool_v(true));
    CHECK_FAILS(call_status(m, (lx_call){1, (lx_value[]){xv}, 0, NULL}), LX_ERR_INVALID_ARGUMENT,
                "Autoregressive cache not initialized");
    nnx_module_release(m);

    /* sow_weights=True: the softmax weights become the Intermediate tuple 'attention_weights' */
    m = mha(r, 1, lx_bool_v(false));
    lx_value plain = lx_none(), sown = lx_none();
    CHECK_EQ_INT(nnx_call(m, NULL, &(lx_call){1, (lx_value[]){xv}, 0, NULL}, &plain), LX_OK);
    lx_call sc = {1, (lx_value[]){xv}, 1, LX_KWARGS(LX_KW_BOOL("sow_weights", true))};
    CHECK_EQ_INT(nnx_call(m, NULL, &sc, &sown), LX_OK);
    /* the same output as without sowing */
    if (plain.kind == LX_V_ARRAY && sown.kind == LX_V_ARRAY)
        for (int64_t i = 0; i < plain.u.array->size; i++) CHECK_NEAR(lx_f32(sown.u.array)[i], lx_f32(plain.u.array)[i], 1e-6);
    lx_value att = lx_none(); /* borrowed */
    CHECK_EQ_INT(nnx_getattr(m, "attention_weights", &att), LX_OK);
    CHECK(att.kind == LX_V_TREE && lx_tree_len(att.u.tree) == 1);
    const lx_value *w0 = att.kind == LX_V_TREE ? lx_tree_get(att.u.tree, "0") : NULL;
    CHECK(w0 && w0->kind == LX_V_VARIABLE && lx_variable_type(w0->u.var) == &lx_Intermediate);
    if (w0 && w0->kind == LX_V_VARIABLE) {
        lx_array *w = lx_variable_get_value(w0->u.var);
        CHECK(lx_shape_eq(w, 4, (int64_t[]){1, 2, 3, 3})); /* (batch, heads, q, k) */
        /* identical inputs at every position: uniform weights 1/3 */
        for (int64_t i = 0; w && i < w->size; i++) CHECK_NEAR(lx_f32(w)[i], 1.0 / 3.0, 1e-6);
    }
    /* a second sow appends */
    lx_value again = lx_none();
    CHECK_EQ_INT(nnx_call(m, NULL, &sc, &again), LX_OK);
    CHECK_EQ_INT(nnx_getattr(m, "attention_weights", &att), LX_OK);
    CHECK(att.kind == LX_V_TREE && lx_tree_len(att.u.tree) == 2 && lx_tree_get(att.u.tree, "1"));
    lx_value_free(&again);
    lx_value_free(&plain);
    lx_value_free(&sown);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

int main(void) {
    size_t mark = lx_pool_open();
    RUN(test_check_sig);
    RUN(test_nnx_linear_args);
    RUN(test_linen_dense_args);
    RUN(test_mha_decode_and_sow);
    lx_pool_close(mark);
    return lx_test_finish();
}
