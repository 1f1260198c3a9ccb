/* nnx.Rngs and nnx.RngStream (flax/nnx/rnglib.py, spec/jax-random.md §6.1).
 *
 * Rngs is a module whose dynamic attributes are its streams (so a state shows
 * rngs/<stream>/count and rngs/<stream>/key); a stream is a module holding an RngKey (uint32[2])
 * and an RngCount (uint32 scalar) Variable, both tagged with the stream name. A draw returns
 * fold_in(key, count) and counts up; counts are replaced with new arrays, never written in place,
 * so an array someone else holds never changes under them. */
#include <stdio.h>

#include "nnx_internal.h"

struct nnx_rngs {
    nnx_module base;
};

static const lx_field STREAM_CONFIG[] = {
    LX_FIELD_STR(nnx_rng_stream_config, tag, NULL),
};
static const nnx_field STREAM_FIELDS[] = {
    NNX_VAR(nnx_rng_stream, count),
    NNX_VAR(nnx_rng_stream, key),
};

const nnx_type nnx_RngStream = {
    .name = "RngStream",
    .size = sizeof(nnx_rng_stream),
    .fields = STREAM_FIELDS,
    .nfields = LX_COUNT(STREAM_FIELDS),
    .config = STREAM_CONFIG,
    .nconfig = LX_COUNT(STREAM_CONFIG),
    .config_offset = offsetof(nnx_rng_stream, cfg),
};

const nnx_type nnx_Rngs = {
    .name = "Rngs",
    .size = sizeof(struct nnx_rngs),
};

static lx_status stream_state(const nnx_module *stream, lx_key *key, uint32_t *count);

static bool is_stream(const nnx_module *m) { return m && m->type == &nnx_RngStream; }

static lx_status tagged_var(const lx_vartype *type, lx_array *value, const char *tag, lx_variable **out) {
    lx_kwarg meta[] = {LX_KW_STR("tag", tag)};
    return lx_variable_new_kw(type, value, 1, meta, out);
}

static lx_array *key_array(lx_key k) {
    int64_t shape[] = {2};
    return lx_array_from_data(LX_U32, 1, shape, k.k);
}

static lx_array *count_array(uint32_t c) { return lx_array_from_data(LX_U32, 0, NULL, &c); }

/* A new RngStream(key, tag) with count 0. */
static lx_status stream_new(const char *tag, lx_key key, nnx_module **out) {
    *out = NULL;
    nnx_module *m;
    LX_TRY(nnx_module_alloc(&nnx_RngStream, &m));
    nnx_rng_stream *s = (nnx_rng_stream *)m;
    lx_status st = LX_OK;
    s->cfg.tag = nnx_strdup(tag);
    if (!s->cfg.tag) st = lx_fail(LX_ERR_NO_MEMORY, "Rngs: out of memory");
    lx_array *k = st == LX_OK ? key_array(key) : NULL;
    lx_array *c = st == LX_OK ? count_array(0) : NULL;
    if (st == LX_OK && (!k || !c)) st = lx_last_status();
    if (st == LX_OK) st = tagged_var(&lx_RngKey, k, tag, &s->key);
    if (st == LX_OK) st = tagged_var(&lx_RngCount, c, tag, &s->count);
    lx_release(k);
    lx_release(c);
    if (st != LX_OK) {
        nnx_module_release(m);
        return st;
    }
    *out = m;
    return LX_OK;
}

static lx_status check_stream_name(const char *name) {
    if (!name || !*name || strchr(name, '/'))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "Rngs: invalid stream name '%s'", name ? name : "(null)");
    return LX_OK;
}

