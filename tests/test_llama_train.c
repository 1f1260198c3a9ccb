/* Training the showcase decoder (include/linnx/llama_train.h): both compositions give the same
 * logits, loss and gradients on the same parameters (and the gradients agree with central finite
 * differences of the loss in double), MaxText's schedule against its formula, a short run whose
 * loss falls, exact resume through a msgpack checkpoint file, and checkpoint errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "linnx/box.h"
#include "linnx/checkpoint.h"
#include "linnx/distributed.h"
#include "linnx/fault.h"
#include "linnx/llama.h"
#include "linnx/llama_train.h"
#include "linnx/lm_data.h"
#include "linnx/variable.h"
#include "lx_test.h"

static llama_config small(void) {
    llama_config c = llama_config_tiny();
    c.emb_dim = 16;
    c.num_query_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = 8;
    c.mlp_dim = 32;
    c.num_decoder_layers = 2;
    c.max_target_length = 16;
    return c;
}

static llama_model *model(llama_style s, int64_t seed, const llama_config *c) {
    llama_model *m = NULL;
    CHECK_EQ_INT(llama_model_new(c, s, seed, &m), LX_OK);
    return m;
}

/* A fixed (2, 9) batch of text bytes. */
static lx_array *batch(void) {
    static const char *txt = "the cat sat on the mat and then the dog ran";
    int32_t t[18];
    for (int i = 0; i < 18; i++) t[i] = (unsigned char)txt[i + (i >= 9 ? 10 : 0)];
    return lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){2, 9}, t));
}

/* Worst |a - b| / (1e-3 + max|b|) over two trees' leaves at the same paths. */
static double tree_diff(const lx_tree *a, const lx_tree *b, size_t *n) {
    lx_flat fa = {0};
    double worst = 0;
    CHECK_EQ_INT(lx_tree_flatten(a, &fa), LX_OK);
    *n = fa.len;
    for (size_t i = 0; i < fa.len; i++) {
        lx_array *x = lx_value_leaf_array(&fa.items[i].value), *y = lx_value_leaf_array(lx_tree_find(b, fa.items[i].path));
        if (!x || !y || x->size != y->size) {
            LX_TEST_REPORT_(0, "%s: not in both trees", fa.items[i].path);
            continue;
        }
        double mx = 0, d = 0;
        for (int64_t k = 0; k < x->size; k++) {
            mx = fmax(mx, fabs(lx_f32(y)[k]));
            d = lx_worse(d, fabs((double)lx_f32(x)[k] - lx_f32(y)[k]));
        }
        worst = lx_worse(worst, d / (1e-3 + mx));
    }
    lx_flat_free(&fa);
    return worst;
}

