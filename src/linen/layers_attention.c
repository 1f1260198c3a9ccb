/* flax.linen.MultiHeadDotProductAttention: DenseGeneral children 'query', 'key', 'value'
 * (features (heads, head_dim)), optional 'query_ln' / 'key_ln', dot-product attention (nn.h), and
 * the 'out' DenseGeneral over the last two axes. */
#include <math.h>
#include <string.h>

#include "layers_internal.h"
#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/ops.h"

static const lx_field MHA_FIELDS[] = {
    LX_FIELD_REQUIRED_INT(linen_mha_config, num_heads),
    LX_FIELD_STR(linen_mha_config, dtype, NULL),
    LX_FIELD_DTYPE(linen_mha_config, param_dtype, "float32"),
    LL_FIELD_VALUE_D(linen_mha_config, qkv_features, LX_VAL_NONE),
    LL_FIELD_VALUE_D(linen_mha_config, out_features, LX_VAL_NONE),
    LX_FIELD_BOOL(linen_mha_config, broadcast_dropout, true),
    LX_FIELD_FLOAT(linen_mha_config, dropout_rate, 0.0),
    LL_FIELD_VALUE_D(linen_mha_config, deterministic, LX_VAL_NONE),
    LL_FIELD_INIT(linen_mha_config, kernel_init, &ll_lecun_normal),
    LL_FIELD_INIT(linen_mha_config, out_kernel_init, NULL),
    LL_FIELD_INIT(linen_mha_config, bias_init, &ll_zeros),
    LL_FIELD_INIT(linen_mha_config, out_bias_init, NULL),
    LX_FIELD_BOOL(linen_mha_config, use_bias, true),
    LX_FIELD_BOOL(linen_mha_config, decode, false),
    LX_FIELD_BOOL(linen_mha_config, normalize_qk, false),
};

static lx_status opt_int(const char *name, const lx_value *v, int64_t dflt, int64_t *out) {
    if (v->kind == LX_V_NONE) *out = dflt;
    else if (v->kind == LX_V_INT) *out = v->u.i;
    else return lx_fail(LX_ERR_TYPE, "MultiHeadDotProductAttention: %s must be an int or None, got %s", name, lx_kind_name(v->kind));
    if (*out == 0) *out = dflt; /* `self.out_features or ...` */
    return LX_OK;
}

/* The dtype / param_dtype keywords Flax passes down to every child (dtype=self.dtype,
 * param_dtype=self.param_dtype). */
#define MHA_DTYPES(cfg)                                                      \
    LX_KW("dtype", (cfg)->dtype ? lx_str_v((cfg)->dtype) : lx_none()),    \
        LX_KW("param_dtype", lx_str_v(lx_dtype_name((cfg)->param_dtype)))

static lx_array *project(linen_scope *s, const linen_mha_config *cfg, const char *name, const lx_value *features,
                         const lx_value *axis, const lx_initializer *kinit, const lx_initializer *binit,
                         lx_array *x) {
    if (!x) return NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW("features", *features), LX_KW("axis", *axis),
                               LX_KW_BOOL("use_bias", cfg->use_bias),
                               LX_KW("kernel_init", lx_ptr_v("initializer", (void *)kinit)),
                               LX_KW("bias_init", lx_ptr_v("initializer", (void *)binit)), MHA_DTYPES(cfg));
    return ll_run_release(s, ll_new(&linen_DenseGeneral, &c), name, x);
}

static lx_array *qk_norm(linen_scope *s, const linen_mha_config *cfg, const char *name, lx_array *x) {
    if (!x) return NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW_BOOL("use_bias", false), MHA_DTYPES(cfg));
    return ll_run_release(s, ll_new(&linen_LayerNorm, &c), name, x);
}

