/* flax.linen.Conv: NHWC inputs, HWIO kernel, lax.conv_general_dilated through nn.h's
 * lx_conv_general (the kernel NNX's Conv calls). */
#include <string.h>

#include "../core/checked.h"
#include "layers_internal.h"
#include "linnx/nn.h"
#include "linnx/ops.h"

static const lx_field CONV_FIELDS[] = {
    LX_FIELD_REQUIRED_INT(linen_conv_config, features),
    LX_FIELD_REQUIRED_INTS(linen_conv_config, kernel_size),
    LL_FIELD_INTS_D(linen_conv_config, strides, 1),
    LL_FIELD_VALUE_D(linen_conv_config, padding, LX_VAL_STR("SAME")),
    LL_FIELD_INTS_D(linen_conv_config, input_dilation, 1),
    LL_FIELD_INTS_D(linen_conv_config, kernel_dilation, 1),
    LX_FIELD_INT(linen_conv_config, feature_group_count, 1),
    LX_FIELD_BOOL(linen_conv_config, use_bias, true),
    LX_FIELD_STR(linen_conv_config, dtype, NULL),
    LX_FIELD_DTYPE(linen_conv_config, param_dtype, "float32"),
    LL_FIELD_INIT(linen_conv_config, kernel_init, &ll_lecun_normal),
    LL_FIELD_INIT(linen_conv_config, bias_init, &ll_zeros),
};

/* Flax's maybe_broadcast: None/() -> 1s, one int -> repeated, else one per spatial axis. */
static lx_status broadcast_ints(const char *what, const lx_ints *v, int n, int64_t *out) {
    if (v->n == 0 || v->n == 1) {
        for (int i = 0; i < n; i++) out[i] = v->n ? v->v[0] : 1;
    } else if (v->n == n) {
        for (int i = 0; i < n; i++) out[i] = v->v[i];
    } else {
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Conv: %s has %d entries for %d spatial dimensions", what, v->n, n);
    }
    for (int i = 0; i < n; i++)
        if (out[i] < 1) { /* lax's check, under lax's argument names */
            const char *lax = !strcmp(what, "strides") ? "window_strides"
                              : !strcmp(what, "input_dilation") ? "lhs_dilation" : "rhs_dilation";
            char b[160];
            return lx_fail(LX_ERR_INVALID_ARGUMENT,
                           "conv_general_dilated %s must have every element be positive, got %s (Conv %s).", lax,
                           lx_shape_str(n, out, b, sizeof b), what);
        }
    return LX_OK;
}

/* Wrap-around padding along spatial axis `axis` (CIRCULAR): x[-lo:] ++ x ++ x[:hi]. */
static lx_array *wrap_pad(lx_array *x, int axis, int64_t lo, int64_t hi) {
    if (!x) return NULL;
    int64_t n = x->shape[axis];
    if (lo > n || hi > n) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "Conv: CIRCULAR padding wider than the input");
        return NULL;
    }
    lx_range r[LX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) r[i] = LX_RANGE_ALL;
    lx_array *parts[3];
    int np = 0;
    if (lo > 0) {
        r[axis] = LX_RANGE(n - lo, n);
        parts[np++] = lx_slice(x, x->ndim, r);
    }
    parts[np++] = x;
    if (hi > 0) {
        r[axis] = LX_RANGE(0, hi);
        parts[np++] = lx_slice(x, x->ndim, r);
    }
    return np == 1 ? x : lx_concatenate(np, parts, axis);
}

