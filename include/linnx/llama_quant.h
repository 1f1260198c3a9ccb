/* linnx/llama_quant.h - the showcase decoder quantized by Qwix-style rules (quant.h): PTQ of its
 * weights into the model's own variables (Linen top) or state (NNX top), and a session to run it.
 *
 *   lx_qt_rule r[] = {{.module_path = "decoder/layers_[0-9]+/(mlp|self_attention)/.*",
 *                      .weight_qtype = "int8", .act_qtype = "int8"}};
 *   llama_model_quantize(m, rules, sample_tokens, NULL);   // once
 *   llama_model_ptq_begin(m, rules, &s); ... llama_generate(m, ...) ...; lx_qt_end(s);
 *
 * QAT: run training steps inside lx_qt_begin(rules, LX_QT_FAKE, ...) (the straight-through
 * estimator), then llama_model_quantize: the PTQ model's outputs equal the fake-quantized one's up
 * to float summation order (tests/test_quant_llama.c).
 */
#ifndef LINNX_LLAMA_QUANT_H
#define LINNX_LLAMA_QUANT_H

#include "linnx/llama.h"
#include "linnx/quant.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* Run the model once on `sample` (B, S) int32 tokens and store the weights the rules select as
 * int8 + scales (lx_qt_quantize_tree); `stats` (may be NULL): calibration statistics gathered with
 * lx_qt_calibrate_begin around llama_model_logits calls. A decode model's cache is emptied after
 * the sample run. Quantizing twice is an error; nothing changes on failure. */
lx_status llama_model_quantize(llama_model *m, const lx_qt_rules *rules, lx_array *sample, const lx_tree *stats);
/* A PTQ session over the model's quantized weights (lx_qt_begin_ptq); end with lx_qt_end. The
 * session sees the arrays the model holds now: begin it after llama_model_quantize or a load. */
lx_status llama_model_ptq_begin(llama_model *m, const lx_qt_rules *rules, lx_qt_session **out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
