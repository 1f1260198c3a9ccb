/* Elementwise ops: unary maths and activations, casts, binary ops with numpy broadcasting,
 * comparisons and where. Also the broadcast planner (broadcast.h) the other op files share.
 *
 * Kernels are `<op>_<dtype>_forward` functions over raw buffers and sizes; a `_backward` twin
 * can sit beside each one. Binary kernels see one row of a broadcast plan at a time with a
 * step of 0 or 1 per operand, and each step combination gets its own loop so the compiler
 * vectorises it. Integer arithmetic goes through uint32_t so it wraps like XLA's instead of
 * overflowing (undefined behaviour in C).
 */
#include <math.h>
#include <string.h>

#include "linnx/ops.h"
#include "broadcast.h"
#include "op_internal.h"
#include "vmath.h"

/* ---- shared helpers ---- */

const char *lx_shp(int ndim, const int64_t *shape) {
    static _Thread_local char bufs[8][192];
    static _Thread_local unsigned next;
    char *b = bufs[next++ % 8];
    return lx_shape_str(ndim, shape, b, sizeof bufs[0]);
}

lx_status lx_norm_axis(const char *op, int64_t axis, int ndim, int64_t *out) {
    if (axis < -(int64_t)ndim || axis >= ndim)
        return lx_fail(LX_ERR_SHAPE, "%s: axis %lld is out of bounds for array of dimension %d", op,
                       (long long)axis, ndim);
    *out = axis < 0 ? axis + ndim : axis;
    return LX_OK;
}

void lx_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i];
    }
}

/* ---- broadcasting ---- */

lx_status lx_bcast_shape(const char *op, int nin, const int *ndims, const int64_t *const *shapes,
                         int *out_ndim, int64_t *out_shape) {
    int nd = 0;
    for (int k = 0; k < nin; k++)
        if (ndims[k] > nd) nd = ndims[k];
    for (int i = 0; i < nd; i++) {
        int64_t d = 1;
        for (int k = 0; k < nin; k++) {
            int j = i - (nd - ndims[k]);
            if (j < 0 || shapes[k][j] == 1) continue;
            if (d == 1) {
                d = shapes[k][j];
            } else if (d != shapes[k][j]) {
                char msg[1024];
                size_t n = 0;
                for (int q = 0; q < nin && n < sizeof msg; q++)
                    n += (size_t)snprintf(msg + n, sizeof msg - n, " %s", lx_shp(ndims[q], shapes[q]));
                return lx_fail(LX_ERR_SHAPE, "%s: operands could not be broadcast together with shapes%s",
                               op, msg);
            }
        }
        out_shape[i] = d;
    }
    *out_ndim = nd;
    return LX_OK;
}

void lx_bcast_plan(lx_bcast *bc, int nin, const int *ndims, const int64_t *const *shapes,
                   int out_ndim, const int64_t *out_shape) {
    int64_t cstride[LX_BCAST_MAX_IN][LX_MAX_DIMS];
    for (int k = 0; k < nin; k++) lx_contiguous_strides(ndims[k], shapes[k], cstride[k]);
    memset(bc, 0, sizeof *bc);
    bc->nin = nin;
    bc->size = 1;
    int nd = 0;
    for (int i = 0; i < out_ndim; i++) {
        bc->size *= out_shape[i];
        if (out_shape[i] == 1) continue; /* size-1 output dims never move any pointer */
        int64_t st[LX_BCAST_MAX_IN];
        for (int k = 0; k < nin; k++) {
            int j = i - (out_ndim - ndims[k]);
            st[k] = (j < 0 || shapes[k][j] == 1) ? 0 : cstride[k][j];
        }
        /* Merge with the previous dim when every operand walks the pair as one run. */
        bool merge = nd > 0;
        for (int k = 0; k < nin && merge; k++)
            if (bc->stride[k][nd - 1] != st[k] * out_shape[i]) merge = false;
        if (merge) {
            bc->shape[nd - 1] *= out_shape[i];
            for (int k = 0; k < nin; k++) bc->stride[k][nd - 1] = st[k];
        } else {
            bc->shape[nd] = out_shape[i];
            for (int k = 0; k < nin; k++) bc->stride[k][nd] = st[k];
            nd++;
        }
    }
    if (nd == 0) {
        bc->shape[0] = 1;
        nd = 1;
    }
    bc->ndim = nd;
}

/* Tile t of a broadcast plan: find each input's offset for the tile's row and run the row
 * kernel over its columns. */
