/* Linen nn.remat / nn.checkpoint: a lifted module whose call is one lx_remat_call (autodiff.h).
 *
 * The target runs in a frame of its own, built from a snapshot taken at the call: the variables
 * at the lifted scope's path (map copies sharing the arrays), the frame's rng keys, the scope's
 * rng counters and its path. The forward runs it with the enclosing frame's mutability and
 * writes back what the mutable collections and the counters became (so init, batch statistics
 * and sow work as without remat); the backward pass rebuilds the same frame from the snapshot
 * with nothing mutable and runs it again: same arrays, same keys, same counts, same values.
 * The lifted scope is transparent: nn.remat(Block) bound as `block` keeps params/block/... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linen_internal.h"
#include "../core/status_internal.h"
#include "linnx/autodiff.h"
#include "linnx/lift.h"

typedef struct remat_holder {
    linen_type type; /* first: modules point at it */
    int refcount;
    char *name;
    linen_module *target;
    lx_remat_policy policy;
} remat_holder;

typedef struct remat_config {
    remat_holder *h;
} remat_config;

static lx_status oom(void) { return lx_fail(LX_ERR_NO_MEMORY, "linen: out of memory"); }

static void holder_release(remat_holder *h) {
    if (!h || --h->refcount > 0) return;
    free(h->name);
    linen_module_release(h->target);
    free(h);
}

static void remat_config_free(void *cfg) {
    remat_config *c = cfg;
    holder_release(c->h);
    c->h = NULL;
}
static lx_status remat_config_copy(void *dst, const void *src) {
    const remat_config *s = src;
    ((remat_config *)dst)->h = s->h;
    s->h->refcount++;
    return LX_OK;
}

/* What one call needs to run again after the apply has returned. */
typedef struct remat_closure {
    linen_module *target;
    char *method;
    lx_call call;
    lx_tree *vars; /* {collection: {<path>: sub-map}} as the call found them */
    int nrngs;
    char **rng_names;
    lx_key *rng_keys;
    uint32_t *counters;
    int depth;
    char **names;      /* the scope's path components */
    char *parent_path; /* the parent scope's path ("/" at depth 1) */
    /* What a body frame's root scope has as its parent (depth > 0): a view lending only depth,
     * names and path (frame, module and parent NULL). It lives here, not on remat_run's stack, so
     * it outlives every frame built from the closure (each is freed inside remat_run, the closure
     * only after the backward): a lift nested in the body reads root->parent (nn.vmap and nn.scan
     * build their own body's root from it, lift_vmap_scan.c), and no root ever points at a
     * finished stack frame, pooled scope blocks included. */
    linen_scope parent;
    linen_scope *s;    /* the lifted scope, during the forward only */
} remat_closure;

static void closure_free(void *p) {
    remat_closure *c = p;
    if (!c) return;
    linen_module_release(c->target);
    free(c->method);
    lx_call_free(&c->call);
    lx_tree_release(c->vars);
    for (int i = 0; c->rng_names && i < c->nrngs; i++) free(c->rng_names[i]);
    free(c->rng_names);
    free(c->rng_keys);
    free(c->counters);
    for (int i = 0; c->names && i < c->depth; i++) free(c->names[i]);
    free(c->names);
    free(c->parent_path);
    free(c);
}

/* The scope's map in collection `col` of vars, or NULL. */
static const lx_value *sub_at(const lx_tree *vars, const char *col, int depth, const char *const *names) {
    const lx_value *v = linen_vars_walk(vars, col, depth, names);
    return v && v->kind == LX_V_TREE ? v : NULL;
}

static lx_status closure_new(linen_scope *s, const remat_holder *h, const char *method, const lx_call *call,
                             remat_closure **out) {
    remat_closure *c = calloc(1, sizeof *c);
    if (!c) return oom();
    const linen_frame *F = s->frame;
    c->target = linen_module_retain(h->target);
    c->method = lx_strdup(method);
    c->nrngs = F->nrngs;
    c->rng_names = calloc((size_t)F->nrngs + 1, sizeof *c->rng_names);
    c->rng_keys = calloc((size_t)F->nrngs + 1, sizeof *c->rng_keys);
    c->counters = calloc((size_t)F->nrngs + 1, sizeof *c->counters);
    c->depth = s->depth;
    c->names = calloc((size_t)s->depth + 1, sizeof *c->names);
    c->vars = lx_tree_new();
    lx_status st = c->method && c->rng_names && c->rng_keys && c->counters && c->names && c->vars ? LX_OK : oom();
    for (int i = 0; st == LX_OK && i < F->nrngs; i++) {
        c->rng_names[i] = lx_strdup(F->rng_names[i]);
        c->rng_keys[i] = F->rng_keys[i];
        c->counters[i] = s->rng_counters[i];
        if (!c->rng_names[i]) st = oom();
    }
    for (int i = 0; st == LX_OK && i < s->depth; i++)
        if (!(c->names[i] = lx_strdup(s->names[i]))) st = oom();
    if (st == LX_OK && s->depth > 0) {
        c->parent_path = linen_var_path("", s->depth - 1, (const char *const *)c->names, NULL);
        if (!c->parent_path) st = oom();
        else if (!c->parent_path[0]) {
            free(c->parent_path);
            c->parent_path = lx_strdup("/");
            if (!c->parent_path) st = oom();
        }
    }
    if (st == LX_OK && s->depth > 0) {
        c->parent.depth = c->depth - 1;
        c->parent.names = (const char **)c->names;
        c->parent.path = c->parent_path;
    }
    if (st == LX_OK) st = lx_call_dup(call, &c->call);
    for (size_t k = 0; st == LX_OK && k < lx_tree_len(F->vars); k++) {
        const char *col = lx_tree_key(F->vars, k);
        const lx_value *sub = sub_at(F->vars, col, s->depth, s->names);
        if (!sub) continue;
        lx_tree *t = lx_tree_copy(sub->u.tree);
        char *p = t ? linen_var_path(col, s->depth, s->names, NULL) : NULL;
        st = p ? lx_tree_set_path(c->vars, p, lx_tree_v(t)) : oom();
        free(p);
        lx_tree_release(t);
    }
    if (st != LX_OK) {
        closure_free(c);
        return st;
    }
    *out = c;
    return LX_OK;
}

