/* The shared part of `linnx grad` and `linnx train`: data, losses, models, printing, progress.
 * See train_cli.h. */
#include "train_cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "linnx/autodiff.h"
#include "linnx/box.h"
#include "linnx/checkpoint.h"
#include "linnx/distributed.h"
#include "linnx/losses.h"
#include "linnx/nnx_layers.h"
#include "linnx/optax.h"
#include "linnx/to_linen.h"
#include "linnx/to_nnx.h"
#include "linnx/train.h"
#include "linnx/variable.h"
#include "params.h"

/* ------------------------------------------------------------------ losses */

static const struct {
    const char *name;
    tc_loss_kind kind;
} LOSSES[] = {
    {"l2_loss", TC_L2_LOSS},
    {"squared_error", TC_SQUARED_ERROR},
    {"softmax_cross_entropy", TC_SOFTMAX_CE},
    {"softmax_cross_entropy_with_integer_labels", TC_SOFTMAX_CE_INT},
    {"sigmoid_binary_cross_entropy", TC_SIGMOID_BCE},
};
#define NLOSSES (sizeof LOSSES / sizeof LOSSES[0])

int tc_loss_parse(const char *name, const char *reduction, tc_loss *out) {
    const char *n = name;
    if (!strncmp(n, "optax.", 6)) n += 6;
    if (!strncmp(n, "losses.", 7)) n += 7;
    bool found = false;
    for (size_t i = 0; i < NLOSSES; i++)
        if (!strcmp(n, LOSSES[i].name)) {
            out->kind = LOSSES[i].kind;
            found = true;
        }
    if (!found)
        return cli_error("--loss: unknown loss '%s' (l2_loss, squared_error, softmax_cross_entropy, "
                         "softmax_cross_entropy_with_integer_labels, sigmoid_binary_cross_entropy)",
                         name);
    if (!reduction || !strcmp(reduction, "mean")) out->reduction = TC_MEAN;
    else if (!strcmp(reduction, "sum")) out->reduction = TC_SUM;
    else if (!strcmp(reduction, "none")) out->reduction = TC_NONE;
    else return cli_error("--reduction: '%s' is not mean, sum or none", reduction);
    return 0;
}

lx_array *tc_loss_eval(const tc_loss *l, lx_array *pred, lx_array *y) {
    lx_array *e = NULL;
    switch (l->kind) {
    case TC_L2_LOSS: e = optax_l2_loss(pred, y); break;
    case TC_SQUARED_ERROR: e = optax_squared_error(pred, y); break;
    case TC_SOFTMAX_CE: e = optax_softmax_cross_entropy(pred, y); break;
    case TC_SOFTMAX_CE_INT: e = optax_softmax_cross_entropy_with_integer_labels(pred, y); break;
    case TC_SIGMOID_BCE: e = optax_sigmoid_binary_cross_entropy(pred, y); break;
    }
    if (l->reduction == TC_MEAN) return lx_mean(e, LX_ALL_AXES, false);
    if (l->reduction == TC_SUM) return lx_sum(e, LX_ALL_AXES, false);
    return e;
}

/* ------------------------------------------------------------------ data */

void tc_data_free(tc_data *d) {
    lx_release(d->x);
    lx_release(d->y);
    d->x = d->y = NULL;
}

/* The int32 range every integer label and token id lives in (JAX's default int dtype). */
#define I32_RANGE "-2147483648..2147483647"

/* v as an int32 label or token id: 0 with *out, 1 when v is not an integer (NaN included), 2 when
 * it is outside int32 (the infinities included). */
static int int32_of(double v, int32_t *out) {
    if (v != floor(v)) return 1;
    if (v < -2147483648.0 || v > 2147483647.0) return 2;
    *out = (int32_t)v;
    return 0;
}

/* VALUES reshaped to SHAPE (the element counts must agree; `()` is one value, a 0-d array); int32
 * when `ints`. */
static int array_arg(const char *name, const cli_opt *vals, const cli_opt *shape, bool ints, lx_array **out) {
    char sopt[32];
    snprintf(sopt, sizeof sopt, "%s-shape", name);
    if (!vals->seen) return cli_error("--%s is required (or --data)", name);
    double *v = NULL;
    int64_t n = 0;
    int rc = cli_data_list_new(name, vals->value, &v, &n);
    if (rc) return rc;
    int64_t dims[LX_MAX_DIMS];
    int ndim = 1;
    dims[0] = n;
    if (shape->seen && cli_shape(sopt, shape->value, dims, &ndim)) {
        free(v);
        return CLI_EXIT_USAGE;
    }
    int64_t size = 1;
    for (int i = 0; i < ndim; i++) size *= dims[i];
    if (size != n) {
        char sb[128];
        free(v);
        return cli_error("--%s: %lld values do not fill --%s %s (%lld elements)", name, (long long)n, sopt,
                         lx_shape_str(ndim, dims, sb, sizeof sb), (long long)size);
    }
    lx_array *a = lx_array_new(ints ? LX_I32 : LX_F32, ndim, dims);
    if (!a) {
        free(v);
        return cli_lib_error();
    }
    for (int64_t i = 0; i < n; i++) {
        if (ints) {
            int bad = int32_of(v[i], &lx_i32(a)[i]);
            if (bad) {
                double b = v[i];
                lx_release(a);
                free(v);
                return bad == 1 ? cli_error("--%s: %.9g is not an integer label", name, cli_num(b))
                                : cli_error("--%s: %.9g is outside the int32 range of integer labels (" I32_RANGE ")",
                                            name, cli_num(b));
            }
        } else {
            lx_f32(a)[i] = (float)v[i];
        }
    }
    free(v);
    *out = a;
    return 0;
}

/* The .npy header: numpy's reader takes ast.literal_eval of it, which must give a dict whose keys
 * are exactly 'descr', 'fortran_order' and 'shape', fortran_order a bool and shape a tuple of ints
 * (numpy.lib.format._read_array_header). This reads that Python literal strictly: whitespace
 * between tokens, either quote, a value in parentheses, ints with an optional sign, underscores
 * and 0x/0o/0b forms (and, in versions 1.0 and 2.0, the 'L' suffix numpy's filter drops from
 * Python 2 headers), a trailing comma. Anything numpy would not parse, a key twice (Python keeps
 * the last: refused here rather than read either way), another key, or a value of another kind is
 * an error; so are string escapes, prefixes and concatenation, comments and line continuations
 * (valid Python, never written by numpy: refused, not read). Nesting is bounded (32). */
