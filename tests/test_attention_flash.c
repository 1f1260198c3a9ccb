/* The fused ("flash") attention kernels called directly (src/ops/attention_internal.h), each one
 * the CPU runs (AVX2, AVX-512), against a double-precision reference written here: the output
 * rows and each row's log-sum-exp, for odd query and key counts, causal and not, grouped heads
 * (the kernels read one head out of an interleaved (seq, heads, depth) layout and must write only
 * its columns and its rows [t0, t0 + tq)), depths 1, 3, 8, 16, 24, 32, 64 and 128, value depth
 * different from depth, Flax's q / sqrt(depth) and an explicit scale; then the cases the kernels
 * decline (inf / NaN in q, k or v, a value past the causal front included; an overflowing logit),
 * and the exponential the backward rebuilds the weights with. On an AVX-512 machine also: the
 * AVX2 and AVX-512 exp2 give the same bits. The public entry points (dispatch, fallbacks) are
 * test_nn's and test_attention_grad's. */
#define _DEFAULT_SOURCE /* mmap MAP_ANONYMOUS, sysconf */
#include <float.h>
#include <math.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../src/ops/attention_internal.h"
#include "linnx/autodiff.h"
#include "linnx/cpu.h"
#include "linnx/nn.h"
#include "lx_test.h"

static uint32_t rng = 11;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

typedef struct {
    const char *name;
    lx_flash_fwd_fn fwd;
    lx_flash_exp_fn exp;
    lx_flash_bwd_fn bwd;
    lx_isa isa;
} kernel_set;

typedef struct {
    int64_t T, S, H, G, d, dv;
    bool causal;
    float scale; /* 0: Flax's q / sqrt(d) */
} fcase;

#define SENTINEL 12345.0f

/* One (head h) of q (T, H, d), k (S, G, d), v (S, G, dv): out rows and natural-log lse in double,
 * the logits from the query as the kernel sees it (divided in float32 first with Flax's scaling). */
static void ref_head(const fcase *c, const float *q, const float *k, const float *v, int64_t h, double *out,
                     double *lse) {
    const int64_t g = h / (c->H / c->G);
    const float qdiv = sqrtf((float)c->d);
    double *z = malloc(sizeof(double) * (size_t)c->S);
    for (int64_t t = 0; t < c->T; t++) {
        double mx = -INFINITY, sum = 0;
        const int64_t ns = c->causal && t + 1 < c->S ? t + 1 : c->S;
        for (int64_t s = 0; s < ns; s++) {
            double acc = 0;
            for (int64_t e = 0; e < c->d; e++) {
                const float qv = q[(t * c->H + h) * c->d + e];
                acc += (double)(c->scale == 0.0f ? qv / qdiv : qv) * k[(s * c->G + g) * c->d + e];
            }
            z[s] = c->scale == 0.0f ? acc : acc * c->scale;
            mx = z[s] > mx ? z[s] : mx;
        }
        for (int64_t s = 0; s < ns; s++) sum += exp(z[s] - mx);
        lse[t] = mx + log(sum);
        for (int64_t e = 0; e < c->dv; e++) {
            double acc = 0;
            for (int64_t s = 0; s < ns; s++) acc += exp(z[s] - mx) / sum * v[(s * c->G + g) * c->dv + e];
            out[t * c->dv + e] = acc;
        }
    }
    free(z);
}

/* Runs the kernel over head h in jobs of `blk` query rows (a multiple of 16); returns false when a
 * job declined. After each job, *stray counts the entries it must not have written that no longer
 * hold SENTINEL: head h's rows past the job (not written yet), every later head's columns and lse
 * rows, and the GUARD floats on each side of out and lse (stray NULL: no checks). */
#define GUARD 64
static bool run_head(const kernel_set *ks, const fcase *c, const float *q, const float *k, const float *v, int64_t blk,
                     int64_t h, float *out, float *lse, int64_t *stray) {
    const float qdiv = c->scale == 0.0f ? sqrtf((float)c->d) : 0.0f;
    const lx_flash_args a = {.S = c->S, .d = c->d, .dv = c->dv, .ldq = c->H * c->d, .ldk = c->G * c->d,
                             .ldv = c->G * c->dv, .ldo = c->H * c->dv, .qdiv = qdiv,
                             .qmul = (c->scale == 0.0f ? 1.0f : c->scale) * 1.44269504088896341f, .causal = c->causal};
    float *scratch = malloc(sizeof(float) * (size_t)lx_flash_scratch(&a));
    const int64_t g = h / (c->H / c->G), no = c->T * c->H * c->dv, nl = c->H * c->T;
    bool ok = true;
    for (int64_t t0 = 0; t0 < c->T; t0 += blk) {
        const int64_t tq = c->T - t0 < blk ? c->T - t0 : blk;
        ok &= ks->fwd(&a, q + h * c->d, k + g * c->d, v + g * c->dv, t0, tq, out + h * c->dv, lse + h * c->T, scratch);
        if (!stray) continue;
        for (int64_t t = 0; t < c->T; t++)
            for (int64_t hh = h; hh < c->H; hh++) {
                if (hh == h && t < t0 + tq) continue;
                for (int64_t j = 0; j < c->dv; j++) *stray += out[(t * c->H + hh) * c->dv + j] != SENTINEL;
                *stray += lse[hh * c->T + t] != SENTINEL;
            }
        for (int64_t i = 1; i <= GUARD; i++)
            *stray += (out[-i] != SENTINEL) + (out[no - 1 + i] != SENTINEL) + (lse[-i] != SENTINEL) +
                      (lse[nl - 1 + i] != SENTINEL);
    }
    free(scratch);
    return ok;
}

