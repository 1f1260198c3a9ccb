/* ToNNX: a Linen module as an NNX module (flax.nnx.bridge.wrappers.ToNNX, MaxText's copy).
 *
 * The Linen module lives in the static config (field `to_nnx__module`, a VALUE holding the
 * module pointer); Linen modules are counted values (value.h), so every copy of the config (a
 * graphdef, a merge, a clone) holds a reference. The Linen variables live as dynamic attributes,
 * one store with the Linen variables tree each call applies over (arrays are shared, never
 * copied). That tree is kept between calls (the "view", below) and only rebuilt when the
 * attributes changed shape. */
#include <stdlib.h>
#include <string.h>

#include "linnx/bridge.h"
#include "linnx/to_nnx.h"
#include "../core/signature.h"
#include "to_linen_internal.h"

#define LINEN_TAG "linen_module"

typedef struct to_nnx_config {
    lx_value to_nnx__module; /* LX_V_PTR "linen_module" (a counted value: retained) */
} to_nnx_config;

/* One Variable shown in the view: the leaf at `key` of the view's map `parent`. */
typedef struct view_slot {
    lx_variable *var; /* retained, so a pointer compare never meets a reused address */
    char *full;       /* "col/Dense_0/kernel": the leaf's path in the view, owned */
    const char *path; /* the attribute path inside `full` ("Dense_0/kernel") */
    const char *key;  /* the last component of `full` */
    lx_tree *parent;  /* the view's map holding the leaf (owned by the view) */
    lx_array *shown;  /* the array the leaf is, when the Variable converts to a plain array;
                         NULL when it converts to a metadata box */
} view_slot;

/* The Linen variables tree of the attributes, as bridge_nnx_attrs_to_linen_vars builds it, kept
 * between calls. Its leaves hold references to the arrays of the last call (released at the
 * next call that finds them replaced, or with the module). */
typedef struct to_nnx_view {
    lx_tree *vars;
    view_slot *slots; /* in attribute order: the order a walk of the attributes meets them */
    size_t n;
    bool busy;        /* a call is applying over it (a nested call on the same module builds its own) */
} to_nnx_view;

typedef struct to_nnx {
    nnx_module base;
    to_nnx_config cfg;
    nnx_module *rngs;   /* to_nnx__rngs: an Rngs, or NULL */
    to_nnx_view *view;  /* NULL until the first call after lazy_init; never copied by merge/clone */
} to_nnx;

static linen_module *module_of_config(const void *cfg) {
    const lx_value *v = &((const to_nnx_config *)cfg)->to_nnx__module;
    if (v->kind != LX_V_PTR || !v->u.ptr.p || !v->u.ptr.tag || strcmp(v->u.ptr.tag, LINEN_TAG) != 0)
        return NULL;
    return (linen_module *)v->u.ptr.p;
}

bool bridge_is_to_nnx(const nnx_module *m) { return m && m->type == &bridge_ToNNX; }

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
    LX_TRY(nnx_module_new(&bridge_ToNNX, &c, rngs, &m));
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

/* Linen's own refusal of `name`, a name the module has no method for: "no attribute", or a
 * TypeError when it names a config field ('Dense.features' must be a callable). Linen words it
 * while resolving the method, before any variable, stream or argument is looked at, so an init
 * with no streams asks for it without running anything. */
static lx_status linen_refusal(const linen_module *lm, const char *name) {
    linen_opts opts = {0};
    opts.method = name;
    lx_tree *vars = NULL;
    lx_status s = linen_init_with_output(lm, LINEN_NO_RNGS, NULL, &opts, NULL, &vars);
    lx_tree_release(vars);
    if (s != LX_OK) return s;
    return lx_fail(LX_ERR_INTERNAL, "ToNNX: Linen resolved the method \"%s\" it has no entry for", name);
}

/* What Linen would refuse for the forwarded call, checked before a stream is drawn (Linen
 * checks it after): an unknown method, and arguments the method's declared signature does not
 * bind (linen_type.method_sigs, or for a ToLinen the NNX method's). An undeclared one passes. */
