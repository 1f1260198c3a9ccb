/* Op interceptors: module paths and operand roles for matmul-like primitives (issue 6,
 * maxtext-wrappers.md §1.7). The bridge directions are exercised in the bridge tests. */
#include "lx_test.h"

typedef struct {
    int n;
    char lines[32][160];
} log_t;

static void log_op(const lx_intercept_event *ev, void *user) {
    log_t *l = user;
    if (l->n == 32) return;
    char roles[32] = "";
    for (int i = 0; i < ev->ninputs && i < 8; i++)
        strcat(roles, ev->roles[i] == LX_OPERAND_PARAM ? "P" : "a");
    snprintf(l->lines[l->n++], sizeof l->lines[0], "%s %s %s", ev->path, ev->op, roles);
}

static void test_nnx_paths(void) {
    nnx_rngs *rngs = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &rngs), LX_OK);
    nnx_module *l1 = NULL, *l2 = NULL, *seq = NULL;
    lx_call c1 = LX_CALL_ARGS(lx_int_v(4), lx_int_v(8));
    lx_call c2 = LX_CALL_ARGS(lx_int_v(8), lx_int_v(2));
    CHECK_EQ_INT(nnx_module_new(&nnx_Linear, &c1, rngs, &l1), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&nnx_Linear, &c2, rngs, &l2), LX_OK);
    lx_call cs = LX_CALL_ARGS(nnx_module_v(l1), nnx_fn_v(&NNX_RELU), nnx_module_v(l2));
    CHECK_EQ_INT(nnx_module_new(&nnx_Sequential, &cs, NULL, &seq), LX_OK);

    int64_t shape[] = {3, 4};
    lx_array *x = lx_autorelease(lx_array_full_f32(2, shape, 0.5f));
    log_t log = {0};
    int h = 0;
    /* Without an interceptor nothing is recorded and no frames are kept. */
    CHECK(!lx_intercepting());
    CHECK(nnx_call_array(seq, x) != NULL);
    CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
    CHECK(lx_intercepting());
    lx_array *y = nnx_call_array(seq, x);
    CHECK(y && y->shape[0] == 3 && y->shape[1] == 2);
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], "layers/0 dot_general aP");
    CHECK_STR(log.lines[1], "layers/2 dot_general aP");
    /* Called directly, the child is the root: no path component. */
    log.n = 0;
    CHECK(nnx_call_array(l1, x) != NULL);
    CHECK_STR(log.lines[0], " dot_general aP");
    char buf[64];
    CHECK_STR(lx_frame_path(buf, sizeof buf), ""); /* every frame was popped */
    lx_interceptor_remove(h);
    CHECK(!lx_intercepting());
    log.n = 0;
    CHECK(nnx_call_array(seq, x) != NULL);
    CHECK_EQ_INT(log.n, 0);

    nnx_module_release(seq);
    nnx_module_release(l1);
    nnx_module_release(l2);
    nnx_rngs_release(rngs);
}

static void test_mha_paths(void) {
    nnx_rngs *rngs = NULL;
    nnx_rngs_from_seed(1, &rngs);
    nnx_module *mha = NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW_INT("in_features", 4),
                               LX_KW_INT("qkv_features", 4), LX_KW_BOOL("decode", false));
    CHECK_EQ_INT(nnx_module_new(&nnx_MultiHeadAttention, &c, rngs, &mha), LX_OK);
    int64_t shape[] = {1, 3, 4};
    lx_array *x = lx_autorelease(lx_array_full_f32(3, shape, 0.25f));
    log_t log = {0};
    int h = 0;
    lx_interceptor_add(log_op, &log, &h);
    CHECK(nnx_call_array(mha, x) != NULL);
    lx_interceptor_remove(h);
    /* The q/k/v/out projections, each named by its attribute, with the kernel as a parameter. */
    int seen = 0;
    for (int i = 0; i < log.n; i++) {
        if (strncmp(log.lines[i], "query ", 6) == 0 || strncmp(log.lines[i], "key ", 4) == 0 ||
            strncmp(log.lines[i], "value ", 6) == 0 || strncmp(log.lines[i], "out ", 4) == 0) {
            seen++;
            CHECK(strstr(log.lines[i], " aP") != NULL);
        }
    }
    CHECK_EQ_INT(seen, 4);
    nnx_module_release(mha);
    nnx_rngs_release(rngs);
}