/* every head (the declines test) */
static bool run_kernel(const kernel_set *ks, const fcase *c, const float *q, const float *k, const float *v, int64_t blk,
                       float *out, float *lse) {
    bool ok = true;
    for (int64_t h = 0; h < c->H; h++) ok &= run_head(ks, c, q, k, v, blk, h, out, lse, NULL);
    return ok;
}

/* jobs of blk0 rows, then one job for all rows */
/* sum(attention(q, k, v) * bwd_w): its cotangent of the output is bwd_w */
static lx_array *bwd_w;
static lx_status bwd_loss(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n;
    const fcase *c = user;
    *loss = lx_sum(lx_mul(lx_dot_product_attention(xs[0], xs[1], xs[2], NULL, NULL, c->causal, c->scale), bwd_w), 0, NULL,
                   false);
    return *loss ? LX_OK : lx_last_status();
}

static void check_case_blk(const kernel_set *ks, const fcase *c, float qamp, int64_t blk0, bool tiny) {
    const int64_t nq = c->T * c->H * c->d, nk = c->S * c->G * c->d, nv = c->S * c->G * c->dv, no = c->T * c->H * c->dv;
    const int64_t nl = c->H * c->T;
    float *q = malloc(sizeof(float) * (size_t)nq), *k = malloc(sizeof(float) * (size_t)nk);
    float *v = malloc(sizeof(float) * (size_t)nv), *outg = malloc(sizeof(float) * (size_t)(no + 2 * GUARD));
    float *lseg = malloc(sizeof(float) * (size_t)(nl + 2 * GUARD)), *out = outg + GUARD, *lse = lseg + GUARD;
    double *ro = malloc(sizeof(double) * (size_t)(c->T * c->dv)), *rl = malloc(sizeof(double) * (size_t)c->T);
    for (int64_t i = 0; i < nq; i++) q[i] = qamp * frand();
    if (tiny) /* entries below 2^-100 (a subnormal among them), zeros of both signs: the AVX2 kernel's
               * tiles with such entries take the division instead of the corrected reciprocal */
        for (int64_t i = 0; i < nq; i += 7) q[i] = i % 4 == 0 ? 1e-35f : i % 4 == 1 ? -3e-41f : i % 4 == 2 ? -0.0f : 0.0f;
    for (int64_t i = 0; i < nk; i++) k[i] = frand();
    for (int64_t i = 0; i < nv; i++) v[i] = frand();
    /* jobs of 48 rows (three tiles of 16) and of one block for all rows; each pass starts from
     * SENTINEL everywhere and runs the heads one at a time, so a write outside a job's rows and
     * head (or past the buffers) is seen before a later job overwrites it */
    for (int pass = 0; pass < 2; pass++) {
        const int64_t blk = pass == 0 ? blk0 : (c->T + 15) / 16 * 16;
        for (int64_t i = 0; i < no + 2 * GUARD; i++) outg[i] = SENTINEL;
        for (int64_t i = 0; i < nl + 2 * GUARD; i++) lseg[i] = SENTINEL;
        int64_t stray = 0;
        bool ok = true;
        for (int64_t h = 0; h < c->H; h++) ok &= run_head(ks, c, q, k, v, blk, h, out, lse, &stray);
        double eo = 0, el = 0;
        for (int64_t h = 0; h < c->H; h++) {
            ref_head(c, q, k, v, h, ro, rl);
            for (int64_t t = 0; t < c->T; t++) {
                const double e = fabs(lse[h * c->T + t] - rl[t]) / (1 + fabs(rl[t]));
                el = e > el || isnan(e) ? e : el;
                for (int64_t j = 0; j < c->dv; j++) {
                    const double r = ro[t * c->dv + j], x = out[(t * c->H + h) * c->dv + j];
                    const double eoj = fabs(x - r) / (1e-1 + fabs(r));
                    eo = eoj > eo || isnan(eoj) ? eoj : eo;
                }
            }
        }
        if (pass == 0)
            printf("# %s T %lld S %lld d %lld dv %lld causal %d amp %g: out %.3g lse %.3g\n", ks->name, (long long)c->T,
                   (long long)c->S, (long long)c->d, (long long)c->dv, c->causal, (double)qamp, eo, el);
        LX_TEST_REPORT_(ok && stray == 0 && eo <= (qamp > 1.0f ? 2e-5 : 2e-6) && el <= 1e-6,
                        "%s T %lld S %lld H %lld G %lld d %lld dv %lld causal %d scale %g jobs of %lld: ok %d, stray writes %lld, out err %.3g, lse err %.3g",
                        ks->name, (long long)c->T, (long long)c->S, (long long)c->H, (long long)c->G, (long long)c->d,
                        (long long)c->dv, c->causal, (double)c->scale, (long long)blk, ok, (long long)stray, eo, el);
    }
    free(q), free(k), free(v), free(outg), free(lseg), free(ro), free(rl);
}

