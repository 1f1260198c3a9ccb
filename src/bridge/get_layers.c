/* MaxText's ToNNX.get_layers(): the decoder-layer attributes of a wrapped decoder, in execution
 * order, each once. The attribute names are MaxText's decoder naming (maxtext-wrappers.md §1.4). */
#include <stdio.h>
#include <string.h>

#include "linnx/to_nnx.h"

typedef struct layers_ctx {
    nnx_module *m;
    lx_flat *out;
} layers_ctx;

/* The identity a value is de-duplicated by (Python's id()); NULL for plain values. */
static const void *identity(const lx_value *v) {
    switch (v->kind) {
    case LX_V_TREE: return v->u.tree;
    case LX_V_VARIABLE: return v->u.var;
    case LX_V_ARRAY: return v->u.array;
    case LX_V_PTR: return v->u.ptr.p;
    default: return NULL;
    }
}

static lx_status add(layers_ctx *cx, const char *name, const lx_value *v) {
    if (!v || v->kind == LX_V_NONE) return LX_OK;
    const void *id = identity(v);
    if (id)
        for (size_t i = 0; i < cx->out->len; i++)
            if (identity(&cx->out->items[i].value) == id) return LX_OK;
    return lx_flat_append(cx->out, name, *v);
}

/* A dynamic attribute by name (borrowed, viewed through *buf), or NULL: hasattr + getattr. */
static const lx_value *attr(const nnx_module *m, const char *name, lx_value *buf) {
    for (int i = 0; i < nnx_attr_count(m); i++)
        if (strcmp(nnx_attr_name(m, i), name) == 0) return nnx_getattr(m, name, buf) == LX_OK ? buf : NULL;
    return NULL;
}

/* A member of an attribute value: a tree entry, or an NNX module's attribute. */
static const lx_value *member(const lx_value *v, const char *name, lx_value *buf) {
    if (v->kind == LX_V_TREE) return lx_tree_get(v->u.tree, name);
    nnx_module *sub = nnx_module_from_value(v);
    if (sub && nnx_getattr(sub, name, buf) == LX_OK) return buf;
    lx_clear_error();
    return NULL;
}

static lx_status scanned(layers_ctx *cx, const char *name) {
    lx_value vb;
    const lx_value *v = attr(cx->m, name, &vb);
    if (!v) return LX_OK;
    if (strcmp(name, "layers_remainder") == 0) {
        /* getattr(val, 'num_of_layers', 0) == 0 -> skipped */
        lx_value buf;
        const lx_value *n = member(v, "num_of_layers", &buf);
        if (!n || n->kind != LX_V_INT || n->u.i == 0) return LX_OK;
    }
    return add(cx, name, v);
}

static lx_status unscanned(layers_ctx *cx, const char *prefix) {
    char name[128];
    for (int i = 0;; i++) {
        snprintf(name, sizeof name, "%s_%d", prefix, i);
        lx_value vb;
        const lx_value *v = attr(cx->m, name, &vb);
        if (!v) return LX_OK;
        LX_TRY(add(cx, name, v));
    }
}

static lx_status collect(layers_ctx *cx) {
    static const char *const BOTH1[] = {"dense_layers", "moe_layers", "moe_layers_outside_pipeline"};
    for (int i = 0; i < 3; i++) {
        LX_TRY(scanned(cx, BOTH1[i]));
        LX_TRY(unscanned(cx, BOTH1[i]));
    }
    lx_value pb;
    const lx_value *pm = attr(cx->m, "pipeline_module", &pb);
    if (pm) {
        lx_value buf;
        LX_TRY(add(cx, "pipeline_module/layers", member(pm, "layers", &buf)));
    }
    LX_TRY(scanned(cx, "scanned_blocks"));
    LX_TRY(scanned(cx, "layers"));
    LX_TRY(unscanned(cx, "layers"));
    LX_TRY(scanned(cx, "layers_remainder"));
    LX_TRY(scanned(cx, "layers_outside_pipeline"));
    LX_TRY(unscanned(cx, "layers_outside_pipeline"));
    if (cx->out->len) return LX_OK;
    static const char *const PREFIXES[] = {"dense_layers", "moe_layers", "layers", "scanned_blocks"};
    for (int i = 0; i < nnx_attr_count(cx->m); i++) {
        const char *name = nnx_attr_name(cx->m, i);
        for (int p = 0; p < 4; p++)
            if (strncmp(name, PREFIXES[p], strlen(PREFIXES[p])) == 0) {
                lx_value vb;
                LX_TRY(add(cx, name, attr(cx->m, name, &vb)));
                break;
            }
    }
    return LX_OK;
}

lx_status bridge_to_nnx_get_layers(nnx_module *m, lx_flat *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_layers: out is NULL");
    *out = (lx_flat){0};
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_layers: module is NULL");
    if (!bridge_is_to_nnx(m))
        return lx_fail(LX_ERR_TYPE, "get_layers: '%s' object is not a ToNNX module", m->type->name);
    layers_ctx cx = {m, out};
    lx_status s = collect(&cx);
    if (s != LX_OK) lx_flat_free(out);
    return s;
}
