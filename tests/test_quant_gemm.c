/* int8 GEMM variants against a reference int64 loop (exact), and the symmetric quantizers
 * against hand-computed values (issue 13). Every kernel this CPU runs is checked (portable, AVX2,
 * AVX-512 VNNI, AMX-INT8); CTest runs the file again under each LINNX_INT8 setting. */
#include <string.h>

#include "lx_test.h"
#include "linnx/quant.h"

/* The full int8 range (-128 included): every kernel is exact on it (AVX2 runs a widened step for
 * weights holding -128, which its vpmaddubsw sign trick cannot take). */
static bool full_range(lx_i8_kernel k) {
    (void)k;
    return true;
}
static uint64_t rng2 = 0x9E3779B97F4A7C15ull;
static int8_t r8full(void) {
    rng2 ^= rng2 << 13, rng2 ^= rng2 >> 7, rng2 ^= rng2 << 17;
    return (int8_t)(int)(rng2 % 256 - 128); /* [-128, 127] */
}

static uint64_t rng = 88172645463325252ull;
static int8_t r8(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (int8_t)((int)(rng % 255) - 127); /* [-127, 127] */
}

/* extremes: 0 random in the kernel's range, 1 +-127 mixed, 2 -128 x -128 everywhere (the largest
 * products), 3 -128 against 127 */
static void check_variant(lx_i8_kernel k, int64_t M, int64_t N, int64_t K, int extremes) {
    int8_t *a = malloc((size_t)(M * K + 1)), *b = malloc((size_t)(N * K + 1));
    int32_t *c = malloc(sizeof(int32_t) * (size_t)(M * N + 1));
    const bool full = full_range(k);
    for (int64_t i = 0; i < M * K; i++)
        a[i] = extremes == 1 ? (i % 3 ? -127 : 127) : extremes >= 2 ? -128 : full ? r8full() : r8();
    for (int64_t i = 0; i < N * K; i++)
        b[i] = extremes == 1 ? (i % 5 ? -127 : 127) : extremes == 2 ? -128 : extremes == 3 ? 127 : full ? r8full() : r8();
    CHECK_EQ_INT(lx_i8_gemm(k, M, N, K, a, b, c), LX_OK);
    int64_t bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t s = 0;
            for (int64_t j = 0; j < K; j++) s += (int64_t)a[m * K + j] * b[n * K + j];
            bad += s != c[m * N + n];
        }
    if (bad) fprintf(stderr, "  %s M=%lld N=%lld K=%lld: %lld wrong\n", lx_i8_kernel_name(k), (long long)M,
                     (long long)N, (long long)K, (long long)bad);
    CHECK_EQ_INT((int)bad, 0);
    free(a), free(b), free(c);
}

static void test_variants_exact(void) {
    const int64_t shapes[][3] = {{1, 1, 1},     {3, 5, 7},    {2, 4, 32},     {5, 9, 33},    {7, 6, 64},
                                 {4, 13, 100},  {17, 11, 257}, {1, 64, 1024}, {33, 3, 129},  {16, 16, 64},
                                 {32, 32, 128}, {47, 49, 65},  {100, 70, 600}, {130, 33, 63}};
    for (int k = LX_I8_AUTO; k <= LX_I8_AMX; k++) {
        if (!lx_i8_kernel_supported((lx_i8_kernel)k)) {
            /* the VNNI kernel on an AVX2-only CPU: refused, nothing written */
            int32_t c = 42;
            int8_t one = 1;
            CHECK_FAILS(lx_i8_gemm((lx_i8_kernel)k, 1, 1, 1, &one, &one, &c), LX_ERR_UNSUPPORTED, "cannot run");
            CHECK_EQ_INT(c, 42);
            fprintf(stderr, "  (%s not supported by this CPU: not run)\n", lx_i8_kernel_name((lx_i8_kernel)k));
            continue;
        }
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            check_variant((lx_i8_kernel)k, shapes[s][0], shapes[s][1], shapes[s][2], 0);
        check_variant((lx_i8_kernel)k, 3, 5, 2048, 1); /* the largest magnitudes everywhere */
        check_variant((lx_i8_kernel)k, 20, 17, 2048, 1);
        if (full_range((lx_i8_kernel)k)) {
            check_variant((lx_i8_kernel)k, 19, 35, 4096, 2); /* -128 * -128 * 4096 = 2^26 per sum */
            check_variant((lx_i8_kernel)k, 3, 18, 1000, 3);
        }
    }
    /* -128 is exact in the portable kernel */
    int8_t a[2] = {-128, -128}, b[2] = {-128, 127};
    int32_t c = 0;
    CHECK_EQ_INT(lx_i8_gemm(LX_I8_PORTABLE, 1, 1, 2, a, b, &c), LX_OK);
    CHECK_EQ_INT(c, 16384 - 16256);
    CHECK_FAILS(lx_i8_gemm(LX_I8_PORTABLE, -1, 1, 1, a, b, &c), LX_ERR_INVALID_ARGUMENT, "sizes must be >= 0");
    CHECK_EQ_INT(lx_i8_gemm(LX_I8_AUTO, 0, 4, 4, NULL, NULL, NULL), LX_OK);
}

