/* A steady-state int8 product allocates nothing: after a first call, lx_i8_gemm_packed on the same
 * shapes makes ZERO heap allocations of any kind - every malloc, calloc, realloc, aligned_alloc,
 * posix_memalign and memalign of the process, counted by the replacements below (the hook of
 * tests/test_train_steady.c) - under every kernel that pads or re-lays A (AVX2, VNNI, AMX) that
 * this CPU runs: the padded copy of A and AMX's edge tiles are per-thread scratch kept between
 * calls (src/ops/quant_gemm.c, i8_scratch), as the f32 GEMM keeps its packing buffers. Shapes: a
 * decode row (M = 1) with K off every padding multiple, and a 64-row prefill whose padded A
 * (96 KiB) is past the library's per-thread block cache (64 KiB), so it reached malloc every
 * call before. Every call's sums are checked against a plain int64 reference. And a quantized
 * step end to end: an NNX Linear called in an LX_QT_INT8 session allocates nothing from its third
 * call on (the second still fills a cache; before, the 96 KiB pad reached malloc every call). Not
 * under the sanitizers, whose runtimes replace malloc themselves. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "linnx/nnx_layers.h"
#include "linnx/quant.h"
#include "linnx/threads.h"
#include "lx_test.h"

#define HEAP_COUNTED (!LX_TEST_ASAN)

static atomic_bool heap_on;
static atomic_size_t heap_allocs;

#if HEAP_COUNTED
static void heap_count(size_t bytes) {
    (void)bytes;
    if (atomic_load_explicit(&heap_on, memory_order_relaxed)) atomic_fetch_add(&heap_allocs, 1);
}
#endif
#include "lx_heap_count.h"

static int8_t val(uint32_t i, uint32_t salt) { return (int8_t)((i * 2654435761u ^ salt) >> 24); }

/* kernel kk on A (M x K) times B (K x N): 5 calls, calls 2..5 counted; every call's sums right */
static void check_steady(lx_i8_kernel kk, int64_t M, int64_t N, int64_t K) {
    int8_t *a = malloc((size_t)(M * K)), *b = malloc((size_t)(K * N));
    int32_t *c = malloc(sizeof(int32_t) * (size_t)(M * N));
    int64_t *ref = malloc(sizeof(int64_t) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) a[i] = val((uint32_t)i, 0x1234u);
    for (int64_t i = 0; i < K * N; i++) b[i] = val((uint32_t)i, 0xBEEFu);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t s = 0;
            for (int64_t k = 0; k < K; k++) s += (int64_t)a[m * K + k] * b[k * N + n];
            ref[m * N + n] = s;
        }
    lx_i8_packed *p = NULL;
    CHECK_EQ_INT(lx_i8_pack_for(kk, K, N, b, &p), LX_OK);
    size_t counted = 0;
    int64_t wrong = 0;
    for (int call = 0; p && call < 5; call++) {
        for (int64_t i = 0; i < M * N; i++) c[i] = -1;
        atomic_store(&heap_allocs, 0);
        atomic_store(&heap_on, call > 0);
        lx_status st = lx_i8_gemm_packed(kk, M, a, p, c);
        atomic_store(&heap_on, false);
        CHECK_EQ_INT(st, LX_OK);
        counted += atomic_load(&heap_allocs);
        for (int64_t i = 0; i < M * N; i++) wrong += c[i] != ref[i];
    }
    CHECK_EQ_INT(wrong, 0);
    if (HEAP_COUNTED)
        LX_TEST_REPORT_(counted == 0, "%s, M=%lld N=%lld K=%lld: calls 2..5 made %zu heap allocations; want 0",
                        lx_i8_kernel_name(kk), (long long)M, (long long)N, (long long)K, counted);
    fprintf(stderr, "  %s M=%lld N=%lld K=%lld: calls 2..5 made %zu heap allocations\n", lx_i8_kernel_name(kk),
            (long long)M, (long long)N, (long long)K, counted);
    lx_i8_packed_free(p);
    free(a), free(b), free(c), free(ref);
}

