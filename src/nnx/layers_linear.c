/* flax.nnx Linear, LinearGeneral, Conv, Embed and LoRA (flax/nnx/nn/linear.py, lora.py). */
#include <stdio.h>

#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/nnx_layers.h"
#include "linnx/ops.h"
#include "../linen/layers_promote.h"
#include "nnx_internal.h"

#define INIT_FIELD(T, m, dflt) LX_FIELD_OBJ(T, m, "initializer", dflt)

/* ------------------------------------------------------------------ Linear */

static const lx_field LINEAR_CONFIG[] = {
    LX_FIELD_REQUIRED_INT(nnx_linear_config, in_features),
    LX_FIELD_REQUIRED_INT(nnx_linear_config, out_features),
    LX_FIELD_BOOL(nnx_linear_config, use_bias, true),
    LX_FIELD_DTYPE(nnx_linear_config, param_dtype, "float32"),
    INIT_FIELD(nnx_linear_config, kernel_init, &NNX_LECUN_NORMAL),
    INIT_FIELD(nnx_linear_config, bias_init, &NNX_ZEROS),
    LX_FIELD_VALUE(nnx_linear_config, kernel_metadata),
    LX_FIELD_VALUE(nnx_linear_config, bias_metadata),
};

static lx_status check_positive(const nnx_module *m, const char *name, int64_t v) {
    if (v <= 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %s must be positive, got %lld", m->type->name, name, (long long)v);
    return LX_OK;
}

static lx_status linear_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_linear *m = (nnx_linear *)self;
    const nnx_linear_config *c = &m->cfg;
    LX_TRY(check_positive(self, "in_features", c->in_features));
    LX_TRY(check_positive(self, "out_features", c->out_features));
    int64_t ks[] = {c->in_features, c->out_features};
    LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->kernel_init, c->param_dtype, 2, ks, 0, NULL,
                          &c->kernel_metadata, &m->kernel));
    if (c->use_bias) {
        int64_t bs[] = {c->out_features};
        LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->bias_init, c->param_dtype, 1, bs, 0, NULL,
                              &c->bias_metadata, &m->bias));
    }
    return LX_OK;
}

static lx_array *linear_forward_impl(nnx_linear *m, lx_array *x) {
    if (!m || !x) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "Linear: module is NULL");
        return NULL;
    }
    lx_array *kernel = nnx_value_of(m->kernel);
    if (!kernel) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "Linear: kernel is None");
        return NULL;
    }
    /* promote_dtype((inputs, kernel, bias), dtype=self.dtype), then
     * lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ()))) + bias as Flax writes it, as
     * one "dense" op (the separate ops while anything watches primitives: linalg.h lx_dense). */
    lx_array *ops[3] = {x, kernel, nnx_value_of(m->bias)};
    if (lx_layer_promote("Linear", NULL, 3, ops) != LX_OK) return NULL;
    return lx_dense(ops[0], ops[1], ops[2], LX_ACT_NONE);
}

lx_array *nnx_linear_forward(nnx_linear *m, lx_array *x) {
    NNX_FRAMED_FORWARD(m, linear_forward_impl(m, x));
}

static lx_status linear_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    return nnx_return_array(out, nnx_linear_forward((nnx_linear *)self, x));
}

static const nnx_field LINEAR_FIELDS[] = {NNX_VAR(nnx_linear, kernel), NNX_VAR(nnx_linear, bias)};
static const nnx_method LINEAR_METHODS[] = {NNX_METHOD("__call__", linear_call)};

const nnx_type nnx_Linear = {
    .name = "Linear", .size = sizeof(nnx_linear), .fields = LINEAR_FIELDS, .nfields = LX_COUNT(LINEAR_FIELDS),
    .config = LINEAR_CONFIG, .nconfig = LX_COUNT(LINEAR_CONFIG), .config_offset = offsetof(nnx_linear, cfg),
    .methods = LINEAR_METHODS, .nmethods = LX_COUNT(LINEAR_METHODS), .init = linear_init,
    .method_sigs = (const char *const[]){"inputs"},
};

