/* linnx/linen.h - Linen-style modules: pure descriptions with init/apply over variable collections.
 *
 * A Linen module is a description: a type (name, config fields, methods, optional setup) plus a
 * bound config. Nothing is stored in it. `linen_init` runs a method with the module bound to a
 * fresh scope and returns the variables it created; `linen_apply` runs a method over given
 * variables. Inside a method the scope gives what Flax's `self` gives: param, variable,
 * make_rng, sow, child modules named `<Type>_<i>` (compact) or by attribute name (setup).
 *
 * Variables tree layout (lx_tree): {collection: {module path...: leaf}}, e.g.
 *   params/Dense_0/kernel -> float32[4,8] array (or a metadata box, box.h: with_partitioning)
 *
 * Ownership:
 *  - linen_module_new returns a module the caller owns (linen_module_release); modules are
 *    refcounted and immutable once built, so sharing one between parents is fine.
 *  - init/apply outputs: *out is a value the caller owns (lx_value_free); *variables and
 *    *mutated are trees the caller owns (lx_tree_release). The variables given to apply are
 *    never modified: mutations go to a copy returned in *mutated. Only the collections the
 *    mutability allows are copied (map structure, leaves shared); the others, and the whole
 *    tree when nothing is mutable, are read in place, so an immutable apply copies nothing.
 *  - Inside a method: arrays returned by linen_param / linen_get_variable are borrowed from the
 *    scope (valid until the method's top-level init/apply returns); op results are pool-owned.
 *
 * Writing a layer (one screen of math):
 *   static lx_status dense_call(linen_scope *s, const lx_call *c, lx_value *out) {
 *       const linen_dense_config *cfg = linen_config(s);
 *       lx_array *x, *kernel;
 *       LX_TRY(lx_call_array(c, 0, "inputs", &x));
 *       int64_t kshape[] = {x->shape[x->ndim - 1], cfg->features};
 *       LX_TRY(linen_param(s, "kernel", &cfg->kernel_init, cfg->param_dtype, 2, kshape, &kernel));
 *       ...
 *   }
 */
#ifndef LINNX_LINEN_H
#define LINNX_LINEN_H

#include "linnx/config.h"
#include "linnx/init.h"
#include "linnx/random.h"
#include "linnx/value.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef struct linen_scope linen_scope;
typedef struct linen_module linen_module;

/* A method: reads its arguments from `call`, writes its result to *out (an owned value the
 * framework frees; arrays in it are retained). */
typedef lx_status (*linen_method_fn)(linen_scope *self, const lx_call *call, lx_value *out);

/* A method over one array (the DESIGN sketch's typed form): the framework reads positional 0
 * (or keyword "inputs" / "x") as an array and returns the result. NULL means failure (the op or
 * call that failed left the message). The result may be pool-owned. */
typedef lx_array *(*linen_array_method_fn)(linen_scope *self, lx_array *x);

typedef struct linen_method {
    const char *name; /* "__call__", "attend", "encode", ... */
    linen_method_fn fn;
    linen_array_method_fn array_fn; /* used when fn is NULL */
} linen_method;
#define LINEN_METHOD(name_, fn_) {(name_), (fn_), NULL}
#define LINEN_ARRAY_METHOD(name_, fn_) {(name_), NULL, (fn_)}

/* linen_type.flags */
enum {
    /* A plain function (nn.relu in a Sequential): called with no scope of its own, takes no
     * auto-name and may not create variables. */
    LINEN_TYPE_FUNCTION = 1
};

