// The linear (rectified flow, Lipman et al.'s sigma_min) and cosine flow paths; see flow_paths.hpp.
#include "flow_paths.hpp"

#include <cmath>

#include <diffusion/plugin.hpp>

namespace diffusion::flow_matching {

double CosineFlowPath::alpha(double t) const { return std::cos(0.5 * kPi * t); }
double CosineFlowPath::sigma(double t) const { return std::sin(0.5 * kPi * t); }
double CosineFlowPath::alpha_deriv(double t) const { return -0.5 * kPi * std::sin(0.5 * kPi * t); }
double CosineFlowPath::sigma_deriv(double t) const { return 0.5 * kPi * std::cos(0.5 * kPi * t); }
double CosineFlowPath::time_at_log_snr(double lambda) const { return 2.0 / kPi * std::atan(std::exp(-0.5 * lambda)); }

namespace {

std::shared_ptr<Path> make_linear(const ConfigNode& c, const BuildContext&) {
  return std::make_shared<LinearFlowPath>(c.get_double("sigma_min", 0.0, Interval::half_open(0.0, 1.0)));
}

std::shared_ptr<Path> make_cosine(const ConfigNode&, const BuildContext&) { return std::make_shared<CosineFlowPath>(); }

}  // namespace

DIFFUSION_REGISTER(paths, "linear", make_linear);
DIFFUSION_REGISTER(paths, "cosine", make_cosine);

}  // namespace diffusion::flow_matching
