#pragma once
// A user's images in an HDF5 file: one dataset of images, (N, H, W) or (N, C, H, W) (or
// channels last, (N, H, W, C)), and optionally one of integer labels (N). The natural way to
// bring one's own data: h5py writes such a file in three lines.
#include <optional>
#include <string>
#include <utility>

#include "image_set.hpp"

namespace diffusion::image_data {

struct Hdf5ImageKeys {
  std::string images = "images";  ///< the images' dataset (a path inside the file: "train/x" is fine)
  std::string labels;             ///< the labels' dataset; "" for none
  bool channels_last = false;     ///< (N, H, W, C) rather than (N, C, H, W)
  /// The pixel values that map to -1 and +1. Unset: [0, 255] for 8-bit and [0, 65535] for
  /// 16-bit unsigned integers, [0, 1] for floats; other types must say.
  std::optional<std::pair<double, double>> range;
};

/// Error "<path>: ..." naming the dataset and what was expected: a missing dataset (with the
/// names the file does hold there), a wrong rank, a non-numeric type, labels that are not whole
/// numbers >= 0 or not one per image, values outside the range.
ImageSet read_hdf5_images(const std::string& path, const Hdf5ImageKeys& keys);

/// True if the file at `path` has a dataset at `key` (Error if the file cannot be opened).
bool hdf5_has_dataset(const std::string& path, const std::string& key);

}  // namespace diffusion::image_data
