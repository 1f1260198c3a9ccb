/* A recursive-descent parser for Flax-like constructor strings (tools/spec.h). */
#include "spec.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPEC_DICT_MAX 64

typedef struct parser {
    const char *text, *p;
    char *err;
    size_t errcap;
    bool failed, oom;
    size_t errcol; /* 0-based offset of the failure */
} parser;

static void fail(parser *ps, const char *fmt, ...) {
    if (ps->failed) return;
    ps->failed = true;
    ps->oom = strcmp(fmt, "out of memory") == 0;
    ps->errcol = (size_t)(ps->p - ps->text);
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errcap, "%s at column %zu", msg, ps->errcol + 1);
}

static void skip(parser *ps) {
    while (isspace((unsigned char)*ps->p)) ps->p++;
}

static spec_node *node(parser *ps, spec_kind k) {
    spec_node *n = calloc(1, sizeof *n);
    if (!n) fail(ps, "out of memory");
    else n->kind = k;
    return n;
}

static char *dup_range(const char *a, const char *b) {
    char *s = malloc((size_t)(b - a) + 1);
    if (s) {
        memcpy(s, a, (size_t)(b - a));
        s[b - a] = 0;
    }
    return s;
}

static spec_node *value(parser *ps, int depth);

static bool push_item(parser *ps, spec_node *t, spec_node *item) {
    if (t->n == t->cap) { /* doubling: a spec of n items costs O(n), not O(n^2) copies */
        int ncap = t->cap ? t->cap * 2 : 4;
        spec_node **p = realloc(t->items, sizeof *p * (size_t)ncap);
        if (!p) {
            fail(ps, "out of memory");
            spec_free(item);
            return false;
        }
        t->items = p;
        t->cap = ncap;
    }
    t->items[t->n++] = item;
    return true;
}

/* '(' already consumed for tuples; `close` is ')' or ']' */
static spec_node *tuple(parser *ps, char close, bool paren, int depth) {
    spec_node *t = node(ps, SPEC_TUPLE);
    if (!t) return NULL;
    bool comma = false;
    skip(ps);
    while (!ps->failed && *ps->p != close) {
        spec_node *item = value(ps, depth + 1);
        if (!item || !push_item(ps, t, item)) break;
        skip(ps);
        if (*ps->p == ',') {
            ps->p++;
            comma = true;
            skip(ps);
        } else if (*ps->p != close) {
            fail(ps, "expected ',' or '%c'", close);
        }
    }
    if (!ps->failed && *ps->p == close) ps->p++;
    else fail(ps, "expected '%c'", close);
    if (ps->failed) {
        spec_free(t);
        return NULL;
    }
    if (paren && t->n == 1 && !comma) { /* (x) is x */
        spec_node *one = t->items[0];
        t->n = 0;
        spec_free(t);
        return one;
    }
    return t;
}

/* '{' already consumed: {key: value, ...} with keys strings, dotted names (nn.PARTITION_NAME,
 * nnx.Param, ...) or tuples of those (NNX filter unions); stored as items key0, value0, key1, value1, ... Python would keep the last of two
 * equal keys; here that is a mistake in the spec and an error, as are other key kinds. */
