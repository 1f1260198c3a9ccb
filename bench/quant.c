/* int8 GEMM against the float32 GEMM at n = 1024, both measured in this run (issue 13):
 *   matmul_int8_1024 vs_f32 <int8 time / f32 time>   (want <= 0.33)
 * The int8 time is the packed kernel (C int32 = A int8 . B int8, the weights quantized and packed
 * once, as a PTQ session does on its first call); the f32 time is lx_matmul.
 *   llama_decode_int8 vs_f32 <PTQ decode time per token / float32>   (want <= 0.5)
 * The PTQ model (llama_model_quantize) in one session begun before the timed runs.
 *   llama_ptq heldout_loss_rel_diff <|PTQ - f32| / f32>   (want < 0.02)
 *   llama_ptq layer <path>:<op> rel_err <||y_int8 - y|| / ||y||>
 * The showcase decoder trained for a short deterministic run on the showcase data (make demo's:
 * /usr/share/common-licenses, the tail of GPL-3 held out), then PTQ; the per-layer errors are each
 * layer's own (lx_qt_compare_begin: every layer fed the float model's values). */
#include <math.h>
#include <stdio.h>

#include "common.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/linnx.h"
#include "linnx/llama.h"
#include "linnx/llama_quant.h"
#include "linnx/llama_train.h"
#include "linnx/lm_data.h"
#include "linnx/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <string.h>

/* ---- peaks: register-only loops, so the kernels' GMAC/s read against what the units do here ----
 * Ten independent accumulators each (more than latency x ports), no memory traffic. */
#if defined(__x86_64__)
/* ten named accumulators (an array would live in memory); the empty asm keeps each chain */
#define PEAK_BODY(OP)                                                                             \
    for (long i = 0; i < n; i++) {                                                                \
        s0 = OP(s0), s1 = OP(s1), s2 = OP(s2), s3 = OP(s3), s4 = OP(s4);                            \
        s5 = OP(s5), s6 = OP(s6), s7 = OP(s7), s8 = OP(s8), s9 = OP(s9);                            \
        __asm__ volatile("" : "+v"(s0), "+v"(s1), "+v"(s2), "+v"(s3), "+v"(s4), "+v"(s5), "+v"(s6), \
                         "+v"(s7), "+v"(s8), "+v"(s9));                                            \
    }
__attribute__((target("avx512f"), noinline)) static float peak_fma(long n) {
    const __m512 a = _mm512_set1_ps(1e-9f), b = _mm512_set1_ps(1.0f);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0, s8 = s0, s9 = s0;
#define FMA_OP(x) _mm512_fmadd_ps(a, b, x)
    PEAK_BODY(FMA_OP)
#undef FMA_OP
    s0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)),
                       _mm512_add_ps(_mm512_add_ps(s4, s5), _mm512_add_ps(_mm512_add_ps(s6, s7), _mm512_add_ps(s8, s9))));
    return _mm512_reduce_add_ps(s0);
}
__attribute__((target("avx512f,avx512vnni"), noinline)) static int peak_vnni(long n) {
    const __m512i a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x01010101);
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0, s8 = s0, s9 = s0;
#define VNNI_OP(x) _mm512_dpbusd_epi32(x, a, b)
    PEAK_BODY(VNNI_OP)
#undef VNNI_OP
    s0 = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3)),
                          _mm512_add_epi32(_mm512_add_epi32(s4, s5),
                                           _mm512_add_epi32(_mm512_add_epi32(s6, s7), _mm512_add_epi32(s8, s9))));
    return _mm512_reduce_add_epi32(s0);
}
#undef PEAK_BODY
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_cfg;
__attribute__((target("amx-tile,amx-int8"), noinline)) static int peak_amx(long n) {
    static int8_t buf[1024] __attribute__((aligned(64)));
    static int32_t out[256] __attribute__((aligned(64)));
    tile_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, buf, 64);
    _tile_loadd(5, buf, 64);
    _tile_loadd(6, buf, 64);
    _tile_loadd(7, buf, 64);
    for (long i = 0; i < n; i++) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0];
}
#endif

/* Best of `reps` timings of fn (after one warm-up): the least disturbed run on a shared machine. */
static double best_of(void (*fn)(void *), void *ctx, int reps) {
    fn(ctx);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = bench_now();
        fn(ctx);
        t = bench_now() - t;
        best = t < best ? t : best;
    }
    return best;
}