typedef struct linen_type {
    const char *name;        /* the class name: auto-names are "<name>_<i>" */
    size_t config_size;      /* sizeof the config struct */
    /* The config table: the constructor's arguments (dataclass fields), in declaration order,
     * as nnx_type.config is for NNX. `fields` / `nfields` are the deprecated spellings. */
    union { const lx_field *config; const lx_field *fields; };
    union { int nconfig; int nfields; };
    const linen_method *methods;
    int nmethods;
    /* Optional, parallel to `methods`: each method's Python signature without self ("inputs",
     * "x, use_running_average=None, *, mask=None"; NULL array or entry: unchecked). A call Python
     * would refuse fails with Python's TypeError text before the method runs. Each string is parsed
     * once per thread and remembered by its address: it must live as long as the program (a
     * string literal). */
    const char *const *method_sigs;
    /* Optional: setup-style children and variables, run lazily before the first method. */
    lx_status (*setup)(linen_scope *self);
    /* Optional config hooks, the same pair as nnx_type's, for config members the field table
     * does not own. config_retain runs on a config the framework has just filled: after the
     * table bound it (not after a custom `bind`, which takes its own references) and after a
     * copy (clone: the table's fields are already the copy's own, the other bytes are the
     * source's); it takes its own references to them. On failure it drops what it took, zeroes
     * those members and returns the status. config_release runs before a config is freed and
     * must accept a zeroed config. */
    lx_status (*config_retain)(void *cfg);
    void (*config_release)(void *cfg);
    /* Deprecated spellings of the same idea (used only when config_retain/_release are unset):
     * config_free(cfg) = config_release; config_copy(dst, src) deep-copies the members. */
    void (*config_free)(void *cfg);
    lx_status (*config_copy)(void *dst, const void *src);
    /* Optional: methods not in the table (the bridge's ToLinen forwards them to NNX methods).
     * Return LX_ERR_NOT_FOUND without recording a message (no lx_fail) for names it does not
     * know either; a NOT_FOUND with a message is a failure of a method that exists. */
    lx_status (*dispatch)(linen_scope *self, const char *method, const lx_call *call, lx_value *out);
    /* Optional: attributes beyond the config fields (ToLinen forwards its NNX kwargs). */
    lx_status (*getattr)(const linen_module *m, const char *name, lx_value *out);
    /* Optional: bind constructor arguments instead of lx_config_bind (varargs constructors
     * like Sequential(*layers)). The config is zeroed first; on failure it must hold nothing
     * that config_free would release twice. `type` is the type being built, so one bind can
     * serve types made at run time that carry their own defaults (to_linen_class). */
    lx_status (*bind)(const struct linen_type *type, void *cfg, const lx_call *kwargs);
    unsigned flags; /* LINEN_TYPE_* */
} linen_type;

/* Table macros for a type descriptor, so no count is typed by hand (the same scheme as NNX's):
 *   static const linen_type MLP = {
 *       .name = "MLP", LINEN_CONFIG(mlp_config, LX_FIELD_REQUIRED_INT(mlp_config, features)),
 *       LINEN_METHODS(LINEN_ARRAY_METHOD("__call__", mlp_call)),
 *   };
 * (Tables kept in named arrays use .nconfig = LX_COUNT(MY_CONFIG) and so on.) */
#define LINEN_CONFIG(T, ...)                                                              \
    .config_size = sizeof(T), .config = (const lx_field[]){__VA_ARGS__},                   \
    .nconfig = LX_COUNT(((const lx_field[]){__VA_ARGS__}))
#define LINEN_METHODS(...) \
    .methods = (const linen_method[]){__VA_ARGS__}, .nmethods = LX_COUNT(((const linen_method[]){__VA_ARGS__}))

/* ---- modules (descriptions) ---- */
lx_status linen_module_new(const linen_type *type, const lx_call *kwargs, linen_module **out);
/* The same with an explicit name (Flax's name=...). */
lx_status linen_module_new_named(const linen_type *type, const lx_call *kwargs, const char *name,
                                 linen_module **out);
linen_module *linen_module_retain(linen_module *m);
void linen_module_release(linen_module *m);
const linen_type *linen_module_type(const linen_module *m);
const void *linen_module_config(const linen_module *m);
const char *linen_module_name(const linen_module *m); /* NULL when unnamed */
/* A config field by name (m.features); LX_ERR_NOT_FOUND with Flax's AttributeError wording.
 * *out is borrowed from the module (valid while it lives; lx_value_dup it to keep it longer). */
