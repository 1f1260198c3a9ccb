/* Reverse-mode autodiff: the tape (a Wengert list over the primitive table) and value_and_grad
 * over arrays. Linen and NNX front ends are in src/core/autodiff_trees.c.
 *
 * A record is one primitive application whose output depends on a watched array: its id, a copy of
 * its typed params, its inputs and its output (retained, so no address is reused while the tape
 * lives). Arrays are found by address in an open-addressing map. The backward pass walks the
 * records newest first, so every consumer of a value is processed before its producer and the
 * value's cotangent is complete when its producer's VJP runs; each record's arrays are released
 * right after its VJP.
 *
 * Allocation-free when warm (issue 14 §5): a record's input list, producer list and params copy
 * come from the tape's arena (chunks kept across passes, reset when the tape is cleared), and
 * lx_tape_free keeps one cleared tape per thread - its record array, address map and arena at the
 * sizes the last pass needed - for the next lx_tape_new. So a training step that records the
 * same ops as the step before allocates nothing for its tape; a thread's spare tape is freed when
 * the thread exits. (Sanitizer builds keep no spare tape, so LeakSanitizer sees every block.) */
#include <math.h>
#include <pthread.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/intercept.h"
#include "linnx/ops.h"
#include "broadcast.h"
#include "op_internal.h"
#include "team.h"
#include "../core/frame_internal.h"
#include "../core/status_internal.h"

typedef struct rec {
    lx_prim_id id; /* LX_PRIM_COUNT for a watched leaf */
    int nin;
    void *params;
    lx_array **in;
    int *in_rec; /* the record producing each input, -1 for constants */
    lx_array *out;
    lx_array *ct; /* the accumulated cotangent of out (owned) */
    bool ct_private; /* ct is a buffer of this record's alone: slices may add into it in place */
    struct remat_entry *comp; /* a checkpointed call's entry (remat below), else NULL */
    int comp_out;             /* which output of it this record is; -1 for the entry itself */
    bool in_arena;            /* in, in_rec and params live in the tape's arena (else malloc'd) */
} rec;

/* The arena: a list of chunks, bump-allocated; reset keeps them all for the next pass. */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap, used;
    alignas(max_align_t) unsigned char data[];
} arena_chunk;

struct lx_tape {
    rec *recs;
    size_t n, cap;
    /* address -> record index + 1 (0: empty slot) */
    const lx_array **keys;
    size_t *vals;
    size_t mcap, mlen;
    bool stopped;
    arena_chunk *chunks, *cur; /* the arena (see the top comment); cur: the chunk in use */
};

#if defined(__SANITIZE_ADDRESS__)
#define SPARE_TAPE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPARE_TAPE 0
#endif
#endif
#ifndef SPARE_TAPE
#define SPARE_TAPE 1
#endif
static _Thread_local struct lx_tape *spare; /* a cleared tape kept by lx_tape_free */
static pthread_key_t spare_key; /* its destructor frees the spare tape of an exiting thread */
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void *arena_alloc(struct lx_tape *t, size_t n) {
    n = (n + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t);
    for (;;) {
        arena_chunk *c = t->cur;
        if (c && c->used + n <= c->cap) {
            void *p = c->data + c->used;
            c->used += n;
            return p;
        }
        if (c && c->next) { /* a chunk an earlier pass made: reused from its start */
            t->cur = c->next;
            t->cur->used = 0;
            continue;
        }
        size_t cap = n > 8192 ? n : 8192;
        arena_chunk *nc = malloc(sizeof *nc + cap);
        if (!nc) return NULL;
        nc->next = NULL;
        nc->cap = cap;
        nc->used = 0;
        if (c) c->next = nc;
        else t->chunks = nc;
        t->cur = nc;
    }
}

static void arena_reset(struct lx_tape *t) {
    t->cur = t->chunks;
    if (t->cur) t->cur->used = 0;
}

static void arena_free(struct lx_tape *t) {
    while (t->chunks) {
        arena_chunk *c = t->chunks;
        t->chunks = c->next;
        free(c);
    }
    t->cur = NULL;
}

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

static void remat_entry_release(struct remat_entry *e);

