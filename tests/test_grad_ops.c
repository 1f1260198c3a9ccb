/* Reverse-mode gradients of every differentiable primitive against central finite differences
 * (grad_check.h), plus the tape's bookkeeping: accumulation of a value used twice, stop_gradient,
 * integer inputs, nothing retained after a backward pass, the scalar-loss rule. */
#include "grad_check.h"

typedef struct {
    int op;
    lx_array *x[6];
    lx_array *aux[4]; /* constants: masks, labels, indices */
} op_case;

enum {
    NEG, ABS, SQUARE, EXP, LOG, LOG1P, SQRT, RSQRT, TANH, SIGMOID, RELU, GELU_TANH, GELU_ERF, SILU, SOFTPLUS,
    CLIP, CAST, ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM, WHERE, SUM, SUM_ALL, MEAN, MAX, MIN, VAR, LOGSUMEXP,
    RESHAPE, TRANSPOSE, EXPAND, SQUEEZE, BROADCAST, SLICE, SLICE_NEG, CONCAT, STACK, SPLIT, PAD, TAKE, MATMUL,
    MATMUL_BATCH, MATMUL_VEC_L, MATMUL_VEC_R, DOT_DENSE, DOT_BATCH, DOT_TRANSPOSED, SOFTMAX0, LOG_SOFTMAX,
    LAYER_NORM, LAYER_NORM2, RMS_NORM, CONV_STRIDE, CONV_DILATE, CONV_GROUPS, CONV_LHS_DIL, CONV_1D, AVG_POOL,
    AVG_POOL_EXCL, MAX_POOL, AVG_POOL_3D, MAX_POOL_1D, XENT, ATTN_MASK, ATTN_CAUSAL_GQA, ATTN_BIAS_SCALE, ATTN_WEIGHTS, DROPOUT_APPLY,
    DROPOUT, TWICE, NCASES
};

