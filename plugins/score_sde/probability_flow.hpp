#pragma once
// The probability-flow ODE of a denoiser on its path (Song et al. 2021, section 4.3, eq. 13):
//
//   dx/dt = f(t) x - 1/2 g(t)^2 score(x, t)
//
// written through the denoiser's predictions as v(x, t) = alpha'(t) x0_hat + sigma'(t) eps_hat.
// The two agree: with f = alpha'/alpha, g^2 = 2 sigma sigma' - 2 f sigma^2 (path.hpp),
// score = -eps_hat / sigma and x = alpha x0_hat + sigma eps_hat,
//
//   f x - 1/2 g^2 score = (alpha'/alpha)(alpha x0_hat + sigma eps_hat)
//                         + (sigma sigma' - (alpha'/alpha) sigma^2) eps_hat / sigma
//                       = alpha' x0_hat + (alpha'/alpha) sigma eps_hat + sigma' eps_hat
//                         - (alpha'/alpha) sigma eps_hat
//                       = alpha' x0_hat + sigma' eps_hat.
//
// The right-hand form divides by neither alpha nor sigma, so it also serves the flow-matching
// paths where alpha(t_max) = 0 (it is then the flow's velocity E[sigma' z + alpha' x0 | x_t]).
#include <diffusion/components.hpp>
#include <diffusion/integrate/ode.hpp>

namespace diffusion::score_sde {

/// v(x, t) for every row of x (N, ...) at one time t, into v (reused when it has x's shape);
/// `scratch` holds the prediction (reused across calls).
void probability_flow_velocity(const Denoiser& model, const Tensor& x, double t, const Condition& condition,
                               Prediction& scratch, Tensor& v);

/// dx/dt = v(x, t) as a field for the core's integrators (integrate/ode.hpp). The field holds
/// references to model and condition: both must outlive it.
VectorField probability_flow_field(const Denoiser& model, const Condition& condition);

/// v(x, t) on the autodiff graph, differentiable with respect to x (for divergences):
/// alpha' * x0_hat + sigma' * eps_hat from Denoiser::predict_var.
Var probability_flow_velocity_var(const Denoiser& model, const Var& x, double t, const Condition& condition);

}  // namespace diffusion::score_sde
