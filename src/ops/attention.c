/* Flax's dot_product_attention (grouped-query heads, bias, boolean masks, causal) and
 * make_causal_mask.
 *
 * With the default scale the query is first divided by sqrt(depth), as Flax does; an explicit
 * scale multiplies the product instead (jax.nn.dot_product_attention).
 * Per (batch, head) and block of query rows: logits = scale * q k^T straight from the
 * (seq, heads, dim) layout (row stride heads * dim, so no transposes), bias added, masks applied
 * with float32's lowest value as Flax does, softmax per row, then out = weights v written into the
 * (seq, heads, dv) output with the same strided trick. Blocks of query rows bound the logits buffer
 * (Q_BLOCK x kv_len per thread). */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "attention_internal.h"
#include "linalg_internal.h"
#include "linnx/nn.h"
#include "linnx/threads.h"
#include "nn_internal.h"
#include "linnx/autodiff.h"
#include "linnx/intercept.h"
#include "linnx/linalg.h"
#include "linnx/ops.h"
#include "op_internal.h"

#define Q_BLOCK 128

typedef struct {
    int64_t nbatch, T, S, H, G, d, dv; /* G: kv heads */
    float scale;
    bool causal;
    int nbd;                            /* batch axes */
    int64_t bshape[LX_MAX_DIMS];
    const float *bias;                  /* broadcast strides over (batch..., H, T, S) */
    int64_t bias_st[LX_MAX_DIMS];
    const uint8_t *mask;
    int64_t mask_st[LX_MAX_DIMS];
} attn_dims;

static int64_t bcast_base(const attn_dims *a, const int64_t *st, int64_t b, int64_t h) {
    int64_t off = h * st[a->nbd], rest = b;
    for (int i = a->nbd - 1; i >= 0; i--) {
        off += (rest % a->bshape[i]) * st[i];
        rest /= a->bshape[i];
    }
    return off;
}

/* logits rows [t0, t0 + tq) of (b, h) -> softmax weights in w (tq x S). */
static void attention_weights_full(const attn_dims *a, const float *qb, int64_t ldq, const float *k, int64_t b,
                                   int64_t h, int64_t t0, int64_t tq, float *w) {
    int64_t g = h / (a->H / a->G), S = a->S;
    const float *kb = k + (b * S * a->G + g) * a->d;
    lx_sgemm_serial(false, true, tq, S, a->d, a->scale, qb, ldq, kb, a->G * a->d, 0.0f, w, S);
    int nb = a->nbd;
    int64_t boff = a->bias ? bcast_base(a, a->bias_st, b, h) : 0, moff = a->mask ? bcast_base(a, a->mask_st, b, h) : 0;
    for (int64_t i = 0; i < tq; i++) {
        int64_t t = t0 + i;
        float *row = w + i * S;
        if (a->bias) {
            const float *br = a->bias + boff + t * a->bias_st[nb + 1];
            int64_t bs = a->bias_st[nb + 2];
            for (int64_t s = 0; s < S; s++) row[s] += br[s * bs];
        }
        if (a->mask) {
            const uint8_t *mr = a->mask + moff + t * a->mask_st[nb + 1];
            int64_t ms = a->mask_st[nb + 2];
            for (int64_t s = 0; s < S; s++) row[s] = mr[s * ms] ? row[s] : -FLT_MAX;
        }
        if (a->causal)
            for (int64_t s = t + 1; s < S; s++) row[s] = -FLT_MAX;
        softmax_row_forward(row, row, S, false);
    }
}

