// Progress bar on stderr with rate and ETA; silent when stderr is not a terminal (or when disabled).
#pragma once
#include <chrono>
#include <string>

namespace catq {

class Progress {
 public:
  // total = number of steps (0 = unknown). label is printed before the bar.
  Progress(std::string label, int64_t total);
  ~Progress();
  // Advance by n steps; `info` (e.g. "loss 0.123") is shown after the bar.
  void step(int64_t n = 1, const std::string& info = "");
  void set_info(const std::string& info) { info_ = info; }
  void finish();
  double elapsed_s() const;

  // Global switch: --quiet / --json turn it off; default is on only for a TTY.
  static void set_enabled(bool on);
  static bool enabled();

 private:
  void draw(bool force);
  std::string label_;
  int64_t total_, done_ = 0;
  std::string info_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool finished_ = false, drawn_ = false;
};

}  // namespace catq
