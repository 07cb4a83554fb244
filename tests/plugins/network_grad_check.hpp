#pragma once
// Gradient checks of a whole network's parameters: every parameter's gradient of
// L = sum(forward() * R) against grad_check's fourth-order central difference and tolerances.
// grad_check::check_gradients takes its inputs as leaves, but a registered network owns its
// parameters, so they are perturbed in place here.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <diffusion/components.hpp>

#include "core/grad_check.hpp"

namespace network_grad_check {

/// Called after each parameter's element-wise check with the parameter, its analytic gradient
/// and L at the current weights (for checks of the test's own, e.g. a directional derivative).
using ParameterCheck = std::function<void(const std::string& name, diffusion::Var& p, const diffusion::Tensor& analytic,
                                          const std::function<double()>& projected)>;

inline void check_parameter_gradients(diffusion::Network& net, const std::function<diffusion::Var()>& forward,
                                      const ParameterCheck& also = {}) {
  using namespace diffusion;
  const grad_check::Options opt;
  Rng rng(opt.seed);
  net.zero_grad();
  const Var y = forward();
  const Tensor r = rng.normal(shape_of(y.value()));
  y.backward(r);
  const std::function<double()> projected = [&] {
    NoGradScope no_grad;
    const Tensor v = forward().value();
    double s = 0;
    for (std::size_t i = 0; i < v.size(); ++i) s += double(v.data()[i]) * r.data()[i];
    return s;
  };
  for (auto& [name, p] : net.named_parameters()) {
    const Tensor analytic = p.grad();
    std::vector<double> numeric(p.value().size());
    for (std::size_t j = 0; j < numeric.size(); ++j) {
      float& w = p.value().data()[j];
      const float w0 = w;
      const double h = std::exp2(std::round(std::log2(opt.step * std::max(1.0, std::fabs(double(w0))))));
      const auto at = [&](double dw) {
        w = static_cast<float>(w0 + dw);
        const double v = projected();
        w = w0;
        return v;
      };
      numeric[j] = (8.0 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12.0 * h);
    }
    double scale = 1.0;
    for (double v : numeric) scale = std::max(scale, std::fabs(v));
    std::size_t failures = 0;
    for (std::size_t j = 0; j < numeric.size(); ++j)
      if (!(std::fabs(analytic.data()[j] - numeric[j]) <= opt.atol * scale + opt.rtol * std::fabs(numeric[j]))) ++failures;
    CAPTURE(name, scale);
    CHECK(failures == 0);
    if (also) also(name, p, analytic, projected);
  }
}

}  // namespace network_grad_check
