/* Running a model quantized by rules: fake quantization with the straight-through estimator
 * (QAT) and the int8 kernel path (quant.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/intercept.h"
#include "linnx/ops.h"
#include "linnx/primitive.h"
#include "linnx/quant.h"
#include "quant_internal.h"

typedef struct {
    lx_array *w; /* retained: its address stays this weight's for the session */
    int8_t *bt;  /* (N, K) */
    float *sw;   /* (N) */
    int64_t K, N;
} wcache;

struct lx_qt_session {
    const lx_qt_rules *rules;
    lx_qt_mode mode;
    int sub_handle, icpt_handle;
    lx_qt_counters ctr;
    wcache *cache;
    int ncache, capcache;
    int64_t quantized, int8_ops;
};

static _Thread_local lx_qt_session *active; /* one session per thread: quantizing twice is refused */

static void no_op(const lx_intercept_event *ev, void *user) {
    (void)ev;
    (void)user;
}

/* x's quantize-dequantize round trip: one scale per channel, a channel being a coordinate of the
 * axes not in `reduce` (all axes reduced: one scale per tensor), and with tile > 0 on a single
 * reduced axis `tax`, also the tile of that axis. Same rounding as lx_quantize_tiles_i8. */
static lx_array *fake_quant(lx_array *x, const bool *reduce, int64_t tile, int tax) {
    int nd = x->ndim;
    int64_t nch = 1, ntiles = 1;
    for (int d = 0; d < nd; d++)
        if (!reduce[d]) nch *= x->shape[d];
    if (tile > 0) ntiles = (x->shape[tax] + tile - 1) / tile;
    int64_t nsc = nch * ntiles;
    float *mx = calloc((size_t)(nsc > 0 ? nsc : 1), sizeof(float));
    int64_t *chan = malloc(sizeof(int64_t) * (size_t)(x->size > 0 ? x->size : 1));
    lx_array *out = lx_array_new(LX_F32, nd, x->shape);
    if (!mx || !chan || !out) {
        free(mx), free(chan), lx_release(out);
        lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
        return NULL;
    }
    int64_t coord[LX_MAX_DIMS] = {0};
    const float *xd = lx_f32(x);
    for (int64_t i = 0; i < x->size; i++) {
        int64_t c = 0;
        for (int d = 0; d < nd; d++)
            if (!reduce[d]) c = c * x->shape[d] + coord[d];
        if (tile > 0) c = c * ntiles + coord[tax] / tile;
        chan[i] = c;
        mx[c] = fmaxf(mx[c], fabsf(xd[i]));
        for (int d = nd - 1; d >= 0; d--) {
            if (++coord[d] < x->shape[d]) break;
            coord[d] = 0;
        }
    }
    float *o = lx_f32(out);
    for (int64_t i = 0; i < x->size; i++) {
        float s = mx[chan[i]] > 0 ? mx[chan[i]] / 127.0f : 1.0f, inv = 1.0f / s;
        float r = nearbyintf(xd[i] * inv);
        r = r > 127.f ? 127.f : r < -127.f ? -127.f : r;
        o[i] = r * s;
    }
    free(mx), free(chan);
    return lx_autorelease(out);
}

/* x + stop_gradient(fq(x) - x): the forward sees fq(x), the backward the identity. */
static lx_array *ste(lx_array *x, lx_array *fq) {
    if (!fq) return NULL;
    return lx_add(x, lx_stop_gradient(lx_sub(fq, x)));
}

/* The contraction axes of input i of a matmul (params NULL) or dot_general. */
static void contract_axes(lx_prim_id id, const void *params, int i, const lx_array *x, bool *mask) {
    for (int d = 0; d < LX_MAX_DIMS; d++) mask[d] = false;
    if (id == LX_PRIM_DOT_GENERAL) {
        const lx_dot_general_params *p = params;
        for (int k = 0; k < p->ncontract; k++) mask[i == 0 ? p->lhs_contract[k] : p->rhs_contract[k]] = true;
    } else { /* matmul: a's last axis, b's second to last (its only one when 1-D) */
        mask[i == 0 ? x->ndim - 1 : (x->ndim >= 2 ? x->ndim - 2 : 0)] = true;
    }
}

