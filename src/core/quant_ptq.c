/* PTQ: a model's weights quantized into its variables (int8 values + float32 scales), with the
 * static activation scales calibration gives; for trees, Linen variables and NNX modules
 * (quant.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/box.h"
#include "linnx/linen.h"
#include "linnx/nnx.h"
#include "linnx/quant.h"
#include "linnx/variable.h"
#include "quant_internal.h"

static _Thread_local char warnings[4096];

const char *lx_qt_warnings(void) { return warnings; }

/* A leaf of the same kind as `like` around `a` (a Variable keeps its type and metadata, a box its
 * metadata); `plain_param`: a new Param Variable / plain array / plain array instead. */
static lx_status leaf_like(const lx_value *like, lx_array *a, bool keep_meta, lx_value *out) {
    if (like->kind == LX_V_VARIABLE) {
        lx_variable *v = NULL;
        if (keep_meta)
            LX_TRY(lx_variable_new_md(lx_variable_type(like->u.var), a, lx_variable_metadata(like->u.var), &v));
        else
            LX_TRY(lx_variable_new(lx_variable_type(like->u.var), a, &v));
        *out = lx_var_v(v);
        return LX_OK;
    }
    if (like->kind == LX_V_BOX && keep_meta) {
        lx_box *b = NULL;
        LX_TRY(lx_box_replace_boxed(like->u.box, a, &b));
        *out = lx_box_v(b);
        return LX_OK;
    }
    *out = lx_array_v(lx_retain(a));
    return LX_OK;
}

static lx_status set_leaf(lx_tree *t, const char *path, const lx_value *like, lx_array *a, bool keep_meta) {
    lx_value v = lx_none();
    LX_TRY(leaf_like(like, a, keep_meta, &v));
    lx_status st = lx_tree_set_path(t, path, v);
    lx_value_free(&v);
    return st;
}

/* The calibrated absmax of <path>/<op>_<side> in the statistics; LX_ERR_NOT_FOUND when absent. */
static lx_status calibrated(const lx_tree *stats, const lx_qt_record *r, float *absmax) {
    char kc[600], ks[600];
    const char *side = r->act_side == 0 ? "lhs" : "rhs";
    snprintf(kc, sizeof kc, "%s%s%s_%s/count", r->path, r->path[0] ? "/" : "", r->op, side);
    snprintf(ks, sizeof ks, "%s%s%s_%s/sum_of_absmax", r->path, r->path[0] ? "/" : "", r->op, side);
    lx_array *c = lx_value_leaf_array(stats ? lx_tree_find(stats, kc) : NULL), *s = lx_value_leaf_array(stats ? lx_tree_find(stats, ks) : NULL);
    if (!c || !s)
        return lx_fail(LX_ERR_NOT_FOUND,
                       "quantize: op %s of '%s' has act_static_scale but no calibration statistics at %.*s "
                       "(run lx_qt_calibrate_begin over a few batches first)",
                       r->op, r->path, (int)(strlen(kc) - 6), kc);
    double count = lx_array_get(c, 0), sum = lx_array_get(s, 0);
    if (!(count > 0))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "quant_stats is not initialized for %.*s (count 0)",
                       (int)(strlen(kc) - 6), kc);
    *absmax = (float)(sum / count);
    return LX_OK;
}

/* A static activation scale as stored: shape (1, ..., 1) of the activation's rank, am / 127 (1
 * when calibration saw only zeros). */
static lx_array *static_scale_array(int ndim, float am) {
    int64_t ones[LX_MAX_DIMS];
    for (int d = 0; d < ndim; d++) ones[d] = 1;
    lx_array *a = lx_array_new(LX_F32, ndim, ones);
    if (!a) {
        lx_fail(LX_ERR_NO_MEMORY, "quantize: out of memory");
        return NULL;
    }
    lx_f32(a)[0] = lx_qt_scale_of(am);
    return a;
}

