/* Checkpoint layer stacks and boxes (checkpoint.h lx_layout_restack, lx_layout_unbox, the layout
 * detection): a MaxText train state's scanned decoder layers unrolled and stacked back with the
 * parameters at axis 1 and their optimizer moments alike, in the Linen (layers_<i>) and NNX
 * (layers/<i>) namings; other state at axis 0; the round trip gives the same bytes; boxes written
 * as {"value": W} become plain arrays; an NNX state of RNG streams is not taken for Linen. */
#include <stdlib.h>
#include <string.h>

#include "linnx/checkpoint.h"
#include "lx_test.h"

static lx_array *seq(int ndim, const int64_t *shape, float base) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc(sizeof *v * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = base + (float)i;
    lx_array *a = lx_array_from_f32(ndim, shape, v);
    free(v);
    return a;
}

static void put(lx_tree *t, const char *path, lx_array *a) {
    CHECK(lx_tree_set_path(t, path, lx_array_v(a)) == LX_OK);
    lx_release(a);
}

/* MaxText Linen TrainState: kernel (2, L=3, 2) at layer axis 1, mu/nu the same shape. */
static lx_tree *maxtext_state(void) {
    lx_tree *t = lx_tree_new();
    int32_t step = 7;
    put(t, "step", lx_array_from_data(LX_I32, 0, NULL, &step));
    put(t, "params/params/decoder/layers/mlp/kernel", seq(3, (int64_t[]){2, 3, 2}, 0));
    put(t, "params/params/decoder/decoder_norm/scale", seq(1, (int64_t[]){2}, 50));
    put(t, "opt_state/0/count", lx_array_from_data(LX_I32, 0, NULL, &step));
    put(t, "opt_state/0/mu/params/decoder/layers/mlp/kernel", seq(3, (int64_t[]){2, 3, 2}, 100));
    put(t, "opt_state/0/mu/params/decoder/decoder_norm/scale", seq(1, (int64_t[]){2}, 150));
    put(t, "opt_state/0/nu/params/decoder/layers/mlp/kernel", seq(3, (int64_t[]){2, 3, 2}, 200));
    put(t, "opt_state/0/nu/params/decoder/decoder_norm/scale", seq(1, (int64_t[]){2}, 250));
    return t;
}

/* layer i of a (2, 3, 2) kernel stacked at axis 1 starting at `base`: [a, i, b] = base + 6a + 2i + b */
static void check_layer(const lx_tree *t, const char *path, int i, float base) {
    const lx_value *v = lx_tree_find(t, path);
    CHECK(v && v->kind == LX_V_ARRAY);
    if (!v || v->kind != LX_V_ARRAY) {
        fprintf(stderr, "  missing %s\n", path);
        return;
    }
    lx_array *a = v->u.array;
    CHECK_EQ_INT(a->ndim, 2);
    CHECK(a->shape[0] == 2 && a->shape[1] == 2);
    for (int x = 0; x < 2; x++)
        for (int y = 0; y < 2; y++) CHECK_EQ_INT(lx_array_get(a, x * 2 + y), base + 6 * x + 2 * i + y);
}

static bool same_bytes(const lx_tree *a, const lx_tree *b) {
    unsigned char *pa = NULL, *pb = NULL;
    size_t na = 0, nb = 0;
    bool ok = lx_msgpack_to_bytes(&(lx_value){LX_V_TREE, {.tree = (lx_tree *)a}}, NULL, &pa, &na) == LX_OK &&
              lx_msgpack_to_bytes(&(lx_value){LX_V_TREE, {.tree = (lx_tree *)b}}, NULL, &pb, &nb) == LX_OK && na == nb &&
              memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return ok;
}

