/* Byte-level language-model data (lm_data.h). */
#define _XOPEN_SOURCE 700 /* realpath */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "linnx/lm_data.h"

typedef struct {
    char **v;
    int n, cap;
} strlist;

static void strlist_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    *l = (strlist){0};
}

static lx_status strlist_add(strlist *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, sizeof *v * (size_t)cap);
        if (!v) return lx_fail(LX_ERR_NO_MEMORY, "lm_data: out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = strdup(s);
    if (!l->v[l->n]) return lx_fail(LX_ERR_NO_MEMORY, "lm_data: out of memory");
    l->n++;
    return LX_OK;
}

/* A path that does not exist is LX_ERR_NOT_FOUND (as lx_ckpt_load), one that cannot be opened
 * LX_ERR_IO. */
static lx_status path_error(const char *path, const char *what) {
    int e = errno;
    return lx_fail(e == ENOENT || e == ENOTDIR ? LX_ERR_NOT_FOUND : LX_ERR_IO, "%s: %s: %s", path, what, strerror(e));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The resolved files of one path (a file, or a directory's files sorted by name). */
static lx_status expand(const char *path, strlist *files) {
    struct stat st;
    if (stat(path, &st) != 0) return path_error(path, "cannot read");
    if (!S_ISDIR(st.st_mode)) {
        char real[PATH_MAX];
        if (!realpath(path, real)) return path_error(path, "cannot read");
        return strlist_add(files, real);
    }
    DIR *d = opendir(path);
    if (!d) return path_error(path, "cannot read");
    strlist names = {0};
    lx_status s = LX_OK;
    for (struct dirent *e; s == LX_OK && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char full[PATH_MAX];
        if (snprintf(full, sizeof full, "%s/%s", path, e->d_name) >= (int)sizeof full) continue;
        struct stat fs;
        if (stat(full, &fs) == 0 && S_ISREG(fs.st_mode)) s = strlist_add(&names, full);
    }
    closedir(d);
    if (s == LX_OK && names.n == 0) s = lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: no files in this directory", path);
    if (s == LX_OK) qsort(names.v, (size_t)names.n, sizeof *names.v, cmp_str);
    for (int i = 0; s == LX_OK && i < names.n; i++) s = expand(names.v[i], files);
    strlist_free(&names);
    return s;
}

static lx_status read_file(const char *path, uint8_t **data, int64_t *n) {
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return path_error(path, "cannot read");
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    lx_status s = buf ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "lm_data: out of memory");
    while (s == LX_OK) {
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                s = lx_fail(LX_ERR_NO_MEMORY, "lm_data: out of memory");
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) s = lx_fail(LX_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (s == LX_OK && len == 0) s = lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: the file is empty (expected text)", path);
    if (s != LX_OK) {
        free(buf);
        return s;
    }
    *data = buf;
    *n = (int64_t)len;
    return LX_OK;
}

void lm_data_free(lm_data *d) {
    if (!d) return;
    free(d->train);
    free(d->heldout);
    for (int i = 0; d->files && i < d->nfiles; i++) free(d->files[i]);
    free(d->files);
    free(d->file_end);
    *d = (lm_data){0};
}

lx_status lm_data_load(int npaths, const char *const *paths, const char *heldout, double heldout_fraction,
                       lm_data *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "lm_data_load: out is NULL");
    *out = (lm_data){0};
    if (npaths <= 0 || !paths) return lx_fail(LX_ERR_INVALID_ARGUMENT, "lm_data_load: no data files given");
    if (heldout && !(heldout_fraction > 0 && heldout_fraction < 1))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "lm_data_load: the held-out fraction must be in (0, 1), got %g",
                       heldout_fraction);
    strlist files = {0};
    lx_status s = LX_OK;
    for (int i = 0; s == LX_OK && i < npaths; i++) s = expand(paths[i], &files);
    char held_real[PATH_MAX] = "";
    if (s == LX_OK && heldout && !realpath(heldout, held_real))
        s = path_error(heldout, "cannot read the held-out file");
    lm_data d = {0};
    d.heldout_file = -1;
    d.files = calloc((size_t)(files.n ? files.n : 1), sizeof *d.files);
    d.file_end = calloc((size_t)(files.n ? files.n : 1), sizeof *d.file_end);
    if (s == LX_OK && (!d.files || !d.file_end)) s = lx_fail(LX_ERR_NO_MEMORY, "lm_data: out of memory");
    size_t cap = 0;
    bool held_seen = false;
    for (int i = 0; s == LX_OK && i < files.n; i++) {
        bool dup = false;
        for (int j = 0; j < i && !dup; j++) dup = strcmp(files.v[i], files.v[j]) == 0;
        if (dup) continue;
        uint8_t *buf;
        int64_t n;
        s = read_file(files.v[i], &buf, &n);
        if (s != LX_OK) break;
        int64_t keep = n;
        if (heldout && strcmp(files.v[i], held_real) == 0) {
            held_seen = true;
            keep = (int64_t)floor((double)n * (1.0 - heldout_fraction));
            if (keep <= 0 || keep >= n) {
                free(buf);
                s = lx_fail(LX_ERR_INVALID_ARGUMENT,
                            "%s: a held-out fraction of %g of %lld bytes leaves one side empty", heldout,
                            heldout_fraction, (long long)n);
                break;
            }
            d.heldout = malloc((size_t)(n - keep));
            if (!d.heldout) {
                free(buf);
                s = lx_fail(LX_ERR_NO_MEMORY, "lm_data: out of memory");
                break;
            }
            memcpy(d.heldout, buf + keep, (size_t)(n - keep));
            d.nheldout = n - keep;
            d.heldout_file = d.nfiles;
            d.heldout_start = keep;
        }
        if ((size_t)(d.ntrain + keep) > cap) {
            size_t nc = cap ? cap : 1 << 16;
            while (nc < (size_t)(d.ntrain + keep)) nc *= 2;
            uint8_t *nt = realloc(d.train, nc);
            if (!nt) {
                free(buf);
                s = lx_fail(LX_ERR_NO_MEMORY, "lm_data: out of memory");
                break;
            }
            d.train = nt;
            cap = nc;
        }
        memcpy(d.train + d.ntrain, buf, (size_t)keep);
        free(buf);
        d.files[d.nfiles] = strdup(files.v[i]);
        if (!d.files[d.nfiles]) {
            s = lx_fail(LX_ERR_NO_MEMORY, "lm_data: out of memory");
            break;
        }
        d.ntrain += keep;
        d.file_end[d.nfiles++] = d.ntrain;
    }
    if (s == LX_OK && heldout && !held_seen)
        s = lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: the held-out file is not among the data files", heldout);
    strlist_free(&files);
    if (s != LX_OK) {
        lm_data_free(&d);
        return s;
    }
    *out = d;
    return LX_OK;
}

