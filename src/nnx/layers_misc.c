/* flax.nnx Dropout, MultiHeadAttention and Sequential (stochastic.py, attention.py, helpers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/dropout.h"
#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/nnx_layers.h"
#include "linnx/ops.h"
#include "linnx/to_nnx.h"
#include "nnx_internal.h"
#include "../core/signature.h"
#include "../core/status_internal.h"

/* ------------------------------------------------------------------ Dropout */

static const lx_field DROPOUT_CONFIG[] = {
    LX_FIELD_(nnx_dropout_config, rate, LX_FIELD_FLOAT, true, LX_VAL_NONE),
    LX_FIELD_INTS(nnx_dropout_config, broadcast_dims),
    LX_FIELD_BOOL(nnx_dropout_config, deterministic, false),
    LX_FIELD_STR(nnx_dropout_config, rng_collection, "dropout"),
};

static lx_status dropout_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_dropout *m = (nnx_dropout *)self;
    if (!(m->cfg.rate >= 0.0 && m->cfg.rate <= 1.0))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Dropout: rate must be in [0, 1], got %g", m->cfg.rate);
    /* Flax keeps rngs[rng_collection].fork() (falling back to 'default'), one draw now. */
    if (rngs) LX_TRY(nnx_rngs_fork_stream(rngs, m->cfg.rng_collection, &m->rngs));
    return LX_OK;
}

static lx_array *dropout_forward_impl(nnx_dropout *m, lx_array *x, int deterministic, nnx_rngs *rngs) {
    if (!m || !x) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "Dropout: module is NULL");
        return NULL;
    }
    bool det = deterministic < 0 ? m->cfg.deterministic : deterministic != 0;
    if (m->cfg.rate == 0.0 || det) return x;
    /* rate 1 zeroes without consuming a key (Flax returns zeros_like before drawing). */
    if (m->cfg.rate == 1.0) return lx_dropout(x, 1.0, (lx_key){{0, 0}}, 0, NULL, false);
    lx_key key;
    lx_status s;
    if (rngs) s = nnx_rngs_draw(rngs, m->cfg.rng_collection, &key);
    else if (m->rngs) s = nnx_rngs_stream_draw(m->rngs, &key);
    else
        s = lx_fail(LX_ERR_RNG, "`deterministic` is False, but no `rngs` argument was provided to Dropout as "
                                "either a __call__ argument or class attribute.");
    if (s != LX_OK) return NULL;
    /* The same op as linen.Dropout: keep_prob = 1 - rate in double, bernoulli mask, x / keep_prob. */
    return lx_dropout(x, m->cfg.rate, key, m->cfg.broadcast_dims.n, m->cfg.broadcast_dims.v, false);
}

lx_array *nnx_dropout_forward(nnx_dropout *m, lx_array *x, int deterministic, nnx_rngs *rngs) {
    NNX_FRAMED_FORWARD(m, dropout_forward_impl(m, x, deterministic, rngs));
}

static lx_status opt_bool(const lx_call *c, int pos, const char *name, int *out) {
    const lx_value *v = lx_call_get(c, pos, name);
    *out = -1;
    if (!v || v->kind == LX_V_NONE) return LX_OK;
    if (v->kind != LX_V_BOOL) return lx_fail(LX_ERR_TYPE, "argument '%s' must be a bool or None, got %s", name, lx_kind_name(v->kind));
    *out = v->u.b ? 1 : 0;
    return LX_OK;
}

static lx_status opt_rngs(const lx_call *c, nnx_rngs **out) {
    const lx_value *v = lx_call_kwarg(c, "rngs");
    *out = NULL;
    if (!v || v->kind == LX_V_NONE) return LX_OK;
    nnx_module *r = nnx_module_from_value(v);
    if (!r || r->type != &nnx_Rngs) return lx_fail(LX_ERR_TYPE, "argument 'rngs' must be an Rngs");
    *out = (nnx_rngs *)r;
    return LX_OK;
}

