/* Errors that say where they happened (issue 17): every message starts with the module path of
 * the method that was running, across Linen, NNX and the bridge in both directions; and a
 * failure the caller handled is never reported again for an unrelated NULL input. */
#include "lx_test.h"

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }
#define CHECK_ERROR_STARTS(prefix)                                                         \
    LX_TEST_REPORT_(starts_with(lx_last_error(), (prefix)), "last error \"%s\" does not start with \"%s\"", \
                    lx_last_error(), (prefix))

static lx_array *full(int64_t r, int64_t c, float v) {
    int64_t shape[] = {r, c};
    return lx_autorelease(lx_array_full_f32(2, shape, v));
}

/* ---- an NNX module with two Linear layers, l1: in -> hidden and l2: l2_in -> out ---- */
typedef struct {
    int64_t in, hidden, l2_in, out;
} two_config;
typedef struct {
    nnx_module base;
    two_config cfg;
    nnx_linear *l1, *l2;
} two_linear;

static lx_status two_init(nnx_module *m, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    two_linear *self = (two_linear *)m;
    LX_TRY(nnx_linear_new(self->cfg.in, self->cfg.hidden, rngs, &self->l1));
    return nnx_linear_new(self->cfg.l2_in, self->cfg.out, rngs, &self->l2);
}
/* The typed forwards, called directly: each still runs in its layer's frame. */
static lx_status two_call(nnx_module *m, const lx_call *call, lx_value *out) {
    two_linear *self = (two_linear *)m;
    lx_array *x;
    LX_TRY(lx_call_array(call, 0, "x", &x));
    return linen_return_array(out, nnx_linear_forward(self->l2, lx_relu(nnx_linear_forward(self->l1, x))));
}
static const lx_field TWO_CONFIG[] = {
    LX_FIELD_REQUIRED_INT(two_config, in), LX_FIELD_REQUIRED_INT(two_config, hidden),
    LX_FIELD_REQUIRED_INT(two_config, l2_in), LX_FIELD_REQUIRED_INT(two_config, out)};
static const nnx_field TWO_FIELDS[] = {NNX_CHILD(two_linear, l1), NNX_CHILD(two_linear, l2)};
static const nnx_method TWO_METHODS[] = {NNX_METHOD("__call__", two_call)};
static const nnx_type TWO = {
    .name = "TwoLinear", .size = sizeof(two_linear), .init = two_init,
    .fields = TWO_FIELDS, .nfields = LX_COUNT(TWO_FIELDS), .methods = TWO_METHODS, .nmethods = LX_COUNT(TWO_METHODS),
    .config = TWO_CONFIG, .nconfig = LX_COUNT(TWO_CONFIG), .config_offset = offsetof(two_linear, cfg)};

static lx_status new_two(int64_t in, int64_t hidden, int64_t l2_in, int64_t out, nnx_module **m) {
    nnx_rngs *rngs = NULL;
    LX_TRY(nnx_rngs_from_seed(0, &rngs));
    lx_call c = LX_CALL_KWARGS(LX_KW_INT("in", in), LX_KW_INT("hidden", hidden), LX_KW_INT("l2_in", l2_in),
                               LX_KW_INT("out", out));
    lx_status s = nnx_module_new(&TWO, &c, rngs, m);
    nnx_rngs_release(rngs);
    return s;
}

