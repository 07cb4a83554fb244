// `smc`: sequential Monte Carlo for diffusion models as one Feynman-Kac sampler. N particles
// follow the reverse kernels of the model (reverse_kernel.hpp) on any path and time grid
// t_0 = t_max > ... > t_{K-1}, the last step going to the data; each carries a log-weight, and
// the weighted particles target
//     pi(x0) ∝ prod_i p_i(x0)^beta_i G(x0)
// (fk_target.hpp for the experts, potential.hpp for G), with the normalising constant
// Z = ∫ prod_i p_i^beta_i G estimated on the way. Algorithm (TDS, Wu et al. 2023, Algorithm 1,
// generalised):
//
//   x^i ~ the prior of the target;  log w^i = log p~_0(x^i)       [p~_t = G(x0_hat(x_t))]
//   for k = 0 .. K-1 (t = t_k, s = t_{k+1}, or the data):
//     if ESS(w) < ess_threshold N: log Z += log mean w; resample (multinomial / systematic /
//                                  residual); log w = 0
//     log w += (h / 2) (|S|^2 - sum beta_i |s_i|^2)        FKC's weight over the step (h = g^2 dtau)
//     x'  ~ q(x' | x)  = p(x' | x) with its mean shifted by h grad log p~_t(x)   (twisted proposal)
//                        or p(x' | x) itself                                         (proposal: model)
//     log w += log p(x' | x) - log q(x' | x)
//     log w += log p~_s(x') - log p~_t(x)                   difference form: TDS's weight (eq. 10)
//                                   (p~_t = G(x0_hat)^lambda(t), twist_schedule: twist.hpp)
//   log Z += log mean w;  output: the particles resampled once by their final weights.
//
// The last step is the final weight correction: G itself at the data, divided by everything the
// particle's ancestry was already weighted with, so the product of the potentials is G(x0)
// whatever the intermediate ones were (Singhal et al. 2025, section 3; their max and sum forms,
// `potential_form: max | sum`, multiply the weight at each step by exp of the running max or sum
// of the intermediate log-potentials instead of the difference). With `intermediate: false` only
// G(x0) weighs the particles (importance sampling of the model's samples).
//
// The normalising constant (Del Moral 2004; Naesseth, Lindsten & Schoen 2019, section 2.2):
// log Z = sum over resampling epochs of log mean_i w^i (weights reset to 1 after each
// resampling), plus the exactly known constants: FKC's x-independent term
// (sum beta - 1) d log(alpha_t / alpha_s) per step and log ∫ prod_i N(x; 0, v)^beta_i dx for the
// prior N(0, v / sum beta) of the experts' product at t_max.
//
// Extras (/samples/<name>/): particles (N, ...) and log_weights (N, normalised) before the
// final resampling, ess and ess_times (K + 1 values: at t_0 and after each step), resampling_times,
// log_normalizing_constant; each named expert's network evaluations as nfe_<slot>.
#include <algorithm>
#include <cmath>
#include <limits>

#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "fk_target.hpp"
#include "particle_weights.hpp"
#include "potential.hpp"
#include "resampling.hpp"
#include "reverse_kernel.hpp"
#include "twist.hpp"

namespace diffusion::smc {
namespace {

constexpr double kTwoPi = 6.283185307179586;

enum class PotentialForm { difference, max, sum };

struct SmcOptions {
  GridOption grid;
  std::shared_ptr<const Potential> potential;  // null: no potential (FKC's target alone)
  FkTarget target{std::vector<Expert>{}};
  bool twisted = false;
  double twist_scale = 1.0;
  bool intermediate = true;
  PotentialForm form = PotentialForm::difference;
  ResamplingScheme resampling = ResamplingScheme::systematic;
  double ess_threshold = 0.5;
  TwistSchedule schedule = TwistSchedule::constant;
};

/// Rows `idx` of a (N, ...) tensor.
Tensor select_rows(const Tensor& t, const std::vector<std::size_t>& idx) {
  Shape shape = shape_of(t);
  const std::size_t row = shape[0] ? t.size() / shape[0] : 0;
  shape[0] = idx.size();
  Tensor out = Tensor::from_shape(shape);
  for (std::size_t i = 0; i < idx.size(); ++i) std::copy_n(t.data() + idx[i] * row, row, out.data() + i * row);
  return out;
}

template <class T>
void select_in_place(std::vector<T>& v, const std::vector<std::size_t>& idx) {
  if (v.empty()) return;
  std::vector<T> out(idx.size());
  for (std::size_t i = 0; i < idx.size(); ++i) out[i] = v[idx[i]];
  v = std::move(out);
}

Tensor to_tensor(const std::vector<double>& v) {
  Tensor t = Tensor::from_shape({v.size()});
  for (std::size_t i = 0; i < v.size(); ++i) t.data()[i] = float(v[i]);
  return t;
}

class SmcSampler : public Sampler {
 public:
  explicit SmcSampler(SmcOptions o) : o_(std::move(o)) {}

