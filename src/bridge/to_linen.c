/* ToLinen, to_linen, to_linen_class, linen_rngs_dict: an NNX module inside a Linen model
 * (flax/nnx/bridge/wrappers.py, MaxText's nnx_wrappers; spec/flax-bridge.md §1.6-1.8).
 *
 * Init builds the NNX module for real, runs the method and stores the state. Apply never builds
 * one for real: a module built with abstract arrays (nnx_eval_shape) is kept on the ToLinen
 * (the "instance": the module, its non-RNG Variables sorted by path, and a fingerprint of its
 * declared fields), and each apply binds the caller's arrays into those Variables, runs the
 * method, writes back what changed, and puts the abstract placeholders back. The common case
 * (incoming variables match the module exactly, the method changes no structure) touches no
 * graph walk and allocates nothing but the Linen variables view; anything unusual falls back
 * to a full walk that reports errors precisely (duplicates, unknown and missing paths). A
 * module that keeps RNG streams is rebuilt abstractly on each apply so its stream keys derive
 * from that apply's make_rng keys, as Flax's constructor would derive them.
 */
#include "linnx/to_linen.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/box.h"

#define TL_MAX_STREAMS 32

/* ------------------------------------------------------------------ small helpers */

static lx_status oom(void) { return lx_fail(LX_ERR_NO_MEMORY, "ToLinen: out of memory"); }

static char *dupstr(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* How Python names the class of a value, for TypeError texts. */
static const char *pytype(const lx_value *v) {
    switch (v->kind) {
    case LX_V_NONE: return "<class 'NoneType'>";
    case LX_V_BOOL: return "<class 'bool'>";
    case LX_V_INT: return "<class 'int'>";
    case LX_V_FLOAT: return "<class 'float'>";
    case LX_V_STR: return "<class 'str'>";
    case LX_V_INTS:
    case LX_V_STRS: return "<class 'tuple'>";
    case LX_V_ARRAY: return "<class 'jax.Array'>";
    case LX_V_TREE: return "<class 'dict'>";
    case LX_V_VARIABLE: return "<class 'flax.nnx.Variable'>";
    case LX_V_BOX: return "<class 'flax.core.meta.AxisMetadata'>";
    case LX_V_PTR: return "<class 'object'>";
    }
    return "<class 'object'>";
}

static bool is_ptr(const lx_value *v, const char *tag) {
    return v && v->kind == LX_V_PTR && v->u.ptr.p && v->u.ptr.tag && strcmp(v->u.ptr.tag, tag) == 0;
}

/* The array a Linen leaf holds (boxes unboxed), or NULL. */
static lx_array *leaf_array(const lx_value *v) {
    if (v->kind == LX_V_ARRAY) return v->u.array;
    if (v->kind == LX_V_BOX && v->u.box) return lx_box_unbox(v->u.box);
    return NULL;
}

static bool same_sig(const lx_array *a, const lx_array *b) { return a->dtype == b->dtype && lx_same_shape(a, b); }

/* ------------------------------------------------------------------ config and per-module state */

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

typedef struct tl_fp { /* one declared field of one module: where it is and what it held */
    const void *addr;
    size_t len;
    unsigned char was[sizeof(void *) > sizeof(int) ? sizeof(void *) : sizeof(int)];
} tl_fp;

typedef struct tl_inst {
    nnx_module *m;
    tl_slot *slots; /* sorted by path */
    size_t nslots;
    size_t *by_order; /* slot indices in flat-state order */
    tl_fp *fp;
    size_t nfp, capfp;
    bool has_rng;  /* keeps RNG streams: rebuilt per apply */
    bool has_tree; /* trees in dynamic attributes: a method may change them unseen */
} tl_inst;

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

static void inst_free(tl_inst *in) {
    for (size_t i = 0; i < in->nslots; i++) {
        free(in->slots[i].path);
        free(in->slots[i].segbuf);
        free(in->slots[i].segs);
        free(in->slots[i].col);
        lx_variable_release(in->slots[i].var);
        lx_release(in->slots[i].placeholder);
    }
    free(in->slots);
    free(in->by_order);
    free(in->fp);
    nnx_module_release(in->m);
    memset(in, 0, sizeof *in);
}

static void state_drop_cache(tl_state *st) {
    if (st->cached) inst_free(&st->cache);
    st->cached = false;
    for (int i = 0; i < st->nnames; i++) free(st->names[i]);
    st->nnames = 0;
}

static void state_free(tl_state *st) {
    if (!st) return;
    state_drop_cache(st);
    for (size_t i = 0; i < st->nwarned; i++) free(st->warned[i]);
    free(st->warned);
    free(st);
}

static tl_state *state_new(void) {
    tl_state *st = calloc(1, sizeof *st);
    if (st) atomic_flag_clear(&st->busy);
    return st;
}

/* ---- the shared pool: caches of released ToLinen modules, for the next equal one ----
 * A compact parent makes a new ToLinen on every call (Flax code does). When such a module is
 * released its cache goes to this small pool; the next ToLinen with the same NNX type, skip_rng
 * and an equal constructor call adopts it, so "built once" holds for compact children too. */
#define TL_POOL 16
typedef struct tl_pooled {
    const nnx_type *nnx;
    bool skip_rng;
    lx_call ctor; /* owned */
    tl_state *state;
    uint64_t stamp;
} tl_pooled;
static tl_pooled pool_[TL_POOL];
static int npool_;
static uint64_t pool_clock_;
static atomic_flag pool_lock_ = ATOMIC_FLAG_INIT;

static void pool_acquire(void) {
    while (atomic_flag_test_and_set(&pool_lock_)) {
    }
}
static void pool_release(void) { atomic_flag_clear(&pool_lock_); }

/* A constructor call whose values compare meaningfully by lx_value_equal: pointers only of
 * kinds whose identity is the value (types, functions); a pointer to a struct such as an
 * initializer may hold other contents at the same address, so such calls are not pooled. */
static bool ctor_poolable(const lx_call *c) {
    static const char *const ok[] = {"nnx_type", "vartype", "nnx_array_fn"};
    for (int i = 0; i < c->nargs + c->nkwargs; i++) {
        const lx_value *v = i < c->nargs ? &c->args[i] : &c->kwargs[i - c->nargs].value;
        if (v->kind != LX_V_PTR) continue;
        bool good = false;
        for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) good |= v->u.ptr.tag && strcmp(v->u.ptr.tag, ok[k]) == 0;
        if (!good) return false;
    }
    return true;
}

