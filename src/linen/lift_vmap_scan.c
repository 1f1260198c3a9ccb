/* Linen nn.vmap / nn.scan as a loop over slices (lift.h explains the semantics).
 *
 * The lifted module's method runs the target once per slice in a frame of its own: the frame's
 * variables are the slice of every stacked collection (at the lifted scope's path, so the
 * body's scope has the same path and its keys hash the same), the shared collections as they
 * stand, and the rng keys split per stream. What the copies made or changed is stacked and
 * written to the enclosing frame only once every copy has succeeded: a failure leaves the
 * variables as they were.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linen_internal.h"
#include "linnx/box.h"
#include "linnx/lift.h"
#include "linnx/ops.h"
#include "../core/status_internal.h"

typedef enum { LIFT_VMAP, LIFT_SCAN } lift_kind;

typedef struct lift_holder {
    linen_type type; /* first: modules point at it */
    int refcount;
    lift_kind kind;
    char *name;
    linen_module *target;
    /* a deep copy of the options */
    linen_lift_opts o;
    linen_var_axis *va;
    const char **split, **bcast, **carry;
    int *in_axes;
} lift_holder;

typedef struct lift_config {
    lift_holder *h;
} lift_config;

static lx_status oom(void) { return lx_fail(LX_ERR_NO_MEMORY, "linen: out of memory"); }

static void holder_release(lift_holder *h) {
    if (!h || --h->refcount > 0) return;
    for (int i = 0; i < h->o.variable_axes.n; i++) free((char *)h->va[i].collection);
    for (int i = 0; i < h->o.split_rngs.n; i++) free((char *)h->split[i]);
    for (int i = 0; i < h->o.variable_broadcast.n; i++) free((char *)h->bcast[i]);
    for (int i = 0; i < h->o.variable_carry.n; i++) free((char *)h->carry[i]);
    free(h->va);
    free(h->split);
    free(h->bcast);
    free(h->carry);
    free(h->in_axes);
    free((char *)h->o.partition_name);
    free(h->name);
    linen_module_release(h->target);
    free(h);
}

static void lift_config_free(void *cfg) {
    lift_config *c = cfg;
    holder_release(c->h);
    c->h = NULL;
}
static lx_status lift_config_copy(void *dst, const void *src) {
    const lift_config *s = src;
    ((lift_config *)dst)->h = s->h;
    s->h->refcount++;
    return LX_OK;
}

/* ---- small helpers ---- */
static bool in_names(linen_names n, const char *s) {
    for (int i = 0; i < n.n; i++)
        if (strcmp(n.v[i], s) == 0) return true;
    return false;
}

/* The stacked axis of a collection, or false when it is shared. */
static bool stacked_axis(const lift_holder *h, const char *col, int *axis) {
    for (int i = 0; i < h->o.variable_axes.n; i++)
        if (strcmp(h->va[i].collection, col) == 0) {
            if (h->va[i].axis == LINEN_AXIS_BROADCAST) return false;
            *axis = h->va[i].axis;
            return true;
        }
    return false;
}

static const char *shp(const lx_array *a, char *buf, size_t cap) {
    return lx_shape_str(a->ndim, a->shape, buf, cap);
}

/* The sub-map of `col` at the scope's path, or NULL. */
static const lx_value *at_path(const lx_tree *vars, const char *col, const linen_scope *s) {
    const lx_value *v = lx_tree_get(vars, col);
    for (int i = 0; v && i < s->depth; i++) v = v->kind == LX_V_TREE ? lx_tree_get(v->u.tree, s->names[i]) : NULL;
    return v && v->kind == LX_V_TREE ? v : NULL;
}

static char *join_path(const char *col, const linen_scope *s) {
    size_t n = strlen(col) + 1;
    for (int i = 0; i < s->depth; i++) n += strlen(s->names[i]) + 1;
    char *p = malloc(n);
    if (!p) return NULL;
    size_t off = (size_t)snprintf(p, n, "%s", col);
    for (int i = 0; i < s->depth; i++) off += (size_t)snprintf(p + off, n - off, "/%s", s->names[i]);
    return p;
}

/* ---- slicing one leaf ---- */
typedef struct slice_ctx {
    const char *col, *scope_path, *pname;
    int axis;
    int64_t index, length;
} slice_ctx;

static lx_array *leaf_value(const lx_value *v) {
    if (v->kind == LX_V_ARRAY) return v->u.array;
    if (v->kind == LX_V_BOX) return lx_box_unbox(v->u.box);
    return NULL;
}

static lx_status norm_axis(int axis, int ndim, int *out) {
    *out = 0;
    int a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim) return LX_ERR_SHAPE;
    *out = a;
    return LX_OK;
}

