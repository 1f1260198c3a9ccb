/* The showcase decoder quantized by rules: PTQ into its variables / state (llama_quant.h). */
#include "linnx/llama_quant.h"

#include <string.h>

#include "linnx/nnx.h"
#include "../core/quant_internal.h"
#include "llama_internal.h"

typedef struct {
    llama_model *m;
    lx_array *sample;
} sample_run;

static lx_status run_sample(const lx_tree *variables, void *user) {
    (void)variables; /* the model's own arrays: the tree shares them */
    sample_run *r = user;
    size_t mark = lx_pool_open();
    lx_status st = llama_model_logits(r->m, r->sample, NULL) ? LX_OK : lx_last_status();
    lx_pool_close(mark);
    return st;
}

/* The variables `q` with a zeroed cache collection, in a new top-level tree (`q` may be shared):
 * the decode model's cache reset, done before the install so that nothing can fail after it. */
static lx_status with_zero_cache(lx_tree *q, lx_tree **out) {
    const lx_value *c = lx_tree_get(q, "cache");
    if (!c || c->kind != LX_V_TREE) return lx_fail(LX_ERR_NOT_FOUND, "llama: no cache collection");
    lx_tree *z = NULL;
    LX_TRY(lx_tree_map(c->u.tree, llama_cache_zero_leaf_, NULL, &z));
    lx_tree *nv = lx_tree_new();
    lx_status st = nv ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "llama_model_quantize: out of memory");
    for (size_t i = 0; st == LX_OK && i < lx_tree_len(q); i++) {
        const char *k = lx_tree_key(q, i);
        st = lx_tree_set(nv, k, strcmp(k, "cache") ? *lx_tree_at(q, i) : lx_tree_v(z));
    }
    lx_tree_release(z);
    if (st != LX_OK) {
        lx_tree_release(nv);
        return st;
    }
    *out = nv;
    return LX_OK;
}

lx_status llama_model_quantize(llama_model *m, const lx_qt_rules *rules, lx_array *sample, const lx_tree *stats) {
    if (!m || !rules || !sample) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_quantize: NULL argument");
    bool decode = llama_model_config(m)->cache_batch > 0;
    sample_run r = {m, sample};
    lx_tree *q = NULL;
    lx_status st;
    if (llama_model_style(m) == LLAMA_NNX_TOP) {
        nnx_module *top = llama_model_nnx_module(m);
        lx_tree *state = NULL, *own = NULL;
        if (!stats) { /* the module's own QuantStat Variables (calibration / QAT into the model) */
            LX_TRY(lx_qt_stats_nnx(top, &own));
            stats = own;
        }
        st = nnx_state(top, 0, NULL, &state);
        if (st == LX_OK) st = lx_qt_quantize_tree(rules, state, run_sample, &r, stats, &q);
        lx_tree_release(state);
        lx_tree_release(own);
        /* the decode model's cache reset goes into the same update (its zeros after q's values,
         * the later state wins): nnx_update is all or nothing, out of memory included */
        lx_tree *z = NULL;
        if (st == LX_OK && decode) {
            nnx_filter f = NNX_OF_TYPE(&lx_Cache);
            lx_tree *cache = NULL;
            st = nnx_state(top, 1, &f, &cache);
            if (st == LX_OK) st = lx_tree_map(cache, llama_cache_zero_leaf_, NULL, &z);
            lx_tree_release(cache);
        }
        lx_tree *const both[2] = {q, z};
        if (st == LX_OK) st = nnx_update(top, z ? 2 : 1, both);
        lx_tree_release(q);
        lx_tree_release(z);
    } else {
        /* a decode run replaces the model's variables (the cache): work on a copy of the tree,
         * and hold the model's own one (shared, so the run's cache write makes a new tree) to put
         * back when the quantize fails after the run */
        lx_tree *orig = lx_tree_retain((lx_tree *)llama_model_variables(m));
        lx_tree *vars = lx_tree_copy(orig);
        if (!vars) {
            lx_tree_release(orig);
            return lx_fail(LX_ERR_NO_MEMORY, "llama_model_quantize: out of memory");
        }
        st = lx_qt_quantize_tree(rules, vars, run_sample, &r, stats, &q);
        lx_tree_release(vars);
        if (st == LX_OK && decode) { /* the cache reset, before the install */
            lx_tree *z = NULL;
            st = with_zero_cache(q, &z);
            lx_tree_release(q);
            q = z;
        }
        llama_model_set_variables_(m, st == LX_OK ? q : orig); /* takes it; nothing fails after */
        if (st == LX_OK) lx_tree_release(orig);
    }
    return st;
}

lx_status llama_model_ptq_begin(llama_model *m, const lx_qt_rules *rules, lx_qt_session **out) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_ptq_begin: NULL model");
    if (llama_model_style(m) == LLAMA_NNX_TOP) return lx_qt_begin_ptq_nnx(rules, llama_model_nnx_module(m), out);
    return lx_qt_begin_ptq(rules, llama_model_variables(m), out);
}