typedef struct npy_hdr {
    const char *p, *end;
    bool py2_longs;   /* versions 1.0 and 2.0 */
    const char *err;  /* the first error */
} npy_hdr;

typedef struct npy_val {
    enum { NV_STR, NV_INT, NV_BOOL, NV_NONE, NV_TUPLE, NV_OTHER } kind;
    const char *s;     /* NV_STR: the characters between the quotes */
    size_t len;
    int64_t i;         /* NV_INT (big: outside int64) / NV_BOOL */
    bool big;
    int n;             /* NV_TUPLE: items; all ints: ints[] (the first LX_MAX_DIMS + 1) */
    bool all_ints, any_big, any_neg;
    int64_t ints[LX_MAX_DIMS + 1];
} npy_val;

static bool nh_fail(npy_hdr *h, const char *what) {
    if (!h->err) h->err = what;
    return false;
}

static void nh_ws(npy_hdr *h) {
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r' || *h->p == '\f')) h->p++;
}

static bool nh_ident(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* A Python int literal (decinteger | 0x.. | 0o.. | 0b.., '_' between digits). */
static bool nh_int(npy_hdr *h, npy_val *v) {
    const char *q = h->p;
    int base = 10;
    if (q + 1 < h->end && q[0] == '0' && strchr("xXoObB", q[1])) {
        base = q[1] == 'x' || q[1] == 'X' ? 16 : q[1] == 'o' || q[1] == 'O' ? 8 : 2;
        q += 2;
        if (q < h->end && *q == '_') q++; /* 0x_1f is valid Python */
    }
    const char *digits = q;
    bool leading_zero = base == 10 && *q == '0', nonzero = false, big = false;
    uint64_t acc = 0;
    for (;;) {
        if (q >= h->end) break;
        int d = isdigit((unsigned char)*q) ? *q - '0' : isxdigit((unsigned char)*q) ? 10 + (tolower((unsigned char)*q) - 'a') : 99;
        if (d >= base) break;
        if (d) nonzero = true;
        if (acc > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) big = true;
        else acc = acc * (uint64_t)base + (uint64_t)d;
        q++;
        if (q + 1 < h->end && *q == '_' && isxdigit((unsigned char)q[1])) q++; /* one '_' between digits */
    }
    if (q == digits) return nh_fail(h, "cannot parse the header: bad integer");
    /* 0004 is a SyntaxError in Python 3 (leading zeros only for 0, 00, ...) */
    if (leading_zero && nonzero) return nh_fail(h, "cannot parse the header: an integer with leading zeros");
    if (q < h->end && (*q == '.' || *q == 'e' || *q == 'E' || *q == 'j' || *q == 'J')) {
        v->kind = NV_OTHER; /* a float or complex: a valid literal, not an int */
        q++;
        while (q < h->end && (nh_ident(*q) || *q == '.' || *q == '+' || *q == '-')) q++;
        h->p = q;
        return true;
    }
    h->p = q;
    if (h->py2_longs) { /* numpy's _filter_header: a NAME token 'L' after a number is dropped */
        const char *r = q;
        while (r < h->end && (*r == ' ' || *r == '\t')) r++;
        if (r < h->end && *r == 'L' && (r + 1 >= h->end || !nh_ident(r[1]))) h->p = r + 1;
    }
    if (h->p < h->end && nh_ident(*h->p)) return nh_fail(h, "cannot parse the header: bad integer");
    v->kind = NV_INT;
    v->big = big || acc > (uint64_t)INT64_MAX;
    v->i = v->big ? INT64_MAX : (int64_t)acc;
    return true;
}

static bool nh_value(npy_hdr *h, npy_val *v, int depth) {
    memset(v, 0, sizeof *v);
    nh_ws(h);
    if (depth > 32) return nh_fail(h, "the header nests too deeply");
    if (h->p >= h->end) return nh_fail(h, "cannot parse the header: it ends inside the dict");
    char c = *h->p;
    if (c == '\'' || c == '"') {
        const char *q = h->p + 1;
        if (q + 1 < h->end && q[0] == c && q[1] == c) return nh_fail(h, "a triple-quoted string in the header is not supported");
        while (q < h->end && *q != c && *q != '\\' && *q != '\n' && *q != '\r' && *q != '\0') q++;
        if (q >= h->end || *q != c) return nh_fail(h, "cannot parse the header: a bad string");
        v->kind = NV_STR;
        v->s = h->p + 1;
        v->len = (size_t)(q - h->p - 1);
        h->p = q + 1;
        nh_ws(h);
        if (h->p < h->end && (*h->p == '\'' || *h->p == '"'))
            return nh_fail(h, "adjacent strings in the header are not supported");
        return true;
    }
    if (c == '+' || c == '-') { /* literal_eval takes one unary sign on a number */
        h->p++;
        nh_ws(h);
        if (h->p >= h->end || !isdigit((unsigned char)*h->p)) return nh_fail(h, "cannot parse the header: a sign without a number");
        if (!nh_int(h, v)) return false;
        if (v->kind == NV_INT && c == '-' && v->i != 0) v->i = -v->i;
        return true;
    }
    if (isdigit((unsigned char)c)) return nh_int(h, v);
    if (c == '(') { /* (), (x), (x,), (x, y, ...) */
        h->p++;
        nh_ws(h);
        if (h->p < h->end && *h->p == ')') {
            h->p++;
            v->kind = NV_TUPLE, v->all_ints = true;
            return true;
        }
        npy_val item;
        if (!nh_value(h, &item, depth + 1)) return false;
        nh_ws(h);
        if (h->p < h->end && *h->p == ')') { /* parentheses around one value */
            h->p++;
            *v = item;
            return true;
        }
        v->kind = NV_TUPLE, v->all_ints = true;
        for (;;) {
            if (item.kind != NV_INT) v->all_ints = false;
            else {
                if (v->n <= LX_MAX_DIMS) v->ints[v->n] = item.i;
                v->any_big |= item.big, v->any_neg |= item.i < 0;
            }
            v->n++;
            nh_ws(h);
            if (h->p >= h->end || (*h->p != ',' && *h->p != ')')) return nh_fail(h, "cannot parse the header: expected ',' or ')'");
            if (*h->p++ == ')') return true;
            nh_ws(h);
            if (h->p < h->end && *h->p == ')') {
                h->p++;
                return true;
            }
            if (!nh_value(h, &item, depth + 1)) return false;
        }
    }
    if (isalpha((unsigned char)c) || c == '_') {
        const char *q = h->p;
        while (q < h->end && nh_ident(*q)) q++;
        size_t n = (size_t)(q - h->p);
        if (n == 4 && !memcmp(h->p, "True", 4)) v->kind = NV_BOOL, v->i = 1;
        else if (n == 5 && !memcmp(h->p, "False", 5)) v->kind = NV_BOOL, v->i = 0;
        else if (n == 4 && !memcmp(h->p, "None", 4)) v->kind = NV_NONE;
        else return nh_fail(h, "cannot parse the header: a name that is not True, False or None");
        h->p = q;
        return true;
    }
    if (c == '[' || c == '{') return nh_fail(h, "a list or dict value in the header (a structured dtype?) is not supported");
    return nh_fail(h, "cannot parse the header: unexpected character");
}

/* The three values, or *err. */
static bool npy_header(npy_hdr *h, npy_val *descr, npy_val *fo, npy_val *shape) {
    bool seen[3] = {false, false, false};
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t')) h->p++;
    if (h->p >= h->end || *h->p != '{') return nh_fail(h, "the header is not a dictionary");
    h->p++;
    for (;;) {
        nh_ws(h);
        if (h->p < h->end && *h->p == '}') break;
        npy_val key, val;
        if (!nh_value(h, &key, 1)) return false;
        nh_ws(h);
        if (h->p >= h->end || *h->p != ':') return nh_fail(h, "cannot parse the header: expected ':'");
        h->p++;
        if (!nh_value(h, &val, 1)) return false;
        static const char *const names[3] = {"descr", "fortran_order", "shape"};
        int k = -1;
        for (int j = 0; key.kind == NV_STR && j < 3; j++)
            if (key.len == strlen(names[j]) && !memcmp(key.s, names[j], key.len)) k = j;
        if (k < 0) return nh_fail(h, "the header's keys must be exactly 'descr', 'fortran_order' and 'shape'");
        if (seen[k]) return nh_fail(h, k == 0 ? "the header gives 'descr' twice" : k == 1 ? "the header gives 'fortran_order' twice"
                                                                                       : "the header gives 'shape' twice");
        seen[k] = true;
        *(k == 0 ? descr : k == 1 ? fo : shape) = val;
        nh_ws(h);
        if (h->p < h->end && *h->p == ',') {
            h->p++;
            continue;
        }
        if (h->p < h->end && *h->p == '}') break;
        return nh_fail(h, "cannot parse the header: expected ',' or '}'");
    }
    h->p++; /* '}' */
    nh_ws(h);
    if (h->p != h->end) return nh_fail(h, "cannot parse the header: characters after the dict");
    h->p = NULL; /* the checks below are of the whole dict: no byte offset */
    if (!seen[0] || !seen[1] || !seen[2])
        return nh_fail(h, "the header's keys must be exactly 'descr', 'fortran_order' and 'shape'");
    if (descr->kind != NV_STR) return nh_fail(h, "the header's descr is not a dtype string (a structured dtype?)");
    if (fo->kind != NV_BOOL) return nh_fail(h, "the header's fortran_order is not a valid bool (True or False)");
    if (shape->kind != NV_TUPLE || !shape->all_ints) return nh_fail(h, "the header's shape is not valid (a tuple of ints)");
    if (shape->n > LX_MAX_DIMS) return nh_fail(h, "the header's shape has more dimensions than linnx arrays hold");
    if (shape->any_neg) return nh_fail(h, "the header's shape has a negative dimension");
    if (shape->any_big) return nh_fail(h, "the header's shape has a dimension outside int64");
    return true;
}

lx_array *tc_npy_read(const char *path, int *rc) {
    *rc = CLI_EXIT_USAGE;
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("--data: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char pre[12];
    lx_array *a = NULL;
    char *hdr = NULL;
    void *raw = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6)) {
        cli_error("--data: %s is not a .npy file", path);
        goto done;
    }
    if ((pre[6] != 1 && pre[6] != 2 && pre[6] != 3) || pre[7] != 0) {
        cli_error("--data: %s: .npy format version %d.%d: only 1.0, 2.0 and 3.0 exist (as numpy reads)", path, pre[6],
                  pre[7]);
        goto done;
    }
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            cli_error("--data: %s: truncated header", path);
            goto done;
        }
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    if (hlen <= (1u << 20) && !(hdr = calloc(1, hlen + 1))) {
        *rc = cli_oom("--data");
        goto done;
    }
    if (hlen > (1u << 20) || fread(hdr, 1, hlen, f) != hlen) {
        cli_error("--data: %s: bad header", path);
        goto done;
    }
    npy_hdr h = {hdr, hdr + hlen, pre[6] <= 2, NULL};
    npy_val dv, fv, sv;
    if (!npy_header(&h, &dv, &fv, &sv)) {
        if (h.p) cli_error("--data: %s: %s (at header byte %lld)", path, h.err, (long long)(h.p - hdr));
        else cli_error("--data: %s: %s", path, h.err);
        goto done;
    }
    char descr[16];
    snprintf(descr, sizeof descr, "%.*s", dv.len < sizeof descr ? (int)dv.len : (int)sizeof descr - 1, dv.s);
    if (dv.len >= sizeof descr) descr[sizeof descr - 2] = '.'; /* never equal to a supported one */
    if (fv.i) {
        cli_error("--data: %s: Fortran-order arrays are not supported (save with np.ascontiguousarray)", path);
        goto done;
    }
    int64_t dims[LX_MAX_DIMS];
    int ndim = 0;
    char sopt[300];
    snprintf(sopt, sizeof sopt, "data: %s: shape", path);
    /* the size limits of cli_shape (--max-array-bytes), on the dims as N,N,... */
    char shape_l[LX_MAX_DIMS * 21 + 1];
    size_t nl = 0;
    for (int k = 0; k < sv.n; k++)
        nl += (size_t)snprintf(shape_l + nl, sizeof shape_l - nl, "%s%lld", k ? "," : "", (long long)sv.ints[k]);
    if (cli_shape(sopt, nl ? shape_l : "()", dims, &ndim)) goto done;
    /* numpy's little-endian (or byte-order-free) descrs: float32/64, and the integer and bool
     * types read as int32 (exactly; a value outside int32 is an error) */
    static const struct {
        const char *descr, *name;
        char kind; /* 'f' float, 'i' signed, 'u' unsigned (bool included) */
        size_t size;
    } NPY_TYPES[] = {{"<f4", "float32", 'f', 4}, {"<f8", "float64", 'f', 8}, {"|i1", "int8", 'i', 1},
                     {"|u1", "uint8", 'u', 1},   {"|b1", "bool", 'u', 1},    {"<i2", "int16", 'i', 2},
                     {"<u2", "uint16", 'u', 2},  {"<i4", "int32", 'i', 4},   {"<u4", "uint32", 'u', 4},
                     {"<i8", "int64", 'i', 8},   {"<u8", "uint64", 'u', 8}};
    int ti = -1;
    for (int i = 0; i < (int)(sizeof NPY_TYPES / sizeof NPY_TYPES[0]); i++)
        if (!strcmp(descr, NPY_TYPES[i].descr)) ti = i;
    if (ti < 0) {
        cli_error("--data: %s: dtype '%s' is not supported (float32/float64, bool, int8..int64, uint8..uint64; "
                  "little-endian)", path, descr);
        goto done;
    }
    bool is_float = NPY_TYPES[ti].kind == 'f';
    size_t esize = NPY_TYPES[ti].size;
    { /* the file must hold the data its header announces: checked before anything is allocated */
        uint64_t need = esize, have = 0;
        bool over = false;
        for (int k = 0; k < ndim; k++) over |= __builtin_mul_overflow(need, (uint64_t)dims[k], &need);
        struct stat sb;
        long pos = ftell(f);
        if (pos >= 0 && fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size >= (uint64_t)pos)
            have = (uint64_t)sb.st_size - (uint64_t)pos;
        else have = UINT64_MAX; /* not a regular file (a pipe): the read below finds out */
        if (over || need > have) {
            cli_error("--data: %s: fewer values than its shape holds (the header's shape needs %s%llu bytes, the file "
                      "has %llu after the header)", path, over ? "more than " : "", (unsigned long long)(over ? UINT64_MAX : need),
                      (unsigned long long)have);
            goto done;
        }
    }
    /* over --max-array-bytes: a bad input (exit 2, the file named), as for the other formats */
    if (cli_check_size(sopt, ndim, dims, 4)) goto done;
    a = lx_array_new(is_float ? LX_F32 : LX_I32, ndim, dims);
    if (!a) {
        *rc = cli_lib_error();
        goto done;
    }
    raw = malloc((size_t)a->size * esize + 1);
    if (!raw) {
        *rc = cli_oom("--data");
        lx_release(a);
        a = NULL;
        goto done;
    }
    if (fread(raw, esize, (size_t)a->size, f) != (size_t)a->size) {
        cli_error("--data: %s: fewer values than its shape holds", path);
        lx_release(a);
        a = NULL;
        goto done;
    }
    for (int64_t i = 0; i < a->size; i++) {
        const unsigned char *p = (const unsigned char *)raw + (size_t)i * esize;
        if (is_float && esize == 4) memcpy(&lx_f32(a)[i], p, 4);
        else if (is_float) {
            double d;
            memcpy(&d, p, 8);
            lx_f32(a)[i] = (float)d;
        } else {
            uint64_t u = 0; /* little-endian bytes, sign-extended for the signed types */
            for (size_t b = 0; b < esize; b++) u |= (uint64_t)p[b] << (8 * b);
            bool neg = NPY_TYPES[ti].kind == 'i' && (p[esize - 1] & 0x80);
            if (neg && esize < 8) u |= ~(uint64_t)0 << (8 * esize);
            bool over = neg ? (int64_t)u < INT32_MIN : u > (uint64_t)INT32_MAX;
            if (over) {
                if (neg) cli_error("--data: %s: %s value %lld (flat index %lld) is outside int32 (" I32_RANGE
                                   "): integer data is read as int32", path, NPY_TYPES[ti].name, (long long)(int64_t)u,
                                   (long long)i);
                else cli_error("--data: %s: %s value %llu (flat index %lld) is outside int32 (" I32_RANGE
                               "): integer data is read as int32", path, NPY_TYPES[ti].name, (unsigned long long)u,
                               (long long)i);
                lx_release(a);
                a = NULL;
                goto done;
            }
            lx_i32(a)[i] = (int32_t)(int64_t)u;
        }
    }
