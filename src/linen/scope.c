/* Scopes: what a bound Linen module sees as `self` (flax/core/scope.py + flax/linen/module.py).
 *
 * Variables live in the frame's working tree at collection/path.../name. Names handed to a
 * scope in one method call are reserved (Flax's NameInUseError) until the outermost method call
 * on that scope returns; then the scope is "rewound": reservations and auto-name cursors reset,
 * rng counters kept.
 */
#include "../core/signature.h"
#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linen_internal.h"
#include "linnx/intercept.h"
#include "../core/frame_internal.h"
#include "linnx/box.h"
#include "../core/team.h"

static lx_status oom(void) { return lx_fail(LX_ERR_NO_MEMORY, "linen: out of memory"); }

/* Grow *arr (of *cap elements of size sz) so it holds at least n+1. `inl` is the array's
 * inline storage in its scope: the first growth past it copies to the heap. */
static lx_status grow(void **arr, int *cap, int n, size_t sz, void *inl) {
    if (n < *cap) return LX_OK;
    int nc = *cap ? *cap * 2 : 4;
    bool moving = inl && *arr == inl;
    void *p = moving ? malloc((size_t)nc * sz) : realloc(*arr, (size_t)nc * sz);
    if (!p) return oom();
    if (moving) memcpy(p, inl, (size_t)n * sz);
    *arr = p;
    *cap = nc;
    return LX_OK;
}

/* ---- the current-module stack (Flax's _context.module_stack) ---- */
#define LINEN_STACK_MAX 256
static _Thread_local linen_scope *stack_[LINEN_STACK_MAX];
static _Thread_local int nstack_;

linen_scope *linen_current_scope(void) { return nstack_ > 0 ? stack_[nstack_ - 1] : NULL; }

/* ---- frames ---- */
static lx_status frame_keep(linen_frame *f, lx_array *a) {
    if (!a) return LX_OK;
    if (f->nkeep == f->capkeep) {
        size_t nc = f->capkeep * 2;
        bool moving = f->keep == f->keep_inline;
        lx_array **p = moving ? malloc(nc * sizeof *p) : realloc(f->keep, nc * sizeof *p);
        if (!p) return oom();
        if (moving) memcpy(p, f->keep_inline, f->nkeep * sizeof *p);
        f->keep = p;
        f->capkeep = nc;
    }
    f->keep[f->nkeep++] = lx_retain(a);
    return LX_OK;
}

lx_status linen_frame_new(int nrngs, linen_frame **out) {
    *out = NULL;
    linen_frame *f = calloc(1, sizeof *f);
    if (!f) return oom();
    f->nrngs = nrngs;
    if (nrngs > LINEN_FRAME_INLINE_RNGS) {
        f->rng_names = calloc((size_t)nrngs, sizeof *f->rng_names);
        f->rng_keys = calloc((size_t)nrngs, sizeof *f->rng_keys);
    } else {
        f->rng_names = f->rng_names_inline;
        f->rng_keys = f->rng_keys_inline;
    }
    f->keep = f->keep_inline;
    f->capkeep = LINEN_FRAME_INLINE_KEEP;
    if (!f->rng_names || !f->rng_keys) {
        linen_frame_free(f);
        return oom();
    }
    *out = f;
    return LX_OK;
}

void linen_frame_free(linen_frame *f) {
    if (!f) return;
    linen_scope_free(f->root);
    for (size_t i = 0; i < f->nkeep; i++) lx_release(f->keep[i]);
    if (f->keep != f->keep_inline) free(f->keep);
    lx_tree_release(f->vars);
    if (f->rng_names != f->rng_names_inline) free(f->rng_names);
    if (f->rng_keys != f->rng_keys_inline) free(f->rng_keys);
    free(f);
}

/* ---- scopes ----
 * A frame builds its scopes afresh on every apply, so their blocks come from a per-thread free
 * list of fixed-size blocks (a scope with a very long path takes malloc's): two heap calls per
 * scope per apply were a tenth of a batch-1 Dense's apply. Freed when the thread ends (a pthread
 * key's destructor). Off under the sanitizers, like ll_new's module cache. */
#if defined(__SANITIZE_ADDRESS__)
#define SCOPE_CACHE_ON 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SCOPE_CACHE_ON 0
#endif
#endif
#ifndef SCOPE_CACHE_ON
#define SCOPE_CACHE_ON 1
#endif
enum { SCOPE_BLOCK = 768, SCOPE_FREE_MAX = 64 };
_Static_assert(sizeof(linen_scope) + 128 <= SCOPE_BLOCK, "a usual scope fits a cached block");
typedef union scope_block {
    union scope_block *next;
    max_align_t align_;
} scope_block;
static _Thread_local scope_block *scope_free_;
static _Thread_local int scope_nfree_;
static _Thread_local bool scope_registered_, scope_dead_;
static pthread_key_t scope_exit_key;
static pthread_once_t scope_exit_once = PTHREAD_ONCE_INIT;

/* At the thread's exit the free list goes back to malloc (as heap.c's block cache does); a scope
 * freed after that (another key's destructor) goes straight to free. */
static void scope_on_thread_exit(void *p) {
    (void)p;
    while (scope_free_) {
        scope_block *b = scope_free_;
        scope_free_ = b->next;
        free(b);
    }
    scope_nfree_ = 0;
    scope_dead_ = true;
}
static void scope_make_key(void) { (void)lx_tls_key_create(&scope_exit_key, scope_on_thread_exit); }

