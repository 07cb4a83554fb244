#include "reverse_kernel.hpp"

#include <cmath>

namespace diffusion::smc {

ReverseKernel::ReverseKernel(const Path& path, double t, double s, bool last)
    : q(gaussian_posterior(path, t, s, last)),
      score_coef(q.c_x0 * path.sigma(t) * path.sigma(t) / path.alpha(t)),
      to_data(last) {}

void ReverseKernel::move(Tensor& x, const Tensor& x0_hat, const Tensor* grad, double shift_scale, Rng& rng,
                         std::vector<double>* log_ratio) const {
  float* px = x.data();
  const float* p0 = x0_hat.data();
  if (to_data) {
    for (std::size_t k = 0; k < x.size(); ++k) px[k] = p0[k];
    return;
  }
  const double sd = std::sqrt(q.variance);
  const Tensor z = rng.normal(shape_of(x));
  const float* pz = z.data();
  if (!grad || q.variance <= 0) {
    for (std::size_t k = 0; k < x.size(); ++k) px[k] = float(q.c_xt * px[k] + q.c_x0 * p0[k] + sd * pz[k]);
    return;
  }
  // x_s = m + delta + sd z with delta = shift_scale h grad: then
  // log N(x_s; m, v) - log N(x_s; m + delta, v) = -(z . delta) / sd - |delta|^2 / (2 v) per row.
  const std::size_t n = x.shape()[0], d = n ? x.size() / n : 0;
  const double c = shift_scale * score_coef;
  const float* pg = grad->data();
  for (std::size_t i = 0; i < n; ++i) {
    double zd = 0, dd = 0;
    for (std::size_t j = i * d; j < (i + 1) * d; ++j) {
      const double delta = c * pg[j];
      px[j] = float(q.c_xt * px[j] + q.c_x0 * p0[j] + delta + sd * pz[j]);
      zd += pz[j] * delta, dd += delta * delta;
    }
    if (log_ratio) (*log_ratio)[i] = -zd / sd - dd / (2 * q.variance);
  }
}

}  // namespace diffusion::smc
