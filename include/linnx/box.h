/* linnx/box.h - Linen axis-metadata boxes (flax.core.meta): Partitioned, LogicallyPartitioned,
 * and the bridge's NNXMeta.
 *
 * A box wraps a leaf value (an array, possibly abstract) with static metadata that says how its
 * axes are sharded:
 *   Partitioned(value, names, mesh)                 names: a tuple of optional strings
 *   LogicallyPartitioned(value, names, mesh, rules) rules: flattened (logical, mesh) pairs or None
 *   NNXMeta(var_type, value, metadata)              an NNX Variable's type and metadata, carried
 *                                                   through Linen (its sharding names are
 *                                                   metadata['out_sharding'])
 * Boxes are immutable values: every operation that "changes" one returns a new box.
 *
 * Differences from Flax, on purpose:
 *  - add_axis / remove_axis update the names of all three kinds; Flax's NNXMeta returns itself
 *    unchanged (issue #5589).
 *  - to_nnx_metadata returns a new map and leaves the box alone (Flax's LogicallyPartitioned
 *    renames its own fields in place). The map holds no `value` entry: the value is unbox().
 *  - There are no meshes to constrain to: `mesh` is a name, and unbox() never reshards.
 *
 * Ownership: constructors, replace_boxed, add_axis, remove_axis and from_nnx_metadata give the
 * caller a box it owns (lx_box_release, value.h); a box retains its value and copies names,
 * mesh, rules and metadata. to_nnx_metadata and lx_tree_unbox give a tree the caller owns.
 * Accessors return borrowed pointers valid while the box lives. Boxes are immutable, but their
 * refcount is a plain integer and the value they hold is a shared array: a box is not shared
 * between threads ("Threads" in array.h).
 */
#ifndef LINNX_BOX_H
#define LINNX_BOX_H

#include <stdbool.h>

#include "linnx/init.h"
#include "linnx/tree.h"
#include "linnx/value.h"
#include "linnx/variable.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef enum lx_box_kind {
    LX_BOX_PARTITIONED = 1,
    LX_BOX_LOGICALLY_PARTITIONED = 2,
    LX_BOX_NNX_META = 3
} lx_box_kind;

/* "Partitioned", "LogicallyPartitioned", "NNXMeta" (the Flax class names). */
const char *lx_box_kind_name(lx_box_kind kind);
/* The kind named by a linen_meta_type metadata value (LX_V_INT kind or LX_V_STR class name). */
lx_status lx_box_kind_from_value(const lx_value *v, lx_box_kind *out);

/* ---- construction ----
 * Every constructor that puts names next to a value refuses more names than the value's rank
 * (init.h's rule for partitioned initializers; Flax's boxes fail once a mesh applies them):
 * LX_ERR_SHAPE "Partitioned: names ('a', 'b', 'c') have 3 entries, more than the rank of a value
 * of shape (2, 3)" (NNXMeta: "out_sharding ... has"), *out NULL. Fewer are fine. add_axis /
 * remove_axis edit the names only (a lifted transform names the stacked axis apart from the
 * value). */
/* `mesh` may be NULL (None). */
lx_status lx_box_partitioned(lx_array *value, int nnames, const char *const *names,
                             const char *mesh, lx_box **out);
/* `rules` (nrules strings, an even number: logical0, mesh0, logical1, mesh1, ...; a NULL mesh
 * entry is None) may be NULL for rules=None. */
lx_status lx_box_logically_partitioned(lx_array *value, int nnames, const char *const *names,
                                       const char *mesh, int nrules, const char *const *rules,
                                       lx_box **out);
/* The box a partitioned initializer (init.h: lx_init_with_partitioning, _logical_) puts around
 * `value`, as Flax's wrapper does around the initializer's output: Partitioned(value, names,
 * mesh) or LogicallyPartitioned(value, names, mesh, rules). A plain initializer is
 * LX_ERR_INVALID_ARGUMENT. */
