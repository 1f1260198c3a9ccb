/* Fused attention on AVX2 + FMA (attention_internal.h; compiled with -mavx2 -mfma, run only after
 * cpuid says so). The design of attention_avx512.c on 8 lanes:
 *
 * A tile is 16 query rows, two halves of 8 (one query per vector lane). Per block of 8 keys:
 *   logits  s_j = sum_c Qt[c] * k[j][c]      8 x d FMAs per half, Qt (d x 16) the tile's scaled
 *                                            queries transposed, k[j][c] broadcast from the packed
 *                                            keys, one broadcast for both halves
 *   max     m' = max(m, s_0 .. s_7)          vertical (one max per key), no shuffles
 *   weights p_j = 2^(s_j - m'), alpha = 2^(m - m'), l = l alpha + sum_j p_j
 *   output  Ot[c] = Ot[c] alpha + sum_j p_j * v[j][c]   8 x dv FMAs per half, Ot (dv x 16) in L1
 * and at the end out = Ot / l, transposed back (8 x 8 in-register transposes, as for Qt). Zen 1
 * runs one 256-bit FMA a cycle and two loads; a broadcast per FMA ran at ~0.78 of the FMA peak,
 * one per two FMAs at ~0.94, hence the two halves.
 *
 * 2^x is the AVX-512 kernel's exp2 on 8 lanes, value for value: round to nearest, the same
 * degree-6 polynomial in the same FMA order, 2^n put into the exponent field (the product is
 * normal for every n in [-125, 127], where vscalefps gives the same bits; above, inf as its
 * overflow), +0 below -125 and for NaN. So the AVX2 and AVX-512 sets rebuild the backward's
 * weights with the function their forward used. */
#include "attention_internal.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include "avx2_edge.h"
#include <float.h>
#include <math.h>
#include <string.h>

static inline __attribute__((always_inline)) __m256 exp2_8(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(-125.0f), _CMP_GE_OQ);
    const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(1.540353039e-04f); /* ln2^k / k!, k = 6 .. 0 */
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.333355815e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618129108e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550410866e-02f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402265070e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931471806e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    /* n <= 127: into the exponent field (r is normal, as vscalefps's result). Lanes with
     * n > 127 (never reached by the kernels' arguments, logits minus their max or their
     * log-sum-exp, unless a NaN logit hid from the max) take the branch, as vscalefps: r = p 2^127
     * times 2 for n = 128 (p < 1 there: finite, or inf exactly when the product rounds past
     * FLT_MAX), p times inf for n > 128 (inf; NaN for x = +inf, where p is NaN: r is not, the
     * exponent add wrapped its bits). The branch saves the two multiplies and blends of that case
     * in every call (~2 of the ~8 FMA-pipe ops). A NaN x has n NaN: its e is garbage, the lane is
     * not live. */
    const __m256 big = _mm256_cmp_ps(n, _mm256_set1_ps(127.0f), _CMP_GT_OQ);
    if (__builtin_expect(_mm256_movemask_ps(big) != 0, 0)) {
        const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(_mm256_min_ps(n, _mm256_set1_ps(127.0f))), 23);
        const __m256 r = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
        const __m256 over = _mm256_blendv_ps(_mm256_mul_ps(p, _mm256_set1_ps(INFINITY)),
                                             _mm256_mul_ps(r, _mm256_set1_ps(2.0f)),
                                             _mm256_cmp_ps(n, _mm256_set1_ps(128.0f), _CMP_EQ_OQ));
        return _mm256_and_ps(_mm256_blendv_ps(r, over, big), live);
    }
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
        t[j] = _mm256_insertf128_ps(r[j], _mm256_castps256_ps128(r[4 + j]), 1);
        t[4 + j] = _mm256_insertf128_ps(r[4 + j], _mm256_extractf128_ps(r[j], 1), 0);
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

/* The first n floats (zeros past them) and their store: whole vectors by plain loads and stores,
 * an edge by narrower plain loads that read nothing past p + n, and a copy (Zen 1's vmaskmovps is
 * microcoded, ~10x a store when storing: the key packing and the output's transposes spent ~15% of
 * the forward in them; a masked load is ~2x a plain one). */
/* load_n: avx2_edge.h */
/* load_n by a masked load at the edge: the backward's (flash_bwd_ks) four edge loads, each
 * instantiated per key stride, grew flash_bwd from 39 to 59 KB as plain loads and it ran 2-6%
 * slower (T 7, d 32); there the microcoded load costs less than the code. */
static inline __attribute__((always_inline)) __m256 load_m(const float *p, int64_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : n <= 0 ? _mm256_setzero_ps() : _mm256_maskload_ps(p, lanes_below(n));
}
static inline __attribute__((always_inline)) void store_n(float *p, __m256 x, int64_t n) {
    if (n >= 8) {
        _mm256_storeu_ps(p, x);
    } else if (n > 0) {
        float t[8];
        _mm256_storeu_ps(t, x);
        memcpy(p, t, sizeof(float) * (size_t)n);
    }
}

/* A query tile is 16 rows in two halves of 8 lanes; its arrays hold per row of depth (or per key
 * for P) 16 floats, half h at offset 8 h, so one half alone (a tile of <= 8 rows, a causal tile's
 * last block) runs the same code with nh = 1. Every lane sees exactly the sequence of operations
 * of the 8-row tiles this replaced (same blocks of 8 keys, same FMA chains, same max tree), so
 * the bits do not change; what changes is that a broadcast key or value entry feeds two FMAs
 * (one per half): Zen 1 runs one broadcast per FMA at ~0.78 of the FMA peak, one per two at
 * ~0.94. */
#define TS 16 /* floats per row of Qt, Ot, P */

/* Ot[c .. c + nc)[half] = Ot alpha[half] + sum_u P[u] v[u][c ..] (nh nc independent chains; the
 * rescale only when some alpha lane is not 1: x * 1 is x, bit for bit). `fresh` (the tile's first
 * block): Ot holds nothing yet and the sums start from +0, what a zeroed Ot times that block's
 * alpha (0, from m = -inf) gave, without zeroing Ot first. */
