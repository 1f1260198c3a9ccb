/* softmax, log_softmax, layer_norm, rms_norm, cross-entropy, attention, causal masks, dropout's
 * scaling: each against double-precision loops or hand-worked numbers. */
#include <float.h>

#include <string.h>

#include "../src/ops/kernels.h"
#include "linnx/cpu.h"
#include "linnx/nn.h"
#include "test_common.h"

/* softmax over axis of (outer, n, inner) in double */
static void ref_softmax(const lx_array *x, int axis, bool take_log, double *out) {
    int64_t n = x->shape[axis], inner = 1;
    for (int i = axis + 1; i < x->ndim; i++) inner *= x->shape[i];
    int64_t outer = x->size / (n * inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const float *p = lx_f32(x) + o * n * inner + j;
            double mx = -INFINITY, s = 0;
            for (int64_t i = 0; i < n; i++) mx = p[i * inner] > mx ? p[i * inner] : mx;
            for (int64_t i = 0; i < n; i++) s += exp(p[i * inner] - mx);
            for (int64_t i = 0; i < n; i++)
                out[o * n * inner + i * inner + j] = take_log ? p[i * inner] - mx - log(s) : exp(p[i * inner] - mx) / s;
        }
}

static bool close_to(const lx_array *y, const double *ref, double rtol, double atol) {
    if (!y || lx_is_abstract(y)) return false;
    for (int64_t i = 0; i < y->size; i++) {
        double a = lx_f32(y)[i], b = ref[i];
        if (!(fabs(a - b) <= atol + rtol * fabs(b))) {
            fprintf(stderr, "  element %lld: %.9g vs %.9g\n", (long long)i, a, b);
            return false;
        }
    }
    return true;
}

static void test_softmax(void) {
    double ref[4096];
    lx_array *x = RAND(3, 5, 7);
    for (int i = 0; i < x->size; i++) lx_f32(x)[i] *= 20; /* wide range: stability matters */
    for (int ax = 0; ax < 3; ax++) {
        ref_softmax(x, ax, false, ref);
        CHECK(close_to(lx_softmax(x, ax), ref, 2e-6, 1e-30));
        ref_softmax(x, ax, true, ref);
        CHECK(close_to(lx_log_softmax(x, ax - 3), ref, 2e-6, 2e-6));
    }
    lx_array *big = FROM(1, SHAPE(3), 1000.0f, 1001.0f, -INFINITY);
    lx_array *y = lx_softmax(big, -1);
    CHECK(y && fabsf(lx_f32(y)[0] - 0.26894142f) < 1e-6f && fabsf(lx_f32(y)[1] - 0.73105858f) < 1e-6f && lx_f32(y)[2] == 0);
    y = lx_log_softmax(big, 0);
    CHECK(y && fabsf(lx_f32(y)[1] - -0.31326169f) < 1e-6f && lx_f32(y)[2] == -INFINITY);
    lx_array *wide = RAND(128, 300); /* parallel rows */
    double *r2 = malloc(sizeof(double) * 128 * 300);
    ref_softmax(wide, 1, false, r2);
    CHECK(close_to(lx_softmax(wide, 1), r2, 2e-6, 1e-30));
    free(r2);

    lx_clear_error();
    CHECK_NULL_FAILS(lx_softmax(x, 3), LX_ERR_SHAPE, "softmax: axis 3 is out of range for shape (3, 5, 7)");
    lx_array *ia = lx_autorelease(lx_array_new(LX_I32, 1, SHAPE(2)));
    CHECK_NULL_FAILS(lx_log_softmax(ia, 0), LX_ERR_DTYPE, "log_softmax: expected a float32 input, got int32(2,)");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_softmax(NULL, 0), LX_ERR_FAILED_INPUT, "softmax: input is NULL");
    y = lx_softmax(ABSTRACT(2, 9), -1);
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 2, SHAPE(2, 9)));
}

/* Contiguous rows (the kernel set's row kernel: a vector exp with FMA on AVX2 and AVX-512, not
 * the scalar nn_expf) against a double-precision reference of the same float differences d = x - max:
 * softmax within SOFTMAX_ULP ulp of exp(d) / sum(exp(d)) (a subnormal result counted in units of
 * the smallest subnormal), log_softmax within LOGSM_ULP units of 2^-23 max(1, |ref|) of
 * d - log(sum) (the log of a sum near 1 is an absolute error, as in JAX's formula). Short rows
 * (2 to 17: the sum's own rounding stays below ~1 ulp) over exp's whole range: d down to -200
 * (flush to 0 below ~-104, subnormal results; the generic set's scalar-style exp may flush those
 * to 0 instead, as XLA on CPU does), -inf (exactly 0 / -inf), NaN (the whole row NaN), ragged
 * tails. Measured: softmax 3.17 ulp (AVX2, table exp) / 3.31 (AVX-512) / 3.68 (generic), log_softmax 1.13 /
 * 1.20 / 1.69 units (LINNX_TEST_VERBOSE=1 prints them). */
