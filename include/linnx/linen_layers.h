/* linnx/linen_layers.h - flax.linen's layers: Dense, DenseGeneral, Conv, Embed, LayerNorm,
 * RMSNorm, BatchNorm, Dropout, MultiHeadDotProductAttention, Sequential and the activation
 * functions.
 *
 * Each layer is a linen_type whose config struct is below; build one by name and keyword like
 * the Flax constructor:
 *
 *   linen_module *d;
 *   lx_call c = LX_CALL(...);           // or LX_CALL_ARGS(lx_int_v(8))
 *   linen_module_new(&linen_Dense, &c, &d);
 *
 * Parameter names, shapes, default initializers and the order keys are drawn in are Flax's
 * (spec/jax-random.md §5.2), so a seed gives Flax's numbers. Initializers are config fields of
 * kind OBJ "initializer": pass lx_ptr_v("initializer", &init). The math is the shared ops
 * (linalg.h dot_general, nn.h conv_general / layer_norm / rms_norm / softmax, dropout.h), the
 * same kernels NNX's layers call.
 *
 * Typed helpers (linen_dense(s, NULL, 8, x), ...) build the layer with defaults and call it as a
 * child of the scope `s` (NULL name: auto-named "<Type>_<i>"). They return a pool-owned array,
 * or NULL on failure; a NULL x keeps the pending failure without a new message (status.h), so
 * calls chain:
 *   y = linen_dense(s, NULL, 2, lx_relu(linen_dense(s, NULL, 8, x)));
 *
 * Supported subset (other values fail with LX_ERR_UNSUPPORTED when the layer runs): dtype None or
 * float32, param_dtype float32 (bfloat16 for zeros/ones/constant initializers only), Conv padding
 * SAME/VALID/CIRCULAR/CAUSAL/int/pairs, LayerNorm / RMSNorm over trailing axes (reduction_axes
 * -1 or (1, 2) of a rank-3 input, feature_axes among them), MultiHeadDotProductAttention without
 * decode. Conv's kernel_size must be a tuple: an int is Flax's TypeError ("Expected Conv
 * kernel_size to be a tuple/list of integers ...") when the module is built.
 *
 * Dtypes: each layer runs Flax's promote_dtype(inputs, kernel, bias, dtype=self.dtype) (the
 * norms: x, scale, bias) before its op: with dtype None the result dtype of the operands made
 * inexact (float32 inputs with bfloat16 params compute and return float32; int32 inputs with
 * float32 params are promoted to float32), with dtype float32 everything is cast to float32. A
 * promoted dtype of bfloat16 is LX_ERR_UNSUPPORTED naming it (no bfloat16 arithmetic). The casts
 * carry gradients (a bfloat16 param gets a bfloat16 gradient); a float32 layer on float32 inputs
 * runs no extra op. MultiHeadDotProductAttention passes dtype and param_dtype to its projections.
 */
#ifndef LINNX_LINEN_LAYERS_H
#define LINNX_LINEN_LAYERS_H

#include "linnx/config.h"
#include "linnx/init.h"
#include "linnx/linen.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---- configs (the dataclass fields, in Flax's order) ---- */
typedef struct linen_dense_config {
    int64_t features;
    bool use_bias;          /* True */
    char *dtype;            /* None */
    lx_dtype param_dtype;   /* float32 */
    lx_initializer kernel_init; /* lecun_normal */
    lx_initializer bias_init;   /* zeros */
} linen_dense_config;

typedef struct linen_dense_general_config {
    lx_ints features;
    lx_ints axis;           /* -1 */
    lx_ints batch_dims;     /* () */
    bool use_bias;
    char *dtype;
    lx_dtype param_dtype;
    lx_initializer kernel_init, bias_init;
} linen_dense_general_config;

typedef struct linen_conv_config {
    int64_t features;
    lx_ints kernel_size;
    lx_ints strides;         /* 1 */
    lx_value padding;        /* 'SAME' | 'VALID' | 'CIRCULAR' | 'CAUSAL' | int | ints (pairs) */
    lx_ints input_dilation;  /* 1 */
    lx_ints kernel_dilation; /* 1 */
    int64_t feature_group_count; /* 1 */
    bool use_bias;
    char *dtype;
    lx_dtype param_dtype;
    lx_initializer kernel_init, bias_init;
} linen_conv_config;

typedef struct linen_embed_config {
    int64_t num_embeddings;
    int64_t features;
    char *dtype;
    lx_dtype param_dtype;
    lx_initializer embedding_init; /* variance_scaling(1.0, 'fan_in', 'normal', out_axis=0) */
} linen_embed_config;

typedef struct linen_layer_norm_config {
    double epsilon;          /* 1e-6 */
    char *dtype;
    lx_dtype param_dtype;
    bool use_bias, use_scale;
    lx_initializer bias_init, scale_init;
    lx_ints reduction_axes;  /* -1 */
    lx_ints feature_axes;    /* -1 */
    bool use_fast_variance;  /* True */
} linen_layer_norm_config;

typedef struct linen_rms_norm_config {
    double epsilon;          /* 1e-6 */
    char *dtype;
    lx_dtype param_dtype;
    bool use_scale;
    lx_initializer scale_init;
    lx_ints reduction_axes;  /* -1 */
    lx_ints feature_axes;    /* -1 */
} linen_rms_norm_config;

