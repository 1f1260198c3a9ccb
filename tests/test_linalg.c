/* Threads, GEMM, matmul and dot_general against double-precision loops written here. */
#include "linnx/linalg.h"
#include "linnx/threads.h"
#include "lx_test.h"

static uint32_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) * (1.0 / 8388608.0)) - 1.0f;
}
static lx_array *rand_array(int ndim, const int64_t *shape) {
    lx_array *a = lx_autorelease(lx_array_empty(LX_F32, ndim, shape));
    for (int64_t i = 0; i < a->size; i++) lx_f32(a)[i] = frand();
    return a;
}
#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define ND(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define RAND(...) rand_array(ND(__VA_ARGS__), SHAPE(__VA_ARGS__))

static void test_threads(void) {
    int def = lx_num_threads();
    CHECK(def >= 1);
    CHECK_EQ_INT(lx_set_num_threads(1), LX_OK);
    CHECK_EQ_INT(lx_num_threads(), 1);
    CHECK_EQ_INT(lx_set_num_threads(0), LX_OK);
    CHECK_EQ_INT(lx_num_threads(), def);
    CHECK_FAILS(lx_set_num_threads(-2), LX_ERR_INVALID_ARGUMENT, "set_num_threads: thread count must be >= 0, got -2");
    CHECK_EQ_INT(lx_num_threads(), def);
}

/* ---- GEMM ---- */

/* C = alpha op(A) op(B) + beta C in double; also the magnitude sum for a tolerance. */
static void ref_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, const float *C0, int ldc, double *R, double *mag) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, m = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[k * lda + i] : A[i * lda + k], b = tb ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
                m += fabs(a * b);
            }
            R[i * N + j] = alpha * s + (beta != 0 ? beta * C0[i * ldc + j] : 0);
            mag[i * N + j] = fabs(alpha) * m + fabs(beta * (beta != 0 ? C0[i * ldc + j] : 0));
        }
}

static int gemm_case(bool ta, bool tb, int M, int N, int K, float alpha, float beta, int pad) {
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int arows = ta ? K : M, brows = tb ? N : K;
    float *A = malloc(sizeof(float) * (size_t)(arows * lda + 1)), *B = malloc(sizeof(float) * (size_t)(brows * ldb + 1));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc + 1)), *C0 = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    double *R = malloc(sizeof(double) * (size_t)(M * N + 1)), *mag = malloc(sizeof(double) * (size_t)(M * N + 1));
    for (int i = 0; i < arows * lda; i++) A[i] = frand();
    for (int i = 0; i < brows * ldb; i++) B[i] = frand();
    for (int i = 0; i < M * ldc; i++) C0[i] = C[i] = beta == 0 ? NAN : frand(); /* beta 0: C never read */
    ref_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc, R, mag);
    int bad = lx_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) != LX_OK;
    for (int i = 0; i < M && !bad; i++) {
        for (int j = 0; j < N; j++)
            if (!(fabs(C[i * ldc + j] - R[i * N + j]) <= 2e-6 * mag[i * N + j] + 1e-6)) bad = 1;
        for (int j = N; j < ldc; j++) /* padding untouched */
            if (!(C[i * ldc + j] == C0[i * ldc + j] || (isnan(C[i * ldc + j]) && isnan(C0[i * ldc + j])))) bad = 1;
    }
    if (bad)
        fprintf(stderr, "gemm mismatch: kernel %s limit %lld ta %d tb %d M %d N %d K %d alpha %g beta %g pad %d\n",
                lx_sgemm_kernel(), (long long)lx_sgemm_small_limit(), ta, tb, M, N, K, alpha, beta, pad);
    free(A), free(B), free(C), free(C0), free(R), free(mag);
    return bad;
}

