/* flax.nnx.Optimizer (flax/nnx/training/optimizer.py): step as an OptState uint32 Variable, the
 * optax state as OptArray / OptVariable Variables, update(model, grads) that writes only after
 * every check passed. */
#include <stdlib.h>
#include <string.h>

#include "linnx/train.h"
#include "optax_internal.h"
#include "../core/status_internal.h"

const lx_vartype lx_OptState = {"OptState", &lx_Variable};
const lx_vartype lx_OptArray = {"OptArray", &lx_OptState};
const lx_vartype lx_OptVariable = {"OptVariable", &lx_OptState};

struct nnx_optimizer {
    lx_variable *step;
    optax_tx *tx;
    lx_tree *opt_state; /* Variables */
    nnx_filter wrt;
};

/* ------------------------------------------------------------------ tree helpers */

/* A path of `flat` params that `path` ends with, component-wise (the moment trees of optax's
 * state repeat the params' paths under their field). */
static const lx_variable *param_for(const char *path, const lx_flat *params) {
    size_t lp = strlen(path);
    for (size_t i = 0; i < params->len; i++) {
        size_t lq = strlen(params->items[i].path);
        if (lq > lp) continue;
        if (strcmp(path + lp - lq, params->items[i].path)) continue;
        if (lq < lp && path[lp - lq - 1] != '/') continue;
        if (params->items[i].value.kind == LX_V_VARIABLE) return params->items[i].value.u.var;
    }
    return NULL;
}

typedef struct wrap_ctx {
    const lx_flat *params;
} wrap_ctx;

/* to_opt_state: a leaf that belongs to a param becomes OptVariable(value, **param metadata),
 * any other array OptArray(value). */
static lx_status wrap_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    const wrap_ctx *c = user;
    if (leaf->kind != LX_V_ARRAY) return lx_value_dup(leaf, out);
    const lx_variable *pv = param_for(path, c->params);
    lx_variable *v = NULL;
    lx_status st = pv ? lx_variable_new_md(&lx_OptVariable, leaf->u.array, lx_variable_metadata(pv), &v)
                      : lx_variable_new(&lx_OptArray, leaf->u.array, &v);
    if (st != LX_OK) return st;
    *out = lx_var_v(v);
    return LX_OK;
}

/* nnx.pure: Variables replaced by their arrays. */
static lx_status pure_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    if (leaf->kind == LX_V_VARIABLE) {
        lx_value a = lx_array_v(lx_variable_get_value(leaf->u.var));
        return lx_value_dup(&a, out);
    }
    return lx_value_dup(leaf, out);
}

static lx_status pure(const lx_tree *t, lx_tree **out) { return lx_tree_map(t, pure_leaf, NULL, out); }

/* ------------------------------------------------------------------ lifecycle */

lx_status nnx_optimizer_new(nnx_module *model, optax_tx *tx, const nnx_filter *wrt, nnx_optimizer **out) {
    if (!out) { /* tx is taken even when the call fails (train.h) */
        optax_tx_release(tx);
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Optimizer: output is NULL");
    }
    *out = NULL;
    if (!tx) return lx_null_input("Optimizer: tx is NULL");
    if (!wrt || !model) optax_tx_release(tx);
    if (!wrt)
        return lx_fail(LX_ERR_TYPE,
                       "Missing required argument `wrt`. As of Flax 0.11.0 the `wrt` argument is required, if you "
                       "want to keep the previous use nnx.ModelAndOptimizer instead of nnx.Optimizer.");
    if (!model) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Optimizer: model is required");
    lx_tree *params = NULL, *st = NULL, *wrapped = NULL;
    lx_flat flat = {0};
    lx_status s = nnx_state(model, 1, wrt, &params); /* on failure too, tx is released below */
    if (s == LX_OK) s = optax_init(tx, params, &st);
    if (s == LX_OK) s = lx_tree_flatten(params, &flat);
    wrap_ctx c = {&flat};
    if (s == LX_OK) s = lx_tree_map(st, wrap_leaf, &c, &wrapped);
    lx_array *zero = s == LX_OK ? lx_array_new(LX_U32, 0, NULL) : NULL;
    lx_variable *step = NULL;
    if (s == LX_OK) s = zero ? lx_variable_new(&lx_OptState, zero, &step) : lx_last_status();
    lx_release(zero);
    nnx_optimizer *o = s == LX_OK ? calloc(1, sizeof *o) : NULL;
    if (s == LX_OK && !o) s = lx_fail(LX_ERR_NO_MEMORY, "Optimizer: out of memory");
    lx_flat_free(&flat);
    lx_tree_release(params);
    lx_tree_release(st);
    if (s != LX_OK) {
        lx_tree_release(wrapped);
        lx_variable_release(step);
        optax_tx_release(tx);
        return s;
    }
    o->step = step;
    o->tx = tx;
    o->opt_state = wrapped;
    o->wrt = *wrt;
    *out = o;
    return LX_OK;
}

