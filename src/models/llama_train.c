/* Training the showcase decoder: gradients in both compositions, MaxText's optimizer, a trainer
 * and its checkpoint tree (include/linnx/llama_train.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/box.h"
#include "linnx/checkpoint.h"
#include "linnx/distributed.h"
#include "linnx/llama_train.h"
#include "llama_internal.h"
#include "linnx/variable.h"
#include "../core/status_internal.h"

/* ------------------------------------------------------------------ schedule and optimizer */

static lx_status check_opts(const llama_train_opts *o) {
    if (!o) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_train: NULL options");
    if (o->steps < 2) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_train: steps must be at least 2, got %lld", (long long)o->steps);
    if (!(o->learning_rate > 0) || !isfinite(o->learning_rate))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_train: learning_rate must be positive, got %g", o->learning_rate);
    if (!(o->warmup_fraction >= 0 && o->warmup_fraction < 1))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_train: warmup_fraction must be in [0, 1), got %g", o->warmup_fraction);
    return LX_OK;
}

optax_schedule *llama_lr_schedule(const llama_train_opts *o) {
    if (check_opts(o) != LX_OK) return NULL;
    int64_t warmup = (int64_t)((double)o->steps * o->warmup_fraction);
    int64_t len = o->steps - warmup;
    /* MaxText's cosine piece over `len` steps divides by len - 1: optax's cosine_decay_schedule
     * with decay_steps = len - 1 and alpha = the final fraction is the same function. */
    optax_schedule *cos = optax_cosine_decay_schedule(o->learning_rate, len > 1 ? len - 1 : 1, o->final_fraction, 1.0);
    if (warmup == 0) return cos;
    optax_schedule *lin = optax_linear_schedule(0.0, o->learning_rate, warmup, 0);
    return optax_join_schedules(2, (optax_schedule *[]){lin, cos}, &warmup);
}

optax_tx *llama_optimizer(const llama_train_opts *o) {
    optax_schedule *s = llama_lr_schedule(o);
    if (!s) return NULL;
    optax_adam_opts a = OPTAX_ADAMW_DEFAULTS;
    a.b1 = o->b1;
    a.b2 = o->b2;
    a.eps = o->eps;
    a.eps_root = 0.0;
    a.weight_decay = o->weight_decay;
    optax_tx *adamw = optax_adamw(OPTAX_SCHED(s), &a);
    if (!adamw || o->clip <= 0) return adamw;
    return optax_chain(2, (optax_tx *[]){optax_clip_by_global_norm(o->clip), adamw});
}

/* ------------------------------------------------------------------ gradients */

typedef struct loss_ctx {
    llama_model *m;
    lx_array *tokens;
} loss_ctx;

/* Linen: the params being differentiated go into the model (the same arrays, watched), then the
 * model's loss: linen_apply over {'params': params}. */
static lx_status linen_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    loss_ctx *c = user;
    LX_TRY(llama_model_load_params(c->m, params));
    *loss = llama_model_loss(c->m, c->tokens);
    return *loss ? LX_OK : lx_last_status();
}

static lx_status nnx_loss(nnx_module *model, void *user, lx_array **loss) {
    (void)model;
    loss_ctx *c = user;
    *loss = llama_model_loss(c->m, c->tokens);
    return *loss ? LX_OK : lx_last_status();
}

