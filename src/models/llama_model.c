/* The showcase decoder's two compositions (llama.h): MaxText's Linen stack (Linen Transformer and
 * Decoder holding NNX layers through to_linen_class) and its NNX top over a bridged Linen decoder
 * (NNX Transformer holding ToNNX(Decoder)), plus the model handle the CLI, tests and benchmarks
 * use: forward, loss, parameters in and out, the decode cache. */
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "linnx/box.h"
#include "linnx/bridge.h"
#include "linnx/init.h"
#include "linnx/lift.h"
#include "linnx/llama.h"
#include "linnx/ops.h"
#include "linnx/to_linen.h"
#include "linnx/to_nnx.h"
#include "linnx/variable.h"
#include "llama_internal.h"
#include "../core/status_internal.h"

/* ------------------------------------------------------------------ LlamaDecoderLayerToLinen */

static linen_type *g_layer_cls;
static lx_status g_layer_cls_status = LX_OK;
static char g_layer_cls_error[256];
static pthread_once_t g_layer_once = PTHREAD_ONCE_INIT;

static void make_layer_cls(void) {
    g_layer_cls_status = bridge_to_linen_class(&LLAMA_DECODER_LAYER_TYPE, NULL, bridge_metadata_to_logically_partitioned,
                                               NULL, false, &g_layer_cls);
    if (g_layer_cls_status != LX_OK) snprintf(g_layer_cls_error, sizeof g_layer_cls_error, "%s", lx_last_error());
}

const linen_type *llama_decoder_layer_to_linen(void) {
    pthread_once(&g_layer_once, make_layer_cls);
    if (!g_layer_cls) lx_fail(g_layer_cls_status ? g_layer_cls_status : LX_ERR_INTERNAL, "%s", g_layer_cls_error);
    return g_layer_cls;
}

/* ------------------------------------------------------------------ helpers */

/* Call `child` under `name` with `call` and return its array output, pool-owned. */
static lx_array *call_child_array(linen_scope *s, const linen_module *child, const char *name, const lx_call *call) {
    lx_value o;
    if (linen_call_child(s, child, name, NULL, call, &o) != LX_OK) return NULL;
    lx_array *y = o.kind == LX_V_ARRAY ? lx_autorelease(lx_retain(o.u.array)) : NULL;
    lx_value_free(&o);
    if (!y) lx_fail(LX_ERR_TYPE, "llama: %s did not return an array", name ? name : "child");
    return y;
}

static lx_status to_linen_named(const nnx_type *t, const lx_call *ctor, const char *name, linen_module **out) {
    bridge_to_linen_opts o = {.metadata_fn = bridge_metadata_to_logically_partitioned, .name = name};
    return bridge_to_linen(t, ctor, &o, out);
}

static lx_value seg_value(lx_array *seg) { return seg ? lx_array_v(seg) : lx_none(); }

/* ------------------------------------------------------------------ Linen Decoder */

static lx_status decoder_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const llama_config *cfg = linen_config(s);
    lx_array *y, *pos, *seg;
    bool use_cache;
    const char *mode;
    LX_TRY(llama_read_call(c, "inputs", &y, &pos, &seg, &use_cache, &mode));
    const linen_type *layer_cls = llama_decoder_layer_to_linen();
    if (!layer_cls) return lx_last_status();
    lx_kwarg kw[LLAMA_CONFIG_NKW];
    llama_config_kwargs(cfg, kw);
    lx_call ctor = {0, NULL, LLAMA_CONFIG_NKW, kw};
    if (cfg->scan_layers) { /* MaxText's scan_decoder_layers (maxtext-decoder.md §D.9) */
        linen_module *layer = NULL, *scan = NULL;
        LX_TRY(linen_module_new(layer_cls, &ctor, &layer));
        linen_lift_opts o = {.variable_axes = LINEN_VAR_AXES({"params", 1}, {"cache", 0}, {"intermediates", 0}),
                             .split_rngs = LINEN_NAMES("params"),
                             .in_axes = LINEN_AXES(LINEN_AXIS_BROADCAST, LINEN_AXIS_BROADCAST),
                             .length = cfg->num_decoder_layers,
                             .partition_name = "layers"};
        lx_status st = linen_scan(layer, &o, &scan);
        linen_module_release(layer);
        LX_TRY(st);
        lx_value args[5] = {lx_array_v(y), seg_value(seg), lx_array_v(pos), lx_bool_v(true), lx_str_v(mode)};
        lx_call lc = {5, args, 0, NULL};
        y = call_child_array(s, scan, "layers", &lc);
        linen_module_release(scan);
    }
    for (int64_t i = 0; !cfg->scan_layers && i < cfg->num_decoder_layers && y; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers_%lld", (long long)i);
        linen_module *layer = NULL;
        LX_TRY(linen_module_new(layer_cls, &ctor, &layer));
        lx_value args[5] = {lx_array_v(y), seg_value(seg), lx_array_v(pos), lx_bool_v(true), lx_str_v(mode)};
        lx_call lc = {5, args, 0, NULL};
        y = call_child_array(s, layer, name, &lc);
        linen_module_release(layer);
    }
    if (!y) return lx_last_status();
    /* apply_output_head: decoder_norm (rms_norm, to_linen), then logits_dense (dense_general) */
    linen_module *norm = NULL, *dense = NULL;
    lx_call nc = LX_CALL_KWARGS(LX_KW_INT("num_features", cfg->emb_dim),
                                LX_KW_FLOAT("epsilon", cfg->normalization_layer_epsilon),
                                LX_KW("kernel_axes", lx_strs_v(1, (const char *[]){"norm"})));
    LX_TRY(to_linen_named(&LLAMA_RMS_NORM_TYPE, &nc, "decoder_norm", &norm));
    y = call_child_array(s, norm, NULL, &LX_ARGS(y));
    linen_module_release(norm);
    if (!y) return lx_last_status();
    lx_call dc = LX_CALL_KWARGS(LX_KW("in_features_shape", lx_ints_v(1, &cfg->emb_dim)),
                                LX_KW("out_features_shape", lx_ints_v(1, &cfg->vocab_size)),
                                LX_KW("kernel_axes", lx_strs_v(2, (const char *[]){"embed_vocab", "vocab"})));
    LX_TRY(to_linen_named(&LLAMA_DENSE_GENERAL_TYPE, &dc, "logits_dense", &dense));
    y = call_child_array(s, dense, NULL, &LX_ARGS(y));
    linen_module_release(dense);
    return linen_return_array(out, y);
}

