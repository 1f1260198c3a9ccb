/* Checked shape arithmetic (issue 12, item 1): sizes, pads, strides and dilations whose int64
 * arithmetic overflows fail with LX_ERR_SHAPE naming the op, the argument and the values, instead
 * of wrapping (undefined behaviour) into a wrong shape; huge but valid values give the exact
 * answer; the layer configs are checked where Flax/lax raise. Expected numbers are hand-computed. */
#include "lx_test.h"

#define BIG ((int64_t)4611686018427387904) /* 2^62 */

static lx_array *ones(int ndim, const int64_t *shape) { return lx_autorelease(lx_array_full_f32(ndim, shape, 1.0f)); }

static lx_status conv_status(const lx_conv_params *p, lx_array **y) {
    lx_array *x = ones(4, (int64_t[]){1, 8, 8, 1}), *k = ones(4, (int64_t[]){3, 3, 1, 1});
    lx_clear_error();
    *y = lx_conv_general(x, k, p);
    return *y ? LX_OK : lx_last_status();
}

static void test_conv_overflow(void) {
    lx_array *y;
    lx_conv_params p = {0};
    p.padding.mode = LX_PAD_EXPLICIT;
    for (int i = 0; i < 2; i++) p.padding.lo[i] = p.padding.hi[i] = -INT64_MAX;
    CHECK_FAILS(conv_status(&p, &y), LX_ERR_SHAPE, "conv_general: padding (-9223372036854775807, -9223372036854775807)");
    CHECK_ERROR_HAS("overflows int64");

    memset(&p, 0, sizeof p);
    p.lhs_dilation[0] = p.lhs_dilation[1] = BIG;
    CHECK_FAILS(conv_status(&p, &y), LX_ERR_SHAPE, "lhs_dilation 4611686018427387904");

    memset(&p, 0, sizeof p);
    p.rhs_dilation[0] = p.rhs_dilation[1] = BIG;
    CHECK_FAILS(conv_status(&p, &y), LX_ERR_SHAPE, "window 3 dilated by rhs_dilation 4611686018427387904");

    /* pads whose sum with the input overflows on one side only */
    memset(&p, 0, sizeof p);
    p.padding.mode = LX_PAD_EXPLICIT;
    p.padding.lo[0] = INT64_MAX, p.padding.hi[0] = -INT64_MAX;
    CHECK_FAILS(conv_status(&p, &y), LX_ERR_SHAPE, "conv_general: padding (9223372036854775807, -9223372036854775807)");
}

static void test_conv_exact(void) {
    lx_array *y;
    /* SAME with a stride past the input: ceil(8 / s) = 1 output, total pad max(0, 3 - 8) = 0, so
     * the one output is the sum of the top-left 3x3 window of ones: 9. */
    lx_conv_params p = {0};
    p.padding.mode = LX_PAD_SAME;
    p.strides[0] = p.strides[1] = INT64_MAX;
    CHECK_EQ_INT(conv_status(&p, &y), LX_OK);
    CHECK(y && lx_shape_eq(y, 4, (int64_t[]){1, 1, 1, 1}));
    if (y) CHECK_NEAR(lx_f32(y)[0], 9.0, 0);

    /* Negative padding that crops inside the input: 8 - 2 = 6 -> 4 outputs of 9. */
    memset(&p, 0, sizeof p);
    p.padding.mode = LX_PAD_EXPLICIT;
    for (int i = 0; i < 2; i++) p.padding.lo[i] = p.padding.hi[i] = -1;
    CHECK_EQ_INT(conv_status(&p, &y), LX_OK);
    CHECK(y && lx_shape_eq(y, 4, (int64_t[]){1, 4, 4, 1}));
    if (y) CHECK_NEAR(lx_f32(y)[15], 9.0, 0);

    /* Negative padding beyond the input: lax refuses it. */
    for (int i = 0; i < 2; i++) p.padding.lo[i] = p.padding.hi[i] = -5;
    CHECK_FAILS(conv_status(&p, &y), LX_ERR_SHAPE,
                "Negative padding is larger than the size of the corresponding dimension: got padding (-5, -5) for input size 8");

    /* Huge pads with a huge stride: 8 + 2^61 + 2^61 - 3 over 2^61 -> 3 outputs per axis; the
     * window at output 1 starts at padded row 2^61, input row 0, so it sums the top-left 3x3
     * ones (9); every other window reads only padding (0). No row buffer of 2^61 pixels. */
    memset(&p, 0, sizeof p);
    p.padding.mode = LX_PAD_EXPLICIT;
    for (int i = 0; i < 2; i++) p.padding.lo[i] = p.padding.hi[i] = BIG / 2, p.strides[i] = BIG / 2;
    CHECK_EQ_INT(conv_status(&p, &y), LX_OK);
    CHECK(y && lx_shape_eq(y, 4, (int64_t[]){1, 3, 3, 1}));
    for (int i = 0; y && i < 9; i++) CHECK_NEAR(lx_f32(y)[i], i == 4 ? 9.0 : 0.0, 0);
}

