/* PTQ accuracy on the showcase decoder (issue 13): a short deterministic training run on the
 * showcase data (byte-level text, held-out tail), then the weights stored int8: the held-out
 * loss of the PTQ model is within 2% of float32's, and each quantized layer's output error
 * (lx_qt_compare_begin) equals a double-precision reference of the same quantization and stays
 * below the worst case int8 rounding allows.
 *
 * The bound, for y[m, n] = sum_k x[m, k] w[k, n] with x per tensor (scale s_a = max|x| / 127) and
 * w per output channel (s_n = max_k |w[k, n]| / 127), both rounded to nearest (|e| <= s / 2, no
 * clamping: the max maps to 127 exactly):
 *   y_q - y = sum_k (e_x w + x e_w + e_x e_w)
 *   |y_q - y|[m, n] <= s_a / 2 sum_k |w[k, n]| + s_n / 2 sum_k |x[m, k]| + K s_a s_n / 4
 * and the relative error is at most ||that||_2 / ||y||_2 over the outputs of every call. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lx_test.h"
#include "linnx/intercept.h"
#include "linnx/llama_quant.h"
#include "linnx/llama_train.h"
#include "linnx/lm_data.h"

static const lx_qt_rule RULES[] = {
    {.module_path = "decoder/layers_[0-9]+/(mlp|self_attention)/.*", .weight_qtype = "int8", .act_qtype = "int8"},
    {.module_path = "decoder/logits_dense", .weight_qtype = "int8", .act_qtype = "int8"},
};

/* Text to train on when the Debian licenses are absent (any English prose will do). */
static const char FALLBACK[] =
    "Everyone is permitted to copy and distribute verbatim copies of this license document, but "
    "changing it is not allowed. The licenses for most software and other practical works are "
    "designed to take away your freedom to share and change the works. By contrast, the General "
    "Public License is intended to guarantee your freedom to share and change all versions of a "
    "program, to make sure it remains free software for all its users. When we speak of free "
    "software, we are referring to freedom, not price. You may charge a fee for the physical act of "
    "transferring a copy, and you may at your option offer warranty protection in exchange for a fee. ";

typedef struct {
    char path[128];
    int64_t calls;
    double err_sq, ref_sq, bound_sq;
} ref_layer;

typedef struct {
    ref_layer v[32];
    int n;
    lx_qt_rules *rs;
} ref_state;

/* A float forward's Dense ops, quantized here in double: x (M, K) per tensor, w (K, N) per column. */
static void ref_icpt(const lx_intercept_event *ev, void *user) {
    ref_state *r = user;
    if (strcmp(ev->op, "dot_general") != 0 || ev->ninputs < 2 || ev->roles[0] != LX_OPERAND_ACTIVATION ||
        ev->roles[1] != LX_OPERAND_PARAM || lx_qt_rules_match(r->rs, ev->path, "dot_general", 0) < 0)
        return;
    const lx_array *x = ev->inputs[0], *w = ev->inputs[1];
    int nc = 0; /* w's leading axes are x's trailing ones, the output (M, N) */
    for (int c = 1; c <= w->ndim && c <= x->ndim && !nc; c++) {
        bool same = true;
        int64_t k = 1;
        for (int i = 0; i < c; i++) same &= x->shape[x->ndim - c + i] == w->shape[i], k *= w->shape[i];
        if (same && k > 0 && ev->output->size == (x->size / k) * (w->size / k)) nc = c;
    }
    if (!nc) return;
    int64_t K = 1;
    for (int i = 0; i < nc; i++) K *= w->shape[i];
    int64_t N = w->size / K, M = x->size / K;
    const float *xd = lx_f32(x), *wd = lx_f32(w);
    float ma = 0;
    for (int64_t i = 0; i < x->size; i++) ma = fmaxf(ma, fabsf(xd[i]));
    float sa = ma > 0 ? ma / 127.0f : 1.0f;
    ref_layer *L = NULL;
    for (int i = 0; i < r->n && !L; i++)
        if (!strcmp(r->v[i].path, ev->path)) L = &r->v[i];
    if (!L) {
        if (r->n == 32) return;
        L = &r->v[r->n++];
        memset(L, 0, sizeof *L);
        snprintf(L->path, sizeof L->path, "%s", ev->path);
    }
    L->calls++;
    for (int64_t n = 0; n < N; n++) {
        float mw = 0;
        double sw_abs = 0;
        for (int64_t k = 0; k < K; k++) mw = fmaxf(mw, fabsf(wd[k * N + n])), sw_abs += fabs(wd[k * N + n]);
        float sn = mw > 0 ? mw / 127.0f : 1.0f;
        for (int64_t m = 0; m < M; m++) {
            double y = 0, yq = 0, sx_abs = 0;
            for (int64_t k = 0; k < K; k++) {
                float a = xd[m * K + k], b = wd[k * N + n];
                double qa = fminf(127.f, fmaxf(-127.f, nearbyintf(a * (1.0f / sa))));
                double qb = fminf(127.f, fmaxf(-127.f, nearbyintf(b * (1.0f / sn))));
                y += (double)a * b, yq += qa * qb, sx_abs += fabs(a);
            }
            yq *= (double)sa * sn;
            double bound = sa / 2.0 * sw_abs + sn / 2.0 * sx_abs + (double)K * sa * sn / 4.0;
            L->err_sq += (yq - y) * (yq - y), L->ref_sq += y * y, L->bound_sq += bound * bound;
        }
    }
}

