/* Fused attention forward on AVX-512 (attention_internal.h; compiled with -mavx512f/bw/vl/dq and
 * FMA, run only after cpuid says so).
 *
 * A tile is 16 query rows, one per vector lane. Per block of 16 keys:
 *   logits  s_j = sum_c Qt[c] * k[j][c]      16 x d FMAs, Qt (d x 16) the tile's scaled queries
 *                                            transposed, k[j][c] a broadcast memory operand
 *   max     m' = max(m, s_0 .. s_15)         vertical (one max per key), no shuffles
 *   weights p_j = 2^(s_j - m'), alpha = 2^(m - m'), l = l alpha + sum_j p_j
 *   output  Ot[c] = Ot[c] alpha + sum_j p_j * v[j][c]   16 x dv FMAs, Ot (dv x 16) in L1
 * and at the end out = Ot / l, transposed back (16 x 16 in-register transposes, as for Qt). The base-2 exponent is
 * range-reduced to f in [-0.5, 0.5] and 2^f is a degree-6 Taylor polynomial (relative error below 1.2e-7) in FMA, scaled by
 * 2^n with vscalefps; an exponent below -125 gives +0 (masked logits, causal or keys past the end of
 * a partial block, are -inf). */
#include "attention_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__)
#include <immintrin.h>
#include <float.h>
#include <math.h>

static inline __attribute__((always_inline)) __m512 exp2_16(__m512 x) {
    /* below -125 (masked logits: -inf) the weight is +0: never a subnormal result, whose
     * microcode assist costs ~100 cycles a vector on Intel cores */
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-125.0f), _CMP_GE_OQ);
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.540353039e-04f); /* ln2^k / k!, k = 6 .. 0 */
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.333355815e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129108e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550410866e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402265070e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471806e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(live, p, n);
}

/* x / b correctly rounded, as vdivps gives it (Flax's query / sqrt(depth) must keep its bits) at a
 * third of its cost: q0 = x * RN(1/b), then one correction with the exact residual x - q0 b
 * (Markstein's theorem: RN(q0 + r RN(1/b)) = RN(x / b) when nothing underflows). Tiny x (and
 * inf / NaN, whose residual is NaN) take the division. */
static inline __attribute__((always_inline)) __m512 div_q(__m512 x, float b) {
    const __m512 vb = _mm512_set1_ps(b), y = _mm512_set1_ps(1.0f / b);
    __m512 q0 = _mm512_mul_ps(x, y);
    __m512 r = _mm512_fnmadd_ps(q0, vb, x);
    __m512 q1 = _mm512_fmadd_ps(r, y, q0);
    const __m512 ax = _mm512_abs_ps(x);
    /* normal range with margin (not below 2^-100, not above 2^100); NaN fails both */
    __mmask16 ok = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0x1p-100f), _CMP_GE_OQ) &
                   _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0x1p100f), _CMP_LE_OQ);
    const __mmask16 nz = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ); /* zeros are exact */
    if ((ok | (__mmask16)~nz) != 0xFFFF) q1 = _mm512_div_ps(x, vb);
    return q1;
}

/* r[j][i] <- r[i][j] (16 x 16): 32-bit and 64-bit unpacks, then two rounds of 128-bit lane shuffles. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* r[4i + j], lane L: rows 4i .. 4i + 3 of column 4L + j */
        const __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d b0 = _mm512_castps_pd(t[4 * i + 2]), b1 = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
        r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xdd);
    }
}

/* The 16 vectors combined pairwise (a tree: 4 dependent steps instead of 15). Two copies, not a
 * function pointer: the intrinsics have no out-of-line definition to point at (-O0 builds). */
