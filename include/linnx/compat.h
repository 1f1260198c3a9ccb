/* linnx/compat.h - deprecated spellings of renamed public names (issue 17's one vocabulary).
 *
 * Each old name still compiles and means the new one; new code uses the new names. Included by
 * every public header (through status.h), so code that includes only the header it needs keeps
 * building. These aliases go away in the next minor version.
 *
 * Renamed struct members cannot be macros; they are kept as anonymous-union aliases in the
 * struct itself: linen_type.fields / .nfields are linen_type.config / .nconfig.
 */
#ifndef LINNX_COMPAT_H
#define LINNX_COMPAT_H

/* Type objects: <family>_<Flax class name>, like linen_Dense and lx_Param. */
#define NNX_LINEAR_TYPE nnx_Linear
#define NNX_LINEAR_GENERAL_TYPE nnx_LinearGeneral
#define NNX_CONV_TYPE nnx_Conv
#define NNX_EMBED_TYPE nnx_Embed
#define NNX_LAYER_NORM_TYPE nnx_LayerNorm
#define NNX_RMS_NORM_TYPE nnx_RMSNorm
#define NNX_BATCH_NORM_TYPE nnx_BatchNorm
#define NNX_DROPOUT_TYPE nnx_Dropout
#define NNX_MHA_TYPE nnx_MultiHeadAttention
#define NNX_LORA_TYPE nnx_LoRA
#define NNX_SEQUENTIAL_TYPE nnx_Sequential
#define NNX_RNGS_TYPE nnx_Rngs
#define NNX_RNG_STREAM_TYPE nnx_RngStream
#define BRIDGE_TO_LINEN_TYPE bridge_ToLinen
#define BRIDGE_TO_NNX_TYPE bridge_ToNNX

/* Rngs: everything about streams is nnx_rngs_* (nnx.h). */
#define nnx_reseed nnx_rngs_reseed
#define nnx_rng_stream_fork nnx_rngs_fork_stream
#define nnx_rng_stream_draw nnx_rngs_stream_draw
#define nnx_rngs_count nnx_rngs_num_streams

/* The Variable registry is lx_variable_* (variable.h). */
#define lx_register_variable_name lx_variable_register_name

/* One causal-mask function, shared by Linen and NNX code (nn.h). */
#define linen_make_causal_mask lx_make_causal_mask

/* linen_apply took the call before rngs: linen_apply(m, variables, call, rngs, opts, &out, &mut).
 * The third argument's type tells the two orders apart. */
#ifndef __cplusplus /* _Generic is C only; C++ callers use the new order */
#define linen_apply(m_, variables_, a3_, ...)                                               \
    _Generic((a3_), linen_rngs: (linen_apply), default: linen_apply_call_first_)(          \
        (m_), (variables_), (a3_), __VA_ARGS__)
#define LINNX_COMPAT_LINEN_APPLY_
#endif

#endif
