/* Shared between the showcase decoder's files (src/models/llama_*.c); not installed. */
#ifndef LINNX_LLAMA_INTERNAL_H
#define LINNX_LLAMA_INTERNAL_H

#include "linnx/llama.h"
#include "linnx/config.h"

/* The field table of llama_config (every NNX and Linen type of the model that takes the whole
 * config binds it from keyword arguments with these names). */
extern const lx_field LLAMA_CONFIG_FIELDS[];
extern const int LLAMA_CONFIG_NFIELDS;

/* MaxText's DEFAULT_MASK_VALUE: -0.7 * float32 max. */
#define LLAMA_MASK_VALUE (-0.7f * 3.40282347e+38f)

/* model_mode strings (MaxText's common_types). */
#define LLAMA_MODE_TRAIN "train"
#define LLAMA_MODE_PREFILL "prefill"
#define LLAMA_MODE_AUTOREGRESSIVE "autoregressive"

/* The layers' typed forwards (pool-owned results, NULL + message on failure). */
lx_array *llama_rms_norm_forward(nnx_module *m, lx_array *x);
lx_array *llama_dense_general_forward(nnx_module *m, lx_array *x);
lx_array *llama_embed_forward(nnx_module *m, lx_array *tokens);
/* inputs (B,S,E), positions (B,S) int32, segment ids (B,S) int32 or NULL; use_cache: the
 * prefill/autoregressive path (needs a KVCache_0). */
lx_array *llama_attention_forward(nnx_module *m, lx_array *x, lx_array *positions, lx_array *segment_ids,
                                  bool use_cache);
lx_array *llama_mlp_forward(nnx_module *m, lx_array *x);
lx_array *llama_layer_forward(nnx_module *m, lx_array *x, lx_array *positions, lx_array *segment_ids,
                              bool use_cache);

/* Reads the common call arguments of the decoder pieces: (inputs, decoder_positions,
 * decoder_segment_ids=None, deterministic=True, model_mode="train"). *use_cache is true for
 * prefill / autoregressive. */
lx_status llama_read_call(const lx_call *c, const char *input_name, lx_array **inputs, lx_array **positions,
                          lx_array **segment_ids, bool *use_cache, const char **mode);

/* llama_model.c: replace the Linen top's variables (quantization, llama_quant.c); takes `v`. */
void llama_model_set_variables_(llama_model *m, lx_tree *v);
/* lx_tree_map callback: a zeroed array of the leaf's dtype and shape (the decode cache's reset). */
lx_status llama_cache_zero_leaf_(const char *path, const lx_value *leaf, void *user, lx_value *out);
/* `params` (arrays, boxes or Variables) in cfg's layer layout: a scanned tree (decoder/layers,
 * layer axis 1) unstacked for an unrolled config, an unrolled one stacked for a scanned config,
 * as plain arrays; *out stays NULL when the layout already fits (llama_model.c). */
lx_status llama_params_layout_(const llama_config *cfg, const lx_tree *params, lx_tree **out);

#endif
