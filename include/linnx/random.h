/* linnx/random.h - JAX's threefry2x32 random numbers, bit for bit, and Flax's key derivation.
 *
 * A key is two uint32 words, exactly the data of jax.random.PRNGKey / jax.random.key with the
 * default threefry2x32 implementation. Bits come from one of JAX's two schemes:
 *  - partitionable (jax_threefry_partitionable=True, the default since JAX 0.5.0): element n of
 *    any array hashes the counter (n >> 32, n & 0xffffffff);
 *  - legacy (the default before JAX 0.5.0): the iota-halves layout of spec/jax-random.md §2.2.
 * The scheme is a process-wide switch (lx_random_set_legacy), like JAX's config flag; key
 * derivation (fold_in) is the same in both.
 *
 * Samplers follow XLA:CPU's float32 arithmetic: the uniform affine step and the erf_inv Horner
 * steps are fused multiply-adds, log1p is correctly rounded (docs/random.md). Keys, bits,
 * uniform and bernoulli match JAX exactly; normal and truncated_normal match exactly except for
 * rare 1-ulp differences that depend on the XLA build's log1p.
 *
 * Ownership: the array samplers return an array owned by the innermost pool (like ops), or NULL
 * with a message. The _into variants write into a caller buffer of n elements and return a
 * status. Nothing here keeps a pointer past the call.
 */
#ifndef LINNX_RANDOM_H
#define LINNX_RANDOM_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/array.h"
#include "linnx/status.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef struct lx_key {
    uint32_t k[2];
} lx_key; /* JAX's threefry2x32 raw key */

/* The Threefry-2x32 block function (20 rounds): key (k0, k1), counter (x0, x1) -> out[2]. */
void lx_threefry2x32(uint32_t k0, uint32_t k1, uint32_t x0, uint32_t x1, uint32_t out[2]);

/* ---- keys ---- */
/* jax.random.key(seed) in the default x32 mode: [0, seed mod 2^32]. */
lx_key lx_key_from_seed(int64_t seed);
/* The same with jax_enable_x64: [(seed mod 2^64) >> 32, seed mod 2^32]. */
lx_key lx_key_from_seed_x64(int64_t seed);
/* jax.random.fold_in(key, data): threefry2x32(key, 0, data); the same in both schemes. */
lx_key lx_key_fold_in(lx_key key, uint32_t data);
/* jax.random.split(key, n) into out[0..n). legacy picks the pre-0.5 layout explicitly (split does
 * not read the process-wide switch, so callers say which one they mean). n >= 0 and a non-NULL out
 * (LX_ERR_INVALID_ARGUMENT otherwise); a legacy split of 2^31 keys or more is LX_ERR_UNSUPPORTED. */
lx_status lx_key_split(lx_key key, int64_t n, bool legacy, lx_key *out);

/* ---- the bit-generation scheme (process-wide; default partitionable) ---- */
void lx_random_set_legacy(bool legacy);
bool lx_random_legacy(void);

/* ---- samplers into caller buffers (n elements, row-major flat order of the shape) ----
 * A negative n or a NULL buffer (n > 0) is LX_ERR_INVALID_ARGUMENT; more than 2^32 - 2 elements
 * in the legacy scheme LX_ERR_UNSUPPORTED. */
/* random_bits(key, 32, shape) */
lx_status lx_random_bits_into(lx_key key, int64_t n, uint32_t *out);
/* uniform(key, shape, float32, minval, maxval) */
lx_status lx_random_uniform_into(lx_key key, int64_t n, float minval, float maxval, float *out);
/* normal(key, shape, float32) */
lx_status lx_random_normal_into(lx_key key, int64_t n, float *out);
/* truncated_normal(key, lower, upper, shape, float32) */
lx_status lx_random_truncated_normal_into(lx_key key, float lower, float upper, int64_t n,
                                          float *out);
/* bernoulli(key, p, shape): out[i] = uniform(key, shape) < f32(p), as 0/1 bytes */
lx_status lx_random_bernoulli_into(lx_key key, float p, int64_t n, uint8_t *out);

/* ---- samplers returning pool-owned arrays (NULL + message on a bad shape: a negative dimension
 * is LX_ERR_SHAPE, a NULL shape with ndim > 0 LX_ERR_INVALID_ARGUMENT) ---- */
lx_array *lx_random_bits(lx_key key, int ndim, const int64_t *shape);            /* uint32 */
lx_array *lx_random_uniform(lx_key key, int ndim, const int64_t *shape, float minval, float maxval);
lx_array *lx_random_normal(lx_key key, int ndim, const int64_t *shape);           /* float32 */
lx_array *lx_random_truncated_normal(lx_key key, float lower, float upper, int ndim,
                                     const int64_t *shape);                       /* float32 */
lx_array *lx_random_bernoulli(lx_key key, float p, int ndim, const int64_t *shape); /* bool */

/* ---- permutation and randint (src/core/random_perm.c; spec/jax-random.md §3.4) ---- */
/* jax.random.permutation(key, n): arange(n) as int32, shuffled by JAX's sort-based shuffle
 * (lx_random_shuffle_rounds(n) rounds of split + random_bits + stable sort), so a key gives the
 * permutation JAX gives. Honors the bit-generation scheme switch. n < 2^31. */
lx_status lx_random_permutation_into(lx_key key, int64_t n, int32_t *out);
lx_array *lx_random_permutation(lx_key key, int64_t n); /* int32[n], pool-owned */
/* JAX's _shuffle on caller values: x[0..n) is permuted in place exactly as permutation(key, x)
 * permutes a 1-D array. */
lx_status lx_random_shuffle_i32(lx_key key, int64_t n, int32_t *x);
/* ceil(3 ln(max(1, n)) / ln(2^32 - 1)): 1 round for 2..1625 elements, 2 up to ~2.6 million. */
int lx_random_shuffle_rounds(int64_t n);
/* jax.random.randint(key, shape, minval, maxval) with dtype int32: values in [minval, maxval),
 * all minval when maxval <= minval. minval and maxval must fit int32 (JAX's x32 mode). */
lx_status lx_random_randint_into(lx_key key, int64_t n, int64_t minval, int64_t maxval, int32_t *out);
lx_array *lx_random_randint(lx_key key, int ndim, const int64_t *shape, int64_t minval,
                            int64_t maxval); /* int32, pool-owned */

/* ---- XLA:CPU float32 special functions (spec/jax-random.md §4) ---- */
float lx_erf_inv_f32(float x); /* Giles' approximation, fma Horner, correctly rounded log1p */
float lx_erf_f32(float x);     /* Eigen's rational approximation with explicit fma */

/* ---- Flax key derivation ---- */
/* flax.core.scope._fold_in_static's hash of (names..., count): SHA-1 over the UTF-8 names and the
 * minimal big-endian bytes of count (0 -> no bytes), first 4 digest bytes big-endian. With
 * fix_separator (flax_fix_rng_separator) a 0 byte precedes every element. */
uint32_t lx_flax_path_hash(int n, const char *const *names, uint32_t count, bool fix_separator);
/* The key Linen's make_rng returns in the scope at `path` (n names; n = 0 is the root) on the
 * count-th (1-based) call for a stream whose root key is `root`: fold_in(root, hash(path+(count,))). */
lx_key lx_linen_make_rng_key(lx_key root, int n, const char *const *path, uint32_t count);
/* The count-th (0-based) draw of an nnx RngStream holding stream_key: fold_in(stream_key, count). */
lx_key lx_nnx_stream_key(lx_key stream_key, uint32_t count);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
