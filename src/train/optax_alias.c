/* The optimizers of optax/_src/alias.py as the chains optax builds, and inject_hyperparams
 * (optax/schedules/_inject.py) over them. */
#include <stdlib.h>
#include <string.h>

#include "optax_internal.h"

#define CHAIN(...) optax_chain((int)(sizeof((optax_tx *[]){__VA_ARGS__}) / sizeof(optax_tx *)), (optax_tx *[]){__VA_ARGS__})

optax_tx *lx_optax_sgd_acc(optax_sos lr, bool has_momentum, double momentum, bool nesterov, lx_dtype accumulator) {
    return CHAIN(has_momentum ? optax_trace(momentum, nesterov, accumulator) : optax_identity(),
                 optax_scale_by_learning_rate(lr, true));
}

optax_tx *optax_sgd(optax_sos lr, bool has_momentum, double momentum, bool nesterov) {
    return lx_optax_sgd_acc(lr, has_momentum, momentum, nesterov, OPTAX_DTYPE_DEFAULT);
}

optax_tx *optax_adam(optax_sos lr, const optax_adam_opts *opts) {
    if (opts) optax_schedule_release(opts->weight_decay_schedule); /* adam has no weight decay */
    return CHAIN(optax_scale_by_adam(opts), optax_scale_by_learning_rate(lr, true));
}

/* optax's weight_decay: base.ScalarOrSchedule (adamw, lion) */
static optax_sos decay_sos(double value, optax_schedule *schedule) {
    return schedule ? OPTAX_SCHED(schedule) : OPTAX_CONST(value);
}

optax_tx *optax_adamw(optax_sos lr, const optax_adam_opts *opts) {
    optax_adam_opts d = OPTAX_ADAMW_DEFAULTS;
    if (!opts) opts = &d;
    return CHAIN(optax_scale_by_adam(opts),
                 optax_add_decayed_weights(decay_sos(opts->weight_decay, opts->weight_decay_schedule), opts->mask),
                 optax_scale_by_learning_rate(lr, true));
}

optax_tx *optax_nadam(optax_sos lr, const optax_adam_opts *opts) {
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    if (opts) o = *opts;
    o.nesterov = true;
    return optax_adam(lr, &o);
}

optax_tx *optax_nadamw(optax_sos lr, const optax_adam_opts *opts) {
    optax_adam_opts o = OPTAX_ADAMW_DEFAULTS;
    if (opts) o = *opts;
    o.nesterov = true;
    return optax_adamw(lr, &o);
}

optax_tx *optax_rmsprop(optax_sos lr, const optax_rmsprop_opts *opts) {
    optax_rmsprop_opts d = OPTAX_RMSPROP_DEFAULTS;
    if (!opts) opts = &d;
    return CHAIN(opts->centered ? optax_scale_by_stddev(opts->decay, opts->eps, opts->initial_scale, opts->eps_in_sqrt,
                                                       opts->bias_correction)
                                : optax_scale_by_rms(opts->decay, opts->eps, opts->initial_scale, opts->eps_in_sqrt,
                                                     opts->bias_correction),
                 optax_scale_by_learning_rate(lr, true),
                 opts->has_momentum ? optax_trace(opts->momentum, opts->nesterov, OPTAX_DTYPE_DEFAULT) : optax_identity());
}

optax_tx *optax_lion(optax_sos lr, const optax_lion_opts *opts) {
    optax_lion_opts d = OPTAX_LION_DEFAULTS;
    if (!opts) opts = &d;
    return CHAIN(optax_scale_by_lion(opts->b1, opts->b2, opts->mu_dtype, OPTAX_LION_HARD, 1.0),
                 optax_add_decayed_weights(decay_sos(opts->weight_decay, opts->weight_decay_schedule), opts->mask),
                 optax_scale_by_learning_rate(lr, true));
}

