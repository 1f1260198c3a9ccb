/* Internal to src/nnx: the attribute view every graph function walks, and small helpers. */
#ifndef LINNX_NNX_INTERNAL_H
#define LINNX_NNX_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#include "linnx/nnx.h"

#define NNX_TAG_MODULE "nnx_module"
#define NNX_TAG_LIST "nnx_list"

/* Dynamic attributes: an ordered (insertion order) list of owned names and values. */
struct nnx_attrs {
    int n, cap;
    char **names;
    lx_value *values; /* lx_value_dup'ed (a module value is retained: value.h counted pointers) */
};

/* Where an attribute lives, so graph code can read and replace it. */
typedef enum nnx_slot_kind {
    NNX_SLOT_FIELD, /* a field of the type's table */
    NNX_SLOT_ATTR,  /* a dynamic attribute */
    NNX_SLOT_LIST,  /* an item of an nnx_list */
    NNX_SLOT_TREE   /* an entry of a tree (held by a dynamic attribute) */
} nnx_slot_kind;

/* One child of a container node, as a borrowed view. */
typedef struct nnx_child {
    char *name;        /* owned by the child list */
    lx_value v;        /* borrowed view: VARIABLE, PTR nnx_module, PTR nnx_list, TREE, NONE, static */
    nnx_slot_kind slot;
    int index;         /* field index, attr index or list index */
} nnx_child;

typedef struct nnx_children {
    int n;
    nnx_child *items;
} nnx_children;

/* The children of a container (module, list or tree) sorted as Flax's graph flatten sorts them.
 * Non-containers have none. */
lx_status nnx_children_of(const lx_value *node, nnx_children *out);
/* The i-th child of a module, unsorted and without copying anything (fields first, then dynamic
 * attributes; an empty field is None): false past the last. nnx_children_of lists these; the
 * frame lookups (module.c), which run on every intercepted op, walk them without allocating. */
bool nnx_module_child(const nnx_module *m, int i, const char **name, lx_value *v);
void nnx_children_free(nnx_children *c);

/* Is `target` reachable from `from` (from is target, or holds it through fields, attributes,
 * lists and trees, at any depth)? Shared subgraphs are walked once. Storing such a value in
 * target would make a reference cycle, which counted references never free. */
lx_status nnx_reaches(const lx_value *from, const nnx_module *target, bool *found);
/* The same for any container node: a module or a list (a list lives inside its module, so a value
 * reaching the list reaches the module that holds it). */
lx_status nnx_reaches_node(const lx_value *from, const void *target, bool *found);

/* Value views. */
static inline lx_value nnx_list_v(nnx_list *l) { return lx_ptr_v(NNX_TAG_LIST, l); }
nnx_list *nnx_list_from_value(const lx_value *v);
bool nnx_is_container(const lx_value *v);
/* Identity of a graph object (module, list, tree or Variable) for sharing, or NULL. */
const void *nnx_identity(const lx_value *v);

/* Field storage. */
static inline void *nnx_field_ptr(const nnx_module *m, const nnx_field *f) {
    return (char *)m + f->offset;
}
static inline void *nnx_config_ptr(const nnx_module *m) {
    return (char *)m + m->type->config_offset;
}
const nnx_field *nnx_find_field(const nnx_type *t, const char *name, int *index);

/* Allocate a module of `type` with refcount 1, zeroed (no config bound, no init run). */
lx_status nnx_module_alloc(const nnx_type *type, nnx_module **out);

/* Attributes. */
int nnx_attrs_find(const nnx_module *m, const char *name);
/* Make room for `extra` more dynamic attributes without adding any (LX_ERR_NO_MEMORY). */
lx_status nnx_attrs_reserve(nnx_module *m, int extra);
/* Put (dup'ed) a value under name, replacing an existing one in place. No validation. */
lx_status nnx_attrs_put(nnx_module *m, const char *name, const lx_value *value);