#define SOFTMAX_ULP 4.0
#define LOGSM_ULP 2.5
static double ulp_of(double v) {
    v = fabs(v);
    if (v < FLT_MIN) return 0x1p-149;
    int e;
    frexp(v, &e);
    return ldexp(1.0, e - 24);
}
static void test_softmax_rows(void) {
    /* 4099: the AVX2 set's long-row path (chunks of 256 checked once each for values below the
     * exp's range): a -inf in the middle, a NaN at the end or a third of the way in */
    const int ns0[] = {2, 3, 7, 8, 9, 16, 17, 4099};
    double worst[2] = {0, 0};
    for (int ni = 0; ni < 8; ni++) {
        const int n = ns0[ni], R = n > 1000 ? 40 : 800;
        lx_array *x = lx_autorelease(lx_array_empty(LX_F32, 2, SHAPE(R, n)));
        for (int r = 0; r < R; r++)
            for (int i = 0; i < n; i++) {
                float v = (r % 3 == 0 ? 200.0f : 60.0f) * tc_frand();
                if (i == n / 2 && r % 7 == 0) v = -INFINITY;
                if (i == n - 1 && r % 11 == 0) v = NAN;
                if (i == n / 3 && r % 13 == 1) v = NAN;
                lx_f32(x)[r * n + i] = v;
            }
        lx_array *y[2] = {lx_softmax(x, 1), lx_log_softmax(x, 1)};
        CHECK(y[0] && y[1]);
        if (!y[0] || !y[1]) return;
        for (int r = 0; r < R; r++) {
            const float *xr = lx_f32(x) + r * n;
            bool has_nan = false;
            float mx = -INFINITY;
            for (int i = 0; i < n; i++) has_nan |= isnan(xr[i]), mx = xr[i] > mx ? xr[i] : mx;
            double s = 0;
            for (int i = 0; i < n; i++) s += exp((double)(xr[i] - mx));
            for (int t = 0; t < 2; t++)
                for (int i = 0; i < n; i++) {
                    float got = lx_f32(y[t])[r * n + i], d = xr[i] - mx;
                    if (has_nan) {
                        CHECK(isnan(got));
                        continue;
                    }
                    if (d == -INFINITY) {
                        CHECK(got == (t ? -INFINITY : 0.0f));
                        continue;
                    }
                    double ref = t ? (double)d - log(s) : exp((double)d) / s;
                    if (!t && ref < FLT_MIN && got == 0.0f) continue; /* a set may flush subnormals */
                    double err = fabs(got - ref) / (t ? 0x1p-23 * fmax(1.0, fabs(ref)) : ulp_of(ref));
                    if (n > 1000) { /* the float sum's own rounding over 4099 terms: below */
                        CHECK(t ? fabs(got - ref) <= 2e-6 * fmax(1.0, fabs(ref))
                                : fabs(got - ref) <= 1e-5 * ref + 2 * ulp_of(ref)); /* + subnormal results */
                        continue;
                    }
                    if (!(err <= worst[t])) worst[t] = err; /* a NaN got is the worst */
                }
        }
    }
    if (getenv("LINNX_TEST_VERBOSE") || !(worst[0] <= SOFTMAX_ULP && worst[1] <= LOGSM_ULP))
        fprintf(stderr, "softmax rows: %.3f ulp, log_softmax %.3f units\n", worst[0], worst[1]);
    CHECK(worst[0] <= SOFTMAX_ULP);
    CHECK(worst[1] <= LOGSM_ULP);
    /* Long rows with ragged tails against the reference of the unrounded inputs. */
    const int ns[] = {1, 15, 16, 17, 33, 4101};
    double *ref = malloc(sizeof(double) * 3 * 4101);
    for (int i = 0; i < 6; i++) {
        lx_array *w = RAND(3, ns[i]);
        for (int k = 0; k < w->size; k++) lx_f32(w)[k] *= 8; /* x - max >= -16: float rounding of it stays < 2e-6 */
        /* The float sum of a long row adds its own rounding on top of exp's: on AVX2 (8 lanes,
         * 513 additions per lane at n = 4101) it reaches ~4e-6 relative (random-walk bound
         * sqrt(513) * 2^-24 per lane, plus exp's own). */
        double rtol = ns[i] > 1000 ? 1e-5 : 2e-6;
        ref_softmax(w, 1, false, ref);
        CHECK(close_to(lx_softmax(w, -1), ref, rtol, 1e-30));
        ref_softmax(w, 1, true, ref);
        CHECK(close_to(lx_log_softmax(w, -1), ref, rtol, 2e-6));
    }
    free(ref);
}

/* Gradients of softmax, log_softmax and the integer cross-entropy through lx_value_and_grad: the
 * last axis runs the kernel set's backward rows (test_nn runs under every LINNX_ISA), another axis
 * the composite formula; against d/dx of sum(w * f(x)) written out in double. Rows of 37 (ragged
 * tails) and 1030 (the long-row path with prefetching). */
typedef struct { int op, axis; lx_array *w, *labels; } sm_loss_ctx;
static lx_status sm_loss(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n;
    sm_loss_ctx *c = user;
    lx_array *f = c->op == 0 ? lx_softmax(xs[0], c->axis) : c->op == 1 ? lx_log_softmax(xs[0], c->axis)
                                                                      : lx_softmax_cross_entropy_int(xs[0], c->labels);
    *loss = lx_sum(lx_mul(f, c->w), 0, NULL, false);
    return *loss ? LX_OK : lx_last_status();
}
static void test_softmax_grads(void) {
    const int64_t shapes[][3] = {{3, 5, 37}, {2, 3, 1030}};
    for (int si = 0; si < 2; si++) {
        const int64_t *sh = shapes[si];
        lx_array *x = RAND(sh[0], sh[1], sh[2]);
        for (int64_t i = 0; i < x->size; i++) lx_f32(x)[i] *= 6;
        lx_array *w = RAND(sh[0], sh[1], sh[2]), *wr = RAND(sh[0], sh[1]);
        lx_array *labels = lx_autorelease(lx_array_empty(LX_I32, 2, sh));
        for (int64_t r = 0; r < labels->size; r++) lx_i32(labels)[r] = (int32_t)((r * 13) % sh[2]);
        double *p = malloc(sizeof(double) * (size_t)x->size * 2), *ref = p + x->size;
        for (int op = 0; op < 3; op++)
            for (int axis = op == 2 ? 2 : 1; axis <= 2; axis++) {
                sm_loss_ctx c = {op, axis, op == 2 ? wr : w, labels};
                lx_array *val = NULL, *g = NULL;
                CHECK_EQ_INT(lx_value_and_grad(sm_loss, &c, 1, &x, &val, &g), LX_OK);
                ref_softmax(x, axis, false, p);
                /* along the axis: stride `inner`, rows (outer, inner) */
                int64_t n = sh[axis], inner = axis == 2 ? 1 : sh[2], outer = x->size / (n * inner);
                double scale = 0;
                for (int64_t o = 0; o < outer; o++)
                    for (int64_t j = 0; j < inner; j++) {
                        int64_t b = o * n * inner + j;
                        double s = 0;
                        for (int64_t i = 0; i < n; i++) {
                            double wi = op == 2 ? 0 : lx_f32(w)[b + i * inner];
                            s += op == 0 ? wi * p[b + i * inner] : wi;
                        }
                        for (int64_t i = 0; i < n; i++) {
                            int64_t k = b + i * inner;
                            double pk = p[k], r;
                            if (op == 0) r = pk * (lx_f32(w)[k] - s);
                            else if (op == 1) r = lx_f32(w)[k] - pk * s;
                            else r = (pk - (i == lx_i32(labels)[o])) * lx_f32(wr)[o];
                            ref[k] = r;
                            scale = fmax(scale, fabs(r));
                        }
                    }
                bool ok = g && lx_same_shape(g, x);
                double worst = 0;
                for (int64_t k = 0; ok && k < x->size; k++) worst = fmax(worst, fabs(lx_f32(g)[k] - ref[k]));
                LX_TEST_REPORT_(ok && worst <= 2e-6 * fmax(scale, 1.0), "%s grad, shape (%lld, %lld, %lld) axis %d: max error %.3g",
                                op == 0 ? "softmax" : op == 1 ? "log_softmax" : "cross_entropy", (long long)sh[0],
                                (long long)sh[1], (long long)sh[2], axis, worst);
                lx_release(val), lx_release(g);
            }
        free(p);
    }
}

