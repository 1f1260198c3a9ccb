/* JAX's threefry2x32 random numbers: keys, bits in both schemes, float32 samplers, and the
 * XLA:CPU erf / erf_inv they use (spec/jax-random.md §1-4).
 *
 * This file is compiled with -ffp-contract=off like the rest of linnx: every fused multiply-add
 * below is an explicit fmaf placed where XLA:CPU fuses (the uniform affine step, the erf_inv
 * Horner steps, and Eigen's erf, which calls fma itself). Nothing else may be contracted.
 */
#include "linnx/random.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "linnx/threads.h"
#include "team.h"

/* Team size for a parallel loop (the one thread setting, threads.h; the loops run on the pool of
 * team.h); core does not include the ops' internals, so this mirrors LX_PAR_THREADS there. */
#define CORE_PAR_THREADS(big) ((big) ? lx_num_threads() : 1)

/* ------------------------------------------------------------------ threefry2x32 */

#define TF_ROTL(v, d) (((v) << (d)) | ((v) >> (32 - (d))))
#define TF_ROUND(x0, x1, d) \
    do {                    \
        x0 += x1;           \
        x1 = TF_ROTL(x1, d); \
        x1 ^= x0;           \
    } while (0)
#define TF_ROUNDS_A(x0, x1) \
    TF_ROUND(x0, x1, 13); TF_ROUND(x0, x1, 15); TF_ROUND(x0, x1, 26); TF_ROUND(x0, x1, 6)
#define TF_ROUNDS_B(x0, x1) \
    TF_ROUND(x0, x1, 17); TF_ROUND(x0, x1, 29); TF_ROUND(x0, x1, 16); TF_ROUND(x0, x1, 24)

/* The 20 rounds with the five key injections, fully unrolled and branch-free so loops over
 * counters vectorize (AVX2/AVX-512 rotates). ks2 = k0 ^ k1 ^ 0x1BD11BDA. */
#define TF_BODY(ks0, ks1, ks2, x0, x1)                 \
    do {                                               \
        x0 += ks0; x1 += ks1;                          \
        TF_ROUNDS_A(x0, x1); x0 += ks1; x1 += ks2 + 1u; \
        TF_ROUNDS_B(x0, x1); x0 += ks2; x1 += ks0 + 2u; \
        TF_ROUNDS_A(x0, x1); x0 += ks0; x1 += ks1 + 3u; \
        TF_ROUNDS_B(x0, x1); x0 += ks1; x1 += ks2 + 4u; \
        TF_ROUNDS_A(x0, x1); x0 += ks2; x1 += ks0 + 5u; \
    } while (0)

#define TF_PARITY 0x1BD11BDAu

void lx_threefry2x32(uint32_t k0, uint32_t k1, uint32_t x0, uint32_t x1, uint32_t out[2]) {
    uint32_t ks2 = k0 ^ k1 ^ TF_PARITY;
    TF_BODY(k0, k1, ks2, x0, x1);
    out[0] = x0;
    out[1] = x1;
}

/* Partitionable bits: out[i] = y0 ^ y1 of counter (hi, lo0 + i), for a run that does not cross a
 * multiple of 2^32 (so hi is constant and the loop is plain 32-bit lanes). */
static void tf_xor_run(lx_key key, uint32_t hi, uint32_t lo0, int64_t n, uint32_t *out) {
    const uint32_t ks0 = key.k[0], ks1 = key.k[1], ks2 = ks0 ^ ks1 ^ TF_PARITY;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        uint32_t x0 = hi, x1 = lo0 + (uint32_t)i;
        TF_BODY(ks0, ks1, ks2, x0, x1);
        out[i] = x0 ^ x1;
    }
}

