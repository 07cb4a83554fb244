// Accuracies of a classifier:
//
//   classifier_accuracy  {type: classifier_accuracy, classifier: FILE, from: ema|model}
//       of class-conditional samples: the fraction the trained classifier of FILE assigns
//       (argmax of its logits) to the class each was asked for; figures class_<k>, the fraction
//       among the samples asked for class k. Higher is better. Its floor (fresh test images
//       with their own labels) is the classifier's own test accuracy.
//   test_accuracy        {type: test_accuracy, n: 1000}
//       of the experiment's own trained network (the EMA when there is one), for the classifier
//       experiment itself: the fraction of n held-out images (the data set's
//       sample_independent: the test split of image data) it labels correctly, in the model's
//       coordinates (the codec encodes them, as in training); figures class_<k>.
#include <algorithm>
#include <string>
#include <vector>

#include "trained_classifier.hpp"

namespace diffusion::image_metrics {
namespace {

/// The overall fraction of predicted == asked, and per class (figures class_<k>).
MetricValue accuracy(const std::vector<int>& predicted, const std::vector<int>& asked) {
  int classes = 0;
  for (const int l : asked) classes = std::max(classes, l + 1);
  std::vector<double> hits(std::size_t(classes), 0.0), count(std::size_t(classes), 0.0);
  double total = 0;
  for (std::size_t i = 0; i < asked.size(); ++i) {
    if (asked[i] < 0) throw Error("accuracy: a negative label");
    const bool hit = predicted[i] == asked[i];
    total += hit;
    hits[std::size_t(asked[i])] += hit;
    count[std::size_t(asked[i])] += 1;
  }
  MetricValue v;
  v.value = asked.empty() ? 0.0 : total / double(asked.size());
  for (int k = 0; k < classes; ++k)
    if (count[std::size_t(k)] > 0) v.figures.emplace_back("class_" + std::to_string(k), hits[std::size_t(k)] / count[std::size_t(k)]);
  return v;
}

class ClassifierAccuracy : public Metric {
 public:
  explicit ClassifierAccuracy(const ConfigNode& c) : classifier_(c) {}
  bool needs_labels() const override { return true; }
  double compute(const Tensor&, const Tensor&, Rng&) const override {
    throw Error("classifier_accuracy reads the class each sample was asked for: it needs the labels (compute_labelled)");
  }
  void check_sizes(std::size_t, std::size_t, std::size_t dim) const override {
    if (dim != classifier_.input_size())
      throw Error("classifier_accuracy: the samples have " + std::to_string(dim) + " values each, the classifier of " +
                  classifier_.path() + " reads images of " + std::to_string(classifier_.input_size()));
  }
  MetricValue compute_labelled(const Tensor& samples, const std::vector<int>& labels, const Tensor&,
                               const std::vector<int>&, Rng&) const override {
    if (samples.dimension() == 0 || labels.size() != samples.shape()[0])
      throw Error("classifier_accuracy: " + std::to_string(labels.size()) + " labels for samples " + shape_str(samples));
    return accuracy(classifier_.predict(samples), labels);
  }

 private:
  TrainedClassifier classifier_;
};

class TestAccuracy : public Metric {
 public:
  explicit TestAccuracy(std::size_t n) : n_(n) {}
  bool of_model() const override { return true; }

  MetricValue evaluate_model(const ModelEvaluation& eval, Rng& rng) const override {
    if (!eval.network || !eval.dataset) throw Error("test_accuracy: needs the trained network and the data set");
    Condition c;
    const Tensor data = eval.dataset->sample_independent(n_, rng, &c);
    if (!c.has_labels()) throw Error("test_accuracy: the data set has no labels to score the network against");
    const Tensor x = eval.codec ? eval.codec->encode(data) : data;
    const std::size_t n = x.shape()[0];
    Tensor logits;
    if (auto* classifier = dynamic_cast<ImageClassifier*>(eval.network)) {
      logits = classifier->logits(x);
    } else {  // any classifier network (mlp with output: classes): its time input at 0
      const NoGradScope no_grad;
      logits = eval.network->forward(Var(x), zeros({n}), Condition()).value();
    }
    if (logits.dimension() != 2 || logits.shape()[0] != n)
      throw Error("test_accuracy: the network gives " + shape_str(logits) + ", expected one logit per class (" +
                  std::to_string(n) + ", K): it measures a classifier network");
    const std::size_t k = logits.shape()[1];
    std::vector<int> predicted(n);
    for (std::size_t i = 0; i < n; ++i)
      predicted[i] =
          static_cast<int>(std::max_element(logits.data() + i * k, logits.data() + (i + 1) * k) - (logits.data() + i * k));
    return accuracy(predicted, c.labels());
  }

 private:
  std::size_t n_;
};

}  // namespace

DIFFUSION_REGISTER(metrics, "classifier_accuracy", [](const ConfigNode& c, const BuildContext&) {
  return std::make_shared<ClassifierAccuracy>(c);
});
DIFFUSION_REGISTER(metrics, "test_accuracy", [](const ConfigNode& c, const BuildContext&) {
  return std::make_shared<TestAccuracy>(static_cast<std::size_t>(c.get_int("n", 1000, 1)));
});

}  // namespace diffusion::image_metrics
