/* linnx/variable.h - NNX Variables, their types, and the type <-> collection name registry.
 *
 * Variable types (Flax's Variable subclasses) are lx_vartype: a name and a base type (single
 * inheritance). A type is identified by its address. The built-in hierarchy:
 *
 *   Variable
 *   +-- Param        +-- LoRAParam
 *   +-- BatchStat
 *   +-- Cache
 *   +-- Intermediate +-- Perturbation
 *   +-- RngState     +-- RngKey, RngCount
 *
 * User types are either static objects (`static const lx_vartype MyParam = {"MyParam",
 * &lx_Param};`) or made at run time with lx_vartype_new. Run-time types live as long as the
 * process (Variables anywhere may point at them), kept reachable in a process-wide list.
 *
 * The registry maps collection names to types exactly like flax.nnx.variablelib
 * (spec/flax-bridge.md 0.3): pre-registered params, batch_stats, cache, intermediates,
 * perturbations; lookups match types exactly (LoRAParam is not `params`); its error messages
 * use Flax's wording with the names filled in (Flax prints one of them with literal braces).
 * A type is rendered in messages as Python renders a class: <class 'Param'>.
 * The registry is process-global and not thread-safe: register names during setup.
 *
 * A Variable is a refcounted box around a value (an array, possibly abstract) and an ordered
 * metadata map. Known metadata keys:
 *   out_sharding     LX_V_STRS   sharding names per axis (None entries allowed); the aliases
 *                                `sharding` and `sharding_names` are renamed to it
 *   mesh             LX_V_STR    the mesh's name (None allowed)
 *   sharding_rules   LX_V_STRS   flattened (logical, mesh) pairs: even length
 *   linen_meta_type  LX_V_INT (an lx_box_kind) or LX_V_STR (a box kind name)
 *   tag              LX_V_STR    the stream name of RngState Variables
 * Other keys are kept as given. `value` is not a metadata key.
 * Unlike Flax, metadata holds only what was given: the always-present Flax keys hijax, ref and
 * eager_sharding are not added (there is no sharding to run eagerly).
 *
 * Ownership:
 *  - lx_variable_new* and lx_variable_copy give the caller a reference (refcount 1): give it back
 *    with lx_variable_release (value.h).
 *  - A Variable retains its value array; get_value returns it borrowed. Arrays are never copied:
 *    a copied Variable shares the array ("one store, two views").
 *  - The metadata map is owned by the Variable; lx_variable_metadata returns it borrowed and
 *    read-only (change it through meta_set / meta_del, which validate).
 *  - Types and the names the registry returns are owned by linnx. Types live forever; a name
 *    returned by lx_variable_name_from_type stays valid until lx_variable_registry_reset.
 *  - A Variable is not shared between threads (plain refcount, unlocked value and metadata; see
 *    "Threads" in array.h). lx_variable_copy shares the value array, so it does not make a
 *    Variable another thread may use: copy the array as well.
 */
#ifndef LINNX_VARIABLE_H
#define LINNX_VARIABLE_H

#include <stdbool.h>

#include "linnx/tree.h"
#include "linnx/value.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---- types ---- */
typedef struct lx_vartype {
    const char *name;
    const struct lx_vartype *base; /* NULL only for Variable itself */
} lx_vartype;

extern const lx_vartype lx_Variable, lx_Param, lx_BatchStat, lx_Cache, lx_Intermediate,
    lx_Perturbation, lx_LoRAParam, lx_RngState, lx_RngKey, lx_RngCount;

/* A new type `name` deriving from `base` (NULL = Variable). Owned by linnx, never freed. Two
 * calls with one name give two distinct types, as two Python classes of one name are. */
lx_status lx_vartype_new(const char *name, const lx_vartype *base, const lx_vartype **out);
/* isinstance: t is `base` or derives from it. */
bool lx_vartype_is(const lx_vartype *t, const lx_vartype *base);
/* "<class 'Param'>": how messages render a type. */
const char *lx_vartype_str(const lx_vartype *t, char *buf, size_t cap);

