/* Qwix-style quantization rules matched against module paths, and a traced dry run (quant.h). */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/intercept.h"
#include "linnx/quant.h"
#include "frame_internal.h"
#include "quant_internal.h"

typedef struct {
    lx_qt_rule r;   /* strings owned */
    regex_t re;
} crule;

struct lx_qt_rules {
    int n;
    crule *v;
};

static char *dup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static lx_status check_qtype(int i, const char *what, const char *q) {
    if (!q || strcmp(q, "int8") == 0) return LX_OK;
    return lx_fail(LX_ERR_UNSUPPORTED, "quantization rule %d: %s '%s' is not supported (supported: int8)", i, what, q);
}

static void free_rules(crule *v, int n) {
    for (int i = 0; i < n; i++) {
        regfree(&v[i].re);
        free((char *)v[i].r.module_path);
        free((char *)v[i].r.op_names);
        free((char *)v[i].r.weight_qtype);
        free((char *)v[i].r.act_qtype);
    }
    free(v);
}

lx_status lx_qt_rules_compile(const lx_qt_rule *rules, int n, lx_qt_rules **out) {
    if (n < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_rules_compile: the rule count must be >= 0, got %d", n);
    if (!out || (n > 0 && !rules)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_rules_compile: NULL argument");
    for (int i = 0; i < n; i++) { /* everything checked before anything is built */
        LX_TRY(check_qtype(i, "weight_qtype", rules[i].weight_qtype));
        LX_TRY(check_qtype(i, "act_qtype", rules[i].act_qtype));
        if (rules[i].tile_size < 0)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "quantization rule %d: tile_size must be >= 0, got %lld", i,
                           (long long)rules[i].tile_size);
        if (rules[i].act_static_scale && !rules[i].act_qtype) /* Qwix's _init_rule: "Invalid rule" */
            return lx_fail(LX_ERR_INVALID_ARGUMENT,
                           "quantization rule %d: act_static_scale needs act_qtype (a static scale quantizes the "
                           "activations)", i);
    }
    crule *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    lx_qt_rules *r = malloc(sizeof *r);
    if (!v || !r) {
        free(v), free(r);
        return lx_fail(LX_ERR_NO_MEMORY, "qt_rules_compile: out of memory");
    }
    for (int i = 0; i < n; i++) {
        const char *src = rules[i].module_path ? rules[i].module_path : ".*";
        size_t len = strlen(src) + 5;
        char *anch = malloc(len);
        if (!anch) {
            free_rules(v, i), free(r);
            return lx_fail(LX_ERR_NO_MEMORY, "qt_rules_compile: out of memory");
        }
        snprintf(anch, len, "^(%s)$", src); /* a full match, like Qwix's re.fullmatch */
        int e = regcomp(&v[i].re, anch, REG_EXTENDED | REG_NOSUB);
        free(anch);
        if (e != 0) {
            char msg[160];
            regerror(e, &v[i].re, msg, sizeof msg);
            free_rules(v, i), free(r);
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "quantization rule %d: module_path '%s' is not a valid regex: %s", i,
                           src, msg);
        }
        v[i].r = rules[i];
        v[i].r.module_path = dup(src);
        v[i].r.op_names = dup(rules[i].op_names);
        v[i].r.weight_qtype = dup(rules[i].weight_qtype);
        v[i].r.act_qtype = dup(rules[i].act_qtype);
        if (!v[i].r.module_path || (rules[i].op_names && !v[i].r.op_names) ||
            (rules[i].weight_qtype && !v[i].r.weight_qtype) || (rules[i].act_qtype && !v[i].r.act_qtype)) {
            free_rules(v, i + 1), free(r);
            return lx_fail(LX_ERR_NO_MEMORY, "qt_rules_compile: out of memory");
        }
    }
    r->n = n;
    r->v = v;
    *out = r;
    return LX_OK;
}

void lx_qt_rules_free(lx_qt_rules *r) {
    if (!r) return;
    free_rules(r->v, r->n);
    free(r);
}

