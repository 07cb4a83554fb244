// Conv2d layer: the conv2d op with its weight, bias and PyTorch's initialisations.
#include <cmath>
#include <string>
#include <utility>

#include "diffusion/nn/image_layers.hpp"

namespace diffusion {

Conv2d::Conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel, Rng& rng,
               const Conv2dOptions& options, bool bias, Init init)
    : in_(in_channels), out_(out_channels), kernel_(kernel), options_(options) {
  const std::string who = "Conv2d(" + std::to_string(in_) + " -> " + std::to_string(out_) + ")";
  if (in_ == 0 || out_ == 0 || kernel_ == 0)
    throw Error(who + ": channels and kernel must be positive, got kernel " +
                std::to_string(kernel_));
  if (options_.groups == 0 || in_ % options_.groups != 0 || out_ % options_.groups != 0)
    throw Error(who + ": groups " + std::to_string(options_.groups) +
                " must divide both channel counts");
  if (options_.stride == 0) throw Error(who + ": stride must be positive");
  const std::size_t taps = kernel_ * kernel_;
  const Shape ws{out_, in_ / options_.groups, kernel_, kernel_}, bs{out_};
  // Fans as PyTorch counts them for convolutions: receptive field times channels.
  const double fan_in = double(in_ / options_.groups * taps), fan_out = double(out_ * taps);
  auto [w, b] = initial_parameters(init, ws, bs, fan_in, fan_out, bias, rng);
  weight_ = register_parameter("weight", Var(std::move(w)));
  if (bias) bias_ = register_parameter("bias", Var(std::move(b)));
}

Var Conv2d::forward(const Var& x) const {
  const Shape s = x.shape();
  if (s.size() != 4 || s[1] != in_)
    throw Error("Conv2d(" + std::to_string(in_) + " -> " + std::to_string(out_) +
                "): input of shape " + shape_str(s) + " needs (N, " + std::to_string(in_) +
                ", H, W)");
  return conv2d(x, weight_, bias_, options_);
}

}  // namespace diffusion
