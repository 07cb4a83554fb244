// EDM's preconditioning (Table 1); see edm_preconditioning.hpp.
#include "edm_preconditioning.hpp"

#include <cmath>

#include <diffusion/plugin.hpp>

namespace diffusion::edm {

Scalings EdmPreconditioning::scalings(const Path& path, double t) const {
  const double a = path.alpha(t), s = path.sigma(t) / a, r = s * s + sd_ * sd_;
  const double c_skip = sd_ * sd_ / r, c_out = s * sd_ / std::sqrt(r), c_in = 1.0 / std::sqrt(r);
  return {c_skip / a, c_out, c_in / a, 0.25 * std::log(s)};
}

double EdmPreconditioning::loss_weight(double sigma) const {
  return (sigma * sigma + sd_ * sd_) / (sigma * sd_ * sigma * sd_);
}

namespace {

std::shared_ptr<const Preconditioning> make_edm_preconditioning(const ConfigNode& c, const BuildContext&) {
  return std::make_shared<EdmPreconditioning>(c.get_double("sigma_data", 0.5, Interval::greater_than(0.0)));
}

}  // namespace

DIFFUSION_REGISTER(preconditionings, "edm", make_edm_preconditioning);

}  // namespace diffusion::edm