static inline __attribute__((always_inline)) void pv_cols(const int nh, const int nc, const int KS, const float *P,
                                                          const float *Vb, int64_t c, const __m256 *alpha,
                                                          bool rescale, bool fresh, float *Ot) {
    __m256 o[8][2];
#pragma GCC unroll 8
    for (int cc = 0; cc < nc; cc++)
#pragma GCC unroll 2
        for (int h = 0; h < nh; h++) {
            if (fresh) {
                o[cc][h] = _mm256_setzero_ps();
                continue;
            }
            o[cc][h] = _mm256_load_ps(Ot + (c + cc) * TS + 8 * h);
            if (rescale) o[cc][h] = _mm256_mul_ps(o[cc][h], alpha[h]);
        }
#pragma GCC unroll 1
    for (int u = 0; u < 8; u++) {
        __m256 pu[2];
#pragma GCC unroll 2
        for (int h = 0; h < nh; h++) pu[h] = _mm256_load_ps(P + u * TS + 8 * h);
#pragma GCC unroll 8
        for (int cc = 0; cc < nc; cc++) {
            const __m256 vb = _mm256_broadcast_ss(Vb + u * KS + c + cc);
#pragma GCC unroll 2
            for (int h = 0; h < nh; h++) o[cc][h] = _mm256_fmadd_ps(pu[h], vb, o[cc][h]);
        }
    }
#pragma GCC unroll 8
    for (int cc = 0; cc < nc; cc++)
#pragma GCC unroll 2
        for (int h = 0; h < nh; h++) _mm256_store_ps(Ot + (c + cc) * TS + 8 * h, o[cc][h]);
}

/* What block_dots does with a sum s (key u, half h) before storing it: nothing (the forward's
 * logits), the backward's weights and_live(2^(s - sub[h])), or its dS and_live(sc P[u][h] (s - sub[h]))
 * (s = dP, sub = D), live (8 x TS lane masks) NULL when every lane is live. */
enum { EPI_NONE, EPI_EXP, EPI_DS };

/* out[u][half h] = sum_{c < w} Xt[c][h] X[u][c] for a block's 8 keys (rows of X at stride KS): the
 * logits (forward, backward) and dP. Two passes of 4 keys, 4 nh accumulators, nh vectors of Xt and
 * a broadcast. Compiled once per (halves, stride, epilogue) and called: inlined into the block
 * code, GCC kept 5 of the 8 accumulators on the stack (the epilogues' masks and constants crowded
 * the registers), the callers read the results back from out. The backward's epilogues run on
 * each pass's sums in registers (as separate loops over out they were another store and load of
 * every entry and a phase boundary per product). */
static inline __attribute__((always_inline)) void block_dots(const int nh, const int KS, const int epi, int64_t w,
                                                              const float *Xt, const float *X, float *out,
                                                              const __m256 *sub, const float *P, float sc,
                                                              const float *live) {
    const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 1
    for (int g = 0; g < 8; g += 4) {
        __m256 s[4][2];
#pragma GCC unroll 4
        for (int kk = 0; kk < 4; kk++)
#pragma GCC unroll 2
            for (int h = 0; h < nh; h++) s[kk][h] = zero;
        for (int64_t c = 0; c < w; c++) {
            __m256 xc[2];
#pragma GCC unroll 2
            for (int h = 0; h < nh; h++) xc[h] = _mm256_load_ps(Xt + c * TS + 8 * h);
#pragma GCC unroll 4
            for (int kk = 0; kk < 4; kk++) {
                const __m256 kc = _mm256_broadcast_ss(X + (g + kk) * KS + c);
#pragma GCC unroll 2
                for (int h = 0; h < nh; h++) s[kk][h] = _mm256_fmadd_ps(xc[h], kc, s[kk][h]);
            }
        }
#pragma GCC unroll 4
        for (int kk = 0; kk < 4; kk++)
#pragma GCC unroll 2
            for (int h = 0; h < nh; h++) {
                const int u = g + kk;
                __m256 x = s[kk][h];
                if (epi == EPI_EXP) {
                    x = exp2_8(_mm256_sub_ps(x, sub[h]));
                } else if (epi == EPI_DS) {
                    const __m256 pu = _mm256_mul_ps(_mm256_load_ps(P + u * TS + 8 * h), _mm256_set1_ps(sc));
                    x = _mm256_mul_ps(pu, _mm256_sub_ps(x, sub[h]));
                }
                if (epi != EPI_NONE && live) x = _mm256_and_ps(x, _mm256_load_ps(live + u * TS + 8 * h));
                _mm256_store_ps(out + u * TS + 8 * h, x);
            }
    }
}

#define DOTS_FN(NH, KS)                                                                                                \
    static __attribute__((noinline)) void dots_##NH##_##KS(int64_t w, const float *Xt, const float *X, float *out) {  \
        block_dots(NH, KS, EPI_NONE, w, Xt, X, out, NULL, NULL, 0.0f, NULL);                                           \
    }                                                                                                                  \
    static __attribute__((noinline)) void dots_p_##NH##_##KS(int64_t w, const float *Xt, const float *X, float *out,   \
                                                             const __m256 *sub, const float *live) {                  \
        block_dots(NH, KS, EPI_EXP, w, Xt, X, out, sub, NULL, 0.0f, live);                                            \
    }                                                                                                                  \
    static __attribute__((noinline)) void dots_ds_##NH##_##KS(int64_t w, const float *Xt, const float *X, float *out,  \
                                                              const __m256 *sub, const float *P, float sc,            \
                                                              const float *live) {                                    \
        block_dots(NH, KS, EPI_DS, w, Xt, X, out, sub, P, sc, live);                                                  \
    }
