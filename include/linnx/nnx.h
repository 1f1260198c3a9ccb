/* linnx/nnx.h - NNX-style modules: C structs that own their Variables and Rngs, and the graph API.
 *
 * An NNX module is a C struct whose first member is the header `nnx_module`, described by an
 * `nnx_type`: a field table (Variables, child modules, lists of children), a config table (the
 * constructor's named arguments, stored in a plain struct inside the module), methods, and a
 * constructor. Each module also has dynamic attributes (names added at run time: what ToNNX
 * fills from Linen variables, like Python's __dict__) and the `initializing` flag.
 *
 *   typedef struct { nnx_module base; linear_config cfg; lx_variable *kernel, *bias; } nnx_linear;
 *
 * The graph API walks the field table and the dynamic attributes:
 *   split(module, filters) -> graphdef + one state per filter (+ the rest);
 *   merge(graphdef, states) -> a new module;  state / update / clone / iter_graph.
 * A state is an lx_tree whose leaves are the module's own lx_variable objects (shared, never
 * copied: "one store, two views"); paths are attribute names, list indices as "0", "1", ...
 * A module's attributes (fields and dynamic attributes together) are visited in sorted name
 * order, list items by index and tree keys sorted, as Flax's graph flatten does; shared
 * submodules and Variables appear once, under their first path in that order.
 *
 * Rngs are graph nodes too: `nnx_rngs` holds one RngStream child per stream name; a stream
 * holds `key` (RngKey Variable, uint32[2]) and `count` (RngCount Variable, uint32 scalar).
 *
 * Ownership: nnx_module_new / nnx_merge / nnx_clone return a module the caller owns
 * (nnx_module_release). Modules are refcounted; a parent retains its children, and a module
 * value (nnx_module_v) kept by a container (a tree, a config VALUE field, a copied call) is
 * retained by lx_value_dup and released by lx_value_free. States and
 * graphdefs returned are owned by the caller (lx_tree_release / nnx_graphdef_free). Method
 * outputs: *out is owned by the caller (lx_value_free).
 */
#ifndef LINNX_NNX_H
#define LINNX_NNX_H

#include <stddef.h>
#include <stdio.h>

#include "linnx/config.h"
#include "linnx/init.h"
#include "linnx/random.h"
#include "linnx/tree.h"
#include "linnx/value.h"
#include "linnx/variable.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef struct nnx_module nnx_module;
typedef struct nnx_type nnx_type;
typedef struct nnx_rngs nnx_rngs; /* an nnx_module of type nnx_Rngs */
typedef struct nnx_attrs nnx_attrs;

/* The header: first member of every module struct. */
struct nnx_module {
    const nnx_type *type;
    int refcount;
    bool initializing; /* set on the whole graph by lazy_init */
    nnx_attrs *attrs;  /* dynamic attributes (NULL until the first one is set) */
};

typedef enum nnx_field_kind {
    NNX_FIELD_VARIABLE, /* lx_variable * (NULL allowed: e.g. bias when use_bias=False) */
    NNX_FIELD_CHILD,    /* nnx_module * (any module type, nnx_rngs and RngStream included) */
    NNX_FIELD_LIST      /* nnx_list: a list of children or Variables */
} nnx_field_kind;

typedef struct nnx_list {
    int n;
    lx_value *items; /* LX_V_VARIABLE, LX_V_PTR "nnx_module", or a static value; owned */
} nnx_list;

typedef struct nnx_field {
    const char *name;
    nnx_field_kind kind;
    size_t offset;
} nnx_field;
#define NNX_VAR(T, m) {#m, NNX_FIELD_VARIABLE, offsetof(T, m)}
#define NNX_CHILD(T, m) {#m, NNX_FIELD_CHILD, offsetof(T, m)}
#define NNX_LIST(T, m) {#m, NNX_FIELD_LIST, offsetof(T, m)}