lx_status nnx_linear_new(int64_t in_features, int64_t out_features, nnx_rngs *rngs, nnx_linear **out) {
    lx_call c = LX_CALL_ARGS(lx_int_v(in_features), lx_int_v(out_features));
    return nnx_module_new(&nnx_Linear, &c, rngs, (nnx_module **)out);
}

/* ------------------------------------------------------------------ LinearGeneral */

static const lx_field LINEAR_GENERAL_CONFIG[] = {
    LX_FIELD_REQUIRED_INTS(nnx_linear_general_config, in_features),
    LX_FIELD_REQUIRED_INTS(nnx_linear_general_config, out_features),
    LX_FIELD_INTS(nnx_linear_general_config, axis),
    LX_FIELD_BOOL(nnx_linear_general_config, use_bias, true),
    LX_FIELD_DTYPE(nnx_linear_general_config, param_dtype, "float32"),
    INIT_FIELD(nnx_linear_general_config, kernel_init, &NNX_LECUN_NORMAL),
    INIT_FIELD(nnx_linear_general_config, bias_init, &NNX_ZEROS),
    LX_FIELD_VALUE(nnx_linear_general_config, kernel_metadata),
    LX_FIELD_VALUE(nnx_linear_general_config, bias_metadata),
};

static int64_t prod(const lx_ints *t) {
    int64_t p = 1;
    for (int i = 0; i < t->n; i++) p *= t->v[i];
    return p;
}

static char *ints_str(const lx_ints *t, char *buf, size_t cap) { return (char *)lx_shape_str(t->n, t->v, buf, cap); }

static lx_status linear_general_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_linear_general *m = (nnx_linear_general *)self;
    nnx_linear_general_config *c = &m->cfg;
    if (c->axis.n == 0) c->axis = lx_ints_of(1, (int64_t[]){-1});
    char b1[64], b2[64];
    if (c->in_features.n != c->axis.n)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "in_features and axis must have the same length. Got %s and %s.",
                       ints_str(&c->in_features, b1, sizeof b1), ints_str(&c->axis, b2, sizeof b2));
    if (c->in_features.n + c->out_features.n > LX_MAX_DIMS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "LinearGeneral: kernel has more than %d axes", LX_MAX_DIMS);
    int64_t ks[LX_MAX_DIMS];
    int nk = 0;
    for (int i = 0; i < c->in_features.n; i++) ks[nk++] = c->in_features.v[i];
    for (int i = 0; i < c->out_features.n; i++) ks[nk++] = c->out_features.v[i];
    for (int i = 0; i < nk; i++) LX_TRY(check_positive(self, "features", ks[i]));
    int64_t flat[] = {prod(&c->in_features), prod(&c->out_features)};
    LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->kernel_init, c->param_dtype, nk, ks, 2, flat,
                          &c->kernel_metadata, &m->kernel));
    if (c->use_bias) {
        int64_t bflat[] = {flat[1]};
        LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->bias_init, c->param_dtype, c->out_features.n,
                              c->out_features.v, 1, bflat, &c->bias_metadata, &m->bias));
    }
    return LX_OK;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static lx_array *linear_general_forward_impl(nnx_linear_general *m, lx_array *x) {
    if (!m || !x) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "LinearGeneral: module is NULL");
        return NULL;
    }
    const nnx_linear_general_config *c = &m->cfg;
    int n = c->axis.n;
    int64_t axes[LX_MAX_DIMS], kdims[LX_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        int64_t a = c->axis.v[i] < 0 ? c->axis.v[i] + x->ndim : c->axis.v[i];
        if (a < 0 || a >= x->ndim) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "LinearGeneral: axis %lld is out of range for an input of rank %d",
                    (long long)c->axis.v[i], x->ndim);
            return NULL;
        }
        axes[i] = a;
        kdims[i] = i;
    }
    /* Flax sorts the normalised axes and pairs them with the kernel's leading axes in order. */
    qsort(axes, (size_t)n, sizeof axes[0], cmp_i64);
    lx_array *ops[3] = {x, nnx_value_of(m->kernel), nnx_value_of(m->bias)}; /* promote_dtype */
    if (!ops[1]) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "LinearGeneral: kernel is None");
        return NULL;
    }
    if (lx_layer_promote("LinearGeneral", NULL, 3, ops) != LX_OK) return NULL;
    lx_array *y = lx_dot_general(ops[0], ops[1], n, axes, kdims, 0, NULL, NULL);
    return ops[2] ? lx_add(y, ops[2]) : y;
}