/* Causal attention without bias or mask: query row t only needs keys [0, t]. Row t's logits and
 * softmax run over its first n_t = min(S, t + 1 rounded up to 16) keys, the keys in (t, n_t)
 * taking float32's lowest value as before; every key past n_t has weight exactly +0 (what the
 * full row gives: exp underflows to 0). n_t is S or a multiple of 16 below S, so each kept
 * logit sits in the same vector lane of the softmax kernel (8 or 16 lanes) as in the full row,
 * the skipped ones would only have added exact zeros, and the weights are the full row's bits.
 * Returns the columns computed (the block's last row's n_t): weights past it are zero and the PV
 * product may stop there. A row whose kept logits are all -inf or NaN (the full row would then
 * spread its weight over the masked keys) makes the block fall back to the full computation
 * (returns S). `zero_tail`: write the zero weights of columns [returned, S) too (weights output,
 * or the tape's copy). */
#define CAUSAL_Q_BLOCK 32
#define CAUSAL_ROUND 16
static int64_t attention_weights_causal(const attn_dims *a, const float *qb, int64_t ldq, const float *k, int64_t b,
                                        int64_t h, int64_t t0, int64_t tq, float *w, bool zero_tail) {
    int64_t g = h / (a->H / a->G), S = a->S;
    int64_t ncols = (t0 + tq + CAUSAL_ROUND - 1) / CAUSAL_ROUND * CAUSAL_ROUND;
    ncols = ncols < S ? ncols : S;
    const float *kb = k + (b * S * a->G + g) * a->d;
    lx_sgemm_serial(false, true, tq, ncols, a->d, a->scale, qb, ldq, kb, a->G * a->d, 0.0f, w, S);
    for (int64_t i = 0; i < tq; i++) {
        int64_t t = t0 + i, keep = t + 1 < S ? t + 1 : S;
        int64_t n = (keep + CAUSAL_ROUND - 1) / CAUSAL_ROUND * CAUSAL_ROUND;
        n = n < ncols ? n : ncols;
        float *row = w + i * S;
        int any = 0; /* a kept logit that is neither -inf nor NaN (a loop the compiler vectorises) */
        for (int64_t s = 0; s < keep; s++) any |= row[s] >= -FLT_MAX;
        if (!any) { /* all -inf / NaN: the full row's answer differs */
            attention_weights_full(a, qb, ldq, k, b, h, t0, tq, w);
            return S;
        }
        for (int64_t s = keep; s < n; s++) row[s] = -FLT_MAX;
        softmax_row_forward(row, row, n, false);
        for (int64_t s = n; s < (zero_tail ? S : ncols); s++) row[s] = 0.0f;
    }
    return ncols;
}

/* Output rows [t0, t0 + tq) of (b, h) through the weights in w (tq x S; the tape's copy when
 * `kept`): the product with v stops where the causal weights are exactly zero, unless a value row
 * past that holds inf / NaN (vbad, cached per value block in vlast). qb: the query's row t0 (ldq). */
static void attention_rows_general(const attn_dims *a, const float *qb, int64_t ldq, const float *k, const float *v,
                                   int64_t b, int64_t h, int64_t t0, int64_t tq, float *out, float *w, bool kept,
                                   bool causal_fast, const float **vlast, int64_t *vbad) {
    int64_t g = h / (a->H / a->G), kcols = a->S;
    const float *vb = v + (b * a->S * a->G + g) * a->dv;
    if (causal_fast) kcols = attention_weights_causal(a, qb, ldq, k, b, h, t0, tq, w, kept);
    else attention_weights_full(a, qb, ldq, k, b, h, t0, tq, w);
    /* zero weights times an inf / NaN value are NaN in the full product: keep it then */
    if (kcols < a->S && vb != *vlast) {
        *vbad = nn_last_nonfinite_row(vb, a->G * a->dv, a->S, a->dv);
        *vlast = vb;
    }
    if (kcols < a->S && *vbad >= kcols) {
        for (int64_t i = 0; i < tq; i++)
            for (int64_t s = kcols; s < a->S; s++) w[i * a->S + s] = 0.0f;
        kcols = a->S;
    }
    lx_sgemm_serial(false, false, tq, a->dv, kcols, 1.0f, w, a->S, vb, a->G * a->dv, 0.0f,
                    out + ((b * a->T + t0) * a->H + h) * a->dv, a->H * a->dv);
}

