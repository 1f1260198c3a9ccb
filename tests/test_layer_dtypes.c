/* The layers' dtype promotion (Flax's promote_dtype / canonicalize_dtype) in both module systems:
 * bfloat16 parameters with float32 inputs compute in float32, int32 inputs are promoted to
 * float32, dtype='float32' casts everything, a bfloat16 computation is LX_ERR_UNSUPPORTED, and a
 * bfloat16 parameter gets a bfloat16 gradient. Also RMSNorm over trailing multi-axes (values in
 * double written out here), linen.Conv's int kernel_size TypeError, and nnx_setattr refusing an
 * indirect reference cycle (audit findings F1-F6 of issues 4-6). */
#include <math.h>
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/bridge.h"
#include "linnx/init.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/nn.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"
#include "linnx/ops.h"
#include "linnx/tree.h"
#include "lx_test.h"

static lx_array *leaf(const lx_tree *t, const char *path) {
    const lx_value *v = t ? lx_tree_find(t, path) : NULL;
    return v && v->kind == LX_V_ARRAY ? v->u.array : NULL;
}

/* sin(0.37 i + 0.1): distinct, signed values */
static lx_array *xsin(int ndim, const int64_t *shape) {
    lx_array *a = lx_autorelease(lx_array_new(LX_F32, ndim, shape));
    for (int64_t i = 0; i < a->size; i++) lx_f32(a)[i] = (float)sin(0.37 * (double)i + 0.1);
    return a;
}

static linen_module *make(const linen_type *t, lx_call c) {
    linen_module *m = NULL;
    CHECK(linen_module_new(t, &c, &m) == LX_OK);
    return m;
}

/* init_with_output: the output (pool-owned) and the variables, or NULL with the status in *st */
static lx_array *run_init(const linen_module *m, lx_array *x, lx_tree **vars, lx_status *st) {
    lx_value out = lx_none();
    *vars = NULL;
    lx_clear_error();
    *st = linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &out, vars);
    lx_array *y = out.kind == LX_V_ARRAY ? lx_autorelease(lx_retain(out.u.array)) : NULL;
    lx_value_free(&out);
    return y;
}

static bool same_values(const lx_array *a, const lx_array *b) {
    return a && b && a->dtype == LX_F32 && b->dtype == LX_F32 && lx_same_shape(a, b) &&
           memcmp(lx_f32(a), lx_f32(b), (size_t)a->size * sizeof(float)) == 0;
}

static bool all_dtype(const lx_tree *t, lx_dtype d, int *count) {
    lx_flat f = {0};
    if (lx_tree_flatten(t, &f) != LX_OK) return false;
    bool ok = true;
    *count = (int)f.len;
    for (size_t i = 0; i < f.len; i++)
        ok &= f.items[i].value.kind == LX_V_ARRAY && f.items[i].value.u.array->dtype == d;
    lx_flat_free(&f);
    return ok;
}

static lx_initializer c05, zeros_i, ones_i;
#define INIT(p) lx_ptr_v("initializer", (p))
#define BF16 lx_str_v("bfloat16")