static int64_t first_outside(const uint8_t *b, int64_t n, int64_t vocab) {
    for (int64_t i = 0; i < n; i++)
        if (b[i] >= vocab) return i;
    return -1;
}

lx_status lm_data_check_vocab(const lm_data *d, int64_t vocab) {
    if (!d) return lx_fail(LX_ERR_INVALID_ARGUMENT, "lm_data_check_vocab: NULL data");
    int64_t i = first_outside(d->train, d->ntrain, vocab);
    if (i >= 0) {
        /* the file holding training byte i, and i's offset in it */
        int f = 0;
        while (d->file_end && f < d->nfiles - 1 && d->file_end[f] <= i) f++;
        int64_t at = d->file_end && f > 0 ? i - d->file_end[f - 1] : i;
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "training data: %s, byte %lld is %u, outside the vocabulary [0, %lld)",
                       d->files ? d->files[f] : "?", (long long)at, d->train[i], (long long)vocab);
    }
    i = first_outside(d->heldout, d->nheldout, vocab);
    if (i >= 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "held-out data: %s, byte %lld is %u, outside the vocabulary [0, %lld)",
                       d->files && d->heldout_file >= 0 ? d->files[d->heldout_file] : "?",
                       (long long)(d->heldout_start + i), d->heldout[i], (long long)vocab);
    return LX_OK;
}

