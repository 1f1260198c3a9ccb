/* optax.schedules in float32, in optax's operation order (spec/training.md §A.6): a count is an
 * int32 that JAX converts to float32 where it meets a float, Python-float constants enter as
 * float32 (weak types) and differences of two Python floats are formed in double first. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/optax.h"
#include "../core/status_internal.h"
#include "optax_internal.h"

#define LX_PI 3.14159265358979323846

typedef enum { S_CONST, S_POLY, S_EXP, S_COS, S_JOIN, S_PIECEWISE } sched_kind;

struct optax_schedule {
    int refcount;
    sched_kind kind;
    double init, end, power, rate, alpha, exponent;
    int64_t steps, begin;
    bool staircase, has_end;
    int n;
    int depth; /* levels of join_schedules below this one (0: none) */
    optax_schedule **subs;
    int64_t *bounds;
    double *scales;
};

static optax_schedule *sched_new(sched_kind kind) {
    optax_schedule *s = calloc(1, sizeof *s);
    if (!s) {
        lx_fail(LX_ERR_NO_MEMORY, "schedule: out of memory");
        return NULL;
    }
    s->refcount = 1;
    s->kind = kind;
    return s;
}

optax_schedule *optax_schedule_retain(optax_schedule *s) {
    if (s) s->refcount++;
    return s;
}

void optax_schedule_release(optax_schedule *s) {
    if (!s || --s->refcount > 0) return;
    for (int i = 0; i < s->n && s->subs; i++) optax_schedule_release(s->subs[i]);
    free(s->subs);
    free(s->bounds);
    free(s->scales);
    free(s);
}

optax_schedule *optax_constant_schedule(double value) {
    optax_schedule *s = sched_new(S_CONST);
    if (s) s->init = value;
    return s;
}

optax_schedule *optax_polynomial_schedule(double init_value, double end_value, double power, int64_t transition_steps,
                                    int64_t transition_begin) {
    if (transition_steps <= 0) return optax_constant_schedule(init_value); /* optax warns and does this */
    if (transition_begin < 0) transition_begin = 0; /* optax logs "falling back to 0" and does this */
    optax_schedule *s = sched_new(S_POLY);
    if (!s) return NULL;
    s->init = init_value;
    s->end = end_value;
    s->power = power;
    s->steps = transition_steps;
    s->begin = transition_begin;
    return s;
}

optax_schedule *optax_linear_schedule(double init_value, double end_value, int64_t transition_steps,
                                int64_t transition_begin) {
    return optax_polynomial_schedule(init_value, end_value, 1.0, transition_steps, transition_begin);
}

optax_schedule *optax_exponential_decay(double init_value, int64_t transition_steps, double decay_rate,
                                  int64_t transition_begin, bool staircase, bool has_end_value, double end_value) {
    /* optax logs and falls back for each of these: a constant init_value for steps <= 0 or a zero
     * rate, and transition_begin 0 for a negative one */
    if (transition_steps <= 0 || decay_rate == 0.0) return optax_constant_schedule(init_value);
    if (transition_begin < 0) transition_begin = 0;
    optax_schedule *s = sched_new(S_EXP);
    if (!s) return NULL;
    s->init = init_value;
    s->steps = transition_steps;
    s->rate = decay_rate;
    s->begin = transition_begin;
    s->staircase = staircase;
    s->has_end = has_end_value;
    s->end = end_value;
    return s;
}

optax_schedule *optax_cosine_decay_schedule(double init_value, int64_t decay_steps, double alpha, double exponent) {
    if (decay_steps <= 0) {
        lx_fail(LX_ERR_INVALID_ARGUMENT,
                "The cosine_decay_schedule requires positive decay_steps, got decay_steps=%lld.",
                (long long)decay_steps);
        return NULL;
    }
    optax_schedule *s = sched_new(S_COS);
    if (!s) return NULL;
    s->init = init_value;
    s->steps = decay_steps;
    s->alpha = alpha;
    s->exponent = exponent;
    return s;
}

optax_schedule *optax_join_schedules(int n, optax_schedule *const *schedules, const int64_t *boundaries) {
    bool ok = n >= 1 && schedules && (n == 1 || boundaries);
    for (int i = 0; ok && i < n; i++) ok = schedules[i] != NULL;
    /* evaluation and release recurse once a level: refuse a deeper nest here, as optax_chain does,
     * instead of overflowing the stack when it is evaluated */
    int depth = 0;
    for (int i = 0; ok && i < n; i++) depth = schedules[i]->depth + 1 > depth ? schedules[i]->depth + 1 : depth;
    bool too_deep = ok && depth > LX_OPTAX_MAX_NEST;
    optax_schedule *s = ok && !too_deep ? sched_new(S_JOIN) : NULL;
    if (too_deep) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "join_schedules: schedules nested more than %d deep", LX_OPTAX_MAX_NEST);
    } else if (s) {
        s->subs = calloc((size_t)n, sizeof *s->subs);
        s->bounds = calloc((size_t)n, sizeof *s->bounds);
        if (!s->subs || !s->bounds) {
            optax_schedule_release(s);
            s = NULL;
            lx_fail(LX_ERR_NO_MEMORY, "join_schedules: out of memory");
        }
    } else if (n < 1 || !schedules || (n > 1 && !boundaries)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "join_schedules: needs n >= 1 schedules and n - 1 boundaries");
    } else if (!ok) {
        int i = 0;
        while (schedules[i]) i++;
        lx_null_input("join_schedules: schedule %d is NULL", i);
    }
    if (!s) {
        for (int i = 0; schedules && i < n; i++) optax_schedule_release(schedules[i]);
        return NULL;
    }
    s->n = n;
    s->depth = depth;
    for (int i = 0; i < n; i++) s->subs[i] = schedules[i];
    for (int i = 0; i + 1 < n; i++) s->bounds[i] = boundaries[i];
    return s;
}

