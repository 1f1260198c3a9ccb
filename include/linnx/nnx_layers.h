/* linnx/nnx_layers.h - flax.nnx layers: Linear, LinearGeneral, Conv, Embed, LayerNorm, RMSNorm,
 * BatchNorm, Dropout, MultiHeadAttention, LoRA, Sequential.
 *
 * Each layer is an nnx_type (build it by keyword with nnx_module_new, like Python) plus a typed
 * constructor and call for C code. Attribute names, shapes, default initializers and the order
 * keys are drawn from `rngs.params()` follow Flax 0.12 (spec/jax-random.md §5.2), so a seed gives
 * Flax's parameters. The math runs on the ops of ops.h / linalg.h / nn.h that the Linen twins use.
 * A typed call (nnx_linear_forward) runs in the layer's module frame just as nnx_call does, so a
 * failure inside it names the layer's attribute path ("l1: dot_general: ...").
 *
 * Every parameter takes metadata (Flax's kernel_metadata=..., bias_metadata=...: a tree such as
 * nnx_sharding_metadata gives, {out_sharding: (...), mesh: ...}) that ends up in its Variable.
 * Initializers are config fields of kind OBJ "initializer" (pass lx_ptr_v("initializer", &init)).
 *
 * Dtypes: the layers run Flax's promote_dtype on (inputs, kernel, bias) (the norms: x, scale,
 * bias): the result dtype of the operands made inexact, so float32 inputs with param_dtype
 * bfloat16 (zeros/ones/constant initializers) compute and return float32 and int32 inputs with
 * float32 params are promoted to float32. A promoted dtype of bfloat16 is LX_ERR_UNSUPPORTED (no
 * bfloat16 arithmetic). A float32 layer on float32 inputs runs no extra op.
 *
 * Ownership: constructors give the caller a module (nnx_module_release). Typed calls return
 * pool-owned arrays (NULL + message on failure), like ops.
 */
#ifndef LINNX_NNX_LAYERS_H
#define LINNX_NNX_LAYERS_H

#include "linnx/nnx.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* Flax's default initializers as constants (for config tables). */
extern const lx_initializer NNX_LECUN_NORMAL, NNX_ZEROS, NNX_ONES, NNX_HE_UNIFORM, NNX_EMBED_INIT;

/* ---- Linear(in_features, out_features, *, use_bias=True, param_dtype=float32, kernel_init=
 *      lecun_normal, bias_init=zeros, kernel_metadata=None, bias_metadata=None) ---- */
typedef struct nnx_linear_config {
    int64_t in_features, out_features;
    bool use_bias;
    lx_dtype param_dtype;
    lx_initializer kernel_init, bias_init;
    lx_value kernel_metadata, bias_metadata;
} nnx_linear_config;
typedef struct nnx_linear {
    nnx_module base;
    nnx_linear_config cfg;
    lx_variable *kernel; /* Param (in, out) */
    lx_variable *bias;   /* Param (out,) or NULL */
} nnx_linear;
extern const nnx_type nnx_Linear;
lx_status nnx_linear_new(int64_t in_features, int64_t out_features, nnx_rngs *rngs, nnx_linear **out);
lx_array *nnx_linear_forward(nnx_linear *m, lx_array *x);

/* ---- LinearGeneral(in_features, out_features, *, axis=-1, batch_axis={} (unsupported),
 *      use_bias=True, ...): kernel in_features + out_features, initialised flat as
 *      (prod(in), prod(out)) then reshaped; bias out_features. ---- */
typedef struct nnx_linear_general_config {
    lx_ints in_features, out_features, axis;
    bool use_bias;
    lx_dtype param_dtype;
    lx_initializer kernel_init, bias_init;
    lx_value kernel_metadata, bias_metadata;
} nnx_linear_general_config;
typedef struct nnx_linear_general {
    nnx_module base;
    nnx_linear_general_config cfg;
    lx_variable *kernel, *bias;
} nnx_linear_general;
extern const nnx_type nnx_LinearGeneral;
lx_array *nnx_linear_general_forward(nnx_linear_general *m, lx_array *x);