DOTS_FN(1, 16)
DOTS_FN(2, 16)
DOTS_FN(1, 32)
DOTS_FN(2, 32)
DOTS_FN(1, 64)
DOTS_FN(2, 64)
DOTS_FN(1, 128)
DOTS_FN(2, 128)
typedef void (*dots_fn)(int64_t w, const float *Xt, const float *X, float *out);
static inline dots_fn dots_for(int nh, int KS) {
    switch (KS) {
    case 16: return nh == 2 ? dots_2_16 : dots_1_16;
    case 32: return nh == 2 ? dots_2_32 : dots_1_32;
    case 64: return nh == 2 ? dots_2_64 : dots_1_64;
    default: return nh == 2 ? dots_2_128 : dots_1_128;
    }
}
typedef void (*dots_p_fn)(int64_t w, const float *Xt, const float *X, float *out, const __m256 *sub, const float *live);
static inline dots_p_fn dots_p_for(int nh, int KS) {
    switch (KS) {
    case 16: return nh == 2 ? dots_p_2_16 : dots_p_1_16;
    case 32: return nh == 2 ? dots_p_2_32 : dots_p_1_32;
    case 64: return nh == 2 ? dots_p_2_64 : dots_p_1_64;
    default: return nh == 2 ? dots_p_2_128 : dots_p_1_128;
    }
}
typedef void (*dots_ds_fn)(int64_t w, const float *Xt, const float *X, float *out, const __m256 *sub, const float *P,
                           float sc, const float *live);
static inline dots_ds_fn dots_ds_for(int nh, int KS) {
    switch (KS) {
    case 16: return nh == 2 ? dots_ds_2_16 : dots_ds_1_16;
    case 32: return nh == 2 ? dots_ds_2_32 : dots_ds_1_32;
    case 64: return nh == 2 ? dots_ds_2_64 : dots_ds_1_64;
    default: return nh == 2 ? dots_ds_2_128 : dots_ds_1_128;
    }
}

/* One block of 8 keys (kb of them real) for nh halves of a tile: half h's lane i is query
 * ih + 8 h + i. The logits (block_dots) wait in P, then become the weights there; the max is
 * tree8_max's tree, so the 8-row tiles' own. */
static inline __attribute__((always_inline)) void fwd_block(const int nh, const int KS, int64_t d, int64_t dv,
                                                            const float *Qt, const float *Kb, const float *Vb,
                                                            int kb, bool causal, int64_t j0, int64_t ih, __m256 *m,
                                                            __m256 *l, float *Ot, float *P) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const bool edge = kb < 8 || (causal && j0 + 7 > ih); /* a partial block or one on half 0's diagonal */
    dots_for(nh, KS)(d, Qt, Kb, P);
    __m256 a[2][4];
#pragma GCC unroll 2
    for (int h = 0; h < nh; h++) {
        __m256 x[8];
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            x[u] = _mm256_load_ps(P + u * TS + 8 * h);
            /* keys past the block's end masked in every lane; causal: key j0 + u in the lanes of
             * queries before it */
            if (edge) {
                const int64_t thr = u >= kb ? 8 : causal ? j0 + u - (ih + 8 * h) : 0;
                x[u] = _mm256_blendv_ps(x[u], ninf, _mm256_castsi256_ps(lanes_below(thr)));
                _mm256_store_ps(P + u * TS + 8 * h, x[u]);
            }
        }
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) a[h][u] = _mm256_max_ps(x[u], x[u + 4]); /* tree8_max's first level */
    }
    __m256 alpha[2];
    int moved = 0;
#pragma GCC unroll 2
    for (int h = 0; h < nh; h++) {
        const __m256 mx = _mm256_max_ps(m[h], _mm256_max_ps(_mm256_max_ps(a[h][0], a[h][2]), _mm256_max_ps(a[h][1], a[h][3])));
        alpha[h] = exp2_8(_mm256_sub_ps(m[h], mx));
        moved |= _mm256_movemask_ps(_mm256_cmp_ps(alpha[h], _mm256_set1_ps(1.0f), _CMP_NEQ_UQ));
        __m256 p[8];
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) p[u] = exp2_8(_mm256_sub_ps(_mm256_load_ps(P + u * TS + 8 * h), mx));
        l[h] = _mm256_fmadd_ps(l[h], alpha[h], tree8_add(p));
        m[h] = mx;
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) _mm256_store_ps(P + u * TS + 8 * h, p[u]);
    }
    /* the row maxima settle as the keys go by: late blocks mostly leave every alpha at 1 */
    const bool rescale = moved != 0, fresh = j0 == 0; /* the halves' first block (see flash_fwd_ks) */
    int64_t c = 0;
    if (nh == 2) {
#pragma GCC unroll 1
        for (; c + 4 <= dv; c += 4) pv_cols(2, 4, KS, P, Vb, c, alpha, rescale, fresh, Ot);
    } else {
#pragma GCC unroll 1
        for (; c + 8 <= dv; c += 8) pv_cols(1, 8, KS, P, Vb, c, alpha, rescale, fresh, Ot);
        if (c + 4 <= dv) pv_cols(1, 4, KS, P, Vb, c, alpha, rescale, fresh, Ot), c += 4;
    }
    for (; c < dv; c++) pv_cols(nh, 1, KS, P, Vb, c, alpha, rescale, fresh, Ot);
}

/* How a query tile is divided by qdiv (Flax's sqrt(depth)): not at all, by the reciprocal's product
 * (a power of two: the same real number), by div_q's corrected reciprocal product without its
 * range test (the correctly rounded quotient for entries of magnitude in [2^-100, 2^100] and
 * zeros; q_tile's caller tests the range once per tile), or by div_q itself. */
enum { Q_NONE, Q_POW2, Q_RECIP, Q_DIV };

/* Qt (d x 16, rows at stride TS) = the tile's n (<= 16) query rows from q (stride ldq), transposed,
 * divided as `how` says and times qmul (padding lanes 0). Q_RECIP: amax / amin take the unsigned
 * max of the entries' magnitude bits and the min of those bits minus 1 (zeros wrap to the top: the
 * min is over the nonzero entries); otherwise qbad += x - x (NaN exactly for inf / NaN entries).
 * div_q's range test on every vector had been ~5% of the depth-32 forward. */