lx_status nnx_rngs_new(int n, const nnx_stream_spec *streams, nnx_rngs **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Rngs: out is NULL");
    *out = NULL;
    if (n < 0 || (n && !streams)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Rngs: bad stream list");
    for (int i = 0; i < n; i++) {
        LX_TRY(check_stream_name(streams[i].name));
        for (int j = 0; j < i; j++)
            if (strcmp(streams[i].name, streams[j].name) == 0)
                return lx_fail(LX_ERR_INVALID_ARGUMENT, "Rngs: stream '%s' given twice", streams[i].name);
    }
    nnx_module *r;
    LX_TRY(nnx_module_alloc(&nnx_Rngs, &r));
    lx_status s = LX_OK;
    for (int i = 0; i < n && s == LX_OK; i++) {
        lx_key k = streams[i].has_key ? streams[i].key : lx_key_from_seed(streams[i].seed);
        nnx_module *st;
        s = stream_new(streams[i].name, k, &st);
        if (s == LX_OK) {
            lx_value v = nnx_module_v(st);
            s = nnx_attrs_put(r, streams[i].name, &v);
            nnx_module_release(st);
        }
    }
    if (s != LX_OK) {
        nnx_module_release(r);
        return s;
    }
    *out = (nnx_rngs *)r;
    return LX_OK;
}

lx_status nnx_rngs_from_seed(int64_t seed, nnx_rngs **out) {
    nnx_stream_spec s = {"default", false, seed, {{0, 0}}};
    return nnx_rngs_new(1, &s, out);
}

static nnx_module *find_stream(const nnx_rngs *r, const char *name) {
    const nnx_module *m = (const nnx_module *)r;
    int i = nnx_attrs_find(m, name);
    if (i < 0) return NULL;
    nnx_module *s = nnx_module_from_value(&m->attrs->values[i]);
    return is_stream(s) ? s : NULL;
}

static lx_status check_rngs(const nnx_rngs *r, const char *fn) {
    if (!r) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: Rngs is NULL", fn);
    if (((const nnx_module *)r)->type != &nnx_Rngs)
        return lx_fail(LX_ERR_TYPE, "%s: a %s is not an Rngs", fn, ((const nnx_module *)r)->type->name);
    return LX_OK;
}

/* rngs[name], with Flax's fallback to 'default'. */
static lx_status lookup(nnx_rngs *r, const char *name, nnx_module **out) {
    LX_TRY(check_rngs(r, "Rngs"));
    if (!name) name = "default";
    nnx_module *s = find_stream(r, name);
    if (!s) s = find_stream(r, "default");
    if (!s) return lx_fail(LX_ERR_RNG, "No RngStream named '%s' found in Rngs.", name);
    *out = s;
    return LX_OK;
}

lx_status nnx_rngs_stream_draw(nnx_module *stream, lx_key *out) {
    if (!stream) return lx_fail(LX_ERR_INVALID_ARGUMENT, "RngStream: stream is NULL");
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "RngStream: out is NULL");
    if (!is_stream(stream)) return lx_fail(LX_ERR_TYPE, "RngStream: a %s is not an RngStream", stream->type->name);
    nnx_rng_stream *s = (nnx_rng_stream *)stream;
    lx_key key;
    uint32_t count;
    LX_TRY(stream_state(stream, &key, &count));
    lx_array *next = count_array(count + 1);
    if (!next) return lx_last_status();
    lx_status st = lx_variable_set_value(s->count, next, false);
    lx_release(next);
    if (st != LX_OK) return st;
    *out = lx_key_fold_in(key, count);
    return LX_OK;
}

lx_status nnx_rngs_draw(nnx_rngs *r, const char *stream, lx_key *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Rngs: out is NULL");
    nnx_module *s = NULL;
    LX_TRY(lookup(r, stream, &s));
    return nnx_rngs_stream_draw(s, out);
}

/* The concrete key and count of stream module `stream`. */
static lx_status stream_state(const nnx_module *stream, lx_key *key, uint32_t *count) {
    const nnx_rng_stream *s = (const nnx_rng_stream *)stream;
    lx_array *k = s->key ? lx_variable_get_value(s->key) : NULL;
    lx_array *c = s->count ? lx_variable_get_value(s->count) : NULL;
    if (!k || !c || lx_is_abstract(k) || lx_is_abstract(c) || k->dtype != LX_U32 || k->size != 2 ||
        c->dtype != LX_U32 || c->size != 1)
        return lx_fail(LX_ERR_RNG, "RngStream '%s' has no concrete uint32[2] key and uint32 count",
                       s->cfg.tag ? s->cfg.tag : "?");
    if (key) *key = (lx_key){{lx_u32(k)[0], lx_u32(k)[1]}};
    if (count) *count = lx_u32(c)[0];
    return LX_OK;
}

lx_status nnx_rngs_stream_count(const nnx_rngs *r, const char *stream, uint32_t *count) {
    if (!count) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Rngs: count is NULL");
    nnx_module *s = NULL;
    LX_TRY(lookup((nnx_rngs *)r, stream, &s));
    return stream_state(s, NULL, count);
}

