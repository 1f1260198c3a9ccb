/* conv_general against a direct (non-im2col) convolution written here, and pooling by hand. */
#define _DEFAULT_SOURCE /* mmap MAP_ANONYMOUS, sysconf */
#include "linnx/autodiff.h"
#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/ops.h"
#include "linnx/threads.h"
#include <sys/mman.h>
#include <unistd.h>
#include "../src/ops/conv_internal.h"
#include "test_common.h"

/* Direct convolution in double from the definition: out[n, o, co] = sum over kernel positions and
 * group input channels of x_dilated_padded[n, o*s + k*rd, g*ig + c] * w[k, c, co]. */
static lx_array *ref_conv(const lx_array *x, const lx_array *w, const int64_t *stride, const int64_t *lo,
                          const int64_t *hi, const int64_t *ldil, const int64_t *rdil, int64_t groups) {
    int nsp = x->ndim - 2;
    int64_t N = x->shape[0], C = x->shape[x->ndim - 1], O = w->shape[w->ndim - 1], ig = C / groups, og = O / groups;
    int64_t os[8], outsp = 1, ks = 1;
    os[0] = N, os[nsp + 1] = O;
    for (int i = 0; i < nsp; i++) {
        int64_t in = x->shape[1 + i], dil = (in - 1) * ldil[i] + 1, eff = (w->shape[i] - 1) * rdil[i] + 1;
        int64_t padded = dil + lo[i] + hi[i];
        os[1 + i] = padded < eff ? 0 : (padded - eff) / stride[i] + 1;
        outsp *= os[1 + i];
        ks *= w->shape[i];
    }
    lx_array *y = lx_autorelease(lx_array_new(LX_F32, x->ndim, os));
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < outsp; p++)
            for (int64_t co = 0; co < O; co++) {
                int64_t g = co / og, o[8], rest = p;
                for (int i = nsp - 1; i >= 0; i--) o[i] = rest % os[1 + i], rest /= os[1 + i];
                double acc = 0;
                for (int64_t kk = 0; kk < ks; kk++) {
                    int64_t kr = kk, kidx[8], xi = n;
                    bool inside = true;
                    for (int i = nsp - 1; i >= 0; i--) kidx[i] = kr % w->shape[i], kr /= w->shape[i];
                    for (int i = 0; i < nsp; i++) {
                        int64_t pos = o[i] * stride[i] + kidx[i] * rdil[i] - lo[i];
                        if (pos < 0 || pos % ldil[i] || pos / ldil[i] >= x->shape[1 + i]) inside = false;
                        xi = xi * x->shape[1 + i] + (inside ? pos / ldil[i] : 0);
                    }
                    if (!inside) continue;
                    for (int64_t c = 0; c < ig; c++)
                        acc += (double)lx_f32(x)[xi * C + g * ig + c] * lx_f32(w)[(kk * ig + c) * O + co];
                }
                lx_f32(y)[(n * outsp + p) * O + co] = (float)acc;
            }
    return y;
}

static int64_t last_pads[16];
static void record_pads(const lx_prim_event *ev, void *user) {
    (void)user;
    for (int i = 0; i < ev->nattrs; i++)
        if (strcmp(ev->attrs[i].name, "padding") == 0)
            for (int j = 0; j < ev->attrs[i].value.u.ints.n && j < 16; j++) last_pads[j] = ev->attrs[i].value.u.ints.v[j];
}

/* Run conv_general with params p and compare with the direct convolution using the pads the op
 * reports (checked separately against hand-computed SAME pads). */
static void check_conv(lx_array *x, lx_array *w, lx_conv_params p, int ndim, const int64_t *shape) {
    int h;
    lx_prim_observe(record_pads, NULL, &h);
    lx_array *y = lx_conv_general(x, w, &p);
    lx_prim_unobserve(h);
    CHECK(y != NULL);
    if (!y) return;
    CHECK(lx_shape_eq(y, ndim, shape));
    int nsp = x->ndim - 2;
    int64_t st[8], lo[8], hi[8], ld[8], rd[8];
    for (int i = 0; i < nsp; i++) {
        st[i] = p.strides[i] ? p.strides[i] : 1, ld[i] = p.lhs_dilation[i] ? p.lhs_dilation[i] : 1;
        rd[i] = p.rhs_dilation[i] ? p.rhs_dilation[i] : 1, lo[i] = last_pads[2 * i], hi[i] = last_pads[2 * i + 1];
    }
    lx_array *r = ref_conv(x, w, st, lo, hi, ld, rd, p.feature_group_count ? p.feature_group_count : 1);
    CHECK(lx_array_allclose(y, r, 1e-5, 1e-5));
}

