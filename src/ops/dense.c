/* dense: x @ kernel + bias, then an activation, in one GEMM (linalg.h lx_dense).
 *
 * The forward is one lx_sgemm_ex whose epilogue adds the bias and applies ReLU on each C tile
 * right after its last K block (linalg_internal.h), so a Dense layer writes its output once
 * instead of two or three times (dot_general, add, relu). GELU and SiLU run after the GEMM, as one
 * vector-math pass over the output: the epilogue can run them per tile too (the same rows, the
 * same bits), but measured 0-2% slower on the AVX2 machine here (docs/kernels.md), so that is
 * opt-in (lx_dense_act_in_epilogue, LINNX_DENSE=act_epilogue). The product is the call
 * dot_general makes for x (..., K) . kernel (K, N) (the same sizes and leading dimensions), the
 * bias is added to the rounded product, and the activation is lx_relu's compare or the vector
 * math row that lx_gelu / lx_silu run (vmath.h), so the result is bit-identical to dot_general +
 * add + activation either way.
 *
 * Backward: g' = g * act'(z) (relu's mask from the output; gelu/silu from z, which the forward
 * keeps under a tape: the GEMM's output is then z, and y is written beside it), then the very
 * contractions and sum the unfused ops' rules run (dot_general's two, add's unbroadcast), so the
 * gradients are bit-identical too. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "linalg_internal.h"
#include "linnx/autodiff.h"
#include "linnx/linalg.h"
#include "linnx/ops.h"
#include "op_internal.h"
#include "vmath.h"

lx_status lx_vjp_relu(const void *params, int nin, lx_array *const *in, lx_array *out, lx_array *ct,
                      const bool *wants, lx_array **in_ct);
lx_status lx_vjp_gelu(const void *params, int nin, lx_array *const *in, lx_array *out, lx_array *ct,
                      const bool *wants, lx_array **in_ct);
lx_status lx_vjp_silu(const void *params, int nin, lx_array *const *in, lx_array *out, lx_array *ct,
                      const bool *wants, lx_array **in_ct);

static const char *act_name(lx_activation a) {
    switch (a) {
    case LX_ACT_NONE: return "none";
    case LX_ACT_RELU: return "relu";
    case LX_ACT_GELU_TANH: return "gelu_tanh";
    case LX_ACT_GELU_ERF: return "gelu_erf";
    case LX_ACT_SILU: return "silu";
    }
    return "?";
}

static bool act_valid(lx_activation a) { return (unsigned)a <= (unsigned)LX_ACT_SILU; }

/* LINNX_DENSE=unfused: always the separate ops (same-binary A/B measurements); =act_epilogue:
 * GELU/SiLU in the GEMM epilogue (see the top); lx_dense_act_in_epilogue overrides the latter. */
static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static bool env_unfused, env_act_epilogue;
static _Atomic int act_epilogue_forced = -1;
static void read_env(void) {
    const char *e = getenv("LINNX_DENSE");
    env_unfused = e && strcmp(e, "unfused") == 0;
    env_act_epilogue = e && strcmp(e, "act_epilogue") == 0;
}

void lx_dense_act_in_epilogue(int on) { act_epilogue_forced = on < 0 ? -1 : on != 0; }

static bool act_in_epilogue(void) {
    int f = act_epilogue_forced;
    if (f >= 0) return f;
    pthread_once(&env_once, read_env);
    return env_act_epilogue;
}

static lx_gemm_act gemm_act(lx_activation a) {
    switch (a) {
    case LX_ACT_RELU: return LX_GEMM_ACT_RELU;
    case LX_ACT_GELU_TANH: return LX_GEMM_ACT_GELU_TANH;
    case LX_ACT_GELU_ERF: return LX_GEMM_ACT_GELU_ERF;
    case LX_ACT_SILU: return LX_GEMM_ACT_SILU;
    default: return LX_GEMM_ACT_NONE;
    }
}

