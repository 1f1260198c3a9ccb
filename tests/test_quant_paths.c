/* Issue 13 (a): every way of calling an NNX child pushes its module frame, so inside a to_linen
 * wrapper an interceptor sees `ToLinen_0/l1` with (activation, param), never the wrapper's path
 * with two activations; (b) the attention products are dot-like events with operand roles. */
#include "lx_test.h"
#include "nnx_two_linear.h"
#include "linnx/fault.h"
#include "linnx/llama.h"

typedef struct {
    int n;
    char lines[64][160];
} log_t;

static void log_op(const lx_intercept_event *ev, void *user) {
    log_t *l = user;
    if (l->n == 64) return;
    char roles[16] = "";
    for (int i = 0; i < ev->ninputs && i < 8; i++) strcat(roles, ev->roles[i] == LX_OPERAND_PARAM ? "P" : "a");
    snprintf(l->lines[l->n++], sizeof l->lines[0], "%s %s %s", ev->path, ev->op, roles);
}

/* An NNX module with one child Linear `l1`, called in one of four styles. */
typedef struct {
    nnx_module base;
    nnx_module *l1;
    int64_t style;
} two_mod;

static lx_status two_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    (void)c;
    return nnx_linear_new(4, 3, rngs, (nnx_linear **)&((two_mod *)m)->l1);
}
/* A method given as a function (ToLinen's nnx_method=): the typed forward on the module. */
static lx_status linear_fn(nnx_module *m, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return linen_return_array(out, nnx_linear_forward((nnx_linear *)m, x));
}
static int style_now; /* which calling style the next call uses */
static lx_status two_call(nnx_module *m, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    nnx_module *l1 = ((two_mod *)m)->l1;
    lx_call cx = LX_ARGS(x);
    switch (style_now) {
    case 0: return linen_return_array(out, nnx_linear_forward((nnx_linear *)l1, x)); /* typed forward */
    case 1: return linen_return_array(out, nnx_call_array(l1, x));
    case 2: return nnx_call(l1, NULL, &cx, out);
    default: return nnx_call_fn(l1, linear_fn, &cx, out);
    }
}
static const nnx_field TWO_FIELDS[] = {NNX_CHILD(two_mod, l1)};
static const nnx_method TWO_METHODS[] = {{"__call__", two_call}};
static const nnx_type NNX_TWO = {
    .name = "Two", .size = sizeof(two_mod), .fields = TWO_FIELDS, .nfields = 1,
    .methods = TWO_METHODS, .nmethods = 1, .init = two_init,
};

/* A Linen parent that calls to_linen(Two) unnamed: the child is ToLinen_0. */
static lx_status outer_call(linen_scope *s, const lx_call *c, lx_value *out) {
    linen_module *w = BRIDGE_TO_LINEN(&NNX_TWO);
    if (!w) return lx_last_status();
    lx_status st = linen_call_child(s, w, NULL, NULL, c, out);
    linen_module_release(w);
    return st;
}
static const linen_method OUTER_METHODS[] = {LINEN_METHOD("__call__", outer_call)};
static const linen_type LINEN_OUTER = {.name = "Outer", .methods = OUTER_METHODS, .nmethods = 1};

static void test_calling_styles_inside_to_linen(void) {
    linen_module *model = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_OUTER, NULL, &model), LX_OK);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (int64_t[]){2, 4}, 0.5f));
    lx_call c = LX_ARGS(x);
    lx_tree *vars = NULL;
    style_now = 0;
    CHECK_EQ_INT(linen_init(model, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &vars), LX_OK);
    CHECK(lx_tree_find(vars, "params/ToLinen_0/l1/kernel") != NULL);
    for (int style = 0; style < 4; style++) {
        style_now = style;
        log_t log = {0};
        int h = -1;
        CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
        lx_value y;
        CHECK_EQ_INT(linen_apply(model, vars, &c, LINEN_NO_RNGS, NULL, &y, NULL), LX_OK);
        lx_interceptor_remove(h);
        CHECK(y.kind == LX_V_ARRAY && y.u.array->shape[1] == 3);
        lx_value_free(&y);
        CHECK_EQ_INT(log.n, 1);
        CHECK_STR(log.lines[0], "ToLinen_0/l1 dot_general aP");
        char buf[16];
        CHECK_STR(lx_frame_path(buf, sizeof buf), "");
    }
    lx_tree_release(vars);
    linen_module_release(model);
}

