/* Shuffled minibatches as the Flax examples cut them: permutation(key, n)[:steps * bs] reshaped to
 * (steps, bs), each batch x[perm_row] for every array. Refused arguments are named as the rest of
 * the library names them: "<function>: <argument> is NULL", or the argument and its value. */
#include <stdlib.h>

#include "../core/status_internal.h"
#include "data_internal.h"
#include "linnx/ops.h"
#include "linnx/train.h"

/* What is wrong with `b` as a made batcher ("b is NULL", ...), or NULL. */
static const char *bad_batcher(const lx_batcher *b) {
    return !b ? "b is NULL" : !b->perm ? "b holds no permutation (not made by lx_batcher_init)" : NULL;
}

lx_status lx_batcher_init(lx_batcher *b, int64_t n, int64_t batch_size, bool keep_remainder) {
    if (!b) return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_batcher_init: b is NULL");
    b->perm = NULL;
    if (n < 0 || n >= ((int64_t)1 << 31))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_batcher_init: n = %lld is outside 0..2^31-1", (long long)n);
    if (batch_size <= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_batcher_init: batch_size = %lld must be positive", (long long)batch_size);
    b->n = n;
    b->batch_size = batch_size;
    b->nbatches = keep_remainder ? (n + batch_size - 1) / batch_size : n / batch_size;
    b->next = 0;
    b->perm = malloc(((size_t)n + 1) * sizeof *b->perm);
    if (!b->perm) return lx_fail(LX_ERR_NO_MEMORY, "lx_batcher_init: out of memory (a permutation of %lld)", (long long)n);
    for (int64_t i = 0; i < n; i++) b->perm[i] = (int32_t)i;
    return LX_OK;
}

lx_status lx_batcher_shuffle(lx_batcher *b, lx_key key) {
    const char *bad = bad_batcher(b);
    if (bad) return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_batcher_shuffle: %s", bad);
    LX_TRY(lx_random_permutation_into(key, b->n, b->perm));
    b->next = 0;
    return LX_OK;
}

const int32_t *lx_batcher_indices(const lx_batcher *b, int64_t i, int64_t *len) {
    if (len) *len = 0;
    const char *bad = bad_batcher(b);
    if (bad) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_batcher_indices: %s", bad);
        return NULL;
    }
    if (i < 0 || i >= b->nbatches) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_batcher_indices: i = %lld is outside 0..%lld", (long long)i,
                (long long)b->nbatches - 1);
        return NULL;
    }
    int64_t start = i * b->batch_size, end = start + b->batch_size;
    if (end > b->n) end = b->n;
    if (len) *len = end - start;
    return b->perm + start;
}

/* The argument checks of lx_batcher_next and lx_dist_batcher_next (data_internal.h), messages
 * under `who`. */
lx_status lx_batcher_check_next_(const char *who, const lx_batcher *b, int narrays, lx_array *const *arrays,
                                 lx_array **outs) {
    const char *bad = bad_batcher(b);
    if (!bad && narrays > 0) bad = !arrays ? "arrays is NULL" : !outs ? "outs is NULL" : NULL;
    if (bad) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %s", who, bad);
    if (narrays < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: narrays = %d is negative", who, narrays);
    /* A NULL array stands for an earlier failure while that one is pending (status.h): checked
     * before the clear below, which would drop its message. */
    for (int k = 0; k < narrays; k++)
        if (!arrays[k]) {
            for (int j = 0; j < narrays; j++) outs[j] = NULL;
            return lx_null_input("%s: arrays[%d] is NULL", who, k);
        }
    lx_clear_error();
    for (int k = 0; k < narrays; k++) {
        const lx_array *a = arrays[k];
        if (a->ndim >= 1 && a->shape[0] == b->n) continue;
        for (int j = 0; j < narrays; j++) outs[j] = NULL;
        if (a->ndim < 1)
            return lx_fail(LX_ERR_SHAPE, "%s: arrays[%d] is a scalar, the batcher has %lld rows (axis 0)", who, k,
                           (long long)b->n);
        return lx_fail(LX_ERR_SHAPE, "%s: arrays[%d] has %lld rows (axis 0), the batcher %lld", who, k,
                       (long long)a->shape[0], (long long)b->n);
    }
    return LX_OK;
}

bool lx_batcher_next(lx_batcher *b, int narrays, lx_array *const *arrays, lx_array **outs) {
    if (lx_batcher_check_next_("lx_batcher_next", b, narrays, arrays, outs) != LX_OK) return false;
    if (b->next >= b->nbatches) return false;
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