/* Flax's LayerNorm/RMSNorm math in double: rows of d, params repeating every f. */
static void ref_norm(const float *x, int64_t rows, int64_t d, const float *scale, const float *bias, int64_t f,
                     double eps, bool center, double *out) {
    for (int64_t r = 0; r < rows; r++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < d; i++) s += x[r * d + i], s2 += (double)x[r * d + i] * x[r * d + i];
        double mean = center ? s / d : 0, var = s2 / d - mean * mean;
        if (var < 0) var = 0;
        for (int64_t i = 0; i < d; i++)
            out[r * d + i] = (x[r * d + i] - mean) / sqrt(var + eps) * (scale ? scale[i % f] : 1) + (bias ? bias[i % f] : 0);
    }
}

static void test_norms(void) {
    double ref[1024];
    lx_array *x = RAND(3, 8), *sc = RAND(8), *bi = RAND(8);
    for (int i = 0; i < x->size; i++) lx_f32(x)[i] = lx_f32(x)[i] * 3 + 5; /* an offset mean */
    ref_norm(lx_f32(x), 3, 8, lx_f32(sc), lx_f32(bi), 8, 1e-6, true, ref);
    CHECK(close_to(lx_layer_norm(x, sc, bi, 1e-6f, 0, NULL), ref, 1e-5, 1e-5));
    ref_norm(lx_f32(x), 3, 8, NULL, NULL, 8, 1e-6, true, ref);
    CHECK(close_to(lx_layer_norm(x, NULL, NULL, 1e-6f, 1, (const int64_t[]){-1}), ref, 1e-5, 1e-5));
    lx_array *x3 = RAND(2, 3, 4), *s4 = RAND(4), *s34 = RAND(3, 4), *b34 = RAND(3, 4);
    ref_norm(lx_f32(x3), 2, 12, lx_f32(s4), NULL, 4, 1e-5, true, ref);
    CHECK(close_to(lx_layer_norm(x3, s4, NULL, 1e-5f, 2, (const int64_t[]){-1, -2}), ref, 1e-5, 1e-5));
    CHECK(close_to(lx_layer_norm(x3, s4, NULL, 1e-5f, LX_AXES(-1, -2)), ref, 1e-5, 1e-5)); /* int64_t axes */
    ref_norm(lx_f32(x3), 2, 12, lx_f32(s34), lx_f32(b34), 12, 1e-5, true, ref);
    CHECK(close_to(lx_layer_norm(x3, s34, b34, 1e-5f, 2, (const int64_t[]){1, 2}), ref, 1e-5, 1e-5));
    /* a constant row: var is 0 (clipped, never negative), y = 0 * rsqrt(eps) */
    lx_array *cst = lx_autorelease(lx_array_full_f32(2, SHAPE(2, 5), 3.3f));
    lx_array *y = lx_layer_norm(cst, NULL, NULL, 1e-6f, 0, NULL);
    CHECK(y && !isnan(lx_f32(y)[0]) && fabsf(lx_f32(y)[0]) < 1e-2f);
    /* Non-finite rows (Flax: var = jnp.maximum(0, NaN) is NaN, and +inf gives inf - inf = NaN):
     * a NaN anywhere in a row makes the whole row NaN for both norms; a +inf makes a LayerNorm row
     * NaN everywhere. The other rows are untouched. */
    {
        lx_array *nf = RAND(3, 4);
        lx_f32(nf)[1] = NAN;       /* row 0 */
        lx_f32(nf)[6] = INFINITY;  /* row 1 */
        lx_array *ln = lx_layer_norm(nf, NULL, NULL, 1e-6f, 0, NULL), *rn = lx_rms_norm(nf, NULL, 1e-6f);
        CHECK(ln && rn);
        if (ln && rn) {
            bool ln_nan = true, rn_nan = true, finite2 = true;
            for (int i = 0; i < 8; i++) ln_nan = ln_nan && isnan(lx_f32(ln)[i]);
            for (int i = 0; i < 4; i++) rn_nan = rn_nan && isnan(lx_f32(rn)[i]);
            for (int i = 8; i < 12; i++) finite2 = finite2 && isfinite(lx_f32(ln)[i]) && isfinite(lx_f32(rn)[i]);
            CHECK(ln_nan);
            CHECK(rn_nan);
            CHECK(finite2);
            /* RMSNorm of a row with +inf: rsqrt(inf) = 0, so finite entries give 0, the inf NaN */
            CHECK(lx_f32(rn)[4] == 0.0f && isnan(lx_f32(rn)[6]));
        }
    }
    ref_norm(lx_f32(x), 3, 8, lx_f32(sc), NULL, 8, 1e-6, false, ref);
    CHECK(close_to(lx_rms_norm(x, sc, 1e-6f), ref, 1e-5, 1e-5));
    ref_norm(lx_f32(x), 3, 8, NULL, NULL, 8, 1e-6, false, ref);
    CHECK(close_to(lx_rms_norm(x, NULL, 1e-6f), ref, 1e-5, 1e-5));
    lx_array *wide = RAND(64, 1024); /* parallel rows */
    double *r2 = malloc(sizeof(double) * 64 * 1024);
    ref_norm(lx_f32(wide), 64, 1024, NULL, NULL, 1024, 1e-6, true, r2);
    CHECK(close_to(lx_layer_norm(wide, NULL, NULL, 1e-6f, 0, NULL), r2, 1e-5, 1e-5));
    free(r2);

    int h;
    lx_prim_observe(tc_record, NULL, &h);
    lx_layer_norm(x, NULL, bi, 1e-6f, 0, NULL);
    CHECK_STR(tc_last_op, "layer_norm");
    CHECK_EQ_INT(tc_last_ninputs, 3);
    lx_prim_unobserve(h);

    lx_clear_error();
    CHECK_NULL_FAILS(lx_layer_norm(x3, NULL, NULL, 1e-6f, 1, (const int64_t[]){1}), LX_ERR_UNSUPPORTED,
                     "layer_norm: reduction axes must be the trailing 1 axes of shape (2, 3, 4)");
    CHECK_NULL_FAILS(lx_layer_norm(x3, NULL, NULL, 1e-6f, 2, (const int64_t[]){2, -1}), LX_ERR_SHAPE,
                     "layer_norm: reduction axis -1 is out of range or repeated for shape (2, 3, 4)");
    /* axes are int64_t end to end: 2^32 + 2 is out of range, not axis 2 after truncation */
    CHECK_NULL_FAILS(lx_layer_norm(x3, NULL, NULL, 1e-6f, 1, (const int64_t[]){(1LL << 32) + 2}), LX_ERR_SHAPE,
                     "layer_norm: reduction axis 4294967298 is out of range or repeated for shape (2, 3, 4)");
    CHECK_NULL_FAILS(lx_layer_norm(x3, RAND(3), NULL, 1e-6f, 0, NULL), LX_ERR_SHAPE,
                     "layer_norm: scale of float32(3,) does not match the trailing normalised axes of input shape (2, 3, 4)");
    CHECK_NULL_FAILS(lx_layer_norm(x3, s34, s4, 1e-6f, 2, (const int64_t[]){1, 2}), LX_ERR_SHAPE,
                     "layer_norm: scale (3, 4) and bias (4,) differ in shape");
    CHECK_NULL_FAILS(lx_rms_norm(x, RAND(3), 1e-6f), LX_ERR_SHAPE,
                     "rms_norm: scale of float32(3,) does not match the trailing normalised axes of input shape (3, 8)");
    lx_array *sca = lx_autorelease(lx_array_scalar_f32(1));
    CHECK_NULL_FAILS(lx_rms_norm(sca, NULL, 1e-6f), LX_ERR_SHAPE, "rms_norm: input of shape () has no feature axis");
    y = lx_layer_norm(ABSTRACT(4, 8), sc, bi, 1e-6f, 0, NULL);
    CHECK(y && lx_is_abstract(y));
    y = lx_rms_norm(x, ABSTRACT(8), 1e-6f);
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 2, SHAPE(3, 8)));
}