static void test_compositions_same_logits_loss_grads(void) {
    llama_config c = small();
    llama_model *a = model(LLAMA_LINEN_TOP, 0, &c), *b = model(LLAMA_NNX_TOP, 3, &c);
    lx_tree *pa = NULL;
    CHECK_EQ_INT(llama_model_params(a, &pa), LX_OK);
    CHECK_EQ_INT(llama_model_load_params(b, pa), LX_OK); /* the same parameters in both */
    lx_array *tok = batch();
    lx_array *in = lx_slice(tok, 2, (lx_range[]){LX_RANGE_ALL, LX_RANGE(0, 8)});
    lx_array *la = llama_model_logits(a, in, NULL), *lb = llama_model_logits(b, in, NULL);
    CHECK(la && lb && la->size == 2 * 8 * 256 && lb->size == la->size);
    double w = 0;
    for (int64_t i = 0; la && lb && i < la->size; i++) w = lx_worse(w, fabs(lx_f32(la)[i] - lx_f32(lb)[i]));
    LX_TEST_REPORT_(w < 1e-5, "logits differ by %g", w);

    lx_array *va = NULL, *vb = NULL;
    lx_tree *ga = NULL, *gb = NULL;
    CHECK_EQ_INT(llama_value_and_grad(a, tok, &va, &ga), LX_OK);
    CHECK_EQ_INT(llama_value_and_grad(b, tok, &vb, &gb), LX_OK);
    if (va && vb) {
        CHECK_NEAR(lx_f32(va)[0], lx_f32(vb)[0], 1e-6);
        /* a random init predicts bytes at about chance: ln 256 = 5.545 */
        CHECK(fabs(lx_f32(va)[0] - log(256.0)) < 0.5);
    }
    if (ga && gb) {
        size_t n = 0;
        double gd = tree_diff(ga, gb, &n);
        CHECK_EQ_INT(n, 2 * 9 + 3); /* 9 leaves per layer, embedding, decoder_norm, logits_dense */
        LX_TEST_REPORT_(gd < 1e-4, "Linen and NNX gradients differ (worst relative %g)", gd);
        /* the Linen gradients keep the LogicallyPartitioned boxes, the NNX ones are Params */
        const lx_value *qa = lx_tree_find(ga, "decoder/layers_0/self_attention/query/kernel");
        const lx_value *qb = lx_tree_find(gb, "decoder/layers_0/self_attention/query/kernel");
        CHECK(qa && qa->kind == LX_V_BOX && qb && qb->kind == LX_V_VARIABLE);
        /* central differences of the loss in float32 for the largest-gradient element of three leaves */
        static const char *paths[] = {"decoder/logits_dense/kernel", "decoder/layers_1/mlp/wi_0/kernel",
                                      "token_embedder/embedding"};
        for (int p = 0; p < 3; p++) {
            lx_array *g = lx_value_leaf_array(lx_tree_find(ga, paths[p]));
            lx_array *x = lx_value_leaf_array(lx_tree_find(pa, paths[p]));
            if (!g || !x) {
                LX_TEST_REPORT_(0, "%s missing", paths[p]);
                continue;
            }
            int64_t k = 0;
            for (int64_t i = 0; i < g->size; i++)
                if (fabs(lx_f32(g)[i]) > fabs(lx_f32(g)[k])) k = i;
            float x0 = lx_f32(x)[k], h = 1e-2f;
            double fd[2];
            for (int s = 0; s < 2; s++) {
                lx_f32(x)[k] = x0 + (s ? -h : h);
                size_t mark = lx_pool_open();
                lx_array *l = llama_model_loss(a, tok);
                fd[s] = l ? lx_f32(l)[0] : NAN;
                lx_pool_close(mark);
            }
            lx_f32(x)[k] = x0;
            double num = (fd[0] - fd[1]) / (2.0 * h);
            LX_TEST_REPORT_(fabs(num - lx_f32(g)[k]) < 0.03 * fabs(lx_f32(g)[k]) + 2e-4,
                            "%s[%lld]: gradient %g, finite difference %g", paths[p], (long long)k, lx_f32(g)[k], num);
        }
    }
    lx_release(va);
    lx_release(vb);
    lx_tree_release(ga);
    lx_tree_release(gb);
    lx_tree_release(pa);
    llama_model_free(a);
    llama_model_free(b);
}

/* MaxText's create_learning_rate_schedule, in double (spec/maxtext-decoder.md §D.10). */
static double maxtext_lr(double lr, int64_t steps, double warm_frac, double final_frac, int64_t step) {
    int64_t warm = (int64_t)((double)steps * warm_frac), len = steps - warm;
    if (step < warm) return lr * (double)step / (double)warm;
    double pct = (double)(step - warm) / (double)(len - 1);
    if (pct > 1) pct = 1;
    double a = 0.5 * (cos(3.14159265358979323846 * pct) + 1);
    return lr * a + lr * final_frac * (1 - a);
}

