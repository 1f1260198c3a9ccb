/* optax's state trees and buffers: the arithmetic helpers, the buffers (from the array storage
 * cache), and the helpers that read a state against the params (naming the first path that
 * differs) and build the next one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/variable.h"
#include "linnx/box.h"
#include "optax_internal.h"

lx_array *lx_optax_leaf_array(const lx_value *v) {
    switch (v->kind) {
    case LX_V_ARRAY: return v->u.array;
    case LX_V_VARIABLE: return lx_variable_get_value(v->u.var);
    case LX_V_BOX: return lx_box_unbox(v->u.box);
    default: return NULL;
    }
}

/* ------------------------------------------------------------------ arithmetic helpers */

/* A step's outputs come from the array storage cache (src/core/array.c): the buffers of the old
 * state and params a finished step released serve the next step, so a steady-state optimizer step
 * calls no malloc for array data and touches no fresh pages. */
lx_array *lx_optax_new_f32(const lx_array *a) { return lx_array_empty(LX_F32, a->ndim, a->shape); }

void lx_optax_recycle(lx_array *a) { lx_release(a); }

/* Releasing is enough: the data blocks of arrays nobody else holds go to the storage cache. */
void lx_optax_recycle_tree(lx_tree *t) { lx_tree_release(t); }

void optax_release_buffers(void) { lx_array_cache_release(); }

lx_array *lx_optax_store(lx_array *a, lx_dtype dtype) {
    if (dtype == LX_F32 || dtype == OPTAX_DTYPE_DEFAULT) return lx_retain(a);
    lx_array *r = lx_array_empty(LX_BF16, a->ndim, a->shape);
    if (!r) return NULL;
    uint16_t *d = r->data;
    for (int64_t i = 0; i < a->size; i++) {
        float v = lx_optax_round_bf16(lx_optax_get(a, i));
        uint32_t b;
        memcpy(&b, &v, sizeof b);
        d[i] = (uint16_t)(b >> 16);
    }
    return r;
}

float lx_optax_sumsq(const lx_array *a) {
    double s = 0.0;
    for (int64_t i = 0; i < a->size; i++) {
        float x = lx_optax_get(a, i);
        float x2 = x * x;
        s += x2;
    }
    return (float)s;
}

int32_t lx_safe_increment(int32_t c) { return c == INT32_MAX ? c : c + 1; }

/* ------------------------------------------------------------------ state helpers */

lx_status lx_state_missing(const char *spath, const char *field) {
    return lx_fail(LX_ERR_SHAPE,
                   "update: the optimizer state has no '%s%s%s' (was it made by init of this optimizer?)", spath,
                   *spath ? "/" : "", field);
}

lx_status lx_state_get_count(const lx_tree *state, const char *field, const char *spath, int32_t *out) {
    const lx_value *v = lx_tree_get(state, field);
    if (!v) return lx_state_missing(spath, field);
    if (v->kind != LX_V_ARRAY || v->u.array->dtype != LX_I32 || v->u.array->ndim != 0 || lx_is_abstract(v->u.array))
        return lx_fail(LX_ERR_TYPE, "update: the optimizer state's '%s%s%s' must be an int32 scalar", spath,
                       *spath ? "/" : "", field);
    *out = lx_i32(v->u.array)[0];
    return LX_OK;
}

lx_status lx_state_put_count(lx_tree *state, const char *field, int32_t count) {
    lx_array *a = lx_array_empty(LX_I32, 0, NULL);
    if (!a) return lx_last_status();
    lx_i32(a)[0] = count;
    lx_status st = lx_tree_set(state, field, lx_array_v(a));
    lx_release(a);
    return st;
}

lx_status lx_state_get_moment(const lx_tree *state, const char *field, const char *spath, const lx_leaves *lv,
                              lx_array **out) {
    return lx_state_get_moment_shaped(state, field, spath, lv, NULL, out);
}