static lx_array *forward(void *ctx) {
    op_case *c = ctx;
    lx_array **x = c->x, **k = c->aux;
    switch (c->op) {
    case NEG: return lx_neg(x[0]);
    case ABS: return lx_abs(x[0]);
    case SQUARE: return lx_square(x[0]);
    case EXP: return lx_exp(x[0]);
    case LOG: return lx_log(x[0]);
    case LOG1P: return lx_log1p(x[0]);
    case SQRT: return lx_sqrt(x[0]);
    case RSQRT: return lx_rsqrt(x[0]);
    case TANH: return lx_tanh(x[0]);
    case SIGMOID: return lx_sigmoid(x[0]);
    case RELU: return lx_relu(x[0]);
    case GELU_TANH: return lx_gelu(x[0], true);
    case GELU_ERF: return lx_gelu(x[0], false);
    case SILU: return lx_silu(x[0]);
    case SOFTPLUS: return lx_softplus(x[0]);
    case CLIP: return lx_clip(x[0], -0.5f, 0.5f);
    case CAST: return lx_cast(x[0], LX_F32);
    case ADD: return lx_add(x[0], x[1]);
    case SUB: return lx_sub(x[0], x[1]);
    case MUL: return lx_mul(x[0], x[1]);
    case DIV: return lx_div(x[0], x[1]);
    case POW: return lx_pow(x[0], x[1]);
    case MAXIMUM: return lx_maximum(x[0], x[1]);
    case MINIMUM: return lx_minimum(x[0], x[1]);
    case WHERE: return lx_where(k[0], x[0], x[1]);
    case SUM: return lx_sum(x[0], LX_AXES(0, 2), false);
    case SUM_ALL: return lx_sum(x[0], LX_ALL_AXES, true);
    case MEAN: return lx_mean(x[0], LX_AXES(-1), true);
    case MAX: return lx_max(x[0], LX_AXES(1), false);
    case MIN: return lx_min(x[0], LX_AXES(0, 1), false);
    case VAR: return lx_var(x[0], LX_AXES(-1), false);
    case LOGSUMEXP: return lx_logsumexp(x[0], LX_AXES(1), false);
    case RESHAPE: return lx_exp(lx_reshape(x[0], LX_SHAPE(3, -1)));
    case TRANSPOSE: return lx_transpose(x[0], LX_AXES(2, 0, 1));
    case EXPAND: return lx_mul(lx_expand_dims(x[0], 1), x[1]);
    case SQUEEZE: return lx_squeeze(x[0], LX_AXES(1));
    case BROADCAST: return lx_broadcast_to(x[0], LX_SHAPE(2, 3, 4));
    case SLICE: return lx_slice(x[0], 2, (lx_range[]){LX_RANGE_STEP(1, LX_NIL, 2), LX_RANGE(1, 3)});
    case SLICE_NEG: return lx_slice(x[0], 1, (lx_range[]){LX_RANGE_STEP(LX_NIL, LX_NIL, -2)});
    case CONCAT: return lx_concatenate(3, (lx_array *const[]){x[0], x[1], x[0]}, 1);
    case STACK: return lx_stack(2, (lx_array *const[]){x[0], x[1]}, -1);
    case SPLIT: {
        lx_array *p[3];
        if (lx_split(x[0], 3, 1, p) != LX_OK) return NULL;
        return lx_add(lx_mul_scalar(p[0], 2.0f), lx_mul(p[1], p[2]));
    }
    case PAD: return lx_pad(x[0], (const int64_t[]){1, 0}, (const int64_t[]){0, 2}, 3.0f);
    case TAKE: return lx_take(x[0], k[0], 1);
    case MATMUL:
    case MATMUL_BATCH:
    case MATMUL_VEC_L:
    case MATMUL_VEC_R: return lx_matmul(x[0], x[1]);
    case DOT_DENSE: return lx_dot_general(x[0], x[1], 1, (const int64_t[]){2}, (const int64_t[]){0}, 0, NULL, NULL);
    case DOT_BATCH: return lx_dot_general(x[0], x[1], 1, (const int64_t[]){1}, (const int64_t[]){2}, 1, (const int64_t[]){0}, (const int64_t[]){1});
    case DOT_TRANSPOSED: return lx_dot_general(x[0], x[1], 2, (const int64_t[]){0, 2}, (const int64_t[]){1, 0}, 0, NULL, NULL);
    case SOFTMAX0: return lx_softmax(x[0], 0);
    case LOG_SOFTMAX: return lx_log_softmax(x[0], -1);
    case LAYER_NORM: return lx_layer_norm(x[0], x[1], x[2], 1e-6f, 0, NULL);
    case LAYER_NORM2: return lx_layer_norm(x[0], x[1], x[2], 1e-5f, LX_AXES(-1, -2));
    case RMS_NORM: return lx_rms_norm(x[0], x[1], 1e-6f);
    case CONV_STRIDE: {
        lx_conv_params p = {.strides = {2, 1}, .padding = {.mode = LX_PAD_SAME}};
        return lx_conv_general(x[0], x[1], &p);
    }
    case CONV_DILATE: {
        lx_conv_params p = {.rhs_dilation = {2, 1}, .padding = {.mode = LX_PAD_EXPLICIT, .lo = {1, 0}, .hi = {2, 1}}};
        return lx_conv_general(x[0], x[1], &p);
    }
    case CONV_GROUPS: {
        lx_conv_params p = {.feature_group_count = 2, .padding = {.mode = LX_PAD_SAME}};
        return lx_conv_general(x[0], x[1], &p);
    }
    case CONV_LHS_DIL: {
        lx_conv_params p = {.lhs_dilation = {2, 2}, .padding = {.mode = LX_PAD_EXPLICIT, .lo = {1, 1}, .hi = {1, 1}}};
        return lx_conv_general(x[0], x[1], &p);
    }
    case CONV_1D: {
        lx_conv_params p = {.strides = {2}, .padding = {.mode = LX_PAD_SAME}};
        return lx_conv_general(x[0], x[1], &p);
    }
    case AVG_POOL: {
        lx_padding pd = {.mode = LX_PAD_SAME};
        return lx_avg_pool(x[0], 2, (const int64_t[]){2, 2}, (const int64_t[]){2, 1}, &pd, true);
    }
    case AVG_POOL_EXCL: {
        lx_padding pd = {.mode = LX_PAD_SAME};
        return lx_avg_pool(x[0], 2, (const int64_t[]){3, 2}, (const int64_t[]){1, 2}, &pd, false);
    }
    case MAX_POOL: {
        lx_padding pd = {.mode = LX_PAD_SAME};
        return lx_max_pool(x[0], 2, (const int64_t[]){2, 2}, (const int64_t[]){2, 2}, &pd);
    }
    case AVG_POOL_3D: { /* no batch axis, three spatial axes, uneven explicit padding: border windows */
        lx_padding pd = {.mode = LX_PAD_EXPLICIT, .lo = {1, 0, 2}, .hi = {0, 1, 1}};
        return lx_avg_pool(x[0], 3, (const int64_t[]){2, 2, 3}, (const int64_t[]){1, 2, 2}, &pd, false);
    }
    case MAX_POOL_1D: {
        lx_padding pd = {.mode = LX_PAD_EXPLICIT, .lo = {1}, .hi = {2}};
        return lx_max_pool(x[0], 1, (const int64_t[]){3}, (const int64_t[]){2}, &pd);
    }
    case XENT: return lx_softmax_cross_entropy_int(x[0], k[0]);
    case ATTN_MASK: return lx_dot_product_attention(x[0], x[1], x[2], NULL, k[0], false, 0.0f);
    case ATTN_CAUSAL_GQA: return lx_dot_product_attention(x[0], x[1], x[2], NULL, NULL, true, 0.0f);
    case ATTN_BIAS_SCALE: return lx_dot_product_attention(x[0], x[1], x[2], x[3], k[0], false, 0.3f);
    case ATTN_WEIGHTS: return lx_dot_product_attention_weights(x[0], x[1], x[2], k[0], true, 0.0f);
    case DROPOUT_APPLY: return lx_dropout_apply(x[0], k[0], 0.25);
    case DROPOUT: return lx_dropout(x[0], 0.5, lx_key_from_seed(3), LX_AXES(0), false);
    case TWICE: return lx_add(lx_mul(x[0], x[0]), lx_exp(x[0]));
    default: return NULL;
    }
}

