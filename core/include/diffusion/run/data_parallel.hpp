#pragma once
// A training step's loss and gradients with the batch cut into equal shards that run at once
// on the core's threads: data parallelism inside one process. Each shard's loss and backward
// pass run on one thread, start to finish, with single-threaded matrix products; the
// parameters' gradients collect in one GradSink per shard and are added in shard order. On two
// cores this beats splitting every product of a small network in two, which pays a hand-off
// per op and leaves the elementwise work serial.
//
// The numbers depend on the number of shards (each shard draws its own noise and times, and
// the gradient is summed per shard), never on the number of threads.
//
// Assumes what every loss satisfies by construction (loss.hpp): a shard's loss is a mean over
// its samples, so the mean of the shards' losses is the batch's loss; and the network's forward
// pass only reads its parameters, so two threads may run it at once.
#include <cstddef>
#include <vector>

#include "diffusion/autodiff/grad_sink.hpp"
#include "diffusion/model/condition.hpp"
#include "diffusion/tensor/parallel.hpp"
#include "diffusion/tensor/random.hpp"

namespace diffusion {

class ShardedStep {
 public:
  /// shards >= 1; 1 runs the plain step (loss, then backward) on the whole batch.
  ShardedStep(std::vector<Var> params, std::size_t shards);

  std::size_t shards() const { return shards_; }

  /// The loss of the batch x0 (its rows divisible by the shard count) with its condition,
  /// with the parameters' gradients of it left in their grads (replacing what was there).
  /// `loss(x0, condition, rng, shard)` returns the scalar loss of shard `shard` (0 unsharded).
  /// Sharded, the step draws one number from rng and each shard draws from its own stream
  /// split from it.
  template <class LossFn>
  double run(const Tensor& x0, const Condition& c, Rng& rng, const LossFn& loss) {
    for (Var& p : params_) p.zero_grad();
    if (shards_ == 1) {
      const Var l = loss(x0, c, rng, std::size_t{0});
      l.backward();
      return l.item();
    }
    split(x0, c);
    const Rng base(rng.next_u64());
    parallel_for(shards_, [&](std::size_t s) {
      Rng shard_rng = base.split(std::uint64_t{s});
      GradSink::Scope scope(sinks_[s]);
      backward(s, loss(x0_[s], conditions_[s], shard_rng, s));
    });
    return reduce();
  }

 private:
  void split(const Tensor& x0, const Condition& c);
  void backward(std::size_t shard, const Var& loss);  // in the shard's sink scope
  double reduce();  // the shards' gradients into the parameters; the mean loss

  std::vector<Var> params_;
  std::size_t shards_;
  std::vector<GradSink> sinks_;
  // Per shard, reused across steps.
  std::vector<Tensor> x0_;
  std::vector<Condition> conditions_;
  std::vector<double> losses_;
};

}  // namespace diffusion
