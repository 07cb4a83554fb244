// Adaptive Dormand-Prince 5(4) (Dormand & Prince 1980, "A family of embedded Runge-Kutta
// formulae", RK5(4)7M; the tableau as in Hairer, Norsett & Wanner, Solving ODEs I, section II.5,
// Table 5.2). Seven stages; the 5th-order solution is propagated (local extrapolation) and the
// difference to the embedded 4th-order one estimates the error. The 7th stage is evaluated at
// the new solution, so it is the next step's first stage (first same as last): an accepted step
// costs six new evaluations.
//
// Error test: err = RMS over every value of the batch of e_i / (atol + rtol max(|y0_i|, |y1_i|)),
// one step size for the whole batch (as torchdiffeq does); the step is accepted when err <= 1.
// Step size: the PI controller of Gustafsson (1991) in Hairer & Wanner, Solving ODEs II,
// section IV.2, eq. 2.43c, h_new = h safety err_n^(-beta1) err_{n-1}^beta2 with beta1 = 0.7/5,
// beta2 = 0.4/5 (or, with StepController::standard, the plain h safety err^(-1/5) of scipy and
// torchdiffeq); after a rejection the plain controller h safety err^(-1/5), never growing, and
// the step after a rejection does not grow either (Hairer & Wanner I, section II.4).
// The first step, when not given: Hairer, Norsett & Wanner I, section II.4, "Starting step size".
#include <algorithm>
#include <cmath>
#include <string>

#include "diffusion/integrate/ode.hpp"
#include "diffusion/io/text.hpp"

