/* linnx/quant.h - quantization the Qwix way: rules matched against module paths, int8 kernels.
 *
 * Rules (Qwix's QtRule): tried in order; the first whose `module_path` regex fully matches the
 * '/'-joined module path an interceptor reports (intercept.h: "decoder/layers_0/mlp/wi_0") and
 * whose `op_names` contains the op's name - plain ("dot_general") or counted per module in call
 * order ("dot_general0", "dot_general1": the module's first, second dot_general) - applies; no
 * rule, no quantization. POSIX extended regular expressions, anchored at both ends.
 *
 * int8 kernels: C (M, N) int32 = A (M, K) int8 . B^T where B is (N, K) int8 (a weight stored
 * output channel major, as quantized per output channel). Variants:
 *   LX_I8_PORTABLE  plain C, any CPU; exact for every int8 value;
 *   LX_I8_AVX2      vpmaddubsw on (|a|, sign(b, a)) then vpmaddwd into int32 (pairs stay below
 *                   2*128*127 = 32512, so the int16 saturation never triggers) while no weight
 *                   is -128; weights holding -128 (recorded when packed, scanned per call when
 *                   not) run a widened step (vpmovsxbw + vpmaddwd) instead: every int8 value;
 *   LX_I8_VNNI      AVX-512 VNNI vpdpbusd on (a + 128 as u8, b), minus 128 * sum_k b[k, n]
 *                   precomputed per output channel (the u8/s8 offset trick); every int8 value;
 *   LX_I8_AMX       AMX-INT8 tdpbssd on 16 x 64 tiles (signed x signed); every int8 value. Needs
 *                   cpuid's AMX-TILE and AMX-INT8 (XCR0's tile state enabled) and the OS's
 *                   permission for the tile data, asked when an AMX product first runs
 *                   (arch_prctl(ARCH_REQ_XCOMP_PERM)); lx_i8_kernel_supported says.
 * LX_I8_AUTO picks, in order: the environment variable LINNX_INT8 (amx, vnni, avx2, generic;
 * read once; one not supported is ignored with a warning on stderr), else the best the CPU runs
 * within the kernel set in force (linnx/cpu.h: LINNX_ISA=avx2 gives avx2, generic portable).
 * On packed weights AUTO runs VNNI rather than AMX for fewer than 8 rows (decode's GEMVs),
 * unless LINNX_INT8=amx.
 *
 * Errors are values (status.h); nothing here prints.
 */
#ifndef LINNX_QUANT_H
#define LINNX_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "linnx/array.h"
#include "linnx/nn.h"
#include "linnx/status.h"
#include "linnx/tree.h"
#include "linnx/value.h"
#include "linnx/variable.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---- int8 GEMM ---- */
typedef enum lx_i8_kernel {
    LX_I8_AUTO = 0,
    LX_I8_PORTABLE = 1,
    LX_I8_AVX2 = 2,
    LX_I8_VNNI = 3,
    LX_I8_AMX = 4
} lx_i8_kernel;

/* Can this CPU run `k` (AUTO and PORTABLE: always)? */
bool lx_i8_kernel_supported(lx_i8_kernel k);
/* "portable", "avx2", "avx512_vnni", "amx_int8"; AUTO resolves to the one it picks. */
const char *lx_i8_kernel_name(lx_i8_kernel k);
/* c[m*N + n] = sum_k a[m*K + k] * bt[n*K + k] in int32, with kernel `k` (LX_ERR_UNSUPPORTED when
 * the CPU lacks it; nothing written). Sizes may be 0; M, N, K >= 0. */
lx_status lx_i8_gemm(lx_i8_kernel k, int64_t M, int64_t N, int64_t K, const int8_t *a, const int8_t *bt,
                     int32_t *c);

/* Packed weights: B given as (K, N) row-major int8 (a Dense kernel's own layout, what PTQ stores)
 * packed once into the layout a kernel streams, zero padded, so a GEMM or a batch-1 GEMV reads
 * each weight byte once per call and nothing is re-packed per call: for AVX2 (and portable)
 * panels of 4 output channels x 32 contraction values; for VNNI and AMX (one layout for both)
 * panels of 16 channels, the contraction in groups of 4 (the "VNNI-4" layout; 16 groups are
 * one AMX B tile), with the per-channel sums VNNI's offset needs. Owned by the caller
 * (lx_i8_packed_free). lx_i8_pack packs for AUTO's kernel; lx_i8_pack_for(k, ...) for kernel k
 * (packing runs on any CPU). */
