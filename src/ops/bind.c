/* bind(prim, inputs, params): the one place where a primitive is applied (primitive.h, steps 1-7).
 *
 * Every public op builder reduces to lx_bind; everything an op used to repeat by hand lives here
 * once: failed-input propagation, the shape/dtype rule, substituters before compute, abstract
 * evaluation (nothing computed, nothing taped), result ownership, tape + observers, and the
 * stale-message rule. */
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../core/array_internal.h"
#include "../core/checked.h"
#include "../core/frame_internal.h"
#include "op_internal.h"

#define BIND_MAX_IN 16
#define BIND_PARAMS_MAX 1024

_Static_assert(sizeof(lx_conv_params) <= BIND_PARAMS_MAX, "bind's params buffer holds lx_conv_params");
_Static_assert(sizeof(lx_dot_general_params) <= BIND_PARAMS_MAX, "bind's params buffer");
_Static_assert(sizeof(lx_slice_params) <= BIND_PARAMS_MAX, "bind's params buffer");
_Static_assert(sizeof(lx_pad_params) <= BIND_PARAMS_MAX, "bind's params buffer");
_Static_assert(sizeof(lx_pool_params) <= BIND_PARAMS_MAX, "bind's params buffer");
_Static_assert(sizeof(lx_norm_params) <= BIND_PARAMS_MAX, "bind's params buffer");
_Static_assert(sizeof(lx_reduce_params) <= BIND_PARAMS_MAX, "bind's params buffer");
_Static_assert(sizeof(lx_shape_params) <= BIND_PARAMS_MAX, "bind's params buffer");

/* The observer side of step 6 (the tape side needs no attributes). */
static void record(const lx_prim_def *d, const void *p, int nin, lx_array *const *in, lx_array *saved,
                   lx_array *out) {
    if (lx_tape_recording_ && !lx_is_abstract(out)) {
        if (saved && nin < BIND_MAX_IN) { /* only the fused ops (a few inputs) keep a saved value */
            lx_array *all[BIND_MAX_IN + 1];
            for (int i = 0; i < nin; i++) all[i] = in[i];
            all[nin] = saved;
            lx_tape_record_(d->id, p, nin + 1, all, out);
        } else {
            lx_tape_record_(d->id, p, nin, in, out);
        }
    }
    if (!lx_prim_observed()) return;
    lx_kwarg attrs[LX_PRIM_MAX_ATTRS];
    int64_t scratch[64];
    int nattrs = d->attrs ? d->attrs(d->id, p, nin, in, attrs, scratch) : 0;
    lx_prim_event ev = {d->name, nin, in, out, nattrs, nattrs ? attrs : NULL, d->id, p};
    lx_prim_emit(&ev);
}

/* Step 7's second half: a failure that was handled leaves no message behind a success. (The
 * message test first: with no message at all, the common case, that is the only call.) */
static inline void settle(void) {
    if (lx_last_error()[0] && !lx_error_pending()) lx_clear_error();
}

static bool same_aval(const lx_array *r, const lx_prim_aval *av) {
    if (r->dtype != av->dtype || r->ndim != av->ndim) return false;
    for (int i = 0; i < av->ndim; i++)
        if (r->shape[i] != av->shape[i]) return false;
    return true;
}

/* checked-arithmetic: the rule's result shape, checked as lx_array's own check does (non-negative
 * dims whose non-zero product times 16 fits in int64) but naming the op. */
static lx_status check_aval(const lx_prim_def *d, const lx_prim_aval *av) {
    char b[160];
    if (av->ndim < 0 || av->ndim > LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "%s: the result would have %d dimensions (at most %d)", d->name, av->ndim,
                       LX_MAX_DIMS);
    int64_t nz = 1;
    for (int i = 0; i < av->ndim; i++) {
        if (av->shape[i] < 0)
            return lx_fail(LX_ERR_SHAPE, "%s: negative dimension %lld at axis %d of the result shape %s", d->name,
                           (long long)av->shape[i], i, lx_shape_str(av->ndim, av->shape, b, sizeof b));
        if (av->shape[i] > 0 && (!lx_mul_ok(nz, av->shape[i], &nz) || nz > INT64_MAX / 16))
            return lx_fail(LX_ERR_SHAPE, "%s: result shape %s is too big (its element count times 16 overflows int64)",
                           d->name, lx_shape_str(av->ndim, av->shape, b, sizeof b));
    }
    return LX_OK;
}

/* PTQ's stored int8 weights (quant.h): an op that takes float operands only meets them when a
 * substituter will dequantize them or run the int8 kernel. So with substituters installed (and no
 * the rule is asked with an abstract float32 stand-in for each int8 input, on the params in p;
 * true when it passes. A failing try leaves the failure state as it found it (the real rule then
 * gives its own message). */
static bool has_int8(int nin, lx_array *const *in) {
    for (int i = 0; i < nin; i++)
        if (in[i] && in[i]->dtype == LX_I8) return true;
    return false;
}