static void test_gemm(void) {
    const int sizes[] = {1, 7, 63, 65, 129};
    const char *kernels[] = {"avx512", "avx2", "portable"};
    for (int kern = 0; kern < 4; kern++) {
        if (kern < 3) {
            if (lx_sgemm_use_kernel(kernels[kern]) != LX_OK) continue; /* not in this build */
            lx_sgemm_set_small_limit(INT64_MAX); /* every size on our kernel */
        } else {
            lx_sgemm_use_kernel(NULL);
            lx_sgemm_set_small_limit(0); /* every size on OpenBLAS */
        }
        int bad = 0, cases = 0;
        for (int t = 0; t < 4; t++)
            for (int mi = 0; mi < 5; mi++)
                for (int ni = 0; ni < 5; ni++)
                    for (int ki = 0; ki < 5; ki++) {
                        bool odd = (mi + ni + ki + t) % 3 == 0;
                        bad += gemm_case(t & 1, t >> 1, sizes[mi], sizes[ni], sizes[ki], odd ? 1.5f : 1.0f,
                                         odd ? 0.5f : 0.0f, (mi + ki) % 2 ? 3 : 0);
                        cases++;
                    }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(cases, 500);
    }
    lx_sgemm_use_kernel(NULL);
    lx_sgemm_set_small_limit(-1);
    /* The default threshold sits between 64^3 and 256^3; both sides once more at defaults. */
    CHECK(lx_sgemm_small_limit() >= 64 * 64 * 64 && lx_sgemm_small_limit() < 256 * 256 * 256);
    CHECK_EQ_INT(gemm_case(false, false, 64, 64, 64, 1, 0, 0) + gemm_case(true, true, 256, 260, 300, 2, 1, 1), 0);
    /* K blocks beyond one panel (K > 256) on our kernel, with beta. */
    lx_sgemm_set_small_limit(INT64_MAX);
    CHECK_EQ_INT(gemm_case(false, true, 33, 47, 600, 1, 0.25f, 2) + gemm_case(true, false, 9, 70, 513, 1, 0, 0), 0);
    lx_sgemm_set_small_limit(-1);
    /* K == 0: C = beta C. */
    float c[4] = {1, 2, 3, 4};
    CHECK_EQ_INT(lx_sgemm(false, false, 2, 2, 0, 1, NULL, 1, NULL, 2, 0.5f, c, 2), LX_OK);
    CHECK(c[0] == 0.5f && c[3] == 2.0f);

    CHECK_FAILS(lx_sgemm(false, false, -1, 2, 2, 1, c, 2, c, 2, 0, c, 2), LX_ERR_INVALID_ARGUMENT, "sgemm: negative size M=-1");
    CHECK_FAILS(lx_sgemm(false, false, 2, 2, 3, 1, c, 2, c, 2, 0, c, 2), LX_ERR_INVALID_ARGUMENT, "lda=2");
    CHECK_FAILS(lx_sgemm(false, false, 2, 2, 2, 1, NULL, 2, c, 2, 0, c, 2), LX_ERR_INVALID_ARGUMENT, "NULL buffer");
    CHECK_FAILS(lx_sgemm_use_kernel("sse9"), LX_ERR_INVALID_ARGUMENT, "unknown kernel 'sse9'");
    CHECK_EQ_INT(lx_sgemm_use_kernel("portable"), LX_OK);
    CHECK_STR(lx_sgemm_kernel(), "portable");
    lx_sgemm_use_kernel(NULL);
}

/* Every tile shape of each kernel: panel widths 16 * nv and ragged ones (zero-padded B panels,
 * masked C stores) against row counts around each tile height (6, 8, 12 on AVX-512), with one
 * K block and with K cut into equal blocks (290 = 145 + 145), plain and transposed. */
