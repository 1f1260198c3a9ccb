/* Fused attention on AVX2 + FMA (attention_internal.h; compiled with -mavx2 -mfma, run only after
 * cpuid says so). The design of attention_avx512.c on 8 lanes:
 *
 * A tile is 8 query rows, one per vector lane. Per block of 8 keys:
 *   logits  s_j = sum_c Qt[c] * k[j][c]      8 x d FMAs, Qt (d x 8) the tile's scaled queries
 *                                            transposed, k[j][c] broadcast from the packed keys
 *   max     m' = max(m, s_0 .. s_7)          vertical (one max per key), no shuffles
 *   weights p_j = 2^(s_j - m'), alpha = 2^(m - m'), l = l alpha + sum_j p_j
 *   output  Ot[c] = Ot[c] alpha + sum_j p_j * v[j][c]   8 x dv FMAs, Ot (dv x 8) in L1
 * and at the end out = Ot / l, transposed back (8 x 8 in-register transposes, as for Qt). 8 logit
 * accumulators + the query vector + a broadcast fit the 16 ymm registers; Zen 1 runs one 256-bit
 * FMA a cycle and two loads, so a broadcast per FMA costs no FMA slot.
 *
 * 2^x is the AVX-512 kernel's exp2 on 8 lanes, value for value: round to nearest, the same
 * degree-6 polynomial in the same FMA order, 2^n put into the exponent field (the product is
 * normal for every n >= -125, where vscalefps gives the same bits), +0 below -125 and for NaN. So
 * the AVX2 and AVX-512 sets rebuild the backward's weights with the function their forward used. */
#include "attention_internal.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <float.h>
#include <math.h>

static inline __attribute__((always_inline)) __m256 exp2_8(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(-125.0f), _CMP_GE_OQ);
    /* above 127 the AVX-512 version overflows to inf; such exponents never reach here (the
     * arguments are logits minus their running max, or minus the row's log-sum-exp) */
    const __m256 xc = _mm256_min_ps(x, _mm256_set1_ps(127.0f));
    const __m256 n = _mm256_round_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(xc, n);
    __m256 p = _mm256_set1_ps(1.540353039e-04f); /* ln2^k / k!, k = 6 .. 0 */
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.333355815e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618129108e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550410866e-02f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402265070e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931471806e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_and_ps(_mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e)), live);
}

/* x / b correctly rounded (attention_avx512.c's div_q: a reciprocal product corrected once with
 * the exact residual; tiny, huge, inf or NaN entries take the division) */
static inline __attribute__((always_inline)) __m256 div_q(__m256 x, float b) {
    const __m256 vb = _mm256_set1_ps(b), y = _mm256_set1_ps(1.0f / b);
    const __m256 q0 = _mm256_mul_ps(x, y);
    const __m256 r = _mm256_fnmadd_ps(q0, vb, x);
    const __m256 q1 = _mm256_fmadd_ps(r, y, q0);
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(ax, _mm256_set1_ps(0x1p-100f), _CMP_GE_OQ),
                                    _mm256_cmp_ps(ax, _mm256_set1_ps(0x1p100f), _CMP_LE_OQ));
    const __m256 zero = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_EQ_OQ); /* zeros are exact */
    if (_mm256_movemask_ps(_mm256_or_ps(ok, zero)) != 0xFF) return _mm256_div_ps(x, vb);
    return q1;
}

/* r[j][i] <- r[i][j] (8 x 8): 32-bit and 64-bit unpacks, then the 128-bit halves. */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8]) {
    __m256 t[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) { /* r[4i + j], half H: rows 4i .. 4i + 3 of column 4H + j */
        r[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        t[j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x20);
        t[4 + j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x31);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) r[i] = t[i];
}

static inline __attribute__((always_inline)) __m256 tree8_add(const __m256 *x) {
    const __m256 a0 = _mm256_add_ps(x[0], x[4]), a1 = _mm256_add_ps(x[1], x[5]);
    const __m256 a2 = _mm256_add_ps(x[2], x[6]), a3 = _mm256_add_ps(x[3], x[7]);
    return _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
}
static inline __attribute__((always_inline)) __m256 tree8_max(const __m256 *x) {
    const __m256 a0 = _mm256_max_ps(x[0], x[4]), a1 = _mm256_max_ps(x[1], x[5]);
    const __m256 a2 = _mm256_max_ps(x[2], x[6]), a3 = _mm256_max_ps(x[3], x[7]);
    return _mm256_max_ps(_mm256_max_ps(a0, a2), _mm256_max_ps(a1, a3));
}

/* lanes [0, n) all ones (n in 0 .. 8) */
static inline __attribute__((always_inline)) __m256i lanes_below(int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), lane);
}