static inline __attribute__((always_inline)) __m512 tree16_add(const __m512 *x) {
    __m512 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) a[i] = _mm512_add_ps(x[i], x[i + 8]);
    a[0] = _mm512_add_ps(a[0], a[4]), a[1] = _mm512_add_ps(a[1], a[5]);
    a[2] = _mm512_add_ps(a[2], a[6]), a[3] = _mm512_add_ps(a[3], a[7]);
    return _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
}
static inline __attribute__((always_inline)) __m512 tree16_max(const __m512 *x) {
    __m512 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) a[i] = _mm512_max_ps(x[i], x[i + 8]);
    a[0] = _mm512_max_ps(a[0], a[4]), a[1] = _mm512_max_ps(a[1], a[5]);
    a[2] = _mm512_max_ps(a[2], a[6]), a[3] = _mm512_max_ps(a[3], a[7]);
    return _mm512_max_ps(_mm512_max_ps(a[0], a[2]), _mm512_max_ps(a[1], a[3]));
}

/* Ot[c .. c + nc) = Ot * alpha + sum_u P[u] v[u][c ..]: nc independent chains, the value entries
 * broadcast memory operands. A loop over the keys (not unrolled: GCC then keeps every operand in
 * place instead of staging the value entries through the stack). */
static inline __attribute__((always_inline)) void pv_cols(const int nc, const int KS, const float *P, const float *Vb,
                                                          int64_t c, __m512 alpha, float *Ot) {
    __m512 o[8];
#pragma GCC unroll 8
    for (int cc = 0; cc < nc; cc++) o[cc] = _mm512_mul_ps(_mm512_load_ps(Ot + (c + cc) * 16), alpha);
#pragma GCC unroll 1
    for (int u = 0; u < 16; u++) {
        const __m512 pu = _mm512_load_ps(P + u * 16);
#pragma GCC unroll 8
        for (int cc = 0; cc < nc; cc++) o[cc] = _mm512_fmadd_ps(pu, _mm512_set1_ps(Vb[u * KS + c + cc]), o[cc]);
    }
#pragma GCC unroll 8
    for (int cc = 0; cc < nc; cc++) _mm512_store_ps(Ot + (c + cc) * 16, o[cc]);
}

/* KS: the packed rows' stride (>= d, dv), a constant so that one pointer and fixed offsets
 * address a block's 16 rows. */
