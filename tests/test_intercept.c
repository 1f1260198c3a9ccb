/* Op interceptors: module paths and operand roles for matmul-like primitives (issue 6,
 * maxtext-wrappers.md §1.7). The bridge directions are exercised in the bridge tests. */
#include "lx_test.h"
#include "linnx/fault.h"

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

/* Out of memory while building the path is never the root's "" (nor a path missing a component):
 * lx_frame_path is NULL with LX_ERR_NO_MEMORY, lx_frame_current_path "" (documented), an
 * interceptor's event is dropped. First Linen-style frames (the path buffer's allocation), then
 * NNX frames named lazily by their attribute in the parent (`mid/leaf`: a failure inside the
 * name lookup once gave "leaf" or "mid", a failing buffer ""), each allocation failed in turn. */
static nnx_module *chain_[3];
static int probe_what_;      /* 0: lx_frame_path, 1: a matmul under an interceptor */
static int64_t probe_n_;     /* the allocation to fail */
static bool probe_fired_, probe_null_;
static char probe_buf_[64];
static lx_status probe_st_;
static lx_status node_call(nnx_module *m, const lx_call *c, lx_value *out) {
    (void)c;
    *out = lx_none();
    for (int i = 0; i < 2; i++)
        if (chain_[i] == m) {
            lx_call none = LX_NO_CALL;
            return nnx_call(chain_[i + 1], NULL, &none, out);
        }
    if (probe_what_ == 0) {
        lx_clear_error();
        lx_fault_set(probe_n_, false);
        const char *p = lx_frame_path(probe_buf_, sizeof probe_buf_);
        probe_fired_ = lx_fault_fired();
        lx_fault_set(-1, false);
        probe_null_ = p == NULL;
        probe_st_ = lx_last_status();
        if (p != NULL && p != probe_buf_) probe_null_ = true; /* only ever buf or NULL */
    } else {
        lx_array *a = lx_autorelease(lx_array_full_f32(2, (const int64_t[]){2, 2}, 1.0f));
        lx_fault_set(probe_n_, false);
        lx_array *y = lx_matmul(a, a);
        probe_fired_ = lx_fault_fired();
        lx_fault_set(-1, false);
        probe_null_ = y == NULL;
        lx_clear_error();
    }
    return LX_OK;
}
static lx_status node_init(nnx_module *m, const lx_call *c, nnx_rngs *r) {
    (void)m, (void)c, (void)r;
    return LX_OK;
}
static const nnx_method NODE_METHODS[] = {NNX_METHOD("__call__", node_call)};
static const nnx_type NODE = {.name = "Node", .size = sizeof(nnx_module), .methods = NODE_METHODS, .nmethods = 1,
                              .init = node_init};

static int events_, events_wrong_;
static void count_path(const lx_intercept_event *ev, void *user) {
    (void)user;
    events_++;
    if (strcmp(ev->path, "mid/leaf") != 0) events_wrong_++;
}