/* Ot[c .. c + nc) = Ot * alpha + sum_u P[u] v[u][c ..] (nc independent chains) */
static inline __attribute__((always_inline)) void pv_cols(const int nc, const int KS, const float *P, const float *Vb,
                                                          int64_t c, __m256 alpha, float *Ot) {
    __m256 o[8];
#pragma GCC unroll 8
    for (int cc = 0; cc < nc; cc++) o[cc] = _mm256_mul_ps(_mm256_load_ps(Ot + (c + cc) * 8), alpha);
#pragma GCC unroll 1
    for (int u = 0; u < 8; u++) {
        const __m256 pu = _mm256_load_ps(P + u * 8);
#pragma GCC unroll 8
        for (int cc = 0; cc < nc; cc++) o[cc] = _mm256_fmadd_ps(pu, _mm256_broadcast_ss(Vb + u * KS + c + cc), o[cc]);
    }
#pragma GCC unroll 8
    for (int cc = 0; cc < nc; cc++) _mm256_store_ps(Ot + (c + cc) * 8, o[cc]);
}

/* KS: the packed rows' stride (>= d, dv), a constant so that one pointer and fixed offsets
 * address a block's 8 rows. */
static inline __attribute__((always_inline)) bool flash_fwd_ks(const int KS, const lx_flash_args *a, const float *q,
                                                               const float *Kp, const float *Vp, int64_t t0, int64_t tq,
                                                               float *out, float *lse) {
    const int64_t d = a->d, dv = a->dv;
    float Qt[LX_FLASH_MAX_D * 8] __attribute__((aligned(32)));
    float Ot[LX_FLASH_MAX_D * 8] __attribute__((aligned(32)));
    float P[8 * 8] __attribute__((aligned(32))); /* a block's weights, key-major */
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    int qexp;
    /* a power of two (depth 4, 16, 64): x * (1 / qdiv) is the same real number as x / qdiv */
    const bool qpow2 = a->qdiv != 0.0f && frexpf(a->qdiv, &qexp) == 0.5f;
    bool ok = true;
    for (int64_t i0 = t0; i0 < t0 + tq; i0 += 8) {
        const int64_t n = t0 + tq - i0 < 8 ? t0 + tq - i0 : 8;
        __m256 qbad = zero; /* x - x: NaN exactly for inf / NaN entries */
        /* the tile's queries, transposed and scaled (padding lanes 0) */
        const float *qr = q + i0 * a->ldq;
        for (int64_t c0 = 0; c0 < d; c0 += 8) {
            const int64_t nc = d - c0 < 8 ? d - c0 : 8;
            const __m256i cols = lanes_below(nc);
            __m256 r[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) r[i] = i < n ? _mm256_maskload_ps(qr + i * a->ldq + c0, cols) : zero;
            transpose8(r);
            for (int64_t cc = 0; cc < nc; cc++) {
                __m256 x = r[cc];
                qbad = _mm256_add_ps(qbad, _mm256_sub_ps(x, x));
                if (qpow2) x = _mm256_mul_ps(x, _mm256_set1_ps(1.0f / a->qdiv)); /* exact: same bits */
                else if (a->qdiv != 0.0f) x = div_q(x, a->qdiv);
                _mm256_store_ps(Qt + (c0 + cc) * 8, _mm256_mul_ps(x, _mm256_set1_ps(a->qmul)));
            }
        }
        for (int64_t c = 0; c < dv; c++) _mm256_store_ps(Ot + c * 8, zero);
        const int64_t kend = a->causal ? (a->S < i0 + n ? a->S : i0 + n) : a->S;
        __m256 m = ninf, l = zero;
        for (int64_t j0 = 0; j0 < kend; j0 += 8) {
            const int kb = kend - j0 < 8 ? (int)(kend - j0) : 8;
            __m256 s[8];
            const float *const Kb = Kp + j0 * KS, *const Vb = Vp + j0 * KS;
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) s[u] = zero;
            for (int64_t c = 0; c < d; c++) { /* 8 independent chains */
                const __m256 qc = _mm256_load_ps(Qt + c * 8);
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++) s[u] = _mm256_fmadd_ps(qc, _mm256_broadcast_ss(Kb + u * KS + c), s[u]);
            }
            /* keys past the block's end masked in every lane; causal: key j in lanes i < j - i0 */
            if (kb < 8 || (a->causal && j0 + 7 > i0)) {
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++) {
                    const int64_t thr = u >= kb ? 8 : a->causal ? j0 + u - i0 : 0;
                    s[u] = _mm256_blendv_ps(s[u], ninf, _mm256_castsi256_ps(lanes_below(thr)));
                }
            }
            const __m256 mx = _mm256_max_ps(m, tree8_max(s));
            const __m256 alpha = exp2_8(_mm256_sub_ps(m, mx));
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) s[u] = exp2_8(_mm256_sub_ps(s[u], mx));
            l = _mm256_fmadd_ps(l, alpha, tree8_add(s));
            m = mx;
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) _mm256_store_ps(P + u * 8, s[u]);
            int64_t c = 0;
