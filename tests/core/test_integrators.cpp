// The core's ODE and SDE integrators (integrate/ode.hpp, integrate/sde.hpp) against closed-form
// solutions: the convergence order of the fixed-step methods, dopri5's error against its
// tolerance, its step accounting, and the moments of Euler-Maruyama on an Ornstein-Uhlenbeck
// process.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "diffusion/integrate/ode.hpp"
#include "diffusion/integrate/sde.hpp"

using namespace diffusion;
using Catch::Matchers::Contains;

namespace {

using Vec2 = std::array<double, 2>;

std::vector<double> grid(double t0, double t1, std::size_t intervals) {
  std::vector<double> t(intervals + 1);
  for (std::size_t i = 0; i <= intervals; ++i) t[i] = t0 + (t1 - t0) * double(i) / double(intervals);
  t.back() = t1;
  return t;
}

/// (n, 2) tensor from rows.
Tensor rows_tensor(const std::vector<Vec2>& rows) {
  Tensor y = Tensor::from_shape({rows.size(), 2});
  for (std::size_t i = 0; i < rows.size(); ++i) y(i, 0) = float(rows[i][0]), y(i, 1) = float(rows[i][1]);
  return y;
}

/// e^{-d s} R(theta) z: the flow of z' = (-d I + w J) z over a time s in which the angle grows by theta.
Vec2 damped_turn(const Vec2& z, double d, double s, double theta) {
  const double e = std::exp(-d * s), c = std::cos(theta), sn = std::sin(theta);
  return {e * (c * z[0] - sn * z[1]), e * (sn * z[0] + c * z[1])};
}

/// y' = A y with A = [[-d, -w], [w, -d]], so y(t) = exp(A (t - t0)) y0 = e^{-d (t - t0)} R(w (t - t0)) y0.
struct DampedRotation {
  double d, w;
  VectorField field() const {
    const double d_ = d, w_ = w;
    return [d_, w_](double, const Tensor& y, Tensor& dy) {
      for (std::size_t i = 0; i < y.shape(0); ++i) {
        const float a = y(i, 0), b = y(i, 1);
        dy(i, 0) = float(-d_ * a - w_ * b);
        dy(i, 1) = float(w_ * a - d_ * b);
      }
    };
  }
  Vec2 exact(const Vec2& y0, double t0, double t) const { return damped_turn(y0, d, t - t0, w * (t - t0)); }
};

/// A nonlinear, time-dependent field with a closed form: z' = (-d I + w(t) J) z with
/// w(t) = kappa (1 + 2 t) (angle kappa (t + t^2) from t = 0), seen through the shear
/// y = (z1, z2 + z1^2). So y' = (v1, v2 + 2 z1 v1) with v = z' at z = (y1, y2 - y1^2). Runge-Kutta
/// methods are not invariant under such a change of variables, so this tests the nonlinear order
/// conditions and the stage times (a stage at the wrong time breaks the order).
struct ShearedTurn {
  double d, kappa;
  VectorField field() const {
    const double d_ = d, k_ = kappa;
    return [d_, k_](double t, const Tensor& y, Tensor& dy) {
      const double w = k_ * (1 + 2 * t);
      for (std::size_t i = 0; i < y.shape(0); ++i) {
        const double z1 = y(i, 0), z2 = y(i, 1) - z1 * z1;
        const double v1 = -d_ * z1 - w * z2, v2 = w * z1 - d_ * z2;
        dy(i, 0) = float(v1);
        dy(i, 1) = float(v2 + 2 * z1 * v1);
      }
    };
  }
  static Vec2 to_y(const Vec2& z) { return {z[0], z[1] + z[0] * z[0]}; }
  /// From y0 at t = 0.
  Vec2 exact(const Vec2& y0, double t) const {
    return to_y(damped_turn({y0[0], y0[1] - y0[0] * y0[0]}, d, t, kappa * (t + t * t)));
  }
};

/// Largest |y - exact| over the batch.
template <class Exact>
double max_error(const Tensor& y, const std::vector<Vec2>& y0, const Exact& exact) {
  double e = 0;
  for (std::size_t i = 0; i < y0.size(); ++i) {
    const Vec2 x = exact(y0[i]);
    e = std::max({e, std::fabs(y(i, 0) - x[0]), std::fabs(y(i, 1) - x[1])});
  }
  return e;
}

/// Largest |y - exact| / (atol + rtol |exact|): dopri5's error in units of its tolerance.
double max_error_in_tolerances(const Tensor& y, const std::vector<Vec2>& exact, double atol, double rtol) {
  double r = 0;
  for (std::size_t i = 0; i < exact.size(); ++i)
    for (std::size_t j = 0; j < 2; ++j)
      r = std::max(r, std::fabs(y(i, j) - exact[i][j]) / (atol + rtol * std::fabs(exact[i][j])));
  return r;
}

/// Least-squares slope of log(error) against log(h).
double fitted_slope(const std::vector<double>& h, const std::vector<double>& err) {
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < h.size(); ++i) mx += std::log(h[i]), my += std::log(err[i]);
  mx /= double(h.size()), my /= double(h.size());
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    const double dx = std::log(h[i]) - mx;
    sxy += dx * (std::log(err[i]) - my), sxx += dx * dx;
  }
  return sxy / sxx;
}