void nnx_optimizer_free(nnx_optimizer *o) {
    if (!o) return;
    lx_variable_release(o->step);
    optax_tx_release(o->tx);
    lx_tree_release(o->opt_state);
    free(o);
}

lx_variable *nnx_optimizer_step_var(const nnx_optimizer *o) { return o ? o->step : NULL; }
uint32_t nnx_optimizer_step(const nnx_optimizer *o) { return o ? lx_u32(lx_variable_get_value(o->step))[0] : 0; }
const lx_tree *nnx_optimizer_opt_state(const nnx_optimizer *o) { return o ? o->opt_state : NULL; }
const optax_tx *nnx_optimizer_tx(const nnx_optimizer *o) { return o ? o->tx : NULL; }

lx_status nnx_optimizer_state(const nnx_optimizer *o, lx_tree **out) {
    if (!o) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.state(optimizer): optimizer is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.state(optimizer): out is NULL");
    lx_tree *t = lx_tree_new();
    lx_status st = t ? lx_tree_set(t, "opt_state", lx_tree_v(o->opt_state)) : lx_last_status();
    if (st == LX_OK) st = lx_tree_set(t, "step", lx_var_v(o->step));
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    *out = t;
    return LX_OK;
}

/* ------------------------------------------------------------------ update */

/* nnx.state(grads, wrt): Variable leaves the filter rejects are dropped; arrays are kept. */
typedef struct filt_ctx {
    const nnx_filter *wrt;
    lx_flat *keep;
} filt_ctx;

static lx_status filter_grads(const lx_tree *grads, const nnx_filter *wrt, lx_tree **out) {
    lx_flat f = {0}, keep = {0};
    LX_TRY(lx_tree_flatten(grads, &f));
    lx_status st = LX_OK;
    for (size_t i = 0; st == LX_OK && i < f.len; i++) {
        const lx_value *v = &f.items[i].value;
        if (v->kind == LX_V_VARIABLE && !nnx_filter_match(wrt, f.items[i].path, v->u.var)) continue;
        st = lx_flat_append(&keep, f.items[i].path, *v);
    }
    if (st == LX_OK) st = lx_tree_unflatten(&keep, out);
    lx_flat_free(&f);
    lx_flat_free(&keep);
    return st;
}

/* The writes of one update, planned before any is made: every (Variable, new value) pair. Only
 * the planning can fail (it flattens and allocates); the commit sets values and cannot, so a
 * failed update changes nothing (train.h). */
typedef struct write_plan {
    lx_variable **var;
    lx_array **val;
    size_t len, cap;
} write_plan;

static void plan_free(write_plan *p) {
    free(p->var);
    free(p->val);
    memset(p, 0, sizeof *p);
}

static lx_status plan_add(write_plan *p, lx_variable *var, lx_array *val) {
    if (p->len == p->cap) {
        size_t ncap = p->cap ? 2 * p->cap : 16;
        lx_variable **nv = realloc(p->var, ncap * sizeof *nv);
        if (!nv) return lx_fail(LX_ERR_NO_MEMORY, "Optimizer.update: out of memory");
        p->var = nv;
        lx_array **na = realloc(p->val, ncap * sizeof *na);
        if (!na) return lx_fail(LX_ERR_NO_MEMORY, "Optimizer.update: out of memory");
        p->val = na;
        p->cap = ncap;
    }
    p->var[p->len] = var;
    p->val[p->len] = val;
    p->len++;
    return LX_OK;
}

/* Every array leaf of `src` must have a Variable at the same path in `dst` with the same shape
 * and dtype; each pair joins the plan. The arrays stay owned by `src`, the Variables by `dst`:
 * both must live until plan_commit. */
