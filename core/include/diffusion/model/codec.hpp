#pragma once
// The codec: what turns data into the space the model works in, and samples back. Normalisation
// (per coordinate for points, per channel for images, or one scalar), or later a trained
// autoencoder (latent diffusion). The run fits it once, encodes each batch of data as it is
// drawn, and decodes samples (and trajectories) before they are written or measured.
#include <cstddef>
#include <memory>

#include <H5Cpp.h>

#include "diffusion/model/dataset.hpp"
#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

class Codec {
 public:
  virtual ~Codec() = default;
  /// Fit to the data set (statistics from its own stream); called once, before training.
  virtual void fit(const Dataset& data, Rng rng) = 0;
  /// Shape of one encoded sample, given one data sample's shape; Error if the codec cannot
  /// encode such samples (checked when the experiment is composed).
  virtual Shape encoded_shape(const Shape& data_shape) const { return data_shape; }
  /// A batch (N, data shape...) into the model's space, and back.
  virtual Tensor encode(const Tensor& x) const = 0;
  virtual Tensor decode(const Tensor& z) const = 0;
  /// log |det| of encode's Jacobian for one sample of the given data shape, so that a density
  /// in the model's space reads in the data's: log p_data(x) = log p_model(encode(x)) + this.
  /// Error for a codec without a tractable one.
  virtual double log_det_encode(const Shape& data_shape) const = 0;
  /// Write what fit() learnt into g (the results file's /data), with the attribute `codec` (its
  /// registry name), and read it back (`init:`): load() checks that g was written by the same
  /// kind of codec and its shapes against the data set, and fails naming what differs.
  virtual void save(const H5::Group& g) const = 0;
  virtual void load(const H5::Group& g, const Shape& data_shape) = 0;
};

// The core's codecs (registered as standardize and identity).

/// How `standardize` groups values: one mean and standard deviation per coordinate of a sample
/// (each value of a point, each pixel of an image), per image channel, or one for all values.
enum class StandardizePer { coordinate, channel, all };
/// x -> (x - mean) / std per group, statistics from `samples` draws of the data set.
std::shared_ptr<Codec> make_standardize_codec(StandardizePer per, std::size_t samples = 20000);
/// The data as they are.
std::shared_ptr<Codec> make_identity_codec();

}  // namespace diffusion