/// The observed order of `method` with N = 16, 32, 64, 128 steps from t0 to t1: the slope of the
/// largest error over the grid's times (the global error's sup norm, which unlike the error at
/// one time does not dip where oscillating errors happen to cancel). exact(y0, t): the solution.
struct Convergence {
  double order;
  std::vector<double> errors;  ///< at N = 16, 32, 64, 128
};

std::ostream& operator<<(std::ostream& os, const Convergence& c) {
  os << "order " << c.order << " (errors";
  for (double e : c.errors) os << " " << e;
  return os << ")";
}

template <class Exact>
Convergence observed_order(OdeMethod method, const VectorField& f, double t0, double t1, const std::vector<Vec2>& y0,
                      const Exact& exact) {
  std::vector<double> hs, errs;
  for (std::size_t n : {16, 32, 64, 128}) {
    Tensor y = rows_tensor(y0);
    double err = 0;
    const OdeStats s = integrate_fixed(method, f, grid(t0, t1, n), y, [&](double t, const Tensor& yt) {
      err = std::max(err, max_error(yt, y0, [&](const Vec2& x0) { return exact(x0, t); }));
    });
    REQUIRE(s.accepted == n);
    REQUIRE(s.nfe == n * ode_method_stages(method));
    hs.push_back((t1 - t0) / double(n));
    errs.push_back(err);
  }
  return {fitted_slope(hs, errs), errs};
}

const std::vector<Vec2> kStarts{{1.0, 0.5}, {-0.5, 1.0}, {0.3, -0.8}};

}  // namespace

// The state is float32, so the truncation error must stay well above the rounding error of the
// steps, about sqrt(N) 1e-7 (at N = 128, ~1e-6), yet N = 16 must already be in the asymptotic
// regime. Each method gets its own speed of rotation: for RK4 fast enough that the error at
// N = 128 is a few 1e-6 or more (slower, its fitted order sinks into rounding), with w h <= 0.75
// at N = 16; for Euler slow (w h <= 0.2), as its error at larger w h is dominated by amplitude
// growth, not by the leading term. (A simulation in double gives the same orders within 0.04.)
TEST_CASE("fixed-step methods converge with their orders (Euler 1 midpoint 2 Heun 2 RK4 4)", "[integrate]") {
  struct Case {
    OdeMethod method;
    double order, w, kappa;  // w: the linear rotation's speed on [0, 2]; kappa: the sheared turn's on [0, 1]
  };
  for (const Case& c : {Case{OdeMethod::euler, 1, 0.5, 0.5}, Case{OdeMethod::midpoint, 2, 2, 2},
                        Case{OdeMethod::heun, 2, 2, 2}, Case{OdeMethod::rk4, 4, 6, 4}}) {
    const DampedRotation rot{0.25, c.w};
    const Convergence linear = observed_order(c.method, rot.field(), 0, 2, kStarts,
                                              [&](const Vec2& y0, double t) { return rot.exact(y0, 0, t); });
    const ShearedTurn turn{0.5, c.kappa};
    std::vector<Vec2> starts;
    for (const Vec2& z : kStarts) starts.push_back(ShearedTurn::to_y(z));
    const Convergence nonlinear = observed_order(c.method, turn.field(), 0, 1, starts,
                                                 [&](const Vec2& y0, double t) { return turn.exact(y0, t); });
    INFO(ode_method_name(c.method) << ": linear rotation " << linear << "; sheared turn " << nonlinear);
    CHECK(std::fabs(linear.order - c.order) < 0.2);
    CHECK(std::fabs(nonlinear.order - c.order) < 0.2);
  }
}