  void check(const Path& path, const Source& source) const override {
    if (!source.standard_normal())
      throw Error("smc: its reverse kernels (the Gaussian posterior) need the standard Gaussian source, not " + source.name());
    o_.grid.grid->times(path, resolve_steps(o_.grid.steps, path, "smc"));
  }

  std::vector<std::string> required_models() const override {
    std::vector<std::string> out = o_.target.required_models();
    if (o_.potential)
      for (auto& m : o_.potential->required_models()) out.push_back(std::move(m));
    return out;
  }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    const std::size_t steps = resolve_steps(o_.grid.steps, path, "smc");
    const std::vector<double> grid = o_.grid.grid->times(path, steps);
    const std::size_t n = req.shape[0], d = numel(req.shape) / std::max<std::size_t>(n, 1);
    const BoundTarget target = o_.target.bind(model, req);
    const PotentialContext pctx{&path, &req};
    const Potential* twist = o_.intermediate ? o_.potential.get() : nullptr;
    Condition cond = req.condition;

    // The target's prior at t_max: prod_i N(0, v)^beta_i ∝ N(0, v / B), with its normaliser.
    Tensor x = req.source_or_default().start(path, req.shape, rng);
    double log_z = 0;
    const double total_beta = o_.target.total_beta();
    if (total_beta != 1.0) {
      const double v = path.alpha(path.t_max()) * path.alpha(path.t_max()) + path.sigma(path.t_max()) * path.sigma(path.t_max());
      const float shrink = float(1.0 / std::sqrt(total_beta));
      for (float& e : x) e *= shrink;
      log_z += double(d) * (0.5 * (1.0 - total_beta) * std::log(kTwoPi * v) - 0.5 * std::log(total_beta));
    }
    if (req.trajectory) req.trajectory->record(x, grid[0], 0, steps);

    std::vector<double> log_w(n, 0.0), applied(n, 0.0), running, ratio(n, 0.0);
    std::vector<double> ess{}, ess_times{}, resampling_times{};
    TwistedState now, next;
    evaluate_twist(target, twist, pctx, x, grid[0], cond, o_.twisted, twist_scale_at(o_.schedule, path, grid[0]), now);
    if (twist) {
      // TDS's first weight p~_{t_0}(x); every form starts with it.
      for (std::size_t i = 0; i < n; ++i) log_w[i] = applied[i] = now.log_twist[i];
      running = now.log_twist;
    }
    ess.push_back(effective_sample_size(log_w)), ess_times.push_back(grid[0]);