done:
    free(raw);
    free(hdr);
    fclose(f);
    if (a) *rc = 0;
    return a;
}

/* float32 <-> int32 so the arrays match what the loss and the model read. */
static int coerce(const char *what, lx_array **a, lx_dtype want) {
    if ((*a)->dtype == want) return 0;
    lx_array *b = lx_array_new(want, (*a)->ndim, (*a)->shape);
    if (!b) return cli_lib_error();
    for (int64_t i = 0; i < b->size; i++) {
        double v = lx_array_get(*a, i);
        if (want == LX_I32) {
            int bad = int32_of(v, &lx_i32(b)[i]);
            if (bad) {
                lx_release(b);
                return bad == 1 ? cli_error("--data: %s holds %.9g, not an integer label", what, cli_num(v))
                                : cli_error("--data: %s holds %.9g, outside the int32 range of integer labels ("
                                            I32_RANGE ")", what, cli_num(v));
            }
        } else lx_f32(b)[i] = (float)v;
    }
    lx_release(*a);
    *a = b;
    return 0;
}

/* One leaf of a --data checkpoint as the model and the loss read it: floats (float32, float64,
 * bfloat16) as float32, integers and booleans (int8..int64, uint8..uint32, bool) as int32, exactly
 * (a value outside int32 is an error, as tc_npy_read's), as tc_npy_read converts a .npy; any shape,
 * a 0-d one included. */
