/* The primitive table: one entry per lx_prim_id (order of LX_PRIM_LIST): name, parameter size,
 * shape/dtype rule, forward and observer attributes (each op family's file), backward rule
 * (vjp.c), arity and optional inputs. lx_bind (bind.c) runs them. `batch` is for the
 * layer-stacking work. */
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/dropout.h"
#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/ops.h"
#include "op_internal.h"

#define RULES(X)                                                                                    \
    X(neg) X(abs) X(square) X(exp) X(log) X(log1p) X(sqrt) X(rsqrt) X(tanh) X(sigmoid) X(relu)      \
    X(gelu) X(silu) X(softplus) X(clip) X(cast) X(add) X(sub) X(mul) X(div) X(pow) X(maximum)       \
    X(minimum) X(where) X(sum) X(mean) X(max) X(min) X(var) X(logsumexp) X(reshape_like)            \
    X(transpose) X(broadcast_to) X(slice) X(concatenate) X(stack) X(split) X(pad) X(take)           \
    X(matmul) X(dot_general) X(softmax) X(log_softmax) X(layer_norm) X(rms_norm) X(conv_general)    \
    X(avg_pool) X(max_pool) X(softmax_cross_entropy_int) X(attention) X(attention_weights)          \
    X(dropout) X(pmean) X(dense)

#define DECLARE_(name)                                                                               \
    lx_status lx_vjp_##name(const void *params, int nin, lx_array *const *in, lx_array *out, lx_array *ct, \
                            const bool *wants, lx_array **in_ct);
RULES(DECLARE_)
#undef DECLARE_


/* ---- the bound primitives: shape/dtype rule, forward, attributes (in each op's file) ---- */
#define BOUND(X)                                                                                    \
    X(unary) X(stop_gradient) X(clip) X(cast) X(binary) X(where) X(reduce) X(matmul) X(dot_general) \
    X(softmax) X(layer_norm) X(rms_norm) X(softmax_cross_entropy_int) X(dropout_apply) X(pool) \
    X(conv_general) X(attention) X(make_causal_mask) X(dropout) X(reshape) X(expand_dims) X(squeeze)        \
    X(transpose) X(broadcast_to) X(slice) X(concatenate) X(stack) X(split) X(pad) X(take) X(one_hot) X(pmean) X(dense)
#define DECLARE_BOUND_(name) LX_RULE(name); LX_FWD(name);
BOUND(DECLARE_BOUND_)
#undef DECLARE_BOUND_
LX_ATTRS(gelu);
LX_ATTRS(clip);
LX_ATTRS(cast);
LX_ATTRS(reduce);
LX_RULE(argmax);
LX_ATTRS(dot_general);
LX_ATTRS(softmax);
LX_ATTRS(norm);
LX_ATTRS(dropout);
LX_ATTRS(pool);
LX_ATTRS(conv_general);
LX_ATTRS(attention);
LX_ATTRS(reshape);
LX_ATTRS(axis);
LX_ATTRS(slice);
LX_ATTRS(split);
LX_ATTRS(pad);
LX_ATTRS(pmean);
LX_ATTRS(dense);

/* A primitive bound through its rule: RULE/FWD name lx_rule_* / lx_fwd_*, ATTRS lx_attrs_* or NULL,
 * ARITY its input count (-1: variadic), OPT the mask of optional inputs, FLAGS LX_PRIM_VIEW. */
