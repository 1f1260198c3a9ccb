/* linnx sample | train-lm: the showcase decoder from the command line (docs/showcase.md).
 *
 * sample: generate text from a prompt with the KV cache, from a checkpoint or a random init.
 * train-lm: the training run: data (byte-level, held-out split), the model, the baselines
 * (initial held-out loss, byte-unigram entropy of the held-out text), the loop (value_and_grad +
 * clip_by_global_norm + adamw over MaxText's warmup + cosine schedule: llama_train.h) with the
 * progress display, held-out evaluations, the SVG loss curve, samples before/after, the
 * checkpoint (with --resume continuing exactly) and a reload that shows the same sample. */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "cli.h"
#include "linnx/linnx.h"
#include "linnx/llama.h"
#include "linnx/llama_train.h"
#include "linnx/lm_data.h"
#include "linnx/checkpoint.h"
#include "linnx/plot.h"
#include "linnx/sampling.h"
#include "progress.h"

/* Op results are fresh arrays; with glibc's default the large ones come from mmap and every step
 * pays page faults to get them back. Keep them in the heap instead (a quarter to a half of a
 * forward's time on this model). */
static void keep_heap(void) {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

/* ------------------------------------------------------------------ shared: model flags */

enum { M_VOCAB, M_EMB, M_LAYERS, M_HEADS, M_KV, M_HEAD_DIM, M_MLP, M_SEQ, M_STYLE, M_SCAN, M_N };
#define MODEL_OPTS                                                                                        \
    CLI_OPT("vocab"), CLI_OPT("emb"), CLI_OPT("layers"), CLI_OPT("heads"), CLI_OPT("kv-heads"),           \
        CLI_OPT("head-dim"), CLI_OPT("mlp"), CLI_OPT("seq-len"), CLI_OPT("style"), CLI_FLAG("scan-layers")
#define MODEL_USAGE                                                                                       \
    "model: [--vocab 256] [--emb 64] [--layers 2] [--heads 4] [--kv-heads 2] [--head-dim 16] [--mlp 128]\n" \
    "       [--style linen|nnx]   (linen: Linen Transformer over NNX layers via to_linen_class;\n"       \
    "                              nnx: NNX Transformer over ToNNX(Linen Decoder))\n"       \
    "       [--scan-layers]       (MaxText's scan_layers: the layers as one nn.scan, params stacked\n" \
    "                              at decoder/layers with the layer axis at 1; sampling decodes\n"  \
    "                              with the layers unstacked)\n"

/* An array the run will make, against --max-array-bytes (checked before anything is built, so a
 * size flag too large is a usage error, not an allocation failure after some output): 0, or
 * CLI_EXIT_USAGE naming the array, its shape and bytes. */
static int check_array(const char *what, int nd, const int64_t *shape) {
    int64_t n = 1;
    bool over = false;
    for (int i = 0; i < nd; i++) over = over || __builtin_mul_overflow(n, shape[i], &n);
    size_t bytes = 0;
    over = over || __builtin_mul_overflow((size_t)n, sizeof(float), &bytes);
    if (!cli_max_array_bytes || (!over && bytes <= cli_max_array_bytes)) return 0;
    char b[160];
    lx_shape_str(nd, shape, b, sizeof b);
    if (over)
        return cli_error("%s: float32 %s is too big, over the limit of %zu bytes per array (--max-array-bytes)", what, b,
                         cli_max_array_bytes);
    return cli_error("%s: float32 %s needs %zu bytes, over the limit of %zu bytes per array (--max-array-bytes)", what, b,
                     bytes, cli_max_array_bytes);
}

/* The model's largest parameters (scanned layers stack L of each at axis 1) and the largest
 * arrays of a forward of `batch` x `rows` tokens attending over `len` positions (training: rows =
 * len; decoding: the prompt's prefill over the cache): logits, attention weights, the MLP's hidden
 * activations. */
static int check_model_arrays(const llama_config *c, int64_t batch, int64_t rows, int64_t len) {
    int64_t E = c->emb_dim, V = c->vocab_size, M = c->mlp_dim, H = c->num_query_heads, D = c->head_dim;
    int64_t L = c->num_decoder_layers;
    bool sc = c->scan_layers;
    const char *mlp = sc ? "decoder/layers/mlp/wi_0/kernel" : "decoder/layers_0/mlp/wi_0/kernel";
    const char *query = sc ? "decoder/layers/self_attention/query/kernel" : "decoder/layers_0/self_attention/query/kernel";
    if (check_array("token_embedder/embedding", 2, (int64_t[]){V, E}) ||
        (sc ? check_array(mlp, 3, (int64_t[]){E, L, M}) : check_array(mlp, 2, (int64_t[]){E, M})) ||
        (sc ? check_array(query, 4, (int64_t[]){E, L, H, D}) : check_array(query, 3, (int64_t[]){E, H, D})) ||
        check_array(rows == len ? "logits (--batch, --seq-len, --vocab)" : "logits (1, prompt, --vocab)", 3,
                    (int64_t[]){batch, rows, V}) ||
        check_array(rows == len ? "attention weights (--batch, --heads, --seq-len, --seq-len)"
                                : "attention weights (1, --heads, prompt, --seq-len)",
                    4, (int64_t[]){batch, H, rows, len}) ||
        check_array(rows == len ? "MLP activations (--batch, --seq-len, --mlp)" : "MLP activations (1, prompt, --mlp)", 3,
                    (int64_t[]){batch, rows, M}) ||
        check_array("the KV cache (1, --seq-len, --kv-heads, --head-dim)", 4,
                    (int64_t[]){rows == len ? 1 : batch, len, c->num_kv_heads, D}))
        return CLI_EXIT_USAGE;
    return 0;
}

/* The model flags over `base` (the tiny config with the command's default length, or a checkpoint's). */
static int model_flags(const cli_opt *o, const llama_config *base, llama_config *c, llama_style *style) {
    *c = *base;
    struct { int i; int64_t *dst; } ints[] = {{M_VOCAB, &c->vocab_size}, {M_EMB, &c->emb_dim},
                                              {M_LAYERS, &c->num_decoder_layers}, {M_HEADS, &c->num_query_heads},
                                              {M_KV, &c->num_kv_heads}, {M_HEAD_DIM, &c->head_dim},
                                              {M_MLP, &c->mlp_dim}, {M_SEQ, &c->max_target_length}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (o[ints[i].i].seen && cli_i64(o[ints[i].i].name, o[ints[i].i].value, ints[i].dst)) return CLI_EXIT_USAGE;
    if (o[M_SCAN].seen) c->scan_layers = true;
    *style = LLAMA_LINEN_TOP;
    if (o[M_STYLE].seen) {
        if (!strcmp(o[M_STYLE].value, "nnx")) *style = LLAMA_NNX_TOP;
        else if (strcmp(o[M_STYLE].value, "linen")) return cli_error("--style: '%s' is not linen or nnx", o[M_STYLE].value);
    }
    if (llama_config_check(c) != LX_OK) return cli_lib_error();
    return 0;
}

/* Print bytes as text: printable ASCII, newlines and tabs as they are, other bytes as \xHH. */
static void print_text(FILE *f, const int32_t *t, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int c = t[i];
        if (c == '\n' || c == '\t' || (c >= 32 && c < 127)) fputc(c, f);
        else fprintf(f, "\\x%02x", c & 0xff);
    }
}

/* The text generated from `prompt` by a decode copy of `m`'s parameters, printed after the prompt.
 * The decode model holds max(m's max_target_length, min_len) positions (the length sizes no
 * parameter: a model trained on short windows can sample longer). Prints nothing on failure: the
 * caller reports the library's error once. */
static lx_status sample_text(FILE *f, llama_model *m, const char *prompt, int64_t ntok, const lx_sampling *s, lx_key key,
                             int64_t min_len) {
    size_t mark = lx_pool_open();
    llama_config c = *llama_model_config(m);
    c.cache_batch = 1;
    c.scan_layers = false; /* the KV cache runs per layer: load_params unstacks scanned params */
    if (c.max_target_length < min_len) c.max_target_length = min_len;
    llama_model *dec = NULL;
    lx_tree *p = NULL;
    lx_status st = LX_OK;
    lx_array *tok = lm_encode(prompt, c.vocab_size), *gen = NULL;
    if (!tok) st = lx_last_status();
    if (st == LX_OK) st = llama_model_new(&c, llama_model_style(m), 0, &dec);
    if (st == LX_OK) st = llama_model_params(m, &p);
    if (st == LX_OK) st = llama_model_load_params(dec, p);
    if (st == LX_OK && !(gen = llama_generate(dec, tok, ntok, s, key))) st = lx_last_status();
    if (st == LX_OK) {
        print_text(f, lx_i32(tok), tok->size);
        print_text(f, lx_i32(gen), gen->size);
        fputc('\n', f);
    }
    lx_tree_release(p);
    llama_model_free(dec);
    lx_pool_close(mark);
    return st;
}

/* The text sample_text prints, as a malloc'd string (NULL + the library's error on failure). */
static char *sample_string(llama_model *m, const char *prompt, int64_t ntok, const lx_sampling *s, lx_key key,
                           int64_t min_len) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        lx_fail(LX_ERR_NO_MEMORY, "sample: out of memory");
        return NULL;
    }
    lx_status st = sample_text(f, m, prompt, ntok, s, key, min_len);
    fclose(f);
    if (st != LX_OK) {
        free(buf);
        return NULL;
    }
    if (len > 0 && buf[len - 1] == '\n') buf[len - 1] = '\0';
    return buf;
}

