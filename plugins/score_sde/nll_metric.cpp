// The negative log-likelihood of held-out data through the probability-flow ODE (Song et al.
// 2021, appendix D.2; the instantaneous change of variables of Chen et al. 2018):
//
//   log p_0(x(0)) = log p_T(x(T)) + int_0^T div v(x(t), t) dt,
//
// with v the probability-flow velocity (probability_flow.hpp). The augmented state
// [x, delta] (N, D + 1) is integrated forward from t_min (or `eps`) to t_max with one of the core's
// integrators, d delta / dt = div v, so delta(T) is the integral; the error control sees the
// log-density column too. The divergence is exact (D reverse-mode passes, one per coordinate:
// seeding every row with the one-hot e_j gives each row's d v_j / d x_j, rows being independent)
// or Hutchinson's estimate eps^T (dv/dx) eps (Hutchinson 1989; FFJORD, Grathwohl et al. 2019),
// its probes drawn once per integration and held fixed over time, as FFJORD does, so the ODE is
// deterministic for the adaptive solver and the estimate of the integral stays unbiased.
//
//   metrics: [{type: nll, n: 1000, method: dopri5, rtol: 1e-5, atol: 1e-5,
//              divergence: auto, exact_max_dim: 16, probe: rademacher, probes: 1}]
//
// `divergence: auto` is exact up to exact_max_dim coordinates, Hutchinson above. Fixed-step
// methods step between the times of a time grid (`steps`, `spacing:` or `timesteps:`, as the
// samplers read them; default 100 linear), run forwards from t_min. The held-out data are `n`
// fresh draws (Dataset::sample_independent), encoded by the codec; the data-space log-likelihood adds the
// codec's log |det| (Codec::log_det_encode). The prior term is the source's start density
// (the standard Gaussian source only). Reports the mean NLL in nats per sample; figures:
// bits_per_dim = nll / (D ln 2), prior_nats (mean -log p_T(x_T)), nfe, nll_std (over the
// held-out points), n. The floor, when the data set knows its density, is the true mean NLL of
// the same draws.
#include <cmath>
#include <optional>

#include <diffusion/integrate/ode.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "probability_flow.hpp"

namespace diffusion::score_sde {
namespace {

enum class Divergence { auto_, exact, hutchinson };
enum class Probe { rademacher, gaussian };

struct NllOptions {
  std::size_t n = 1000;
  OdeMethod method = OdeMethod::dopri5;
  AdaptiveOptions adaptive;
  GridOption grid;  ///< fixed-step methods
  Divergence divergence = Divergence::auto_;
  std::size_t exact_max_dim = 16;
  Probe probe = Probe::rademacher;
  std::size_t probes = 1;
  std::optional<double> eps;  ///< where the integration starts, instead of the path's t_min
};

/// d[x, delta]/dt = [v(x, t), div v(x, t)] on the augmented state (N, D + 1).
class AugmentedField {
 public:
  /// probes: empty for the exact divergence, else Hutchinson's P probes, each shaped like x.
  AugmentedField(const Denoiser& model, Shape x_shape, std::vector<Tensor> probes)
      : model_(model), x_shape_(std::move(x_shape)), probes_(std::move(probes)) {}