static lx_status conv_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_conv_config *cfg = linen_config(s);
    lx_array *x, *kernel, *bias = NULL;
    LX_TRY(ll_input(c, 0, "inputs", "Conv", &x));
    LX_TRY(ll_check_dtypes("Conv", cfg->dtype));
    LX_TRY(ll_check_param_dtype("Conv", cfg->param_dtype, &cfg->kernel_init, cfg->use_bias ? &cfg->bias_init : NULL));
    int nk = cfg->kernel_size.n;
    if (nk < 1) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Conv: kernel_size must not be empty");
    int nbatch = x->ndim - (nk + 1);
    if (nbatch < 0) {
        char buf[96];
        return lx_fail(LX_ERR_SHAPE, "Conv: inputs of shape %s have fewer than %d dimensions for a %d-D kernel",
                       lx_shape_str(x->ndim, x->shape, buf, sizeof buf), nk + 1, nk);
    }
    /* one leading batch axis: flatten several, add one when there is none */
    int64_t bsz = 1;
    for (int i = 0; i < nbatch; i++) bsz *= x->shape[i];
    lx_array *xin = x;
    if (nbatch != 1) {
        int64_t fshape[LX_MAX_DIMS];
        fshape[0] = bsz;
        for (int i = 0; i <= nk; i++) fshape[1 + i] = x->shape[nbatch + i];
        xin = lx_reshape(x, nk + 2, fshape);
        if (!xin) return lx_last_status();
    }
    lx_conv_params p;
    memset(&p, 0, sizeof p);
    LX_TRY(broadcast_ints("strides", &cfg->strides, nk, p.strides));
    LX_TRY(broadcast_ints("input_dilation", &cfg->input_dilation, nk, p.lhs_dilation));
    LX_TRY(broadcast_ints("kernel_dilation", &cfg->kernel_dilation, nk, p.rhs_dilation));
    p.feature_group_count = cfg->feature_group_count;
    const lx_value *pad = &cfg->padding;
    if (pad->kind == LX_V_STR) {
        const char *m = pad->u.s;
        if (strcmp(m, "SAME") == 0) p.padding.mode = LX_PAD_SAME;
        else if (strcmp(m, "VALID") == 0) p.padding.mode = LX_PAD_VALID;
        else if (strcmp(m, "CIRCULAR") == 0) {
            for (int i = 0; i < nk && xin; i++) {
                int64_t kd;
                if (!lx_mul_ok(cfg->kernel_size.v[i] - 1, p.rhs_dilation[i], &kd) || !lx_add_ok(kd, 1, &kd))
                    return lx_fail(LX_ERR_SHAPE, "Conv: kernel_size %lld dilated by kernel_dilation %lld overflows int64",
                                   (long long)cfg->kernel_size.v[i], (long long)p.rhs_dilation[i]);
                xin = wrap_pad(xin, 1 + i, (kd - 1) / 2, kd / 2);
            }
            if (!xin) return lx_last_status();
            p.padding.mode = LX_PAD_VALID;
        } else if (strcmp(m, "CAUSAL") == 0) {
            if (nk != 1) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Causal padding is only implemented for 1D convolutions.");
            int64_t lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
            if (!lx_mul_ok(p.rhs_dilation[0], cfg->kernel_size.v[0] - 1, &lo[1]))
                return lx_fail(LX_ERR_SHAPE, "Conv: CAUSAL padding for kernel_size %lld dilated by kernel_dilation %lld overflows int64",
                               (long long)cfg->kernel_size.v[0], (long long)p.rhs_dilation[0]);
            xin = lx_pad(xin, lo, hi, 0.0f);
            if (!xin) return lx_last_status();
            p.padding.mode = LX_PAD_VALID;
        } else {
            return lx_fail(LX_ERR_UNSUPPORTED, "Conv: padding '%s' is not supported (SAME, VALID, CIRCULAR, CAUSAL)", m);
        }
    } else if (pad->kind == LX_V_INT || (pad->kind == LX_V_INTS && (pad->u.ints.n == nk || pad->u.ints.n == 2 * nk))) {
        p.padding.mode = LX_PAD_EXPLICIT;
        for (int i = 0; i < nk; i++) {
            if (pad->kind == LX_V_INT) p.padding.lo[i] = p.padding.hi[i] = pad->u.i;
            else if (pad->u.ints.n == nk) p.padding.lo[i] = p.padding.hi[i] = pad->u.ints.v[i];
            else {
                p.padding.lo[i] = pad->u.ints.v[2 * i];
                p.padding.hi[i] = pad->u.ints.v[2 * i + 1];
            }
        }
    } else {
        char buf[96];
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "Invalid padding format: %s, should be str, int, or a sequence of len %d where each "
                       "element is an int or pair of ints.",
                       lx_value_str(pad, buf, sizeof buf), nk);
    }
    int64_t cin = xin->shape[xin->ndim - 1], g = cfg->feature_group_count;
    if (g < 1 || cin % g != 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Conv: %lld input features are not divisible by feature_group_count %lld",
                       (long long)cin, (long long)g);
    int64_t kshape[LX_MAX_DIMS];
    for (int i = 0; i < nk; i++) kshape[i] = cfg->kernel_size.v[i];
    kshape[nk] = cin / g;
    kshape[nk + 1] = cfg->features;
    LX_TRY(linen_param(s, "kernel", &cfg->kernel_init, cfg->param_dtype, nk + 2, kshape, &kernel));
    if (cfg->use_bias) LX_TRY(linen_param(s, "bias", &cfg->bias_init, cfg->param_dtype, 1, &cfg->features, &bias));
    lx_array *ops[3] = {xin, kernel, bias}; /* promote_dtype(inputs, kernel, bias, dtype=self.dtype) */
    LX_TRY(lx_layer_promote("Conv", cfg->dtype, 3, ops));
    bias = ops[2];
    lx_array *y = lx_conv_general(ops[0], ops[1], &p);
    if (bias) y = lx_add(y, bias);
    if (y && nbatch != 1) {
        int64_t oshape[LX_MAX_DIMS];
        int on = 0;
        for (int i = 0; i < nbatch; i++) oshape[on++] = x->shape[i];
        for (int i = 1; i < y->ndim; i++) oshape[on++] = y->shape[i];
        y = lx_reshape(y, on, oshape);
    }
    return linen_return_array(out, y);
}

