/* safetensors: the reference crate's golden vector byte for byte, the reference writer's layout
 * (sort by dtype alignment then name, __metadata__ first, space padding), every dtype string,
 * the reader's rules (holes, overlaps, truncation, trailing bytes, duplicate keys, the 100 MB
 * header limit) and zero-copy loads from a mapped file. */
#include <unistd.h>

#include "io_vec.h"
#include "lx_test.h"

static unsigned char vec[4096];

static const char GOLDEN[] =
    "40 00 00 00 00 00 00 00 '{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}'"
    " 00 00 00 00 00 00 80 3f 00 00 00 40 00 00 40 40 00 00 80 40 00 00 a0 40";

static void test_golden(void) {
    size_t n = vec_parse(GOLDEN, vec, sizeof vec);
    CHECK_EQ_INT(n, 96);
    lx_tree *t = lx_tree_new();
    lx_array *a = lx_array_from_f32(3, (int64_t[]){1, 2, 3}, (float[]){0, 1, 2, 3, 4, 5});
    CHECK(lx_tree_set_path(t, "attn/0", lx_array_v(a)) == LX_OK);
    unsigned char *b = NULL;
    size_t len = 0;
    CHECK(lx_safetensors_to_bytes(t, NULL, &b, &len) == LX_OK);
    CHECK(len == n && b && !memcmp(b, vec, n));
    free(b);
    lx_tree *back = NULL, *md = NULL;
    CHECK(lx_safetensors_from_bytes(vec, n, NULL, &back, &md) == LX_OK);
    CHECK(back && lx_tree_equal(back, t));
    CHECK(md && lx_tree_len(md) == 0);
    lx_tree_release(back);
    lx_tree_release(md);
    /* a '/' separator keeps the dotted name as one key */
    CHECK(lx_safetensors_from_bytes(vec, n, &(lx_safetensors_opts){.sep = "/"}, &back, NULL) == LX_OK);
    const lx_value *x = back ? lx_tree_get(back, "attn.0") : NULL;
    CHECK(x && x->kind == LX_V_ARRAY && lx_array_equal(x->u.array, a));
    lx_tree_release(back);
    lx_release(a);
    lx_tree_release(t);
}

/* The reference writer's order: larger dtypes first, then names; __metadata__ first; padding. */
static void test_writer_layout(void) {
    lx_tree *t = lx_tree_new(), *md = lx_tree_new();
    lx_array *f = lx_array_from_f32(1, (int64_t[]){1}, (float[]){1});
    lx_array *b = lx_array_from_data(LX_BF16, 1, (int64_t[]){1}, (uint16_t[]){0x3f80});
    lx_array *z = lx_array_from_data(LX_BOOL, 1, (int64_t[]){1}, (uint8_t[]){1});
    lx_raw *d;
    double one = 1;
    CHECK(lx_raw_new(LX_RAW_NDARRAY, "float64", 1, (int64_t[]){1}, &one, 8, &d) == LX_OK);
    CHECK(lx_tree_set(t, "a", lx_array_v(z)) == LX_OK);
    CHECK(lx_tree_set(t, "b", lx_array_v(b)) == LX_OK);
    CHECK(lx_tree_set(t, "c", lx_array_v(f)) == LX_OK);
    CHECK(lx_tree_set(t, "d", lx_raw_v(d)) == LX_OK);
    CHECK(lx_tree_set(md, "format", lx_str_v("pt")) == LX_OK);
    unsigned char *buf;
    size_t len;
    CHECK(lx_safetensors_to_bytes(t, &(lx_safetensors_opts){.metadata = md}, &buf, &len) == LX_OK);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                       "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[12,14]},"
                       "\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[14,15]}}";
    size_t wl = strlen(want), padded = (wl + 7) / 8 * 8;
    CHECK(buf[0] == (padded & 0xff) && buf[1] == padded >> 8 && buf[2] == 0);
    CHECK(!memcmp(buf + 8, want, wl));
    for (size_t i = wl; i < padded; i++) CHECK(buf[8 + i] == ' ');
    CHECK_EQ_INT(len, 8 + padded + 15);
    CHECK((8 + padded) % 8 == 0);
    lx_tree *back, *mback;
    CHECK(lx_safetensors_from_bytes(buf, len, NULL, &back, &mback) == LX_OK);
    CHECK(lx_tree_equal(mback, md));
    /* file order: d, c, b, a */
    CHECK_STR(lx_tree_key(back, 0), "d");
    CHECK_STR(lx_tree_key(back, 3), "a");
    lx_raw *dr = lx_value_raw(lx_tree_get(back, "d"));
    CHECK(dr && !strcmp(dr->dtype, "float64") && !memcmp(dr->data, &one, 8));
    lx_tree_release(back);
    lx_tree_release(mback);
    /* lx_safetensors_save (atomic, streamed) writes the same bytes, metadata included */
    char path[128];
    snprintf(path, sizeof path, "/tmp/linnx_st_save_%ld.safetensors", (long)getpid());
    CHECK(lx_safetensors_save(path, t, &(lx_safetensors_opts){.metadata = md}) == LX_OK);
    FILE *fp = fopen(path, "rb");
    unsigned char *fb = malloc(len + 1);
    size_t got = fp && fb ? fread(fb, 1, len + 1, fp) : 0;
    CHECK(got == len && !memcmp(fb, buf, len));
    if (fp) fclose(fp);
    free(fb);
    unlink(path);
    free(buf);
    /* non-array leaves, tensor-name clashes */
    CHECK(lx_tree_set(t, "step", lx_int_v(3)) == LX_OK);
    CHECK_FAILS(lx_safetensors_to_bytes(t, NULL, &buf, &len), LX_ERR_TYPE, "safetensors holds arrays only: step is 3");
    CHECK(lx_tree_delete(t, "step") == LX_OK);
    lx_raw_release(d);
    lx_release(f);
    lx_release(b);
    lx_release(z);
    lx_tree_release(md);
    lx_tree_release(t);
}