lx_status linen_module_attr(const linen_module *m, const char *name, lx_value *out);
/* Flax's module.clone(**overrides): a new module with the same type, name and config, the
 * keyword overrides applied on top (an unknown name is LX_ERR_TYPE, Python's TypeError text;
 * nothing is created then). */
lx_status linen_module_clone(const linen_module *m, const lx_call *overrides, linen_module **out);
/* Carry a module in a call record / config value. */
static inline lx_value linen_module_v(linen_module *m) { return lx_ptr_v("linen_module", m); }

/* ---- rng streams and mutability given to init/apply ---- */
typedef struct linen_rng {
    const char *name;
    lx_key key;
} linen_rng;
typedef struct linen_rngs {
    int n;
    const linen_rng *v;
} linen_rngs;
/* LINEN_RNGS({"params", k1}, {"dropout", k2});  LINEN_KEY(k) = {"params", k}. */
#define LINEN_RNGS(...) \
    ((linen_rngs){(int)(sizeof((linen_rng[]){__VA_ARGS__}) / sizeof(linen_rng)), (linen_rng[]){__VA_ARGS__}})
#define LINEN_KEY(k) LINEN_RNGS({"params", (k)})
#define LINEN_NO_RNGS ((linen_rngs){0, NULL})

typedef enum linen_mutable_kind {
    LINEN_MUTABLE_NONE = 0, /* mutable=False */
    LINEN_MUTABLE_ALL,      /* mutable=True */
    LINEN_MUTABLE_LIST,     /* mutable=['batch_stats', ...] (a single name is a 1-list) */
    LINEN_MUTABLE_DENY      /* DenyList([...]): everything except these */
} linen_mutable_kind;
typedef struct linen_mutable {
    linen_mutable_kind kind;
    int n;
    const char *const *names;
} linen_mutable;
#define LINEN_IMMUTABLE ((linen_mutable){LINEN_MUTABLE_NONE, 0, NULL})
#define LINEN_MUTABLE_EVERYTHING ((linen_mutable){LINEN_MUTABLE_ALL, 0, NULL})
#define LINEN_MUTABLE(...)                                                                  \
    ((linen_mutable){LINEN_MUTABLE_LIST,                                                    \
                     (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), \
                     (const char *const[]){__VA_ARGS__}})
#define LINEN_DENY(...)                                                                     \
    ((linen_mutable){LINEN_MUTABLE_DENY,                                                    \
                     (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), \
                     (const char *const[]){__VA_ARGS__}})
bool linen_mutable_allows(const linen_mutable *m, const char *collection);

/* Options of init/apply; zero-initialised means Flax's defaults (method __call__; apply:
 * immutable; init: everything but 'intermediates'). Set `mutable_given` to use `mutable`. */
typedef struct linen_opts {
    const char *method;        /* a method by name, or NULL */
    linen_method_fn method_fn; /* or a method by function (Flax's method=Module.fn) */
#ifdef __cplusplus
    linen_mutable mutable_; /* `mutable` is a C++ keyword: C++ code spells the member mutable_ */
#else
    linen_mutable mutable;
#endif
    bool mutable_given;
} linen_opts;

/* ---- init / apply ----
 * Ownership of what they return: *variables (init) and *mutated (apply) are new trees the caller
 * releases (lx_tree_release); *out holds one reference the caller releases (lx_value_free, or
 * lx_release of out.u.array). The arrays inside the trees are shared with nothing the caller
 * did not give; a leaf stays valid as long as its tree (lx_retain it to keep it longer). On
 * failure nothing is returned: *variables / *mutated are NULL and *out is None. */
lx_status linen_init(const linen_module *m, linen_rngs rngs, const lx_call *call,
                     const linen_opts *opts, lx_tree **variables);
lx_status linen_init_with_output(const linen_module *m, linen_rngs rngs, const lx_call *call,
                                 const linen_opts *opts, lx_value *out, lx_tree **variables);