/* Flat elements [start, start+n) of partitionable bits. */
static void bits_part_range(lx_key key, int64_t start, int64_t n, uint32_t *out) {
    while (n > 0) {
        uint64_t s = (uint64_t)start;
        uint64_t room = 0x100000000ull - (s & 0xffffffffull);
        int64_t run = (uint64_t)n < room ? n : (int64_t)room;
        tf_xor_run(key, (uint32_t)(s >> 32), (uint32_t)s, run, out);
        start += run;
        out += run;
        n -= run;
    }
}

/* JAX's threefry_2x32(key, iota(total)) for pairs j in [j0, j1). The counter list is
 * 0..total-1, padded with one 0 when total is odd; with h = ceil(total/2) pair j hashes
 * (j, c[h+j]). Its y0 is flat element j and its y1 flat element h+j (dropped for the padding
 * pair, h+j == total). Writes y0[j-j0] and, where h+j < total, y1[j-j0]. */
static void legacy_pairs(lx_key key, int64_t total, int64_t j0, int64_t j1, uint32_t *y0,
                         uint32_t *y1) {
    const uint32_t ks0 = key.k[0], ks1 = key.k[1], ks2 = ks0 ^ ks1 ^ TF_PARITY;
    const int64_t h = (total + 1) / 2;
    int64_t jend = j1;
    if ((total & 1) && j1 == h) jend = h - 1; /* the padded pair is the last one */
    const uint32_t base = (uint32_t)j0, hbase = (uint32_t)(h + j0);
#pragma omp simd
    for (int64_t i = 0; i < jend - j0; i++) {
        uint32_t x0 = base + (uint32_t)i, x1 = hbase + (uint32_t)i;
        TF_BODY(ks0, ks1, ks2, x0, x1);
        y0[i] = x0;
        y1[i] = x1;
    }
    if (jend != j1) {
        uint32_t y[2];
        lx_threefry2x32(ks0, ks1, (uint32_t)(h - 1), 0u, y);
        y0[h - 1 - j0] = y[0];
    }
}

/* Sizes above this are spread over the thread pool; below, threads cost more than they save. */
#define PAR_MIN 65536
#define PAR_BLOCK 16384

/* Blocks [lo, hi) of PAR_BLOCK words (pairs in the legacy scheme, h of them) of one request. */
typedef struct rand_job {
    lx_key key;
    int64_t total, h;
    void *out;
    const void *xp; /* the samplers' xf_params */
} rand_job;

static int legacy_blocks(void *ctx, int64_t lo, int64_t hi) {
    const rand_job *j = ctx;
    uint32_t *out = j->out;
    for (int64_t b = lo; b < hi; b++) {
        int64_t j0 = b * PAR_BLOCK, j1 = j0 + PAR_BLOCK < j->h ? j0 + PAR_BLOCK : j->h;
        legacy_pairs(j->key, j->total, j0, j1, out + j0, out + j->h + j0);
    }
    return 0;
}

static int bits_blocks(void *ctx, int64_t lo, int64_t hi) {
    const rand_job *j = ctx;
    for (int64_t b = lo; b < hi; b++) {
        int64_t s = b * PAR_BLOCK, m = s + PAR_BLOCK < j->total ? PAR_BLOCK : j->total - s;
        bits_part_range(j->key, s, m, (uint32_t *)j->out + s);
    }
    return 0;
}

/* All `total` words of threefry_2x32(key, iota(total)) into out. */
static void legacy_iota(lx_key key, int64_t total, uint32_t *out) {
    const int64_t h = (total + 1) / 2;
    int64_t nblk = (h + PAR_BLOCK - 1) / PAR_BLOCK;
    rand_job j = {key, total, h, out, NULL};
    lx_parallel_for(CORE_PAR_THREADS(total >= PAR_MIN), nblk, legacy_blocks, &j);
}

/* ------------------------------------------------------------------ keys */

lx_key lx_key_from_seed(int64_t seed) {
    lx_key k = {{0u, (uint32_t)((uint64_t)seed & 0xffffffffu)}};
    return k;
}