TEST_CASE("fixed-step methods step on the grid backwards in time and call the observer", "[integrate]") {
  // RK4 from t = 1 down to t = -1 on an uneven grid: y(-1) = exp(A (-2)) y(1).
  const DampedRotation rot{0.25, 1.5};
  std::vector<double> times;
  for (int i = 0; i <= 40; ++i) times.push_back(1.0 - 2.0 * std::pow(i / 40.0, 1.3));
  Tensor y = rows_tensor(kStarts);
  std::vector<double> seen;
  const OdeStats s = integrate_fixed(OdeMethod::rk4, rot.field(), times, y,
                                     [&](double t, const Tensor&) { seen.push_back(t); });
  REQUIRE(s.accepted == 40);
  REQUIRE(s.nfe == 160);
  REQUIRE(s.rejected == 0);
  REQUIRE(seen == std::vector<double>(times.begin() + 1, times.end()));
  // RK4's error with w h <= 0.1 over a growth of e^{0.5}: a few 1e-6; 1e-4 is far above it and
  // far below a stage taken at a wrong time or a wrong sign of h (error O(1)).
  CHECK(max_error(y, kStarts, [&](const Vec2& y0) { return rot.exact(y0, 1, -1); }) < 1e-4);
}

// dopri5's tolerance. The controller keeps the estimated local error of each step (the
// difference to the embedded 4th-order solution) at RMS <= 1 in units of atol + rtol |y|; the
// propagated 5th-order solution's local error is smaller than that estimate by O(h) (local
// extrapolation). The global error is the sum of the local errors carried by the flow: forwards
// the damped rotation does not amplify them (|exp(A t)| <= 1); backwards from 1 to -2 it
// amplifies them by at most e^{0.3 * 3} = 2.5. Over the ~90-100 steps the phase errors, of
// either sign, partly cancel, so the global error is a few tolerances at most; float32 rounding
// adds about sqrt(steps) 6e-8 |y|, under one tolerance at rtol = 1e-6. Hence the bound of 10
// tolerances (measured: 1.3 forwards, 3.1 backwards), while a wrong tableau coefficient breaks the
// order (a32 = 9/41 instead of 9/40 gives ~3000 tolerances).
TEST_CASE("dopri5 meets its tolerance on a damped rotation forwards and backwards", "[integrate]") {
  const double tol = 1e-6;
  AdaptiveOptions o;
  o.rtol = o.atol = tol;
  const DampedRotation rot{0.3, 2 * M_PI};
  std::vector<Vec2> y0;
  for (int i = 0; i < 64; ++i) {
    const double r = 0.5 + 1.5 * i / 63.0, phi = 2 * M_PI * i / 64.0;
    y0.push_back({r * std::cos(phi), r * std::sin(phi)});
  }
  for (const auto& [t0, t1] : {std::pair{0.0, 3.0}, std::pair{1.0, -2.0}}) {
    Tensor y = rows_tensor(y0);
    std::vector<double> seen;
    const OdeStats s =
        integrate_adaptive(rot.field(), t0, t1, y, o, [&](double t, const Tensor&) { seen.push_back(t); });
    std::vector<Vec2> exact;
    for (const Vec2& x : y0) exact.push_back(rot.exact(x, t0, t1));
    const double ratio = max_error_in_tolerances(y, exact, tol, tol);
    INFO("from " << t0 << " to " << t1 << ": max error " << ratio << " tolerances, " << s.accepted << " accepted, "
                 << s.rejected << " rejected, nfe " << s.nfe);
    CHECK(ratio < 10);
    // Each accepted step is observed once, in the direction of time, ending exactly on t1.
    REQUIRE(seen.size() == s.accepted);
    REQUIRE(seen.back() == t1);
    for (std::size_t i = 1; i < seen.size(); ++i) REQUIRE((seen[i] - seen[i - 1]) * (t1 - t0) > 0);
    // Automatic first step: one extra evaluation; FSAL: six per attempted step after the first.
    REQUIRE(s.nfe == 6 * (s.accepted + s.rejected) + 2);
  }
}

