/* Op interceptors: module frames and the path/role view of matmul-like primitives. */
#include "linnx/intercept.h"

#include <stdlib.h>
#include <string.h>

#define MAX_INTERCEPTORS 8

/* The frame stack and the path it spells, both grown on demand so no name and no depth is ever
 * cut: the path is kept joined ("decoder/layers_0/mlp") and each frame remembers the path's
 * length before it was pushed, so a pop is a truncation and an event's path is the buffer itself,
 * never a copy into something of fixed size. Both are freed when the stack empties (the end of the
 * outermost framed call), so an exiting thread leaves nothing behind. */
typedef struct {
    lx_frame_kind kind;
    size_t mark; /* path length before this frame's component */
    const void *obj;
    lx_frame_param_fn is_param;
} frame;

typedef struct {
    lx_interceptor_fn fn;
    void *user;
    int id;
} interceptor;

static _Thread_local frame *frames;
static _Thread_local int nframes, frames_cap;
static _Thread_local char *path;
static _Thread_local size_t path_len, path_cap;
static _Thread_local interceptor interceptors[MAX_INTERCEPTORS];
static _Thread_local int ninterceptors, next_id = 1, observer_handle;

/* The primitives an interceptor sees: the contractions quantization rewrites. */
static bool intercepted_op(const char *op) {
    return strcmp(op, "matmul") == 0 || strcmp(op, "dot_general") == 0 || strcmp(op, "conv_general") == 0 ||
           strcmp(op, "dot_product_attention_weights") == 0;
}

static void on_primitive(const lx_prim_event *ev, void *user) {
    (void)user;
    if (!intercepted_op(ev->op)) return;
    lx_operand_role roles[8] = {LX_OPERAND_ACTIVATION};
    const frame *top = nframes > 0 ? &frames[nframes - 1] : NULL;
    int n = ev->ninputs < 8 ? ev->ninputs : 8;
    for (int i = 0; i < n; i++)
        roles[i] = top && top->is_param && ev->inputs[i] && top->is_param(top->obj, ev->inputs[i])
                       ? LX_OPERAND_PARAM
                       : LX_OPERAND_ACTIVATION;
    /* The event owns a snapshot of the path: an interceptor may itself run modules, whose
     * frames can grow (realloc) or free the thread's path buffer during the callback. */
    const char *cur = lx_frame_current_path();
    size_t len = strlen(cur) + 1;
    char local[256], *path = len <= sizeof local ? local : malloc(len);
    if (!path) return; /* out of memory: the op itself is unaffected, the event is dropped */
    memcpy(path, cur, len);
    /* attention's q.k^T (with the softmax fused: the output is the weights) is Flax's first
     * einsum; weights.v follows as a dot_general (attention.c decomposes while intercepting) */
    bool qk = strcmp(ev->op, "dot_product_attention_weights") == 0;
    if (qk) n = 2;
    lx_intercept_event e = {path, qk ? "einsum" : ev->op, n, ev->inputs, roles, ev->output, ev->nattrs, ev->attrs};
    for (int i = 0; i < ninterceptors; i++) interceptors[i].fn(&e, interceptors[i].user);
    if (path != local) free(path);
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
    if (!name) name = "";
    size_t nlen = strlen(name), sep = nlen && path_len ? 1 : 0;
    /* Grow first, change nothing until both fit: a failed push leaves the stack as it was. */
    if (nframes == frames_cap) {
        int cap = frames_cap ? frames_cap * 2 : 16;
        frame *f = realloc(frames, (size_t)cap * sizeof *f);
        if (!f) return lx_fail(LX_ERR_NO_MEMORY, "frame_push: out of memory for module frame '%s'", name);
        frames = f;
        frames_cap = cap;
    }
    if (path_len + sep + nlen + 1 > path_cap) {
        size_t cap = path_cap ? path_cap : 128;
        while (cap < path_len + sep + nlen + 1) cap *= 2;
        char *p = realloc(path, cap);
        if (!p) return lx_fail(LX_ERR_NO_MEMORY, "frame_push: out of memory for module path '%s'", name);
        if (!path) p[0] = '\0';
        path = p;
        path_cap = cap;
    }
    frames[nframes++] = (frame){kind, path_len, obj, is_param};
    if (sep) path[path_len++] = '/';
    memcpy(path + path_len, name, nlen + 1);
    path_len += nlen;
    return LX_OK;
}

void lx_frame_pop(void) {
    if (nframes == 0) return;
    path_len = frames[--nframes].mark;
    path[path_len] = '\0';
    if (nframes == 0) { /* the outermost frame: give the buffers back */
        free(frames);
        free(path);
        frames = NULL;
        path = NULL;
        frames_cap = 0;
        path_cap = path_len = 0;
    }
}

const void *lx_frame_top(lx_frame_kind *kind) {
    if (nframes == 0) {
        if (kind) *kind = 0;
        return NULL;
    }
    if (kind) *kind = frames[nframes - 1].kind;
    return frames[nframes - 1].obj;
}

bool lx_frame_is_param(const lx_array *a) {
    const frame *top = nframes > 0 ? &frames[nframes - 1] : NULL;
    return top && top->is_param && a && top->is_param(top->obj, a);
}

const char *lx_frame_current_path(void) { return path ? path : ""; }

const char *lx_frame_path(char *buf, size_t cap) {
    const char *p = lx_frame_current_path();
    size_t n = strlen(p);
    if (!buf || cap < n + 1) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "frame_path: the module path needs %zu bytes, the buffer has %zu", n + 1,
                buf ? cap : (size_t)0);
        return NULL;
    }
    memcpy(buf, p, n + 1);
    return buf;
}
