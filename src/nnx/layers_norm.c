/* flax.nnx LayerNorm, RMSNorm and BatchNorm (flax/nnx/nn/normalization.py). */
#include <stdio.h>

#include "linnx/distributed.h"
#include "linnx/nn.h"
#include "linnx/nnx_layers.h"
#include "linnx/ops.h"
#include "../linen/layers_promote.h"
#include "nnx_internal.h"

#define INIT_FIELD(T, m, dflt) LX_FIELD_OBJ(T, m, "initializer", dflt)

/* ------------------------------------------------------------------ LayerNorm / RMSNorm */

#define NORM_CONFIG(eps)                                                    \
    {                                                                       \
        LX_FIELD_REQUIRED_INT(nnx_norm_config, num_features),               \
        LX_FIELD_FLOAT(nnx_norm_config, epsilon, eps),                      \
        LX_FIELD_BOOL(nnx_norm_config, use_bias, true),                     \
        LX_FIELD_BOOL(nnx_norm_config, use_scale, true),                    \
        LX_FIELD_DTYPE(nnx_norm_config, param_dtype, "float32"),            \
        INIT_FIELD(nnx_norm_config, bias_init, &NNX_ZEROS),                 \
        INIT_FIELD(nnx_norm_config, scale_init, &NNX_ONES),                 \
        LX_FIELD_INTS(nnx_norm_config, reduction_axes),                     \
        LX_FIELD_INTS(nnx_norm_config, feature_axes),                       \
        LX_FIELD_VALUE(nnx_norm_config, scale_metadata),                    \
        LX_FIELD_VALUE(nnx_norm_config, bias_metadata),                     \
    }
static const lx_field LAYER_NORM_CONFIG[] = NORM_CONFIG(1e-6);
static const lx_field RMS_NORM_CONFIG[] = NORM_CONFIG(1e-6);

/* scale then bias, each drawing a key from rngs.params() (spec/jax-random.md §5.2). */
static lx_status norm_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_norm *m = (nnx_norm *)self;
    nnx_norm_config *c = &m->cfg;
    if (c->num_features <= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: num_features must be positive, got %lld", self->type->name,
                       (long long)c->num_features);
    if (c->reduction_axes.n == 0) c->reduction_axes = lx_ints_of(1, (int64_t[]){-1});
    if (c->feature_axes.n == 0) c->feature_axes = lx_ints_of(1, (int64_t[]){-1});
    if (c->feature_axes.n != 1 || c->feature_axes.v[0] != -1)
        return lx_fail(LX_ERR_UNSUPPORTED, "%s: only feature_axes=-1 is supported", self->type->name);
    bool rms = self->type == &nnx_RMSNorm;
    int64_t fs[] = {c->num_features};
    if (c->use_scale)
        LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->scale_init, c->param_dtype, 1, fs, 0, NULL,
                              &c->scale_metadata, &m->scale));
    if (c->use_bias && !rms)
        LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->bias_init, c->param_dtype, 1, fs, 0, NULL,
                              &c->bias_metadata, &m->bias));
    return LX_OK;
}

static lx_array *layer_norm_forward_impl(nnx_norm *m, lx_array *x) {
    if (!m || !x) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "LayerNorm: module is NULL");
        return NULL;
    }
    lx_array *ops[3] = {x, nnx_value_of(m->scale), nnx_value_of(m->bias)}; /* canonicalize_dtype(x, scale, bias) */
    if (lx_layer_promote("LayerNorm", NULL, 3, ops) != LX_OK) return NULL;
    return lx_layer_norm(ops[0], ops[1], ops[2], (float)m->cfg.epsilon, m->cfg.reduction_axes.n,
                         m->cfg.reduction_axes.v);
}

lx_array *nnx_layer_norm_forward(nnx_norm *m, lx_array *x) {
    NNX_FRAMED_FORWARD(m, layer_norm_forward_impl(m, x));
}

static lx_array *rms_norm_forward_impl(nnx_norm *m, lx_array *x) {
    if (!m || !x) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "RMSNorm: module is NULL");
        return NULL;
    }
    lx_array *ops[2] = {x, nnx_value_of(m->scale)}; /* canonicalize_dtype(x, scale) */
    if (lx_layer_promote("RMSNorm", NULL, 2, ops) != LX_OK) return NULL;
    return lx_layer_rms_norm("RMSNorm", ops[0], ops[1], (float)m->cfg.epsilon, m->cfg.reduction_axes.n,
                             m->cfg.reduction_axes.v);
}

lx_array *nnx_rms_norm_forward(nnx_norm *m, lx_array *x) {
    NNX_FRAMED_FORWARD(m, rms_norm_forward_impl(m, x));
}

static lx_status layer_norm_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return nnx_return_array(out, nnx_layer_norm_forward((nnx_norm *)self, x));
}

static lx_status rms_norm_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return nnx_return_array(out, nnx_rms_norm_forward((nnx_norm *)self, x));
}