/* The streaming norm row (kernels.h's norm_row_stream, where a set has one) against the same set's
 * norm_row, bit for bit: every row length from 1 to 40 and some long ones, the output (and input)
 * starting at each float offset of a 32-byte line, scale / bias absent or repeating every f < d
 * values, both norms, and the same (mean, rstd). */
static void test_norm_row_stream(void) {
    const lx_isa sets[3] = {LX_ISA_GENERIC, LX_ISA_AVX2, LX_ISA_AVX512};
    enum { MAXD = 4096 + 37 };
    float *x = malloc(sizeof(float) * (MAXD + 16)), *ya = malloc(sizeof(float) * (MAXD + 16));
    float *yb = malloc(sizeof(float) * (MAXD + 16)), *prm = malloc(sizeof(float) * 2 * MAXD);
    CHECK(x && ya && yb && prm);
    if (!x || !ya || !yb || !prm) goto done;
    for (int i = 0; i < MAXD + 16; i++) x[i] = tc_frand() * 4 + 1.5f;
    for (int i = 0; i < 2 * MAXD; i++) prm[i] = tc_frand();
    int64_t lens[48], nl = 0;
    for (int d = 1; d <= 40; d++) lens[nl++] = d;
    lens[nl++] = 100, lens[nl++] = 1023, lens[nl++] = 1024, lens[nl++] = 4096, lens[nl++] = MAXD;
    for (int s = 0; s < 3; s++) {
        const lx_kernels *k = lx_kernels_for(sets[s]);
        if (!lx_isa_supported(sets[s]) || !k || !k->norm_row_stream) continue;
        int bad = 0, runs = 0;
        for (int64_t li = 0; li < nl; li++)
            for (int off = 0; off < 8; off++)
                for (int form = 0; form < 6; form++) {
                    int64_t d = lens[li], f = form >= 4 && d % 4 == 0 ? 4 : form >= 4 && d % 3 == 0 ? 3 : d;
                    const float *sc = form & 1 ? prm : NULL, *bi = form & 2 ? prm + MAXD : NULL;
                    if (form >= 4) sc = prm + 1, bi = form == 5 ? prm + 7 : NULL; /* f < d where d allows */
                    bool center = off % 2 == 0 || form == 0;
                    float sa[2] = {0}, sb[2] = {-1, -1};
                    const float *xr = x + (off * 3) % 8;
                    memset(ya, 0xff, sizeof(float) * (MAXD + 16)), memset(yb, 0xff, sizeof(float) * (MAXD + 16));
                    k->norm_row(xr, ya + off, d, sc, bi, f, 1e-5f, center, sa);
                    k->norm_row_stream(xr, yb + off, d, sc, bi, f, 1e-5f, center, sb);
                    runs++;
                    /* the whole buffers: the same values, nothing written outside [off, off + d) */
                    if (memcmp(ya, yb, sizeof(float) * (MAXD + 16)) != 0 || memcmp(sa, sb, sizeof sa) != 0) {
                        if (bad++ == 0)
                            fprintf(stderr, "  set %d: d %lld offset %d form %d differs\n", s, (long long)d, off, form);
                    }
                }
        LX_TEST_REPORT_(bad == 0, "set %d: norm_row_stream == norm_row bit for bit (%d of %d runs differ)", s, bad, runs);
    }
done:
    free(x), free(ya), free(yb), free(prm);
}

/* layer_norm / rms_norm just over and just under the output size that takes the streaming stores
 * (nn.c: the L3 size the CPU reports, 32 MiB where unknown), rows of an odd length (1027: row
 * starts at every 4-byte offset of a line), on the threads in force: every row of the big output
 * equals, bit for bit, the same row from the smaller call (which takes plain stores), and a few
 * rows against the double-precision reference. */
