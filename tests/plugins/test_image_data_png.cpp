// Image grids as PNG (tools/grid/png_grid.cpp): the value mapping, the tiling, and a round trip
// through libpng (written by the toolkit, read back here with libpng's own reader) that gives
// back every pixel exactly, in gray and in RGB.
#include <catch2/catch.hpp>

#include <png.h>

#include <cstring>

#include "e2e/scratch_dir.hpp"
#include "grid/png_grid.hpp"

using namespace diffusion;
using diffusion::testing::ScratchDir;

namespace {

/// A PNG file read with libpng's simplified API, in the format it was written in.
struct ReadBack {
  png_uint_32 width = 0, height = 0, format = 0;
  std::vector<std::uint8_t> pixels;
};

ReadBack read_png(const std::string& path) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) throw Error(path + ": " + image.message);
  ReadBack r;
  r.width = image.width, r.height = image.height, r.format = image.format;
  r.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, r.pixels.data(), 0, nullptr)) throw Error(path + ": " + image.message);
  return r;
}

}  // namespace

TEST_CASE("png grid: values map to bytes with rounding and clipping", "[image_data][png]") {
  CHECK(grid::to_byte(-1.0f, -1, 1) == 0);
  CHECK(grid::to_byte(1.0f, -1, 1) == 255);
  CHECK(grid::to_byte(0.0f, -1, 1) == 128);  // 127.5 rounds up
  CHECK(grid::to_byte(-0.5f, -1, 1) == 64);  // 63.75
  CHECK(grid::to_byte(3.0f, -1, 1) == 255);
  CHECK(grid::to_byte(-7.0f, -1, 1) == 0);
  CHECK(grid::to_byte(std::nanf(""), -1, 1) == 0);
  CHECK(grid::to_byte(0.5f, 0, 1) == 128);
}

TEST_CASE("png grid: a gray grid written with libpng reads back pixel for pixel", "[image_data][png]") {
  ScratchDir d("png");
  // Five 1x2x3 images, value (i, y, x) = -1 + (6 i + 3 y + x) / 15: bytes round(255 (v + 1) / 2).
  Tensor x = Tensor::from_shape({5, 1, 2, 3});
  for (std::size_t i = 0; i < 5; ++i)
    for (std::size_t y = 0; y < 2; ++y)
      for (std::size_t c = 0; c < 3; ++c) x(i, 0, y, c) = -1.0f + float(6 * i + 3 * y + c) / 15.0f;
  grid::GridLayout layout;
  layout.columns = 2, layout.padding = 1, layout.padding_value = 77, layout.scale = 2;
  const grid::Picture p = grid::tile_images(x, layout);
  // 2 columns, 3 rows of 4x6 (scaled) images, a 1-pixel border around and between.
  REQUIRE(p.width == 1 + 2 * (6 + 1));
  REQUIRE(p.height == 1 + 3 * (4 + 1));
  REQUIRE(p.channels == 1);
  grid::write_png(d / "g.png", p);
  const ReadBack r = read_png(d / "g.png");
  REQUIRE(r.format == PNG_FORMAT_GRAY);
  REQUIRE(r.width == p.width);
  REQUIRE(r.height == p.height);
  REQUIRE(r.pixels == p.pixels);
  // And the pixels are the images': image i at row i / 2, column i % 2; the sixth slot empty.
  for (std::size_t i = 0; i < 5; ++i)
    for (std::size_t y = 0; y < 4; ++y)
      for (std::size_t c = 0; c < 6; ++c) {
        const std::size_t top = 1 + (i / 2) * 5, left = 1 + (i % 2) * 7;
        CHECK(int(r.pixels[(top + y) * r.width + left + c]) == int(grid::to_byte(x(i, 0, y / 2, c / 2), -1, 1)));
      }
  CHECK(r.pixels[0] == 77);
  CHECK(r.pixels[(1 + 2 * 5 + 1) * r.width + 1 + 7 + 1] == 77);  // inside the empty sixth slot
}

TEST_CASE("png grid: an RGB grid reads back with its channels in place", "[image_data][png]") {
  ScratchDir d("png-rgb");
  Tensor x = Tensor::from_shape({2, 3, 2, 2});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = -1.0f + 2.0f * float(i % 17) / 16.0f;
  grid::GridLayout layout;
  layout.padding = 0;
  const grid::Picture p = grid::tile_images(x, layout);  // a square grid: 2 columns
  REQUIRE(p.width == 4);
  REQUIRE(p.height == 2);
  grid::write_png(d / "c.png", p);
  const ReadBack r = read_png(d / "c.png");
  REQUIRE(r.format == PNG_FORMAT_RGB);
  REQUIRE(r.pixels == p.pixels);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t k = 0; k < 3; ++k)
      for (std::size_t y = 0; y < 2; ++y)
        for (std::size_t c = 0; c < 2; ++c)
          CHECK(r.pixels[(y * 4 + i * 2 + c) * 3 + k] == grid::to_byte(x(i, k, y, c), -1, 1));
}

TEST_CASE("png grid: shapes a PNG cannot take and unwritable paths are errors", "[image_data][png]") {
  CHECK_THROWS_WITH(grid::tile_images(Tensor::from_shape({2, 4}), {}), Catch::Contains("(N, C, H, W)"));
  CHECK_THROWS_WITH(grid::tile_images(Tensor::from_shape({2, 2, 3, 3}), {}), Catch::Contains("2 channels"));
  const grid::Picture p = grid::tile_images(Tensor::from_shape({1, 1, 2, 2}), {});
  CHECK_THROWS_WITH(grid::write_png("/nonexistent-folder/x.png", p),
                    Catch::Contains("/nonexistent-folder/x.png") && Catch::Contains("cannot write"));
}