optax_tx *optax_adafactor(bool has_lr, optax_sos lr, const optax_adafactor_opts *opts) {
    optax_adafactor_opts d = OPTAX_ADAFACTOR_DEFAULTS;
    if (!opts) opts = &d;
    optax_tx *txs[7];
    int n = 0;
    txs[n++] = optax_scale_by_factored_rms(opts->factored, opts->decay_rate, opts->decay_offset,
                                        opts->min_dim_size_to_factor, opts->eps);
    if (opts->has_clipping_threshold) txs[n++] = optax_clip_by_block_rms(opts->clipping_threshold);
    if (has_lr) txs[n++] = optax_scale_by_learning_rate(lr, false);
    else optax_schedule_release(lr.schedule);
    if (opts->multiply_by_parameter_scale) txs[n++] = optax_scale_by_param_block_rms(1e-3);
    if (opts->has_momentum) txs[n++] = optax_ema(opts->momentum, false, LX_F32);
    if (opts->has_weight_decay_rate)
        txs[n++] = optax_add_decayed_weights(opts->weight_decay_rate, opts->weight_decay_mask);
    else
        optax_schedule_release(opts->weight_decay_rate.schedule);
    txs[n++] = optax_scale(-1.0);
    return optax_chain(n, txs);
}

/* ------------------------------------------------------------------ inject_hyperparams */

typedef struct alias_sig {
    const char *name;
    int n;
    const char *params[6];
    double defaults[6];
    bool optional[6]; /* default None: a hyperparameter only when given */
} alias_sig;

static const alias_sig SIGS[] = {
    {"sgd", 2, {"learning_rate", "momentum"}, {0, 0}, {false, true}},
    {"adam", 5, {"learning_rate", "b1", "b2", "eps", "eps_root"}, {0, 0.9, 0.999, 1e-8, 0.0}, {0}},
    {"nadam", 5, {"learning_rate", "b1", "b2", "eps", "eps_root"}, {0, 0.9, 0.999, 1e-8, 0.0}, {0}},
    {"adamw", 6, {"learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"}, {0, 0.9, 0.999, 1e-8, 0.0, 1e-4},
     {0}},
    {"nadamw", 6, {"learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"},
     {0, 0.9, 0.999, 1e-8, 0.0, 1e-4}, {0}},
    {"lion", 4, {"learning_rate", "b1", "b2", "weight_decay"}, {0, 0.9, 0.99, 1e-3}, {0}},
    {"rmsprop", 5, {"learning_rate", "decay", "eps", "initial_scale", "momentum"}, {0, 0.9, 1e-8, 0.0, 0},
     {false, false, false, false, true}},
};

static const alias_sig *find_sig(const char *alias) {
    for (size_t k = 0; k < sizeof SIGS / sizeof SIGS[0]; k++)
        if (!strcmp(SIGS[k].name, alias)) return &SIGS[k];
    return NULL;
}

bool lx_optax_inject_knows(const char *alias) { return alias && find_sig(alias) != NULL; }

static double hp(const optax_tx *tx, const float *vals, const char *name, double dflt, bool *given) {
    for (int k = 0; k < tx->nhp; k++)
        if (!strcmp(tx->hp_names[k], name)) {
            if (given) *given = true;
            return (double)vals[k];
        }
    if (given) *given = false;
    return dflt;
}