static bool ctor_equal(const lx_call *a, const lx_call *b) {
    if (a->nargs != b->nargs || a->nkwargs != b->nkwargs) return false;
    for (int i = 0; i < a->nargs; i++)
        if (!lx_value_equal(&a->args[i], &b->args[i])) return false;
    for (int i = 0; i < a->nkwargs; i++)
        if (strcmp(a->kwargs[i].name, b->kwargs[i].name) != 0 || !lx_value_equal(&a->kwargs[i].value, &b->kwargs[i].value))
            return false;
    return true;
}

static void pooled_free(tl_pooled *p) {
    lx_call_free(&p->ctor);
    state_free(p->state);
    memset(p, 0, sizeof *p);
}

/* Give a released module's state to the pool (takes cfg->ctor and cfg->state). */
static bool pool_donate(tl_config *c) {
    tl_state *st = c->state;
    if (!st || (!st->cached && !st->nwarned) || !ctor_poolable(&c->ctor)) return false;
    if (atomic_flag_test_and_set(&st->busy)) return false; /* in use: cannot be handed over */
    pool_acquire();
    int slot = npool_ < TL_POOL ? npool_++ : 0;
    if (npool_ == TL_POOL && slot == 0)
        for (int i = 1; i < TL_POOL; i++)
            if (pool_[i].stamp < pool_[slot].stamp) slot = i;
    tl_pooled old = pool_[slot];
    pool_[slot] = (tl_pooled){c->nnx, c->skip_rng, c->ctor, st, ++pool_clock_};
    pool_release();
    if (old.state) pooled_free(&old);
    atomic_flag_clear(&st->busy);
    c->ctor = LX_NO_CALL;
    c->state = NULL;
    return true;
}

/* Move a matching pooled cache (and its warned paths) into `st`, which is empty and held. */
static void pool_adopt(const tl_config *c, tl_state *st) {
    st->pool_checked = true;
    if (!ctor_poolable(&c->ctor)) return;
    tl_pooled found = {0};
    pool_acquire();
    for (int i = 0; i < npool_; i++) {
        tl_pooled *p = &pool_[i];
        if (p->nnx != c->nnx || p->skip_rng != c->skip_rng || !ctor_equal(&p->ctor, &c->ctor)) continue;
        found = *p;
        pool_[i] = pool_[--npool_];
        memset(&pool_[npool_], 0, sizeof pool_[npool_]);
        break;
    }
    pool_release();
    if (!found.state) return;
    tl_state *from = found.state;
    st->cached = from->cached;
    st->cache = from->cache;
    memcpy(st->names, from->names, sizeof st->names);
    st->nnames = from->nnames;
    st->warned = from->warned;
    st->nwarned = from->nwarned;
    st->capwarned = from->capwarned;
    from->cached = false;
    from->nnames = 0;
    from->warned = NULL;
    from->nwarned = from->capwarned = 0;
    memset(&from->cache, 0, sizeof from->cache);
    pooled_free(&found);
}

void bridge_to_linen_cache_clear(void) {
    pool_acquire();
    tl_pooled all[TL_POOL];
    int n = npool_;
    memcpy(all, pool_, sizeof all);
    memset(pool_, 0, sizeof pool_);
    npool_ = 0;
    pool_release();
    for (int i = 0; i < n; i++) pooled_free(&all[i]);
}

static void tl_config_free(void *p) {
    tl_config *c = p;
    pool_donate(c);
    lx_call_free(&c->ctor);
    state_free(c->state);
    c->state = NULL;
}

static lx_status tl_config_copy(void *dst, const void *src) {
    tl_config *d = dst;
    const tl_config *s = src;
    *d = *s;
    d->ctor = LX_NO_CALL;
    d->state = state_new();
    if (!d->state) return oom();
    lx_status st = lx_call_dup(&s->ctor, &d->ctor);
    if (st != LX_OK) {
        state_free(d->state);
        d->state = NULL;
    }
    return st;
}

/* ------------------------------------------------------------------ linen_rngs_dict */

lx_status bridge_linen_rngs_dict(linen_scope *s, bool add_default, int cap, nnx_stream_spec *out, int *n) {
    if (!s) s = linen_current_scope();
    if (!s) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_rngs_dict() must be called inside a Linen module.");
    if (!n || (cap > 0 && !out)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_rngs_dict: NULL argument");
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
} tl_method;

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
    if (!spec || spec->kind == LX_V_NONE) {
        const nnx_method *m = nnx_find_method(t, "__call__");
        if (m) out->fn = m->fn;
        else if (!t->dispatch)
            return lx_fail(LX_ERR_NOT_FOUND, "type object '%s' has no attribute '__call__'", t->name);
        return LX_OK;
    }
    if (spec->kind == LX_V_STR && spec->u.s) {
        out->name = spec->u.s;
        const nnx_method *m = nnx_find_method(t, spec->u.s);
        if (m) {
            out->fn = m->fn;
            return LX_OK;
        }
        const lx_field *f = t->config ? lx_config_find(t->config, t->nconfig, spec->u.s) : NULL;
        if (f)
            return lx_fail(LX_ERR_TYPE, "'%s.%s' must be a callable, got %s.", t->name, spec->u.s, field_pytype(f->kind));
        if (t->dispatch) return LX_OK; /* resolved by the module at call time */
        return lx_fail(LX_ERR_NOT_FOUND, "type object '%s' has no attribute '%s'", t->name, spec->u.s);
    }
    if (is_ptr(spec, "nnx_method")) {
        const nnx_method *m = spec->u.ptr.p;
        if (!m->fn) return lx_fail(LX_ERR_TYPE, "'%s' must be a callable, got <class 'NoneType'>.", m->name ? m->name : "?");
        out->name = m->name ? m->name : "<function>";
        out->fn = m->fn;
        return LX_OK;
    }
    char buf[128];
    return lx_fail(LX_ERR_TYPE, "'%s' must be a callable, got %s.", lx_value_str(spec, buf, sizeof buf), pytype(spec));
}