static void test_pool(void) {
    lx_array *x = ones(4, (int64_t[]){1, 8, 8, 1});
    lx_padding pad = {.mode = LX_PAD_EXPLICIT};
    pad.lo[0] = pad.hi[0] = pad.lo[1] = pad.hi[1] = INT64_MAX / 2 + 1;
    lx_clear_error();
    CHECK(lx_avg_pool(x, 2, (int64_t[]){2, 2}, NULL, &pad, true) == NULL);
    CHECK(lx_last_status() == LX_ERR_SHAPE);
    CHECK_ERROR_HAS("avg_pool: padding (4611686018427387904, 4611686018427387904)");
    /* SAME with a huge stride: one window of 2x2 ones. */
    pad.mode = LX_PAD_SAME;
    lx_array *y = lx_max_pool(x, 2, (int64_t[]){2, 2}, (int64_t[]){INT64_MAX, INT64_MAX}, &pad);
    CHECK(y && lx_shape_eq(y, 4, (int64_t[]){1, 1, 1, 1}) && lx_f32(y)[0] == 1.0f);
    /* windows whose product overflows */
    pad.mode = LX_PAD_VALID;
    lx_clear_error();
    CHECK_NULL_FAILS(lx_avg_pool(ones(3, (int64_t[]){4, 4, 1}), 2, (int64_t[]){BIG, BIG}, NULL, &pad, true), LX_ERR_SHAPE,
                     "avg_pool: window (4611686018427387904, 4611686018427387904)");
}

static void test_pad_reshape_slice_array(void) {
    lx_array *x = ones(1, (int64_t[]){8});
    lx_clear_error();
    CHECK(lx_pad(x, (int64_t[]){INT64_MAX / 2}, (int64_t[]){INT64_MAX / 2}, 0.0f) == NULL);
    CHECK(lx_last_status() == LX_ERR_SHAPE);
    CHECK_ERROR_HAS("pad: pad widths (4611686018427387903, 4611686018427387903) at axis 0 of shape (8,) overflow int64");

    lx_array *empty = lx_autorelease(lx_array_new(LX_F32, 1, (int64_t[]){0}));
    int64_t huge[3] = {(int64_t)1 << 32, (int64_t)1 << 32, (int64_t)1 << 32};
    lx_clear_error();
    CHECK(lx_reshape(empty, 3, huge) == NULL);
    CHECK(lx_last_status() == LX_ERR_SHAPE);
    CHECK_ERROR_HAS("reshape: the element count of shape (4294967296, 4294967296, 4294967296) overflows int64");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_array_reshape_view(empty, 3, huge), LX_ERR_SHAPE, "reshape: element count overflows int64");

    /* numpy's "array is too big" holds with a zero dim too: sub-products must fit */
    lx_clear_error();
    CHECK_NULL_FAILS(lx_array_abstract(LX_F32, 3, (int64_t[]){0, BIG, BIG}), LX_ERR_SHAPE,
                     "array: shape (0, 4611686018427387904, 4611686018427387904) is too big");
    lx_array *ok = lx_array_abstract(LX_F32, 3, (int64_t[]){0, 1 << 20, 1 << 20});
    CHECK(ok && ok->size == 0);
    lx_release(ok);

    /* slices with extreme steps: x = [0, 1, 2, 3, 4] */
    float v[5] = {0, 1, 2, 3, 4};
    lx_array *a = lx_autorelease(lx_array_from_f32(1, (int64_t[]){5}, v));
    lx_array *s1 = lx_slice(a, 1, (lx_range[]){LX_RANGE_STEP(1, LX_NIL, INT64_MAX)});
    CHECK(s1 && s1->size == 1 && lx_f32(s1)[0] == 1.0f);
    lx_array *s2 = lx_slice(a, 1, (lx_range[]){LX_RANGE_STEP(LX_NIL, LX_NIL, INT64_MIN + 1)});
    CHECK(s2 && s2->size == 1 && lx_f32(s2)[0] == 4.0f);
    lx_array *s3 = lx_slice(a, 1, (lx_range[]){LX_RANGE_STEP(4, 0, -3)}); /* 4, 1 */
    CHECK(s3 && s3->size == 2 && lx_f32(s3)[0] == 4.0f && lx_f32(s3)[1] == 1.0f);
    lx_array *s4 = lx_slice(a, 1, (lx_range[]){LX_RANGE_STEP(0, 5, 2)}); /* 0, 2, 4 */
    CHECK(s4 && s4->size == 3 && lx_f32(s4)[2] == 4.0f);
}