static void test_quantizers(void) {
    /* row 0: max 2.54 -> scale 0.02; 1.0 / 0.02 = 50, -2.54 -> -127, 0.01 -> 0.5 -> 0 (half even),
     * 0.03 -> 1.5 -> 2. Row 1 all zero: scale 1, zeros. */
    float x[8] = {1.0f, -2.54f, 0.01f, 0.03f, 0, 0, 0, 0};
    int8_t q[8];
    float s[2];
    lx_quantize_rows_i8(2, 4, x, q, s);
    CHECK_NEAR(s[0], 0.02f, 1e-7);
    CHECK_EQ_INT(q[0], 50);
    CHECK_EQ_INT(q[1], -127);
    CHECK_EQ_INT(q[3], 2);
    CHECK_EQ_INT(s[1], 1);
    CHECK_EQ_INT(q[5], 0);
    /* tiles of 2: [1, -2.54] scale 0.02; [0.01, 0.03] scale 0.03/127 -> 0.01 -> 42.33 -> 42, 0.03 -> 127 */
    float st[4];
    lx_quantize_tiles_i8(2, 4, 2, x, q, st);
    CHECK_NEAR(st[0], 0.02f, 1e-7);
    CHECK_NEAR(st[1], 0.03f / 127, 1e-9);
    CHECK_EQ_INT(q[2], 42);
    CHECK_EQ_INT(q[3], 127);
}

/* The packed kernel: B given (K, N) as a Dense kernel is stored, packed once; every shape around
 * the panel (16), row block (4) and group-of-4 edges, against the exact int64 sum. */
/* Packed for kernel `pk` (AUTO: lx_i8_pack), run with `kk`. extremes: 0 random in the range both
 * kernels are exact on, 1 +-127 mixed, 2 127 x -127 (vpmaddubsw's saturation bound), 3 -128 x
 * -128, 4 -128 x 127. */