static inline void bcast_tile(const lx_bcast *bc, int64_t t, int64_t inner, int64_t width, int64_t nblk,
                              const int64_t *step, void *out, size_t out_elsize, const void *const *in,
                              const size_t *in_elsize, lx_bcast_row_fn fn, const void *ctx) {
    const int nd = bc->ndim, nin = bc->nin;
    const int64_t r = t / nblk, c0 = (t % nblk) * width;
    const int64_t n = inner - c0 < width ? inner - c0 : width;
    int64_t off[LX_BCAST_MAX_IN] = {0};
    int64_t rem = r;
    for (int d = nd - 2; d >= 0 && rem; d--) {
        int64_t q = rem % bc->shape[d];
        rem /= bc->shape[d];
        for (int k = 0; k < nin; k++) off[k] += q * bc->stride[k][d];
    }
    const void *ip[LX_BCAST_MAX_IN];
    for (int k = 0; k < nin; k++) ip[k] = (const char *)in[k] + (size_t)(off[k] + c0 * step[k]) * in_elsize[k];
    fn((char *)out + (size_t)(r * inner + c0) * out_elsize, ip, step, n, ctx);
}

typedef struct bcast_job {
    const lx_bcast *bc;
    int64_t inner, width, nblk;
    const int64_t *step;
    void *out;
    size_t out_elsize;
    const void *const *in;
    const size_t *in_elsize;
    lx_bcast_row_fn fn;
    const void *ctx;
} bcast_job;

static int bcast_tiles(void *p, int64_t lo, int64_t hi) {
    const bcast_job *j = p;
    for (int64_t t = lo; t < hi; t++)
        bcast_tile(j->bc, t, j->inner, j->width, j->nblk, j->step, j->out, j->out_elsize, j->in, j->in_elsize, j->fn,
                   j->ctx);
    return 0;
}

void lx_bcast_run(const lx_bcast *bc, void *out, size_t out_elsize, const void *const *in,
                  const size_t *in_elsize, lx_bcast_row_fn fn, const void *ctx) {
    if (bc->size == 0) return;
    const int nd = bc->ndim, nin = bc->nin;
    const int64_t inner = bc->shape[nd - 1], rows = bc->size / inner;
    /* Few long rows (a same-shape op is one row): cut them in tiles so threads share the work. */
    const int64_t width = (rows < 64 && inner > 8192) ? 4096 : inner;
    const int64_t nblk = (inner + width - 1) / width, ntiles = rows * nblk;
    int64_t step[LX_BCAST_MAX_IN];
    for (int k = 0; k < nin; k++) step[k] = bc->stride[k][nd - 1];
    if (bc->size <= LX_PAR_MIN) {
        /* Small ops (a bias add at batch 1) never wake a thread: that costs as much as the
         * arithmetic. */
        for (int64_t t = 0; t < ntiles; t++)
            bcast_tile(bc, t, inner, width, nblk, step, out, out_elsize, in, in_elsize, fn, ctx);
        return;
    }
    bcast_job j = {bc, inner, width, nblk, step, out, out_elsize, in, in_elsize, fn, ctx};
    lx_parallel_for(lx_num_threads(), ntiles, bcast_tiles, &j);
}

/* ---- dtype lists for messages ---- */

typedef void (*unary_fn)(void *out, const void *in, int64_t n);

static const char *dtype_list(const bool ok[LX_DTYPE_COUNT], char *buf, size_t cap) {
    int count = 0, seen = 0;
    for (int d = 0; d < LX_DTYPE_COUNT; d++) count += ok[d];
    size_t n = 0;
    buf[0] = '\0';
    for (int d = 0; d < LX_DTYPE_COUNT; d++) {
        if (!ok[d]) continue;
        seen++;
        const char *sep = seen == 1 ? "" : seen == count ? " or " : ", ";
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s", sep, lx_dtype_name((lx_dtype)d));
    }
    return buf;
}

static lx_status dtype_error(const char *op, const lx_array *x, const bool ok[LX_DTYPE_COUNT]) {
    char list[96];
    return lx_fail(LX_ERR_DTYPE, "%s: expects %s, got %s with shape %s", op, dtype_list(ok, list, sizeof list),
                   lx_dtype_name(x->dtype), lx_ashp(x));
}

/* ---- unary kernels ---- */

#define UNARY_KERNEL(name, dt, T, EXPR)                                                  \
    static int name##_##dt##_range(void *c_, int64_t lo, int64_t hi) {                  \
        const lx_map_ctx *c = c_;                                                        \
        T *restrict out = (T *)c->out;                                                   \
        const T *restrict in = c->in;                                                    \
        for (int64_t i = lo; i < hi; i++) {                                              \
            const T x = in[i];                                                           \
            out[i] = (EXPR);                                                             \
        }                                                                                \
        return 0;                                                                        \
    }                                                                                    \
    static void name##_##dt##_forward(void *out, const void *in, int64_t n) {            \
        lx_map_ctx c = {out, in};                                                        \
        lx_parallel_for(LX_PAR_THREADS(n > LX_PAR_MIN), n, name##_##dt##_range, &c);     \
    }

