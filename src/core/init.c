/* Parameter initializers with jax.nn.initializers' numerics (spec/jax-random.md §5).
 *
 * The scalars (fans, variance) are Python doubles in JAX, computed in the same order here; the
 * per-element work is one f32 multiply of a sample by an f32 stddev, outside any fusion, so no
 * fma appears in this file (it is compiled with -ffp-contract=off). */
#include "linnx/init.h"

#include <math.h>
#include <string.h>

#include "linnx/value.h"
#include "linnx/threads.h"
#include "tree_internal.h"

/* ------------------------------------------------------------------ constructors */

static lx_initializer make(lx_init_kind kind, const char *name) {
    lx_initializer it;
    memset(&it, 0, sizeof it);
    it.kind = kind;
    it.name = name;
    it.lower = -2.0;
    it.upper = 2.0;
    it.in_axis = lx_axis(-2);
    it.out_axis = lx_axis(-1);
    it.batch_axis = lx_no_axes();
    return it;
}

lx_initializer lx_init_zeros(void) { return make(LX_INIT_ZEROS, "zeros"); }
lx_initializer lx_init_ones(void) { return make(LX_INIT_ONES, "ones"); }

lx_initializer lx_init_constant(double value) {
    lx_initializer it = make(LX_INIT_CONSTANT, "constant");
    it.value = value;
    return it;
}

lx_initializer lx_init_normal(double stddev) {
    lx_initializer it = make(LX_INIT_NORMAL, "normal");
    it.stddev = stddev;
    return it;
}

lx_initializer lx_init_uniform(double scale) {
    lx_initializer it = make(LX_INIT_UNIFORM, "uniform");
    it.scale = scale;
    return it;
}

lx_initializer lx_init_truncated_normal(double stddev, double lower, double upper) {
    lx_initializer it = make(LX_INIT_TRUNCATED_NORMAL, "truncated_normal");
    it.stddev = stddev;
    it.lower = lower;
    it.upper = upper;
    return it;
}

static const char *const MODE_NAMES[] = {"fan_in", "fan_out", "fan_avg", "fan_geo_avg"};
static const char *const DIST_NAMES[] = {"truncated_normal", "normal", "uniform"};

static lx_status check_axes(const char *what, lx_axes a) {
    if (a.n < 0 || a.n > LX_MAX_DIMS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "variance_scaling: %s has %d axes (at most %d)", what,
                       a.n, LX_MAX_DIMS);
    return LX_OK;
}

lx_status lx_init_variance_scaling(double scale, const char *mode, const char *distribution,
                                   lx_axes in_axis, lx_axes out_axis, lx_axes batch_axis,
                                   lx_initializer *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "variance_scaling: output is NULL");
    lx_initializer it = make(LX_INIT_VARIANCE_SCALING, "variance_scaling");
    int m = -1, d = -1;
    for (int i = 0; i < 4; i++)
        if (mode && strcmp(mode, MODE_NAMES[i]) == 0) m = i;
    for (int i = 0; i < 3; i++)
        if (distribution && strcmp(distribution, DIST_NAMES[i]) == 0) d = i;
    /* JAX raises these when the initializer runs; failing at construction is kinder and the
     * message is JAX's. */
    if (m < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "invalid mode for variance scaling initializer: %s",
                       mode ? mode : "None");
    if (d < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "invalid distribution for variance scaling initializer: %s",
                       distribution ? distribution : "None");
    LX_TRY(check_axes("in_axis", in_axis));
    LX_TRY(check_axes("out_axis", out_axis));
    LX_TRY(check_axes("batch_axis", batch_axis));
    it.scale = scale;
    it.mode = (lx_fan_mode)m;
    it.distribution = (lx_init_distribution)d;
    it.in_axis = in_axis;
    it.out_axis = out_axis;
    it.batch_axis = batch_axis;
    *out = it;
    return LX_OK;
}

static lx_initializer named_vs(const char *name, double scale, lx_fan_mode mode,
                               lx_init_distribution dist) {
    lx_initializer it = make(LX_INIT_VARIANCE_SCALING, name);
    it.scale = scale;
    it.mode = mode;
    it.distribution = dist;
    return it;
}

