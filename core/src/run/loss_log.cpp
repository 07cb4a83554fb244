#include "diffusion/run/loss_log.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "diffusion/io/hdf5_io.hpp"

namespace diffusion {

LossLog::LossLog(std::int64_t log_every, std::int64_t total_steps, std::size_t bins, double t_min, double t_max)
    : log_every_(std::max<std::int64_t>(log_every, 1)), total_(total_steps), bins_(std::max<std::size_t>(bins, 1)),
      t_min_(t_min), t_max_(t_max) {
  state_.bin_sum.assign(bins_, 0.0);
  state_.bin_count.assign(bins_, 0.0);
}

void LossLog::add_samples(const Tensor& per_sample, const Tensor& times) {
  const double span = t_max_ - t_min_;
  for (std::size_t i = 0, n = std::min(per_sample.size(), times.size()); i < n; ++i) {
    const double u = span > 0 ? (times.data()[i] - t_min_) / span : 0.0;
    const auto b = static_cast<std::size_t>(std::clamp(u * double(bins_), 0.0, double(bins_ - 1)));
    state_.bin_sum[b] += per_sample.data()[i];
    state_.bin_count[b] += 1.0;
  }
}

void LossLog::add(std::int64_t done, double loss) {
  state_.window += loss;
  ++state_.window_n;
  if (done % log_every_ != 0 && done != total_) return;
  state_.final_loss = state_.window / state_.window_n;
  state_.steps.push_back(done);
  state_.losses.push_back(state_.final_loss);
  for (std::size_t b = 0; b < bins_; ++b) {
    state_.by_t.push_back(state_.bin_count[b] > 0 ? state_.bin_sum[b] / state_.bin_count[b]
                                                  : std::numeric_limits<double>::quiet_NaN());
    state_.bin_sum[b] = state_.bin_count[b] = 0.0;
  }
  state_.window = 0;
  state_.window_n = 0;
}

void LossLog::restore(State state) {
  if (state.bin_sum.size() != bins_ || state.bin_count.size() != bins_ || state.by_t.size() != state.steps.size() * bins_)
    throw Error("loss log: the checkpoint's loss-by-time bins (" + std::to_string(state.bin_sum.size()) +
                ") differ from train.loss_by_t_bins (" + std::to_string(bins_) + ")");
  if (state.steps.size() != state.losses.size()) throw Error("loss log: /train/step and /train/loss differ in length");
  state_ = std::move(state);
}

void LossLog::write(const H5::Group& g) const {
  write_int64_vector(g, "step", state_.steps);
  write_double_vector(g, "loss", state_.losses);
  const hsize_t dims[2] = {state_.steps.size(), bins_};
  H5::DataSet by_t = g.createDataSet("loss_by_t", H5::PredType::NATIVE_DOUBLE, H5::DataSpace(2, dims));
  if (!state_.by_t.empty()) by_t.write(state_.by_t.data(), H5::PredType::NATIVE_DOUBLE);
  std::vector<double> edges(bins_ + 1);
  for (std::size_t b = 0; b <= bins_; ++b) edges[b] = t_min_ + (t_max_ - t_min_) * double(b) / double(bins_);
  write_double_vector(g, "loss_by_t_edges", edges);
}

}  // namespace diffusion
