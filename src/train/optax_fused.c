/* The fused optimizer step: for the chains of optax.adam, optax.adamw and optax.sgd (with or
 * without momentum), update + apply_updates run as ONE pass per leaf that reads the gradient, the
 * old moments and the param once and writes the new moments and the new param, instead of three
 * passes (the transformation, the learning-rate scale, apply_updates) over three temporaries.
 *
 * Every element goes through exactly the float32 operations of the unfused path, in its order
 * (optax's: mu = (1-b1) g + b1 mu, nu = (1-b2) g^2 + b2 nu, bias correction by 1 - b^t, eps
 * outside the sqrt, adamw's decay added before the learning rate, then p + u), with no
 * contraction into FMAs (-ffp-contract=off), so the results are bit-identical to optax_update +
 * optax_apply_updates; tests/test_optax_fused.c checks that leaf for leaf. The state trees come
 * out with optax's layout, built by the same helpers.
 *
 * Anything else declines (*fused = false, nothing recorded) and the caller runs the unfused path:
 * other chains, inject_hyperparams, masks, Nesterov Adam, bfloat16 leaves or moments, debug_nans,
 * and every error (the unfused path then reports it with its own message). */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/cpu.h"
#include "linnx/threads.h"
#include "../core/team.h"
#include "optax_internal.h"
#include "../core/tree_internal.h"

typedef struct fuse_plan {
    const optax_tx *first; /* scale_by_adam, trace or identity: state "0" */
    const optax_tx *decay; /* adamw's add_decayed_weights (constant, unmasked, non-zero) or NULL */
    const optax_tx *lr;    /* scale or scale_by_schedule: the last state */
    bool adam, trace, decay_slot;
} fuse_plan;

static _Thread_local uint64_t tl_fused_steps;
uint64_t optax_fused_steps(void) { return tl_fused_steps; }

static bool is(const optax_tx *tx, const char *name) { return tx && !strcmp(tx->ops->name, name); }

static bool f32_or_default(lx_dtype d) { return d == OPTAX_DTYPE_DEFAULT || d == LX_F32; }

static bool make_plan(const optax_tx *tx, fuse_plan *p) {
    memset(p, 0, sizeof *p);
    if (!is(tx, "chain") || (tx->n != 2 && tx->n != 3)) return false;
    const optax_tx *a = tx->subs[0], *last = tx->subs[tx->n - 1];
    if (!is(last, "scale") && !is(last, "scale_by_schedule")) return false;
    p->first = a;
    p->lr = last;
    if (is(a, "scale_by_adam")) {
        if (a->flag[0] || !f32_or_default(a->dtype)) return false; /* nesterov, bfloat16 mu */
        p->adam = true;
        if (tx->n == 3) {
            const optax_tx *d = tx->subs[1];
            if (!is(d, "add_decayed_weights") || d->sched) return false;
            p->decay_slot = true;
            if (d->p[0] != 0.0) p->decay = d; /* a Python 0.0 leaves the updates untouched */
        }
        return true;
    }
    if (tx->n != 2) return false;
    if (is(a, "trace")) {
        p->trace = true;
        return f32_or_default(a->dtype);
    }
    return is(a, "identity");
}

/* ------------------------------------------------------------------ kernels
 * One body per optimizer, compiled for the baseline x86-64 (SSE2) and, where the CPU has them,
 * 256-bit AVX2 and (adam) 512-bit AVX-512. Division and square root are correctly rounded in all,
 * so they agree bit for bit with each other and with the scalar loops of optax_transforms.c. */

/* The two bias corrections divide by a constant of the step (bc = 1 - b**t): the kernels multiply
 * by its reciprocal in double instead, (float)((double)x * (1.0 / bc)), which is x / bc correctly
 * rounded for every float x. Why: 1.0 / bc and the product are each within 2^-53 relative, so the
 * double is within ~2^-52 of x / bc; a quotient of two 24-bit significands is never a midpoint of
 * two floats and lies at least 2^-50 (relative) from every midpoint (|A 2^s - (2M+1) B| >= 1 with
 * A 2^s < 2^50), so rounding the double to float gives the float quotient's rounding. Division
 * and square root share one unit, which bounds this loop: two divisions of three move to the
 * multipliers (tests/test_optax_fused.c checks the bits against the unfused path). */