namespace {

/// Van der Pol x'' - mu (1 - x^2) x' + x = 0 as (x, v).
Vec2 van_der_pol(const Vec2& y, double mu) { return {y[1], mu * (1 - y[0] * y[0]) * y[1] - y[0]}; }

/// A reference solution in double: classical RK4 with `steps` steps.
Vec2 van_der_pol_reference(Vec2 y, double mu, double t_end, int steps) {
  const double h = t_end / steps;
  const auto add = [](const Vec2& a, double s, const Vec2& b) { return Vec2{a[0] + s * b[0], a[1] + s * b[1]}; };
  for (int i = 0; i < steps; ++i) {
    const Vec2 k1 = van_der_pol(y, mu), k2 = van_der_pol(add(y, h / 2, k1), mu),
               k3 = van_der_pol(add(y, h / 2, k2), mu), k4 = van_der_pol(add(y, h, k3), mu);
    for (int j = 0; j < 2; ++j) y[j] += h / 6 * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j]);
  }
  return y;
}

}  // namespace

// The same argument as for the rotation, on a nonlinear field: Van der Pol with mu = 1 over
// [0, 2] is not stiff and expands perturbations only moderately (its divergence mu (1 - x^2) is
// at most 1), so the same bound of 10 tolerances applies (measured: 0.8). The reference, RK4 in
// double with h = 1e-4 (error ~h^4 ~ 1e-16), is exact at this scale.
TEST_CASE("dopri5 meets its tolerance on Van der Pol", "[integrate]") {
  const double tol = 1e-6, mu = 1.0, t_end = 2.0;
  AdaptiveOptions o;
  o.rtol = o.atol = tol;
  std::vector<Vec2> y0;
  for (int i = 0; i < 16; ++i) y0.push_back({-2.0 + 4.0 * i / 15.0, 1.5 * std::sin(0.7 * i)});
  const VectorField f = [mu](double, const Tensor& y, Tensor& dy) {
    for (std::size_t i = 0; i < y.shape(0); ++i) {
      const Vec2 d = van_der_pol({y(i, 0), y(i, 1)}, mu);
      dy(i, 0) = float(d[0]), dy(i, 1) = float(d[1]);
    }
  };
  Tensor y = rows_tensor(y0);
  const OdeStats s = integrate(OdeMethod::dopri5, f, {0.0, 0.5, t_end}, y, o);
  std::vector<Vec2> exact;
  for (const Vec2& x : y0) exact.push_back(van_der_pol_reference(x, mu, t_end, 20000));
  const double ratio = max_error_in_tolerances(y, exact, tol, tol);
  INFO("max error " << ratio << " tolerances, " << s.accepted << " accepted, " << s.rejected << " rejected, nfe "
                    << s.nfe);
  CHECK(ratio < 10);
  REQUIRE(s.nfe == 6 * (s.accepted + s.rejected) + 2);
}

TEST_CASE("dopri5 rejects a step that is too large and counts evaluations first-same-as-last", "[integrate]") {
  // A first step of the whole interval (four turns of the rotation) cannot pass the error test.
  const DampedRotation rot{0.3, 2 * M_PI};
  AdaptiveOptions o;
  o.rtol = o.atol = 1e-6;
  o.first_step = 4.0;
  Tensor y = rows_tensor(kStarts);
  const OdeStats s = integrate_adaptive(rot.field(), 0, 4, y, o);
  INFO(s.accepted << " accepted, " << s.rejected << " rejected, nfe " << s.nfe);
  CHECK(s.rejected > 0);
  CHECK(s.accepted > 0);
  // Given a first step: the first stage once, then six evaluations per attempted step.
  CHECK(s.nfe == 6 * (s.accepted + s.rejected) + 1);
  std::vector<Vec2> exact;
  for (const Vec2& x : kStarts) exact.push_back(rot.exact(x, 0, 4));
  CHECK(max_error_in_tolerances(y, exact, o.atol, o.rtol) < 10);

  // integrate() goes from the grid's first time to its last, the same as integrate_adaptive.
  Tensor z = rows_tensor(kStarts);
  const OdeStats sz = integrate(OdeMethod::dopri5, rot.field(), {0.0, 1.0, 2.5, 4.0}, z, o);
  CHECK(sz.nfe == s.nfe);
  CHECK(std::equal(y.begin(), y.end(), z.begin()));
}

