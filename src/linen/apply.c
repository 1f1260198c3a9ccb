/* init / init_with_output / apply: run one method with the module bound to a fresh root scope.
 *
 * Every call opens an autorelease pool and closes it before returning, so the temporaries of
 * the whole forward pass are gone; what the caller gets (the output value, the variables) holds
 * its own references. The caller's variables tree is never written. The frame's working tree
 * shares it as far as that is safe: a collection the call may write (its mutability allows it)
 * is copied (map structure only, leaves shared) so writes land in the copy; every other
 * collection is the caller's own map, bound read-only, since nothing in a frame writes to a
 * collection its mutability refuses. When nothing is mutable (the inference case) the frame
 * binds the caller's whole tree and copies nothing. A failure simply drops the frame.
 */
#include <stdlib.h>
#include <string.h>

#include "linen_internal.h"

static const char *const INIT_DENY[] = {"intermediates"};

static lx_status frame_new(linen_rngs rngs, const linen_mutable *mut, bool initializing,
                           linen_frame **out) {
    if (rngs.n < 0 || (rngs.n > 0 && !rngs.v))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen: invalid rngs (%d streams)", rngs.n);
    for (int i = 0; i < rngs.n; i++) {
        if (!rngs.v[i].name || !*rngs.v[i].name)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen: rng stream %d has no name", i);
        for (int j = 0; j < i; j++)
            if (strcmp(rngs.v[i].name, rngs.v[j].name) == 0)
                return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen: rng stream \"%s\" given twice", rngs.v[i].name);
    }
    if (mut->n < 0 || (mut->n > 0 && !mut->names))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen: invalid mutable list");
    for (int i = 0; i < mut->n; i++)
        if (!mut->names[i]) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen: mutable collection %d is NULL", i);
    linen_frame *f = NULL;
    LX_TRY(linen_frame_new(rngs.n, &f));
    f->initializing = initializing;
    /* The stream and collection names are the caller's, borrowed: they outlive the frame, which
     * ends before init/apply returns. */
    f->mutable = *mut;
    for (int i = 0; i < rngs.n; i++) {
        f->rng_names[i] = rngs.v[i].name;
        f->rng_keys[i] = rngs.v[i].key;
    }
    *out = f;
    return LX_OK;
}

static lx_status check_variables(const lx_tree *v) {
    for (size_t i = 0; i < lx_tree_len(v); i++) {
        const lx_value *c = lx_tree_at(v, i);
        if (c->kind != LX_V_TREE)
            return lx_fail(LX_ERR_TYPE,
                           "The first argument passed to an apply function should be a dictionary of "
                           "collections. Each collection should be a dictionary with string keys.");
    }
    const lx_value *p = lx_tree_get(v, "params");
    if (p && lx_tree_get(p->u.tree, "params") && lx_tree_get(p->u.tree, "params")->kind == LX_V_TREE)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "Expect the `variables` (first argument) passed to apply() to be a dict with "
                       "the structure {\"params\": ...}, but got a dict with an extra params layer, "
                       "i.e.  {\"params\": {\"params\": ... } }. You should instead pass in your "
                       "dict's [\"params\"].");
    return LX_OK;
}

/* Could this mutability let any collection be written? (DENY always leaves some name open.) */
static bool nothing_mutable(const linen_mutable *m) {
    return m->kind == LINEN_MUTABLE_NONE || (m->kind == LINEN_MUTABLE_LIST && m->n == 0);
}

/* The frame's working tree over the caller's `variables` (NULL at init): see the top comment.
 * The top-level map is the caller's when nothing is mutable, else a new one (so collections
 * created by the call do not appear in the caller's tree). */
static lx_status working_tree(const lx_tree *variables, const linen_mutable *mut, lx_tree **out) {
    if (variables && nothing_mutable(mut)) {
        *out = lx_tree_retain((lx_tree *)variables); /* read-only from here on */
        return LX_OK;
    }
    lx_tree *t = lx_tree_new();
    if (!t) return lx_fail(LX_ERR_NO_MEMORY, "linen: out of memory");
    for (size_t i = 0; variables && i < lx_tree_len(variables); i++) {
        const char *col = lx_tree_key(variables, i);
        const lx_value *sub = lx_tree_at(variables, i); /* a map: check_variables said so */
        lx_status st;
        if (linen_mutable_allows(mut, col)) {
            lx_tree *copy = lx_tree_copy(sub->u.tree);
            st = copy ? lx_tree_set(t, col, lx_tree_v(copy)) : lx_fail(LX_ERR_NO_MEMORY, "linen: out of memory");
            lx_tree_release(copy);
        } else {
            st = lx_tree_set(t, col, *sub);
        }
        if (st != LX_OK) {
            lx_tree_release(t);
            return st;
        }
    }
    *out = t;
    return LX_OK;
}

