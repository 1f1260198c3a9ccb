/* Internal to src/train: the batchers' shared argument checks (data.c). */
#ifndef LINNX_DATA_INTERNAL_H
#define LINNX_DATA_INTERNAL_H

#include "linnx/train.h"

/* lx_batcher_next's checks (a made batcher, arrays / outs present, no NULL array, every array
 * with the batcher's rows on axis 0), messages under `who`: LX_OK, or the failure recorded and
 * outs[] NULL where it could be written. Clears a stale error on success, as the batchers do. */
lx_status lx_batcher_check_next_(const char *who, const lx_batcher *b, int narrays, lx_array *const *arrays,
                                 lx_array **outs);

#endif
