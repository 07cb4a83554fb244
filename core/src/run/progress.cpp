#include "diffusion/run/progress.hpp"

#include <cmath>
#include <cstdio>
#include <ostream>

namespace diffusion {

Progress::Progress(std::ostream* out, std::int64_t total, bool bar, std::string label)
    : out_(out), total_(total), bar_(bar), label_(std::move(label)),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

std::string Progress::line(std::int64_t done, double loss) const {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? done / secs : 0.0;
  const double eta = rate > 0 ? (total_ - done) / rate : 0.0;
  char buf[160];
  if (bar_) {
    const int width = 24;
    const int filled = total_ > 0 ? int(width * done / total_) : width;
    std::string b(filled, '=');
    if (filled < width) b += '>' + std::string(width - filled - 1, ' ');
    std::snprintf(buf, sizeof buf, "%s [%s] %lld/%lld  %.0f it/s  ETA %.0fs  loss %.4g", label_.c_str(),
                  b.c_str(), (long long)done, (long long)total_, rate, eta, loss);
  } else {
    std::snprintf(buf, sizeof buf, "%s step %lld/%lld (%3.0f%%)  %.0f it/s  ETA %.0fs  loss %.4g",
                  label_.c_str(), (long long)done, (long long)total_,
                  total_ > 0 ? 100.0 * done / total_ : 100.0, rate, eta, loss);
  }
  return buf;
}

void Progress::update(std::int64_t done, double loss) {
  if (!out_) return;
  if (bar_) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    *out_ << '\r' << line(done, loss) << "\x1b[K" << std::flush;
  } else if (done >= next_line_) {
    // Ten lines per run keep logs short.
    next_line_ = done + std::max<std::int64_t>(1, total_ / 10);
    if (done > 0) *out_ << line(done, loss) << '\n' << std::flush;
  }
}

void Progress::finish(std::int64_t done, double loss) {
  if (!out_) return;
  if (bar_) *out_ << '\r' << line(done, loss) << "\x1b[K\n" << std::flush;
  else *out_ << line(done, loss) << '\n' << std::flush;
}

}  // namespace diffusion
