/* linnx/value.h - tagged values and call records: the one signature every module method has.
 *
 * A module method takes positional and keyword arguments of mixed kinds, like a Python call.
 * lx_value is a small tagged union; lx_call holds the positional `args` and the `kwargs`, so the
 * bridge can forward any call it does not understand.
 *
 * Ownership: a value in a call record is *borrowed* (call records usually live on the stack,
 * built with LX_ARGS / LX_KW_*). A container that keeps a value (a tree leaf, a metadata entry,
 * a kept call record) stores lx_value_dup of it and frees it with lx_value_free; a module in it
 * is retained (see lx_ptr_register).
 */
#ifndef LINNX_VALUE_H
#define LINNX_VALUE_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/array.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef struct lx_tree lx_tree;         /* tree.h */
typedef struct lx_variable lx_variable; /* variable.h */
typedef struct lx_box lx_box;           /* box.h */

typedef enum lx_kind {
    LX_V_NONE = 0, /* Python None; also "argument absent" */
    LX_V_BOOL,
    LX_V_INT,
    LX_V_FLOAT,
    LX_V_STR,      /* NUL-terminated UTF-8 */
    LX_V_INTS,     /* a tuple of ints: shapes, axes, kernel sizes */
    LX_V_STRS,     /* a tuple of optional strings (NULL entries are None): sharding names */
    LX_V_ARRAY,
    LX_V_TREE,
    LX_V_VARIABLE,
    LX_V_BOX,
    LX_V_PTR       /* an opaque pointer with a type tag: modules, initializers, user objects */
} lx_kind;

typedef struct lx_value {
    lx_kind kind;
    union {
        bool b;
        int64_t i;
        double f;
        const char *s;
        struct { int n; const int64_t *v; } ints;
        struct { int n; const char *const *v; } strs;
        lx_array *array;
        lx_tree *tree;
        lx_variable *var;
        lx_box *box;
        struct { const char *tag; void *p; } ptr;
    } u;
} lx_value;

typedef struct lx_kwarg {
    const char *name;
    lx_value value;
} lx_kwarg;

typedef struct lx_call {
    int nargs;
    const lx_value *args;
    int nkwargs;
    const lx_kwarg *kwargs;
} lx_call;

/* ---- value constructors (borrowing; nothing is copied or retained) ---- */
static inline lx_value lx_none(void) { lx_value v = {LX_V_NONE, {0}}; return v; }
static inline lx_value lx_bool_v(bool b) { lx_value v = {LX_V_BOOL, {0}}; v.u.b = b; return v; }
static inline lx_value lx_int_v(int64_t i) { lx_value v = {LX_V_INT, {0}}; v.u.i = i; return v; }
static inline lx_value lx_float_v(double f) { lx_value v = {LX_V_FLOAT, {0}}; v.u.f = f; return v; }
static inline lx_value lx_str_v(const char *s) { lx_value v = {LX_V_STR, {0}}; v.u.s = s; return v; }
static inline lx_value lx_ints_v(int n, const int64_t *p) {
    lx_value v = {LX_V_INTS, {0}}; v.u.ints.n = n; v.u.ints.v = p; return v;
}
static inline lx_value lx_strs_v(int n, const char *const *p) {
    lx_value v = {LX_V_STRS, {0}}; v.u.strs.n = n; v.u.strs.v = p; return v;
}
static inline lx_value lx_array_v(lx_array *a) { lx_value v = {LX_V_ARRAY, {0}}; v.u.array = a; return v; }
static inline lx_value lx_tree_v(lx_tree *t) { lx_value v = {LX_V_TREE, {0}}; v.u.tree = t; return v; }
static inline lx_value lx_var_v(lx_variable *x) { lx_value v = {LX_V_VARIABLE, {0}}; v.u.var = x; return v; }
static inline lx_value lx_box_v(lx_box *b) { lx_value v = {LX_V_BOX, {0}}; v.u.box = b; return v; }
static inline lx_value lx_ptr_v(const char *tag, void *p) {
    lx_value v = {LX_V_PTR, {0}}; v.u.ptr.tag = tag; v.u.ptr.p = p; return v;
}

/* ---- constant initializers (for static tables; the functions above are not constant) ---- */
#define LX_VAL_NONE {LX_V_NONE, {.i = 0}}
#define LX_VAL_BOOL(b_) {LX_V_BOOL, {.b = (b_)}}
#define LX_VAL_INT(i_) {LX_V_INT, {.i = (i_)}}
#define LX_VAL_FLOAT(f_) {LX_V_FLOAT, {.f = (f_)}}
#define LX_VAL_STR(s_) {LX_V_STR, {.s = (s_)}}
#define LX_VAL_PTR(tag_, p_) {LX_V_PTR, {.ptr = {(tag_), (void *)(p_)}}}