static void test_conv(void) {
    lx_array *x = RAND(2, 7, 6, 3), *w = RAND(3, 3, 3, 4);
    check_conv(x, w, (lx_conv_params){.padding = {.mode = LX_PAD_SAME}}, 4, SHAPE(2, 7, 6, 4));
    CHECK(last_pads[0] == 1 && last_pads[1] == 1 && last_pads[2] == 1 && last_pads[3] == 1);
    check_conv(x, w, (lx_conv_params){0}, 4, SHAPE(2, 5, 4, 4)); /* VALID */
    /* SAME with stride 2: in 7 -> out 4, total pad (4-1)*2+3-7 = 2 -> (1, 1); in 6 -> 3, total 1 -> (0, 1) */
    check_conv(x, w, (lx_conv_params){.strides = {2, 2}, .padding = {.mode = LX_PAD_SAME}}, 4, SHAPE(2, 4, 3, 4));
    CHECK(last_pads[0] == 1 && last_pads[1] == 1 && last_pads[2] == 0 && last_pads[3] == 1);
    check_conv(x, w, (lx_conv_params){.strides = {2, 2}, .padding = {.mode = LX_PAD_SAME_LOWER}}, 4, SHAPE(2, 4, 3, 4));
    CHECK(last_pads[2] == 1 && last_pads[3] == 0);
    /* explicit, asymmetric and negative pads */
    check_conv(x, w, (lx_conv_params){.padding = {LX_PAD_EXPLICIT, {1, 0}, {2, -1}}}, 4, SHAPE(2, 8, 3, 4));
    /* kernel dilation (atrous): effective 5x5 */
    check_conv(x, w, (lx_conv_params){.rhs_dilation = {2, 2}, .padding = {.mode = LX_PAD_SAME}}, 4, SHAPE(2, 7, 6, 4));
    /* input dilation (a transposed convolution's forward): 7 -> 13 */
    check_conv(x, w, (lx_conv_params){.lhs_dilation = {2, 1}, .padding = {LX_PAD_EXPLICIT, {2, 1}, {2, 1}}}, 4,
               SHAPE(2, 15, 6, 4));
    check_conv(x, w, (lx_conv_params){.strides = {3, 1}, .lhs_dilation = {2, 2}, .rhs_dilation = {1, 2}}, 4,
               SHAPE(2, 4, 7, 4));
    /* groups: 4 input channels in 2 groups -> 6 outputs; depthwise: 4 groups, 2 outputs each */
    lx_array *x4 = RAND(2, 5, 5, 4);
    check_conv(x4, RAND(3, 3, 2, 6), (lx_conv_params){.feature_group_count = 2, .padding = {.mode = LX_PAD_SAME}}, 4,
               SHAPE(2, 5, 5, 6));
    check_conv(x4, RAND(3, 3, 1, 8), (lx_conv_params){.feature_group_count = 4, .strides = {2, 1}}, 4, SHAPE(2, 2, 3, 8));
    /* 1-D and 3-D */
    check_conv(RAND(3, 11, 5), RAND(4, 5, 7), (lx_conv_params){.strides = {2}, .padding = {.mode = LX_PAD_SAME}}, 3, SHAPE(3, 6, 7));
    check_conv(RAND(2, 4, 5, 6, 3), RAND(2, 3, 2, 3, 5), (lx_conv_params){.padding = {.mode = LX_PAD_SAME}, .strides = {1, 2, 1}}, 5,
               SHAPE(2, 4, 3, 6, 5));
    /* 1x1 pointwise (one GEMM on x) */
    check_conv(x, RAND(1, 1, 3, 5), (lx_conv_params){0}, 4, SHAPE(2, 7, 6, 5));
    /* the cnn_train shapes, smaller batch: many chunks across workers */
    check_conv(RAND(4, 28, 28, 32), RAND(3, 3, 32, 64), (lx_conv_params){.padding = {.mode = LX_PAD_SAME}}, 4, SHAPE(4, 28, 28, 64));
    lx_array *y = lx_conv_general(x, w, NULL); /* NULL params: VALID, strides 1 */
    CHECK(y && lx_shape_eq(y, 4, SHAPE(2, 5, 4, 4)));

    lx_clear_error();
    CHECK_NULL_FAILS(lx_conv_general(x, RAND(3, 3, 2, 4), NULL), LX_ERR_SHAPE,
                     "conv_general: lhs feature dimension 3 must equal rhs input feature dimension 2 times feature_group_count 1");
    /* the zero field is the default, one group: the message names the count used (it said 0) */
    CHECK_ERROR_HAS("(lhs (2, 7, 6, 3), rhs (3, 3, 2, 4))");
    CHECK_NULL_FAILS(lx_conv_general(x4, RAND(3, 3, 2, 5), &(lx_conv_params){.feature_group_count = 2}), LX_ERR_SHAPE,
                     "rhs output features 5 must be a multiple of it");
    CHECK_NULL_FAILS(lx_conv_general(x, RAND(3, 3, 4), NULL), LX_ERR_SHAPE,
                     "conv_general: lhs (2, 7, 6, 3) (N, spatial..., C) and rhs (3, 3, 4) (spatial..., I, O) need the same rank");
    CHECK_NULL_FAILS(lx_conv_general(x, w, &(lx_conv_params){.strides = {1, -2}}), LX_ERR_INVALID_ARGUMENT,
                     "conv_general: window_strides must be positive, got -2 at spatial axis 1");
    CHECK_NULL_FAILS(lx_conv_general(x, w, &(lx_conv_params){.padding = {.mode = (lx_pad_mode)9}}), LX_ERR_INVALID_ARGUMENT,
                     "conv_general: unknown padding mode 9");
    lx_array *iw = lx_autorelease(lx_array_new(LX_I32, 4, SHAPE(3, 3, 3, 4)));
    CHECK_NULL_FAILS(lx_conv_general(x, iw, NULL), LX_ERR_DTYPE,
                     "conv_general: expected float32 lhs and rhs, got float32(2, 7, 6, 3) and int32(3, 3, 3, 4)");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_conv_general(NULL, w, NULL), LX_ERR_FAILED_INPUT, "conv_general: input is NULL");
    y = lx_conv_general(ABSTRACT(8, 28, 28, 3), w, &(lx_conv_params){.strides = {2, 2}, .padding = {.mode = LX_PAD_SAME}});
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 4, SHAPE(8, 14, 14, 4)));
}