/* ---- the registry (flax.nnx.variablelib) ---- */
/* The type registered under `name`. If none: with allow_register, a new type named exactly
 * `name` deriving from `base` (NULL = Variable) is made and registered; otherwise
 * LX_ERR_NOT_FOUND "Name foo is not registered in the registry. To register a new name, use
 * register_variable_name() or set allow_register=True." A registered name ignores `base`. */
lx_status lx_variable_type_from_name(const char *name, const lx_vartype *base, bool allow_register,
                                     const lx_vartype **out);
/* The first name (in registration order) whose type is exactly `type`. If none: with
 * allow_register, `type->name` is registered for it (LX_ERR_EXISTS if that name is taken by
 * another type); otherwise LX_ERR_NOT_FOUND "Type <class 'X'> is not registered ...". */
lx_status lx_variable_name_from_type(const lx_vartype *type, bool allow_register, const char **out);
/* Map `name` to `type`. A taken name is LX_ERR_EXISTS unless `overwrite` (which keeps the name's
 * position in the registration order). */
lx_status lx_variable_register_name(const char *name, const lx_vartype *type, bool overwrite);
/* Back to the five pre-registered names (for tests). Run-time types stay alive. */
void lx_variable_registry_reset(void);

/* ---- Variables ---- */
/* A Variable of `type` holding `value` (retained), with no metadata. */
lx_status lx_variable_new(const lx_vartype *type, lx_array *value, lx_variable **out);
/* ... with metadata given as keyword arguments: Param(value, out_sharding=(...), ...). More
 * out_sharding names (or aliases) than value's rank is LX_ERR_SHAPE "Param: out_sharding ('a',
 * 'b', 'c') has 3 entries, more than the rank of a value of shape (2, 3)" (where Flax's eager
 * sharding fails; init.h's rule for partitioned initializers), *out NULL. */
lx_status lx_variable_new_kw(const lx_vartype *type, lx_array *value, int nmeta,
                             const lx_kwarg *meta, lx_variable **out);
/* ... with metadata copied from a map (NULL = none), as given: the rank rule is not applied
 * here, because transforms rebuild a Variable around a sliced value before they drop the
 * stacked axis's name (it is applied where the names come from: new_kw, meta_set, nnx_param_new). */
lx_status lx_variable_new_md(const lx_vartype *type, lx_array *value, const lx_tree *metadata,
                             lx_variable **out);

const lx_vartype *lx_variable_type(const lx_variable *v);
/* The value (borrowed). */
lx_array *lx_variable_get_value(const lx_variable *v);
/* Replace the value (retains the new one, releases the old). With check_shape, a value whose
 * shape or dtype differs from the current one is LX_ERR_SHAPE and nothing changes. */
lx_status lx_variable_set_value(lx_variable *v, lx_array *value, bool check_shape);

/* The metadata map (borrowed, read-only; never NULL for a valid Variable). */
const lx_tree *lx_variable_metadata(const lx_variable *v);
/* One metadata entry (borrowed) or NULL when absent. The aliases `sharding` and `sharding_names`
 * name the `out_sharding` entry here, in meta_set and in meta_del alike. */
const lx_value *lx_variable_meta_get(const lx_variable *v, const char *key);
/* Set one entry (validated as described above; aliases renamed). out_sharding with more names
 * than the value's rank is LX_ERR_SHAPE (as new_kw), and nothing changes. */
lx_status lx_variable_meta_set(lx_variable *v, const char *key, lx_value value);
/* Remove one entry (aliases resolved); LX_ERR_NOT_FOUND if absent. */
lx_status lx_variable_meta_del(lx_variable *v, const char *key);

/* A new Variable: same type, the same array (shared, not copied), a copy of the metadata. */
lx_status lx_variable_copy(const lx_variable *v, lx_variable **out);
/* Flax's is_vanilla_variable: every metadata key is hijax, ref or eager_sharding, or ends with
 * `_hooks` and holds an empty tuple. */
bool lx_variable_is_vanilla(const lx_variable *v);
/* Structural equality: same type, equal arrays (lx_array_equal), equal metadata. */
bool lx_variable_equal(const lx_variable *a, const lx_variable *b);
/* "Param(float32[2,3], out_sharding=('in', 'out'))". */
const char *lx_variable_str(const lx_variable *v, char *buf, size_t cap);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
