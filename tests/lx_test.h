/* A minimal test harness: checks count as they run and the program ends with the plain line
 * "N passed, N failed" (exit 1 if anything failed). Each test program includes this once.
 *
 *   static void test_reshape(void) { CHECK(x != NULL); CHECK_EQ_INT(a->ndim, 2); }
 *   int main(void) { RUN(test_reshape); return lx_test_finish(); }
 */
#ifndef LX_TEST_H
#define LX_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/linnx.h"

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
/* Expect the last error message to contain `needle` (after a call that returned NULL). */
#define CHECK_ERROR_HAS(needle)                                                     \
    LX_TEST_REPORT_(strstr(lx_last_error(), (needle)) != NULL,                      \
                    "last error \"%s\" lacks \"%s\"", lx_last_error(), (needle))

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

#endif
