/* jax.random.permutation and jax.random.randint, exact for a key (spec/jax-random.md §3.4).
 *
 * permutation is JAX's sort-based shuffle: ceil(3 ln(max(1, n)) / ln(2^32 - 1)) rounds, each
 * `key, sub = split(key)`, 32-bit sort keys random_bits(sub, n), then a stable ascending sort of
 * the values by those keys (ties keep their order, as lax.sort_key_val with is_stable=True).
 * randint draws two bit arrays from split(key) and reduces the 64-bit number hi*2^32 + lo modulo
 * the span with 32-bit wrapping arithmetic, as jax.random._randint does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/random.h"

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int lx_random_shuffle_rounds(int64_t n) {
    double size = n > 1 ? (double)n : 1.0;
    return (int)ceil(3.0 * log(size) / log(4294967295.0));
}

lx_status lx_random_shuffle_i32(lx_key key, int64_t n, int32_t *x) {
    if (n < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "permutation: n must be >= 0, got %lld", (long long)n);
    if (n > 0 && !x) return lx_fail(LX_ERR_INVALID_ARGUMENT, "permutation: output buffer is NULL");
    if (n >= ((int64_t)1 << 31))
        return lx_fail(LX_ERR_UNSUPPORTED, "permutation: %lld elements do not fit int32 indices", (long long)n);
    int rounds = lx_random_shuffle_rounds(n);
    if (rounds == 0 || n < 2) {
        /* JAX still runs zero rounds for n <= 1; nothing to do. */
        return LX_OK;
    }
    uint32_t *bits = malloc((size_t)n * sizeof *bits);
    uint64_t *pairs = malloc((size_t)n * sizeof *pairs);
    int32_t *tmp = malloc((size_t)n * sizeof *tmp);
    lx_status st = (bits && pairs && tmp) ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "permutation: out of memory");
    bool legacy = lx_random_legacy();
    for (int r = 0; st == LX_OK && r < rounds; r++) {
        lx_key ks[2];
        st = lx_key_split(key, 2, legacy, ks);
        if (st != LX_OK) break;
        key = ks[0];
        st = lx_random_bits_into(ks[1], n, bits);
        if (st != LX_OK) break;
        /* (sort key, position) as one 64-bit number: an unstable sort of these is a stable sort
         * by the key alone. */
        for (int64_t i = 0; i < n; i++) pairs[i] = ((uint64_t)bits[i] << 32) | (uint64_t)i;
        qsort(pairs, (size_t)n, sizeof *pairs, cmp_u64);
        for (int64_t i = 0; i < n; i++) tmp[i] = x[pairs[i] & 0xffffffffu];
        memcpy(x, tmp, (size_t)n * sizeof *x);
    }
    free(bits);
    free(pairs);
    free(tmp);
    return st;
}

lx_status lx_random_permutation_into(lx_key key, int64_t n, int32_t *out) {
    if (n < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "permutation: n must be >= 0, got %lld", (long long)n);
    if (n > 0 && !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "permutation: output buffer is NULL");
    if (n >= ((int64_t)1 << 31))
        return lx_fail(LX_ERR_UNSUPPORTED, "permutation: %lld elements do not fit int32 indices", (long long)n);
    for (int64_t i = 0; i < n; i++) out[i] = (int32_t)i;
    return lx_random_shuffle_i32(key, n, out);
}

lx_array *lx_random_permutation(lx_key key, int64_t n) {
    if (n < 0) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "permutation: n must be >= 0, got %lld", (long long)n);
        return NULL;
    }
    lx_array *a = lx_array_new(LX_I32, 1, &n);
    if (!a) return NULL;
    if (lx_random_permutation_into(key, n, lx_i32(a)) != LX_OK) {
        lx_release(a);
        return NULL;
    }
    return lx_autorelease(a);
}

lx_status lx_random_randint_into(lx_key key, int64_t n, int64_t minval, int64_t maxval, int32_t *out) {
    if (n < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "randint: n must be >= 0, got %lld", (long long)n);
    if (n > 0 && !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "randint: output buffer is NULL");
    if (minval < INT32_MIN || minval > INT32_MAX || maxval < INT32_MIN || maxval > INT32_MAX)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "randint: minval %lld and maxval %lld must fit int32 (jnp.asarray overflows in x32 mode)",
                       (long long)minval, (long long)maxval);
    lx_key ks[2];
    LX_TRY(lx_key_split(key, 2, lx_random_legacy(), ks));
    if (n == 0) return LX_OK;
    uint32_t *hi = malloc((size_t)n * sizeof *hi), *lo = malloc((size_t)n * sizeof *lo);
    lx_status st = (hi && lo) ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "randint: out of memory");
    if (st == LX_OK) st = lx_random_bits_into(ks[0], n, hi);
    if (st == LX_OK) st = lx_random_bits_into(ks[1], n, lo);
    if (st == LX_OK) {
        /* span = uint32(maxval - minval), 1 when maxval <= minval (jax issue #222). */
        uint32_t span = maxval <= minval ? 1u : (uint32_t)maxval - (uint32_t)minval;
        uint32_t m = 65536u % span;
        m = (uint32_t)(m * m) % span;
        for (int64_t i = 0; i < n; i++) {
            uint32_t off = (uint32_t)((uint32_t)((hi[i] % span) * m) + lo[i] % span) % span;
            out[i] = (int32_t)((uint32_t)minval + off);
        }
    }
    free(hi);
    free(lo);
    return st;
}

lx_array *lx_random_randint(lx_key key, int ndim, const int64_t *shape, int64_t minval, int64_t maxval) {
    if (ndim > 0 && !shape) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "randint: shape is NULL");
        return NULL;
    }
    lx_array *a = lx_array_new(LX_I32, ndim, shape);
    if (!a) {
        lx_fail_context(lx_last_status(), "randint: ");
        return NULL;
    }
    if (lx_random_randint_into(key, a->size, minval, maxval, lx_i32(a)) != LX_OK) {
        lx_release(a);
        return NULL;
    }
    return lx_autorelease(a);
}
