/* optax's gradient transformations, element by element in float32 with optax's operation order
 * (spec/training.md §A.2-A.5; optax/_src/transform.py, factorized.py, optax/transforms/).
 * Python-float hyperparameters enter as float32 (weak types); `1 - b` is formed by
 * lx_optax_one_minus; powers b**t of a count are powf(f32(b), f32(t)) as XLA lowers them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optax_internal.h"
#include "../core/status_internal.h"

#define FOR_ACTIVE(i) \
    for (int i = 0; i < lv->n; i++) \
        if (lv->active[i])

static void set_u(lx_array **u, int i, lx_array *r) {
    lx_optax_recycle(u[i]); /* an intermediate update nobody holds serves a later output */
    u[i] = r;
}

/* b * x where x is stored in a bfloat16 array: bf16 * weak float stays bfloat16. */
static inline float mul_stored(float b, const lx_array *x, int64_t j) {
    float r = b * lx_optax_get(x, j);
    return x->dtype == LX_BF16 ? lx_optax_round_bf16(r) : r;
}

static lx_array **arr_list(const lx_leaves *lv) {
    lx_array **a = calloc((size_t)lv->n + 1, sizeof *a);
    if (!a) lx_fail(LX_ERR_NO_MEMORY, "optax: out of memory");
    return a;
}

static void arr_free(const lx_leaves *lv, lx_array **a) {
    if (!a) return;
    for (int i = 0; i < lv->n; i++) lx_release(a[i]);
    free(a);
}

static lx_status need_params(const lx_leaves *lv, const char *who) {
    if (!lv->have_params) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %s", who, LX_NO_PARAMS_MSG);
    return LX_OK;
}

static lx_dtype dtype_or(lx_dtype want, const lx_array *like) { return want == OPTAX_DTYPE_DEFAULT ? like->dtype : want; }

/* The arrays of one update of a transform that keeps moments in its state: per field the old
 * moment (read from the state, a reference taken) and the new one, and the outputs. Begin,
 * compute nw[k][i] and out[i] for the active leaves, then moments_finish writes the state and
 * hands the outputs over: the start and the end every such update shares. */
enum { MOMENTS_MAX = 3 };
typedef struct moments {
    int nf;
    const char *field[MOMENTS_MAX];
    lx_array **old[MOMENTS_MAX], **nw[MOMENTS_MAX], **out;
} moments;

/* Allocate the lists and read the fields (shaped: the shapes each field must have, NULL for the
 * params' shapes). A failure is returned, and the frame must still go to moments_finish. */
static lx_status moments_begin(moments *m, const lx_leaves *lv, const lx_tree *state, const char *spath, int nf,
                               const char *const *fields, lx_shape_want *const *shaped) {
    memset(m, 0, sizeof *m);
    m->nf = nf;
    bool ok = (m->out = arr_list(lv)) != NULL;
    for (int k = 0; k < nf; k++) {
        m->field[k] = fields[k];
        ok = (m->old[k] = arr_list(lv)) != NULL && ok;
        ok = (m->nw[k] = arr_list(lv)) != NULL && ok;
    }
    lx_status st = ok ? LX_OK : lx_last_status();
    for (int k = 0; k < nf && st == LX_OK; k++)
        st = shaped ? lx_state_get_moment_shaped(state, fields[k], spath, lv, shaped[k], m->old[k])
                    : lx_state_get_moment(state, fields[k], spath, lv, m->old[k]);
    /* get_moment's arrays are borrowed: take references before moments_finish releases them. */
    for (int k = 0; k < nf; k++)
        for (int i = 0; m->old[k] && i < lv->n; i++) lx_retain(m->old[k][i]);
    return st;
}

/* When st is LX_OK: the count (has_count), every new moment into `ns`, and the outputs into `u`.
 * Then every list is released, whatever st was. */
static lx_status moments_finish(moments *m, const lx_leaves *lv, lx_status st, lx_array **u, lx_tree *ns,
                                bool has_count, int32_t count) {
    if (st == LX_OK && has_count) st = lx_state_put_count(ns, "count", count);
    for (int k = 0; k < m->nf && st == LX_OK; k++) st = lx_state_put_moment(ns, m->field[k], lv, m->nw[k]);
    if (st == LX_OK) FOR_ACTIVE(i) {
        set_u(u, i, m->out[i]);
        m->out[i] = NULL;
    }
    for (int k = 0; k < m->nf; k++) {
        arr_free(lv, m->old[k]);
        arr_free(lv, m->nw[k]);
    }
    arr_free(lv, m->out);
    return st;
}

/* ------------------------------------------------------------------ identity, scale */

static lx_status identity_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                                 const char *spath, lx_tree *ns) {
    return LX_OK;
}
static const lx_tx_ops IDENTITY_OPS = {"identity", NULL, identity_update};

optax_tx *optax_identity(void) { return lx_tx_alloc(&IDENTITY_OPS); }

static void scale_kernel(int64_t n, float s, const float *restrict g, float *restrict o) {
    for (int64_t j = 0; j < n; j++) o[j] = s * g[j];
}

/* Every active update times s (scale, and scale_by_schedule at the count's value). */
static lx_status scale_all(const lx_leaves *lv, lx_array **u, float s) {
    FOR_ACTIVE(i) {
        lx_array *r = lx_optax_new_f32(u[i]);
        if (!r) return lx_last_status();
        scale_kernel(r->size, s, lx_f32(u[i]), lx_f32(r));
        set_u(u, i, r);
    }
    return LX_OK;
}

