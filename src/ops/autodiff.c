/* Reverse-mode autodiff: the tape (a Wengert list over the primitive table) and value_and_grad
 * over arrays. Linen and NNX front ends are in src/core/autodiff_trees.c.
 *
 * A record is one primitive application whose output depends on a watched array: its id, a copy of
 * its typed params, its inputs and its output (retained, so no address is reused while the tape
 * lives). Arrays are found by address in an open-addressing map. The backward pass walks the
 * records newest first, so every consumer of a value is processed before its producer and the
 * value's cotangent is complete when its producer's VJP runs; each record's arrays are released
 * right after its VJP. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/ops.h"
#include "op_internal.h"

typedef struct rec {
    lx_prim_id id; /* LX_PRIM_COUNT for a watched leaf */
    int nin;
    void *params;
    lx_array **in;
    int *in_rec; /* the record producing each input, -1 for constants */
    lx_array *out;
    lx_array *ct; /* the accumulated cotangent of out (owned) */
} rec;

struct lx_tape {
    rec *recs;
    size_t n, cap;
    /* address -> record index + 1 (0: empty slot) */
    const lx_array **keys;
    size_t *vals;
    size_t mcap, mlen;
    bool stopped;
};

_Thread_local struct lx_tape *lx_tape_recording_;
static _Thread_local lx_tape *active; /* the tape of this thread, recording or paused */

static size_t hash_ptr(const void *p) {
    uintptr_t v = (uintptr_t)p;
    v ^= v >> 17;
    v *= 0x9E3779B97F4A7C15ull;
    return (size_t)(v ^ (v >> 29));
}

static long map_get(const lx_tape *t, const lx_array *a) {
    if (!t->mcap || !a) return -1;
    for (size_t i = hash_ptr(a) & (t->mcap - 1);; i = (i + 1) & (t->mcap - 1)) {
        if (!t->keys[i]) return -1;
        if (t->keys[i] == a) return (long)t->vals[i] - 1;
    }
}

static bool map_put(lx_tape *t, const lx_array *a, size_t idx) {
    if ((t->mlen + 1) * 2 > t->mcap) {
        size_t ncap = t->mcap ? t->mcap * 2 : 256;
        const lx_array **nk = calloc(ncap, sizeof *nk);
        size_t *nv = calloc(ncap, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return false;
        }
        for (size_t i = 0; i < t->mcap; i++)
            if (t->keys[i]) {
                size_t j = hash_ptr(t->keys[i]) & (ncap - 1);
                while (nk[j]) j = (j + 1) & (ncap - 1);
                nk[j] = t->keys[i], nv[j] = t->vals[i];
            }
        free(t->keys);
        free(t->vals);
        t->keys = nk, t->vals = nv, t->mcap = ncap;
    }
    size_t i = hash_ptr(a) & (t->mcap - 1);
    while (t->keys[i] && t->keys[i] != a) i = (i + 1) & (t->mcap - 1);
    if (!t->keys[i]) t->mlen++;
    t->keys[i] = a, t->vals[i] = idx + 1;
    return true;
}

static void rec_clear(rec *r) {
    for (int i = 0; r->in && i < r->nin; i++) lx_release(r->in[i]); /* in is NULL when its calloc failed */
    free(r->in);
    free(r->in_rec);
    free(r->params);
    lx_release(r->out);
    lx_release(r->ct);
    memset(r, 0, sizeof *r);
}

static void tape_clear(lx_tape *t) {
    for (size_t i = 0; i < t->n; i++) rec_clear(&t->recs[i]);
    t->n = 0;
    free(t->keys);
    free(t->vals);
    t->keys = NULL, t->vals = NULL, t->mcap = t->mlen = 0;
}

static bool float_dtype(lx_dtype d) { return d == LX_F32 || d == LX_BF16; }

/* A record slot, or -1 when out of memory (the tape then stops recording: the backward pass
 * reports it). */
static long tape_push(lx_tape *t) {
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        rec *nr = realloc(t->recs, ncap * sizeof *nr);
        if (!nr) return -1;
        t->recs = nr, t->cap = ncap;
    }
    memset(&t->recs[t->n], 0, sizeof(rec));
    return (long)t->n++;
}

static _Thread_local bool record_failed;