static lx_status dropout_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    int det;
    nnx_rngs *r;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    LX_TRY(opt_bool(c, 99, "deterministic", &det));
    LX_TRY(opt_rngs(c, &r));
    return nnx_return_array(out, nnx_dropout_forward((nnx_dropout *)self, x, det, r));
}

static const nnx_field DROPOUT_FIELDS[] = {NNX_CHILD(nnx_dropout, rngs)};
static const nnx_method DROPOUT_METHODS[] = {NNX_METHOD("__call__", dropout_call)};

const nnx_type nnx_Dropout = {
    .name = "Dropout", .size = sizeof(nnx_dropout), .fields = DROPOUT_FIELDS, .nfields = LX_COUNT(DROPOUT_FIELDS),
    .config = DROPOUT_CONFIG, .nconfig = LX_COUNT(DROPOUT_CONFIG), .config_offset = offsetof(nnx_dropout, cfg),
    .methods = DROPOUT_METHODS, .nmethods = LX_COUNT(DROPOUT_METHODS), .init = dropout_init,
    .method_sigs = (const char *const[]){"inputs, *, deterministic=None, rngs=None"},
};

/* ------------------------------------------------------------------ MultiHeadAttention */

static const lx_field MHA_CONFIG[] = {
    LX_FIELD_REQUIRED_INT(nnx_mha_config, num_heads),
    LX_FIELD_REQUIRED_INT(nnx_mha_config, in_features),
    LX_FIELD_INT(nnx_mha_config, qkv_features, 0),
    LX_FIELD_INT(nnx_mha_config, out_features, 0),
    LX_FIELD_INT(nnx_mha_config, in_kv_features, 0),
    LX_FIELD_FLOAT(nnx_mha_config, dropout_rate, 0.0),
    LX_FIELD_VALUE(nnx_mha_config, deterministic),
    LX_FIELD_BOOL(nnx_mha_config, broadcast_dropout, true),
    LX_FIELD_BOOL(nnx_mha_config, use_bias, true),
    LX_FIELD_BOOL(nnx_mha_config, normalize_qk, false),
    LX_FIELD_BOOL(nnx_mha_config, keep_rngs, true),
    LX_FIELD_DTYPE(nnx_mha_config, param_dtype, "float32"),
    LX_FIELD_OBJ(nnx_mha_config, kernel_init, "initializer", &NNX_LECUN_NORMAL),
    LX_FIELD_OBJ(nnx_mha_config, bias_init, "initializer", &NNX_ZEROS),
    LX_FIELD_VALUE(nnx_mha_config, out_kernel_init),
    LX_FIELD_VALUE(nnx_mha_config, out_bias_init),
    LX_FIELD_VALUE(nnx_mha_config, decode),
};

static lx_status init_value(const lx_value *v, const lx_initializer *dflt, lx_value *out, const char *name) {
    if (v->kind == LX_V_NONE) {
        *out = lx_ptr_v("initializer", (void *)dflt);
        return LX_OK;
    }
    if (v->kind != LX_V_PTR || !v->u.ptr.tag || strcmp(v->u.ptr.tag, "initializer") != 0)
        return lx_fail(LX_ERR_TYPE, "MultiHeadAttention: %s must be an initializer or None", name);
    *out = *v;
    return LX_OK;
}