/* Flax's _Conv refuses a bare int kernel_size (nn.Conv(16, 3)) with this TypeError, where the
 * field table would read it as (3,): a 1-D convolution over the wrong axes. Flax raises it at
 * the first call; linnx at construction, where the int is still visible (the config keeps a
 * tuple). A clone's kernel_size override is checked the same way (linen_clone_check_). */
static lx_status conv_kernel_size_check(const lx_value *ks) {
    if (ks && ks->kind == LX_V_INT)
        return lx_fail(LX_ERR_TYPE,
                       "Expected Conv kernel_size to be a tuple/list of integers (eg.: [3, 3]) but got %lld.",
                       (long long)ks->u.i);
    return LX_OK;
}

static lx_status conv_bind(const linen_type *type, void *cfg, const lx_call *c) {
    LX_TRY(conv_kernel_size_check(lx_call_get(c, 1, "kernel_size")));
    return lx_config_bind(type->config, type->nconfig, c, cfg, "Conv.__init__()");
}

lx_status linen_clone_check_(const linen_type *t, const lx_call *overrides) {
    if (t && t->bind == conv_bind && overrides) return conv_kernel_size_check(lx_call_kwarg(overrides, "kernel_size"));
    return LX_OK;
}

static const linen_method CONV_METHODS[] = {LINEN_METHOD("__call__", conv_call)};
const linen_type linen_Conv = {
    .name = "Conv", .config_size = sizeof(linen_conv_config), .config = CONV_FIELDS,
    .nconfig = LX_COUNT(CONV_FIELDS), .methods = CONV_METHODS, .nmethods = LX_COUNT(CONV_METHODS),
    .method_sigs = (const char *const[]){"inputs"}, .bind = conv_bind,
};

lx_array *linen_conv(linen_scope *s, const char *name, int64_t features, int nkernel,
                     const int64_t *kernel_size, lx_array *x) {
    if (!x) return NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(features), lx_ints_v(nkernel, kernel_size));
    return ll_run_release(s, ll_new(&linen_Conv, &c), name, x);
}
