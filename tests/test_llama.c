/* The showcase decoder (llama.h): parameters for a seed equal the reference model's (fixtures
 * from scripts/gen_llama_fixtures.py: jax_random_ref.py + MaxText's key derivation), logits and
 * loss equal a pure-Python float64 forward, both compositions agree on the same parameters, the
 * KV-cache decode path gives the full forward's logits, and bad input fails cleanly. */
#include <math.h>
#include <string.h>

#include "fixtures/llama_fixtures.h"
#include "linnx/linnx.h"
#include "linnx/llama.h"
#include "lx_test.h"

/* the layer's cache index, read through its state (the model handle reads it the same way) */
static int64_t llama_layer_cache_index_public(nnx_module *layer) {
    lx_tree *st = NULL;
    if (nnx_state(layer, 0, NULL, &st) != LX_OK) return -1;
    const lx_value *v = lx_tree_find(st, "self_attention/KVCache_0/cache_index");
    int64_t i = v && v->kind == LX_V_VARIABLE ? lx_i32(lx_variable_get_value(v->u.var))[0] : -1;
    lx_tree_release(st);
    return i;
}

static void check_logits(lx_array *lg, const float *want, const char *what);

static const lx_value *find(const lx_tree *t, const char *path) { return lx_tree_find(t, path); }

/* Neumaier-compensated sum in double (the fixture holds math.fsum of the same floats). */
static double fsum(const lx_array *a) {
    double s = 0, c = 0;
    for (int64_t i = 0; i < a->size; i++) {
        double x = lx_f32(a)[i], t = s + x;
        c += fabs(s) >= fabs(x) ? (s - t) + x : (x - t) + s;
        s = t;
    }
    return s + c;
}

static llama_model *model(llama_style style, int64_t cache_batch) {
    llama_config c = llama_config_tiny();
    c.cache_batch = cache_batch;
    llama_model *m = NULL;
    CHECK_EQ_INT(llama_model_new(&c, style, LF_SEED, &m), LX_OK);
    return m;
}

static lx_array *tokens_2x(int len) {
    int32_t t[2 * 9];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < len; i++) t[b * len + i] = LF_TOKENS[b][i];
    return lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){2, len}, t));
}

/* every fixture leaf: shape, first 8 and last 4 values bit-exact, the compensated sum */
static void check_params(llama_model *m, const lf_param *want, int n, bool boxed) {
    lx_tree *p = NULL;
    CHECK_EQ_INT(llama_model_params(m, &p), LX_OK);
    CHECK_EQ_INT(lx_tree_count_leaves(p), n);
    CHECK_EQ_INT(lx_tree_count_params(p), llama_param_count(llama_model_config(m)));
    for (int i = 0; i < n; i++) {
        const lx_value *v = find(p, want[i].path);
        lx_array *a = lx_value_leaf_array(v);
        LX_TEST_REPORT_(a != NULL, "missing %s", want[i].path);
        if (!a) continue;
        CHECK_EQ_INT(v->kind, boxed ? LX_V_BOX : LX_V_VARIABLE);
        LX_TEST_REPORT_(lx_shape_eq(a, want[i].ndim, want[i].shape), "%s shape", want[i].path);
        if (!lx_shape_eq(a, want[i].ndim, want[i].shape)) continue;
        bool head = true, tail = true;
        for (int k = 0; k < 8; k++) head &= bits_of(lx_f32(a)[k]) == want[i].head[k];
        for (int k = 0; k < 4; k++) tail &= bits_of(lx_f32(a)[a->size - 4 + k]) == want[i].tail[k];
        LX_TEST_REPORT_(head && tail, "%s: values differ from the reference (first %.9g vs %.9g)", want[i].path,
                        lx_f32(a)[0], (double)((union { uint32_t u; float f; }){want[i].head[0]}).f);
        double s = fsum(a);
        LX_TEST_REPORT_(fabs(s - want[i].sum) <= 1e-9 * (1 + fabs(want[i].sum)), "%s: sum %.17g vs %.17g",
                        want[i].path, s, want[i].sum);
    }
    lx_tree_release(p);
}

static void test_params_linen_top(void) {
    llama_model *m = model(LLAMA_LINEN_TOP, 0);
    check_params(m, LF_LINEN_PARAMS, (int)(sizeof LF_LINEN_PARAMS / sizeof LF_LINEN_PARAMS[0]), true);
    /* logical axis names ride along as LogicallyPartitioned boxes (variable_to_logically_partitioned) */
    lx_tree *p = NULL;
    CHECK_EQ_INT(llama_model_params(m, &p), LX_OK);
    struct { const char *path; int n; const char *names[3]; } axes[] = {
        {"token_embedder/embedding", 2, {"vocab", "embed_vocab"}},
        {"decoder/layers_0/self_attention/query/kernel", 3, {"embed", "q_heads", "kv"}},
        {"decoder/layers_1/self_attention/key/kernel", 3, {"embed", "kv_heads", "kv_head_dim"}},
        {"decoder/layers_0/self_attention/out/kernel", 3, {"heads", "kv", "embed"}},
        {"decoder/layers_0/mlp/wi_0/kernel", 2, {"embed", "mlp"}},
        {"decoder/layers_1/mlp/wo/kernel", 2, {"mlp", "embed"}},
        {"decoder/layers_0/pre_self_attention_layer_norm/scale", 1, {"norm"}},
        {"decoder/decoder_norm/scale", 1, {"norm"}},
        {"decoder/logits_dense/kernel", 2, {"embed_vocab", "vocab"}},
    };
    for (size_t i = 0; i < sizeof axes / sizeof axes[0]; i++) {
        const lx_value *v = find(p, axes[i].path);
        bool ok = v && v->kind == LX_V_BOX && lx_box_get_kind(v->u.box) == LX_BOX_LOGICALLY_PARTITIONED &&
                  strs_are(lx_box_names(v->u.box), axes[i].n, axes[i].names);
        LX_TEST_REPORT_(ok, "%s: not LogicallyPartitioned with the expected names", axes[i].path);
    }
    lx_tree_release(p);
    llama_model_free(m);
}