static inline __attribute__((always_inline)) void q_tile(const int how, int64_t d, int64_t ldq, const float *q,
                                                          int64_t n, float qdiv, float qmul, float *Qt, __m256i *amax,
                                                          __m256i *amin, __m256 *qbad) {
    const __m256 zero = _mm256_setzero_ps(), vb = _mm256_set1_ps(qdiv), y = _mm256_set1_ps(1.0f / qdiv);
    const __m256 vm = _mm256_set1_ps(qmul);
    const __m256i mag = _mm256_set1_epi32(0x7fffffff), one = _mm256_set1_epi32(1);
    for (int h = 0; h < 2 && 8 * h < n; h++) {
        const float *qr = q + 8 * h * ldq;
        const int64_t nr = n - 8 * h < 8 ? n - 8 * h : 8;
        for (int64_t c0 = 0; c0 < d; c0 += 8) {
            const int64_t nc = d - c0 < 8 ? d - c0 : 8;
            __m256 r[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                r[i] = i < nr ? load_n(qr + i * ldq + c0, nc) : zero;
                if (how == Q_RECIP) {
                    const __m256i b = _mm256_and_si256(_mm256_castps_si256(r[i]), mag);
                    *amax = _mm256_max_epu32(*amax, b);
                    *amin = _mm256_min_epu32(*amin, _mm256_sub_epi32(b, one));
                } else {
                    *qbad = _mm256_add_ps(*qbad, _mm256_sub_ps(r[i], r[i]));
                }
            }
            transpose8(r);
#pragma GCC unroll 8
            for (int cc = 0; cc < 8; cc++) {
                if (cc >= nc) break;
                __m256 x = r[cc];
                if (how == Q_POW2) {
                    x = _mm256_mul_ps(x, y); /* exact: the same bits as the quotient */
                } else if (how == Q_RECIP) {
                    const __m256 q0 = _mm256_mul_ps(x, y);
                    x = _mm256_fmadd_ps(_mm256_fnmadd_ps(q0, vb, x), y, q0);
                } else if (how == Q_DIV) {
                    x = div_q(x, qdiv);
                }
                _mm256_store_ps(Qt + (c0 + cc) * TS + 8 * h, _mm256_mul_ps(x, vm));
            }
        }
    }
}

/* q_tile per division, each compiled once and called (inlined, its copies in flash_fwd_ks's four
 * strides changed GCC's code for the blocks: PV's loop ran 3x the instructions at depth 16) */
#define Q_TILE_ARGS                                                                                                    \
    int64_t d, int64_t ldq, const float *q, int64_t n, float qdiv, float qmul, float *Qt, __m256i *amax,              \
        __m256i *amin, __m256 *qbad
#define Q_TILE_FN(HOW)                                                                                                 \
    static __attribute__((noinline)) void q_tile_##HOW(Q_TILE_ARGS) {                                                 \
        q_tile(HOW, d, ldq, q, n, qdiv, qmul, Qt, amax, amin, qbad);                                                   \
    }
Q_TILE_FN(Q_NONE)
Q_TILE_FN(Q_POW2)
Q_TILE_FN(Q_RECIP)
Q_TILE_FN(Q_DIV)
typedef void (*q_tile_fn)(Q_TILE_ARGS);
static q_tile_fn q_tile_for(int how) {
    return how == Q_RECIP ? q_tile_Q_RECIP : how == Q_POW2 ? q_tile_Q_POW2 : how == Q_DIV ? q_tile_Q_DIV : q_tile_Q_NONE;
}

/* KS: the packed rows' stride (>= d, dv), a constant so that one pointer and fixed offsets
 * address a block's 8 rows. */