static const linen_method DECODER_METHODS[] = {LINEN_METHOD("__call__", decoder_call)};
const linen_type LLAMA_LINEN_DECODER = {
    .name = "Decoder", .config_size = sizeof(llama_config), .fields = LLAMA_CONFIG_FIELDS,
    .nfields = LLAMA_CONFIG_NKW, .methods = DECODER_METHODS, .nmethods = 1,
};

/* ------------------------------------------------------------------ top-level call arguments */

/* (decoder_input_tokens, decoder_positions, decoder_segment_ids=None, model_mode="train") */
static lx_status read_top_call(const lx_call *c, lx_array **tokens, lx_array **pos, lx_array **seg,
                               const char **mode, bool *use_cache) {
    *seg = NULL;
    LX_TRY(lx_call_array(c, 0, "decoder_input_tokens", tokens));
    LX_TRY(lx_call_array(c, 1, "decoder_positions", pos));
    const lx_value *sv = lx_call_get(c, 2, "decoder_segment_ids");
    if (sv && sv->kind != LX_V_NONE) LX_TRY(lx_call_array(c, 2, "decoder_segment_ids", seg));
    LX_TRY(lx_call_str(c, 3, "model_mode", LLAMA_MODE_TRAIN, mode));
    if (strcmp(*mode, LLAMA_MODE_TRAIN) && strcmp(*mode, LLAMA_MODE_PREFILL) && strcmp(*mode, LLAMA_MODE_AUTOREGRESSIVE))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama: model_mode must be train, prefill or autoregressive, got '%s'",
                       *mode);
    *use_cache = strcmp(*mode, LLAMA_MODE_TRAIN) != 0;
    return LX_OK;
}

/* ------------------------------------------------------------------ Linen Transformer */

static lx_status transformer_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const llama_config *cfg = linen_config(s);
    lx_array *tokens, *pos, *seg;
    const char *mode;
    bool use_cache;
    LX_TRY(read_top_call(c, &tokens, &pos, &seg, &mode, &use_cache));
    /* token_embedder = embed_as_linen(..., embedding_init=normal(stddev=1.0), name="token_embedder") */
    lx_initializer ni = lx_init_normal(1.0);
    lx_call ec = LX_CALL_KWARGS(LX_KW_INT("num_embeddings", cfg->vocab_size), LX_KW_INT("num_features", cfg->emb_dim),
                                LX_KW("embedding_init", lx_ptr_v("initializer", &ni)));
    linen_module *embed = NULL, *decoder = NULL;
    LX_TRY(to_linen_named(&LLAMA_EMBED_TYPE, &ec, "token_embedder", &embed));
    lx_array *y = call_child_array(s, embed, NULL, &LX_ARGS(tokens));
    linen_module_release(embed);
    if (!y) return lx_last_status();
    lx_kwarg kw[LLAMA_CONFIG_NKW];
    llama_config_kwargs(cfg, kw);
    lx_call ctor = {0, NULL, LLAMA_CONFIG_NKW, kw};
    LX_TRY(linen_module_new_named(&LLAMA_LINEN_DECODER, &ctor, "decoder", &decoder));
    lx_value args[5] = {lx_array_v(y), seg_value(seg), lx_array_v(pos), lx_bool_v(true), lx_str_v(mode)};
    lx_call dc = {5, args, 0, NULL};
    y = call_child_array(s, decoder, NULL, &dc);
    linen_module_release(decoder);
    return linen_return_array(out, y);
}

