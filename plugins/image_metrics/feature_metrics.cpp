// Distances between generated images and the reference in the feature space of a trained
// image_classifier (trained_classifier.hpp says how it is read):
//
//   fd   {type: fd, classifier: FILE, from: ema|model}
//        the Frechet distance of the Gaussians fitted to the samples' and the reference's
//        features (Heusel et al. 2017; feature_distances.hpp). FID's estimator is biased upward
//        for few samples (Binkowski et al. 2018, sec. 3.1): compare runs at the same n.
//   kid  {type: kid, classifier: FILE, from: ema|model, subsets: 10, subset_size: min(1000, n)}
//        the unbiased MMD^2 of the features with the cubic polynomial kernel, averaged over
//        `subsets` random subsets of `subset_size` rows of each set (Binkowski et al. 2018).
//        Figure `subset_std`: the standard deviation over the subsets (of the first repeat).
// Lower is better; the floor is the distance of fresh test images to the training-split
// reference, what a perfect sampler scores.
#include <algorithm>
#include <string>

#include "feature_distances.hpp"
#include "trained_classifier.hpp"

namespace diffusion::image_metrics {
namespace {

/// What fd and kid share: the classifier, and the size check at composition.
class FeatureMetric : public Metric {
 public:
  explicit FeatureMetric(const ConfigNode& c, const char* name) : classifier_(c), name_(name) {}

  void check_sizes(std::size_t samples, std::size_t reference, std::size_t dim) const override {
    if (dim != classifier_.input_size())
      throw Error(name_ + ": the samples have " + std::to_string(dim) + " values each, the classifier of " +
                  classifier_.path() + " reads images of " + std::to_string(classifier_.input_size()));
    if (std::min(samples, reference) < 2)
      throw Error(name_ + ": needs at least 2 samples and 2 reference images, got " + std::to_string(samples) + " and " +
                  std::to_string(reference));
  }

 protected:
  TrainedClassifier classifier_;
  std::string name_;
};

class FrechetDistanceMetric : public FeatureMetric {
 public:
  explicit FrechetDistanceMetric(const ConfigNode& c) : FeatureMetric(c, "fd") {}
  double compute(const Tensor& samples, const Tensor& reference, Rng&) const override {
    return frechet_distance(classifier_.features(samples), classifier_.features(reference));
  }
};

class KernelDistanceMetric : public FeatureMetric {
 public:
  explicit KernelDistanceMetric(const ConfigNode& c)
      : FeatureMetric(c, "kid"),
        subsets_(static_cast<std::size_t>(c.get_int("subsets", 10, 1, 100000))),
        subset_size_(c.has("subset_size") ? static_cast<std::size_t>(c.get_int("subset_size", 1000, 2)) : 0) {}

  void check_sizes(std::size_t samples, std::size_t reference, std::size_t dim) const override {
    FeatureMetric::check_sizes(samples, reference, dim);
    if (subset_size_ > std::min(samples, reference))
      throw Error("kid: subset_size " + std::to_string(subset_size_) + " is more than the " +
                  std::to_string(std::min(samples, reference)) + " samples compared");
  }

  KernelDistance kid(const Tensor& samples, const Tensor& reference, Rng& rng) const {
    const std::size_t n = std::min(samples.shape()[0], reference.shape()[0]);
    const std::size_t size = subset_size_ ? subset_size_ : std::min<std::size_t>(1000, n);
    return kernel_distance(classifier_.features(samples), classifier_.features(reference), subsets_, size, rng);
  }
  double compute(const Tensor& samples, const Tensor& reference, Rng& rng) const override {
    return kid(samples, reference, rng).mean;
  }
  MetricValue compute_value(const Tensor& samples, const Tensor& reference, Rng& rng) const override {
    const KernelDistance k = kid(samples, reference, rng);
    return {k.mean, {{"subset_std", k.std}}};
  }

 private:
  std::size_t subsets_, subset_size_;  ///< subset_size_ 0: min(1000, n)
};

}  // namespace

DIFFUSION_REGISTER(metrics, "fd", [](const ConfigNode& c, const BuildContext&) {
  return std::make_shared<FrechetDistanceMetric>(c);
});
DIFFUSION_REGISTER(metrics, "kid", [](const ConfigNode& c, const BuildContext&) {
  return std::make_shared<KernelDistanceMetric>(c);
});

}  // namespace diffusion::image_metrics