static void test_norm_streaming_sizes(void) {
    int64_t l3 = lx_cpu_info_get()->l3_bytes, min_bytes = l3 > 0 ? l3 : (int64_t)32 << 20;
    if (min_bytes > (int64_t)64 << 20) return; /* a cache too large to fill in a test */
    const int64_t d = 1027, rows = (min_bytes / (int64_t)sizeof(float) + d - 1) / d; /* rows * d * 4 >= min */
    lx_array *x = RAND(rows, d), *sc = RAND(d), *bi = RAND(d);
    for (int64_t i = 0; i < x->size; i++) lx_f32(x)[i] = lx_f32(x)[i] * 2 - 0.75f;
    lx_array *xs = lx_autorelease(lx_array_empty(LX_F32, 2, SHAPE(rows - 1, d)));
    memcpy(lx_f32(xs), lx_f32(x), sizeof(float) * (size_t)((rows - 1) * d));
    for (int norm = 0; norm < 2; norm++) {
        lx_array *big = norm ? lx_rms_norm(x, sc, 1e-6f) : lx_layer_norm(x, sc, bi, 1e-6f, 0, NULL);
        lx_array *small = norm ? lx_rms_norm(xs, sc, 1e-6f) : lx_layer_norm(xs, sc, bi, 1e-6f, 0, NULL);
        CHECK(big && small);
        if (!big || !small) continue;
        CHECK(memcmp(lx_f32(big), lx_f32(small), sizeof(float) * (size_t)((rows - 1) * d)) == 0);
        double ref[3 * 1027];
        const int64_t picks[3] = {0, rows / 2, rows - 1};
        for (int p = 0; p < 3; p++) {
            ref_norm(lx_f32(x) + picks[p] * d, 1, d, lx_f32(sc), norm ? NULL : lx_f32(bi), d, 1e-6, !norm, ref + p * d);
            bool ok = true;
            for (int64_t i = 0; i < d; i++) {
                double a = lx_f32(big)[picks[p] * d + i], b = ref[p * d + i];
                ok = ok && fabs(a - b) <= 1e-5 + 1e-5 * fabs(b);
            }
            LX_TEST_REPORT_(ok, "%s of %lld x %lld, row %lld against the double reference", norm ? "rms_norm" : "layer_norm",
                            (long long)rows, (long long)d, (long long)picks[p]);
        }
    }
}

static void test_cross_entropy(void) {
    lx_array *logits = FROM(2, SHAPE(2, 3), 1, 2, 3, 0, 0, 0);
    lx_array *labels = lx_autorelease(lx_array_from_data(LX_I32, 1, SHAPE(2), (const int32_t[]){2, 0}));
    lx_array *l = lx_softmax_cross_entropy_int(logits, labels);
    /* log(e + e^2 + e^3) - 3 = 0.40760596; log 3 = 1.09861229 */
    CHECK(l && lx_shape_eq(l, 1, SHAPE(2)));
    CHECK_NEAR(lx_f32(l)[0], 0.40760596, 1e-6);
    CHECK_NEAR(lx_f32(l)[1], 1.09861229, 1e-6);
    lx_array *lab3 = lx_autorelease(lx_array_from_data(LX_I32, 1, SHAPE(2), (const int32_t[]){0, 3}));
    lx_clear_error();
    CHECK_NULL_FAILS(lx_softmax_cross_entropy_int(logits, lab3), LX_ERR_INVALID_ARGUMENT,
                     "softmax_cross_entropy_int: label 3 at flat index 1 is outside [0, 3) for logits of shape (2, 3)");
    CHECK_NULL_FAILS(lx_softmax_cross_entropy_int(logits, lx_autorelease(lx_array_new(LX_I32, 1, SHAPE(3)))), LX_ERR_SHAPE,
                     "softmax_cross_entropy_int: labels of shape (3,) do not match logits of shape (2, 3)");
    CHECK_NULL_FAILS(lx_softmax_cross_entropy_int(logits, RAND(2)), LX_ERR_DTYPE,
                     "expected float32 logits and int32 labels, got float32(2, 3) and float32(2,)");
    l = lx_softmax_cross_entropy_int(ABSTRACT(5, 4, 3), lx_autorelease(lx_array_abstract(LX_I32, 2, SHAPE(5, 4))));
    CHECK(l && lx_is_abstract(l) && lx_shape_eq(l, 2, SHAPE(5, 4)));
}

/* softmax(q k^T * scale + bias, masked) v written out in double; q (B,T,H,D), k (B,S,G,D), v (B,S,G,E).
 * bias (B|1, H|1, T, S) given as full-shape accessor arrays of (B,H,T,S) (NULL: none). */
static void ref_attention(const lx_array *q, const lx_array *k, const lx_array *v, const float *bias,
                          const uint8_t *mask, bool causal, double *out, double *weights) {
    int64_t B = q->shape[0], T = q->shape[1], H = q->shape[2], D = q->shape[3], S = k->shape[1], G = k->shape[2];
    int64_t E = v ? v->shape[3] : 0;
    double scale = 1.0 / sqrt((double)D);
    double *lg = malloc(sizeof(double) * (size_t)S);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                int64_t g = h / (H / G);
                double mx = -INFINITY, sum = 0;
                for (int64_t s = 0; s < S; s++) {
                    double z = 0;
                    for (int64_t d = 0; d < D; d++)
                        z += (double)lx_f32(q)[((b * T + t) * H + h) * D + d] * lx_f32(k)[((b * S + s) * G + g) * D + d];
                    z *= scale;
                    int64_t full = ((b * H + h) * T + t) * S + s;
                    if (bias) z += bias[full];
                    if ((mask && !mask[full]) || (causal && s > t)) z = -FLT_MAX;
                    lg[s] = z;
                    mx = z > mx ? z : mx;
                }
                for (int64_t s = 0; s < S; s++) sum += exp(lg[s] - mx);
                for (int64_t s = 0; s < S; s++) {
                    lg[s] = exp(lg[s] - mx) / sum;
                    if (weights) weights[((b * H + h) * T + t) * S + s] = lg[s];
                }
                for (int64_t e = 0; e < E; e++) {
                    double acc = 0;
                    for (int64_t s = 0; s < S; s++) acc += lg[s] * lx_f32(v)[((b * S + s) * G + g) * E + e];
                    out[((b * T + t) * H + h) * E + e] = acc;
                }
            }
    free(lg);
}

/* Flax's order of operations for the default scale: query / sqrt(depth) in float32, then the
 * product. The default call must be bit-identical to passing the pre-divided query with scale 1,
 * and (depth 3: 1/sqrt(3) rounds differently from a division) differ from scaling the product. */
