/* linnx/linnx.h - everything in one include, and the rules every header follows.
 *
 * Names. One prefix per family: lx_ (core: arrays, values, trees, Variables, ops, random),
 * linen_ (Linen modules), nnx_ (NNX modules), bridge_ (the bridge). Functions are
 * <family>_<noun>_<verb> (lx_tree_release, nnx_rngs_draw); a Flax user finds a concept under its
 * Flax name (make_causal_mask -> lx_make_causal_mask, nnx.reseed -> nnx_rngs_reseed). Type
 * objects are <family>_<Flax class name>: linen_Dense, nnx_Linear, nnx_Rngs, bridge_ToLinen,
 * lx_Param. Macros are upper case (LX_ARGS, NNX_FIELDS, BRIDGE_TO_LINEN). Renamed names keep
 * their old spelling for a while through compat.h.
 *
 * Type descriptors (linen_type, nnx_type) use one vocabulary: `config` is the table of the
 * constructor's named arguments (a plain struct the layer reads as cfg->features), `methods` the
 * method table, `setup` the hook that builds children (and, in NNX, Variables) after the config
 * is bound, `config_retain` / `config_release` the hooks for references a config holds that its
 * table does not count; NNX's `fields` are the struct members the graph walks (Variables, children, lists).
 * Tables are counted by the compiler: NNX_CONFIG / NNX_FIELDS / NNX_METHODS, LINEN_CONFIG /
 * LINEN_METHODS, or .nX = LX_COUNT(TABLE).
 *
 * Argument order. The object acted on first, then what it is bound to (variables, rngs), then
 * the call, then options (NULL = Flax's defaults), then outputs last:
 *   linen_init(m, rngs, call, opts, &variables)
 *   linen_apply(m, variables, rngs, call, opts, &out, &mutated)
 *   nnx_module_new(type, call, rngs, &module);  nnx_call(module, method, call, &out)
 *
 * Results. A function that builds an object which may fail for more than lack of memory (a
 * module, a tree from a file, a graphdef) returns an lx_status and writes the object to its
 * last parameter, `out`: nothing is written to *out (beyond NULL) on failure. Functions that
 * compose inside expressions return the object itself, NULL on failure with the message in
 * lx_last_error(): ops and array constructors (lx_relu(lx_matmul(x, w))), typed layer calls
 * (linen_dense, nnx_linear_forward, nnx_call_array) and the one-line convenience constructors
 * (BRIDGE_TO_LINEN). A NULL handed to such a function fails it too, keeping the first message,
 * so a chain is checked once (status.h).
 *
 * Ownership. What a function returns through `out` or as its result is the caller's, to
 * release with the matching *_release / lx_value_free, except where a header says "borrowed"
 * (valid until the owner changes) or "pool-owned" (op results: released when the innermost
 * lx_pool closes, or at the end of the module call that made them). Inputs are borrowed; a
 * container that keeps one retains it.
 *
 * Errors. Every failure leaves a message that starts with the module path of the method that
 * was running ("ToLinen_0/l1: dot_general: ..."); see status.h. The library never aborts, exits
 * or prints to stdout. Only what these headers declare is exported from liblinnx.so.
 */
#ifndef LINNX_H
#define LINNX_H

#include "linnx/version.h"
#include "linnx/status.h"
#include "linnx/array.h"
#include "linnx/value.h"
#include "linnx/primitive.h"
#include "linnx/config.h"
#include "linnx/tree.h"
#include "linnx/variable.h"
#include "linnx/box.h"
#include "linnx/ops.h"
#include "linnx/threads.h"
#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/dropout.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/lift.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"
#include "linnx/nnx_transforms.h"
#include "linnx/bridge.h"
#include "linnx/to_nnx.h"
#include "linnx/to_linen.h"
#include "linnx/intercept.h"
#include "linnx/random.h"
#include "linnx/init.h"
#include "linnx/checkpoint.h"
#include "linnx/autodiff.h"
#include "linnx/optax.h"
#include "linnx/losses.h"
#include "linnx/metrics.h"
#include "linnx/distributed.h"
#include "linnx/train.h"
#include "linnx/cpu.h"
#include "linnx/fault.h"
#include "linnx/quant.h"
#include "linnx/sampling.h"
#include "linnx/lm_data.h"
#include "linnx/plot.h"
#include "linnx/llama.h"
#include "linnx/llama_train.h"
#include "linnx/llama_quant.h"
#include "linnx/compat.h"

#endif
