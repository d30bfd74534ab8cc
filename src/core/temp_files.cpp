#include "core/temp_files.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace catq {

namespace {

constexpr int kSlots = 64;
constexpr size_t kMaxPath = 4096;
// state: 0 free, 1 being filled, 2 registered (its path is complete and may be unlinked by the handler).
struct Slot {
  std::atomic<int> state{0};
  char path[kMaxPath];
};
Slot g_slots[kSlots];
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler reads the slots' states");

void write_stderr(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    const ssize_t k = ::write(2, s, n);
    if (k <= 0) return;
    s += k;
    n -= static_cast<size_t>(k);
  }
}

// Only async-signal-safe calls: unlink, write, signal, raise.
void on_fatal_signal(int sig) {
  int removed = 0;
  for (Slot& s : g_slots)
    if (s.state.load(std::memory_order_acquire) == 2 && ::unlink(s.path) == 0) ++removed;
  write_stderr(sig == SIGINT ? "\ncatq: interrupted (SIGINT)" : "\ncatq: terminated by a signal");
  write_stderr(removed ? "; the unfinished output file was removed\n" : "\n");
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

int register_temp_file(const std::string& path) {
  if (path.size() >= kMaxPath) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (!g_slots[i].state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
    g_slots[i].state.store(2, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_temp_file(int slot) {
  if (slot >= 0 && slot < kSlots) g_slots[slot].state.store(0, std::memory_order_release);
}

int registered_temp_files() {
  int n = 0;
  for (const Slot& s : g_slots) n += s.state.load(std::memory_order_acquire) == 2;
  return n;
}

void install_fatal_signal_cleanup() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&sa.sa_mask, sig);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    struct sigaction old;
    // A signal ignored at startup (nohup, a background job of a script) stays ignored.
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    ::sigaction(sig, &sa, nullptr);
  }
  ::signal(SIGXFSZ, SIG_IGN);
}

}  // namespace catq
