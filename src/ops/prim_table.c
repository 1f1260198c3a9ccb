/* The primitive table: one entry per lx_prim_id (order of LX_PRIM_LIST): name, parameter size,
 * backward rule (vjp.c), apply (the builder run from the typed params). `batch` is for the
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
    X(dropout)

#define DECLARE_(name)                                                                               \
    lx_status lx_vjp_##name(const void *params, int nin, lx_array *const *in, lx_array *out, lx_array *ct, \
                            const bool *wants, lx_array **in_ct);
RULES(DECLARE_)
#undef DECLARE_


/* ---- apply: each primitive run again from its typed params (the builder, as one entry point) ---- */
#define A1(name, call)                                                                  \
    static lx_array *apply_##name(const void *params, int nin, lx_array *const *in) {   \
        (void)params, (void)nin;                                                        \
        return call;                                                                    \
    }
#define AP(name, T, call)                                                               \
    static lx_array *apply_##name(const void *params_, int nin, lx_array *const *in) {  \
        const T *p = params_;                                                           \
        (void)nin;                                                                      \
        return call;                                                                    \
    }

A1(neg, lx_neg(in[0]))
A1(abs, lx_abs(in[0]))
A1(square, lx_square(in[0]))
A1(exp, lx_exp(in[0]))
A1(log, lx_log(in[0]))
A1(log1p, lx_log1p(in[0]))
A1(sqrt, lx_sqrt(in[0]))
A1(rsqrt, lx_rsqrt(in[0]))
A1(tanh, lx_tanh(in[0]))
A1(sigmoid, lx_sigmoid(in[0]))
A1(relu, lx_relu(in[0]))
AP(gelu, lx_gelu_params, lx_gelu(in[0], p->approximate))
A1(silu, lx_silu(in[0]))
A1(softplus, lx_softplus(in[0]))
AP(clip, lx_clip_params, lx_clip(in[0], p->lo, p->hi))
AP(cast, lx_cast_params, lx_cast(in[0], p->dtype))
A1(stop_gradient, lx_stop_gradient(in[0]))
A1(add, lx_add(in[0], in[1]))
A1(sub, lx_sub(in[0], in[1]))
A1(mul, lx_mul(in[0], in[1]))
A1(div, lx_div(in[0], in[1]))
A1(pow, lx_pow(in[0], in[1]))
A1(maximum, lx_maximum(in[0], in[1]))
A1(minimum, lx_minimum(in[0], in[1]))
A1(eq, lx_eq(in[0], in[1]))
A1(ne, lx_ne(in[0], in[1]))
A1(lt, lx_lt(in[0], in[1]))
A1(le, lx_le(in[0], in[1]))
A1(gt, lx_gt(in[0], in[1]))
A1(ge, lx_ge(in[0], in[1]))
A1(where, lx_where(in[0], in[1], in[2]))
AP(sum, lx_reduce_params, lx_sum(in[0], p->naxes, p->axes, p->keepdims))
AP(mean, lx_reduce_params, lx_mean(in[0], p->naxes, p->axes, p->keepdims))
AP(max, lx_reduce_params, lx_max(in[0], p->naxes, p->axes, p->keepdims))
AP(min, lx_reduce_params, lx_min(in[0], p->naxes, p->axes, p->keepdims))
AP(var, lx_reduce_params, lx_var(in[0], p->naxes, p->axes, p->keepdims))
AP(logsumexp, lx_reduce_params, lx_logsumexp(in[0], p->naxes, p->axes, p->keepdims))
AP(argmax, lx_reduce_params, lx_argmax(in[0], p->axes[0], p->keepdims))
AP(reshape, lx_shape_params, lx_reshape(in[0], p->ndim, p->dims))
AP(transpose, lx_shape_params, lx_transpose(in[0], p->ndim, p->dims))
AP(expand_dims, lx_shape_params, lx_expand_dims(in[0], p->axis))
AP(squeeze, lx_shape_params, lx_squeeze(in[0], p->ndim, p->dims))
AP(broadcast_to, lx_shape_params, lx_broadcast_to(in[0], p->ndim, p->dims))
AP(concatenate, lx_shape_params, lx_concatenate(nin, in, p->axis))
AP(stack, lx_shape_params, lx_stack(nin, in, p->axis))
AP(pad, lx_pad_params, lx_pad(in[0], p->before, p->after, p->value))
AP(take, lx_shape_params, lx_take(in[0], in[1], p->axis))
AP(one_hot, lx_one_hot_params, lx_one_hot(in[0], p->num_classes))
A1(matmul, lx_matmul(in[0], in[1]))
AP(dot_general, lx_dot_general_params,
   lx_dot_general(in[0], in[1], p->ncontract, p->lhs_contract, p->rhs_contract, p->nbatch, p->lhs_batch,
                  p->rhs_batch))
