/* flax.linen.Sequential and the activation functions (jax.nn), plus the layer table by name.
 *
 * Sequential's layers are a dataclass field holding a list, so Flax binds them as `layers_<i>`
 * by list index; a plain function (nn.relu) in the list is called as is and takes no name, while
 * the index still counts. */
#include <stdio.h>
#include <string.h>

#include "layers_internal.h"
#include "linnx/primitive.h"
#include "linnx/nn.h"
#include "linnx/ops.h"

/* ---------------------------------------------------------------- Sequential */
static lx_status seq_bind(const linen_type *type, void *cfgp, const lx_call *c) {
    (void)type;
    linen_sequential_config *cfg = cfgp;
    if (c->nkwargs > 0)
        return lx_fail(LX_ERR_TYPE, "Sequential.__init__() got an unexpected keyword argument '%s'", c->kwargs[0].name);
    if (c->nargs > LINEN_SEQUENTIAL_MAX)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Sequential: at most %d layers", LINEN_SEQUENTIAL_MAX);
    for (int i = 0; i < c->nargs; i++) {
        const lx_value *v = &c->args[i];
        if (v->kind != LX_V_PTR || !v->u.ptr.p || !v->u.ptr.tag || strcmp(v->u.ptr.tag, "linen_module") != 0)
            return lx_fail(LX_ERR_TYPE, "Sequential: layer %d must be a Module or function, got %s", i, lx_kind_name(v->kind));
    }
    for (int i = 0; i < c->nargs; i++) cfg->layers[i] = linen_module_retain(c->args[i].u.ptr.p);
    cfg->n = c->nargs;
    return LX_OK;
}

static void seq_release(void *cfgp) {
    linen_sequential_config *cfg = cfgp;
    for (int i = 0; i < cfg->n; i++) linen_module_release(cfg->layers[i]);
    cfg->n = 0;
}

/* A copied config holds the source's layer pointers: take a reference to each. */
static lx_status seq_retain(void *cfgp) {
    linen_sequential_config *cfg = cfgp;
    for (int i = 0; i < cfg->n; i++) linen_module_retain(cfg->layers[i]);
    return LX_OK;
}

static lx_status seq_setup(linen_scope *s) {
    const linen_sequential_config *cfg = linen_config(s);
    char name[32];
    for (int i = 0; i < cfg->n; i++) {
        if (linen_module_type(cfg->layers[i])->flags & LINEN_TYPE_FUNCTION) continue;
        snprintf(name, sizeof name, "layers_%d", i);
        LX_TRY(linen_setup_child(s, name, cfg->layers[i]));
    }
    return LX_OK;
}

static lx_status seq_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_sequential_config *cfg = linen_config(s);
    if (cfg->n == 0) {
        const char *n = linen_module_name(linen_self(s));
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Empty Sequential module %s.", n ? n : "None");
    }
    lx_value cur = lx_none();
    char name[32];
    for (int i = 0; i < cfg->n; i++) {
        lx_value next = lx_none();
        lx_value arg[1];
        lx_call one;
        const lx_call *call = c;
        if (i > 0) {
            if (cur.kind != LX_V_ARRAY) {
                lx_value_free(&cur);
                return lx_fail(LX_ERR_TYPE, "Sequential: layer %d returned a %s; only arrays are passed on", i - 1,
                               lx_kind_name(cur.kind));
            }
            arg[0] = cur;
            one = (lx_call){1, arg, 0, NULL};
            call = &one;
        }
        lx_status st;
        if (linen_module_type(cfg->layers[i])->flags & LINEN_TYPE_FUNCTION) {
            st = linen_call_child(s, cfg->layers[i], NULL, NULL, call, &next);
        } else {
            snprintf(name, sizeof name, "layers_%d", i);
            st = linen_call_attr(s, name, NULL, call, &next);
        }
        lx_value_free(&cur);
        if (st != LX_OK) return st;
        cur = next;
    }
    *out = cur;
    return LX_OK;
}

static const linen_method SEQ_METHODS[] = {LINEN_METHOD("__call__", seq_call)};
const linen_type linen_Sequential = {
    .name = "Sequential", .config_size = sizeof(linen_sequential_config), .methods = SEQ_METHODS,
    .nmethods = LX_COUNT(SEQ_METHODS), .setup = seq_setup, .config_retain = seq_retain, .config_release = seq_release, .bind = seq_bind,
};