/* The length of `prompt` as tokens of a `vocab` model (the library's error, unprinted, when it is
 * empty or holds a byte outside the vocabulary: -1). */
static int64_t prompt_tokens(const char *prompt, int64_t vocab) {
    size_t mark = lx_pool_open();
    lx_array *t = lm_encode(prompt, vocab);
    int64_t n = t ? t->size : -1;
    lx_pool_close(mark);
    return n;
}

/* A path the user gave to read (a data file or directory, a checkpoint): one that does not exist
 * or cannot be opened is bad input (exit 2), found before anything is loaded or trained. */
static int check_readable(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return cli_error("%s: cannot read: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return cli_error("%s: cannot read: %s", path, strerror(errno));
        closedir(d);
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return cli_error("%s: cannot read: %s", path, strerror(errno));
    fclose(f);
    return 0;
}

/* Load a checkpoint file, or the latest step of a checkpoint directory; `name` gets the file. */
static lx_status load_checkpoint(const char *path, lx_tree **out, char *name, size_t cap) {
    struct stat sb;
    if (stat(path, &sb) != 0) return lx_fail(LX_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    snprintf(name, cap, "%s", path);
    if (!S_ISDIR(sb.st_mode)) return lx_ckpt_load(path, out);
    lx_ckpt_manager mgr;
    LX_TRY(lx_ckpt_manager_open(path, 0, 0, LX_CKPT_MSGPACK, &mgr));
    int64_t step = -1;
    lx_status st = lx_ckpt_manager_restore(&mgr, -1, out, &step);
    if (st == LX_OK) snprintf(name, cap, "%s/checkpoint_%lld.msgpack", path, (long long)step);
    else if (st == LX_ERR_NOT_FOUND) st = lx_fail(LX_ERR_NOT_FOUND, "%s: no checkpoint in this directory", path);
    lx_ckpt_manager_close(&mgr);
    return st;
}

/* Prefix the last error's message with `what` ("PATH: ..."). */
static void error_prefix(const char *what) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", lx_last_error());
    lx_fail(lx_last_status(), "%s: %s", what, msg);
}

/* ------------------------------------------------------------------ sample */

enum { S_PROMPT = M_N, S_TOKENS, S_TEMP, S_TOPK, S_SEED, S_INIT_SEED, S_N };

static const char SAMPLE_USAGE[] =
    "usage: linnx sample [CHECKPOINT] [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]\n"
    "                    [--seed S] [--init-seed S] [--seq-len L] [model flags]\n"
    "Generates N bytes after the prompt with the KV cache: greedy for --temperature 0, else\n"
    "jax.random.categorical over logits / T (among the top K with --top-k K), the key split once per\n"
    "token. Defaults: --prompt 'The ' --tokens 64 --temperature 0.8 --top-k 0 --seed 0, --seq-len 256.\n"
    "--seq-len is the decoding length: the prompt's bytes + N - 1 must fit it.\n"
    "CHECKPOINT is a train-lm checkpoint file or directory (its latest step); the model's size comes\n"
    "from it (model flags that disagree are an error), not its training length: a model trained on\n"
    "short windows samples over --seq-len positions. Without it the model is randomly initialised\n"
    "with --init-seed (default 0).\n" MODEL_USAGE;

int cmd_sample(int argc, char **argv) {
    cli_opt o[S_N] = {MODEL_OPTS,          CLI_OPT("prompt"), CLI_OPT("tokens"),   CLI_OPT("temperature"),
                      CLI_OPT("top-k"),    CLI_OPT("seed"),   CLI_OPT("init-seed")};
    const char *pos[2];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, S_N, pos, 1, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(SAMPLE_USAGE, stdout);
        return 0;
    }
    keep_heap();
    int64_t ntok = 64, topk = 0, seed = 0, init_seed = 0;
    double temp = 0.8;
    if ((o[S_TOKENS].seen && cli_i64("tokens", o[S_TOKENS].value, &ntok)) ||
        (o[S_TEMP].seen && cli_f64("temperature", o[S_TEMP].value, &temp)) ||
        (o[S_TOPK].seen && cli_i64("top-k", o[S_TOPK].value, &topk)) ||
        (o[S_SEED].seen && cli_i64("seed", o[S_SEED].value, &seed)) ||
        (o[S_INIT_SEED].seen && cli_i64("init-seed", o[S_INIT_SEED].value, &init_seed)))
        return CLI_EXIT_USAGE;
    lx_tree *ck = NULL;
    char name[4096];
    llama_config base = llama_config_tiny(), c;
    if (npos == 1) {
        if (check_readable(pos[0])) return CLI_EXIT_USAGE;
        if (load_checkpoint(pos[0], &ck, name, sizeof name) != LX_OK || llama_checkpoint_config(ck, &base) != LX_OK) {
            lx_tree_release(ck);
            return cli_lib_error();
        }
    }
    /* the checkpoint gives the model's size; the decoding length is this command's --seq-len
     * (default 256), not the training length: max_target_length sizes no parameter */
    base.max_target_length = 256;
    llama_style style;
    if (model_flags(o, &base, &c, &style)) {
        lx_tree_release(ck);
        return CLI_EXIT_USAGE;
    }
    const char *prompt = o[S_PROMPT].seen ? o[S_PROMPT].value : "The ";
    if (ntok < 1) {
        lx_tree_release(ck);
        return cli_error("--tokens: %lld is not a positive count", (long long)ntok);
    }
    int64_t plen = prompt_tokens(prompt, c.vocab_size);
    if (plen < 0) {
        lx_tree_release(ck);
        return cli_lib_error();
    }
    /* the prompt fills positions 0..plen-1 and every new token but the last is fed back (compared
     * without overflow: --tokens may be any int64) */
    if (ntok - 1 > c.max_target_length - plen) {
        if (ntok > INT64_MAX - plen) {
            lx_tree_release(ck);
            return cli_error("sample: --tokens %lld is more than any --seq-len holds", (long long)ntok);
        }
        lx_tree_release(ck);
        return cli_error("sample: a prompt of %lld bytes and --tokens %lld need --seq-len %lld or more (it is %lld)",
                         (long long)plen, (long long)ntok, (long long)(plen + ntok - 1), (long long)c.max_target_length);
    }
    if (!(temp >= 0) || isinf(temp)) {
        lx_tree_release(ck);
        return cli_error("--temperature: %g is not a finite number >= 0 (0 = greedy)", cli_num(temp));
    }
    if (topk < 0 || topk > c.vocab_size) {
        lx_tree_release(ck);
        return cli_error("--top-k: %lld is outside 0..%lld (0 = all)", (long long)topk, (long long)c.vocab_size);
    }
    if (check_model_arrays(&c, 1, plen, c.max_target_length)) {
        lx_tree_release(ck);
        return CLI_EXIT_USAGE;
    }
    llama_model *m = NULL;
    if (llama_model_new(&c, style, init_seed, &m) != LX_OK || (ck && llama_model_load_checkpoint(m, ck) != LX_OK)) {
        if (ck) error_prefix(name);
        llama_model_free(m);
        lx_tree_release(ck);
        return cli_lib_error();
    }
    lx_tree_release(ck);
    lx_sampling s = {temp, topk};
    int rc = sample_text(stdout, m, prompt, ntok, &s, lx_key_from_seed(seed), 0) == LX_OK ? 0 : cli_lib_error();
    if (!rc) rc = cli_stdout_done();
    llama_model_free(m);
    lx_pool_drain();
    return rc;
}

