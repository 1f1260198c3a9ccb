/* Reductions: every axis subset of small arrays against double-precision references, the
 * transpose path (non-adjacent axes), large tiles, hand-worked values, special values, integer
 * dtypes, argmax, errors, failed and abstract inputs, observers, flat memory. */
#include "ops_util.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})

enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_VAR, R_LSE, R_COUNT };
static const char *RNAMES[] = {"sum", "mean", "max", "min", "var", "logsumexp"};
typedef lx_array *(*red_f)(lx_array *, int, const int64_t *, bool);
static const red_f RFUNS[] = {lx_sum, lx_mean, lx_max, lx_min, lx_var, lx_logsumexp};

/* Reference: group input elements by their kept-dims index and reduce each group in double. */
static void ref_reduce(int kind, const lx_array *x, const bool *mask, double *out, int64_t nout) {
    int64_t *count = calloc((size_t)nout, sizeof *count);
    double *acc = calloc((size_t)nout, sizeof *acc), *acc2 = calloc((size_t)nout, sizeof *acc2);
    for (int64_t o = 0; o < nout; o++) out[o] = kind == R_MAX ? -INFINITY : kind == R_MIN ? INFINITY : 0;
    for (int pass = 0; pass < 2; pass++)
        for (int64_t i = 0; i < x->size; i++) {
            int64_t rem = i, idx[LX_MAX_DIMS], o = 0;
            for (int d = x->ndim - 1; d >= 0; d--) {
                idx[d] = rem % x->shape[d];
                rem /= x->shape[d];
            }
            for (int d = 0; d < x->ndim; d++)
                if (!mask[d]) o = o * x->shape[d] + idx[d];
            const double v = lx_f32(x)[i];
            if (pass == 0) {
                count[o]++;
                acc[o] += v;
                if (kind == R_MAX && v > out[o]) out[o] = v;
                if (kind == R_MIN && v < out[o]) out[o] = v;
            } else if (kind == R_VAR) {
                const double m = acc[o] / (double)count[o];
                acc2[o] += (v - m) * (v - m);
            } else if (kind == R_LSE) {
                acc2[o] += exp(v); /* values are small in these tests: no overflow */
            }
        }
    for (int64_t o = 0; o < nout; o++) {
        if (kind == R_SUM) out[o] = acc[o];
        if (kind == R_MEAN) out[o] = acc[o] / (double)count[o];
        if (kind == R_VAR) out[o] = acc2[o] / (double)count[o];
        if (kind == R_LSE) out[o] = log(acc2[o]);
    }
    free(count);
    free(acc);
    free(acc2);
}

static void check_all(const lx_array *x, int naxes, const int64_t *axes, bool keepdims) {
    bool mask[LX_MAX_DIMS] = {false};
    int64_t shape[LX_MAX_DIMS], nout = 1;
    int nd = 0;
    for (int i = 0; i < naxes; i++) mask[axes[i] < 0 ? axes[i] + x->ndim : axes[i]] = true;
    if (!axes)
        for (int i = 0; i < x->ndim; i++) mask[i] = true;
    for (int d = 0; d < x->ndim; d++) {
        if (!mask[d]) {
            shape[nd++] = x->shape[d];
            nout *= x->shape[d];
        } else if (keepdims) {
            shape[nd++] = 1;
        }
    }
    double *want = malloc(sizeof(double) * (size_t)(nout ? nout : 1));
    for (int k = 0; k < R_COUNT; k++) {
        lx_array *y = RFUNS[k]((lx_array *)x, naxes, axes, keepdims);
        ref_reduce(k, x, mask, want, nout);
        bool ok = y && lx_shape_eq(y, nd, shape) && T_close(y, want, nout, 2e-6, 1e-6);
        char b1[64], b2[64];
        LX_TEST_REPORT_(ok, "%s of %s over axes %s keepdims=%d [%s]", RNAMES[k], lx_shape_str(x->ndim, x->shape, b1, 64),
                        axes ? lx_shape_str(naxes, axes, b2, 64) : "None", keepdims, lx_last_error());
    }
    free(want);
}

