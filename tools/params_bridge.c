/* The `bridge.` family of `linnx params`:
 *   bridge.to_linen(nnx.Linear, 4, 8)   -> the Linen variables of to_linen(...).init(key, x)
 *   bridge.ToNNX(linen.Dense(8))         -> the NNX state of ToNNX(..., rngs=nnx.Rngs(key))
 *                                           after lazy_init(x)
 * x is zeros of --input-shape (int32 token ids when the Linen module starts with an Embed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "linnx/nnx_layers.h"
#include "linnx/to_linen.h"
#include "linnx/to_nnx.h"
#include "params.h"

/* to_linen's constructor arguments: plain values, or NNX initializers (nnx.initializers.NAME[(...)],
 * nnx.with_partitioning(...)). */
typedef struct ctor_ctx {
    lx_initializer inits[32]; /* one slot per argument that names an initializer */
    int ninits;
} ctor_ctx;

static int ctor_value(void *ctx, spec_node *v, lx_value *out) {
    ctor_ctx *c = ctx;
    if (c->ninits == 32) return cli_error("params: too many arguments");
    lx_initializer *slot = &c->inits[c->ninits];
    int rc = params_init_arg(v, true, slot);
    if (rc == 0) c->ninits++;
    if (rc >= 0) {
        if (!rc) *out = lx_ptr_v("initializer", slot);
        return rc;
    }
    char err[200];
    int vr = spec_to_value(v, out, err, sizeof err);
    if (vr) return vr == SPEC_NO_MEMORY ? cli_oom("params") : cli_error("params: %s", err);
    return 0;
}

static int to_linen_spec(spec_node *spec, const params_request *req, lx_tree **vars) {
    if (!req->has_shape) return cli_error("params: bridge.to_linen needs --input-shape D0,D1,... for shape inference");
    linen_module *m = NULL;
    int rc = params_to_linen_module(spec, &m);
    if (rc) return rc;
    lx_array *x = lx_array_new(params_reads_ids(spec) ? LX_I32 : LX_F32, req->ndim, req->shape);
    if (!x || linen_init(m, LINEN_KEY(req->key), &LX_ARGS(x), NULL, vars) != LX_OK) rc = cli_lib_error();
    lx_release(x);
    linen_module_release(m);
    return rc;
}

static int to_nnx_spec(spec_node *spec, const params_request *req, lx_tree **vars) {
    char buf[200];
    if (spec->nargs < 1 || spec->args[0].name || !spec_suffix(spec->args[0].value, "linen."))
        return cli_error("params: bridge.ToNNX needs a Linen module, e.g. bridge.ToNNX(linen.Dense(8)): %s",
                         spec_str(spec, buf, sizeof buf));
    if (spec->nargs > 1) return cli_error("params: bridge.ToNNX takes one module (rngs come from --seed/--key)");
    if (!req->has_shape) return cli_error("params: bridge.ToNNX needs --input-shape D0,D1,... for lazy_init");
    linen_module *linen = NULL;
    bool ids = false;
    int rc = params_linen_module(spec->args[0].value, &linen, &ids);
    if (rc) return rc;
    nnx_stream_spec stream = {"default", true, 0, req->key};
    nnx_rngs *rngs = NULL;
    nnx_module *m = NULL;
    lx_array *x = NULL;
    if (nnx_rngs_new(1, &stream, &rngs) != LX_OK || bridge_to_nnx_new(linen, rngs, NULL, &m) != LX_OK ||
        !(x = lx_array_new(ids ? LX_I32 : LX_F32, req->ndim, req->shape)) ||
        bridge_lazy_init(m, NULL, &LX_ARGS(x)) != LX_OK || nnx_state(m, 0, NULL, vars) != LX_OK)
        rc = cli_lib_error();
    lx_release(x);
    nnx_module_release(m);
    nnx_rngs_release(rngs);
    linen_module_release(linen);
    return rc;
}

int params_bridge(spec_node *spec, const params_request *req, lx_tree **vars) {
    const char *name = spec_suffix(spec, "bridge.");
    char buf[200];
    if (spec->kind == SPEC_CALL && !strcmp(name, "to_linen")) return to_linen_spec(spec, req, vars);
    if (spec->kind == SPEC_CALL && !strcmp(name, "ToNNX")) return to_nnx_spec(spec, req, vars);
    return cli_error("params: unknown module '%s' (bridge.to_linen(...) or bridge.ToNNX(...))",
                     spec_str(spec, buf, sizeof buf));
}

int params_to_linen_module(spec_node *spec, linen_module **out) {
    char buf[200];
    const char *cls = spec->kind == SPEC_CALL && spec->nargs > 0 && !spec->args[0].name
                          ? spec_suffix(spec->args[0].value, "nnx.") : NULL;
    const nnx_type *t = cls && spec->args[0].value->kind == SPEC_NAME ? nnx_layer_type(cls) : NULL;
    if (!t)
        return cli_error("bridge.to_linen needs an NNX class first, e.g. bridge.to_linen(nnx.Linear, 4, 8): %s",
                         spec_str(spec, buf, sizeof buf));
    lx_value args[32];
    lx_kwarg kw[32];
    lx_call ctor;
    ctor_ctx *cc = calloc(1, sizeof *cc);
    if (!cc) return cli_oom("params");
    int rc = params_call_args(spec, 1, ctor_value, cc, 32, args, kw, &ctor);
    if (!rc && bridge_to_linen(t, &ctor, NULL, out) != LX_OK) rc = cli_lib_error();
    free(cc); /* the constructor call is copied by bridge_to_linen */
    return rc;
}
