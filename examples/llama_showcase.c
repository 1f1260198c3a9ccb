/* The showcase decoder (docs/showcase.md) in its two compositions:
 *
 *   Linen top: Transformer (Linen) -> token_embedder = to_linen(Embed), decoder = Decoder (Linen)
 *              -> layers_i = LlamaDecoderLayerToLinen (NNX layers through to_linen_class)
 *   NNX top:   Transformer (NNX) -> token_embedder = Embed, decoder = ToNNX(the same Decoder)
 *
 * Prints both parameter tables (the same paths and shapes), shows that the NNX top given the
 * Linen top's parameters computes the same logits, and decodes a few bytes with the KV cache in
 * both styles (random weights: the bytes are noise until the model is trained).
 *
 * Run: example_llama_showcase [seed]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "linnx/linnx.h"
#include "linnx/llama.h"
#include "linnx/lm_data.h"

static int fail(void) {
    fprintf(stderr, "linnx: %s\n", lx_last_error());
    return 1;
}

int main(int argc, char **argv) {
    int64_t seed = argc > 1 ? atoll(argv[1]) : 0;
    llama_config cfg = llama_config_tiny();
    llama_model *linen = NULL, *nnx = NULL;
    if (llama_model_new(&cfg, LLAMA_LINEN_TOP, seed, &linen) != LX_OK ||
        llama_model_new(&cfg, LLAMA_NNX_TOP, seed, &nnx) != LX_OK)
        return fail();
    lx_tree *pl = NULL, *pn = NULL;
    if (llama_model_params(linen, &pl) != LX_OK || llama_model_params(nnx, &pn) != LX_OK) return fail();
    printf("== Linen top: Transformer(Linen) > Decoder(Linen) > LlamaDecoderLayerToLinen(NNX), params ==\n");
    lx_tree_fprint_table(stdout, pl);
    printf("\n== NNX top: Transformer(NNX) > ToNNX(Decoder(Linen)) > LlamaDecoderLayerToLinen(NNX), Param state ==\n");
    lx_tree_fprint_table(stdout, pn);

    /* the same tokens through both, before and after the NNX top takes the Linen top's parameters */
    lx_array *tokens = lm_encode("The quick brown fox", cfg.vocab_size);
    lx_array *a = llama_model_logits(linen, tokens, NULL), *b = llama_model_logits(nnx, tokens, NULL);
    if (!a || !b) return fail();
    printf("\nseed %lld: logits differ between the styles (each derives its own keys): %s\n", (long long)seed,
           lx_array_equal(a, b) ? "no" : "yes");
    if (llama_model_load_params(nnx, pl) != LX_OK) return fail();
    b = llama_model_logits(nnx, tokens, NULL);
    if (!b) return fail();
    double worst = 0;
    for (int64_t i = 0; i < a->size; i++) worst = fmax(worst, fabs(lx_f32(a)[i] - lx_f32(b)[i]));
    printf("the NNX top with the Linen top's parameters: same logits: %s (max |difference| %g)\n",
           lx_array_equal(a, b) ? "yes" : "no", worst);

    /* KV-cache decoding in both styles from the same parameters: the same bytes */
    llama_config dc = cfg;
    dc.cache_batch = 1;
    lx_sampling s = {0.8, 20};
    for (int style = 0; style < 2; style++) {
        llama_model *d = NULL;
        if (llama_model_new(&dc, (llama_style)style, 0, &d) != LX_OK || llama_model_load_params(d, pl) != LX_OK)
            return fail();
        lx_array *gen = llama_generate(d, tokens, 24, &s, lx_key_from_seed(seed));
        if (!gen) return fail();
        printf("%s top, cached decoding (T 0.8, top-k 20): ", style ? "NNX  " : "Linen");
        for (int64_t i = 0; i < gen->size; i++) printf("%02x", lx_i32(gen)[i]);
        printf("\n");
        llama_model_free(d);
    }
    lx_tree_release(pl);
    lx_tree_release(pn);
    llama_model_free(linen);
    llama_model_free(nnx);
    lx_pool_drain();
    return 0;
}