static void test_path_out_of_memory(void) {
    if (!lx_fault_available()) return;
    /* Linen-style frames: the stack is empty, so the first path wanted allocates its buffer */
    CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, "decoder", NULL, NULL), LX_OK);
    CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, "layers_0", NULL, NULL), LX_OK);
    char buf[64];
    lx_clear_error();
    lx_fault_set(1, false);
    const char *p = lx_frame_path(buf, sizeof buf);
    CHECK(lx_fault_fired());
    lx_fault_set(-1, false);
    CHECK(p == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_NO_MEMORY);
    CHECK_ERROR_HAS("frame_path: out of memory building the module path");
    lx_clear_error();
    lx_frame_pop(); /* the failure's own message built the path: start again with no buffer */
    lx_frame_pop();
    CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, "decoder", NULL, NULL), LX_OK);
    CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, "layers_0", NULL, NULL), LX_OK);
    lx_fault_set(1, false);
    CHECK_STR(lx_frame_current_path(), ""); /* the public form's documented "" */
    CHECK(lx_fault_fired());
    lx_fault_set(-1, false);
    CHECK_STR(lx_frame_path(buf, sizeof buf), "decoder/layers_0"); /* built once memory is back */
    lx_frame_pop();
    lx_frame_pop();
    /* a failure's message (status.c) without its path: the text alone, never a partial path */
    CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, "decoder", NULL, NULL), LX_OK);
    CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, "layers_0", NULL, NULL), LX_OK);
    lx_fault_set(1, false);
    lx_fail(LX_ERR_SHAPE, "some failure");
    CHECK(lx_fault_fired());
    lx_fault_set(-1, false);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "some failure");
    lx_fail(LX_ERR_SHAPE, "some failure");
    CHECK_ERROR_IS(LX_ERR_SHAPE, "decoder/layers_0: some failure");
    lx_clear_error();
    lx_frame_pop();
    lx_frame_pop();

    /* NNX frames named by attribute: outer.mid.leaf, the leaf probing */
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(nnx_module_new(&NODE, NULL, NULL, &chain_[i]), LX_OK);
    lx_value mv = nnx_module_v(chain_[1]), lv = nnx_module_v(chain_[2]);
    CHECK_EQ_INT(nnx_setattr(chain_[0], "mid", &mv), LX_OK);
    CHECK_EQ_INT(nnx_setattr(chain_[1], "leaf", &lv), LX_OK);
    lx_call none = LX_NO_CALL;
    for (probe_what_ = 0; probe_what_ < 2; probe_what_++) {
        int failed = 0, ok = 0;
        bool done = false;
        int h = 0;
        events_ = events_wrong_ = 0;
        if (probe_what_ == 1) CHECK_EQ_INT(lx_interceptor_add(count_path, NULL, &h), LX_OK);
        for (probe_n_ = 1; probe_n_ < 1000 && !done; probe_n_++) {
            lx_value out = lx_none();
            probe_fired_ = probe_null_ = false;
            CHECK_EQ_INT(nnx_call(chain_[0], NULL, &none, &out), LX_OK);
            done = !probe_fired_;
            if (probe_what_ == 1) continue;
            if (probe_null_) {
                failed++;
                LX_TEST_REPORT_(probe_st_ == LX_ERR_NO_MEMORY, "allocation %lld: frame_path NULL with %s (%s)",
                                (long long)probe_n_, lx_status_name(probe_st_), lx_last_error());
            } else {
                ok++;
                LX_TEST_REPORT_(strcmp(probe_buf_, "mid/leaf") == 0, "allocation %lld failed: path '%s'",
                                (long long)probe_n_, probe_buf_);
            }
            lx_clear_error();
        }
        CHECK(done);
        if (probe_what_ == 0) CHECK(failed > 0 && ok > 0);
        if (probe_what_ == 1) {
            lx_interceptor_remove(h);
            CHECK(events_ > 0);               /* the runs whose failure missed the path */
            CHECK(events_ < (int)probe_n_ - 1); /* and some dropped: a path that could not be built */
            CHECK_EQ_INT(events_wrong_, 0);   /* never "" or a part of the path */
        }
    }
    CHECK_STR(lx_frame_current_path(), "");
    for (int i = 0; i < 3; i++) nnx_module_release(chain_[i]);
}

/* remat keeps the forward's module path for the recomputation (autodiff.c): out of memory while
 * building it fails the call (LX_ERR_NO_MEMORY), where it once recomputed at the root ("" in the
 * backward, so other quantization rules than the forward's). Every allocation of the call failed
 * in turn: a call that succeeds recomputes under `outer/blk`. */
typedef struct {
    lx_array *w, *x;
} remat_ctx;
static lx_status remat_body(void *user, bool recompute, lx_value *out) {
    (void)recompute;
    remat_ctx *c = user;
    lx_array *y = lx_matmul(c->x, c->w);
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}
static void remat_free(void *user) { (void)user; }
static char first_mm_[64];
static int nmm_;
static void first_matmul(const lx_intercept_event *ev, void *user) {
    (void)user;
    if (strcmp(ev->op, "matmul") == 0 && nmm_++ == 0) snprintf(first_mm_, sizeof first_mm_, "%s", ev->path);
}

