/* NNX modules: allocation from a type, config binding, constructors, refcounts, dynamic
 * attributes, method calls, abstract construction (nnx.eval_shape). */
#include "../core/signature.h"
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "linnx/intercept.h"
#include "../core/frame_internal.h"
#include "../core/tree_internal.h"
#include "../core/status_internal.h"
#include "nnx_internal.h"

/* ------------------------------------------------------------------ small helpers */

char *nnx_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static size_t ptr_hash(const void *p, size_t cap) {
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= (uintptr_t)0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return (size_t)x & (cap - 1);
}

lx_status nnx_ptrmap_put(nnx_ptrmap *m, const void *k, int v) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        const void **nk = calloc(ncap, sizeof *nk);
        int *nv = calloc(ncap, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = ptr_hash(m->keys[i], ncap);
                while (nk[j]) j = (j + 1) & (ncap - 1);
                nk[j] = m->keys[i];
                nv[j] = m->vals[i];
            }
        free(m->keys);
        free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = ncap;
    }
    size_t j = ptr_hash(k, m->cap);
    while (m->keys[j] && m->keys[j] != k) j = (j + 1) & (m->cap - 1);
    if (!m->keys[j]) m->n++;
    m->keys[j] = k;
    m->vals[j] = v;
    return LX_OK;
}

