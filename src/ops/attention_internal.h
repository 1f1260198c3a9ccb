/* Fused ("flash") attention forward kernels (not installed): attention.c picks them for attention
 * without bias or mask when the kernel set in force has one (AVX-512 and AVX2; docs/kernels.md).
 *
 * One call computes query rows [t0, t0 + tq) of one (batch, head) in tiles of 16 queries (AVX2:
 * two halves of 8): per block of 16 keys (AVX2: 8) the tile x block logits (vectors across queries, so a row's
 * max is a vertical max),
 * an online softmax in base 2 (the logits' scale times log2(e) is applied to the query tile), and
 * the weights times v accumulated into the tile's output; causal key blocks past the tile are
 * never read. Nothing of size queries x keys is stored. */
#ifndef LINNX_ATTENTION_INTERNAL_H
#define LINNX_ATTENTION_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#define LX_FLASH_MAX_D 128 /* depth and value depth the kernels take */

typedef struct {
    int64_t S, d, dv;          /* keys, depth, value depth */
    int64_t ldq, ldk, ldv, ldo; /* row strides (floats) of q, k, v and out */
    float qdiv;                /* q / qdiv first (Flax's 1 / sqrt(depth) scaling), 0: none */
    float qmul;                /* then * qmul: the logits' scale times log2(e) */
    bool causal;               /* key s > query t masked */
} lx_flash_args;

/* q, out: row 0 of the (batch, head); k, v: row 0 of its kv head. t0 a multiple of 16 (causal
 * tiles split their key blocks at t0 + 16 i + 8; when causal, the AVX2 kernel checks that t0 is
 * a multiple of 8 and the AVX-512 kernel that it is a multiple of 16, and otherwise each returns
 * false having written nothing). lse, when not NULL, gets
 * each row's natural-log log-sum-exp of the scaled logits (indexed by query row).
 * Returns false, with out's rows undefined, when q's rows, k or v hold an inf or NaN or a logit
 * overflowed: the caller computes those rows the general way. */
/* scratch: lx_flash_scratch(a) floats (the keys and values the rows read, packed). */
typedef bool (*lx_flash_fwd_fn)(const lx_flash_args *a, const float *q, const float *k, const float *v,
                                int64_t t0, int64_t tq, float *out, float *lse, float *scratch);

/* The packed rows' stride: depth and value depth rounded up to 16, 32, 64 or LX_FLASH_MAX_D. */
static inline int64_t lx_flash_stride(const lx_flash_args *a) {
    int64_t w = a->d > a->dv ? a->d : a->dv;
    return w <= 16 ? 16 : w <= 32 ? 32 : w <= 64 ? 64 : LX_FLASH_MAX_D;
}
static inline int64_t lx_flash_scratch(const lx_flash_args *a) {
    return 2 * ((a->S + 15) / 16 * 16) * lx_flash_stride(a) + 32; /* + a line of padding + alignment */
}

/* The AVX-512 kernel, or NULL when the build has none (run it only when the set in force is AVX-512). */
lx_flash_fwd_fn lx_flash_fwd_avx512(void);
/* The AVX2 kernel (attention_avx2.c: 16 queries per tile, 8 keys per block, the same exp2), or NULL. */
lx_flash_fwd_fn lx_flash_fwd_avx2(void);

/* row[s] = e^(row[s] - sub), s < n: the backward rebuilds the weights from the forward's
 * log-sum-exp with the forward's exponential. AVX-512 (or NULL), as above. */
typedef void (*lx_flash_exp_fn)(float *row, int64_t n, float sub);
lx_flash_exp_fn lx_flash_exp_avx512(void);
lx_flash_exp_fn lx_flash_exp_avx2(void);

/* One row of the attention backward without a mask: dot = sum_{s < ncols} p[s] dp[s] (in
 * double), ds[s] = p[s] (dp[s] - (float)dot) for s < lim, 0 for lim <= s < S. AVX-512 (or NULL). */
typedef void (*lx_attn_ds_fn)(const float *p, const float *dp, float *ds, int64_t ncols, int64_t lim, int64_t S);
lx_attn_ds_fn lx_attn_ds_avx512(void);
lx_attn_ds_fn lx_attn_ds_avx2(void);

/* The fused backward (flash-attention 2's) of one (batch, kv head) without bias or mask, from the
 * fused forward's log-sum-exp: per query tile of 16 (one per lane) and block of 16 keys it
 * rebuilds P = 2^(qmul q k - lse log2 e) in registers, dP = dO v^T, dS = sc P (dP - rowsum(dO o)),
 * accumulates dV += P^T dO and dK += dS^T q over the tiles (a job-wide buffer) and dQ += dS k per
 * tile (an L1 buffer); causal blocks past a tile are skipped. Every row of dq (the R query heads
 * of the group), dk and dv is written, nothing is accumulated into them. q, o, go, dq: row 0 of
 * the group's first query head (the next heads d or dv floats on); lse: its (T) row, the next
 * heads T on; k, v, dk, dv: row 0 of the kv head. */
typedef struct {
    int64_t T, S, d, dv, R;     /* queries, keys, depths, query heads per kv head */
    int64_t ldq, ldk, ldv, ldo; /* row strides of q / dq, k / dk, v / dv, o / go */
    float sc;                   /* the logits' scale */
    bool causal;
} lx_flash_bwd_args;
typedef void (*lx_flash_bwd_fn)(const lx_flash_bwd_args *a, const float *q, const float *k, const float *v,
                                const float *o, const float *go, const float *lse, float *dq, float *dk, float *dv,
                                float *scratch);
static inline int64_t lx_flash_bwd_scratch(const lx_flash_bwd_args *a) {
    const int64_t w = a->d > a->dv ? a->d : a->dv, ks = w <= 16 ? 16 : w <= 32 ? 32 : w <= 64 ? 64 : LX_FLASH_MAX_D;
    return 4 * ((a->S + 15) / 16 * 16 * ks + 16) + 5 * 16 * ks + 2 * 256 + 2 * 16 + 32;
}
lx_flash_bwd_fn lx_flash_bwd_avx512(void);
/* AVX2 (attention_avx2.c): tiles of 16 queries, blocks of 8 keys, the same scratch */
lx_flash_bwd_fn lx_flash_bwd_avx2(void);

#endif
