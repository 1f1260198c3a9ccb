/* Byte-level LM data (lm_data.h): randint against the reference model (fixtures from
 * scripts/gen_llama_fixtures.py), batches, the held-out split, the entropy baseline, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixtures/llama_fixtures.h"
#include "linnx/linnx.h"
#include "linnx/lm_data.h"
#include "lx_test.h"

static char dir[] = "/tmp/lx_lm_data_XXXXXX";

static void write_file(const char *name, const char *text) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static const char *path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void test_randint(void) {
    for (size_t i = 0; i < sizeof LF_RANDINT / sizeof LF_RANDINT[0]; i++) {
        const lf_randint *c = &LF_RANDINT[i];
        int32_t got[8];
        CHECK_EQ_INT(lm_randint((lx_key){{c->key[0], c->key[1]}}, 8, c->lo, c->hi, got), LX_OK);
        LX_TEST_REPORT_(memcmp(got, c->want, sizeof got) == 0, "randint case %zu (%d..%d): got %d %d .., want %d %d ..",
                        i, c->lo, c->hi, got[0], got[1], c->want[0], c->want[1]);
    }
}

static void test_batches(void) {
    uint8_t buf[100];
    for (int i = 0; i < 100; i++) buf[i] = (uint8_t)(i * 7 % 256);
    lx_key key = lx_key_from_seed(3);
    lx_array *b = lm_random_batch(buf, 100, key, 4, 9);
    CHECK(b && lx_shape_eq(b, 2, (int64_t[]){4, 9}));
    int32_t off[4];
    CHECK_EQ_INT(lm_randint(key, 4, 0, 92, off), LX_OK);
    for (int r = 0; r < 4 && b; r++)
        for (int i = 0; i < 9; i++) CHECK_EQ_INT(lx_i32(b)[r * 9 + i], buf[off[r] + i]);
    CHECK_NULL_FAILS(lm_random_batch(buf, 8, key, 1, 9), LX_ERR_INVALID_ARGUMENT,
                     "the data has 8 bytes, fewer than the 9 a sequence needs");
    CHECK_EQ_INT(lm_window_count(100, 9), 11);
    lx_array *w = lm_window_batch(buf, 100, 2, 3, 9);
    CHECK(w && lx_i32(w)[0] == buf[18] && lx_i32(w)[26] == buf[44]);
    CHECK_NULL_FAILS(lm_window_batch(buf, 100, 9, 3, 9), LX_ERR_INVALID_ARGUMENT, "do not fit in 100 bytes");
}

static void test_load(void) {
    write_file("a.txt", "hello world\n");                  /* 12 bytes */
    write_file("b.txt", "0123456789abcdefghij");           /* 20 bytes */
    CHECK_EQ_INT(symlink(path("a.txt"), path("link_to_a")), 0);
    lm_data d;
    /* the directory: a.txt, b.txt, link_to_a (a second time: read once) */
    const char *paths[] = {dir, path("b.txt")};
    CHECK_EQ_INT(lm_data_load(2, paths, path("b.txt"), 0.25, &d), LX_OK);
    CHECK_EQ_INT(d.nfiles, 2);
    CHECK_EQ_INT(d.ntrain, 12 + 15);
    CHECK_EQ_INT(d.nheldout, 5);
    CHECK(d.train && memcmp(d.train, "hello world\n0123456789abcde", 27) == 0);
    CHECK(d.heldout && memcmp(d.heldout, "fghij", 5) == 0);
    CHECK_EQ_INT(lm_data_check_vocab(&d, 256), LX_OK);
    /* an out-of-vocabulary byte is named by its file and its offset in that file */
    char want[512];
    snprintf(want, sizeof want, "training data: %s, byte 0 is 104, outside the vocabulary [0, 100)", path("a.txt"));
    CHECK_FAILS(lm_data_check_vocab(&d, 100), LX_ERR_INVALID_ARGUMENT, want);
    CHECK(d.nfiles == 2 && d.files && !strcmp(d.files[0], path("a.txt")) && !strcmp(d.files[1], path("b.txt")));
    CHECK(d.file_end && d.file_end[0] == 12 && d.file_end[1] == 27 && d.heldout_file == 1 && d.heldout_start == 15);
    lm_data_free(&d);
    const char *bonly[] = {path("b.txt")};
    CHECK_EQ_INT(lm_data_load(1, bonly, path("b.txt"), 0.25, &d), LX_OK);
    snprintf(want, sizeof want, "training data: %s, byte 13 is 100, outside the vocabulary [0, 100)", path("b.txt"));
    CHECK_FAILS(lm_data_check_vocab(&d, 100), LX_ERR_INVALID_ARGUMENT, want);
    snprintf(want, sizeof want, "held-out data: %s, byte 15 is 102, outside the vocabulary [0, 102)", path("b.txt"));
    CHECK_FAILS(lm_data_check_vocab(&d, 102), LX_ERR_INVALID_ARGUMENT, want);
    lm_data_free(&d);
    write_file("c.txt", "ok~");
    const char *ac[] = {path("a.txt"), path("c.txt")};
    CHECK_EQ_INT(lm_data_load(2, ac, NULL, 0, &d), LX_OK);
    snprintf(want, sizeof want, "training data: %s, byte 2 is 126, outside the vocabulary [0, 120)", path("c.txt"));
    CHECK_FAILS(lm_data_check_vocab(&d, 120), LX_ERR_INVALID_ARGUMENT, want);
    CHECK(d.heldout_file == -1);
    lm_data_free(&d);
    unlink(path("c.txt"));
    CHECK_EQ_INT(lm_data_load(1, paths, NULL, 0, &d), LX_OK);
    CHECK_EQ_INT(d.ntrain, 32);
    CHECK_EQ_INT(d.nheldout, 0);
    lm_data_free(&d);

    /* bad input: each names the path; nothing is allocated */
    write_file("empty", "");
    const char *e[] = {path("empty")};
    CHECK_FAILS(lm_data_load(1, e, NULL, 0, &d), LX_ERR_INVALID_ARGUMENT, "empty: the file is empty");
    CHECK(d.train == NULL && d.ntrain == 0);
    const char *missing[] = {path("nope")};
    /* a path that does not exist is NOT_FOUND (bad input, as lx_ckpt_load), also under a file */
    CHECK_FAILS(lm_data_load(1, missing, NULL, 0, &d), LX_ERR_NOT_FOUND, "nope: cannot read: No such file or directory");
    const char *under_file[] = {path("a.txt/x")};
    CHECK_FAILS(lm_data_load(1, under_file, NULL, 0, &d), LX_ERR_NOT_FOUND, "a.txt/x: cannot read: Not a directory");
    const char *a_only[] = {path("a.txt")};
    CHECK_FAILS(lm_data_load(1, a_only, path("nope"), 0.1, &d), LX_ERR_NOT_FOUND,
                "nope: cannot read the held-out file: No such file or directory");
    const char *ab[] = {path("a.txt")};
    CHECK_FAILS(lm_data_load(1, ab, path("b.txt"), 0.1, &d), LX_ERR_INVALID_ARGUMENT,
                "b.txt: the held-out file is not among the data files");
    CHECK_FAILS(lm_data_load(1, ab, path("a.txt"), 1.0, &d), LX_ERR_INVALID_ARGUMENT, "must be in (0, 1)");
    CHECK_FAILS(lm_data_load(1, ab, path("a.txt"), 0.999, &d), LX_ERR_INVALID_ARGUMENT, "leaves one side empty");
    CHECK_FAILS(lm_data_load(0, ab, NULL, 0, &d), LX_ERR_INVALID_ARGUMENT, "no data files");
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK_EQ_INT(mkdir(sub, 0700), 0);
    const char *sd[] = {sub};
    CHECK_FAILS(lm_data_load(1, sd, NULL, 0, &d), LX_ERR_INVALID_ARGUMENT, "no files in this directory");
    rmdir(sub);
    unlink(path("empty"));
    unlink(path("link_to_a"));
    unlink(path("a.txt"));
    unlink(path("b.txt"));
}

