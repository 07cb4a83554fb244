#pragma once
// A small convolutional image classifier p(y | x) on clean images (C, H, W): the feature
// extractor of the image metrics (fd, kid, classifier_accuracy), playing the part Inception v3
// plays for FID (Heusel et al. 2017) on data sets Inception was not trained for (digits, MNIST).
//
//   network: {type: image_classifier, channels: [32, 64, 128], groups: 8, features: 128}
//
// Layout: per entry of `channels` one block conv 3x3 -> GroupNorm -> SiLU, the first at stride 1,
// each further one at stride 2 (halving H and W); global average pooling; the feature layer
// Linear(channels.back(), features) -> SiLU, whose activations are the features; the head
// Linear(features, classes) gives the logits (N, classes). The time input and the condition are
// not read: the classifier sees clean data (loss `cross_entropy`).
#include <memory>
#include <vector>

#include <diffusion/nn/image_layers.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::image_metrics {

class ImageClassifier : public Network {
 public:
  ImageClassifier(const ConfigNode& c, const BuildContext& ctx);

  /// Reads no label, but its training needs them (its targets), so the run passes them.
  bool class_conditional() const override { return true; }
  /// x (N, C, H, W) -> logits (N, classes); t and c are ignored.
  Var forward(const Var& x, const Tensor& t, const Condition& c) override;

  /// The penultimate activations (N, features) of x (N, C, H, W), without the graph, in
  /// batches of at most 512 rows.
  Tensor features(const Tensor& x);
  /// The logits (N, classes) of x (N, C, H, W), without the graph.
  Tensor logits(const Tensor& x);

  const Shape& image_shape() const { return image_shape_; }
  std::size_t num_classes() const { return classes_; }
  std::size_t feature_width() const { return features_; }

 private:
  Var trunk(const Var& x) const;  ///< x -> the features, on the graph
  void check_input(const Shape& s) const;

  Shape image_shape_;
  std::size_t classes_ = 0, features_ = 0, groups_ = 0;
  std::vector<std::shared_ptr<Conv2d>> convs_;
  std::vector<std::shared_ptr<GroupNorm>> norms_;
  std::shared_ptr<Linear> feature_, head_;
};

}  // namespace diffusion::image_metrics
