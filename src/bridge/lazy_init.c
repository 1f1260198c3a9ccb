/* nnx.bridge.lazy_init: run one method of an NNX module with `initializing` set on its whole
 * graph, so every ToNNX inside creates its Linen variables (Linen init) instead of reading them. */
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

lx_status bridge_lazy_init(nnx_module *m, const char *method, const lx_call *call) {
    const char *name = method ? method : "__call__";
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "fn = None needs to be a method of an NNX Module.");
    if (!has_method(m, name))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "fn = <%s.%s> needs to be a method of an NNX Module.",
                       m->type->name, name);
    nnx_set_initializing(m, true);
    lx_value out = lx_none();
    lx_status s = nnx_call(m, name, call, &out);
    lx_value_free(&out);
    /* Always cleared, on the graph as it is now (the call may have added attributes). */
    nnx_set_initializing(m, false);
    return s;
}