static int ckpt_leaf(const char *path, const lx_tree *t, const char *name, lx_array **out) {
    const lx_value *v = lx_tree_get(t, name);
    if (!v) return cli_error("--data: %s holds no tensor named '%s' (it needs x and y)", path, name);
    const lx_array *a = lx_value_leaf_array(v);
    const lx_raw *raw = a ? NULL : lx_value_raw(v);
    if (!a && (!raw || raw->kind == LX_RAW_BYTES))
        return cli_error("--data: %s: '%s' is not an array (%s)", path, name, lx_kind_name(v->kind));
    int ndim = a ? a->ndim : raw->ndim;
    const int64_t *shape = a ? a->shape : raw->shape;
    const char *dt = a ? lx_dtype_name(a->dtype) : raw->dtype;
    bool is_float;
    if (a) is_float = a->dtype == LX_F32 || a->dtype == LX_BF16;
    else if (!strcmp(dt, "float64")) is_float = true;
    else if (!strcmp(dt, "int64") || !strcmp(dt, "int8") || !strcmp(dt, "int16") || !strcmp(dt, "uint8") ||
             !strcmp(dt, "uint16")) is_float = false;
    else return cli_error("--data: %s: '%s' has dtype %s (float32/float64/bfloat16 or an integer/bool type)",
                          path, name, dt);
    lx_array *b = lx_array_new(is_float ? LX_F32 : LX_I32, ndim, shape);
    if (!b) return cli_lib_error();
    const unsigned char *p = raw ? raw->data : NULL;
    for (int64_t i = 0; i < b->size; i++) {
        if (is_float) {
            double d = 0;
            if (a) d = lx_array_get(a, i);
            else memcpy(&d, p + 8 * i, 8);
            lx_f32(b)[i] = (float)d;
            continue;
        }
        int64_t w; /* every integer dtype fits int64 exactly (uint32 too) */
        if (a) w = (int64_t)lx_array_get(a, i);
        else if (!strcmp(dt, "int64")) memcpy(&w, p + 8 * i, 8);
        else if (!strcmp(dt, "int16") || !strcmp(dt, "uint16")) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            w = dt[0] == 'u' ? (int64_t)h : (int64_t)(int16_t)h;
        } else w = dt[0] == 'u' ? (int64_t)p[i] : (int64_t)(int8_t)p[i];
        if (w < INT32_MIN || w > INT32_MAX) {
            lx_release(b);
            return cli_error("--data: %s: '%s' holds %lld (flat index %lld), outside int32 (" I32_RANGE
                             "): integer data is read as int32", path, name, (long long)w, (long long)i);
        }
        lx_i32(b)[i] = (int32_t)w;
    }
    *out = b;
    return 0;
}

