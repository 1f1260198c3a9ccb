/* linnx sample | train-lm: the showcase decoder from the command line (docs/showcase.md).
 *
 * sample: generate text from a prompt with the KV cache (random init until checkpoints land).
 * train-lm: the training run's scaffolding: data (byte-level, held-out split), the model, the
 * baselines (initial held-out loss, byte-unigram entropy of the held-out text), the loop with the
 * progress display, held-out evaluations, the SVG loss curve and samples before/after. The update
 * itself (gradients, adamw, schedule, clipping) and checkpoints are wired in by their own work;
 * until then steps > 0 run only with --dry-run (forward losses, parameters unchanged). */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "linnx/linnx.h"
#include "linnx/llama.h"
#include "linnx/lm_data.h"
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

enum { M_VOCAB, M_EMB, M_LAYERS, M_HEADS, M_KV, M_HEAD_DIM, M_MLP, M_SEQ, M_STYLE, M_N };
#define MODEL_OPTS                                                                                        \
    CLI_OPT("vocab"), CLI_OPT("emb"), CLI_OPT("layers"), CLI_OPT("heads"), CLI_OPT("kv-heads"),           \
        CLI_OPT("head-dim"), CLI_OPT("mlp"), CLI_OPT("seq-len"), CLI_OPT("style")
#define MODEL_USAGE                                                                                       \
    "model: [--vocab 256] [--emb 64] [--layers 2] [--heads 4] [--kv-heads 2] [--head-dim 16] [--mlp 128]\n" \
    "       [--style linen|nnx]   (linen: Linen Transformer over NNX layers via to_linen_class;\n"       \
    "                              nnx: NNX Transformer over ToNNX(Linen Decoder))\n"