    for (std::size_t k = 0; k < steps; ++k) {
      const bool last = k + 1 == steps;
      const double t = grid[k], s = last ? 0.0 : grid[k + 1];
      if (effective_sample_size(log_w) < o_.ess_threshold * double(n)) {
        log_z += log_mean_exp(log_w);
        const auto idx = resample(o_.resampling, normalized_weights(log_w, ("smc (resampling at t = " + std::to_string(t) + ")").c_str()), n, rng);
        x = select_rows(x, idx);
        now.pred.x0 = select_rows(now.pred.x0, idx);
        if (now.grad.size()) now.grad = select_rows(now.grad, idx);
        select_in_place(now.pred.score_gap, idx), select_in_place(now.log_twist, idx);
        select_in_place(applied, idx), select_in_place(running, idx);
        if (!cond.empty()) cond = cond.select(idx);
        std::fill(log_w.begin(), log_w.end(), 0.0);
        resampling_times.push_back(t);
      }

      const ReverseKernel kernel(path, t, s, last);
      if (!o_.target.plain()) {
        // FKC over [s, t]: the score gap times g^2 dtau / 2 by the trapezoidal rule along the
        // particle's path (its value at x_t now, at x_s once predicted; the last step, to the
        // data, takes x_t's for both halves), and the constant (B - 1) f d dtau integrated exactly
        // (int f = log alpha_t - log alpha_s), which only log Z sees.
        const double half = last ? 1.0 : 0.5;
        for (std::size_t i = 0; i < n; ++i) log_w[i] += half * 0.5 * kernel.score_coef * now.pred.score_gap[i];
        log_z += (total_beta - 1.0) * double(d) * (std::log(path.alpha(t)) - std::log(kernel.q.alpha_s));
      }
      const bool shift = o_.twisted && !last;
      kernel.move(x, now.pred.x0, shift ? &now.grad : nullptr, o_.twist_scale, rng, &ratio);
      if (shift)
        for (std::size_t i = 0; i < n; ++i) log_w[i] += ratio[i];

      if (!last) evaluate_twist(target, twist, pctx, x, s, cond, o_.twisted, twist_scale_at(o_.schedule, path, s), next);
      if (!last && !o_.target.plain())
        for (std::size_t i = 0; i < n; ++i) log_w[i] += 0.5 * 0.5 * kernel.score_coef * next.pred.score_gap[i];
      if (o_.potential) {
        const std::vector<double> ell = last ? final_potential(*o_.potential, pctx, x) : next.log_twist;
        for (std::size_t i = 0; i < n && (last || twist); ++i) {
          double factor;
          if (last) factor = ell[i] - applied[i];  // the final weight correction
          else if (o_.form == PotentialForm::difference) factor = ell[i] - now.log_twist[i];
          else if (o_.form == PotentialForm::max) factor = running[i] = std::max(running[i], ell[i]);
          else factor = running[i] += ell[i];
          // A particle ruled out (weight 0, e.g. by a hard indicator) stays so: its -inf - -inf
          // or -inf + inf would be NaN.
          if (log_w[i] == -std::numeric_limits<double>::infinity()) continue;
          if (std::isnan(factor)) factor = -std::numeric_limits<double>::infinity();
          log_w[i] += factor, applied[i] += factor;
        }
      }
      if (!last) std::swap(now, next);
      ess.push_back(effective_sample_size(log_w)), ess_times.push_back(last ? path.t_min() : s);
      if (req.trajectory) req.trajectory->record(x, last ? path.t_min() : s, k + 1, steps);
    }

    log_z += log_mean_exp(log_w);
    const std::vector<double> weights = normalized_weights(log_w, "smc (final weights)");
    SampleOutput out;
    out.add_extra("particles", x);
    std::vector<double> log_weights(n);
    for (std::size_t i = 0; i < n; ++i) log_weights[i] = std::log(weights[i]);
    out.add_extra("log_weights", to_tensor(log_weights));
    out.add_extra("ess", to_tensor(ess));
    out.add_extra("ess_times", to_tensor(ess_times));
    out.add_extra("resampling_times", to_tensor(resampling_times));
    out.add_extra("log_normalizing_constant", to_tensor({log_z}));
    out.x = select_rows(x, resample(o_.resampling, weights, n, rng));
    out.nfe = target.nfe();
    return out;
  }

 private:
  SmcOptions o_;
};

std::shared_ptr<Sampler> make_smc(const ConfigNode& c, const BuildContext& ctx) {
  SmcOptions o;
  o.grid = read_time_grid(c, 0, ctx);  // steps 0: every step of a discrete path
  if (const auto p = c.find("potential")) o.potential = read_potential(*p, ctx);
  o.target = FkTarget::read(c, ctx);
  o.twisted = c.get_choice("proposal", "model", {"model", "twisted"}) == "twisted";
  o.twist_scale = c.get_double("twist_scale", 1.0, Interval::at_least(0));
  o.intermediate = c.get_bool("intermediate", true);
  const std::string form = c.get_choice("potential_form", "difference", {"difference", "max", "sum"});
  o.form = form == "max" ? PotentialForm::max : form == "sum" ? PotentialForm::sum : PotentialForm::difference;
  o.resampling = read_resampling(c, "systematic");
  o.ess_threshold = c.get_double("ess_threshold", 0.5, Interval::closed(0, 1));
  o.schedule = read_twist_schedule(c);
  if (o.twisted) {
    const ConfigNode at = c.at("proposal");
    if (!o.potential) at.error("a twisted proposal follows the potential's gradient: give a `potential:`");
    if (!o.potential->differentiable())
      at.error("the potential has no gradient (a hard indicator: give it `softness: s > 0`); use proposal: model");
    if (!o.intermediate) at.error("a twisted proposal needs the intermediate potentials (intermediate: true)");
    if (o.form != PotentialForm::difference) at.error("a twisted proposal needs potential_form: difference (TDS's weights)");
  }
  if (o.form != PotentialForm::difference && !o.intermediate)
    c.at("potential_form").error("the max and sum forms accumulate intermediate potentials: they need intermediate: true");
  if (c.has("twist_scale") && !o.twisted) c.at("twist_scale").error("twist_scale scales the twisted proposal's shift: set proposal: twisted");
  return std::make_shared<SmcSampler>(std::move(o));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "smc", make_smc);

}  // namespace diffusion::smc
