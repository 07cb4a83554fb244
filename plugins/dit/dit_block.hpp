#pragma once
// One DiT block with adaLN-Zero conditioning (Peebles & Xie 2023, sec. 3.2, Figure 3):
//   (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp) = Linear(SiLU(c))
//   x = x + gate_msa * Attention(LN(x) (1 + scale_msa) + shift_msa)
//   x = x + gate_mlp * MLP(LN(x) (1 + scale_mlp) + shift_mlp)
// with LN without affine parameters (eps 1e-6). The modulation layer is zero-initialised, so
// every gate is 0 and a fresh block is the identity ("adaLN-Zero").
#include <cstddef>
#include <memory>

#include <diffusion/nn/image_layers.hpp>
#include <diffusion/nn/layers.hpp>

namespace diffusion::dit {

/// Children "adaLN" (hidden -> 6 hidden, zero), "attn" (MultiHeadAttention: q, k, v, out),
/// "fc1" (hidden -> mlp_ratio hidden, GELU) and "fc2" (back to hidden), the MLP's layers
/// Xavier-uniform with zero bias as DiT's initialize_weights.
class DiTBlock : public Module {
 public:
  DiTBlock(std::size_t hidden, std::size_t heads, std::size_t mlp_hidden, Rng& rng);
  /// x (N, T, hidden) tokens, silu_c (N, hidden) the conditioning after its SiLU (shared by
  /// every block) -> (N, T, hidden).
  Var forward(const Var& x, const Var& silu_c) const;

 private:
  std::size_t hidden_;
  std::shared_ptr<Linear> adaln_, fc1_, fc2_;
  std::shared_ptr<MultiHeadAttention> attn_;
};

/// LN(x) without affine parameters, eps 1e-6, over the last axis (the paper's norm1, norm2,
/// norm_final).
Var layer_norm_no_affine(const Var& x);
/// Chunk k of width `width` of the modulation m (N, chunks width) -> (N, width).
Var chunk(const Var& m, std::size_t k, std::size_t width);
/// gate (N, C) * y (N, T, C): one gate per sample and feature, the same for every token.
Var gated(const Var& gate, const Var& y);

}  // namespace diffusion::dit