static inline __attribute__((always_inline)) bool flash_fwd_ks(const int KS, const lx_flash_args *a, const float *q,
                                                               const float *Kp, const float *Vp, int64_t t0, int64_t tq,
                                                               float *out, float *lse) {
    const int64_t d = a->d, dv = a->dv;
    float Qt[LX_FLASH_MAX_D * 16] __attribute__((aligned(64)));
    float Ot[LX_FLASH_MAX_D * 16] __attribute__((aligned(64)));
    float P[16 * 16] __attribute__((aligned(64))); /* a block's weights, key-major */
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    int qexp;
    /* a power of two (depth 4, 16, 64): x * (1 / qdiv) is the same real number as x / qdiv */
    const bool qpow2 = a->qdiv != 0.0f && frexpf(a->qdiv, &qexp) == 0.5f;
    bool ok = true;
    for (int64_t i0 = t0; i0 < t0 + tq; i0 += 16) {
        const int64_t n = t0 + tq - i0 < 16 ? t0 + tq - i0 : 16;
        const __mmask16 rows = (__mmask16)((1u << n) - 1);
        __mmask16 qbad = 0;
        /* the tile's queries, transposed and scaled (padding lanes 0) */
        const float *qr = q + i0 * a->ldq;
        for (int64_t c0 = 0; c0 < d; c0 += 16) {
            const int64_t nc = d - c0 < 16 ? d - c0 : 16;
            const __mmask16 cols = (__mmask16)((1u << nc) - 1);
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                r[i] = i < n ? _mm512_maskz_loadu_ps(cols, qr + i * a->ldq + c0) : _mm512_setzero_ps();
            transpose16(r);
            for (int64_t cc = 0; cc < nc; cc++) {
                __m512 x = r[cc];
                qbad |= _mm512_fpclass_ps_mask(x, 0x01 | 0x08 | 0x10 | 0x80);
                if (qpow2) x = _mm512_mul_ps(x, _mm512_set1_ps(1.0f / a->qdiv)); /* exact: same bits */
                else if (a->qdiv != 0.0f) x = div_q(x, a->qdiv);
                _mm512_store_ps(Qt + (c0 + cc) * 16, _mm512_mul_ps(x, _mm512_set1_ps(a->qmul)));
            }
        }
        for (int64_t c = 0; c < dv; c++) _mm512_store_ps(Ot + c * 16, _mm512_setzero_ps());
        const int64_t kend = a->causal ? (a->S < i0 + n ? a->S : i0 + n) : a->S;
        __m512 m = ninf, l = _mm512_setzero_ps();
        for (int64_t j0 = 0; j0 < kend; j0 += 16) {
            const int kb = kend - j0 < 16 ? (int)(kend - j0) : 16;
            __m512 s[16];
            const float *const Kb = Kp + j0 * KS, *const Vb = Vp + j0 * KS;
#pragma GCC unroll 16
            for (int u = 0; u < 16; u++) s[u] = _mm512_setzero_ps();
            for (int64_t c = 0; c < d; c++) { /* 16 independent chains */
                const __m512 qc = _mm512_load_ps(Qt + c * 16);
#pragma GCC unroll 16
                for (int u = 0; u < 16; u++) s[u] = _mm512_fmadd_ps(qc, _mm512_set1_ps(Kb[u * KS + c]), s[u]);
            }
            /* keys past the block's end masked in every lane; causal: key j in lanes i < j - i0 */
            if (kb < 16 || (a->causal && j0 + 15 > i0)) {
#pragma GCC unroll 16
                for (int u = 0; u < 16; u++) {
                    const int64_t thr = u >= kb ? 16 : a->causal ? j0 + u - i0 : 0;
                    s[u] = _mm512_mask_mov_ps(s[u], _mm512_cmplt_epi32_mask(lane, _mm512_set1_epi32((int)thr)), ninf);
                }
            }
            const __m512 mx = _mm512_max_ps(m, tree16_max(s));
            const __m512 alpha = exp2_16(_mm512_sub_ps(m, mx));
#pragma GCC unroll 16
            for (int u = 0; u < 16; u++) s[u] = exp2_16(_mm512_sub_ps(s[u], mx));
            l = _mm512_fmadd_ps(l, alpha, tree16_add(s));
            m = mx;
#pragma GCC unroll 16
            for (int u = 0; u < 16; u++) _mm512_store_ps(P + u * 16, s[u]);
            int64_t c = 0;
#pragma GCC unroll 1
            for (; c + 8 <= dv; c += 8) pv_cols(8, KS, P, Vb, c, alpha, Ot);
            for (; c < dv; c++) pv_cols(1, KS, P, Vb, c, alpha, Ot);
        }
        /* QNaN, +inf, -inf, SNaN */
        /* an inf / NaN query entry, or a logit that overflowed (l is then 0 or NaN): the general path */
        if (qbad || _mm512_mask_cmp_ps_mask(rows, l, _mm512_set1_ps(FLT_MAX), _CMP_GT_OQ) |
                        _mm512_mask_cmp_ps_mask(rows, l, _mm512_setzero_ps(), _CMP_NGT_UQ)) {
            ok = false;
            continue;
        }
        const __m512 rl = _mm512_div_ps(_mm512_set1_ps(1.0f), l);
        /* out row i, columns c0 .. c0 + 15 = Ot[c0 ..][i] / l[i]. The sums in Ot are not yet divided
         * by l (up to S times a value): one that overflowed makes the job decline (x - x is NaN
         * for inf; the rows written so far are all rewritten by the general path) */
        __m512 obad = _mm512_setzero_ps();
        for (int64_t c0 = 0; c0 < dv; c0 += 16) {
            const int64_t nc = dv - c0 < 16 ? dv - c0 : 16;
            const __mmask16 cols = (__mmask16)((1u << nc) - 1);
            __m512 r[16];
#pragma GCC unroll 16
            for (int cc = 0; cc < 16; cc++)
                r[cc] = cc < nc ? _mm512_mul_ps(_mm512_load_ps(Ot + (c0 + cc) * 16), rl) : _mm512_setzero_ps();
#pragma GCC unroll 16
            for (int cc = 0; cc < 16; cc++) obad = _mm512_add_ps(obad, _mm512_sub_ps(r[cc], r[cc]));
            transpose16(r);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                if (i < n) _mm512_mask_storeu_ps(out + (i0 + i) * a->ldo + c0, cols, r[i]);
        }
        if (_mm512_cmp_ps_mask(obad, obad, _CMP_UNORD_Q)) {
            ok = false;
            continue;
        }
        if (lse) {
            float mv[16], lv[16];
            _mm512_storeu_ps(mv, m), _mm512_storeu_ps(lv, l);
            for (int64_t i = 0; i < n; i++) lse[i0 + i] = (mv[i] + log2f(lv[i])) * 0.693147180559945309f;
        }
    }
    return ok;
}