static void check_case(const kernel_set *ks, const fcase *c, float qamp) { check_case_blk(ks, c, qamp, 48, false); }

static void test_flash_values(const kernel_set *ks) {
    const fcase cases[] = {
        {.T = 37, .S = 37, .H = 4, .G = 2, .d = 16, .dv = 16, .causal = true},
        {.T = 37, .S = 53, .H = 4, .G = 2, .d = 16, .dv = 8, .causal = false},
        {.T = 100, .S = 75, .H = 2, .G = 1, .d = 32, .dv = 24, .causal = true},
        {.T = 29, .S = 67, .H = 3, .G = 3, .d = 8, .dv = 5, .causal = false, .scale = 0.3f},
        {.T = 50, .S = 21, .H = 2, .G = 2, .d = 24, .dv = 32, .causal = true},
        {.T = 33, .S = 33, .H = 6, .G = 2, .d = 64, .dv = 64, .causal = true},
        {.T = 17, .S = 41, .H = 2, .G = 1, .d = 128, .dv = 128, .causal = false},
        {.T = 19, .S = 19, .H = 1, .G = 1, .d = 128, .dv = 40, .causal = true, .scale = 0.05f},
        {.T = 23, .S = 23, .H = 2, .G = 1, .d = 3, .dv = 1, .causal = true},
        {.T = 16, .S = 9, .H = 1, .G = 1, .d = 1, .dv = 7, .causal = false},
        {.T = 64, .S = 64, .H = 4, .G = 2, .d = 32, .dv = 32, .causal = true},
        {.T = 24, .S = 24, .H = 2, .G = 1, .d = 32, .dv = 32, .causal = true}, /* 16 + a full half */
        {.T = 41, .S = 30, .H = 3, .G = 1, .d = 16, .dv = 16, .causal = true}, /* keys end inside a tile */
        {.T = 25, .S = 25, .H = 4, .G = 4, .d = 7, .dv = 9, .causal = true},
    };
    /* the 16-row tiles' edges: 1 .. 17 queries (a lone first half, a second half of 1 .. 8 rows, a
     * second tile of one row), causal or not (then more keys than queries, partial key blocks),
     * GQA, depths 16, 32, 64 and odd */
    static const int64_t depths[4] = {16, 32, 64, 5};
    for (int64_t T = 1; T <= 17; T++) {
        const int64_t d = depths[T % 4];
        const fcase ce = {.T = T, .S = T, .H = 4, .G = 2, .d = d, .dv = d, .causal = true};
        const fcase cn = {.T = T, .S = T + 5, .H = 2, .G = 1, .d = d, .dv = T % 2 ? 8 : d, .causal = false};
        check_case(ks, &ce, 1.0f);
        check_case(ks, &cn, 1.0f);
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case(ks, &cases[i], 1.0f);
        /* sharp weights (most of each row's exponents far below 0): logits up to ~30, whose float32
         * rounding alone moves a weight by ~30 * 2^-24 relative (measured up to 6.6e-6) */
        check_case(ks, &cases[i], 8.0f);
    }
    /* tiny, subnormal and signed-zero query entries with Flax's division by sqrt(32) and sqrt(24)
     * (not powers of two), and by sqrt(16) */
    static const int64_t tdepth[3] = {32, 24, 16};
    for (int i = 0; i < 3; i++) {
        const fcase ct = {.T = 40, .S = 40, .H = 2, .G = 1, .d = tdepth[i], .dv = 16, .causal = i != 1};
        check_case_blk(ks, &ct, 1.0f, 48, true);
    }
}

/* inf / NaN in q (a tile's row), k or v (also a value row past the causal front, which the
 * kernel never reads as a weight), and a logit that overflows from finite inputs: the kernel
 * returns false (attention.c then computes the job the general way) */