lx_status nnx_rngs_stream_key(const nnx_rngs *r, const char *stream, lx_key *key) {
    if (!key) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Rngs: key is NULL");
    nnx_module *s = NULL;
    LX_TRY(lookup((nnx_rngs *)r, stream, &s));
    return stream_state(s, key, NULL);
}

bool nnx_rngs_has(const nnx_rngs *r, const char *stream) {
    return r && stream && ((const nnx_module *)r)->type == &nnx_Rngs && find_stream(r, stream) != NULL;
}

int nnx_rngs_num_streams(const nnx_rngs *r) {
    if (!r || ((const nnx_module *)r)->type != &nnx_Rngs) return 0;
    const nnx_module *m = (const nnx_module *)r;
    int n = 0;
    for (int i = 0; i < nnx_attr_count(m); i++)
        if (is_stream(nnx_module_from_value(&m->attrs->values[i]))) n++;
    return n;
}

const char *nnx_rngs_stream_name(const nnx_rngs *r, int i) {
    if (!r || ((const nnx_module *)r)->type != &nnx_Rngs) return NULL;
    const nnx_module *m = (const nnx_module *)r;
    for (int j = 0; j < nnx_attr_count(m); j++)
        if (is_stream(nnx_module_from_value(&m->attrs->values[j])) && i-- == 0) return m->attrs->names[j];
    return NULL;
}

static lx_status fork_stream(nnx_module *parent, nnx_module **out) {
    lx_key k;
    LX_TRY(nnx_rngs_stream_draw(parent, &k));
    return stream_new(((nnx_rng_stream *)parent)->cfg.tag, k, out);
}

lx_status nnx_rngs_fork_stream(nnx_rngs *r, const char *stream, nnx_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Rngs: out is NULL");
    *out = NULL;
    nnx_module *s = NULL;
    LX_TRY(lookup(r, stream, &s));
    /* Like Flax, the fork keeps the tag of the stream it came from ('default' on fallback). */
    return fork_stream(s, out);
}

lx_status nnx_rngs_fork(nnx_rngs *r, nnx_rngs **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Rngs.fork: out is NULL");
    *out = NULL;
    LX_TRY(check_rngs(r, "Rngs.fork"));
    nnx_module *src = (nnx_module *)r, *dst;
    LX_TRY(nnx_module_alloc(&nnx_Rngs, &dst));
    lx_status s = LX_OK;
    for (int i = 0; i < nnx_attr_count(src) && s == LX_OK; i++) {
        nnx_module *ps = nnx_module_from_value(&src->attrs->values[i]);
        if (!is_stream(ps)) continue;
        nnx_module *ns;
        s = fork_stream(ps, &ns);
        if (s == LX_OK) {
            lx_value v = nnx_module_v(ns);
            s = nnx_attrs_put(dst, src->attrs->names[i], &v);
            nnx_module_release(ns);
        }
    }
    if (s != LX_OK) {
        nnx_module_release(dst);
        return s;
    }
    *out = (nnx_rngs *)dst;
    return LX_OK;
}

typedef struct reseed_ctx {
    const char *tag;
    lx_key key;
    int n;
    lx_status status;
} reseed_ctx;

static lx_status reseed_visit(const char *path, const lx_value *node, void *user) {
    reseed_ctx *cx = user;
    nnx_module *m = nnx_module_from_value(node);
    if (!is_stream(m)) return LX_OK;
    nnx_rng_stream *s = (nnx_rng_stream *)m;
    if (!s->cfg.tag || strcmp(s->cfg.tag, cx->tag) != 0 || !s->key || !s->count) return LX_OK;
    /* Flax: rngs = Rngs(**{tag: seed}); each matching stream in iter_graph order gets
     * rngs[tag](), i.e. fold_in(key(seed), i) for the i-th one, with its count reset. */
    lx_array *k = key_array(lx_key_fold_in(cx->key, (uint32_t)cx->n)), *c = count_array(0);
    lx_status st = k && c ? LX_OK : lx_last_status();
    if (st == LX_OK) st = lx_variable_set_value(s->key, k, false);
    if (st == LX_OK) st = lx_variable_set_value(s->count, c, false);
    lx_release(k);
    lx_release(c);
    cx->n++;
    return st;
}

lx_status nnx_rngs_reseed(nnx_module *m, const char *stream, int64_t seed) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "reseed: module is NULL");
    LX_TRY(check_stream_name(stream));
    reseed_ctx cx = {stream, lx_key_from_seed(seed), 0, LX_OK};
    return nnx_iter_graph(m, reseed_visit, &cx);
}
