/* ToNNX: a Linen module as an NNX module (flax.nnx.bridge.wrappers.ToNNX, MaxText's copy).
 *
 * The Linen module lives in the static config (field `to_nnx__module`, a VALUE holding the
 * module pointer); Linen modules are counted values (value.h), so every copy of the config (a
 * graphdef, a merge, a clone) holds a reference. The Linen variables live as dynamic attributes, one store with the Linen
 * trees built from them for each call (arrays are shared, never copied). */
#include <stdlib.h>
#include <string.h>

#include "linnx/bridge.h"
#include "linnx/to_nnx.h"

#define LINEN_TAG "linen_module"

typedef struct to_nnx_config {
    lx_value to_nnx__module; /* LX_V_PTR "linen_module" (a counted value: retained) */
} to_nnx_config;

typedef struct to_nnx {
    nnx_module base;
    to_nnx_config cfg;
    nnx_module *rngs; /* to_nnx__rngs: an Rngs, or NULL */
} to_nnx;

static linen_module *module_of_config(const void *cfg) {
    const lx_value *v = &((const to_nnx_config *)cfg)->to_nnx__module;
    if (v->kind != LX_V_PTR || !v->u.ptr.p || !v->u.ptr.tag || strcmp(v->u.ptr.tag, LINEN_TAG) != 0)
        return NULL;
    return (linen_module *)v->u.ptr.p;
}

bool bridge_is_to_nnx(const nnx_module *m) { return m && m->type == &BRIDGE_TO_NNX_TYPE; }

const linen_module *bridge_to_nnx_linen_module(const nnx_module *m) {
    return bridge_is_to_nnx(m) ? module_of_config(&((const to_nnx *)m)->cfg) : NULL;
}

nnx_rngs *bridge_to_nnx_rngs(const nnx_module *m) {
    return bridge_is_to_nnx(m) ? (nnx_rngs *)((const to_nnx *)m)->rngs : NULL;
}

linen_scope *bridge_current_linen_module(void) { return linen_current_scope(); }

static lx_status to_nnx_init(nnx_module *m, const lx_call *call, nnx_rngs *rngs) {
    to_nnx *self = (to_nnx *)m;
    if (!module_of_config(&self->cfg)) {
        char buf[64];
        return lx_fail(LX_ERR_TYPE, "ToNNX.__init__(): argument 'to_nnx__module' must be a Linen module, got %s",
                       lx_value_str(&self->cfg.to_nnx__module, buf, sizeof buf));
    }
    /* Flax 0.12: an Rngs given to ToNNX is forked, so the wrapper owns independent streams. */
    if (rngs) LX_TRY(nnx_rngs_fork(rngs, (nnx_rngs **)&self->rngs));
    return LX_OK;
}

lx_status bridge_to_nnx_new(const linen_module *linen, nnx_rngs *rngs, const lx_key *key, nnx_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "ToNNX: out is NULL");
    *out = NULL;
    if (!linen) return lx_fail(LX_ERR_INVALID_ARGUMENT, "ToNNX: the Linen module is NULL");
    if (rngs && key)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "ToNNX: give rngs (an Rngs) or a key, not both");
    lx_kwarg kw = {"to_nnx__module", linen_module_v((linen_module *)linen)};
    lx_call c = {0, NULL, 1, &kw};
    nnx_module *m;
    LX_TRY(nnx_module_new(&BRIDGE_TO_NNX_TYPE, &c, rngs, &m));
    if (key) {
        nnx_stream_spec spec = {"params", true, 0, *key};
        lx_status s = nnx_rngs_new(1, &spec, (nnx_rngs **)&((to_nnx *)m)->rngs);
        if (s != LX_OK) {
            nnx_module_release(m);
            return s;
        }
    }
    *out = m;
    return LX_OK;
}

/* ------------------------------------------------------------------ one call */

static bool linen_has_method(const linen_module *lm, const char *name) {
    const linen_type *t = linen_module_type(lm);
    if (t->dispatch) return true; /* it decides per name (ToLinen forwards to NNX methods) */
    for (int i = 0; i < t->nmethods; i++)
        if (strcmp(t->methods[i].name, name) == 0) return true;
    return false;
}