/* another size and seed: 3 layers, 6/3 heads of 8 (the query kernel's division by f32(sqrt(8))
 * rounds), emb 32, mlp 48 */
static void test_small_config(void) {
    llama_config c = llama_config_tiny();
    c.emb_dim = 32, c.num_query_heads = 6, c.num_kv_heads = 3, c.head_dim = 8, c.mlp_dim = 48, c.num_decoder_layers = 3;
    llama_model *m = NULL;
    CHECK_EQ_INT(llama_model_new(&c, LLAMA_LINEN_TOP, LF_SMALL_SEED, &m), LX_OK);
    if (!m) return;
    CHECK_EQ_INT(llama_param_count(&c), 3 * (64 + 32 * 8 * 18 + 3 * 32 * 48) + 2 * 256 * 32 + 32);
    check_params(m, LF_SMALL_PARAMS, (int)(sizeof LF_SMALL_PARAMS / sizeof LF_SMALL_PARAMS[0]), true);
    lx_array *lg = llama_model_logits(m, tokens_2x(8), NULL);
    check_logits(lg, LF_SMALL_LOGITS, "small config");
    lx_array *loss = llama_model_loss(m, tokens_2x(9));
    if (loss) CHECK_NEAR(lx_f32(loss)[0], LF_SMALL_LOSS, 2e-5);
    llama_model_free(m);
}

static void test_params_nnx_top(void) {
    llama_model *m = model(LLAMA_NNX_TOP, 0);
    check_params(m, LF_NNX_PARAMS, (int)(sizeof LF_NNX_PARAMS / sizeof LF_NNX_PARAMS[0]), false);
    lx_tree *p = NULL;
    CHECK_EQ_INT(llama_model_params(m, &p), LX_OK);
    const lx_value *v = find(p, "decoder/layers_0/self_attention/query/kernel");
    CHECK(v && v->kind == LX_V_VARIABLE && lx_variable_type(v->u.var) == &lx_Param);
    CHECK(v && strs_are(lx_variable_meta_get(v->u.var, "out_sharding"), 3, (const char *[]){"embed", "q_heads", "kv"}));
    v = find(p, "token_embedder/embedding");
    CHECK(v && strs_are(lx_variable_meta_get(v->u.var, "out_sharding"), 2, (const char *[]){"vocab", "embed_vocab"}));
    lx_tree_release(p);
    llama_model_free(m);
}

/* logits against the float64 reference forward of the same parameters */
static void check_logits(lx_array *lg, const float *want, const char *what) {
    CHECK(lg && lx_shape_eq(lg, 3, (int64_t[]){2, 8, 256}));
    if (!lg) return;
    double worst = 0;
    for (int64_t i = 0; i < lg->size; i++) {
        double d = fabs(lx_f32(lg)[i] - want[i]) / (1 + fabs(want[i]));
        worst = lx_worse(worst, d);
    }
    LX_TEST_REPORT_(worst < 2e-5, "%s logits: worst relative difference %g", what, worst);
}

static void test_forward_matches_reference(void) {
    for (int s = 0; s < 2; s++) {
        llama_model *m = model(s, 0);
        lx_array *lg = llama_model_logits(m, tokens_2x(8), NULL);
        check_logits(lg, s ? LF_NNX_LOGITS : LF_LINEN_LOGITS, s ? "NNX top" : "Linen top");
        lx_array *loss = llama_model_loss(m, tokens_2x(9));
        CHECK(loss && loss->ndim == 0);
        if (loss) CHECK_NEAR(lx_f32(loss)[0], s ? LF_NNX_LOSS : LF_LINEN_LOSS, 2e-5);
        llama_model_free(m);
    }
}

