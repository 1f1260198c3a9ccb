/* The primitive table: one entry per lx_prim_id (order of LX_PRIM_LIST): name, parameter size,
 * backward rule (vjp.c). `apply` and `batch` are filled by the work that needs them. */
#include <string.h>

#include "op_internal.h"

#define RULES(X)                                                                                    \
    X(neg) X(abs) X(square) X(exp) X(log) X(log1p) X(sqrt) X(rsqrt) X(tanh) X(sigmoid) X(relu)      \
    X(gelu) X(silu) X(softplus) X(clip) X(cast) X(add) X(sub) X(mul) X(div) X(pow) X(maximum)       \
    X(minimum) X(where) X(sum) X(mean) X(max) X(min) X(var) X(logsumexp) X(reshape_like)            \
    X(transpose) X(broadcast_to) X(slice) X(concatenate) X(stack) X(split) X(pad) X(take)           \
    X(matmul) X(dot_general) X(softmax) X(log_softmax) X(layer_norm) X(rms_norm) X(conv_general)    \
    X(avg_pool) X(max_pool) X(softmax_cross_entropy_int) X(attention) X(attention_weights)          \
    X(dropout)

#define DECLARE_(name)                                                                               \
    lx_status lx_vjp_##name(const void *params, int nin, lx_array *const *in, lx_array *out, lx_array *ct, \
                            lx_array **in_ct);
RULES(DECLARE_)
#undef DECLARE_

#define P(ID, NAME, TYPE, RULE) [LX_PRIM_##ID] = {.id = LX_PRIM_##ID, .name = NAME, .params_size = TYPE, .vjp = RULE}
#define NOPARAMS 0