/* The call's `mutable` keyword as a Linen mutability; *given is false when absent or None. */
static lx_status parse_mutable(const lx_value *v, linen_mutable *out, bool *given) {
    *given = false;
    if (!v || v->kind == LX_V_NONE) return LX_OK;
    *given = true;
    switch (v->kind) {
    case LX_V_BOOL: *out = v->u.b ? LINEN_MUTABLE_EVERYTHING : LINEN_IMMUTABLE; return LX_OK;
    case LX_V_STR:
        if (!v->u.s) break;
        *out = (linen_mutable){LINEN_MUTABLE_LIST, 1, &v->u.s};
        return LX_OK;
    case LX_V_STRS:
        for (int i = 0; i < v->u.strs.n; i++)
            if (!v->u.strs.v[i])
                return lx_fail(LX_ERR_TYPE, "ToNNX: mutable collection names cannot be None (entry %d)", i);
        *out = (linen_mutable){LINEN_MUTABLE_LIST, v->u.strs.n, v->u.strs.v};
        return LX_OK;
    default: break;
    }
    char buf[64];
    return lx_fail(LX_ERR_TYPE, "ToNNX: mutable must be a bool, a collection name or a tuple of names, got %s",
                   lx_value_str(v, buf, sizeof buf));
}

/* The Rngs or key a call draws from: the `rngs` keyword, else to_nnx__rngs. */
typedef struct rng_source {
    nnx_rngs *rngs;
    bool has_key;
    lx_key key;
} rng_source;

static lx_status parse_rngs(const to_nnx *self, const lx_value *v, rng_source *src) {
    memset(src, 0, sizeof *src);
    if (!v || v->kind == LX_V_NONE) {
        src->rngs = (nnx_rngs *)self->rngs;
        return LX_OK;
    }
    nnx_module *r = nnx_module_from_value(v);
    if (r && r->type == &NNX_RNGS_TYPE) {
        src->rngs = (nnx_rngs *)r;
        return LX_OK;
    }
    if (v->kind == LX_V_ARRAY && v->u.array && v->u.array->dtype == LX_U32 && v->u.array->ndim == 1 &&
        v->u.array->shape[0] == 2 && v->u.array->data) {
        src->has_key = true;
        src->key.k[0] = lx_u32(v->u.array)[0];
        src->key.k[1] = lx_u32(v->u.array)[1];
        return LX_OK;
    }
    char buf[64];
    return lx_fail(LX_ERR_TYPE, "ToNNX: rngs must be an Rngs, a key (uint32[2]) or None, got %s",
                   lx_value_str(v, buf, sizeof buf));
}

/* {stream: stream()} for every stream (a key: {params: key}), `default` renamed to `params`
 * when there is no `params` (moved to the end, as Flax's dict pop + insert does). */
static lx_status draw_rngs(const rng_source *src, linen_rng **out, int *n) {
    *out = NULL;
    *n = 0;
    if (src->has_key) {
        linen_rng *v = malloc(sizeof *v);
        if (!v) return lx_fail(LX_ERR_NO_MEMORY, "ToNNX: out of memory");
        v[0] = (linen_rng){"params", src->key};
        *out = v;
        *n = 1;
        return LX_OK;
    }
    if (!src->rngs) return LX_OK;
    int count = nnx_rngs_count(src->rngs);
    if (count == 0) return LX_OK;
    linen_rng *v = malloc((size_t)count * sizeof *v);
    if (!v) return lx_fail(LX_ERR_NO_MEMORY, "ToNNX: out of memory");
    int has_params = 0, dflt = -1;
    for (int i = 0; i < count; i++) {
        const char *name = nnx_rngs_stream_name(src->rngs, i);
        lx_status s = nnx_rngs_draw(src->rngs, name, &v[i].key);
        if (s != LX_OK) {
            free(v);
            return s;
        }
        v[i].name = name;
        if (strcmp(name, "params") == 0) has_params = 1;
        if (strcmp(name, "default") == 0) dflt = i;
    }
    if (!has_params && dflt >= 0) {
        linen_rng d = v[dflt];
        memmove(&v[dflt], &v[dflt + 1], (size_t)(count - dflt - 1) * sizeof *v);
        v[count - 1] = (linen_rng){"params", d.key};
    }
    *out = v;
    *n = count;
    return LX_OK;
}

/* The attributes that hold Linen state: everything but the wrapper's own `to_nnx__*`. */
static lx_status gather_attrs(const nnx_module *m, lx_tree **out) {
    lx_tree *t = lx_tree_new();
    if (!t) return lx_last_status();
    for (int i = 0; i < nnx_attr_count(m); i++) {
        const char *name = nnx_attr_name(m, i);
        if (strncmp(name, "to_nnx__", 8) == 0) continue;
        lx_value v;
        lx_status s = nnx_getattr(m, name, &v);
        if (s == LX_OK) s = lx_tree_set(t, name, v);
        if (s != LX_OK) {
            lx_tree_release(t);
            return s;
        }
    }
    *out = t;
    return LX_OK;
}

/* Linen's updates -> attributes: existing Variables take their new values in place, new paths
 * are inserted (nnx_update checks every path before it writes any). */
