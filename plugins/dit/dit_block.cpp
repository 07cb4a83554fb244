#include "dit_block.hpp"

namespace diffusion::dit {

Var layer_norm_no_affine(const Var& x) { return layer_norm(x, Var(), Var(), 1e-6f); }

Var chunk(const Var& m, std::size_t k, std::size_t width) { return slice(m, 1, k * width, (k + 1) * width); }

Var gated(const Var& gate, const Var& y) {
  const Shape g = gate.shape();
  return reshape(gate, {long(g[0]), 1, long(g[1])}) * y;
}

DiTBlock::DiTBlock(std::size_t hidden, std::size_t heads, std::size_t mlp_hidden, Rng& rng) : hidden_(hidden) {
  attn_ = register_module("attn", std::make_shared<MultiHeadAttention>(hidden, heads, rng));
  fc1_ = register_module("fc1", std::make_shared<Linear>(hidden, mlp_hidden, true, rng, Init::xavier_uniform));
  fc2_ = register_module("fc2", std::make_shared<Linear>(mlp_hidden, hidden, true, rng, Init::xavier_uniform));
  adaln_ = register_module("adaLN", std::make_shared<Linear>(hidden, 6 * hidden, true, rng, Init::zeros));
}

Var DiTBlock::forward(const Var& x, const Var& silu_c) const {
  const std::size_t h = hidden_;
  const Var m = adaln_->forward(silu_c);  // (N, 6 hidden)
  const Var shift_msa = chunk(m, 0, h), scale_msa = chunk(m, 1, h), gate_msa = chunk(m, 2, h);
  const Var shift_mlp = chunk(m, 3, h), scale_mlp = chunk(m, 4, h), gate_mlp = chunk(m, 5, h);
  const Var a = x + gated(gate_msa, attn_->forward(modulate(layer_norm_no_affine(x), scale_msa, shift_msa, -1)));
  // The MLP's GELU is the exact (erf) one, the core's; DiT's code uses the tanh approximation.
  const Var mlp = fc2_->forward(fc1_->forward(modulate(layer_norm_no_affine(a), scale_mlp, shift_mlp, -1), Activation::gelu));
  return a + gated(gate_mlp, mlp);
}

}  // namespace diffusion::dit