int lx_qt_rules_count(const lx_qt_rules *r) { return r ? r->n : 0; }
const lx_qt_rule *lx_qt_rules_get(const lx_qt_rules *r, int i) { return r && i >= 0 && i < r->n ? &r->v[i].r : NULL; }

/* Is `op` (or op followed by its count) one of the comma-separated names? */
static bool op_listed(const char *list, const char *op, int count) {
    if (!list || !*list) return true;
    char counted[64];
    snprintf(counted, sizeof counted, "%s%d", op, count);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && t[-1] == ' ') t--;
        size_t n = (size_t)(t - p);
        if (n && ((strlen(op) == n && strncmp(p, op, n) == 0) || (strlen(counted) == n && strncmp(p, counted, n) == 0)))
            return true;
        p = e;
    }
    return false;
}

int lx_qt_rules_match(const lx_qt_rules *r, const char *path, const char *op, int count) {
    if (!r || !path || !op) return -1;
    for (int i = 0; i < r->n; i++)
        if (op_listed(r->v[i].r.op_names, op, count) && regexec(&r->v[i].re, path, 0, NULL, 0) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------------ trace */

struct lx_qt_trace {
    const lx_qt_rules *rules;
    int handle;
    bool active, oom;   /* oom: a hit was not recorded (here, or its event dropped: intercept.h) */
    uint64_t dropped0;  /* lx_interceptor_dropped() at begin */
    lx_qt_hit *hits;
    int n, cap;
    lx_qt_counters ctr;
};

/* Is `anc` the path itself or an ancestor of it ("" is everyone's ancestor)? */
static bool within(const char *anc, const char *path) {
    size_t n = strlen(anc);
    return n == 0 || (strncmp(anc, path, n) == 0 && (path[n] == '\0' || path[n] == '/'));
}

/* The op's number within its module's current call: counters survive while events stay inside
 * the module's subtree (its children run between its own ops) and restart once an event comes
 * from outside it (the module returned; the next call counts from 0 again). */
int lx_qt_next_count(lx_qt_counters *t, const char *path, const char *op) {
    int k = 0;
    uint64_t outer = lx_frame_outer_calls_();
    bool fresh = outer != t->outer; /* a new outermost call: every count restarts */
    t->outer = outer;
    for (int i = 0; i < t->n; i++) {
        if (!fresh && within(t->v[i].path, path)) {
            t->v[k++] = t->v[i];
        } else {
            free(t->v[i].path);
            free(t->v[i].op);
        }
    }
    t->n = k;
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->v[i].path, path) == 0 && strcmp(t->v[i].op, op) == 0) return t->v[i].count++;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        lx_qt_counter *c = realloc(t->v, (size_t)cap * sizeof *c);
        if (!c) return -1;
        t->v = c, t->cap = cap;
    }
    lx_qt_counter c = {dup(path), dup(op), 1};
    if (!c.path || !c.op) {
        free(c.path), free(c.op);
        return -1;
    }
    t->v[t->n++] = c;
    return 0;
}

void lx_qt_counters_free(lx_qt_counters *c) {
    for (int i = 0; i < c->n; i++) free(c->v[i].path), free(c->v[i].op);
    free(c->v);
    c->v = NULL;
    c->n = c->cap = 0;
}

static void on_event(const lx_intercept_event *ev, void *user) {
    lx_qt_trace *t = user;
    if (!t->active || t->oom) return; /* after a miss the trace is not returned: record no more */
    int count = lx_qt_next_count(&t->ctr, ev->path, ev->op);
    if (count < 0) {
        t->oom = true;
        return;
    }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 32;
        lx_qt_hit *h = realloc(t->hits, (size_t)cap * sizeof *h);
        if (!h) {
            t->oom = true;
            return;
        }
        t->hits = h, t->cap = cap;
    }
    char counted[80];
    snprintf(counted, sizeof counted, "%s%d", ev->op, count);
    lx_qt_hit h = {dup(ev->path), dup(counted), lx_qt_rules_match(t->rules, ev->path, ev->op, count), false};
    for (int i = 0; i < ev->ninputs; i++) h.weight = h.weight || ev->roles[i] == LX_OPERAND_PARAM;
    if (!h.path || !h.op) {
        free(h.path), free(h.op);
        t->oom = true;
        return;
    }
    t->hits[t->n++] = h;
}

