/* The bridge's cost: a 2-layer MLP (64 -> 64 -> relu -> 10) applied directly in NNX style
 * (nnx_call on a built module) and through to_linen (linen_apply of the ToLinen over its
 * variables), at batch 1 and 128. Prints `<workload> vs_direct <ratio>` (time through the bridge
 * / time direct; targets 1.05 at batch 128, 1.5 at batch 1) and `<workload> us <microseconds>`.
 *   mlp_bN          a top-level to_linen: its cached abstract module is reused every apply
 *   mlp_bN_compact  to_linen created inside a Linen @compact parent on every apply, as Flax
 *                   code usually writes it (a new ToLinen each time)
 */
#include <stdio.h>

#include "common.h"
#include "linnx/linen.h"
#include "linnx/linnx.h"
#include "linnx/to_linen.h"
#include "linnx/to_nnx.h"

typedef struct {
    nnx_module base;
    nnx_module *l1, *l2;
} mlp;

static lx_status mlp_setup(nnx_module *m, nnx_rngs *rngs) {
    mlp *s = (mlp *)m;
    LX_TRY(nnx_linear_new(64, 64, rngs, (nnx_linear **)&s->l1));
    return nnx_linear_new(64, 10, rngs, (nnx_linear **)&s->l2);
}

static lx_status mlp_call(nnx_module *m, const lx_call *c, lx_value *out) {
    mlp *s = (mlp *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    x = nnx_linear_forward((nnx_linear *)s->l2, lx_relu(nnx_linear_forward((nnx_linear *)s->l1, x)));
    return linen_return_array(out, x);
}

static const nnx_field MLP_FIELDS[] = {NNX_CHILD(mlp, l1), NNX_CHILD(mlp, l2)};
static const nnx_method MLP_METHODS[] = {NNX_METHOD("__call__", mlp_call)};
static const nnx_type MLP = {.name = "MLP", .size = sizeof(mlp), .setup = mlp_setup, .fields = MLP_FIELDS,
                             .nfields = LX_COUNT(MLP_FIELDS), .methods = MLP_METHODS, .nmethods = LX_COUNT(MLP_METHODS)};

/* A Linen parent that makes the ToLinen inside its call, every call. */
static lx_status parent_call(linen_scope *s, const lx_call *c, lx_value *out) {
    linen_module *m = NULL;
    LX_TRY(bridge_to_linen(&MLP, NULL, NULL, &m));
    lx_status st = linen_call_child(s, m, NULL, NULL, c, out);
    linen_module_release(m);
    return st;
}
static const linen_method PARENT_METHODS[] = {LINEN_METHOD("__call__", parent_call)};
static const linen_type PARENT = {.name = "Parent", .methods = PARENT_METHODS, .nmethods = LX_COUNT(PARENT_METHODS)};

/* The same MLP in Linen style (for Linen direct vs through ToNNX). */
static lx_array *linen_mlp_call(linen_scope *s, lx_array *x) {
    return linen_dense(s, NULL, 10, lx_relu(linen_dense(s, NULL, 64, x)));
}
static const linen_method LINEN_MLP_METHODS[] = {LINEN_ARRAY_METHOD("__call__", linen_mlp_call)};
static const linen_type LINEN_MLP = {.name = "MLP", .methods = LINEN_MLP_METHODS, .nmethods = LX_COUNT(LINEN_MLP_METHODS)};

typedef struct {
    nnx_module *direct;
    linen_module *wrapped;
    lx_tree *vars;
    lx_call call;
    int failed;
} ctx;

static void run_direct(void *p) {
    ctx *c = p;
    size_t mark = lx_pool_open();
    lx_value out;
    if (nnx_call(c->direct, NULL, &c->call, &out) != LX_OK) c->failed = 1;
    lx_value_free(&out);
    lx_pool_close(mark);
}

static void run_bridge(void *p) {
    ctx *c = p;
    lx_value out;
    if (linen_apply(c->wrapped, c->vars, LINEN_NO_RNGS, &c->call, NULL, &out, NULL) != LX_OK) c->failed = 1;
    lx_value_free(&out);
}

/* NNX call of a ToNNX-wrapped Linen MLP: the same work as run_direct's NNX call. */
static void run_to_nnx(void *p) { run_direct(p); }

static double timed(void (*fn)(void *), ctx *c) {
    double t0 = bench_now();
    fn(c);
    double per = bench_now() - t0;
    return bench_median(fn, c, 50, 15, bench_inner_for(per > 1e-7 ? per : 1e-7, 0.02));
}

int main(void) {
    nnx_rngs *rngs = NULL;
    nnx_module *direct = NULL;
    linen_module *wrapped = NULL, *parent = NULL;
    if (nnx_rngs_from_seed(0, &rngs) != LX_OK || nnx_module_new(&MLP, NULL, rngs, &direct) != LX_OK ||
        bridge_to_linen(&MLP, NULL, NULL, &wrapped) != LX_OK || linen_module_new(&PARENT, NULL, &parent) != LX_OK) {
        fprintf(stderr, "bench_bridge: %s\n", lx_last_error());
        return 1;
    }
    linen_module *linen_mlp = NULL;
    nnx_module *to_nnx = NULL;
    if (linen_module_new(&LINEN_MLP, NULL, &linen_mlp) != LX_OK ||
        bridge_to_nnx_new(linen_mlp, rngs, NULL, &to_nnx) != LX_OK) {
        fprintf(stderr, "bench_bridge: %s\n", lx_last_error());
        return 1;
    }
    printf("# bridge: 2-layer MLP 64-64-10 (median of 15 runs): NNX direct vs through to_linen\n"
           "# (top-level, and built in a compact parent per call), Linen direct vs through ToNNX\n");
    int batches[] = {1, 128};
    for (int b = 0; b < 2; b++) {
        lx_array *x = lx_array_full_f32(2, (int64_t[]){batches[b], 64}, 0.5f);
        ctx c = {.direct = direct, .wrapped = wrapped};
        c.call = LX_ARGS(x);
        lx_tree *pvars = NULL;
        if (linen_init(wrapped, LINEN_KEY(lx_key_from_seed(0)), &c.call, NULL, &c.vars) != LX_OK ||
            linen_init(parent, LINEN_KEY(lx_key_from_seed(0)), &c.call, NULL, &pvars) != LX_OK) {
            fprintf(stderr, "bench_bridge: %s\n", lx_last_error());
            return 1;
        }
        double td = timed(run_direct, &c);
        double tb = timed(run_bridge, &c);
        ctx cp = c;
        cp.wrapped = parent;
        cp.vars = pvars;
        double tc = timed(run_bridge, &cp);
        if (c.failed || cp.failed) {
            fprintf(stderr, "bench_bridge: %s\n", lx_last_error());
            return 1;
        }
        /* Linen direct vs the same Linen module through ToNNX (lazy_init once, then calls). */
        lx_tree *lvars = NULL;
        ctx cl = c, cn = c;
        cl.wrapped = linen_mlp;
        cn.direct = to_nnx;
        if (linen_init(linen_mlp, LINEN_KEY(lx_key_from_seed(0)), &c.call, NULL, &lvars) != LX_OK ||
            (b == 0 && bridge_lazy_init(to_nnx, NULL, &c.call) != LX_OK)) {
            fprintf(stderr, "bench_bridge: %s\n", lx_last_error());
            return 1;
        }
        cl.vars = lvars;
        double tl = timed(run_bridge, &cl);
        double tn = timed(run_to_nnx, &cn);
        if (cl.failed || cn.failed) {
            fprintf(stderr, "bench_bridge: %s\n", lx_last_error());
            return 1;
        }
        printf("to_linen_mlp_b%d vs_direct %.3f\n", batches[b], tb / td);
        printf("to_linen_mlp_b%d_compact vs_direct %.3f\n", batches[b], tc / td);
        printf("to_nnx_mlp_b%d vs_direct %.3f\n", batches[b], tn / tl);
        printf("nnx_mlp_b%d_direct us %.3f\n", batches[b], td * 1e6);
        printf("to_linen_mlp_b%d us %.3f\n", batches[b], tb * 1e6);
        printf("to_linen_mlp_b%d_compact us %.3f\n", batches[b], tc * 1e6);
        printf("linen_mlp_b%d_direct us %.3f\n", batches[b], tl * 1e6);
        printf("to_nnx_mlp_b%d us %.3f\n", batches[b], tn * 1e6);
        lx_tree_release(lvars);
        lx_tree_release(c.vars);
        lx_tree_release(pvars);
        lx_release(x);
    }
    nnx_module_release(to_nnx);
    linen_module_release(linen_mlp);
    linen_module_release(parent);
    linen_module_release(wrapped);
    nnx_module_release(direct);
    nnx_rngs_release(rngs);
    lx_pool_drain();
    return 0;
}
