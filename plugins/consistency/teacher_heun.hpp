#pragma once
// One Heun step of the teacher's probability-flow ODE (CM paper, eq. 3 and section 4: the ODE
// solver Phi of consistency distillation is EDM's Heun solver, Karras et al. 2022, Algorithm 1
// without its stochastic churn). On a path x = x0 + sigma z the ODE in sigma is
//
//   dx/dsigma = (x - D(x, sigma)) / sigma,
//
// and the step from sigma_{n+1} to sigma_n (h = sigma_n - sigma_{n+1} < 0) is
//
//   d  = (x - D(x, sigma_{n+1})) / sigma_{n+1},   x' = x + h d,
//   d' = (x' - D(x', sigma_n)) / sigma_n,         x_hat = x + h (d + d') / 2.
//
// Header-only: a pure function of a Denoiser, tested against the closed form on a Gaussian.
#include <cstddef>
#include <vector>

#include <diffusion/model/denoiser.hpp>

namespace diffusion::consistency {

/// x_hat for every row i from the path time t_from[i] to t_to[i] (sigma_to > 0); two
/// evaluations of the teacher.
inline Tensor probability_flow_heun_step(const Denoiser& teacher, const Tensor& x, const Times& t_from,
                                         const Times& t_to, const Condition& c) {
  const Path& path = teacher.path();
  const std::size_t n = x.shape()[0], per = x.size() / n;
  std::vector<double> s_from(n), s_to(n);
  for (std::size_t i = 0; i < n; ++i) s_from[i] = path.sigma(t_from[i]), s_to[i] = path.sigma(t_to[i]);
  Prediction p;
  teacher.predict(x, t_from, c, p);
  Tensor d = Tensor::from_shape(shape_of(x)), euler = Tensor::from_shape(shape_of(x));
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i * per; j < (i + 1) * per; ++j) {
      const double dj = (double(x.data()[j]) - p.x0.data()[j]) / s_from[i];
      d.data()[j] = static_cast<float>(dj);
      euler.data()[j] = static_cast<float>(x.data()[j] + (s_to[i] - s_from[i]) * dj);
    }
  teacher.predict(euler, t_to, c, p);
  Tensor out = Tensor::from_shape(shape_of(x));
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i * per; j < (i + 1) * per; ++j) {
      const double d2 = (double(euler.data()[j]) - p.x0.data()[j]) / s_to[i];
      out.data()[j] = static_cast<float>(x.data()[j] + (s_to[i] - s_from[i]) * 0.5 * (double(d.data()[j]) + d2));
    }
  return out;
}

}  // namespace diffusion::consistency
