/* Training end to end with the tape's gradients (autodiff.h): nnx.Optimizer's published docstring
 * run (Flax's optimizer.py: loss 2.3359997, one adam(1e-3) update -> 2.310461) with the gradients
 * of nnx.value_and_grad over optax.losses.squared_error(...).mean(), and a Linen Dense trained with
 * TrainState over linen_value_and_grad, whose optimizer path must equal optax_update +
 * apply_updates applied by hand, bit for bit. */
#include <stddef.h>

#include "linnx/nnx_layers.h"
#include "lx_test.h"

typedef struct {
    nnx_module base;
    nnx_module *linear1, *linear2;
} model2;

static lx_status model2_init(nnx_module *m, const lx_call *call, nnx_rngs *rngs) {
    model2 *self = (model2 *)m;
    lx_call l1 = LX_CALL_ARGS(lx_int_v(2), lx_int_v(3));
    lx_call l2 = LX_CALL_ARGS(lx_int_v(3), lx_int_v(4));
    LX_TRY(nnx_module_new(&NNX_LINEAR_TYPE, &l1, rngs, &self->linear1));
    return nnx_module_new(&NNX_LINEAR_TYPE, &l2, rngs, &self->linear2);
}
static const nnx_field MODEL2_FIELDS[] = {NNX_CHILD(model2, linear1), NNX_CHILD(model2, linear2)};
static const nnx_type MODEL2 = {.name = "Model", .size = sizeof(model2), .fields = MODEL2_FIELDS, .nfields = 2,
                                .init = model2_init};

typedef struct {
    lx_array *x, *y;
} batch;

/* loss_fn = lambda model: ((model(x) - y) ** 2).mean(), written with optax.losses */
static lx_status nnx_loss(nnx_module *m, void *user, lx_array **loss) {
    batch *b = user;
    model2 *self = (model2 *)m;
    lx_array *yh = nnx_call_array(self->linear2, nnx_call_array(self->linear1, b->x));
    *loss = lx_mean(optax_squared_error(yh, b->y), LX_ALL_AXES, false);
    return *loss ? LX_OK : lx_last_status();
}

static void test_nnx_docstring_with_tape(void) {
    nnx_rngs *rngs = NULL;
    nnx_module *m = NULL;
    CHECK(nnx_rngs_from_seed(0, &rngs) == LX_OK);
    CHECK(nnx_module_new(&MODEL2, &(lx_call){0}, rngs, &m) == LX_OK);
    nnx_rngs_release(rngs);
    if (!m) return;
    batch b = {lx_random_normal(lx_key_from_seed(0), 2, (const int64_t[]){1, 2}),
               lx_array_full_f32(2, (const int64_t[]){1, 4}, 1.0f)};
    lx_autorelease(b.y);
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    nnx_optimizer *opt = NULL;
    CHECK(nnx_optimizer_new(m, optax_adam(OPTAX_CONST(1e-3), NULL), &param, &opt) == LX_OK);
    lx_array *loss = NULL;
    lx_tree *grads = NULL;
    CHECK(nnx_value_and_grad(m, &param, nnx_loss, &b, &loss, &grads) == LX_OK);
    LX_TEST_REPORT_(loss && fabsf(lx_f32(loss)[0] - 2.3359997f) <= 2e-6f, "loss %.9g, Flax prints 2.3359997",
                    loss ? lx_f32(loss)[0] : NAN);
    lx_release(loss);
    CHECK(opt && nnx_optimizer_update(opt, m, grads, NULL) == LX_OK);
    lx_tree_release(grads);
    loss = NULL;
    CHECK(nnx_value_and_grad(m, &param, nnx_loss, &b, &loss, &grads) == LX_OK);
    LX_TEST_REPORT_(loss && fabsf(lx_f32(loss)[0] - 2.310461f) <= 2e-6f, "loss after one update %.9g, Flax prints 2.310461",
                    loss ? lx_f32(loss)[0] : NAN);
    lx_release(loss);
    lx_tree_release(grads);
    nnx_optimizer_free(opt);
    nnx_module_release(m);
}