static void *scope_alloc(size_t n, bool *pooled) {
    *pooled = SCOPE_CACHE_ON && n <= SCOPE_BLOCK && !scope_dead_;
    if (!*pooled) return malloc(n);
    if (!scope_registered_) {
        pthread_once(&scope_exit_once, scope_make_key);
        pthread_setspecific(scope_exit_key, &scope_registered_); /* non-NULL, so the destructor runs */
        scope_registered_ = true;
    }
    scope_block *b = scope_free_;
    if (b) {
        scope_free_ = b->next;
        scope_nfree_--;
        return b;
    }
    return malloc(SCOPE_BLOCK);
}

static void scope_block_free(linen_scope *s) {
    if (s->pooled && !scope_dead_ && scope_nfree_ < SCOPE_FREE_MAX) {
        scope_block *b = (scope_block *)(void *)s;
        b->next = scope_free_;
        scope_free_ = b;
        scope_nfree_++;
        return;
    }
    free(s);
}

lx_status linen_scope_new(linen_frame *f, linen_scope *parent, const char *name,
                          const linen_module *m, linen_scope **out) {
    int depth = parent ? parent->depth + (name ? 1 : 0) : 0;
    size_t nlen = name ? strlen(name) : 0;
    size_t pplen = parent ? strlen(parent->path) : 0;
    /* the path: "/" at the root, the parent's for a function, else parent + "/" + name */
    size_t plen = !parent ? 1 : !name ? pplen : parent->depth == 0 ? 1 + nlen : pplen + 1 + nlen;
    size_t names_off = sizeof(linen_scope);
    size_t counters_off = names_off + ((size_t)depth + 1) * sizeof(const char *);
    size_t path_off = counters_off + ((size_t)f->nrngs + 1) * sizeof(uint32_t);
    size_t name_off = path_off + plen + 1;
    bool pooled;
    linen_scope *s = scope_alloc(name_off + (name ? nlen + 1 : 0), &pooled);
    if (!s) return oom();
    memset(s, 0, offsetof(linen_scope, children_inline)); /* the inline arrays need no zeroing */
    s->pooled = pooled;
    memset((char *)s + names_off, 0, counters_off - names_off); /* names (NULL-ended) */
    memset((char *)s + counters_off, 0, ((size_t)f->nrngs + 1) * sizeof(uint32_t));
    char *base = (char *)s;
    s->frame = f;
    s->parent = parent;
    s->module = linen_module_retain((linen_module *)m);
    s->depth = depth;
    s->names = (const char **)(void *)(base + names_off);
    s->rng_counters = (uint32_t *)(void *)(base + counters_off);
    s->path = base + path_off;
    if (name) {
        s->name = base + name_off;
        memcpy(s->name, name, nlen + 1);
    }
    if (!parent) {
        memcpy(s->path, "/", 2);
    } else {
        for (int i = 0; i < parent->depth; i++) s->names[i] = parent->names[i];
        if (name) s->names[depth - 1] = s->name;
        char *p = s->path;
        if (!name || parent->depth > 0) {
            memcpy(p, parent->path, pplen);
            p += pplen;
        }
        if (name) {
            *p++ = '/';
            memcpy(p, name, nlen);
            p += nlen;
        }
        *p = '\0';
    }
    s->children = s->children_inline;
    s->capchildren = LINEN_SCOPE_INLINE_CHILDREN;
    s->cursors = s->cursors_inline;
    s->capcursors = LINEN_SCOPE_INLINE_CURSORS;
    s->res = s->res_inline;
    s->capres = LINEN_SCOPE_INLINE_RES;
    *out = s;
    return LX_OK;
}

/* The collection name of every param reservation: kept as this pointer, not copied. */
static const char PARAMS[] = "params";
enum { RES_SUBMODULE = -1, RES_PARAMS = -2 }; /* linen_reservation.col_off when not an offset */

static const char *res_name(const linen_reservation *r) { return r->heap ? r->heap : r->text; }
static const char *res_col(const linen_reservation *r) {
    if (r->col_off == RES_PARAMS) return PARAMS;
    return r->col_off < 0 ? NULL : res_name(r) + r->col_off;
}

static void clear_reservations(linen_scope *s) {
    for (int i = 0; i < s->nres; i++) {
        free(s->res[i].heap);
        linen_module_release((linen_module *)s->res[i].module);
    }
    s->nres = 0;
}

static void clear_attrs(linen_scope *s) {
    for (int i = 0; i < s->nattrs; i++) {
        free(s->attrs[i].name);
        linen_module_release(s->attrs[i].module);
    }
    s->nattrs = 0;
    s->setup_done = false;
}

void linen_scope_free(linen_scope *s) {
    if (!s) return;
    for (int i = 0; i < s->nchildren; i++) linen_scope_free(s->children[i].scope);
    if (s->children != s->children_inline) free(s->children);
    clear_reservations(s);
    if (s->res != s->res_inline) free(s->res);
    clear_attrs(s);
    free(s->attrs);
    if (s->cursors != s->cursors_inline) free(s->cursors);
    linen_module_release(s->module);
    scope_block_free(s); /* name, path, names and rng_counters live in the same block */
}