static void test_name_clash(void) {
    lx_tree *t = lx_tree_new();
    lx_array *f = lx_array_from_f32(1, (int64_t[]){1}, (float[]){1});
    CHECK(lx_tree_set(t, "x.y", lx_array_v(f)) == LX_OK);
    CHECK(lx_tree_set_path(t, "x/y", lx_array_v(f)) == LX_OK);
    unsigned char *buf;
    size_t len;
    CHECK_FAILS(lx_safetensors_to_bytes(t, NULL, &buf, &len), LX_ERR_EXISTS, "two leaves give the tensor name 'x.y'");
    CHECK(lx_safetensors_to_bytes(t, &(lx_safetensors_opts){.sep = "-"}, &buf, &len) == LX_OK);
    lx_tree *back;
    CHECK(lx_safetensors_from_bytes(buf, len, &(lx_safetensors_opts){.sep = "-"}, &back, NULL) == LX_OK);
    CHECK(lx_tree_equal(back, t));
    lx_tree_release(back);
    free(buf);
    lx_release(f);
    lx_tree_release(t);
}

/* Every dtype string: one element each (sub-byte types two elements in one byte). */
static void test_dtypes(void) {
    static const struct { const char *st, *np; int nbytes; } D[] = {
        {"BOOL", "bool", 1}, {"U8", "uint8", 1}, {"I8", "int8", 1}, {"I16", "int16", 2}, {"U16", "uint16", 2},
        {"F16", "float16", 2}, {"BF16", "bfloat16", 2}, {"I32", "int32", 4}, {"U32", "uint32", 4},
        {"F32", "float32", 4}, {"F64", "float64", 8}, {"I64", "int64", 8}, {"U64", "uint64", 8},
        {"C64", "complex64", 8}, {"F8_E5M2", "float8_e5m2", 1}, {"F8_E4M3", "float8_e4m3fn", 1},
        {"F8_E8M0", "float8_e8m0fnu", 1}, {"F8_E4M3FNUZ", "float8_e4m3fnuz", 1},
        {"F8_E5M2FNUZ", "float8_e5m2fnuz", 1},
    };
    for (size_t i = 0; i < sizeof D / sizeof D[0]; i++) {
        char hdr[200], text[400];
        int hl = snprintf(hdr, sizeof hdr, "{\"t\":{\"dtype\":\"%s\",\"shape\":[],\"data_offsets\":[0,%d]}}", D[i].st,
                          D[i].nbytes);
        snprintf(text, sizeof text, "%02x 00 00 00 00 00 00 00 '%s' 2a*%d", hl, hdr, D[i].nbytes);
        size_t n = vec_parse(text, vec, sizeof vec);
        lx_tree *t = NULL;
        LX_TEST_REPORT_(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL) == LX_OK, "dtype %s: %s", D[i].st, lx_last_error());
        if (!t) continue;
        const lx_value *v = lx_tree_get(t, "t");
        lx_raw *r = lx_value_raw(v);
        const char *np = r ? r->dtype : v && v->kind == LX_V_ARRAY ? lx_dtype_name(v->u.array->dtype) : "?";
        CHECK_STR(np, D[i].np);
        unsigned char *b;
        size_t len;
        CHECK(lx_safetensors_to_bytes(t, NULL, &b, &len) == LX_OK);
        LX_TEST_REPORT_(len == (size_t)(8 + (hl + 7) / 8 * 8 + D[i].nbytes) && !memcmp(b + 8, hdr, (size_t)hl),
                        "dtype %s does not write back", D[i].st);
        free(b);
        lx_tree_release(t);
    }
    /* F4 (4 bits): 2 elements in 1 byte; F6: 4 elements in 3 bytes; odd bit counts are refused */
    const char *ok[] = {
        "{\"t\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[0,3]}}",
        "{\"t\":{\"dtype\":\"F6_E3M2\",\"shape\":[4],\"data_offsets\":[0,3]}}",
    };
    for (int i = 0; i < 3; i++) {
        char text[300];
        size_t hl = strlen(ok[i]);
        snprintf(text, sizeof text, "%02zx 00 00 00 00 00 00 00 '%s' 2a*%d", hl, ok[i], i ? 3 : 1);
        size_t n = vec_parse(text, vec, sizeof vec);
        lx_tree *t;
        CHECK(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL) == LX_OK);
        lx_tree_release(t);
    }
}

