// Consistency distillation (CM paper, Algorithm 2 and eq. 7): for data x and a pair of
// neighbouring levels of the Karras discretisation with N levels, n ~ U{1, ..., N-1},
//
//   x_{n+1}  = x + sigma_{n+1} z,                        z ~ N(0, I)
//   x_hat_n  = one Heun step of the teacher's probability-flow ODE from sigma_{n+1} to sigma_n
//   loss     = lambda(sigma_n) d(f_theta(x_{n+1}, sigma_{n+1}), f_theta^-(x_hat_n, sigma_n)),
//   theta^-  <- stopgrad(mu theta^- + (1 - mu) theta)     (after each update)
//
// with lambda = 1. The teacher is the named model `teacher` (frozen; loaded with `init:` from a
// trained model's results file) read through its own preconditioning (`teacher_preconditioning:`,
// e.g. {type: edm, sigma_data: 0.5} for an EDM-trained denoiser); the target f_theta^- is the
// named model `target`, unfrozen (checkpointed), which must start equal to the model (load both
// from the same file, or neither).
//
//   loss: {type: consistency_distillation, preconditioning: {type: consistency, sigma_data: 0.5},
//          teacher_preconditioning: {type: edm, sigma_data: 0.5}, levels: 18, rho: 7, mu: 0.95,
//          distance: l2 | pseudo_huber, huber_c: 0.00054 sqrt(dim)}
//
// levels (N) 18 and mu 0.95 are the paper's CIFAR-10 settings (Table 3). sigma_min and sigma_max
// are the path's sigma at t_min and t_max (0.002 and 80 on the EDM path).
#include <cmath>
#include <memory>

#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin.hpp>

#include "consistency_function.hpp"
#include "consistency_preconditioning.hpp"
#include "noise_levels.hpp"
#include "target_ema.hpp"
#include "teacher_heun.hpp"

namespace diffusion::consistency {
namespace {

constexpr const char* kTeacher = "teacher";
constexpr const char* kTarget = "target";

class ConsistencyDistillationLoss : public Loss {
 public:
  ConsistencyDistillationLoss(std::shared_ptr<const Preconditioning> pre,
                              std::shared_ptr<const Preconditioning> teacher_pre, std::size_t levels, double rho,
                              double mu, Distance distance, double huber_c)
      : pre_(std::move(pre)),
        teacher_pre_(std::move(teacher_pre)),
        levels_(levels),
        rho_(rho),
        mu_(mu),
        distance_(distance),
        huber_c_(huber_c) {}

  std::shared_ptr<const Preconditioning> preconditioning() const override { return pre_; }
  std::vector<std::string> required_models() const override { return {kTeacher}; }
  std::vector<std::string> changed_models() const override { return {kTarget}; }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    if (!ctx.path || !ctx.models) throw Error("consistency_distillation: no path or named models in the training context");
    const Path& path = *ctx.path;
    require_unit_alpha(path, "consistency_distillation");
    const Source& source = ctx.source_or_default();
    if (!source.standard_normal())
      throw Error("consistency_distillation: the teacher's ODE starts from Gaussian noise; the source is " + source.name());
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0], per = x0.size() / n;
    c.check_rows(n, "consistency_distillation");
    const double s_min = path.sigma(path.t_min()), s_max = path.sigma(path.t_max());

    // n ~ U{1, ..., N-1} (0-based: the pair (i, i+1), i in 0..N-2), and the pair's times.
    Times t_next(n), t_now(n);
    std::vector<double> t_next_v(n), t_now_v(n);
    Tensor times = Tensor::from_shape({n});
    for (std::size_t r = 0; r < n; ++r) {
      const std::size_t i = std::min<std::size_t>(levels_ - 2, std::size_t(rng.uniform_double() * double(levels_ - 1)));
      t_now[r] = t_now_v[r] = time_at_sigma(path, karras_level(i, levels_, s_min, s_max, rho_));
      t_next[r] = t_next_v[r] = time_at_sigma(path, karras_level(i + 1, levels_, s_min, s_max, rho_));
      times(r) = static_cast<float>(t_next[r]);
    }
    // x_{n+1} = x + sigma_{n+1} z.
    const Tensor z = source.sample(shape, rng);
    Tensor x_next = x0;
    for (std::size_t r = 0; r < n; ++r) {
      const double s = path.sigma(t_next[r]);
      for (std::size_t j = r * per; j < (r + 1) * per; ++j) x_next.data()[j] = static_cast<float>(x0.data()[j] + s * z.data()[j]);
    }
    // The teacher's Heun step and the target network's consistency function, without a graph.
    const NetworkDenoiser teacher(ctx.models->shared(kTeacher), borrowed(path), teacher_pre_);
    const Tensor x_hat = probability_flow_heun_step(teacher, x_next, t_next, t_now, c);
    const NetworkDenoiser target(ctx.models->shared(kTarget), borrowed(path), pre_);
    Prediction p;
    target.predict(x_hat, t_now, c, p);
    // The online network at the noisier point, differentiable.
    const Var online = consistency_function(net, *pre_, path, x_next, t_next_v, c);
    return {distance_per_sample(online, Var(std::move(p.x0)), distance_, huber_c_), std::move(times)};
  }

  void after_step(const TrainContext& ctx) const override {
    ema_update(ctx.models->get(kTarget), ctx.models->get("model"), mu_);
  }

 private:
  std::shared_ptr<const Preconditioning> pre_, teacher_pre_;
  std::size_t levels_;
  double rho_, mu_;
  Distance distance_;
  double huber_c_;
};

std::shared_ptr<Loss> make_consistency_distillation(const ConfigNode& c, const BuildContext& ctx) {
  const auto pre_node = c.find("preconditioning");
  auto pre = pre_node ? registries().preconditionings.create(*pre_node, ctx)
                      : std::make_shared<ConsistencyPreconditioning>(0.5, ConsistencyPreconditioning::NoiseInput::path, 1.0);
  if (pre_node && !std::dynamic_pointer_cast<const ConsistencyPreconditioning>(pre))
    pre_node->error("a consistency model needs f(x, sigma_min) = x: use {type: consistency}");
  const ConfigNode teacher_node = c.at("teacher_preconditioning");
  auto teacher_pre = registries().preconditionings.create(teacher_node, ctx);
  const auto levels = static_cast<std::size_t>(c.get_int("levels", 18, 2, 1 << 20));
  const double rho = c.get_double("rho", 7.0, Interval::greater_than(0));
  const double mu = c.get_double("mu", 0.95, Interval::half_open(0, 1));
  const Distance distance = parse_distance(c.get_choice("distance", "l2", {"l2", "pseudo_huber"}));
  std::size_t dim = 1;
  for (const std::size_t s : ctx.data_shape) dim *= s;
  const double huber_c = c.get_double("huber_c", 0.00054 * std::sqrt(double(dim)), Interval::greater_than(0));
  if (distance == Distance::l2 && c.has("huber_c")) c.at("huber_c").error("huber_c is the pseudo-Huber distance's c (distance: pseudo_huber)");
  return std::make_shared<ConsistencyDistillationLoss>(std::move(pre), std::move(teacher_pre), levels, rho, mu, distance,
                                                       huber_c);
}

}  // namespace

DIFFUSION_REGISTER(losses, "consistency_distillation", make_consistency_distillation);

}  // namespace diffusion::consistency