static void rec_clear(rec *r) {
    remat_entry_release(r->comp);
    for (int i = 0; r->in && i < r->nin; i++) lx_release(r->in[i]); /* in is NULL when its calloc failed */
    if (!r->in_arena) {
        free(r->in);
        free(r->in_rec);
        free(r->params);
    }
    lx_release(r->out);
    lx_release(r->ct);
    memset(r, 0, sizeof *r);
}

/* Empty the tape, keeping its record array, map and arena for the next pass. */
static void tape_clear(lx_tape *t) {
    for (size_t i = 0; i < t->n; i++) rec_clear(&t->recs[i]);
    t->n = 0;
    if (t->mlen) memset(t->keys, 0, t->mcap * sizeof *t->keys);
    t->mlen = 0;
    arena_reset(t);
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
    size_t nn = (size_t)(nin > 0 ? nin : 1);
    r->in_arena = true;
    r->in = arena_alloc(t, nn * sizeof *r->in);
    r->in_rec = arena_alloc(t, nn * sizeof *r->in_rec);
    if (r->in) memset(r->in, 0, nn * sizeof *r->in);
    if (def->params_size && params) {
        r->params = arena_alloc(t, def->params_size);
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

/* An empty tape: the thread's spare one, else a new one; NULL when out of memory. */
static lx_tape *tape_acquire(void) {
    lx_tape *t = spare;
    if (t) { /* the thread's exit no longer frees it: its user does */
        spare = NULL;
        (void)pthread_setspecific(spare_key, NULL);
    } else if (!(t = calloc(1, sizeof *t))) {
        return NULL;
    }
    t->stopped = false;
    return t;
}

lx_status lx_tape_new(lx_tape **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tape_new: out is NULL");
    *out = NULL;
    if (active)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "tape_new: a tape is already active on this thread (higher-order gradients are not supported)");
    lx_tape *t = tape_acquire();
    if (!t) return lx_fail(LX_ERR_NO_MEMORY, "tape_new: out of memory");
    active = t;
    lx_tape_recording_ = t;
    record_failed = false;
    *out = t;
    return LX_OK;
}

lx_status lx_tape_watch(lx_tape *t, lx_array *x) {
    if (!t) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tape_watch: tape is NULL");
    if (!x) return lx_null_input("tape_watch: array is NULL");
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

static void tape_destroy(lx_tape *t) { /* t is cleared */
    free(t->recs);
    free(t->keys);
    free(t->vals);
    arena_free(t);
    free(t);
}

static void spare_exit(void *t) {
    spare = NULL;
    tape_destroy(t);
}
static void spare_key_new(void) { (void)lx_tls_key_create(&spare_key, spare_exit); }

void lx_tape_free(lx_tape *t) {
    if (!t) return;
    if (active == t) active = NULL;
    if (lx_tape_recording_ == t) lx_tape_recording_ = NULL;
    tape_clear(t);
    if (SPARE_TAPE && !spare) {
        pthread_once(&spare_once, spare_key_new);
        if (pthread_setspecific(spare_key, t) == 0) { /* (else no spare: nothing would free it) */
            spare = t;
            return;
        }
    }
    tape_destroy(t);
}

bool lx_tape_active(void) { return lx_tape_recording_ != NULL; }

static _Thread_local int remat_depth; /* > 0 while a remat's forward is recomputed on this thread */
bool lx_remat_recomputing(void) { return remat_depth > 0; }

/* Add `g` (pool-owned or borrowed) into record k's cotangent. */
static lx_status accumulate(rec *r, lx_array *g) {
    if (!lx_same_shape(g, r->out) || g->dtype != r->out->dtype) {
        char b1[64], b2[64];
        return lx_fail(LX_ERR_INTERNAL, "tape_backward: the cotangent %s of a %s does not match its value %s",
                       lx_array_sig(g, b1, sizeof b1),
                       r->comp ? "checkpointed call" : r->id < LX_PRIM_COUNT ? lx_prim_get(r->id)->name : "leaf",
                       lx_array_sig(r->out, b2, sizeof b2));
    }
    r->ct_private = false;
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

/* A slice's cotangent added straight into its input's cotangent at the slice's place. The
 * generic rule pads the slice's cotangent to the input's full shape and accumulate() adds that:
 * for a scan, where each of L layers reads slice i of a stacked parameter, that is L full-size
 * zero arrays and L full-size adds per parameter (quadratic in L). Here the first slice makes
 * one private zero buffer and every slice adds into its own window of it (linear). The sums are
 * the ones the generic rule makes (0 + g, then the other windows' adds touch other elements). */
static void add_window(float *restrict dst, const int64_t *ds, const float *restrict src, const int64_t *ss,
                       const int64_t *len, int nd) {
    if (nd == 1) {
        if (ds[0] == 1 && ss[0] == 1) /* the usual case: a contiguous row, vectorised */
            for (int64_t i = 0; i < len[0]; i++) dst[i] += src[i];
        else if (ds[0] == 1)
            for (int64_t i = 0; i < len[0]; i++) dst[i] += src[i * ss[0]];
        else
            for (int64_t i = 0; i < len[0]; i++) dst[i * ds[0]] += src[i * ss[0]];
        return;
    }
    for (int64_t i = 0; i < len[0]; i++) add_window(dst + i * ds[0], ds + 1, src + i * ss[0], ss + 1, len + 1, nd - 1);
}

/* The record a slice record adds into directly, or NULL when the generic rule applies. */
static rec *slice_target(lx_tape *t, const rec *r) {
    if (r->id != LX_PRIM_SLICE || r->nin != 1 || !r->params || r->in_rec[0] < 0 || !r->ct || r->ct->dtype != LX_F32 ||
        !lx_same_shape(r->ct, r->out))
        return NULL;
    rec *target = &t->recs[r->in_rec[0]];
    const lx_array *x = target->out;
    if (!x || x->dtype != LX_F32 || x->ndim == 0 || x->ndim != r->ct->ndim || (target->ct && !lx_same_shape(target->ct, x)))
        return NULL;
    return target;
}

static lx_status slice_accumulate(rec *target, const rec *r) {
    const lx_slice_params *p = r->params;
    lx_array *x = target->out;
    if (!target->ct || !target->ct_private) {
        lx_array *buf = target->ct ? lx_array_copy(target->ct) : lx_array_new(LX_F32, x->ndim, x->shape);
        if (!buf) return lx_last_status();
        lx_release(target->ct);
        target->ct = buf;
        target->ct_private = true;
    }
    if (!r->ct->size) return LX_OK;
    int64_t xs[LX_MAX_DIMS], ds[LX_MAX_DIMS], ss[LX_MAX_DIMS], off = 0;
    lx_contiguous_strides(x->ndim, x->shape, xs);
    lx_contiguous_strides(r->ct->ndim, r->ct->shape, ss);
    for (int i = 0; i < x->ndim; i++) {
        off += p->start[i] * xs[i];
        ds[i] = xs[i] * p->step[i];
    }
    /* merge axes that are contiguous in both (a layer's slice is usually one block) and drop
     * axes of length 1, so the inner loop runs over whole rows, not the last axis alone */
    int64_t md[LX_MAX_DIMS], ms[LX_MAX_DIMS], ml[LX_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (p->len[i] == 1) continue;
        if (nd > 0 && md[nd - 1] == ds[i] * p->len[i] && ms[nd - 1] == ss[i] * p->len[i]) {
            md[nd - 1] = ds[i], ms[nd - 1] = ss[i], ml[nd - 1] *= p->len[i];
            continue;
        }
        md[nd] = ds[i], ms[nd] = ss[i], ml[nd] = p->len[i];
        nd++;
    }
    if (nd == 0) md[0] = ms[0] = ml[0] = 1, nd = 1;
    add_window(lx_f32(target->ct) + off, md, lx_f32(r->ct), ms, ml, nd);
    return LX_OK;
}

static lx_status remat_backward_step(lx_tape *t, rec *r);

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
    if (y->ndim != 0 || y->dtype != LX_F32) { /* JAX's TypeErrors; status.h's SHAPE or DTYPE */
        char b[64];
        tape_clear(t);
        if (y->ndim != 0)
            return lx_fail(LX_ERR_SHAPE, "Gradient only defined for scalar-output functions. Output had shape: %s (%s)",
                           lx_shape_str(y->ndim, y->shape, b, sizeof b), lx_dtype_name(y->dtype));
        return lx_fail(LX_ERR_DTYPE, "grad requires real-valued outputs (float32 here), but got %s",
                       lx_dtype_name(y->dtype));
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
        if (r->comp) { /* a checkpointed call (remat): its own step */
            st = remat_backward_step(t, r);
            rec_clear(r);
            continue;
        }
        if (!r->ct) {
            rec_clear(r);
            continue;
        }
        rec *window_of = slice_target(t, r);
        if (window_of) {
            st = slice_accumulate(window_of, r);
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
        if (!xs[i]) return lx_null_input("value_and_grad: input %d is NULL", i);
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

/* ---- remat (jax.checkpoint): one tape entry for a whole call ----
 *
 * Forward: the outer tape pauses while the function runs; an observer notes every array the
 * function's ops read that the outer tape knows (the entry's inputs: parameters, the incoming
 * activation) and, for dots_saveable, keeps each contraction's output. Nothing the function
 * computes inside is retained, so its activations are freed when its pool closes. The tape then
 * gets the entry (the inputs, retained) and one record per float output array (what later ops
 * read; their cotangents accumulate there as usual).
 *
 * Backward (remat_backward_step, reached from the tape loop at the entry): the function runs
 * again under a fresh inner tape that watches the inputs (dots_saveable: a substituter hands the
 * kept contraction outputs back in order instead of recomputing them, recorded as the same
 * primitive so their VJPs still run), sum(out_j * ct_j) is differentiated (its gradient is ct_j
 * exactly, so the result equals the unrematerialised pass bit for bit), and the inputs'
 * cotangents are added to the outer records. */
/* The id of a remat record: past the table and past the leaf marker (LX_PRIM_COUNT). */
#define REC_REMAT ((lx_prim_id)(LX_PRIM_COUNT + 1))

typedef struct saved_dot {
    lx_prim_id id;
    void *params;
    int64_t ashape[LX_MAX_DIMS], bshape[LX_MAX_DIMS];
    int andim, bndim;
    lx_array *out;
} saved_dot;

typedef struct remat_entry {
    int refs;
    lx_remat_fn fn;
    void *user;
    void (*user_free)(void *);
    lx_remat_policy policy;
    int nout;
    lx_array **out_ct; /* per output: its cotangent, gathered from the output records */
    int64_t (*out_shape)[LX_MAX_DIMS + 1]; /* ndim, then the shape: the recompute must match */
    saved_dot *dots;
    int ndots, capdots;
    char *frame_path; /* the module-frame path at the call (intercept.h), NULL for none */
} remat_entry;

static void remat_entry_release(remat_entry *e) {
    if (!e || --e->refs > 0) return;
    for (int j = 0; j < e->nout; j++) lx_release(e->out_ct[j]);
    free(e->out_ct);
    free(e->out_shape);
    for (int i = 0; i < e->ndots; i++) {
        lx_release(e->dots[i].out);
        free(e->dots[i].params);
    }
    free(e->dots);
    free(e->frame_path);
    if (e->user_free) e->user_free(e->user);
    free(e);
}

typedef struct remat_watch {
    lx_tape *outer;
    remat_entry *e;
    lx_array **in;
    int nin, capin;
    bool failed;
} remat_watch;

static bool is_dot(lx_prim_id id) { return id == LX_PRIM_MATMUL || id == LX_PRIM_DOT_GENERAL || id == LX_PRIM_CONV_GENERAL; }

static void remat_observe(const lx_prim_event *ev, void *user) {
    remat_watch *w = user;
    for (int i = 0; i < ev->ninputs; i++) {
        lx_array *a = ev->inputs[i];
        if (!a || map_get(w->outer, a) < 0) continue;
        bool seen = false;
        for (int k = 0; k < w->nin && !seen; k++) seen = w->in[k] == a;
        if (seen) continue;
        if (w->nin == w->capin) {
            int nc = w->capin ? 2 * w->capin : 16;
            lx_array **n = realloc(w->in, sizeof *n * (size_t)nc);
            if (!n) {
                w->failed = true;
                return;
            }
            w->in = n, w->capin = nc;
        }
        w->in[w->nin++] = a;
    }
    remat_entry *e = w->e;
    if (e->policy != LX_REMAT_DOTS_SAVEABLE || !is_dot(ev->id) || ev->ninputs != 2 || !ev->output ||
        !ev->inputs[0] || !ev->inputs[1])
        return;
    if (e->ndots == e->capdots) {
        int nc = e->capdots ? 2 * e->capdots : 8;
        saved_dot *n = realloc(e->dots, sizeof *n * (size_t)nc);
        if (!n) {
            w->failed = true;
            return;
        }
        e->dots = n, e->capdots = nc;
    }
    saved_dot *d = &e->dots[e->ndots];
    memset(d, 0, sizeof *d);
    size_t ps = lx_prim_get(ev->id)->params_size;
    if (ps && ev->params) {
        d->params = malloc(ps);
        if (!d->params) {
            w->failed = true;
            return;
        }
        memcpy(d->params, ev->params, ps);
    }
    d->id = ev->id;
    d->andim = ev->inputs[0]->ndim, d->bndim = ev->inputs[1]->ndim;
    memcpy(d->ashape, ev->inputs[0]->shape, sizeof(int64_t) * (size_t)d->andim);
    memcpy(d->bshape, ev->inputs[1]->shape, sizeof(int64_t) * (size_t)d->bndim);
    d->out = lx_retain(ev->output);
    e->ndots++;
}

/* The float arrays of a result (an array, or the array leaves of a tuple tree), in order. */
static int value_arrays(const lx_value *v, lx_array **out, int cap, int n) {
    if (v->kind == LX_V_ARRAY) {
        if (!v->u.array || !float_dtype(v->u.array->dtype)) return n;
        if (out && n < cap) out[n] = v->u.array;
        return n + 1;
    }
    if (v->kind == LX_V_TREE)
        for (size_t i = 0; i < lx_tree_len(v->u.tree); i++) n = value_arrays(lx_tree_at(v->u.tree, i), out, cap, n);
    return n;
}

/* Add the entry and its output records to the outer tape. */
static lx_status remat_record(lx_tape *t, remat_entry *e, const remat_watch *w, const lx_value *out) {
    int nout = value_arrays(out, NULL, 0, 0);
    lx_array *outs_stack[8];
    lx_array **outs = nout <= 8 ? outs_stack : malloc(sizeof *outs * (size_t)nout);
    e->out_ct = calloc((size_t)nout + 1, sizeof *e->out_ct);
    e->out_shape = calloc((size_t)nout + 1, sizeof *e->out_shape);
    if (!outs || !e->out_ct || !e->out_shape) {
        if (outs != outs_stack) free(outs);
        return lx_fail(LX_ERR_NO_MEMORY, "remat: out of memory");
    }
    value_arrays(out, outs, nout, 0);
    e->nout = nout;
    for (int j = 0; j < nout; j++) {
        e->out_shape[j][0] = outs[j]->ndim;
        memcpy(&e->out_shape[j][1], outs[j]->shape, sizeof(int64_t) * (size_t)outs[j]->ndim);
    }
    long k = tape_push(t);
    if (k < 0) {
        if (outs != outs_stack) free(outs);
        return lx_fail(LX_ERR_NO_MEMORY, "remat: out of memory");
    }
    rec *r = &t->recs[k];
    r->id = REC_REMAT; /* comp routes the record */
    r->comp = e;
    r->comp_out = -1;
    e->refs++;
    r->nin = w->nin;
    r->in_arena = true; /* like every other record's */
    r->in = arena_alloc(t, sizeof *r->in * (size_t)w->nin);
    r->in_rec = arena_alloc(t, sizeof *r->in_rec * (size_t)w->nin);
    if (r->in) memset(r->in, 0, sizeof *r->in * (size_t)w->nin);
    lx_status st = r->in && r->in_rec ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "remat: out of memory");
    for (int i = 0; st == LX_OK && i < w->nin; i++) {
        r->in[i] = lx_retain(w->in[i]);
        r->in_rec[i] = (int)map_get(t, w->in[i]);
    }
    for (int j = 0; st == LX_OK && j < nout; j++) {
        if (map_get(t, outs[j]) >= 0) continue; /* an input handed back: already on the tape */
        long q = tape_push(t);
        if (q < 0) {
            st = lx_fail(LX_ERR_NO_MEMORY, "remat: out of memory");
            break;
        }
        rec *o = &t->recs[q];
        o->id = REC_REMAT;
        o->comp = e;
        o->comp_out = j;
        e->refs++;
        o->out = lx_retain(outs[j]);
        if (!map_put(t, outs[j], (size_t)q)) st = lx_fail(LX_ERR_NO_MEMORY, "remat: out of memory");
    }
    if (outs != outs_stack) free(outs);
    if (st != LX_OK) record_failed = true;
    return st;
}

lx_status lx_remat_call(lx_remat_fn fn, void *user, void (*user_free)(void *), lx_remat_policy policy, lx_value *out) {
    if (out) *out = lx_none();
    if (!fn || !out) {
        if (user_free) user_free(user);
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "remat: NULL function or output");
    }
    if (policy != LX_REMAT_NOTHING_SAVEABLE && policy != LX_REMAT_DOTS_SAVEABLE) {
        if (user_free) user_free(user);
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "remat: unknown policy %d", (int)policy);
    }
    lx_tape *t = lx_tape_recording_;
    if (!t) { /* nothing to differentiate: an ordinary call */
        lx_status st = fn(user, false, out);
        if (user_free) user_free(user);
        return st;
    }
    remat_entry *e = calloc(1, sizeof *e);
    if (!e) {
        if (user_free) user_free(user);
        return lx_fail(LX_ERR_NO_MEMORY, "remat: out of memory");
    }
    e->refs = 1;
    e->fn = fn, e->user = user, e->user_free = user_free, e->policy = policy;
    remat_watch w = {t, e, NULL, 0, 0, false};
    int handle = 0;
    /* the path the recomputation runs under: out of memory resolving it fails the call (a
     * recomputation at the root would find other quantization rules than the forward) */
    const char *fp = NULL;
    lx_status st = LX_OK;
    if (lx_frame_path_(&fp) != LX_OK || (*fp && !(e->frame_path = lx_strdup(fp))))
        st = lx_fail(LX_ERR_NO_MEMORY, "remat: out of memory for the module path");
    if (st == LX_OK) st = lx_prim_observe(remat_observe, &w, &handle);
    if (st == LX_OK) {
        lx_tape_recording_ = NULL; /* paused: the function's ops are not recorded */
        size_t mark = lx_pool_open();
        st = fn(user, false, out);
        lx_pool_close(mark); /* the function's intermediates go now; *out holds its results */
        lx_tape_recording_ = t;
        lx_prim_unobserve(handle);
    }
    if (st == LX_OK && w.failed) st = lx_fail(LX_ERR_NO_MEMORY, "remat: out of memory");
    if (st == LX_OK && w.nin > 0) st = remat_record(t, e, &w, out);
    if (st != LX_OK) lx_value_free(out);
    free(w.in);
    remat_entry_release(e);
    return st;
}

/* dots_saveable in the recompute: the kept contraction outputs, in the forward's order. */
typedef struct replay {
    remat_entry *e;
    int next;
    bool off;
} replay;

static lx_array *remat_replay(lx_prim_id id, const void *params, int nin, lx_array **inputs, void *user) {
    (void)params;
    replay *rp = user;
    if (rp->off || !is_dot(id) || nin != 2) return NULL;
    if (rp->next >= rp->e->ndots) {
        rp->off = true;
        return NULL;
    }
    saved_dot *d = &rp->e->dots[rp->next];
    if (d->id != id || !inputs[0] || !inputs[1] || !lx_shape_eq(inputs[0], d->andim, d->ashape) ||
        !lx_shape_eq(inputs[1], d->bndim, d->bshape)) {
        rp->off = true; /* the recompute took another path: compute from here on */
        return NULL;
    }
    rp->next++;
    lx_array *o = lx_autorelease(lx_retain(d->out));
    lx_prim_record(id, d->params, 2, inputs, o, 0, NULL);
    return o;
}

static lx_status remat_backward_step(lx_tape *t, rec *r) {
    remat_entry *e = r->comp;
    if (r->comp_out >= 0) { /* an output: hand its cotangent to the entry */
        if (r->ct) {
            lx_release(e->out_ct[r->comp_out]);
            e->out_ct[r->comp_out] = lx_retain(r->ct);
        }
        return LX_OK;
    }
    bool any_ct = false, any_in = false;
    for (int j = 0; j < e->nout; j++) any_ct |= e->out_ct[j] != NULL;
    for (int i = 0; i < r->nin; i++) any_in |= r->in_rec[i] >= 0;
    if (!any_ct || !any_in) return LX_OK;
    /* a fresh inner tape, this thread's tape while the function runs again */
    lx_tape *outer_active = active, *outer_recording = lx_tape_recording_;
    bool outer_failed = record_failed;
    lx_array **grads = calloc((size_t)r->nin + 1, sizeof *grads);
    lx_array **outs = calloc((size_t)e->nout + 1, sizeof *outs);
    lx_tape *in = grads && outs ? tape_acquire() : NULL; /* (the spare: the outer tape is not it) */
    if (!in) {
        free(grads);
        free(outs);
        return lx_fail(LX_ERR_NO_MEMORY, "remat: out of memory");
    }
    active = in;
    lx_tape_recording_ = in;
    record_failed = false;
    lx_status st = LX_OK;
    for (int i = 0; st == LX_OK && i < r->nin; i++)
        if (r->in_rec[i] >= 0) st = lx_tape_watch(in, r->in[i]);
    replay rp = {e, 0, false};
    int handle = 0;
    if (st == LX_OK && e->policy == LX_REMAT_DOTS_SAVEABLE && e->ndots > 0)
        st = lx_prim_substitute_add(remat_replay, &rp, &handle);
    size_t mark = lx_pool_open();
    lx_value o = lx_none();
    /* the recomputation runs after the call returned: its ops get the module path the forward's
     * had (one frame holding the whole path) */
    bool framed = st == LX_OK && e->frame_path;
    if (framed) st = lx_frame_push(LX_FRAME_LINEN, e->frame_path, NULL, NULL);
    framed = framed && st == LX_OK;
    if (st == LX_OK) {
        remat_depth++;
        st = e->fn(e->user, true, &o);
        remat_depth--;
    }
    if (framed) lx_frame_pop();
    if (handle) lx_prim_substitute_remove(handle);
    int n = st == LX_OK ? value_arrays(&o, outs, e->nout, 0) : 0;
    if (st == LX_OK && n != e->nout)
        st = lx_fail(LX_ERR_INTERNAL, "remat: the recomputation returned %d arrays, the forward %d", n, e->nout);
    for (int j = 0; st == LX_OK && j < n; j++)
        if (!lx_shape_eq(outs[j], (int)e->out_shape[j][0], &e->out_shape[j][1]))
            st = lx_fail(LX_ERR_INTERNAL, "remat: the recomputation's output %d has another shape than the forward's", j);
    /* y = sum_j sum(out_j * ct_j): dy/dout_j = ct_j exactly */
    lx_array *y = NULL;
    for (int j = 0; st == LX_OK && j < n; j++) {
        if (!e->out_ct[j]) continue;
        lx_array *term = lx_sum(lx_mul(outs[j], lx_stop_gradient(e->out_ct[j])), 0, NULL, false);
        y = y ? lx_add(y, term) : term;
        if (!y) st = lx_last_status();
    }
    lx_tape_stop(in);
    if (st == LX_OK && y) {
        /* the inner pass's cotangents are only this call's share of the outer ones: the thread's
         * "gradient is final" callback must not see them (the outer pass reports the sums) */
        lx_grad_ready_fn rf = ready_fn;
        void *ru = ready_user;
        ready_fn = NULL, ready_user = NULL;
        st = lx_tape_backward(in, y, r->nin, r->in, grads);
        ready_fn = rf, ready_user = ru;
    }
    lx_value_free(&o);
    lx_tape_free(in); /* clears `active` */
    active = outer_active;
    lx_tape_recording_ = outer_recording;
    record_failed = outer_failed;
    for (int i = 0; st == LX_OK && i < r->nin; i++)
        if (grads[i] && r->in_rec[i] >= 0) st = accumulate(&t->recs[r->in_rec[i]], grads[i]);
    for (int i = 0; i < r->nin; i++) lx_release(grads[i]);
    lx_pool_close(mark);
    free(grads);
    free(outs);
    return st;
}