static void test_flash_declines(const kernel_set *ks) {
    const fcase c = {.T = 40, .S = 40, .H = 2, .G = 1, .d = 16, .dv = 8, .causal = true};
    const int64_t nq = c.T * c.H * c.d, nk = c.S * c.G * c.d, nv = c.S * c.G * c.dv;
    float *q = malloc(sizeof(float) * (size_t)nq), *k = malloc(sizeof(float) * (size_t)nk);
    float *v = malloc(sizeof(float) * (size_t)nv), *out = malloc(sizeof(float) * (size_t)(c.T * c.H * c.dv));
    float *lse = malloc(sizeof(float) * (size_t)(c.H * c.T));
    for (int kind = 0; kind < 7; kind++) {
        for (int64_t i = 0; i < nq; i++) q[i] = frand();
        for (int64_t i = 0; i < nk; i++) k[i] = frand();
        for (int64_t i = 0; i < nv; i++) v[i] = frand();
        const bool clean = run_kernel(ks, &c, q, k, v, 16, out, lse);
        switch (kind) {
        case 0: q[(21 * c.H + 1) * c.d + 3] = NAN; break;
        case 1: q[(39 * c.H + 0) * c.d + 15] = -INFINITY; break;
        case 2: k[(5 * c.G) * c.d + 7] = INFINITY; break;
        case 3: v[(39 * c.G) * c.dv + 7] = INFINITY; break; /* past every tile's front but the last */
        case 4: v[(2 * c.G) * c.dv] = NAN; break;
        case 6: /* equal weights, values near FLT_MAX: the undivided sums of weights times values
                 * overflow although every output (their mean) is finite */
            for (int64_t i = 0; i < nq; i++) q[i] = 0;
            for (int64_t i = 0; i < nk; i++) k[i] = 0;
            for (int64_t i = 0; i < nv; i++) v[i] = 3e38f;
            break;
        default: /* 1e20 * 1e20 + 1e20 * -1e20: inf - inf */
            q[(3 * c.H) * c.d] = q[(3 * c.H) * c.d + 1] = 1e20f;
            for (int64_t e = 2; e < c.d; e++) q[(3 * c.H) * c.d + e] = 0;
            k[0] = 1e20f, k[1] = -1e20f;
            break;
        }
        const bool ok = run_kernel(ks, &c, q, k, v, 16, out, lse);
        LX_TEST_REPORT_(clean && !ok, "%s case %d: clean inputs %d, bad inputs accepted %d", ks->name, kind, clean, ok);
    }
    free(q), free(k), free(v), free(out), free(lse);
}

/* e^(x - sub) by the forward's exp2: close to exp in double (degree-6 polynomial: a few ulp),
 * +0 where the base-2 exponent is below -125 */
static void test_flash_exp(const kernel_set *ks) {
    float row[37], x[37];
    double worst = 0;
    int zero_ok = 1;
    for (int rep = 0; rep < 200; rep++) {
        const float sub = 3.0f * frand();
        for (int i = 0; i < 37; i++) x[i] = row[i] = rep < 100 ? 8.0f * frand() - 4.0f : 100.0f * frand() - 60.0f;
        ks->exp(row, 37, sub);
        for (int i = 0; i < 37; i++) {
            const double arg = ((double)x[i] - sub), r = exp(arg);
            /* the kernel's argument is fma(x, log2 e, -sub log2 e) in float32: relative error
             * up to ~|arg| * 2^-24 from that rounding */
            if (arg * 1.4426950408889634 < -125.5) zero_ok &= row[i] == 0.0f;
            else if (arg * 1.4426950408889634 > -124.5) {
                const double e = fabs(row[i] - r) / r / (1 + fabs(arg));
                worst = e > worst ? e : worst;
            }
        }
    }
    LX_TEST_REPORT_(worst < 4e-7 && zero_ok, "%s exp rows: worst relative error %.3g, zeros %d", ks->name, worst, zero_ok);
    /* past float's range: inf (AVX-512's vscalefps overflow); +inf: NaN; -inf, NaN: +0 */
    float big[4] = {200.0f, INFINITY, -INFINITY, NAN};
    ks->exp(big, 4, 0.0f);
    LX_TEST_REPORT_(big[0] == INFINITY && isnan(big[1]) && big[2] == 0.0f && !signbit(big[2]) && big[3] == 0.0f,
                    "%s exp of 200, inf, -inf, NaN: %g %g %g %g", ks->name, (double)big[0], (double)big[1], (double)big[2],
                    (double)big[3]);
    /* 2^x for x in [127.5, 128) (n = 128, the polynomial below 1) is finite, as vscalefps gives it;
     * e^88.5 = 2.72e38 */
    float edge[2] = {88.5f, 88.7f};
    ks->exp(edge, 2, 0.0f);
    LX_TEST_REPORT_(isfinite(edge[0]) && fabs(edge[0] / exp(88.5) - 1) < 1e-5 && isfinite(edge[1]) &&
                        fabs(edge[1] / exp(88.7) - 1) < 1e-5,
                    "%s exp of 88.5, 88.7: %g %g", ks->name, (double)edge[0], (double)edge[1]);
}

/* n floats ending right before an unreadable page (and the mapping's size, for munmap) */
static float *page_end(int64_t n, size_t *len) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = sizeof(float) * (size_t)n;
    const size_t span = (bytes + page - 1) / page * page;
    char *map = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return NULL;
    if (mprotect(map + span, page, PROT_NONE) != 0) return munmap(map, span + page), NULL;
    *len = span + page;
    return (float *)(map + span - bytes);
}
static void page_free(float *p, int64_t n, size_t len) {
    munmap((char *)(p + n) - (len - (size_t)sysconf(_SC_PAGESIZE)), len);
}

