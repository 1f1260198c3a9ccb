/* A test model of two NNX Linears, a (4 -> 4) then b (4 -> 3): `TwoLin`, shared by the
 * quantization tests (paths "a" and "b"). */
#ifndef LINNX_TEST_NNX_TWO_LINEAR_H
#define LINNX_TEST_NNX_TWO_LINEAR_H

#include "linnx/linen.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"

typedef struct {
    nnx_module base;
    nnx_module *a, *b;
} two_lin;
static lx_status two_lin_init(nnx_module *m, const lx_call *c, nnx_rngs *r) {
    (void)c;
    LX_TRY(nnx_linear_new(4, 4, r, (nnx_linear **)&((two_lin *)m)->a));
    return nnx_linear_new(4, 3, r, (nnx_linear **)&((two_lin *)m)->b);
}
static lx_status two_lin_call(nnx_module *m, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return linen_return_array(out, nnx_call_array(((two_lin *)m)->b, nnx_call_array(((two_lin *)m)->a, x)));
}
static const nnx_field TWO_LIN_FIELDS[] = {NNX_CHILD(two_lin, a), NNX_CHILD(two_lin, b)};
static const nnx_method TWO_LIN_METHODS[] = {{"__call__", two_lin_call}};
static const nnx_type NNX_TWO_LIN = {.name = "TwoLin", .size = sizeof(two_lin), .fields = TWO_LIN_FIELDS,
                                     .nfields = 2, .methods = TWO_LIN_METHODS, .nmethods = 1, .init = two_lin_init};

#endif
