/* Flax's key derivation (spec/jax-random.md §6): Linen's make_rng hashes the scope path and the
 * call count with SHA-1 and folds the hash into the root key once; an NNX RngStream folds its
 * count into its key. SHA-1 is Nettle's. */
#include <nettle/sha1.h>
#include <string.h>

#include "linnx/random.h"

uint32_t lx_flax_path_hash(int n, const char *const *names, uint32_t count, bool fix_separator) {
    static const uint8_t zero = 0;
    struct sha1_ctx ctx;
    sha1_init(&ctx);
    for (int i = 0; i < n; i++) {
        if (fix_separator) sha1_update(&ctx, 1, &zero);
        const char *s = names[i] ? names[i] : "";
        sha1_update(&ctx, strlen(s), (const uint8_t *)s);
    }
    if (fix_separator) sha1_update(&ctx, 1, &zero);
    /* Python's int.to_bytes((bit_length + 7) // 8, 'big'): minimal big-endian, 0 -> no bytes. */
    uint8_t be[4];
    int len = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        uint8_t byte = (uint8_t)(count >> shift);
        if (len == 0 && byte == 0) continue;
        be[len++] = byte;
    }
    sha1_update(&ctx, (size_t)len, be);
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_digest(&ctx, sizeof digest, digest);
    return (uint32_t)digest[0] << 24 | (uint32_t)digest[1] << 16 | (uint32_t)digest[2] << 8 |
           (uint32_t)digest[3];
}

lx_key lx_linen_make_rng_key(lx_key root, int n, const char *const *path, uint32_t count) {
    return lx_key_fold_in(root, lx_flax_path_hash(n, path, count, false));
}

lx_key lx_nnx_stream_key(lx_key stream_key, uint32_t count) { return lx_key_fold_in(stream_key, count); }