static void check_packed_with(int pk, int kk, int64_t M, int64_t N, int64_t K, int extremes) {
    int8_t *a = malloc((size_t)(M * K + 1)), *b = malloc((size_t)(K * N + 1));
    int32_t *c = malloc(sizeof(int32_t) * (size_t)(M * N + 1));
    const bool full = full_range((lx_i8_kernel)kk) && full_range((lx_i8_kernel)pk);
    for (int64_t i = 0; i < M * K; i++)
        a[i] = extremes == 1 ? (i % 3 ? -127 : 127) : extremes == 2 ? 127 : extremes >= 3 ? -128 : full ? r8full() : r8();
    for (int64_t i = 0; i < K * N; i++)
        b[i] = extremes == 1   ? (i % 5 ? -127 : 127)
               : extremes == 2 ? -127
               : extremes == 3 ? -128
               : extremes == 4 ? 127
               : full          ? r8full()
                               : r8();
    lx_i8_packed *p = NULL;
    if (pk == LX_I8_AUTO) CHECK_EQ_INT(lx_i8_pack(K, N, b, &p), LX_OK);
    else CHECK_EQ_INT(lx_i8_pack_for((lx_i8_kernel)pk, K, N, b, &p), LX_OK);
    CHECK_EQ_INT(lx_i8_packed_k(p), K);
    CHECK_EQ_INT(lx_i8_packed_n(p), N);
    CHECK_EQ_INT(lx_i8_gemm_packed((lx_i8_kernel)kk, M, a, p, c), LX_OK);
    int64_t bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t s = 0;
            for (int64_t j = 0; j < K; j++) s += (int64_t)a[m * K + j] * b[j * N + n];
            bad += s != c[m * N + n];
        }
    if (bad)
        fprintf(stderr, "  packed for %s, run %s, M=%lld N=%lld K=%lld extremes %d: %lld wrong\n",
                lx_i8_kernel_name((lx_i8_kernel)pk), lx_i8_kernel_name((lx_i8_kernel)kk), (long long)M, (long long)N,
                (long long)K, extremes, (long long)bad);
    CHECK_EQ_INT((int)bad, 0);
    lx_i8_packed_free(p);
    free(a), free(b), free(c);
}

/* Every kernel the CPU runs on weights packed for it, AUTO on AUTO's packing, and the portable
 * kernel reading each layout: the same exact sums. */
static void check_packed(int64_t M, int64_t N, int64_t K, int extremes) {
    for (int kk = LX_I8_PORTABLE; kk <= LX_I8_AMX; kk++) {
        if (!lx_i8_kernel_supported((lx_i8_kernel)kk)) continue;
        if (extremes >= 3 && !full_range((lx_i8_kernel)kk)) continue;
        check_packed_with(kk, kk, M, N, K, extremes);
        if (kk != LX_I8_PORTABLE) check_packed_with(kk, LX_I8_PORTABLE, M, N, K, extremes);
    }
    if (extremes < 3 || full_range(LX_I8_AUTO)) check_packed_with(LX_I8_AUTO, LX_I8_AUTO, M, N, K, extremes);
}