lx_array *nnx_linear_general_forward(nnx_linear_general *m, lx_array *x) {
    NNX_FRAMED_FORWARD(m, linear_general_forward_impl(m, x));
}

static lx_status linear_general_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    return nnx_return_array(out, nnx_linear_general_forward((nnx_linear_general *)self, x));
}

static const nnx_field LINEAR_GENERAL_FIELDS[] = {NNX_VAR(nnx_linear_general, kernel),
                                                  NNX_VAR(nnx_linear_general, bias)};
static const nnx_method LINEAR_GENERAL_METHODS[] = {NNX_METHOD("__call__", linear_general_call)};

const nnx_type nnx_LinearGeneral = {
    .name = "LinearGeneral", .size = sizeof(nnx_linear_general), .fields = LINEAR_GENERAL_FIELDS,
    .nfields = LX_COUNT(LINEAR_GENERAL_FIELDS), .config = LINEAR_GENERAL_CONFIG, .nconfig = LX_COUNT(LINEAR_GENERAL_CONFIG),
    .config_offset = offsetof(nnx_linear_general, cfg), .methods = LINEAR_GENERAL_METHODS, .nmethods = LX_COUNT(LINEAR_GENERAL_METHODS),
    .method_sigs = (const char *const[]){"inputs"},
    .init = linear_general_init,
};

/* ------------------------------------------------------------------ Conv */

static const lx_field CONV_CONFIG[] = {
    LX_FIELD_REQUIRED_INT(nnx_conv_config, in_features),
    LX_FIELD_REQUIRED_INT(nnx_conv_config, out_features),
    LX_FIELD_REQUIRED_INTS(nnx_conv_config, kernel_size),
    LX_FIELD_INTS(nnx_conv_config, strides),
    {"padding", LX_FIELD_VALUE, offsetof(nnx_conv_config, padding), sizeof(lx_value), NULL, false,
     LX_VAL_STR("SAME")},
    LX_FIELD_INTS(nnx_conv_config, input_dilation),
    LX_FIELD_INTS(nnx_conv_config, kernel_dilation),
    LX_FIELD_INT(nnx_conv_config, feature_group_count, 1),
    LX_FIELD_BOOL(nnx_conv_config, use_bias, true),
    LX_FIELD_DTYPE(nnx_conv_config, param_dtype, "float32"),
    INIT_FIELD(nnx_conv_config, kernel_init, &NNX_LECUN_NORMAL),
    INIT_FIELD(nnx_conv_config, bias_init, &NNX_ZEROS),
    LX_FIELD_VALUE(nnx_conv_config, kernel_metadata),
    LX_FIELD_VALUE(nnx_conv_config, bias_metadata),
};

/* An int-or-tuple argument stretched to `rank` entries (an empty tuple means all ones). */
static lx_status per_axis(const char *name, const lx_ints *t, int rank, int64_t *out) {
    if (t->n == 0) {
        for (int i = 0; i < rank; i++) out[i] = 1;
        return LX_OK;
    }
    if (t->n == 1) {
        for (int i = 0; i < rank; i++) out[i] = t->v[0];
        return LX_OK;
    }
    if (t->n != rank)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Conv: %s has %d entries for %d spatial axes", name, t->n, rank);
    for (int i = 0; i < rank; i++) out[i] = t->v[i];
    return LX_OK;
}

