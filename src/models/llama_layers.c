/* MaxText's llama2 NNX layers (layers/normalizations.py RMSNorm, linears.py DenseGeneral and
 * MlpBlock, embeddings.py Embed and RotaryEmbedding, attentions.py Attention, the KV cache, and
 * models/llama2.py LlamaDecoderLayer), written with linnx's public ops so the forward is
 * differentiable wherever the ops are. Numerics: spec/maxtext-decoder.md §D. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "linnx/init.h"
#include "linnx/linalg.h"
#include "linnx/llama.h"
#include "linnx/nn.h"
#include "linnx/ops.h"
#include "linnx/variable.h"
#include "llama_internal.h"
#include "../core/status_internal.h"

/* ------------------------------------------------------------------ config */

const lx_field LLAMA_CONFIG_FIELDS[] = {
    LX_FIELD_INT(llama_config, vocab_size, 256),
    LX_FIELD_INT(llama_config, emb_dim, 64),
    LX_FIELD_INT(llama_config, num_query_heads, 4),
    LX_FIELD_INT(llama_config, num_kv_heads, 2),
    LX_FIELD_INT(llama_config, head_dim, 16),
    LX_FIELD_INT(llama_config, mlp_dim, 128),
    LX_FIELD_INT(llama_config, num_decoder_layers, 2),
    LX_FIELD_INT(llama_config, max_target_length, 256),
    LX_FIELD_FLOAT(llama_config, normalization_layer_epsilon, 1e-5),
    LX_FIELD_FLOAT(llama_config, rope_min_timescale, 1.0),
    LX_FIELD_FLOAT(llama_config, rope_max_timescale, 10000.0),
    LX_FIELD_INT(llama_config, cache_batch, 0),
    LX_FIELD_BOOL(llama_config, scan_layers, false),
};
const int LLAMA_CONFIG_NFIELDS = (int)(sizeof LLAMA_CONFIG_FIELDS / sizeof LLAMA_CONFIG_FIELDS[0]);

llama_config llama_config_tiny(void) {
    llama_config c = {0};
    lx_config_defaults(LLAMA_CONFIG_FIELDS, LLAMA_CONFIG_NFIELDS, &c);
    return c;
}

void llama_config_kwargs(const llama_config *c, lx_kwarg out[LLAMA_CONFIG_NKW]) {
    out[0] = LX_KW_INT("vocab_size", c->vocab_size);
    out[1] = LX_KW_INT("emb_dim", c->emb_dim);
    out[2] = LX_KW_INT("num_query_heads", c->num_query_heads);
    out[3] = LX_KW_INT("num_kv_heads", c->num_kv_heads);
    out[4] = LX_KW_INT("head_dim", c->head_dim);
    out[5] = LX_KW_INT("mlp_dim", c->mlp_dim);
    out[6] = LX_KW_INT("num_decoder_layers", c->num_decoder_layers);
    out[7] = LX_KW_INT("max_target_length", c->max_target_length);
    out[8] = LX_KW_FLOAT("normalization_layer_epsilon", c->normalization_layer_epsilon);
    out[9] = LX_KW_FLOAT("rope_min_timescale", c->rope_min_timescale);
    out[10] = LX_KW_FLOAT("rope_max_timescale", c->rope_max_timescale);
    out[11] = LX_KW_INT("cache_batch", c->cache_batch);
    out[12] = LX_KW("scan_layers", lx_bool_v(c->scan_layers));
}

lx_status llama_config_check(const llama_config *c) {
    if (!c) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama config: NULL");
    const struct { const char *name; int64_t v; } pos[] = {
        {"vocab_size", c->vocab_size}, {"emb_dim", c->emb_dim}, {"num_query_heads", c->num_query_heads},
        {"num_kv_heads", c->num_kv_heads}, {"head_dim", c->head_dim}, {"mlp_dim", c->mlp_dim},
        {"num_decoder_layers", c->num_decoder_layers}, {"max_target_length", c->max_target_length},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0 || pos[i].v > (1 << 24))
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama config: %s must be in 1..16777216, got %lld", pos[i].name,
                           (long long)pos[i].v);
    if (c->num_decoder_layers > 64)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama config: num_decoder_layers must be at most 64, got %lld",
                       (long long)c->num_decoder_layers);
    if (c->num_query_heads % c->num_kv_heads)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "llama config: num_query_heads (%lld) must be a multiple of num_kv_heads (%lld)",
                       (long long)c->num_query_heads, (long long)c->num_kv_heads);
    if (c->head_dim % 2)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "Embedding dim for rotary position embedding must be a multiple of 2 (head_dim %lld)",
                       (long long)c->head_dim);
    if (!(c->normalization_layer_epsilon > 0) || !(c->rope_min_timescale > 0) ||
        !(c->rope_max_timescale > 0))
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "llama config: normalization_layer_epsilon and the rope timescales must be positive");
    if (c->cache_batch < 0 || c->cache_batch > (1 << 16))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama config: cache_batch must be in 0..65536, got %lld",
                       (long long)c->cache_batch);
    if (c->scan_layers && c->cache_batch > 0)
        return lx_fail(LX_ERR_UNSUPPORTED,
                       "llama config: scan_layers is for training (cache_batch 0); decode with the unrolled layers "
                       "(llama_model_load_params unstacks scanned parameters)");
    return LX_OK;
}

int64_t llama_param_count(const llama_config *c) {
    int64_t E = c->emb_dim, D = c->head_dim;
    int64_t layer = 2 * E + E * D * (2 * c->num_query_heads + 2 * c->num_kv_heads) + 3 * E * c->mlp_dim;
    return c->num_decoder_layers * layer + 2 * c->vocab_size * E + E;
}

/* ------------------------------------------------------------------ helpers */


