/* The `nnx.` family of `linnx params`: build an NNX module from a spec with Rngs(key) (stream
 * 'default', like nnx.Rngs(seed)) and return its whole state, RNG state included. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"
#include "linnx/to_nnx.h"
#include "params.h"

#define MAX_OWNED 256

typedef struct builder {
    nnx_rngs *rngs;
    nnx_module *owned[MAX_OWNED]; /* modules built for nested specs, released at the end */
    int nowned;
    lx_initializer inits[MAX_OWNED];
    int ninits;
} builder;

static int build(builder *b, spec_node *n, nnx_module **out);

static const nnx_array_fn *array_fn(const char *name) {
    static const nnx_array_fn *const fns[] = {&NNX_RELU, &NNX_GELU, &NNX_SILU, &NNX_TANH, &NNX_SIGMOID};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if (!strcmp(fns[i]->name, name)) return fns[i];
    return NULL;
}

/* bridge.ToNNX(linen.X(...)) as a layer: built with the model's Rngs (forked, as
 * bridge.ToNNX(module, rngs=rngs) does); its variables come with the model's lazy_init. */
static int build_to_nnx(builder *b, spec_node *v, lx_value *out) {
    char buf[200];
    if (v->kind != SPEC_CALL || v->nargs != 1 || v->args[0].name || !spec_suffix(v->args[0].value, "linen."))
        return cli_error("params: bridge.ToNNX takes one Linen module, e.g. bridge.ToNNX(linen.Dense(8)): %s",
                         spec_str(v, buf, sizeof buf));
    if (b->nowned == MAX_OWNED) return cli_error("params: too many modules");
    linen_module *inner = NULL;
    int rc = params_linen_module(v->args[0].value, &inner, NULL);
    if (rc) return rc;
    nnx_module *m = NULL;
    if (bridge_to_nnx_new(inner, b->rngs, NULL, &m) != LX_OK) rc = cli_lib_error();
    linen_module_release(inner); /* the ToNNX holds it */
    if (rc) return rc;
    b->owned[b->nowned++] = m;
    *out = nnx_module_v(m);
    return 0;
}

bool params_nnx_has_to_nnx(const spec_node *n) {
    if (!n) return false;
    const char *bridge = spec_suffix(n, "bridge.");
    if (bridge && !strcmp(bridge, "ToNNX")) return true;
    for (int i = 0; n->kind == SPEC_CALL && i < n->nargs; i++)
        if (params_nnx_has_to_nnx(n->args[i].value)) return true;
    for (int i = 0; n->kind == SPEC_TUPLE && i < n->n; i++)
        if (params_nnx_has_to_nnx(n->items[i])) return true;
    return false;
}

static int arg_value(builder *b, spec_node *v, lx_value *out) {
    if (b->ninits == MAX_OWNED) return cli_error("params: too many initializers");
    int rc = params_init_arg(v, true, &b->inits[b->ninits]);
    if (rc >= 0) {
        if (!rc) *out = lx_ptr_v("initializer", &b->inits[b->ninits++]);
        return rc;
    }
    const char *bridge = spec_suffix(v, "bridge.");
    if (bridge && !strcmp(bridge, "ToNNX")) return build_to_nnx(b, v, out);
    if (bridge && !strcmp(bridge, "to_linen"))
        return cli_error("params: bridge.to_linen makes a Linen module, not a layer of an NNX one (Linen layers go "
                         "into NNX models through bridge.ToNNX(linen.X(...)))");
    const char *name = spec_suffix(v, "nnx.");
    if (name && v->kind == SPEC_NAME && array_fn(name)) {
        *out = nnx_fn_v(array_fn(name));
        return 0;
    }
    if (name) {
        nnx_module *m = NULL;
        int rc = build(b, v, &m);
        if (rc) return rc;
        *out = nnx_module_v(m);
        return 0;
    }
    char err[200];
    int vr = spec_to_value(v, out, err, sizeof err);
    if (vr) return vr == SPEC_NO_MEMORY ? cli_oom("params") : cli_error("params: %s", err);
    return 0;
}

static int arg_value_cb(void *ctx, spec_node *v, lx_value *out) { return arg_value(ctx, v, out); }

/* One StateAxes key as a filter: nnx.Param (any Variable type, by class name), a string (a stream
 * tag, as NNX reads a str filter), `...` (everything), or a tuple of those (any of them). */
static const lx_vartype *vartype_named(const char *name) {
    static const lx_vartype *const types[] = {&lx_Variable, &lx_Param, &lx_BatchStat, &lx_Cache, &lx_Intermediate,
                                              &lx_Perturbation, &lx_LoRAParam, &lx_RngState, &lx_RngKey, &lx_RngCount};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(types[i]->name, name)) return types[i];
    return NULL;
}

