/* optax's protocol over linnx trees: flat leaf views, init/update/apply_updates/step with
 * structure checks and debug_nans, the state layout printer. State helpers and buffers are in
 * optax_state.c, chain and masked in optax_combine.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/box.h"
#include "linnx/optax.h"
#include "linnx/variable.h"
#include "optax_internal.h"
#include "../core/status_internal.h"

const char LX_NO_PARAMS_MSG[] =
    "You are using a transformation that requires the current value of parameters, but you are "
    "not passing `params` when calling `update`.";

static _Thread_local bool tl_debug_nans;
static _Thread_local bool tl_strong_hparams;

void optax_set_debug_nans(bool on) { tl_debug_nans = on; }
bool optax_debug_nans(void) { return tl_debug_nans; }
void lx_optax_set_strong_hparams(bool on) { tl_strong_hparams = on; }

float lx_optax_one_minus(double b) {
    if (tl_strong_hparams) return 1.0f - (float)b;
    return (float)(1.0 - b);
}

/* ------------------------------------------------------------------ transformations */

optax_tx *lx_tx_alloc(const lx_tx_ops *ops) {
    optax_tx *tx = calloc(1, sizeof *tx);
    if (!tx) {
        lx_fail(LX_ERR_NO_MEMORY, "%s: out of memory", ops->name);
        return NULL;
    }
    tx->ops = ops;
    tx->refcount = 1;
    tx->dtype = OPTAX_DTYPE_DEFAULT;
    return tx;
}

optax_tx *lx_tx_alloc1(const lx_tx_ops *ops, double v) {
    optax_tx *tx = lx_tx_alloc(ops);
    if (tx) {
        tx->p[0] = v;
        tx->f[0] = (float)v;
    }
    return tx;
}

optax_tx *optax_tx_retain(optax_tx *tx) {
    if (tx) tx->refcount++;
    return tx;
}

void optax_tx_release(optax_tx *tx) {
    if (!tx || --tx->refcount > 0) return;
    for (int i = 0; i < tx->n; i++) optax_tx_release(tx->subs[i]);
    free(tx->subs);
    optax_schedule_release(tx->sched);
    for (int i = 0; i < tx->nhp; i++) {
        free(tx->hp_names[i]);
        optax_schedule_release(tx->hp_scheds[i]);
    }
    free(tx->alias);
    free(tx);
}

const char *optax_tx_name(const optax_tx *tx) { return tx ? tx->ops->name : "(null)"; }

/* ------------------------------------------------------------------ leaves */

/* Compare two '/'-paths key by key, as JAX sorts dict keys at every level. */
static int path_cmp(const char *a, const char *b) {
    for (;;) {
        size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
        size_t m = la < lb ? la : lb;
        int c = memcmp(a, b, m);
        if (c) return c;
        if (la != lb) return la < lb ? -1 : 1;
        a += la;
        b += lb;
        if (!*a || !*b) return (*a != 0) - (*b != 0);
        a++;
        b++;
    }
}

static _Thread_local const lx_leaves *sort_ctx; /* qsort has no context argument */
static int order_cmp(const void *x, const void *y) {
    return path_cmp(sort_ctx->paths[*(const int *)x], sort_ctx->paths[*(const int *)y]);
}

void lx_optax_leaves_free(lx_leaves *lv) {
    for (int i = 0; lv->paths && i < lv->n; i++) free(lv->paths[i]); /* paths may have failed to allocate */
    free(lv->paths);
    free(lv->ref);
    free(lv->params);
    free(lv->active);
    free(lv->order);
    memset(lv, 0, sizeof *lv);
}

