/* The `linen.` family of `linnx params`: build a Linen module from a spec, init it on zeros of
 * --input-shape with rngs {'params': key}, return the variables. */
#include <stdio.h>
#include <stdlib.h>
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

/* ---- initializer arguments, shared by the families ----
 *
 * Flax's wrappers and their parameters, per family: Linen's nn.with_partitioning(fn, names,
 * mesh=None) and nn.with_logical_partitioning(fn, names, mesh=None, rules=None); NNX's
 * nnx.with_partitioning(initializer, sharding, mesh=None). A mesh is given by name (a string). */
typedef struct wrapper_form {
    const char *name; /* "linen.with_partitioning" */
    bool logical;
    const char *params[4];
    int nparams;
} wrapper_form;

static const wrapper_form WRAPPERS[] = {
    {"linen.with_partitioning", false, {"fn", "names", "mesh"}, 3},
    {"nn.with_partitioning", false, {"fn", "names", "mesh"}, 3},
    {"linen.with_logical_partitioning", true, {"fn", "names", "mesh", "rules"}, 4},
    {"nn.with_logical_partitioning", true, {"fn", "names", "mesh", "rules"}, 4},
    {"nnx.with_partitioning", false, {"initializer", "sharding", "mesh"}, 3},
};

static const char *const LINEN_INITS[] = {"linen.initializers.", "nn.initializers.", "jax.nn.initializers."};
static const char *const NNX_INITS[] = {"nnx.initializers.", "nn.initializers.", "jax.nn.initializers."};

/* A tuple of str / None (or None for the empty tuple's absence, not allowed here). */
static int strs_arg(const char *who, const char *what, spec_node *v, int cap, const char **out, int *n) {
    if (v->kind != SPEC_TUPLE)
        return cli_error("params: %s: %s must be a tuple of str or None, e.g. ('embed', 'mlp')", who, what);
    if (v->n > cap) return cli_error("params: %s: %s has %d entries (at most %d)", who, what, v->n, cap);
    for (int i = 0; i < v->n; i++) {
        spec_node *e = v->items[i];
        if (e->kind != SPEC_STR && e->kind != SPEC_NONE)
            return cli_error("params: %s: %s must be a tuple of str or None, e.g. ('embed', 'mlp')", who, what);
        out[i] = e->kind == SPEC_STR ? e->s : NULL;
    }
    *n = v->n;
    return 0;
}

/* rules: ((logical, mesh), ...) with mesh a str or None -> flattened pairs. */
static int rules_arg(const char *who, spec_node *v, const char **out, int *n) {
    static const char shape[] = "rules must be a tuple of (logical, mesh) pairs, e.g. (('embed', 'data'),)";
    if (v->kind != SPEC_TUPLE) return cli_error("params: %s: %s", who, shape);
    if (v->n > LX_PARTITION_MAX_RULES)
        return cli_error("params: %s: %d rules (at most %d)", who, v->n, LX_PARTITION_MAX_RULES);
    for (int i = 0; i < v->n; i++) {
        spec_node *p = v->items[i];
        if (p->kind != SPEC_TUPLE || p->n != 2 || p->items[0]->kind != SPEC_STR ||
            (p->items[1]->kind != SPEC_STR && p->items[1]->kind != SPEC_NONE))
            return cli_error("params: %s: %s", who, shape);
        out[2 * i] = p->items[0]->s;
        out[2 * i + 1] = p->items[1]->kind == SPEC_STR ? p->items[1]->s : NULL;
    }
    *n = 2 * v->n;
    return 0;
}

static int init_arg(spec_node *v, bool nnx, lx_initializer *it, int depth);

