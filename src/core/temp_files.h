// Temporary output files that no fault may leave behind. Every writer of catq writes to a temporary file next to its
// target and renames it into place when complete (core/atomic_file.h, write_file_atomic, the .catq writers); an error
// removes the temporary file on the way out. A fatal signal skips that unwinding, so the temporary files are also
// registered here while they exist, and install_fatal_signal_cleanup() (called by the `catq` command) removes them:
//   SIGINT, SIGTERM, SIGHUP, SIGQUIT: every registered file is unlinked, "catq: interrupted ..." is printed, and the
//     process ends by the same signal (exit status 128 + N in a shell: 130 for Ctrl-C), leaving the target as it was;
//   SIGXFSZ (a file-size limit, `ulimit -f`) is ignored, so the write fails with EFBIG and takes the ordinary error
//     path: Error(Io) "write failed", temporary file removed, exit code 3.
// The registry is a fixed table of slots (no allocation, async-signal-safe reads); registering more than its 64 slots
// at once, or a path over 4 KiB, only loses the signal-time cleanup of that file.
#pragma once
#include <string>

namespace catq {

// Returns a slot id for unregister_temp_file (-1 when not registered).
int register_temp_file(const std::string& path);
void unregister_temp_file(int slot);

// Keeps `path` registered for its lifetime.
class TempFileRegistration {
 public:
  TempFileRegistration() = default;
  explicit TempFileRegistration(const std::string& path) : slot_(register_temp_file(path)) {}
  ~TempFileRegistration() { unregister_temp_file(slot_); }
  TempFileRegistration(const TempFileRegistration&) = delete;
  TempFileRegistration& operator=(const TempFileRegistration&) = delete;
  void reset(const std::string& path) {
    unregister_temp_file(slot_);
    slot_ = register_temp_file(path);
  }
  void release() {
    unregister_temp_file(slot_);
    slot_ = -1;
  }

 private:
  int slot_ = -1;
};

// Installs the handlers above (idempotent).
void install_fatal_signal_cleanup();
// The number of files registered now (tests).
int registered_temp_files();

}  // namespace catq