/* Flatten `t` (params, or grads when there are no params) into lv. */
lx_status lx_optax_leaves_from_tree(const char *who, const char *what, const lx_tree *t, bool are_params,
                                     lx_leaves *lv) {
    memset(lv, 0, sizeof *lv);
    if (!t) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %s is NULL", who, what);
    lx_flat f = {0};
    LX_TRY(lx_tree_flatten(t, &f));
    int n = (int)f.len;
    lv->n = n;
    lv->paths = calloc((size_t)n + 1, sizeof *lv->paths);
    lv->ref = calloc((size_t)n + 1, sizeof *lv->ref);
    lv->params = calloc((size_t)n + 1, sizeof *lv->params);
    lv->active = calloc((size_t)n + 1, sizeof *lv->active);
    lv->order = calloc((size_t)n + 1, sizeof *lv->order);
    lv->have_params = are_params;
    lx_status st = (lv->paths && lv->ref && lv->params && lv->active && lv->order)
                       ? LX_OK
                       : lx_fail(LX_ERR_NO_MEMORY, "%s: out of memory", who);
    for (int i = 0; st == LX_OK && i < n; i++) {
        lv->paths[i] = f.items[i].path; /* taken over from the flat: no copy per leaf per step */
        f.items[i].path = NULL;
        lx_array *a = lx_optax_leaf_array(&f.items[i].value);
        if (!a) {
            st = lx_fail(LX_ERR_TYPE, "%s: the %s leaf at '%s' is a %s, not an array", who, what, lv->paths[i],
                         lx_value_pytype(&f.items[i].value));
            break;
        }
        if (lx_is_abstract(a)) {
            st = lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: the %s leaf at '%s' is abstract (no data)", who, what,
                         lv->paths[i]);
            break;
        }
        if (a->dtype != LX_F32 && a->dtype != LX_BF16) {
            st = lx_fail(LX_ERR_DTYPE, "%s: the %s leaf at '%s' is %s; optimizers take float32 or bfloat16", who,
                         what, lv->paths[i], lx_dtype_name(a->dtype));
            break;
        }
        lv->ref[i] = a;
        lv->params[i] = are_params ? a : NULL;
        lv->active[i] = true;
        lv->order[i] = i;
    }
    lx_flat_free(&f);
    if (st != LX_OK) {
        lx_optax_leaves_free(lv);
        return st;
    }
    sort_ctx = lv;
    qsort(lv->order, (size_t)n, sizeof *lv->order, order_cmp);
    sort_ctx = NULL;
    return LX_OK;
}

/* The arrays of `t` (grads or updates) at lv's paths, checked leaf for leaf: *out[i] borrowed. */
lx_status lx_optax_match_tree(const char *who, const char *what, const char *against, const lx_tree *t,
                              const lx_leaves *lv, lx_array **out) {
    if (!t) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %s is NULL", who, what);
    char b1[64], b2[64];
    for (int k = 0; k < lv->n; k++) {
        int i = lv->order[k];
        const lx_value *v = lx_tree_find(t, lv->paths[i]);
        if (!v || v->kind == LX_V_TREE)
            return lx_fail(LX_ERR_SHAPE, "%s: the %s have no leaf at '%s' (the %s and the %s must have the same tree "
                           "structure)", who, what, lv->paths[i], against, what);
        lx_array *a = lx_optax_leaf_array(v);
        if (!a)
            return lx_fail(LX_ERR_TYPE, "%s: the %s leaf at '%s' is a %s, not an array", who, what, lv->paths[i],
                           lx_value_pytype(v));
        if (lx_is_abstract(a))
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: the %s leaf at '%s' is abstract (no data)", who, what,
                           lv->paths[i]);
        if (a->dtype != LX_F32 && a->dtype != LX_BF16)
            return lx_fail(LX_ERR_DTYPE, "%s: the %s leaf at '%s' is %s; optimizers take float32 or bfloat16", who,
                           what, lv->paths[i], lx_dtype_name(a->dtype));
        if (!lx_same_shape(a, lv->ref[i]))
            return lx_fail(LX_ERR_SHAPE, "%s: the %s leaf at '%s' has shape %s but the %s leaf has shape %s", who,
                           what, lv->paths[i], lx_shape_str(a->ndim, a->shape, b1, sizeof b1), against,
                           lx_shape_str(lv->ref[i]->ndim, lv->ref[i]->shape, b2, sizeof b2));
        out[i] = a;
    }
    if (lx_tree_count_leaves(t) != (size_t)lv->n) {
        lx_flat f = {0};
        LX_TRY(lx_tree_flatten(t, &f));
        const char *extra = NULL;
        for (size_t j = 0; j < f.len && !extra; j++) {
            bool found = false;
            for (int i = 0; i < lv->n && !found; i++) found = !strcmp(f.items[j].path, lv->paths[i]);
            if (!found) extra = f.items[j].path;
        }
        lx_status st = lx_fail(LX_ERR_SHAPE, "%s: the %s have a leaf at '%s' that the %s do not have", who, what,
                               extra ? extra : "?", against);
        lx_flat_free(&f);
        return st;
    }
    return LX_OK;
}

