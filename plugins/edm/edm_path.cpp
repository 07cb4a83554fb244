// EDM's sigma path; see edm_path.hpp.
#include "edm_path.hpp"

#include <algorithm>
#include <cmath>

#include <diffusion/io/text.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/tensor/quasi_random.hpp>

namespace diffusion::edm {

float EdmPath::network_time(double t) const { return static_cast<float>(0.25 * std::log(t)); }

double EdmPath::time_at_quantile(double u) const {
  // The log-normal truncated to [t_min, t_max]: u is mapped onto the CDF's values there.
  const auto cdf = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  const double lo = cdf((std::log(t_min()) - kPMean) / kPStd), hi = cdf((std::log(t_max()) - kPMean) / kPStd);
  const double t = std::exp(kPMean + kPStd * normal_quantile(lo + u * (hi - lo)));
  return std::clamp(t, t_min(), t_max());
}

double EdmPath::time_at_log_snr(double lambda) const {
  return std::clamp(std::exp(-0.5 * lambda), t_min(), t_max());
}

namespace {

std::shared_ptr<Path> make_edm_path(const ConfigNode& c, const BuildContext&) {
  const double lo = c.get_double("sigma_min", 0.002, Interval::greater_than(0.0));
  const double hi = c.get_double("sigma_max", 80.0, Interval::greater_than(0.0));
  if (lo >= hi)
    c.at("sigma_min").error("sigma_min (" + format_number(lo) + ") must be below sigma_max (" + format_number(hi) +
                            ")");
  return std::make_shared<EdmPath>(lo, hi);
}

}  // namespace

DIFFUSION_REGISTER(paths, "edm", make_edm_path);

}  // namespace diffusion::edm