static void test_axis_subsets(void) {
    lx_array *x = T_rand(3, S(2, 3, 4), -2, 2, 1);
    for (int m = 0; m < 8; m++) {
        int64_t axes[3];
        int n = 0;
        for (int d = 0; d < 3; d++)
            if (m & (1 << d)) axes[n++] = (m & 4) ? d - 3 : d; /* some negative spellings */
        check_all(x, n, axes, false);
        check_all(x, n, axes, true);
    }
    check_all(x, LX_ALL_AXES, false);
    check_all(x, LX_ALL_AXES, true);
    lx_array *y = T_rand(4, S(3, 1, 4, 5), -2, 2, 2);
    check_all(y, LX_AXES(0, 2), false); /* two reduced runs: the transpose path */
    check_all(y, LX_AXES(0, 3), true);
    check_all(y, LX_AXES(1), false);    /* a size-1 axis */
    check_all(y, LX_AXES(-1, 1, 0), false);
    lx_array *z = T_rand(5, S(2, 3, 2, 3, 2), -1, 1, 3);
    check_all(z, LX_AXES(0, 2, 4), false);
    check_all(z, LX_AXES(1, 3), true);
    /* Tiles: more than one column chunk, many rows, and threads. */
    lx_array *big = T_rand(2, S(300, 700), -1, 1, 4);
    check_all(big, LX_AXES(0), false);
    check_all(big, LX_AXES(1), true);
    check_all(big, LX_ALL_AXES, false);
    lx_array *tall = T_rand(3, S(3, 5000, 9), -1, 1, 5);
    check_all(tall, LX_AXES(1), false);
    check_all(T_rand(0, NULL, -1, 1, 6), LX_ALL_AXES, false); /* a scalar */
    check_all(T_rand(1, S(1), -1, 1, 7), LX_AXES(0), false);
}

static void test_hand_worked(void) {
    lx_array *x = T_f32(2, S(2, 2), (const float[]){1.f, 2.f, 3.f, 4.f});
    lx_array *s0 = lx_sum(x, LX_AXES(0), false);
    CHECK(s0 && lx_shape_eq(s0, 1, S(2)) && lx_f32(s0)[0] == 4.f && lx_f32(s0)[1] == 6.f);
    lx_array *s1 = lx_sum(x, LX_AXES(-1), true);
    CHECK(s1 && lx_shape_eq(s1, 2, S(2, 1)) && lx_f32(s1)[0] == 3.f && lx_f32(s1)[1] == 7.f);
    lx_array *v = lx_var(x, LX_ALL_AXES, false);
    CHECK(v && v->ndim == 0 && lx_f32(v)[0] == 1.25f);
    CHECK(lx_f32(lx_mean(x, LX_ALL_AXES, false))[0] == 2.5f);
    CHECK(lx_f32(lx_max(x, LX_AXES(0), false))[1] == 4.f && lx_f32(lx_min(x, LX_AXES(1), false))[1] == 3.f);
    /* logsumexp(0, log 3) = log 4 exactly in double. */
    lx_array *l = lx_logsumexp(T_f32(1, S(2), (const float[]){0.f, (float)log(3.0)}), LX_ALL_AXES, false);
    CHECK_NEAR(lx_f32(l)[0], log(4.0), 2e-7);
    /* No axes reduced: an identity with the same shape. */
    lx_array *id = lx_sum(x, 0, (const int64_t[]){0}, false);
    CHECK(id && lx_shape_eq(id, 2, S(2, 2)) && lx_f32(id)[3] == 4.f);
    /* Variance of a large offset is not lost to cancellation. */
    lx_array *off = T_f32(1, S(4), (const float[]){10000.f, 10001.f, 10002.f, 10003.f});
    CHECK_NEAR(lx_f32(lx_var(off, LX_ALL_AXES, false))[0], 1.25, 1e-6);
}