static lx_status check_finite(const char *what, const lx_leaves *lv, lx_array *const *arrs) {
    for (int k = 0; k < lv->n; k++) {
        int i = lv->order[k];
        const lx_array *a = arrs[i];
        if (!a || !lv->active[i]) continue;
        for (int64_t j = 0; j < a->size; j++) {
            float x = lx_optax_get(a, j);
            if (!isfinite(x))
                return lx_fail(LX_ERR_INVALID_ARGUMENT, "debug_nans: %s in the %s at '%s' (flat index %lld)",
                               isnan(x) ? "NaN" : "Inf", what, lv->paths[i], (long long)j);
        }
    }
    return LX_OK;
}

/* ------------------------------------------------------------------ running transformations */

lx_status lx_tx_run_init(const optax_tx *tx, const lx_leaves *lv, lx_tree **state) {
    *state = lx_tree_new();
    if (!*state) return lx_last_status();
    lx_status st = tx->ops->init ? tx->ops->init(tx, lv, *state) : LX_OK;
    if (st != LX_OK) {
        lx_tree_release(*state);
        *state = NULL;
    }
    return st;
}

lx_status lx_tx_run_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                           const char *spath, lx_tree **new_state) {
    *new_state = NULL;
    if (!state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "update: the optimizer state is NULL");
    lx_tree *ns = lx_tree_new();
    if (!ns) return lx_last_status();
    lx_status st = tx->ops->update(tx, lv, u, state, spath, ns);
    if (st != LX_OK) {
        lx_tree_release(ns);
        return st;
    }
    *new_state = ns;
    return LX_OK;
}

lx_status optax_init(const optax_tx *tx, const lx_tree *params, lx_tree **state) {
    if (!state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "init: state output is NULL");
    *state = NULL;
    if (!tx) return lx_null_input("init: the transformation is NULL");
    lx_leaves lv;
    LX_TRY(lx_optax_leaves_from_tree("init", "params", params, true, &lv));
    lx_status st = lx_tx_run_init(tx, &lv, state);
    lx_optax_leaves_free(&lv);
    return st;
}

/* An updates/params-shaped tree holding u[i] (plain arrays) at the leaves' paths. */
static lx_status tree_from_leaves(const lx_leaves *lv, lx_array **u, lx_tree **out) {
    lx_tree *t = lx_tree_new();
    if (!t) return lx_last_status();
    for (int i = 0; i < lv->n; i++) {
        lx_status st = lx_tree_set_path(t, lv->paths[i], lx_array_v(u[i]));
        if (st != LX_OK) {
            lx_tree_release(t);
            return st;
        }
    }
    *out = t;
    return LX_OK;
}

