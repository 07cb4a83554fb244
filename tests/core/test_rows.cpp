// row_range, set_row_range and first_rows (tensor/rows.hpp): rows copied out and back in place, for vectors
// and images; out-of-range rows and mismatched shapes are errors, never a silent partial copy.
#include <catch2/catch.hpp>

#include "diffusion/tensor/rows.hpp"

using namespace diffusion;

TEST_CASE("row_range copies rows out and set_row_range puts them back", "[tensor]") {
  Tensor images = Tensor::from_shape({5, 2, 3, 3});
  for (std::size_t k = 0; k < images.size(); ++k) images.data()[k] = float(k);
  const Tensor mid = row_range(images, 1, 4);
  REQUIRE(shape_of(mid) == Shape{3, 2, 3, 3});
  for (std::size_t k = 0; k < mid.size(); ++k) REQUIRE(mid.data()[k] == float(18 + k));
  REQUIRE(row_range(images, 2, 2).shape()[0] == 0);

  Tensor into = zeros({5, 2, 3, 3});
  set_row_range(into, 1, mid);
  for (std::size_t i = 0; i < 5; ++i)
    for (std::size_t k = 0; k < 18; ++k) REQUIRE(into.data()[i * 18 + k] == (i >= 1 && i < 4 ? float(i * 18 + k) : 0.0f));

  Tensor points = Tensor::from_shape({4, 2});
  for (std::size_t k = 0; k < points.size(); ++k) points.data()[k] = float(k);
  REQUIRE(row_range(points, 3, 4)(0, 1) == 7.0f);

  REQUIRE_THROWS_WITH(row_range(points, 3, 5), Catch::Contains("rows [3, 5)") && Catch::Contains("(4, 2)"));
  REQUIRE_THROWS_WITH(row_range(points, 3, 2), Catch::Contains("rows [3, 2)"));
  REQUIRE_THROWS_WITH(set_row_range(into, 3, mid), Catch::Contains("at row 3"));
  REQUIRE_THROWS_WITH(set_row_range(into, 0, row_range(points, 0, 2)), Catch::Contains("(2, 2)"));
  const Tensor wrong = zeros({1, 2, 3, 4});
  REQUIRE_THROWS_WITH(set_row_range(into, 0, wrong), Catch::Contains("(1, 2, 3, 4)"));
}

TEST_CASE("first_rows takes the first min(n, N) rows", "[tensor]") {
  Tensor points = Tensor::from_shape({4, 2});
  for (std::size_t k = 0; k < points.size(); ++k) points.data()[k] = float(k);
  const Tensor two = first_rows(points, 2);
  REQUIRE(shape_of(two) == Shape{2, 2});
  for (std::size_t k = 0; k < two.size(); ++k) REQUIRE(two.data()[k] == float(k));
  REQUIRE(shape_of(first_rows(points, 4)) == Shape{4, 2});
  REQUIRE(shape_of(first_rows(points, 9)) == Shape{4, 2});
  REQUIRE(first_rows(points, 0).shape()[0] == 0);
  REQUIRE_THROWS_WITH(first_rows(scalar(1.0f), 1), Catch::Contains("scalar"));
}