lx_key lx_key_from_seed_x64(int64_t seed) {
    uint64_t s = (uint64_t)seed;
    lx_key k = {{(uint32_t)(s >> 32), (uint32_t)s}};
    return k;
}

lx_key lx_key_fold_in(lx_key key, uint32_t data) {
    uint32_t y[2];
    lx_threefry2x32(key.k[0], key.k[1], 0u, data, y);
    lx_key r = {{y[0], y[1]}};
    return r;
}

lx_status lx_key_split(lx_key key, int64_t n, bool legacy, lx_key *out) {
    if (n < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "split: num must be >= 0, got %lld", (long long)n);
    if (n > 0 && !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "split: output buffer is NULL");
    if (!legacy) {
        for (int64_t i = 0; i < n; i++) {
            uint32_t y[2];
            uint64_t c = (uint64_t)i;
            lx_threefry2x32(key.k[0], key.k[1], (uint32_t)(c >> 32), (uint32_t)c, y);
            out[i].k[0] = y[0];
            out[i].k[1] = y[1];
        }
        return LX_OK;
    }
    if (n >= (int64_t)1 << 31)
        return lx_fail(LX_ERR_UNSUPPORTED, "split: legacy split of %lld keys is not supported", (long long)n);
    /* The 2n words land flat in out, which is exactly n keys of (out[2i], out[2i+1]). */
    _Static_assert(sizeof(lx_key) == 2 * sizeof(uint32_t), "lx_key must be two packed words");
    legacy_iota(key, 2 * n, (uint32_t *)(void *)out);
    return LX_OK;
}

/* ------------------------------------------------------------------ scheme switch */

static atomic_bool lx_legacy_bits;

void lx_random_set_legacy(bool legacy) { atomic_store(&lx_legacy_bits, legacy); }

bool lx_random_legacy(void) { return atomic_load(&lx_legacy_bits); }

/* ------------------------------------------------------------------ bits */

/* All `total` words of random_bits(key, 32, shape) in the given scheme. */
static lx_status bits_fill(lx_key key, bool legacy, int64_t total, uint32_t *out) {
    if (total <= 0) return LX_OK;
    if (legacy) {
        /* Above 2^32-1 words JAX first splits the key into blocks; arrays that big are not
         * supported here. */
        if ((uint64_t)total >= 0xffffffffull)
            return lx_fail(LX_ERR_UNSUPPORTED,
                           "random_bits: legacy scheme supports at most 2^32-2 elements, got %lld",
                           (long long)total);
        legacy_iota(key, total, out);
        return LX_OK;
    }
    int64_t nblk = (total + PAR_BLOCK - 1) / PAR_BLOCK;
    rand_job j = {key, total, 0, out, NULL};
    lx_parallel_for(CORE_PAR_THREADS(total >= PAR_MIN), nblk, bits_blocks, &j);
    return LX_OK;
}

