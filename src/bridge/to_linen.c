/* ToLinen, to_linen, linen_rngs_dict: an NNX module inside a Linen model
 * (flax/nnx/bridge/wrappers.py, MaxText's nnx_wrappers; spec/flax-bridge.md §1.6-1.8).
 *
 * This file is the ToLinen Linen type: its config (the NNX class, the constructor call,
 * skip_rng, metadata_fn), construction (bridge_to_linen, BRIDGE_TO_LINEN, bridge_ToLinen's
 * bind, getattr and dispatch hooks), method resolution (nnx_method), linen_rngs_dict, and the
 * call. Init builds the NNX module for real, runs the method and stores the state. Apply never
 * builds one for real: it builds the module with abstract arrays (nnx_eval_shape), keeps it as
 * the module's cached instance, and each apply binds the caller's arrays into it, runs the
 * method, writes back what changed and unbinds (to_linen_instance.c). A module that keeps RNG
 * streams is rebuilt abstractly on each apply so its stream keys derive from that apply's
 * make_rng keys, as Flax's constructor would derive them. Released modules hand their cache to
 * a shared pool (to_linen_pool.c); to_linen_class types are in to_linen_class.c.
 */
#include "linnx/to_linen.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/signature.h"
#include "to_linen_internal.h"

/* ------------------------------------------------------------------ config */

static void tl_config_release(void *p) {
    tl_config *c = p;
    tl_pool_donate(c);
    lx_call_free(&c->ctor);
    tl_state_free(c->state);
    c->state = NULL;
}

/* A copied config (clone) holds the source's constructor call and cache: it gets its own copy
 * of the call and an empty cache (clones start empty, to_linen.h). */
static lx_status tl_config_retain(void *p) {
    tl_config *d = p;
    lx_call src = d->ctor;
    d->ctor = LX_NO_CALL;
    d->state = tl_state_new();
    if (!d->state) return tl_oom();
    lx_status st = lx_call_dup(&src, &d->ctor);
    if (st != LX_OK) {
        tl_state_free(d->state);
        d->state = NULL;
        d->ctor = LX_NO_CALL;
    }
    return st;
}

/* ------------------------------------------------------------------ linen_rngs_dict */