/* Integer negation and abs wrap at INT32_MIN like XLA's instead of overflowing. */
static inline int32_t wrap_i32(uint32_t u) { return (int32_t)u; }

UNARY_KERNEL(neg, f32, float, -x)
UNARY_KERNEL(neg, i32, int32_t, wrap_i32(0u - (uint32_t)x))
UNARY_KERNEL(abs, f32, float, fabsf(x))
UNARY_KERNEL(abs, i32, int32_t, x < 0 ? wrap_i32(0u - (uint32_t)x) : x)
UNARY_KERNEL(square, f32, float, x * x)
UNARY_KERNEL(square, i32, int32_t, wrap_i32((uint32_t)x * (uint32_t)x))
UNARY_KERNEL(square, u32, uint32_t, x * x)
/* exp, tanh, sigmoid, silu and the tanh-form GELU: the vector math of the kernel set in force
 * (vmath.h: within 1 ulp for exp, 1.5 for tanh, 2.5 for sigmoid; NaN, +-inf and -0 as libm). */
#define VMATH_KERNEL(name)                                                   \
    static void name##_f32_forward(void *out, const void *in, int64_t n) {  \
        lx_vmath_map(lx_vmath_active()->name, in, out, n);                   \
    }
VMATH_KERNEL(exp)
UNARY_KERNEL(log, f32, float, logf(x))
UNARY_KERNEL(log1p, f32, float, log1pf(x))
UNARY_KERNEL(sqrt, f32, float, sqrtf(x))
UNARY_KERNEL(rsqrt, f32, float, 1.0f / sqrtf(x))
VMATH_KERNEL(tanh)
/* 1 / (1 + exp(-x)), as exp(x) / (1 + exp(x)) for x < 0 (tiny results keep their digits). */
VMATH_KERNEL(sigmoid)
/* max(x, 0) that keeps NaN, as jnp.maximum does. */
UNARY_KERNEL(relu, f32, float, x < 0.0f ? 0.0f : x)
/* jax.nn.gelu(approximate=True): x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), computed
 * as x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), the same value without the cancellation. */
VMATH_KERNEL(gelu_tanh)
/* jax.nn.gelu(approximate=False): x * (erf(x / sqrt(2)) + 1) / 2, computed as x Phi(x) with the
 * normal CDF from erfc in the left tail (vmath.h), so it has no cancellation there. */
VMATH_KERNEL(gelu_erf)
VMATH_KERNEL(silu)
/* jnp.logaddexp(x, 0): max(x, 0) + log1p(exp(-|x|)); NaN stays NaN through the log1p term. */
UNARY_KERNEL(softplus, f32, float, fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))))

typedef struct unary_op {
    const char *name;
    unary_fn fn[LX_DTYPE_COUNT];
    lx_prim_id id;
} unary_op;

#define F32_ONLY(name, ID) [LX_PRIM_##ID] = {#name, {[LX_F32] = name##_f32_forward}, LX_PRIM_##ID}

static const unary_op unary_ops[LX_PRIM_COUNT] = {
    [LX_PRIM_NEG] = {"neg", {[LX_F32] = neg_f32_forward, [LX_I32] = neg_i32_forward}, LX_PRIM_NEG},
    [LX_PRIM_ABS] = {"abs", {[LX_F32] = abs_f32_forward, [LX_I32] = abs_i32_forward}, LX_PRIM_ABS},
    [LX_PRIM_SQUARE] = {"square",
                        {[LX_F32] = square_f32_forward, [LX_I32] = square_i32_forward, [LX_U32] = square_u32_forward},
                        LX_PRIM_SQUARE},
    F32_ONLY(exp, EXP), F32_ONLY(log, LOG), F32_ONLY(log1p, LOG1P), F32_ONLY(sqrt, SQRT), F32_ONLY(rsqrt, RSQRT),
    F32_ONLY(tanh, TANH), F32_ONLY(sigmoid, SIGMOID), F32_ONLY(relu, RELU), F32_ONLY(silu, SILU),
    F32_ONLY(softplus, SOFTPLUS),
    [LX_PRIM_GELU] = {"gelu", {[LX_F32] = gelu_erf_f32_forward}, LX_PRIM_GELU},
};
static const unary_op gelu_approx = {"gelu", {[LX_F32] = gelu_tanh_f32_forward}, LX_PRIM_GELU};

static const unary_op *unary_of(lx_prim_id id, const void *params) {
    if (id == LX_PRIM_GELU && ((const lx_gelu_params *)params)->approximate) return &gelu_approx;
    return &unary_ops[id];
}