static int filter_arg(spec_node *k, nnx_filter *f, nnx_filter *subs, int nsubs) {
    char buf[80];
    if (k->kind == SPEC_STR) {
        *f = NNX_TAG(k->s);
        return 0;
    }
    if (k->kind == SPEC_NAME && !strcmp(k->s, "...")) {
        *f = NNX_EVERYTHING;
        return 0;
    }
    const char *t = spec_suffix(k, "nnx.");
    const lx_vartype *vt = t && k->kind == SPEC_NAME ? vartype_named(t) : NULL;
    if (vt) {
        *f = NNX_OF_TYPE(vt);
        return 0;
    }
    if (k->kind == SPEC_TUPLE && k->n <= nsubs) {
        for (int i = 0; i < k->n; i++) {
            int rc = filter_arg(k->items[i], &subs[i], NULL, 0);
            if (rc) return rc;
        }
        *f = (nnx_filter){NNX_FILTER_ANY, NULL, NULL, k->n, subs, NULL, NULL};
        return 0;
    }
    return cli_error("params: nnx.StateAxes: '%s' is not a filter (nnx.Param, nnx.BatchStat, ..., a stream name, "
                     "`...`, or a tuple of those)", spec_str(k, buf, sizeof buf));
}

#define MAX_STATE_AXES 8
#define MAX_FILTER_UNION 8
typedef struct state_axes_buf {
    nnx_filter filters[MAX_STATE_AXES];
    nnx_filter subs[MAX_STATE_AXES][MAX_FILTER_UNION];
    int axes[MAX_STATE_AXES];
    nnx_state_axes sa;
} state_axes_buf;

/* nnx.StateAxes({nnx.Param: 0, ...: None}) or the bare dict: filter -> axis or None (shared). */
static int state_axes_arg(spec_node *v, state_axes_buf *sb) {
    const char *sn = spec_suffix(v, "nnx.");
    if (sn && !strcmp(sn, "StateAxes") && v->kind == SPEC_CALL) {
        if (v->nargs != 1 || v->args[0].name)
            return cli_error("params: nnx.StateAxes takes one dict: nnx.StateAxes({nnx.Param: 0, ...: None})");
        v = v->args[0].value;
    }
    if (v->kind != SPEC_DICT)
        return cli_error("params: nnx.Stack: state_axes must be nnx.StateAxes({filter: axis or None, ...})");
    if (v->n / 2 > MAX_STATE_AXES) return cli_error("params: nnx.StateAxes: at most %d filters", MAX_STATE_AXES);
    for (int j = 0; j < v->n; j += 2) {
        spec_node *ax = v->items[j + 1];
        int rc = filter_arg(v->items[j], &sb->filters[j / 2], sb->subs[j / 2], MAX_FILTER_UNION);
        if (rc) return rc;
        if (ax->kind != SPEC_INT && ax->kind != SPEC_NONE)
            return cli_error("params: nnx.StateAxes: axes must be ints or None");
        sb->axes[j / 2] = ax->kind == SPEC_NONE ? NNX_AXIS_BROADCAST : (int)ax->i;
    }
    sb->sa = (nnx_state_axes){v->n / 2, sb->filters, sb->axes};
    return 0;
}

/* nnx.Stack(nnx.X(...), L, state_axes=None, transform_metadata={nnx.PARTITION_NAME: 'layers'},
 * partition_name=None): L copies of X stacked as Flax's @nnx.split_rngs(splits=L) +
 * @nnx.vmap(in_axes=(state_axes,), out_axes=state_axes, transform_metadata=...) over X's
 * constructor (linnx's spelling: Flax has no Stack class; docs/stacking.md). out_axes (or
 * state_axes) is 0 or nnx.StateAxes({nnx.Param: 0, ...: None}) (or the bare dict); without it
 * every Variable is on axis 0; in_axes may only be 0. split_rngs=L (nnx.split_rngs' splits) may be given too; it must equal L. */
