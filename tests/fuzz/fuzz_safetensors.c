/* libFuzzer target: the safetensors reader (lx_safetensors_from_bytes), then the writer on
 * whatever parsed. Hostile headers must fail cleanly; sizes are checked before allocating. */
#include <stdint.h>
#include <stdlib.h>

#include "linnx/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* names split at '.' (the default), then kept whole (sep "/": names a '.'-split tree cannot
     * hold, such as h.0 next to h.0.attn) */
    for (int pass = 0; pass < 2; pass++) {
        lx_tree *t = NULL, *md = NULL;
        lx_safetensors_opts in = {.sep = pass ? "/" : NULL};
        if (lx_safetensors_from_bytes(data, size, &in, &t, &md) == LX_OK) {
            unsigned char *b = NULL;
            size_t n = 0;
            lx_safetensors_opts o = {.sep = in.sep, .metadata = md};
            if (lx_safetensors_to_bytes(t, &o, &b, &n) == LX_OK) free(b);
            lx_tree_release(t);
            lx_tree_release(md);
        }
    }
    return 0;
}