static void test_maxtext_linen_unscan(void) {
    lx_tree *t = maxtext_state(), *un = NULL, *re = NULL;
    CHECK(lx_layout_detect(t) == LX_LAYOUT_MAXTEXT_LINEN);
    CHECK(lx_layout_restack(t, LX_LAYOUT_AUTO, "decoder/layers", true, 1, &un) == LX_OK);
    char p[128];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "params/params/decoder/layers_%d/mlp/kernel", i);
        check_layer(un, p, i, 0);
        snprintf(p, sizeof p, "opt_state/0/mu/params/decoder/layers_%d/mlp/kernel", i);
        check_layer(un, p, i, 100);
        snprintf(p, sizeof p, "opt_state/0/nu/params/decoder/layers_%d/mlp/kernel", i);
        check_layer(un, p, i, 200);
    }
    CHECK(!lx_tree_find(un, "params/params/decoder/layers"));
    CHECK(!lx_tree_find(un, "opt_state/0/mu/params/decoder/layers"));
    CHECK(!lx_tree_find(un, "params/params/decoder/layers_3"));
    /* the layers take the stack's place in its map */
    const lx_value *dec = lx_tree_find(un, "params/params/decoder");
    CHECK(dec && lx_tree_len(dec->u.tree) == 4);
    if (dec && lx_tree_len(dec->u.tree) == 4) {
        CHECK_STR(lx_tree_key(dec->u.tree, 0), "layers_0");
        CHECK_STR(lx_tree_key(dec->u.tree, 2), "layers_2");
        CHECK_STR(lx_tree_key(dec->u.tree, 3), "decoder_norm");
    }
    /* a leading collection name is where, not what: the same result */
    lx_tree *un2 = NULL;
    CHECK(lx_layout_restack(t, LX_LAYOUT_AUTO, "params/decoder/layers", true, 1, &un2) == LX_OK);
    CHECK(same_bytes(un, un2));
    /* and back: the same bytes as the original */
    CHECK(lx_layout_restack(un, LX_LAYOUT_AUTO, "decoder/layers", false, 1, &re) == LX_OK);
    CHECK(same_bytes(t, re));
    lx_tree_release(re);
    lx_tree_release(un2);
    lx_tree_release(un);
    lx_tree_release(t);
}

static void test_maxtext_nnx_unscan(void) {
    lx_tree *t = maxtext_state(), *n = NULL, *un = NULL, *re = NULL, *ln = NULL;
    CHECK(lx_layout_convert(t, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_NNX, NULL, &n) == LX_OK);
    CHECK(lx_layout_restack(n, LX_LAYOUT_AUTO, "decoder/layers", true, 1, &un) == LX_OK);
    char p[128];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "model/decoder/layers/%d/mlp/kernel", i);
        check_layer(un, p, i, 0);
        snprintf(p, sizeof p, "optimizer/opt_state/0/mu/decoder/layers/%d/mlp/kernel", i);
        check_layer(un, p, i, 100);
        snprintf(p, sizeof p, "optimizer/opt_state/0/nu/decoder/layers/%d/mlp/kernel", i);
        check_layer(un, p, i, 200);
    }
    CHECK(!lx_tree_find(un, "model/decoder/layers_0"));
    CHECK(!lx_tree_find(un, "model/decoder/layers/3"));
    CHECK(lx_layout_restack(un, LX_LAYOUT_AUTO, "model/decoder/layers", false, 1, &re) == LX_OK);
    CHECK(same_bytes(n, re));
    /* the NNX unrolled state and the Linen unrolled state are each other's layouts */
    lx_tree *lun = NULL, *back = NULL;
    CHECK(lx_layout_restack(t, LX_LAYOUT_AUTO, "decoder/layers", true, 1, &lun) == LX_OK);
    CHECK(lx_layout_convert(lun, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_NNX, NULL, &ln) == LX_OK);
    CHECK(lx_layout_convert(ln, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_LINEN, NULL, &back) == LX_OK);
    /* a conversion sorts keys as Flax writes them (params, opt_state, step) */
    lx_tree *lsorted = NULL;
    CHECK(lx_layout_convert(lun, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_LINEN, NULL, &lsorted) == LX_OK);
    CHECK(same_bytes(lsorted, back));
    CHECK(lsorted && lx_tree_len(lsorted) == 3 && !strcmp(lx_tree_key(lsorted, 0), "opt_state") &&
          !strcmp(lx_tree_key(lsorted, 2), "step"));
    const lx_value *dec = lsorted ? lx_tree_find(lsorted, "params/params/decoder") : NULL;
    CHECK(dec && lx_tree_len(dec->u.tree) == 4 && !strcmp(lx_tree_key(dec->u.tree, 0), "decoder_norm"));
    lx_tree_release(lsorted);
    const lx_value *a = lx_tree_find(un, "model/decoder/layers/1/mlp/kernel"),
                   *b = lx_tree_find(ln, "model/decoder/layers/1/mlp/kernel");
    CHECK(a && b && a->kind == LX_V_ARRAY && b->kind == LX_V_ARRAY);
    if (a && b) CHECK_EQ_INT(lx_array_get(a->u.array, 3), lx_array_get(b->u.array, 3));
    lx_tree_release(back);
    lx_tree_release(lun);
    lx_tree_release(ln);
    lx_tree_release(re);
    lx_tree_release(un);
    lx_tree_release(n);
    lx_tree_release(t);
}