static int model_flags(const cli_opt *o, int64_t default_seq, llama_config *c, llama_style *style) {
    *c = llama_config_tiny();
    c->max_target_length = default_seq;
    struct { int i; int64_t *dst; } ints[] = {{M_VOCAB, &c->vocab_size}, {M_EMB, &c->emb_dim},
                                              {M_LAYERS, &c->num_decoder_layers}, {M_HEADS, &c->num_query_heads},
                                              {M_KV, &c->num_kv_heads}, {M_HEAD_DIM, &c->head_dim},
                                              {M_MLP, &c->mlp_dim}, {M_SEQ, &c->max_target_length}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (o[ints[i].i].seen && cli_i64(o[ints[i].i].name, o[ints[i].i].value, ints[i].dst)) return CLI_EXIT_USAGE;
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

/* The text generated from `prompt` by a decode copy of `m`'s parameters, printed after the prompt. */
static int sample_text(FILE *f, llama_model *m, const char *prompt, int64_t ntok, const lx_sampling *s, lx_key key,
                       const char *indent) {
    size_t mark = lx_pool_open();
    llama_config c = *llama_model_config(m);
    c.cache_batch = 1;
    llama_model *dec = NULL;
    lx_tree *p = NULL;
    int rc = 0;
    lx_array *tok = lm_encode(prompt, c.vocab_size), *gen = NULL;
    if (!tok || llama_model_new(&c, llama_model_style(m), 0, &dec) != LX_OK || llama_model_params(m, &p) != LX_OK ||
        llama_model_load_params(dec, p) != LX_OK || !(gen = llama_generate(dec, tok, ntok, s, key))) {
        rc = cli_lib_error();
    } else {
        fputs(indent, f);
        print_text(f, lx_i32(tok), tok->size);
        print_text(f, lx_i32(gen), gen->size);
        fputc('\n', f);
    }
    lx_tree_release(p);
    llama_model_free(dec);
    lx_pool_close(mark);
    return rc;
}

/* ------------------------------------------------------------------ sample */

enum { S_PROMPT = M_N, S_TOKENS, S_TEMP, S_TOPK, S_SEED, S_INIT_SEED, S_N };

static const char SAMPLE_USAGE[] =
    "usage: linnx sample [CHECKPOINT] [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]\n"
    "                    [--seed S] [--init-seed S] [--seq-len L] [model flags]\n"
    "Generates N bytes after the prompt with the KV cache: greedy for --temperature 0, else\n"
    "jax.random.categorical over logits / T (among the top K with --top-k K), the key split once per\n"
    "token. Defaults: --prompt 'The ' --tokens 64 --temperature 0.8 --top-k 0 --seed 0, --seq-len 256.\n"
    "Until checkpoints are wired the model is randomly initialised with --init-seed (default 0).\n" MODEL_USAGE;

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
    if (npos == 1)
        return cli_error("sample: loading the checkpoint '%s' is not wired yet (checkpoints land with their own work); "
                         "drop CHECKPOINT to sample from a randomly initialised model",
                         pos[0]);
    llama_config c;
    llama_style style;
    if (model_flags(o, 256, &c, &style)) return CLI_EXIT_USAGE;
    int64_t ntok = 64, topk = 0, seed = 0, init_seed = 0;
    double temp = 0.8;
    if ((o[S_TOKENS].seen && cli_i64("tokens", o[S_TOKENS].value, &ntok)) ||
        (o[S_TEMP].seen && cli_f64("temperature", o[S_TEMP].value, &temp)) ||
        (o[S_TOPK].seen && cli_i64("top-k", o[S_TOPK].value, &topk)) ||
        (o[S_SEED].seen && cli_i64("seed", o[S_SEED].value, &seed)) ||
        (o[S_INIT_SEED].seen && cli_i64("init-seed", o[S_INIT_SEED].value, &init_seed)))
        return CLI_EXIT_USAGE;
    const char *prompt = o[S_PROMPT].seen ? o[S_PROMPT].value : "The ";
    if (ntok < 1) return cli_error("--tokens: %lld is not a positive count", (long long)ntok);
    llama_model *m = NULL;
    if (llama_model_new(&c, style, init_seed, &m) != LX_OK) return cli_lib_error();
    lx_sampling s = {temp, topk};
    int rc = sample_text(stdout, m, prompt, ntok, &s, lx_key_from_seed(seed), "");
    llama_model_free(m);
    lx_pool_drain();
    return rc;
}

/* ------------------------------------------------------------------ train-lm */

enum { T_STEPS = M_N, T_BATCH, T_LR, T_WARMUP, T_SEED, T_DATA, T_HELDOUT, T_HELDOUT_FRAC, T_CKPT, T_RESUME,
       T_EVAL_EVERY, T_EVAL_BATCHES, T_SVG, T_PROMPT, T_SAMPLE_TOKENS, T_DRY, T_N };

static const char TRAIN_USAGE[] =
    "usage: linnx train-lm [--steps N] [--batch B] [--seq-len L] [--lr LR] [--warmup-frac F] [--seed S]\n"
    "                      [--data PATH,PATH...] [--heldout FILE] [--heldout-fraction F]\n"
    "                      [--checkpoint-dir DIR] [--resume] [--eval-every N] [--eval-batches N]\n"
    "                      [--svg PATH] [--prompt TEXT] [--sample-tokens N] [--dry-run] [model flags]\n"
    "Trains the showcase decoder on bytes of text (default: /usr/share/common-licenses, the last 10%\n"
    "of GPL-3 held out). Prints the byte-unigram entropy of the held-out text and the held-out loss\n"
    "before training and every --eval-every steps, a progress line per step, samples before and\n"
    "after, and writes the loss curve as SVG (--svg, default DIR/loss.svg or ./loss.svg).\n"
    "Defaults: --steps 0 --batch 16 --seq-len 128 --lr 3e-3 --warmup-frac 0.1 --seed 0\n"
    "--eval-every 50 --eval-batches 4 --sample-tokens 80 --prompt 'This License '.\n"
    "NOTE: the parameter update (gradients + adamw) and checkpoints are not wired into this command\n"
    "yet: --steps > 0 needs --dry-run (forward losses only, parameters unchanged); --resume and\n"
    "checkpoint writing fail with a message.\n" MODEL_USAGE;

/* One training step on a (batch, seq + 1) token batch: returns the loss (pool-owned) or NULL.
 * THE WIRING POINT for the gradient / optimizer work: value_and_grad of llama_model_loss w.r.t.
 * the parameters (llama_model_linen_module + llama_model_variables, or llama_model_nnx_module),
 * clip_by_global_norm(1.0), adamw with MaxText's warmup + cosine schedule (spec/maxtext-decoder.md
 * §D.1, §D.10), then llama_model_load_params with the new parameters. Until then (--dry-run) it
 * only computes the loss. */
static lx_array *train_step(llama_model *m, lx_array *batch, int64_t step, double lr) {
    (void)step;
    (void)lr;
    return llama_model_loss(m, batch);
}

/* Mean loss over the first `nb` batches of `batch` held-out windows of len + 1 bytes. */
static double heldout_loss(llama_model *m, const lm_data *d, int64_t batch, int64_t len, int64_t nb) {
    int64_t windows = lm_window_count(d->nheldout, len);
    if (windows < 1) return NAN;
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
        if (!loss) return NAN;
    }
    return used ? tot / (double)used : NAN;
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

int cmd_train_lm(int argc, char **argv) {
    cli_opt o[T_N] = {MODEL_OPTS,
                      CLI_OPT("steps"),         CLI_OPT("batch"),          CLI_OPT("lr"),
                      CLI_OPT("warmup-frac"),   CLI_OPT("seed"),           CLI_OPT("data"),
                      CLI_OPT("heldout"),       CLI_OPT("heldout-fraction"), CLI_OPT("checkpoint-dir"),
                      CLI_FLAG("resume"),       CLI_OPT("eval-every"),     CLI_OPT("eval-batches"),
                      CLI_OPT("svg"),           CLI_OPT("prompt"),         CLI_OPT("sample-tokens"),
                      CLI_FLAG("dry-run")};
    const char *pos[1];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, T_N, pos, 0, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(TRAIN_USAGE, stdout);
        return 0;
    }
    keep_heap();
    llama_config c;
    llama_style style;
    if (model_flags(o, 128, &c, &style)) return CLI_EXIT_USAGE;
    int64_t steps = 0, batch = 16, seed = 0, eval_every = 50, eval_batches = 4, sample_tokens = 80;
    double lr = 3e-3, warmup = 0.1, frac = 0.1;
    if ((o[T_STEPS].seen && cli_i64("steps", o[T_STEPS].value, &steps)) ||
        (o[T_BATCH].seen && cli_i64("batch", o[T_BATCH].value, &batch)) ||
        (o[T_SEED].seen && cli_i64("seed", o[T_SEED].value, &seed)) ||
        (o[T_EVAL_EVERY].seen && cli_i64("eval-every", o[T_EVAL_EVERY].value, &eval_every)) ||
        (o[T_EVAL_BATCHES].seen && cli_i64("eval-batches", o[T_EVAL_BATCHES].value, &eval_batches)) ||
        (o[T_SAMPLE_TOKENS].seen && cli_i64("sample-tokens", o[T_SAMPLE_TOKENS].value, &sample_tokens)) ||
        (o[T_LR].seen && cli_f64("lr", o[T_LR].value, &lr)) ||
        (o[T_WARMUP].seen && cli_f64("warmup-frac", o[T_WARMUP].value, &warmup)) ||
        (o[T_HELDOUT_FRAC].seen && cli_f64("heldout-fraction", o[T_HELDOUT_FRAC].value, &frac)))
        return CLI_EXIT_USAGE;
    if (steps < 0) return cli_error("--steps: %lld is negative", (long long)steps);
    if (batch < 1 || batch > 4096) return cli_error("--batch: %lld is outside 1..4096", (long long)batch);
    if (eval_every < 1 || eval_batches < 1 || sample_tokens < 0)
        return cli_error("--eval-every and --eval-batches must be positive, --sample-tokens not negative");
    if (!(lr > 0) || !(warmup >= 0 && warmup < 1)) return cli_error("--lr must be positive and --warmup-frac in [0, 1)");
    if (o[T_RESUME].seen)
        return cli_error("train-lm: --resume needs checkpoints, which are not wired into train-lm yet");
    if (steps > 0 && !o[T_DRY].seen)
        return cli_error("train-lm: the parameter update (gradients + adamw) is not wired in yet; "
                         "use --steps 0 for the baselines or --dry-run to run the loop without updates");
    const char *ckpt = o[T_CKPT].seen ? o[T_CKPT].value : NULL;
    char svg_buf[4096];
    const char *svg = o[T_SVG].seen ? o[T_SVG].value : NULL;
    if (!svg) {
        snprintf(svg_buf, sizeof svg_buf, "%s/loss.svg", ckpt ? ckpt : ".");
        svg = svg_buf;
    }
    if (ckpt && mkdir(ckpt, 0777) != 0 && errno != EEXIST)
        return cli_error("--checkpoint-dir: %s: cannot create: %s", ckpt, strerror(errno));

    /* data */
    char data_buf[8192];
    snprintf(data_buf, sizeof data_buf, "%s", o[T_DATA].seen ? o[T_DATA].value : "/usr/share/common-licenses");
    const char *paths[64];
    int npaths;
    if (split_paths(data_buf, paths, 64, &npaths)) return CLI_EXIT_USAGE;
    const char *held = o[T_HELDOUT].seen ? o[T_HELDOUT].value
                       : o[T_DATA].seen  ? NULL
                                         : "/usr/share/common-licenses/GPL-3";
    if (!held) return cli_error("train-lm: --heldout FILE is required with --data (one of the data files)");
    lm_data d;
    if (lm_data_load(npaths, paths, held, frac, &d) != LX_OK) return cli_lib_error();
    if (lm_data_check_vocab(&d, c.vocab_size) != LX_OK) {
        lm_data_free(&d);
        return cli_lib_error();
    }
    int64_t len = c.max_target_length; /* inputs of seq-len tokens, targets shifted by one */
    if (d.ntrain < len + 1 || lm_window_count(d.nheldout, len + 1) < 1) {
        lm_data_free(&d);
        return cli_error("train-lm: --seq-len %lld needs at least %lld bytes of training and of held-out text "
                         "(have %lld and %lld)",
                         (long long)len, (long long)(len + 1), (long long)d.ntrain, (long long)d.nheldout);
    }
    double entropy = lm_unigram_entropy(d.heldout, d.nheldout);
    printf("data: %d files, %lld training bytes, %lld held-out bytes (the last %g of %s)\n", d.nfiles,
           (long long)d.ntrain, (long long)d.nheldout, frac, held);
    printf("byte-unigram entropy of the held-out text: %.4f nats (%.3f bits/byte)\n", entropy, entropy / log(2.0));

    /* model */
    llama_model *m = NULL;
    if (llama_model_new(&c, style, seed, &m) != LX_OK) {
        lm_data_free(&d);
        return cli_lib_error();
    }
    printf("model: %s top, %lld parameters (emb %lld, %lld layers, %lld/%lld heads of %lld, mlp %lld, seq %lld)\n",
           style == LLAMA_LINEN_TOP ? "Linen" : "NNX", (long long)llama_param_count(&c), (long long)c.emb_dim,
           (long long)c.num_decoder_layers, (long long)c.num_query_heads, (long long)c.num_kv_heads,
           (long long)c.head_dim, (long long)c.mlp_dim, (long long)len);
    printf("schedule: %lld steps, batch %lld, lr %g (warmup %g), seed %lld\n", (long long)steps, (long long)batch, lr,
           warmup, (long long)seed);
    const char *prompt = o[T_PROMPT].seen ? o[T_PROMPT].value : "This License ";
    lx_sampling greedy = {0, 0};
    lx_key sample_key = lx_key_fold_in(lx_key_from_seed(seed), 2);
    int rc = 0;
    double h0 = heldout_loss(m, &d, batch, len + 1, eval_batches);
    if (isnan(h0)) rc = cli_lib_error();
    if (!rc) printf("initial held-out loss: %.4f nats\n", h0);
    if (!rc && sample_tokens > 0) {
        printf("sample before training (greedy):\n");
        rc = sample_text(stdout, m, prompt, sample_tokens, &greedy, sample_key, "  ");
    }

    /* the loop */
    double *xs = calloc((size_t)steps + 1, sizeof *xs), *ys = calloc((size_t)steps + 1, sizeof *ys);
    double *ex = calloc((size_t)(steps / eval_every + 2), sizeof *ex), *ey = calloc((size_t)(steps / eval_every + 2), sizeof *ey);
    int64_t ne = 0;
    if (!xs || !ys || !ex || !ey) rc = cli_oom("lm");
    if (!rc) {
        ex[0] = 0;
        ey[ne++] = h0;
    }
    lx_key data_key = lx_key_fold_in(lx_key_from_seed(seed), 1);
    progress pg;
    if (!rc && steps > 0) {
        progress_begin(&pg, stdout, steps, 0);
        if (o[T_DRY].seen) progress_note(&pg, "dry run: forward losses only, the parameters are not updated");
        for (int64_t s = 1; s <= steps && !rc; s++) {
            size_t mark = lx_pool_open();
            lx_array *b = lm_random_batch(d.train, d.ntrain, lx_key_fold_in(data_key, (uint32_t)s), batch, len + 1);
            lx_array *loss = b ? train_step(m, b, s, lr) : NULL;
            if (!loss) rc = cli_lib_error();
            else {
                xs[s - 1] = (double)s;
                ys[s - 1] = lx_f32(loss)[0];
                progress_update(&pg, s, ys[s - 1], batch * len);
            }
            lx_pool_close(mark);
            if (!rc && (s % eval_every == 0 || s == steps)) {
                double h = heldout_loss(m, &d, batch, len + 1, eval_batches);
                if (isnan(h)) rc = cli_lib_error();
                else {
                    ex[ne] = (double)s;
                    ey[ne++] = h;
                    progress_note(&pg, "step %lld: held-out loss %.4f (unigram entropy %.4f)", (long long)s, h, entropy);
                }
            }
        }
        progress_end(&pg);
    }
    if (!rc) {
        lx_plot_series series[2] = {{"train loss", xs, ys, steps, "#1f77b4"}, {"held-out loss", ex, ey, ne, "#d62728"}};
        lx_plot plot = {.title = "linnx train-lm: llama2-style decoder, bytes of /usr/share/common-licenses",
                        .xlabel = "step", .ylabel = "cross-entropy (nats per byte)", .has_hline = true,
                        .hline = entropy, .hline_label = "byte-unigram entropy (held-out)"};
        int ns = steps > 0 ? 2 : 1;
        if (lx_plot_svg(svg, &plot, ns, steps > 0 ? series : series + 1) != LX_OK) rc = cli_lib_error();
        else printf("loss curve: %s\n", svg);
    }
    if (!rc) {
        double final = ey[ne - 1];
        printf("held-out loss: %.4f nats (initial %.4f); byte-unigram entropy %.4f nats: %s by %.4f\n", final, h0,
               entropy, final < entropy ? "below" : "above", fabs(entropy - final));
        if (steps > 0 && sample_tokens > 0) {
            printf("sample after training (greedy):\n");
            rc = sample_text(stdout, m, prompt, sample_tokens, &greedy, sample_key, "  ");
        }
        if (!rc && ckpt) printf("checkpoint: not written (checkpoints are not wired into train-lm yet)\n");
    }
    free(xs);
    free(ys);
    free(ex);
    free(ey);
    llama_model_free(m);
    lm_data_free(&d);
    lx_pool_drain();
    return rc;
}
