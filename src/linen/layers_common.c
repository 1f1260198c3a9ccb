/* Shared helpers of the Linen layers and the default initializer objects. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "layers_internal.h"
#include "linen_internal.h"
#include "../core/team.h"
#include "linnx/nn.h"
#include "linnx/ops.h"

/* Designated, so fields added to lx_initializer later (partitioning) start out zero. */
#define LL_VS(name_, scale_, mode_, dist_, out_axis_)                                               \
    {.kind = LX_INIT_VARIANCE_SCALING, .name = name_, .scale = scale_, .lower = -2.0, .upper = 2.0, \
     .mode = mode_, .distribution = dist_, .in_axis = {1, {-2}}, .out_axis = {1, {out_axis_}},    \
     .batch_axis = {0, {0}}}

const lx_initializer ll_lecun_normal = LL_VS("lecun_normal", 1.0, LX_FAN_IN, LX_DIST_TRUNCATED_NORMAL, -1);
/* flax.linen.linear.default_embed_init: variance_scaling(1.0, 'fan_in', 'normal', out_axis=0) */
const lx_initializer ll_embed_init = LL_VS("variance_scaling", 1.0, LX_FAN_IN, LX_DIST_NORMAL, 0);
const lx_initializer ll_zeros = {.kind = LX_INIT_ZEROS, .name = "zeros", .lower = -2.0, .upper = 2.0,
                                 .in_axis = {1, {-2}}, .out_axis = {1, {-1}}, .batch_axis = {0, {0}}};
const lx_initializer ll_ones = {.kind = LX_INIT_ONES, .name = "ones", .lower = -2.0, .upper = 2.0,
                                .in_axis = {1, {-2}}, .out_axis = {1, {-1}}, .batch_axis = {0, {0}}};

lx_status ll_check_dtypes(const char *layer, const char *dtype) {
    if (dtype && strcmp(dtype, "float32") != 0)
        return lx_fail(LX_ERR_UNSUPPORTED, "%s: dtype=%s is not supported (None or float32)", layer, dtype);
    return LX_OK;
}

static lx_status param_dtype_ok(const char *layer, lx_dtype pd, const lx_initializer *it) {
    if (!it || pd == LX_F32) return LX_OK;
    bool constant = it->kind == LX_INIT_ZEROS || it->kind == LX_INIT_ONES || it->kind == LX_INIT_CONSTANT;
    if (pd == LX_BF16 && constant) return LX_OK;
    return lx_fail(LX_ERR_UNSUPPORTED,
                   "%s: param_dtype=%s with the %s initializer is not supported (float32, or bfloat16 for "
                   "zeros/ones/constant)",
                   layer, lx_dtype_name(pd), it->name ? it->name : "?");
}

lx_status ll_check_param_dtype(const char *layer, lx_dtype param_dtype, const lx_initializer *a,
                               const lx_initializer *b) {
    LX_TRY(param_dtype_ok(layer, param_dtype, a));
    return param_dtype_ok(layer, param_dtype, b);
}

lx_status ll_input(const lx_call *c, int pos, const char *name, const char *layer, lx_array **out) {
    const lx_value *v = lx_call_get(c, pos, name);
    if (!v && pos == 0) v = lx_call_kwarg(c, "x");
    if (!v || v->kind == LX_V_NONE)
        return lx_fail(LX_ERR_TYPE, "%s.__call__() missing 1 required positional argument: '%s'", layer, name);
    if (v->kind != LX_V_ARRAY)
        return lx_fail(LX_ERR_TYPE, "%s: argument '%s' must be an array, got %s", layer, name, lx_kind_name(v->kind));
    if (!v->u.array) {
        return lx_error_pending() ? lx_last_status() : lx_fail(LX_ERR_FAILED_INPUT, "%s: argument '%s' is NULL", layer, name);
    }
    *out = v->u.array;
    return LX_OK;
}

lx_status ll_axis(const char *layer, int64_t a, int ndim, int64_t *out) {
    int64_t r = a < 0 ? a + ndim : a;
    if (r < 0 || r >= ndim) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: axis %lld is out of range for %d dimensions", layer, (long long)a, ndim);
    *out = r;
    return LX_OK;
}