static const linen_method TRANSFORMER_METHODS[] = {LINEN_METHOD("__call__", transformer_call)};
const linen_type LLAMA_LINEN_TRANSFORMER = {
    .name = "Transformer", .config_size = sizeof(llama_config), .fields = LLAMA_CONFIG_FIELDS,
    .nfields = LLAMA_CONFIG_NKW, .methods = TRANSFORMER_METHODS, .nmethods = 1,
};

/* ------------------------------------------------------------------ NNX Transformer */

typedef struct {
    nnx_module base;
    llama_config cfg;
    nnx_module *token_embedder, *decoder;
} nnx_transformer;

static lx_status nnx_transformer_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    nnx_transformer *m = (nnx_transformer *)self;
    LX_TRY(llama_config_check(&m->cfg));
    lx_initializer ni = lx_init_normal(1.0);
    lx_call ec = LX_CALL_KWARGS(LX_KW_INT("num_embeddings", m->cfg.vocab_size),
                                LX_KW_INT("num_features", m->cfg.emb_dim),
                                LX_KW("embedding_init", lx_ptr_v("initializer", &ni)));
    LX_TRY(nnx_module_new(&LLAMA_EMBED_TYPE, &ec, rngs, &m->token_embedder));
    /* decoder = ToNNX(Decoder(config), rngs=rngs) (forks rngs), then lazy_init on dummy inputs */
    lx_kwarg kw[LLAMA_CONFIG_NKW];
    llama_config_kwargs(&m->cfg, kw);
    lx_call ctor = {0, NULL, LLAMA_CONFIG_NKW, kw};
    linen_module *dec = NULL;
    LX_TRY(linen_module_new(&LLAMA_LINEN_DECODER, &ctor, &dec));
    lx_status st = bridge_to_nnx_new(dec, rngs, NULL, &m->decoder);
    linen_module_release(dec);
    LX_TRY(st);
    size_t mark = lx_pool_open();
    bool abstract = nnx_abstract_mode();
    int64_t ys[3] = {1, 1, m->cfg.emb_dim}, ps[2] = {1, 1};
    lx_array *y = lx_autorelease(abstract ? lx_array_abstract(LX_F32, 3, ys) : lx_array_new(LX_F32, 3, ys));
    lx_array *p = lx_autorelease(abstract ? lx_array_abstract(LX_I32, 2, ps) : lx_array_new(LX_I32, 2, ps));
    lx_value args[3] = {lx_array_v(y), lx_none(), lx_array_v(p)};
    lx_call lc = {3, args, 0, NULL};
    st = y && p ? bridge_lazy_init(m->decoder, NULL, &lc) : lx_last_status();
    lx_pool_close(mark);
    return st;
}

static lx_array *nnx_transformer_forward(nnx_module *self, lx_array *tokens, lx_array *pos, lx_array *seg,
                                         const char *mode, bool use_cache) {
    nnx_transformer *m = (nnx_transformer *)self;
    lx_array *y = llama_embed_forward(m->token_embedder, tokens);
    if (!y) return NULL;
    lx_value args[5] = {lx_array_v(y), seg_value(seg), lx_array_v(pos), lx_bool_v(true), lx_str_v(mode)};
    lx_kwarg kw[1] = {LX_KW_STR("mutable", "cache")};
    lx_call dc = {5, args, use_cache ? 1 : 0, kw};
    lx_value o;
    if (nnx_call(m->decoder, NULL, &dc, &o) != LX_OK) return NULL;
    lx_array *logits = o.kind == LX_V_ARRAY ? lx_autorelease(lx_retain(o.u.array)) : NULL;
    lx_value_free(&o);
    return logits;
}

static lx_status nnx_transformer_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *tokens, *pos, *seg;
    const char *mode;
    bool use_cache;
    LX_TRY(read_top_call(c, &tokens, &pos, &seg, &mode, &use_cache));
    lx_array *y = nnx_transformer_forward(self, tokens, pos, seg, mode, use_cache);
    *out = lx_none();
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}

static const nnx_field NNX_TRANSFORMER_FIELDS[] = {NNX_CHILD(nnx_transformer, token_embedder),
                                                   NNX_CHILD(nnx_transformer, decoder)};
