/* linnx/distributed.h - data-parallel training over MPI (docs/distributed.md).
 *
 * The model of JAX's data parallelism on a one-axis mesh: every rank (process) holds the whole
 * model, the global batch of each step is cut along its first axis into `size` equal shards
 * (the mesh axis is named "data", as a Flax annotation `nn.with_partitioning(init, ('data', None))`
 * or a batch sharded with PartitionSpec('data') names it), each rank computes the gradients of
 * its shard's loss, and the gradients are averaged over the axis (jax.lax.pmean(g, 'data'))
 * before the same optimizer step runs everywhere. With a loss that is a mean over the batch, the
 * averaged gradient is the gradient of the global batch's mean loss, so N ranks with a global
 * batch B follow the single-process run with batch B up to float32 summation order.
 *
 * MPI is optional at build time (CMake's find_package(MPI)); lx_dist_available() says whether
 * this build has it. Without it every call below except the pure helpers (lx_dist_shard_range,
 * lx_dist_axis_name, rank 0 of size 1) fails with LX_ERR_UNSUPPORTED.
 *
 * Gradients: lx_dist_allreduce_mean packs the float32 leaves, in tree order, into buckets of
 * lx_dist_set_bucket_bytes() bytes (default 256 KiB, or env LINNX_DIST_BUCKET_BYTES) and starts
 * a non-blocking MPI_Iallreduce for each bucket as soon as it is packed; they are all waited for
 * before the call returns (before the optimizer step). lx_dist_overlap_begin/end (below) start the buckets DURING the backward
 * pass instead, as each gradient becomes final.
 *
 * Threads: lx_dist_init gives each of the k ranks on a machine cores/k linnx threads (OpenMP and
 * OpenBLAS, threads.h) unless LINNX_THREADS is set.
 *
 * Faults: MPI_COMM_WORLD's error handler is MPI_ERRORS_RETURN, and every wait polls with a
 * deadline (lx_dist_set_timeout, default 60 s, env LINNX_DIST_TIMEOUT): a collective that does
 * not finish in time fails with LX_ERR_IO naming the step instead of hanging. lx_dist_check
 * is a collective all ranks call once per step with their own status: when any rank failed,
 * every rank gets LX_ERR_INTERNAL "distributed: rank R failed at step S", so the others stop
 * together. (Under mpirun, a rank that dies is also noticed by Open MPI's runtime, which ends
 * the job; see the docs.)
 *
 * Ownership: trees given to the calls are borrowed; *out trees are the caller's (release them).
 *
 * NULL arguments are named as elsewhere in the library, "<function>: <argument> is NULL": a NULL
 * input (a tree, an array, z) is LX_ERR_FAILED_INPUT (status.h: while an earlier failure is
 * pending it stands for that one, whose message is kept); a NULL out pointer is
 * LX_ERR_INVALID_ARGUMENT "<function>: output is NULL"; other pointers the caller owns (start,
 * len, buf, outs, arrays) LX_ERR_INVALID_ARGUMENT naming them.
 */
#ifndef LINNX_DISTRIBUTED_H
#define LINNX_DISTRIBUTED_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/optax.h"
#include "linnx/status.h"
#include "linnx/train.h"
#include "linnx/tree.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* Whether this build has MPI (LINNX_HAVE_MPI). */
bool lx_dist_available(void);
/* The data-parallel mesh axis name: "data". */
const char *lx_dist_axis_name(void);

/* MPI_Init (unless the program already initialised MPI; argc/argv may be NULL) and MPI_COMM_WORLD
 * with MPI_ERRORS_RETURN. *rank and *size (optional) receive this process's place (also when the
 * call fails: 0 and 1). Calling it again is a no-op. MPI starts once per process: after
 * lx_dist_finalize (or the program's MPI_Finalize) it is LX_ERR_INVALID_ARGUMENT "distributed:
 * lx_dist_init after MPI was finalized ...". Without MPI: LX_ERR_UNSUPPORTED. */