  void operator()(double t, const Tensor& y, Tensor& dy) const {
    const std::size_t n = x_shape_[0], d = numel(x_shape_) / n;
    Tensor x = Tensor::from_shape(x_shape_);
    for (std::size_t i = 0; i < n; ++i)
      std::copy(y.data() + i * (d + 1), y.data() + i * (d + 1) + d, x.data() + i * d);
    std::vector<double> div(n, 0.0);
    // One forward graph, one backward pass through it per coordinate or probe.
    Var xv(x, true);
    const Var v = probability_flow_velocity_var(model_, xv, t, none_);
    for (std::size_t i = 0; i < n; ++i)
      std::copy(v.value().data() + i * d, v.value().data() + (i + 1) * d, dy.data() + i * (d + 1));
    const std::size_t passes = probes_.empty() ? d : probes_.size();
    for (std::size_t k = 0; k < passes; ++k) {
      xv.zero_grad();
      if (probes_.empty()) {
        // Exact: seed e_k in every row. Rows are independent, so each row of the gradient is
        // that row's d v_k / d x, and its column k the diagonal entry d v_k / d x_k.
        Tensor seed = zeros(x_shape_);
        for (std::size_t i = 0; i < n; ++i) seed.data()[i * d + k] = 1.0f;
        v.backward(seed);
        const float* g = xv.grad().data();
        for (std::size_t i = 0; i < n; ++i) div[i] += g[i * d + k];
      } else {
        // Hutchinson: eps^T J eps from the vector-Jacobian product eps^T J, averaged over probes.
        const Tensor& e = probes_[k];
        v.backward(e);
        const float* g = xv.grad().data();
        for (std::size_t i = 0; i < n; ++i) {
          double s = 0;
          for (std::size_t j = 0; j < d; ++j) s += double(e.data()[i * d + j]) * g[i * d + j];
          div[i] += s / double(passes);
        }
      }
    }
    for (std::size_t i = 0; i < n; ++i) dy.data()[i * (d + 1) + d] = static_cast<float>(div[i]);
  }

