/* Elementwise ops: unary maths against double-precision references, casts, binary ops under
 * every broadcasting shape class, comparisons, where, errors, failed inputs, abstract inputs,
 * observers and flat memory. */
#include "ops_util.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})

static const float GRID[] = {-30.f, -8.5f, -3.f, -1.f, -0.5f, -1e-3f, -1e-6f, -1e-20f, 0.f, 1e-20f, 1e-6f,
                             1e-3f, 0.25f, 0.5f, 1.f, 2.f, 3.7f, 9.f, 30.f};
#define NGRID ((int64_t)(sizeof GRID / sizeof GRID[0]))

typedef lx_array *(*unary_f)(lx_array *);

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Each grid point against the double reference to rtol relative, times grow(x) where given (the
 * exact GELU's documented bound); the 1e-30 absolute part only absorbs results in float's
 * subnormal range (square(1e-20)), so a tiny result must keep its digits too. */
static void check_unary_grow(const char *name, unary_f f, double (*ref)(double), bool positive_only, double rtol,
                             double (*grow)(double)) {
    double want[NGRID];
    float in[NGRID];
    int64_t n = 0;
    for (int64_t i = 0; i < NGRID; i++) {
        if (positive_only && GRID[i] <= 0) continue;
        in[n] = GRID[i];
        want[n] = ref(GRID[i]);
        n++;
    }
    lx_array *y = f(T_f32(1, S(n), in));
    bool ok = y && y->dtype == LX_F32 && y->size == n;
    for (int64_t i = 0; ok && i < n; i++) {
        double g = lx_f32(y)[i], tol = 1e-30 + rtol * (grow ? grow(in[i]) : 1) * fabs(want[i]);
        if (!(fabs(g - want[i]) <= tol)) { /* NaN fails */
            fprintf(stderr, "  %s(%.9g): got %.9g want %.9g (tol %.3g)\n", name, (double)in[i], g, want[i], tol);
            ok = false;
        }
    }
    LX_TEST_REPORT_(ok, "%s against double reference", name);
}
static void check_unary(const char *name, unary_f f, double (*ref)(double), bool positive_only, double rtol) {
    check_unary_grow(name, f, ref, positive_only, rtol, NULL);
}

static double r_neg(double x) { return -x; }
static double r_abs(double x) { return fabs(x); }
static double r_square(double x) { return x * x; }
static double r_rsqrt(double x) { return 1.0 / sqrt(x); }
static double r_relu(double x) { return x > 0 ? x : 0; }
static double r_silu(double x) { return x * ref_sigmoid(x); }
/* The references keep their digits in the tails (the op outputs there are tiny, not 0, and are
 * compared to relative tolerance): log1p(exp(x)), not log(1 + exp(x)); the tanh GELU as
 * x sigmoid(2u) = x / (1 + exp(-2u)), equal to x (1 + tanh(u)) / 2 without its cancellation; the
 * exact GELU through erfc. */
static double r_softplus(double x) { return x > 30 ? x : log1p(exp(x)); }
static double r_gelu_tanh(double x) {
    double u = sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}
static double r_gelu_erf(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
/* Below -0.84 sqrt 2 the kernel takes Phi from erfc(-x / sqrt 2), whose float rounding of
 * x / sqrt 2 exp(-z^2) amplifies: docs/kernels.md bounds the value by (1 + x^2) times the
 * relative error; above, nothing grows. */
static double r_gelu_erf_grow(double x) { return x < -0.84 * sqrt(2.0) ? 1 + x * x : 1; }
static lx_array *gelu_t(lx_array *x) { return lx_gelu(x, true); }
static lx_array *gelu_e(lx_array *x) { return lx_gelu(x, false); }

static void test_unary_values(void) {
    check_unary("neg", lx_neg, r_neg, false, 0);
    check_unary("abs", lx_abs, r_abs, false, 0);
    check_unary("square", lx_square, r_square, false, 1e-7);
    check_unary("exp", lx_exp, exp, false, 2e-7);
    check_unary("log", lx_log, log, true, 2e-7);
    check_unary("log1p", lx_log1p, log1p, true, 2e-7);
    check_unary("sqrt", lx_sqrt, sqrt, true, 1e-7);
    check_unary("rsqrt", lx_rsqrt, r_rsqrt, true, 2e-7);
    check_unary("tanh", lx_tanh, tanh, false, 2e-7);
    check_unary("sigmoid", lx_sigmoid, ref_sigmoid, false, 3e-7);
    check_unary("relu", lx_relu, r_relu, false, 0);
    check_unary("silu", lx_silu, r_silu, false, 3e-7);
    check_unary("softplus", lx_softplus, r_softplus, false, 3e-7);
    check_unary("gelu_tanh", gelu_t, r_gelu_tanh, false, 3e-7);
    check_unary_grow("gelu_erf", gelu_e, r_gelu_erf, false, 3e-7, r_gelu_erf_grow);

    /* Hand-worked values. */
    lx_array *x = T_f32(1, S(3), (const float[]){-1000.f, 0.f, 1000.f});
    lx_array *s = lx_sigmoid(x);
    CHECK(lx_f32(s)[0] == 0.f && lx_f32(s)[1] == 0.5f && lx_f32(s)[2] == 1.f);
    lx_array *sp = lx_softplus(x);
    CHECK(lx_f32(sp)[0] == 0.f && lx_f32(sp)[2] == 1000.f);
    CHECK_NEAR(lx_f32(sp)[1], 0.6931471805599453, 1e-7);
    lx_array *one = T_f32(0, NULL, (const float[]){1.f});
    CHECK_NEAR(lx_f32(lx_gelu(one, false))[0], 0.8413447460685429, 1e-7);
    CHECK_NEAR(lx_f32(lx_gelu(one, true))[0], 0.8411919906082768, 1e-7);
    lx_array *nan = T_f32(1, S(2), (const float[]){NAN, -INFINITY});
    lx_array *r = lx_relu(nan);
    CHECK(isnan(lx_f32(r)[0]) && lx_f32(r)[1] == 0.f);
    CHECK(isnan(lx_f32(lx_softplus(nan))[0]) && lx_f32(lx_softplus(nan))[1] == 0.f);
    /* Scalars and size 0. */
    CHECK(lx_exp(one)->ndim == 0 && fabsf(lx_f32(lx_exp(one))[0] - 2.7182817f) < 1e-6f);
    lx_array *empty = lx_exp(T_f32(2, S(0, 3), NULL));
    CHECK(empty && empty->size == 0 && empty->shape[1] == 3);
}

static void test_unary_ints(void) {
    lx_array *x = T_i32(1, S(4), (const int32_t[]){INT32_MIN, -3, 0, 65536});
    lx_array *n = lx_neg(x), *a = lx_abs(x), *q = lx_square(x);
    CHECK(n && n->dtype == LX_I32);
    CHECK(lx_i32(n)[0] == INT32_MIN && lx_i32(n)[1] == 3 && lx_i32(n)[3] == -65536);
    CHECK(lx_i32(a)[0] == INT32_MIN && lx_i32(a)[1] == 3);
    CHECK(lx_i32(q)[1] == 9 && lx_i32(q)[3] == 0); /* 2^32 wraps to 0 */
    lx_array *u = T_typed(LX_U32, 1, S(2), (const uint32_t[]){3u, 70000u});
    lx_array *uq = lx_square(u);
    CHECK(uq && lx_u32(uq)[0] == 9u && lx_u32(uq)[1] == (uint32_t)(70000ull * 70000ull));

    lx_clear_error();
    CHECK(lx_exp(x) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "exp: expects float32, got int32 with shape (4,)");
    lx_clear_error();
    CHECK(lx_neg(u) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "neg: expects float32 or int32, got uint32 with shape (2,)");
    lx_clear_error();
    CHECK(lx_square(T_typed(LX_BOOL, 1, S(1), (const uint8_t[]){1})) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "square: expects float32, int32 or uint32, got bool with shape (1,)");
    lx_clear_error();
    CHECK(lx_clip(x, 0, 1) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "clip: expects float32, got int32 with shape (4,)");
}

static void test_clip(void) {
    lx_array *x = T_f32(1, S(5), (const float[]){-2.f, 0.5f, 3.f, NAN, -INFINITY});
    lx_array *c = lx_clip(x, -1.f, 1.f);
    CHECK(c && lx_f32(c)[0] == -1.f && lx_f32(c)[1] == 0.5f && lx_f32(c)[2] == 1.f);
    CHECK(isnan(lx_f32(c)[3]) && lx_f32(c)[4] == -1.f);
    /* lo > hi: every element is hi, like jnp.clip (minimum applied last). */
    lx_array *d = lx_clip(x, 2.f, 1.f);
    CHECK(lx_f32(d)[0] == 1.f && lx_f32(d)[1] == 1.f);
    /* every element, not just those below lo (max(lo, min(x, hi)), the old comment, would give 2) */
    CHECK(lx_f32(d)[2] == 1.f && lx_f32(d)[4] == 1.f && isnan(lx_f32(d)[3]));
    /* a NaN bound: jnp.clip is minimum(maximum(x, lo), hi) with NaN-propagating max/min, so NaN
     * everywhere (a NaN bound was ignored, as if it were infinite) */
    lx_array *e = lx_clip(x, 0.f, NAN), *g = lx_clip(x, NAN, 1.f), *h = lx_clip(x, NAN, NAN);
    for (int k = 0; k < 5; k++) CHECK(e && g && h && isnan(lx_f32(e)[k]) && isnan(lx_f32(g)[k]) && isnan(lx_f32(h)[k]));
    {
        const int64_t n = 1 << 17; /* the threaded path */
        lx_array *big = lx_autorelease(lx_array_new(LX_F32, 1, &n)), *bc = lx_clip(big, NAN, 1.f);
        int nn = 0;
        for (int64_t k = 0; bc && k < n; k++) nn += isnan(lx_f32(bc)[k]) != 0;
        CHECK(bc && nn == n);
    }
}

static void test_cast(void) {
    lx_array *f = T_f32(1, S(6), (const float[]){1.7f, -1.7f, 3e9f, -3e9f, NAN, -0.0f});
    lx_array *i = lx_cast(f, LX_I32);
    CHECK(i && i->dtype == LX_I32);
    CHECK(lx_i32(i)[0] == 1 && lx_i32(i)[1] == -1 && lx_i32(i)[2] == INT32_MAX && lx_i32(i)[3] == INT32_MIN);
    CHECK(lx_i32(i)[4] == 0 && lx_i32(i)[5] == 0);
    lx_array *u = lx_cast(T_f32(1, S(3), (const float[]){-1.f, 3.9f, 5e9f}), LX_U32);
    CHECK(lx_u32(u)[0] == 0u && lx_u32(u)[1] == 3u && lx_u32(u)[2] == UINT32_MAX);
    lx_array *b = lx_cast(f, LX_BOOL);
    CHECK(lx_bool(b)[0] == 1 && lx_bool(b)[4] == 1 && lx_bool(b)[5] == 0);
    lx_array *back = lx_cast(b, LX_F32);
    CHECK(lx_f32(back)[0] == 1.f && lx_f32(back)[5] == 0.f);
    lx_array *neg = T_i32(1, S(2), (const int32_t[]){-1, 7});
    lx_array *wrapped = lx_cast(neg, LX_U32);
    CHECK(lx_u32(wrapped)[0] == UINT32_MAX && lx_u32(wrapped)[1] == 7u);
    CHECK(lx_i32(lx_cast(wrapped, LX_I32))[0] == -1);
    CHECK(lx_f32(lx_cast(neg, LX_F32))[0] == -1.f);
    CHECK(lx_f32(lx_cast(T_typed(LX_U32, 0, NULL, (const uint32_t[]){4000000000u}), LX_F32))[0] == 4e9f);

    /* bf16: round to nearest even on the dropped 16 bits. 1 + 2^-8 is a tie that stays at 1;
     * 1 + 3*2^-8 is a tie that rounds up to the even 1 + 2^-6; 1 + 2^-8 + 2^-20 rounds up. */
    const float tie_even = 1.0f + 1.0f / 256, tie_up = 1.0f + 3.0f / 256, above = 1.0f + 1.0f / 256 + 1.0f / 1048576;
    lx_array *h = lx_cast(T_f32(1, S(5), (const float[]){1.f, tie_even, tie_up, above, -2.5f}), LX_BF16);
    const uint16_t *hb = (const uint16_t *)h->data;
    CHECK_EQ_INT(hb[0], 0x3F80);
    CHECK_EQ_INT(hb[1], 0x3F80);
    CHECK_EQ_INT(hb[2], 0x3F82);
    CHECK_EQ_INT(hb[3], 0x3F81);
    CHECK_EQ_INT(hb[4], 0xC020);
    lx_array *hf = lx_cast(h, LX_F32);
    CHECK(lx_f32(hf)[2] == 1.0f + 1.0f / 64 && lx_f32(hf)[4] == -2.5f);
    lx_array *hn = lx_cast(T_f32(1, S(2), (const float[]){NAN, INFINITY}), LX_BF16);
    CHECK(isnan(lx_f32(lx_cast(hn, LX_F32))[0]) && isinf(lx_f32(lx_cast(hn, LX_F32))[1]));

    /* int8 (these returned unwritten storage with an OK status): from a float truncate toward zero
     * and saturate, NaN -> 0 (XLA's convert, as for int32); from an integer wrap modulo 2^8; to
     * uint32 from int8 sign-extend then wrap (jnp.int8(-1).astype(jnp.uint32) == 4294967295). */
    lx_array *q = lx_cast(T_f32(1, S(8), (const float[]){-300.f, -128.7f, -1.5f, 0.f, 1.5f, 127.9f, 200.f, NAN}),
                          LX_I8);
    CHECK(q && q->dtype == LX_I8 && memcmp(q->data, (const int8_t[]){-128, -128, -1, 0, 1, 127, 127, 0}, 8) == 0);
    lx_array *qi = lx_cast(T_i32(1, S(5), (const int32_t[]){300, -129, 127, -1, INT32_MIN}), LX_I8);
    CHECK(qi && memcmp(qi->data, (const int8_t[]){44, 127, 127, -1, 0}, 5) == 0);
    lx_array *qu = lx_cast(T_typed(LX_U32, 1, S(3), (const uint32_t[]){255u, 128u, 4294967295u}), LX_I8);
    CHECK(qu && memcmp(qu->data, (const int8_t[]){-1, -128, -1}, 3) == 0);
    lx_array *qb = lx_cast(T_typed(LX_BOOL, 1, S(2), (const uint8_t[]){1, 0}), LX_I8);
    CHECK(qb && memcmp(qb->data, (const int8_t[]){1, 0}, 2) == 0);
    lx_array *qh = lx_cast(lx_cast(T_f32(1, S(3), (const float[]){-2.5f, 1000.f, 126.f}), LX_BF16), LX_I8);
    CHECK(qh && memcmp(qh->data, (const int8_t[]){-2, 127, 126}, 3) == 0);
    lx_array *z = T_typed(LX_I8, 1, S(5), (const int8_t[]){-128, -1, 0, 1, 127});
    lx_array *zf = lx_cast(z, LX_F32), *zi = lx_cast(z, LX_I32), *zu = lx_cast(z, LX_U32), *zb = lx_cast(z, LX_BOOL);
    lx_array *zh = lx_cast(z, LX_BF16), *zz = lx_cast(z, LX_I8);
    CHECK(zf && memcmp(zf->data, (const float[]){-128.f, -1.f, 0.f, 1.f, 127.f}, 20) == 0);
    CHECK(zi && memcmp(zi->data, (const int32_t[]){-128, -1, 0, 1, 127}, 20) == 0);
    CHECK(zu && memcmp(zu->data, (const uint32_t[]){4294967168u, 4294967295u, 0u, 1u, 127u}, 20) == 0);
    CHECK(zb && memcmp(zb->data, (const uint8_t[]){1, 1, 0, 1, 1}, 5) == 0);
    CHECK(zh && memcmp(lx_cast(zh, LX_F32)->data, zf->data, 20) == 0);
    CHECK(zz && zz->data != z->data && memcmp(zz->data, z->data, 5) == 0);
    /* a large one (the threaded path), on storage that held other bytes */
    {
        const int64_t n = 1 << 18;
        lx_array *dirty = lx_array_empty(LX_I8, 1, &n);
        memset(dirty->data, 0x5A, (size_t)n);
        lx_release(dirty);
        lx_array *big = lx_autorelease(lx_array_new(LX_I32, 1, &n));
        for (int64_t k = 0; k < n; k++) lx_i32(big)[k] = (int32_t)(k * 7 - 1000);
        lx_array *bq = lx_cast(big, LX_I8);
        int bad = 0;
        for (int64_t k = 0; bq && k < n; k++) bad += lx_i8(bq)[k] != (int8_t)(uint8_t)((uint32_t)(k * 7 - 1000) & 0xff);
        CHECK(bq && bad == 0);
        lx_array *bf = lx_cast(bq, LX_F32);
        bad = 0;
        for (int64_t k = 0; bf && k < n; k++) bad += lx_f32(bf)[k] != (float)lx_i8(bq)[k];
        CHECK(bf && bad == 0);
    }

    lx_array *same = lx_cast(f, LX_F32);
    CHECK(same->data != f->data && memcmp(same->data, f->data, lx_array_nbytes(f)) == 0);
    lx_clear_error();
    CHECK(lx_cast(f, (lx_dtype)42) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "cast: invalid dtype 42 for array of shape (6,)");
}

typedef lx_array *(*binary_f)(lx_array *, lx_array *);
typedef double (*binary_r)(double, double);
static double r_add(double a, double b) { return a + b; }
static double r_sub(double a, double b) { return a - b; }
static double r_mul(double a, double b) { return a * b; }
static double r_div(double a, double b) { return a / b; }
static double r_max(double a, double b) { return a > b ? a : b; }
static double r_min(double a, double b) { return a < b ? a : b; }

static const struct {
    const char *name;
    binary_f f;
    binary_r r;
} BINOPS[] = {{"add", lx_add, r_add}, {"sub", lx_sub, r_sub}, {"mul", lx_mul, r_mul}, {"div", lx_div, r_div},
              {"pow", lx_pow, pow},   {"maximum", lx_maximum, r_max}, {"minimum", lx_minimum, r_min}};

static void check_broadcast(int na, const int64_t *sa, int nb, const int64_t *sb, int nout, const int64_t *sout) {
    lx_array *a = T_rand(na, sa, 0.5f, 2.f, 11), *b = T_rand(nb, sb, 0.5f, 2.f, 23);
    for (size_t k = 0; k < sizeof BINOPS / sizeof BINOPS[0]; k++) {
        lx_array *y = BINOPS[k].f(a, b);
        bool ok = y && lx_shape_eq(y, nout, sout);
        if (ok) {
            double *want = malloc(sizeof(double) * (size_t)(y->size ? y->size : 1));
            for (int64_t o = 0; o < y->size; o++)
                want[o] = BINOPS[k].r(lx_f32(a)[T_bcast_index(o, nout, sout, na, sa)],
                                      lx_f32(b)[T_bcast_index(o, nout, sout, nb, sb)]);
            ok = T_close(y, want, y->size, 3e-7, 0);
            free(want);
        }
        LX_TEST_REPORT_(ok, "%s of %s and %s [%s]", BINOPS[k].name, lx_shape_str(na, sa, (char[64]){0}, 64),
                        lx_shape_str(nb, sb, (char[64]){0}, 64), lx_last_error());
    }
}

static void test_broadcasting(void) {
    check_broadcast(2, S(2, 3), 2, S(2, 3), 2, S(2, 3));
    check_broadcast(3, S(3, 1, 5), 2, S(4, 1), 3, S(3, 4, 5));
    check_broadcast(2, S(4, 1), 3, S(3, 1, 5), 3, S(3, 4, 5));
    check_broadcast(3, S(4, 7, 300), 1, S(300), 3, S(4, 7, 300)); /* bias add */
    check_broadcast(2, S(2, 3), 0, NULL, 2, S(2, 3));
    check_broadcast(0, NULL, 2, S(2, 3), 2, S(2, 3));
    check_broadcast(0, NULL, 0, NULL, 0, NULL);
    check_broadcast(2, S(7, 1), 2, S(1, 9), 2, S(7, 9));
    check_broadcast(1, S(1), 1, S(5), 1, S(5));
    check_broadcast(4, S(2, 1, 3, 1), 3, S(5, 1, 4), 4, S(2, 5, 3, 4));
    check_broadcast(3, S(2, 3, 4), 3, S(2, 1, 4), 3, S(2, 3, 4));
    check_broadcast(2, S(0, 3), 1, S(3), 2, S(0, 3));
    check_broadcast(1, S(0), 1, S(1), 1, S(0));
    /* Big enough for the threaded paths: one long row, and rows split over threads. */
    check_broadcast(1, S(100003), 1, S(100003), 1, S(100003));
    check_broadcast(2, S(517, 129), 1, S(129), 2, S(517, 129));
    check_broadcast(2, S(3, 50000), 2, S(3, 1), 2, S(3, 50000));
}

static void test_binary_special(void) {
    lx_array *a = T_f32(1, S(3), (const float[]){NAN, 1.f, 2.f});
    lx_array *b = T_f32(1, S(3), (const float[]){0.f, NAN, 1.f});
    lx_array *mx = lx_maximum(a, b), *mn = lx_minimum(a, b);
    CHECK(isnan(lx_f32(mx)[0]) && isnan(lx_f32(mx)[1]) && lx_f32(mx)[2] == 2.f);
    CHECK(isnan(lx_f32(mn)[0]) && isnan(lx_f32(mn)[1]) && lx_f32(mn)[2] == 1.f);
    lx_array *dz = lx_div(T_f32(1, S(2), (const float[]){1.f, -1.f}), T_f32(0, NULL, (const float[]){0.f}));
    CHECK(isinf(lx_f32(dz)[0]) && lx_f32(dz)[0] > 0 && lx_f32(dz)[1] < 0);

    lx_array *ia = T_i32(1, S(3), (const int32_t[]){INT32_MAX, -5, 7});
    lx_array *ib = T_i32(1, S(1), (const int32_t[]){1});
    lx_array *s = lx_add(ia, ib);
    CHECK(s && s->dtype == LX_I32 && lx_i32(s)[0] == INT32_MIN && lx_i32(s)[1] == -4 && lx_i32(s)[2] == 8);
    lx_array *p = lx_mul(ia, T_i32(0, NULL, (const int32_t[]){2}));
    CHECK(lx_i32(p)[0] == -2 && lx_i32(p)[1] == -10);
    CHECK(lx_i32(lx_sub(ib, ia))[1] == 6);
    CHECK(lx_i32(lx_maximum(ia, ib))[1] == 1 && lx_i32(lx_minimum(ia, ib))[0] == 1);
    lx_array *ua = T_typed(LX_U32, 1, S(2), (const uint32_t[]){0u, 5u});
    lx_array *ub = T_typed(LX_U32, 0, NULL, (const uint32_t[]){1u});
    CHECK(lx_u32(lx_sub(ua, ub))[0] == UINT32_MAX && lx_u32(lx_add(ua, ub))[1] == 6u);
    CHECK(lx_u32(lx_mul(ua, ub))[1] == 5u && lx_u32(lx_maximum(ua, ub))[0] == 1u);
}

static void test_scalars(void) {
    lx_array *x = T_f32(2, S(2, 2), (const float[]){1.f, 2.f, 3.f, 4.f});
    lx_array *y = lx_add_scalar(x, 0.5f), *z = lx_mul_scalar(x, -2.f);
    CHECK(y && lx_shape_eq(y, 2, S(2, 2)) && lx_f32(y)[3] == 4.5f);
    CHECK(z && lx_f32(z)[1] == -4.f);
    lx_array *s = lx_scalar(3.f);
    CHECK(s && s->ndim == 0 && lx_f32(s)[0] == 3.f);
    lx_array *si = lx_scalar_i32(-9);
    CHECK(si && si->dtype == LX_I32 && lx_i32(si)[0] == -9);
    lx_clear_error();
    CHECK_NULL_FAILS(lx_add_scalar(T_i32(1, S(1), (const int32_t[]){1}), 1.f), LX_ERR_DTYPE,
                     "add: operands have different dtypes int32 (1,) and float32 ()");
}

static void test_comparisons(void) {
    lx_array *a = T_f32(2, S(2, 3), (const float[]){1.f, 2.f, 3.f, NAN, 5.f, -1.f});
    lx_array *b = T_f32(1, S(3), (const float[]){2.f, 2.f, 2.f});
    const uint8_t want[6][6] = {
        /* eq */ {0, 1, 0, 0, 0, 0},
        /* ne */ {1, 0, 1, 1, 1, 1},
        /* lt */ {1, 0, 0, 0, 0, 1},
        /* le */ {1, 1, 0, 0, 0, 1},
        /* gt */ {0, 0, 1, 0, 1, 0},
        /* ge */ {0, 1, 1, 0, 1, 0},
    };
    binary_f fs[] = {lx_eq, lx_ne, lx_lt, lx_le, lx_gt, lx_ge};
    for (int k = 0; k < 6; k++) {
        lx_array *y = fs[k](a, b);
        CHECK(y && y->dtype == LX_BOOL && lx_shape_eq(y, 2, S(2, 3)));
        if (y) LX_TEST_REPORT_(memcmp(y->data, want[k], 6) == 0, "comparison %d", k);
    }
    lx_array *ia = T_i32(1, S(3), (const int32_t[]){-1, 0, 1});
    lx_array *iz = T_i32(0, NULL, (const int32_t[]){0});
    CHECK(memcmp(lx_lt(ia, iz)->data, (const uint8_t[]){1, 0, 0}, 3) == 0);
    lx_array *ua = T_typed(LX_U32, 1, S(2), (const uint32_t[]){1u, 4000000000u});
    CHECK(memcmp(lx_gt(ua, T_typed(LX_U32, 0, NULL, (const uint32_t[]){2u}))->data, (const uint8_t[]){0, 1}, 2) == 0);
    lx_array *ba = T_typed(LX_BOOL, 1, S(2), (const uint8_t[]){0, 1});
    lx_array *bb = T_typed(LX_BOOL, 1, S(2), (const uint8_t[]){1, 1});
    CHECK(memcmp(lx_eq(ba, bb)->data, (const uint8_t[]){0, 1}, 2) == 0);
    CHECK(memcmp(lx_lt(ba, bb)->data, (const uint8_t[]){1, 0}, 2) == 0);
    lx_clear_error();
    CHECK(lx_add(ba, bb) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "add: expects float32, int32 or uint32, got bool with shape (2,)");
}

static void test_where(void) {
    lx_array *c = T_typed(LX_BOOL, 2, S(3, 1), (const uint8_t[]){1, 0, 1});
    lx_array *a = T_f32(2, S(1, 4), (const float[]){1.f, 2.f, 3.f, 4.f});
    lx_array *b = T_f32(0, NULL, (const float[]){-1.f});
    lx_array *y = lx_where(c, a, b);
    CHECK(y && lx_shape_eq(y, 2, S(3, 4)));
    const double want[] = {1, 2, 3, 4, -1, -1, -1, -1, 1, 2, 3, 4};
    CHECK(T_close(y, want, 12, 0, 0));
    /* Same-shape fast path and int operands. */
    lx_array *c2 = T_typed(LX_BOOL, 1, S(4), (const uint8_t[]){0, 1, 1, 0});
    lx_array *i1 = T_i32(1, S(4), (const int32_t[]){1, 2, 3, 4}), *i2 = T_i32(1, S(4), (const int32_t[]){-1, -2, -3, -4});
    lx_array *w = lx_where(c2, i1, i2);
    CHECK(w && w->dtype == LX_I32 && memcmp(w->data, (const int32_t[]){-1, 2, 3, -4}, 16) == 0);
    lx_array *wb = lx_where(c2, c2, T_typed(LX_BOOL, 0, NULL, (const uint8_t[]){1}));
    CHECK(wb && wb->dtype == LX_BOOL && memcmp(wb->data, (const uint8_t[]){1, 1, 1, 1}, 4) == 0);
    lx_array *wh = lx_where(c2, lx_cast(i1, LX_BF16), lx_cast(i2, LX_BF16));
    CHECK(wh && wh->dtype == LX_BF16 && lx_f32(lx_cast(wh, LX_F32))[3] == -4.f);

    lx_clear_error();
    CHECK(lx_where(a, a, b) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "where: condition must be bool, got float32 with shape (1, 4)");
    lx_clear_error();
    CHECK(lx_where(c, a, i1) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE,
                   "where: operands have different dtypes float32 (1, 4) and int32 (4,) (lx_cast one first)");
    lx_clear_error();
    CHECK(lx_where(c2, a, T_f32(1, S(3), NULL)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "where: operands could not be broadcast together with shapes (4,) (1, 4) (3,)");
}

static void test_errors(void) {
    lx_array *a = T_f32(2, S(2, 3), NULL), *b = T_f32(1, S(4), NULL);
    lx_clear_error();
    CHECK(lx_add(a, b) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "add: operands could not be broadcast together with shapes (2, 3) (4,)");
    lx_clear_error();
    CHECK(lx_ge(T_f32(3, S(3, 1, 5), NULL), T_f32(2, S(4, 2), NULL)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "ge: operands could not be broadcast together with shapes (3, 1, 5) (4, 2)");
    lx_clear_error();
    CHECK(lx_mul(T_f32(1, S(0), NULL), T_f32(1, S(2), NULL)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "mul: operands could not be broadcast together with shapes (0,) (2,)");
    lx_array *i = T_i32(1, S(3), (const int32_t[]){1, 2, 3});
    lx_clear_error();
    CHECK(lx_sub(a, i) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE,
                   "sub: operands have different dtypes float32 (2, 3) and int32 (3,) (lx_cast one first)");
    lx_clear_error();
    CHECK(lx_div(i, i) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "div: expects float32, got int32 with shape (3,)");
    lx_clear_error();
    CHECK(lx_pow(i, i) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "pow: expects float32, got int32 with shape (3,)");
}

static void test_failed_inputs(void) {
    lx_array *a = T_f32(2, S(2, 3), NULL), *bad = T_f32(1, S(4), NULL);
    lx_clear_error();
    lx_array *y = lx_exp(lx_add(a, lx_mul(a, bad)));
    CHECK(y == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "mul: operands could not be broadcast together with shapes (2, 3) (4,)");
    CHECK(lx_where(NULL, a, a) == NULL && lx_gelu(NULL, true) == NULL && lx_clip(NULL, 0, 1) == NULL);
    CHECK(lx_cast(NULL, LX_I32) == NULL && lx_add_scalar(NULL, 1) == NULL && lx_mul_scalar(NULL, 2) == NULL);
    CHECK(lx_eq(a, NULL) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "mul: operands could not be broadcast together with shapes (2, 3) (4,)");
    /* With no earlier failure, a NULL input is itself reported. */
    lx_clear_error();
    CHECK(lx_tanh(NULL) == NULL);
    CHECK_ERROR_IS(LX_ERR_FAILED_INPUT, "tanh: input is NULL");
}

static void test_abstract(void) {
    lx_array *a = T_abstract(LX_F32, 2, S(2, 1)), *b = T_f32(1, S(3), NULL);
    lx_array *y = lx_add(a, b);
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 2, S(2, 3)) && y->dtype == LX_F32);
    lx_array *e = lx_gelu(lx_exp(y), false);
    CHECK(e && lx_is_abstract(e) && lx_shape_eq(e, 2, S(2, 3)));
    lx_array *c = lx_lt(b, a);
    CHECK(c && lx_is_abstract(c) && c->dtype == LX_BOOL);
    lx_array *w = lx_where(c, T_f32(0, NULL, NULL), a);
    CHECK(w && lx_is_abstract(w) && lx_shape_eq(w, 2, S(2, 3)));
    lx_array *k = lx_cast(a, LX_I32);
    CHECK(k && lx_is_abstract(k) && k->dtype == LX_I32);
    CHECK(lx_is_abstract(lx_clip(a, 0, 1)) && lx_is_abstract(lx_mul_scalar(a, 2)));
    /* Shape errors are still errors on abstract inputs. */
    lx_clear_error();
    CHECK(lx_add(y, T_abstract(LX_F32, 1, S(4))) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "add: operands could not be broadcast together with shapes (2, 3) (4,)");
}

static void test_observer(void) {
    T_seen seen = {0};
    int h;
    CHECK_EQ_INT(lx_prim_observe(T_record, &seen, &h), LX_OK);
    lx_array *x = T_f32(1, S(2), (const float[]){1.f, -1.f});
    lx_array *y = lx_clip(lx_gelu(lx_add(x, x), true), -0.5f, 0.5f);
    lx_cast(y, LX_I32);
    lx_where(lx_gt(x, y), x, y);
    lx_add_scalar(x, 1);
    lx_prim_unobserve(h);
    lx_exp(x); /* unobserved */
    CHECK_EQ_INT(seen.count, 7);
    CHECK_STR(seen.names[0], "add");
    CHECK_EQ_INT(seen.ninputs[0], 2);
    CHECK_STR(seen.names[1], "gelu");
    CHECK_STR(seen.attrs[1], "approximate=True");
    CHECK_STR(seen.names[2], "clip");
    CHECK_STR(seen.attrs[2], "min=-0.5;max=0.5");
    CHECK_STR(seen.names[3], "cast");
    CHECK_STR(seen.attrs[3], "dtype='int32'");
    CHECK_STR(seen.names[4], "gt");
    CHECK_STR(seen.names[5], "where");
    CHECK_EQ_INT(seen.ninputs[5], 3);
    CHECK_STR(seen.names[6], "add");
}

static void test_memory_flat(void) {
    lx_array *x = T_rand(2, S(8, 16), -1, 1, 5), *b = T_rand(1, S(16), -1, 1, 6);
    int64_t before = lx_array_live_count();
    size_t pool_before = lx_pool_size();
    int failed = 0;
    for (int it = 0; it < 2000; it++) {
        size_t mark = lx_pool_open();
        lx_array *y = lx_gelu(lx_mul_scalar(lx_add(x, b), 0.5f), true);
        y = lx_where(lx_gt(y, lx_scalar(0)), lx_sigmoid(y), lx_cast(lx_cast(y, LX_I32), LX_F32));
        failed += y == NULL;
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(lx_array_live_count(), before);
    CHECK_EQ_INT(lx_pool_size(), pool_before);
}

int main(void) {
    RUN(test_unary_values);
    RUN(test_unary_ints);
    RUN(test_clip);
    RUN(test_cast);
    RUN(test_broadcasting);
    RUN(test_binary_special);
    RUN(test_scalars);
    RUN(test_comparisons);
    RUN(test_where);
    RUN(test_errors);
    RUN(test_failed_inputs);
    RUN(test_abstract);
    RUN(test_observer);
    RUN(test_memory_flat);
    return lx_test_finish();
}