/* The keys and values the rows [t0, t0 + tq) read, packed at stride KS (zero rows up to a multiple
 * of 16: a partial block's padding keys are masked, their zero values add nothing), then the tiles. */
static inline __attribute__((always_inline)) bool flash_fwd_pack(const int KS, const lx_flash_args *a, const float *q,
                                                                 const float *k, const float *v, int64_t t0, int64_t tq,
                                                                 float *out, float *lse, float *scratch) {
    const int64_t kend = a->causal ? (a->S < t0 + tq ? a->S : t0 + tq) : a->S, kpad = (kend + 15) / 16 * 16;
    float *Kp = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *Vp = Kp + kpad * KS + 16; /* one line apart: no 4 KiB aliasing */
    /* lane masks per 16 columns (locals: the stores below could alias *a as far as GCC knows) */
    const int64_t d = a->d, dv = a->dv, ldk = a->ldk, ldv = a->ldv;
    __mmask16 mk[KS / 16], mv[KS / 16];
    for (int c = 0; c < KS; c += 16) {
        mk[c / 16] = c >= d ? 0 : d - c >= 16 ? 0xFFFF : (__mmask16)((1u << (d - c)) - 1);
        mv[c / 16] = c >= dv ? 0 : dv - c >= 16 ? 0xFFFF : (__mmask16)((1u << (dv - c)) - 1);
    }
    /* an inf / NaN key, or value anywhere (zero weights times it are NaN in the full product): the
     * general path. x * 0 is NaN exactly for those. */
    const __m512 zero = _mm512_setzero_ps();
    __m512 acc[2 * KS / 16]; /* independent chains: one per column block of k and of v */
#pragma GCC unroll 16
    for (int c = 0; c < 2 * KS / 16; c++) acc[c] = zero;
    for (int64_t j = 0; j < kend; j++) {
        const float *kr = k + j * ldk, *vr = v + j * ldv;
        float *kp = Kp + j * KS, *vp = Vp + j * KS;
#pragma GCC unroll 8
        for (int c = 0; c < KS; c += 16) {
            const __m512 x = _mm512_maskz_loadu_ps(mk[c / 16], kr + c), y = _mm512_maskz_loadu_ps(mv[c / 16], vr + c);
            acc[c / 8] = _mm512_fmadd_ps(x, zero, acc[c / 8]);
            acc[c / 8 + 1] = _mm512_fmadd_ps(y, zero, acc[c / 8 + 1]);
            _mm512_store_ps(kp + c, x);
            _mm512_store_ps(vp + c, y);
        }
    }
#pragma GCC unroll 16
    for (int c = 1; c < 2 * KS / 16; c++) acc[0] = _mm512_add_ps(acc[0], acc[c]);
    for (int64_t j = kend * KS; j < kpad * KS; j += 16) /* padding keys: zeros */
        _mm512_store_ps(Kp + j, zero), _mm512_store_ps(Vp + j, zero);
    for (int64_t j = kend; j < a->S; j++)
        for (int c = 0; c < dv; c += 16) acc[0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mv[c / 16], v + j * ldv + c), zero, acc[0]);
    if (_mm512_cmp_ps_mask(acc[0], acc[0], _CMP_UNORD_Q)) return false;
    return flash_fwd_ks(KS, a, q, Kp, Vp, t0, tq, out, lse);
}