static void expect_st_error(const char *hdr, int nbuf, int extra_len, const char *needle) {
    char text[600];
    size_t hl = strlen(hdr);
    snprintf(text, sizeof text, "%02zx %02zx 00 00 00 00 00 00 '%s' 00*%d", (hl + (size_t)extra_len) & 0xff,
             (hl + (size_t)extra_len) >> 8, hdr, nbuf);
    size_t n = vec_parse(text, vec, sizeof vec);
    lx_tree *t = NULL;
    CHECK_FAILS(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL), LX_ERR_FORMAT, needle);
    CHECK(t == NULL);
}

static void test_reader_rules(void) {
    /* padding is accepted; a zero-sized tensor stores nothing */
    const char *padded = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[0,0]}}    ";
    char text[300];
    snprintf(text, sizeof text, "%02zx 00 00 00 00 00 00 00 '%s'", strlen(padded), padded);
    size_t n = vec_parse(text, vec, sizeof vec);
    lx_tree *t;
    CHECK(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL) == LX_OK);
    const lx_value *a = lx_tree_get(t, "a");
    CHECK(a && a->kind == LX_V_ARRAY && a->u.array->ndim == 2 && a->u.array->size == 0);
    lx_tree_release(t);

    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0,
                    "tensor 'a': data_offsets begin at 4, expected 0 (a hole before it)");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0,
                    "tensor 'b': data_offsets begin at 4, expected 8 (overlaps the previous tensor)");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0,
                    "tensor 'b': data_offsets begin at 4, expected 8 (overlaps the previous tensor)");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, 0, "(truncated)");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, 0, "(trailing bytes)");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
                    "data_offsets [0, 8] hold 8 bytes but F32 needs 12");
    expect_st_error("{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "unknown dtype F31");
    expect_st_error("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, 0, "not a whole number of bytes");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, 0, "integers >= 0");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, 0, "[BEGIN, END]");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "duplicate object key");
    expect_st_error("{\"__metadata__\":{\"x\":1}}", 0, 0, "__metadata__['x'] is not a string");
    expect_st_error("[1]", 0, 0, "at byte 8: expected the header (3 bytes from byte 8) to start with '{'");
    expect_st_error("{\"a\":", 0, 0, "at byte 13: header JSON");
    expect_st_error("{\"a\":{}}", 0, 200, "runs past the end of the input");
    /* a header length above 100 MB, before any allocation */
    unsigned char big[16] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'};
    lx_tree *t2 = NULL;
    CHECK_FAILS(lx_safetensors_from_bytes(big, 10, NULL, &t2, NULL), LX_ERR_FORMAT,
                "header length 100000001 is above the 100,000,000-byte limit");
    CHECK_FAILS(lx_safetensors_from_bytes(big, 5, NULL, &t2, NULL), LX_ERR_FORMAT, "expected an 8-byte header length");
}

/* One header + zero bytes of data as a safetensors input in vec. */
static size_t st_vec(const char *hdr, int nbuf) {
    char text[600];
    size_t hl = strlen(hdr);
    snprintf(text, sizeof text, "%02zx %02zx 00 00 00 00 00 00 '%s' 00*%d", hl & 0xff, hl >> 8, hdr, nbuf);
    return vec_parse(text, vec, sizeof vec);
}

/* Valid for the reference reader (audit D4): leading JSON whitespace is read; names a linnx tree
 * cannot hold when split at '.' ('/' in a name, an empty part, a name extending another) are
 * LX_ERR_UNSUPPORTED saying why, and load whole with sep "/". */
static void test_reader_accepts(void) {
    lx_tree *t = NULL;
    const char *lead[] = {"  {\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                          "\n\t {\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  "};
    for (int i = 0; i < 2; i++) {
        size_t n = st_vec(lead[i], 8);
        CHECK(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL) == LX_OK);
        const lx_value *v = t ? lx_tree_get(t, "t") : NULL;
        CHECK(v && v->kind == LX_V_ARRAY && v->u.array->size == 2);
        lx_tree_release(t);
        t = NULL;
    }
    size_t n = st_vec("   ", 0);
    CHECK_FAILS(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL), LX_ERR_FORMAT,
                "at byte 11: expected the header (3 bytes from byte 8) to start with '{'");
    lx_safetensors_opts slash = {.sep = "/"};
    struct {
        const char *hdr, *err, *p1, *p2;
    } cases[] = {
        {"{\"model/w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "tensor name 'model/w' contains '/': a linnx tree key cannot", "model/w", NULL},
        {"{\"a..b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "tensor name 'a..b' has an empty part when split at '.': a linnx tree key cannot be empty", "a..b", NULL},
        {"{\"h.0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"h.0.attn\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         "tensor 'h.0.attn': tree: cannot set 'h/0/attn'", "h.0", "h.0.attn"},
        {"{\"h.0.attn\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"h.0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         "one tensor name extends another at '.'", "h.0", "h.0.attn"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = st_vec(cases[i].hdr, cases[i].p2 ? 8 : 4);
        t = NULL;
        CHECK_FAILS(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL), LX_ERR_UNSUPPORTED, cases[i].err);
        CHECK(t == NULL);
        CHECK(lx_safetensors_from_bytes(vec, n, &slash, &t, NULL) == LX_OK);
        CHECK(t && lx_tree_find(t, cases[i].p1) && (!cases[i].p2 || lx_tree_get(t, cases[i].p2)));
        lx_tree_release(t);
    }
}

/* A header length past the file or over 100 MB still sniffs as safetensors, so the reader names
 * byte 0 and what it expected (audit D4); an array over lx_set_max_array_bytes is the input's
 * fault (audit D7), named with its offset. */
static void test_file_sizes(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/linnx_stsz_%ld.safetensors", (long)getpid());
    unsigned char b[16] = {0x40, 0x42, 0x0f, 0, 0, 0, 0, 0, '{', '}'};
    lx_tree *t = NULL;
    CHECK(lx_atomic_write_file(path, b, 10) == LX_OK);
    CHECK_FAILS(lx_ckpt_load(path, &t), LX_ERR_FORMAT,
                "safetensors: at byte 0: header length 1000000 runs past the end of the input (10 bytes)");
    b[0] = 0x01, b[1] = 0xe1, b[2] = 0xf5, b[3] = 0x05;
    CHECK(lx_atomic_write_file(path, b, 10) == LX_OK);
    CHECK_FAILS(lx_ckpt_load(path, &t), LX_ERR_FORMAT, "at byte 0: header length 100000001 is above the 100,000,000-byte limit");
    size_t n = st_vec("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[8,24]}}", 24);
    lx_set_max_array_bytes(4);
    CHECK_FAILS(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL), LX_ERR_INVALID_ARGUMENT,
                "tensor 'a' (F32(2,)) needs 8 bytes, over the limit of 4 bytes per array");
    lx_set_max_array_bytes(8);
    CHECK_FAILS(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL), LX_ERR_INVALID_ARGUMENT, "tensor 'b' (F64(2,)) needs 16 bytes");
    lx_set_max_array_bytes(0);
    CHECK(lx_safetensors_from_bytes(vec, n, NULL, &t, NULL) == LX_OK);
    lx_tree_release(t);
    unlink(path);
}

/* Loads from a file: aligned tensors point into the mapping, unaligned ones are copied; changing
 * a loaded array does not change the file; the mapping lives until the last array goes. */
static void test_file_mmap(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/linnx_st_%ld.safetensors", (long)getpid());
    lx_tree *t = lx_tree_new();
    float v[6] = {1, 2, 3, 4, 5, 6};
    lx_array *k = lx_array_from_f32(2, (int64_t[]){2, 3}, v);
    lx_array *b = lx_array_from_data(LX_BOOL, 1, (int64_t[]){3}, (uint8_t[]){1, 0, 1});
    CHECK(lx_tree_set_path(t, "params/kernel", lx_array_v(k)) == LX_OK);
    CHECK(lx_tree_set_path(t, "params/mask", lx_array_v(b)) == LX_OK);
    CHECK(lx_ckpt_save(path, t, LX_CKPT_AUTO) == LX_OK);
    lx_ckpt_format f;
    CHECK(lx_ckpt_sniff(path, &f) == LX_OK && f == LX_CKPT_SAFETENSORS);
    lx_tree *back = NULL;
    CHECK(lx_ckpt_load(path, &back) == LX_OK);
    CHECK(back && lx_tree_equal(back, t));
    const lx_value *kv = lx_tree_find(back, "params/kernel");
    CHECK(kv && kv->u.array->release_fn != NULL && kv->u.array->alloc == NULL); /* zero-copy */
    lx_array *kept = lx_retain(kv->u.array);
    lx_f32(kept)[0] = 42; /* copy-on-write */
    lx_tree_release(back);
    CHECK(lx_f32(kept)[5] == 6.0f);
    lx_release(kept);
    CHECK(lx_ckpt_load(path, &back) == LX_OK);
    CHECK(lx_tree_equal(back, t));
    lx_tree_release(back);
    unlink(path);
    CHECK_FAILS(lx_ckpt_load(path, &back), LX_ERR_NOT_FOUND, "cannot open");
    lx_release(k);
    lx_release(b);
    lx_tree_release(t);
}

/* lx_array_wrap: the release callback runs once, with the last reference; never on failure. */
static int released;
static void count_release(void *ctx) { released += *(int *)ctx; }

static void test_array_wrap(void) {
    float buf[4] = {1, 2, 3, 4};
    int one = 1;
    released = 0;
    lx_array *a = lx_array_wrap(LX_F32, 1, (int64_t[]){4}, buf, count_release, &one);
    CHECK(a && a->data == buf && lx_f32(a)[3] == 4.0f);
    lx_array *v = lx_array_reshape_view(a, 2, (int64_t[]){2, 2});
    lx_release(a);
    CHECK(released == 0);
    lx_release(v);
    CHECK(released == 1);
    lx_clear_error();
    CHECK_NULL_FAILS(lx_array_wrap((lx_dtype)99, 0, NULL, buf, count_release, &one), LX_ERR_DTYPE, "array: invalid dtype 99");
    CHECK(released == 1); /* never on failure */
    CHECK_NULL_FAILS(lx_array_wrap(LX_F32, 1, (int64_t[]){4}, NULL, count_release, &one), LX_ERR_INVALID_ARGUMENT,
                     "array_wrap: data is NULL");
    CHECK(released == 1);
}

int main(void) {
    RUN(test_array_wrap);
    RUN(test_golden);
    RUN(test_writer_layout);
    RUN(test_name_clash);
    RUN(test_dtypes);
    RUN(test_reader_rules);
    RUN(test_reader_accepts);
    RUN(test_file_sizes);
    RUN(test_file_mmap);
    CHECK_EQ_INT(lx_array_live_count(), 0);
    return lx_test_finish();
}
