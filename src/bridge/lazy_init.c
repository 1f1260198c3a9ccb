/* nnx.bridge.lazy_init: run one method of an NNX module with `initializing` set on its whole
 * graph, so every ToNNX inside creates its Linen variables (Linen init) instead of reading them. */
#include <stdlib.h>
#include <string.h>

#include "linnx/to_nnx.h"

/* Does m have `method`? The type's table; for a ToNNX also the Linen module's methods; other
 * types with a dispatch hook decide per call, so their names are taken on trust. */
static bool has_method(const nnx_module *m, const char *method) {
    if (nnx_find_method(m->type, method)) return true;
    const linen_module *lm = bridge_to_nnx_linen_module(m);
    if (lm) {
        const linen_type *t = linen_module_type(lm);
        if (t->dispatch) return true;
        for (int i = 0; i < t->nmethods; i++)
            if (strcmp(t->methods[i].name, method) == 0) return true;
        return false;
    }
    return m->type->dispatch != NULL;
}

typedef struct {
    nnx_module **mods;
    size_t n, cap;
} held_modules;

static lx_status hold_module(const char *path, const lx_value *node, void *user) {
    nnx_module *m = nnx_module_from_value(node);
    held_modules *h = user;
    if (!m) return LX_OK;
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 16;
        nnx_module **nm = realloc(h->mods, ncap * sizeof *nm);
        if (!nm) return lx_fail(LX_ERR_NO_MEMORY, "lazy_init: out of memory");
        h->mods = nm;
        h->cap = ncap;
    }
    h->mods[h->n++] = nnx_module_retain(m);
    return LX_OK;
}

static void release_held(held_modules *h) {
    for (size_t i = 0; i < h->n; i++) nnx_module_release(h->mods[i]);
    free(h->mods);
}

lx_status bridge_lazy_init(nnx_module *m, const char *method, const lx_call *call) {
    const char *name = method ? method : "__call__";
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "fn = None needs to be a method of an NNX Module.");
    if (!has_method(m, name))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "fn = <%s.%s> needs to be a method of an NNX Module.",
                       m->type->name, name);
    /* The modules whose flag is set are held (the walk allocates; it runs before any flag
     * changes), so clearing them afterwards cannot fail: a module is never left initializing,
     * which would make its next call re-run Linen init. */
    held_modules held = {0};
    lx_status s = nnx_iter_graph(m, hold_module, &held);
    if (s != LX_OK) {
        release_held(&held);
        return s;
    }
    for (size_t i = 0; i < held.n; i++) held.mods[i]->initializing = true;
    lx_value out = lx_none();
    s = nnx_call(m, name, call, &out);
    lx_value_free(&out);
    for (size_t i = 0; i < held.n; i++) held.mods[i]->initializing = false;
    release_held(&held);
    /* Modules the call added start cleared; one it merged in from an initializing graphdef is
     * cleared by this walk (its failure is harmless: every module set above is clear). */
    lx_status cs = nnx_set_initializing(m, false);
    if (cs != LX_OK && s == LX_OK) lx_clear_error();
    return s;
}