/* The inner optimizer for the current float32 hyperparameter values. */
static optax_tx *build_inner(const optax_tx *tx, const float *vals) {
    lx_optax_set_strong_hparams(true);
    optax_tx *r = NULL;
    const char *a = tx->alias;
    optax_sos lr = OPTAX_CONST(hp(tx, vals, "learning_rate", 0, NULL));
    if (!strcmp(a, "sgd")) {
        bool has_m;
        double m = hp(tx, vals, "momentum", 0, &has_m);
        const lx_inject_statics *st = &tx->hp_static;
        r = lx_optax_sgd_acc(lr, has_m, m, st->nesterov, st->dtype);
    } else if (!strcmp(a, "rmsprop")) {
        optax_rmsprop_opts o = OPTAX_RMSPROP_DEFAULTS;
        o.decay = hp(tx, vals, "decay", 0.9, NULL);
        o.eps = hp(tx, vals, "eps", 1e-8, NULL);
        o.initial_scale = hp(tx, vals, "initial_scale", 0.0, NULL);
        o.momentum = hp(tx, vals, "momentum", 0, &o.has_momentum);
        o.eps_in_sqrt = tx->hp_static.eps_in_sqrt;
        o.centered = tx->hp_static.centered;
        o.bias_correction = tx->hp_static.bias_correction;
        o.nesterov = tx->hp_static.nesterov;
        r = optax_rmsprop(lr, &o);
    } else if (!strcmp(a, "lion")) {
        optax_lion_opts o = OPTAX_LION_DEFAULTS;
        o.b1 = hp(tx, vals, "b1", 0.9, NULL);
        o.b2 = hp(tx, vals, "b2", 0.99, NULL);
        o.weight_decay = hp(tx, vals, "weight_decay", 1e-3, NULL);
        o.mu_dtype = tx->hp_static.dtype;
        r = optax_lion(lr, &o);
    } else {
        optax_adam_opts o = OPTAX_ADAMW_DEFAULTS;
        o.b1 = hp(tx, vals, "b1", 0.9, NULL);
        o.b2 = hp(tx, vals, "b2", 0.999, NULL);
        o.eps = hp(tx, vals, "eps", 1e-8, NULL);
        o.eps_root = hp(tx, vals, "eps_root", 0.0, NULL);
        o.weight_decay = hp(tx, vals, "weight_decay", 1e-4, NULL);
        o.mu_dtype = tx->hp_static.dtype;
        o.nesterov = tx->hp_static.nesterov;
        /* nadam(w) is adam(w) with the static nesterov True by default (a given False is adam) */
        if (!strcmp(a, "adam") || !strcmp(a, "nadam")) r = optax_adam(lr, &o);
        else r = optax_adamw(lr, &o);
    }
    lx_optax_set_strong_hparams(false);
    return r;
}

static lx_status put_f32(lx_tree *t, const char *key, float v) {
    lx_array *a = lx_array_scalar_f32(v);
    if (!a) return lx_last_status();
    lx_status st = lx_tree_set(t, key, lx_array_v(a));
    lx_release(a);
    return st;
}

/* Write count, hyperparams, hyperparams_states (counts given per scheduled name) and inner. */
static lx_status inject_write(const optax_tx *tx, lx_tree *state, int32_t count, const float *vals,
                              const int32_t *scounts, lx_tree *inner) {
    lx_tree *h = lx_tree_new(), *hs = lx_tree_new();
    lx_status st = (h && hs) ? lx_state_put_count(state, "count", count) : lx_last_status();
    for (int k = 0; st == LX_OK && k < tx->nhp; k++) st = put_f32(h, tx->hp_names[k], vals[k]);
    for (int k = 0; st == LX_OK && k < tx->nhp; k++) {
        if (!tx->hp_scheds[k]) continue;
        lx_tree *c = lx_tree_new();
        st = c ? lx_state_put_count(c, "count", scounts[k]) : lx_last_status();
        if (st == LX_OK) st = lx_tree_set(hs, tx->hp_names[k], lx_tree_v(c));
        lx_tree_release(c);
    }
    if (st == LX_OK) st = lx_tree_set(state, "hyperparams", lx_tree_v(h));
    if (st == LX_OK) st = lx_tree_set(state, "hyperparams_states", lx_tree_v(hs));
    if (st == LX_OK) st = lx_tree_set(state, "inner_state", lx_tree_v(inner));
    lx_tree_release(h);
    lx_tree_release(hs);
    return st;
}