lx_initializer lx_init_lecun_normal(void) {
    return named_vs("lecun_normal", 1.0, LX_FAN_IN, LX_DIST_TRUNCATED_NORMAL);
}
lx_initializer lx_init_lecun_uniform(void) { return named_vs("lecun_uniform", 1.0, LX_FAN_IN, LX_DIST_UNIFORM); }
lx_initializer lx_init_glorot_normal(void) {
    return named_vs("glorot_normal", 1.0, LX_FAN_AVG, LX_DIST_TRUNCATED_NORMAL);
}
lx_initializer lx_init_glorot_uniform(void) {
    return named_vs("glorot_uniform", 1.0, LX_FAN_AVG, LX_DIST_UNIFORM);
}
lx_initializer lx_init_he_normal(void) { return named_vs("he_normal", 2.0, LX_FAN_IN, LX_DIST_TRUNCATED_NORMAL); }
lx_initializer lx_init_he_uniform(void) { return named_vs("he_uniform", 2.0, LX_FAN_IN, LX_DIST_UNIFORM); }

lx_status lx_initializer_from_name(const char *name, lx_initializer *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "initializer_from_name: output is NULL");
    if (!name) return lx_fail(LX_ERR_INVALID_ARGUMENT, "initializer_from_name: name is NULL");
    static const struct {
        const char *name;
        lx_initializer (*make)(void);
    } named[] = {
        {"lecun_normal", lx_init_lecun_normal},     {"lecun_uniform", lx_init_lecun_uniform},
        {"glorot_normal", lx_init_glorot_normal},   {"glorot_uniform", lx_init_glorot_uniform},
        {"xavier_normal", lx_init_glorot_normal},   {"xavier_uniform", lx_init_glorot_uniform},
        {"he_normal", lx_init_he_normal},           {"he_uniform", lx_init_he_uniform},
        {"kaiming_normal", lx_init_he_normal},      {"kaiming_uniform", lx_init_he_uniform},
        {"zeros", lx_init_zeros},                   {"zeros_init", lx_init_zeros},
        {"ones", lx_init_ones},                     {"ones_init", lx_init_ones},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strcmp(name, named[i].name) == 0) {
            *out = named[i].make();
            /* Aliases keep the name they were asked by (xavier_normal is Flax's own name too). */
            out->name = named[i].name;
            return LX_OK;
        }
    if (strcmp(name, "normal") == 0) {
        *out = lx_init_normal(1e-2);
        return LX_OK;
    }
    if (strcmp(name, "uniform") == 0) {
        *out = lx_init_uniform(1e-2);
        return LX_OK;
    }
    if (strcmp(name, "truncated_normal") == 0) {
        *out = lx_init_truncated_normal(1e-2, -2.0, 2.0);
        return LX_OK;
    }
    if (strcmp(name, "constant") == 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "initializer 'constant' needs a value: use lx_init_constant(value)");
    if (strcmp(name, "variance_scaling") == 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "initializer 'variance_scaling' needs scale, mode and distribution: use "
                       "lx_init_variance_scaling");
    if (strcmp(name, "orthogonal") == 0 || strcmp(name, "delta_orthogonal") == 0)
        return lx_fail(LX_ERR_UNSUPPORTED, "initializer '%s' is not supported yet", name);
    return lx_fail(LX_ERR_NOT_FOUND, "unknown initializer '%s'", name);
}

/* ------------------------------------------------------------------ partitioning */

/* Copy `s` into a fixed slot; a name that does not fit is refused rather than cut, since a
 * truncated axis name would silently name another axis. */
static lx_status put_name(const char *who, const char *what, const char *s, char *slot) {
    size_t n = strlen(s);
    if (n >= LX_PARTITION_NAME_CAP)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %s '%.32s...' is %zu bytes long (at most %d)", who, what, s, n,
                       LX_PARTITION_NAME_CAP - 1);
    memcpy(slot, s, n + 1);
    return LX_OK;
}

/* Fills *out, the constructors' scratch copy: they publish it only on success. */
static lx_status wrap(const char *who, lx_partition_kind kind, const lx_initializer *base, int nnames,
                      const char *const *names, const char *mesh, lx_initializer *out) {
    if (!base) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: NULL argument", who);
    if (base->partitioning.kind != LX_PARTITION_NONE)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: the initializer is already wrapped (%s)", who,
                       base->partitioning.kind == LX_PARTITION_LOGICAL ? "LogicallyPartitioned" : "Partitioned");
    if (nnames < 0 || nnames > LX_MAX_DIMS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %d names (at most %d, one per axis)", who, nnames, LX_MAX_DIMS);
    if (nnames > 0 && !names) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: names is NULL", who);
    *out = *base;
    lx_partitioning *p = &out->partitioning;
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->nnames = nnames;
    for (int i = 0; i < nnames; i++) {
        if (!names[i]) continue;
        LX_TRY(put_name(who, "name", names[i], p->names[i]));
        p->has_name[i] = true;
    }
    if (mesh) {
        LX_TRY(put_name(who, "mesh", mesh, p->mesh));
        p->has_mesh = true;
    }
    return LX_OK;
}