/* WRAPPER(init, names, mesh=None[, rules=None]) bound like Python binds it. */
static int wrapped_init(spec_node *v, const wrapper_form *w, bool nnx, lx_initializer *it, int depth) {
    const char *who = w->name;
    spec_node *slot[4] = {NULL, NULL, NULL, NULL};
    if (v->kind != SPEC_CALL) return cli_error("params: %s is a function: call it, e.g. %s(INIT, ('in', 'out'))", who, who);
    int npos = 0, given = 0;
    for (int i = 0; i < v->nargs; i++) given += !v->args[i].name;
    for (int i = 0; i < v->nargs; i++) {
        int k = -1;
        if (!v->args[i].name) {
            if (npos == w->nparams)
                return cli_error("params: %s() takes from 2 to %d positional arguments but %d were given", who,
                                 w->nparams, given);
            k = npos++;
        } else {
            for (int j = 0; j < w->nparams; j++)
                if (!strcmp(v->args[i].name, w->params[j])) k = j;
            if (k < 0)
                return cli_error("params: %s() got an unexpected keyword argument '%s'", who, v->args[i].name);
            if (slot[k]) return cli_error("params: %s() got multiple values for argument '%s'", who, w->params[k]);
        }
        slot[k] = v->args[i].value;
    }
    for (int j = 0; j < 2; j++)
        if (!slot[j]) return cli_error("params: %s() missing 1 required positional argument: '%s'", who, w->params[j]);
    lx_initializer base;
    int rc = init_arg(slot[0], nnx, &base, depth + 1);
    if (rc < 0) {
        char buf[200];
        return cli_error("params: %s: '%s' is not an initializer", who, spec_str(slot[0], buf, sizeof buf));
    }
    if (rc) return rc;
    const char *names[LX_MAX_DIMS], *rules[2 * LX_PARTITION_MAX_RULES];
    int nnames = 0, nrules = 0;
    if ((rc = strs_arg(who, w->params[1], slot[1], LX_MAX_DIMS, names, &nnames))) return rc;
    const char *mesh = NULL;
    if (slot[2] && slot[2]->kind == SPEC_STR) mesh = slot[2]->s;
    else if (slot[2] && slot[2]->kind != SPEC_NONE)
        return cli_error("params: %s: mesh must be a mesh name (a string) or None", who);
    bool has_rules = slot[3] && slot[3]->kind != SPEC_NONE;
    if (has_rules && (rc = rules_arg(who, slot[3], rules, &nrules))) return rc;
    lx_status s = w->logical ? lx_init_with_logical_partitioning(&base, nnames, names, mesh, nrules,
                                                                  has_rules ? rules : NULL, it)
                             : lx_init_with_partitioning(&base, nnames, names, mesh, it);
    return s == LX_OK ? 0 : cli_lib_error();
}

/* 0 with *it, an exit status after printing the error, or -1: `v` is not an initializer spec. */
static int init_arg(spec_node *v, bool nnx, lx_initializer *it, int depth) {
    const char *const *prefixes = nnx ? NNX_INITS : LINEN_INITS;
    for (int i = 0; i < 3; i++) {
        const char *iname = spec_suffix(v, prefixes[i]);
        if (iname) return params_initializer(v, iname, it);
    }
    for (size_t i = 0; i < sizeof WRAPPERS / sizeof WRAPPERS[0]; i++) {
        bool nnx_form = !strncmp(WRAPPERS[i].name, "nnx.", 4);
        if (!v->s || strcmp(v->s, WRAPPERS[i].name) != 0) continue;
        /* Flax would store the other system's wrapper object as the value itself. */
        if (nnx_form != nnx)
            return cli_error("params: %s is for %s layers; %s layers take %s", WRAPPERS[i].name,
                             nnx_form ? "NNX" : "Linen", nnx ? "NNX" : "Linen",
                             nnx ? "nnx.with_partitioning(INIT, names)" : "linen.with_partitioning(INIT, names)");
        if (depth > 4) return cli_error("params: %s: initializers nested too deeply", WRAPPERS[i].name);
        return wrapped_init(v, &WRAPPERS[i], nnx, it, depth);
    }
    return -1;
}

int params_init_arg(spec_node *v, bool nnx, lx_initializer *it) { return init_arg(v, nnx, it, 0); }

