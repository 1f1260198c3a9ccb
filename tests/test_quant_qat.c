/* QAT with static activation scales and statistics as NNX Variables (issue 13): the moving
 * statistic is updated by each training call and used for that call's quantization (Qwix's QT
 * with act_static_scale), QAT -> PTQ carries the scale over, and in an NNX model the statistics
 * are QuantStat Variables that nnx.state filters and that split, merge and checkpoint. */
#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "lx_test.h"
#include "linnx/checkpoint.h"
#include "linnx/llama_quant.h"
#include "linnx/llama_train.h"
#include "linnx/nnx_layers.h"

static const lx_qt_rule STATIC[] = {
    {.module_path = ".*", .weight_qtype = "int8", .act_qtype = "int8", .act_static_scale = true},
};

/* y = fq(x; s_a) . fq_channel(w) + b in double; s_a given (static) */
static void ref_linear(const float *x, int64_t M, const lx_array *w, const lx_array *b, float sa, double *y) {
    int64_t K = w->shape[0], N = w->shape[1];
    const float *wd = lx_f32(w);
    for (int64_t n = 0; n < N; n++) {
        float mw = 0;
        for (int64_t k = 0; k < K; k++) mw = fmaxf(mw, fabsf(wd[k * N + n]));
        float sw = mw > 0 ? mw / 127.0f : 1.0f;
        for (int64_t m = 0; m < M; m++) {
            double acc = b ? lx_f32(b)[n] : 0;
            for (int64_t k = 0; k < K; k++) {
                float qa = fminf(127.f, fmaxf(-127.f, nearbyintf(x[m * K + k] * (1.0f / sa))));
                float qw = fminf(127.f, fmaxf(-127.f, nearbyintf(wd[k * N + n] * (1.0f / sw))));
                acc += (double)qa * sa * ((double)qw * sw);
            }
            y[m * N + n] = acc;
        }
    }
}

static double stat(const lx_tree *t, const char *path) {
    lx_array *a = lx_value_leaf_array(lx_tree_find(t, path));
    return a ? lx_array_get(a, 0) : NAN;
}

/* By hand: batches with max |x| 2 then 4 give count 2, sum 6; the second call already uses the
 * scale (6 / 2) / 127, so its 4.0 saturates at 127 (3.0); an evaluation call changes nothing. */
static void test_qat_moving_scale(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(2, &r), LX_OK);
    nnx_linear *l = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 3, r, &l), LX_OK);
    lx_array *w = lx_variable_get_value(l->kernel), *b = lx_variable_get_value(l->bias);
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(STATIC, 1, &rs), LX_OK);
    float x1[4] = {0.5f, -2.0f, 1.25f, 0.1f}, x2[8] = {4.0f, -1.0f, 0.3f, 2.9f, -3.5f, 0.7f, 1.5f, -0.2f};
    lx_tree *stats = lx_tree_new();
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_begin_qat(rs, stats, true, &s), LX_OK);
    lx_array *y1 = nnx_call_array((nnx_module *)l, lx_autorelease(lx_array_from_f32(2, (int64_t[]){1, 4}, x1)));
    CHECK_NEAR(stat(stats, "dot_general0_lhs/count"), 1, 0);
    CHECK_NEAR(stat(stats, "dot_general0_lhs/sum_of_absmax"), 2.0, 0);
    lx_array *x2a = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, x2));
    lx_array *y2 = nnx_call_array((nnx_module *)l, x2a);
    CHECK_NEAR(stat(stats, "dot_general0_lhs/count"), 2, 0);
    CHECK_NEAR(stat(stats, "dot_general0_lhs/sum_of_absmax"), 6.0, 0);
    CHECK(lx_tree_find(stats, "dot_general0_lhs/count")->u.array->dtype == LX_I32);
    lx_qt_end(s);
    double ref[6];
    ref_linear(x1, 1, w, b, 2.0f / 127.0f, ref);
    for (int i = 0; y1 && i < 3; i++) CHECK_NEAR(lx_f32(y1)[i], ref[i], 1e-5);
    ref_linear(x2, 2, w, b, 3.0f / 127.0f, ref);
    for (int i = 0; y2 && i < 6; i++) CHECK_NEAR(lx_f32(y2)[i], ref[i], 1e-5);

    /* evaluation: the statistics are read, not updated */
    CHECK_EQ_INT(lx_qt_begin_qat(rs, stats, false, &s), LX_OK);
    lx_array *ye = lx_retain(nnx_call_array((nnx_module *)l, x2a));
    lx_qt_end(s);
    CHECK_NEAR(stat(stats, "dot_general0_lhs/count"), 2, 0);
    CHECK(ye && y2 && lx_array_equal(ye, y2));

    /* QAT -> PTQ: the static scale the QAT model ended with is stored and used */
    lx_call c = LX_ARGS(x2a);
    CHECK_EQ_INT(lx_qt_quantize_nnx(rs, (nnx_module *)l, &c, stats), LX_OK);
    lx_value v;
    CHECK_EQ_INT(nnx_getattr((nnx_module *)l, "dot_general0_lhs_scale", &v), LX_OK);
    CHECK(v.kind == LX_V_VARIABLE && fabsf(lx_f32(lx_variable_get_value(v.u.var))[0] - 3.0f / 127.0f) < 1e-9f);
    CHECK_EQ_INT(lx_qt_begin_ptq_nnx(rs, (nnx_module *)l, &s), LX_OK);
    lx_array *yp = nnx_call_array((nnx_module *)l, x2a);
    CHECK_EQ_INT((int)lx_qt_session_int8(s), 1);
    lx_qt_end(s);
    for (int i = 0; yp && ye && i < 6; i++) CHECK_NEAR(lx_f32(yp)[i], lx_f32(ye)[i], 1e-5);
    lx_release(ye);
    lx_tree_release(stats);
    CHECK_FAILS(lx_qt_begin_qat(rs, NULL, true, &s), LX_ERR_INVALID_ARGUMENT, "NULL statistics tree");
    /* one session per thread; lx_qt_finish of a session without a module is lx_qt_end */
    lx_tree *t2 = lx_tree_new();
    CHECK_EQ_INT(lx_qt_begin_qat(rs, t2, true, &s), LX_OK);
    lx_qt_session *again = NULL;
    CHECK_FAILS(lx_qt_begin_qat(rs, t2, true, &again), LX_ERR_INVALID_ARGUMENT, "quantizing twice");
    CHECK_FAILS(lx_qt_begin_qat_nnx(rs, (nnx_module *)l, true, &again), LX_ERR_INVALID_ARGUMENT, "quantizing twice");
    CHECK(again == NULL);
    const lx_qt_layer_error *le = NULL;
    CHECK_EQ_INT(lx_qt_session_layers(s, &le), 0);
    CHECK_EQ_INT(lx_qt_finish(s), LX_OK);
    CHECK_FAILS(lx_qt_finish(NULL), LX_ERR_INVALID_ARGUMENT, "NULL session");
    lx_tree_release(t2);
    lx_qt_rules_free(rs);
    nnx_module_release((nnx_module *)l);
    nnx_rngs_release(r);
}

