/* linnx/bridge.h - the bridge between Linen and NNX (flax.nnx.bridge, MaxText's nnx_wrappers).
 *
 * This header holds the Variable and metadata conversions (Flax's bridge/variables.py). Linen
 * keeps variables as {collection: {path: leaf}} where a leaf is an array or an axis-metadata box;
 * NNX keeps Variables (type + value + metadata) under attribute paths, with no collection level.
 * The collection of a Variable is its type's registered name (variable.h's registry).
 *
 * Arrays are never copied by a conversion: the Linen leaf and the NNX Variable hold the same
 * array ("one store, two views").
 *
 * Deliberate differences from Flax 0.12.8 (DESIGN.md):
 *  - a path present in two collections is an error in both directions (Flax lets the later
 *    collection win silently in some paths);
 *  - a value that is not a Variable in nnx_attrs_to_linen_vars is an error naming it (Flax's
 *    rule; MaxText now skips such values).
 *
 * Ownership: every *out value, Variable or tree is owned by the caller (lx_value_free,
 * lx_variable_release, lx_tree_release).
 */
#ifndef LINNX_BRIDGE_H
#define LINNX_BRIDGE_H

#include "linnx/box.h"
#include "linnx/nnx.h"
#include "linnx/tree.h"
#include "linnx/value.h"
#include "linnx/variable.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* Flax's is_vanilla_variable: no metadata beyond hijax/ref/eager_sharding and empty *_hooks. */
bool bridge_is_vanilla_variable(const lx_variable *v);

/* to_linen_var: NNX Variable -> Linen leaf, in Flax's priority order:
 *  1. metadata has linen_meta_type: rebuild that box (Partitioned / LogicallyPartitioned via
 *     from_nnx_metadata; NNXMeta with the Variable's type and metadata);
 *  2. a vanilla Variable: its raw array;
 *  3. otherwise NNXMeta(type, value, metadata). */
lx_status bridge_to_linen_var(const lx_variable *v, lx_value *out);

/* to_nnx_var: a Linen leaf of collection `collection` -> NNX Variable of the type registered for
 * the collection (an unknown collection registers a new type named after it):
 *  - NNXMeta: its stored type must equal the collection's type (else LX_ERR_TYPE with Flax's
 *    text "Type stored in NNXMeta <class 'A'> != type inferred from collection name <class 'B'>");
 *  - Partitioned / LogicallyPartitioned: the box's NNX metadata plus linen_meta_type = the box
 *    kind, so the reverse trip restores the same box;
 *  - an array: a plain Variable. */
lx_status bridge_to_nnx_var(const char *collection, const lx_value *leaf, lx_variable **out);

/* get_col_name: the first component of a path ("params/Dense_0/kernel" -> "params"). */
lx_status bridge_get_col_name(const char *path, char *buf, size_t cap);

/* linen_vars_to_nnx_attrs: {collection: tree} -> one tree of Variables with the collection level
 * dropped. A path present in two collections is LX_ERR_EXISTS:
 * "Found duplicate variable path ('w',) with variables <A> and <B>. This is not allowed in NNX." */
lx_status bridge_linen_vars_to_nnx_attrs(const lx_tree *variables, lx_tree **attrs);

/* nnx_attrs_to_linen_vars: a tree of Variables -> {collection: tree of Linen leaves}, the
 * collection from the registry (no auto-registration: an unregistered type is LX_ERR_NOT_FOUND,
 * variable.h's text). A leaf that is not a Variable is LX_ERR_TYPE "Cannot infer collection name
 * from value: <v>". */
lx_status bridge_nnx_attrs_to_linen_vars(const lx_tree *attrs, lx_tree **variables);

/* bridge.with_partitioning(init, names, mesh): the metadata an NNX parameter takes (pass it as a
 * layer's kernel_metadata / bias_metadata, lx_tree_v(tree)) so that its Variable carries
 * out_sharding = names, mesh, and linen_meta_type = Partitioned; leaving NNX through ToLinen it
 * becomes a real nn.Partitioned box (spec/flax-bridge.md §4.4 (b)) instead of an NNXMeta. `mesh`
 * NULL is None. The caller owns *out (lx_tree_release). */
lx_status bridge_with_partitioning(int nnames, const char *const *names, const char *mesh, lx_tree **out);

/* A metadata_fn turns an NNX Variable into the Linen leaf ToLinen stores (default:
 * bridge_to_linen_var). `user` is the pointer given with it. */
typedef lx_status (*bridge_metadata_fn)(const lx_variable *v, void *user, lx_value *out);
/* The default metadata_fn (to_linen_var). */
lx_status bridge_metadata_to_linen_var(const lx_variable *v, void *user, lx_value *out);
/* MaxText's variable_to_logically_partitioned: a Variable with out_sharding becomes
 * LogicallyPartitioned(value, out_sharding, mesh, sharding_rules); others stay raw arrays. */
lx_status bridge_metadata_to_logically_partitioned(const lx_variable *v, void *user, lx_value *out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