/* A Linen MLP whose blocks are compact children: Dense_0, Dense_1 under a named parent. */
static lx_array *mlp_fn(linen_scope *s, lx_array *x) {
    x = lx_relu(linen_dense(s, NULL, 8, x));
    return linen_dense(s, NULL, 2, x);
}
static const linen_method MLP_METHODS[] = {LINEN_ARRAY_METHOD("__call__", mlp_fn)};
static const linen_type MLP = {.name = "MLP", .methods = MLP_METHODS, .nmethods = LX_COUNT(MLP_METHODS)};

static lx_array *outer_fn(linen_scope *s, lx_array *x) {
    linen_module *mlp = NULL;
    if (linen_module_new(&MLP, NULL, &mlp) != LX_OK) return NULL;
    lx_array *y = linen_call_array(s, mlp, "mlp", x);
    linen_module_release(mlp);
    return y;
}
static const linen_method OUTER_METHODS[] = {LINEN_ARRAY_METHOD("__call__", outer_fn)};
static const linen_type OUTER = {.name = "Outer", .methods = OUTER_METHODS, .nmethods = LX_COUNT(OUTER_METHODS)};

static void test_linen_paths(void) {
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&OUTER, NULL, &m), LX_OK);
    int64_t shape[] = {2, 4};
    lx_array *x = lx_autorelease(lx_array_full_f32(2, shape, 1.0f));
    lx_tree *vars = NULL;
    lx_call c = LX_ARGS(x);
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &vars), LX_OK);
    log_t log = {0};
    int h = 0;
    lx_interceptor_add(log_op, &log, &h);
    lx_value out;
    CHECK_EQ_INT(linen_apply(m, vars, LINEN_NO_RNGS, &c, NULL, &out, NULL), LX_OK);
    lx_interceptor_remove(h);
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], "mlp/Dense_0 dot_general aP");
    CHECK_STR(log.lines[1], "mlp/Dense_1 dot_general aP");
    lx_value_free(&out);
    lx_tree_release(vars);
    linen_module_release(m);
}

/* A child held under a 200-character attribute name: its path is never cut. */
static char long_name_[201];
static lx_status holder_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_value v;
    LX_TRY(nnx_getattr(self, long_name_, &v));
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_array *y = nnx_call_array(nnx_module_from_value(&v), x);
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}
static const nnx_method HOLDER_METHODS[] = {NNX_METHOD("__call__", holder_call)};
static const nnx_type HOLDER = {.name = "Holder", .size = sizeof(nnx_module), .methods = HOLDER_METHODS, .nmethods = LX_COUNT(HOLDER_METHODS)};

typedef struct { int n; char path[512]; } last_path_t;
static void keep_path(const lx_intercept_event *ev, void *user) {
    last_path_t *l = user;
    l->n++;
    snprintf(l->path, sizeof l->path, "%s", ev->path);
}

