/* `linnx train SPEC --seed S ... --loss L --optimizer 'adam(1e-3)' --steps N [--batch-size B]
 * [--restore FILE] [--save FILE]`: one `step K loss V` line per step, V the loss of the
 * parameters step K starts from; a restored run continues at the checkpoint's step. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linnx/box.h"
#include "linnx/checkpoint.h"
#include "linnx/distributed.h"
#include "linnx/optax.h"
#include "linnx/train.h"
#include "linnx/variable.h"
#include "progress.h"
#include "train_cli.h"

static const char TRAIN_USAGE[] =
    "usage: linnx train SPEC (--seed S | --key K0,K1) [--x64] (--x V --x-shape S --y V --y-shape S |\n"
    "                   --data DIR | --data X.npy,Y.npy | --data FILE.safetensors) --loss NAME\n"
    "                   [--reduction mean|sum]\n"
    "                   --optimizer EXPR --steps N [--batch-size B] [--shuffle-seed S] [--progress|--plain]\n"
    "                   [--debug-nans] [--restore FILE] [--save FILE]\n"
    "  SPEC, data and --loss as for `linnx grad` (linnx grad --help).\n"
    "  --optimizer: an optax expression: 'adam(1e-3)', 'sgd(0.1, momentum=0.9)',\n"
    "    'adamw(3e-4, weight_decay=0.1)', 'adam(warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100))',\n"
    "    'chain(clip_by_global_norm(1.0), adam(1e-3))', ...\n"
    "  Linen models train a TrainState (create, apply_gradients); NNX models an\n"
    "  nnx.Optimizer(model, tx, wrt=nnx.Param).\n"
    "  --batch-size B < the number of examples N: minibatches of B rows, N // B per epoch (the rest\n"
    "    dropped, as the Flax examples do), epoch e in the order\n"
    "    jax.random.permutation(jax.random.fold_in(key(shuffle_seed), e), N); the shuffle seed\n"
    "    defaults to --seed; x and y must have the same first axis (not 0-d). Without it every\n"
    "    step uses the whole data (an unbatched x of shape (3,) and a y of shape () included).\n"
    "  Prints `step K loss V` for K = 0..N-1 (V: the loss before step K's update, so step 0 is the\n"
    "  initial loss). On a terminal a progress bar (steps/s, loss, ETA) replaces the lines, then the\n"
    "  last step's line is printed (under mpirun the lines, as the launcher gives each rank a\n"
    "  terminal of its own); --plain forces lines, --progress forces the bar.\n"
    "  --debug-nans: stop at the first NaN/Inf in the gradients or updates, naming the leaf by\n"
    "    the path `linnx grad` prints (as jax_debug_nans would; the parameters stay those of the\n"
    "    last good step). Without it NaN losses print as nan and training goes on, as in JAX.\n"
    "  Under `mpirun -np N` (a linnx built with MPI): data parallelism over N ranks. Each step's\n"
    "  batch (the whole data without --batch-size) is split into N equal shards, one per rank, the\n"
    "  gradients are averaged, and rank 0 prints the mean loss; the lines equal one process's up\n"
    "  to float32 summation order. The batch must divide by N; --reduction mean only.\n"
    "  --save FILE: after the last step, write the training state in Flax's msgpack (atomically;\n"
    "    not .safetensors, which holds arrays only): Linen {step, params, opt_state} (+ batch_stats),\n"
    "    NNX {model: nnx.state(model), optimizer: {step, opt_state}}.\n"
    "  --restore FILE: continue from such a file (same SPEC, --optimizer, data and seeds): steps\n"
    "    K..K+N-1 follow its K steps, printing what an uninterrupted run prints for them. A\n"
    "    checkpoint of another model or optimizer is an error.\n";

/* A loss as Python prints a float32 at %.9g: nan, inf, -inf (not glibc's -nan). */
static void print_step(int64_t k, float v) { printf("step %lld loss %.9g\n", (long long)k, cli_num(v)); }

/* ---- the start of a run under mpirun ----
 * Every rank joins one collective before the first step (dp_setup_check): a rank whose setup failed
 * (data, model, --restore, a usage error) says so there, so the others stop at once with "rank R
 * failed before the first step" instead of waiting for it in the first step's collectives until
 * the deadline. When every rank is ready, they compare what they are about to run, field by field
 * (64-bit FNV-1a hashes, rank 0's broadcast): a rank started with another seed, optimizer, data,
 * restored step or state would otherwise train silently to different parameters. */
