#include "diffusion/metrics/sample_metrics.hpp"

#include <algorithm>
#include <string>

#include "diffusion/metrics/metrics.hpp"

namespace diffusion {

double ExactW2Metric::compute(const Tensor& samples, const Tensor& reference, Rng&) const {
  return w2_exact(samples, reference);
}

void ExactW2Metric::check_sizes(std::size_t samples, std::size_t reference, std::size_t) const {
  if (samples != reference)
    throw Error("w2 (exact W2) needs as many samples as reference points, got " + std::to_string(samples) +
                " and " + std::to_string(reference) + "; use sliced_w2 for unequal sizes");
  if (samples > max_points_)
    throw Error("w2 (exact W2) of " + std::to_string(samples) +
                " points would not finish: its assignment takes up to ~n^3 time (40-80 s at 10000 points "
                "in 2-D, about ten times that for each doubling), so it is limited to " +
                std::to_string(max_points_) + " points; use sliced_w2 for more points (or raise the limit "
                "with `{type: w2, max_n: N}`)");
}

std::size_t ExactW2Metric::memory_bytes(std::size_t samples, std::size_t reference, std::size_t dim) const {
  const std::size_t n = std::max(samples, reference);
  // x, y, their centred copies and the solver's column copy, in double; ~10 arrays of n.
  std::size_t bytes = 5 * n * dim * sizeof(double) + 10 * n * sizeof(double);
  // Above dim 3 the solver streams an n x n matrix while it fits in 1 GiB (assignment.cpp).
  if (dim > 3 && n * n * sizeof(double) <= (std::size_t(1) << 30)) bytes += n * n * sizeof(double);
  return bytes;
}

double SlicedW2Metric::compute(const Tensor& samples, const Tensor& reference, Rng& rng) const {
  return sliced_w2(samples, reference, projections_, rng);
}

std::size_t SlicedW2Metric::memory_bytes(std::size_t samples, std::size_t reference, std::size_t dim) const {
  // Both sets in double and one projection of each.
  return (samples + reference) * (dim + 1) * sizeof(double);
}

void PairwiseMetric::check_sizes(std::size_t samples, std::size_t reference, std::size_t) const {
  const std::string name(name_);
  if (samples < min_points_ || reference < min_points_)
    throw Error(name + " needs at least " + std::to_string(min_points_) + " samples and " +
                std::to_string(min_points_) + " reference points, got " + std::to_string(samples) + " and " +
                std::to_string(reference));
  if (std::max(samples, reference) > max_points_)
    throw Error(name + " of " + std::to_string(std::max(samples, reference)) +
                " points would take hours: it sums over all pairs of points, (n + m)^2 terms (about 20 s at "
                "20000 points in 2-D), so it is limited to " +
                std::to_string(max_points_) +
                " points; use sliced_w2 for more points (or raise the limit with `{type: " + name + ", max_n: N}`)");
}

std::size_t PairwiseMetric::memory_bytes(std::size_t samples, std::size_t reference, std::size_t dim) const {
  return (samples + reference) * dim * sizeof(double) + std::max(samples, reference) * sizeof(double);
}

double MmdMetric::compute(const Tensor& samples, const Tensor& reference, Rng&) const {
  return mmd_rbf(samples, reference, bandwidths_);
}

double EnergyMetric::compute(const Tensor& samples, const Tensor& reference, Rng&) const {
  return energy_distance(samples, reference);
}

}  // namespace diffusion