static void test_special_values(void) {
    lx_array *big = T_f32(1, S(2), (const float[]){1000.f, 1000.f});
    CHECK_NEAR(lx_f32(lx_logsumexp(big, LX_ALL_AXES, false))[0], 1000.0 + log(2.0), 1e-4);
    lx_array *ninf = T_f32(1, S(2), (const float[]){-INFINITY, -INFINITY});
    float r = lx_f32(lx_logsumexp(ninf, LX_ALL_AXES, false))[0];
    CHECK(isinf(r) && r < 0);
    lx_array *pinf = T_f32(1, S(2), (const float[]){INFINITY, 1.f});
    r = lx_f32(lx_logsumexp(pinf, LX_ALL_AXES, false))[0];
    CHECK(isinf(r) && r > 0);
    lx_array *nan = T_f32(2, S(2, 10), (const float[]){1, 2, 3, NAN, 5, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99});
    lx_array *m = lx_max(nan, LX_AXES(1), false), *n = lx_min(nan, LX_AXES(1), false);
    CHECK(isnan(lx_f32(m)[0]) && lx_f32(m)[1] == 99.f);
    CHECK(isnan(lx_f32(n)[0]) && lx_f32(n)[1] == 1.f);
    lx_array *mc = lx_max(nan, LX_AXES(0), false);
    CHECK(isnan(lx_f32(mc)[3]) && lx_f32(mc)[9] == 99.f);
    CHECK(isnan(lx_f32(lx_logsumexp(nan, LX_AXES(1), false))[0]));
    /* Zero-size reductions: identities where they exist. */
    lx_array *e = T_f32(2, S(0, 3), NULL);
    lx_array *es = lx_sum(e, LX_AXES(0), false);
    CHECK(es && lx_shape_eq(es, 1, S(3)) && lx_f32(es)[0] == 0.f);
    CHECK(isnan(lx_f32(lx_mean(e, LX_AXES(0), false))[2]));
    CHECK(isnan(lx_f32(lx_var(e, LX_AXES(0), false))[1]));
    r = lx_f32(lx_logsumexp(e, LX_AXES(0), false))[0];
    CHECK(isinf(r) && r < 0);
    lx_array *ek = lx_max(e, LX_AXES(1), true); /* reduces a size-3 axis: fine, empty result */
    CHECK(ek && lx_shape_eq(ek, 2, S(0, 1)));
    lx_clear_error();
    CHECK(lx_max(e, LX_AXES(0), false) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE,
                   "max: zero-size array to reduction operation max which has no identity (shape (0, 3))");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_min(e, LX_ALL_AXES, false), LX_ERR_SHAPE, "min: zero-size array to reduction operation min");
}

static void test_int_reductions(void) {
    lx_array *x = T_i32(2, S(2, 3), (const int32_t[]){INT32_MAX, 1, 7, 4, 5, 6});
    lx_array *s = lx_sum(x, LX_AXES(1), false);
    CHECK(s && s->dtype == LX_I32 && lx_i32(s)[0] == INT32_MIN + 7); /* wraps modulo 2^32 */
    CHECK(lx_i32(s)[1] == 15);
    lx_array *m = lx_max(x, LX_AXES(0), false), *n = lx_min(x, LX_ALL_AXES, false);
    CHECK(lx_i32(m)[0] == INT32_MAX && lx_i32(m)[2] == 7 && lx_i32(n)[0] == 1);
    lx_array *u = T_typed(LX_U32, 1, S(3), (const uint32_t[]){4000000000u, 300000000u, 5u});
    CHECK(lx_u32(lx_sum(u, LX_ALL_AXES, false))[0] == (uint32_t)(4300000005ull));
    CHECK(lx_u32(lx_max(u, LX_ALL_AXES, false))[0] == 4000000000u && lx_u32(lx_min(u, LX_ALL_AXES, false))[0] == 5u);
    lx_clear_error();
    CHECK(lx_mean(x, LX_ALL_AXES, false) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "mean: expects float32, got int32 with shape (2, 3)");
    lx_clear_error();
    CHECK(lx_sum(T_typed(LX_BOOL, 1, S(2), (const uint8_t[]){1, 1}), LX_ALL_AXES, false) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "sum: expects float32, int32 or uint32, got bool with shape (2,)");
}