/* The body: the target in a frame made from the closure. */
static lx_status remat_run(void *user, bool recompute, lx_value *out) {
    remat_closure *c = user;
    linen_scope *s = recompute ? NULL : c->s;
    linen_frame *f = NULL;
    LX_TRY(linen_frame_new(c->nrngs, &f));
    f->initializing = s ? s->frame->initializing : false;
    f->mutable = s ? s->frame->mutable : LINEN_IMMUTABLE;
    /* the forward may write its mutable collections: a copy; the recompute writes nothing */
    f->vars = s ? lx_tree_copy(c->vars) : lx_tree_retain(c->vars);
    lx_status st = f->vars ? LX_OK : oom();
    for (int i = 0; st == LX_OK && i < c->nrngs; i++) {
        f->rng_names[i] = c->rng_names[i];
        f->rng_keys[i] = c->rng_keys[i];
    }
    /* the parent (the closure's view: it outlives this frame) only lends its path */
    if (st == LX_OK)
        st = linen_scope_new(f, c->depth > 0 ? &c->parent : NULL, c->depth > 0 ? c->names[c->depth - 1] : NULL,
                             c->target, &f->root);
    if (st == LX_OK) {
        f->root->lifted_body = true;
        memcpy(f->root->rng_counters, c->counters, sizeof(uint32_t) * (size_t)c->nrngs);
        /* (the recomputation runs in a frame of the forward's module path: lx_remat_call's) */
        st = linen_scope_run(f->root, c->method, NULL, &c->call, out);
    }
    /* forward: what the mutable collections and the counters became goes to the enclosing frame */
    for (size_t k = 0; st == LX_OK && s && k < lx_tree_len(f->vars); k++) {
        const char *col = lx_tree_key(f->vars, k);
        if (!linen_mutable_allows(&s->frame->mutable, col)) continue;
        const lx_value *sub = sub_at(f->vars, col, s->depth, s->names);
        if (!sub) continue;
        char *p = linen_var_path(col, s->depth, s->names, NULL);
        st = p ? lx_tree_set_path(s->frame->vars, p, lx_tree_v(sub->u.tree)) : oom();
        free(p);
    }
    if (st == LX_OK && s) memcpy(s->rng_counters, f->root->rng_counters, sizeof(uint32_t) * (size_t)c->nrngs);
    c->s = NULL;
    linen_frame_free(f);
    if (st != LX_OK) lx_value_free(out);
    return st;
}

static lx_status remat_dispatch(linen_scope *s, const char *method, const lx_call *call, lx_value *out) {
    const remat_config *cfg = s->module->config;
    const remat_holder *h = cfg->h;
    const linen_type *tt = h->target->type;
    bool known = tt->dispatch != NULL;
    for (int i = 0; !known && i < tt->nmethods; i++) known = strcmp(tt->methods[i].name, method) == 0;
    if (!known) return LX_ERR_NOT_FOUND; /* no message: "no such method" */
    remat_closure *c = NULL;
    LX_TRY(closure_new(s, h, method, call, &c));
    c->s = s;
    return lx_remat_call(remat_run, c, closure_free, h->policy, out);
}

lx_status linen_remat_named(const linen_module *target, lx_remat_policy policy, const char *name, linen_module **out) {
    const char *fn = name ? "linen_remat_named" : "linen_remat";
    if (!out) return lx_null_out(fn);
    *out = NULL;
    if (!target) return lx_null_input("%s: target is NULL", fn);
    if (target->type->flags & LINEN_TYPE_FUNCTION)
        return lx_fail(LX_ERR_UNSUPPORTED, "remat: %s is a function, not a Module", target->type->name);
    if (policy != LX_REMAT_NOTHING_SAVEABLE && policy != LX_REMAT_DOTS_SAVEABLE)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "remat: unknown policy %d", (int)policy);
    remat_holder *h = calloc(1, sizeof *h);
    if (!h) return oom();
    h->refcount = 1;
    h->policy = policy;
    const char *tn = target->type->name ? target->type->name : "Module";
    h->name = malloc(strlen("Checkpoint") + strlen(tn) + 1);
    if (!h->name) {
        free(h);
        return oom();
    }
    sprintf(h->name, "Checkpoint%s", tn);
    h->target = linen_module_retain((linen_module *)target);
    h->type.name = h->name;
    h->type.config_size = sizeof(remat_config);
    h->type.config_free = remat_config_free;
    h->type.config_copy = remat_config_copy;
    h->type.dispatch = remat_dispatch;
    linen_module *m = NULL;
    lx_status st = linen_module_new_named(&h->type, NULL, name, &m);
    if (st != LX_OK) {
        holder_release(h);
        return st;
    }
    ((remat_config *)m->config)->h = h;
    *out = m;
    return LX_OK;
}

lx_status linen_remat(const linen_module *target, lx_remat_policy policy, linen_module **out) {
    return linen_remat_named(target, policy, NULL, out);
}
