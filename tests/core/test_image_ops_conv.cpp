// conv2d: finite-difference gradients over strides, paddings, groups, kernels and odd sizes;
// forward and every gradient against a direct loop over the definition (in double) to 1e-5
// relative; the same bits at 1 and 2 threads.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/grad_check.hpp"
#include "core/nn_test_helpers.hpp"
#include "diffusion/autodiff/ops_image.hpp"
#include "diffusion/nn/image_layers.hpp"

using namespace diffusion;
using grad_check::check_gradients;
using grad_check::normal;

namespace {

struct ConvCase {
  std::size_t n, c, h, w, o, kh, kw, stride, pad, groups;
  bool bias;
};

std::string str(const ConvCase& k) {
  return "x (" + std::to_string(k.n) + ", " + std::to_string(k.c) + ", " + std::to_string(k.h) +
         ", " + std::to_string(k.w) + ") o " + std::to_string(k.o) + " kernel " +
         std::to_string(k.kh) + "x" + std::to_string(k.kw) + " stride " +
         std::to_string(k.stride) + " pad " + std::to_string(k.pad) + " groups " +
         std::to_string(k.groups) + (k.bias ? " bias" : "");
}

Conv2dOptions options(const ConvCase& k) { return {k.stride, k.pad, k.groups}; }
Shape weight_shape(const ConvCase& k) { return {k.o, k.c / k.groups, k.kh, k.kw}; }

// The definition, in double: y[n, o, oy, ox] = b[o] + sum over the group's channels c and taps
// (ki, kj) of w[o, c, ki, kj] x[n, c, oy s + ki - p, ox s + kj - p] (zero outside), and the
// gradients of sum(y * g) by the same loops read backwards.
struct NaiveConv {
  std::vector<double> y, dx, dw, db;
  std::size_t ho, wo;
  NaiveConv(const ConvCase& k, const Tensor& x, const Tensor& w, const Tensor& b,
            const Tensor& g) {
    ho = (k.h + 2 * k.pad - k.kh) / k.stride + 1;
    wo = (k.w + 2 * k.pad - k.kw) / k.stride + 1;
    const std::size_t cg = k.c / k.groups, og = k.o / k.groups;
    y.assign(k.n * k.o * ho * wo, 0.0);
    dx.assign(x.size(), 0.0);
    dw.assign(w.size(), 0.0);
    db.assign(k.o, 0.0);
    for (std::size_t n = 0; n < k.n; ++n)
      for (std::size_t o = 0; o < k.o; ++o)
        for (std::size_t oy = 0; oy < ho; ++oy)
          for (std::size_t ox = 0; ox < wo; ++ox) {
            const std::size_t yi = ((n * k.o + o) * ho + oy) * wo + ox;
            const double gy = g.data()[yi];
            double acc = k.bias ? b.data()[o] : 0.0;
            db[o] += gy;
            for (std::size_t cl = 0; cl < cg; ++cl) {
              const std::size_t c = (o / og) * cg + cl;
              for (std::size_t ki = 0; ki < k.kh; ++ki)
                for (std::size_t kj = 0; kj < k.kw; ++kj) {
                  const long iy = long(oy * k.stride + ki) - long(k.pad);
                  const long ix = long(ox * k.stride + kj) - long(k.pad);
                  if (iy < 0 || ix < 0 || iy >= long(k.h) || ix >= long(k.w)) continue;
                  const std::size_t xi = ((n * k.c + c) * k.h + iy) * k.w + ix;
                  const std::size_t wi = ((o * cg + cl) * k.kh + ki) * k.kw + kj;
                  acc += double(w.data()[wi]) * x.data()[xi];
                  dw[wi] += gy * x.data()[xi];
                  dx[xi] += gy * w.data()[wi];
                }
            }
            y[yi] = acc;
          }
  }
};

// max |a - ref| / max |ref|: the error relative to the result's scale.
double relative_error(const Tensor& a, const std::vector<double>& ref) {
  REQUIRE(a.size() == ref.size());
  double err = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    err = std::max(err, std::fabs(a.data()[i] - ref[i]));
    scale = std::max(scale, std::fabs(ref[i]));
  }
  return err / scale;
}

}  // namespace