static void test_steady_products(void) {
    int ran = 0;
    for (int kk = LX_I8_AVX2; kk <= LX_I8_AMX; kk++) {
        if (!lx_i8_kernel_supported((lx_i8_kernel)kk)) {
            fprintf(stderr, "  (%s not supported by this CPU: not run)\n", lx_i8_kernel_name((lx_i8_kernel)kk));
            continue;
        }
        ran++;
        for (int nt = 1; nt <= 2; nt++) {
            CHECK_EQ_INT(lx_set_num_threads(nt), LX_OK);
            check_steady((lx_i8_kernel)kk, 1, 256, 1000);  /* a decode row */
            check_steady((lx_i8_kernel)kk, 33, 40, 130);   /* AMX's row and column edges */
            check_steady((lx_i8_kernel)kk, 64, 100, 1500); /* padded A past the block cache */
        }
    }
    CHECK_EQ_INT(lx_set_num_threads(0), LX_OK);
    if (!ran) fprintf(stderr, "  no padding int8 kernel on this CPU: only the portable one, which copies nothing\n");
}

/* calls 3..6 of an int8 Linear (K -> N) on M rows in one LX_QT_INT8 session: no heap allocation,
 * the same output every call */
static void check_session(int64_t M, int64_t K, int64_t N) {
    nnx_rngs *r = NULL;
    nnx_linear *l = NULL;
    lx_qt_rules *rs = NULL;
    lx_qt_session *s = NULL;
    const lx_qt_rule rules[] = {{.module_path = ".*", .weight_qtype = "int8", .act_qtype = "int8"}};
    CHECK_EQ_INT(nnx_rngs_from_seed(5, &r), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(K, N, r, &l), LX_OK);
    CHECK_EQ_INT(lx_qt_rules_compile(rules, 1, &rs), LX_OK);
    float *xs = malloc(sizeof(float) * (size_t)(M * K)), *y0 = malloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) xs[i] = (float)val((uint32_t)i, 77u) / 64.0f;
    lx_array *x = lx_array_from_f32(2, (int64_t[]){M, K}, xs);
    size_t counted = 0;
    int64_t differ = 0;
    CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_INT8, &s), LX_OK);
    for (int call = 0; s && l && x && call < 6; call++) {
        size_t mark = lx_pool_open();
        atomic_store(&heap_allocs, 0);
        atomic_store(&heap_on, call >= 2);
        lx_array *y = nnx_call_array((nnx_module *)l, x);
        atomic_store(&heap_on, false);
        counted += atomic_load(&heap_allocs);
        CHECK(y != NULL && y->size == M * N);
        if (y && call == 0) memcpy(y0, lx_f32(y), sizeof(float) * (size_t)(M * N));
        for (int64_t i = 0; y && call > 0 && i < M * N; i++) differ += lx_f32(y)[i] != y0[i];
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(lx_qt_session_int8(s), 6);
    lx_qt_end(s);
    CHECK_EQ_INT(differ, 0);
    if (HEAP_COUNTED)
        LX_TEST_REPORT_(counted == 0, "int8 Linear %lld -> %lld on %lld rows: calls 3..6 made %zu heap allocations; want 0",
                        (long long)K, (long long)N, (long long)M, counted);
    fprintf(stderr, "  int8 Linear %lld -> %lld on %lld rows: calls 3..6 made %zu heap allocations\n", (long long)K,
            (long long)N, (long long)M, counted);
    lx_release(x);
    free(xs), free(y0);
    lx_qt_rules_free(rs);
    nnx_module_release((nnx_module *)l);
    nnx_rngs_release(r);
}

static void test_session_steps(void) {
    check_session(1, 1000, 256); /* a decode step */
    check_session(64, 1500, 100);
}

/* The counter counts (so a zero above is a real zero): an allocation of the library's. */
static void test_counter_counts(void) {
    if (!HEAP_COUNTED) {
        printf("heap counter: not under the sanitizers (their runtimes replace malloc)\n");
        return;
    }
    atomic_store(&heap_allocs, 0);
    atomic_store(&heap_on, true);
    lx_i8_packed *p = NULL;
    int8_t w = 1;
    lx_status st = lx_i8_pack(1, 1, &w, &p);
    atomic_store(&heap_on, false);
    CHECK_EQ_INT(st, LX_OK);
    CHECK(atomic_load(&heap_allocs) >= 1);
    lx_i8_packed_free(p);
}

int main(void) {
    RUN(test_counter_counts);
    RUN(test_steady_products);
    RUN(test_session_steps);
    return lx_test_finish();
}