static inline __attribute__((always_inline)) bool flash_fwd_ks(const int KS, const lx_flash_args *a, const float *q,
                                                               const float *Kp, const float *Vp, int64_t t0, int64_t tq,
                                                               float *out, float *lse) {
    const int64_t d = a->d, dv = a->dv;
    float Qt[LX_FLASH_MAX_D * TS] __attribute__((aligned(32)));
    float Ot[LX_FLASH_MAX_D * TS] __attribute__((aligned(32)));
    float P[8 * TS] __attribute__((aligned(32))); /* a block's logits, then weights, key-major */
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    int qexp;
    /* a power of two (depth 4, 16, 64): x * (1 / qdiv) is the same real number as x / qdiv */
    const int fast = a->qdiv == 0.0f ? Q_NONE : frexpf(a->qdiv, &qexp) == 0.5f ? Q_POW2 : Q_RECIP;
    bool ok = true;
    for (int64_t i0 = t0; i0 < t0 + tq; i0 += 16) {
        const int64_t n = t0 + tq - i0 < 16 ? t0 + tq - i0 : 16;
        const int nh = n > 8 ? 2 : 1;
        /* the next tile's rows (strided lines, often from outside L2: perf put ~10% of the depth-32
         * forward on the first touch of q, k and v; these prefetches took 4-14% off it on Zen 1) */
        if (i0 + 16 < t0 + tq)
            for (int64_t i = 16; i < 32 && i0 + i < t0 + tq; i++)
                for (int64_t c = 0; c < d; c += 16) _mm_prefetch((const char *)(q + (i0 + i) * a->ldq + c), _MM_HINT_T0);
        /* the tile's queries: first the fast quotient (below) and the entries' magnitude bits,
         * then, if an entry is out of its range, again through div_q vector by vector */
        __m256i amax = _mm256_setzero_si256(), amin = _mm256_set1_epi32(-1);
        __m256 qbad = zero;
        q_tile_for(fast)(d, a->ldq, q + i0 * a->ldq, n, a->qdiv, a->qmul, Qt, &amax, &amin, &qbad);
        uint32_t mx[8], mn[8], bmax = 0, bmin = UINT32_MAX;
        _mm256_storeu_si256((__m256i *)mx, amax), _mm256_storeu_si256((__m256i *)mn, amin);
        for (int i = 0; i < 8; i++) bmax = mx[i] > bmax ? mx[i] : bmax, bmin = mn[i] < bmin ? mn[i] : bmin;
        if (bmax >= 0x7f800000u || _mm256_movemask_ps(_mm256_cmp_ps(qbad, qbad, _CMP_UNORD_Q))) {
            /* an inf / NaN query entry: the general path */
            ok = false;
            continue;
        }
        if (fast == Q_RECIP && (bmax > 0x71800000u || bmin < 0x0d800000u - 1)) /* past 2^100 or below 2^-100 */
            q_tile_for(Q_DIV)(d, a->ldq, q + i0 * a->ldq, n, a->qdiv, a->qmul, Qt, &amax, &amin, &qbad);
        /* causal: half 0 needs keys up to i0 + 8 (a multiple of 8: t0 is one of 16), half 1 up to
         * i0 + n; so the blocks both need run with nh = 2 and see the same kb, and half 1's last
         * block runs alone. Ot is not zeroed: the first block (j0 = 0, always one of both halves)
         * starts its sums from +0 */
        const int64_t n0 = n < 8 ? n : 8;
        const int64_t kend0 = a->causal ? (a->S < i0 + n0 ? a->S : i0 + n0) : a->S;
        const int64_t kend1 = a->causal ? (a->S < i0 + n ? a->S : i0 + n) : a->S;
        __m256 m[2] = {ninf, ninf}, l[2] = {zero, zero};
        int64_t j0 = 0;
        if (nh == 2)
            for (; j0 < kend0; j0 += 8)
                fwd_block(2, KS, d, dv, Qt, Kp + j0 * KS, Vp + j0 * KS, kend0 - j0 < 8 ? (int)(kend0 - j0) : 8,
                          a->causal, j0, i0, m, l, Ot, P);
        else
            for (; j0 < kend0; j0 += 8)
                fwd_block(1, KS, d, dv, Qt, Kp + j0 * KS, Vp + j0 * KS, kend0 - j0 < 8 ? (int)(kend0 - j0) : 8,
                          a->causal, j0, i0, m, l, Ot, P);
        if (nh == 2)
            for (; j0 < kend1; j0 += 8)
                fwd_block(1, KS, d, dv, Qt + 8, Kp + j0 * KS, Vp + j0 * KS, kend1 - j0 < 8 ? (int)(kend1 - j0) : 8,
                          a->causal, j0, i0 + 8, m + 1, l + 1, Ot + 8, P + 8);
        /* a logit that overflowed (l is then 0, inf or NaN): the general path */
        int bad = 0;
        for (int h = 0; h < nh; h++) {
            const __m256 rows = _mm256_castsi256_ps(lanes_below(n - 8 * h));
            const __m256 lbad = _mm256_or_ps(_mm256_cmp_ps(l[h], _mm256_set1_ps(FLT_MAX), _CMP_GT_OQ),
                                             _mm256_cmp_ps(l[h], zero, _CMP_NGT_UQ));
            bad |= _mm256_movemask_ps(_mm256_and_ps(rows, lbad));
        }
        if (bad) {
            ok = false;
            continue;
        }
        /* out row i, columns c0 .. c0 + 7 = Ot[c0 ..][i] / l[i]. The sums in Ot are not yet divided
         * by l (up to S times a value): one that overflowed makes the job decline (x - x is NaN
         * for inf; the rows written so far are all rewritten by the general path) */
        __m256 obad = zero;
        for (int h = 0; h < nh; h++) {
            const __m256 rl = _mm256_div_ps(_mm256_set1_ps(1.0f), l[h]);
            const int64_t nr = n - 8 * h < 8 ? n - 8 * h : 8;
            for (int64_t c0 = 0; c0 < dv; c0 += 8) {
                const int64_t nc = dv - c0 < 8 ? dv - c0 : 8;
                __m256 r[8];
#pragma GCC unroll 8
                for (int cc = 0; cc < 8; cc++)
                    r[cc] = cc < nc ? _mm256_mul_ps(_mm256_load_ps(Ot + (c0 + cc) * TS + 8 * h), rl) : zero;
#pragma GCC unroll 8
                for (int cc = 0; cc < 8; cc++) obad = _mm256_add_ps(obad, _mm256_sub_ps(r[cc], r[cc]));
                transpose8(r);
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++)
                    if (i < nr) store_n(out + (i0 + 8 * h + i) * a->ldo + c0, r[i], nc);
            }
            if (lse) {
                float mv[8], lv[8];
                _mm256_storeu_ps(mv, m[h]), _mm256_storeu_ps(lv, l[h]);
                for (int64_t i = 0; i < nr; i++) lse[i0 + 8 * h + i] = (mv[i] + log2f(lv[i])) * 0.693147180559945309f;
            }
        }
        if (_mm256_movemask_ps(_mm256_cmp_ps(obad, obad, _CMP_UNORD_Q))) {
            ok = false;
            continue;
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
    const __m256 zero = _mm256_setzero_ps();
    __m256 acc[2] = {zero, zero};
    for (int64_t j = 0; j < kend; j++) {
        const float *kr = k + j * ldk, *vr = v + j * ldv;
        if (j + 8 < kend)
            for (int c = 0; c < KS; c += 16) {
                if (c < d) _mm_prefetch((const char *)(kr + 8 * ldk + c), _MM_HINT_T0);
                if (c < dv) _mm_prefetch((const char *)(vr + 8 * ldv + c), _MM_HINT_T0);
            }
        float *kp = Kp + j * KS, *vp = Vp + j * KS;
#pragma GCC unroll 4
        for (int c = 0; c < KS; c += 8) {
            const __m256 x = load_n(kr + c, d - c);
            const __m256 y = load_n(vr + c, dv - c);
            acc[0] = _mm256_fmadd_ps(x, zero, acc[0]);
            acc[1] = _mm256_fmadd_ps(y, zero, acc[1]);
            _mm256_store_ps(kp + c, x);
            _mm256_store_ps(vp + c, y);
        }
    }
    for (int64_t j = kend * KS; j < kpad * KS; j += 8) /* padding keys: zeros */
        _mm256_store_ps(Kp + j, zero), _mm256_store_ps(Vp + j, zero);
    for (int64_t j = kend; j < a->S; j++)
        for (int c = 0; c < dv; c += 8) acc[1] = _mm256_fmadd_ps(load_n(v + j * ldv + c, dv - c), zero, acc[1]);
    const __m256 t = _mm256_add_ps(acc[0], acc[1]);
    if (_mm256_movemask_ps(_mm256_cmp_ps(t, t, _CMP_UNORD_Q))) return false;
    return flash_fwd_ks(KS, a, q, Kp, Vp, t0, tq, out, lse);
}

static bool flash_fwd(const lx_flash_args *a, const float *q, const float *k, const float *v, int64_t t0, int64_t tq,
                      float *out, float *lse, float *scratch) {
    /* causal tiles split their key blocks at half 0's end, t0 + 16 i + 8, which must be a block
     * edge (flash_fwd_ks): another t0 is declined before anything is read or written (the
     * caller's general path then has the rows; attention.c's jobs start at multiples of 128) */
    if (a->causal && t0 % 8 != 0) return false;
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
        store_n(row + s, exp2_8(_mm256_fmadd_ps(load_n(row + s, n - s), l2e, off)), n - s);
    }
}

