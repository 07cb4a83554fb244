#pragma once
// One entry of the U-Net's down or up path (improved-diffusion's TimestepEmbedSequential): a
// residual block, optionally followed by self-attention, or a change of resolution. Each entry
// of the down path saves its output for the skip connection of one entry of the up path.
#include <memory>

#include "attention_block.hpp"
#include "resample.hpp"
#include "residual_block.hpp"

namespace diffusion::unet {

class UNetLayer : public Module {
 public:
  /// Children, each optional, applied in this order: "res", "attn", "down" or "up".
  void set_res(std::shared_ptr<ResidualBlock> m) { res_ = register_module("res", std::move(m)); }
  void set_attn(std::shared_ptr<AttentionBlock> m) { attn_ = register_module("attn", std::move(m)); }
  void set_down(std::shared_ptr<Downsample> m) { down_ = register_module("down", std::move(m)); }
  void set_up(std::shared_ptr<Upsample> m) { up_ = register_module("up", std::move(m)); }

  Var forward(const Var& x, const Var& emb_act, Rng* dropout_rng) const;

 private:
  std::shared_ptr<ResidualBlock> res_;
  std::shared_ptr<AttentionBlock> attn_;
  std::shared_ptr<Downsample> down_;
  std::shared_ptr<Upsample> up_;
};

}  // namespace diffusion::unet
