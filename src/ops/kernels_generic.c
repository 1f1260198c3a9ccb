/* The generic kernel set: plain C for the architecture's baseline (any x86-64, any aarch64). */
#include "kernels.h"

#define PORT_NAME(x) generic_##x
#include "kernels_portable.h"

/* ---- small GEMM: MR x 16 tiles the compiler can vectorize ---- */
#define P_MR 4
#define P_NR 16
static inline float combine(float acc, float alpha, float beta, bool first, float c) {
    float v = alpha * acc;
    if (!first) return c + v;
    return beta == 0.0f ? v : v + beta * c;
}
static void tile_portable(int mr, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs, const float *B,
                          int64_t ldb, float alpha, float beta, bool first, float *C, int64_t ldc) {
    for (int j0 = 0; j0 < nr; j0 += P_NR) {
        int nj = nr - j0 < P_NR ? nr - j0 : P_NR;
        float acc[P_MR][P_NR] = {{0}};
        for (int64_t k = 0; k < kc; k++) {
            const float *b = B + k * ldb + j0;
            float bk[P_NR] = {0};
            for (int j = 0; j < nj; j++) bk[j] = b[j];
            for (int r = 0; r < mr; r++) {
                float a = A[r * ars + k * acs];
                for (int j = 0; j < P_NR; j++) acc[r][j] += a * bk[j];
            }
        }
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nj; j++) {
                float *c = C + r * ldc + j0 + j;
                *c = combine(acc[r][j], alpha, beta, first, first && beta == 0.0f ? 0.0f : *c);
            }
    }
}
static void small_panel_portable(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                                 const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                                 int64_t ldc) {
    for (int64_t i0 = 0; i0 < M; i0 += P_MR)
        tile_portable((int)(M - i0 < P_MR ? M - i0 : P_MR), nr, kc, A + i0 * ars, ars, acs, B, ldb, alpha, beta,
                      first, C + i0 * ldc, ldc);
}

/* ---- the GEMM epilogue's bias and ReLU (kernels.h epi), loops the compiler vectorizes ----
 * One loop per case (bias, relu, Y), so each is a plain vector loop; relu as lx_relu's kernel. */
static inline float relu1(float z) { return z < 0.0f ? 0.0f : z; }
static void generic_gemm_epi(float *C, int64_t ldc, int64_t m, int64_t n, const float *bias, bool relu, float *Y,
                             int64_t ldy) {
    for (int64_t i = 0; i < m; i++) {
        float *restrict c = C + i * ldc;
        const float *restrict b = bias;
        if (Y) {
            float *restrict y = Y + i * ldy;
            if (b)
                for (int64_t j = 0; j < n; j++) c[j] = c[j] + b[j];
            if (relu)
                for (int64_t j = 0; j < n; j++) y[j] = relu1(c[j]);
            else
                for (int64_t j = 0; j < n; j++) y[j] = c[j];
        } else if (b && relu) {
            for (int64_t j = 0; j < n; j++) c[j] = relu1(c[j] + b[j]);
        } else if (b) {
            for (int64_t j = 0; j < n; j++) c[j] = c[j] + b[j];
        } else if (relu) {
            for (int64_t j = 0; j < n; j++) c[j] = relu1(c[j]);
        }
    }
}

/* ---- packed GEMM: 4 x 8 tiles of 4-lane vectors (16 registers on SSE2 hold them) ---- */
typedef float v4f __attribute__((vector_size(16)));
typedef float v4f_u __attribute__((vector_size(16), aligned(4)));
#define V v4f
#define VL 4
#define VZERO() ((v4f){0, 0, 0, 0})
#define VSET1(x) ((v4f){0, 0, 0, 0} + (x))
#define VLOAD(p) (*(const v4f *)(p))
#define VLOADU(p) (*(const v4f_u *)(p))
#define VSTOREU(p, v) (*(v4f_u *)(p) = (v))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define TMPL_MR 4
#define TMPL_NR 8
#define TMPL_NAME(x) generic_##x
#include "gemm_tmpl.h"

static const lx_kernels table = {
    .isa = LX_ISA_GENERIC,
    .gemm_name = "portable",
    .gemm = {.mr = TMPL_MR, .nr = TMPL_NR, .ukr = generic_ukr, .pack_a = generic_pack_a, .pack_b = generic_pack_b,
             .small_panel = small_panel_portable, .small_pack_bt = generic_small_pack_bt,
             .epi = generic_gemm_epi},
    .softmax_row = generic_softmax_row,
    .logsumexp_row = generic_logsumexp_row,
    .norm_row = generic_norm_row,
    .conv_direct_row = generic_conv_direct_row,
};

const lx_kernels *lx_kernels_generic(void) { return &table; }
