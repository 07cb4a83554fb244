#pragma once
// A finite image data set as the toolkit's Dataset: a training split the run learns from and a
// test split held out of training, each drawn in epochs (epoch_order.hpp), with optional random
// horizontal flips of the training images, and labels into the Condition.
//
// Samples are (n, C, H, W) float32 in [-1, 1] (pixel value 0 -> -1, the largest -> +1), the
// range DDPM's sampler clips x0 to (Ho et al. 2020, section 3.3), so image experiments take
// `codec: {type: identity}`: standardising per coordinate would divide the always-black corner
// pixels of MNIST-like data by a standard deviation near zero. With `flatten` they are (n, C H W)
// instead, for networks that take points (the mlp).
#include <memory>
#include <string>

#include <diffusion/model/dataset.hpp>

#include "epoch_order.hpp"
#include "image_set.hpp"

namespace diffusion::image_data {

class ImageDataset : public Dataset {
 public:
  struct Options {
    bool flip = false;     ///< mirror each training image left to right with probability 1/2
    bool flatten = false;  ///< samples (n, C H W) rather than (n, C, H, W)
  };
  ImageDataset(std::shared_ptr<const ImageSet> train, std::shared_ptr<const ImageSet> test, Options options);

  Shape sample_shape() const override;
  int num_classes() const override { return classes_; }
  /// n training images, in epochs of the stream (epoch_order.hpp), flipped at random with
  /// `flip`, their labels into `condition`.
  Tensor sample(std::size_t n, Rng& rng, Condition* condition = nullptr) const override;
  /// n images held out of training: the test split, never flipped. The reference the samples
  /// are compared with is drawn from the training split (sample, as FID is computed against the
  /// training set); the metric floor is then the test split against it.
  Tensor sample_independent(std::size_t n, Rng& rng, Condition* condition = nullptr) const override;

  const ImageSet& train() const { return *train_; }
  const ImageSet& test() const { return *test_; }

 private:
  Tensor draw(const ImageSet& set, const EpochOrder& order, bool flip, std::size_t n, Rng& rng,
              Condition* condition) const;

  std::shared_ptr<const ImageSet> train_, test_;
  EpochOrder train_order_, test_order_;
  Options options_;
  int classes_ = 0;
};

}  // namespace diffusion::image_data
