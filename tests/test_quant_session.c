/* Running quantized by rules: fake quantization (QAT) against a double-precision reference, the
 * straight-through gradient, the int8 kernel path equal to the fake-quantized one, per-tile
 * weight scales, and the showcase decoder's MLP (issue 13). */
#include <math.h>

#include "lx_test.h"
#include "linnx/fault.h"
#include "linnx/llama.h"
#include "linnx/quant.h"

/* the reference round trip, one scale for `n` values at stride `st` */
static void ref_fq(float *v, int64_t n, int64_t st) {
    float mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(v[i * st]));
    float s = mx > 0 ? mx / 127.0f : 1.0f;
    for (int64_t i = 0; i < n; i++) {
        float r = nearbyintf(v[i * st] * (1.0f / s));
        v[i * st] = fminf(127.f, fmaxf(-127.f, r)) * s;
    }
}

static float xdat[2 * 4] = {0.3f, -1.2f, 0.05f, 0.9f, -0.7f, 0.11f, 0.42f, -0.33f};

static void test_fake_and_int8_linear(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(5, &r), LX_OK);
    nnx_linear *l = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 3, r, &l), LX_OK);
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xdat));
    lx_array *w = lx_variable_get_value(l->kernel), *b = lx_variable_get_value(l->bias);
    lx_f32(b)[0] = 0.5f, lx_f32(b)[2] = -0.25f;
    lx_qt_rule rules[] = {{.module_path = ".*", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(rules, 1, &rs), LX_OK);

    /* reference: x per tensor, w per output column (its contraction axis 0 reduced) */
    float xq[8], wq[12];
    memcpy(xq, xdat, sizeof xq);
    memcpy(wq, lx_f32(w), sizeof wq);
    ref_fq(xq, 8, 1);
    for (int n = 0; n < 3; n++) ref_fq(wq + n, 4, 3);
    double ref[6];
    for (int m = 0; m < 2; m++)
        for (int n = 0; n < 3; n++) {
            double s = lx_f32(b)[n];
            for (int k = 0; k < 4; k++) s += (double)xq[m * 4 + k] * wq[k * 3 + n];
            ref[m * 3 + n] = s;
        }

    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_FAKE, &s), LX_OK);
    lx_qt_session *twice = (lx_qt_session *)0x1;
    CHECK_FAILS(lx_qt_begin(rs, LX_QT_INT8, &twice), LX_ERR_INVALID_ARGUMENT, "already active on this thread (quantizing twice)");
    CHECK(twice == (lx_qt_session *)0x1);
    lx_array *yf = nnx_call_array((nnx_module *)l, x);
    CHECK_EQ_INT((int)lx_qt_session_quantized(s), 1);
    CHECK_EQ_INT((int)lx_qt_session_int8(s), 0);
    lx_qt_end(s);
    CHECK(yf != NULL);
    for (int i = 0; yf && i < 6; i++) CHECK_NEAR(lx_f32(yf)[i], ref[i], 1e-6);

    CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_INT8, &s), LX_OK);
    lx_array *yi = nnx_call_array((nnx_module *)l, x);
    lx_array *yi2 = nnx_linear_forward(l, x); /* the typed call: same frame, same result */
    CHECK_EQ_INT((int)lx_qt_session_int8(s), 2);
    lx_qt_end(s);
    for (int i = 0; yi && yi2 && i < 6; i++) {
        CHECK_NEAR(lx_f32(yi)[i], ref[i], 1e-6);
        CHECK_EQ_INT(lx_f32(yi)[i] == lx_f32(yi2)[i], 1);
    }
    CHECK(!lx_intercepting());

    /* the straight-through estimator: d sum(y) / d kernel[k, n] = sum_m xq[m, k], as if the
     * round trip were the identity (with the activation's own round trip in the forward) */
    lx_tape *t = NULL;
    CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_INT8, &s), LX_OK); /* under a tape INT8 falls back to FAKE */
    CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
    CHECK_EQ_INT(lx_tape_watch(t, w), LX_OK);
    lx_array *loss = lx_sum(nnx_call_array((nnx_module *)l, x), 0, NULL, false);
    lx_tape_stop(t);
    CHECK_EQ_INT((int)lx_qt_session_int8(s), 0);
    lx_qt_end(s);
    lx_array *g = NULL;
    CHECK_EQ_INT(lx_tape_backward(t, loss, 1, &w, &g), LX_OK);
    for (int k = 0; g && k < 4; k++)
        for (int n = 0; n < 3; n++) CHECK_NEAR(lx_f32(g)[k * 3 + n], xq[k] + xq[4 + k], 1e-6);
    lx_release(g);
    lx_tape_free(t);

    /* no rule, no quantization: bit-identical to the float model */
    lx_qt_rule none[] = {{.module_path = "other/.*", .weight_qtype = "int8"}};
    lx_qt_rules *rn = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(none, 1, &rn), LX_OK);
    lx_array *y0 = nnx_call_array((nnx_module *)l, x);
    CHECK_EQ_INT(lx_qt_begin(rn, LX_QT_FAKE, &s), LX_OK);
    lx_array *y1 = nnx_call_array((nnx_module *)l, x);
    CHECK_EQ_INT((int)lx_qt_session_quantized(s), 0);
    lx_qt_end(s);
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(lx_f32(y0)[i] == lx_f32(y1)[i], 1);
    CHECK_FAILS(lx_qt_begin(rn, (lx_qt_mode)7, &s), LX_ERR_INVALID_ARGUMENT, "unknown mode 7");
    lx_qt_rules_free(rn);

    /* per tile: weight only, tiles of 2 rows of the contraction axis per column */
    lx_qt_rule tiled[] = {{.module_path = ".*", .weight_qtype = "int8", .tile_size = 2}};
    lx_qt_rules *rt = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(tiled, 1, &rt), LX_OK);
    memcpy(wq, lx_f32(w), sizeof wq);
    for (int n = 0; n < 3; n++) ref_fq(wq + n, 2, 3), ref_fq(wq + 6 + n, 2, 3);
    CHECK_EQ_INT(lx_qt_begin(rt, LX_QT_INT8, &s), LX_OK); /* tiles: the fake path */
    lx_array *yt = nnx_call_array((nnx_module *)l, x);
    lx_qt_end(s);
    for (int m = 0; yt && m < 2; m++)
        for (int n = 0; n < 3; n++) {
            double e = lx_f32(b)[n];
            for (int k = 0; k < 4; k++) e += (double)xdat[m * 4 + k] * wq[k * 3 + n];
            CHECK_NEAR(lx_f32(yt)[m * 3 + n], e, 1e-6);
        }
    lx_qt_rules_free(rt);
    lx_qt_rules_free(rs);
    nnx_module_release((nnx_module *)l);
    nnx_rngs_release(r);
}