/* ---- call-record builders: compound literals that live in the enclosing block ----
 *   LX_ARGS(x, y)                         a call with array positionals only (the common case)
 *   LX_CALL_ARGS(lx_array_v(x), lx_int_v(3))          positionals of any kind, no kwargs
 *   LX_CALL_KWARGS(LX_KW_INT("features", 8))          kwargs only
 *   LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_INT("features", 8)))   both
 * Each list needs at least one entry (C11 has no empty array literal): a call with no
 * positionals is LX_CALL_KWARGS, with nothing at all LX_NO_CALL.
 */
#define LX_KW(name_, value_) ((lx_kwarg){(name_), (value_)})
#define LX_KW_INT(name_, i_) LX_KW(name_, lx_int_v(i_))
#define LX_KW_FLOAT(name_, f_) LX_KW(name_, lx_float_v(f_))
#define LX_KW_BOOL(name_, b_) LX_KW(name_, lx_bool_v(b_))
#define LX_KW_STR(name_, s_) LX_KW(name_, lx_str_v(s_))
#define LX_KW_ARRAY(name_, a_) LX_KW(name_, lx_array_v(a_))

#define LX_VALUES(...) ((const lx_value[]){__VA_ARGS__})
#define LX_KWARGS(...) ((const lx_kwarg[]){__VA_ARGS__})
#define LX_NARGS_(arr) ((int)(sizeof(arr) / sizeof((arr)[0])))
/* The number of entries of a static table: .nconfig = LX_COUNT(MY_CONFIG). No count in a type
 * descriptor is typed by hand. */
#define LX_COUNT(arr) LX_NARGS_(arr)
/* A call with the given lx_value positionals and no kwargs. */
#define LX_CALL_ARGS(...) \
    ((lx_call){LX_NARGS_(LX_VALUES(__VA_ARGS__)), LX_VALUES(__VA_ARGS__), 0, NULL})
/* A call with no positionals and the given kwargs. */
#define LX_CALL_KWARGS(...) \
    ((lx_call){0, NULL, LX_NARGS_(LX_KWARGS(__VA_ARGS__)), LX_KWARGS(__VA_ARGS__)})
/* A call with array positionals only: LX_ARGS(x) or LX_ARGS(x, mask). An lvalue living in the
 * enclosing block, so `&LX_ARGS(x)` can be passed where a `const lx_call *` is wanted. */
#define LX_ARRAYS_(...) ((lx_array *const[]){__VA_ARGS__})
#define LX_ARGS(...)                                                                       \
    ((lx_call){LX_NARGS_(LX_ARRAYS_(__VA_ARGS__)),                                         \
               lx_values_of_arrays(LX_NARGS_(LX_ARRAYS_(__VA_ARGS__)), LX_ARRAYS_(__VA_ARGS__), \
                                   (lx_value[LX_NARGS_(LX_ARRAYS_(__VA_ARGS__))]){{0}}),    \
               0, NULL})
#define LX_NO_CALL ((lx_call){0, NULL, 0, NULL})
/* Positionals and kwargs together (see above). */
#define LX_ARGS_LIST(...) LX_VALUES(__VA_ARGS__)
#define LX_KWARGS_LIST(...) LX_KWARGS(__VA_ARGS__)
#define LX_CALL(args_list, kwargs_list) \
    ((lx_call){LX_NARGS_(args_list), (args_list), LX_NARGS_(kwargs_list), (kwargs_list)})
/* The kwarg that ends a list built by a variadic macro that may get none (BRIDGE_TO_LINEN). */
#define LX_KW_END_ ((lx_kwarg){NULL, LX_VAL_NONE})
#define LX_FIRST_(a, ...) a
#define LX_REST_(a, ...) __VA_ARGS__

/* Fill `slots` (n values) with the arrays and return it (used by LX_ARGS). */
const lx_value *lx_values_of_arrays(int n, lx_array *const *arrays, lx_value *slots);
/* The same as a call record by value. */
lx_call lx_call_arrays(int n, lx_array *const *arrays, lx_value *slots);

/* ---- reading a call ---- */
/* The keyword argument `name`, or NULL. */
const lx_value *lx_call_kwarg(const lx_call *c, const char *name);
/* Positional i if present, else keyword `name`, else NULL (Python's binding of one parameter). */
const lx_value *lx_call_get(const lx_call *c, int i, const char *name);
/* Typed readers with a default for absent arguments; a present argument of the wrong kind is an
 * error (LX_ERR_TYPE naming the parameter). Ints convert to floats; integral floats to ints. */