typedef struct lx_i8_packed lx_i8_packed;
lx_status lx_i8_pack(int64_t K, int64_t N, const int8_t *b, lx_i8_packed **out);
lx_status lx_i8_pack_for(lx_i8_kernel k, int64_t K, int64_t N, const int8_t *b, lx_i8_packed **out);
void lx_i8_packed_free(lx_i8_packed *p);
int64_t lx_i8_packed_k(const lx_i8_packed *p);
int64_t lx_i8_packed_n(const lx_i8_packed *p);
/* The kernel it was packed for (AUTO resolved when packed). */
lx_i8_kernel lx_i8_packed_kernel(const lx_i8_packed *p);
/* c (M, N) int32 = a (M, K) int8 . b with kernel `k`: PORTABLE reads either layout; AVX2 streams
 * weights packed for AVX2, VNNI and AMX weights packed for VNNI or AMX; given weights packed for
 * the other layout (lx_i8_pack packs for the best kernel of the CPU it runs on) the portable
 * reader runs instead: the same sums, slower. A kernel the CPU lacks is LX_ERR_UNSUPPORTED
 * (nothing written). AUTO runs the best kernel for the layout (see above). AMX: the OS's
 * permission for the tile state is asked the first time an AMX product runs (it is process-wide
 * and permanent: Linux then refuses sigaltstack() stacks smaller than the AMX signal frame);
 * refused, the product runs on VNNI and lx_i8_kernel_supported(LX_I8_AMX) turns false.
 * Every kernel is exact for every int8 value. */
lx_status lx_i8_gemm_packed(lx_i8_kernel k, int64_t M, const int8_t *a, const lx_i8_packed *b, int32_t *c);

/* int8 im2col for a convolution with lx_conv_general's geometry: x (batch, spatial..., Cin) int8
 * (nd = 3 to 5), kernel_shape (spatial..., Cin, Cout), params' strides, padding and kernel
 * dilation (NULL: defaults). Writes out_shape (nd entries: batch, output spatial..., Cout) and,
 * when col is not NULL, the M = batch * prod(output spatial) rows of taps * Cin values each
 * (taps in row-major window order, a padding tap 0), so that col (M, K) . kernel read as (K =
 * taps * Cin, Cout) is the convolution; col NULL computes only the shape, to size col.
 * Grouped convolutions and input dilation are LX_ERR_UNSUPPORTED; bad geometry as
 * lx_conv_general reports it. */
lx_status lx_i8_conv_im2col(int nd, const int64_t *x_shape, const int8_t *x, const int64_t *kernel_shape,
                            const lx_conv_params *params, int64_t *out_shape, int8_t *col);

/* ---- symmetric quantization ---- */
/* Per row of x (rows, cols) float32: scale[r] = max|x[r, :]| / 127 (1 when the row is all zeros),
 * q = clamp(round_half_even(x / scale), -127, 127). A row holding a NaN gets scale NaN and q 0
 * (the max propagates a NaN, as jnp.max does), so q * scale is NaN, never a plausible number;
 * an infinite value gives scale inf and q * scale NaN. The same holds for every scale the
 * quantization sessions and PTQ compute (per channel, per tile, per tensor). */
void lx_quantize_rows_i8(int64_t rows, int64_t cols, const float *x, int8_t *q, float *scale);
/* The same with one scale per `tile` consecutive columns of a row: scale[r * ntiles + t],
 * ntiles = ceil(cols / tile). tile >= 1. */
void lx_quantize_tiles_i8(int64_t rows, int64_t cols, int64_t tile, const float *x, int8_t *q, float *scale);

/* ---- rules ---- */
typedef struct lx_qt_rule {
    const char *module_path;  /* POSIX ERE matched against the whole path; NULL = ".*" */
    const char *op_names;     /* comma separated: "dot_general", "dot_general0,einsum"; NULL = any */
    const char *weight_qtype; /* "int8" or NULL (weights stay float) */
    const char *act_qtype;    /* "int8" or NULL (activations stay float) */
    int64_t tile_size;        /* 0: one scale per output channel; > 0: per tile of the contraction */
    bool act_static_scale;    /* activations use a calibrated scale (quant_stats, then the PTQ
                               * tree's `<op>_lhs_scale`) instead of the per-call max; needs
                               * act_qtype (Qwix: "Invalid rule") */
} lx_qt_rule;

typedef struct lx_qt_rules lx_qt_rules;
/* Compile `n` rules (copied). A regex that does not compile is LX_ERR_INVALID_ARGUMENT naming the
 * rule and regerror's text; a qtype other than "int8" (or NULL) is LX_ERR_UNSUPPORTED; a negative
 * tile size, act_static_scale without act_qtype and n < 0 are LX_ERR_INVALID_ARGUMENT. *out
 * untouched on failure. */