lx_status lx_qt_quantize_tree(const lx_qt_rules *rules, const lx_tree *variables, lx_qt_run_fn run, void *user,
                              const lx_tree *stats, lx_tree **out) {
    if (!rules || !variables || !run || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "quantize: NULL argument");
    warnings[0] = '\0';
    lx_flat f = {0};
    LX_TRY(lx_tree_flatten(variables, &f));
    for (size_t i = 0; i < f.len; i++) {
        lx_array *a = lx_value_leaf_array(&f.items[i].value);
        if (a && a->dtype == LX_I8) {
            lx_status st = lx_fail(LX_ERR_INVALID_ARGUMENT,
                                   "quantize: '%s' already holds int8 values: the model is quantized already "
                                   "(quantizing twice)",
                                   f.items[i].path);
            lx_flat_free(&f);
            return st;
        }
    }
    lx_qt_plan plan;
    lx_qt_session *s = NULL;
    lx_status st = lx_qt_plan_begin(rules, &plan, &s);
    if (st != LX_OK) {
        lx_flat_free(&f);
        return st;
    }
    st = run(variables, user);
    lx_qt_end(s);
    if (st == LX_OK && plan.oom) st = lx_fail(LX_ERR_NO_MEMORY, "quantize: out of memory");
    /* a rule that matched nothing: a warning with the paths seen (lx_qt_warnings) */
    size_t wl = 0;
    for (int r = 0; st == LX_OK && r < lx_qt_rules_count(rules); r++) {
        if (plan.rule_hit[r]) continue;
        const lx_qt_rule *q = lx_qt_rules_get(rules, r);
        int n = snprintf(warnings + wl, sizeof warnings - wl, "%srule %d (module_path '%s') matched nothing; paths seen:%s",
                         wl ? "\n" : "", r, q->module_path, plan.seen ? plan.seen : " (none)");
        wl += n > 0 ? (size_t)n : 0;
        if (wl >= sizeof warnings) wl = sizeof warnings - 1;
    }
    lx_tree *res = st == LX_OK ? lx_tree_copy(variables) : NULL;
    if (st == LX_OK && !res) st = lx_fail(LX_ERR_NO_MEMORY, "quantize: out of memory");
    /* Linen variables have collections at the top; an NNX state has attributes (Variables) */
    const lx_value *pc = lx_tree_get(variables, "params");
    bool linen = pc && pc->kind == LX_V_TREE;
    bool vars_are_variables = false;
    for (size_t k = 0; k < f.len && !vars_are_variables; k++) vars_are_variables = f.items[k].value.kind == LX_V_VARIABLE;
    for (int i = 0; st == LX_OK && i < plan.n; i++) {
        const lx_qt_record *r = &plan.v[i];
        if (!r->w) { /* an activation-only op: its static scale under the module's path */
            float am = 0;
            st = calibrated(stats, r, &am);
            if (st != LX_OK) break;
            lx_array *a = static_scale_array(r->act_ndim, am);
            if (!a) {
                st = lx_last_status();
                break;
            }
            char dir[520], sp[600];
            snprintf(dir, sizeof dir, "%s%s%s", linen ? "params" : "", linen && r->path[0] ? "/" : "", r->path);
            snprintf(sp, sizeof sp, "%s%s%s_%s_scale", dir, dir[0] ? "/" : "", r->op, r->act_side == 0 ? "lhs" : "rhs");
            lx_value v = lx_array_v(a);
            lx_variable *var = NULL;
            if (vars_are_variables && !linen) {
                st = lx_variable_new(&lx_Param, a, &var);
                v = lx_var_v(var);
            }
            if (st == LX_OK) st = lx_tree_set_path(res, sp, v);
            lx_variable_release(var);
            lx_release(a);
            continue;
        }
        const lx_flat_item *it = NULL;
        for (size_t k = 0; k < f.len && !it; k++)
            if (lx_value_leaf_array(&f.items[k].value) == r->w) it = &f.items[k];
        if (!it) continue; /* a weight the tree does not hold (made by the model itself): left alone */
        bool other = false;
        for (int k = 0; k < plan.nother && !other; k++) other = plan.other[k] == r->w;
        if (other && r->scale_only) continue;
        if (other) { /* also read by a lookup / elementwise op: int8 there would fail the PTQ model */
            int n = snprintf(warnings + wl, sizeof warnings - wl,
                             "%s'%s' is also read by an op that is not a contraction (a tied embedding's lookup?): "
                             "left in float32 (op %s of '%s' quantizes it on the fly in a PTQ session)",
                             wl ? "\n" : "", it->path, r->op, r->path);
            wl += n > 0 ? (size_t)n : 0;
            if (wl >= sizeof warnings) wl = sizeof warnings - 1;
            continue;
        }
        char sp[600];
        if (!r->scale_only) { /* (a scale_only record: the weight is done, only its op's static scale) */
            lx_array *q = NULL, *sc = NULL;
            st = lx_qt_quantize_axes(r->w, r->reduce, r->tile, r->tax, &q, &sc);
            snprintf(sp, sizeof sp, "%s_scale", it->path);
            if (st == LX_OK) st = set_leaf(res, it->path, &it->value, q, true);
            if (st == LX_OK) st = set_leaf(res, sp, &it->value, sc, true);
            lx_release(q), lx_release(sc);
        }
        if (st != LX_OK || r->act_side < 0) continue;
        /* the static activation scale, next to the weight: <dir>/<op>_lhs_scale */
        float am = 0;
        st = calibrated(stats, r, &am);
        if (st != LX_OK) break;
        lx_array *a = static_scale_array(r->act_ndim, am);
        if (!a) {
            st = lx_last_status();
            break;
        }
        const char *slash = strrchr(it->path, '/');
        int dl = slash ? (int)(slash - it->path) : 0;
        snprintf(sp, sizeof sp, "%.*s%s%s_%s_scale", dl, it->path, dl ? "/" : "", r->op, r->act_side == 0 ? "lhs" : "rhs");
        st = set_leaf(res, sp, &it->value, a, false);
        lx_release(a);
    }
    lx_qt_plan_free(&plan);
    lx_flat_free(&f);
    if (st != LX_OK) {
        if (res) lx_tree_release(res);
        return st;
    }
    *out = res;
    return LX_OK;
}