static void test_showcase_mlp(void) {
    lx_qt_rule rules[] = {{.module_path = "decoder/layers_0/mlp/.*", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(rules, 1, &rs), LX_OK);
    for (int style = 0; style < 2; style++) {
        llama_config cfg = llama_config_tiny();
        cfg.vocab_size = 32, cfg.num_decoder_layers = 2, cfg.max_target_length = 16;
        llama_model *m = NULL;
        CHECK_EQ_INT(llama_model_new(&cfg, (llama_style)style, 1, &m), LX_OK);
        int32_t td[8] = {1, 5, 9, 2, 31, 7, 0, 4};
        lx_array *tok = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 8}, td));
        lx_array *yf32 = llama_model_logits(m, tok, NULL);
        lx_qt_session *s = NULL;
        CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_FAKE, &s), LX_OK);
        lx_array *yfake = llama_model_logits(m, tok, NULL);
        CHECK_EQ_INT((int)lx_qt_session_quantized(s), 3); /* wi_0, wi_1, wo; never logits_dense */
        lx_qt_end(s);
        CHECK_EQ_INT(lx_qt_begin(rs, LX_QT_INT8, &s), LX_OK);
        lx_array *yint8 = llama_model_logits(m, tok, NULL);
        CHECK_EQ_INT((int)lx_qt_session_int8(s), 3);
        lx_qt_end(s);
        double dq = 0, d8 = 0, mag = 0;
        for (int64_t i = 0; yf32 && yfake && yint8 && i < yf32->size; i++) {
            dq = fmax(dq, fabs(lx_f32(yfake)[i] - lx_f32(yf32)[i]));
            d8 = fmax(d8, fabs(lx_f32(yint8)[i] - lx_f32(yfake)[i]));
            mag = fmax(mag, fabs(lx_f32(yf32)[i]));
        }
        CHECK(dq > 0);             /* the MLP really was quantized */
        CHECK(dq < 0.05 * mag);    /* and stays close to float */
        CHECK(d8 < 1e-4 * mag);    /* int8 kernels = fake quantization up to summation order */
        llama_model_free(m);
    }
    lx_qt_rules_free(rs);
}

