#include "core/threads.h"

#include "core/thread_pool.h"

namespace catq {
void init_threads() { at::set_num_threads(default_thread_count()); }
}  // namespace catq