typedef struct adam_k {
    float omb1, omb2, b1, b2, eps, eps_root, wd, lr;
    double rbc1, rbc2; /* 1 / bc1, 1 / bc2 in double */
    float bc1, bc2, r1, r2; /* bc1, bc2 and their float reciprocals 1.0f / bc (the AVX2 kernel) */
    bool fma_bc;            /* both bc in [2^-40, 1]: the AVX2 kernel's float division may run */
    bool decay;
} adam_k;

#define ADAM_BODY                                                                                     \
    for (int64_t j = 0; j < n; j++) {                                                                 \
        float gj = g[j];                                                                              \
        float mj = k->omb1 * gj + k->b1 * m0[j];                                                      \
        float vj = k->omb2 * (gj * gj) + k->b2 * v0[j];                                               \
        m[j] = mj;                                                                                    \
        v[j] = vj;                                                                                    \
        float mh = (float)((double)mj * k->rbc1), vh = (float)((double)vj * k->rbc2);                 \
        float u = mh / (sqrtf(vh + k->eps_root) + k->eps);                                            \
        if (k->decay) {                                                                               \
            float sp = k->wd * p[j];                                                                  \
            u = u + sp;                                                                               \
        }                                                                                             \
        po[j] = p[j] + k->lr * u;                                                                     \
    }

typedef struct sgd_k {
    float decay, lr;
    bool trace, nesterov;
} sgd_k;

#define SGD_BODY                                                                                      \
    if (!k->trace) {                                                                                  \
        for (int64_t j = 0; j < n; j++) po[j] = p[j] + k->lr * g[j];                                 \
    } else if (!k->nesterov) {                                                                        \
        for (int64_t j = 0; j < n; j++) {                                                             \
            float tr = g[j] + k->decay * t0[j];                                                       \
            t[j] = tr;                                                                                \
            po[j] = p[j] + k->lr * tr;                                                                \
        }                                                                                             \
    } else {                                                                                          \
        for (int64_t j = 0; j < n; j++) {                                                             \
            float tr = g[j] + k->decay * t0[j];                                                       \
            t[j] = tr;                                                                                \
            float u = g[j] + k->decay * tr;                                                           \
            po[j] = p[j] + k->lr * u;                                                                 \
        }                                                                                             \
    }

/* g, the old moments (m0, v0 / t0) and the param p are read, the new moments and the new param
 * po written: separate buffers, so one pass touches each array once. */
static void adam_base(int64_t n, const adam_k *k, const float *restrict g, const float *restrict m0,
                      const float *restrict v0, float *restrict m, float *restrict v, const float *restrict p,
                      float *restrict po) {
    ADAM_BODY
}
static void sgd_base(int64_t n, const sgd_k *k, const float *restrict g, const float *restrict t0,
                     float *restrict t, const float *restrict p, float *restrict po) {
    SGD_BODY
}

/* In place (a donated step, see lx_optax_fused_step_ex): the new moments and param overwrite the
 * old ones, each element read before it is written. */
#define ADAM_INPLACE_ARGS                                                                             \
    int64_t n, const adam_k *k, const float *restrict g, float *restrict m, float *restrict v, float *restrict p
#define ADAM_INPLACE_BODY                                                                             \
    const float *m0 = m, *v0 = v;                                                                     \
    float *po = p;                                                                                    \
    ADAM_BODY

#if defined(LINNX_X86_KERNELS) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define HAVE_AVX2_PATH 1
__attribute__((target("avx2"))) static void adam_avx2(int64_t n, const adam_k *k, const float *restrict g,
                                                      const float *restrict m0, const float *restrict v0,
                                                      float *restrict m, float *restrict v, const float *restrict p,
                                                      float *restrict po) {
    ADAM_BODY
}
__attribute__((target("avx2"))) static void adam_avx2_ip(ADAM_INPLACE_ARGS) { ADAM_INPLACE_BODY }