static void test_schedule(void) {
    llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
    o.steps = 100;
    o.learning_rate = 3e-3;
    optax_schedule *s = llama_lr_schedule(&o);
    CHECK(s != NULL);
    for (int64_t k = 0; s && k <= 105; k++)
        LX_TEST_REPORT_(fabs(optax_schedule_eval(s, k) - maxtext_lr(3e-3, 100, 0.1, 0.1, k)) < 1e-9 + 1e-6 * 3e-3,
                        "step %lld: %.9g vs %.9g", (long long)k, optax_schedule_eval(s, k), maxtext_lr(3e-3, 100, 0.1, 0.1, k));
    if (s) {
        CHECK_NEAR(optax_schedule_eval(s, 0), 0.0, 0);
        CHECK_NEAR(optax_schedule_eval(s, 10), 3e-3, 1e-9); /* the peak right after warmup */
        CHECK_NEAR(optax_schedule_eval(s, 99), 3e-4, 1e-9); /* the final fraction at the last step */
    }
    optax_schedule_release(s);
    o.steps = 1;
    lx_clear_error();
    CHECK_NULL_FAILS(llama_lr_schedule(&o), LX_ERR_INVALID_ARGUMENT, "steps must be at least 2");
}

/* k steps on the batches of a fixed key schedule; returns the losses. */
static void run_steps(llama_trainer *t, const uint8_t *text, int64_t n, int64_t from, int64_t to, float *losses) {
    lx_key dk = lx_key_from_seed(11);
    for (int64_t s = from; s < to; s++) {
        size_t mark = lx_pool_open();
        lx_array *b = lm_random_batch(text, n, lx_key_fold_in(dk, (uint32_t)s), 4, 17);
        CHECK_EQ_INT(llama_trainer_step(t, b, &losses[s]), LX_OK);
        lx_pool_close(mark);
    }
}

static uint8_t *corpus(int64_t *n) {
    static const char *line = "to be or not to be, that is the question. ";
    int64_t L = (int64_t)strlen(line);
    *n = 40 * L;
    uint8_t *b = malloc((size_t)*n);
    for (int64_t i = 0; b && i < *n; i++) b[i] = (uint8_t)line[i % L];
    return b;
}

static void test_loss_falls(void) {
    llama_config c = small();
    int64_t n;
    uint8_t *text = corpus(&n);
    for (int style = 0; style < 2; style++) {
        llama_model *m = model((llama_style)style, 0, &c);
        llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
        o.steps = 40;
        o.learning_rate = 1e-2;
        llama_trainer *t = NULL;
        CHECK_EQ_INT(llama_trainer_new(m, &o, &t), LX_OK);
        float losses[40] = {0};
        if (t) run_steps(t, text, n, 0, 40, losses);
        CHECK_EQ_INT(llama_trainer_step_count(t), 40);
        /* a repeated sentence: from chance (ln 256) to well under the byte-unigram entropy */
        double ent = lm_unigram_entropy(text, n);
        LX_TEST_REPORT_(losses[0] > 5.0 && losses[39] < 0.6 * ent, "style %d: loss %g -> %g (unigram entropy %g)", style,
                        losses[0], losses[39], ent);
        llama_trainer_free(t);
        llama_model_free(m);
    }
    free(text);
}

/* The optimizer state as train-lm wrote it before MaxText's Linen layout: mu/nu without the
 * `params` level, EmptyState as {}. */
static lx_tree *old_layout(const lx_tree *t) {
    lx_tree *o = lx_tree_new();
    for (size_t i = 0; o && i < lx_tree_len(t); i++) {
        const char *k = lx_tree_key(t, i);
        const lx_value *v = lx_tree_at(t, i);
        if (v->kind == LX_V_NONE) {
            lx_tree *e = lx_tree_new();
            lx_tree_set(o, k, lx_tree_v(e));
            lx_tree_release(e);
        } else if (v->kind == LX_V_TREE) {
            const lx_value *inner = lx_tree_get(v->u.tree, "params");
            bool wrap = (!strcmp(k, "mu") || !strcmp(k, "nu")) && inner && inner->kind == LX_V_TREE;
            lx_tree *c = old_layout(wrap ? inner->u.tree : v->u.tree);
            lx_tree_set(o, k, lx_tree_v(c));
            lx_tree_release(c);
        } else {
            lx_tree_set(o, k, *v);
        }
    }
    return o;
}

/* The checkpoint's layout is MaxText's Linen train state (spec/checkpoints.md C.1): optax's mu/nu
 * mirror params = {params: ...}, EmptyState is None; `linnx convert`'s maxtext-linen layout is
 * the same, through maxtext-nnx and back. */
