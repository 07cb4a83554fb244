// The multilayer perceptron, the workhorse network of the 2-D toy experiments.
#include "diffusion/nn/layers.hpp"

namespace diffusion {

MLP::MLP(const std::vector<std::size_t>& widths, Activation activation, Rng& rng, bool bias,
         Init init)
    : activation_(activation) {
  if (widths.size() < 2)
    throw Error("MLP: widths need at least {in, out}, got " + std::to_string(widths.size()) +
                " entries");
  // A ModuleList child gives the PyTorch-style paths layers.0.weight, layers.1.weight, ...
  auto list = register_module("layers", std::make_shared<ModuleList>());
  for (std::size_t i = 0; i + 1 < widths.size(); ++i)
    layers_.push_back(list->push_back(std::make_shared<Linear>(widths[i], widths[i + 1], bias, rng, init)));
}

Var MLP::forward(const Var& x) const {
  Var h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    // No activation on the output layer; the hidden ones are fused into the linear op.
    h = layers_[i]->forward(h, i + 1 < layers_.size() ? activation_ : Activation::identity);
  }
  return h;
}

}  // namespace diffusion
