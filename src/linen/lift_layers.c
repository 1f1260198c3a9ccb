/* Scanned <-> unrolled variables layouts (lift.h): params/decoder/layers with the layer axis
 * inside every leaf <-> params/decoder/layers_0, layers_1, ... (MaxText #4369: params on axis 1,
 * the other collections on axis 0). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/box.h"
#include "linnx/lift.h"
#include "linnx/ops.h"

static lx_status oom(void) { return lx_fail(LX_ERR_NO_MEMORY, "linnx: out of memory"); }

static int axis_of(linen_var_axes axes, const char *col) {
    for (int i = 0; i < axes.n; i++)
        if (axes.v[i].collection && strcmp(axes.v[i].collection, col) == 0) return axes.v[i].axis;
    return 0;
}

static lx_array *leaf_array(const lx_value *v) {
    return v->kind == LX_V_ARRAY ? v->u.array : v->kind == LX_V_BOX ? lx_box_unbox(v->u.box) : NULL;
}

/* A leaf holding `a` in place of the old one's value: a box keeps its metadata, its names
 * losing (remove) or gaining (add) the partition name at `axis`. */
static lx_status rebox(const lx_value *old, lx_array *a, int axis, const char *pname, bool add, lx_value *out) {
    if (old->kind == LX_V_ARRAY) {
        *out = lx_array_v(lx_retain(a));
        return LX_OK;
    }
    lx_box *b = NULL, *nb = NULL;
    LX_TRY(lx_box_replace_boxed(old->u.box, a, &b));
    if (pname && lx_box_names(b)) {
        lx_status st = add ? lx_box_add_axis(b, axis, pname, &nb) : lx_box_remove_axis(b, axis, pname, &nb);
        lx_box_release(b);
        LX_TRY(st);
        b = nb;
    }
    *out = lx_box_v(b);
    return LX_OK;
}

typedef struct unstack_ctx {
    const char *col, *where; /* the collection; col/prefix, for messages */
    int axis;
    int64_t index, n;
    const char *pname;
} unstack_ctx;

static lx_status unstack_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    unstack_ctx *c = user;
    lx_array *a = leaf_array(leaf);
    char b[96];
    if (!a) return lx_fail(LX_ERR_TYPE, "unstack: %s/%s is a %s, not an array", c->where, path, lx_kind_name(leaf->kind));
    int ax = c->axis < 0 ? c->axis + a->ndim : c->axis;
    if (ax < 0 || ax >= a->ndim)
        return lx_fail(LX_ERR_SHAPE, "unstack: collection '%s' is stacked on axis %d, but %s/%s has shape %s", c->col,
                       c->axis, c->where, path, lx_shape_str(a->ndim, a->shape, b, sizeof b));
    if (c->n < 0) c->n = a->shape[ax];
    if (a->shape[ax] != c->n)
        return lx_fail(LX_ERR_SHAPE, "unstack: %s/%s has shape %s: %lld layers on axis %d, the others have %lld", c->where,
                       path, lx_shape_str(a->ndim, a->shape, b, sizeof b), (long long)a->shape[ax], ax, (long long)c->n);
    lx_range r[LX_MAX_DIMS];
    for (int k = 0; k <= ax; k++) r[k] = k == ax ? LX_RANGE(c->index, c->index + 1) : LX_RANGE_ALL;
    int64_t sq = ax;
    lx_array *s = lx_squeeze(lx_slice(a, ax + 1, r), 1, &sq);
    if (!s) return lx_last_status();
    return rebox(leaf, s, ax, c->pname, false, out);
}

static char *cat3(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", a, b, c);
    return p;
}

