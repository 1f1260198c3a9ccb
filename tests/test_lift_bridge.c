/* Stacking through the bridge: Flax's W17 (nn.vmap over ToLinen(nnx.Linear)), nn.scan of a
 * to_linen-wrapped NNX layer whose kernel is partitioned (the stacked axis lands in the NNXMeta's
 * out_sharding and leaves it again for the layer: the Flax #5590 fix), W6 (ToNNX(Dense)
 * lazily initialised under nnx.split_rngs + nnx.vmap) and nnx.scan over such a ToNNX stack. */
#include "lift_util.h"
#include "linnx/llama.h"

static linen_module *g_child;

static lx_status parent_call(linen_scope *s, const lx_call *c, lx_value *out) {
    return linen_call_child(s, g_child, NULL, NULL, c, out); /* auto-named */
}
static const linen_method PARENT_METHODS[] = {LINEN_METHOD("__call__", parent_call)};
static const linen_type PARENT = {.name = "Parent", .methods = PARENT_METHODS, .nmethods = 1};

/* W17: nn.vmap(ToLinen, variable_axes={'params': 0}, split_rngs={'params': True})(nnx.Linear, 4, 3)
 * on x (2, 4): params/VmapToLinen_0/kernel (2, 4, 3) and y = einsum('ab,abc->ac', x, k). */
static void test_w17(void) {
    lx_call ctor = LX_CALL_ARGS(lx_int_v(4), lx_int_v(3));
    linen_module *tl = NULL, *v = NULL, *p = NULL;
    CHECK_EQ_INT(bridge_to_linen(&NNX_LINEAR_TYPE, &ctor, NULL, &tl), LX_OK);
    linen_lift_opts o = {.variable_axes = LINEN_VAR_AXES({"params", 0}), .split_rngs = LINEN_NAMES("params")};
    CHECK_EQ_INT(linen_vmap(tl, &o, &v), LX_OK);
    g_child = v;
    linen_module_new(&PARENT, NULL, &p);
    lx_array *x = lx_array_new(LX_F32, 2, (int64_t[]){2, 4});
    for (int i = 0; i < 8; i++) lx_f32(x)[i] = 0.5f * (float)i - 1.0f;
    lx_value y = lx_none();
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init_with_output(p, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &y, &vars), LX_OK);
    const lx_array *k = vars ? leaf(vars, "params/VmapToLinen_0/kernel") : NULL;
    CHECK(k && k->ndim == 3 && k->shape[0] == 2 && k->shape[1] == 4 && k->shape[2] == 3);
    /* the two copies got different keys */
    CHECK(k && memcmp(lx_f32(k), lx_f32(k) + 12, 12 * sizeof(float)) != 0);
    double maxerr = 0;
    for (int a = 0; k && y.kind == LX_V_ARRAY && a < 2; a++)
        for (int c = 0; c < 3; c++) {
            double acc = 0;
            for (int b = 0; b < 4; b++) acc += (double)lx_f32(x)[a * 4 + b] * lx_f32(k)[(a * 4 + b) * 3 + c];
            maxerr = lx_worse(maxerr, fabs(acc - lx_f32(y.u.array)[a * 3 + c]));
        }
    CHECK(y.kind == LX_V_ARRAY && maxerr < 1e-5);
    lx_value_free(&y);
    /* apply gives the same */
    CHECK_EQ_INT(linen_apply(p, vars, &LX_ARGS(x), LINEN_NO_RNGS, NULL, &y, NULL), LX_OK);
    CHECK(y.kind == LX_V_ARRAY && y.u.array->shape[0] == 2 && y.u.array->shape[1] == 3);
    lx_value_free(&y);
    lx_tree_release(vars);
    lx_release(x);
    linen_module_release(p);
    linen_module_release(v);
    linen_module_release(tl);
}

/* nn.scan over to_linen(nnx.Linear(4, 4, kernel_init=with_partitioning(lecun_normal, ('embed', 'mlp'))))
 * with params on axis 1 and PARTITION_NAME 'layers': the NNXMeta box's out_sharding becomes
 * ('embed', 'layers', 'mlp'); apply slices it back to ('embed', 'mlp') for each layer (the
 * layer's abstract module accepts it), and the unrolled twin gives the same output. */