static lx_status write_back(nnx_module *m, const lx_tree *updates) {
    if (!updates || lx_tree_len(updates) == 0) return LX_OK;
    lx_tree *attrs = NULL;
    LX_TRY(bridge_linen_vars_to_nnx_attrs(updates, &attrs));
    lx_status s = lx_tree_len(attrs) ? nnx_update(m, 1, &attrs) : LX_OK;
    lx_tree_release(attrs);
    return s;
}

static lx_status to_nnx_run(nnx_module *m, const char *method, const lx_call *call, lx_value *out) {
    to_nnx *self = (to_nnx *)m;
    const linen_module *lm = module_of_config(&self->cfg);
    if (!lm) return lx_fail(LX_ERR_INTERNAL, "ToNNX: no Linen module");
    *out = lx_none();

    /* Everything that can be refused is checked before a stream is drawn. */
    linen_mutable mut = LINEN_IMMUTABLE;
    bool mut_given;
    rng_source src;
    LX_TRY(parse_mutable(lx_call_kwarg(call, "mutable"), &mut, &mut_given));
    LX_TRY(parse_rngs(self, lx_call_kwarg(call, "rngs"), &src));

    lx_call fwd = *call, owned = LX_NO_CALL;
    bool strip = lx_call_kwarg(call, "rngs") || lx_call_kwarg(call, "mutable");
    if (strip) {
        static const char *const BRIDGE_ONLY[] = {"rngs", "mutable"};
        LX_TRY(lx_call_without(call, 2, BRIDGE_ONLY, &owned));
        fwd = owned;
    }

    lx_tree *variables = NULL, *updates = NULL;
    lx_status s = LX_OK;
    if (!m->initializing) {
        lx_tree *attrs = NULL;
        s = gather_attrs(m, &attrs);
        if (s == LX_OK) s = bridge_nnx_attrs_to_linen_vars(attrs, &variables);
        lx_tree_release(attrs);
        if (s == LX_OK && !mut_given) {
            /* Inside a Linen method (Linen -> NNX -> Linen): inherit its mutability. */
            linen_scope *outer = bridge_current_linen_module();
            if (outer) mut = *linen_scope_mutable(outer);
        }
    }

    linen_rng *keys = NULL;
    int nkeys = 0;
    if (s == LX_OK) s = draw_rngs(&src, &keys, &nkeys);
    if (s == LX_OK) {
        linen_rngs rngs = {nkeys, keys};
        linen_opts opts = {0};
        opts.method = method;
        if (m->initializing) {
            /* init's default mutability (all but intermediates); `mutable` is ignored, as in Flax. */
            s = linen_init_with_output(lm, rngs, &fwd, &opts, out, &updates);
        } else {
            opts.mutable = mut;
            opts.mutable_given = true;
            s = linen_apply(lm, variables, &fwd, rngs, &opts, out,
                            mut.kind == LINEN_MUTABLE_NONE ? NULL : &updates);
        }
    }
    if (s == LX_OK) s = write_back(m, updates);
    if (s != LX_OK) lx_value_free(out);
    free(keys);
    lx_tree_release(variables);
    lx_tree_release(updates);
    if (strip) lx_call_free(&owned);
    return s;
}

static lx_status to_nnx_call(nnx_module *m, const lx_call *call, lx_value *out) {
    return to_nnx_run(m, "__call__", call, out);
}

/* model.encode(x): any method of the Linen module's type, by name. */
static lx_status to_nnx_dispatch(nnx_module *m, const char *method, const lx_call *call, lx_value *out) {
    const linen_module *lm = module_of_config(&((to_nnx *)m)->cfg);
    if (!lm || !linen_has_method(lm, method)) return LX_ERR_NOT_FOUND; /* nnx_call words the error */
    return to_nnx_run(m, method, call, out);
}

static const lx_field TO_NNX_CONFIG[] = {LX_FIELD_VALUE(to_nnx_config, to_nnx__module)};
static const nnx_field TO_NNX_FIELDS[] = {{"to_nnx__rngs", NNX_FIELD_CHILD, offsetof(to_nnx, rngs)}};
static const nnx_method TO_NNX_METHODS[] = {{"__call__", to_nnx_call}};

const nnx_type BRIDGE_TO_NNX_TYPE = {
    .name = "ToNNX",
    .size = sizeof(to_nnx),
    .fields = TO_NNX_FIELDS,
    .nfields = 1,
    .config = TO_NNX_CONFIG,
    .nconfig = 1,
    .config_offset = offsetof(to_nnx, cfg),
    .methods = TO_NNX_METHODS,
    .nmethods = 1,
    .init = to_nnx_init,
    .dispatch = to_nnx_dispatch,
};