LX_RULE(dense) {
    (void)id, (void)nin;
    const lx_dense_params *p = params_;
    const lx_array *x = in[0], *k = in[1], *b = in[2];
    char sx[96], sk[96], sb[96];
#define XS lx_shape_str(x->ndim, x->shape, sx, sizeof sx)
#define KS lx_shape_str(k->ndim, k->shape, sk, sizeof sk)
#define BS (b ? lx_shape_str(b->ndim, b->shape, sb, sizeof sb) : "None")
    if (!act_valid(p->act)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "dense: unknown activation %d", (int)p->act);
    if (x->dtype != LX_F32 || k->dtype != LX_F32 || (b && b->dtype != LX_F32))
        return lx_fail(LX_ERR_DTYPE, "dense: expected float32 operands, got x %s%s, kernel %s%s and bias %s%s",
                       lx_dtype_name(x->dtype), XS, lx_dtype_name(k->dtype), KS, b ? lx_dtype_name(b->dtype) : "",
                       BS);
    if (x->ndim < 1 || k->ndim != 2 || x->shape[x->ndim - 1] != k->shape[0] ||
        (b && (b->ndim != 1 || b->shape[0] != k->shape[1])))
        return lx_fail(LX_ERR_SHAPE,
                       "dense: x %s, kernel %s and bias %s do not fit (x (..., K) times kernel (K, N) plus bias (N,))",
                       XS, KS, BS);
#undef XS
#undef KS
#undef BS
    lx_aval_like(av, LX_F32, x);
    av->shape[x->ndim - 1] = k->shape[1];
    return LX_OK;
}

LX_FWD(dense) {
    (void)id, (void)nin;
    const lx_dense_params *p = params_;
    const lx_array *x = in[0], *k = in[1], *b = in[2];
    lx_array *out = *outp;
    if (out->size == 0) return LX_OK;
    const int64_t K = k->shape[0], N = k->shape[1], M = out->size / N;
    /* gelu/silu under a tape: z is what their backward needs (the GEMM writes it, the epilogue
     * writes y = act(z) beside it); otherwise y overwrites z in place */
    bool smooth = p->act == LX_ACT_GELU_TANH || p->act == LX_ACT_GELU_ERF || p->act == LX_ACT_SILU;
    bool keep_z = smooth && lx_tape_active(), in_ep = smooth && act_in_epilogue();
    lx_array *z = out;
    if (keep_z && !(z = *saved = lx_op_result(LX_F32, out->ndim, out->shape, false))) return lx_last_status();
    const lx_gemm_epilogue ep = {.bias = b ? lx_f32(b) : NULL,
                                 .act = smooth && !in_ep ? LX_GEMM_ACT_NONE : gemm_act(p->act),
                                 .y = keep_z && in_ep ? lx_f32(out) : NULL, .ldy = N};
    /* the arguments dot_general passes for x (..., K) . kernel (K, N): the same bits */
    lx_status st = lx_sgemm_ex(false, false, M, N, K, 1.0f, lx_f32(x), K > 1 ? K : 1, lx_f32(k), N > 1 ? N : 1, 0.0f,
                               lx_f32(z), N, &ep, 0);
    if (st != LX_OK) {
        char sx[96], sk[96];
        return lx_fail_context(st, "dense of shapes %s and %s: ", lx_shape_str(x->ndim, x->shape, sx, sizeof sx),
                               lx_shape_str(k->ndim, k->shape, sk, sizeof sk));
    }
    if (smooth && !in_ep) /* the epilogue's own row (gemm.c), as one pass over the output */
        lx_vmath_map(lx_gemm_act_row(lx_isa_current(), gemm_act(p->act)), lx_f32(z), lx_f32(out), out->size);
    return LX_OK;
}

LX_ATTRS(dense) {
    (void)id, (void)nin, (void)in, (void)scratch;
    attrs[0] = LX_KW_STR("activation", act_name(((const lx_dense_params *)params_)->act));
    return 1;
}