/* One row of the attention backward without a mask (attention_internal.h): the dot in double
 * (two 4-lane FMA chains, then the tail) */
static void attn_ds_row(const float *p, const float *dp, float *ds, int64_t ncols, int64_t lim, int64_t S) {
    __m256d d0 = _mm256_setzero_pd(), d1 = _mm256_setzero_pd();
    int64_t s = 0;
    for (; s + 8 <= ncols; s += 8) {
        const __m256 x = _mm256_loadu_ps(p + s), y = _mm256_loadu_ps(dp + s);
        d0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_castps256_ps128(y)), d0);
        d1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)), d1);
    }
    double acc[4];
    _mm256_storeu_pd(acc, _mm256_add_pd(d0, d1));
    double dot = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (; s < ncols; s++) dot += (double)p[s] * dp[s];
    const __m256 fd = _mm256_set1_ps((float)dot);
    for (s = 0; s < S; s += 8) {
        const __m256 x = load_n(p + s, lim - s), y = load_n(dp + s, lim - s);
        store_n(ds + s, _mm256_and_ps(_mm256_mul_ps(x, _mm256_sub_ps(y, fd)), _mm256_castsi256_ps(lanes_below(lim - s))), S - s);
    }
}

/* ---- backward (attention_internal.h) ----
 * attention_avx512.c's flash-attention 2 scheme on 8 lanes. Per query tile (16 queries, two halves
 * of 8 lanes as in the forward) the tile is packed four ways in L1: Qt (d x 16, scaled by
 * qmul = sc log2 e) and dOt (dv x 16) for the products with a key block's rows, Qn and dOn
 * (16 rows at stride KS) for dK and dV; then per key block of 8:
 *   s_u  = sum_c Qt[c] k[u][c]                     8 d FMAs per half (key entries broadcast)
 *   P_u  = 2^(s_u - lse log2 e), 0 where masked   (causal, keys past S, rows past T)
 *   dP_u = sum_c dOt[c] v[u][c]                    8 dv FMAs per half
 *   dS_u = sc P_u (dP_u - D), D = rowsum(dO o)
 * P and dS are stored key-major (8 x 16, lane = query) and then
 *   dV[u] += sum_i P[u][i] dOn[i],  dK[u] += sum_i dS[u][i] Qn[i]
 *   dQ[i] += sum_u dS[u][i] k[u]
 * with the weights broadcast from memory, each broadcast feeding two column vectors. dK, dV live
 * in job-wide buffers (keys x KS) written out at the end; dQ in an L1 buffer written out per
 * tile. Every accumulator sees the FMAs of the 8-row tiles this replaced in the same order (dK,
 * dV: rows in order, tile after tile; dQ: blocks in order, keys in order), so the bits are the
 * same. The 16-row tile halves the reads of the packed k, v, dK, dV per FMA: at T = 64 and depth
 * 32 those four are 32 KiB, L1's size, and the 8-row tile's products ran at ~0.5-0.7 of the FMA
 * peak. */

/* acc[r][8 cc ..] += sum_{j < nj} W[r wr + j wj] X[j][8 cc ..], r < nr, cc < nc (acc and X rows at
 * stride KS): nr nc accumulators, nc loads and nr broadcasts per j. `fresh`: acc holds nothing yet,
 * the sums start from +0 (as from a zeroed buffer: the same bits, without zeroing it first). */