static const lx_qt_rule LLAMA_STATIC[] = {
    {.module_path = "decoder/layers_[0-9]+/(mlp|self_attention)/.*", .weight_qtype = "int8", .act_qtype = "int8",
     .act_static_scale = true},
    {.module_path = "decoder/layers_[0-9]+/self_attention", .op_names = "dot_general", .act_qtype = "int8",
     .act_static_scale = true},
    {.module_path = "decoder/logits_dense", .weight_qtype = "int8", .act_qtype = "int8"},
};

static llama_model *tiny(llama_style style) {
    llama_config cfg = llama_config_tiny();
    cfg.vocab_size = 32, cfg.emb_dim = 16, cfg.num_query_heads = 2, cfg.num_kv_heads = 1, cfg.head_dim = 8;
    cfg.mlp_dim = 32, cfg.num_decoder_layers = 2, cfg.max_target_length = 16;
    llama_model *m = NULL;
    CHECK_EQ_INT(llama_model_new(&cfg, style, 1, &m), LX_OK);
    return m;
}

static lx_array *tokens(int64_t n) {
    lx_array *tok = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){2, n}));
    for (int64_t i = 0; i < tok->size; i++) lx_i32(tok)[i] = (int32_t)((i * 7 + 3) % 32);
    return tok;
}

/* QAT on the showcase decoder with static scales (both compositions): each training step updates
 * the statistics once per op; then PTQ with them computes what the QAT model does in evaluation. */