typedef struct {
    int which; /* 0 FMA, 1 vpdpbusd, 2 tdpbssd */
    long n;
    volatile int sink;
} peak_t;
static void run_peak(void *p) {
    peak_t *k = p;
#if defined(__x86_64__)
    k->sink = k->which == 0 ? (int)peak_fma(k->n) : k->which == 1 ? peak_vnni(k->n) : peak_amx(k->n);
#else
    (void)k;
#endif
}
/* MACs per second of peak loop `which` (0 when this CPU lacks it). */
static double peak_rate(int which) {
#if defined(__x86_64__)
    if (which == 2 && lx_i8_kernel_supported(LX_I8_AMX)) {
        /* the OS's permission for the tile data is asked when the library first runs an AMX
         * product (quant.h): run a small one before the raw tile loop (refused: AMX unsupported) */
        int8_t a[64] = {0}, b[16 * 64] = {0};
        int32_t c[16];
        (void)lx_i8_gemm(LX_I8_AMX, 1, 16, 64, a, b, c);
    }
    if ((which == 0 && !__builtin_cpu_supports("avx512f")) || (which == 1 && !lx_i8_kernel_supported(LX_I8_VNNI)) ||
        (which == 2 && !lx_i8_kernel_supported(LX_I8_AMX)))
        return 0;
    peak_t k = {which, which == 2 ? 200000 : 2000000, 0};
    double t = best_of(run_peak, &k, 5);
    return (double)k.n * (which == 0 ? 10.0 * 16 : which == 1 ? 10.0 * 64 : 4.0 * 16 * 16 * 64) / t;
#else
    (void)which;
    return 0;
#endif
}

typedef struct {
    lx_array *a, *b;
    int8_t *qa, *qb;
    int32_t *c;
    int64_t n;
    lx_i8_packed *pk;
} ctx_t;

static void run_f32(void *p) {
    ctx_t *c = p;
    size_t mark = lx_pool_open();
    (void)lx_matmul(c->a, c->b);
    lx_pool_close(mark);
}
typedef struct {
    llama_model *m;
    lx_array *prompt;
} dec_t;

static void run_decode(void *p) {
    dec_t *d = p;
    size_t mark = lx_pool_open();
    lx_sampling greedy = {0, 0};
    if (!llama_generate(d->m, d->prompt, 33, &greedy, lx_key_from_seed(0)))
        fprintf(stderr, "bench quant: %s\n", lx_last_error());
    lx_pool_close(mark);
}

static void run_i8(void *p) {
    ctx_t *c = p;
    (void)lx_i8_gemm(LX_I8_AUTO, c->n, c->n, c->n, c->qa, c->qb, c->c);
}

static void run_i8_packed(void *p) {
    ctx_t *c = p;
    (void)lx_i8_gemm_packed(LX_I8_AUTO, c->n, c->qa, c->pk, c->c);
}

/* One kernel on weights packed for it: M rows of A against a (K, N) weight. */
typedef struct {
    lx_i8_kernel k;
    int64_t M;
    const int8_t *a;
    lx_i8_packed *p;
    int32_t *c;
} kern_t;
static void run_kernel(void *p) {
    kern_t *t = p;
    (void)lx_i8_gemm_packed(t->k, t->M, t->a, t->p, t->c);
}

/* Each int8 kernel the CPU runs, on one thread: the n = 1024 GEMM (GMAC/s and its share of the
 * kernel's own peak) and a decode GEMV (1 x 512 . 512 x 2048, the bench decoder's MLP in). */
static void per_kernel(const int8_t *qa, const int8_t *qb, int64_t n, double fma, double vnni, double amx) {
    int nt = lx_num_threads();
    lx_set_num_threads(1);
    printf("# per kernel, one thread:");
    for (int k = LX_I8_AVX2; k <= LX_I8_AMX; k++) {
        if (!lx_i8_kernel_supported((lx_i8_kernel)k)) continue;
        kern_t t = {(lx_i8_kernel)k, n, qa, NULL, malloc(sizeof(int32_t) * (size_t)(n * n))};
        double pk = k == LX_I8_AMX ? amx : k == LX_I8_VNNI ? vnni : 0, g = 0, v = 0;
        if (lx_i8_pack_for(t.k, n, n, qb, &t.p) == LX_OK) g = (double)(n * n * n) / best_of(run_kernel, &t, 5);
        lx_i8_packed_free(t.p);
        t.M = 1, t.p = NULL;
        if (lx_i8_pack_for(t.k, 512, 2048, qb, &t.p) == LX_OK) v = best_of(run_kernel, &t, 50);
        lx_i8_packed_free(t.p);
        free(t.c);
        printf(" %s GEMM %.0f GMAC/s", lx_i8_kernel_name(t.k), 1e-9 * g);
        if (pk > 0) printf(" (%.2f of its peak)", g / pk);
        printf(", GEMV 1x512x2048 %.1f us;", 1e6 * v);
    }
    printf(" f32 FMA peak %.0f GMAC/s\n", 1e-9 * fma);
    lx_set_num_threads(nt);
}