static wcache *weight_int8(lx_qt_session *s, lx_array *w, int64_t K, int64_t N) {
    for (int i = 0; i < s->ncache; i++)
        if (s->cache[i].w == w) return &s->cache[i];
    if (s->ncache == s->capcache) {
        int cap = s->capcache ? 2 * s->capcache : 16;
        wcache *c = realloc(s->cache, (size_t)cap * sizeof *c);
        if (!c) return NULL;
        s->cache = c, s->capcache = cap;
    }
    wcache e = {w, malloc((size_t)(K * N > 0 ? K * N : 1)), malloc(sizeof(float) * (size_t)(N > 0 ? N : 1)), K, N};
    float *wt = malloc(sizeof(float) * (size_t)(K * N > 0 ? K * N : 1));
    if (!e.bt || !e.sw || !wt) {
        free(e.bt), free(e.sw), free(wt);
        return NULL;
    }
    const float *wd = lx_f32(w);
    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++) wt[n * K + k] = wd[k * N + n];
    lx_quantize_rows_i8(N, K, wt, e.bt, e.sw);
    free(wt);
    lx_retain(w);
    s->cache[s->ncache++] = e;
    return &s->cache[s->ncache - 1];
}

/* x (..., K-axes) . w (K-axes, N-axes) with int8 operands; NULL when the op is not of that form. */
static lx_array *int8_dense(lx_qt_session *s, const lx_dot_general_params *p, lx_array *x, lx_array *w) {
    int nc = p->ncontract;
    if (p->nbatch != 0 || nc < 1 || nc > x->ndim || nc > w->ndim) return NULL;
    int64_t K = 1;
    for (int k = 0; k < nc; k++) {
        if (p->rhs_contract[k] != k || p->lhs_contract[k] != x->ndim - nc + k) return NULL;
        K *= w->shape[k];
    }
    if (K == 0 || x->size == 0 || w->size == 0) return NULL;
    int64_t N = w->size / K, M = x->size / K;
    int64_t shape[LX_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim - nc; d++) shape[nd++] = x->shape[d];
    for (int d = nc; d < w->ndim; d++) shape[nd++] = w->shape[d];
    if (nd > LX_MAX_DIMS) return NULL;
    wcache *wc = weight_int8(s, w, K, N);
    int8_t *qa = malloc((size_t)x->size);
    int32_t *acc = malloc(sizeof(int32_t) * (size_t)(M * N));
    lx_array *y = lx_array_new(LX_F32, nd, shape);
    float sa;
    if (!wc || !qa || !acc || !y) {
        free(qa), free(acc), lx_release(y);
        lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
        return NULL;
    }
    lx_quantize_tiles_i8(1, x->size, x->size, lx_f32(x), qa, &sa); /* one scale for the tensor */
    lx_status st = lx_i8_gemm(LX_I8_AUTO, M, N, K, qa, wc->bt, acc);
    float *yd = lx_f32(y);
    for (int64_t m = 0; st == LX_OK && m < M; m++)
        for (int64_t n = 0; n < N; n++) yd[m * N + n] = (float)acc[m * N + n] * sa * wc->sw[n];
    free(qa), free(acc);
    if (st != LX_OK) {
        lx_release(y);
        return NULL;
    }
    s->int8_ops++;
    return lx_autorelease(y);
}

