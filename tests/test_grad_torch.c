/* linnx's gradients against an independent autograd: PyTorch (Debian's python3-torch) computes
 * the same layers in float64 from the same inputs and parameters (scripts/torch_grad_check.py).
 * Skipped, with a message, when no python3 with torch is found. */
#include <unistd.h>

#include "grad_check.h"

static const char *python; /* a python3 that imports torch */

static bool find_python(void) {
    static const char *const candidates[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import torch' >/dev/null 2>&1", candidates[i]);
        if (system(cmd) == 0) {
            python = candidates[i];
            return true;
        }
    }
    return false;
}

#define MAXT 8
typedef struct {
    const char *name;
    int n;
    const char *names[MAXT];
    lx_array *t[MAXT];       /* inputs in order; float ones get gradients */
    lx_array *grads[MAXT];   /* linnx's, filled by the case */
} tcase;

static void write_case(FILE *f, const tcase *c) {
    fprintf(f, "case %s\n", c->name);
    for (int i = 0; i < c->n; i++) {
        const lx_array *a = c->t[i];
        fprintf(f, "t %s %s ", c->names[i], a->dtype == LX_F32 ? "f32" : a->dtype == LX_I32 ? "i32" : "bool");
        if (a->ndim == 0) fputc('-', f);
        for (int d = 0; d < a->ndim; d++) fprintf(f, "%s%lld", d ? "," : "", (long long)a->shape[d]);
        for (int64_t k = 0; k < a->size; k++) {
            if (a->dtype == LX_F32) fprintf(f, " %.9g", (double)lx_f32(a)[k]);
            else fprintf(f, " %lld", (long long)lx_array_get(a, k));
        }
        fputc('\n', f);
    }
    fputs("end\n", f);
}

/* ---- the linnx side: each case's output from its inputs ---- */

static lx_array *case_out(const tcase *c, lx_array *const *t) {
    const char *n = c->name;
    if (!strcmp(n, "dense_tanh"))
        return lx_tanh(lx_add(lx_dot_general(t[0], t[1], 1, (const int64_t[]){1}, (const int64_t[]){0}, 0, NULL, NULL), t[2]));
    if (!strcmp(n, "conv")) {
        lx_conv_params p = {.strides = {2, 1}, .rhs_dilation = {1, 2}, .feature_group_count = 2,
                            .padding = {.mode = LX_PAD_EXPLICIT, .lo = {1, 2}, .hi = {1, 2}}};
        return lx_conv_general(t[0], t[1], &p);
    }
    if (!strcmp(n, "layer_norm")) return lx_layer_norm(t[0], t[1], t[2], 1e-6f, 0, NULL);
    if (!strcmp(n, "attention")) return lx_dot_product_attention(t[0], t[1], t[2], NULL, t[3], false, 0.0f);
    if (!strcmp(n, "pool_xent")) {
        lx_array *p = lx_max_pool(t[0], 2, (const int64_t[]){2, 2}, (const int64_t[]){2, 2}, NULL);
        return lx_softmax_cross_entropy_int(lx_reshape(p, LX_SHAPE(p ? p->shape[0] : 0, -1)), t[1]);
    }
    return NULL;
}

typedef struct {
    const tcase *c;
} ops_ctx;

static lx_status ops_loss(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n, (void)xs;
    const tcase *c = ((ops_ctx *)user)->c;
    *loss = gc_weighted_loss(case_out(c, c->t));
    return *loss ? LX_OK : lx_last_status();
}

static void grads_ops(tcase *c) {
    lx_array *xs[MAXT];
    int idx[MAXT], nf = 0;
    for (int i = 0; i < c->n; i++)
        if (c->t[i]->dtype == LX_F32) xs[nf] = c->t[i], idx[nf++] = i;
    lx_array *g[MAXT] = {0}, *v = NULL;
    ops_ctx ctx = {c};
    CHECK_EQ_INT(lx_value_and_grad(ops_loss, &ctx, nf, xs, &v, g), LX_OK);
    lx_release(v);
    for (int k = 0; k < nf; k++) c->grads[idx[k]] = g[k];
}