/* ------------------------------------------------------------------ train-lm */

enum { T_STEPS = M_N, T_BATCH, T_LR, T_WARMUP, T_SEED, T_DATA, T_HELDOUT, T_HELDOUT_FRAC, T_CKPT, T_RESUME,
       T_EVAL_EVERY, T_EVAL_BATCHES, T_SVG, T_PROMPT, T_SAMPLE_TOKENS, T_STOP_AFTER, T_N };

static const char TRAIN_USAGE[] =
    "usage: linnx train-lm [--steps N] [--batch B] [--seq-len L] [--lr LR] [--warmup-frac F] [--seed S]\n"
    "                      [--data PATH,PATH...] [--heldout FILE] [--heldout-fraction F]\n"
    "                      [--checkpoint-dir DIR] [--resume] [--stop-after N] [--eval-every N]\n"
    "                      [--eval-batches N] [--svg PATH] [--prompt TEXT] [--sample-tokens N] [model flags]\n"
    "Trains the showcase decoder on bytes of text (default: /usr/share/common-licenses, the last 10%\n"
    "of GPL-3 held out): next-token cross-entropy, its gradient by value_and_grad, then MaxText's\n"
    "optimizer scaled to the tiny model: clip_by_global_norm(1.0), adamw(b1 0.9, b2 0.95, eps 1e-8,\n"
    "weight_decay 0.1) over a linear warmup (--warmup-frac of the steps) and a cosine decay to 0.1 lr.\n"
    "Prints the byte-unigram entropy of the held-out text and the held-out loss before training and\n"
    "every --eval-every steps, a progress bar (plain lines when piped or under an MPI launcher such as\n"
    "mpirun; LINNX_PROGRESS=tty forces the bar), samples before and after, and writes the loss curve\n"
    "as SVG (--svg, default DIR/loss.svg or ./loss.svg).\n"
    "The held-out loss is the mean over the first --eval-batches x --batch windows of seq-len + 1\n"
    "bytes; when those are not all of the held-out text, the output says so and the entropy it is\n"
    "compared with is that of the same bytes. The samples decode over prompt + --sample-tokens\n"
    "positions (more than --seq-len if need be: the length sizes no parameter).\n"
    "With --checkpoint-dir the final state (params, optimizer state, step, config, loss history) is\n"
    "saved as DIR/checkpoint_<step>.msgpack (MaxText's Linen train-state layout: docs/showcase.md)\n"
    "before anything else at the end, then reloaded into a fresh model and sampled again.\n"
    "Input and output paths (--data, --heldout, --svg, --checkpoint-dir), the prompt and the sizes\n"
    "(every large array against --max-array-bytes) are checked before anything runs.\n"
    "--resume continues from DIR's latest checkpoint with the same losses as an uninterrupted run;\n"
    "--stop-after N stops after N steps of this run (saving), as an interruption would.\n"
    "Defaults: --steps 0 --batch 16 --seq-len 128 --lr 3e-3 --warmup-frac 0.1 --seed 0\n"
    "--eval-every 50 --eval-batches 4 --sample-tokens 80 --prompt 'This License '.\n" MODEL_USAGE;

/* Mean loss over the first `nb` batches of `batch` held-out windows of len + 1 bytes, into *out (a
 * NaN there is a value: a diverged model; a failure is the library's error). */
static lx_status heldout_loss(llama_model *m, const lm_data *d, int64_t batch, int64_t len, int64_t nb, double *out) {
    int64_t windows = lm_window_count(d->nheldout, len);
    if (windows < 1) return lx_fail(LX_ERR_INVALID_ARGUMENT, "train-lm: no whole held-out window of %lld bytes", (long long)len);
    double tot = 0;
    int64_t used = 0;
    for (int64_t b = 0; b < nb && b * batch < windows; b++) {
        size_t mark = lx_pool_open();
        int64_t n = windows - b * batch < batch ? windows - b * batch : batch;
        lx_array *loss = llama_model_loss(m, lm_window_batch(d->heldout, d->nheldout, b * batch, n, len));
        if (loss) {
            tot += lx_f32(loss)[0] * (double)n;
            used += n;
        }
        lx_pool_close(mark);
        if (!loss) return lx_last_status();
    }
    *out = tot / (double)used;
    return LX_OK;
}

static int split_paths(char *s, const char **out, int cap, int *n) {
    *n = 0;
    for (char *p = s; p && *p;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (*p) {
            if (*n == cap) return cli_error("--data: at most %d paths", cap);
            out[(*n)++] = p;
        }
        p = comma ? comma + 1 : NULL;
    }
    if (*n == 0) return cli_error("--data: no paths");
    return 0;
}

/* The loss history kept in a checkpoint: history/{train_loss, eval_step, eval_loss} (float32). */
typedef struct history {
    double *xs, *ys, *ex, *ey;
    int64_t nt, ne, cap_t, cap_e;
} history;