LX_RULE(unary) {
    (void)nin;
    const unary_op *op = unary_of(id, params_);
    lx_array *x = in[0];
    if (!op->fn[x->dtype]) {
        bool ok[LX_DTYPE_COUNT];
        for (int d = 0; d < LX_DTYPE_COUNT; d++) ok[d] = op->fn[d] != NULL;
        return dtype_error(op->name, x, ok);
    }
    lx_aval_like(av, x->dtype, x);
    return LX_OK;
}

LX_FWD(unary) {
    (void)nin, (void)saved;
    const lx_array *x = in[0];
    unary_of(id, params_)->fn[x->dtype]((*outp)->data, x->data, x->size);
    return LX_OK;
}

LX_ATTRS(gelu) {
    (void)id, (void)nin, (void)in, (void)scratch;
    attrs[0] = LX_KW_BOOL("approximate", ((const lx_gelu_params *)params_)->approximate);
    return 1;
}

#define UNARY_BUILDER(name, ID) \
    lx_array *lx_##name(lx_array *x) { return lx_bind(LX_PRIM_##ID, NULL, 1, &x); }

UNARY_BUILDER(neg, NEG)
UNARY_BUILDER(abs, ABS)
UNARY_BUILDER(square, SQUARE)
UNARY_BUILDER(exp, EXP)
UNARY_BUILDER(log, LOG)
UNARY_BUILDER(log1p, LOG1P)
UNARY_BUILDER(sqrt, SQRT)
UNARY_BUILDER(rsqrt, RSQRT)
UNARY_BUILDER(tanh, TANH)
UNARY_BUILDER(sigmoid, SIGMOID)
UNARY_BUILDER(relu, RELU)
UNARY_BUILDER(silu, SILU)
UNARY_BUILDER(softplus, SOFTPLUS)

lx_array *lx_gelu(lx_array *x, bool approximate) {
    const lx_gelu_params prm = {approximate};
    return lx_bind(LX_PRIM_GELU, &prm, 1, &x);
}

/* stop_gradient: the value itself (a view), no gradient through it (autodiff.h). */
LX_RULE(stop_gradient) {
    LX_UNUSED_RULE;
    lx_aval_like(av, in[0]->dtype, in[0]);
    return LX_OK;
}
LX_FWD(stop_gradient) {
    LX_UNUSED_FWD;
    *outp = lx_autorelease(lx_array_reshape_view(in[0], in[0]->ndim, in[0]->shape));
    return *outp ? LX_OK : lx_last_status();
}

typedef struct clip_ctx {
    float *out;
    const float *in;
    float lo, hi;
} clip_ctx;

static int clip_range(void *p, int64_t i0, int64_t i1) {
    const clip_ctx *c = p;
    float *restrict out = c->out;
    const float *restrict in = c->in;
    const float lo = c->lo, hi = c->hi;
    if (lo != lo || hi != hi) { /* a NaN bound: jnp.maximum/minimum propagate it everywhere */
        for (int64_t i = i0; i < i1; i++) out[i] = NAN;
        return 0;
    }
    /* comparisons are false for NaN: NaN passes through */
    for (int64_t i = i0; i < i1; i++) {
        float v = in[i] < lo ? lo : in[i];
        out[i] = v > hi ? hi : v;
    }
    return 0;
}

static void clip_f32_forward(float *out, const float *in, float lo, float hi, int64_t n) {
    clip_ctx c = {out, in, lo, hi};
    lx_parallel_for(LX_PAR_THREADS(n > LX_PAR_MIN), n, clip_range, &c);
}

LX_RULE(clip) {
    LX_UNUSED_RULE;
    if (in[0]->dtype != LX_F32) return dtype_error("clip", in[0], (const bool[LX_DTYPE_COUNT]){[LX_F32] = true});
    lx_aval_like(av, LX_F32, in[0]);
    return LX_OK;
}
LX_FWD(clip) {
    LX_UNUSED_FWD;
    const lx_clip_params *p = params_;
    clip_f32_forward(lx_f32(*outp), lx_f32(in[0]), p->lo, p->hi, in[0]->size);
    return LX_OK;
}
LX_ATTRS(clip) {
    LX_UNUSED_ATTRS;
    const lx_clip_params *p = params_;
    attrs[0] = LX_KW_FLOAT("min", p->lo);
    attrs[1] = LX_KW_FLOAT("max", p->hi);
    if (!p->zero_grad_at_bounds) return 2;
    attrs[2] = LX_KW_BOOL("zero_grad_at_bounds", true);
    return 3;
}

lx_array *lx_clip(lx_array *x, float lo, float hi) {
    const lx_clip_params prm = {lo, hi, 0};
    return lx_bind(LX_PRIM_CLIP, &prm, 1, &x);
}

/* ---- cast ---- */