/* ------------------------------------------------------------ F4: bfloat16 params, float32 input */
static void test_linen_bf16_params(void) {
    int64_t xs[] = {2, 5, 5, 4};
    lx_array *x = xsin(4, xs);
    lx_tree *vars;
    lx_status st;

    /* Dense(3, param_dtype=bfloat16, kernel_init=constant(0.5)): y[..., j] = 0.5 * sum_i x[..., i] */
    linen_module *d = make(&linen_Dense, LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW("param_dtype", BF16),
                                                        LX_KW("kernel_init", INIT(&c05)), LX_KW("bias_init", INIT(&zeros_i))));
    lx_array *y = run_init(d, x, &vars, &st);
    CHECK(st == LX_OK);
    CHECK(leaf(vars, "params/kernel") && leaf(vars, "params/kernel")->dtype == LX_BF16);
    CHECK(leaf(vars, "params/bias") && leaf(vars, "params/bias")->dtype == LX_BF16);
    CHECK(y && y->dtype == LX_F32 && y->ndim == 4 && y->shape[3] == 3);
    bool ok = y != NULL;
    for (int64_t r = 0; ok && r < 50; r++) {
        double s = 0;
        for (int i = 0; i < 4; i++) s += lx_f32(x)[r * 4 + i];
        for (int j = 0; j < 3; j++) ok &= fabs(lx_f32(y)[r * 3 + j] - 0.5 * s) <= 1e-6;
    }
    CHECK(ok);
    lx_tree_release(vars);
    linen_module_release(d);

    /* DenseGeneral the same way */
    linen_module *dg = make(&linen_DenseGeneral,
                            LX_CALL_KWARGS(LX_KW("features", lx_ints_v(1, (int64_t[]){2})), LX_KW("param_dtype", BF16),
                                           LX_KW("kernel_init", INIT(&c05)), LX_KW("bias_init", INIT(&zeros_i))));
    y = run_init(dg, x, &vars, &st);
    CHECK(st == LX_OK && y && y->dtype == LX_F32 && leaf(vars, "params/kernel")->dtype == LX_BF16);
    ok = y != NULL;
    for (int64_t r = 0; ok && r < 50; r++) {
        double s = 0;
        for (int i = 0; i < 4; i++) s += lx_f32(x)[r * 4 + i];
        ok &= fabs(lx_f32(y)[r * 2 + 1] - 0.5 * s) <= 1e-6;
    }
    CHECK(ok);
    lx_tree_release(vars);
    linen_module_release(dg);

    /* Conv(1, (3,), padding VALID) on (1, 5, 2): y[t] = 0.5 * sum of x over the 3x2 window */
    int64_t cs[] = {1, 5, 2};
    lx_array *xc = xsin(3, cs);
    linen_module *cv = make(&linen_Conv, LX_CALL_KWARGS(LX_KW_INT("features", 1), LX_KW("kernel_size", lx_ints_v(1, (int64_t[]){3})),
                                                        LX_KW("padding", lx_str_v("VALID")), LX_KW("param_dtype", BF16),
                                                        LX_KW("kernel_init", INIT(&c05)), LX_KW("bias_init", INIT(&zeros_i))));
    y = run_init(cv, xc, &vars, &st);
    CHECK(st == LX_OK && y && y->dtype == LX_F32 && lx_shape_eq(y, 3, (int64_t[]){1, 3, 1}));
    CHECK(leaf(vars, "params/kernel") && leaf(vars, "params/kernel")->dtype == LX_BF16);
    ok = y != NULL;
    for (int t = 0; ok && t < 3; t++) {
        double s = 0;
        for (int k = 0; k < 6; k++) s += lx_f32(xc)[t * 2 + k];
        ok &= fabs(lx_f32(y)[t] - 0.5 * s) <= 1e-6;
    }
    CHECK(ok);
    lx_tree_release(vars);
    linen_module_release(cv);

    /* The norms with bfloat16 ones/zeros params give exactly the float32-param output. */
    const linen_type *norms[] = {&linen_LayerNorm, &linen_RMSNorm, &linen_BatchNorm};
    for (int i = 0; i < 3; i++) {
        lx_call cb = i == 2 ? LX_CALL_KWARGS(LX_KW("param_dtype", BF16), LX_KW_BOOL("use_running_average", false))
                            : LX_CALL_KWARGS(LX_KW("param_dtype", BF16));
        lx_call cf = i == 2 ? LX_CALL_KWARGS(LX_KW_BOOL("use_running_average", false)) : LX_NO_CALL;
        linen_module *mb = make(norms[i], cb), *mf = make(norms[i], cf);
        lx_tree *vb, *vf;
        lx_status sb, sf;
        lx_array *yb = run_init(mb, x, &vb, &sb), *yf = run_init(mf, x, &vf, &sf);
        lx_test_current = norms[i]->name;
        CHECK(sb == LX_OK && sf == LX_OK && same_values(yb, yf));
        CHECK(leaf(vb, "params/scale") && leaf(vb, "params/scale")->dtype == LX_BF16);
        if (i == 2) CHECK(leaf(vb, "batch_stats/mean") && leaf(vb, "batch_stats/mean")->dtype == LX_F32);
        lx_tree_release(vb);
        lx_tree_release(vf);
        linen_module_release(mb);
        linen_module_release(mf);
    }
    lx_test_current = NULL;

    /* dtype='float32' casts everything to float32 too */
    linen_module *d32 = make(&linen_Dense, LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW("dtype", lx_str_v("float32")),
                                                          LX_KW("param_dtype", BF16), LX_KW("kernel_init", INIT(&c05))));
    y = run_init(d32, x, &vars, &st);
    CHECK(st == LX_OK && y && y->dtype == LX_F32);
    lx_tree_release(vars);

    /* bfloat16 input with bfloat16 params: promote_dtype gives bfloat16, which linnx cannot compute */
    lx_array *xb = lx_cast(x, LX_BF16);
    d = make(&linen_Dense, LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW("param_dtype", BF16), LX_KW("kernel_init", INIT(&c05))));
    y = run_init(d, xb, &vars, &st);
    CHECK(st == LX_ERR_UNSUPPORTED && !y);
    CHECK_ERROR_HAS("Dense: the computation dtype bfloat16 (promoted from bfloat16, bfloat16, bfloat16) is not supported");
    lx_tree_release(vars);
    /* ... but with dtype=float32 it runs (everything cast to float32) */
    y = run_init(d32, xb, &vars, &st);
    CHECK(st == LX_OK && y && y->dtype == LX_F32);
    lx_tree_release(vars);
    linen_module_release(d32);
    linen_module_release(d);
}