static inline __attribute__((always_inline)) void rank_acc(const int nr, const int nc, const int KS, const float *W,
                                                            const int wr, const int wj, const float *X, int nj,
                                                            float *acc, bool fresh) {
    __m256 o[8][2];
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 2
        for (int cc = 0; cc < nc; cc++) o[r][cc] = fresh ? _mm256_setzero_ps() : _mm256_load_ps(acc + r * KS + 8 * cc);
#pragma GCC unroll 1
    for (int j = 0; j < nj; j++) {
        __m256 x[2];
#pragma GCC unroll 2
        for (int cc = 0; cc < nc; cc++) x[cc] = _mm256_load_ps(X + j * KS + 8 * cc);
#pragma GCC unroll 8
        for (int r = 0; r < nr; r++) {
            const __m256 w = _mm256_broadcast_ss(W + r * wr + j * wj);
#pragma GCC unroll 2
            for (int cc = 0; cc < nc; cc++) o[r][cc] = _mm256_fmadd_ps(w, x[cc], o[r][cc]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 2
        for (int cc = 0; cc < nc; cc++) _mm256_store_ps(acc + r * KS + 8 * cc, o[r][cc]);
}

/* acc rows [0, nrows) (a multiple of 8), chunks [0, nchunk): 4 rows x 2 chunks at a time, an odd
 * last chunk 8 rows at a time */
static inline __attribute__((always_inline)) void rank_all(const int KS, int nchunk, int nrows, const float *W,
                                                            const int wr, const int wj, const float *X, int nj,
                                                            float *acc, bool fresh) {
    int c = 0;
    for (; c + 2 <= nchunk; c += 2)
        for (int r0 = 0; r0 < nrows; r0 += 4) rank_acc(4, 2, KS, W + r0 * wr, wr, wj, X + 8 * c, nj, acc + r0 * KS + 8 * c, fresh);
    if (c < nchunk)
        for (int r0 = 0; r0 < nrows; r0 += 8) rank_acc(8, 1, KS, W + r0 * wr, wr, wj, X + 8 * c, nj, acc + r0 * KS + 8 * c, fresh);
}

/* 8 rows (n of them live, the rest zeros) of width w from src (stride ld) into dst (stride KS, zero
 * padded), and their transpose times mul into dt (w rows at stride TS) */
static inline __attribute__((always_inline)) void bwd_pack_tile(const int KS, const float *src, int64_t ld, int64_t n,
                                                                 int64_t w, float mul, float *dst, float *dt) {
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t c0 = 0; c0 < KS; c0 += 8) {
        __m256 r[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            r[i] = i < n ? load_n(src + i * ld + c0, w - c0) : zero;
            _mm256_store_ps(dst + i * KS + c0, r[i]);
        }
        if (c0 >= w) continue;
        transpose8(r);
        const int64_t nc = w - c0 < 8 ? w - c0 : 8;
        for (int64_t cc = 0; cc < nc; cc++) _mm256_store_ps(dt + (c0 + cc) * TS, _mm256_mul_ps(r[cc], _mm256_set1_ps(mul)));
    }
}

/* One key block (kb real keys) for nh halves of a tile whose half 0 starts at query ih: P and dS
 * into their 8 x TS buffers, then the three rank updates. */
static inline __attribute__((always_inline)) void bwd_block(const int nh, const int KS, const lx_flash_bwd_args *a,
                                                             int64_t n, int64_t ih, int64_t j0, int kb, const float *Qt,
                                                             const float *dOt, const float *Qn, const float *dOn,
                                                             const __m256 *L2, const __m256 *Dd, const float *Kb,
                                                             const float *Vb, float *dKb, float *dVb, float *dQa,
                                                             float *P, float *dS, int fresh) {
    const int64_t d = a->d, dvv = a->dv;
    const int nd = (int)((d + 7) / 8), nv = (int)((dvv + 7) / 8);
    const bool edge = kb < 8 || (a->causal && j0 + 7 > ih); /* a partial or diagonal block */
    /* key u live in half h's lanes: queries past T, keys past the block's end and (causal) keys
     * after the query masked; no masks when every lane is live */
    float lv[8 * TS] __attribute__((aligned(32)));
    const float *live = NULL;
    if (edge || n < 8 * nh) {
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++)
#pragma GCC unroll 2
            for (int h = 0; h < nh; h++) {
                const __m256 rows = _mm256_castsi256_ps(lanes_below(n - 8 * h));
                const __m256 x = edge ? _mm256_andnot_ps(_mm256_castsi256_ps(lanes_below(u >= kb ? 8 : a->causal ? j0 + u - (ih + 8 * h) : 0)), rows)
                                      : rows;
                _mm256_store_ps(lv + u * TS + 8 * h, x);
            }
        live = lv;
    }
    dots_p_for(nh, KS)(d, Qt, Kb, P, L2, live);
    dots_ds_for(nh, KS)(dvv, dOt, Vb, dS, Dd, P, a->sc, live);
    const int nx = (int)(n < 8 * nh ? n : 8 * nh); /* the tile's rows the halves hold */
    rank_all(KS, nv, 8, P, TS, 1, dOn, nx, dVb, fresh & 1);
    rank_all(KS, nd, 8, dS, TS, 1, Qn, nx, dKb, fresh & 1);
    rank_all(KS, nd, 8 * nh, dS, 1, TS, Kb, kb, dQa, fresh & 2);
}

/* bwd_block per (halves, stride), each compiled once: inlined at its three call sites in each of
 * flash_bwd_ks's four strides the backward was ~160 KB of code, and ran ~15% slower than with
 * these calls */
#define BWD_BLOCK_ARGS                                                                                                 \
    const lx_flash_bwd_args *a, int64_t n, int64_t ih, int64_t j0, int kb, const float *Qt, const float *dOt,        \
        const float *Qn, const float *dOn, const __m256 *L2, const __m256 *Dd, const float *Kb, const float *Vb,       \
        float *dKb, float *dVb, float *dQa, float *P, float *dS, int fresh
#define BWD_BLOCK_FN(NH, KS)                                                                                           \
    static __attribute__((noinline)) void bwd_block_##NH##_##KS(BWD_BLOCK_ARGS) {                                     \
        bwd_block(NH, KS, a, n, ih, j0, kb, Qt, dOt, Qn, dOn, L2, Dd, Kb, Vb, dKb, dVb, dQa, P, dS, fresh);                   \
    }
BWD_BLOCK_FN(1, 16)
BWD_BLOCK_FN(2, 16)
BWD_BLOCK_FN(1, 32)
BWD_BLOCK_FN(2, 32)
BWD_BLOCK_FN(1, 64)
BWD_BLOCK_FN(2, 64)
BWD_BLOCK_FN(1, 128)
BWD_BLOCK_FN(2, 128)
typedef void (*bwd_block_fn)(BWD_BLOCK_ARGS);
static bwd_block_fn bwd_block_for(int nh, int KS) {
    switch (KS) {
    case 16: return nh == 2 ? bwd_block_2_16 : bwd_block_1_16;
    case 32: return nh == 2 ? bwd_block_2_32 : bwd_block_1_32;
    case 64: return nh == 2 ? bwd_block_2_64 : bwd_block_1_64;
    default: return nh == 2 ? bwd_block_2_128 : bwd_block_1_128;
    }
}

