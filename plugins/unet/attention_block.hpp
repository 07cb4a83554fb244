#pragma once
// Self-attention over the pixels of a feature map, around a residual connection (Ho et al.
// 2020 use it at 16x16; Nichol & Dhariwal 2021 with several heads):
//   out = x + attn(GN(x))
// with attn the multi-head attention of the core (q, k, v, out projections), its output
// projection zero-initialised so a fresh block is the identity.
#include <cstddef>
#include <memory>

#include <diffusion/nn/image_layers.hpp>

namespace diffusion::unet {

class AttentionBlock : public Module {
 public:
  /// Children "norm" and "attn" ("attn.q", "attn.k", "attn.v", "attn.out"). heads must divide
  /// channels, groups must divide channels.
  AttentionBlock(std::size_t channels, std::size_t heads, std::size_t groups, Rng& rng);
  /// x (N, channels, H, W) -> same shape.
  Var forward(const Var& x) const;

 private:
  std::shared_ptr<GroupNorm> norm_;
  std::shared_ptr<MultiHeadAttention> attn_;
};

}  // namespace diffusion::unet