static int build_stack(builder *b, spec_node *n, nnx_module **out) {
    spec_node *inner = n->nargs >= 1 && !n->args[0].name ? n->args[0].value : NULL;
    spec_node *len = n->nargs >= 2 && !n->args[1].name ? n->args[1].value : NULL;
    const char *pname = NULL;
    state_axes_buf sb;
    bool has_sa = false;
    for (int i = 2; i < n->nargs; i++) {
        const char *k = n->args[i].name;
        spec_node *v = n->args[i].value;
        int rc = 0;
        if (k && !strcmp(k, "partition_name") && (v->kind == SPEC_STR || v->kind == SPEC_NONE))
            pname = v->kind == SPEC_STR ? v->s : NULL;
        else if (k && !strcmp(k, "transform_metadata"))
            rc = params_partition_metadata("nnx.Stack", k, v, &pname);
        else if (k && !strcmp(k, "in_axes")) {
            if (v->kind != SPEC_INT || v->i != 0) /* the constructor's Rngs, split on axis 0 */
                return cli_error("params: nnx.Stack: in_axes is the constructor's (0); give the StateAxes as out_axes=");
        } else if (k && (!strcmp(k, "state_axes") || !strcmp(k, "out_axes"))) {
            if (v->kind == SPEC_INT && v->i == 0) continue; /* out_axes=0: every Variable on axis 0 */
            if (has_sa) return cli_error("params: nnx.Stack: give the StateAxes once (state_axes=)");
            rc = state_axes_arg(v, &sb);
            has_sa = true;
        } else if (k && !strcmp(k, "split_rngs") && v->kind == SPEC_INT && len && len->kind == SPEC_INT) {
            if (v->i != len->i) return cli_error("params: nnx.Stack: split_rngs=%lld differs from the length %lld",
                                                 (long long)v->i, (long long)len->i);
        } else
            return cli_error("params: nnx.Stack takes (module, length, in_axes=0, out_axes=0 or nnx.StateAxes({...}), "
                             "transform_metadata={nnx.PARTITION_NAME: name}, partition_name=None)");
        if (rc) return rc;
    }
    const char *iname = inner ? spec_suffix(inner, "nnx.") : NULL;
    const nnx_type *t = iname && inner->kind == SPEC_CALL ? nnx_layer_type(iname) : NULL;
    if (!t || !len || len->kind != SPEC_INT)
        return cli_error("params: nnx.Stack needs a module call and a length: nnx.Stack(nnx.Linear(5, 4), 3)");
    lx_value args[64];
    lx_kwarg kw[64];
    lx_call c;
    int rc = params_call_args(inner, 0, arg_value_cb, b, 64, args, kw, &c);
    if (rc) return rc;
    if (b->nowned == MAX_OWNED) return cli_error("params: too many modules");
    nnx_module *m = NULL;
    if (nnx_vmap_create(t, &c, b->rngs, len->i, has_sa ? &sb.sa : NULL, pname, &m) != LX_OK) return cli_lib_error();
    b->owned[b->nowned++] = m;
    *out = m;
    return 0;
}

static int build(builder *b, spec_node *n, nnx_module **out) {
    const char *name = spec_suffix(n, "nnx.");
    if (name && !strcmp(name, "Stack") && n->kind == SPEC_CALL) return build_stack(b, n, out);
    const nnx_type *t = name ? nnx_layer_type(name) : NULL;
    char buf[200];
    if (!t) return cli_error("params: unknown module '%s'", spec_str(n, buf, sizeof buf));
    if (n->kind == SPEC_NAME) return cli_error("params: '%s' is a class: call it, e.g. %s(...)", n->s, n->s);
    lx_value args[64];
    lx_kwarg kw[64];
    lx_call c;
    int rc = params_call_args(n, 0, arg_value_cb, b, 64, args, kw, &c);
    if (rc) return rc;
    if (b->nowned == MAX_OWNED) return cli_error("params: too many modules");
    nnx_module *m = NULL;
    if (nnx_module_new(t, &c, b->rngs, &m) != LX_OK) return cli_lib_error();
    b->owned[b->nowned++] = m;
    *out = m;
    return 0;
}

int params_nnx_module(spec_node *spec, nnx_rngs *rngs, nnx_module **out) {
    builder *b = calloc(1, sizeof *b);
    if (!b) return cli_oom("params");
    b->rngs = rngs;
    nnx_module *m = NULL;
    int rc = build(b, spec, &m);
    if (!rc) *out = nnx_module_retain(m);
    for (int i = 0; i < b->nowned; i++) nnx_module_release(b->owned[i]);
    free(b);
    return rc;
}

int params_nnx(spec_node *spec, const params_request *req, lx_tree **vars) {
    builder *b = calloc(1, sizeof *b); /* inline initializers make it large for the stack */
    if (!b) return cli_oom("params");
    nnx_stream_spec stream = {"default", true, 0, req->key};
    if (nnx_rngs_new(1, &stream, &b->rngs) != LX_OK) {
        free(b);
        return cli_lib_error();
    }
    nnx_module *m = NULL;
    int rc = build(b, spec, &m);
    if (!rc && params_nnx_has_to_nnx(spec)) { /* bridge.lazy_init(model, zeros(input_shape)) */
        lx_array *x = NULL;
        if (!req->has_shape)
            rc = cli_error("params: a bridge.ToNNX layer needs --input-shape D0,D1,... for lazy_init");
        else if (!(x = lx_array_new(params_reads_ids(spec) ? LX_I32 : LX_F32, req->ndim, req->shape)) || bridge_lazy_init(m, NULL, &LX_ARGS(x)) != LX_OK)
            rc = cli_lib_error();
        lx_release(x);
    }
    if (!rc && nnx_state(m, 0, NULL, vars) != LX_OK) rc = cli_lib_error();
    for (int i = 0; i < b->nowned; i++) nnx_module_release(b->owned[i]);
    nnx_rngs_release(b->rngs);
    free(b);
    return rc;
}
