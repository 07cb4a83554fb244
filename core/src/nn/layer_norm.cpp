// LayerNorm module: the layer_norm op plus its affine parameters.
#include "diffusion/nn/layers.hpp"

namespace diffusion {

LayerNorm::LayerNorm(std::size_t dim, float eps, bool affine) : dim_(dim), eps_(eps) {
  if (dim == 0) throw Error("LayerNorm: dim must be positive");
  if (!(eps > 0.0f)) throw Error("LayerNorm: eps must be > 0");
  if (affine) {
    // Identity at initialisation, as torch.nn.LayerNorm.
    weight_ = register_parameter("weight", Var(ones({dim})));
    bias_ = register_parameter("bias", Var(zeros({dim})));
  }
}

Var LayerNorm::forward(const Var& x) const {
  const Shape s = x.shape();
  if (s.empty() || s.back() != dim_)
    throw Error("LayerNorm(" + std::to_string(dim_) + "): input of shape " + shape_str(s) +
                " needs last dimension " + std::to_string(dim_));
  return layer_norm(x, weight_, bias_, eps_);
}

}  // namespace diffusion
