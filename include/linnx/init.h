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
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

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

/* ---- partitioning (nn.with_partitioning, nn.with_logical_partitioning, nnx.with_partitioning)
 *
 * An initializer may carry sharding annotations: the metadata Flax's wrappers attach to what the
 * initializer returns. lx_init_apply ignores them (it always gives a plain array); the layers
 * read them when they store the parameter:
 *   Linen (linen_param): the param is stored as a Partitioned / LogicallyPartitioned box and the
 *     method gets the unboxed array (self.param + meta.unbox).
 *   NNX (nnx_param_new): the Variable gets out_sharding = names and mesh (and sharding_rules for
 *     the logical kind), nnx.with_partitioning's VariableMetadata.
 * Everything is stored inline, so copying the initializer by value (config fields do) keeps it
 * self-contained. A name (or mesh, or rule entry) may have at most LX_PARTITION_NAME_CAP - 1
 * bytes; there are at most LX_MAX_DIMS names and LX_PARTITION_MAX_RULES rules. */
#define LX_PARTITION_NAME_CAP 48
#define LX_PARTITION_MAX_RULES 8

typedef enum lx_partition_kind {
    LX_PARTITION_NONE = 0,        /* a plain initializer */
    LX_PARTITION_PARTITIONED,     /* with_partitioning: Partitioned(value, names, mesh) */
    LX_PARTITION_LOGICAL          /* with_logical_partitioning: LogicallyPartitioned(..., rules) */
} lx_partition_kind;

typedef struct lx_partitioning {
    lx_partition_kind kind;
    int nnames;
    bool has_name[LX_MAX_DIMS];                      /* false: None (axis not sharded) */
    char names[LX_MAX_DIMS][LX_PARTITION_NAME_CAP];
    bool has_mesh;                                   /* false: mesh=None */
    char mesh[LX_PARTITION_NAME_CAP];
    bool has_rules;                                  /* logical only; false: rules=None */
    int nrules;                                      /* strings: logical0, mesh0, logical1, ... */
    bool has_rule[2 * LX_PARTITION_MAX_RULES];       /* a mesh entry may be None */
    char rules[2 * LX_PARTITION_MAX_RULES][LX_PARTITION_NAME_CAP];
} lx_partitioning;

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
    lx_partitioning partitioning;          /* kind LX_PARTITION_NONE unless wrapped */
} lx_initializer;

/* ---- constructors (Flax's defaults in the comments) ---- */
lx_initializer lx_init_zeros(void);
lx_initializer lx_init_ones(void);
lx_initializer lx_init_constant(double value);
lx_initializer lx_init_normal(double stddev);        /* 1e-2 */
lx_initializer lx_init_uniform(double scale);        /* 1e-2 */
lx_initializer lx_init_truncated_normal(double stddev, double lower, double upper); /* 1e-2, -2, 2 */
/* mode: "fan_in" | "fan_out" | "fan_avg" | "fan_geo_avg"; distribution: "truncated_normal" |
 * "normal" | "uniform" (JAX also spells truncated_normal via this constructor only). Errors here
 * (LX_ERR_INVALID_ARGUMENT with JAX's wording, *out untouched): an unknown mode or distribution,
 * an axes tuple of more than LX_MAX_DIMS entries, a NULL out. Axes are checked against the shape
 * when applied (lx_init_apply, lx_compute_fans): an axis out of range is LX_ERR_INVALID_ARGUMENT
 * (JAX's IndexError); a shape of rank < 2 or with a zero fan is LX_ERR_SHAPE. */
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

/* nn.with_partitioning(base, names, mesh) / nnx.with_partitioning(base, names, mesh): a copy of
 * `base` that carries the names (nnames entries, NULL entries are None; names may be NULL when
 * nnames is 0) and the mesh name (NULL = None). The random draws are base's: the wrapper consumes
 * no extra key. Errors (LX_ERR_INVALID_ARGUMENT, *out untouched): a NULL base or out, base
 * already wrapped, nnames < 0 or > LX_MAX_DIMS, a name or mesh of LX_PARTITION_NAME_CAP bytes or
 * more. How many names a parameter takes is checked when a layer makes it (at most its rank). */
lx_status lx_init_with_partitioning(const lx_initializer *base, int nnames, const char *const *names,
                                    const char *mesh, lx_initializer *out);
/* nn.with_logical_partitioning(base, names, mesh, rules): the same, kind LX_PARTITION_LOGICAL,
 * with rules as box.h takes them: nrules strings, logical0, mesh0, logical1, mesh1, ... (an even
 * number, at most 2 * LX_PARTITION_MAX_RULES; a NULL mesh entry is None, a NULL logical entry is
 * an error); rules NULL (nrules 0) is rules=None. */
lx_status lx_init_with_logical_partitioning(const lx_initializer *base, int nnames, const char *const *names,
                                            const char *mesh, int nrules, const char *const *rules,
                                            lx_initializer *out);
/* Views of an initializer's partitioning as the const char * arrays box.h and the metadata take,
 * pointing into *init (valid while it lives). names: fills out[0..nnames) (NULL = None), returns
 * nnames (0 for a plain initializer). rules: fills out[0..nrules), returns nrules, or -1 for
 * rules=None (and for a kind that has no rules). mesh: the name or NULL. */
int lx_init_partition_names(const lx_initializer *init, const char *out[LX_MAX_DIMS]);
int lx_init_partition_rules(const lx_initializer *init, const char *out[2 * LX_PARTITION_MAX_RULES]);
const char *lx_init_partition_mesh(const lx_initializer *init);

/* Whether a parameter of rank `ndim` (shape `shape`) can take init's names: at most ndim of them
 * (fewer leave the trailing axes unsharded, as a short PartitionSpec does). A plain initializer
 * always can. LX_ERR_SHAPE otherwise: "with_partitioning: names ('a', 'b', 'c') have 3 entries,
 * more than the rank of a value of shape (4, 8)"; callers prefix the parameter's name. */
lx_status lx_init_check_partition_rank(const lx_initializer *init, int ndim, const int64_t *shape);

/* fan_in and fan_out of jax's _compute_fans for this shape (Python doubles, same order). */
lx_status lx_compute_fans(int ndim, const int64_t *shape, lx_axes in_axis, lx_axes out_axis,
                          lx_axes batch_axis, double *fan_in, double *fan_out);

/* Run the initializer. zeros/ones/constant take any dtype (bfloat16 rounds to nearest even);
 * the random ones take float32 only (LX_ERR_DTYPE otherwise). A NULL init is
 * LX_ERR_INVALID_ARGUMENT, a bad shape (rank outside 0..LX_MAX_DIMS, a negative dim) LX_ERR_SHAPE,
 * a constant that does not fit an integer dtype LX_ERR_INVALID_ARGUMENT. */
lx_array *lx_init_apply(const lx_initializer *init, lx_key key, lx_dtype dtype, int ndim,
                        const int64_t *shape);
/* The same into out, which holds prod(shape) elements of dtype. */
lx_status lx_init_apply_into(const lx_initializer *init, lx_key key, lx_dtype dtype, int ndim,
                             const int64_t *shape, void *out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
