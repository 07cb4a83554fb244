#include "particle_weights.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::smc {

double log_sum_exp(const std::vector<double>& log_w) {
  double top = -std::numeric_limits<double>::infinity();
  for (const double l : log_w) top = std::max(top, l);
  if (!std::isfinite(top)) return top;
  double s = 0;
  for (const double l : log_w) s += std::exp(l - top);
  return top + std::log(s);
}

double log_mean_exp(const std::vector<double>& log_w) {
  return log_sum_exp(log_w) - std::log(double(log_w.size()));
}

std::vector<double> normalized_weights(const std::vector<double>& log_w, const char* where) {
  const double total = log_sum_exp(log_w);
  if (!std::isfinite(total))
    throw Error(std::string(where) + ": every particle has weight " + (std::isnan(total) ? "NaN" : total > 0 ? "inf" : "0") +
                " (the potential rules out all of them; a softer intermediate potential or more particles may help)");
  std::vector<double> w(log_w.size());
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::exp(log_w[i] - total);
  return w;
}

double effective_sample_size(const std::vector<double>& log_w) {
  const double total = log_sum_exp(log_w);
  if (!std::isfinite(total)) return 0.0;
  double s2 = 0;
  for (const double l : log_w) {
    const double w = std::exp(l - total);
    s2 += w * w;
  }
  return 1.0 / s2;
}

}  // namespace diffusion::smc