static lx_status plan_into(write_plan *p, const lx_tree *dst, const lx_tree *src, const char *what) {
    lx_flat f = {0};
    LX_TRY(lx_tree_flatten(src, &f));
    lx_status st = LX_OK;
    char b1[64], b2[64];
    for (size_t i = 0; st == LX_OK && i < f.len; i++) {
        const lx_value *v = &f.items[i].value;
        lx_array *a = v->kind == LX_V_ARRAY ? v->u.array : v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var) : NULL;
        const lx_value *d = lx_tree_find(dst, f.items[i].path);
        if (!a || !d || d->kind != LX_V_VARIABLE) {
            st = lx_fail(LX_ERR_SHAPE, "%s: no Variable at '%s' to take this leaf", what, f.items[i].path);
            break;
        }
        lx_array *cur = lx_variable_get_value(d->u.var);
        if (!lx_same_shape(cur, a) || cur->dtype != a->dtype) {
            st = lx_fail(LX_ERR_SHAPE, "%s: '%s' is %s%s, the new value %s%s", what, f.items[i].path,
                         lx_dtype_name(cur->dtype), lx_shape_str(cur->ndim, cur->shape, b1, sizeof b1),
                         lx_dtype_name(a->dtype), lx_shape_str(a->ndim, a->shape, b2, sizeof b2));
            break;
        }
        st = plan_add(p, d->u.var, a);
    }
    lx_flat_free(&f);
    return st;
}

/* lx_variable_set_value fails only for a NULL Variable or value, which plan_into ruled out. */
static void plan_commit(const write_plan *p) {
    for (size_t i = 0; i < p->len; i++) (void)lx_variable_set_value(p->var[i], p->val[i], false);
}

lx_status nnx_optimizer_update(nnx_optimizer *o, nnx_module *model, const lx_tree *grads, lx_tree **updates) {
    if (updates) *updates = NULL;
    if (!o || !model) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Optimizer.update: optimizer and model are required");
    if (!grads)
        return lx_fail(LX_ERR_TYPE,
                       "Missing required argument `grads`. As of Flax 0.11.0 update requires both (model, grads) "
                       "arguments to be passed. If you want to keep the previous use nnx.ModelAndOptimizer instead "
                       "of nnx.Optimizer.");
    lx_tree *params = NULL, *pparams = NULL, *g = NULL, *pstate = NULL, *upd = NULL, *ns = NULL, *np = NULL,
            *pnp = NULL;
    lx_status st = nnx_state(model, 1, &o->wrt, &params);
    if (st == LX_OK) st = pure(params, &pparams);
    if (st == LX_OK) st = filter_grads(grads, &o->wrt, &g);
    if (st == LX_OK) st = pure(o->opt_state, &pstate);
    /* one fused pass per leaf when the caller does not want the updates (optax_fused.c) */
    bool fused = false;
    if (st == LX_OK && !updates) st = lx_optax_fused_step(o->tx, g, pstate, pparams, &np, &ns, &fused);
    if (st == LX_OK && !fused) st = optax_update(o->tx, g, pstate, pparams, &upd, &ns);
    if (st == LX_OK && !fused) st = optax_apply_updates(pparams, upd, &np);
    if (st == LX_OK) st = pure(np, &pnp);
    /* every check and allocation before the first write: the model's params (the Variables
     * `params` shares with the model, nnx.state) and the optimizer state */
    write_plan plan = {0};
    if (st == LX_OK) st = plan_into(&plan, params, pnp, "Optimizer.update: params");
    if (st == LX_OK) st = plan_into(&plan, o->opt_state, ns, "Optimizer.update: optimizer state");
    /* step[...] += 1: in place when only the step Variable holds its array (nobody can see the
     * difference), else into a new array */
    lx_array *next = NULL, *cur = lx_variable_get_value(o->step);
    bool in_place = cur->refcount == 1 && !cur->base && cur->data;
    if (st == LX_OK && !in_place) {
        next = lx_array_new(LX_U32, 0, NULL);
        if (!next) st = lx_last_status();
        else lx_u32(next)[0] = nnx_optimizer_step(o) + 1u;
    }
    if (st == LX_OK) { /* the commit: nothing below can fail */
        plan_commit(&plan);
        if (in_place) lx_u32(cur)[0] += 1u;
        else (void)lx_variable_set_value(o->step, next, false);
        if (updates) {
            *updates = upd;
            upd = NULL;
        }
    }
    plan_free(&plan);
    lx_release(next);
    lx_tree *all[] = {params, g, upd, ns, np, pnp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lx_optax_recycle_tree(all[i]);
    /* pparams and pstate hold the old param and state arrays: after a commit nobody else may, and
     * they serve the next step */
    lx_optax_recycle_tree(pparams);
    lx_optax_recycle_tree(pstate);
    return st;
}

lx_status nnx_optimizer_load_state(nnx_optimizer *o, const lx_tree *state) {
    if (!o) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.update(optimizer): optimizer is NULL");
    if (!state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.update(optimizer): state is NULL");
    lx_tree *cur = NULL;
    LX_TRY(nnx_optimizer_state(o, &cur));
    write_plan plan = {0};
    lx_status st = plan_into(&plan, cur, state, "nnx.update(optimizer)");
    if (st == LX_OK) plan_commit(&plan);
    plan_free(&plan);
    lx_tree_release(cur);
    return st;
}