static void test_remat_path_out_of_memory(void) {
    if (!lx_fault_available()) return;
    remat_ctx c = {lx_array_full_f32(2, (const int64_t[]){3, 2}, 0.5f), lx_array_full_f32(2, (const int64_t[]){2, 3}, 0.25f)};
    int h = 0;
    CHECK_EQ_INT(lx_interceptor_add(first_matmul, NULL, &h), LX_OK);
    int failed = 0, ok = 0, path_failed = 0;
    bool done = false;
    for (int64_t n = 1; n < 1000 && !done; n++) {
        lx_tape *t = NULL;
        CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
        CHECK_EQ_INT(lx_tape_watch(t, c.w), LX_OK);
        size_t mark = lx_pool_open();
        lx_value o = lx_none();
        CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, "outer", NULL, NULL), LX_OK);
        CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, "blk", NULL, NULL), LX_OK);
        lx_fault_set(n, false);
        lx_status st = lx_remat_call(remat_body, &c, remat_free, LX_REMAT_NOTHING_SAVEABLE, &o);
        done = !lx_fault_fired();
        lx_fault_set(-1, false);
        lx_frame_pop();
        lx_frame_pop();
        if (st != LX_OK) {
            failed++;
            CHECK_EQ_INT(st, LX_ERR_NO_MEMORY);
            if (strstr(lx_last_error(), "remat: out of memory for the module path")) path_failed++;
        } else {
            ok++;
            lx_array *loss = lx_sum(lx_mul(o.u.array, o.u.array), 0, NULL, false);
            lx_array *g = NULL;
            nmm_ = 0;
            first_mm_[0] = '\0';
            CHECK_EQ_INT(lx_tape_backward(t, loss, 1, &c.w, &g), LX_OK);
            LX_TEST_REPORT_(nmm_ > 0 && strcmp(first_mm_, "outer/blk") == 0,
                            "allocation %lld failed: the recomputation ran under '%s'", (long long)n, first_mm_);
            lx_release(g);
        }
        lx_clear_error();
        lx_value_free(&o);
        lx_pool_close(mark);
        lx_tape_free(t);
    }
    lx_interceptor_remove(h);
    CHECK(done && failed > 0 && ok > 0 && path_failed > 0);
    lx_release(c.w), lx_release(c.x);
}

/* An operand's role under memory pressure: a weight never shows as an activation. NNX's Param
 * lookup once listed the module's children (allocating), and running out of memory there gave
 * "not a Param": an event with roles "aa" for a Dense, and the same false from lx_frame_is_param
 * (quantization's weight test), with "nnx: out of memory" left pending. WP has a Linear in a
 * field (`lin`: its kernel a field Variable) and a Param attribute `w`; every allocation of its
 * call failed in turn. Each event an interceptor gets is whole and right; the others are
 * dropped, and counted (lx_interceptor_dropped): received + dropped = the ops that ran. */
typedef struct {
    nnx_module base;
    nnx_module *lin;
} wp_mod;
static bool probe_role_ok_;
static int64_t probe_role_allocs_;
static lx_status wp_init(nnx_module *m, const lx_call *c, nnx_rngs *r) {
    (void)c;
    LX_TRY(nnx_linear_new(2, 2, r, (nnx_linear **)&((wp_mod *)m)->lin));
    lx_variable *w = NULL;
    LX_TRY(lx_variable_new(&lx_Param, lx_autorelease(lx_array_full_f32(2, (const int64_t[]){2, 2}, 0.5f)), &w));
    lx_value wv = lx_var_v(w);
    lx_status st = nnx_setattr(m, "w", &wv);
    lx_variable_release(w);
    return st;
}
static lx_status wp_call(nnx_module *m, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_value wv;
    LX_TRY(nnx_getattr(m, "w", &wv));
    lx_array *w = lx_variable_get_value(wv.u.var);
    if (probe_n_ < 0) { /* the substituters' form, the first allocation failing: decided all the same */
        lx_fault_set(1, false);
        probe_role_ok_ = lx_frame_is_param(w) && !lx_frame_is_param(x);
        probe_role_allocs_ = lx_fault_count();
        lx_fault_set(-1, false);
    }
    return nnx_return_array(out, lx_matmul(nnx_call_array(((wp_mod *)m)->lin, x), w));
}
static const nnx_field WP_FIELDS[] = {NNX_CHILD(wp_mod, lin)};
static const nnx_method WP_METHODS[] = {{"__call__", wp_call}};
static const nnx_type WP = {.name = "WP", .size = sizeof(wp_mod), .fields = WP_FIELDS, .nfields = 1,
                            .methods = WP_METHODS, .nmethods = 1, .init = wp_init};

