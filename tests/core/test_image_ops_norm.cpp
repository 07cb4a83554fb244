// group_norm and layer_norm on image and token shapes: finite-difference gradients, output
// statistics, the affine map, and the GroupNorm module.
#include <catch2/catch.hpp>

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
using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;

TEST_CASE("group_norm gradients match finite differences", "[image_ops][grad]") {
  struct Case {
    Shape x;
    std::size_t groups;
  };
  const Case c = GENERATE(values<Case>({
      {{2, 4, 3, 3}, 2},   // two channels per group
      {{2, 6, 3, 5}, 3},   // odd spatial size
      {{1, 4, 5, 4}, 1},   // one group: layer norm over (C, H, W)
      {{2, 3, 4, 4}, 3},   // one channel per group: instance norm
      {{3, 4, 5}, 2},      // (N, C, L): any number of trailing axes
      {{4, 6}, 2},         // (N, C): no spatial axes
  }));
  const bool affine = GENERATE(true, false);
  CAPTURE(shape_str(c.x), c.groups, affine);
  const Shape ch{c.x[1]};
  // Weight away from 0 so that every channel's gradient is of order 1.
  check_gradients(
      [&](const std::vector<Var>& v) {
        return group_norm(v[0], c.groups, affine ? v[1] : Var(), affine ? v[2] : Var());
      },
      {normal(c.x, 1), grad_check::away_from_zero(ch, 2), normal(ch, 3)});
}

TEST_CASE("group_norm output has mean 0 and variance 1 per sample and group", "[image_ops]") {
  // Far from zero mean and unit scale, so that a missing centring or scaling shows.
  Tensor x = normal({3, 8, 7, 5}, 4);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = 5.0f + 3.0f * x.data()[i] * (1 + i % 3);
  const std::size_t groups = 4, len = 2 * 7 * 5;
  const Tensor y = group_norm(Var(x), groups, Var(), Var()).value();
  for (std::size_t b = 0; b < 3 * groups; ++b) {  // groups are contiguous runs in NCHW
    double m = 0.0, v = 0.0;
    for (std::size_t i = 0; i < len; ++i) m += y.data()[b * len + i];
    m /= len;
    for (std::size_t i = 0; i < len; ++i) v += std::pow(y.data()[b * len + i] - m, 2);
    v /= len;  // biased, as group_norm normalises
    CHECK_THAT(m, WithinAbs(0.0, 1e-5));
    CHECK_THAT(v, WithinAbs(1.0, 1e-4));  // eps = 1e-5 against variances of order 10
  }
  // With weight and bias: channel c is w_c y + b_c, with y the normalised output above.
  const Tensor w = normal({8}, 5), bias = normal({8}, 6);
  const Tensor z = group_norm(Var(x), groups, Var(w), Var(bias)).value();
  for (std::size_t i = 0; i < z.size(); ++i) {
    const std::size_t c = (i / 35) % 8;
    REQUIRE_THAT(z.data()[i], WithinAbs(w.data()[c] * y.data()[i] + bias.data()[c], 1e-5));
  }
}

TEST_CASE("group_norm of a constant group is finite and zero", "[image_ops]") {
  // Variance 0: 1 / sqrt(0 + eps) keeps the output finite.
  const Tensor y = group_norm(Var(full({2, 4, 3, 3}, 2.5f)), 2, Var(), Var()).value();
  for (float e : y) REQUIRE_THAT(e, WithinAbs(0.0, 1e-4));
}

TEST_CASE("group_norm and GroupNorm reject bad shapes and name them", "[image_ops][nn]") {
  CHECK_THAT(testing::error_of([] { group_norm(Var(zeros({2, 6, 3, 3})), 4, Var(), Var()); }),
             Contains("(2, 6, 3, 3) with 4 groups"));
  CHECK_THAT(testing::error_of([] { group_norm(Var(zeros({2, 6, 3, 3})), 3, Var(zeros({3})), Var()); }),
             Contains("weight (3,)"));
  CHECK_THAT(testing::error_of([] { GroupNorm(3, 8); }), Contains("3 groups must divide 8"));
  GroupNorm gn(2, 8);
  CHECK_THAT(testing::error_of([&] { gn.forward(Var(zeros({2, 6, 3, 3}))); }),
             Contains("(2, 6, 3, 3)"));
}

TEST_CASE("GroupNorm is group_norm with weight 1 and bias 0 at initialisation", "[image_ops][nn]") {
  GroupNorm gn(4, 8, 1e-6f);
  const auto named = gn.named_parameters();
  REQUIRE(named.size() == 2);
  CHECK(named[0].first == "weight");
  CHECK(named[1].first == "bias");
  for (float e : named[0].second.value()) CHECK(e == 1.0f);
  for (float e : named[1].second.value()) CHECK(e == 0.0f);
  const Tensor x = normal({2, 8, 4, 4}, 7);
  CHECK(testing::bitwise_equal(gn.forward(Var(x)).value(),
                               group_norm(Var(x), 4, Var(), Var(), 1e-6f).value()));
  CHECK(GroupNorm(4, 8, 1e-5f, false).parameters().empty());
}

TEST_CASE("layer_norm over the features of tokens with DiT's eps and no affine",
          "[image_ops][grad]") {
  // DiT's blocks: LayerNorm(hidden, elementwise_affine=False, eps=1e-6) on (N, T, D).
  const Shape s = GENERATE(Shape{2, 5, 6}, Shape{1, 9, 4});
  CAPTURE(shape_str(s));
  check_gradients([](const std::vector<Var>& v) { return layer_norm(v[0], Var(), Var(), 1e-6f); },
                  {normal(s, 8)});
  // Followed by adaLN's modulation, the pair DiT applies twice per block.
  const Shape cond{s[0], s[2]};
  check_gradients(
      [](const std::vector<Var>& v) {
        return modulate(layer_norm(v[0], Var(), Var(), 1e-6f), v[1], v[2], -1);
      },
      {normal(s, 9), normal(cond, 10), normal(cond, 11)});
}
