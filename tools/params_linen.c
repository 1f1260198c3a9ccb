/* The `linen.` family of `linnx params`: build a Linen module from a spec, init it on zeros of
 * --input-shape with rngs {'params': key}, return the variables. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "params.h"

#define MAX_OWNED 256

typedef struct builder {
    linen_module *owned[MAX_OWNED]; /* modules built for nested specs, released at the end */
    int nowned;
    lx_initializer inits[MAX_OWNED];
    int ninits;
    bool wants_ints;                /* the outermost layer reads token ids (Embed) */
} builder;

static int build(builder *b, spec_node *n, linen_module **out);

/* INITS.NAME or INITS.NAME(args): one of the Flax initializers (shared by every family). */
int params_initializer(spec_node *n, const char *name, lx_initializer *it) {
    double a[3] = {0, 0, 0};
    int na = 0;
    for (int i = 0; n->kind == SPEC_CALL && i < n->nargs; i++) {
        spec_node *v = n->args[i].value;
        if (n->args[i].name || na == 3 || (v->kind != SPEC_INT && v->kind != SPEC_FLOAT))
            return cli_error("params: initializer %s: only positional numbers are supported", name);
        a[na++] = v->kind == SPEC_INT ? (double)v->i : v->f;
    }
    if (!strcmp(name, "normal")) *it = lx_init_normal(na ? a[0] : 1e-2);
    else if (!strcmp(name, "uniform")) *it = lx_init_uniform(na ? a[0] : 1e-2);
    else if (!strcmp(name, "truncated_normal")) *it = lx_init_truncated_normal(na > 0 ? a[0] : 1e-2, na > 1 ? a[1] : -2, na > 2 ? a[2] : 2);
    else if (!strcmp(name, "constant")) {
        if (na != 1) return cli_error("params: initializers.constant takes one value");
        *it = lx_init_constant(a[0]);
    } else if (lx_initializer_from_name(name, it) != LX_OK) {
        return cli_lib_error();
    } else if (na) {
        return cli_error("params: initializer %s takes no arguments here", name);
    }
    return 0;
}

/* linen.initializers.NAME[(args)] (also jax.nn.initializers.), stored in the builder. */
static int build_init(builder *b, spec_node *n, const char *name, lx_value *out) {
    if (b->ninits == MAX_OWNED) return cli_error("params: too many initializers");
    lx_initializer *it = &b->inits[b->ninits];
    int rc = params_initializer(n, name, it);
    if (rc) return rc;
    b->ninits++;
    *out = lx_ptr_v("initializer", it);
    return 0;
}

static int arg_value(builder *b, spec_node *v, lx_value *out) {
    static const char *const init_prefixes[] = {"linen.initializers.", "jax.nn.initializers.", "nn.initializers."};
    for (size_t i = 0; i < sizeof init_prefixes / sizeof init_prefixes[0]; i++) {
        const char *iname = spec_suffix(v, init_prefixes[i]);
        if (iname) return build_init(b, v, iname, out);
    }
    if (spec_suffix(v, "linen.")) {
        linen_module *m = NULL;
        int rc = build(b, v, &m);
        if (rc) return rc;
        *out = linen_module_v(m);
        return 0;
    }
    char err[200];
    if (spec_to_value(v, out, err, sizeof err)) return cli_error("params: %s", err);
    return 0;
}

static int build(builder *b, spec_node *n, linen_module **out) {
    const char *name = spec_suffix(n, "linen.");
    const linen_type *t = name ? linen_layer_type(name) : NULL;
    char buf[200];
    if (!t) return cli_error("params: unknown module '%s'", spec_str(n, buf, sizeof buf));
    if (n->kind == SPEC_NAME && !(t->flags & LINEN_TYPE_FUNCTION))
        return cli_error("params: '%s' is a class: call it, e.g. %s(...)", n->s, n->s);
    int npos = 0, nkw = 0;
    lx_value args[64];
    lx_kwarg kw[64];
    for (int i = 0; i < n->nargs; i++) {
        if (npos + nkw == 64) return cli_error("params: too many arguments");
        lx_value v;
        int rc = arg_value(b, n->args[i].value, &v);
        if (rc) return rc;
        if (n->args[i].name) kw[nkw++] = LX_KW(n->args[i].name, v);
        else args[npos++] = v;
    }
    if (b->nowned == MAX_OWNED) return cli_error("params: too many modules");
    lx_call c = {npos, args, nkw, kw};
    linen_module *m = NULL;
    if (linen_module_new(t, &c, &m) != LX_OK) return cli_lib_error();
    b->owned[b->nowned++] = m;
    *out = m;
    return 0;
}

/* The example input: int32 token ids for an Embed (first in a Sequential too), else float32. */
static bool reads_ids(const linen_module *m) {
    const linen_type *t = linen_module_type(m);
    if (t == &linen_Embed) return true;
    if (t == &linen_Sequential) {
        const linen_sequential_config *cfg = linen_module_config(m);
        return cfg->n > 0 && reads_ids(cfg->layers[0]);
    }
    return false;
}

int params_linen_module(spec_node *spec, linen_module **out, bool *reads_token_ids) {
    builder b;
    memset(&b, 0, sizeof b);
    linen_module *m = NULL;
    int rc = build(&b, spec, &m);
    if (!rc) {
        *out = linen_module_retain(m);
        if (reads_token_ids) *reads_token_ids = reads_ids(m);
    }
    for (int i = 0; i < b.nowned; i++) linen_module_release(b.owned[i]);
    return rc;
}

int params_linen(spec_node *spec, const params_request *req, lx_tree **vars) {
    builder b;
    memset(&b, 0, sizeof b);
    linen_module *m = NULL;
    int rc = build(&b, spec, &m);
    if (!rc && !req->has_shape) rc = cli_error("params: Linen modules need --input-shape D0,D1,... for shape inference");
    if (!rc) {
        lx_array *x = lx_array_new(reads_ids(m) ? LX_I32 : LX_F32, req->ndim, req->shape);
        lx_value xv = lx_array_v(x);
        lx_call c = {1, &xv, 0, NULL};
        if (!x || linen_init(m, LINEN_KEY(req->key), &c, NULL, vars) != LX_OK) rc = cli_lib_error();
        lx_release(x);
    }
    for (int i = 0; i < b.nowned; i++) linen_module_release(b.owned[i]);
    return rc;
}
