/* linnx/tree.h - trees: refcounted, ordered, nested maps with string keys.
 *
 * A tree is what Flax keeps in nested dicts: a Linen variables dict
 * ({'params': {'Dense_0': {'kernel': ...}}}), an NNX State, a Variable's metadata. Keys are
 * strings (list indices are the decimal strings "0", "1", ...); values are lx_value. A value of
 * kind LX_V_TREE is a sub-map; every other value is a *leaf* (arrays, Variables, boxes, scalars,
 * strings, tuples). Insertion order is kept and is the order of iteration, flattening and
 * printing; replacing an existing key keeps its position (like a Python dict).
 *
 * Paths name nested entries with '/': "params/Dense_0/kernel". Because '/' separates path
 * components, a key may not contain '/' and may not be empty.
 *
 * Ownership:
 *  - lx_tree_new, lx_tree_copy, and every function with a `lx_tree **out` give the caller a
 *    reference it owns: give it back with lx_tree_release (value.h).
 *  - lx_tree_set / set_path store lx_value_dup of the value: strings and tuples are copied,
 *    arrays, trees, Variables, boxes and counted pointers (modules: lx_ptr_register) are
 *    retained. The caller keeps its own reference.
 *  - lx_tree_get / get_path / find / key / at return *borrowed* pointers, valid until the entry
 *    is replaced or deleted or the tree is released.
 *  - Trees are shared by reference: a sub-map stored in two trees is one object, and mutating it
 *    through one is seen through the other (as with Python dicts). lx_tree_copy makes a new map
 *    structure when that is not wanted.
 *  - A tree may not contain itself (that would be a reference cycle): lx_tree_set refuses it.
 *  - Trees, and the arrays, Variables and boxes they hold, are not shared between threads:
 *    refcounts are plain integers (see "Threads" in array.h). lx_tree_copy gives another thread
 *    its own map structure, but its leaves are still shared objects; copy them too.
 *
 * Failing calls leave the tree as it was.
 */
#ifndef LINNX_TREE_H
#define LINNX_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "linnx/value.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---- maps ---- */
/* An empty tree (refcount 1), or NULL with a message when out of memory. */
lx_tree *lx_tree_new(void);
/* Store lx_value_dup(v) under `key`: appended if new, replaced in place if the key exists. */
lx_status lx_tree_set(lx_tree *t, const char *key, lx_value v);
/* The value under `key` (borrowed), or NULL when absent (no error is recorded). */
const lx_value *lx_tree_get(const lx_tree *t, const char *key);
size_t lx_tree_len(const lx_tree *t);
/* Entry i in insertion order (borrowed); i must be < lx_tree_len. */
const char *lx_tree_key(const lx_tree *t, size_t i);
const lx_value *lx_tree_at(const lx_tree *t, size_t i);
/* Remove `key`, keeping the order of the others; LX_ERR_NOT_FOUND if absent. */
lx_status lx_tree_delete(lx_tree *t, const char *key);

/* ---- paths ("a/b/c") ---- */
/* The value at `path` (borrowed) or LX_ERR_NOT_FOUND naming the missing key and where:
 * "tree: no key 'kernel' at params/Dense_0". */
lx_status lx_tree_get_path(const lx_tree *t, const char *path, const lx_value **out);
/* Like get_path, but NULL when absent and no message: for existence checks. Allocates nothing,
 * so NULL always means absent (never a failure). */
const lx_value *lx_tree_find(const lx_tree *t, const char *path);
/* Store at `path`, creating missing intermediate maps. An intermediate that exists and is a
 * leaf is an error (LX_ERR_TYPE); nothing is created then. */
lx_status lx_tree_set_path(lx_tree *t, const char *path, lx_value v);
/* Remove the entry at `path` (parents are kept, even when they become empty). */
lx_status lx_tree_delete_path(lx_tree *t, const char *path);

