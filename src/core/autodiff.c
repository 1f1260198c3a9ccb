/* Reverse-mode autodiff: the tape and value_and_grad (API only in this commit). */
#include "linnx/autodiff.h"

lx_status lx_tape_new(lx_tape **out) {
    *out = NULL;
    return lx_fail(LX_ERR_UNSUPPORTED, "tape_new: not implemented yet");
}
lx_status lx_tape_watch(lx_tape *t, lx_array *x) {
    (void)t, (void)x;
    return lx_fail(LX_ERR_UNSUPPORTED, "tape_watch: not implemented yet");
}
void lx_tape_stop(lx_tape *t) { (void)t; }
lx_status lx_tape_backward(lx_tape *t, lx_array *y, int n, lx_array *const *xs, lx_array **grads) {
    (void)t, (void)y, (void)xs;
    for (int i = 0; i < n; i++) grads[i] = NULL;
    return lx_fail(LX_ERR_UNSUPPORTED, "tape_backward: not implemented yet");
}
size_t lx_tape_size(const lx_tape *t) { (void)t; return 0; }
void lx_tape_free(lx_tape *t) { (void)t; }
bool lx_tape_active(void) { return false; }
lx_array *lx_stop_gradient(lx_array *x) {
    if (!x) return NULL;
    return lx_autorelease(lx_array_reshape_view(x, x->ndim, x->shape));
}
lx_status lx_value_and_grad(lx_loss_fn fn, void *user, int n, lx_array *const *xs, lx_array **value,
                            lx_array **grads) {
    (void)fn, (void)user, (void)xs, (void)value;
    for (int i = 0; i < n; i++) grads[i] = NULL;
    return lx_fail(LX_ERR_UNSUPPORTED, "value_and_grad: not implemented yet");
}
lx_status linen_value_and_grad(linen_loss_fn fn, void *user, const lx_tree *params, lx_array **value,
                               lx_tree **grads, lx_tree **aux) {
    (void)fn, (void)user, (void)params, (void)value, (void)grads, (void)aux;
    return lx_fail(LX_ERR_UNSUPPORTED, "linen_value_and_grad: not implemented yet");
}
lx_status nnx_value_and_grad(nnx_module *model, const nnx_filter *wrt, nnx_loss_fn fn, void *user,
                             lx_array **value, lx_tree **grads) {
    (void)model, (void)wrt, (void)fn, (void)user, (void)value, (void)grads;
    return lx_fail(LX_ERR_UNSUPPORTED, "nnx_value_and_grad: not implemented yet");
}
lx_status nnx_grad(nnx_module *model, const nnx_filter *wrt, nnx_loss_fn fn, void *user, lx_tree **grads) {
    (void)model, (void)wrt, (void)fn, (void)user, (void)grads;
    return lx_fail(LX_ERR_UNSUPPORTED, "nnx_grad: not implemented yet");
}