static lx_status run_method(nnx_module *m, const tl_method *meth, const lx_call *call, lx_value *out) {
    *out = lx_none();
    if (meth->fn) return nnx_call_fn(m, meth->fn, call, out); /* in m's module frame */
    return nnx_call(m, meth->name, call, out);
}

/* ------------------------------------------------------------------ module state -> Linen */

static lx_status to_leaf(const tl_config *cfg, const lx_variable *v, lx_value *out) {
    if (cfg->metadata_none) {
        *out = lx_array_v(lx_retain(lx_variable_get_value(v)));
        return LX_OK;
    }
    if (cfg->metadata_fn) return cfg->metadata_fn(v, cfg->metadata_user, out);
    return bridge_to_linen_var(v, out);
}

static lx_status collection_of(const lx_variable *v, const char **col) {
    return lx_variable_name_from_type(lx_variable_type(v), true, col);
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
        st = collection_of(v, &col);
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
        st = to_leaf(cfg, v, &leaf);
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

/* Write one changed leaf at state path `path` of collection `col`, keeping its siblings. */
static lx_status write_leaf(linen_scope *s, const char *col, const char *path, const lx_value *leaf) {
    const char *slash = strchr(path, '/');
    if (!slash) return linen_put_variable(s, col, path, leaf);
    char top[256];
    size_t n = (size_t)(slash - path);
    if (n >= sizeof top) return lx_fail(LX_ERR_INVALID_ARGUMENT, "ToLinen: attribute name too long in '%s'", path);
    memcpy(top, path, n);
    top[n] = '\0';
    lx_tree *t = NULL;
    if (linen_has_variable(s, col, top)) {
        lx_value cur;
        LX_TRY(linen_get_variable(s, col, top, &cur));
        if (cur.kind == LX_V_TREE) t = lx_tree_copy(cur.u.tree);
        else t = lx_tree_new();
    } else {
        t = lx_tree_new();
    }
    if (!t) return oom();
    lx_status st = lx_tree_set_path(t, slash + 1, *leaf);
    if (st == LX_OK) {
        lx_value tv = lx_tree_v(t);
        st = linen_put_variable(s, col, top, &tv);
    }
    lx_tree_release(t);
    return st;
}

/* ------------------------------------------------------------------ instances */

static int slot_cmp(const void *a, const void *b) {
    return strcmp(((const tl_slot *)a)->path, ((const tl_slot *)b)->path);
}

static tl_slot *find_slot(const tl_inst *in, const char *path) {
    size_t lo = 0, hi = in->nslots;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(in->slots[mid].path, path);
        if (c == 0) return &in->slots[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static lx_status fp_add(tl_inst *in, const void *addr, size_t len) {
    if (in->nfp == in->capfp) {
        size_t nc = in->capfp ? in->capfp * 2 : 16;
        tl_fp *p = realloc(in->fp, nc * sizeof *p);
        if (!p) return oom();
        in->fp = p;
        in->capfp = nc;
    }
    tl_fp *f = &in->fp[in->nfp++];
    f->addr = addr;
    f->len = len;
    memcpy(f->was, addr, len);
    return LX_OK;
}

static lx_status fp_visit(const char *path, const lx_value *node, void *user) {
    tl_inst *in = user;
    if (node->kind == LX_V_TREE) {
        in->has_tree = true;
        return LX_OK;
    }
    nnx_module *m = nnx_module_from_value(node);
    if (!m) return LX_OK;
    const nnx_type *t = m->type;
    for (int i = 0; i < t->nfields; i++) {
        char *p = (char *)m + t->fields[i].offset;
        if (t->fields[i].kind == NNX_FIELD_LIST) {
            nnx_list *l = (nnx_list *)p;
            LX_TRY(fp_add(in, &l->n, sizeof l->n));
            LX_TRY(fp_add(in, &l->items, sizeof l->items));
        } else {
            LX_TRY(fp_add(in, p, sizeof(void *)));
        }
    }
    return LX_OK;
}

static bool fp_same(const tl_inst *in) {
    for (size_t i = 0; i < in->nfp; i++)
        if (memcmp(in->fp[i].addr, in->fp[i].was, in->fp[i].len) != 0) return false;
    return true;
}

/* Describe a freshly built (abstract) module: its non-RNG Variables and its field fingerprint.
 * Takes the module reference. */
static lx_status inst_make(nnx_module *m, tl_inst *in) {
    memset(in, 0, sizeof *in);
    in->m = m;
    lx_tree *state = NULL;
    lx_flat flat = {0};
    lx_status st = nnx_state(m, 0, NULL, &state);
    if (st == LX_OK) st = lx_tree_flatten(state, &flat);
    lx_tree_release(state);
    if (st == LX_OK && flat.len) {
        in->slots = calloc(flat.len, sizeof *in->slots);
        if (!in->slots) st = oom();
    }
    for (size_t i = 0; i < flat.len && st == LX_OK; i++) {
        lx_variable *v = flat.items[i].value.u.var;
        if (lx_vartype_is(lx_variable_type(v), &lx_RngState)) {
            in->has_rng = true;
            continue;
        }
        tl_slot *sl = &in->slots[in->nslots];
        sl->order = in->nslots;
        const char *col = NULL;
        st = collection_of(v, &col);
        if (st != LX_OK) break;
        sl->col = dupstr(col);
        sl->path = dupstr(flat.items[i].path);
        sl->segbuf = dupstr(flat.items[i].path);
        int nseg = 1;
        for (const char *q = flat.items[i].path; *q; q++) nseg += *q == '/';
        sl->segs = malloc(sizeof *sl->segs * (size_t)nseg);
        if (!sl->path || !sl->segbuf || !sl->segs || !sl->col) {
            free(sl->col);
            free(sl->path);
            free(sl->segbuf);
            free(sl->segs);
            st = oom();
            break;
        }
        for (char *q = sl->segbuf;;) {
            sl->segs[sl->nseg++] = q;
            char *slash = strchr(q, '/');
            if (!slash) break;
            *slash = '\0';
            q = slash + 1;
        }
        sl->var = lx_variable_retain(v);
        sl->placeholder = lx_retain(lx_variable_get_value(v));
        in->nslots++;
    }
    lx_flat_free(&flat);
    if (st == LX_OK && in->nslots) {
        qsort(in->slots, in->nslots, sizeof *in->slots, slot_cmp);
        in->by_order = malloc(in->nslots * sizeof *in->by_order);
        if (!in->by_order) st = oom();
        for (size_t i = 0; st == LX_OK && i < in->nslots; i++) in->by_order[in->slots[i].order] = i;
    }
    if (st == LX_OK) st = nnx_iter_graph(m, fp_visit, in);
    if (st != LX_OK) inst_free(in);
    return st;
}

/* Put the abstract placeholders back: the caller's arrays are released. */
static void inst_unbind(tl_inst *in) {
    for (size_t i = 0; i < in->nslots; i++) {
        tl_slot *sl = &in->slots[i];
        if (lx_variable_get_value(sl->var) != sl->placeholder) lx_variable_set_value(sl->var, sl->placeholder, false);
        lx_release(sl->bound); /* bound arrays are held so a pointer compare can never see a reused address */
        sl->bound = NULL;
        sl->leaf = NULL;
    }
}

/* ------------------------------------------------------------------ binding incoming variables */

static bool warned_before(tl_state *st, const char *path) {
    for (size_t i = 0; i < st->nwarned; i++)
        if (strcmp(st->warned[i], path) == 0) return true;
    return false;
}

static void note_warned(tl_state *st, const char *path) {
    if (st->nwarned == st->capwarned) {
        size_t nc = st->capwarned ? st->capwarned * 2 : 8;
        char **p = realloc(st->warned, nc * sizeof *p);
        if (!p) return; /* only means a later warning may repeat */
        st->warned = p;
        st->capwarned = nc;
    }
    char *d = dupstr(path);
    if (d) st->warned[st->nwarned++] = d;
}

static const char *type_label(const tl_config *cfg) { return cfg->nnx->name ? cfg->nnx->name : "?"; }

/* The fast bind: every incoming leaf is exactly one slot's, in the slot's own collection, with
 * the slot's shape. Returns false (nothing bound) when anything differs. */
static bool bind_fast(tl_inst *in, const lx_tree *vars) {
    size_t total = 0;
    for (size_t c = 0; c < lx_tree_len(vars); c++) {
        const lx_value *sub = lx_tree_at(vars, c);
        if (sub->kind != LX_V_TREE) return false;
        total += lx_tree_count_leaves(sub->u.tree);
    }
    if (total != in->nslots) return false;
    for (size_t i = 0; i < in->nslots; i++) {
        tl_slot *sl = &in->slots[i];
        const lx_value *leaf = lx_tree_get(vars, sl->col);
        for (int k = 0; leaf && k < sl->nseg; k++)
            leaf = leaf->kind == LX_V_TREE ? lx_tree_get(leaf->u.tree, sl->segs[k]) : NULL;
        lx_array *a = leaf ? leaf_array(leaf) : NULL;
        if (!a || !same_sig(a, sl->placeholder)) {
            for (size_t j = 0; j < i; j++) in->slots[j].bound = NULL, in->slots[j].leaf = NULL;
            return false;
        }
        sl->bound = a;
        sl->leaf = leaf;
    }
    for (size_t i = 0; i < in->nslots; i++) {
        lx_retain(in->slots[i].bound);
        lx_variable_set_value(in->slots[i].var, in->slots[i].bound, false);
    }
    return true;
}

typedef struct tl_extra { /* an incoming path the module did not have, inserted as a Variable */
    lx_variable *var;
    lx_array *bound;
} tl_extra;

typedef struct tl_unknown {
    const char *col;
    char *path;
    const lx_value *leaf;
} tl_unknown;

static lx_status dup_error(const char *path, const char *col_a, const lx_value *a, const char *col_b,
                           const lx_value *b) {
    lx_variable *va = NULL, *vb = NULL;
    char pt[512], sa[256], sb[256];
    size_t n = (size_t)snprintf(pt, sizeof pt, "(");
    int parts = 0;
    for (const char *p = path; *p && n < sizeof pt;) {
        const char *sl = strchr(p, '/');
        size_t len = sl ? (size_t)(sl - p) : strlen(p);
        n += (size_t)snprintf(pt + n, sizeof pt - n, "%s'%.*s'", parts ? ", " : "", (int)len, p);
        parts++;
        p += len + (sl ? 1 : 0);
    }
    if (n < sizeof pt) snprintf(pt + n, sizeof pt - n, parts == 1 ? ",)" : ")");
    lx_status st = bridge_to_nnx_var(col_a, a, &va);
    if (st == LX_OK) st = bridge_to_nnx_var(col_b, b, &vb);
    if (st == LX_OK)
        st = lx_fail(LX_ERR_EXISTS,
                     "Found duplicate variable path %s with variables %s and %s. This is not allowed in NNX.", pt,
                     lx_variable_str(va, sa, sizeof sa), lx_variable_str(vb, sb, sizeof sb));
    lx_variable_release(va);
    lx_variable_release(vb);
    return st;
}

/* The full bind: flatten every incoming collection, report duplicates (also across the unknown
 * paths), shape mismatches and missing Variables, warn about unknown paths, insert them, then
 * bind. On failure nothing is bound. *extras (n) get the inserted Variables. */
static lx_status bind_slow(linen_scope *s, const tl_config *cfg, tl_state *state, tl_inst *in,
                           const lx_tree *vars, tl_extra **extras, size_t *nextras, bool *inserted) {
    *extras = NULL;
    *nextras = 0;
    *inserted = false;
    lx_flat *flats = calloc(lx_tree_len(vars) + 1, sizeof *flats);
    tl_unknown *unk = NULL;
    size_t nunk = 0, capunk = 0;
    const char **slot_cols = calloc(in->nslots + 1, sizeof *slot_cols);
    lx_status st = flats && slot_cols ? LX_OK : oom();
    for (size_t c = 0; c < lx_tree_len(vars) && st == LX_OK; c++) {
        const char *col = lx_tree_key(vars, c);
        const lx_value *sub = lx_tree_at(vars, c);
        if (sub->kind != LX_V_TREE) continue;
        st = lx_tree_flatten(sub->u.tree, &flats[c]);
        for (size_t i = 0; i < flats[c].len && st == LX_OK; i++) {
            const char *path = flats[c].items[i].path;
            const lx_value *leaf = lx_tree_find(sub->u.tree, path); /* borrowed from the frame */
            tl_slot *sl = find_slot(in, path);
            if (sl) {
                size_t k = (size_t)(sl - in->slots);
                if (sl->leaf) {
                    st = dup_error(path, slot_cols[k], sl->leaf, col, leaf);
                    break;
                }
                lx_array *a = leaf_array(leaf);
                if (!a) {
                    char buf[128];
                    st = lx_fail(LX_ERR_TYPE, "ToLinen(%s): incoming variable \"%s\" of collection \"%s\" is %s, not an array",
                                 type_label(cfg), path, col, lx_value_str(leaf, buf, sizeof buf));
                    break;
                }
                if (!same_sig(a, sl->placeholder)) {
                    char have[96], want[96];
                    st = lx_fail(LX_ERR_SHAPE,
                                 "ToLinen(%s) in \"%s\": incoming variable \"%s\" of collection \"%s\" is %s, but the "
                                 "module's Variable is %s",
                                 type_label(cfg), linen_scope_path(s), path, col, lx_array_sig(a, have, sizeof have),
                                 lx_array_sig(sl->placeholder, want, sizeof want));
                    break;
                }
                sl->leaf = leaf;
                sl->bound = a;
                slot_cols[k] = col;
                continue;
            }
            for (size_t u = 0; u < nunk; u++)
                if (strcmp(unk[u].path, path) == 0) {
                    st = dup_error(path, unk[u].col, unk[u].leaf, col, leaf);
                    break;
                }
            if (st != LX_OK) break;
            if (nunk == capunk) {
                size_t nc = capunk ? capunk * 2 : 4;
                tl_unknown *p = realloc(unk, nc * sizeof *p);
                if (!p) {
                    st = oom();
                    break;
                }
                unk = p;
                capunk = nc;
            }
            unk[nunk++] = (tl_unknown){col, (char *)path, leaf};
        }
    }
    for (size_t i = 0; i < in->nslots && st == LX_OK; i++)
        if (!in->slots[i].leaf)
            st = lx_fail(LX_ERR_NOT_FOUND,
                         "ToLinen(%s) in \"%s\": no incoming value for Variable \"%s\" (collection \"%s\"). ToLinen "
                         "builds its module without running initializers, so apply needs every variable init made.",
                         type_label(cfg), linen_scope_path(s), in->slots[i].path, in->slots[i].col);
    if (st == LX_OK && nunk) {
        /* Warn about each path once per ToLinen module (Python shows a warning once too). */
        size_t len = 64;
        for (size_t u = 0; u < nunk; u++) len += strlen(unk[u].path) + 6;
        char *msg = malloc(len);
        if (!msg) st = oom();
        size_t off = 0, nnew = 0;
        if (msg) off = (size_t)snprintf(msg, len, "Found unknown module paths in incoming state:");
        for (size_t u = 0; msg && u < nunk; u++) {
            if (state && warned_before(state, unk[u].path)) continue;
            off += (size_t)snprintf(msg + off, len - off, "\n  - %s", unk[u].path);
            if (state) note_warned(state, unk[u].path);
            nnew++;
        }
        if (msg && nnew) lx_warn("%s", msg);
        free(msg);
        /* As Flax's nnx.update does: the unknown paths become attributes of the module. */
        lx_tree *ins = st == LX_OK ? lx_tree_new() : NULL;
        tl_extra *ex = st == LX_OK ? calloc(nunk, sizeof *ex) : NULL;
        if (st == LX_OK && (!ins || !ex)) st = oom();
        for (size_t u = 0; u < nunk && st == LX_OK; u++) {
            lx_variable *v = NULL;
            st = bridge_to_nnx_var(unk[u].col, unk[u].leaf, &v);
            if (st == LX_OK) st = lx_tree_set_path(ins, unk[u].path, lx_var_v(v));
            if (st == LX_OK) {
                ex[*nextras].var = v;
                ex[*nextras].bound = lx_variable_get_value(v);
                (*nextras)++;
            } else {
                lx_variable_release(v);
            }
        }
        if (st == LX_OK) {
            st = nnx_update(in->m, 1, &ins);
            *inserted = st == LX_OK;
        }
        lx_tree_release(ins);
        *extras = ex;
        if (st != LX_OK) {
            for (size_t i = 0; i < *nextras; i++) lx_variable_release(ex[i].var);
            free(ex);
            *extras = NULL;
            *nextras = 0;
        }
    }
    if (st == LX_OK)
        for (size_t i = 0; i < in->nslots; i++) {
            lx_retain(in->slots[i].bound);
            lx_variable_set_value(in->slots[i].var, in->slots[i].bound, false);
        }
    else
        for (size_t i = 0; i < in->nslots; i++) in->slots[i].leaf = NULL, in->slots[i].bound = NULL;
    for (size_t c = 0; flats && c < lx_tree_len(vars); c++) lx_flat_free(&flats[c]);
    free(flats);
    free(unk);
    free(slot_cols);
    return st;
}

/* ------------------------------------------------------------------ writing back */

typedef struct tl_change {
    const char *path;
    lx_variable *var;
    const char *col;
} tl_change;

static bool intermediate(const lx_variable *v) { return lx_vartype_is(lx_variable_type(v), &lx_Intermediate); }

/* Check every change against the mutability first (so a refused one writes nothing), then
 * write the allowed ones. */
static lx_status write_changes(linen_scope *s, const tl_config *cfg, tl_change *ch, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!ch[i].col) LX_TRY(collection_of(ch[i].var, &ch[i].col));
        if (linen_is_mutable_collection(s, ch[i].col) || intermediate(ch[i].var)) continue;
        return lx_fail(LX_ERR_IMMUTABLE,
                       "Cannot update variable \"%s\" in \"%s\" because collection \"%s\" is immutable. (The %s "
                       "module run by ToLinen changed it; pass mutable=['%s'] to apply.)",
                       ch[i].path, linen_scope_path(s), ch[i].col, type_label(cfg), ch[i].col);
    }
    for (size_t i = 0; i < n; i++) {
        if (!linen_is_mutable_collection(s, ch[i].col)) continue; /* an Intermediate: sow is a no-op */
        lx_value leaf = lx_none();
        LX_TRY(to_leaf(cfg, ch[i].var, &leaf));
        lx_status st = write_leaf(s, ch[i].col, ch[i].path, &leaf);
        lx_value_free(&leaf);
        LX_TRY(st);
    }
    return LX_OK;
}

/* After the method: collect what changed. Fast when the structure is as built; else a walk of
 * the module's state. *same_structure tells whether the instance may be kept. */
static lx_status collect_changes(tl_inst *in, uint64_t epoch, const tl_extra *ex, size_t nex, tl_change **out,
                                 size_t *nout, lx_flat *walk, bool *same_structure) {
    *out = NULL;
    *nout = 0;
    *same_structure = false;
    tl_change *ch = NULL;
    if (!in->has_tree && nex == 0 && nnx_graph_epoch() == epoch && fp_same(in)) {
        *same_structure = true;
        for (size_t k = 0; k < in->nslots; k++) {
            tl_slot *sl = &in->slots[in->by_order[k]];
            if (lx_variable_get_value(sl->var) == sl->bound) continue;
            if (!ch && !(ch = malloc(in->nslots * sizeof *ch))) return oom();
            ch[(*nout)++] = (tl_change){sl->path, sl->var, sl->col};
        }
        *out = ch;
        return LX_OK;
    }
    lx_tree *state = NULL;
    LX_TRY(nnx_state(in->m, 1, &NNX_NOT_RNG_STATE, &state));
    lx_status st = lx_tree_flatten(state, walk);
    lx_tree_release(state);
    LX_TRY(st);
    if (walk->len && !(ch = malloc(walk->len * sizeof *ch))) return oom();
    bool same = walk->len == in->nslots && fp_same(in) && !in->has_tree && nex == 0;
    for (size_t i = 0; i < walk->len; i++) {
        lx_variable *v = walk->items[i].value.u.var;
        const char *path = walk->items[i].path;
        tl_slot *sl = find_slot(in, path);
        if (!sl || sl->var != v) same = false;
        bool unchanged = sl && sl->var == v && lx_variable_get_value(v) == sl->bound;
        for (size_t e = 0; !unchanged && e < nex; e++)
            unchanged = ex[e].var == v && lx_variable_get_value(v) == ex[e].bound;
        if (!unchanged) ch[(*nout)++] = (tl_change){path, v, sl && sl->var == v ? sl->col : NULL};
    }
    *same_structure = same;
    *out = ch;
    return LX_OK;
}

/* ------------------------------------------------------------------ the call */

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

static lx_status tl_apply(linen_scope *s, const tl_config *cfg, const tl_method *meth, const lx_call *call,
                          lx_value *out) {
    tl_state *state = cfg->state;
    bool own = state && !atomic_flag_test_and_set(&state->busy);
    const char *names[TL_MAX_STREAMS];
    int nnames = cfg->skip_rng ? 0 : linen_rng_names(s, names, TL_MAX_STREAMS);
    if (nnames > TL_MAX_STREAMS) nnames = TL_MAX_STREAMS + 1; /* never matches: no cache */

    if (own && !state->cached && !state->pool_checked) pool_adopt(cfg, state);
    tl_inst tmp, *in = NULL;
    lx_status st = LX_OK;
    if (own && state->cached && names_match(state, names, nnames)) {
        in = &state->cache;
    } else {
        nnx_module *m = NULL;
        st = build_abstract(s, cfg, &m);
        if (st == LX_OK) st = inst_make(m, &tmp);
        else nnx_module_release(m);
        if (st == LX_OK) {
            in = &tmp;
            if (own && !tmp.has_rng && nnames <= TL_MAX_STREAMS) {
                /* Keep it, keyed by the stream names it was built under. */
                state_drop_cache(state);
                bool ok = true;
                for (int i = 0; i < nnames && ok; i++) {
                    state->names[i] = dupstr(names[i]);
                    ok = state->names[i] != NULL;
                    state->nnames = ok ? i + 1 : i;
                }
                if (ok) {
                    state->cache = tmp;
                    state->cached = true;
                    in = &state->cache;
                } else {
                    state_drop_cache(state);
                }
            }
        }
    }
    if (st != LX_OK) {
        if (own) atomic_flag_clear(&state->busy);
        return lx_fail_context(st, "ToLinen(%s): ", type_label(cfg));
    }
    bool keep = in != &tmp;

    lx_tree *vars = NULL;
    tl_extra *ex = NULL;
    size_t nex = 0;
    bool inserted = false;
    st = linen_variables(s, &vars);
    if (st == LX_OK && !bind_fast(in, vars))
        st = bind_slow(s, cfg, own ? state : NULL, in, vars, &ex, &nex, &inserted);
    uint64_t epoch = nnx_graph_epoch();
    if (st == LX_OK) st = run_method(in->m, meth, call, out);
    tl_change *ch = NULL;
    size_t nch = 0;
    lx_flat walk = {0};
    bool same = !inserted;
    if (st == LX_OK) {
        bool s2 = false;
        st = collect_changes(in, epoch, ex, nex, &ch, &nch, &walk, &s2);
        same = same && s2;
    }
    if (st == LX_OK) st = write_changes(s, cfg, ch, nch);
    if (st != LX_OK) lx_value_free(out);
    free(ch);
    lx_flat_free(&walk);
    for (size_t i = 0; i < nex; i++) lx_variable_release(ex[i].var);
    free(ex);
    lx_tree_release(vars);
    inst_unbind(in);
    if (keep && (!same || st != LX_OK)) state_drop_cache(state); /* rebuilt cleanly next time */
    if (!keep) inst_free(&tmp);
    if (own) atomic_flag_clear(&state->busy);
    return st;
}

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

static lx_status tl_run(linen_scope *s, const lx_value *method_spec, const lx_call *call, lx_value *out) {
    const tl_config *cfg = linen_config(s);
    *out = lx_none();
    tl_method meth;
    LX_TRY(resolve_method(cfg->nnx, method_spec, &meth));
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
    if (!kw) return oom();
    int n = 0;
    for (int i = 0; i < call->nkwargs; i++)
        if (i != idx) kw[n++] = call->kwargs[i];
    lx_call c = {call->nargs, call->args, n, kw};
    lx_status st = tl_run(s, &call->kwargs[idx].value, &c, out);
    if (kw != stack) free(kw);
    return st;
}

/* self.embedding.attend(z) from a parent: any method of the NNX type. */
static lx_status tl_dispatch(linen_scope *s, const char *method, const lx_call *call, lx_value *out) {
    const tl_config *cfg = linen_config(s);
    if (!nnx_find_method(cfg->nnx, method) && !cfg->nnx->dispatch) return LX_ERR_NOT_FOUND;
    if (call && lx_call_kwarg(call, "nnx_method"))
        return lx_fail(LX_ERR_TYPE, "ToLinen.__call__() got multiple values for argument 'nnx_method'");
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
static lx_status read_metadata(const char *owner, const lx_value *v, tl_config *cfg) {
    if (v->kind == LX_V_NONE) {
        cfg->metadata_none = true;
        cfg->metadata_fn = NULL;
        cfg->metadata_user = NULL;
        return LX_OK;
    }
    if (is_ptr(v, "bridge_metadata")) {
        const bridge_metadata *bm = v->u.ptr.p;
        cfg->metadata_none = bm->fn == NULL;
        cfg->metadata_fn = bm->fn;
        cfg->metadata_user = bm->user;
        return LX_OK;
    }
    return lx_fail(LX_ERR_TYPE, "%s: argument 'metadata_fn' must be None or a bridge_metadata, got %s", owner,
                   lx_kind_name(v->kind));
}

static lx_status read_bool(const char *owner, const char *name, const lx_value *v, bool *out) {
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
            LX_TRY(read_bool(owner, k, v, &skip));
        } else if (strcmp(k, "metadata_fn") == 0) {
            LX_TRY(read_metadata(owner, v, &tmp));
        } else {
            return lx_fail(LX_ERR_TYPE, "%s got an unexpected keyword argument '%s'", owner, k);
        }
    }
    if (!cls) return lx_fail(LX_ERR_TYPE, "%s missing 1 required positional argument: 'nnx_class'", owner);
    if (!is_ptr(cls, "nnx_type"))
        return lx_fail(LX_ERR_TYPE, "%s: argument 'nnx_class' must be an NNX type (LX_V_PTR \"nnx_type\"), got %s", owner,
                       lx_kind_name(cls->kind));
    if (ctor && ctor->kind != LX_V_NONE && !is_ptr(ctor, "lx_call"))
        return lx_fail(LX_ERR_TYPE, "%s: argument 'ctor' must be a call record (LX_V_PTR \"lx_call\"), got %s", owner,
                       lx_kind_name(ctor->kind));
    tmp.nnx = cls->u.ptr.p;
    tmp.skip_rng = skip;
    tmp.state = state_new();
    if (!tmp.state) return oom();
    lx_call none = LX_NO_CALL;
    lx_status st = lx_call_dup(ctor && ctor->kind != LX_V_NONE ? (const lx_call *)ctor->u.ptr.p : &none, &tmp.ctor);
    if (st != LX_OK) {
        state_free(tmp.state);
        return st;
    }
    *cfg = tmp;
    return LX_OK;
}