static void test_entropy_and_encode(void) {
    CHECK_NEAR(lm_unigram_entropy((const uint8_t *)"aabb", 4), log(2.0), 1e-12);
    CHECK_NEAR(lm_unigram_entropy((const uint8_t *)"aaaa", 4), 0, 0);
    CHECK_NEAR(lm_unigram_entropy((const uint8_t *)"abcd", 4), log(4.0), 1e-12);
    lx_array *t = lm_encode("hi", 256);
    CHECK(t && lx_shape_eq(t, 2, (int64_t[]){1, 2}) && lx_i32(t)[0] == 104 && lx_i32(t)[1] == 105);
    t = lm_encode("\xc3\xa9", 256);
    CHECK(t && lx_i32(t)[0] == 0xc3 && lx_i32(t)[1] == 0xa9);
    CHECK_NULL_FAILS(lm_encode("hi", 100), LX_ERR_INVALID_ARGUMENT,
                     "text: byte 0 is 104, outside the vocabulary [0, 100)");
    CHECK_NULL_FAILS(lm_encode("", 256), LX_ERR_INVALID_ARGUMENT, "empty text");
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    RUN(test_randint);
    RUN(test_batches);
    RUN(test_load);
    RUN(test_entropy_and_encode);
    rmdir(dir);
    return lx_test_finish();
}