/* The forward, the exp rows and (AVX2) the backward's ds rows with every input and output ending
 * right before an unreadable page: ragged depths and key / query counts (the edge loads read only
 * the n floats asked for; AVX2 does them by plain loads), the same bits as on buffers with room
 * after them. */
static void test_flash_page_edges(const kernel_set *ks) {
    const fcase cases[] = {{.T = 9, .S = 9, .H = 1, .G = 1, .d = 5, .dv = 13, .causal = true},
                           {.T = 21, .S = 21, .H = 1, .G = 1, .d = 19, .dv = 3, .causal = false},
                           {.T = 13, .S = 7, .H = 1, .G = 1, .d = 12, .dv = 12, .causal = true},
                           {.T = 3, .S = 30, .H = 1, .G = 1, .d = 1, .dv = 7, .causal = false}};
    int64_t differ = 0, faults = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const fcase *c = &cases[ci];
        const int64_t n[5] = {c->T * c->d, c->S * c->d, c->S * c->dv, c->T * c->dv, c->T};
        float *e[5], *m[5];
        size_t len[5] = {0};
        for (int j = 0; j < 5; j++) {
            e[j] = page_end(n[j], &len[j]), m[j] = malloc(sizeof(float) * (size_t)(n[j] + 16));
            faults += !e[j];
            if (!e[j]) return;
            for (int64_t i = 0; i < n[j]; i++) e[j][i] = m[j][i] = j < 3 ? frand() : SENTINEL;
        }
        const int64_t blk = (c->T + 15) / 16 * 16;
        bool ok = run_head(ks, c, e[0], e[1], e[2], blk, 0, e[3], e[4], NULL);
        ok &= run_head(ks, c, m[0], m[1], m[2], blk, 0, m[3], m[4], NULL);
        CHECK(ok);
        for (int j = 3; j < 5; j++) differ += memcmp(e[j], m[j], sizeof(float) * (size_t)n[j]) != 0;
        for (int j = 0; j < 5; j++) page_free(e[j], n[j], len[j]), free(m[j]);
    }
    lx_attn_ds_fn ds = ks->isa == LX_ISA_AVX2 ? lx_attn_ds_avx2() : NULL;
    for (int64_t cols = 1; cols <= 20; cols++) {
        size_t l0 = 0, l1 = 0, l2 = 0;
        float *row = page_end(cols, &l0), *pr = page_end(cols, &l1), *dsr = page_end(cols, &l2);
        float *mr = malloc(sizeof(float) * (size_t)(cols + 16)), *mp = malloc(sizeof(float) * (size_t)(cols + 16));
        float *mds = malloc(sizeof(float) * (size_t)(cols + 16));
        faults += !row || !pr || !dsr;
        if (!row || !pr || !dsr) return;
        for (int64_t i = 0; i < cols; i++) row[i] = mr[i] = 4.0f * frand(), pr[i] = mp[i] = frand();
        ks->exp(row, cols, 0.5f);
        ks->exp(mr, cols, 0.5f);
        differ += memcmp(row, mr, sizeof(float) * (size_t)cols) != 0;
        if (ds) { /* p = the exp row, dp = pr; lim = cols - 1: the last entry is written as 0 */
            ds(row, pr, dsr, cols, cols - 1, cols);
            ds(mr, mp, mds, cols, cols - 1, cols);
            differ += memcmp(dsr, mds, sizeof(float) * (size_t)cols) != 0 || dsr[cols - 1] != 0.0f;
        }
        page_free(row, cols, l0), page_free(pr, cols, l1), page_free(dsr, cols, l2);
        free(mr), free(mp), free(mds);
    }
    LX_TEST_REPORT_(differ == 0 && faults == 0, "%s rows ending at an unreadable page: %lld differ, %lld maps failed",
                    ks->name, (long long)differ, (long long)faults);
}

/* AVX-512 and AVX2 give the same weights: their exp2 are one algorithm (only where both run) */
static void test_exp_bits_agree(const kernel_set *a, const kernel_set *b) {
    float ra[64], rb[64];
    int same = 1;
    for (int rep = 0; rep < 400; rep++) {
        const float sub = 10.0f * frand();
        for (int i = 0; i < 64; i++) ra[i] = rb[i] = (rep % 2 ? 100.0f : 10.0f) * frand() - (rep % 4 ? 0.0f : 80.0f);
        if (rep == 0) ra[5] = rb[5] = -INFINITY, ra[6] = rb[6] = NAN;
        a->exp(ra, 64, sub), b->exp(rb, 64, sub);
        same &= memcmp(ra, rb, sizeof ra) == 0;
    }
    LX_TEST_REPORT_(same, "%s and %s exp rows differ", a->name, b->name);
}