bool nnx_ptrmap_get(const nnx_ptrmap *m, const void *k, int *v) {
    if (!m->cap || !k) return false;
    size_t j = ptr_hash(k, m->cap);
    while (m->keys[j]) {
        if (m->keys[j] == k) {
            if (v) *v = m->vals[j];
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

void nnx_ptrmap_free(nnx_ptrmap *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

lx_status nnx_path_push(nnx_path *p, const char *name, size_t *saved) {
    *saved = p->len;
    size_t add = strlen(name) + (p->len ? 1 : 0);
    if (p->len + add + 1 > p->cap) {
        size_t ncap = (p->len + add + 1) * 2 + 32;
        char *nb = realloc(p->buf, ncap);
        if (!nb) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
        p->buf = nb;
        p->cap = ncap;
    }
    if (p->len) p->buf[p->len++] = '/';
    memcpy(p->buf + p->len, name, strlen(name) + 1);
    p->len += strlen(name);
    return LX_OK;
}

/* ------------------------------------------------------------------ abstract mode */

static _Thread_local int abstract_depth;
static _Thread_local uint64_t graph_epoch;

uint64_t nnx_graph_epoch(void) { return graph_epoch; }
void nnx_graph_changed(void) { graph_epoch++; }

bool nnx_abstract_mode(void) { return abstract_depth > 0; }
void nnx_abstract_push(void) { abstract_depth++; }
void nnx_abstract_pop(void) {
    if (abstract_depth > 0) abstract_depth--;
}

/* ------------------------------------------------------------------ values */

nnx_module *nnx_module_from_value(const lx_value *v) {
    if (!v || v->kind != LX_V_PTR || !v->u.ptr.tag || !v->u.ptr.p) return NULL;
    if (strcmp(v->u.ptr.tag, NNX_TAG_MODULE) != 0 && strcmp(v->u.ptr.tag, "nnx_rngs") != 0) return NULL;
    return (nnx_module *)v->u.ptr.p;
}

nnx_list *nnx_list_from_value(const lx_value *v) {
    if (!v || v->kind != LX_V_PTR || !v->u.ptr.tag || strcmp(v->u.ptr.tag, NNX_TAG_LIST) != 0)
        return NULL;
    return (nnx_list *)v->u.ptr.p;
}

bool nnx_is_container(const lx_value *v) {
    return nnx_module_from_value(v) || nnx_list_from_value(v) || (v && v->kind == LX_V_TREE && v->u.tree);
}

const void *nnx_identity(const lx_value *v) {
    if (!v) return NULL;
    if (v->kind == LX_V_VARIABLE) return v->u.var;
    if (v->kind == LX_V_TREE) return v->u.tree;
    if (v->kind == LX_V_PTR) return nnx_module_from_value(v) || nnx_list_from_value(v) ? v->u.ptr.p : NULL;
    return NULL;
}

/* Own a copy of a value as an attribute / list item. Modules are counted pointers
 * (lx_ptr_register), so lx_value_dup retains them and lx_value_free releases them. */
static lx_status own_value(const lx_value *v, lx_value *out) {
    if (v->kind == LX_V_PTR && nnx_list_from_value(v))
        return lx_fail(LX_ERR_TYPE, "nnx: an nnx_list cannot be stored as a value");
    return lx_value_dup(v, out);
}

/* ------------------------------------------------------------------ lists */

lx_status nnx_list_append(nnx_list *l, lx_value item) {
    if (!l) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_list_append: list is NULL");
    if (nnx_list_from_value(&item) || item.kind == LX_V_TREE || (item.kind == LX_V_VARIABLE && !item.u.var))
        return lx_fail(LX_ERR_TYPE, "nnx_list_append: items are Variables, modules or static values, got %s",
                       lx_kind_name(item.kind));
    /* A module from which this list is reachable holds the list's module: storing it would make a
     * reference cycle (seq.layers.append(seq)), never freed (nnx_setattr's rule). */
    bool cycle = false;
    LX_TRY(nnx_reaches_node(&item, l, &cycle));
    if (cycle)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "nnx_list_append: a module cannot contain itself (the item holds the module of this list)");
    lx_value *ni = realloc(l->items, (size_t)(l->n + 1) * sizeof *ni);
    if (!ni) return lx_fail(LX_ERR_NO_MEMORY, "nnx_list_append: out of memory");
    l->items = ni;
    LX_TRY(own_value(&item, &l->items[l->n]));
    l->n++;
    nnx_graph_changed();
    return LX_OK;
}

void nnx_list_clear(nnx_list *l) {
    if (!l) return;
    if (l->n) nnx_graph_changed();
    for (int i = 0; i < l->n; i++) lx_value_free(&l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* ------------------------------------------------------------------ modules */

const nnx_field *nnx_find_field(const nnx_type *t, const char *name, int *index) {
    for (int i = 0; i < t->nfields; i++)
        if (strcmp(t->fields[i].name, name) == 0) {
            if (index) *index = i;
            return &t->fields[i];
        }
    return NULL;
}

static void retain_fn(void *p) { nnx_module_retain(p); }
static void release_fn(void *p) { nnx_module_release(p); }

/* Module values are counted (value.h): register before the first module exists, so every value
 * naming a module was made after it. */
static lx_status register_module_values(void) {
    static atomic_bool done;
    if (atomic_load_explicit(&done, memory_order_acquire)) return LX_OK;
    LX_TRY(lx_ptr_register(NNX_TAG_MODULE, retain_fn, release_fn));
    LX_TRY(lx_ptr_register("nnx_rngs", retain_fn, release_fn));
    atomic_store_explicit(&done, true, memory_order_release);
    return LX_OK;
}

lx_status nnx_module_alloc(const nnx_type *type, nnx_module **out) {
    *out = NULL;
    LX_TRY(register_module_values());
    if (!type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx: module type is NULL");
    if (type->size < sizeof(nnx_module))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx: type %s has size %zu, smaller than its header",
                       type->name ? type->name : "?", type->size);
    nnx_module *m = calloc(1, type->size);
    if (!m) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory building %s", type->name);
    m->type = type;
    m->refcount = 1;
    *out = m;
    return LX_OK;
}

nnx_module *nnx_module_retain(nnx_module *m) {
    if (m) m->refcount++;
    return m;
}

static void attrs_free(nnx_attrs *a) {
    if (!a) return;
    for (int i = 0; i < a->n; i++) {
        free(a->names[i]);
        lx_value_free(&a->values[i]);
    }
    free(a->names);
    free(a->values);
    free(a);
}

void nnx_module_release(nnx_module *m) {
    if (!m || --m->refcount > 0) return;
    const nnx_type *t = m->type;
    if (t->destroy) t->destroy(m);
    for (int i = 0; i < t->nfields; i++) {
        void *p = nnx_field_ptr(m, &t->fields[i]);
        switch (t->fields[i].kind) {
        case NNX_FIELD_VARIABLE:
            lx_variable_release(*(lx_variable **)p);
            *(lx_variable **)p = NULL;
            break;
        case NNX_FIELD_CHILD:
            nnx_module_release(*(nnx_module **)p);
            *(nnx_module **)p = NULL;
            break;
        case NNX_FIELD_LIST: nnx_list_clear((nnx_list *)p); break;
        }
    }
    if (t->config_release) t->config_release(nnx_config_ptr(m));
    if (t->config) lx_config_free(t->config, t->nconfig, nnx_config_ptr(m));
    attrs_free(m->attrs);
    free(m);
}

const void *nnx_config(const nnx_module *m) { return m ? nnx_config_ptr(m) : NULL; }

static lx_status build(const nnx_type *type, const lx_call *call, nnx_rngs *rngs, nnx_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_module_new: out is NULL");
    *out = NULL;
    if (!type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_module_new: type is NULL");
    lx_call c = call ? *call : LX_NO_CALL;
    char owner[160];
    snprintf(owner, sizeof owner, "%s.__init__()", type->name ? type->name : "Module");
    LX_TRY(lx_call_check_(owner, call));

    /* rngs=... may come in the call (the bridge forwards kwargs): take it out before binding. */
    lx_kwarg *kw = NULL;
    if (c.nkwargs > 0) {
        kw = malloc((size_t)c.nkwargs * sizeof *kw);
        if (!kw) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
        int n = 0;
        for (int i = 0; i < c.nkwargs; i++) {
            if (c.kwargs[i].name && strcmp(c.kwargs[i].name, "rngs") == 0) {
                const lx_value *v = &c.kwargs[i].value;
                if (v->kind == LX_V_NONE) continue;
                nnx_module *r = nnx_module_from_value(v);
                if (!r || r->type != &nnx_Rngs) {
                    free(kw);
                    return lx_fail(LX_ERR_TYPE, "%s: argument 'rngs' must be an Rngs, got %s", owner,
                                   lx_kind_name(v->kind));
                }
                if (rngs && (nnx_module *)rngs != r) {
                    free(kw);
                    return lx_fail(LX_ERR_TYPE, "%s got multiple values for argument 'rngs'", owner);
                }
                rngs = (nnx_rngs *)r;
                continue;
            }
            kw[n++] = c.kwargs[i];
        }
        c.kwargs = kw;
        c.nkwargs = n;
    }

    nnx_module *m = NULL;
    lx_status s = nnx_module_alloc(type, &m);
    if (s == LX_OK && type->config) {
        s = lx_config_bind(type->config, type->nconfig, &c, nnx_config_ptr(m), owner);
        /* A config that failed to bind was never config_retain'ed, yet may hold the defaults'
         * bytes (OBJ fields): zero it, so the release below hands config_release a zeroed config
         * (which hooks must accept) rather than references it never took. */
        if (s != LX_OK)
            for (int i = 0; i < type->nconfig; i++)
                memset((char *)nnx_config_ptr(m) + type->config[i].offset, 0, type->config[i].size);
    }
    if (s == LX_OK && type->config && type->config_retain) s = type->config_retain(nnx_config_ptr(m));
    /* Arguments go to the config when there is one; only a type with neither config nor init
     * takes none (Python's object.__init__). */
    if (s == LX_OK && !type->config && !type->init && (c.nargs || c.nkwargs))
        s = lx_fail(LX_ERR_TYPE, "%s takes no arguments", owner);
    if (s == LX_OK && type->setup) {
        uint64_t gen = lx_error_generation();
        s = type->setup(m, rngs);
        if (s != LX_OK && lx_error_generation() == gen)
            s = lx_fail(s, "%s failed", owner);
    }
    if (s == LX_OK && type->init) {
        uint64_t gen = lx_error_generation();
        s = type->init(m, &c, rngs);
        if (s != LX_OK && lx_error_generation() == gen)
            s = lx_fail(s, "%s failed", owner);
    }
    free(kw);
    if (s != LX_OK) {
        nnx_module_release(m);
        return s;
    }
    *out = m;
    return LX_OK;
}

lx_status nnx_module_new(const nnx_type *type, const lx_call *call, nnx_rngs *rngs, nnx_module **out) {
    size_t mark = lx_pool_open();
    lx_status s = build(type, call, rngs, out);
    lx_pool_close(mark);
    return s;
}

lx_status nnx_eval_shape(const nnx_type *type, const lx_call *call, nnx_rngs *rngs, nnx_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_eval_shape: out is NULL");
    *out = NULL;
    /* Flax traces the constructor: the caller's Rngs comes out unchanged. Build with a copy. */
    nnx_module *copy = NULL;
    if (rngs) LX_TRY(nnx_clone(nnx_rngs_module(rngs), &copy));
    nnx_abstract_push();
    lx_status s = nnx_module_new(type, call, (nnx_rngs *)copy, out);
    nnx_abstract_pop();
    nnx_module_release(copy);
    return s;
}

/* ------------------------------------------------------------------ attributes */

int nnx_attrs_find(const nnx_module *m, const char *name) {
    if (!m->attrs) return -1;
    for (int i = 0; i < m->attrs->n; i++)
        if (strcmp(m->attrs->names[i], name) == 0) return i;
    return -1;
}

lx_status nnx_attrs_reserve(nnx_module *m, int extra) {
    if (!m->attrs) {
        m->attrs = calloc(1, sizeof *m->attrs);
        if (!m->attrs) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
    }
    nnx_attrs *a = m->attrs;
    if (a->n + extra <= a->cap) return LX_OK;
    int ncap = a->cap ? a->cap : 8;
    while (ncap < a->n + extra) ncap *= 2;
    char **nn = realloc(a->names, (size_t)ncap * sizeof *nn);
    if (!nn) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
    a->names = nn; /* a larger block for the same entries: nothing visible changes */
    lx_value *nv = realloc(a->values, (size_t)ncap * sizeof *nv);
    if (!nv) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
    a->values = nv;
    a->cap = ncap;
    return LX_OK;
}

lx_status nnx_attrs_put(nnx_module *m, const char *name, const lx_value *value) {
    lx_value owned;
    LX_TRY(own_value(value, &owned));
    nnx_graph_changed();
    int i = nnx_attrs_find(m, name);
    if (i >= 0) {
        lx_value_free(&m->attrs->values[i]);
        m->attrs->values[i] = owned;
        return LX_OK;
    }
    if (!m->attrs) {
        m->attrs = calloc(1, sizeof *m->attrs);
        if (!m->attrs) goto oom;
    }
    nnx_attrs *a = m->attrs;
    if (a->n == a->cap) {
        int ncap = a->cap ? a->cap * 2 : 8;
        char **nn = realloc(a->names, (size_t)ncap * sizeof *nn);
        if (!nn) goto oom;
        a->names = nn;
        lx_value *nv = realloc(a->values, (size_t)ncap * sizeof *nv);
        if (!nv) goto oom;
        a->values = nv;
        a->cap = ncap;
    }
    a->names[a->n] = nnx_strdup(name);
    if (!a->names[a->n]) goto oom;
    a->values[a->n] = owned;
    a->n++;
    return LX_OK;
oom:
    lx_value_free(&owned);
    return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory setting attribute '%s'", name);
}

static lx_status attr_error(const nnx_module *m, const char *name) {
    return lx_fail(LX_ERR_NOT_FOUND, "'%s' object has no attribute '%s'", m->type->name, name);
}

lx_status nnx_getattr(const nnx_module *m, const char *name, lx_value *out) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_getattr: module is NULL");
    if (!name) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_getattr: name is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_getattr: out is NULL");
    const nnx_field *f = nnx_find_field(m->type, name, NULL);
    if (f) {
        void *p = nnx_field_ptr(m, f);
        switch (f->kind) {
        case NNX_FIELD_VARIABLE: {
            lx_variable *v = *(lx_variable **)p;
            *out = v ? lx_var_v(v) : lx_none();
            return LX_OK;
        }
        case NNX_FIELD_CHILD: {
            nnx_module *c = *(nnx_module **)p;
            *out = c ? nnx_module_v(c) : lx_none();
            return LX_OK;
        }
        case NNX_FIELD_LIST: *out = nnx_list_v((nnx_list *)p); return LX_OK;
        }
    }
    int i = nnx_attrs_find(m, name);
    if (i >= 0) {
        *out = m->attrs->values[i];
        return LX_OK;
    }
    if (m->type->config && lx_config_find(m->type->config, m->type->nconfig, name))
        return lx_config_get(m->type->config, m->type->nconfig, nnx_config_ptr(m), name, out);
    return attr_error(m, name);
}

/* A value a module attribute may hold: Variables, trees whose leaves are Variables or static
 * scalars, modules, and static values. */
static lx_status check_attr_value(const char *name, const lx_value *v) {
    switch (v->kind) {
    case LX_V_PTR:
        if (nnx_module_from_value(v)) return LX_OK;
        return lx_fail(LX_ERR_TYPE, "setattr '%s': a pointer tagged '%s' is not a module", name,
                       v->u.ptr.tag ? v->u.ptr.tag : "(none)");
    case LX_V_TREE:
        if (!v->u.tree) return lx_fail(LX_ERR_INVALID_ARGUMENT, "setattr '%s': tree is NULL", name);
        return LX_OK;
    case LX_V_VARIABLE:
        if (!v->u.var) return lx_fail(LX_ERR_INVALID_ARGUMENT, "setattr '%s': Variable is NULL", name);
        return LX_OK;
    case LX_V_BOX:
        return lx_fail(LX_ERR_TYPE,
                       "setattr '%s': a metadata box is a Linen value; convert it to a Variable", name);
    default: return LX_OK;
    }
}

/* Would storing `v` in m make m contain itself: is m reachable from v (v is m, or holds m through
 * fields, attributes, lists or trees at any depth: lin.parent = Sequential(lin))? Module values
 * are counted, so such a value would be a reference cycle, never freed (Python's collector frees
 * Flax's; linnx has none). Only containers are walked: a Variable or static value costs nothing. */
static lx_status refuse_cycle(const lx_value *v, const nnx_module *m, const char *name) {
    bool found = false;
    LX_TRY(nnx_reaches(v, m, &found));
    if (!found) return LX_OK;
    if (nnx_module_from_value(v) == m)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s.%s: a module cannot contain itself", m->type->name, name);
    return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s.%s: a module cannot contain itself (the value holds this %s)",
                   m->type->name, name, m->type->name);
}

lx_status nnx_setattr(nnx_module *m, const char *name, const lx_value *value) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_setattr: module is NULL");
    if (!name) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_setattr: name is NULL");
    if (!value) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_setattr: value is NULL");
    if (!*name || strchr(name, '/'))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_setattr: invalid attribute name '%s'", name);
    LX_TRY(check_attr_value(name, value));
    LX_TRY(refuse_cycle(value, m, name));
    nnx_graph_changed();
    int fi;
    const nnx_field *f = nnx_find_field(m->type, name, &fi);
    if (f) {
        void *p = nnx_field_ptr(m, f);
        switch (f->kind) {
        case NNX_FIELD_VARIABLE:
            if (value->kind != LX_V_VARIABLE && value->kind != LX_V_NONE)
                return lx_fail(LX_ERR_TYPE, "%s.%s holds a Variable or None, got %s", m->type->name,
                               name, lx_kind_name(value->kind));
            {
                lx_variable *nv = value->kind == LX_V_VARIABLE ? lx_variable_retain(value->u.var) : NULL;
                lx_variable_release(*(lx_variable **)p);
                *(lx_variable **)p = nv;
            }
            return LX_OK;
        case NNX_FIELD_CHILD: {
            nnx_module *c = nnx_module_from_value(value);
            if (!c && value->kind != LX_V_NONE)
                return lx_fail(LX_ERR_TYPE, "%s.%s holds a module or None, got %s", m->type->name,
                               name, lx_kind_name(value->kind));
            nnx_module_retain(c);
            nnx_module_release(*(nnx_module **)p);
            *(nnx_module **)p = c;
            return LX_OK;
        }
        case NNX_FIELD_LIST:
            return lx_fail(LX_ERR_TYPE, "%s.%s is a list; change it with nnx_list_append",
                           m->type->name, name);
        }
    }
    if (m->type->config && lx_config_find(m->type->config, m->type->nconfig, name)) {
        /* A module held in the config (ToNNX's Linen module) is what the state was built from;
         * hooks mean references the config holds outside the value system. */
        lx_value cur = lx_none();
        lx_config_get(m->type->config, m->type->nconfig, nnx_config_ptr(m), name, &cur);
        if (m->type->config_release || (cur.kind == LX_V_PTR && cur.u.ptr.p && lx_ptr_counted(cur.u.ptr.tag)))
            return lx_fail(LX_ERR_TYPE, "cannot set attribute '%s' of '%s': it is fixed at construction",
                           name, m->type->name);
        lx_kwarg kw = {name, *value};
        lx_call c = {0, NULL, 1, &kw};
        char owner[160];
        snprintf(owner, sizeof owner, "setattr %s.%s", m->type->name, name);
        return lx_config_override(m->type->config, m->type->nconfig, &c, nnx_config_ptr(m), owner);
    }
    return nnx_attrs_put(m, name, value);
}

lx_status nnx_delattr(nnx_module *m, const char *name) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_delattr: module is NULL");
    if (!name) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_delattr: name is NULL");
    int i = nnx_attrs_find(m, name);
    if (i < 0) {
        if (nnx_find_field(m->type, name, NULL) ||
            (m->type->config && lx_config_find(m->type->config, m->type->nconfig, name)))
            return lx_fail(LX_ERR_TYPE, "cannot delete attribute '%s' of '%s': it is declared by the type",
                           name, m->type->name);
        return attr_error(m, name);
    }
    nnx_graph_changed();
    nnx_attrs *a = m->attrs;
    free(a->names[i]);
    lx_value_free(&a->values[i]);
    memmove(&a->names[i], &a->names[i + 1], (size_t)(a->n - i - 1) * sizeof *a->names);
    memmove(&a->values[i], &a->values[i + 1], (size_t)(a->n - i - 1) * sizeof *a->values);
    a->n--;
    return LX_OK;
}

int nnx_attr_count(const nnx_module *m) { return m && m->attrs ? m->attrs->n : 0; }

const char *nnx_attr_name(const nnx_module *m, int i) {
    if (!m || !m->attrs || i < 0 || i >= m->attrs->n) return NULL;
    return m->attrs->names[i];
}

/* ------------------------------------------------------------------ methods */

const nnx_method *nnx_find_method(const nnx_type *type, const char *name) {
    if (!type) return NULL;
    if (!name) name = "__call__";
    for (int i = 0; i < type->nmethods; i++)
        if (strcmp(type->methods[i].name, name) == 0) return &type->methods[i];
    return NULL;
}

/* ---- module frames for op interceptors (intercept.h) ---- */

/* "a/b" (or "a" when b is NULL) as a new string; NULL when out of memory. */
static char *join_name(const char *a, const char *b) {
    size_t na = strlen(a), nb = b ? strlen(b) + 1 : 0;
    char *s = malloc(na + nb + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    if (b) {
        s[na] = '/';
        memcpy(s + na + 1, b, nb);
    } else {
        s[na] = '\0';
    }
    return s;
}

/* The attribute name of `m` in `parent` ("mlp", or "layers/0" for a list item) as a new string,
 * whatever its length (an interceptor's path must never be cut): LX_OK with *name NULL when m is
 * no attribute of parent (no path component). Held under several names, the first in name order
 * (as the graph lists children); within a list, the first index. Only copying the name can fail:
 * LX_ERR_NO_MEMORY, which frame_internal.h says fails the whole path; no failure is recorded. */
static lx_status child_name(const nnx_module *parent, const nnx_module *m, char **name) {
    *name = NULL;
    const char *best = NULL, *cname;
    int best_item = -1;
    lx_value v;
    for (int i = 0; nnx_module_child(parent, i, &cname, &v); i++) {
        int item = -1;
        if (nnx_module_from_value(&v) != m) {
            const nnx_list *l = nnx_list_from_value(&v);
            for (int k = 0; l && k < l->n && item < 0; k++)
                if (nnx_module_from_value(&l->items[k]) == m) item = k;
            if (item < 0) continue;
        }
        if (!best || strcmp(cname, best) < 0) best = cname, best_item = item;
    }
    if (!best) return LX_OK;
    char idx[32];
    *name = join_name(best, best_item >= 0 ? lx_dec_(idx, best_item) : NULL);
    return *name ? LX_OK : LX_ERR_NO_MEMORY;
}

/* The frame name of `m` under its NNX parent (lazy: resolved only when a path is wanted). */
static lx_status frame_name(const void *parent, const void *m, char **name) {
    return child_name((const nnx_module *)parent, (const nnx_module *)m, name);
}

/* Is `a` the value of a Param (or subclass) held directly by module `obj`? Allocates nothing, so
 * it cannot fail: a weight is never taken for an activation under memory pressure (intercept.h). */
static bool holds_param(const void *obj, const lx_array *a) {
    const char *cname;
    lx_value v;
    for (int i = 0; nnx_module_child(obj, i, &cname, &v); i++)
        if (v.kind == LX_V_VARIABLE && v.u.var && lx_vartype_is(lx_variable_type(v.u.var), &lx_Param) &&
            lx_variable_get_value(v.u.var) == a)
            return true;
    return false;
}

static lx_status call_method(nnx_module *m, const char *method, const lx_call *call, lx_value *out);

/* Run `fn` (a method given as a function) or else the method named `method`. */
static lx_status run_target(nnx_module *m, const char *method, nnx_method_fn fn, const lx_call *call,
                            lx_value *out) {
    if (!fn) return call_method(m, method, call, out);
    *out = lx_none();
    lx_call none = LX_NO_CALL;
    return fn(m, call ? call : &none, out);
}

/* Every way into a module's method goes through here, so interceptors see its frame: a module
 * called by an NNX parent is named by its attribute there; the root of an NNX graph (called by
 * user code, or from a Linen scope through ToLinen) adds no component but is still the
 * innermost frame, so its own Params are recognised as such. */
static lx_status call_framed(nnx_module *m, const char *method, nnx_method_fn fn, const lx_call *call,
                             lx_value *out) {
    LX_TRY(lx_frame_enter_(LX_FRAME_NNX, NULL, frame_name, m, holds_param));
    lx_status s = run_target(m, method, fn, call, out);
    lx_frame_leave_(s);
    return s;
}

int nnx_frame_enter_(nnx_module *m) {
    lx_frame_kind kind;
    if (!m) return 0;
    if (lx_frame_top(&kind) == m && kind == LX_FRAME_NNX) return 0;
    return lx_frame_enter_(LX_FRAME_NNX, NULL, frame_name, m, holds_param) == LX_OK ? 1 : -1;
}

void nnx_frame_leave_(int entered, bool ok) {
    if (entered > 0) lx_frame_leave_(ok ? LX_OK : LX_ERR_INTERNAL);
}

int nnx_frame_enter(nnx_module *m) { return nnx_frame_enter_(m); }

void nnx_frame_leave(int entered) { nnx_frame_leave_(entered, !lx_error_pending()); }

lx_status nnx_call(nnx_module *m, const char *method, const lx_call *call, lx_value *out) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_call: module is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_call: out is NULL");
    return call_framed(m, method, NULL, call, out);
}

lx_status nnx_call_fn(nnx_module *m, nnx_method_fn fn, const lx_call *call, lx_value *out) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_call_fn: module is NULL");
    if (!fn) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_call_fn: fn is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_call_fn: out is NULL");
    return call_framed(m, NULL, fn, call, out);
}

lx_status nnx_run_entry_(nnx_module *m, const nnx_method *f, const lx_call *call, lx_value *out) {
    *out = lx_none();
    if (f->fn) return f->fn(m, call, out);
    if (!f->array_fn)
        return lx_fail(LX_ERR_TYPE, "'%s.%s' must be a callable, got <class 'NoneType'>.", m->type->name,
                       f->name ? f->name : "?");
    const lx_value *xv = lx_call_get(call, 0, "x");
    if (!xv) xv = lx_call_kwarg(call, "inputs");
    if (!xv)
        return lx_fail(LX_ERR_TYPE, "%s.%s() missing 1 required positional argument: 'x'", m->type->name,
                       f->name ? f->name : "?");
    if (xv->kind != LX_V_ARRAY)
        return lx_fail(LX_ERR_TYPE, "%s.%s(): argument 'x' must be an array, got %s", m->type->name,
                       f->name ? f->name : "?", lx_kind_name(xv->kind));
    if (!xv->u.array)
        return lx_error_pending() ? lx_last_status()
                                  : lx_fail(LX_ERR_FAILED_INPUT, "%s.%s(): argument 'x' is NULL", m->type->name,
                                            f->name ? f->name : "?");
    return nnx_return_array(out, f->array_fn(m, xv->u.array));
}

lx_status nnx_call_method(nnx_module *m, const nnx_method *f, const lx_call *call, lx_value *out) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_call_method: module is NULL");
    if (!f) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_call_method: method is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_call_method: out is NULL");
    lx_call none = LX_NO_CALL;
    LX_TRY(lx_frame_enter_(LX_FRAME_NNX, NULL, frame_name, m, holds_param));
    lx_status s = nnx_run_entry_(m, f, call ? call : &none, out);
    lx_frame_leave_(s);
    return s;
}

