// Consistency training with the improved recipe (iCT: Song & Dhariwal 2023, "Improved
// Techniques for Training Consistency Models"; CM paper Algorithm 3 with its changes):
//
//   N       = N(k) = min(s0 2^floor(k / K'), s1) + 1           (eq. 10; k the step, K train.steps)
//   i       ~ p(i) propto erf((ln sigma_{i+1} - P_mean)/(sqrt 2 P_std)) - erf((ln sigma_i - P_mean)/(sqrt 2 P_std))
//   loss    = lambda(sigma_i) d(f_theta(x + sigma_{i+1} z, sigma_{i+1}), stopgrad f_theta(x + sigma_i z, sigma_i))
//   lambda  = 1 / (sigma_{i+1} - sigma_i),  d = pseudo-Huber sqrt(|x - y|^2 + c^2) - c, c = 0.00054 sqrt(dim)
//
// with the same z at both points and no EMA target: the target is the student itself without a
// gradient (iCT section 3.2). The loss's state (N) is a function of the step alone, so a resumed
// run ends as an uninterrupted one.
//
//   loss: {type: consistency_training, preconditioning: {type: consistency, sigma_data: 0.5},
//          s0: 10, s1: 1280, rho: 7, p_mean: -1.1, p_std: 2.0, distance: pseudo_huber,
//          huber_c: 0.00054 sqrt(dim), weighting: inverse_gap | uniform}
#include <cmath>
#include <memory>

#include <diffusion/plugin.hpp>

#include "consistency_function.hpp"
#include "consistency_preconditioning.hpp"
#include "noise_levels.hpp"

namespace diffusion::consistency {
namespace {

struct CtSettings {
  std::int64_t s0 = 10, s1 = 1280;
  double rho = 7.0, p_mean = -1.1, p_std = 2.0;
  Distance distance = Distance::pseudo_huber;
  double huber_c = 0.00054;
  bool inverse_gap = true;
};

class ConsistencyTrainingLoss : public Loss {
 public:
  ConsistencyTrainingLoss(std::shared_ptr<const Preconditioning> pre, CtSettings s) : pre_(std::move(pre)), s_(s) {}

  std::shared_ptr<const Preconditioning> preconditioning() const override { return pre_; }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    if (!ctx.path) throw Error("consistency_training: no path in the training context");
    const Path& path = *ctx.path;
    require_unit_alpha(path, "consistency_training");
    const Source& source = ctx.source_or_default();
    if (!source.standard_normal())
      throw Error("consistency_training: the noise levels perturb data with Gaussian noise; the source is " + source.name());
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0], per = x0.size() / n;
    c.check_rows(n, "consistency_training");

    const std::size_t levels = curriculum_levels(ctx.step, ctx.total_steps, s_.s0, s_.s1);
    const std::vector<double> sigma =
        karras_levels(levels, path.sigma(path.t_min()), path.sigma(path.t_max()), s_.rho);
    const PairSampler pairs(lognormal_pair_probabilities(sigma, s_.p_mean, s_.p_std));

    Times t_now(n);
    std::vector<double> t_next(n), weight(n);
    std::vector<std::size_t> index(n);
    Tensor times = Tensor::from_shape({n});
    for (std::size_t r = 0; r < n; ++r) {
      const std::size_t i = index[r] = pairs.draw(rng);
      t_now[r] = time_at_sigma(path, sigma[i]);
      t_next[r] = time_at_sigma(path, sigma[i + 1]);
      weight[r] = s_.inverse_gap ? 1.0 / (sigma[i + 1] - sigma[i]) : 1.0;
      times(r) = static_cast<float>(t_next[r]);
    }
    // The same z at both levels.
    const Tensor z = source.sample(shape, rng);
    Tensor x_now = x0, x_next = x0;
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t j = r * per; j < (r + 1) * per; ++j) {
        x_now.data()[j] = static_cast<float>(x0.data()[j] + sigma[index[r]] * z.data()[j]);
        x_next.data()[j] = static_cast<float>(x0.data()[j] + sigma[index[r] + 1] * z.data()[j]);
      }
    // The target: the student's own consistency function, without a graph (stop-gradient).
    const NetworkDenoiser student(borrowed(net), borrowed(path), pre_);
    Prediction p;
    student.predict(x_now, t_now, c, p);
    const Var online = consistency_function(net, *pre_, path, x_next, t_next, c);
    Tensor w = Tensor::from_shape({n});
    for (std::size_t r = 0; r < n; ++r) w(r) = static_cast<float>(weight[r]);
    return {distance_per_sample(online, Var(std::move(p.x0)), s_.distance, s_.huber_c) * Var(std::move(w)),
            std::move(times)};
  }

 private:
  std::shared_ptr<const Preconditioning> pre_;
  CtSettings s_;
};

std::shared_ptr<Loss> make_consistency_training(const ConfigNode& c, const BuildContext& ctx) {
  const auto pre_node = c.find("preconditioning");
  auto pre = pre_node ? registries().preconditionings.create(*pre_node, ctx)
                      : std::make_shared<ConsistencyPreconditioning>(0.5, ConsistencyPreconditioning::NoiseInput::path, 1.0);
  if (pre_node && !std::dynamic_pointer_cast<const ConsistencyPreconditioning>(pre))
    pre_node->error("a consistency model needs f(x, sigma_min) = x: use {type: consistency}");
  CtSettings s;
  s.s0 = c.get_int("s0", 10, 1, 1 << 24);
  s.s1 = c.get_int("s1", 1280, 1, 1 << 24);
  if (s.s1 < s.s0) c.at("s1").error("s1 (the final number of levels - 1) must be at least s0 = " + std::to_string(s.s0));
  s.rho = c.get_double("rho", 7.0, Interval::greater_than(0));
  s.p_mean = c.get_double("p_mean", -1.1);
  s.p_std = c.get_double("p_std", 2.0, Interval::greater_than(0));
  s.distance = parse_distance(c.get_choice("distance", "pseudo_huber", {"l2", "pseudo_huber"}));
  std::size_t dim = 1;
  for (const std::size_t d : ctx.data_shape) dim *= d;
  s.huber_c = c.get_double("huber_c", 0.00054 * std::sqrt(double(dim)), Interval::greater_than(0));
  if (s.distance == Distance::l2 && c.has("huber_c")) c.at("huber_c").error("huber_c is the pseudo-Huber distance's c (distance: pseudo_huber)");
  s.inverse_gap = c.get_choice("weighting", "inverse_gap", {"inverse_gap", "uniform"}) == "inverse_gap";
  return std::make_shared<ConsistencyTrainingLoss>(std::move(pre), s);
}

}  // namespace

DIFFUSION_REGISTER(losses, "consistency_training", make_consistency_training);

}  // namespace diffusion::consistency