/* ---- flat views ---- */
typedef struct lx_flat_item {
    char *path;     /* "params/Dense_0/kernel", owned by the lx_flat */
    lx_value value; /* an lx_value_dup, owned by the lx_flat */
} lx_flat_item;

typedef struct lx_flat {
    size_t len, cap;
    lx_flat_item *items;
} lx_flat;

/* Every leaf with its path, depth first in insertion order. Empty sub-maps are dropped (Flax's
 * flatten_mapping). *out is overwritten; free it with lx_flat_free. */
lx_status lx_tree_flatten(const lx_tree *t, lx_flat *out);
/* Append (path, lx_value_dup(v)) to a flat list (start from `lx_flat f = {0};`). */
lx_status lx_flat_append(lx_flat *f, const char *path, lx_value v);
/* Free the paths and values; leaves f empty and reusable. */
void lx_flat_free(lx_flat *f);
/* Build a tree from (path, value) items in order. A repeated path: the later value wins, in the
 * position of the first. A path that is both a leaf and a map ("a" and "a/b") is LX_ERR_TYPE. */
lx_status lx_tree_unflatten(const lx_flat *f, lx_tree **out);

/* ---- whole-tree operations ---- */
/* Path-wise merge: every leaf of `a`, then every leaf of `b`; on a path present in both `b`
 * wins (flax _recursive_merge / nnx.merge_state). Empty sub-maps are dropped; a path that is a
 * leaf in one and a map in the other is LX_ERR_TYPE. Leaves are shared, not copied. */
lx_status lx_tree_merge(const lx_tree *a, const lx_tree *b, lx_tree **out);
/* A new map structure (all sub-maps copied) whose leaves are shared by reference
 * (lx_value_dup: arrays, Variables and boxes retained). NULL when out of memory. */
lx_tree *lx_tree_copy(const lx_tree *t);
/* lx_tree_equal (value.h): same keys with equal values (lx_value_equal), recursively. Key order
 * is ignored, like Python dict equality. Two NULL trees are equal. */

/* Map over leaves: `fn` gets each leaf's path and value (borrowed) and writes the new leaf to
 * *out, which the new tree *takes ownership of*: write lx_value_dup(leaf) to keep a leaf, or
 * lx_array_v(lx_retain(x)) for a pool-owned op result. A failing fn stops the map; whatever it
 * wrote to *out is freed. Empty sub-maps are kept (the structure is preserved). */
typedef lx_status (*lx_tree_map_fn)(const char *path, const lx_value *leaf, void *user, lx_value *out);
lx_status lx_tree_map(const lx_tree *t, lx_tree_map_fn fn, void *user, lx_tree **out);

/* Whether more than one reference holds `t` (its refcount is above 1). For a holder that wants
 * to change a map in place without anyone seeing it: with this false for the map and for every
 * map on the way to it from a root only the holder has, nobody else can reach it. */
bool lx_tree_is_shared(const lx_tree *t);

/* Number of leaves (sub-maps are not leaves). */
size_t lx_tree_count_leaves(const lx_tree *t);
/* Parameter count: the element counts of every array leaf, Variable value and box value. */
int64_t lx_tree_count_params(const lx_tree *t);

/* ---- printing (to any FILE*; the library itself never writes to stdout) ---- */
/* Nested, Python-dict-like:
 *   {
 *     'params': {
 *       'kernel': Param(float32[2,3]),
 *     },
 *   }                                                                          */
lx_status lx_tree_fprint(FILE *f, const lx_tree *t);
/* A table like Flax's tabulate, one row per leaf and a total row:
 *   path                  type   shape   dtype    params
 *   params/Dense_0/bias   Param  (3,)    float32       3
 *   Total                                              3
 * type is "Array" for a plain array, the Variable type's name, or the box kind; scalar leaves
 * show their kind and count 0 parameters. */
lx_status lx_tree_fprint_table(FILE *f, const lx_tree *t);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
