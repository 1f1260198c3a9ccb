/* The showcase decoder (llama.h) in both compositions: forward tokens/s at batch 16 x 128 (the
 * shape of torch_peer.py's llama_train forward) and per-token latency of greedy decoding at batch
 * 1 with the KV cache after a 64-token prompt (torch_peer.py's llama_decode: prefill, then 64
 * single-token steps, time / 64). scripts/bench.sh divides llama_decode by the PyTorch peer's
 * number measured in the same run. */
#include <stdio.h>
#include <malloc.h>

#include "common.h"
#include "linnx/linnx.h"
#include "linnx/llama.h"

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
    /* MaxText's structure (the Linen top) is the one compared with the peer */
    printf("llama_decode s_per_token %.3g\n", decode_s[0]);
    lx_pool_drain();
    return 0;
}