typedef struct {
    const linen_module *m;
    lx_array *x, *y;
} lin_batch;

/* loss = optax.l2_loss(model.apply({'params': params}, x), y).mean() */
static lx_status linen_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    lin_batch *b = user;
    lx_tree *vars = lx_tree_new();
    lx_status st = vars ? lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params)) : lx_last_status();
    lx_value out = lx_none();
    lx_call c = LX_CALL_ARGS(lx_array_v(b->x));
    if (st == LX_OK) st = linen_apply(b->m, vars, &c, LINEN_NO_RNGS, NULL, &out, NULL);
    lx_tree_release(vars);
    if (st == LX_OK && out.kind == LX_V_ARRAY) *loss = lx_mean(optax_l2_loss(out.u.array, b->y), LX_ALL_AXES, false);
    lx_value_free(&out);
    if (st == LX_OK && !*loss) st = lx_last_status();
    return st;
}

static void test_linen_train_state_with_tape(void) {
    linen_module *dense = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(3));
    CHECK(linen_module_new(&linen_Dense, &c, &dense) == LX_OK);
    lx_array *x = lx_random_normal(lx_key_from_seed(1), 2, (const int64_t[]){8, 5});
    lx_array *y = lx_random_normal(lx_key_from_seed(2), 2, (const int64_t[]){8, 3});
    lx_tree *vars = NULL;
    lx_call cx = LX_CALL_ARGS(lx_array_v(x));
    CHECK(linen_init(dense, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &vars) == LX_OK);
    if (!vars) return;
    lx_tree *params = lx_tree_get(vars, "params")->u.tree;
    lin_batch b = {dense, x, y};
    linen_train_state *s = NULL;
    CHECK(linen_train_state_create(dense, params, optax_from_string("adamw(0.05, weight_decay=0.01)"), &s) == LX_OK);
    /* the same optimizer by hand, unfused (optax_update, then optax_apply_updates), to compare
     * bit for bit with apply_gradients' fused pass (optax.h promises bit-identical results) */
    optax_tx *tx = optax_from_string("adamw(0.05, weight_decay=0.01)");
    lx_tree *hp = lx_tree_retain(params), *hs = NULL;
    CHECK(optax_init(tx, hp, &hs) == LX_OK);
    float first = 0, last = 0;
    bool same = true, falling = true;
    for (int step = 0; step < 25 && s; step++) {
        lx_array *loss = NULL;
        lx_tree *grads = NULL;
        CHECK(linen_value_and_grad(linen_loss, &b, s->params, &loss, &grads, NULL) == LX_OK);
        if (!loss) break;
        float l = lx_f32(loss)[0];
        if (step == 0) first = l;
        else falling &= l < last;
        last = l;
        linen_train_state *n = NULL;
        uint64_t fused = optax_fused_steps();
        CHECK(linen_train_state_apply_gradients(s, grads, &n) == LX_OK);
        CHECK(optax_fused_steps() == fused + 1); /* the fused pass is what is compared */
        lx_tree *upd = NULL, *np = NULL, *ns = NULL;
        CHECK(optax_update(tx, grads, hs, hp, &upd, &ns) == LX_OK);
        CHECK(optax_apply_updates(hp, upd, &np) == LX_OK);
        CHECK(optax_fused_steps() == fused + 1);
        lx_tree_release(upd);
        lx_tree_release(hp);
        lx_tree_release(hs);
        hp = np;
        hs = ns;
        same &= n && np && ns && lx_tree_equal(n->params, hp) && lx_tree_equal(n->opt_state, hs);
        linen_train_state_free(s);
        s = n;
        lx_release(loss);
        lx_tree_release(grads);
    }
    CHECK(same);
    LX_TEST_REPORT_(falling && last < 0.5f * first, "l2 loss %.6g -> %.6g over 25 adamw steps (falling: %d)", first, last,
                    falling);
    CHECK(s && s->step == 25);
    linen_train_state_free(s);
    lx_tree_release(hp);
    lx_tree_release(hs);
    optax_tx_release(tx);
    lx_tree_release(vars);
    linen_module_release(dense);
    optax_release_buffers();
}

