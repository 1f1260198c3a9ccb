/* The NNX graph API: split / merge / state / update / graphdef / clone / iter_graph.
 *
 * A module graph is walked depth first over each container's children in Flax's order (sorted
 * attribute names, list indices, sorted tree keys). The walk gives every module, tree and
 * Variable an index the first time it is seen; later sightings are references to that index, so
 * shared objects appear once in a state and come back shared from merge. The graphdef is the
 * walk's shape: node types, their config, Variable types, metadata and shapes, static values.
 */
#include <stdio.h>

#include "nnx_internal.h"
#include "../core/tree_internal.h"

/* ------------------------------------------------------------------ children */

static int child_cmp(const void *a, const void *b) {
    return strcmp(((const nnx_child *)a)->name, ((const nnx_child *)b)->name);
}

void nnx_children_free(nnx_children *c) {
    for (int i = 0; i < c->n; i++) free(c->items[i].name);
    free(c->items);
    c->items = NULL;
    c->n = 0;
}

static lx_status add_child(nnx_children *c, int *cap, const char *name, lx_value v, nnx_slot_kind slot,
                           int index) {
    if (c->n == *cap) {
        int ncap = *cap ? *cap * 2 : 8;
        nnx_child *ni = realloc(c->items, (size_t)ncap * sizeof *ni);
        if (!ni) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
        c->items = ni;
        *cap = ncap;
    }
    char *nm = nnx_strdup(name);
    if (!nm) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
    c->items[c->n++] = (nnx_child){nm, v, slot, index};
    return LX_OK;
}

bool nnx_module_child(const nnx_module *m, int i, const char **name, lx_value *v) {
    const nnx_type *t = m->type;
    if (i < t->nfields) {
        const nnx_field *f = &t->fields[i];
        void *p = nnx_field_ptr(m, f);
        *name = f->name;
        *v = lx_none();
        switch (f->kind) {
        case NNX_FIELD_VARIABLE:
            if (*(lx_variable **)p) *v = lx_var_v(*(lx_variable **)p);
            break;
        case NNX_FIELD_CHILD:
            if (*(nnx_module **)p) *v = nnx_module_v(*(nnx_module **)p);
            break;
        case NNX_FIELD_LIST: *v = nnx_list_v((nnx_list *)p); break;
        }
        return true;
    }
    i -= t->nfields;
    if (i >= nnx_attr_count(m)) return false;
    *name = m->attrs->names[i];
    *v = m->attrs->values[i];
    return true;
}

lx_status nnx_children_of(const lx_value *node, nnx_children *out) {
    out->n = 0;
    out->items = NULL;
    int cap = 0;
    lx_status s = LX_OK;
    nnx_module *m = nnx_module_from_value(node);
    nnx_list *l = nnx_list_from_value(node);
    if (m) {
        const char *name;
        lx_value v;
        for (int i = 0; s == LX_OK && nnx_module_child(m, i, &name, &v); i++)
            s = i < m->type->nfields ? add_child(out, &cap, name, v, NNX_SLOT_FIELD, i)
                                     : add_child(out, &cap, name, v, NNX_SLOT_ATTR, i - m->type->nfields);
        if (s == LX_OK && out->n > 1) qsort(out->items, (size_t)out->n, sizeof *out->items, child_cmp);
    } else if (l) {
        char buf[32];
        for (int i = 0; i < l->n && s == LX_OK; i++) {
            s = add_child(out, &cap, lx_dec_(buf, i), l->items[i], NNX_SLOT_LIST, i);
        }
    } else if (node->kind == LX_V_TREE && node->u.tree) {
        const lx_tree *t = node->u.tree;
        for (size_t i = 0; i < lx_tree_len(t) && s == LX_OK; i++)
            s = add_child(out, &cap, lx_tree_key(t, i), *lx_tree_at(t, i), NNX_SLOT_TREE, (int)i);
        if (s == LX_OK && out->n > 1) qsort(out->items, (size_t)out->n, sizeof *out->items, child_cmp);
    }
    if (s != LX_OK) nnx_children_free(out);
    return s;
}

/* ------------------------------------------------------------------ graphdefs */

typedef enum gd_kind { GD_MODULE, GD_LIST, GD_TREE, GD_VAR, GD_REF, GD_STATIC } gd_kind;

typedef struct gd_node gd_node;
struct gd_node {
    gd_kind kind;
    char *name;
    nnx_slot_kind slot;
    int slot_index;
    int index; /* MODULE/LIST/TREE/VAR: identity index; REF: the index referred to */
    /* MODULE */
    const nnx_type *type;
    void *buf; /* type->size bytes holding a copy of the config at config_offset */
    bool initializing;
    /* VAR */
    const lx_vartype *vtype;
    lx_tree *metadata;
    lx_array *shape; /* abstract: dtype and shape */
    /* STATIC */
    lx_value value;
    int n;
    gd_node *kids;
};

struct nnx_graphdef {
    gd_node root;
    int nindex;
};

static void gd_free_node(gd_node *g) {
    for (int i = 0; i < g->n; i++) gd_free_node(&g->kids[i]);
    free(g->kids);
    free(g->name);
    if (g->buf) {
        if (g->type->config_release) g->type->config_release((char *)g->buf + g->type->config_offset);
        if (g->type->config) lx_config_free(g->type->config, g->type->nconfig, (char *)g->buf + g->type->config_offset);
        free(g->buf);
    }
    if (g->metadata) lx_tree_release(g->metadata);
    lx_release(g->shape);
    lx_value_free(&g->value);
}

void nnx_graphdef_free(nnx_graphdef *g) {
    if (!g) return;
    gd_free_node(&g->root);
    free(g);
}

/* ------------------------------------------------------------------ flatten (the walk of split) */

typedef struct flat_ctx {
    nnx_ptrmap seen;
    int next;
    nnx_path path;
    lx_flat vars; /* (path, Variable) in walk order */
} flat_ctx;