static uint64_t seed = 42;

static lx_array *R(float lo, float hi, int ndim, const int64_t *shape) { return gc_rand(&seed, lo, hi, ndim, shape); }
#define RS(lo, hi, ...) R(lo, hi, LX_SHAPE(__VA_ARGS__))

static lx_array *bool_arr(int ndim, const int64_t *shape, const uint8_t *bits) {
    return lx_array_from_data(LX_BOOL, ndim, shape, bits);
}

/* Every op event replayed through lx_bind from its typed params gives the same output: the table's
 * apply entries and the recorded params are complete. */
static int replaying, replayed, replay_bad;
static char replay_bad_op[64];
static void replay(const lx_prim_event *ev, void *user) {
    (void)user;
    if (replaying) return;
    replaying = 1;
    size_t m = lx_pool_open();
    lx_array *r = lx_bind(ev->id, ev->params, ev->ninputs, ev->inputs);
    bool same = r && ev->output && r->dtype == ev->output->dtype && lx_same_shape(r, ev->output) &&
                (lx_is_abstract(ev->output) || memcmp(r->data, ev->output->data, lx_array_nbytes(r)) == 0);
    if (!same && !replay_bad) snprintf(replay_bad_op, sizeof replay_bad_op, "%s", ev->op);
    replay_bad += !same;
    replayed++;
    lx_pool_close(m);
    replaying = 0;
}

static void run_case(const char *name, int op, int n, lx_array **xs, lx_array **aux, double h, double rtol,
                     double atol) {
    op_case c = {.op = op};
    for (int i = 0; i < n; i++) c.x[i] = xs[i];
    for (int i = 0; aux && i < 4; i++) c.aux[i] = aux[i];
    lx_test_current = name;
    gc_check(name, forward, &c, n, xs, h, rtol, atol);
    int hd = 0;
    replayed = replay_bad = 0;
    lx_prim_observe(replay, NULL, &hd);
    size_t m = lx_pool_open();
    CHECK(forward(&c) != NULL);
    lx_pool_close(m);
    lx_prim_unobserve(hd);
    LX_TEST_REPORT_(replayed > 0 && replay_bad == 0, "%s: %d of %d ops replayed through lx_bind differ (first: %s)",
                    name, replay_bad, replayed, replay_bad_op);
    for (int i = 0; i < n; i++) lx_release(xs[i]);
    for (int i = 0; aux && i < 4; i++) lx_release(aux[i]);
}

