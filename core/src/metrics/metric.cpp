// The Metric base: each kind answers only its own question.
#include "diffusion/metrics/metric.hpp"

namespace diffusion {

double Metric::compute(const Tensor&, const Tensor&, Rng&) const {
  throw Error("this metric measures the model, not samples: it has no value for a sample set");
}

MetricValue Metric::evaluate_model(const ModelEvaluation&, Rng&) const {
  throw Error("this metric compares samples with reference data: it has no value for a model alone");
}

MetricValue score_samples(const Metric& metric, const Tensor& samples, const std::vector<int>& sample_labels,
                          const Tensor& reference, const std::vector<int>& reference_labels, Rng& rng) {
  return metric.needs_labels() ? metric.compute_labelled(samples, sample_labels, reference, reference_labels, rng)
                               : metric.compute_value(samples, reference, rng);
}

Rng metric_stream(const Rng& master, const std::string& sampler, const std::string& metric, std::size_t repeat) {
  const std::string name = "metric:" + sampler + ":" + metric;
  return master.split(repeat == 0 ? name : name + ":" + std::to_string(repeat));
}

}  // namespace diffusion