static lx_status flatten_node(const lx_value *v, gd_node *g, flat_ctx *cx) {
    const void *id = nnx_identity(v);
    int idx;
    if (id && nnx_ptrmap_get(&cx->seen, id, &idx)) {
        g->kind = GD_REF;
        g->index = idx;
        return LX_OK;
    }
    if (id) {
        g->index = cx->next++;
        LX_TRY(nnx_ptrmap_put(&cx->seen, id, g->index));
    }
    nnx_module *m = nnx_module_from_value(v);
    if (v->kind == LX_V_VARIABLE) {
        lx_variable *var = v->u.var;
        lx_array *val = lx_variable_get_value(var);
        g->kind = GD_VAR;
        g->vtype = lx_variable_type(var);
        g->metadata = lx_tree_copy(lx_variable_metadata(var));
        if (!g->metadata) return lx_last_status();
        if (val) {
            g->shape = lx_array_abstract(val->dtype, val->ndim, val->shape);
            if (!g->shape) return lx_last_status();
        }
        return lx_flat_append(&cx->vars, nnx_path_str(&cx->path), *v);
    }
    if (!nnx_is_container(v)) {
        g->kind = GD_STATIC;
        return lx_value_dup(v, &g->value);
    }
    if (m) {
        g->kind = GD_MODULE;
        g->type = m->type;
        g->initializing = m->initializing;
        g->buf = calloc(1, m->type->size);
        if (!g->buf) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
        if (m->type->config) {
            void *cfg = (char *)g->buf + m->type->config_offset;
            lx_status cs = lx_config_copy(m->type->config, m->type->nconfig, cfg, nnx_config_ptr(m));
            if (cs != LX_OK) {
                /* A partial copy was never config_retain'ed: free what it holds and drop the
                 * buffer, so gd_free_node does not config_release it. */
                lx_config_free(m->type->config, m->type->nconfig, cfg);
                free(g->buf);
                g->buf = NULL;
                return cs;
            }
            if (m->type->config_retain) cs = m->type->config_retain(cfg);
            if (cs != LX_OK) { /* retain dropped what it took: the same as a failed copy */
                lx_config_free(m->type->config, m->type->nconfig, cfg);
                free(g->buf);
                g->buf = NULL;
                return cs;
            }
        }
    } else {
        g->kind = nnx_list_from_value(v) ? GD_LIST : GD_TREE;
    }
    nnx_children ch;
    LX_TRY(nnx_children_of(v, &ch));
    lx_status s = LX_OK;
    if (ch.n) {
        g->kids = calloc((size_t)ch.n, sizeof *g->kids);
        if (!g->kids) s = lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
    }
    for (int i = 0; i < ch.n && s == LX_OK; i++) {
        gd_node *k = &g->kids[i];
        g->n = i + 1;
        k->name = nnx_strdup(ch.items[i].name);
        if (!k->name) {
            s = lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
            break;
        }
        k->slot = ch.items[i].slot;
        k->slot_index = ch.items[i].index;
        size_t saved;
        s = nnx_path_push(&cx->path, ch.items[i].name, &saved);
        if (s == LX_OK) s = flatten_node(&ch.items[i].v, k, cx);
        nnx_path_pop(&cx->path, saved);
    }
    nnx_children_free(&ch);
    return s;
}

static lx_status flatten_graph(nnx_module *m, nnx_graphdef **gd, lx_flat *vars) {
    flat_ctx cx;
    memset(&cx, 0, sizeof cx);
    /* without gd (nnx.state, value_and_grad's split every step) the graphdef lives on the stack:
     * no heap block for it, so a training step's allocations do not depend on which model ran
     * before (tests/test_train_steady.c) */
    nnx_graphdef local;
    memset(&local, 0, sizeof local);
    nnx_graphdef *g = gd ? calloc(1, sizeof *g) : &local;
    if (!g) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
    lx_value root = nnx_module_v(m);
    lx_status s = flatten_node(&root, &g->root, &cx);
    g->nindex = cx.next;
    nnx_ptrmap_free(&cx.seen);
    free(cx.path.buf);
    if (s != LX_OK) {
        if (gd) nnx_graphdef_free(g);
        else gd_free_node(&local.root);
        lx_flat_free(&cx.vars);
        return s;
    }
    if (gd) *gd = g;
    else gd_free_node(&local.root);
    *vars = cx.vars;
    return LX_OK;
}

static lx_status check_module(const nnx_module *m, const char *fn) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: module is NULL", fn);
    return LX_OK;
}

/* Distribute (path, Variable) items into nout trees: item goes to the first filter that matches,
 * else to states[nfilters] when `rest`, else nowhere. */
static lx_status distribute(const lx_flat *vars, int nfilters, const nnx_filter *filters, bool rest,
                            lx_tree **states) {
    int nout = nfilters + (rest ? 1 : 0);
    for (int i = 0; i < nout; i++) states[i] = NULL;
    lx_status s = LX_OK;
    for (int i = 0; i < nout && s == LX_OK; i++)
        if (!(states[i] = lx_tree_new())) s = lx_last_status();
    for (size_t i = 0; i < vars->len && s == LX_OK; i++) {
        const lx_flat_item *it = &vars->items[i];
        int dst = rest ? nfilters : -1;
        for (int f = 0; f < nfilters; f++)
            if (nnx_filter_match(&filters[f], it->path, it->value.u.var)) {
                dst = f;
                break;
            }
        if (dst >= 0) s = lx_tree_set_path(states[dst], it->path, it->value);
    }
    if (s != LX_OK)
        for (int i = 0; i < nout; i++) {
            lx_tree_release(states[i]);
            states[i] = NULL;
        }
    return s;
}

lx_status nnx_split(nnx_module *m, int nfilters, const nnx_filter *filters, nnx_graphdef **graphdef,
                    lx_tree **states) {
    LX_TRY(check_module(m, "split"));
    if (!states) return lx_fail(LX_ERR_INVALID_ARGUMENT, "split: states is NULL");
    if (nfilters < 0 || (nfilters && !filters)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "split: bad filter list");
    if (graphdef) *graphdef = NULL;
    nnx_graphdef *g = NULL;
    lx_flat vars = {0};
    LX_TRY(flatten_graph(m, graphdef ? &g : NULL, &vars));
    lx_status s = distribute(&vars, nfilters, filters, true, states);
    lx_flat_free(&vars);
    if (s != LX_OK) {
        nnx_graphdef_free(g);
        return s;
    }
    if (graphdef) *graphdef = g;
    return LX_OK;
}

