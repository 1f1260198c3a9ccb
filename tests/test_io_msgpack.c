/* Flax msgpack: every byte vector of spec/c-anchors.md §4.2 and spec/checkpoints.md §C.1 is
 * written byte for byte and read back; msgpack forms Flax's writer never emits are read; every
 * hostile input fails with the byte offset and what was expected. */
#include <unistd.h>

#include "io_vec.h"
#include "lx_test.h"

static unsigned char vec[4096];
static size_t vlen;

/* encode `root`, compare with the vector text, decode the vector, re-encode: same bytes */
static void check_bytes(const char *name, lx_value root, const lx_msgpack_opts *o, const char *text) {
    vlen = vec_parse(text, vec, sizeof vec);
    unsigned char *got = NULL;
    size_t len = 0;
    CHECK(lx_msgpack_to_bytes(&root, o, &got, &len) == LX_OK);
    bool same = got && len == vlen && memcmp(got, vec, vlen) == 0;
    LX_TEST_REPORT_(same, "%s: %zu bytes written, the vector has %zu", name, len, vlen);
    if (!same && got) {
        for (size_t i = 0; i < len; i++) fprintf(stderr, "%02x%s", got[i], i + 1 < len ? " " : "\n");
    }
    free(got);
    lx_value back = lx_none();
    CHECK(lx_msgpack_from_bytes(vec, vlen, &back) == LX_OK);
    got = NULL;
    if (!o || o->max_chunk_bytes == 0) { /* a chunked vector reads back unchunked */
        CHECK(lx_msgpack_to_bytes(&back, o, &got, &len) == LX_OK);
        LX_TEST_REPORT_(got && len == vlen && !memcmp(got, vec, vlen), "%s: read and written again differs", name);
        free(got);
    }
    lx_value_free(&back);
}

static lx_array *f32_arr(int ndim, const int64_t *shape, const float *v) { return lx_array_from_f32(ndim, shape, v); }

static void test_bare_array(void) {
    lx_array *z = lx_array_new(LX_F32, 1, (int64_t[]){5});
    check_bytes("zeros(5)", lx_array_v(z), NULL, "c7 21 01 93 91 05 a7 66 6c 6f 61 74 33 32 c4 14 00*20");
    CHECK_EQ_INT(vlen, 36);
    lx_value back;
    CHECK(lx_msgpack_from_bytes(vec, vlen, &back) == LX_OK);
    CHECK(back.kind == LX_V_ARRAY && lx_array_equal(back.u.array, z));
    lx_value_free(&back);
    lx_release(z);
}

static void test_dense_params(void) {
    lx_tree *t = lx_tree_new();
    lx_array *b = lx_array_new(LX_F32, 1, (int64_t[]){2});
    lx_array *k = f32_arr(2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4});
    CHECK(lx_tree_set_path(t, "params/Dense_0/bias", lx_array_v(b)) == LX_OK);
    CHECK(lx_tree_set_path(t, "params/Dense_0/kernel", lx_array_v(k)) == LX_OK);
    check_bytes("Dense_0", lx_tree_v(t), NULL,
                "81 a6 'params' 81 a7 'Dense_0' 82 a4 'bias' c7 15 01 93 91 02 a7 'float32' c4 08 00*8"
                " a6 'kernel' c7 1e 01 93 92 02 02 a7 'float32' c4 10 00 00 80 3f 00 00 00 40 00 00 40 40 00 00 80 40");
    CHECK_EQ_INT(vlen, 87);
    lx_value back;
    CHECK(lx_msgpack_from_bytes(vec, vlen, &back) == LX_OK);
    CHECK(back.kind == LX_V_TREE && lx_tree_equal(back.u.tree, t));
    lx_value_free(&back);

    /* An NNX-style state of Params saves as its pure dict: the same bytes. */
    lx_tree *s = lx_tree_new();
    lx_variable *vb, *vk;
    CHECK(lx_variable_new(&lx_Param, b, &vb) == LX_OK);
    CHECK(lx_variable_new(&lx_Param, k, &vk) == LX_OK);
    CHECK(lx_tree_set_path(s, "params/Dense_0/bias", lx_var_v(vb)) == LX_OK);
    CHECK(lx_tree_set_path(s, "params/Dense_0/kernel", lx_var_v(vk)) == LX_OK);
    unsigned char *got;
    size_t len;
    CHECK(lx_msgpack_to_bytes(&(lx_value){LX_V_TREE, {.tree = s}}, NULL, &got, &len) == LX_OK);
    CHECK(len == vlen && !memcmp(got, vec, vlen));
    free(got);
    lx_variable_release(vb);
    lx_variable_release(vk);
    lx_tree_release(s);
    lx_release(b);
    lx_release(k);
    lx_tree_release(t);
}

