// SGD with momentum, dampening, Nesterov and L2 weight decay, in torch.optim.SGD's order of
// operations so that runs ported from PyTorch follow the same trajectory up to float rounding.
#include <cmath>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/optim/optim.hpp"

namespace diffusion {

SGD::SGD(std::vector<Var> params, const SgdOptions& options)
    : Optimizer(std::move(params), options.lr), opt_(options) {
  if (!(opt_.momentum >= 0.0)) throw Error("SGD: momentum must be >= 0");
  if (!(opt_.weight_decay >= 0.0)) throw Error("SGD: weight_decay must be >= 0");
  if (opt_.nesterov && (opt_.momentum <= 0.0 || opt_.dampening != 0.0))
    throw Error("SGD: nesterov needs momentum > 0 and dampening = 0");
  // No buffer without momentum: plain SGD keeps no state, as in PyTorch.
  if (opt_.momentum != 0.0) momentum_slot_ = add_state("momentum_buffer");
}

void SGD::update(std::size_t i, std::int64_t t) {
  Var& p = param(i);
  float* w = p.value().data();
  const float* g = p.grad().data();
  const std::size_t n = p.size();
  const float lr = static_cast<float>(this->lr());
  const float wd = static_cast<float>(opt_.weight_decay);
  const float mu = static_cast<float>(opt_.momentum);
  const float one_minus_damp = static_cast<float>(1.0 - opt_.dampening);
  const bool decay = opt_.weight_decay != 0.0;

  if (opt_.momentum == 0.0) {
    for (std::size_t j = 0; j < n; ++j) {
      const float d = decay ? g[j] + wd * w[j] : g[j];
      w[j] -= lr * d;
    }
    return;
  }
  float* buf = state(momentum_slot_, i);
  // PyTorch starts the buffer at the first gradient itself (no dampening on the first step).
  const bool first = t == 1;
  for (std::size_t j = 0; j < n; ++j) {
    float d = decay ? g[j] + wd * w[j] : g[j];
    buf[j] = first ? d : buf[j] * mu + one_minus_damp * d;
    d = opt_.nesterov ? d + mu * buf[j] : buf[j];
    w[j] -= lr * d;
  }
}

void SGD::write_hyperparameters(const H5::Group& g) const {
  write_attribute(g, "momentum", opt_.momentum);
  write_attribute(g, "dampening", opt_.dampening);
  write_attribute(g, "weight_decay", opt_.weight_decay);
  write_attribute(g, "nesterov", static_cast<std::int64_t>(opt_.nesterov));
}

}  // namespace diffusion
