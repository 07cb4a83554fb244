#pragma once
// What a component's factory may need besides its own YAML node.
#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

struct BuildContext {
  Shape data_shape;      ///< shape of one sample in the model's space, e.g. {2} for points (a codec
                         ///< factory sees the data's own shape)
  int num_classes = 0;   ///< 0 when the data set has no labels
  Rng* rng = nullptr;    ///< stream for initialisation (network weights, fixed features)
};

}  // namespace diffusion