/* The AVX2 kernel's causal tiles split their key blocks at half 0's end (t0 + 16 i + 8), so t0
 * must be a multiple of 8 there: jobs starting at multiples of 8 that are not multiples of 16
 * give the right rows, any other causal t0 is declined before a write (attention_internal.h) */
static void test_flash_t0(const kernel_set *ks) {
    const fcase c8 = {.T = 61, .S = 61, .H = 2, .G = 1, .d = 32, .dv = 24, .causal = true};
    check_case_blk(ks, &c8, 1.0f, 24, false);
    const fcase c8b = {.T = 45, .S = 45, .H = 2, .G = 2, .d = 16, .dv = 16, .causal = true};
    check_case_blk(ks, &c8b, 1.0f, 8, false);
    const fcase c = {.T = 40, .S = 40, .H = 1, .G = 1, .d = 16, .dv = 16, .causal = true};
    const lx_flash_args a = {.S = c.S, .d = c.d, .dv = c.dv, .ldq = c.d, .ldk = c.d, .ldv = c.dv, .ldo = c.dv,
                             .qdiv = 4.0f, .qmul = 1.44269504088896341f, .causal = true};
    float q[40 * 16], k[40 * 16], v[40 * 16], out[40 * 16], lse[40];
    float *scratch = malloc(sizeof(float) * (size_t)lx_flash_scratch(&a));
    for (int i = 0; i < 40 * 16; i++) q[i] = frand(), k[i] = frand(), v[i] = frand(), out[i] = SENTINEL;
    for (int i = 0; i < 40; i++) lse[i] = SENTINEL;
    static const int64_t t0s[3] = {4, 12, 1};
    for (int i = 0; i < 3; i++) {
        const bool ok = ks->fwd(&a, q, k, v, t0s[i], 16, out, lse, scratch);
        int64_t touched = 0;
        for (int j = 0; j < 40 * 16; j++) touched += out[j] != SENTINEL;
        for (int j = 0; j < 40; j++) touched += lse[j] != SENTINEL;
        LX_TEST_REPORT_(!ok && touched == 0, "%s causal t0 %lld: accepted %d, %lld entries written", ks->name,
                        (long long)t0s[i], ok, (long long)touched);
    }
    free(scratch);
}

/* The fused backward called directly (lx_flash_bwd_fn: one call per kv head), from the fused
 * forward's output and log-sum-exp, against a double-precision backward written here (P from the
 * logits in double, dV = P^T dO, dS = P (dP - rowsum(P dP)), dQ = sc dS K, dK = sc dS^T Q): odd
 * depths across the 8- and 16-column edges, GQA 3 and 1, ragged tiles, fewer and more keys than
 * queries, depths 1 and 128. Each kv head's call runs into buffers of sentinels with guards and
 * must write every row of its dq heads, dk and dv and nothing else (checked after each call);
 * the scratch starts as NaN and, in a second run, as other garbage: the same bits both times.
 * Where the kernel set is the one in force, the public value_and_grad (which runs this kernel
 * after the fused forward) gives the same bits. */