lx_status optax_update(const optax_tx *tx, const lx_tree *grads, const lx_tree *state, const lx_tree *params,
                       lx_tree **updates, lx_tree **new_state) {
    if (!updates || !new_state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "update: an output is NULL");
    *updates = NULL;
    *new_state = NULL;
    if (!tx) return lx_null_input("update: the transformation is NULL");
    lx_leaves lv;
    if (params) {
        LX_TRY(lx_optax_leaves_from_tree("update", "params", params, true, &lv));
    } else {
        LX_TRY(lx_optax_leaves_from_tree("update", "gradients", grads, false, &lv));
    }
    lx_array **g = calloc((size_t)lv.n + 1, sizeof *g), **u = calloc((size_t)lv.n + 1, sizeof *u);
    lx_status st = (g && u) ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "update: out of memory");
    if (st == LX_OK) st = lx_optax_match_tree("update", "gradients", params ? "params" : "gradients", grads, &lv, g);
    if (st == LX_OK && tl_debug_nans) st = check_finite("gradients", &lv, g);
    /* The updates start as float32 copies of the gradients (shared when already float32). */
    for (int i = 0; st == LX_OK && i < lv.n; i++) {
        if (g[i]->dtype == LX_F32) {
            u[i] = lx_retain(g[i]);
        } else {
            u[i] = lx_optax_new_f32(g[i]);
            if (!u[i]) st = lx_last_status();
            else
                for (int64_t j = 0; j < g[i]->size; j++) lx_f32(u[i])[j] = lx_optax_get(g[i], j);
        }
    }
    lx_tree *ns = NULL;
    if (st == LX_OK) st = lx_tx_run_update(tx, &lv, u, state, "", &ns);
    if (st == LX_OK && tl_debug_nans) st = check_finite("updates", &lv, u);
    if (st == LX_OK) st = tree_from_leaves(&lv, u, updates);
    if (st == LX_OK) {
        *new_state = ns;
    } else {
        lx_tree_release(ns);
    }
    for (int i = 0; u && i < lv.n; i++) lx_release(u[i]);
    free(u);
    free(g);
    lx_optax_leaves_free(&lv);
    return st;
}

static void add_kernel(int64_t n, const float *restrict p, const float *restrict u, float *restrict o) {
    for (int64_t j = 0; j < n; j++) o[j] = p[j] + u[j];
}

/* p + u in float32, rounded to p's dtype. */
static lx_array *add_cast(const lx_array *p, const lx_array *u) {
    lx_array *r = p->dtype == LX_F32 ? lx_optax_new_f32(p) : lx_array_empty(p->dtype, p->ndim, p->shape);
    if (!r) return NULL;
    if (p->dtype == LX_F32 && u->dtype == LX_F32) {
        add_kernel(p->size, lx_f32(p), lx_f32(u), lx_f32(r));
        return r;
    }
    for (int64_t j = 0; j < p->size; j++) {
        float s = lx_optax_get(p, j) + lx_optax_get(u, j);
        if (p->dtype == LX_F32) {
            lx_f32(r)[j] = s;
        } else {
            float b = lx_optax_round_bf16(s);
            uint32_t w;
            memcpy(&w, &b, sizeof w);
            ((uint16_t *)r->data)[j] = (uint16_t)(w >> 16);
        }
    }
    return r;
}

/* The params' tree (their empty maps too) with np[i] at leaf i, keeping each leaf's kind: a
 * Variable becomes a new Variable (same type and metadata), a box a new box. */
lx_status lx_optax_params_like(const lx_tree *params, const lx_leaves *lv, lx_array **np, lx_tree **out) {
    *out = NULL;
    lx_tree *t = lx_tree_copy(params);
    lx_status st = t ? LX_OK : lx_last_status();
    for (int i = 0; st == LX_OK && i < lv->n; i++) {
        const lx_value *old = lx_tree_find(params, lv->paths[i]);
        if (old->kind == LX_V_VARIABLE) {
            lx_variable *v = NULL;
            st = lx_variable_copy(old->u.var, &v);
            if (st == LX_OK) st = lx_variable_set_value(v, np[i], false);
            if (st == LX_OK) st = lx_tree_set_path(t, lv->paths[i], lx_var_v(v));
            lx_variable_release(v);
        } else if (old->kind == LX_V_BOX) {
            lx_box *b = NULL;
            st = lx_box_replace_boxed(old->u.box, np[i], &b);
            if (st == LX_OK) st = lx_tree_set_path(t, lv->paths[i], lx_box_v(b));
            lx_box_release(b);
        } else {
            st = lx_tree_set_path(t, lv->paths[i], lx_array_v(np[i]));
        }
    }
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    *out = t;
    return LX_OK;
}

