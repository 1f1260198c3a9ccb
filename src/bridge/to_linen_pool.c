/* The shared pool of ToLinen caches (Flax has none: its ToLinen rebuilds the module per apply).
 *
 * A compact parent makes a new ToLinen on every call (Flax code does). When such a module is
 * released its cache (the abstract instance, see to_linen_instance.c, and the paths it has
 * warned about) goes to this small process-wide pool; the next ToLinen with the same NNX type,
 * skip_rng and an equal constructor call adopts it, so "built once" holds for compact children
 * too. Calls holding pointers other than types and functions are not pooled: equal addresses
 * need not mean equal contents. bridge_to_linen_cache_clear() empties the pool.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "to_linen_internal.h"

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
    tl_state_free(p->state);
    memset(p, 0, sizeof *p);
}

/* Give a released module's state to the pool (takes cfg->ctor and cfg->state). */
bool tl_pool_donate(tl_config *c) {
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
void tl_pool_adopt(const tl_config *c, tl_state *st) {
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