static void test_scan_to_linen_metadata(void) {
    lx_initializer ln = lx_init_lecun_normal(), kinit;
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 2, (const char *[]){"embed", "mlp"}, NULL, &kinit), LX_OK);
    lx_call ctor = {2, (lx_value[]){lx_int_v(4), lx_int_v(4)}, 1,
                    (lx_kwarg[]){LX_KW("kernel_init", lx_ptr_v("initializer", &kinit))}};
    linen_module *tl = NULL, *sc = NULL, *p = NULL;
    CHECK_EQ_INT(bridge_to_linen(&NNX_LINEAR_TYPE, &ctor, NULL, &tl), LX_OK);
    linen_lift_opts o = {.variable_axes = LINEN_VAR_AXES({"params", 1}), .split_rngs = LINEN_NAMES("params"),
                         .length = 3, .partition_name = "layers"};
    CHECK_EQ_INT(linen_scan(tl, &o, &sc), LX_OK);
    g_child = sc;
    linen_module_new(&PARENT, NULL, &p);
    lx_array *x = lx_array_new(LX_F32, 2, (int64_t[]){2, 4});
    for (int i = 0; i < 8; i++) lx_f32(x)[i] = 0.25f * (float)(i % 3) - 0.2f;
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(p, LINEN_KEY(lx_key_from_seed(2)), &LX_ARGS(x), NULL, &vars), LX_OK);
    const lx_value *kv = vars ? lx_tree_find(vars, "params/ScanToLinen_0/kernel") : NULL;
    CHECK(kv && kv->kind == LX_V_BOX && lx_box_get_kind(kv->u.box) == LX_BOX_NNX_META);
    const char *n3[] = {"embed", "layers", "mlp"};
    CHECK(kv && kv->kind == LX_V_BOX && strs_are(lx_box_names(kv->u.box), 3, n3));
    const lx_array *k = kv && kv->kind == LX_V_BOX ? lx_box_unbox(kv->u.box) : NULL;
    CHECK(k && k->ndim == 3 && k->shape[0] == 4 && k->shape[1] == 3 && k->shape[2] == 4);
    const lx_array *b = leaf(vars, "params/ScanToLinen_0/bias");
    /* params on axis 1 for every param: the bias is (4, 3) */
    CHECK(b && b->ndim == 2 && b->shape[0] == 4 && b->shape[1] == 3);
    lx_value y = lx_none();
    CHECK_EQ_INT(linen_apply(p, vars, &LX_ARGS(x), LINEN_NO_RNGS, NULL, &y, NULL), LX_OK);
    double h[8], t[8];
    for (int i = 0; i < 8; i++) h[i] = lx_f32(x)[i];
    for (int l = 0; k && l < 3; l++) {
        for (int n = 0; n < 2; n++)
            for (int f = 0; f < 4; f++) {
                double acc = lx_f32(b)[f * 3 + l];
                for (int j = 0; j < 4; j++) acc += h[n * 4 + j] * lx_f32(k)[(j * 3 + l) * 4 + f];
                t[n * 4 + f] = acc;
            }
        memcpy(h, t, sizeof h);
    }
    double maxerr = 0;
    for (int i = 0; y.kind == LX_V_ARRAY && i < 8; i++) maxerr = lx_worse(maxerr, fabs(h[i] - lx_f32(y.u.array)[i]));
    CHECK(y.kind == LX_V_ARRAY && maxerr < 1e-5);
    lx_value_free(&y);
    /* unscanned layout: layers_i with ('embed', 'mlp') */
    lx_tree *un = NULL;
    CHECK_EQ_INT(linen_unstack_layers(vars, "ScanToLinen_0", LINEN_VAR_AXES({"params", 1}), "layers", &un), LX_OK);
    const lx_value *k2 = un ? lx_tree_find(un, "params/ScanToLinen_0_2/kernel") : NULL;
    const char *n2[] = {"embed", "mlp"};
    CHECK(k2 && k2->kind == LX_V_BOX && strs_are(lx_box_names(k2->u.box), 2, n2));
    lx_tree_release(un);
    lx_tree_release(vars);
    lx_release(x);
    linen_module_release(p);
    linen_module_release(sc);
    linen_module_release(tl);
}

/* W6: ToNNX(Dense(3)) built and lazily initialised on x (1, 4) under split_rngs(5) + vmap:
 * kernel (5, 4, 3), bias (5, 3), copies different. */
