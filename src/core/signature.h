/* Internal: Python's argument binding check for module methods (not installed).
 *
 * A method declares its Python signature as a string, e.g. "inputs" or
 * "inputs_q, inputs_k=None, inputs_v=None, *, mask=None, deterministic=None". A name followed by
 * '=...' has a default; names after '*' are keyword-only; a trailing "**kwargs" accepts any other
 * keyword. lx_call_check_sig refuses a call that Python would refuse, with Python's TypeError
 * text ("Linear.__call__() got an unexpected keyword argument 'foo'", "... takes 2 positional
 * arguments but 3 were given", "... missing 1 required positional argument: 'inputs'",
 * "... got multiple values for argument 'inputs'"), self counted as Python counts it. */
#ifndef LINNX_CORE_SIGNATURE_H
#define LINNX_CORE_SIGNATURE_H

#include "linnx/value.h"

/* `owner` is the type name ("Linear"), `method` the method name ("__call__"); sig NULL accepts
 * anything. LX_OK or LX_ERR_TYPE. */
lx_status lx_call_check_sig(const char *owner, const char *method, const char *sig, const lx_call *c);
/* Does the signature name a parameter `name` that a keyword argument can bind (Python's
 * positional-or-keyword or keyword-only; a **kwargs does not count, as Flax's has_keyword_arg)?
 * False for a NULL or malformed signature. */
bool lx_sig_names_param(const char *sig, const char *name);

#endif
