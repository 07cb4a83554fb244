#pragma once
// A network F(x, c_noise, condition): what a Preconditioning turns into a denoiser.
#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/model/condition.hpp"
#include "diffusion/nn/module.hpp"

namespace diffusion {

class Network : public Module {
 public:
  /// True if the network reads class labels from the condition (then training and sampling
  /// pass them).
  virtual bool class_conditional() const { return false; }
  /// x: (N, sample_shape...), already scaled by c_in; t: (N) noise inputs c_noise; c: empty or
  /// N rows. Returns a tensor shaped like x. May run on several threads at once (shards): it
  /// reads its parameters and writes nothing else.
  virtual Var forward(const Var& x, const Tensor& t, const Condition& c) = 0;
};

}  // namespace diffusion