 private:
  const Denoiser& model_;
  Shape x_shape_;
  std::vector<Tensor> probes_;
  Condition none_;  ///< the likelihood of the unconditional model
};

double mean_of(const std::vector<double>& v) {
  double m = 0;
  for (const double x : v) m += x / double(v.size());
  return m;
}

double std_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean_of(v);
  double s = 0;
  for (const double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

class NllMetric : public Metric {
 public:
  explicit NllMetric(NllOptions o) : o_(std::move(o)) {}
  bool of_model() const override { return true; }

  MetricValue evaluate_model(const ModelEvaluation& eval, Rng& rng) const override {
    if (!eval.model || !eval.dataset) throw Error("nll: needs the trained model and the data set");
    const Denoiser& model = *eval.model;
    const Path& path = model.path();
    const Source& source = eval.source ? *eval.source : standard_normal_source();
    if (!source.standard_normal())
      throw Error("nll: the prior term needs a closed-form density at t_max, which only the standard Gaussian "
                  "source has, not " + source.name());
    const double t0 = o_.eps ? *o_.eps : path.t_min(), t1 = path.t_max();
    if (!(t0 >= path.t_min() && t0 < t1))
      throw Error("nll: eps = " + std::to_string(t0) + " must lie in the path's times [" + std::to_string(path.t_min()) +
                  ", " + std::to_string(t1) + ")");

    // The held-out data (drawn first, as floor_of_model draws them), in the model's space.
    const Shape data_shape = eval.dataset->sample_shape();
    const Tensor data = eval.dataset->sample_independent(o_.n, rng);
    const Tensor z = eval.codec ? eval.codec->encode(data) : data;
    const double log_det = eval.codec ? eval.codec->log_det_encode(data_shape) : 0.0;
    const Shape x_shape = shape_of(z);
    const std::size_t n = x_shape[0], d = z.size() / n;

    const bool exact = o_.divergence == Divergence::exact ||
                       (o_.divergence == Divergence::auto_ && d <= o_.exact_max_dim);
    std::vector<Tensor> probes;
    if (!exact)
      for (std::size_t k = 0; k < o_.probes; ++k) probes.push_back(draw_probe(x_shape, rng));

    // [x, delta] with delta(t0) = 0.
    Tensor y = zeros({n, d + 1});
    for (std::size_t i = 0; i < n; ++i) std::copy(z.data() + i * d, z.data() + (i + 1) * d, y.data() + i * (d + 1));
    const AugmentedField field(model, x_shape, std::move(probes));
    const OdeStats stats = integrate(o_.method, field, times(path, t0), y, o_.adaptive);

    Tensor x_T = Tensor::from_shape(x_shape);
    for (std::size_t i = 0; i < n; ++i) std::copy(y.data() + i * (d + 1), y.data() + i * (d + 1) + d, x_T.data() + i * d);
    const Tensor log_prior = source.start_log_density(path, x_T);
    std::vector<double> nll(n), prior(n);
    for (std::size_t i = 0; i < n; ++i) {
      prior[i] = -double(log_prior.data()[i]);
      // log p_data(x) = log p_T(x_T) + int div v dt + log |det encode'|.
      nll[i] = -(double(log_prior.data()[i]) + double(y.data()[i * (d + 1) + d]) + log_det);
    }
    MetricValue out;
    out.value = mean_of(nll);
    out.figures = {{"bits_per_dim", out.value / (double(numel(data_shape)) * std::log(2.0))},
                   {"prior_nats", mean_of(prior)},
                   {"nfe", double(stats.nfe)},
                   {"nll_std", std_of(nll)},
                   {"n", double(n)}};
    return out;
  }

  bool floor_of_model(const ModelEvaluation& eval, Rng& rng, MetricValue& out) const override {
    if (!eval.dataset || !eval.dataset->has_log_density()) return false;
    const Tensor data = eval.dataset->sample_independent(o_.n, rng);
    const Tensor lp = eval.dataset->log_density(data);
    std::vector<double> nll(lp.size());
    for (std::size_t i = 0; i < nll.size(); ++i) nll[i] = -double(lp.data()[i]);
    out.value = mean_of(nll);
    out.figures = {{"bits_per_dim", out.value / (double(numel(eval.dataset->sample_shape())) * std::log(2.0))},
                   {"nll_std", std_of(nll)},
                   {"n", double(nll.size())}};
    return true;
  }

 private:
  /// From t0 up to t_max: dopri5 chooses its own steps; the fixed-step methods take t0, the
  /// grid's times above it in increasing order, and t_max.
  std::vector<double> times(const Path& path, double t0) const {
    if (o_.method == OdeMethod::dopri5) return {t0, path.t_max()};
    const std::vector<double> grid = o_.grid.grid->times(path, o_.grid.steps);
    std::vector<double> t = {t0};
    // A grid time within rounding of t0 (t_max - (t_max - t_min)) is t0 itself.
    const double tiny = 1e-9 * (path.t_max() - path.t_min());
    for (auto it = grid.rbegin(); it != grid.rend(); ++it)
      if (*it > t0 + tiny) t.push_back(*it);
    // The prior term is read at t_max: end there even when the grid stops short of it.
    if (t.size() > 1 && t.back() >= path.t_max() - tiny) t.back() = path.t_max();
    else t.push_back(path.t_max());
    return t;
  }

  Tensor draw_probe(const Shape& shape, Rng& rng) const {
    if (o_.probe == Probe::gaussian) return rng.normal(shape);
    Tensor e = rng.uniform(shape);
    for (std::size_t j = 0; j < e.size(); ++j) e.data()[j] = e.data()[j] < 0.5f ? -1.0f : 1.0f;
    return e;
  }

  NllOptions o_;
};

std::shared_ptr<Metric> make_nll(const ConfigNode& c, const BuildContext& ctx) {
  NllOptions o;
  o.n = static_cast<std::size_t>(c.get_int("n", 1000, 1, 100000000));
  OdeIntegration integration = read_ode_integration(c, 100, ctx);
  o.method = integration.method;
  o.adaptive = integration.adaptive;
  o.grid = std::move(integration.grid);
  const std::string div = c.get_choice("divergence", "auto", {"auto", "exact", "hutchinson"});
  o.divergence = div == "exact" ? Divergence::exact : div == "hutchinson" ? Divergence::hutchinson : Divergence::auto_;
  o.exact_max_dim = static_cast<std::size_t>(c.get_int("exact_max_dim", 16, 0, 1000000));
  if (div != "exact") {
    o.probe = c.get_choice("probe", "rademacher", {"rademacher", "gaussian"}) == "gaussian" ? Probe::gaussian
                                                                                           : Probe::rademacher;
    o.probes = static_cast<std::size_t>(c.get_int("probes", 1, 1, 100000));
  } else {
    for (const char* key : {"probe", "probes"})
      if (c.has(key)) c.at(key).error("`" + std::string(key) + "` sets Hutchinson's estimator; divergence: exact uses none");
  }
  if (c.has("eps")) o.eps = c.get_double("eps", 0.0, Interval::at_least(0));
  return std::make_shared<NllMetric>(std::move(o));
}

}  // namespace

DIFFUSION_REGISTER(metrics, "nll", make_nll);

}  // namespace diffusion::score_sde
