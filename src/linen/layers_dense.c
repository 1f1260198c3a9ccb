/* flax.linen.Dense and DenseGeneral: x @ kernel (+ bias) through lax.dot_general (linalg.h), the
 * same kernel NNX's Linear / LinearGeneral call; Dense and Linear bind it with the bias as one
 * fused "dense" op (lx_dense). */
#include <string.h>

#include "layers_internal.h"
#include "linnx/linalg.h"
#include "linnx/ops.h"

/* ---------------------------------------------------------------- Dense */
static const lx_field DENSE_FIELDS[] = {
    LX_FIELD_REQUIRED_INT(linen_dense_config, features),
    LX_FIELD_BOOL(linen_dense_config, use_bias, true),
    LX_FIELD_STR(linen_dense_config, dtype, NULL),
    LX_FIELD_DTYPE(linen_dense_config, param_dtype, "float32"),
    LL_FIELD_INIT(linen_dense_config, kernel_init, &ll_lecun_normal),
    LL_FIELD_INIT(linen_dense_config, bias_init, &ll_zeros),
};

static lx_status dense_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_dense_config *cfg = linen_config(s);
    lx_array *x, *kernel, *bias = NULL;
    LX_TRY(ll_input(c, 0, "inputs", "Dense", &x));
    LX_TRY(ll_check_dtypes("Dense", cfg->dtype));
    LX_TRY(ll_check_param_dtype("Dense", cfg->param_dtype, &cfg->kernel_init, cfg->use_bias ? &cfg->bias_init : NULL));
    if (x->ndim < 1) return lx_fail(LX_ERR_SHAPE, "Dense: inputs must have at least 1 dimension, got a scalar");
    int64_t kshape[2] = {x->shape[x->ndim - 1], cfg->features};
    LX_TRY(linen_param(s, "kernel", &cfg->kernel_init, cfg->param_dtype, 2, kshape, &kernel));
    if (cfg->use_bias) LX_TRY(linen_param(s, "bias", &cfg->bias_init, cfg->param_dtype, 1, &cfg->features, &bias));
    /* promote_dtype(inputs, kernel, bias, dtype=self.dtype), then
     * dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ()))) + bias, as one "dense" op (the
     * separate ops while anything watches primitives: linalg.h lx_dense) */
    lx_array *ops[3] = {x, kernel, bias};
    LX_TRY(lx_layer_promote("Dense", cfg->dtype, 3, ops));
    return linen_return_array(out, lx_dense(ops[0], ops[1], ops[2], LX_ACT_NONE));
}

static const linen_method DENSE_METHODS[] = {LINEN_METHOD("__call__", dense_call)};
const linen_type linen_Dense = {
    .name = "Dense", .config_size = sizeof(linen_dense_config), .config = DENSE_FIELDS,
    .nconfig = LX_COUNT(DENSE_FIELDS), .methods = DENSE_METHODS, .nmethods = LX_COUNT(DENSE_METHODS),
    .method_sigs = (const char *const[]){"inputs"},
};

lx_array *linen_dense(linen_scope *s, const char *name, int64_t features, lx_array *x) {
    if (!x) return NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(features));
    return ll_run_release(s, ll_new(&linen_Dense, &c), name, x);
}

/* ---------------------------------------------------------------- DenseGeneral */
static const lx_field DG_FIELDS[] = {
    LX_FIELD_REQUIRED_INTS(linen_dense_general_config, features),
    LL_FIELD_INTS_D(linen_dense_general_config, axis, -1),
    LX_FIELD_INTS(linen_dense_general_config, batch_dims),
    LX_FIELD_BOOL(linen_dense_general_config, use_bias, true),
    LX_FIELD_STR(linen_dense_general_config, dtype, NULL),
    LX_FIELD_DTYPE(linen_dense_general_config, param_dtype, "float32"),
    LL_FIELD_INIT(linen_dense_general_config, kernel_init, &ll_lecun_normal),
    LL_FIELD_INIT(linen_dense_general_config, bias_init, &ll_zeros),
};

static bool in_list(int64_t v, int n, const int64_t *list) {
    for (int i = 0; i < n; i++)
        if (list[i] == v) return true;
    return false;
}