/* The same parameters in both compositions give the same logits and loss, bit for bit. */
static void test_compositions_agree(void) {
    llama_model *a = model(LLAMA_LINEN_TOP, 0), *b = model(LLAMA_NNX_TOP, 0);
    lx_tree *pa = NULL, *pb = NULL;
    CHECK_EQ_INT(llama_model_params(a, &pa), LX_OK);
    CHECK_EQ_INT(llama_model_params(b, &pb), LX_OK);
    /* identical paths and shapes; the values differ (each style's own key derivation) */
    lx_flat fa = {0};
    CHECK_EQ_INT(lx_tree_flatten(pa, &fa), LX_OK);
    CHECK_EQ_INT(fa.len, lx_tree_count_leaves(pb));
    for (size_t i = 0; i < fa.len; i++) {
        lx_array *x = lx_value_leaf_array(&fa.items[i].value), *y = lx_value_leaf_array(find(pb, fa.items[i].path));
        LX_TEST_REPORT_(x && y && lx_same_shape(x, y), "%s: not in both", fa.items[i].path);
    }
    lx_flat_free(&fa);
    lx_array *la = llama_model_logits(a, tokens_2x(8), NULL);
    lx_array *lb = llama_model_logits(b, tokens_2x(8), NULL);
    CHECK(la && lb && !lx_array_equal(la, lb));
    /* the objects behind the handle: the Linen module + variables, or the NNX module */
    CHECK(llama_model_linen_module(a) && llama_model_variables(a) && !llama_model_nnx_module(a));
    CHECK(!llama_model_linen_module(b) && !llama_model_variables(b) && llama_model_nnx_module(b));
    CHECK(lx_tree_get(llama_model_variables(a), "params") != NULL);
    if (llama_model_linen_module(a)) {
        /* applying the module to the variables directly is the handle's forward */
        lx_array *pos = llama_positions(2, 8, 0);
        lx_value o;
        CHECK_EQ_INT(linen_apply(llama_model_linen_module(a), llama_model_variables(a), &LX_ARGS(tokens_2x(8), pos),
                                 LINEN_NO_RNGS, NULL, &o, NULL), LX_OK);
        CHECK(o.kind == LX_V_ARRAY && lx_array_equal(o.u.array, la));
        lx_value_free(&o);
    }
    if (llama_model_nnx_module(b)) {
        lx_value o;
        lx_array *pos = llama_positions(2, 8, 0);
        CHECK_EQ_INT(nnx_call(llama_model_nnx_module(b), NULL, &LX_ARGS(tokens_2x(8), pos), &o), LX_OK);
        CHECK(o.kind == LX_V_ARRAY && lx_array_equal(o.u.array, lb));
        lx_value_free(&o);
    }
    /* the NNX top takes the Linen top's parameters (boxes unboxed; box names are not values) */
    CHECK_EQ_INT(llama_model_load_params(b, pa), LX_OK);
    lb = llama_model_logits(b, tokens_2x(8), NULL);
    CHECK(la && lb && lx_array_equal(la, lb));
    lx_array *sa = llama_model_loss(a, tokens_2x(9)), *sb = llama_model_loss(b, tokens_2x(9));
    CHECK(sa && sb && lx_array_equal(sa, sb));
    /* and back: the Linen top takes the NNX top's original Variables */
    llama_model *c = model(LLAMA_NNX_TOP, 0);
    lx_tree *pc = NULL;
    CHECK_EQ_INT(llama_model_params(c, &pc), LX_OK);
    CHECK_EQ_INT(llama_model_load_params(a, pc), LX_OK);
    la = llama_model_logits(a, tokens_2x(8), NULL);
    lx_array *lc = llama_model_logits(c, tokens_2x(8), NULL);
    CHECK(la && lc && lx_array_equal(la, lc));
    check_logits(la, LF_NNX_LOGITS, "Linen top with the NNX top's params");
    /* still boxed after the load */
    lx_tree *pa2 = NULL;
    CHECK_EQ_INT(llama_model_params(a, &pa2), LX_OK);
    const lx_value *q = find(pa2, "decoder/layers_0/self_attention/query/kernel");
    CHECK(q && q->kind == LX_V_BOX && strs_are(lx_box_names(q->u.box), 3, (const char *[]){"embed", "q_heads", "kv"}));
    lx_tree_release(pa2);
    lx_tree_release(pc);
    lx_tree_release(pa);
    lx_tree_release(pb);
    llama_model_free(a);
    llama_model_free(b);
    llama_model_free(c);
}

/* Prefill then one token at a time through the KV cache gives the full forward's logits. */
static void test_decode_matches_full(void) {
    for (int s = 0; s < 2; s++) {
        llama_model *full = model(s, 0), *dec = model(s, 2);
        lx_tree *p = NULL;
        CHECK_EQ_INT(llama_model_params(full, &p), LX_OK);
        CHECK_EQ_INT(llama_model_load_params(dec, p), LX_OK);
        lx_tree_release(p);
        lx_array *tok = tokens_2x(9);
        lx_array *want = llama_model_logits(full, tok, NULL);
        CHECK_EQ_INT(llama_model_cache_index(dec), 0);
        CHECK_EQ_INT(llama_model_cache_index(full), -1);
        for (int round = 0; round < 2; round++) {
            /* prefill 5, then 4 steps of 1 */
            lx_array *pre = lx_slice(tok, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(0, 5)});
            lx_array *got = llama_model_logits(dec, pre, NULL);
            CHECK_EQ_INT(llama_model_cache_index(dec), 5);
            double worst = 0;
            for (int t = 0; t < 9 && got; t++) {
                if (t >= 5) {
                    lx_array *one = lx_slice(tok, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(t, t + 1)});
                    got = llama_model_logits(dec, one, NULL);
                    if (!got) break;
                    CHECK_EQ_INT(llama_model_cache_index(dec), t + 1);
                }
                int64_t gt = t >= 5 ? 0 : t, gs = got->shape[1];
                for (int b = 0; b < 2; b++)
                    for (int v = 0; v < 256; v++) {
                        double x = lx_f32(got)[(b * gs + gt) * 256 + v], y = lx_f32(want)[(b * 9 + t) * 256 + v];
                        double d = fabs(x - y) / (1 + fabs(y));
                        worst = lx_worse(worst, d);
                    }
            }
            CHECK(got != NULL);
            LX_TEST_REPORT_(worst < 1e-5, "style %d: cached decode differs from the full forward by %g", s, worst);
            CHECK_EQ_INT(llama_model_reset_cache(dec), LX_OK);
            CHECK_EQ_INT(llama_model_cache_index(dec), 0);
        }
        if (llama_model_style(dec) == LLAMA_LINEN_TOP) {
            /* a decode step replaces the cache collection only: the params maps are the same
             * objects afterwards (no per-step copy of the variables), and a caller who kept a
             * reference to the variables sees them unchanged (a new top map for the model) */
            lx_tree *vars = (lx_tree *)llama_model_variables(dec);
            const lx_tree *params0 = lx_tree_get(vars, "params")->u.tree;
            lx_array *one = lx_slice(tok, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(0, 1)});
            CHECK(llama_model_logits(dec, one, NULL) != NULL);
            CHECK(llama_model_variables(dec) == vars && lx_tree_get(vars, "params")->u.tree == params0);
            lx_tree *held = lx_tree_retain(vars);
            const lx_tree *cache_held = lx_tree_get(held, "cache")->u.tree;
            CHECK(llama_model_logits(dec, one, NULL) != NULL);
            CHECK_EQ_INT(llama_model_cache_index(dec), 2);
            const lx_tree *now = llama_model_variables(dec);
            CHECK(now != held && lx_tree_get(held, "cache")->u.tree == cache_held);
            CHECK(lx_tree_get(now, "cache")->u.tree != cache_held && lx_tree_get(now, "params")->u.tree == params0);
            lx_tree_release(held);
            CHECK_EQ_INT(llama_model_reset_cache(dec), LX_OK);
        }
        /* a batch other than the cache's, and running past max_target_length */
        lx_array *one = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 1}));
        CHECK_NULL_FAILS(llama_model_logits(dec, one, NULL), LX_ERR_SHAPE, "does not match the KV cache batch 2");
        CHECK_EQ_INT(llama_model_cache_index(dec), 0);
        lx_array *big = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){2, 200}));
        CHECK(llama_model_logits(dec, big, NULL) != NULL);
        CHECK_NULL_FAILS(llama_model_logits(dec, big, NULL), LX_ERR_INVALID_ARGUMENT,
                         "too long for the KV cache: 200 cached + 200 new > max_target_length 256");
        CHECK_EQ_INT(llama_model_cache_index(dec), 200);
        CHECK_FAILS(llama_model_reset_cache(full), LX_ERR_INVALID_ARGUMENT, "not a decode model");
        llama_model_free(full);
        llama_model_free(dec);
    }
}

