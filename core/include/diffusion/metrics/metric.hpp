#pragma once
// The metric component: a distance between generated samples and reference data (lower is
// better). The core's (metrics.hpp) are registered as w2, sliced_w2, mmd and energy.
#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

class Metric {
 public:
  virtual ~Metric() = default;
  /// samples (N, ...) and reference (M, ...) in data coordinates.
  virtual double compute(const Tensor& samples, const Tensor& reference, Rng& rng) const = 0;
};

}  // namespace diffusion