#define CASE(op, n, h, rtol, atol, ...) run_case(#op, op, n, (lx_array *[]){__VA_ARGS__}, NULL, h, rtol, atol)
#define CASE_AUX(op, n, aux, h, rtol, atol, ...) run_case(#op, op, n, (lx_array *[]){__VA_ARGS__}, aux, h, rtol, atol)

static void test_unary(void) {
    CASE(NEG, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3));
    CASE(ABS, 1, 1e-3, 1e-3, 1e-3, RS(0.1f, 1, 2, 3));
    CASE(SQUARE, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 5));
    CASE(EXP, 1, 1e-3, 1e-3, 1e-3, RS(-1, 1, 2, 2));
    CASE(LOG, 1, 1e-3, 1e-3, 1e-3, RS(0.5f, 2, 4));
    CASE(LOG1P, 1, 1e-3, 1e-3, 1e-3, RS(0, 2, 4));
    CASE(SQRT, 1, 1e-3, 1e-3, 1e-3, RS(0.5f, 2, 4));
    CASE(RSQRT, 1, 1e-3, 1e-3, 1e-3, RS(0.5f, 2, 4));
    CASE(TANH, 1, 1e-3, 1e-3, 1e-3, RS(-2, 2, 6));
    CASE(SIGMOID, 1, 1e-3, 1e-3, 1e-3, RS(-3, 3, 6));
    /* away from the kink at 0, where finite differences are meaningless */
    CASE(RELU, 1, 1e-3, 1e-3, 1e-3,
         lx_array_from_f32(1, (int64_t[]){6}, (const float[]){-0.9f, 0.3f, -0.2f, 0.7f, 0.05f, -0.05f}));
    CASE(GELU_TANH, 1, 1e-3, 1e-3, 1e-3, RS(-3, 3, 8));
    CASE(GELU_ERF, 1, 1e-3, 1e-3, 1e-3, RS(-3, 3, 8));
    CASE(SILU, 1, 1e-3, 1e-3, 1e-3, RS(-3, 3, 8));
    CASE(SOFTPLUS, 1, 1e-3, 1e-3, 1e-3, RS(-3, 3, 8));
    CASE(CLIP, 1, 1e-3, 1e-3, 1e-3, RS(-1, 1, 10));
    CASE(CAST, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 3));
}

static void test_binary(void) {
    CASE(ADD, 2, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3), RS(-1, 1, 3));
    CASE(SUB, 2, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 1, 3), RS(-1, 1, 4, 1));
    CASE(MUL, 2, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3), RS(-1, 1, 2, 1));
    CASE(DIV, 2, 1e-3, 1e-3, 1e-3, RS(-1, 1, 3, 2), RS(0.5f, 2, 2));
    CASE(POW, 2, 1e-3, 1e-3, 2e-3, RS(0.5f, 2, 2, 3), RS(-1.5f, 1.5f, 3));
    CASE(MAXIMUM, 2, 1e-3, 1e-3, 1e-3, RS(-1, 1, 3, 4), RS(-1, 1, 4));
    CASE(MINIMUM, 2, 1e-3, 1e-3, 1e-3, RS(-1, 1, 3, 1), RS(-1, 1, 1, 4));
    CASE_AUX(WHERE, 2, ((lx_array *[]){bool_arr(LX_SHAPE(2, 3), (const uint8_t[]){1, 0, 1, 1, 0, 0}), 0, 0, 0}),
             1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3), RS(-1, 1, 3));
}

