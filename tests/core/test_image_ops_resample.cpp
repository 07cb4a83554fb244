// Resolution changes and patches: upsample_nearest, avg_pool2d, patchify / unpatchify against
// their definitions, finite-difference gradients, exact round trips.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "core/grad_check.hpp"
#include "core/nn_test_helpers.hpp"
#include "diffusion/autodiff/ops_image.hpp"

using namespace diffusion;
using grad_check::check_gradients;
using grad_check::normal;
using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;

namespace {
// x[n, c, i, j] of a row-major (N, C, H, W) tensor.
float at(const Tensor& x, std::size_t n, std::size_t c, std::size_t i, std::size_t j) {
  const auto& s = x.shape();
  return x.data()[((n * s[1] + c) * s[2] + i) * s[3] + j];
}
}  // namespace

TEST_CASE("upsample_nearest repeats each pixel in an f x f block", "[image_ops]") {
  const std::size_t f = GENERATE(1, 2, 3);
  CAPTURE(f);
  const Tensor x = normal({2, 3, 4, 5}, 1);
  const Tensor y = upsample_nearest(Var(x), f).value();
  REQUIRE(shape_of(y) == Shape{2, 3, 4 * f, 5 * f});
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t i = 0; i < 4 * f; ++i)
        for (std::size_t j = 0; j < 5 * f; ++j)
          REQUIRE(at(y, n, c, i, j) == at(x, n, c, i / f, j / f));
}

TEST_CASE("upsample_nearest gradients match finite differences", "[image_ops][grad]") {
  const Shape s = GENERATE(Shape{2, 3, 3, 3}, Shape{1, 2, 2, 5});
  const std::size_t f = GENERATE(2, 3);
  CAPTURE(shape_str(s), f);
  check_gradients([&](const std::vector<Var>& v) { return upsample_nearest(v[0], f); },
                  {normal(s, 2)});
}

TEST_CASE("avg_pool2d averages each window", "[image_ops]") {
  struct Case {
    std::size_t h, w, k, s;
  };
  const Case c = GENERATE(values<Case>({{6, 4, 2, 0}, {7, 5, 2, 2}, {7, 7, 3, 2}, {5, 6, 3, 1}}));
  CAPTURE(c.h, c.w, c.k, c.s);
  const Tensor x = normal({2, 3, c.h, c.w}, 3);
  const Tensor y = avg_pool2d(Var(x), c.k, c.s).value();
  const std::size_t st = c.s ? c.s : c.k, ho = (c.h - c.k) / st + 1, wo = (c.w - c.k) / st + 1;
  REQUIRE(shape_of(y) == Shape{2, 3, ho, wo});
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t ch = 0; ch < 3; ++ch)
      for (std::size_t i = 0; i < ho; ++i)
        for (std::size_t j = 0; j < wo; ++j) {
          double m = 0.0;
          for (std::size_t a = 0; a < c.k; ++a)
            for (std::size_t b = 0; b < c.k; ++b) m += at(x, n, ch, i * st + a, j * st + b);
          REQUIRE_THAT(at(y, n, ch, i, j), WithinAbs(m / double(c.k * c.k), 1e-6));
        }
}

TEST_CASE("avg_pool2d gradients match finite differences", "[image_ops][grad]") {
  struct Case {
    Shape x;
    std::size_t k, s;
  };
  const Case c = GENERATE(values<Case>({
      {{2, 2, 4, 4}, 2, 0},  // the U-Net's 2x downsampling
      {{1, 3, 5, 7}, 2, 2},  // odd sizes: the last row and column are dropped
      {{2, 1, 5, 5}, 3, 2},  // overlapping windows
      {{1, 2, 4, 3}, 3, 1},  // stride 1
  }));
  CAPTURE(shape_str(c.x), c.k, c.s);
  check_gradients([&](const std::vector<Var>& v) { return avg_pool2d(v[0], c.k, c.s); },
                  {normal(c.x, 4)});
}

