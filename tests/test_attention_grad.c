/* The attention backward at sizes that span several of its ATT_BLK (32) row blocks with ragged
 * edges, against a double-precision reference written here: P = softmax(masked(scale q k^T +
 * bias)) with Flax's masking (float32's lowest value), dV = P^T dO, dP = dO V^T,
 * dS = P (dP - rowsum(P dP)) where not masked, dQ = scale dS K, dK = scale dS^T Q, dbias = dS.
 * Cases: causal with GQA (the causal block skipping; with AVX-512 or AVX2 the fused forward and
 * backward from its log-sum-exp), causal with more keys than queries, causal
 * with a value row of inf past the diagonal (dO V^T then has inf / NaN there and the row sums must
 * see it: the gradients of q and k are NaN, as JAX's are), a row whose logits are all -inf
 * (weights spread over the masked keys, so nothing may be skipped), and a boolean mask with bias
 * and an explicit scale; then the fused backward's cases (odd depths, GQA, ragged tiles, more and
 * fewer keys than queries) and its fallbacks. Registered again under each LINNX_ISA. The loss is
 * sum(out * W) for a fixed W, so dO = W. */
#include <float.h>
#include <math.h>

#include "linnx/autodiff.h"
#include "linnx/nn.h"
#include "lx_test.h"

static uint32_t rng = 7;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

typedef struct {
    int64_t B, T, S, H, G, D, Dv;
    bool causal;
    float scale; /* 0: Flax's 1/sqrt(D) on q */
    bool has_bias, has_mask;
    lx_array *w; /* dO */
    lx_array *mask;
} att_case;

static lx_status loss_fn(int n, lx_array *const *xs, void *user, lx_array **loss) {
    att_case *c = user;
    lx_array *o = lx_dot_product_attention(xs[0], xs[1], xs[2], n > 3 ? xs[3] : NULL, c->mask, c->causal, c->scale);
    *loss = lx_sum(lx_mul(o, c->w), 0, NULL, false);
    return *loss ? LX_OK : lx_last_status();
}

static lx_array *rand_arr(int ndim, const int64_t *shape) {
    lx_array *a = lx_array_new(LX_F32, ndim, shape);
    for (int64_t i = 0; a && i < a->size; i++) lx_f32(a)[i] = frand();
    return a;
}

/* max |got - want| / (1 + max |want|) over n values; NaN where exactly one of them is NaN */
static double rel_err(const float *got, const double *want, int64_t n) {
    double m = 0, e = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i]) != isnan(got[i])) return NAN;
        if (!isnan(want[i])) e = fmax(e, fabs(got[i] - want[i]));
    }
    return e / (1 + m);
}