/* The Linen twin of the bfloat16 gradient check: jax.grad through apply reaches the bfloat16
 * kernel as a bfloat16 gradient, d sum(x @ k) / d k[i][j] = sum over rows of x[:, i]. */
static linen_module *grad_m;
static lx_array *grad_x;
static lx_status linen_sum_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)user, (void)aux;
    lx_tree *v = lx_tree_new();
    lx_status st = v ? lx_tree_set(v, "params", lx_tree_v((lx_tree *)params)) : LX_ERR_NO_MEMORY;
    lx_value out = lx_none();
    if (st == LX_OK) st = linen_apply(grad_m, v, &LX_ARGS(grad_x), LINEN_NO_RNGS, NULL, &out, NULL);
    lx_tree_release(v);
    if (st != LX_OK) return st;
    *loss = out.kind == LX_V_ARRAY ? lx_sum(out.u.array, LX_ALL_AXES, false) : NULL;
    lx_value_free(&out);
    return *loss ? LX_OK : lx_last_status();
}

static void test_linen_bf16_grad(void) {
    grad_m = make(&linen_Dense, LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW("param_dtype", BF16),
                                               LX_KW("kernel_init", INIT(&c05))));
    grad_x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){3, 4}, (float[]){1, 2, 3, 4, -1, 0, 5, 2, 2, 2, -3, 1}));
    lx_tree *vars = NULL, *grads = NULL;
    lx_array *value = NULL;
    CHECK(linen_init(grad_m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(grad_x), NULL, &vars) == LX_OK);
    CHECK(vars && linen_value_and_grad(linen_sum_loss, NULL, lx_tree_get(vars, "params")->u.tree, &value, &grads, NULL) == LX_OK);
    lx_array *gk = leaf(grads, "kernel"), *gb = leaf(grads, "bias");
    CHECK(gk && gk->dtype == LX_BF16 && gb && gb->dtype == LX_BF16);
    if (gk && gk->dtype == LX_BF16) {
        lx_array *f = lx_cast(gk, LX_F32);
        const float colsum[4] = {2, 4, 5, 7};
        bool ok = true;
        for (int i = 0; i < 12; i++) ok &= lx_f32(f)[i] == colsum[i / 3];
        CHECK(ok);
    }
    CHECK(value && fabsf(lx_f32(value)[0] - 27.0f) < 1e-5f);
    lx_release(value);
    lx_tree_release(grads);
    lx_tree_release(vars);
    linen_module_release(grad_m);
}

/* Through the bridge: to_linen(nnx.Linear, param_dtype=bfloat16) keeps bfloat16 params and
 * computes like its float32 twin (ones are exact in bfloat16). */
static void test_bridge_bf16(void) {
    lx_array *x = xsin(2, (int64_t[]){2, 4});
    linen_module *mb = NULL, *mf = NULL;
    lx_call cb = LX_CALL_KWARGS(LX_KW_INT("in_features", 4), LX_KW_INT("out_features", 3), LX_KW("param_dtype", BF16),
                                LX_KW("kernel_init", INIT(&ones_i)));
    lx_call cf = LX_CALL_KWARGS(LX_KW_INT("in_features", 4), LX_KW_INT("out_features", 3), LX_KW("kernel_init", INIT(&ones_i)));
    CHECK(bridge_to_linen(&nnx_Linear, &cb, NULL, &mb) == LX_OK);
    CHECK(bridge_to_linen(&nnx_Linear, &cf, NULL, &mf) == LX_OK);
    lx_tree *vb, *vf;
    lx_status sb, sf;
    lx_array *yb = run_init(mb, x, &vb, &sb), *yf = run_init(mf, x, &vf, &sf);
    CHECK(sb == LX_OK && sf == LX_OK && same_values(yb, yf));
    CHECK(leaf(vb, "params/kernel") && leaf(vb, "params/kernel")->dtype == LX_BF16);
    lx_tree_release(vb);
    lx_tree_release(vf);
    linen_module_release(mb);
    linen_module_release(mf);
}

