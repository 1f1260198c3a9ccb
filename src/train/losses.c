/* optax.losses from ops (optax/losses/_regression.py, _classification.py): per element, in
 * optax's operation order, so they are differentiable wherever the ops are. */
#include "linnx/losses.h"

#include "linnx/nn.h"
#include "linnx/ops.h"

static lx_array *fail_ctx(const char *who) {
    if (lx_last_status() != LX_OK) lx_fail_context(lx_last_status(), "%s: ", who);
    return NULL;
}

lx_array *optax_squared_error(lx_array *predictions, lx_array *targets) {
    if (!predictions) return NULL;
    lx_array *e = targets ? lx_sub(predictions, targets) : predictions;
    lx_array *r = e ? lx_square(e) : NULL;
    return r ? r : fail_ctx("squared_error");
}

lx_array *optax_l2_loss(lx_array *predictions, lx_array *targets) {
    if (!predictions) return NULL;
    lx_array *e = targets ? lx_sub(predictions, targets) : predictions;
    lx_array *r = e ? lx_mul_scalar(lx_square(e), 0.5f) : NULL;
    return r ? r : fail_ctx("l2_loss");
}

lx_array *optax_softmax_cross_entropy(lx_array *logits, lx_array *labels) {
    if (!logits || !labels) return NULL;
    lx_array *lp = lx_log_softmax(logits, -1);
    lx_array *r = lx_neg(lx_sum(lx_mul(labels, lp), LX_AXES(-1), false));
    return r ? r : fail_ctx("softmax_cross_entropy");
}

lx_array *optax_softmax_cross_entropy_with_integer_labels(lx_array *logits, lx_array *labels) {
    if (!logits || !labels) return NULL;
    lx_array *r = lx_softmax_cross_entropy_int(logits, labels);
    return r ? r : fail_ctx("softmax_cross_entropy_with_integer_labels");
}

lx_array *optax_sigmoid_binary_cross_entropy(lx_array *logits, lx_array *labels) {
    if (!logits || !labels) return NULL;
    /* log_sigmoid(x) = -softplus(-x) */
    lx_array *log_p = lx_neg(lx_softplus(lx_neg(logits)));
    lx_array *log_not_p = lx_neg(lx_softplus(logits));
    lx_array *one_minus = lx_sub(lx_scalar(1.0f), labels);
    lx_array *r = lx_sub(lx_mul(lx_neg(labels), log_p), lx_mul(one_minus, log_not_p));
    return r ? r : fail_ctx("sigmoid_binary_cross_entropy");
}
