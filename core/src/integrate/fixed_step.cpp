// Explicit Runge-Kutta methods with one step per interval of a grid of times (Hairer, Norsett
// & Wanner, Solving ODEs I, section II.1): Euler (order 1), the explicit midpoint rule (order 2,
// eq. 1.3), Heun's trapezoidal predictor-corrector (order 2: the Euler predictor's slope and the
// slope at its end, averaged) and Kutta's classical RK4 (order 4, Table 1.2, left). With
// k_i = f(t + c_i h, y + h sum_j a_ij k_j), a step is y <- y + h sum_i b_i k_i.
//
// Also integrate(), which sends dopri5 to the adaptive solver and the rest here.
#include "diffusion/integrate/ode.hpp"

namespace diffusion {
namespace {

/// The stage slopes and the stage input, allocated once per integration.
struct Stages {
  Stages(const Tensor& y, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) k[i] = Tensor::from_shape(y.shape());
    if (count > 1) stage = Tensor::from_shape(y.shape());
  }
  Tensor k[4];
  Tensor stage;  ///< the input of stages 2..4 (Euler has none)
};

/// out = y + h k, each value in double before rounding to float (out may be y).
void add_slope(Tensor& out, const Tensor& y, double h, const Tensor& k) {
  float* o = out.data();
  const float *yp = y.data(), *kp = k.data();
  for (std::size_t i = 0, n = y.size(); i < n; ++i) o[i] = static_cast<float>(yp[i] + h * kp[i]);
}

// One step from t to t_next = t + h of each method. A stage at the step's end is evaluated at
// t_next itself (not t + h, which may round differently), so a field tabulated on the grid's
// times sees them exactly.

void euler_step(const VectorField& f, double t, double t_next, Tensor& y, Stages& s) {
  f(t, y, s.k[0]);
  add_slope(y, y, t_next - t, s.k[0]);
}

void midpoint_step(const VectorField& f, double t, double t_next, Tensor& y, Stages& s) {
  const double h = t_next - t;
  f(t, y, s.k[0]);
  add_slope(s.stage, y, 0.5 * h, s.k[0]);
  f(t + 0.5 * h, s.stage, s.k[1]);
  add_slope(y, y, h, s.k[1]);
}

void heun_step(const VectorField& f, double t, double t_next, Tensor& y, Stages& s) {
  const double h = t_next - t;
  f(t, y, s.k[0]);
  add_slope(s.stage, y, h, s.k[0]);  // Euler's predictor
  f(t_next, s.stage, s.k[1]);
  float* yp = y.data();
  const float *k1 = s.k[0].data(), *k2 = s.k[1].data();
  for (std::size_t i = 0, n = y.size(); i < n; ++i)
    yp[i] = static_cast<float>(yp[i] + 0.5 * h * (double(k1[i]) + double(k2[i])));
}

void rk4_step(const VectorField& f, double t, double t_next, Tensor& y, Stages& s) {
  const double h = t_next - t, t_half = t + 0.5 * h;
  f(t, y, s.k[0]);
  add_slope(s.stage, y, 0.5 * h, s.k[0]);
  f(t_half, s.stage, s.k[1]);
  add_slope(s.stage, y, 0.5 * h, s.k[1]);
  f(t_half, s.stage, s.k[2]);
  add_slope(s.stage, y, h, s.k[2]);
  f(t_next, s.stage, s.k[3]);
  float* yp = y.data();
  const float *k1 = s.k[0].data(), *k2 = s.k[1].data(), *k3 = s.k[2].data(), *k4 = s.k[3].data();
  for (std::size_t i = 0, n = y.size(); i < n; ++i)
    yp[i] = static_cast<float>(yp[i] + h / 6.0 * (double(k1[i]) + 2.0 * double(k2[i]) + 2.0 * double(k3[i]) +
                                                  double(k4[i])));
}

}  // namespace

OdeStats integrate_fixed(OdeMethod method, const VectorField& f, const std::vector<double>& times, Tensor& y,
                         const StepObserver& observe) {
  const std::string name = ode_method_name(method);
  if (method == OdeMethod::dopri5)
    throw Error("integrate_fixed: dopri5 is adaptive and takes no fixed grid; use integrate_adaptive or integrate");
  check_time_grid(times, name);
  using Step = void (*)(const VectorField&, double, double, Tensor&, Stages&);
  const Step step = method == OdeMethod::euler      ? euler_step
                    : method == OdeMethod::midpoint ? midpoint_step
                    : method == OdeMethod::heun     ? heun_step
                                                    : rk4_step;
  const std::size_t stages = ode_method_stages(method);
  Stages scratch(y, stages);
  OdeStats stats;
  for (std::size_t i = 0; i + 1 < times.size(); ++i) {
    step(f, times[i], times[i + 1], y, scratch);
    stats.nfe += stages;
    ++stats.accepted;
    check_state_finite(y, name, times[i], times[i + 1]);
    if (observe) observe(times[i + 1], y);
  }
  return stats;
}

OdeStats integrate(OdeMethod method, const VectorField& f, const std::vector<double>& times, Tensor& y,
                   const AdaptiveOptions& options, const StepObserver& observe) {
  if (method != OdeMethod::dopri5) return integrate_fixed(method, f, times, y, observe);
  check_time_grid(times, "dopri5");
  return integrate_adaptive(f, times.front(), times.back(), y, options, observe);
}

}  // namespace diffusion
