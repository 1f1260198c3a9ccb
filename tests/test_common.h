/* Small helpers shared by the op tests: deterministic random arrays and shape literals. */
#ifndef LX_TEST_COMMON_H
#define LX_TEST_COMMON_H

#include "lx_test.h"

static uint32_t tc_rng = 12345;
static float tc_frand(void) { /* uniform in [-1, 1) */
    tc_rng = tc_rng * 1664525u + 1013904223u;
    return (float)((tc_rng >> 8) * (1.0 / 8388608.0)) - 1.0f;
}
static lx_array *tc_rand(int ndim, const int64_t *shape) {
    lx_array *a = lx_autorelease(lx_array_empty(LX_F32, ndim, shape));
    for (int64_t i = 0; i < a->size; i++) lx_f32(a)[i] = tc_frand();
    return a;
}
#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define RAND(...) tc_rand(ND(__VA_ARGS__), SHAPE(__VA_ARGS__))
#define ABSTRACT(...) lx_autorelease(lx_array_abstract(LX_F32, ND(__VA_ARGS__), SHAPE(__VA_ARGS__)))
#define FROM(shape_nd, shape, ...) lx_autorelease(lx_array_from_f32(shape_nd, shape, (const float[]){__VA_ARGS__}))

static char tc_last_op[48];
static int tc_last_ninputs, tc_last_nattrs;
static void tc_record(const lx_prim_event *ev, void *user) {
    (void)user;
    snprintf(tc_last_op, sizeof tc_last_op, "%s", ev->op);
    tc_last_ninputs = ev->ninputs;
    tc_last_nattrs = ev->nattrs;
}

#endif
