/* nnx.split_rngs + nnx.vmap over a constructor, and nnx.scan over the stacked module
 * (nnx_transforms.h), as loops over the layer axis. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/nnx_transforms.h"
#include "linnx/ops.h"
#include "../core/status_internal.h"

static lx_status oom(void) { return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory"); }

static const char *shp(const lx_array *a, char *b, size_t n) { return lx_shape_str(a->ndim, a->shape, b, n); }

/* The axis for a Variable: the first matching filter's, else 0. */
static int axis_for(const nnx_state_axes *sa, const char *path, const lx_variable *v) {
    for (int i = 0; sa && i < sa->n; i++)
        if (nnx_filter_match(&sa->filters[i], path, v)) return sa->axes[i];
    return 0;
}

/* out_sharding with `pname` inserted at (add) / removed from (!add) `axis`; *changed false when
 * the Variable has no out_sharding. */
static lx_status edit_sharding(lx_variable *v, int axis, const char *pname, bool add, const char *path) {
    const lx_value *sh = lx_variable_meta_get(v, "out_sharding");
    if (!pname || !sh || sh->kind != LX_V_STRS) return LX_OK;
    int n = sh->u.strs.n;
    const char *names[LX_MAX_DIMS + 1];
    if (add) {
        int at = axis < 0 ? axis + n + 1 : axis;
        if (at < 0 || at > n || n + 1 > LX_MAX_DIMS)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.vmap: cannot insert '%s' at axis %d of %s's out_sharding (%d names)",
                           pname, axis, path, n);
        for (int i = 0, j = 0; i <= n; i++) names[i] = i == at ? pname : sh->u.strs.v[j++];
        return lx_variable_meta_set(v, "out_sharding", lx_strs_v(n + 1, names));
    }
    int at = axis < 0 ? axis + n : axis;
    if (at < 0 || at >= n || !sh->u.strs.v[at] || strcmp(sh->u.strs.v[at], pname) != 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.scan: %s's out_sharding has no '%s' at axis %d", path, pname, axis);
    for (int i = 0, j = 0; i < n; i++)
        if (i != at) names[j++] = sh->u.strs.v[i];
    return lx_variable_meta_set(v, "out_sharding", lx_strs_v(n - 1, names));
}

static lx_status new_var_like(const lx_variable *v, lx_array *value, lx_variable **out) {
    return lx_variable_new_md(lx_variable_type(v), value, lx_variable_metadata(v), out);
}

/* ---- create ---- */
typedef struct ctor_ctx {
    const nnx_type *type;
    const lx_call *call;
} ctor_ctx;

static lx_status type_ctor(nnx_rngs *rngs, void *user, nnx_module **out) {
    const ctor_ctx *c = user;
    return nnx_module_new(c->type, c->call, rngs, out);
}

