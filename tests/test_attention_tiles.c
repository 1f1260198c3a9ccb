/* The fused attention kernels' tile-start precondition (src/ops/attention_internal.h): causal
 * tiles start on a key block's edge, so a kernel declines a t0 off it - the AVX2 kernel a t0 that
 * is not a multiple of 8, the AVX-512 kernel one that is not a multiple of 16 - returning false
 * with nothing written (the caller's general path then computes those rows). A t0 on the edge is
 * taken, and its rows have the bits of the same rows computed from t0 = 0 (each query is its own
 * lane; fully masked key blocks change nothing). Each kernel runs only where the CPU has its
 * instructions: on an AVX2-only machine the AVX-512 half says so and checks nothing. */
#include <string.h>

#include "../src/ops/attention_internal.h"
#include "linnx/cpu.h"
#include "lx_test.h"

enum { T = 48, D = 16 };

static float q[T * D], k[T * D], v[T * D], out_full[T * D], out[T * D], lse_full[T], lse[T];

static float val(uint32_t i, uint32_t salt) {
    uint32_t h = (i + salt) * 2654435761u;
    return ((float)(h >> 8) / 16777216.0f - 0.5f) * 2.0f;
}

static void check_kernel(const char *name, lx_flash_fwd_fn f, int64_t edge) {
    lx_flash_args a = {.S = T, .d = D, .dv = D, .ldq = D, .ldk = D, .ldv = D, .ldo = D, .qdiv = 4.0f,
                       .qmul = 1.4426950408889634f, .causal = true};
    float *scratch = malloc(sizeof(float) * (size_t)lx_flash_scratch(&a));
    CHECK(f(&a, q, k, v, 0, T, out_full, lse_full, scratch));
    /* a t0 off the block edge (edge / 2, and edge + 4): declined, nothing written */
    const int64_t bad[] = {edge / 2, edge + 4, 4};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        for (int i = 0; i < T * D; i++) out[i] = -7.0f;
        for (int i = 0; i < T; i++) lse[i] = -7.0f;
        bool ok = f(&a, q, k, v, bad[b], T - bad[b], out, lse, scratch);
        LX_TEST_REPORT_(!ok, "%s: causal t0 = %lld taken (tiles must start at multiples of %lld)", name,
                        (long long)bad[b], (long long)edge);
        int64_t touched = 0;
        for (int i = 0; i < T * D; i++) touched += out[i] != -7.0f;
        for (int i = 0; i < T; i++) touched += lse[i] != -7.0f;
        LX_TEST_REPORT_(touched == 0, "%s: t0 = %lld declined but %lld values written", name, (long long)bad[b],
                        (long long)touched);
    }
    /* on the edge: taken, the same rows as from t0 = 0 */
    for (int64_t t0 = edge; t0 < T; t0 += edge) {
        memset(out, 0, sizeof out);
        CHECK(f(&a, q, k, v, t0, T - t0, out, lse, scratch));
        int64_t diff = 0;
        for (int64_t i = t0 * D; i < T * D; i++) diff += memcmp(&out[i], &out_full[i], sizeof(float)) != 0;
        for (int64_t i = t0; i < T; i++) diff += memcmp(&lse[i], &lse_full[i], sizeof(float)) != 0;
        LX_TEST_REPORT_(diff == 0, "%s: t0 = %lld: %lld values differ from the rows computed from 0", name,
                        (long long)t0, (long long)diff);
    }
    /* not causal: no block edge is involved, any t0 is taken */
    a.causal = false;
    CHECK(f(&a, q, k, v, 0, T, out_full, lse_full, scratch));
    memset(out, 0, sizeof out);
    CHECK(f(&a, q, k, v, 4, T - 4, out, lse, scratch));
    CHECK(memcmp(out + 4 * D, out_full + 4 * D, sizeof(float) * (T - 4) * D) == 0);
    free(scratch);
}

static void test_tile_starts(void) {
    for (int i = 0; i < T * D; i++) q[i] = val((uint32_t)i, 1), k[i] = val((uint32_t)i, 2), v[i] = val((uint32_t)i, 3);
    lx_flash_fwd_fn f2 = lx_flash_fwd_avx2(), f512 = lx_flash_fwd_avx512();
    if (f2 && lx_isa_supported(LX_ISA_AVX2)) check_kernel("avx2", f2, 8);
    else fprintf(stderr, "  AVX2 attention kernel: not built or not supported by this CPU: not run\n");
    if (f512 && lx_isa_supported(LX_ISA_AVX512)) check_kernel("avx512", f512, 16);
    else fprintf(stderr, "  AVX-512 attention kernel: not built or not supported by this CPU: not run\n");
}

int main(void) {
    RUN(test_tile_starts);
    return lx_test_finish();
}