TEST_CASE("patchify lays out patches as tokens and unpatchify undoes it exactly",
          "[image_ops]") {
  const std::size_t p = GENERATE(1, 2, 4);
  CAPTURE(p);
  const Tensor x = normal({2, 3, 8, 12}, 5);
  const Var tokens = patchify(Var(x), p);
  const std::size_t gw = 12 / p;
  REQUIRE(tokens.shape() == Shape{2, (8 / p) * gw, 3 * p * p});
  const Tensor& t = tokens.value();
  const std::size_t T = (8 / p) * gw, F = 3 * p * p;
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t y = 0; y < 8; ++y)
        for (std::size_t xx = 0; xx < 12; ++xx) {
          // Token (i, j) of the patch grid, feature (c p + a) p + b.
          const std::size_t token = (y / p) * gw + xx / p;
          const std::size_t feature = (c * p + y % p) * p + xx % p;
          REQUIRE(t.data()[(n * T + token) * F + feature] == at(x, n, c, y, xx));
        }
  CHECK(testing::bitwise_equal(unpatchify(tokens, p, 8, 12).value(), x));
  // And the other way round: tokens -> image -> tokens.
  const Tensor r = normal({2, T, F}, 6);
  CHECK(testing::bitwise_equal(patchify(unpatchify(Var(r), p, 8, 12), p).value(), r));
}

TEST_CASE("patchify then linear is the convolution with kernel and stride p", "[image_ops]") {
  // DiT's patch embedding: the feature order (c, a, b) is the order a conv flattens its weight.
  const std::size_t p = 2, hidden = 5;
  const Tensor x = normal({3, 4, 6, 8}, 7), w = normal({hidden, 4, p, p}, 8);
  const Tensor b = normal({hidden}, 9);
  const Tensor conv = conv2d(Var(x), Var(w), Var(b), {p, 0, 1}).value();  // (3, 5, 3, 4)
  Tensor w2 = w;
  w2.reshape({hidden, 4 * p * p});
  const Tensor lin = linear(patchify(Var(x), p), Var(w2), Var(b)).value();  // (3, 12, 5)
  for (std::size_t n = 0; n < 3; ++n)
    for (std::size_t o = 0; o < hidden; ++o)
      for (std::size_t t = 0; t < 12; ++t)
        REQUIRE_THAT(lin.data()[(n * 12 + t) * hidden + o],
                     WithinAbs(conv.data()[(n * hidden + o) * 12 + t], 1e-5));
}

TEST_CASE("patchify and unpatchify gradients match finite differences", "[image_ops][grad]") {
  const std::size_t p = GENERATE(1, 2, 3);
  CAPTURE(p);
  check_gradients([&](const std::vector<Var>& v) { return patchify(v[0], p); },
                  {normal({2, 2, 6, 6}, 10)});
  check_gradients([&](const std::vector<Var>& v) { return unpatchify(v[0], p, 6, 6); },
                  {normal({2, (6 / p) * (6 / p), 2 * p * p}, 11)});
}

TEST_CASE("resampling and patch ops reject sizes they cannot take and name them",
          "[image_ops]") {
  CHECK_THAT(testing::error_of([] { patchify(Var(zeros({2, 3, 28, 30})), 4); }),
             Contains("(2, 3, 28, 30) with patch size 4"));
  CHECK_THAT(testing::error_of([] { unpatchify(Var(zeros({2, 48, 16})), 4, 28, 28); }),
             Contains("expected (N, (H/p) (W/p), C p p)"));
  CHECK_THAT(testing::error_of([] { unpatchify(Var(zeros({2, 49, 10})), 4, 28, 28); }),
             Contains("multiple of p^2"));
  CHECK_THAT(testing::error_of([] { avg_pool2d(Var(zeros({2, 3, 4, 1})), 2); }),
             Contains("does not fit input (2, 3, 4, 1)"));
  CHECK_THAT(testing::error_of([] { upsample_nearest(Var(zeros({2, 3, 4})), 2); }),
             Contains("(N, C, H, W), got (2, 3, 4)"));
}
