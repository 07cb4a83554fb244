#pragma once
// EDM's preconditioning (Karras et al. 2022, section 5 and Table 1, "Ours"), with sigma_data
// the data's standard deviation (default 0.5):
//
//   c_skip = sd^2 / (sigma^2 + sd^2)        c_out = sigma sd / sqrt(sigma^2 + sd^2)
//   c_in   = 1 / sqrt(sigma^2 + sd^2)       c_noise = ln(sigma) / 4
//
// chosen so that F's input and its training target have unit variance at every sigma and the
// network's errors are amplified as little as possible (appendix B.6). The loss weight
// lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 = 1 / c_out^2 makes the effective weight of F's
// regression lambda c_out^2 = 1 at every noise level (eq. 8).
//
// On a path with alpha != 1 the scalings are those of eq. 7's general form: with the
// noise-to-signal ratio sigma~ = sigma / alpha, D(x, t) = D~(x / alpha; sigma~), so c_skip and
// c_in are divided by alpha and everything else is read at sigma~. On EDM's own path (alpha = 1)
// they are Table 1's exactly.
#include <diffusion/components.hpp>

namespace diffusion::edm {

class EdmPreconditioning : public Preconditioning {
 public:
  explicit EdmPreconditioning(double sigma_data) : sd_(sigma_data) {}
  std::string name() const override { return "edm"; }
  Scalings scalings(const Path& path, double t) const override;
  double sigma_data() const { return sd_; }
  /// lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 at the noise-to-signal ratio sigma.
  double loss_weight(double sigma) const;

 private:
  double sd_;
};

}  // namespace diffusion::edm
