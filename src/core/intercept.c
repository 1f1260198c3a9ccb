/* Op interceptors: module frames and the path/role view of matmul-like primitives. */
#include "linnx/intercept.h"

#include "frame_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_INTERCEPTORS 8

/* The frame stack. A frame's name is resolved only when a path is wanted (a failure's message, an
 * intercepted op), so keeping the stack current on every module call costs a few stores: a Linen
 * scope lends its name, an NNX module lends a function that finds its attribute name in the
 * parent frame's module, and only lx_frame_push (the public, copying form) stores characters, in
 * a per-thread arena. The joined path is built on demand into a per-thread buffer and kept until
 * the next push or pop. Buffers grow on demand, so no name and no depth is ever cut, and are
 * freed when the stack empties (the end of the outermost framed call). Running out of memory
 * while building the path fails the whole path (lx_frame_path_), never gives "" or a part. */
typedef struct {
    lx_frame_kind kind;
    const void *obj;
    lx_frame_param_fn is_param;
    lx_frame_name_fn name_fn; /* lazy name, or NULL */
    const char *borrowed;     /* a name the caller keeps alive, or NULL */
    size_t arena_off;         /* else a copied name at this offset in the arena */
    size_t arena_mark;        /* the arena's length before this frame */
} frame;

typedef struct {
    lx_interceptor_fn fn;
    void *user;
    int id;
} interceptor;

#define INLINE_FRAMES 32
static _Thread_local frame frames_inline[INLINE_FRAMES];
static _Thread_local frame *frames_heap; /* NULL while the inline frames suffice */
static _Thread_local int nframes, frames_heap_cap;
#define frames (frames_heap ? frames_heap : frames_inline)
#define frames_cap (frames_heap ? frames_heap_cap : INLINE_FRAMES)
static _Thread_local char *arena;
static _Thread_local size_t arena_len, arena_cap;
static _Thread_local char *path;
static _Thread_local size_t path_cap;
static _Thread_local bool path_valid, path_building;
static _Thread_local interceptor interceptors[MAX_INTERCEPTORS];
static _Thread_local int ninterceptors, next_id = 1, observer_handle;
static _Thread_local uint64_t dropped; /* events not delivered (out of memory): intercept.h */

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
    const char *cur;
    if (lx_frame_path_(&cur) != LX_OK) { /* out of memory: as below, never the root's "" */
        dropped++;
        return;
    }
    size_t len = strlen(cur) + 1;
    char local[256], *path = len <= sizeof local ? local : malloc(len);
    if (!path) { /* out of memory: the op itself is unaffected, the event is dropped (counted) */
        dropped++;
        return;
    }
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

uint64_t lx_interceptor_dropped(void) { return dropped; }

static lx_status grow_frames(void) {
    int cap = frames_cap * 2;
    frame *f = frames_heap ? realloc(frames_heap, (size_t)cap * sizeof *f) : malloc((size_t)cap * sizeof *f);
    if (!f) return LX_ERR_NO_MEMORY;
    if (!frames_heap) memcpy(f, frames_inline, sizeof frames_inline);
    frames_heap = f;
    frames_heap_cap = cap;
    return LX_OK;
}

lx_status lx_frame_enter_(lx_frame_kind kind, const char *name, lx_frame_name_fn name_fn, const void *obj,
                          lx_frame_param_fn is_param) {
    if (nframes == frames_cap && grow_frames() != LX_OK)
        return lx_fail(LX_ERR_NO_MEMORY, "out of memory for module frame %d", nframes + 1);
    frames[nframes++] = (frame){kind, obj, is_param, name_fn, name ? name : "", 0, arena_len};
    path_valid = false;
    return LX_OK;
}

lx_status lx_frame_push(lx_frame_kind kind, const char *name, const void *obj, lx_frame_param_fn is_param) {
    if (!name) name = "";
    size_t nlen = strlen(name);
    /* Grow first, change nothing until both fit: a failed push leaves the stack as it was. */
    if (arena_len + nlen + 1 > arena_cap) {
        size_t cap = arena_cap ? arena_cap : 128;
        while (cap < arena_len + nlen + 1) cap *= 2;
        char *p = realloc(arena, cap);
        if (!p) return lx_fail(LX_ERR_NO_MEMORY, "frame_push: out of memory for module frame '%s'", name);
        arena = p;
        arena_cap = cap;
    }
    if (nframes == frames_cap && grow_frames() != LX_OK)
        return lx_fail(LX_ERR_NO_MEMORY, "frame_push: out of memory for module frame '%s'", name);
    frames[nframes++] = (frame){kind, obj, is_param, NULL, NULL, arena_len, arena_len};
    memcpy(arena + arena_len, name, nlen + 1);
    arena_len += nlen + 1;
    path_valid = false;
    return LX_OK;
}