lx_status llama_value_and_grad(llama_model *m, lx_array *tokens, lx_array **loss, lx_tree **grads) {
    if (!m || !loss || !grads) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_value_and_grad: NULL argument");
    if (!tokens) return lx_null_input("llama_value_and_grad: tokens is NULL");
    *loss = NULL;
    *grads = NULL;
    if (llama_model_config(m)->cache_batch > 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_value_and_grad: a decode model (cache_batch > 0) cannot be trained");
    loss_ctx c = {m, tokens};
    if (llama_model_style(m) == LLAMA_NNX_TOP)
        return nnx_value_and_grad(llama_model_nnx_module(m), NULL, nnx_loss, &c, loss, grads);
    lx_tree *params = NULL;
    LX_TRY(llama_model_params(m, &params));
    lx_status st = linen_value_and_grad(linen_loss, &c, params, loss, grads, NULL);
    /* the loss function put `params` (the same arrays) back into the model; restore the original
     * tree on failure too */
    lx_status st2 = llama_model_load_params(m, params);
    lx_tree_release(params);
    if (st == LX_OK && st2 != LX_OK) {
        lx_release(*loss);
        lx_tree_release(*grads);
        *loss = NULL;
        *grads = NULL;
        st = st2;
    }
    return st;
}

/* ------------------------------------------------------------------ the trainer */

struct llama_trainer {
    llama_model *m;
    optax_tx *tx;
    lx_tree *params; /* the model's parameters (boxes / Variables) */
    lx_tree *state;  /* optax state */
    int64_t step;
    llama_step_fault fault; /* the last step's (llama_trainer_step_fault) */
};

lx_status llama_trainer_new(llama_model *m, const llama_train_opts *o, llama_trainer **out) {
    if (!m || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_trainer_new: NULL argument");
    *out = NULL;
    llama_trainer *t = calloc(1, sizeof *t);
    if (!t) return lx_fail(LX_ERR_NO_MEMORY, "llama_trainer_new: out of memory");
    t->m = m;
    t->tx = llama_optimizer(o);
    lx_status st = t->tx ? llama_model_params(m, &t->params) : lx_last_status();
    if (st == LX_OK) st = optax_init(t->tx, t->params, &t->state);
    if (st != LX_OK) {
        llama_trainer_free(t);
        return st;
    }
    *out = t;
    return LX_OK;
}

void llama_trainer_free(llama_trainer *t) {
    if (!t) return;
    optax_tx_release(t->tx);
    lx_tree_release(t->params);
    lx_tree_release(t->state);
    free(t);
}

int64_t llama_trainer_step_count(const llama_trainer *t) { return t ? t->step : -1; }

llama_step_fault llama_trainer_step_fault(const llama_trainer *t) { return t ? t->fault : LLAMA_STEP_LOCAL; }

lx_status llama_trainer_step(llama_trainer *t, lx_array *tokens, float *loss) {
    if (!t) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_trainer_step: NULL argument");
    t->fault = LLAMA_STEP_LOCAL;
    if (!tokens) return lx_null_input("llama_trainer_step: tokens is NULL");
    lx_array *l = NULL;
    lx_tree *g = NULL;
    /* under MPI (distributed.h): tokens are this rank's shard; the gradients are averaged over the
     * ranks by buckets started during the backward pass, and the loss too */
    bool dp = lx_dist_active();
    lx_status st = dp ? lx_dist_overlap_begin() : LX_OK;
    if (st == LX_OK) st = llama_value_and_grad(t->m, tokens, &l, &g);
    if (dp) {
        lx_tree *avg = NULL;
        st = lx_dist_check(st);
        /* every rank learnt of a failure there (a timed-out check: a peer may be stuck) */
        if (st != LX_OK) t->fault = st == LX_ERR_IO ? LLAMA_STEP_MIDWAY : LLAMA_STEP_AGREED;
        if (st == LX_OK) st = lx_dist_overlap_end(g, &avg);
        else lx_dist_overlap_end(NULL, NULL);
        lx_tree_release(g);
        g = avg;
        if (st == LX_OK) st = lx_dist_allreduce_f32(lx_f32(l), 1, true);
        /* failed while averaging: the others may wait for this rank's buckets or loss */
        if (st != LX_OK && t->fault == LLAMA_STEP_LOCAL) t->fault = LLAMA_STEP_MIDWAY;
    }
    if (st != LX_OK) {
        lx_release(l);
        lx_tree_release(g);
        return st;
    }
    lx_tree *params = lx_tree_retain(t->params), *state = lx_tree_retain(t->state);
    st = optax_step(t->tx, g, &params, &state);
    if (st == LX_OK) st = llama_model_load_params(t->m, params);
    if (dp) {
        /* the update's status through a second check, so that a rank failing there stops every
         * rank at this step ("distributed: rank R failed at step S") instead of ending alone */
        bool mine = st != LX_OK;
        st = lx_dist_check(st);
        if (st != LX_OK) t->fault = st == LX_ERR_IO ? LLAMA_STEP_MIDWAY : LLAMA_STEP_AGREED;
        /* another rank failed: this rank's model goes back to the step's parameters (its own
         * update had succeeded); should that fail, its error replaces the check's */
        if (st != LX_OK && !mine) {
            lx_status back = llama_model_load_params(t->m, t->params);
            if (back != LX_OK) st = back;
        }
    }
    if (st == LX_OK) {
        lx_tree_release(t->params);
        lx_tree_release(t->state);
        t->params = params;
        t->state = state;
        t->step++;
        if (loss) *loss = lx_f32(l)[0];
    } else {
        lx_tree_release(params);
        lx_tree_release(state);
    }
    lx_release(l);
    lx_tree_release(g);
    return st;
}

/* ------------------------------------------------------------------ checkpoint trees */

static lx_status unbox_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    (void)user;
    lx_array *a = lx_value_leaf_array(leaf);
    (void)path;
    if (!a) return lx_value_dup(leaf, out);
    *out = lx_array_v(lx_retain(a));
    return LX_OK;
}

/* The config fields stored in a checkpoint: integers, then the floats. */
#define NI 9
#define NF 3
static const char *const INT_NAMES[NI] = {"vocab_size",   "emb_dim",           "num_query_heads",
                                           "num_kv_heads", "head_dim",          "mlp_dim",
                                           "num_decoder_layers", "max_target_length", "cache_batch"};
static const char *const FLOAT_NAMES[NF] = {"normalization_layer_epsilon", "rope_min_timescale", "rope_max_timescale"};

static void config_fields(llama_config *c, int64_t *ints[NI], double *floats[NF]) {
    int64_t *i[NI] = {&c->vocab_size, &c->emb_dim, &c->num_query_heads, &c->num_kv_heads, &c->head_dim,
                      &c->mlp_dim, &c->num_decoder_layers, &c->max_target_length, &c->cache_batch};
    double *f[NF] = {&c->normalization_layer_epsilon, &c->rope_min_timescale, &c->rope_max_timescale};
    memcpy(ints, i, sizeof i);
    memcpy(floats, f, sizeof f);
}

static lx_tree *config_tree(const llama_config *cfg) {
    llama_config c = *cfg;
    c.cache_batch = 0;
    int64_t *ints[NI];
    double *floats[NF];
    config_fields(&c, ints, floats);
    lx_tree *t = lx_tree_new();
    for (int i = 0; t && i < NI - 1; i++)
        if (lx_tree_set(t, INT_NAMES[i], lx_int_v(*ints[i])) != LX_OK) goto fail;
    for (int i = 0; t && i < NF; i++)
        if (lx_tree_set(t, FLOAT_NAMES[i], lx_float_v(*floats[i])) != LX_OK) goto fail;
    return t;
fail:
    lx_tree_release(t);
    return NULL;
}

/* A checkpoint in MaxText's NNX layout (`linnx convert --layout maxtext-nnx` of a train-lm
 * checkpoint: model/..., optimizer/{step, opt_state}, config kept) is read through its Linen form:
 * *conv gets that tree, or NULL when ckpt is read as it is. */
static lx_status linen_form(const lx_tree *ckpt, lx_tree **conv) {
    *conv = NULL;
    if (lx_layout_detect(ckpt) != LX_LAYOUT_MAXTEXT_NNX) return LX_OK;
    return lx_layout_convert(ckpt, LX_LAYOUT_MAXTEXT_NNX, LX_LAYOUT_MAXTEXT_LINEN, NULL, conv);
}

static lx_status checkpoint_config(const lx_tree *ckpt, llama_config *out);

lx_status llama_checkpoint_config(const lx_tree *ckpt, llama_config *out) {
    if (!ckpt || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_checkpoint_config: NULL argument");
    lx_tree *conv = NULL;
    LX_TRY(linen_form(ckpt, &conv));
    lx_status st = checkpoint_config(conv ? conv : ckpt, out);
    lx_tree_release(conv);
    return st;
}

static lx_status checkpoint_config(const lx_tree *ckpt, llama_config *out) {
    const lx_value *cv = lx_tree_get(ckpt, "config");
    if (!cv || cv->kind != LX_V_TREE)
        return lx_fail(LX_ERR_NOT_FOUND, "llama checkpoint: no 'config' map (not a linnx train-lm checkpoint?)");
    llama_config c = llama_config_tiny();
    c.cache_batch = 0;
    int64_t *ints[NI];
    double *floats[NF];
    config_fields(&c, ints, floats);
    for (int i = 0; i < NI - 1; i++) {
        const lx_value *v = lx_tree_get(cv->u.tree, INT_NAMES[i]);
        if (!v || v->kind != LX_V_INT)
            return lx_fail(LX_ERR_FORMAT, "llama checkpoint: config/%s: expected an integer", INT_NAMES[i]);
        *ints[i] = v->u.i;
    }
    for (int i = 0; i < NF; i++) {
        const lx_value *v = lx_tree_get(cv->u.tree, FLOAT_NAMES[i]);
        if (!v || (v->kind != LX_V_FLOAT && v->kind != LX_V_INT))
            return lx_fail(LX_ERR_FORMAT, "llama checkpoint: config/%s: expected a number", FLOAT_NAMES[i]);
        *floats[i] = v->kind == LX_V_FLOAT ? v->u.f : (double)v->u.i;
    }
    LX_TRY(llama_config_check(&c));
    *out = c;
    return LX_OK;
}

/* The stored config must equal the model's (cache_batch aside; max_target_length too unless
 * `same_len`: it sizes no parameter, so a model may sample longer than it was trained). */
static lx_status check_config(const llama_config *model, const lx_tree *ckpt, bool same_len) {
    llama_config c;
    LX_TRY(checkpoint_config(ckpt, &c));
    llama_config a = *model, b = c;
    int64_t *ia[NI], *ib[NI];
    double *fa[NF], *fb[NF];
    config_fields(&a, ia, fa);
    config_fields(&b, ib, fb);
    for (int i = 0; i < NI - 1; i++)
        if (*ia[i] != *ib[i] && (same_len || ia[i] != &a.max_target_length))
            return lx_fail(LX_ERR_SHAPE, "llama checkpoint: a model of another size: %s is %lld in the checkpoint, %lld in this model",
                           INT_NAMES[i], (long long)*ib[i], (long long)*ia[i]);
    for (int i = 0; i < NF; i++)
        if (*fa[i] != *fb[i])
            return lx_fail(LX_ERR_SHAPE, "llama checkpoint: %s is %g in the checkpoint, %g in this model", FLOAT_NAMES[i],
                           *fb[i], *fa[i]);
    return LX_OK;
}

/* ---- the optimizer state in MaxText's Linen train-state layout (spec/checkpoints.md C.1) ----
 * MaxText's Linen TrainState holds params = {params: <model>}, so optax's params-shaped state
 * (adam's mu and nu) mirrors that tree: opt_state/.../mu/params/decoder/...; a chain serializes as
 * a list with None for each EmptyState. The trainer's own optax state mirrors the model's tree
 * (mu/decoder/...) with EmptyState as {}: these two functions convert between them. */

static const lx_tree *sub_tree(const lx_tree *t, const char *k) {
    const lx_value *v = t ? lx_tree_get(t, k) : NULL;
    return v && v->kind == LX_V_TREE ? v->u.tree : NULL;
}

/* Same keys (in any order): a subtree shaped like the parameters. */
static bool same_keys(const lx_tree *a, const lx_tree *b) {
    if (lx_tree_len(a) != lx_tree_len(b) || lx_tree_len(a) == 0) return false;
    for (size_t i = 0; i < lx_tree_len(a); i++)
        if (!lx_tree_get(b, lx_tree_key(a, i))) return false;
    return true;
}

static lx_status opt_to_file(const lx_tree *state, const lx_tree *params, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status st = LX_OK;
    for (size_t i = 0; i < lx_tree_len(state) && st == LX_OK; i++) {
        const char *k = lx_tree_key(state, i);
        const lx_value *v = lx_tree_at(state, i);
        if (v->kind != LX_V_TREE) {
            st = lx_tree_set(o, k, *v);
        } else if (lx_tree_len(v->u.tree) == 0) {
            st = lx_tree_set(o, k, lx_none()); /* EmptyState */
        } else {
            lx_tree *c = NULL;
            if (same_keys(v->u.tree, params)) {
                c = lx_tree_new();
                st = c ? lx_tree_set(c, "params", *v) : lx_last_status();
            } else {
                st = opt_to_file(v->u.tree, params, &c);
            }
            if (st == LX_OK) st = lx_tree_set(o, k, lx_tree_v(c));
            lx_tree_release(c);
        }
    }
    if (st != LX_OK) {
        lx_tree_release(o);
        return st;
    }
    *out = o;
    return LX_OK;
}

/* The stored optimizer state in the trainer's form, guided by the trainer's state `target`: None
 * for an empty map and {params: X} for a params-shaped X go back. A checkpoint of the earlier
 * layout (mu/decoder/..., EmptyState {}) passes unchanged, so it still resumes. */
static lx_status opt_from_file(const lx_tree *stored, const lx_tree *target, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status st = LX_OK;
    for (size_t i = 0; i < lx_tree_len(stored) && st == LX_OK; i++) {
        const char *k = lx_tree_key(stored, i);
        const lx_value *v = lx_tree_at(stored, i);
        const lx_tree *tt = sub_tree(target, k);
        if (v->kind == LX_V_NONE && tt && lx_tree_len(tt) == 0) {
            lx_tree *e = lx_tree_new();
            st = e ? lx_tree_set(o, k, lx_tree_v(e)) : lx_last_status();
            lx_tree_release(e);
        } else if (v->kind == LX_V_TREE && tt) {
            const lx_tree *body = v->u.tree, *inner = sub_tree(body, "params");
            if (lx_tree_len(body) == 1 && inner && !lx_tree_get(tt, "params")) body = inner;
            lx_tree *c = NULL;
            st = opt_from_file(body, tt, &c);
            if (st == LX_OK) st = lx_tree_set(o, k, lx_tree_v(c));
            lx_tree_release(c);
        } else {
            st = lx_tree_set(o, k, *v);
        }
    }
    if (st != LX_OK) {
        lx_tree_release(o);
        return st;
    }
    *out = o;
    return LX_OK;
}

lx_status llama_trainer_state(const llama_trainer *t, lx_tree **out) {
    if (!t || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_trainer_state: NULL argument");
    *out = NULL;
    lx_tree *p = NULL, *opt = NULL, *root = lx_tree_new(), *pp = lx_tree_new(), *cfg = config_tree(llama_model_config(t->m));
    lx_status st = root && pp && cfg ? lx_tree_map(t->params, unbox_leaf, NULL, &p) : lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    if (st == LX_OK) st = opt_to_file(t->state, p, &opt);
    if (st == LX_OK) st = lx_tree_set(pp, "params", lx_tree_v(p));
    /* step as MaxText's Linen TrainState holds it: a 0-d int32 array */
    lx_array *step = st == LX_OK ? lx_array_new(LX_I32, 0, NULL) : NULL;
    if (st == LX_OK && !step) st = lx_last_status();
    if (st == LX_OK && t->step > INT32_MAX) st = lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_trainer_state: step %lld does not fit int32", (long long)t->step);
    if (st == LX_OK) {
        lx_i32(step)[0] = (int32_t)t->step;
        st = lx_tree_set(root, "step", lx_array_v(step));
    }
    lx_release(step);
    if (st == LX_OK) st = lx_tree_set(root, "params", lx_tree_v(pp));
    if (st == LX_OK) st = lx_tree_set(root, "opt_state", lx_tree_v(opt));
    if (st == LX_OK) st = lx_tree_set(root, "config", lx_tree_v(cfg));
    lx_tree_release(p);
    lx_tree_release(opt);
    lx_tree_release(pp);
    lx_tree_release(cfg);
    if (st != LX_OK) {
        lx_tree_release(root);
        return st;
    }
    *out = root;
    return LX_OK;
}

static const lx_tree *ckpt_params(const lx_tree *ckpt) {
    const lx_value *pp = lx_tree_get(ckpt, "params");
    const lx_value *p = pp && pp->kind == LX_V_TREE ? lx_tree_get(pp->u.tree, "params") : NULL;
    return p && p->kind == LX_V_TREE ? p->u.tree : NULL;
}

static lx_status model_load_checkpoint(llama_model *m, const lx_tree *ckpt);

lx_status llama_model_load_checkpoint(llama_model *m, const lx_tree *ckpt) {
    if (!m || !ckpt) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_model_load_checkpoint: NULL argument");
    lx_tree *conv = NULL;
    LX_TRY(linen_form(ckpt, &conv));
    lx_status st = model_load_checkpoint(m, conv ? conv : ckpt);
    lx_tree_release(conv);
    return st;
}

static lx_status model_load_checkpoint(llama_model *m, const lx_tree *ckpt) {
    LX_TRY(check_config(llama_model_config(m), ckpt, false));
    const lx_tree *p = ckpt_params(ckpt);
    if (!p) return lx_fail(LX_ERR_NOT_FOUND, "llama checkpoint: no params/params map");
    /* a scanned checkpoint for an unrolled model (sampling decodes unrolled) or the reverse */
    lx_tree *conv = NULL;
    LX_TRY(llama_params_layout_(llama_model_config(m), p, &conv));
    if (conv) p = conv;
    /* restore into the model's own structure: boxes / Variables with the stored arrays */
    lx_tree *target = NULL, *restored = NULL;
    lx_status st0 = llama_model_params(m, &target);
    if (st0 != LX_OK) {
        lx_tree_release(conv);
        return st0;
    }
    lx_restore_opts ro = lx_restore_defaults();
    ro.allow_extra = false;
    lx_status st = lx_ckpt_restore(target, p, &ro, &restored);
    if (st == LX_OK) st = llama_model_load_params(m, restored);
    lx_tree_release(target);
    lx_tree_release(restored);
    lx_tree_release(conv);
    return st;
}

static lx_status trainer_load_state(llama_trainer *t, const lx_tree *ckpt);

lx_status llama_trainer_load_state(llama_trainer *t, const lx_tree *ckpt) {
    if (!t || !ckpt) return lx_fail(LX_ERR_INVALID_ARGUMENT, "llama_trainer_load_state: NULL argument");
    lx_tree *conv = NULL;
    LX_TRY(linen_form(ckpt, &conv));
    lx_status st = trainer_load_state(t, conv ? conv : ckpt);
    lx_tree_release(conv);
    return st;
}

static lx_status trainer_load_state(llama_trainer *t, const lx_tree *ckpt) {
    LX_TRY(check_config(llama_model_config(t->m), ckpt, true));
    const lx_value *sv = lx_tree_get(ckpt, "step"), *ov = lx_tree_get(ckpt, "opt_state");
    /* a 0-d int32 array (MaxText's Linen step) or, in earlier checkpoints, an int */
    int64_t step = -1;
    if (sv && sv->kind == LX_V_INT) step = sv->u.i;
    else if (sv && sv->kind == LX_V_ARRAY && sv->u.array->ndim == 0 && !lx_is_abstract(sv->u.array) &&
             (sv->u.array->dtype == LX_I32 || sv->u.array->dtype == LX_U32))
        step = (int64_t)lx_array_get(sv->u.array, 0);
    if (step < 0) return lx_fail(LX_ERR_FORMAT, "llama checkpoint: 'step' is missing or not a non-negative integer");
    if (!ov || ov->kind != LX_V_TREE) return lx_fail(LX_ERR_NOT_FOUND, "llama checkpoint: no 'opt_state' map");
    const lx_tree *p = ckpt_params(ckpt);
    if (!p) return lx_fail(LX_ERR_NOT_FOUND, "llama checkpoint: no params/params map");
    lx_restore_opts ro = lx_restore_defaults();
    ro.allow_extra = false;
    lx_tree *params = NULL, *state = NULL, *opt = NULL;
    lx_status st = lx_ckpt_restore(t->params, p, &ro, &params);
    if (st == LX_OK) st = opt_from_file(ov->u.tree, t->state, &opt);
    if (st == LX_OK) st = lx_ckpt_restore(t->state, opt, &ro, &state);
    lx_tree_release(opt);
    if (st == LX_OK) st = llama_model_load_params(t->m, params);
    if (st != LX_OK) {
        lx_tree_release(params);
        lx_tree_release(state);
        return st;
    }
    lx_tree_release(t->params);
    lx_tree_release(t->state);
    t->params = params;
    t->state = state;
    t->step = step;
    return LX_OK;
}
