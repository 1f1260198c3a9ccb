/* A minimal test harness: checks count as they run and the program ends with the plain line
 * "N passed, N failed" (exit 1 if anything failed). Each test program includes this once.
 *
 *   static void test_reshape(void) { CHECK(x != NULL); CHECK_EQ_INT(a->ndim, 2); }
 *   int main(void) { RUN(test_reshape); return lx_test_finish(); }
 */
#ifndef LX_TEST_H
#define LX_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/linnx.h"

/* LX_TEST_ASAN: 1 in an AddressSanitizer build (gcc's macro or clang's feature test), else 0.
 * Such builds bypass the library's per-thread caches and replace malloc themselves. */
#if defined(__SANITIZE_ADDRESS__)
#define LX_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LX_TEST_ASAN 1
#endif
#endif
#ifndef LX_TEST_ASAN
#define LX_TEST_ASAN 0
#endif

static int lx_test_passed, lx_test_failed;
static const char *lx_test_current = "";

#define LX_TEST_REPORT_(ok, ...)                                                    \
    do {                                                                            \
        if (ok) {                                                                   \
            lx_test_passed++;                                                       \
        } else {                                                                    \
            lx_test_failed++;                                                       \
            fprintf(stderr, "FAIL %s (%s:%d): ", lx_test_current, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, "\n");                                                  \
        }                                                                           \
    } while (0)