static void test_llama_qat_static(void) {
    for (int style = 0; style < 2; style++) {
        llama_model *m = tiny((llama_style)style);
        lx_qt_rules *rs = NULL;
        CHECK_EQ_INT(lx_qt_rules_compile(LLAMA_STATIC, 3, &rs), LX_OK);
        lx_array *tok = tokens(9), *in = lx_slice(tok, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(0, 8)});
        nnx_module *top = style == LLAMA_NNX_TOP ? llama_model_nnx_module(m) : NULL;
        llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
        o.steps = 10;
        llama_trainer *t = NULL;
        CHECK_EQ_INT(llama_trainer_new(m, &o, &t), LX_OK);
        lx_tree *stats = top ? NULL : lx_tree_new(); /* Linen: the quant_stats collection's tree */
        lx_qt_session *s = NULL;
        CHECK_EQ_INT(top ? lx_qt_begin_qat_nnx(rs, top, true, &s) : lx_qt_begin_qat(rs, stats, true, &s), LX_OK);
        float loss[3] = {0};
        for (int i = 0; i < 3; i++) CHECK_EQ_INT(llama_trainer_step(t, tok, &loss[i]), LX_OK);
        CHECK_EQ_INT(lx_qt_finish(s), LX_OK);
        llama_trainer_free(t);
        CHECK(isfinite(loss[2]) && loss[2] < loss[0]);
        lx_tree *got = stats;
        if (top) { /* NNX: QuantStat Variables in the module, filtered by nnx.state */
            nnx_filter f = NNX_OF_TYPE(&lx_QuantStat);
            lx_tree *st = NULL;
            CHECK_EQ_INT(nnx_state(top, 1, &f, &st), LX_OK);
            const lx_value *cv = lx_tree_find(st, "decoder/layers_0/mlp/wi_0/dot_general0_lhs/count");
            CHECK(cv && cv->kind == LX_V_VARIABLE && lx_variable_type(cv->u.var) == &lx_QuantStat);
            lx_tree_release(st);
            CHECK_EQ_INT(lx_qt_stats_nnx(top, &got), LX_OK);
        }
        /* one update per op and step: q, k, v, out, wi_0, wi_1, wo and the two attention products */
        const char *ops[] = {"self_attention/query/dot_general0_lhs", "self_attention/out/dot_general0_lhs",
                             "mlp/wi_0/dot_general0_lhs", "mlp/wo/dot_general0_lhs",
                             "self_attention/dot_general0_lhs", "self_attention/dot_general1_rhs"};
        for (int i = 0; i < 6; i++) {
            char p[160];
            snprintf(p, sizeof p, "decoder/layers_1/%s/count", ops[i]);
            LX_TEST_REPORT_(stat(got, p) == 3, "style %d: %s = %g, want 3", style, p, stat(got, p));
            snprintf(p, sizeof p, "decoder/layers_1/%s/sum_of_absmax", ops[i]);
            CHECK(stat(got, p) > 0);
        }
        CHECK(lx_tree_find(got, "decoder/logits_dense") == NULL); /* its rule has no static scale */

        /* evaluation with the statistics as they are, then PTQ with them */
        CHECK_EQ_INT(top ? lx_qt_begin_qat_nnx(rs, top, false, &s) : lx_qt_begin_qat(rs, stats, false, &s), LX_OK);
        lx_array *y_fake = lx_retain(llama_model_logits(m, in, NULL));
        CHECK_EQ_INT(lx_qt_finish(s), LX_OK);
        if (got != stats) { /* NNX: got is a copy taken before the evaluation; read the module again */
            lx_tree_release(got);
            got = NULL;
            CHECK_EQ_INT(lx_qt_stats_nnx(top, &got), LX_OK);
        }
        CHECK(stat(got, "decoder/layers_1/mlp/wo/dot_general0_lhs/count") == 3); /* evaluation did not update */
        CHECK_EQ_INT(llama_model_quantize(m, rs, in, top ? NULL : stats), LX_OK);
        lx_tree *p = NULL;
        CHECK_EQ_INT(llama_model_params(m, &p), LX_OK);
        const char *sp = "decoder/layers_0/mlp/wo/dot_general0_lhs_scale";
        char cp[160], sm[160];
        snprintf(cp, sizeof cp, "decoder/layers_0/mlp/wo/dot_general0_lhs/count");
        snprintf(sm, sizeof sm, "decoder/layers_0/mlp/wo/dot_general0_lhs/sum_of_absmax");
        lx_array *sa = lx_value_leaf_array(lx_tree_find(p, sp));
        LX_TEST_REPORT_(sa != NULL, "style %d: no %s", style, sp);
        if (sa) CHECK_NEAR(lx_f32(sa)[0], stat(got, sm) / stat(got, cp) / 127.0, 1e-7);
        lx_tree_release(p);
        CHECK_EQ_INT(llama_model_ptq_begin(m, rs, &s), LX_OK);
        lx_array *y_ptq = llama_model_logits(m, in, NULL);
        lx_qt_end(s);
        double mx = 0, err = 0;
        for (int64_t i = 0; y_ptq && i < y_fake->size; i++) {
            mx = fmax(mx, fabs(lx_f32(y_fake)[i]));
            err = lx_worse(err, fabs(lx_f32(y_ptq)[i] - lx_f32(y_fake)[i]));
        }
        LX_TEST_REPORT_(y_ptq && err <= 1e-4 * (1 + mx), "style %d: PTQ vs QAT logits differ by %g (max %g)", style,
                        err, mx);
        lx_release(y_fake);
        if (got != stats) lx_tree_release(got);
        lx_tree_release(stats);
        lx_qt_rules_free(rs);
        llama_model_free(m);
    }
}