static const nnx_method NNX_TRANSFORMER_METHODS[] = {{"__call__", nnx_transformer_call}};
const nnx_type LLAMA_NNX_TRANSFORMER_TYPE = {
    .name = "Transformer", .size = sizeof(nnx_transformer), .fields = NNX_TRANSFORMER_FIELDS, .nfields = 2,
    .config = LLAMA_CONFIG_FIELDS, .nconfig = LLAMA_CONFIG_NKW, .config_offset = offsetof(nnx_transformer, cfg),
    .methods = NNX_TRANSFORMER_METHODS, .nmethods = 1, .init = nnx_transformer_init,
};

/* ------------------------------------------------------------------ cross-entropy */

lx_array *llama_cross_entropy(lx_array *logits, lx_array *targets) {
    if (!logits || !targets) {
        (void)lx_null_input("cross_entropy: %s is NULL", logits ? "targets" : "logits");
        return NULL;
    }
    if (targets->dtype != LX_I32 || logits->dtype != LX_F32 || logits->ndim != targets->ndim + 1 ||
        memcmp(logits->shape, targets->shape, sizeof(int64_t) * (size_t)targets->ndim)) {
        char a[64], b[64];
        lx_fail(targets->dtype != LX_I32 || logits->dtype != LX_F32 ? LX_ERR_DTYPE : LX_ERR_SHAPE,
                "cross_entropy: logits %s and int32 targets %s do not fit",
                lx_array_sig(logits, a, sizeof a), lx_array_sig(targets, b, sizeof b));
        return NULL;
    }
    int64_t V = logits->shape[logits->ndim - 1];
    if (!lx_is_abstract(targets))
        for (int64_t i = 0; i < targets->size; i++)
            if (lx_i32(targets)[i] < 0 || lx_i32(targets)[i] >= V) {
                lx_fail(LX_ERR_INVALID_ARGUMENT, "cross_entropy: target %d at index %lld is outside [0, %lld)",
                        lx_i32(targets)[i], (long long)i, (long long)V);
                return NULL;
            }
    /* -sum(onehot * (logits - logsumexp(logits))) over tokens / (count + EPS), EPS = 1e-8 */
    lx_array *lsm = lx_sub(logits, lx_logsumexp(logits, LX_AXES(-1), true));
    lx_array *xent = lx_neg(lx_sum(lx_mul(lx_one_hot(targets, V), lsm), LX_ALL_AXES, false));
    return lx_div(xent, lx_scalar((float)targets->size + 1e-8f));
}

/* ------------------------------------------------------------------ the model handle */

struct llama_model {
    llama_config cfg;
    llama_style style;
    linen_module *linen;
    lx_tree *variables; /* Linen top: {params, [cache]} */
    nnx_module *nnx;    /* NNX top */
};

const llama_config *llama_model_config(const llama_model *m) { return &m->cfg; }
const linen_module *llama_model_linen_module(const llama_model *m) { return m ? m->linen : NULL; }
const lx_tree *llama_model_variables(const llama_model *m) { return m ? m->variables : NULL; }
nnx_module *llama_model_nnx_module(const llama_model *m) { return m ? m->nnx : NULL; }
llama_style llama_model_style(const llama_model *m) { return m->style; }

void llama_model_free(llama_model *m) {
    if (!m) return;
    lx_tree_release(m->variables);
    linen_module_release(m->linen);
    nnx_module_release(m->nnx);
    free(m);
}

lx_status llama_model_new(const llama_config *cfg, llama_style style, int64_t seed, llama_model **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_new: out is NULL");
    *out = NULL;
    LX_TRY(llama_config_check(cfg));
    if (style != LLAMA_LINEN_TOP && style != LLAMA_NNX_TOP)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_new: unknown style %d", (int)style);
    llama_model *m = calloc(1, sizeof *m);
    if (!m) return lx_fail(LX_ERR_NO_MEMORY, "llama_model_new: out of memory");
    m->cfg = *cfg;
    m->style = style;
    lx_kwarg kw[LLAMA_CONFIG_NKW];
    llama_config_kwargs(cfg, kw);
    lx_call ctor = {0, NULL, LLAMA_CONFIG_NKW, kw};
    lx_key key = lx_key_from_seed(seed);
    lx_status st;
    size_t mark = lx_pool_open();
    if (style == LLAMA_LINEN_TOP) {
        st = linen_module_new(&LLAMA_LINEN_TRANSFORMER, &ctor, &m->linen);
        if (st == LX_OK) {
            lx_array *tok = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 1}));
            lx_array *pos = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){1, 1}));
            st = tok && pos ? linen_init(m->linen, LINEN_KEY(key), &LX_ARGS(tok, pos), NULL, &m->variables)
                            : lx_last_status();
        }
    } else {
        nnx_rngs *r = NULL;
        nnx_stream_spec spec = {.name = "params", .has_key = true, .key = key};
        st = nnx_rngs_new(1, &spec, &r);
        if (st == LX_OK) st = nnx_module_new(&LLAMA_NNX_TRANSFORMER_TYPE, &ctor, r, &m->nnx);
        nnx_rngs_release(r);
    }
    lx_pool_close(mark);
    if (st != LX_OK) {
        llama_model_free(m);
        return st;
    }
    *out = m;
    return LX_OK;
}