/* The direct path (2-D, ungrouped, kh * kw * C_in <= 32): every channel-tile width and ragged tail,
 * fewer positions than a tile holds, strides with kernel dilation, pads beyond the row (and
 * crops), the tap-count boundary; on the AVX-512 tiles and on the portable loop. */
static void test_conv_direct(void) {
    const char *kernels[] = {NULL, "portable"};
    for (int k = 0; k < 2; k++) {
        CHECK_EQ_INT(lx_sgemm_use_kernel(kernels[k]), LX_OK);
        lx_conv_params same = {.padding = {.mode = LX_PAD_SAME}};
        check_conv(RAND(3, 28, 28, 1), RAND(3, 3, 1, 32), same, 4, SHAPE(3, 28, 28, 32)); /* bench conv1, threaded */
        const int64_t couts[] = {1, 16, 17, 40, 64, 70, 100};
        for (int i = 0; i < 7; i++)
            check_conv(RAND(2, 9, 13, 2), RAND(3, 3, 2, couts[i]), same, 4, SHAPE(2, 9, 13, couts[i]));
        check_conv(RAND(2, 5, 3, 2), RAND(3, 3, 2, 16), same, 4, SHAPE(2, 5, 3, 16)); /* 3 positions */
        check_conv(RAND(2, 9, 11, 2), RAND(2, 3, 2, 5),
                   (lx_conv_params){.strides = {2, 3}, .rhs_dilation = {2, 1}, .padding = {LX_PAD_EXPLICIT, {1, 2}, {-1, 0}}},
                   4, SHAPE(2, 4, 4, 5));
        /* width 2 padded by (5, -3): the window's reach ends before the data starts on some rows */
        check_conv(RAND(1, 4, 2, 1), RAND(1, 1, 1, 3), (lx_conv_params){.padding = {LX_PAD_EXPLICIT, {1, 5}, {0, -3}}}, 4,
                   SHAPE(1, 5, 4, 3));
        check_conv(RAND(2, 6, 7, 2), RAND(4, 4, 2, 8), same, 4, SHAPE(2, 6, 7, 8));  /* 32 taps: direct */
        check_conv(RAND(2, 6, 7, 4), RAND(3, 3, 4, 8), same, 4, SHAPE(2, 6, 7, 8));  /* 36 taps: im2col */
        check_conv(RAND(2, 6, 7, 3), RAND(1, 3, 3, 8), (lx_conv_params){.strides = {1, 2}}, 4, SHAPE(2, 6, 3, 8));
    }
    lx_sgemm_use_kernel(NULL);
}

/* The direct path's row kernel (under the kernel set in force) with y ending right before an
 * unreadable page: ragged output channels (a last vector of 1-7 lanes, stored by plain stores on
 * AVX2) and position counts that split into uneven tiles write exactly their ow x C_out floats,
 * each the sum of its taps (the values are multiples of 1/32 whose sums are exact in float, so
 * every order of summation gives the double sum exactly). */