#pragma GCC unroll 1
            for (; c + 8 <= dv; c += 8) pv_cols(8, KS, P, Vb, c, alpha, Ot);
            if (c + 4 <= dv) pv_cols(4, KS, P, Vb, c, alpha, Ot), c += 4;
            for (; c < dv; c++) pv_cols(1, KS, P, Vb, c, alpha, Ot);
        }
        /* an inf / NaN query entry, or a logit that overflowed (l is then 0, inf or NaN): the
         * general path */
        const __m256 rows = _mm256_castsi256_ps(lanes_below(n));
        const __m256 lbad = _mm256_or_ps(_mm256_cmp_ps(l, _mm256_set1_ps(FLT_MAX), _CMP_GT_OQ),
                                         _mm256_cmp_ps(l, zero, _CMP_NGT_UQ));
        if (_mm256_movemask_ps(_mm256_cmp_ps(qbad, qbad, _CMP_UNORD_Q)) | _mm256_movemask_ps(_mm256_and_ps(rows, lbad))) {
            ok = false;
            continue;
        }
        const __m256 rl = _mm256_div_ps(_mm256_set1_ps(1.0f), l);
        /* out row i, columns c0 .. c0 + 7 = Ot[c0 ..][i] / l[i] */
        for (int64_t c0 = 0; c0 < dv; c0 += 8) {
            const int64_t nc = dv - c0 < 8 ? dv - c0 : 8;
            const __m256i cols = lanes_below(nc);
            __m256 r[8];
#pragma GCC unroll 8
            for (int cc = 0; cc < 8; cc++) r[cc] = cc < nc ? _mm256_mul_ps(_mm256_load_ps(Ot + (c0 + cc) * 8), rl) : zero;
            transpose8(r);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                if (i < n) _mm256_maskstore_ps(out + (i0 + i) * a->ldo + c0, cols, r[i]);
        }
        if (lse) {
            float mv[8], lv[8];
            _mm256_storeu_ps(mv, m), _mm256_storeu_ps(lv, l);
            for (int64_t i = 0; i < n; i++) lse[i0 + i] = (mv[i] + log2f(lv[i])) * 0.693147180559945309f;
        }
    }
    return ok;
}

/* The keys and values the rows [t0, t0 + tq) read, packed at stride KS (zero rows up to a multiple
 * of 16: a partial block's padding keys are masked, their zero values add nothing), then the
 * tiles. An inf / NaN key, or value anywhere (zero weights times it are NaN in the full product):
 * the general path (x * 0 is NaN exactly for those). */