static void test_gemm_tiles(void) {
    const int ns[] = {16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 80, 100, 112};
    const int ms[] = {1, 5, 6, 7, 8, 9, 12, 13, 25};
    const int ks[] = {3, 290};
    const char *kernels[] = {"avx512", "avx2", "portable"};
    lx_sgemm_set_small_limit(INT64_MAX);
    for (int kern = 0; kern < 3; kern++) {
        if (lx_sgemm_use_kernel(kernels[kern]) != LX_OK) continue;
        int bad = 0;
        for (int t = 0; t < 4; t++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
                    for (int ki = 0; ki < 2; ki++) {
                        bool odd = (ni + mi + ki + t) % 2;
                        bad += gemm_case(t & 1, t >> 1, ms[mi], ns[ni], ks[ki], odd ? 0.5f : 1.0f, odd ? 2.0f : 0.0f,
                                         (int)(ni % 3));
                    }
        CHECK_EQ_INT(bad, 0);
    }
    lx_sgemm_use_kernel(NULL);
    lx_sgemm_set_small_limit(-1);
}

/* ---- matmul ---- */

/* Reference numpy matmul over row-major f32 arrays, by broadcasting rules written out. */
static lx_array *ref_matmul(const lx_array *a, const lx_array *b) {
    int an = a->ndim, bn = b->ndim;
    int64_t M = an >= 2 ? a->shape[an - 2] : 1, K = a->shape[an - 1], N = bn >= 2 ? b->shape[bn - 1] : 1;
    int abat = an > 2 ? an - 2 : 0, bbat = bn > 2 ? bn - 2 : 0, nb = abat > bbat ? abat : bbat;
    int64_t bs[LX_MAX_DIMS], os[LX_MAX_DIMS], nbatch = 1;
    int ond = 0;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - abat), ib = i - (nb - bbat);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        bs[i] = os[ond++] = da > db ? da : db;
        nbatch *= bs[i];
    }
    if (an >= 2) os[ond++] = M;
    if (bn >= 2) os[ond++] = N;
    lx_array *r = lx_autorelease(lx_array_new(LX_F32, ond, os));
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t rest = t, oa = 0, ob = 0, sa = M * K, sb = K * N;
        for (int i = nb - 1; i >= 0; i--) {
            int64_t ix = rest % bs[i];
            rest /= bs[i];
            int ia = i - (nb - abat), ib = i - (nb - bbat);
            if (ia >= 0) { if (a->shape[ia] != 1) oa += ix * sa; sa *= a->shape[ia]; }
            if (ib >= 0) { if (b->shape[ib] != 1) ob += ix * sb; sb *= b->shape[ib]; }
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += (double)lx_f32(a)[oa + i * K + k] * lx_f32(b)[ob + k * N + j];
                lx_f32(r)[t * M * N + i * N + j] = (float)s;
            }
    }
    return r;
}

static void check_matmul(lx_array *a, lx_array *b, int ndim, const int64_t *shape) {
    lx_array *y = lx_matmul(a, b);
    CHECK(y != NULL);
    if (!y) return;
    CHECK(lx_shape_eq(y, ndim, shape));
    CHECK(lx_array_allclose(y, ref_matmul(a, b), 1e-5, 1e-5));
}

