#pragma once
// Training progress: a redrawn bar with rate and ETA on a terminal, plain periodic lines
// otherwise (no carriage returns in log files).
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace diffusion {

class Progress {
 public:
  /// total: number of steps; bar: redraw one line (terminal) instead of printing lines.
  Progress(std::ostream* out, std::int64_t total, bool bar, std::string label = "train");
  /// Report that `done` steps are finished; `loss` is shown next to the rate.
  void update(std::int64_t done, double loss);
  /// Final line (ends the bar's line).
  void finish(std::int64_t done, double loss);

 private:
  std::string line(std::int64_t done, double loss) const;
  std::ostream* out_;
  std::int64_t total_;
  bool bar_;
  std::string label_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::int64_t next_line_ = 0;
};

}  // namespace diffusion