const linen_type BRIDGE_TO_LINEN_TYPE = {
    .name = "ToLinen",
    .config_size = sizeof(tl_config),
    .methods = TL_METHODS,
    .nmethods = 1,
    .config_free = tl_config_free,
    .config_copy = tl_config_copy,
    .dispatch = tl_dispatch,
    .getattr = tl_getattr,
    .bind = tl_bind,
};

static bool is_to_linen(const linen_module *m) { return m && linen_module_type(m)->dispatch == tl_dispatch; }

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
    return linen_module_new_named(&BRIDGE_TO_LINEN_TYPE, &c, opts->name, out);
}

linen_module *bridge_to_linen_kw(const nnx_type *t, int nkwargs, const lx_kwarg *kwargs) {
    lx_call c = {0, NULL, nkwargs, kwargs};
    linen_module *m = NULL;
    return bridge_to_linen(t, &c, NULL, &m) == LX_OK ? m : NULL;
}

/* ------------------------------------------------------------------ to_linen_class */

#define TL_CLASS_MAGIC 0x746c636cu

typedef struct tl_class {
    linen_type type; /* first: modules point at it */
    uint32_t magic;
    char *name;
    const nnx_type *base;
    lx_call partial; /* owned */
    bridge_metadata_fn metadata_fn;
    void *user;
    bool skip_rng;
} tl_class;

