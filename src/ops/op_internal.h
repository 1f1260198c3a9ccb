/* Internal helpers shared by every op (not installed).
 *
 * The op protocol (primitive.h): a public builder turns its arguments into the op's typed params
 * and returns lx_bind(LX_PRIM_<OP>, &params, nin, inputs). The op file supplies, for the table
 * (prim_table.c):
 *  - a shape/dtype rule `lx_rule_<op>`: checks dtypes and shapes (messages name the op and the
 *    shapes), normalises the params in place, writes the result's aval; sizes with the checked
 *    helpers of core/checked.h (bind also checks the aval's element count);
 *  - a forward `lx_fwd_<op>`: a `_forward` kernel over raw buffers and sizes (llm.c style) into
 *    the result bind allocated (in the innermost pool); never called on abstract inputs;
 *  - optionally `lx_attrs_<op>`: the observer attributes from the normalised params;
 *  - its VJP rule in vjp.c.
 * bind does the rest: NULL inputs, abstract evaluation, substituters, ownership, tape, observers.
 * Every primitive is bound that way; LX_OP_INPUTS, lx_op_result and lx_prim_record remain for
 * code outside the table that reports a composite itself.
 */
#ifndef LINNX_OP_INTERNAL_H
#define LINNX_OP_INTERNAL_H

#include "linnx/array.h"
#include "linnx/primitive.h"
#include "linnx/threads.h"
#include "team.h"

/* The team size for a parallel loop (team.h): the one thread setting (linnx/threads.h) when `big`
 * says the work is worth a team, else 1, which runs the loop on the caller without touching a
 * thread (even waking one costs about as much as a 64-element op, which is what a batch-1 layer
 * is made of). Every parallel loop in linnx is sized by this or lx_num_threads() directly. */
#define LX_PAR_THREADS(big) ((big) ? lx_num_threads() : 1)

/* The output and input of a parallel map (a range function's context). */
typedef struct lx_map_ctx {
    void *out;
    const void *in;
} lx_map_ctx;

/* Record "<op>: input is NULL" only when no earlier failure explains it. */
void lx_op_null_input(const char *op);

#define LX_OP_INPUTS(op, ...)                                                   \
    do {                                                                        \
        const lx_array *lx_in_[] = {__VA_ARGS__};                               \
        for (size_t lx_i_ = 0; lx_i_ < sizeof lx_in_ / sizeof lx_in_[0]; lx_i_++) \
            if (!lx_in_[lx_i_]) {                                               \
                lx_op_null_input(op);                                           \
                return NULL;                                                    \
            }                                                                   \
    } while (0)

/* A new output owned by the innermost pool: abstract when `abstract`, else uninitialised. */
lx_array *lx_op_result(lx_dtype dtype, int ndim, const int64_t *shape, bool abstract);

/* The one recording point of every primitive, called once its output exists: records the op on
 * the active tape (autodiff.h) and delivers the event to observers. Nothing else happens when
 * neither listens (one thread-local load and a call). `params` is the op's typed struct
 * (primitive.h), copied by the tape; inputs may hold NULL for absent optional operands. */
void lx_prim_record(lx_prim_id id, const void *params, int nin, lx_array *const *inputs, lx_array *out, int nattrs,
                    const lx_kwarg *attrs);

/* An aval of `dtype` with x's shape / with the given shape. */
static inline void lx_aval_like(lx_prim_aval *av, lx_dtype dtype, const lx_array *x) {
    av->dtype = dtype;
    av->ndim = x->ndim;
    for (int i = 0; i < x->ndim; i++) av->shape[i] = x->shape[i];
}
static inline void lx_aval_set(lx_prim_aval *av, lx_dtype dtype, int ndim, const int64_t *shape) {
    av->dtype = dtype;
    av->ndim = ndim;
    for (int i = 0; i < ndim; i++) av->shape[i] = shape[i];
}

/* Rule, forward and attrs signatures of the bound primitives (primitive.h). */
#define LX_RULE(name) lx_status lx_rule_##name(lx_prim_id id, void *params_, int nin, lx_array *const *in, lx_prim_aval *av)
#define LX_FWD(name)                                                                                   \
    lx_status lx_fwd_##name(lx_prim_id id, const void *params_, int nin, lx_array *const *in, lx_array **outp, \
                            lx_array **saved)
#define LX_ATTRS(name)                                                                                 \
    int lx_attrs_##name(lx_prim_id id, const void *params_, int nin, lx_array *const *in, lx_kwarg *attrs, \
                        int64_t *scratch)
/* Silence the parameters a given rule does not read. */
#define LX_UNUSED_RULE (void)id, (void)params_, (void)nin, (void)in, (void)av
/* An axes count in a primitive's params that stands for Python's None (sum's axis=None, squeeze's
 * every size-1 axis, transpose's reversed order): outside every real count's range. */
#define LX_NAXES_NONE (-0x7fff)
#define LX_UNUSED_FWD (void)id, (void)params_, (void)nin, (void)in, (void)outp, (void)saved
#define LX_UNUSED_ATTRS (void)id, (void)params_, (void)nin, (void)in, (void)attrs, (void)scratch

/* Substituters (primitive.h): whether one would run now, and running them. */
bool lx_prim_substituting(void);
lx_array *lx_prim_substitute_run(lx_prim_id id, const void *params, int nin, lx_array **inputs, bool *failed);

/* The tape's side of lx_prim_record (src/core/autodiff.c). */
extern _Thread_local struct lx_tape *lx_tape_recording_;
void lx_tape_record_(lx_prim_id id, const void *params, int nin, lx_array *const *inputs, lx_array *out);

/* The backward rules (vjp.c), one per differentiable primitive family. */


#endif