static void test_bad_input(void) {
    llama_model *m = model(LLAMA_LINEN_TOP, 0);
    int32_t bad[2] = {65, 256};
    lx_array *t = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 2}, bad));
    CHECK_NULL_FAILS(llama_model_logits(m, t, NULL), LX_ERR_INVALID_ARGUMENT,
                     "token 256 at index 1 is outside the vocabulary [0, 256)");
    bad[1] = -1;
    t = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 2}, bad));
    CHECK_NULL_FAILS(llama_model_logits(m, t, NULL), LX_ERR_INVALID_ARGUMENT, "token -1 at index 1");
    lx_array *long_seq = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 257}));
    CHECK_NULL_FAILS(llama_model_logits(m, long_seq, NULL), LX_ERR_INVALID_ARGUMENT,
                     "sequence of 257 tokens is longer than max_target_length 256");
    lx_array *f = lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){1, 2}));
    CHECK_NULL_FAILS(llama_model_logits(m, f, NULL), LX_ERR_DTYPE, "tokens must be int32 (batch, seq), got float32[1,2]");
    /* status.h's codes: a wrong dtype is LX_ERR_DTYPE, a wrong rank or shape LX_ERR_SHAPE */
    lx_array *t1 = lx_autorelease(lx_array_new(LX_I32, 1, (int64_t[]){2}));
    CHECK_NULL_FAILS(llama_model_logits(m, t1, NULL), LX_ERR_SHAPE, "tokens must be int32 (batch, seq), got int32[2]");
    lx_array *t0 = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 0}));
    CHECK_NULL_FAILS(llama_model_logits(m, t0, NULL), LX_ERR_SHAPE, "empty token batch");
    lx_array *ok2 = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 2}));
    lx_array *fpos = lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){1, 2}));
    CHECK_NULL_FAILS(llama_model_logits(m, ok2, fpos), LX_ERR_DTYPE, "positions must be int32 of the tokens' shape");
    lx_array *pos3 = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 3}));
    CHECK_NULL_FAILS(llama_model_logits(m, ok2, pos3), LX_ERR_SHAPE, "positions must be int32 of the tokens' shape");
    int32_t far[2] = {0, 256};
    lx_array *farpos = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 2}, far));
    CHECK_NULL_FAILS(llama_model_logits(m, ok2, farpos), LX_ERR_INVALID_ARGUMENT,
                     "position 256 is outside [0, max_target_length 256)");
    CHECK_NULL_FAILS(llama_model_forward(m, ok2, NULL, fpos), LX_ERR_DTYPE, "segment ids must be int32");
    CHECK_NULL_FAILS(llama_model_logits(NULL, ok2, NULL), LX_ERR_INVALID_ARGUMENT, "model is NULL");
    CHECK_NULL_FAILS(llama_model_loss(m, f), LX_ERR_DTYPE, "tokens must be int32 (batch, seq + 1)");
    lx_array *short_seq = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 1}));
    CHECK_NULL_FAILS(llama_model_loss(m, short_seq), LX_ERR_SHAPE, "tokens must be int32 (batch, seq + 1)");
    CHECK_NULL_FAILS(llama_model_loss(NULL, ok2), LX_ERR_INVALID_ARGUMENT, "model is NULL");
    /* a NULL input with no failure pending is reported as itself; with one pending it keeps it */
    CHECK_NULL_FAILS(llama_model_logits(m, NULL, NULL), LX_ERR_FAILED_INPUT, "llama: tokens is NULL");
    CHECK_NULL_FAILS(llama_model_loss(m, NULL), LX_ERR_FAILED_INPUT, "llama_model_loss: tokens is NULL");
    CHECK(llama_model_logits(m, lx_reshape(ok2, LX_SHAPE(5)), NULL) == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    CHECK(strstr(lx_last_error(), "reshape") != NULL);
    /* the failures above are not sticky: a good call after lx_clear_error leaves no text */
    lx_clear_error();
    CHECK(llama_model_logits(m, ok2, NULL) != NULL);
    CHECK_EQ_INT(lx_last_status(), LX_OK);
    CHECK_STR(lx_last_error(), "");
    /* parameters of another model size: an error naming the path, nothing changed */
    llama_config c = llama_config_tiny();
    c.emb_dim = 32;
    llama_model *other = NULL;
    CHECK_EQ_INT(llama_model_new(&c, LLAMA_NNX_TOP, 1, &other), LX_OK);
    lx_tree *po = NULL, *before = NULL, *after = NULL;
    CHECK_EQ_INT(llama_model_params(other, &po), LX_OK);
    CHECK_EQ_INT(llama_model_params(m, &before), LX_OK);
    CHECK_FAILS(llama_model_load_params(m, po), LX_ERR_SHAPE, "token_embedder/embedding: expected float32[256,64], found float32[256,32]");
    CHECK_EQ_INT(llama_model_params(m, &after), LX_OK);
    CHECK(lx_tree_equal(before, after));
    lx_tree_release(po);
    lx_tree_release(after);
    /* a missing path and an extra one */
    lx_tree *partial = lx_tree_copy(before);
    CHECK_EQ_INT(lx_tree_delete_path(partial, "decoder/decoder_norm/scale"), LX_OK);
    CHECK_FAILS(llama_model_load_params(m, partial), LX_ERR_NOT_FOUND, "missing decoder/decoder_norm/scale");
    lx_array *z = lx_autorelease(lx_array_new(LX_F32, 1, (int64_t[]){3}));
    CHECK_EQ_INT(lx_tree_set_path(partial, "decoder/decoder_norm/scale", lx_array_v(z)), LX_OK);
    CHECK_FAILS(llama_model_load_params(m, partial), LX_ERR_SHAPE, "decoder/decoder_norm/scale");
    lx_tree_release(partial);
    partial = lx_tree_copy(before);
    CHECK_EQ_INT(lx_tree_set_path(partial, "decoder/extra/w", lx_array_v(z)), LX_OK);
    CHECK_FAILS(llama_model_load_params(m, partial), LX_ERR_NOT_FOUND, "unexpected parameter decoder/extra/w");
    lx_tree_release(partial);
    lx_tree_release(before);
    llama_model_free(other);
    /* configs */
    c = llama_config_tiny();
    c.num_query_heads = 3;
    llama_model *x = NULL;
    CHECK_FAILS(llama_model_new(&c, LLAMA_LINEN_TOP, 0, &x), LX_ERR_INVALID_ARGUMENT,
                "num_query_heads (3) must be a multiple of num_kv_heads (2)");
    CHECK(x == NULL);
    c = llama_config_tiny();
    c.head_dim = 15;
    CHECK_FAILS(llama_model_new(&c, LLAMA_NNX_TOP, 0, &x), LX_ERR_INVALID_ARGUMENT, "multiple of 2");
    c = llama_config_tiny();
    c.vocab_size = 0;
    CHECK_FAILS(llama_model_new(&c, LLAMA_NNX_TOP, 0, &x), LX_ERR_INVALID_ARGUMENT, "vocab_size must be in");
    CHECK_FAILS(llama_model_new(NULL, LLAMA_NNX_TOP, 0, &x), LX_ERR_INVALID_ARGUMENT, "NULL");
    llama_model_free(m);
}

