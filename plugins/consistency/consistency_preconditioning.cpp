#include "consistency_preconditioning.hpp"

#include <cmath>

#include <diffusion/plugin.hpp>

#include "noise_levels.hpp"

namespace diffusion::consistency {

Scalings ConsistencyPreconditioning::scalings(const Path& path, double t) const {
  if (path.alpha(t) != 1.0) require_unit_alpha(path, "preconditioning consistency");
  const double sigma = path.sigma(t), sigma_min = path.sigma(path.t_min()), sd2 = sigma_data_ * sigma_data_;
  const double gap = sigma - sigma_min;
  Scalings k;
  k.c_skip = sd2 / (gap * gap + sd2);
  k.c_out = gap * sigma_data_ / std::sqrt(sigma * sigma + sd2);
  k.c_in = 1.0 / std::sqrt(sigma * sigma + sd2);
  k.c_noise = noise_ == NoiseInput::path ? double(path.network_time(t)) : noise_scale_ * 0.25 * std::log(sigma);
  return k;
}

Target ConsistencyPreconditioning::target(const Path&, double) const {
  throw Error("preconditioning consistency: a consistency model has no regression target (train it with the "
              "consistency_distillation or consistency_training loss)");
}

namespace {

std::shared_ptr<Preconditioning> make_consistency(const ConfigNode& c, const BuildContext&) {
  const double sigma_data = c.get_double("sigma_data", 0.5, Interval::greater_than(0));
  const auto noise = c.get_choice("c_noise", "path", {"path", "log_sigma"}) == "path"
                         ? ConsistencyPreconditioning::NoiseInput::path
                         : ConsistencyPreconditioning::NoiseInput::log_sigma;
  const double scale = c.get_double("c_noise_scale", 1.0, Interval::greater_than(0));
  if (noise == ConsistencyPreconditioning::NoiseInput::path && c.has("c_noise_scale"))
    c.at("c_noise_scale").error("c_noise_scale scales c_noise: log_sigma; with c_noise: path the path's network time is used");
  return std::make_shared<ConsistencyPreconditioning>(sigma_data, noise, scale);
}

}  // namespace

DIFFUSION_REGISTER(preconditionings, "consistency", make_consistency);

}  // namespace diffusion::consistency
