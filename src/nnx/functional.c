/* nnx.bridge.functional: functional(Type)(*args, **kwargs).init(rngs) / .apply(*states)(...). */
#include "nnx_internal.h"

struct nnx_functional {
    const nnx_type *type;
    lx_call call;       /* deep copy (lx_value_dup: modules retained) */
    char **kwnames;
    nnx_graphdef *graphdef;
};

static void free_call(nnx_functional *f) {
    lx_value *args = (lx_value *)f->call.args;
    lx_kwarg *kw = (lx_kwarg *)f->call.kwargs;
    for (int i = 0; i < f->call.nargs; i++) lx_value_free(&args[i]);
    for (int i = 0; i < f->call.nkwargs; i++) {
        lx_value_free(&kw[i].value);
        free(f->kwnames[i]);
    }
    free(args);
    free(kw);
    free(f->kwnames);
}

void nnx_functional_free(nnx_functional *f) {
    if (!f) return;
    free_call(f);
    nnx_graphdef_free(f->graphdef);
    free(f);
}

lx_status nnx_functional_new(const nnx_type *type, const lx_call *call, nnx_functional **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "functional: out is NULL");
    if (!type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "functional: type is NULL");
    *out = NULL;
    lx_call none = LX_NO_CALL;
    if (!call) call = &none;
    nnx_functional *f = calloc(1, sizeof *f);
    if (!f) return lx_fail(LX_ERR_NO_MEMORY, "functional: out of memory");
    f->type = type;
    lx_value *args = call->nargs ? calloc((size_t)call->nargs, sizeof *args) : NULL;
    lx_kwarg *kw = call->nkwargs ? calloc((size_t)call->nkwargs, sizeof *kw) : NULL;
    f->kwnames = call->nkwargs ? calloc((size_t)call->nkwargs, sizeof *f->kwnames) : NULL;
    f->call.args = args;
    f->call.kwargs = kw;
    lx_status s = LX_OK;
    if ((call->nargs && !args) || (call->nkwargs && (!kw || !f->kwnames)))
        s = lx_fail(LX_ERR_NO_MEMORY, "functional: out of memory");
    for (int i = 0; s == LX_OK && i < call->nargs; i++) {
        s = lx_value_dup(&call->args[i], &args[i]); /* modules retained */
        if (s == LX_OK) f->call.nargs = i + 1;
    }
    for (int i = 0; s == LX_OK && i < call->nkwargs; i++) {
        f->kwnames[i] = nnx_strdup(call->kwargs[i].name);
        if (!f->kwnames[i]) s = lx_fail(LX_ERR_NO_MEMORY, "functional: out of memory");
        if (s == LX_OK) s = lx_value_dup(&call->kwargs[i].value, &kw[i].value);
        kw[i].name = f->kwnames[i];
        if (s == LX_OK) f->call.nkwargs = i + 1;
        else free(f->kwnames[i]), f->kwnames[i] = NULL;
    }
    if (s != LX_OK) {
        /* free what was copied (modules released) */
        for (int i = 0; i < f->call.nargs; i++) lx_value_free(&args[i]);
        for (int i = 0; i < f->call.nkwargs; i++) {
            lx_value_free(&kw[i].value);
            free(f->kwnames[i]);
        }
        f->call.nargs = f->call.nkwargs = 0;
        free(args);
        free(kw);
        free(f->kwnames);
        free(f);
        return s;
    }
    *out = f;
    return LX_OK;
}

lx_status nnx_functional_init(nnx_functional *f, nnx_rngs *rngs, lx_tree **state) {
    if (!f) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Functional.init: functional is NULL");
    if (!state) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Functional.init: state is NULL");
    *state = NULL;
    nnx_module *m;
    LX_TRY(nnx_module_new(f->type, &f->call, rngs, &m));
    nnx_graphdef *g;
    lx_status s = nnx_split(m, 0, NULL, &g, state);
    nnx_module_release(m);
    if (s != LX_OK) return s;
    nnx_graphdef_free(f->graphdef);
    f->graphdef = g;
    return LX_OK;
}

lx_status nnx_functional_apply(nnx_functional *f, int nstates, lx_tree *const *states, const char *method,
                               const lx_call *call, lx_value *out, lx_tree **new_state) {
    if (!f) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Functional.apply: functional is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Functional.apply: out is NULL");
    *out = lx_none();
    if (new_state) *new_state = NULL;
    if (!f->graphdef) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Functional.apply: no graphdef; call init first");
    nnx_module *m;
    LX_TRY(nnx_merge(f->graphdef, nstates, states, &m));
    lx_status s = nnx_call(m, method, call, out);
    if (s == LX_OK && new_state) {
        s = nnx_state(m, 0, NULL, new_state);
        if (s != LX_OK) lx_value_free(out);
    }
    nnx_module_release(m);
    return s;
}

const nnx_graphdef *nnx_functional_graphdef(const nnx_functional *f) { return f ? f->graphdef : NULL; }
