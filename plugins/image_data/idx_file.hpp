#pragma once
// The IDX format of MNIST and Fashion-MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/):
// a 4-byte magic number 0x00 0x00 <type> <rank>, then <rank> big-endian uint32 sizes, then the
// values, row-major. Images are rank 3 (N, H, W), labels rank 1 (N), both unsigned bytes
// (type 0x08), the only type these data sets use.
#include <cstdint>
#include <string>
#include <vector>

#include "image_set.hpp"

namespace diffusion::image_data {

struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;  ///< prod(dims) unsigned bytes
};

/// Parse an IDX file's bytes. `rank` is the rank the caller expects (3 for images, 1 for
/// labels). Error "<path>: ..." naming what was expected and what was found: the magic number,
/// the type, the rank, and for a truncated file the bytes the header promises against those
/// present.
IdxArray parse_idx(const std::vector<std::uint8_t>& bytes, const std::string& path, std::size_t rank);

/// Read (gzip-compressed or not) and parse an IDX file.
IdxArray read_idx(const std::string& path, std::size_t rank);

/// Images (N, H, W) from one IDX file and their labels (N) from another, as a one-channel image
/// set with byte_max 255; Error naming both files if their counts differ.
ImageSet read_idx_images(const std::string& images_path, const std::string& labels_path);

}  // namespace diffusion::image_data