static lx_status check_linen_call(const linen_module *lm, const char *name, const lx_call *call) {
    const linen_type *t = linen_module_type(lm);
    if (t->dispatch) {
        bool missing = false;
        LX_TRY(tl_check_call_(lm, name, call, &missing));
        return missing ? linen_refusal(lm, name) : LX_OK;
    }
    for (int i = 0; i < t->nmethods; i++)
        if (t->methods[i].name && strcmp(t->methods[i].name, name) == 0)
            return t->method_sigs ? lx_call_check_sig(t->name, name, t->method_sigs[i], call) : LX_OK;
    return linen_refusal(lm, name);
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
    if (r && r->type == &nnx_Rngs) {
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
    int count = nnx_rngs_num_streams(src->rngs);
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

/* ------------------------------------------------------------------ the view
 *
 * Converting the attributes to Linen variables on every call (gather, flatten, convert each
 * Variable, unflatten) cost more than a small model's forward pass. The view keeps that tree and
 * each call only checks it against the attributes: one walk over them comparing each leaf's
 * Variable and path with the slot recorded for it (pointers and short strings, no allocation).
 * A Variable whose value was replaced in place (write-back, nnx_update, an optimizer) just gets
 * its leaf re-pointed; anything else (an attribute set, deleted or replaced, a tree inside one
 * edited, a new Variable) fails the check and the view is rebuilt by the full conversion, which
 * also reports any error in Flax's words as before. nnx_graph_epoch() cannot replace the walk:
 * a tree held in an attribute is shared with whoever set it, and edits made to it directly with
 * lx_tree_set are not counted. */

static void view_free(to_nnx_view *v) {
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) {
        lx_variable_release(v->slots[i].var);
        free(v->slots[i].full);
    }
    free(v->slots);
    lx_tree_release(v->vars);
    free(v);
}

/* The array a Variable's Linen leaf is when bridge_to_linen_var gives a plain array, else NULL. */
static lx_array *plain_value(const lx_variable *var) {
    return lx_variable_is_vanilla(var) && !lx_variable_meta_get(var, "linen_meta_type") ? lx_variable_get_value(var)
                                                                                         : NULL;
}

/* Can the view's map `parent` be changed in place unseen? Only when no one but the view holds it
 * or a map on the way to it: a Linen method may return a sub-map of its variables (a sow tuple,
 * self.variables), and that output must stay what it was when the call returned. */
static bool view_private(const to_nnx_view *v, const view_slot *sl) {
    if (lx_tree_is_shared(v->vars)) return false;
    const lx_tree *t = v->vars;
    const char *p = sl->full;
    for (;;) { /* each component but the last names a map */
        const char *slash = strchr(p, '/');
        if (!slash) return true;
        char comp[256];
        size_t n = (size_t)(slash - p);
        if (n >= sizeof comp) return false;
        memcpy(comp, p, n);
        comp[n] = '\0';
        const lx_value *c = lx_tree_get(t, comp);
        if (!c || c->kind != LX_V_TREE || lx_tree_is_shared(c->u.tree)) return false;
        t = c->u.tree;
        p = slash + 1;
    }
}

/* Bring the slot's leaf up to date with its Variable's current value (and metadata); *ok is
 * false when that cannot be done in place (the view must be rebuilt). */
static lx_status view_refresh_leaf(const to_nnx_view *v, view_slot *sl, bool *ok) {
    *ok = true;
    lx_array *a = plain_value(sl->var);
    if (a && a == sl->shown) return LX_OK; /* the common case: nothing to do */
    if (!view_private(v, sl)) {
        *ok = false;
        return LX_OK;
    }
    lx_value leaf;
    LX_TRY(bridge_to_linen_var(sl->var, &leaf)); /* a box is rebuilt every call: its metadata may change */
    lx_status s = lx_tree_set(sl->parent, sl->key, leaf);
    lx_value_free(&leaf);
    sl->shown = s == LX_OK ? a : NULL;
    return s;
}

typedef struct view_walk {
    to_nnx_view *v;
    size_t next;        /* the slot the next leaf must match */
    char path[512];
    bool same;
} view_walk;

/* Match the leaves under `val` (at w->path, of length len) against the slots, refreshing each. */
static lx_status view_walk_value(view_walk *w, const lx_value *val, size_t len) {
    if (val->kind == LX_V_TREE) {
        const lx_tree *t = val->u.tree;
        for (size_t i = 0; i < lx_tree_len(t) && w->same; i++) {
            const char *k = lx_tree_key(t, i);
            size_t kl = strlen(k);
            if (len + 1 + kl >= sizeof w->path) {
                w->same = false; /* too deep for the buffer: let the full conversion handle it */
                break;
            }
            w->path[len] = '/';
            memcpy(w->path + len + 1, k, kl + 1);
            LX_TRY(view_walk_value(w, lx_tree_at(t, i), len + 1 + kl));
        }
        w->path[len] = '\0';
        return LX_OK;
    }
    view_slot *sl = w->next < w->v->n ? &w->v->slots[w->next] : NULL;
    if (!sl || val->kind != LX_V_VARIABLE || val->u.var != sl->var || strcmp(sl->path, w->path) != 0) {
        w->same = false;
        return LX_OK;
    }
    w->next++;
    return view_refresh_leaf(w->v, sl, &w->same);
}

/* Is the view still the attributes' tree? Refreshes replaced values on the way. */
static lx_status view_check(const nnx_module *m, to_nnx_view *v, bool *same) {
    view_walk w = {.v = v, .same = true};
    for (int i = 0; i < nnx_attr_count(m) && w.same; i++) {
        const char *name = nnx_attr_name(m, i);
        if (strncmp(name, "to_nnx__", 8) == 0) continue;
        size_t nl = strlen(name);
        lx_value val;
        if (nl >= sizeof w.path || nnx_getattr(m, name, &val) != LX_OK) {
            w.same = false;
            break;
        }
        memcpy(w.path, name, nl + 1);
        LX_TRY(view_walk_value(&w, &val, nl));
    }
    *same = w.same && w.next == v->n;
    return LX_OK;
}

/* Record, for every Variable of `attrs`, where its leaf sits in the freshly built `vars`. */
static lx_status view_index(to_nnx_view *v, const lx_tree *attrs) {
    lx_flat flat = {0};
    LX_TRY(lx_tree_flatten(attrs, &flat));
    lx_status s = LX_OK;
    if (flat.len && !(v->slots = calloc(flat.len, sizeof *v->slots)))
        s = lx_fail(LX_ERR_NO_MEMORY, "ToNNX: out of memory");
    for (size_t i = 0; i < flat.len && s == LX_OK; i++) {
        view_slot *sl = &v->slots[i];
        lx_variable *var = flat.items[i].value.u.var; /* the conversion accepted only Variables */
        const char *col = NULL;
        s = lx_variable_name_from_type(lx_variable_type(var), false, &col);
        if (s != LX_OK) break;
        sl->var = lx_variable_retain(var);
        v->n = i + 1;
        size_t cl = strlen(col), pl = strlen(flat.items[i].path);
        if (!(sl->full = malloc(cl + 1 + pl + 1))) {
            s = lx_fail(LX_ERR_NO_MEMORY, "ToNNX: out of memory");
            break;
        }
        memcpy(sl->full, col, cl);
        sl->full[cl] = '/';
        memcpy(sl->full + cl + 1, flat.items[i].path, pl + 1);
        sl->path = sl->full + cl + 1;
        /* walk col/<path minus its last component> to the leaf's map */
        const lx_value *node = lx_tree_get(v->vars, col);
        char *comp = sl->full + cl + 1, *slash;
        while (node && node->kind == LX_V_TREE && (slash = strchr(comp, '/'))) {
            *slash = '\0';
            node = lx_tree_get(node->u.tree, comp);
            *slash = '/';
            comp = slash + 1;
        }
        const lx_value *leaf = node && node->kind == LX_V_TREE ? lx_tree_get(node->u.tree, comp) : NULL;
        if (!leaf) {
            s = lx_fail(LX_ERR_INTERNAL, "ToNNX: variable '%s' is missing from its Linen view", sl->path);
            break;
        }
        sl->key = comp;
        sl->parent = node->u.tree;
        sl->shown = leaf->kind == LX_V_ARRAY ? leaf->u.array : NULL;
    }
    lx_flat_free(&flat);
    return s;
}

/* The attributes as Linen variables, built in full (the conversion Flax runs on every call). */
static lx_status build_vars(const nnx_module *m, lx_tree **vars, lx_tree **attrs_out) {
    lx_tree *attrs = NULL;
    LX_TRY(gather_attrs(m, &attrs));
    lx_status s = bridge_nnx_attrs_to_linen_vars(attrs, vars);
    if (s == LX_OK && attrs_out) *attrs_out = attrs;
    else lx_tree_release(attrs);
    return s;
}

/* The Linen variables for this call (a reference the caller releases; *cached: it is the view,
 * marked busy until view_done). */
static lx_status view_acquire(to_nnx *self, lx_tree **vars, bool *cached) {
    nnx_module *m = &self->base;
    *vars = NULL;
    *cached = false;
    if (self->view && self->view->busy) return build_vars(m, vars, NULL); /* re-entered */
    if (self->view) {
        bool same = false;
        LX_TRY(view_check(m, self->view, &same));
        if (!same) {
            view_free(self->view);
            self->view = NULL;
        }
    }
    if (!self->view) {
        lx_tree *built = NULL, *attrs = NULL;
        LX_TRY(build_vars(m, &built, &attrs));
        to_nnx_view *v = calloc(1, sizeof *v);
        lx_status s = v ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "ToNNX: out of memory");
        if (s == LX_OK) {
            v->vars = built;
            built = NULL;
            s = view_index(v, attrs);
        }
        lx_tree_release(attrs);
        lx_tree_release(built);
        if (s != LX_OK) {
            view_free(v);
            return s;
        }
        self->view = v;
    }
    self->view->busy = true;
    *vars = lx_tree_retain(self->view->vars);
    *cached = true;
    return LX_OK;
}