static lx_status mha_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_mha *m = (nnx_mha *)self;
    nnx_mha_config *c = &m->cfg;
    if (c->num_heads <= 0 || c->in_features <= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "MultiHeadAttention: num_heads and in_features must be positive");
    if (c->decode.kind != LX_V_NONE && c->decode.kind != LX_V_BOOL)
        return lx_fail(LX_ERR_TYPE, "MultiHeadAttention: decode must be a bool or None");
    if (c->deterministic.kind != LX_V_NONE && c->deterministic.kind != LX_V_BOOL)
        return lx_fail(LX_ERR_TYPE, "MultiHeadAttention: deterministic must be a bool or None");
    if (!c->qkv_features) c->qkv_features = c->in_features;
    if (!c->out_features) c->out_features = c->in_features;
    if (!c->in_kv_features) c->in_kv_features = c->in_features;
    if (c->qkv_features % c->num_heads)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Memory dimension (%lld) must be divisible by 'num_heads' heads (%lld).",
                       (long long)c->qkv_features, (long long)c->num_heads);
    int64_t hd[] = {c->num_heads, c->qkv_features / c->num_heads};
    lx_value kinit = lx_ptr_v("initializer", &c->kernel_init), binit = lx_ptr_v("initializer", &c->bias_init);
    lx_value okinit, obinit;
    LX_TRY(init_value(&c->out_kernel_init, &c->kernel_init, &okinit, "out_kernel_init"));
    LX_TRY(init_value(&c->out_bias_init, &c->bias_init, &obinit, "out_bias_init"));
    const char *dt = lx_dtype_name(c->param_dtype);
    int64_t ins[] = {c->in_features, c->in_kv_features, c->in_kv_features};
    nnx_module **qkv[] = {&m->query, &m->key, &m->value};
    for (int i = 0; i < 3; i++) {
        lx_call lc = LX_CALL_KWARGS(LX_KW("in_features", lx_ints_v(1, &ins[i])), LX_KW("out_features", lx_ints_v(2, hd)),
                                    LX_KW_BOOL("use_bias", c->use_bias), LX_KW_STR("param_dtype", dt),
                                    LX_KW("kernel_init", kinit), LX_KW("bias_init", binit));
        LX_TRY(nnx_module_new(&nnx_LinearGeneral, &lc, rngs, qkv[i]));
    }
    if (c->normalize_qk) {
        lx_call lc = LX_CALL_KWARGS(LX_KW_INT("num_features", hd[1]), LX_KW_BOOL("use_bias", false),
                                    LX_KW_STR("param_dtype", dt));
        LX_TRY(nnx_module_new(&nnx_LayerNorm, &lc, rngs, &m->query_ln));
        LX_TRY(nnx_module_new(&nnx_LayerNorm, &lc, rngs, &m->key_ln));
    }
    int64_t axes[] = {-2, -1};
    lx_call oc = LX_CALL_KWARGS(LX_KW("in_features", lx_ints_v(2, hd)), LX_KW("out_features", lx_ints_v(1, &c->out_features)),
                                LX_KW("axis", lx_ints_v(2, axes)), LX_KW_BOOL("use_bias", c->use_bias),
                                LX_KW_STR("param_dtype", dt), LX_KW("kernel_init", okinit), LX_KW("bias_init", obinit));
    LX_TRY(nnx_module_new(&nnx_LinearGeneral, &oc, rngs, &m->out));
    if (c->keep_rngs && c->dropout_rate > 0.0) {
        if (!rngs) return lx_fail(LX_ERR_TYPE, "MultiHeadAttention.__init__() missing 1 required keyword-only argument: 'rngs'");
        LX_TRY(nnx_rngs_fork_stream(rngs, "dropout", &m->rngs));
    }
    return LX_OK;
}

/* einsum('...hqk,...khd->...qhd', weights, value) */
static lx_array *weighted_values(lx_array *w, lx_array *v) {
    if (!w || !v) return NULL;
    int nb = w->ndim - 3; /* batch dims */
    int64_t lc[] = {w->ndim - 1}, rc[] = {v->ndim - 3};
    int64_t lb[LX_MAX_DIMS], rb[LX_MAX_DIMS];
    for (int i = 0; i < nb; i++) lb[i] = rb[i] = i;
    lb[nb] = nb;         /* h in weights */
    rb[nb] = v->ndim - 2; /* h in value */
    lx_array *o = lx_dot_general(w, v, 1, lc, rc, nb + 1, lb, rb); /* (batch..., h, q, d) */
    if (!o) return NULL;
    int64_t perm[LX_MAX_DIMS];
    for (int i = 0; i < nb; i++) perm[i] = i;
    perm[nb] = nb + 1;
    perm[nb + 1] = nb;
    perm[nb + 2] = nb + 2;
    return lx_transpose(o, nb + 3, perm);
}