/* cross-entropy written with ops against a double loop, and its bad input */
static void test_cross_entropy(void) {
    float lg[2 * 3 * 4];
    for (int i = 0; i < 24; i++) lg[i] = (float)sin(i * 0.7) * 3.0f;
    int32_t tg[6] = {0, 3, 2, 1, 1, 3};
    lx_array *l = lx_autorelease(lx_array_from_f32(3, (int64_t[]){2, 3, 4}, lg));
    lx_array *t = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){2, 3}, tg));
    double want = 0;
    for (int r = 0; r < 6; r++) {
        double m = -INFINITY, s = 0;
        for (int v = 0; v < 4; v++) m = fmax(m, lg[r * 4 + v]);
        for (int v = 0; v < 4; v++) s += exp(lg[r * 4 + v] - m);
        want += m + log(s) - lg[r * 4 + tg[r]];
    }
    want /= 6;
    lx_array *got = llama_cross_entropy(l, t);
    CHECK(got && got->ndim == 0);
    if (got) CHECK_NEAR(lx_f32(got)[0], want, 1e-6);
    tg[4] = 4;
    t = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){2, 3}, tg));
    CHECK_NULL_FAILS(llama_cross_entropy(l, t), LX_ERR_INVALID_ARGUMENT, "target 4 at index 4 is outside [0, 4)");
    lx_array *t2 = lx_autorelease(lx_array_new(LX_I32, 1, (int64_t[]){6}));
    CHECK_NULL_FAILS(llama_cross_entropy(l, t2), LX_ERR_SHAPE, "do not fit");
    lx_array *tf = lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){2, 3}));
    CHECK_NULL_FAILS(llama_cross_entropy(l, tf), LX_ERR_DTYPE, "do not fit");
    CHECK_NULL_FAILS(llama_cross_entropy(NULL, t), LX_ERR_FAILED_INPUT, "cross_entropy: logits is NULL");
}