static void test_argmax(void) {
    lx_array *x = T_f32(2, S(3, 4), (const float[]){1, 5, 5, 0, /**/ 7, 2, 7, 1, /**/ -1, NAN, 3, NAN});
    lx_array *a1 = lx_argmax(x, 1, false);
    CHECK(a1 && a1->dtype == LX_I32 && lx_shape_eq(a1, 1, S(3)));
    CHECK(memcmp(a1->data, (const int32_t[]){1, 0, 1}, 12) == 0); /* first max; first NaN */
    lx_array *a0 = lx_argmax(x, -2, true);
    CHECK(a0 && lx_shape_eq(a0, 2, S(1, 4)));
    CHECK(memcmp(a0->data, (const int32_t[]){1, 2, 1, 2}, 16) == 0);
    lx_array *xi = T_i32(3, S(2, 1, 3), (const int32_t[]){3, 9, 9, -1, -5, -1});
    lx_array *ai = lx_argmax(xi, 2, false);
    CHECK(ai && lx_shape_eq(ai, 2, S(2, 1)) && lx_i32(ai)[0] == 1 && lx_i32(ai)[1] == 0);
    lx_array *as = lx_argmax(xi, 1, false); /* a size-1 axis */
    CHECK(as && lx_shape_eq(as, 2, S(2, 3)) && lx_i32(as)[4] == 0);
    /* Against a reference on a bigger array (tiles and threads). */
    lx_array *big = T_rand(3, S(40, 300, 7), -1, 1, 9);
    lx_array *ab = lx_argmax(big, 1, false);
    bool ok = ab != NULL;
    for (int64_t o = 0; ok && o < 40; o++)
        for (int64_t j = 0; j < 7; j++) {
            int64_t best = 0;
            for (int64_t r = 1; r < 300; r++)
                if (lx_f32(big)[(o * 300 + r) * 7 + j] > lx_f32(big)[(o * 300 + best) * 7 + j]) best = r;
            ok = ok && lx_i32(ab)[o * 7 + j] == best;
        }
    CHECK(ok);
    lx_array *u = T_typed(LX_U32, 1, S(3), (const uint32_t[]){1u, 4000000000u, 2u});
    CHECK(lx_i32(lx_argmax(u, 0, false))[0] == 1);

    lx_clear_error();
    CHECK(lx_argmax(T_f32(2, S(2, 0), NULL), 1, false) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "argmax: attempt to get argmax of an empty sequence (axis 1 of shape (2, 0))");
    lx_clear_error();
    CHECK(lx_argmax(x, 2, false) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "argmax: axis 2 is out of bounds for array of dimension 2");
    lx_clear_error();
    CHECK(lx_argmax(T_typed(LX_BOOL, 1, S(1), (const uint8_t[]){1}), 0, false) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "argmax: expects float32, int32 or uint32, got bool with shape (1,)");
    lx_clear_error();
    CHECK(lx_argmax(lx_scalar(1), 0, false) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "argmax: axis 0 is out of bounds for array of dimension 0");
}

static void test_axis_errors(void) {
    lx_array *x = T_f32(2, S(2, 3), NULL);
    lx_clear_error();
    CHECK(lx_sum(x, LX_AXES(1, -1), false) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "sum: duplicate value in 'axis' (1, -1) for array of shape (2, 3)");
    lx_clear_error();
    CHECK(lx_var(x, LX_AXES(2), false) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "var: axis 2 is out of bounds for array of dimension 2");
    lx_clear_error();
    CHECK(lx_logsumexp(x, LX_AXES(-3), true) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "logsumexp: axis -3 is out of bounds for array of dimension 2");
    lx_clear_error();
    CHECK(lx_mean(x, -1, (const int64_t[]){0}, false) == NULL);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "mean: -1 axes given for array of shape (2, 3)");
}

