#include "diffusion/run/data_parallel.hpp"

#include <algorithm>
#include <string>

namespace diffusion {

ShardedStep::ShardedStep(std::vector<Var> params, std::size_t shards)
    : params_(std::move(params)), shards_(shards) {
  if (shards_ < 1) throw Error("ShardedStep: expected at least one shard");
  if (shards_ > 1) sinks_.assign(shards_, GradSink(params_));
  x0_.resize(shards_);
  conditions_.resize(shards_);
  losses_.resize(shards_);
}

void ShardedStep::split(const Tensor& x0, const Condition& c) {
  const Shape shape = shape_of(x0);
  const std::size_t n = shape.empty() ? 0 : shape[0];
  if (n % shards_ != 0)
    throw Error("sharded step: a batch of " + std::to_string(n) + " does not split into " +
                std::to_string(shards_) + " equal shards");
  const std::size_t rows = n / shards_, per = n ? x0.size() / n : 0;
  Shape shard_shape = shape;
  shard_shape[0] = rows;
  for (std::size_t s = 0; s < shards_; ++s) {
    x0_[s] = Tensor::from_shape(shard_shape);
    std::copy(x0.data() + s * rows * per, x0.data() + (s + 1) * rows * per, x0_[s].data());
    conditions_[s] = c.empty() ? Condition() : c.slice(s * rows, (s + 1) * rows);
  }
}

void ShardedStep::backward(std::size_t s, const Var& loss) {
  if (loss.size() != 1) throw Error("sharded step: the loss is not a scalar");
  sinks_[s].clear();
  losses_[s] = loss.item();
  // Each shard's loss is its mean over its rows; seeding its backward pass with 1/shards makes
  // the shards' gradients add up to the batch mean's.
  Tensor seed = Tensor::from_shape(shape_of(loss.value()));
  *seed.data() = 1.0f / static_cast<float>(shards_);
  loss.backward(seed);
}

double ShardedStep::reduce() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    std::size_t first = shards_;
    for (std::size_t s = 0; s < shards_ && first == shards_; ++s)
      if (sinks_[s].has(i)) first = s;
    if (first == shards_) continue;  // no gradient reached this parameter
    Tensor& g = params_[i].grad();
    std::copy(sinks_[first].grad(i).begin(), sinks_[first].grad(i).end(), g.begin());
    for (std::size_t s = first + 1; s < shards_; ++s) {
      if (!sinks_[s].has(i)) continue;
      const float* src = sinks_[s].grad(i).data();
      float* dst = g.data();
      for (std::size_t j = 0, e = g.size(); j < e; ++j) dst[j] += src[j];
    }
  }
  double total = 0.0;
  for (const double l : losses_) total += l;
  return total / static_cast<double>(shards_);
}

}  // namespace diffusion