lx_status lx_qt_rules_compile(const lx_qt_rule *rules, int n, lx_qt_rules **out);
void lx_qt_rules_free(lx_qt_rules *r);
int lx_qt_rules_count(const lx_qt_rules *r);
const lx_qt_rule *lx_qt_rules_get(const lx_qt_rules *r, int i);
/* The index of the first rule matching (path, op, the op's count in its module), or -1. */
int lx_qt_rules_match(const lx_qt_rules *r, const char *path, const char *op, int count);

/* ---- a dry run: which ops the rules hit ----
 * lx_qt_trace_begin registers an interceptor on this thread that records every contraction
 * (path, op with its per-module count, operand roles) and the rule it matches; run the model,
 * then lx_qt_trace_end. Counts run per module within one outermost call (a layer called twice
 * gives dot_general0 then dot_general1, as Qwix counts per module) and restart with the next
 * outermost call. */
typedef struct lx_qt_hit {
    char *path;   /* "decoder/layers_0/mlp/wi_0" */
    char *op;     /* counted: "dot_general0" */
    int rule;     /* index of the rule applied, -1: none */
    bool weight;  /* some operand is a Param of the module */
} lx_qt_hit;
typedef struct lx_qt_trace lx_qt_trace;
lx_status lx_qt_trace_begin(const lx_qt_rules *rules, lx_qt_trace **out);
/* Stop recording (the trace stays readable until freed). For every rule that matched nothing, a
 * warning is appended to `warn` (if not NULL, cap bytes, always terminated) listing the paths
 * seen: "rule 1 (module_path 'decoder/layers_9/.*') matched nothing; paths seen: ...". Returns the
 * number of such rules. A trace that missed a contraction for lack of memory (its own record, or
 * the op's event dropped: lx_interceptor_dropped, intercept.h) is no trace: -1 with
 * LX_ERR_NO_MEMORY "qt_trace_end: out of memory: the trace missed ops", `warn` "" and no hits
 * (lx_qt_trace_count 0), never a shorter list that would report a rule as matching nothing.
 * Called again, it answers the same. */
int lx_qt_trace_end(lx_qt_trace *t, char *warn, size_t cap);
int lx_qt_trace_count(const lx_qt_trace *t);
const lx_qt_hit *lx_qt_trace_get(const lx_qt_trace *t, int i);
void lx_qt_trace_free(lx_qt_trace *t);

/* ---- running a model quantized ----
 * lx_qt_begin installs, on this thread, a substituter (primitive.h) and an interceptor (so module
 * frames are kept) that quantize the contractions (matmul, dot_general) the rules select; run the
 * model as usual, then lx_qt_end. For a matched op, an operand that is a Param of the innermost
 * module is a weight (weight_qtype applies: one scale per output channel, i.e. the max over its
 * contraction axes, or per tile_size rows of a single contraction axis), any other operand an
 * activation (act_qtype: one scale per tensor, the max of this call).
 *   LX_QT_FAKE  QAT: the operand becomes x + stop_gradient(fq(x) - x), fq the quantize-dequantize
 *               round trip, so the forward sees the quantized values and the backward passes the
 *               gradient straight through (the straight-through estimator).
 *   LX_QT_INT8  inference with the int8 kernel: a Dense-like dot_general (weight second, its
 *               leading axes contracted with the activation's trailing ones, no batch axes) with
 *               both qtypes set is computed as int8 x int8 -> int32 and rescaled by
 *               scale_act * scale_weight[channel]; the weight's int8 copy is made once and kept
 *               for the session. Other matched ops, and every op while a tape records, fall back
 *               to LX_QT_FAKE, whose outputs equal LX_QT_INT8's up to float summation order.
 * Ops a rule matches but whose operands are not float32 are left alone. */
typedef enum lx_qt_mode { LX_QT_FAKE = 1, LX_QT_INT8 = 2, LX_QT_CALIBRATE = 3 } lx_qt_mode;
typedef struct lx_qt_session lx_qt_session;
/* `rules` is borrowed and must outlive the session. LX_ERR_INVALID_ARGUMENT for another mode, and
 * while another session is active on this thread (quantizing twice): nothing is installed. */
lx_status lx_qt_begin(const lx_qt_rules *rules, lx_qt_mode mode, lx_qt_session **out);
/* Ops quantized so far: in total, and through the int8 kernel. */
int64_t lx_qt_session_quantized(const lx_qt_session *s);
int64_t lx_qt_session_int8(const lx_qt_session *s);
void lx_qt_end(lx_qt_session *s);

