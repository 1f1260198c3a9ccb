/* The kernel table of the set in force (kernels.h, linnx/cpu.h). */
#include "kernels.h"

const lx_kernels *lx_kernels_for(lx_isa isa) {
    const lx_kernels *k = NULL;
    if (isa == LX_ISA_AVX512) k = lx_kernels_avx512();
    else if (isa == LX_ISA_AVX2) k = lx_kernels_avx2();
    return k ? k : lx_kernels_generic();
}

const lx_kernels *lx_kernels_active(void) { return lx_kernels_for(lx_isa_current()); }