typedef struct w6_ctx {
    linen_module *dense;
    lx_array *x;
} w6_ctx;
static lx_status w6_ctor(nnx_rngs *rngs, void *user, nnx_module **out) {
    w6_ctx *c = user;
    LX_TRY(bridge_to_nnx_new(c->dense, rngs, NULL, out));
    lx_status st = bridge_lazy_init(*out, NULL, &LX_ARGS(c->x));
    if (st != LX_OK) {
        nnx_module_release(*out);
        *out = NULL;
    }
    return st;
}

static void test_w6(void) {
    w6_ctx c = {NULL, lx_array_new(LX_F32, 2, (int64_t[]){1, 4})};
    linen_module_new(&linen_Dense, &LX_CALL_KWARGS(LX_KW_INT("features", 3)), &c.dense);
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *stack = NULL;
    /* stack the parameters; the RNG state stays shared (StateAxes None) */
    nnx_filter f[] = {NNX_OF_TYPE(&lx_Param), NNX_EVERYTHING};
    int axes[] = {0, NNX_AXIS_BROADCAST};
    nnx_state_axes sa = {2, f, axes};
    CHECK_EQ_INT(nnx_vmap_create_fn(w6_ctor, &c, r, 5, &sa, NULL, &stack), LX_OK);
    lx_tree *st = NULL;
    if (stack) nnx_state(stack, 0, NULL, &st);
    const lx_value *kv = st ? lx_tree_find(st, "kernel") : NULL;
    const lx_value *bv = st ? lx_tree_find(st, "bias") : NULL;
    lx_array *k = kv && kv->kind == LX_V_VARIABLE ? lx_variable_get_value(kv->u.var) : NULL;
    lx_array *b = bv && bv->kind == LX_V_VARIABLE ? lx_variable_get_value(bv->u.var) : NULL;
    CHECK(k && k->ndim == 3 && k->shape[0] == 5 && k->shape[1] == 4 && k->shape[2] == 3);
    CHECK(b && b->ndim == 2 && b->shape[0] == 5 && b->shape[1] == 3);
    CHECK(k && memcmp(lx_f32(k), lx_f32(k) + 12, 12 * sizeof(float)) != 0);
    lx_tree_release(st);
    nnx_module_release(stack);
    nnx_rngs_release(r);
    linen_module_release(c.dense);
    lx_release(c.x);
}

/* nnx.scan over W6's stack: ToNNX(Dense(4)) layers built under split_rngs(3) + vmap, scanned with
 * the carry: the result equals running the three slices one after the other. And a stack of
 * ToNNX(BatchNorm(use_running_average=False)) scanned with mutable='batch_stats': each layer's
 * statistics are updated from its own input, 0.01 * batch mean (momentum 0.99 from zeros). */