/* Structural changes (nnx_graph_epoch). */
void nnx_graph_changed(void);

/* Strings. */
char *nnx_strdup(const char *s);

/* Abstract mode depth (nnx_eval_shape nests it). */
void nnx_abstract_push(void);
void nnx_abstract_pop(void);

/* A small pointer -> int map (identity of shared objects). */
typedef struct nnx_ptrmap {
    size_t cap, n;
    const void **keys;
    int *vals;
} nnx_ptrmap;
lx_status nnx_ptrmap_put(nnx_ptrmap *m, const void *k, int v);
bool nnx_ptrmap_get(const nnx_ptrmap *m, const void *k, int *v);
void nnx_ptrmap_free(nnx_ptrmap *m);

/* Path buffer helpers. */
typedef struct nnx_path {
    size_t len, cap;
    char *buf;
} nnx_path;
lx_status nnx_path_push(nnx_path *p, const char *name, size_t *saved);
static inline void nnx_path_pop(nnx_path *p, size_t saved) {
    p->len = saved;
    if (p->buf) p->buf[saved] = '\0';
}
static inline const char *nnx_path_str(const nnx_path *p) { return p->buf ? p->buf : ""; }

/* Rng internals shared with graph.c (reseed walks the graph). */
typedef struct nnx_rng_stream_config {
    char *tag;
} nnx_rng_stream_config;
typedef struct nnx_rng_stream {
    nnx_module base;
    nnx_rng_stream_config cfg;
    lx_variable *key;   /* RngKey uint32[2] */
    lx_variable *count; /* RngCount uint32[] */
} nnx_rng_stream;

/* ---- layer helpers (layers_common.c) ---- */
/* rngs.params(): with no Rngs, Flax's "missing 1 required keyword-only argument: 'rngs'". */
lx_status nnx_draw_params(const nnx_module *self, nnx_rngs *rngs, lx_key *key);
/* Draw a key from rngs.params() and make a parameter of `type` (flat_ndim > 0: initialised with
 * flat_shape, then reshaped to shape, as LinearGeneral does). */
lx_status nnx_make_param(const nnx_module *self, nnx_rngs *rngs, const lx_vartype *type,
                         const lx_initializer *init, lx_dtype dtype, int ndim, const int64_t *shape,
                         int flat_ndim, const int64_t *flat_shape, const lx_value *metadata,
                         lx_variable **out);
/* A method's array result: *out takes a reference; a NULL y reports the failure. */
/* Run a method-table entry (fn, or array_fn over positional 0) of m, in the current frame. */
lx_status nnx_run_entry_(nnx_module *m, const nnx_method *f, const lx_call *call, lx_value *out);

/* A typed forward (nnx_linear_forward) called directly runs in m's module frame, as nnx_call
 * would run it: enter returns 1 (pushed), 0 (m's frame is already the innermost: nothing
 * pushed) or -1 (out of memory, message recorded); leave pops what enter pushed. */
int nnx_frame_enter_(nnx_module *m);
void nnx_frame_leave_(int entered, bool ok);
/* In a typed forward: return `call_` evaluated inside m_'s module frame. */
#define NNX_FRAMED_FORWARD(m_, call_)                      \
    do {                                                   \
        int nnx_fe_ = nnx_frame_enter_((nnx_module *)(m_)); \
        if (nnx_fe_ < 0) return NULL;                      \
        lx_array *nnx_fy_ = (call_);                       \
        if (!nnx_fy_ && !lx_error_pending())               \
            lx_fail(LX_ERR_FAILED_INPUT, "%s: an input is NULL", __func__); \
        nnx_frame_leave_(nnx_fe_, nnx_fy_ != NULL);        \
        return nnx_fy_;                                    \
    } while (0)
/* The value of a Variable field (NULL when the field is None). */
static inline lx_array *nnx_value_of(lx_variable *v) { return v ? lx_variable_get_value(v) : NULL; }

#endif
