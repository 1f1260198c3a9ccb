/* The showcase decoder (llama.h) in both compositions: forward tokens/s at batch 16 x 128 (the
 * shape of torch_peer.py's llama_train forward) and per-token latency of greedy decoding at batch
 * 1 with the KV cache after a 64-token prompt (torch_peer.py's llama_decode: prefill, then 64
 * single-token steps, time / 64). scripts/bench.sh divides llama_decode by the PyTorch peer's
 * number measured in the same run.
 * Training: tokens/s of one full training step at batch 16 x 128 (value_and_grad of the LM loss,
 * clip_by_global_norm + adamw, the parameters replaced: llama_trainer_step), torch_peer.py's
 * llama_train; scripts/bench.sh prints `llama_train vs_torch <linnx s/step / torch s/step>` (the
 * inverse ratio of tokens/s: below 1 is faster than PyTorch). The step's arithmetic (matmuls and attention
 * products, 3x the forward's) over its time, against this machine's GEMM rate measured here
 * (a 1024^3 lx_matmul), is the fraction of the GEMM peak reached. */
#include <stdio.h>
#include <malloc.h>

#include "common.h"
#include "linnx/linnx.h"
#include "linnx/llama.h"
#include "linnx/llama_train.h"

typedef struct {
    llama_model *m;
    lx_array *tokens;
    int64_t n;
} ctx_t;

static void forward(void *p) {
    ctx_t *c = p;
    size_t mark = lx_pool_open();
    if (!llama_model_logits(c->m, c->tokens, NULL)) fprintf(stderr, "bench llama: %s\n", lx_last_error());
    lx_pool_close(mark);
}

typedef struct {
    llama_trainer *t;
    lx_array *tokens;
} train_t;

static void train_step(void *p) {
    train_t *c = p;
    size_t mark = lx_pool_open();
    if (llama_trainer_step(c->t, c->tokens, NULL) != LX_OK) fprintf(stderr, "bench llama: %s\n", lx_last_error());
    lx_pool_close(mark);
}

typedef struct {
    lx_array *a, *b;
} mm_t;

static void gemm(void *p) {
    mm_t *c = p;
    size_t mark = lx_pool_open();
    if (!lx_matmul(c->a, c->b)) fprintf(stderr, "bench llama: %s\n", lx_last_error());
    lx_pool_close(mark);
}

/* Multiply-adds x 2 of one training step: the forward's matmuls (q, k, v, o, wi_0, wi_1, wo per
 * layer, logits_dense) and attention products (QK^T and PV over the full S x S square), times 3
 * (forward + the two backward products). */
static double train_flops(const llama_config *c, int64_t batch, int64_t seq) {
    double E = (double)c->emb_dim, H = (double)c->num_query_heads, K = (double)c->num_kv_heads,
           D = (double)c->head_dim, M = (double)c->mlp_dim, V = (double)c->vocab_size, S = (double)seq;
    double per_tok = (double)c->num_decoder_layers * (E * D * (2 * H + 2 * K) + 3 * E * M + 2 * S * H * D) + E * V;
    return 3.0 * 2.0 * per_tok * (double)(batch * seq);
}

static void decode(void *p) {
    ctx_t *c = p;
    size_t mark = lx_pool_open();
    lx_sampling greedy = {0, 0};
    if (!llama_generate(c->m, c->tokens, c->n, &greedy, lx_key_from_seed(0)))
        fprintf(stderr, "bench llama: %s\n", lx_last_error());
    lx_pool_close(mark);
}

