// GroupNorm module: the group_norm op plus its per-channel affine parameters.
#include <string>

#include "diffusion/nn/image_layers.hpp"

namespace diffusion {

GroupNorm::GroupNorm(std::size_t groups, std::size_t channels, float eps, bool affine)
    : groups_(groups), channels_(channels), eps_(eps) {
  if (groups == 0 || channels == 0 || channels % groups != 0)
    throw Error("GroupNorm: " + std::to_string(groups) + " groups must divide " +
                std::to_string(channels) + " channels (both positive)");
  if (!(eps > 0.0f)) throw Error("GroupNorm: eps must be > 0");
  if (affine) {
    // Identity at initialisation, as torch.nn.GroupNorm.
    weight_ = register_parameter("weight", Var(ones({channels})));
    bias_ = register_parameter("bias", Var(zeros({channels})));
  }
}

Var GroupNorm::forward(const Var& x) const {
  const Shape s = x.shape();
  if (s.size() < 2 || s[1] != channels_)
    throw Error("GroupNorm(" + std::to_string(groups_) + ", " + std::to_string(channels_) +
                "): input of shape " + shape_str(s) + " needs (N, " + std::to_string(channels_) +
                ", ...)");
  return group_norm(x, groups_, weight_, bias_, eps_);
}

}  // namespace diffusion