static int arg_value(builder *b, spec_node *v, lx_value *out) {
    if (b->ninits == MAX_OWNED) return cli_error("params: too many initializers");
    int rc = params_init_arg(v, false, &b->inits[b->ninits]);
    if (rc >= 0) {
        if (!rc) *out = lx_ptr_v("initializer", &b->inits[b->ninits++]);
        return rc;
    }
    const char *bridge = spec_suffix(v, "bridge.");
    if (spec_suffix(v, "linen.") || (bridge && !strcmp(bridge, "to_linen"))) { /* to_linen: an NNX layer inside */
        linen_module *m = NULL;
        rc = build(b, v, &m);
        if (rc) return rc;
        *out = linen_module_v(m);
        return 0;
    }
    if (bridge && !strcmp(bridge, "ToNNX"))
        return cli_error("params: bridge.ToNNX makes an NNX module, not a layer of a Linen one (NNX layers go into "
                         "Linen models through bridge.to_linen(nnx.Class, ...))");
    char err[200];
    int vr = spec_to_value(v, out, err, sizeof err);
    if (vr) return vr == SPEC_NO_MEMORY ? cli_oom("params") : cli_error("params: %s", err);
    return 0;
}

static int arg_value_cb(void *ctx, spec_node *v, lx_value *out) { return arg_value(ctx, v, out); }

int params_call_args(spec_node *n, int first, params_arg_fn fn, void *ctx, int cap, lx_value *args,
                     lx_kwarg *kw, lx_call *out) {
    int npos = 0, nkw = 0;
    for (int i = first; i < n->nargs; i++) {
        if (npos + nkw == cap) return cli_error("params: too many arguments");
        lx_value v;
        int rc = fn(ctx, n->args[i].value, &v);
        if (rc) return rc;
        if (n->args[i].name) kw[nkw++] = LX_KW(n->args[i].name, v);
        else args[npos++] = v;
    }
    *out = (lx_call){npos, args, nkw, kw};
    return 0;
}

static int build(builder *b, spec_node *n, linen_module **out);

/* Collection or stream names: 'c', ('a', 'b') / ['a', 'b'], or (names_dict) {'a': True, 'b': False}
 * (split_rngs' mapping: the streams set True). At most 8. */
static int names_arg(const char *what, const char *k, spec_node *v, bool allow_dict, const char **names, int *n) {
    if (v->kind == SPEC_BOOL && !v->b) return 0; /* Flax's False: no collection */
    if (v->kind == SPEC_DICT && allow_dict) {
        for (int j = 0; j < v->n; j += 2) {
            spec_node *key = v->items[j], *on = v->items[j + 1];
            if (key->kind != SPEC_STR || on->kind != SPEC_BOOL)
                return cli_error("params: %s: %s must map stream names to True or False, e.g. {'params': True}", what, k);
            if (!on->b) continue;
            if (*n == 8) return cli_error("params: %s: %s names more than 8 streams", what, k);
            names[(*n)++] = key->s;
        }
        return 0;
    }
    int cnt = v->kind == SPEC_STR ? 1 : v->kind == SPEC_TUPLE ? v->n : -1;
    for (int j = 0; j < cnt; j++) {
        spec_node *e = v->kind == SPEC_STR ? v : v->items[j];
        if (e->kind != SPEC_STR) cnt = -1;
        else if (*n == 8) return cli_error("params: %s: %s names more than 8 collections", what, k);
        else names[(*n)++] = e->s;
    }
    if (cnt < 0)
        return cli_error(allow_dict ? "params: %s: %s must be stream names or a dict, e.g. {'params': True}"
                                    : "params: %s: %s must be collection names, e.g. 'batch_stats' or ('a', 'b')",
                         what, k);
    return 0;
}

/* variable_axes: {'params': 0, 'cache': None} (Flax's mapping), or linen's older spellings
 * ('params', 0) and (('params', 1), ('cache', 0)). An axis None broadcasts the collection. */