/* params at the params axis, other state at axis 0; in NNX layouts the leaf's name decides */
static void test_other_state_axis0(void) {
    lx_tree *lin = lx_tree_new(), *un = NULL;
    put(lin, "params/layers/k", seq(2, (int64_t[]){2, 3}, 0));
    put(lin, "batch_stats/layers/mean", seq(1, (int64_t[]){3}, 10));
    CHECK(lx_layout_restack(lin, LX_LAYOUT_AUTO, "layers", true, 1, &un) == LX_OK);
    for (int i = 0; i < 3; i++) {
        char p[64];
        snprintf(p, sizeof p, "params/layers_%d/k", i);
        const lx_value *k = lx_tree_find(un, p);
        CHECK(k && k->kind == LX_V_ARRAY && k->u.array->ndim == 1 && k->u.array->shape[0] == 2);
        if (k) CHECK_EQ_INT(lx_array_get(k->u.array, 1), 3 + i);
        snprintf(p, sizeof p, "batch_stats/layers_%d/mean", i);
        const lx_value *m = lx_tree_find(un, p);
        CHECK(m && m->kind == LX_V_ARRAY && m->u.array->ndim == 0);
        if (m) CHECK_EQ_INT(lx_array_get(m->u.array, 0), 10 + i);
    }
    lx_tree *nnx = NULL, *nun = NULL;
    CHECK(lx_layout_convert(lin, LX_LAYOUT_LINEN, LX_LAYOUT_NNX, NULL, &nnx) == LX_OK);
    CHECK(lx_layout_restack(nnx, LX_LAYOUT_NNX, "layers", true, 1, &nun) == LX_OK);
    const lx_value *k2 = lx_tree_find(nun, "layers/2/k"), *m2 = lx_tree_find(nun, "layers/2/mean");
    CHECK(k2 && m2 && k2->kind == LX_V_ARRAY && m2->kind == LX_V_ARRAY);
    if (k2 && m2) {
        CHECK_EQ_INT(lx_array_get(k2->u.array, 1), 5);
        CHECK_EQ_INT(lx_array_get(m2->u.array, 0), 12);
    }
    lx_tree_release(nun);
    lx_tree_release(nnx);
    lx_tree_release(un);
    lx_tree_release(lin);
}