/* {out_sharding: names}: the metadata MaxText's nnx.Param(..., sharding=axes) carries. */
static lx_status axes_metadata(const lx_strs *axes, lx_tree **out) {
    *out = lx_tree_new();
    if (!*out) return lx_last_status();
    lx_status st = lx_tree_set(*out, "out_sharding", lx_strs_v(axes->n, (const char *const *)axes->v));
    if (st != LX_OK) {
        lx_tree_release(*out);
        *out = NULL;
    }
    return st;
}

/* A Param made by `init` on `shape` from one rngs.params() draw, then divided by `divisor` (when
 * not 1), with the axes as out_sharding. */
static lx_status make_param(nnx_rngs *rngs, const lx_initializer *init, int ndim, const int64_t *shape,
                            const lx_strs *axes, double divisor, lx_variable **out) {
    lx_key key = {{0, 0}};
    if (!rngs) return lx_fail(LX_ERR_RNG, "No RngStream named 'params' found in Rngs.");
    LX_TRY(nnx_rngs_draw(rngs, "params", &key));
    lx_tree *md = NULL;
    LX_TRY(axes_metadata(axes, &md));
    lx_value mdv = lx_tree_v(md);
    lx_status st = nnx_param_new(&lx_Param, init, key, LX_F32, ndim, shape, &mdv, out);
    lx_tree_release(md);
    LX_TRY(st);
    lx_array *v = lx_variable_get_value(*out);
    if (divisor != 1.0 && !lx_is_abstract(v)) {
        /* query_init(*args) = kernel_init(*args) / depth_scaling, one f32 division each */
        float d = (float)divisor;
        lx_array *w = lx_array_copy(v);
        if (!w) return lx_last_status();
        for (int64_t i = 0; i < w->size; i++) lx_f32(w)[i] = lx_f32(w)[i] / d;
        st = lx_variable_set_value(*out, w, true);
        lx_release(w);
    }
    return st;
}

/* MaxText's Dropout(rngs=rngs) constructor: self.rngs = rngs.fork(), one draw from every stream.
 * The dropout rate is 0 in this model, so the forked Rngs is not kept. */
static lx_status dropout_fork(nnx_rngs *rngs) {
    if (!rngs) return LX_OK;
    nnx_rngs *f = NULL;
    LX_TRY(nnx_rngs_fork(rngs, &f));
    nnx_rngs_release(f);
    return LX_OK;
}

/* ------------------------------------------------------------------ RMSNorm */

typedef struct {
    int64_t num_features;
    double epsilon;
    lx_strs kernel_axes;
    lx_initializer scale_init;
} rms_norm_config;
typedef struct {
    nnx_module base;
    rms_norm_config cfg;
    lx_variable *scale;
} rms_norm_mod;

static const lx_initializer ONES_INIT = {.kind = LX_INIT_ONES, .name = "ones"};

static const lx_field RMS_NORM_FIELDS[] = {
    LX_FIELD_REQUIRED_INT(rms_norm_config, num_features),
    LX_FIELD_FLOAT(rms_norm_config, epsilon, 1e-6),
    LX_FIELD_STRS(rms_norm_config, kernel_axes),
    LX_FIELD_OBJ(rms_norm_config, scale_init, "initializer", &ONES_INIT),
};

static lx_status rms_norm_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    rms_norm_mod *m = (rms_norm_mod *)self;
    if (m->cfg.num_features <= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "RMSNorm: num_features must be positive, got %lld",
                       (long long)m->cfg.num_features);
    return make_param(rngs, &m->cfg.scale_init, 1, (int64_t[]){m->cfg.num_features}, &m->cfg.kernel_axes, 1.0,
                      &m->scale);
}

static lx_array *llama_rms_norm_forward_unframed(nnx_module *self, lx_array *x) {
    if (!x) return NULL;
    rms_norm_mod *m = (rms_norm_mod *)self;
    /* x * rsqrt(mean(x^2, -1) + eps) * scale: the fused op (nn.h), one pass, its own VJP */
    return lx_rms_norm(x, lx_variable_get_value(m->scale), (float)m->cfg.epsilon);
}

/* The public entry: runs inside the module's frame, as nnx_call does (intercept.h). */
lx_array *llama_rms_norm_forward(nnx_module *self, lx_array *x) {
    int framed = nnx_frame_enter((nnx_module *)self);
    if (framed < 0) return NULL;
    lx_array *y = llama_rms_norm_forward_unframed(self, x);
    nnx_frame_leave(framed);
    return y;
}

static lx_status rms_norm_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return nnx_return_array(out, llama_rms_norm_forward(self, x));
}

static const nnx_field RMS_NORM_NNX_FIELDS[] = {NNX_VAR(rms_norm_mod, scale)};
static const nnx_method RMS_NORM_METHODS[] = {{"__call__", rms_norm_call}};
const nnx_type LLAMA_RMS_NORM_TYPE = {
    .name = "RMSNorm", .size = sizeof(rms_norm_mod), .fields = RMS_NORM_NNX_FIELDS, .nfields = 1,
    .config = RMS_NORM_FIELDS, .nconfig = 4, .config_offset = offsetof(rms_norm_mod, cfg),
    .methods = RMS_NORM_METHODS, .nmethods = 1, .init = rms_norm_init,
};

/* ------------------------------------------------------------------ DenseGeneral */

typedef struct {
    lx_ints in_features_shape, out_features_shape, axis;
    lx_strs kernel_axes;
    lx_initializer kernel_init;
    double depth_scaling;
} dense_config;
typedef struct {
    nnx_module base;
    dense_config cfg;
    lx_variable *kernel;
} dense_mod;

/* nd_dense_init(1.0, "fan_in", "truncated_normal"): the axes are set from the shape at init. */
static const lx_initializer ND_TRUNC = {.kind = LX_INIT_VARIANCE_SCALING, .name = "variance_scaling",
                                        .scale = 1.0, .mode = LX_FAN_IN,
                                        .distribution = LX_DIST_TRUNCATED_NORMAL};

