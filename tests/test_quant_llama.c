/* QAT on the showcase decoder, then PTQ (issue 13): a few training steps with fake quantization
 * (straight-through estimator), then the weights stored int8 in the model's own variables / state;
 * the PTQ model's logits equal the fake-quantized model's (up to float summation order) and are
 * bit-identical to the on-the-fly int8 session on the trained float weights. Both compositions. */
#include <math.h>
#include <string.h>

#include "lx_test.h"
#include "linnx/fault.h"
#include "linnx/llama_quant.h"
#include "linnx/nnx.h"

static const lx_qt_rule RULES[] = {
    {.module_path = "decoder/layers_[0-9]+/(mlp|self_attention)/.*", .weight_qtype = "int8", .act_qtype = "int8"},
    {.module_path = "decoder/layers_[0-9]+/self_attention", .op_names = "dot_general", .act_qtype = "int8"},
    {.module_path = "decoder/logits_dense", .weight_qtype = "int8", .act_qtype = "int8"},
};

static void test_qat_then_ptq(void) {
    for (int style = 0; style < 2; style++) {
        llama_config cfg = llama_config_tiny();
        cfg.vocab_size = 32, cfg.emb_dim = 16, cfg.num_query_heads = 2, cfg.num_kv_heads = 1, cfg.head_dim = 8;
        cfg.mlp_dim = 32, cfg.num_decoder_layers = 2, cfg.max_target_length = 16;
        llama_model *m = NULL;
        CHECK_EQ_INT(llama_model_new(&cfg, (llama_style)style, 1, &m), LX_OK);
        lx_qt_rules *rs = NULL;
        CHECK_EQ_INT(lx_qt_rules_compile(RULES, 3, &rs), LX_OK);
        lx_array *tok = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){2, 9}));
        for (int64_t i = 0; i < tok->size; i++) lx_i32(tok)[i] = (int32_t)((i * 7 + 3) % 32);
        lx_array *in = lx_slice(tok, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(0, 8)});

        /* QAT: three steps with fake quantization in the forward */
        llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
        o.steps = 10;
        llama_trainer *t = NULL;
        CHECK_EQ_INT(llama_trainer_new(m, &o, &t), LX_OK);
        lx_qt_session *s = NULL;
        CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_FAKE, &s), LX_OK);
        float loss[3] = {0};
        for (int i = 0; i < 3; i++) CHECK_EQ_INT(llama_trainer_step(t, tok, &loss[i]), LX_OK);
        CHECK((int)lx_qt_session_quantized(s) > 0);
        lx_array *y_fake = lx_retain(llama_model_logits(m, in, NULL));
        lx_qt_end(s);
        CHECK(isfinite(loss[2]) && loss[2] < loss[0]);
        llama_trainer_free(t);

        CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_INT8, &s), LX_OK);
        lx_array *y_fly = lx_retain(llama_model_logits(m, in, NULL));
        lx_qt_end(s);

        /* PTQ into the model */
        CHECK_EQ_INT(llama_model_quantize(m, rs, in, NULL), LX_OK);
        lx_tree *p = NULL;
        CHECK_EQ_INT(llama_model_params(m, &p), LX_OK);
        int n8 = 0;
        lx_flat f = {0};
        CHECK_EQ_INT(lx_tree_flatten(p, &f), LX_OK);
        for (size_t i = 0; i < f.len; i++) {
            const lx_value *v = &f.items[i].value;
            lx_array *a = v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var)
                          : v->kind == LX_V_BOX    ? lx_box_unbox(v->u.box)
                                                   : v->u.array;
            if (a && a->dtype == LX_I8) n8++;
        }
        lx_flat_free(&f);
        lx_tree_release(p);
        CHECK_EQ_INT(n8, 2 * 7 + 1); /* q, k, v, out, wi_0, wi_1, wo per layer, and logits_dense */
        CHECK_FAILS(llama_model_quantize(m, rs, in, NULL), LX_ERR_INVALID_ARGUMENT, "quantizing twice");

        CHECK_EQ_INT(llama_model_ptq_begin(m, rs, &s), LX_OK);
        CHECK_EQ_INT((int)lx_qt_session_weights(s), 15);
        lx_array *y_ptq = llama_model_logits(m, in, NULL);
        CHECK_EQ_INT((int)lx_qt_session_int8(s), 15);
        lx_qt_end(s);
        CHECK(y_ptq && lx_array_equal(y_ptq, y_fly));
        double mx = 0, err = 0;
        for (int64_t i = 0; y_ptq && i < y_fake->size; i++) {
            mx = fmax(mx, fabs(lx_f32(y_fake)[i]));
            err = lx_worse(err, fabs(lx_f32(y_ptq)[i] - lx_f32(y_fake)[i]));
        }
        LX_TEST_REPORT_(err <= 1e-4 * (1 + mx), "style %d: PTQ vs fake-quantized logits differ by %g (max %g)", style,
                        err, mx);
        lx_release(y_fake), lx_release(y_fly);
        lx_qt_rules_free(rs);
        llama_model_free(m);
    }
}