lx_status llama_model_params(llama_model *m, lx_tree **out) {
    if (!m || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_params: NULL argument");
    *out = NULL;
    if (m->style == LLAMA_LINEN_TOP) {
        const lx_value *p = lx_tree_get(m->variables, "params");
        if (!p || p->kind != LX_V_TREE) return lx_fail(LX_ERR_NOT_FOUND, "llama_model_params: no params collection");
        *out = lx_tree_copy(p->u.tree);
        return *out ? LX_OK : lx_last_status();
    }
    nnx_filter f = NNX_OF_TYPE(&lx_Param);
    return nnx_state(m->nnx, 1, &f, out);
}

/* For every leaf of `current` (flattened), the array at the same path of `given`; same shapes and
 * dtypes, and no extra paths in `given`. On success *arrays holds `current`'s paths with the new
 * arrays as values (caller frees with lx_flat_free). */
static lx_status match_params(const lx_tree *current, const lx_tree *given, lx_flat *arrays) {
    lx_flat cur = {0}, giv = {0};
    *arrays = (lx_flat){0};
    lx_status st = lx_tree_flatten(current, &cur);
    if (st == LX_OK) st = lx_tree_flatten(given, &giv);
    for (size_t i = 0; st == LX_OK && i < cur.len; i++) {
        lx_array *a = lx_value_leaf_array(&cur.items[i].value), *b = lx_value_leaf_array(lx_tree_find(given, cur.items[i].path));
        char sa[64], sb[64];
        if (!b)
            st = lx_fail(LX_ERR_NOT_FOUND, "llama params: missing %s (expected %s)", cur.items[i].path,
                         lx_array_sig(a, sa, sizeof sa));
        else if (a->dtype != b->dtype || a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim))
            st = lx_fail(LX_ERR_SHAPE, "llama params: %s: expected %s, found %s", cur.items[i].path,
                         lx_array_sig(a, sa, sizeof sa), lx_array_sig(b, sb, sizeof sb));
        else
            st = lx_flat_append(arrays, cur.items[i].path, lx_array_v(b));
    }
    for (size_t i = 0; st == LX_OK && i < giv.len; i++)
        if (!lx_tree_find(current, giv.items[i].path))
            st = lx_fail(LX_ERR_NOT_FOUND, "llama params: unexpected parameter %s (not in this model)", giv.items[i].path);
    lx_flat_free(&cur);
    lx_flat_free(&giv);
    if (st != LX_OK) lx_flat_free(arrays);
    return st;
}

static lx_status plain_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    (void)user;
    lx_array *a = lx_value_leaf_array(leaf);
    if (!a) return lx_fail(LX_ERR_TYPE, "llama params: %s is a %s, not an array", path, lx_kind_name(leaf->kind));
    *out = lx_array_v(lx_retain(a));
    return LX_OK;
}

/* `params` in the model's layer layout: a scanned tree (decoder/layers) for an unrolled model is
 * unstacked, an unrolled one (decoder/layers_0...) for a scanned model stacked, on axis 1
 * (MaxText's param_scan_axis). *out stays NULL when nothing needs converting. */
lx_status llama_params_layout_(const llama_config *cfg, const lx_tree *params, lx_tree **out) {
    *out = NULL;
    bool has_scanned = lx_tree_find(params, "decoder/layers") != NULL;
    bool has_unrolled = lx_tree_find(params, "decoder/layers_0") != NULL;
    if (cfg->scan_layers ? !has_unrolled : !has_scanned) return LX_OK;
    lx_tree *plain = NULL;
    LX_TRY(lx_tree_map(params, plain_leaf, NULL, &plain));
    linen_var_axes axes = LINEN_VAR_AXES({"decoder", 1});
    lx_status st = cfg->scan_layers ? linen_stack_layers(plain, "layers", axes, NULL, out)
                                      : linen_unstack_layers(plain, "layers", axes, NULL, out);
    lx_tree_release(plain);
    return st;
}

