#pragma once
// The training loss as the results file keeps it: the mean loss of each window of log_every
// steps (/train/step, /train/loss) and, for the same windows, the mean per-sample loss in each
// of `bins` equal bins of training time (/train/loss_by_t, with /train/loss_by_t_edges): which
// noise levels the model still finds hard, and how that changes while it learns.
#include <cstdint>
#include <vector>

#include <H5Cpp.h>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

class LossLog {
 public:
  /// Everything needed to continue the log after a resume (checkpoint.hpp).
  struct State {
    double window = 0;                     ///< sum of step losses in the current window
    std::int64_t window_n = 0;
    double last_finite = 0;                ///< the last finite step loss (for divergence messages)
    double final_loss = 0;                 ///< mean of the last complete window
    std::vector<std::int64_t> steps;       ///< /train/step rows
    std::vector<double> losses;            ///< /train/loss rows
    std::vector<double> bin_sum, bin_count;  ///< the current window's per-bin sums
    std::vector<double> by_t;              ///< /train/loss_by_t rows, flattened (rows x bins)
  };

  LossLog(std::int64_t log_every, std::int64_t total_steps, std::size_t bins, double t_min, double t_max);

  /// Losses and times of samples of the current step (a sharded step adds shard by shard).
  void add_samples(const Tensor& per_sample, const Tensor& times);
  /// Close update number `done` (1-based) with the batch's loss.
  void add(std::int64_t done, double loss);

  double final_loss() const { return state_.final_loss; }
  double last_finite() const { return state_.last_finite; }
  void note_finite(double loss) { state_.last_finite = loss; }
  const State& state() const { return state_; }
  /// Continue from a checkpoint's state; Error if its bins differ from this log's.
  void restore(State state);

  /// /train/step, /train/loss, /train/loss_by_t and /train/loss_by_t_edges into g.
  void write(const H5::Group& g) const;

 private:
  std::int64_t log_every_, total_;
  std::size_t bins_;
  double t_min_, t_max_;
  State state_;
};

}  // namespace diffusion