static bool same_array_bits(const lx_array *a, const lx_array *b) {
    return a && b && a->size == b->size && memcmp(a->data, b->data, (size_t)a->size * sizeof(float)) == 0;
}
static void test_attention_flax_scaling(void) {
    lx_array *q = RAND(2, 16, 2, 3), *k = RAND(2, 16, 2, 3), *v = RAND(2, 16, 2, 4);
    lx_array *qd = lx_autorelease(lx_array_copy(q));
    const float sd = sqrtf(3.0f);
    for (int64_t i = 0; i < qd->size; i++) lx_f32(qd)[i] = lx_f32(q)[i] / sd;
    CHECK(same_array_bits(lx_dot_product_attention_weights(q, k, NULL, NULL, false, 0.0f),
                    lx_dot_product_attention_weights(qd, k, NULL, NULL, false, 1.0f)));
    CHECK(same_array_bits(lx_dot_product_attention(q, k, v, NULL, NULL, true, 0.0f),
                    lx_dot_product_attention(qd, k, v, NULL, NULL, true, 1.0f)));
    /* an explicit scale multiplies the product (jax.nn.dot_product_attention): not the same bits */
    CHECK(!same_array_bits(lx_dot_product_attention_weights(q, k, NULL, NULL, false, 0.0f),
                     lx_dot_product_attention_weights(q, k, NULL, NULL, false, 1.0f / sd)));
    /* the fused kernel's tiles (16 queries and up) at depths 16 (sqrt a power of two) and 32 */
    for (int64_t dd = 16; dd <= 32; dd += 16) {
        lx_array *q2 = RAND(2, 40, 2, dd), *k2 = RAND(2, 40, 1, dd), *v2 = RAND(2, 40, 1, 8);
        lx_array *q2d = lx_autorelease(lx_array_copy(q2));
        const float sd2 = sqrtf((float)dd);
        for (int64_t i = 0; i < q2d->size; i++) lx_f32(q2d)[i] = lx_f32(q2)[i] / sd2;
        CHECK(same_array_bits(lx_dot_product_attention(q2, k2, v2, NULL, NULL, true, 0.0f),
                              lx_dot_product_attention(q2d, k2, v2, NULL, NULL, true, 1.0f)));
        CHECK(same_array_bits(lx_dot_product_attention(q2, k2, v2, NULL, NULL, false, 0.0f),
                              lx_dot_product_attention(q2d, k2, v2, NULL, NULL, false, 1.0f)));
    }
}

/* A logit that overflows to NaN from finite q and k (1e20 * 1e20 + 1e20 * -1e20 = inf - inf),
 * in any key slot of a 16-key block: the query's whole output row is NaN, as softmax over a NaN
 * logit gives (jax.nn.dot_product_attention); the other rows stay finite. The fused AVX-512
 * kernel's max could drop the NaN depending on the slot and give a finite row. */
static void test_attention_nan_logit(void) {
    const int64_t T = 32, D = 2, Q = 3;
    for (int64_t slot = 0; slot < 16; slot++) {
        lx_array *q = RAND(1, T, 1, D), *k = RAND(1, T, 1, D), *v = RAND(1, T, 1, 4);
        lx_f32(q)[Q * D] = 1e20f, lx_f32(q)[Q * D + 1] = 1e20f;
        lx_f32(k)[slot * D] = 1e20f, lx_f32(k)[slot * D + 1] = -1e20f;
        for (int causal = 0; causal < 2; causal++) {
            lx_array *o = lx_dot_product_attention(q, k, v, NULL, NULL, causal && slot <= Q, 0.0f);
            CHECK(o != NULL);
            if (!o) continue;
            int nan_q = 0, nan_other = 0;
            for (int64_t t = 0; t < T; t++)
                for (int64_t c = 0; c < 4; c++) {
                    bool n = isnan(lx_f32(o)[t * 4 + c]);
                    if (t == Q) nan_q += n;
                    else nan_other += n;
                }
            LX_TEST_REPORT_(nan_q == 4 && nan_other == 0, "key slot %lld, causal %d: %d of 4 NaN in row %d, %d elsewhere",
                            (long long)slot, causal, nan_q, (int)Q, nan_other);
        }
    }
}

/* Equal element by element, NaN where the other is NaN (+0 and -0 equal). */
static bool same_values(const lx_array *a, const lx_array *b) {
    if (!a || !b || a->size != b->size) return false;
    for (int64_t i = 0; i < a->size; i++) {
        float x = lx_f32(a)[i], y = lx_f32(b)[i];
        if (!(x == y || (isnan(x) && isnan(y)))) return false;
    }
    return true;
}

/* Close to a double reference element by element, NaN exactly where the reference is NaN. */
static bool close_or_nan(const lx_array *y, const double *ref, double rtol, double atol) {
    if (!y || lx_is_abstract(y)) return false;
    for (int64_t i = 0; i < y->size; i++) {
        double a = lx_f32(y)[i], b = ref[i];
        if (isnan(b) ? !isnan(a) : !(a == b || fabs(a - b) <= atol + rtol * fabs(b))) {
            fprintf(stderr, "  element %lld: %.9g vs %.9g\n", (long long)i, a, b);
            return false;
        }
    }
    return true;
}

/* Causal attention without bias or mask runs the fused kernel where the kernel set has one and
 * otherwise computes each query row over its own keys only (attention.c); with the same causal
 * triangle given as a mask it runs over every key. Both against the double reference: several
 * query tiles and blocks, lengths that are not a multiple of 16, grouped heads, depths 16 and 32
 * (and 3: not a multiple of the vector width), more keys than queries and more queries than keys;
 * an inf value behind the causal front (zero weight times inf is NaN in the full product, as in
 * JAX); a query row whose kept logits are all -inf (the full row then spreads its weight over the
 * masked keys); a NaN query. The weights primitive keeps its exact agreement with the mask. */
