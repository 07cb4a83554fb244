// Dropout module: the dropout op, switched off in evaluation mode.
#include "diffusion/nn/image_layers.hpp"

namespace diffusion {

Dropout::Dropout(float p) : p_(p) {
  if (!(p >= 0.0f && p < 1.0f))
    throw Error("Dropout: probability must be in [0, 1), got " + std::to_string(p));
}

Var Dropout::forward(const Var& x, Rng& rng) const { return dropout(x, p_, rng, is_training()); }

}  // namespace diffusion