static void check_linen_layout(const lx_tree *back) {
    const lx_value *step = lx_tree_get(back, "step");
    CHECK(step && step->kind == LX_V_ARRAY && step->u.array->dtype == LX_I32 && step->u.array->ndim == 0 &&
          lx_i32(step->u.array)[0] == 4);
    CHECK(lx_tree_find(back, "params/params/decoder/decoder_norm/scale") != NULL);
    CHECK(lx_tree_find(back, "opt_state/1/0/mu/params/decoder/decoder_norm/scale") != NULL);
    CHECK(lx_tree_find(back, "opt_state/1/0/nu/params/token_embedder/embedding") != NULL);
    CHECK(lx_tree_find(back, "opt_state/1/0/mu/decoder") == NULL);
    CHECK(lx_tree_find(back, "opt_state/1/0/count") != NULL && lx_tree_find(back, "opt_state/1/2/count") != NULL);
    const lx_value *e0 = lx_tree_find(back, "opt_state/0"), *e1 = lx_tree_find(back, "opt_state/1/1");
    CHECK(e0 && e0->kind == LX_V_NONE && e1 && e1->kind == LX_V_NONE);
    lx_tree *nnx = NULL, *lin = NULL;
    CHECK_EQ_INT(lx_layout_convert(back, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_NNX, NULL, &nnx), LX_OK);
    CHECK(lx_tree_find(nnx, "optimizer/opt_state/1/0/mu/decoder/decoder_norm/scale") != NULL);
    const lx_value *n0 = lx_tree_find(nnx, "optimizer/opt_state/0");
    CHECK(n0 && n0->kind == LX_V_TREE && lx_tree_len(n0->u.tree) == 0);
    CHECK_EQ_INT(lx_layout_convert(nnx, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_LINEN, NULL, &lin), LX_OK);
    const lx_value *oa = lx_tree_get(back, "opt_state"), *ob = lin ? lx_tree_get(lin, "opt_state") : NULL;
    lx_flat fa = {0}, fb = {0};
    CHECK(oa && ob && lx_tree_flatten(oa->u.tree, &fa) == LX_OK && lx_tree_flatten(ob->u.tree, &fb) == LX_OK);
    CHECK_EQ_INT(fa.len, fb.len);
    for (size_t i = 0; i < fa.len && i < fb.len; i++) {
        const lx_value *vb = lx_tree_find(ob->u.tree, fa.items[i].path);
        LX_TEST_REPORT_(vb != NULL, "convert maxtext-nnx -> maxtext-linen lacks opt_state/%s", fa.items[i].path);
    }
    lx_flat_free(&fa);
    lx_flat_free(&fb);
    lx_tree_release(nnx);
    lx_tree_release(lin);
}