static void test_reductions(void) {
    CASE(SUM, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3, 4));
    CASE(SUM_ALL, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3));
    CASE(MEAN, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 5));
    CASE(MAX, 1, 1e-3, 1e-3, 1e-3, RS(-1, 1, 3, 4));
    CASE(MIN, 1, 1e-3, 1e-3, 1e-3, RS(-1, 1, 3, 4));
    CASE(VAR, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 3, 5));
    CASE(LOGSUMEXP, 1, 1e-3, 1e-3, 1e-3, RS(-2, 2, 2, 5, 3));
}

static void test_shapes(void) {
    CASE(RESHAPE, 1, 1e-3, 1e-3, 1e-3, RS(-1, 1, 2, 3, 2));
    CASE(TRANSPOSE, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3, 4));
    CASE(EXPAND, 2, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3), RS(-1, 1, 4, 3));
    CASE(SQUEEZE, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 3, 1, 2));
    CASE(BROADCAST, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 3, 1));
    CASE(SLICE, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 5, 4));
    CASE(SLICE_NEG, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 5, 2));
    CASE(CONCAT, 2, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3), RS(-1, 1, 2, 1));
    CASE(STACK, 2, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3), RS(-1, 1, 2, 3));
    CASE(SPLIT, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 6));
    CASE(PAD, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 3));
    int32_t idx[] = {2, 0, 2, -1};
    CASE_AUX(TAKE, 1, ((lx_array *[]){lx_array_from_data(LX_I32, 1, (int64_t[]){4}, idx), 0, 0, 0}), 1e-2, 1e-3,
             1e-3, RS(-1, 1, 2, 4, 3));
}

static void test_contractions(void) {
    CASE(MATMUL, 2, 1e-2, 1e-3, 2e-3, RS(-1, 1, 2, 3), RS(-1, 1, 3, 4));
    CASE(MATMUL_BATCH, 2, 1e-2, 1e-3, 2e-3, RS(-1, 1, 2, 1, 3, 4), RS(-1, 1, 5, 4, 2));
    CASE(MATMUL_VEC_L, 2, 1e-2, 1e-3, 2e-3, RS(-1, 1, 3), RS(-1, 1, 2, 3, 4));
    CASE(MATMUL_VEC_R, 2, 1e-2, 1e-3, 2e-3, RS(-1, 1, 2, 3), RS(-1, 1, 3));
    CASE(DOT_DENSE, 2, 1e-2, 1e-3, 2e-3, RS(-1, 1, 2, 3, 4), RS(-1, 1, 4, 5));
    CASE(DOT_BATCH, 2, 1e-2, 1e-3, 2e-3, RS(-1, 1, 3, 4, 2), RS(-1, 1, 5, 3, 4));
    CASE(DOT_TRANSPOSED, 2, 1e-2, 1e-3, 2e-3, RS(-1, 1, 3, 2, 4), RS(-1, 1, 4, 3, 5));
}

static void test_nn(void) {
    CASE(SOFTMAX0, 1, 1e-3, 1e-3, 1e-3, RS(-2, 2, 4, 3));
    CASE(LOG_SOFTMAX, 1, 1e-3, 1e-3, 1e-3, RS(-2, 2, 3, 5));
    CASE(LAYER_NORM, 3, 1e-3, 2e-3, 2e-3, RS(-2, 2, 3, 6), RS(0.5f, 1.5f, 6), RS(-1, 1, 6));
    CASE(LAYER_NORM2, 3, 1e-3, 2e-3, 2e-3, RS(-2, 2, 2, 3, 4), RS(0.5f, 1.5f, 4), RS(-1, 1, 4));
    CASE(RMS_NORM, 2, 1e-3, 2e-3, 2e-3, RS(-2, 2, 3, 6), RS(0.5f, 1.5f, 6));
    CASE(CONV_STRIDE, 2, 1e-2, 2e-3, 3e-3, RS(-1, 1, 2, 5, 4, 3), RS(-1, 1, 3, 2, 3, 4));
    CASE(CONV_DILATE, 2, 1e-2, 2e-3, 3e-3, RS(-1, 1, 1, 6, 5, 2), RS(-1, 1, 2, 3, 2, 3));
    CASE(CONV_GROUPS, 2, 1e-2, 2e-3, 3e-3, RS(-1, 1, 2, 4, 4, 4), RS(-1, 1, 3, 3, 2, 6));
    CASE(CONV_LHS_DIL, 2, 1e-2, 2e-3, 3e-3, RS(-1, 1, 1, 3, 3, 2), RS(-1, 1, 3, 3, 2, 2));
    CASE(CONV_1D, 2, 1e-2, 2e-3, 3e-3, RS(-1, 1, 2, 7, 3), RS(-1, 1, 3, 3, 2));
    CASE(AVG_POOL, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 2, 5, 4, 3));
    CASE(AVG_POOL_EXCL, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 1, 5, 5, 2));
    CASE(MAX_POOL, 1, 1e-3, 1e-3, 1e-3, RS(-1, 1, 2, 5, 4, 3));
    CASE(AVG_POOL_3D, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 4, 3, 5, 2));
    CASE(MAX_POOL_1D, 1, 1e-3, 1e-3, 1e-3, RS(-1, 1, 2, 9, 3));
    int32_t lab[] = {2, 0, 4, 1, 3, 3};
    CASE_AUX(XENT, 1, ((lx_array *[]){lx_array_from_data(LX_I32, 2, (int64_t[]){2, 3}, lab), 0, 0, 0}), 1e-3, 1e-3,
             1e-3, RS(-2, 2, 2, 3, 5));
}