/* <Base>ToLinen(*args, kwargs=None, nnx_class=None, skip_rng=None, metadata_fn=<base>, name=...,
 * **ctor_kwargs). */
static lx_status class_bind(const linen_type *type, void *p, const lx_call *c) {
    const tl_class *cls = (const tl_class *)type;
    tl_config *cfg = p;
    char owner[160];
    snprintf(owner, sizeof owner, "%s.__init__()", cls->name);
    tl_config tmp = {0};
    tmp.nnx = cls->base;
    tmp.skip_rng = cls->skip_rng;
    tmp.metadata_fn = cls->metadata_fn;
    tmp.metadata_user = cls->user;
    const lx_call *kwargs_param = NULL;
    lx_kwarg *rest = c->nkwargs ? malloc(sizeof *rest * (size_t)c->nkwargs) : NULL;
    if (c->nkwargs && !rest) return oom();
    int nrest = 0;
    lx_status st = LX_OK;
    for (int i = 0; i < c->nkwargs && st == LX_OK; i++) {
        const char *k = c->kwargs[i].name;
        const lx_value *v = &c->kwargs[i].value;
        if (strcmp(k, "skip_rng") == 0) {
            if (v->kind != LX_V_NONE) st = read_bool(owner, k, v, &tmp.skip_rng);
        } else if (strcmp(k, "metadata_fn") == 0) {
            st = read_metadata(owner, v, &tmp);
        } else if (strcmp(k, "nnx_class") == 0) {
            if (is_ptr(v, "nnx_type")) tmp.nnx = v->u.ptr.p;
            else if (v->kind != LX_V_NONE)
                st = lx_fail(LX_ERR_TYPE, "%s: argument 'nnx_class' must be an NNX type, got %s", owner, lx_kind_name(v->kind));
        } else if (strcmp(k, "kwargs") == 0) {
            if (is_ptr(v, "lx_call")) kwargs_param = v->u.ptr.p;
            else if (v->kind != LX_V_NONE)
                st = lx_fail(LX_ERR_TYPE, "%s: argument 'kwargs' must be a call record, got %s", owner, lx_kind_name(v->kind));
        } else {
            rest[nrest++] = c->kwargs[i];
        }
    }
    /* partial_kwargs < kwargs= < keywords; positionals replace the partial's positionals. */
    lx_call a = LX_NO_CALL, b = LX_NO_CALL;
    if (st == LX_OK)
        st = lx_call_with_kwargs(&cls->partial, kwargs_param ? kwargs_param->nkwargs : 0,
                                 kwargs_param ? kwargs_param->kwargs : NULL, &a);
    if (st == LX_OK) st = lx_call_with_kwargs(&a, nrest, rest, &b);
    if (st == LX_OK) {
        const lx_call *pos = c->nargs ? c : kwargs_param && kwargs_param->nargs ? kwargs_param : &b;
        lx_call merged = {pos->nargs, pos->args, b.nkwargs, b.kwargs};
        st = lx_call_dup(&merged, &tmp.ctor);
    }
    lx_call_free(&a);
    lx_call_free(&b);
    free(rest);
    if (st == LX_OK) {
        tmp.state = state_new();
        if (!tmp.state) {
            lx_call_free(&tmp.ctor);
            st = oom();
        }
    }
    if (st == LX_OK) *cfg = tmp;
    return st;
}

