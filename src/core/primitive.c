/* Observers of primitive ops: a small thread-local table. */
#include "linnx/primitive.h"

typedef struct {
    lx_prim_observer fn;
    void *user;
    int id;
} observer;

static _Thread_local observer observers[LX_MAX_OBSERVERS];
static _Thread_local int nobservers;
static _Thread_local int next_id = 1;

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