static void test_attention(void) {
    uint8_t m[2 * 1 * 3 * 4];
    for (int i = 0; i < 24; i++) m[i] = (i * 7 + 3) % 5 != 0;
    m[4] = m[5] = m[6] = m[7] = 0; /* a fully masked row */
    CASE_AUX(ATTN_MASK, 3, ((lx_array *[]){bool_arr(LX_SHAPE(2, 1, 3, 4), m), 0, 0, 0}), 1e-3, 2e-3, 2e-3,
             RS(-1, 1, 2, 3, 2, 4), RS(-1, 1, 2, 4, 2, 4), RS(-1, 1, 2, 4, 2, 3));
    CASE(ATTN_CAUSAL_GQA, 3, 1e-3, 2e-3, 2e-3, RS(-1, 1, 2, 4, 4, 3), RS(-1, 1, 2, 4, 2, 3), RS(-1, 1, 2, 4, 2, 2));
    uint8_t m2[3 * 4];
    for (int i = 0; i < 12; i++) m2[i] = i % 5 != 1;
    CASE_AUX(ATTN_BIAS_SCALE, 4, ((lx_array *[]){bool_arr(LX_SHAPE(3, 4), m2), 0, 0, 0}), 1e-3, 2e-3, 2e-3,
             RS(-1, 1, 1, 3, 2, 4), RS(-1, 1, 1, 4, 1, 4), RS(-1, 1, 1, 4, 1, 2), RS(-1, 1, 2, 1, 4));
    CASE_AUX(ATTN_WEIGHTS, 3, ((lx_array *[]){bool_arr(LX_SHAPE(3, 4), m2), 0, 0, 0}), 1e-3, 2e-3, 2e-3,
             RS(-1, 1, 2, 3, 2, 4), RS(-1, 1, 2, 4, 2, 4), RS(-1, 1, 2, 3, 4));
}

static void test_dropout(void) {
    uint8_t m[] = {1, 0, 1, 1, 0, 1};
    CASE_AUX(DROPOUT_APPLY, 1, ((lx_array *[]){bool_arr(LX_SHAPE(2, 3), m), 0, 0, 0}), 1e-2, 1e-3, 1e-3,
             RS(-1, 1, 4, 2, 3));
    CASE(DROPOUT, 1, 1e-2, 1e-3, 1e-3, RS(-1, 1, 3, 8));
}