/* ------------------------------------------------------------ F5: integer inputs */
static void test_linen_int_inputs(void) {
    int64_t xs[] = {2, 4};
    lx_array *xf = lx_autorelease(lx_array_from_f32(2, xs, (float[]){1, -2, 3, 4, 0, 5, -6, 7}));
    lx_array *xi = lx_cast(xf, LX_I32);
    lx_call conv_call = LX_CALL_ARGS(lx_int_v(3), lx_ints_v(1, (int64_t[]){1}));
    struct {
        const linen_type *t;
        lx_call c;
    } cases[] = {{&linen_Dense, LX_CALL_ARGS(lx_int_v(3))}, {&linen_LayerNorm, LX_NO_CALL}, {&linen_RMSNorm, LX_NO_CALL},
                 {&linen_Conv, conv_call}};
    for (int i = 0; i < 4; i++) {
        lx_test_current = cases[i].t->name;
        linen_module *m = make(cases[i].t, cases[i].c);
        lx_tree *vi, *vf;
        lx_status si, sf;
        lx_array *yi = run_init(m, xi, &vi, &si), *yf = run_init(m, xf, &vf, &sf);
        /* the same key gives the same params: an int32 input computes as its float32 values */
        CHECK(si == LX_OK && sf == LX_OK && same_values(yi, yf));
        lx_tree_release(vi);
        lx_tree_release(vf);
        linen_module_release(m);
    }
    lx_test_current = NULL;
}

/* ------------------------------------------------------------ F6: MHA forwards param_dtype */
static void test_linen_mha_param_dtype(void) {
    int64_t xs[] = {1, 3, 4};
    lx_array *x = xsin(3, xs);
    linen_module *mb = make(&linen_MultiHeadDotProductAttention,
                            LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW("param_dtype", BF16), LX_KW("kernel_init", INIT(&ones_i))));
    linen_module *mf = make(&linen_MultiHeadDotProductAttention,
                            LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW("kernel_init", INIT(&ones_i))));
    lx_tree *vb, *vf;
    lx_status sb, sf;
    lx_array *yb = run_init(mb, x, &vb, &sb), *yf = run_init(mf, x, &vf, &sf);
    int n = 0;
    CHECK(sb == LX_OK && all_dtype(vb, LX_BF16, &n) && n == 8); /* query/key/value/out kernel and bias */
    CHECK(sf == LX_OK && all_dtype(vf, LX_F32, &n) && n == 8);
    CHECK(same_values(yb, yf));
    lx_tree_release(vb);
    lx_tree_release(vf);
    linen_module_release(mb);
    linen_module_release(mf);

    /* bfloat16 with lecun_normal: refused by name, not silently float32 */
    linen_module *ml = make(&linen_MultiHeadDotProductAttention, LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW("param_dtype", BF16)));
    lx_tree *vl;
    lx_status sl;
    CHECK(run_init(ml, x, &vl, &sl) == NULL && sl == LX_ERR_UNSUPPORTED);
    CHECK_ERROR_HAS("MultiHeadDotProductAttention: param_dtype=bfloat16 with the lecun_normal initializer is not supported");
    linen_module_release(ml);
}

/* ------------------------------------------------------------ F1: Conv's int kernel_size */
static void test_linen_conv_int_kernel_size(void) {
    linen_module *m = NULL;
    CHECK_FAILS(linen_module_new(&linen_Conv, &LX_CALL_ARGS(lx_int_v(2), lx_int_v(3)), &m), LX_ERR_TYPE,
                "Expected Conv kernel_size to be a tuple/list of integers (eg.: [3, 3]) but got 3.");
    CHECK(m == NULL);
    CHECK_FAILS(linen_module_new(&linen_Conv, &LX_CALL_KWARGS(LX_KW_INT("features", 2), LX_KW_INT("kernel_size", 5)), &m),
                LX_ERR_TYPE, "but got 5.");
    /* a 1-tuple is a 1-D kernel, as in Flax */
    m = make(&linen_Conv, LX_CALL_ARGS(lx_int_v(2), lx_ints_v(1, (int64_t[]){3})));
    lx_tree *vars;
    lx_status st;
    CHECK(run_init(m, xsin(3, (int64_t[]){1, 6, 4}), &vars, &st) && st == LX_OK);
    CHECK(lx_shape_eq(leaf(vars, "params/kernel"), 3, (int64_t[]){3, 4, 2}));
    lx_tree_release(vars);
    linen_module_release(m);
}