/* ---- Conv(in_features, out_features, kernel_size, strides=1, *, padding='SAME' (or
 *      'VALID', 'SAME_LOWER', 'CIRCULAR' unsupported, or explicit ints),
 *      input_dilation=1, kernel_dilation=1, feature_group_count=1, use_bias=True, ...):
 *      kernel kernel_size + (in // groups, out), NHWC activations. ---- */
typedef struct nnx_conv_config {
    int64_t in_features, out_features;
    lx_ints kernel_size, strides;
    lx_value padding; /* 'SAME' | 'VALID' | 'SAME_LOWER' | int | ints (lo=hi per axis) */
    lx_ints input_dilation, kernel_dilation;
    int64_t feature_group_count;
    bool use_bias;
    lx_dtype param_dtype;
    lx_initializer kernel_init, bias_init;
    lx_value kernel_metadata, bias_metadata;
} nnx_conv_config;
typedef struct nnx_conv {
    nnx_module base;
    nnx_conv_config cfg;
    lx_variable *kernel, *bias;
} nnx_conv;
extern const nnx_type nnx_Conv;
lx_array *nnx_conv_forward(nnx_conv *m, lx_array *x);

/* ---- Embed(num_embeddings, features, *, param_dtype, embedding_init=variance_scaling(1.0,
 *      'fan_in', 'normal', out_axis=0), embedding_metadata=None): embedding (N, F). ---- */
typedef struct nnx_embed_config {
    int64_t num_embeddings, features;
    lx_dtype param_dtype;
    lx_initializer embedding_init;
    lx_value embedding_metadata;
} nnx_embed_config;
typedef struct nnx_embed {
    nnx_module base;
    nnx_embed_config cfg;
    lx_variable *embedding;
} nnx_embed;
extern const nnx_type nnx_Embed;
/* inputs: int32 indices -> (..., F). */
lx_array *nnx_embed_forward(nnx_embed *m, lx_array *indices);
/* attend(query): query (..., F) @ embedding.T -> (..., N). Also method "attend". */
lx_array *nnx_embed_attend(nnx_embed *m, lx_array *query);

/* ---- LayerNorm(num_features, *, epsilon=1e-6, use_bias=True, use_scale=True, bias_init=zeros,
 *      scale_init=ones, reduction_axes=-1, feature_axes=-1, ...): scale then bias, each
 *      drawing a key. RMSNorm(num_features, *, epsilon=1e-6, use_scale=True, scale_init=ones,
 *      ...): scale only. reduction_axes must be the input's trailing axes (-1, or (1, 2) for a
 *      rank-3 input: others fail at call time with LX_ERR_UNSUPPORTED); feature_axes -1. ---- */
typedef struct nnx_norm_config {
    int64_t num_features;
    double epsilon;
    bool use_bias, use_scale;
    lx_dtype param_dtype;
    lx_initializer bias_init, scale_init;
    lx_ints reduction_axes, feature_axes;
    lx_value scale_metadata, bias_metadata;
} nnx_norm_config;
typedef struct nnx_norm {
    nnx_module base;
    nnx_norm_config cfg;
    lx_variable *scale, *bias;
} nnx_norm;
typedef nnx_norm nnx_layer_norm;
typedef nnx_norm nnx_rms_norm;
extern const nnx_type nnx_LayerNorm, nnx_RMSNorm;
lx_array *nnx_layer_norm_forward(nnx_norm *m, lx_array *x);
lx_array *nnx_rms_norm_forward(nnx_norm *m, lx_array *x);

/* ---- BatchNorm(num_features, *, use_running_average=False, axis=-1, momentum=0.99,
 *      epsilon=1e-5, use_bias=True, use_scale=True, ...): mean/var BatchStat (zeros/ones,
 *      no key; float32 whatever param_dtype is, as Flax makes them), then scale, bias (a key
 *      each). Training (use_running_average False) normalises
 *      with the batch statistics and updates mean/var: ra = momentum*ra + (1-momentum)*stat. ---- */
