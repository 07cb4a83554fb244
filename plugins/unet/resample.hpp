#pragma once
// The U-Net's changes of resolution (Ho et al. 2020): down by a 3x3 convolution of stride 2
// (padding 1: H -> H / 2 for even H), up by nearest-neighbour doubling followed by a 3x3
// convolution.
#include <cstddef>
#include <memory>

#include <diffusion/nn/image_layers.hpp>

namespace diffusion::unet {

/// (N, C, H, W) -> (N, C, H / 2, W / 2); child "conv".
class Downsample : public Module {
 public:
  Downsample(std::size_t channels, Rng& rng);
  Var forward(const Var& x) const;

 private:
  std::shared_ptr<Conv2d> conv_;
};

/// (N, C, H, W) -> (N, C, 2 H, 2 W); child "conv".
class Upsample : public Module {
 public:
  Upsample(std::size_t channels, Rng& rng);
  Var forward(const Var& x) const;

 private:
  std::shared_ptr<Conv2d> conv_;
};

}  // namespace diffusion::unet
