/* The checkpoint manager: DIR/checkpoint_<step>.<ext> plus DIR/checkpoint_<step>.json, keep the
 * last N, save every K steps, restore the latest or a given step. The data file is written (and
 * synced) before its metadata, so a step counts only when both exist. */
#define _DEFAULT_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io_internal.h"
#include "linnx/tree.h"

#ifndef LINNX_VERSION_STRING
#define LINNX_VERSION_STRING "0.1.0"
#endif

static const char *ext_of(lx_ckpt_format f) { return f == LX_CKPT_SAFETENSORS ? "safetensors" : "msgpack"; }

lx_status lx_ckpt_manager_open(const char *dir, int keep, int64_t save_every, lx_ckpt_format fmt, lx_ckpt_manager *out) {
    if (!dir || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "checkpoint manager: dir or out is NULL");
    if (keep < 0 || save_every < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "checkpoint manager: keep (%d) and save_every (%lld) must be >= 0", keep,
                       (long long)save_every);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return lx_fail(LX_ERR_IO, "checkpoint manager: cannot create %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return lx_fail(LX_ERR_IO, "checkpoint manager: %s is not a directory", dir);
    memset(out, 0, sizeof *out);
    out->dir = lx_strdup(dir);
    if (!out->dir) return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    out->keep = keep;
    out->save_every = save_every;
    out->format = fmt == LX_CKPT_AUTO ? LX_CKPT_MSGPACK : fmt;
    return LX_OK;
}

void lx_ckpt_manager_close(lx_ckpt_manager *m) {
    if (!m) return;
    free(m->dir);
    m->dir = NULL;
}

static void step_path(const lx_ckpt_manager *m, int64_t step, const char *ext, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/checkpoint_%lld.%s", m->dir, (long long)step, ext);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The data file of a step in either format, or NULL. */
static const char *data_ext(const lx_ckpt_manager *m, int64_t step) {
    char p[4096];
    struct stat st;
    step_path(m, step, ext_of(m->format), p, sizeof p);
    if (stat(p, &st) == 0) return ext_of(m->format);
    const char *other = m->format == LX_CKPT_SAFETENSORS ? "msgpack" : "safetensors";
    step_path(m, step, other, p, sizeof p);
    return stat(p, &st) == 0 ? other : NULL;
}

lx_status lx_ckpt_manager_steps(const lx_ckpt_manager *m, int64_t **steps, size_t *n) {
    if (!m || !steps || !n) return lx_fail(LX_ERR_INVALID_ARGUMENT, "checkpoint manager: NULL manager, steps or n");
    DIR *d = opendir(m->dir);
    if (!d) return lx_fail(LX_ERR_IO, "checkpoint manager: cannot list %s: %s", m->dir, strerror(errno));
    int64_t *v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *e;
    lx_status s = LX_OK;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (strncmp(name, "checkpoint_", 11)) continue;
        char *end;
        errno = 0;
        long long step = strtoll(name + 11, &end, 10);
        if (errno || end == name + 11 || strcmp(end, ".json") || step < 0) continue;
        if (!data_ext(m, step)) continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                s = lx_fail(LX_ERR_NO_MEMORY, "out of memory");
                break;
            }
            v = nv;
        }
        v[len++] = step;
    }
    closedir(d);
    if (s != LX_OK) {
        free(v);
        return s;
    }
    if (len) qsort(v, len, sizeof *v, cmp_i64);
    *steps = v;
    *n = len;
    return LX_OK;
}

static lx_status write_metadata(const lx_ckpt_manager *m, int64_t step, const lx_tree *t) {
    int64_t bytes = 0;
    lx_flat f = {0};
    LX_TRY(lx_tree_flatten(t, &f));
    for (size_t i = 0; i < f.len; i++) {
        lx_array *a = io_leaf_array(&f.items[i].value);
        lx_raw *r = lx_value_raw(&f.items[i].value);
        if (a && !lx_is_abstract(a)) bytes += (int64_t)lx_array_nbytes(a);
        if (r) bytes += (int64_t)r->nbytes;
    }
    json_t *j = json_pack("{s:I, s:f, s:s, s:s, s:I, s:I, s:I}", "step", (json_int_t)step, "time", (double)time(NULL),
                          "linnx_version", LINNX_VERSION_STRING, "format", ext_of(m->format), "leaves",
                          (json_int_t)f.len, "params", (json_int_t)lx_tree_count_params(t), "bytes", (json_int_t)bytes);
    lx_flat_free(&f);
    char *text = j ? json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) return lx_fail(LX_ERR_NO_MEMORY, "checkpoint manager: cannot format metadata");
    char p[4096];
    step_path(m, step, "json", p, sizeof p);
    size_t tl = strlen(text);
    text[tl] = 0;
    lx_status s = lx_atomic_write_file(p, text, tl);
    free(text);
    return s;
}