TEST_CASE("the dopri5 controller shrinks a rejected step and does not grow the step after a rejection",
          "[integrate]") {
  // y' = g(t) with g = 0 before t = 3 and A (t - 3)^4 after it. With rtol = 0 the error of a step
  // is exactly 0 while its stages stay before t = 3, and huge when they reach past it. The times
  // the field is called at give every attempted step: after f(t0), six calls per attempt, the
  // first at t + h/5 and the fifth at t + h.
  std::vector<double> calls;
  const VectorField f = [&](double t, const Tensor&, Tensor& dy) {
    calls.push_back(t);
    dy.fill(t > 3 ? float(1e3 * std::pow(t - 3, 4)) : 0.0f);
  };
  AdaptiveOptions o;
  o.rtol = 0;
  o.atol = 1e-6;
  o.first_step = 4;
  Tensor y = zeros({1});
  integrate_adaptive(f, 0, 4, y, o);
  std::vector<double> tried;
  for (std::size_t j = 1; j + 5 < calls.size(); j += 6) tried.push_back((calls[j + 4] - calls[j]) * 5 / 4);
  REQUIRE(tried.size() >= 4);
  CHECK(tried[0] == Approx(4));    // rejected, error ~1e9: the I-controller's factor clamps to min_factor
  CHECK(tried[1] == Approx(0.8));  // accepted with error 0, so the PI factor would be max_factor = 10...
  CHECK(tried[2] == Approx(0.8));  // ...but the step right after a rejection does not grow
  // Then the PI factor 0.9 (1e-10)^(-0.7/5) (1e-10)^(0.4/5) = 3.58, clipped to the 2.4 left.
  CHECK(tried[3] == Approx(std::min(0.8 * 0.9 * std::pow(10.0, 0.6), 2.4)));
}

TEST_CASE("dopri5 on a zero field takes a few growing steps and leaves the state unchanged", "[integrate]") {
  // err = 0 on every step (clamped to 1e-10 before its power). The starting rule sees f = 0:
  // h0 = 1e-6 and h1 = max(1e-6, 1e-3 h0), so h = 1e-6. The first factor is
  // 0.9 (1e-10)^(-0.14) = 22.6, clamped to 10; every later one is
  // 0.9 (1e-10)^(-0.14) (1e-10)^(0.08) = 0.9 10^0.6 = 3.58 (the PI term damps the growth). Steps
  // 1e-6, 1e-5, 1e-5 3.58^k reach t = 1 within 11 steps, the last clipped.
  const VectorField zero = [](double, const Tensor&, Tensor& dy) { dy.fill(0.0f); };
  Tensor y = rows_tensor(kStarts);
  const Tensor y0 = y;
  const OdeStats s = integrate_adaptive(zero, 0, 1, y, {});
  CHECK(s.rejected == 0);
  CHECK(s.accepted == 11);
  CHECK(s.nfe == 6 * 11 + 2);
  CHECK(std::equal(y.begin(), y.end(), y0.begin()));
}

TEST_CASE("dopri5 with the standard controller grows a zero field's steps by max_factor", "[integrate]") {
  // err = 0 (clamped to 1e-10): 0.9 (1e-10)^(-1/5) = 90, clamped to 10 on every step, with no PI
  // term to damp it. From h = 1e-6 (as above): 1e-6, 1e-5, ..., 1e-1 reach 0.111111, and the
  // seventh step, 1, is clipped to the 0.888889 left.
  const VectorField zero = [](double, const Tensor&, Tensor& dy) { dy.fill(0.0f); };
  AdaptiveOptions o;
  o.controller = StepController::standard;
  std::vector<double> seen;
  Tensor y = rows_tensor(kStarts);
  const OdeStats s = integrate_adaptive(zero, 0, 1, y, o, [&](double t, const Tensor&) { seen.push_back(t); });
  CHECK(s.rejected == 0);
  REQUIRE(s.accepted == 7);
  for (int k = 0; k < 6; ++k) CHECK(seen[k] == Approx((std::pow(10.0, k + 1) - 1) / 9 * 1e-6).epsilon(1e-9));
  CHECK(seen[6] == 1.0);
}