lx_status nnx_vmap_create(const nnx_type *type, const lx_call *call, nnx_rngs *rngs, int64_t L,
                          const nnx_state_axes *sa, const char *pname, nnx_module **out) {
    if (!out) return lx_null_out("nnx_vmap_create");
    *out = NULL;
    if (!type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_vmap_create: type is NULL");
    ctor_ctx c = {type, call};
    return nnx_vmap_create_fn(type_ctor, &c, rngs, L, sa, pname, out);
}

lx_status nnx_vmap_create_fn(nnx_ctor_fn ctor, void *user, nnx_rngs *rngs, int64_t L, const nnx_state_axes *sa,
                             const char *pname, nnx_module **out) {
    if (!out) return lx_null_out("nnx_vmap_create_fn");
    *out = NULL;
    if (!ctor) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_vmap_create_fn: ctor is NULL");
    if (L <= 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.split_rngs: splits must be positive, got %lld", (long long)L);
    int ns = rngs ? nnx_rngs_count(rngs) : 0;
    lx_key *keys = calloc((size_t)ns * (size_t)L + 1, sizeof *keys);
    nnx_stream_spec *specs = calloc((size_t)ns + 1, sizeof *specs);
    nnx_module **copies = calloc((size_t)L, sizeof *copies);
    lx_tree **states = calloc((size_t)L, sizeof *states);
    nnx_graphdef *gd = NULL;
    lx_status st = keys && specs && copies && states ? LX_OK : oom();
    /* split_rngs: one draw per stream, split in L */
    for (int j = 0; st == LX_OK && j < ns; j++) {
        lx_key k;
        st = nnx_rngs_draw(rngs, nnx_rngs_stream_name(rngs, j), &k);
        if (st == LX_OK) st = lx_key_split(k, L, lx_random_legacy(), keys + (size_t)j * (size_t)L);
    }
    for (int64_t i = 0; st == LX_OK && i < L; i++) {
        nnx_rngs *ri = NULL;
        for (int j = 0; j < ns; j++)
            specs[j] = (nnx_stream_spec){nnx_rngs_stream_name(rngs, j), true, 0, keys[(size_t)j * (size_t)L + (size_t)i]};
        if (rngs) st = nnx_rngs_new(ns, specs, &ri);
        if (st == LX_OK) st = ctor(ri, user, &copies[i]);
        if (st == LX_OK && !copies[i])
            st = lx_fail(LX_ERR_INVALID_ARGUMENT,
                         "nnx_vmap_create_fn: the constructor returned LX_OK but no module for copy %lld",
                         (long long)i);
        nnx_rngs_release(ri);
        nnx_graphdef *g = NULL;
        if (st == LX_OK) st = nnx_split(copies[i], 0, NULL, i == 0 ? &gd : &g, &states[i]);
        nnx_graphdef_free(g);
    }
    /* stack */
    lx_flat f0 = {0}, fo = {0};
    size_t mark = lx_pool_open();
    if (st == LX_OK) st = lx_tree_flatten(states[0], &f0);
    for (size_t p = 0; st == LX_OK && p < f0.len; p++) {
        const char *path = f0.items[p].path;
        const lx_value *v0 = &f0.items[p].value;
        if (v0->kind != LX_V_VARIABLE) {
            st = lx_flat_append(&fo, path, *v0);
            continue;
        }
        int axis = axis_for(sa, path, v0->u.var);
        lx_variable *nv = NULL;
        if (axis == NNX_AXIS_BROADCAST) {
            st = lx_flat_append(&fo, path, *v0);
            continue;
        }
        lx_array *xs_inline[32], **xs = L <= 32 ? xs_inline : malloc(sizeof *xs * (size_t)L);
        if (!xs) {
            st = oom();
            break;
        }
        for (int64_t i = 0; st == LX_OK && i < L; i++) {
            const lx_value *vi = lx_tree_find(states[i], path);
            xs[i] = vi && vi->kind == LX_V_VARIABLE ? lx_variable_get_value(vi->u.var) : NULL;
            if (!xs[i]) st = lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.vmap: copy %lld has no Variable %s", (long long)i, path);
        }
        lx_array *a0 = st == LX_OK ? xs[0] : NULL;
        int ax = a0 ? (axis < 0 ? axis + a0->ndim + 1 : axis) : 0;
        char b[96];
        if (st == LX_OK && (ax < 0 || ax > a0->ndim))
            st = lx_fail(LX_ERR_SHAPE, "nnx.vmap: StateAxes puts %s (shape %s) on axis %d, out of range", path, shp(a0, b, sizeof b), axis);
        lx_array *y = st == LX_OK ? lx_stack((int)L, xs, ax) : NULL;
        if (xs != xs_inline) free(xs);
        if (st == LX_OK && !y) st = lx_fail_context(lx_last_status(), "nnx.vmap: %s: ", path);
        if (st == LX_OK) st = new_var_like(v0->u.var, y, &nv);
        if (st == LX_OK) st = edit_sharding(nv, ax, pname, true, path);
        if (st == LX_OK) st = lx_flat_append(&fo, path, lx_var_v(nv));
        lx_variable_release(nv);
    }
    lx_tree *stacked = NULL;
    if (st == LX_OK) st = lx_tree_unflatten(&fo, &stacked);
    if (st == LX_OK) st = nnx_merge(gd, 1, &stacked, out);
    lx_tree_release(stacked);
    lx_flat_free(&f0);
    lx_flat_free(&fo);
    lx_pool_close(mark);
    for (int64_t i = 0; copies && i < L; i++) {
        nnx_module_release(copies[i]);
        if (states) lx_tree_release(states[i]);
    }
    nnx_graphdef_free(gd);
    free(keys);
    free(specs);
    free(copies);
    free(states);
    return st;
}

/* ---- slices ---- */
static lx_array *take_index(lx_array *a, int axis, int64_t i) {
    lx_range r[LX_MAX_DIMS];
    for (int k = 0; k <= axis; k++) r[k] = k == axis ? LX_RANGE(i, i + 1) : LX_RANGE_ALL;
    int64_t ax = axis;
    return lx_squeeze(lx_slice(a, axis + 1, r), 1, &ax);
}

/* The stacked length, checked over every stacked Variable. */
static lx_status stacked_length(const lx_flat *f, const nnx_state_axes *sa, const char *tname, int64_t *L) {
    int64_t len = -1;
    const char *first = NULL;
    char b1[96], b2[96];
    const lx_array *fa = NULL;
    for (size_t p = 0; p < f->len; p++) {
        const lx_value *v = &f->items[p].value;
        if (v->kind != LX_V_VARIABLE) continue;
        int axis = axis_for(sa, f->items[p].path, v->u.var);
        if (axis == NNX_AXIS_BROADCAST) continue;
        lx_array *a = lx_variable_get_value(v->u.var);
        if (!a) continue;
        int ax = axis < 0 ? axis + a->ndim : axis;
        if (ax < 0 || ax >= a->ndim)
            return lx_fail(LX_ERR_SHAPE, "nnx.scan over %s: StateAxes puts Variable %s on axis %d, but it has shape %s",
                           tname, f->items[p].path, axis, shp(a, b1, sizeof b1));
        if (len < 0) {
            len = a->shape[ax];
            first = f->items[p].path;
            fa = a;
        } else if (a->shape[ax] != len) {
            return lx_fail(LX_ERR_SHAPE,
                           "nnx.scan over %s: stacked Variables disagree on the length: %s has shape %s, %s has shape %s",
                           tname, first, shp(fa, b1, sizeof b1), f->items[p].path, shp(a, b2, sizeof b2));
        }
    }
    if (len < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.scan over %s: no stacked Variable", tname);
    *L = len;
    return LX_OK;
}

static lx_status slice_module(const nnx_graphdef *gd, const lx_flat *f, const nnx_state_axes *sa, const char *pname,
                              int64_t i, nnx_module **out, lx_tree **state_out) {
    lx_flat fo = {0};
    lx_status st = LX_OK;
    for (size_t p = 0; st == LX_OK && p < f->len; p++) {
        const char *path = f->items[p].path;
        const lx_value *v = &f->items[p].value;
        int axis = v->kind == LX_V_VARIABLE ? axis_for(sa, path, v->u.var) : NNX_AXIS_BROADCAST;
        lx_array *a = v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var) : NULL;
        if (axis == NNX_AXIS_BROADCAST || !a) {
            st = lx_flat_append(&fo, path, *v);
            continue;
        }
        int ax = axis < 0 ? axis + a->ndim : axis;
        lx_array *s = take_index(a, ax, i);
        lx_variable *nv = NULL;
        st = s ? new_var_like(v->u.var, s, &nv) : lx_last_status();
        if (st == LX_OK) st = edit_sharding(nv, ax, pname, false, path);
        if (st == LX_OK) st = lx_flat_append(&fo, path, lx_var_v(nv));
        lx_variable_release(nv);
    }
    lx_tree *t = NULL;
    if (st == LX_OK) st = lx_tree_unflatten(&fo, &t);
    if (st == LX_OK) st = nnx_merge(gd, 1, &t, out);
    lx_flat_free(&fo);
    if (st == LX_OK && state_out) *state_out = t;
    else lx_tree_release(t);
    return st;
}

lx_status nnx_stack_slice(nnx_module *stacked, int64_t index, const nnx_state_axes *sa, const char *pname,
                          nnx_module **out) {
    if (!out) return lx_null_out("nnx_stack_slice");
    *out = NULL;
    if (!stacked) return lx_null_input("nnx_stack_slice: stacked is NULL");
    nnx_graphdef *gd = NULL;
    lx_tree *state = NULL;
    lx_flat f = {0};
    int64_t L = 0;
    lx_status st = nnx_split(stacked, 0, NULL, &gd, &state);
    if (st == LX_OK) st = lx_tree_flatten(state, &f);
    if (st == LX_OK) st = stacked_length(&f, sa, stacked->type->name, &L);
    if (st == LX_OK && (index < 0 || index >= L))
        st = lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_stack_slice: index %lld out of range for %lld layers", (long long)index, (long long)L);
    if (st == LX_OK) st = slice_module(gd, &f, sa, pname, index, out, NULL);
    lx_flat_free(&f);
    lx_tree_release(state);
    nnx_graphdef_free(gd);
    return st;
}

/* ys: the layers' y values stacked on axis 0, leaf by leaf: an array is stacked, a tuple tree
 * ({"0": ..., "1": ...}, any nesting) keeps its keys with each entry stacked, None stays None, and
 * any other (static) value is layer 0's. Every layer must return the same structure. */
static lx_status stack_ys(const lx_value *const *ys, int64_t L, const char *tname, lx_value *out) {
    const lx_value *y0 = ys[0];
    char b1[96], b2[96];
    for (int64_t i = 1; i < L; i++)
        if (ys[i]->kind != y0->kind)
            return lx_fail(LX_ERR_TYPE, "nnx.scan over %s: layer %lld returned a y of kind %s, layer 0 one of kind %s",
                           tname, (long long)i, lx_kind_name(ys[i]->kind), lx_kind_name(y0->kind));
    if (y0->kind == LX_V_NONE) {
        *out = lx_none();
        return LX_OK;
    }
    if (y0->kind == LX_V_ARRAY) {
        lx_array **xs = malloc(sizeof *xs * (size_t)L);
        if (!xs) return oom();
        lx_status st = LX_OK;
        for (int64_t i = 0; st == LX_OK && i < L; i++) {
            xs[i] = ys[i]->u.array;
            const lx_array *a0 = y0->u.array;
            if (!xs[i] || xs[i]->dtype != a0->dtype || !lx_shape_eq(xs[i], a0->ndim, a0->shape))
                st = lx_fail(LX_ERR_SHAPE, "nnx.scan over %s: layer %lld returned a y of %s %s, layer 0 one of %s %s",
                             tname, (long long)i, xs[i] ? lx_dtype_name(xs[i]->dtype) : "NULL",
                             xs[i] ? shp(xs[i], b1, sizeof b1) : "", lx_dtype_name(y0->u.array->dtype),
                             shp(y0->u.array, b2, sizeof b2));
        }
        lx_array *y = st == LX_OK ? lx_stack((int)L, xs, 0) : NULL;
        free(xs);
        LX_TRY(st);
        if (!y) return lx_last_status();
        *out = lx_array_v(lx_retain(y));
        return LX_OK;
    }
    if (y0->kind != LX_V_TREE) return lx_value_dup(y0, out);
    const lx_tree *t0 = y0->u.tree;
    lx_tree *t = lx_tree_new();
    const lx_value **sub = malloc(sizeof *sub * (size_t)L);
    lx_status st = t && sub ? LX_OK : oom();
    for (size_t k = 0; st == LX_OK && k < lx_tree_len(t0); k++) {
        const char *key = lx_tree_key(t0, k);
        for (int64_t i = 0; st == LX_OK && i < L; i++) {
            sub[i] = lx_tree_get(ys[i]->u.tree, key);
            if (!sub[i] || lx_tree_len(ys[i]->u.tree) != lx_tree_len(t0))
                st = lx_fail(LX_ERR_TYPE,
                             "nnx.scan over %s: layer %lld returned a y of another structure than layer 0's", tname,
                             (long long)i);
        }
        lx_value o = lx_none();
        if (st == LX_OK) st = stack_ys(sub, L, tname, &o);
        if (st == LX_OK) st = lx_tree_set(t, key, o);
        lx_value_free(&o);
    }
    free(sub);
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    *out = lx_tree_v(t);
    return LX_OK;
}

/* remat < 0: a plain call per layer; else nnx.remat of each layer's call with that policy. */
static lx_status scan_impl(nnx_module *stacked, const char *method, const nnx_state_axes *sa, const char *pname,
                           int remat, const lx_call *call, lx_value *out) {
    const char *fn = remat < 0 ? "nnx_scan_call" : "nnx_scan_call_remat";
    if (!out) return lx_null_out(fn);
    *out = lx_none();
    if (!stacked) return lx_null_input("%s: stacked is NULL", fn);
    if (!call) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: call is NULL", fn);
    const char *tname = stacked->type->name;
    if (call->nargs < 1 || call->args[0].kind != LX_V_ARRAY || !call->args[0].u.array)
        return lx_fail(LX_ERR_TYPE, "nnx.scan over %s: positional 0 must be the carry (an array)", tname);
    nnx_graphdef *gd = NULL;
    lx_tree *state = NULL;
    lx_flat f = {0};
    int64_t L = 0;
    char b1[96], b2[96];
    lx_status st = nnx_split(stacked, 0, NULL, &gd, &state);
    if (st == LX_OK) st = lx_tree_flatten(state, &f);
    if (st == LX_OK) st = stacked_length(&f, sa, tname, &L);
    for (int k = 1; st == LX_OK && k < call->nargs; k++) {
        const lx_value *a = &call->args[k];
        if (a->kind == LX_V_ARRAY && a->u.array && (a->u.array->ndim < 1 || a->u.array->shape[0] != L))
            st = lx_fail(LX_ERR_SHAPE, "nnx.scan over %s: argument %d has shape %s, but the stack has %lld layers", tname, k,
                         shp(a->u.array, b1, sizeof b1), (long long)L);
    }
    lx_array *carry0 = call->args[0].u.array, *carry = carry0;
    size_t np = f.len;
    lx_value *ys = calloc((size_t)(L > 0 ? L : 1), sizeof *ys);
    lx_value *args = calloc((size_t)call->nargs, sizeof *args);
    /* One layer module for the whole scan (a merge per call, not per layer): its Variables take
     * layer i's slices in turn. given/after: per layer and path, the value set and the value the
     * method left (pool-owned). */
    lx_array **given = calloc((size_t)(L > 0 ? L : 1) * (np + 1), sizeof *given);
    lx_array **after = calloc((size_t)(L > 0 ? L : 1) * (np + 1), sizeof *after);
    lx_variable **tvar = calloc(np + 1, sizeof *tvar);
    /* the values of the shared (StateAxes None) Variables at the call: every layer writes them
     * directly, so a failure puts these back */
    lx_array **bsave = calloc(np + 1, sizeof *bsave);
    if (st == LX_OK && (!ys || !args || !after || !given || !tvar || !bsave)) st = oom();
    for (size_t p = 0; st == LX_OK && p < np; p++) {
        const lx_value *v = &f.items[p].value;
        if (v->kind == LX_V_VARIABLE && axis_for(sa, f.items[p].path, v->u.var) == NNX_AXIS_BROADCAST &&
            lx_variable_get_value(v->u.var))
            bsave[p] = lx_retain(lx_variable_get_value(v->u.var));
    }
    size_t mark = lx_pool_open();
    bool bare = false;
    nnx_module *m = NULL;
    lx_tree *tstate = NULL;
    if (st == LX_OK && L > 0) st = slice_module(gd, &f, sa, pname, 0, &m, NULL);
    if (st == LX_OK && m) st = nnx_state(m, 0, NULL, &tstate);
    for (size_t p = 0; st == LX_OK && p < np; p++) {
        const lx_value *v = &f.items[p].value;
        if (v->kind != LX_V_VARIABLE || axis_for(sa, f.items[p].path, v->u.var) == NNX_AXIS_BROADCAST ||
            !lx_variable_get_value(v->u.var))
            continue;
        const lx_value *tv = lx_tree_find(tstate, f.items[p].path);
        if (!tv || tv->kind != LX_V_VARIABLE)
            st = lx_fail(LX_ERR_INTERNAL, "nnx.scan over %s: the layer view has no Variable %s", tname, f.items[p].path);
        else
            tvar[p] = tv->u.var;
    }
    for (int64_t i = 0; st == LX_OK && i < L; i++) {
        for (size_t p = 0; st == LX_OK && p < np; p++) {
            if (!tvar[p]) continue;
            if (i > 0) {
                lx_array *a = lx_variable_get_value(f.items[p].value.u.var);
                int axis = axis_for(sa, f.items[p].path, f.items[p].value.u.var);
                lx_array *sl = take_index(a, axis < 0 ? axis + a->ndim : axis, i);
                st = sl ? lx_variable_set_value(tvar[p], sl, false) : lx_last_status();
            }
            given[(size_t)i * np + p] = lx_variable_get_value(tvar[p]);
        }
        for (int k = 0; st == LX_OK && k < call->nargs; k++) {
            args[k] = call->args[k];
            if (k == 0) args[k] = lx_array_v(carry);
            else if (args[k].kind == LX_V_ARRAY) {
                lx_array *x = take_index(args[k].u.array, 0, i);
                if (!x) st = lx_last_status();
                args[k] = lx_array_v(x);
            }
        }
        lx_value o = lx_none();
        lx_call ci = {call->nargs, args, call->nkwargs, call->kwargs};
        if (st == LX_OK)
            st = remat < 0 ? nnx_call(m, method, &ci, &o) : nnx_remat_call(m, method, (lx_remat_policy)remat, &ci, &o);
        for (size_t p = 0; st == LX_OK && p < np; p++)
            if (tvar[p]) after[(size_t)i * np + p] = lx_autorelease(lx_retain(lx_variable_get_value(tvar[p])));
        if (st != LX_OK) break;
        lx_value nc = o;
        bare = o.kind != LX_V_TREE;
        if (!bare) {
            const lx_value *c = lx_tree_get(o.u.tree, "0"), *y = lx_tree_get(o.u.tree, "1");
            if (!c || !y) st = lx_fail(LX_ERR_TYPE, "nnx.scan over %s: the method must return (carry, y)", tname);
            else {
                nc = *c;
                st = lx_value_dup(y, &ys[i]);
            }
        }
        if (st == LX_OK && (nc.kind != LX_V_ARRAY || !nc.u.array))
            st = lx_fail(LX_ERR_TYPE, "nnx.scan over %s: the carry is a %s, not an array", tname, lx_kind_name(nc.kind));
        else if (st == LX_OK && (nc.u.array->dtype != carry0->dtype || !lx_shape_eq(nc.u.array, carry0->ndim, carry0->shape)))
            st = lx_fail(LX_ERR_SHAPE, "nnx.scan over %s: the carry changed from %s %s to %s %s in iteration %lld", tname,
                         lx_dtype_name(carry0->dtype), shp(carry0, b1, sizeof b1), lx_dtype_name(nc.u.array->dtype),
                         shp(nc.u.array, b2, sizeof b2), (long long)i);
        if (st == LX_OK) carry = lx_autorelease(lx_retain(nc.u.array));
        lx_value_free(&o);
    }
    /* ys */
    lx_value result = lx_none();
    if (st == LX_OK && bare) {
        result = lx_array_v(lx_retain(carry));
    } else if (st == LX_OK) {
        lx_value yv = lx_none();
        const lx_value **yp = malloc(sizeof *yp * (size_t)L);
        if (!yp) st = oom();
        for (int64_t i = 0; st == LX_OK && i < L; i++) yp[i] = &ys[i];
        if (st == LX_OK) st = stack_ys(yp, L, tname, &yv);
        free(yp);
        lx_tree *t = st == LX_OK ? lx_tree_new() : NULL;
        if (st == LX_OK && !t) st = oom();
        if (st == LX_OK) st = lx_tree_set(t, "0", lx_array_v(carry));
        if (st == LX_OK) st = lx_tree_set(t, "1", yv);
        lx_value_free(&yv);
        if (st == LX_OK) result = lx_tree_v(t);
        else lx_tree_release(t);
    }
    /* Variables the method changed: stack the layers' new values, then write them all */
    lx_flat changed = {0};
    for (size_t p = 0; st == LX_OK && p < f.len; p++) {
        const char *path = f.items[p].path;
        const lx_value *v = &f.items[p].value;
        if (v->kind != LX_V_VARIABLE) continue;
        int axis = axis_for(sa, path, v->u.var);
        if (axis == NNX_AXIS_BROADCAST) continue;
        bool any = false;
        lx_array *xs_inline[32], **xs = L <= 32 ? xs_inline : malloc(sizeof *xs * (size_t)L);
        if (!xs) {
            st = oom();
            break;
        }
        for (int64_t i = 0; i < L; i++) {
            xs[i] = after[(size_t)i * np + p];
            if (!xs[i]) st = lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.scan over %s: layer %lld lost Variable %s", tname, (long long)i, path);
            else if (xs[i] != given[(size_t)i * np + p]) any = true;
        }
        if (st == LX_OK && any) {
            lx_array *a = lx_variable_get_value(v->u.var);
            int ax = axis < 0 ? axis + a->ndim : axis;
            lx_array *y = lx_stack((int)L, xs, ax);
            st = y ? lx_flat_append(&changed, path, lx_array_v(y)) : lx_last_status();
        }
        if (xs != xs_inline) free(xs);
    }
    for (size_t p = 0; st == LX_OK && p < changed.len; p++) {
        const lx_value *v = lx_tree_find(state, changed.items[p].path);
        st = lx_variable_set_value(v->u.var, changed.items[p].value.u.array, true);
    }
    lx_flat_free(&changed);
    for (size_t p = 0; bsave && p < np; p++) {
        if (!bsave[p]) continue;
        lx_variable *bv = f.items[p].value.u.var;
        if (st != LX_OK && lx_variable_get_value(bv) != bsave[p]) lx_variable_set_value(bv, bsave[p], false);
        lx_release(bsave[p]);
    }
    free(bsave);
    for (int64_t i = 0; ys && i < L; i++) lx_value_free(&ys[i]);
    free(ys);
    free(args);
    free(after);
    free(given);
    free(tvar);
    lx_tree_release(tstate);
    nnx_module_release(m);
    lx_flat_free(&f);
    lx_tree_release(state);
    nnx_graphdef_free(gd);
    lx_pool_close(mark);
    if (st != LX_OK) {
        lx_value_free(&result);
        return st;
    }
    *out = result;
    return LX_OK;
}

lx_status nnx_scan_call(nnx_module *stacked, const char *method, const nnx_state_axes *sa, const char *pname,
                        const lx_call *call, lx_value *out) {
    return scan_impl(stacked, method, sa, pname, -1, call, out);
}

lx_status nnx_scan_call_remat(nnx_module *stacked, const char *method, const nnx_state_axes *sa, const char *pname,
                              lx_remat_policy policy, const lx_call *call, lx_value *out) {
    if (!out) return lx_null_out("nnx_scan_call_remat");
    if (policy != LX_REMAT_NOTHING_SAVEABLE && policy != LX_REMAT_DOTS_SAVEABLE)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.remat: unknown policy %d", (int)policy);
    return scan_impl(stacked, method, sa, pname, (int)policy, call, out);
}