/* The AVX2 + FMA kernel, 4 floats a vector. Why not the body above compiled for AVX2: on AMD Zen 1
 * (256-bit ops run as two 128-bit halves) the square root, the division and the float <-> double
 * conversions of the bias corrections all queue for one unit; the conversions (4 per 4 elements)
 * cost as much as the square root and the division together (1.6 of its 2.3 ms over mlp_train's
 * 669k parameters). Here the bias correction x / bc is a float division on the multipliers,
 * Markstein's correction with fused multiply-adds:
 *     q0 = x * r  (r = 1.0f / bc, correctly rounded)   e = q0 * bc - x  (one FMA)   q = q0 - e * r
 * q is x / bc correctly rounded, the same float as (float)((double)x * (1.0 / bc)) of the other
 * kernels (see above), while nothing overflows or goes subnormal: x is 0 or 2^-100 <= |x| <= 2^80
 * and bc is in [2^-40, 1] (checked once per step: adam_k.fma_bc). Note e is not always exact
 * (q0 can be more than an ulp off when x's significand is below bc's; the remainder then needs 25
 * bits), so this is not the textbook argument: the result was checked against exact rational
 * division (a review's sweep of the top 300 significands of x and bc, 180k cases, and ~23k random
 * ones; an error bound puts any miss in that corner) and against the double form by
 * tests/test_optax_adam_edges.c, bc = 1 - 2^-24 included. Computing e as q0 * bc - x (not x - q0 * bc)
 * gives x = -0 the quotient -0. Other moments (|m| or |v| nonzero below 2^-100, above 2^80, inf,
 * nan) are rare: the range is checked for 16 elements at a time, and such a group's params are
 * computed from the already written moments by adam_finish (the double form), before any of the
 * group's params is stored. Separate or equal in and out arrays (in place); n any length. */
#include <immintrin.h>
/* Software prefetch distance of the loop below, in elements (1 KiB per stream): the four input
 * streams of a chunk run from memory (mlp_train's 669k parameters are 18.7 MB of traffic a step
 * against an 8 MiB L3). One-thread step, process CPU time, same process alternating with it off:
 * 0.07-0.12 ms less at 128-512 elements (~6% of adam's 1.4 ms), none at 1024 (docs/training.md,
 * session 27). Prefetches stop at the chunk's end: the other thread may own the next chunk. */