/* lax's own check of window_strides / lhs_dilation / rhs_dilation, which Flax's Conv meets at call time. */
static lx_status per_axis_positive(const char *name, const char *lax, const lx_ints *t, int rank, int64_t *out) {
    LX_TRY(per_axis(name, t, rank, out));
    for (int i = 0; i < rank; i++)
        if (out[i] < 1) {
            char b[160];
            return lx_fail(LX_ERR_INVALID_ARGUMENT,
                           "conv_general_dilated %s must have every element be positive, got %s (Conv %s).", lax,
                           lx_shape_str(rank, out, b, sizeof b), name);
        }
    return LX_OK;
}

static lx_status conv_padding(const lx_value *p, int rank, lx_padding *out) {
    memset(out, 0, sizeof *out);
    if (p->kind == LX_V_STR) {
        if (strcmp(p->u.s, "SAME") == 0) out->mode = LX_PAD_SAME;
        else if (strcmp(p->u.s, "VALID") == 0) out->mode = LX_PAD_VALID;
        else if (strcmp(p->u.s, "SAME_LOWER") == 0) out->mode = LX_PAD_SAME_LOWER;
        else if (strcmp(p->u.s, "CIRCULAR") == 0 || strcmp(p->u.s, "CAUSAL") == 0 || strcmp(p->u.s, "REFLECT") == 0)
            return lx_fail(LX_ERR_UNSUPPORTED, "Conv: padding '%s' is not supported", p->u.s);
        else return lx_fail(LX_ERR_INVALID_ARGUMENT, "Conv: unknown padding '%s'", p->u.s);
        return LX_OK;
    }
    out->mode = LX_PAD_EXPLICIT;
    if (p->kind == LX_V_INT) {
        for (int i = 0; i < rank; i++) out->lo[i] = out->hi[i] = p->u.i;
        return LX_OK;
    }
    if (p->kind == LX_V_INTS && p->u.ints.n == rank) {
        for (int i = 0; i < rank; i++) out->lo[i] = out->hi[i] = p->u.ints.v[i];
        return LX_OK;
    }
    if (p->kind == LX_V_INTS && p->u.ints.n == 2 * rank) { /* ((lo, hi), ...) flattened */
        for (int i = 0; i < rank; i++) {
            out->lo[i] = p->u.ints.v[2 * i];
            out->hi[i] = p->u.ints.v[2 * i + 1];
        }
        return LX_OK;
    }
    char buf[64];
    return lx_fail(LX_ERR_INVALID_ARGUMENT,
                   "Invalid padding format: %s, should be str, int, or a sequence of len %d where each element is an int or pair of ints.",
                   lx_value_str(p, buf, sizeof buf), rank);
}

static lx_status conv_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_conv *m = (nnx_conv *)self;
    const nnx_conv_config *c = &m->cfg;
    int rank = c->kernel_size.n;
    if (rank < 1 || rank + 2 > LX_MAX_DIMS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Conv: kernel_size must have 1 to %d entries", LX_MAX_DIMS - 2);
    LX_TRY(check_positive(self, "in_features", c->in_features));
    LX_TRY(check_positive(self, "out_features", c->out_features));
    LX_TRY(check_positive(self, "feature_group_count", c->feature_group_count));
    if (c->in_features % c->feature_group_count || c->out_features % c->feature_group_count)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "Conv: in_features (%lld) and out_features (%lld) must be divisible by feature_group_count (%lld)",
                       (long long)c->in_features, (long long)c->out_features, (long long)c->feature_group_count);
    int64_t tmp[LX_MAX_DIMS];
    LX_TRY(per_axis("strides", &c->strides, rank, tmp));
    LX_TRY(per_axis("input_dilation", &c->input_dilation, rank, tmp));
    LX_TRY(per_axis("kernel_dilation", &c->kernel_dilation, rank, tmp));
    lx_padding pad;
    LX_TRY(conv_padding(&c->padding, rank, &pad));
    int64_t ks[LX_MAX_DIMS];
    for (int i = 0; i < rank; i++) ks[i] = c->kernel_size.v[i];
    ks[rank] = c->in_features / c->feature_group_count;
    ks[rank + 1] = c->out_features;
    LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->kernel_init, c->param_dtype, rank + 2, ks, 0, NULL,
                          &c->kernel_metadata, &m->kernel));
    if (c->use_bias) {
        int64_t bs[] = {c->out_features};
        LX_TRY(nnx_make_param(self, rngs, &lx_Param, &c->bias_init, c->param_dtype, 1, bs, 0, NULL,
                              &c->bias_metadata, &m->bias));
    }
    return LX_OK;
}