/* loss = sum(model(x)) */
static lx_status sum_loss(nnx_module *m, void *user, lx_array **loss) {
    *loss = lx_sum(nnx_call_array(m, user), LX_ALL_AXES, false);
    return *loss ? LX_OK : lx_last_status();
}

/* ------------------------------------------------------------ F3: RMSNorm over trailing axes */
/* y = x * rsqrt(mean(x^2 over the last `nr` axes) + 1e-6) * scale (scale over the last `ns` axes) */
static void rms_ref(const lx_array *x, int nr, const float *scale, int ns, double *out) {
    int64_t d = 1, f = 1;
    for (int i = x->ndim - nr; i < x->ndim; i++) d *= x->shape[i];
    for (int i = x->ndim - ns; i < x->ndim; i++) f *= x->shape[i];
    for (int64_t r = 0; r < x->size / d; r++) {
        double ms = 0;
        for (int64_t k = 0; k < d; k++) ms += (double)lx_f32(x)[r * d + k] * lx_f32(x)[r * d + k] / (double)d;
        double inv = 1.0 / sqrt(ms + 1e-6);
        for (int64_t k = 0; k < d; k++) out[r * d + k] = lx_f32(x)[r * d + k] * inv * (scale ? scale[k % f] : 1.0);
    }
}

static bool near_ref(const lx_array *y, const double *want, double tol) {
    if (!y || y->dtype != LX_F32) return false;
    for (int64_t i = 0; i < y->size; i++)
        if (!(fabs(lx_f32(y)[i] - want[i]) <= tol)) return false;
    return true;
}

static void test_rms_norm_axes(void) {
    int64_t xs[] = {2, 3, 4};
    lx_array *x = xsin(3, xs);
    double want[24];
    rms_ref(x, 2, NULL, 1, want);
    /* the audit's numpy reference: x * rsqrt(mean(x**2, axis=(1, 2)) + 1e-6), first values */
    CHECK(fabs(want[0] - 0.14841243) < 1e-7 && fabs(want[3] - 1.39088747) < 1e-7);

    /* Linen: reduction_axes=(1, 2), feature_axes=-1: scale (4,) */
    linen_module *m = make(&linen_RMSNorm, LX_CALL_KWARGS(LX_KW("reduction_axes", lx_ints_v(2, (int64_t[]){1, 2}))));
    lx_tree *vars;
    lx_status st;
    lx_array *y = run_init(m, x, &vars, &st);
    CHECK(st == LX_OK && lx_shape_eq(leaf(vars, "params/scale"), 1, (int64_t[]){4}));
    CHECK(near_ref(y, want, 2e-6));
    /* a non-trivial scale broadcasts over the feature axis */
    float sc[4] = {1, -2, 0.5f, 3};
    if (leaf(vars, "params/scale")) memcpy(lx_f32(leaf(vars, "params/scale")), sc, sizeof sc);
    lx_value out = lx_none();
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, &LX_ARGS(x), NULL, &out, NULL) == LX_OK);
    rms_ref(x, 2, sc, 1, want);
    CHECK(out.kind == LX_V_ARRAY && near_ref(out.u.array, want, 4e-6));
    lx_value_free(&out);
    lx_tree_release(vars);
    linen_module_release(m);

    /* feature_axes=(1, 2) too: scale (3, 4); negative axes */
    m = make(&linen_RMSNorm, LX_CALL_KWARGS(LX_KW("reduction_axes", lx_ints_v(2, (int64_t[]){-2, -1})),
                                           LX_KW("feature_axes", lx_ints_v(2, (int64_t[]){1, 2}))));
    y = run_init(m, x, &vars, &st);
    CHECK(st == LX_OK && lx_shape_eq(leaf(vars, "params/scale"), 2, (int64_t[]){3, 4}));
    rms_ref(x, 2, NULL, 1, want);
    CHECK(near_ref(y, want, 2e-6));
    lx_tree_release(vars);
    linen_module_release(m);

    /* all three axes */
    m = make(&linen_RMSNorm, LX_CALL_KWARGS(LX_KW("reduction_axes", lx_ints_v(3, (int64_t[]){0, 1, 2}))));
    y = run_init(m, x, &vars, &st);
    rms_ref(x, 3, NULL, 1, want);
    CHECK(st == LX_OK && near_ref(y, want, 2e-6));
    lx_tree_release(vars);
    linen_module_release(m);

    /* non-trailing reduction axes stay refused, as for LayerNorm */
    m = make(&linen_RMSNorm, LX_CALL_KWARGS(LX_KW("reduction_axes", lx_ints_v(1, (int64_t[]){1}))));
    CHECK(run_init(m, x, &vars, &st) == NULL && st == LX_ERR_UNSUPPORTED);
    CHECK_ERROR_HAS("RMSNorm: only trailing axes");
    linen_module_release(m);

    /* NNX: RMSNorm(num_features=4, reduction_axes=(1, 2)) */
    nnx_rngs *r = NULL;
    CHECK(nnx_rngs_from_seed(0, &r) == LX_OK);
    nnx_module *nm = NULL;
    CHECK(nnx_module_new(&nnx_RMSNorm, &LX_CALL_KWARGS(LX_KW_INT("num_features", 4),
                                                       LX_KW("reduction_axes", lx_ints_v(2, (int64_t[]){1, 2}))),
                         r, &nm) == LX_OK);
    lx_array *ny = nnx_call_array(nm, x);
    rms_ref(x, 2, NULL, 1, want);
    CHECK(near_ref(ny, want, 2e-6));
    /* the scale's gradient through the broadcast: d sum(y) / d scale_j = the sum of the unscaled
     * outputs at feature j (want holds them: scale 1) */
    lx_tree *grads = NULL;
    CHECK(nnx_grad(nm, NULL, sum_loss, x, &grads) == LX_OK);
    const lx_value *gv = grads ? lx_tree_find(grads, "scale") : NULL;
    lx_array *g = gv && gv->kind == LX_V_VARIABLE ? lx_variable_get_value(gv->u.var) : NULL;
    CHECK(g && lx_shape_eq(g, 1, (int64_t[]){4}));
    for (int j = 0; g && j < 4; j++) {
        double gw = 0;
        for (int k = j; k < 24; k += 4) gw += want[k];
        CHECK_NEAR(lx_f32(g)[j], gw, 1e-5);
    }
    lx_tree_release(grads);
    nnx_module_release(nm);
    nnx_rngs_release(r);
}

