/* flax.linen.Dropout: a key from make_rng(rng_collection) only when something is dropped. */
#include <string.h>

#include "layers_internal.h"
#include "linnx/dropout.h"
#include "linnx/ops.h"

static const lx_field DROPOUT_FIELDS[] = {
    LX_FIELD_REQUIRED_FLOAT(linen_dropout_config, rate),
    LX_FIELD_INTS(linen_dropout_config, broadcast_dims),
    LL_FIELD_VALUE_D(linen_dropout_config, deterministic, LX_VAL_NONE),
    LX_FIELD_STR(linen_dropout_config, rng_collection, "dropout"),
};

static lx_status dropout_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const linen_dropout_config *cfg = linen_config(s);
    lx_array *x;
    LX_TRY(ll_input(c, 0, "inputs", "Dropout", &x));
    bool det;
    LX_TRY(linen_merge_param("deterministic", &cfg->deterministic, lx_call_get(c, 1, "deterministic"), &det));
    if (cfg->rate == 0.0 || det) return linen_return_array(out, x);
    /* Flax returns jnp.zeros_like(inputs), drawing no key: x * 0 would keep NaN (inf * 0 too)
     * and give -0.0 for negative inputs. The shared op's rate-1 path writes zeros. */
    if (cfg->rate == 1.0) return linen_return_array(out, lx_dropout(x, 1.0, (lx_key){{0, 0}}, 0, NULL, false));
    lx_key key;
    LX_TRY(linen_make_rng(s, cfg->rng_collection ? cfg->rng_collection : "dropout", &key));
    return linen_return_array(out, lx_dropout(x, cfg->rate, key, cfg->broadcast_dims.n, cfg->broadcast_dims.v, false));
}

static const linen_method DROPOUT_METHODS[] = {LINEN_METHOD("__call__", dropout_call)};
const linen_type linen_Dropout = {
    .name = "Dropout", .config_size = sizeof(linen_dropout_config), .config = DROPOUT_FIELDS,
    .nconfig = LX_COUNT(DROPOUT_FIELDS), .methods = DROPOUT_METHODS, .nmethods = LX_COUNT(DROPOUT_METHODS),
    .method_sigs = (const char *const[]){"inputs, deterministic=None"},
};

lx_array *linen_dropout(linen_scope *s, const char *name, double rate, bool deterministic, lx_array *x) {
    if (!x) return NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW_FLOAT("rate", rate), LX_KW_BOOL("deterministic", deterministic));
    return ll_run_release(s, ll_new(&linen_Dropout, &c), name, x);
}