// The standard controller holds the error per step near 0.59 of the tolerance where the PI one
// holds it near 0.17 (ode.hpp), so it takes longer steps, fewer evaluations, and its global error
// is larger by about that ratio: the bound of the tolerance test above, 10 tolerances, times
// 0.59 / 0.17 = 3.5. On the damped rotation integrated backwards (the harder direction), at
// rtol = atol = 1e-6. Measured: 572 and 440 evaluations, 2.2 and 7.3 tolerances.
TEST_CASE("dopri5's standard controller takes fewer steps than the PI controller", "[integrate]") {
  const double tol = 1e-6;
  const DampedRotation rot{0.3, 2 * M_PI};
  std::vector<Vec2> exact;
  for (const Vec2& x : kStarts) exact.push_back(rot.exact(x, 1, -2));
  std::size_t nfe[2];
  double error[2];
  for (const StepController c : {StepController::pi, StepController::standard}) {
    AdaptiveOptions o;
    o.rtol = o.atol = tol;
    o.controller = c;
    Tensor y = rows_tensor(kStarts);
    const std::size_t k = c == StepController::standard;
    nfe[k] = integrate_adaptive(rot.field(), 1, -2, y, o).nfe;
    error[k] = max_error_in_tolerances(y, exact, tol, tol);
  }
  INFO("nfe pi " << nfe[0] << ", standard " << nfe[1] << "; max error pi " << error[0] << ", standard " << error[1]
                 << " tolerances");
  CHECK(nfe[1] < 0.85 * nfe[0]);
  CHECK(error[0] < 10);
  CHECK(error[1] < 35);
}

TEST_CASE("dopri5 gives up at max_steps with an error naming it", "[integrate]") {
  const DampedRotation rot{0.3, 2 * M_PI};
  AdaptiveOptions o;
  o.rtol = o.atol = 1e-8;
  o.max_steps = 5;
  Tensor y = rows_tensor(kStarts);
  REQUIRE_THROWS_AS(integrate_adaptive(rot.field(), 0, 10, y, o), Error);
  y = rows_tensor(kStarts);
  REQUIRE_THROWS_WITH(integrate_adaptive(rot.field(), 0, 10, y, o), Contains("max_steps = 5"));
}

namespace {

struct Moments {
  double mean, var;
};

Moments moments(const Tensor& x) {
  double m = 0, v = 0;
  for (float a : x) m += a;
  m /= double(x.size());
  for (float a : x) v += (a - m) * (a - m);
  return {m, v / double(x.size() - 1)};
}

}  // namespace

// Ornstein-Uhlenbeck dX = -theta X dt + s dW from x0: X_T ~ N(x0 e^{-theta T},
// s^2 / (2 theta) (1 - e^{-2 theta T})). Euler-Maruyama with step h is exactly Gaussian with
// mean x0 a^N and variance s^2 h (1 - a^{2N}) / (1 - a^2), a = 1 - theta h: relative biases of
// theta^2 T h / 2 and theta h / 2, here 5e-4 each, i.e. under 0.1 standard errors at n = 20000
// (checked below). Backwards in time the field +theta X over a decreasing grid is the same chain.
TEST_CASE("Euler-Maruyama matches the Ornstein-Uhlenbeck moments forwards and backwards", "[integrate]") {
  const double theta = 1.0, s = 1.0, x0 = 2.0, T = 1.0;
  const std::size_t n = 20000, steps = 1000;
  const double h = T / steps, a = 1 - theta * h;
  const double mean = x0 * std::exp(-theta * T), var = s * s / (2 * theta) * (1 - std::exp(-2 * theta * T));
  const double em_mean = x0 * std::pow(a, steps),
               em_var = s * s * h * (1 - std::pow(a, 2.0 * steps)) / (1 - a * a);
  const double se_mean = std::sqrt(var / n), se_var = var * std::sqrt(2.0 / (n - 1));
  REQUIRE(std::fabs(em_mean - mean) < 0.1 * se_mean);
  REQUIRE(std::fabs(em_var - var) < 0.1 * se_var);

  for (const double direction : {1.0, -1.0}) {
    // Forwards: -theta x on [0, T]; backwards: +theta x on [T, 0] (h < 0).
    const VectorField f = [theta, direction](double, const Tensor& y, Tensor& dy) {
      for (std::size_t i = 0; i < y.size(); ++i) dy.data()[i] = float(-direction * theta * y.data()[i]);
    };
    Rng rng(direction > 0 ? 11 : 12);
    Tensor x = full({n, 1}, float(x0));
    const OdeStats st = integrate_euler_maruyama(f, [s](double) { return s; },
                                                 direction > 0 ? grid(0, T, steps) : grid(T, 0, steps), x, rng);
    REQUIRE(st.nfe == steps);
    REQUIRE(st.accepted == steps);
    const Moments m = moments(x);
    INFO("direction " << direction << ": mean " << m.mean << " (closed form " << mean << ", SE " << se_mean
                      << "), variance " << m.var << " (closed form " << var << ", SE " << se_var << ")");
    CHECK(std::fabs(m.mean - mean) < 4 * se_mean + std::fabs(em_mean - mean));
    CHECK(std::fabs(m.var - var) < 4 * se_var + std::fabs(em_var - var));
  }
}