static void test_resume_equal(void) {
    llama_config c = small();
    int64_t n;
    uint8_t *text = corpus(&n);
    llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
    o.steps = 8;
    o.learning_rate = 1e-2;
    /* uninterrupted */
    llama_model *a = model(LLAMA_LINEN_TOP, 5, &c);
    llama_trainer *ta = NULL;
    CHECK_EQ_INT(llama_trainer_new(a, &o, &ta), LX_OK);
    float la[8] = {0}, lb[8] = {0};
    if (ta) run_steps(ta, text, n, 0, 8, la);
    /* 4 steps, a checkpoint file, a new process's worth of objects, 4 more */
    char path[] = "/tmp/lx_llama_resume_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    llama_model *b = model(LLAMA_LINEN_TOP, 5, &c);
    llama_trainer *tb = NULL;
    CHECK_EQ_INT(llama_trainer_new(b, &o, &tb), LX_OK);
    if (tb) run_steps(tb, text, n, 0, 4, lb);
    lx_tree *st = NULL;
    CHECK_EQ_INT(llama_trainer_state(tb, &st), LX_OK);
    CHECK_EQ_INT(lx_ckpt_save(path, st, LX_CKPT_MSGPACK), LX_OK);
    lx_tree_release(st);
    llama_trainer_free(tb);
    llama_model_free(b);
    lx_tree *back = NULL;
    CHECK_EQ_INT(lx_ckpt_load(path, &back), LX_OK);
    if (back) check_linen_layout(back);
    /* a checkpoint of the earlier layout resumes the same */
    lx_tree *old = lx_tree_copy(back);
    const lx_value *ov = old ? lx_tree_get(old, "opt_state") : NULL;
    lx_tree *old_opt = ov ? old_layout(ov->u.tree) : NULL;
    CHECK(old_opt && lx_tree_set(old, "opt_state", lx_tree_v(old_opt)) == LX_OK &&
          lx_tree_set(old, "step", lx_int_v(4)) == LX_OK &&
          lx_tree_find(old, "opt_state/1/0/mu/decoder/decoder_norm/scale") != NULL);
    lx_tree_release(old_opt);
    {
        llama_model *r = model(LLAMA_LINEN_TOP, 98, &c);
        llama_trainer *tr = NULL;
        CHECK_EQ_INT(llama_trainer_new(r, &o, &tr), LX_OK);
        CHECK_EQ_INT(llama_trainer_load_state(tr, old), LX_OK);
        CHECK_EQ_INT(llama_trainer_step_count(tr), 4);
        float lr_[8] = {0};
        if (tr) run_steps(tr, text, n, 4, 8, lr_);
        for (int i = 4; i < 8; i++)
            LX_TEST_REPORT_(bits_of(lr_[i]) == bits_of(la[i]), "old layout, step %d: resumed loss %.9g, uninterrupted %.9g",
                            i + 1, lr_[i], la[i]);
        llama_trainer_free(tr);
        llama_model_free(r);
    }
    lx_tree_release(old);
    /* so does the checkpoint converted to MaxText's NNX layout (config kept), read through its
     * Linen form */
    lx_tree *nnx_form = NULL;
    CHECK_EQ_INT(lx_layout_convert(back, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_NNX, NULL, &nnx_form), LX_OK);
    CHECK(nnx_form && lx_tree_find(nnx_form, "model/decoder/decoder_norm/scale") && lx_tree_find(nnx_form, "config/emb_dim"));
    for (int style = 0; style < 2 && nnx_form; style++) {
        llama_config got;
        CHECK_EQ_INT(llama_checkpoint_config(nnx_form, &got), LX_OK);
        CHECK_EQ_INT(got.emb_dim, c.emb_dim);
        llama_model *r = model((llama_style)style, 97, &c);
        llama_trainer *tr = NULL;
        CHECK_EQ_INT(llama_trainer_new(r, &o, &tr), LX_OK);
        CHECK_EQ_INT(llama_trainer_load_state(tr, nnx_form), LX_OK);
        CHECK_EQ_INT(llama_trainer_step_count(tr), 4);
        float lr_[8] = {0};
        if (tr) run_steps(tr, text, n, 4, 8, lr_);
        for (int i = 4; i < 8; i++)
            LX_TEST_REPORT_(style == 1 ? fabs(lr_[i] - la[i]) < 1e-5 : bits_of(lr_[i]) == bits_of(la[i]),
                            "maxtext-nnx form, style %d step %d: resumed loss %.9g, uninterrupted %.9g", style, i + 1,
                            lr_[i], la[i]);
        llama_trainer_free(tr);
        llama_model_free(r);
    }
    lx_tree_release(nnx_form);
    /* the NNX top continues the Linen top's run: the checkpoint holds plain arrays */
    for (int style = 0; style < 2; style++) {
        llama_model *r = model((llama_style)style, 99, &c);
        llama_trainer *tr = NULL;
        CHECK_EQ_INT(llama_trainer_new(r, &o, &tr), LX_OK);
        CHECK_EQ_INT(llama_trainer_load_state(tr, back), LX_OK);
        CHECK_EQ_INT(llama_trainer_step_count(tr), 4);
        float lr_[8] = {0};
        memcpy(lr_, lb, sizeof lr_);
        if (tr) run_steps(tr, text, n, 4, 8, lr_);
        for (int i = 0; i < 8; i++)
            LX_TEST_REPORT_(style == 1 ? fabs(lr_[i] - la[i]) < 1e-5 : bits_of(lr_[i]) == bits_of(la[i]),
                            "style %d step %d: resumed loss %.9g, uninterrupted %.9g", style, i + 1, lr_[i], la[i]);
        if (style == 0) {
            lx_tree *p1 = NULL, *p2 = NULL;
            CHECK_EQ_INT(llama_model_params(a, &p1), LX_OK);
            CHECK_EQ_INT(llama_model_params(r, &p2), LX_OK);
            size_t k;
            CHECK(tree_diff(p1, p2, &k) == 0);
            lx_tree_release(p1);
            lx_tree_release(p2);
        }
        llama_trainer_free(tr);
        llama_model_free(r);
    }
    /* a model of another size: a clear error, nothing changed */
    llama_config c2 = c;
    c2.emb_dim = 32;
    llama_model *w = model(LLAMA_LINEN_TOP, 0, &c2);
    llama_trainer *tw = NULL;
    CHECK_EQ_INT(llama_trainer_new(w, &o, &tw), LX_OK);
    CHECK_FAILS(llama_trainer_load_state(tw, back), LX_ERR_SHAPE,
                "a model of another size: emb_dim is 16 in the checkpoint, 32 in this model");
    CHECK_EQ_INT(llama_trainer_step_count(tw), 0);
    CHECK_FAILS(llama_model_load_checkpoint(w, back), LX_ERR_SHAPE, "emb_dim is 16 in the checkpoint");
    /* a longer max_target_length samples from the same parameters; training on needs the same */
    llama_config c3 = c;
    c3.max_target_length = 32;
    llama_model *longer = model(LLAMA_NNX_TOP, 0, &c3);
    CHECK_EQ_INT(llama_model_load_checkpoint(longer, back), LX_OK);
    llama_trainer *tl = NULL;
    CHECK_EQ_INT(llama_trainer_new(longer, &o, &tl), LX_OK);
    CHECK_FAILS(llama_trainer_load_state(tl, back), LX_ERR_SHAPE, "max_target_length is 16 in the checkpoint, 32 in this model");
    llama_trainer_free(tl);
    llama_model_free(longer);
    /* a checkpoint without its config */
    lx_tree *noconf = lx_tree_copy(back);
    CHECK_EQ_INT(lx_tree_delete(noconf, "config"), LX_OK);
    CHECK_FAILS(llama_trainer_load_state(tw, noconf), LX_ERR_NOT_FOUND, "no 'config' map");
    /* the right config with a parameter of the wrong shape (the config lies) */
    llama_model *ok = model(LLAMA_LINEN_TOP, 0, &c);
    llama_trainer *tok = NULL;
    CHECK_EQ_INT(llama_trainer_new(ok, &o, &tok), LX_OK);
    lx_tree *bad = lx_tree_copy(back);
    lx_array *z = lx_array_new(LX_F32, 2, (int64_t[]){3, 3});
    CHECK_EQ_INT(lx_tree_set_path(bad, "params/params/decoder/decoder_norm/scale", lx_array_v(z)), LX_OK);
    lx_release(z);
    lx_clear_error();
    CHECK_FAILS(llama_trainer_load_state(tok, bad), LX_ERR_SHAPE, "decoder_norm/scale");
    CHECK_EQ_INT(llama_trainer_step_count(tok), 0);
    lx_tree_release(bad);
    lx_tree_release(noconf);
    llama_trainer_free(tok);
    llama_model_free(ok);
    llama_trainer_free(tw);
    llama_model_free(w);
    lx_tree_release(back);
    unlink(path);
    llama_trainer_free(ta);
    llama_model_free(a);
    free(text);
}