static const nnx_field NORM_FIELDS[] = {NNX_VAR(nnx_norm, bias), NNX_VAR(nnx_norm, scale)};
static const nnx_method LAYER_NORM_METHODS[] = {NNX_METHOD("__call__", layer_norm_call)};
static const nnx_method RMS_NORM_METHODS[] = {NNX_METHOD("__call__", rms_norm_call)};

const nnx_type nnx_LayerNorm = {
    .name = "LayerNorm", .size = sizeof(nnx_norm), .fields = NORM_FIELDS, .nfields = LX_COUNT(NORM_FIELDS),
    .config = LAYER_NORM_CONFIG, .nconfig = LX_COUNT(LAYER_NORM_CONFIG), .config_offset = offsetof(nnx_norm, cfg),
    .methods = LAYER_NORM_METHODS, .nmethods = LX_COUNT(LAYER_NORM_METHODS), .init = norm_init,
};
const nnx_type nnx_RMSNorm = {
    .name = "RMSNorm", .size = sizeof(nnx_norm), .fields = NORM_FIELDS, .nfields = LX_COUNT(NORM_FIELDS),
    .config = RMS_NORM_CONFIG, .nconfig = LX_COUNT(RMS_NORM_CONFIG), .config_offset = offsetof(nnx_norm, cfg),
    .methods = RMS_NORM_METHODS, .nmethods = LX_COUNT(RMS_NORM_METHODS), .init = norm_init,
    .method_sigs = (const char *const[]){"x"},
};

/* ------------------------------------------------------------------ BatchNorm */

static const lx_field BATCH_NORM_CONFIG[] = {
    LX_FIELD_REQUIRED_INT(nnx_batch_norm_config, num_features),
    LX_FIELD_BOOL(nnx_batch_norm_config, use_running_average, false),
    LX_FIELD_INT(nnx_batch_norm_config, axis, -1),
    LX_FIELD_FLOAT(nnx_batch_norm_config, momentum, 0.99),
    LX_FIELD_FLOAT(nnx_batch_norm_config, epsilon, 1e-5),
    LX_FIELD_BOOL(nnx_batch_norm_config, use_bias, true),
    LX_FIELD_BOOL(nnx_batch_norm_config, use_scale, true),
    LX_FIELD_DTYPE(nnx_batch_norm_config, param_dtype, "float32"),
    INIT_FIELD(nnx_batch_norm_config, bias_init, &NNX_ZEROS),
    INIT_FIELD(nnx_batch_norm_config, scale_init, &NNX_ONES),
    LX_FIELD_STR(nnx_batch_norm_config, axis_name, NULL),
    LX_FIELD_VALUE(nnx_batch_norm_config, scale_metadata),
    LX_FIELD_VALUE(nnx_batch_norm_config, bias_metadata),
};

/* A BatchStat of the feature shape filled with zeros/ones: no key is drawn (Flax builds them
 * with jnp.zeros / jnp.ones). */
static lx_status stat_new(const lx_initializer *init, lx_dtype dtype, int64_t f, lx_variable **out) {
    int64_t s[] = {f};
    lx_key none = {{0, 0}};
    return nnx_param_new(&lx_BatchStat, init, none, dtype, 1, s, NULL, out);
}

static lx_status batch_norm_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_batch_norm *m = (nnx_batch_norm *)self;
    const nnx_batch_norm_config *c = &m->cfg;
    if (c->num_features <= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "BatchNorm: num_features must be positive, got %lld",
                       (long long)c->num_features);
    /* jnp.zeros / jnp.ones(feature_shape, jnp.float32) whatever param_dtype is */
    LX_TRY(stat_new(&NNX_ZEROS, LX_F32, c->num_features, &m->mean));
    LX_TRY(stat_new(&NNX_ONES, LX_F32, c->num_features, &m->var));
    int64_t fs[] = {c->num_features};
    if (c->use_scale)
        LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->scale_init, c->param_dtype, 1, fs, 0, NULL,
                              &c->scale_metadata, &m->scale));
    if (c->use_bias)
        LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->bias_init, c->param_dtype, 1, fs, 0, NULL,
                              &c->bias_metadata, &m->bias));
    return LX_OK;
}

/* A feature vector (F,) reshaped to broadcast against x along `axis`. */
static lx_array *along(lx_array *v, int ndim, int axis) {
    if (!v) return NULL;
    int64_t shape[LX_MAX_DIMS];
    for (int i = 0; i < ndim; i++) shape[i] = i == axis ? v->shape[0] : 1;
    return lx_reshape(v, ndim, shape);
}

