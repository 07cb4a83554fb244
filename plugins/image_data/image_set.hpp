#pragma once
// A finite set of images held in memory, with optional integer labels. Pixels are kept as the
// file stores them when it stores bytes (IDX files, the digits CSV, uint8 HDF5: a quarter of
// the memory of floats, 55 MB for all of Fashion-MNIST) or as floats already in [-1, 1]; either
// way an image is read out as float32 in [-1, 1], the range every image experiment works in.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace diffusion::image_data {

struct ImageSet {
  std::size_t channels = 0, height = 0, width = 0;
  /// Pixel values 0..byte_max, image after image (C, H, W), when the source stores integers.
  std::vector<std::uint8_t> bytes;
  /// The byte that maps to +1 (255 for IDX and uint8 HDF5, 16 for the digits): b -> 2 b / byte_max - 1,
  /// rounded to float once (0 and byte_max exactly -1 and +1).
  float byte_max = 255.0f;
  /// Otherwise pixel values already in [-1, 1].
  std::vector<float> values;
  /// One label per image (0..classes-1), or none.
  std::vector<int> labels;

  std::size_t pixels() const { return channels * height * width; }
  std::size_t size() const;
  bool labelled() const { return !labels.empty(); }
  /// 1 + the largest label (0 without labels).
  int classes() const;

  /// Image i as C*H*W floats in [-1, 1] at out, mirrored left to right when `flip`.
  void copy_image(std::size_t i, float* out, bool flip) const;
  /// The images (and labels) at the given rows, in that order.
  ImageSet subset(const std::vector<std::size_t>& rows) const;
  /// Throws Error "<what>: ..." unless the pixel buffer, the shape and the labels agree.
  void check(const std::string& what) const;
};

/// A fixed split of `n` rows into train and test: a permutation drawn from `seed` (a property of
/// the data, not of the run: every run of an experiment, whatever its seed, holds out the same
/// rows), its last round(test_fraction n) rows the test split, each part in increasing order.
struct Split {
  std::vector<std::size_t> train, test;
};
Split split_rows(std::size_t n, double test_fraction, std::uint64_t seed);

}  // namespace diffusion::image_data