/* The forward pass; with `weights` non-NULL the softmax weights (before dropout, where Flax's
 * dot_product_attention_weights sows them) are handed back too (pool-owned). */
static lx_array *mha_forward(nnx_mha *m, lx_array *q, lx_array *k, lx_array *v, lx_array *mask, int deterministic,
                             nnx_rngs *rngs, lx_array **weights) {
    if (!m || !q) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "MultiHeadAttention: module is NULL");
        return NULL;
    }
    const nnx_mha_config *c = &m->cfg;
    if (!k) {
        if (v) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "`inputs_k` cannot be None if `inputs_v` is not None. To have both "
                                             "`inputs_k` and `inputs_v` be the same value, pass in the value to "
                                             "`inputs_k` and leave `inputs_v` as None.");
            return NULL;
        }
        k = q;
    }
    if (!v) v = k;
    if (q->shape[q->ndim - 1] != c->in_features) {
        lx_fail(LX_ERR_SHAPE, "Incompatible input dimension, got %lld but module expects %lld.",
                (long long)q->shape[q->ndim - 1], (long long)c->in_features);
        return NULL;
    }
    lx_array *query = nnx_call_array(m->query, q);
    lx_array *key = nnx_call_array(m->key, k);
    lx_array *value = nnx_call_array(m->value, v);
    if (m->query_ln) {
        query = nnx_call_array(m->query_ln, query);
        key = nnx_call_array(m->key_ln, key);
    }
    bool dropout = false;
    if (c->dropout_rate > 0.0) {
        int det = deterministic;
        if (det < 0 && c->deterministic.kind == LX_V_BOOL) det = c->deterministic.u.b;
        if (det < 0) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "No `deterministic` argument was provided to MultiHeadAttention as either "
                                             "a __call__ argument, class attribute, or nnx.flag.");
            return NULL;
        }
        dropout = !det;
    }
    lx_array *x;
    if (!dropout && weights) {
        *weights = lx_dot_product_attention_weights(query, key, NULL, mask, false, 0.0f);
        x = *weights ? weighted_values(*weights, value) : NULL;
    } else if (!dropout) {
        x = lx_dot_product_attention(query, key, value, NULL, mask, false, 0.0f);
    } else {
        lx_key dk;
        lx_status s;
        if (rngs) s = nnx_rngs_draw(rngs, "dropout", &dk);
        else if (m->rngs) s = nnx_rngs_stream_draw(m->rngs, &dk);
        else s = lx_fail(LX_ERR_RNG, "`deterministic` is False, but no `rngs` argument was provided to MultiHeadAttention");
        if (s != LX_OK) return NULL;
        lx_array *w = lx_dot_product_attention_weights(query, key, NULL, mask, false, 0.0f);
        if (!w) return NULL;
        if (weights) *weights = w;
        /* Flax: keep = bernoulli(rng, keep_prob, shape); weights * (keep / keep_prob), with the
         * mask broadcast over batch and heads when broadcast_dropout. */
        float keep_prob = (float)(1.0 - c->dropout_rate);
        int64_t ms[LX_MAX_DIMS];
        for (int i = 0; i < w->ndim; i++) ms[i] = c->broadcast_dropout && i < w->ndim - 2 ? 1 : w->shape[i];
        lx_array *keep = lx_is_abstract(w) ? lx_autorelease(lx_array_abstract(LX_BOOL, w->ndim, ms))
                                           : lx_random_bernoulli(dk, keep_prob, w->ndim, ms);
        lx_array *mult = lx_div(lx_cast(keep, LX_F32), lx_scalar(keep_prob));
        x = weighted_values(lx_mul(w, mult), value);
    }
    return nnx_call_array(m->out, x);
}

lx_array *nnx_mha_forward(nnx_mha *m, lx_array *q, lx_array *k, lx_array *v, lx_array *mask, int deterministic,
                          nnx_rngs *rngs) {
    NNX_FRAMED_FORWARD(m, mha_forward(m, q, k, v, mask, deterministic, rngs, NULL));
}

