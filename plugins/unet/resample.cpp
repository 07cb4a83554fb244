#include "resample.hpp"

namespace diffusion::unet {

Downsample::Downsample(std::size_t channels, Rng& rng) {
  conv_ = register_module("conv", std::make_shared<Conv2d>(channels, channels, 3, rng, Conv2dOptions{2, 1, 1}));
}

Var Downsample::forward(const Var& x) const { return conv_->forward(x); }

Upsample::Upsample(std::size_t channels, Rng& rng) {
  conv_ = register_module("conv", std::make_shared<Conv2d>(channels, channels, 3, rng, Conv2dOptions{1, 1, 1}));
}

Var Upsample::forward(const Var& x) const { return conv_->forward(upsample_nearest(x, 2)); }

}  // namespace diffusion::unet
