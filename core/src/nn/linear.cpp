// Linear layer and its weight initialisations.
#include <cmath>

#include "diffusion/nn/layers.hpp"

namespace diffusion {

Init parse_init(const std::string& name) {
  if (name == "torch_default" || name == "default") return Init::torch_default;
  if (name == "xavier_uniform") return Init::xavier_uniform;
  if (name == "kaiming_normal") return Init::kaiming_normal;
  if (name == "zeros") return Init::zeros;
  throw Error("unknown init '" + name +
              "'; choices: kaiming_normal, torch_default (alias default), xavier_uniform, zeros");
}

std::string to_string(Init init) {
  switch (init) {
    case Init::torch_default: return "torch_default";
    case Init::xavier_uniform: return "xavier_uniform";
    case Init::kaiming_normal: return "kaiming_normal";
    case Init::zeros: return "zeros";
  }
  return "?";
}

std::pair<Tensor, Tensor> initial_parameters(Init init, const Shape& ws, const Shape& bs, double fan_in,
                                             double fan_out, bool bias, Rng& rng) {
  Tensor w, b = zeros(bs);
  switch (init) {
    case Init::torch_default: {
      // kaiming_uniform(a = sqrt(5)) has bound sqrt(6 / ((1 + a^2) fan_in)) = 1 / sqrt(fan_in),
      // and PyTorch draws the bias from the same range.
      const float bound = static_cast<float>(1.0 / std::sqrt(fan_in));
      w = rng.uniform(ws, -bound, bound);
      if (bias) b = rng.uniform(bs, -bound, bound);
      break;
    }
    case Init::xavier_uniform: {
      const float a = static_cast<float>(std::sqrt(6.0 / (fan_in + fan_out)));
      w = rng.uniform(ws, -a, a);
      break;
    }
    case Init::kaiming_normal:
      w = rng.normal(ws, 0.0f, static_cast<float>(std::sqrt(2.0 / fan_in)));
      break;
    case Init::zeros:
      w = zeros(ws);
      break;
  }
  return {std::move(w), std::move(b)};
}

Linear::Linear(std::size_t in_features, std::size_t out_features, bool bias, Rng& rng, Init init)
    : in_(in_features), out_(out_features) {
  if (in_ == 0 || out_ == 0)
    throw Error("Linear: features must be positive, got in=" + std::to_string(in_) +
                ", out=" + std::to_string(out_));
  const Shape ws{out_, in_}, bs{out_};
  const double fan_in = static_cast<double>(in_), fan_out = static_cast<double>(out_);
  auto [w, b] = initial_parameters(init, ws, bs, fan_in, fan_out, bias, rng);
  weight_ = register_parameter("weight", Var(std::move(w)));
  if (bias) bias_ = register_parameter("bias", Var(std::move(b)));
}

Var Linear::forward(const Var& x, Activation act) const {
  const Shape xs = x.shape();
  if (xs.empty() || xs.back() != in_)
    throw Error("Linear(" + std::to_string(in_) + " -> " + std::to_string(out_) +
                "): input of shape " + shape_str(xs) + " needs last dimension " + std::to_string(in_));
  return linear(x, weight_, bias_, act);
}

}  // namespace diffusion