/* Inside an op's event (its frame the innermost), lx_frame_is_param with the first allocation
 * failing: it must agree with the event's roles and allocate nothing. */
static int probe_events_, probe_disagree_, probe_allocs_;
static void role_probe(const lx_intercept_event *ev, void *user) {
    (void)user;
    probe_events_++;
    for (int i = 0; i < ev->ninputs; i++) {
        lx_fault_set(1, false);
        bool p = lx_frame_is_param(ev->inputs[i]);
        probe_allocs_ += (int)lx_fault_count();
        lx_fault_set(-1, false);
        if (p != (ev->roles[i] == LX_OPERAND_PARAM)) probe_disagree_++;
    }
}

static void test_role_out_of_memory(void) {
    if (!lx_fault_available()) return;
    /* Linen frames (OUTER: mlp/Dense_0, mlp/Dense_1), then NNX ones (WP) */
    linen_module *lm = NULL;
    CHECK_EQ_INT(linen_module_new(&OUTER, NULL, &lm), LX_OK);
    lx_array *lx = lx_autorelease(lx_array_full_f32(2, (const int64_t[]){2, 4}, 1.0f));
    lx_tree *vars = NULL;
    lx_call lc = LX_ARGS(lx);
    CHECK_EQ_INT(linen_init(lm, LINEN_KEY(lx_key_from_seed(0)), &lc, NULL, &vars), LX_OK);
    int ph = 0;
    CHECK_EQ_INT(lx_interceptor_add(role_probe, NULL, &ph), LX_OK);
    lx_value lout;
    CHECK_EQ_INT(linen_apply(lm, vars, LINEN_NO_RNGS, &lc, NULL, &lout, NULL), LX_OK);
    CHECK_EQ_INT(probe_events_, 2);
    lx_value_free(&lout);
    lx_tree_release(vars);
    linen_module_release(lm);
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(3, &r), LX_OK);
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&WP, NULL, r, &m), LX_OK);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (const int64_t[]){3, 2}, 0.25f));
    log_t log = {0};
    int h = 0;
    CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
    probe_n_ = -1;
    CHECK(nnx_call_array(m, x) != NULL);
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], "lin dot_general aP");
    CHECK_STR(log.lines[1], " matmul aP");
    CHECK(probe_role_ok_);                     /* a Param, and an activation */
    CHECK_EQ_INT((int)probe_role_allocs_, 0); /* without allocating: nothing to run out of */
    lx_interceptor_remove(ph);
    CHECK_EQ_INT(probe_events_, 4);
    CHECK_EQ_INT(probe_disagree_, 0);
    CHECK_EQ_INT(probe_allocs_, 0);
    int ok = 0, failed = 0, dropped = 0;
    bool done = false;
    for (probe_n_ = 1; probe_n_ < 1000 && !done; probe_n_++) {
        log.n = 0;
        uint64_t d0 = lx_interceptor_dropped();
        size_t mark = lx_pool_open();
        lx_fault_set(probe_n_, false);
        lx_array *y = nnx_call_array(m, x);
        done = !lx_fault_fired();
        lx_fault_set(-1, false);
        int nd = (int)(lx_interceptor_dropped() - d0);
        dropped += nd;
        if (y) {
            ok++;
            CHECK(!lx_error_pending());
            LX_TEST_REPORT_(log.n + nd == 2, "allocation %lld failed: %d events, %d dropped", (long long)probe_n_,
                            log.n, nd);
        } else {
            failed++;
            CHECK_EQ_INT(lx_last_status(), LX_ERR_NO_MEMORY);
        }
        for (int i = 0; i < log.n; i++)
            LX_TEST_REPORT_(strcmp(log.lines[i], "lin dot_general aP") == 0 || strcmp(log.lines[i], " matmul aP") == 0,
                            "allocation %lld failed: event '%s'", (long long)probe_n_, log.lines[i]);
        lx_pool_close(mark);
        lx_clear_error();
    }
    lx_interceptor_remove(h);
    CHECK(done && ok > 0);
    CHECK(dropped > 0); /* `lin`'s path did run out of memory */
    nnx_module_release(m);
    nnx_rngs_release(r);
}