static spec_node *dict(parser *ps, int depth) {
    spec_node *d = node(ps, SPEC_DICT);
    if (!d) return NULL;
    skip(ps);
    while (!ps->failed && *ps->p != '}') {
        if (!*ps->p) break; /* reported below as unterminated */
        const char *kat = ps->p;
        spec_node *k = value(ps, depth + 1);
        if (!k) break;
        bool key_ok = k->kind == SPEC_STR || k->kind == SPEC_NAME || k->kind == SPEC_TUPLE;
        for (int i = 0; k->kind == SPEC_TUPLE && i < k->n; i++) /* a filter union: (nnx.Param, 'dropout') */
            key_ok = key_ok && (k->items[i]->kind == SPEC_STR || k->items[i]->kind == SPEC_NAME);
        if (!key_ok) {
            char buf[80];
            ps->p = kat;
            fail(ps, "dict keys must be strings or names, not %s", spec_str(k, buf, sizeof buf));
            spec_free(k);
            break;
        }
        char kbuf[80], other[80];
        spec_str(k, kbuf, sizeof kbuf);
        if (d->n / 2 == SPEC_DICT_MAX) { /* the duplicate check stays linear in the input */
            ps->p = kat;
            fail(ps, "a dict of more than %d keys", SPEC_DICT_MAX);
        }
        for (int i = 0; i < d->n && !ps->failed; i += 2)
            if (!strcmp(spec_str(d->items[i], other, sizeof other), kbuf)) {
                ps->p = kat;
                fail(ps, "duplicate dict key %s", kbuf);
            }
        if (ps->failed) {
            spec_free(k);
            break;
        }
        if (!push_item(ps, d, k)) break; /* it freed k */
        skip(ps);
        if (*ps->p != ':') {
            fail(ps, *ps->p ? "expected ':' after a dict key" : "expected ':' after a dict key (unterminated dict)");
            break;
        }
        ps->p++;
        spec_node *v = value(ps, depth + 1);
        if (!v || !push_item(ps, d, v)) break;
        skip(ps);
        if (*ps->p == ',') {
            ps->p++;
            skip(ps);
        } else if (*ps->p != '}') {
            fail(ps, *ps->p ? "expected ',' or '}'" : "expected '}' (unterminated dict)");
        }
    }
    if (!ps->failed && *ps->p == '}') ps->p++;
    else fail(ps, "expected '}' (unterminated dict)");
    if (ps->failed) {
        spec_free(d);
        return NULL;
    }
    return d;
}

static spec_node *call_args(parser *ps, spec_node *c, int depth) {
    skip(ps);
    bool kw_seen = false;
    while (!ps->failed && *ps->p != ')') {
        const char *start = ps->p;
        char *kname = NULL;
        if (isalpha((unsigned char)*ps->p) || *ps->p == '_') {
            const char *q = ps->p;
            while (isalnum((unsigned char)*q) || *q == '_') q++;
            const char *r = q;
            while (isspace((unsigned char)*r)) r++;
            if (*r == '=' && r[1] != '=') {
                kname = dup_range(start, q);
                if (!kname) { /* never let a keyword become a positional argument */
                    fail(ps, "out of memory");
                    break;
                }
                ps->p = r + 1;
            }
        }
        if (!kname && kw_seen) {
            fail(ps, "positional argument follows keyword argument");
            break;
        }
        /* Python refuses a keyword given twice before any call (a SyntaxError); the last must not win */
        for (int i = 0; kname && i < c->nargs; i++)
            if (c->args[i].name && !strcmp(c->args[i].name, kname)) {
                ps->p = start;
                fail(ps, "keyword argument repeated: %s", kname);
                break;
            }
        if (ps->failed) {
            free(kname);
            break;
        }
        kw_seen = kw_seen || kname;
        spec_node *v = value(ps, depth + 1);
        if (!v) {
            free(kname);
            break;
        }
        if (c->nargs == c->argcap) { /* doubling, as push_item */
            int ncap = c->argcap ? c->argcap * 2 : 4;
            spec_arg *a = realloc(c->args, sizeof *a * (size_t)ncap);
            if (!a) {
                free(kname);
                spec_free(v);
                fail(ps, "out of memory");
                break;
            }
            c->args = a;
            c->argcap = ncap;
        }
        c->args[c->nargs].name = kname;
        c->args[c->nargs].value = v;
        c->nargs++;
        skip(ps);
        if (*ps->p == ',') {
            ps->p++;
            skip(ps);
        } else if (*ps->p != ')') {
            fail(ps, "expected ',' or ')'");
        }
    }
    if (!ps->failed) ps->p++;
    if (ps->failed) {
        spec_free(c);
        return NULL;
    }
    return c;
}

