/* linnx/llama.h - the showcase: MaxText's llama2-style decoder, mixing both module styles through
 * the bridge (spec/maxtext-decoder.md §D, spec/maxtext-wrappers.md §5).
 *
 * The NNX layers are MaxText's classes, with MaxText's attribute names (which are also the
 * checkpoint names) and the order they draw `rngs.params()` keys in:
 *   RMSNorm(num_features, epsilon, kernel_axes)             scale (E,) ones      1 key
 *   DenseGeneral(in_features_shape, out_features_shape, axis, kernel_axes, kernel_init,
 *                depth_scaling)                           kernel in + out      1 key
 *   Embed(num_embeddings, num_features, embedding_init)     embedding (V, E)     1 key
 *   Attention: [KVCache_0], query, key, value, out          (E,H,D) (E,K,D) (E,K,D) (H,D,E)
 *   MlpBlock: wi_0, wi_1, (Dropout: Rngs.fork, one key), wo (E,M) (E,M) (M,E)
 *   LlamaDecoderLayer: pre_self_attention_layer_norm, self_attention,
 *                      post_self_attention_layer_norm, mlp, (Dropout: Rngs.fork)
 * DenseGeneral initialises the kernel with variance_scaling on its full shape (in_axis = the
 * contracted axes, out_axis = the rest: MaxText's nd_dense_init, not Flax's flat init) and the
 * query kernel is divided by f32(sqrt(head_dim)) afterwards: there is no 1/sqrt(d) at run time.
 * Every kernel carries its logical axis names as `out_sharding` metadata, so leaving NNX through
 * ToLinen with MaxText's variable_to_logically_partitioned it becomes a LogicallyPartitioned box.
 * Dropout (rate 0.0 here) is not applied; the Rngs.fork its constructor does in MaxText is
 * reproduced (one draw from every stream) so the keys of later layers are MaxText's.
 *
 * Two compositions of the same layers (llama_style):
 *  - LLAMA_LINEN_TOP, MaxText's Linen stack: a Linen `Transformer` whose children are
 *    `token_embedder` = to_linen(Embed) and `decoder` = Linen `Decoder`; the Decoder holds
 *    `layers_{i}` = LlamaDecoderLayerToLinen (to_linen_class(LlamaDecoderLayer,
 *    base_metadata_fn=variable_to_logically_partitioned)), then `decoder_norm` =
 *    to_linen(RMSNorm) and `logits_dense` = to_linen(DenseGeneral). Variables:
 *    {params: {token_embedder: {embedding}, decoder: {layers_0: {...}, decoder_norm: {scale},
 *    logits_dense: {kernel}}}}, every leaf a LogicallyPartitioned box.
 *  - LLAMA_NNX_TOP, MaxText's NNX Transformer over a bridged Linen decoder: an NNX `Transformer`
 *    holding `token_embedder` = Embed (NNX, first draw of the top Rngs) and `decoder` =
 *    ToNNX(the same Linen Decoder), lazy_init'ed in the constructor. Its Param state has the
 *    same paths and shapes as the Linen top's params (the collection level dropped by ToNNX).
 * Each composition derives its keys the way the same Flax program would, so for one seed their
 * parameter VALUES differ (the Linen top hashes module paths under the init key; the NNX top
 * forks its Rngs into ToNNX); loaded with the same parameters they give the same logits.
 * MaxText passes the Decoder the embedder module itself; here the top embeds and passes the
 * activations (the parameter tree is the same).
 *
 * The embedding is initialised with normal(stddev=1.0), which MaxText's Transformer passes to
 * Embed (models.py, TransformerLinenPure.setup and Transformer.__init__ at e591f30c); Embed's own
 * default, variance_scaling(1, fan_in, normal, out_axis=0), is what a bare Embed gets.
 *
 * Decoding: a model built with cache_batch > 0 (MaxText's autoregressive model_mode) has in each
 * Attention a `KVCache_0` holding Cache variables cached_key, cached_value (cache_batch,
 * max_target_length, kv_heads, head_dim) and cache_index (int32 scalar) - Flax's decode cache
 * names, in the `cache` collection on the Linen side. A call with model_mode "prefill" or
 * "autoregressive" writes the new keys/values at cache_index, attends over the cache up to the
 * new end and advances cache_index; positions must be the absolute positions.
 *
 * Ownership: llama_model_new gives the caller a model (llama_model_free). Arrays returned by
 * llama_* calls are owned by the innermost pool (as ops). Trees returned by the *_params calls
 * are borrowed from the model unless the comment says otherwise.
 */