static void rewind_scope(linen_scope *s) {
    clear_reservations(s);
    s->ncursors = 0;
}

static const char *type_name(const linen_scope *s) {
    return s->module && s->module->type->name ? s->module->type->name : "Module";
}

/* Module-level names (param, variable, submodule) share one namespace: any earlier use of
 * `name` is a clash, except binding the same submodule instance again. Scope-level (sow) only
 * clashes within one collection or with a submodule. */
static lx_status reserve(linen_scope *s, const char *name, const char *col, const char *kind,
                         const linen_module *module, bool module_level) {
    for (int i = 0; i < s->nres; i++) {
        linen_reservation *r = &s->res[i];
        const char *rn = res_name(r);
        if (rn[0] != name[0] || strcmp(rn, name) != 0) continue;
        const char *rcol = res_col(r);
        if (!col && !rcol && r->module == module) return LX_OK;
        if (module_level || !rcol || !col || strcmp(rcol, col) == 0)
            return lx_fail(LX_ERR_EXISTS, "Could not create %s \"%s\" in Module %s: Name in use.", kind,
                           name, type_name(s));
    }
    LX_TRY(grow((void **)&s->res, &s->capres, s->nres, sizeof *s->res, s->res_inline));
    linen_reservation *r = &s->res[s->nres];
    size_t nlen = strlen(name) + 1, clen = col && col != PARAMS ? strlen(col) + 1 : 0;
    char *text = r->text;
    r->heap = NULL;
    if (nlen + clen > sizeof r->text) {
        if (!(r->heap = malloc(nlen + clen))) return oom();
        text = r->heap;
    }
    memcpy(text, name, nlen);
    if (clen) memcpy(text + nlen, col, clen);
    r->col_off = col == PARAMS ? RES_PARAMS : col ? (int)nlen : RES_SUBMODULE;
    /* Retained: a submodule is recognised by identity for the rest of the method call (the same
     * instance called twice keeps its name), so its address must not be reused meanwhile. */
    r->module = linen_module_retain((linen_module *)module);
    s->nres++;
    return LX_OK;
}

static lx_status check_var_name(const char *what, const char *name) {
    if (!name || !*name || strchr(name, '/'))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen: %s name '%s' must be non-empty and may not contain '/'",
                       what, name ? name : "(null)");
    return LX_OK;
}

static lx_status no_scope(const linen_scope *s, const char *what) {
    return lx_fail(LX_ERR_UNSUPPORTED, "%s: the function %s is not a Module and has no scope", what,
                   type_name(s));
}

char *linen_var_path(const char *col, int depth, const char *const *names, const char *name) {
    size_t n = strlen(col) + 2 + (name ? strlen(name) + 1 : 0);
    for (int i = 0; i < depth; i++) n += strlen(names[i]) + 1;
    char *p = malloc(n);
    if (!p) return NULL;
    size_t off = (size_t)snprintf(p, n, "%s", col);
    for (int i = 0; i < depth; i++) off += (size_t)snprintf(p + off, n - off, "/%s", names[i]);
    if (name) snprintf(p + off, n - off, "/%s", name);
    return p;
}

/* "col/A/B/name" (name may be NULL: the scope's own map in `col`). Caller frees. */
static char *var_path(const linen_scope *s, const char *col, const char *name) {
    return linen_var_path(col, s->depth, s->names, name);
}

static const lx_value *find_var_walk(const linen_scope *s, const char *col, const char *name) {
    const lx_value *v = linen_vars_walk(s->frame->vars, col, s->depth, s->names);
    if (v && name) v = v->kind == LX_V_TREE ? lx_tree_get(v->u.tree, name) : NULL;
    return v;
}

/* The entry at col/A/B.../name (name NULL: the scope's own map in `col`), or NULL. Walks the
 * maps one component at a time: this runs for every param of every layer on every apply, so it
 * builds no path string (and keys cannot hold '/', so this is exactly lx_tree_find). */
static const lx_value *find_var(const linen_scope *s, const char *col, const char *name) {
    if (s->frame->frozen && name && (col == PARAMS || strcmp(col, PARAMS) == 0)) {
        linen_scope *m = (linen_scope *)s; /* the cache only: what the scope sees is unchanged */
        if (!m->own_params_known) {
            const lx_value *own = find_var_walk(s, col, NULL);
            m->own_params = own && own->kind == LX_V_TREE ? own->u.tree : NULL;
            m->own_params_known = true;
        }
        return m->own_params ? lx_tree_get(m->own_params, name) : NULL;
    }
    return find_var_walk(s, col, name);
}

static bool collection_empty(const linen_scope *s, const char *col) {
    const lx_value *v = lx_tree_get(s->frame->vars, col);
    return !v || (v->kind == LX_V_TREE && lx_tree_len(v->u.tree) == 0);
}

/* The array a leaf holds (unboxed), or NULL. */
static lx_array *leaf_array(const lx_value *v) {
    if (v->kind == LX_V_ARRAY) return v->u.array;
    if (v->kind == LX_V_BOX) return lx_box_unbox(v->u.box);
    return NULL;
}

/* The leaf as the caller sees it (boxes unboxed); arrays are kept alive by the frame. */
static lx_status expose(linen_scope *s, const lx_value *leaf, lx_value *out) {
    lx_array *a = leaf_array(leaf);
    if (a) {
        LX_TRY(frame_keep(s->frame, a));
        *out = lx_array_v(a);
    } else {
        *out = *leaf;
    }
    return LX_OK;
}

