#include "unet_layer.hpp"

namespace diffusion::unet {

Var UNetLayer::forward(const Var& x, const Var& emb_act, Rng* dropout_rng) const {
  Var h = x;
  if (res_) h = res_->forward(h, emb_act, dropout_rng);
  if (attn_) h = attn_->forward(h);
  if (down_) h = down_->forward(h);
  if (up_) h = up_->forward(h);
  return h;
}

}  // namespace diffusion::unet
