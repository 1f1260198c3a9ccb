/* tools/train_cli.h - what `linnx grad` and `linnx train` share: the data (--x/--y or --data), the
 * loss (--loss, --reduction), a model built from any `linnx params` spec with its value_and_grad
 * and its optimizer step, and a small progress bar.
 *
 * Models. A spec of the linen. family, or bridge.to_linen(...), is a Linen module: init(key, x)
 * gives the variables; the gradient is jax.grad of the loss w.r.t. the 'params' collection (the
 * other collections are constants; batch_stats is applied as mutable and carried forward when it
 * exists), printed with the collection first (params/Dense_0/kernel) as `linnx params` does, and
 * training runs a flax.training.train_state.TrainState. A spec of the nnx. family, or
 * bridge.ToNNX(linen...) (lazy_init on x), is an NNX module built with nnx.Rngs(key): the gradient
 * is nnx.grad w.r.t. nnx.Param (paths of nnx.state(model, nnx.Param)), and training runs
 * nnx.Optimizer(model, tx, wrt=nnx.Param).
 *
 * Losses: optax.losses by name, reduced as loss(...).mean() (or .sum(), or not at all: then the
 * gradient fails as jax.grad does for a non-scalar output).
 *
 * Every int function returns 0, or an exit status after printing one `linnx: ...` line.
 */
#ifndef LINNX_TOOLS_TRAIN_CLI_H
#define LINNX_TOOLS_TRAIN_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"
#include "linnx/linnx.h"

/* ---- the loss ---- */
typedef enum tc_loss_kind {
    TC_L2_LOSS,
    TC_SQUARED_ERROR,
    TC_SOFTMAX_CE,
    TC_SOFTMAX_CE_INT,
    TC_SIGMOID_BCE,
} tc_loss_kind;
typedef enum tc_reduction { TC_MEAN, TC_SUM, TC_NONE } tc_reduction;
typedef struct tc_loss {
    tc_loss_kind kind;
    tc_reduction reduction;
} tc_loss;
/* --loss NAME (an `optax.losses.` / `optax.` prefix is accepted) and --reduction mean|sum|none. */
int tc_loss_parse(const char *name, const char *reduction, tc_loss *out);
/* The reduced loss of predictions against targets (pool-owned; NULL + library message). */
lx_array *tc_loss_eval(const tc_loss *l, lx_array *pred, lx_array *y);

/* ---- the data ---- */
/* x and y (owned references), any shape (0-d included). y is int32 for
 * softmax_cross_entropy_with_integer_labels (its values must be integers in the int32 range),
 * float32 otherwise; x is float32 (int32 from integer data). Integer data outside int32 is an
 * error, never wrapped. */
typedef struct tc_data {
    lx_array *x, *y;
} tc_data;
/* From --x VALUES --x-shape SHAPE --y VALUES --y-shape SHAPE (NaN is a value), or --data DIR
 * (DIR/x.npy and DIR/y.npy), --data X.npy,Y.npy, or --data FILE.safetensors (or a Flax .msgpack)
 * holding tensors `x` and `y`; a --data path that exists is one path, commas in its name included.
 * The model reads x as it is (a (3,) x is one unbatched example, as model(x) in JAX, a () y its
 * label); only minibatching needs a shared example axis (tc_data_check_examples). */
int tc_data_load(const cli_opt *x, const cli_opt *x_shape, const cli_opt *y, const cli_opt *y_shape,
                 const cli_opt *data, const tc_loss *loss, tc_data *out);
/* x and y both have a first axis and it agrees, or one `linnx:` line saying why it must (`why`). */
int tc_data_check_examples(const tc_data *d, const char *why);
void tc_data_free(tc_data *d);
/* Read a .npy file (format 1.0-3.0, C order, any shape; <f4 <f8 as float32; bool and the
 * little-endian integer types int8..int64, uint8..uint64 as int32, exactly: a value outside int32
 * is an error): an owned array (*rc 0), or NULL after printing the error, *rc the exit status
 * (CLI_EXIT_FAILURE when memory ran out, CLI_EXIT_USAGE for a bad file). The header is read as
 * numpy reads it (docs/hardening.md, Limits): exactly the three keys, a bool, a tuple of ints. */
lx_array *tc_npy_read(const char *path, int *rc);

/* ---- the model ---- */
typedef struct tc_model tc_model;
/* Build and initialise the model SPEC describes (with x as the example input). */
int tc_model_new(const char *spec, lx_key key, lx_array *x, tc_model **out);
void tc_model_free(tc_model *m);
/* The loss value and the gradient tree (both owned by the caller) on (x, y), without changing the
 * parameters; Linen gradients come as {"params": grads}. */
lx_status tc_model_grad(tc_model *m, lx_array *x, lx_array *y, const tc_loss *l, lx_array **value,
                        lx_tree **grads);
/* Under mpirun, after the setup (init, --restore): the NNX model's dropout streams (tags
 * "dropout" and "default") are reseeded from the run's key, the rank and the starting step, so
 * every rank draws its own masks (Linen folds the rank into its dropout key at each step). */
lx_status tc_model_dist_reseed(tc_model *m, int rank, int64_t step);
/* Start training with tx (taken). */
lx_status tc_model_train_begin(tc_model *m, optax_tx *tx);
/* One step: *loss = the loss of the parameters the step starts from, then the update. */
lx_status tc_model_train_step(tc_model *m, lx_array *x, lx_array *y, const tc_loss *l, float *loss);
/* Under mpirun (`linnx train`): average the gradients over the ranks before each update. */
extern bool tc_data_parallel;
/* After a failed tc_model_train_step under mpirun: tc_dist_agreed, every rank learnt of the failure
 * in the step's status check (after value_and_grad); tc_dist_midway, averaging the gradients
 * failed on this rank after that check (the others may wait for its buckets: end the process
 * without MPI_Finalize, so mpirun ends the job). Neither: a local failure after the averaging (the
 * optimizer step), for the caller's own status check. */
extern bool tc_dist_agreed, tc_dist_midway;

/* After train_begin: --save FILE writes the training state (Flax msgpack, atomically: a failed
 * save leaves the old file), --restore FILE reads one back and
 * sets *step to the number of steps it had done. Linen: {step, params, opt_state} (+ batch_stats);
 * NNX: {model, optimizer: {step, opt_state}}. A checkpoint of another model or optimizer changes
 * nothing and is one `linnx: --restore FILE: ...` line (exit 2). `path` is --save as typed (its
 * name gives the format: msgpack), `target` the file written (cli_check_output's: where its links
 * end). */
int tc_model_save(tc_model *m, const char *path, const char *target);
/* The training state tc_model_save writes (a new tree; the caller releases it). */
lx_status tc_model_state_tree(tc_model *m, lx_tree **out);
int tc_model_restore(tc_model *m, const char *path, int64_t *step);

/* ---- printing ---- */
/* `first_line` (if not NULL), then `path [Type ]dtype[shape]: v0 v1 ...` for every leaf of a tree
 * (the `linnx params` lines); prints nothing when it fails. */
int tc_print_tree(const char *first_line, const lx_tree *t);


#endif