static void test_flash_bwd(const kernel_set *ks) {
    const fcase cases[] = {
        {.T = 64, .S = 64, .H = 4, .G = 4, .d = 32, .dv = 32, .causal = true}, /* lm_train's */
        {.T = 37, .S = 37, .H = 6, .G = 2, .d = 19, .dv = 23, .causal = true},
        {.T = 20, .S = 61, .H = 2, .G = 1, .d = 80, .dv = 48, .causal = false, .scale = 0.1f},
        {.T = 50, .S = 21, .H = 2, .G = 2, .d = 16, .dv = 16, .causal = true},
        {.T = 17, .S = 17, .H = 1, .G = 1, .d = 1, .dv = 3, .causal = true},
        {.T = 26, .S = 26, .H = 2, .G = 1, .d = 128, .dv = 64, .causal = true},
        {.T = 41, .S = 13, .H = 4, .G = 1, .d = 8, .dv = 8, .causal = false},
        {.T = 33, .S = 50, .H = 4, .G = 2, .d = 32, .dv = 20, .causal = false},
        /* causal with keys past every query: their dK / dV rows are written as zeros */
        {.T = 20, .S = 45, .H = 2, .G = 1, .d = 24, .dv = 16, .causal = true},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const fcase *c = &cases[ci];
        const int64_t T = c->T, S = c->S, H = c->H, G = c->G, d = c->d, dv = c->dv, R = H / G;
        const int64_t nq = T * H * d, nk = S * G * d, nv = S * G * dv, no = T * H * dv;
        float *q = malloc(sizeof(float) * (size_t)nq), *k = malloc(sizeof(float) * (size_t)nk);
        float *v = malloc(sizeof(float) * (size_t)nv), *o = malloc(sizeof(float) * (size_t)no);
        float *go = malloc(sizeof(float) * (size_t)no), *lse = malloc(sizeof(float) * (size_t)(H * T));
        for (int64_t i = 0; i < nq; i++) q[i] = frand();
        for (int64_t i = 0; i < nk; i++) k[i] = frand();
        for (int64_t i = 0; i < nv; i++) v[i] = frand();
        for (int64_t i = 0; i < no; i++) go[i] = frand();
        bool fok = true;
        for (int64_t h = 0; h < H; h++) fok &= run_head(ks, c, q, k, v, (T + 15) / 16 * 16, h, o, lse, NULL);
        const float sc = c->scale == 0.0f ? 1.0f / sqrtf((float)d) : c->scale;
        const lx_flash_bwd_args a = {.T = T, .S = S, .d = d, .dv = dv, .R = R, .ldq = H * d, .ldk = G * d,
                                     .ldv = G * dv, .ldo = H * dv, .sc = sc, .causal = c->causal};
        const int64_t nsc = lx_flash_bwd_scratch(&a);
        float *scratch = malloc(sizeof(float) * (size_t)nsc);
        float *g[2][3];
        const int64_t n3[3] = {nq, nk, nv};
        int64_t stray = 0;
        for (int run = 0; run < 2; run++) {
            for (int64_t i = 0; i < nsc; i++) scratch[i] = run == 0 ? NAN : (i % 3 ? 1e30f : -7.0f);
            for (int j = 0; j < 3; j++) {
                g[run][j] = malloc(sizeof(float) * (size_t)(n3[j] + 2 * GUARD));
                for (int64_t i = 0; i < n3[j] + 2 * GUARD; i++) g[run][j][i] = SENTINEL;
            }
            float *dq = g[run][0] + GUARD, *dk = g[run][1] + GUARD, *dvv = g[run][2] + GUARD;
            for (int64_t gg = 0; gg < G; gg++) {
                ks->bwd(&a, q + gg * R * d, k + gg * d, v + gg * dv, o + gg * R * dv, go + gg * R * dv,
                        lse + gg * R * T, dq + gg * R * d, dk + gg * d, dvv + gg * dv, scratch);
                /* written: the heads of kv heads <= gg; untouched: the later ones and the guards */
                for (int j = 0; j < 3; j++) {
                    const int64_t rows = j == 0 ? T * H : S * G, w = j == 0 ? d : j == 1 ? d : dv;
                    const int64_t per = j == 0 ? R : 1; /* heads per kv head in this array */
                    for (int64_t r = 0; r < rows; r++) {
                        const int64_t head = r % (j == 0 ? H : G), grp = head / per;
                        for (int64_t e = 0; e < w; e++) {
                            const float x = g[run][j][GUARD + r * w + e];
                            stray += grp <= gg ? x == SENTINEL : x != SENTINEL;
                        }
                    }
                    for (int64_t i = 0; i < GUARD; i++)
                        stray += (g[run][j][i] != SENTINEL) + (g[run][j][GUARD + n3[j] + i] != SENTINEL);
                }
            }
        }
        int same = 1;
        for (int j = 0; j < 3; j++) same &= memcmp(g[0][j] + GUARD, g[1][j] + GUARD, sizeof(float) * (size_t)n3[j]) == 0;
        /* the double backward */
        double *rq = calloc((size_t)nq, sizeof(double)), *rk = calloc((size_t)nk, sizeof(double));
        double *rv = calloc((size_t)nv, sizeof(double)), *P = malloc(sizeof(double) * (size_t)S);
        double *dP = malloc(sizeof(double) * (size_t)S);
        for (int64_t h = 0; h < H; h++) {
            const int64_t gg = h / R;
            for (int64_t t = 0; t < T; t++) {
                const int64_t ns = c->causal && t + 1 < S ? t + 1 : S;
                const float *qr = q + (t * H + h) * d, *gr = go + (t * H + h) * dv;
                double mx = -INFINITY, sum = 0, dot = 0;
                for (int64_t s = 0; s < ns; s++) {
                    double l = 0;
                    for (int64_t e = 0; e < d; e++) l += (double)qr[e] * k[(s * G + gg) * d + e];
                    P[s] = l * sc;
                    mx = fmax(mx, P[s]);
                }
                for (int64_t s = 0; s < ns; s++) sum += P[s] = exp(P[s] - mx);
                for (int64_t s = 0; s < ns; s++) {
                    P[s] /= sum;
                    double x = 0;
                    for (int64_t e = 0; e < dv; e++) x += (double)gr[e] * v[(s * G + gg) * dv + e];
                    dP[s] = x;
                    dot += P[s] * x;
                }
                for (int64_t s = 0; s < ns; s++) {
                    const double ds = P[s] * (dP[s] - dot);
                    for (int64_t e = 0; e < d; e++) {
                        rq[(t * H + h) * d + e] += sc * ds * k[(s * G + gg) * d + e];
                        rk[(s * G + gg) * d + e] += sc * ds * qr[e];
                    }
                    for (int64_t e = 0; e < dv; e++) rv[(s * G + gg) * dv + e] += P[s] * gr[e];
                }
            }
        }
        double err[3];
        const double *ref[3] = {rq, rk, rv};
        for (int j = 0; j < 3; j++) {
            double m = 0, e = 0;
            for (int64_t i = 0; i < n3[j]; i++) m = fmax(m, fabs(ref[j][i]));
            for (int64_t i = 0; i < n3[j]; i++) {
                const double x = fabs(g[0][j][GUARD + i] - ref[j][i]);
                e = x > e || isnan(x) ? x : e;
            }
            err[j] = e / (1 + m);
        }
        printf("# %s bwd T %lld S %lld H %lld G %lld d %lld dv %lld causal %d: dq %.3g dk %.3g dv %.3g\n", ks->name,
               (long long)T, (long long)S, (long long)H, (long long)G, (long long)d, (long long)dv, c->causal, err[0],
               err[1], err[2]);
        LX_TEST_REPORT_(fok && stray == 0 && same && err[0] <= 2e-5 && err[1] <= 2e-5 && err[2] <= 2e-5,
                        "%s bwd T %lld S %lld H %lld G %lld d %lld dv %lld causal %d: forward ok %d, stray %lld, same bits %d, dq %.3g dk %.3g dv %.3g",
                        ks->name, (long long)T, (long long)S, (long long)H, (long long)G, (long long)d, (long long)dv,
                        c->causal, fok, (long long)stray, same, err[0], err[1], err[2]);
        /* the public backward (attention_vjp) where this set is in force: the same bits (jobs of
         * 128 rows in the forward, as run_head's one job here; dO = W for the loss sum(out W)) */
        if (lx_isa_current() == ks->isa) {
            size_t mark = lx_pool_open();
            lx_array *x[3] = {lx_array_new(LX_F32, 4, (int64_t[]){1, T, H, d}), lx_array_new(LX_F32, 4, (int64_t[]){1, S, G, d}),
                              lx_array_new(LX_F32, 4, (int64_t[]){1, S, G, dv})};
            bwd_w = lx_array_new(LX_F32, 4, (int64_t[]){1, T, H, dv});
            memcpy(lx_f32(x[0]), q, sizeof(float) * (size_t)nq), memcpy(lx_f32(x[1]), k, sizeof(float) * (size_t)nk);
            memcpy(lx_f32(x[2]), v, sizeof(float) * (size_t)nv), memcpy(lx_f32(bwd_w), go, sizeof(float) * (size_t)no);
            lx_array *val = NULL, *gr[3] = {0};
            fcase cc = *c;
            const lx_status st = lx_value_and_grad(bwd_loss, &cc, 3, x, &val, gr);
            int api_same = st == LX_OK;
            for (int j = 0; api_same && j < 3; j++)
                api_same = memcmp(lx_f32(gr[j]), g[0][j] + GUARD, sizeof(float) * (size_t)n3[j]) == 0;
            LX_TEST_REPORT_(api_same, "%s bwd T %lld d %lld: value_and_grad's gradients differ from the direct calls (status %d)",
                            ks->name, (long long)T, (long long)d, (int)st);
            lx_release(val);
            for (int j = 0; j < 3; j++) lx_release(gr[j]), lx_release(x[j]);
            lx_release(bwd_w);
            lx_pool_close(mark);
        }
        for (int run = 0; run < 2; run++)
            for (int j = 0; j < 3; j++) free(g[run][j]);
        free(q), free(k), free(v), free(o), free(go), free(lse), free(scratch);
        free(rq), free(rk), free(rv), free(P), free(dP);
    }
}