static lx_status call_method(nnx_module *m, const char *method, const lx_call *call, lx_value *out) {
    *out = lx_none();
    const char *name = method ? method : "__call__";
    lx_call none = LX_NO_CALL;
    if (!call) call = &none;
    const nnx_method *f = nnx_find_method(m->type, name);
    if (f) {
        if (m->type->method_sigs)
            LX_TRY(lx_call_check_sig(m->type->name, name, m->type->method_sigs[f - m->type->methods], call));
        return nnx_run_entry_(m, f, call, out);
    }
    if (m->type->dispatch) {
        uint64_t gen = lx_error_generation();
        lx_status s = m->type->dispatch(m, name, call, out);
        if (s != LX_ERR_NOT_FOUND || lx_error_generation() != gen) return s;
    }
    return lx_fail(LX_ERR_NOT_FOUND, "'%s' object has no attribute '%s'", m->type->name, name);
}

lx_array *nnx_call_array(nnx_module *m, lx_array *x) {
    if (!m) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_call_array: module is NULL");
        return NULL;
    }
    if (!x) { /* a failed input: its own error kept, or this one recorded (status.h) */
        lx_null_input("nnx_call_array: x is NULL");
        return NULL;
    }
    lx_value out;
    lx_call c = LX_ARGS(x);
    if (nnx_call(m, NULL, &c, &out) != LX_OK) return NULL;
    if (out.kind != LX_V_ARRAY) {
        lx_value_free(&out);
        lx_fail(LX_ERR_TYPE, "%s.__call__ returned %s, not an array", m->type->name, lx_kind_name(out.kind));
        return NULL;
    }
    /* The method handed us an owned reference; give it to the pool like any op result. */
    lx_array *a = lx_autorelease(lx_retain(out.u.array));
    lx_value_free(&out);
    return a;
}