/* A step failing anywhere (an allocation at spread points of the loss, the gradients, the
 * optimizer and the parameters' replacement) changes nothing: the step count and the model's
 * parameters stay, llama_trainer_step_fault says LOCAL (no MPI here: nothing the other ranks
 * could know), and the same step then gives the loss and parameters of an unfailed trainer. */
static void test_step_failure_unchanged(void) {
    if (!lx_fault_available()) return;
    llama_config c = small();
    for (int style = 0; style < 2; style++) {
        size_t mark = lx_pool_open();
        llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
        o.steps = 10;
        llama_model *ma = model((llama_style)style, 3, &c), *mb = model((llama_style)style, 3, &c);
        llama_trainer *ta = NULL, *tb = NULL;
        CHECK_EQ_INT(llama_trainer_new(ma, &o, &ta), LX_OK);
        CHECK_EQ_INT(llama_trainer_new(mb, &o, &tb), LX_OK);
        if (!ta || !tb) return;
        lx_array *b = batch();
        float la = 0, lb = 0;
        lx_fault_set(0, false);
        CHECK_EQ_INT(llama_trainer_step(ta, b, &la), LX_OK);
        int64_t total = lx_fault_count();
        lx_fault_set(-1, false);
        CHECK_EQ_INT(llama_trainer_step_fault(ta), LLAMA_STEP_LOCAL);
        CHECK(total > 10);
        lx_tree *p0 = NULL, *pa = NULL, *pb = NULL;
        CHECK_EQ_INT(llama_model_params(mb, &p0), LX_OK);
        int failed = 0;
        for (int k = 1; k <= 12; k++) {
            int64_t n = total * k / 12 - (k == 12); /* the last ones: the update and the parameters' replacement */
            lx_fault_set(n, false);
            lx_status st = llama_trainer_step(tb, b, &lb);
            bool fired = lx_fault_fired();
            lx_fault_set(-1, false);
            if (st == LX_OK) { /* absorbed (a cache the library does without): the step is done */
                CHECK_EQ_INT(llama_trainer_step_count(tb), 1);
                break;
            }
            failed++;
            CHECK(fired);
            CHECK_EQ_INT(llama_trainer_step_count(tb), 0);
            CHECK_EQ_INT(llama_trainer_step_fault(tb), LLAMA_STEP_LOCAL);
            lx_tree *now = NULL;
            size_t nl = 0;
            CHECK_EQ_INT(llama_model_params(mb, &now), LX_OK);
            LX_TEST_REPORT_(now && tree_diff(now, p0, &nl) == 0 && nl > 0, "style %d: allocation %lld of %lld failing: the parameters changed",
                            style, (long long)n, (long long)total);
            lx_tree_release(now);
        }
        LX_TEST_REPORT_(failed >= 6, "style %d: %d of 12 failing allocations failed the step", style, failed);
        if (llama_trainer_step_count(tb) == 0) CHECK_EQ_INT(llama_trainer_step(tb, b, &lb), LX_OK);
        CHECK(la == lb);
        size_t nl = 0;
        CHECK_EQ_INT(llama_model_params(ma, &pa), LX_OK);
        CHECK_EQ_INT(llama_model_params(mb, &pb), LX_OK);
        if (pa && pb) LX_TEST_REPORT_(tree_diff(pb, pa, &nl) == 0, "style %d: the step after the failures differs", style);
        lx_tree_release(p0);
        lx_tree_release(pa);
        lx_tree_release(pb);
        llama_trainer_free(ta);
        llama_trainer_free(tb);
        llama_model_free(ma);
        llama_model_free(mb);
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(llama_trainer_step_fault(NULL), LLAMA_STEP_LOCAL);
}

/* Under mpirun -np 2 (`test_llama_train --dist`, launched by cli_distributed.sh): rank 1's update
 * fails (the last allocation of its step: the parameters' replacement, after the gradients'
 * status check and the averaging). Every rank learns of it in the step's second status check:
 * rank 1 keeps its own error, rank 0 gets "distributed: rank 1 failed at step 7"; both say
 * LLAMA_STEP_AGREED, neither changed its step count or parameters (rank 0's own update is
 * undone), and the next step runs on both ranks in lockstep with an unfailed trainer's result.
 * Before, rank 0 went on to the next step alone and waited in its collectives. */
static void test_update_failure_dist(void) {
    if (!lx_fault_available()) return;
    int rank = 0, size = 1;
    CHECK_EQ_INT(lx_dist_init(NULL, NULL, &rank, &size), LX_OK);
    CHECK_EQ_INT(size, 2);
    if (size != 2) return;
    llama_config c = small();
    llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
    o.steps = 10;
    for (int style = 0; style < 2; style++) {
        size_t mark = lx_pool_open();
        llama_model *mw = model((llama_style)style, 5, &c), *ma = model((llama_style)style, 5, &c),
                    *mb = model((llama_style)style, 5, &c);
        llama_trainer *tw = NULL, *ta = NULL, *tb = NULL;
        CHECK_EQ_INT(llama_trainer_new(mw, &o, &tw), LX_OK);
        CHECK_EQ_INT(llama_trainer_new(ma, &o, &ta), LX_OK);
        CHECK_EQ_INT(llama_trainer_new(mb, &o, &tb), LX_OK);
        if (!tw || !ta || !tb) return;
        lx_array *b = batch();
        float lw = 0, la = 0, lb = 0;
        lx_dist_set_step(7);
        CHECK_EQ_INT(llama_trainer_step(tw, b, &lw), LX_OK); /* warms what the library keeps between steps */
        lx_fault_set(0, false);
        CHECK_EQ_INT(llama_trainer_step(ta, b, &la), LX_OK);
        int64_t total = lx_fault_count();
        lx_fault_set(-1, false);
        lx_tree *p0 = NULL, *now = NULL, *pa = NULL;
        CHECK_EQ_INT(llama_model_params(mb, &p0), LX_OK);
        if (rank == 1) lx_fault_set(total, false);
        lx_status st = llama_trainer_step(tb, b, &lb);
        bool fired = lx_fault_fired();
        lx_fault_set(-1, false);
        if (rank == 1) {
            CHECK(fired);
            CHECK_EQ_INT(st, LX_ERR_NO_MEMORY);
        } else {
            CHECK_EQ_INT(st, LX_ERR_INTERNAL);
            LX_TEST_REPORT_(!strcmp(lx_last_error(), "distributed: rank 1 failed at step 7"), "style %d, rank 0: %s", style,
                            lx_last_error());
        }
        CHECK_EQ_INT(llama_trainer_step_fault(tb), LLAMA_STEP_AGREED);
        CHECK_EQ_INT(llama_trainer_step_count(tb), 0);
        size_t nl = 0;
        CHECK_EQ_INT(llama_model_params(mb, &now), LX_OK);
        LX_TEST_REPORT_(now && tree_diff(now, p0, &nl) == 0 && nl > 0, "style %d, rank %d: the parameters changed", style, rank);
        /* the ranks still move together: the same step again, as the unfailed trainer's */
        CHECK_EQ_INT(llama_trainer_step(tb, b, &lb), LX_OK);
        CHECK_EQ_INT(llama_trainer_step_fault(tb), LLAMA_STEP_LOCAL);
        CHECK(la == lb);
        CHECK_EQ_INT(llama_model_params(ma, &pa), LX_OK);
        lx_tree_release(now);
        now = NULL;
        CHECK_EQ_INT(llama_model_params(mb, &now), LX_OK);
        if (pa && now) LX_TEST_REPORT_(tree_diff(now, pa, &nl) == 0, "style %d, rank %d: the step after the failure differs", style, rank);
        lx_tree_release(p0);
        lx_tree_release(now);
        lx_tree_release(pa);
        llama_trainer_free(tw);
        llama_trainer_free(ta);
        llama_trainer_free(tb);
        llama_model_free(mw);
        llama_model_free(ma);
        llama_model_free(mb);
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(lx_dist_finalize(), LX_OK);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--dist")) { /* under mpirun -np 2 only */
        RUN(test_update_failure_dist);
        optax_release_buffers();
        lx_pool_drain();
        return lx_test_finish();
    }
    RUN(test_compositions_same_logits_loss_grads);
    RUN(test_schedule);
    RUN(test_loss_falls);
    RUN(test_resume_equal);
    RUN(test_step_failure_unchanged);
    optax_release_buffers();
    lx_pool_drain();
    return lx_test_finish();
}