/* The layer helpers (linen_dense(s, NULL, 8, x), ...) describe the same child module on every call
 * of a model. Building one allocates and binds a config of a few KiB (an initializer carries its
 * partitioning names), a third of a small Dense's apply. So ll_new keeps, per thread, the modules
 * it built for calls of scalar positional arguments, and hands one back for an equal (type, call)
 * when nobody else holds it (refcount 1: only the cache). Held modules are never shared: a method
 * that makes two equal Dense layers gets two instances, so the scope's identity rule (the same
 * instance called twice shares its name and params) cannot merge them. Modules are immutable
 * descriptions, so a reused one is indistinguishable from a new one. A thread's entries are
 * released when the thread ends (a pthread key's destructor, as src/core/heap.c frees its block cache), so
 * a thread that ran a model leaves nothing behind. Sanitizer builds keep no cache. */
#if defined(__SANITIZE_ADDRESS__)
#define LL_CACHE_ON 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LL_CACHE_ON 0
#endif
#endif
#ifndef LL_CACHE_ON
#define LL_CACHE_ON 1
#endif

enum { LL_CACHE = 32, LL_CACHE_ARGS = 4 };
typedef struct ll_cached {
    const linen_type *type;
    int nargs;
    lx_value args[LL_CACHE_ARGS];
    linen_module *m;
} ll_cached;
static _Thread_local ll_cached ll_cache[LL_CACHE];
static _Thread_local int ll_cache_next;
static _Thread_local bool ll_cache_registered;
static pthread_key_t ll_exit_key;
static pthread_once_t ll_exit_once = PTHREAD_ONCE_INIT;

/* At the thread's exit: drop the cache's reference of every entry (a module somebody still holds
 * lives on with their reference). Scalar arguments only, so the entries own nothing else. */
static void ll_on_thread_exit(void *p) {
    (void)p;
    for (int k = 0; k < LL_CACHE; k++) {
        linen_module_release(ll_cache[k].m);
        ll_cache[k].m = NULL;
    }
    ll_cache_registered = false; /* a module cached by a later destructor registers again (glibc reruns) */
}
static void ll_make_key(void) { (void)lx_tls_key_create(&ll_exit_key, ll_on_thread_exit); }
static void ll_register_exit(void) {
    if (ll_cache_registered) return;
    pthread_once(&ll_exit_once, ll_make_key);
    pthread_setspecific(ll_exit_key, ll_cache); /* non-NULL, so the destructor runs */
    ll_cache_registered = true;
}

static bool cacheable(const lx_call *c) {
    if (!c) return true;
    if (c->nkwargs || c->nargs > LL_CACHE_ARGS) return false;
    for (int i = 0; i < c->nargs; i++) {
        lx_kind k = c->args[i].kind;
        if (k != LX_V_INT && k != LX_V_BOOL && k != LX_V_FLOAT && k != LX_V_NONE) return false;
    }
    return true;
}

static bool same_args(const ll_cached *e, const linen_type *type, const lx_call *c) {
    int n = c ? c->nargs : 0;
    if (e->type != type || e->nargs != n) return false;
    for (int i = 0; i < n; i++) {
        const lx_value *a = &e->args[i], *b = &c->args[i];
        if (a->kind != b->kind) return false;
        if (a->kind == LX_V_INT && a->u.i != b->u.i) return false;
        if (a->kind == LX_V_BOOL && a->u.b != b->u.b) return false;
        if (a->kind == LX_V_FLOAT && memcmp(&a->u.f, &b->u.f, sizeof a->u.f)) return false;
    }
    return true;
}

linen_module *ll_new(const linen_type *type, const lx_call *c) {
    bool cache = LL_CACHE_ON && cacheable(c);
    for (int k = 0; cache && k < LL_CACHE; k++) {
        ll_cached *e = &ll_cache[k];
        if (e->m && e->m->refcount == 1 && same_args(e, type, c)) return linen_module_retain(e->m);
    }
    linen_module *m = NULL;
    if (linen_module_new(type, c, &m) != LX_OK) return NULL;
    if (cache) {
        /* a free slot, else the next one round robin whose module nobody holds */
        ll_cached *slot = NULL;
        for (int k = 0; k < LL_CACHE && !slot; k++) {
            ll_cached *e = &ll_cache[(ll_cache_next + k) % LL_CACHE];
            if (!e->m || e->m->refcount == 1) slot = e;
        }
        if (slot) {
            ll_register_exit();
            ll_cache_next = (int)(slot - ll_cache + 1) % LL_CACHE;
            linen_module_release(slot->m);
            slot->type = type;
            slot->nargs = c ? c->nargs : 0;
            for (int i = 0; i < slot->nargs; i++) slot->args[i] = c->args[i];
            slot->m = linen_module_retain(m);
        }
    }
    return m;
}