static lx_array *f32_of(const double *v, int64_t n) {
    lx_array *a = lx_array_new(LX_F32, 1, (int64_t[]){n});
    for (int64_t i = 0; a && i < n; i++) lx_f32(a)[i] = (float)v[i];
    return a;
}

/* The run's flags that decide its losses beyond the model's config (checked by --resume): the
 * schedule's (steps, lr, warmup) and the data stream's (batch, seed). */
typedef struct run_flags {
    int64_t steps, batch, seed;
    double lr, warmup;
} run_flags;

static lx_status history_put(const history *h, lx_tree *root, const run_flags *rf) {
    lx_tree *t = lx_tree_new(), *r = lx_tree_new();
    lx_status sr = r ? lx_tree_set(r, "steps", lx_int_v(rf->steps)) : lx_last_status();
    if (sr == LX_OK) sr = lx_tree_set(r, "learning_rate", lx_float_v(rf->lr));
    if (sr == LX_OK) sr = lx_tree_set(r, "warmup_fraction", lx_float_v(rf->warmup));
    if (sr == LX_OK) sr = lx_tree_set(r, "batch", lx_int_v(rf->batch));
    if (sr == LX_OK) sr = lx_tree_set(r, "seed", lx_int_v(rf->seed));
    if (sr == LX_OK) sr = lx_tree_set(root, "run", lx_tree_v(r));
    lx_tree_release(r);
    if (sr != LX_OK) {
        lx_tree_release(t);
        return sr;
    }
    lx_array *a[3] = {f32_of(h->ys, h->nt), f32_of(h->ex, h->ne), f32_of(h->ey, h->ne)};
    static const char *names[3] = {"train_loss", "eval_step", "eval_loss"};
    lx_status st = t && a[0] && a[1] && a[2] ? LX_OK : lx_last_status();
    for (int i = 0; st == LX_OK && i < 3; i++) st = lx_tree_set(t, names[i], lx_array_v(a[i]));
    if (st == LX_OK) st = lx_tree_set(root, "history", lx_tree_v(t));
    for (int i = 0; i < 3; i++) lx_release(a[i]);
    lx_tree_release(t);
    return st;
}

/* Take the history up to `step` from a checkpoint (absent: the curve starts at `step`). */
static void history_get(history *h, const lx_tree *root, int64_t step) {
    const lx_value *hv = lx_tree_get(root, "history");
    if (!hv || hv->kind != LX_V_TREE) return;
    const lx_value *t = lx_tree_get(hv->u.tree, "train_loss"), *es = lx_tree_get(hv->u.tree, "eval_step"),
                   *el = lx_tree_get(hv->u.tree, "eval_loss");
    if (!t || !es || !el || t->kind != LX_V_ARRAY || es->kind != LX_V_ARRAY || el->kind != LX_V_ARRAY) return;
    lx_array *ta = t->u.array, *ea = es->u.array, *la = el->u.array;
    if (ta->dtype != LX_F32 || ea->dtype != LX_F32 || la->dtype != LX_F32 || ea->size != la->size) return;
    for (int64_t i = 0; i < ta->size && i < step && i < h->cap_t; i++) {
        h->xs[i] = (double)(i + 1);
        h->ys[i] = lx_f32(ta)[i];
        h->nt = i + 1;
    }
    for (int64_t i = 0; i < ea->size && i < h->cap_e && lx_f32(ea)[i] <= (float)step; i++) {
        h->ex[i] = lx_f32(ea)[i];
        h->ey[i] = lx_f32(la)[i];
        h->ne = i + 1;
    }
}

static void print_samples(FILE *f, const char *when, char *const texts[2]) {
    fprintf(f, "sample %s (greedy):\n  %s\nsample %s (temperature 0.8):\n  %s\n", when, texts[0], when, texts[1]);
}

/* Greedy and temperature-0.8 samples (malloc'd strings in out[0..2)), decoded over at least
 * `min_len` positions. */
static int two_samples(llama_model *m, const char *prompt, int64_t ntok, lx_key key, int64_t min_len, char *out[2]) {
    lx_sampling greedy = {0, 0}, warm = {0.8, 0};
    out[0] = sample_string(m, prompt, ntok, &greedy, key, min_len);
    out[1] = out[0] ? sample_string(m, prompt, ntok, &warm, key, min_len) : NULL;
    if (!out[1]) {
        free(out[0]);
        out[0] = NULL;
        return cli_lib_error();
    }
    return 0;
}

static bool lm_checked; /* this rank has joined the start-of-run check (under mpirun) */
/* Under mpirun, after the start-of-run check passed: lm_live, the ranks still move together, so a
 * rank's own failure outside the training step's collectives (the held-out evaluations, the
 * samples before training, a batch it could not cut) meets the others in a status check and they
 * all stop at once naming it (a failure in the step's update does so in the step's own second
 * check). lm_alone: this rank failed where the others may still wait for it in a collective
 * (averaging inside llama_trainer_step: LLAMA_STEP_MIDWAY, or a check that timed out):
 * it ends without MPI_Finalize, so that mpirun ends the job at once instead of the others waiting
 * out the deadline (and this rank, in MPI_Finalize, for them). */
static bool lm_live, lm_alone;

/* What the ranks compare before the first step (cli_dist_same): a rank started with another seed,
 * size, schedule, data or checkpoint would otherwise train silently to a mixture, or wait out the
 * deadline in a collective the others never make (another --steps or --eval-every). */
enum { LF_MODEL, LF_BATCH, LF_SEED, LF_STEPS, LF_LR, LF_STOP, LF_EVAL, LF_DATA, LF_START, LF_STATE, LF_N };
static const char *const LF_NAMES[LF_N] = {
    "the model flags (--vocab ... --seq-len, --style, --scan-layers)", "--batch", "--seed", "--steps",
    "--lr/--warmup-frac", "--stop-after", "--eval-every/--eval-batches",
    "the data (the training and held-out bytes: --data, --heldout, --heldout-fraction)", "the resumed step (--resume)",
    "the training state it starts from (parameters and optimizer state)"};

/* One status check of every rank under mpirun (lm_live): rc is this rank's exit status so far.
 * Returns rc when non-zero, else 0 or, when another rank failed, the exit for "distributed: rank
 * R failed at step S" (or "before the first step"). Every rank that reaches it calls it. */
static int lm_dist_check(int rc) {
    if (!lm_live) return rc;
    lx_status st = lx_dist_check(rc ? LX_ERR_INTERNAL : LX_OK);
    lm_live = rc == 0 && st == LX_OK;
    if (st == LX_ERR_IO) lm_alone = true; /* timed out: a peer may be stuck in a collective */
    if (rc) return rc;
    return st != LX_OK ? cli_lib_error() : 0;
}