/* --data FILE.safetensors (or a Flax .msgpack): its tensors `x` and `y`. */
static int ckpt_data(const char *path, tc_data *out) {
    lx_tree *t = NULL;
    lx_status st = lx_ckpt_load(path, &t);
    if (st != LX_OK) {
        cli_errline("--data %s: %s", path, lx_last_error());
        return cli_status_exit(st);
    }
    int rc = ckpt_leaf(path, t, "x", &out->x);
    if (!rc) rc = ckpt_leaf(path, t, "y", &out->y);
    lx_tree_release(t);
    return rc;
}

int tc_data_load(const cli_opt *x, const cli_opt *x_shape, const cli_opt *y, const cli_opt *y_shape,
                 const cli_opt *data, const tc_loss *loss, tc_data *out) {
    memset(out, 0, sizeof *out);
    bool int_labels = loss->kind == TC_SOFTMAX_CE_INT;
    int rc = 0;
    if (data->seen) {
        if (x->seen || y->seen || x_shape->seen || y_shape->seen)
            return cli_error("--data replaces --x/--y: give one or the other");
        char xp[4096], yp[4096];
        struct stat st;
        lx_ckpt_format fmt;
        /* an existing path is one file (or directory), commas in its name included; otherwise a
         * comma splits X.npy,Y.npy */
        bool exists = stat(data->value, &st) == 0;
        const char *comma = exists ? NULL : strchr(data->value, ',');
        /* names with commas of their own: the comma where both halves exist (else the first) */
        for (const char *c = comma; c; c = strchr(c + 1, ',')) {
            struct stat sx, sy;
            snprintf(xp, sizeof xp, "%.*s", (int)(c - data->value), data->value);
            if (stat(xp, &sx) == 0 && stat(c + 1, &sy) == 0) {
                comma = c;
                break;
            }
        }
        if (!comma && !exists)
            return cli_error("--data: cannot open %s: %s", data->value, strerror(errno));
        bool is_dir = !comma && S_ISDIR(st.st_mode);
        /* a file of either checkpoint format, by its content or its name (then the loader says
         * what is wrong with it) */
        if (!comma && !is_dir && access(data->value, R_OK) == 0 &&
            (lx_ckpt_sniff(data->value, &fmt) == LX_OK || lx_ckpt_format_of(data->value) != LX_CKPT_AUTO)) {
            rc = ckpt_data(data->value, out);
        } else if (comma) {
            snprintf(xp, sizeof xp, "%.*s", (int)(comma - data->value), data->value);
            snprintf(yp, sizeof yp, "%s", comma + 1);
        } else if (is_dir) {
            snprintf(xp, sizeof xp, "%s/x.npy", data->value);
            snprintf(yp, sizeof yp, "%s/y.npy", data->value);
        } else {
            return cli_error("--data: '%s' is neither a directory holding x.npy and y.npy, nor X.npy,Y.npy, nor a "
                             "safetensors (or msgpack) file holding x and y", data->value);
        }
        if (comma || is_dir) {
            out->x = tc_npy_read(xp, &rc); /* rc: 1 when memory ran out, 2 for a bad file */
            if (!rc) out->y = tc_npy_read(yp, &rc);
        }
        if (!rc) rc = coerce("y", &out->y, int_labels ? LX_I32 : LX_F32);
    } else {
        rc = array_arg("x", x, x_shape, false, &out->x);
        if (!rc) rc = array_arg("y", y, y_shape, int_labels, &out->y);
    }
    if (rc) tc_data_free(out);
    return rc;
}

/* ------------------------------------------------------------------ models */

struct tc_model {
    bool nnx;
    lx_key key;
    /* Linen */
    linen_module *linen;
    lx_tree *vars;             /* every collection */
    bool has_stats;            /* a batch_stats collection: applied as mutable */
    linen_train_state *state;  /* while training */
    uint32_t step;
    /* NNX */
    nnx_module *module;
    nnx_rngs *rngs;
    linen_module *inner;       /* ToNNX's Linen module */
    nnx_optimizer *opt;
    nnx_filter param_filter;
};

/* x as the model reads it: int32 token ids when it starts with an Embed (float data was checked
 * to hold integers in the int32 range by tc_model_new), else float32 (integer data such as uint8
 * images, as Dense's promote_dtype makes them). */