static void test_scan_over_to_nnx(void) {
    w6_ctx c = {NULL, lx_array_full_f32(2, (int64_t[]){1, 4}, 0.5f)};
    linen_module_new(&linen_Dense, &LX_CALL_KWARGS(LX_KW_INT("features", 4)), &c.dense);
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_filter f[] = {NNX_OF_TYPE(&lx_Param), NNX_EVERYTHING};
    int axes[] = {0, NNX_AXIS_BROADCAST};
    nnx_state_axes sa = {2, f, axes};
    nnx_module *stack = NULL;
    CHECK_EQ_INT(nnx_vmap_create_fn(w6_ctor, &c, r, 3, &sa, NULL, &stack), LX_OK);
    lx_value out = lx_none();
    CHECK_EQ_INT(nnx_scan_call(stack, NULL, &sa, NULL, &LX_ARGS(c.x), &out), LX_OK);
    lx_array *y = c.x;
    for (int i = 0; i < 3 && y; i++) {
        nnx_module *layer = NULL;
        lx_value o = lx_none();
        CHECK_EQ_INT(nnx_stack_slice(stack, i, &sa, NULL, &layer), LX_OK);
        CHECK_EQ_INT(nnx_call(layer, NULL, &LX_ARGS(y), &o), LX_OK);
        y = o.kind == LX_V_ARRAY ? lx_autorelease(lx_retain(o.u.array)) : NULL;
        lx_value_free(&o);
        nnx_module_release(layer);
    }
    CHECK(out.kind == LX_V_ARRAY && y && lx_array_equal(out.u.array, y));
    CHECK(y && !lx_array_equal(y, c.x));
    lx_value_free(&out);
    nnx_module_release(stack);
    linen_module_release(c.dense);
    lx_release(c.x);

    w6_ctx b = {NULL, lx_array_new(LX_F32, 2, (int64_t[]){3, 4})};
    linen_module_new(&linen_BatchNorm, &LX_CALL_KWARGS(LX_KW_BOOL("use_running_average", false)), &b.dense);
    nnx_filter fb[] = {NNX_OF_TYPE(&lx_RngState), NNX_EVERYTHING};
    int axesb[] = {NNX_AXIS_BROADCAST, 0};
    nnx_state_axes sab = {2, fb, axesb};
    CHECK_EQ_INT(nnx_vmap_create_fn(w6_ctor, &b, r, 2, &sab, NULL, &stack), LX_OK);
    float xd[12];
    for (int i = 0; i < 12; i++) xd[i] = (float)i;
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){3, 4}, xd));
    lx_call call = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("mutable", "batch_stats")));
    CHECK_EQ_INT(nnx_scan_call(stack, NULL, &sab, NULL, &call, &out), LX_OK);
    lx_value_free(&out);
    lx_tree *st = NULL;
    if (stack) CHECK_EQ_INT(nnx_state(stack, 0, NULL, &st), LX_OK);
    const lx_value *mv = st ? lx_tree_find(st, "mean") : NULL;
    lx_array *mean = mv && mv->kind == LX_V_VARIABLE ? lx_variable_get_value(mv->u.var) : NULL;
    CHECK(mean && mean->ndim == 2 && mean->shape[0] == 2 && mean->shape[1] == 4);
    /* layer 0 sees x (column means 4..7); layer 1 sees x normalised (column means 0) */
    const float want[8] = {0.04f, 0.05f, 0.06f, 0.07f, 0, 0, 0, 0};
    for (int i = 0; mean && i < 8; i++) CHECK(fabsf(lx_f32(mean)[i] - want[i]) < 1e-6f);
    lx_tree_release(st);
    nnx_module_release(stack);
    linen_module_release(b.dense);
    lx_release(b.x);
    nnx_rngs_release(r);
}

/* MaxText's scanned layout: Decoder -> nn.scan(LlamaDecoderLayerToLinen, variable_axes={'params': 1},
 * split_rngs={'params': True}, length=2, metadata_params={PARTITION_NAME: 'layers'}) named
 * "layers": every param is params/decoder/layers/<...> with the layer axis at 1 and 'layers' at
 * index 1 of its LogicallyPartitioned names; the unscanned twin (layers_0, layers_1) on the
 * unstacked params gives the same output. */
static linen_module *g_layer;
static lx_status dec_call(linen_scope *s, const lx_call *c, lx_value *out) {
    return linen_call_child(s, g_child, "layers", NULL, c, out);
}
static const linen_method DEC_METHODS[] = {LINEN_METHOD("__call__", dec_call)};
static const linen_type DECODER = {.name = "Decoder", .methods = DEC_METHODS, .nmethods = 1};
static lx_status dec_unrolled_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_value cur = lx_none();
    LX_TRY(lx_value_dup(&c->args[0], &cur));
    for (int l = 0; l < 2; l++) {
        lx_value o = lx_none();
        lx_call cl = {1, &cur, c->nkwargs, c->kwargs};
        lx_status st = linen_call_child(s, g_layer, l ? "layers_1" : "layers_0", NULL, &cl, &o);
        lx_value_free(&cur);
        LX_TRY(st);
        cur = o;
    }
    *out = cur;
    return LX_OK;
}
static const linen_method DECU_METHODS[] = {LINEN_METHOD("__call__", dec_unrolled_call)};
static const linen_type DECODER_UNROLLED = {.name = "Decoder", .methods = DECU_METHODS, .nmethods = 1};
static const linen_type *g_dec;
static lx_status top_call(linen_scope *s, const lx_call *c, lx_value *out) {
    linen_module *d = NULL;
    LX_TRY(linen_module_new(g_dec, NULL, &d));
    lx_status st = linen_call_child(s, d, "decoder", NULL, c, out);
    linen_module_release(d);
    return st;
}
static const linen_method TOP_METHODS[] = {LINEN_METHOD("__call__", top_call)};
static const linen_type TOP = {.name = "Transformer", .methods = TOP_METHODS, .nmethods = 1};