#ifndef LINNX_LLAMA_H
#define LINNX_LLAMA_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/linen.h"
#include "linnx/nnx.h"
#include "linnx/random.h"
#include "linnx/sampling.h"
#include "linnx/tree.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* The model's size and numerics (MaxText config names). */
typedef struct llama_config {
    int64_t vocab_size;          /* 256: bytes */
    int64_t emb_dim;             /* 64 */
    int64_t num_query_heads;     /* 4 */
    int64_t num_kv_heads;        /* 2 */
    int64_t head_dim;            /* 16 */
    int64_t mlp_dim;             /* 128 */
    int64_t num_decoder_layers;  /* 2 */
    int64_t max_target_length;   /* 256: the longest sequence (and the KV cache length) */
    double normalization_layer_epsilon; /* 1e-5 */
    double rope_min_timescale;   /* 1 */
    double rope_max_timescale;   /* 10000 */
    int64_t cache_batch;         /* 0: train mode (no KV cache); > 0: decode with this batch */
    bool scan_layers;            /* false: MaxText's scan_layers: the decoder layers run as one
                                  * nn.scan named `layers`, params stacked at decoder/layers/...
                                  * with the layer axis at 1 and 'layers' in their names
                                  * (maxtext-decoder.md §D.9); train mode (cache_batch 0) only */
} llama_config;

/* spec/maxtext-wrappers.md §5.1: V 256, E 64, H 4, K 2, D 16, M 128, L 2, max length 256. */
llama_config llama_config_tiny(void);
/* Every size in 1..2^24 (num_decoder_layers at most 64, cache_batch in 0..65536),
 * num_query_heads a multiple of num_kv_heads, head_dim even, epsilon and timescales positive:
 * LX_ERR_INVALID_ARGUMENT naming the field otherwise (also for a NULL config). scan_layers with
 * cache_batch > 0 is LX_ERR_UNSUPPORTED. */
lx_status llama_config_check(const llama_config *c);
/* Parameter count: L * (2E + E*D*(2H + 2K) + 3*E*M) + 2*V*E + E (106,816 for the tiny one). */
int64_t llama_param_count(const llama_config *c);
/* The config as constructor keyword arguments (the field names above), for the NNX types and
 * the Linen types below: fills out[0..LLAMA_CONFIG_NKW). */
#define LLAMA_CONFIG_NKW 13
void llama_config_kwargs(const llama_config *c, lx_kwarg out[LLAMA_CONFIG_NKW]);

/* ---- the NNX layers (MaxText's class names); constructors take the kwargs noted above ---- */
extern const nnx_type LLAMA_RMS_NORM_TYPE;      /* "RMSNorm" */
extern const nnx_type LLAMA_DENSE_GENERAL_TYPE; /* "DenseGeneral" */
extern const nnx_type LLAMA_EMBED_TYPE;         /* "Embed" */
extern const nnx_type LLAMA_KV_CACHE_TYPE;      /* "KVCache" */
extern const nnx_type LLAMA_ATTENTION_TYPE;     /* "Attention" (config kwargs) */
extern const nnx_type LLAMA_MLP_BLOCK_TYPE;     /* "MlpBlock" (config kwargs) */
/* LlamaDecoderLayer(**config).__call__(inputs, decoder_segment_ids=None, decoder_positions,
 * deterministic=True, model_mode="train") -> (B, S, E). */
extern const nnx_type LLAMA_DECODER_LAYER_TYPE;
/* The NNX top: Transformer(**config).__call__(decoder_input_tokens, decoder_positions,
 * decoder_segment_ids=None, model_mode="train") -> logits (B, S, V). */
extern const nnx_type LLAMA_NNX_TRANSFORMER_TYPE;

/* ---- the Linen modules ---- */
/* Decoder(**config).__call__(inputs (B,S,E), decoder_positions, decoder_segment_ids=None,
 * deterministic=True, model_mode="train") -> logits (B, S, V). */
extern const linen_type LLAMA_LINEN_DECODER;
/* Transformer(**config).__call__(decoder_input_tokens, decoder_positions, decoder_segment_ids=None,
 * model_mode="train") -> logits. */
extern const linen_type LLAMA_LINEN_TRANSFORMER;
/* LlamaDecoderLayerToLinen: to_linen_class(LlamaDecoderLayer, base_metadata_fn=
 * variable_to_logically_partitioned), made once per process (thread-safe) and kept. */
const linen_type *llama_decoder_layer_to_linen(void);

/* ---- functional pieces (pool-owned results; NULL + message on failure) ----
 * Errors follow status.h: an input of the wrong dtype (tokens, positions or segment ids not int32,
 * logits not float32) is LX_ERR_DTYPE, one of the wrong rank or shape LX_ERR_SHAPE, a value out of
 * range LX_ERR_INVALID_ARGUMENT; a NULL input propagates the pending failure (LX_ERR_FAILED_INPUT
 * when none is pending), as ops do. */
/* MaxText's cross_entropy_with_logits averaged over tokens: logits (..., V), targets int32 (...);
 * loss = sum(-onehot * (logits - logsumexp(logits))) / (count + 1e-8), written with ops (so it
 * is differentiable wherever they are). A target outside [0, V) is LX_ERR_INVALID_ARGUMENT. */
lx_array *llama_cross_entropy(lx_array *logits, lx_array *targets);
/* RoPE tables for positions (B, S) int32: cos and sin (B, S, 1, D), MaxText's split-halves form
 * (timescale_i = min * (max/min)^(2i/D), angle = position / timescale, halves repeated). An odd or
 * non-positive head_dim is LX_ERR_INVALID_ARGUMENT. */