static lx_array *substitute(lx_prim_id id, const void *params, int nin, lx_array **in, void *user) {
    lx_qt_session *s = user;
    if ((id != LX_PRIM_MATMUL && id != LX_PRIM_DOT_GENERAL) || nin != 2 || !in[0] || !in[1]) return NULL;
    const char *op = id == LX_PRIM_MATMUL ? "matmul" : "dot_general";
    const char *path = lx_frame_current_path();
    int count = lx_qt_next_count(&s->ctr, path, op);
    int r = count < 0 ? -1 : lx_qt_rules_match(s->rules, path, op, count);
    if (r < 0) return NULL;
    const lx_qt_rule *rule = lx_qt_rules_get(s->rules, r);
    if (in[0]->dtype != LX_F32 || in[1]->dtype != LX_F32 || lx_is_abstract(in[0]) || lx_is_abstract(in[1]))
        return NULL;
    bool wt[2] = {lx_frame_is_param(in[0]), lx_frame_is_param(in[1])};
    if (s->mode == LX_QT_INT8 && id == LX_PRIM_DOT_GENERAL && !wt[0] && wt[1] && rule->weight_qtype &&
        rule->act_qtype && rule->tile_size == 0 && !lx_tape_active()) {
        lx_array *y = int8_dense(s, params, in[0], in[1]);
        if (y) {
            s->quantized++;
            return y;
        }
        lx_clear_error();
    }
    bool any = false;
    for (int i = 0; i < 2; i++) {
        bool reduce[LX_MAX_DIMS];
        if (wt[i] && rule->weight_qtype) {
            contract_axes(id, params, i, in[i], reduce);
            int tax = -1, nred = 0;
            for (int d = 0; d < in[i]->ndim; d++)
                if (reduce[d]) tax = d, nred++;
            int64_t tile = rule->tile_size > 0 && nred == 1 ? rule->tile_size : 0;
            lx_array *q = ste(in[i], fake_quant(in[i], reduce, tile, tax));
            if (q) in[i] = q, any = true;
        } else if (!wt[i] && rule->act_qtype) {
            for (int d = 0; d < LX_MAX_DIMS; d++) reduce[d] = true;
            lx_array *q = ste(in[i], fake_quant(in[i], reduce, 0, 0));
            if (q) in[i] = q, any = true;
        }
    }
    if (any) s->quantized++;
    return NULL;
}

lx_status lx_qt_begin(const lx_qt_rules *rules, lx_qt_mode mode, lx_qt_session **out) {
    if (!rules || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_begin: NULL argument");
    if (mode != LX_QT_FAKE && mode != LX_QT_INT8)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_begin: unknown mode %d (LX_QT_FAKE or LX_QT_INT8)", (int)mode);
    if (active)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "qt_begin: a quantization session is already active on this thread (quantizing twice); "
                       "end it with lx_qt_end first");
    lx_qt_session *s = calloc(1, sizeof *s);
    if (!s) return lx_fail(LX_ERR_NO_MEMORY, "qt_begin: out of memory");
    s->rules = rules;
    s->mode = mode;
    lx_status st = lx_interceptor_add(no_op, NULL, &s->icpt_handle); /* keeps module frames */
    if (st != LX_OK) {
        free(s);
        return st;
    }
    st = lx_prim_substitute_add(substitute, s, &s->sub_handle);
    if (st != LX_OK) {
        lx_interceptor_remove(s->icpt_handle);
        free(s);
        return st;
    }
    active = s;
    *out = s;
    return LX_OK;
}

int64_t lx_qt_session_quantized(const lx_qt_session *s) { return s ? s->quantized : 0; }
int64_t lx_qt_session_int8(const lx_qt_session *s) { return s ? s->int8_ops : 0; }

void lx_qt_end(lx_qt_session *s) {
    if (!s) return;
    if (active == s) active = NULL;
    lx_prim_substitute_remove(s->sub_handle);
    lx_interceptor_remove(s->icpt_handle);
    lx_qt_counters_free(&s->ctr);
    for (int i = 0; i < s->ncache; i++) {
        lx_release(s->cache[i].w);
        free(s->cache[i].bt), free(s->cache[i].sw);
    }
    free(s->cache);
    free(s);
}