/* The fused kernel for this attention (attention_internal.h), or NULL: attention with v, no bias
 * or mask, depths the kernel takes, no weights to keep, at least 16 queries (a decode step's
 * single query would leave most lanes idle: the GEMM path is better there), and a kernel set that
 * has one (AVX-512, AVX2). */
#define FLASH_Q_BLOCK 128
static lx_flash_fwd_fn flash_kernel(const attn_dims *a, bool has_v, bool keep) {
    if (!has_v || keep || a->bias || a->mask || a->T < 16 || a->d < 1 || a->dv < 1 || a->d > LX_FLASH_MAX_D ||
        a->dv > LX_FLASH_MAX_D || a->T > INT32_MAX / 16 || a->H * a->d > INT32_MAX / 16)
        return NULL;
    switch (lx_isa_current()) {
    case LX_ISA_AVX512: return lx_flash_fwd_avx512();
    case LX_ISA_AVX2: return lx_flash_fwd_avx2();
    default: return NULL;
    }
}

/* q / sqrt(depth), Flax's scaling, over the pool */
typedef struct qscale_ctx {
    float *out;
    const float *q;
    float div;
} qscale_ctx;

static int qscale_range(void *ctx, int64_t lo, int64_t hi) {
    const qscale_ctx *c = ctx;
    for (int64_t i = lo; i < hi; i++) c->out[i] = c->q[i] / c->div;
    return 0;
}

/* attention_forward's jobs [lo, hi): one block of query rows of one (batch, head) each. */
typedef struct attn_fwd_ctx {
    const attn_dims *a;
    const float *q, *k, *v;
    float *out, *keep;
    float qdiv;
    float *lse;
    lx_flash_fwd_fn flash;
    const lx_flash_args *fa;
    int64_t qblk, nqb;
    bool causal_fast;
    atomic_int incomplete;
} attn_fwd_ctx;

static int attn_fwd_jobs(void *ctx, int64_t lo, int64_t hi) {
    attn_fwd_ctx *c = ctx;
    const attn_dims *a = c->a;
    const float *q = c->q, *k = c->k, *v = c->v;
    float *out = c->out, *keep = c->keep, *lse = c->lse;
    const float qdiv = c->qdiv;
    const lx_flash_fwd_fn flash = c->flash;
    const int64_t qblk = c->qblk, nqb = c->nqb;
    const bool causal_fast = c->causal_fast;
    const lx_flash_args fa = *c->fa;
    float *buf = v && !keep && !flash ? malloc(sizeof(float) * (size_t)(qblk * a->S)) : NULL;
    float *fscratch = flash ? malloc(sizeof(float) * (size_t)lx_flash_scratch(&fa)) : NULL;
    const float *vlast = NULL; /* the value block whose last non-finite row is vbad */
    int64_t vbad = -1;
    bool nomem = (v && !keep && !flash && !buf) || (flash && !fscratch);
    for (int64_t j = lo; j < hi; j++) {
        if (nomem) continue;
        int64_t qb = j % nqb, h = (j / nqb) % a->H, b = j / (nqb * a->H);
        int64_t t0 = qb * qblk, tq = a->T - t0 < qblk ? a->T - t0 : qblk;
        if (flash) {
            /* inf / NaN in q, k or v (zero weights times an inf value are NaN in the full
             * product) or an overflowing logit: the general path has the exact answers */
            int64_t g = h / (a->H / a->G);
            const float *vb = v + (b * a->S * a->G + g) * a->dv;
            if (flash(&fa, q + (b * a->T * a->H + h) * a->d, k + (b * a->S * a->G + g) * a->d, vb, t0, tq,
                      out + (b * a->T * a->H + h) * a->dv, lse ? lse + (b * a->H + h) * a->T : NULL, fscratch))
                continue;
            if (lse) { /* the caller runs everything again the general way, keeping the weights */
                atomic_store(&c->incomplete, 1);
                continue;
            }
            if (!buf && !(buf = malloc(sizeof(float) * (size_t)(qblk * a->S)))) {
                nomem = true;
                continue;
            }
            if (qdiv != 0.0f) { /* the general path takes the divided query */
                float *qs = malloc(sizeof(float) * (size_t)(tq * a->d));
                if (!qs) {
                    nomem = true;
                    continue;
                }
                for (int64_t t = 0; t < tq; t++)
                    for (int64_t c = 0; c < a->d; c++) qs[t * a->d + c] = q[((b * a->T + t0 + t) * a->H + h) * a->d + c] / qdiv;
                attention_rows_general(a, qs, a->d, k, v, b, h, t0, tq, out, buf, false, causal_fast, &vlast, &vbad);
                free(qs);
            } else {
                attention_rows_general(a, q + ((b * a->T + t0) * a->H + h) * a->d, a->H * a->d, k, v, b, h, t0, tq,
                                       out, buf, false, causal_fast, &vlast, &vbad);
            }
            continue;
        }
        const float *qrow = q + ((b * a->T + t0) * a->H + h) * a->d;
        if (!v) { /* weights straight into the output */
            float *wo = out + ((b * a->H + h) * a->T + t0) * a->S;
            if (causal_fast) (void)attention_weights_causal(a, qrow, a->H * a->d, k, b, h, t0, tq, wo, true);
            else attention_weights_full(a, qrow, a->H * a->d, k, b, h, t0, tq, wo);
            continue;
        }
        attention_rows_general(a, qrow, a->H * a->d, k, v, b, h, t0, tq, out,
                               keep ? keep + ((b * a->H + h) * a->T + t0) * a->S : buf, keep != NULL, causal_fast,
                               &vlast, &vbad);
    }
    free(buf);
    free(fscratch);
    return nomem;
}

