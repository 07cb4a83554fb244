// The core's metrics, registered when the registries are first used.
#include "diffusion/io/config.hpp"
#include "diffusion/metrics/metrics.hpp"
#include "diffusion/plugin/registries.hpp"

namespace diffusion {
namespace {

/// A metric from a plain function of (samples, reference, rng).
template <class F>
class FunctionMetric : public Metric {
 public:
  explicit FunctionMetric(F f) : f_(std::move(f)) {}
  double compute(const Tensor& x, const Tensor& y, Rng& rng) const override { return f_(x, y, rng); }

 private:
  F f_;
};

template <class F>
std::shared_ptr<Metric> make_metric(F f) {
  return std::make_shared<FunctionMetric<F>>(std::move(f));
}

}  // namespace

void register_core_metrics(Registries& regs) {
  regs.metrics.add("w2", [](const ConfigNode&, const BuildContext&) {
    return make_metric([](const Tensor& x, const Tensor& y, Rng&) { return w2_exact(x, y); });
  });
  regs.metrics.add("sliced_w2", [](const ConfigNode& c, const BuildContext&) {
    const auto p = static_cast<std::size_t>(c.get_int("projections", 512, 1, 1 << 20));
    return make_metric([p](const Tensor& x, const Tensor& y, Rng& rng) { return sliced_w2(x, y, p, rng); });
  });
  regs.metrics.add("mmd", [](const ConfigNode& c, const BuildContext&) {
    const auto bw = c.get_double_list("bandwidths", default_mmd_bandwidths(), 1e-12);
    return make_metric([bw](const Tensor& x, const Tensor& y, Rng&) { return mmd_rbf(x, y, bw); });
  });
  regs.metrics.add("energy", [](const ConfigNode&, const BuildContext&) {
    return make_metric([](const Tensor& x, const Tensor& y, Rng&) { return energy_distance(x, y); });
  });
}

}  // namespace diffusion