lx_status nnx_state(nnx_module *m, int nfilters, const nnx_filter *filters, lx_tree **state) {
    LX_TRY(check_module(m, "state"));
    if (!state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state: out is NULL");
    if (nfilters < 0 || (nfilters && !filters)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state: bad filter list");
    *state = NULL;
    lx_flat vars = {0};
    LX_TRY(flatten_graph(m, NULL, &vars));
    lx_status s;
    if (nfilters == 0) {
        s = distribute(&vars, 0, NULL, true, state);
    } else {
        nnx_filter any = NNX_ANY(nfilters, filters);
        s = distribute(&vars, 1, &any, false, state);
    }
    lx_flat_free(&vars);
    return s;
}

lx_status nnx_graphdef_of(nnx_module *m, nnx_graphdef **out) {
    LX_TRY(check_module(m, "graphdef"));
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "graphdef: out is NULL");
    *out = NULL;
    lx_flat vars = {0};
    LX_TRY(flatten_graph(m, out, &vars));
    lx_flat_free(&vars);
    return LX_OK;
}

/* ------------------------------------------------------------------ graphdef equality */

static bool config_equal(const nnx_type *t, const void *a, const void *b) {
    for (int i = 0; i < t->nconfig; i++) {
        lx_value va, vb;
        if (lx_config_get(t->config, t->nconfig, a, t->config[i].name, &va) != LX_OK ||
            lx_config_get(t->config, t->nconfig, b, t->config[i].name, &vb) != LX_OK)
            return false;
        if (va.kind == LX_V_PTR && vb.kind == LX_V_PTR && t->config[i].kind == LX_FIELD_OBJ) {
            if (memcmp(va.u.ptr.p, vb.u.ptr.p, t->config[i].size) != 0) return false;
        } else if (!lx_value_equal(&va, &vb)) {
            return false;
        }
    }
    return true;
}

static bool gd_equal(const gd_node *a, const gd_node *b) {
    if (a->kind != b->kind || a->n != b->n || a->index != b->index) return false;
    if ((a->name == NULL) != (b->name == NULL) || (a->name && strcmp(a->name, b->name) != 0)) return false;
    switch (a->kind) {
    case GD_MODULE:
        if (a->type != b->type || a->initializing != b->initializing) return false;
        if (a->type->config &&
            !config_equal(a->type, (char *)a->buf + a->type->config_offset, (char *)b->buf + b->type->config_offset))
            return false;
        break;
    case GD_VAR:
        if (a->vtype != b->vtype || !lx_tree_equal(a->metadata, b->metadata)) return false;
        if ((a->shape == NULL) != (b->shape == NULL)) return false;
        if (a->shape && (a->shape->dtype != b->shape->dtype || !lx_same_shape(a->shape, b->shape))) return false;
        break;
    case GD_STATIC:
        if (!lx_value_equal(&a->value, &b->value)) return false;
        break;
    default: break;
    }
    for (int i = 0; i < a->n; i++)
        if (!gd_equal(&a->kids[i], &b->kids[i])) return false;
    return true;
}

bool nnx_graphdef_equal(const nnx_graphdef *a, const nnx_graphdef *b) {
    if (!a || !b) return a == b;
    return a->nindex == b->nindex && gd_equal(&a->root, &b->root);
}

/* ------------------------------------------------------------------ merge (unflatten) */

typedef struct unflat_ctx {
    lx_value *objs; /* index -> borrowed object */
    int nobjs;
    int nstates;
    lx_tree *const *states;
    nnx_path path;
    char **used; /* Variable paths taken from the states */
    size_t nused, capused;
    bool copy_arrays; /* clone: new Variables over copied arrays */
} unflat_ctx;

static lx_status note_used(unflat_ctx *cx, const char *path) {
    if (cx->nused == cx->capused) {
        size_t ncap = cx->capused ? cx->capused * 2 : 32;
        char **nu = realloc(cx->used, ncap * sizeof *nu);
        if (!nu) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
        cx->used = nu;
        cx->capused = ncap;
    }
    if (!(cx->used[cx->nused] = nnx_strdup(path))) return lx_fail(LX_ERR_NO_MEMORY, "nnx: out of memory");
    cx->nused++;
    return LX_OK;
}

static lx_status make_var(const gd_node *g, unflat_ctx *cx, lx_variable **out) {
    const char *path = nnx_path_str(&cx->path);
    const lx_value *leaf = NULL;
    for (int i = cx->nstates - 1; i >= 0 && !leaf; i--)
        if (cx->states[i]) leaf = lx_tree_find(cx->states[i], path);
    if (!leaf) {
        char sig[64] = "";
        if (g->shape) lx_array_sig(g->shape, sig, sizeof sig);
        return lx_fail(LX_ERR_NOT_FOUND, "merge: the state has no value for '%s' (a %s %s)", path,
                       g->vtype->name, sig);
    }
    LX_TRY(note_used(cx, path));
    if (leaf->kind == LX_V_VARIABLE) {
        if (!cx->copy_arrays) {
            *out = lx_variable_retain(leaf->u.var);
            return LX_OK;
        }
        lx_array *a = lx_array_copy(lx_variable_get_value(leaf->u.var));
        if (!a) return lx_last_status();
        lx_status s = lx_variable_new_md(lx_variable_type(leaf->u.var), a, lx_variable_metadata(leaf->u.var), out);
        lx_release(a);
        return s;
    }
    if (leaf->kind == LX_V_ARRAY && leaf->u.array)
        return lx_variable_new_md(g->vtype, leaf->u.array, g->metadata, out);
    return lx_fail(LX_ERR_TYPE, "merge: the state value at '%s' is %s, not a Variable or an array", path,
                   lx_kind_name(leaf->kind));
}

static lx_status unflatten_node(const gd_node *g, unflat_ctx *cx, lx_value *out);

static lx_status place_in_module(nnx_module *m, const gd_node *k, unflat_ctx *cx) {
    if (k->slot == NNX_SLOT_FIELD && k->kind == GD_LIST) {
        if (k->slot_index < 0 || k->slot_index >= m->type->nfields) return lx_fail(LX_ERR_INTERNAL, "merge: bad field");
        nnx_list *l = (nnx_list *)nnx_field_ptr(m, &m->type->fields[k->slot_index]);
        cx->objs[k->index] = nnx_list_v(l);
        for (int i = 0; i < k->n; i++) {
            lx_value item;
            size_t saved;
            LX_TRY(nnx_path_push(&cx->path, k->kids[i].name, &saved));
            lx_status s = unflatten_node(&k->kids[i], cx, &item);
            nnx_path_pop(&cx->path, saved);
            if (s != LX_OK) return s;
            s = nnx_list_append(l, item);
            lx_value_free(&item);
            if (s != LX_OK) return s;
        }
        return LX_OK;
    }
    lx_value v;
    LX_TRY(unflatten_node(k, cx, &v));
    lx_status s = LX_OK;
    if (k->slot == NNX_SLOT_FIELD) {
        const nnx_field *f = &m->type->fields[k->slot_index];
        void *p = nnx_field_ptr(m, f);
        if (f->kind == NNX_FIELD_VARIABLE && v.kind == LX_V_VARIABLE) {
            *(lx_variable **)p = v.u.var; /* takes the reference */
            return LX_OK;
        }
        if (f->kind == NNX_FIELD_CHILD && nnx_module_from_value(&v)) {
            *(nnx_module **)p = nnx_module_from_value(&v);
            return LX_OK;
        }
        if (v.kind != LX_V_NONE) s = lx_fail(LX_ERR_INTERNAL, "merge: field '%s' cannot hold %s", f->name, lx_kind_name(v.kind));
    } else {
        s = nnx_attrs_put(m, k->name, &v);
    }
    lx_value_free(&v);
    return s;
}

static lx_status unflatten_node(const gd_node *g, unflat_ctx *cx, lx_value *out) {
    *out = lx_none();
    switch (g->kind) {
    case GD_REF: {
        if (g->index < 0 || g->index >= cx->nobjs || cx->objs[g->index].kind == LX_V_NONE)
            return lx_fail(LX_ERR_INTERNAL, "merge: dangling reference %d", g->index);
        lx_value *o = &cx->objs[g->index];
        if (nnx_list_from_value(o)) return lx_fail(LX_ERR_UNSUPPORTED, "merge: a list field cannot be shared");
        return lx_value_dup(o, out); /* a module is retained */
    }
    case GD_STATIC: return lx_value_dup(&g->value, out);
    case GD_VAR: {
        lx_variable *v;
        LX_TRY(make_var(g, cx, &v));
        cx->objs[g->index] = lx_var_v(v);
        *out = lx_var_v(v);
        return LX_OK;
    }
    case GD_TREE: {
        lx_tree *t = lx_tree_new();
        if (!t) return lx_last_status();
        cx->objs[g->index] = lx_tree_v(t);
        lx_status s = LX_OK;
        for (int i = 0; i < g->n && s == LX_OK; i++) {
            lx_value kv;
            size_t saved;
            s = nnx_path_push(&cx->path, g->kids[i].name, &saved);
            if (s == LX_OK) s = unflatten_node(&g->kids[i], cx, &kv);
            nnx_path_pop(&cx->path, saved);
            if (s == LX_OK) s = lx_tree_set(t, g->kids[i].name, kv);
            lx_value_free(&kv);
        }
        if (s != LX_OK) {
            lx_tree_release(t);
            return s;
        }
        *out = lx_tree_v(t);
        return LX_OK;
    }
    case GD_LIST: return lx_fail(LX_ERR_INTERNAL, "merge: a list outside a list field");
    case GD_MODULE: {
        nnx_module *m;
        LX_TRY(nnx_module_alloc(g->type, &m));
        lx_status s = LX_OK;
        if (g->type->config) {
            s = lx_config_copy(g->type->config, g->type->nconfig, nnx_config_ptr(m),
                               (char *)g->buf + g->type->config_offset);
            if (s != LX_OK) {
                /* Never retained and no fields set yet: free what the copy holds, then the module. */
                lx_config_free(g->type->config, g->type->nconfig, nnx_config_ptr(m));
                free(m);
                return s;
            }
            if (g->type->config_retain) s = g->type->config_retain(nnx_config_ptr(m));
            if (s != LX_OK) { /* retain dropped what it took: the same as a failed copy */
                lx_config_free(g->type->config, g->type->nconfig, nnx_config_ptr(m));
                free(m);
                return s;
            }
        }
        m->initializing = g->initializing;
        cx->objs[g->index] = nnx_module_v(m);
        for (int i = 0; i < g->n && s == LX_OK; i++) {
            size_t saved;
            s = nnx_path_push(&cx->path, g->kids[i].name, &saved);
            if (s == LX_OK) s = place_in_module(m, &g->kids[i], cx);
            nnx_path_pop(&cx->path, saved);
        }
        if (s != LX_OK) {
            nnx_module_release(m);
            return s;
        }
        *out = nnx_module_v(m);
        return LX_OK;
    }
    }
    return lx_fail(LX_ERR_INTERNAL, "merge: bad graphdef node");
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static lx_status merge_impl(const nnx_graphdef *graphdef, int nstates, lx_tree *const *states, bool copy,
                            nnx_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "merge: out is NULL");
    *out = NULL;
    if (!graphdef) return lx_fail(LX_ERR_INVALID_ARGUMENT, "merge: graphdef is NULL");
    if (nstates < 0 || (nstates && !states)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "merge: bad state list");
    unflat_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.nobjs = graphdef->nindex;
    cx.objs = calloc((size_t)(cx.nobjs ? cx.nobjs : 1), sizeof *cx.objs);
    if (!cx.objs) return lx_fail(LX_ERR_NO_MEMORY, "merge: out of memory");
    cx.nstates = nstates;
    cx.states = states;
    cx.copy_arrays = copy;
    lx_value root;
    lx_status s = unflatten_node(&graphdef->root, &cx, &root);
    /* Every leaf of every state must have been used: a path the graph does not have is a
     * mistake (a misspelt name, a state from another model), never silently dropped. */
    if (s == LX_OK) {
        if (cx.nused > 1) qsort(cx.used, cx.nused, sizeof *cx.used, str_cmp);
        for (int i = 0; i < nstates && s == LX_OK; i++) {
            if (!states[i]) continue;
            lx_flat f = {0};
            s = lx_tree_flatten(states[i], &f);
            for (size_t j = 0; j < f.len && s == LX_OK; j++) {
                const char *p = f.items[j].path;
                if (!cx.nused || !bsearch(&p, cx.used, cx.nused, sizeof *cx.used, str_cmp))
                    s = lx_fail(LX_ERR_NOT_FOUND, "merge: the state has '%s', which the graphdef does not have", p);
            }
            lx_flat_free(&f);
        }
        if (s != LX_OK) lx_value_free(&root);
    }
    for (size_t i = 0; i < cx.nused; i++) free(cx.used[i]);
    free(cx.used);
    free(cx.objs);
    free(cx.path.buf);
    if (s != LX_OK) return s;
    *out = nnx_module_from_value(&root);
    return LX_OK;
}

lx_status nnx_merge(const nnx_graphdef *graphdef, int nstates, lx_tree *const *states, nnx_module **out) {
    return merge_impl(graphdef, nstates, states, false, out);
}

lx_status nnx_clone(nnx_module *m, nnx_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "clone: out is NULL");
    *out = NULL;
    LX_TRY(check_module(m, "clone"));
    nnx_graphdef *g;
    lx_tree *state;
    LX_TRY(nnx_split(m, 0, NULL, &g, &state));
    lx_status s = merge_impl(g, 1, &state, true, out);
    nnx_graphdef_free(g);
    lx_tree_release(state);
    return s;
}