lx_status lx_dist_init(int *argc, char ***argv, int *rank, int *size);
/* MPI_Finalize if lx_dist_init initialised MPI; a no-op otherwise. */
lx_status lx_dist_finalize(void);
/* Rank and size: 0 and 1 before lx_dist_init (and without MPI). */
int lx_dist_rank(void);
int lx_dist_size(void);
/* Whether lx_dist_init has run and size > 1. */
bool lx_dist_active(void);

/* The step number the messages name (the caller's training step); a negative one is the setup
 * before the first step ("rank R failed before the first step"). */
void lx_dist_set_step(int64_t step);
/* Seconds a collective may wait before it fails (> 0). */
lx_status lx_dist_set_timeout(double seconds);
/* Bucket size of lx_dist_allreduce_mean and the overlapped all-reduce in bytes (>= 4). */
lx_status lx_dist_set_bucket_bytes(size_t bytes);

/* The part [*start, *start + *len) of a global batch of `batch` rows that `rank` of `size`
 * takes: equal contiguous shards, rank r gets rows r*batch/size ... A batch that does not divide
 * evenly is LX_ERR_INVALID_ARGUMENT (as sharding a batch dimension over a mesh axis requires). */
lx_status lx_dist_shard_range(int64_t batch, int rank, int size, int64_t *start, int64_t *len);
/* Like lx_batcher_next, but outs[i] are this rank's shard (lx_dist_shard_range) of the global
 * batch lx_batcher_next would give: every rank walks the same permutation. Pool-owned outputs;
 * false at the end of the epoch or on failure (lx_last_status() tells them apart; the argument
 * checks and messages are lx_batcher_next's, under this name; on failure outs are NULL, also for
 * a batch that does not divide over the ranks, e.g. keep_remainder's last one). */
bool lx_dist_batcher_next(lx_batcher *b, int narrays, lx_array *const *arrays, lx_array **outs);

/* jax.lax.pmean(tree, 'data'): a new tree with every float32 leaf averaged over the ranks: an
 * array, a box (Partitioned / LogicallyPartitioned: the same box around the mean) or a Variable (a
 * Variable of its type holding the mean); other leaves are kept. Use it for
 * gradients, and for BatchNorm running statistics to keep them equal on every rank (not the same
 * as Flax's BatchNorm(axis_name='data'), which pmeans the batch moments inside the forward pass:
 * docs/distributed.md). Bucketed, non-blocking all-reduces (see above). All ranks must
 * call it with trees of the same structure and shapes. *out is new (also with size 1). */
lx_status lx_dist_allreduce_mean(const lx_tree *t, lx_tree **out);
/* jax.lax.pmean(x, axis_name) inside a forward pass: the mean of the float32 array x over the ranks
 * of the axis (the same value on every rank), what BatchNorm(axis_name='data') (Linen and NNX)
 * uses for the batch moments (sync batch-norm). axis_name must be "data" (another name is
 * LX_ERR_NOT_FOUND "unbound axis name: NAME", as JAX says); on one process (size 1, or before
 * lx_dist_init, or a build without MPI) the mean over the one rank is x itself. Every rank must
 * call it at the same point (a collective, with the usual deadline). Pool-owned; NULL on failure.
 * Differentiation: it binds the "pmean" primitive (ops.h lx_pmean; lx_dist_init installs its
 * all-reduce hook), whose VJP is the pmean of the cotangent, JAX's transpose of pmean: the
 * backward pass all-reduces each moment's cotangent, so the pmean of the ranks' gradients is the
 * global batch's gradient (docs/distributed.md). Every rank must run its backward pass too. */
lx_array *lx_dist_pmean(lx_array *x, const char *axis_name);
/* Sum or mean of n floats over the ranks, in place (e.g. a loss to print). */
lx_status lx_dist_allreduce_f32(float *buf, int64_t n, bool mean);
/* Overwrite every float32 array (and Variable value) of `t` with rank `root`'s values, in
 * place: all ranks start from the same parameters. Structure and shapes must agree: root's leaf
 * count and each leaf's path, dtype and shape are compared first, and a difference on any rank is
 * LX_ERR_SHAPE on every rank (the differing one names its leaf), nothing overwritten. */