static inline __attribute__((always_inline)) bool flash_fwd_pack(const int KS, const lx_flash_args *a, const float *q,
                                                                 const float *k, const float *v, int64_t t0, int64_t tq,
                                                                 float *out, float *lse, float *scratch) {
    const int64_t kend = a->causal ? (a->S < t0 + tq ? a->S : t0 + tq) : a->S, kpad = (kend + 15) / 16 * 16;
    float *Kp = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *Vp = Kp + kpad * KS + 16; /* one line apart: no 4 KiB aliasing */
    const int64_t d = a->d, dv = a->dv, ldk = a->ldk, ldv = a->ldv;
    __m256i mk[KS / 8], mv[KS / 8]; /* lane masks per 8 columns */
    for (int c = 0; c < KS; c += 8) mk[c / 8] = lanes_below(d - c), mv[c / 8] = lanes_below(dv - c);
    const __m256 zero = _mm256_setzero_ps();
    __m256 acc[2] = {zero, zero};
    for (int64_t j = 0; j < kend; j++) {
        const float *kr = k + j * ldk, *vr = v + j * ldv;
        float *kp = Kp + j * KS, *vp = Vp + j * KS;
#pragma GCC unroll 4
        for (int c = 0; c < KS; c += 8) {
            const __m256 x = c < d ? _mm256_maskload_ps(kr + c, mk[c / 8]) : zero;
            const __m256 y = c < dv ? _mm256_maskload_ps(vr + c, mv[c / 8]) : zero;
            acc[0] = _mm256_fmadd_ps(x, zero, acc[0]);
            acc[1] = _mm256_fmadd_ps(y, zero, acc[1]);
            _mm256_store_ps(kp + c, x);
            _mm256_store_ps(vp + c, y);
        }
    }
    for (int64_t j = kend * KS; j < kpad * KS; j += 8) /* padding keys: zeros */
        _mm256_store_ps(Kp + j, zero), _mm256_store_ps(Vp + j, zero);
    for (int64_t j = kend; j < a->S; j++)
        for (int c = 0; c < dv; c += 8) acc[1] = _mm256_fmadd_ps(_mm256_maskload_ps(v + j * ldv + c, mv[c / 8]), zero, acc[1]);
    const __m256 t = _mm256_add_ps(acc[0], acc[1]);
    if (_mm256_movemask_ps(_mm256_cmp_ps(t, t, _CMP_UNORD_Q))) return false;
    return flash_fwd_ks(KS, a, q, Kp, Vp, t0, tq, out, lse);
}

static bool flash_fwd(const lx_flash_args *a, const float *q, const float *k, const float *v, int64_t t0, int64_t tq,
                      float *out, float *lse, float *scratch) {
    switch (lx_flash_stride(a)) {
    case 16: return flash_fwd_pack(16, a, q, k, v, t0, tq, out, lse, scratch);
    case 32: return flash_fwd_pack(32, a, q, k, v, t0, tq, out, lse, scratch);
    case 64: return flash_fwd_pack(64, a, q, k, v, t0, tq, out, lse, scratch);
    default: return flash_fwd_pack(LX_FLASH_MAX_D, a, q, k, v, t0, tq, out, lse, scratch);
    }
}

/* row[s] = e^(row[s] - sub), by the forward's exp2 (a weight below 2^-125 is +0 there too); a
 * ragged tail through the same vector code */
static void flash_exp_row(float *row, int64_t n, float sub) {
    const __m256 l2e = _mm256_set1_ps(1.44269504088896341f), off = _mm256_set1_ps(-sub * 1.44269504088896341f);
    for (int64_t s = 0; s < n; s += 8) {
        const __m256i m = lanes_below(n - s);
        const __m256 x = _mm256_maskload_ps(row + s, m);
        _mm256_maskstore_ps(row + s, m, exp2_8(_mm256_fmadd_ps(x, l2e, off)));
    }
}

lx_flash_fwd_fn lx_flash_fwd_avx2(void) { return flash_fwd; }
lx_flash_exp_fn lx_flash_exp_avx2(void) { return flash_exp_row; }
#else
lx_flash_fwd_fn lx_flash_fwd_avx2(void) { return 0; }
lx_flash_exp_fn lx_flash_exp_avx2(void) { return 0; }
#endif