/* ------------------------------------------------------------------ update */

/* nnx_update is all or nothing. Every path is resolved and everything a write needs is made
 * first, into a plan: the value to set (retained), a copy of a state Variable's metadata, the
 * value of a new attribute and room for it in the module, a copy of a tree attribute with the
 * new entries inserted. Only then is the model changed, by steps that cannot fail (pointer
 * swaps), so an allocation failure anywhere leaves it exactly as it was. */
typedef enum { UP_SET_VALUE, UP_FROM_STATE, UP_FILL_SLOT, UP_NEW_ATTR, UP_TREE_ATTR } up_kind;
typedef struct up_op {
    up_kind kind;
    lx_variable *var;   /* SET_VALUE / FROM_STATE: the model's Variable; FILL_SLOT: the state's (retained) */
    lx_array *value;    /* SET_VALUE / FROM_STATE: the new value (retained) */
    lx_tree *meta;      /* FROM_STATE: the new metadata (owned); NULL when it is already equal */
    lx_variable **slot; /* FILL_SLOT: a Variable field holding None */
    nnx_module *m;      /* NEW_ATTR / TREE_ATTR: the module whose attribute changes */
    char *name;         /* NEW_ATTR: the new attribute's name (owned) */
    int ai;             /* TREE_ATTR: the index of the tree attribute */
    lx_value v;         /* NEW_ATTR / TREE_ATTR: the attribute's new value (owned) */
} up_op;
typedef struct up_plan {
    up_op *ops;
    size_t n, cap;
} up_plan;