static lx_status mha_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_mha_config *cfg = linen_config(s);
    const char *T = "MultiHeadDotProductAttention";
    lx_array *q, *k = NULL, *v = NULL, *mask = NULL;
    LX_TRY(ll_check_dtypes(T, cfg->dtype));
    {
        const lx_initializer *bi = cfg->use_bias ? &cfg->bias_init : NULL;
        LX_TRY(ll_check_param_dtype(T, cfg->param_dtype, &cfg->kernel_init, bi));
        LX_TRY(ll_check_param_dtype(T, cfg->param_dtype, cfg->out_kernel_init.name ? &cfg->out_kernel_init : NULL,
                                    cfg->use_bias && cfg->out_bias_init.name ? &cfg->out_bias_init : NULL));
    }
    if (cfg->decode) return lx_fail(LX_ERR_UNSUPPORTED, "%s: decode=True is not supported", T);
    LX_TRY(ll_input(c, 0, "inputs_q", T, &q));
    const lx_value *kv = lx_call_kwarg(c, "inputs_kv");
    const lx_value *kk = lx_call_get(c, 1, "inputs_k"), *vv = lx_call_get(c, 2, "inputs_v");
    if (kv && kv->kind != LX_V_NONE) {
        if ((kk && kk->kind != LX_V_NONE) || (vv && vv->kind != LX_V_NONE))
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "If either `inputs_k` or `inputs_v` is not None, `inputs_kv` must be None.");
        LX_TRY(ll_input(c, -1, "inputs_kv", T, &k));
        v = k;
    } else {
        if (kk && kk->kind != LX_V_NONE) LX_TRY(ll_input(c, 1, "inputs_k", T, &k));
        if (vv && vv->kind != LX_V_NONE) LX_TRY(ll_input(c, 2, "inputs_v", T, &v));
        if (!k) {
            if (v)
                return lx_fail(LX_ERR_INVALID_ARGUMENT,
                               "`inputs_k` cannot be None if `inputs_v` is not None. To have both `inputs_k` and "
                               "`inputs_v` be the same value, pass in the value to `inputs_k` and leave `inputs_v` as None.");
            k = q;
        }
        if (!v) v = k;
    }
    const lx_value *mv = lx_call_kwarg(c, "mask");
    if (mv && mv->kind != LX_V_NONE) {
        LX_TRY(ll_input(c, -1, "mask", T, &mask));
        if (mask->dtype != LX_BOOL) mask = lx_ne(mask, lx_cast(lx_scalar(0.0f), mask->dtype));
        if (!mask) return lx_last_status();
    }
    bool sow_weights = false;
    LX_TRY(lx_call_bool(c, -1, "sow_weights", false, &sow_weights));
    /* features are the last axis (Flax reads inputs_q.shape[-1]: an IndexError for a scalar) */
    const lx_array *in3[3] = {q, k, v};
    const char *in3_name[3] = {"inputs_q", "inputs_k", "inputs_v"};
    for (int i = 0; i < 3; i++)
        if (in3[i]->ndim < 1)
            return lx_fail(LX_ERR_SHAPE, "MultiHeadDotProductAttention: %s is a scalar; its last axis holds the features",
                           in3_name[i]);
    int64_t in_features = q->shape[q->ndim - 1], features = 0, qkv = 0;
    LX_TRY(opt_int("out_features", &cfg->out_features, in_features, &features));
    LX_TRY(opt_int("qkv_features", &cfg->qkv_features, in_features, &qkv));
    if (cfg->num_heads < 1 || qkv % cfg->num_heads != 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Memory dimension (%lld) must be divisible by number of heads (%lld).",
                       (long long)qkv, (long long)cfg->num_heads);
    int64_t hd[2] = {cfg->num_heads, qkv / cfg->num_heads};
    lx_value fv = lx_ints_v(2, hd), axis_last = lx_int_v(-1);
    lx_array *query = project(s, cfg, "query", &fv, &axis_last, &cfg->kernel_init, &cfg->bias_init, q);
    lx_array *key = project(s, cfg, "key", &fv, &axis_last, &cfg->kernel_init, &cfg->bias_init, k);
    lx_array *value = project(s, cfg, "value", &fv, &axis_last, &cfg->kernel_init, &cfg->bias_init, v);
    if (!query || !key || !value) return lx_last_status();
    if (cfg->normalize_qk) {
        query = qk_norm(s, cfg, "query_ln", query);
        key = qk_norm(s, cfg, "key_ln", key);
        if (!query || !key) return lx_last_status();
    }
    bool det = true;
    lx_key drop_key = {{0, 0}};
    if (cfg->dropout_rate > 0.0) {
        LX_TRY(linen_merge_param("deterministic", &cfg->deterministic, lx_call_get(c, -1, "deterministic"), &det));
        if (!det) LX_TRY(linen_make_rng(s, "dropout", &drop_key));
    }
    lx_array *x;
    if (det && !sow_weights) {
        x = lx_dot_product_attention(query, key, value, NULL, mask, false, 0.0f);
    } else {
        lx_array *w = lx_dot_product_attention_weights(query, key, NULL, mask, false, 0.0f);
        if (!w) return lx_last_status();
        if (sow_weights) LX_TRY(linen_sow(s, "intermediates", "attention_weights", w));
        if (!det) {
            /* keep / keep_prob as a multiplier, broadcast over batch and heads by default */
            double keep_prob = 1.0 - cfg->dropout_rate;
            int64_t dshape[LX_MAX_DIMS];
            for (int i = 0; i < w->ndim; i++)
                dshape[i] = cfg->broadcast_dropout && i < w->ndim - 2 ? 1 : w->shape[i];
            lx_array *keep = lx_random_bernoulli(drop_key, (float)keep_prob, w->ndim, dshape);
            lx_array *mult = lx_div(lx_cast(keep, LX_F32), lx_scalar((float)keep_prob));
            w = lx_mul(w, mult);
        }
        /* '...hqk,...khd->...qhd' */
        int nb = w->ndim - 3;
        int64_t lc = nb + 2, rc = nb, lb[LX_MAX_DIMS], rb[LX_MAX_DIMS];
        for (int i = 0; i < nb; i++) lb[i] = rb[i] = i;
        lb[nb] = nb;
        rb[nb] = nb + 1;
        lx_array *o = lx_dot_general(w, value, 1, &lc, &rc, nb + 1, lb, rb); /* (batch..., h, q, d) */
        int64_t perm[LX_MAX_DIMS];
        for (int i = 0; i < nb; i++) perm[i] = i;
        perm[nb] = nb + 1;
        perm[nb + 1] = nb;
        perm[nb + 2] = nb + 2;
        x = o ? lx_transpose(o, nb + 3, perm) : NULL;
    }
    if (!x) return lx_last_status();
    int64_t two[2] = {-2, -1};
    lx_value of = lx_int_v(features), axis2 = lx_ints_v(2, two);
    const lx_initializer *ok = cfg->out_kernel_init.name ? &cfg->out_kernel_init : &cfg->kernel_init;
    const lx_initializer *ob = cfg->out_bias_init.name ? &cfg->out_bias_init : &cfg->bias_init;
    return linen_return_array(out, project(s, cfg, "out", &of, &axis2, ok, ob, x));
}