static void run_case(const char *name, att_case *c, void (*tweak)(att_case *, lx_array **)) {
    lx_test_current = name;
    size_t mark = lx_pool_open();
    int64_t B = c->B, T = c->T, S = c->S, H = c->H, G = c->G, D = c->D, Dv = c->Dv, R = H / G;
    lx_array *x[4] = {rand_arr(4, (int64_t[]){B, T, H, D}), rand_arr(4, (int64_t[]){B, S, G, D}),
                      rand_arr(4, (int64_t[]){B, S, G, Dv}), c->has_bias ? rand_arr(4, (int64_t[]){B, H, T, S}) : NULL};
    c->w = rand_arr(4, (int64_t[]){B, T, H, Dv});
    c->mask = NULL;
    if (c->has_mask) {
        c->mask = lx_array_new(LX_BOOL, 2, (int64_t[]){T, S});
        for (int64_t i = 0; i < T * S; i++) lx_bool(c->mask)[i] = (i * 7 + 3) % 5 != 0;
    }
    if (tweak) tweak(c, x);
    int nx = c->has_bias ? 4 : 3;
    lx_array *val = NULL, *gr[4] = {0};
    CHECK_EQ_INT(lx_value_and_grad(loss_fn, c, nx, x, &val, gr), LX_OK);
    if (!gr[0]) goto done;
    const float *Q = lx_f32(x[0]), *K = lx_f32(x[1]), *V = lx_f32(x[2]), *BI = c->has_bias ? lx_f32(x[3]) : NULL;
    const float *W = lx_f32(c->w);
    const double sc = c->scale == 0 ? 1 / sqrt((double)D) : c->scale;
    double *dq = calloc((size_t)(B * T * H * D), sizeof(double)), *dk = calloc((size_t)(B * S * G * D), sizeof(double));
    double *dv = calloc((size_t)(B * S * G * Dv), sizeof(double)), *db = calloc((size_t)(B * H * T * S), sizeof(double));
    double *P = malloc(sizeof(double) * (size_t)S), *dP = malloc(sizeof(double) * (size_t)S);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / R;
            for (int64_t t = 0; t < T; t++) {
                const float *qr = Q + ((b * T + t) * H + h) * D, *wr = W + ((b * T + t) * H + h) * Dv;
                double mx = -INFINITY, sum = 0, dot = 0;
                for (int64_t s = 0; s < S; s++) {
                    const float *kr = K + ((b * S + s) * G + g) * D;
                    double l = 0;
                    for (int64_t e = 0; e < D; e++) l += (double)qr[e] * kr[e];
                    l *= sc;
                    if (BI) l += BI[((b * H + h) * T + t) * S + s];
                    bool masked = (c->mask && !lx_bool(c->mask)[t * S + s]) || (c->causal && s > t);
                    P[s] = masked ? -FLT_MAX : l;
                    mx = fmax(mx, P[s]);
                }
                for (int64_t s = 0; s < S; s++) sum += P[s] = exp(P[s] - mx);
                for (int64_t s = 0; s < S; s++) {
                    P[s] /= sum;
                    const float *vr = V + ((b * S + s) * G + g) * Dv;
                    double a = 0;
                    for (int64_t e = 0; e < Dv; e++) a += (double)wr[e] * vr[e];
                    dP[s] = a;
                    dot += P[s] * a;
                }
                for (int64_t s = 0; s < S; s++) {
                    bool masked = (c->mask && !lx_bool(c->mask)[t * S + s]) || (c->causal && s > t);
                    double ds = masked ? 0 : P[s] * (dP[s] - dot);
                    db[((b * H + h) * T + t) * S + s] = ds;
                    const float *kr = K + ((b * S + s) * G + g) * D;
                    for (int64_t e = 0; e < D; e++) {
                        dq[((b * T + t) * H + h) * D + e] += sc * ds * kr[e];
                        dk[((b * S + s) * G + g) * D + e] += sc * ds * qr[e];
                    }
                    for (int64_t e = 0; e < Dv; e++) dv[((b * S + s) * G + g) * Dv + e] += P[s] * wr[e];
                }
            }
        }
    double eq = rel_err(lx_f32(gr[0]), dq, B * T * H * D), ek = rel_err(lx_f32(gr[1]), dk, B * S * G * D);
    double ev = rel_err(lx_f32(gr[2]), dv, B * S * G * Dv), eb = BI ? rel_err(lx_f32(gr[3]), db, B * H * T * S) : 0;
    printf("# %s: dq %.3g dk %.3g dv %.3g db %.3g\n", name, eq, ek, ev, eb);
    LX_TEST_REPORT_(eq <= 2e-5 && ek <= 2e-5 && ev <= 2e-5 && eb <= 2e-5, "dq %.3g dk %.3g dv %.3g dbias %.3g", eq, ek,
                    ev, eb);
    free(dq), free(dk), free(dv), free(db), free(P), free(dP);
done:
    lx_release(val);
    for (int i = 0; i < 4; i++) lx_release(gr[i]), lx_release(x[i]);
    lx_release(c->w);
    lx_release(c->mask);
    lx_pool_close(mark);
}

static void inf_value_row(att_case *c, lx_array **x) { /* value row 50 of batch 1, kv head 0: inf */
    for (int64_t e = 0; e < c->Dv; e++) lx_f32(x[2])[((1 * c->S + 50) * c->G + 0) * c->Dv + e] = INFINITY;
}

static void minus_inf_row(att_case *c, lx_array **x) { /* bias row t = 5 of (0, 0): -inf everywhere */
    for (int64_t s = 0; s < c->S; s++) lx_f32(x[3])[(0 * c->T + 5) * c->S + s] = -INFINITY;
}

