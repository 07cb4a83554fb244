#pragma once
// The core's sample metrics as components (registered as w2, sliced_w2, mmd and energy): the
// functions of metrics.hpp, with the sample sizes each can finish and the memory each needs.
// A size a metric cannot finish is refused when the experiment is composed, naming the metric
// that can (exact W2 of 10^7 points would run for years; sliced W2 takes a minute).
#include <cstddef>
#include <vector>

#include "diffusion/metrics/metric.hpp"

namespace diffusion {

/// Exact W2 (w2_exact). Its assignment takes up to ~n^3 time: in 2-D about 4 s at n = 5000 and
/// 40-80 s at n = 10000 between a poor model's samples and the data, ten times that per
/// doubling. Refuses n > max_points (default 10000) and unequal sizes.
class ExactW2Metric : public Metric {
 public:
  static constexpr std::size_t kDefaultMaxPoints = 10000;
  explicit ExactW2Metric(std::size_t max_points = kDefaultMaxPoints) : max_points_(max_points) {}
  double compute(const Tensor& samples, const Tensor& reference, Rng& rng) const override;
  void check_sizes(std::size_t samples, std::size_t reference, std::size_t dim) const override;
  /// The points in double, centred copies, the solver's per-column arrays, and for dim > 3
  /// the n x n cost matrix while it fits in 1 GiB.
  std::size_t memory_bytes(std::size_t samples, std::size_t reference, std::size_t dim) const override;

 private:
  std::size_t max_points_;
};

/// Sliced W2 (sliced_w2) with `projections` directions: O(P (n log n + n D)), no size limit.
class SlicedW2Metric : public Metric {
 public:
  explicit SlicedW2Metric(std::size_t projections) : projections_(projections) {}
  double compute(const Tensor& samples, const Tensor& reference, Rng& rng) const override;
  std::size_t memory_bytes(std::size_t samples, std::size_t reference, std::size_t dim) const override;

 private:
  std::size_t projections_;
};

/// A metric over all pairs of points, O((N + M)^2 D) time: refuses more than max_points points
/// per set (default 100000: MMD takes ~20 s at 20000 in 2-D, so ~8 min at 100000).
class PairwiseMetric : public Metric {
 public:
  static constexpr std::size_t kDefaultMaxPoints = 100000;
  PairwiseMetric(const char* name, std::size_t min_points, std::size_t max_points)
      : name_(name), min_points_(min_points), max_points_(max_points) {}
  void check_sizes(std::size_t samples, std::size_t reference, std::size_t dim) const override;
  /// Both sets in double (coordinate-major for MMD) and one row of distances.
  std::size_t memory_bytes(std::size_t samples, std::size_t reference, std::size_t dim) const override;

 private:
  const char* name_;
  std::size_t min_points_, max_points_;
};

/// The unbiased squared MMD (mmd_rbf) with these bandwidths: needs at least 2 points per set.
class MmdMetric : public PairwiseMetric {
 public:
  explicit MmdMetric(std::vector<double> bandwidths, std::size_t max_points = kDefaultMaxPoints)
      : PairwiseMetric("mmd", 2, max_points), bandwidths_(std::move(bandwidths)) {}
  double compute(const Tensor& samples, const Tensor& reference, Rng& rng) const override;

 private:
  std::vector<double> bandwidths_;
};

/// The energy distance (energy_distance).
class EnergyMetric : public PairwiseMetric {
 public:
  explicit EnergyMetric(std::size_t max_points = kDefaultMaxPoints) : PairwiseMetric("energy", 1, max_points) {}
  double compute(const Tensor& samples, const Tensor& reference, Rng& rng) const override;
};

}  // namespace diffusion