/* out (batch..., T, H, dv) or, when v is NULL, the weights (batch..., H, T, S) into out. With
 * `keep` (batch..., H, T, S) the weights of the first case are written there too (the backward's
 * softmax output while a tape records) instead of a scratch block. `qdiv`: q still needs Flax's
 * division by sqrt(depth) (only with a fused kernel, which does it on the fly). With `lse`
 * (batch..., H, T; fused kernel only) the rows' log-sum-exp goes there, and a job the kernel
 * declines sets *incomplete instead of running the general path. */
static lx_status attention_forward(const attn_dims *a, const float *q, const float *k, const float *v, float *out,
                                   float *keep, float qdiv, float *lse, int *incomplete) {
    bool causal_fast = a->causal && !a->bias && !a->mask;
    const lx_flash_fwd_fn flash = flash_kernel(a, v != NULL, keep != NULL);
    const lx_flash_args fa = {.S = a->S, .d = a->d, .dv = a->dv, .ldq = a->H * a->d, .ldk = a->G * a->d,
                              .ldv = a->G * a->dv, .ldo = a->H * a->dv, .qdiv = qdiv,
                              .qmul = a->scale * 1.44269504088896341f, .causal = a->causal};
    int64_t qblk = flash ? FLASH_Q_BLOCK : causal_fast ? CAUSAL_Q_BLOCK : Q_BLOCK;
    int64_t nqb = (a->T + qblk - 1) / qblk, jobs = a->nbatch * a->H * nqb;
    double work = (double)a->nbatch * a->H * a->T * a->S * (a->d + a->dv);
    int nt = work > (1 << 18) ? lx_num_threads() : 1;
    attn_fwd_ctx c = {a, q, k, v, out, keep, qdiv, lse, flash, &fa, qblk, nqb, causal_fast};
    atomic_init(&c.incomplete, 0);
    int failed = lx_parallel_for(nt, jobs, attn_fwd_jobs, &c);
    if (incomplete && atomic_load(&c.incomplete)) *incomplete = 1;
    return failed ? lx_fail(LX_ERR_NO_MEMORY, "dot_product_attention: out of memory") : LX_OK;
}