static void test_tape_rules(void) {
    lx_test_current = "tape_rules";
    /* a value used twice: d/dx (x*x + exp x) = 2x + exp x */
    CASE(TWICE, 1, 1e-3, 1e-3, 1e-3, RS(-1, 1, 5));

    /* stop_gradient: d/dx sum(x * sg(x)) = sg(x) = x, not 2x */
    lx_array *x = lx_array_from_f32(1, (int64_t[]){3}, (const float[]){1.0f, -2.0f, 0.5f}), *g = NULL;
    lx_tape *t = NULL;
    CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
    CHECK(lx_tape_active());
    CHECK_EQ_INT(lx_tape_watch(t, x), LX_OK);
    lx_array *y = lx_sum(lx_mul(x, lx_stop_gradient(x)), LX_ALL_AXES, false);
    CHECK_EQ_INT(lx_tape_backward(t, y, 1, &x, &g), LX_OK);
    CHECK(!lx_tape_active());
    CHECK(g && lx_f32(g)[0] == 1.0f && lx_f32(g)[1] == -2.0f && lx_f32(g)[2] == 0.5f);
    CHECK_EQ_INT(lx_tape_size(t), 0);
    lx_release(g);

    /* an input the loss does not depend on gets zeros; nothing recorded for constants */
    lx_array *c = lx_array_from_f32(1, (int64_t[]){3}, (const float[]){4, 5, 6});
    CHECK_EQ_INT(lx_tape_watch(t, x), LX_OK);
    lx_array *z = lx_sum(lx_mul(c, c), LX_ALL_AXES, false);
    lx_array *w = lx_sum(lx_mul_scalar(x, 3.0f), LX_ALL_AXES, false);
    lx_array *xs[] = {x, c}, *gs[2] = {NULL, NULL};
    CHECK_EQ_INT(lx_tape_backward(t, w, 1, xs, gs), LX_OK);
    CHECK(gs[0] && lx_f32(gs[0])[0] == 3.0f && lx_f32(gs[0])[2] == 3.0f);
    lx_release(gs[0]);
    CHECK(z != NULL);

    /* the loss must be a scalar */
    CHECK_EQ_INT(lx_tape_watch(t, x), LX_OK);
    lx_array *v = lx_mul(x, x);
    CHECK_FAILS(lx_tape_backward(t, v, 1, &x, &g), LX_ERR_SHAPE, "Output had shape: (3,)");
    CHECK(g == NULL);
    CHECK_EQ_INT(lx_tape_size(t), 0);

    /* abstract evaluation records nothing: only the watched leaf is on the tape */
    CHECK_EQ_INT(lx_tape_watch(t, x), LX_OK);
    lx_array *abs_in = lx_autorelease(lx_array_abstract(LX_F32, 1, (int64_t[]){3}));
    lx_array *abs_out = lx_exp(lx_add(x, abs_in));
    CHECK(abs_out && lx_is_abstract(abs_out));
    CHECK_EQ_INT(lx_tape_size(t), 1);
    lx_array *ylin = lx_sum(lx_mul_scalar(x, 2.0f), LX_ALL_AXES, false);
    CHECK_EQ_INT(lx_tape_size(t), 3); /* the leaf, mul (its scalar operand is a constant), sum */
    CHECK_EQ_INT(lx_tape_backward(t, ylin, 1, &x, &g), LX_OK);
    CHECK(g && lx_f32(g)[1] == 2.0f);
    lx_release(g);

    /* one tape per thread */
    lx_tape *t2 = NULL;
    CHECK_FAILS(lx_tape_new(&t2), LX_ERR_INVALID_ARGUMENT, "already active");
    lx_tape_free(t);
    CHECK(!lx_tape_active());

    /* integer inputs: no gradient through a cast, and value_and_grad refuses to differentiate them */
    lx_array *i = lx_array_from_data(LX_I32, 1, (int64_t[]){2}, (const int32_t[]){1, 2});
    lx_array *gi = NULL;
    CHECK_FAILS(lx_value_and_grad(gc_loss_fn, NULL, 1, &i, NULL, &gi), LX_ERR_DTYPE, "int32[2]");
    lx_release(i);
    lx_release(x);
    lx_release(c);
    lx_pool_drain();
}

static lx_array *observed_ops[4];
static int nobserved;
static void observe(const lx_prim_event *ev, void *user) {
    (void)user;
    if (nobserved < 4 && ev->id == LX_PRIM_DOT_GENERAL) {
        const lx_dot_general_params *p = ev->params;
        observed_ops[nobserved++] = p && p->ncontract == 1 && p->lhs_contract[0] == 1 ? ev->output : NULL;
    }
}