static void test_long_attribute_name(void) {
    memset(long_name_, 'a', 200);
    long_name_[200] = '\0';
    nnx_rngs *rngs = NULL;
    nnx_rngs_from_seed(0, &rngs);
    nnx_module *lin = NULL, *holder = NULL;
    lx_call c1 = LX_CALL_ARGS(lx_int_v(2), lx_int_v(2));
    CHECK_EQ_INT(nnx_module_new(&nnx_Linear, &c1, rngs, &lin), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&HOLDER, NULL, NULL, &holder), LX_OK);
    lx_value lv = nnx_module_v(lin);
    CHECK_EQ_INT(nnx_setattr(holder, long_name_, &lv), LX_OK);
    last_path_t got = {0, ""};
    int h = 0;
    lx_interceptor_add(keep_path, &got, &h);
    CHECK(nnx_call_array(holder, lx_autorelease(lx_array_full_f32(2, (int64_t[]){1, 2}, 1.0f))) != NULL);
    lx_interceptor_remove(h);
    CHECK_EQ_INT(got.n, 1);
    CHECK_STR(got.path, long_name_);
    nnx_module_release(holder);
    nnx_module_release(lin);
    nnx_rngs_release(rngs);
}

/* An interceptor that runs a module itself (deeper frames, a longer path) still reads the path
 * it was given: the event owns a snapshot (review finding: it pointed into a buffer that the
 * nested frames reallocated). */
static char name_a_[101], name_b_[101];
static const char *nested_child_;
static lx_status nested_parent_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    linen_module *d = NULL;
    LX_TRY(linen_module_new(&linen_Dense, &LX_CALL_KWARGS(LX_KW_INT("features", 2)), &d));
    lx_array *y = linen_call_array(s, d, nested_child_, x);
    linen_module_release(d);
    return linen_return_array(out, y);
}
static const linen_method NESTED_METHODS[] = {LINEN_METHOD("__call__", nested_parent_call)};
static const linen_type NESTED_PARENT = {.name = "Parent", .methods = NESTED_METHODS, .nmethods = LX_COUNT(NESTED_METHODS)};
static linen_module *nested_inner_;
static lx_tree *nested_vars_;
static lx_array *nested_x_;
static int nested_depth_, nested_ok_;
static void nested_interceptor(const lx_intercept_event *ev, void *user) {
    (void)user;
    if (nested_depth_) return;
    nested_depth_++;
    nested_child_ = name_b_;
    lx_value y;
    if (linen_apply(nested_inner_, nested_vars_, LINEN_NO_RNGS, &LX_ARGS(nested_x_), NULL, &y, NULL) == LX_OK)
        lx_value_free(&y);
    nested_ok_ = strcmp(ev->path, name_a_) == 0;
    nested_depth_--;
}

static void test_interceptor_running_a_module(void) {
    memset(name_a_, 'a', 100);
    memset(name_b_, 'b', 100);
    nested_x_ = lx_autorelease(lx_array_full_f32(2, (int64_t[]){1, 3}, 1.0f));
    linen_module *outer = NULL;
    CHECK_EQ_INT(linen_module_new(&NESTED_PARENT, NULL, &outer), LX_OK);
    CHECK_EQ_INT(linen_module_new(&NESTED_PARENT, NULL, &nested_inner_), LX_OK);
    lx_tree *ov = NULL;
    nested_child_ = name_a_;
    CHECK_EQ_INT(linen_init(outer, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(nested_x_), NULL, &ov), LX_OK);
    nested_child_ = name_b_;
    CHECK_EQ_INT(linen_init(nested_inner_, LINEN_KEY(lx_key_from_seed(1)), &LX_ARGS(nested_x_), NULL, &nested_vars_),
                 LX_OK);
    nested_child_ = name_a_;
    int h = 0;
    lx_interceptor_add(nested_interceptor, NULL, &h);
    lx_value y;
    CHECK_EQ_INT(linen_apply(outer, ov, LINEN_NO_RNGS, &LX_ARGS(nested_x_), NULL, &y, NULL), LX_OK);
    lx_interceptor_remove(h);
    CHECK(nested_ok_);
    lx_value_free(&y);
    lx_tree_release(ov);
    lx_tree_release(nested_vars_);
    linen_module_release(outer);
    linen_module_release(nested_inner_);
}

