#include "final_layer.hpp"

#include "dit_block.hpp"

namespace diffusion::dit {

FinalLayer::FinalLayer(std::size_t hidden, std::size_t out_features, Rng& rng) : hidden_(hidden) {
  adaln_ = register_module("adaLN", std::make_shared<Linear>(hidden, 2 * hidden, true, rng, Init::zeros));
  linear_ = register_module("linear", std::make_shared<Linear>(hidden, out_features, true, rng, Init::zeros));
}

Var FinalLayer::forward(const Var& x, const Var& silu_c) const {
  const Var m = adaln_->forward(silu_c);
  const Var shift = chunk(m, 0, hidden_), scale = chunk(m, 1, hidden_);
  return linear_->forward(modulate(layer_norm_no_affine(x), scale, shift, -1));
}

}  // namespace diffusion::dit