enum { RF_SPEC, RF_OPT, RF_LOSS, RF_KEY, RF_SHUF, RF_BS, RF_STEPS, RF_NANS, RF_DATA, RF_START, RF_STATE, RF_N };
static const char *const RF_NAMES[RF_N] = {
    "SPEC", "--optimizer", "--loss/--reduction", "--seed/--key/--x64", "--shuffle-seed", "--batch-size", "--steps",
    "--debug-nans", "the data (x and y: dtypes, shapes, values)", "the restored step (--restore)",
    "the training state it starts from (parameters and optimizer state)"};
static bool dp_checked; /* this run's rank has joined dp_setup_check */
static bool dp_agreed;  /* the run ended well, or every rank learnt of its failure in a check */
static bool dp_midway;  /* dp_setup_check failed inside a collective the others may still wait in */

/* rc: this rank's setup (0: ready, and `mine` holds its RF_N hashes). */
static int dp_setup_check(int rc, const uint64_t *mine, int rank, int nranks) {
    dp_checked = true;
    rc = cli_dist_setup_check(rc); /* "distributed: rank R failed before the first step" */
    if (rc) return rc;
    return cli_dist_same(RF_N, mine, RF_NAMES, "give every rank the same SPEC, options, data and --restore checkpoint",
                         rank, nranks, &dp_midway);
}

/* The run after the command line was read; under mpirun (nranks > 1) every rank returns through
 * dp_setup_check or the steps after it. */