static lx_array *conv_forward_impl(nnx_conv *m, lx_array *x) {
    if (!m || !x) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "Conv: module is NULL");
        return NULL;
    }
    const nnx_conv_config *c = &m->cfg;
    int rank = c->kernel_size.n;
    lx_conv_params p;
    memset(&p, 0, sizeof p);
    if (per_axis_positive("strides", "window_strides", &c->strides, rank, p.strides) != LX_OK ||
        per_axis_positive("input_dilation", "lhs_dilation", &c->input_dilation, rank, p.lhs_dilation) != LX_OK ||
        per_axis_positive("kernel_dilation", "rhs_dilation", &c->kernel_dilation, rank, p.rhs_dilation) != LX_OK ||
        conv_padding(&c->padding, rank, &p.padding) != LX_OK)
        return NULL;
    p.feature_group_count = c->feature_group_count;
    /* Flax accepts an unbatched input (spatial..., features) and adds the batch axis. */
    bool unbatched = x->ndim == rank + 1;
    lx_array *ops[3] = {unbatched ? lx_expand_dims(x, 0) : x, nnx_value_of(m->kernel), nnx_value_of(m->bias)};
    if (!ops[1]) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "Conv: kernel is None");
        return NULL;
    }
    if (lx_layer_promote("Conv", NULL, 3, ops) != LX_OK) return NULL; /* promote_dtype */
    lx_array *y = lx_conv_general(ops[0], ops[1], &p);
    if (ops[2]) y = lx_add(y, ops[2]);
    return unbatched ? lx_squeeze(y, LX_AXES(0)) : y;
}

lx_array *nnx_conv_forward(nnx_conv *m, lx_array *x) {
    NNX_FRAMED_FORWARD(m, conv_forward_impl(m, x));
}

static lx_status conv_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    return nnx_return_array(out, nnx_conv_forward((nnx_conv *)self, x));
}

static const nnx_field CONV_FIELDS[] = {NNX_VAR(nnx_conv, kernel), NNX_VAR(nnx_conv, bias)};
static const nnx_method CONV_METHODS[] = {NNX_METHOD("__call__", conv_call)};

const nnx_type nnx_Conv = {
    .name = "Conv", .size = sizeof(nnx_conv), .fields = CONV_FIELDS, .nfields = LX_COUNT(CONV_FIELDS),
    .config = CONV_CONFIG, .nconfig = LX_COUNT(CONV_CONFIG), .config_offset = offsetof(nnx_conv, cfg),
    .methods = CONV_METHODS, .nmethods = LX_COUNT(CONV_METHODS), .init = conv_init,
    .method_sigs = (const char *const[]){"inputs"},
};

/* ------------------------------------------------------------------ Embed */

static const lx_field EMBED_CONFIG[] = {
    LX_FIELD_REQUIRED_INT(nnx_embed_config, num_embeddings),
    LX_FIELD_REQUIRED_INT(nnx_embed_config, features),
    LX_FIELD_DTYPE(nnx_embed_config, param_dtype, "float32"),
    INIT_FIELD(nnx_embed_config, embedding_init, &NNX_EMBED_INIT),
    LX_FIELD_VALUE(nnx_embed_config, embedding_metadata),
};

