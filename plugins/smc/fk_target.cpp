#include "fk_target.hpp"

#include <cmath>

#include <diffusion/plugin.hpp>

namespace diffusion::smc {
namespace {

/// The NetworkDenoiser under the wrappers the run puts around the sampled model, or null.
const NetworkDenoiser* find_network_denoiser(const Denoiser& d) {
  if (const auto* n = dynamic_cast<const NetworkDenoiser*>(&d)) return n;
  if (const auto* w = dynamic_cast<const DenoiserWrapper*>(&d)) return find_network_denoiser(w->inner());
  return nullptr;
}

double squared_norm(const float* v, std::size_t d) {
  double s = 0;
  for (std::size_t j = 0; j < d; ++j) s += double(v[j]) * v[j];
  return s;
}

}  // namespace

FkTarget::FkTarget(std::vector<Expert> experts) : experts_(std::move(experts)) {
  if (experts_.empty()) experts_.push_back({"model", 1.0, nullptr});
}

FkTarget FkTarget::read(const ConfigNode& c, const BuildContext& ctx) {
  std::vector<Expert> experts;
  if (c.has("experts")) {
    if (c.has("beta")) c.error("give the target as `beta:` (the model annealed) or as `experts:`, not both");
    const ConfigNode list = c.at("experts");
    if (list.size() == 0) list.fail("a non-empty list of {model: slot, beta: b}");
    for (const ConfigNode& e : list.items()) {
      Expert x;
      x.slot = e.get_string("model", "model");
      x.beta = e.get_double("beta", 1.0, Interval::greater_than(0));
      if (const auto p = e.find("preconditioning")) {
        if (x.slot == "model") p->error("the sampled model is read through its own preconditioning");
        x.preconditioning = registries().preconditionings.create(*p, ctx);
      }
      experts.push_back(std::move(x));
    }
  } else {
    experts.push_back({"model", c.get_double("beta", 1.0, Interval::greater_than(0)), nullptr});
  }
  return FkTarget(std::move(experts));
}

bool FkTarget::plain() const { return experts_.size() == 1 && experts_[0].slot == "model" && experts_[0].beta == 1.0; }

double FkTarget::total_beta() const {
  double b = 0;
  for (const auto& e : experts_) b += e.beta;
  return b;
}

std::vector<std::string> FkTarget::required_models() const {
  std::vector<std::string> out;
  for (const auto& e : experts_)
    if (e.slot != "model") out.push_back(e.slot);
  return out;
}

BoundTarget::BoundTarget(const Denoiser& model, const std::vector<Expert>& experts, const SampleRequest& req)
    : plain_(experts.size() == 1 && experts[0].slot == "model" && experts[0].beta == 1.0) {
  for (const Expert& e : experts) {
    if (e.slot == "model") {
      experts_.push_back({&model, nullptr, e.slot, e.beta});
      continue;
    }
    std::shared_ptr<const Preconditioning> pre = e.preconditioning;
    if (!pre) {
      const NetworkDenoiser* nd = find_network_denoiser(model);
      if (!nd)
        throw Error("smc: expert '" + e.slot + "' needs `preconditioning:` (the sampled model is not a network " +
                    "denoiser whose preconditioning it could share)");
      pre = std::shared_ptr<const Preconditioning>(std::shared_ptr<const void>(), &nd->preconditioning());
    }
    // A non-owning handle on the request's network: the run keeps the models alive while sampling.
    std::shared_ptr<Network> net(std::shared_ptr<void>(), &req.model(e.slot));
    std::shared_ptr<const Path> path(std::shared_ptr<const void>(), &model.path());
    auto counted = std::make_shared<CountingDenoiser>(std::make_shared<NetworkDenoiser>(net, path, pre));
    experts_.push_back({counted.get(), counted, e.slot, e.beta});
  }
}

void BoundTarget::predict(const Tensor& x, double t, const Condition& c, TargetPrediction& out) const {
  if (plain_) {
    experts_[0].denoiser->predict(x, t, c, scratch_);
    // Swap, not move: a denoiser writes into scratch's tensors when their shape fits, so they
    // must stay valid (they now hold out's previous, no longer needed, values).
    std::swap(out.x0, scratch_.x0);
    out.score_gap.clear();
    return;
  }
  const Path& path = experts_[0].denoiser->path();
  const double alpha = path.alpha(t), sigma = path.sigma(t);
  const std::size_t n = x.shape()[0], d = n ? x.size() / n : 0;
  // E = sum_i beta_i eps_i, so S = -E / sigma; the gap is (|E|^2 - sum_i beta_i |eps_i|^2) / sigma^2.
  Tensor e_sum = zeros(shape_of(x));
  std::vector<double> beta_sq(n, 0.0);
  for (const Bound& b : experts_) {
    b.denoiser->predict(x, t, c, scratch_);
    const float* eps = scratch_.eps.data();
    for (std::size_t k = 0; k < x.size(); ++k) e_sum.data()[k] += float(b.beta * eps[k]);
    for (std::size_t i = 0; i < n; ++i) beta_sq[i] += b.beta * squared_norm(eps + i * d, d);
  }
  out.x0 = Tensor::from_shape(shape_of(x));
  for (std::size_t k = 0; k < x.size(); ++k) out.x0.data()[k] = float((x.data()[k] - sigma * e_sum.data()[k]) / alpha);
  out.score_gap.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    out.score_gap[i] = (squared_norm(e_sum.data() + i * d, d) - beta_sq[i]) / (sigma * sigma);
}

Var BoundTarget::predict_var(const Var& x, double t, const Condition& c, TargetPrediction& out) const {
  const Times times = same_time(x.shape()[0], t);
  if (plain_) {
    PredictionVar p = experts_[0].denoiser->predict_var(x, times, c);
    out.x0 = p.x0.value();
    out.score_gap.clear();
    return p.x0;
  }
  const Path& path = experts_[0].denoiser->path();
  const double alpha = path.alpha(t), sigma = path.sigma(t);
  const std::size_t n = x.shape()[0], d = n ? x.size() / n : 0;
  Var e_sum;
  std::vector<double> beta_sq(n, 0.0);
  for (const Bound& b : experts_) {
    const Var eps = b.denoiser->predict_var(x, times, c).eps;
    for (std::size_t i = 0; i < n; ++i) beta_sq[i] += b.beta * squared_norm(eps.value().data() + i * d, d);
    const Var term = eps * float(b.beta);
    e_sum = e_sum.defined() ? e_sum + term : term;
  }
  const Var x0 = (x - e_sum * float(sigma)) * float(1.0 / alpha);
  out.x0 = x0.value();
  out.score_gap.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    out.score_gap[i] = (squared_norm(e_sum.value().data() + i * d, d) - beta_sq[i]) / (sigma * sigma);
  return x0;
}

std::map<std::string, std::size_t> BoundTarget::nfe() const {
  std::map<std::string, std::size_t> out;
  for (const Bound& b : experts_)
    if (b.owned) out[b.slot] += b.owned->nfe();
  return out;
}

}  // namespace diffusion::smc