TEST_CASE("conv2d gradients match finite differences", "[image_ops][grad]") {
  const ConvCase k = GENERATE(values<ConvCase>({
      {2, 3, 5, 5, 4, 3, 3, 1, 1, 1, true},    // same-size 3x3
      {2, 2, 7, 6, 3, 3, 3, 2, 0, 1, true},    // stride 2, no padding, odd sizes
      {1, 3, 7, 7, 2, 3, 3, 2, 1, 1, false},   // stride 2 with padding (U-Net downsampling)
      {2, 4, 5, 4, 6, 3, 3, 1, 1, 2, true},    // groups 2
      {1, 3, 4, 5, 3, 3, 3, 1, 1, 3, true},    // depthwise (groups = channels)
      {2, 3, 4, 4, 5, 1, 1, 1, 0, 1, true},    // 1x1: the image is its own column matrix
      {1, 2, 5, 6, 3, 3, 2, 1, 1, 1, true},    // rectangular kernel
      {2, 2, 3, 3, 2, 4, 4, 2, 2, 1, true},    // kernel wider than the image, padding 2
      {16, 2, 3, 3, 2, 3, 3, 1, 1, 1, true},   // 16 images: blocks of 2 images per sgemm
  }));
  CAPTURE(str(k));
  std::vector<Tensor> in = {normal({k.n, k.c, k.h, k.w}, 1), normal(weight_shape(k), 2)};
  if (k.bias) in.push_back(normal({k.o}, 3));
  check_gradients(
      [&](const std::vector<Var>& v) {
        return conv2d(v[0], v[1], k.bias ? v[2] : Var(), options(k));
      },
      in);
}

TEST_CASE("conv2d and its gradients match the direct loops to 1e-5 relative", "[image_ops]") {
  const ConvCase k = GENERATE(values<ConvCase>({
      {3, 8, 12, 12, 16, 3, 3, 1, 1, 1, true},   // U-Net's 3x3 layer, one image per sgemm
      {19, 6, 7, 7, 10, 3, 3, 1, 1, 1, true},    // 7x7: blocks of 2, the last one short
      {64, 4, 4, 4, 8, 3, 3, 1, 1, 1, true},     // 4x4: blocks of 8 images
      {5, 8, 9, 11, 4, 3, 3, 2, 1, 2, true},     // stride 2, padding 1, groups 2, odd sizes
      {32, 6, 3, 5, 7, 1, 1, 1, 0, 1, false},    // 1x1 over blocks of images
      {2, 4, 8, 8, 4, 2, 2, 2, 0, 1, true},      // kernel = stride: patch embedding
      {2, 6, 6, 6, 6, 3, 3, 1, 2, 6, true},      // depthwise, padding 2
  }));
  CAPTURE(str(k));
  const Tensor x = normal({k.n, k.c, k.h, k.w}, 4), w = normal(weight_shape(k), 5);
  const Tensor b = normal({k.o}, 6);
  Var xv(x, true), wv(w, true), bv(b, true);
  const Var y = conv2d(xv, wv, k.bias ? bv : Var(), options(k));
  const Tensor g = normal(shape_of(y.value()), 7);
  y.backward(g);
  const NaiveConv ref(k, x, w, b, g);
  CHECK(shape_of(y.value()) == Shape{k.n, k.o, ref.ho, ref.wo});
  CHECK(relative_error(y.value(), ref.y) < 1e-5);
  CHECK(relative_error(xv.grad(), ref.dx) < 1e-5);
  CHECK(relative_error(wv.grad(), ref.dw) < 1e-5);
  if (k.bias) CHECK(relative_error(bv.grad(), ref.db) < 1e-5);
}

TEST_CASE("conv2d gives the same bits on 1 and 2 threads", "[image_ops]") {
  // 24 images of 6x6: blocks of 2 images, 8 chunks of dW, shared out differently per thread
  // count; the sums must not depend on who computed them.
  const Tensor x = normal({24, 4, 6, 6}, 8), w = normal({5, 4, 3, 3}, 9), b = normal({5}, 10);
  const Tensor g = normal({24, 5, 6, 6}, 11);
  const auto run = [&](int threads) {
    testing::ThreadCount tc(threads);
    Var xv(x, true), wv(w, true), bv(b, true);
    const Var y = conv2d(xv, wv, bv, {1, 1, 1});
    y.backward(g);
    return std::vector<Tensor>{y.value(), xv.grad(), wv.grad(), bv.grad()};
  };
  const std::vector<Tensor> one = run(1), two = run(2);
  for (std::size_t i = 0; i < one.size(); ++i) CHECK(testing::bitwise_equal(one[i], two[i]));
}