static int variable_axes_arg(const char *what, spec_node *v, linen_var_axis *va, int *nva) {
    static const char shape[] = "variable_axes must be a dict {'collection': axis or None} or ('collection', axis) pairs";
    if (v->kind == SPEC_DICT) {
        for (int j = 0; j < v->n; j += 2) {
            spec_node *key = v->items[j], *ax = v->items[j + 1];
            if (key->kind != SPEC_STR || (ax->kind != SPEC_INT && ax->kind != SPEC_NONE))
                return cli_error("params: %s: %s", what, shape);
            if (*nva == 8) return cli_error("params: %s: variable_axes names more than 8 collections", what);
            va[*nva].collection = key->s;
            va[(*nva)++].axis = ax->kind == SPEC_NONE ? LINEN_AXIS_BROADCAST : (int)ax->i;
        }
        return 0;
    }
    bool pair = v->kind == SPEC_TUPLE && v->n == 2 && v->items[0]->kind == SPEC_STR;
    int cnt = v->kind != SPEC_TUPLE ? 0 : pair ? 1 : v->n;
    for (int j = 0; j < cnt && *nva < 8; j++) {
        spec_node *p = pair ? v : v->items[j];
        if (p->kind != SPEC_TUPLE || p->n != 2 || p->items[0]->kind != SPEC_STR ||
            (p->items[1]->kind != SPEC_INT && p->items[1]->kind != SPEC_NONE))
            return cli_error("params: %s: %s", what, shape);
        va[*nva].collection = p->items[0]->s;
        va[(*nva)++].axis = p->items[1]->kind == SPEC_NONE ? LINEN_AXIS_BROADCAST : (int)p->items[1]->i;
    }
    if (!cnt) return cli_error("params: %s: %s", what, shape);
    return 0;
}

/* metadata_params={nn.PARTITION_NAME: 'layers'} (flax.core.meta.PARTITION_NAME is the string
 * 'partition_name'); NNX's transform_metadata takes the same. */
int params_partition_metadata(const char *what, const char *k, spec_node *v, const char **pname) {
    if (v->kind != SPEC_DICT)
        return cli_error("params: %s: %s must be a dict, e.g. {nn.PARTITION_NAME: 'layers'}", what, k);
    for (int j = 0; j < v->n; j += 2) {
        spec_node *key = v->items[j], *val = v->items[j + 1];
        const char *ks = key->s, *dot = key->kind == SPEC_NAME ? strrchr(ks, '.') : NULL;
        bool is_pn = key->kind == SPEC_STR ? !strcmp(ks, "partition_name")
                                           : dot && !strcmp(dot + 1, "PARTITION_NAME") &&
                                                 (!strncmp(ks, "nn.", 3) || !strncmp(ks, "linen.", 6) ||
                                                  !strncmp(ks, "nnx.", 4) || !strncmp(ks, "flax.", 5) || !strncmp(ks, "meta.", 5));
        if (!is_pn) {
            char buf[80];
            return cli_error("params: %s: %s: unsupported key %s (only PARTITION_NAME)", what, k, spec_str(key, buf, sizeof buf));
        }
        if (val->kind != SPEC_STR && val->kind != SPEC_NONE)
            return cli_error("params: %s: %s: the partition name must be a string or None", what, k);
        *pname = val->kind == SPEC_STR ? val->s : NULL;
    }
    return 0;
}

static int build(builder *b, spec_node *n, linen_module **out);

/* linen.vmap / linen.scan(MODULE, variable_axes={'params': 0}, split_rngs={'params': True},
 * in_axes=0|None|(..), out_axes=0, axis_size=N | length=N, metadata_params={nn.PARTITION_NAME:
 * 'layers'}, name='layers'), and scan's variable_broadcast=, variable_carry=, unroll=,
 * check_constancy_invariants=. MODULE is a linen. spec, linen.remat(...) or bridge.to_linen(...).
 * linnx's older spellings stay: variable_axes=('params', 0) or (('params', 1), ('cache', 0)),
 * split_rngs=('params',), partition_name='layers' (docs/stacking.md). */
