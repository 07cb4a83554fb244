#pragma once
// DiT's time embedding (Peebles & Xie 2023, sec. 3.2 "Conditioning"; the paper's
// TimestepEmbedder): the sinusoidal frequency embedding of the time (Vaswani et al. 2017), then
// an MLP Linear - SiLU - Linear to the hidden width.
#include <cstddef>
#include <memory>

#include <diffusion/nn/layers.hpp>

namespace diffusion::dit {

/// Children "fc1" (frequency_dim -> hidden) and "fc2" (hidden -> hidden). The weights are drawn
/// from N(0, 0.02^2) and the biases are zero, as DiT's initialize_weights.
class TimestepEmbedder : public Module {
 public:
  TimestepEmbedder(std::size_t hidden, std::size_t frequency_dim, Rng& rng);
  /// t (N) -> (N, hidden).
  Var forward(const Tensor& t) const;

 private:
  std::shared_ptr<SinusoidalEmbedding> frequencies_;
  std::shared_ptr<Linear> fc1_, fc2_;
};

}  // namespace diffusion::dit