static const lx_field DENSE_FIELDS[] = {
    LX_FIELD_REQUIRED_INTS(dense_config, in_features_shape),
    LX_FIELD_REQUIRED_INTS(dense_config, out_features_shape),
    LX_FIELD_INTS(dense_config, axis),
    LX_FIELD_STRS(dense_config, kernel_axes),
    LX_FIELD_OBJ(dense_config, kernel_init, "initializer", &ND_TRUNC),
    LX_FIELD_FLOAT(dense_config, depth_scaling, 1.0),
};

static lx_status dense_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    dense_mod *m = (dense_mod *)self;
    dense_config *c = &m->cfg;
    if (c->axis.n == 0) c->axis = lx_ints_of(1, (int64_t[]){-1});
    int nin = c->in_features_shape.n, nout = c->out_features_shape.n;
    if (nin != c->axis.n)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "DenseGeneral: in_features_shape has %d entries but axis has %d", nin,
                       c->axis.n);
    if (nin + nout > LX_MAX_DIMS || nout == 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "DenseGeneral: bad kernel rank %d", nin + nout);
    int64_t shape[LX_MAX_DIMS];
    for (int i = 0; i < nin; i++) shape[i] = c->in_features_shape.v[i];
    for (int i = 0; i < nout; i++) shape[nin + i] = c->out_features_shape.v[i];
    for (int i = 0; i < nin + nout; i++)
        if (shape[i] <= 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "DenseGeneral: kernel sizes must be positive");
    /* nd_dense_init: variance_scaling(..., in_axis=arange(nin), out_axis=arange(nin, nin+nout)) on
     * the whole kernel shape (MaxText does not flatten as Flax's DenseGeneral does). */
    lx_initializer init = c->kernel_init;
    if (init.kind == LX_INIT_VARIANCE_SCALING) {
        init.in_axis.n = nin;
        for (int i = 0; i < nin; i++) init.in_axis.axis[i] = i;
        init.out_axis.n = nout;
        for (int i = 0; i < nout; i++) init.out_axis.axis[i] = nin + i;
        init.batch_axis.n = 0;
    }
    return make_param(rngs, &init, nin + nout, shape, &c->kernel_axes, c->depth_scaling, &m->kernel);
}

static lx_array *llama_dense_general_forward_unframed(nnx_module *self, lx_array *x) {
    if (!x) return NULL;
    dense_mod *m = (dense_mod *)self;
    int n = m->cfg.axis.n;
    int64_t lhs[LX_MAX_DIMS], rhs[LX_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        int64_t a = m->cfg.axis.v[i];
        lhs[i] = a < 0 ? a + x->ndim : a;
        rhs[i] = i;
    }
    return lx_dot_general(x, lx_variable_get_value(m->kernel), n, lhs, rhs, 0, NULL, NULL);
}

/* The public entry: runs inside the module's frame, as nnx_call does (intercept.h). */
lx_array *llama_dense_general_forward(nnx_module *self, lx_array *x) {
    int framed = nnx_frame_enter((nnx_module *)self);
    if (framed < 0) return NULL;
    lx_array *y = llama_dense_general_forward_unframed(self, x);
    nnx_frame_leave(framed);
    return y;
}

static lx_status dense_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    return nnx_return_array(out, llama_dense_general_forward(self, x));
}

static const nnx_field DENSE_NNX_FIELDS[] = {NNX_VAR(dense_mod, kernel)};
static const nnx_method DENSE_METHODS[] = {{"__call__", dense_call}};
const nnx_type LLAMA_DENSE_GENERAL_TYPE = {
    .name = "DenseGeneral", .size = sizeof(dense_mod), .fields = DENSE_NNX_FIELDS, .nfields = 1,
    .config = DENSE_FIELDS, .nconfig = 6, .config_offset = offsetof(dense_mod, cfg),
    .methods = DENSE_METHODS, .nmethods = 1, .init = dense_init,
};

/* ------------------------------------------------------------------ Embed */

typedef struct {
    int64_t num_embeddings, num_features;
    lx_initializer embedding_init;
} embed_config;
typedef struct {
    nnx_module base;
    embed_config cfg;
    lx_variable *embedding;
} embed_mod;

/* default_embed_init = variance_scaling(1.0, "fan_in", "normal", out_axis=0) */
static const lx_initializer DEFAULT_EMBED_INIT = {
    .kind = LX_INIT_VARIANCE_SCALING, .name = "variance_scaling", .scale = 1.0, .mode = LX_FAN_IN,
    .distribution = LX_DIST_NORMAL, .in_axis = {1, {-2}}, .out_axis = {1, {0}}, .batch_axis = {0, {0}}};

static const lx_field EMBED_FIELDS[] = {
    LX_FIELD_REQUIRED_INT(embed_config, num_embeddings),
    LX_FIELD_REQUIRED_INT(embed_config, num_features),
    LX_FIELD_OBJ(embed_config, embedding_init, "initializer", &DEFAULT_EMBED_INIT),
};

static lx_status embed_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    embed_mod *m = (embed_mod *)self;
    if (m->cfg.num_embeddings <= 0 || m->cfg.num_features <= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Embed: num_embeddings and num_features must be positive");
    lx_strs axes = {2, {(char *)"vocab", (char *)"embed_vocab"}};
    return make_param(rngs, &m->cfg.embedding_init, 2, (int64_t[]){m->cfg.num_embeddings, m->cfg.num_features},
                      &axes, 1.0, &m->embedding);
}

static lx_array *llama_embed_forward_unframed(nnx_module *self, lx_array *tokens) {
    if (!tokens) return NULL;
    embed_mod *m = (embed_mod *)self;
    if (tokens->dtype != LX_I32) {
        lx_fail(LX_ERR_DTYPE, "Input type must be an integer or unsigned integer.");
        return NULL;
    }
    return lx_take(lx_variable_get_value(m->embedding), tokens, 0);
}