typedef struct nnx_batch_norm_config {
    int64_t num_features;
    bool use_running_average;
    int64_t axis;
    double momentum, epsilon;
    bool use_bias, use_scale;
    lx_dtype param_dtype;
    lx_initializer bias_init, scale_init;
    lx_value scale_metadata, bias_metadata;
    char *axis_name;            /* None; 'data': statistics over the ranks (distributed.h) */
} nnx_batch_norm_config;
typedef struct nnx_batch_norm {
    nnx_module base;
    nnx_batch_norm_config cfg;
    lx_variable *mean, *var;    /* BatchStat (F,) */
    lx_variable *scale, *bias;  /* Param (F,) or NULL */
} nnx_batch_norm;
extern const nnx_type nnx_BatchNorm;
/* use_running_average: < 0 = the module's setting, 0 = train, 1 = eval (Flax's call argument). */
lx_array *nnx_batch_norm_forward(nnx_batch_norm *m, lx_array *x, int use_running_average);

/* ---- Dropout(rate, *, broadcast_dims=(), deterministic=False, rng_collection='dropout',
 *      rngs=None): keeps `rngs`, a fork of rngs[rng_collection] (falling back to 'default'). ---- */
typedef struct nnx_dropout_config {
    double rate;
    lx_ints broadcast_dims;
    bool deterministic;
    char *rng_collection;
} nnx_dropout_config;
typedef struct nnx_dropout {
    nnx_module base;
    nnx_dropout_config cfg;
    nnx_module *rngs; /* RngStream or NULL */
} nnx_dropout;
extern const nnx_type nnx_Dropout;
/* deterministic: < 0 = the module's setting. rngs: NULL = the stream the module keeps. */
lx_array *nnx_dropout_forward(nnx_dropout *m, lx_array *x, int deterministic, nnx_rngs *rngs);

/* ---- MultiHeadAttention(num_heads, in_features, qkv_features=None, out_features=None,
 *      in_kv_features=None, *, dropout_rate=0.0, deterministic=None, broadcast_dropout=True,
 *      use_bias=True, normalize_qk=False, kernel_init, bias_init, out_kernel_init=None,
 *      out_bias_init=None, keep_rngs=True, ...): query/key/value LinearGeneral (in -> (H, D)),
 *      [query_ln, key_ln LayerNorm(D, use_bias=False)], out LinearGeneral ((H, D) -> out),
 *      rngs = fork of rngs['dropout'] when dropout_rate > 0 and keep_rngs. Call:
 *      __call__(inputs_q, inputs_k=None, inputs_v=None, *, mask=None, deterministic=None,
 *      rngs=None, sow_weights=False, decode=None). decode as in Flax: None in the constructor
 *      and the call is Flax's "No `decode` argument was provided ..." error; True needs the
 *      autoregressive cache (init_cache), which linnx does not build: Flax's "Autoregressive
 *      cache not initialized" error. sow_weights=True sows the softmax weights (batch..., heads,
 *      q, k) as the Intermediate tuple attribute `attention_weights` ({"0": ..., "1": ...}). ---- */
typedef struct nnx_mha_config {
    int64_t num_heads, in_features, qkv_features, out_features, in_kv_features; /* 0 = None */
    double dropout_rate;
    lx_value deterministic; /* None or bool */
    bool broadcast_dropout, use_bias, normalize_qk, keep_rngs;
    lx_dtype param_dtype;
    lx_initializer kernel_init, bias_init;
    lx_value out_kernel_init, out_bias_init; /* None or an initializer */
    lx_value decode;                         /* None or bool */
} nnx_mha_config;
typedef struct nnx_mha {
    nnx_module base;
    nnx_mha_config cfg;
    nnx_module *query, *key, *value, *out; /* LinearGeneral */
    nnx_module *query_ln, *key_ln;         /* LayerNorm or NULL */
    nnx_module *rngs;                      /* RngStream or NULL */
} nnx_mha;
extern const nnx_type nnx_MultiHeadAttention;
lx_array *nnx_mha_forward(nnx_mha *m, lx_array *q, lx_array *k, lx_array *v, lx_array *mask,
                  int deterministic, nnx_rngs *rngs);

