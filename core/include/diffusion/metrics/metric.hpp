#pragma once
// The metric component. Most metrics compare generated samples with reference data (a distance:
// lower is better); the core's (metrics.hpp) are registered as w2, sliced_w2, mmd and energy.
// A metric of the model itself (the negative log-likelihood of held-out data) says so with
// of_model() and reads the trained model instead of its samples (evaluate_model); the run
// computes it once per run, on the model the samplers use by default (the EMA when there is one).
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/model/codec.hpp"
#include "diffusion/model/dataset.hpp"
#include "diffusion/model/denoiser.hpp"
#include "diffusion/model/network.hpp"
#include "diffusion/model/source.hpp"
#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// What a metric of the model reads.
struct ModelEvaluation {
  const Denoiser* model = nullptr;  ///< the trained model on its path
  const Source* source = nullptr;   ///< where its path starts (the prior)
  const Dataset* dataset = nullptr; ///< held-out data: fresh draws (sample_independent) from their own stream
  const Codec* codec = nullptr;     ///< data -> model space; its log_det_encode turns densities into the data's
  Network* network = nullptr;       ///< the network behind `model` (the EMA when there is one), for metrics
                                    ///< of the network itself (a classifier's held-out accuracy)
};

/// A metric's value with named figures of its own (bits per dimension, the prior term, ...),
/// written as attributes beside it.
struct MetricValue {
  double value = 0.0;
  std::vector<std::pair<std::string, double>> figures;
};

class Metric {
 public:
  virtual ~Metric() = default;
  /// samples (N, ...) and reference (M, ...) in data coordinates. A metric of the model is
  /// never asked this.
  virtual double compute(const Tensor& samples, const Tensor& reference, Rng& rng) const;
  /// The same with named figures of the metric's own (KID's spread over its subsets), which the
  /// run writes as attributes beside the value (the first repeat's). Default: compute(), none.
  virtual MetricValue compute_value(const Tensor& samples, const Tensor& reference, Rng& rng) const {
    return {compute(samples, reference, rng), {}};
  }
  /// Refuses, with an Error that says why and what to use instead, sizes this metric cannot
  /// take or cannot finish: `samples` points compared with `reference` points of `dim`
  /// coordinates each. The run calls it for every comparison it will make when the experiment
  /// is composed, so such a size fails before training, not after. Default: any size.
  virtual void check_sizes(std::size_t /*samples*/, std::size_t /*reference*/, std::size_t /*dim*/) const {}
  /// The working memory (bytes) compute() needs beyond its inputs at these sizes, for the
  /// run's memory estimate. Default: both sets widened to double, twice over.
  virtual std::size_t memory_bytes(std::size_t samples, std::size_t reference, std::size_t dim) const {
    return 2 * (samples + reference) * dim * sizeof(double);
  }

  /// True for a metric of the model (evaluate_model) rather than of samples (compute).
  virtual bool of_model() const { return false; }
  /// True for a metric of class-conditional samples (compute_labelled): it reads the class each
  /// sample was asked for and the class of each reference row (the fraction of samples in the
  /// requested class, W2 per class).
  virtual bool needs_labels() const { return false; }
  /// samples (N, ...) with the label each was asked for, reference (M, ...) with the label each
  /// was drawn with, in data coordinates; only called when needs_labels().
  virtual MetricValue compute_labelled(const Tensor& /*samples*/, const std::vector<int>& /*sample_labels*/,
                                       const Tensor& /*reference*/, const std::vector<int>& /*reference_labels*/,
                                       Rng& /*rng*/) const {
    throw Error("this metric does not read class labels");
  }
  /// The metric of the model; only called when of_model().
  virtual MetricValue evaluate_model(const ModelEvaluation& eval, Rng& rng) const;
  /// What a perfect model scores on this data set (the floor /metrics/data/<name>, e.g. the true
  /// negative log-density of the held-out data), when the data set knows it; drawn from rng as
  /// evaluate_model draws its held-out data. false when there is no such figure.
  virtual bool floor_of_model(const ModelEvaluation& /*eval*/, Rng& /*rng*/, MetricValue& /*out*/) const {
    return false;
  }
};

/// A metric of samples as the run computes it: compute_labelled with both sides' labels when the
/// metric reads them, compute_value otherwise (the labels are then not read).
MetricValue score_samples(const Metric& metric, const Tensor& samples, const std::vector<int>& sample_labels,
                          const Tensor& reference, const std::vector<int>& reference_labels, Rng& rng);

/// The stream a metric of a sampler's samples draws from on repeat r (docs/architecture.md,
/// Randomness): "metric:<sampler>:<metric>", with ":<r>" appended for r > 0.
Rng metric_stream(const Rng& master, const std::string& sampler, const std::string& metric, std::size_t repeat = 0);

}  // namespace diffusion
