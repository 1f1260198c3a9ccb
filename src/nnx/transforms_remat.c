/* nnx.remat: a method call recomputed in the backward pass (lx_remat_call, autodiff.h).
 *
 * The forward runs the method on the live module (its Variables change as without remat: Rngs
 * counts, batch statistics). The recomputation must see the values the forward saw, so the call
 * keeps a snapshot: the graphdef and a state of new Variables holding the arrays the module held
 * at the call (arrays are immutable values here, so no copy is made). The backward merges it
 * into a throwaway module and runs the method there: the same parameter arrays (so the tape's
 * inputs), the same rng keys and counts. */
#include <stdlib.h>

#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/intercept.h"
#include "linnx/nnx_transforms.h"
#include "../core/status_internal.h"

typedef struct nnx_remat_closure {
    nnx_module *live; /* the forward only (borrowed) */
    nnx_graphdef *gd;
    lx_tree *snap;
    char *method;
    lx_call call;
} nnx_remat_closure;

static void closure_free(void *p) {
    nnx_remat_closure *c = p;
    if (!c) return;
    nnx_graphdef_free(c->gd);
    lx_tree_release(c->snap);
    free(c->method);
    lx_call_free(&c->call);
    free(c);
}

static lx_status snap_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    (void)path, (void)user;
    if (leaf->kind != LX_V_VARIABLE) return lx_value_dup(leaf, out);
    const lx_variable *v = leaf->u.var;
    lx_variable *nv = NULL;
    LX_TRY(lx_variable_new_md(lx_variable_type(v), lx_variable_get_value(v), lx_variable_metadata(v), &nv));
    *out = lx_var_v(nv);
    return LX_OK;
}

static lx_status remat_run(void *user, bool recompute, lx_value *out) {
    nnx_remat_closure *c = user;
    if (!recompute) {
        nnx_module *m = c->live;
        c->live = NULL;
        return nnx_call(m, c->method, &c->call, out);
    }
    nnx_module *m = NULL;
    LX_TRY(nnx_merge(c->gd, 1, &c->snap, &m));
    /* (lx_remat_call runs this in a frame of m's path at the call: the merged module then adds
     * no component of its own) */
    lx_status st = nnx_call(m, c->method, &c->call, out);
    nnx_module_release(m);
    return st;
}

lx_status nnx_remat_call(nnx_module *m, const char *method, lx_remat_policy policy, const lx_call *call, lx_value *out) {
    if (!out) return lx_null_out("nnx_remat_call");
    *out = lx_none();
    if (!m) return lx_null_input("nnx_remat_call: module is NULL");
    if (!call) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_remat_call: call is NULL");
    if (policy != LX_REMAT_NOTHING_SAVEABLE && policy != LX_REMAT_DOTS_SAVEABLE)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx.remat: unknown policy %d", (int)policy);
    if (!lx_tape_active()) return nnx_call(m, method, call, out); /* nothing to recompute for */
    nnx_remat_closure *c = calloc(1, sizeof *c);
    if (!c) return lx_fail(LX_ERR_NO_MEMORY, "nnx.remat: out of memory");
    lx_tree *state = NULL;
    lx_status st = nnx_split(m, 0, NULL, &c->gd, &state);
    if (st == LX_OK) st = lx_tree_map(state, snap_leaf, NULL, &c->snap);
    lx_tree_release(state);
    if (st == LX_OK && method && !(c->method = lx_strdup(method)))
        st = lx_fail(LX_ERR_NO_MEMORY, "nnx.remat: out of memory");
    if (st == LX_OK) st = lx_call_dup(call, &c->call);
    if (st != LX_OK) {
        closure_free(c);
        return st;
    }
    c->live = m;
    /* in m's own frame, so lx_remat_call keeps m's full path for the recomputation (the forward's
     * nnx_call finds the frame entered and enters none) */
    int entered = nnx_frame_enter(m);
    if (entered < 0) {
        closure_free(c);
        return lx_last_status();
    }
    st = lx_remat_call(remat_run, c, closure_free, policy, out);
    nnx_frame_leave(entered);
    return st;
}
