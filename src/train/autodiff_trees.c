/* value_and_grad over trees: Linen params (jax.value_and_grad around apply) and NNX module state
 * (nnx.value_and_grad with a filter). Both watch the very arrays the tree holds, run the user's
 * function, differentiate, and rebuild a tree of the same structure around the gradients (boxes
 * and Variables keep their kind and metadata). */
#include <stdlib.h>
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/box.h"
#include "linnx/variable.h"

/* autodiff.c: the first NaN/Inf element of a float32 array, or -1. */
int64_t lx_first_nonfinite_(const lx_array *a);

/* The array a differentiable leaf holds (borrowed), or NULL with a message naming the path. */
static lx_array *leaf_array(const char *who, const char *path, const lx_value *v) {
    lx_array *a = NULL;
    switch (v->kind) {
    case LX_V_ARRAY: a = v->u.array; break;
    case LX_V_BOX: a = lx_box_unbox(v->u.box); break;
    case LX_V_VARIABLE: a = lx_variable_get_value(v->u.var); break;
    default:
        lx_fail(LX_ERR_TYPE, "%s: the leaf at '%s' is a %s, not an array: it cannot be differentiated", who, path,
                lx_value_pytype(v));
        return NULL;
    }
    if (!a) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: the leaf at '%s' holds no array", who, path);
        return NULL;
    }
    if (lx_is_abstract(a)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: the leaf at '%s' is abstract (no values to differentiate at)", who,
                path);
        return NULL;
    }
    if (a->dtype != LX_F32 && a->dtype != LX_BF16) {
        char b[64];
        lx_fail(LX_ERR_DTYPE,
                "%s: grad requires real-valued inputs (input dtype that is a sub-dtype of np.inexact), but got %s "
                "at '%s'",
                who, lx_array_sig(a, b, sizeof b), path);
        return NULL;
    }
    return a;
}

typedef struct {
    const lx_flat *flat;
    lx_array **grads; /* owned; taken by the new tree */
    size_t next;
} rebuild_ctx;

/* The gradient leaf for `leaf`: the same kind of container around grads[i]. */
static lx_status rebuild_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    rebuild_ctx *c = user;
    size_t i = c->next;
    if (i >= c->flat->len || strcmp(c->flat->items[i].path, path) != 0)
        for (i = 0; i < c->flat->len && strcmp(c->flat->items[i].path, path) != 0; i++) {
        }
    if (i >= c->flat->len) return lx_fail(LX_ERR_INTERNAL, "value_and_grad: lost the leaf at '%s'", path);
    c->next = i + 1;
    lx_array *g = c->grads[i];
    switch (leaf->kind) {
    case LX_V_BOX: {
        lx_box *b = NULL;
        LX_TRY(lx_box_replace_boxed(leaf->u.box, g, &b));
        *out = lx_box_v(b);
        return LX_OK;
    }
    case LX_V_VARIABLE: {
        lx_variable *v = NULL;
        LX_TRY(lx_variable_copy(leaf->u.var, &v));
        lx_status st = lx_variable_set_value(v, g, false);
        if (st != LX_OK) {
            lx_variable_release(v);
            return st;
        }
        *out = lx_var_v(v);
        return LX_OK;
    }
    default:
        *out = lx_array_v(lx_retain(g));
        return LX_OK;
    }
}

/* Watch every leaf of `flat`, run `run`, differentiate the loss w.r.t. the leaves and rebuild
 * `tree` around the gradients. */
typedef lx_status (*run_fn)(void *ctx, lx_array **loss);