static void test_scalars(void) {
    lx_tree *t = lx_tree_new();
    lx_raw *r;
    float f = 1.5f;
    CHECK(lx_raw_new(LX_RAW_NPSCALAR, "float32", 0, NULL, &f, 4, &r) == LX_OK);
    CHECK(lx_tree_set(t, "s", lx_raw_v(r)) == LX_OK);
    check_bytes("np.float32", lx_tree_v(t), NULL, "81 a1 73 d8 03 93 90 a7 'float32' c4 04 00 00 c0 3f");
    CHECK_EQ_INT(vlen, 21);
    lx_raw_release(r);
    lx_tree_release(t);

    t = lx_tree_new();
    double c[2] = {1, 2};
    CHECK(lx_raw_new(LX_RAW_COMPLEX, "complex128", 0, NULL, c, 16, &r) == LX_OK);
    CHECK(lx_tree_set(t, "c", lx_raw_v(r)) == LX_OK);
    check_bytes("complex", lx_tree_v(t), NULL,
                "81 a1 63 c7 13 02 92 cb 3f f0 00 00 00 00 00 00 cb 40 00 00 00 00 00 00 00");
    CHECK_EQ_INT(vlen, 25);
    lx_value back;
    CHECK(lx_msgpack_from_bytes(vec, vlen, &back) == LX_OK);
    lx_raw *rb = lx_value_raw(lx_tree_get(back.u.tree, "c"));
    CHECK(rb && rb->kind == LX_RAW_COMPLEX && !strcmp(rb->dtype, "complex128") && rb->ndim == 0);
    double got[2] = {0, 0};
    if (rb) memcpy(got, rb->data, 16);
    CHECK(got[0] == 1.0 && got[1] == 2.0);
    lx_value_free(&back);
    lx_raw_release(r);
    lx_tree_release(t);

    t = lx_tree_new();
    CHECK(lx_tree_set(t, "step", lx_int_v(3)) == LX_OK);
    CHECK(lx_tree_set(t, "lr", lx_float_v(0.5)) == LX_OK);
    CHECK(lx_tree_set(t, "flag", lx_bool_v(true)) == LX_OK);
    CHECK(lx_tree_set(t, "none", lx_none()) == LX_OK);
    check_bytes("python scalars", lx_tree_v(t), NULL,
                "84 a4 'step' 03 a2 'lr' cb 3f e0 00 00 00 00 00 00 a4 'flag' c3 a4 'none' c0");
    CHECK_EQ_INT(vlen, 31);
    CHECK(lx_msgpack_from_bytes(vec, vlen, &back) == LX_OK);
    CHECK(lx_tree_equal(back.u.tree, t));
    lx_value_free(&back);
    lx_tree_release(t);
}

static void test_int_bool_f64(void) {
    lx_tree *t = lx_tree_new();
    int32_t x[6] = {0, 1, 2, 3, 4, 5};
    lx_array *a = lx_array_from_data(LX_I32, 3, (int64_t[]){1, 2, 3}, x);
    CHECK(lx_tree_set(t, "x", lx_array_v(a)) == LX_OK);
    check_bytes("int32 (1,2,3)", lx_tree_v(t), NULL,
                "81 a1 78 c7 25 01 93 93 01 02 03 a5 'int32' c4 18 00 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00"
                " 04 00 00 00 05 00 00 00");
    lx_release(a);
    lx_tree_release(t);

    t = lx_tree_new();
    a = lx_array_from_data(LX_BOOL, 1, (int64_t[]){2}, (uint8_t[]){1, 0});
    CHECK(lx_tree_set(t, "m", lx_array_v(a)) == LX_OK);
    check_bytes("bool", lx_tree_v(t), NULL, "81 a1 6d c7 0c 01 93 91 02 a4 'bool' c4 02 01 00");
    lx_release(a);
    lx_tree_release(t);

    t = lx_tree_new();
    double seven = 7.0;
    lx_raw *r;
    CHECK(lx_raw_new(LX_RAW_NDARRAY, "float64", 0, NULL, &seven, 8, &r) == LX_OK);
    CHECK(lx_tree_set(t, "a", lx_raw_v(r)) == LX_OK);
    check_bytes("float64 0-d", lx_tree_v(t), NULL, "81 a1 61 c7 14 01 93 90 a7 'float64' c4 08 00 00 00 00 00 00 1c 40");
    lx_value back;
    CHECK(lx_msgpack_from_bytes(vec, vlen, &back) == LX_OK);
    lx_raw *rb = lx_value_raw(lx_tree_get(back.u.tree, "a"));
    CHECK(rb && rb->kind == LX_RAW_NDARRAY && rb->nbytes == 8 && !memcmp(rb->data, &seven, 8));
    lx_array *conv;
    CHECK_FAILS(lx_raw_to_array(rb, &conv), LX_ERR_DTYPE, "float64 is not one linnx computes with");
    lx_value_free(&back);
    lx_raw_release(r);
    lx_tree_release(t);

    /* bfloat16 by name */
    t = lx_tree_new();
    a = lx_array_from_data(LX_BF16, 1, (int64_t[]){1}, (uint16_t[]){0x3fc0});
    CHECK(lx_tree_set(t, "h", lx_array_v(a)) == LX_OK);
    check_bytes("bfloat16", lx_tree_v(t), NULL, "81 a1 'h' d8 01 93 91 01 a8 'bfloat16' c4 02 c0 3f");
    lx_release(a);
    lx_tree_release(t);
}