static void test_packed_exact(void) {
    const int64_t shapes[][3] = {{1, 1, 1},    {1, 16, 4},   {1, 17, 5},  {2, 15, 3},   {3, 33, 7},   {4, 16, 8},
                                 {5, 31, 9},   {7, 48, 63},  {8, 1, 130}, {9, 50, 257}, {1, 512, 512}, {13, 7, 1},
                                 {130, 40, 36}, {6, 129, 1030}, {15, 31, 64},  {16, 32, 64},  {17, 33, 65},
                                 {31, 47, 127}, {32, 64, 128}, {33, 16, 191}, {64, 100, 700}, {200, 48, 512},
                                 {2, 80, 300}, {4, 200, 100}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) check_packed(shapes[s][0], shapes[s][1], shapes[s][2], 0);
    /* the saturation bound of vpmaddubsw: every pair 127 * -127 twice = -32258, never past int16;
     * and mixed signs at full magnitude over a long contraction (sums near 2^31 / 2^10) */
    check_packed(5, 19, 4096, 2);
    check_packed(3, 21, 2051, 1);
    check_packed(40, 37, 2051, 1);
    check_packed(18, 33, 4096, 3); /* -128 * -128: sums of 2^26 */
    check_packed(3, 18, 999, 4);
    check_packed(34, 18, 999, 4);
    CHECK_EQ_INT(lx_i8_gemm_packed(LX_I8_AUTO, 0, NULL, NULL, NULL) == LX_OK, 0);
    lx_i8_packed *p = NULL;
    CHECK_FAILS(lx_i8_pack(-1, 4, NULL, &p), LX_ERR_INVALID_ARGUMENT, "sizes must be >= 0");
    CHECK_FAILS(lx_i8_pack(4, 4, NULL, &p), LX_ERR_INVALID_ARGUMENT, "NULL weights");
    CHECK(p == NULL);
    /* K = 0: all sums are 0 */
    CHECK_EQ_INT(lx_i8_pack(0, 3, NULL, &p), LX_OK);
    int32_t c[6] = {1, 2, 3, 4, 5, 6};
    CHECK_EQ_INT(lx_i8_gemm_packed(LX_I8_AUTO, 2, NULL, p, c), LX_OK);
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(c[i], 0);
    c[0] = 42;
    CHECK_FAILS(lx_i8_gemm_packed((lx_i8_kernel)9, 2, NULL, p, c), LX_ERR_INVALID_ARGUMENT, "unknown kernel 9");
    CHECK_FAILS(lx_i8_pack_for((lx_i8_kernel)9, 1, 1, (const int8_t *)c, &p), LX_ERR_INVALID_ARGUMENT, "unknown kernel 9");
    CHECK_EQ_INT(c[0], 42);
    lx_i8_packed_free(p);
    /* a kernel the CPU lacks: refused, nothing written; weights packed for the other layout: the
     * portable reader runs instead (the same sums on every machine) */
    int8_t w[6] = {1, 2, 3, 4, 5, 6}, x[2] = {1, 1};
    lx_i8_packed *pa = NULL, *pv = NULL;
    CHECK_EQ_INT(lx_i8_pack_for(LX_I8_AVX2, 2, 3, w, &pa), LX_OK);
    CHECK_EQ_INT(lx_i8_pack_for(LX_I8_VNNI, 2, 3, w, &pv), LX_OK);
    CHECK_EQ_INT(lx_i8_packed_kernel(pa), LX_I8_AVX2);
    CHECK_EQ_INT(lx_i8_packed_kernel(pv), LX_I8_VNNI);
    for (int kk = LX_I8_AVX2; kk <= LX_I8_AMX; kk++) {
        lx_i8_packed *other = kk == LX_I8_AVX2 ? pv : pa;
        if (!lx_i8_kernel_supported((lx_i8_kernel)kk)) {
            CHECK_FAILS(lx_i8_gemm_packed((lx_i8_kernel)kk, 1, x, other, c), LX_ERR_UNSUPPORTED, "cannot run");
            fprintf(stderr, "  (packed %s not supported by this CPU: not run)\n", lx_i8_kernel_name((lx_i8_kernel)kk));
            CHECK_EQ_INT(c[0], 42);
        } else {
            CHECK_EQ_INT(lx_i8_gemm_packed((lx_i8_kernel)kk, 1, x, other, c), LX_OK);
            CHECK_EQ_INT(c[0] * 100 + c[1] * 10 + c[2], 579);
            c[0] = 42;
        }
    }
    /* AUTO and PORTABLE read either: 1+4, 2+5, 3+6 */
    CHECK_EQ_INT(lx_i8_gemm_packed(LX_I8_AUTO, 1, x, pa, c), LX_OK);
    CHECK_EQ_INT(c[0] * 100 + c[1] * 10 + c[2], 579);
    CHECK_EQ_INT(lx_i8_gemm_packed(LX_I8_PORTABLE, 1, x, pv, c), LX_OK);
    CHECK_EQ_INT(c[0] * 100 + c[1] * 10 + c[2], 579);
    lx_i8_packed_free(pa), lx_i8_packed_free(pv);
}

/* Under LINNX_INT8=<kernel> (CTest's test_quant_gemm_<kernel> entries), AUTO is that kernel when
 * the CPU runs it. */