AP(softmax, lx_shape_params, lx_softmax(in[0], (int)p->axis))
AP(log_softmax, lx_shape_params, lx_log_softmax(in[0], (int)p->axis))
AP(layer_norm, lx_norm_params, lx_layer_norm(in[0], in[1], in[2], p->epsilon, p->naxes, p->axes))
AP(rms_norm, lx_norm_params, lx_rms_norm(in[0], in[1], p->epsilon))
AP(conv_general, lx_conv_params, lx_conv_general(in[0], in[1], p))
A1(softmax_cross_entropy_int, lx_softmax_cross_entropy_int(in[0], in[1]))
AP(attention, lx_attention_params,
   lx_dot_product_attention(in[0], in[1], in[2], in[3], in[4], p->causal, p->flax_scaling ? 0.0f : p->scale))
AP(attention_weights, lx_attention_params,
   lx_dot_product_attention_weights(in[0], in[1], in[2], in[3], p->causal, p->flax_scaling ? 0.0f : p->scale))
A1(make_causal_mask, lx_make_causal_mask(in[0]))
AP(dropout, lx_dropout_params, lx_dropout_apply(in[0], in[1], p->rate))

static lx_array *apply_slice(const void *params, int nin, lx_array *const *in) {
    const lx_slice_params *p = params;
    (void)nin;
    lx_range r[LX_MAX_DIMS];
    for (int i = 0; i < p->ndim; i++) {
        int64_t stop = p->start[i] + p->len[i] * p->step[i];
        r[i] = LX_RANGE_STEP(p->start[i], p->len[i] == 0 ? p->start[i] : stop < 0 ? LX_NIL : stop, p->step[i]);
    }
    return lx_slice(in[0], p->ndim, r);
}

/* One piece of split is a slice along the axis (observers see "slice"). */
static lx_array *apply_split(const void *params, int nin, lx_array *const *in) {
    const lx_split_params *p = params;
    (void)nin;
    if (!in[0]) return lx_slice(NULL, 0, NULL);
    lx_range r[LX_MAX_DIMS];
    for (int i = 0; i < in[0]->ndim; i++) r[i] = LX_RANGE_ALL;
    if (p->axis >= 0 && p->axis < in[0]->ndim) r[p->axis] = LX_RANGE(p->start, p->stop);
    return lx_slice(in[0], in[0]->ndim, r);
}

static lx_array *pool_apply(const void *params, lx_array *x, bool is_max) {
    const lx_pool_params *p = params;
    lx_padding pad = {.mode = LX_PAD_EXPLICIT};
    for (int i = 0; i < p->nwin; i++) pad.lo[i] = p->lo[i], pad.hi[i] = p->hi[i];
    return is_max ? lx_max_pool(x, p->nwin, p->window, p->strides, &pad)
                  : lx_avg_pool(x, p->nwin, p->window, p->strides, &pad, p->count_include_pad);
}
static lx_array *apply_avg_pool(const void *params, int nin, lx_array *const *in) {
    (void)nin;
    return pool_apply(params, in[0], false);
}
static lx_array *apply_max_pool(const void *params, int nin, lx_array *const *in) {
    (void)nin;
    return pool_apply(params, in[0], true);
}