static int train_run(cli_opt *o, const char *spec, int rank, int nranks) {
    enum { O_SEED, O_KEY, O_X64, O_X, O_XS, O_Y, O_YS, O_DATA, O_LOSS, O_RED, O_OPT, O_STEPS, O_BS, O_SHUF,
           O_PROG, O_PLAIN, O_NANS, O_SAVE, O_RESTORE, O_N };
    bool dp = nranks > 1;
    if (!o[O_LOSS].seen) return cli_error("train: --loss is required (e.g. --loss l2_loss)");
    if (!o[O_OPT].seen) return cli_error("train: --optimizer is required (e.g. --optimizer 'adam(1e-3)')");
    if (!o[O_STEPS].seen) return cli_error("train: --steps is required");
    if (o[O_PROG].seen && o[O_PLAIN].seen) return cli_error("train: give --progress or --plain, not both");
    lx_key key, shuffle_key;
    tc_loss loss;
    int64_t steps, bs = 0, sseed = 0;
    if (cli_key(&o[O_SEED], &o[O_KEY], &o[O_X64], &key)) return CLI_EXIT_USAGE;
    shuffle_key = key;
    if (o[O_SHUF].seen) {
        if (cli_i64("shuffle-seed", o[O_SHUF].value, &sseed)) return CLI_EXIT_USAGE;
        shuffle_key = lx_key_from_seed(sseed);
    }
    if (cli_i64("steps", o[O_STEPS].value, &steps)) return CLI_EXIT_USAGE;
    if (steps < 0 || steps > 100000000) return cli_error("--steps: %lld is outside 0..100000000", (long long)steps);
    if (o[O_BS].seen) {
        if (cli_i64("batch-size", o[O_BS].value, &bs)) return CLI_EXIT_USAGE;
        if (bs < 1) return cli_error("--batch-size: %lld is not a positive integer", (long long)bs);
    }
    if (tc_loss_parse(o[O_LOSS].value, o[O_RED].value, &loss)) return CLI_EXIT_USAGE;
    if (dp && loss.reduction != TC_MEAN) return cli_error("train: under mpirun the loss must be a mean (--reduction mean)");
    /* the step count and optax's empty states are not arrays: checked before any training */
    if (o[O_SAVE].seen && lx_ckpt_format_of(o[O_SAVE].value) == LX_CKPT_SAFETENSORS)
        return cli_error("--save %s: a training state needs msgpack (FILE.msgpack); safetensors holds arrays only",
                         o[O_SAVE].value);
    /* its folder must take the file: found out before training, not after (rank 0 writes it) */
    char save_path[4096] = ""; /* --save, or where its symbolic links end */
    if (o[O_SAVE].seen && rank == 0 && cli_check_output("--save", o[O_SAVE].value, save_path, sizeof save_path))
        return CLI_EXIT_USAGE;
    optax_tx *tx = optax_from_string(o[O_OPT].value);
    if (!tx) {
        cli_errline("--optimizer: %s", lx_last_error());
        return cli_status_exit(lx_last_status()); /* out of memory is 1, a bad expression 2 */
    }
    bool was_nans = optax_debug_nans();
    optax_set_debug_nans(o[O_NANS].seen);
    tc_data d;
    int rc = tc_data_load(&o[O_X], &o[O_XS], &o[O_Y], &o[O_YS], &o[O_DATA], &loss, &d);
    if (rc) {
        optax_tx_release(tx);
        optax_set_debug_nans(was_nans);
        return rc;
    }
    int64_t n = d.x->ndim ? d.x->shape[0] : 1; /* a 0-d x cannot be batched: refused below */
    bool batched = bs > 0 && bs < n;
    if (o[O_BS].seen) rc = tc_data_check_examples(&d, "--batch-size takes rows of both");
    else if (dp) rc = tc_data_check_examples(&d, "mpirun shards the rows of both");
    lx_batcher batcher = {0};
    tc_model *m = NULL;
    if (!rc) rc = tc_model_new(spec, key, d.x, &m);
    if (rc) optax_tx_release(tx);
    else if (tc_model_train_begin(m, tx) != LX_OK) rc = cli_lib_error();
    if (!rc && (batched || dp) && lx_batcher_init(&batcher, n, batched ? bs : n, false) != LX_OK) rc = cli_lib_error();
    int64_t start = 0; /* the steps a restored checkpoint had done */
    if (!rc && o[O_RESTORE].seen) rc = tc_model_restore(m, o[O_RESTORE].value, &start);
    if (!rc && start > 100000000) rc = cli_error("--restore: step %lld is outside 0..100000000", (long long)start);
    /* resuming mid-epoch: that epoch's order, its first batches already taken */
    if (!rc && batched && start % batcher.nbatches != 0) {
        if (lx_batcher_shuffle(&batcher, lx_key_fold_in(shuffle_key, (uint32_t)(start / batcher.nbatches))) != LX_OK)
            rc = cli_lib_error();
        batcher.next = start % batcher.nbatches;
    }
    if (dp) { /* every rank ready, and all starting the same run */
        uint64_t h[RF_N] = {0};
        if (!rc) {
            char num[64];
            h[RF_SPEC] = cli_fnv_str(spec);
            h[RF_OPT] = cli_fnv_str(o[O_OPT].value);
            h[RF_LOSS] = cli_fnv(cli_fnv_str(o[O_LOSS].value), &loss.reduction, sizeof loss.reduction);
            h[RF_KEY] = cli_fnv(CLI_FNV0, &key, sizeof key);
            /* given or not (its default, --seed, is in RF_KEY) */
            h[RF_SHUF] = o[O_SHUF].seen ? cli_fnv(CLI_FNV0, &shuffle_key, sizeof shuffle_key) : cli_fnv_str(NULL);
            snprintf(num, sizeof num, "%lld %d", (long long)bs, batched);
            h[RF_BS] = cli_fnv_str(num);
            h[RF_STEPS] = cli_fnv(CLI_FNV0, &steps, sizeof steps);
            h[RF_NANS] = o[O_NANS].seen;
            h[RF_DATA] = cli_fnv_array(cli_fnv_array(CLI_FNV0, d.x), d.y);
            h[RF_START] = cli_fnv(CLI_FNV0, &start, sizeof start);
            lx_tree *ts = NULL;
            if (tc_model_state_tree(m, &ts) != LX_OK || cli_fnv_tree(ts, &h[RF_STATE]) != LX_OK) rc = cli_lib_error();
            lx_tree_release(ts);
            /* then each rank its own dropout masks (after the comparison: the streams differ) */
            if (!rc && tc_model_dist_reseed(m, rank, start) != LX_OK) rc = cli_lib_error();
        }
        rc = dp_setup_check(rc, h, rank, nranks);
    }
    bool bar = rank == 0 && (o[O_PROG].seen || (!o[O_PLAIN].seen && progress_is_terminal(STDOUT_FILENO)));
    progress prog; /* the bar on a terminal (or --progress); `step K loss V` lines otherwise */
    progress_begin(&prog, stdout, steps, 0);
    prog.tty = bar;
    prog.quiet = true;
    float last = 0;
    bool agreed = rc != 0 && !dp_midway; /* a failure every rank learnt in a status check: they end together */
    for (int64_t k = start; !rc && k < start + steps; k++) {
        size_t mark = lx_pool_open();
        lx_array *xb = d.x, *yb = d.y;
        if (dp) cli_dist_set_step(k);
        if (batched) {
            int64_t epoch = k / batcher.nbatches;
            if (k % batcher.nbatches == 0 &&
                lx_batcher_shuffle(&batcher, lx_key_fold_in(shuffle_key, (uint32_t)epoch)) != LX_OK)
                rc = cli_lib_error();
            lx_array *in[2] = {d.x, d.y}, *outb[2] = {NULL, NULL};
            if (!rc && !(dp ? lx_dist_batcher_next : lx_batcher_next)(&batcher, 2, in, outb)) rc = cli_lib_error();
            xb = outb[0];
            yb = outb[1];
        } else if (dp) { /* the whole data each step, sharded */
            lx_array *in[2] = {d.x, d.y}, *outb[2] = {NULL, NULL};
            batcher.next = 0;
            if (!rc && !lx_dist_batcher_next(&batcher, 2, in, outb)) rc = cli_lib_error();
            xb = outb[0];
            yb = outb[1];
        }
        bool stepped = !rc;
        if (!rc && tc_model_train_step(m, xb, yb, &loss, &last) != LX_OK) rc = cli_lib_error();
        /* under mpirun every rank passes its step's status through one check unless the step's
         * own check told them all (tc_dist_agreed); a rank that failed before its step meets the
         * others in that one. A failure while averaging (tc_dist_midway) cannot be checked: the
         * others may wait for its gradient buckets; the process ends without MPI_Finalize and
         * mpirun ends the job (naming the rank; the others print the step) */
        if (dp && stepped && rc && tc_dist_agreed) agreed = true;
        else if (dp && !(stepped && rc && tc_dist_midway)) {
            lx_status cs = lx_dist_check(rc ? LX_ERR_INTERNAL : LX_OK);
            if (!rc && cs != LX_OK) rc = cli_lib_error(); /* "distributed: rank R failed at step K" */
            if (rc) agreed = cs != LX_ERR_IO; /* not when the check timed out: a peer may be stuck */
        }
        if (!rc && dp && lx_dist_allreduce_f32(&last, 1, true) != LX_OK) rc = cli_lib_error();
        if (!rc) {
            if (bar) progress_update(&prog, k - start + 1, last, 0);
            else print_step(k, last);
        }
        lx_pool_close(mark);
    }
    progress_end(&prog);
    if (!rc && bar && steps > 0) print_step(start + steps - 1, last);
    if (!rc && o[O_SAVE].seen && rank == 0) { /* rank 0 writes, after the last collective */
        rc = tc_model_save(m, o[O_SAVE].value, save_path);
        agreed = true;
    }
    lx_batcher_free(&batcher);
    tc_model_free(m);
    tc_data_free(&d);
    optax_set_debug_nans(was_nans);
    dp_agreed = !rc || agreed;
    return rc;
}