static lx_status opt_array(const lx_call *c, int pos, const char *name, lx_array **out) {
    const lx_value *v = lx_call_get(c, pos, name);
    *out = NULL;
    if (!v || v->kind == LX_V_NONE) return LX_OK;
    if (v->kind != LX_V_ARRAY) return lx_fail(LX_ERR_TYPE, "argument '%s' must be an array or None, got %s", name, lx_kind_name(v->kind));
    *out = v->u.array;
    return LX_OK;
}

/* nnx.Module.sow(Intermediate, name, value) with the default reduce (append to a tuple): the
 * attribute `name` is a tuple - a tree {"0": Intermediate, "1": ...}, the layout Linen's sow
 * gives its tuples - that gains one Intermediate per call. */
static lx_status sow_intermediate(nnx_module *m, const char *name, lx_array *value) {
    lx_value cur = lx_none(); /* borrowed */
    lx_tree *tuple = NULL;
    if (nnx_getattr(m, name, &cur) != LX_OK) {
        lx_clear_error(); /* absent: a new tuple */
        tuple = lx_tree_new();
    } else if (cur.kind == LX_V_TREE) {
        tuple = lx_tree_copy(cur.u.tree);
    } else {
        return lx_fail(LX_ERR_TYPE, "sow: attribute '%s' of %s is not a tuple of Intermediates", name, m->type->name);
    }
    if (!tuple) return lx_last_status() != LX_OK ? lx_last_status() : lx_fail(LX_ERR_NO_MEMORY, "sow: out of memory");
    lx_variable *var = NULL;
    char key[32];
    snprintf(key, sizeof key, "%zu", lx_tree_len(tuple));
    lx_status s = lx_variable_new(&lx_Intermediate, value, &var);
    if (s == LX_OK) s = lx_tree_set(tuple, key, lx_var_v(var));
    if (s == LX_OK) {
        lx_value tv = lx_tree_v(tuple);
        s = nnx_setattr(m, name, &tv);
    }
    lx_variable_release(var);
    lx_tree_release(tuple);
    return s;
}

static lx_status mha_call(nnx_module *self, const lx_call *c, lx_value *out) {
    nnx_mha *m = (nnx_mha *)self;
    lx_array *q, *k, *v, *mask;
    int det, decode, sow;
    nnx_rngs *r;
    LX_TRY(lx_call_array(c, 0, "inputs_q", &q));
    LX_TRY(opt_array(c, 1, "inputs_k", &k));
    LX_TRY(opt_array(c, 2, "inputs_v", &v));
    LX_TRY(opt_array(c, 99, "mask", &mask));
    LX_TRY(opt_bool(c, 99, "deterministic", &det));
    LX_TRY(opt_bool(c, 99, "decode", &decode));
    LX_TRY(opt_bool(c, 99, "sow_weights", &sow));
    LX_TRY(opt_rngs(c, &r));
    /* first_from(decode, self.decode): None in both is Flax's ValueError; True needs the cache
     * that init_cache makes, which linnx does not have: Flax's error for a missing cache. */
    if (decode < 0 && m->cfg.decode.kind == LX_V_BOOL) decode = m->cfg.decode.u.b;
    if (decode < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "No `decode` argument was provided to MultiHeadAttention as either a "
                                                "__call__ argument, class attribute, or nnx.flag.");
    if (decode) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Autoregressive cache not initialized, call ``init_cache`` first.");
    if (sow != 1) return nnx_return_array(out, nnx_mha_forward(m, q, k, v, mask, det, r));
    /* sow_weights: the attention weights are sown as the Intermediate 'attention_weights' */
    lx_array *weights = NULL;
    lx_array *y = mha_forward(m, q, k, v, mask, det, r, &weights);
    if (y && weights) LX_TRY(sow_intermediate(self, "attention_weights", weights));
    return nnx_return_array(out, y);
}