lx_status llama_rope_tables(lx_array *positions, int64_t head_dim, double min_ts, double max_ts,
                            lx_array **cos_out, lx_array **sin_out);
/* x * cos + rotate_half(x) * sin for x (B, S, N, D), with rotate_half (x1, x2) -> (-x2, x1). */
lx_array *llama_apply_rope(lx_array *x, lx_array *cos, lx_array *sin);
/* positions (B, S) = start + arange(S) in every row, int32. */
lx_array *llama_positions(int64_t batch, int64_t seq, int64_t start);

/* ---- the model handle: one composition, its variables, forward, decode ---- */
typedef enum llama_style { LLAMA_LINEN_TOP = 0, LLAMA_NNX_TOP = 1 } llama_style;
typedef struct llama_model llama_model;

/* Build and initialise with `seed` (jax.random.key(seed) as the Linen init key / the NNX
 * Rngs(params=key(seed))). cfg->cache_batch > 0 builds a decode-mode model (with caches).
 * Errors: llama_config_check's; a NULL out or an unknown style is LX_ERR_INVALID_ARGUMENT
 * (*out is NULL after any failure). */
lx_status llama_model_new(const llama_config *cfg, llama_style style, int64_t seed, llama_model **out);
void llama_model_free(llama_model *m);
const llama_config *llama_model_config(const llama_model *m);
llama_style llama_model_style(const llama_model *m);
/* The composition's own objects, borrowed (what value_and_grad and an optimizer work on): the Linen
 * top's Transformer module and its variables ({params[, cache]}; replaced, not changed, by
 * load_params and by decode calls, so re-read it after those); the NNX top's Transformer module.
 * NULL for the other style. */
const linen_module *llama_model_linen_module(const llama_model *m);
const lx_tree *llama_model_variables(const llama_model *m);
nnx_module *llama_model_nnx_module(const llama_model *m);
/* The parameters as a tree the caller owns (lx_tree_release), leaves shared with the model:
 * Linen top: variables['params'] (LogicallyPartitioned boxes); NNX top: the Param state
 * (Variables). Both have the same paths. */
lx_status llama_model_params(llama_model *m, lx_tree **out);
/* Overwrite the parameters from `params` (either form above: boxes, Variables or arrays at the
 * same paths; shapes must match; nothing changes on failure). The arrays are shared, except that
 * a scanned layout (decoder/layers, layer axis 1) given to an unrolled model is unstacked into
 * decoder/layers_<i> and an unrolled one given to a scanned model is stacked (new arrays). */
lx_status llama_model_load_params(llama_model *m, const lx_tree *params);
/* Logits (B, S, V) for tokens (B, S) int32 at positions (B, S) int32 (NULL = 0..S-1). In a decode
 * model this runs the cache path (prefill / autoregressive) and advances the cache. Tokens
 * outside [0, vocab), positions outside [0, max_target_length) and sequences beyond
 * max_target_length (in a decode model: cached + new) are LX_ERR_INVALID_ARGUMENT; tokens or
 * positions that are not int32 LX_ERR_DTYPE; not 2-D, empty, positions of another shape, or a
 * batch other than a decode model's cache_batch LX_ERR_SHAPE. A NULL model is
 * LX_ERR_INVALID_ARGUMENT. */
lx_array *llama_model_logits(llama_model *m, lx_array *tokens, lx_array *positions);
/* The same with MaxText's packed sequences: segment_ids (B, S) int32 (NULL = one segment), a
 * query attending only to keys of its own segment; positions usually restart per segment.
 * Train mode only (a decode model with segment ids is LX_ERR_UNSUPPORTED). */
lx_array *llama_model_forward(llama_model *m, lx_array *tokens, lx_array *positions, lx_array *segment_ids);
/* Mean cross-entropy of the logits of tokens[:, :-1] against tokens[:, 1:] (next-token loss).
 * tokens not int32 is LX_ERR_DTYPE, not (batch, seq + 1) with seq >= 1 LX_ERR_SHAPE. */
lx_array *llama_model_loss(llama_model *m, lx_array *tokens);
/* Decode models: empty the caches (cache_index 0, zeros). A model without a cache is
 * LX_ERR_INVALID_ARGUMENT. */
lx_status llama_model_reset_cache(llama_model *m);
/* Decode models: the cache index of layer 0 (how many positions are filled); -1 for a NULL model
 * or one without a cache (no failure recorded). */
int64_t llama_model_cache_index(llama_model *m);

/* Autoregressive generation with the KV cache: empty the cache, prefill `prompt` (B, P) int32
 * (B = cache_batch), then draw `n` tokens, each from the last position's logits with
 * lx_sample_tokens and the key schedule of a JAX decode loop: key, sub = split(key); sample with
 * sub. Returns (B, n) int32. P + n - 1 beyond max_target_length (or n < 1) is
 * LX_ERR_INVALID_ARGUMENT before anything runs; so is a model without a cache (or a NULL model or
 * sampling). B other than cache_batch is LX_ERR_SHAPE; the prompt is checked as llama_model_logits
 * checks tokens. */
lx_array *llama_generate(llama_model *m, lx_array *prompt, int64_t n, const lx_sampling *s, lx_key key);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