#define ADAM_PF 256
static void adam_finish(int64_t n, const adam_k *k, const float *m, const float *v, const float *p, float *po) {
    for (int64_t j = 0; j < n; j++) {
        float mh = (float)((double)m[j] * k->rbc1), vh = (float)((double)v[j] * k->rbc2);
        float u = mh / (sqrtf(vh + k->eps_root) + k->eps);
        if (k->decay) {
            float sp = k->wd * p[j];
            u = u + sp;
        }
        po[j] = p[j] + k->lr * u;
    }
}
static void adam_base_ip(ADAM_INPLACE_ARGS);
__attribute__((target("avx2,fma"))) static void adam_avx2_fma(int64_t n, const adam_k *k, const float *g,
                                                              const float *m0, const float *v0, float *m, float *v,
                                                              const float *p, float *po) {
    const __m128 omb1 = _mm_set1_ps(k->omb1), omb2 = _mm_set1_ps(k->omb2), b1 = _mm_set1_ps(k->b1),
                 b2 = _mm_set1_ps(k->b2), eps = _mm_set1_ps(k->eps), er = _mm_set1_ps(k->eps_root),
                 wd = _mm_set1_ps(k->wd), lr = _mm_set1_ps(k->lr), r1 = _mm_set1_ps(k->r1), c1 = _mm_set1_ps(k->bc1),
                 r2 = _mm_set1_ps(k->r2), c2 = _mm_set1_ps(k->bc2);
    /* |x| bits: 2^80 = 0x67800000, 2^-100 = 0x0D800000 */
    const __m128i absb = _mm_set1_epi32(0x7fffffff), ones = _mm_set1_epi32(-1), hi = _mm_set1_epi32(0x67800000),
                  lo2 = _mm_set1_epi32(0x0D800000 - 2);
    const bool decay = k->decay;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        if (j + ADAM_PF < n) { /* one line of each input stream, ADAM_PF elements ahead (see above) */
            _mm_prefetch((const char *)(g + j + ADAM_PF), _MM_HINT_T0);
            _mm_prefetch((const char *)(m0 + j + ADAM_PF), _MM_HINT_T0);
            _mm_prefetch((const char *)(v0 + j + ADAM_PF), _MM_HINT_T0);
            _mm_prefetch((const char *)(p + j + ADAM_PF), _MM_HINT_T0);
        }
        __m128 pn[4];
        __m128i mx = _mm_setzero_si128(), mn = ones; /* max |x| bits; min (|x| bits - 1), unsigned: 0 maps high */
        for (int b = 0; b < 4; b++) {
            const int64_t o = j + 4 * b;
            __m128 gg = _mm_loadu_ps(g + o), mm = _mm_loadu_ps(m0 + o), vv = _mm_loadu_ps(v0 + o),
                   pp = _mm_loadu_ps(p + o);
            mm = _mm_add_ps(_mm_mul_ps(omb1, gg), _mm_mul_ps(b1, mm));
            vv = _mm_add_ps(_mm_mul_ps(omb2, _mm_mul_ps(gg, gg)), _mm_mul_ps(b2, vv));
            _mm_storeu_ps(m + o, mm);
            _mm_storeu_ps(v + o, vv);
            __m128i am = _mm_and_si128(_mm_castps_si128(mm), absb), av = _mm_and_si128(_mm_castps_si128(vv), absb);
            mx = _mm_max_epi32(mx, _mm_max_epi32(am, av));
            mn = _mm_min_epu32(mn, _mm_min_epu32(_mm_add_epi32(am, ones), _mm_add_epi32(av, ones)));
            __m128 q = _mm_mul_ps(mm, r1);
            __m128 mh = _mm_fnmadd_ps(_mm_fmsub_ps(q, c1, mm), r1, q);
            q = _mm_mul_ps(vv, r2);
            __m128 vh = _mm_fnmadd_ps(_mm_fmsub_ps(q, c2, vv), r2, q);
            __m128 u = _mm_div_ps(mh, _mm_add_ps(_mm_sqrt_ps(_mm_add_ps(vh, er)), eps));
            if (decay) u = _mm_add_ps(u, _mm_mul_ps(wd, pp));
            pn[b] = _mm_add_ps(pp, _mm_mul_ps(lr, u));
        }
        __m128i bad = _mm_or_si128(_mm_cmpgt_epi32(mx, hi), _mm_cmpeq_epi32(_mm_min_epu32(mn, lo2), mn));
        if (__builtin_expect(!_mm_testz_si128(bad, bad), 0)) {
            adam_finish(16, k, m + j, v + j, p + j, po + j);
            continue;
        }
        for (int b = 0; b < 4; b++) _mm_storeu_ps(po + j + 4 * b, pn[b]);
    }
    if (j == n) return;
    if (m == m0) adam_base_ip(n - j, k, g + j, m + j, v + j, po + j);
    else adam_base(n - j, k, g + j, m0 + j, v0 + j, m + j, v + j, p + j, po + j);
}
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq,prefer-vector-width=512"))) static void adam_avx512_ip(
    ADAM_INPLACE_ARGS) {
    ADAM_INPLACE_BODY
}

/* AVX-512 (F/VL/DQ: 16 floats a vector, the double products 8 a vector): the same body. */
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq,prefer-vector-width=512"))) static void adam_avx512(
    int64_t n, const adam_k *k, const float *restrict g, const float *restrict m0, const float *restrict v0,
    float *restrict m, float *restrict v, const float *restrict p, float *restrict po) {
    ADAM_BODY
}
__attribute__((target("avx2"))) static void sgd_avx2(int64_t n, const sgd_k *k, const float *restrict g,
                                                     const float *restrict t0, float *restrict t,
                                                     const float *restrict p, float *restrict po) {
    SGD_BODY
}
#endif

