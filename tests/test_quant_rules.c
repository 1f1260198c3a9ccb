/* Qwix-style rules: full-match regexes on module paths, counted op names, first rule wins, and
 * the traced dry run over the showcase decoder in both compositions (issue 13). */
#include "lx_test.h"
#include "linnx/llama.h"
#include "linnx/quant.h"

static void test_compile_errors(void) {
    lx_qt_rules *r = (lx_qt_rules *)0x1;
    lx_qt_rule bad_re[] = {{.module_path = "decoder/.*"}, {.module_path = "decoder/(layers"}};
    CHECK_FAILS(lx_qt_rules_compile(bad_re, 2, &r), LX_ERR_INVALID_ARGUMENT, "rule 1: module_path 'decoder/(layers' is not a valid regex");
    CHECK(r == (lx_qt_rules *)0x1);
    lx_qt_rule bad_q[] = {{.module_path = ".*", .weight_qtype = "int4"}};
    CHECK_FAILS(lx_qt_rules_compile(bad_q, 1, &r), LX_ERR_UNSUPPORTED, "weight_qtype 'int4' is not supported (supported: int8)");
    lx_qt_rule bad_a[] = {{.act_qtype = "fp8"}};
    CHECK_FAILS(lx_qt_rules_compile(bad_a, 1, &r), LX_ERR_UNSUPPORTED, "act_qtype 'fp8'");
    lx_qt_rule bad_t[] = {{.weight_qtype = "int8", .tile_size = -2}};
    CHECK_FAILS(lx_qt_rules_compile(bad_t, 1, &r), LX_ERR_INVALID_ARGUMENT, "tile_size must be >= 0, got -2");
    CHECK(r == (lx_qt_rules *)0x1);
    CHECK_FAILS(lx_qt_rules_compile(NULL, 1, &r), LX_ERR_INVALID_ARGUMENT, "NULL argument");
    /* Qwix's _init_rule: act_static_scale without act_qtype is an invalid rule, not a silent no-op */
    lx_qt_rule bad_s[] = {{.module_path = ".*", .weight_qtype = "int8", .act_static_scale = true}};
    CHECK_FAILS(lx_qt_rules_compile(bad_s, 1, &r), LX_ERR_INVALID_ARGUMENT,
                "quantization rule 0: act_static_scale needs act_qtype");
    CHECK_FAILS(lx_qt_rules_compile(bad_s, -1, &r), LX_ERR_INVALID_ARGUMENT, "the rule count must be >= 0, got -1");
    CHECK(r == (lx_qt_rules *)0x1);
}

static void test_match(void) {
    lx_qt_rule rules[] = {
        {.module_path = "decoder/layers_0/self_attention", .op_names = "dot_general1", .act_qtype = "int8"},
        {.module_path = "decoder/.*/mlp/wo"}, /* no qtypes: matched, keeps wo in float */
        {.module_path = "decoder/layers_[0-9]+/.*", .op_names = "dot_general, einsum", .weight_qtype = "int8"},
        {.module_path = "mlp/.*", .weight_qtype = "int8"},
    };
    lx_qt_rules *r = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(rules, 4, &r), LX_OK);
    CHECK_EQ_INT(lx_qt_rules_count(r), 4);
    CHECK_STR(lx_qt_rules_get(r, 2)->module_path, "decoder/layers_[0-9]+/.*");
    CHECK_EQ_INT(lx_qt_rules_match(r, "decoder/layers_0/self_attention", "dot_general", 1), 0);
    CHECK_EQ_INT(lx_qt_rules_match(r, "decoder/layers_0/self_attention", "dot_general", 0), 2);
    CHECK_EQ_INT(lx_qt_rules_match(r, "decoder/layers_0/mlp/wo", "dot_general", 0), 1); /* first wins */
    CHECK_EQ_INT(lx_qt_rules_match(r, "decoder/layers_12/mlp/wi_0", "dot_general", 0), 2);
    CHECK_EQ_INT(lx_qt_rules_match(r, "decoder/layers_0/mlp/wi_0", "conv_general", 0), -1); /* op not listed */
    CHECK_EQ_INT(lx_qt_rules_match(r, "decoder/layers_0/self_attention", "einsum", 0), 2);
    /* a full match: "mlp/.*" does not match a path that merely contains mlp/ */
    CHECK_EQ_INT(lx_qt_rules_match(r, "block/mlp/wi_0", "dot_general", 0), -1);
    CHECK_EQ_INT(lx_qt_rules_match(r, "mlp/wi_0", "dot_general", 0), 3);
    CHECK_EQ_INT(lx_qt_rules_match(r, "decoder/logits_dense", "dot_general", 0), -1);
    lx_qt_rules_free(r);
}