static lx_status check_leaf(const slice_ctx *c, const char *path, const lx_value *leaf, int *axis) {
    lx_array *a = leaf_value(leaf);
    if (!a)
        return lx_fail(LX_ERR_TYPE, "vmap/scan in \"%s\": variable %s/%s is a %s, not an array", c->scope_path,
                       c->col, path, lx_kind_name(leaf->kind));
    char b[96];
    if (norm_axis(c->axis, a->ndim, axis) != LX_OK)
        return lx_fail(LX_ERR_SHAPE,
                       "vmap/scan in \"%s\": variable_axes puts collection '%s' on axis %d, but variable "
                       "%s/%s has shape %s (%d dimensions)",
                       c->scope_path, c->col, c->axis, c->col, path, shp(a, b, sizeof b), a->ndim);
    if (a->shape[*axis] != c->length)
        return lx_fail(LX_ERR_SHAPE,
                       "vmap/scan in \"%s\": variable %s/%s has shape %s: size %lld on axis %d, but the "
                       "mapped length is %lld",
                       c->scope_path, c->col, path, shp(a, b, sizeof b), (long long)a->shape[*axis], *axis,
                       (long long)c->length);
    return LX_OK;
}

static lx_array *take_index(lx_array *a, int axis, int64_t i) {
    lx_range r[LX_MAX_DIMS];
    for (int k = 0; k <= axis; k++) r[k] = k == axis ? LX_RANGE(i, i + 1) : LX_RANGE_ALL;
    int64_t ax = axis;
    return lx_squeeze(lx_slice(a, axis + 1, r), 1, &ax);
}

static lx_status slice_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    const slice_ctx *c = user;
    int axis = 0;
    LX_TRY(check_leaf(c, path, leaf, &axis));
    lx_array *s = take_index(leaf_value(leaf), axis, c->index);
    if (!s) return lx_last_status();
    if (leaf->kind == LX_V_ARRAY) {
        *out = lx_array_v(lx_retain(s));
        return LX_OK;
    }
    lx_box *b = NULL, *nb = NULL;
    LX_TRY(lx_box_replace_boxed(leaf->u.box, s, &b));
    if (c->pname && lx_box_names(b)) {
        lx_status st = lx_box_remove_axis(b, axis, c->pname, &nb);
        lx_box_release(b);
        if (st != LX_OK)
            return lx_fail_context(st, "vmap/scan in \"%s\": variable %s/%s: ", c->scope_path, c->col, path);
        b = nb;
    }
    *out = lx_box_v(b);
    return LX_OK;
}

/* ---- one copy's frame ---- */
static lx_status frame_for_slice(const linen_frame *outer, linen_frame **out) {
    linen_frame *f = NULL;
    LX_TRY(linen_frame_new(outer->nrngs, &f));
    f->initializing = outer->initializing;
    f->mutable = outer->mutable;
    for (int i = 0; i < outer->nrngs; i++) {
        f->rng_names[i] = outer->rng_names[i];
        f->rng_keys[i] = outer->rng_keys[i];
    }
    *out = f;
    return LX_OK;
}

/* ---- the lifted call ---- */
typedef struct lift_run {
    const lift_holder *h;
    linen_scope *s;
    const char *method;
    int64_t L;
    lx_key *split_keys; /* nrngs * L; row r used when split[r] */
    bool *split;
    /* per collection (those of the frame, then those the copies create): */
    char **cols;
    lx_tree **shared;   /* the shared state the next copy starts from (unstacked collections) */
    lx_tree ***slices;  /* per copy: the copy's final sub-map (stacked collections) */
    size_t ncols, capcols;
} lift_run;

static lx_status map_size(const lx_value *v, int axis, int *ax, int64_t *size) {
    if (v->kind != LX_V_ARRAY || !v->u.array) return LX_ERR_TYPE;
    LX_TRY(norm_axis(axis, v->u.array->ndim, ax));
    *size = v->u.array->shape[*ax];
    return LX_OK;
}

/* The mapped length: from the inputs, checked against length= when given. */
static lx_status find_length(const lift_holder *h, const linen_scope *s, const lx_call *call, int64_t *L) {
    int first = h->kind == LIFT_SCAN ? 1 : 0;
    int64_t len = h->o.length;
    int from = -1;
    char b1[96], b2[96];
    for (int i = first; i < call->nargs; i++) {
        int k = i - first;
        int axis = k < h->o.in_axes.n ? h->in_axes[k] : 0;
        if (axis == LINEN_AXIS_BROADCAST) continue;
        const lx_value *v = &call->args[i];
        if (v->kind != LX_V_ARRAY) continue;
        if (!v->u.array) return lx_null_input("vmap/scan in \"%s\": argument %d is NULL", s->path, i);
        int ax;
        int64_t n;
        if (map_size(v, axis, &ax, &n) != LX_OK)
            return lx_fail(LX_ERR_SHAPE, "vmap/scan in \"%s\": in_axes maps argument %d on axis %d, but it has shape %s",
                           s->path, i, axis, shp(v->u.array, b1, sizeof b1));
        if (from < 0 && !h->o.length) {
            len = n;
            from = i;
        } else if (n != len) {
            if (from < 0)
                return lx_fail(LX_ERR_SHAPE,
                               "vmap/scan in \"%s\": argument %d has shape %s, size %lld on axis %d, but length is %lld",
                               s->path, i, shp(v->u.array, b1, sizeof b1), (long long)n, ax, (long long)len);
            return lx_fail(LX_ERR_SHAPE,
                           "vmap/scan in \"%s\": mapped inputs have different sizes: argument %d has shape %s "
                           "(size %lld on the mapped axis) and argument %d has shape %s (size %lld)",
                           s->path, from, shp(call->args[from].u.array, b1, sizeof b1), (long long)len, i,
                           shp(v->u.array, b2, sizeof b2), (long long)n);
        }
    }
    if (len <= 0 && from >= 0) {
        int axis = from - first < h->o.in_axes.n ? h->in_axes[from - first] : 0;
        return lx_fail(LX_ERR_SHAPE,
                       "vmap/scan in \"%s\": argument %d has shape %s, size 0 on the mapped axis %d; the body "
                       "runs once per slice, so there must be at least one",
                       s->path, from, shp(call->args[from].u.array, b1, sizeof b1), axis);
    }
    if (len <= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "vmap/scan in \"%s\": no mapped input and no length/axis_size given", s->path);
    *L = len;
    return LX_OK;
}