/* ------------------------------------------------------------------ parameters */

lx_status nnx_initializer_metadata(const lx_initializer *init, lx_tree **out) {
    if (!init) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_initializer_metadata: init is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_initializer_metadata: out is NULL");
    *out = NULL;
    lx_tree *md = lx_tree_new();
    if (!md) return lx_last_status();
    const char *names[LX_MAX_DIMS], *rules[2 * LX_PARTITION_MAX_RULES];
    lx_status s = LX_OK;
    if (init->partitioning.kind != LX_PARTITION_NONE) {
        int nnames = lx_init_partition_names(init, names);
        const char *mesh = lx_init_partition_mesh(init);
        s = lx_tree_set(md, "out_sharding", lx_strs_v(nnames, names));
        if (s == LX_OK) s = lx_tree_set(md, "mesh", mesh ? lx_str_v(mesh) : lx_none());
        if (s == LX_OK && init->partitioning.kind == LX_PARTITION_LOGICAL) {
            int nrules = lx_init_partition_rules(init, rules);
            s = lx_tree_set(md, "sharding_rules", nrules < 0 ? lx_none() : lx_strs_v(nrules, rules));
        }
    }
    if (s != LX_OK) {
        lx_tree_release(md);
        return s;
    }
    *out = md;
    return LX_OK;
}

