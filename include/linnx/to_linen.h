/* linnx/to_linen.h - an NNX module inside a Linen model: ToLinen, to_linen, to_linen_class,
 * linen_rngs_dict (flax.nnx.bridge.wrappers, MaxText's nnx_wrappers).
 *
 * A ToLinen is a Linen module whose config is an NNX type plus its constructor call. Calling it
 * inside init builds the NNX module with an Rngs made of one make_rng per Linen stream, runs the
 * method, and stores the module's state (RNG state excluded) as Linen collections, one
 * collection per Variable type (Param -> params, BatchStat -> batch_stats, an unregistered type
 * -> a collection named after it, e.g. LoRAParam), each Variable through `metadata_fn`.
 * Calling it inside apply binds the incoming variables to the NNX module and writes changed
 * state back to the mutable collections.
 *
 *   linen_module *m = NULL;
 *   lx_call ctor = LX_CALL_KWARGS(LX_KW_INT("in_features", 4), LX_KW_INT("out_features", 8));
 *   bridge_to_linen(&nnx_Linear, &ctor, NULL, &m);     // to_linen(nnx.Linear, 4, 8)
 *   linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &variables);
 *   // {'params': {'bias': f32[8], 'kernel': f32[4,8]}}
 *
 * NNX methods by name: a parent calls linen_call_attr(s, "embedding", "attend", call, &out) (or
 * linen_call_child with method "attend"); a top-level call passes LX_KW_STR("nnx_method",
 * "attend") (stripped before the NNX method sees the call), or LX_KW("nnx_method",
 * lx_ptr_v("nnx_method", &method_struct)) for a method given as a function.
 * Attributes: linen_module_attr(m, "features") reads the NNX constructor's keyword argument
 * (positional ones are not forwarded, as in Flax), and skip_rng / nnx_class.
 *
 * Deliberate differences from Flax 0.12.8 (DESIGN.md), each tested in test_bridge_to_linen.c:
 *  - apply builds no module from scratch: the NNX module is built once with abstract arrays
 *    (nnx_eval_shape) and cached on the ToLinen; each apply binds the caller's arrays into its
 *    Variables (no copy) and unbinds them afterwards. No initializer runs and nothing
 *    parameter-sized is allocated per apply. A module that keeps RNG streams (Dropout) is
 *    rebuilt abstractly on every apply instead, so its stream keys come from that apply's
 *    make_rng keys exactly as Flax's constructor derives them.
 *    Consequence: every non-RNG Variable the constructor makes must arrive in the variables
 *    (Flax silently uses the constructor's value): a missing one is LX_ERR_NOT_FOUND naming
 *    the path and collection. An incoming array of another shape or dtype than the
 *    constructor's is LX_ERR_SHAPE.
 *  - init stores the state after the method ran: Variables the method creates are kept (Flax
 *    exports the state before the call and loses them). Variables the constructor made keep
 *    their constructor values, as in Flax and as Linen's own layers do at init (BatchNorm does
 *    not update its statistics during init).
 *  - a path present in two incoming collections is LX_ERR_EXISTS (Flax: the later one wins).
 *  - apply: a call that changes a Variable of a collection that is not mutable fails with
 *    LX_ERR_IMMUTABLE and Linen's message naming the variable, the module path and the
 *    collection (Flax drops the update silently). Intermediate Variables (and subtypes) are the
 *    exception: like Linen's sow, writing them into an immutable collection is a no-op.
 *    Unchanged state is not written back (the caller's leaves, boxes included, stay as given).
 *  - to_linen_class types are constructible directly, and an override can switch a base value
 *    off (skip_rng=False, metadata_fn=None).
 *  - unknown incoming paths (the module has no such Variable) are warned about once per path
 *    per ToLinen module, not on every apply: lx_warn("Found unknown module paths in incoming
 *    state:\n  - a/b"); then, as in Flax, they are inserted into the module as Variables of
 *    their collection's type.
 * Lifted transforms work over a ToLinen as over any Linen module: W17 (nn.vmap over
 * to_linen(nnx.Linear) with params on axis 0 and split params keys) and nn.scan over a to_linen
 * layer whose kernel is partitioned (the layer axis enters the NNXMeta's out_sharding and leaves
 * it for the layer) are tested in tests/test_lift_bridge.c (test_w17,
 * test_scan_to_linen_metadata); docs/stacking.md, "Through the bridge".
 *
 * Caching: the cache belongs to one linen_module (clones start empty) and passes to the next
 * equal ToLinen when it is released (bridge_to_linen_cache_clear). An apply that finds the cache
 * in use (a recursive apply of the same module) builds its own module instead.
 * Threads: linnx objects are not shared between threads. Arrays, trees, Variables and modules
 * have plain (non-atomic) reference counts, so one ToLinen module (and the variables given to
 * it) must be used by one thread at a time; different threads may apply different modules
 * built from separate objects. (The cache's busy flag and the process-wide pool's lock are
 * atomic, but that does not make sharing a module safe.)
 * NNX methods run through ToLinen must not write into the data of the arrays their Variables
 * hold (replace the Variable's value instead, as every linnx layer does): during apply those
 * arrays are the caller's. A method that replaces a child or a Variable does it with
 * nnx_setattr (nnx.h's rule): the cache checks the graph's version, not the struct fields.
 *
 * Ownership: bridge_to_linen gives the caller a module (linen_module_release). The ToLinen
 * keeps a deep copy of the constructor call (modules in it retained). to_linen_class types are
 * owned by the caller (bridge_to_linen_class_free) and must outlive every module made from
 * them.
 */