static void test_attention_grad(void) {
    att_case c1 = {.B = 2, .T = 70, .S = 70, .H = 4, .G = 2, .D = 16, .Dv = 8, .causal = true};
    run_case("causal_gqa", &c1, NULL);
    att_case c2 = {.B = 1, .T = 40, .S = 72, .H = 2, .G = 1, .D = 8, .Dv = 12, .causal = true};
    run_case("causal_more_keys", &c2, NULL);
    att_case c3 = {.B = 2, .T = 64, .S = 64, .H = 2, .G = 2, .D = 8, .Dv = 8, .causal = true};
    run_case("causal_inf_value", &c3, inf_value_row);
    att_case c4 = {.B = 1, .T = 48, .S = 48, .H = 2, .G = 1, .D = 8, .Dv = 8, .causal = true, .has_bias = true};
    run_case("causal_all_minus_inf_row", &c4, minus_inf_row);
    att_case c5 = {.B = 2, .T = 40, .S = 36, .H = 3, .G = 3, .D = 8, .Dv = 5, .scale = 0.3f, .has_bias = true,
                   .has_mask = true};
    run_case("mask_bias_scale", &c5, NULL);
    /* no bias or mask (the fused forward where the kernel set has one, keeping the log-sum-exp):
     * not causal, more keys than queries; lm_train's depth 32 with an explicit scale */
    att_case c6 = {.B = 1, .T = 33, .S = 50, .H = 4, .G = 2, .D = 32, .Dv = 20};
    run_case("plain_gqa_depth32", &c6, NULL);
    att_case c7 = {.B = 2, .T = 64, .S = 64, .H = 4, .G = 4, .D = 32, .Dv = 32, .causal = true, .scale = 0.2f};
    run_case("causal_depth32_scale", &c7, NULL);
    /* the fused backward (AVX-512 or AVX2 after the fused forward): odd depths across a 16-column edge with
     * three query heads per kv head, Flax's scaling at a depth that is not a power of two, the
     * widest packing stride (depth 80) with more keys than queries, fewer keys than causal queries
     * (keys past the last query get zero gradients), and a single ragged tile */
    att_case c8 = {.B = 2, .T = 37, .S = 37, .H = 6, .G = 2, .D = 19, .Dv = 23, .causal = true};
    run_case("causal_gqa3_odd_depth", &c8, NULL);
    att_case c9 = {.B = 1, .T = 45, .S = 45, .H = 2, .G = 1, .D = 24, .Dv = 24, .causal = true};
    run_case("causal_flax_depth24", &c9, NULL);
    att_case c10 = {.B = 1, .T = 20, .S = 61, .H = 2, .G = 1, .D = 80, .Dv = 48, .scale = 0.1f};
    run_case("plain_depth80_more_keys", &c10, NULL);
    att_case c11 = {.B = 1, .T = 50, .S = 21, .H = 2, .G = 2, .D = 16, .Dv = 16, .causal = true};
    run_case("causal_fewer_keys", &c11, NULL);
    att_case c12 = {.B = 3, .T = 17, .S = 17, .H = 1, .G = 1, .D = 1, .Dv = 3, .causal = true};
    run_case("causal_depth1_one_tile", &c12, NULL);
    /* the widest depth the fused kernels take (128) with a value depth of 64; depth 8 (one AVX2
     * column block) with four query heads per kv head, not causal, fewer keys than queries */
    att_case c15 = {.B = 1, .T = 26, .S = 26, .H = 2, .G = 1, .D = 128, .Dv = 64, .causal = true};
    run_case("causal_depth128", &c15, NULL);
    att_case c16 = {.B = 2, .T = 41, .S = 13, .H = 4, .G = 1, .D = 8, .Dv = 8};
    run_case("plain_gqa4_depth8_fewer_keys", &c16, NULL);
    /* fallbacks to the GEMM backward: fewer than 16 queries (no fused forward), depth past 128 */
    att_case c13 = {.B = 1, .T = 9, .S = 30, .H = 2, .G = 1, .D = 16, .Dv = 16, .causal = true};
    run_case("causal_short_general", &c13, NULL);
    att_case c14 = {.B = 1, .T = 20, .S = 20, .H = 1, .G = 1, .D = 130, .Dv = 8, .causal = true};
    run_case("causal_depth130_general", &c14, NULL);
}

int main(void) {
    RUN(test_attention_grad);
    return lx_test_finish();
}