/* The geometry of attention over (q, k, v or NULL, bias, mask) with the raw scale (0: Flax's
 * 1/sqrt(depth) on q): every check of the shape rule; full gets the logits' shape. */
static lx_status attention_plan(const char *op, const lx_array *q, const lx_array *k, const lx_array *v,
                                const lx_array *bias, const lx_array *mask, bool causal, float scale, attn_dims *ap,
                                int64_t *full) {
    char bq[96], bk[96], bv[96], bo[96];
    const char *qs = lx_shape_str(q->ndim, q->shape, bq, sizeof bq), *ks = lx_shape_str(k->ndim, k->shape, bk, sizeof bk);
    const char *vs = v ? lx_shape_str(v->ndim, v->shape, bv, sizeof bv) : "None";
    if (q->dtype != LX_F32 || k->dtype != LX_F32 || (v && v->dtype != LX_F32))
        return lx_fail(LX_ERR_DTYPE, "%s: expected float32 query, key and value, got %s, %s and %s", op,
                       lx_dtype_name(q->dtype), lx_dtype_name(k->dtype), v ? lx_dtype_name(v->dtype) : "None");
    int n = q->ndim;
    bool ok = n >= 3 && k->ndim == n && (!v || v->ndim == n);
    for (int i = 0; ok && i < n - 3; i++) ok = q->shape[i] == k->shape[i] && (!v || v->shape[i] == q->shape[i]);
    if (!ok)
        return lx_fail(LX_ERR_SHAPE, "%s: query %s, key %s and value %s must be (batch..., length, heads, depth) with equal batch axes",
                       op, qs, ks, vs);
    attn_dims a = {.T = q->shape[n - 3], .H = q->shape[n - 2], .d = q->shape[n - 1], .S = k->shape[n - 3],
                   .G = k->shape[n - 2], .causal = causal, .nbd = n - 3, .nbatch = 1};
    a.dv = v ? v->shape[n - 1] : 0;
    for (int i = 0; i < n - 3; i++) a.bshape[i] = q->shape[i], a.nbatch *= q->shape[i];
    if (k->shape[n - 1] != a.d || (v && (v->shape[n - 3] != a.S || v->shape[n - 2] != a.G)))
        return lx_fail(LX_ERR_SHAPE, "%s: query %s, key %s and value %s disagree: query and key depth, key and value length and heads must match",
                       op, qs, ks, vs);
    if (a.G == 0 || a.H % a.G != 0)
        return lx_fail(LX_ERR_SHAPE, "%s: %lld query heads are not a multiple of %lld key/value heads (query %s, key %s)", op,
                       (long long)a.H, (long long)a.G, qs, ks);
    for (int i = 0; i < n - 3; i++) full[i] = q->shape[i];
    full[n - 3] = a.H, full[n - 2] = a.T, full[n - 1] = a.S;
    const char *fs = lx_shape_str(n, full, bo, sizeof bo);
    if (bias && (bias->dtype != LX_F32 || !nn_bcast_strides(bias, n, full, a.bias_st))) {
        char bb[96];
        return lx_fail(bias->dtype != LX_F32 ? LX_ERR_DTYPE : LX_ERR_SHAPE, "%s: bias %s%s does not broadcast to float32 logits of shape %s",
                       op, lx_dtype_name(bias->dtype), lx_shape_str(bias->ndim, bias->shape, bb, sizeof bb), fs);
    }
    if (mask && (mask->dtype != LX_BOOL || !nn_bcast_strides(mask, n, full, a.mask_st))) {
        char bb[96];
        return lx_fail(mask->dtype != LX_BOOL ? LX_ERR_DTYPE : LX_ERR_SHAPE, "%s: mask %s%s does not broadcast to a bool mask of shape %s",
                       op, lx_dtype_name(mask->dtype), lx_shape_str(mask->ndim, mask->shape, bb, sizeof bb), fs);
    }
    if (!(scale >= 0.0f) || isinf(scale))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: scale must be finite and >= 0 (0: 1/sqrt(depth)), got %g", op, (double)scale);
    a.scale = scale == 0.0f ? 1.0f : scale;
    *ap = a;
    return LX_OK;
}