static void test_failed_and_abstract(void) {
    lx_array *x = T_f32(2, S(2, 3), NULL);
    lx_clear_error();
    lx_array *y = lx_logsumexp(lx_sum(lx_max(x, LX_AXES(5), false), LX_ALL_AXES, false), LX_ALL_AXES, false);
    CHECK(y == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "max: axis 5 is out of bounds for array of dimension 2");
    CHECK(lx_argmax(NULL, 0, false) == NULL && lx_mean(NULL, LX_ALL_AXES, false) == NULL &&
          lx_var(NULL, LX_ALL_AXES, false) == NULL && lx_min(NULL, LX_ALL_AXES, false) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "max: axis 5 is out of bounds for array of dimension 2");

    lx_array *a = T_abstract(LX_F32, 3, S(4, 5, 6));
    lx_array *s = lx_sum(a, LX_AXES(0, 2), true);
    CHECK(s && lx_is_abstract(s) && lx_shape_eq(s, 3, S(1, 5, 1)));
    lx_array *v = lx_var(a, LX_AXES(1), false);
    CHECK(v && lx_is_abstract(v) && lx_shape_eq(v, 2, S(4, 6)));
    lx_array *am = lx_argmax(a, -1, false);
    CHECK(am && lx_is_abstract(am) && am->dtype == LX_I32 && lx_shape_eq(am, 2, S(4, 5)));
    lx_array *ai = lx_max(T_abstract(LX_I32, 1, S(3)), LX_ALL_AXES, false);
    CHECK(ai && lx_is_abstract(ai) && ai->dtype == LX_I32 && ai->ndim == 0);
    lx_clear_error();
    CHECK_NULL_FAILS(lx_max(T_abstract(LX_F32, 1, S(0)), LX_ALL_AXES, false), LX_ERR_SHAPE, "zero-size array");
}