lx_status lx_call_int(const lx_call *c, int i, const char *name, int64_t dflt, int64_t *out);
lx_status lx_call_float(const lx_call *c, int i, const char *name, double dflt, double *out);
lx_status lx_call_bool(const lx_call *c, int i, const char *name, bool dflt, bool *out);
lx_status lx_call_str(const lx_call *c, int i, const char *name, const char *dflt, const char **out);
/* A required array argument: absent or not an array is LX_ERR_TYPE (Python's TypeError, as for
 * the readers above); a NULL array keeps the pending failure (status.h). */
lx_status lx_call_array(const lx_call *c, int i, const char *name, lx_array **out);

/* ---- owning copies (for containers) ---- */
/* A malloc'd copy of a string (free with free()); NULL for NULL or when out of memory. */
char *lx_strdup(const char *s);
/* Deep-copy strings and tuples, retain arrays, trees, variables and boxes, retain LX_V_PTR
 * objects whose tag is registered as counted (lx_ptr_register: NNX and Linen modules), and copy
 * plain value structs carried by pointer (tag "initializer": the copy is the dup's own, freed by
 * lx_value_free); other pointers are copied as they are (borrowed). */
lx_status lx_value_dup(const lx_value *v, lx_value *out);
/* Free what lx_value_dup made (release counted pointers); leaves v as NONE. */
void lx_value_free(lx_value *v);

/* ---- counted pointers ---- */
/* Make LX_V_PTR values tagged `tag` reference-counted objects: from now on lx_value_dup calls
 * retain(p) and lx_value_free calls release(p) for them, so every container of values (call
 * copies, config VALUE fields, trees, attributes) keeps such an object alive. The component that
 * makes the objects registers its tag before the first one exists (NNX: "nnx_module" and
 * "nnx_rngs", Linen: "linen_module"). `tag` must outlive the process (a string literal); tags
 * compare by content. Registering a tag again with the same functions does nothing; with other
 * functions, or past LX_PTR_MAX_TAGS tags, it is LX_ERR_INVALID_ARGUMENT. Thread-safe. */
#define LX_PTR_MAX_TAGS 16
lx_status lx_ptr_register(const char *tag, void (*retain)(void *), void (*release)(void *));
/* Whether LX_V_PTR values with this tag are counted. */
bool lx_ptr_counted(const char *tag);
/* Structural equality: scalars by value, strings and tuples by content, arrays by bytes,
 * trees by lx_tree_equal, boxes by lx_box_equal (kind, value, names, mesh, rules, metadata: as
 * Flax's boxes compare as pytrees), variables by identity. */
bool lx_value_equal(const lx_value *a, const lx_value *b);
/* The array a tree leaf holds: the array itself, a Variable's value or a box's (Partitioned,
 * NNXMeta, ...) value; NULL for anything else or a NULL `v`. Borrowed. */
lx_array *lx_value_leaf_array(const lx_value *v);
/* Python-like rendering: None, True, 3, 0.5, 'name', (1, 2), ('data', None), float32[2,3]. */
const char *lx_value_str(const lx_value *v, char *buf, size_t cap);
const char *lx_kind_name(lx_kind kind);
/* How Python names the class of such a value, for Flax's TypeError texts: "<class 'int'>". */
const char *lx_value_pytype(const lx_value *v);

/* ---- owning copies of call records (a module that keeps its constructor's arguments) ----
 * A malformed record (a negative count, a count without its array, an unnamed keyword; for
 * with_kwargs / without the same of the extra list) is LX_ERR_INVALID_ARGUMENT "call: malformed
 * call: 0 positional (NULL), 2 keyword (NULL)", *out left empty. */
/* A deep copy: names and values duplicated (lx_value_dup: modules retained). Free with lx_call_free. */
lx_status lx_call_dup(const lx_call *c, lx_call *out);
void lx_call_free(lx_call *c);
/* A new call: `base` with `extra` kwargs added or replacing same-named ones (owned copy). */
lx_status lx_call_with_kwargs(const lx_call *base, int nextra, const lx_kwarg *extra, lx_call *out);
/* A new call: `base` without the named kwargs (owned copy). */
lx_status lx_call_without(const lx_call *base, int nnames, const char *const *names, lx_call *out);

/* Reference counting for the tree-like kinds, implemented by their components. */
lx_tree *lx_tree_retain(lx_tree *t);
void lx_tree_release(lx_tree *t);
bool lx_tree_equal(const lx_tree *a, const lx_tree *b);
lx_variable *lx_variable_retain(lx_variable *v);
void lx_variable_release(lx_variable *v);
lx_box *lx_box_retain(lx_box *b);
void lx_box_release(lx_box *b);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