static void test_typed_forward_pure_nnx(void) {
    /* A typed forward called by user code on a child: the parent frame is not there, so the child is
     * the root (no component) but its kernel is still a Param; from inside the parent it is named. */
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(1, &r), LX_OK);
    nnx_module *two = NULL;
    CHECK_EQ_INT(nnx_module_new(&NNX_TWO, NULL, r, &two), LX_OK);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (int64_t[]){2, 4}, 0.25f));
    log_t log = {0};
    int h = -1;
    CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
    CHECK(nnx_linear_forward((nnx_linear *)((two_mod *)two)->l1, x) != NULL);
    style_now = 0;
    CHECK(nnx_call_array(two, x) != NULL);
    lx_interceptor_remove(h);
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], " dot_general aP");
    CHECK_STR(log.lines[1], "l1 dot_general aP");
    nnx_module_release(two);
    nnx_rngs_release(r);
}

static void test_showcase_paths(void) {
    /* The showcase decoder, Linen top (layers through to_linen_class) and NNX top: the MLP's and
     * the attention's products appear under their full paths, q.k^T and w.v as dot_general events
     * with two activations. */
    for (int style = 0; style < 2; style++) {
        llama_config cfg = llama_config_tiny();
        cfg.vocab_size = 16, cfg.emb_dim = 8, cfg.num_query_heads = 2, cfg.num_kv_heads = 1, cfg.head_dim = 4;
        cfg.mlp_dim = 8, cfg.num_decoder_layers = 1, cfg.max_target_length = 8;
        llama_model *m = NULL;
        CHECK_EQ_INT(llama_model_new(&cfg, (llama_style)style, 0, &m), LX_OK);
        lx_array *tok = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 4}));
        log_t log = {0};
        int h = -1;
        CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
        CHECK(llama_model_logits(m, tok, NULL) != NULL);
        lx_interceptor_remove(h);
        int mlp = 0, qk = 0;
        for (int i = 0; i < log.n; i++) {
            if (strncmp(log.lines[i], "decoder/layers_0/mlp/", 21) == 0) {
                CHECK(strstr(log.lines[i], "dot_general aP") != NULL);
                mlp++;
            }
            if (strcmp(log.lines[i], "decoder/layers_0/self_attention dot_general aa") == 0) qk++;
        }
        CHECK_EQ_INT(mlp, 3);
        CHECK_EQ_INT(qk, 2);
        CHECK_STR(log.lines[0], "decoder/layers_0/self_attention/query dot_general aP");
        CHECK_STR(log.lines[log.n - 1], "decoder/logits_dense dot_general aP");
        llama_model_free(m);
    }
}

static void test_mha_products(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(3, &r), LX_OK);
    for (int rep = 0; rep < 2; rep++) { /* two modules from the same stream: different weights */
        nnx_module *mha = NULL;
        lx_call c = LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW_INT("in_features", 4), LX_KW_INT("qkv_features", 4),
                                   LX_KW_BOOL("decode", false));
        CHECK_EQ_INT(nnx_module_new(&NNX_MHA_TYPE, &c, r, &mha), LX_OK);
        float xd[2 * 3 * 4];
        for (int i = 0; i < 24; i++) xd[i] = (float)((i * 7) % 11) / 11.0f - 0.4f;
        lx_array *x = lx_autorelease(lx_array_from_f32(3, (int64_t[]){2, 3, 4}, xd));
        lx_array *y0 = nnx_call_array(mha, x); /* fused */
        log_t log = {0};
        int h = -1;
        CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
        lx_array *y1 = nnx_call_array(mha, x); /* decomposed: both products reported */
        lx_interceptor_remove(h);
        CHECK(y0 && y1 && y0->size == y1->size);
        double err = 0;
        for (int64_t i = 0; y0 && y1 && i < y0->size; i++) err = lx_worse(err, fabs(lx_f32(y0)[i] - lx_f32(y1)[i]));
        CHECK(err < 1e-5);
        CHECK_EQ_INT(log.n, 6);
        CHECK_STR(log.lines[3], " einsum aa");
        CHECK_STR(log.lines[4], " dot_general aa");
        CHECK_STR(log.lines[5], "out dot_general aP");
        nnx_module_release(mha);
    }
    nnx_rngs_release(r);
}