static int build_lift(builder *b, spec_node *n, bool scan, linen_module **out) {
    const char *what = scan ? "linen.scan" : "linen.vmap";
    if (n->kind != SPEC_CALL || n->nargs < 1 || n->args[0].name)
        return cli_error("params: %s needs the module first: %s(linen.Dense(4), ...)", what, what);
    linen_module *target = NULL;
    int rc = build(b, n->args[0].value, &target);
    if (rc) return rc;
    linen_var_axis va[8];
    const char *names[8], *bcast[8], *carry[8], *mname = NULL;
    int axes[8];
    linen_lift_opts o = {0};
    int nva = 0, nsplit = 0, nin = 0, nbcast = 0, ncarry = 0;
    for (int i = 1; i < n->nargs; i++) {
        const char *k = n->args[i].name;
        spec_node *v = n->args[i].value;
        if (!k) return cli_error("params: %s takes one positional argument (the module)", what);
        for (int j = 1; j < i; j++)
            if (!strcmp(n->args[j].name, k)) return cli_error("params: %s: keyword argument repeated: %s", what, k);
        if (!strcmp(k, "variable_axes")) {
            if ((rc = variable_axes_arg(what, v, va, &nva))) return rc;
        } else if (!strcmp(k, "split_rngs")) {
            if ((rc = names_arg(what, k, v, true, names, &nsplit))) return rc;
        } else if (scan && !strcmp(k, "variable_broadcast")) {
            if ((rc = names_arg(what, k, v, false, bcast, &nbcast))) return rc;
        } else if (scan && !strcmp(k, "variable_carry")) {
            if ((rc = names_arg(what, k, v, false, carry, &ncarry))) return rc;
        } else if (!strcmp(k, "in_axes")) {
            int cnt = v->kind == SPEC_TUPLE ? v->n : 1;
            for (int j = 0; j < cnt && nin < 8; j++) {
                spec_node *a = v->kind == SPEC_TUPLE ? v->items[j] : v;
                if (a->kind != SPEC_INT && a->kind != SPEC_NONE) return cli_error("params: %s: in_axes must be ints or None", what);
                axes[nin++] = a->kind == SPEC_NONE ? LINEN_AXIS_BROADCAST : (int)a->i;
            }
        } else if (!strcmp(k, "out_axes") && v->kind == SPEC_INT) {
            o.out_axes = (int)v->i;
        } else if ((!strcmp(k, "axis_size") || !strcmp(k, "length")) && v->kind == SPEC_INT) {
            /* the library reads length 0 as "from the mapped inputs": an explicit 0 (or a negative
             * size) is refused here instead of silently taking the input's size (JAX: a mismatch) */
            if (v->i <= 0 || v->i > INT32_MAX)
                return cli_error("params: %s: %s must be a positive int, got %lld", what, k, (long long)v->i);
            o.length = v->i;
        } else if (!strcmp(k, "partition_name") && v->kind == SPEC_STR) {
            o.partition_name = v->s;
        } else if (!strcmp(k, "metadata_params")) {
            if ((rc = params_partition_metadata(what, k, v, &o.partition_name))) return rc;
        } else if (scan && !strcmp(k, "unroll")) {
            if (v->kind == SPEC_BOOL) o.unroll = v->b ? (int)(o.length > 0 ? o.length : 1) : 1;
            else if (v->kind == SPEC_INT && v->i >= 1 && v->i <= 1 << 30) o.unroll = (int)v->i;
            else return cli_error("params: %s: unroll must be a positive int or a bool", what);
        } else if (scan && !strcmp(k, "check_constancy_invariants")) {
            if (v->kind != SPEC_BOOL) return cli_error("params: %s: check_constancy_invariants must be True or False", what);
            o.no_constancy_check = !v->b;
        } else if (!strcmp(k, "name")) {
            if (v->kind != SPEC_STR && v->kind != SPEC_NONE) return cli_error("params: %s: name must be a string or None", what);
            mname = v->kind == SPEC_STR ? v->s : NULL;
        } else {
            return cli_error("params: %s: unsupported argument '%s'", what, k);
        }
    }
    o.variable_axes = (linen_var_axes){nva, va};
    o.split_rngs = (linen_names){nsplit, names};
    o.variable_broadcast = (linen_names){nbcast, bcast};
    o.variable_carry = (linen_names){ncarry, carry};
    o.in_axes = (linen_axes){nin, axes};
    if (b->nowned == MAX_OWNED) return cli_error("params: too many modules");
    linen_module *m = NULL;
    lx_status s = scan ? (mname ? linen_scan_named(target, &o, mname, &m) : linen_scan(target, &o, &m))
                       : (mname ? linen_vmap_named(target, &o, mname, &m) : linen_vmap(target, &o, &m));
    if (s != LX_OK) return cli_lib_error();
    b->owned[b->nowned++] = m;
    *out = m;
    return 0;
}