static double heldout_loss(llama_model *m, const lm_data *d, int64_t batch, int64_t len, int nb) {
    double tot = 0;
    for (int b = 0; b < nb; b++) {
        size_t mark = lx_pool_open();
        lx_array *loss = llama_model_loss(m, lm_window_batch(d->heldout, d->nheldout, b * batch, batch, len));
        double v = loss ? lx_f32(loss)[0] : NAN;
        lx_pool_close(mark);
        tot += v;
    }
    return tot / nb;
}

static void test_ptq_accuracy(void) {
    /* the showcase data (make demo): the licenses' bytes, the tail of GPL-3 held out */
    lm_data d;
    const char *gpl = "/usr/share/common-licenses/GPL-3";
    FILE *f = fopen(gpl, "rb");
    char tmp[] = "/tmp/linnx_quant_accuracy_XXXXXX";
    if (f) {
        fclose(f);
        CHECK_EQ_INT(lm_data_load(1, &gpl, gpl, 0.1, &d), LX_OK);
    } else {
        int fd = mkstemp(tmp);
        CHECK(fd >= 0);
        FILE *o = fdopen(fd, "wb");
        for (int i = 0; i < 8; i++) fputs(FALLBACK, o);
        fclose(o);
        const char *p = tmp;
        CHECK_EQ_INT(lm_data_load(1, &p, p, 0.2, &d), LX_OK);
        remove(tmp);
    }

    llama_config cfg = llama_config_tiny(); /* vocab 256: bytes */
    cfg.emb_dim = 32, cfg.num_query_heads = 2, cfg.num_kv_heads = 1, cfg.head_dim = 16, cfg.mlp_dim = 64;
    cfg.num_decoder_layers = 2, cfg.max_target_length = 32;
    const int64_t len = cfg.max_target_length + 1, batch = 8;
    llama_model *m = NULL;
    CHECK_EQ_INT(llama_model_new(&cfg, LLAMA_LINEN_TOP, 0, &m), LX_OK);
    double h0 = heldout_loss(m, &d, batch, len, 2);
    llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
    o.steps = 40, o.learning_rate = 1e-2;
    llama_trainer *t = NULL;
    CHECK_EQ_INT(llama_trainer_new(m, &o, &t), LX_OK);
    lx_key key = lx_key_from_seed(7);
    for (int64_t i = 0; i < o.steps; i++) {
        size_t mark = lx_pool_open();
        float loss = 0;
        lx_key k = lx_key_fold_in(key, (uint32_t)i);
        CHECK_EQ_INT(llama_trainer_step(t, lm_random_batch(d.train, d.ntrain, k, batch, len), &loss), LX_OK);
        lx_pool_close(mark);
    }
    llama_trainer_free(t);
    double hf = heldout_loss(m, &d, batch, len, 2);
    LX_TEST_REPORT_(hf < h0 - 1.0, "training moved the held-out loss from %.4f to %.4f only", h0, hf);

    /* per-layer output error on a held-out batch: the library's against the reference */
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(RULES, 2, &rs), LX_OK);
    lx_array *hb = lx_retain(lm_window_batch(d.heldout, d.nheldout, 0, batch, len));
    ref_state ref = {.rs = rs};
    int h = 0;
    CHECK_EQ_INT(lx_interceptor_add(ref_icpt, &ref, &h), LX_OK);
    CHECK(llama_model_loss(m, hb) != NULL);
    lx_interceptor_remove(h);
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_compare_begin(rs, &s), LX_OK);
    lx_array *lc = lx_retain(llama_model_loss(m, hb));
    const lx_qt_layer_error *le = NULL;
    int nl = lx_qt_session_layers(s, &le);
    CHECK_EQ_INT(nl, 2 * 7 + 1); /* q, k, v, out, wi_0, wi_1, wo per layer, and logits_dense */
    CHECK_EQ_INT(ref.n, nl);
    for (int i = 0; i < nl; i++) {
        const ref_layer *R = NULL;
        for (int j = 0; j < ref.n && !R; j++)
            if (!strcmp(ref.v[j].path, le[i].path)) R = &ref.v[j];
        LX_TEST_REPORT_(R != NULL, "layer %s has no reference", le[i].path);
        if (!R) continue;
        CHECK(strcmp(le[i].op, "dot_general0") == 0);
        CHECK_EQ_INT((int)le[i].calls, (int)R->calls);
        double rel = sqrt(R->err_sq / R->ref_sq), bound = sqrt(R->bound_sq / R->ref_sq);
        LX_TEST_REPORT_(fabs(le[i].rel_err - rel) <= 0.02 * rel + 1e-6, "%s: rel_err %.6g, reference %.6g",
                        le[i].path, le[i].rel_err, rel);
        LX_TEST_REPORT_(le[i].rel_err > 0 && le[i].rel_err <= bound, "%s: rel_err %.6g, int8 rounding bound %.6g",
                        le[i].path, le[i].rel_err, bound);
    }
    lx_qt_end(s);
    /* the compare session passes float values on: the loss is the float model's */
    lx_array *lf = llama_model_loss(m, hb);
    CHECK(lc && lf && fabsf(lx_f32(lc)[0] - lx_f32(lf)[0]) <= 1e-6f * fabsf(lx_f32(lf)[0]));
    lx_release(lc), lx_release(hb);

    /* PTQ: the weights stored int8, the held-out loss through the int8 kernels */
    lx_array *sample = lm_window_batch(d.train, d.ntrain, 0, 2, cfg.max_target_length);
    CHECK_EQ_INT(llama_model_quantize(m, rs, sample, NULL), LX_OK);
    CHECK_EQ_INT(llama_model_ptq_begin(m, rs, &s), LX_OK);
    double hq = heldout_loss(m, &d, batch, len, 2);
    CHECK_EQ_INT((int)lx_qt_session_int8(s), 2 * 15);
    lx_qt_end(s);
    double rd = fabs(hq - hf) / hf;
    LX_TEST_REPORT_(rd < 0.02, "held-out loss: float32 %.5f, PTQ %.5f (relative difference %.4f)", hf, hq, rd);
    fprintf(stderr, "# held-out loss: init %.4f, trained float32 %.5f, PTQ int8 %.5f: relative difference %.5f\n", h0,
            hf, hq, rd);
    lx_qt_rules_free(rs);
    llama_model_free(m);
    lm_data_free(&d);
}

int main(void) {
    RUN(test_ptq_accuracy);
    lx_pool_drain();
    return lx_test_finish();
}
