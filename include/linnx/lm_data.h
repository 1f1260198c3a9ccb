/* linnx/lm_data.h - byte-level language-model data: text files as tokens 0..255, a held-out
 * split, random batches drawn by key, held-out windows, the byte-unigram entropy baseline.
 *
 * Tokens are bytes (vocabulary 256). A model with a smaller vocabulary rejects bytes it cannot
 * represent (lm_data_check_vocab, lm_encode) with the file / position and the byte.
 *
 * Random batches follow JAX exactly: the start offsets are jax.random.randint(key, (batch,), 0,
 * n - len + 1) (spec/jax-random.md §3.4: split the key, two bit arrays, the span arithmetic in
 * wrapping uint32), so a Python pipeline with the same key picks the same windows.
 *
 * Ownership: lm_data_load fills a struct whose buffers lm_data_free releases. Arrays are owned by
 * the innermost pool (as ops); NULL + message on failure.
 */
#ifndef LINNX_LM_DATA_H
#define LINNX_LM_DATA_H

#include <stdint.h>

#include "linnx/array.h"
#include "linnx/random.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef struct lm_data {
    uint8_t *train;   /* the training bytes: every file, the held-out tail excluded */
    int64_t ntrain;
    uint8_t *heldout; /* the last heldout_fraction of the held-out file */
    int64_t nheldout;
    int nfiles;       /* files read (a file reached twice, by a link or twice on the list, once) */
    /* where the bytes came from, for errors that name a file and an offset in it: */
    char **files;          /* the nfiles files read, by resolved path, in reading order */
    int64_t *file_end;     /* file i's training bytes end at train[file_end[i]] (exclusive) */
    int heldout_file;      /* the held-out file's index in files (-1: no held-out split) */
    int64_t heldout_start; /* the offset in that file where the held-out split begins */
} lm_data;

/* Read `paths` (files, or directories: their regular files and links to files, sorted by name,
 * not recursive). Each file is read once, by its resolved path. `heldout` names the file whose
 * last `heldout_fraction` (in (0, 1)) becomes the held-out split; it must be among the files (NULL:
 * no held-out split). Errors, naming the path: a path that does not exist (LX_ERR_NOT_FOUND, as
 * lx_ckpt_load) or cannot be read (LX_ERR_IO); an empty file, a held-out file not among the paths,
 * a split that leaves either side empty (LX_ERR_INVALID_ARGUMENT). Nothing is allocated on failure. */
lx_status lm_data_load(int npaths, const char *const *paths, const char *heldout, double heldout_fraction,
                       lm_data *out);
void lm_data_free(lm_data *d);
/* Every byte < vocab, else LX_ERR_INVALID_ARGUMENT naming the split, the file, the byte's offset in
 * that file and the byte ("training data: /path/f, byte 35 is 112, outside the vocabulary [0, 100)"). */
lx_status lm_data_check_vocab(const lm_data *d, int64_t vocab);

/* (batch, len) int32: rows buf[o_b : o_b + len], o = randint(key, (batch,), 0, n - len + 1).
 * n < len is LX_ERR_INVALID_ARGUMENT ("... bytes, fewer than the N a sequence needs"). */
lx_array *lm_random_batch(const uint8_t *buf, int64_t n, lx_key key, int64_t batch, int64_t len);
/* jax.random.randint(key, (count,), minval, maxval) into out (int32). */
lx_status lm_randint(lx_key key, int64_t count, int32_t minval, int32_t maxval, int32_t *out);
/* How many whole windows of `len` bytes buf holds (stride len): n / len. */
int64_t lm_window_count(int64_t n, int64_t len);
/* (batch, len) int32: windows first .. first + batch - 1 (window w is buf[w*len : (w+1)*len]);
 * windows past the end are an error. */
lx_array *lm_window_batch(const uint8_t *buf, int64_t n, int64_t first, int64_t batch, int64_t len);
/* The entropy of the byte distribution of buf in nats: -sum p log p (the loss of the best model
 * that ignores context). 0 for n == 0. */
double lm_unigram_entropy(const uint8_t *buf, int64_t n);
/* A text as a (1, strlen) int32 token row; a byte >= vocab is LX_ERR_INVALID_ARGUMENT naming its
 * position; an empty text is an error. */
lx_array *lm_encode(const char *text, int64_t vocab);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
