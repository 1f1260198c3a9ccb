/* The thread pool (src/core/team.h: it lives in the core, below every component, since the core's
 * random samplers run on it too). Not installed. */
#ifndef LINNX_OPS_TEAM_H
#define LINNX_OPS_TEAM_H
#include "../core/team.h"
#endif
