// A linear-Gaussian observation y = A x0 + noise, noise ~ N(0, tau^2 I): G(x0) = N(y; A x0, tau^2 I),
// so the target p(x0) G(x0) / p(y) is the posterior of an inverse problem and the normalising
// constant is the evidence p(y). At intermediate times it is TDS's twisting function
// p~_t(x_t) = N(y; A x0_hat(x_t), tau^2 I) (Wu et al. 2023, eq. 12 with the inpainting /
// linear-measurement likelihood of their section 4). `coordinates: [j, ...]` observes those
// coordinates of the flattened sample (inpainting: A selects them); `matrix: [[...], ...]` gives A.
#include <cmath>
#include <cstdint>

#include <diffusion/plugin.hpp>

#include "potential.hpp"

namespace diffusion::smc {
namespace {

constexpr double kTwoPi = 6.283185307179586;

class GaussianObservationPotential : public Potential {
 public:
  /// y (m), tau, and A: `coordinates` (m indices into the flattened sample) or `matrix` (m x d).
  GaussianObservationPotential(std::vector<std::int64_t> coordinates, std::vector<double> matrix, std::size_t d,
                               std::vector<double> y, double tau)
      : coordinates_(std::move(coordinates)), matrix_(std::move(matrix)), d_(d), m_(y.size()), tau_(tau),
        y_(constant(y, {y.size()})) {}

  Var log_value(const PotentialPoint& at, const PotentialContext&) const override {
    const std::size_t n = at.x0_hat.shape()[0], d = n ? at.x0_hat.size() / n : 0;
    const Var residual = matmul(flatten_rows(at.x0_hat), a_transposed(d)) - y_;  // (N, m)
    const double log_norm = -0.5 * double(m_) * std::log(kTwoPi * tau_ * tau_);
    return sum(square(residual), {1}) * float(-0.5 / (tau_ * tau_)) + float(log_norm);
  }

 private:
  /// A^T (d, m) for samples of d values.
  Var a_transposed(std::size_t d) const {
    std::vector<double> at(d * m_, 0.0);
    if (coordinates_.empty()) {
      if (d != d_)
        throw Error("gaussian_observation: its matrix has " + std::to_string(d_) + " columns, but the samples have " +
                    std::to_string(d) + " values");
      for (std::size_t i = 0; i < m_; ++i)
        for (std::size_t j = 0; j < d; ++j) at[j * m_ + i] = matrix_[i * d + j];
    } else {
      for (std::size_t i = 0; i < m_; ++i) {
        const auto j = std::size_t(coordinates_[i]);
        if (j >= d)
          throw Error("gaussian_observation: coordinate " + std::to_string(j) + " observed, but the samples have " +
                      std::to_string(d) + " values");
        at[j * m_ + i] = 1.0;
      }
    }
    return constant(at, {d, m_});
  }

  std::vector<std::int64_t> coordinates_;
  std::vector<double> matrix_;
  std::size_t d_, m_;
  double tau_;
  Var y_;
};

std::shared_ptr<Potential> make_gaussian_observation(const ConfigNode& c, const BuildContext& ctx) {
  const std::vector<double> y = c.get_double_list("y");
  if (y.empty()) c.at("y").fail("a non-empty list of observed values");
  const double tau = c.require_double("noise", Interval::greater_than(0));
  const std::size_t data_d = ctx.data_shape.empty() ? 0 : numel(ctx.data_shape);
  if (c.has("coordinates") == c.has("matrix"))
    c.error("gaussian_observation: give exactly one of `coordinates: [j, ...]` (observe those coordinates) "
            "or `matrix: [[...], ...]` (y = A x)");
  if (c.has("coordinates")) {
    auto coords = c.get_int_list("coordinates", {}, 0);
    if (coords.size() != y.size())
      c.at("coordinates").fail("one coordinate per value of y (" + std::to_string(y.size()) + ")");
    for (const auto j : coords)
      if (data_d && std::size_t(j) >= data_d)
        c.at("coordinates").fail("coordinates below " + std::to_string(data_d) + " (the values of one sample)");
    return std::make_shared<GaussianObservationPotential>(std::move(coords), std::vector<double>{}, 0, y, tau);
  }
  const ConfigNode m = c.at("matrix");
  const auto rows = m.items();
  if (rows.size() != y.size()) m.fail("one row per value of y (" + std::to_string(y.size()) + ")");
  std::vector<double> a;
  std::size_t d = 0;
  for (const ConfigNode& row : rows) {
    const auto values = row.items();
    if (d == 0) d = values.size();
    if (values.empty() || values.size() != d) row.fail("a non-empty list of numbers, every row as long as the first");
    for (const ConfigNode& v : values) a.push_back(v.as_double());
  }
  if (data_d && d != data_d) m.fail("rows of " + std::to_string(data_d) + " numbers (the values of one sample)");
  return std::make_shared<GaussianObservationPotential>(std::vector<std::int64_t>{}, std::move(a), d, y, tau);
}

}  // namespace

DIFFUSION_REGISTER(potentials, "gaussian_observation", make_gaussian_observation);

}  // namespace diffusion::smc