lx_status lx_box_from_initializer(const lx_initializer *init, lx_array *value, lx_box **out);
/* `metadata` is copied (NULL = empty). */
lx_status lx_box_nnx_meta(const lx_vartype *var_type, lx_array *value, const lx_tree *metadata,
                          lx_box **out);

/* ---- reading ---- */
lx_box_kind lx_box_get_kind(const lx_box *b);
/* unbox(): the value (borrowed). */
lx_array *lx_box_unbox(const lx_box *b);
/* The sharding names as an LX_V_STRS value (borrowed): a Partitioned box's names, an NNXMeta's
 * metadata['out_sharding']; NULL for an NNXMeta without out_sharding. */
const lx_value *lx_box_names(const lx_box *b);
/* The mesh name or NULL (None). NNXMeta: metadata['mesh'] when it is a string. */
const char *lx_box_mesh(const lx_box *b);
/* LogicallyPartitioned: the rules (LX_V_STRS or LX_V_NONE); other kinds: NULL. */
const lx_value *lx_box_rules(const lx_box *b);
/* NNXMeta: the Variable type and the metadata map; other kinds: NULL. */
const lx_vartype *lx_box_var_type(const lx_box *b);
const lx_tree *lx_box_metadata(const lx_box *b);

/* ---- operations (each returns a new box) ---- */
/* replace_boxed(value): the same metadata around a new value. */
lx_status lx_box_replace_boxed(const lx_box *b, lx_array *value, lx_box **out);
/* Insert `partition_name` into the names at `index` (Python list.insert: negative counts from
 * the end; past the end pads with None). A NULL partition_name is Flax's
 * PartitioningUnspecifiedError. An NNXMeta without out_sharding has no names to update and is
 * returned as an equal new box. The result may have at most LX_MAX_DIMS names (arrays have no
 * more axes): an index >= LX_MAX_DIMS, or names already that long, is LX_ERR_INVALID_ARGUMENT
 * (Flax would pad a list to any length). */
lx_status lx_box_add_axis(const lx_box *b, int index, const char *partition_name, lx_box **out);
/* Remove the name at `index` (negative counts from the end), which must equal partition_name
 * (Flax asserts it); NULL partition_name is PartitioningUnspecifiedError. */
lx_status lx_box_remove_axis(const lx_box *b, int index, const char *partition_name, lx_box **out);

/* ---- NNX metadata conversions ---- */
/* The metadata an NNX Variable gets from this box: Partitioned -> {out_sharding, mesh};
 * LogicallyPartitioned -> {out_sharding, mesh, sharding_rules}; NNXMeta -> a copy of its
 * metadata. A new map; the box is not changed. */
lx_status lx_box_to_nnx_metadata(const lx_box *b, lx_tree **out);
/* The inverse for Partitioned / LogicallyPartitioned: out_sharding -> names, mesh -> mesh,
 * sharding_rules -> rules; other keys are ignored. A missing out_sharding (or, for
 * LogicallyPartitioned, sharding_rules) is LX_ERR_NOT_FOUND. NNXMeta is built with
 * lx_box_nnx_meta instead (it needs a type): LX_ERR_INVALID_ARGUMENT. */
lx_status lx_box_from_nnx_metadata(lx_box_kind kind, lx_array *value, const lx_tree *metadata,
                                   lx_box **out);

/* Structural equality: same kind, equal values (lx_array_equal), names, mesh, rules, type and
 * metadata. */
bool lx_box_equal(const lx_box *a, const lx_box *b);
/* "Partitioned(value=float32[2,3], names=('in', 'out'), mesh=None)". */
const char *lx_box_str(const lx_box *b, char *buf, size_t cap);

/* meta.unbox(tree): a new tree (same structure, empty sub-maps kept) with every box replaced by
 * its value. Other leaves are shared. */
lx_status lx_tree_unbox(const lx_tree *t, lx_tree **out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
