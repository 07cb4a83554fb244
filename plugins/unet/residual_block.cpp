#include "residual_block.hpp"

namespace diffusion::unet {

ResidualBlock::ResidualBlock(std::size_t in, std::size_t out, std::size_t emb_dim,
                             std::size_t groups, float dropout, Rng& rng)
    : out_(out), dropout_(dropout) {
  const Conv2dOptions same{1, 1, 1};  // 3x3, stride 1, padding 1: keeps H and W
  norm1_ = register_module("norm1", std::make_shared<GroupNorm>(groups, in));
  conv1_ = register_module("conv1", std::make_shared<Conv2d>(in, out, 3, rng, same));
  emb_ = register_module("emb", std::make_shared<Linear>(emb_dim, 2 * out, true, rng));
  norm2_ = register_module("norm2", std::make_shared<GroupNorm>(groups, out));
  // Zero-initialised (Nichol & Dhariwal's zero_module): the block starts as its skip path.
  conv2_ = register_module("conv2", std::make_shared<Conv2d>(out, out, 3, rng, same, true, Init::zeros));
  if (in != out) skip_ = register_module("skip", std::make_shared<Conv2d>(in, out, 1, rng));
}

Var ResidualBlock::forward(const Var& x, const Var& emb_act, Rng* dropout_rng) const {
  Var h = conv1_->forward(silu(norm1_->forward(x)));
  // AdaGN: GN(h) (1 + scale) + shift, scale and shift per sample and channel.
  const Var scale_shift = emb_->forward(emb_act);  // (N, 2 out)
  h = modulate(norm2_->forward(h), slice(scale_shift, 1, 0, out_), slice(scale_shift, 1, out_, 2 * out_));
  h = silu(h);
  if (dropout_rng != nullptr) h = dropout(h, dropout_, *dropout_rng, true);
  h = conv2_->forward(h);
  return add(skip_ ? skip_->forward(x) : x, h);
}

}  // namespace diffusion::unet
