/* linnx/init.h - parameter initializers, numerically identical to jax.nn.initializers (which
 * flax.linen.initializers and flax.nnx.initializers re-export).
 *
 * An initializer is a small value (no allocation, copy it freely): a kind and its parameters.
 * Build one with a constructor or by its Flax name, then lx_init_apply(init, key, dtype, shape).
 *
 *   lx_initializer k;
 *   lx_initializer_from_name("lecun_normal", &k);              // or k = lx_init_lecun_normal();
 *   lx_array *w = lx_init_apply(&k, key, LX_F32, 2, (int64_t[]){4, 8});
 *
 * Numerics (spec/jax-random.md §5): fans in double with Python's order of operations,
 * variance = f32(scale / denominator), stddevs in f32, every product one f32 multiply. Random
 * draws use the process-wide bit scheme (lx_random_set_legacy).
 *
 * Ownership: lx_init_apply returns an array owned by the innermost pool (like ops), or NULL with
 * a message. lx_init_apply_into writes into a caller buffer.
 */
#ifndef LINNX_INIT_H
#define LINNX_INIT_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/array.h"
#include "linnx/random.h"
#include "linnx/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lx_init_kind {
    LX_INIT_ZEROS = 0,
    LX_INIT_ONES,
    LX_INIT_CONSTANT,
    LX_INIT_NORMAL,           /* normal(key, shape) * f32(stddev) */
    LX_INIT_UNIFORM,          /* uniform(key, shape) * f32(scale), over [0, scale) */
    LX_INIT_TRUNCATED_NORMAL, /* truncated_normal(key, lower, upper, shape) * f32(stddev) */
    LX_INIT_VARIANCE_SCALING
} lx_init_kind;

typedef enum lx_fan_mode { LX_FAN_IN = 0, LX_FAN_OUT, LX_FAN_AVG, LX_FAN_GEO_AVG } lx_fan_mode;

typedef enum lx_init_distribution {
    LX_DIST_TRUNCATED_NORMAL = 0,
    LX_DIST_NORMAL,
    LX_DIST_UNIFORM
} lx_init_distribution;

/* An axis or a tuple of axes (Python's `int | Sequence[int]`); negative axes count from the end.
 * n = 0 is the empty tuple (). */
typedef struct lx_axes {
    int n;
    int axis[LX_MAX_DIMS];
} lx_axes;

static inline lx_axes lx_axis(int a) {
    lx_axes x = {1, {a}};
    return x;
}
static inline lx_axes lx_no_axes(void) {
    lx_axes x = {0, {0}};
    return x;
}

typedef struct lx_initializer {
    lx_init_kind kind;
    const char *name;  /* Flax's name for it ("lecun_normal", "variance_scaling", ...), static */
    double value;      /* constant */
    double stddev;     /* normal, truncated_normal */
    double scale;      /* uniform: the upper bound; variance_scaling: the scale */
    double lower, upper; /* truncated_normal bounds (in standard deviations) */
    lx_fan_mode mode;  /* variance_scaling */
    lx_init_distribution distribution;
    lx_axes in_axis, out_axis, batch_axis; /* variance_scaling: default -2, -1, () */
} lx_initializer;

/* ---- constructors (Flax's defaults in the comments) ---- */
lx_initializer lx_init_zeros(void);
lx_initializer lx_init_ones(void);
lx_initializer lx_init_constant(double value);
lx_initializer lx_init_normal(double stddev);        /* 1e-2 */
lx_initializer lx_init_uniform(double scale);        /* 1e-2 */
lx_initializer lx_init_truncated_normal(double stddev, double lower, double upper); /* 1e-2, -2, 2 */
/* mode: "fan_in" | "fan_out" | "fan_avg" | "fan_geo_avg"; distribution: "truncated_normal" |
 * "normal" | "uniform" (JAX also spells truncated_normal via this constructor only). Axes are
 * checked against the shape when applied. Errors: LX_ERR_INVALID_ARGUMENT with JAX's wording. */
lx_status lx_init_variance_scaling(double scale, const char *mode, const char *distribution,
                                   lx_axes in_axis, lx_axes out_axis, lx_axes batch_axis,
                                   lx_initializer *out);
/* The named variance-scaling initializers, with in_axis -2, out_axis -1, batch_axis (); set the
 * axes fields afterwards to change them (Flax's in_axis=/out_axis=/batch_axis= arguments). */
lx_initializer lx_init_lecun_normal(void);   /* (1.0, fan_in,  truncated_normal) */
lx_initializer lx_init_lecun_uniform(void);  /* (1.0, fan_in,  uniform) */
lx_initializer lx_init_glorot_normal(void);  /* (1.0, fan_avg, truncated_normal) = xavier_normal */
lx_initializer lx_init_glorot_uniform(void); /* (1.0, fan_avg, uniform) = xavier_uniform */
lx_initializer lx_init_he_normal(void);      /* (2.0, fan_in,  truncated_normal) = kaiming_normal */
lx_initializer lx_init_he_uniform(void);     /* (2.0, fan_in,  uniform) = kaiming_uniform */

/* By Flax name: zeros, ones, zeros_init, ones_init, normal, uniform, truncated_normal (with
 * Flax's default arguments), lecun_*, glorot_*, xavier_*, he_*, kaiming_*. Names whose Flax
 * function has required arguments (constant, variance_scaling) fail with
 * LX_ERR_INVALID_ARGUMENT: use their constructors. orthogonal and delta_orthogonal are
 * LX_ERR_UNSUPPORTED; anything else LX_ERR_NOT_FOUND. */
lx_status lx_initializer_from_name(const char *name, lx_initializer *out);

/* fan_in and fan_out of jax's _compute_fans for this shape (Python doubles, same order). */
lx_status lx_compute_fans(int ndim, const int64_t *shape, lx_axes in_axis, lx_axes out_axis,
                          lx_axes batch_axis, double *fan_in, double *fan_out);

/* Run the initializer. zeros/ones/constant take any dtype (bfloat16 rounds to nearest even);
 * the random ones take float32 only (LX_ERR_DTYPE otherwise). */
lx_array *lx_init_apply(const lx_initializer *init, lx_key key, lx_dtype dtype, int ndim,
                        const int64_t *shape);
/* The same into out, which holds prod(shape) elements of dtype. */
lx_status lx_init_apply_into(const lx_initializer *init, lx_key key, lx_dtype dtype, int ndim,
                             const int64_t *shape, void *out);

#ifdef __cplusplus
}
#endif
#endif