/* The command after MPI started (rank, nranks: 0 and 1 without mpirun). */
static int train_lm(int argc, char **argv, int rank, int nranks) {
    cli_opt o[T_N] = {MODEL_OPTS,
                      CLI_OPT("steps"),         CLI_OPT("batch"),          CLI_OPT("lr"),
                      CLI_OPT("warmup-frac"),   CLI_OPT("seed"),           CLI_OPT("data"),
                      CLI_OPT("heldout"),       CLI_OPT("heldout-fraction"), CLI_OPT("checkpoint-dir"),
                      CLI_FLAG("resume"),       CLI_OPT("eval-every"),     CLI_OPT("eval-batches"),
                      CLI_OPT("svg"),           CLI_OPT("prompt"),         CLI_OPT("sample-tokens"),
                      CLI_OPT("stop-after")};
    const char *pos[1];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, T_N, pos, 0, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(TRAIN_USAGE, stdout);
        return 0;
    }
    keep_heap();
    llama_config base = llama_config_tiny(), c;
    base.max_target_length = 128;
    llama_style style;
    if (model_flags(o, &base, &c, &style)) return CLI_EXIT_USAGE;
    int64_t steps = 0, batch = 16, seed = 0, eval_every = 50, eval_batches = 4, sample_tokens = 80, stop_after = -1;
    double lr = 3e-3, warmup = 0.1, frac = 0.1;
    if ((o[T_STEPS].seen && cli_i64("steps", o[T_STEPS].value, &steps)) ||
        (o[T_BATCH].seen && cli_i64("batch", o[T_BATCH].value, &batch)) ||
        (o[T_SEED].seen && cli_i64("seed", o[T_SEED].value, &seed)) ||
        (o[T_EVAL_EVERY].seen && cli_i64("eval-every", o[T_EVAL_EVERY].value, &eval_every)) ||
        (o[T_EVAL_BATCHES].seen && cli_i64("eval-batches", o[T_EVAL_BATCHES].value, &eval_batches)) ||
        (o[T_SAMPLE_TOKENS].seen && cli_i64("sample-tokens", o[T_SAMPLE_TOKENS].value, &sample_tokens)) ||
        (o[T_STOP_AFTER].seen && cli_i64("stop-after", o[T_STOP_AFTER].value, &stop_after)) ||
        (o[T_LR].seen && cli_f64("lr", o[T_LR].value, &lr)) ||
        (o[T_WARMUP].seen && cli_f64("warmup-frac", o[T_WARMUP].value, &warmup)) ||
        (o[T_HELDOUT_FRAC].seen && cli_f64("heldout-fraction", o[T_HELDOUT_FRAC].value, &frac)))
        return CLI_EXIT_USAGE;
    if (steps < 0 || steps == 1) return cli_error("--steps: %lld: use 0 (baselines only) or at least 2", (long long)steps);
    if (batch < 1 || batch > 4096) return cli_error("--batch: %lld is outside 1..4096", (long long)batch);
    if (eval_every < 1 || eval_batches < 1 || sample_tokens < 0)
        return cli_error("--eval-every and --eval-batches must be positive, --sample-tokens not negative");
    if (o[T_STOP_AFTER].seen && stop_after < 1) return cli_error("--stop-after: %lld is not a positive count", (long long)stop_after);
    if (!(lr > 0) || isinf(lr) || !(warmup >= 0 && warmup < 1))
        return cli_error("--lr must be a finite positive number and --warmup-frac in [0, 1)");
    if (!(frac > 0 && frac < 1)) return cli_error("--heldout-fraction: %g is not in (0, 1)", cli_num(frac));
    if (check_model_arrays(&c, batch, c.max_target_length, c.max_target_length)) return CLI_EXIT_USAGE;
    /* under mpirun: this rank's rows of every batch */
    int64_t row0 = 0, rows = batch;
    if (nranks > 1 && lx_dist_shard_range(batch, rank, nranks, &row0, &rows) != LX_OK) return cli_lib_error();
    const char *ckpt = o[T_CKPT].seen ? o[T_CKPT].value : NULL;
    if (o[T_RESUME].seen && !ckpt) return cli_error("--resume needs --checkpoint-dir DIR (the run to continue)");
    if (o[T_RESUME].seen && steps == 0) return cli_error("--resume needs --steps (the run's total, as when it started)");
    int64_t len = c.max_target_length; /* inputs of seq-len tokens, targets shifted by one */
    /* the samples: the prompt is checked now, and they decode over prompt + tokens positions even
     * when that is longer than the training length */
    const char *prompt = o[T_PROMPT].seen ? o[T_PROMPT].value : "This License ";
    int64_t sample_len = 0;
    if (sample_tokens > 0) {
        int64_t plen = prompt_tokens(prompt, c.vocab_size);
        if (plen < 0) {
            error_prefix("--prompt");
            return cli_lib_error();
        }
        /* the decode model's length: the config's limits and --max-array-bytes apply to it too */
        llama_config dc = c;
        dc.scan_layers = false;
        if (sample_tokens > (1 << 24))
            return cli_error("--sample-tokens: %lld is more than a model's 16777216 positions", (long long)sample_tokens);
        dc.max_target_length = plen + sample_tokens - 1;
        if (dc.max_target_length < len) dc.max_target_length = len;
        if (llama_config_check(&dc) != LX_OK) {
            error_prefix("--prompt and --sample-tokens");
            return cli_lib_error();
        }
        if (check_model_arrays(&dc, 1, plen, dc.max_target_length)) return CLI_EXIT_USAGE;
        sample_len = dc.max_target_length;
    }
    /* every output path is checked before any training: a typo costs no work */
    char svg_buf[4096], svg_path[4096] = ""; /* svg_path: the file written, where --svg's symbolic links end */
    const char *svg = o[T_SVG].seen ? o[T_SVG].value : NULL;
    if (svg && rank == 0 && cli_check_output("--svg", svg, svg_path, sizeof svg_path)) return CLI_EXIT_USAGE;
    if (!svg) {
        snprintf(svg_buf, sizeof svg_buf, "%s/loss.svg", ckpt ? ckpt : ".");
        svg = svg_buf;
    }
    struct stat sb;
    if (ckpt && stat(ckpt, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return cli_error("--checkpoint-dir %s: not a directory", ckpt);

    /* data: every path the user named must be readable (bad input otherwise, exit 2) */
    char data_buf[8192];
    snprintf(data_buf, sizeof data_buf, "%s", o[T_DATA].seen ? o[T_DATA].value : "/usr/share/common-licenses");
    const char *data_desc = o[T_DATA].seen ? o[T_DATA].value : "/usr/share/common-licenses";
    const char *paths[64];
    int npaths;
    if (split_paths(data_buf, paths, 64, &npaths)) return CLI_EXIT_USAGE;
    const char *held = o[T_HELDOUT].seen ? o[T_HELDOUT].value
                       : o[T_DATA].seen  ? NULL
                                         : "/usr/share/common-licenses/GPL-3";
    if (!held) return cli_error("train-lm: --heldout FILE is required with --data (one of the data files)");
    for (int i = 0; i < npaths; i++)
        if (check_readable(paths[i])) return CLI_EXIT_USAGE;
    if (check_readable(held)) return CLI_EXIT_USAGE;
    lm_data d;
    if (lm_data_load(npaths, paths, held, frac, &d) != LX_OK) return cli_lib_error();
    if (lm_data_check_vocab(&d, c.vocab_size) != LX_OK) {
        lm_data_free(&d);
        return cli_lib_error();
    }
    if (d.ntrain < len + 1 || lm_window_count(d.nheldout, len + 1) < 1) {
        int rc0 = cli_error("train-lm: --seq-len %lld needs at least %lld bytes of training and of held-out text "
                            "(have %lld and %lld)",
                            (long long)len, (long long)(len + 1), (long long)d.ntrain, (long long)d.nheldout);
        lm_data_free(&d);
        return rc0;
    }

    /* the checkpoint directory: a fresh run never writes over checkpoints; --resume loads the latest */
    lx_ckpt_manager mgr = {0};
    bool have_mgr = false;
    lx_tree *resume = NULL;
    int64_t start = 0;
    char resume_name[4096] = "";
    if (ckpt) {
        int64_t *have = NULL;
        size_t nhave = 0;
        if (lx_ckpt_manager_open(ckpt, 3, 0, LX_CKPT_MSGPACK, &mgr) != LX_OK) {
            /* the directory is the user's: one that cannot be made is bad input */
            lx_status so = lx_last_status();
            cli_lib_error();
            lm_data_free(&d);
            return so == LX_ERR_NO_MEMORY ? CLI_EXIT_FAILURE : CLI_EXIT_USAGE;
        }
        have_mgr = true;
        lx_status st = lx_ckpt_manager_steps(&mgr, &have, &nhave);
        int64_t latest = nhave ? have[nhave - 1] : -1;
        free(have);
        int rc0 = 0;
        if (st != LX_OK) rc0 = cli_lib_error();
        else if (!o[T_RESUME].seen && latest >= 0)
            rc0 = cli_error("train-lm: %s already holds checkpoints (latest step %lld); pass --resume to continue "
                            "that run, or choose another --checkpoint-dir (nothing was written)",
                            ckpt, (long long)latest);
        else if (o[T_RESUME].seen && latest < 0)
            rc0 = cli_error("train-lm: --resume: %s holds no checkpoint to continue", ckpt);
        else if (rank == 0 && steps > 0 && cli_check_output_dir("--checkpoint-dir", ckpt))
            rc0 = CLI_EXIT_USAGE;
        else if (rank == 0 && !o[T_SVG].seen && cli_check_output("--svg", svg, svg_path, sizeof svg_path))
            rc0 = CLI_EXIT_USAGE;
        else if (o[T_RESUME].seen) {
            snprintf(resume_name, sizeof resume_name, "%s/checkpoint_%lld.msgpack", ckpt, (long long)latest);
            if (lx_ckpt_manager_restore(&mgr, latest, &resume, &start) != LX_OK) rc0 = cli_lib_error();
            else if (start > steps)
                rc0 = cli_error("train-lm: --resume: %s is at step %lld, beyond --steps %lld", resume_name,
                                (long long)start, (long long)steps);
        }
        if (rc0) {
            lx_tree_release(resume);
            lx_ckpt_manager_close(&mgr);
            lm_data_free(&d);
            return rc0;
        }
    } else if (rank == 0 && !o[T_SVG].seen && cli_check_output("--svg", svg, svg_path, sizeof svg_path)) {
        lm_data_free(&d);
        return CLI_EXIT_USAGE;
    }

    double entropy = lm_unigram_entropy(d.heldout, d.nheldout);
    printf("data: %d files, %lld training bytes, %lld held-out bytes (the last %g of %s)\n", d.nfiles,
           (long long)d.ntrain, (long long)d.nheldout, frac, held);
    printf("byte-unigram entropy of the held-out text: %.4f nats (%.3f bits/byte)\n", entropy, entropy / log(2.0));
    /* the held-out evaluations take the first --eval-batches x --batch windows: when those are not
     * all of the held-out text, the baseline they are compared with is the entropy of the same bytes */
    int64_t hwin = lm_window_count(d.nheldout, len + 1);
    int64_t ewin = eval_batches >= (hwin + batch - 1) / batch ? hwin : eval_batches * batch;
    double eval_entropy = entropy;
    if (ewin < hwin) {
        eval_entropy = lm_unigram_entropy(d.heldout, ewin * (len + 1));
        printf("held-out evaluations: the first %lld of %lld windows of %lld bytes (--eval-batches %lld x --batch %lld); "
               "byte-unigram entropy of those bytes: %.4f nats\n",
               (long long)ewin, (long long)hwin, (long long)(len + 1), (long long)eval_batches, (long long)batch,
               eval_entropy);
    }

    /* model, optimizer */
    llama_model *m = NULL;
    llama_trainer *tr = NULL;
    llama_train_opts to = LLAMA_TRAIN_DEFAULTS;
    to.steps = steps;
    to.learning_rate = lr;
    to.warmup_fraction = warmup;
    int rc = 0;
    if (llama_model_new(&c, style, seed, &m) != LX_OK || (steps > 0 && llama_trainer_new(m, &to, &tr) != LX_OK))
        rc = cli_lib_error();
    if (!rc && resume && llama_trainer_load_state(tr, resume) != LX_OK) {
        error_prefix(resume_name);
        rc = cli_lib_error();
    }
    if (!rc && resume) {
        /* the schedule depends on the run's length, peak and warmup: a resume must repeat them */
        const lx_value *run = lx_tree_get(resume, "run");
        const lx_value *rs = run && run->kind == LX_V_TREE ? lx_tree_get(run->u.tree, "steps") : NULL;
        const lx_value *rl = run && run->kind == LX_V_TREE ? lx_tree_get(run->u.tree, "learning_rate") : NULL;
        const lx_value *rw = run && run->kind == LX_V_TREE ? lx_tree_get(run->u.tree, "warmup_fraction") : NULL;
        /* so does the data stream on the batch size and the seed (absent in earlier checkpoints) */
        const lx_value *rb = run && run->kind == LX_V_TREE ? lx_tree_get(run->u.tree, "batch") : NULL;
        const lx_value *rd = run && run->kind == LX_V_TREE ? lx_tree_get(run->u.tree, "seed") : NULL;
        int64_t was_batch = rb && rb->kind == LX_V_INT ? rb->u.i : batch, was_seed = rd && rd->kind == LX_V_INT ? rd->u.i : seed;
        if (rs && rs->kind == LX_V_INT && rs->u.i != steps)
            rc = cli_error("train-lm: --resume: the run in %s was started with --steps %lld (its schedule depends on it), "
                           "not %lld", ckpt, (long long)rs->u.i, (long long)steps);
        else if ((rl && rl->kind == LX_V_FLOAT && rl->u.f != lr) || (rw && rw->kind == LX_V_FLOAT && rw->u.f != warmup))
            rc = cli_error("train-lm: --resume: the run in %s was started with --lr %g --warmup-frac %g, not %g and %g",
                           ckpt, rl && rl->kind == LX_V_FLOAT ? rl->u.f : lr, rw && rw->kind == LX_V_FLOAT ? rw->u.f : warmup,
                           lr, warmup);
        else if (was_batch != batch || was_seed != seed)
            rc = cli_error("train-lm: --resume: the run in %s was started with --batch %lld --seed %lld (its data stream "
                           "depends on them), not %lld and %lld",
                           ckpt, (long long)was_batch, (long long)was_seed, (long long)batch, (long long)seed);
    }
    if (!rc) {
        printf("model: %s top, %lld parameters (emb %lld, %lld layers, %lld/%lld heads of %lld, mlp %lld, seq %lld)\n",
               style == LLAMA_LINEN_TOP ? "Linen" : "NNX", (long long)llama_param_count(&c), (long long)c.emb_dim,
               (long long)c.num_decoder_layers, (long long)c.num_query_heads, (long long)c.num_kv_heads,
               (long long)c.head_dim, (long long)c.mlp_dim, (long long)len);
        printf("training: %lld steps of %lld x %lld tokens, adamw(b2 0.95, wd 0.1) peak lr %g, warmup %lld steps then "
               "cosine to %g, clip_by_global_norm 1.0, seed %lld\n",
               (long long)steps, (long long)batch, (long long)len, lr, (long long)((double)steps * warmup), lr * 0.1,
               (long long)seed);
        if (resume) printf("resumed from %s at step %lld\n", resume_name, (long long)start);
        rc = cli_stdout_done(); /* found before training, not after it */
    }
    /* under mpirun: every rank's setup, good or not, meets the others' here (a failed one returned
     * earlier meets them in cmd_train_lm), before the first evaluation and step */
    if (nranks > 1) {
        uint64_t hf[LF_N] = {0};
        if (!rc) {
            const llama_config *k = &c;
            int64_t mi[] = {k->vocab_size, k->emb_dim, k->num_query_heads, k->num_kv_heads, k->head_dim, k->mlp_dim,
                            k->num_decoder_layers, k->max_target_length, k->cache_batch, k->scan_layers, (int64_t)style};
            double md[] = {k->normalization_layer_epsilon, k->rope_min_timescale, k->rope_max_timescale};
            hf[LF_MODEL] = cli_fnv(cli_fnv(CLI_FNV0, mi, sizeof mi), md, sizeof md);
            hf[LF_BATCH] = cli_fnv(CLI_FNV0, &batch, sizeof batch);
            hf[LF_SEED] = cli_fnv(CLI_FNV0, &seed, sizeof seed);
            hf[LF_STEPS] = cli_fnv(CLI_FNV0, &steps, sizeof steps);
            hf[LF_LR] = cli_fnv(cli_fnv(CLI_FNV0, &lr, sizeof lr), &warmup, sizeof warmup);
            hf[LF_STOP] = cli_fnv(CLI_FNV0, &stop_after, sizeof stop_after);
            hf[LF_EVAL] = cli_fnv(cli_fnv(CLI_FNV0, &eval_every, sizeof eval_every), &eval_batches, sizeof eval_batches);
            hf[LF_DATA] = cli_fnv(cli_fnv(cli_fnv(CLI_FNV0, &d.ntrain, sizeof d.ntrain), d.train, (size_t)d.ntrain),
                                  d.heldout, (size_t)d.nheldout);
            hf[LF_START] = cli_fnv(CLI_FNV0, &start, sizeof start);
            lx_tree *ts = NULL;
            if (tr && (llama_trainer_state(tr, &ts) != LX_OK || cli_fnv_tree(ts, &hf[LF_STATE]) != LX_OK))
                rc = cli_lib_error();
            lx_tree_release(ts);
        }
        lm_checked = true;
        rc = cli_dist_setup_check(rc);
        bool mid = false;
        if (!rc) /* every rank ready: do they all start the same run? */
            rc = cli_dist_same(LF_N, hf, LF_NAMES, "give every rank the same flags, data and --checkpoint-dir", rank,
                               nranks, &mid);
        if (mid) lm_alone = true;
        lm_live = rc == 0; /* a failed check: every rank learnt of it there */
    }
    lx_key sample_key = lx_key_fold_in(lx_key_from_seed(seed), 2);
    history h = {0};
    h.cap_t = steps + 1;
    h.cap_e = steps + 2; /* an evaluation at most per step (and the initial one), a resumed history included */
    h.xs = calloc((size_t)h.cap_t, sizeof(double));
    h.ys = calloc((size_t)h.cap_t, sizeof(double));
    h.ex = calloc((size_t)h.cap_e, sizeof(double));
    h.ey = calloc((size_t)h.cap_e, sizeof(double));
    if (!rc && (!h.xs || !h.ys || !h.ex || !h.ey)) rc = cli_oom("train-lm");
    if (!rc && resume) history_get(&h, resume, start);
    double h0 = NAN;
    /* a loss that is not finite stops the run: the chart is still written (it skips such points),
     * no checkpoint is, and the error says where */
    char diverged[160] = "";
    if (!rc) {
        if (heldout_loss(m, &d, batch, len + 1, eval_batches, &h0) != LX_OK) rc = cli_lib_error();
        else if (!isfinite(h0)) snprintf(diverged, sizeof diverged, "the held-out loss is %g at step %lld", cli_num(h0), (long long)start);
        if (rc || diverged[0]) {
            /* nothing to print */
        } else if (!resume) {
            printf("initial held-out loss: %.4f nats\n", h0);
            h.ex[0] = 0;
            h.ey[h.ne++] = h0;
        } else {
            printf("held-out loss at step %lld: %.4f nats\n", (long long)start, h0);
            if (h.ne > 0) h0 = h.ey[0];
        }
    }
    char *before[2] = {NULL, NULL};
    if (!rc && !diverged[0] && sample_tokens > 0) {
        rc = two_samples(m, prompt, sample_tokens, sample_key, sample_len, before);
        if (!rc) print_samples(stdout, resume ? "at the resumed step" : "before training", before);
    }
    rc = lm_dist_check(rc); /* under mpirun: the evaluation and samples above worked on every rank */

    /* the loop */
    lx_key data_key = lx_key_fold_in(lx_key_from_seed(seed), 1);
    int64_t last = steps;
    if (stop_after > 0 && start + stop_after < steps) last = start + stop_after;
    progress pg;
    if (!rc && !diverged[0] && last > start) {
        progress_begin(&pg, stdout, steps, 0);
        pg.start = start;
        for (int64_t s = start + 1; s <= last && !rc && !diverged[0]; s++) {
            size_t mark = lx_pool_open();
            float loss = 0;
            if (nranks > 1) cli_dist_set_step(s); /* in the others' messages if this rank fails, and in its SIGTERM line */
            lx_array *b = lm_random_batch(d.train, d.ntrain, lx_key_fold_in(data_key, (uint32_t)s), batch, len + 1);
            if (b && nranks > 1) b = lx_slice(b, 2, (lx_range[]){LX_RANGE(row0, row0 + rows), LX_RANGE(0, len + 1)});
            if (!b) {
                rc = cli_lib_error();
                rc = lm_dist_check(rc); /* meets the others' check inside their step */
            } else if (llama_trainer_step(tr, b, &loss) != LX_OK) {
                rc = cli_lib_error();
                /* under mpirun: learnt by every rank in one of the step's status checks (after the
                 * gradients, after the update: "distributed: rank R failed at step S" on the
                 * others), so all end together; or this rank failed while averaging, where the
                 * others may wait for its gradients or loss: then it ends alone (lm_alone) */
                llama_step_fault f = llama_trainer_step_fault(tr);
                if (f == LLAMA_STEP_LOCAL) rc = lm_dist_check(rc); /* before any collective: meet their first check */
                else if (lm_live && f == LLAMA_STEP_MIDWAY) lm_alone = true;
                lm_live = false;
            } else {
                h.xs[s - 1] = (double)s;
                h.ys[s - 1] = loss;
                h.nt = s;
                progress_update(&pg, s, loss, batch * len);
                if (!isfinite(loss)) snprintf(diverged, sizeof diverged, "the training loss is %g at step %lld", cli_num(loss), (long long)s);
            }
            lx_pool_close(mark);
            if (!rc && !diverged[0] && (s % eval_every == 0 || s == steps)) {
                double hl = NAN;
                if (heldout_loss(m, &d, batch, len + 1, eval_batches, &hl) != LX_OK) rc = cli_lib_error();
                else if (h.ne < h.cap_e) {
                    h.ex[h.ne] = (double)s;
                    h.ey[h.ne++] = hl;
                    progress_note(&pg, "step %lld: held-out loss %.4f (unigram entropy %.4f)", (long long)s, hl, eval_entropy);
                }
                if (!rc && !isfinite(hl)) snprintf(diverged, sizeof diverged, "the held-out loss is %g at step %lld", cli_num(hl), (long long)s);
            }
            /* under mpirun, the steps that evaluate: the evaluation worked on every rank */
            if (s % eval_every == 0 || s == steps) rc = lm_dist_check(rc);
        }
        progress_end(&pg);
        double el = progress_now() - pg.t0;
        if (!rc && !diverged[0] && el > 0)
            printf("trained %lld steps in %.1f s: %.1f steps/s, %.0f tokens/s\n", (long long)(last - start), el,
                   (double)(last - start) / el, (double)((last - start) * batch * len) / el);
    }
    /* the checkpoint first: nothing that can fail at the end (the chart, the samples) loses the
     * training */
    char ck_path[4096] = "";
    long long ck_size = -1;
    if (!rc && !diverged[0] && have_mgr && last > start && rank == 0) {
        lx_tree *state = NULL;
        snprintf(ck_path, sizeof ck_path, "%s/checkpoint_%lld.msgpack", ckpt, (long long)last);
        if (llama_trainer_state(tr, &state) != LX_OK || history_put(&h, state, &(run_flags){steps, batch, seed, lr, warmup}) != LX_OK ||
            lx_ckpt_manager_save(&mgr, last, state) != LX_OK)
            rc = cli_lib_error();
        lx_tree_release(state);
        if (!rc && stat(ck_path, &sb) == 0) ck_size = (long long)sb.st_size;
    }
    if (!rc && rank == 0) {
        lx_plot_series series[2] = {{"train loss", h.xs, h.ys, h.nt, "#1f77b4"}, {"held-out loss", h.ex, h.ey, h.ne, "#d62728"}};
        char title[600];
        snprintf(title, sizeof title, "linnx train-lm: llama2-style decoder, bytes of %.500s", data_desc);
        lx_plot plot = {.title = title, .xlabel = "step", .ylabel = "cross-entropy (nats per byte)", .has_hline = true,
                        .hline = eval_entropy,
                        .hline_label = ewin < hwin ? "byte-unigram entropy (evaluated held-out bytes)"
                                                   : "byte-unigram entropy (held-out)"};
        int ns = h.nt > 0 ? 2 : 1;
        if (lx_plot_svg(svg_path, &plot, ns, h.nt > 0 ? series : series + 1) != LX_OK)
            rc = cli_write_error("--svg", svg, svg_path);
        else printf("loss curve: %s\n", svg);
    }
    double final = h.ne > 0 ? h.ey[h.ne - 1] : h0;
    if (!rc && !diverged[0]) {
        char part[160] = "";
        if (ewin < hwin)
            snprintf(part, sizeof part, "; both of the first %lld of %lld held-out windows", (long long)ewin, (long long)hwin);
        if (last < steps) printf("stopped after step %lld of %lld (--stop-after)\n", (long long)last, (long long)steps);
        printf("held-out loss: %.4f nats (initial %.4f); byte-unigram entropy %.4f nats: %s by %.4f nats (%.0f%%)%s\n",
               final, h0, eval_entropy, final < eval_entropy ? "below" : "above", fabs(eval_entropy - final),
               100.0 * fabs(eval_entropy - final) / eval_entropy, part);
    }
    char *after[2] = {NULL, NULL};
    /* (rank 0's alone under mpirun: the others' output goes nowhere, and a failure there would end
     * the job while rank 0 still writes) */
    if (!rc && !diverged[0] && last > start && sample_tokens > 0 && rank == 0) {
        rc = two_samples(m, prompt, sample_tokens, sample_key, sample_len, after);
        if (!rc) print_samples(stdout, "after training", after);
    }
    /* a fresh model from the saved checkpoint gives the same samples */
    if (!rc && ck_path[0]) {
        lx_tree *back = NULL;
        printf("checkpoint: %s (%lld bytes)\n", ck_path, ck_size);
        llama_model *fresh = NULL;
        if (lx_ckpt_load(ck_path, &back) != LX_OK || llama_model_new(&c, style, seed + 1, &fresh) != LX_OK ||
            llama_model_load_checkpoint(fresh, back) != LX_OK)
            rc = cli_lib_error();
        if (!rc && sample_tokens > 0) {
            char *again[2] = {NULL, NULL};
            rc = two_samples(fresh, prompt, sample_tokens, sample_key, sample_len, again);
            if (!rc) {
                bool same = !strcmp(again[0], after[0]) && !strcmp(again[1], after[1]);
                printf("reloaded %s into a fresh model: samples %s\n", ck_path, same ? "identical" : "DIFFERENT");
                if (!same) rc = cli_error("train-lm: the reloaded checkpoint samples differently (greedy after reloading: %s)",
                                         again[0]);
            }
            free(again[0]);
            free(again[1]);
        }
        llama_model_free(fresh);
        lx_tree_release(back);
    }
    if (!rc && diverged[0])
        rc = cli_error("train-lm: %s: training diverged (try a lower --lr); no checkpoint was saved", diverged);
    if (!rc) rc = cli_stdout_done();
    for (int i = 0; i < 2; i++) {
        free(before[i]);
        free(after[i]);
    }
    free(h.xs);
    free(h.ys);
    free(h.ex);
    free(h.ey);
    lx_tree_release(resume);
    if (have_mgr) lx_ckpt_manager_close(&mgr);
    llama_trainer_free(tr);
    llama_model_free(m);
    lm_data_free(&d);
    optax_release_buffers();
    lx_pool_drain();
    return rc;
}

int cmd_train_lm(int argc, char **argv) {
    /* under mpirun (a linnx built with MPI): data parallelism, each rank trains on its rows of every
     * batch (the gradients averaged over the ranks); rank 0 alone prints and writes files. MPI
     * starts before anything else can fail, so that every failure of a rank reaches the others */
    int rank, nranks, rc = cli_dist_start("train-lm", &rank, &nranks);
    if (rc) return rc;
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) rc = cli_error("train-lm: rank %d: /dev/null", rank);
    lm_checked = lm_live = lm_alone = false;
    if (!rc) rc = train_lm(argc, argv, rank, nranks);
    /* a rank that failed before the start-of-run check (a bad flag, path or data) still joins it,
     * so the others stop at once ("distributed: rank R failed before the first step") */
    if (nranks > 1 && !lm_checked) {
        int rc1 = cli_dist_setup_check(rc);
        if (!rc) rc = rc1; /* --help on every rank */
    }
    /* after a timeout (LX_ERR_IO), or a failure the others did not learn of in a status check
     * (lm_alone), a peer may be stuck in a collective: exit and let mpirun end the job */
    if (!rc || (lx_last_status() != LX_ERR_IO && !lm_alone)) lx_dist_finalize();
    return rc;
}