lx_status lx_dist_broadcast_tree(lx_tree *t, int root);
/* A collective every rank calls once per step with its own status: LX_OK when all ranks passed
 * LX_OK, otherwise (on every rank) LX_ERR_INTERNAL "distributed: rank R failed at step S"
 * naming the lowest failing rank (a failing rank keeps its own message). */
lx_status lx_dist_check(lx_status local);

/* ZeRO-1 style optimizer-state sharding. The float32 params, flattened in tree order, form one
 * vector of T elements; rank r owns the contiguous elements [r*T/N ...) (counts T/N or T/N + 1:
 * the first T % N ranks take one more), and keeps the optimizer state of that shard only: tx
 * runs on a tree holding, at each param's path, the 1-D slice of the param inside the rank's
 * range (params outside it absent), so a rank's state is about 1/N of the unsharded one. A step
 * packs the local gradients, reduce-scatters them (MPI_Ireduce_scatter with the N counts: each
 * rank receives the sum of its own shard only) and divides by N, updates the rank's shard of the
 * params with tx, and all-gathers the updated shards (MPI_Iallgatherv), so every rank ends with
 * the same new params; both waits have lx_dist_set_timeout's deadline. Same results as the unsharded step (to float32 summation order) for elementwise
 * transformations (sgd, momentum, adam, adamw, rmsprop, clip, ...). Those that look at all
 * elements at once (clip_by_global_norm), at a whole leaf (clip_by_block_rms,
 * scale_by_param_block_rms) or at a param's shape (scale_by_factored_rms: adafactor) would see only
 * the rank's 1-D slices: refused, anywhere in tx, with LX_ERR_UNSUPPORTED naming them; so is a mask
 * that chooses differently for a param and a rank's slice of it (optax_mask_min_ndim). Every params leaf must be a float32
 * array, T < 2^31. tx is TAKEN (as optax constructors take theirs). */
typedef struct lx_dist_zero1 lx_dist_zero1;
lx_status lx_dist_zero1_new(optax_tx *tx, const lx_tree *params, lx_dist_zero1 **out);
/* Overlapping the reduce-scatter with the backward pass: lx_dist_zero1_begin(z, params), before the
 * backward pass that differentiates `params` (the same tree, borrowed until the step), registers a
 * "gradient is final" callback on this thread's tape (autodiff.h, as lx_dist_overlap_begin does):
 * the params' flat vector is cut into buckets of consecutive leaves of lx_dist_set_bucket_bytes()
 * bytes at lx_dist_zero1_new (a larger leaf is a bucket of its own, sent straight from its
 * gradient array, no copy), and each bucket's MPI_Ireduce_scatter starts the moment its last
 * gradient is final, on the gradient communicator. The step then starts the rest. One backward
 * pass between begin and step; the grads given to the step must be the ones that pass returned
 * (a different array at a reported leaf is LX_ERR_INVALID_ARGUMENT on that rank, and
 * LX_ERR_INTERNAL "rank R failed" on the others: the step is not taken). Without begin the step
 * reduce-scatters everything after the pass. A begin while the previous begin's reductions are
 * still in flight (no step came between) is LX_ERR_INVALID_ARGUMENT and ends the run's use of z
 * (they cannot be dropped: MPI still reads the gradients); after a failed step, call
 * lx_dist_zero1_step(z, NULL, NULL) instead. Tied parameters (one array at two paths) are credited
 * to the lower-indexed leaf on every rank. */
lx_status lx_dist_zero1_begin(lx_dist_zero1 *z, const lx_tree *params);
/* grads: this rank's local gradients; *params is replaced by the new params tree (new arrays).
 * Collective: every rank calls it each step; an error on any rank fails the step on all (params
 * and state left as they were), its status travelling with the reduce-scatter and with the
 * all-gather instead of in rounds of their own, so every rank always starts the same collectives. The
 * shard's update runs on 1-D views of the averaged gradients and of the params (no copies), and
 * the new params are all-gathered leaf by leaf straight into the new arrays. After a failed step
 * (lx_dist_check), call lx_dist_zero1_step(z, NULL, NULL): the reductions in flight are abandoned
 * and the run must end (a later begin or step fails). */
