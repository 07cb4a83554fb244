#pragma once
// Image grids as PNG files, through libpng: a batch of images (N, C, H, W) in data coordinates
// ([-1, 1] for the image data sets) tiled into one 8-bit gray (C = 1) or RGB (C = 3) picture.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::grid {

/// An 8-bit picture, rows top to bottom, channels interleaved (gray, or R G B).
struct Picture {
  std::size_t width = 0, height = 0, channels = 1;
  std::vector<std::uint8_t> pixels;  ///< height * width * channels
};

struct GridLayout {
  std::size_t columns = 0;          ///< images per row; 0: ceil(sqrt(N)), a square grid
  std::size_t padding = 1;          ///< pixels between images and around the grid
  std::uint8_t padding_value = 128;  ///< mid-gray: visible against black and white images
  std::size_t scale = 1;            ///< each pixel drawn as scale x scale (8x8 digits are tiny)
  double lo = -1.0, hi = 1.0;       ///< the values drawn as 0 and 255; outside, clipped
};

/// The 8-bit value of x: round(255 (x - lo) / (hi - lo)), clipped to 0..255 (NaN: 0).
std::uint8_t to_byte(float x, double lo, double hi);

/// Tile images (N, C, H, W) (C = 1 or 3) row by row. Error for another rank or channel count.
Picture tile_images(const Tensor& images, const GridLayout& layout);

/// Write `picture` as a PNG file (8-bit gray or RGB). Error "<path>: ..." if it cannot.
void write_png(const std::string& path, const Picture& picture);

}  // namespace diffusion::grid