static lx_status scale_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                              const char *spath, lx_tree *ns) {
    return scale_all(lv, u, tx->f[0]);
}
static const lx_tx_ops SCALE_OPS = {"scale", NULL, scale_update};

optax_tx *optax_scale(double step_size) {
    return lx_tx_alloc1(&SCALE_OPS, step_size);
}

/* ------------------------------------------------------------------ scale_by_schedule */

static lx_status count_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    return lx_state_put_count(state, "count", 0);
}

static lx_status sched_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                              const char *spath, lx_tree *ns) {
    int32_t count;
    LX_TRY(lx_state_get_count(state, "count", spath, &count));
    float s = optax_schedule_eval(tx->sched, count);
    if (tx->flag[0]) s = -s;
    LX_TRY(scale_all(lv, u, s));
    return lx_state_put_count(ns, "count", lx_safe_increment(count));
}
static const lx_tx_ops SCHED_OPS = {"scale_by_schedule", count_init, sched_update};

static optax_tx *schedule_tx(optax_schedule *s, bool negate) {
    if (!s) {
        lx_null_input("scale_by_schedule: the schedule is NULL");
        return NULL;
    }
    optax_tx *tx = lx_tx_alloc(&SCHED_OPS);
    if (!tx) {
        optax_schedule_release(s);
        return NULL;
    }
    tx->sched = s;
    tx->flag[0] = negate;
    return tx;
}

optax_tx *optax_scale_by_schedule(optax_schedule *step_size_fn) { return schedule_tx(step_size_fn, false); }

optax_tx *optax_scale_by_learning_rate(optax_sos lr, bool flip_sign) {
    if (lr.schedule) return schedule_tx(lr.schedule, flip_sign);
    return optax_scale(flip_sign ? -1.0 * lr.value : lr.value);
}

/* ------------------------------------------------------------------ scale_by_adam */

static lx_status adam_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    LX_TRY(lx_state_put_count(state, "count", 0));
    LX_TRY(lx_state_put_full(state, "mu", lv, tx->dtype, 0.0f));
    return lx_state_put_full(state, "nu", lv, OPTAX_DTYPE_DEFAULT, 0.0f);
}

/* The float32, non-Nesterov Adam step over one leaf; restrict lets the compiler vectorize it (the
 * same IEEE operations, lane by lane). */
static void adam_kernel(int64_t n, const float *restrict g, const float *restrict m0, const float *restrict v0,
                        float *restrict mo, float *restrict vo, float *restrict oo, const float *f, float bc1,
                        float bc2) {
    const float omb1 = f[0], omb2 = f[1], b1 = f[2], b2 = f[3], eps = f[4], eps_root = f[5];
    for (int64_t j = 0; j < n; j++) {
        float mj = omb1 * g[j] + b1 * m0[j];
        float vj = omb2 * (g[j] * g[j]) + b2 * v0[j];
        mo[j] = mj;
        vo[j] = vj;
        oo[j] = (mj / bc1) / (sqrtf(vj / bc2 + eps_root) + eps);
    }
}

static lx_status adam_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                             const char *spath, lx_tree *ns) {
    int32_t count;
    LX_TRY(lx_state_get_count(state, "count", spath, &count));
    moments w;
    lx_status st = moments_begin(&w, lv, state, spath, 2, (const char *[]){"mu", "nu"}, NULL);
    lx_array **mu = w.old[0], **nu = w.old[1], **nmu = w.nw[0], **nnu = w.nw[1], **out = w.out;
    const float omb1 = tx->f[0], omb2 = tx->f[1], b1 = tx->f[2], b2 = tx->f[3], eps = tx->f[4], eps_root = tx->f[5];
    int32_t t = lx_safe_increment(count);
    float bc1 = 1.0f - powf(b1, (float)t), bc2 = 1.0f - powf(b2, (float)t);
    float bc1n = 1.0f - powf(b1, (float)lx_safe_increment(t));
    bool nesterov = tx->flag[0];
    if (st == LX_OK) FOR_ACTIVE(i) {
        lx_array *m = lx_optax_new_f32(u[i]), *v = lx_optax_new_f32(u[i]), *o = lx_optax_new_f32(u[i]);
        nmu[i] = m;
        nnu[i] = v;
        out[i] = o;
        if (!m || !v || !o) {
            st = lx_last_status();
            break;
        }
        const float *g = lx_f32(u[i]);
        if (mu[i]->dtype == LX_F32 && nu[i]->dtype == LX_F32 && !nesterov) {
            /* the common case, branch-free so the compiler vectorizes it (same operations) */
            adam_kernel(m->size, g, lx_f32(mu[i]), lx_f32(nu[i]), lx_f32(m), lx_f32(v), lx_f32(o), tx->f, bc1, bc2);
            continue;
        }
        for (int64_t j = 0; j < m->size; j++) {
            float mj = omb1 * g[j] + mul_stored(b1, mu[i], j);
            float g2 = g[j] * g[j];
            float vj = omb2 * g2 + mul_stored(b2, nu[i], j);
            lx_f32(m)[j] = mj;
            lx_f32(v)[j] = vj;
            float mh;
            if (nesterov) {
                float a = b1 * (mj / bc1n);
                float c = omb1 * (g[j] / bc1);
                mh = a + c;
            } else {
                mh = mj / bc1;
            }
            float vh = vj / bc2;
            lx_f32(o)[j] = mh / (sqrtf(vh + eps_root) + eps);
        }
    }
    /* mu is stored in mu_dtype (else as it was), nu like the old nu. */
    if (st == LX_OK) FOR_ACTIVE(i) {
        lx_array *a = lx_optax_store(nmu[i], tx->dtype == OPTAX_DTYPE_DEFAULT ? mu[i]->dtype : tx->dtype);
        lx_array *b = lx_optax_store(nnu[i], nu[i]->dtype);
        lx_release(nmu[i]);
        lx_release(nnu[i]);
        nmu[i] = a;
        nnu[i] = b;
        if (!a || !b) {
            st = lx_last_status();
            break;
        }
    }
    return moments_finish(&w, lv, st, u, ns, true, t);
}
static const lx_tx_ops ADAM_OPS = {"scale_by_adam", adam_init, adam_update};