static void test_chunking(void) {
    lx_tree *t = lx_tree_new();
    lx_array *e = f32_arr(1, (int64_t[]){3}, (float[]){1, 2, 3});
    CHECK(lx_tree_set(t, "e", lx_array_v(e)) == LX_OK);
    lx_msgpack_opts o = {8};
    check_bytes("chunked", lx_tree_v(t), &o,
                "81 a1 65 83 b9 '__msgpack_chunked_array__' c3 a5 'shape' 81 a1 30 03 a6 'chunks' 82"
                " a1 30 c7 15 01 93 91 02 a7 'float32' c4 08 00 00 80 3f 00 00 00 40"
                " a1 31 c7 11 01 93 91 01 a7 'float32' c4 04 00 00 40 40");
    CHECK_EQ_INT(vlen, 97);
    lx_value back;
    CHECK(lx_msgpack_from_bytes(vec, vlen, &back) == LX_OK);
    const lx_value *eb = lx_tree_get(back.u.tree, "e");
    CHECK(eb && eb->kind == LX_V_ARRAY && lx_array_equal(eb->u.array, e));
    lx_value_free(&back);

    /* a 2-D array chunks its C-order flattening and comes back with its shape */
    lx_array *m = f32_arr(2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
    CHECK(lx_tree_set(t, "e", lx_array_v(m)) == LX_OK);
    unsigned char *b;
    size_t n;
    CHECK(lx_msgpack_to_bytes(&(lx_value){LX_V_TREE, {.tree = t}}, &(lx_msgpack_opts){12}, &b, &n) == LX_OK);
    CHECK(lx_msgpack_from_bytes(b, n, &back) == LX_OK);
    eb = lx_tree_get(back.u.tree, "e");
    CHECK(eb && eb->kind == LX_V_ARRAY && lx_array_equal(eb->u.array, m));
    lx_value_free(&back);
    /* a chunk header with an inconsistent shape is an error */
    const char *badc = "81 a1 65 83 b9 '__msgpack_chunked_array__' c3 a5 'shape' 81 a1 30 04 a6 'chunks' 81"
                       " a1 30 c7 15 01 93 91 02 a7 'float32' c4 08 00 00 80 3f 00 00 00 40";
    size_t bl = vec_parse(badc, vec, sizeof vec);
    CHECK_FAILS(lx_msgpack_from_bytes(vec, bl, &back), LX_ERR_FORMAT, "at byte 3: chunked array: the chunks do not add up");
    free(b);
    lx_release(m);
    lx_release(e);
    lx_tree_release(t);
}

/* spec/checkpoints.md §C.1: to_bytes(TrainState) with adamw, 132 bytes */
static void test_train_state(void) {
    lx_tree *t = lx_tree_new();
    lx_array *w = lx_array_scalar_f32(0.5f), *w1 = NULL;
    w1 = lx_array_reshape_view(w, 1, (int64_t[]){1});
    lx_array *mu = f32_arr(1, (int64_t[]){1}, (float[]){0.1f}), *nu = f32_arr(1, (int64_t[]){1}, (float[]){0.001f});
    lx_array *count = lx_array_from_data(LX_I32, 0, NULL, (int32_t[]){1});
    CHECK(lx_tree_set(t, "step", lx_int_v(1)) == LX_OK);
    CHECK(lx_tree_set_path(t, "params/w", lx_array_v(w1)) == LX_OK);
    CHECK(lx_tree_set_path(t, "opt_state/0/count", lx_array_v(count)) == LX_OK);
    CHECK(lx_tree_set_path(t, "opt_state/0/mu/w", lx_array_v(mu)) == LX_OK);
    CHECK(lx_tree_set_path(t, "opt_state/0/nu/w", lx_array_v(nu)) == LX_OK);
    lx_tree *empty1 = lx_tree_new(), *empty2 = lx_tree_new();
    CHECK(lx_tree_set_path(t, "opt_state/1", lx_tree_v(empty1)) == LX_OK);
    CHECK(lx_tree_set_path(t, "opt_state/2", lx_tree_v(empty2)) == LX_OK);
    check_bytes("train state", lx_tree_v(t), NULL,
                "83 a4 'step' 01 a6 'params' 81 a1 'w' c7 11 01 93 91 01 a7 'float32' c4 04 00 00 00 3f"
                " a9 'opt_state' 83 a1 '0' 83 a5 'count' c7 0e 01 93 90 a5 'int32' c4 04 01 00 00 00"
                " a2 'mu' 81 a1 'w' c7 11 01 93 91 01 a7 'float32' c4 04 cd cc cc 3d"
                " a2 'nu' 81 a1 'w' c7 11 01 93 91 01 a7 'float32' c4 04 6f 12 83 3a"
                " a1 '1' 80  a1 '2' 80");
    CHECK_EQ_INT(vlen, 132);
    /* restore into a target whose step is a 0-d int32 array (a jitted TrainState) */
    lx_value back;
    CHECK(lx_msgpack_from_bytes(vec, vlen, &back) == LX_OK);
    lx_tree *target = lx_tree_copy(t), *restored = NULL;
    lx_array *step0 = lx_array_new(LX_I32, 0, NULL);
    CHECK(lx_tree_set(target, "step", lx_array_v(step0)) == LX_OK);
    CHECK(lx_ckpt_restore(target, back.u.tree, NULL, &restored) == LX_OK);
    const lx_value *st = restored ? lx_tree_get(restored, "step") : NULL;
    CHECK(st && st->kind == LX_V_ARRAY && st->u.array->dtype == LX_I32 && lx_i32(st->u.array)[0] == 1);
    lx_tree_release(restored);
    lx_tree_release(target);
    lx_release(step0);
    lx_value_free(&back);
    lx_tree_release(empty1);
    lx_tree_release(empty2);
    lx_release(w);
    lx_release(w1);
    lx_release(mu);
    lx_release(nu);
    lx_release(count);
    lx_tree_release(t);
}

/* Forms other writers use: int keys (nnx.List under msgpack_serialize), msgpack arrays, the
 * signed int forms for positives, float32, str8 for short strings, bin8 dtype names. */
static void test_reader_forms(void) {
    lx_value v;
    size_t n = vec_parse("82 00 81 a1 'w' 05 01 92 d0 07 ca 3f c0 00 00", vec, sizeof vec);
    CHECK(lx_msgpack_from_bytes(vec, n, &v) == LX_OK);
    const lx_value *x = lx_tree_find(v.u.tree, "0/w");
    CHECK(x && x->kind == LX_V_INT && x->u.i == 5);
    x = lx_tree_find(v.u.tree, "1/0");
    CHECK(x && x->kind == LX_V_INT && x->u.i == 7);
    x = lx_tree_find(v.u.tree, "1/1");
    CHECK(x && x->kind == LX_V_FLOAT && x->u.f == 1.5);
    lx_value_free(&v);

    n = vec_parse("81 d9 01 'k' c7 10 01 93 91 01 c4 05 'int32' c4 04 ff ff ff ff", vec, sizeof vec);
    CHECK(lx_msgpack_from_bytes(vec, n, &v) == LX_OK);
    x = lx_tree_get(v.u.tree, "k");
    CHECK(x && x->kind == LX_V_ARRAY && x->u.array->dtype == LX_I32 && lx_i32(x->u.array)[0] == -1);
    lx_value_free(&v);

    /* negative int keys, big ints, a bin leaf */
    n = vec_parse("83 ff c3 a1 'b' cf 7f ff ff ff ff ff ff ff a1 'c' c4 02 ab cd", vec, sizeof vec);
    CHECK(lx_msgpack_from_bytes(vec, n, &v) == LX_OK);
    x = lx_tree_get(v.u.tree, "-1");
    CHECK(x && x->kind == LX_V_BOOL && x->u.b);
    x = lx_tree_get(v.u.tree, "b");
    CHECK(x && x->kind == LX_V_INT && x->u.i == INT64_MAX);
    lx_raw *r = lx_value_raw(lx_tree_get(v.u.tree, "c"));
    CHECK(r && r->kind == LX_RAW_BYTES && r->nbytes == 2 && r->data[0] == 0xab);
    unsigned char *out;
    size_t len;
    CHECK(lx_msgpack_to_bytes(&v, NULL, &out, &len) == LX_OK);
    CHECK(len == 22 && !memcmp(out + 18, "\xc4\x02\xab\xcd", 4));
    free(out);
    lx_value_free(&v);
}

static void expect_error(const char *text, const char *needle) {
    size_t n = vec_parse(text, vec, sizeof vec);
    lx_value v = lx_none();
    CHECK_FAILS(lx_msgpack_from_bytes(vec, n, &v), LX_ERR_FORMAT, needle);
    CHECK(v.kind == LX_V_NONE);
}

static void test_hostile(void) {
    expect_error("", "at byte 0: expected 1 bytes of a value, only 0 left");
    expect_error("dd ff ff ff ff", "at byte 0: an array announces 4294967295 elements but only 0 bytes are left");
    expect_error("df 00 01 00 00 a1 'a'", "at byte 0: a map announces 65536 entries but only 2 bytes are left");
    expect_error("81 a1 'a' c7 21 01 93 91 05", "at byte 6: expected 33 bytes of an ext payload, only 3 left");
    expect_error("81 a1 'a' c7 03 01 93 91 05", "at byte 6: an array payload [shape, dtype, data] announces 3 elements but only 2 bytes are left");
    expect_error("81 a1 'a' c7 21 05 93 91 05 a7 'float32' c4 14 00*20", "at byte 3: unknown ext type 5");
    expect_error("81 a1 'a' c7 11 01 93 91 02 a7 'float32' c4 04 00 00 00 00",
                 "at byte 17: 4 data bytes do not fit float32 of 2 elements");
    expect_error("81 a1 'a' c7 10 01 93 91 01 a6 'object' c4 04 00 00 00 00", "at byte 9: unsupported dtype 'object'");
    expect_error("81 a1 'a' c7 11 01 93 91 ff a7 'float32' c4 04 00 00 00 00", "at byte 8: expected a dimension >= 0");
    expect_error("81 a1 'a' c7 0b 01 93 99 01 01 01 01 01 01 01 01 01", "at byte 7: rank 9 is above linnx's limit of 8");
    expect_error("81 ca 00 00 00 00 01", "at byte 1: expected a map key (str or int), got float32");
    expect_error("81 a1 'a' c1", "at byte 3: expected a value, got the never-used byte 0xc1");
    expect_error("80 00", "at byte 1: expected the end of the input after one object");
    expect_error("81 a1 'a' c7 0c 02 92 cb 3f f0 00 00 00 00 00 00 a1 'x'",
                 "at byte 16: expected a number for the imaginary part");
    /* 300 nested arrays */
    char deep[1000] = "";
    for (int i = 0; i < 300; i++) strcat(deep, "91 ");
    strcat(deep, "01");
    expect_error(deep, "nesting deeper than 256 levels");
}

/* Valid for msgpack_restore, but not representable as a linnx tree: LX_ERR_UNSUPPORTED with the
 * offset and the reason (audit D4) rather than a format error. */
static void expect_unsupported(const char *text, const char *needle) {
    size_t n = vec_parse(text, vec, sizeof vec);
    lx_value v = lx_none();
    CHECK_FAILS(lx_msgpack_from_bytes(vec, n, &v), LX_ERR_UNSUPPORTED, needle);
    CHECK(v.kind == LX_V_NONE);
}

static void test_unrepresentable(void) {
    /* to_bytes(flatten_dict(params, sep='/')) */
    expect_unsupported("81 a3 'a/b' 01", "msgpack: at byte 1: the map key 'a/b' contains '/': a linnx tree key cannot");
    expect_unsupported("81 a0 01", "msgpack: at byte 1: the map key is the empty string: a linnx tree key cannot be empty");
    expect_unsupported("81 a3 'a' 00 'b' 01", "at byte 1: the map key holds a NUL byte");
    expect_unsupported("81 a1 'a' cf ff ff ff ff ff ff ff ff",
                       "at byte 3: a value 18446744073709551615 is above 2^63-1: a linnx int is int64");
    expect_unsupported("81 cf 80 00 00 00 00 00 00 00 01", "at byte 1: the int map key 9223372036854775808 is above 2^63-1");
    /* 2^63-1 itself is an int */
    size_t n = vec_parse("81 a1 'a' cf 7f ff ff ff ff ff ff ff", vec, sizeof vec);
    lx_value v = lx_none();
    CHECK(lx_msgpack_from_bytes(vec, n, &v) == LX_OK && v.kind == LX_V_TREE);
    const lx_value *a = v.kind == LX_V_TREE ? lx_tree_get(v.u.tree, "a") : NULL;
    CHECK(a && a->kind == LX_V_INT && a->u.i == INT64_MAX);
    lx_value_free(&v);
}

/* Roots msgpack_restore reads that are not maps (audit D4): a file holding to_bytes of a bare
 * array (c-anchors' 36-byte vector) and a root msgpack array sniff as msgpack; the array root
 * loads as a tree keyed "0", "1" (as nested arrays do); a bare ndarray root cannot be a tree. */
static void test_file_roots(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/linnx_mproot_%ld.msgpack", (long)getpid());
    size_t n = vec_parse("c7 21 01 93 91 05 a7 'float32' c4 14 00*20", vec, sizeof vec);
    CHECK(lx_atomic_write_file(path, vec, n) == LX_OK);
    lx_ckpt_format f = LX_CKPT_AUTO;
    CHECK(lx_ckpt_sniff(path, &f) == LX_OK && f == LX_CKPT_MSGPACK);
    lx_tree *t = NULL;
    CHECK_FAILS(lx_ckpt_load(path, &t), LX_ERR_UNSUPPORTED, "msgpack: at byte 0: the root is an array of float32, not a map");
    CHECK(t == NULL);
    n = vec_parse("92 01 81 a1 'w' c3", vec, sizeof vec);
    CHECK(lx_atomic_write_file(path, vec, n) == LX_OK);
    CHECK(lx_ckpt_sniff(path, &f) == LX_OK && f == LX_CKPT_MSGPACK);
    CHECK(lx_ckpt_load(path, &t) == LX_OK);
    const lx_value *a = t ? lx_tree_find(t, "0") : NULL, *w = t ? lx_tree_find(t, "1/w") : NULL;
    CHECK(a && a->kind == LX_V_INT && a->u.i == 1 && w && w->kind == LX_V_BOOL && w->u.b);
    lx_tree_release(t);
    unlink(path);
}

/* An array read from the input over lx_set_max_array_bytes is the input's fault (audit D7):
 * LX_ERR_INVALID_ARGUMENT naming the offset of its data, checked before allocating. */
static void test_array_limit(void) {
    size_t n = vec_parse("81 a1 'a' c7 21 01 93 91 05 a7 'float32' c4 14 00*20", vec, sizeof vec);
    lx_set_max_array_bytes(16);
    lx_value v = lx_none();
    CHECK_FAILS(lx_msgpack_from_bytes(vec, n, &v), LX_ERR_INVALID_ARGUMENT,
                "msgpack: at byte 17: the array float32(5,) needs 20 bytes, over the limit of 16 bytes per array");
    CHECK(v.kind == LX_V_NONE);
    /* a float64 (raw) leaf too */
    n = vec_parse("81 a1 'a' c7 25 01 93 91 03 a7 'float64' c4 18 00*24", vec, sizeof vec);
    CHECK_FAILS(lx_msgpack_from_bytes(vec, n, &v), LX_ERR_INVALID_ARGUMENT, "the array float64(3,) needs 24 bytes");
    lx_set_max_array_bytes(20);
    n = vec_parse("81 a1 'a' c7 21 01 93 91 05 a7 'float32' c4 14 00*20", vec, sizeof vec);
    CHECK(lx_msgpack_from_bytes(vec, n, &v) == LX_OK);
    lx_value_free(&v);
    lx_set_max_array_bytes(0);
}

static void test_write_errors(void) {
    lx_tree *t = lx_tree_new();
    lx_array *abs = lx_array_abstract(LX_F32, 1, (int64_t[]){3});
    CHECK(lx_tree_set_path(t, "params/k", lx_array_v(abs)) == LX_OK);
    unsigned char *b = NULL;
    size_t n;
    CHECK_FAILS(lx_msgpack_to_bytes(&(lx_value){LX_V_TREE, {.tree = t}}, NULL, &b, &n), LX_ERR_INVALID_ARGUMENT,
                "the array at params/k is abstract");
    CHECK(lx_tree_set_path(t, "params/k", lx_ptr_v("thing", t)) == LX_OK);
    CHECK_FAILS(lx_msgpack_to_bytes(&(lx_value){LX_V_TREE, {.tree = t}}, NULL, &b, &n), LX_ERR_TYPE,
                "cannot serialize a thing object");
    lx_release(abs);
    lx_tree_release(t);
}

/* A tree with most leaf kinds, packed by msgpack-python + numpy the way Flax packs it
 * (scripts/gen_ckpt_fixtures.py): linnx writes the same bytes, with and without chunking. */
static lx_tree *fixture_tree(void) {
    lx_tree *t = lx_tree_new();
    float k[12], big[10];
    for (int i = 0; i < 12; i++) k[i] = (float)i / 8;
    for (int i = 0; i < 10; i++) big[i] = (float)i;
    int32_t w0[6] = {-3, -2, -1, 0, 1, 2}, w1[2] = {INT32_MAX, INT32_MIN};
    uint32_t rng[2] = {0, UINT32_MAX};
    uint8_t mask[3] = {1, 0, 1};
    double f64[3] = {0, 0.1, 0.2};
    int8_t i8[2] = {-128, 127};
    int64_t m5 = -5;
    double c[2] = {0.5, -1.5};
    lx_array *a[8] = {
        lx_array_from_f32(2, (int64_t[]){3, 4}, k),
        lx_array_full_f32(1, (int64_t[]){4}, -0.5f),
        lx_array_from_data(LX_I32, 2, (int64_t[]){2, 3}, w0),
        lx_array_from_data(LX_I32, 1, (int64_t[]){2}, w1),
        lx_array_from_f32(1, (int64_t[]){3}, (float[]){1e-8f, 3.0e38f, -0.0f}),
        lx_array_from_data(LX_U32, 1, (int64_t[]){2}, rng),
        lx_array_from_data(LX_BOOL, 2, (int64_t[]){1, 3}, mask),
        lx_array_from_f32(1, (int64_t[]){10}, big),
    };
    lx_raw *r[4];
    lx_raw_new(LX_RAW_NDARRAY, "float64", 1, (int64_t[]){3}, f64, 24, &r[0]);
    r[1] = NULL; /* int8 is an lx dtype (LX_I8, quantized weights): an array, not a raw leaf */
    lx_raw_new(LX_RAW_NPSCALAR, "int64", 0, NULL, &m5, 8, &r[2]);
    lx_raw_new(LX_RAW_COMPLEX, "complex128", 0, NULL, c, 16, &r[3]);
    lx_tree *empty = lx_tree_new();
    char name[41];
    memset(name, 'x', 40);
    name[40] = 0;
    lx_tree_set_path(t, "params/Dense_0/kernel", lx_array_v(a[0]));
    lx_tree_set_path(t, "params/Dense_0/bias", lx_array_v(a[1]));
    lx_tree_set_path(t, "params/layers/0/w", lx_array_v(a[2]));
    lx_tree_set_path(t, "params/layers/1/w", lx_array_v(a[3]));
    lx_tree_set_path(t, "batch_stats/mean", lx_array_v(a[4]));
    lx_tree_set(t, "rng", lx_array_v(a[5]));
    lx_tree_set(t, "mask", lx_array_v(a[6]));
    lx_tree_set(t, "f64", lx_raw_v(r[0]));
    lx_array *a8 = lx_array_from_data(LX_I8, 1, (int64_t[]){2}, i8);
    lx_tree_set(t, "i8", lx_array_v(a8));
    lx_release(a8);
    lx_tree_set(t, "np_i64_scalar", lx_raw_v(r[2]));
    lx_tree_set(t, "step", lx_int_v(300));
    lx_tree_set(t, "neg", lx_int_v(-200));
    lx_tree_set(t, "lr", lx_float_v(1e-3));
    lx_tree_set(t, "name", lx_str_v(name));
    lx_tree_set(t, "none", lx_none());
    lx_tree_set(t, "big", lx_array_v(a[7]));
    lx_tree_set(t, "empty", lx_tree_v(empty));
    lx_tree_set(t, "c", lx_raw_v(r[3]));
    for (int i = 0; i < 8; i++) lx_release(a[i]);
    for (int i = 0; i < 4; i++) lx_raw_release(r[i]);
    lx_tree_release(empty);
    return t;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *b = malloc(1 << 16);
    *len = b ? fread(b, 1, 1 << 16, f) : 0;
    fclose(f);
    return b;
}

static void test_python_fixture(void) {
    static const struct { const char *path; size_t chunk; } F[] = {
        {"fixtures/ckpt_flax_tree.msgpack", 0}, {"fixtures/ckpt_flax_tree_chunked16.msgpack", 16}};
    lx_tree *t = fixture_tree();
    CHECK_EQ_INT(lx_tree_len(t), 15);
    for (int i = 0; i < 2; i++) {
        size_t flen = 0;
        unsigned char *want = read_file(F[i].path, &flen);
        LX_TEST_REPORT_(want != NULL, "cannot read %s", F[i].path);
        if (!want) continue;
        lx_msgpack_opts o = {F[i].chunk};
        unsigned char *got = NULL;
        size_t len = 0;
        CHECK(lx_msgpack_to_bytes(&(lx_value){LX_V_TREE, {.tree = t}}, &o, &got, &len) == LX_OK);
        LX_TEST_REPORT_(got && len == flen && !memcmp(got, want, flen), "%s: %zu bytes written, the fixture has %zu",
                        F[i].path, len, flen);
        free(got);
        /* read back (chunks joined) and written again: the same bytes */
        lx_value back = lx_none();
        CHECK(lx_msgpack_from_bytes(want, flen, &back) == LX_OK);
        const lx_value *big = back.kind == LX_V_TREE ? lx_tree_get(back.u.tree, "big") : NULL;
        CHECK(big && big->kind == LX_V_ARRAY && big->u.array->size == 10 && lx_f32(big->u.array)[9] == 9.0f);
        CHECK(lx_msgpack_to_bytes(&back, &o, &got, &len) == LX_OK);
        CHECK(got && len == flen && !memcmp(got, want, flen));
        free(got);
        lx_value_free(&back);
        free(want);
    }
    lx_tree_release(t);
}

/* File loads: a body aligned for its dtype is used in place (copy-on-write), others are copied. */
static void test_file_zero_copy(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/linnx_mp_%ld.msgpack", (long)getpid());
    lx_array *a = lx_array_empty(LX_F32, 1, (int64_t[]){32768});
    for (int i = 0; i < 32768; i++) lx_f32(a)[i] = (float)i;
    /* {"kk": a}: the body starts at byte 28; {"k": a}: at byte 27 */
    for (int pass = 0; pass < 2; pass++) {
        lx_tree *t = lx_tree_new();
        CHECK(lx_tree_set(t, pass ? "k" : "kk", lx_array_v(a)) == LX_OK);
        CHECK(lx_ckpt_save(path, t, LX_CKPT_MSGPACK) == LX_OK);
        lx_tree *back = NULL;
        CHECK(lx_ckpt_load(path, &back) == LX_OK);
        CHECK(back && lx_tree_equal(back, t));
        const lx_value *v = back ? lx_tree_at(back, 0) : NULL;
        bool in_place = v && v->u.array->release_fn != NULL && v->u.array->alloc == NULL;
        LX_TEST_REPORT_(in_place == (pass == 0), "pass %d: in place %d", pass, (int)in_place);
        if (v) lx_f32(v->u.array)[7] = -1; /* private: the file keeps 7 */
        lx_tree_release(back);
        CHECK(lx_ckpt_load(path, &back) == LX_OK);
        v = back ? lx_tree_at(back, 0) : NULL;
        CHECK(v && lx_f32(v->u.array)[7] == 7.0f);
        lx_tree_release(back);
        lx_tree_release(t);
    }
    unlink(path);
    lx_release(a);
}

int main(void) {
    RUN(test_file_zero_copy);
    RUN(test_python_fixture);
    RUN(test_bare_array);
    RUN(test_dense_params);
    RUN(test_scalars);
    RUN(test_int_bool_f64);
    RUN(test_chunking);
    RUN(test_train_state);
    RUN(test_reader_forms);
    RUN(test_hostile);
    RUN(test_unrepresentable);
    RUN(test_file_roots);
    RUN(test_array_limit);
    RUN(test_write_errors);
    CHECK_EQ_INT(lx_array_live_count(), 0);
    return lx_test_finish();
}