static void test_nnx_paths(void) {
    nnx_module *m = NULL;
    /* l2 takes 3 features but l1 makes 8: the failure is in l2 */
    CHECK_EQ_INT(new_two(4, 8, 3, 2, &m), LX_OK);
    lx_value y;
    lx_clear_error();
    CHECK_EQ_INT(nnx_call(m, NULL, &LX_ARGS(full(2, 4, 1.0f)), &y), LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("l2: dot_general");
    /* an input of the wrong width fails in l1 */
    lx_clear_error();
    CHECK_EQ_INT(nnx_call(m, NULL, &LX_ARGS(full(2, 5, 1.0f)), &y), LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("l1: dot_general");
    CHECK_ERROR_HAS("contracting dimensions");
    /* a typed forward from user code runs at the root: no path, and nothing left on the stack */
    lx_clear_error();
    CHECK(nnx_linear_forward(((two_linear *)m)->l1, full(2, 5, 1.0f)) == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("dot_general");
    CHECK_STR(lx_frame_current_path(), "");
    CHECK(lx_frame_top(NULL) == NULL);
    nnx_module_release(m);
}

/* ---- Linen: a parent whose child Dense_1 sees the wrong width at apply ---- */
static lx_array *mlp_call(linen_scope *s, lx_array *x) {
    return linen_dense(s, NULL, 2, lx_relu(linen_dense(s, NULL, 8, x)));
}
static const linen_method MLP_METHODS[] = {LINEN_ARRAY_METHOD("__call__", mlp_call)};
static const linen_type MLP = {.name = "MLP", .methods = MLP_METHODS, .nmethods = LX_COUNT(MLP_METHODS)};

static void test_linen_paths(void) {
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&MLP, NULL, &m), LX_OK);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(full(1, 4, 1.0f)), NULL, &vars), LX_OK);
    lx_value y = lx_none();
    lx_clear_error();
    CHECK_EQ_INT(linen_apply(m, vars, LINEN_NO_RNGS, &LX_ARGS(full(1, 3, 1.0f)), NULL, &y, NULL), LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("Dense_0: ");
    CHECK_ERROR_HAS("kernel");
    CHECK(lx_frame_top(NULL) == NULL);
    lx_tree_release(vars);
    linen_module_release(m);
}

/* ---- the bridge: ToLinen_0 (a compact child of a Linen module) holding TwoLinear ---- */
static lx_array *outer_call(linen_scope *s, lx_array *x) {
    linen_module *t = BRIDGE_TO_LINEN(&TWO, LX_KW_INT("in", 4), LX_KW_INT("hidden", 8), LX_KW_INT("l2_in", 3),
                                      LX_KW_INT("out", 2));
    lx_array *y = t ? linen_call_array(s, t, NULL, x) : NULL;
    linen_module_release(t);
    return y;
}
static const linen_method OUTER_METHODS[] = {LINEN_ARRAY_METHOD("__call__", outer_call)};
static const linen_type OUTER = {.name = "Outer", .methods = OUTER_METHODS, .nmethods = LX_COUNT(OUTER_METHODS)};

static void test_bridge_paths(void) {
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&OUTER, NULL, &m), LX_OK);
    lx_tree *vars = NULL;
    lx_clear_error();
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(full(1, 4, 1.0f)), NULL, &vars),
                 LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("ToLinen_0/l2: dot_general");
    CHECK(vars == NULL);
    lx_clear_error();
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(full(1, 5, 1.0f)), NULL, &vars),
                 LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("ToLinen_0/l1: dot_general: contracting dimensions");
    CHECK(lx_frame_top(NULL) == NULL);
    linen_module_release(m);
    bridge_to_linen_cache_clear();
}

/* ---- ToNNX: a Linen Dense held by an NNX parent under attribute `block` ---- */
typedef struct {
    nnx_module base;
    nnx_module *block;
} holder;
static lx_status holder_call(nnx_module *m, const lx_call *call, lx_value *out) {
    return nnx_call(((holder *)m)->block, NULL, call, out);
}
static const nnx_field HOLDER_FIELDS[] = {NNX_CHILD(holder, block)};
static const nnx_method HOLDER_METHODS[] = {NNX_METHOD("__call__", holder_call)};
static const nnx_type HOLDER = {.name = "Holder", .size = sizeof(holder), .fields = HOLDER_FIELDS, .nfields = LX_COUNT(HOLDER_FIELDS),
                                .methods = HOLDER_METHODS, .nmethods = LX_COUNT(HOLDER_METHODS)};

static void test_to_nnx_paths(void) {
    linen_module *dense = NULL;
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &LX_CALL_KWARGS(LX_KW_INT("features", 2)), &dense), LX_OK);
    nnx_rngs *rngs = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &rngs), LX_OK);
    nnx_module *block = NULL, *h = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(dense, rngs, NULL, &block), LX_OK);
    lx_value y = lx_none();
    CHECK_EQ_INT(bridge_lazy_init(block, NULL, &LX_ARGS(full(1, 4, 1.0f))), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&HOLDER, NULL, NULL, &h), LX_OK);
    ((holder *)h)->block = nnx_module_retain(block);
    lx_clear_error();
    CHECK_EQ_INT(nnx_call(h, NULL, &LX_ARGS(full(1, 3, 1.0f)), &y), LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("block: ");
    CHECK_ERROR_HAS("kernel");
    nnx_module_release(h);
    nnx_module_release(block);
    nnx_rngs_release(rngs);
    linen_module_release(dense);
}