/* The only write to the working tree. The caller checked that `col` is mutable: a refused
 * collection may be the caller's own map (apply.c's working_tree), which must stay untouched. */
static lx_status store(linen_scope *s, const char *col, const char *name, lx_value v) {
    assert(linen_mutable_allows(&s->frame->mutable, col));
    char *p = var_path(s, col, name);
    if (!p) return oom();
    lx_status st = lx_tree_set_path(s->frame->vars, p, v);
    free(p);
    return st;
}

/* ---- reading the bound module ---- */
const void *linen_config(const linen_scope *self) { return self ? self->module->config : NULL; }
const linen_module *linen_self(const linen_scope *self) { return self ? self->module : NULL; }
const char *linen_scope_name(const linen_scope *self) {
    return self && self->name ? self->name : "";
}
const char *linen_scope_path(const linen_scope *self) { return self ? self->path : ""; }
bool linen_is_initializing(const linen_scope *self) { return self && self->frame->initializing; }
bool linen_is_mutable_collection(const linen_scope *self, const char *collection) {
    return self && linen_mutable_allows(&self->frame->mutable, collection);
}
const linen_mutable *linen_scope_mutable(const linen_scope *self) {
    return self ? &self->frame->mutable : NULL;
}

/* ---- rngs ---- */
lx_status linen_make_rng(linen_scope *self, const char *stream, lx_key *out) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "make_rng: scope is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "make_rng: out is NULL");
    if (self->is_function) return no_scope(self, "make_rng");
    if (!stream) stream = "params";
    linen_frame *f = self->frame;
    int idx = -1, pidx = -1;
    for (int i = 0; i < f->nrngs; i++) {
        if (strcmp(f->rng_names[i], stream) == 0) idx = i;
        if (strcmp(f->rng_names[i], "params") == 0) pidx = i;
    }
    if (idx < 0) idx = pidx;
    if (idx < 0)
        return lx_fail(LX_ERR_RNG, "%s needs PRNG for \"%s\"", self->name ? self->name : "None", stream);
    uint32_t count = ++self->rng_counters[idx];
    *out = lx_linen_make_rng_key(f->rng_keys[idx], self->depth, self->names, count);
    return LX_OK;
}

int linen_rng_names(const linen_scope *self, const char **names, int cap) {
    if (!self) return 0;
    for (int i = 0; i < self->frame->nrngs && i < cap; i++) names[i] = self->frame->rng_names[i];
    return self->frame->nrngs;
}

/* ---- variables ---- */

/* A missing param outside init: Flax's two messages (the collection empty, or the name absent). */
static lx_status param_not_found(const linen_scope *self, const char *name) {
    if (collection_empty(self, "params"))
        return lx_fail(LX_ERR_NOT_FOUND,
                       "Tried to access \"%s\" from collection \"params\" in \"%s\" but the collection is empty.",
                       name, self->path);
    return lx_fail(LX_ERR_NOT_FOUND, "Could not find parameter named \"%s\" in scope \"%s\".", name, self->path);
}
lx_status linen_param(linen_scope *self, const char *name, const lx_initializer *init,
                      lx_dtype dtype, int ndim, const int64_t *shape, lx_array **out) {
    return linen_param_reshaped(self, name, init, dtype, ndim, shape, ndim, shape, out);
}

lx_status linen_param_reshaped(linen_scope *self, const char *name, const lx_initializer *init,
                               lx_dtype dtype, int ndim, const int64_t *shape, int init_ndim,
                               const int64_t *init_shape, lx_array **out) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "param: scope is NULL");
    if (!init) return lx_fail(LX_ERR_INVALID_ARGUMENT, "param: init is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "param: out is NULL");
    if ((ndim > 0 && !shape) || (init_ndim > 0 && !init_shape))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "param: shape is NULL");
    if (init_ndim < 0 || init_ndim > LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "param \"%s\": %d dimensions (at most %d)", name ? name : "?", init_ndim, LX_MAX_DIMS);
    *out = NULL;
    if (self->is_function) return no_scope(self, "param");
    LX_TRY(check_var_name("parameter", name));
    if (ndim < 0 || ndim > LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "param \"%s\": %d dimensions (at most %d)", name, ndim, LX_MAX_DIMS);
    LX_TRY(reserve(self, name, PARAMS, "param", NULL, true));
    const lx_value *v = find_var(self, PARAMS, name);
    if (v) {
        lx_array *a = leaf_array(v);
        if (!a)
            return lx_fail(LX_ERR_TYPE, "parameter \"%s\" in \"%s\" is a %s, not an array", name,
                           self->path, lx_kind_name(v->kind));
        if (!lx_shape_eq(a, ndim, shape)) {
            char have[96], want[96];
            return lx_fail(LX_ERR_SHAPE,
                           "For parameter \"%s\" in \"%s\", the given initializer is expected to "
                           "generate shape %s, but the existing parameter it received has shape %s.",
                           name, self->path, lx_shape_str(a->ndim, a->shape, have, sizeof have),
                           lx_shape_str(ndim, shape, want, sizeof want));
        }
        /* A frozen frame's tree is the caller's, unchanged until apply returns: its arrays need
         * no keeping (a mutable frame may replace the leaf while the method still holds it). */
        if (!self->frame->frozen) LX_TRY(frame_keep(self->frame, a));
        *out = a;
        return LX_OK;
    }
    /* Only when the param is made: like Flax, an existing param never meets its initializer. */
    if (lx_init_check_partition_rank(init, ndim, shape) != LX_OK)
        return lx_fail_context(lx_last_status(), "param \"%s\" in \"%s\": ", name, self->path);
    if (!linen_is_mutable_collection(self, "params")) return param_not_found(self, name);
    lx_key key;
    LX_TRY(linen_make_rng(self, "params", &key));
    lx_array *a = lx_init_apply(init, key, dtype, init_ndim, init_shape);
    if (a && (init_ndim != ndim || (ndim > 0 && memcmp(init_shape, shape, sizeof *shape * (size_t)ndim) != 0)))
        a = lx_autorelease(lx_array_reshape_view(a, ndim, shape));
    if (!a) return lx_fail_context(lx_last_status(), "param \"%s\" in \"%s\": ", name, self->path);
    if (init->partitioning.kind != LX_PARTITION_NONE) {
        /* with_partitioning: the variables hold the box (reshaped value inside, as Flax's
         * DenseGeneral replace_boxed does); the method gets the array (meta.unbox). */
        lx_box *box = NULL;
        if (lx_box_from_initializer(init, a, &box) != LX_OK)
            return lx_fail_context(lx_last_status(), "param \"%s\" in \"%s\": ", name, self->path);
        lx_status st = store(self, "params", name, lx_box_v(box));
        lx_box_release(box);
        LX_TRY(st);
    } else {
        LX_TRY(store(self, "params", name, lx_array_v(a)));
    }
    LX_TRY(frame_keep(self->frame, a));
    *out = a;
    return LX_OK;
}