static const char *attention_name(lx_prim_id id) {
    return id == LX_PRIM_DOT_PRODUCT_ATTENTION ? "dot_product_attention" : "dot_product_attention_weights";
}

/* Inputs by role: dot_product_attention binds (q, k, v, bias, mask), the weights (q, k, bias, mask). */
#define ATT_V(id, in) ((id) == LX_PRIM_DOT_PRODUCT_ATTENTION ? (in)[2] : NULL)
#define ATT_BIAS(id, in) ((id) == LX_PRIM_DOT_PRODUCT_ATTENTION ? (in)[3] : (in)[2])
#define ATT_MASK(id, in) ((id) == LX_PRIM_DOT_PRODUCT_ATTENTION ? (in)[4] : (in)[3])

/* The raw scale of params (0: Flax's scaling): builders' and normalised params alike. */
static float raw_scale(const lx_attention_params *p) { return p->flax_scaling ? 0.0f : p->scale; }

LX_RULE(attention) {
    (void)nin;
    lx_attention_params *p = params_;
    const lx_array *q = in[0], *k = in[1], *v = ATT_V(id, in);
    attn_dims a;
    int64_t full[LX_MAX_DIMS];
    LX_TRY(attention_plan(attention_name(id), q, k, v, ATT_BIAS(id, in), ATT_MASK(id, in), p->causal, raw_scale(p), &a,
                          full));
    /* scale 0 is Flax's dot_product_attention: query / sqrt(depth) in float32, element by element,
     * before the q k^T einsum (then GEMM alpha 1). An explicit scale multiplies the logits after
     * the product, as jax.nn.dot_product_attention's `scale` does (GEMM alpha). */
    const bool flax_scaling = raw_scale(p) == 0.0f;
    const float sqrt_depth = sqrtf((float)(a.d > 0 ? a.d : 1));
    p->scale = flax_scaling ? 1.0f / sqrt_depth : p->scale;
    p->flax_scaling = flax_scaling;
    const int n = q->ndim;
    for (int i = 0; i < n; i++) av->shape[i] = v ? q->shape[i] : full[i];
    if (v) av->shape[n - 1] = a.dv;
    av->ndim = n;
    av->dtype = LX_F32;
    return LX_OK;
}