static const nnx_field MHA_FIELDS[] = {NNX_CHILD(nnx_mha, key),   NNX_CHILD(nnx_mha, key_ln), NNX_CHILD(nnx_mha, out),
                                       NNX_CHILD(nnx_mha, query), NNX_CHILD(nnx_mha, query_ln), NNX_CHILD(nnx_mha, rngs),
                                       NNX_CHILD(nnx_mha, value)};
static const nnx_method MHA_METHODS[] = {NNX_METHOD("__call__", mha_call)};

const nnx_type nnx_MultiHeadAttention = {
    .name = "MultiHeadAttention", .size = sizeof(nnx_mha), .fields = MHA_FIELDS, .nfields = LX_COUNT(MHA_FIELDS),
    .config = MHA_CONFIG, .nconfig = LX_COUNT(MHA_CONFIG), .config_offset = offsetof(nnx_mha, cfg),
    .methods = MHA_METHODS, .nmethods = LX_COUNT(MHA_METHODS), .init = mha_init,
    .method_sigs = (const char *const[]){"inputs_q, inputs_k=None, inputs_v=None, *, mask=None, deterministic=None, rngs=None, sow_weights=False, decode=None"},
};

/* ------------------------------------------------------------------ Sequential */

static lx_array *gelu_tanh(lx_array *x) { return lx_gelu(x, true); }
const nnx_array_fn NNX_RELU = {"relu", lx_relu};
const nnx_array_fn NNX_GELU = {"gelu", gelu_tanh};
const nnx_array_fn NNX_SILU = {"silu", lx_silu};
const nnx_array_fn NNX_TANH = {"tanh", lx_tanh};
const nnx_array_fn NNX_SIGMOID = {"sigmoid", lx_sigmoid};

static const nnx_array_fn *fn_from_value(const lx_value *v) {
    if (v->kind != LX_V_PTR || !v->u.ptr.tag || strcmp(v->u.ptr.tag, "nnx_array_fn") != 0) return NULL;
    return v->u.ptr.p;
}

static lx_status sequential_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_sequential *m = (nnx_sequential *)self;
    if (call->nkwargs)
        return lx_fail(LX_ERR_TYPE, "Sequential.__init__() got an unexpected keyword argument '%s'", call->kwargs[0].name);
    for (int i = 0; i < call->nargs; i++) {
        const lx_value *v = &call->args[i];
        if (!nnx_module_from_value(v) && !fn_from_value(v))
            return lx_fail(LX_ERR_TYPE, "Sequential: layer %d must be a module or a function (nnx_fn_v), got %s", i,
                           lx_kind_name(v->kind));
        LX_TRY(nnx_list_append(&m->layers, *v));
    }
    return LX_OK;
}

/* Sequential() with no layers is the identity, as flax.nnx's is (Linen's nn.Sequential refuses
 * an empty one): the one positional argument back as it is; several as a tuple, a tree {"0": ...,
 * "1": ...} (linnx's layout of a tuple); only keyword arguments (rngs aside, which __call__ takes
 * for itself) as a dict, a tree of them; nothing as None. */
static lx_status sequential_identity(const lx_call *c, lx_value *out) {
    /* a NULL array (a failed op's result) fails here as it does in any layer (status.h) */
    for (int i = 0; i < c->nargs; i++)
        if (c->args[i].kind == LX_V_ARRAY && !c->args[i].u.array)
            return lx_null_input("Sequential: argument %d is a NULL array", i);
    for (int i = 0; i < c->nkwargs; i++)
        if (c->kwargs[i].value.kind == LX_V_ARRAY && !c->kwargs[i].value.u.array)
            return lx_null_input("Sequential: argument '%s' is a NULL array", c->kwargs[i].name);
    if (c->nargs == 1) return lx_value_dup(&c->args[0], out);
    int nkw = 0;
    for (int i = 0; i < c->nkwargs; i++) nkw += strcmp(c->kwargs[i].name, "rngs") != 0;
    if (c->nargs == 0 && nkw == 0) {
        *out = lx_none();
        return LX_OK;
    }
    lx_tree *t = lx_tree_new();
    if (!t) return lx_last_status();
    lx_status s = LX_OK;
    char key[16];
    for (int i = 0; i < c->nargs && s == LX_OK; i++) {
        snprintf(key, sizeof key, "%d", i);
        s = lx_tree_set(t, key, c->args[i]);
    }
    for (int i = 0; c->nargs == 0 && i < c->nkwargs && s == LX_OK; i++)
        if (strcmp(c->kwargs[i].name, "rngs") != 0) s = lx_tree_set(t, c->kwargs[i].name, c->kwargs[i].value);
    if (s != LX_OK) {
        lx_tree_release(t);
        return s;
    }
    *out = lx_tree_v(t); /* the caller's reference */
    return LX_OK;
}

