/* linnx/config.h - named config fields: a descriptor table over a plain C struct.
 *
 * A module's configuration (Linen dataclass fields, NNX constructor arguments) is a plain struct
 * that layer code reads directly (cfg->features), described by a table of fields so it can be
 * built from a call record by name and position, read back by name (attribute forwarding, the
 * bridge's `m.features`) and copied.
 *
 *   typedef struct { int64_t features; bool use_bias; lx_initializer kernel_init; } dense_config;
 *   static const lx_field DENSE_FIELDS[] = {
 *       LX_FIELD_REQUIRED_INT(dense_config, features),
 *       LX_FIELD_BOOL(dense_config, use_bias, true),
 *       LX_FIELD_OBJ(dense_config, kernel_init, "initializer", &LX_DEFAULT_KERNEL_INIT),
 *   };
 *
 * Storage by kind: INT int64_t, FLOAT double, BOOL bool, STR char* (owned copy, may be NULL),
 * INTS lx_ints (inline), STRS lx_strs (owned strings), DTYPE lx_dtype, OBJ a struct copied by
 * value from an LX_V_PTR with the matching tag, VALUE an lx_value (owned, lx_value_dup).
 *
 * Ownership: lx_config_free releases what binding copied (strings, values); the struct itself
 * belongs to the caller.
 */
#ifndef LINNX_CONFIG_H
#define LINNX_CONFIG_H

#include <stddef.h>

#include "linnx/value.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef struct lx_ints {
    int n;
    int64_t v[LX_MAX_DIMS];
} lx_ints;

#define LX_MAX_STRS 8
typedef struct lx_strs {
    int n;
    char *v[LX_MAX_STRS]; /* NULL entries are None */
} lx_strs;

typedef enum lx_field_kind {
    LX_FIELD_INT,
    LX_FIELD_FLOAT,
    LX_FIELD_BOOL,
    LX_FIELD_STR,
    LX_FIELD_INTS,  /* accepts a tuple of ints, or one int (becomes a 1-tuple) */
    LX_FIELD_STRS,
    LX_FIELD_DTYPE, /* accepts 'float32' / 'int32' / ... */
    LX_FIELD_OBJ,
    LX_FIELD_VALUE
} lx_field_kind;

typedef struct lx_field {
    const char *name;
    lx_field_kind kind;
    size_t offset;
    size_t size;      /* LX_FIELD_OBJ: bytes to copy */
    const char *tag;  /* LX_FIELD_OBJ: the LX_V_PTR tag accepted */
    bool required;    /* no default: binding fails when absent */
    lx_value dflt;    /* the default (borrowed; OBJ: LX_V_PTR to a default struct or NONE = zeros) */
} lx_field;

#define LX_FIELD_(type, member, kind_, req, dflt_) \
    {#member, kind_, offsetof(type, member), sizeof(((type *)0)->member), NULL, req, dflt_}
#define LX_FIELD_INT(type, member, d) LX_FIELD_(type, member, LX_FIELD_INT, false, LX_VAL_INT(d))
#define LX_FIELD_REQUIRED_INT(type, member) LX_FIELD_(type, member, LX_FIELD_INT, true, LX_VAL_NONE)
#define LX_FIELD_FLOAT(type, member, d) LX_FIELD_(type, member, LX_FIELD_FLOAT, false, LX_VAL_FLOAT(d))
#define LX_FIELD_REQUIRED_FLOAT(type, member) LX_FIELD_(type, member, LX_FIELD_FLOAT, true, LX_VAL_NONE)
#define LX_FIELD_BOOL(type, member, d) LX_FIELD_(type, member, LX_FIELD_BOOL, false, LX_VAL_BOOL(d))
#define LX_FIELD_STR(type, member, d) LX_FIELD_(type, member, LX_FIELD_STR, false, LX_VAL_STR(d))
#define LX_FIELD_INTS(type, member) LX_FIELD_(type, member, LX_FIELD_INTS, false, LX_VAL_NONE)
#define LX_FIELD_REQUIRED_INTS(type, member) LX_FIELD_(type, member, LX_FIELD_INTS, true, LX_VAL_NONE)
#define LX_FIELD_STRS(type, member) LX_FIELD_(type, member, LX_FIELD_STRS, false, LX_VAL_NONE)
#define LX_FIELD_DTYPE(type, member, d) LX_FIELD_(type, member, LX_FIELD_DTYPE, false, LX_VAL_STR(d))
#define LX_FIELD_VALUE(type, member) LX_FIELD_(type, member, LX_FIELD_VALUE, false, LX_VAL_NONE)
#define LX_FIELD_OBJ(type, member, tag_, dflt_ptr) \
    {#member, LX_FIELD_OBJ, offsetof(type, member), sizeof(((type *)0)->member), tag_, false, \
     LX_VAL_PTR(tag_, dflt_ptr)}

/* The most fields one config table may have (bind and override refuse more, before touching
 * the struct). */
#define LX_CONFIG_MAX_FIELDS 64

/* Set every field to its default (required fields to zero). */
lx_status lx_config_defaults(const lx_field *fields, int nfields, void *cfg);
/* Bind a call: positionals in field order, then keywords by name; defaults for the rest.
 * `owner` names the callee in errors, Python-style:
 *   "Dense.__init__() missing 1 required positional argument: 'features'"
 *   "Dense.__init__() got an unexpected keyword argument 'feature'"
 *   "Dense.__init__() got multiple values for argument 'features'"
 *   "Dense.__init__() takes 3 positional arguments but 4 were given"
 * These, and a value of the wrong kind for a field, are LX_ERR_TYPE (Python's TypeError); a dtype
 * name linnx does not know is LX_ERR_DTYPE; more than LX_CONFIG_MAX_FIELDS fields, or a tuple
 * longer than its field holds, LX_ERR_INVALID_ARGUMENT.
 * On failure the struct holds nothing that needs freeing. */
lx_status lx_config_bind(const lx_field *fields, int nfields, const lx_call *call, void *cfg,
                         const char *owner);
/* Apply keyword overrides on top of an already-bound config (unknown names are errors). */
lx_status lx_config_override(const lx_field *fields, int nfields, const lx_call *call, void *cfg,
                             const char *owner);
/* Read a field by name as a value that borrows from the struct; LX_ERR_NOT_FOUND for a name the
 * table does not have. */
lx_status lx_config_get(const lx_field *fields, int nfields, const void *cfg, const char *name,
                        lx_value *out);
const lx_field *lx_config_find(const lx_field *fields, int nfields, const char *name);
/* Deep copy (strings and values duplicated). */
lx_status lx_config_copy(const lx_field *fields, int nfields, void *dst, const void *src);
void lx_config_free(const lx_field *fields, int nfields, void *cfg);

/* Helpers for reading tuples. */
static inline lx_ints lx_ints_of(int n, const int64_t *v) {
    lx_ints t = {0, {0}};
    t.n = n > LX_MAX_DIMS ? LX_MAX_DIMS : n;
    for (int i = 0; i < t.n; i++) t.v[i] = v[i];
    return t;
}
static inline lx_value lx_ints_value(const lx_ints *t) { return lx_ints_v(t->n, t->v); }

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