/* The public entry: runs inside the module's frame, as nnx_call does (intercept.h). */
lx_array *llama_embed_forward(nnx_module *self, lx_array *tokens) {
    int framed = nnx_frame_enter((nnx_module *)self);
    if (framed < 0) return NULL;
    lx_array *y = llama_embed_forward_unframed(self, tokens);
    nnx_frame_leave(framed);
    return y;
}

static lx_status embed_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    return nnx_return_array(out, llama_embed_forward(self, x));
}

static const nnx_field EMBED_NNX_FIELDS[] = {NNX_VAR(embed_mod, embedding)};
static const nnx_method EMBED_METHODS[] = {{"__call__", embed_call}};
const nnx_type LLAMA_EMBED_TYPE = {
    .name = "Embed", .size = sizeof(embed_mod), .fields = EMBED_NNX_FIELDS, .nfields = 1,
    .config = EMBED_FIELDS, .nconfig = 3, .config_offset = offsetof(embed_mod, cfg),
    .methods = EMBED_METHODS, .nmethods = 1, .init = embed_init,
};

/* ------------------------------------------------------------------ KVCache */

typedef struct {
    int64_t batch, max_length, kv_heads, head_dim;
} kv_cache_config;
typedef struct {
    nnx_module base;
    kv_cache_config cfg;
    lx_variable *cached_key, *cached_value, *cache_index;
} kv_cache_mod;

static const lx_field KV_CACHE_FIELDS[] = {
    LX_FIELD_REQUIRED_INT(kv_cache_config, batch),
    LX_FIELD_REQUIRED_INT(kv_cache_config, max_length),
    LX_FIELD_REQUIRED_INT(kv_cache_config, kv_heads),
    LX_FIELD_REQUIRED_INT(kv_cache_config, head_dim),
};

static lx_status cache_var(lx_dtype dtype, int ndim, const int64_t *shape, lx_variable **out) {
    lx_array *a = nnx_abstract_mode() ? lx_array_abstract(dtype, ndim, shape) : lx_array_new(dtype, ndim, shape);
    if (!a) return lx_last_status();
    lx_status st = lx_variable_new(&lx_Cache, a, out);
    lx_release(a);
    return st;
}

static lx_status kv_cache_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    (void)rngs;
    kv_cache_mod *m = (kv_cache_mod *)self;
    kv_cache_config *c = &m->cfg;
    if (c->batch <= 0 || c->max_length <= 0 || c->kv_heads <= 0 || c->head_dim <= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "KVCache: sizes must be positive");
    int64_t shape[4] = {c->batch, c->max_length, c->kv_heads, c->head_dim};
    LX_TRY(cache_var(LX_F32, 4, shape, &m->cached_key));
    LX_TRY(cache_var(LX_F32, 4, shape, &m->cached_value));
    return cache_var(LX_I32, 0, NULL, &m->cache_index);
}

static const nnx_field KV_CACHE_NNX_FIELDS[] = {NNX_VAR(kv_cache_mod, cached_key), NNX_VAR(kv_cache_mod, cached_value),
                                                NNX_VAR(kv_cache_mod, cache_index)};
const nnx_type LLAMA_KV_CACHE_TYPE = {
    .name = "KVCache", .size = sizeof(kv_cache_mod), .fields = KV_CACHE_NNX_FIELDS, .nfields = 3,
    .config = KV_CACHE_FIELDS, .nconfig = 4, .config_offset = offsetof(kv_cache_mod, cfg),
    .init = kv_cache_init,
};

/* new = cache with `update` (B, S, K, D) written at [:, idx:idx+S] (a new array: the Variable's
 * old array may be the caller's, so it is never written in place). */
static lx_array *cache_insert(lx_array *cache, lx_array *update, int64_t idx) {
    if (!cache || !update) return NULL;
    int64_t T = cache->shape[1], S = update->shape[1];
    lx_array *parts[3];
    int n = 0;
    if (idx > 0) parts[n++] = lx_slice(cache, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(0, idx)});
    parts[n++] = update;
    if (idx + S < T) parts[n++] = lx_slice(cache, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(idx + S, T)});
    return n == 1 ? update : lx_concatenate(n, parts, 1);
}

/* ------------------------------------------------------------------ RoPE */

lx_status llama_rope_tables(lx_array *positions, int64_t head_dim, double min_ts, double max_ts,
                            lx_array **cos_out, lx_array **sin_out) {
    if (!cos_out || !sin_out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "RotaryEmbedding: an output is NULL");
    *cos_out = *sin_out = NULL;
    if (!positions) return lx_null_input("RotaryEmbedding: positions is NULL");
    if (positions->dtype != LX_I32 || positions->ndim != 2)
        return lx_fail(positions->dtype != LX_I32 ? LX_ERR_DTYPE : LX_ERR_SHAPE,
                       "RotaryEmbedding: positions must be int32 (batch, seq), got %s",
                       lx_array_sig(positions, (char[64]){0}, 64));
    if (head_dim <= 0 || head_dim % 2)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "Embedding dim for rotary position embedding must be a multiple of 2.");
    int64_t B = positions->shape[0], S = positions->shape[1], D = head_dim, half = D / 2;
    int64_t shape[4] = {B, S, 1, D};
    if (lx_is_abstract(positions)) {
        *cos_out = lx_autorelease(lx_array_abstract(LX_F32, 4, shape));
        *sin_out = lx_autorelease(lx_array_abstract(LX_F32, 4, shape));
        return *cos_out && *sin_out ? LX_OK : lx_last_status();
    }
    lx_array *c = lx_autorelease(lx_array_empty(LX_F32, 4, shape));
    lx_array *s = lx_autorelease(lx_array_empty(LX_F32, 4, shape));
    if (!c || !s) return lx_last_status();
    /* timescale = min * (max/min) ** (2i/D) in float32 (jnp: int arange / int -> f32 fraction) */
    float ts[LX_MAX_DIMS * 128];
    float *timescale = half <= (int64_t)(sizeof ts / sizeof ts[0]) ? ts : NULL;
    if (!timescale) return lx_fail(LX_ERR_INVALID_ARGUMENT, "RotaryEmbedding: head_dim too large");
    float ratio = (float)(max_ts / min_ts);
    for (int64_t i = 0; i < half; i++) {
        float fraction = (float)(2 * i) / (float)D;
        timescale[i] = (float)min_ts * powf(ratio, fraction);
    }
    const int32_t *p = lx_i32(positions);
    for (int64_t r = 0; r < B * S; r++) {
        float *cr = lx_f32(c) + r * D, *sr = lx_f32(s) + r * D;
        for (int64_t i = 0; i < half; i++) {
            float angle = (float)p[r] / timescale[i];
            cr[i] = cr[i + half] = cosf(angle);
            sr[i] = sr[i + half] = sinf(angle);
        }
    }
    *cos_out = c;
    *sin_out = s;
    return LX_OK;
}