static void test_restack_errors(void) {
    lx_tree *t = maxtext_state(), *o = NULL;
    CHECK_FAILS(lx_layout_restack(t, LX_LAYOUT_AUTO, "nothing/here", true, 1, &o), LX_ERR_NOT_FOUND,
                "no layer stack 'nothing/here'");
    CHECK_FAILS(lx_layout_restack(t, LX_LAYOUT_AUTO, "decoder/layers", false, 1, &o), LX_ERR_NOT_FOUND,
                "nothing to stack");
    /* a moment whose layer count differs from its parameter's */
    put(t, "opt_state/0/nu/params/decoder/layers/mlp/kernel", seq(3, (int64_t[]){2, 4, 2}, 0));
    CHECK_FAILS(lx_layout_restack(t, LX_LAYOUT_AUTO, "decoder/layers", true, 1, &o), LX_ERR_SHAPE,
                "4 layers on axis 1, but params/params/decoder/layers/mlp/kernel has 3");
    CHECK_FAILS(lx_layout_restack(t, LX_LAYOUT_AUTO, "decoder/decoder_norm", true, 1, &o), LX_ERR_SHAPE,
                "has shape (2,), which has no layer axis 1");
    lx_tree_release(t);
}

/* Flax writes a box (with_partitioning's NNXMeta, LogicallyPartitioned) or an older NNX Variable
 * as {"value": W}; a converted layout holds W at the box's path. */
static void test_boxes_become_arrays(void) {
    lx_tree *lin = lx_tree_new(), *nnx = NULL, *back = NULL;
    put(lin, "params/ToLinen_0/kernel/value", seq(2, (int64_t[]){4, 3}, 0));
    put(lin, "params/ToLinen_0/bias", seq(1, (int64_t[]){3}, 0));
    CHECK(lx_layout_convert(lin, LX_LAYOUT_AUTO, LX_LAYOUT_NNX, NULL, &nnx) == LX_OK);
    const lx_value *k = nnx ? lx_tree_get(nnx, "kernel") : NULL;
    CHECK(k && k->kind == LX_V_ARRAY && k->u.array->shape[0] == 4);
    CHECK(nnx && lx_tree_len(nnx) == 2);
    CHECK(lx_layout_convert(nnx, LX_LAYOUT_NNX, LX_LAYOUT_LINEN, "ToLinen_0", &back) == LX_OK);
    const lx_value *bk = back ? lx_tree_find(back, "params/ToLinen_0/kernel") : NULL;
    CHECK(bk && bk->kind == LX_V_ARRAY);
    lx_tree *old = lx_tree_new(), *on = NULL;
    put(old, "model/decoder/w/value", seq(1, (int64_t[]){1}, 0));
    uint32_t st = 3;
    put(old, "optimizer/step", lx_array_from_data(LX_U32, 0, NULL, &st));
    CHECK(lx_layout_convert(old, LX_LAYOUT_AUTO, LX_LAYOUT_NNX, NULL, &on) == LX_OK);
    const lx_value *w = on ? lx_tree_find(on, "decoder/w") : NULL;
    CHECK(w && w->kind == LX_V_ARRAY);
    lx_tree_release(on);
    lx_tree_release(old);
    lx_tree_release(back);
    lx_tree_release(nnx);
    lx_tree_release(lin);
}

/* nnx.Dropout(0.5, rngs=...)'s state is {rngs: {key, count}}: NNX, not a Linen collection */
static void test_rng_state_is_nnx(void) {
    lx_tree *t = lx_tree_new(), *lin = NULL;
    uint32_t c = 0;
    put(t, "rngs/key", lx_array_from_data(LX_U32, 0, NULL, &c));
    put(t, "rngs/count", lx_array_from_data(LX_U32, 0, NULL, &c));
    CHECK(lx_layout_detect(t) == LX_LAYOUT_NNX);
    CHECK(lx_layout_convert(t, LX_LAYOUT_AUTO, LX_LAYOUT_LINEN, NULL, &lin) == LX_OK);
    CHECK(lin && lx_tree_len(lin) == 0);
    lx_tree_release(lin);
    lx_tree_release(t);
}