static void test_forced_kernel(void) {
    const char *env = getenv("LINNX_INT8");
    const char *names[] = {"auto", "generic", "avx2", "vnni", "amx"};
    for (int k = LX_I8_PORTABLE; env && k <= LX_I8_AMX; k++)
        if (!strcmp(env, names[k]) && lx_i8_kernel_supported((lx_i8_kernel)k)) {
            CHECK(!strcmp(lx_i8_kernel_name(LX_I8_AUTO), lx_i8_kernel_name((lx_i8_kernel)k)));
            lx_i8_packed *p = NULL;
            int8_t w = 3, x = -2;
            int32_t c = 0;
            CHECK_EQ_INT(lx_i8_pack(1, 1, &w, &p), LX_OK);
            CHECK_EQ_INT(lx_i8_packed_kernel(p), k == LX_I8_PORTABLE ? LX_I8_PORTABLE : k);
            CHECK_EQ_INT(lx_i8_gemm_packed(LX_I8_AUTO, 1, &x, p, &c), LX_OK);
            CHECK_EQ_INT(c, -6);
            lx_i8_packed_free(p);
        }
    fprintf(stderr, "  LINNX_INT8=%s: AUTO runs %s\n", env ? env : "(unset)", lx_i8_kernel_name(LX_I8_AUTO));
}

/* int8 im2col against hand-written rows, and its refusals. */
static void test_conv_im2col(void) {
    const int8_t x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* (1, 3, 3, 1) */
    const int64_t xs[4] = {1, 3, 3, 1}, ks[4] = {2, 2, 1, 5};
    int64_t os[4];
    int8_t col[16];
    CHECK_EQ_INT(lx_i8_conv_im2col(4, xs, x, ks, NULL, os, col), LX_OK); /* VALID, stride 1 */
    const int8_t valid[16] = {1, 2, 4, 5, 2, 3, 5, 6, 4, 5, 7, 8, 5, 6, 8, 9};
    CHECK(os[0] == 1 && os[1] == 2 && os[2] == 2 && os[3] == 5);
    CHECK(memcmp(col, valid, 16) == 0);
    /* SAME, stride 2: out ceil(3 / 2) = 2, padding (0, 1) on each axis */
    lx_conv_params p = {0};
    p.padding.mode = LX_PAD_SAME;
    p.strides[0] = p.strides[1] = 2;
    CHECK_EQ_INT(lx_i8_conv_im2col(4, xs, x, ks, &p, os, NULL), LX_OK); /* shape only */
    CHECK(os[1] == 2 && os[2] == 2);
    CHECK_EQ_INT(lx_i8_conv_im2col(4, xs, x, ks, &p, os, col), LX_OK);
    const int8_t same[16] = {1, 2, 4, 5, 3, 0, 6, 0, 7, 8, 0, 0, 9, 0, 0, 0};
    CHECK(memcmp(col, same, 16) == 0);
    /* kernel dilation 2 on a 1-D input of 5: taps at i and i + 2, out 3 */
    const int64_t x1[3] = {1, 5, 1}, k1[3] = {2, 1, 1};
    lx_conv_params d = {0};
    d.rhs_dilation[0] = 2;
    CHECK_EQ_INT(lx_i8_conv_im2col(3, x1, x, k1, &d, os, col), LX_OK);
    const int8_t dil[6] = {1, 3, 2, 4, 3, 5};
    CHECK(os[1] == 3 && memcmp(col, dil, 6) == 0);
    /* refusals */
    const int64_t kg[4] = {2, 2, 1, 4}, xg[4] = {1, 3, 3, 2}; /* 2 groups of 1 input feature */
    CHECK_FAILS(lx_i8_conv_im2col(4, xg, NULL, kg, NULL, os, NULL), LX_ERR_UNSUPPORTED, "grouped");
    /* no grouping fits (1 input feature, a kernel reading 2; 4 inputs, groups of 3): bad geometry,
     * LX_ERR_SHAPE as lx_conv_general reports it, not "grouped" */
    const int64_t kbad[4] = {2, 2, 2, 5}, xb[4] = {1, 3, 3, 4}, kb3[4] = {2, 2, 3, 6};
    CHECK_FAILS(lx_i8_conv_im2col(4, xs, x, kbad, NULL, os, col), LX_ERR_SHAPE,
                "input features 1 must equal the kernel's input features 2 times a group count");
    CHECK_FAILS(lx_i8_conv_im2col(4, xb, NULL, kb3, NULL, os, NULL), LX_ERR_SHAPE, "input features 4");
    const int64_t kodd[4] = {2, 2, 1, 5}; /* 2 groups, 5 outputs: not divisible */
    CHECK_FAILS(lx_i8_conv_im2col(4, xg, NULL, kodd, NULL, os, NULL), LX_ERR_SHAPE, "divides its output features 5");
    lx_conv_params ld = {0};
    ld.lhs_dilation[0] = 2;
    CHECK_FAILS(lx_i8_conv_im2col(4, xs, x, ks, &ld, os, col), LX_ERR_UNSUPPORTED, "lhs_dilation");
    CHECK_FAILS(lx_i8_conv_im2col(2, xs, x, ks, NULL, os, col), LX_ERR_INVALID_ARGUMENT, "spatial axes");
    const int64_t kbig[4] = {4, 4, 1, 5};
    CHECK_EQ_INT(lx_i8_conv_im2col(4, xs, x, kbig, NULL, os, NULL), LX_OK); /* the window does not fit: out 0 */
    CHECK(os[1] == 0 && os[2] == 0);
}