typedef lx_status (*nnx_method_fn)(nnx_module *self, const lx_call *call, lx_value *out);
/* A method over one array (positional 0, or keyword "x" / "inputs"): NULL means failure (the op
 * or call that failed left the message); the result may be pool-owned. */
typedef lx_array *(*nnx_array_method_fn)(nnx_module *self, lx_array *x);
typedef struct nnx_method {
    const char *name;
    nnx_method_fn fn;
    nnx_array_method_fn array_fn; /* used when fn is NULL */
} nnx_method;
/* Method table entries: NNX_METHOD("attend", fn) for the general signature,
 * NNX_ARRAY_METHOD("__call__", fn) for one array in, one array out. */
#define NNX_METHOD(name_, fn_) {(name_), (fn_), NULL}
#define NNX_ARRAY_METHOD(name_, fn_) {(name_), NULL, (fn_)}
/* Write an array result to a method's *out (retaining it). NULL y: the failure that produced
 * it is returned (its message kept). The NNX twin of linen_return_array. */
lx_status nnx_return_array(lx_value *out, lx_array *y);

struct nnx_type {
    const char *name;            /* class name ("Linear") */
    size_t size;                 /* sizeof the module struct */
    const nnx_field *fields;
    int nfields;
    /* Constructor arguments (static data), bound from the call before init. NULL: the call is
     * not bound; init reads it itself (Sequential takes its layers positionally). Every piece of
     * static state a module has must live here: graphdefs record the config, and merge rebuilds
     * modules from it without running init. */
    const lx_field *config;
    int nconfig;
    size_t config_offset;        /* where the config struct lives inside the module struct */
    const nnx_method *methods;
    int nmethods;
    /* Optional, parallel to `methods`: each method's Python signature without self, e.g.
     * "inputs, *, deterministic=None, rngs=None" (NULL array or entry: the method checks its own
     * arguments). A call Python would refuse fails with Python's TypeError text (LX_ERR_TYPE) before the
     * method runs: "Linear.__call__() got an unexpected keyword argument 'foo'". Each string is parsed
     * once per thread and remembered by its address: it must live as long as the program (a
     * string literal). */
    const char *const *method_sigs;
    /* Constructor of a type with a config table: the config is already bound from the call;
     * build Variables and children from it. `rngs` may be NULL (a module that needs none). */
    lx_status (*setup)(nnx_module *self, nnx_rngs *rngs);
    /* Constructor that reads the call itself (a type without a config table, e.g. Sequential's
     * positional layers); with a config table, setup is the one to use. Both may be given:
     * setup runs first. */
    lx_status (*init)(nnx_module *self, const lx_call *call, nnx_rngs *rngs);
    /* Optional extra cleanup (fields, config and attrs are released by the framework). */
    void (*destroy)(nnx_module *self);
    /* Optional: methods not in the table (ToNNX forwards them to the Linen module's methods).
     * Return LX_ERR_NOT_FOUND for names it does not know either. */
    lx_status (*dispatch)(nnx_module *self, const char *method, const lx_call *call, lx_value *out);
    /* Optional config hooks, the same pair as linen_type's: references a config holds that
     * neither the field table nor the value system counts (a raw pointer inside an OBJ field; a
     * module in a VALUE field needs no hook: module values are counted, value.h
     * lx_ptr_register). config_retain runs on every config the framework has just bound or
     * copied (construction, graphdefs, merge, clone): the table's fields are already its own,
     * the other bytes are the source's; it takes its own references to them. On failure it
     * drops what it took, zeroes those members and returns the status. config_release runs
     * before a config is freed, and must accept a zeroed config. Types with these hooks refuse
     * nnx_setattr on their config fields (the reference would be lost), and so does any config
     * field holding a module (ToNNX's Linen module): the module's state was built from it. */
    lx_status (*config_retain)(void *cfg);
    void (*config_release)(void *cfg);
};