optax_tx *optax_scale_by_adam(const optax_adam_opts *opts) {
    optax_adam_opts d = OPTAX_ADAM_DEFAULTS;
    if (!opts) opts = &d;
    if (opts->mu_dtype != OPTAX_DTYPE_DEFAULT && opts->mu_dtype != LX_F32 && opts->mu_dtype != LX_BF16) {
        lx_fail(LX_ERR_DTYPE, "scale_by_adam: mu_dtype must be float32 or bfloat16");
        return NULL;
    }
    optax_tx *tx = lx_tx_alloc(&ADAM_OPS);
    if (!tx) return NULL;
    tx->p[0] = opts->b1;
    tx->p[1] = opts->b2;
    tx->p[2] = opts->eps;
    tx->p[3] = opts->eps_root;
    tx->f[0] = lx_optax_one_minus(opts->b1);
    tx->f[1] = lx_optax_one_minus(opts->b2);
    tx->f[2] = (float)opts->b1;
    tx->f[3] = (float)opts->b2;
    tx->f[4] = (float)opts->eps;
    tx->f[5] = (float)opts->eps_root;
    tx->flag[0] = opts->nesterov;
    tx->dtype = opts->mu_dtype;
    return tx;
}

/* ------------------------------------------------------------------ one-moment transforms */

/* Shared by scale_by_rms, trace, ema and scale_by_lion: read the count (when kept) and one
 * param-shaped moment, compute per element, write both back. */
typedef void (*moment_fn)(const optax_tx *tx, int32_t t, const float *g, const lx_array *old, float *nm, float *out,
                          int64_t n);

static lx_status moment_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                               const char *spath, lx_tree *ns, const char *field, bool has_count, lx_dtype store,
                               moment_fn fn) {
    int32_t count = 0;
    if (has_count) LX_TRY(lx_state_get_count(state, "count", spath, &count));
    int32_t t = lx_safe_increment(count);
    moments w;
    lx_status st = moments_begin(&w, lv, state, spath, 1, &field, NULL);
    lx_array **old = w.old[0], **nm = w.nw[0], **out = w.out;
    if (st == LX_OK) FOR_ACTIVE(i) {
        lx_array *m = lx_optax_new_f32(u[i]), *o = lx_optax_new_f32(u[i]);
        nm[i] = m;
        out[i] = o;
        if (!m || !o) {
            st = lx_last_status();
            break;
        }
        fn(tx, t, lx_f32(u[i]), old[i], lx_f32(m), lx_f32(o), m->size);
        lx_array *s = lx_optax_store(m, dtype_or(store, old[i]));
        lx_release(m);
        nm[i] = s;
        if (!s) {
            st = lx_last_status();
            break;
        }
    }
    return moments_finish(&w, lv, st, u, ns, has_count, t);
}

/* scale_by_rms: f = {1-decay, decay, eps}; flag = {eps_in_sqrt, bias_correction} */
static void rms_fn(const optax_tx *tx, int32_t t, const float *g, const lx_array *old, float *nm, float *out, int64_t n) {
    float omd = tx->f[0], d = tx->f[1], eps = tx->f[2];
    float bc = tx->flag[1] ? 1.0f - powf(d, (float)t) : 1.0f;
    for (int64_t j = 0; j < n; j++) {
        float g2 = g[j] * g[j];
        float v = omd * g2 + mul_stored(d, old, j);
        nm[j] = v;
        float vh = tx->flag[1] ? v / bc : v;
        float s = tx->flag[0] ? 1.0f / sqrtf(vh + eps) : 1.0f / (sqrtf(vh) + eps);
        out[j] = s * g[j];
    }
}
static lx_status rms_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    if (tx->flag[1]) LX_TRY(lx_state_put_count(state, "count", 0));
    return lx_state_put_full(state, "nu", lv, OPTAX_DTYPE_DEFAULT, (float)tx->p[2]);
}
static lx_status rms_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                            const char *spath, lx_tree *ns) {
    return moment_update(tx, lv, u, state, spath, ns, "nu", tx->flag[1], OPTAX_DTYPE_DEFAULT, rms_fn);
}
static const lx_tx_ops RMS_OPS = {"scale_by_rms", rms_init, rms_update};