static inline double rd_f32(float v) { return v; }
static inline double rd_i32(int32_t v) { return v; }
static inline double rd_u32(uint32_t v) { return v; }
static inline double rd_bool(uint8_t v) { return v != 0; }
static inline double rd_bf16(uint16_t v) { return lx_bf16_to_f32(v); }
static inline double rd_i8(int8_t v) { return v; }

/* From a float: truncate toward zero and saturate, NaN -> 0 (XLA's convert). */
static inline float wr_f32(double d) { return (float)d; }
static inline int32_t wr_i32(double d) {
    if (isnan(d)) return 0;
    if (d >= 2147483647.0) return INT32_MAX;
    if (d <= -2147483648.0) return INT32_MIN;
    return (int32_t)d;
}
static inline uint32_t wr_u32(double d) {
    if (isnan(d) || d <= 0) return 0;
    if (d >= 4294967295.0) return UINT32_MAX;
    return (uint32_t)d;
}
static inline int8_t wr_i8(double d) {
    if (isnan(d)) return 0;
    if (d >= 127.0) return INT8_MAX;
    if (d <= -128.0) return INT8_MIN;
    return (int8_t)d;
}
static inline uint8_t wr_bool(double d) { return d != 0; } /* NaN != 0: true, as numpy */
static inline uint16_t wr_bf16(double d) { return lx_f32_to_bf16((float)d); }
/* From an integer (the double holds it exactly): wrap modulo 2^bits, as numpy and XLA do
 * (int32 300 -> int8 44, int8 -1 -> uint32 4294967295). */
static inline uint32_t wr_u32_wrap(double d) { return (uint32_t)(int64_t)d; }
static inline int8_t wr_i8_wrap(double d) { return (int8_t)(uint8_t)((uint64_t)(int64_t)d & 0xffu); }

lx_status lx_scalar_to_dtype(double v, lx_dtype dtype, void *out) {
    switch (dtype) {
    case LX_F32: { float f = wr_f32(v); memcpy(out, &f, 4); return LX_OK; }
    case LX_I32: { int32_t i = wr_i32(v); memcpy(out, &i, 4); return LX_OK; }
    case LX_U32: { uint32_t u = wr_u32(v); memcpy(out, &u, 4); return LX_OK; }
    case LX_BOOL: { uint8_t b = wr_bool(v); memcpy(out, &b, 1); return LX_OK; }
    case LX_BF16: { uint16_t h = wr_bf16(v); memcpy(out, &h, 2); return LX_OK; }
    case LX_I8: { int8_t q = wr_i8(v); memcpy(out, &q, 1); return LX_OK; }
    case LX_DTYPE_COUNT: break; /* no default: -Wswitch names a dtype added without a case */
    }
    return lx_fail(LX_ERR_DTYPE, "invalid dtype %d", (int)dtype);
}

/* WU, WI: the uint32 and int8 writers for this source (wrapping from an integer). */
#define CAST_FROM(FROM, TI, RD, WU, WI)                                                  \
    case FROM:                                                                           \
        switch (to) {                                                                    \
        case LX_F32: CAST_LOOP(TI, RD, float, wr_f32); break;                            \
        case LX_I32: CAST_LOOP(TI, RD, int32_t, wr_i32); break;                          \
        case LX_U32: CAST_LOOP(TI, RD, uint32_t, WU); break;                             \
        case LX_BOOL: CAST_LOOP(TI, RD, uint8_t, wr_bool); break;                        \
        case LX_BF16: CAST_LOOP(TI, RD, uint16_t, wr_bf16); break;                       \
        case LX_I8: CAST_LOOP(TI, RD, int8_t, WI); break;                                \
        case LX_DTYPE_COUNT: break;                                                      \
        }                                                                                \
        break;
#define CAST_LOOP(TI, RD, TO, WR)                                                        \
    do {                                                                                 \
        const TI *restrict s = c->in;                                                    \
        TO *restrict o = c->out;                                                         \
        for (int64_t i = lo; i < hi; i++) o[i] = WR(RD(s[i]));                           \
    } while (0)

typedef struct cast_ctx {
    void *out;
    const void *in;
    lx_dtype to, from;
} cast_ctx;

static int cast_range(void *p, int64_t lo, int64_t hi) {
    const cast_ctx *c = p;
    const lx_dtype to = c->to;
    switch (c->from) {
        CAST_FROM(LX_F32, float, rd_f32, wr_u32, wr_i8)
        CAST_FROM(LX_I32, int32_t, rd_i32, wr_u32_wrap, wr_i8_wrap)
        CAST_FROM(LX_U32, uint32_t, rd_u32, wr_u32_wrap, wr_i8_wrap)
        CAST_FROM(LX_BOOL, uint8_t, rd_bool, wr_u32, wr_i8)
        CAST_FROM(LX_BF16, uint16_t, rd_bf16, wr_u32, wr_i8)
        CAST_FROM(LX_I8, int8_t, rd_i8, wr_u32_wrap, wr_i8)
    case LX_DTYPE_COUNT: break; /* no default: every dtype has its case (-Wswitch) */
    }
    return 0;
}