static const lx_prim_def table[LX_PRIM_COUNT] = {
    P(NEG, "neg", NOPARAMS, lx_vjp_neg),
    P(ABS, "abs", NOPARAMS, lx_vjp_abs),
    P(SQUARE, "square", NOPARAMS, lx_vjp_square),
    P(EXP, "exp", NOPARAMS, lx_vjp_exp),
    P(LOG, "log", NOPARAMS, lx_vjp_log),
    P(LOG1P, "log1p", NOPARAMS, lx_vjp_log1p),
    P(SQRT, "sqrt", NOPARAMS, lx_vjp_sqrt),
    P(RSQRT, "rsqrt", NOPARAMS, lx_vjp_rsqrt),
    P(TANH, "tanh", NOPARAMS, lx_vjp_tanh),
    P(SIGMOID, "sigmoid", NOPARAMS, lx_vjp_sigmoid),
    P(RELU, "relu", NOPARAMS, lx_vjp_relu),
    P(GELU, "gelu", sizeof(lx_gelu_params), lx_vjp_gelu),
    P(SILU, "silu", NOPARAMS, lx_vjp_silu),
    P(SOFTPLUS, "softplus", NOPARAMS, lx_vjp_softplus),
    P(CLIP, "clip", sizeof(lx_clip_params), lx_vjp_clip),
    P(CAST, "cast", sizeof(lx_cast_params), lx_vjp_cast),
    P(STOP_GRADIENT, "stop_gradient", NOPARAMS, NULL),
    P(ADD, "add", NOPARAMS, lx_vjp_add),
    P(SUB, "sub", NOPARAMS, lx_vjp_sub),
    P(MUL, "mul", NOPARAMS, lx_vjp_mul),
    P(DIV, "div", NOPARAMS, lx_vjp_div),
    P(POW, "pow", NOPARAMS, lx_vjp_pow),
    P(MAXIMUM, "maximum", NOPARAMS, lx_vjp_maximum),
    P(MINIMUM, "minimum", NOPARAMS, lx_vjp_minimum),
    P(EQ, "eq", NOPARAMS, NULL),
    P(NE, "ne", NOPARAMS, NULL),
    P(LT, "lt", NOPARAMS, NULL),
    P(LE, "le", NOPARAMS, NULL),
    P(GT, "gt", NOPARAMS, NULL),
    P(GE, "ge", NOPARAMS, NULL),
    P(WHERE, "where", NOPARAMS, lx_vjp_where),
    P(SUM, "sum", sizeof(lx_reduce_params), lx_vjp_sum),
    P(MEAN, "mean", sizeof(lx_reduce_params), lx_vjp_mean),
    P(MAX, "max", sizeof(lx_reduce_params), lx_vjp_max),
    P(MIN, "min", sizeof(lx_reduce_params), lx_vjp_min),
    P(VAR, "var", sizeof(lx_reduce_params), lx_vjp_var),
    P(LOGSUMEXP, "logsumexp", sizeof(lx_reduce_params), lx_vjp_logsumexp),
    P(ARGMAX, "argmax", sizeof(lx_reduce_params), NULL),
    P(RESHAPE, "reshape", sizeof(lx_shape_params), lx_vjp_reshape_like),
    P(TRANSPOSE, "transpose", sizeof(lx_shape_params), lx_vjp_transpose),
    P(EXPAND_DIMS, "expand_dims", sizeof(lx_shape_params), lx_vjp_reshape_like),
    P(SQUEEZE, "squeeze", sizeof(lx_shape_params), lx_vjp_reshape_like),
    P(BROADCAST_TO, "broadcast_to", sizeof(lx_shape_params), lx_vjp_broadcast_to),
    P(SLICE, "slice", sizeof(lx_slice_params), lx_vjp_slice),
    P(CONCATENATE, "concatenate", sizeof(lx_shape_params), lx_vjp_concatenate),
    P(STACK, "stack", sizeof(lx_shape_params), lx_vjp_stack),
    P(SPLIT, "split", sizeof(lx_split_params), lx_vjp_split),
    P(PAD, "pad", sizeof(lx_pad_params), lx_vjp_pad),
    P(TAKE, "take", sizeof(lx_shape_params), lx_vjp_take),
    P(ONE_HOT, "one_hot", sizeof(lx_one_hot_params), NULL),
    P(MATMUL, "matmul", NOPARAMS, lx_vjp_matmul),
    P(DOT_GENERAL, "dot_general", sizeof(lx_dot_general_params), lx_vjp_dot_general),
    P(SOFTMAX, "softmax", sizeof(lx_shape_params), lx_vjp_softmax),
    P(LOG_SOFTMAX, "log_softmax", sizeof(lx_shape_params), lx_vjp_log_softmax),
    P(LAYER_NORM, "layer_norm", sizeof(lx_norm_params), lx_vjp_layer_norm),
    P(RMS_NORM, "rms_norm", sizeof(lx_norm_params), lx_vjp_rms_norm),
    P(CONV_GENERAL, "conv_general", sizeof(lx_conv_params), lx_vjp_conv_general),
    P(AVG_POOL, "avg_pool", sizeof(lx_pool_params), lx_vjp_avg_pool),
    P(MAX_POOL, "max_pool", sizeof(lx_pool_params), lx_vjp_max_pool),
    P(SOFTMAX_CROSS_ENTROPY_INT, "softmax_cross_entropy_int", NOPARAMS, lx_vjp_softmax_cross_entropy_int),
    P(DOT_PRODUCT_ATTENTION, "dot_product_attention", sizeof(lx_attention_params), lx_vjp_attention),
    P(DOT_PRODUCT_ATTENTION_WEIGHTS, "dot_product_attention_weights", sizeof(lx_attention_params), lx_vjp_attention_weights),
    P(MAKE_CAUSAL_MASK, "make_causal_mask", NOPARAMS, NULL),
    P(DROPOUT, "dropout", sizeof(lx_dropout_params), lx_vjp_dropout),
    P(DROPOUT_APPLY, "dropout_apply", sizeof(lx_dropout_params), lx_vjp_dropout),
};

const lx_prim_def *lx_prim_get(lx_prim_id id) {
    if ((int)id < 0 || id >= LX_PRIM_COUNT) return NULL;
    return &table[id];
}

lx_status lx_prim_find(const char *name, const lx_prim_def **out) {
    *out = NULL;
    for (int i = 0; name && i < LX_PRIM_COUNT; i++)
        if (table[i].name && strcmp(table[i].name, name) == 0) {
            *out = &table[i];
            return LX_OK;
        }
    return lx_fail(LX_ERR_NOT_FOUND, "prim_find: no primitive named '%s'", name ? name : "(null)");
}