/* ---- per-layer output error ----
 * lx_qt_compare_begin: a session that runs the model in float32 (every op gets and passes on
 * float values, so each layer's error is its own, not what the layers before it added) and, for
 * every op the rules quantize, also computes the quantized result as LX_QT_INT8 would (the int8
 * GEMM for a Dense-like op, else the quantize-dequantize operands: the PTQ session's values for
 * the same rules) and accumulates ||y_q - y||^2 and ||y||^2 over the calls. */
lx_status lx_qt_compare_begin(const lx_qt_rules *rules, lx_qt_session **out);
typedef struct lx_qt_layer_error {
    const char *path;   /* "decoder/layers_0/mlp/wi_0" */
    const char *op;     /* counted: "dot_general0" */
    int64_t calls;
    double err_sq, ref_sq;
    double rel_err;     /* sqrt(err_sq / ref_sq) (sqrt(err_sq) when the reference is all zeros) */
} lx_qt_layer_error;
/* The ops measured so far, in order of first call; *out is borrowed from the session (valid until
 * the next call or lx_qt_end). Returns the count (0 for any other kind of session). */
int lx_qt_session_layers(lx_qt_session *s, const lx_qt_layer_error **out);

/* ---- calibration (static activation scales, Qwix's SRQ) ----
 * lx_qt_calibrate_begin: a session that runs the model in float32 and, for every op a rule with
 * act_static_scale (and act_qtype) selects, adds the activation operand's max |x| to the
 * statistics tree `stats` (borrowed, changed in place; start from an empty tree):
 *   <module path>/<op><n>_lhs/{count: int32 (), sum_of_absmax: float32 (1, .., 1)}
 * (`_rhs` for an activation in the second operand), Qwix's quant_stats names and its
 * SimpleMovingAverage: the calibrated absmax is sum_of_absmax / count. For a Linen model put the
 * tree in the variables as the `quant_stats` collection; lx_qt_quantize_linen reads it there. */
lx_status lx_qt_calibrate_begin(const lx_qt_rules *rules, lx_tree *stats, lx_qt_session **out);

/* ---- QAT with static activation scales (Qwix's QT with act_static_scale) ----
 * lx_qt_begin_qat: an LX_QT_FAKE session that keeps the statistics of every op a rule with
 * act_static_scale selects in `stats` (borrowed, changed in place; the calibration layout above:
 * for Linen the quant_stats collection). With `update` (training), each call first adds its
 * activation's max |x| to the moving statistic, then quantizes with the scale the statistic gives,
 * (sum_of_absmax / count) / 127 (Qwix: the SimpleMovingAverage updated when quant_stats is
 * mutable, then its calibration); without (evaluation), the statistics are read only. An op with no
 * statistics yet (count 0) uses its own max, as Qwix falls back to the call's calibration.
 * lx_qt_quantize_* with the same statistics stores the scale the QAT model ended with as
 * `<op>_lhs_scale`, so the PTQ model computes what the fake-quantized model does with update off. */
lx_status lx_qt_begin_qat(const lx_qt_rules *rules, lx_tree *stats, bool update, lx_qt_session **out);

/* ---- statistics as NNX Variables ----
 * In an NNX model the statistics are Variables of type QuantStat (Qwix's flax_util.QuantStat,
 * registered under the collection name "quant_stats" on first store), at
 * <module path>/<op><n>_lhs/{count, sum_of_absmax}: nnx_state(m, NNX_OF_TYPE(&lx_QuantStat))
 * filters them, and they split, merge and checkpoint with the rest of the state. */
typedef struct nnx_module nnx_module;
extern const lx_vartype lx_QuantStat;
/* The module's QuantStat Variables as a plain tree of arrays (shared with the Variables; empty
 * when there are none). */
lx_status lx_qt_stats_nnx(nnx_module *m, lx_tree **out);
/* Store a statistics tree into the module: existing QuantStat Variables take the new values, new
 * paths become QuantStat Variables (dynamic attributes of the op's module). All or nothing. */
lx_status lx_qt_stats_store_nnx(nnx_module *m, const lx_tree *stats);
/* Calibration / QAT sessions over the module's own statistics: call the module (its paths are
 * relative to it), then lx_qt_finish, which stores the statistics back as QuantStat Variables. */
lx_status lx_qt_calibrate_begin_nnx(const lx_qt_rules *rules, nnx_module *m, lx_qt_session **out);
lx_status lx_qt_begin_qat_nnx(const lx_qt_rules *rules, nnx_module *m, bool update, lx_qt_session **out);
/* End a session; for the two above, store its statistics into the module first (the store's
 * status is returned; the session is freed either way). Any other session: lx_qt_end. */
