/* Shuffled minibatches as the Flax examples cut them: permutation(key, n)[:steps * bs] reshaped to
 * (steps, bs), each batch x[perm_row] for every array. */
#include <stdlib.h>

#include "linnx/ops.h"
#include "linnx/train.h"

lx_status lx_batcher_init(lx_batcher *b, int64_t n, int64_t batch_size, bool keep_remainder) {
    if (!b) return lx_fail(LX_ERR_INVALID_ARGUMENT, "batcher: the batcher is NULL");
    b->perm = NULL;
    if (n < 0 || n >= ((int64_t)1 << 31)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "batcher: %lld examples", (long long)n);
    if (batch_size <= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "batcher: batch_size must be positive, got %lld", (long long)batch_size);
    b->n = n;
    b->batch_size = batch_size;
    b->nbatches = keep_remainder ? (n + batch_size - 1) / batch_size : n / batch_size;
    b->next = 0;
    b->perm = malloc(((size_t)n + 1) * sizeof *b->perm);
    if (!b->perm) return lx_fail(LX_ERR_NO_MEMORY, "batcher: out of memory");
    for (int64_t i = 0; i < n; i++) b->perm[i] = (int32_t)i;
    return LX_OK;
}

lx_status lx_batcher_shuffle(lx_batcher *b, lx_key key) {
    if (!b || !b->perm) return lx_fail(LX_ERR_INVALID_ARGUMENT, "batcher: not initialised");
    LX_TRY(lx_random_permutation_into(key, b->n, b->perm));
    b->next = 0;
    return LX_OK;
}

const int32_t *lx_batcher_indices(const lx_batcher *b, int64_t i, int64_t *len) {
    if (!b || !b->perm || i < 0 || i >= b->nbatches) {
        if (len) *len = 0;
        return NULL;
    }
    int64_t start = i * b->batch_size, end = start + b->batch_size;
    if (end > b->n) end = b->n;
    if (len) *len = end - start;
    return b->perm + start;
}

bool lx_batcher_next(lx_batcher *b, int narrays, lx_array *const *arrays, lx_array **outs) {
    lx_clear_error();
    if (!b || !b->perm || narrays < 0 || (narrays > 0 && (!arrays || !outs))) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "batcher: bad arguments");
        return false;
    }
    if (b->next >= b->nbatches) return false;
    for (int k = 0; k < narrays; k++) {
        if (!arrays[k] || arrays[k]->ndim < 1 || arrays[k]->shape[0] != b->n) {
            for (int j = 0; j < narrays; j++) outs[j] = NULL;
            lx_fail(LX_ERR_SHAPE, "batcher: array %d must have %lld rows (axis 0)", k, (long long)b->n);
            return false;
        }
    }
    int64_t len;
    const int32_t *idx = lx_batcher_indices(b, b->next, &len);
    lx_array *ia = lx_autorelease(lx_array_from_data(LX_I32, 1, &len, idx));
    for (int k = 0; k < narrays; k++) {
        outs[k] = ia ? lx_take(arrays[k], ia, 0) : NULL;
        if (!outs[k]) {
            for (int j = 0; j < narrays; j++) outs[j] = NULL;
            return false;
        }
    }
    b->next++;
    return true;
}

void lx_batcher_free(lx_batcher *b) {
    if (!b) return;
    free(b->perm);
    b->perm = NULL;
}
