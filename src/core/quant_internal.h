/* Shared by the rule trace, the quantizing session and PTQ: ops counted per module call, the
 * general quantizer and the session's internal modes. */
#ifndef LINNX_QUANT_INTERNAL_H
#define LINNX_QUANT_INTERNAL_H

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

/* Quantize x per channel: a channel is a coordinate of the axes not in `reduce`; with tile > 0
 * the reduced axis `tax` is cut in tiles of that many entries, one scale each. *q: int8, x's
 * shape; *scale: float32, x's shape with each reduced axis 1 (ntiles on `tax`). Owned by the
 * caller. scale = max|x| / 127 (1 for an all-zero channel), q = clamp(round_half_even(x / s)). */
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
} lx_qt_record;

typedef struct {
    lx_qt_record *v;
    int n, cap;
    bool *rule_hit;             /* one per rule */
    char *seen;                 /* "path:op" of every contraction, space separated */
    size_t seen_len, seen_cap;
    bool oom;
} lx_qt_plan;

/* Begin a session recording into `plan` (the model computes in float32). */
lx_status lx_qt_plan_begin(const lx_qt_rules *rules, lx_qt_plan *plan, lx_qt_session **out);
void lx_qt_plan_free(lx_qt_plan *p);

#endif