static void cast_forward(void *out, lx_dtype to, const void *in, lx_dtype from, int64_t n) {
    if (from == to || (from == LX_I32 && to == LX_U32) || (from == LX_U32 && to == LX_I32)) {
        /* Same bits: int32 <-> uint32 wraps modulo 2^32 like numpy and XLA. */
        memcpy(out, in, (size_t)n * lx_dtype_size(to));
        return;
    }
    cast_ctx c = {out, in, to, from};
    lx_parallel_for(LX_PAR_THREADS(n > LX_PAR_MIN), n, cast_range, &c); /* no thread when small */
}

LX_RULE(cast) {
    LX_UNUSED_RULE;
    lx_dtype dtype = ((const lx_cast_params *)params_)->dtype;
    if ((int)dtype < 0 || dtype >= LX_DTYPE_COUNT)
        return lx_fail(LX_ERR_DTYPE, "cast: invalid dtype %d for array of shape %s", (int)dtype, lx_ashp(in[0]));
    lx_aval_like(av, dtype, in[0]);
    return LX_OK;
}
LX_FWD(cast) {
    LX_UNUSED_FWD;
    const lx_array *x = in[0];
    if (x->size) cast_forward((*outp)->data, (*outp)->dtype, x->data, x->dtype, x->size);
    return LX_OK;
}
LX_ATTRS(cast) {
    LX_UNUSED_ATTRS;
    attrs[0] = LX_KW_STR("dtype", lx_dtype_name(((const lx_cast_params *)params_)->dtype));
    return 1;
}

lx_array *lx_cast(lx_array *x, lx_dtype dtype) {
    const lx_cast_params prm = {dtype};
    return lx_bind(LX_PRIM_CAST, &prm, 1, &x);
}

/* ---- binary kernels ---- */

#define BINARY_KERNEL(name, dt, T, TO, EXPR)                                             \
    static void name##_##dt##_forward(void *out_, const void *const *in, const int64_t *step, \
                                      int64_t n, const void *ctx) {                     \
        (void)ctx;                                                                       \
        TO *restrict o = out_;                                                           \
        const T *a = in[0], *b = in[1];                                                  \
        if (step[0] && step[1]) {                                                        \
            for (int64_t i = 0; i < n; i++) {                                            \
                const T x = a[i], y = b[i];                                              \
                o[i] = (EXPR);                                                           \
            }                                                                            \
        } else if (step[0]) {                                                            \
            const T y = b[0];                                                            \
            for (int64_t i = 0; i < n; i++) {                                            \
                const T x = a[i];                                                        \
                o[i] = (EXPR);                                                           \
            }                                                                            \
        } else if (step[1]) {                                                            \
            const T x = a[0];                                                            \
            for (int64_t i = 0; i < n; i++) {                                            \
                const T y = b[i];                                                        \
                o[i] = (EXPR);                                                           \
            }                                                                            \
        } else {                                                                         \
            const T x = a[0], y = b[0];                                                  \
            const TO v = (EXPR);                                                         \
            for (int64_t i = 0; i < n; i++) o[i] = v;                                    \
        }                                                                                \
    }

/* The arithmetic family over f32, i32 (wrapping through uint32_t) and u32. */
#define ARITH(name, FEXPR, IEXPR)                                                        \
    BINARY_KERNEL(name, f32, float, float, FEXPR)                                        \
    BINARY_KERNEL(name, i32, int32_t, int32_t, wrap_i32(IEXPR))                          \
    BINARY_KERNEL(name, u32, uint32_t, uint32_t, IEXPR)

ARITH(add, x + y, (uint32_t)x + (uint32_t)y)
ARITH(sub, x - y, (uint32_t)x - (uint32_t)y)
ARITH(mul, x * y, (uint32_t)x * (uint32_t)y)
BINARY_KERNEL(div, f32, float, float, x / y)
BINARY_KERNEL(pow, f32, float, float, powf(x, y))
/* NaN in either operand wins, as jnp.maximum / jnp.minimum. */
BINARY_KERNEL(maximum, f32, float, float, (x > y || isnan(x)) ? x : y)
BINARY_KERNEL(maximum, i32, int32_t, int32_t, x > y ? x : y)
BINARY_KERNEL(maximum, u32, uint32_t, uint32_t, x > y ? x : y)
BINARY_KERNEL(minimum, f32, float, float, (x < y || isnan(x)) ? x : y)
BINARY_KERNEL(minimum, i32, int32_t, int32_t, x < y ? x : y)
BINARY_KERNEL(minimum, u32, uint32_t, uint32_t, x < y ? x : y)