/* ---- out of memory while building an op's module path (review of lx_frame_current_path): the
 * path once came back as "", the root's, so a rule for `a` missed the op and it ran float (or a
 * root rule applied to it). Now the op fails with LX_ERR_NO_MEMORY. A model `a` then `b`, the
 * rule for `a` alone; every allocation of the quantized forward (FAKE, INT8) and of PTQ's
 * lx_qt_quantize_nnx failed in turn: each run fails, or gives exactly the quantized result (a
 * quantize: `a` int8, `b` float32), or changes nothing. ---- */

static lx_dtype kernel_dtype(nnx_module *lin) {
    return lx_variable_get_value(((nnx_linear *)lin)->kernel)->dtype;
}

static void test_path_out_of_memory(void) {
    if (!lx_fault_available()) return;
    lx_qt_rule rules[] = {{.module_path = "a", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(rules, 1, &rs), LX_OK);
    float xd[8] = {0.3f, -1.2f, 2.5f, 0.7f, -0.4f, 1.9f, -2.2f, 0.05f};
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xd));
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(2, &r), LX_OK);
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&NNX_TWO_LIN, NULL, r, &m), LX_OK);
    lx_array *yf = lx_retain(nnx_call_array(m, x));
    for (int mode = LX_QT_FAKE; mode <= LX_QT_INT8; mode++) {
        lx_qt_session *s = NULL;
        CHECK_EQ_INT(lx_qt_begin(rs, (lx_qt_mode)mode, &s), LX_OK);
        lx_array *yq = lx_retain(nnx_call_array(m, x));
        CHECK_EQ_INT((int)lx_qt_session_quantized(s), 1); /* `a` only */
        lx_qt_end(s);
        CHECK(yq && yf && !lx_array_equal(yq, yf));
        int failed = 0, ok = 0, path_failed = 0;
        bool done = false;
        for (int64_t n = 1; n < 2000 && !done; n++) {
            CHECK_EQ_INT(lx_qt_begin(rs, (lx_qt_mode)mode, &s), LX_OK);
            size_t mark = lx_pool_open();
            lx_fault_set(n, false);
            lx_array *y = nnx_call_array(m, x);
            done = !lx_fault_fired();
            lx_fault_set(-1, false);
            if (y) {
                ok++;
                LX_TEST_REPORT_(lx_array_equal(y, yq), "mode %d: allocation %lld failed and the forward gave "
                                                       "another result than the quantized one", mode, (long long)n);
            } else {
                failed++;
                LX_TEST_REPORT_(lx_last_status() == LX_ERR_NO_MEMORY, "mode %d: allocation %lld: %s (%s)", mode,
                                (long long)n, lx_status_name(lx_last_status()), lx_last_error());
                if (strstr(lx_last_error(), "quantization: out of memory for the module path (dot_general)"))
                    path_failed++;
            }
            lx_pool_close(mark);
            lx_qt_end(s);
            lx_clear_error();
        }
        CHECK(done && failed > 0 && ok > 0);
        CHECK(path_failed > 0); /* the sweep did fail the path's own allocations */
        lx_release(yq);
    }
    lx_release(yf);
    nnx_module_release(m);

    /* PTQ: the recording forward fails the same way, and the quantize is all or nothing */
    lx_call c = LX_ARGS(x);
    int failed = 0, changed = 0, ok = 0;
    bool done = false;
    for (int64_t n = 1; n < 5000 && !done; n++) {
        m = NULL;
        CHECK_EQ_INT(nnx_module_new(&NNX_TWO_LIN, NULL, r, &m), LX_OK);
        if (!m) break;
        lx_flat before = lx_test_nnx_state_flat(m);
        lx_fault_set(n, false);
        lx_status st = lx_qt_quantize_nnx(rs, m, &c, NULL);
        done = !lx_fault_fired();
        lx_fault_set(-1, false);
        lx_flat after = lx_test_nnx_state_flat(m);
        if (st != LX_OK) {
            failed++;
            CHECK_EQ_INT(st, LX_ERR_NO_MEMORY);
            if (!lx_test_same_leaves(&before, &after)) {
                changed++;
                LX_TEST_REPORT_(false, "quantize_nnx: allocation %lld failed (%s) and the state changed",
                                (long long)n, lx_last_error());
            }
        } else {
            ok++;
            /* never a quantize that "succeeded" with `a` left float (its path lost) */
            LX_TEST_REPORT_(kernel_dtype(((two_lin *)m)->a) == LX_I8 && kernel_dtype(((two_lin *)m)->b) == LX_F32,
                            "quantize_nnx: allocation %lld failed, the quantize succeeded with a %s, b %s",
                            (long long)n, lx_dtype_name(kernel_dtype(((two_lin *)m)->a)),
                            lx_dtype_name(kernel_dtype(((two_lin *)m)->b)));
        }
        lx_clear_error();
        lx_flat_free(&before), lx_flat_free(&after);
        nnx_module_release(m);
    }
    CHECK(done && failed > 0 && changed == 0 && ok > 0);
    nnx_rngs_release(r);
    lx_qt_rules_free(rs);
}