static spec_node *value(parser *ps, int depth) {
    skip(ps);
    if (depth > 64) {
        fail(ps, "nested too deeply");
        return NULL;
    }
    const char *p = ps->p;
    if (*p == '(' || *p == '[') {
        ps->p++;
        return tuple(ps, *p == '(' ? ')' : ']', *p == '(', depth);
    }
    if (*p == '{') {
        ps->p++;
        return dict(ps, depth);
    }
    if (p[0] == '.' && p[1] == '.' && p[2] == '.') { /* Ellipsis (StateAxes' "everything else") */
        ps->p += 3;
        spec_node *n = node(ps, SPEC_NAME);
        if (n && !(n->s = dup_range(p, p + 3))) {
            free(n);
            fail(ps, "out of memory");
            return NULL;
        }
        return n;
    }
    if (*p == '\'' || *p == '"') {
        char q = *p++;
        /* Find the end first and allocate the literal's own length: linear in the input, not
         * strlen(rest of input) per literal. */
        const char *e = p;
        while (*e && *e != q) e += (*e == '\\' && e[1]) ? 2 : 1;
        if (*e != q) {
            ps->p = e;
            fail(ps, "unterminated string");
            return NULL;
        }
        char *buf = malloc((size_t)(e - p) + 1);
        size_t n = 0;
        if (!buf) {
            fail(ps, "out of memory");
            return NULL;
        }
        while (p < e) {
            if (*p == '\\' && p + 1 < e) p++;
            buf[n++] = *p++;
        }
        buf[n] = 0;
        ps->p = p + 1;
        spec_node *s = node(ps, SPEC_STR);
        if (!s) {
            free(buf);
            return NULL;
        }
        s->s = buf;
        return s;
    }
    if (isdigit((unsigned char)*p) || ((*p == '-' || *p == '+' || *p == '.') && (isdigit((unsigned char)p[1]) || p[1] == '.'))) {
        const char *q = p;
        if (*q == '-' || *q == '+') q++;
        bool isf = false;
        while (isdigit((unsigned char)*q) || *q == '.' || *q == 'e' || *q == 'E' ||
               ((*q == '-' || *q == '+') && (q[-1] == 'e' || q[-1] == 'E'))) {
            if (*q == '.' || *q == 'e' || *q == 'E') isf = true;
            q++;
        }
        char *tok = dup_range(p, q), *end = NULL;
        spec_node *n = node(ps, isf ? SPEC_FLOAT : SPEC_INT);
        if (!tok || !n) {
            free(tok);
            free(n);
            fail(ps, "out of memory");
            return NULL;
        }
        errno = 0;
        if (isf) n->f = strtod(tok, &end);
        else n->i = strtoll(tok, &end, 10);
        bool bad = !end || *end || errno;
        free(tok);
        if (bad) {
            free(n);
            fail(ps, "bad number");
            return NULL;
        }
        ps->p = q;
        return n;
    }
    if (isalpha((unsigned char)*p) || *p == '_') {
        const char *q = p;
        while (isalnum((unsigned char)*q) || *q == '_' || (*q == '.' && (isalpha((unsigned char)q[1]) || q[1] == '_'))) q++;
        size_t len = (size_t)(q - p);
        ps->p = q;
        if ((len == 4 && !strncmp(p, "True", 4)) || (len == 5 && !strncmp(p, "False", 5))) {
            spec_node *b = node(ps, SPEC_BOOL);
            if (b) b->b = len == 4;
            return b;
        }
        if (len == 4 && !strncmp(p, "None", 4)) return node(ps, SPEC_NONE);
        spec_node *n = node(ps, SPEC_NAME);
        if (!n) return NULL;
        n->s = dup_range(p, q);
        if (!n->s) {
            free(n);
            fail(ps, "out of memory");
            return NULL;
        }
        skip(ps);
        if (*ps->p == '(') {
            ps->p++;
            n->kind = SPEC_CALL;
            return call_args(ps, n, depth);
        }
        return n;
    }
    fail(ps, *p ? "unexpected '%c'" : "unexpected end of input", *p);
    return NULL;
}