static void test_attention_causal_prefix(void) {
    static double ref[1 << 17], ref2[1 << 17];
    const int64_t lens[][5] = {{100, 100, 16, 8, 2}, {37, 37, 16, 8, 2}, {64, 64, 32, 32, 4}, {40, 75, 16, 16, 2},
                               {75, 40, 16, 16, 2}, {33, 33, 3, 5, 1}};
    for (int li = 0; li < 6; li++) {
        int64_t T = lens[li][0], S = lens[li][1], D = lens[li][2], E = lens[li][3], G = lens[li][4];
        lx_array *q = RAND(2, T, 4, D), *k = RAND(2, S, G, D), *v = RAND(2, S, G, E);
        for (int64_t i = 0; i < q->size; i++) lx_f32(q)[i] *= 4; /* sharper weights */
        lx_array *cm = lx_autorelease(lx_array_new(LX_BOOL, 4, SHAPE(1, 1, T, S)));
        for (int64_t t = 0; t < T; t++)
            for (int64_t s2 = 0; s2 < S; s2++) lx_bool(cm)[t * S + s2] = s2 <= t;
        ref_attention(q, k, v, NULL, NULL, true, ref, NULL);
        CHECK(close_or_nan(lx_dot_product_attention(q, k, v, NULL, NULL, true, 0), ref, 1e-5, 1e-6));
        CHECK(close_or_nan(lx_dot_product_attention(q, k, v, NULL, cm, false, 0), ref, 1e-5, 1e-6));
        /* an explicit scale multiplies the logits */
        lx_array *ys = lx_dot_product_attention(q, k, v, NULL, NULL, true, 0.3f);
        for (int64_t i = 0; i < q->size; i++) lx_f32(q)[i] *= 0.3f * sqrtf((float)D);
        ref_attention(q, k, v, NULL, NULL, true, ref2, NULL);
        for (int64_t i = 0; i < q->size; i++) lx_f32(q)[i] /= 0.3f * sqrtf((float)D);
        CHECK(close_or_nan(ys, ref2, 1e-5, 1e-6));
        CHECK(same_values(lx_dot_product_attention_weights(q, k, NULL, NULL, true, 0),
                          lx_dot_product_attention_weights(q, k, NULL, cm, false, 0)));
        /* inf in the last key's value: every earlier query's output is NaN in both */
        lx_f32(v)[((0 * S + (S - 1)) * G + 0) * E + E - 1] = INFINITY;
        ref_attention(q, k, v, NULL, NULL, true, ref, NULL);
        lx_array *yf = lx_dot_product_attention(q, k, v, NULL, NULL, true, 0);
        CHECK(close_or_nan(yf, ref, 1e-5, 1e-6));
        CHECK(close_or_nan(lx_dot_product_attention(q, k, v, NULL, cm, false, 0), ref, 1e-5, 1e-6));
        CHECK(yf && isnan(lx_f32(yf)[((0 * T + 0) * 4 + 0) * E + E - 1]));
        /* keys all positive and query (0, 0, head 0) all -inf: its only kept logit is -inf; query
         * (1, T - 1, head 3) has a NaN */
        for (int64_t i = 0; i < k->size; i++) lx_f32(k)[i] = fabsf(lx_f32(k)[i]) + 0.01f;
        lx_f32(v)[((0 * S + (S - 1)) * G + 0) * E + E - 1] = 1.0f;
        for (int64_t i = 0; i < D; i++) lx_f32(q)[i] = -INFINITY;
        lx_f32(q)[((1 * T + T - 1) * 4 + 3) * D] = NAN;
        ref_attention(q, k, v, NULL, NULL, true, ref, NULL);
        yf = lx_dot_product_attention(q, k, v, NULL, NULL, true, 0);
        CHECK(close_or_nan(yf, ref, 1e-5, 1e-6));
        CHECK(close_or_nan(lx_dot_product_attention(q, k, v, NULL, cm, false, 0), ref, 1e-5, 1e-6));
        CHECK(yf && !isnan(lx_f32(yf)[0]) && isnan(lx_f32(yf)[yf->size - 1]));
        CHECK(same_values(lx_dot_product_attention_weights(q, k, NULL, NULL, true, 0),
                          lx_dot_product_attention_weights(q, k, NULL, cm, false, 0)));
    }
}

static void test_attention(void) {
    static double ref[1 << 16], refw[1 << 16];
    /* plain, then grouped-query (4 query heads over 2 kv heads) */
    lx_array *q = RAND(2, 5, 4, 8), *k = RAND(2, 6, 4, 8), *v = RAND(2, 6, 4, 3);
    ref_attention(q, k, v, NULL, NULL, false, ref, refw);
    CHECK(close_to(lx_dot_product_attention(q, k, v, NULL, NULL, false, 0), ref, 1e-5, 1e-6));
    CHECK(close_to(lx_dot_product_attention_weights(q, k, NULL, NULL, false, 0), refw, 1e-5, 1e-7));
    lx_array *k2 = RAND(2, 6, 2, 8), *v2 = RAND(2, 6, 2, 3);
    ref_attention(q, k2, v2, NULL, NULL, false, ref, NULL);
    lx_array *y = lx_dot_product_attention(q, k2, v2, NULL, NULL, false, 0);
    CHECK(y && lx_shape_eq(y, 4, SHAPE(2, 5, 4, 3)));
    CHECK(close_to(y, ref, 1e-5, 1e-6));
    /* causal (T == S), with a broadcast bias (T, S) and a broadcast mask (B, 1, 1, S) */
    lx_array *qc = RAND(2, 6, 4, 8), *bias = RAND(6, 6);
    lx_array *mask = lx_autorelease(lx_array_new(LX_BOOL, 4, SHAPE(2, 1, 1, 6)));
    for (int i = 0; i < 12; i++) lx_bool(mask)[i] = (i % 6) != 3 && i != 6; /* key 3 off; batch 1 also key 0 */
    float *bfull = malloc(sizeof(float) * 2 * 4 * 36);
    uint8_t *mfull = malloc(2 * 4 * 36);
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 4; h++)
            for (int t = 0; t < 6; t++)
                for (int s = 0; s < 6; s++) {
                    bfull[((b * 4 + h) * 6 + t) * 6 + s] = lx_f32(bias)[t * 6 + s];
                    mfull[((b * 4 + h) * 6 + t) * 6 + s] = lx_bool(mask)[b * 6 + s];
                }
    ref_attention(qc, k, v, bfull, mfull, true, ref, NULL);
    /* batch 1, query 0: keys 1.. are causal-masked and key 0 is masked: fully masked, Flax's
     * lowest-value fill averages all keys uniformly */
    CHECK(close_to(lx_dot_product_attention(qc, k, v, bias, mask, true, 0), ref, 1e-5, 1e-6));
    free(bfull);
    free(mfull);
    /* many query blocks across threads: T = S = 130 > one block */
    lx_array *ql = RAND(1, 130, 2, 16), *kl = RAND(1, 130, 1, 16), *vl = RAND(1, 130, 1, 16);
    ref_attention(ql, kl, vl, NULL, NULL, true, ref, NULL);
    CHECK(close_to(lx_dot_product_attention(ql, kl, vl, NULL, NULL, true, 0), ref, 1e-5, 1e-6));
    /* explicit scale (no batch axes beyond one) */
    lx_array *ys = lx_dot_product_attention(q, k, v, NULL, NULL, false, 1.0f / sqrtf(8.0f));
    ref_attention(q, k, v, NULL, NULL, false, ref, NULL);
    CHECK(close_to(ys, ref, 1e-5, 1e-6));

    lx_array *cm = lx_make_causal_mask(RAND(2, 3));
    CHECK(cm && cm->dtype == LX_BOOL && lx_shape_eq(cm, 4, SHAPE(2, 1, 3, 3)));
    const uint8_t want[9] = {1, 0, 0, 1, 1, 0, 1, 1, 1};
    CHECK(cm && memcmp(lx_bool(cm), want, 9) == 0 && memcmp(lx_bool(cm) + 9, want, 9) == 0);
    /* a causal mask given as a mask equals the causal flag */
    lx_array *cm6 = lx_make_causal_mask(RAND(2, 6));
    CHECK(lx_array_allclose(lx_dot_product_attention(qc, k, v, NULL, cm6, false, 0),
                            lx_dot_product_attention(qc, k, v, NULL, NULL, true, 0), 1e-6, 1e-7));

    int h;
    lx_prim_observe(tc_record, NULL, &h);
    lx_dot_product_attention(q, k, v, NULL, NULL, true, 0);
    CHECK_STR(tc_last_op, "dot_product_attention");
    CHECK_EQ_INT(tc_last_ninputs, 5);
    CHECK_EQ_INT(tc_last_nattrs, 2);
    lx_prim_unobserve(h);

    lx_clear_error();
    CHECK_NULL_FAILS(lx_dot_product_attention(q, RAND(2, 6, 3, 8), RAND(2, 6, 3, 3), NULL, NULL, false, 0), LX_ERR_SHAPE,
                     "dot_product_attention: 4 query heads are not a multiple of 3 key/value heads (query (2, 5, 4, 8), key (2, 6, 3, 8))");
    CHECK_NULL_FAILS(lx_dot_product_attention(q, RAND(2, 6, 4, 7), v, NULL, NULL, false, 0), LX_ERR_SHAPE,
                     "query (2, 5, 4, 8), key (2, 6, 4, 7) and value (2, 6, 4, 3) disagree");
    CHECK_NULL_FAILS(lx_dot_product_attention(q, RAND(3, 6, 4, 8), v, NULL, NULL, false, 0), LX_ERR_SHAPE,
                     "must be (batch..., length, heads, depth) with equal batch axes");
    CHECK_NULL_FAILS(lx_dot_product_attention(q, k, v, RAND(5, 7), NULL, false, 0), LX_ERR_SHAPE,
                     "dot_product_attention: bias float32(5, 7) does not broadcast to float32 logits of shape (2, 4, 5, 6)");
    CHECK_NULL_FAILS(lx_dot_product_attention(q, k, v, NULL, RAND(5, 6), false, 0), LX_ERR_DTYPE,
                     "mask float32(5, 6) does not broadcast to a bool mask of shape (2, 4, 5, 6)");
    CHECK_NULL_FAILS(lx_dot_product_attention(q, k, v, NULL, NULL, false, -1), LX_ERR_INVALID_ARGUMENT,
                     "scale must be finite and >= 0");
    CHECK_NULL_FAILS(lx_make_causal_mask(lx_autorelease(lx_array_scalar_f32(0))), LX_ERR_SHAPE,
                     "make_causal_mask: input of shape () must have 1 to 6 axes");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_dot_product_attention(q, NULL, v, NULL, NULL, false, 0), LX_ERR_FAILED_INPUT,
                     "dot_product_attention: input is NULL");
    y = lx_dot_product_attention(ABSTRACT(2, 5, 4, 8), k, v, NULL, NULL, false, 0);
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 4, SHAPE(2, 5, 4, 3)));
    y = lx_dot_product_attention_weights(q, ABSTRACT(2, 6, 4, 8), NULL, NULL, false, 0);
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 4, SHAPE(2, 4, 5, 6)));
    cm = lx_make_causal_mask(ABSTRACT(4));
    CHECK(cm && lx_is_abstract(cm) && lx_shape_eq(cm, 3, SHAPE(1, 4, 4)));
}