static lx_status plan_add(up_plan *p, up_op op, up_op **out) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 8;
        up_op *o = realloc(p->ops, cap * sizeof *o);
        if (!o) return lx_fail(LX_ERR_NO_MEMORY, "update: out of memory");
        p->ops = o;
        p->cap = cap;
    }
    p->ops[p->n] = op;
    if (out) *out = &p->ops[p->n];
    p->n++;
    return LX_OK;
}

static void plan_free(up_plan *p) {
    for (size_t i = 0; i < p->n; i++) {
        up_op *o = &p->ops[i];
        if (o->kind == UP_FILL_SLOT) lx_variable_release(o->var);
        lx_release(o->value);
        lx_tree_release(o->meta);
        free(o->name);
        lx_value_free(&o->v);
    }
    free(p->ops);
}

static up_op *plan_find(up_plan *p, up_kind kind, const nnx_module *m, const char *name, int ai) {
    for (size_t i = 0; i < p->n; i++) {
        up_op *o = &p->ops[i];
        if (o->kind == kind && o->m == m && (kind == UP_NEW_ATTR ? strcmp(o->name, name) == 0 : o->ai == ai)) return o;
    }
    return NULL;
}

/* The value to store for a new path: the leaf itself (last) or a new tree holding it at `rest`. */
static lx_status new_attr_value(const lx_value *leaf, const char *rest, lx_value *out) {
    *out = lx_none();
    if (!rest) return lx_value_dup(leaf, out);
    lx_tree *t = lx_tree_new();
    if (!t) return lx_last_status();
    lx_status s = lx_tree_set_path(t, rest, *leaf);
    if (s != LX_OK) {
        lx_tree_release(t);
        return s;
    }
    *out = lx_tree_v(t); /* the reference made above moves to the plan */
    return LX_OK;
}

/* Resolve `path` from the root and add what writing `leaf` there takes to the plan. Existing
 * Variables take the new value (and, from a Variable, its metadata) in place; unknown names
 * become dynamic attributes (inside a tree attribute: new entries of it). Earlier entries of the
 * same update are seen: a path under a planned new attribute or tree goes into that plan. */