lx_status lx_dist_zero1_step(lx_dist_zero1 *z, const lx_tree *grads, lx_tree **params);
/* Elements of the params whose optimizer state this rank holds, and of all params. */
int64_t lx_dist_zero1_owned(const lx_dist_zero1 *z, int64_t *total);
/* The rank's optimizer state (borrowed): the state of its shard (1-D slices). */
const lx_tree *lx_dist_zero1_state(const lx_dist_zero1 *z);
/* Bytes of the array leaves of the rank's optimizer state (its memory for the optimizer). */
int64_t lx_dist_zero1_state_bytes(const lx_dist_zero1 *z);
/* Checkpoints. gather_state (collective) gives every rank the UNSHARDED state: the tree
 * optax_init(tx, params) would build, per-param leaves (float32, or bfloat16 moments: adam's
 * mu_dtype) all-gathered from their owners, the rest (Adam's count) the rank's own; save it with the params and it restores into a plain
 * (unsharded) run, or into lx_dist_zero1_load_state. It allocates the whole state for the
 * duration. load_state cuts an unsharded state of the SAME transformation (its leaves where
 * optax_init puts them: a chain's count at 1/0/count ...; another layout is LX_ERR_NOT_FOUND naming
 * the missing path) to this rank's shard (no communication); z's
 * state is replaced only on success. */
lx_status lx_dist_zero1_gather_state(const lx_dist_zero1 *z, const lx_tree *params, lx_tree **out);
lx_status lx_dist_zero1_load_state(lx_dist_zero1 *z, const lx_tree *full);
void lx_dist_zero1_free(lx_dist_zero1 *z);

/* Overlapping the gradient all-reduce with the backward pass (PyTorch DDP's scheme, what XLA does
 * for a pmean of gradients): lx_dist_overlap_begin() registers a "gradient is final" callback on
 * the tape of this thread (autodiff.h, lx_tape_set_grad_ready); during the next backward pass
 * (linen_value_and_grad, nnx_value_and_grad, lx_value_and_grad) each float32 gradient is copied
 * into the open bucket the moment no later op can add to it, and a bucket's MPI_Iallreduce starts
 * as soon as it holds lx_dist_set_bucket_bytes() bytes (default 256 KiB), on a communicator of its
 * own; the reductions in flight are progressed at every later gradient. Then
 * lx_dist_overlap_end(grads, &avg) starts the last bucket (and any gradient the pass did not
 * report), waits for all of them and gives pmean(grads) exactly as lx_dist_allreduce_mean would
 * (the same sums: only the packing differs). Every rank must run the same computation (the
 * buckets follow the order gradients complete in). One backward pass between begin and end: a
 * begin after a pass whose gradients were not taken is LX_ERR_INVALID_ARGUMENT (the pass is kept
 * for lx_dist_overlap_end; starting over would drop its buckets while MPI may still use them).
 * After a failed step (lx_dist_check), call lx_dist_overlap_end(NULL, NULL): the buckets in flight
 * are abandoned and the run must end (a later begin fails); a NULL grads with an out pointer
 * abandons them too but is LX_ERR_FAILED_INPUT "lx_dist_overlap_end: grads is NULL". Without
 * other ranks (size 1) the callback is not set and end copies the gradients. */
lx_status lx_dist_overlap_begin(void);
lx_status lx_dist_overlap_end(const lx_tree *grads, lx_tree **out);

/* Seconds spent waiting for collectives since the last call (and reset), for benchmarks. */
double lx_dist_take_wait_seconds(void);
/* Communication statistics since the last call (and reset): wait_s, the seconds blocked waiting
 * for collectives (not hidden); overlap_s, the seconds gradient buckets were in flight while the
 * backward pass still ran (from the first bucket's start to the pass's end, summed over steps);
 * bytes, the gradient bytes all-reduced by overlapped steps (reduce-scattered, by ZeRO-1 steps);
 * early_bytes, those whose reduction had completed before the backward pass ended. wait_s counts
 * every wait of the library's collectives (lx_dist_check's too). */
typedef struct lx_dist_stats {
    double wait_s, overlap_s, bytes, early_bytes;
} lx_dist_stats;
void lx_dist_take_stats(lx_dist_stats *s);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