static llama_model *tiny(int style) {
    llama_config cfg = llama_config_tiny();
    cfg.vocab_size = 16, cfg.emb_dim = 8, cfg.num_query_heads = 2, cfg.num_kv_heads = 1, cfg.head_dim = 4;
    cfg.mlp_dim = 8, cfg.num_decoder_layers = 2, cfg.max_target_length = 8;
    llama_model *m = NULL;
    CHECK_EQ_INT(llama_model_new(&cfg, (llama_style)style, 0, &m), LX_OK);
    return m;
}

static void test_showcase_mlp_rule(void) {
    lx_qt_rule rules[] = {
        {.module_path = "decoder/layers_0/mlp/.*", .weight_qtype = "int8", .act_qtype = "int8"},
        {.module_path = "decoder/layers_0/self_attention", .op_names = "dot_general1", .act_qtype = "int8"},
        {.module_path = "decoder/layers_9/.*", .weight_qtype = "int8"},
    };
    lx_qt_rules *r = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(rules, 3, &r), LX_OK);
    for (int style = 0; style < 2; style++) { /* Linen top with to_linen_class layers; NNX top */
        llama_model *m = tiny(style);
        lx_array *tok = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 4}));
        lx_qt_trace *t = NULL;
        CHECK_EQ_INT(lx_qt_trace_begin(r, &t), LX_OK);
        CHECK(llama_model_logits(m, tok, NULL) != NULL);
        CHECK(llama_model_logits(m, tok, NULL) != NULL); /* a second call counts from 0 again */
        char warn[2048];
        CHECK_EQ_INT(lx_qt_trace_end(t, warn, sizeof warn), 1);
        CHECK(strstr(warn, "rule 2 (module_path 'decoder/layers_9/.*') matched nothing; paths seen:") == warn);
        CHECK(strstr(warn, " decoder/logits_dense:dot_general0") != NULL);
        CHECK(strstr(warn, " decoder/layers_1/self_attention:dot_general1") != NULL);
        int mlp = 0, attn = 0, seen[3] = {0, 0, 0};
        const char *want_mlp[] = {"decoder/layers_0/mlp/wi_0", "decoder/layers_0/mlp/wi_1", "decoder/layers_0/mlp/wo"};
        for (int i = 0; i < lx_qt_trace_count(t); i++) {
            const lx_qt_hit *h = lx_qt_trace_get(t, i);
            if (h->rule == 0) {
                int w = -1; /* (the order of wi_0 and wi_1 is C's argument order: unspecified) */
                for (int k = 0; k < 3; k++)
                    if (strcmp(h->path, want_mlp[k]) == 0) w = k;
                CHECK(w >= 0);
                if (w >= 0) seen[w]++;
                CHECK_STR(h->op, "dot_general0");
                CHECK(h->weight);
                mlp++;
            } else if (h->rule == 1) {
                CHECK_STR(h->path, "decoder/layers_0/self_attention");
                CHECK_STR(h->op, "dot_general1");
                CHECK(!h->weight);
                attn++;
            } else {
                CHECK_EQ_INT(h->rule, -1);
            }
            if (strcmp(h->path, "decoder/logits_dense") == 0) CHECK_EQ_INT(h->rule, -1);
        }
        CHECK_EQ_INT(mlp, 6);
        CHECK(seen[0] == 2 && seen[1] == 2 && seen[2] == 2);
        CHECK_EQ_INT(attn, 2);
        /* 2 layers x (q, k, v, qk, wv, out, wi_0, wi_1, wo) + logits_dense, twice */
        CHECK_EQ_INT(lx_qt_trace_count(t), 2 * (2 * 9 + 1));
        lx_qt_trace_free(t);
        CHECK(!lx_intercepting());
        llama_model_free(m);
    }
    lx_qt_rules_free(r);
}

int main(void) {
    RUN(test_compile_errors);
    RUN(test_match);
    RUN(test_showcase_mlp_rule);
    return lx_test_finish();
}