#define B(ID, NAME, TYPE, VJP, RULE, FWD, ATTRS, ARITY, OPT, FLAGS)                                     \
    [LX_PRIM_##ID] = {.id = LX_PRIM_##ID, .name = NAME, .params_size = TYPE, .vjp = VJP, .rule = lx_rule_##RULE, \
                      .forward = lx_fwd_##FWD, .attrs = ATTRS, .arity = ARITY, .optional = OPT, .flags = FLAGS}
#define U(ID, NAME, VJP) B(ID, NAME, NOPARAMS, VJP, unary, unary, NULL, 1, 0, 0)
#define BIN(ID, NAME, VJP) B(ID, NAME, NOPARAMS, VJP, binary, binary, NULL, 2, 0, 0)
#define NOPARAMS 0

static const lx_prim_def table[LX_PRIM_COUNT] = {
    U(NEG, "neg", lx_vjp_neg),
    U(ABS, "abs", lx_vjp_abs),
    U(SQUARE, "square", lx_vjp_square),
    U(EXP, "exp", lx_vjp_exp),
    U(LOG, "log", lx_vjp_log),
    U(LOG1P, "log1p", lx_vjp_log1p),
    U(SQRT, "sqrt", lx_vjp_sqrt),
    U(RSQRT, "rsqrt", lx_vjp_rsqrt),
    U(TANH, "tanh", lx_vjp_tanh),
    U(SIGMOID, "sigmoid", lx_vjp_sigmoid),
    U(RELU, "relu", lx_vjp_relu),
    B(GELU, "gelu", sizeof(lx_gelu_params), lx_vjp_gelu, unary, unary, lx_attrs_gelu, 1, 0, 0),
    U(SILU, "silu", lx_vjp_silu),
    U(SOFTPLUS, "softplus", lx_vjp_softplus),
    B(CLIP, "clip", sizeof(lx_clip_params), lx_vjp_clip, clip, clip, lx_attrs_clip, 1, 0, 0),
    B(CAST, "cast", sizeof(lx_cast_params), lx_vjp_cast, cast, cast, lx_attrs_cast, 1, 0, 0),
    B(STOP_GRADIENT, "stop_gradient", NOPARAMS, NULL, stop_gradient, stop_gradient, NULL, 1, 0, LX_PRIM_VIEW),
    BIN(ADD, "add", lx_vjp_add),
    BIN(SUB, "sub", lx_vjp_sub),
    BIN(MUL, "mul", lx_vjp_mul),
    BIN(DIV, "div", lx_vjp_div),
    BIN(POW, "pow", lx_vjp_pow),
    BIN(MAXIMUM, "maximum", lx_vjp_maximum),
    BIN(MINIMUM, "minimum", lx_vjp_minimum),
    BIN(EQ, "eq", NULL),
    BIN(NE, "ne", NULL),
    BIN(LT, "lt", NULL),
    BIN(LE, "le", NULL),
    BIN(GT, "gt", NULL),
    BIN(GE, "ge", NULL),
    B(WHERE, "where", NOPARAMS, lx_vjp_where, where, where, NULL, 3, 0, 0),
    B(SUM, "sum", sizeof(lx_reduce_params), lx_vjp_sum, reduce, reduce, lx_attrs_reduce, 1, 0, 0),
    B(MEAN, "mean", sizeof(lx_reduce_params), lx_vjp_mean, reduce, reduce, lx_attrs_reduce, 1, 0, 0),
    B(MAX, "max", sizeof(lx_reduce_params), lx_vjp_max, reduce, reduce, lx_attrs_reduce, 1, 0, 0),
    B(MIN, "min", sizeof(lx_reduce_params), lx_vjp_min, reduce, reduce, lx_attrs_reduce, 1, 0, 0),
    B(VAR, "var", sizeof(lx_reduce_params), lx_vjp_var, reduce, reduce, lx_attrs_reduce, 1, 0, 0),
    B(LOGSUMEXP, "logsumexp", sizeof(lx_reduce_params), lx_vjp_logsumexp, reduce, reduce, lx_attrs_reduce, 1, 0, 0),
    B(ARGMAX, "argmax", sizeof(lx_reduce_params), NULL, argmax, reduce, lx_attrs_reduce, 1, 0, 0),
    B(RESHAPE, "reshape", sizeof(lx_shape_params), lx_vjp_reshape_like, reshape, reshape, lx_attrs_reshape, 1, 0, LX_PRIM_VIEW),
    B(TRANSPOSE, "transpose", sizeof(lx_shape_params), lx_vjp_transpose, transpose, transpose, lx_attrs_reshape, 1, 0, 0),
    B(EXPAND_DIMS, "expand_dims", sizeof(lx_shape_params), lx_vjp_reshape_like, expand_dims, expand_dims, lx_attrs_axis, 1, 0, LX_PRIM_VIEW),
    B(SQUEEZE, "squeeze", sizeof(lx_shape_params), lx_vjp_reshape_like, squeeze, squeeze, lx_attrs_reshape, 1, 0, LX_PRIM_VIEW),
    B(BROADCAST_TO, "broadcast_to", sizeof(lx_shape_params), lx_vjp_broadcast_to, broadcast_to, broadcast_to, lx_attrs_reshape, 1, 0, 0),
    B(SLICE, "slice", sizeof(lx_slice_params), lx_vjp_slice, slice, slice, lx_attrs_slice, 1, 0, 0),
    B(CONCATENATE, "concatenate", sizeof(lx_shape_params), lx_vjp_concatenate, concatenate, concatenate, lx_attrs_axis, -1, 0, 0),
    B(STACK, "stack", sizeof(lx_shape_params), lx_vjp_stack, stack, stack, lx_attrs_axis, -1, 0, 0),
    B(SPLIT, "split", sizeof(lx_split_params), lx_vjp_split, split, split, lx_attrs_split, 1, 0, 0),
    B(PAD, "pad", sizeof(lx_pad_params), lx_vjp_pad, pad, pad, lx_attrs_pad, 1, 0, 0),
    B(TAKE, "take", sizeof(lx_shape_params), lx_vjp_take, take, take, lx_attrs_axis, 2, 0, 0),
    B(ONE_HOT, "one_hot", sizeof(lx_one_hot_params), NULL, one_hot, one_hot, lx_attrs_axis, 1, 0, 0),
    B(MATMUL, "matmul", NOPARAMS, lx_vjp_matmul, matmul, matmul, NULL, 2, 0, 0),
    B(DOT_GENERAL, "dot_general", sizeof(lx_dot_general_params), lx_vjp_dot_general, dot_general, dot_general, lx_attrs_dot_general, 2, 0, 0),
    B(SOFTMAX, "softmax", sizeof(lx_shape_params), lx_vjp_softmax, softmax, softmax, lx_attrs_softmax, 1, 0, 0),
    B(LOG_SOFTMAX, "log_softmax", sizeof(lx_shape_params), lx_vjp_log_softmax, softmax, softmax, lx_attrs_softmax, 1, 0, 0),
    B(LAYER_NORM, "layer_norm", sizeof(lx_norm_params), lx_vjp_layer_norm, layer_norm, layer_norm, lx_attrs_norm, 3, 6u, 0),
    B(RMS_NORM, "rms_norm", sizeof(lx_norm_params), lx_vjp_rms_norm, rms_norm, rms_norm, lx_attrs_norm, 2, 2u, 0),
    B(CONV_GENERAL, "conv_general", sizeof(lx_conv_params), lx_vjp_conv_general, conv_general, conv_general, lx_attrs_conv_general, 2, 0, 0),
    B(AVG_POOL, "avg_pool", sizeof(lx_pool_params), lx_vjp_avg_pool, pool, pool, lx_attrs_pool, 1, 0, 0),
    B(MAX_POOL, "max_pool", sizeof(lx_pool_params), lx_vjp_max_pool, pool, pool, lx_attrs_pool, 1, 0, 0),
    B(SOFTMAX_CROSS_ENTROPY_INT, "softmax_cross_entropy_int", NOPARAMS, lx_vjp_softmax_cross_entropy_int, softmax_cross_entropy_int, softmax_cross_entropy_int, NULL, 2, 0, 0),
    B(DOT_PRODUCT_ATTENTION, "dot_product_attention", sizeof(lx_attention_params), lx_vjp_attention, attention, attention, lx_attrs_attention, 5, 0x18u, 0),
    B(DOT_PRODUCT_ATTENTION_WEIGHTS, "dot_product_attention_weights", sizeof(lx_attention_params), lx_vjp_attention_weights, attention, attention, lx_attrs_attention, 4, 0xCu, 0),
    B(MAKE_CAUSAL_MASK, "make_causal_mask", NOPARAMS, NULL, make_causal_mask, make_causal_mask, NULL, 1, 0, 0),
    B(DROPOUT, "dropout", sizeof(lx_dropout_params), lx_vjp_dropout, dropout, dropout, lx_attrs_dropout, 2, 0, 0),
    B(DROPOUT_APPLY, "dropout_apply", sizeof(lx_dropout_params), lx_vjp_dropout, dropout_apply, dropout_apply, lx_attrs_dropout, 2, 0, 0),
    B(PMEAN, "pmean", sizeof(lx_pmean_params), lx_vjp_pmean, pmean, pmean, lx_attrs_pmean, 1, 0, 0),
    B(DENSE, "dense", sizeof(lx_dense_params), lx_vjp_dense, dense, dense, lx_attrs_dense, 3, 4u, 0),
};

const lx_prim_def *lx_prim_get(lx_prim_id id) {
    if ((int)id < 0 || id >= LX_PRIM_COUNT) return NULL;
    return &table[id];
}

lx_status lx_prim_find(const char *name, const lx_prim_def **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "prim_find: output is NULL");
    *out = NULL;
    for (int i = 0; name && i < LX_PRIM_COUNT; i++)
        if (table[i].name && strcmp(table[i].name, name) == 0) {
            *out = &table[i];
            return LX_OK;
        }
    return lx_fail(LX_ERR_NOT_FOUND, "prim_find: no primitive named '%s'", name ? name : "(null)");
}
