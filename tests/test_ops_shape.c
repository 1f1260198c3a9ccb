/* Shape ops: hand-worked cases and index-arithmetic references, views, errors, failed and
 * abstract inputs, observers, flat memory. */
#include "ops_util.h"

#define S(...) ((const int64_t[]){__VA_ARGS__})

/* 0, 1, 2, ... as f32. */
static lx_array *iota(int ndim, const int64_t *shape) {
    lx_array *a = T_f32(ndim, shape, NULL);
    for (int64_t i = 0; i < a->size; i++) lx_f32(a)[i] = (float)i;
    return a;
}

static bool values_are(const lx_array *a, int64_t n, const float *want) {
    if (!a || a->size != n) return false;
    for (int64_t i = 0; i < n; i++)
        if (lx_f32(a)[i] != want[i]) {
            fprintf(stderr, "  element %lld: %g != %g\n", (long long)i, lx_f32(a)[i], want[i]);
            return false;
        }
    return true;
}
#define VALUES(a, ...) values_are((a), (int64_t)(sizeof((const float[]){__VA_ARGS__}) / sizeof(float)), (const float[]){__VA_ARGS__})

static void test_reshape(void) {
    lx_array *x = iota(2, S(2, 3));
    lx_array *r = lx_reshape(x, LX_SHAPE(3, -1));
    CHECK(r && lx_shape_eq(r, 2, S(3, 2)) && r->data == x->data);
    lx_f32(x)[5] = 50.f; /* a view: writes show through */
    CHECK(lx_f32(r)[5] == 50.f);
    lx_array *flat = lx_reshape(x, LX_SHAPE(-1));
    CHECK(flat && lx_shape_eq(flat, 1, S(6)));
    lx_array *sc = lx_reshape(T_f32(1, S(1), NULL), 0, NULL);
    CHECK(sc && sc->ndim == 0);
    lx_array *z = lx_reshape(T_f32(2, S(0, 4), NULL), LX_SHAPE(2, 0, 3));
    CHECK(z && z->size == 0);
    /* A view outlives its pool's source when retained. */
    lx_array *keep;
    {
        size_t mark = lx_pool_open();
        lx_array *src = iota(1, S(4));
        keep = lx_retain(lx_reshape(src, LX_SHAPE(2, 2)));
        lx_pool_close(mark);
    }
    CHECK(lx_f32(keep)[3] == 3.f);
    lx_release(keep);

    lx_clear_error();
    CHECK(lx_reshape(x, LX_SHAPE(4, 2)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "reshape: cannot reshape array of shape (2, 3) (size 6) into shape (4, 2)");
    lx_clear_error();
    CHECK(lx_reshape(x, LX_SHAPE(-1, -1)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE,
                   "reshape: can only specify one unknown dimension in shape (-1, -1) for array of shape (2, 3)");
    lx_clear_error();
    CHECK(lx_reshape(x, LX_SHAPE(-2, -3)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "reshape: negative dimension in shape (-2, -3) for array of shape (2, 3)");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_reshape(x, LX_SHAPE(4, -1)), LX_ERR_SHAPE,
                     "cannot reshape array of shape (2, 3) (size 6) into shape (4, -1)");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_reshape(T_f32(1, S(0), NULL), LX_SHAPE(0, -1)), LX_ERR_SHAPE, "into shape (0, -1)");
    lx_clear_error();
    CHECK(lx_reshape(x, 9, S(1, 1, 1, 1, 1, 1, 1, 1, 6)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "reshape: 9 dims requested for array of shape (2, 3) (at most 8)");
    lx_array *a = lx_reshape(T_abstract(LX_I32, 2, S(4, 6)), LX_SHAPE(2, -1, 3));
    CHECK(a && lx_is_abstract(a) && a->dtype == LX_I32 && lx_shape_eq(a, 3, S(2, 4, 3)));
}

/* out[i] = x[unravel(i) permuted] with plain index arithmetic. */
static bool transpose_matches(int nd, const int64_t *shape, const int64_t *perm) {
    lx_array *x = iota(nd, shape);
    lx_array *t = lx_transpose(x, nd, perm);
    if (!t) return false;
    int64_t xs[LX_MAX_DIMS], s = 1;
    for (int d = nd - 1; d >= 0; d--) xs[d] = s, s *= shape[d];
    for (int64_t i = 0; i < t->size; i++) {
        int64_t rem = i, src = 0;
        for (int d = nd - 1; d >= 0; d--) {
            src += (rem % shape[perm[d]]) * xs[perm[d]];
            rem /= shape[perm[d]];
        }
        if (lx_f32(t)[i] != (float)src) return false;
    }
    return true;
}

static void test_transpose(void) {
    /* Tiled (input contiguous along another dim) and plain strided paths. */
    CHECK(transpose_matches(3, S(17, 33, 20), S(0, 2, 1)));
    CHECK(transpose_matches(3, S(17, 33, 20), S(2, 0, 1)));
    CHECK(transpose_matches(3, S(17, 33, 20), S(1, 2, 0)));
    CHECK(transpose_matches(4, S(3, 20, 5, 18), S(3, 1, 0, 2)));
    CHECK(transpose_matches(4, S(2, 40, 3, 50), S(0, 3, 2, 1)));
    CHECK(transpose_matches(3, S(4, 5, 6), S(2, 1, 0)));
    lx_array *x = iota(2, S(2, 3));
    lx_array *t = lx_transpose(x, 0, NULL);
    CHECK(t && lx_shape_eq(t, 2, S(3, 2)) && VALUES(t, 0, 3, 1, 4, 2, 5));
    lx_array *x3 = iota(3, S(2, 3, 4));
    lx_array *p = lx_transpose(x3, LX_AXES(1, -1, 0));
    CHECK(p && lx_shape_eq(p, 3, S(3, 4, 2)));
    bool ok = p != NULL;
    for (int i = 0; ok && i < 3; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 2; k++) ok = ok && lx_f32(p)[(i * 4 + j) * 2 + k] == (float)((k * 3 + i) * 4 + j);
    CHECK(ok);
    lx_array *big = iota(2, S(300, 517));
    lx_array *bt = lx_transpose(big, LX_AXES(1, 0));
    ok = bt && lx_shape_eq(bt, 2, S(517, 300));
    for (int64_t i = 0; ok && i < 517; i++)
        for (int64_t j = 0; j < 300; j++) ok = ok && lx_f32(bt)[i * 300 + j] == (float)(j * 517 + i);
    CHECK(ok);
    lx_array *ti = lx_transpose(T_i32(2, S(1, 2), (const int32_t[]){7, 8}), 0, NULL);
    CHECK(ti && ti->dtype == LX_I32 && lx_shape_eq(ti, 2, S(2, 1)) && lx_i32(ti)[1] == 8);
    lx_array *tb = lx_transpose(T_typed(LX_BOOL, 2, S(2, 2), (const uint8_t[]){1, 0, 0, 0}), 0, NULL);
    CHECK(tb && memcmp(tb->data, (const uint8_t[]){1, 0, 0, 0}, 4) == 0);
    CHECK(lx_transpose(lx_scalar(2), 0, NULL) != NULL);

    lx_clear_error();
    CHECK(lx_transpose(x3, LX_AXES(1, 0)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "transpose: axes (1, 0) don't match array of shape (2, 3, 4)");
    lx_clear_error();
    CHECK(lx_transpose(x3, LX_AXES(0, 2, -1)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "transpose: repeated axis in axes (0, 2, -1) for array of shape (2, 3, 4)");
    lx_clear_error();
    CHECK(lx_transpose(x3, LX_AXES(0, 1, 3)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "transpose: axis 3 is out of bounds for array of dimension 3");
    lx_array *a = lx_transpose(T_abstract(LX_F32, 3, S(2, 3, 4)), 0, NULL);
    CHECK(a && lx_is_abstract(a) && lx_shape_eq(a, 3, S(4, 3, 2)));
}

static void test_expand_squeeze(void) {
    lx_array *x = iota(2, S(2, 3));
    lx_array *e0 = lx_expand_dims(x, 0), *e1 = lx_expand_dims(x, -1), *em = lx_expand_dims(x, 1);
    CHECK(e0 && lx_shape_eq(e0, 3, S(1, 2, 3)) && e0->data == x->data);
    CHECK(e1 && lx_shape_eq(e1, 3, S(2, 3, 1)));
    CHECK(em && lx_shape_eq(em, 3, S(2, 1, 3)));
    CHECK(lx_shape_eq(lx_expand_dims(lx_scalar(1), 0), 1, S(1)));
    lx_array *y = lx_reshape(x, LX_SHAPE(1, 2, 1, 3, 1));
    lx_array *s_all = lx_squeeze(y, 0, NULL);
    CHECK(s_all && lx_shape_eq(s_all, 2, S(2, 3)));
    lx_array *s_some = lx_squeeze(y, LX_AXES(-1, 0));
    CHECK(s_some && lx_shape_eq(s_some, 3, S(2, 1, 3)) && lx_f32(s_some)[4] == 4.f);
    CHECK(lx_squeeze(lx_reshape(x, LX_SHAPE(1, 1, 6)), LX_AXES(0, 1))->ndim == 1);
    CHECK(lx_squeeze(lx_reshape(lx_scalar(1), LX_SHAPE(1, 1)), 0, NULL)->ndim == 0);

    lx_clear_error();
    CHECK(lx_expand_dims(x, 3) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "expand_dims: axis 3 is out of bounds for array of dimension 3");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_expand_dims(x, -4), LX_ERR_SHAPE, "axis -4 is out of bounds");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_expand_dims(T_f32(8, S(1, 1, 1, 1, 1, 1, 1, 1), NULL), 0), LX_ERR_SHAPE,
                     "expand_dims: array of shape (1, 1, 1, 1, 1, 1, 1, 1) already has the most dims");
    lx_clear_error();
    CHECK(lx_squeeze(y, LX_AXES(1)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE,
                   "squeeze: cannot select an axis to squeeze out which has size not equal to one (axis 1 of shape (1, 2, 1, 3, 1))");
    lx_clear_error();
    CHECK(lx_squeeze(y, LX_AXES(0, -5)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "squeeze: duplicate value in 'axis' (0, -5) for array of shape (1, 2, 1, 3, 1)");
    lx_clear_error();
    CHECK(lx_squeeze(y, LX_AXES(5)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "squeeze: axis 5 is out of bounds for array of dimension 5");
    lx_array *a = lx_squeeze(lx_expand_dims(T_abstract(LX_F32, 1, S(3)), 0), 0, NULL);
    CHECK(a && lx_is_abstract(a) && lx_shape_eq(a, 1, S(3)));
}

static void test_broadcast_to(void) {
    lx_array *x = T_f32(2, S(3, 1), (const float[]){1, 2, 3});
    lx_array *b = lx_broadcast_to(x, LX_SHAPE(2, 3, 4));
    bool ok = b && lx_shape_eq(b, 3, S(2, 3, 4));
    for (int64_t i = 0; ok && i < 24; i++) ok = lx_f32(b)[i] == (float)((i / 4) % 3 + 1);
    CHECK(ok);
    lx_array *s = lx_broadcast_to(lx_scalar(7), LX_SHAPE(2, 2));
    CHECK(s && VALUES(s, 7, 7, 7, 7));
    lx_array *same = lx_broadcast_to(x, LX_SHAPE(3, 1));
    CHECK(same && same->data != x->data && VALUES(same, 1, 2, 3));
    lx_array *z = lx_broadcast_to(x, LX_SHAPE(0, 3, 5));
    CHECK(z && z->size == 0);
    lx_array *bi = lx_broadcast_to(T_typed(LX_BOOL, 1, S(2), (const uint8_t[]){1, 0}), LX_SHAPE(2, 2));
    CHECK(bi && memcmp(bi->data, (const uint8_t[]){1, 0, 1, 0}, 4) == 0);
    lx_clear_error();
    CHECK(lx_broadcast_to(x, LX_SHAPE(3, 4, 2)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE,
                   "broadcast_to: incompatible shapes for broadcasting: (3, 1) and requested shape (3, 4, 2)");
    lx_clear_error();
    CHECK(lx_broadcast_to(x, LX_SHAPE(4)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "broadcast_to: incompatible shapes for broadcasting: (3, 1) and requested shape (4,)");
    lx_array *a = lx_broadcast_to(T_abstract(LX_F32, 1, S(1)), LX_SHAPE(5, 2));
    CHECK(a && lx_is_abstract(a) && lx_shape_eq(a, 2, S(5, 2)));
}

static void test_slice(void) {
    lx_array *x = iota(1, S(10));
    CHECK(VALUES(lx_slice(x, 1, &LX_RANGE_STEP(LX_NIL, LX_NIL, -1)), 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    CHECK(VALUES(lx_slice(x, 1, &LX_RANGE_STEP(8, 2, -2)), 8, 6, 4));
    CHECK(VALUES(lx_slice(x, 1, &LX_RANGE(-3, LX_NIL)), 7, 8, 9));
    CHECK(VALUES(lx_slice(x, 1, &LX_RANGE(-100, 3)), 0, 1, 2));
    CHECK(VALUES(lx_slice(x, 1, &LX_RANGE_STEP(LX_NIL, LX_NIL, -3)), 9, 6, 3, 0));
    CHECK(VALUES(lx_slice(x, 1, &LX_RANGE_STEP(LX_NIL, -11, -4)), 9, 5, 1));
    CHECK(VALUES(lx_slice(x, 1, &LX_RANGE_STEP(100, 5, -2)), 9, 7));
    CHECK(VALUES(lx_slice(x, 1, &LX_RANGE_STEP(1, 9, 3)), 1, 4, 7));
    lx_array *all = lx_slice(x, 1, &LX_RANGE(0, 100));
    CHECK(all && all->size == 10 && all->data != x->data);
    lx_array *e = lx_slice(x, 1, &LX_RANGE(5, 2));
    CHECK(e && lx_shape_eq(e, 1, S(0)));
    lx_array *m = iota(2, S(3, 4));
    lx_range r[] = {LX_RANGE(1, LX_NIL), LX_RANGE_STEP(LX_NIL, LX_NIL, -2)};
    lx_array *s = lx_slice(m, 2, r);
    CHECK(s && lx_shape_eq(s, 2, S(2, 2)) && VALUES(s, 7, 5, 11, 9));
    lx_array *rows = lx_slice(m, 1, &LX_RANGE(-1, LX_NIL)); /* the remaining axes whole */
    CHECK(rows && lx_shape_eq(rows, 2, S(1, 4)) && VALUES(rows, 8, 9, 10, 11));
    CHECK(lx_slice(lx_scalar(3), 0, NULL) != NULL);

    lx_clear_error();
    CHECK(lx_slice(x, 1, &LX_RANGE_STEP(0, 5, 0)) == NULL);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "slice: slice step cannot be zero (axis 0 of shape (10,))");
    lx_clear_error();
    CHECK(lx_slice(x, 2, r) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE,
                   "slice: too many indices for array: array of shape (10,) is 1-dimensional, but 2 were indexed");
    lx_array *a = lx_slice(T_abstract(LX_F32, 2, S(3, 4)), 2, r);
    CHECK(a && lx_is_abstract(a) && lx_shape_eq(a, 2, S(2, 2)));
}

static void test_concatenate_stack(void) {
    lx_array *a = iota(2, S(2, 2)), *b = lx_add_scalar(iota(2, S(2, 1)), 10), *c = T_f32(2, S(2, 0), NULL);
    lx_array *ab = lx_concatenate(3, (lx_array *[]){a, b, c}, -1);
    CHECK(ab && lx_shape_eq(ab, 2, S(2, 3)) && VALUES(ab, 0, 1, 10, 2, 3, 11));
    lx_array *rows = lx_concatenate(2, (lx_array *[]){a, lx_reshape(b, LX_SHAPE(1, 2))}, 0);
    CHECK(rows && lx_shape_eq(rows, 2, S(3, 2)) && VALUES(rows, 0, 1, 2, 3, 10, 11));
    lx_array *one = lx_concatenate(1, (lx_array *[]){a}, 0);
    CHECK(one && one->data != a->data && VALUES(one, 0, 1, 2, 3));
    lx_array *ints = lx_concatenate(2, (lx_array *[]){T_i32(1, S(1), (const int32_t[]){4}), T_i32(1, S(2), (const int32_t[]){5, 6})}, 0);
    CHECK(ints && ints->dtype == LX_I32 && memcmp(ints->data, (const int32_t[]){4, 5, 6}, 12) == 0);

    lx_array *st = lx_stack(2, (lx_array *[]){a, a}, 0);
    CHECK(st && lx_shape_eq(st, 3, S(2, 2, 2)) && VALUES(st, 0, 1, 2, 3, 0, 1, 2, 3));
    lx_array *st1 = lx_stack(2, (lx_array *[]){a, lx_add_scalar(a, 10)}, 1);
    CHECK(st1 && lx_shape_eq(st1, 3, S(2, 2, 2)) && VALUES(st1, 0, 1, 10, 11, 2, 3, 12, 13));
    lx_array *stl = lx_stack(2, (lx_array *[]){a, lx_add_scalar(a, 10)}, -1);
    CHECK(stl && lx_shape_eq(stl, 3, S(2, 2, 2)) && VALUES(stl, 0, 10, 1, 11, 2, 12, 3, 13));
    lx_array *ss = lx_stack(3, (lx_array *[]){lx_scalar(1), lx_scalar(2), lx_scalar(3)}, 0);
    CHECK(ss && lx_shape_eq(ss, 1, S(3)) && VALUES(ss, 1, 2, 3));

    lx_clear_error();
    CHECK(lx_concatenate(0, NULL, 0) == NULL);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "concatenate: need at least one array to concatenate");
    lx_clear_error();
    CHECK(lx_concatenate(2, (lx_array *[]){a, T_i32(2, S(2, 2), (const int32_t[]){0, 0, 0, 0})}, 0) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE,
                   "concatenate: arrays have different dtypes: float32 (2, 2) at index 0 and int32 (2, 2) at index 1");
    lx_clear_error();
    CHECK(lx_concatenate(2, (lx_array *[]){a, b}, 0) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "concatenate: all the input array dimensions except for the concatenation axis must match "
                                    "exactly, but along dimension 1, the array at index 0 has shape (2, 2) and the array at "
                                    "index 1 has shape (2, 1)");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_concatenate(2, (lx_array *[]){a, iota(1, S(2))}, 0), LX_ERR_SHAPE,
                     "concatenate: all the input arrays must have same number of dimensions");
    lx_clear_error();
    CHECK(lx_concatenate(2, (lx_array *[]){lx_scalar(1), lx_scalar(2)}, 0) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "concatenate: zero-dimensional arrays cannot be concatenated");
    lx_clear_error();
    CHECK(lx_concatenate(1, (lx_array *[]){a}, 2) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "concatenate: axis 2 is out of bounds for array of dimension 2");
    lx_clear_error();
    CHECK(lx_stack(2, (lx_array *[]){a, b}, 0) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "stack: all input arrays must have the same shape, but the array at index 0 has shape (2, 2) "
                                    "and the array at index 1 has shape (2, 1)");
    lx_clear_error();
    CHECK(lx_stack(0, NULL, 0) == NULL);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "stack: need at least one array to stack");
    lx_clear_error();
    CHECK(lx_stack(1, (lx_array *[]){a}, 3) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "stack: axis 3 is out of bounds for array of dimension 3");

    lx_array *abs_ = T_abstract(LX_F32, 2, S(2, 5));
    lx_array *ca = lx_concatenate(2, (lx_array *[]){a, abs_}, 1);
    CHECK(ca && lx_is_abstract(ca) && lx_shape_eq(ca, 2, S(2, 7)));
    lx_array *sa = lx_stack(2, (lx_array *[]){abs_, abs_}, 1);
    CHECK(sa && lx_is_abstract(sa) && lx_shape_eq(sa, 3, S(2, 2, 5)));
}

static void test_split(void) {
    lx_array *x = iota(2, S(6, 2));
    lx_array *out[4] = {0};
    CHECK_EQ_INT(lx_split(x, 3, 0, out), LX_OK);
    CHECK(lx_shape_eq(out[0], 2, S(2, 2)) && VALUES(out[0], 0, 1, 2, 3) && VALUES(out[2], 8, 9, 10, 11));
    CHECK_EQ_INT(lx_split(x, 2, -1, out), LX_OK);
    CHECK(lx_shape_eq(out[1], 2, S(6, 1)) && VALUES(out[1], 1, 3, 5, 7, 9, 11));
    lx_array *y = iota(1, S(7));
    CHECK_EQ_INT(lx_split_at(y, 2, S(2, 5), 0, out), LX_OK);
    CHECK(VALUES(out[0], 0, 1) && VALUES(out[1], 2, 3, 4) && VALUES(out[2], 5, 6));
    CHECK_EQ_INT(lx_split_at(y, 2, S(3, 1), 0, out), LX_OK); /* decreasing: an empty middle piece */
    CHECK(VALUES(out[0], 0, 1, 2) && out[1]->size == 0 && VALUES(out[2], 1, 2, 3, 4, 5, 6));
    CHECK_EQ_INT(lx_split_at(y, 2, S(-2, 100), 0, out), LX_OK);
    CHECK(out[0]->size == 5 && VALUES(out[1], 5, 6) && out[2]->size == 0);
    CHECK_EQ_INT(lx_split_at(y, 0, NULL, 0, out), LX_OK);
    CHECK(out[0]->size == 7);

    CHECK_FAILS(lx_split(y, 2, 0, out), LX_ERR_SHAPE,
                "split: array split does not result in an equal division: size 7 along axis 0 of shape (7,) into 2 sections");
    CHECK(out[0] == NULL && out[1] == NULL);
    CHECK_FAILS(lx_split(y, 0, 0, out), LX_ERR_INVALID_ARGUMENT, "split: number sections must be larger than 0, got 0");
    CHECK_FAILS(lx_split(y, 1, 1, out), LX_ERR_SHAPE, "split: axis 1 is out of bounds for array of dimension 1");
    CHECK_FAILS(lx_split_at(y, 1, S(2), -2, out), LX_ERR_SHAPE, "split: axis -2 is out of bounds");
    CHECK(out[0] == NULL && out[1] == NULL);
    /* A failed input: NULL pieces, the first message kept. */
    lx_clear_error();
    lx_fail(LX_ERR_SHAPE, "earlier failure");
    out[0] = x;
    CHECK_EQ_INT(lx_split(NULL, 2, 0, out), LX_ERR_FAILED_INPUT);
    CHECK(out[0] == NULL && out[1] == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "earlier failure");
    CHECK_EQ_INT(lx_split_at(NULL, 1, S(1), 0, out), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "earlier failure");

    lx_array *a = T_abstract(LX_F32, 2, S(4, 6));
    CHECK_EQ_INT(lx_split(a, 3, 1, out), LX_OK);
    CHECK(lx_is_abstract(out[2]) && lx_shape_eq(out[2], 2, S(4, 2)));
}

static void test_pad(void) {
    lx_array *x = iota(2, S(2, 3));
    lx_array *p = lx_pad(x, S(1, 0), S(0, 2), 7.f);
    CHECK(p && lx_shape_eq(p, 2, S(3, 5)));
    CHECK(VALUES(p, 7, 7, 7, 7, 7, 0, 1, 2, 7, 7, 3, 4, 5, 7, 7));
    lx_array *pi = lx_pad(T_i32(1, S(2), (const int32_t[]){1, 2}), S(2), S(1), -3.9f);
    CHECK(pi && pi->dtype == LX_I32 && memcmp(pi->data, (const int32_t[]){-3, -3, 1, 2, -3}, 20) == 0);
    /* int8: the pad value converted by lx_cast's rules (the padded cells were left unwritten) */
    lx_array *p8 = lx_pad(T_typed(LX_I8, 2, S(2, 3), (const int8_t[]){1, -2, 3, 4, 5, -6}), S(1, 0), S(0, 1), 7.f);
    CHECK(p8 && p8->dtype == LX_I8 && lx_shape_eq(p8, 2, S(3, 4)) &&
          memcmp(p8->data, (const int8_t[]){7, 7, 7, 7, 1, -2, 3, 7, 4, 5, -6, 7}, 12) == 0);
    lx_array *p8s = lx_pad(T_typed(LX_I8, 1, S(1), (const int8_t[]){0}), S(1), S(1), -300.f); /* saturates */
    CHECK(p8s && memcmp(p8s->data, (const int8_t[]){-128, 0, -128}, 3) == 0);
    lx_array *pb = lx_pad(T_typed(LX_BOOL, 1, S(1), (const uint8_t[]){0}), S(1), S(1), 1.f);
    CHECK(pb && memcmp(pb->data, (const uint8_t[]){1, 0, 1}, 3) == 0);
    lx_array *pe = lx_pad(T_f32(2, S(0, 2), NULL), S(1, 1), S(0, 0), 2.f);
    CHECK(pe && lx_shape_eq(pe, 2, S(1, 3)) && VALUES(pe, 2, 2, 2));
    lx_array *p0 = lx_pad(x, S(0, 0), S(0, 0), 0.f);
    CHECK(p0 && p0->data != x->data && VALUES(p0, 0, 1, 2, 3, 4, 5));
    CHECK(lx_pad(lx_scalar(1), NULL, NULL, 0) != NULL);
    lx_clear_error();
    CHECK(lx_pad(x, S(0, -1), S(0, 0), 0.f) == NULL);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "pad: negative pad width (-1, 0) at axis 1 of shape (2, 3)");
    lx_clear_error();
    CHECK(lx_pad(x, NULL, S(0, 0), 0.f) == NULL);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "pad: before/after widths are NULL for array of shape (2, 3)");
    lx_array *a = lx_pad(T_abstract(LX_F32, 1, S(3)), S(1), S(4), 0);
    CHECK(a && lx_is_abstract(a) && lx_shape_eq(a, 1, S(8)));
}

static void test_take_one_hot(void) {
    lx_array *emb = iota(2, S(5, 3));
    lx_array *idx = T_i32(2, S(2, 2), (const int32_t[]){4, 0, -1, 2});
    lx_array *t = lx_take(emb, idx, 0);
    CHECK(t && lx_shape_eq(t, 3, S(2, 2, 3)));
    CHECK(VALUES(t, 12, 13, 14, 0, 1, 2, 12, 13, 14, 6, 7, 8));
    lx_array *t1 = lx_take(emb, T_i32(1, S(2), (const int32_t[]){2, 0}), -1);
    CHECK(t1 && lx_shape_eq(t1, 2, S(5, 2)) && VALUES(t1, 2, 0, 5, 3, 8, 6, 11, 9, 14, 12));
    lx_array *ts = lx_take(emb, T_i32(0, NULL, (const int32_t[]){1}), 0); /* a scalar index drops the axis */
    CHECK(ts && lx_shape_eq(ts, 1, S(3)) && VALUES(ts, 3, 4, 5));
    lx_array *te = lx_take(emb, T_i32(1, S(0), NULL), 0);
    CHECK(te && lx_shape_eq(te, 2, S(0, 3)));
    lx_array *ti = lx_take(T_i32(1, S(3), (const int32_t[]){7, 8, 9}), T_i32(1, S(2), (const int32_t[]){2, 2}), 0);
    CHECK(ti && ti->dtype == LX_I32 && lx_i32(ti)[0] == 9);
    lx_clear_error();
    CHECK(lx_take(emb, T_i32(1, S(2), (const int32_t[]){1, 5}), 0) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "take: index 5 is out of bounds for axis 0 with size 5 (array of shape (5, 3))");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_take(emb, T_i32(1, S(1), (const int32_t[]){-4}), 1), LX_ERR_SHAPE,
                     "take: index -4 is out of bounds for axis 1 with size 3");
    lx_clear_error();
    CHECK(lx_take(emb, emb, 0) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "take: indices must be int32, got float32 with shape (5, 3)");
    lx_clear_error();
    CHECK(lx_take(emb, idx, 2) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "take: axis 2 is out of bounds for array of dimension 2");
    lx_array *ta = lx_take(T_abstract(LX_F32, 2, S(100, 8)), idx, 0);
    CHECK(ta && lx_is_abstract(ta) && lx_shape_eq(ta, 3, S(2, 2, 8)));
    lx_array *tai = lx_take(emb, T_abstract(LX_I32, 1, S(4)), 0);
    CHECK(tai && lx_is_abstract(tai) && lx_shape_eq(tai, 2, S(4, 3)));

    lx_array *oh = lx_one_hot(T_i32(1, S(4), (const int32_t[]){0, 2, -1, 3}), 3);
    CHECK(oh && oh->dtype == LX_F32 && lx_shape_eq(oh, 2, S(4, 3)));
    CHECK(VALUES(oh, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0));
    lx_array *oh2 = lx_one_hot(T_i32(2, S(1, 2), (const int32_t[]){1, 0}), 2);
    CHECK(oh2 && lx_shape_eq(oh2, 3, S(1, 2, 2)) && VALUES(oh2, 0, 1, 1, 0));
    lx_array *oh0 = lx_one_hot(T_i32(1, S(2), (const int32_t[]){0, 1}), 0);
    CHECK(oh0 && lx_shape_eq(oh0, 2, S(2, 0)));
    lx_clear_error();
    CHECK(lx_one_hot(emb, 3) == NULL);
    CHECK_ERROR_IS(LX_ERR_DTYPE, "one_hot: labels must be int32, got float32 with shape (5, 3)");
    lx_clear_error();
    CHECK(lx_one_hot(idx, -1) == NULL);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "one_hot: num_classes must be non-negative, got -1");
    lx_array *oa = lx_one_hot(T_abstract(LX_I32, 1, S(5)), 10);
    CHECK(oa && lx_is_abstract(oa) && lx_shape_eq(oa, 2, S(5, 10)));
}

static void test_failed_inputs(void) {
    lx_array *x = iota(2, S(2, 3));
    lx_clear_error();
    lx_array *bad = lx_reshape(x, LX_SHAPE(5));
    CHECK(bad == NULL);
    const char *first = "reshape: cannot reshape array of shape (2, 3) (size 6) into shape (5,)";
    CHECK(lx_transpose(bad, 0, NULL) == NULL && lx_expand_dims(bad, 0) == NULL && lx_squeeze(bad, 0, NULL) == NULL);
    CHECK(lx_broadcast_to(bad, LX_SHAPE(2)) == NULL && lx_slice(bad, 0, NULL) == NULL);
    CHECK(lx_concatenate(2, (lx_array *[]){x, bad}, 0) == NULL && lx_stack(2, (lx_array *[]){bad, x}, 0) == NULL);
    CHECK(lx_pad(bad, S(0), S(0), 0) == NULL && lx_take(x, bad, 0) == NULL && lx_one_hot(bad, 2) == NULL);
    CHECK(lx_reshape(bad, LX_SHAPE(-1)) == NULL);
    CHECK_ERROR_IS(LX_ERR_SHAPE, first);
}

static void test_observer_and_memory(void) {
    T_seen seen = {0};
    int h;
    lx_prim_observe(T_record, &seen, &h);
    lx_array *x = iota(2, S(4, 3));
    lx_transpose(x, 0, NULL);
    lx_range r[] = {LX_RANGE_STEP(-1, LX_NIL, -2)};
    lx_slice(x, 1, r);
    lx_array *parts[2];
    lx_split(x, 2, 0, parts);
    lx_concatenate(2, parts, 1);
    lx_reshape(x, LX_SHAPE(-1));
    lx_take(x, T_i32(1, S(1), (const int32_t[]){0}), 1);
    lx_pad(x, S(1, 0), S(0, 1), 0.5f);
    lx_prim_unobserve(h);
    CHECK_EQ_INT(seen.count, 8);
    CHECK_STR(seen.names[0], "transpose");
    CHECK_STR(seen.attrs[0], "permutation=(1, 0)");
    CHECK_STR(seen.names[1], "slice");
    CHECK_STR(seen.attrs[1], "start=(3, 0);stop=(-1, 3);step=(-2, 1)");
    CHECK_STR(seen.names[2], "split");
    CHECK_STR(seen.attrs[2], "axis=0;start=0;stop=2;index=0");
    CHECK_STR(seen.attrs[3], "axis=0;start=2;stop=4;index=1");
    CHECK_STR(seen.names[4], "concatenate");
    CHECK_EQ_INT(seen.ninputs[4], 2);
    CHECK_STR(seen.attrs[4], "axis=1");
    CHECK_STR(seen.attrs[5], "shape=(12,)");
    CHECK_STR(seen.names[6], "take");
    CHECK_STR(seen.attrs[7], "before=(1, 0);after=(0, 1);value=0.5");

    int64_t before = lx_array_live_count();
    int failed = 0;
    for (int it = 0; it < 1000; it++) {
        size_t mark = lx_pool_open();
        lx_array *y = lx_transpose(lx_reshape(x, LX_SHAPE(3, 4)), 0, NULL);
        lx_array *pieces[2];
        lx_split(y, 2, 0, pieces);
        y = lx_stack(2, pieces, 0);
        y = lx_pad(lx_slice(y, 1, r), S(1, 1, 1), S(0, 0, 0), 1.f);
        y = lx_take(lx_broadcast_to(lx_expand_dims(y, 0), LX_SHAPE(2, 2, 3, 4)), T_i32(1, S(2), (const int32_t[]){1, 0}), 0);
        failed += lx_squeeze(lx_one_hot(T_i32(1, S(1), (const int32_t[]){1}), 3), 0, NULL) == NULL;
        failed += y == NULL;
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(lx_array_live_count(), before);
}

/* broadcast_to's fast paths (a value to every element, a row repeated: the sum / mean VJPs'
 * broadcasts) against an index reference, at odd sizes, above the threading threshold, and with
 * every bit pattern kept (a NaN payload, -0); other broadcasts and dtypes take the general plan. */
static void test_broadcast_fast_paths(void) {
    const int64_t big[3] = {67, 41, 33}; /* 90651 elements: threaded; rows of 33 */
    lx_array *row = T_rand(3, S(1, 1, 33), -1.0f, 1.0f, 9u);
    lx_f32(row)[5] = -0.0f;
    uint32_t payload = 0x7fc00123u;
    memcpy(&lx_f32(row)[32], &payload, 4);
    lx_array *br = lx_broadcast_to(row, 3, big);
    CHECK(br && br->size == 67 * 41 * 33);
    int bad = 0;
    for (int64_t i = 0; br && i < br->size; i++) bad += memcmp(&lx_f32(br)[i], &lx_f32(row)[i % 33], 4) != 0;
    CHECK_EQ_INT(bad, 0);
    lx_array *one = T_f32(0, NULL, (const float[]){0});
    memcpy(lx_f32(one), &payload, 4);
    for (int k = 0; k < 2; k++) { /* big (threaded) and odd small */
        lx_array *fill = k ? lx_broadcast_to(one, LX_SHAPE(3, 7)) : lx_broadcast_to(one, 3, big);
        bad = 0;
        for (int64_t i = 0; fill && i < fill->size; i++) bad += memcmp(&lx_f32(fill)[i], &payload, 4) != 0;
        CHECK(fill != NULL);
        CHECK_EQ_INT(bad, 0);
    }
    /* a (1, 1) int32 to (5, 3): the fill, 4-byte integers */
    lx_array *fi = lx_broadcast_to(T_typed(LX_I32, 2, S(1, 1), (const int32_t[]){-7}), LX_SHAPE(5, 3));
    CHECK(fi && lx_i32(fi)[0] == -7 && lx_i32(fi)[14] == -7);
    /* bool row repeat (1-byte rows) and a bool fill (not the 4-byte fill) */
    lx_array *bb = lx_broadcast_to(T_typed(LX_BOOL, 2, S(1, 3), (const uint8_t[]){1, 0, 1}), LX_SHAPE(4, 3));
    CHECK(bb && lx_bool(bb)[9] == 1 && lx_bool(bb)[10] == 0 && lx_bool(bb)[11] == 1);
    lx_array *b1 = lx_broadcast_to(T_typed(LX_BOOL, 1, S(1), (const uint8_t[]){1}), LX_SHAPE(2, 5));
    CHECK(b1 && lx_bool(b1)[0] == 1 && lx_bool(b1)[9] == 1);
    /* a column (3, 1) to (3, 4): the general plan */
    lx_array *col = lx_broadcast_to(T_f32(2, S(3, 1), (const float[]){1, 2, 3}), LX_SHAPE(3, 4));
    CHECK(col && lx_f32(col)[3] == 1 && lx_f32(col)[4] == 2 && lx_f32(col)[11] == 3);
}

int main(void) {
    RUN(test_reshape);
    RUN(test_transpose);
    RUN(test_expand_squeeze);
    RUN(test_broadcast_to);
    RUN(test_broadcast_fast_paths);
    RUN(test_slice);
    RUN(test_concatenate_stack);
    RUN(test_split);
    RUN(test_pad);
    RUN(test_take_one_hot);
    RUN(test_failed_inputs);
    RUN(test_observer_and_memory);
    return lx_test_finish();
}