TEST_CASE("conv2d rejects shapes it cannot take and names them", "[image_ops]") {
  const Var x(zeros({2, 4, 5, 5}));
  const auto message = [&](const Shape& ws, Conv2dOptions opt) {
    return testing::error_of([&] { conv2d(x, Var(zeros(ws)), Var(), opt); });
  };
  using Catch::Matchers::Contains;
  CHECK_THAT(message({3, 4, 3, 3}, {1, 1, 2}), Contains("groups must divide"));
  CHECK_THAT(message({4, 4, 3, 3}, {1, 1, 2}), Contains("expected C / groups = 2"));
  CHECK_THAT(message({4, 4, 7, 7}, {1, 0, 1}), Contains("kernel larger"));
  CHECK_THAT(message({4, 4, 3, 3}, {0, 1, 1}), Contains("stride must be positive"));
  CHECK_THAT(message({4, 4, 3}, {1, 1, 1}), Contains("(4, 4, 3)"));
  CHECK_THAT(testing::error_of([&] {
               conv2d(Var(zeros({2, 4, 5})), Var(zeros({4, 4, 3, 3})), Var(), {});
             }),
             Contains("(N, C, H, W)"));
  CHECK_THAT(testing::error_of([&] {
               conv2d(x, Var(zeros({4, 4, 3, 3})), Var(zeros({3})), {});
             }),
             Contains("bias (3,)"));
}

TEST_CASE("Conv2d holds torch-shaped parameters drawn as PyTorch draws them",
          "[image_ops][nn]") {
  Rng rng(12);
  Conv2d conv(8, 6, 3, rng, {2, 1, 2});
  const auto named = conv.named_parameters();
  REQUIRE(named.size() == 2);
  CHECK(named[0].first == "weight");
  CHECK(named[1].first == "bias");
  CHECK(conv.weight().shape() == Shape{6, 4, 3, 3});  // (out, in / groups, k, k)
  CHECK(conv.bias().shape() == Shape{6});
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 4 * 9: inside the bound, and the variance
  // bound^2 / 3 of the uniform distribution within 5 standard errors.
  const double bound = 1.0 / 6.0;
  Conv2d wide(64, 64, 3, rng);
  const Tensor& w = wide.weight().value();
  const double wb = 1.0 / std::sqrt(64.0 * 9.0);
  double ss = 0.0;
  for (float e : w) {
    REQUIRE(std::fabs(e) <= wb);
    ss += double(e) * e;
  }
  const double var = wb * wb / 3.0, n = double(w.size());
  const double se = std::sqrt((wb * wb * wb * wb / 5.0 - var * var) / n);  // E[u^4] = b^4 / 5
  CHECK(std::fabs(ss / n - var) < 5 * se);
  for (float e : conv.weight().value()) REQUIRE(std::fabs(e) <= bound);

  const Tensor x = normal({2, 8, 7, 7}, 13);
  const Tensor y = conv.forward(Var(x)).value();
  CHECK(testing::bitwise_equal(y, conv2d(Var(x), conv.weight(), conv.bias(), {2, 1, 2}).value()));
  CHECK(shape_of(y) == Shape{2, 6, 4, 4});

  // A zero-initialised layer (a U-Net's output) outputs exactly 0; no bias means none.
  Conv2d zero(8, 3, 3, rng, {1, 1, 1}, true, Init::zeros);
  const Var z = zero.forward(Var(x));
  for (float e : z.value()) REQUIRE(e == 0.0f);
  Conv2d nobias(8, 3, 1, rng, {}, false);
  CHECK(nobias.parameters().size() == 1);
  CHECK_FALSE(nobias.bias().defined());

  using Catch::Matchers::Contains;
  CHECK_THAT(testing::error_of([&] { Conv2d(8, 6, 3, rng, {1, 1, 4}); }),
             Contains("groups 4 must divide"));
  CHECK_THAT(testing::error_of([&] { conv.forward(Var(zeros({2, 6, 7, 7}))); }),
             Contains("(2, 6, 7, 7) needs (N, 8, H, W)"));
}