static void test_matmul(void) {
    check_matmul(RAND(3, 4), RAND(4, 5), 2, SHAPE(3, 5));
    check_matmul(RAND(4), RAND(4, 5), 1, SHAPE(5));
    check_matmul(RAND(3, 4), RAND(4), 1, SHAPE(3));
    check_matmul(RAND(7), RAND(7), 0, NULL);
    check_matmul(RAND(2, 1, 3, 4), RAND(5, 4, 2), 4, SHAPE(2, 5, 3, 2));
    check_matmul(RAND(3, 4), RAND(2, 4, 5), 3, SHAPE(2, 3, 5));
    check_matmul(RAND(6, 3, 4), RAND(4, 5), 3, SHAPE(6, 3, 5));           /* folds into one GEMM */
    check_matmul(RAND(2, 3, 70, 65), RAND(3, 65, 33), 4, SHAPE(2, 3, 70, 33)); /* parallel batches */
    check_matmul(RAND(4), RAND(3, 4, 2), 2, SHAPE(3, 2));
    check_matmul(RAND(2, 5, 4), RAND(4), 2, SHAPE(2, 5));
    check_matmul(RAND(2, 200, 150), RAND(150, 130), 3, SHAPE(2, 200, 130)); /* OpenBLAS side */
    check_matmul(RAND(3, 150, 140), RAND(3, 140, 130), 3, SHAPE(3, 150, 130));
    lx_array *z = lx_matmul(RAND(3, 0), RAND(0, 2)); /* empty contraction: zeros */
    CHECK(z && z->size == 6 && lx_f32(z)[0] == 0 && lx_f32(z)[5] == 0);
    /* One row per batch and an empty contraction: numpy gives zeros (3, 1, 4). The batch stride
     * of a (3, 1, 0) operand is 0, which once became lda and made the GEMM refuse the call. */
    lx_clear_error();
    z = lx_matmul(RAND(3, 1, 0), RAND(0, 4));
    CHECK(z && lx_shape_eq(z, 3, SHAPE(3, 1, 4)));
    if (z) {
        bool zeros = true;
        for (int64_t i = 0; i < z->size; i++) zeros = zeros && lx_f32(z)[i] == 0.0f;
        CHECK(zeros);
    }
    z = lx_matmul(RAND(2, 3, 1, 0), RAND(3, 0, 5)); /* broadcast batch, shared-nothing */
    CHECK(z && lx_shape_eq(z, 4, SHAPE(2, 3, 1, 5)) && lx_f32(z)[0] == 0 && lx_f32(z)[29] == 0);

    /* errors */
    lx_clear_error();
    CHECK_NULL_FAILS(lx_matmul(RAND(2, 3), RAND(4, 5)), LX_ERR_SHAPE,
                     "matmul: shapes (2, 3) and (4, 5) not aligned: 3 (dim 1) != 4 (dim 0)");
    CHECK_NULL_FAILS(lx_matmul(RAND(2, 2, 3), RAND(5, 3, 2)), LX_ERR_SHAPE,
                     "matmul: batch dimensions of shapes (2, 2, 3) and (5, 3, 2) do not broadcast: 2 vs 5");
    lx_array *s = lx_autorelease(lx_array_scalar_f32(1));
    CHECK_NULL_FAILS(lx_matmul(s, RAND(3)), LX_ERR_SHAPE, "matmul: operand 0 of shape () has no axis to contract");
    lx_array *ia = lx_autorelease(lx_array_new(LX_I32, 2, SHAPE(2, 2)));
    CHECK_NULL_FAILS(lx_matmul(ia, RAND(2, 2)), LX_ERR_DTYPE,
                     "matmul: expected float32 operands, got int32(2, 2) and float32(2, 2)");
    /* a failed input propagates and keeps the first message */
    lx_clear_error();
    lx_fail(LX_ERR_SHAPE, "first failure");
    CHECK(lx_matmul(NULL, RAND(2, 2)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "first failure");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_matmul(RAND(2, 2), NULL), LX_ERR_FAILED_INPUT, "matmul: input is NULL");
    /* abstract in, abstract out */
    lx_array *abs_ = lx_autorelease(lx_array_abstract(LX_F32, 3, SHAPE(8, 3, 4)));
    lx_array *y = lx_matmul(abs_, RAND(4, 6));
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 3, SHAPE(8, 3, 6)));
}

/* ---- dot_general ---- */

/* Reference lax.dot_general by enumerating output and contraction indices. */
static lx_array *ref_dot_general(const lx_array *a, const lx_array *b, int nc, const int *lc, const int *rc,
                                 int nb, const int *lb, const int *rb) {
    bool lu[8] = {0}, ru[8] = {0};
    for (int i = 0; i < nc; i++) lu[lc[i]] = ru[rc[i]] = true;
    for (int i = 0; i < nb; i++) lu[lb[i]] = ru[rb[i]] = true;
    int lf[8], rf[8], nlf = 0, nrf = 0;
    for (int i = 0; i < a->ndim; i++) if (!lu[i]) lf[nlf++] = i;
    for (int i = 0; i < b->ndim; i++) if (!ru[i]) rf[nrf++] = i;
    int64_t os[8];
    int ond = 0;
    for (int i = 0; i < nb; i++) os[ond++] = a->shape[lb[i]];
    for (int i = 0; i < nlf; i++) os[ond++] = a->shape[lf[i]];
    for (int i = 0; i < nrf; i++) os[ond++] = b->shape[rf[i]];
    lx_array *r = lx_autorelease(lx_array_new(LX_F32, ond, os));
    int64_t ncs = 1;
    for (int i = 0; i < nc; i++) ncs *= a->shape[lc[i]];
    for (int64_t o = 0; o < r->size; o++) {
        int64_t oi[8], rest = o;
        for (int i = ond - 1; i >= 0; i--) oi[i] = rest % os[i], rest /= os[i];
        int64_t ai[8] = {0}, bi[8] = {0};
        for (int i = 0; i < nb; i++) ai[lb[i]] = bi[rb[i]] = oi[i];
        for (int i = 0; i < nlf; i++) ai[lf[i]] = oi[nb + i];
        for (int i = 0; i < nrf; i++) bi[rf[i]] = oi[nb + nlf + i];
        double s = 0;
        for (int64_t c = 0; c < ncs; c++) {
            int64_t cr = c;
            for (int i = nc - 1; i >= 0; i--) {
                ai[lc[i]] = bi[rc[i]] = cr % a->shape[lc[i]];
                cr /= a->shape[lc[i]];
            }
            int64_t fa = 0, fb = 0;
            for (int i = 0; i < a->ndim; i++) fa = fa * a->shape[i] + ai[i];
            for (int i = 0; i < b->ndim; i++) fb = fb * b->shape[i] + bi[i];
            s += (double)lx_f32(a)[fa] * lx_f32(b)[fb];
        }
        lx_f32(r)[o] = (float)s;
    }
    return r;
}