optax_tx *optax_scale_by_rms(double decay, double eps, double initial_scale, bool eps_in_sqrt, bool bias_correction) {
    optax_tx *tx = lx_tx_alloc(&RMS_OPS);
    if (!tx) return NULL;
    tx->p[0] = decay;
    tx->p[1] = eps;
    tx->p[2] = initial_scale;
    tx->f[0] = lx_optax_one_minus(decay);
    tx->f[1] = (float)decay;
    tx->f[2] = (float)eps;
    tx->flag[0] = eps_in_sqrt;
    tx->flag[1] = bias_correction;
    return tx;
}

/* scale_by_stddev (centered RMSProp): f = {1-decay, decay, eps}; flag = {eps_in_sqrt,
 * bias_correction}. scaling = rsqrt(nu_hat - mu_hat**2 + eps) or 1 / (sqrt(nu_hat - mu_hat**2) + eps). */
static lx_status stddev_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    if (tx->flag[1]) LX_TRY(lx_state_put_count(state, "count", 0));
    LX_TRY(lx_state_put_full(state, "mu", lv, OPTAX_DTYPE_DEFAULT, 0.0f));
    return lx_state_put_full(state, "nu", lv, OPTAX_DTYPE_DEFAULT, (float)tx->p[2]);
}

static lx_status stddev_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                               const char *spath, lx_tree *ns) {
    int32_t count = 0;
    if (tx->flag[1]) LX_TRY(lx_state_get_count(state, "count", spath, &count));
    int32_t t = lx_safe_increment(count);
    moments w;
    lx_status st = moments_begin(&w, lv, state, spath, 2, (const char *[]){"mu", "nu"}, NULL);
    lx_array **mu = w.old[0], **nu = w.old[1], **nmu = w.nw[0], **nnu = w.nw[1], **out = w.out;
    const float omd = tx->f[0], d = tx->f[1], eps = tx->f[2];
    const float bc = 1.0f - powf(d, (float)t);
    if (st == LX_OK) FOR_ACTIVE(i) {
        nmu[i] = lx_optax_new_f32(u[i]);
        nnu[i] = lx_optax_new_f32(u[i]);
        out[i] = lx_optax_new_f32(u[i]);
        if (!nmu[i] || !nnu[i] || !out[i]) {
            st = lx_last_status();
            break;
        }
        const float *g = lx_f32(u[i]);
        for (int64_t j = 0; j < u[i]->size; j++) {
            float m = omd * g[j] + mul_stored(d, mu[i], j);
            float v = omd * (g[j] * g[j]) + mul_stored(d, nu[i], j);
            lx_f32(nmu[i])[j] = m;
            lx_f32(nnu[i])[j] = v;
            float mh = tx->flag[1] ? m / bc : m, vh = tx->flag[1] ? v / bc : v;
            float c = vh - mh * mh;
            float sc = tx->flag[0] ? 1.0f / sqrtf(c + eps) : 1.0f / (sqrtf(c) + eps);
            lx_f32(out[i])[j] = sc * g[j];
        }
    }
    /* the moments are stored as they were (bfloat16 params: bfloat16 moments), like rms's and adam's */
    if (st == LX_OK) FOR_ACTIVE(i) {
        lx_array *a = lx_optax_store(nmu[i], mu[i]->dtype), *b = lx_optax_store(nnu[i], nu[i]->dtype);
        lx_release(nmu[i]);
        lx_release(nnu[i]);
        nmu[i] = a;
        nnu[i] = b;
        if (!a || !b) {
            st = lx_last_status();
            break;
        }
    }
    return moments_finish(&w, lv, st, u, ns, tx->flag[1], t);
}
static const lx_tx_ops STDDEV_OPS = {"scale_by_stddev", stddev_init, stddev_update};

optax_tx *optax_scale_by_stddev(double decay, double eps, double initial_scale, bool eps_in_sqrt,
                                bool bias_correction) {
    optax_tx *tx = lx_tx_alloc(&STDDEV_OPS);
    if (!tx) return NULL;
    tx->p[0] = decay;
    tx->p[1] = eps;
    tx->p[2] = initial_scale;
    tx->f[0] = lx_optax_one_minus(decay);
    tx->f[1] = (float)decay;
    tx->f[2] = (float)eps;
    tx->flag[0] = eps_in_sqrt;
    tx->flag[1] = bias_correction;
    return tx;
}

/* trace: f = {decay}; flag = {nesterov} */
static void trace_fn(const optax_tx *tx, int32_t t, const float *g, const lx_array *old, float *nm, float *out,
                     int64_t n) {
    float d = tx->f[0];
    for (int64_t j = 0; j < n; j++) {
        float tr = g[j] + mul_stored(d, old, j);
        nm[j] = tr;
        out[j] = tx->flag[0] ? g[j] + d * tr : tr;
    }
}
static lx_status trace_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    return lx_state_put_full(state, "trace", lv, tx->dtype, 0.0f);
}
static lx_status trace_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                              const char *spath, lx_tree *ns) {
    return moment_update(tx, lv, u, state, spath, ns, "trace", false, tx->dtype, trace_fn);
}
static const lx_tx_ops TRACE_OPS = {"trace", trace_init, trace_update};