static lx_array *grad_of(const lx_tree *g, const char *path) {
    const lx_value *v = g ? lx_tree_find(g, path) : NULL;
    return v && v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var) : NULL;
}

static void test_nnx_promotion(void) {
    nnx_rngs *r = NULL;
    CHECK(nnx_rngs_from_seed(0, &r) == LX_OK);
    int64_t xs[] = {2, 5, 5, 4};
    lx_array *x = xsin(4, xs);
    /* Linear(4, 3, param_dtype=bfloat16, kernel_init=constant(0.5)) */
    nnx_module *lin = NULL;
    CHECK(nnx_module_new(&nnx_Linear, &LX_CALL_KWARGS(LX_KW_INT("in_features", 4), LX_KW_INT("out_features", 3),
                                                      LX_KW("param_dtype", BF16), LX_KW("kernel_init", INIT(&c05))),
                         r, &lin) == LX_OK);
    lx_array *y = nnx_call_array(lin, x);
    CHECK(y && y->dtype == LX_F32);
    bool ok = y != NULL;
    for (int64_t row = 0; ok && row < 50; row++) {
        double s = 0;
        for (int i = 0; i < 4; i++) s += lx_f32(x)[row * 4 + i];
        ok &= fabs(lx_f32(y)[row * 3 + 2] - 0.5 * s) <= 1e-6;
    }
    CHECK(ok);

    /* The gradient reaches the bfloat16 kernel through the cast, as a bfloat16 gradient:
     * d sum(x @ k + b) / d k[i][j] = sum over rows of x[:, i]; d / d b[j] = rows. Integer inputs
     * keep every value exact in bfloat16. */
    int64_t gs[] = {3, 4};
    lx_array *xg = lx_autorelease(lx_array_from_f32(2, gs, (float[]){1, 2, 3, 4, -1, 0, 5, 2, 2, 2, -3, 1}));
    lx_tree *grads = NULL;
    lx_array *value = NULL;
    CHECK(nnx_value_and_grad(lin, NULL, sum_loss, xg, &value, &grads) == LX_OK);
    lx_array *gk = grad_of(grads, "kernel"), *gb = grad_of(grads, "bias");
    CHECK(gk && gk->dtype == LX_BF16 && lx_shape_eq(gk, 2, (int64_t[]){4, 3}));
    CHECK(gb && gb->dtype == LX_BF16);
    if (gk && gk->dtype == LX_BF16 && gb) {
        lx_array *gkf = lx_cast(gk, LX_F32), *gbf = lx_cast(gb, LX_F32);
        const float colsum[4] = {2, 4, 5, 7};
        bool gok = true;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++) gok &= lx_f32(gkf)[i * 3 + j] == colsum[i];
        for (int j = 0; j < 3; j++) gok &= lx_f32(gbf)[j] == 3.0f;
        CHECK(gok);
    }
    /* value: 0.5 * sum(x) * 3 features = 0.5 * 18 * 3 */
    CHECK(value && fabsf(lx_f32(value)[0] - 27.0f) < 1e-5f);
    lx_release(value);
    lx_tree_release(grads);

    /* int32 input with float32 params: promoted to float32 */
    nnx_module *l32 = NULL;
    CHECK(nnx_module_new(&nnx_Linear, &LX_CALL_ARGS(lx_int_v(4), lx_int_v(3)), r, &l32) == LX_OK);
    CHECK(same_values(nnx_call_array(l32, lx_cast(xg, LX_I32)), nnx_call_array(l32, xg)));
    nnx_module_release(l32);
    /* bfloat16 or int32 inputs with bfloat16 params: jnp.result_type is bfloat16 (an integer
     * promotes to the float it meets), which linnx cannot compute */
    CHECK_NULL_FAILS(nnx_call_array(lin, lx_cast(xg, LX_BF16)), LX_ERR_UNSUPPORTED,
                     "Linear: the computation dtype bfloat16 (promoted from bfloat16, bfloat16, bfloat16)");
    CHECK_NULL_FAILS(nnx_call_array(lin, lx_cast(xg, LX_I32)), LX_ERR_UNSUPPORTED,
                     "Linear: the computation dtype bfloat16 (promoted from int32, bfloat16, bfloat16)");
    nnx_module_release(lin);

    /* the norms: bfloat16 ones/zeros params give the float32 output; BatchNorm's statistics are
     * float32 whatever param_dtype is (jnp.zeros(feature_shape, jnp.float32)) */
    const nnx_type *types[] = {&nnx_LayerNorm, &nnx_RMSNorm, &nnx_BatchNorm};
    for (int i = 0; i < 3; i++) {
        lx_test_current = types[i]->name;
        nnx_module *mb = NULL, *mf = NULL;
        CHECK(nnx_module_new(types[i], &LX_CALL_KWARGS(LX_KW_INT("num_features", 4), LX_KW("param_dtype", BF16)), r, &mb) == LX_OK);
        CHECK(nnx_module_new(types[i], &LX_CALL_KWARGS(LX_KW_INT("num_features", 4)), r, &mf) == LX_OK);
        lx_array *yb = nnx_call_array(mb, x), *yf2 = nnx_call_array(mf, x);
        CHECK(same_values(yb, yf2));
        lx_array *yint = nnx_call_array(mf, lx_cast(xg, LX_I32)), *yflt = nnx_call_array(mf, xg);
        CHECK(same_values(yint, yflt));
        if (i == 2) {
            lx_value mean = lx_none();
            CHECK(nnx_getattr(mb, "mean", &mean) == LX_OK && mean.kind == LX_V_VARIABLE &&
                  lx_variable_get_value(mean.u.var)->dtype == LX_F32);
        }
        nnx_module_release(mb);
        nnx_module_release(mf);
    }
    lx_test_current = NULL;

    /* MultiHeadAttention with bfloat16 ones kernels runs in float32 */
    nnx_module *mha = NULL, *mha32 = NULL;
    CHECK(nnx_module_new(&nnx_MultiHeadAttention,
                         &LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW_INT("in_features", 4), LX_KW("param_dtype", BF16),
                                         LX_KW("kernel_init", INIT(&ones_i)), LX_KW_BOOL("decode", false)),
                         r, &mha) == LX_OK);
    CHECK(nnx_module_new(&nnx_MultiHeadAttention,
                         &LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW_INT("in_features", 4),
                                         LX_KW("kernel_init", INIT(&ones_i)), LX_KW_BOOL("decode", false)),
                         r, &mha32) == LX_OK);
    lx_array *xa = xsin(3, (int64_t[]){1, 3, 4});
    CHECK(same_values(nnx_call_array(mha, xa), nnx_call_array(mha32, xa)));
    nnx_module_release(mha);
    nnx_module_release(mha32);
    nnx_rngs_release(r);
}