namespace diffusion {
namespace {

// The Butcher tableau: c_i, a_ij, the 5th-order weights b_i (= a_7j) and the 4th-order weights
// bh_i of the embedded solution.
constexpr double c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9;
constexpr double a21 = 1.0 / 5;
constexpr double a31 = 3.0 / 40, a32 = 9.0 / 40;
constexpr double a41 = 44.0 / 45, a42 = -56.0 / 15, a43 = 32.0 / 9;
constexpr double a51 = 19372.0 / 6561, a52 = -25360.0 / 2187, a53 = 64448.0 / 6561, a54 = -212.0 / 729;
constexpr double a61 = 9017.0 / 3168, a62 = -355.0 / 33, a63 = 46732.0 / 5247, a64 = 49.0 / 176,
                 a65 = -5103.0 / 18656;
constexpr double b1 = 35.0 / 384, b3 = 500.0 / 1113, b4 = 125.0 / 192, b5 = -2187.0 / 6784, b6 = 11.0 / 84;
constexpr double bh1 = 5179.0 / 57600, bh3 = 7571.0 / 16695, bh4 = 393.0 / 640, bh5 = -92097.0 / 339200,
                 bh6 = 187.0 / 2100, bh7 = 1.0 / 40;
// The error estimate's weights, b - bh (b2 = bh2 = 0, b7 = 0).
constexpr double e1 = b1 - bh1, e3 = b3 - bh3, e4 = b4 - bh4, e5 = b5 - bh5, e6 = b6 - bh6, e7 = -bh7;

constexpr double kBeta1 = 0.7 / 5, kBeta2 = 0.4 / 5;  // PI controller exponents for order 4 + 1
constexpr double kMinErr = 1e-10;                    // keeps err^(-beta1) finite when err = 0

/// The stage slopes and stage input, allocated once per integration.
struct Workspace {
  explicit Workspace(const Tensor& y) {
    for (auto& k : ks) k = Tensor::from_shape(y.shape());
    stage = Tensor::from_shape(y.shape());
  }
  Tensor ks[7];
  Tensor stage;  ///< the input of stages 2..6, then the new solution (the input of stage 7)
};

bool all_finite(const Tensor& t) {
  return std::all_of(t.data(), t.data() + t.size(), [](float v) { return std::isfinite(v); });
}

/// RMS of v_i / (atol + rtol |y_i|), the weighted norm of the starting step's rule.
double weighted_rms(const float* v, const float* y, std::size_t n, double atol, double rtol) {
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double r = v[i] / (atol + rtol * std::fabs(y[i]));
    sum += r * r;
  }
  return std::sqrt(sum / double(n));
}

/// Hairer, Norsett & Wanner I, section II.4: a step whose Euler error would be about 1% of the
/// tolerance, from the sizes of y0, f(t0, y0) and a difference estimate of f's derivative along
/// one small Euler step (one evaluation of f, into f1; y1 is scratch). Returns |h|.
double starting_step(const VectorField& f, double t0, double direction, const Tensor& y0, const Tensor& f0,
                     Tensor& y1, Tensor& f1, const AdaptiveOptions& o) {
  const std::size_t n = y0.size();
  const double d0 = weighted_rms(y0.data(), y0.data(), n, o.atol, o.rtol);
  const double d1 = weighted_rms(f0.data(), y0.data(), n, o.atol, o.rtol);
  const double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
  float* y1p = y1.data();
  const float *y0p = y0.data(), *f0p = f0.data();
  for (std::size_t i = 0; i < n; ++i) y1p[i] = static_cast<float>(y0p[i] + direction * h0 * f0p[i]);
  f(t0 + direction * h0, y1, f1);
  double sum = 0;
  const float* f1p = f1.data();
  for (std::size_t i = 0; i < n; ++i) {
    const double r = (double(f1p[i]) - f0p[i]) / (o.atol + o.rtol * std::fabs(y0p[i]));
    sum += r * r;
  }
  const double d2 = std::sqrt(sum / double(n)) / h0;
  if (!std::isfinite(d2))
    throw Error("dopri5: the vector field is not finite at t = " + format_number(t0 + direction * h0) +
                " (choosing the first step from t0 = " + format_number(t0) + ")");
  const double h1 = (d1 <= 1e-15 && d2 <= 1e-15) ? std::max(1e-6, 1e-3 * h0)
                                                 : std::pow(0.01 / std::max(d1, d2), 1.0 / 5);
  return std::min(100 * h0, h1);
}

void check_options(const AdaptiveOptions& o, double t0, double t1) {
  const auto bad = [](const std::string& what) { throw Error("dopri5: " + what); };
  if (!std::isfinite(t0) || !std::isfinite(t1))
    bad("the times must be finite, got t0 = " + format_number(t0) + ", t1 = " + format_number(t1));
  if (!(o.atol > 0) || !std::isfinite(o.atol)) bad("atol must be positive and finite, got " + format_number(o.atol));
  if (!(o.rtol >= 0) || !std::isfinite(o.rtol)) bad("rtol must be >= 0 and finite, got " + format_number(o.rtol));
  if (!(o.first_step >= 0) || !std::isfinite(o.first_step))
    bad("first_step must be >= 0 (0: chosen automatically), got " + format_number(o.first_step));
  if (o.max_steps == 0) bad("max_steps must be at least 1");
  if (!(o.safety > 0 && o.safety <= 1)) bad("safety must be in (0, 1], got " + format_number(o.safety));
  if (!(o.min_factor > 0 && o.min_factor <= 1))
    bad("min_factor must be in (0, 1], got " + format_number(o.min_factor));
  if (!(o.max_factor >= 1) || !std::isfinite(o.max_factor))
    bad("max_factor must be >= 1 and finite, got " + format_number(o.max_factor));
}

}  // namespace