optax_tx *optax_trace(double decay, bool nesterov, lx_dtype accumulator_dtype) {
    optax_tx *tx = lx_tx_alloc(&TRACE_OPS);
    if (!tx) return NULL;
    tx->p[0] = decay;
    tx->f[0] = (float)decay;
    tx->flag[0] = nesterov;
    tx->dtype = accumulator_dtype;
    return tx;
}

/* ema: f = {1-decay, decay}; flag = {debias} */
static void ema_fn(const optax_tx *tx, int32_t t, const float *g, const lx_array *old, float *nm, float *out, int64_t n) {
    float omd = tx->f[0], d = tx->f[1];
    float bc = 1.0f - powf(d, (float)t);
    for (int64_t j = 0; j < n; j++) {
        float e = omd * g[j] + mul_stored(d, old, j);
        nm[j] = e;
        out[j] = tx->flag[0] ? e / bc : e;
    }
}
static lx_status ema_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    LX_TRY(lx_state_put_count(state, "count", 0));
    return lx_state_put_full(state, "ema", lv, tx->dtype, 0.0f);
}
static lx_status ema_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                            const char *spath, lx_tree *ns) {
    return moment_update(tx, lv, u, state, spath, ns, "ema", true, tx->dtype, ema_fn);
}
static const lx_tx_ops EMA_OPS = {"ema", ema_init, ema_update};

optax_tx *optax_ema(double decay, bool debias, lx_dtype accumulator_dtype) {
    optax_tx *tx = lx_tx_alloc(&EMA_OPS);
    if (!tx) return NULL;
    tx->p[0] = decay;
    tx->f[0] = lx_optax_one_minus(decay);
    tx->f[1] = (float)decay;
    tx->flag[0] = debias;
    tx->dtype = accumulator_dtype;
    return tx;
}

/* scale_by_lion: f = {1-b1, b1, 1-b2, b2, smooth_beta}; i[0] = mode */
static float sign_f(float x) { return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x; }
static void lion_fn(const optax_tx *tx, int32_t t, const float *g, const lx_array *old, float *nm, float *out,
                    int64_t n) {
    float omb1 = tx->f[0], b1 = tx->f[1], omb2 = tx->f[2], b2 = tx->f[3], beta = tx->f[4];
    for (int64_t j = 0; j < n; j++) {
        float m = lx_optax_get(old, j);
        float c = omb1 * g[j] + mul_stored(b1, old, j);
        (void)m;
        switch (tx->i[0]) {
        case OPTAX_LION_SMOOTH: out[j] = tanhf(beta * c); break;
        case OPTAX_LION_REFINED: out[j] = fabsf(c) < 1.0f ? c : sign_f(c); break;
        default: out[j] = sign_f(c); break;
        }
        nm[j] = omb2 * g[j] + mul_stored(b2, old, j);
    }
}
static lx_status lion_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    LX_TRY(lx_state_put_count(state, "count", 0));
    return lx_state_put_full(state, "mu", lv, tx->dtype, 0.0f);
}
static lx_status lion_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                             const char *spath, lx_tree *ns) {
    return moment_update(tx, lv, u, state, spath, ns, "mu", true, tx->dtype, lion_fn);
}
static const lx_tx_ops LION_OPS = {"scale_by_lion", lion_init, lion_update};

optax_tx *optax_scale_by_lion(double b1, double b2, lx_dtype mu_dtype, optax_lion_mode mode, double smooth_beta) {
    if (mode != OPTAX_LION_HARD && mode != OPTAX_LION_SMOOTH && mode != OPTAX_LION_REFINED) {
        lx_fail(LX_ERR_INVALID_ARGUMENT,
                "Unknown lion mode: %d. It needs to be one of [\"hard\", \"smooth\", \"refined\"].", (int)mode);
        return NULL;
    }
    optax_tx *tx = lx_tx_alloc(&LION_OPS);
    if (!tx) return NULL;
    tx->p[0] = b1;
    tx->p[1] = b2;
    tx->f[0] = lx_optax_one_minus(b1);
    tx->f[1] = (float)b1;
    tx->f[2] = lx_optax_one_minus(b2);
    tx->f[3] = (float)b2;
    tx->f[4] = (float)smooth_beta;
    tx->i[0] = mode;
    tx->dtype = mu_dtype;
    return tx;
}

/* ------------------------------------------------------------------ add_decayed_weights */

static lx_status decay_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    return tx->sched ? lx_state_put_count(state, "count", 0) : LX_OK;
}

static lx_status decay_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                              const char *spath, lx_tree *ns) {
    LX_TRY(need_params(lv, "add_decayed_weights"));
    int32_t count = 0;
    float s = tx->f[0];
    if (tx->sched) {
        LX_TRY(lx_state_get_count(state, "count", spath, &count));
        s = optax_schedule_eval(tx->sched, count);
        LX_TRY(lx_state_put_count(ns, "count", lx_safe_increment(count)));
    } else if (tx->p[0] == 0.0) {
        return LX_OK; /* a Python 0.0 returns the updates untouched */
    }
    FOR_ACTIVE(i) {
        lx_array *r = lx_optax_new_f32(u[i]);
        if (!r) return lx_last_status();
        for (int64_t j = 0; j < r->size; j++) {
            float sp = s * lx_optax_get(lv->params[i], j);
            lx_f32(r)[j] = lx_f32(u[i])[j] + sp;
        }
        set_u(u, i, r);
    }
    return LX_OK;
}
static const lx_tx_ops DECAY_OPS = {"add_decayed_weights", decay_init, decay_update};

