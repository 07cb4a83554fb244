// The toy distributions as Dataset components: each reads its own parameters, then every
// point is mapped to scale * point + shift.
#include <cmath>
#include <functional>

#include <diffusion/plugin.hpp>

#include "toy_datasets.hpp"

namespace diffusion::toy {
namespace {

using Draw = std::function<Tensor(std::size_t, Rng&, std::vector<int>*)>;
/// log density at a point in the distribution's own coordinates (before scale and shift).
using LogDensity = std::function<double(double, double)>;

class ToyDataset : public Dataset {
 public:
  /// `independent` draws every point on its own (default: `draw` itself).
  ToyDataset(Draw draw, int classes, const ConfigNode& c, Draw independent = nullptr)
      : draw_(std::move(draw)), independent_(independent ? std::move(independent) : draw_), classes_(classes),
        scale_(c.get_double("scale", 1.0, Interval::greater_than(0))) {
    const auto shift = c.get_double_list("shift", {0.0, 0.0});
    if (shift.size() != 2) c.at("shift").fail("a list of two numbers");
    shift_[0] = shift[0], shift_[1] = shift[1];
  }
  Shape sample_shape() const override { return {2}; }
  int num_classes() const override { return classes_; }
  Tensor sample(std::size_t n, Rng& rng, Condition* condition) const override {
    std::vector<int> labels;
    Tensor x = draw_(n, rng, condition && classes_ > 0 ? &labels : nullptr);
    if (condition && classes_ > 0) condition->set_labels(std::move(labels));
    return place(std::move(x));
  }
  Tensor sample_independent(std::size_t n, Rng& rng, Condition* condition) const override {
    std::vector<int> labels;
    Tensor x = independent_(n, rng, condition && classes_ > 0 ? &labels : nullptr);
    if (condition && classes_ > 0) condition->set_labels(std::move(labels));
    return place(std::move(x));
  }

  /// Known in closed form for some distributions (set_log_density).
  void set_log_density(LogDensity f) { log_density_ = std::move(f); }
  bool has_log_density() const override { return static_cast<bool>(log_density_); }
  /// p(x) = p_raw((x - shift) / scale) / scale^2 in two dimensions.
  Tensor log_density(const Tensor& x) const override {
    if (!log_density_) return Dataset::log_density(x);
    const std::size_t n = x.shape()[0];
    if (x.dimension() != 2 || x.shape()[1] != 2) throw Error("log_density: expected points (N, 2), got " + shape_str(x));
    Tensor out = Tensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i)
      out.data()[i] = float(log_density_((x(i, 0) - shift_[0]) / scale_, (x(i, 1) - shift_[1]) / scale_) -
                            2 * std::log(scale_));
    return out;
  }

 private:
  Tensor place(Tensor x) const {
    for (std::size_t i = 0; i < x.shape()[0]; ++i)
      for (std::size_t j = 0; j < 2; ++j) x(i, j) = float(scale_ * x(i, j) + shift_[j]);
    return x;
  }

  Draw draw_, independent_;
  LogDensity log_density_;
  int classes_;
  double scale_, shift_[2];
};

std::shared_ptr<Dataset> make_moons(const ConfigNode& c, const BuildContext&) {
  const double noise = c.get_double("noise", 0.05, 0.0);
  const bool even = c.get_choice("spread", "even", {"even", "independent"}) == "even";
  const Draw independent = [=](std::size_t n, Rng& r, std::vector<int>* l) { return moons(n, noise, r, l, false); };
  return std::make_shared<ToyDataset>(
      [=](std::size_t n, Rng& r, std::vector<int>* l) { return moons(n, noise, r, l, even); }, 2, c, independent);
}

std::shared_ptr<Dataset> make_circles(const ConfigNode& c, const BuildContext&) {
  const double noise = c.get_double("noise", 0.05, 0.0);
  const double factor = c.get_double("factor", 0.5, Interval::open(0, 1));
  return std::make_shared<ToyDataset>(
      [=](std::size_t n, Rng& r, std::vector<int>* l) { return circles(n, noise, factor, r, l); }, 2, c);
}

std::shared_ptr<Dataset> make_swiss_roll(const ConfigNode& c, const BuildContext&) {
  const double noise = c.get_double("noise", 0.05, 0.0);
  return std::make_shared<ToyDataset>(
      [=](std::size_t n, Rng& r, std::vector<int>*) { return swiss_roll(n, noise, r); }, 0, c);
}

std::shared_ptr<Dataset> make_eight_gaussians(const ConfigNode& c, const BuildContext&) {
  const double std = c.get_double("std", 0.1, 0.0);
  const double radius = c.get_double("radius", 2.0, Interval::greater_than(0));
  auto data = std::make_shared<ToyDataset>(
      [=](std::size_t n, Rng& r, std::vector<int>* l) { return eight_gaussians(n, std, radius, r, l); }, 8, c);
  if (std > 0) data->set_log_density([=](double x, double y) { return eight_gaussians_log_density(x, y, std, radius); });
  return data;
}

std::shared_ptr<Dataset> make_checkerboard(const ConfigNode& c, const BuildContext&) {
  return std::make_shared<ToyDataset>(
      [](std::size_t n, Rng& r, std::vector<int>* l) { return checkerboard(n, r, l); }, 8, c);
}

std::shared_ptr<Dataset> make_pinwheel(const ConfigNode& c, const BuildContext&) {
  const double radial = c.get_double("radial_std", 0.3, 0.0);
  const double tangential = c.get_double("tangential_std", 0.1, 0.0);
  const auto arms = static_cast<std::size_t>(c.get_int("arms", 5, 1, 1000));
  const double rate = c.get_double("rate", 0.25);
  return std::make_shared<ToyDataset>(
      [=](std::size_t n, Rng& r, std::vector<int>* l) { return pinwheel(n, radial, tangential, arms, rate, r, l); },
      static_cast<int>(arms), c);
}

}  // namespace

DIFFUSION_REGISTER(datasets, "moons", make_moons);
DIFFUSION_REGISTER(datasets, "circles", make_circles);
DIFFUSION_REGISTER(datasets, "swiss_roll", make_swiss_roll);
DIFFUSION_REGISTER(datasets, "eight_gaussians", make_eight_gaussians);
DIFFUSION_REGISTER(datasets, "checkerboard", make_checkerboard);
DIFFUSION_REGISTER(datasets, "pinwheel", make_pinwheel);

}  // namespace diffusion::toy