TEST_CASE("an Euler-Maruyama step scales the noise by g(t) sqrt(|h|) and is reproducible", "[integrate]") {
  const VectorField drift = [](double, const Tensor& y, Tensor& dy) { dy = y; };
  const Diffusion g = [](double t) { return t; };
  for (const double h : {0.25, -0.25}) {
    Tensor y = full({3, 4}, 1.0f), d, z;
    Rng rng(5);
    euler_maruyama_step(drift, g, 2.0, h, y, d, z, rng);
    REQUIRE(z.shape() == y.shape());
    for (std::size_t i = 0; i < y.size(); ++i)
      CHECK(y.data()[i] == float(1.0 + h * 1.0 + 2.0 * 0.5 * z.data()[i]));
    Rng again(5);
    const Tensor expected = again.normal({3, 4});
    REQUIRE(std::equal(z.begin(), z.end(), expected.begin()));  // the noise is the stream's next normals
  }
}

TEST_CASE("integrators report bad methods and grids and non-finite fields", "[integrate]") {
  for (const std::string& name : ode_method_names()) REQUIRE(ode_method_name(parse_ode_method(name)) == name);
  REQUIRE(ode_method_stages(OdeMethod::euler) == 1);
  REQUIRE(ode_method_stages(OdeMethod::heun) == 2);
  REQUIRE(ode_method_stages(OdeMethod::rk4) == 4);
  REQUIRE_THROWS_WITH(parse_ode_method("rk45"), Contains("rk45") && Contains("euler, midpoint, heun, rk4, dopri5"));

  const DampedRotation rot{0.3, 1.0};
  Tensor y = rows_tensor(kStarts);
  REQUIRE_THROWS_WITH(integrate(OdeMethod::rk4, rot.field(), {0.0}, y), Contains("at least two times"));
  REQUIRE_THROWS_WITH(integrate(OdeMethod::dopri5, rot.field(), {}, y), Contains("at least two times"));
  REQUIRE_THROWS_WITH(integrate(OdeMethod::euler, rot.field(), {0.0, 0.5, 0.5, 1.0}, y),
                      Contains("strictly increasing") && Contains("times[2]"));
  REQUIRE_THROWS_WITH(integrate(OdeMethod::heun, rot.field(), {1.0, 0.0, 0.5}, y), Contains("strictly decreasing"));
  REQUIRE_THROWS_WITH(integrate(OdeMethod::midpoint, rot.field(), {0.0, std::nan("")}, y), Contains("not finite"));
  REQUIRE_THROWS_WITH(integrate_fixed(OdeMethod::dopri5, rot.field(), {0.0, 1.0}, y), Contains("adaptive"));
  AdaptiveOptions bad;
  bad.atol = 0;
  REQUIRE_THROWS_WITH(integrate_adaptive(rot.field(), 0, 1, y, bad), Contains("atol"));

  // A field that returns NaN once t passes 0.5.
  const VectorField nan_late = [](double t, const Tensor& y, Tensor& dy) {
    for (std::size_t i = 0; i < y.size(); ++i)
      dy.data()[i] = t > 0.5 ? std::numeric_limits<float>::quiet_NaN() : -y.data()[i];
  };
  for (const OdeMethod m : {OdeMethod::euler, OdeMethod::rk4, OdeMethod::dopri5}) {
    Tensor x = rows_tensor(kStarts);
    REQUIRE_THROWS_WITH(integrate(m, nan_late, grid(0, 1, 10), x), Contains("not finite"));
  }
  Tensor x = rows_tensor(kStarts);
  Rng rng(1);
  REQUIRE_THROWS_WITH(integrate_euler_maruyama(nan_late, [](double) { return 1.0; }, grid(0, 1, 10), x, rng),
                      Contains("not finite") && Contains("euler_maruyama"));
}
