// The Metric base: each kind answers only its own question.
#include "diffusion/metrics/metric.hpp"

namespace diffusion {

double Metric::compute(const Tensor&, const Tensor&, Rng&) const {
  throw Error("this metric measures the model, not samples: it has no value for a sample set");
}

MetricValue Metric::evaluate_model(const ModelEvaluation&, Rng&) const {
  throw Error("this metric compares samples with reference data: it has no value for a model alone");
}

}  // namespace diffusion
