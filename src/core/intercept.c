/* Op interceptors: module frames and the path/role view of matmul-like primitives. */
#include "linnx/intercept.h"

#include <stdio.h>
#include <string.h>

#define MAX_FRAMES 64
#define MAX_INTERCEPTORS 8
#define NAME_CAP 64

typedef struct {
    lx_frame_kind kind;
    char name[NAME_CAP];
    const void *obj;
    lx_frame_param_fn is_param;
} frame;

typedef struct {
    lx_interceptor_fn fn;
    void *user;
    int id;
} interceptor;

static _Thread_local frame frames[MAX_FRAMES];
static _Thread_local int nframes, overflow; /* frames pushed past the cap are counted, not kept */
static _Thread_local interceptor interceptors[MAX_INTERCEPTORS];
static _Thread_local int ninterceptors, next_id = 1, observer_handle;

/* The primitives an interceptor sees: the contractions quantization rewrites. */
static bool intercepted_op(const char *op) {
    return strcmp(op, "matmul") == 0 || strcmp(op, "dot_general") == 0 || strcmp(op, "conv_general") == 0;
}

static void on_primitive(const lx_prim_event *ev, void *user) {
    (void)user;
    if (!intercepted_op(ev->op)) return;
    char path[1024];
    lx_frame_path(path, sizeof path);
    lx_operand_role roles[8] = {LX_OPERAND_ACTIVATION};
    const frame *top = nframes > 0 && !overflow ? &frames[nframes - 1] : NULL;
    int n = ev->ninputs < 8 ? ev->ninputs : 8;
    for (int i = 0; i < n; i++)
        roles[i] = top && top->is_param && ev->inputs[i] && top->is_param(top->obj, ev->inputs[i])
                       ? LX_OPERAND_PARAM
                       : LX_OPERAND_ACTIVATION;
    lx_intercept_event e = {path, ev->op, n, ev->inputs, roles, ev->output, ev->nattrs, ev->attrs};
    for (int i = 0; i < ninterceptors; i++) interceptors[i].fn(&e, interceptors[i].user);
}

lx_status lx_interceptor_add(lx_interceptor_fn fn, void *user, int *handle) {
    if (!fn) return lx_fail(LX_ERR_INVALID_ARGUMENT, "interceptor_add: interceptor is NULL");
    if (ninterceptors == MAX_INTERCEPTORS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "interceptor_add: at most %d interceptors", MAX_INTERCEPTORS);
    if (ninterceptors == 0) LX_TRY(lx_prim_observe(on_primitive, NULL, &observer_handle));
    interceptors[ninterceptors++] = (interceptor){fn, user, next_id};
    if (handle) *handle = next_id;
    next_id++;
    return LX_OK;
}

void lx_interceptor_remove(int handle) {
    for (int i = 0; i < ninterceptors; i++) {
        if (interceptors[i].id != handle) continue;
        for (int k = i + 1; k < ninterceptors; k++) interceptors[k - 1] = interceptors[k];
        if (--ninterceptors == 0) lx_prim_unobserve(observer_handle);
        return;
    }
}

bool lx_intercepting(void) { return ninterceptors > 0; }

lx_status lx_frame_push(lx_frame_kind kind, const char *name, const void *obj, lx_frame_param_fn is_param) {
    if (nframes == MAX_FRAMES) {
        overflow++;
        return LX_OK; /* paths deeper than the cap are cut, never an error for the model */
    }
    frame *f = &frames[nframes++];
    f->kind = kind;
    snprintf(f->name, sizeof f->name, "%s", name ? name : "");
    f->obj = obj;
    f->is_param = is_param;
    return LX_OK;
}

void lx_frame_pop(void) {
    if (overflow) overflow--;
    else if (nframes > 0) nframes--;
}

const void *lx_frame_top(lx_frame_kind *kind) {
    if (nframes == 0 || overflow) {
        if (kind) *kind = 0;
        return NULL;
    }
    if (kind) *kind = frames[nframes - 1].kind;
    return frames[nframes - 1].obj;
}

const char *lx_frame_path(char *buf, size_t cap) {
    size_t n = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < nframes; i++) {
        if (!frames[i].name[0]) continue;
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s", n ? "/" : "", frames[i].name);
    }
    return buf;
}