static void cols_free(lift_run *r) {
    for (size_t c = 0; c < r->ncols; c++) {
        lx_tree_release(r->shared[c]);
        if (r->slices[c]) {
            for (int64_t i = 0; i < r->L; i++) lx_tree_release(r->slices[c][i]);
            free(r->slices[c]);
        }
        free(r->cols[c]);
    }
    free(r->cols);
    free(r->shared);
    free(r->slices);
    r->cols = NULL;
    r->shared = NULL;
    r->slices = NULL;
    r->ncols = r->capcols = 0;
}

static void run_free(lift_run *r) {
    cols_free(r);
    free(r->split_keys);
    free(r->split);
}

/* The index of collection `col` in r's list, added when new. */
static lx_status col_index(lift_run *r, const char *col, size_t *out) {
    for (size_t c = 0; c < r->ncols; c++)
        if (strcmp(r->cols[c], col) == 0) {
            *out = c;
            return LX_OK;
        }
    if (r->ncols == r->capcols) {
        size_t nc = r->capcols ? r->capcols * 2 : 4;
        char **a = realloc(r->cols, nc * sizeof *a);
        if (a) r->cols = a;
        lx_tree **b = a ? realloc(r->shared, nc * sizeof *b) : NULL;
        if (b) r->shared = b;
        lx_tree ***d = b ? realloc(r->slices, nc * sizeof *d) : NULL;
        if (d) r->slices = d;
        if (!d) return oom();
        r->capcols = nc;
    }
    size_t c = r->ncols;
    r->cols[c] = lx_strdup(col);
    r->shared[c] = NULL;
    r->slices[c] = NULL;
    if (!r->cols[c]) return oom();
    int axis;
    if (stacked_axis(r->h, col, &axis) && !(r->slices[c] = calloc((size_t)r->L, sizeof **r->slices))) {
        free(r->cols[c]);
        return oom();
    }
    r->ncols++;
    *out = c;
    return LX_OK;
}

/* The list as the frame's variables give it: the shared collections' current state. */
static lx_status cols_start(lift_run *r) {
    cols_free(r);
    const lx_tree *vars = r->s->frame->vars;
    for (size_t k = 0; k < lx_tree_len(vars); k++) {
        const char *col = lx_tree_key(vars, k);
        size_t c;
        LX_TRY(col_index(r, col, &c));
        const lx_value *sub = at_path(vars, col, r->s);
        if (sub && !r->slices[c]) r->shared[c] = lx_tree_retain(sub->u.tree);
    }
    return LX_OK;
}

/* The call for copy i: mapped positionals sliced, the carry (scan) replaced. */
static lx_status slice_call(const lift_run *r, const lx_call *call, int64_t i, const lx_value *carry,
                            lx_value *args, lx_call *out) {
    int first = r->h->kind == LIFT_SCAN ? 1 : 0;
    for (int k = 0; k < call->nargs; k++) {
        args[k] = call->args[k];
        if (k < first) {
            if (carry) args[k] = *carry;
            continue;
        }
        int axis = k - first < r->h->o.in_axes.n ? r->h->in_axes[k - first] : 0;
        if (axis == LINEN_AXIS_BROADCAST || args[k].kind != LX_V_ARRAY) continue;
        int ax = 0;
        norm_axis(axis, args[k].u.array->ndim, &ax);
        lx_array *x = take_index(args[k].u.array, ax, i);
        if (!x) return lx_last_status();
        args[k] = lx_array_v(x);
    }
    *out = (lx_call){call->nargs, args, call->nkwargs, call->kwargs};
    return LX_OK;
}