static lx_status inject_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    float vals[LX_TX_MAX_HP];
    int32_t sc[LX_TX_MAX_HP] = {0};
    for (int k = 0; k < tx->nhp; k++)
        vals[k] = tx->hp_scheds[k] ? optax_schedule_eval(tx->hp_scheds[k], 0) : (float)tx->hp_values[k];
    optax_tx *inner = build_inner(tx, vals);
    if (!inner) return lx_last_status();
    lx_tree *is = NULL;
    lx_status st = lx_tx_run_init(inner, lv, &is);
    optax_tx_release(inner);
    if (st == LX_OK) st = inject_write(tx, state, 0, vals, sc, is);
    lx_tree_release(is);
    return st;
}

static lx_status inject_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                               const char *spath, lx_tree *ns) {
    int32_t count;
    LX_TRY(lx_state_get_count(state, "count", spath, &count));
    const lx_value *h = lx_tree_get(state, "hyperparams"), *hs = lx_tree_get(state, "hyperparams_states"),
                   *in = lx_tree_get(state, "inner_state");
    if (!h || h->kind != LX_V_TREE || !hs || hs->kind != LX_V_TREE || !in || in->kind != LX_V_TREE)
        return lx_fail(LX_ERR_SHAPE,
                       "update: the optimizer state '%s' is not an InjectStatefulHyperparamsState (count, "
                       "hyperparams, hyperparams_states, inner_state)",
                       spath);
    float vals[LX_TX_MAX_HP];
    int32_t sc[LX_TX_MAX_HP] = {0};
    for (int k = 0; k < tx->nhp; k++) {
        if (tx->hp_scheds[k]) {
            const lx_value *c = lx_tree_get(hs->u.tree, tx->hp_names[k]);
            if (!c || c->kind != LX_V_TREE)
                return lx_fail(LX_ERR_SHAPE, "update: the optimizer state has no hyperparams_states/%s",
                               tx->hp_names[k]);
            int32_t cnt;
            LX_TRY(lx_state_get_count(c->u.tree, "count", "hyperparams_states", &cnt));
            vals[k] = optax_schedule_eval(tx->hp_scheds[k], cnt);
            sc[k] = lx_safe_increment(cnt);
        } else {
            const lx_value *v = lx_tree_get(h->u.tree, tx->hp_names[k]);
            if (!v || v->kind != LX_V_ARRAY || v->u.array->size != 1 || lx_is_abstract(v->u.array))
                return lx_fail(LX_ERR_SHAPE, "update: the optimizer state has no scalar hyperparams/%s",
                               tx->hp_names[k]);
            vals[k] = (float)lx_array_get(v->u.array, 0);
        }
    }
    optax_tx *inner = build_inner(tx, vals);
    if (!inner) return lx_last_status();
    char sub[512];
    snprintf(sub, sizeof sub, "%s%sinner_state", spath, *spath ? "/" : "");
    lx_tree *is = NULL;
    lx_status st = lx_tx_run_update(inner, lv, u, in->u.tree, sub, &is);
    optax_tx_release(inner);
    if (st == LX_OK) st = inject_write(tx, ns, lx_safe_increment(count), vals, sc, is);
    lx_tree_release(is);
    return st;
}

static const lx_tx_ops INJECT_OPS = {"inject_hyperparams", inject_init, inject_update};

