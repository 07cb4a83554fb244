// Gradient clipping by the global norm, as torch.nn.utils.clip_grad_norm_ (norm type 2). The
// norm is accumulated in double so large networks do not lose small contributions.
#include <cmath>

#include "diffusion/optim/optim.hpp"

namespace diffusion {

double grad_norm(const std::vector<Var>& params) {
  double sum = 0.0;
  for (const auto& p : params) {
    if (!p.defined() || !p.has_grad()) continue;
    const Tensor& g = p.grad();
    const float* d = g.data();
    for (std::size_t j = 0, n = g.size(); j < n; ++j) sum += static_cast<double>(d[j]) * d[j];
  }
  return std::sqrt(sum);
}

double clip_grad_norm(const std::vector<Var>& params, double max_norm) {
  if (!(max_norm > 0.0)) throw Error("clip_grad_norm: max_norm must be > 0");
  const double norm = grad_norm(params);
  // The 1e-6 keeps the division finite for zero gradients, exactly as PyTorch does.
  const double scale = max_norm / (norm + 1e-6);
  if (scale < 1.0 || !std::isfinite(norm)) {
    const float s = static_cast<float>(scale);
    for (auto p : params) {
      if (!p.defined() || !p.has_grad()) continue;
      Tensor& g = p.grad();
      float* d = g.data();
      for (std::size_t j = 0, n = g.size(); j < n; ++j) d[j] *= s;
    }
  }
  return norm;
}

}  // namespace diffusion
