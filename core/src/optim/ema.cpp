// EMA of weights. The shadow module is a full module of the model's architecture, so the
// averaged network samples, saves and loads exactly like the trained one.
#include <algorithm>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/optim/optim.hpp"

namespace diffusion {
namespace {
std::vector<Var> values_of(const std::vector<std::pair<std::string, Var>>& named) {
  std::vector<Var> out;
  out.reserve(named.size());
  for (const auto& e : named) out.push_back(e.second);
  return out;
}
}  // namespace

EMA::EMA(const Module& model, std::shared_ptr<Module> shadow, double decay, bool warmup)
    : shadow_(std::move(shadow)), decay_(decay), warmup_(warmup) {
  if (!shadow_) throw Error("EMA: the shadow module is null");
  if (!(decay >= 0.0 && decay <= 1.0))
    throw Error("EMA: decay must lie in [0, 1], got " + std::to_string(decay));
  shadow_->copy_parameters_from(model);  // also checks that the architectures match
  model_params_ = values_of(model.named_parameters());
  shadow_params_ = values_of(shadow_->named_parameters());
  model_buffers_ = values_of(model.named_buffers());
  shadow_buffers_ = values_of(shadow_->named_buffers());
  // The average is not trained: it never needs a gradient.
  for (auto& p : shadow_params_) p.set_requires_grad(false);
}

double EMA::next_decay() const {
  if (!warmup_) return decay_;
  const double n = static_cast<double>(num_updates_);
  return std::min(decay_, (1.0 + n) / (10.0 + n));
}

void EMA::update() { update(next_decay()); }

void EMA::update(double decay) {
  // Float scalars in PyTorch's order: shadow.mul_(d).add_(param, alpha=1-d).
  const float d = static_cast<float>(decay);
  const float one_minus_d = static_cast<float>(1.0 - decay);
  for (std::size_t i = 0; i < model_params_.size(); ++i) {
    float* s = shadow_params_[i].value().data();
    const float* p = model_params_[i].value().data();
    for (std::size_t j = 0, n = shadow_params_[i].size(); j < n; ++j) s[j] = s[j] * d + one_minus_d * p[j];
  }
  for (std::size_t i = 0; i < model_buffers_.size(); ++i) {
    const Tensor& src = model_buffers_[i].value();
    std::copy(src.begin(), src.end(), shadow_buffers_[i].value().begin());
  }
  ++num_updates_;
}

void EMA::save(const H5::Group& g) const {
  shadow_->save(g);
  write_attribute(g, "ema_decay", decay_);
  write_attribute(g, "ema_warmup", static_cast<std::int64_t>(warmup_));
  write_attribute(g, "ema_num_updates", num_updates_);
}

void EMA::load(const H5::Group& g) {
  // The count matters only for warm-up; weights written by other tools may lack it.
  const std::int64_t n = has_attribute(g, "ema_num_updates") ? read_int_attribute(g, "ema_num_updates") : 0;
  shadow_->load(g);
  num_updates_ = n;
}

}  // namespace diffusion