/* A substituter that cannot quantize fails the op (review finding, issue 13): never the float op
 * computed in its place. Every allocation of the quantized forward is failed in turn (FAKE and
 * INT8 sessions): each run either fails with a status or gives exactly the quantized result. */
static void test_failure_propagates(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(3, &r), LX_OK);
    nnx_linear *l = NULL;
    CHECK_EQ_INT(nnx_linear_new(64, 2, r, &l), LX_OK);
    lx_array *x = lx_array_new(LX_F32, 2, (int64_t[]){1, 64});
    for (int k = 0; k < 64; k++) lx_f32(x)[k] = 0.37f * (float)((k * 29) % 17) - 2.9f;
    lx_qt_rule rules[] = {{.module_path = ".*", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(rules, 1, &rs), LX_OK);
    lx_array *yf = lx_retain(nnx_call_array((nnx_module *)l, x));
    for (int mode = LX_QT_FAKE; mode <= LX_QT_INT8; mode++) {
        lx_qt_session *s = NULL;
        CHECK_EQ_INT(lx_qt_begin(rs, (lx_qt_mode)mode, &s), LX_OK);
        lx_array *yq = lx_retain(nnx_call_array((nnx_module *)l, x));
        lx_qt_end(s);
        CHECK(yq && !lx_array_equal(yq, yf)); /* quantization changes this output */

        /* an array limit the op's own (1, 2) result fits but the quantized operands do not */
        lx_set_max_array_bytes(100);
        CHECK_EQ_INT(lx_qt_begin(rs, (lx_qt_mode)mode, &s), LX_OK);
        size_t mark = lx_pool_open();
        lx_array *y = nnx_call_array((nnx_module *)l, x);
        CHECK(y == NULL);
        CHECK_EQ_INT(lx_last_status(), LX_ERR_NO_MEMORY);
        lx_pool_close(mark);
        lx_qt_end(s);
        lx_set_max_array_bytes(0);
        lx_clear_error();

        if (!lx_fault_available()) {
            lx_release(yq);
            continue;
        }
        int failed = 0, ok = 0;
        for (int64_t n = 1; n < 400; n++) {
            lx_fault_set(n, false);
            lx_qt_session *fs = NULL;
            lx_status st = lx_qt_begin(rs, (lx_qt_mode)mode, &fs);
            lx_array *y2 = NULL;
            mark = lx_pool_open();
            if (st == LX_OK) {
                y2 = nnx_call_array((nnx_module *)l, x);
                if (y2) {
                    LX_TEST_REPORT_(lx_array_equal(y2, yq), "mode %d: allocation %lld failed, the op gave another "
                                                            "result than the quantized one", mode, (long long)n);
                    ok++;
                } else {
                    CHECK(lx_last_status() != LX_OK);
                    failed++;
                }
                lx_qt_end(fs);
            }
            lx_pool_close(mark);
            bool fired = lx_fault_fired();
            lx_fault_set(-1, false);
            lx_clear_error();
            if (!fired) break; /* past the last allocation */
        }
        CHECK(failed > 0 && ok > 0);
        lx_release(yq);
    }
    lx_release(yf), lx_release(x);
    lx_qt_rules_free(rs);
    nnx_module_release((nnx_module *)l);
    nnx_rngs_release(r);
}