lx_status llama_model_load_params(llama_model *m, const lx_tree *params) {
    if (!m || !params) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_load_params: NULL argument");
    lx_tree *converted = NULL;
    LX_TRY(llama_params_layout_(&m->cfg, params, &converted));
    if (converted) params = converted;
    lx_tree *cur = NULL;
    lx_status st = llama_model_params(m, &cur);
    if (st != LX_OK) {
        lx_tree_release(converted);
        return st;
    }
    lx_flat arrays;
    st = match_params(cur, params, &arrays);
    if (st != LX_OK) {
        lx_tree_release(cur);
        lx_tree_release(converted);
        return st;
    }
    if (m->style == LLAMA_LINEN_TOP) {
        /* keep each box (its names) around the new array */
        lx_flat leaves = {0};
        for (size_t i = 0; st == LX_OK && i < arrays.len; i++) {
            const lx_value *old = lx_tree_find(cur, arrays.items[i].path);
            lx_array *a = arrays.items[i].value.u.array;
            if (old->kind == LX_V_BOX) {
                lx_box *b = NULL;
                st = lx_box_replace_boxed(old->u.box, a, &b);
                if (st == LX_OK) st = lx_flat_append(&leaves, arrays.items[i].path, lx_box_v(b));
                lx_box_release(b);
            } else {
                st = lx_flat_append(&leaves, arrays.items[i].path, lx_array_v(a));
            }
        }
        lx_tree *np = NULL, *nv = NULL;
        if (st == LX_OK) st = lx_tree_unflatten(&leaves, &np);
        if (st == LX_OK) {
            nv = lx_tree_copy(m->variables);
            st = nv ? lx_tree_set(nv, "params", lx_tree_v(np)) : lx_last_status();
        }
        if (st == LX_OK) {
            lx_tree_release(m->variables);
            m->variables = nv;
            nv = NULL;
        }
        lx_tree_release(nv);
        lx_tree_release(np);
        lx_flat_free(&leaves);
    } else {
        lx_tree *state = NULL;
        st = lx_tree_unflatten(&arrays, &state);
        if (st == LX_OK) st = nnx_update(m->nnx, 1, &state);
        lx_tree_release(state);
    }
    lx_flat_free(&arrays);
    lx_tree_release(cur);
    lx_tree_release(converted);
    return st;
}

static lx_status check_tokens(const llama_model *m, lx_array *tokens, lx_array *positions) {
    char buf[64];
    if (!tokens) return lx_null_input("llama: tokens is NULL");
    if (tokens->dtype != LX_I32 || tokens->ndim != 2)
        return lx_fail(tokens->dtype != LX_I32 ? LX_ERR_DTYPE : LX_ERR_SHAPE,
                       "llama: tokens must be int32 (batch, seq), got %s", lx_array_sig(tokens, buf, sizeof buf));
    if (tokens->shape[1] < 1 || tokens->shape[0] < 1)
        return lx_fail(LX_ERR_SHAPE, "llama: empty token batch %s", lx_array_sig(tokens, buf, sizeof buf));
    if (tokens->shape[1] > m->cfg.max_target_length)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama: sequence of %lld tokens is longer than max_target_length %lld",
                       (long long)tokens->shape[1], (long long)m->cfg.max_target_length);
    for (int64_t i = 0; !lx_is_abstract(tokens) && i < tokens->size; i++) {
        int32_t t = lx_i32(tokens)[i];
        if (t < 0 || t >= m->cfg.vocab_size)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama: token %d at index %lld is outside the vocabulary [0, %lld)",
                           t, (long long)i, (long long)m->cfg.vocab_size);
    }
    if (positions) {
        if (positions->dtype != LX_I32 || !lx_same_shape(positions, tokens))
            return lx_fail(positions->dtype != LX_I32 ? LX_ERR_DTYPE : LX_ERR_SHAPE,
                           "llama: positions must be int32 of the tokens' shape %s",
                           lx_array_sig(tokens, buf, sizeof buf));
        for (int64_t i = 0; !lx_is_abstract(positions) && i < positions->size; i++)
            if (lx_i32(positions)[i] < 0 || lx_i32(positions)[i] >= m->cfg.max_target_length)
                return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama: position %d is outside [0, max_target_length %lld)",
                               lx_i32(positions)[i], (long long)m->cfg.max_target_length);
    }
    return LX_OK;
}

lx_array *llama_model_logits(llama_model *m, lx_array *tokens, lx_array *positions) {
    return llama_model_forward(m, tokens, positions, NULL);
}

/* Replace one collection of the Linen top's variables (the decode cache, every step). Only the
 * top map changes: in place when the model alone holds it, else (a caller kept a reference through
 * llama_model_variables) a new top map sharing the other collections, so the holder's tree never
 * changes. Nothing is copied below the top: no per-step copy of the params maps. */
static lx_status set_collection(llama_model *m, const char *col, lx_value v) {
    if (!lx_tree_is_shared(m->variables)) return lx_tree_set(m->variables, col, v);
    lx_tree *nv = lx_tree_new();
    lx_status st = nv ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "llama: out of memory");
    for (size_t i = 0; st == LX_OK && i < lx_tree_len(m->variables); i++)
        st = lx_tree_set(nv, lx_tree_key(m->variables, i), *lx_tree_at(m->variables, i));
    if (st == LX_OK) st = lx_tree_set(nv, col, v);
    if (st != LX_OK) {
        lx_tree_release(nv);
        return st;
    }
    lx_tree_release(m->variables);
    m->variables = nv;
    return LX_OK;
}