lx_status linen_param_custom(linen_scope *self, const char *name, linen_init_fn fn, void *user,
                             lx_value *out) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "param: scope is NULL");
    if (!fn) return lx_fail(LX_ERR_INVALID_ARGUMENT, "param: fn is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "param: out is NULL");
    *out = lx_none();
    if (self->is_function) return no_scope(self, "param");
    LX_TRY(check_var_name("parameter", name));
    LX_TRY(reserve(self, name, PARAMS, "param", NULL, true));
    const lx_value *v = find_var(self, PARAMS, name);
    if (v) return expose(self, v, out);
    if (!linen_is_mutable_collection(self, "params")) return param_not_found(self, name);
    lx_key key;
    LX_TRY(linen_make_rng(self, "params", &key));
    lx_value leaf = lx_none();
    LX_TRY(fn(key, user, &leaf));
    lx_status st = store(self, "params", name, leaf);
    lx_value_free(&leaf);
    LX_TRY(st);
    return expose(self, find_var(self, "params", name), out);
}

lx_status linen_variable(linen_scope *self, const char *collection, const char *name,
                         linen_init_fn init_fn, void *user, lx_value *out) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "variable: scope is NULL");
    if (!collection) return lx_fail(LX_ERR_INVALID_ARGUMENT, "variable: collection is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "variable: out is NULL");
    *out = lx_none();
    if (self->is_function) return no_scope(self, "variable");
    LX_TRY(check_var_name("variable", name));
    LX_TRY(check_var_name("collection", collection));
    LX_TRY(reserve(self, name, collection, "variable", NULL, true));
    const lx_value *v = find_var(self, collection, name);
    if (!v) {
        if (!linen_is_mutable_collection(self, collection) || !init_fn) {
            if (collection_empty(self, collection))
                return lx_fail(LX_ERR_NOT_FOUND,
                               "Tried to access \"%s\" from collection \"%s\" in \"%s\" but the "
                               "collection is empty.",
                               name, collection, self->path);
            return lx_fail(LX_ERR_NOT_FOUND, "No Variable named \"%s\" for collection \"%s\" exists in \"%s\".",
                           name, collection, self->path);
        }
        lx_value leaf = lx_none();
        lx_key zero = {{0, 0}};
        LX_TRY(init_fn(zero, user, &leaf));
        lx_status st = store(self, collection, name, leaf);
        lx_value_free(&leaf);
        LX_TRY(st);
        v = find_var(self, collection, name);
    }
    return expose(self, v, out);
}

lx_status linen_get_variable(linen_scope *self, const char *collection, const char *name,
                             lx_value *out) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_variable: scope is NULL");
    if (!collection) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_variable: collection is NULL");
    if (!name) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_variable: name is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_variable: out is NULL");
    *out = lx_none();
    if (self->is_function) return no_scope(self, "get_variable");
    const lx_value *v = find_var(self, collection, name);
    if (!v)
        return lx_fail(LX_ERR_NOT_FOUND, "No Variable named \"%s\" for collection \"%s\" exists in \"%s\".",
                       name, collection, self->path);
    return expose(self, v, out);
}

bool linen_has_variable(const linen_scope *self, const char *collection, const char *name) {
    if (!self || !collection || !name || self->is_function) return false;
    return find_var(self, collection, name) != NULL;
}