static lx_array *model_input(lx_array *x, bool ids) {
    if (ids) return x->dtype == LX_I32 ? x : lx_cast(x, LX_I32);
    return x->dtype == LX_I32 ? lx_cast(x, LX_F32) : x;
}

static bool g_ids; /* the current model reads token ids (set by tc_model_new) */

static int build_linen(spec_node *spec, tc_model *m, lx_array *x) {
    int rc = params_linen_module(spec, &m->linen, &g_ids);
    if (rc) return rc;
    lx_array *xi = model_input(x, g_ids);
    if (!xi || linen_init(m->linen, LINEN_KEY(m->key), &LX_ARGS(xi), NULL, &m->vars) != LX_OK) return cli_lib_error();
    return 0;
}

static int build_to_linen(spec_node *spec, tc_model *m, lx_array *x) {
    int rc = params_to_linen_module(spec, &m->linen);
    if (rc) return rc;
    lx_array *xi = model_input(x, g_ids);
    if (!xi || linen_init(m->linen, LINEN_KEY(m->key), &LX_ARGS(xi), NULL, &m->vars) != LX_OK) return cli_lib_error();
    return 0;
}

static int build_nnx(spec_node *spec, tc_model *m, lx_array *x) {
    nnx_stream_spec stream = {"default", true, 0, m->key};
    if (nnx_rngs_new(1, &stream, &m->rngs) != LX_OK) return cli_lib_error();
    m->nnx = true;
    if (spec_suffix(spec, "nnx.")) {
        int rc = params_nnx_module(spec, m->rngs, &m->module);
        /* a bridge.ToNNX layer inside: bridge.lazy_init(model, x) makes its variables */
        if (!rc && params_nnx_has_to_nnx(spec)) {
            lx_array *xi = model_input(x, g_ids);
            if (!xi || bridge_lazy_init(m->module, NULL, &LX_ARGS(xi)) != LX_OK) rc = cli_lib_error();
        }
        return rc;
    }
    char buf[200];
    if (spec->nargs != 1 || spec->args[0].name || !spec_suffix(spec->args[0].value, "linen."))
        return cli_error("bridge.ToNNX takes one Linen module, e.g. bridge.ToNNX(linen.Dense(8)): %s",
                         spec_str(spec, buf, sizeof buf));
    int rc = params_linen_module(spec->args[0].value, &m->inner, &g_ids);
    if (rc) return rc;
    lx_array *xi = model_input(x, g_ids);
    if (!xi || bridge_to_nnx_new(m->inner, m->rngs, NULL, &m->module) != LX_OK ||
        bridge_lazy_init(m->module, NULL, &LX_ARGS(xi)) != LX_OK)
        return cli_lib_error();
    return 0;
}