/* Table macros for a type descriptor, so no count is typed by hand:
 *   static const nnx_type MY_NNX = {
 *       .name = "MyNNX", .size = sizeof(my_nnx), .setup = my_nnx_setup,
 *       NNX_CONFIG(my_nnx, cfg, LX_FIELD_REQUIRED_INT(my_config, features)),
 *       NNX_FIELDS(NNX_CHILD(my_nnx, linear)),
 *       NNX_METHODS(NNX_ARRAY_METHOD("__call__", my_nnx_call)),
 *   };
 * (Tables kept in named arrays use .nfields = LX_COUNT(MY_FIELDS) and so on.) */
#define NNX_FIELDS(...) \
    .fields = (const nnx_field[]){__VA_ARGS__}, .nfields = LX_COUNT(((const nnx_field[]){__VA_ARGS__}))
#define NNX_METHODS(...) \
    .methods = (const nnx_method[]){__VA_ARGS__}, .nmethods = LX_COUNT(((const nnx_method[]){__VA_ARGS__}))
/* The config table of module struct T, stored in its member `member`. */
#define NNX_CONFIG(T, member, ...)                                                        \
    .config = (const lx_field[]){__VA_ARGS__}, .nconfig = LX_COUNT(((const lx_field[]){__VA_ARGS__})), \
    .config_offset = offsetof(T, member)

/* ---- modules ---- */
/* type(*call.args, **call.kwargs, rngs=rngs). A malformed call record (a negative count, a count
 * without its array, an unnamed keyword) is LX_ERR_INVALID_ARGUMENT "Linear.__init__(): malformed
 * call: 0 positional (NULL), 2 keyword (NULL)", *out NULL, before anything reads it. */
lx_status nnx_module_new(const nnx_type *type, const lx_call *call, nnx_rngs *rngs, nnx_module **out);
/* nnx.eval_shape(lambda: Type(...)): structure only: every Variable holds an abstract array,
 * no initializer runs and nothing parameter-sized is allocated. */
lx_status nnx_eval_shape(const nnx_type *type, const lx_call *call, nnx_rngs *rngs, nnx_module **out);
nnx_module *nnx_module_retain(nnx_module *m);
void nnx_module_release(nnx_module *m);
static inline lx_value nnx_module_v(nnx_module *m) { return lx_ptr_v("nnx_module", m); }
const void *nnx_config(const nnx_module *m);
/* A config field or a dynamic attribute by name (borrowed); LX_ERR_NOT_FOUND with Flax's
 * AttributeError text "'T' object has no attribute 'x'" for another name. */
lx_status nnx_getattr(const nnx_module *m, const char *name, lx_value *out);
/* Set a dynamic attribute (a Variable, a tree of Variables, a module, a static value). A value of
 * the wrong kind for a declared field, or a field fixed at construction, is LX_ERR_TYPE; a module
 * that would contain itself LX_ERR_INVALID_ARGUMENT: m itself, or a value from which m is
 * reachable at any depth (lin.parent = Sequential(lin)), since counted references would make the
 * cycle immortal. nnx_list_append refuses the same (an item from which the list is reachable). */
lx_status nnx_setattr(nnx_module *m, const char *name, const lx_value *value);
/* Delete a dynamic attribute: an unknown name is LX_ERR_NOT_FOUND (AttributeError), a field the
 * type declares LX_ERR_TYPE. */
lx_status nnx_delattr(nnx_module *m, const char *name);
int nnx_attr_count(const nnx_module *m);
const char *nnx_attr_name(const nnx_module *m, int i);

/* Call a method by name (NULL = "__call__"); unknown names fail with Flax's AttributeError text
 * (LX_ERR_NOT_FOUND). */
lx_status nnx_call(nnx_module *m, const char *method, const lx_call *call, lx_value *out);
/* Call `fn` as a method of m (Flax's fn(module, *args) for an unbound method function, what
 * ToLinen's nnx_method= resolves to). Like nnx_call it runs inside m's module frame (intercept.h:
 * the path failures and interceptors see); calling fn directly would skip the frame, so ops of
 * m's children would lose m's name from their path. */