OdeStats integrate_adaptive(const VectorField& f, double t0, double t1, Tensor& y, const AdaptiveOptions& options,
                            const StepObserver& observe) {
  check_options(options, t0, t1);
  OdeStats stats;
  if (t0 == t1 || y.size() == 0) return stats;
  if (!all_finite(y)) throw Error("dopri5: the initial state at t0 = " + format_number(t0) + " is not finite");
  const double direction = t1 > t0 ? 1.0 : -1.0;
  const double atol = options.atol, rtol = options.rtol;
  const std::size_t n = y.size();

  Workspace w(y);
  Tensor &k1 = w.ks[0], &k2 = w.ks[1], &k3 = w.ks[2], &k4 = w.ks[3], &k5 = w.ks[4], &k6 = w.ks[5], &k7 = w.ks[6];
  f(t0, y, k1);
  ++stats.nfe;
  if (!all_finite(k1)) throw Error("dopri5: the vector field is not finite at t0 = " + format_number(t0));

  double h = options.first_step;
  if (h == 0) {
    h = starting_step(f, t0, direction, y, k1, w.stage, k2, options);
    ++stats.nfe;
  }
  h *= direction;

  double t = t0;
  double err_prev = 1.0;       // err_{n-1} of the PI controller, 1 before the first accepted step
  bool after_reject = false;  // the step after a rejection may not grow
  float* yp = y.data();
  float* sp = w.stage.data();
  while (t != t1) {
    if (stats.accepted + stats.rejected >= options.max_steps)
      throw Error("dopri5: max_steps = " + std::to_string(options.max_steps) +
                  " (accepted + rejected steps) reached at t = " + format_number(t) + " on the way from " +
                  format_number(t0) + " to " + format_number(t1) + ", step size " + format_number(h) +
                  "; the field may be stiff: raise max_steps or loosen rtol/atol");
    // The last step lands exactly on t1.
    const bool last = direction * (t + h - t1) >= 0;
    if (last) h = t1 - t;
    const double t_new = last ? t1 : t + h;
    if (t_new == t)
      throw Error("dopri5: the step size underflowed to " + format_number(h) + " at t = " + format_number(t) +
                  " (on the way to " + format_number(t1) + ", after " + std::to_string(stats.accepted) +
                  " accepted steps); the field is not smooth or not finite near there");

    // Stages 2..6 from the same input buffer; then the 5th-order solution and stage 7 there.
    const float *q1 = k1.data(), *q2 = k2.data(), *q3 = k3.data(), *q4 = k4.data(), *q5 = k5.data(),
                *q6 = k6.data(), *q7 = k7.data();
    for (std::size_t i = 0; i < n; ++i) sp[i] = static_cast<float>(yp[i] + h * (a21 * q1[i]));
    f(t + c2 * h, w.stage, k2);
    for (std::size_t i = 0; i < n; ++i) sp[i] = static_cast<float>(yp[i] + h * (a31 * q1[i] + a32 * q2[i]));
    f(t + c3 * h, w.stage, k3);
    for (std::size_t i = 0; i < n; ++i)
      sp[i] = static_cast<float>(yp[i] + h * (a41 * q1[i] + a42 * q2[i] + a43 * q3[i]));
    f(t + c4 * h, w.stage, k4);
    for (std::size_t i = 0; i < n; ++i)
      sp[i] = static_cast<float>(yp[i] + h * (a51 * q1[i] + a52 * q2[i] + a53 * q3[i] + a54 * q4[i]));
    f(t + c5 * h, w.stage, k5);
    for (std::size_t i = 0; i < n; ++i)
      sp[i] = static_cast<float>(yp[i] + h * (a61 * q1[i] + a62 * q2[i] + a63 * q3[i] + a64 * q4[i] + a65 * q5[i]));
    f(t_new, w.stage, k6);
    for (std::size_t i = 0; i < n; ++i)
      sp[i] = static_cast<float>(yp[i] + h * (b1 * q1[i] + b3 * q3[i] + b4 * q4[i] + b5 * q5[i] + b6 * q6[i]));
    f(t_new, w.stage, k7);
    stats.nfe += 6;

    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double e = h * (e1 * q1[i] + e3 * q3[i] + e4 * q4[i] + e5 * q5[i] + e6 * q6[i] + e7 * q7[i]);
      const double r = e / (atol + rtol * std::max(std::fabs(double(yp[i])), std::fabs(double(sp[i]))));
      sum += r * r;
    }
    const double err = std::sqrt(sum / double(n));
    if (!std::isfinite(err)) {
      const bool field = !std::all_of(w.ks + 1, w.ks + 7, all_finite);
      throw Error(std::string("dopri5: ") +
                  (field ? "the vector field is not finite" : "the error estimate is not finite") +
                  " in the step from t = " + format_number(t) + " with step size " + format_number(h) + " (after " +
                  std::to_string(stats.accepted) + " accepted steps)");
    }

    double factor;
    if (err <= 1) {
      t = t_new;
      std::copy(sp, sp + n, yp);
      std::swap(k1, k7);  // first same as last
      ++stats.accepted;
      if (observe) observe(t, y);
      const double err_n = std::max(err, kMinErr);
      const double proposed = options.controller == StepController::pi
                                  ? options.safety * std::pow(err_n, -kBeta1) * std::pow(err_prev, kBeta2)
                                  : options.safety * std::pow(err_n, -1.0 / 5);
      factor = std::clamp(proposed, options.min_factor, options.max_factor);
      if (after_reject) factor = std::min(factor, 1.0);
      err_prev = err_n;
      after_reject = false;
    } else {
      ++stats.rejected;
      factor = std::clamp(options.safety * std::pow(err, -1.0 / 5), options.min_factor, 1.0);
      after_reject = true;
    }
    h *= factor;
  }
  return stats;
}

}  // namespace diffusion