/* rotate_half(x) * sin == swap_halves(x) * sin_signed with sin_signed = (-sin_half, sin_half): the
 * halves swap is one reversed slice over a (..., 2, D/2) view, so RoPE is 4 ops per tensor. The
 * products are the same floats (negation is exact). */
static lx_array *rope_signed(lx_array *x, lx_array *cos, lx_array *sin_signed) {
    if (!x || !cos || !sin_signed) return NULL;
    int nd = x->ndim;
    if (nd < 1 || nd + 1 > LX_MAX_DIMS || x->shape[nd - 1] % 2) {
        lx_fail(LX_ERR_SHAPE, "RotaryEmbedding: the last axis must be even, got %s", lx_array_sig(x, (char[64]){0}, 64));
        return NULL;
    }
    int64_t shape[LX_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)nd);
    shape[nd - 1] = x->shape[nd - 1] / 2;
    shape[nd] = shape[nd - 1];
    shape[nd - 1] = 2;
    lx_range r[LX_MAX_DIMS];
    for (int i = 0; i < nd + 1; i++) r[i] = LX_RANGE_ALL;
    r[nd - 1] = LX_RANGE_STEP(LX_NIL, LX_NIL, -1);
    lx_array *swapped = lx_reshape(lx_slice(lx_reshape(x, nd + 1, shape), nd + 1, r), nd, x->shape);
    return lx_add(lx_mul(x, cos), lx_mul(swapped, sin_signed));
}

/* (-sin_half, sin_half) from the duplicated table (a constant of the positions, made in C). */
static lx_array *signed_sin(lx_array *sin) {
    if (!sin) return NULL;
    if (lx_is_abstract(sin)) return lx_autorelease(lx_array_abstract(LX_F32, sin->ndim, sin->shape));
    lx_array *s = lx_autorelease(lx_array_copy(sin));
    if (!s) return NULL;
    int64_t D = s->shape[s->ndim - 1];
    for (int64_t r = 0; r < s->size / D; r++)
        for (int64_t i = 0; i < D / 2; i++) lx_f32(s)[r * D + i] = -lx_f32(s)[r * D + i];
    return s;
}

lx_array *llama_apply_rope(lx_array *x, lx_array *cos, lx_array *sin) {
    if (!x || !cos || !sin) {
        (void)lx_null_input("RotaryEmbedding: an input is NULL");
        return NULL;
    }
    if (sin->dtype != LX_F32 || sin->ndim < 1 || sin->shape[sin->ndim - 1] % 2) {
        lx_fail(sin->dtype != LX_F32 ? LX_ERR_DTYPE : LX_ERR_SHAPE, "RotaryEmbedding: bad sin table %s",
                lx_array_sig(sin, (char[64]){0}, 64));
        return NULL;
    }
    return rope_signed(x, cos, signed_sin(sin));
}

lx_array *llama_positions(int64_t batch, int64_t seq, int64_t start) {
    lx_array *p = lx_autorelease(lx_array_empty(LX_I32, 2, (int64_t[]){batch, seq}));
    if (!p) return NULL;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t s = 0; s < seq; s++) lx_i32(p)[b * seq + s] = (int32_t)(start + s);
    return p;
}

/* ------------------------------------------------------------------ Attention */

typedef struct {
    nnx_module base;
    llama_config cfg;
    nnx_module *KVCache_0, *query, *key, *value, *out;
} attention_mod;

static lx_status dense_child(nnx_rngs *rngs, int nin, const int64_t *in, int nout, const int64_t *outs, int naxis,
                             const int64_t *axis, int naxes, const char *const *axes, bool normal, double depth,
                             nnx_module **out) {
    lx_initializer init = ND_TRUNC;
    if (normal) init.distribution = LX_DIST_NORMAL; /* Attention's kernel_init: nd_dense_init(1, fan_in, normal) */
    lx_call c = LX_CALL_KWARGS(LX_KW("in_features_shape", lx_ints_v(nin, in)),
                               LX_KW("out_features_shape", lx_ints_v(nout, outs)),
                               LX_KW("axis", lx_ints_v(naxis, axis)), LX_KW("kernel_axes", lx_strs_v(naxes, axes)),
                               LX_KW("kernel_init", lx_ptr_v("initializer", &init)),
                               LX_KW_FLOAT("depth_scaling", depth));
    return nnx_module_new(&LLAMA_DENSE_GENERAL_TYPE, &c, rngs, out);
}