void lx_tape_record_(lx_prim_id id, const void *params, int nin, lx_array *const *inputs, lx_array *out) {
    lx_tape *t = lx_tape_recording_;
    if (!out || lx_is_abstract(out) || !float_dtype(out->dtype)) return;
    if (map_get(t, out) >= 0) return; /* produced by an op this one ran: already recorded */
    bool depends = false;
    for (int i = 0; i < nin; i++) {
        if (inputs[i] == out) return; /* an identity (dropout off): nothing new */
        if (inputs[i] && map_get(t, inputs[i]) >= 0) depends = true;
    }
    if (!depends) return;
    const lx_prim_def *def = lx_prim_get(id);
    long k = tape_push(t);
    if (k < 0) goto oom;
    rec *r = &t->recs[k];
    r->id = id;
    r->nin = nin;
    r->in = calloc((size_t)(nin > 0 ? nin : 1), sizeof *r->in);
    r->in_rec = malloc(sizeof(int) * (size_t)(nin > 0 ? nin : 1));
    if (def->params_size && params) {
        r->params = malloc(def->params_size);
        if (r->params) memcpy(r->params, params, def->params_size);
    }
    if (!r->in || !r->in_rec || (def->params_size && params && !r->params)) {
        rec_clear(r);
        t->n--;
        goto oom;
    }
    for (int i = 0; i < nin; i++) {
        r->in[i] = lx_retain(inputs[i]);
        r->in_rec[i] = (int)map_get(t, inputs[i]);
    }
    r->out = lx_retain(out);
    if (!map_put(t, out, (size_t)k)) goto oom;
    return;
oom:
    record_failed = true;
}

lx_status lx_tape_new(lx_tape **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tape_new: out is NULL");
    *out = NULL;
    if (active)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "tape_new: a tape is already active on this thread (higher-order gradients are not supported)");
    lx_tape *t = calloc(1, sizeof *t);
    if (!t) return lx_fail(LX_ERR_NO_MEMORY, "tape_new: out of memory");
    active = t;
    lx_tape_recording_ = t;
    record_failed = false;
    *out = t;
    return LX_OK;
}

lx_status lx_tape_watch(lx_tape *t, lx_array *x) {
    if (!t) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tape_watch: tape is NULL");
    if (!x) return lx_fail(LX_ERR_FAILED_INPUT, "tape_watch: array is NULL");
    if (!float_dtype(x->dtype)) {
        char b[64];
        return lx_fail(LX_ERR_DTYPE,
                       "grad requires real-valued inputs (input dtype that is a sub-dtype of np.inexact), but got %s",
                       lx_array_sig(x, b, sizeof b));
    }
    if (map_get(t, x) >= 0) return LX_OK;
    long k = tape_push(t);
    if (k < 0) return lx_fail(LX_ERR_NO_MEMORY, "tape_watch: out of memory");
    t->recs[k].id = LX_PRIM_COUNT;
    t->recs[k].out = lx_retain(x);
    if (!map_put(t, x, (size_t)k)) {
        rec_clear(&t->recs[k]);
        t->n--;
        return lx_fail(LX_ERR_NO_MEMORY, "tape_watch: out of memory");
    }
    t->stopped = false;
    if (active == t) lx_tape_recording_ = t;
    return LX_OK;
}

void lx_tape_stop(lx_tape *t) {
    if (!t) return;
    t->stopped = true;
    if (lx_tape_recording_ == t) lx_tape_recording_ = NULL;
}

size_t lx_tape_size(const lx_tape *t) { return t ? t->n : 0; }

void lx_tape_free(lx_tape *t) {
    if (!t) return;
    if (active == t) active = NULL;
    if (lx_tape_recording_ == t) lx_tape_recording_ = NULL;
    tape_clear(t);
    free(t->recs);
    free(t);
}

bool lx_tape_active(void) { return lx_tape_recording_ != NULL; }

/* Add `g` (pool-owned or borrowed) into record k's cotangent. */
static lx_status accumulate(rec *r, lx_array *g) {
    if (!lx_same_shape(g, r->out) || g->dtype != r->out->dtype) {
        char b1[64], b2[64];
        return lx_fail(LX_ERR_INTERNAL, "tape_backward: the cotangent %s of a %s does not match its value %s",
                       lx_array_sig(g, b1, sizeof b1), r->id < LX_PRIM_COUNT ? lx_prim_get(r->id)->name : "leaf",
                       lx_array_sig(r->out, b2, sizeof b2));
    }
    if (!r->ct) {
        r->ct = lx_retain(g);
        return LX_OK;
    }
    lx_array *s = lx_add(r->ct, g);
    if (!s) return lx_last_status();
    lx_release(r->ct);
    r->ct = lx_retain(s);
    return LX_OK;
}

/* The per-thread "gradient is final" callback (autodiff.h). */
static _Thread_local lx_grad_ready_fn ready_fn;
static _Thread_local void *ready_user;

void lx_tape_set_grad_ready(lx_grad_ready_fn fn, void *user) {
    ready_fn = fn;
    ready_user = fn ? user : NULL;
}