static bool rule_with_stand_ins(const lx_prim_def *d, void *p, int nin, lx_array **in, lx_prim_aval *av) {
    lx_array *shadow[BIND_MAX_IN];
    bool any = false, ok = true;
    if (nin > BIND_MAX_IN) return false;
    for (int i = 0; i < nin; i++) {
        shadow[i] = in[i];
        if (ok && in[i] && in[i]->dtype == LX_I8) {
            any = true;
            if (!(shadow[i] = lx_array_abstract(LX_F32, in[i]->ndim, in[i]->shape))) shadow[i] = in[i], ok = false;
        }
    }
    if (ok && any) {
        lx_error_saved_ saved;
        lx_error_save_(&saved);
        ok = d->rule(d->id, p, nin, shadow, av) == LX_OK;
        if (!ok) lx_error_restore_(&saved);
    }
    for (int i = 0; i < nin; i++)
        if (shadow[i] != in[i]) lx_release(shadow[i]);
    return ok && any;
}

static lx_array *bind_rule(const lx_prim_def *d, const void *params, int nin, lx_array *const *inputs,
                           lx_array **in) {
    /* 1. failed inputs */
    bool abstract = false;
    for (int i = 0; i < nin; i++) {
        in[i] = inputs[i];
        if (!in[i]) {
            if (i < 32 && (d->optional >> i & 1u)) continue;
            lx_op_null_input(d->name);
            return NULL;
        }
        if (lx_is_abstract(in[i])) abstract = true;
    }
    /* 2. the shape/dtype rule on bind's copy of the params */
    alignas(max_align_t) unsigned char pbuf[BIND_PARAMS_MAX];
    void *p = NULL;
    if (d->params_size) {
        memcpy(pbuf, params, d->params_size);
        p = pbuf;
    }
    lx_prim_aval av = {0};
    bool stand_in = false;
    if (lx_prim_substituting() && has_int8(nin, in)) {
        stand_in = rule_with_stand_ins(d, p, nin, in, &av);
        if (!stand_in && d->params_size) memcpy(pbuf, params, d->params_size); /* the try normalised p */
    }
    if (!stand_in && d->rule(d->id, p, nin, in, &av) != LX_OK) return NULL;
    if (check_aval(d, &av) != LX_OK) return NULL;
    /* 3. substituters see the checked inputs and the normalised params */
    if (lx_prim_substituting()) {
        bool failed = false;
        lx_array *r = lx_prim_substitute_run(d->id, p, nin, in, &failed);
        if (failed) return NULL; /* never the unsubstituted op in its place */
        if (r) {
            if (!same_aval(r, &av)) {
                char want[160], got[160];
                lx_fail(LX_ERR_SHAPE, "%s: a substituter returned %s%s where the op gives %s%s", d->name,
                        lx_dtype_name(r->dtype), lx_shape_str(r->ndim, r->shape, got, sizeof got),
                        lx_dtype_name(av.dtype), lx_shape_str(av.ndim, av.shape, want, sizeof want));
                return NULL;
            }
            settle();
            return r;
        }
        if (stand_in) { /* nothing substituted the int8 inputs: the real rule decides */
            if (d->params_size) memcpy(pbuf, params, d->params_size);
            if (d->rule(d->id, p, nin, in, &av) != LX_OK) return NULL;
        }
    }
    /* 4./5. the result: abstract (shape only) or computed */
    lx_array *out = NULL, *saved = NULL;
    if (abstract || !(d->flags & LX_PRIM_VIEW)) {
        /* check_aval passed the shape: with a valid dtype the array needs no second check */
        bool checked = !abstract && av.dtype >= 0 && av.dtype < LX_DTYPE_COUNT;
        out = checked ? lx_autorelease(lx_array_empty_valid_(av.dtype, av.ndim, av.shape))
                      : lx_op_result(av.dtype, av.ndim, av.shape, abstract);
        if (!out) return NULL;
    }
    if (!abstract && d->forward(d->id, p, nin, in, &out, &saved) != LX_OK) return NULL;
    /* 6. tape and observers */
    record(d, p, nin, in, saved, out);
    settle();
    return out;
}

lx_array *lx_bind(lx_prim_id id, const void *params, int nin, lx_array *const *inputs) {
    const lx_prim_def *d = lx_prim_get(id);
    if (!d || !d->rule) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "bind: no primitive with id %d", (int)id);
        return NULL;
    }
    if (nin < 0 || (nin > 0 && !inputs)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "bind: %s: bad input list (%d inputs)", d->name, nin);
        return NULL;
    }
    if (d->params_size && !params) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "bind: %s needs its parameters", d->name);
        return NULL;
    }
    if (d->arity >= 0 ? nin != d->arity : nin < 1) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "bind: %s takes %s%d inputs, got %d", d->name, d->arity >= 0 ? "" : "at least ",
                d->arity >= 0 ? d->arity : 1, nin);
        return NULL;
    }
    /* The working input list (substituters may replace entries): on the stack unless a long
     * concatenate/stack needs more. The tape copies what it keeps. */
    lx_array *local[BIND_MAX_IN], **in = local;
    if (nin > BIND_MAX_IN) {
        size_t bytes;
        if (!lx_bytes_ok(nin, sizeof *in, &bytes) || !(in = malloc(bytes))) {
            lx_fail(LX_ERR_NO_MEMORY, "%s: out of memory for %d inputs", d->name, nin);
            return NULL;
        }
    }
    lx_array *out = bind_rule(d, params, nin, inputs, in);
    if (in != local) free(in);
    return out;
}