lx_status nnx_call_fn(nnx_module *m, nnx_method_fn fn, const lx_call *call, lx_value *out);
/* Call a method-table entry (fn or array_fn) as a method of m, in m's frame: a method given as
 * a function when it may be an NNX_ARRAY_METHOD. */
lx_status nnx_call_method(nnx_module *m, const nnx_method *method, const lx_call *call, lx_value *out);
/* The common case: one array in, one array out (pool-owned; NULL + message on failure). */
lx_array *nnx_call_array(nnx_module *m, lx_array *x);
/* Typed forwards (nnx_linear_forward, llama_dense_general_forward, ...) bracket their body with
 * these so an interceptor sees the same module frame as through nnx_call: the child's attribute
 * name in its parent and its Params as parameters (issue 13: inside a ToLinen wrapper a typed
 * call used to show the wrapper's path with two activations). enter returns 1 when it pushed a
 * frame, 0 when none is needed (m NULL, or m already the innermost frame), -1
 * when the push failed (out of memory, message set); pass its result to nnx_frame_leave. */
int nnx_frame_enter(nnx_module *m);
void nnx_frame_leave(int entered);
const nnx_method *nnx_find_method(const nnx_type *type, const char *name);

/* ---- filters ---- */
typedef enum nnx_filter_kind {
    NNX_FILTER_TYPE,          /* isinstance(variable, type) */
    NNX_FILTER_TAG,           /* RngState whose stream tag equals `tag` */
    NNX_FILTER_EVERYTHING,
    NNX_FILTER_NOTHING,
    NNX_FILTER_NOT,
    NNX_FILTER_ALL,           /* all of `subs` */
    NNX_FILTER_ANY,           /* any of `subs` */
    NNX_FILTER_PATH_CONTAINS, /* a path component equals `tag` */
    NNX_FILTER_FN             /* fn(path, variable, user) */
} nnx_filter_kind;
typedef struct nnx_filter nnx_filter;
struct nnx_filter {
    nnx_filter_kind kind;
    const lx_vartype *type;
    const char *tag;
    int nsubs;
    const nnx_filter *subs;
    bool (*fn)(const char *path, const lx_variable *v, void *user);
    void *user;
};
#define NNX_OF_TYPE(t) ((nnx_filter){NNX_FILTER_TYPE, (t), NULL, 0, NULL, NULL, NULL})
#define NNX_EVERYTHING ((nnx_filter){NNX_FILTER_EVERYTHING, NULL, NULL, 0, NULL, NULL, NULL})
#define NNX_NOTHING ((nnx_filter){NNX_FILTER_NOTHING, NULL, NULL, 0, NULL, NULL, NULL})
/* A stream tag ('dropout'): Variables whose metadata `tag` equals it (RngKey/RngCount). */
#define NNX_TAG(s) ((nnx_filter){NNX_FILTER_TAG, NULL, (s), 0, NULL, NULL, NULL})
/* nnx.PathContains(key): some path component equals `key`. */
#define NNX_PATH_CONTAINS(s) ((nnx_filter){NNX_FILTER_PATH_CONTAINS, NULL, (s), 0, NULL, NULL, NULL})
/* nnx.Not(f): `sub` points at one filter (it must outlive the use). */
#define NNX_NOT(sub) ((nnx_filter){NNX_FILTER_NOT, NULL, NULL, 1, (sub), NULL, NULL})
/* nnx.All / nnx.Any over an array of n filters. */
#define NNX_ALL(n, subs) ((nnx_filter){NNX_FILTER_ALL, NULL, NULL, (n), (subs), NULL, NULL})
#define NNX_ANY(n, subs) ((nnx_filter){NNX_FILTER_ANY, NULL, NULL, (n), (subs), NULL, NULL})
/* A callable (path, x) -> bool. */
#define NNX_FN(f, u) ((nnx_filter){NNX_FILTER_FN, NULL, NULL, 0, NULL, (f), (u)})
/* Not(RngState): what every layer's parameters-only view uses. */
extern const nnx_filter NNX_NOT_RNG_STATE;
bool nnx_filter_match(const nnx_filter *f, const char *path, const lx_variable *v);