/* For the callback: due[k] chains the watched leaves whose last contribution comes from record k
 * (the lowest-numbered record <= ky consuming them; next[] links the chain), so they are final
 * once record k has been processed. Leaves nothing consumes are chained at `nodue`. */
typedef struct {
    long *due, *next, nodue;
    size_t n;
} ready_plan;

static void ready_plan_free(ready_plan *p) {
    free(p->due);
    free(p->next);
    memset(p, 0, sizeof *p);
    p->nodue = -1;
}

static lx_status ready_plan_build(const lx_tape *t, long ky, ready_plan *p) {
    p->n = t->n;
    p->nodue = -1;
    p->due = malloc((t->n + 1) * sizeof *p->due);
    p->next = malloc((t->n + 1) * sizeof *p->next);
    long *first = malloc((t->n + 1) * sizeof *first); /* per leaf: its lowest consumer <= ky */
    if (!p->due || !p->next || !first) {
        free(first);
        ready_plan_free(p);
        return lx_fail(LX_ERR_NO_MEMORY, "tape_backward: out of memory");
    }
    for (size_t k = 0; k < t->n; k++) p->due[k] = p->next[k] = first[k] = -1;
    for (long k = ky; k >= 0; k--) {
        const rec *r = &t->recs[k];
        if (r->id == LX_PRIM_COUNT) continue;
        for (int i = 0; i < r->nin; i++)
            if (r->in_rec[i] >= 0 && t->recs[r->in_rec[i]].id == LX_PRIM_COUNT) first[r->in_rec[i]] = k;
    }
    for (size_t l = 0; l < t->n; l++) {
        if (t->recs[l].id != LX_PRIM_COUNT) continue;
        long *head = first[l] >= 0 ? &p->due[first[l]] : &p->nodue;
        p->next[l] = *head;
        *head = (long)l;
    }
    free(first);
    return LX_OK;
}

/* Report the leaves chained from *head (then empties the chain). */
static void ready_fire(const lx_tape *t, ready_plan *p, long *head) {
    for (long l = *head; l >= 0; l = p->next[l]) ready_fn(ready_user, t->recs[l].out, t->recs[l].ct);
    *head = -1;
}

lx_status lx_tape_backward(lx_tape *t, lx_array *y, int n, lx_array *const *xs, lx_array **grads) {
    for (int i = 0; grads && i < n; i++) grads[i] = NULL;
    if (!t || !y || (n > 0 && (!xs || !grads)))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "tape_backward: NULL tape, output or gradient list");
    lx_tape_stop(t);
    lx_status st = LX_OK;
    if (record_failed) {
        tape_clear(t);
        return lx_fail(LX_ERR_NO_MEMORY, "tape_backward: the tape ran out of memory while recording");
    }
    if (y->ndim != 0 || y->dtype != LX_F32) {
        char b[64];
        tape_clear(t);
        return lx_fail(LX_ERR_SHAPE,
                       "Gradient only defined for scalar-output functions. Output had shape: %s (%s)",
                       lx_shape_str(y->ndim, y->shape, b, sizeof b), lx_dtype_name(y->dtype));
    }
    long ky = map_get(t, y);
    size_t mark = lx_pool_open();
    if (ky >= 0) {
        lx_array *one = lx_scalar(1.0f);
        st = one ? accumulate(&t->recs[ky], one) : lx_last_status();
    }
    ready_plan plan = {.nodue = -1};
    if (ready_fn && st == LX_OK) st = ready_plan_build(t, ky, &plan);
    /* Watched leaves keep their cotangents until the end; op records are freed as they go. */
    for (long k = ky; st == LX_OK && k >= 0; k--) {
        if (plan.due && k + 1 <= ky) ready_fire(t, &plan, &plan.due[k + 1]); /* record k+1 was the last to add */
        rec *r = &t->recs[k];
        if (r->id == LX_PRIM_COUNT) continue;
        if (!r->ct) {
            rec_clear(r);
            continue;
        }
        const lx_prim_def *def = lx_prim_get(r->id);
        size_t m = lx_pool_open();
        lx_array *stack_ct[8], **in_ct = r->nin <= 8 ? stack_ct : calloc((size_t)r->nin, sizeof *in_ct);
        bool stack_w[8], *wants = r->nin <= 8 ? stack_w : calloc((size_t)r->nin, sizeof *wants);
        if (!in_ct || !wants) {
            st = lx_fail(LX_ERR_NO_MEMORY, "tape_backward: out of memory");
        } else if (!def->vjp) {
            /* not differentiable (the tape only records float outputs, so this is a float
             * result of an op with no rule): its inputs get no gradient through it */
        } else {
            for (int i = 0; i < r->nin; i++) in_ct[i] = NULL, wants[i] = r->in_rec[i] >= 0;
            st = def->vjp(r->params, r->nin, r->in, r->out, r->ct, wants, in_ct);
            if (st != LX_OK) lx_fail_context(st, "tape_backward: %s: ", def->name);
            for (int i = 0; st == LX_OK && i < r->nin; i++)
                if (in_ct[i] && r->in_rec[i] >= 0) st = accumulate(&t->recs[r->in_rec[i]], in_ct[i]);
        }
        if (in_ct && in_ct != stack_ct) free(in_ct);
        if (wants && wants != stack_w) free(wants);
        lx_pool_close(m);
        rec_clear(r);
    }
    if (plan.due && st == LX_OK) {
        ready_fire(t, &plan, &plan.due[0]);
        ready_fire(t, &plan, &plan.nodue);
    }
    ready_plan_free(&plan);
    for (int i = 0; st == LX_OK && i < n; i++) {
        long k = map_get(t, xs[i]);
        rec *r = k >= 0 ? &t->recs[k] : NULL;
        if (r && r->ct) {
            grads[i] = lx_retain(r->ct);
        } else if (xs[i]) {
            grads[i] = lx_array_new(xs[i]->dtype, xs[i]->ndim, xs[i]->shape);
            if (!grads[i]) st = lx_last_status();
        }
    }
    lx_pool_close(mark);
    if (st != LX_OK)
        for (int i = 0; i < n; i++) {
            lx_release(grads[i]);
            grads[i] = NULL;
        }
    tape_clear(t);
    return st;
}

