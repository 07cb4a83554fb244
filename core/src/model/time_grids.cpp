// The core's time grids (time_grid.hpp lists them).
#include <cmath>
#include <cstdint>
#include <numeric>

#include "diffusion/io/text.hpp"
#include "diffusion/model/time_grid.hpp"

namespace diffusion {
namespace {

/// u_i = i / (steps - 1) in [0, 1] (0 for a single step).
double fraction(std::size_t i, std::size_t steps) { return steps == 1 ? 0.0 : double(i) / double(steps - 1); }

/// Evenly spaced in t; on a discrete path floor(linspace(t_max, t_min, steps)) (DDIM's uniform
/// skip), in integers: floor(999 (1 - 3/37)) in floating point is 917, not 918.
class LinearGrid : public TimeGrid {
  std::vector<double> make(const Path& p, std::size_t steps) const override {
    std::vector<double> g(steps);
    const double span = p.t_max() - p.t_min();
    const auto whole = static_cast<std::uint64_t>(std::llround(span));
    // The ends exactly: t_max - span can round to just below t_min.
    for (std::size_t i = 0; i < steps; ++i)
      g[i] = !p.num_steps() ? (i + 1 == steps && steps > 1 ? p.t_min() : p.t_max() - fraction(i, steps) * span)
             : steps == 1   ? p.t_max()
                            : p.t_min() + double(whole * (steps - 1 - i) / (steps - 1));
    return g;
  }
};

/// Dense near the data: t_min + (t_max - t_min)(1 - u)^2, rounded on a discrete path.
class QuadraticGrid : public TimeGrid {
  std::vector<double> make(const Path& p, std::size_t steps) const override {
    std::vector<double> g(steps);
    const double span = p.t_max() - p.t_min();
    for (std::size_t i = 0; i < steps; ++i) {
      const double u = 1.0 - fraction(i, steps);
      g[i] = p.num_steps() ? p.t_min() + std::round(span * u * u) : i == 0 ? p.t_max() : p.t_min() + span * u * u;
    }
    return g;
  }
};

double whole_if_discrete(const Path& p, double t) { return p.num_steps() ? std::round(t) : t; }

/// Evenly spaced in log SNR between the path's ends.
class LogSnrGrid : public TimeGrid {
  std::vector<double> make(const Path& p, std::size_t steps) const override {
    const double hi = p.log_snr(p.t_max()), lo = p.log_snr(p.t_min());
    if (!std::isfinite(hi) || !std::isfinite(lo))
      throw Error("log_snr grid: the path's log SNR is not finite at its ends (" + format_number(hi) + ", " +
                  format_number(lo) + ")");
    std::vector<double> g(steps);
    for (std::size_t i = 0; i < steps; ++i)
      g[i] = whole_if_discrete(p, p.time_at_log_snr(hi + fraction(i, steps) * (lo - hi)));
    return g;
  }
};

/// Karras et al. 2022, eq. 5, in the noise-to-signal ratio s = sigma / alpha (EDM's sigma).
class KarrasGrid : public TimeGrid {
 public:
  KarrasGrid(double rho, double s_min, double s_max) : rho_(rho), s_min_(s_min), s_max_(s_max) {}

 private:
  std::vector<double> make(const Path& p, std::size_t steps) const override {
    const auto ratio = [&](double t) { return p.sigma(t) / p.alpha(t); };
    const double s_max = s_max_ > 0 ? s_max_ : ratio(p.t_max()), s_min = s_min_ > 0 ? s_min_ : ratio(p.t_min());
    if (!std::isfinite(s_max) || !(s_min > 0))
      throw Error("karras grid: the path's sigma / alpha is " + format_number(s_min) + " at t_min and " +
                  format_number(s_max) + " at t_max; set sigma_min and sigma_max");
    const double a = std::pow(s_max, 1.0 / rho_), b = std::pow(s_min, 1.0 / rho_);
    std::vector<double> g(steps);
    for (std::size_t i = 0; i < steps; ++i) {
      const double s = std::pow(a + fraction(i, steps) * (b - a), rho_);
      g[i] = whole_if_discrete(p, p.time_at_log_snr(-2.0 * std::log(s)));
    }
    return g;
  }
  double rho_, s_min_, s_max_;
};

/// u_i through the piecewise-linear map that sends the cumulative shares (0 = u_0 < ... < u_K = 1)
/// to the times.
class PiecewiseGrid : public TimeGrid {
 public:
  PiecewiseGrid(std::vector<double> times, std::vector<double> shares)
      : times_(std::move(times)), shares_(std::move(shares)) {}

 private:
  std::vector<double> make(const Path& p, std::size_t steps) const override {
    std::vector<double> u(times_.size(), 0.0);
    const double total = std::accumulate(shares_.begin(), shares_.end(), 0.0);
    for (std::size_t k = 0; k + 1 < times_.size(); ++k) u[k + 1] = u[k] + shares_[k];
    for (double& v : u) v /= total;
    u.back() = 1.0;
    std::vector<double> g(steps);
    std::size_t k = 0;
    for (std::size_t i = 0; i < steps; ++i) {
      const double ui = fraction(i, steps);
      while (k + 2 < times_.size() && ui > u[k + 1]) ++k;
      g[i] = whole_if_discrete(p, times_[k] + (ui - u[k]) / (u[k + 1] - u[k]) * (times_[k + 1] - times_[k]));
    }
    return g;
  }
  std::vector<double> times_, shares_;
};

/// The times as listed.
class ListGrid : public TimeGrid {
 public:
  explicit ListGrid(std::vector<double> times) : times_(std::move(times)) {
    if (times_.empty()) throw Error("list grid: no times");
    for (std::size_t i = 1; i < times_.size(); ++i)
      if (!(times_[i] < times_[i - 1]))
        throw Error("list grid: times must strictly decrease; entry " + std::to_string(i + 1) + " (" +
                    format_number(times_[i]) + ") follows " + format_number(times_[i - 1]));
  }
  std::size_t fixed_steps() const override { return times_.size(); }

 private:
  std::vector<double> make(const Path&, std::size_t) const override { return times_; }
  std::vector<double> times_;
};

}  // namespace

std::shared_ptr<TimeGrid> make_linear_grid() { return std::make_shared<LinearGrid>(); }
std::shared_ptr<TimeGrid> make_quadratic_grid() { return std::make_shared<QuadraticGrid>(); }
std::shared_ptr<TimeGrid> make_log_snr_grid() { return std::make_shared<LogSnrGrid>(); }
std::shared_ptr<TimeGrid> make_karras_grid(double rho, double sigma_min, double sigma_max) {
  if (!(rho > 0)) throw Error("karras grid: rho must be > 0, got " + format_number(rho));
  return std::make_shared<KarrasGrid>(rho, sigma_min, sigma_max);
}
std::shared_ptr<TimeGrid> make_piecewise_grid(std::vector<double> times, std::vector<double> shares) {
  if (times.size() < 2 || shares.size() != times.size() - 1)
    throw Error("piecewise grid: expected at least two times and one share per interval between them");
  for (std::size_t i = 1; i < times.size(); ++i)
    if (!(times[i] < times[i - 1])) throw Error("piecewise grid: times must strictly decrease");
  for (const double w : shares)
    if (!(w > 0.0)) throw Error("piecewise grid: shares must be positive, got " + format_number(w));
  return std::make_shared<PiecewiseGrid>(std::move(times), std::move(shares));
}
std::shared_ptr<TimeGrid> make_list_grid(std::vector<double> times) {
  return std::make_shared<ListGrid>(std::move(times));
}

}  // namespace diffusion
