#pragma once
// The target network of consistency distillation (CM paper, Algorithm 2):
//   theta^- <- stopgrad(mu theta^- + (1 - mu) theta),
// after every update of theta. Header-only, tested directly.
#include <cstddef>

#include <diffusion/nn/module.hpp>

namespace diffusion::consistency {

/// target <- mu target + (1 - mu) online, parameter by parameter (same architecture); buffers
/// (not trained) are copied.
inline void ema_update(Module& target, const Module& online, double mu) {
  const auto tp = target.named_state(), op = online.named_state();
  if (tp.size() != op.size())
    throw Error("consistency target: the target network has " + std::to_string(tp.size()) + " tensors, the model " +
                std::to_string(op.size()) + " (the target must be built like the model)");
  const std::size_t params = target.parameters().size();  // named_state lists parameters first
  for (std::size_t k = 0; k < tp.size(); ++k) {
    Var t = tp[k].second;
    const Tensor& o = op[k].second.value();
    if (t.value().size() != o.size())
      throw Error("consistency target: " + tp[k].first + " differs in size from the model's " + op[k].first);
    const bool is_param = k < params;
    float* tv = t.value().data();
    const float* ov = o.data();
    for (std::size_t j = 0; j < o.size(); ++j)
      tv[j] = is_param ? static_cast<float>(mu * tv[j] + (1.0 - mu) * ov[j]) : ov[j];
  }
}

}  // namespace diffusion::consistency
