// The general readout and target, and the classic parameterisations as special cases.
#include "diffusion/model/preconditioning.hpp"

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

Readout Preconditioning::readout(const Path& path, double t) const {
  const Scalings k = scalings(path, t);
  const double a = path.alpha(t), s = path.sigma(t);
  // eps_hat = (x - a x0_hat) / s with x0_hat = c_skip x + c_out F.
  return {{k.c_skip, k.c_out, 1.0}, {1.0 - a * k.c_skip, -a * k.c_out, s}};
}

Target Preconditioning::target(const Path& path, double t) const {
  const Scalings k = scalings(path, t);
  const double a = path.alpha(t), s = path.sigma(t);
  // F* = (x0 - c_skip (a x0 + s eps)) / c_out.
  return {(1.0 - k.c_skip * a) / k.c_out, -k.c_skip * s / k.c_out};
}

}  // namespace diffusion
