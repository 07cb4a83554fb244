#pragma once
// What every denoising regression loss computes before its network call: for data x0 paired
// with source draws z at times t, the noisy points x_t = alpha(t) x0 + sigma(t) z, the network's
// input c_in x_t and noise input c_noise, and the target the preconditioning makes F regress on.
#include "diffusion/model/path.hpp"
#include "diffusion/model/preconditioning.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

struct DenoisingBatch {
  Tensor input;    ///< c_in x_t, shaped like x0
  Tensor c_noise;  ///< (N)
  Tensor target;   ///< F's regression target, shaped like x0
};

/// x0 and z (N, ...), t (N) in the path's units.
DenoisingBatch denoising_batch(const Path& path, const Preconditioning& pre, const Tensor& x0, const Tensor& z,
                               const Tensor& t);

}  // namespace diffusion