optax_tx *optax_add_decayed_weights(optax_sos weight_decay, optax_mask mask) {
    optax_tx *tx = lx_tx_alloc(&DECAY_OPS);
    if (!tx) {
        optax_schedule_release(weight_decay.schedule);
        return NULL;
    }
    tx->sched = weight_decay.schedule;
    tx->p[0] = weight_decay.value;
    tx->f[0] = (float)weight_decay.value;
    return mask.fn ? optax_masked(tx, mask) : tx;
}

/* ------------------------------------------------------------------ clipping */

static lx_status clip_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                             const char *spath, lx_tree *ns) {
    float hi = tx->f[0], lo = -tx->f[0];
    FOR_ACTIVE(i) {
        lx_array *r = lx_optax_new_f32(u[i]);
        if (!r) return lx_last_status();
        for (int64_t j = 0; j < r->size; j++) {
            float x = lx_f32(u[i])[j];
            if (x == x) { /* jnp.clip = minimum(maximum(x, lo), hi); NaN stays NaN */
                x = x < lo ? lo : x;
                x = x > hi ? hi : x;
            }
            lx_f32(r)[j] = x;
        }
        set_u(u, i, r);
    }
    return LX_OK;
}
static const lx_tx_ops CLIP_OPS = {"clip", NULL, clip_update};

optax_tx *optax_clip(double max_delta) {
    return lx_tx_alloc1(&CLIP_OPS, max_delta);
}

static lx_status block_rms_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                                  const char *spath, lx_tree *ns) {
    FOR_ACTIVE(i) {
        float mean = lx_optax_sumsq(u[i]) / (float)u[i]->size;
        float q = sqrtf(mean) / tx->f[0];
        float denom = q > 1.0f || q != q ? q : 1.0f;
        lx_array *r = lx_optax_new_f32(u[i]);
        if (!r) return lx_last_status();
        for (int64_t j = 0; j < r->size; j++) lx_f32(r)[j] = lx_f32(u[i])[j] / denom;
        set_u(u, i, r);
    }
    return LX_OK;
}
static const lx_tx_ops BLOCK_RMS_OPS = {"clip_by_block_rms", NULL, block_rms_update};

optax_tx *optax_clip_by_block_rms(double threshold) {
    return lx_tx_alloc1(&BLOCK_RMS_OPS, threshold);
}

static lx_status global_norm_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                                    const char *spath, lx_tree *ns) {
    /* tree_norm: per-leaf sums of squares added in leaf order (sorted keys), from 0. */
    float total = 0.0f;
    for (int k = 0; k < lv->n; k++) {
        int i = lv->order[k];
        if (lv->active[i]) total = total + lx_optax_sumsq(u[i]);
    }
    float norm = sqrtf(total), maxn = tx->f[0];
    bool trigger = norm < maxn;
    if (trigger) return LX_OK; /* select(trigger, t, ...) keeps every leaf */
    FOR_ACTIVE(i) {
        lx_array *r = lx_optax_new_f32(u[i]);
        if (!r) return lx_last_status();
        for (int64_t j = 0; j < r->size; j++) lx_f32(r)[j] = (lx_f32(u[i])[j] / norm) * maxn;
        set_u(u, i, r);
    }
    return LX_OK;
}
static const lx_tx_ops GLOBAL_NORM_OPS = {"clip_by_global_norm", NULL, global_norm_update};

optax_tx *optax_clip_by_global_norm(double max_norm) {
    return lx_tx_alloc1(&GLOBAL_NORM_OPS, max_norm);
}

/* ------------------------------------------------------------------ scale_by_param_block_rms */

static lx_status param_rms_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                                  const char *spath, lx_tree *ns) {
    LX_TRY(need_params(lv, "scale_by_param_block_rms"));
    FOR_ACTIVE(i) {
        float rms = sqrtf(lx_optax_sumsq(lv->params[i]) / (float)lv->params[i]->size);
        float s = rms <= tx->f[0] ? tx->f[0] : rms;
        lx_array *r = lx_optax_new_f32(u[i]);
        if (!r) return lx_last_status();
        for (int64_t j = 0; j < r->size; j++) lx_f32(r)[j] = lx_f32(u[i])[j] * s;
        set_u(u, i, r);
    }
    return LX_OK;
}
static const lx_tx_ops PARAM_RMS_OPS = {"scale_by_param_block_rms", NULL, param_rms_update};

optax_tx *optax_scale_by_param_block_rms(double min_scale) {
    return lx_tx_alloc1(&PARAM_RMS_OPS, min_scale);
}

/* ------------------------------------------------------------------ scale_by_factored_rms */

/* _factored_dims: (d1, d0) = the two largest axes by a stable argsort of the shape, or none. */
static bool factored_dims(const optax_tx *tx, const lx_array *p, int *d1, int *d0) {
    if (!tx->flag[0] || p->ndim < 2) return false;
    int idx[LX_MAX_DIMS];
    for (int k = 0; k < p->ndim; k++) idx[k] = k;
    for (int a = 1; a < p->ndim; a++) /* insertion sort: stable */
        for (int b = a; b > 0 && p->shape[idx[b - 1]] > p->shape[idx[b]]; b--) {
            int tmp = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = tmp;
        }
    if (p->shape[idx[p->ndim - 2]] < tx->i[1]) return false;
    *d1 = idx[p->ndim - 2];
    *d0 = idx[p->ndim - 1];
    return true;
}

