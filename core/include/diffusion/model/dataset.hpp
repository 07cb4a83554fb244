#pragma once
// A data distribution to learn (or to start from: a Source may be any data set).
#include <cstddef>

#include "diffusion/model/condition.hpp"
#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Shape of one sample, e.g. {2}.
  virtual Shape sample_shape() const = 0;
  /// Number of classes (labels 0..n-1), or 0 for unlabelled data.
  virtual int num_classes() const { return 0; }
  /// n samples of shape (n, sample_shape...) drawn from rng, in the data's own coordinates.
  /// When `condition` is given it receives what the samples are conditioned on: their labels
  /// (labelled data sets) and any named tensors.
  virtual Tensor sample(std::size_t n, Rng& rng, Condition* condition = nullptr) const = 0;
  /// n independent draws of data the model was not trained on, their labels into `condition`
  /// when given. The metric floor and held-out metrics (nll) use them, so they measure what
  /// truly fresh data scores. A data set that spreads one draw evenly (moons, as sklearn's
  /// make_moons) overrides this to draw every point on its own; a finite one (images) draws
  /// its test split.
  virtual Tensor sample_independent(std::size_t n, Rng& rng, Condition* condition = nullptr) const {
    return sample(n, rng, condition);
  }
  /// True when the data's density is known in closed form (a Gaussian mixture): likelihood
  /// metrics then have a floor, the true negative log-density of their held-out data.
  virtual bool has_log_density() const { return false; }
  /// log p(x) per row of x (N, sample_shape...) in the data's coordinates, as (N); Error unless
  /// has_log_density().
  virtual Tensor log_density(const Tensor& x) const;
};

}  // namespace diffusion