/* The keys and values the rows [t0, t0 + tq) read, packed at stride KS (zero rows up to a multiple
 * of 16: a partial block's padding keys are masked, their zero values add nothing), then the tiles. */
static bool flash_fwd(const lx_flash_args *a, const float *q, const float *k, const float *v, int64_t t0, int64_t tq,
                      float *out, float *lse, float *scratch) {
    /* causal tiles are meant to start on a key block's edge, t0 + 16 i with t0 a multiple of 16
     * (attention_internal.h): another t0 is declined before anything is read or written, as the
     * AVX2 kernel declines a t0 off its 8-key blocks (the caller's general path then has the rows;
     * attention.c's jobs start at multiples of 128) */
    if (a->causal && t0 % 16 != 0) return false;
    switch (lx_flash_stride(a)) {
    case 16: return flash_fwd_pack(16, a, q, k, v, t0, tq, out, lse, scratch);
    case 32: return flash_fwd_pack(32, a, q, k, v, t0, tq, out, lse, scratch);
    case 64: return flash_fwd_pack(64, a, q, k, v, t0, tq, out, lse, scratch);
    default: return flash_fwd_pack(LX_FLASH_MAX_D, a, q, k, v, t0, tq, out, lse, scratch);
    }
}

/* row[s] = e^(row[s] - sub), by the forward's exp2 (a weight below 2^-125 is +0 there too) */
static void flash_exp_row(float *row, int64_t n, float sub) {
    const __m512 l2e = _mm512_set1_ps(1.44269504088896341f), off = _mm512_set1_ps(-sub * 1.44269504088896341f);
    for (int64_t s = 0; s < n; s += 16) {
        const __mmask16 m = n - s >= 16 ? 0xFFFF : (__mmask16)((1u << (n - s)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(m, row + s);
        _mm512_mask_storeu_ps(row + s, m, exp2_16(_mm512_fmadd_ps(x, l2e, off)));
    }
}

static void attn_ds_row(const float *p, const float *dp, float *ds, int64_t ncols, int64_t lim, int64_t S) {
    __m512d d0 = _mm512_setzero_pd(), d1 = _mm512_setzero_pd();
    int64_t s = 0;
    for (; s + 16 <= ncols; s += 16) {
        const __m512 x = _mm512_loadu_ps(p + s), y = _mm512_loadu_ps(dp + s);
        d0 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)), _mm512_cvtps_pd(_mm512_castps512_ps256(y)), d0);
        d1 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))),
                             _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(y), 1))), d1);
    }
    double dot = _mm512_reduce_add_pd(_mm512_add_pd(d0, d1));
    for (; s < ncols; s++) dot += (double)p[s] * dp[s];
    const __m512 fd = _mm512_set1_ps((float)dot);
    for (s = 0; s < S; s += 16) {
        const int64_t n = (lim - s < 16 ? lim - s : 16), w = S - s < 16 ? S - s : 16;
        const __mmask16 live = n <= 0 ? 0 : (__mmask16)((1u << n) - 1), all = (__mmask16)((1u << w) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(live, p + s), y = _mm512_maskz_loadu_ps(live, dp + s);
        _mm512_mask_storeu_ps(ds + s, all, _mm512_maskz_mul_ps(live, x, _mm512_sub_ps(y, fd)));
    }
}

/* ---- backward (attention_internal.h) ----
 * Per query tile (16 queries, one per lane) the tile is packed four ways in L1: Qt (d x 16, scaled
 * by qmul = sc log2 e) and dOt (dv x 16) for the products with a key block's rows, Qn and dOn
 * (16 rows at stride KS) for dK and dV; then per key block of 16:
 *   s_u  = sum_c Qt[c] k[u][c]                     16 d FMAs (key entries broadcast)
 *   P_u  = 2^(s_u - lse log2 e), 0 where masked   (causal, keys past S, rows past T)
 *   dP_u = sum_c dOt[c] v[u][c]                    16 dv FMAs
 *   dS_u = sc P_u (dP_u - D), D = rowsum(dO o)
 * P and dS are stored key-major (16 x 16, lane = query) and then
 *   dV[u] += sum_i P[u][i] dOn[i],  dK[u] += sum_i dS[u][i] Qn[i]   (16 accumulators per 16 columns)
 *   dQ[i] += sum_u dS[u][i] k[u]                                    (the same shape)
 * with the weights broadcast from memory. dK, dV live in job-wide buffers (keys x KS) written out
 * at the end; dQ in an L1 buffer written out per tile. */