static const linen_method MHA_METHODS[] = {LINEN_METHOD("__call__", mha_call)};
const linen_type linen_MultiHeadDotProductAttention = {
    .name = "MultiHeadDotProductAttention", .config_size = sizeof(linen_mha_config), .config = MHA_FIELDS,
    .nconfig = LX_COUNT(MHA_FIELDS), .methods = MHA_METHODS, .nmethods = LX_COUNT(MHA_METHODS),
    .method_sigs = (const char *const[]){"inputs_q, inputs_k=None, inputs_v=None, *, inputs_kv=None, mask=None, deterministic=None, sow_weights=False"},
};

lx_array *linen_self_attention(linen_scope *s, const char *name, int64_t num_heads, lx_array *x,
                               lx_array *mask, bool deterministic) {
    if (!x) return NULL;
    lx_call mc = LX_CALL_ARGS(lx_int_v(num_heads));
    linen_module *m = ll_new(&linen_MultiHeadDotProductAttention, &mc);
    if (!m) return NULL;
    lx_value args[1] = {lx_array_v(x)};
    lx_kwarg kw[2] = {LX_KW("mask", mask ? lx_array_v(mask) : lx_none()), LX_KW_BOOL("deterministic", deterministic)};
    lx_call c = {1, args, 2, kw};
    lx_value out = lx_none();
    lx_status st = linen_call_child(s, m, name, NULL, &c, &out);
    linen_module_release(m);
    if (st != LX_OK) return NULL;
    lx_array *y = out.kind == LX_V_ARRAY ? lx_autorelease(lx_retain(out.u.array)) : NULL;
    lx_value_free(&out);
    return y;
}


lx_array *linen_make_attention_mask(lx_array *query_input, lx_array *key_input) {
    if (!query_input || !key_input) return NULL;
    lx_array *q = lx_cast(query_input, LX_F32), *k = lx_cast(key_input, LX_F32);
    if (!q || !k) return NULL;
    /* q[..., None, :, None] * k[..., None, None, :] != 0 */
    lx_array *qe = lx_expand_dims(lx_expand_dims(q, -1), -3);
    lx_array *ke = lx_expand_dims(lx_expand_dims(k, -2), -3);
    return lx_ne(lx_mul(qe, ke), lx_scalar(0.0f));
}