/* Flax's TrainState of a Linen model with BatchNorm (linnx train --save): linen-train, which
 * converts to the NNX twin's {model, optimizer} (batch_stats merged into the model, the moments by
 * NNX names, the step uint32) and back to the same tree (moments without the params level, the
 * step an int, EmptyState {}); a layers_<i> list becomes layers/<i> and back. */
static void test_linen_train_state(void) {
    lx_tree *t = lx_tree_new(), *n = NULL, *back = NULL, *sorted = NULL;
    int32_t c = 3;
    CHECK(lx_tree_set(t, "step", lx_int_v(3)) == LX_OK);
    put(t, "params/layers_0/kernel", seq(2, (int64_t[]){2, 2}, 0));
    put(t, "batch_stats/bn/mean", seq(1, (int64_t[]){2}, 10));
    put(t, "opt_state/0/count", lx_array_from_data(LX_I32, 0, NULL, &c));
    put(t, "opt_state/0/mu/layers_0/kernel", seq(2, (int64_t[]){2, 2}, 20));
    put(t, "opt_state/0/nu/layers_0/kernel", seq(2, (int64_t[]){2, 2}, 30));
    lx_tree *empty = lx_tree_new();
    CHECK(lx_tree_set_path(t, "opt_state/1", lx_tree_v(empty)) == LX_OK);
    lx_tree_release(empty);
    CHECK(lx_layout_detect(t) == LX_LAYOUT_LINEN_TRAIN);
    lx_layout l = LX_LAYOUT_AUTO;
    CHECK(lx_layout_from_name("linen-train", &l) == LX_OK && l == LX_LAYOUT_LINEN_TRAIN);
    CHECK(!strcmp(lx_layout_name(LX_LAYOUT_LINEN_TRAIN), "linen-train"));
    CHECK(lx_layout_convert(t, LX_LAYOUT_AUTO, LX_LAYOUT_MAXTEXT_NNX, NULL, &n) == LX_OK);
    const lx_value *k = n ? lx_tree_find(n, "model/layers/0/kernel") : NULL;
    CHECK(k && k->kind == LX_V_ARRAY && lx_array_get(k->u.array, 3) == 3);
    CHECK(n && lx_tree_find(n, "model/bn/mean"));
    const lx_value *mu = n ? lx_tree_find(n, "optimizer/opt_state/0/mu/layers/0/kernel") : NULL;
    CHECK(mu && mu->kind == LX_V_ARRAY && lx_array_get(mu->u.array, 0) == 20);
    const lx_value *st = n ? lx_tree_find(n, "optimizer/step") : NULL;
    CHECK(st && st->kind == LX_V_ARRAY && st->u.array->dtype == LX_U32 && lx_array_get(st->u.array, 0) == 3);
    CHECK(n && lx_layout_detect(n) == LX_LAYOUT_MAXTEXT_NNX);
    CHECK(n && lx_layout_convert(n, LX_LAYOUT_AUTO, LX_LAYOUT_LINEN_TRAIN, NULL, &back) == LX_OK);
    /* the same tree, keys sorted as every converted layout's */
    CHECK(lx_layout_convert(t, LX_LAYOUT_LINEN_TRAIN, LX_LAYOUT_LINEN_TRAIN, NULL, &sorted) == LX_OK);
    CHECK(back && sorted && same_bytes(back, sorted));
    const lx_value *bs = back ? lx_tree_get(back, "step") : NULL;
    CHECK(bs && bs->kind == LX_V_INT && bs->u.i == 3);
    const lx_value *e1 = back ? lx_tree_find(back, "opt_state/1") : NULL;
    CHECK(e1 && e1->kind == LX_V_TREE && lx_tree_len(e1->u.tree) == 0);
    /* no optimizer state: nothing to make a TrainState of */
    lx_tree *vars = lx_tree_new(), *x = NULL;
    put(vars, "params/kernel", seq(2, (int64_t[]){2, 2}, 0));
    CHECK(lx_layout_detect(vars) == LX_LAYOUT_LINEN);
    CHECK_FAILS(lx_layout_convert(vars, LX_LAYOUT_AUTO, LX_LAYOUT_LINEN_TRAIN, NULL, &x), LX_ERR_NOT_FOUND,
                "linen-train needs a train state");
    lx_tree_release(vars);
    lx_tree_release(sorted);
    lx_tree_release(back);
    lx_tree_release(n);
    lx_tree_release(t);
}

