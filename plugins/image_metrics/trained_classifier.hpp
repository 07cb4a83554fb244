#pragma once
// A trained image_classifier read back from the results file of the experiment that trained it
// (experiments/digits_classifier.yaml), as the image metrics name it:
//
//   {type: fd, classifier: results/digits_classifier.h5, from: ema}
//
//   classifier  the results file (required): complete (status complete, sealed, with /model and
//               the root attribute `config`), its `network:` an image_classifier, trained in the
//               data's own coordinates (codec identity: the metrics see samples as written)
//   from        ema | model: the weights to read (default: ema when the file has it, else model)
//
// The network is built from the file's stored config (its `network:` node, the sample shape of
// /data/reference, the classes of its head) and its weights loaded from that group. Every failure
// is a ConfigError at the key, naming the file, so a bad metric stops the run before training.
#include <memory>
#include <string>

#include <diffusion/plugin.hpp>

#include "image_classifier.hpp"

namespace diffusion::image_metrics {

class TrainedClassifier {
 public:
  /// Reads `classifier` and `from` of a metric's node.
  explicit TrainedClassifier(const ConfigNode& metric_node);

  /// The penultimate activations (N, features) of samples (N, ...) in data coordinates, each
  /// row read as one image of the classifier's shape (so flattened samples work as well).
  Tensor features(const Tensor& samples) const;
  /// The class the classifier assigns each row (argmax of the logits).
  std::vector<int> predict(const Tensor& samples) const;
  /// Values per sample the classifier takes (C H W), for the composition-time size check.
  std::size_t input_size() const;
  const std::string& path() const { return path_; }

 private:
  Tensor as_images(const Tensor& samples) const;

  std::string path_;
  std::shared_ptr<Network> network_;  ///< keeps the plugin's code alive
  ImageClassifier* classifier_ = nullptr;
};

}  // namespace diffusion::image_metrics