lx_status lx_init_with_partitioning(const lx_initializer *base, int nnames, const char *const *names,
                                    const char *mesh, lx_initializer *out) {
    lx_initializer it;
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "with_partitioning: NULL argument");
    LX_TRY(wrap("with_partitioning", LX_PARTITION_PARTITIONED, base, nnames, names, mesh, &it));
    *out = it;
    return LX_OK;
}

lx_status lx_init_with_logical_partitioning(const lx_initializer *base, int nnames, const char *const *names,
                                            const char *mesh, int nrules, const char *const *rules,
                                            lx_initializer *out) {
    static const char who[] = "with_logical_partitioning";
    lx_initializer it;
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: NULL argument", who);
    LX_TRY(wrap(who, LX_PARTITION_LOGICAL, base, nnames, names, mesh, &it));
    lx_partitioning *p = &it.partitioning;
    if (!rules) {
        if (nrules != 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: rules is NULL but nrules is %d", who, nrules);
        *out = it;
        return LX_OK;
    }
    if (nrules < 0 || nrules % 2)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: rules must be (logical, mesh) pairs, got %d strings", who,
                       nrules);
    if (nrules > 2 * LX_PARTITION_MAX_RULES)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %d rules (at most %d)", who, nrules / 2, LX_PARTITION_MAX_RULES);
    for (int i = 0; i < nrules; i++) {
        if (!rules[i]) {
            if (i % 2 == 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: rule %d has no logical name", who, i / 2);
            continue;
        }
        LX_TRY(put_name(who, i % 2 ? "rule mesh axis" : "rule logical name", rules[i], p->rules[i]));
        p->has_rule[i] = true;
    }
    p->has_rules = true;
    p->nrules = nrules;
    *out = it;
    return LX_OK;
}

int lx_init_partition_names(const lx_initializer *init, const char *out[LX_MAX_DIMS]) {
    if (!init || init->partitioning.kind == LX_PARTITION_NONE) return 0;
    const lx_partitioning *p = &init->partitioning;
    for (int i = 0; i < p->nnames; i++) out[i] = p->has_name[i] ? p->names[i] : NULL;
    return p->nnames;
}

int lx_init_partition_rules(const lx_initializer *init, const char *out[2 * LX_PARTITION_MAX_RULES]) {
    if (!init || init->partitioning.kind != LX_PARTITION_LOGICAL || !init->partitioning.has_rules) return -1;
    const lx_partitioning *p = &init->partitioning;
    for (int i = 0; i < p->nrules; i++) out[i] = p->has_rule[i] ? p->rules[i] : NULL;
    return p->nrules;
}

const char *lx_init_partition_mesh(const lx_initializer *init) {
    if (!init || init->partitioning.kind == LX_PARTITION_NONE || !init->partitioning.has_mesh) return NULL;
    return init->partitioning.mesh;
}

/* Flax builds the box without looking at the value; JAX refuses a PartitionSpec longer than the
 * array's rank as soon as the sharding is applied (under a mesh). linnx has no mesh to wait for,
 * so it refuses at the point the parameter is made. */
lx_status lx_init_check_partition_rank(const lx_initializer *init, int ndim, const int64_t *shape) {
    if (!init || init->partitioning.kind == LX_PARTITION_NONE || init->partitioning.nnames <= ndim) return LX_OK;
    const char *names[LX_MAX_DIMS];
    lx_value nv = lx_strs_v(lx_init_partition_names(init, names), names);
    return lx_sharding_rank_check_(
        init->partitioning.kind == LX_PARTITION_LOGICAL ? "with_logical_partitioning" : "with_partitioning", "names", &nv,
        ndim, shape);
}

/* ------------------------------------------------------------------ fans */

/* Python's `shape[axis]` or `math.prod(shape[i] for i in axes)`; IndexError becomes a message. */
static lx_status axes_size(const char *what, lx_axes a, int ndim, const int64_t *shape, int64_t *size) {
    int64_t s = 1;
    for (int i = 0; i < a.n; i++) {
        int ax = a.axis[i];
        if (ax < -ndim || ax >= ndim) {
            char buf[160];
            return lx_fail(LX_ERR_INVALID_ARGUMENT,
                           "variance_scaling: %s %d is out of range for a weights tensor of shape "
                           "%s (tuple index out of range)",
                           what, ax, lx_shape_str(ndim, shape, buf, sizeof buf));
        }
        s *= shape[ax < 0 ? ax + ndim : ax];
    }
    *size = s;
    return LX_OK;
}

lx_status lx_compute_fans(int ndim, const int64_t *shape, lx_axes in_axis, lx_axes out_axis,
                          lx_axes batch_axis, double *fan_in, double *fan_out) {
    if (!fan_in || !fan_out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "compute_fans: fan_in or fan_out is NULL");
    if (ndim <= 1)
        return lx_fail(LX_ERR_SHAPE,
                       "Can't compute input and output sizes of a %d-dimensional weights tensor. "
                       "Must be at least 2D.",
                       ndim);
    if (ndim > LX_MAX_DIMS || !shape)
        return lx_fail(LX_ERR_SHAPE, "variance_scaling: bad shape (ndim %d)", ndim);
    LX_TRY(check_axes("in_axis", in_axis));
    LX_TRY(check_axes("out_axis", out_axis));
    LX_TRY(check_axes("batch_axis", batch_axis));
    int64_t in_size = 0, out_size = 0, batch_size = 0, total = 1;
    LX_TRY(axes_size("in_axis", in_axis, ndim, shape, &in_size));
    LX_TRY(axes_size("out_axis", out_axis, ndim, shape, &out_size));
    LX_TRY(axes_size("batch_axis", batch_axis, ndim, shape, &batch_size));
    for (int i = 0; i < ndim; i++) total *= shape[i];
    if (in_size == 0 || out_size == 0 || batch_size == 0) {
        char buf[160];
        return lx_fail(LX_ERR_SHAPE,
                       "variance_scaling: float division by zero computing the fans of shape %s",
                       lx_shape_str(ndim, shape, buf, sizeof buf));
    }
    /* math.prod(shape) / in_size / out_size / batch_size, left to right in doubles: Embed's
     * receptive field can be inexact, and JAX keeps that. */
    double receptive = (double)total / (double)in_size / (double)out_size / (double)batch_size;
    *fan_in = (double)in_size * receptive;
    *fan_out = (double)out_size * receptive;
    return LX_OK;
}

/* ------------------------------------------------------------------ apply */

static uint16_t bf16_from_f32(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40); /* quiet NaN */
    b += 0x7fffu + ((b >> 16) & 1u);                                          /* nearest even */
    return (uint16_t)(b >> 16);
}

