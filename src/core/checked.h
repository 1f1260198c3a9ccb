/* Internal: checked int64 arithmetic for every shape and size computation (not installed).
 *
 * DESIGN RULE (checked-arithmetic): every product, sum or difference of dimensions, pads,
 * strides, dilations or element counts that reaches a shape, a size or an allocation is computed
 * with lx_mul_ok / lx_add_ok / lx_sub_ok (or lx_shape_product_ok) and a failure becomes
 * LX_ERR_SHAPE naming the op, the argument and the values:
 *   "conv_general: window_strides 9223372036854775807 at spatial axis 0 overflows int64 ...".
 * Signed overflow is undefined behaviour in C; a wrapped shape is a wrong answer. Plain `*` and
 * `+` on dimensions are fine only where an earlier checked result bounds them (say so there).
 * The invariant that makes the rest safe: lx_array's shape check (core/array.c) keeps the product
 * of an array's non-zero dims at most INT64_MAX / 16, so any sub-product of one array's dims and
 * its byte count fit; a new shape (an op's output, a padded or dilated length, a requested
 * reshape) is what needs the checked helpers before it becomes an array.
 * `grep -rn checked-arithmetic` finds this rule and its notes.
 */
#ifndef LINNX_CORE_CHECKED_H
#define LINNX_CORE_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* *out = a op b; false (and *out unspecified) when the exact result does not fit in int64. */
static inline bool lx_mul_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool lx_add_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool lx_sub_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_sub_overflow(a, b, out); }

/* Byte counts: n elements of `es` bytes (n >= 0), false when it does not fit in size_t or
 * ptrdiff_t (pointer differences over the buffer must stay defined). */
static inline bool lx_bytes_ok(int64_t n, size_t es, size_t *out) {
    if (n < 0) return false;
    size_t r;
    if (__builtin_mul_overflow((size_t)n, es, &r) || r > (size_t)PTRDIFF_MAX) return false;
    *out = r;
    return true;
}

/* The product of n non-negative dims; false on overflow. A zero dim makes the product 0 even
 * when the other dims alone would overflow, as numpy's size does. */
static inline bool lx_shape_product_ok(int n, const int64_t *dims, int64_t *out) {
    int64_t p = 1;
    bool over = false;
    for (int i = 0; i < n; i++) {
        if (dims[i] == 0) {
            *out = 0;
            return true;
        }
        if (!over && !lx_mul_ok(p, dims[i], &p)) over = true;
    }
    if (over) return false;
    *out = p;
    return true;
}

#endif
