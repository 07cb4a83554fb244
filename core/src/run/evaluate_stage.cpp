// Stage 4: evaluation. Every metric of every sampler against the reference (its mean and spread
// over the sampler's repeats; the first min(n, reference n) samples against as many reference
// rows, so metrics that need equal sizes always get them), and the metric floor: the same metrics
// for fresh independent draws of the data, what a perfect sampler scores, to read the others by.
// Metrics of the model itself (the likelihood of held-out data) run once, on the model the
// samplers use by default (the EMA when there is one), with their floor when the data set's
// density is known. A stop request ends a metric within a second (stop_request.hpp): the
// metrics poll the run's stop flag inside their long loops.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ostream>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/metrics/stop_request.hpp"
#include "diffusion/run/memory_estimate.hpp"
#include "diffusion/run/stages.hpp"
#include "diffusion/tensor/rows.hpp"

namespace diffusion {
namespace {

/// The first n of a sample's or the reference's labels (as first_rows takes their rows).
std::vector<int> first_labels(const std::vector<int>& labels, std::size_t n) {
  return std::vector<int>(labels.begin(), labels.begin() + static_cast<std::ptrdiff_t>(std::min(n, labels.size())));
}

double mean_of(const std::vector<double>& values) {
  double mean = 0;
  for (const double v : values) mean += v / double(values.size());
  return mean;
}

/// /metrics/<group>/<metric>: the mean of the values, with attributes std (the sample standard
/// deviation; 0 for one value), values and count. Returns the mean.
double write_metric(const H5::Group& root, const std::string& group, const std::string& metric,
                    const std::vector<double>& values) {
  const double mean = mean_of(values);
  double var = 0;
  for (const double v : values) var += (v - mean) * (v - mean);
  const double std = values.size() > 1 ? std::sqrt(var / double(values.size() - 1)) : 0.0;
  const H5::Group g = h5_require_group(root, "metrics/" + group);
  write_tensor(g, metric, scalar(float(mean)));
  H5::DataSet ds = g.openDataSet(metric);
  write_attribute(ds, "std", std);
  write_attribute(ds, "values", values);
  write_attribute(ds, "count", static_cast<std::int64_t>(values.size()));
  return mean;
}

/// The figures a metric reports beside its value, as attributes of its dataset.
void write_figures(const H5::Group& root, const std::string& group, const std::string& metric,
                   const MetricValue& v) {
  H5::DataSet ds = h5_open_group(root, "metrics/" + group).openDataSet(metric);
  for (const auto& [name, value] : v.figures) write_attribute(ds, name, value);
}

/// The model as a metric of the model reads it: each evaluation first polls the stop request,
/// so a likelihood's ODE solve (hundreds of evaluations) ends within one evaluation of a stop.
class StopPollingDenoiser : public DenoiserWrapper {
 public:
  using DenoiserWrapper::DenoiserWrapper;
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override {
    throw_if_stop_requested();
    DenoiserWrapper::predict(x, t, c, out);
  }
  PredictionVar predict_var(const Var& x, const Times& t, const Condition& c) const override {
    throw_if_stop_requested();
    return DenoiserWrapper::predict_var(x, t, c);
  }
  using Denoiser::predict;
};

/// /metrics/model/<metric> for every metric of the model, and /metrics/data/<metric> when the
/// metric knows what a perfect model scores.
void evaluate_model_metrics(RunContext& run) {
  const Experiment& ex = run.ex;
  const H5::Group root = run.root();
  std::shared_ptr<const Denoiser> model;
  const std::shared_ptr<Network> network = ex.ema_network() ? ex.ema_network() : ex.models.shared("model");
  for (const MetricSpec& m : ex.metrics) {
    if (!m.metric->of_model()) continue;
    if (run.stop_requested()) throw RunInterrupted{};
    if (!model) model = std::make_shared<StopPollingDenoiser>(ex.denoiser(network));
    ModelEvaluation eval{model.get(), ex.source ? ex.source.get() : &standard_normal_source(), ex.dataset.get(),
                         ex.codec.get(), network.get()};
    const Rng stream = run.master.split("metric:model:" + m.name);
    Rng rng = stream;
    const MetricValue value = m.metric->evaluate_model(eval, rng);
    run.result.model_metrics[m.name] = write_metric(root, "model", m.name, {value.value});
    write_figures(root, "model", m.name, value);
    Rng floor_rng = stream;
    MetricValue floor;
    if (m.metric->floor_of_model(eval, floor_rng, floor)) {
      run.result.floor[m.name] = write_metric(root, "data", m.name, {floor.value});
      write_figures(root, "data", m.name, floor);
    }
  }
}

/// "evaluating ddim: 2000 points against as many reference points (w2, mmd)", before a
/// group's metrics start: a metric of 10^4 points can take a minute.
void log_group(const RunContext& run, const std::string& what, std::size_t n) {
  if (!run.options.log) return;
  std::string names;
  for (const MetricSpec& m : run.ex.metrics)
    if (!m.metric->of_model()) names += (names.empty() ? "" : ", ") + m.name;
  if (names.empty()) return;
  *run.options.log << "evaluating " << what << ": " << n << " points against as many reference points (" << names
                   << ")\n";
}

void evaluate_sample_metrics(RunContext& run) {
  const Experiment& ex = run.ex;
  const H5::Group root = run.root();
  // The sizes were checked against each metric when the experiment was composed
  // (check_metric_sizes); the same function gives them here.
  const std::vector<MetricComparison> comparisons = metric_comparisons(ex);
  std::size_t floor_n = 0;
  for (const MetricComparison& c : comparisons)
    if (c.group == "data") floor_n = c.n;
  for (const SamplerSpec& s : ex.samplers) {
    std::size_t n = 0;
    for (const MetricComparison& c : comparisons)
      if (c.group == s.name) n = c.n;
    const Tensor ref = first_rows(run.reference, n);
    log_group(run, s.name, n);
    for (const MetricSpec& m : ex.metrics) {
      if (m.metric->of_model()) continue;
      std::vector<double> values;
      MetricValue first;  // the metric's own figures (per class, ...) of repeat 0
      for (std::size_t r = 0; r < run.samples[s.name].size(); ++r) {
        if (run.stop_requested()) throw RunInterrupted{};
        Rng rng = metric_stream(run.master, s.name, m.name, r);
        const Tensor x = first_rows(run.samples[s.name][r], n);
        const MetricValue v = score_samples(*m.metric, x, first_labels(run.sample_labels[s.name].at(r), n), ref,
                                            first_labels(run.reference_labels, n), rng);
        values.push_back(v.value);
        if (r == 0) first = v;
      }
      run.result.metrics[s.name][m.name] = write_metric(root, s.name, m.name, values);
      write_figures(root, s.name, m.name, first);
    }
  }
  // The floor, at the comparison size of the largest sampler (or the whole reference).
  if (floor_n > 0) {
    log_group(run, "the floor (" + std::to_string(ex.evaluation.floor_draws) + " draws of fresh data)", floor_n);
    const Tensor ref = first_rows(run.reference, floor_n);
    std::vector<Tensor> draws;
    for (std::size_t d = 0; d < ex.evaluation.floor_draws; ++d) {
      Rng rng = run.master.split("floor:" + std::to_string(d));
      draws.push_back(ex.dataset->sample_independent(floor_n, rng));
    }
    // Metrics of labelled samples score fresh draws with the labels they were drawn with
    // (from streams of their own), drawn only when such a metric is asked for.
    std::vector<Tensor> labelled_draws;
    std::vector<std::vector<int>> draw_labels;
    for (const MetricSpec& m : ex.metrics)
      for (std::size_t d = 0; m.metric->needs_labels() && labelled_draws.size() < ex.evaluation.floor_draws; ++d) {
        Rng rng = run.master.split("floor:" + std::to_string(d) + ":labelled");
        Condition c;
        labelled_draws.push_back(ex.dataset->sample_independent(floor_n, rng, &c));
        draw_labels.push_back(c.labels());
      }
    for (const MetricSpec& m : ex.metrics) {
      if (m.metric->of_model()) continue;
      std::vector<double> values;
      MetricValue first;
      for (std::size_t d = 0; d < draws.size(); ++d) {
        if (run.stop_requested()) throw RunInterrupted{};
        Rng rng = run.master.split("metric:data:" + m.name + ":" + std::to_string(d));
        const MetricValue v =
            m.metric->needs_labels()
                ? score_samples(*m.metric, labelled_draws[d], draw_labels[d], ref, first_labels(run.reference_labels, floor_n), rng)
                : score_samples(*m.metric, draws[d], {}, ref, {}, rng);
        values.push_back(v.value);
        if (d == 0) first = v;
      }
      run.result.floor[m.name] = write_metric(root, "data", m.name, values);
      write_figures(root, "data", m.name, first);
    }
    write_attribute(h5_open_group(root, "metrics/data"), "n", static_cast<std::int64_t>(floor_n));
  }
}

}  // namespace

void evaluate_samples(RunContext& run) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    const StopRequestScope stop(run.options.stop);
    evaluate_sample_metrics(run);
    evaluate_model_metrics(run);
  } catch (const MetricStopped&) {
    throw RunInterrupted{};
  }
  run.result.metric_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace diffusion