static void test_dropout(void) {
    lx_array *x = FROM(2, SHAPE(2, 3), 1, 2, 3, 4, 5, 6);
    lx_array *m = lx_autorelease(lx_array_from_data(LX_BOOL, 2, SHAPE(1, 3), (const uint8_t[]){1, 0, 1}));
    lx_array *y = lx_dropout_apply(x, m, 0.5f);
    const float want[] = {2, 0, 6, 8, 0, 12};
    CHECK(y && memcmp(lx_f32(y), want, sizeof want) == 0);
    y = lx_dropout_apply(x, m, 1.0f);
    CHECK(y && lx_f32(y)[0] == 0 && lx_f32(y)[2] == 0 && lx_f32(y)[5] == 0);
    y = lx_dropout_apply(x, m, 0.25f);
    CHECK(y && lx_f32(y)[3] == 4 / 0.75f);
    /* keep = (float)(1.0 - rate) in double, as Flax and lx_dropout: for rate 0.067 that is
     * 0.933000028f and 1 / keep = 1.07181132f, while 1.0f - 0.067f = 0.932999969f gives 1.07181144f */
    y = lx_dropout_apply(x, m, 0.067);
    CHECK(y && lx_f32(y)[0] == 1.0f / (float)(1.0 - 0.067) && lx_f32(y)[0] != 1.0f / (1.0f - 0.067f));
    lx_clear_error();
    CHECK_NULL_FAILS(lx_dropout_apply(x, m, 1.5f), LX_ERR_INVALID_ARGUMENT,
                     "dropout_apply: rate must be in [0, 1], got 1.5");
    CHECK_NULL_FAILS(lx_dropout_apply(x, RAND(2, 3), 0.5f), LX_ERR_DTYPE,
                     "dropout_apply: keep_mask must be bool, got float32(2, 3)");
    lx_array *m2 = lx_autorelease(lx_array_new(LX_BOOL, 1, SHAPE(2)));
    CHECK_NULL_FAILS(lx_dropout_apply(x, m2, 0.5f), LX_ERR_SHAPE,
                     "dropout_apply: keep_mask of shape (2,) does not broadcast to input shape (2, 3)");
    y = lx_dropout_apply(ABSTRACT(2, 3), m, 0.5f);
    CHECK(y && lx_is_abstract(y));
}

static void test_pools_flat(void) {
    lx_array *q = RAND(1, 8, 2, 4), *x = RAND(4, 16);
    int64_t before = lx_array_live_count();
    for (int i = 0; i < 500; i++) {
        size_t mark = lx_pool_open();
        lx_dot_product_attention(q, q, q, NULL, NULL, true, 0);
        lx_log_softmax(lx_layer_norm(lx_rms_norm(x, NULL, 1e-6f), NULL, NULL, 1e-6f, 0, NULL), -1);
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(lx_array_live_count(), before);
}

int main(void) {
    RUN(test_softmax);
    RUN(test_softmax_rows);
    RUN(test_softmax_grads);
    RUN(test_norms);
    RUN(test_norm_row_stream);
    RUN(test_norm_streaming_sizes);
    RUN(test_cross_entropy);
    RUN(test_attention);
    RUN(test_attention_causal_prefix);
    RUN(test_attention_flax_scaling);
    RUN(test_attention_nan_logit);
    RUN(test_dropout);
    RUN(test_pools_flat);
    return lx_test_finish();
}