static inline __attribute__((always_inline)) void bwd_rank16(const int nchunk, const int KS, const float *W,
                                                              const float *X, int nx, float *acc) {
    /* acc[u][c] += sum_{i < nx} W[u * 16 + i] X[i][c], u < 16, c < 16 nchunk (rows at stride KS) */
    for (int c = 0; c < nchunk; c++) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++) r[u] = _mm512_load_ps(acc + u * KS + 16 * c);
#pragma GCC unroll 1
        for (int i = 0; i < nx; i++) {
            const __m512 x = _mm512_load_ps(X + i * KS + 16 * c);
#pragma GCC unroll 16
            for (int u = 0; u < 16; u++) r[u] = _mm512_fmadd_ps(_mm512_set1_ps(W[u * 16 + i]), x, r[u]);
        }
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++) _mm512_store_ps(acc + u * KS + 16 * c, r[u]);
    }
}

/* acc[i][c] += sum_{u < nu} W[u * 16 + i] X[u][c]: the transposed use of W (dQ from dS and k) */
static inline __attribute__((always_inline)) void bwd_rank16t(const int nchunk, const int KS, const float *W,
                                                               const float *X, int nu, float *acc) {
    for (int c = 0; c < nchunk; c++) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) r[i] = _mm512_load_ps(acc + i * KS + 16 * c);
#pragma GCC unroll 1
        for (int u = 0; u < nu; u++) {
            const __m512 x = _mm512_load_ps(X + u * KS + 16 * c);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) r[i] = _mm512_fmadd_ps(_mm512_set1_ps(W[u * 16 + i]), x, r[i]);
        }
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) _mm512_store_ps(acc + i * KS + 16 * c, r[i]);
    }
}

/* 16 rows (n of them live, the rest zeros) of width w from src (stride ld) into dst (stride KS, zero
 * padded), and their transpose times mul into dt (w x 16) */
static inline __attribute__((always_inline)) void bwd_pack_tile(const int KS, const float *src, int64_t ld, int64_t n,
                                                                 int64_t w, float mul, float *dst, float *dt) {
    for (int64_t c0 = 0; c0 < KS; c0 += 16) {
        const __mmask16 cols = c0 >= w ? 0 : w - c0 >= 16 ? 0xFFFF : (__mmask16)((1u << (w - c0)) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            r[i] = i < n ? _mm512_maskz_loadu_ps(cols, src + i * ld + c0) : _mm512_setzero_ps();
            _mm512_store_ps(dst + i * KS + c0, r[i]);
        }
        if (c0 >= w) continue;
        transpose16(r);
        const int64_t nc = w - c0 < 16 ? w - c0 : 16;
        for (int64_t cc = 0; cc < nc; cc++) _mm512_store_ps(dt + (c0 + cc) * 16, _mm512_mul_ps(r[cc], _mm512_set1_ps(mul)));
    }
}