static lx_array *swap_in(lx_prim_id id, const void *params, int nin, lx_array **inputs, void *user) {
    (void)params, (void)nin;
    if (id != LX_PRIM_DOT_GENERAL) return NULL;
    inputs[1] = user; /* substitute the weight */
    return NULL;
}

static void test_table(void) {
    lx_test_current = "table";
    for (int i = 0; i < LX_PRIM_COUNT; i++) {
        const lx_prim_def *d = lx_prim_get((lx_prim_id)i);
        CHECK(d && (int)d->id == i && d->name && d->name[0]);
    }
    CHECK(lx_prim_get(LX_PRIM_COUNT) == NULL);
    const lx_prim_def *d = NULL;
    CHECK_EQ_INT(lx_prim_find("conv_general", &d), LX_OK);
    CHECK(d && d->id == LX_PRIM_CONV_GENERAL && d->vjp && d->params_size == sizeof(lx_conv_params));
    CHECK_FAILS(lx_prim_find("convolve", &d), LX_ERR_NOT_FOUND, "'convolve'");
    CHECK(lx_prim_get(LX_PRIM_ARGMAX)->vjp == NULL && lx_prim_get(LX_PRIM_EQ)->vjp == NULL);

    /* events carry the typed params; a substituter replaces an operand before compute */
    int h = 0, hs = 0;
    lx_array *a = lx_array_full_f32(2, (int64_t[]){2, 3}, 1.0f), *b = lx_array_full_f32(2, (int64_t[]){3, 2}, 2.0f);
    lx_array *b2 = lx_array_full_f32(2, (int64_t[]){3, 2}, 5.0f);
    CHECK_EQ_INT(lx_prim_observe(observe, NULL, &h), LX_OK);
    CHECK_EQ_INT(lx_prim_substitute_add(swap_in, b2, &hs), LX_OK);
    lx_array *y = lx_dot_general(a, b, 1, (const int64_t[]){1}, (const int64_t[]){0}, 0, NULL, NULL);
    lx_prim_substitute_remove(hs);
    lx_prim_unobserve(h);
    CHECK(y && lx_f32(y)[0] == 15.0f);
    CHECK_EQ_INT(nobserved, 1);
    CHECK(observed_ops[0] == y);
    lx_release(a);
    lx_release(b);
    lx_release(b2);

    /* bind on abstract inputs is the shape rule; bad binds are errors */
    lx_array *xa = lx_autorelease(lx_array_abstract(LX_F32, 4, (int64_t[]){2, 9, 9, 3}));
    lx_array *ka = lx_autorelease(lx_array_abstract(LX_F32, 4, (int64_t[]){3, 3, 3, 8}));
    lx_conv_params cp = {.strides = {2, 2}, .padding = {.mode = LX_PAD_SAME}};
    lx_array *ya = lx_bind(LX_PRIM_CONV_GENERAL, &cp, 2, (lx_array *const[]){xa, ka});
    CHECK(ya && lx_is_abstract(ya) && lx_shape_eq(ya, 4, (int64_t[]){2, 5, 5, 8}));
    lx_clear_error();
    CHECK_NULL_FAILS(lx_bind(LX_PRIM_COUNT, NULL, 0, NULL), LX_ERR_INVALID_ARGUMENT, "no primitive with id");
    CHECK_NULL_FAILS(lx_bind(LX_PRIM_SUM, NULL, 1, &xa), LX_ERR_INVALID_ARGUMENT, "sum needs its parameters");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_bind(LX_PRIM_ADD, NULL, 2, (lx_array *const[]){xa, NULL}), LX_ERR_FAILED_INPUT,
                     "add: input is NULL");
    lx_pool_drain();
}

int main(void) {
    RUN(test_table);
    RUN(test_unary);
    RUN(test_binary);
    RUN(test_reductions);
    RUN(test_shapes);
    RUN(test_contractions);
    RUN(test_nn);
    RUN(test_attention);
    RUN(test_dropout);
    RUN(test_tape_rules);
    lx_pool_drain();
    return lx_test_finish();
}