static void test_flash(void) {
    kernel_set sets[2];
    int n = 0;
    if (lx_isa_supported(LX_ISA_AVX2) && lx_flash_fwd_avx2())
        sets[n++] = (kernel_set){"avx2", lx_flash_fwd_avx2(), lx_flash_exp_avx2(), lx_flash_bwd_avx2(), LX_ISA_AVX2};
    if (lx_isa_supported(LX_ISA_AVX512) && lx_flash_fwd_avx512())
        sets[n++] = (kernel_set){"avx512", lx_flash_fwd_avx512(), lx_flash_exp_avx512(), lx_flash_bwd_avx512(),
                                 LX_ISA_AVX512};
    printf("# fused attention kernels this CPU runs: %d\n", n);
    for (int i = 0; i < n; i++) {
        test_flash_values(&sets[i]);
        test_flash_declines(&sets[i]);
        test_flash_exp(&sets[i]);
        test_flash_bwd(&sets[i]);
        test_flash_page_edges(&sets[i]);
        if (sets[i].isa == LX_ISA_AVX2) test_flash_t0(&sets[i]); /* the AVX-512 kernel does not check */
    }
    if (n == 2) test_exp_bits_agree(&sets[0], &sets[1]);
    CHECK(n >= 0);
}

int main(void) {
    RUN(test_flash);
    return lx_test_finish();
}
