/* Internal structures of ToLinen (not installed), shared by the files that make it up:
 *
 *   to_linen.c           the ToLinen Linen type: config, construction, method resolution,
 *                        linen_rngs_dict, and the call (init path, apply path)
 *   to_linen_instance.c  the cached abstract module instance an apply binds the caller's
 *                        variables into, and the write-back of what the method changed
 *   to_linen_pool.c      the process-wide pool of caches of released ToLinen modules
 *   to_linen_class.c     to_linen_class: <Base>ToLinen types with partial arguments
 *
 * Ownership: a tl_config (a linen_module's config) owns its ctor copy and its tl_state; the
 * state owns its cached instance, the stream names it was built under and the warned paths.
 */
#ifndef LINNX_BRIDGE_TO_LINEN_INTERNAL_H
#define LINNX_BRIDGE_TO_LINEN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "linnx/to_linen.h"
#include "../core/tree_internal.h"

#define TL_MAX_STREAMS 32

/* ------------------------------------------------------------------ the instance */

typedef struct tl_slot {
    char *path;               /* state path, "linear/kernel" */
    lx_variable *var;         /* retained */
    lx_array *placeholder;    /* the abstract value the module was built with, retained */
    char *col;                /* the Variable type's collection (a copy: registry names may
                               * be reset while a cache lives) */
    size_t order;             /* position in the module's flat state (Flax's write order) */
    char *segbuf;             /* the path split at '/', for lookups that allocate nothing */
    const char **segs;
    int nseg;
    /* per apply (borrowed from the Linen frame, which keeps them alive for the apply) */
    lx_array *bound;
    const lx_value *leaf;
} tl_slot;

typedef struct tl_inst {
    nnx_module *m;
    tl_slot *slots; /* sorted by path */
    size_t nslots;
    size_t *by_order; /* slot indices in flat-state order */
    bool has_rng;  /* keeps RNG streams: rebuilt per apply */
    bool has_tree; /* trees in dynamic attributes: a method may change them unseen */
} tl_inst;

typedef struct tl_extra { /* an incoming path the module did not have, inserted as a Variable */
    lx_variable *var;
    lx_array *bound;
} tl_extra;

typedef struct tl_change { /* a Variable the method changed, to be written back */
    const char *path;
    lx_variable *var;
    const char *col;
} tl_change;

/* ------------------------------------------------------------------ config and per-module state */

typedef struct tl_state {
    atomic_flag busy;
    bool cached;
    tl_inst cache;
    char *names[TL_MAX_STREAMS]; /* the stream names the cache was built under */
    int nnames;
    char **warned;
    size_t nwarned, capwarned;
    bool pool_checked; /* looked for a donated cache already */
} tl_state;

typedef struct tl_config {
    const nnx_type *nnx;
    lx_call ctor;   /* owned copy */
    bool skip_rng;
    bool metadata_none;
    bridge_metadata_fn metadata_fn; /* NULL: to_linen_var */
    void *metadata_user;
    tl_state *state;
} tl_config;

/* ------------------------------------------------------------------ small helpers */

static inline lx_status tl_oom(void) { return lx_fail(LX_ERR_NO_MEMORY, "ToLinen: out of memory"); }

static inline bool tl_is_ptr(const lx_value *v, const char *tag) {
    return v && v->kind == LX_V_PTR && v->u.ptr.p && v->u.ptr.tag && strcmp(v->u.ptr.tag, tag) == 0;
}

static inline const char *tl_type_label(const tl_config *cfg) { return cfg->nnx->name ? cfg->nnx->name : "?"; }

static inline lx_status tl_collection_of(const lx_variable *v, const char **col) {
    return lx_variable_name_from_type(lx_variable_type(v), true, col);
}

/* ------------------------------------------------------------------ to_linen.c */

/* A Variable as a Linen leaf, through the config's metadata_fn (default to_linen_var). */
lx_status tl_to_leaf(const tl_config *cfg, const lx_variable *v, lx_value *out);
/* Keyword readers shared by ToLinen's and to_linen_class's bind hooks. */
lx_status tl_read_metadata(const char *owner, const lx_value *v, tl_config *cfg);
lx_status tl_read_bool(const char *owner, const char *name, const lx_value *v, bool *out);

/* What a call of `method` on the ToLinen module `lm` refuses before anything is drawn or built
 * (its NNX method's resolution and signature), for ToNNX to check ahead of its stream draw.
 * *missing: the NNX type has no method of that name (Linen words that refusal: ask it).
 * LX_OK for a module that is not a ToLinen. */
lx_status tl_check_call_(const linen_module *lm, const char *method, const lx_call *call, bool *missing);

/* ------------------------------------------------------------------ to_linen_instance.c */

tl_state *tl_state_new(void); /* NULL when out of memory */
void tl_state_free(tl_state *st);
void tl_state_drop_cache(tl_state *st);

/* Describe a freshly built (abstract) module: its non-RNG Variables, sorted by path.
 * Takes the module reference (released on failure too). */
lx_status tl_inst_make(nnx_module *m, tl_inst *in);
void tl_inst_free(tl_inst *in);
/* The fast bind: true when every incoming leaf is exactly one slot's (then all are bound). */
bool tl_inst_bind_fast(tl_inst *in, const lx_tree *vars);
/* The full bind with precise errors and unknown-path warnings (noted in `state` when not NULL);
 * *extras (n) get the inserted Variables, which the caller releases and frees. */
lx_status tl_inst_bind_slow(linen_scope *s, const tl_config *cfg, tl_state *state, tl_inst *in,
                            const lx_tree *vars, tl_extra **extras, size_t *nextras, bool *inserted);
/* After the method: what changed (*out malloc'd, paths borrowed from the instance or `walk`). */
lx_status tl_inst_collect_changes(tl_inst *in, uint64_t epoch, const tl_extra *ex, size_t nex, tl_change **out,
                                  size_t *nout, lx_flat *walk, bool *same_structure);
lx_status tl_write_changes(linen_scope *s, const tl_config *cfg, tl_change *ch, size_t n);
/* Put the abstract placeholders back: the caller's arrays are released. */
void tl_inst_unbind(tl_inst *in);

/* ------------------------------------------------------------------ to_linen_pool.c */

/* Give a released module's state to the pool (takes cfg->ctor and cfg->state on success). */
bool tl_pool_donate(tl_config *c);
/* Move a matching pooled cache (and its warned paths) into `st`, which is empty and held. */
void tl_pool_adopt(const tl_config *c, tl_state *st);

#endif