typedef struct linen_batch_norm_config {
    lx_value use_running_average; /* None (then required at call time) or a bool */
    int64_t axis;            /* -1 */
    double momentum;         /* 0.99 */
    double epsilon;          /* 1e-5 */
    char *dtype;
    lx_dtype param_dtype;
    bool use_bias, use_scale;
    lx_initializer bias_init, scale_init;
    bool use_fast_variance;  /* True */
    char *axis_name;         /* None; 'data': statistics over the ranks (distributed.h, sync batch-norm) */
} linen_batch_norm_config;

typedef struct linen_dropout_config {
    double rate;
    lx_ints broadcast_dims;
    lx_value deterministic;  /* None or a bool */
    char *rng_collection;    /* 'dropout' */
} linen_dropout_config;

typedef struct linen_mha_config {
    int64_t num_heads;
    char *dtype;
    lx_dtype param_dtype;
    lx_value qkv_features;   /* None or int */
    lx_value out_features;   /* None or int */
    bool broadcast_dropout;  /* True */
    double dropout_rate;     /* 0.0 */
    lx_value deterministic;  /* None or a bool */
    lx_initializer kernel_init;
    lx_initializer out_kernel_init; /* None (name NULL): kernel_init */
    lx_initializer bias_init;
    lx_initializer out_bias_init;   /* None (name NULL): bias_init */
    bool use_bias;
    bool decode;             /* must be False */
    bool normalize_qk;       /* False */
} linen_mha_config;

#define LINEN_SEQUENTIAL_MAX 64
typedef struct linen_sequential_config {
    int n;
    linen_module *layers[LINEN_SEQUENTIAL_MAX]; /* retained */
} linen_sequential_config;

/* The activation functions as function-type modules (for Sequential); their one optional
 * setting: gelu approximate (True), leaky_relu negative_slope (0.01), softmax/log_softmax axis (-1). */
typedef struct linen_activation_config {
    bool approximate;
    double negative_slope;
    int64_t axis;
} linen_activation_config;

/* ---- types ---- */
extern const linen_type linen_Dense, linen_DenseGeneral, linen_Conv, linen_Embed, linen_LayerNorm,
    linen_RMSNorm, linen_BatchNorm, linen_Dropout, linen_MultiHeadDotProductAttention,
    linen_Sequential;
/* relu, relu6, gelu, silu, swish, sigmoid, tanh, softplus, leaky_relu, softmax, log_softmax */
extern const linen_type linen_relu, linen_relu6, linen_gelu, linen_silu, linen_swish, linen_sigmoid,
    linen_tanh, linen_softplus, linen_leaky_relu, linen_softmax, linen_log_softmax;

/* A layer or activation type by its Flax name ("Dense", "MultiHeadAttention" and
 * "MultiHeadDotProductAttention", "relu", ...), or NULL. */
const linen_type *linen_layer_type(const char *name);

/* Sequential(*layers): the modules are retained. */
lx_status linen_sequential_new(int n, linen_module *const *layers, linen_module **out);

/* ---- typed helpers: build with defaults and call as a child of s ---- */
lx_array *linen_dense(linen_scope *s, const char *name, int64_t features, lx_array *x);
lx_array *linen_dense_general(linen_scope *s, const char *name, int nfeatures, const int64_t *features,
                              int naxis, const int64_t *axis, lx_array *x);
/* SAME padding, stride 1 */
lx_array *linen_conv(linen_scope *s, const char *name, int64_t features, int nkernel,
                     const int64_t *kernel_size, lx_array *x);
lx_array *linen_embed(linen_scope *s, const char *name, int64_t num_embeddings, int64_t features,
                      lx_array *ids);
lx_array *linen_layer_norm(linen_scope *s, const char *name, lx_array *x);
lx_array *linen_rms_norm(linen_scope *s, const char *name, lx_array *x);
lx_array *linen_batch_norm(linen_scope *s, const char *name, bool use_running_average, lx_array *x);
lx_array *linen_dropout(linen_scope *s, const char *name, double rate, bool deterministic, lx_array *x);
/* Self-attention: inputs_q = inputs_kv = x; mask (bool, broadcastable to (batch..., heads, q, k))
 * may be NULL. */
lx_array *linen_self_attention(linen_scope *s, const char *name, int64_t num_heads, lx_array *x,
                               lx_array *mask, bool deterministic);

/* ---- activation functions not in ops.h (jax.nn names) ---- */
lx_array *linen_relu6_fn(lx_array *x);                       /* min(max(x, 0), 6); gradient 0 at 0 and 6 */
lx_array *linen_leaky_relu_fn(lx_array *x, float negative_slope); /* where(x >= 0, x, slope * x) */

/* flax.linen.make_causal_mask is lx_make_causal_mask (nn.h), shared with NNX code.
 * flax.linen.make_attention_mask(q, k): q (batch..., lq), k (batch..., lk) -> bool
 * (batch..., 1, lq, lk), true where both are nonzero (Flax's default pairwise_fn is multiply). */
lx_array *linen_make_attention_mask(lx_array *query_input, lx_array *key_input);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