/* ------------------------------------------------------------------ Linen */

typedef struct {
    const linen_module *m;
    const lx_call *call;
} linen_run;

static lx_status run_linen(const lx_tree *variables, void *user) {
    linen_run *r = user;
    lx_value out = lx_none();
    linen_rngs none = {0, NULL};
    lx_status st = linen_apply(r->m, variables, none, r->call, NULL, &out, NULL);
    lx_value_free(&out);
    return st;
}

lx_status lx_qt_quantize_linen(const lx_qt_rules *rules, const linen_module *m, const lx_tree *variables,
                               const lx_call *call, lx_tree **out) {
    if (!m || !variables || !call || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "quantize_linen: NULL argument");
    const lx_value *qs = lx_tree_get(variables, "quant_stats");
    linen_run r = {m, call};
    lx_tree *res = NULL;
    LX_TRY(lx_qt_quantize_tree(rules, variables, run_linen, &r, qs && qs->kind == LX_V_TREE ? qs->u.tree : NULL, &res));
    if (qs) lx_tree_delete(res, "quant_stats"); /* consumed into the params' *_lhs_scale */
    *out = res;
    return LX_OK;
}

/* ------------------------------------------------------------------ NNX */

typedef struct {
    nnx_module *m;
    const lx_call *call;
} nnx_run;

static lx_status run_nnx(const lx_tree *variables, void *user) {
    (void)variables; /* the module's own Variables: the state tree shares their arrays */
    nnx_run *r = user;
    lx_value out = lx_none();
    lx_status st = nnx_call(r->m, NULL, r->call, &out);
    lx_value_free(&out);
    return st;
}

const lx_vartype lx_QuantStat = {"QuantStat", &lx_Variable};

static lx_status stat_plain(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    (void)path, (void)user;
    lx_array *a = lx_value_leaf_array(leaf);
    if (!a) return lx_fail(LX_ERR_TYPE, "quant_stats: '%s' is not an array", path);
    *out = lx_array_v(lx_retain(a));
    return LX_OK;
}

static lx_status stat_var(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    (void)user;
    lx_array *a = lx_value_leaf_array(leaf);
    if (!a) return lx_fail(LX_ERR_TYPE, "quant_stats: '%s' is not an array", path);
    lx_variable *v = NULL;
    LX_TRY(lx_variable_new(&lx_QuantStat, a, &v));
    *out = lx_var_v(v);
    return LX_OK;
}

lx_status lx_qt_stats_nnx(nnx_module *m, lx_tree **out) {
    if (!m || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_stats_nnx: NULL argument");
    nnx_filter f = NNX_OF_TYPE(&lx_QuantStat);
    lx_tree *st = NULL;
    LX_TRY(nnx_state(m, 1, &f, &st));
    lx_status s = lx_tree_map(st, stat_plain, NULL, out);
    lx_tree_release(st);
    return s;
}

lx_status lx_qt_stats_store_nnx(nnx_module *m, const lx_tree *stats) {
    if (!m || !stats) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_stats_store_nnx: NULL argument");
    const char *name = NULL;
    if (lx_variable_name_from_type(&lx_QuantStat, false, &name) != LX_OK) { /* Qwix registers it too */
        lx_clear_error();
        LX_TRY(lx_variable_register_name("quant_stats", &lx_QuantStat, true));
    }
    lx_tree *vars = NULL;
    LX_TRY(lx_tree_map(stats, stat_var, NULL, &vars));
    lx_status st = nnx_update(m, 1, &vars); /* all or nothing, out of memory included */
    lx_tree_release(vars);
    return st;
}

lx_status lx_qt_quantize_nnx(const lx_qt_rules *rules, nnx_module *m, const lx_call *call, const lx_tree *stats) {
    if (!m || !call) return lx_fail(LX_ERR_INVALID_ARGUMENT, "quantize_nnx: NULL argument");
    lx_tree *state = NULL, *q = NULL, *own = NULL;
    if (!stats) { /* the module's own QuantStat Variables */
        LX_TRY(lx_qt_stats_nnx(m, &own));
        stats = own;
    }
    lx_status st = nnx_state(m, 0, NULL, &state);
    nnx_run r = {m, call};
    if (st == LX_OK) st = lx_qt_quantize_tree(rules, state, run_nnx, &r, stats, &q);
    lx_tree_release(state);
    lx_tree_release(own);
    if (st != LX_OK) return st;
    st = nnx_update(m, 1, &q); /* all or nothing, out of memory included */
    lx_tree_release(q);
    return st;
}

lx_status lx_qt_begin_ptq_nnx(const lx_qt_rules *rules, nnx_module *m, lx_qt_session **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_begin_ptq_nnx: output is NULL");
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_begin_ptq_nnx: NULL module");
    lx_tree *state = NULL;
    LX_TRY(nnx_state(m, 0, NULL, &state));
    lx_status st = lx_qt_begin_ptq(rules, state, out); /* the session retains what it uses */
    lx_tree_release(state);
    return st;
}