/* ---- failed inputs: a pending failure is kept, a handled one is never reported again ---- */
static void test_pending(void) {
    lx_clear_error();
    CHECK(!lx_error_pending());
    uint64_t g0 = lx_error_generation();
    /* an op chain is checked once: relu of a failed matmul keeps the matmul's message */
    lx_array *y = lx_relu(lx_matmul(full(2, 3, 1.0f), full(4, 5, 1.0f)));
    CHECK(y == NULL);
    CHECK(lx_error_pending());
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("matmul");
    CHECK(lx_error_generation() == g0 + 1);
    /* handled with lx_clear_error: a NULL handed to an op now is reported as itself */
    lx_clear_error();
    CHECK(lx_relu(NULL) == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_STARTS("relu: input is NULL");
    CHECK(strstr(lx_last_error(), "matmul") == NULL);

    /* handled by a later successful top-level call: the same */
    CHECK(lx_matmul(full(2, 3, 1.0f), full(4, 5, 1.0f)) == NULL);
    CHECK(lx_error_pending());
    nnx_module *m = NULL;
    CHECK_EQ_INT(new_two(4, 8, 8, 2, &m), LX_OK);
    lx_value out = lx_none();
    CHECK_EQ_INT(nnx_call(m, NULL, &LX_ARGS(full(1, 4, 1.0f)), &out), LX_OK);
    lx_value_free(&out);
    CHECK(!lx_error_pending());
    CHECK(lx_exp(NULL) == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_FAILED_INPUT);
    CHECK(strstr(lx_last_error(), "matmul") == NULL);
    CHECK_ERROR_HAS("input is NULL");

    /* a failed op's NULL handed to a module call keeps the op's message */
    lx_clear_error();
    lx_array *bad = lx_matmul(full(2, 3, 1.0f), full(4, 5, 1.0f));
    CHECK_EQ_INT(nnx_call(m, NULL, &LX_ARGS(bad), &out), LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("matmul");
    CHECK(lx_error_pending());
    /* ... and a typed forward handed NULL with nothing pending says so */
    lx_clear_error();
    CHECK(nnx_linear_forward(((two_linear *)m)->l1, NULL) == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_HAS("nnx_linear_forward: an input is NULL");
    /* a failing outermost call does not mark its failure handled (only a successful end does):
     * the failure stays pending, so an op handed the failed result's NULL keeps its message and
     * status and records nothing new (handled, it would say "relu: input is NULL") */
    lx_clear_error();
    CHECK(lx_matmul(full(2, 3, 1.0f), full(4, 5, 1.0f)) == NULL);
    CHECK_EQ_INT(nnx_call(m, NULL, &LX_ARGS(full(1, 7, 1.0f)), &out), LX_ERR_SHAPE);
    CHECK(lx_error_pending());
    CHECK_ERROR_STARTS("l1: dot_general");
    uint64_t g1 = lx_error_generation();
    CHECK(lx_relu(NULL) == NULL);
    CHECK(lx_error_pending());
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    CHECK_ERROR_STARTS("l1: dot_general");
    CHECK(strstr(lx_last_error(), "input is NULL") == NULL);
    CHECK(lx_error_generation() == g1);
    nnx_module_release(m);
    lx_clear_error();
}

/* The context an op adds stays after the module path. */
static void test_context_after_path(void) {
    lx_clear_error();
    lx_frame_push(LX_FRAME_LINEN, "Outer", NULL, NULL);
    lx_fail(LX_ERR_SHAPE, "inner");
    lx_fail_context(LX_ERR_SHAPE, "op: ");
    lx_frame_pop();
    CHECK_ERROR_IS(LX_ERR_SHAPE, "Outer: op: inner");
    /* a message that already starts with the path is not given it twice */
    lx_frame_push(LX_FRAME_LINEN, "Outer", NULL, NULL);
    lx_fail(LX_ERR_SHAPE, "%s", "Outer: again");
    lx_frame_pop();
    CHECK_ERROR_IS(LX_ERR_SHAPE, "Outer: again");
    lx_clear_error();
}

int main(void) {
    RUN(test_nnx_paths);
    RUN(test_linen_paths);
    RUN(test_bridge_paths);
    RUN(test_to_nnx_paths);
    RUN(test_pending);
    RUN(test_context_after_path);
    return lx_test_finish();
}