/* The latest step present (-1 when none) and whether `step` is present. */
static lx_status latest_step(const lx_ckpt_manager *m, int64_t step, int64_t *latest, bool *exists) {
    int64_t *steps;
    size_t n;
    LX_TRY(lx_ckpt_manager_steps(m, &steps, &n));
    *latest = n ? steps[n - 1] : -1;
    *exists = false;
    for (size_t i = 0; i < n; i++) *exists |= steps[i] == step;
    free(steps);
    return LX_OK;
}

lx_status lx_ckpt_manager_save(lx_ckpt_manager *m, int64_t step, const lx_tree *t) {
    if (!m || !m->dir || !t) return lx_fail(LX_ERR_INVALID_ARGUMENT, "checkpoint manager: not open, or tree is NULL");
    if (step < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "checkpoint manager: step %lld is negative", (long long)step);
    int64_t latest;
    bool exists;
    LX_TRY(latest_step(m, step, &latest, &exists));
    /* Orbax's CheckpointManager.save refuses an existing step even when forced
     * (StepAlreadyExistsError) and skips any step <= the latest one; a step older than the latest
     * would also be the first one `keep` deletes. Nothing is written in either case. */
    if (exists)
        return lx_fail(LX_ERR_EXISTS, "checkpoint manager: checkpoint for step %lld already exists in %s",
                       (long long)step, m->dir);
    if (latest >= 0 && step < latest)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "checkpoint manager: step %lld is older than the latest step %lld in %s (steps must increase; "
                       "nothing was written)", (long long)step, (long long)latest, m->dir);
    char p[4096];
    step_path(m, step, ext_of(m->format), p, sizeof p);
    LX_TRY(lx_ckpt_save(p, t, m->format));
    LX_TRY(write_metadata(m, step, t));
    if (m->keep <= 0) return LX_OK;
    int64_t *steps;
    size_t n;
    LX_TRY(lx_ckpt_manager_steps(m, &steps, &n));
    for (size_t i = 0; i + (size_t)m->keep < n; i++) {
        /* metadata first: a half-deleted step is then invisible, never half-present */
        step_path(m, steps[i], "json", p, sizeof p);
        unlink(p);
        const char *ext = data_ext(m, steps[i]);
        if (ext) {
            step_path(m, steps[i], ext, p, sizeof p);
            unlink(p);
        }
    }
    free(steps);
    return LX_OK;
}

lx_status lx_ckpt_manager_maybe_save(lx_ckpt_manager *m, int64_t step, const lx_tree *t, bool *saved) {
    int64_t every = m && m->save_every > 0 ? m->save_every : 1;
    if (saved) *saved = false;
    if (step % every) return LX_OK;
    if (!m || !m->dir) return lx_fail(LX_ERR_INVALID_ARGUMENT, "checkpoint manager: not open, or tree is NULL");
    /* Orbax's should_save: a step <= the latest saved one is skipped, not an error */
    int64_t latest;
    bool exists;
    if (step >= 0) {
        LX_TRY(latest_step(m, step, &latest, &exists));
        if (step <= latest) return LX_OK;
    }
    LX_TRY(lx_ckpt_manager_save(m, step, t));
    if (saved) *saved = true;
    return LX_OK;
}

lx_status lx_ckpt_manager_restore(const lx_ckpt_manager *m, int64_t step, lx_tree **out, int64_t *step_out) {
    if (!m || !m->dir || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "checkpoint manager: not open, or out is NULL");
    if (step < 0) {
        int64_t *steps;
        size_t n;
        LX_TRY(lx_ckpt_manager_steps(m, &steps, &n));
        if (n == 0) {
            free(steps);
            return lx_fail(LX_ERR_NOT_FOUND, "checkpoint manager: no checkpoint in %s", m->dir);
        }
        step = steps[n - 1];
        free(steps);
    }
    const char *ext = data_ext(m, step);
    if (!ext) return lx_fail(LX_ERR_NOT_FOUND, "checkpoint manager: no checkpoint for step %lld in %s", (long long)step, m->dir);
    char p[4096];
    step_path(m, step, ext, p, sizeof p);
    LX_TRY(lx_ckpt_load(p, out));
    if (step_out) *step_out = step;
    return LX_OK;
}