/* The optimizer state through a Flax msgpack checkpoint: train 3 steps, save
 * to_state_dict(TrainState) = {step, params, opt_state}, restore into a fresh state's structure,
 * train 3 more, and get the params of 6 uninterrupted steps bit for bit. Also nnx.Optimizer's
 * nnx.state(optimizer) through msgpack and load_state. */
static void test_checkpoint_round_trip(void) {
    linen_module *dense = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(3));
    CHECK(linen_module_new(&linen_Dense, &c, &dense) == LX_OK);
    lx_array *x = lx_random_normal(lx_key_from_seed(1), 2, (const int64_t[]){8, 5});
    lx_array *y = lx_random_normal(lx_key_from_seed(2), 2, (const int64_t[]){8, 3});
    lx_tree *vars = NULL;
    lx_call cx = LX_CALL_ARGS(lx_array_v(x));
    CHECK(linen_init(dense, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &vars) == LX_OK);
    if (!vars) return;
    lx_tree *params = lx_tree_get(vars, "params")->u.tree;
    lin_batch b = {dense, x, y};
    const char *opt = "chain(clip_by_global_norm(1.0), adamw(0.05, weight_decay=0.01))";
    linen_train_state *a = NULL, *r = NULL;
    CHECK(linen_train_state_create(dense, params, optax_from_string(opt), &a) == LX_OK);
    for (int step = 0; step < 6 && a; step++) {
        if (step == 3) {
            /* save */
            lx_tree *d = NULL;
            unsigned char *bytes = NULL;
            size_t len = 0;
            CHECK(linen_train_state_dict(a, &d) == LX_OK);
            lx_value dv = lx_tree_v(d);
            CHECK(lx_msgpack_to_bytes(&dv, NULL, &bytes, &len) == LX_OK);
            lx_tree_release(d);
            /* restore into the structure of a fresh state */
            linen_train_state *fresh = NULL;
            CHECK(linen_train_state_create(dense, params, optax_from_string(opt), &fresh) == LX_OK);
            lx_tree *target = NULL, *restored = NULL;
            CHECK(linen_train_state_dict(fresh, &target) == LX_OK);
            lx_value loaded = lx_none();
            CHECK(lx_msgpack_from_bytes(bytes, len, &loaded) == LX_OK);
            CHECK(loaded.kind == LX_V_TREE && lx_ckpt_restore(target, loaded.u.tree, NULL, &restored) == LX_OK);
            if (restored && fresh) {
                r = fresh;
                lx_tree_release(r->params);
                lx_tree_release(r->opt_state);
                r->params = lx_tree_retain(lx_tree_get(restored, "params")->u.tree);
                r->opt_state = lx_tree_retain(lx_tree_get(restored, "opt_state")->u.tree);
                r->step = lx_tree_get(restored, "step")->u.i;
                /* EmptyState survives as {} */
                const lx_value *e = lx_tree_find(r->opt_state, "1/1");
                CHECK(e && e->kind == LX_V_TREE && lx_tree_len(e->u.tree) == 0);
            } else {
                linen_train_state_free(fresh);
            }
            lx_value_free(&loaded);
            lx_tree_release(target);
            lx_tree_release(restored);
            free(bytes);
            CHECK_EQ_INT(r ? r->step : -1, 3);
        }
        lx_array *loss = NULL;
        lx_tree *grads = NULL;
        CHECK(linen_value_and_grad(linen_loss, &b, a->params, &loss, &grads, NULL) == LX_OK);
        linen_train_state *n = NULL;
        CHECK(linen_train_state_apply_gradients(a, grads, &n) == LX_OK);
        linen_train_state_free(a);
        a = n;
        if (r) { /* the restored run takes the same gradients (same params, so the same loss) */
            linen_train_state *rn = NULL;
            CHECK(linen_train_state_apply_gradients(r, grads, &rn) == LX_OK);
            linen_train_state_free(r);
            r = rn;
        }
        lx_release(loss);
        lx_tree_release(grads);
    }
    CHECK(a && r && a->step == 6 && r->step == 6);
    CHECK(a && r && lx_tree_equal(a->params, r->params) && lx_tree_equal(a->opt_state, r->opt_state));
    linen_train_state_free(a);
    linen_train_state_free(r);
    lx_tree_release(vars);
    linen_module_release(dense);

    /* nnx.Optimizer: nnx.state(optimizer) -> msgpack -> load_state into a new optimizer */
    nnx_rngs *rngs = NULL;
    nnx_module *m = NULL;
    CHECK(nnx_rngs_from_seed(0, &rngs) == LX_OK);
    CHECK(nnx_module_new(&MODEL2, &(lx_call){0}, rngs, &m) == LX_OK);
    nnx_rngs_release(rngs);
    batch nb = {lx_random_normal(lx_key_from_seed(0), 2, (const int64_t[]){1, 2}),
                lx_autorelease(lx_array_full_f32(2, (const int64_t[]){1, 4}, 1.0f))};
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    nnx_optimizer *o1 = NULL, *o2 = NULL;
    CHECK(nnx_optimizer_new(m, optax_adam(OPTAX_CONST(1e-2), NULL), &param, &o1) == LX_OK);
    for (int i = 0; i < 2 && o1; i++) {
        lx_array *loss = NULL;
        lx_tree *g = NULL;
        CHECK(nnx_value_and_grad(m, &param, nnx_loss, &nb, &loss, &g) == LX_OK);
        CHECK(nnx_optimizer_update(o1, m, g, NULL) == LX_OK);
        lx_release(loss);
        lx_tree_release(g);
    }
    lx_tree *st = NULL, *pure = NULL;
    unsigned char *bytes = NULL;
    size_t len = 0;
    CHECK(nnx_optimizer_state(o1, &st) == LX_OK);
    CHECK(lx_ckpt_pure_dict(st, &pure) == LX_OK);
    lx_value pv = lx_tree_v(pure);
    CHECK(lx_msgpack_to_bytes(&pv, NULL, &bytes, &len) == LX_OK);
    lx_value loaded = lx_none();
    CHECK(lx_msgpack_from_bytes(bytes, len, &loaded) == LX_OK);
    CHECK(nnx_optimizer_new(m, optax_adam(OPTAX_CONST(1e-2), NULL), &param, &o2) == LX_OK);
    CHECK(loaded.kind == LX_V_TREE && nnx_optimizer_load_state(o2, loaded.u.tree) == LX_OK);
    CHECK_EQ_INT(nnx_optimizer_step(o2), 2);
    /* Variables compare by identity: compare their pure dicts (values) */
    lx_tree *s1 = NULL, *s2 = NULL, *p1 = NULL, *p2 = NULL;
    nnx_optimizer_state(o1, &s1);
    nnx_optimizer_state(o2, &s2);
    CHECK(s1 && s2 && lx_ckpt_pure_dict(s1, &p1) == LX_OK && lx_ckpt_pure_dict(s2, &p2) == LX_OK);
    CHECK(p1 && p2 && lx_tree_equal(p1, p2));
    lx_tree_release(p1);
    lx_tree_release(p2);
    lx_tree_release(s1);
    lx_tree_release(s2);
    lx_value_free(&loaded);
    free(bytes);
    lx_tree_release(st);
    lx_tree_release(pure);
    nnx_optimizer_free(o1);
    nnx_optimizer_free(o2);
    nnx_module_release(m);
    optax_release_buffers();
}

int main(void) {
    RUN(test_nnx_docstring_with_tape);
    RUN(test_linen_train_state_with_tape);
    RUN(test_checkpoint_round_trip);
    return lx_test_finish();
}