/* ---- the graph API ---- */
typedef struct nnx_graphdef nnx_graphdef;
/* split: states[i] gets the Variables matching filters[i] (first match wins); states[nfilters]
 * gets the rest. With nfilters == 0 there is one state holding everything. `graphdef` may be
 * NULL when only the states are wanted; `states` (nfilters + 1 entries) may not. */
lx_status nnx_split(nnx_module *m, int nfilters, const nnx_filter *filters, nnx_graphdef **graphdef,
                    lx_tree **states);
lx_status nnx_merge(const nnx_graphdef *graphdef, int nstates, lx_tree *const *states, nnx_module **out);
/* The Variables matching any of the filters (all of them with nfilters == 0). Flax returns one
 * state per filter here; use nnx_split for that. */
lx_status nnx_state(nnx_module *m, int nfilters, const nnx_filter *filters, lx_tree **state);
/* In place: existing Variables take the new values (the Variable objects and their types stay);
 * a Variable leaf also brings its metadata, replacing the old (Flax's update_from_state), a plain
 * array leaf changes only the value. Unknown paths are inserted as dynamic attributes where the
 * node allows. All or nothing: every path is resolved and everything the writes need is made
 * before the first change, so a failure (a bad path, a wrong kind, out of memory) leaves the
 * module exactly as it was. New entries of a tree held in a dynamic attribute go into a copy of
 * its map structure that then replaces the attribute (a map shared with another holder does not
 * see them). */
lx_status nnx_update(nnx_module *m, int nstates, lx_tree *const *states);
lx_status nnx_graphdef_of(nnx_module *m, nnx_graphdef **out);
bool nnx_graphdef_equal(const nnx_graphdef *a, const nnx_graphdef *b);
void nnx_graphdef_free(nnx_graphdef *g);
lx_status nnx_clone(nnx_module *m, nnx_module **out);
/* Visit every node and leaf with its path, in Flax's order: depth first over sorted attributes,
 * children before their parent (post-order), the root last with path "". Nodes are modules
 * (LX_V_PTR "nnx_module"), lists (LX_V_PTR "nnx_list") and trees held in dynamic attributes
 * (LX_V_TREE); leaves are Variables. Shared nodes are visited once. Static values (config,
 * None) are not visited. A callback returning non-OK stops the walk with that status. */
typedef lx_status (*nnx_visit_fn)(const char *path, const lx_value *node, void *user);
lx_status nnx_iter_graph(nnx_module *m, nnx_visit_fn fn, void *user);
/* Set `initializing` on every module in the graph (lazy_init). All or nothing: on failure (out
 * of memory for the walk) no flag has changed. */
lx_status nnx_set_initializing(nnx_module *m, bool on);
/* The graph's version: a per-thread counter bumped by every structural change made through this
 * API (setattr, delattr, list append/clear, update inserting a new path). Callers that cache a
 * module's Variable list (the bridge's ToLinen) compare it before and after running a method.
 * The rule that makes one number enough: after construction (init/setup), a child, a list or a
 * Variable of a module is replaced only through nnx_setattr / nnx_delattr / nnx_list_*, never
 * by assigning the struct field (changing a Variable's value, lx_variable_set_value, is not a
 * structural change and needs nothing). */
uint64_t nnx_graph_epoch(void);

/* ---- Rngs ---- */
typedef struct nnx_stream_spec {
    const char *name;
    bool has_key; /* use `key` as is; else seed from `seed` */
    int64_t seed;
    lx_key key;
} nnx_stream_spec;
/* Rngs(seed): one stream 'default'. */
lx_status nnx_rngs_from_seed(int64_t seed, nnx_rngs **out);
/* Rngs(params=..., dropout=...). */
lx_status nnx_rngs_new(int n, const nnx_stream_spec *streams, nnx_rngs **out);
static inline nnx_module *nnx_rngs_module(nnx_rngs *r) { return (nnx_module *)r; }
static inline void nnx_rngs_release(nnx_rngs *r) { nnx_module_release((nnx_module *)r); }
/* rngs.<stream>(): fold_in(key, count), then count += 1; falls back to 'default', else
 * LX_ERR_RNG "No RngStream named '<stream>' found in Rngs." */