/* The kernel set: 0 baseline, 1 AVX2, 2 AVX-512 (lx_isa_current: cpuid, or LINNX_ISA). */
static int kernel_level(void) {
#ifdef HAVE_AVX2_PATH
    lx_isa isa = lx_isa_current();
    return isa >= LX_ISA_AVX512 ? 2 : isa >= LX_ISA_AVX2 ? 1 : 0;
#else
    return 0;
#endif
}

static void adam_base_ip(ADAM_INPLACE_ARGS) { ADAM_INPLACE_BODY }

static void adam_leaf(int avx2, const adam_k *k, int64_t n, const float *g, const float *m0, const float *v0,
                      float *m, float *v, const float *p, float *po) {
    if (m == m0) { /* in place: m == m0, v == v0, po == p */
#ifdef HAVE_AVX2_PATH
        if (avx2 == 2) adam_avx512_ip(n, k, g, m, v, po);
        else if (avx2 && k->fma_bc) adam_avx2_fma(n, k, g, m, v, m, v, po, po);
        else if (avx2) adam_avx2_ip(n, k, g, m, v, po);
        else adam_base_ip(n, k, g, m, v, po);
#else
        adam_base_ip(n, k, g, m, v, po);
#endif
        return;
    }
#ifdef HAVE_AVX2_PATH
    if (avx2 == 2) {
        adam_avx512(n, k, g, m0, v0, m, v, p, po);
        return;
    }
    if (avx2 && k->fma_bc) {
        adam_avx2_fma(n, k, g, m0, v0, m, v, p, po);
        return;
    }
    if (avx2) {
        adam_avx2(n, k, g, m0, v0, m, v, p, po);
        return;
    }
#endif
    (void)avx2;
    adam_base(n, k, g, m0, v0, m, v, p, po);
}

static void sgd_leaf(int avx2, const sgd_k *k, int64_t n, const float *g, const float *t0, float *t, const float *p,
                     float *po) {
#ifdef HAVE_AVX2_PATH
    if (avx2) {
        sgd_avx2(n, k, g, t0, t, p, po);
        return;
    }
#endif
    (void)avx2;
    sgd_base(n, k, g, t0, t, p, po);
}

/* Every leaf of a step in one job on the pool: the leaves are cut into chunks of at most CHUNK
 * elements (a multiple of 64; a smaller leaf is one chunk) that the threads claim one at a time
 * from a counter, in leaf order, so the whole update is one pool round trip and the threads end
 * within a chunk of each other. Elementwise, so any split gives the same bits. Before, each leaf
 * of PAR_MIN elements or more was one job of one chunk per thread and every smaller leaf ran on
 * the caller: mlp_train's adam was two jobs whose halves ended 40-50 us apart (the threads do
 * not start together: a worker joins a few microseconds after the caller), ~90 us of the caller
 * waiting per step. A step of fewer than PAR_MIN elements in all runs on the calling thread. */
enum { PAR_MIN = 1 << 16, CHUNK = 1 << 14 };

typedef struct step_job {
    int avx2, n;            /* kernel set, leaves */
    const adam_k *ak;       /* adam, or */
    const sgd_k *sk;        /* sgd (trace when o1 / n1 are given) */
    lx_array *const *g, *const *p, *const *np; /* gradients, params in, params out */
    lx_array *const *o1, *const *o2, *const *n1, *const *n2; /* moments in and out (adam: mu, nu; sgd: trace) */
    int64_t nchunks;
    atomic_llong next;
} step_job;

static int64_t leaf_nchunks(const step_job *j, int i) { return (j->np[i]->size + CHUNK - 1) / CHUNK; }