/* Held-out loss: the mean over `nb` batches of `batch` windows of len bytes. */
static double heldout(llama_model *m, const lm_data *d, int64_t batch, int64_t len, int nb) {
    double tot = 0;
    for (int b = 0; b < nb; b++) {
        size_t mark = lx_pool_open();
        lx_array *l = llama_model_loss(m, lm_window_batch(d->heldout, d->nheldout, b * batch, batch, len));
        tot += l ? lx_f32(l)[0] : NAN;
        lx_pool_close(mark);
    }
    return tot / nb;
}

/* The accuracy lines: train, PTQ, held-out loss and per-layer output error. */
static int ptq_accuracy(void) {
    const char *gpl = "/usr/share/common-licenses/GPL-3", *dir = "/usr/share/common-licenses";
    lm_data d;
    if (lm_data_load(1, &dir, gpl, 0.1, &d) != LX_OK) {
        printf("# llama_ptq: no showcase data (%s)\n", lx_last_error());
        lx_clear_error();
        return 0;
    }
    llama_config cfg = llama_config_tiny(); /* the showcase decoder (make demo's config) */
    cfg.max_target_length = 64;
    const int64_t len = cfg.max_target_length + 1, batch = 8;
    const int steps = 200;
    llama_model *m = NULL;
    llama_trainer *t = NULL;
    llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
    o.steps = steps;
    if (llama_model_new(&cfg, LLAMA_LINEN_TOP, 0, &m) != LX_OK || llama_trainer_new(m, &o, &t) != LX_OK) return 1;
    lx_key key = lx_key_from_seed(0);
    float loss = 0;
    for (int i = 0; i < steps; i++) {
        size_t mark = lx_pool_open();
        lx_status st = llama_trainer_step(t, lm_random_batch(d.train, d.ntrain, lx_key_fold_in(key, (uint32_t)i), batch, len), &loss);
        lx_pool_close(mark);
        if (st != LX_OK) return 1;
    }
    llama_trainer_free(t);
    const int nb = (int)(lm_window_count(d.nheldout, len) / batch); /* every whole batch of the held-out text */
    double hf = heldout(m, &d, batch, len, nb);
    lx_qt_rule rules[] = {
        {.module_path = "decoder/layers_[0-9]+/(mlp|self_attention)/.*", .weight_qtype = "int8", .act_qtype = "int8"},
        {.module_path = "decoder/logits_dense", .weight_qtype = "int8", .act_qtype = "int8"},
    };
    lx_qt_rules *rs = NULL;
    lx_qt_session *s = NULL;
    if (lx_qt_rules_compile(rules, 2, &rs) != LX_OK || lx_qt_compare_begin(rs, &s) != LX_OK) return 1;
    for (int b = 0; b < nb; b++) {
        size_t mark = lx_pool_open();
        (void)llama_model_loss(m, lm_window_batch(d.heldout, d.nheldout, b * batch, batch, len));
        lx_pool_close(mark);
    }
    const lx_qt_layer_error *le = NULL;
    int nl = lx_qt_session_layers(s, &le);
    for (int i = 0; i < nl; i++) printf("llama_ptq layer %s:%s rel_err %.5f\n", le[i].path, le[i].op, le[i].rel_err);
    lx_qt_end(s);
    lx_array *sample = lx_retain(lm_window_batch(d.train, d.ntrain, 0, 2, cfg.max_target_length));
    if (llama_model_quantize(m, rs, sample, NULL) != LX_OK || llama_model_ptq_begin(m, rs, &s) != LX_OK) return 1;
    double hq = heldout(m, &d, batch, len, nb);
    lx_qt_end(s);
    lx_release(sample);
    printf("# showcase decoder (emb %lld, mlp %lld, %lld layers, seq %lld) trained %d steps (batch %lld, last train "
           "loss %.4f) on %lld bytes; held-out %lld windows of GPL-3's tail\n",
           (long long)cfg.emb_dim, (long long)cfg.mlp_dim, (long long)cfg.num_decoder_layers,
           (long long)cfg.max_target_length, steps, (long long)batch, loss, (long long)d.ntrain,
           (long long)(nb * batch));
    printf("llama_ptq heldout_loss_f32 %.5f\n", hf);
    printf("llama_ptq heldout_loss_int8 %.5f\n", hq);
    printf("llama_ptq heldout_loss_rel_diff %.5f\n", fabs(hq - hf) / hf);
    lx_qt_rules_free(rs);
    llama_model_free(m);
    lm_data_free(&d);
    return 0;
}