static lx_status check_buffer(const char *who, int64_t n, const void *out) {
    if (n < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: negative size %lld", who, (long long)n);
    if (n > 0 && !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: output buffer is NULL", who);
    return LX_OK;
}

lx_status lx_random_bits_into(lx_key key, int64_t n, uint32_t *out) {
    LX_TRY(check_buffer("random_bits", n, out));
    return bits_fill(key, lx_random_legacy(), n, out);
}

/* ------------------------------------------------------------------ float32 helpers */

static inline float f32_from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* 23 random mantissa bits -> [1, 2) -> [0, 1); exact. */
static inline float unit_from_bits(uint32_t b) { return f32_from_bits((b >> 9) | 0x3F800000u) - 1.0f; }

/* max(lo, f * (hi - lo) + lo) with XLA:CPU's contraction of the affine step into one fma.
 * lax.max keeps lo when the two compare equal; a NaN stays NaN. */
static inline float uniform_affine(float f, float span, float lo) {
    float v = fmaf(f, span, lo);
    return lo > v ? lo : v;
}

static const float ERFINV_LT5[9] = {2.81022636e-08f,  3.43273939e-07f, -3.5233877e-06f,
                                    -4.39150654e-06f, 0.00021858087f,  -0.00125372503f,
                                    -0.00417768164f,  0.246640727f,    1.50140941f};
static const float ERFINV_GE5[9] = {-0.000200214257f, 0.000100950558f, 0.00134934322f,
                                    -0.00367342844f,  0.00573950773f,  -0.0076224613f,
                                    0.00943887047f,   1.00167406f,     2.83297682f};

/* Correctly rounded log1p in float32: glibc's double log1p is within an ulp of double, and the
 * rounding to float absorbs it (spec/jax-random.md §4.2 recommends correct rounding). */
static inline float log1p_f32(float x) { return (float)log1p((double)x); }

float lx_erf_inv_f32(float x) {
    float w = -log1p_f32(x * -x);
    const float *c;
    if (w < 5.0f) {
        w = w - 2.5f;
        c = ERFINV_LT5;
    } else {
        w = sqrtf(w) - 3.0f;
        c = ERFINV_GE5;
    }
    float p = c[0];
    for (int i = 1; i < 9; i++) p = fmaf(p, w, c[i]); /* LLVM contracts the Horner step */
    float r = p * x;
    return fabsf(x) == 1.0f ? x * INFINITY : r;
}

float lx_erf_f32(float x) {
    if (fabsf(x) >= 3.832506856900711f) return copysignf(1.0f, x);
    float x2 = x * x;
    float p = fmaf(x2, 0.00022905065861350646f, 0.0034082910107109506f);
    p = fmaf(x2, p, 0.050955695062380861f);
    p = fmaf(x2, p, 0.18520832239976145f);
    p = fmaf(x2, p, 1.128379143519084f);
    p = x * p;
    float q = fmaf(x2, -1.1791602954361697e-7f, 0.000023547966471313185f);
    q = fmaf(x2, q, 0.0010179625278914885f);
    q = fmaf(x2, q, 0.014070470171167667f);
    q = fmaf(x2, q, 0.11098505178285362f);
    q = fmaf(x2, q, 0.49746925110067538f);
    q = fmaf(x2, q, 1.0f);
    return p / q;
}

#define SQRT2_F32 1.41421354f /* f32(sqrt 2) = 0x3FB504F3 */

/* ------------------------------------------------------------------ samplers */

/* Every sampler is bits -> a per-element transform (uniform, then erf_inv for the normals, or a
 * comparison for bernoulli). */
typedef enum { XF_UNIFORM, XF_NORMAL, XF_TRUNC, XF_BERNOULLI } xf_kind;

typedef struct {
    xf_kind kind;
    float lo, span;      /* uniform step */
    float clip_lo, clip_hi; /* truncated_normal clip bounds */
    float p;             /* bernoulli threshold */
} xf_params;

static inline float xf_float(const xf_params *xp, uint32_t b) {
    float u = uniform_affine(unit_from_bits(b), xp->span, xp->lo);
    if (xp->kind == XF_UNIFORM) return u;
    float z = SQRT2_F32 * lx_erf_inv_f32(u);
    if (xp->kind == XF_TRUNC) {
        z = xp->clip_lo > z ? xp->clip_lo : z; /* jnp.clip(z, lo, hi) = min(max(z, lo), hi) */
        z = xp->clip_hi < z ? xp->clip_hi : z;
    }
    return z;
}

static void xf_apply(const xf_params *xp, const uint32_t *bits, int64_t n, void *out, int64_t off) {
    if (xp->kind == XF_BERNOULLI) {
        uint8_t *o = (uint8_t *)out + off;
        for (int64_t i = 0; i < n; i++) {
            float u = uniform_affine(unit_from_bits(bits[i]), xp->span, xp->lo);
            o[i] = u < xp->p;
        }
        return;
    }
    float *o = (float *)out + off;
    if (xp->kind == XF_UNIFORM) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = uniform_affine(unit_from_bits(bits[i]), xp->span, xp->lo);
        return;
    }
    for (int64_t i = 0; i < n; i++) o[i] = xf_float(xp, bits[i]);
}

#define CHUNK 1024

/* Partitionable: flat elements [s, s+m), bits generated a chunk at a time into a stack buffer
 * and transformed right away, so nothing beyond the output is allocated. */
static void sample_part_range(lx_key key, const xf_params *xp, int64_t s, int64_t m, void *out) {
    uint32_t buf[CHUNK];
    for (int64_t c = s; c < s + m; c += CHUNK) {
        int64_t k = s + m - c < CHUNK ? s + m - c : CHUNK;
        bits_part_range(key, c, k, buf);
        xf_apply(xp, buf, k, out, c);
    }
}

/* Legacy: pairs [j0, j1) give elements [j0, j1) (their y0) and [h+j0, h+j1) (their y1). */
static void sample_legacy_range(lx_key key, const xf_params *xp, int64_t total, int64_t j0,
                                int64_t j1, void *out) {
    uint32_t y0[CHUNK], y1[CHUNK];
    const int64_t h = (total + 1) / 2;
    for (int64_t c = j0; c < j1; c += CHUNK) {
        int64_t k = j1 - c < CHUNK ? j1 - c : CHUNK;
        legacy_pairs(key, total, c, c + k, y0, y1);
        xf_apply(xp, y0, k, out, c);
        int64_t k1 = total - (h + c) < k ? total - (h + c) : k; /* the padding's y1 is dropped */
        xf_apply(xp, y1, k1, out, h + c);
    }
}

static int sample_legacy_blocks(void *ctx, int64_t lo, int64_t hi) {
    const rand_job *j = ctx;
    for (int64_t b = lo; b < hi; b++) {
        int64_t j0 = b * PAR_BLOCK, j1 = j0 + PAR_BLOCK < j->h ? j0 + PAR_BLOCK : j->h;
        sample_legacy_range(j->key, j->xp, j->total, j0, j1, j->out);
    }
    return 0;
}

static int sample_blocks(void *ctx, int64_t lo, int64_t hi) {
    const rand_job *j = ctx;
    for (int64_t b = lo; b < hi; b++) {
        int64_t s = b * PAR_BLOCK, m = s + PAR_BLOCK < j->total ? PAR_BLOCK : j->total - s;
        sample_part_range(j->key, j->xp, s, m, j->out);
    }
    return 0;
}

static lx_status sample(lx_key key, const xf_params *xp, int64_t n, void *out) {
    if (n == 0) return LX_OK;
    if (lx_random_legacy()) {
        if ((uint64_t)n >= 0xffffffffull)
            return lx_fail(LX_ERR_UNSUPPORTED,
                           "random_bits: legacy scheme supports at most 2^32-2 elements, got %lld",
                           (long long)n);
        const int64_t h = (n + 1) / 2;
        int64_t nblk = (h + PAR_BLOCK - 1) / PAR_BLOCK;
        rand_job j = {key, n, h, out, xp};
        lx_parallel_for(CORE_PAR_THREADS(n >= PAR_MIN), nblk, sample_legacy_blocks, &j);
        return LX_OK;
    }
    int64_t nblk = (n + PAR_BLOCK - 1) / PAR_BLOCK;
    rand_job j = {key, n, 0, out, xp};
    lx_parallel_for(CORE_PAR_THREADS(n >= PAR_MIN), nblk, sample_blocks, &j);
    return LX_OK;
}

static xf_params uniform_params(float minval, float maxval) {
    xf_params xp = {XF_UNIFORM, minval, maxval - minval, 0, 0, 0};
    return xp;
}

lx_status lx_random_uniform_into(lx_key key, int64_t n, float minval, float maxval, float *out) {
    LX_TRY(check_buffer("uniform", n, out));
    xf_params xp = uniform_params(minval, maxval);
    return sample(key, &xp, n, out);
}

/* normal: uniform on [nextafter(-1, 0), 1); hi - lo rounds to exactly 2. */
static xf_params normal_params(void) {
    xf_params xp = uniform_params(-0.99999994f, 1.0f);
    xp.kind = XF_NORMAL;
    return xp;
}

lx_status lx_random_normal_into(lx_key key, int64_t n, float *out) {
    LX_TRY(check_buffer("normal", n, out));
    xf_params xp = normal_params();
    return sample(key, &xp, n, out);
}

static xf_params trunc_params(float lower, float upper) {
    float a = lx_erf_f32(lower / SQRT2_F32), b = lx_erf_f32(upper / SQRT2_F32);
    xf_params xp = uniform_params(a, b);
    xp.kind = XF_TRUNC;
    xp.clip_lo = nextafterf(lower, INFINITY);
    xp.clip_hi = nextafterf(upper, -INFINITY);
    return xp;
}

lx_status lx_random_truncated_normal_into(lx_key key, float lower, float upper, int64_t n, float *out) {
    LX_TRY(check_buffer("truncated_normal", n, out));
    xf_params xp = trunc_params(lower, upper);
    return sample(key, &xp, n, out);
}

lx_status lx_random_bernoulli_into(lx_key key, float p, int64_t n, uint8_t *out) {
    LX_TRY(check_buffer("bernoulli", n, out));
    xf_params xp = uniform_params(0.0f, 1.0f);
    xp.kind = XF_BERNOULLI;
    xp.p = p;
    return sample(key, &xp, n, out);
}

/* ------------------------------------------------------------------ array samplers */

static lx_array *new_result(const char *who, lx_dtype dtype, int ndim, const int64_t *shape) {
    if (ndim > 0 && !shape) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: shape is NULL", who);
        return NULL;
    }
    lx_array *a = lx_autorelease(lx_array_empty(dtype, ndim, shape)); /* pool-owned, as op results */
    if (!a) lx_fail_context(lx_last_status(), "%s: ", who);
    return a;
}