static lx_status embed_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_embed *m = (nnx_embed *)self;
    LX_TRY(check_positive(self, "num_embeddings", m->cfg.num_embeddings));
    LX_TRY(check_positive(self, "features", m->cfg.features));
    int64_t s[] = {m->cfg.num_embeddings, m->cfg.features};
    return nnx_make_param(self, rngs, &lx_Param, &m->cfg.embedding_init, m->cfg.param_dtype, 2, s, 0, NULL,
                          &m->cfg.embedding_metadata, &m->embedding);
}

static lx_array *embed_forward_impl(nnx_embed *m, lx_array *indices) {
    if (!m || !indices) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "Embed: module is NULL");
        return NULL;
    }
    if (indices->dtype != LX_I32 && indices->dtype != LX_U32) {
        lx_fail(LX_ERR_DTYPE, "Input type must be an integer or unsigned integer.");
        return NULL;
    }
    lx_array *idx = indices->dtype == LX_I32 ? indices : lx_cast(indices, LX_I32);
    return lx_take(nnx_value_of(m->embedding), idx, 0);
}

lx_array *nnx_embed_forward(nnx_embed *m, lx_array *indices) {
    NNX_FRAMED_FORWARD(m, embed_forward_impl(m, indices));
}

static lx_array *embed_attend_impl(nnx_embed *m, lx_array *query) {
    if (!m || !query) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "Embed: module is NULL");
        return NULL;
    }
    int64_t lc[] = {query->ndim - 1}, rc[] = {1};
    lx_array *ops[2] = {query, nnx_value_of(m->embedding)}; /* promote_dtype(query, embedding) */
    if (!ops[1]) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "Embed: embedding is None");
        return NULL;
    }
    if (lx_layer_promote("Embed", NULL, 2, ops) != LX_OK) return NULL;
    return lx_dot_general(ops[0], ops[1], 1, lc, rc, 0, NULL, NULL);
}

lx_array *nnx_embed_attend(nnx_embed *m, lx_array *query) {
    NNX_FRAMED_FORWARD(m, embed_attend_impl(m, query));
}

static lx_status embed_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    return nnx_return_array(out, nnx_embed_forward((nnx_embed *)self, x));
}

static lx_status embed_attend(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *q;
    LX_TRY(lx_call_array(c, 0, "query", &q));
    return nnx_return_array(out, nnx_embed_attend((nnx_embed *)self, q));
}

static const nnx_field EMBED_FIELDS[] = {NNX_VAR(nnx_embed, embedding)};
static const nnx_method EMBED_METHODS[] = {NNX_METHOD("__call__", embed_call), NNX_METHOD("attend", embed_attend)};

const nnx_type nnx_Embed = {
    .name = "Embed", .size = sizeof(nnx_embed), .fields = EMBED_FIELDS, .nfields = LX_COUNT(EMBED_FIELDS),
    .config = EMBED_CONFIG, .nconfig = LX_COUNT(EMBED_CONFIG), .config_offset = offsetof(nnx_embed, cfg),
    .methods = EMBED_METHODS, .nmethods = LX_COUNT(EMBED_METHODS), .init = embed_init,
    .method_sigs = (const char *const[]){"inputs", "query"},
};

/* ------------------------------------------------------------------ LoRA */

static const lx_field LORA_CONFIG[] = {
    LX_FIELD_REQUIRED_INT(nnx_lora_config, in_features),
    LX_FIELD_REQUIRED_INT(nnx_lora_config, lora_rank),
    LX_FIELD_REQUIRED_INT(nnx_lora_config, out_features),
    LX_FIELD_VALUE(nnx_lora_config, base_module),
    LX_FIELD_DTYPE(nnx_lora_config, param_dtype, "float32"),
    INIT_FIELD(nnx_lora_config, a_initializer, &NNX_HE_UNIFORM),
    INIT_FIELD(nnx_lora_config, b_initializer, &NNX_ZEROS),
    LX_FIELD_VALUE(nnx_lora_config, lora_param_type),
    LX_FIELD_VALUE(nnx_lora_config, a_metadata),
    LX_FIELD_VALUE(nnx_lora_config, b_metadata),
};