/* NNX: calibration into QuantStat Variables; split / merge and a checkpoint round trip keep them;
 * quantize reads them from the module. */
static void test_nnx_quant_stats(void) {
    llama_model *m = tiny(LLAMA_NNX_TOP);
    nnx_module *top = llama_model_nnx_module(m);
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(LLAMA_STATIC, 3, &rs), LX_OK);
    lx_array *in = tokens(8);
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_calibrate_begin_nnx(rs, top, &s), LX_OK);
    for (int i = 0; i < 2; i++) CHECK(llama_model_logits(m, in, NULL) != NULL);
    CHECK_EQ_INT(lx_qt_finish(s), LX_OK);
    const char *cnt = "decoder/layers_0/mlp/wi_0/dot_general0_lhs/count";
    nnx_filter f = NNX_OF_TYPE(&lx_QuantStat);
    lx_tree *st = NULL;
    CHECK_EQ_INT(nnx_state(top, 1, &f, &st), LX_OK);
    CHECK(stat(st, cnt) == 2);
    const char *name = NULL;
    CHECK_EQ_INT(lx_variable_name_from_type(&lx_QuantStat, false, &name), LX_OK);
    CHECK(name && strcmp(name, "quant_stats") == 0);
    /* no Param among them, no QuantStat among the Params */
    nnx_filter fp = NNX_OF_TYPE(&lx_Param);
    lx_tree *params = NULL;
    CHECK_EQ_INT(nnx_state(top, 1, &fp, &params), LX_OK);
    CHECK(lx_tree_find(params, cnt) == NULL && lx_tree_find(params, "decoder/layers_0/mlp/wi_0/kernel") != NULL);
    lx_tree_release(params);

    /* split / merge */
    nnx_graphdef *g = NULL;
    lx_tree *parts[2] = {NULL, NULL};
    CHECK_EQ_INT(nnx_split(top, 1, &f, &g, parts), LX_OK);
    CHECK(lx_tree_equal(parts[0], st));
    nnx_module *copy = NULL;
    CHECK_EQ_INT(nnx_merge(g, 2, parts, &copy), LX_OK);
    lx_tree *st2 = NULL;
    CHECK_EQ_INT(nnx_state(copy, 1, &f, &st2), LX_OK);
    CHECK(st2 && lx_tree_equal(st2, st));
    lx_tree_release(st2);
    nnx_module_release(copy);
    nnx_graphdef_free(g);
    lx_tree_release(parts[0]), lx_tree_release(parts[1]);

    /* a checkpoint: saved as plain arrays, restored into the QuantStat structure */
    char path[] = "/tmp/linnx_quant_stats_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_EQ_INT(lx_ckpt_save(path, st, LX_CKPT_MSGPACK), LX_OK);
    lx_tree *loaded = NULL, *restored = NULL;
    CHECK_EQ_INT(lx_ckpt_load(path, &loaded), LX_OK);
    remove(path);
    CHECK_EQ_INT(lx_ckpt_restore(st, loaded, NULL, &restored), LX_OK);
    const lx_value *rv = restored ? lx_tree_find(restored, cnt) : NULL;
    CHECK(rv && rv->kind == LX_V_VARIABLE && lx_variable_type(rv->u.var) == &lx_QuantStat && stat(restored, cnt) == 2);
    lx_tree_release(loaded), lx_tree_release(restored);

    /* PTQ reads the module's statistics (stats NULL) */
    lx_tree *plain = NULL;
    CHECK_EQ_INT(lx_qt_stats_nnx(top, &plain), LX_OK);
    CHECK(lx_tree_find(plain, cnt)->kind == LX_V_ARRAY);
    CHECK_EQ_INT(llama_model_quantize(m, rs, in, NULL), LX_OK);
    lx_tree *p = NULL;
    CHECK_EQ_INT(llama_model_params(m, &p), LX_OK);
    lx_array *sa = lx_value_leaf_array(lx_tree_find(p, "decoder/layers_0/mlp/wi_0/dot_general0_lhs_scale"));
    CHECK(sa != NULL);
    if (sa)
        CHECK_NEAR(lx_f32(sa)[0], stat(plain, "decoder/layers_0/mlp/wi_0/dot_general0_lhs/sum_of_absmax") / 2 / 127.0,
                   1e-7);
    lx_tree_release(p), lx_tree_release(plain), lx_tree_release(st);
    CHECK_FAILS(lx_qt_calibrate_begin_nnx(rs, NULL, &s), LX_ERR_INVALID_ARGUMENT, "NULL module");
    lx_qt_rules_free(rs);
    llama_model_free(m);
}

int main(void) {
    RUN(test_qat_moving_scale);
    RUN(test_nnx_quant_stats);
    RUN(test_llama_qat_static);
    lx_pool_drain();
    return lx_test_finish();
}