static lx_status grad_over_tree(const char *who, const lx_tree *tree, run_fn run, void *ctx, lx_array **value,
                                lx_tree **grads) {
    lx_flat flat = {0};
    LX_TRY(lx_tree_flatten(tree, &flat));
    lx_array **xs = calloc(flat.len ? flat.len : 1, sizeof *xs), **gs = calloc(flat.len ? flat.len : 1, sizeof *gs);
    lx_status st = xs && gs ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "%s: out of memory", who);
    for (size_t i = 0; st == LX_OK && i < flat.len; i++)
        if (!(xs[i] = leaf_array(who, flat.items[i].path, &flat.items[i].value))) st = lx_last_status();
    lx_tape *t = NULL;
    if (st == LX_OK) st = lx_tape_new(&t);
    for (size_t i = 0; st == LX_OK && i < flat.len; i++) st = lx_tape_watch(t, xs[i]);
    size_t mark = lx_pool_open();
    lx_array *loss = NULL;
    if (st == LX_OK) st = run(ctx, &loss);
    lx_tape_stop(t);
    if (st == LX_OK && !loss) st = lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: the loss function returned no loss", who);
    if (st == LX_OK && loss->ndim != 0) {
        char b[64];
        st = lx_fail(LX_ERR_SHAPE, "%s: Gradient only defined for scalar-output functions. Output had shape: %s (%s)",
                     who, lx_shape_str(loss->ndim, loss->shape, b, sizeof b), lx_dtype_name(loss->dtype));
    } else if (st == LX_OK && loss->dtype != LX_F32) {
        st = lx_fail(LX_ERR_DTYPE, "%s: grad requires real-valued outputs (float32 here), but got %s", who,
                     lx_dtype_name(loss->dtype));
    }
    if (st == LX_OK) st = lx_tape_backward(t, loss, (int)flat.len, xs, gs);
    if (st == LX_OK && lx_debug_nans()) {
        int64_t e = lx_first_nonfinite_(loss);
        if (e >= 0) st = lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: the loss is %g (debug_nans is on)", who, (double)lx_f32(loss)[0]);
        for (size_t i = 0; st == LX_OK && i < flat.len; i++)
            if ((e = lx_first_nonfinite_(gs[i])) >= 0)
                st = lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %g in the gradient at '%s' (element %lld; debug_nans is on)", who,
                             (double)lx_f32(gs[i])[e], flat.items[i].path, (long long)e);
    }
    if (st == LX_OK) {
        rebuild_ctx rc = {&flat, gs, 0};
        st = lx_tree_map(tree, rebuild_leaf, &rc, grads);
    }
    if (st == LX_OK && value) *value = lx_retain(loss);
    lx_pool_close(mark);
    lx_tape_free(t);
    for (size_t i = 0; gs && i < flat.len; i++) lx_release(gs[i]);
    free(xs);
    free(gs);
    lx_flat_free(&flat);
    return st;
}

/* ---- Linen ---- */

typedef struct {
    linen_loss_fn fn;
    void *user;
    const lx_tree *params;
    lx_tree *aux;
} linen_ctx;

static lx_status linen_run(void *ctx, lx_array **loss) {
    linen_ctx *c = ctx;
    return c->fn(c->params, c->user, loss, &c->aux);
}

lx_status linen_value_and_grad(linen_loss_fn fn, void *user, const lx_tree *params, lx_array **value,
                               lx_tree **grads, lx_tree **aux) {
    if (value) *value = NULL;
    if (aux) *aux = NULL;
    if (!grads) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_value_and_grad: grads is NULL");
    *grads = NULL;
    if (!fn || !params) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_value_and_grad: NULL function or params");
    linen_ctx c = {fn, user, params, NULL};
    lx_status st = grad_over_tree("linen_value_and_grad", params, linen_run, &c, value, grads);
    if (st == LX_OK && aux) *aux = c.aux;
    else lx_tree_release(c.aux);
    return st;
}

/* ---- NNX ---- */

typedef struct {
    nnx_loss_fn fn;
    void *user;
    nnx_module *model;
} nnx_ctx;

static lx_status nnx_run(void *ctx, lx_array **loss) {
    nnx_ctx *c = ctx;
    return c->fn(c->model, c->user, loss);
}

lx_status nnx_value_and_grad(nnx_module *model, const nnx_filter *wrt, nnx_loss_fn fn, void *user,
                             lx_array **value, lx_tree **grads) {
    if (value) *value = NULL;
    if (!grads) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_value_and_grad: grads is NULL");
    *grads = NULL;
    if (!model || !fn) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_value_and_grad: NULL model or function");
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    lx_tree *state = NULL, *all = NULL;
    LX_TRY(nnx_state(model, 1, wrt ? wrt : &param, &state));
    /* Every Variable's value before the call, to put back if anything fails. */
    lx_flat before = {0};
    lx_status st = nnx_state(model, 0, NULL, &all);
    if (st == LX_OK) st = lx_tree_flatten(all, &before);
    lx_array **old = st == LX_OK ? calloc(before.len ? before.len : 1, sizeof *old) : NULL;
    if (st == LX_OK && !old) st = lx_fail(LX_ERR_NO_MEMORY, "nnx_value_and_grad: out of memory");
    for (size_t i = 0; st == LX_OK && i < before.len; i++)
        if (before.items[i].value.kind == LX_V_VARIABLE)
            old[i] = lx_retain(lx_variable_get_value(before.items[i].value.u.var));
    if (st == LX_OK) {
        nnx_ctx c = {fn, user, model};
        st = grad_over_tree("nnx_value_and_grad", state, nnx_run, &c, value, grads);
        if (st != LX_OK)
            for (size_t i = 0; i < before.len; i++)
                if (old[i] && lx_variable_get_value(before.items[i].value.u.var) != old[i])
                    lx_variable_set_value(before.items[i].value.u.var, old[i], false);
    }
    for (size_t i = 0; old && i < before.len; i++) lx_release(old[i]);
    free(old);
    lx_flat_free(&before);
    lx_tree_release(all);
    lx_tree_release(state);
    return st;
}

lx_status nnx_grad(nnx_module *model, const nnx_filter *wrt, nnx_loss_fn fn, void *user, lx_tree **grads) {
    return nnx_value_and_grad(model, wrt, fn, user, NULL, grads);
}