/* A conv PTQ call (no int8 conv kernel: the stored weight dequantized, then the float conv) against
 * the float conv: once per session (kept) and, as before the cache, once per call. */
typedef struct {
    const linen_module *m;
    const lx_tree *vars;
    lx_array *x;
    const lx_qt_rules *rs;
} conv_t;

static void run_conv(void *p) {
    conv_t *c = p;
    size_t mark = lx_pool_open();
    lx_call call = LX_ARGS(c->x);
    lx_value y;
    if (linen_apply(c->m, c->vars, &call, LINEN_NO_RNGS, NULL, &y, NULL) == LX_OK) lx_value_free(&y);
    lx_pool_close(mark);
}

static void run_conv_session(void *p) { /* a session per call: the weight dequantized every call */
    conv_t *c = p;
    lx_qt_session *s = NULL;
    if (lx_qt_begin_ptq(c->rs, c->vars, &s) != LX_OK) return;
    run_conv(p);
    lx_qt_end(s);
}

static int conv_ptq(void) {
    linen_module *conv = NULL;
    lx_call cc = LX_CALL_ARGS(lx_int_v(128), lx_ints_v(2, (int64_t[]){3, 3}));
    if (linen_module_new(&linen_Conv, &cc, &conv) != LX_OK) return 1;
    lx_array *x = lx_array_full_f32(4, (int64_t[]){1, 8, 8, 128}, 0.5f);
    for (int64_t i = 0; i < x->size; i++) lx_f32(x)[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    lx_call c = LX_ARGS(x);
    lx_tree *vars = NULL, *q = NULL;
    lx_qt_rule rules[] = {{.module_path = ".*", .op_names = "conv_general", .weight_qtype = "int8"}};
    lx_qt_rules *rs = NULL;
    if (linen_init(conv, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &vars) != LX_OK ||
        lx_qt_rules_compile(rules, 1, &rs) != LX_OK || lx_qt_quantize_linen(rs, conv, vars, &c, &q) != LX_OK)
        return 1;
    conv_t f = {conv, vars, x, rs}, p = {conv, q, x, rs};
    double tf = bench_median(run_conv, &f, 2, 9, 5);
    lx_qt_session *s = NULL;
    if (lx_qt_begin_ptq(rs, q, &s) != LX_OK) return 1;
    double tq = bench_median(run_conv, &p, 2, 9, 5);
    lx_qt_end(s);
    double tn = bench_median(run_conv_session, &p, 2, 9, 5);
    printf("# conv 3x3 128->128 on 1x8x8 (weight-only int8 PTQ): f32 %.3g s, PTQ %.3g s (dequantized once per "
           "session), %.3g s (a session per call: dequantized every call)\n", tf, tq, tn);
    printf("conv_ptq_call vs_f32 %.3f\n", tq / tf);
    printf("conv_ptq_call_dequant_each vs_f32 %.3f\n", tn / tf);
    /* weights and activations int8: im2col in int8 and the int8 GEMM (the kernel AUTO picks) */
    lx_qt_rule r8[] = {{.module_path = ".*", .op_names = "conv_general", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs8 = NULL;
    lx_tree *q8 = NULL;
    if (lx_qt_rules_compile(r8, 1, &rs8) != LX_OK || lx_qt_quantize_linen(rs8, conv, vars, &c, &q8) != LX_OK ||
        lx_qt_begin_ptq(rs8, q8, &s) != LX_OK)
        return 1;
    conv_t p8 = {conv, q8, x, rs8};
    double t8 = bench_median(run_conv, &p8, 2, 9, 5);
    int64_t n8 = lx_qt_session_int8(s);
    lx_qt_end(s);
    printf("# conv 3x3 128->128 on 1x8x8, weights and activations int8 (PTQ): %.3g s, %s (%lld calls on the int8 "
           "kernel)\n", t8, lx_i8_kernel_name(LX_I8_AUTO), (long long)n8);
    printf("conv_int8_call vs_f32 %.3f\n", t8 / tf);
    lx_tree_release(q8);
    lx_qt_rules_free(rs8);
    lx_tree_release(vars), lx_tree_release(q);
    lx_release(x);
    lx_qt_rules_free(rs);
    linen_module_release(conv);
    return 0;
}

int main(void) {
    const int64_t n = 1024;
    ctx_t c = {.n = n};
    c.a = lx_array_full_f32(2, (int64_t[]){n, n}, 0.5f);
    c.b = lx_array_full_f32(2, (int64_t[]){n, n}, 0.25f);
    c.qa = malloc((size_t)(n * n));
    c.qb = malloc((size_t)(n * n));
    c.c = malloc(sizeof(int32_t) * (size_t)(n * n));
    for (int64_t i = 0; i < n * n; i++) c.qa[i] = (int8_t)(i % 255 - 127), c.qb[i] = (int8_t)((i * 7) % 255 - 127);
    if (lx_i8_pack(n, n, c.qb, &c.pk) != LX_OK) return 1;
    /* the units' peaks here, then each kernel against its own (vpdpbusd at the FMA's instruction
     * rate would be 4x the float MACs; on one port, 2x) */
    double pf = peak_rate(0), pv = peak_rate(1), pa = peak_rate(2);
    printf("# peaks (register-only loops, one thread): f32 FMA zmm %.0f GMAC/s, vpdpbusd zmm %.0f GMAC/s (%.2fx the "
           "FMA's instruction rate), tdpbssd %.0f GMAC/s\n",
           1e-9 * pf, 1e-9 * pv, pf > 0 ? (pv / 64) / (pf / 16) : 0.0, 1e-9 * pa);
    per_kernel(c.qa, c.qb, n, pf, pv, pa);
    double tf = bench_median(run_f32, &c, 1, 5, 1);
    double tr = bench_median(run_i8, &c, 1, 5, 1);
    double ti = bench_median(run_i8_packed, &c, 1, 5, 1);
    printf("# int8 kernel: %s; f32 %.4f s, int8 packed %.4f s (row kernel %.4f s); %.1f vs %.1f GMAC/s\n",
           lx_i8_kernel_name(LX_I8_AUTO), tf, ti, tr, 1e-9 * (double)(n * n * n) / tf, 1e-9 * (double)(n * n * n) / ti);
    printf("matmul_int8_1024 vs_f32 %.3f\n", ti / tf);
    /* the same on one thread each: on a shared machine a pre-empted thread stalls a parallel
     * product, so this line is the steadier comparison of the kernels themselves */
    int nt = lx_num_threads();
    lx_set_num_threads(1);
    double tf1 = bench_median(run_f32, &c, 1, 5, 1), ti1 = bench_median(run_i8_packed, &c, 1, 5, 1);
    lx_set_num_threads(nt);
    printf("# one thread: f32 %.4f s, int8 packed %.4f s: ratio %.3f (%.1f vs %.1f GMAC/s)\n", tf1, ti1, ti1 / tf1,
           1e-9 * (double)(n * n * n) / tf1, 1e-9 * (double)(n * n * n) / ti1);
    lx_i8_packed_free(c.pk);

    /* batch-1 decode with the KV cache (prefill 16, then 32 steps), every projection and the
     * logits in int8 (weights per channel, activations per tensor); the attention products stay
     * float. A decoder wider than the tiny showcase so the GEMVs dominate. */
    llama_config cfg = llama_config_tiny();
    cfg.emb_dim = 512, cfg.mlp_dim = 2048, cfg.num_query_heads = 8, cfg.num_kv_heads = 8, cfg.head_dim = 64;
    cfg.num_decoder_layers = 2, cfg.max_target_length = 64, cfg.cache_batch = 1;
    llama_model *m = NULL;
    if (llama_model_new(&cfg, LLAMA_LINEN_TOP, 0, &m) != LX_OK) {
        fprintf(stderr, "bench quant: %s\n", lx_last_error());
        return 1;
    }
    lx_qt_rule rules[] = {
        {.module_path = "decoder/layers_[0-9]+/(mlp|self_attention)/.*", .weight_qtype = "int8", .act_qtype = "int8"},
        {.module_path = "decoder/logits_dense", .weight_qtype = "int8", .act_qtype = "int8"},
    };
    lx_qt_rules *rs = NULL;
    if (lx_qt_rules_compile(rules, 2, &rs) != LX_OK) return 1;
    dec_t d = {m, lx_array_new(LX_I32, 2, (int64_t[]){1, 16})};
    for (int64_t i = 0; i < 16; i++) lx_i32(d.prompt)[i] = (int32_t)((i * 53 + 7) % 256);
    double df = bench_median(run_decode, &d, 1, 5, 1) / 32;
    lx_qt_rule nothing[] = {{.module_path = "nothing", .weight_qtype = "int8"}};
    lx_qt_rules *rn = NULL;
    lx_qt_session *s = NULL;
    if (lx_qt_rules_compile(nothing, 1, &rn) != LX_OK || lx_qt_begin(rn, LX_QT_INT8, &s) != LX_OK) return 1;
    /* the session's own cost: module frames and rule matching, nothing quantized */
    double dn = bench_median(run_decode, &d, 1, 5, 1) / 32;
    lx_qt_end(s);
    lx_qt_rules_free(rn);
    /* PTQ: the weights stored int8 in the model, one session for all the timed runs */
    if (llama_model_quantize(m, rs, d.prompt, NULL) != LX_OK || llama_model_ptq_begin(m, rs, &s) != LX_OK) {
        fprintf(stderr, "bench quant: %s\n", lx_last_error());
        return 1;
    }
    double di = bench_median(run_decode, &d, 1, 5, 1) / 32;
    lx_qt_end(s);
    printf("# decode (emb 512, mlp 2048, 2 layers, batch 1): f32 %.3g s/token, f32 inside a session matching "
           "nothing %.3g, PTQ int8 %.3g s/token\n", df, dn, di);
    printf("llama_decode_int8 vs_f32 %.3f\n", di / df);

    /* accuracy (random-init weights: no trained checkpoint here): the logits' error when one
     * layer at a time, then every projection and the logits, run in int8 */
    llama_config fc = cfg;
    fc.cache_batch = 0;
    llama_model *fm = NULL;
    if (llama_model_new(&fc, LLAMA_LINEN_TOP, 0, &fm) != LX_OK) return 1;
    lx_array *tok = lx_array_new(LX_I32, 2, (int64_t[]){2, 32});
    for (int64_t i = 0; i < tok->size; i++) lx_i32(tok)[i] = (int32_t)((i * 37 + 11) % 256);
    lx_array *ref = lx_retain(llama_model_logits(fm, tok, NULL));
    for (int layer = -1; layer < (int)cfg.num_decoder_layers; layer++) {
        char re[96];
        snprintf(re, sizeof re, layer < 0 ? "decoder/(layers_[0-9]+/(mlp|self_attention)/.*|logits_dense)"
                                          : "decoder/layers_%d/(mlp|self_attention)/.*", layer);
        lx_qt_rule one[] = {{.module_path = re, .weight_qtype = "int8", .act_qtype = "int8"}};
        lx_qt_rules *r1 = NULL;
        lx_qt_session *s = NULL;
        if (lx_qt_rules_compile(one, 1, &r1) != LX_OK || lx_qt_begin(r1, LX_QT_INT8, &s) != LX_OK) return 1;
        lx_array *y = llama_model_logits(fm, tok, NULL);
        lx_qt_end(s);
        lx_qt_rules_free(r1);
        double num = 0, den = 0, mx = 0;
        for (int64_t i = 0; y && i < y->size; i++) {
            double e = lx_f32(y)[i] - lx_f32(ref)[i];
            num += e * e, den += (double)lx_f32(ref)[i] * lx_f32(ref)[i], mx = fmax(mx, fabs(e));
        }
        printf("# int8 %s: logits relative rms error %.3g, max abs error %.3g\n",
               layer < 0 ? "all layers + logits_dense" : re, sqrt(num / (den > 0 ? den : 1)), mx);
    }
    lx_release(ref);
    lx_release(tok);
    llama_model_free(fm);
    lx_release(d.prompt);
    lx_qt_rules_free(rs);
    llama_model_free(m);
    lx_pool_drain();
    lx_release(c.a);
    lx_release(c.b);
    free(c.qa), free(c.qb), free(c.c);
    if (conv_ptq() != 0) {
        fprintf(stderr, "bench quant: %s\n", lx_last_error());
        return 1;
    }
    if (ptq_accuracy() != 0) {
        fprintf(stderr, "bench quant: %s\n", lx_last_error());
        return 1;
    }
    lx_pool_drain();
    return 0;
}