#ifndef LINNX_TO_LINEN_H
#define LINNX_TO_LINEN_H

#include "linnx/bridge.h"
#include "linnx/linen.h"
#include "linnx/nnx.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* The Linen type "ToLinen". linen_module_new(&bridge_ToLinen, kwargs) takes Flax's
 * fields: nnx_class (positional 0 or keyword; LX_V_PTR "nnx_type"), ctor (positional 1 or
 * keyword; LX_V_PTR "lx_call" pointing at the constructor call, copied; absent = no
 * arguments), skip_rng (bool), metadata_fn (None = store raw values; LX_V_PTR
 * "bridge_metadata" pointing at a bridge_metadata; absent = to_linen_var), name. */
extern const linen_type bridge_ToLinen;

/* A metadata_fn with its user pointer, as carried in a call record. */
typedef struct bridge_metadata {
    bridge_metadata_fn fn;
    void *user;
} bridge_metadata;
static inline lx_value bridge_metadata_v(bridge_metadata *m) { return lx_ptr_v("bridge_metadata", m); }

typedef struct bridge_to_linen_opts {
    bridge_metadata_fn metadata_fn; /* NULL: to_linen_var (Flax's default) */
    void *metadata_user;
    bool metadata_none;             /* Flax's metadata_fn=None: store raw values */
    bool skip_rng;                  /* do not pass rngs to the constructor */
    const char *name;               /* Flax's name=...; NULL: auto-named ToLinen_<i> */
} bridge_to_linen_opts;

/* to_linen(nnx_class, *args, metadata_fn=to_linen_var, name=None, skip_rng=False, **kwargs):
 * `ctor` holds the constructor's positional and keyword arguments (NULL = none; copied).
 * `opts` NULL = defaults. */
lx_status bridge_to_linen(const nnx_type *t, const lx_call *ctor, const bridge_to_linen_opts *opts,
                          linen_module **out);
/* The common form, keyword arguments only (none is fine): NULL on failure (message kept); the
 * caller owns the module (linen_module_release).
 *   linen_module *m = BRIDGE_TO_LINEN(&MY_NNX, LX_KW_INT("in_features", 4));
 *   linen_module *n = BRIDGE_TO_LINEN(&MY_NNX);                                             */
linen_module *bridge_to_linen_kw(const nnx_type *t, int nkwargs, const lx_kwarg *kwargs);
#define BRIDGE_TO_LINEN(...)                                                                 \
    bridge_to_linen_kw(LX_FIRST_(__VA_ARGS__, 0),                                            \
                       LX_NARGS_(LX_KWARGS(LX_REST_(__VA_ARGS__, LX_KW_END_))) - 1,           \
                       LX_KWARGS(LX_REST_(__VA_ARGS__, LX_KW_END_)))

/* The NNX type and constructor call of a ToLinen (or to_linen_class) module; NULL otherwise. */
const nnx_type *bridge_to_linen_nnx_type(const linen_module *m);
const lx_call *bridge_to_linen_ctor(const linen_module *m);

/* to_linen_class(base, base_metadata_fn, base_skip_rng, **partial_kwargs): a new Linen type
 * named "<Base>ToLinen" (LinearToLinen) whose instances take the NNX constructor's arguments
 * directly:
 *   linen_module_new(cls, &LX_CALL_KWARGS(LX_KW_INT("in_features", 4), ...), &m)
 * Keyword precedence: partial_kwargs < kwargs= (LX_V_PTR "lx_call") < the other keywords.
 * Positional arguments are the constructor's positionals. Special keywords: nnx_class
 * (LX_V_PTR "nnx_type"), skip_rng (a bool: False switches base_skip_rng off), metadata_fn (None
 * switches the base function off: raw values; LX_V_PTR "bridge_metadata"), name.
 * base_metadata_fn NULL = to_linen_var; `user` goes with it. `partial_kwargs` may be NULL. */
lx_status bridge_to_linen_class(const nnx_type *base, const lx_call *partial_kwargs,
                                bridge_metadata_fn base_metadata_fn, void *user, bool base_skip_rng,
                                linen_type **out);
void bridge_to_linen_class_free(linen_type *cls);

/* ToLinen modules made anew on every call (inside a compact parent, as Flax code writes it)
 * share caches: a released ToLinen leaves its abstract module in a small process-wide pool (16
 * entries, least recently donated evicted) and the next ToLinen with the same NNX type,
 * skip_rng and an equal constructor call (lx_value_equal; calls holding pointers other than
 * types and functions, e.g. initializers, are not pooled) takes it over, with the paths it
 * already warned about. This drops the pool (tests that count live arrays call it). */
void bridge_to_linen_cache_clear(void);

/* linen_rngs_dict(module, add_default): one make_rng(name) per stream bound in the scope (NULL =
 * the current Linen module), in order, plus default = seed 0 when add_default and no 'default'
 * stream. Writes at most `cap` specs (names borrowed from the scope, valid during the call) and
 * the count to *n. Outside a Linen module: LX_ERR_INVALID_ARGUMENT "linen_rngs_dict() must be
 * called inside a Linen module." More than `cap` streams: LX_ERR_INVALID_ARGUMENT. */
lx_status bridge_linen_rngs_dict(linen_scope *s, bool add_default, int cap, nnx_stream_spec *out, int *n);
/* The same as an Rngs the caller owns (nnx_rngs_release). */
lx_status bridge_linen_rngs(linen_scope *s, bool add_default, nnx_rngs **out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