/* apply(variables, *args, rngs=..., method=..., mutable=...): the same order as init, with the
 * variables first: module, what it is bound to (variables, rngs), the call, options, outputs.
 * *mutated is set (to a tree holding only the mutable collections) when the mutability is not
 * LINEN_MUTABLE_NONE, else to NULL. `mutated` may be NULL when immutable, and `out` when the
 * output is not wanted (linen_init_with_output too). (The name is in
 * parentheses because compat.h keeps the old argument order, call before rngs, compiling.) */
lx_status(linen_apply)(const linen_module *m, const lx_tree *variables, linen_rngs rngs, const lx_call *call,
                       const linen_opts *opts, lx_value *out, lx_tree **mutated);

#ifdef LINNX_COMPAT_LINEN_APPLY_
/* The deprecated argument order (compat.h). */
static inline lx_status linen_apply_call_first_(const linen_module *m, const lx_tree *variables,
                                                const lx_call *call, linen_rngs rngs, const linen_opts *opts,
                                                lx_value *out, lx_tree **mutated) {
    return (linen_apply)(m, variables, rngs, call, opts, out, mutated);
}
#endif

/* ---- inside a method: the bound module ("self") ---- */
const void *linen_config(const linen_scope *self);
const linen_module *linen_self(const linen_scope *self);
/* "Dense_0" (or "" at the root), and the full path "/Outer/Dense_0" style used in errors. */
const char *linen_scope_name(const linen_scope *self);
const char *linen_scope_path(const linen_scope *self);
bool linen_is_initializing(const linen_scope *self);
bool linen_is_mutable_collection(const linen_scope *self, const char *collection);
/* The mutability this scope runs under (self.scope.mutable), borrowed. */
const linen_mutable *linen_scope_mutable(const linen_scope *self);

/* Errors of the scope calls below, with Flax's wording: a shape other than the stored
 * parameter's is LX_ERR_SHAPE (ScopeParamShapeError); a parameter or variable that is absent and
 * cannot be created here LX_ERR_NOT_FOUND; a write to a collection this apply may not change
 * LX_ERR_IMMUTABLE; a name already in use LX_ERR_EXISTS; make_rng with neither the stream nor
 * 'params' LX_ERR_RNG; a stored leaf of the wrong kind LX_ERR_TYPE; a NULL scope, name or out
 * LX_ERR_INVALID_ARGUMENT; a NULL value keeps the pending failure (status.h). */
/* self.param(name, init, shape, dtype): at init creates it from make_rng('params') (one
 * counter step even for zeros), afterwards reads it and checks the shape (Flax's
 * ScopeParamShapeError wording). *out is borrowed, and always a plain array: a parameter held in
 * a box is unboxed for the caller (self.param's unbox=True) and its box kept in the variables.
 * Boxes come from a partitioned initializer (lx_init_with_partitioning and _logical_, init.h:
 * the param is created as a Partitioned / LogicallyPartitioned box around the same values the
 * plain initializer gives, from the same key) or arrive with the variables (a checkpoint, a
 * ToLinen's metadata_fn). Such an initializer may have at most `ndim` names (LX_ERR_SHAPE
 * otherwise, at init and apply alike: Flax fails once a mesh applies the sharding). */
lx_status linen_param(linen_scope *self, const char *name, const lx_initializer *init,
                      lx_dtype dtype, int ndim, const int64_t *shape, lx_array **out);
/* The same, initialised with `init_shape` and reshaped to `shape` (same element count):
 * DenseGeneral's flat init, so fans are computed on the 2-D shape as Flax does. */
lx_status linen_param_reshaped(linen_scope *self, const char *name, const lx_initializer *init,
                               lx_dtype dtype, int ndim, const int64_t *shape, int init_ndim,
                               const int64_t *init_shape, lx_array **out);
/* A param with a custom init producing any leaf (an array or a box): fn(key, user, &leaf).
 * Ownership: the init function hands over one reference in *leaf (an array it made with
 * lx_array_* constructors, or lx_retain of a pool-owned one such as an op result; a box from
 * lx_box_*), which the scope stores and later releases with lx_value_free. On failure it returns
 * the status and leaves *leaf holding nothing (LX_V_NONE). The *out that linen_param_custom and
 * linen_variable give back is borrowed from the scope, like linen_param's. */
