// MultiHeadAttention module: q, k, v projections, the fused attention op, the out projection.
#include <memory>
#include <string>

#include "diffusion/nn/image_layers.hpp"

namespace diffusion {

MultiHeadAttention::MultiHeadAttention(std::size_t dim, std::size_t heads, Rng& rng, bool bias,
                                       Init out_init)
    : dim_(dim), heads_(heads) {
  if (dim == 0 || heads == 0 || dim % heads != 0)
    throw Error("MultiHeadAttention: " + std::to_string(heads) + " heads must divide dim " +
                std::to_string(dim) + " (both positive)");
  q_ = register_module("q", std::make_shared<Linear>(dim, dim, bias, rng));
  k_ = register_module("k", std::make_shared<Linear>(dim, dim, bias, rng));
  v_ = register_module("v", std::make_shared<Linear>(dim, dim, bias, rng));
  out_ = register_module("out", std::make_shared<Linear>(dim, dim, bias, rng, out_init));
}

Var MultiHeadAttention::forward(const Var& x) const { return forward(x, x); }

Var MultiHeadAttention::forward(const Var& x, const Var& context) const {
  for (const Var* t : {&x, &context}) {
    const Shape s = t->shape();
    if (s.size() != 3 || s[2] != dim_)
      throw Error("MultiHeadAttention(" + std::to_string(dim_) + "): " +
                  (t == &x ? "input " : "context ") + shape_str(s) + " needs (N, T, " +
                  std::to_string(dim_) + ")");
  }
  return out_->forward(
      attention(q_->forward(x), k_->forward(context), v_->forward(context), heads_));
}

Var MultiHeadAttention::forward_image(const Var& x) const {
  const Shape s = x.shape();
  if (s.size() != 4 || s[1] != dim_)
    throw Error("MultiHeadAttention(" + std::to_string(dim_) + "): image " + shape_str(s) +
                " needs (N, " + std::to_string(dim_) + ", H, W)");
  const long n = long(s[0]), c = long(s[1]), h = long(s[2]), w = long(s[3]);
  // (N, C, H W) -> (N, H W, C): pixels as tokens, and back.
  const Var tokens = permute(reshape(x, {n, c, h * w}), {0, 2, 1});
  return reshape(permute(forward(tokens), {0, 2, 1}), {n, c, h, w});
}

}  // namespace diffusion
