/* linnx/linnx.h - everything in one include. */
#ifndef LINNX_H
#define LINNX_H

#include "linnx/status.h"
#include "linnx/array.h"
#include "linnx/value.h"
#include "linnx/primitive.h"
#include "linnx/config.h"
#include "linnx/tree.h"
#include "linnx/variable.h"
#include "linnx/box.h"
#include "linnx/ops.h"
#include "linnx/threads.h"
#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/dropout.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"
#include "linnx/bridge.h"
#include "linnx/to_nnx.h"
#include "linnx/to_linen.h"
#include "linnx/intercept.h"
#include "linnx/random.h"
#include "linnx/init.h"
#include "linnx/checkpoint.h"
#include "linnx/autodiff.h"

#endif
