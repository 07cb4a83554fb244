#pragma once
// The particles seen at one time t: the target's prediction (x0_hat and the FKC score gap) and
// the intermediate potential p~_t(x_t) = G(x0_hat(x_t)) (TDS's twisting function, Wu et al. 2023
// eq. 12; FK steering's potential on x0_hat), with its gradient in x_t when a twisted proposal
// needs it: then the prediction runs on the autodiff graph and one backward pass goes through
// the potential and the denoiser(s).
#include <vector>

#include "fk_target.hpp"
#include "potential.hpp"

namespace diffusion::smc {

struct TwistedState {
  TargetPrediction pred;
  std::vector<double> log_twist;  ///< log p~_t per row (empty without a potential)
  Tensor grad;                    ///< grad_x log p~_t (N, ...), when asked for
};

/// How much of log G(x0_hat) the twist at time t carries: log p~_t = lambda(t) log G(x0_hat(x_t)).
/// Any positive twist leaves the target exact (the final weight corrects to G itself), so this
/// only trades variance: `constant` (lambda = 1: TDS, FK steering) or `snr` (lambda =
/// alpha^2 / (alpha^2 + sigma^2), the signal's share of x_t's variance for unit-variance data).
/// A trained network's x0_hat = (x - sigma eps_hat) / alpha carries its eps error times
/// sigma / alpha (150 at VP's t = 1), so near the source x0_hat is noise and a full-strength
/// twist on it ruins the weights; `snr` fades it in as x0_hat becomes informative.
enum class TwistSchedule { constant, snr };
TwistSchedule read_twist_schedule(const ConfigNode& sampler);
double twist_scale_at(TwistSchedule schedule, const Path& path, double t);

/// Evaluate at x (every row at time t). `potential` may be null (no twist); `with_grad` needs
/// one. `lambda` scales log G (twist_scale_at).
void evaluate_twist(const BoundTarget& target, const Potential* potential, const PotentialContext& ctx,
                    const Tensor& x, double t, const Condition& c, bool with_grad, double lambda, TwistedState& out);

/// log G(x0) per row at the data: the final potential.
std::vector<double> final_potential(const Potential& potential, const PotentialContext& ctx, const Tensor& x0);

}  // namespace diffusion::smc