static lx_status update_one(nnx_module *root, const char *path, const lx_value *leaf, up_plan *plan) {
    if (leaf->kind != LX_V_VARIABLE && leaf->kind != LX_V_ARRAY)
        return lx_fail(LX_ERR_TYPE, "update: the state value at '%s' is %s, not a Variable or an array",
                       path, lx_kind_name(leaf->kind));
    lx_array *newval = leaf->kind == LX_V_VARIABLE ? lx_variable_get_value(leaf->u.var) : leaf->u.array;
    if (!newval) return lx_fail(LX_ERR_INVALID_ARGUMENT, "update: the state value at '%s' holds no array", path);
    char *copy = nnx_strdup(path);
    if (!copy) return lx_fail(LX_ERR_NO_MEMORY, "update: out of memory");
    lx_value node = nnx_module_v(root);
    lx_status s = LX_OK;
    char *comp = copy;
    /* Inside a tree attribute: the module and attribute holding it, the path below it, and
     * whether the walk is in the plan's own copy of it (where entries may be inserted now). */
    nnx_module *tree_m = NULL;
    int tree_ai = -1;
    const char *tree_rel = NULL;
    bool in_copy = false;
    for (;;) {
        char *slash = strchr(comp, '/');
        if (slash) *slash = '\0';
        bool last = slash == NULL;
        const char *rest = last ? NULL : path + (slash + 1 - copy);
        nnx_module *m = nnx_module_from_value(&node);
        nnx_list *l = nnx_list_from_value(&node);
        lx_value next = lx_none();
        lx_variable **var_slot = NULL; /* a NULL Variable field that may take the leaf */
        if (m) {
            tree_m = NULL, tree_ai = -1, tree_rel = NULL, in_copy = false;
            const nnx_field *f = nnx_find_field(m->type, comp, NULL);
            int ai = nnx_attrs_find(m, comp);
            if (f) {
                void *p = nnx_field_ptr(m, f);
                if (f->kind == NNX_FIELD_VARIABLE) {
                    if (*(lx_variable **)p) next = lx_var_v(*(lx_variable **)p);
                    else var_slot = (lx_variable **)p;
                } else if (f->kind == NNX_FIELD_CHILD) {
                    if (*(nnx_module **)p) next = nnx_module_v(*(nnx_module **)p);
                    else {
                        s = lx_fail(LX_ERR_NOT_FOUND, "update: %s.%s is None; a state cannot create a module (at '%s')",
                                    m->type->name, comp, path);
                        break;
                    }
                } else {
                    next = nnx_list_v((nnx_list *)p);
                }
            } else if (ai >= 0) {
                next = m->attrs->values[ai];
                if (next.kind == LX_V_TREE) {
                    up_op *t = plan_find(plan, UP_TREE_ATTR, m, NULL, ai);
                    if (t) next = t->v, in_copy = true;
                    tree_m = m, tree_ai = ai, tree_rel = rest;
                }
            } else if (m->type->config && lx_config_find(m->type->config, m->type->nconfig, comp)) {
                s = lx_fail(LX_ERR_TYPE, "update: '%s' is a static attribute of %s, not state (at '%s')", comp,
                            m->type->name, path);
                break;
            } else {
                /* A new attribute: a Variable, or a tree of Variables for a longer path. */
                if (leaf->kind != LX_V_VARIABLE) {
                    s = lx_fail(LX_ERR_TYPE, "update: cannot insert a plain array at '%s'; wrap it in a Variable", path);
                    break;
                }
                up_op *o = plan_find(plan, UP_NEW_ATTR, m, comp, 0);
                if (o && !last && o->v.kind == LX_V_TREE) {
                    s = lx_tree_set_path(o->v.u.tree, rest, *leaf);
                } else if (o && !last) {
                    s = lx_fail(LX_ERR_TYPE, "update: '%s' reaches past a leaf at '%s'", path, comp);
                } else if (o) {
                    lx_value nv;
                    s = lx_value_dup(leaf, &nv);
                    if (s == LX_OK) lx_value_free(&o->v), o->v = nv;
                } else {
                    up_op op = {.kind = UP_NEW_ATTR, .m = m, .v = lx_none()};
                    op.name = nnx_strdup(comp);
                    s = op.name ? new_attr_value(leaf, rest, &op.v) : lx_fail(LX_ERR_NO_MEMORY, "update: out of memory");
                    if (s == LX_OK) s = plan_add(plan, op, NULL);
                    if (s != LX_OK) free(op.name), lx_value_free(&op.v);
                }
                break;
            }
        } else if (l) {
            tree_m = NULL, tree_ai = -1, tree_rel = NULL, in_copy = false;
            char *end;
            long i = strtol(comp, &end, 10);
            if (*comp == '\0' || *end != '\0' || i < 0 || i >= l->n) {
                s = lx_fail(LX_ERR_NOT_FOUND, "update: no item '%s' in a list of %d (at '%s')", comp, l->n, path);
                break;
            }
            next = l->items[i];
        } else if (node.kind == LX_V_TREE) {
            const lx_value *tv = lx_tree_get(node.u.tree, comp);
            if (!tv) {
                if (leaf->kind != LX_V_VARIABLE) {
                    s = lx_fail(LX_ERR_TYPE, "update: cannot insert a plain array at '%s'; wrap it in a Variable", path);
                    break;
                }
                if (in_copy) {
                    s = lx_tree_set_path(node.u.tree, last ? comp : path + (comp - copy), *leaf);
                } else if (!tree_m) {
                    s = lx_fail(LX_ERR_INTERNAL, "update: a tree outside a module attribute (at '%s')", path);
                } else {
                    /* The first insertion into this tree attribute: a copy of its map structure
                     * (leaves shared) takes the entry, and replaces the attribute at the end. */
                    up_op op = {.kind = UP_TREE_ATTR, .m = tree_m, .ai = tree_ai, .v = lx_none()};
                    lx_tree *t = lx_tree_copy(tree_m->attrs->values[tree_ai].u.tree);
                    s = t ? lx_tree_set_path(t, tree_rel, *leaf) : lx_last_status();
                    if (t) op.v = lx_tree_v(t);
                    if (s == LX_OK) s = plan_add(plan, op, NULL);
                    if (s != LX_OK) lx_value_free(&op.v);
                }
                break;
            }
            next = *tv;
        }
        if (last) {
            if (var_slot) {
                if (leaf->kind != LX_V_VARIABLE) {
                    s = lx_fail(LX_ERR_TYPE, "update: '%s' is None; only a Variable can fill it", path);
                } else {
                    up_op op = {.kind = UP_FILL_SLOT, .slot = var_slot, .var = lx_variable_retain(leaf->u.var), .v = lx_none()};
                    s = plan_add(plan, op, NULL);
                    if (s != LX_OK) lx_variable_release(op.var);
                }
            } else if (next.kind == LX_V_VARIABLE) {
                if (leaf->kind != LX_V_VARIABLE || next.u.var != leaf->u.var) {
                    up_op op = {.kind = leaf->kind == LX_V_VARIABLE ? UP_FROM_STATE : UP_SET_VALUE, .var = next.u.var,
                                .v = lx_none()};
                    /* Flax's Variable.update_from_state: the state Variable's value and metadata */
                    if (op.kind == UP_FROM_STATE &&
                        !lx_tree_equal(lx_variable_metadata(next.u.var), lx_variable_metadata(leaf->u.var)))
                        s = lx_meta_copy_(lx_variable_type(next.u.var)->name, lx_variable_metadata(leaf->u.var), &op.meta);
                    if (s == LX_OK) {
                        op.value = lx_retain(newval);
                        s = plan_add(plan, op, NULL);
                    }
                    if (s != LX_OK) lx_release(op.value), lx_tree_release(op.meta);
                }
            } else if (nnx_is_container(&next)) {
                s = lx_fail(LX_ERR_TYPE, "update: '%s' is a node, not a Variable", path);
            } else {
                s = lx_fail(LX_ERR_TYPE, "update: '%s' holds a static value (%s), not a Variable", path,
                            lx_kind_name(next.kind));
            }
            break;
        }
        if (!nnx_is_container(&next)) {
            s = lx_fail(LX_ERR_TYPE, "update: '%s' reaches past a leaf at '%.*s'", path,
                        (int)(comp - copy + strlen(comp)), path);
            break;
        }
        node = next;
        comp = slash + 1;
    }
    free(copy);
    return s;
}