int main(void) {
    const char *names[2] = {"linen", "nnx"};
    double decode_s[2] = {0, 0};
    /* keep large op results in the heap (no mmap + page faults per op), as PyTorch's allocator
     * caches its blocks */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    printf("# threads %d\n", lx_num_threads());
    for (int s = 0; s < 2; s++) {
        llama_config c = llama_config_tiny();
        c.max_target_length = 128;
        llama_model *m = NULL;
        if (llama_model_new(&c, (llama_style)s, 0, &m) != LX_OK) {
            fprintf(stderr, "bench llama: %s\n", lx_last_error());
            return 1;
        }
        lx_array *tok = lx_array_new(LX_I32, 2, (int64_t[]){16, 128});
        for (int64_t i = 0; i < tok->size; i++) lx_i32(tok)[i] = (int32_t)((i * 37 + 11) % 256);
        ctx_t fc = {m, tok, 0};
        double t = bench_median(forward, &fc, 2, 7, 1);
        printf("llama_forward_%s tokens_per_s %.0f\n", names[s], (double)tok->size / t);
        lx_release(tok);

        llama_config dc = c;
        dc.cache_batch = 1;
        llama_model *d = NULL;
        lx_tree *p = NULL;
        if (llama_model_new(&dc, (llama_style)s, 0, &d) != LX_OK || llama_model_params(m, &p) != LX_OK ||
            llama_model_load_params(d, p) != LX_OK) {
            fprintf(stderr, "bench llama: %s\n", lx_last_error());
            return 1;
        }
        lx_tree_release(p);
        lx_array *prompt = lx_array_new(LX_I32, 2, (int64_t[]){1, 64});
        for (int64_t i = 0; i < 64; i++) lx_i32(prompt)[i] = (int32_t)((i * 53 + 7) % 256);
        ctx_t dcx = {d, prompt, 65}; /* prefill + 64 steps, as the peer */
        decode_s[s] = bench_median(decode, &dcx, 1, 5, 1) / 64;
        printf("llama_decode_%s s_per_token %.3g\n", names[s], decode_s[s]);
        lx_release(prompt);
        llama_model_free(d);
        llama_model_free(m);
    }
    /* training steps: batch 16 x 128, as torch_peer.py's llama_train */
    double gemm_flops = 0;
    {
        int64_t n = 1024;
        lx_array *a = lx_array_new(LX_F32, 2, (int64_t[]){n, n}), *b = lx_array_new(LX_F32, 2, (int64_t[]){n, n});
        for (int64_t i = 0; i < n * n; i++) {
            lx_f32(a)[i] = (float)((i * 7) % 13) * 0.1f;
            lx_f32(b)[i] = (float)((i * 5) % 11) * 0.1f;
        }
        mm_t mc = {a, b};
        double t = bench_median(gemm, &mc, 2, 7, 1);
        gemm_flops = 2.0 * (double)n * (double)n * (double)n / t;
        printf("gemm_1024 gflops %.1f\n", gemm_flops / 1e9);
        lx_release(a);
        lx_release(b);
    }
    double train_tps = 0;
    for (int s = 0; s < 2; s++) {
        llama_config c = llama_config_tiny();
        c.max_target_length = 128;
        llama_model *m = NULL;
        llama_trainer *tr = NULL;
        llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
        if (llama_model_new(&c, (llama_style)s, 0, &m) != LX_OK || llama_trainer_new(m, &o, &tr) != LX_OK) {
            fprintf(stderr, "bench llama: %s\n", lx_last_error());
            return 1;
        }
        lx_array *tok = lx_array_new(LX_I32, 2, (int64_t[]){16, 129});
        for (int64_t i = 0; i < tok->size; i++) lx_i32(tok)[i] = (int32_t)((i * 37 + 11) % 256);
        train_t tc = {tr, tok};
        double t = bench_median(train_step, &tc, 2, 9, 1);
        double tps = 16.0 * 128.0 / t, fl = train_flops(&c, 16, 128) / t;
        printf("llama_train_%s tokens_per_s %.0f\n", names[s], tps);
        printf("llama_train_%s gflops %.2f gemm_peak_fraction %.3f\n", names[s], fl / 1e9, fl / gemm_flops);
        if (s == 0) {
            train_tps = tps;
            printf("llama_train s_per_step %.4g\n", t);
        }
        lx_release(tok);
        llama_trainer_free(tr);
        llama_model_free(m);
    }
    optax_release_buffers();
    printf("llama_train tokens_per_s %.0f\n", train_tps);
    /* MaxText's structure (the Linen top) is the one compared with the peer */
    printf("llama_decode s_per_token %.3g\n", decode_s[0]);
    lx_pool_drain();
    return 0;
}
