#pragma once
// DiT's final layer (Peebles & Xie 2023, sec. 3.2 "Transformer decoder"): LN without affine,
// adaLN modulation (shift, scale) = Linear(SiLU(c)), then a Linear to p p C values per token.
// Both linears are zero-initialised, so a fresh DiT outputs exactly 0.
#include <cstddef>
#include <memory>

#include <diffusion/nn/layers.hpp>

namespace diffusion::dit {

/// Children "adaLN" (hidden -> 2 hidden) and "linear" (hidden -> out_features).
class FinalLayer : public Module {
 public:
  FinalLayer(std::size_t hidden, std::size_t out_features, Rng& rng);
  /// x (N, T, hidden), silu_c (N, hidden) -> (N, T, out_features).
  Var forward(const Var& x, const Var& silu_c) const;

 private:
  std::size_t hidden_;
  std::shared_ptr<Linear> adaln_, linear_;
};

}  // namespace diffusion::dit