/* ---- a dry run under memory pressure (lx_qt_trace): a hit it could not record (its own
 * allocations, or an event dropped for its path, intercept.h) once left the trace short but
 * answered as complete, so a rule could be reported as matching nothing. Now lx_qt_trace_end
 * fails with LX_ERR_NO_MEMORY and the trace holds nothing. Model `a` then `b`, a rule for `a`
 * and one for a path that does not exist; every allocation of begin + forward + end failed in
 * turn: a forward that ran gives either that failure or exactly the full trace. ---- */
static void trace_snapshot(lx_qt_trace *t, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < lx_qt_trace_count(t); i++) {
        const lx_qt_hit *h = lx_qt_trace_get(t, i);
        len += (size_t)snprintf(out + len, cap - len, "%s:%s:%d:%d;", h->path, h->op, h->rule, (int)h->weight);
    }
}

static void test_trace_out_of_memory(void) {
    if (!lx_fault_available()) return;
    lx_qt_rule rules[] = {{.module_path = "a", .weight_qtype = "int8", .act_qtype = "int8"},
                          {.module_path = "zzz", .weight_qtype = "int8"}};
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(rules, 2, &rs), LX_OK);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (int64_t[]){2, 4}, 0.5f));
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(4, &r), LX_OK);
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&NNX_TWO_LIN, NULL, r, &m), LX_OK);
    lx_qt_trace *t = NULL;
    char want[256], want_warn[512], got[256], warn[512];
    CHECK_EQ_INT(lx_qt_trace_begin(rs, &t), LX_OK);
    CHECK(nnx_call_array(m, x) != NULL);
    CHECK_EQ_INT(lx_qt_trace_end(t, want_warn, sizeof want_warn), 1);
    trace_snapshot(t, want, sizeof want);
    CHECK_STR(want, "a:dot_general0:0:1;b:dot_general0:-1:1;");
    CHECK_STR(want_warn, "rule 1 (module_path 'zzz') matched nothing; paths seen: a:dot_general0 b:dot_general0");
    lx_qt_trace_free(t);
    int ok = 0, failed = 0;
    bool done = false;
    for (int64_t n = 1; n < 2000 && !done; n++) {
        size_t mark = lx_pool_open();
        t = NULL;
        lx_fault_set(n, false);
        lx_status st = lx_qt_trace_begin(rs, &t);
        lx_array *y = st == LX_OK ? nnx_call_array(m, x) : NULL;
        int un = st == LX_OK ? lx_qt_trace_end(t, warn, sizeof warn) : -2;
        done = !lx_fault_fired();
        lx_fault_set(-1, false);
        if (st != LX_OK) {
            CHECK_EQ_INT(st, LX_ERR_NO_MEMORY);
            CHECK(t == NULL);
        } else if (y) {
            trace_snapshot(t, got, sizeof got);
            if (un < 0) {
                failed++;
                CHECK_EQ_INT(un, -1);
                CHECK_ERROR_IS(LX_ERR_NO_MEMORY, "qt_trace_end: out of memory: the trace missed ops");
                CHECK_STR(got, "");
                CHECK_STR(warn, "");
            } else {
                ok++;
                LX_TEST_REPORT_(un == 1 && strcmp(got, want) == 0 && strcmp(warn, want_warn) == 0,
                                "allocation %lld failed: the trace answered %d with '%s' ('%s')", (long long)n, un,
                                got, warn);
            }
        }
        lx_qt_trace_free(t);
        lx_pool_close(mark);
        lx_clear_error();
    }
    CHECK(done && ok > 0 && failed > 0);
    nnx_module_release(m);
    nnx_rngs_release(r);
    lx_qt_rules_free(rs);
}

int main(void) {
    RUN(test_mha_products);
    RUN(test_calling_styles_inside_to_linen);
    RUN(test_typed_forward_pure_nnx);
    RUN(test_showcase_paths);
    RUN(test_path_out_of_memory);
    RUN(test_trace_out_of_memory);
    return lx_test_finish();
}