static void test_layer_configs(void) {
    /* Linen Conv: lax's positivity check on strides / dilations, at call (init) time */
    int64_t k33[2] = {3, 3};
    lx_call c = {2, LX_VALUES(lx_int_v(4), lx_ints_v(2, k33)), 1, LX_KWARGS(LX_KW_INT("strides", 0))};
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(&linen_Conv, &c, &m), LX_OK);
    lx_array *x = ones(4, (int64_t[]){1, 8, 8, 3});
    lx_tree *vars = NULL;
    CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &vars), LX_ERR_INVALID_ARGUMENT,
                "conv_general_dilated window_strides must have every element be positive, got (0, 0)");
    linen_module_release(m);
    /* Linen Conv CAUSAL whose dilated kernel overflows */
    int64_t k3[1] = {3};
    lx_call cc = {2, LX_VALUES(lx_int_v(4), lx_ints_v(1, k3)), 2,
                  LX_KWARGS(LX_KW_STR("padding", "CAUSAL"), LX_KW_INT("kernel_dilation", BIG))};
    CHECK_EQ_INT(linen_module_new(&linen_Conv, &cc, &m), LX_OK);
    lx_array *x1 = ones(3, (int64_t[]){1, 8, 3});
    CHECK_FAILS(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x1), NULL, &vars), LX_ERR_SHAPE,
                "CAUSAL padding for kernel_size 3 dilated by kernel_dilation 4611686018427387904 overflows int64");
    linen_module_release(m);

    /* NNX Conv: built (Flax checks nothing at construction), refused at call */
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    lx_call nc = {3, LX_VALUES(lx_int_v(3), lx_int_v(4), lx_ints_v(2, k33)), 1, LX_KWARGS(LX_KW_INT("kernel_dilation", -2))};
    nnx_module *nm = NULL;
    CHECK_EQ_INT(nnx_module_new(&NNX_CONV_TYPE, &nc, r, &nm), LX_OK);
    lx_clear_error();
    CHECK_NULL_FAILS(nnx_conv_forward((nnx_conv *)nm, x), LX_ERR_INVALID_ARGUMENT,
                     "conv_general_dilated rhs_dilation must have every element be positive, got (-2, -2)");
    nnx_module_release(nm);
    nnx_rngs_release(r);
}

int main(void) {
    size_t mark = lx_pool_open();
    RUN(test_conv_overflow);
    RUN(test_conv_exact);
    RUN(test_pool);
    RUN(test_pad_reshape_slice_array);
    RUN(test_layer_configs);
    lx_pool_close(mark);
    return lx_test_finish();
}
