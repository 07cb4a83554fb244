// dropout (keep frequency, scaling, reproducibility, evaluation identity, gradient) and
// modulate (against the broadcast ops it fuses, gradients on image and token layouts).
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

TEST_CASE("dropout zeroes a fraction p and scales the rest by 1 over 1 - p", "[image_ops]") {
  const float p = GENERATE(0.1f, 0.3f, 0.5f);
  CAPTURE(p);
  const std::size_t n = 200000;
  const Tensor x = grad_check::away_from_zero({n}, 1);  // no zeros of its own
  Rng rng(2);
  const Tensor y = dropout(Var(x), p, rng, true).value();
  std::size_t dropped = 0;
  const float scale = 1.0f / (1.0f - p);
  for (std::size_t i = 0; i < n; ++i) {
    if (y.data()[i] == 0.0f) {
      ++dropped;
    } else {
      REQUIRE(y.data()[i] == x.data()[i] * scale);
    }
  }
  // The dropped count is Binomial(n, p): within 5 standard errors.
  const double se = std::sqrt(double(p) * (1.0 - p) / double(n));
  CHECK_THAT(double(dropped) / double(n), WithinAbs(p, 5 * se));
}

TEST_CASE("dropout is reproducible from the stream and the identity in evaluation",
          "[image_ops]") {
  const Tensor x = normal({4, 3, 5, 5}, 3);
  Rng a(7), b(7), c(8);
  const Tensor ya = dropout(Var(x), 0.4f, a, true).value();
  CHECK(testing::bitwise_equal(ya, dropout(Var(x), 0.4f, b, true).value()));
  CHECK_FALSE(testing::bitwise_equal(ya, dropout(Var(x), 0.4f, c, true).value()));
  // The next mask from the same stream differs: masks are fresh per call.
  CHECK_FALSE(testing::bitwise_equal(ya, dropout(Var(x), 0.4f, a, true).value()));

  // Evaluation and p = 0 return the input itself and draw nothing.
  Rng d(9), untouched(9);
  const Var in(x, true);
  CHECK(dropout(in, 0.4f, d, false).node() == in.node());
  CHECK(dropout(in, 0.0f, d, true).node() == in.node());
  CHECK(d.next_u64() == untouched.next_u64());

  Dropout layer(0.5f);
  Rng e(10);
  CHECK_FALSE(testing::bitwise_equal(layer.forward(Var(x), e).value(), x));
  layer.eval();
  CHECK(layer.forward(in, e).node() == in.node());
  CHECK_THAT(testing::error_of([] { Dropout(1.0f); }), Contains("[0, 1)"));
  CHECK_THAT(testing::error_of([&] { dropout(in, -0.1f, e, true); }), Contains("[0, 1)"));
}

TEST_CASE("dropout gradient is the mask", "[image_ops][grad]") {
  const Shape s = GENERATE(Shape{3, 4}, Shape{2, 2, 3, 3});
  CAPTURE(shape_str(s));
  check_gradients(
      [](const std::vector<Var>& v) {
        Rng rng(11);  // the same mask at every evaluation
        return dropout(v[0], 0.3f, rng, true);
      },
      {normal(s, 12)});
}

TEST_CASE("modulate is x times 1 + scale plus shift broadcast over the other axes",
          "[image_ops]") {
  const Tensor x = normal({2, 3, 4, 5}, 13), scale = normal({2, 3}, 14), shift = normal({2, 3}, 15);
  // The same by broadcasting: scale and shift as (N, C, 1, 1).
  const Var s4 = reshape(Var(scale), {2, 3, 1, 1}), t4 = reshape(Var(shift), {2, 3, 1, 1});
  const Tensor want = (Var(x) * (s4 + 1.0f) + t4).value();
  const Tensor got = modulate(Var(x), Var(scale), Var(shift), 1).value();
  for (std::size_t i = 0; i < want.size(); ++i)
    REQUIRE_THAT(got.data()[i], WithinAbs(want.data()[i], 1e-6));
  // Tokens (N, T, C) with the channels last: scale and shift as (N, 1, C).
  const Tensor tok = normal({2, 6, 3}, 16);
  const Tensor want_tok = (Var(tok) * (reshape(Var(scale), {2, 1, 3}) + 1.0f) +
                           reshape(Var(shift), {2, 1, 3})).value();
  const Tensor got_tok = modulate(Var(tok), Var(scale), Var(shift), -1).value();
  for (std::size_t i = 0; i < want_tok.size(); ++i)
    REQUIRE_THAT(got_tok.data()[i], WithinAbs(want_tok.data()[i], 1e-6));
  // Without shift, without scale.
  const Tensor only_scale = modulate(Var(x), Var(scale), Var(), 1).value();
  const Tensor only_shift = modulate(Var(x), Var(), Var(shift), 1).value();
  const Tensor ws = (Var(x) * (s4 + 1.0f)).value(), wt = (Var(x) + t4).value();
  for (std::size_t i = 0; i < x.size(); ++i) {
    REQUIRE_THAT(only_scale.data()[i], WithinAbs(ws.data()[i], 1e-6));
    REQUIRE_THAT(only_shift.data()[i], WithinAbs(wt.data()[i], 1e-6));
  }
}

TEST_CASE("modulate gradients match finite differences", "[image_ops][grad]") {
  struct Case {
    Shape x;
    int axis;
    bool scale, shift;
  };
  const Case c = GENERATE(values<Case>({
      {{2, 3, 4, 3}, 1, true, true},   // FiLM on an image
      {{2, 5, 4}, -1, true, true},     // adaLN on tokens
      {{2, 3, 4, 5}, 2, true, true},   // a middle axis: outer and inner both > 1
      {{3, 4, 2, 2}, 1, true, false},  // scale only
      {{3, 4}, 1, false, true},        // shift only, no spatial axes
  }));
  CAPTURE(shape_str(c.x), c.axis, c.scale, c.shift);
  const std::size_t ch = c.x[c.axis < 0 ? c.x.size() - 1 : std::size_t(c.axis)];
  const Shape cond{c.x[0], ch};
  check_gradients(
      [&](const std::vector<Var>& v) {
        return modulate(v[0], c.scale ? v[1] : Var(), c.shift ? v[2] : Var(), c.axis);
      },
      {normal(c.x, 17), normal(cond, 18), normal(cond, 19)});
}

TEST_CASE("modulate rejects conditions that do not match and names them", "[image_ops]") {
  const Var x(zeros({2, 3, 4, 4}));
  CHECK_THAT(testing::error_of([&] { modulate(x, Var(zeros({2, 4})), Var(), 1); }),
             Contains("scale (2, 4)"));
  CHECK_THAT(testing::error_of([&] { modulate(x, Var(), Var(zeros({2, 3})), -1); }),
             Contains("shift (2, 3)"));
  CHECK_THAT(testing::error_of([&] { modulate(x, Var(), Var(), 0); }), Contains("batch axis"));
  CHECK_THAT(testing::error_of([&] { modulate(x, Var(), Var(), 4); }), Contains("out of range"));
}