LX_FWD(attention) {
    (void)nin;
    const lx_attention_params *p = params_;
    const char *op = attention_name(id);
    const lx_array *q = in[0], *k = in[1], *v = ATT_V(id, in), *bias = ATT_BIAS(id, in), *mask = ATT_MASK(id, in);
    lx_array *out = *outp;
    attn_dims a;
    int64_t full[LX_MAX_DIMS];
    LX_TRY(attention_plan(op, q, k, v, bias, mask, p->causal, raw_scale(p), &a, full));
    const bool flax_scaling = p->flax_scaling;
    const float sqrt_depth = sqrtf((float)(a.d > 0 ? a.d : 1));
    const int n = q->ndim;
    /* under a tape, keep the softmax weights for the backward (llm.c keeps its att buffer) */
    const bool tape = v && out->size > 0 && a.S > 0 && lx_tape_active();
    lx_array *kept = NULL;
    *saved = NULL;
    if (out->size > 0) {
        a.bias = bias ? lx_f32(bias) : NULL;
        a.mask = mask ? lx_bool(mask) : NULL;
        if (a.S == 0) { /* no keys: softmax over nothing is empty; Flax would give NaN, we give 0 */
            for (int64_t i = 0; i < out->size; i++) lx_f32(out)[i] = 0;
        } else {
            const float *qd = lx_f32(q);
            float *qscaled = NULL;
            /* the fused kernel divides its query tiles itself; under a tape it keeps each row's
             * log-sum-exp (batch..., H, T) and the backward recomputes the weights from it */
            if (flash_kernel(&a, v != NULL, false)) {
                lx_array *lse = tape ? lx_op_result(LX_F32, n - 1, full, false) : NULL;
                int incomplete = 0;
                LX_TRY(attention_forward(&a, qd, lx_f32(k), lx_f32(v), lx_f32(out), NULL, flax_scaling ? sqrt_depth : 0.0f,
                                         lse ? lx_f32(lse) : NULL, &incomplete));
                if (!incomplete) {
                    *saved = lse;
                    return LX_OK;
                }
                /* inf / NaN inputs under a tape: the weights, the general way */
            }
            kept = tape ? lx_op_result(LX_F32, n, full, false) : NULL;
            *saved = kept;
            if (flax_scaling) { /* one pass over q: O(q) against the O(q * kv_len) product */
                qscaled = malloc(sizeof(float) * (size_t)(q->size > 0 ? q->size : 1));
                if (!qscaled) {
                    char bq[96];
                    return lx_fail(LX_ERR_NO_MEMORY, "%s: cannot allocate the scaled query %s", op,
                                   lx_shape_str(q->ndim, q->shape, bq, sizeof bq));
                }
                const int64_t nq = q->size;
                qscale_ctx qc = {qscaled, qd, sqrt_depth};
                lx_parallel_for(LX_PAR_THREADS(nq > (1 << 15)), nq, qscale_range, &qc);
                qd = qscaled;
            }
            lx_status st = attention_forward(&a, qd, lx_f32(k), v ? lx_f32(v) : NULL, lx_f32(out),
                                             kept ? lx_f32(kept) : NULL, 0.0f, NULL, NULL);
            free(qscaled);
            if (st != LX_OK) return st;
        }
    }
    return LX_OK;
}

LX_ATTRS(attention) {
    (void)id, (void)nin, (void)in, (void)scratch;
    const lx_attention_params *p = params_;
    attrs[0] = LX_KW_BOOL("causal", p->causal);
    attrs[1] = LX_KW_FLOAT("scale", p->scale);
    return 2;
}

static lx_array *attention_op(const char *op, lx_array *q, lx_array *k, lx_array *v, lx_array *bias, lx_array *mask,
                              bool causal, float scale) {
    (void)op;
    const lx_attention_params prm = {.causal = causal, .flax_scaling = scale == 0.0f, .scale = scale};
    if (v) return lx_bind(LX_PRIM_DOT_PRODUCT_ATTENTION, &prm, 5, (lx_array *const[]){q, k, v, bias, mask});
    return lx_bind(LX_PRIM_DOT_PRODUCT_ATTENTION_WEIGHTS, &prm, 4, (lx_array *const[]){q, k, bias, mask});
}

/* While an op interceptor listens (intercept.h), attention runs as its two products so each is an
 * event with operand roles, as Qwix sees Flax's two einsums: the weights primitive (reported as
 * "einsum" of q and k, intercept.c) and weights . v as a dot_general. GQA groups the H query heads
 * by the G kv heads: w (b.., G, H/G, T, S) . v (b.., S, G, dv) batched over (b.., G). */
