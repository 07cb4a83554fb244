// The frozen target draft (De Bortoli et al. 2025, section 3.2): no draft network; over the
// whole draft window the target's last prediction stands in for the ones it has not made yet.
// With `freeze: x0` the denoised estimate x0_hat is kept and the noise estimate follows from the
// path at each drafted state y and time t, eps = (y - alpha_t x0_hat) / sigma_t; with
// `freeze: eps` eps_hat is kept and x0 = (y - sigma_t eps_hat) / alpha_t. The sampler hands it
// the prediction the target made at the chain's state one step before the window: the draft
// kernel differs from the target's only by how much that prediction would have changed since.
// Which one changes less depends on the noise level: on moons (experiments/speculative_moons.yaml)
// x0_hat is nearly constant at high noise and eps_hat at the last few steps.
#include "draft.hpp"

namespace diffusion::speculative {
namespace {

class FrozenTargetDraft : public Draft {
 public:
  explicit FrozenTargetDraft(Frozen frozen) : frozen_(frozen) {}
  std::string name() const override { return "frozen_target"; }
  bool needs_last_target_prediction() const override { return true; }
  bool evaluates_network() const override { return false; }

  void predict(const Denoiser& target, const SampleRequest&, const Tensor& x, const Times& t, const Condition&,
               const Prediction& last, Prediction& out) const override {
    const Path& path = target.path();
    const std::size_t n = x.shape()[0], per = n ? x.size() / n : 0;
    if (shape_of(out.x0) != shape_of(x)) out.x0 = Tensor::from_shape(shape_of(x));
    if (shape_of(out.eps) != shape_of(x)) out.eps = Tensor::from_shape(shape_of(x));
    for (std::size_t i = 0; i < n; ++i) {
      const double a = path.alpha(t[i]), s = path.sigma(t[i]);
      for (std::size_t j = i * per; j < (i + 1) * per; ++j) {
        const double y = x.data()[j];
        if (frozen_ == Frozen::x0) {
          const double x0 = last.x0.data()[j];
          out.x0.data()[j] = float(x0);
          out.eps.data()[j] = float((y - a * x0) / s);
        } else {
          const double eps = last.eps.data()[j];
          out.eps.data()[j] = float(eps);
          out.x0.data()[j] = float((y - s * eps) / a);
        }
      }
    }
  }

 private:
  Frozen frozen_;
};

}  // namespace

std::shared_ptr<const Draft> make_frozen_target_draft(Frozen frozen) {
  return std::make_shared<FrozenTargetDraft>(frozen);
}

}  // namespace diffusion::speculative