/* A Linen MLP (Dense 6, relu, Dense 2), differentiated w.r.t. its params tree. */
static lx_array *mlp(linen_scope *s, lx_array *x) { return linen_dense(s, NULL, 2, lx_relu(linen_dense(s, NULL, 6, x))); }
static const linen_method MLP_M[] = {LINEN_ARRAY_METHOD("__call__", mlp)};
static const linen_type MLP = {.name = "MLP", .methods = MLP_M, .nmethods = 1};
typedef struct {
    linen_module *m;
    lx_array *x;
} mlp_ctx;
static lx_status mlp_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    mlp_ctx *c = user;
    lx_tree *vars = lx_tree_new();
    lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params));
    lx_call call = LX_CALL_ARGS(lx_array_v(c->x));
    lx_value y = lx_none();
    lx_status st = linen_apply(c->m, vars, &call, LINEN_NO_RNGS, NULL, &y, NULL);
    lx_tree_release(vars);
    if (st == LX_OK) *loss = gc_weighted_loss(y.u.array);
    lx_value_free(&y);
    return st == LX_OK && !*loss ? lx_last_status() : st;
}

static uint64_t seed = 99;
static lx_array *R(float lo, float hi, int ndim, const int64_t *shape) { return gc_rand(&seed, lo, hi, ndim, shape); }
#define RS(lo, hi, ...) R(lo, hi, LX_SHAPE(__VA_ARGS__))