/* linen.remat(MODULE, policy=jax.checkpoint_policies.nothing_saveable | dots_saveable, name=None)
 * (linen.checkpoint is the same): the parameters are the module's own. */
static int build_remat(builder *b, spec_node *n, const char *what, linen_module **out) {
    if (n->kind != SPEC_CALL || n->nargs < 1 || n->args[0].name)
        return cli_error("params: %s needs the module first: %s(linen.Dense(4))", what, what);
    linen_module *target = NULL;
    int rc = build(b, n->args[0].value, &target);
    if (rc) return rc;
    lx_remat_policy policy = LX_REMAT_NOTHING_SAVEABLE;
    const char *mname = NULL;
    for (int i = 1; i < n->nargs; i++) {
        const char *k = n->args[i].name;
        spec_node *v = n->args[i].value;
        if (!k) return cli_error("params: %s takes one positional argument (the module)", what);
        if (!strcmp(k, "policy")) {
            const char *pn = v->kind == SPEC_NAME ? strrchr(v->s, '.') : NULL;
            pn = pn ? pn + 1 : v->kind == SPEC_NAME ? v->s : NULL;
            if (v->kind == SPEC_NONE || (pn && !strcmp(pn, "nothing_saveable"))) policy = LX_REMAT_NOTHING_SAVEABLE;
            else if (pn && !strcmp(pn, "dots_saveable")) policy = LX_REMAT_DOTS_SAVEABLE;
            else
                return cli_error("params: %s: policy must be jax.checkpoint_policies.nothing_saveable or dots_saveable", what);
        } else if (!strcmp(k, "name")) {
            if (v->kind != SPEC_STR && v->kind != SPEC_NONE) return cli_error("params: %s: name must be a string or None", what);
            mname = v->kind == SPEC_STR ? v->s : NULL;
        } else if (!strcmp(k, "prevent_cse") || !strcmp(k, "static_argnums")) {
            continue; /* tracing options: nothing to do for a module run op by op */
        } else {
            return cli_error("params: %s: unsupported argument '%s'", what, k);
        }
    }
    if (b->nowned == MAX_OWNED) return cli_error("params: too many modules");
    linen_module *m = NULL;
    if ((mname ? linen_remat_named(target, policy, mname, &m) : linen_remat(target, policy, &m)) != LX_OK)
        return cli_lib_error();
    b->owned[b->nowned++] = m;
    *out = m;
    return 0;
}