static int parse(const char *text, spec_node **out, char *err, size_t errcap, size_t *errcol) {
    parser ps = {text, text, err, errcap, false, false, 0};
    *out = NULL;
    if (errcap) err[0] = 0;
    spec_node *n = value(&ps, 0);
    if (n) {
        skip(&ps);
        if (*ps.p) fail(&ps, "unexpected '%c' after the spec", *ps.p);
    }
    if (ps.failed) {
        spec_free(n);
        if (errcol) *errcol = ps.errcol;
        return ps.oom ? SPEC_NO_MEMORY : SPEC_SYNTAX;
    }
    *out = n;
    return 0;
}

int spec_parse(const char *text, spec_node **out, char *err, size_t errcap) {
    return parse(text, out, err, errcap, NULL);
}

int spec_parse_cli(const char *cmd, const char *text, spec_node **out) {
    char err[256];
    size_t col = 0;
    int r = parse(text, out, err, sizeof err, &col);
    if (r == 0) return 0;
    if (r == SPEC_NO_MEMORY) {
        fprintf(stderr, "linnx: %s: out of memory\n", cmd);
        return 1; /* CLI_EXIT_FAILURE (tools/cli.h) */
    }
    /* An excerpt around the column: up to 40 characters before it, 20 after, `^` marking it;
     * control characters shown as '?', so the message stays one line. */
    size_t len = strlen(text), a = col > 40 ? col - 40 : 0, b = col + 20 < len ? col + 20 : len;
    char ex[80];
    size_t k = 0;
    for (size_t i = a; i <= b && k + 2 < sizeof ex; i++) {
        if (i == col) ex[k++] = '^';
        if (i < b) ex[k++] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
    }
    ex[k] = 0;
    fprintf(stderr, "linnx: %s: %s: %s%s%s\n", cmd, err, a > 0 ? "..." : "", ex, b < len ? "..." : "");
    return 2; /* CLI_EXIT_USAGE */
}

void spec_free(spec_node *n) {
    if (!n) return;
    free(n->s);
    for (int i = 0; i < n->n; i++) spec_free(n->items[i]);
    free(n->items);
    for (int i = 0; i < n->nargs; i++) {
        free(n->args[i].name);
        spec_free(n->args[i].value);
    }
    free(n->args);
    free(n->flat);
    free(n->strs);
    free(n);
}

const char *spec_suffix(const spec_node *n, const char *prefix) {
    if (!n || (n->kind != SPEC_NAME && n->kind != SPEC_CALL) || !n->s) return NULL;
    size_t k = strlen(prefix);
    return strncmp(n->s, prefix, k) == 0 ? n->s + k : NULL;
}

static int count_ints(const spec_node *n) {
    if (n->kind == SPEC_INT) return 1;
    if (n->kind != SPEC_TUPLE) return -1;
    int c = 0;
    for (int i = 0; i < n->n; i++) {
        int k = count_ints(n->items[i]);
        if (k < 0) return -1;
        c += k;
    }
    return c;
}

static void fill_ints(const spec_node *n, int64_t *out, int *k) {
    if (n->kind == SPEC_INT) {
        out[(*k)++] = n->i;
        return;
    }
    for (int i = 0; i < n->n; i++) fill_ints(n->items[i], out, k);
}

