/* Internal structures of the Linen module system (not installed).
 *
 * One init/apply is a *frame*: the working copy of the variables tree, the rng streams, the
 * mutability, the `initializing` flag and every scope bound during the call. Scopes form a tree
 * that mirrors the module tree; a child scope lives as long as the frame, so its rng counters
 * persist across repeated calls (Flax keeps counters per (parent, child name)).
 */
#ifndef LINNX_LINEN_INTERNAL_H
#define LINNX_LINEN_INTERNAL_H

#include "../core/status_internal.h"
#include "linnx/linen.h"
#include "linnx/tree.h"

struct linen_module {
    const linen_type *type;
    int refcount;
    char *name;   /* Flax's name=..., NULL when unnamed */
    void *config; /* type->config_size bytes */
};

#define LINEN_FRAME_INLINE_RNGS 4
#define LINEN_FRAME_INLINE_KEEP 16

typedef struct linen_frame {
    /* The working tree {collection: {...}} (apply.c's working_tree). Collections the
     * mutability refuses may be the caller's own maps, so nothing may write to them: every
     * write goes through scope.c's store(), which only the mutability checks reach. */
    lx_tree *vars;
    linen_mutable mutable;  /* names borrowed from the init/apply call (it outlives the frame) */
    bool initializing;
    /* Nothing in `vars` can change during the call (apply with no mutable collection): scopes
     * may then remember where their maps are (linen_scope.own_params). */
    bool frozen;
    int nrngs;
    const char **rng_names; /* borrowed from the call, like the mutable names */
    lx_key *rng_keys;
    linen_scope *root;
    /* arrays handed out as borrowed (param, get_variable): kept alive until the frame ends */
    lx_array **keep;
    size_t nkeep, capkeep;
    /* inline storage for the arrays above, enough for the usual few streams and a small model */
    const char *rng_names_inline[LINEN_FRAME_INLINE_RNGS];
    lx_key rng_keys_inline[LINEN_FRAME_INLINE_RNGS];
    lx_array *keep_inline[LINEN_FRAME_INLINE_KEEP];
} linen_frame;

typedef struct linen_child {
    linen_scope *scope; /* bound under scope->name */
} linen_child;

typedef struct linen_cursor {
    const char *prefix; /* the type name (static) */
    int next;
} linen_cursor;

typedef struct linen_attr {
    char *name;
    linen_module *module;
} linen_attr;

/* A name taken in the current method call. The text ("name\0col\0") lives in `text`, or in
 * `heap` when it does not fit: reservations are made for every param on every apply, and an
 * inline copy spares a malloc each (the name itself may be a caller's stack buffer, so it has
 * to be copied). Offsets, not pointers, so the array can be moved. */
typedef struct linen_reservation {
    const linen_module *module; /* the submodule bound under the name (shared instances) */
    char *heap;                 /* the text when it does not fit `text`, else NULL */
    int col_off;                /* where the collection starts in the text; -1 for a submodule,
                                 * -2 for "params" (not copied) */
    char text[36];
} linen_reservation;

/* Inline capacities of a scope's small arrays: a typical layer reserves a few names and binds
 * a few children, so the common case allocates nothing beyond the scope itself. */
#define LINEN_SCOPE_INLINE_CHILDREN 2
#define LINEN_SCOPE_INLINE_CURSORS 2
#define LINEN_SCOPE_INLINE_RES 4

/* A scope is one allocation: the struct, then `names`, `rng_counters`, `path` and `name` in its
 * tail (linen_scope_new), since a frame builds its scopes afresh on every apply. */
struct linen_scope {
    linen_frame *frame;
    linen_scope *parent;
    linen_module *module; /* retained */
    char *name;           /* NULL at the root */
    char *path;           /* "/" at the root, "/A/B" below */
    int depth;            /* number of path components */
    const char **names;   /* the components, borrowed from each scope's name */
    uint32_t *rng_counters; /* one per frame stream */
    bool is_function;     /* a LINEN_TYPE_FUNCTION call: no variables, no children */
    bool pooled;          /* the block is a per-thread cached one (scope.c's scope_alloc) */
    bool lifted_body;     /* the body of a lifted transform (scan, vmap, remat): the lifted scope
                           * already named this path component, so the body's frame adds none */
    /* In a frozen frame: the scope's own map in "params" (NULL: none), looked up by the first
     * param the scope reads, so every later one is one lookup in it instead of a walk from the
     * root (params/A/B/name) - Dense reads two params per call on every apply. */
    const lx_tree *own_params;
    bool own_params_known;

    /* each array starts as the inline storage below and moves to the heap when it outgrows it */
    linen_child *children;
    int nchildren, capchildren;
    linen_cursor *cursors;
    int ncursors, capcursors;
    linen_reservation *res;
    int nres, capres;
    bool setup_done, in_setup;
    linen_attr *attrs;
    int nattrs, capattrs;
    int method_depth;

    /* last: linen_scope_new zeroes the fields above only (these are read below their counts) */
    linen_child children_inline[LINEN_SCOPE_INLINE_CHILDREN];
    linen_cursor cursors_inline[LINEN_SCOPE_INLINE_CURSORS];
    linen_reservation res_inline[LINEN_SCOPE_INLINE_RES];
};

/* scope.c */
lx_status linen_scope_new(linen_frame *f, linen_scope *parent, const char *name,
                          const linen_module *m, linen_scope **out);
void linen_scope_free(linen_scope *s);
/* Run `method` (by name, or `fn` when given) of the scope's module with the scope bound. */
lx_status linen_scope_run(linen_scope *s, const char *method, linen_method_fn fn,
                          const lx_call *call, lx_value *out);
/* A frame with room for nrngs streams (rng_names/rng_keys for the caller to fill), nothing
 * mutable, no variables; LX_ERR_NO_MEMORY. */
lx_status linen_frame_new(int nrngs, linen_frame **out);
void linen_frame_free(linen_frame *f);
/* "col/names[0]/.../names[depth-1]/name" (name NULL: stops at the names). Caller frees. */
char *linen_var_path(const char *col, int depth, const char *const *names, const char *name);
/* The entry at col/names[0]/.../names[depth-1] in a {collection: {...}} tree, or NULL. */
static inline const lx_value *linen_vars_walk(const lx_tree *vars, const char *col, int depth,
                                              const char *const *names) {
    const lx_value *v = lx_tree_get(vars, col);
    for (int i = 0; v && i < depth; i++) v = v->kind == LX_V_TREE ? lx_tree_get(v->u.tree, names[i]) : NULL;
    return v;
}
/* The Python rendering of a value's class: <class 'int'>. */

/* Checks a layer makes on clone(**overrides) that its `bind` makes at construction (Conv's bare
 * int kernel_size TypeError), where the field table alone would accept the value. */
lx_status linen_clone_check_(const linen_type *t, const lx_call *overrides);

#endif