lx_status nnx_rngs_draw(nnx_rngs *r, const char *stream, lx_key *out);
bool nnx_rngs_has(const nnx_rngs *r, const char *stream);
/* rngs.<stream>.count.value / .key.value: how many keys the stream has drawn, and its key. The
 * stream is looked up as a draw would (falling back to 'default'); LX_ERR_RNG when neither
 * exists, LX_ERR_RNG too when its Variables hold no concrete uint32 values (eval_shape). */
lx_status nnx_rngs_stream_count(const nnx_rngs *r, const char *stream, uint32_t *count);
lx_status nnx_rngs_stream_key(const nnx_rngs *r, const char *stream, lx_key *key);
int nnx_rngs_num_streams(const nnx_rngs *r);
const char *nnx_rngs_stream_name(const nnx_rngs *r, int i);
/* rngs.fork(): new Rngs whose streams are seeded with one draw from each parent stream. */
lx_status nnx_rngs_fork(nnx_rngs *r, nnx_rngs **out);
/* rngs['dropout'].fork(): a standalone RngStream module (what Dropout keeps). */
lx_status nnx_rngs_fork_stream(nnx_rngs *r, const char *stream, nnx_module **out);
lx_status nnx_rngs_stream_draw(nnx_module *stream, lx_key *out);
/* nnx.reseed(node, stream=seed): the streams tagged `stream` in the graph, in nnx_iter_graph
 * order, take the successive keys of a fresh stream seeded with `seed` (Flax draws
 * Rngs(stream=seed)[stream]() for each): the i-th gets key fold_in(key(seed), i), count 0. */
lx_status nnx_rngs_reseed(nnx_module *m, const char *stream, int64_t seed);


/* ---- states ---- */
/* nnx.merge_state(*states): path-wise, later states win. */
lx_status nnx_merge_state(int nstates, lx_tree *const *states, lx_tree **out);
/* State.flat_state() / State.from_flat_path(): (path, leaf) pairs; see lx_tree_flatten. */
lx_status nnx_state_flatten(const lx_tree *state, lx_flat *out);
lx_status nnx_state_unflatten(const lx_flat *flat, lx_tree **out);
/* Print a state one leaf per line, the format `linnx params` uses:
 *   path Type dtype[shape]: v0 v1 ...      e.g. "kernel Param float32[4,8]: 0.1 ..."
 *   rngs/default/count RngCount uint32[]: 0      (RngState leaves; "[rng]" is appended)
 * At most `max_values` values per leaf (then "..."); < 0 prints all. Abstract values print
 * "(abstract)". Leaves that are plain arrays show "Array" as their type. */
lx_status nnx_state_fprint(FILE *f, const lx_tree *state, int max_values);
/* nnx_state(m) printed with nnx_state_fprint: everything, RNG state included. */
lx_status nnx_module_fprint_state(FILE *f, nnx_module *m, int max_values);

/* ---- lists (NNX_LIST fields) ---- */
/* Append a Variable (retained), a module (retained: nnx_module_v(m)) or a static value (copied;
 * Sequential keeps plain functions this way). A module from which the list is reachable (the
 * list's own module, or one holding it at any depth: seq.layers.append(seq)) would make a
 * reference cycle: LX_ERR_INVALID_ARGUMENT, the list unchanged. A list (an nnx_list value) or a
 * tree is LX_ERR_TYPE. */
lx_status nnx_list_append(nnx_list *l, lx_value item);
void nnx_list_clear(nnx_list *l);

/* ---- building parameters (for layer code) ----
 * nnx.eval_shape runs constructors in abstract mode (thread-local): parameter helpers then make
 * abstract arrays and run no initializer. Layer code makes every parameter through these. */