static void shape_without(const lx_array *p, int drop, lx_shape_want *w) {
    w->ndim = 0;
    for (int k = 0; k < p->ndim; k++)
        if (k != drop) w->shape[w->ndim++] = p->shape[k];
}

static lx_status factored_wants(const optax_tx *tx, const lx_leaves *lv, lx_shape_want *row, lx_shape_want *col,
                                lx_shape_want *v) {
    for (int i = 0; i < lv->n; i++) {
        const lx_array *p = lv->ref[i];
        int d1, d0;
        lx_shape_want one = {1, {1}};
        if (factored_dims(tx, p, &d1, &d0)) {
            shape_without(p, d0, &row[i]);
            shape_without(p, d1, &col[i]);
            v[i] = one;
        } else {
            row[i] = one;
            col[i] = one;
            v[i].ndim = p->ndim;
            memcpy(v[i].shape, p->shape, sizeof p->shape);
        }
    }
    return LX_OK;
}

static lx_status put_zeros(lx_tree *state, const char *field, const lx_leaves *lv, const lx_shape_want *w) {
    lx_array **a = arr_list(lv);
    if (!a) return lx_last_status();
    FOR_ACTIVE(i) {
        lx_array *z = lx_array_new(LX_F32, w[i].ndim, w[i].shape);
        if (!z) {
            arr_free(lv, a);
            return lx_last_status();
        }
        a[i] = lx_optax_store(z, lv->ref[i]->dtype);
        lx_release(z);
        if (!a[i]) {
            arr_free(lv, a);
            return lx_last_status();
        }
    }
    lx_status st = lx_state_put_moment(state, field, lv, a);
    free(a);
    return st;
}

static lx_status factored_init(const optax_tx *tx, const lx_leaves *lv, lx_tree *state) {
    lx_shape_want *w = calloc(3 * ((size_t)lv->n + 1), sizeof *w);
    if (!w) return lx_fail(LX_ERR_NO_MEMORY, "scale_by_factored_rms: out of memory");
    lx_shape_want *row = w, *col = w + lv->n + 1, *v = w + 2 * (lv->n + 1);
    factored_wants(tx, lv, row, col, v);
    lx_status st = lx_state_put_count(state, "count", 0);
    if (st == LX_OK) st = put_zeros(state, "v_row", lv, row);
    if (st == LX_OK) st = put_zeros(state, "v_col", lv, col);
    if (st == LX_OK) st = put_zeros(state, "v", lv, v);
    free(w);
    return st;
}

/* Flat index of `flat` (an index of shape `sh`) in the shape with axes a and b removed (b < 0:
 * only a). */
static int64_t drop_axes(const int64_t *sh, int ndim, int64_t flat, int a, int b) {
    int64_t idx[LX_MAX_DIMS];
    for (int k = ndim - 1; k >= 0; k--) {
        idx[k] = flat % sh[k];
        flat /= sh[k];
    }
    int64_t r = 0;
    for (int k = 0; k < ndim; k++)
        if (k != a && k != b) r = r * sh[k] + idx[k];
    return r;
}

/* The row/column sums of one factored leaf, in one buffer that the update's leaves share: it
 * grows to the largest leaf's need, and is allocated once per update, not once per leaf. */
typedef struct sums_buf {
    double *d;
    size_t cap;
} sums_buf;

static double *sums_zeroed(sums_buf *b, size_t n) {
    if (n > b->cap) {
        double *d = realloc(b->d, n * sizeof *d);
        if (!d) return NULL;
        b->d = d, b->cap = n;
    }
    memset(b->d, 0, n * sizeof *b->d);
    return b->d;
}