static void test_observer_and_memory(void) {
    T_seen seen = {0};
    int h;
    lx_prim_observe(T_record, &seen, &h);
    lx_array *x = T_rand(3, S(2, 3, 4), -1, 1, 3);
    lx_sum(x, LX_AXES(-1, 0), true);
    lx_argmax(x, -2, false);
    lx_logsumexp(x, LX_ALL_AXES, false);
    lx_prim_unobserve(h);
    CHECK_EQ_INT(seen.count, 3);
    CHECK_STR(seen.names[0], "sum");
    CHECK_STR(seen.attrs[0], "axes=(0, 2);keepdims=True");
    CHECK_STR(seen.names[1], "argmax");
    CHECK_STR(seen.attrs[1], "axis=1;keepdims=False");
    CHECK_STR(seen.names[2], "logsumexp");
    CHECK_STR(seen.attrs[2], "axes=(0, 1, 2);keepdims=False");

    int64_t before = lx_array_live_count();
    int failed = 0;
    for (int it = 0; it < 2000; it++) {
        size_t mark = lx_pool_open();
        lx_array *m = lx_mean(x, LX_AXES(0, 2), true);
        lx_array *y = lx_var(lx_sub(x, m), LX_AXES(0, 2), false); /* transpose path temporaries */
        lx_array *a = lx_argmax(lx_logsumexp(x, LX_AXES(1), false), 1, false);
        failed += y == NULL || a == NULL;
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(lx_array_live_count(), before);
}

/* The float sum kernels of every kernel set this machine runs (reduce_kernels.h): full sums
 * (the 32-lane row kernel, its masked tail) and leading-axis sums (the column kernel, its 64 / 32
 * column blocks and partial last vector) at odd sizes, against double references; every set must
 * give the same bits (they add in one order), and NaN / inf propagate per column. */
static void test_sum_kernels_every_set(void) {
    static const char *sets[] = {"generic", "avx2", "avx512"};
    const int64_t ns[] = {1, 7, 31, 32, 33, 100, 1001, 4099};
    const int64_t cs[] = {1, 3, 8, 9, 16, 17, 33, 63, 64, 65, 130, 300};
    const int64_t rs[] = {1, 5, 37};
    enum { NN = 8, NC = 12, NR = 3 };
    float first_row[2][NN], first_col[NR][NC][4];
    int ran = 0;
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        CHECK_EQ_INT(lx_isa_set(sets[s]), LX_OK);
        for (int a = 0; a < NN; a++) {
            lx_array *x = T_rand(1, S(ns[a]), -2.0f, 3.0f, 11u + (uint32_t)a);
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < ns[a]; i++) ref += lx_f32(x)[i], mag += fabs(lx_f32(x)[i]);
            const float sum = lx_f32(lx_sum(x, LX_ALL_AXES, false))[0];
            const float mean = lx_f32(lx_mean(x, LX_ALL_AXES, false))[0];
            CHECK_NEAR(sum, ref, 1e-6 * mag + 1e-7);
            CHECK_NEAR(mean, ref / (double)ns[a], (1e-6 * mag + 1e-7) / (double)ns[a]);
            if (!ran) first_row[0][a] = sum, first_row[1][a] = mean;
            CHECK(memcmp(&first_row[0][a], &sum, 4) == 0 && memcmp(&first_row[1][a], &mean, 4) == 0);
        }
        /* A NaN in the tail lanes, +inf and -inf in other lanes. */
        lx_array *t = T_rand(1, S(1001), -1.0f, 1.0f, 5u);
        lx_f32(t)[1000] = NAN;
        CHECK(isnan(lx_f32(lx_sum(t, LX_ALL_AXES, false))[0]));
        lx_f32(t)[1000] = INFINITY;
        CHECK(lx_f32(lx_sum(t, LX_ALL_AXES, false))[0] == INFINITY);
        lx_f32(t)[3] = -INFINITY;
        CHECK(isnan(lx_f32(lx_mean(t, LX_ALL_AXES, false))[0]));
        for (int r = 0; r < NR; r++)
            for (int c = 0; c < NC; c++) {
                const int64_t R = rs[r], C = cs[c];
                lx_array *x = T_rand(3, S(R, 2, C), -2.0f, 3.0f, 100u + (uint32_t)(r * NC + c));
                float *xd = lx_f32(x);
                if (C >= 3) { /* column 1: NaN, column C-1: +inf, column C-2 +inf and -inf (NaN) */
                    xd[(R * 2 - 1) * C + 1] = NAN;
                    xd[C - 1] = INFINITY;
                    xd[C - 2] = INFINITY;
                    xd[(R * 2 - 1) * C + C - 2] = -INFINITY;
                }
                lx_array *sum = lx_sum(x, LX_AXES(0, 1), false), *mean = lx_mean(x, LX_AXES(0, 1), true);
                CHECK(sum && mean && sum->size == C && mean->size == C);
                int bad = 0;
                for (int64_t j = 0; j < C; j++) {
                    double ref = 0, mag = 0;
                    for (int64_t i = 0; i < 2 * R; i++) ref += xd[i * C + j], mag += fabs(xd[i * C + j]);
                    const float got = lx_f32(sum)[j], gm = lx_f32(mean)[j];
                    if (isnan(ref) || isinf(ref)) {
                        bad += !(isnan(ref) ? isnan(got) && isnan(gm) : got == (float)ref && gm == (float)ref);
                    } else {
                        bad += !(fabs(got - ref) <= 1e-6 * mag + 1e-7); /* NaN counts */
                        bad += !(fabs(gm - ref / (double)(2 * R)) <= (1e-6 * mag + 1e-7) / (double)(2 * R));
                    }
                }
                if (bad) fprintf(stderr, "  set %s: sum over (%lld, 2) of %lld columns: %d wrong\n", sets[s],
                                 (long long)R, (long long)C, bad);
                CHECK_EQ_INT(bad, 0);
                /* bits of a few columns against the first set */
                const int64_t probe[4] = {0, C / 2, C - 1, C > 2 ? 2 : 0};
                for (int k = 0; k < 4; k++) {
                    const float v = lx_f32(sum)[probe[k]];
                    if (!ran) first_col[r][c][k] = v;
                    CHECK(memcmp(&first_col[r][c][k], &v, 4) == 0);
                }
            }
        ran++;
    }
    lx_isa_set(NULL);
    CHECK(ran >= 1);
}

int main(void) {
    RUN(test_axis_subsets);
    RUN(test_hand_worked);
    RUN(test_special_values);
    RUN(test_int_reductions);
    RUN(test_argmax);
    RUN(test_axis_errors);
    RUN(test_failed_and_abstract);
    RUN(test_observer_and_memory);
    RUN(test_sum_kernels_every_set);
    return lx_test_finish();
}
