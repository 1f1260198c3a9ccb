/* optax.chain and optax.masked. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "optax_internal.h"
#include "../core/status_internal.h"

/* ------------------------------------------------------------------ chain */

static lx_status chain_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    for (int k = 0; k < tx->n; k++) {
        lx_tree *s = NULL;
        LX_TRY(lx_tx_run_init(tx->subs[k], lv, &s));
        char key[16];
        snprintf(key, sizeof key, "%d", k);
        lx_status st = lx_tree_set(state, key, lx_tree_v(s));
        lx_tree_release(s);
        LX_TRY(st);
    }
    return LX_OK;
}

static lx_status chain_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                              const char *spath, lx_tree *ns) {
    size_t nstate = lx_tree_len(state);
    if (nstate != (size_t)tx->n)
        return lx_fail(LX_ERR_SHAPE,
                       "update: The number of updates and states has to be the same in chain! Make sure you have "
                       "called init first! (chain of %d, state '%s' has %zu entries)",
                       tx->n, spath, nstate);
    for (int k = 0; k < tx->n; k++) {
        char key[16], sub[512];
        snprintf(key, sizeof key, "%d", k);
        snprintf(sub, sizeof sub, "%s%s%s", spath, *spath ? "/" : "", key);
        const lx_value *v = lx_tree_get(state, key);
        if (!v || v->kind != LX_V_TREE) return lx_state_missing(spath, key);
        lx_tree *s = NULL;
        LX_TRY(lx_tx_run_update(tx->subs[k], lv, u, v->u.tree, sub, &s));
        lx_status st = lx_tree_set(ns, key, lx_tree_v(s));
        lx_tree_release(s);
        LX_TRY(st);
    }
    return LX_OK;
}

static const lx_tx_ops CHAIN_OPS = {"chain", chain_init, chain_update};

optax_tx *optax_chain(int n, optax_tx *const *txs) {
    bool ok = n >= 0 && (n == 0 || txs);
    for (int i = 0; ok && i < n; i++) ok = txs[i] != NULL;
    if (!ok) {
        for (int i = 0; txs && i < n; i++) optax_tx_release(txs[i]);
        if (n < 0 || (n > 0 && !txs)) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "chain: bad transformation list");
        } else {
            int i = 0;
            while (txs[i]) i++;
            lx_null_input("chain: transformation %d is NULL", i);
        }
        return NULL;
    }
    int depth = 0;
    for (int i = 0; i < n; i++) depth = txs[i]->depth + 1 > depth ? txs[i]->depth + 1 : depth;
    if (depth > LX_OPTAX_MAX_NEST) {
        for (int i = 0; i < n; i++) optax_tx_release(txs[i]);
        lx_fail(LX_ERR_INVALID_ARGUMENT, "chain: transformations nested more than %d deep", LX_OPTAX_MAX_NEST);
        return NULL;
    }
    optax_tx *tx = lx_tx_alloc(&CHAIN_OPS);
    optax_tx **subs = calloc((size_t)n + 1, sizeof *subs);
    if (!tx || !subs) {
        free(tx);
        free(subs);
        for (int i = 0; i < n; i++) optax_tx_release(txs[i]);
        if (tx && !subs) lx_fail(LX_ERR_NO_MEMORY, "chain: out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) subs[i] = txs[i];
    tx->subs = subs;
    tx->n = n;
    tx->depth = depth;
    return tx;
}

/* ------------------------------------------------------------------ masked */

static lx_status masked_leaves(const optax_tx *tx, const lx_leaves *lv, lx_leaves *out, bool **saved) {
    *out = *lv;
    bool *act = malloc(((size_t)lv->n + 1) * sizeof *act);
    if (!act) return lx_fail(LX_ERR_NO_MEMORY, "masked: out of memory");
    for (int i = 0; i < lv->n; i++)
        act[i] = lv->active[i] && tx->mask.fn(lv->paths[i], lv->ref[i], tx->mask.user);
    out->active = act;
    *saved = act;
    return LX_OK;
}

static lx_status masked_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    lx_leaves m;
    bool *act = NULL;
    LX_TRY(masked_leaves(tx, lv, &m, &act));
    lx_tree *s = NULL;
    lx_status st = lx_tx_run_init(tx->subs[0], &m, &s);
    if (st == LX_OK) st = lx_tree_set(state, "inner_state", lx_tree_v(s));
    lx_tree_release(s);
    free(act);
    return st;
}

static lx_status masked_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                               const char *spath, lx_tree *ns) {
    const lx_value *v = lx_tree_get(state, "inner_state");
    if (!v || v->kind != LX_V_TREE) return lx_state_missing(spath, "inner_state");
    lx_leaves m;
    bool *act = NULL;
    LX_TRY(masked_leaves(tx, lv, &m, &act));
    char sub[512];
    snprintf(sub, sizeof sub, "%s%sinner_state", spath, *spath ? "/" : "");
    lx_tree *s = NULL;
    lx_status st = lx_tx_run_update(tx->subs[0], &m, u, v->u.tree, sub, &s);
    if (st == LX_OK) st = lx_tree_set(ns, "inner_state", lx_tree_v(s));
    lx_tree_release(s);
    free(act);
    return st;
}

static const lx_tx_ops MASKED_OPS = {"masked", masked_init, masked_update};

optax_tx *optax_masked(optax_tx *inner, optax_mask mask) {
    if (!inner) {
        lx_null_input("masked: the inner transformation is NULL");
        return NULL;
    }
    if (!mask.fn) {
        optax_tx_release(inner);
        lx_fail(LX_ERR_INVALID_ARGUMENT, "masked: the mask function is NULL");
        return NULL;
    }
    if (inner->depth + 1 > LX_OPTAX_MAX_NEST) {
        optax_tx_release(inner);
        lx_fail(LX_ERR_INVALID_ARGUMENT, "masked: transformations nested more than %d deep", LX_OPTAX_MAX_NEST);
        return NULL;
    }
    optax_tx *tx = lx_tx_alloc(&MASKED_OPS);
    optax_tx **subs = calloc(1, sizeof *subs);
    if (!tx || !subs) {
        free(tx);
        free(subs);
        optax_tx_release(inner);
        return NULL;
    }
    subs[0] = inner;
    tx->subs = subs;
    tx->n = 1;
    tx->depth = inner->depth + 1;
    tx->mask = mask;
    return tx;
}

/* ------------------------------------------------------------------ mask helpers */

static bool mask_tree_fn(const char *path, const lx_array *param, void *user) {
    const lx_tree *t = user;
    char buf[1024];
    size_t len = strlen(path);
    if (len >= sizeof buf) return false;
    memcpy(buf, path, len + 1);
    /* the longest prefix of the path that the mask tree holds as a leaf decides */
    for (char *end = buf + len;;) {
        const lx_value *v = lx_tree_find(t, buf);
        if (v && v->kind == LX_V_BOOL) return v->u.b;
        if (v && v->kind == LX_V_INT) return v->u.i != 0;
        if (v && v->kind == LX_V_ARRAY && v->u.array->size == 1 && !lx_is_abstract(v->u.array))
            return lx_array_get(v->u.array, 0) != 0;
        end = strrchr(buf, '/');
        if (!end) return false;
        *end = '\0';
    }
}

optax_mask optax_mask_tree(const lx_tree *mask) { return (optax_mask){mask_tree_fn, (void *)mask}; }

static bool min_ndim_fn(const char *path, const lx_array *param, void *user) {
    return param->ndim >= (int)(intptr_t)user;
}

optax_mask optax_mask_min_ndim(int n) { return (optax_mask){min_ndim_fn, (void *)(intptr_t)n}; }
