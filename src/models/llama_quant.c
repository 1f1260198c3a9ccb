/* The showcase decoder quantized by rules: PTQ into its variables / state (llama_quant.h). */
#include "linnx/llama_quant.h"

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
        if (st == LX_OK) st = lx_qt_nnx_update_all(top, q); /* nothing changes on failure */
        lx_tree_release(q);
    } else {
        /* a decode run replaces the model's variables (the cache): work on a copy of the tree */
        lx_tree *vars = lx_tree_copy(llama_model_variables(m));
        if (!vars) return lx_fail(LX_ERR_NO_MEMORY, "llama_model_quantize: out of memory");
        st = lx_qt_quantize_tree(rules, vars, run_sample, &r, stats, &q);
        lx_tree_release(vars);
        if (st == LX_OK) llama_model_set_variables_(m, q);
    }
    if (st == LX_OK && decode) st = llama_model_reset_cache(m);
    return st;
}

lx_status llama_model_ptq_begin(llama_model *m, const lx_qt_rules *rules, lx_qt_session **out) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_ptq_begin: NULL model");
    if (llama_model_style(m) == LLAMA_NNX_TOP) return lx_qt_begin_ptq_nnx(rules, llama_model_nnx_module(m), out);
    return lx_qt_begin_ptq(rules, llama_model_variables(m), out);
}
