#pragma once
// The U-Net's residual block (Ho et al. 2020, appendix B; Nichol & Dhariwal 2021, "AdaGN"):
//   h = conv1(SiLU(GN1(x)))
//   h = conv2(dropout(SiLU(GN2(h) (1 + scale) + shift)))     [scale, shift] = emb(SiLU(temb))
//   out = skip(x) + h
// conv2 starts at zero, so a fresh block is the identity (or its 1x1 skip projection).
#include <cstddef>
#include <memory>

#include <diffusion/nn/image_layers.hpp>
#include <diffusion/nn/layers.hpp>

namespace diffusion::unet {

class ResidualBlock : public Module {
 public:
  /// Children "norm1", "conv1", "emb" (emb_dim -> 2 out), "norm2", "conv2" and, when
  /// in != out, "skip" (1x1 convolution). groups must divide in and out.
  ResidualBlock(std::size_t in, std::size_t out, std::size_t emb_dim, std::size_t groups,
                float dropout, Rng& rng);
  /// x (N, in, H, W), emb_act = SiLU(time (+ class) embedding) (N, emb_dim) -> (N, out, H, W).
  /// dropout_rng null: no dropout (evaluation, or a forward without gradients).
  Var forward(const Var& x, const Var& emb_act, Rng* dropout_rng) const;

  std::size_t out_channels() const { return out_; }

 private:
  std::size_t out_;
  float dropout_;
  std::shared_ptr<GroupNorm> norm1_, norm2_;
  std::shared_ptr<Conv2d> conv1_, conv2_, skip_;
  std::shared_ptr<Linear> emb_;
};

}  // namespace diffusion::unet