static _Thread_local bool debug_nans;
void lx_set_debug_nans(bool on) { debug_nans = on; }
bool lx_debug_nans(void) { return debug_nans; }

int64_t lx_first_nonfinite_(const lx_array *a) {
    if (!a || a->dtype != LX_F32 || lx_is_abstract(a)) return -1;
    for (int64_t i = 0; i < a->size; i++)
        if (!isfinite(lx_f32(a)[i])) return i;
    return -1;
}

lx_array *lx_stop_gradient(lx_array *x) { return lx_bind(LX_PRIM_STOP_GRADIENT, NULL, 1, &x); }

lx_status lx_value_and_grad(lx_loss_fn fn, void *user, int n, lx_array *const *xs, lx_array **value,
                            lx_array **grads) {
    if (value) *value = NULL;
    for (int i = 0; grads && i < n; i++) grads[i] = NULL;
    if (!fn || n < 0 || (n > 0 && (!xs || !grads)))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "value_and_grad: NULL function, inputs or gradient list");
    for (int i = 0; i < n; i++) {
        if (!xs[i]) return lx_fail(LX_ERR_FAILED_INPUT, "value_and_grad: input %d is NULL", i);
        if (!float_dtype(xs[i]->dtype)) {
            char b[64];
            return lx_fail(LX_ERR_DTYPE,
                           "value_and_grad: grad requires real-valued inputs (input dtype that is a sub-dtype of "
                           "np.inexact), but got %s for input %d",
                           lx_array_sig(xs[i], b, sizeof b), i);
        }
    }
    lx_tape *t = NULL;
    LX_TRY(lx_tape_new(&t));
    lx_status st = LX_OK;
    for (int i = 0; st == LX_OK && i < n; i++) st = lx_tape_watch(t, xs[i]);
    size_t mark = lx_pool_open();
    lx_array *loss = NULL;
    if (st == LX_OK) st = fn(n, xs, user, &loss);
    lx_tape_stop(t);
    if (st == LX_OK && !loss) st = lx_fail(LX_ERR_INVALID_ARGUMENT, "value_and_grad: the function returned no loss");
    if (st == LX_OK) st = lx_tape_backward(t, loss, n, xs, grads);
    for (int i = -1; st == LX_OK && debug_nans && i < n; i++) {
        int64_t e = lx_first_nonfinite_(i < 0 ? loss : grads[i]);
        if (e < 0) continue;
        float bad = lx_f32(i < 0 ? loss : grads[i])[e];
        st = i < 0 ? lx_fail(LX_ERR_INVALID_ARGUMENT, "value_and_grad: the loss is %g (debug_nans is on)", (double)bad)
                   : lx_fail(LX_ERR_INVALID_ARGUMENT,
                             "value_and_grad: %g in the gradient of input %d at element %lld (debug_nans is on)",
                             (double)bad, i, (long long)e);
        for (int k = 0; k < n; k++) {
            lx_release(grads[k]);
            grads[k] = NULL;
        }
    }
    if (st == LX_OK && value) *value = lx_retain(loss);
    lx_pool_close(mark);
    lx_tape_free(t);
    return st;
}