static lx_status attention_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    attention_mod *m = (attention_mod *)self;
    const llama_config *c = &m->cfg;
    LX_TRY(llama_config_check(c));
    int64_t E = c->emb_dim, H = c->num_query_heads, K = c->num_kv_heads, D = c->head_dim;
    if (c->cache_batch > 0) {
        /* KVCache_0 exists outside train mode; it draws no key */
        lx_call kc = LX_CALL_KWARGS(LX_KW_INT("batch", c->cache_batch), LX_KW_INT("max_length", c->max_target_length),
                                    LX_KW_INT("kv_heads", K), LX_KW_INT("head_dim", D));
        LX_TRY(nnx_module_new(&LLAMA_KV_CACHE_TYPE, &kc, rngs, &m->KVCache_0));
    }
    /* query: kernel_init / depth_scaling, depth_scaling = sqrt(head_dim) (no qk norm here) */
    LX_TRY(dense_child(rngs, 1, (int64_t[]){E}, 2, (int64_t[]){H, D}, 1, (int64_t[]){-1}, 3,
                       (const char *[]){"embed", "q_heads", "kv"}, true, sqrt((double)D), &m->query));
    LX_TRY(dense_child(rngs, 1, (int64_t[]){E}, 2, (int64_t[]){K, D}, 1, (int64_t[]){-1}, 3,
                       (const char *[]){"embed", "kv_heads", "kv_head_dim"}, true, 1.0, &m->key));
    LX_TRY(dense_child(rngs, 1, (int64_t[]){E}, 2, (int64_t[]){K, D}, 1, (int64_t[]){-1}, 3,
                       (const char *[]){"embed", "kv_heads", "kv_head_dim"}, true, 1.0, &m->value));
    return dense_child(rngs, 2, (int64_t[]){H, D}, 1, (int64_t[]){E}, 2, (int64_t[]){-2, -1}, 3,
                       (const char *[]){"heads", "kv", "embed"}, true, 1.0, &m->out);
}

/* The attention mask as bool, broadcastable to the scores (B, K, S, G, L):
 *  - no cache: causal by index (key j <= query i), and same segment when segment ids are given;
 *  - cache: key slot j <= idx + i (slot j holds absolute position j). */
static lx_array *attention_mask(int64_t B, int64_t S, int64_t L, int64_t offset, lx_array *segment_ids) {
    bool seg = segment_ids != NULL;
    int64_t shape[5] = {seg ? B : 1, 1, S, 1, L};
    lx_array *m = lx_autorelease(lx_array_empty(LX_BOOL, 5, shape));
    if (!m) return NULL;
    uint8_t *p = lx_bool(m);
    for (int64_t b = 0; b < shape[0]; b++)
        for (int64_t i = 0; i < S; i++)
            for (int64_t j = 0; j < L; j++) {
                bool ok = j <= offset + i;
                if (seg) {
                    const int32_t *sg = lx_i32(segment_ids) + b * S;
                    ok = ok && sg[i] == sg[j];
                }
                p[(b * S + i) * L + j] = ok;
            }
    return m;
}

static lx_array *llama_attention_forward_unframed(nnx_module *self, lx_array *x, lx_array *positions, lx_array *segment_ids,
                                  bool use_cache) {
    if (!x || !positions) return NULL;
    attention_mod *m = (attention_mod *)self;
    const llama_config *c = &m->cfg;
    if (x->ndim != 3) {
        lx_fail(LX_ERR_SHAPE, "Attention: inputs must be (batch, seq, emb), got %s",
                lx_array_sig(x, (char[64]){0}, 64));
        return NULL;
    }
    int64_t B = x->shape[0], S = x->shape[1], H = c->num_query_heads, K = c->num_kv_heads, D = c->head_dim;
    int64_t G = H / K;
    if (!lx_shape_eq(positions, 2, (int64_t[]){B, S})) {
        lx_fail(LX_ERR_SHAPE, "Attention: decoder_positions %s do not match inputs (batch %lld, seq %lld)",
                lx_array_sig(positions, (char[64]){0}, 64), (long long)B, (long long)S);
        return NULL;
    }
    if (segment_ids && (segment_ids->dtype != LX_I32 || !lx_shape_eq(segment_ids, 2, (int64_t[]){B, S}))) {
        lx_fail(segment_ids->dtype != LX_I32 ? LX_ERR_DTYPE : LX_ERR_SHAPE, "Attention: decoder_segment_ids must be int32 (%lld, %lld)",
                (long long)B, (long long)S);
        return NULL;
    }
    lx_array *cs, *sn;
    if (llama_rope_tables(positions, D, c->rope_min_timescale, c->rope_max_timescale, &cs, &sn) != LX_OK) return NULL;
    lx_array *ss = signed_sin(sn);
    lx_array *q = rope_signed(llama_dense_general_forward(m->query, x), cs, ss);
    lx_array *k = rope_signed(llama_dense_general_forward(m->key, x), cs, ss);
    lx_array *v = llama_dense_general_forward(m->value, x);
    if (!q || !k || !v) return NULL;
    int64_t L = S, offset = 0;
    lx_array *mask;
    if (use_cache) {
        kv_cache_mod *kc = (kv_cache_mod *)m->KVCache_0;
        if (!kc) {
            lx_fail(LX_ERR_INVALID_ARGUMENT,
                    "Attention: model_mode prefill/autoregressive needs a KV cache (build the model with cache_batch > 0)");
            return NULL;
        }
        if (segment_ids) {
            lx_fail(LX_ERR_UNSUPPORTED, "Attention: decoder_segment_ids with the KV cache");
            return NULL;
        }
        lx_array *ck = lx_variable_get_value(kc->cached_key), *cv = lx_variable_get_value(kc->cached_value);
        lx_array *ci = lx_variable_get_value(kc->cache_index);
        if (B != kc->cfg.batch) {
            lx_fail(LX_ERR_SHAPE, "Attention: batch %lld does not match the KV cache batch %lld", (long long)B,
                    (long long)kc->cfg.batch);
            return NULL;
        }
        int64_t idx = lx_is_abstract(ci) ? 0 : lx_i32(ci)[0];
        if (idx < 0 || idx + S > kc->cfg.max_length) {
            lx_fail(LX_ERR_INVALID_ARGUMENT,
                    "Attention: sequence too long for the KV cache: %lld cached + %lld new > max_target_length %lld",
                    (long long)idx, (long long)S, (long long)kc->cfg.max_length);
            return NULL;
        }
        lx_array *nk = cache_insert(ck, k, idx), *nv = cache_insert(cv, v, idx);
        lx_array *ni = lx_autorelease(lx_array_empty(LX_I32, 0, NULL));
        if (!nk || !nv || !ni) return NULL;
        lx_i32(ni)[0] = (int32_t)(idx + S);
        if (lx_variable_set_value(kc->cached_key, nk, true) != LX_OK ||
            lx_variable_set_value(kc->cached_value, nv, true) != LX_OK ||
            lx_variable_set_value(kc->cache_index, ni, true) != LX_OK)
            return NULL;
        L = idx + S;
        offset = idx;
        k = L == kc->cfg.max_length ? nk : lx_slice(nk, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(0, L)});
        v = L == kc->cfg.max_length ? nv : lx_slice(nv, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(0, L)});
        mask = attention_mask(B, S, L, offset, NULL);
    } else {
        mask = attention_mask(B, S, L, 0, segment_ids);
    }
    /* GQA: query head h reads kv head h / G; scores (B, K, S, G, L), no runtime 1/sqrt(D) */
    lx_array *q5 = lx_reshape(q, LX_SHAPE(B, S, K, G, D));
    lx_array *scores = lx_dot_general(q5, k, 1, (int64_t[]){4}, (int64_t[]){3}, 2, (int64_t[]){0, 2},
                                      (int64_t[]){0, 2});
    scores = lx_where(mask, scores, lx_scalar(LLAMA_MASK_VALUE));
    lx_array *w = lx_softmax(scores, -1);
    lx_array *o = lx_dot_general(w, v, 1, (int64_t[]){4}, (int64_t[]){1}, 2, (int64_t[]){0, 1}, (int64_t[]){0, 2});
    o = lx_reshape(lx_transpose(o, LX_AXES(0, 2, 1, 3, 4)), LX_SHAPE(B, S, H, D));
    return llama_dense_general_forward(m->out, o);
}