lx_status linen_sequential_new(int n, linen_module *const *layers, linen_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_sequential_new: out is NULL");
    *out = NULL;
    if (n < 0 || (n > 0 && !layers)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_sequential_new: bad layers");
    if (n > LINEN_SEQUENTIAL_MAX) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Sequential: at most %d layers", LINEN_SEQUENTIAL_MAX);
    lx_value args[LINEN_SEQUENTIAL_MAX];
    for (int i = 0; i < n; i++) args[i] = linen_module_v(layers[i]);
    lx_call c = {n, args, 0, NULL};
    return linen_module_new(&linen_Sequential, &c, out);
}

/* ---------------------------------------------------------------- activations */
/* jax.nn.relu6: clip(x, 0, 6) with its custom_jvp's gradient, 0 at both kinks (the clip
 * primitive's zero_grad_at_bounds; jnp.clip's chain would give 1/2 there). */
lx_array *linen_relu6_fn(lx_array *x) {
    const lx_clip_params p = {0.0f, 6.0f, 1};
    return lx_bind(LX_PRIM_CLIP, &p, 1, &x);
}

lx_array *linen_leaky_relu_fn(lx_array *x, float negative_slope) {
    if (!x) return NULL;
    return lx_where(lx_ge(x, lx_scalar(0.0f)), x, lx_mul_scalar(x, negative_slope));
}

static const lx_field GELU_FIELDS[] = {LX_FIELD_BOOL(linen_activation_config, approximate, true)};
static const lx_field LEAKY_FIELDS[] = {LX_FIELD_FLOAT(linen_activation_config, negative_slope, 0.01)};
static const lx_field AXIS_FIELDS[] = {LX_FIELD_INT(linen_activation_config, axis, -1)};

#define ACT_FN(fname, expr)                                                        \
    static lx_array *fname(linen_scope *s, lx_array *x) {                          \
        const linen_activation_config *cfg = linen_config(s);                      \
        (void)cfg;                                                                 \
        return expr;                                                               \
    }
ACT_FN(act_relu, lx_relu(x))
ACT_FN(act_relu6, linen_relu6_fn(x))
ACT_FN(act_gelu, lx_gelu(x, cfg->approximate))
ACT_FN(act_silu, lx_silu(x))
ACT_FN(act_sigmoid, lx_sigmoid(x))
ACT_FN(act_tanh, lx_tanh(x))
ACT_FN(act_softplus, lx_softplus(x))
ACT_FN(act_leaky, linen_leaky_relu_fn(x, (float)cfg->negative_slope))
ACT_FN(act_softmax, lx_softmax(x, (int)cfg->axis))
ACT_FN(act_log_softmax, lx_log_softmax(x, (int)cfg->axis))

#define ACT_TYPE(var, pyname, fn_, flds_, nf_)                                                      \
    static const linen_method var##_METHODS[] = {LINEN_ARRAY_METHOD("__call__", fn_)};              \
    const linen_type var = {.name = pyname, .config_size = sizeof(linen_activation_config),        \
                            .config = flds_, .nconfig = nf_, .methods = var##_METHODS, .nmethods = LX_COUNT(var##_METHODS), \
                            .flags = LINEN_TYPE_FUNCTION};
ACT_TYPE(linen_relu, "relu", act_relu, NULL, 0)
ACT_TYPE(linen_relu6, "relu6", act_relu6, NULL, 0)
ACT_TYPE(linen_gelu, "gelu", act_gelu, GELU_FIELDS, 1)
ACT_TYPE(linen_silu, "silu", act_silu, NULL, 0)
ACT_TYPE(linen_swish, "swish", act_silu, NULL, 0)
ACT_TYPE(linen_sigmoid, "sigmoid", act_sigmoid, NULL, 0)
ACT_TYPE(linen_tanh, "tanh", act_tanh, NULL, 0)
ACT_TYPE(linen_softplus, "softplus", act_softplus, NULL, 0)
ACT_TYPE(linen_leaky_relu, "leaky_relu", act_leaky, LEAKY_FIELDS, 1)
ACT_TYPE(linen_softmax, "softmax", act_softmax, AXIS_FIELDS, 1)
ACT_TYPE(linen_log_softmax, "log_softmax", act_log_softmax, AXIS_FIELDS, 1)

/* ---------------------------------------------------------------- by name */
const linen_type *linen_layer_type(const char *name) {
    static const struct { const char *name; const linen_type *type; } table[] = {
        {"Dense", &linen_Dense}, {"DenseGeneral", &linen_DenseGeneral}, {"Conv", &linen_Conv},
        {"Embed", &linen_Embed}, {"LayerNorm", &linen_LayerNorm}, {"RMSNorm", &linen_RMSNorm},
        {"BatchNorm", &linen_BatchNorm}, {"Dropout", &linen_Dropout},
        {"MultiHeadDotProductAttention", &linen_MultiHeadDotProductAttention},
        {"MultiHeadAttention", &linen_MultiHeadDotProductAttention}, {"Sequential", &linen_Sequential},
        {"relu", &linen_relu}, {"relu6", &linen_relu6}, {"gelu", &linen_gelu}, {"silu", &linen_silu},
        {"swish", &linen_swish}, {"sigmoid", &linen_sigmoid}, {"tanh", &linen_tanh},
        {"softplus", &linen_softplus}, {"leaky_relu", &linen_leaky_relu}, {"softmax", &linen_softmax},
        {"log_softmax", &linen_log_softmax},
    };
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0) return table[i].type;
    return NULL;
}