optax_schedule *optax_warmup_cosine_decay_schedule(double init_value, double peak_value, int64_t warmup_steps,
                                             int64_t decay_steps, double end_value, double exponent) {
    double alpha = peak_value == 0.0 ? 0.0 : end_value / peak_value;
    optax_schedule *cos = optax_cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent);
    if (!cos) {
        lx_fail_context(lx_last_status(), "warmup_cosine_decay_schedule: ");
        return NULL;
    }
    optax_schedule *subs[2] = {optax_linear_schedule(init_value, peak_value, warmup_steps, 0), cos};
    int64_t b = warmup_steps;
    return optax_join_schedules(2, subs, &b);
}

/* optax builds it as linear_schedule(init_value=init, end_value=peak, transition_steps=warmup). */
optax_schedule *optax_warmup_constant_schedule(double init_value, double peak_value, int64_t warmup_steps) {
    return optax_linear_schedule(init_value, peak_value, warmup_steps, 0);
}

static int cmp_pair(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

optax_schedule *optax_piecewise_constant_schedule(double init_value, int n, const int64_t *boundaries,
                                            const double *scales) {
    if (n < 0 || (n > 0 && (!boundaries || !scales))) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "piecewise_constant_schedule: bad boundaries");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!(scales[i] >= 0.0)) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "`piecewise_constant_schedule` expects non-negative scale factors");
            return NULL;
        }
    optax_schedule *s = sched_new(S_PIECEWISE);
    if (!s) return NULL;
    s->init = init_value;
    s->n = 0;
    /* sorted(boundaries_and_scales.items()): a dict, so a repeated boundary keeps its last scale */
    int64_t(*pairs)[2] = calloc((size_t)n + 1, sizeof *pairs);
    s->bounds = calloc((size_t)n + 1, sizeof *s->bounds);
    s->scales = calloc((size_t)n + 1, sizeof *s->scales);
    if (!pairs || !s->bounds || !s->scales) {
        free(pairs);
        optax_schedule_release(s);
        lx_fail(LX_ERR_NO_MEMORY, "piecewise_constant_schedule: out of memory");
        return NULL;
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        int j = 0;
        while (j < m && pairs[j][0] != boundaries[i]) j++;
        pairs[j][0] = boundaries[i];
        pairs[j][1] = i;
        if (j == m) m++;
    }
    qsort(pairs, (size_t)m, sizeof *pairs, cmp_pair);
    for (int j = 0; j < m; j++) {
        s->bounds[j] = pairs[j][0];
        s->scales[j] = scales[pairs[j][1]];
    }
    s->n = m;
    free(pairs);
    return s;
}

/* x ** p for a float32 base and a Python-number exponent: integer exponents 1 and 2 are
 * lax.integer_pow (exact products), others lax.pow. */
static float pow_py(float x, double p) {
    if (p == 1.0) return x;
    if (p == 2.0) return x * x;
    if (p == 0.0) return 1.0f;
    return powf(x, (float)p);
}

static float eval_count(const optax_schedule *s, int64_t count) {
    switch (s->kind) {
    case S_CONST: return (float)s->init;
    case S_POLY: {
        int64_t c = count - s->begin;
        if (c < 0) c = 0;
        if (c > s->steps) c = s->steps;
        float frac = 1.0f - (float)c / (float)s->steps;
        float d = (float)(s->init - s->end);
        float prod = d * pow_py(frac, s->power);
        return prod + (float)s->end;
    }
    case S_EXP: {
        int64_t dc = count - s->begin;
        float p = (float)dc / (float)s->steps;
        if (s->staircase) p = floorf(p);
        float v = dc <= 0 ? (float)s->init : (float)s->init * powf((float)s->rate, p);
        if (s->has_end) {
            float e = (float)s->end;
            if (s->rate < 1.0) v = v > e ? v : e;
            else v = v < e ? v : e;
        }
        return v;
    }
    case S_COS: {
        float steps = (float)(double)s->steps;
        float c = (float)count;
        if (c > steps) c = steps;
        float arg = ((float)LX_PI * c) / steps;
        float cd = 0.5f * (1.0f + cosf(arg));
        float dec = (float)(1.0 - s->alpha) * pow_py(cd, s->exponent) + (float)s->alpha;
        return (float)s->init * dec;
    }
    case S_JOIN: {
        float out = eval_count(s->subs[0], count);
        for (int i = 1; i < s->n; i++)
            if (count >= s->bounds[i - 1]) out = eval_count(s->subs[i], count - s->bounds[i - 1]);
        return out;
    }
    case S_PIECEWISE: {
        float v = (float)s->init;
        for (int i = 0; i < s->n; i++) {
            /* indicator = max(0, sign(threshold - count)); v*ind + (1-ind)*scale*v */
            float ind = s->bounds[i] - count > 0 ? 1.0f : 0.0f;
            float a = v * ind;
            float b = ((1.0f - ind) * (float)s->scales[i]) * v;
            v = a + b;
        }
        return v;
    }
    }
    return 0.0f;
}

float optax_schedule_eval(const optax_schedule *s, int64_t count) { return s ? eval_count(s, count) : 0.0f; }
