#pragma once
namespace catq {
// Sets libtorch's intra-op thread count: CATQ_THREADS, else OMP_NUM_THREADS, else all cores
// (Debian's libtorch defaults to 1 thread).
void init_threads();
}