static void check_dg(lx_array *a, lx_array *b, int nc, const int64_t *lc, const int64_t *rc, int nb,
                     const int64_t *lb, const int64_t *rb, int ndim, const int64_t *shape) {
    lx_array *y = lx_dot_general(a, b, nc, lc, rc, nb, lb, rb);
    CHECK(y != NULL);
    if (!y) return;
    CHECK(lx_shape_eq(y, ndim, shape));
    int nlc[8], nrc[8], nlb[8], nrb[8];
    for (int i = 0; i < nc; i++) nlc[i] = (int)(lc[i] < 0 ? lc[i] + a->ndim : lc[i]), nrc[i] = (int)(rc[i] < 0 ? rc[i] + b->ndim : rc[i]);
    for (int i = 0; i < nb; i++) nlb[i] = (int)(lb[i] < 0 ? lb[i] + a->ndim : lb[i]), nrb[i] = (int)(rb[i] < 0 ? rb[i] + b->ndim : rb[i]);
    CHECK(lx_array_allclose(y, ref_dot_general(a, b, nc, nlc, nrc, nb, nlb, nrb), 1e-5, 1e-5));
}
#define AX(...) ((const int64_t[]){__VA_ARGS__})

static const lx_prim_event *last_ev;
static char last_op[32];
static int64_t last_lc0 = -1, last_lb1 = -1;
static void record(const lx_prim_event *ev, void *user) {
    (void)user;
    last_ev = ev;
    snprintf(last_op, sizeof last_op, "%s", ev->op);
    if (ev->nattrs == 4 && ev->attrs[0].value.u.ints.n > 0) last_lc0 = ev->attrs[0].value.u.ints.v[0];
    if (ev->nattrs == 4 && ev->attrs[2].value.u.ints.n > 1) last_lb1 = ev->attrs[2].value.u.ints.v[1];
}