bool nnx_abstract_mode(void);
/* A Variable of `type` holding init(key, dtype, shape) (abstract in abstract mode), with
 * `metadata` (an LX_V_TREE of metadata, or NONE) copied into it. A partitioned initializer
 * (lx_init_with_partitioning, init.h: Flax's nnx.with_partitioning) adds what
 * nnx_initializer_metadata gives on top of `metadata`: as in Flax, where Variable.__init__
 * update()s the keyword metadata with the initializer's VariableMetadata, the initializer wins a
 * key both set (and drops an alias of it: sharding / sharding_names for out_sharding). Its names
 * may be at most `ndim` (LX_ERR_SHAPE otherwise; Flax fails once eager sharding applies them), and
 * so may `metadata`'s out_sharding (or an alias): LX_ERR_SHAPE "Param: out_sharding ('a', 'b', 'c')
 * has 3 entries, more than the rank of a value of shape (4, 8)", checked before init runs. */
lx_status nnx_param_new(const lx_vartype *type, const lx_initializer *init, lx_key key,
                        lx_dtype dtype, int ndim, const int64_t *shape, const lx_value *metadata,
                        lx_variable **out);
/* The same, initialised with `init_shape` and reshaped to `shape` (same element count), as
 * LinearGeneral does: fans come from init_shape, the partitioning names describe `shape`. */
lx_status nnx_param_new_reshaped(const lx_vartype *type, const lx_initializer *init, lx_key key, lx_dtype dtype,
                                 int ndim, const int64_t *shape, int init_ndim, const int64_t *init_shape,
                                 const lx_value *metadata, lx_variable **out);
/* The Variable metadata a partitioned initializer gives: {out_sharding: names, mesh: mesh or
 * None}, plus sharding_rules (the rules or None) for with_logical_partitioning: what
 * lx_box_to_nnx_metadata gives for the box the same initializer makes in Linen. A plain
 * initializer gives an empty map. The caller owns *out. */
lx_status nnx_initializer_metadata(const lx_initializer *init, lx_tree **out);
/* with_partitioning-style metadata: {out_sharding: names, mesh: mesh} (mesh NULL = None). The
 * caller owns the tree; pass lx_tree_v(tree) as a layer's kernel_metadata / bias_metadata.
 * nnames outside 0..LX_MAX_DIMS, or NULL names with nnames > 0, is LX_ERR_INVALID_ARGUMENT
 * ("nnx_sharding_metadata: names is NULL"), *out NULL; a NULL entry is None. */
lx_status nnx_sharding_metadata(int nnames, const char *const *names, const char *mesh,
                                lx_tree **out);

/* ---- nnx.bridge.functional ---- */
/* functional(Type)(*args, **kwargs): remembers the type and a deep copy of the call. */
typedef struct nnx_functional nnx_functional;
lx_status nnx_functional_new(const nnx_type *type, const lx_call *call, nnx_functional **out);
void nnx_functional_free(nnx_functional *f);
/* .init(rngs=...): builds the module, keeps its graphdef, returns its whole state (owned). */
lx_status nnx_functional_init(nnx_functional *f, nnx_rngs *rngs, lx_tree **state);
/* .apply(*states).method(call): merges a fresh module from the states, runs `method` (NULL =
 * __call__), returns the output and the state after the call (owned; may be NULL if unwanted).
 * Before init: LX_ERR_INVALID_ARGUMENT "Functional.apply: no graphdef; call init first". */
lx_status nnx_functional_apply(nnx_functional *f, int nstates, lx_tree *const *states,
                               const char *method, const lx_call *call, lx_value *out,
                               lx_tree **new_state);
const nnx_graphdef *nnx_functional_graphdef(const nnx_functional *f);

/* The type of an LX_V_PTR value carrying a module, or NULL (not a module). */
nnx_module *nnx_module_from_value(const lx_value *v);

extern const nnx_type nnx_Rngs;
extern const nnx_type nnx_RngStream;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
