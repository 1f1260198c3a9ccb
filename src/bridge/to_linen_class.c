/* to_linen_class: a Linen type per NNX class with partial arguments (flax/nnx/bridge/wrappers.py,
 * MaxText's nnx_wrappers).
 *
 * bridge_to_linen_class(base, partial_kwargs, ...) makes a new linen_type named <Base>ToLinen
 * (MaxText's naming; Flax's is ToLinenPartial), so compact children are LinearToLinen_0. It is
 * bridge_ToLinen (to_linen.c) with another name and another bind hook: its modules carry
 * the same tl_config and run exactly as ToLinen modules do. The bind hook merges the constructor
 * arguments (partial_kwargs < kwargs= < keywords; positionals replace the partial's) and reads
 * the special keywords kwargs=, nnx_class, skip_rng and metadata_fn, whose overrides may switch
 * base values off (Flax's `x or base` cannot).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "to_linen_internal.h"

#define TL_CLASS_MAGIC 0x746c636cu

typedef struct tl_class {
    linen_type type; /* first: modules point at it */
    uint32_t magic;
    char *name;
    const nnx_type *base;
    lx_call partial; /* owned */
    bridge_metadata_fn metadata_fn;
    void *user;
    bool skip_rng;
} tl_class;

/* <Base>ToLinen(*args, kwargs=None, nnx_class=None, skip_rng=None, metadata_fn=<base>, name=...,
 * **ctor_kwargs). */
static lx_status class_bind(const linen_type *type, void *p, const lx_call *c) {
    const tl_class *cls = (const tl_class *)type;
    tl_config *cfg = p;
    char owner[160];
    snprintf(owner, sizeof owner, "%s.__init__()", cls->name);
    LX_TRY(lx_call_check_(owner, c));
    tl_config tmp = {0};
    tmp.nnx = cls->base;
    tmp.skip_rng = cls->skip_rng;
    tmp.metadata_fn = cls->metadata_fn;
    tmp.metadata_user = cls->user;
    const lx_call *kwargs_param = NULL;
    lx_kwarg *rest = c->nkwargs ? malloc(sizeof *rest * (size_t)c->nkwargs) : NULL;
    if (c->nkwargs && !rest) return tl_oom();
    int nrest = 0;
    lx_status st = LX_OK;
    for (int i = 0; i < c->nkwargs && st == LX_OK; i++) {
        const char *k = c->kwargs[i].name;
        const lx_value *v = &c->kwargs[i].value;
        if (strcmp(k, "skip_rng") == 0) {
            if (v->kind != LX_V_NONE) st = tl_read_bool(owner, k, v, &tmp.skip_rng);
        } else if (strcmp(k, "metadata_fn") == 0) {
            st = tl_read_metadata(owner, v, &tmp);
        } else if (strcmp(k, "nnx_class") == 0) {
            if (tl_is_ptr(v, "nnx_type")) tmp.nnx = v->u.ptr.p;
            else if (v->kind != LX_V_NONE)
                st = lx_fail(LX_ERR_TYPE, "%s: argument 'nnx_class' must be an NNX type, got %s", owner, lx_kind_name(v->kind));
        } else if (strcmp(k, "kwargs") == 0) {
            if (tl_is_ptr(v, "lx_call")) {
                kwargs_param = v->u.ptr.p; /* tl_is_ptr: not NULL */
                st = lx_call_check_(owner, kwargs_param);
            } else if (v->kind != LX_V_NONE)
                st = lx_fail(LX_ERR_TYPE, "%s: argument 'kwargs' must be a call record, got %s", owner, lx_kind_name(v->kind));
        } else {
            rest[nrest++] = c->kwargs[i];
        }
    }
    /* partial_kwargs < kwargs= < keywords; positionals replace the partial's positionals. */
    lx_call a = LX_NO_CALL, b = LX_NO_CALL;
    if (st == LX_OK)
        st = lx_call_with_kwargs(&cls->partial, kwargs_param ? kwargs_param->nkwargs : 0,
                                 kwargs_param ? kwargs_param->kwargs : NULL, &a);
    if (st == LX_OK) st = lx_call_with_kwargs(&a, nrest, rest, &b);
    if (st == LX_OK) {
        const lx_call *pos = c->nargs ? c : kwargs_param && kwargs_param->nargs ? kwargs_param : &b;
        lx_call merged = {pos->nargs, pos->args, b.nkwargs, b.kwargs};
        st = lx_call_dup(&merged, &tmp.ctor);
    }
    lx_call_free(&a);
    lx_call_free(&b);
    free(rest);
    if (st == LX_OK) {
        tmp.state = tl_state_new();
        if (!tmp.state) {
            lx_call_free(&tmp.ctor);
            st = tl_oom();
        }
    }
    if (st == LX_OK) *cfg = tmp;
    return st;
}

lx_status bridge_to_linen_class(const nnx_type *base, const lx_call *partial_kwargs, bridge_metadata_fn base_metadata_fn,
                                void *user, bool base_skip_rng, linen_type **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "to_linen_class: out is NULL");
    *out = NULL;
    if (!base) return lx_fail(LX_ERR_INVALID_ARGUMENT, "to_linen_class: base_nnx_class is NULL");
    LX_TRY(lx_call_check_("to_linen_class", partial_kwargs));
    tl_class *cls = calloc(1, sizeof *cls);
    if (!cls) return tl_oom();
    const char *bn = base->name ? base->name : "Module";
    size_t n = strlen(bn) + sizeof "ToLinen";
    cls->name = malloc(n);
    lx_call none = LX_NO_CALL;
    lx_status st = cls->name ? lx_call_dup(partial_kwargs ? partial_kwargs : &none, &cls->partial) : tl_oom();
    if (st != LX_OK) {
        free(cls->name);
        free(cls);
        return st;
    }
    snprintf(cls->name, n, "%sToLinen", bn);
    cls->type = bridge_ToLinen;
    cls->type.name = cls->name;
    cls->type.bind = class_bind;
    cls->magic = TL_CLASS_MAGIC;
    cls->base = base;
    cls->metadata_fn = base_metadata_fn;
    cls->user = user;
    cls->skip_rng = base_skip_rng;
    *out = &cls->type;
    return LX_OK;
}

void bridge_to_linen_class_free(linen_type *t) {
    if (!t) return;
    tl_class *cls = (tl_class *)t;
    if (cls->magic != TL_CLASS_MAGIC) return;
    cls->magic = 0;
    lx_call_free(&cls->partial);
    free(cls->name);
    free(cls);
}
