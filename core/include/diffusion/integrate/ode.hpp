#pragma once
// ODE integrators shared by every plugin (the role diffrax plays in JAX): fixed-step Euler,
// midpoint, Heun and RK4 on a grid of times, and adaptive Dormand-Prince 5(4) with error
// control. They know tensors only: the vector field is a callback, so a sampler integrates the
// probability-flow ODE and a metric the augmented likelihood ODE with the same code.
//
// A batch is integrated as one state with one step size for the whole batch (as torchdiffeq
// does): the error norm of an adaptive step is taken over every value of the batch, so the
// slowest row sets the step. Rows are not integrated independently.
// Time may run backwards (t1 < t0): the step h is then negative.
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// dy/dt = f(t, y): writes f(t, y) into dy (already shaped like y; overwrite every value).
using VectorField = std::function<void(double t, const Tensor& y, Tensor& dy)>;
/// Called after every accepted step with the new time and state (trajectories, stop checks).
using StepObserver = std::function<void(double t, const Tensor& y)>;

enum class OdeMethod { euler, midpoint, heun, rk4, dopri5 };
/// "euler", "midpoint", "heun", "rk4", "dopri5"; Error listing them for another name.
OdeMethod parse_ode_method(const std::string& name);
std::string ode_method_name(OdeMethod method);
/// The names parse_ode_method accepts, for config choices.
const std::vector<std::string>& ode_method_names();
/// Evaluations of f per step of a fixed-step method (1, 2, 2, 4); dopri5: 6 per attempted step
/// after the first (first-same-as-last).
std::size_t ode_method_stages(OdeMethod method);

/// What an integration cost.
struct OdeStats {
  std::size_t nfe = 0;       ///< evaluations of f
  std::size_t accepted = 0;  ///< steps taken
  std::size_t rejected = 0;  ///< adaptive steps tried and refused by the error test
};

/// Settings of the adaptive solver.
/// How dopri5 picks the next step from the error of the last ones.
enum class StepController {
  /// h safety err_n^(-0.7/5) err_{n-1}^(0.4/5) (Gustafsson 1991): smoother step sequences; it
  /// holds the error per step near safety^(1/0.06) = 0.17 of the tolerance.
  pi,
  /// h safety err^(-1/5), the controller of scipy's RK45 and torchdiffeq: it holds the error
  /// per step near safety^5 = 0.59 of the tolerance, with steps about 1.28 times longer.
  standard,
};

struct AdaptiveOptions {
  double rtol = 1e-5;  ///< >= 0
  double atol = 1e-5;  ///< > 0 (a zero value would divide by zero where y is 0)
  /// The first step's size (its magnitude: the sign follows t1 - t0); 0 picks it automatically
  /// (Hairer, Norsett & Wanner, section II.4), at the cost of one more evaluation of f.
  double first_step = 0.0;
  /// Accepted plus rejected steps allowed before the solver gives up with an Error naming the
  /// time reached (a stiff or non-finite field).
  std::size_t max_steps = 10000;
  double safety = 0.9;
  double min_factor = 0.2;   ///< the step never shrinks by more than this factor at once
  double max_factor = 10.0;  ///< nor grows by more than this
  StepController controller = StepController::pi;
};

/// Fixed steps: y from times[0] to times.back(), one step of `method` (not dopri5) per
/// interval of the grid (any strictly monotone sequence of at least two times). y is
/// overwritten with the result. Throws Error when the state becomes inf or NaN.
OdeStats integrate_fixed(OdeMethod method, const VectorField& f, const std::vector<double>& times, Tensor& y,
                         const StepObserver& observe = {});

/// Adaptive Dormand-Prince 5(4) (Dormand & Prince 1980; the 5th-order solution is propagated)
/// from t0 to t1. The error of a step is the RMS over the batch of
/// err_i / (atol + rtol max(|y0_i|, |y1_i|)); a step is accepted when that norm is <= 1, and
/// the next step follows options.controller (by default the PI controller of Gustafsson 1991;
/// Hairer & Wanner, section IV.2).
/// The last step is clipped to land exactly on t1. Evaluations: 1 + 6 per attempted step
/// (+1 when the first step is chosen automatically). Throws Error when max_steps is reached or
/// the field or the error estimate is not finite.
OdeStats integrate_adaptive(const VectorField& f, double t0, double t1, Tensor& y, const AdaptiveOptions& options = {},
                            const StepObserver& observe = {});

/// The integrators' checks of their arguments, for callers that prepare a grid or step on their
/// own. A grid: at least two finite times, strictly increasing or strictly decreasing; Error
/// naming `who` and the offending entry otherwise.
void check_time_grid(const std::vector<double>& times, const std::string& who);
/// Error naming `who` and the step from t_from to t_to when y holds an inf or NaN (the field
/// returned one, or the steps are too large for it).
void check_state_finite(const Tensor& y, const std::string& who, double t_from, double t_to);

/// Either: dopri5 integrates adaptively from times.front() to times.back() (the grid's inner
/// times are checked but not visited: the observer sees dopri5's own steps); the other methods
/// take the grid's steps.
OdeStats integrate(OdeMethod method, const VectorField& f, const std::vector<double>& times, Tensor& y,
                   const AdaptiveOptions& options = {}, const StepObserver& observe = {});

}  // namespace diffusion