/* A failed fill leaves the array in the pool, which frees it; the caller only sees NULL. */
#define FILL_OR_NULL(a, call) ((a) && (call) == LX_OK ? (a) : NULL)

lx_array *lx_random_bits(lx_key key, int ndim, const int64_t *shape) {
    lx_array *a = new_result("random_bits", LX_U32, ndim, shape);
    return FILL_OR_NULL(a, lx_random_bits_into(key, a->size, lx_u32(a)));
}

lx_array *lx_random_uniform(lx_key key, int ndim, const int64_t *shape, float minval, float maxval) {
    lx_array *a = new_result("uniform", LX_F32, ndim, shape);
    return FILL_OR_NULL(a, lx_random_uniform_into(key, a->size, minval, maxval, lx_f32(a)));
}

lx_array *lx_random_normal(lx_key key, int ndim, const int64_t *shape) {
    lx_array *a = new_result("normal", LX_F32, ndim, shape);
    return FILL_OR_NULL(a, lx_random_normal_into(key, a->size, lx_f32(a)));
}

lx_array *lx_random_truncated_normal(lx_key key, float lower, float upper, int ndim,
                                     const int64_t *shape) {
    lx_array *a = new_result("truncated_normal", LX_F32, ndim, shape);
    return FILL_OR_NULL(a, lx_random_truncated_normal_into(key, lower, upper, a->size, lx_f32(a)));
}

lx_array *lx_random_bernoulli(lx_key key, float p, int ndim, const int64_t *shape) {
    lx_array *a = new_result("bernoulli", LX_BOOL, ndim, shape);
    return FILL_OR_NULL(a, lx_random_bernoulli_into(key, p, a->size, lx_bool(a)));
}