/* The public entry: runs inside the module's frame, as nnx_call does (intercept.h). */
lx_array *llama_attention_forward(nnx_module *self, lx_array *x, lx_array *positions, lx_array *segment_ids,
                                  bool use_cache) {
    int framed = nnx_frame_enter((nnx_module *)self);
    if (framed < 0) return NULL;
    lx_array *y = llama_attention_forward_unframed(self, x, positions, segment_ids, use_cache);
    nnx_frame_leave(framed);
    return y;
}

/* ------------------------------------------------------------------ MlpBlock */

typedef struct {
    nnx_module base;
    llama_config cfg;
    nnx_module *wi_0, *wi_1, *wo;
} mlp_mod;

static lx_status mlp_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    mlp_mod *m = (mlp_mod *)self;
    int64_t E = m->cfg.emb_dim, M = m->cfg.mlp_dim;
    LX_TRY(llama_config_check(&m->cfg));
    const char *in_axes[] = {"embed", "mlp"}, *out_axes[] = {"mlp", "embed"};
    LX_TRY(dense_child(rngs, 1, &E, 1, &M, 1, (int64_t[]){-1}, 2, in_axes, false, 1.0, &m->wi_0));
    LX_TRY(dense_child(rngs, 1, &E, 1, &M, 1, (int64_t[]){-1}, 2, in_axes, false, 1.0, &m->wi_1));
    LX_TRY(dropout_fork(rngs)); /* self.dropout = Dropout(..., rngs=rngs) */
    return dense_child(rngs, 1, &M, 1, &E, 1, (int64_t[]){-1}, 2, out_axes, false, 1.0, &m->wo);
}

static lx_array *llama_mlp_forward_unframed(nnx_module *self, lx_array *x) {
    mlp_mod *m = (mlp_mod *)self;
    /* silu(x W0) * (x W1), then W_o (activations ("silu", "linear")) */
    lx_array *h = lx_mul(lx_silu(llama_dense_general_forward(m->wi_0, x)), llama_dense_general_forward(m->wi_1, x));
    return llama_dense_general_forward(m->wo, h);
}

/* The public entry: runs inside the module's frame, as nnx_call does (intercept.h). */
lx_array *llama_mlp_forward(nnx_module *self, lx_array *x) {
    int framed = nnx_frame_enter((nnx_module *)self);
    if (framed < 0) return NULL;
    lx_array *y = llama_mlp_forward_unframed(self, x);
    nnx_frame_leave(framed);
    return y;
}

/* ------------------------------------------------------------------ call arguments */

lx_status llama_read_call(const lx_call *c, const char *input_name, lx_array **inputs, lx_array **positions,
                          lx_array **segment_ids, bool *use_cache, const char **mode) {
    *inputs = *positions = *segment_ids = NULL;
    LX_TRY(lx_call_array(c, 0, input_name, inputs));
    const lx_value *seg = lx_call_get(c, 1, "decoder_segment_ids");
    if (seg && seg->kind != LX_V_NONE) LX_TRY(lx_call_array(c, 1, "decoder_segment_ids", segment_ids));
    LX_TRY(lx_call_array(c, 2, "decoder_positions", positions));
    bool det;
    LX_TRY(lx_call_bool(c, 3, "deterministic", true, &det));
    if (!det) return lx_fail(LX_ERR_UNSUPPORTED, "llama: dropout (deterministic=False) is not supported (rate 0.0)");
    const char *mm;
    LX_TRY(lx_call_str(c, 4, "model_mode", LLAMA_MODE_TRAIN, &mm));
    if (strcmp(mm, LLAMA_MODE_TRAIN) && strcmp(mm, LLAMA_MODE_PREFILL) && strcmp(mm, LLAMA_MODE_AUTOREGRESSIVE))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama: model_mode must be train, prefill or autoregressive, got '%s'",
                       mm);
    *use_cache = strcmp(mm, LLAMA_MODE_TRAIN) != 0;
    if (mode) *mode = mm;
    return LX_OK;
}

/* ------------------------------------------------------------------ LlamaDecoderLayer */