int spec_to_value(spec_node *n, lx_value *out, char *err, size_t errcap) {
    char buf[160];
    switch (n->kind) {
    case SPEC_NONE: *out = lx_none(); return 0;
    case SPEC_BOOL: *out = lx_bool_v(n->b); return 0;
    case SPEC_INT: *out = lx_int_v(n->i); return 0;
    case SPEC_FLOAT: *out = lx_float_v(n->f); return 0;
    case SPEC_STR: *out = lx_str_v(n->s); return 0;
    case SPEC_NAME: {
        static const char *const dt[] = {"jnp.", "np.", "jax.numpy.", "numpy."};
        for (size_t i = 0; i < sizeof dt / sizeof dt[0]; i++)
            if (!strncmp(n->s, dt[i], strlen(dt[i]))) {
                *out = lx_str_v(n->s + strlen(dt[i]));
                return 0;
            }
        break;
    }
    case SPEC_TUPLE: {
        int k = count_ints(n);
        if (k >= 0) {
            free(n->flat);
            n->flat = malloc(sizeof *n->flat * (size_t)(k ? k : 1));
            if (!n->flat) return SPEC_NO_MEMORY;
            int j = 0;
            fill_ints(n, n->flat, &j);
            *out = lx_ints_v(k, n->flat);
            return 0;
        }
        bool strs = true;
        for (int i = 0; i < n->n; i++) strs = strs && (n->items[i]->kind == SPEC_STR || n->items[i]->kind == SPEC_NONE);
        if (strs) {
            free(n->strs);
            n->strs = malloc(sizeof *n->strs * (size_t)(n->n ? n->n : 1));
            if (!n->strs) return SPEC_NO_MEMORY;
            for (int i = 0; i < n->n; i++) n->strs[i] = n->items[i]->kind == SPEC_STR ? n->items[i]->s : NULL;
            *out = lx_strs_v(n->n, n->strs);
            return 0;
        }
        break;
    }
    case SPEC_CALL:
    case SPEC_DICT: break;
    }
    snprintf(err, errcap, "unsupported value %s", spec_str(n, buf, sizeof buf));
    return SPEC_SYNTAX;
}

static size_t put(char *buf, size_t cap, size_t off, const char *fmt, ...) {
    if (off >= cap) return off;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + off, cap - off, fmt, ap);
    va_end(ap);
    return k < 0 ? off : off + (size_t)k;
}

static size_t render(const spec_node *n, char *buf, size_t cap, size_t off) {
    switch (n->kind) {
    case SPEC_NONE: return put(buf, cap, off, "None");
    case SPEC_BOOL: return put(buf, cap, off, n->b ? "True" : "False");
    case SPEC_INT: return put(buf, cap, off, "%lld", (long long)n->i);
    case SPEC_FLOAT: { /* as Python's repr: exact, and still a float when read back ("-0.0", "1e+20") */
        char f[40];
        snprintf(f, sizeof f, "%.17g", n->f);
        return put(buf, cap, off, "%s%s", f, strpbrk(f, ".eninf") ? "" : ".0");
    }
    case SPEC_STR: /* quotes and backslashes escaped, so the rendering reads back as the same string */
        off = put(buf, cap, off, "'");
        for (const char *c = n->s; *c; c++) off = put(buf, cap, off, *c == '\'' || *c == '\\' ? "\\%c" : "%c", *c);
        return put(buf, cap, off, "'");
    case SPEC_NAME: return put(buf, cap, off, "%s", n->s);
    case SPEC_TUPLE:
        off = put(buf, cap, off, "(");
        for (int i = 0; i < n->n; i++) {
            off = render(n->items[i], buf, cap, off);
            if (i + 1 < n->n || n->n == 1) off = put(buf, cap, off, n->n == 1 ? "," : ", ");
        }
        return put(buf, cap, off, ")");
    case SPEC_DICT:
        off = put(buf, cap, off, "{");
        for (int i = 0; i + 1 < n->n; i += 2) {
            off = render(n->items[i], buf, cap, off);
            off = put(buf, cap, off, ": ");
            off = render(n->items[i + 1], buf, cap, off);
            if (i + 2 < n->n) off = put(buf, cap, off, ", ");
        }
        return put(buf, cap, off, "}");
    case SPEC_CALL:
        off = put(buf, cap, off, "%s(", n->s);
        for (int i = 0; i < n->nargs; i++) {
            if (n->args[i].name) off = put(buf, cap, off, "%s=", n->args[i].name);
            off = render(n->args[i].value, buf, cap, off);
            if (i + 1 < n->nargs) off = put(buf, cap, off, ", ");
        }
        return put(buf, cap, off, ")");
    }
    return off;
}

const char *spec_str(const spec_node *n, char *buf, size_t cap) {
    if (cap) buf[0] = 0;
    if (n) render(n, buf, cap, 0);
    return buf;
}