lx_status bridge_to_linen_class(const nnx_type *base, const lx_call *partial_kwargs, bridge_metadata_fn base_metadata_fn,
                                void *user, bool base_skip_rng, linen_type **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "to_linen_class: out is NULL");
    *out = NULL;
    if (!base) return lx_fail(LX_ERR_INVALID_ARGUMENT, "to_linen_class: base_nnx_class is NULL");
    tl_class *cls = calloc(1, sizeof *cls);
    if (!cls) return oom();
    const char *bn = base->name ? base->name : "Module";
    size_t n = strlen(bn) + sizeof "ToLinen";
    cls->name = malloc(n);
    lx_call none = LX_NO_CALL;
    lx_status st = cls->name ? lx_call_dup(partial_kwargs ? partial_kwargs : &none, &cls->partial) : oom();
    if (st != LX_OK) {
        free(cls->name);
        free(cls);
        return st;
    }
    snprintf(cls->name, n, "%sToLinen", bn);
    cls->type = BRIDGE_TO_LINEN_TYPE;
    cls->type.name = cls->name;
    cls->type.bind = class_bind;
    cls->magic = TL_CLASS_MAGIC;
    cls->base = base;
    cls->metadata_fn = base_metadata_fn;
    cls->user = user;
    cls->skip_rng = base_skip_rng;
    *out = &cls->type;
    return LX_OK;
}

void bridge_to_linen_class_free(linen_type *t) {
    if (!t) return;
    tl_class *cls = (tl_class *)t;
    if (cls->magic != TL_CLASS_MAGIC) return;
    cls->magic = 0;
    lx_call_free(&cls->partial);
    free(cls->name);
    free(cls);
}
