/* flax.linen.LayerNorm, RMSNorm (nn.h's layer_norm / rms_norm, shared with NNX) and BatchNorm
 * (running statistics in `batch_stats`). */
#include <string.h>

#include "layers_internal.h"
#include "linnx/distributed.h"
#include "linnx/nn.h"
#include "linnx/ops.h"

/* The feature shape of `feature_axes` (must be trailing, in order): scale / bias shape. */
static lx_status feature_shape(const char *layer, const lx_array *x, const lx_ints *axes, int *n,
                               int64_t *shape, int *first) {
    int64_t ax[LX_MAX_DIMS];
    for (int i = 0; i < axes->n; i++) LX_TRY(ll_axis(layer, axes->v[i], x->ndim, &ax[i]));
    for (int i = 0; i < axes->n; i++)
        if (ax[i] != x->ndim - axes->n + i)
            return lx_fail(LX_ERR_UNSUPPORTED, "%s: only trailing axes in increasing order are supported", layer);
    *n = axes->n;
    for (int i = 0; i < axes->n; i++) shape[i] = x->shape[ax[i]];
    *first = x->ndim - axes->n;
    return LX_OK;
}

/* ---------------------------------------------------------------- LayerNorm */
static const lx_field LN_FIELDS[] = {
    LX_FIELD_FLOAT(linen_layer_norm_config, epsilon, 1e-6),
    LX_FIELD_STR(linen_layer_norm_config, dtype, NULL),
    LX_FIELD_DTYPE(linen_layer_norm_config, param_dtype, "float32"),
    LX_FIELD_BOOL(linen_layer_norm_config, use_bias, true),
    LX_FIELD_BOOL(linen_layer_norm_config, use_scale, true),
    LL_FIELD_INIT(linen_layer_norm_config, bias_init, &ll_zeros),
    LL_FIELD_INIT(linen_layer_norm_config, scale_init, &ll_ones),
    LL_FIELD_INTS_D(linen_layer_norm_config, reduction_axes, -1),
    LL_FIELD_INTS_D(linen_layer_norm_config, feature_axes, -1),
    LX_FIELD_BOOL(linen_layer_norm_config, use_fast_variance, true),
};

static lx_status ln_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_layer_norm_config *cfg = linen_config(s);
    lx_array *x, *scale = NULL, *bias = NULL;
    LX_TRY(ll_input(c, 0, "x", "LayerNorm", &x));
    LX_TRY(ll_check_dtypes("LayerNorm", cfg->dtype));
    LX_TRY(ll_check_param_dtype("LayerNorm", cfg->param_dtype, cfg->use_scale ? &cfg->scale_init : NULL,
                                cfg->use_bias ? &cfg->bias_init : NULL));
    if (!cfg->use_fast_variance)
        return lx_fail(LX_ERR_UNSUPPORTED, "LayerNorm: use_fast_variance=False is not supported");
    int nf, nr, ffirst, rfirst;
    int64_t fshape[LX_MAX_DIMS], rshape[LX_MAX_DIMS];
    LX_TRY(feature_shape("LayerNorm", x, &cfg->feature_axes, &nf, fshape, &ffirst));
    LX_TRY(feature_shape("LayerNorm", x, &cfg->reduction_axes, &nr, rshape, &rfirst));
    if (ffirst < rfirst) return lx_fail(LX_ERR_UNSUPPORTED, "LayerNorm: feature_axes must be among the reduction_axes");
    if (cfg->use_scale) LX_TRY(linen_param(s, "scale", &cfg->scale_init, cfg->param_dtype, nf, fshape, &scale));
    if (cfg->use_bias) LX_TRY(linen_param(s, "bias", &cfg->bias_init, cfg->param_dtype, nf, fshape, &bias));
    int64_t axes[LX_MAX_DIMS];
    for (int i = 0; i < nr; i++) axes[i] = rfirst + i;
    lx_array *ops[3] = {x, scale, bias}; /* _normalize's canonicalize_dtype(x, scale, bias, dtype=self.dtype) */
    LX_TRY(lx_layer_promote("LayerNorm", cfg->dtype, 3, ops));
    return linen_return_array(out, lx_layer_norm(ops[0], ops[1], ops[2], (float)cfg->epsilon, nr, axes));
}

static const linen_method LN_METHODS[] = {LINEN_METHOD("__call__", ln_call)};
const linen_type linen_LayerNorm = {
    .name = "LayerNorm", .config_size = sizeof(linen_layer_norm_config), .config = LN_FIELDS,
    .nconfig = LX_COUNT(LN_FIELDS), .methods = LN_METHODS, .nmethods = LX_COUNT(LN_METHODS),
    .method_sigs = (const char *const[]){"x"},
};

lx_array *linen_layer_norm(linen_scope *s, const char *name, lx_array *x) {
    if (!x) return NULL;
    return ll_run_release(s, ll_new(&linen_LayerNorm, NULL), name, x);
}