lx_status bridge_linen_rngs_dict(linen_scope *s, bool add_default, int cap, nnx_stream_spec *out, int *n) {
    if (!s) s = linen_current_scope();
    if (!s) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_rngs_dict() must be called inside a Linen module.");
    if (!n) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_rngs_dict: n is NULL");
    if (cap > 0 && !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_rngs_dict: out is NULL");
    const char *names[TL_MAX_STREAMS];
    int k = linen_rng_names(s, names, TL_MAX_STREAMS);
    if (k > TL_MAX_STREAMS) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_rngs_dict: more than %d rng streams", TL_MAX_STREAMS);
    bool has_default = false;
    for (int i = 0; i < k; i++) has_default |= strcmp(names[i], "default") == 0;
    int total = k + (add_default && !has_default ? 1 : 0);
    if (total > cap)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_rngs_dict: %d streams do not fit in %d", total, cap);
    for (int i = 0; i < k; i++) {
        lx_key key;
        LX_TRY(linen_make_rng(s, names[i], &key));
        out[i] = (nnx_stream_spec){names[i], true, 0, key};
    }
    if (total > k) out[k] = (nnx_stream_spec){"default", false, 0, {{0, 0}}};
    *n = total;
    return LX_OK;
}

lx_status bridge_linen_rngs(linen_scope *s, bool add_default, nnx_rngs **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_rngs: out is NULL");
    *out = NULL;
    nnx_stream_spec specs[TL_MAX_STREAMS + 1];
    int n = 0;
    LX_TRY(bridge_linen_rngs_dict(s, add_default, TL_MAX_STREAMS + 1, specs, &n));
    return nnx_rngs_new(n, specs, out);
}

/* ------------------------------------------------------------------ method resolution */

typedef struct tl_method {
    const char *name;  /* by name (also for dispatch types) */
    nnx_method_fn fn;  /* resolved function, or NULL to go through nnx_call by name */
    const nnx_method *entry; /* a method-table entry given as a function (array_fn only) */
    const char *sig;   /* the method's Python signature when the type declares one (method_sigs) */
} tl_method;

/* The declared signature of method-table entry `m` of `t` (NULL: none, or not one of t's). */
static const char *method_sig(const nnx_type *t, const nnx_method *m) {
    if (!m || !t->method_sigs || !t->methods || m < t->methods || m >= t->methods + t->nmethods) return NULL;
    return t->method_sigs[m - t->methods];
}

static const char *field_pytype(lx_field_kind k) {
    switch (k) {
    case LX_FIELD_INT: return "<class 'int'>";
    case LX_FIELD_FLOAT: return "<class 'float'>";
    case LX_FIELD_BOOL: return "<class 'bool'>";
    case LX_FIELD_STR: return "<class 'str'>";
    case LX_FIELD_INTS:
    case LX_FIELD_STRS: return "<class 'tuple'>";
    default: return "<class 'object'>";
    }
}

/* Flax's _get_module_method: None -> __call__, a name looked up on the class, a function used
 * as is; anything else is a TypeError. */
static lx_status resolve_method(const nnx_type *t, const lx_value *spec, tl_method *out) {
    out->name = "__call__";
    out->fn = NULL;
    out->entry = NULL;
    out->sig = NULL;
    if (!spec || spec->kind == LX_V_NONE) {
        const nnx_method *m = nnx_find_method(t, "__call__");
        if (m) out->fn = m->fn, out->sig = method_sig(t, m);
        else if (!t->dispatch)
            return lx_fail(LX_ERR_NOT_FOUND, "type object '%s' has no attribute '__call__'", t->name);
        return LX_OK;
    }
    if (spec->kind == LX_V_STR && spec->u.s) {
        out->name = spec->u.s;
        const nnx_method *m = nnx_find_method(t, spec->u.s);
        if (m) {
            out->fn = m->fn;
            out->sig = method_sig(t, m);
            return LX_OK;
        }
        const lx_field *f = t->config ? lx_config_find(t->config, t->nconfig, spec->u.s) : NULL;
        if (f)
            return lx_fail(LX_ERR_TYPE, "'%s.%s' must be a callable, got %s.", t->name, spec->u.s, field_pytype(f->kind));
        if (t->dispatch) return LX_OK; /* resolved by the module at call time */
        return lx_fail(LX_ERR_NOT_FOUND, "type object '%s' has no attribute '%s'", t->name, spec->u.s);
    }
    if (tl_is_ptr(spec, "nnx_method")) {
        const nnx_method *m = spec->u.ptr.p;
        if (!m->fn && !m->array_fn)
            return lx_fail(LX_ERR_TYPE, "'%s' must be a callable, got <class 'NoneType'>.", m->name ? m->name : "?");
        out->name = m->name ? m->name : "<function>";
        out->fn = m->fn;
        if (!m->fn) out->entry = m;
        out->sig = method_sig(t, m);
        return LX_OK;
    }
    char buf[128];
    return lx_fail(LX_ERR_TYPE, "'%s' must be a callable, got %s.", lx_value_str(spec, buf, sizeof buf), lx_value_pytype(spec));
}

static lx_status run_method(nnx_module *m, const tl_method *meth, const lx_call *call, lx_value *out) {
    *out = lx_none();
    if (meth->fn) return nnx_call_fn(m, meth->fn, call, out); /* in m's module frame */
    if (meth->entry) return nnx_call_method(m, meth->entry, call, out);
    return nnx_call(m, meth->name, call, out);
}

/* ------------------------------------------------------------------ init: module state -> Linen */

/* A Variable as a Linen leaf: the raw array for metadata_fn=None, else metadata_fn (default
 * to_linen_var). Init stores these; an apply's write-back (to_linen_instance.c) too. */
lx_status tl_to_leaf(const tl_config *cfg, const lx_variable *v, lx_value *out) {
    if (cfg->metadata_none) {
        *out = lx_array_v(lx_retain(lx_variable_get_value(v)));
        return LX_OK;
    }
    if (cfg->metadata_fn) return cfg->metadata_fn(v, cfg->metadata_user, out);
    return bridge_to_linen_var(v, out);
}

/* Store (path, Variable) items as Linen collections: per collection, a tree of leaves made by
 * metadata_fn, put once per top-level attribute (Flax's _update_variables). Collections that
 * are not mutable are skipped (init). */
static lx_status store_all(linen_scope *s, const tl_config *cfg, const lx_flat *items) {
    const char *cols[64];
    lx_flat per[64];
    int ncols = 0;
    lx_status st = LX_OK;
    for (size_t i = 0; i < items->len && st == LX_OK; i++) {
        const lx_variable *v = items->items[i].value.u.var;
        const char *col;
        st = tl_collection_of(v, &col);
        if (st != LX_OK) break;
        if (!linen_is_mutable_collection(s, col)) continue;
        int c;
        for (c = 0; c < ncols; c++)
            if (strcmp(cols[c], col) == 0) break;
        if (c == ncols) {
            if (ncols == 64) {
                st = lx_fail(LX_ERR_UNSUPPORTED, "ToLinen: more than 64 collections");
                break;
            }
            cols[ncols] = col;
            per[ncols] = (lx_flat){0};
            ncols++;
        }
        lx_value leaf = lx_none();
        st = tl_to_leaf(cfg, v, &leaf);
        if (st == LX_OK) st = lx_flat_append(&per[c], items->items[i].path, leaf);
        lx_value_free(&leaf);
    }
    for (int c = 0; c < ncols; c++) {
        lx_tree *t = NULL;
        if (st == LX_OK) st = lx_tree_unflatten(&per[c], &t);
        for (size_t k = 0; st == LX_OK && k < lx_tree_len(t); k++)
            st = linen_put_variable(s, cols[c], lx_tree_key(t, k), lx_tree_at(t, k));
        lx_tree_release(t);
        lx_flat_free(&per[c]);
    }
    return st;
}

/* Init: the module built for real (its Rngs from one make_rng per Linen stream), the method run,
 * the state stored after it. */
static lx_status tl_init(linen_scope *s, const tl_config *cfg, const tl_method *meth, const lx_call *call,
                         lx_value *out) {
    nnx_rngs *rngs = NULL;
    if (!cfg->skip_rng) LX_TRY(bridge_linen_rngs(s, false, &rngs));
    nnx_module *m = NULL;
    lx_status st = nnx_module_new(cfg->nnx, &cfg->ctor, rngs, &m);
    nnx_rngs_release(rngs);
    if (st != LX_OK) return st;
    /* The constructor's Variables keep their constructor values (copies share the arrays); the
     * method may add Variables, which are kept with their values after the call. */
    lx_tree *state = NULL;
    lx_flat pre = {0}, post = {0}, all = {0};
    st = nnx_state(m, 1, &NNX_NOT_RNG_STATE, &state);
    if (st == LX_OK) st = lx_tree_flatten(state, &pre);
    lx_tree_release(state);
    state = NULL;
    for (size_t i = 0; i < pre.len && st == LX_OK; i++) {
        lx_variable *c = NULL;
        st = lx_variable_copy(pre.items[i].value.u.var, &c);
        if (st == LX_OK) st = lx_flat_append(&all, pre.items[i].path, lx_var_v(c));
        lx_variable_release(c);
    }
    if (st == LX_OK) st = run_method(m, meth, call, out);
    if (st == LX_OK) st = nnx_state(m, 1, &NNX_NOT_RNG_STATE, &state);
    if (st == LX_OK) st = lx_tree_flatten(state, &post);
    lx_tree_release(state);
    for (size_t i = 0; i < post.len && st == LX_OK; i++) {
        bool seen = false;
        for (size_t k = 0; k < pre.len && !seen; k++) seen = strcmp(pre.items[k].path, post.items[i].path) == 0;
        if (!seen) st = lx_flat_append(&all, post.items[i].path, post.items[i].value);
    }
    if (st == LX_OK) st = store_all(s, cfg, &all);
    if (st != LX_OK) lx_value_free(out);
    lx_flat_free(&pre);
    lx_flat_free(&post);
    lx_flat_free(&all);
    nnx_module_release(m);
    return st;
}

/* ------------------------------------------------------------------ apply */

static bool names_match(const tl_state *st, const char *const *names, int n) {
    if (st->nnames != n) return false;
    for (int i = 0; i < n; i++)
        if (strcmp(st->names[i], names[i]) != 0) return false;
    return true;
}

static lx_status build_abstract(linen_scope *s, const tl_config *cfg, nnx_module **out) {
    nnx_rngs *rngs = NULL;
    if (!cfg->skip_rng) LX_TRY(bridge_linen_rngs(s, true, &rngs));
    lx_status st = nnx_eval_shape(cfg->nnx, &cfg->ctor, rngs, out);
    nnx_rngs_release(rngs);
    return st;
}

/* Apply: the cached instance (adopted from the pool, or built abstractly and kept unless the
 * module keeps RNG streams or the cache is busy), bound, the method run, changes written back,
 * unbound. A structural change or a failure drops the cache. */
static lx_status tl_apply(linen_scope *s, const tl_config *cfg, const tl_method *meth, const lx_call *call,
                          lx_value *out) {
    tl_state *state = cfg->state;
    bool own = state && !atomic_flag_test_and_set(&state->busy);
    const char *names[TL_MAX_STREAMS];
    int nnames = cfg->skip_rng ? 0 : linen_rng_names(s, names, TL_MAX_STREAMS);
    if (nnames > TL_MAX_STREAMS) nnames = TL_MAX_STREAMS + 1; /* never matches: no cache */

    if (own && !state->cached && !state->pool_checked) tl_pool_adopt(cfg, state);
    tl_inst tmp, *in = NULL;
    lx_status st = LX_OK;
    if (own && state->cached && names_match(state, names, nnames)) {
        in = &state->cache;
    } else {
        nnx_module *m = NULL;
        st = build_abstract(s, cfg, &m);
        if (st == LX_OK) st = tl_inst_make(m, &tmp);
        else nnx_module_release(m);
        if (st == LX_OK) {
            in = &tmp;
            if (own && !tmp.has_rng && nnames <= TL_MAX_STREAMS) {
                /* Keep it, keyed by the stream names it was built under. */
                tl_state_drop_cache(state);
                bool ok = true;
                for (int i = 0; i < nnames && ok; i++) {
                    state->names[i] = lx_strdup(names[i]);
                    ok = state->names[i] != NULL;
                    state->nnames = ok ? i + 1 : i;
                }
                if (ok) {
                    state->cache = tmp;
                    state->cached = true;
                    in = &state->cache;
                } else {
                    tl_state_drop_cache(state);
                }
            }
        }
    }
    if (st != LX_OK) {
        if (own) atomic_flag_clear(&state->busy);
        return lx_fail_context(st, "ToLinen(%s): ", tl_type_label(cfg));
    }
    bool keep = in != &tmp;

    lx_tree *vars = NULL;
    tl_extra *ex = NULL;
    size_t nex = 0;
    bool inserted = false;
    st = linen_variables(s, &vars);
    if (st == LX_OK && !tl_inst_bind_fast(in, vars))
        st = tl_inst_bind_slow(s, cfg, own ? state : NULL, in, vars, &ex, &nex, &inserted);
    uint64_t epoch = nnx_graph_epoch();
    if (st == LX_OK) st = run_method(in->m, meth, call, out);
    tl_change *ch = NULL;
    size_t nch = 0;
    lx_flat walk = {0};
    bool same = !inserted;
    if (st == LX_OK) {
        bool s2 = false;
        st = tl_inst_collect_changes(in, epoch, ex, nex, &ch, &nch, &walk, &s2);
        same = same && s2;
    }
    if (st == LX_OK) st = tl_write_changes(s, cfg, ch, nch);
    if (st != LX_OK) lx_value_free(out);
    free(ch);
    lx_flat_free(&walk);
    for (size_t i = 0; i < nex; i++) lx_variable_release(ex[i].var);
    free(ex);
    lx_tree_release(vars);
    tl_inst_unbind(in);
    if (keep && (!same || st != LX_OK)) tl_state_drop_cache(state); /* rebuilt cleanly next time */
    if (!keep) tl_inst_free(&tmp);
    if (own) atomic_flag_clear(&state->busy);
    return st;
}

/* ------------------------------------------------------------------ the call */

static lx_status tl_run(linen_scope *s, const lx_value *method_spec, const lx_call *call, lx_value *out) {
    const tl_config *cfg = linen_config(s);
    *out = lx_none();
    tl_method meth;
    LX_TRY(resolve_method(cfg->nnx, method_spec, &meth));
    /* Flax calls method(module, *args, **kwargs): Python refuses arguments that do not bind, as a
     * direct nnx_call does, before anything is built, drawn or bound. */
    if (meth.sig) LX_TRY(lx_call_check_sig(cfg->nnx->name, meth.name, meth.sig, call));
    if (linen_is_initializing(s)) return tl_init(s, cfg, &meth, call, out);
    return tl_apply(s, cfg, &meth, call, out);
}

/* __call__(*args, nnx_method=None, **kwargs): nnx_method is taken out of the call. */
static lx_status tl_call(linen_scope *s, const lx_call *call, lx_value *out) {
    lx_call none = LX_NO_CALL;
    if (!call) call = &none;
    int idx = -1;
    for (int i = 0; i < call->nkwargs; i++)
        if (call->kwargs[i].name && strcmp(call->kwargs[i].name, "nnx_method") == 0) idx = i;
    if (idx < 0) return tl_run(s, NULL, call, out);
    lx_kwarg stack[8], *kw = call->nkwargs - 1 <= 8 ? stack : malloc(sizeof *kw * (size_t)call->nkwargs);
    if (!kw) return tl_oom();
    int n = 0;
    for (int i = 0; i < call->nkwargs; i++)
        if (i != idx) kw[n++] = call->kwargs[i];
    lx_call c = {call->nargs, call->args, n, kw};
    lx_status st = tl_run(s, &call->kwargs[idx].value, &c, out);
    if (kw != stack) free(kw);
    return st;
}

static lx_status tl_nnx_method_twice(void) {
    return lx_fail(LX_ERR_TYPE, "ToLinen.__call__() got multiple values for argument 'nnx_method'");
}

/* self.embedding.attend(z) from a parent: any method of the NNX type. */
static lx_status tl_dispatch(linen_scope *s, const char *method, const lx_call *call, lx_value *out) {
    const tl_config *cfg = linen_config(s);
    if (!nnx_find_method(cfg->nnx, method) && !cfg->nnx->dispatch) return LX_ERR_NOT_FOUND;
    if (call && lx_call_kwarg(call, "nnx_method")) return tl_nnx_method_twice();
    lx_value spec = lx_str_v(method);
    return tl_run(s, &spec, call, out);
}

/* m.features: the constructor's keyword arguments, then the NNX class's methods. */
static lx_status tl_getattr(const linen_module *m, const char *name, lx_value *out) {
    const tl_config *cfg = linen_module_config(m);
    if (strcmp(name, "skip_rng") == 0) {
        *out = lx_bool_v(cfg->skip_rng);
        return LX_OK;
    }
    if (strcmp(name, "nnx_class") == 0) {
        *out = lx_ptr_v("nnx_type", (void *)cfg->nnx);
        return LX_OK;
    }
    const lx_value *v = lx_call_kwarg(&cfg->ctor, name);
    if (v) {
        *out = *v;
        return LX_OK;
    }
    const nnx_method *meth = nnx_find_method(cfg->nnx, name);
    if (meth) {
        *out = lx_ptr_v("nnx_method", (void *)meth);
        return LX_OK;
    }
    return LX_ERR_NOT_FOUND;
}

static const linen_method TL_METHODS[] = {LINEN_METHOD("__call__", tl_call)};

/* ------------------------------------------------------------------ construction */

/* Read metadata_fn=...: None -> raw values, a bridge_metadata -> that function. */
lx_status tl_read_metadata(const char *owner, const lx_value *v, tl_config *cfg) {
    if (v->kind == LX_V_NONE) {
        cfg->metadata_none = true;
        cfg->metadata_fn = NULL;
        cfg->metadata_user = NULL;
        return LX_OK;
    }
    if (tl_is_ptr(v, "bridge_metadata")) {
        const bridge_metadata *bm = v->u.ptr.p;
        cfg->metadata_none = bm->fn == NULL;
        cfg->metadata_fn = bm->fn;
        cfg->metadata_user = bm->user;
        return LX_OK;
    }
    return lx_fail(LX_ERR_TYPE, "%s: argument 'metadata_fn' must be None or a bridge_metadata, got %s", owner,
                   lx_kind_name(v->kind));
}

lx_status tl_read_bool(const char *owner, const char *name, const lx_value *v, bool *out) {
    if (v->kind == LX_V_BOOL) *out = v->u.b;
    else if (v->kind == LX_V_INT) *out = v->u.i != 0;
    else return lx_fail(LX_ERR_TYPE, "%s: argument '%s' must be a bool, got %s", owner, name, lx_kind_name(v->kind));
    return LX_OK;
}

/* ToLinen(nnx_class, ctor=None, *, skip_rng=False, metadata_fn=to_linen_var). */
static lx_status tl_bind(const linen_type *type, void *p, const lx_call *c) {
    (void)type;
    tl_config *cfg = p;
    const char *owner = "ToLinen.__init__()";
    const lx_value *cls = NULL, *ctor = NULL;
    LX_TRY(lx_call_check_(owner, c));
    if (c->nargs > 2) return lx_fail(LX_ERR_TYPE, "%s takes 3 positional arguments but %d were given", owner, c->nargs + 1);
    if (c->nargs > 0) cls = &c->args[0];
    if (c->nargs > 1) ctor = &c->args[1];
    bool skip = false;
    tl_config tmp = {0};
    for (int i = 0; i < c->nkwargs; i++) {
        const char *k = c->kwargs[i].name;
        const lx_value *v = &c->kwargs[i].value;
        if (strcmp(k, "nnx_class") == 0 || strcmp(k, "ctor") == 0) {
            const lx_value **slot = k[0] == 'n' ? &cls : &ctor;
            if (*slot) return lx_fail(LX_ERR_TYPE, "%s got multiple values for argument '%s'", owner, k);
            *slot = v;
        } else if (strcmp(k, "skip_rng") == 0) {
            LX_TRY(tl_read_bool(owner, k, v, &skip));
        } else if (strcmp(k, "metadata_fn") == 0) {
            LX_TRY(tl_read_metadata(owner, v, &tmp));
        } else {
            return lx_fail(LX_ERR_TYPE, "%s got an unexpected keyword argument '%s'", owner, k);
        }
    }
    if (!cls) return lx_fail(LX_ERR_TYPE, "%s missing 1 required positional argument: 'nnx_class'", owner);
    if (!tl_is_ptr(cls, "nnx_type"))
        return lx_fail(LX_ERR_TYPE, "%s: argument 'nnx_class' must be an NNX type (LX_V_PTR \"nnx_type\"), got %s", owner,
                       lx_kind_name(cls->kind));
    if (ctor && ctor->kind != LX_V_NONE && !tl_is_ptr(ctor, "lx_call"))
        return lx_fail(LX_ERR_TYPE, "%s: argument 'ctor' must be a call record (LX_V_PTR \"lx_call\"), got %s", owner,
                       lx_kind_name(ctor->kind));
    if (ctor && ctor->kind != LX_V_NONE) LX_TRY(lx_call_check_(owner, ctor->u.ptr.p));
    tmp.nnx = cls->u.ptr.p;
    tmp.skip_rng = skip;
    tmp.state = tl_state_new();
    if (!tmp.state) return tl_oom();
    lx_call none = LX_NO_CALL;
    lx_status st = lx_call_dup(ctor && ctor->kind != LX_V_NONE ? (const lx_call *)ctor->u.ptr.p : &none, &tmp.ctor);
    if (st != LX_OK) {
        tl_state_free(tmp.state);
        return st;
    }
    *cfg = tmp;
    return LX_OK;
}

const linen_type bridge_ToLinen = {
    .name = "ToLinen",
    .config_size = sizeof(tl_config),
    .methods = TL_METHODS,
    .nmethods = LX_COUNT(TL_METHODS),
    .config_retain = tl_config_retain,
    .config_release = tl_config_release,
    .dispatch = tl_dispatch,
    .getattr = tl_getattr,
    .bind = tl_bind,
};

static bool is_to_linen(const linen_module *m) { return m && linen_module_type(m)->dispatch == tl_dispatch; }

lx_status tl_check_call_(const linen_module *lm, const char *method, const lx_call *call, bool *missing) {
    *missing = false;
    if (!is_to_linen(lm)) return LX_OK;
    const tl_config *cfg = linen_module_config(lm);
    lx_call none = LX_NO_CALL;
    if (!call) call = &none;
    tl_method meth;
    if (strcmp(method, "__call__") == 0) { /* tl_call: nnx_method names the NNX method */
        const lx_value *spec = lx_call_kwarg(call, "nnx_method");
        LX_TRY(resolve_method(cfg->nnx, spec, &meth));
        if (!meth.sig) return LX_OK;
        if (!spec) return lx_call_check_sig(cfg->nnx->name, meth.name, meth.sig, call);
        static const char *const NNX_METHOD[] = {"nnx_method"};
        lx_call rest = LX_NO_CALL;
        LX_TRY(lx_call_without(call, 1, NNX_METHOD, &rest));
        lx_status s = lx_call_check_sig(cfg->nnx->name, meth.name, meth.sig, &rest);
        lx_call_free(&rest);
        return s;
    }
    /* tl_dispatch: a method of the NNX type by name */
    if (!nnx_find_method(cfg->nnx, method)) {
        *missing = !cfg->nnx->dispatch;
        return LX_OK;
    }
    if (lx_call_kwarg(call, "nnx_method")) return tl_nnx_method_twice();
    lx_value spec = lx_str_v(method);
    LX_TRY(resolve_method(cfg->nnx, &spec, &meth));
    return meth.sig ? lx_call_check_sig(cfg->nnx->name, meth.name, meth.sig, call) : LX_OK;
}

const nnx_type *bridge_to_linen_nnx_type(const linen_module *m) {
    return is_to_linen(m) ? ((const tl_config *)linen_module_config(m))->nnx : NULL;
}

const lx_call *bridge_to_linen_ctor(const linen_module *m) {
    return is_to_linen(m) ? &((const tl_config *)linen_module_config(m))->ctor : NULL;
}

lx_status bridge_to_linen(const nnx_type *t, const lx_call *ctor, const bridge_to_linen_opts *opts, linen_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "to_linen: out is NULL");
    *out = NULL;
    if (!t) return lx_fail(LX_ERR_INVALID_ARGUMENT, "to_linen: nnx_class is NULL");
    LX_TRY(lx_call_check_("to_linen", ctor));
    static const bridge_to_linen_opts defaults = {0};
    if (!opts) opts = &defaults;
    lx_call none = LX_NO_CALL;
    bridge_metadata md = {opts->metadata_fn ? opts->metadata_fn : bridge_metadata_to_linen_var, opts->metadata_user};
    lx_kwarg kw[] = {
        LX_KW("skip_rng", lx_bool_v(opts->skip_rng)),
        LX_KW("metadata_fn", opts->metadata_none ? lx_none() : bridge_metadata_v(&md)),
    };
    lx_value args[] = {lx_ptr_v("nnx_type", (void *)t), lx_ptr_v("lx_call", (void *)(ctor ? ctor : &none))};
    lx_call c = {2, args, 2, kw};
    return linen_module_new_named(&bridge_ToLinen, &c, opts->name, out);
}

linen_module *bridge_to_linen_kw(const nnx_type *t, int nkwargs, const lx_kwarg *kwargs) {
    lx_call c = {0, NULL, nkwargs, kwargs};
    linen_module *m = NULL;
    return bridge_to_linen(t, &c, NULL, &m) == LX_OK ? m : NULL;
}
