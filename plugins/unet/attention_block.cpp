#include "attention_block.hpp"

namespace diffusion::unet {

AttentionBlock::AttentionBlock(std::size_t channels, std::size_t heads, std::size_t groups, Rng& rng) {
  norm_ = register_module("norm", std::make_shared<GroupNorm>(groups, channels));
  attn_ = register_module("attn", std::make_shared<MultiHeadAttention>(channels, heads, rng, true, Init::zeros));
}

Var AttentionBlock::forward(const Var& x) const { return add(x, attn_->forward_image(norm_->forward(x))); }

}  // namespace diffusion::unet
