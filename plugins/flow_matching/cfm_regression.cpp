// The conditional flow matching regression; see cfm_regression.hpp.
#include "cfm_regression.hpp"

#include <diffusion/model/denoising_batch.hpp>
#include <diffusion/model/predictions.hpp>

namespace diffusion::flow_matching {

std::shared_ptr<const Preconditioning> velocity_preconditioning() {
  static const std::shared_ptr<const Preconditioning> velocity = make_prediction("velocity");
  return velocity;
}

LossValues cfm_regression(Network& net, const Path& path, const Tensor& x0, const Tensor& z, Tensor t,
                          const Condition& c) {
  const std::size_t n = x0.shape()[0];
  c.check_rows(n, "loss");
  // The velocity preconditioning's target is alpha' x0 + sigma' z and its input x_t itself.
  DenoisingBatch b = denoising_batch(path, *velocity_preconditioning(), x0, z, t);
  const Var v = net.forward(Var(std::move(b.input)), b.c_noise, c);
  const Var sq = sum(reshape(square(v - Var(std::move(b.target))), {static_cast<long>(n), -1}), {1});
  return {sq, std::move(t)};
}

Tensor draw_times(const Path& path, std::size_t n, bool low_discrepancy, Rng& rng) {
  return low_discrepancy ? low_discrepancy_times(path, n, rng) : path.sample_times(n, rng);
}

}  // namespace diffusion::flow_matching