typedef lx_status (*linen_init_fn)(lx_key key, void *user, lx_value *leaf);
lx_status linen_param_custom(linen_scope *self, const char *name, linen_init_fn fn, void *user,
                             lx_value *out);

/* self.variable(col, name, init_fn): created (init_fn may be NULL -> error if absent) when the
 * collection is mutable and the variable is missing; *out borrowed. */
lx_status linen_variable(linen_scope *self, const char *collection, const char *name,
                         linen_init_fn init_fn, void *user, lx_value *out);
lx_status linen_get_variable(linen_scope *self, const char *collection, const char *name,
                             lx_value *out);
lx_status linen_put_variable(linen_scope *self, const char *collection, const char *name,
                             const lx_value *value);
/* Variable.value = v: like put_variable, but when the stored leaf is a metadata box and the new
 * value is a plain array, the box is kept around the new array (Flax's replace_boxed). */
lx_status linen_variable_set(linen_scope *self, const char *collection, const char *name,
                             lx_array *value);
bool linen_has_variable(const linen_scope *self, const char *collection, const char *name);
/* self.variables: every collection at this module's path (a new tree the caller owns). Its
 * sub-maps are shared with the apply, and for collections the apply may not write they are the
 * maps of the variables given to linen_apply: read them, lx_tree_copy one before changing it. */
lx_status linen_variables(const linen_scope *self, lx_tree **out);
/* self.make_rng(stream): falls back to 'params'; "needs PRNG for" error when neither exists. */
lx_status linen_make_rng(linen_scope *self, const char *stream, lx_key *out);
/* The stream names bound in this scope (self.scope.rngs), in the order given to init/apply. */
int linen_rng_names(const linen_scope *self, const char **names, int cap);
/* self.sow(col, name, value): appends to a tuple leaf in a mutable collection (default
 * 'intermediates'); a no-op when the collection is not mutable. */
lx_status linen_sow(linen_scope *self, const char *collection, const char *name, lx_array *value);

/* ---- children ---- */
/* Call `method` (NULL = "__call__") of `child` bound under `name` (NULL = "<Type>_<i>" auto
 * name, counted per parent and type). The same name twice binds the same child scope. */
lx_status linen_call_child(linen_scope *self, const linen_module *child, const char *name,
                           const char *method, const lx_call *call, lx_value *out);
/* In setup: attach a child under an attribute name; in methods: call it by that name. */
lx_status linen_setup_child(linen_scope *self, const char *attr, const linen_module *child);
lx_status linen_call_attr(linen_scope *self, const char *attr, const char *method,
                          const lx_call *call, lx_value *out);
/* The child module attached in setup under `attr` (borrowed), for attribute forwarding. */
lx_status linen_get_attr_module(linen_scope *self, const char *attr, const linen_module **out);

/* The innermost bound Linen module on this thread (Flax's module_stack top), or NULL. */
linen_scope *linen_current_scope(void);

/* ---- helpers for layer authors ---- */
/* Write an array result to a method's *out (retaining it). NULL y: the failure that produced
 * it is returned (its message kept). */
lx_status linen_return_array(lx_value *out, lx_array *y);
/* Call `child` (bound as in linen_call_child) on one array and return its array result, owned
 * by the innermost pool; NULL on failure (also when x is NULL: an earlier call failed). */
lx_array *linen_call_array(linen_scope *self, const linen_module *child, const char *name,
                           lx_array *x);
/* Flax's merge_param for an optional bool: exactly one of the module attribute (a LX_V_BOOL or
 * LX_V_NONE value) and the call argument must be given. Errors use Flax's wording:
 *   Parameter "deterministic" must be passed to the constructor or at call time.
 *   Parameter "deterministic" was passed to the constructor and at call time. Should be passed just once. */
lx_status linen_merge_param(const char *name, const lx_value *module_attr, const lx_value *call_arg,
                            bool *out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