typedef struct {
    nnx_module base;
    llama_config cfg;
    nnx_module *pre_self_attention_layer_norm, *self_attention, *post_self_attention_layer_norm, *mlp;
} layer_mod;

static lx_status norm_child(const llama_config *c, nnx_rngs *rngs, nnx_module **out) {
    lx_call nc = LX_CALL_KWARGS(LX_KW_INT("num_features", c->emb_dim),
                                LX_KW_FLOAT("epsilon", c->normalization_layer_epsilon),
                                LX_KW("kernel_axes", lx_strs_v(1, (const char *[]){"norm"})));
    return nnx_module_new(&LLAMA_RMS_NORM_TYPE, &nc, rngs, out);
}

static lx_status layer_init(nnx_module *self, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    layer_mod *m = (layer_mod *)self;
    LX_TRY(llama_config_check(&m->cfg));
    lx_kwarg kw[LLAMA_CONFIG_NKW];
    llama_config_kwargs(&m->cfg, kw);
    lx_call cc = {0, NULL, LLAMA_CONFIG_NKW, kw};
    LX_TRY(norm_child(&m->cfg, rngs, &m->pre_self_attention_layer_norm));
    LX_TRY(nnx_module_new(&LLAMA_ATTENTION_TYPE, &cc, rngs, &m->self_attention));
    LX_TRY(norm_child(&m->cfg, rngs, &m->post_self_attention_layer_norm));
    LX_TRY(nnx_module_new(&LLAMA_MLP_BLOCK_TYPE, &cc, rngs, &m->mlp));
    return dropout_fork(rngs); /* self.dropout = Dropout(rate, broadcast_dims=(-2,), rngs=rngs) */
}

static lx_array *llama_layer_forward_unframed(nnx_module *self, lx_array *x, lx_array *positions, lx_array *segment_ids,
                              bool use_cache) {
    layer_mod *m = (layer_mod *)self;
    lx_array *lnx = llama_rms_norm_forward(m->pre_self_attention_layer_norm, x);
    lx_array *attn = llama_attention_forward(m->self_attention, lnx, positions, segment_ids, use_cache);
    lx_array *h = lx_add(x, attn);
    lx_array *mlp = llama_mlp_forward(m->mlp, llama_rms_norm_forward(m->post_self_attention_layer_norm, h));
    return lx_add(mlp, h);
}

/* The public entry: runs inside the module's frame, as nnx_call does (intercept.h). */
lx_array *llama_layer_forward(nnx_module *self, lx_array *x, lx_array *positions, lx_array *segment_ids,
                              bool use_cache) {
    int framed = nnx_frame_enter((nnx_module *)self);
    if (framed < 0) return NULL;
    lx_array *y = llama_layer_forward_unframed(self, x, positions, segment_ids, use_cache);
    nnx_frame_leave(framed);
    return y;
}

static lx_status layer_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x, *pos, *seg;
    bool use_cache = false;
    LX_TRY(llama_read_call(c, "inputs", &x, &pos, &seg, &use_cache, NULL));
    return nnx_return_array(out, llama_layer_forward(self, x, pos, seg, use_cache));
}

static lx_status attention_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x, *pos, *seg;
    bool use_cache = false;
    LX_TRY(llama_read_call(c, "inputs_q", &x, &pos, &seg, &use_cache, NULL));
    return nnx_return_array(out, llama_attention_forward(self, x, pos, seg, use_cache));
}

static lx_status mlp_call(nnx_module *self, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "inputs", &x));
    return nnx_return_array(out, llama_mlp_forward(self, x));
}

static const nnx_field ATTENTION_FIELDS[] = {NNX_CHILD(attention_mod, KVCache_0), NNX_CHILD(attention_mod, query),
                                             NNX_CHILD(attention_mod, key), NNX_CHILD(attention_mod, value),
                                             NNX_CHILD(attention_mod, out)};
static const nnx_method ATTENTION_METHODS[] = {{"__call__", attention_call}};
const nnx_type LLAMA_ATTENTION_TYPE = {
    .name = "Attention", .size = sizeof(attention_mod), .fields = ATTENTION_FIELDS, .nfields = 5,
    .config = LLAMA_CONFIG_FIELDS, .nconfig = LLAMA_CONFIG_NKW, .config_offset = offsetof(attention_mod, cfg),
    .methods = ATTENTION_METHODS, .nmethods = 1, .init = attention_init,
};

static const nnx_field MLP_FIELDS[] = {NNX_CHILD(mlp_mod, wi_0), NNX_CHILD(mlp_mod, wi_1), NNX_CHILD(mlp_mod, wo)};
static const nnx_method MLP_METHODS[] = {{"__call__", mlp_call}};
const nnx_type LLAMA_MLP_BLOCK_TYPE = {
    .name = "MlpBlock", .size = sizeof(mlp_mod), .fields = MLP_FIELDS, .nfields = 3,
    .config = LLAMA_CONFIG_FIELDS, .nconfig = LLAMA_CONFIG_NKW, .config_offset = offsetof(mlp_mod, cfg),
    .methods = MLP_METHODS, .nmethods = 1, .init = mlp_init,
};

static const nnx_field LAYER_FIELDS[] = {
    NNX_CHILD(layer_mod, pre_self_attention_layer_norm), NNX_CHILD(layer_mod, self_attention),
    NNX_CHILD(layer_mod, post_self_attention_layer_norm), NNX_CHILD(layer_mod, mlp)};
static const nnx_method LAYER_METHODS[] = {{"__call__", layer_call}};
const nnx_type LLAMA_DECODER_LAYER_TYPE = {
    .name = "LlamaDecoderLayer", .size = sizeof(layer_mod), .fields = LAYER_FIELDS, .nfields = 4,
    .config = LLAMA_CONFIG_FIELDS, .nconfig = LLAMA_CONFIG_NKW, .config_offset = offsetof(layer_mod, cfg),
    .methods = LAYER_METHODS, .nmethods = 1, .init = layer_init,
};
