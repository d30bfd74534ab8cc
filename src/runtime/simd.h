// x86 SIMD intrinsics for the runtime's kernels, compiled per function with target attributes and chosen at run time
// (CATQ_X86 is defined where they exist).
#pragma once
#if defined(__x86_64__) || defined(__i386__)
// GCC 12's AVX-512 headers start some intrinsics from _mm512_undefined_*(): a false (maybe-)uninitialized warning.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define CATQ_X86 1
#endif
