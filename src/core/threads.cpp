#include "core/threads.h"

#include <cstdlib>
#include <thread>

namespace catq {
void init_threads() {
  int n = 0;
  if (const char* e = std::getenv("CATQ_THREADS")) n = std::atoi(e);
  if (n <= 0)
    if (const char* e = std::getenv("OMP_NUM_THREADS")) n = std::atoi(e);
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  at::set_num_threads(n);
}
}  // namespace catq
