/* libFuzzer target: optax expressions (optax_from_string, `linnx train --optimizer`), then, for one
 * that builds, optax_init and two steps on a small params tree, and optax_schedule_from_string on
 * the same text. Nesting is bounded (64 levels in the parser, 256 in chain/masked), so no input
 * may exhaust the stack; any crash, leak or UB is a finding, every error a normal outcome. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/fault.h"
#include "linnx/optax.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    lx_set_max_array_bytes((size_t)1 << 20);
    optax_tx *tx = optax_from_string(text);
    if (tx) {
        float pv[6] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 1.5f}, gv[6] = {0.1f, -0.2f, 0.3f, 0.0f, 1e-3f, -5.0f};
        int64_t shp[2] = {2, 3}, one = 1;
        lx_tree *p = lx_tree_new(), *g = lx_tree_new(), *st = NULL;
        lx_array *pk = lx_array_from_f32(2, shp, pv), *pb = lx_array_from_f32(1, &one, pv);
        lx_array *gk = lx_array_from_f32(2, shp, gv), *gb = lx_array_from_f32(1, &one, gv);
        if (p && g && pk && pb && gk && gb && lx_tree_set_path(p, "dense/kernel", lx_array_v(pk)) == LX_OK &&
            lx_tree_set_path(p, "dense/bias", lx_array_v(pb)) == LX_OK &&
            lx_tree_set_path(g, "dense/kernel", lx_array_v(gk)) == LX_OK &&
            lx_tree_set_path(g, "dense/bias", lx_array_v(gb)) == LX_OK && optax_init(tx, p, &st) == LX_OK) {
            for (int k = 0; k < 2; k++)
                if (optax_step(tx, g, &p, &st) != LX_OK) break;
        }
        lx_release(pk);
        lx_release(pb);
        lx_release(gk);
        lx_release(gb);
        lx_tree_release(p);
        lx_tree_release(g);
        lx_tree_release(st);
        optax_tx_release(tx);
    }
    optax_schedule *s = optax_schedule_from_string(text);
    if (s) {
        for (int32_t c = 0; c < 3; c++) (void)optax_schedule_eval(s, c * 1000);
        optax_schedule_release(s);
    }
    lx_clear_error();
    free(text);
    return 0;
}
