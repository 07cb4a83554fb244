// Activations by name, so configs can say `activation: silu`.
#include "diffusion/nn/layers.hpp"

namespace diffusion {

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::relu;
  if (name == "silu" || name == "swish") return Activation::silu;
  if (name == "gelu") return Activation::gelu;
  if (name == "tanh") return Activation::tanh;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "identity" || name == "none") return Activation::identity;
  throw Error("unknown activation '" + name +
              "'; choices: gelu, identity (alias none), relu, sigmoid, silu (alias swish), tanh");
}

std::string to_string(Activation a) {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::silu: return "silu";
    case Activation::gelu: return "gelu";
    case Activation::tanh: return "tanh";
    case Activation::sigmoid: return "sigmoid";
    case Activation::identity: return "identity";
  }
  return "?";
}

Var apply(Activation a, const Var& x) {
  switch (a) {
    case Activation::relu: return relu(x);
    case Activation::silu: return silu(x);
    case Activation::gelu: return gelu(x);
    case Activation::tanh: return tanh(x);
    case Activation::sigmoid: return sigmoid(x);
    case Activation::identity: return x;
  }
  throw Error("apply: invalid Activation value");
}

}  // namespace diffusion