/* A module held under several names (shared) is named as the graph lists it: the first name in
 * name order, in a list its first index (module.c child_name walks the children in place). */
typedef struct {
    nnx_module base;
    nnx_list items;
} shared_mod;
static lx_status shared_init(nnx_module *m, const lx_call *c, nnx_rngs *r) {
    (void)m, (void)c, (void)r;
    return LX_OK;
}
static lx_status shared_call(nnx_module *m, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_value v;
    LX_TRY(nnx_getattr(m, "zz", &v));
    return nnx_return_array(out, nnx_call_array(nnx_module_from_value(&v), x));
}
static const nnx_field SHARED_FIELDS[] = {NNX_LIST(shared_mod, items)};
static const nnx_method SHARED_METHODS[] = {{"__call__", shared_call}};
static const nnx_type SHARED = {.name = "Shared", .size = sizeof(shared_mod), .fields = SHARED_FIELDS, .nfields = 1,
                                .methods = SHARED_METHODS, .nmethods = 1, .init = shared_init};

static void test_shared_child_name(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(5, &r), LX_OK);
    nnx_linear *lin = NULL, *other = NULL;
    CHECK_EQ_INT(nnx_linear_new(2, 2, r, &lin), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(2, 2, r, &other), LX_OK);
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&SHARED, NULL, r, &m), LX_OK);
    shared_mod *sm = (shared_mod *)m;
    lx_value lv = nnx_module_v((nnx_module *)lin);
    CHECK_EQ_INT(nnx_list_append(&sm->items, nnx_module_v((nnx_module *)other)), LX_OK);
    CHECK_EQ_INT(nnx_list_append(&sm->items, lv), LX_OK);
    CHECK_EQ_INT(nnx_list_append(&sm->items, lv), LX_OK);
    CHECK_EQ_INT(nnx_setattr(m, "zz", &lv), LX_OK);
    CHECK_EQ_INT(nnx_setattr(m, "mm", &lv), LX_OK);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (const int64_t[]){1, 2}, 1.0f));
    log_t log = {0};
    int h = 0;
    CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
    CHECK(nnx_call_array(m, x) != NULL);
    CHECK_EQ_INT(log.n, 1);
    CHECK_STR(log.lines[0], "items/1 dot_general aP"); /* "items" < "mm" < "zz"; index 1 before 2 */
    CHECK_EQ_INT(nnx_setattr(m, "aa", &lv), LX_OK);
    log.n = 0;
    CHECK(nnx_call_array(m, x) != NULL);
    CHECK_STR(log.lines[0], "aa dot_general aP");
    lx_interceptor_remove(h);
    nnx_module_release(m);
    nnx_module_release((nnx_module *)lin);
    nnx_module_release((nnx_module *)other);
    nnx_rngs_release(r);
}

int main(void) {
    RUN(test_nnx_paths);
    RUN(test_mha_paths);
    RUN(test_linen_paths);
    RUN(test_long_attribute_name);
    RUN(test_interceptor_running_a_module);
    RUN(test_frames);
    RUN(test_long_paths);
    RUN(test_path_out_of_memory);
    RUN(test_remat_path_out_of_memory);
    RUN(test_role_out_of_memory);
    RUN(test_shared_child_name);
    return lx_test_finish();
}