static lx_array *attention_decomposed(lx_array *q, lx_array *k, lx_array *v, lx_array *bias, lx_array *mask,
                                      bool causal, float scale) {
    int n = q->ndim, nb = n - 3;
    if (n < 3 || k->ndim != n || v->ndim != n || k->shape[n - 2] == 0 || q->shape[n - 2] % k->shape[n - 2] != 0)
        return attention_op("dot_product_attention", q, k, v, bias, mask, causal, scale); /* its errors */
    lx_array *w = lx_dot_product_attention_weights(q, k, bias, mask, causal, scale);
    if (!w) return NULL;
    int64_t H = q->shape[n - 2], T = q->shape[n - 3], S = k->shape[n - 3], G = k->shape[n - 2], dv = v->shape[n - 1];
    int64_t ws[LX_MAX_DIMS + 1], lb[LX_MAX_DIMS], rb[LX_MAX_DIMS], perm[LX_MAX_DIMS + 1], os[LX_MAX_DIMS];
    for (int i = 0; i < nb; i++) ws[i] = os[i] = q->shape[i], lb[i] = rb[i] = i;
    ws[nb] = G, ws[nb + 1] = H / G, ws[nb + 2] = T, ws[nb + 3] = S;
    lb[nb] = nb, rb[nb] = nb + 1;
    lx_array *wg = lx_reshape(w, n + 1, ws);
    /* result (b.., G, H/G, T, dv) -> (b.., T, G, H/G, dv) -> (b.., T, H, dv) */
    lx_array *o = lx_dot_general(wg, v, 1, (int64_t[]){n}, (int64_t[]){nb}, nb + 1, lb, rb);
    for (int i = 0; i < nb; i++) perm[i] = i;
    perm[nb] = nb + 2, perm[nb + 1] = nb, perm[nb + 2] = nb + 1, perm[nb + 3] = nb + 3;
    os[nb] = T, os[nb + 1] = H, os[nb + 2] = dv;
    return lx_reshape(lx_transpose(o, n + 1, perm), n, os);
}

lx_array *lx_dot_product_attention(lx_array *q, lx_array *k, lx_array *v, lx_array *bias, lx_array *mask,
                                   bool causal, float scale) {
    if (!v) { /* v is required here: bind reports the earlier failure (or this NULL) */
        const lx_attention_params prm = {.causal = causal, .flax_scaling = scale == 0.0f, .scale = scale};
        return lx_bind(LX_PRIM_DOT_PRODUCT_ATTENTION, &prm, 5, (lx_array *const[]){q, k, v, bias, mask});
    }
    if (q && k && lx_intercepting() && q->dtype == LX_F32 && !lx_is_abstract(q) && !lx_is_abstract(k) &&
        !lx_is_abstract(v))
        return attention_decomposed(q, k, v, bias, mask, causal, scale);
    return attention_op("dot_product_attention", q, k, v, bias, mask, causal, scale);
}

lx_array *lx_dot_product_attention_weights(lx_array *q, lx_array *k, lx_array *bias, lx_array *mask, bool causal,
                                           float scale) {
    return attention_op("dot_product_attention_weights", q, k, NULL, bias, mask, causal, scale);
}

LX_RULE(make_causal_mask) {
    LX_UNUSED_RULE;
    const lx_array *x = in[0];
    if (x->ndim < 1 || x->ndim + 2 > LX_MAX_DIMS) {
        char b[96];
        return lx_fail(LX_ERR_SHAPE, "make_causal_mask: input of shape %s must have 1 to %d axes (batch..., length)",
                       lx_shape_str(x->ndim, x->shape, b, sizeof b), LX_MAX_DIMS - 2);
    }
    int64_t L = x->shape[x->ndim - 1];
    for (int i = 0; i < x->ndim - 1; i++) av->shape[i] = x->shape[i];
    av->shape[x->ndim - 1] = 1, av->shape[x->ndim] = L, av->shape[x->ndim + 1] = L;
    av->ndim = x->ndim + 2;
    av->dtype = LX_BOOL;
    return LX_OK;
}

LX_FWD(make_causal_mask) {
    LX_UNUSED_FWD;
    const lx_array *x = in[0];
    lx_array *out = *outp;
    int64_t L = x->shape[x->ndim - 1], nb = 1;
    for (int i = 0; i < x->ndim - 1; i++) nb *= x->shape[i];
    for (int64_t b = 0; b < nb; b++)
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < L; j++) lx_bool(out)[(b * L + i) * L + j] = j <= i;
    return LX_OK;
}

lx_array *lx_make_causal_mask(lx_array *x) { return lx_bind(LX_PRIM_MAKE_CAUSAL_MASK, NULL, 1, &x); }