optax_tx *optax_inject_hyperparams(const char *alias, int n, const optax_hparam *hparams) {
    lx_status st = LX_OK;
    const alias_sig *sig = alias ? find_sig(alias) : NULL;
    if (n < 0 || (n > 0 && !hparams))
        st = lx_fail(LX_ERR_INVALID_ARGUMENT, "inject_hyperparams: %d hyperparameters but hparams is NULL", n);
    else if (!sig)
        st = lx_fail(LX_ERR_NOT_FOUND,
                     "inject_hyperparams: unknown optimizer '%s' (sgd, adam, adamw, nadam, nadamw, rmsprop, lion)",
                     alias ? alias : "(null)");
    for (int k = 0; st == LX_OK && k < n; k++) {
        int j = 0;
        while (j < sig->n && strcmp(sig->params[j], hparams[k].name ? hparams[k].name : "")) j++;
        if (j == sig->n)
            st = lx_fail(LX_ERR_TYPE, "%s() got an unexpected keyword argument '%s'", alias,
                         hparams[k].name ? hparams[k].name : "(null)");
        for (int m = 0; st == LX_OK && m < k; m++)
            if (!strcmp(hparams[m].name, hparams[k].name))
                st = lx_fail(LX_ERR_TYPE, "%s() got multiple values for argument '%s'", alias, hparams[k].name);
    }
    bool has_lr = false;
    for (int k = 0; st == LX_OK && k < n; k++) has_lr |= !strcmp(hparams[k].name, "learning_rate");
    if (st == LX_OK && !has_lr)
        st = lx_fail(LX_ERR_TYPE, "%s() missing 1 required positional argument: 'learning_rate'", alias);
    optax_tx *tx = st == LX_OK ? lx_tx_alloc(&INJECT_OPS) : NULL;
    if (tx) {
        tx->hp_static = (lx_inject_statics)LX_INJECT_STATICS_DEFAULT;
        tx->hp_static.nesterov = !strncmp(alias, "nadam", 5); /* optax: partial(adam(w), nesterov=True) */
    }
    if (tx) tx->alias = strdup(alias);
    if (tx && !tx->alias) {
        lx_fail(LX_ERR_NO_MEMORY, "inject_hyperparams: out of memory");
        optax_tx_release(tx);
        tx = NULL;
    }
    /* numeric hyperparameters in signature order (defaults filled in), then the scheduled ones */
    for (int pass = 0; tx && pass < 2; pass++)
        for (int j = 0; tx && j < sig->n; j++) {
            const optax_hparam *given = NULL;
            for (int k = 0; k < n; k++)
                if (!strcmp(hparams[k].name, sig->params[j])) given = &hparams[k];
            bool sched = given && given->value.schedule;
            if ((pass == 0 && sched) || (pass == 1 && !sched)) continue;
            if (!given && sig->optional[j]) continue;
            int m = tx->nhp++;
            tx->hp_names[m] = strdup(sig->params[j]);
            if (!tx->hp_names[m]) {
                lx_fail(LX_ERR_NO_MEMORY, "inject_hyperparams: out of memory");
                optax_tx_release(tx);
                tx = NULL;
                break;
            }
            tx->hp_values[m] = given ? given->value.value : sig->defaults[j];
            tx->hp_given[m] = given != NULL;
            if (sched) tx->hp_scheds[m] = optax_schedule_retain(given->value.schedule);
        }
    for (int k = 0; hparams && k < n; k++) optax_schedule_release(hparams[k].value.schedule);
    if (tx && (!strcmp(alias, "nadam") || !strcmp(alias, "nadamw"))) tx->flag[1] = true;
    return tx;
}

void lx_optax_inject_set_statics(optax_tx *tx, const lx_inject_statics *s) {
    if (tx && s && tx->ops == &INJECT_OPS) tx->hp_static = *s;
}

lx_status optax_inject_set_hyperparam(lx_tree **state, const char *name, float value) {
    if (!state || !*state || !name) return lx_fail(LX_ERR_INVALID_ARGUMENT, "set_hyperparam: NULL argument");
    const lx_value *h = lx_tree_get(*state, "hyperparams");
    if (!h || h->kind != LX_V_TREE)
        return lx_fail(LX_ERR_NOT_FOUND, "set_hyperparam: the state has no 'hyperparams' (not an injected optimizer)");
    if (!lx_tree_get(h->u.tree, name))
        return lx_fail(LX_ERR_NOT_FOUND, "set_hyperparam: KeyError: '%s'", name);
    lx_tree *t = lx_tree_copy(*state);
    if (!t) return lx_last_status();
    lx_array *a = lx_array_scalar_f32(value);
    char path[256];
    snprintf(path, sizeof path, "hyperparams/%s", name);
    lx_status st = a ? lx_tree_set_path(t, path, lx_array_v(a)) : lx_last_status();
    lx_release(a);
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    lx_tree_release(*state);
    *state = t;
    return LX_OK;
}