static lx_status check_scanned_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    int *bad = user;
    const lx_array *a = leaf->kind == LX_V_BOX ? lx_box_unbox(leaf->u.box) : leaf->kind == LX_V_ARRAY ? leaf->u.array : NULL;
    const lx_value *names = leaf->kind == LX_V_BOX ? lx_box_names(leaf->u.box) : NULL;
    if (!a || a->ndim < 2 || a->shape[1] != 2) (*bad)++;
    if (!names || names->u.strs.n != a->ndim || !names->u.strs.v[1] || strcmp(names->u.strs.v[1], "layers") != 0) {
        (*bad)++;
        fprintf(stderr, "scanned leaf %s lacks 'layers' at 1\n", path);
    }
    return lx_value_dup(leaf, out);
}

static void test_maxtext_scanned_layout(void) {
    llama_config cfg = llama_config_tiny();
    lx_kwarg kw[LLAMA_CONFIG_NKW];
    llama_config_kwargs(&cfg, kw);
    lx_call ctor = {0, NULL, LLAMA_CONFIG_NKW, kw};
    CHECK_EQ_INT(linen_module_new(llama_decoder_layer_to_linen(), &ctor, &g_layer), LX_OK);
    linen_lift_opts o = {.variable_axes = LINEN_VAR_AXES({"params", 1}), .split_rngs = LINEN_NAMES("params"),
                         .length = 2, .partition_name = "layers"};
    linen_module *sc = NULL, *top = NULL;
    CHECK_EQ_INT(linen_scan(g_layer, &o, &sc), LX_OK);
    g_child = sc;
    g_dec = &DECODER;
    linen_module_new(&TOP, NULL, &top);
    int64_t B = 2, S = 8;
    lx_array *x = lx_array_new(LX_F32, 3, (int64_t[]){B, S, cfg.emb_dim});
    for (int64_t i = 0; i < x->size; i++) lx_f32(x)[i] = 0.02f * (float)((i * 13) % 29 - 14);
    lx_array *pos = lx_array_new(LX_I32, 2, (int64_t[]){B, S});
    for (int64_t i = 0; i < pos->size; i++) ((int32_t *)pos->data)[i] = (int32_t)(i % S);
    lx_call call = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW_ARRAY("decoder_positions", pos)}};
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(top, LINEN_KEY(lx_key_from_seed(0)), &call, NULL, &vars), LX_OK);
    const lx_value *layers = vars ? lx_tree_find(vars, "params/decoder/layers") : NULL;
    CHECK(layers && layers->kind == LX_V_TREE && lx_tree_count_leaves(layers->u.tree) >= 9);
    int bad = 0;
    lx_tree *tmp = NULL;
    if (layers && layers->kind == LX_V_TREE) lx_tree_map(layers->u.tree, check_scanned_leaf, &bad, &tmp);
    CHECK_EQ_INT(bad, 0);
    lx_tree_release(tmp);
    lx_value y = lx_none(), y2 = lx_none();
    CHECK_EQ_INT(linen_apply(top, vars, &call, LINEN_NO_RNGS, NULL, &y, NULL), LX_OK);
    /* unscanned: params/decoder/layers_0 ... with 'layers' removed from the names */
    lx_tree *un = NULL;
    CHECK_EQ_INT(linen_unstack_layers(vars, "decoder/layers", LINEN_VAR_AXES({"params", 1}), "layers", &un), LX_OK);
    CHECK(un && lx_tree_find(un, "params/decoder/layers_1") && !lx_tree_find(un, "params/decoder/layers"));
    g_dec = &DECODER_UNROLLED;
    CHECK_EQ_INT(linen_apply(top, un, &call, LINEN_NO_RNGS, NULL, &y2, NULL), LX_OK);
    CHECK(y.kind == LX_V_ARRAY && y2.kind == LX_V_ARRAY && lx_array_equal(y.u.array, y2.u.array));
    lx_value_free(&y);
    lx_value_free(&y2);
    lx_tree_release(un);
    lx_tree_release(vars);
    lx_release(x);
    lx_release(pos);
    linen_module_release(top);
    linen_module_release(sc);
    linen_module_release(g_layer);
}

int main(void) {
    RUN(test_maxtext_scanned_layout);
    RUN(test_w17);
    RUN(test_scan_to_linen_metadata);
    RUN(test_w6);
    RUN(test_scan_over_to_nnx);
    return lx_test_finish();
}