/* The layer's metadata with the initializer's on top: Flax's Variable.__init__ takes the
 * keyword metadata, then update()s it with the VariableMetadata the initializer returned, so
 * the initializer wins a key both give. An alias of a key the initializer sets (sharding,
 * sharding_names for out_sharding) is dropped with it, or the Variable would see it twice. */
static lx_status merged_metadata(const lx_tree *layer_md, const lx_initializer *init, lx_tree **out) {
    lx_tree *from_init = NULL;
    LX_TRY(nnx_initializer_metadata(init, &from_init));
    lx_tree *md = layer_md ? lx_tree_copy(layer_md) : lx_tree_new();
    lx_status s = md ? LX_OK : lx_last_status();
    if (s == LX_OK && lx_tree_get(from_init, "out_sharding")) {
        static const char *const aliases[] = {"sharding", "sharding_names"};
        for (int i = 0; s == LX_OK && i < 2; i++)
            if (lx_tree_get(md, aliases[i])) s = lx_tree_delete(md, aliases[i]);
    }
    for (size_t i = 0; s == LX_OK && i < lx_tree_len(from_init); i++)
        s = lx_tree_set(md, lx_tree_key(from_init, i), *lx_tree_at(from_init, i));
    lx_tree_release(from_init);
    if (s != LX_OK) {
        lx_tree_release(md);
        return s;
    }
    *out = md;
    return LX_OK;
}