/* The collections of the working tree that the mutability allows (sub-maps shared: they are
 * the frame's copies, never the caller's maps). */
static lx_status collect(const linen_frame *f, lx_tree **out) {
    lx_tree *t = lx_tree_new();
    if (!t) return lx_fail(LX_ERR_NO_MEMORY, "linen: out of memory");
    for (size_t i = 0; i < lx_tree_len(f->vars); i++) {
        const char *col = lx_tree_key(f->vars, i);
        if (!linen_mutable_allows(&f->mutable, col)) continue;
        lx_status st = lx_tree_set(t, col, *lx_tree_at(f->vars, i));
        if (st != LX_OK) {
            lx_tree_release(t);
            return st;
        }
    }
    *out = t;
    return LX_OK;
}

static lx_status run(const linen_module *m, const lx_tree *variables, linen_rngs rngs,
                     const lx_call *call, const linen_opts *opts, bool init, lx_value *out,
                     lx_tree **result) {
    static const linen_opts defaults = {0};
    if (!opts) opts = &defaults;
    linen_mutable mut;
    if (opts->mutable_given) mut = opts->mutable;
    else if (init) mut = (linen_mutable){LINEN_MUTABLE_DENY, 1, INIT_DENY};
    else mut = LINEN_IMMUTABLE;
    if (variables) LX_TRY(check_variables(variables));

    size_t mark = lx_pool_open();
    linen_frame *f = NULL;
    lx_status st = frame_new(rngs, &mut, init, &f);
    if (st == LX_OK) st = working_tree(variables, &f->mutable, &f->vars);
    if (st == LX_OK) f->frozen = variables && nothing_mutable(&f->mutable); /* see linen_frame.frozen */
    if (st == LX_OK) st = linen_scope_new(f, NULL, NULL, m, &f->root);
    lx_value value = lx_none();
    if (st == LX_OK) st = linen_scope_run(f->root, opts->method, opts->method_fn, call, &value);
    lx_tree *res = NULL;
    if (st == LX_OK && result && (init || mut.kind != LINEN_MUTABLE_NONE)) st = collect(f, &res);
    linen_frame_free(f);
    if (st != LX_OK) {
        lx_value_free(&value);
        lx_pool_close(mark);
        return st;
    }
    lx_pool_close(mark);
    if (out) *out = value;
    else lx_value_free(&value);
    if (result) *result = res;
    return LX_OK;
}

lx_status linen_init_with_output(const linen_module *m, linen_rngs rngs, const lx_call *call,
                                 const linen_opts *opts, lx_value *out, lx_tree **variables) {
    if (!variables) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_init: variables is NULL");
    *variables = NULL;
    if (out) *out = lx_none();
    if (!m) return lx_null_input("linen_init: module is NULL");
    return run(m, NULL, rngs, call, opts, true, out, variables);
}

lx_status linen_init(const linen_module *m, linen_rngs rngs, const lx_call *call,
                     const linen_opts *opts, lx_tree **variables) {
    return linen_init_with_output(m, rngs, call, opts, NULL, variables);
}

/* (linen_apply): the parentheses keep compat.h's dispatching macro of the same name out. */
lx_status(linen_apply)(const linen_module *m, const lx_tree *variables, linen_rngs rngs, const lx_call *call,
                       const linen_opts *opts, lx_value *out, lx_tree **mutated) {
    if (out) *out = lx_none();
    if (mutated) *mutated = NULL;
    if (!m) return lx_null_input("linen_apply: module is NULL");
    if (!variables) return lx_null_input("linen_apply: variables is NULL");
    bool immutable = !opts || !opts->mutable_given || opts->mutable.kind == LINEN_MUTABLE_NONE;
    if (!immutable && !mutated)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_apply: `mutated` is NULL but collections are mutable");
    return run(m, variables, rngs, call, opts, false, out, immutable ? NULL : mutated);
}