/* Whether Sequential passes its `rngs` on to this layer: a module whose __call__ declares it (in
 * its method_sigs; Sequential and ToNNX declare `*args, rngs=None, ...` in Flax, which linnx's
 * signature strings cannot write). Functions and modules with no declared signature do not get it. */
static bool layer_takes_rngs(const nnx_module *mod) {
    if (!mod) return false;
    const nnx_type *t = mod->type;
    if (t == &nnx_Sequential || t == &bridge_ToNNX) return true;
    const nnx_method *f = nnx_find_method(t, "__call__");
    return f && t->method_sigs && lx_sig_names_param(t->method_sigs[f - t->methods], "rngs");
}

/* Whether a tree is linnx's layout of a tuple (or list): keys "0", "1", ... in order. */
static bool tree_is_tuple(const lx_tree *t) {
    char key[24];
    size_t n = lx_tree_len(t);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%zu", i);
        if (strcmp(lx_tree_key(t, i), key) != 0) return false;
    }
    return true;
}

/* The call layer i gets, as Flax's Sequential.__call__ builds it: the Sequential's own call for
 * the first layer (its `rngs` taken out); for the others the previous output `prev` unpacked, a
 * tuple (a tree keyed "0", "1", ..., a tuple of ints or strings) as positional arguments, a dict
 * (any other tree) as keyword arguments, anything else as the one positional argument; then
 * `rngs` (when given) for a layer that takes it. Values are borrowed (from c or prev); the arrays
 * are malloc'd into *args and *kw, which the caller frees. */
static lx_status sequential_step(const lx_call *c, int i, const lx_value *prev, const lx_value *rngs, bool give_rngs,
                                 lx_call *step, lx_value **args, lx_kwarg **kw) {
    *args = NULL;
    *kw = NULL;
    int na = 0, nk = 0, kcap = 1;
    const lx_tree *t = prev->kind == LX_V_TREE ? prev->u.tree : NULL;
    bool tuple = t && tree_is_tuple(t);
    if (i == 0) kcap += c->nkwargs;
    else if (t && !tuple) kcap += (int)lx_tree_len(t);
    int acap = t && tuple ? (int)lx_tree_len(t) : prev->kind == LX_V_INTS ? prev->u.ints.n
                                                  : prev->kind == LX_V_STRS ? prev->u.strs.n : 0;
    *kw = malloc((size_t)kcap * sizeof **kw);
    *args = acap > 0 && i > 0 ? malloc((size_t)acap * sizeof **args) : NULL;
    if (!*kw || (acap > 0 && i > 0 && !*args)) {
        free(*kw);
        free(*args);
        *kw = NULL;
        *args = NULL;
        return lx_fail(LX_ERR_NO_MEMORY, "Sequential: out of memory");
    }
    const lx_value *pos = NULL;
    if (i == 0) {
        pos = c->args, na = c->nargs;
        for (int k = 0; k < c->nkwargs; k++)
            if (strcmp(c->kwargs[k].name, "rngs") != 0) (*kw)[nk++] = c->kwargs[k];
    } else if (t && tuple) {
        for (na = 0; na < acap; na++) (*args)[na] = *lx_tree_at(t, (size_t)na);
        pos = *args;
    } else if (t) {
        for (size_t k = 0; k < lx_tree_len(t); k++) (*kw)[nk++] = (lx_kwarg){lx_tree_key(t, k), *lx_tree_at(t, k)};
    } else if (prev->kind == LX_V_INTS || prev->kind == LX_V_STRS) {
        for (na = 0; na < acap; na++)
            (*args)[na] = prev->kind == LX_V_INTS ? lx_int_v(prev->u.ints.v[na])
                          : prev->u.strs.v[na]    ? lx_str_v(prev->u.strs.v[na])
                                                  : lx_none();
        pos = *args;
    } else {
        pos = prev, na = 1;
    }
    if (rngs && give_rngs) { /* kwargs['rngs'] = rngs: replaces a dict's own entry */
        int k = 0;
        while (k < nk && strcmp((*kw)[k].name, "rngs") != 0) k++;
        (*kw)[k] = (lx_kwarg){"rngs", *rngs};
        if (k == nk) nk++;
    }
    *step = (lx_call){na, pos, nk, *kw};
    return LX_OK;
}