int main(void) {
    if (!find_python()) {
        printf("skipped: PyTorch is not installed (python3 -c 'import torch' fails); "
               "scripts/install-deps.sh --bench installs python3-torch\n");
        return 77; /* CTest's SKIP_RETURN_CODE (CMakeLists.txt): shown as skipped, not passed */
    }
    lx_test_current = "torch";
    uint8_t mb[2 * 1 * 4 * 5];
    for (int i = 0; i < 40; i++) mb[i] = (i * 3) % 7 != 1;
    tcase cases[6] = {
        {"dense_tanh", 3, {"x", "kernel", "bias"}, {RS(-1, 1, 4, 5), RS(-1, 1, 5, 3), RS(-1, 1, 3)}, {0}},
        {"conv", 2, {"x", "kernel"}, {RS(-1, 1, 2, 6, 6, 4), RS(-1, 1, 3, 3, 2, 6)}, {0}},
        {"layer_norm", 3, {"x", "scale", "bias"}, {RS(-2, 2, 3, 8), RS(0.5f, 1.5f, 8), RS(-1, 1, 8)}, {0}},
        {"attention", 4, {"q", "k", "v", "mask"},
         {RS(-1, 1, 2, 4, 4, 3), RS(-1, 1, 2, 5, 2, 3), RS(-1, 1, 2, 5, 2, 2),
          lx_array_from_data(LX_BOOL, 4, (int64_t[]){2, 1, 4, 5}, mb)},
         {0}},
        {"pool_xent", 2, {"x", "labels"},
         {RS(-2, 2, 2, 4, 4, 3), lx_array_from_data(LX_I32, 1, (int64_t[]){2}, (const int32_t[]){5, 11})}, {0}},
        {"linen_mlp", 0, {0}, {0}, {0}},
    };
    for (int i = 0; i < 5; i++) grads_ops(&cases[i]);

    /* the Linen MLP: params from init, grads from linen_value_and_grad */
    mlp_ctx mc = {NULL, lx_autorelease(RS(-1, 1, 3, 4))};
    CHECK_EQ_INT(linen_module_new(&MLP, NULL, &mc.m), LX_OK);
    lx_tree *vars = NULL, *grads = NULL;
    lx_call call = LX_CALL_ARGS(lx_array_v(mc.x));
    CHECK_EQ_INT(linen_init(mc.m, LINEN_KEY(lx_key_from_seed(0)), &call, NULL, &vars), LX_OK);
    lx_array *v = NULL;
    const lx_tree *params = vars ? lx_tree_get(vars, "params")->u.tree : NULL;
    CHECK_EQ_INT(linen_value_and_grad(mlp_loss, &mc, params, &v, &grads, NULL), LX_OK);
    lx_release(v);
    tcase *lm = &cases[5];
    lm->names[lm->n] = "x";
    lm->t[lm->n++] = lx_retain(mc.x);
    const char *paths[] = {"params/Dense_0/kernel", "params/Dense_0/bias", "params/Dense_1/kernel", "params/Dense_1/bias"};
    for (int i = 0; i < 4 && grads; i++) {
        lm->names[lm->n] = paths[i];
        lm->t[lm->n] = lx_retain(lx_tree_find(vars, paths[i])->u.array);
        lm->grads[lm->n++] = lx_retain(lx_tree_find(grads, paths[i] + 7)->u.array);
    }

    char in[] = "/tmp/linnx_torch_in_XXXXXX", out[] = "/tmp/linnx_torch_out_XXXXXX";
    int fi = mkstemp(in), fo = mkstemp(out);
    FILE *f = fi >= 0 ? fdopen(fi, "w") : NULL;
    if (fo >= 0) close(fo);
    CHECK(f != NULL);
    for (int i = 0; f && i < 6; i++) write_case(f, &cases[i]);
    if (f) fclose(f);
    /* the script sits in the source tree next to this test */
    char script[1024], cmd[2048];
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    snprintf(slash ? slash + 1 : script, sizeof script - (size_t)(slash ? slash + 1 - script : 0),
             "../scripts/torch_grad_check.py");
    snprintf(cmd, sizeof cmd, "%s %s %s %s", python, script, in, out);
    CHECK(system(cmd) == 0);

    FILE *g = fopen(out, "r");
    CHECK(g != NULL);
    char *line = NULL;
    size_t cap = 0;
    int compared = 0;
    while (g && getline(&line, &cap, g) > 0) {
        char cname[64], tname[128];
        int off = 0;
        if (sscanf(line, "g %63s %127s %n", cname, tname, &off) != 2) continue;
        for (int i = 0; i < 6; i++) {
            if (strcmp(cases[i].name, cname)) continue;
            for (int k = 0; k < cases[i].n; k++) {
                if (strcmp(cases[i].names[k], tname) || !cases[i].grads[k]) continue;
                const lx_array *mine = cases[i].grads[k];
                char *p = line + off;
                double worst = 0;
                int64_t at = -1;
                for (int64_t e = 0; e < mine->size; e++) {
                    double want = strtod(p, &p), d = fabs(lx_f32(mine)[e] - want) - (2e-5 + 2e-4 * fabs(want));
                    if (d != d) d = INFINITY; /* a NaN on either side is the worst error */
                    if (at < 0 || d > worst) worst = d, at = e;
                }
                LX_TEST_REPORT_(worst <= 0, "%s/%s: linnx and PyTorch gradients differ at element %lld", cname, tname,
                                (long long)at);
                compared++;
            }
        }
    }
    free(line);
    if (g) fclose(g);
    /* every differentiated input was compared: 3 + 2 + 3 + 3 + 1, and the MLP's 4 params (its x is
     * an input torch differentiates but linen_value_and_grad does not) */
    CHECK_EQ_INT(compared, 16);
    remove(in);
    remove(out);
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < cases[i].n; k++) {
            lx_release(cases[i].t[k]);
            lx_release(cases[i].grads[k]);
        }
    lx_tree_release(vars);
    lx_tree_release(grads);
    linen_module_release(mc.m);
    lx_pool_drain();
    return lx_test_finish();
}