lx_status linen_put_variable(linen_scope *self, const char *collection, const char *name,
                             const lx_value *value) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "put_variable: scope is NULL");
    if (!collection) return lx_fail(LX_ERR_INVALID_ARGUMENT, "put_variable: collection is NULL");
    if (!value) return lx_fail(LX_ERR_INVALID_ARGUMENT, "put_variable: value is NULL");
    if (self->is_function) return no_scope(self, "put_variable");
    LX_TRY(check_var_name("variable", name));
    LX_TRY(check_var_name("collection", collection));
    if (value->kind == LX_V_ARRAY && !value->u.array)
        return lx_error_pending() ? lx_last_status()
                                  : lx_fail(LX_ERR_FAILED_INPUT, "put_variable \"%s\": the value is NULL", name);
    if (!linen_is_mutable_collection(self, collection))
        return lx_fail(LX_ERR_IMMUTABLE, "Cannot update variable \"%s\" in \"%s\" because collection \"%s\" is immutable.",
                       name, self->path, collection);
    return store(self, collection, name, *value);
}

lx_status linen_variable_set(linen_scope *self, const char *collection, const char *name,
                             lx_array *value) {
    if (!value) {
        return lx_error_pending() ? lx_last_status() : lx_fail(LX_ERR_FAILED_INPUT, "variable \"%s\": value is NULL", name ? name : "?");
    }
    const lx_value *cur = self && collection && name && !self->is_function ? find_var(self, collection, name) : NULL;
    if (cur && cur->kind == LX_V_BOX && linen_is_mutable_collection(self, collection)) {
        lx_box *b = NULL;
        LX_TRY(lx_box_replace_boxed(cur->u.box, value, &b));
        lx_value bv = lx_box_v(b);
        lx_status st = linen_put_variable(self, collection, name, &bv);
        lx_box_release(b);
        return st;
    }
    lx_value v = lx_array_v(value);
    return linen_put_variable(self, collection, name, &v);
}

lx_status linen_variables(const linen_scope *self, lx_tree **out) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "variables: scope is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "variables: out is NULL");
    *out = NULL;
    lx_tree *t = lx_tree_new();
    if (!t) return oom();
    const lx_tree *vars = self->frame->vars;
    for (size_t i = 0; i < lx_tree_len(vars); i++) {
        /* Walk the scope's path component by component: no path string to build. */
        const lx_value *sub = self->is_function ? NULL : lx_tree_at(vars, i);
        for (int k = 0; sub && k < self->depth; k++)
            sub = sub->kind == LX_V_TREE ? lx_tree_get(sub->u.tree, self->names[k]) : NULL;
        const char *col = lx_tree_key(vars, i);
        if (!sub || sub->kind != LX_V_TREE) continue;
        lx_status st = lx_tree_set(t, col, *sub);
        if (st != LX_OK) {
            lx_tree_release(t);
            return st;
        }
    }
    *out = t;
    return LX_OK;
}

lx_status linen_sow(linen_scope *self, const char *collection, const char *name, lx_array *value) {
    if (!self || !name || !value) {
        if (!value) {
            return lx_error_pending() ? lx_last_status() : lx_fail(LX_ERR_FAILED_INPUT, "sow: value is NULL");
        }
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "sow: %s is NULL", !self ? "scope" : "name");
    }
    if (!collection) collection = "intermediates";
    if (!linen_is_mutable_collection(self, collection)) return LX_OK;
    if (self->is_function) return no_scope(self, "sow");
    LX_TRY(check_var_name("variable", name));
    const lx_value *cur = find_var(self, collection, name);
    lx_tree *tuple = NULL;
    if (cur) {
        if (cur->kind != LX_V_TREE)
            return lx_fail(LX_ERR_TYPE, "sow: \"%s\" in collection \"%s\" of \"%s\" is a %s, not a tuple", name,
                           collection, self->path, lx_kind_name(cur->kind));
        tuple = lx_tree_copy(cur->u.tree);
    } else {
        LX_TRY(reserve(self, name, collection, "variable", NULL, false));
        tuple = lx_tree_new();
    }
    if (!tuple) return oom();
    char key[32];
    snprintf(key, sizeof key, "%zu", lx_tree_len(tuple));
    lx_status st = lx_tree_set(tuple, key, lx_array_v(value));
    if (st == LX_OK) {
        lx_value tv = lx_tree_v(tuple);
        st = linen_put_variable(self, collection, name, &tv);
    }
    lx_tree_release(tuple);
    return st;
}

/* ---- methods ---- */
static lx_status no_attribute(const linen_scope *s, const char *name) {
    return lx_fail(LX_ERR_NOT_FOUND, "\"%s\" object has no attribute \"%s\".", type_name(s), name);
}

static lx_status run_setup(linen_scope *s) {
    const linen_type *t = s->module->type;
    if (!t->setup || s->setup_done || s->in_setup) return LX_OK;
    s->in_setup = true;
    lx_status st = t->setup(s);
    s->in_setup = false;
    if (st != LX_OK) {
        clear_attrs(s);
        return st;
    }
    s->setup_done = true;
    return LX_OK;
}

/* Is `a` one of the params directly in this scope (for op interceptors' operand roles)? */
static bool scope_holds_param(const void *obj, const lx_array *a) {
    const linen_scope *s = obj;
    const lx_value *own = find_var(s, "params", NULL);
    if (!own || own->kind != LX_V_TREE) return false;
    for (size_t i = 0; i < lx_tree_len(own->u.tree); i++) {
        const lx_value *leaf = lx_tree_at(own->u.tree, i);
        if (leaf->kind != LX_V_TREE && leaf_array(leaf) == a) return true;
    }
    return false;
}