static void step_chunk(const step_job *j, int i, int64_t c) {
    int64_t a = c * CHUNK, n = j->np[i]->size, l = n - a < CHUNK ? n - a : CHUNK;
    const float *g = lx_f32(j->g[i]) + a, *p = lx_f32(j->p[i]) + a;
    float *po = lx_f32(j->np[i]) + a;
    if (j->ak) {
        adam_leaf(j->avx2, j->ak, l, g, lx_f32(j->o1[i]) + a, lx_f32(j->o2[i]) + a, lx_f32(j->n1[i]) + a,
                  lx_f32(j->n2[i]) + a, p, po);
    } else {
        bool tr = j->sk->trace;
        sgd_leaf(j->avx2, j->sk, l, g, tr ? lx_f32(j->o1[i]) + a : NULL, tr ? lx_f32(j->n1[i]) + a : NULL, p, po);
    }
}

/* Whoever runs this claims chunks until none is left; claimed indices only grow, so each thread
 * walks the leaves forward from its last one. */
static void step_run(void *arg) {
    step_job *j = arg;
    int i = 0;
    int64_t first = 0; /* the first chunk of leaf i */
    for (int64_t c; (c = (int64_t)atomic_fetch_add(&j->next, 1)) < j->nchunks;) {
        while (c >= first + leaf_nchunks(j, i)) first += leaf_nchunks(j, i++);
        step_chunk(j, i, c - first);
    }
}

static void step_all(step_job *j) {
    int64_t total = 0;
    j->nchunks = 0;
    for (int i = 0; i < j->n; i++) total += j->np[i]->size, j->nchunks += leaf_nchunks(j, i);
    atomic_init(&j->next, 0);
    int nt = lx_num_threads();
    if (nt <= 1 || total < PAR_MIN) step_run(j);
    else lx_team_run(nt < j->nchunks ? nt : (int)j->nchunks, step_run, j);
}

/* ------------------------------------------------------------------ the step */

static const lx_tree *sub_state(const lx_tree *state, int k) {
    char key[16];
    const lx_value *v = lx_tree_get(state, lx_dec_(key, k));
    return v && v->kind == LX_V_TREE ? v->u.tree : NULL;
}

static bool all_f32(const lx_leaves *lv, lx_array *const *arrs) {
    for (int i = 0; i < lv->n; i++)
        if (!arrs[i] || arrs[i]->dtype != LX_F32) return false;
    return true;
}

/* ns[str(k)] = sub; always takes (releases) sub, which may be NULL after a failed allocation. */
static lx_status put_sub(lx_tree *ns, int k, lx_tree *sub) {
    if (!sub) return LX_ERR_NO_MEMORY;
    char key[16];
    lx_status st = lx_tree_set(ns, lx_dec_(key, k), lx_tree_v(sub));
    lx_tree_release(sub);
    return st;
}

/* Does this tree alone hold everything in it: itself and every subtree unshared, every leaf a
 * array held once (by this tree), owning its own block (not a view, not wrapped)? Then
 * writing into its arrays is seen by no one but the tree's holder. */
static bool held_alone(const lx_tree *t) {
    if (lx_tree_is_shared(t)) return false;
    for (size_t i = 0; i < lx_tree_len(t); i++) {
        const lx_value *v = lx_tree_at(t, i);
        if (v->kind == LX_V_TREE) {
            if (!held_alone(v->u.tree)) return false;
        } else if (v->kind == LX_V_ARRAY) {
            const lx_array *a = v->u.array;
            if (!a || a->refcount != 1 || a->base || !a->alloc || a->release_fn) return false;
        } else if (v->kind != LX_V_INT && v->kind != LX_V_FLOAT && v->kind != LX_V_BOOL && v->kind != LX_V_NONE) {
            return false;
        }
    }
    return true;
}

lx_status lx_optax_fused_step(const optax_tx *tx, const lx_tree *grads, const lx_tree *state, const lx_tree *params,
                              lx_tree **new_params, lx_tree **new_state, bool *fused) {
    return lx_optax_fused_step_ex(tx, grads, state, params, false, new_params, new_state, fused);
}

