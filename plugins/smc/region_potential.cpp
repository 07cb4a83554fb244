// A region indicator G(x0) = 1[x0 in R] (a box low <= x <= high, or a ball |x - c| <= r): the
// target is the model's distribution restricted to R. At the data it is exact; at intermediate
// times, on x0_hat, a hard indicator would give every particle weight 0 as soon as x0_hat
// leaves R (early on x0_hat is near the data's mean), and worse, would rule out paths that still
// end inside R (a twist must be positive wherever the target is): with `softness: s > 0` the twist
// is exp(-dist(x0_hat, R)^2 / (2 s^2)), which is 1 inside and differentiable; the final weight
// then corrects to the exact indicator (any positive twist leaves the target unchanged: Wu et al.
// 2023, section 3; Singhal et al. 2025, section 3). `softness: 0` (the default) has no
// intermediate twist: the indicator weighs the particles at the data only.
#include <cmath>
#include <limits>

#include <diffusion/plugin.hpp>

#include "potential.hpp"

namespace diffusion::smc {
namespace {

class RegionPotential : public Potential {
 public:
  enum class Kind { box, ball };
  RegionPotential(Kind shape, std::vector<double> a, std::vector<double> b, double radius, double softness)
      : shape_(shape), a_(std::move(a)), b_(std::move(b)), radius_(radius), softness_(softness) {}

  Var log_value(const PotentialPoint& at, const PotentialContext&) const override {
    const Var& x = at.x0_hat;
    check_row_size(x, a_.size(), "region");
    if (!at.at_data && softness_ == 0) {
      // No intermediate twist: a hard indicator on x0_hat would give weight 0 to particles whose
      // x0_hat is outside R now but whose paths may still end inside it, which biases the target.
      return Var(zeros({x.shape()[0]}));
    }
    if (at.at_data) {
      // The exact indicator: log 1 = 0 inside, log 0 = -inf outside; no gradient.
      const std::size_t n = x.shape()[0], d = a_.size();
      const float* v = x.value().data();
      Tensor out = Tensor::from_shape({n});
      for (std::size_t i = 0; i < n; ++i) out.data()[i] = inside(v + i * d) ? 0.0f : -std::numeric_limits<float>::infinity();
      return Var(std::move(out));
    }
    return distance_squared(flatten_rows(x)) * float(-0.5 / (softness_ * softness_));
  }
  bool differentiable() const override { return softness_ > 0; }

 private:
  bool inside(const float* x) const {
    const std::size_t d = a_.size();
    if (shape_ == Kind::box) {
      for (std::size_t j = 0; j < d; ++j)
        if (x[j] < a_[j] || x[j] > b_[j]) return false;
      return true;
    }
    double r2 = 0;
    for (std::size_t j = 0; j < d; ++j) r2 += (x[j] - a_[j]) * (x[j] - a_[j]);
    return r2 <= radius_ * radius_;
  }

  /// dist(x, R)^2 per row, on the graph.
  Var distance_squared(const Var& x) const {
    const std::size_t d = a_.size();
    if (shape_ == Kind::box) {
      const Var low = constant(a_, {d}), high = constant(b_, {d});
      return sum(square(relu(low - x) + relu(x - high)), {1});
    }
    const Var centre = constant(a_, {d});
    // sqrt of |x - c|^2 + a tiny constant: finite gradient at the centre.
    const Var r = sqrt(sum(square(x - centre), {1}) + 1e-12f);
    return square(relu(r - float(radius_)));
  }

  Kind shape_;
  std::vector<double> a_, b_;  // box: low, high; ball: centre
  double radius_, softness_;
};

std::shared_ptr<Potential> make_region(const ConfigNode& c, const BuildContext& ctx) {
  const double softness = c.get_double("softness", 0.0, Interval::at_least(0));
  const std::size_t data_d = ctx.data_shape.empty() ? 0 : numel(ctx.data_shape);
  const auto check_d = [&](const std::string& key, std::size_t d) {
    if (data_d && d != data_d) c.at(key).fail(std::to_string(data_d) + " numbers (the values of one sample)");
  };
  if (c.has("low") || c.has("high")) {
    if (c.has("center") || c.has("radius")) c.error("region: a box (low, high) or a ball (center, radius), not both");
    auto low = c.get_double_list("low"), high = c.get_double_list("high");
    if (low.empty()) c.at("low").fail("a non-empty list of numbers");
    if (high.size() != low.size()) c.at("high").fail("as many numbers as low (" + std::to_string(low.size()) + ")");
    for (std::size_t j = 0; j < low.size(); ++j)
      if (!(high[j] > low[j])) c.at("high").item(j).fail("a number above low's (" + std::to_string(low[j]) + ")");
    check_d("low", low.size());
    return std::make_shared<RegionPotential>(RegionPotential::Kind::box, std::move(low), std::move(high), 0.0, softness);
  }
  if (!c.has("center")) c.error("region: give a box (`low: [...]`, `high: [...]`) or a ball (`center: [...]`, `radius: r`)");
  auto centre = c.get_double_list("center");
  if (centre.empty()) c.at("center").fail("a non-empty list of numbers");
  check_d("center", centre.size());
  const double radius = c.require_double("radius", Interval::greater_than(0));
  return std::make_shared<RegionPotential>(RegionPotential::Kind::ball, std::move(centre), std::vector<double>{}, radius,
                                           softness);
}

}  // namespace

DIFFUSION_REGISTER(potentials, "region", make_region);

}  // namespace diffusion::smc