/* Run copy i; its output to *out, the mutable collections' state to r. */
static lx_status run_copy(lift_run *r, const lx_call *call, int64_t i, const uint32_t *counters,
                          const lx_value *carry, uint32_t *counters_after, lx_value *out) {
    linen_scope *s = r->s;
    linen_frame *outer = s->frame;
    linen_frame *f = NULL;
    LX_TRY(frame_for_slice(outer, &f));
    lx_status st = LX_OK;
    for (int k = 0; k < outer->nrngs; k++)
        if (r->split[k]) f->rng_keys[k] = r->split_keys[(size_t)k * (size_t)r->L + (size_t)i];
    f->vars = lx_tree_new();
    if (!f->vars) st = oom();
    /* the copy's variables at the scope's path */
    for (size_t c = 0; st == LX_OK && c < r->ncols; c++) {
        const char *col = r->cols[c];
        const lx_value *sub = lx_tree_get(outer->vars, col) ? at_path(outer->vars, col, s) : NULL;
        lx_tree *t = NULL;
        int axis;
        if (stacked_axis(r->h, col, &axis)) {
            if (!sub) continue;
            slice_ctx sc = {col, s->path, r->h->o.partition_name, axis, i, r->L};
            st = lx_tree_map(sub->u.tree, slice_leaf, &sc, &t);
        } else if (r->shared[c]) {
            t = linen_mutable_allows(&outer->mutable, col) ? lx_tree_copy(r->shared[c]) : lx_tree_retain(r->shared[c]);
            if (!t) st = oom();
        } else {
            continue;
        }
        char *p = st == LX_OK ? join_path(col, s) : NULL;
        if (st == LX_OK && !p) st = oom();
        if (st == LX_OK) st = lx_tree_set_path(f->vars, p, lx_tree_v(t));
        free(p);
        lx_tree_release(t);
    }
    if (st == LX_OK) {
        linen_module *inner = r->h->target;
        st = linen_scope_new(f, s->parent, s->name, inner, &f->root);
        if (st == LX_OK) f->root->lifted_body = true;
    }
    if (st == LX_OK) {
        memcpy(f->root->rng_counters, counters, sizeof(uint32_t) * (size_t)outer->nrngs);
        lx_value args_inline[8];
        lx_value *args = call->nargs <= 8 ? args_inline : malloc(sizeof *args * (size_t)call->nargs);
        lx_call ci;
        if (!args) st = oom();
        if (st == LX_OK) st = slice_call(r, call, i, carry, args, &ci);
        if (st == LX_OK) st = linen_scope_run(f->root, r->method, NULL, &ci, out);
        if (args != args_inline) free(args);
        if (st == LX_OK) memcpy(counters_after, f->root->rng_counters, sizeof(uint32_t) * (size_t)outer->nrngs);
    }
    /* keep what the copy left in the mutable collections */
    for (size_t c = 0; st == LX_OK && c < lx_tree_len(f->vars); c++) {
        const char *col = lx_tree_key(f->vars, c);
        if (!linen_mutable_allows(&outer->mutable, col)) continue;
        const lx_value *sub = at_path(f->vars, col, s);
        if (!sub) continue;
        size_t oc;
        st = col_index(r, col, &oc);
        if (st != LX_OK) break;
        int axis;
        if (stacked_axis(r->h, col, &axis)) {
            lx_tree_release(r->slices[oc][i]);
            r->slices[oc][i] = lx_tree_retain(sub->u.tree);
        } else {
            lx_tree_release(r->shared[oc]);
            r->shared[oc] = lx_tree_retain(sub->u.tree);
        }
    }
    linen_frame_free(f);
    if (st != LX_OK) lx_value_free(out);
    return st;
}

/* ---- stacking ---- */
typedef struct stack_ctx {
    const char *col, *scope_path, *pname;
    int axis;
    int64_t L;
    lx_tree *const *slices;
} stack_ctx;