#define CHECK(cond) LX_TEST_REPORT_((cond), "%s [last error: %s]", #cond, lx_last_error())
#define CHECK_EQ_INT(a, b)                                                          \
    do {                                                                            \
        long long lx_a_ = (long long)(a), lx_b_ = (long long)(b);                   \
        LX_TEST_REPORT_(lx_a_ == lx_b_, "%s == %s: %lld != %lld", #a, #b, lx_a_, lx_b_); \
    } while (0)
#define CHECK_EQ_U32(a, b)                                                          \
    do {                                                                            \
        unsigned long lx_a_ = (unsigned long)(a), lx_b_ = (unsigned long)(b);       \
        LX_TEST_REPORT_(lx_a_ == lx_b_, "%s == %s: %lu != %lu", #a, #b, lx_a_, lx_b_); \
    } while (0)
#define CHECK_STR(a, b)                                                             \
    do {                                                                            \
        const char *lx_a_ = (a), *lx_b_ = (b);                                      \
        LX_TEST_REPORT_(lx_a_ && lx_b_ && strcmp(lx_a_, lx_b_) == 0,                \
                        "%s == %s: \"%s\" != \"%s\"", #a, #b, lx_a_ ? lx_a_ : "(null)", \
                        lx_b_ ? lx_b_ : "(null)");                                  \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                       \
    do {                                                                            \
        double lx_a_ = (double)(a), lx_b_ = (double)(b);                            \
        LX_TEST_REPORT_(fabs(lx_a_ - lx_b_) <= (tol), "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, \
                        lx_a_, lx_b_, (double)(tol));                               \
    } while (0)
/* Expect a call to fail with `status` and a message containing `needle`. */
#define CHECK_FAILS(expr, status, needle)                                           \
    do {                                                                            \
        lx_clear_error();                                                           \
        lx_status lx_s_ = (expr);                                                   \
        LX_TEST_REPORT_(lx_s_ == (status) && strstr(lx_last_error(), (needle)) != NULL, \
                        "%s: got %s \"%s\", want %s containing \"%s\"", #expr,      \
                        lx_status_name(lx_s_), lx_last_error(), lx_status_name(status), (needle)); \
    } while (0)
/* Expect a call that returns a pointer to fail: NULL, lx_last_status() == status and a message
 * containing `needle`. */
#define CHECK_NULL_FAILS(expr, status, needle)                                      \
    do {                                                                            \
        lx_clear_error();                                                           \
        const void *lx_p_ = (expr);                                                 \
        lx_status lx_s_ = lx_last_status();                                         \
        LX_TEST_REPORT_(lx_p_ == NULL && lx_s_ == (status) && strstr(lx_last_error(), (needle)) != NULL, \
                        "%s: got %s, %s \"%s\", want NULL, %s containing \"%s\"", #expr, \
                        lx_p_ ? "non-NULL" : "NULL", lx_status_name(lx_s_), lx_last_error(), \
                        lx_status_name(status), (needle));                          \
    } while (0)
/* Expect the last failure to be `status` with exactly the message `text` (after a call that
 * returned NULL or a status). */
#define CHECK_ERROR_IS(status, text)                                                \
    do {                                                                            \
        lx_status lx_s_ = lx_last_status();                                         \
        const char *lx_t_ = (text);                                                 \
        LX_TEST_REPORT_(lx_s_ == (status) && strcmp(lx_last_error(), lx_t_) == 0,   \
                        "last failure %s \"%s\", want %s \"%s\"", lx_status_name(lx_s_), \
                        lx_last_error(), lx_status_name(status), lx_t_);             \
    } while (0)
/* Expect the last error message to contain `needle` (after a call that returned NULL). */
#define CHECK_ERROR_HAS(needle)                                                     \
    LX_TEST_REPORT_(strstr(lx_last_error(), (needle)) != NULL,                      \
                    "last error \"%s\" lacks \"%s\"", lx_last_error(), (needle))

/* ---- shared checks (independent of the code under test) ---- */

/* The larger of the worst error so far and a new one d, a NaN counting as infinite: a comparison
 * with NaN is false, so `if (d > worst) worst = d` (or fmax) would pass a NaN result silently. */
static inline double lx_worse(double worst, double d) { return d != d ? INFINITY : d > worst ? d : worst; }

static inline uint32_t bits_of(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* a is float32 with exactly these n bit patterns (fixtures store floats as bits). */
static inline bool same_bits(const lx_array *a, const uint32_t *want, int64_t n) {
    if (!a || a->dtype != LX_F32 || a->size != n) return false;
    for (int64_t i = 0; i < n; i++)
        if (bits_of(lx_f32(a)[i]) != want[i]) return false;
    return true;
}

/* An LX_V_STRS value holding exactly these names (NULL entries are None). */
static inline bool strs_are(const lx_value *v, int n, const char *const *want) {
    if (!v || v->kind != LX_V_STRS || v->u.strs.n != n) return false;
    for (int i = 0; i < n; i++)
        if (want[i] ? !v->u.strs.v[i] || strcmp(v->u.strs.v[i], want[i]) != 0 : v->u.strs.v[i] != NULL) return false;
    return true;
}

/* y == x @ k (+ b) for 2-D float32 arrays, against a double-precision loop, to 1e-5 relative. */
static inline bool affine_close(const lx_array *y, const lx_array *x, const lx_array *k, const lx_array *b) {
    if (!y || !x || !k || x->ndim != 2 || k->ndim != 2 || y->ndim != 2) return false;
    int64_t n = x->shape[0], d = x->shape[1], f = k->shape[1];
    if (y->shape[0] != n || y->shape[1] != f || k->shape[0] != d || (b && b->size != f)) return false;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < f; j++) {
            double acc = b ? lx_f32(b)[j] : 0;
            for (int64_t t = 0; t < d; t++) acc += (double)lx_f32(x)[i * d + t] * lx_f32(k)[t * f + j];
            if (!(fabs(acc - lx_f32(y)[i * f + j]) <= 1e-5 * (1 + fabs(acc)))) return false; /* NaN fails */
        }
    return true;
}

#define RUN(fn)                                                                     \
    do {                                                                            \
        lx_test_current = #fn;                                                      \
        size_t lx_mark_ = lx_pool_open();                                           \
        fn();                                                                       \
        lx_pool_close(lx_mark_);                                                    \
    } while (0)

static inline int lx_test_finish(void) {
    lx_pool_drain();
    printf("%d passed, %d failed\n", lx_test_passed, lx_test_failed);
    return lx_test_failed ? 1 : 0;
}

/* Two flattened states hold the same leaves: the same paths, and each path the very same array
 * (not a copy): "nothing changed" after a failed update. */
static inline bool lx_test_same_leaves(const lx_flat *a, const lx_flat *b) {
    if (a->len != b->len) return false;
    for (size_t i = 0; i < a->len; i++)
        if (strcmp(a->items[i].path, b->items[i].path) != 0 ||
            lx_value_leaf_array(&a->items[i].value) != lx_value_leaf_array(&b->items[i].value))
            return false;
    return true;
}

/* An NNX module's whole state as (path, array) pairs (free with lx_flat_free). */
static inline lx_flat lx_test_nnx_state_flat(nnx_module *m) {
    lx_tree *t = NULL;
    lx_flat f = {0};
    CHECK_EQ_INT(nnx_state(m, 0, NULL, &t), LX_OK);
    if (t) CHECK_EQ_INT(lx_tree_flatten(t, &f), LX_OK);
    lx_tree_release(t);
    return f;
}

/* The value of the Variable at `path` ("layers/kernel") in an NNX module's state, or NULL; the
 * module keeps it alive. */
static inline lx_array *lx_test_var_value(nnx_module *m, const char *path) {
    lx_tree *st = NULL;
    if (nnx_state(m, 0, NULL, &st) != LX_OK) return NULL;
    const lx_value *v = lx_tree_find(st, path);
    lx_array *a = v && v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var) : NULL;
    lx_tree_release(st);
    return a;
}

#endif