lx_status linen_scope_run(linen_scope *s, const char *method, linen_method_fn fn,
                          const lx_call *call, lx_value *out) {
    const linen_type *t = s->module->type;
    const char *mname = method ? method : "__call__";
    linen_array_method_fn afn = NULL;
    bool use_dispatch = false;
    if (!fn) {
        for (int i = 0; i < t->nmethods; i++) {
            if (t->methods[i].name && (t->methods[i].name == mname || strcmp(t->methods[i].name, mname) == 0)) {
                fn = t->methods[i].fn;
                afn = t->methods[i].array_fn;
                if (t->method_sigs) LX_TRY(lx_call_check_sig(type_name(s), mname, t->method_sigs[i], call));
                break;
            }
        }
        if (!fn && !afn) {
            lx_value attr;
            if (lx_config_find(t->config, t->nconfig, mname) &&
                lx_config_get(t->config, t->nconfig, s->module->config, mname, &attr) == LX_OK)
                return lx_fail(LX_ERR_TYPE, "'%s.%s' must be a callable, got %s.", type_name(s), mname,
                               lx_value_pytype(&attr));
            if (!t->dispatch) return no_attribute(s, mname);
            use_dispatch = true;
        }
    }
    if (nstack_ >= LINEN_STACK_MAX)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen: modules nested deeper than %d", LINEN_STACK_MAX);
    lx_call none = LX_NO_CALL;
    if (!call) call = &none;
    *out = lx_none();
    /* Every method runs in a module frame: a scope adds its name to the path that failures and
     * op interceptors see (the name is lent: the scope outlives the call). */
    LX_TRY(lx_frame_enter_(LX_FRAME_LINEN, s->lifted_body ? "" : s->name, NULL, s, scope_holds_param));
    stack_[nstack_++] = s;
    s->method_depth++;
    lx_status st = run_setup(s);
    if (st == LX_OK) {
        if (fn) {
            st = fn(s, call, out);
        } else if (afn) {
            lx_array *x = NULL;
            const lx_value *xv = lx_call_get(call, 0, "inputs");
            if (!xv) xv = lx_call_kwarg(call, "x");
            if (!xv)
                st = lx_fail(LX_ERR_TYPE, "%s.%s() missing 1 required positional argument: 'inputs'",
                             type_name(s), mname);
            else if (xv->kind != LX_V_ARRAY)
                st = lx_fail(LX_ERR_TYPE, "%s.%s(): argument 'inputs' must be an array, got %s",
                             type_name(s), mname, lx_kind_name(xv->kind));
            else if (!(x = xv->u.array))
                st = lx_error_pending() ? lx_last_status()
                                        : lx_fail(LX_ERR_FAILED_INPUT, "%s.%s(): argument 'inputs' is NULL",
                                                  type_name(s), mname);
            if (st == LX_OK) st = linen_return_array(out, afn(s, x));
        } else if (use_dispatch) {
            /* NOT_FOUND with no message means "no such method"; with a message it is a
             * failure inside a method that exists, and must reach the caller as it is. */
            uint64_t gen = lx_error_generation();
            st = t->dispatch(s, mname, call, out);
            if (st == LX_ERR_NOT_FOUND && lx_error_generation() == gen) {
                lx_value attr;
                if (t->getattr && t->getattr(s->module, mname, &attr) == LX_OK)
                    st = lx_fail(LX_ERR_TYPE, "'%s.%s' must be a callable, got %s.", type_name(s), mname,
                                 lx_value_pytype(&attr));
                else
                    st = no_attribute(s, mname);
            }
        }
    }
    if (st != LX_OK) lx_value_free(out);
    if (--s->method_depth == 0) rewind_scope(s);
    nstack_--;
    lx_frame_leave_(st);
    return st;
}

/* ---- children ---- */
static lx_status autoname(linen_scope *s, const char *prefix, char *buf, size_t cap) {
    int i;
    for (i = 0; i < s->ncursors; i++)
        if (strcmp(s->cursors[i].prefix, prefix) == 0) break;
    if (i == s->ncursors) {
        LX_TRY(grow((void **)&s->cursors, &s->capcursors, s->ncursors, sizeof *s->cursors, s->cursors_inline));
        s->cursors[i].prefix = prefix;
        s->cursors[i].next = 0;
        s->ncursors++;
    }
    /* "<prefix>_<n>", written by hand: every compact child of every apply is named here */
    char digits[16];
    int nd = 0;
    for (unsigned n = (unsigned)s->cursors[i].next++; nd == 0 || n; n /= 10) digits[nd++] = (char)('0' + n % 10);
    size_t pl = strlen(prefix), len = pl + 1 + (size_t)nd, j;
    for (j = 0; j < len && j + 1 < cap; j++) /* cut at cap, as snprintf would */
        buf[j] = j < pl ? prefix[j] : j == pl ? '_' : digits[len - 1 - j];
    buf[j] = '\0';
    return LX_OK;
}

static lx_status call_function(linen_scope *self, const linen_module *child, const char *method,
                               const lx_call *call, lx_value *out) {
    linen_scope *fs = NULL;
    LX_TRY(linen_scope_new(self->frame, self, NULL, child, &fs));
    fs->is_function = true;
    lx_status st = linen_scope_run(fs, method, NULL, call, out);
    linen_scope_free(fs);
    return st;
}