/* ---------------------------------------------------------------- RMSNorm */
static const lx_field RMS_FIELDS[] = {
    LX_FIELD_FLOAT(linen_rms_norm_config, epsilon, 1e-6),
    LX_FIELD_STR(linen_rms_norm_config, dtype, NULL),
    LX_FIELD_DTYPE(linen_rms_norm_config, param_dtype, "float32"),
    LX_FIELD_BOOL(linen_rms_norm_config, use_scale, true),
    LL_FIELD_INIT(linen_rms_norm_config, scale_init, &ll_ones),
    LL_FIELD_INTS_D(linen_rms_norm_config, reduction_axes, -1),
    LL_FIELD_INTS_D(linen_rms_norm_config, feature_axes, -1),
};

static lx_status rms_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_rms_norm_config *cfg = linen_config(s);
    lx_array *x, *scale = NULL;
    LX_TRY(ll_input(c, 0, "x", "RMSNorm", &x));
    LX_TRY(ll_check_dtypes("RMSNorm", cfg->dtype));
    LX_TRY(ll_check_param_dtype("RMSNorm", cfg->param_dtype, cfg->use_scale ? &cfg->scale_init : NULL, NULL));
    int nf, nr, ffirst, rfirst;
    int64_t fshape[LX_MAX_DIMS], rshape[LX_MAX_DIMS];
    LX_TRY(feature_shape("RMSNorm", x, &cfg->feature_axes, &nf, fshape, &ffirst));
    LX_TRY(feature_shape("RMSNorm", x, &cfg->reduction_axes, &nr, rshape, &rfirst));
    if (ffirst < rfirst) return lx_fail(LX_ERR_UNSUPPORTED, "RMSNorm: feature_axes must be among the reduction_axes");
    if (cfg->use_scale) LX_TRY(linen_param(s, "scale", &cfg->scale_init, cfg->param_dtype, nf, fshape, &scale));
    lx_array *ops[2] = {x, scale}; /* _normalize's canonicalize_dtype(x, scale, dtype=self.dtype) */
    LX_TRY(lx_layer_promote("RMSNorm", cfg->dtype, 2, ops));
    int64_t axes[LX_MAX_DIMS];
    for (int i = 0; i < nr; i++) axes[i] = rfirst + i;
    return linen_return_array(out, lx_layer_rms_norm("RMSNorm", ops[0], ops[1], (float)cfg->epsilon, nr, axes));
}

static const linen_method RMS_METHODS[] = {LINEN_METHOD("__call__", rms_call)};
const linen_type linen_RMSNorm = {
    .name = "RMSNorm", .config_size = sizeof(linen_rms_norm_config), .config = RMS_FIELDS,
    .nconfig = LX_COUNT(RMS_FIELDS), .methods = RMS_METHODS, .nmethods = LX_COUNT(RMS_METHODS),
    .method_sigs = (const char *const[]){"x"},
};

lx_array *linen_rms_norm(linen_scope *s, const char *name, lx_array *x) {
    if (!x) return NULL;
    return ll_run_release(s, ll_new(&linen_RMSNorm, NULL), name, x);
}

/* ---------------------------------------------------------------- BatchNorm */
static const lx_field BN_FIELDS[] = {
    LL_FIELD_VALUE_D(linen_batch_norm_config, use_running_average, LX_VAL_NONE),
    LX_FIELD_INT(linen_batch_norm_config, axis, -1),
    LX_FIELD_FLOAT(linen_batch_norm_config, momentum, 0.99),
    LX_FIELD_FLOAT(linen_batch_norm_config, epsilon, 1e-5),
    LX_FIELD_STR(linen_batch_norm_config, dtype, NULL),
    LX_FIELD_DTYPE(linen_batch_norm_config, param_dtype, "float32"),
    LX_FIELD_BOOL(linen_batch_norm_config, use_bias, true),
    LX_FIELD_BOOL(linen_batch_norm_config, use_scale, true),
    LL_FIELD_INIT(linen_batch_norm_config, bias_init, &ll_zeros),
    LL_FIELD_INIT(linen_batch_norm_config, scale_init, &ll_ones),
    LX_FIELD_STR(linen_batch_norm_config, axis_name, NULL),
    LX_FIELD_BOOL(linen_batch_norm_config, use_fast_variance, true),
};

typedef struct { int64_t n; float v; } stat_init;
static lx_status stat_fill(lx_key k, void *user, lx_value *leaf) {
    (void)k;
    const stat_init *si = user;
    lx_array *a = lx_array_full_f32(1, &si->n, si->v);
    if (!a) return lx_last_status();
    *leaf = lx_array_v(a);
    return LX_OK;
}

