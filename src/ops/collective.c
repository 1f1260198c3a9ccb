/* pmean: jax.lax.pmean(x, axis_name) as a primitive (ops.h). The forward copies x and hands the
 * copy to the process-wide hook the distributed engine installs (src/train/distributed.c), so this
 * file knows nothing of MPI; the VJP binds pmean again on the cotangent (the transpose of a mean
 * over processes is the same mean of the cotangents), so each process's backward pass sees the
 * other processes' contributions through the shared mean. */
#include <string.h>

#include "linnx/ops.h"
#include "linnx/primitive.h"
#include "op_internal.h"

static lx_pmean_hook_fn g_pmean_hook; /* NULL: one process, pmean is the identity */

void lx_set_pmean_hook(lx_pmean_hook_fn fn) { g_pmean_hook = fn; }
lx_pmean_hook_fn lx_get_pmean_hook(void) { return g_pmean_hook; }

LX_RULE(pmean) {
    (void)id, (void)nin;
    const lx_pmean_params *p = params_;
    if (memchr(p->axis_name, '\0', sizeof p->axis_name) == NULL || p->axis_name[0] == '\0')
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "pmean: axis_name must be a non-empty name shorter than %d bytes",
                       LX_AXIS_NAME_MAX);
    if (in[0]->dtype != LX_F32)
        return lx_fail(LX_ERR_DTYPE, "pmean: x must be float32, got %s", lx_dtype_name(in[0]->dtype));
    lx_aval_like(av, LX_F32, in[0]);
    return LX_OK;
}

LX_FWD(pmean) {
    (void)id, (void)nin, (void)saved;
    const lx_pmean_params *p = params_;
    lx_array *o = *outp;
    if (o->size) memcpy(lx_f32(o), lx_f32(in[0]), (size_t)o->size * sizeof(float));
    lx_pmean_hook_fn hook = g_pmean_hook;
    if (hook && hook(p->axis_name, lx_f32(o), o->size) != LX_OK) {
        lx_status st = lx_last_status();
        return st != LX_OK ? st : lx_fail(LX_ERR_IO, "pmean: the all-reduce over '%s' failed", p->axis_name);
    }
    return LX_OK;
}

LX_ATTRS(pmean) {
    (void)id, (void)nin, (void)in, (void)scratch;
    attrs[0] = LX_KW_STR("axes", ((const lx_pmean_params *)params_)->axis_name);
    return 1;
}

lx_status lx_vjp_pmean(const void *params, int nin, lx_array *const *in, lx_array *out, lx_array *ct,
                       const bool *wants, lx_array **in_ct) {
    (void)nin, (void)in, (void)out;
    in_ct[0] = NULL;
    if (!wants[0]) return LX_OK;
    in_ct[0] = lx_bind(LX_PRIM_PMEAN, params, 1, &ct);
    return in_ct[0] ? LX_OK : lx_last_status();
}

lx_array *lx_pmean(lx_array *x, const char *axis_name) {
    lx_pmean_params prm;
    memset(&prm, 0, sizeof prm);
    if (axis_name && strlen(axis_name) < sizeof prm.axis_name) strcpy(prm.axis_name, axis_name);
    return lx_bind(LX_PRIM_PMEAN, &prm, 1, &x); /* an empty or over-long name: the rule's error */
}
