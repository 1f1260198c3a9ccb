/* flax.linen.Embed: a lookup table made in setup, `__call__` (take) and `attend` (x @ E^T). */
#include "layers_internal.h"
#include "linnx/linalg.h"
#include "linnx/ops.h"

static const lx_field EMBED_FIELDS[] = {
    LX_FIELD_REQUIRED_INT(linen_embed_config, num_embeddings),
    LX_FIELD_REQUIRED_INT(linen_embed_config, features),
    LX_FIELD_STR(linen_embed_config, dtype, NULL),
    LX_FIELD_DTYPE(linen_embed_config, param_dtype, "float32"),
    LL_FIELD_INIT(linen_embed_config, embedding_init, &ll_embed_init),
};

static lx_status embed_setup(linen_scope *s) {
    const linen_embed_config *cfg = linen_config(s);
    lx_array *e;
    int64_t shape[2] = {cfg->num_embeddings, cfg->features};
    return linen_param(s, "embedding", &cfg->embedding_init, cfg->param_dtype, 2, shape, &e);
}

static lx_status embedding(linen_scope *s, lx_array **out) {
    lx_value v;
    LX_TRY(linen_get_variable(s, "params", "embedding", &v));
    *out = v.u.array;
    return LX_OK;
}

static lx_status embed_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_embed_config *cfg = linen_config(s);
    lx_array *ids, *e;
    LX_TRY(ll_input(c, 0, "inputs", "Embed", &ids));
    LX_TRY(ll_check_dtypes("Embed", cfg->dtype));
    LX_TRY(ll_check_param_dtype("Embed", cfg->param_dtype, &cfg->embedding_init, NULL));
    if (ids->dtype != LX_I32 && ids->dtype != LX_U32)
        return lx_fail(LX_ERR_DTYPE, "Input type must be an integer or unsigned integer.");
    LX_TRY(embedding(s, &e));
    if (cfg->num_embeddings == 1) {
        int64_t shape[LX_MAX_DIMS];
        if (ids->ndim + 1 > LX_MAX_DIMS) return lx_fail(LX_ERR_SHAPE, "Embed: inputs have too many dimensions");
        for (int i = 0; i < ids->ndim; i++) shape[i] = ids->shape[i];
        shape[ids->ndim] = cfg->features;
        return linen_return_array(out, lx_broadcast_to(e, ids->ndim + 1, shape));
    }
    lx_array *idx = ids->dtype == LX_I32 ? ids : lx_cast(ids, LX_I32);
    return linen_return_array(out, lx_take(e, idx, 0));
}

static lx_status embed_attend(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *q, *e;
    LX_TRY(ll_input(c, 0, "query", "Embed", &q));
    LX_TRY(embedding(s, &e));
    lx_array *ops[2] = {q, e}; /* promote_dtype(query, self.embedding, dtype=self.dtype) */
    LX_TRY(lx_layer_promote("Embed", ((const linen_embed_config *)linen_config(s))->dtype, 2, ops));
    int64_t lc = q->ndim - 1, rc = 1;
    return linen_return_array(out, lx_dot_general(ops[0], ops[1], 1, &lc, &rc, 0, NULL, NULL));
}

static const linen_method EMBED_METHODS[] = {LINEN_METHOD("__call__", embed_call), LINEN_METHOD("attend", embed_attend)};
const linen_type linen_Embed = {
    .name = "Embed", .config_size = sizeof(linen_embed_config), .config = EMBED_FIELDS,
    .nconfig = LX_COUNT(EMBED_FIELDS), .methods = EMBED_METHODS, .nmethods = LX_COUNT(EMBED_METHODS), .setup = embed_setup,
    .method_sigs = (const char *const[]){"inputs", "query"},
};

lx_array *linen_embed(linen_scope *s, const char *name, int64_t num_embeddings, int64_t features,
                      lx_array *ids) {
    if (!ids) return NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(num_embeddings), lx_int_v(features));
    return ll_run_release(s, ll_new(&linen_Embed, &c), name, ids);
}