static int build(builder *b, spec_node *n, linen_module **out) {
    const char *name = spec_suffix(n, "linen.");
    if (name && (!strcmp(name, "vmap") || !strcmp(name, "scan"))) return build_lift(b, n, name[0] == 's', out);
    if (name && (!strcmp(name, "remat") || !strcmp(name, "checkpoint"))) return build_remat(b, n, n->s, out);
    const char *bridge = spec_suffix(n, "bridge.");
    if (bridge && !strcmp(bridge, "to_linen")) { /* an NNX layer: in a Sequential, or lifted by a transform */
        if (b->nowned == MAX_OWNED) return cli_error("params: too many modules");
        linen_module *m = NULL;
        int rc = params_to_linen_module(n, &m);
        if (rc) return rc;
        b->owned[b->nowned++] = m;
        *out = m;
        return 0;
    }
    const linen_type *t = name ? linen_layer_type(name) : NULL;
    char buf[200];
    if (!t) return cli_error("params: unknown module '%s'", spec_str(n, buf, sizeof buf));
    if (n->kind == SPEC_NAME && !(t->flags & LINEN_TYPE_FUNCTION))
        return cli_error("params: '%s' is a class: call it, e.g. %s(...)", n->s, n->s);
    lx_value args[64];
    lx_kwarg kw[64];
    lx_call c;
    int rc = params_call_args(n, 0, arg_value_cb, b, 64, args, kw, &c);
    if (rc) return rc;
    if (b->nowned == MAX_OWNED) return cli_error("params: too many modules");
    linen_module *m = NULL;
    if (linen_module_new(t, &c, &m) != LX_OK) return cli_lib_error();
    b->owned[b->nowned++] = m;
    *out = m;
    return 0;
}

bool params_reads_ids(const spec_node *n) {
    if (!n || (n->kind != SPEC_CALL && n->kind != SPEC_NAME)) return false;
    const char *name = spec_suffix(n, "linen.");
    if (!name) name = spec_suffix(n, "nnx.");
    const char *bridge = spec_suffix(n, "bridge.");
    /* the first positional argument: a Sequential's first layer (a tuple or list of layers: its
     * first), the module a lift or a bridge wraps, to_linen's NNX class */
    const spec_node *first = n->kind == SPEC_CALL && n->nargs > 0 && !n->args[0].name ? n->args[0].value : NULL;
    if (first && first->kind == SPEC_TUPLE) first = first->n > 0 ? first->items[0] : NULL;
    if (name && !strcmp(name, "Embed")) return true;
    if (name && (!strcmp(name, "Sequential") || !strcmp(name, "vmap") || !strcmp(name, "scan") ||
                 !strcmp(name, "remat") || !strcmp(name, "checkpoint") || !strcmp(name, "Stack")))
        return params_reads_ids(first);
    if (bridge && (!strcmp(bridge, "to_linen") || !strcmp(bridge, "ToNNX"))) return params_reads_ids(first);
    return false;
}

int params_linen_module(spec_node *spec, linen_module **out, bool *reads_token_ids) {
    builder *b = calloc(1, sizeof *b); /* inline initializers make it large for the stack */
    if (!b) return cli_oom("params");
    linen_module *m = NULL;
    int rc = build(b, spec, &m);
    if (!rc) {
        *out = linen_module_retain(m);
        if (reads_token_ids) *reads_token_ids = params_reads_ids(spec);
    }
    for (int i = 0; i < b->nowned; i++) linen_module_release(b->owned[i]);
    free(b);
    return rc;
}

int params_linen(spec_node *spec, const params_request *req, lx_tree **vars) {
    builder *b = calloc(1, sizeof *b); /* inline initializers make it large for the stack */
    if (!b) return cli_oom("params");
    linen_module *m = NULL;
    int rc = build(b, spec, &m);
    if (!rc && !req->has_shape) rc = cli_error("params: Linen modules need --input-shape D0,D1,... for shape inference");
    if (!rc) {
        lx_array *x = lx_array_new(params_reads_ids(spec) ? LX_I32 : LX_F32, req->ndim, req->shape);
        lx_value xv = lx_array_v(x);
        lx_call c = {1, &xv, 0, NULL};
        if (!x || linen_init(m, LINEN_KEY(req->key), &c, NULL, vars) != LX_OK) rc = cli_lib_error();
        lx_release(x);
    }
    for (int i = 0; i < b->nowned; i++) linen_module_release(b->owned[i]);
    free(b);
    return rc;
}