static void test_conv_direct_ragged_edge(void) {
    long page = sysconf(_SC_PAGESIZE);
    const int64_t couts[] = {1, 3, 5, 7, 9, 10, 13, 15, 17, 23}, ows[] = {1, 5, 7, 13, 25};
    int64_t bad = 0, cases = 0;
    for (int64_t cin = 1; cin <= 3; cin += 2)
        for (int ci = 0; ci < 10; ci++)
            for (int oi = 0; oi < 5; oi++) {
                const int64_t cout = couts[ci], ow = ows[oi], kh = 3, kw = 3, oh = 2, h = oh + kh - 1, w = ow + kw - 1;
                conv2d_direct c = {.n = 1, .h = h, .w = w, .cin = cin, .cout = cout, .kh = kh, .kw = kw, .oh = oh,
                                   .ow = ow, .taps = kh * kw * cin, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
                float *x = malloc(sizeof(float) * (size_t)(h * w * cin)), *wt = malloc(sizeof(float) * (size_t)(c.taps * cout));
                for (int64_t i = 0; i < h * w * cin; i++) x[i] = (float)((i * 37 % 19) - 9) * 0.125f;
                for (int64_t i = 0; i < c.taps * cout; i++) wt[i] = (float)((i * 11 % 13) - 6) * 0.25f;
                size_t bytes = sizeof(float) * (size_t)(oh * ow * cout);
                size_t span = (bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
                char *map = mmap(NULL, span + (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                CHECK(map != MAP_FAILED);
                if (map == MAP_FAILED) return;
                CHECK_EQ_INT(mprotect(map + span, (size_t)page, PROT_NONE), 0);
                float *y = (float *)(map + span - bytes);
                for (int64_t i = 0; i < oh * ow * cout; i++) y[i] = 1234.5f;
                CHECK_EQ_INT(conv2d_direct_forward(&c, x, wt, y), LX_OK);
                for (int64_t r = 0; r < oh; r++)
                    for (int64_t o = 0; o < ow; o++)
                        for (int64_t co = 0; co < cout; co++) {
                            double ref = 0;
                            for (int64_t i = 0; i < kh; i++)
                                for (int64_t j = 0; j < kw; j++)
                                    for (int64_t ch = 0; ch < cin; ch++)
                                        ref += (double)x[((r + i) * w + o + j) * cin + ch] * wt[((i * kw + j) * cin + ch) * cout + co];
                            bad += y[(r * ow + o) * cout + co] != (float)ref;
                        }
                cases++;
                free(x), free(wt);
                munmap(map, span + (size_t)page);
            }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(cases, 2 * 10 * 5);
}

/* Both gradients of sum(conv(x, w) * R) for a random cotangent R against double loops from the
 * definition: dx[n, src(o, t), g*ig + c] += R[n, o, co] w[t, c, co] and dw[t, c, co] +=
 * R[n, o, co] x[n, src(o, t), g*ig + c]. Pads are the ones the op reports (check_conv runs first). */
typedef struct {
    lx_conv_params p;
    lx_array *r;
} grad_job;
static lx_status conv_dot(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n;
    grad_job *j = user;
    *loss = lx_sum(lx_mul(lx_conv_general(xs[0], xs[1], &j->p), j->r), 0, NULL, false);
    return *loss ? LX_OK : lx_last_status();
}
static void check_conv_grad(lx_array *x, lx_array *w, lx_conv_params p, int ndim, const int64_t *shape) {
    check_conv(x, w, p, ndim, shape);
    int nsp = x->ndim - 2;
    int64_t st[8], lo[8], ld[8], rd[8], groups = p.feature_group_count ? p.feature_group_count : 1;
    for (int i = 0; i < nsp; i++) {
        st[i] = p.strides[i] ? p.strides[i] : 1, ld[i] = p.lhs_dilation[i] ? p.lhs_dilation[i] : 1;
        rd[i] = p.rhs_dilation[i] ? p.rhs_dilation[i] : 1, lo[i] = last_pads[2 * i];
    }
    grad_job j = {.p = p, .r = tc_rand(ndim, shape)};
    lx_array *xs[2] = {x, w}, *val = NULL, *g[2] = {NULL, NULL};
    CHECK_EQ_INT(lx_value_and_grad(conv_dot, &j, 2, xs, &val, g), LX_OK);
    if (!g[0] || !g[1]) return;
    lx_autorelease(val), lx_autorelease(g[0]), lx_autorelease(g[1]);
    int64_t N = x->shape[0], C = x->shape[x->ndim - 1], O = w->shape[w->ndim - 1], ig = C / groups, og = O / groups;
    int64_t outsp = 1, ks = 1;
    for (int i = 0; i < nsp; i++) outsp *= shape[1 + i], ks *= w->shape[i];
    /* dxa, dwa: the sums of |term|, the scale a float32 sum's rounding error is measured against */
    double *dx = calloc((size_t)x->size, sizeof(double)), *dw = calloc((size_t)w->size, sizeof(double));
    double *dxa = calloc((size_t)x->size, sizeof(double)), *dwa = calloc((size_t)w->size, sizeof(double));
    for (int64_t n = 0; n < N; n++)
        for (int64_t q = 0; q < outsp; q++)
            for (int64_t co = 0; co < O; co++) {
                int64_t gi = co / og, o[8], rest = q;
                for (int i = nsp - 1; i >= 0; i--) o[i] = rest % shape[1 + i], rest /= shape[1 + i];
                double r = lx_f32(j.r)[(n * outsp + q) * O + co];
                for (int64_t kk = 0; kk < ks; kk++) {
                    int64_t kr = kk, kidx[8], xi = n;
                    bool inside = true;
                    for (int i = nsp - 1; i >= 0; i--) kidx[i] = kr % w->shape[i], kr /= w->shape[i];
                    for (int i = 0; i < nsp; i++) {
                        int64_t pos = o[i] * st[i] + kidx[i] * rd[i] - lo[i];
                        if (pos < 0 || pos % ld[i] || pos / ld[i] >= x->shape[1 + i]) inside = false;
                        xi = xi * x->shape[1 + i] + (inside ? pos / ld[i] : 0);
                    }
                    if (!inside) continue;
                    for (int64_t c = 0; c < ig; c++) {
                        int64_t xa = xi * C + gi * ig + c, wa = (kk * ig + c) * O + co;
                        dx[xa] += r * lx_f32(w)[wa], dxa[xa] += fabs(r * lx_f32(w)[wa]);
                        dw[wa] += r * lx_f32(x)[xa], dwa[wa] += fabs(r * lx_f32(x)[xa]);
                    }
                }
            }
    double worst = 0;
    for (int64_t i = 0; i < x->size; i++) {
        double e = fabs(lx_f32(g[0])[i] - dx[i]) / (1e-6 + dxa[i]);
        worst = lx_worse(worst, e);
    }
    for (int64_t i = 0; i < w->size; i++) {
        double e = fabs(lx_f32(g[1])[i] - dw[i]) / (1e-6 + dwa[i]);
        worst = lx_worse(worst, e);
    }
    CHECK(worst < 2e-6);
    if (worst >= 2e-6) fprintf(stderr, "  conv gradient of %s x %s off by %g of its sum of |terms|\n", "x", "w", worst);
    free(dx), free(dw), free(dxa), free(dwa);
}

/* The gradients under every kernel set (the indirect tiles of conv_igemm.c on AVX2 / AVX-512,
 * im2col + GEMM on the portable set): output channels that fill no tile (13, 5 per group, 20, 7),
 * patch widths ending in half a tile (72), input channels not a multiple of 8 (im2col for dw),
 * positions that end mid-chunk, both dilations, strides, groups, SAME / SAME_LOWER / VALID /
 * explicit (negative) pads, 1-D and 3-D, and kernels too big for one pass (the tap blocks). */
static void test_conv_grad(void) {
    lx_conv_params same = {.padding = {.mode = LX_PAD_SAME}};
    check_conv_grad(RAND(3, 9, 11, 16), RAND(3, 3, 16, 13), same, 4, SHAPE(3, 9, 11, 13));
    check_conv_grad(RAND(2, 7, 6, 8), RAND(3, 3, 8, 20), (lx_conv_params){.strides = {2, 2}, .padding = {.mode = LX_PAD_SAME_LOWER}},
                    4, SHAPE(2, 4, 3, 20));
    check_conv_grad(RAND(2, 8, 9, 16), RAND(3, 2, 8, 10),
                    (lx_conv_params){.feature_group_count = 2, .rhs_dilation = {2, 1}, .padding = {LX_PAD_EXPLICIT, {1, 0}, {2, -1}}},
                    4, SHAPE(2, 7, 7, 10));
    check_conv_grad(RAND(2, 5, 7, 8), RAND(2, 3, 8, 7), (lx_conv_params){.lhs_dilation = {2, 1}, .strides = {1, 2}}, 4,
                    SHAPE(2, 8, 3, 7));
    check_conv_grad(RAND(3, 13, 24), RAND(5, 24, 9), (lx_conv_params){.strides = {3}}, 3, SHAPE(3, 3, 9));
    check_conv_grad(RAND(2, 4, 5, 6, 8), RAND(2, 3, 2, 8, 6), (lx_conv_params){.padding = {.mode = LX_PAD_SAME}, .strides = {1, 2, 1}},
                    5, SHAPE(2, 4, 3, 6, 6));
    check_conv_grad(RAND(2, 7, 6, 3), RAND(3, 3, 3, 4), same, 4, SHAPE(2, 7, 6, 4));
    check_conv_grad(RAND(2, 6, 7, 16), RAND(3, 3, 16, 48), same, 4, SHAPE(2, 6, 7, 48));
    check_conv_grad(RAND(2, 6, 5, 40), RAND(3, 3, 40, 8), same, 4, SHAPE(2, 6, 5, 8));
    check_conv_grad(RAND(4, 28, 28, 32), RAND(3, 3, 32, 64), same, 4, SHAPE(4, 28, 28, 64)); /* cnn_train's conv2 */
    /* the AVX2 kernel gradient's 128-position chunks ending on image boundaries (8 x 16 per image),
     * two groups of 6 output channels (whole 6-channel tiles of dy, none shifted) */
    check_conv_grad(RAND(3, 8, 16, 16), RAND(3, 3, 8, 12), (lx_conv_params){.feature_group_count = 2, .padding = {.mode = LX_PAD_SAME}},
                    4, SHAPE(3, 8, 16, 12));
    /* the AVX-512 tiles' edges: 37 output channels (a 32-column sliver and 5 masked), 24 input
     * channels (three 8-channel dw tiles; dx: a 24-of-32 masked sliver; k = 37: the k loop's
     * remainder), 60 positions (a ragged 8-row tile), 3 groups of them */
    check_conv_grad(RAND(2, 5, 6, 24), RAND(3, 3, 24, 37), same, 4, SHAPE(2, 5, 6, 37));
    check_conv_grad(RAND(1, 4, 5, 72), RAND(3, 3, 24, 111), (lx_conv_params){.feature_group_count = 3, .padding = {.mode = LX_PAD_SAME}},
                    4, SHAPE(1, 4, 5, 111));
}

/* The gradients' bits on 1, 2 and 3 threads (3 on this 2-vCPU machine: oversubscribed, so the
 * workers' timing varies most), several runs each: every run must give the bits of the first run
 * on its thread count, and under the AVX2 / AVX-512 sets (the indirect products) the bits of the
 * first one-thread run (audit10 A10-8: the kernel gradient's per-worker partial sums made dW's
 * last bits depend on which worker took which chunk). The generic set's gradients are OpenBLAS
 * products (im2col path), whose bits may depend on the thread count. cnn_train's conv2 on 16
 * images (the tiled kernel gradient; 98 chunks of positions), a 3-channel first layer (the rows
 * kernel), two groups with ragged output-channel tiles, and a large dW (output-channel blocks). */
static void check_grad_bits(lx_array *x, lx_array *w, lx_conv_params p, int ndim, const int64_t *shape) {
    grad_job j = {.p = p, .r = tc_rand(ndim, shape)};
    lx_array *xs[2] = {x, w};
    float *ref[4][2] = {{NULL}};
    const bool across = lx_isa_current() != LX_ISA_GENERIC;
    const int old = lx_num_threads(), runs[] = {1, 2, 3, 1, 2, 2, 2, 3, 3, 1};
    int bad = 0;
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        const int nt = runs[k], r = across ? 1 : nt;
        CHECK_EQ_INT(lx_set_num_threads(nt), LX_OK);
        lx_array *val = NULL, *g[2] = {NULL, NULL};
        CHECK_EQ_INT(lx_value_and_grad(conv_dot, &j, 2, xs, &val, g), LX_OK);
        if (!g[0] || !g[1]) break;
        for (int i = 0; i < 2; i++) {
            size_t bytes = lx_array_nbytes(g[i]);
            if (!ref[r][i]) {
                ref[r][i] = malloc(bytes);
                memcpy(ref[r][i], lx_f32(g[i]), bytes);
            } else if (memcmp(ref[r][i], lx_f32(g[i]), bytes) != 0) {
                fprintf(stderr, "  conv %s on %d threads (run %zu): other bits than on %d thread(s)\n", i ? "dW" : "dx",
                        nt, k, r);
                bad++;
            }
        }
        lx_release(val), lx_release(g[0]), lx_release(g[1]);
    }
    CHECK_EQ_INT(bad, 0);
    lx_set_num_threads(old);
    for (int t = 0; t < 4; t++) free(ref[t][0]), free(ref[t][1]);
}

static void test_conv_grad_threads(void) {
    lx_conv_params same = {.padding = {.mode = LX_PAD_SAME}};
    check_grad_bits(RAND(16, 28, 28, 32), RAND(3, 3, 32, 64), same, 4, SHAPE(16, 28, 28, 64));
    check_grad_bits(RAND(16, 28, 28, 3), RAND(3, 3, 3, 16), same, 4, SHAPE(16, 28, 28, 16));
    check_grad_bits(RAND(8, 20, 20, 16), RAND(3, 3, 8, 26), (lx_conv_params){.feature_group_count = 2, .padding = {.mode = LX_PAD_SAME}},
                    4, SHAPE(8, 20, 20, 26));
    /* a dW of 576 KiB: three position groups, the output channels split into blocks of 48 (AVX2; 64 on AVX-512) */
    check_grad_bits(RAND(4, 14, 14, 64), RAND(3, 3, 64, 256), same, 4, SHAPE(4, 14, 14, 256));
}

static void test_pool(void) {
    /* 1 x 4 x 4 x 1 holding 0..15 */
    lx_array *x = lx_autorelease(lx_array_empty(LX_F32, 4, SHAPE(1, 4, 4, 1)));
    for (int i = 0; i < 16; i++) lx_f32(x)[i] = (float)i;
    lx_array *y = lx_avg_pool(x, 2, SHAPE(2, 2), SHAPE(2, 2), NULL, true);
    const float avg22[] = {2.5f, 4.5f, 10.5f, 12.5f};
    CHECK(y && lx_shape_eq(y, 4, SHAPE(1, 2, 2, 1)) && memcmp(lx_f32(y), avg22, sizeof avg22) == 0);
    y = lx_max_pool(x, 2, SHAPE(2, 2), SHAPE(2, 2), NULL);
    const float max22[] = {5, 7, 13, 15};
    CHECK(y && memcmp(lx_f32(y), max22, sizeof max22) == 0);
    /* SAME 3x3 stride 1: the corner window covers {0, 1, 4, 5} plus 5 padding cells */
    lx_padding same = {.mode = LX_PAD_SAME};
    y = lx_avg_pool(x, 2, SHAPE(3, 3), NULL, &same, true);
    CHECK(y && lx_shape_eq(y, 4, SHAPE(1, 4, 4, 1)));
    CHECK(y && lx_f32(y)[0] == 10.0f / 9 && lx_f32(y)[5] == 45.0f / 9);
    y = lx_avg_pool(x, 2, SHAPE(3, 3), NULL, &same, false);
    CHECK(y && lx_f32(y)[0] == 2.5f && lx_f32(y)[5] == 5.0f && lx_f32(y)[3] == (2 + 3 + 6 + 7) / 4.0f);
    y = lx_max_pool(x, 2, SHAPE(3, 3), NULL, &same);
    CHECK(y && lx_f32(y)[0] == 5 && lx_f32(y)[15] == 15);
    /* padding never wins a max, even over negative values */
    lx_array *neg = FROM(3, SHAPE(3, 1, 1), -3, -1, -2);
    y = lx_max_pool(neg, 1, SHAPE(2), NULL, &(lx_padding){LX_PAD_EXPLICIT, {1}, {1}}); /* batch 3, length 1 */
    const float neg_max[] = {-3, -3, -1, -1, -2, -2};
    CHECK(y && lx_shape_eq(y, 3, SHAPE(3, 2, 1)) && memcmp(lx_f32(y), neg_max, sizeof neg_max) == 0);
    /* 1-D without a batch axis: (length 5, features 2), window 2 stride 2, two channels kept apart */
    lx_array *s = FROM(2, SHAPE(5, 2), 1, 10, 2, 20, 3, 30, 4, 40, 5, 50);
    y = lx_avg_pool(s, 1, SHAPE(2), SHAPE(2), NULL, true);
    const float s_avg[] = {1.5f, 15, 3.5f, 35};
    CHECK(y && lx_shape_eq(y, 2, SHAPE(2, 2)) && memcmp(lx_f32(y), s_avg, sizeof s_avg) == 0);
    y = lx_max_pool(s, 1, SHAPE(2), SHAPE(2), &(lx_padding){LX_PAD_EXPLICIT, {1}, {0}});
    const float s_max[] = {1, 10, 3, 30, 5, 50};
    CHECK(y && lx_shape_eq(y, 2, SHAPE(3, 2)) && memcmp(lx_f32(y), s_max, sizeof s_max) == 0);
    /* a negative-only row padded: max stays -1 (not 0) */
    lx_array *n1 = FROM(3, SHAPE(1, 2, 1), -4, -1);
    y = lx_max_pool(n1, 1, SHAPE(3), NULL, &same);
    CHECK(y && lx_f32(y)[0] == -1 && lx_f32(y)[1] == -1);
    /* cnn_train's AvgPool(2) on a batch big enough for threads */
    lx_array *big = RAND(8, 28, 28, 16);
    y = lx_avg_pool(big, 2, SHAPE(2, 2), SHAPE(2, 2), NULL, true);
    CHECK(y && lx_shape_eq(y, 4, SHAPE(8, 14, 14, 16)));
    if (y) {
        const float *b = lx_f32(big);
        int64_t idx = ((3 * 14 + 5) * 14 + 7) * 16 + 9; /* n 3, (5, 7), channel 9 */
        float want = (b[((3 * 28 + 10) * 28 + 14) * 16 + 9] + b[((3 * 28 + 10) * 28 + 15) * 16 + 9] +
                      b[((3 * 28 + 11) * 28 + 14) * 16 + 9] + b[((3 * 28 + 11) * 28 + 15) * 16 + 9]) / 4;
        CHECK_NEAR(lx_f32(y)[idx], want, 1e-6);
    }

    lx_clear_error();
    CHECK_NULL_FAILS(lx_avg_pool(x, 4, SHAPE(2, 2, 2, 2), NULL, NULL, true), LX_ERR_SHAPE,
                     "avg_pool: a window over 4 spatial axes needs input (batch, spatial..., features) or (spatial..., features), got shape (1, 4, 4, 1)");
    CHECK_NULL_FAILS(lx_max_pool(x, 2, SHAPE(2, 0), NULL, NULL), LX_ERR_INVALID_ARGUMENT,
                     "max_pool: window 0 and stride 1 at spatial axis 1 must be positive");
    CHECK_NULL_FAILS(lx_max_pool(x, 2, SHAPE(2, 2), NULL, &(lx_padding){LX_PAD_EXPLICIT, {-1, 0}, {0, 0}}), LX_ERR_UNSUPPORTED,
                     "max_pool: negative padding (-1, 0) at spatial axis 0 is not supported");
    lx_array *ix = lx_autorelease(lx_array_new(LX_I32, 3, SHAPE(1, 2, 1)));
    CHECK_NULL_FAILS(lx_avg_pool(ix, 1, SHAPE(2), NULL, NULL, true), LX_ERR_DTYPE,
                     "avg_pool: expected a float32 input, got int32(1, 2, 1)");
    y = lx_max_pool(ABSTRACT(2, 9, 9, 3), 2, SHAPE(3, 3), SHAPE(2, 2), &same);
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 4, SHAPE(2, 5, 5, 3)));
    int h;
    lx_prim_observe(tc_record, NULL, &h);
    lx_avg_pool(x, 2, SHAPE(2, 2), NULL, NULL, true);
    CHECK_STR(tc_last_op, "avg_pool");
    CHECK_EQ_INT(tc_last_nattrs, 4);
    lx_prim_unobserve(h);
}

/* Pool gradients on a batch big enough for the image-parallel backward: avg 2x2 / 2 (cnn_train's)
 * gives every cell R / 4 of its window's output; max 3x3 / 2 SAME gives each output's R to the
 * first maximal cell of its window (row-major window order), summed where windows overlap. */
typedef struct {
    bool is_max;
    lx_array *r;
} pool_job;
static lx_status pool_dot(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n;
    pool_job *j = user;
    lx_padding same = {.mode = LX_PAD_SAME};
    lx_array *y = j->is_max ? lx_max_pool(xs[0], 2, SHAPE(3, 3), SHAPE(2, 2), &same)
                            : lx_avg_pool(xs[0], 2, SHAPE(2, 2), SHAPE(2, 2), NULL, true);
    *loss = lx_sum(lx_mul(y, j->r), 0, NULL, false);
    return *loss ? LX_OK : lx_last_status();
}
static void test_pool_grad(void) {
    const int64_t N = 8, H = 28, C = 16, O = 14;
    lx_array *x = RAND(8, 28, 28, 16);
    for (int is_max = 0; is_max < 2; is_max++) {
        pool_job j = {.is_max = is_max, .r = RAND(8, 14, 14, 16)};
        lx_array *val = NULL, *g = NULL;
        CHECK_EQ_INT(lx_value_and_grad(pool_dot, &j, 1, &x, &val, &g), LX_OK);
        if (!g) return;
        lx_autorelease(val), lx_autorelease(g);
        double *ref = calloc((size_t)x->size, sizeof(double));
        const float *X = lx_f32(x), *R = lx_f32(j.r);
        for (int64_t n = 0; n < N; n++)
            for (int64_t oi = 0; oi < O; oi++)
                for (int64_t oj = 0; oj < O; oj++)
                    for (int64_t c = 0; c < C; c++) {
                        double r = R[((n * O + oi) * O + oj) * C + c];
                        if (!is_max) {
                            for (int64_t a = 0; a < 2; a++)
                                for (int64_t b = 0; b < 2; b++) ref[((n * H + 2 * oi + a) * H + 2 * oj + b) * C + c] += r / 4;
                            continue;
                        }
                        int64_t at = -1; /* SAME, 28 -> 14 with window 3 stride 2: pads (0, 1) */
                        for (int64_t a = 0; a < 3; a++)
                            for (int64_t b = 0; b < 3; b++) {
                                int64_t i = 2 * oi + a, jj = 2 * oj + b, k = ((n * H + i) * H + jj) * C + c;
                                if (i < H && jj < H && (at < 0 || X[k] > X[at])) at = k;
                            }
                        ref[at] += r;
                    }
        double worst = 0;
        for (int64_t i = 0; i < x->size; i++) worst = lx_worse(worst, fabs(lx_f32(g)[i] - ref[i]));
        CHECK(worst < 1e-6);
        free(ref);
    }
}

static void test_pools_flat(void) {
    lx_array *x = RAND(2, 6, 6, 3), *w = RAND(3, 3, 3, 4);
    int64_t before = lx_array_live_count();
    for (int i = 0; i < 300; i++) {
        size_t mark = lx_pool_open();
        lx_max_pool(lx_conv_general(x, w, &(lx_conv_params){.padding = {.mode = LX_PAD_SAME}}), 2, SHAPE(2, 2), SHAPE(2, 2), NULL);
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(lx_array_live_count(), before);
}

int main(void) {
    RUN(test_conv);
    RUN(test_conv_direct);
    RUN(test_conv_direct_ragged_edge);
    RUN(test_conv_grad);
    RUN(test_conv_grad_threads);
    RUN(test_pool);
    RUN(test_pool_grad);
    RUN(test_pools_flat);
    return lx_test_finish();
}