static void test_dot_general(void) {
    /* plain matmul, and every transpose of it */
    check_dg(RAND(3, 4), RAND(4, 5), 1, AX(1), AX(0), 0, NULL, NULL, 2, SHAPE(3, 5));
    check_dg(RAND(4, 3), RAND(4, 5), 1, AX(0), AX(0), 0, NULL, NULL, 2, SHAPE(3, 5));
    check_dg(RAND(3, 4), RAND(5, 4), 1, AX(1), AX(1), 0, NULL, NULL, 2, SHAPE(3, 5));
    check_dg(RAND(4, 3), RAND(5, 4), 1, AX(-2), AX(-1), 0, NULL, NULL, 2, SHAPE(3, 5));
    /* DenseGeneral '...d,dhk->...hk' */
    check_dg(RAND(2, 3, 8), RAND(8, 2, 5), 1, AX(2), AX(0), 0, NULL, NULL, 4, SHAPE(2, 3, 2, 5));
    /* DenseGeneral out projection '...hk,hkd->...d' (two contracted axes) */
    check_dg(RAND(2, 3, 2, 5), RAND(2, 5, 8), 2, AX(2, 3), AX(0, 1), 0, NULL, NULL, 3, SHAPE(2, 3, 8));
    /* attention 'bqhd,bkhd->bhqk' and 'bhqk,bkhd->bhqd' */
    check_dg(RAND(2, 5, 3, 4), RAND(2, 6, 3, 4), 1, AX(3), AX(3), 2, AX(0, 2), AX(0, 2), 4, SHAPE(2, 3, 5, 6));
    check_dg(RAND(2, 3, 5, 6), RAND(2, 6, 3, 4), 1, AX(3), AX(1), 2, AX(0, 1), AX(0, 2), 4, SHAPE(2, 3, 5, 4));
    /* contracted axes listed against memory order, and non-adjacent ones (a copy is needed) */
    check_dg(RAND(3, 4, 5), RAND(5, 2, 3), 2, AX(2, 0), AX(0, 2), 0, NULL, NULL, 2, SHAPE(4, 2));
    check_dg(RAND(3, 4, 5), RAND(4, 3, 5), 2, AX(1, 0), AX(0, 1), 0, NULL, NULL, 2, SHAPE(5, 5));
    check_dg(RAND(3, 4, 5, 2), RAND(2, 5, 3), 2, AX(0, 2), AX(2, 1), 0, NULL, NULL, 3, SHAPE(4, 2, 2));
    /* batch axes last and in swapped order; outer product; full contraction */
    check_dg(RAND(4, 3, 2), RAND(3, 5, 2), 0, NULL, NULL, 2, AX(2, 1), AX(2, 0), 4, SHAPE(2, 3, 4, 5));
    check_dg(RAND(3), RAND(4), 0, NULL, NULL, 0, NULL, NULL, 2, SHAPE(3, 4));
    check_dg(RAND(3, 4), RAND(3, 4), 2, AX(0, 1), AX(0, 1), 0, NULL, NULL, 0, NULL);
    check_dg(RAND(70, 4, 66), RAND(4, 66, 65), 1, AX(2), AX(1), 1, AX(1), AX(0), 3, SHAPE(4, 70, 65));
    /* batch axes, one row each and an empty contraction: zeros, like the matmul case */
    check_dg(RAND(3, 1, 0), RAND(3, 0, 4), 1, AX(2), AX(1), 1, AX(0), AX(0), 3, SHAPE(3, 1, 4));
    check_dg(RAND(3, 1, 0), RAND(0, 4), 1, AX(2), AX(0), 0, NULL, NULL, 3, SHAPE(3, 1, 4));

    /* the direct dense-layer GEMM, x (M, K) . w (K, N): values against the reference, and the bits
     * of the general planner on the same data (x viewed as (1, M, K)); edges K = 0, 1 and N, M = 1 */
    const int64_t dense[][3] = {{1, 64, 10}, {1, 64, 64}, {5, 1, 7}, {3, 9, 1}, {2, 0, 4}, {1, 1, 1}, {37, 300, 53}};
    for (int i = 0; i < 7; i++) {
        const int64_t M = dense[i][0], K = dense[i][1], N = dense[i][2];
        lx_array *x = RAND(M, K), *w = RAND(K, N);
        check_dg(x, w, 1, AX(1), AX(0), 0, NULL, NULL, 2, SHAPE(M, N));
        lx_array *y2 = lx_dot_general(x, w, 1, AX(-1), AX(0), 0, NULL, NULL);
        lx_array *x3 = lx_autorelease(lx_array_reshape_view(x, 3, SHAPE(1, M, K)));
        lx_array *y3 = lx_dot_general(x3, w, 1, AX(2), AX(0), 0, NULL, NULL);
        CHECK(y2 && y3 && lx_shape_eq(y3, 3, SHAPE(1, M, N)));
        if (y2 && y3) CHECK(memcmp(lx_f32(y2), lx_f32(y3), sizeof(float) * (size_t)(M * N)) == 0);
    }

    /* the primitive and its attributes */
    int h = 0;
    lx_prim_observe(record, NULL, &h);
    lx_dot_general(RAND(2, 5, 3, 4), RAND(2, 6, 3, 4), 1, AX(-1), AX(3), 2, AX(0, 2), AX(0, 2));
    CHECK_STR(last_op, "dot_general");
    CHECK_EQ_INT(last_lc0, 3);
    CHECK_EQ_INT(last_lb1, 2);
    lx_matmul(RAND(2, 2), RAND(2, 2));
    CHECK_STR(last_op, "matmul");
    lx_prim_unobserve(h);

    lx_clear_error();
    CHECK_NULL_FAILS(lx_dot_general(RAND(3, 4), RAND(5, 6), 1, AX(1), AX(0), 0, NULL, NULL), LX_ERR_SHAPE,
                     "dot_general: contracting dimensions must have equal sizes: lhs axis 1 of (3, 4) has size 4, rhs axis 0 of (5, 6) has size 5");
    CHECK_NULL_FAILS(lx_dot_general(RAND(3, 4), RAND(4, 6), 1, AX(2), AX(0), 0, NULL, NULL), LX_ERR_SHAPE,
                     "dot_general: lhs contracting axis 2 is out of range for shape (3, 4)");
    CHECK_NULL_FAILS(lx_dot_general(RAND(3, 4), RAND(4, 6), 1, AX((1LL << 32) + 1), AX(0), 0, NULL, NULL), LX_ERR_SHAPE,
                     "dot_general: lhs contracting axis 4294967297 is out of range for shape (3, 4)");
    CHECK_NULL_FAILS(lx_dot_general(RAND(3, 3), RAND(3, 3), 1, AX(0), AX(0), 1, AX(0), AX(1)), LX_ERR_SHAPE,
                     "dot_general: lhs axis 0 of shape (3, 3) appears more than once");
    CHECK_NULL_FAILS(lx_dot_general(RAND(2, 3), RAND(4, 3), 1, AX(1), AX(1), 1, AX(0), AX(0)), LX_ERR_SHAPE,
                     "dot_general: batch dimensions must have equal sizes: lhs axis 0 of (2, 3) has size 2, rhs axis 0 of (4, 3) has size 4");
    CHECK_NULL_FAILS(lx_dot_general(RAND(2), RAND(2), 2, AX(0, 0), AX(0, 0), 0, NULL, NULL), LX_ERR_SHAPE,
                     "dot_general: 2 contracting and 0 batch dimensions do not fit shapes (2,) and (2,)");
    lx_array *ia = lx_autorelease(lx_array_new(LX_I32, 1, SHAPE(2)));
    CHECK_NULL_FAILS(lx_dot_general(RAND(2), ia, 1, AX(0), AX(0), 0, NULL, NULL), LX_ERR_DTYPE,
                     "dot_general: expected float32 operands, got float32(2,) and int32(2,)");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_dot_general(NULL, ia, 1, AX(0), AX(0), 0, NULL, NULL), LX_ERR_FAILED_INPUT,
                     "dot_general: input is NULL");
    lx_array *abs_ = lx_autorelease(lx_array_abstract(LX_F32, 4, SHAPE(2, 5, 3, 4)));
    lx_array *y = lx_dot_general(abs_, RAND(2, 6, 3, 4), 1, AX(3), AX(3), 2, AX(0, 2), AX(0, 2));
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 4, SHAPE(2, 3, 5, 6)));
}

static void test_pools_flat(void) {
    lx_array *w = RAND(16, 16), *x = RAND(4, 16);
    int64_t before = lx_array_live_count();
    for (int i = 0; i < 2000; i++) {
        size_t mark = lx_pool_open();
        lx_array *h = lx_matmul(lx_matmul(x, w), w);
        lx_dot_general(h, w, 1, AX(1), AX(0), 0, NULL, NULL);
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(lx_array_live_count(), before);
}

int main(void) {
    RUN(test_threads);
    RUN(test_gemm);
    RUN(test_gemm_tiles);
    RUN(test_matmul);
    RUN(test_dot_general);
    RUN(test_pools_flat);
    return lx_test_finish();
}