static lx_array *batch_norm_forward_impl(nnx_batch_norm *m, lx_array *x, int use_running_average) {
    if (!m || !x) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "BatchNorm: module is NULL");
        return NULL;
    }
    const nnx_batch_norm_config *c = &m->cfg;
    bool eval = use_running_average < 0 ? c->use_running_average : use_running_average != 0;
    int axis = (int)(c->axis < 0 ? c->axis + x->ndim : c->axis);
    if (axis < 0 || axis >= x->ndim || x->shape[axis] != c->num_features) {
        char b[64];
        lx_fail(LX_ERR_SHAPE, "BatchNorm: input %s has no feature axis %lld of size %lld",
                lx_shape_str(x->ndim, x->shape, b, sizeof b), (long long)c->axis, (long long)c->num_features);
        return NULL;
    }
    /* _normalize's canonicalize_dtype(x, scale, bias) is the result dtype; the statistics
     * (_compute_stats: promote_types(x.dtype, float32)) are then of the promoted x too */
    lx_array *ops[3] = {x, nnx_value_of(m->scale), nnx_value_of(m->bias)};
    if (lx_layer_promote("BatchNorm", NULL, 3, ops) != LX_OK) return NULL;
    x = ops[0];
    lx_array *mean, *var;
    if (eval) {
        mean = nnx_value_of(m->mean);
        var = nnx_value_of(m->var);
    } else {
        /* Flax's _compute_stats with use_fast_variance: var = max(0, E[x^2] - E[x]^2). */
        int64_t red[LX_MAX_DIMS];
        int nred = 0;
        for (int i = 0; i < x->ndim; i++)
            if (i != axis) red[nred++] = i;
        mean = lx_mean(x, nred, red, false);
        lx_array *mean2 = lx_mean(lx_square(x), nred, red, false);
        if (c->axis_name) { /* sync batch-norm: the moments of the batch over the axis' ranks */
            mean = lx_dist_pmean(mean, c->axis_name);
            mean2 = lx_dist_pmean(mean2, c->axis_name);
        }
        var = lx_maximum(lx_scalar(0.0f), lx_sub(mean2, lx_square(mean)));
        if (!mean || !var) return NULL;
        if (!lx_is_abstract(x)) {
            /* ra = momentum * ra + (1 - momentum) * batch_stat, in float32 as jnp computes it. */
            float mom = (float)c->momentum, rest = (float)(1.0 - c->momentum);
            lx_array *nm = lx_add(lx_mul_scalar(nnx_value_of(m->mean), mom), lx_mul_scalar(mean, rest));
            lx_array *nv = lx_add(lx_mul_scalar(nnx_value_of(m->var), mom), lx_mul_scalar(var, rest));
            if (!nm || !nv) return NULL;
            if (lx_variable_set_value(m->mean, nm, false) != LX_OK || lx_variable_set_value(m->var, nv, false) != LX_OK)
                return NULL;
        }
    }
    /* Flax's _normalize: y = (x - mean) * (rsqrt(var + eps) * scale) + bias. */
    lx_array *y = lx_sub(x, along(mean, x->ndim, axis));
    lx_array *mul = lx_rsqrt(lx_add_scalar(var, (float)c->epsilon));
    if (ops[1]) mul = lx_mul(mul, ops[1]);
    y = lx_mul(y, along(mul, x->ndim, axis));
    if (ops[2]) y = lx_add(y, along(ops[2], x->ndim, axis));
    return y;
}

lx_array *nnx_batch_norm_forward(nnx_batch_norm *m, lx_array *x, int use_running_average) {
    NNX_FRAMED_FORWARD(m, batch_norm_forward_impl(m, x, use_running_average));
}

static lx_status batch_norm_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    const lx_value *ura = lx_call_get(c, 1, "use_running_average");
    int u = -1;
    if (ura && ura->kind == LX_V_BOOL) u = ura->u.b ? 1 : 0;
    else if (ura && ura->kind != LX_V_NONE)
        return lx_fail(LX_ERR_TYPE, "BatchNorm.__call__: use_running_average must be a bool or None, got %s",
                       lx_kind_name(ura->kind));
    if (lx_call_kwarg(c, "mask")) return lx_fail(LX_ERR_UNSUPPORTED, "BatchNorm.__call__: mask is not supported");
    return nnx_return_array(out, nnx_batch_norm_forward((nnx_batch_norm *)self, x, u));
}

static const nnx_field BATCH_NORM_FIELDS[] = {NNX_VAR(nnx_batch_norm, bias), NNX_VAR(nnx_batch_norm, mean),
                                              NNX_VAR(nnx_batch_norm, scale), NNX_VAR(nnx_batch_norm, var)};
static const nnx_method BATCH_NORM_METHODS[] = {NNX_METHOD("__call__", batch_norm_call)};

const nnx_type nnx_BatchNorm = {
    .name = "BatchNorm", .size = sizeof(nnx_batch_norm), .fields = BATCH_NORM_FIELDS, .nfields = LX_COUNT(BATCH_NORM_FIELDS),
    .config = BATCH_NORM_CONFIG, .nconfig = LX_COUNT(BATCH_NORM_CONFIG), .config_offset = offsetof(nnx_batch_norm, cfg),
    .methods = BATCH_NORM_METHODS, .nmethods = LX_COUNT(BATCH_NORM_METHODS), .init = batch_norm_init,
    .method_sigs = (const char *const[]){"x, use_running_average=None, *, mask=None"},
};