lx_array *llama_model_forward(llama_model *m, lx_array *tokens, lx_array *positions, lx_array *segment_ids) {
    if (!m) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_logits: model is NULL");
        return NULL;
    }
    if (check_tokens(m, tokens, positions) != LX_OK) return NULL;
    bool decode = m->cfg.cache_batch > 0;
    if (segment_ids && (segment_ids->dtype != LX_I32 || !lx_same_shape(segment_ids, tokens))) {
        lx_fail(segment_ids->dtype != LX_I32 ? LX_ERR_DTYPE : LX_ERR_SHAPE,
                "llama: segment ids must be int32 of the tokens' shape");
        return NULL;
    }
    if (segment_ids && decode) {
        lx_fail(LX_ERR_UNSUPPORTED, "llama: segment ids with the KV cache (decode models take one sequence per row)");
        return NULL;
    }
    if (!positions) {
        int64_t start = decode ? llama_model_cache_index(m) : 0;
        if (start < 0) start = 0;
        positions = llama_positions(tokens->shape[0], tokens->shape[1], start);
        if (!positions) return NULL;
    }
    const char *mode = decode ? LLAMA_MODE_AUTOREGRESSIVE : LLAMA_MODE_TRAIN;
    if (m->style == LLAMA_NNX_TOP) { /* in the top module's frame, so its children are named */
        int framed = nnx_frame_enter(m->nnx);
        if (framed < 0) return NULL;
        lx_array *y = nnx_transformer_forward(m->nnx, tokens, positions, segment_ids, mode, decode);
        nnx_frame_leave(framed);
        return y;
    }
    lx_value args[4] = {lx_array_v(tokens), lx_array_v(positions), seg_value(segment_ids), lx_str_v(mode)};
    lx_call c = {4, args, 0, NULL};
    static const char *const cache_cols[] = {"cache"};
    linen_opts o = {0};
    if (decode) {
        o.mutable = (linen_mutable){LINEN_MUTABLE_LIST, 1, cache_cols};
        o.mutable_given = true;
    }
    lx_value out;
    lx_tree *mutated = NULL;
    if (linen_apply(m->linen, m->variables, &c, LINEN_NO_RNGS, &o, &out, decode ? &mutated : NULL) != LX_OK)
        return NULL;
    lx_array *y = out.kind == LX_V_ARRAY ? lx_autorelease(lx_retain(out.u.array)) : NULL;
    lx_value_free(&out);
    if (decode && y) {
        const lx_value *cache = lx_tree_get(mutated, "cache");
        if (!cache) lx_fail(LX_ERR_INTERNAL, "llama: the decode apply returned no cache");
        if (!cache || set_collection(m, "cache", *cache) != LX_OK) y = NULL;
    }
    lx_tree_release(mutated);
    return y;
}

lx_array *llama_model_loss(llama_model *m, lx_array *tokens) {
    if (!m) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_loss: model is NULL");
        return NULL;
    }
    if (!tokens) {
        (void)lx_null_input("llama_model_loss: tokens is NULL");
        return NULL;
    }
    if (tokens->dtype != LX_I32 || tokens->ndim != 2 || tokens->shape[1] < 2) {
        lx_fail(tokens->dtype != LX_I32 ? LX_ERR_DTYPE : LX_ERR_SHAPE,
                "llama_model_loss: tokens must be int32 (batch, seq + 1) with seq >= 1");
        return NULL;
    }
    int64_t S = tokens->shape[1];
    lx_array *in = lx_slice(tokens, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(0, S - 1)});
    lx_array *tg = lx_slice(tokens, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(1, S)});
    return llama_cross_entropy(llama_model_logits(m, in, NULL), tg);
}

lx_status llama_cache_zero_leaf_(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    (void)user;
    lx_array *a = lx_value_leaf_array(leaf);
    if (!a) return lx_fail(LX_ERR_TYPE, "llama cache: %s is not an array", path);
    lx_array *z = lx_array_new(a->dtype, a->ndim, a->shape);
    if (!z) return lx_last_status();
    *out = lx_array_v(z);
    return LX_OK;
}