static void view_done(to_nnx *self, bool cached) {
    if (cached && self->view) self->view->busy = false;
}

static void to_nnx_destroy(nnx_module *m) {
    to_nnx *self = (to_nnx *)m;
    view_free(self->view);
    self->view = NULL;
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
    /* Flax's ToNNX.__call__(*args, rngs=None, method=None, mutable=None, **kwargs): `method`
     * names a method of the Linen module (model(x, method='encode') is model.encode(x)). */
    const lx_value *mv = lx_call_kwarg(call, "method");
    if (mv && mv->kind != LX_V_NONE) {
        char buf[64];
        if (mv->kind != LX_V_STR || !mv->u.s)
            return lx_fail(LX_ERR_TYPE, "ToNNX: method must be the name of a method of the Linen module or None, got %s",
                           lx_value_str(mv, buf, sizeof buf));
        method = mv->u.s; /* an unknown name is refused by check_linen_call, in Linen's words */
    }

    lx_call fwd = *call, owned = LX_NO_CALL;
    bool strip = lx_call_kwarg(call, "rngs") || lx_call_kwarg(call, "mutable") || mv;
    if (strip) {
        static const char *const BRIDGE_ONLY[] = {"rngs", "mutable", "method"};
        LX_TRY(lx_call_without(call, 3, BRIDGE_ONLY, &owned));
        fwd = owned;
    }

    /* The method and the arguments Linen refuses (Linen would refuse them after the draw). */
    lx_status s = check_linen_call(lm, method, &fwd);
    lx_tree *variables = NULL, *updates = NULL;
    bool cached = false;
    if (s == LX_OK && !m->initializing) {
        s = view_acquire(self, &variables, &cached);
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
            s = linen_apply(lm, variables, rngs, &fwd, &opts, out,
                            mut.kind == LINEN_MUTABLE_NONE ? NULL : &updates);
        }
    }
    /* Linen is done with the view before write-back changes the attributes it mirrors. */
    view_done(self, cached);
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
static const nnx_method TO_NNX_METHODS[] = {NNX_METHOD("__call__", to_nnx_call)};

const nnx_type bridge_ToNNX = {
    .name = "ToNNX",
    .size = sizeof(to_nnx),
    .fields = TO_NNX_FIELDS,
    .nfields = LX_COUNT(TO_NNX_FIELDS),
    .config = TO_NNX_CONFIG,
    .nconfig = LX_COUNT(TO_NNX_CONFIG),
    .config_offset = offsetof(to_nnx, cfg),
    .methods = TO_NNX_METHODS,
    .nmethods = LX_COUNT(TO_NNX_METHODS),
    .init = to_nnx_init,
    .destroy = to_nnx_destroy,
    .dispatch = to_nnx_dispatch,
};