lx_array *ll_run_release(linen_scope *s, linen_module *child, const char *name, lx_array *x) {
    if (!child) return NULL;
    lx_array *y = linen_call_array(s, child, name, x);
    linen_module_release(child);
    return y;
}

lx_status lx_layer_dtype(const char *layer, const char *dtype, int n, lx_array *const *ops, lx_dtype *out) {
    if (!ops[0]) return lx_error_pending() ? lx_last_status() : lx_fail(LX_ERR_FAILED_INPUT, "%s: input is NULL", layer);
    lx_dtype to = LX_F32;
    if (!dtype) { /* jnp.result_type, then inexact: only all-bfloat16 floats stay bfloat16 */
        bool f32 = false, bf16 = false;
        for (int i = 0; i < n; i++)
            if (ops[i] && ops[i]->dtype != LX_I8) {
                f32 |= ops[i]->dtype == LX_F32;
                bf16 |= ops[i]->dtype == LX_BF16;
            }
        if (bf16 && !f32) to = LX_BF16;
    }
    if (to != LX_F32) {
        char what[160];
        size_t len = 0;
        what[0] = '\0';
        for (int i = 0; i < n && len < sizeof what; i++)
            if (ops[i])
                len += (size_t)snprintf(what + len, sizeof what - len, "%s%s", len ? ", " : "", lx_dtype_name(ops[i]->dtype));
        return lx_fail(LX_ERR_UNSUPPORTED,
                       "%s: the computation dtype %s (promoted from %s) is not supported: linnx computes in "
                       "float32 only",
                       layer, lx_dtype_name(to), what);
    }
    *out = to;
    return LX_OK;
}

lx_status lx_layer_promote(const char *layer, const char *dtype, int n, lx_array **ops) {
    lx_dtype to;
    LX_TRY(lx_layer_dtype(layer, dtype, n, ops, &to));
    for (int i = 0; i < n; i++)
        if (ops[i] && ops[i]->dtype != to && ops[i]->dtype != LX_I8 && !(ops[i] = lx_cast(ops[i], to)))
            return lx_last_status();
    return LX_OK;
}

lx_array *lx_layer_rms_norm(const char *layer, lx_array *x, lx_array *scale, float epsilon, int naxes,
                            const int64_t *axes) {
    if (!x) return NULL;
    char b1[96], b2[96];
    const int nd = x->ndim, k = naxes;
    bool seen[LX_MAX_DIMS] = {0};
    for (int i = 0; i < k; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + nd : axes[i];
        if (i >= LX_MAX_DIMS || a < 0 || a >= nd || seen[a]) {
            lx_fail(LX_ERR_SHAPE, "%s: reduction axis %lld is out of range or repeated for shape %s", layer,
                    (long long)axes[i], lx_shape_str(nd, x->shape, b1, sizeof b1));
            return NULL;
        }
        seen[a] = true;
    }
    for (int i = nd - k; i < nd; i++)
        if (!seen[i]) {
            lx_fail(LX_ERR_UNSUPPORTED, "%s: reduction axes must be the trailing %d axes of shape %s", layer, k,
                    lx_shape_str(nd, x->shape, b1, sizeof b1));
            return NULL;
        }
    if (k == 1 && (!scale || scale->ndim == 1)) return lx_rms_norm(x, scale, epsilon);
    const int lead = nd - k;
    int64_t d = 1, vshape[LX_MAX_DIMS];
    for (int i = 0; i < lead; i++) vshape[i] = x->shape[i];
    for (int i = lead; i < nd; i++) d *= x->shape[i];
    vshape[lead] = d;
    lx_array *s = scale;
    if (scale) {
        bool ok = scale->ndim <= k;
        for (int i = 0; ok && i < scale->ndim; i++) ok = scale->shape[i] == x->shape[nd - scale->ndim + i];
        if (!ok) {
            lx_fail(LX_ERR_SHAPE, "%s: scale of shape %s does not match the trailing normalised axes of input shape %s",
                    layer, lx_shape_str(scale->ndim, scale->shape, b1, sizeof b1),
                    lx_shape_str(nd, x->shape, b2, sizeof b2));
            return NULL;
        }
        if (scale->ndim < k) s = lx_broadcast_to(scale, k, x->shape + lead);
        s = lx_reshape(s, 1, &d);
        if (!s) return NULL;
    }
    lx_array *y = lx_rms_norm(lx_reshape(x, lead + 1, vshape), s, epsilon);
    return y ? lx_reshape(y, nd, x->shape) : NULL;
}
