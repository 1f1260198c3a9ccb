/* linnx/llama_train.h - training the showcase decoder (llama.h): gradients of the LM loss in both
 * compositions, MaxText's optimizer (clip_by_global_norm + adamw over a warmup + cosine
 * schedule), a trainer that owns params + optimizer state, and its checkpoint tree.
 *
 * The optimizer is MaxText's (spec/maxtext-decoder.md §D.1, §D.10), with the learning rate scaled
 * to the tiny model:
 *   chain(clip_by_global_norm(clip), adamw(schedule, b1, b2, eps, eps_root 0, weight_decay))
 *   schedule = join_schedules([linear_schedule(0, lr, warmup), cosine(lr -> lr * final_fraction
 *              over steps - warmup, dividing by len - 1)], [warmup]),  warmup = int(steps * frac).
 * MaxText's cosine piece (pct = step / (len - 1), a = (1 + cos(pi pct)) / 2, lr a + final (1 - a))
 * is optax.cosine_decay_schedule(lr, decay_steps = len - 1, alpha = final_fraction) exactly.
 *
 * The checkpoint tree (llama_trainer_state) has MaxText's Linen train-state names:
 *   {step: int, params: {params: <arrays at the model's paths>}, opt_state: <optax state>,
 *    config: {vocab_size: int, emb_dim: int, ..., normalization_layer_epsilon: float, ...}}
 * and its layout (spec/checkpoints.md C.1; what `linnx convert --layout maxtext-linen` writes):
 * optax's state mirrors the TrainState's params {params: ...}, so adam's moments sit at
 * opt_state/1/0/mu/params/decoder/... (the chain clip_by_global_norm, adamw = chain(scale_by_adam,
 * add_decayed_weights, scale_by_schedule)), and each EmptyState is None. A checkpoint of the
 * earlier layout (opt_state/1/0/mu/decoder/..., EmptyState {}) still loads, and so does one in
 * MaxText's NNX layout (`linnx convert --layout maxtext-nnx`: model/..., optimizer/...), read
 * through its Linen form.
 * The parameters are stored as plain arrays, so either composition can load them.
 *
 * Ownership: the trainer borrows the model (it must outlive the trainer) and replaces its
 * parameters after every step; trees returned through `**out` are the caller's.
 */
#ifndef LINNX_LLAMA_TRAIN_H
#define LINNX_LLAMA_TRAIN_H

#include "linnx/llama.h"
#include "linnx/optax.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef struct llama_train_opts {
    int64_t steps;          /* the schedule's length (MaxText's learning_rate_schedule_steps) */
    double learning_rate;   /* peak: 3e-3 (MaxText's 3e-5 is for billions of parameters) */
    double warmup_fraction; /* 0.1 */
    double final_fraction;  /* 0.1: learning_rate_final_fraction */
    double b1, b2, eps;     /* 0.9, 0.95, 1e-8 (MaxText's adam_b1/b2/eps) */
    double weight_decay;    /* 0.1 (adam_weight_decay) */
    double clip;            /* 1.0 (gradient_clipping_threshold); <= 0: no clipping */
} llama_train_opts;
#define LLAMA_TRAIN_DEFAULTS {1000, 3e-3, 0.1, 0.1, 0.9, 0.95, 1e-8, 0.1, 1.0}

/* The schedule and the optimizer above (caller owns; NULL + LX_ERR_INVALID_ARGUMENT for steps < 2,
 * a non-positive learning rate or a warmup_fraction outside [0, 1)). */
optax_schedule *llama_lr_schedule(const llama_train_opts *o);
optax_tx *llama_optimizer(const llama_train_opts *o);

/* The next-token loss (llama_model_loss) of a (B, S + 1) batch and its gradient w.r.t. the
 * parameters: linen_value_and_grad over the Linen top's params (LogicallyPartitioned boxes in,
 * the same boxes around the gradients out), nnx_value_and_grad over the NNX top's Param state.
 * *loss (a float32 scalar) and *grads are the caller's; the model is unchanged. A decode model
 * (cache_batch > 0) is LX_ERR_INVALID_ARGUMENT; tokens are checked as llama_model_loss does. */
lx_status llama_value_and_grad(llama_model *m, lx_array *tokens, lx_array **loss, lx_tree **grads);

typedef struct llama_trainer llama_trainer;
/* Params from the model, a fresh optimizer state, step 0. */
lx_status llama_trainer_new(llama_model *m, const llama_train_opts *o, llama_trainer **out);
void llama_trainer_free(llama_trainer *t);
int64_t llama_trainer_step_count(const llama_trainer *t);
/* One step on tokens (B, S + 1): loss and gradients, optax update, the model's parameters
 * replaced. *loss gets the step's training loss (before the update). Nothing changes on failure.
 * Under MPI (lx_dist_init with several ranks, distributed.h): tokens are this rank's shard of the
 * global batch (lx_dist_shard_range), the gradients are averaged over the ranks (all-reduce
 * overlapped with the backward pass) before the optimizer, and *loss is the global batch's; the
 * ranks pass the step's status through lx_dist_check twice (llama_trainer_step_fault). */
lx_status llama_trainer_step(llama_trainer *t, lx_array *tokens, float *loss);
/* Under MPI, where the last llama_trainer_step's failure stands among the ranks. The step has two
 * status checks (lx_dist_check): one after the loss and gradients, one after the update.
 *   LLAMA_STEP_AGREED: every rank learnt of the failure in one of them: every rank's call failed
 *     at this step (the failing rank's with its own error, the others' with LX_ERR_INTERNAL
 *     "distributed: rank R failed at step S"), so all can end together (MPI_Finalize).
 *   LLAMA_STEP_MIDWAY: this rank failed between the checks, while averaging the gradients or the
 *     loss (the others may wait for its part of that collective), or a check timed out (a peer may
 *     be stuck): end the process without MPI_Finalize, and mpirun ends the job.
 *   LLAMA_STEP_LOCAL: the step succeeded, ran without MPI, or failed before any collective (a NULL
 *     argument): nothing is known to the others; the caller's own status check tells them.
 * On a rank whose step succeeded while another's update failed, the model's parameters go back to
 * the step's (should that fail, its own error is returned). */
typedef enum llama_step_fault { LLAMA_STEP_LOCAL = 0, LLAMA_STEP_AGREED, LLAMA_STEP_MIDWAY } llama_step_fault;
llama_step_fault llama_trainer_step_fault(const llama_trainer *t);
/* The checkpoint tree above (leaves shared with the trainer). */
lx_status llama_trainer_state(const llama_trainer *t, lx_tree **out);
/* Continue from a checkpoint tree: the config must equal the model's (else LX_ERR_SHAPE naming
 * the field, expected vs found), the parameters and optimizer state must match in paths and
 * shapes. Nothing changes on failure. */
lx_status llama_trainer_load_state(llama_trainer *t, const lx_tree *state);

/* The config stored in a checkpoint tree: no 'config' map is LX_ERR_NOT_FOUND, a field missing or
 * not a number LX_ERR_FORMAT naming it, values llama_config_check refuses its errors. */
lx_status llama_checkpoint_config(const lx_tree *ckpt, llama_config *out);
/* The checkpoint's parameters into a model of the same config (checked first; max_target_length
 * may differ: it sizes no parameter, so a model can sample longer sequences than it trained on). */
lx_status llama_model_load_checkpoint(llama_model *m, const lx_tree *ckpt);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