/* RoPE against the formula, in double */
static void test_rope(void) {
    int64_t B = 1, S = 3, N = 2, Dh = 8;
    float xd[48];
    for (int i = 0; i < 48; i++) xd[i] = (float)cos(i * 1.1);
    lx_array *x = lx_autorelease(lx_array_from_f32(4, (int64_t[]){B, S, N, Dh}, xd));
    int32_t pd[3] = {0, 5, 200};
    lx_array *pos = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 3}, pd));
    lx_array *c, *s;
    CHECK_EQ_INT(llama_rope_tables(pos, Dh, 1, 10000, &c, &s), LX_OK);
    lx_array *y = llama_apply_rope(x, c, s);
    CHECK(y && lx_same_shape(x, y));
    double worst = 0;
    for (int t = 0; t < 3 && y; t++)
        for (int n = 0; n < 2; n++)
            for (int d = 0; d < 8; d++) {
                int i = d % 4;
                double ts = pow(10000.0, 2.0 * i / 8), ang = pd[t] / ts;
                const float *row = xd + (t * 2 + n) * 8;
                double rot = d < 4 ? -row[d + 4] : row[d - 4];
                double want = row[d] * cos(ang) + rot * sin(ang);
                worst = lx_worse(worst, fabs(want - lx_f32(y)[(t * 2 + n) * 8 + d]));
            }
    LX_TEST_REPORT_(worst < 1e-5, "rope: worst %g", worst);
    lx_array *p3 = lx_autorelease(lx_array_new(LX_I32, 1, (int64_t[]){3}));
    CHECK_FAILS(llama_rope_tables(p3, 8, 1, 10000, &c, &s), LX_ERR_SHAPE, "positions must be int32 (batch, seq), got int32[3]");
    lx_array *pf = lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){1, 3}));
    CHECK_FAILS(llama_rope_tables(pf, 8, 1, 10000, &c, &s), LX_ERR_DTYPE, "positions must be int32 (batch, seq), got float32[1,3]");
    CHECK_FAILS(llama_rope_tables(NULL, 8, 1, 10000, &c, &s), LX_ERR_FAILED_INPUT, "positions is NULL");
    CHECK_FAILS(llama_rope_tables(pos, 8, 1, 10000, NULL, &s), LX_ERR_INVALID_ARGUMENT, "an output is NULL");
    CHECK_EQ_INT(llama_rope_tables(pos, Dh, 1, 10000, &c, &s), LX_OK);
    lx_array *si = lx_autorelease(lx_array_new(LX_I32, 4, (int64_t[]){1, 3, 1, 8}));
    CHECK_NULL_FAILS(llama_apply_rope(x, c, si), LX_ERR_DTYPE, "bad sin table int32[1,3,1,8]");
    CHECK_NULL_FAILS(llama_apply_rope(x, NULL, si), LX_ERR_FAILED_INPUT, "an input is NULL");
    CHECK_FAILS(llama_rope_tables(pos, 7, 1, 10000, &c, &s), LX_ERR_INVALID_ARGUMENT, "multiple of 2");
    lx_array *pp = llama_positions(2, 3, 4);
    CHECK(pp && lx_i32(pp)[0] == 4 && lx_i32(pp)[5] == 6);
}

/* Generation through the cache picks what sampling the full forward's last logits picks, with
 * the split-per-step key schedule. */
static void test_generate(void) {
    llama_model *full = model(LLAMA_NNX_TOP, 0);
    for (int s = 0; s < 2; s++) {
        llama_model *dec = model(s, 1);
        lx_tree *p = NULL;
        CHECK_EQ_INT(llama_model_params(full, &p), LX_OK);
        CHECK_EQ_INT(llama_model_load_params(dec, p), LX_OK);
        lx_tree_release(p);
        lx_sampling modes[2] = {{0, 0}, {0.9, 20}};
        for (int mode = 0; mode < 2; mode++) {
            lx_array *prompt = lx_slice(tokens_2x(9), 2, (lx_range[]){LX_RANGE(0, 1), LX_RANGE(0, 4)});
            lx_key key = lx_key_from_seed(11);
            lx_array *gen = llama_generate(dec, prompt, 6, &modes[mode], key);
            CHECK(gen && lx_shape_eq(gen, 2, (int64_t[]){1, 6}));
            if (!gen) continue;
            int32_t seq[10];
            for (int i = 0; i < 4; i++) seq[i] = lx_i32(prompt)[i];
            for (int i = 0; i < 6; i++) {
                lx_array *t = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 4 + i}, seq));
                lx_array *lg = llama_model_logits(full, t, NULL);
                lx_array *last = lx_reshape(lx_slice(lg, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(3 + i, 4 + i)}), LX_SHAPE(1, 256));
                lx_key ks[2];
                lx_key_split(key, 2, false, ks);
                key = ks[0];
                lx_array *want = lx_sample_tokens(ks[1], last, &modes[mode]);
                LX_TEST_REPORT_(want && lx_i32(want)[0] == lx_i32(gen)[i], "style %d mode %d step %d: %d vs %d", s, mode,
                                i, want ? lx_i32(want)[0] : -1, lx_i32(gen)[i]);
                seq[4 + i] = lx_i32(gen)[i];
            }
            CHECK_EQ_INT(llama_model_cache_index(dec), 4 + 5);
        }
        lx_array *prompt = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 250}));
        CHECK_NULL_FAILS(llama_generate(dec, prompt, 8, &modes[0], lx_key_from_seed(0)), LX_ERR_INVALID_ARGUMENT,
                         "a prompt of 250 tokens and 8 new ones need 257 positions; max_target_length is 256");
        CHECK(llama_generate(dec, prompt, 7, &modes[0], lx_key_from_seed(0)) != NULL);
        CHECK_NULL_FAILS(llama_generate(dec, prompt, 0, &modes[0], lx_key_from_seed(0)), LX_ERR_INVALID_ARGUMENT,
                         "a prompt of 250 tokens and 0 new ones");
        lx_array *two = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){2, 3}));
        CHECK_NULL_FAILS(llama_generate(dec, two, 2, &modes[0], lx_key_from_seed(0)), LX_ERR_SHAPE,
                         "prompt batch 2 does not match the KV cache batch 1");
        lx_array *fprompt = lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){1, 3}));
        CHECK_NULL_FAILS(llama_generate(dec, fprompt, 2, &modes[0], lx_key_from_seed(0)), LX_ERR_DTYPE,
                         "tokens must be int32");
        CHECK_NULL_FAILS(llama_generate(dec, NULL, 2, &modes[0], lx_key_from_seed(0)), LX_ERR_FAILED_INPUT,
                         "llama_generate: prompt is NULL");
        CHECK_NULL_FAILS(llama_generate(dec, prompt, 2, NULL, lx_key_from_seed(0)), LX_ERR_INVALID_ARGUMENT,
                         "NULL argument");
        llama_model_free(dec);
    }
    lx_array *prompt = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 2}));
    lx_sampling g = {0, 0};
    CHECK_NULL_FAILS(llama_generate(full, prompt, 2, &g, lx_key_from_seed(0)), LX_ERR_INVALID_ARGUMENT,
                     "not a decode model");
    llama_model_free(full);
}

/* MaxText's packed sequences: two segments in one row (positions restarting) give each segment's
 * own logits. */