/* an nnx.List's int keys sort as numbers (Flax sorts the int keys), names as strings */
static void test_sorted_keys(void) {
    lx_tree *lin = lx_tree_new(), *nnx = NULL;
    char p[64];
    for (int i = 11; i >= 0; i--) {
        snprintf(p, sizeof p, "params/layers_%d/w", i);
        put(lin, p, seq(1, (int64_t[]){1}, (float)i));
    }
    put(lin, "params/b", seq(1, (int64_t[]){1}, 0));
    put(lin, "params/a", seq(1, (int64_t[]){1}, 0));
    CHECK(lx_layout_convert(lin, LX_LAYOUT_LINEN, LX_LAYOUT_NNX, NULL, &nnx) == LX_OK);
    CHECK(nnx && lx_tree_len(nnx) == 3);
    if (nnx && lx_tree_len(nnx) == 3) {
        CHECK_STR(lx_tree_key(nnx, 0), "a");
        CHECK_STR(lx_tree_key(nnx, 1), "b");
        const lx_tree *l = lx_tree_at(nnx, 2)->u.tree;
        for (size_t i = 0; i < lx_tree_len(l); i++) {
            snprintf(p, sizeof p, "%zu", i);
            CHECK_STR(lx_tree_key(l, i), p);
        }
    }
    lx_tree_release(nnx);
    lx_tree_release(lin);
}

/* foreign dtypes (a float64 leaf loads as lx_raw) split and stack by bytes */
static void test_raw_leaves(void) {
    double v[6] = {0, 1, 2, 3, 4, 5}; /* (2, 3), layer axis 1 */
    lx_raw *r = NULL;
    CHECK(lx_raw_new(LX_RAW_NDARRAY, "float64", 2, (int64_t[]){2, 3}, v, sizeof v, &r) == LX_OK);
    lx_tree *t = lx_tree_new(), *un = NULL, *re = NULL;
    CHECK(lx_tree_set_path(t, "params/layers/w", lx_raw_v(r)) == LX_OK);
    lx_raw_release(r);
    CHECK(lx_layout_restack(t, LX_LAYOUT_LINEN, "layers", true, 1, &un) == LX_OK);
    const lx_value *l2 = un ? lx_tree_find(un, "params/layers_2/w") : NULL;
    lx_raw *r2 = l2 ? lx_value_raw(l2) : NULL;
    CHECK(r2 && r2->ndim == 1 && r2->shape[0] == 2 && r2->nbytes == 16);
    if (r2 && r2->nbytes == 16) {
        double got[2];
        memcpy(got, r2->data, sizeof got);
        CHECK(got[0] == 2 && got[1] == 5);
    }
    CHECK(lx_layout_restack(un, LX_LAYOUT_LINEN, "layers", false, 1, &re) == LX_OK);
    CHECK(same_bytes(t, re));
    lx_tree_release(re);
    lx_tree_release(un);
    lx_tree_release(t);
}

int main(void) {
    RUN(test_maxtext_linen_unscan);
    RUN(test_maxtext_nnx_unscan);
    RUN(test_other_state_axis0);
    RUN(test_restack_errors);
    RUN(test_boxes_become_arrays);
    RUN(test_rng_state_is_nnx);
    RUN(test_linen_train_state);
    RUN(test_sorted_keys);
    RUN(test_raw_leaves);
    lx_pool_drain();
    CHECK_EQ_INT(lx_array_live_count(), 0);
    return lx_test_finish();
}