#define P(ID, NAME, TYPE, RULE, APPLY) \
    [LX_PRIM_##ID] = {.id = LX_PRIM_##ID, .name = NAME, .params_size = TYPE, .apply = APPLY, .vjp = RULE}
#define NOPARAMS 0

static const lx_prim_def table[LX_PRIM_COUNT] = {
    P(NEG, "neg", NOPARAMS, lx_vjp_neg, apply_neg),
    P(ABS, "abs", NOPARAMS, lx_vjp_abs, apply_abs),
    P(SQUARE, "square", NOPARAMS, lx_vjp_square, apply_square),
    P(EXP, "exp", NOPARAMS, lx_vjp_exp, apply_exp),
    P(LOG, "log", NOPARAMS, lx_vjp_log, apply_log),
    P(LOG1P, "log1p", NOPARAMS, lx_vjp_log1p, apply_log1p),
    P(SQRT, "sqrt", NOPARAMS, lx_vjp_sqrt, apply_sqrt),
    P(RSQRT, "rsqrt", NOPARAMS, lx_vjp_rsqrt, apply_rsqrt),
    P(TANH, "tanh", NOPARAMS, lx_vjp_tanh, apply_tanh),
    P(SIGMOID, "sigmoid", NOPARAMS, lx_vjp_sigmoid, apply_sigmoid),
    P(RELU, "relu", NOPARAMS, lx_vjp_relu, apply_relu),
    P(GELU, "gelu", sizeof(lx_gelu_params), lx_vjp_gelu, apply_gelu),
    P(SILU, "silu", NOPARAMS, lx_vjp_silu, apply_silu),
    P(SOFTPLUS, "softplus", NOPARAMS, lx_vjp_softplus, apply_softplus),
    P(CLIP, "clip", sizeof(lx_clip_params), lx_vjp_clip, apply_clip),
    P(CAST, "cast", sizeof(lx_cast_params), lx_vjp_cast, apply_cast),
    P(STOP_GRADIENT, "stop_gradient", NOPARAMS, NULL, apply_stop_gradient),
    P(ADD, "add", NOPARAMS, lx_vjp_add, apply_add),
    P(SUB, "sub", NOPARAMS, lx_vjp_sub, apply_sub),
    P(MUL, "mul", NOPARAMS, lx_vjp_mul, apply_mul),
    P(DIV, "div", NOPARAMS, lx_vjp_div, apply_div),
    P(POW, "pow", NOPARAMS, lx_vjp_pow, apply_pow),
    P(MAXIMUM, "maximum", NOPARAMS, lx_vjp_maximum, apply_maximum),
    P(MINIMUM, "minimum", NOPARAMS, lx_vjp_minimum, apply_minimum),
    P(EQ, "eq", NOPARAMS, NULL, apply_eq),
    P(NE, "ne", NOPARAMS, NULL, apply_ne),
    P(LT, "lt", NOPARAMS, NULL, apply_lt),
    P(LE, "le", NOPARAMS, NULL, apply_le),
    P(GT, "gt", NOPARAMS, NULL, apply_gt),
    P(GE, "ge", NOPARAMS, NULL, apply_ge),
    P(WHERE, "where", NOPARAMS, lx_vjp_where, apply_where),
    P(SUM, "sum", sizeof(lx_reduce_params), lx_vjp_sum, apply_sum),
    P(MEAN, "mean", sizeof(lx_reduce_params), lx_vjp_mean, apply_mean),
    P(MAX, "max", sizeof(lx_reduce_params), lx_vjp_max, apply_max),
    P(MIN, "min", sizeof(lx_reduce_params), lx_vjp_min, apply_min),
    P(VAR, "var", sizeof(lx_reduce_params), lx_vjp_var, apply_var),
    P(LOGSUMEXP, "logsumexp", sizeof(lx_reduce_params), lx_vjp_logsumexp, apply_logsumexp),
    P(ARGMAX, "argmax", sizeof(lx_reduce_params), NULL, apply_argmax),
    P(RESHAPE, "reshape", sizeof(lx_shape_params), lx_vjp_reshape_like, apply_reshape),
    P(TRANSPOSE, "transpose", sizeof(lx_shape_params), lx_vjp_transpose, apply_transpose),
    P(EXPAND_DIMS, "expand_dims", sizeof(lx_shape_params), lx_vjp_reshape_like, apply_expand_dims),
    P(SQUEEZE, "squeeze", sizeof(lx_shape_params), lx_vjp_reshape_like, apply_squeeze),
    P(BROADCAST_TO, "broadcast_to", sizeof(lx_shape_params), lx_vjp_broadcast_to, apply_broadcast_to),
    P(SLICE, "slice", sizeof(lx_slice_params), lx_vjp_slice, apply_slice),
    P(CONCATENATE, "concatenate", sizeof(lx_shape_params), lx_vjp_concatenate, apply_concatenate),
    P(STACK, "stack", sizeof(lx_shape_params), lx_vjp_stack, apply_stack),
    P(SPLIT, "split", sizeof(lx_split_params), lx_vjp_split, apply_split),
    P(PAD, "pad", sizeof(lx_pad_params), lx_vjp_pad, apply_pad),
    P(TAKE, "take", sizeof(lx_shape_params), lx_vjp_take, apply_take),
    P(ONE_HOT, "one_hot", sizeof(lx_one_hot_params), NULL, apply_one_hot),
    P(MATMUL, "matmul", NOPARAMS, lx_vjp_matmul, apply_matmul),
    P(DOT_GENERAL, "dot_general", sizeof(lx_dot_general_params), lx_vjp_dot_general, apply_dot_general),
    P(SOFTMAX, "softmax", sizeof(lx_shape_params), lx_vjp_softmax, apply_softmax),
    P(LOG_SOFTMAX, "log_softmax", sizeof(lx_shape_params), lx_vjp_log_softmax, apply_log_softmax),
    P(LAYER_NORM, "layer_norm", sizeof(lx_norm_params), lx_vjp_layer_norm, apply_layer_norm),
    P(RMS_NORM, "rms_norm", sizeof(lx_norm_params), lx_vjp_rms_norm, apply_rms_norm),
    P(CONV_GENERAL, "conv_general", sizeof(lx_conv_params), lx_vjp_conv_general, apply_conv_general),
    P(AVG_POOL, "avg_pool", sizeof(lx_pool_params), lx_vjp_avg_pool, apply_avg_pool),
    P(MAX_POOL, "max_pool", sizeof(lx_pool_params), lx_vjp_max_pool, apply_max_pool),
    P(SOFTMAX_CROSS_ENTROPY_INT, "softmax_cross_entropy_int", NOPARAMS, lx_vjp_softmax_cross_entropy_int, apply_softmax_cross_entropy_int),
    P(DOT_PRODUCT_ATTENTION, "dot_product_attention", sizeof(lx_attention_params), lx_vjp_attention, apply_attention),
    P(DOT_PRODUCT_ATTENTION_WEIGHTS, "dot_product_attention_weights", sizeof(lx_attention_params), lx_vjp_attention_weights, apply_attention_weights),
    P(MAKE_CAUSAL_MASK, "make_causal_mask", NOPARAMS, NULL, apply_make_causal_mask),
    P(DROPOUT, "dropout", sizeof(lx_dropout_params), lx_vjp_dropout, apply_dropout),
    P(DROPOUT_APPLY, "dropout_apply", sizeof(lx_dropout_params), lx_vjp_dropout, apply_dropout),
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

lx_array *lx_bind(lx_prim_id id, const void *params, int nin, lx_array *const *inputs) {
    const lx_prim_def *d = lx_prim_get(id);
    if (!d || !d->apply) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "bind: no primitive with id %d", (int)id);
        return NULL;
    }
    if (nin < 0 || nin > 64 || (nin > 0 && !inputs)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "bind: %s: bad input list (%d inputs)", d->name, nin);
        return NULL;
    }
    if (d->params_size && !params) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "bind: %s needs its parameters", d->name);
        return NULL;
    }
    /* The contractions run the substituters inside their builders (also when called directly). */
    if (lx_prim_substituting() && id != LX_PRIM_MATMUL && id != LX_PRIM_DOT_GENERAL && id != LX_PRIM_CONV_GENERAL &&
        id != LX_PRIM_DOT_PRODUCT_ATTENTION_WEIGHTS) {
        lx_array *in[64];
        for (int i = 0; i < nin; i++) in[i] = inputs[i];
        lx_array *r = lx_prim_substitute_run(id, params, nin, in);
        if (r) return r;
        return d->apply(params, nin, in);
    }
    return d->apply(params, nin, inputs);
}