int lx_frame_depth_(void) { return nframes; }

static _Thread_local uint64_t outer_calls;

uint64_t lx_frame_outer_calls_(void) { return outer_calls; }

void lx_frame_pop(void) {
    if (nframes == 0) return;
    arena_len = frames[--nframes].arena_mark;
    path_valid = false;
    if (nframes == 0) { /* the outermost frame: give the buffers back */
        outer_calls++;
        free(frames_heap);
        frames_heap = NULL;
        frames_heap_cap = 0;
        free(arena);
        free(path);
        arena = path = NULL;
        arena_cap = arena_len = path_cap = 0;
    }
}

void lx_frame_leave_(lx_status st) {
    lx_frame_pop();
    if (nframes == 0 && st == LX_OK) lx_error_settle_();
}

const void *lx_frame_top(lx_frame_kind *kind) {
    if (nframes == 0) {
        if (kind) *kind = 0;
        return NULL;
    }
    if (kind) *kind = frames[nframes - 1].kind;
    return frames[nframes - 1].obj;
}

static bool path_append(size_t *len, const char *name) {
    size_t nlen = strlen(name), sep = nlen && *len ? 1 : 0;
    if (!nlen) return true;
    if (*len + sep + nlen + 1 > path_cap) {
        size_t cap = path_cap ? path_cap : 128;
        while (cap < *len + sep + nlen + 1) cap *= 2;
        char *p = realloc(path, cap);
        if (!p) return false;
        path = p;
        path_cap = cap;
    }
    if (sep) path[(*len)++] = '/';
    memcpy(path + *len, name, nlen + 1);
    *len += nlen;
    return true;
}

lx_status lx_frame_path_(const char **out) {
    *out = NULL;
    if (nframes == 0) {
        *out = "";
        return LX_OK;
    }
    if (path_valid) {
        *out = path;
        return LX_OK;
    }
    /* asked again from inside a name_fn (a failure it records wants the path of its message):
     * no path for that one, which is not the root's "" */
    if (path_building) return LX_ERR_NO_MEMORY;
    path_building = true;
    size_t len = 0;
    bool ok = true;
    for (int i = 0; i < nframes && ok; i++) {
        const frame *f = &frames[i];
        if (f->name_fn) {
            const frame *up = i > 0 ? &frames[i - 1] : NULL;
            const void *parent = up && up->kind == f->kind && up->obj != f->obj ? up->obj : NULL;
            char *name = NULL;
            if (parent) ok = f->name_fn(parent, f->obj, &name) == LX_OK;
            if (ok && name) ok = path_append(&len, name);
            free(name);
        } else {
            ok = path_append(&len, f->borrowed ? f->borrowed : arena + f->arena_off);
        }
    }
    path_building = false;
    /* out of memory: the whole path fails, never a part of it shown as if it were the path */
    if (!ok) return LX_ERR_NO_MEMORY;
    if (!path) { /* every frame unnamed: the root */
        *out = "";
        return LX_OK;
    }
    path[len] = '\0';
    path_valid = true;
    *out = path;
    return LX_OK;
}

const char *lx_frame_current_path(void) {
    const char *p;
    return lx_frame_path_(&p) == LX_OK ? p : ""; /* the caller that must tell: lx_frame_path */
}

bool lx_frame_is_param(const lx_array *a) {
    const frame *top = nframes > 0 ? &frames[nframes - 1] : NULL;
    return top && top->is_param && a && top->is_param(top->obj, a);
}

const char *lx_frame_path(char *buf, size_t cap) {
    const char *p;
    if (lx_frame_path_(&p) != LX_OK) {
        lx_fail(LX_ERR_NO_MEMORY, "frame_path: out of memory building the module path");
        return NULL;
    }
    size_t n = strlen(p);
    if (!buf || cap < n + 1) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "frame_path: the module path needs %zu bytes, the buffer has %zu", n + 1,
                buf ? cap : (size_t)0);
        return NULL;
    }
    memcpy(buf, p, n + 1);
    return buf;
}