lx_status optax_apply_updates(const lx_tree *params, const lx_tree *updates, lx_tree **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "apply_updates: output is NULL");
    *out = NULL;
    lx_leaves lv;
    LX_TRY(lx_optax_leaves_from_tree("apply_updates", "params", params, true, &lv));
    lx_array **uu = calloc((size_t)lv.n + 1, sizeof *uu), **np = calloc((size_t)lv.n + 1, sizeof *np);
    lx_status st = (uu && np) ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "apply_updates: out of memory");
    if (st == LX_OK) st = lx_optax_match_tree("apply_updates", "updates", "params", updates, &lv, uu);
    for (int i = 0; st == LX_OK && i < lv.n; i++) {
        np[i] = add_cast(lv.params[i], uu[i]);
        if (!np[i]) st = lx_last_status();
    }
    if (st == LX_OK && tl_debug_nans) st = check_finite("updated params", &lv, np);
    lx_tree *t = NULL;
    if (st == LX_OK) st = lx_optax_params_like(params, &lv, np, &t);
    if (st == LX_OK) *out = t;
    for (int i = 0; np && i < lv.n; i++) lx_release(np[i]);
    free(np);
    free(uu);
    lx_optax_leaves_free(&lv);
    return st;
}

lx_status optax_step(const optax_tx *tx, const lx_tree *grads, lx_tree **params, lx_tree **state) {
    if (!params || !state || !*params || !*state)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "step: params and state must be given");
    lx_tree *upd = NULL, *ns = NULL, *np = NULL;
    bool fused = false;
    /* the old trees are released below: donated (written in place when nothing else holds them) */
    LX_TRY(lx_optax_fused_step_ex(tx, grads, *state, *params, true, &np, &ns, &fused));
    if (!fused) {
        LX_TRY(optax_update(tx, grads, *state, *params, &upd, &ns));
        lx_status st = optax_apply_updates(*params, upd, &np);
        lx_optax_recycle_tree(upd);
        if (st != LX_OK) {
            lx_tree_release(ns);
            return st;
        }
    }
    /* the old trees' buffers serve the next step when nobody else holds them */
    lx_optax_recycle_tree(*params);
    lx_optax_recycle_tree(*state);
    *params = np;
    *state = ns;
    return LX_OK;
}

/* ------------------------------------------------------------------ layout printing */

static lx_status layout_rec(FILE *f, const lx_tree *t, char *prefix, size_t cap) {
    size_t len = strlen(prefix);
    for (size_t i = 0; i < lx_tree_len(t); i++) {
        const char *k = lx_tree_key(t, i);
        const lx_value *v = lx_tree_at(t, i);
        int w = snprintf(prefix + len, cap - len, "%s%s", len ? "/" : "", k);
        if (w < 0 || (size_t)w >= cap - len) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state layout: path too long");
        if (v->kind == LX_V_TREE) {
            if (lx_tree_len(v->u.tree) == 0) fprintf(f, "%s {}\n", prefix);
            else LX_TRY(layout_rec(f, v->u.tree, prefix, cap));
        } else {
            lx_array *a = lx_optax_leaf_array(v);
            char sig[96];
            fprintf(f, "%s %s\n", prefix, a ? lx_array_sig(a, sig, sizeof sig) : lx_value_pytype(v));
        }
        prefix[len] = '\0';
    }
    return LX_OK;
}

lx_status optax_state_layout(FILE *f, const lx_tree *state) {
    if (!f || !state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state layout: NULL argument");
    char prefix[1024] = "";
    if (lx_tree_len(state) == 0) {
        fprintf(f, "{}\n");
        return LX_OK;
    }
    return layout_rec(f, state, prefix, sizeof prefix);
}