/* ---- LoRA(in_features, lora_rank, out_features, *, base_module=None, a_initializer=
 *      he_uniform, b_initializer=zeros, lora_param_type=LoRAParam): lora_a (in, rank),
 *      lora_b (rank, out); out = x @ a @ b (+ base_module(x)). ---- */
typedef struct nnx_lora_config {
    int64_t in_features, lora_rank, out_features;
    lx_value base_module; /* consumed by the constructor (kept in the base_module field) */
    lx_dtype param_dtype;
    lx_initializer a_initializer, b_initializer;
    lx_value lora_param_type; /* None or LX_V_PTR "vartype" */
    lx_value a_metadata, b_metadata;
} nnx_lora_config;
typedef struct nnx_lora {
    nnx_module base;
    nnx_lora_config cfg;
    nnx_module *base_module;
    lx_variable *lora_a, *lora_b;
} nnx_lora;
extern const nnx_type nnx_LoRA;
lx_array *nnx_lora_forward(nnx_lora *m, lx_array *x);

/* ---- Sequential(*layers): `layers` holds modules and plain functions; __call__ runs them in
 *      order as flax.nnx.Sequential.__call__ does. The first layer gets the call itself, keywords
 *      included (its `rngs` keyword aside). Each later one gets the previous output unpacked: a
 *      tuple as positional arguments (linnx's tuple or list is a tree keyed "0", "1", ... in that
 *      order; a tuple of ints or strings, LX_V_INTS / LX_V_STRS, counts too), a dict (any other
 *      tree) as keyword arguments by its keys, anything else (an array, None, ...) as the one
 *      positional argument. `rngs` (not None) is passed on, as the keyword `rngs`, to every layer
 *      whose __call__ declares it: a module type whose method_sigs entry for __call__ names
 *      `rngs` (Dropout, MultiHeadAttention), a Sequential, a ToNNX; not to functions, nor to a
 *      module with no declared signature (Flax's has_keyword_arg: a **kwargs does not count).
 *      A layer's arguments are checked against its signature as a direct call's are; a function
 *      takes exactly one, `x` ("relu() takes 1 positional argument but 2 were given").
 *      With no layers it is the identity, as flax.nnx.Sequential() is
 *      (Linen's nn.Sequential refuses an empty one: "Empty Sequential module"): called with one
 *      positional argument it returns that value (retained: the same array); with several, the
 *      tuple of them as a tree {"0": ..., "1": ...} (linnx's tuple layout, as sow's); with only
 *      keyword arguments (an `rngs` keyword aside), the dict of them as a tree; with nothing,
 *      None (LX_V_NONE). ---- */
typedef struct nnx_array_fn {
    const char *name; /* "relu" */
    lx_array *(*fn)(lx_array *x);
} nnx_array_fn;
/* Functions usable as layers: nnx.relu, gelu (tanh form), silu, tanh, sigmoid. */
extern const nnx_array_fn NNX_RELU, NNX_GELU, NNX_SILU, NNX_TANH, NNX_SIGMOID;
static inline lx_value nnx_fn_v(const nnx_array_fn *f) { return lx_ptr_v("nnx_array_fn", (void *)f); }
typedef struct nnx_sequential {
    nnx_module base;
    nnx_list layers;
} nnx_sequential;
extern const nnx_type nnx_Sequential;

/* A layer type by its Flax name ("Linear", "Conv", "BatchNorm", ...), or NULL. */
const nnx_type *nnx_layer_type(const char *name);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
