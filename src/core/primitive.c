/* Primitives: observers of recorded ops and substituters that run before the contractions. The
 * table itself lives beside the ops (src/ops/prim_table.c). */
#include <string.h>

#include "linnx/primitive.h"

typedef struct {
    lx_prim_observer fn;
    void *user;
    int id;
} observer;

typedef struct {
    lx_prim_substitute_fn fn;
    void *user;
    int id;
} substituter;

#define LX_MAX_SUBSTITUTERS 8

static _Thread_local observer observers[LX_MAX_OBSERVERS];
static _Thread_local int nobservers;
static _Thread_local int next_id = 1;
static _Thread_local substituter substituters[LX_MAX_SUBSTITUTERS];
static _Thread_local int nsubstituters, next_sub_id = 1;

lx_status lx_prim_observe(lx_prim_observer fn, void *user, int *handle) {
    if (!fn) return lx_fail(LX_ERR_INVALID_ARGUMENT, "prim_observe: observer is NULL");
    if (nobservers == LX_MAX_OBSERVERS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "prim_observe: at most %d observers", LX_MAX_OBSERVERS);
    observers[nobservers] = (observer){fn, user, next_id};
    if (handle) *handle = next_id;
    next_id++;
    nobservers++;
    return LX_OK;
}

void lx_prim_unobserve(int handle) {
    for (int i = 0; i < nobservers; i++) {
        if (observers[i].id != handle) continue;
        for (int k = i + 1; k < nobservers; k++) observers[k - 1] = observers[k];
        nobservers--;
        return;
    }
}

bool lx_prim_observed(void) { return nobservers > 0; }

void lx_prim_emit(const lx_prim_event *ev) {
    for (int i = nobservers - 1; i >= 0; i--) observers[i].fn(ev, observers[i].user);
}

lx_status lx_prim_substitute_add(lx_prim_substitute_fn fn, void *user, int *handle) {
    if (!fn) return lx_fail(LX_ERR_INVALID_ARGUMENT, "prim_substitute_add: substituter is NULL");
    if (nsubstituters == LX_MAX_SUBSTITUTERS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "prim_substitute_add: at most %d substituters", LX_MAX_SUBSTITUTERS);
    substituters[nsubstituters++] = (substituter){fn, user, next_sub_id};
    if (handle) *handle = next_sub_id;
    next_sub_id++;
    return LX_OK;
}

void lx_prim_substitute_remove(int handle) {
    for (int i = 0; i < nsubstituters; i++) {
        if (substituters[i].id != handle) continue;
        for (int k = i + 1; k < nsubstituters; k++) substituters[k - 1] = substituters[k];
        nsubstituters--;
        return;
    }
}

/* Internal (op_internal.h): run the substituters before a contraction computes. */
static _Thread_local int substituting;

lx_array *lx_prim_substitute_run(lx_prim_id id, const void *params, int nin, lx_array **inputs, bool *failed) {
    *failed = false;
    if (nsubstituters == 0 || substituting) return NULL;
    substituting = 1;
    lx_array *r = NULL;
    for (int i = 0; i < nsubstituters && !r && !*failed; i++) {
        uint64_t gen = lx_error_generation();
        r = substituters[i].fn(id, params, nin, inputs, substituters[i].user);
        /* NULL after recording a failure it left pending: the substituter failed */
        *failed = !r && lx_error_generation() != gen && lx_error_pending();
    }
    substituting = 0;
    return r;
}

bool lx_prim_substituting(void) { return nsubstituters > 0 && !substituting; }