#define COMPARE(name, OP)                                                                \
    BINARY_KERNEL(name, f32, float, uint8_t, x OP y)                                     \
    BINARY_KERNEL(name, i32, int32_t, uint8_t, x OP y)                                   \
    BINARY_KERNEL(name, u32, uint32_t, uint8_t, x OP y)                                  \
    BINARY_KERNEL(name, bool, uint8_t, uint8_t, (x != 0) OP (y != 0))

COMPARE(eq, ==)
COMPARE(ne, !=)
COMPARE(lt, <)
COMPARE(le, <=)
COMPARE(gt, >)
COMPARE(ge, >=)

typedef struct binary_op {
    const char *name;
    lx_bcast_row_fn fn[LX_DTYPE_COUNT];
    bool to_bool;
    lx_prim_id id;
} binary_op;

#define ARITH_ENTRY(name, ID)                                                                        \
    [LX_PRIM_##ID] = {#name,                                                                         \
                      {[LX_F32] = name##_f32_forward, [LX_I32] = name##_i32_forward,                 \
                       [LX_U32] = name##_u32_forward},                                               \
                      false, LX_PRIM_##ID}
#define COMPARE_ENTRY(name, ID)                                                                      \
    [LX_PRIM_##ID] = {#name,                                                                         \
                      {[LX_F32] = name##_f32_forward, [LX_I32] = name##_i32_forward,                 \
                       [LX_U32] = name##_u32_forward, [LX_BOOL] = name##_bool_forward},              \
                      true, LX_PRIM_##ID}

static const binary_op binary_ops[LX_PRIM_COUNT] = {
    ARITH_ENTRY(add, ADD), ARITH_ENTRY(sub, SUB), ARITH_ENTRY(mul, MUL), ARITH_ENTRY(maximum, MAXIMUM),
    ARITH_ENTRY(minimum, MINIMUM),
    [LX_PRIM_DIV] = {"div", {[LX_F32] = div_f32_forward}, false, LX_PRIM_DIV},
    [LX_PRIM_POW] = {"pow", {[LX_F32] = pow_f32_forward}, false, LX_PRIM_POW},
    COMPARE_ENTRY(eq, EQ), COMPARE_ENTRY(ne, NE), COMPARE_ENTRY(lt, LT), COMPARE_ENTRY(le, LE),
    COMPARE_ENTRY(gt, GT), COMPARE_ENTRY(ge, GE),
};

LX_RULE(binary) {
    (void)params_, (void)nin;
    const binary_op *op = &binary_ops[id];
    const lx_array *a = in[0], *b = in[1];
    if (a->dtype != b->dtype)
        return lx_fail(LX_ERR_DTYPE, "%s: operands have different dtypes %s %s and %s %s (lx_cast one first)",
                       op->name, lx_dtype_name(a->dtype), lx_ashp(a), lx_dtype_name(b->dtype), lx_ashp(b));
    if (!op->fn[a->dtype]) {
        bool ok[LX_DTYPE_COUNT];
        for (int d = 0; d < LX_DTYPE_COUNT; d++) ok[d] = op->fn[d] != NULL;
        return dtype_error(op->name, a, ok);
    }
    const int ndims[] = {a->ndim, b->ndim};
    const int64_t *shapes[] = {a->shape, b->shape};
    LX_TRY(lx_bcast_shape(op->name, 2, ndims, shapes, &av->ndim, av->shape));
    av->dtype = op->to_bool ? LX_BOOL : a->dtype;
    return LX_OK;
}

LX_FWD(binary) {
    (void)params_, (void)nin, (void)saved;
    const binary_op *op = &binary_ops[id];
    const lx_array *a = in[0], *b = in[1];
    lx_array *out = *outp;
    if (a->size == out->size && b->size == out->size && out->size <= LX_PAR_MIN) {
        /* nothing broadcasts (a bias add at batch 1): one row, no plan; the same kernel per element */
        op->fn[a->dtype](out->data, (const void *const[]){a->data, b->data}, (const int64_t[]){1, 1}, out->size, NULL);
        return LX_OK;
    }
    const int ndims[] = {a->ndim, b->ndim};
    const int64_t *shapes[] = {a->shape, b->shape};
    lx_bcast bc;
    lx_bcast_plan(&bc, 2, ndims, shapes, out->ndim, out->shape);
    const size_t es = lx_dtype_size(a->dtype);
    lx_bcast_run(&bc, out->data, lx_dtype_size(out->dtype), (const void *const[]){a->data, b->data},
                 (const size_t[]){es, es}, op->fn[a->dtype], NULL);
    return LX_OK;
}

#define BINARY_BUILDER(name, ID)                                                                     \
    lx_array *lx_##name(lx_array *a, lx_array *b) { return lx_bind(LX_PRIM_##ID, NULL, 2, (lx_array *const[]){a, b}); }

BINARY_BUILDER(add, ADD)
BINARY_BUILDER(sub, SUB)
BINARY_BUILDER(mul, MUL)
BINARY_BUILDER(maximum, MAXIMUM)
BINARY_BUILDER(minimum, MINIMUM)
BINARY_BUILDER(div, DIV)
BINARY_BUILDER(pow, POW)
BINARY_BUILDER(eq, EQ)
BINARY_BUILDER(ne, NE)
BINARY_BUILDER(lt, LT)
BINARY_BUILDER(le, LE)
BINARY_BUILDER(gt, GT)
BINARY_BUILDER(ge, GE)

/* ---- scalars ---- */

lx_array *lx_scalar(float v) { return lx_autorelease(lx_array_scalar_f32(v)); }

lx_array *lx_scalar_i32(int32_t v) { return lx_autorelease(lx_array_from_data(LX_I32, 0, NULL, &v)); }

lx_array *lx_add_scalar(lx_array *x, float v) {
    if (!x) return lx_add(x, NULL); /* keeps the first failure's message */
    return lx_add(x, lx_scalar(v));
}

lx_array *lx_mul_scalar(lx_array *x, float v) {
    if (!x) return lx_mul(x, NULL);
    return lx_mul(x, lx_scalar(v));
}

/* ---- where ---- */

#define WHERE_KERNEL(name, T)                                                            \
    static void name(void *out_, const void *const *in, const int64_t *step, int64_t n,  \
                     const void *ctx) {                                                  \
        (void)ctx;                                                                       \
        T *restrict o = out_;                                                            \
        const uint8_t *c = in[0];                                                        \
        const T *a = in[1], *b = in[2];                                                  \
        if (step[0] && step[1] && step[2]) {                                             \
            for (int64_t i = 0; i < n; i++) o[i] = c[i] ? a[i] : b[i];                   \
        } else {                                                                         \
            const int64_t sc = step[0], sa = step[1], sb = step[2];                      \
            for (int64_t i = 0; i < n; i++) o[i] = c[i * sc] ? a[i * sa] : b[i * sb];    \
        }                                                                                \
    }

/* where moves bits, so one kernel per element size covers every dtype. */
WHERE_KERNEL(where_4_forward, uint32_t)
WHERE_KERNEL(where_2_forward, uint16_t)
WHERE_KERNEL(where_1_forward, uint8_t)

LX_RULE(where) {
    LX_UNUSED_RULE;
    const lx_array *cond = in[0], *a = in[1], *b = in[2];
    if (cond->dtype != LX_BOOL)
        return lx_fail(LX_ERR_DTYPE, "where: condition must be bool, got %s with shape %s", lx_dtype_name(cond->dtype),
                       lx_ashp(cond));
    if (a->dtype != b->dtype)
        return lx_fail(LX_ERR_DTYPE, "where: operands have different dtypes %s %s and %s %s (lx_cast one first)",
                       lx_dtype_name(a->dtype), lx_ashp(a), lx_dtype_name(b->dtype), lx_ashp(b));
    const int ndims[] = {cond->ndim, a->ndim, b->ndim};
    const int64_t *shapes[] = {cond->shape, a->shape, b->shape};
    LX_TRY(lx_bcast_shape("where", 3, ndims, shapes, &av->ndim, av->shape));
    av->dtype = a->dtype;
    return LX_OK;
}

LX_FWD(where) {
    LX_UNUSED_FWD;
    const lx_array *cond = in[0], *a = in[1], *b = in[2];
    lx_array *out = *outp;
    const int ndims[] = {cond->ndim, a->ndim, b->ndim};
    const int64_t *shapes[] = {cond->shape, a->shape, b->shape};
    lx_bcast bc;
    lx_bcast_plan(&bc, 3, ndims, shapes, out->ndim, out->shape);
    const size_t es = lx_dtype_size(a->dtype);
    lx_bcast_row_fn fn = es == 4 ? where_4_forward : es == 2 ? where_2_forward : where_1_forward;
    lx_bcast_run(&bc, out->data, es, (const void *const[]){cond->data, a->data, b->data},
                 (const size_t[]){1, es, es}, fn, NULL);
    return LX_OK;
}

lx_array *lx_where(lx_array *cond, lx_array *a, lx_array *b) {
    return lx_bind(LX_PRIM_WHERE, NULL, 3, (lx_array *const[]){cond, a, b});
}