/* in[3], when the forward ran under a tape with gelu/silu: z = x @ kernel + bias. */
lx_status lx_vjp_dense(const void *params, int nin, lx_array *const *in, lx_array *out, lx_array *ct,
                       const bool *wants, lx_array **in_ct) {
    const lx_dense_params *p = params;
    lx_array *x = in[0], *k = in[1], *b = in[2], *g = ct;
    const int nd = x->ndim;
    if (p->act != LX_ACT_NONE) { /* the unary ops' own rules: relu's on y (y > 0 exactly where z > 0,
                                  * NaN neither), gelu's and silu's on z */
        lx_array *z = p->act == LX_ACT_RELU ? out : nin > 3 ? in[3] : NULL;
        if (!z) { /* recorded without its z (not by lx_bind's forward): recompute it */
            const lx_dense_params none = {LX_ACT_NONE};
            if (!(z = lx_bind(LX_PRIM_DENSE, &none, 3, (lx_array *const[]){x, k, b}))) return lx_last_status();
        }
        const bool w = true;
        lx_array *gz = NULL;
        const lx_gelu_params gp = {p->act == LX_ACT_GELU_TANH};
        lx_status st = p->act == LX_ACT_RELU   ? lx_vjp_relu(NULL, 1, &z, out, ct, &w, &gz)
                       : p->act == LX_ACT_SILU ? lx_vjp_silu(NULL, 1, &z, out, ct, &w, &gz)
                                               : lx_vjp_gelu(&gp, 1, &z, out, ct, &w, &gz);
        if (st != LX_OK) return st;
        if (!(g = gz)) return lx_last_status() ? lx_last_status() : LX_ERR_INTERNAL;
    }
    /* add's rule: g' summed over the leading axes (unbroadcast); first, while g' is in cache (the
     * contractions stream the kernel and x through it: after them the sum ran at a quarter the speed) */
    if (b && wants[2]) {
        if (nd == 1) {
            in_ct[2] = g;
        } else {
            int64_t lead[LX_MAX_DIMS];
            for (int i = 0; i < nd - 1; i++) lead[i] = i;
            if (!(in_ct[2] = lx_reshape(lx_sum(g, nd - 1, lead, true), 1, b->shape))) return lx_last_status();
        }
    }
    /* dot_general's rule for contracting x's last axis with the kernel's first: dx = g' . kernel^T,
     * dkernel = x^T . g' (over every leading axis of x), already in the operands' axis order */
    if (wants[0]) {
        const int64_t gc = nd - 1, kc = 1;
        if (!(in_ct[0] = lx_dot_general(g, k, 1, &gc, &kc, 0, NULL, NULL))) return lx_last_status();
    }
    if (wants[1]) {
        int64_t lead[LX_MAX_DIMS];
        for (int i = 0; i < nd - 1; i++) lead[i] = i;
        if (!(in_ct[1] = lx_dot_general(x, g, nd - 1, lead, lead, 0, NULL, NULL))) return lx_last_status();
    }
    return LX_OK;
}

/* dot_general, add, activation: what Dense ran before this primitive, and still runs while anything
 * watches primitives (an observer sees the dot_general, a substituter can quantize it). */
static lx_array *dense_unfused(lx_array *x, lx_array *kernel, lx_array *bias, lx_activation act) {
    const int64_t lc = x->ndim - 1, rc = 0;
    lx_array *y = lx_dot_general(x, kernel, 1, &lc, &rc, 0, NULL, NULL);
    if (bias) y = lx_add(y, bias);
    switch (act) {
    case LX_ACT_NONE: return y;
    case LX_ACT_RELU: return lx_relu(y);
    case LX_ACT_GELU_TANH: return lx_gelu(y, true);
    case LX_ACT_GELU_ERF: return lx_gelu(y, false);
    case LX_ACT_SILU: return lx_silu(y);
    }
    return y;
}

bool lx_dense_fuses(void) {
    pthread_once(&env_once, read_env);
    return !env_unfused && !lx_prim_observed() && !lx_prim_substituting();
}

lx_array *lx_dense(lx_array *x, lx_array *kernel, lx_array *bias, lx_activation act) {
    const lx_dense_params prm = {act};
    lx_array *const ins[] = {x, kernel, bias};
    if (x && kernel && act_valid(act) && kernel->ndim == 2) {
        /* other dtypes and an x that does not meet the kernel: dot_general's own message (what
         * Dense always said), or a quantization session's int8 kernel, which it knows; a bias that
         * is not (N,) (a scalar, (1,), (1, N): Flax's reshape-then-add broadcasts them) goes to
         * add's broadcasting, as before this primitive */
        bool f32 = x->dtype == LX_F32 && kernel->dtype == LX_F32 && (!bias || bias->dtype == LX_F32);
        bool bias_n = !bias || (bias->ndim == 1 && bias->shape[0] == kernel->shape[1]);
        if (!f32 || !bias_n || x->ndim < 1 || x->shape[x->ndim - 1] != kernel->shape[0])
            return dense_unfused(x, kernel, bias, act);
        if (!lx_dense_fuses()) {
            lx_dense_params chk = prm; /* dense's own checks first (the bias) */
            lx_prim_aval av;
            if (lx_rule_dense(LX_PRIM_DENSE, &chk, 3, ins, &av) != LX_OK) return NULL;
            return dense_unfused(x, kernel, bias, act);
        }
    }
    return lx_bind(LX_PRIM_DENSE, &prm, 3, ins);
}