/* -128 in A only, in B only, in both, under AUTO (the AVX2 kernel under LINNX_INT8=avx2 or on an
 * AVX2-only CPU) and AVX2 itself, unpacked and packed for AVX2: equal to the int64 reference. The
 * fast AVX2 step gets -128 in b wrong (sign(-128, a < 0) wraps, -128 * -128 pairs saturate), so
 * these failed before the kernel learned to fall back to its widened step. */
static void test_m128_avx2_auto(void) {
    const int64_t M = 3, N = 6, K = 67;
    int8_t a[3 * 67], b[67 * 6], bt[6 * 67];
    int32_t c[3 * 6];
    for (int where = 1; where <= 3; where++) {
        for (int64_t i = 0; i < M * K; i++) a[i] = (int8_t)((where & 1) && i % 7 == 2 ? -128 : (i * 37 % 255) - 127);
        for (int64_t i = 0; i < K * N; i++) b[i] = (int8_t)((where & 2) && i % 5 == 1 ? -128 : (i * 53 % 255) - 127);
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++) bt[n * K + k] = b[k * N + n];
        const lx_i8_kernel ks[2] = {LX_I8_AUTO, LX_I8_AVX2};
        for (int t = 0; t < 2; t++) {
            if (!lx_i8_kernel_supported(ks[t])) continue;
            for (int packed = 0; packed < 2; packed++) {
                lx_i8_packed *p = NULL;
                if (packed) {
                    CHECK_EQ_INT(lx_i8_pack_for(ks[t], K, N, b, &p), LX_OK);
                    CHECK_EQ_INT(lx_i8_gemm_packed(ks[t], M, a, p, c), LX_OK);
                } else {
                    CHECK_EQ_INT(lx_i8_gemm(ks[t], M, N, K, a, bt, c), LX_OK);
                }
                int bad = 0;
                for (int64_t m = 0; m < M; m++)
                    for (int64_t n = 0; n < N; n++) {
                        int64_t r = 0;
                        for (int64_t k = 0; k < K; k++) r += (int64_t)a[m * K + k] * b[k * N + n];
                        bad += r != c[m * N + n];
                    }
                if (bad) fprintf(stderr, "  %s (%s) %s, -128 in %s: %d wrong\n", lx_i8_kernel_name(ks[t]),
                                 t ? "avx2" : "auto", packed ? "packed" : "unpacked",
                                 where == 1 ? "A" : where == 2 ? "B" : "A and B", bad);
                CHECK_EQ_INT(bad, 0);
                lx_i8_packed_free(p);
            }
        }
    }
}

int main(void) {
    RUN(test_variants_exact);
    RUN(test_m128_avx2_auto);
    RUN(test_packed_exact);
    RUN(test_quantizers);
    RUN(test_forced_kernel);
    RUN(test_conv_im2col);
    return lx_test_finish();
}