lx_status nnx_param_new_reshaped(const lx_vartype *type, const lx_initializer *init, lx_key key, lx_dtype dtype,
                                 int ndim, const int64_t *shape, int init_ndim, const int64_t *init_shape,
                                 const lx_value *metadata, lx_variable **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_param_new: out is NULL");
    if (!type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_param_new: type is NULL");
    if (!init) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_param_new: init is NULL");
    *out = NULL;
    const lx_tree *md = NULL;
    if (metadata && metadata->kind == LX_V_TREE) md = metadata->u.tree;
    else if (metadata && metadata->kind != LX_V_NONE)
        return lx_fail(LX_ERR_TYPE, "parameter metadata must be a mapping (tree) or None, got %s",
                       lx_kind_name(metadata->kind));
    LX_TRY(lx_init_check_partition_rank(init, ndim, shape));
    /* Names that come with the layer's metadata (kernel_metadata=...) meet the shape here: the
     * same rank rule as the initializer's (an alias is checked as the entry it names). */
    static const char *const sharding_keys[] = {"out_sharding", "sharding", "sharding_names"};
    for (int i = 0; md && i < 3; i++)
        LX_TRY(lx_sharding_rank_check_(type->name, "out_sharding", lx_tree_get(md, sharding_keys[i]), ndim, shape));
    lx_tree *merged = NULL;
    if (init->partitioning.kind != LX_PARTITION_NONE) {
        LX_TRY(merged_metadata(md, init, &merged));
        md = merged;
    }
    lx_array *value;
    bool owned = false;
    if (nnx_abstract_mode()) {
        value = lx_array_abstract(dtype, ndim, shape);
        owned = true;
    } else {
        value = lx_init_apply(init, key, dtype, init_ndim, init_shape);
        if (value && (init_ndim != ndim || (ndim > 0 && memcmp(init_shape, shape, sizeof *shape * (size_t)ndim) != 0))) {
            value = lx_array_reshape_view(value, ndim, shape);
            owned = true;
        }
    }
    lx_status s = value ? lx_variable_new_md(type, value, md, out)
                        : (lx_last_status() != LX_OK ? lx_last_status() : LX_ERR_INTERNAL);
    if (owned) lx_release(value);
    lx_tree_release(merged);
    return s;
}

lx_status nnx_param_new(const lx_vartype *type, const lx_initializer *init, lx_key key,
                        lx_dtype dtype, int ndim, const int64_t *shape, const lx_value *metadata,
                        lx_variable **out) {
    return nnx_param_new_reshaped(type, init, key, dtype, ndim, shape, ndim, shape, metadata, out);
}

lx_status nnx_sharding_metadata(int nnames, const char *const *names, const char *mesh, lx_tree **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_sharding_metadata: out is NULL");
    *out = NULL;
    if (nnames < 0 || nnames > LX_MAX_DIMS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_sharding_metadata: %d names; an array has 0 to %d axes to name",
                       nnames, LX_MAX_DIMS);
    if (nnames > 0 && !names) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_sharding_metadata: names is NULL");
    *out = lx_tree_new();
    if (!*out) return lx_last_status();
    lx_status s = lx_tree_set(*out, "out_sharding", lx_strs_v(nnames, names));
    if (s == LX_OK) s = lx_tree_set(*out, "mesh", mesh ? lx_str_v(mesh) : lx_none());
    if (s != LX_OK) {
        lx_tree_release(*out);
        *out = NULL;
    }
    return s;
}
