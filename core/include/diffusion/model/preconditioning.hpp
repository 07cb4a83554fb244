#pragma once
// Preconditioning: one object that turns a raw network F into a denoiser (Karras et al. 2022,
// EDM, section 5 and Table 1; k-diffusion's get_scalings):
//
//   D(x, t) = c_skip(t) x + c_out(t) F(c_in(t) x, c_noise(t)),
//
// with D the estimate of the clean data x0. The loss that trains F and the denoiser that samples
// it use the same object, so the training target and the sampling inverse cannot disagree.
// On the path x = alpha x0 + sigma eps, predicting eps, x0, v, the score or the velocity are
// special cases (predictions.hpp), each with closed forms so that no rounding is added to the
// classic parameterisations.
#include <memory>
#include <string>

#include "diffusion/model/path.hpp"

namespace diffusion {

/// EDM's scalings at one time.
struct Scalings {
  double c_skip, c_out, c_in, c_noise;
};

/// y = (x * x + f * F) / div, elementwise: how one output follows from the network's input x
/// and its output F at one time.
struct LinearReadout {
  double x, f, div;
};

/// How x0_hat and eps_hat follow from x_t and F.
struct Readout {
  LinearReadout x0, eps;
};

/// F's regression target for a training pair: x0 * x0 + eps * eps, where x_t = alpha x0 + sigma eps.
struct Target {
  double x0, eps;
};

class Preconditioning {
 public:
  virtual ~Preconditioning() = default;
  /// For messages and the results file ("eps", "edm").
  virtual std::string name() const = 0;
  /// c_skip, c_out, c_in and c_noise at time t of the path.
  virtual Scalings scalings(const Path& path, double t) const = 0;
  /// x0_hat = c_skip x + c_out F, eps_hat = (x - alpha x0_hat) / sigma; a special case may
  /// override with its closed form.
  virtual Readout readout(const Path& path, double t) const;
  /// The target that makes D(x_t) = x0 exactly: F* = (x0 - c_skip x_t) / c_out, in x0 and eps.
  virtual Target target(const Path& path, double t) const;
};

}  // namespace diffusion