lx_status lx_qt_trace_begin(const lx_qt_rules *rules, lx_qt_trace **out) {
    if (!rules || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_trace_begin: NULL argument");
    lx_qt_trace *t = calloc(1, sizeof *t);
    if (!t) return lx_fail(LX_ERR_NO_MEMORY, "qt_trace_begin: out of memory");
    t->rules = rules;
    lx_status s = lx_interceptor_add(on_event, t, &t->handle);
    if (s != LX_OK) {
        free(t);
        return s;
    }
    t->active = true;
    t->dropped0 = lx_interceptor_dropped();
    *out = t;
    return LX_OK;
}

static void append(char *buf, size_t cap, size_t *len, const char *s) {
    if (!buf || cap == 0) return;
    size_t n = strlen(s);
    if (*len + n + 1 > cap) n = cap - *len - 1;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
}

int lx_qt_trace_end(lx_qt_trace *t, char *warn, size_t cap) {
    if (!t) return 0;
    if (t->active) {
        lx_interceptor_remove(t->handle);
        if (lx_interceptor_dropped() != t->dropped0) t->oom = true;
    }
    t->active = false;
    size_t len = 0;
    if (warn && cap) warn[0] = '\0';
    if (t->oom) {
        /* a trace short of some hit would report rules as matching nothing: none is returned */
        for (int i = 0; i < t->n; i++) free(t->hits[i].path), free(t->hits[i].op);
        t->n = 0;
        lx_fail(LX_ERR_NO_MEMORY, "qt_trace_end: out of memory: the trace missed ops");
        return -1;
    }
    int unmatched = 0;
    for (int r = 0; r < t->rules->n; r++) {
        bool hit = false;
        for (int i = 0; i < t->n && !hit; i++) hit = t->hits[i].rule == r;
        if (hit) continue;
        /* earlier rules may shadow it: say so only by what it would have matched */
        unmatched++;
        char line[512];
        snprintf(line, sizeof line, "%srule %d (module_path '%s'%s%s%s) matched nothing; paths seen:", len ? "\n" : "", r,
                 t->rules->v[r].r.module_path, t->rules->v[r].r.op_names ? ", op_names '" : "",
                 t->rules->v[r].r.op_names ? t->rules->v[r].r.op_names : "", t->rules->v[r].r.op_names ? "'" : "");
        append(warn, cap, &len, line);
        for (int i = 0; i < t->n; i++) {
            bool dupe = false;
            for (int j = 0; j < i && !dupe; j++)
                dupe = strcmp(t->hits[j].path, t->hits[i].path) == 0 && strcmp(t->hits[j].op, t->hits[i].op) == 0;
            if (dupe) continue;
            snprintf(line, sizeof line, " %s:%s", t->hits[i].path[0] ? t->hits[i].path : "(root)", t->hits[i].op);
            append(warn, cap, &len, line);
        }
    }
    return unmatched;
}

int lx_qt_trace_count(const lx_qt_trace *t) { return t ? t->n : 0; }
const lx_qt_hit *lx_qt_trace_get(const lx_qt_trace *t, int i) { return t && i >= 0 && i < t->n ? &t->hits[i] : NULL; }

void lx_qt_trace_free(lx_qt_trace *t) {
    if (!t) return;
    if (t->active) lx_interceptor_remove(t->handle);
    for (int i = 0; i < t->n; i++) free(t->hits[i].path), free(t->hits[i].op);
    lx_qt_counters_free(&t->ctr);
    free(t->hits);
    free(t);
}