static inline __attribute__((always_inline)) void flash_bwd_ks(const int KS, const lx_flash_bwd_args *a, const float *q,
                                                               const float *k, const float *v, const float *o,
                                                               const float *go, const float *lse, float *dq, float *dk,
                                                               float *dv, float *scratch) {
    const int64_t T = a->T, S = a->S, d = a->d, dvv = a->dv, Spad = (S + 15) / 16 * 16;
    float *Kp = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *Vp = Kp + Spad * KS + 16, *dKp = Vp + Spad * KS + 16, *dVp = dKp + Spad * KS + 16;
    float *Qt = dVp + Spad * KS + 16, *Qn = Qt + 16 * KS, *dOt = Qn + 16 * KS, *dOn = dOt + 16 * KS;
    float *dQa = dOn + 16 * KS, *P = dQa + 16 * KS, *dS = P + 256;
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t j = 0; j < Spad; j++) {
        if (j + 8 < S)
            for (int c = 0; c < KS; c += 16) {
                if (c < d) _mm_prefetch((const char *)(k + (j + 8) * a->ldk + c), _MM_HINT_T0);
                if (c < dvv) _mm_prefetch((const char *)(v + (j + 8) * a->ldv + c), _MM_HINT_T0);
            }
#pragma GCC unroll 4
        for (int c = 0; c < KS; c += 8) {
            _mm256_store_ps(Kp + j * KS + c, j < S ? load_m(k + j * a->ldk + c, d - c) : zero);
            _mm256_store_ps(Vp + j * KS + c, j < S ? load_m(v + j * a->ldv + c, dvv - c) : zero);
        }
    }
    const float l2e = 1.44269504088896341f, qmul = a->sc * l2e;
    int64_t kdone = 0; /* dK / dV rows [0, kdone) hold sums (the rest are not zeroed first) */
    for (int64_t r = 0; r < a->R; r++) {
        const float *qh = q + r * d, *oh = o + r * dvv, *gh = go + r * dvv, *lh = lse + r * T;
        float *dqh = dq + r * d;
        for (int64_t i0 = 0; i0 < T; i0 += 16) {
            const int64_t n = T - i0 < 16 ? T - i0 : 16;
            const int nh = n > 8 ? 2 : 1;
            if (i0 + 16 < T) /* the next tile's rows of q, dO and o (as in the forward) */
                for (int64_t i = i0 + 16; i < i0 + 32 && i < T; i++) {
                    for (int64_t c = 0; c < d; c += 16) _mm_prefetch((const char *)(qh + i * a->ldq + c), _MM_HINT_T0);
                    for (int64_t c = 0; c < dvv; c += 16) {
                        _mm_prefetch((const char *)(gh + i * a->ldo + c), _MM_HINT_T0);
                        _mm_prefetch((const char *)(oh + i * a->ldo + c), _MM_HINT_T0);
                    }
                }
            __m256 Dd[2], L2[2];
            for (int h = 0; h < nh; h++) {
                const int64_t ih = i0 + 8 * h, nr = n - 8 * h < 8 ? n - 8 * h : 8;
                bwd_pack_tile(KS, qh + ih * a->ldq, a->ldq, nr, d, qmul, Qn + 8 * h * KS, Qt + 8 * h);
                bwd_pack_tile(KS, gh + ih * a->ldo, a->ldo, nr, dvv, 1.0f, dOn + 8 * h * KS, dOt + 8 * h);
                /* D = rowsum(dO o): per row a vector of partial sums, then one transpose and a tree */
                __m256 t[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) t[i] = zero;
                for (int64_t c = 0; c < dvv; c += 8) {
#pragma GCC unroll 8
                    for (int i = 0; i < 8; i++)
                        if (i < nr)
                            t[i] = _mm256_fmadd_ps(_mm256_load_ps(dOn + (8 * h + i) * KS + c),
                                                   load_m(oh + (ih + i) * a->ldo + c, dvv - c), t[i]);
                }
                transpose8(t);
                Dd[h] = tree8_add(t);
                L2[h] = _mm256_mul_ps(load_m(lh + ih, nr), _mm256_set1_ps(l2e));
            }
            /* causal: the blocks both halves need (kend0, the same kb for both: see the forward),
             * then half 1's last block alone */
            const int64_t n0 = n < 8 ? n : 8;
            const int64_t kend0 = a->causal ? (S < i0 + n0 ? S : i0 + n0) : S;
            const int64_t kend1 = a->causal ? (S < i0 + n ? S : i0 + n) : S;
            const bwd_block_fn both = bwd_block_for(nh, KS), one = bwd_block_for(1, KS);
            /* fresh: bit 0 the block's dK / dV rows (key blocks are reached in order, tile after
             * tile, so the rows past kdone hold nothing yet), bit 1 the tile's dQ (its first block,
             * j0 = 0 for both halves) */
            int64_t j0 = 0;
            for (; j0 < kend0; j0 += 8, kdone = j0 > kdone ? j0 : kdone)
                both(a, n, i0, j0, kend0 - j0 < 8 ? (int)(kend0 - j0) : 8, Qt, dOt, Qn, dOn, L2, Dd, Kp + j0 * KS,
                     Vp + j0 * KS, dKp + j0 * KS, dVp + j0 * KS, dQa, P, dS, (j0 >= kdone) | (j0 == 0) << 1);
            if (nh == 2)
                for (; j0 < kend1; j0 += 8, kdone = j0 > kdone ? j0 : kdone)
                    one(a, n - 8, i0 + 8, j0, kend1 - j0 < 8 ? (int)(kend1 - j0) : 8, Qt + 8, dOt + 8, Qn + 8 * KS,
                        dOn + 8 * KS, L2 + 1, Dd + 1, Kp + j0 * KS, Vp + j0 * KS, dKp + j0 * KS, dVp + j0 * KS,
                        dQa + 8 * KS, P + 8, dS + 8, j0 >= kdone);
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = 0; c < d; c += 8)
                    store_n(dqh + (i0 + i) * a->ldq + c, _mm256_load_ps(dQa + i * KS + c), d - c);
        }
    }
    /* keys no query reaches (causal, S > T) get zeros */
    for (int64_t j = 0; j < S; j++) {
        for (int64_t c = 0; c < d; c += 8)
            store_n(dk + j * a->ldk + c, j < kdone ? _mm256_load_ps(dKp + j * KS + c) : zero, d - c);
        for (int64_t c = 0; c < dvv; c += 8)
            store_n(dv + j * a->ldv + c, j < kdone ? _mm256_load_ps(dVp + j * KS + c) : zero, dvv - c);
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

lx_flash_fwd_fn lx_flash_fwd_avx2(void) { return flash_fwd; }
lx_flash_exp_fn lx_flash_exp_avx2(void) { return flash_exp_row; }
lx_attn_ds_fn lx_attn_ds_avx2(void) { return attn_ds_row; }
lx_flash_bwd_fn lx_flash_bwd_avx2(void) { return flash_bwd; }
#else
lx_flash_fwd_fn lx_flash_fwd_avx2(void) { return 0; }
lx_flash_exp_fn lx_flash_exp_avx2(void) { return 0; }
lx_attn_ds_fn lx_attn_ds_avx2(void) { return 0; }
lx_flash_bwd_fn lx_flash_bwd_avx2(void) { return 0; }
#endif