/* Room for the planned new attributes of every module, made before anything changes. */
static lx_status plan_reserve(up_plan *p) {
    for (size_t i = 0; i < p->n; i++) {
        if (p->ops[i].kind != UP_NEW_ATTR) continue;
        bool first = true;
        int k = 0;
        for (size_t j = 0; j < p->n; j++)
            if (p->ops[j].kind == UP_NEW_ATTR && p->ops[j].m == p->ops[i].m) {
                if (j < i) first = false;
                k++;
            }
        if (first) LX_TRY(nnx_attrs_reserve(p->ops[i].m, k));
    }
    return LX_OK;
}

/* Carry the plan out: only steps that cannot fail. */
static void plan_commit(up_plan *p) {
    for (size_t i = 0; i < p->n; i++) {
        up_op *o = &p->ops[i];
        switch (o->kind) {
        case UP_FROM_STATE:
            if (o->meta) {
                lx_tree_release(lx_variable_swap_meta_(o->var, o->meta));
                o->meta = NULL;
            }
            /* fall through */
        case UP_SET_VALUE:
            lx_variable_set_value(o->var, o->value, false); /* a non-NULL array: cannot fail */
            break;
        case UP_FILL_SLOT:
            lx_variable_release(*o->slot); /* NULL, or a fill planned earlier in this update */
            *o->slot = o->var;
            o->var = NULL;
            nnx_graph_changed();
            break;
        case UP_NEW_ATTR: {
            nnx_attrs *a = o->m->attrs; /* room reserved by plan_reserve */
            a->names[a->n] = o->name;
            a->values[a->n] = o->v;
            a->n++;
            o->name = NULL;
            o->v = lx_none();
            nnx_graph_changed();
            break;
        }
        case UP_TREE_ATTR:
            lx_value_free(&o->m->attrs->values[o->ai]);
            o->m->attrs->values[o->ai] = o->v;
            o->v = lx_none();
            nnx_graph_changed();
            break;
        }
    }
}

lx_status nnx_update(nnx_module *m, int nstates, lx_tree *const *states) {
    LX_TRY(check_module(m, "update"));
    if (nstates < 0 || (nstates && !states)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "update: bad state list");
    /* A NULL state is the result of a call that failed (the op protocol), never "no update":
     * refuse it, keeping the earlier message when there is one. */
    for (int i = 0; i < nstates; i++)
        if (!states[i])
            return lx_null_input("update: state %d is NULL", i);
    up_plan plan = {0};
    lx_status s = LX_OK;
    for (int i = 0; i < nstates && s == LX_OK; i++) {
        lx_flat f = {0};
        s = lx_tree_flatten(states[i], &f);
        for (size_t j = 0; j < f.len && s == LX_OK; j++) s = update_one(m, f.items[j].path, &f.items[j].value, &plan);
        lx_flat_free(&f);
    }
    if (s == LX_OK) s = plan_reserve(&plan);
    if (s == LX_OK) plan_commit(&plan);
    plan_free(&plan);
    return s;
}

/* ------------------------------------------------------------------ reachability */

static lx_status reach_node(const lx_value *v, const void *target, nnx_ptrmap *seen, bool *found) {
    if (*found) return LX_OK;
    const void *id = nnx_identity(v);
    if (id && id == target && nnx_is_container(v)) {
        *found = true;
        return LX_OK;
    }
    if (!id || !nnx_is_container(v) || nnx_ptrmap_get(seen, id, NULL)) return LX_OK;
    LX_TRY(nnx_ptrmap_put(seen, id, 0));
    nnx_children ch;
    LX_TRY(nnx_children_of(v, &ch));
    lx_status s = LX_OK;
    for (int i = 0; i < ch.n && s == LX_OK && !*found; i++) s = reach_node(&ch.items[i].v, target, seen, found);
    nnx_children_free(&ch);
    return s;
}

/* Does v hold a module (v itself, or a tree leaf at any depth)? Without one nothing can reach a
 * module: a sown tuple of Variables is checked with no allocation. */
static bool holds_module(const lx_value *v) {
    if (nnx_module_from_value(v)) return true;
    if (v->kind != LX_V_TREE || !v->u.tree) return false;
    for (size_t i = 0; i < lx_tree_len(v->u.tree); i++)
        if (holds_module(lx_tree_at(v->u.tree, i))) return true;
    return false;
}

lx_status nnx_reaches(const lx_value *from, const nnx_module *target, bool *found) {
    return nnx_reaches_node(from, target, found);
}

lx_status nnx_reaches_node(const lx_value *from, const void *target, bool *found) {
    *found = false;
    if (!from || !target || !holds_module(from)) return LX_OK;
    nnx_ptrmap seen;
    memset(&seen, 0, sizeof seen);
    lx_status s = reach_node(from, target, &seen, found);
    nnx_ptrmap_free(&seen);
    return s;
}

/* ------------------------------------------------------------------ iter_graph */

