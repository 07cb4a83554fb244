#include "png_grid.hpp"

#include <png.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace diffusion::grid {

std::uint8_t to_byte(float x, double lo, double hi) {
  if (!(x == x)) return 0;
  const double v = std::round(255.0 * (double(x) - lo) / (hi - lo));
  return static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

Picture tile_images(const Tensor& images, const GridLayout& layout) {
  if (images.dimension() != 4) throw Error("image grid: expected images (N, C, H, W), got shape " + shape_str(images));
  const std::size_t n = images.shape()[0], c = images.shape()[1], h = images.shape()[2], w = images.shape()[3];
  if (c != 1 && c != 3) throw Error("image grid: " + std::to_string(c) + " channels; a PNG grid takes 1 (gray) or 3 (RGB)");
  if (n == 0) throw Error("image grid: no images");
  if (!(layout.hi > layout.lo)) throw Error("image grid: the value range needs hi > lo");
  const std::size_t cols = layout.columns ? layout.columns : static_cast<std::size_t>(std::ceil(std::sqrt(double(n))));
  const std::size_t rows = (n + cols - 1) / cols, s = std::max<std::size_t>(layout.scale, 1), pad = layout.padding;
  Picture p;
  p.channels = c;
  p.width = pad + cols * (w * s + pad);
  p.height = pad + rows * (h * s + pad);
  p.pixels.assign(p.width * p.height * c, layout.padding_value);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t top = pad + (i / cols) * (h * s + pad), left = pad + (i % cols) * (w * s + pad);
    for (std::size_t k = 0; k < c; ++k)
      for (std::size_t y = 0; y < h * s; ++y)
        for (std::size_t x = 0; x < w * s; ++x) {
          const float v = images.data()[((i * c + k) * h + y / s) * w + x / s];
          p.pixels[((top + y) * p.width + left + x) * c + k] = to_byte(v, layout.lo, layout.hi);
        }
  }
  return p;
}

void write_png(const std::string& path, const Picture& picture) {
  if (picture.pixels.size() != picture.width * picture.height * picture.channels || picture.width == 0)
    throw Error(path + ": a picture whose pixel count does not match its size");
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(path + ": cannot write (" + std::strerror(errno) + ")");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, nullptr);
    std::fclose(f);
    throw Error(path + ": libpng could not start");
  }
  std::vector<png_bytep> rows(picture.height);
  // libpng reports errors by longjmp; nothing with a destructor is created past this point.
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    throw Error(path + ": libpng failed writing the file");
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(picture.width), static_cast<png_uint_32>(picture.height), 8,
               picture.channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  for (std::size_t y = 0; y < picture.height; ++y)
    rows[y] = const_cast<png_bytep>(picture.pixels.data() + y * picture.width * picture.channels);
  png_set_rows(png, info, rows.data());
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fclose(f) != 0) throw Error(path + ": cannot write (" + std::strerror(errno) + ")");
}

}  // namespace diffusion::grid
