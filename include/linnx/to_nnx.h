/* linnx/to_nnx.h - a Linen module inside NNX: ToNNX, lazy_init, current_linen_module and
 * MaxText's get_layers (flax.nnx.bridge.wrappers, MaxText's nnx_wrappers).
 *
 *   linen_module *dense;                       // nn.Dense(features=64)
 *   nnx_rngs *rngs;                            // nnx.Rngs(0)
 *   nnx_module *model;                         // bridge.ToNNX(dense, rngs=rngs)
 *   bridge_to_nnx_new(dense, rngs, NULL, &model);
 *   lx_call c = LX_ARGS(x);
 *   bridge_lazy_init(model, NULL, &c);          // .lazy_init(x): like Linen init
 *   nnx_call(model, NULL, &c, &y);              // model(x): like Linen apply
 *   nnx_getattr(model, "kernel", &k);           // model.kernel: a Param Variable
 *
 * A ToNNX is an NNX module of type bridge_ToNNX ("ToNNX"). It holds:
 *  - `to_nnx__module`: the Linen module (static config, retained; graphdefs share it);
 *  - `to_nnx__rngs`: its own Rngs (a field; None when built without rngs);
 *  - the Linen variables as dynamic attributes after lazy_init, with the collection level
 *    dropped: params/Dense_0/kernel -> attribute `Dense_0` = tree {kernel: Param};
 *    params/kernel -> attribute `kernel` = Param; batch_stats/mean -> `mean` (BatchStat).
 *    Variables of a collection with no registered type get a new type named after the
 *    collection (`counter`). A path present in two collections is an error.
 *
 * Calls (nnx_call): `__call__` and every method of the Linen module's type by name
 * (nnx_call(m, "encode", ...); Flax issue 4758) run the same algorithm:
 *  1. rngs: the call's `rngs` keyword (an Rngs module value, or a raw uint32[2] key, which
 *     becomes {params: key}) else `to_nnx__rngs`; one key is drawn from every stream of an
 *     Rngs (each stream's count advances by one); `default` is renamed to `params` when there
 *     is no `params` stream. Keywords `rngs`, `mutable` and `method` (a Linen method's name or
 *     None: model(x, method="encode") runs encode, in place of nnx_call's method argument) are
 *     not forwarded to Linen.
 *  2. while initializing (under lazy_init): Linen init_with_output with Linen's default
 *     mutability; every collection it returns is written back.
 *  3. otherwise: the attributes (except names starting with `to_nnx__`) become Linen variables
 *     (bridge_nnx_attrs_to_linen_vars: a value that is not a Variable is Flax's error
 *     "Cannot infer collection name from value: ..."); `mutable` is the call's `mutable`
 *     keyword (True / False / a collection name / a tuple of names) if given, else the
 *     mutability of the enclosing Linen scope (bridge_current_linen_module) if the call runs
 *     inside a Linen method, else immutable; then Linen apply, and the mutated collections are
 *     written back.
 *  4. write-back: a Variable that exists at the path takes the new value in place (the same
 *     lx_variable object, so references held elsewhere see the update; Flax builds new
 *     Variable objects here); a new path becomes a new attribute or a new entry of an
 *     attribute tree (Flax issue 4484). Nothing is written when the Linen call fails.
 *  5. the output is the method's output only (never the updates).
 * A method never initialised fails with Linen's error (LX_ERR_NOT_FOUND):
 *   Could not find parameter named "b" in scope "/".
 * Bad input (unknown method, a `mutable` or `rngs` of the wrong kind) fails before any stream
 * is drawn, so it changes nothing.
 *
 * Layer stacking works: a ToNNX built and lazily initialised under nnx.split_rngs + nnx.vmap
 * (nnx_vmap_create_fn: Flax's W6) and nnx_scan_call over that stack (Dense layers, and
 * BatchNorm layers updating their own batch_stats with mutable) are tested in
 * tests/test_lift_bridge.c (test_w6, test_scan_over_to_nnx).
 *
 * Not ported: Flax's deprecated `.rngs` / `.module` properties (read `to_nnx__rngs` /
 * `to_nnx__module` with nnx_getattr); the bridge `Module` context as a source of `mutable`
 * (there is no bridge Module in linnx yet).
 *
 * Ownership: *out modules are owned by the caller (nnx_module_release); the Linen module and
 * a key-built Rngs are retained by the ToNNX; a given Rngs is forked (the caller keeps its own).
 * Method outputs are owned by the caller (lx_value_free). get_layers' list is owned by the
 * caller (lx_flat_free); its values share the module's trees.
 */
#ifndef LINNX_TO_NNX_H
#define LINNX_TO_NNX_H

#include "linnx/linen.h"
#include "linnx/nnx.h"
#include "linnx/tree.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* nnx.bridge.lazy_init(fn, *args, **kwargs): set `initializing` on every module of m's graph,
 * run `method` (NULL = "__call__") with `call`, discard the output, and clear the flag on the
 * whole graph again, also when the method failed. A NULL module or a method m does not have is
 * LX_ERR_INVALID_ARGUMENT with Flax's wording, the function rendered as <Type.method>:
 *   fn = None needs to be a method of an NNX Module.
 *   fn = <ToNNX.encode> needs to be a method of an NNX Module. */
lx_status bridge_lazy_init(nnx_module *m, const char *method, const lx_call *call);

/* bridge.ToNNX(linen_module, rngs): at most one of `rngs` (forked: Rngs.fork(), one draw from
 * each of its streams) and `key` (Rngs(params=key)); neither: no Rngs. */
lx_status bridge_to_nnx_new(const linen_module *linen, nnx_rngs *rngs, const lx_key *key, nnx_module **out);
/* The same built the NNX way: nnx_module_new(&bridge_ToNNX, call, rngs, &m) with the
 * Linen module as keyword `to_nnx__module` (linen_module_v(lm)); `rngs` is forked. */
extern const nnx_type bridge_ToNNX;
bool bridge_is_to_nnx(const nnx_module *m);
/* `to_nnx__module` and `to_nnx__rngs` (borrowed; NULL when m is not a ToNNX / has no Rngs). */
const linen_module *bridge_to_nnx_linen_module(const nnx_module *m);
nnx_rngs *bridge_to_nnx_rngs(const nnx_module *m);

/* current_linen_module(): the innermost bound Linen module on this thread, or NULL. */
linen_scope *bridge_current_linen_module(void);

/* MaxText's ToNNX.get_layers(): the decoder-layer attributes of a ToNNX-wrapped decoder in
 * execution order, each once (by identity): dense_layers, dense_layers_0.., moe_layers,
 * moe_layers_0.., moe_layers_outside_pipeline[_i], pipeline_module/layers, scanned_blocks,
 * layers, layers_0.., layers_remainder (skipped unless it holds a non-zero `num_of_layers`:
 * an attribute tree of Variables has none, so as in MaxText a wrapped Linen remainder block is
 * skipped), layers_outside_pipeline[_i]; `_i` runs from 0 while the attribute exists. If none
 * is found: every attribute whose name starts with dense_layers, moe_layers, layers or
 * scanned_blocks, in attribute order. *out gets (name, value) pairs; values are the attribute
 * values (trees of Variables for a ToNNX). m must be a ToNNX (else LX_ERR_TYPE). */
lx_status bridge_to_nnx_get_layers(nnx_module *m, lx_flat *out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