/* The model's state as (path, array) pairs: the variables tree (Linen top) or the NNX state. */
static lx_flat state_of(llama_model *m) {
    if (llama_model_style(m) == LLAMA_NNX_TOP) return lx_test_nnx_state_flat(llama_model_nnx_module(m));
    lx_flat f = {0};
    CHECK_EQ_INT(lx_tree_flatten(llama_model_variables(m), &f), LX_OK);
    return f;
}

/* ---- all or nothing under allocation failure: every allocation of llama_model_quantize on a
 * decode model (cache_batch 2) is failed in turn, both compositions. A failure leaves the model's
 * state exactly as it was (same leaves, same arrays), so the same model is quantized again with
 * the next allocation failed; the Linen top zeroes the cache inside the new variables before
 * installing them, where a cache reset after the install could fail with the model already
 * quantized. A success leaves int8 kernels and a zero cache_index. ---- */
static void test_quantize_all_or_nothing(void) {
    if (!lx_fault_available()) return;
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(RULES, 3, &rs), LX_OK);
    for (int style = 0; style < 2; style++) {
        llama_config cfg = llama_config_tiny();
        cfg.vocab_size = 32, cfg.emb_dim = 8, cfg.num_query_heads = 2, cfg.num_kv_heads = 1, cfg.head_dim = 4;
        cfg.mlp_dim = 8, cfg.num_decoder_layers = 1, cfg.max_target_length = 8, cfg.cache_batch = 2;
        lx_array *in = lx_array_new(LX_I32, 2, (int64_t[]){2, 3});
        for (int64_t i = 0; in && i < in->size; i++) lx_i32(in)[i] = (int32_t)((i * 7 + 3) % 32);
        llama_model *m = NULL;
        int failed = 0, changed = 0, ok = 0;
        bool done = false;
        for (int64_t n = 1; n < 200000 && in && !done; n++) {
            size_t mark = lx_pool_open();
            if (!m) {
                CHECK_EQ_INT(llama_model_new(&cfg, (llama_style)style, 1, &m), LX_OK);
                if (!m) {
                    lx_pool_close(mark);
                    break;
                }
                /* a used cache: the quantize must hand back a zeroed one */
                CHECK(llama_model_logits(m, in, NULL) != NULL);
                CHECK_EQ_INT((int)llama_model_cache_index(m), 3);
            }
            lx_flat before = state_of(m);
            lx_fault_set(n, false);
            lx_status st = llama_model_quantize(m, rs, in, NULL);
            done = !lx_fault_fired();
            lx_fault_set(-1, false);
            lx_flat after = state_of(m);
            if (st != LX_OK) {
                failed++;
                if (!lx_test_same_leaves(&before, &after)) {
                    changed++;
                    LX_TEST_REPORT_(false, "style %d: allocation %lld failed (%s) and the state changed: %zu -> %zu leaves",
                                    style, (long long)n, lx_last_error(), before.len, after.len);
                }
                lx_clear_error();
            } else {
                ok++;
                CHECK_EQ_INT((int)llama_model_cache_index(m), 0);
                lx_tree *p = NULL;
                CHECK_EQ_INT(llama_model_params(m, &p), LX_OK);
                lx_flat f = {0};
                if (p) CHECK_EQ_INT(lx_tree_flatten(p, &f), LX_OK);
                int n8 = 0;
                for (size_t i = 0; i < f.len; i++) {
                    const lx_value *v = &f.items[i].value;
                    lx_array *a = lx_value_leaf_array(v);
                    if (a && a->dtype == LX_I8) n8++;
                }
                /* q, k, v, out, wi_0, wi_1, wo and logits_dense, whichever allocation failed. An
                 * allocation failing while an op's module path was built once gave the path "" (no
                 * rule matched, the kernel stayed float32): a quantize that "succeeded" with fewer
                 * kernels. The op now fails (LX_ERR_NO_MEMORY), so the quantize does. */
                LX_TEST_REPORT_(n8 == 7 + 1, "style %d: allocation %lld failed, the quantize succeeded with %d int8 kernels",
                                style, (long long)n, n8);
                lx_flat_free(&f);
                lx_tree_release(p);
                llama_model_free(m);
                m = NULL;
            }
            lx_flat_free(&before), lx_flat_free(&after);
            lx_pool_close(mark);
        }
        llama_model_free(m);
        lx_release(in);
        LX_TEST_REPORT_(done && failed > 0 && changed == 0 && ok > 0, "style %d: done %d, %d failed, %d changed, %d ok",
                        style, done, failed, changed, ok);
    }
    lx_qt_rules_free(rs);
}

int main(void) {
    RUN(test_qat_then_ptq);
    RUN(test_quantize_all_or_nothing);
    lx_pool_drain();
    return lx_test_finish();
}