typedef struct iter_ctx {
    nnx_ptrmap seen;
    nnx_path path;
    nnx_visit_fn fn;
    void *user;
} iter_ctx;

static lx_status iter_node(const lx_value *v, iter_ctx *cx) {
    const void *id = nnx_identity(v);
    if (!id) return LX_OK; /* static values and None are not visited */
    if (nnx_ptrmap_get(&cx->seen, id, NULL)) return LX_OK;
    LX_TRY(nnx_ptrmap_put(&cx->seen, id, 0));
    if (nnx_is_container(v)) {
        nnx_children ch;
        LX_TRY(nnx_children_of(v, &ch));
        lx_status s = LX_OK;
        for (int i = 0; i < ch.n && s == LX_OK; i++) {
            size_t saved;
            s = nnx_path_push(&cx->path, ch.items[i].name, &saved);
            if (s == LX_OK) s = iter_node(&ch.items[i].v, cx);
            nnx_path_pop(&cx->path, saved);
        }
        nnx_children_free(&ch);
        if (s != LX_OK) return s;
    }
    return cx->fn(nnx_path_str(&cx->path), v, cx->user);
}

lx_status nnx_iter_graph(nnx_module *m, nnx_visit_fn fn, void *user) {
    LX_TRY(check_module(m, "iter_graph"));
    if (!fn) return lx_fail(LX_ERR_INVALID_ARGUMENT, "iter_graph: callback is NULL");
    iter_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.fn = fn;
    cx.user = user;
    lx_value root = nnx_module_v(m);
    lx_status s = iter_node(&root, &cx);
    nnx_ptrmap_free(&cx.seen);
    free(cx.path.buf);
    return s;
}

typedef struct {
    nnx_module **mods;
    size_t n, cap;
} module_list;

static lx_status collect_module(const char *path, const lx_value *node, void *user) {
    nnx_module *m = nnx_module_from_value(node);
    module_list *l = user;
    if (!m) return LX_OK;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        nnx_module **nm = realloc(l->mods, ncap * sizeof *nm);
        if (!nm) return lx_fail(LX_ERR_NO_MEMORY, "set_initializing: out of memory");
        l->mods = nm;
        l->cap = ncap;
    }
    l->mods[l->n++] = m;
    return LX_OK;
}

/* All or nothing: the walk (which allocates) collects the modules first; flags change only once
 * it has succeeded, so a failure never leaves part of the graph initializing. */
lx_status nnx_set_initializing(nnx_module *m, bool on) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "set_initializing: module is NULL");
    module_list l = {0};
    lx_status s = nnx_iter_graph(m, collect_module, &l);
    for (size_t i = 0; s == LX_OK && i < l.n; i++) l.mods[i]->initializing = on;
    free(l.mods);
    return s;
}

/* ------------------------------------------------------------------ states */

lx_status nnx_merge_state(int nstates, lx_tree *const *states, lx_tree **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "merge_state: out is NULL");
    *out = NULL;
    if (nstates < 0 || (nstates && !states)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "merge_state: bad state list");
    lx_tree *acc = lx_tree_new();
    if (!acc) return lx_last_status();
    for (int i = 0; i < nstates; i++) {
        if (!states[i]) continue;
        lx_tree *next;
        lx_status s = lx_tree_merge(acc, states[i], &next);
        lx_tree_release(acc);
        if (s != LX_OK) return s;
        acc = next;
    }
    *out = acc;
    return LX_OK;
}

lx_status nnx_state_flatten(const lx_tree *state, lx_flat *out) {
    if (!state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state_flatten: state is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state_flatten: out is NULL");
    return lx_tree_flatten(state, out);
}

lx_status nnx_state_unflatten(const lx_flat *flat, lx_tree **out) {
    if (!flat) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state_unflatten: flat is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state_unflatten: out is NULL");
    return lx_tree_unflatten(flat, out);
}

static void fprint_values(FILE *f, const lx_array *a, int max_values) {
    if (!a) {
        fputs(" None", f);
        return;
    }
    if (lx_is_abstract(a)) {
        fputs(" (abstract)", f);
        return;
    }
    int64_t n = a->size;
    int64_t shown = max_values < 0 || n <= max_values ? n : max_values;
    for (int64_t i = 0; i < shown; i++) {
        double x = lx_array_get(a, i);
        if (a->dtype == LX_F32 || a->dtype == LX_BF16) fprintf(f, " %.9g", x);
        else fprintf(f, " %.0f", x);
    }
    if (shown < n) fputs(" ...", f);
}

lx_status nnx_state_fprint(FILE *f, const lx_tree *state, int max_values) {
    if (!f) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state_fprint: FILE is NULL");
    if (!state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "state_fprint: state is NULL");
    lx_flat flat = {0};
    LX_TRY(lx_tree_flatten(state, &flat));
    for (size_t i = 0; i < flat.len; i++) {
        const lx_value *v = &flat.items[i].value;
        const lx_array *a = NULL;
        const char *type = NULL;
        bool rng = false;
        if (v->kind == LX_V_VARIABLE) {
            const lx_vartype *t = lx_variable_type(v->u.var);
            type = t->name;
            rng = lx_vartype_is(t, &lx_RngState);
            a = lx_variable_get_value(v->u.var);
        } else if (v->kind == LX_V_ARRAY) {
            type = "Array";
            a = v->u.array;
        }
        if (!type) {
            char buf[128];
            fprintf(f, "%s %s: %s\n", flat.items[i].path, lx_kind_name(v->kind), lx_value_str(v, buf, sizeof buf));
            continue;
        }
        char sig[96] = "None";
        if (a) lx_array_sig(a, sig, sizeof sig);
        fprintf(f, "%s %s %s:", flat.items[i].path, type, sig);
        fprint_values(f, a, max_values);
        fputs(rng ? " [rng]\n" : "\n", f);
    }
    lx_flat_free(&flat);
    return LX_OK;
}

lx_status nnx_module_fprint_state(FILE *f, nnx_module *m, int max_values) {
    lx_tree *s;
    LX_TRY(nnx_state(m, 0, NULL, &s));
    lx_status st = nnx_state_fprint(f, s, max_values);
    lx_tree_release(s);
    return st;
}