int cmd_train(int argc, char **argv) {
    enum { O_SEED, O_KEY, O_X64, O_X, O_XS, O_Y, O_YS, O_DATA, O_LOSS, O_RED, O_OPT, O_STEPS, O_BS, O_SHUF,
           O_PROG, O_PLAIN, O_NANS, O_SAVE, O_RESTORE, O_N };
    cli_opt o[O_N] = {CLI_OPT("seed"),    CLI_OPT("key"),        CLI_FLAG("x64"),   CLI_OPT("x"),
                      CLI_OPT("x-shape"), CLI_OPT("y"),          CLI_OPT("y-shape"), CLI_OPT("data"),
                      CLI_OPT("loss"),    CLI_OPT("reduction"),  CLI_OPT("optimizer"), CLI_OPT("steps"),
                      CLI_OPT("batch-size"), CLI_OPT("shuffle-seed"), CLI_FLAG("progress"), CLI_FLAG("plain"),
                      CLI_FLAG("debug-nans"), CLI_OPT("save"), CLI_OPT("restore")};
    const char *pos[1];
    int npos;
    bool help;
    int parsed = cli_parse(argc, argv, 1, o, O_N, pos, 1, &npos, &help);
    if (!parsed && help) {
        fputs(TRAIN_USAGE, stdout);
        return 0;
    }
    /* launched by mpirun (Open MPI or MPICH/PMI): data parallelism; rank 0 alone prints. MPI starts
     * before anything else can fail, so that every failure of a rank reaches the others */
    int rank, nranks, rc0 = cli_dist_start("train", &rank, &nranks);
    if (rc0) return rc0;
    int rc = parsed ? CLI_EXIT_USAGE : 0;
    if (!rc && rank != 0 && !freopen("/dev/null", "w", stdout)) rc = cli_error("train: rank %d: /dev/null", rank);
    if (!rc && npos != 1) rc = cli_error("train: which model? (linnx train --help)");
    tc_data_parallel = nranks > 1;
    dp_checked = dp_midway = false;
    dp_agreed = true;
    if (!rc) rc = train_run(o, pos[0], rank, nranks);
    /* a rank that failed before it reached the start-of-run check still joins it: the others stop */
    if (nranks > 1 && !dp_checked) dp_setup_check(rc ? rc : CLI_EXIT_USAGE, NULL, rank, nranks), dp_agreed = true;
    tc_data_parallel = false;
    /* after a timeout (LX_ERR_IO), or a failure the others did not learn of in a check, a peer may
     * be stuck in a collective: end without MPI_Finalize and let mpirun end the job */
    if (!rc || (dp_agreed && lx_last_status() != LX_ERR_IO)) lx_dist_finalize();
    return rc;
}