/* A function layer (nnx.relu, ...) takes one argument, `x`, as Python would bind it. */
static lx_status function_call(const nnx_array_fn *fn, const lx_call *step, lx_value *out) {
    for (int k = 0; k < step->nkwargs; k++)
        if (strcmp(step->kwargs[k].name, "x") != 0)
            return lx_fail(LX_ERR_TYPE, "%s() got an unexpected keyword argument '%s'", fn->name, step->kwargs[k].name);
    if (step->nargs > 1)
        return lx_fail(LX_ERR_TYPE, "%s() takes 1 positional argument but %d were given", fn->name, step->nargs);
    if (step->nargs == 1 && step->nkwargs == 1)
        return lx_fail(LX_ERR_TYPE, "%s() got multiple values for argument 'x'", fn->name);
    if (step->nargs + step->nkwargs == 0)
        return lx_fail(LX_ERR_TYPE, "%s() missing 1 required positional argument: 'x'", fn->name);
    lx_array *x;
    LX_TRY(lx_call_array(step, 0, "x", &x));
    return nnx_return_array(out, fn->fn(x));
}

static lx_status sequential_call(nnx_module *self, const lx_call *c, lx_value *out) {
    nnx_sequential *m = (nnx_sequential *)self;
    if (m->layers.n == 0) return sequential_identity(c, out);
    const lx_value *rngs = lx_call_kwarg(c, "rngs"); /* rngs=None: as if not given */
    if (rngs && rngs->kind == LX_V_NONE) rngs = NULL;
    lx_value cur = lx_none();
    for (int i = 0; i < m->layers.n; i++) {
        lx_value *layer = &m->layers.items[i];
        nnx_module *mod = nnx_module_from_value(layer);
        const nnx_array_fn *fn = fn_from_value(layer);
        lx_value next = lx_none(), *args;
        lx_kwarg *kw;
        lx_call step;
        lx_status s = sequential_step(c, i, &cur, rngs, layer_takes_rngs(mod), &step, &args, &kw);
        if (s == LX_OK) {
            if (mod) s = nnx_call(mod, NULL, &step, &next);
            else if (fn) s = function_call(fn, &step, &next);
            else s = lx_fail(LX_ERR_TYPE, "Sequence[%d] is not callable", i);
        }
        free(args);
        free(kw);
        lx_value_free(&cur); /* after the call: step borrowed from it */
        if (s != LX_OK) {
            lx_value_free(&next);
            return s;
        }
        cur = next;
    }
    *out = cur;
    return LX_OK;
}

static const nnx_field SEQUENTIAL_FIELDS[] = {NNX_LIST(nnx_sequential, layers)};
static const nnx_method SEQUENTIAL_METHODS[] = {NNX_METHOD("__call__", sequential_call)};

const nnx_type nnx_Sequential = {
    .name = "Sequential", .size = sizeof(nnx_sequential), .fields = SEQUENTIAL_FIELDS, .nfields = LX_COUNT(SEQUENTIAL_FIELDS),
    .methods = SEQUENTIAL_METHODS, .nmethods = LX_COUNT(SEQUENTIAL_METHODS), .init = sequential_init,
};
