/* Shared by the rule trace, the quantizing session and PTQ: ops counted per module call, the
 * general quantizer and the session's internal modes. */
#ifndef LINNX_QUANT_INTERNAL_H
#define LINNX_QUANT_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "linnx/array.h"
#include "linnx/quant.h"

typedef struct {
    char *path, *op;
    int count;
} lx_qt_counter;

typedef struct {
    lx_qt_counter *v;
    int n, cap;
    uint64_t outer; /* lx_frame_outer_calls_ when last counted */
} lx_qt_counters;

/* The op's number within its module's current call (see quant_rules.c); -1 out of memory. */
int lx_qt_next_count(lx_qt_counters *c, const char *path, const char *op);
void lx_qt_counters_free(lx_qt_counters *c);

/* max(m, |v|) keeping a NaN: once a NaN is seen the max stays NaN (jnp.max propagates it), so
 * its scale and every value dequantized with it are NaN, never a plausible number. Start at 0. */
static inline float lx_qt_absmax_step(float m, float v) {
    float a = fabsf(v);
    return (a > m || a != a) ? a : m;
}
/* The symmetric int8 scale of an absmax: absmax / 127, 1 for 0 (Qwix), NaN for NaN. */
static inline float lx_qt_scale_of(float absmax) {
    return absmax != absmax ? absmax : absmax > 0 ? absmax / 127.0f : 1.0f;
}
/* round_half_even(v * inv) clamped to [-127, 127]; a NaN gives 0 (its scale is NaN, so the
 * dequantized value is NaN again). */
static inline float lx_qt_round_clamp(float v, float inv) {
    float r = nearbyintf(v * inv); /* round half to even in the default rounding mode */
    return r != r ? 0.f : r > 127.f ? 127.f : r < -127.f ? -127.f : r;
}

/* Quantize x per channel: a channel is a coordinate of the axes not in `reduce`; with tile > 0
 * the reduced axis `tax` is cut in tiles of that many entries, one scale each. *q: int8, x's
 * shape; *scale: float32, x's shape with each reduced axis 1 (ntiles on `tax`). Owned by the
 * caller. scale = max|x| / 127 (1 for an all-zero channel, NaN for a channel holding a NaN: q 0 there),
 * q = clamp(round_half_even(x / s)). */
lx_status lx_qt_quantize_axes(const lx_array *x, const bool *reduce, int64_t tile, int tax, lx_array **q,
                              lx_array **scale);
/* q * scale back to float32 (pool-owned); each scale axis of size s_d covers ceil(q_d / s_d)
 * entries of q's axis, so per-channel, per-tensor and per-tile scales all read back. */
lx_array *lx_qt_dequantize(const lx_array *q, const lx_array *scale);

/* A plan: the weights a run's matched ops use, recorded by an internal session (quant_ptq.c). */
typedef struct {
    lx_array *w;                /* retained */
    bool reduce[LX_MAX_DIMS];   /* its contraction axes */
    int64_t tile;
    int tax;
    char *path, *op;            /* module path, counted op ("dot_general0") */
    int act_side;               /* the statically scaled activation: 0 lhs, 1 rhs, -1 none */
    int act_ndim;
    bool scale_only;            /* the weight again, by a later op (a layer called twice): only
                                 * that op's static activation scale */
} lx_qt_record;

typedef struct {
    lx_qt_record *v;
    int n, cap;
    bool *rule_hit;             /* one per rule */
    char *seen;                 /* "path:op" of every contraction, space separated */
    size_t seen_len, seen_cap;
    lx_array **other;           /* Params also read by an op that is not a contraction (a tied
                                 * embedding's lookup): left in float, retained */
    int nother, capother;
    bool oom;
} lx_qt_plan;

/* Begin a session recording into `plan` (the model computes in float32). */
lx_status lx_qt_plan_begin(const lx_qt_rules *rules, lx_qt_plan *plan, lx_qt_session **out);
void lx_qt_plan_free(lx_qt_plan *p);

#endif