lx_status lm_randint(lx_key key, int64_t count, int32_t minval, int32_t maxval, int32_t *out) {
    if (count < 0 || (count && !out)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "randint: bad count or buffer");
    lx_key k[2];
    LX_TRY(lx_key_split(key, 2, lx_random_legacy(), k));
    uint32_t *hi = malloc(sizeof *hi * (size_t)(count ? count : 1)), *lo = malloc(sizeof *lo * (size_t)(count ? count : 1));
    lx_status s = hi && lo ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "randint: out of memory");
    if (s == LX_OK) s = lx_random_bits_into(k[0], count, hi);
    if (s == LX_OK) s = lx_random_bits_into(k[1], count, lo);
    if (s == LX_OK) {
        /* span = uint32(maxval - minval) (1 when maxval <= minval); multiplier = (2^16 % span)^2 % span */
        uint32_t span = maxval > minval ? (uint32_t)((int64_t)maxval - minval) : 1u;
        uint32_t m16 = (uint32_t)(65536u % span);
        uint32_t mult = (uint32_t)(m16 * m16) % span;
        for (int64_t i = 0; i < count; i++) {
            uint32_t off = (uint32_t)((hi[i] % span) * mult + lo[i] % span) % span;
            out[i] = (int32_t)((int64_t)minval + off);
        }
    }
    free(hi);
    free(lo);
    return s;
}

lx_array *lm_random_batch(const uint8_t *buf, int64_t n, lx_key key, int64_t batch, int64_t len) {
    if (!buf || batch < 1 || len < 1) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "lm_random_batch: need data, batch >= 1 and len >= 1");
        return NULL;
    }
    if (n < len) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "lm_random_batch: the data has %lld bytes, fewer than the %lld a sequence needs",
                (long long)n, (long long)len);
        return NULL;
    }
    if (n - len + 1 > INT32_MAX) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "lm_random_batch: data of %lld bytes is beyond randint's int32 range",
                (long long)n);
        return NULL;
    }
    lx_array *t = lx_autorelease(lx_array_empty(LX_I32, 2, (int64_t[]){batch, len}));
    int32_t *off = malloc(sizeof *off * (size_t)batch);
    if (!t || !off || lm_randint(key, batch, 0, (int32_t)(n - len + 1), off) != LX_OK) {
        if (!off) lx_fail(LX_ERR_NO_MEMORY, "lm_random_batch: out of memory");
        free(off);
        return NULL;
    }
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < len; i++) lx_i32(t)[b * len + i] = buf[off[b] + i];
    free(off);
    return t;
}

int64_t lm_window_count(int64_t n, int64_t len) { return len > 0 && n > 0 ? n / len : 0; }

lx_array *lm_window_batch(const uint8_t *buf, int64_t n, int64_t first, int64_t batch, int64_t len) {
    if (!buf || batch < 1 || len < 1 || first < 0 || first + batch > lm_window_count(n, len)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "lm_window_batch: windows %lld..%lld of %lld bytes do not fit in %lld bytes",
                (long long)first, (long long)(first + batch - 1), (long long)len, (long long)n);
        return NULL;
    }
    lx_array *t = lx_autorelease(lx_array_empty(LX_I32, 2, (int64_t[]){batch, len}));
    if (!t) return NULL;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < len; i++) lx_i32(t)[b * len + i] = buf[(first + b) * len + i];
    return t;
}

double lm_unigram_entropy(const uint8_t *buf, int64_t n) {
    if (!buf || n <= 0) return 0;
    int64_t count[256] = {0};
    for (int64_t i = 0; i < n; i++) count[buf[i]]++;
    double h = 0;
    for (int i = 0; i < 256; i++)
        if (count[i]) {
            double p = (double)count[i] / (double)n;
            h -= p * log(p);
        }
    return h;
}

lx_array *lm_encode(const char *text, int64_t vocab) {
    if (!text || !*text) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "lm_encode: empty text (a prompt needs at least one byte)");
        return NULL;
    }
    int64_t n = (int64_t)strlen(text);
    int64_t bad = first_outside((const uint8_t *)text, n, vocab);
    if (bad >= 0) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "text: byte %lld is %u, outside the vocabulary [0, %lld)", (long long)bad,
                (uint8_t)text[bad], (long long)vocab);
        return NULL;
    }
    lx_array *t = lx_autorelease(lx_array_empty(LX_I32, 2, (int64_t[]){1, n}));
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) lx_i32(t)[i] = (uint8_t)text[i];
    return t;
}