static lx_status stack_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    const stack_ctx *c = user;
    lx_array *xs_inline[16];
    lx_array **xs = c->L <= 16 ? xs_inline : malloc(sizeof *xs * (size_t)c->L);
    if (!xs) return oom();
    lx_status st = LX_OK;
    lx_array *first = leaf_value(leaf);
    char b1[96], b2[96];
    if (!first)
        st = lx_fail(LX_ERR_TYPE, "vmap/scan in \"%s\": variable %s/%s is a %s, not an array", c->scope_path,
                     c->col, path, lx_kind_name(leaf->kind));
    for (int64_t i = 0; st == LX_OK && i < c->L; i++) {
        const lx_value *v = lx_tree_find(c->slices[i], path);
        lx_array *a = v ? leaf_value(v) : NULL;
        if (!a)
            st = lx_fail(LX_ERR_INVALID_ARGUMENT, "vmap/scan in \"%s\": copy %lld has no variable %s/%s",
                         c->scope_path, (long long)i, c->col, path);
        else if (!lx_shape_eq(a, first->ndim, first->shape) || a->dtype != first->dtype)
            st = lx_fail(LX_ERR_SHAPE, "vmap/scan in \"%s\": variable %s/%s has shape %s in copy 0 and %s in copy %lld",
                         c->scope_path, c->col, path, shp(first, b1, sizeof b1), shp(a, b2, sizeof b2), (long long)i);
        else
            xs[i] = a;
    }
    int axis = 0;
    if (st == LX_OK && norm_axis(c->axis, first->ndim + 1, &axis) != LX_OK)
        st = lx_fail(LX_ERR_SHAPE,
                     "vmap/scan in \"%s\": variable_axes puts collection '%s' on axis %d, but variable %s/%s "
                     "has shape %s in each copy (%d dimensions once stacked)",
                     c->scope_path, c->col, c->axis, c->col, path, shp(first, b1, sizeof b1), first->ndim + 1);
    lx_array *y = st == LX_OK ? lx_stack((int)c->L, xs, axis) : NULL;
    if (xs != xs_inline) free(xs);
    if (st != LX_OK) return st;
    if (!y) return lx_last_status();
    if (leaf->kind == LX_V_ARRAY) {
        *out = lx_array_v(lx_retain(y));
        return LX_OK;
    }
    lx_box *b = NULL, *nb = NULL;
    LX_TRY(lx_box_replace_boxed(leaf->u.box, y, &b));
    if (c->pname && lx_box_names(b)) {
        st = lx_box_add_axis(b, axis, c->pname, &nb);
        lx_box_release(b);
        if (st != LX_OK)
            return lx_fail_context(st, "vmap/scan in \"%s\": variable %s/%s: ", c->scope_path, c->col, path);
        b = nb;
    }
    *out = lx_box_v(b);
    return LX_OK;
}

/* Stack an output value (array, tuple tree, None) along out_axes. */
static lx_status stack_output(const lift_run *r, lx_value *const *ys, lx_value *out);