static lx_status lora_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    nnx_lora *m = (nnx_lora *)self;
    nnx_lora_config *c = &m->cfg;
    LX_TRY(check_positive(self, "in_features", c->in_features));
    LX_TRY(check_positive(self, "lora_rank", c->lora_rank));
    LX_TRY(check_positive(self, "out_features", c->out_features));
    /* The base module is graph state (a child), not static config: move it into its field so the
     * graphdef records it as a node and merge rebuilds it. */
    if (c->base_module.kind != LX_V_NONE) {
        nnx_module *b = nnx_module_from_value(&c->base_module);
        if (!b) return lx_fail(LX_ERR_TYPE, "LoRA: base_module must be a module, got %s", lx_kind_name(c->base_module.kind));
        m->base_module = b; /* takes the reference the config held (lx_value_dup retained it) */
        c->base_module = lx_none();
    }
    const lx_vartype *pt = &lx_LoRAParam;
    if (c->lora_param_type.kind == LX_V_PTR && c->lora_param_type.u.ptr.tag &&
        strcmp(c->lora_param_type.u.ptr.tag, "vartype") == 0 && c->lora_param_type.u.ptr.p)
        pt = c->lora_param_type.u.ptr.p;
    else if (c->lora_param_type.kind != LX_V_NONE)
        return lx_fail(LX_ERR_TYPE, "LoRA: lora_param_type must be a Variable type (LX_V_PTR \"vartype\")");
    int64_t as[] = {c->in_features, c->lora_rank}, bs[] = {c->lora_rank, c->out_features};
    LX_TRY(nnx_make_param(self, rngs, pt, &c->a_initializer, c->param_dtype, 2, as, 0, NULL, &c->a_metadata, &m->lora_a));
    return nnx_make_param(self, rngs, pt, &c->b_initializer, c->param_dtype, 2, bs, 0, NULL, &c->b_metadata, &m->lora_b);
}

static lx_array *lora_forward_impl(nnx_lora *m, lx_array *x) {
    if (!m || !x) {
        if (!m) lx_fail(LX_ERR_INVALID_ARGUMENT, "LoRA: module is NULL");
        return NULL;
    }
    /* x @ lora_a @ lora_b: jnp.matmul's promotion (float32 with bfloat16 params) */
    lx_array *ops[3] = {x, nnx_value_of(m->lora_a), nnx_value_of(m->lora_b)};
    if (lx_layer_promote("LoRA", NULL, 3, ops) != LX_OK) return NULL;
    lx_array *out = lx_matmul(lx_matmul(ops[0], ops[1]), ops[2]);
    if (m->base_module) out = lx_add(out, nnx_call_array(m->base_module, x));
    return out;
}

lx_array *nnx_lora_forward(nnx_lora *m, lx_array *x) {
    NNX_FRAMED_FORWARD(m, lora_forward_impl(m, x));
}

static lx_status lora_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return nnx_return_array(out, nnx_lora_forward((nnx_lora *)self, x));
}

static const nnx_field LORA_FIELDS[] = {NNX_CHILD(nnx_lora, base_module), NNX_VAR(nnx_lora, lora_a),
                                        NNX_VAR(nnx_lora, lora_b)};
static const nnx_method LORA_METHODS[] = {NNX_METHOD("__call__", lora_call)};

const nnx_type nnx_LoRA = {
    .name = "LoRA", .size = sizeof(nnx_lora), .fields = LORA_FIELDS, .nfields = LX_COUNT(LORA_FIELDS),
    .config = LORA_CONFIG, .nconfig = LX_COUNT(LORA_CONFIG), .config_offset = offsetof(nnx_lora, cfg),
    .methods = LORA_METHODS, .nmethods = LX_COUNT(LORA_METHODS), .init = lora_init,
    .method_sigs = (const char *const[]){"x"},
};