int tc_model_new(const char *text, lx_key key, lx_array *x, tc_model **out) {
    spec_node *spec = NULL;
    int prc = spec_parse_cli("model", text, &spec);
    if (prc) return prc;
    tc_model *m = calloc(1, sizeof *m);
    if (!m) {
        spec_free(spec);
        return cli_oom("model");
    }
    m->key = key;
    m->param_filter = NNX_OF_TYPE(&lx_Param);
    g_ids = params_reads_ids(spec); /* an Embed first, through any nesting */
    for (int64_t i = 0; g_ids && x->dtype == LX_F32 && i < x->size; i++) {
        int32_t id;
        int bad = int32_of(lx_f32(x)[i], &id);
        if (bad) {
            spec_free(spec);
            free(m);
            return cli_error("x holds %.9g, %s (the model's first layer is an Embed: x are token ids)",
                             cli_num(lx_f32(x)[i]), bad == 1 ? "not an integer token id" : "outside int32");
        }
    }
    const char *bridge = spec_suffix(spec, "bridge.");
    int rc;
    if (spec_suffix(spec, "linen.")) rc = build_linen(spec, m, x);
    else if (spec_suffix(spec, "nnx.")) rc = build_nnx(spec, m, x);
    else if (bridge && spec->kind == SPEC_CALL && !strcmp(bridge, "to_linen")) rc = build_to_linen(spec, m, x);
    else if (bridge && spec->kind == SPEC_CALL && !strcmp(bridge, "ToNNX")) rc = build_nnx(spec, m, x);
    else rc = cli_error("unknown module '%s' (linen.*, nnx.*, bridge.to_linen(...), bridge.ToNNX(...))",
                        spec->s ? spec->s : text);
    spec_free(spec);
    if (!rc && !m->nnx) {
        const lx_value *p = lx_tree_get(m->vars, "params");
        if (!p || p->kind != LX_V_TREE) rc = cli_error("%s has no parameters to differentiate", text);
        m->has_stats = lx_tree_get(m->vars, "batch_stats") != NULL;
    }
    if (rc) {
        tc_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void tc_model_free(tc_model *m) {
    if (!m) return;
    linen_train_state_free(m->state);
    nnx_optimizer_free(m->opt);
    lx_tree_release(m->vars);
    linen_module_release(m->linen);
    nnx_module_release(m->module);
    linen_module_release(m->inner);
    if (m->rngs) nnx_rngs_release(m->rngs);
    free(m);
}

typedef struct loss_ctx {
    tc_model *m;
    lx_array *x, *y;
    const tc_loss *l;
} loss_ctx;

static lx_status linen_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    loss_ctx *c = user;
    lx_tree *v = lx_tree_copy(c->m->vars);
    if (!v) return lx_last_status();
    lx_status st = lx_tree_set(v, "params", lx_tree_v((lx_tree *)params));
    linen_opts opts = {.mutable = LINEN_MUTABLE("batch_stats"), .mutable_given = true};
    lx_value out = lx_none();
    lx_tree *mut = NULL;
    lx_key dropout = lx_key_fold_in(c->m->key, c->m->step);
    /* under mpirun each rank draws its own masks (pmap's fold_in(key, axis_index('data'))): the
     * same key on every rank gave every shard the same mask (docs/distributed.md) */
    if (tc_data_parallel) dropout = lx_key_fold_in(dropout, (uint32_t)lx_dist_rank());
    lx_array *xi = model_input(c->x, g_ids);
    if (st == LX_OK && !xi) st = lx_last_status();
    if (st == LX_OK)
        st = linen_apply(c->m->linen, v, &LX_ARGS(xi), LINEN_RNGS({"dropout", dropout}),
                         c->m->has_stats ? &opts : NULL, &out, c->m->has_stats ? &mut : NULL);
    lx_tree_release(v);
    if (st == LX_OK && out.kind != LX_V_ARRAY) st = lx_fail(LX_ERR_TYPE, "the model's output is not an array");
    if (st == LX_OK) {
        *loss = tc_loss_eval(c->l, out.u.array, c->y);
        if (!*loss) st = lx_last_status();
    }
    lx_value_free(&out);
    if (st == LX_OK && aux) *aux = mut;
    else lx_tree_release(mut);
    return st;
}

static lx_status nnx_loss(nnx_module *model, void *user, lx_array **loss) {
    loss_ctx *c = user;
    lx_value out = lx_none();
    lx_array *xi = model_input(c->x, g_ids);
    if (!xi) return lx_last_status();
    lx_status st = nnx_call(model, NULL, &LX_ARGS(xi), &out);
    if (st == LX_OK && out.kind != LX_V_ARRAY) st = lx_fail(LX_ERR_TYPE, "the model's output is not an array");
    if (st == LX_OK) {
        *loss = tc_loss_eval(c->l, out.u.array, c->y);
        if (!*loss) st = lx_last_status();
    }
    lx_value_free(&out);
    return st;
}

/* Carry the new batch_stats forward (Linen). */
static lx_status take_stats(tc_model *m, lx_tree *aux) {
    if (!aux) return LX_OK;
    const lx_value *bs = lx_tree_get(aux, "batch_stats");
    lx_status st = LX_OK;
    if (bs) {
        lx_tree *v = lx_tree_copy(m->vars);
        if (!v) st = lx_last_status();
        else if ((st = lx_tree_set(v, "batch_stats", *bs)) == LX_OK) {
            lx_tree_release(m->vars);
            m->vars = v;
        } else lx_tree_release(v);
    }
    lx_tree_release(aux);
    return st;
}

int tc_data_check_examples(const tc_data *d, const char *why) {
    const char *scalar = d->x->ndim == 0 ? "x" : d->y->ndim == 0 ? "y" : NULL;
    if (scalar)
        return cli_error("%s has shape () (one unbatched example): no example axis to take rows from (%s)", scalar,
                         why);
    if (d->x->shape[0] == d->y->shape[0]) return 0;
    return cli_error("x has %lld examples and y has %lld: the first axes must agree (%s)",
                     (long long)d->x->shape[0], (long long)d->y->shape[0], why);
}

lx_status tc_model_grad(tc_model *m, lx_array *x, lx_array *y, const tc_loss *l, lx_array **value, lx_tree **grads) {
    loss_ctx c = {m, x, y, l};
    if (m->nnx) return nnx_value_and_grad(m->module, &m->param_filter, nnx_loss, &c, value, grads);
    lx_tree *g = NULL;
    LX_TRY(linen_value_and_grad(linen_loss, &c, lx_tree_get(m->vars, "params")->u.tree, value, &g, NULL));
    lx_tree *t = lx_tree_new();
    lx_status st = t ? lx_tree_set(t, "params", lx_tree_v(g)) : lx_last_status();
    lx_tree_release(g);
    if (st != LX_OK) {
        lx_tree_release(t);
        lx_release(*value);
        *value = NULL;
        return st;
    }
    *grads = t;
    return LX_OK;
}

lx_status tc_model_dist_reseed(tc_model *m, int rank, int64_t step) {
    if (!m->nnx) return LX_OK; /* Linen folds the rank into its dropout key at every step */
    uint64_t k = (uint64_t)m->key.k[0] << 32 | m->key.k[1];
    k ^= 0x9e3779b97f4a7c15ull * (uint64_t)(rank + 1);
    k ^= 0xc2b2ae3d27d4eb4full * (uint64_t)(step + 1);
    LX_TRY(nnx_rngs_reseed(m->module, "dropout", (int64_t)(k >> 1)));
    return nnx_rngs_reseed(m->module, "default", (int64_t)(k >> 1));
}

lx_status tc_model_train_begin(tc_model *m, optax_tx *tx) {
    if (m->nnx) return nnx_optimizer_new(m->module, tx, &m->param_filter, &m->opt);
    return linen_train_state_create(m->linen, lx_tree_get(m->vars, "params")->u.tree, tx, &m->state);
}

/* Data parallelism (linnx/distributed.h): set by `linnx train` under mpirun. Every rank passes
 * its value_and_grad status through lx_dist_check (so one rank's failure stops all at this step)
 * and the gradients are replaced by their mean over the ranks before the optimizer step. */
bool tc_data_parallel = false;
bool tc_dist_agreed = false, tc_dist_midway = false;

static lx_status dp_grads(lx_status st, lx_tree **grads) {
    tc_dist_agreed = tc_dist_midway = false;
    if (!tc_data_parallel) return st;
    st = lx_dist_check(st);
    tc_dist_agreed = st != LX_OK; /* every rank learnt it in this check */
    lx_tree *avg = NULL;
    if (st == LX_OK) {
        st = lx_dist_overlap_end(*grads, &avg); /* buckets started in the backward pass */
        tc_dist_midway = st != LX_OK;           /* maybe with buckets the others wait for */
    } else lx_dist_overlap_end(NULL, NULL);
    if (st == LX_OK) {
        lx_tree_release(*grads);
        *grads = avg;
    }
    return st;
}

/* optax names a leaf by its path in the tree it updates: a TrainState's params, which for Linen
 * have no collection level. `linnx grad` prints them as params/Dense_0/kernel (the variables'
 * path): a debug_nans failure says the same. */
static lx_status linen_nan_path(lx_status st) {
    const char *e = lx_last_error(), *at = strstr(e, " at '");
    if (st != LX_ERR_INVALID_ARGUMENT || strncmp(e, "debug_nans: ", 12) || !at) return st;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", e);
    int off = (int)(at - e) + 5;
    return lx_fail(st, "%.*sparams/%s", off, msg, msg + off);
}

lx_status tc_model_train_step(tc_model *m, lx_array *x, lx_array *y, const tc_loss *l, float *loss) {
    loss_ctx c = {m, x, y, l};
    lx_array *value = NULL;
    lx_tree *grads = NULL;
    tc_dist_agreed = tc_dist_midway = false;
    lx_status st = tc_data_parallel ? lx_dist_overlap_begin() : LX_OK;
    if (m->nnx) {
        if (st == LX_OK) st = nnx_value_and_grad(m->module, &m->param_filter, nnx_loss, &c, &value, &grads);
        st = dp_grads(st, &grads);
        if (st == LX_OK) st = nnx_optimizer_update(m->opt, m->module, grads, NULL);
    } else {
        lx_tree *aux = NULL;
        linen_train_state *next = NULL;
        if (st == LX_OK) st = linen_value_and_grad(linen_loss, &c, m->state->params, &value, &grads, &aux);
        st = dp_grads(st, &grads);
        if (st == LX_OK) st = linen_nan_path(linen_train_state_apply_gradients(m->state, grads, &next));
        if (st == LX_OK) {
            linen_train_state_free(m->state);
            m->state = next;
            st = take_stats(m, aux);
        } else lx_tree_release(aux);
        /* the variables the next step applies see the new params */
        if (st == LX_OK) st = lx_tree_set(m->vars, "params", lx_tree_v(m->state->params));
    }
    if (st == LX_OK) *loss = lx_f32(value)[0];
    m->step++;
    lx_release(value);
    lx_tree_release(grads);
    return st;
}

/* ------------------------------------------------------------------ save / restore */

/* What --save writes: Linen {step, params, opt_state} (TrainState's state dict) plus batch_stats
 * when the model has them (the Flax examples' TrainState subclass); NNX {model: nnx.state(model),
 * optimizer: nnx.state(optimizer)} ({step, opt_state}). Leaves are shared with the model. */
static lx_status train_tree(tc_model *m, lx_tree **out) {
    lx_tree *t = NULL;
    lx_status st;
    if (m->nnx) {
        lx_tree *ms = NULL, *os = NULL;
        t = lx_tree_new();
        st = t ? nnx_state(m->module, 0, NULL, &ms) : lx_last_status();
        if (st == LX_OK) st = nnx_optimizer_state(m->opt, &os);
        if (st == LX_OK) st = lx_tree_set(t, "model", lx_tree_v(ms));
        if (st == LX_OK) st = lx_tree_set(t, "optimizer", lx_tree_v(os));
        lx_tree_release(ms);
        lx_tree_release(os);
    } else {
        st = linen_train_state_dict(m->state, &t);
        const lx_value *bs = m->has_stats ? lx_tree_get(m->vars, "batch_stats") : NULL;
        if (st == LX_OK && bs) st = lx_tree_set(t, "batch_stats", *bs);
    }
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    *out = t;
    return LX_OK;
}

lx_status tc_model_state_tree(tc_model *m, lx_tree **out) { return train_tree(m, out); }

static int file_error(const char *opt, const char *path, lx_status st) {
    cli_errline("--%s %s: %s", opt, path, lx_last_error());
    return cli_status_exit(st);
}

int tc_model_save(tc_model *m, const char *path, const char *target) {
    lx_tree *t = NULL;
    lx_status st = train_tree(m, &t);
    /* the format is the typed name's (a link ck.msgpack -> state.safetensors stays msgpack) */
    if (st == LX_OK) st = lx_ckpt_save(target, t, LX_CKPT_MSGPACK);
    lx_tree_release(t);
    if (st != LX_OK) {
        if (strcmp(path, target) != 0) return cli_write_error("--save", path, target);
        return file_error("save", path, st);
    }
    return 0;
}

int tc_model_restore(tc_model *m, const char *path, int64_t *step) {
    lx_tree *target = NULL, *loaded = NULL, *r = NULL;
    lx_restore_opts ro = lx_restore_defaults();
    ro.allow_extra = false; /* a checkpoint of another model or optimizer is an error */
    lx_status st = train_tree(m, &target);
    if (st == LX_OK) st = lx_ckpt_load(path, &loaded);
    if (st == LX_OK) st = lx_ckpt_restore(target, loaded, &ro, &r);
    if (st == LX_OK && m->nnx) {
        lx_tree *ms = lx_tree_get(r, "model")->u.tree;
        /* both are checked (restore above) before either changes */
        st = nnx_update(m->module, 1, &ms);
        if (st == LX_OK) st = nnx_optimizer_load_state(m->opt, lx_tree_get(r, "optimizer")->u.tree);
        if (st == LX_OK) *step = nnx_optimizer_step(m->opt);
    } else if (st == LX_OK) {
        const lx_value *sv = lx_tree_get(r, "step"), *p = lx_tree_get(r, "params"), *o = lx_tree_get(r, "opt_state");
        const lx_value *bs = lx_tree_get(r, "batch_stats");
        if (sv->kind != LX_V_INT || sv->u.i < 0 || p->kind != LX_V_TREE || o->kind != LX_V_TREE)
            st = lx_fail(LX_ERR_FORMAT, "not a TrainState checkpoint (step, params, opt_state)");
        if (st == LX_OK) st = lx_tree_set(m->vars, "params", *p);
        if (st == LX_OK && bs) st = lx_tree_set(m->vars, "batch_stats", *bs);
        if (st == LX_OK) {
            lx_tree_release(m->state->params);
            lx_tree_release(m->state->opt_state);
            m->state->params = lx_tree_retain(p->u.tree);
            m->state->opt_state = lx_tree_retain(o->u.tree);
            m->state->step = sv->u.i;
            *step = sv->u.i;
        }
    }
    if (st == LX_OK) m->step = (uint32_t)*step;
    lx_tree_release(target);
    lx_tree_release(loaded);
    lx_tree_release(r);
    if (st != LX_OK) {
        return file_error("restore", path, st);
    }
    return 0;
}

/* ------------------------------------------------------------------ printing */

int tc_print_tree(const char *first_line, const lx_tree *t) {
    lx_flat flat = {0};
    if (lx_tree_flatten(t, &flat) != LX_OK) return cli_lib_error();
    /* nothing is printed until everything that can fail has (all or nothing on stdout) */
    if (first_line) puts(first_line);
    for (size_t i = 0; i < flat.len; i++) {
        const lx_value *v = &flat.items[i].value;
        const lx_variable *var = v->kind == LX_V_VARIABLE ? v->u.var : NULL;
        const lx_array *a = v->kind == LX_V_ARRAY ? v->u.array
                          : v->kind == LX_V_BOX ? lx_box_unbox(v->u.box)
                          : var ? lx_variable_get_value(var)
                          : NULL;
        if (!a) continue;
        char note[256];
        params_print_leaf(flat.items[i].path, var, a, params_sharding_note(v, note, sizeof note));
    }
    lx_flat_free(&flat);
    return 0;
}