lx_status linen_unstack_layers(const lx_tree *variables, const char *prefix, linen_var_axes axes,
                               const char *partition_name, lx_tree **out) {
    if (!variables) return lx_fail(LX_ERR_INVALID_ARGUMENT, "unstack: variables is NULL");
    if (!prefix) return lx_fail(LX_ERR_INVALID_ARGUMENT, "unstack: prefix is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "unstack: out is NULL");
    *out = NULL;
    lx_tree *t = lx_tree_copy(variables);
    if (!t) return oom();
    size_t mark = lx_pool_open();
    lx_status st = LX_OK;
    for (size_t k = 0; st == LX_OK && k < lx_tree_len(variables); k++) {
        const char *col = lx_tree_key(variables, k);
        char *p = cat3(col, "/", prefix);
        if (!p) {
            st = oom();
            break;
        }
        const lx_value *sub = lx_tree_find(variables, p);
        if (sub && sub->kind == LX_V_TREE) {
            unstack_ctx c = {col, p, axis_of(axes, col), 0, -1, partition_name};
            for (int64_t i = 0; st == LX_OK && (i == 0 || i < c.n); i++) {
                c.index = i;
                lx_tree *layer = NULL;
                st = lx_tree_map(sub->u.tree, unstack_leaf, &c, &layer);
                char num[32];
                snprintf(num, sizeof num, "_%lld", (long long)i);
                char *q = st == LX_OK ? cat3(p, num, "") : NULL;
                if (st == LX_OK && !q) st = oom();
                if (st == LX_OK && lx_tree_find(t, q))
                    st = lx_fail(LX_ERR_EXISTS, "unstack: %s already exists", q);
                if (st == LX_OK) st = lx_tree_set_path(t, q, lx_tree_v(layer));
                free(q);
                lx_tree_release(layer);
                if (c.n < 0) break; /* no leaves */
            }
            if (st == LX_OK) st = lx_tree_delete_path(t, p);
        }
        free(p);
    }
    lx_pool_close(mark);
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    *out = t;
    return LX_OK;
}

typedef struct stack_ctx {
    const char *col, *where; /* the collection; col/prefix, for messages */
    int axis;
    int64_t n;
    const lx_tree *const *layers;
    const char *pname;
} stack_ctx;

static lx_status stack_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    const stack_ctx *c = user;
    lx_array *a0 = leaf_array(leaf);
    char b1[96], b2[96];
    if (!a0) return lx_fail(LX_ERR_TYPE, "stack: %s_0/%s is a %s, not an array", c->where, path, lx_kind_name(leaf->kind));
    lx_array **xs = malloc(sizeof *xs * (size_t)c->n); /* any number of layers */
    if (!xs) return oom();
    lx_status st = LX_OK;
    for (int64_t i = 0; st == LX_OK && i < c->n; i++) {
        const lx_value *v = lx_tree_find(c->layers[i], path);
        lx_array *a = v ? leaf_array(v) : NULL;
        if (!a) st = lx_fail(LX_ERR_NOT_FOUND, "stack: %s_%lld has no %s", c->where, (long long)i, path);
        else if (!lx_shape_eq(a, a0->ndim, a0->shape) || a->dtype != a0->dtype)
            st = lx_fail(LX_ERR_SHAPE, "stack: %s_<i>/%s has shape %s in layer 0 and %s in layer %lld", c->where, path,
                         lx_shape_str(a0->ndim, a0->shape, b1, sizeof b1), lx_shape_str(a->ndim, a->shape, b2, sizeof b2),
                         (long long)i);
        else xs[i] = a;
    }
    int ax = c->axis < 0 ? c->axis + a0->ndim + 1 : c->axis;
    if (st == LX_OK && (ax < 0 || ax > a0->ndim))
        st = lx_fail(LX_ERR_SHAPE, "stack: collection '%s' is stacked on axis %d, but %s_0/%s has shape %s", c->col,
                     c->axis, c->where, path, lx_shape_str(a0->ndim, a0->shape, b1, sizeof b1));
    if (st == LX_OK && c->n > INT_MAX) st = lx_fail(LX_ERR_INVALID_ARGUMENT, "stack: %s: %lld layers", c->where, (long long)c->n);
    lx_array *y = st == LX_OK ? lx_stack((int)c->n, xs, ax) : NULL;
    free(xs);
    LX_TRY(st);
    if (!y) return lx_last_status();
    return rebox(leaf, y, ax, c->pname, true, out);
}

lx_status linen_stack_layers(const lx_tree *variables, const char *prefix, linen_var_axes axes,
                             const char *partition_name, lx_tree **out) {
    if (!variables) return lx_fail(LX_ERR_INVALID_ARGUMENT, "stack: variables is NULL");
    if (!prefix) return lx_fail(LX_ERR_INVALID_ARGUMENT, "stack: prefix is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "stack: out is NULL");
    *out = NULL;
    lx_tree *t = lx_tree_copy(variables);
    if (!t) return oom();
    size_t mark = lx_pool_open();
    lx_status st = LX_OK;
    for (size_t k = 0; st == LX_OK && k < lx_tree_len(variables); k++) {
        const char *col = lx_tree_key(variables, k);
        char *p = cat3(col, "/", prefix);
        if (!p) {
            st = oom();
            break;
        }
        /* PREFIX_0, PREFIX_1, ... up to the first missing index, however many there are */
        const lx_tree **layers = NULL;
        int64_t n = 0, cap = 0;
        for (;;) {
            char num[32];
            snprintf(num, sizeof num, "_%lld", (long long)n);
            char *q = cat3(p, num, "");
            if (!q) {
                st = oom();
                break;
            }
            const lx_value *v = lx_tree_find(variables, q);
            free(q);
            if (!v || v->kind != LX_V_TREE) break;
            if (n == cap) {
                int64_t nc = cap ? 2 * cap : 16;
                const lx_tree **g = realloc(layers, sizeof *g * (size_t)nc);
                if (!g) {
                    st = oom();
                    break;
                }
                layers = g, cap = nc;
            }
            layers[n++] = v->u.tree;
        }
        if (st == LX_OK && n > 0) {
            if (lx_tree_find(variables, p)) st = lx_fail(LX_ERR_EXISTS, "stack: %s already exists", p);
            stack_ctx c = {col, p, axis_of(axes, col), n, layers, partition_name};
            lx_tree *stacked = NULL;
            if (st == LX_OK) st = lx_tree_map(layers[0], stack_leaf, &c, &stacked);
            for (int64_t i = 0; st == LX_OK && i < n; i++) {
                char num[32];
                snprintf(num, sizeof num, "_%lld", (long long)i);
                char *q = cat3(p, num, "");
                st = q ? lx_tree_delete_path(t, q) : oom();
                free(q);
            }
            if (st == LX_OK) st = lx_tree_set_path(t, p, lx_tree_v(stacked));
            lx_tree_release(stacked);
        }
        free(layers);
        free(p);
    }
    lx_pool_close(mark);
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    *out = t;
    return LX_OK;
}