static void test_packed_segments(void) {
    for (int s = 0; s < 2; s++) {
        llama_model *m = model(s, 0);
        int32_t a[5] = {10, 20, 30, 40, 50}, b[3] = {7, 8, 9}, ab[8], seg[8] = {1, 1, 1, 1, 1, 2, 2, 2},
                pos[8] = {0, 1, 2, 3, 4, 0, 1, 2};
        memcpy(ab, a, sizeof a);
        memcpy(ab + 5, b, sizeof b);
        lx_array *ta = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 5}, a));
        lx_array *tb = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 3}, b));
        lx_array *tab = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 8}, ab));
        lx_array *sg = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 8}, seg));
        lx_array *ps = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 8}, pos));
        lx_array *la = llama_model_logits(m, ta, NULL), *lb = llama_model_logits(m, tb, NULL);
        lx_array *lab = llama_model_forward(m, tab, ps, sg);
        CHECK(la && lb && lab);
        double worst = 0;
        for (int t = 0; t < 8 && la && lb && lab; t++)
            for (int v = 0; v < 256; v++) {
                float want = t < 5 ? lx_f32(la)[t * 256 + v] : lx_f32(lb)[(t - 5) * 256 + v];
                worst = lx_worse(worst, fabs(lx_f32(lab)[t * 256 + v] - want));
            }
        LX_TEST_REPORT_(worst < 1e-5, "style %d: packed logits differ by %g", s, worst);
        /* without the segment ids the second part sees the first */
        lx_array *mixed = llama_model_forward(m, tab, ps, NULL);
        CHECK(mixed && fabs(lx_f32(mixed)[5 * 256] - lx_f32(lb)[0]) > 1e-4);
        lx_array *bad = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 7}));
        CHECK_NULL_FAILS(llama_model_forward(m, tab, ps, bad), LX_ERR_SHAPE,
                         "segment ids must be int32 of the tokens' shape");
        llama_model_free(m);
    }
    llama_model *d = model(LLAMA_LINEN_TOP, 1);
    lx_array *t = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 2}));
    CHECK_NULL_FAILS(llama_model_forward(d, t, NULL, t), LX_ERR_UNSUPPORTED, "segment ids with the KV cache");
    llama_model_free(d);
}

/* The NNX layer used directly: its state paths (MaxText's attribute names, KVCache_0 in decode
 * mode), the Linen cache collection, and the call's errors. */
static void test_layer_direct(void) {
    llama_config c = llama_config_tiny();
    c.cache_batch = 1;
    lx_kwarg kw[LLAMA_CONFIG_NKW];
    llama_config_kwargs(&c, kw);
    lx_call ctor = {0, NULL, LLAMA_CONFIG_NKW, kw};
    nnx_rngs *r = NULL;
    nnx_module *layer = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&LLAMA_DECODER_LAYER_TYPE, &ctor, r, &layer), LX_OK);
    /* 11 draws: 2 norms, 4 attention kernels, 3 MLP kernels, 2 Dropout forks */
    lx_tree *rs = NULL;
    CHECK_EQ_INT(nnx_state(nnx_rngs_module(r), 0, NULL, &rs), LX_OK);
    const lx_value *cnt = lx_tree_find(rs, "default/count");
    CHECK(cnt && cnt->kind == LX_V_VARIABLE && lx_u32(lx_variable_get_value(cnt->u.var))[0] == 11);
    lx_tree_release(rs);
    lx_tree *st = NULL;
    CHECK_EQ_INT(nnx_state(layer, 0, NULL, &st), LX_OK);
    const char *paths[] = {"pre_self_attention_layer_norm/scale", "post_self_attention_layer_norm/scale",
                           "self_attention/query/kernel", "self_attention/KVCache_0/cached_key",
                           "self_attention/KVCache_0/cached_value", "self_attention/KVCache_0/cache_index",
                           "mlp/wi_0/kernel", "mlp/wi_1/kernel", "mlp/wo/kernel"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) LX_TEST_REPORT_(find(st, paths[i]) != NULL, "no %s", paths[i]);
    const lx_value *ck = find(st, "self_attention/KVCache_0/cached_key");
    CHECK(ck && lx_variable_type(ck->u.var) == &lx_Cache &&
          lx_shape_eq(lx_variable_get_value(ck->u.var), 4, (int64_t[]){1, 256, 2, 16}));
    lx_tree_release(st);
    lx_array *x = lx_autorelease(lx_array_new(LX_F32, 3, (int64_t[]){1, 2, 64}));
    lx_array *pos = llama_positions(1, 2, 0);
    lx_value out;
    lx_value args[5] = {lx_array_v(x), lx_none(), lx_array_v(pos), lx_bool_v(true), lx_str_v("bogus")};
    lx_call call = {5, args, 0, NULL};
    CHECK_FAILS(nnx_call(layer, NULL, &call, &out), LX_ERR_INVALID_ARGUMENT,
                "model_mode must be train, prefill or autoregressive, got 'bogus'");
    args[4] = lx_str_v("train");
    args[3] = lx_bool_v(false);
    CHECK_FAILS(nnx_call(layer, NULL, &call, &out), LX_ERR_UNSUPPORTED, "deterministic=False");
    args[3] = lx_bool_v(true);
    /* segment ids of the wrong dtype / shape (status.h: DTYPE, then SHAPE), and positions */
    args[1] = lx_array_v(lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){1, 2})));
    CHECK_FAILS(nnx_call(layer, NULL, &call, &out), LX_ERR_DTYPE, "decoder_segment_ids must be int32 (1, 2)");
    args[1] = lx_array_v(lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 3})));
    CHECK_FAILS(nnx_call(layer, NULL, &call, &out), LX_ERR_SHAPE, "decoder_segment_ids must be int32 (1, 2)");
    args[1] = lx_none();
    args[2] = lx_array_v(lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){1, 2})));
    CHECK_FAILS(nnx_call(layer, NULL, &call, &out), LX_ERR_DTYPE, "positions must be int32 (batch, seq), got float32[1,2]");
    args[2] = lx_array_v(pos);
    CHECK_EQ_INT(nnx_call(layer, NULL, &call, &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_shape_eq(out.u.array, 3, (int64_t[]){1, 2, 64}));
    lx_value_free(&out);
    CHECK_EQ_INT(llama_layer_cache_index_public(layer), 0);
    args[4] = lx_str_v("prefill");
    CHECK_EQ_INT(nnx_call(layer, NULL, &call, &out), LX_OK);
    lx_value_free(&out);
    CHECK_EQ_INT(llama_layer_cache_index_public(layer), 2);
    nnx_module_release(layer);
    /* a train-mode layer has no cache */
    c.cache_batch = 0;
    llama_config_kwargs(&c, kw);
    CHECK_EQ_INT(nnx_module_new(&LLAMA_DECODER_LAYER_TYPE, &ctor, r, &layer), LX_OK);
    CHECK_FAILS(nnx_call(layer, NULL, &call, &out), LX_ERR_INVALID_ARGUMENT, "needs a KV cache");
    nnx_module_release(layer);
    /* DenseGeneral's own checks */
    nnx_module *d = NULL;
    lx_call dc = LX_CALL_KWARGS(LX_KW("in_features_shape", lx_ints_v(2, (int64_t[]){4, 4})),
                                LX_KW("out_features_shape", lx_ints_v(1, (int64_t[]){3})));
    CHECK_FAILS(nnx_module_new(&LLAMA_DENSE_GENERAL_TYPE, &dc, r, &d), LX_ERR_INVALID_ARGUMENT,
                "in_features_shape has 2 entries but axis has 1");
    CHECK(d == NULL);
    nnx_rngs_release(r);

    /* the Linen top's cache collection */
    llama_model *m = model(LLAMA_LINEN_TOP, 1);
    lx_array *t = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 3}));
    CHECK(llama_model_logits(m, t, NULL) != NULL);
    CHECK_EQ_INT(llama_model_cache_index(m), 3);
    llama_model_free(m);
}