/* A NaN is never quantized into a plausible number (Qwix: jnp.max(|x|) propagates it into the
 * scale): a NaN activation makes the per-tensor scale NaN, so the fake and the int8 paths agree
 * (every output NaN, as the float op gives NaN for its row); a NaN weight makes its channel's
 * scale NaN, so the PTQ model's column is NaN as the float model's is. */
static void test_nan_not_hidden(void) {
    float row[4] = {NAN, 1.0f, -2.0f, 0.5f}, sc = 0;
    int8_t q[4] = {9, 9, 9, 9};
    lx_quantize_rows_i8(1, 4, row, q, &sc);
    CHECK(isnan(sc));
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(q[i], 0);
    float ok[2] = {0.5f, -1.0f};
    lx_quantize_rows_i8(1, 2, ok, q, &sc); /* finite rows as before */
    CHECK_EQ_INT(sc == 1.0f / 127.0f, 1);
    CHECK_EQ_INT(q[0], 64);
    CHECK_EQ_INT(q[1], -127);

    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(5, &r), LX_OK);
    nnx_linear *l = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 3, r, &l), LX_OK);
    float xd[8];
    memcpy(xd, xdat, sizeof xd);
    xd[0] = NAN;
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xd));
    lx_qt_rule rules[] = {{.module_path = ".*", .weight_qtype = "int8", .act_qtype = "int8"}};
    lx_qt_rules *rs = NULL;
    CHECK_EQ_INT(lx_qt_rules_compile(rules, 1, &rs), LX_OK);
    lx_array *yf = nnx_call_array((nnx_module *)l, x);
    CHECK(yf && isnan(lx_f32(yf)[0]) && !isnan(lx_f32(yf)[3])); /* float: the NaN row only */
    for (int mode = LX_QT_FAKE; mode <= LX_QT_INT8; mode++) {
        lx_qt_session *s = NULL;
        CHECK_EQ_INT(lx_qt_begin(rs, (lx_qt_mode)mode, &s), LX_OK);
        lx_array *y = nnx_call_array((nnx_module *)l, x);
        CHECK_EQ_INT((int)lx_qt_session_int8(s), mode == LX_QT_INT8 ? 1 : 0);
        lx_qt_end(s);
        CHECK(y != NULL);
        for (int i = 0; y && i < 6; i++) LX_TEST_REPORT_(isnan(lx_f32(y)[i]), "mode %d: output %d is %g, not NaN", mode, i, lx_f32(y)[i]);
    }

    /* a NaN weight through PTQ: its column stays NaN, the others are finite */
    lx_array *w = lx_variable_get_value(l->kernel);
    lx_f32(w)[1] = NAN; /* kernel[0, 1]: output channel 1 */
    lx_array *x2 = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, xdat));
    lx_call c = LX_ARGS(x2);
    CHECK_EQ_INT(lx_qt_quantize_nnx(rs, (nnx_module *)l, &c, NULL), LX_OK);
    lx_qt_session *s = NULL;
    CHECK_EQ_INT(lx_qt_begin_ptq_nnx(rs, (nnx_module *)l, &s), LX_OK);
    lx_array *yp = nnx_call_array((nnx_module *)l, x2);
    lx_qt_end(s);
    CHECK(yp != NULL);
    for (int m = 0; yp && m < 2; m++)
        for (int n = 0; n < 3; n++) CHECK_EQ_INT(isnan(lx_f32(yp)[m * 3 + n]) ? 1 : 0, n == 1 ? 1 : 0);
    lx_qt_rules_free(rs);
    nnx_module_release((nnx_module *)l);
    nnx_rngs_release(r);
}

int main(void) {
    RUN(test_nan_not_hidden);
    RUN(test_fake_and_int8_linear);
    RUN(test_showcase_mlp);
    RUN(test_failure_propagates);
    return lx_test_finish();
}