/* The norm ops name a parameter's dtype mismatch as a dtype, not as a shape. */
static void test_norm_op_dtype_message(void) {
    lx_array *x = xsin(2, (int64_t[]){2, 4});
    lx_array *s = lx_cast(lx_autorelease(lx_array_full_f32(1, (int64_t[]){4}, 1.0f)), LX_BF16);
    CHECK_NULL_FAILS(lx_layer_norm(x, s, NULL, 1e-6f, 0, NULL), LX_ERR_DTYPE,
                     "layer_norm: scale must have the input's dtype float32, got dtype bfloat16 (shape (4,))");
    CHECK_NULL_FAILS(lx_rms_norm(x, s, 1e-6f), LX_ERR_DTYPE, "rms_norm: scale must have the input's dtype float32, got dtype bfloat16");
}

/* ------------------------------------------------------------ F2: reference cycles */
static void test_setattr_cycles(void) {
    int64_t before = lx_array_live_count();
    nnx_rngs *r = NULL;
    CHECK(nnx_rngs_from_seed(0, &r) == LX_OK);
    nnx_module *lin = NULL, *seq = NULL, *outer = NULL, *other = NULL;
    CHECK(nnx_module_new(&nnx_Linear, &LX_CALL_ARGS(lx_int_v(4), lx_int_v(3)), r, &lin) == LX_OK);
    CHECK(nnx_module_new(&nnx_Sequential, &LX_CALL_ARGS(nnx_module_v(lin)), NULL, &seq) == LX_OK);
    CHECK(nnx_module_new(&nnx_Sequential, &LX_CALL_ARGS(nnx_module_v(seq)), NULL, &outer) == LX_OK);
    CHECK(nnx_module_new(&nnx_Linear, &LX_CALL_ARGS(lx_int_v(3), lx_int_v(3)), r, &other) == LX_OK);

    lx_value v = nnx_module_v(seq);
    CHECK_FAILS(nnx_setattr(lin, "parent", &v), LX_ERR_INVALID_ARGUMENT, "Linear.parent: a module cannot contain itself");
    v = nnx_module_v(outer); /* two levels down */
    CHECK_FAILS(nnx_setattr(lin, "grandparent", &v), LX_ERR_INVALID_ARGUMENT, "a module cannot contain itself");
    lx_tree *t = lx_tree_new(); /* inside a tree */
    CHECK(lx_tree_set(t, "up", nnx_module_v(seq)) == LX_OK);
    v = lx_tree_v(t);
    CHECK_FAILS(nnx_setattr(lin, "refs", &v), LX_ERR_INVALID_ARGUMENT, "a module cannot contain itself");
    lx_tree_release(t);
    v = nnx_module_v(lin); /* the direct case keeps its message */
    CHECK_FAILS(nnx_setattr(lin, "me", &v), LX_ERR_INVALID_ARGUMENT, "Linear.me: a module cannot contain itself");
    CHECK_EQ_INT(nnx_attr_count(lin), 0);
    /* sharing without a cycle is fine: another module may hold seq (and lin through it) */
    v = nnx_module_v(seq);
    CHECK(nnx_setattr(other, "shared", &v) == LX_OK);
    v = nnx_module_v(lin);
    CHECK(nnx_setattr(other, "lin_too", &v) == LX_OK);
    /* ... but seq may not hold other now: other -> seq -> other */
    v = nnx_module_v(other);
    CHECK_FAILS(nnx_setattr(seq, "back", &v), LX_ERR_INVALID_ARGUMENT, "Sequential.back: a module cannot contain itself");
    CHECK_FAILS(nnx_setattr(lin, "back", &v), LX_ERR_INVALID_ARGUMENT, "a module cannot contain itself");

    nnx_module_release(outer);
    nnx_module_release(seq);
    nnx_module_release(lin);
    nnx_module_release(other);
    nnx_rngs_release(r);
    lx_pool_drain();
    CHECK_EQ_INT(lx_array_live_count(), before); /* nothing leaked: no cycle was made */
}

int main(void) {
    c05 = lx_init_constant(0.5);
    zeros_i = lx_init_zeros();
    ones_i = lx_init_ones();
    RUN(test_linen_bf16_params);
    RUN(test_linen_bf16_grad);
    RUN(test_bridge_bf16);
    RUN(test_linen_int_inputs);
    RUN(test_linen_mha_param_dtype);
    RUN(test_linen_conv_int_kernel_size);
    RUN(test_rms_norm_axes);
    RUN(test_nnx_promotion);
    RUN(test_norm_op_dtype_message);
    RUN(test_setattr_cycles);
    return lx_test_finish();
}
