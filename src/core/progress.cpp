#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace catq {

namespace {
int g_enabled = -1;  // -1 = decide from isatty
}

void Progress::set_enabled(bool on) { g_enabled = on ? 1 : 0; }
bool Progress::enabled() {
  if (g_enabled < 0) g_enabled = ::isatty(2) ? 1 : 0;
  return g_enabled == 1;
}

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() { finish(); }

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::step(int64_t n, const std::string& info) {
  done_ += n;
  if (!info.empty()) info_ = info;
  draw(false);
}

static std::string fmt_time(double s) {
  if (s < 0 || s > 1e7) return "?";
  int t = static_cast<int>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t / 60) % 60);
  return fmt::format("{}:{:02d}", t / 60, t % 60);
}

void Progress::draw(bool force) {
  if (!enabled()) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
  last_draw_ = now;
  double el = elapsed_s();
  std::string line;
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done_) / total_);
    int w = 24, filled = static_cast<int>(frac * w);
    double eta = done_ > 0 ? el * (total_ - done_) / done_ : -1;
    line = fmt::format("\r{} [{}{}] {}/{} {:3.0f}% {} ETA {} {}", label_, std::string(filled, '#'),
                       std::string(w - filled, '.'), done_, total_, frac * 100, fmt_time(el), fmt_time(eta), info_);
  } else {
    line = fmt::format("\r{} {} {} {}", label_, done_, fmt_time(el), info_);
  }
  std::fprintf(stderr, "%s\033[K", line.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!enabled()) return;
  draw(true);
  std::fprintf(stderr, "\n");
}

}  // namespace catq