static lx_status factored_leaf(const optax_tx *tx, const lx_array *g, const lx_array *p, const lx_array *vr,
                               const lx_array *vc, const lx_array *vv, float dr, sums_buf *sb, lx_array **out,
                               lx_array **nvr, lx_array **nvc, lx_array **nv) {
    float omdr = 1.0f - dr, eps = tx->f[0];
    int d1, d0;
    const float *gd = lx_f32(g);
    *out = lx_optax_new_f32(g);
    if (!*out) return lx_last_status();
    if (!factored_dims(tx, p, &d1, &d0)) {
        *nvr = lx_array_new(LX_F32, 1, (int64_t[]){1});
        *nvc = lx_array_new(LX_F32, 1, (int64_t[]){1});
        *nv = lx_optax_new_f32(g);
        if (!*nvr || !*nvc || !*nv) return lx_last_status();
        for (int64_t j = 0; j < g->size; j++) {
            float gs = gd[j] * gd[j] + eps;
            float v = dr * lx_optax_get(vv, j) + omdr * gs;
            lx_f32(*nv)[j] = v;
            lx_f32(*out)[j] = gd[j] * powf(v, -0.5f);
        }
        return LX_OK;
    }
    *nvr = lx_array_new(LX_F32, vr->ndim, vr->shape);
    *nvc = lx_array_new(LX_F32, vc->ndim, vc->shape);
    *nv = lx_array_new(LX_F32, 1, (int64_t[]){1});
    if (!*nvr || !*nvc || !*nv) return lx_last_status();
    /* row_col_mean: new_v_row averaged over the (reduced) d1 axis, i.e. indexed by both dropped */
    int64_t nrc = vr->size / p->shape[d1];
    double *rs = sums_zeroed(sb, (size_t)vr->size + (size_t)vc->size + (size_t)nrc);
    if (!rs) return lx_fail(LX_ERR_NO_MEMORY, "scale_by_factored_rms: out of memory");
    double *cs = rs + vr->size, *rcs = cs + vc->size;
    for (int64_t j = 0; j < g->size; j++) {
        float gs = gd[j] * gd[j] + eps;
        rs[drop_axes(p->shape, p->ndim, j, d0, -1)] += gs;
        cs[drop_axes(p->shape, p->ndim, j, d1, -1)] += gs;
    }
    for (int64_t r = 0; r < vr->size; r++) {
        float mean = (float)rs[r] / (float)p->shape[d0];
        lx_f32(*nvr)[r] = dr * lx_optax_get(vr, r) + omdr * mean;
    }
    for (int64_t c = 0; c < vc->size; c++) {
        float mean = (float)cs[c] / (float)p->shape[d1];
        lx_f32(*nvc)[c] = dr * lx_optax_get(vc, c) + omdr * mean;
    }
    /* v_row's shape is p's without d0; its axis for d1 is d1 (or d1 - 1 when d1 > d0). */
    int rd1 = d1 > d0 ? d1 - 1 : d1;
    for (int64_t r = 0; r < vr->size; r++) rcs[drop_axes(vr->shape, vr->ndim, r, rd1, -1)] += lx_f32(*nvr)[r];
    for (int64_t j = 0; j < g->size; j++) {
        int64_t ri = drop_axes(p->shape, p->ndim, j, d0, -1), ci = drop_axes(p->shape, p->ndim, j, d1, -1);
        int64_t rci = drop_axes(p->shape, p->ndim, j, d0, d1);
        float rcm = (float)rcs[rci] / (float)p->shape[d1];
        float rf = powf(lx_f32(*nvr)[ri] / rcm, -0.5f);
        float cf = powf(lx_f32(*nvc)[ci], -0.5f);
        lx_f32(*out)[j] = (gd[j] * rf) * cf;
    }
    return LX_OK;
}

static lx_status factored_update(const optax_tx *tx, const lx_leaves *lv, lx_array **u, const lx_tree *state,
                                 const char *spath, lx_tree *ns) {
    LX_TRY(need_params(lv, "scale_by_factored_rms"));
    int32_t count;
    LX_TRY(lx_state_get_count(state, "count", spath, &count));
    lx_shape_want *want = calloc(3 * ((size_t)lv->n + 1), sizeof *want);
    if (!want) return lx_fail(LX_ERR_NO_MEMORY, "scale_by_factored_rms: out of memory");
    lx_shape_want *shaped[3] = {want, want + lv->n + 1, want + 2 * (lv->n + 1)};
    factored_wants(tx, lv, shaped[0], shaped[1], shaped[2]);
    moments w;
    lx_status st = moments_begin(&w, lv, state, spath, 3, (const char *[]){"v_row", "v_col", "v"}, shaped);
    free(want);
    lx_array **vr = w.old[0], **vc = w.old[1], **vv = w.old[2], **nvr = w.nw[0], **nvc = w.nw[1], **nv = w.nw[2],
             **out = w.out;
    sums_buf sb = {NULL, 0};
    /* decay_rate_t = 1 - (step - offset + 1) ** -decay_rate, at the pre-increment count */
    float t = (float)(int32_t)(count - (int32_t)tx->i[0] + 1);
    float dr = 1.0f - powf(t, (float)(-tx->p[0]));
    if (st == LX_OK) FOR_ACTIVE(i) {
        st = factored_leaf(tx, u[i], lv->params[i], vr[i], vc[i], vv[i], dr, &sb, &out[i], &nvr[i], &nvc[i], &nv[i]);
        if (st != LX_OK) break;
        lx_array **fields[3] = {&nvr[i], &nvc[i], &nv[i]};
        for (int k = 0; k < 3 && st == LX_OK; k++) {
            lx_array *s = lx_optax_store(*fields[k], lv->ref[i]->dtype);
            lx_release(*fields[k]);
            *fields[k] = s;
            if (!s) st = lx_last_status();
        }
        if (st != LX_OK) break;
    }
    free(sb.d);
    return moments_finish(&w, lv, st, u, ns, true, lx_safe_increment(count));
}
static const lx_tx_ops FACTORED_OPS = {"scale_by_factored_rms", factored_init, factored_update};

optax_tx *optax_scale_by_factored_rms(bool factored, double decay_rate, int64_t step_offset, int64_t min_dim_size_to_factor,
                                double epsilon) {
    optax_tx *tx = lx_tx_alloc(&FACTORED_OPS);
    if (!tx) return NULL;
    tx->flag[0] = factored;
    tx->p[0] = decay_rate;
    tx->i[0] = step_offset;
    tx->i[1] = min_dim_size_to_factor;
    tx->p[1] = epsilon;
    tx->f[0] = (float)epsilon;
    return tx;
}