static lx_status stack_output_tree(const lift_run *r, lx_value *const *ys, lx_value *out) {
    const lx_tree *t0 = ys[0]->u.tree;
    lx_tree *t = lx_tree_new();
    if (!t) return oom();
    lx_status st = LX_OK;
    lx_value **sub = malloc(sizeof *sub * (size_t)r->L);
    if (!sub) st = oom();
    for (size_t k = 0; st == LX_OK && k < lx_tree_len(t0); k++) {
        const char *key = lx_tree_key(t0, k);
        for (int64_t i = 0; st == LX_OK && i < r->L; i++) {
            const lx_value *v = ys[i]->kind == LX_V_TREE ? lx_tree_get(ys[i]->u.tree, key) : NULL;
            if (!v) st = lx_fail(LX_ERR_TYPE, "vmap/scan in \"%s\": copy %lld returned a different structure", r->s->path, (long long)i);
            sub[i] = (lx_value *)v;
        }
        lx_value o = lx_none();
        if (st == LX_OK) st = stack_output(r, sub, &o);
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

static lx_status stack_output(const lift_run *r, lx_value *const *ys, lx_value *out) {
    const lx_value *y0 = ys[0];
    if (y0->kind == LX_V_NONE) {
        *out = lx_none();
        return LX_OK;
    }
    if (y0->kind == LX_V_TREE) return stack_output_tree(r, ys, out);
    if (y0->kind != LX_V_ARRAY) return lx_value_dup(y0, out); /* static outputs: copy 0's */
    lx_array *xs_inline[16];
    lx_array **xs = r->L <= 16 ? xs_inline : malloc(sizeof *xs * (size_t)r->L);
    if (!xs) return oom();
    char b1[96], b2[96];
    lx_status st = LX_OK;
    for (int64_t i = 0; st == LX_OK && i < r->L; i++) {
        lx_array *a = ys[i]->kind == LX_V_ARRAY ? ys[i]->u.array : NULL;
        if (!a || !lx_shape_eq(a, y0->u.array->ndim, y0->u.array->shape))
            st = lx_fail(LX_ERR_SHAPE, "vmap/scan in \"%s\": copy %lld returned %s, copy 0 returned %s", r->s->path,
                         (long long)i, a ? shp(a, b1, sizeof b1) : lx_kind_name(ys[i]->kind), shp(y0->u.array, b2, sizeof b2));
        else
            xs[i] = a;
    }
    int axis = 0;
    if (st == LX_OK && norm_axis(r->h->o.out_axes, y0->u.array->ndim + 1, &axis) != LX_OK)
        st = lx_fail(LX_ERR_SHAPE, "vmap/scan in \"%s\": out_axes %d is out of range for outputs of shape %s",
                     r->s->path, r->h->o.out_axes, shp(y0->u.array, b1, sizeof b1));
    lx_array *y = st == LX_OK ? lx_stack((int)r->L, xs, axis) : NULL;
    if (xs != xs_inline) free(xs);
    if (st != LX_OK) return st;
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}

static bool same_shape(const lx_array *a, const lx_array *b) {
    return a->dtype == b->dtype && lx_shape_eq(a, b->ndim, b->shape);
}

static lx_status split_keys(lift_run *r) {
    linen_frame *F = r->s->frame;
    const lift_holder *h = r->h;
    for (int k = 0; k < h->o.split_rngs.n; k++) {
        int idx = -1;
        for (int j = 0; j < F->nrngs; j++)
            if (strcmp(F->rng_names[j], h->split[k]) == 0) idx = j;
        if (idx < 0) {
            if (!F->initializing) continue; /* apply without that stream: nothing to split */
            char names[160] = "";
            size_t off = 0;
            for (int j = 0; j < F->nrngs && off < sizeof names; j++)
                off += (size_t)snprintf(names + off, sizeof names - off, "%s'%s'", j ? ", " : "", F->rng_names[j]);
            return lx_fail(LX_ERR_RNG,
                           "vmap/scan in \"%s\": split_rngs names the stream '%s', which init was not given "
                           "(streams: %s)",
                           r->s->path, h->split[k], F->nrngs ? names : "none");
        }
        r->split[idx] = true;
        LX_TRY(lx_key_split(F->rng_keys[idx], r->L, lx_random_legacy(), r->split_keys + (size_t)idx * (size_t)r->L));
    }
    return LX_OK;
}

/* scan: the copy's (carry, y), checked against the first carry. *bare: the body returned the
 * carry alone. */
static lx_status scan_step(const lift_run *r, const lx_array *carry0, int64_t i, lx_value *o, lx_array **carry,
                           lx_value *y, bool *bare) {
    lx_value nc = *o;
    *y = lx_none();
    *bare = o->kind != LX_V_TREE;
    if (o->kind == LX_V_TREE) {
        const lx_value *a = lx_tree_get(o->u.tree, "0"), *b = lx_tree_get(o->u.tree, "1");
        if (!a || !b || lx_tree_len(o->u.tree) != 2)
            return lx_fail(LX_ERR_TYPE, "scan in \"%s\": the body must return (carry, y)", r->s->path);
        nc = *a;
        LX_TRY(lx_value_dup(b, y));
    }
    char b1[96], b2[96];
    if (nc.kind != LX_V_ARRAY || !nc.u.array)
        return lx_fail(LX_ERR_TYPE, "scan in \"%s\": the body returned a carry of kind %s, not an array", r->s->path,
                       lx_kind_name(nc.kind));
    if (!same_shape(nc.u.array, carry0))
        return lx_fail(LX_ERR_SHAPE,
                       "scan in \"%s\": the carry changed from %s %s to %s %s in iteration %lld; scan needs a "
                       "carry of fixed shape and dtype",
                       r->s->path, lx_dtype_name(carry0->dtype), shp(carry0, b1, sizeof b1),
                       lx_dtype_name(nc.u.array->dtype), shp(nc.u.array, b2, sizeof b2), (long long)i);
    *carry = lx_autorelease(lx_retain(nc.u.array));
    return LX_OK;
}

/* Stack what the copies left in the mutable collections, then write it: nothing is written
 * unless every collection stacked. */
static lx_status commit_vars(lift_run *r) {
    linen_frame *F = r->s->frame;
    lx_tree **newcols = calloc(r->ncols + 1, sizeof *newcols);
    if (!newcols) return oom();
    lx_status st = LX_OK;
    for (size_t c = 0; st == LX_OK && c < r->ncols; c++) {
        const char *col = r->cols[c];
        if (!linen_mutable_allows(&F->mutable, col)) continue;
        int axis;
        if (stacked_axis(r->h, col, &axis)) {
            if (!r->slices[c][0]) continue;
            stack_ctx sc = {col, r->s->path, r->h->o.partition_name, axis, r->L, r->slices[c]};
            st = lx_tree_map(r->slices[c][0], stack_leaf, &sc, &newcols[c]);
        } else if (r->shared[c]) {
            newcols[c] = lx_tree_retain(r->shared[c]);
        }
    }
    for (size_t c = 0; st == LX_OK && c < r->ncols; c++) {
        if (!newcols[c]) continue;
        char *p = join_path(r->cols[c], r->s);
        st = p ? lx_tree_set_path(F->vars, p, lx_tree_v(newcols[c])) : oom();
        free(p);
    }
    for (size_t c = 0; c < r->ncols; c++) lx_tree_release(newcols[c]);
    free(newcols);
    return st;
}

static lx_status lift_body(lift_run *r, const lx_call *call, lx_value *ys, lx_value *result) {
    linen_frame *F = r->s->frame;
    const lift_holder *h = r->h;
    bool is_scan = h->kind == LIFT_SCAN;
    int n = F->nrngs;
    uint32_t c0[64], after[64];
    if (n > 64) return lx_fail(LX_ERR_UNSUPPORTED, "vmap/scan: more than 64 rng streams");
    memcpy(c0, r->s->rng_counters, sizeof *c0 * (size_t)n);
    memcpy(after, c0, sizeof *c0 * (size_t)n);
    lx_array *carry0 = is_scan ? call->args[0].u.array : NULL, *carry = carry0;
    bool redo = false, bare = false;
    for (int64_t i = 0; i < r->L; i++) {
        lx_value o = lx_none();
        lx_value cv = carry ? lx_array_v(carry) : lx_none();
        LX_TRY(run_copy(r, call, i, c0, is_scan ? &cv : NULL, after, &o));
        if (i == 0 && is_scan && !h->o.no_constancy_check && !redo && memcmp(after, c0, sizeof *c0 * (size_t)n) != 0) {
            /* Flax traces a scan body twice (check_constancy_invariants): the real draws come
             * after one trace's counts. Run copy 0 again from there. */
            lx_value_free(&o);
            memcpy(c0, after, sizeof *c0 * (size_t)n);
            redo = true;
            i = -1;
            LX_TRY(cols_start(r));
            continue;
        }
        if (is_scan) {
            lx_status st = scan_step(r, carry0, i, &o, &carry, &ys[i], &bare);
            lx_value_free(&o);
            LX_TRY(st);
        } else {
            ys[i] = o;
        }
    }
    lx_value **yp = malloc(sizeof *yp * (size_t)r->L);
    if (!yp) return oom();
    for (int64_t i = 0; i < r->L; i++) yp[i] = &ys[i];
    lx_value stacked = lx_none();
    lx_status st = stack_output(r, yp, &stacked);
    free(yp);
    LX_TRY(st);
    if (!is_scan) {
        *result = stacked;
    } else if (bare) {
        lx_value_free(&stacked);
        *result = lx_array_v(lx_retain(carry));
    } else {
        lx_tree *t = lx_tree_new();
        st = t ? lx_tree_set(t, "0", lx_array_v(carry)) : oom();
        if (st == LX_OK) st = lx_tree_set(t, "1", stacked);
        lx_value_free(&stacked);
        if (st != LX_OK) {
            lx_tree_release(t);
            return st;
        }
        *result = lx_tree_v(t);
    }
    st = commit_vars(r);
    if (st != LX_OK) {
        lx_value_free(result);
        return st;
    }
    memcpy(r->s->rng_counters, after, sizeof *after * (size_t)n);
    return LX_OK;
}

static lx_status lift_dispatch(linen_scope *s, const char *method, const lx_call *call, lx_value *out) {
    const lift_config *cfg = s->module->config;
    const lift_holder *h = cfg->h;
    const linen_type *tt = h->target->type;
    bool known = tt->dispatch != NULL;
    for (int i = 0; !known && i < tt->nmethods; i++) known = strcmp(tt->methods[i].name, method) == 0;
    if (!known) return LX_ERR_NOT_FOUND; /* no message: "no such method" */
    if (h->kind == LIFT_SCAN) {
        const lx_value *a0 = call->nargs > 0 ? &call->args[0] : NULL;
        if (!a0 || a0->kind != LX_V_ARRAY || !a0->u.array)
            return lx_fail(LX_ERR_TYPE, "scan in \"%s\": positional 0 must be the carry (an array), got %s", s->path,
                           a0 ? lx_kind_name(a0->kind) : "nothing");
    }
    lift_run r = {0};
    r.h = h;
    r.s = s;
    r.method = method;
    LX_TRY(find_length(h, s, call, &r.L));
    linen_frame *F = s->frame;
    r.split = calloc((size_t)F->nrngs + 1, sizeof *r.split);
    r.split_keys = calloc((size_t)F->nrngs * (size_t)r.L + 1, sizeof *r.split_keys);
    lx_value *ys = calloc((size_t)r.L, sizeof *ys);
    lx_status st = r.split && r.split_keys && ys ? LX_OK : oom();
    if (st == LX_OK) st = split_keys(&r);
    if (st == LX_OK) st = cols_start(&r);
    size_t mark = lx_pool_open();
    lx_value result = lx_none();
    if (st == LX_OK) st = lift_body(&r, call, ys, &result);
    for (int64_t i = 0; ys && i < r.L; i++) lx_value_free(&ys[i]);
    free(ys);
    run_free(&r);
    lx_pool_close(mark);
    if (st != LX_OK) return st;
    *out = result;
    return LX_OK;
}

/* ---- construction ---- */
static char *dup_or_null(const char *s, bool *ok) {
    if (!s) return NULL;
    char *d = lx_strdup(s);
    if (!d) *ok = false;
    return d;
}

static const char **dup_names(linen_names n, bool *ok) {
    if (n.n <= 0) return NULL;
    const char **v = calloc((size_t)n.n, sizeof *v);
    if (!v) {
        *ok = false;
        return NULL;
    }
    for (int i = 0; i < n.n; i++) v[i] = dup_or_null(n.v[i], ok);
    return v;
}

static lx_status check_names(const char *what, linen_names n) {
    if (n.n < 0 || (n.n > 0 && !n.v)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "vmap/scan: invalid %s list", what);
    for (int i = 0; i < n.n; i++)
        if (!n.v[i]) return lx_fail(LX_ERR_INVALID_ARGUMENT, "vmap/scan: %s entry %d is NULL", what, i);
    return LX_OK;
}

static lx_status lift_new(lift_kind kind, const linen_module *target, const linen_lift_opts *opts,
                          const char *name, linen_module **out) {
    const char *fn = kind == LIFT_SCAN ? (name ? "linen_scan_named" : "linen_scan")
                                       : (name ? "linen_vmap_named" : "linen_vmap");
    if (!out) return lx_null_out(fn);
    *out = NULL;
    if (!target) return lx_null_input("%s: target is NULL", fn);
    static const linen_lift_opts none = {0};
    if (!opts) opts = &none;
    if (target->type->flags & LINEN_TYPE_FUNCTION)
        return lx_fail(LX_ERR_UNSUPPORTED, "vmap/scan: %s is a function, not a Module", target->type->name);
    LX_TRY(check_names("split_rngs", opts->split_rngs));
    LX_TRY(check_names("variable_broadcast", opts->variable_broadcast));
    LX_TRY(check_names("variable_carry", opts->variable_carry));
    if (opts->variable_axes.n < 0 || (opts->variable_axes.n > 0 && !opts->variable_axes.v))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "vmap/scan: invalid variable_axes");
    for (int i = 0; i < opts->variable_axes.n; i++) {
        const char *c = opts->variable_axes.v[i].collection;
        if (!c) return lx_fail(LX_ERR_INVALID_ARGUMENT, "vmap/scan: variable_axes entry %d has no collection", i);
        if (in_names(opts->variable_broadcast, c) || in_names(opts->variable_carry, c))
            return lx_fail(LX_ERR_INVALID_ARGUMENT,
                           "vmap/scan: collection '%s' is both in variable_axes and broadcast/carried", c);
    }
    if (opts->in_axes.n < 0 || (opts->in_axes.n > 0 && !opts->in_axes.v))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "vmap/scan: invalid in_axes");
    if (opts->length < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "vmap/scan: length %lld < 0", (long long)opts->length);
    lift_holder *h = calloc(1, sizeof *h);
    if (!h) return oom();
    h->refcount = 1;
    h->kind = kind;
    h->o = *opts;
    bool ok = true;
    const char *prefix = kind == LIFT_SCAN ? "Scan" : "Vmap";
    const char *tn = target->type->name ? target->type->name : "Module";
    h->name = malloc(strlen(prefix) + strlen(tn) + 1);
    if (h->name) sprintf(h->name, "%s%s", prefix, tn);
    else ok = false;
    if (opts->variable_axes.n > 0) {
        h->va = calloc((size_t)opts->variable_axes.n, sizeof *h->va);
        if (!h->va) ok = false;
        for (int i = 0; h->va && i < opts->variable_axes.n; i++) {
            h->va[i].collection = dup_or_null(opts->variable_axes.v[i].collection, &ok);
            h->va[i].axis = opts->variable_axes.v[i].axis;
        }
    }
    h->split = dup_names(opts->split_rngs, &ok);
    h->bcast = dup_names(opts->variable_broadcast, &ok);
    h->carry = dup_names(opts->variable_carry, &ok);
    if (opts->in_axes.n > 0) {
        h->in_axes = malloc(sizeof *h->in_axes * (size_t)opts->in_axes.n);
        if (h->in_axes) memcpy(h->in_axes, opts->in_axes.v, sizeof *h->in_axes * (size_t)opts->in_axes.n);
        else ok = false;
    }
    h->o.partition_name = dup_or_null(opts->partition_name, &ok);
    h->o.variable_axes.v = h->va;
    h->o.split_rngs.v = h->split;
    h->o.variable_broadcast.v = h->bcast;
    h->o.variable_carry.v = h->carry;
    h->o.in_axes.v = h->in_axes;
    h->target = linen_module_retain((linen_module *)target);
    if (!ok) {
        holder_release(h);
        return oom();
    }
    h->type.name = h->name;
    h->type.config_size = sizeof(lift_config);
    h->type.config_free = lift_config_free;
    h->type.config_copy = lift_config_copy;
    h->type.dispatch = lift_dispatch;
    /* the module owns the holder (and so its type) through its config */
    linen_module *m = NULL;
    lx_status st = linen_module_new_named(&h->type, NULL, name, &m);
    if (st != LX_OK) {
        holder_release(h);
        return st;
    }
    ((lift_config *)m->config)->h = h;
    *out = m;
    return LX_OK;
}

lx_status linen_vmap(const linen_module *target, const linen_lift_opts *opts, linen_module **out) {
    return lift_new(LIFT_VMAP, target, opts, NULL, out);
}
lx_status linen_scan(const linen_module *target, const linen_lift_opts *opts, linen_module **out) {
    return lift_new(LIFT_SCAN, target, opts, NULL, out);
}
lx_status linen_vmap_named(const linen_module *target, const linen_lift_opts *opts, const char *name,
                           linen_module **out) {
    return lift_new(LIFT_VMAP, target, opts, name, out);
}
lx_status linen_scan_named(const linen_module *target, const linen_lift_opts *opts, const char *name,
                           linen_module **out) {
    return lift_new(LIFT_SCAN, target, opts, name, out);
}