static lx_status dg_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_dense_general_config *cfg = linen_config(s);
    lx_array *x, *kernel, *bias = NULL;
    LX_TRY(ll_input(c, 0, "inputs", "DenseGeneral", &x));
    LX_TRY(ll_check_dtypes("DenseGeneral", cfg->dtype));
    LX_TRY(ll_check_param_dtype("DenseGeneral", cfg->param_dtype, &cfg->kernel_init,
                                cfg->use_bias ? &cfg->bias_init : NULL));
    const lx_ints *f = &cfg->features, *ax = &cfg->axis, *bd = &cfg->batch_dims;
    if (f->n < 1) return lx_fail(LX_ERR_INVALID_ARGUMENT, "DenseGeneral: features must not be empty");
    if (bd->n > 0) {
        int64_t mx = 0;
        for (int i = 0; i < bd->n; i++) mx = bd->v[i] > mx ? bd->v[i] : mx;
        bool ok = mx + 1 == bd->n;
        for (int64_t d = 0; ok && d <= mx; d++) ok = in_list(d, bd->n, bd->v);
        if (!ok) {
            char buf[96];
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "batch_dims %s must be consecutive leading dimensions starting from 0.",
                           lx_shape_str(bd->n, bd->v, buf, sizeof buf));
        }
    }
    int nd = x->ndim, na = ax->n, nb = bd->n, nf = f->n;
    if (na + nb + nf > LX_MAX_DIMS || na + nb > nd)
        return lx_fail(LX_ERR_SHAPE, "DenseGeneral: %d axes and %d batch dims do not fit inputs of %d dimensions", na, nb, nd);
    int64_t axis[LX_MAX_DIMS], batch[LX_MAX_DIMS];
    for (int i = 0; i < na; i++) {
        LX_TRY(ll_axis("DenseGeneral", ax->v[i], nd, &axis[i]));
        for (int j = 0; j < i; j++)
            if (axis[j] == axis[i]) return lx_fail(LX_ERR_INVALID_ARGUMENT, "DenseGeneral: repeated axis %lld", (long long)axis[i]);
    }
    for (int i = 0; i < nb; i++) {
        LX_TRY(ll_axis("DenseGeneral", bd->v[i], nd, &batch[i]));
        if (in_list(batch[i], na, axis))
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "DenseGeneral: axis %lld is both contracted and a batch dim", (long long)batch[i]);
    }
    /* kernel: batch_shape + in_shape + features, initialised flat as
     * (prod(batch) * prod(in), prod(features)) */
    int64_t kshape[LX_MAX_DIMS], kin = 1, kout = 1, bsz = 1;
    int kn = 0;
    for (int i = 0; i < nb; i++) bsz *= (kshape[kn++] = x->shape[batch[i]]);
    for (int i = 0; i < na; i++) kin *= (kshape[kn++] = x->shape[axis[i]]);
    for (int i = 0; i < nf; i++) kout *= (kshape[kn++] = f->v[i]);
    int64_t kflat[2] = {bsz * kin, kout};
    LX_TRY(linen_param_reshaped(s, "kernel", &cfg->kernel_init, cfg->param_dtype, kn, kshape, 2, kflat, &kernel));
    if (cfg->use_bias) {
        int64_t bshape[LX_MAX_DIMS], bflat = bsz * kout;
        int bn = 0;
        for (int i = 0; i < nb; i++) bshape[bn++] = x->shape[batch[i]];
        for (int i = 0; i < nf; i++) bshape[bn++] = f->v[i];
        LX_TRY(linen_param_reshaped(s, "bias", &cfg->bias_init, cfg->param_dtype, bn, bshape, 1, &bflat, &bias));
    }
    lx_array *ops[3] = {x, kernel, bias}; /* promote_dtype(inputs, kernel, bias, dtype=self.dtype) */
    LX_TRY(lx_layer_promote("DenseGeneral", cfg->dtype, 3, ops));
    kernel = ops[1];
    bias = ops[2];
    int64_t lc[LX_MAX_DIMS], rc[LX_MAX_DIMS], lb[LX_MAX_DIMS], rb[LX_MAX_DIMS];
    for (int i = 0; i < na; i++) {
        lc[i] = axis[i];
        rc[i] = nb + i;
    }
    for (int i = 0; i < nb; i++) {
        lb[i] = batch[i];
        rb[i] = i;
    }
    lx_array *y = lx_dot_general(ops[0], kernel, na, lc, rc, nb, lb, rb);
    if (bias && y) {
        /* broadcast the bias over the non-contracted input axes (batch dims keep their size) */
        int64_t eshape[LX_MAX_DIMS];
        int en = 0;
        for (int a = 0; a < nd; a++)
            if (!in_list(a, na, axis)) eshape[en++] = in_list(a, nb, batch) ? x->shape[a] : 1;
        for (int i = 0; i < nf; i++) eshape[en++] = f->v[i];
        y = lx_add(y, lx_reshape(bias, en, eshape));
    }
    return linen_return_array(out, y);
}

static const linen_method DG_METHODS[] = {LINEN_METHOD("__call__", dg_call)};
const linen_type linen_DenseGeneral = {
    .name = "DenseGeneral", .config_size = sizeof(linen_dense_general_config), .config = DG_FIELDS,
    .nconfig = LX_COUNT(DG_FIELDS), .methods = DG_METHODS, .nmethods = LX_COUNT(DG_METHODS),
    .method_sigs = (const char *const[]){"inputs"},
};

lx_array *linen_dense_general(linen_scope *s, const char *name, int nfeatures, const int64_t *features,
                              int naxis, const int64_t *axis, lx_array *x) {
    if (!x) return NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW("features", lx_ints_v(nfeatures, features)),
                               LX_KW("axis", naxis > 0 ? lx_ints_v(naxis, axis) : lx_int_v(-1)));
    return ll_run_release(s, ll_new(&linen_DenseGeneral, &c), name, x);
}