static void test_frames(void) {
    CHECK_FAILS(lx_interceptor_add(NULL, NULL, NULL), LX_ERR_INVALID_ARGUMENT, "interceptor is NULL");
    lx_frame_push(LX_FRAME_LINEN, "decoder", NULL, NULL);
    lx_frame_push(LX_FRAME_LINEN, "layers_0", NULL, NULL);
    lx_frame_push(LX_FRAME_NNX, "", NULL, NULL);
    lx_frame_push(LX_FRAME_NNX, "mlp", NULL, NULL);
    lx_frame_push(LX_FRAME_NNX, "wi_0", NULL, NULL);
    char buf[64];
    CHECK_STR(lx_frame_path(buf, sizeof buf), "decoder/layers_0/mlp/wi_0");
    lx_frame_kind k;
    lx_frame_top(&k);
    CHECK_EQ_INT(k, LX_FRAME_NNX);
    for (int i = 0; i < 5; i++) lx_frame_pop();
    CHECK(lx_frame_top(&k) == NULL && k == 0);
}

/* Names and paths of any length: nothing is cut, not a 200-character name, not 100 frames, not
 * an event path longer than any fixed buffer. */
static size_t long_path_len;
static char long_path_tail[64];
static void capture_path(const lx_intercept_event *ev, void *user) {
    (void)user;
    long_path_len = strlen(ev->path);
    size_t n = long_path_len > 20 ? long_path_len - 20 : 0;
    snprintf(long_path_tail, sizeof long_path_tail, "%s", ev->path + n);
}

static void test_long_paths(void) {
    char name[201];
    memset(name, 'n', 200);
    name[200] = '\0';
    CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, name, NULL, NULL), LX_OK);
    char buf[512];
    CHECK_STR(lx_frame_path(buf, sizeof buf), name); /* once cut to 63 characters */
    CHECK_STR(lx_frame_current_path(), name);
    /* 100 more frames (the stack once kept 64 and dropped the rest from the path) */
    size_t want = 200;
    for (int i = 0; i < 100; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "layers_%d", i);
        CHECK_EQ_INT(lx_frame_push(LX_FRAME_NNX, nm, NULL, NULL), LX_OK);
        want += 1 + strlen(nm);
    }
    CHECK_EQ_INT(strlen(lx_frame_current_path()), want);
    CHECK(strstr(lx_frame_current_path(), "/layers_63/layers_64/") != NULL);
    /* a buffer too small is an error that says what it needs, never a silently cut path */
    lx_clear_error();
    CHECK_NULL_FAILS(lx_frame_path(buf, sizeof buf), LX_ERR_INVALID_ARGUMENT, "frame_path: the module path needs");
    /* an intercepted op sees the whole path (once copied into a 1024-byte buffer) */
    int h = 0;
    CHECK_EQ_INT(lx_interceptor_add(capture_path, NULL, &h), LX_OK);
    const int64_t sh[] = {2, 2};
    lx_array *a = lx_autorelease(lx_array_full_f32(2, sh, 1.0f));
    CHECK(lx_matmul(a, a) != NULL);
    CHECK(want > 1024);
    CHECK_EQ_INT(long_path_len, want);
    CHECK_STR(long_path_tail, "/layers_98/layers_99");
    lx_interceptor_remove(h);
    for (int i = 0; i < 100; i++) lx_frame_pop();
    CHECK_STR(lx_frame_current_path(), name);
    lx_frame_pop();
    CHECK_STR(lx_frame_current_path(), "");
    CHECK(lx_frame_top(NULL) == NULL);
    lx_frame_pop(); /* a pop with nothing pushed is harmless */
    CHECK_STR(lx_frame_path(buf, 1), "");
}

int main(void) {
    RUN(test_nnx_paths);
    RUN(test_mha_paths);
    RUN(test_linen_paths);
    RUN(test_long_attribute_name);
    RUN(test_interceptor_running_a_module);
    RUN(test_frames);
    RUN(test_long_paths);
    return lx_test_finish();
}