lx_status llama_model_reset_cache(llama_model *m) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_reset_cache: model is NULL");
    if (m->cfg.cache_batch <= 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama: not a decode model (cache_batch 0)");
    if (m->style == LLAMA_LINEN_TOP) {
        const lx_value *c = lx_tree_get(m->variables, "cache");
        if (!c || c->kind != LX_V_TREE) return lx_fail(LX_ERR_NOT_FOUND, "llama: no cache collection");
        lx_tree *z = NULL;
        LX_TRY(lx_tree_map(c->u.tree, llama_cache_zero_leaf_, NULL, &z));
        lx_status st = set_collection(m, "cache", lx_tree_v(z));
        lx_tree_release(z);
        return st;
    }
    nnx_filter f = NNX_OF_TYPE(&lx_Cache);
    lx_tree *state = NULL, *z = NULL;
    LX_TRY(nnx_state(m->nnx, 1, &f, &state));
    lx_status st = lx_tree_map(state, llama_cache_zero_leaf_, NULL, &z);
    if (st == LX_OK) st = nnx_update(m->nnx, 1, &z);
    lx_tree_release(z);
    lx_tree_release(state);
    return st;
}

int64_t llama_model_cache_index(llama_model *m) {
    if (!m || m->cfg.cache_batch <= 0) return -1;
    const char *path = "decoder/layers_0/self_attention/KVCache_0/cache_index";
    const lx_value *v = NULL;
    lx_tree *state = NULL;
    if (m->style == LLAMA_LINEN_TOP) {
        const lx_value *c = lx_tree_get(m->variables, "cache");
        v = c && c->kind == LX_V_TREE ? lx_tree_find(c->u.tree, path) : NULL;
    } else {
        nnx_filter f = NNX_OF_TYPE(&lx_Cache);
        if (nnx_state(m->nnx, 1, &f, &state) != LX_OK) return -1;
        v = lx_tree_find(state, path);
    }
    lx_array *a = lx_value_leaf_array(v);
    int64_t idx = a && a->dtype == LX_I32 && !lx_is_abstract(a) ? lx_i32(a)[0] : -1;
    lx_tree_release(state);
    return idx;
}

lx_array *llama_generate(llama_model *m, lx_array *prompt, int64_t n, const lx_sampling *s, lx_key key) {
    if (!m || !s) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_generate: NULL argument");
        return NULL;
    }
    if (!prompt) {
        (void)lx_null_input("llama_generate: prompt is NULL");
        return NULL;
    }
    if (m->cfg.cache_batch <= 0) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_generate: not a decode model (build it with cache_batch > 0)");
        return NULL;
    }
    if (check_tokens(m, prompt, NULL) != LX_OK) return NULL;
    int64_t B = prompt->shape[0], P = prompt->shape[1];
    if (n < 1 || P + n - 1 > m->cfg.max_target_length) {
        lx_fail(LX_ERR_INVALID_ARGUMENT,
                "llama_generate: a prompt of %lld tokens and %lld new ones need %lld positions; max_target_length is %lld",
                (long long)P, (long long)n, (long long)(P + n - 1), (long long)m->cfg.max_target_length);
        return NULL;
    }
    if (B != m->cfg.cache_batch) {
        lx_fail(LX_ERR_SHAPE, "llama_generate: prompt batch %lld does not match the KV cache batch %lld", (long long)B,
                (long long)m->cfg.cache_batch);
        return NULL;
    }
    if (llama_model_reset_cache(m) != LX_OK) return NULL;
    lx_array *out = lx_autorelease(lx_array_empty(LX_I32, 2, (int64_t[]){B, n}));
    lx_array *cur = lx_array_copy(prompt); /* owned across the per-step pools */
    if (!out || !cur) {
        lx_release(cur);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        size_t mark = lx_pool_open();
        lx_array *logits = llama_model_logits(m, cur, NULL);
        lx_key ks[2];
        lx_array *tok = NULL;
        if (logits && lx_key_split(key, 2, lx_random_legacy(), ks) == LX_OK) {
            key = ks[0];
            int64_t S = logits->shape[1];
            lx_array *last = lx_reshape(lx_slice(logits, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(S - 1, S)}),
                                        LX_SHAPE(B, m->cfg.vocab_size));
            tok = lx_sample_tokens(ks[1], last, s);
        }
        lx_release(cur);
        cur = NULL;
        if (tok) {
            for (int64_t b = 0; b < B; b++) lx_i32(out)[b * n + i] = lx_i32(tok)[b];
            cur = lx_array_reshape_view(tok, 2, (int64_t[]){B, 1}); /* owned */
            if (cur) {
                lx_array *c = lx_array_copy(cur);
                lx_release(cur);
                cur = c;
            }
        }
        lx_pool_close(mark);
        if (!cur) return NULL;
    }
    lx_release(cur);
    return out;
}

/* Quantization (llama_quant.c) replaces the Linen top's variables with their PTQ form; takes a
 * reference to `v`. */
void llama_model_set_variables_(llama_model *m, lx_tree *v) {
    lx_tree_release(m->variables);
    m->variables = v;
}
