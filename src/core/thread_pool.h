// One persistent pool of worker threads for catq's own kernels (the lean LLM runtime: GEMV split over output rows,
// attention over heads). Created once, reused for every call: a decode step issues hundreds of parallel sections,
// so workers spin briefly on a generation counter before sleeping on a condition variable.
//
//   ThreadPool pool(2);                                   // the caller is thread 0, one worker thread
//   pool.parallel_for(rows, [&](int64_t r0, int64_t r1) { ... });
//
// Work is split statically ([t·n/T, (t+1)·n/T) for thread t), and every output element is computed by exactly one
// thread with the same code whatever the split, so results do not depend on the thread count.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace catq {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads ≥ 1 (clamped); threads − 1 workers are started
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Calls fn(t, T) for t = 0..T−1 (T = size()), t = 0 on the calling thread; returns when all have returned.
  // Not re-entrant: fn must not call run() on the same pool.
  void run(const std::function<void(int, int)>& fn);
  // f(begin, end) over [0, n) in size() contiguous static chunks (empty chunks skipped); grain: the smallest chunk
  // worth a thread (fewer threads are used below it).
  template <class F>
  void parallel_for(int64_t n, F&& f, int64_t grain = 1) {
    if (n <= 0) return;
    const int64_t T = std::min<int64_t>(size(), std::max<int64_t>(1, n / std::max<int64_t>(1, grain)));
    if (T == 1) {
      f(int64_t{0}, n);
      return;
    }
    run([&](int t, int) {
      if (t >= T) return;
      const int64_t b = n * t / T, e = n * (t + 1) / T;
      if (b < e) f(b, e);
    });
  }

 private:
  void worker(int index);
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

// The thread count catq's own kernels use: CATQ_THREADS, else OMP_NUM_THREADS, else all cores (as init_threads()).
int default_thread_count();

}  // namespace catq
