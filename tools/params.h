/* tools/params.h - the `linnx params` families: one entry per spec prefix.
 *
 * A family builds the module a spec describes, initialises it and hands back the variables as a
 * tree of collections (Linen) or of state (NNX); cmd_params prints every leaf. Adding a family
 * (nnx., bridge.): write `int params_<family>(const spec_node *spec, const params_request *req,
 * lx_tree **vars)` in tools/params_<family>.c and add one line to PARAMS_FAMILIES in
 * tools/cmd_params.c.
 */
#ifndef LINNX_TOOLS_PARAMS_H
#define LINNX_TOOLS_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/linnx.h"
#include "spec.h"

typedef struct params_request {
    lx_key key;          /* --seed / --key */
    bool has_shape;      /* --input-shape given */
    int ndim;
    int64_t shape[LX_MAX_DIMS];
} params_request;

/* 0 with *vars (the caller releases it), or an exit status after printing one `linnx: ...` line
 * (2 for bad specs and arguments). */
typedef int (*params_family_fn)(spec_node *spec, const params_request *req, lx_tree **vars);

typedef struct params_family {
    const char *prefix; /* "linen." */
    params_family_fn init;
} params_family;

int params_linen(spec_node *spec, const params_request *req, lx_tree **vars);
int params_nnx(spec_node *spec, const params_request *req, lx_tree **vars);
int params_bridge(spec_node *spec, const params_request *req, lx_tree **vars);
/* Build the Linen module a linen. spec describes (*out owned by the caller); *reads_token_ids
 * (when not NULL) tells whether its example input is int32 ids (params_reads_ids). 0, or an exit
 * status. */
int params_linen_module(spec_node *spec, linen_module **out, bool *reads_token_ids);
/* Build the NNX module an nnx. spec describes with `rngs` (*out owned by the caller). 0, or an
 * exit status after printing the error. */
int params_nnx_module(spec_node *spec, nnx_rngs *rngs, nnx_module **out);
/* Turn a spec's arguments from index `first` on into a call: each value through fn(ctx, node,
 * &value) (0, or an exit status after printing the error), positionals and keywords kept apart
 * as Python binds them. At most `cap` arguments. */
typedef int (*params_arg_fn)(void *ctx, spec_node *node, lx_value *out);
int params_call_args(spec_node *n, int first, params_arg_fn fn, void *ctx, int cap, lx_value *args,
                     lx_kwarg *kw, lx_call *out);

/* metadata_params / transform_metadata = {nn.PARTITION_NAME: 'layers'} (key nn./linen./nnx./flax.
 * ...PARTITION_NAME or the string 'partition_name') -> *pname (None: NULL). 0, or an exit status
 * after printing the error (`what` and `k` name the call and the argument). */
int params_partition_metadata(const char *what, const char *k, spec_node *v, const char **pname);

/* INITS.NAME[(numbers)] -> *it (0), or an exit status after printing the error. */
int params_initializer(spec_node *n, const char *name, lx_initializer *it);
/* An initializer argument of the Linen (nnx false) or NNX family: INITS.NAME[(numbers)], or one
 * wrapped by linen.with_partitioning / nn.with_logical_partitioning (Linen) or
 * nnx.with_partitioning (NNX), mesh given by name. 0 with *it; an exit status after printing the
 * error; -1 when `v` is not an initializer spec at all (nothing printed). */
int params_init_arg(spec_node *v, bool nnx, lx_initializer *it);

/* One `linnx params` line: `path [Type ]dtype[shape]: values[ [rng]][ [note]]` (cmd_params.c);
 * the note is a leaf's sharding names (params_sharding_note, NULL when it has none). */
void params_print_leaf(const char *path, const lx_variable *var, const lx_array *a, const char *note);
const char *params_sharding_note(const lx_value *leaf, char *buf, size_t cap);

/* Whether the model a spec of any family describes reads int32 token ids: its first layer,
 * through any nesting (linen./nnx. Sequential, linen.vmap/scan, nnx.Stack, bridge.to_linen's
 * NNX class, bridge.ToNNX's Linen module), is an Embed. Every command builds its example input
 * from this: `linnx params` zeros of --input-shape, `linnx grad`/`train` the x data. */
bool params_reads_ids(const spec_node *spec);

/* bridge.to_linen(nnx.Class, args...) as a Linen module (*out owned by the caller), also as a
 * layer of a linen. spec: linen.Sequential(linen.Dense(4), bridge.to_linen(nnx.Linear, 4, 2))
 * names it layers_1 as nn.Sequential does, its variables at params/layers_1/... 0, or an exit
 * status after printing the error. */
int params_to_linen_module(spec_node *spec, linen_module **out);
/* Whether an nnx. spec holds a bridge.ToNNX(...) layer: such a model needs lazy_init on an
 * example input before it has all its variables (bridge.lazy_init(model, x)). */
bool params_nnx_has_to_nnx(const spec_node *spec);

#endif