lx_status lx_qt_finish(lx_qt_session *s);

/* ---- PTQ: int8 weights stored in the variables ----
 * quantize(model, rules): the model runs once on a sample call; every Param that a matched op
 * uses as a weight becomes, in a new tree (the input is not changed):
 *   <dir>/<name>        int8, the original shape (q = clamp(round_half_even(w / scale), +-127))
 *   <dir>/<name>_scale  float32, the shape with each contraction axis reduced to 1 (per output
 *                       channel; one per tile of tile_size on that axis when the rule has one)
 * e.g. params/Dense_0/kernel int8[4,3] + params/Dense_0/kernel_scale float32[1,3]. Qwix keeps
 * the pair in a WithAux at the name itself (its pure dict: kernel/array/qvalue,
 * kernel/array/scale); linnx keeps the layer's own name for the int8 values, so layer code,
 * checkpoints and `linnx params` find `kernel` where they always did, and names the scale with
 * Qwix's `<name>_scale` convention. With calibration statistics, each statically scaled op gets
 * <dir>/<op><n>_lhs_scale float32 (1, .., 1) = (sum_of_absmax / count) / 127, Qwix's PTQ name.
 * A Variable or box leaf stays one, around the int8 value; the scale is a Param like it.
 * Errors (nothing is returned): a tree that already holds int8 values (quantizing twice) and
 * statistics with count 0 are LX_ERR_INVALID_ARGUMENT; an act_static_scale op without
 * calibration statistics LX_ERR_NOT_FOUND. A rule matching nothing in the run is not an error
 * (Qwix only warns): lx_qt_warnings() lists it with the paths seen. A weight that an op other
 * than a contraction also reads (a tied embedding's lookup) stays float32, with a warning there
 * too (int8 rows from the lookup would fail the PTQ model); the PTQ session quantizes its
 * contraction on the fly.
 *
 * Running the quantized model: lx_qt_begin_ptq(rules, tree, &s), then apply as usual with that
 * tree. The int8 weights are used as stored: a Dense-like op with act_qtype runs the int8 GEMM on
 * them (packed once per session, never re-quantized; per-tile weights one packed slice per tile,
 * each tile's product rescaled by its scale), other ops compute in float on them dequantized once
 * per session.
 * Without such a session an int8 weight fails the op (a float32 op given int8). */
typedef lx_status (*lx_qt_run_fn)(const lx_tree *variables, void *user);
/* The general form: `run` runs the model on `variables` (which must be the arrays the model
 * uses); `stats` (may be NULL) the calibration statistics. */
lx_status lx_qt_quantize_tree(const lx_qt_rules *rules, const lx_tree *variables, lx_qt_run_fn run, void *user,
                              const lx_tree *stats, lx_tree **out);
lx_status lx_qt_begin_ptq(const lx_qt_rules *rules, const lx_tree *quantized, lx_qt_session **out);
/* How many int8 weights a PTQ session found in its tree. */
int64_t lx_qt_session_weights(const lx_qt_session *s);
/* The warnings of the last quantize on this thread ("" when none): each rule that matched no op
 * in the run, with the "path:op" list seen, e.g.
 * "rule 1 (module_path 'decoder/layers_9/.*') matched nothing; paths seen: decoder/layers_0/mlp/wi_0:dot_general0 ...".
 * Borrowed, valid until the next quantize. */
const char *lx_qt_warnings(void);

/* Linen: run m.apply(variables, call) once and return the quantized variables (a new tree; the
 * `quant_stats` collection, when present, is read for the static scales and left out). Works for
 * any Linen module, also one holding NNX layers through to_linen / to_linen_class: their state
 * is in the same tree. */
typedef struct linen_module linen_module;
lx_status lx_qt_quantize_linen(const lx_qt_rules *rules, const linen_module *m, const lx_tree *variables,
                               const lx_call *call, lx_tree **out);
/* NNX, in place: run m(call) once, then nnx_update the module with the quantized state (each
 * quantized Param takes its int8 value, `<name>_scale` Params are added as attributes). Also a
 * ToNNX-wrapped Linen module. `stats` (may be NULL: the module's own QuantStat Variables, if
 * any): calibration statistics. All or nothing. */
lx_status lx_qt_quantize_nnx(const lx_qt_rules *rules, nnx_module *m, const lx_call *call, const lx_tree *stats);
/* lx_qt_begin_ptq over nnx_state(m). */
lx_status lx_qt_begin_ptq_nnx(const lx_qt_rules *rules, nnx_module *m, lx_qt_session **out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