lx_status lx_optax_fused_step_ex(const optax_tx *tx, const lx_tree *grads, const lx_tree *state, const lx_tree *params,
                                 bool donated, lx_tree **new_params, lx_tree **new_state, bool *fused) {
    *fused = false;
    *new_params = NULL;
    *new_state = NULL;
    fuse_plan pl;
    if (!tx || !grads || !state || !params || optax_debug_nans() || !make_plan(tx, &pl)) return LX_OK;
    /* adam over donated trees that nothing else holds: update the moments and params in place */
    bool in_place = donated && pl.adam && held_alone(params) && held_alone(state);
    uint64_t gen = lx_error_generation();
    lx_leaves lv;
    if (lx_optax_leaves_from_tree("update", "params", params, true, &lv) != LX_OK) return LX_OK;
    int n = lv.n;
    /* g, old moments 1 and 2, new moments 1 and 2, new params */
    lx_array **buf = calloc(6 * ((size_t)n + 1), sizeof *buf);
    lx_array **g = buf, **o1 = buf + (n + 1), **o2 = buf + 2 * (n + 1), **n1 = buf + 3 * (n + 1),
             **n2 = buf + 4 * (n + 1), **np = buf + 5 * (n + 1);
    lx_tree *ns = NULL, *s0 = NULL, *out = NULL;
    bool ok = buf && lx_optax_match_tree("update", "gradients", "params", grads, &lv, g) == LX_OK && all_f32(&lv, g) &&
              all_f32(&lv, lv.params) && lx_tree_len(state) == (size_t)tx->n;
    const lx_tree *st0 = ok ? sub_state(state, 0) : NULL, *stl = ok ? sub_state(state, tx->n - 1) : NULL;
    ok = ok && st0 && stl && (!pl.decay_slot || sub_state(state, 1));
    if (ok && pl.decay_slot) ok = lx_tree_len(sub_state(state, 1)) == 0;
    /* the learning rate: constant, or the schedule at its own count */
    int32_t lr_count = 0, count = 0;
    float lr = 0.0f;
    if (ok && is(pl.lr, "scale")) {
        ok = lx_tree_len(stl) == 0;
        lr = pl.lr->f[0];
    } else if (ok) {
        ok = lx_state_get_count(stl, "count", "", &lr_count) == LX_OK && lx_tree_len(stl) == 1;
        if (ok) {
            lr = optax_schedule_eval(pl.lr->sched, lr_count);
            if (pl.lr->flag[0]) lr = -lr;
        }
    }
    if (ok && pl.adam) {
        ok = lx_state_get_count(st0, "count", "0", &count) == LX_OK && lx_tree_len(st0) == 3 &&
             lx_state_get_moment(st0, "mu", "0", &lv, o1) == LX_OK &&
             lx_state_get_moment(st0, "nu", "0", &lv, o2) == LX_OK && all_f32(&lv, o1) && all_f32(&lv, o2);
    } else if (ok && pl.trace) {
        ok = lx_tree_len(st0) == 1 && lx_state_get_moment(st0, "trace", "0", &lv, o1) == LX_OK && all_f32(&lv, o1);
    } else if (ok) {
        ok = lx_tree_len(st0) == 0;
    }
    /* buffers for everything written: none of them is an input */
    for (int i = 0; ok && in_place && i < n; i++) {
        np[i] = lx_retain(lv.params[i]);
        n1[i] = lx_retain(o1[i]);
        n2[i] = lx_retain(o2[i]);
    }
    for (int i = 0; ok && !in_place && i < n; i++) {
        np[i] = lx_optax_new_f32(lv.params[i]);
        if (pl.adam || pl.trace) n1[i] = lx_optax_new_f32(lv.params[i]);
        if (pl.adam) n2[i] = lx_optax_new_f32(lv.params[i]);
        ok = np[i] && (!(pl.adam || pl.trace) || n1[i]) && (!pl.adam || n2[i]);
    }
    adam_k ak;
    int avx2 = kernel_level();
    if (ok) {
        if (pl.adam) {
            const optax_tx *a = pl.first;
            int32_t t = lx_safe_increment(count);
            float bc1 = 1.0f - powf(a->f[2], (float)t), bc2 = 1.0f - powf(a->f[3], (float)t);
            ak = (adam_k){.omb1 = a->f[0], .omb2 = a->f[1], .b1 = a->f[2], .b2 = a->f[3], .eps = a->f[4],
                        .eps_root = a->f[5], .rbc1 = 1.0 / (double)bc1, .rbc2 = 1.0 / (double)bc2,
                        .bc1 = bc1, .bc2 = bc2, .r1 = 1.0f / bc1, .r2 = 1.0f / bc2,
                        .fma_bc = bc1 >= 0x1p-40f && bc1 <= 1.0f && bc2 >= 0x1p-40f && bc2 <= 1.0f,
                        .wd = pl.decay ? pl.decay->f[0] : 0.0f, .lr = lr, .decay = pl.decay != NULL};
            /* in place: only once nothing can fail any more (below), so a failed step changes nothing */
            if (!in_place) {
                step_job sj = {.avx2 = avx2, .n = n, .ak = &ak, .g = g, .p = lv.params, .np = np, .o1 = o1, .o2 = o2,
                               .n1 = n1, .n2 = n2};
                step_all(&sj);
            }
            /* ScaleByAdamState(count, mu, nu), as adam_update builds it */
            s0 = lx_tree_new();
            ok = s0 && lx_state_put_count(s0, "count", t) == LX_OK && lx_state_put_moment(s0, "mu", &lv, n1) == LX_OK &&
                 lx_state_put_moment(s0, "nu", &lv, n2) == LX_OK;
        } else {
            sgd_k k = {.decay = pl.trace ? pl.first->f[0] : 0.0f, .lr = lr, .trace = pl.trace,
                       .nesterov = pl.trace && pl.first->flag[0]};
            step_job sj = {.avx2 = avx2, .n = n, .sk = &k, .g = g, .p = lv.params, .np = np, .o1 = o1, .n1 = n1};
            step_all(&sj);
            s0 = lx_tree_new();
            ok = s0 && (!pl.trace || lx_state_put_moment(s0, "trace", &lv, n1) == LX_OK);
        }
    }
    /* the chain's state: {"0": s0, ["1": {},] "<last>": {} or {"count"}} */
    if (ok) {
        ns = lx_tree_new();
        ok = ns != NULL;
        if (ok) {
            ok = put_sub(ns, 0, s0) == LX_OK;
            s0 = NULL; /* put_sub took it */
        }
    }
    if (ok && pl.decay_slot) ok = put_sub(ns, 1, lx_tree_new()) == LX_OK;
    if (ok) {
        lx_tree *l = lx_tree_new();
        ok = l && (is(pl.lr, "scale") || lx_state_put_count(l, "count", lx_safe_increment(lr_count)) == LX_OK);
        ok = put_sub(ns, tx->n - 1, l) == LX_OK && ok;
    }
    if (ok) ok = lx_optax_params_like(params, &lv, np, &out) == LX_OK;
    if (ok && in_place) { /* the moments and params overwritten: out = in */
        step_job sj = {.avx2 = avx2, .n = n, .ak = &ak, .g = g, .p = lv.params, .np = lv.params, .o1 = o1, .o2 = o2,
                       .n1 = o1, .n2 = o2};
        step_all(&sj);
    }
    for (int i = 0; buf && i < n; i++) {
        lx_optax_recycle(np[i]);
        lx_optax_recycle(n1[i]); /* NULL after put_moment stole them */
        lx_optax_recycle(n2[i]);
    }
    lx_tree_release(s0);
    free(buf);
    lx_optax_leaves_free(&lv);
    if (!ok) {
        lx_tree_release(ns);
        lx_tree_release(out);
        /* the unfused path runs next and reports any real error itself */
        if (lx_error_generation() != gen) lx_clear_error();
        return LX_OK;
    }
    *new_params = out;
    *new_state = ns;
    *fused = true;
    tl_fused_steps++;
    return LX_OK;
}