static lx_status fill_constant(double v, lx_dtype dtype, int64_t n, void *out) {
    switch (dtype) {
    case LX_F32: {
        float f = (float)v, *o = out;
        for (int64_t i = 0; i < n; i++) o[i] = f;
        return LX_OK;
    }
    case LX_BF16: {
        uint16_t h = bf16_from_f32((float)v), *o = out;
        for (int64_t i = 0; i < n; i++) o[i] = h;
        return LX_OK;
    }
    case LX_I32: case LX_U32: case LX_I8: {
        /* jnp.full(shape, v, dtype): a fraction truncates toward zero; a value outside the
         * dtype's range is JAX's OverflowError, never a wrap-around */
        const double t = trunc(v);
        const double lo = dtype == LX_I32 ? -2147483648.0 : dtype == LX_I8 ? -128.0 : 0.0;
        const double hi = dtype == LX_I32 ? 2147483647.0 : dtype == LX_I8 ? 127.0 : 4294967295.0;
        if (!(t >= lo && t <= hi)) /* NaN and the infinities fail here too */
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "constant: %.17g does not fit %s (range %.0f..%.0f)", v,
                           lx_dtype_name(dtype), lo, hi);
        if (dtype == LX_I32) {
            int32_t x = (int32_t)t, *o = out;
            for (int64_t i = 0; i < n; i++) o[i] = x;
        } else if (dtype == LX_U32) {
            uint32_t x = (uint32_t)t, *o = out;
            for (int64_t i = 0; i < n; i++) o[i] = x;
        } else {
            int8_t x = (int8_t)t, *o = out;
            for (int64_t i = 0; i < n; i++) o[i] = x;
        }
        return LX_OK;
    }
    case LX_BOOL: {
        uint8_t x = v != 0.0, *o = out;
        for (int64_t i = 0; i < n; i++) o[i] = x;
        return LX_OK;
    }
    case LX_DTYPE_COUNT: break; /* no default: -Wswitch names a dtype added without a case */
    }
    return lx_fail(LX_ERR_DTYPE, "constant: invalid dtype %d", (int)dtype);
}

static void scale_f32(float *o, int64_t n, float s) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) o[i] = o[i] * s;
}