static lx_status bind_child(linen_scope *self, const linen_module *child, const char *name,
                            linen_scope **out) {
    for (int i = 0; i < self->nchildren; i++) {
        if (strcmp(self->children[i].scope->name, name) != 0) continue;
        linen_scope *c = self->children[i].scope;
        if (c->module != child) {
            /* A new instance under a name used before (a compact child rebuilt by a later call):
             * it gets a fresh setup; the rng counters stay, as Flax keeps them per name. */
            clear_attrs(c);
            linen_module_release(c->module);
            c->module = linen_module_retain((linen_module *)child);
        }
        *out = c;
        return LX_OK;
    }
    LX_TRY(grow((void **)&self->children, &self->capchildren, self->nchildren, sizeof *self->children,
                self->children_inline));
    linen_scope *c = NULL;
    LX_TRY(linen_scope_new(self->frame, self, name, child, &c));
    self->children[self->nchildren].scope = c;
    self->nchildren++;
    *out = c;
    return LX_OK;
}

lx_status linen_call_child(linen_scope *self, const linen_module *child, const char *name,
                           const char *method, const lx_call *call, lx_value *out) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "call_child: scope is NULL");
    if (!child) return lx_fail(LX_ERR_INVALID_ARGUMENT, "call_child: child is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "call_child: out is NULL");
    *out = lx_none();
    if (child->type->flags & LINEN_TYPE_FUNCTION) return call_function(self, child, method, call, out);
    if (self->is_function) return no_scope(self, "call_child");
    char buf[192];
    if (!name) name = child->name;
    /* Flax names a compact child once, when it is created: calling the same instance again in
     * this method call (d = nn.Dense(3); d(d(x))) binds the same scope and shares its params. */
    for (int i = 0; !name && i < self->nres; i++)
        if (self->res[i].module == child && self->res[i].col_off == RES_SUBMODULE) name = res_name(&self->res[i]);
    if (!name) {
        LX_TRY(autoname(self, child->type->name ? child->type->name : "Module", buf, sizeof buf));
        name = buf;
    }
    LX_TRY(check_var_name("submodule", name));
    LX_TRY(reserve(self, name, NULL, "submodule", child, true));
    linen_scope *c = NULL;
    LX_TRY(bind_child(self, child, name, &c));
    return linen_scope_run(c, method, NULL, call, out);
}

lx_status linen_setup_child(linen_scope *self, const char *attr, const linen_module *child) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "setup_child: scope is NULL");
    if (!child) return lx_fail(LX_ERR_INVALID_ARGUMENT, "setup_child: child is NULL");
    LX_TRY(check_var_name("submodule", attr));
    if (!self->in_setup)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "Submodule %s must be defined in `setup()` or in a method wrapped in `@compact` "
                       "(linen_setup_child called outside setup of %s)",
                       child->type->name, type_name(self));
    for (int i = 0; i < self->nattrs; i++)
        if (strcmp(self->attrs[i].name, attr) == 0)
            return lx_fail(LX_ERR_EXISTS, "Could not create submodule \"%s\" in Module %s: Name in use.", attr,
                           type_name(self));
    if (!(child->type->flags & LINEN_TYPE_FUNCTION)) LX_TRY(reserve(self, attr, NULL, "submodule", child, true));
    LX_TRY(grow((void **)&self->attrs, &self->capattrs, self->nattrs, sizeof *self->attrs, NULL));
    char *n = lx_strdup(attr);
    if (!n) return oom();
    self->attrs[self->nattrs].name = n;
    self->attrs[self->nattrs].module = linen_module_retain((linen_module *)child);
    self->nattrs++;
    return LX_OK;
}

lx_status linen_get_attr_module(linen_scope *self, const char *attr, const linen_module **out) {
    if (!self) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_attr_module: scope is NULL");
    if (!attr) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_attr_module: attr is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_attr_module: out is NULL");
    *out = NULL;
    LX_TRY(run_setup(self));
    for (int i = 0; i < self->nattrs; i++)
        if (strcmp(self->attrs[i].name, attr) == 0) {
            *out = self->attrs[i].module;
            return LX_OK;
        }
    return no_attribute(self, attr);
}

lx_status linen_call_attr(linen_scope *self, const char *attr, const char *method,
                          const lx_call *call, lx_value *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "call_attr: out is NULL");
    *out = lx_none();
    const linen_module *m = NULL;
    LX_TRY(linen_get_attr_module(self, attr, &m));
    return linen_call_child(self, m, attr, method, call, out);
}

lx_array *linen_call_array(linen_scope *self, const linen_module *child, const char *name,
                           lx_array *x) {
    if (!x) return NULL;
    lx_value out = lx_none();
    lx_call c = LX_ARGS(x);
    if (linen_call_child(self, child, name, NULL, &c, &out) != LX_OK) return NULL;
    if (out.kind != LX_V_ARRAY || !out.u.array) {
        lx_fail(LX_ERR_TYPE, "%s returned a %s, not an array", child->type->name, lx_kind_name(out.kind));
        lx_value_free(&out);
        return NULL;
    }
    lx_array *y = lx_autorelease(lx_retain(out.u.array));
    lx_value_free(&out);
    return y;
}