/* scan_layers (MaxText's default): the layers run as one nn.scan named `layers`, every layer
 * param stacked at decoder/layers/... with the layer axis at 1 and 'layers' at index 1 of its
 * names; given the same parameters (unstacked), the unrolled model's loss and logits are the
 * scanned one's, bit for bit, in both compositions and in both directions of the conversion. */
static void test_scan_layers(void) {
    llama_config c = llama_config_tiny();
    c.scan_layers = true;
    for (int style = 0; style < 2; style++) {
        llama_model *sm = NULL, *um = NULL;
        CHECK_EQ_INT(llama_model_new(&c, (llama_style)style, 3, &sm), LX_OK);
        um = model((llama_style)style, 0);
        if (!sm || !um) return;
        lx_tree *ps = NULL;
        CHECK_EQ_INT(llama_model_params(sm, &ps), LX_OK);
        const lx_value *q = ps ? find(ps, "decoder/layers/self_attention/query/kernel") : NULL;
        lx_array *qa = lx_value_leaf_array(q);
        /* (E, L, H, D): embed, then the layer axis */
        CHECK(qa && qa->ndim == 4 && qa->shape[0] == c.emb_dim && qa->shape[1] == c.num_decoder_layers &&
              qa->shape[2] == c.num_query_heads && qa->shape[3] == c.head_dim);
        if (style == LLAMA_LINEN_TOP)
            CHECK(q && q->kind == LX_V_BOX &&
                  strs_are(lx_box_names(q->u.box), 4, (const char *[]){"embed", "layers", "q_heads", "kv"}));
        CHECK(ps && !find(ps, "decoder/layers_0"));
        CHECK_EQ_INT((int)(ps ? lx_tree_count_leaves(ps) : 0), 9 + 3);
        /* the unrolled twin on the unstacked parameters */
        CHECK_EQ_INT(llama_model_load_params(um, ps), LX_OK);
        lx_array *ls = llama_model_loss(sm, tokens_2x(9)), *lu = llama_model_loss(um, tokens_2x(9));
        CHECK(ls && lu && lx_array_equal(ls, lu));
        lx_array *gs = llama_model_logits(sm, tokens_2x(8), NULL), *gu = llama_model_logits(um, tokens_2x(8), NULL);
        CHECK(gs && gu && lx_array_equal(gs, gu));
        /* and the other way: an unrolled model's parameters stacked into the scanned one */
        llama_model *u2 = model((llama_style)style, 0);
        lx_tree *pu = NULL;
        CHECK_EQ_INT(llama_model_params(u2, &pu), LX_OK);
        CHECK_EQ_INT(llama_model_load_params(sm, pu), LX_OK);
        ls = llama_model_loss(sm, tokens_2x(9));
        lu = llama_model_loss(u2, tokens_2x(9));
        CHECK(ls && lu && lx_array_equal(ls, lu));
        lx_tree_release(pu);
        lx_tree_release(ps);
        llama_model_free(u2);
        llama_model_free(sm);
        llama_model_free(um);
    }
    /* decode mode needs the unrolled layers */
    c.cache_batch = 1;
    llama_model *bad = NULL;
    CHECK_FAILS(llama_model_new(&c, LLAMA_LINEN_TOP, 0, &bad), LX_ERR_UNSUPPORTED, "scan_layers is for training");
}

int main(void) {
    RUN(test_scan_layers);
    RUN(test_params_linen_top);
    RUN(test_params_nnx_top);
    RUN(test_small_config);
    RUN(test_forward_matches_reference);
    RUN(test_compositions_agree);
    RUN(test_decode_matches_full);
    RUN(test_bad_input);
    RUN(test_cross_entropy);
    RUN(test_rope);
    RUN(test_generate);
    RUN(test_packed_segments);
    RUN(test_layer_direct);
    return lx_test_finish();
}