static inline __attribute__((always_inline)) void flash_bwd_ks(const int KS, const lx_flash_bwd_args *a, const float *q,
                                                               const float *k, const float *v, const float *o,
                                                               const float *go, const float *lse, float *dq, float *dk,
                                                               float *dv, float *scratch) {
    const int64_t T = a->T, S = a->S, d = a->d, dvv = a->dv, Spad = (S + 15) / 16 * 16;
    const int nd = (int)((d + 15) / 16), nv = (int)((dvv + 15) / 16);
    float *Kp = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *Vp = Kp + Spad * KS + 16, *dKp = Vp + Spad * KS + 16, *dVp = dKp + Spad * KS + 16;
    float *Qt = dVp + Spad * KS + 16, *Qn = Qt + 16 * KS, *dOt = Qn + 16 * KS, *dOn = dOt + 16 * KS;
    float *dQa = dOn + 16 * KS, *P = dQa + 16 * KS, *dS = P + 256;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t j = 0; j < Spad; j++) {
#pragma GCC unroll 8
        for (int c = 0; c < KS; c += 16) {
            const __mmask16 mk = c >= d ? 0 : d - c >= 16 ? 0xFFFF : (__mmask16)((1u << (d - c)) - 1);
            const __mmask16 mv = c >= dvv ? 0 : dvv - c >= 16 ? 0xFFFF : (__mmask16)((1u << (dvv - c)) - 1);
            _mm512_store_ps(Kp + j * KS + c, j < S ? _mm512_maskz_loadu_ps(mk, k + j * a->ldk + c) : zero);
            _mm512_store_ps(Vp + j * KS + c, j < S ? _mm512_maskz_loadu_ps(mv, v + j * a->ldv + c) : zero);
            _mm512_store_ps(dKp + j * KS + c, zero);
            _mm512_store_ps(dVp + j * KS + c, zero);
        }
    }
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const float l2e = 1.44269504088896341f, qmul = a->sc * l2e;
    const __m512 vsc = _mm512_set1_ps(a->sc);
    for (int64_t r = 0; r < a->R; r++) {
        const float *qh = q + r * d, *oh = o + r * dvv, *gh = go + r * dvv, *lh = lse + r * T;
        float *dqh = dq + r * d;
        for (int64_t i0 = 0; i0 < T; i0 += 16) {
            const int64_t n = T - i0 < 16 ? T - i0 : 16;
            const __mmask16 rows = (__mmask16)((1u << n) - 1);
            bwd_pack_tile(KS, qh + i0 * a->ldq, a->ldq, n, d, qmul, Qn, Qt);
            bwd_pack_tile(KS, gh + i0 * a->ldo, a->ldo, n, dvv, 1.0f, dOn, dOt);
            /* D = rowsum(dO o): per row a vector of partial sums, then one transpose and a tree */
            __m512 t[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) t[i] = zero;
            for (int64_t c = 0; c < dvv; c += 16) {
                const __mmask16 m = dvv - c >= 16 ? 0xFFFF : (__mmask16)((1u << (dvv - c)) - 1);
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++)
                    if (i < n) t[i] = _mm512_fmadd_ps(_mm512_load_ps(dOn + i * KS + c), _mm512_maskz_loadu_ps(m, oh + (i0 + i) * a->ldo + c), t[i]);
            }
            transpose16(t);
            const __m512 Dd = tree16_add(t);
            const __m512 L2 = _mm512_mul_ps(_mm512_maskz_loadu_ps(rows, lh + i0), _mm512_set1_ps(l2e));
            for (int64_t c = 0; c < 16 * KS; c += 16) _mm512_store_ps(dQa + c, zero);
            const int64_t kend = a->causal ? (S < i0 + n ? S : i0 + n) : S;
            for (int64_t j0 = 0; j0 < kend; j0 += 16) {
                const int kb = kend - j0 < 16 ? (int)(kend - j0) : 16;
                const float *const Kb = Kp + j0 * KS, *const Vb = Vp + j0 * KS;
                __mmask16 live[16];
                if (kb < 16 || (a->causal && j0 + 15 > i0)) { /* a partial or diagonal block */
#pragma GCC unroll 16
                    for (int u = 0; u < 16; u++) {
                        const int64_t thr = u >= kb ? 16 : a->causal ? j0 + u - i0 : 0;
                        live[u] = rows & (__mmask16)~_mm512_cmplt_epi32_mask(lane, _mm512_set1_epi32((int)(thr < 0 ? 0 : thr)));
                    }
                } else {
#pragma GCC unroll 16
                    for (int u = 0; u < 16; u++) live[u] = rows;
                }
                __m512 s[16];
#pragma GCC unroll 16
                for (int u = 0; u < 16; u++) s[u] = zero;
                for (int64_t c = 0; c < d; c++) {
                    const __m512 qc = _mm512_load_ps(Qt + c * 16);
#pragma GCC unroll 16
                    for (int u = 0; u < 16; u++) s[u] = _mm512_fmadd_ps(qc, _mm512_set1_ps(Kb[u * KS + c]), s[u]);
                }
#pragma GCC unroll 16
                for (int u = 0; u < 16; u++) {
                    s[u] = _mm512_maskz_mov_ps(live[u], exp2_16(_mm512_sub_ps(s[u], L2)));
                    _mm512_store_ps(P + u * 16, s[u]);
                }
#pragma GCC unroll 16
                for (int u = 0; u < 16; u++) s[u] = zero;
                for (int64_t c = 0; c < dvv; c++) {
                    const __m512 gc = _mm512_load_ps(dOt + c * 16);
#pragma GCC unroll 16
                    for (int u = 0; u < 16; u++) s[u] = _mm512_fmadd_ps(gc, _mm512_set1_ps(Vb[u * KS + c]), s[u]);
                }
#pragma GCC unroll 16
                for (int u = 0; u < 16; u++) {
                    const __m512 pu = _mm512_mul_ps(_mm512_load_ps(P + u * 16), vsc);
                    _mm512_store_ps(dS + u * 16, _mm512_maskz_mul_ps(live[u], pu, _mm512_sub_ps(s[u], Dd)));
                }
                bwd_rank16(nv, KS, P, dOn, (int)n, dVp + j0 * KS);
                bwd_rank16(nd, KS, dS, Qn, (int)n, dKp + j0 * KS);
                bwd_rank16t(nd, KS, dS, Kb, kb, dQa);
            }
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = 0; c < d; c += 16) {
                    const __mmask16 m = d - c >= 16 ? 0xFFFF : (__mmask16)((1u << (d - c)) - 1);
                    _mm512_mask_storeu_ps(dqh + (i0 + i) * a->ldq + c, m, _mm512_load_ps(dQa + i * KS + c));
                }
        }
    }
    for (int64_t j = 0; j < S; j++) {
        for (int64_t c = 0; c < d; c += 16) {
            const __mmask16 m = d - c >= 16 ? 0xFFFF : (__mmask16)((1u << (d - c)) - 1);
            _mm512_mask_storeu_ps(dk + j * a->ldk + c, m, _mm512_load_ps(dKp + j * KS + c));
        }
        for (int64_t c = 0; c < dvv; c += 16) {
            const __mmask16 m = dvv - c >= 16 ? 0xFFFF : (__mmask16)((1u << (dvv - c)) - 1);
            _mm512_mask_storeu_ps(dv + j * a->ldv + c, m, _mm512_load_ps(dVp + j * KS + c));
        }
    }
}