static lx_status bn_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_batch_norm_config *cfg = linen_config(s);
    lx_array *x, *scale = NULL, *bias = NULL;
    LX_TRY(ll_input(c, 0, "x", "BatchNorm", &x));
    LX_TRY(ll_check_dtypes("BatchNorm", cfg->dtype));
    LX_TRY(ll_check_param_dtype("BatchNorm", cfg->param_dtype, cfg->use_scale ? &cfg->scale_init : NULL,
                                cfg->use_bias ? &cfg->bias_init : NULL));
    bool use_ra;
    LX_TRY(linen_merge_param("use_running_average", &cfg->use_running_average,
                             lx_call_get(c, 1, "use_running_average"), &use_ra));
    if (lx_call_kwarg(c, "mask")) return lx_fail(LX_ERR_UNSUPPORTED, "BatchNorm: mask is not supported");
    int64_t fax;
    LX_TRY(ll_axis("BatchNorm", cfg->axis, x->ndim, &fax));
    int64_t nfeat = x->shape[fax];
    int64_t red[LX_MAX_DIMS], bshape[LX_MAX_DIMS];
    int nred = 0;
    for (int i = 0; i < x->ndim; i++) {
        bshape[i] = i == fax ? nfeat : 1;
        if (i != fax) red[nred++] = i;
    }
    stat_init zeros = {nfeat, 0.0f}, ones = {nfeat, 1.0f};
    lx_value ra_mean, ra_var;
    LX_TRY(linen_variable(s, "batch_stats", "mean", stat_fill, &zeros, &ra_mean));
    LX_TRY(linen_variable(s, "batch_stats", "var", stat_fill, &ones, &ra_var));
    if (ra_mean.kind != LX_V_ARRAY || ra_var.kind != LX_V_ARRAY)
        return lx_fail(LX_ERR_TYPE, "BatchNorm: batch_stats mean/var in \"%s\" are not arrays", linen_scope_path(s));
    /* _compute_stats runs in promote_types(x.dtype, float32) */
    lx_array *xs = x->dtype == LX_F32 ? x : lx_cast(x, LX_F32);
    if (!xs) return lx_last_status();
    lx_array *mean, *var;
    if (use_ra) {
        mean = ra_mean.u.array;
        var = ra_var.u.array;
    } else {
        if (!cfg->use_fast_variance)
            return lx_fail(LX_ERR_UNSUPPORTED, "BatchNorm: use_fast_variance=False is not supported");
        mean = lx_mean(xs, nred, red, false);
        lx_array *mean2 = lx_mean(lx_square(xs), nred, red, false);
        if (cfg->axis_name) { /* sync batch-norm: the moments of the batch over the axis' ranks */
            mean = lx_dist_pmean(mean, cfg->axis_name);
            mean2 = lx_dist_pmean(mean2, cfg->axis_name);
        }
        var = lx_maximum(lx_scalar(0.0f), lx_sub(mean2, lx_square(mean)));
        if (!var) return lx_last_status();
        if (!linen_is_initializing(s)) {
            float m = (float)cfg->momentum, m1 = (float)(1.0 - cfg->momentum);
            lx_array *nm = lx_add(lx_mul_scalar(ra_mean.u.array, m), lx_mul_scalar(mean, m1));
            lx_array *nv = lx_add(lx_mul_scalar(ra_var.u.array, m), lx_mul_scalar(var, m1));
            LX_TRY(linen_variable_set(s, "batch_stats", "mean", nm));
            LX_TRY(linen_variable_set(s, "batch_stats", "var", nv));
        }
    }
    if (cfg->use_scale) LX_TRY(linen_param(s, "scale", &cfg->scale_init, cfg->param_dtype, 1, &nfeat, &scale));
    if (cfg->use_bias) LX_TRY(linen_param(s, "bias", &cfg->bias_init, cfg->param_dtype, 1, &nfeat, &bias));
    /* _normalize's canonicalize_dtype(x, scale, bias, dtype=self.dtype) decides the result dtype
     * (the input in float32, xs, is the promoted x) */
    lx_dtype to;
    LX_TRY(lx_layer_dtype("BatchNorm", cfg->dtype, 3, (lx_array *const[]){x, scale, bias}, &to));
    lx_array *ops[3] = {xs, scale, bias};
    LX_TRY(lx_layer_promote("BatchNorm", cfg->dtype, 3, ops));
    scale = ops[1];
    bias = ops[2];
    /* y = (x - mean) * (rsqrt(var + eps) * scale) + bias, with the stats broadcast over x */
    lx_array *mul = lx_rsqrt(lx_add_scalar(var, (float)cfg->epsilon));
    if (scale) mul = lx_mul(mul, scale);
    lx_array *y = lx_mul(lx_sub(xs, lx_reshape(mean, x->ndim, bshape)), lx_reshape(mul, x->ndim, bshape));
    if (bias) y = lx_add(y, lx_reshape(bias, x->ndim, bshape));
    return linen_return_array(out, y);
}

static const linen_method BN_METHODS[] = {LINEN_METHOD("__call__", bn_call)};
const linen_type linen_BatchNorm = {
    .name = "BatchNorm", .config_size = sizeof(linen_batch_norm_config), .config = BN_FIELDS,
    .nconfig = LX_COUNT(BN_FIELDS), .methods = BN_METHODS, .nmethods = LX_COUNT(BN_METHODS),
    .method_sigs = (const char *const[]){"x, use_running_average=None, *, mask=None"},
};

lx_array *linen_batch_norm(linen_scope *s, const char *name, bool use_running_average, lx_array *x) {
    if (!x) return NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW_BOOL("use_running_average", use_running_average));
    return ll_run_release(s, ll_new(&linen_BatchNorm, &c), name, x);
}
