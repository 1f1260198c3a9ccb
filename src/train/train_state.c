/* flax.training.train_state.TrainState: create, apply_gradients, the serialized layout. */
#include <stdlib.h>

#include "linnx/train.h"
#include "optax_internal.h"
#include "../core/status_internal.h"

#define OWG "_overwrite_with_gradient"

static const lx_tree *subtree(const lx_tree *t, const char *key) {
    const lx_value *v = lx_tree_get(t, key);
    return v && v->kind == LX_V_TREE ? v->u.tree : NULL;
}

lx_status linen_train_state_create(const void *apply_fn, lx_tree *params, optax_tx *tx, linen_train_state **out) {
    if (!out) { /* tx is taken even when the call fails (train.h) */
        optax_tx_release(tx);
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "TrainState.create: output is NULL");
    }
    *out = NULL;
    if (!tx) return lx_null_input("TrainState.create: tx is NULL");
    if (!params) {
        optax_tx_release(tx);
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "TrainState.create: params are required");
    }
    const lx_tree *opt_params = params;
    if (lx_tree_get(params, OWG)) {
        opt_params = subtree(params, "params");
        if (!opt_params) {
            optax_tx_release(tx);
            return lx_fail(LX_ERR_NOT_FOUND, "TrainState.create: params has '" OWG "' but no 'params' collection");
        }
    }
    lx_tree *st = NULL;
    lx_status status = optax_init(tx, opt_params, &st);
    linen_train_state *s = status == LX_OK ? calloc(1, sizeof *s) : NULL;
    if (status == LX_OK && !s) status = lx_fail(LX_ERR_NO_MEMORY, "TrainState.create: out of memory");
    if (status != LX_OK) {
        lx_tree_release(st);
        optax_tx_release(tx);
        return status;
    }
    s->step = 0;
    s->apply_fn = apply_fn;
    s->params = lx_tree_retain(params);
    s->tx = tx;
    s->opt_state = st;
    *out = s;
    return LX_OK;
}

static lx_status apply_gradients(const linen_train_state *s, const lx_tree *grads, bool donated,
                                 linen_train_state **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "apply_gradients: output is NULL");
    *out = NULL;
    if (!s) return lx_fail(LX_ERR_INVALID_ARGUMENT, "apply_gradients: state is NULL");
    if (!grads) return lx_null_input("apply_gradients: grads is NULL");
    /* Flax decides by the gradients: with an OWG collection in them, only grads['params'] and
     * params['params'] go through tx */
    bool owg = lx_tree_get(grads, OWG) != NULL;
    const lx_tree *p = s->params, *g = grads;
    if (owg) {
        p = subtree(s->params, "params");
        g = subtree(grads, "params");
        if (!p || !g || !subtree(grads, OWG))
            return lx_fail(LX_ERR_NOT_FOUND,
                           "apply_gradients: with '" OWG "' in the grads, grads and params need a 'params' collection");
    }
    /* the new state's record first: a donated fused step writes the old arrays in place, so nothing
     * may fail after it (train.h: on failure the state is left as it was) */
    linen_train_state *r = calloc(1, sizeof *r);
    if (!r) return lx_fail(LX_ERR_NO_MEMORY, "apply_gradients: out of memory");
    lx_tree *upd = NULL, *ns = NULL, *np = NULL;
    bool fused = false;
    /* donated: the caller frees s on success; not with an OWG collection (p is then a subtree,
     * which the whole params tree may share with someone) */
    lx_status st = lx_optax_fused_step_ex(s->tx, g, s->opt_state, p, donated && !owg, &np, &ns, &fused);
    if (st == LX_OK && !fused) {
        /* not an adam/adamw/sgd chain over float32 leaves: update, then apply_updates */
        st = optax_update(s->tx, g, s->opt_state, p, &upd, &ns);
        if (st == LX_OK) st = optax_apply_updates(p, upd, &np);
        lx_optax_recycle_tree(upd);
    }
    if (st == LX_OK && owg) {
        /* {'params': new params, OWG: grads[OWG]}: the OWG gradients become the params */
        lx_tree *full = lx_tree_new();
        st = full ? lx_tree_set(full, "params", lx_tree_v(np)) : lx_last_status();
        if (st == LX_OK) st = lx_tree_set(full, OWG, lx_tree_v((lx_tree *)subtree(grads, OWG)));
        lx_tree_release(np);
        np = full;
    }
    if (st != LX_OK) {
        free(r);
        lx_tree_release(np);
        lx_tree_release(ns);
        return st;
    }
    r->step = s->step + 1;
    r->apply_fn = s->apply_fn;
    r->params = np;
    r->tx = optax_tx_retain(s->tx);
    r->opt_state = ns;
    *out = r;
    return LX_OK;
}

lx_status linen_train_state_apply_gradients(const linen_train_state *s, const lx_tree *grads, linen_train_state **out) {
    return apply_gradients(s, grads, false, out);
}

lx_status linen_train_state_apply_gradients_donated(linen_train_state **state, const lx_tree *grads) {
    if (!state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "apply_gradients: state is NULL");
    linen_train_state *next = NULL;
    LX_TRY(apply_gradients(*state, grads, true, &next));
    linen_train_state_free(*state);
    *state = next;
    return LX_OK;
}

void linen_train_state_free(linen_train_state *s) {
    if (!s) return;
    /* a training loop frees the previous state: its buffers serve the next step (optax.h) */
    lx_optax_recycle_tree(s->params);
    lx_optax_recycle_tree(s->opt_state);
    optax_tx_release(s->tx);
    free(s);
}

lx_status linen_train_state_dict(const linen_train_state *s, lx_tree **out) {
    if (!s) return lx_fail(LX_ERR_INVALID_ARGUMENT, "TrainState state dict: state is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "TrainState state dict: out is NULL");
    lx_tree *t = lx_tree_new();
    lx_status st = t ? lx_tree_set(t, "step", lx_int_v(s->step)) : lx_last_status();
    if (st == LX_OK) st = lx_tree_set(t, "params", lx_tree_v(s->params));
    if (st == LX_OK) st = lx_tree_set(t, "opt_state", lx_tree_v(s->opt_state));
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    *out = t;
    return LX_OK;
}