static void flash_bwd(const lx_flash_bwd_args *a, const float *q, const float *k, const float *v, const float *o,
                      const float *go, const float *lse, float *dq, float *dk, float *dv, float *scratch) {
    const int64_t w = a->d > a->dv ? a->d : a->dv;
    if (w <= 16) flash_bwd_ks(16, a, q, k, v, o, go, lse, dq, dk, dv, scratch);
    else if (w <= 32) flash_bwd_ks(32, a, q, k, v, o, go, lse, dq, dk, dv, scratch);
    else if (w <= 64) flash_bwd_ks(64, a, q, k, v, o, go, lse, dq, dk, dv, scratch);
    else flash_bwd_ks(LX_FLASH_MAX_D, a, q, k, v, o, go, lse, dq, dk, dv, scratch);
}

lx_flash_bwd_fn lx_flash_bwd_avx512(void) { return flash_bwd; }
lx_flash_fwd_fn lx_flash_fwd_avx512(void) { return flash_fwd; }
lx_attn_ds_fn lx_attn_ds_avx512(void) { return attn_ds_row; }
lx_flash_exp_fn lx_flash_exp_avx512(void) { return flash_exp_row; }
#else
lx_flash_fwd_fn lx_flash_fwd_avx512(void) { return 0; }
lx_flash_exp_fn lx_flash_exp_avx512(void) { return 0; }
lx_attn_ds_fn lx_attn_ds_avx512(void) { return 0; }
lx_flash_bwd_fn lx_flash_bwd_avx512(void) { return 0; }
#endif