lx_status lx_state_get_moment_shaped(const lx_tree *state, const char *field, const char *spath, const lx_leaves *lv,
                                     const lx_shape_want *want, lx_array **out) {
    const lx_value *v = lx_tree_get(state, field);
    if (!v) return lx_state_missing(spath, field);
    if (v->kind != LX_V_TREE)
        return lx_fail(LX_ERR_TYPE, "update: the optimizer state's '%s%s%s' must be a tree like the params", spath,
                       *spath ? "/" : "", field);
    const lx_tree *t = v->u.tree;
    char b1[64], b2[64];
    size_t nactive = 0;
    for (int k = 0; k < lv->n; k++) {
        int i = lv->order[k];
        if (!lv->active[i]) continue;
        nactive++;
        const lx_value *x = lx_tree_find(t, lv->paths[i]);
        lx_array *a = x ? lx_optax_leaf_array(x) : NULL;
        if (!a)
            return lx_fail(LX_ERR_SHAPE,
                           "update: the optimizer state does not match the params: '%s%s%s' has no leaf at params "
                           "path '%s'",
                           spath, *spath ? "/" : "", field, lv->paths[i]);
        int wn = want ? want[i].ndim : lv->ref[i]->ndim;
        const int64_t *ws = want ? want[i].shape : lv->ref[i]->shape;
        if (!lx_shape_eq(a, wn, ws) || lx_is_abstract(a) || (a->dtype != LX_F32 && a->dtype != LX_BF16))
            return lx_fail(LX_ERR_SHAPE,
                           "update: the optimizer state does not match the params: '%s%s%s/%s' is %s %s, expected "
                           "%s",
                           spath, *spath ? "/" : "", field, lv->paths[i], lx_dtype_name(a->dtype),
                           lx_shape_str(a->ndim, a->shape, b1, sizeof b1), lx_shape_str(wn, ws, b2, sizeof b2));
        out[i] = a;
    }
    if (lx_tree_count_leaves(t) != nactive) {
        lx_flat f = {0};
        LX_TRY(lx_tree_flatten(t, &f));
        const char *extra = "?";
        for (size_t j = 0; j < f.len; j++) {
            bool found = false;
            for (int i = 0; i < lv->n && !found; i++) found = lv->active[i] && !strcmp(f.items[j].path, lv->paths[i]);
            if (!found) {
                extra = f.items[j].path;
                break;
            }
        }
        lx_status st = lx_fail(LX_ERR_SHAPE,
                               "update: the optimizer state does not match the params: '%s%s%s' has a leaf at '%s' "
                               "that the params do not have",
                               spath, *spath ? "/" : "", field, extra);
        lx_flat_free(&f);
        return st;
    }
    return LX_OK;
}

lx_status lx_state_put_moment(lx_tree *state, const char *field, const lx_leaves *lv, lx_array **arrs) {
    lx_tree *t = lx_tree_new();
    lx_status st = t ? LX_OK : lx_last_status();
    for (int i = 0; st == LX_OK && i < lv->n; i++) {
        if (lv->active[i]) {
            st = lx_tree_set_path(t, lv->paths[i], lx_array_v(arrs[i]));
        } else {
            lx_tree *empty = lx_tree_new(); /* MaskedNode() */
            st = empty ? lx_tree_set_path(t, lv->paths[i], lx_tree_v(empty)) : lx_last_status();
            lx_tree_release(empty);
        }
    }
    for (int i = 0; i < lv->n; i++) {
        lx_release(arrs[i]);
        arrs[i] = NULL;
    }
    if (st == LX_OK) st = lx_tree_set(state, field, lx_tree_v(t));
    lx_tree_release(t);
    return st;
}

lx_status lx_state_put_full(lx_tree *state, const char *field, const lx_leaves *lv, lx_dtype dtype, float fill) {
    lx_array **arrs = calloc((size_t)lv->n + 1, sizeof *arrs);
    if (!arrs) return lx_fail(LX_ERR_NO_MEMORY, "init: out of memory");
    lx_status st = LX_OK;
    for (int i = 0; st == LX_OK && i < lv->n; i++) {
        if (!lv->active[i]) continue;
        lx_dtype d = dtype == OPTAX_DTYPE_DEFAULT ? lv->ref[i]->dtype : dtype;
        lx_array *f32 = lx_array_full_f32(lv->ref[i]->ndim, lv->ref[i]->shape, fill);
        if (!f32) {
            st = lx_last_status();
            break;
        }
        arrs[i] = lx_optax_store(f32, d);
        lx_release(f32);
        if (!arrs[i]) st = lx_last_status();
    }
    if (st == LX_OK) {
        st = lx_state_put_moment(state, field, lv, arrs);
    } else {
        for (int i = 0; i < lv->n; i++) lx_release(arrs[i]);
    }
    free(arrs);
    return st;
}