static lx_status variance_scaling_into(const lx_initializer *it, lx_key key, int ndim,
                                       const int64_t *shape, int64_t n, float *out) {
    double fan_in, fan_out, den;
    LX_TRY(lx_compute_fans(ndim, shape, it->in_axis, it->out_axis, it->batch_axis, &fan_in, &fan_out));
    switch (it->mode) {
    case LX_FAN_IN: den = fan_in; break;
    case LX_FAN_OUT: den = fan_out; break;
    case LX_FAN_AVG: den = (fan_in + fan_out) / 2; break;
    case LX_FAN_GEO_AVG: den = pow(fan_in * fan_out, 0.5); break; /* Python's ** 0.5 is pow */
    default: return lx_fail(LX_ERR_INVALID_ARGUMENT, "invalid mode for variance scaling initializer: %d", (int)it->mode);
    }
    if (den == 0.0) {
        char buf[160];
        return lx_fail(LX_ERR_SHAPE, "%s: float division by zero (zero fan) for shape %s", it->name,
                       lx_shape_str(ndim, shape, buf, sizeof buf));
    }
    const float variance = (float)(it->scale / den);
    float sd;
    switch (it->distribution) {
    case LX_DIST_TRUNCATED_NORMAL:
        /* 0.879...: the stddev of a standard normal truncated to (-2, 2) */
        sd = sqrtf(variance) / (float)0.87962566103423978;
        LX_TRY(lx_random_truncated_normal_into(key, -2.0f, 2.0f, n, out));
        break;
    case LX_DIST_NORMAL:
        sd = sqrtf(variance);
        LX_TRY(lx_random_normal_into(key, n, out));
        break;
    case LX_DIST_UNIFORM:
        sd = sqrtf(3.0f * variance);
        LX_TRY(lx_random_uniform_into(key, n, -1.0f, 1.0f, out));
        break;
    default:
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "invalid distribution for variance scaling initializer: %d", (int)it->distribution);
    }
    scale_f32(out, n, sd);
    return LX_OK;
}

lx_status lx_init_apply_into(const lx_initializer *it, lx_key key, lx_dtype dtype, int ndim,
                             const int64_t *shape, void *out) {
    if (!it) return lx_fail(LX_ERR_INVALID_ARGUMENT, "init: initializer is NULL");
    lx_initializer named;
    if (!it->name) { /* a zero-filled struct: its messages say "init", never "(null)" */
        named = *it;
        named.name = "init";
        it = &named;
    }
    if (ndim < 0 || ndim > LX_MAX_DIMS || (ndim > 0 && !shape))
        return lx_fail(LX_ERR_SHAPE, "%s: bad shape (ndim %d)", it->name, ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char buf[160];
            return lx_fail(LX_ERR_SHAPE, "%s: negative dimension in shape %s", it->name,
                           lx_shape_str(ndim, shape, buf, sizeof buf));
        }
        n *= shape[i];
    }
    if (n > 0 && !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: output buffer is NULL", it->name);
    switch (it->kind) {
    case LX_INIT_ZEROS: return fill_constant(0.0, dtype, n, out);
    case LX_INIT_ONES: return fill_constant(1.0, dtype, n, out);
    case LX_INIT_CONSTANT: return fill_constant(it->value, dtype, n, out);
    default: break;
    }
    if (dtype != LX_F32)
        return lx_fail(LX_ERR_DTYPE, "%s: only float32 is supported for random initializers, got %s",
                       it->name, lx_dtype_name(dtype));
    float *o = out;
    switch (it->kind) {
    case LX_INIT_NORMAL:
        LX_TRY(lx_random_normal_into(key, n, o));
        scale_f32(o, n, (float)it->stddev);
        return LX_OK;
    case LX_INIT_UNIFORM:
        LX_TRY(lx_random_uniform_into(key, n, 0.0f, 1.0f, o));
        scale_f32(o, n, (float)it->scale);
        return LX_OK;
    case LX_INIT_TRUNCATED_NORMAL:
        LX_TRY(lx_random_truncated_normal_into(key, (float)it->lower, (float)it->upper, n, o));
        scale_f32(o, n, (float)it->stddev);
        return LX_OK;
    case LX_INIT_VARIANCE_SCALING:
        return variance_scaling_into(it, key, ndim, shape, n, o);
    default:
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "init: unknown initializer kind %d", (int)it->kind);
    }
}

lx_array *lx_init_apply(const lx_initializer *it, lx_key key, lx_dtype dtype, int ndim,
                        const int64_t *shape) {
    if (!it) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "init: initializer is NULL");
        return NULL;
    }
    lx_array *a = lx_autorelease(lx_array_empty(dtype, ndim, shape)); /* pool-owned, as op results */
    if (!a) return NULL;
    if (lx_init_apply_into(it, key, dtype, ndim, shape, a->data) != LX_OK) return NULL;
    return a;
}
