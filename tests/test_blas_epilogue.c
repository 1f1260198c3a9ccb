/* The GEMM epilogue on all of C (after OpenBLAS, and with K = 0) runs in row ranges on the pool
 * (src/ops/gemm.c, epilogue_all): its result must be the separate ops' bits - the product with no
 * epilogue, then z = C + bias (one float add), then lx_relu's compare or the kernel set's
 * vector-math row (vmath.h) - whatever the thread count (1 to 4), with y or in place, a leading
 * dimension past N, under every kernel set this CPU runs. */
#include <string.h>

#include "../src/ops/linalg_internal.h"
#include "linnx/cpu.h"
#include "linnx/threads.h"
#include "lx_test.h"

enum { M = 300, N = 200, K = 70, LDC = N + 3 };

static float A[M * K], B[K * N], bias[N];
static float C0[M * LDC], want[M * LDC], wanty[M * N], C[M * LDC], Y[M * N];

static float val(uint32_t i, uint32_t salt) {
    uint32_t h = (i + salt) * 2654435761u;
    return ((float)(h >> 8) / 16777216.0f - 0.5f) * 4.0f;
}

static void check_case(lx_isa isa, lx_gemm_act act, bool with_bias, bool with_y, int64_t k) {
    lx_sgemm_force_path(LX_GEMM_PATH_BLAS);
    /* the separate ops: the product alone, then bias, then the activation, row by row */
    for (int64_t i = 0; i < M * LDC; i++) C0[i] = 7.0f;
    CHECK_EQ_INT(lx_sgemm_ex(false, false, M, N, k, 1.0f, A, K, B, N, 0.0f, C0, LDC, NULL, 1), LX_OK);
    lx_act_row_fn row = lx_gemm_act_row(isa, act);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float z = with_bias ? C0[i * LDC + j] + bias[j] : C0[i * LDC + j];
            float a = act == LX_GEMM_ACT_RELU ? (z < 0.0f ? 0.0f : z) : z;
            if (with_y) want[i * LDC + j] = z, wanty[i * N + j] = a;
            else want[i * LDC + j] = a;
        }
    if (row) {
        for (int64_t i = 0; i < M; i++) {
            if (with_y) row(&want[i * LDC], &wanty[i * N], N);
            else row(&want[i * LDC], &want[i * LDC], N);
        }
    }
    const lx_gemm_epilogue ep = {.bias = with_bias ? bias : NULL, .act = act, .y = with_y ? Y : NULL, .ldy = N};
    for (int nt = 1; nt <= 4; nt++) {
        for (int64_t i = 0; i < M * LDC; i++) C[i] = 7.0f;
        for (int64_t i = 0; i < M * N; i++) Y[i] = -3.0f;
        CHECK_EQ_INT(lx_sgemm_ex(false, false, M, N, k, 1.0f, A, K, B, N, 0.0f, C, LDC, &ep, nt), LX_OK);
        int64_t bad = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < LDC; j++) {
                /* columns past N are not C's: untouched */
                float w = j < N ? want[i * LDC + j] : 7.0f;
                bad += memcmp(&C[i * LDC + j], &w, sizeof(float)) != 0;
                if (with_y && j < N) bad += memcmp(&Y[i * N + j], &wanty[i * N + j], sizeof(float)) != 0;
            }
        LX_TEST_REPORT_(bad == 0, "isa %d act %d bias %d y %d K %lld, %d threads: %lld values differ from the separate ops",
                        (int)isa, (int)act, with_bias, with_y, (long long)k, nt, (long long)bad);
    }
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
}

static void test_blas_epilogue_bits(void) {
    for (int64_t i = 0; i < M * K; i++) A[i] = val((uint32_t)i, 1);
    for (int64_t i = 0; i < K * N; i++) B[i] = val((uint32_t)i, 2);
    for (int64_t j = 0; j < N; j++) bias[j] = val((uint32_t)j, 3);
    CHECK_EQ_INT(lx_set_num_threads(4), LX_OK);
    const char *names[] = {"generic", "avx2", "avx512"};
    for (int s = 0; s <= 2; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        CHECK_EQ_INT(lx_isa_set(names[s]), LX_OK);
        for (int act = LX_GEMM_ACT_NONE; act <= LX_GEMM_ACT_SILU; act++)
            for (int y = 0; y <= 1; y++) {
                check_case((lx_isa)s, (lx_gemm_act)act, true, y, K);
                if (act != LX_GEMM_ACT_NONE) check_case((lx_isa)s, (lx_gemm_act)act, false, y, K);
            }
        check_case((lx_isa)s, LX_GEMM_ACT_SILU, true, false, 0); /* K = 0: act(bias) */
        check_case((lx_isa)s, LX_GEMM_ACT_RELU, true, true, 0);
    }
    CHECK_EQ_INT(lx_isa_set(NULL), LX_OK);
    CHECK_EQ_INT(lx_set_num_threads(0), LX_OK);
}

int main(void) {
    RUN(test_blas_epilogue_bits);
    return lx_test_finish();
}
