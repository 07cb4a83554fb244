// Finite-difference gradient checks for every autodiff op, plus closed-form forward values.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/grad_check.hpp"
#include "diffusion/autodiff/autodiff.hpp"

using namespace diffusion;
using grad_check::away_from_zero;
using grad_check::check_gradients;
using grad_check::normal;
using grad_check::uniform;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

struct ShapePair {
  Shape a, b;
};

std::string str(const ShapePair& p) { return shape_str(p.a) + " op " + shape_str(p.b); }

// Same shapes, the fast broadcast paths (row, column, scalar) on either side, and general
// broadcasts that need index arithmetic.
std::vector<ShapePair> broadcast_cases() {
  return {
      {{3, 4}, {3, 4}},       {{3, 4}, {4}},       {{4}, {3, 4}},       {{3, 4}, {3, 1}},
      {{3, 1}, {3, 4}},       {{2, 3, 4}, {1, 3, 1}}, {{1, 3, 1}, {2, 3, 4}}, {{}, {3, 4}},
      {{3, 4}, {}},           {{5, 1}, {1, 4}},    {{2, 1, 4}, {3, 1}}, {{2, 3, 4}, {2, 1, 4}},
      {{2, 3, 4}, {1, 4}},    {{}, {}},
  };
}

std::vector<Shape> unary_shapes() { return {{3, 4}, {2, 3, 5}, {7}, {}}; }

}  // namespace

// ---- Elementwise arithmetic ----

TEST_CASE("add, sub, mul, div gradients over broadcast shapes", "[autodiff][grad]") {
  const ShapePair p = GENERATE(from_range(broadcast_cases()));
  const std::string op = GENERATE(as<std::string>{}, "add", "sub", "mul", "div");
  CAPTURE(op, str(p));
  const Tensor a = normal(p.a, 1);
  // Denominators away from 0 keep div's gradient O(1).
  const Tensor b = op == "div" ? away_from_zero(p.b, 2, 0.5f, 1.5f) : normal(p.b, 2);
  check_gradients(
      [&](const std::vector<Var>& v) {
        if (op == "add") return v[0] + v[1];
        if (op == "sub") return v[0] - v[1];
        if (op == "mul") return v[0] * v[1];
        return v[0] / v[1];
      },
      {a, b});
}

TEST_CASE("binary ops with only one input requiring grad", "[autodiff][grad]") {
  const std::string op = GENERATE(as<std::string>{}, "add", "sub", "mul", "div");
  const int which = GENERATE(0, 1);
  CAPTURE(op, which);
  const Tensor other = away_from_zero({3, 1}, 3, 0.5f, 1.5f);
  check_gradients(
      [&](const std::vector<Var>& v) {
        const Var c(other);  // a constant: no gradient, must not be touched
        const Var& x = v[0];
        const Var& l = which == 0 ? x : c;
        const Var& r = which == 0 ? c : x;
        if (op == "add") return l + r;
        if (op == "sub") return l - r;
        if (op == "mul") return l * r;
        return l / r;
      },
      {away_from_zero({3, 4}, 4, 0.5f, 1.5f)});
}

TEST_CASE("an input used twice accumulates both gradients", "[autodiff][grad]") {
  check_gradients([](const std::vector<Var>& v) { return v[0] * v[0] + v[0] / (v[0] * 3.0f); },
                  {away_from_zero({3, 4}, 5)});
}

TEST_CASE("neg and scalar add, sub, mul, div", "[autodiff][grad]") {
  const Shape s = GENERATE(from_range(unary_shapes()));
  CAPTURE(shape_str(s));
  check_gradients([](const std::vector<Var>& v) { return -v[0]; }, {normal(s, 6)});
  check_gradients([](const std::vector<Var>& v) { return v[0] + 2.5f; }, {normal(s, 7)});
  check_gradients([](const std::vector<Var>& v) { return 1.5f - v[0]; }, {normal(s, 8)});
  check_gradients([](const std::vector<Var>& v) { return v[0] * -3.0f; }, {normal(s, 9)});
  check_gradients([](const std::vector<Var>& v) { return v[0] / 4.0f; }, {normal(s, 10)});
}

// ---- Pointwise functions ----

TEST_CASE("pointwise function gradients", "[autodiff][grad]") {
  struct Case {
    const char* name;
    Var (*f)(const Var&);
    char domain;  // n: normal, p: positive, a: away from zero
  };
  const Case c = GENERATE(values<Case>({
      {"exp", [](const Var& x) { return exp(x); }, 'n'},
      {"log", [](const Var& x) { return log(x); }, 'p'},
      {"sqrt", [](const Var& x) { return sqrt(x); }, 'p'},
      {"pow 3", [](const Var& x) { return pow(x, 3.0f); }, 'n'},
      {"pow 2.5", [](const Var& x) { return pow(x, 2.5f); }, 'p'},
      {"pow -1.5", [](const Var& x) { return pow(x, -1.5f); }, 'p'},
      {"square", [](const Var& x) { return square(x); }, 'n'},
      {"abs", [](const Var& x) { return abs(x); }, 'a'},
      {"sin", [](const Var& x) { return sin(x); }, 'n'},
      {"cos", [](const Var& x) { return cos(x); }, 'n'},
      {"tanh", [](const Var& x) { return tanh(x); }, 'n'},
      {"sigmoid", [](const Var& x) { return sigmoid(x); }, 'n'},
      {"relu", [](const Var& x) { return relu(x); }, 'a'},
      {"silu", [](const Var& x) { return silu(x); }, 'n'},
      {"gelu", [](const Var& x) { return gelu(x); }, 'n'},
      {"softplus", [](const Var& x) { return softplus(x); }, 'n'},
  }));
  const Shape s = GENERATE(from_range(unary_shapes()));
  CAPTURE(c.name, shape_str(s));
  const Tensor x = c.domain == 'p'   ? uniform(s, 11, 0.5f, 2.0f)
                   : c.domain == 'a' ? away_from_zero(s, 11)
                                     : normal(s, 11);
  check_gradients([&](const std::vector<Var>& v) { return c.f(v[0]); }, {x});
}

TEST_CASE("pointwise gradients at large |x| (saturating branches)", "[autodiff][grad]") {
  Tensor x = {-9.0f, -4.0f, 3.5f, 8.0f};
  for (auto f : {+[](const Var& v) { return softplus(v); }, +[](const Var& v) { return sigmoid(v); },
                 +[](const Var& v) { return silu(v); }, +[](const Var& v) { return gelu(v); },
                 +[](const Var& v) { return tanh(v); }})
    check_gradients([&](const std::vector<Var>& v) { return f(v[0]); }, {x});
}

// ---- Linear algebra ----

TEST_CASE("matmul gradients", "[autodiff][grad]") {
  const ShapePair p = GENERATE(values<ShapePair>({
      {{3, 4}, {4, 5}},
      {{5, 2}, {2, 3}},
      {{1, 4}, {4, 1}},
      {{2, 3, 4}, {2, 4, 5}},
      {{2, 3, 4}, {4, 5}},
      {{2, 2, 3, 4}, {2, 2, 4, 3}},
      {{2, 2, 3, 4}, {4, 2}},
  }));
  CAPTURE(str(p));
  check_gradients([](const std::vector<Var>& v) { return matmul(v[0], v[1]); },
                  {normal(p.a, 12), normal(p.b, 13)});
}

TEST_CASE("linear gradients, with and without bias", "[autodiff][grad]") {
  const Shape xs = GENERATE(Shape{3, 4}, Shape{2, 3, 4}, Shape{4}, Shape{1, 4});
  const bool with_bias = GENERATE(true, false);
  CAPTURE(shape_str(xs), with_bias);
  std::vector<Tensor> in = {normal(xs, 14), normal({5, 4}, 15)};
  if (with_bias) in.push_back(normal({5}, 16));
  check_gradients(
      [&](const std::vector<Var>& v) { return linear(v[0], v[1], with_bias ? v[2] : Var()); }, in);
}

TEST_CASE("linear matches matmul with the transposed weight plus bias", "[autodiff]") {
  const Var x(normal({3, 4}, 17)), w(normal({5, 4}, 18)), b(normal({5}, 19));
  const Tensor y = linear(x, w, b).value();
  const Tensor z = (matmul(x, transpose(w)) + b).value();
  for (std::size_t i = 0; i < y.size(); ++i) REQUIRE_THAT(y.data()[i], WithinAbs(z.data()[i], 1e-5));
}

// ---- Reductions ----

TEST_CASE("sum and mean gradients over axes", "[autodiff][grad]") {
  const std::vector<int> axes = GENERATE(values<std::vector<int>>(
      {{0}, {1}, {2}, {-1}, {-3}, {0, 2}, {2, 0}, {0, 1, 2}, {}}));
  const bool keepdims = GENERATE(false, true);
  const bool average = GENERATE(false, true);
  std::string ax;
  for (int a : axes) ax += std::to_string(a) + " ";
  CAPTURE(ax, keepdims, average);
  const Var probe(normal({2, 3, 4}, 20));
  const Var out = average ? mean(probe, axes, keepdims) : sum(probe, axes, keepdims);
  if (axes.empty() && !keepdims) CHECK(out.dim() == 0);
  if (keepdims) CHECK(out.dim() == 3);
  check_gradients(
      [&](const std::vector<Var>& v) {
        return average ? mean(v[0], axes, keepdims) : sum(v[0], axes, keepdims);
      },
      {probe.value()});
}

TEST_CASE("sum and mean of 1-D and 0-d tensors", "[autodiff][grad]") {
  check_gradients([](const std::vector<Var>& v) { return sum(v[0]); }, {normal({5}, 21)});
  check_gradients([](const std::vector<Var>& v) { return mean(v[0], {0}); }, {normal({5}, 22)});
  check_gradients([](const std::vector<Var>& v) { return mean(v[0]); }, {normal({}, 23)});
}

TEST_CASE("softmax and log_softmax gradients", "[autodiff][grad]") {
  struct Case {
    Shape s;
    int axis;
  };
  const Case c = GENERATE(values<Case>(
      {{{3, 4}, 0}, {{3, 4}, -1}, {{3, 4}, 1}, {{2, 3, 4}, 1}, {{2, 3, 4}, 0}, {{5}, 0}}));
  const bool log_out = GENERATE(false, true);
  CAPTURE(shape_str(c.s), c.axis, log_out);
  check_gradients(
      [&](const std::vector<Var>& v) {
        return log_out ? log_softmax(v[0], c.axis) : softmax(v[0], c.axis);
      },
      {normal(c.s, 24)});
}

// ---- Shape ops ----

TEST_CASE("reshape gradients", "[autodiff][grad]") {
  const std::vector<long> to =
      GENERATE(values<std::vector<long>>({{4, -1}, {-1}, {2, 2, 3}, {12, 1}, {3, 4}}));
  CAPTURE(to);
  check_gradients([&](const std::vector<Var>& v) { return reshape(v[0], to); },
                  {normal({3, 4}, 25)});
}

TEST_CASE("permute and transpose gradients", "[autodiff][grad]") {
  const std::vector<std::size_t> perm = GENERATE(values<std::vector<std::size_t>>(
      {{2, 0, 1}, {1, 2, 0}, {1, 0, 2}, {0, 2, 1}, {2, 1, 0}, {0, 1, 2}}));
  CAPTURE(perm);
  check_gradients([&](const std::vector<Var>& v) { return permute(v[0], perm); },
                  {normal({2, 3, 4}, 26)});
  check_gradients([](const std::vector<Var>& v) { return transpose(v[0]); },
                  {normal({3, 4}, 27)});
  check_gradients([](const std::vector<Var>& v) { return transpose(v[0]); },
                  {normal({2, 3, 4}, 28)});
}

TEST_CASE("concat gradients along each axis with unequal sizes", "[autodiff][grad]") {
  SECTION("axis 0") {
    check_gradients([](const std::vector<Var>& v) { return concat({v[0], v[1]}, 0); },
                    {normal({2, 3}, 29), normal({4, 3}, 30)});
  }
  SECTION("axis 1") {
    check_gradients([](const std::vector<Var>& v) { return concat({v[0], v[1]}, 1); },
                    {normal({3, 2}, 31), normal({3, 5}, 32)});
  }
  SECTION("axis -1, three parts, rank 3") {
    check_gradients([](const std::vector<Var>& v) { return concat({v[0], v[1], v[2]}, -1); },
                    {normal({2, 3, 1}, 33), normal({2, 3, 4}, 34), normal({2, 3, 2}, 35)});
  }
  SECTION("middle axis, a part used twice") {
    check_gradients([](const std::vector<Var>& v) { return concat({v[0], v[1], v[0]}, 1); },
                    {normal({2, 1, 3}, 36), normal({2, 2, 3}, 37)});
  }
}

TEST_CASE("slice gradients", "[autodiff][grad]") {
  struct Case {
    int axis;
    std::size_t start, stop;
  };
  const Case c = GENERATE(values<Case>({{0, 1, 3}, {1, 0, 2}, {-1, 2, 4}, {2, 1, 2}, {1, 1, 1}}));
  CAPTURE(c.axis, c.start, c.stop);
  check_gradients([&](const std::vector<Var>& v) { return slice(v[0], c.axis, c.start, c.stop); },
                  {normal({3, 4, 5}, 38)});
}

TEST_CASE("index_select gradients with repeated indices", "[autodiff][grad]") {
  struct Case {
    int axis;
    std::vector<std::size_t> idx;
  };
  const Case c = GENERATE(values<Case>(
      {{0, {2, 0, 2, 2}}, {1, {3, 3, 1}}, {-1, {0, 4, 0}}, {0, {}}, {1, {0, 1, 2, 3}}}));
  CAPTURE(c.axis, c.idx);
  check_gradients([&](const std::vector<Var>& v) { return index_select(v[0], c.axis, c.idx); },
                  {normal({3, 4, 5}, 39)});
}

// ---- Normalisation and losses ----

TEST_CASE("layer_norm gradients", "[autodiff][grad]") {
  const Shape s = GENERATE(Shape{3, 5}, Shape{2, 3, 4}, Shape{6});
  const bool with_weight = GENERATE(true, false);
  const bool with_bias = GENERATE(true, false);
  CAPTURE(shape_str(s), with_weight, with_bias);
  const Shape d{s.back()};
  std::vector<Tensor> in = {normal(s, 40), normal(d, 41), normal(d, 42)};
  check_gradients(
      [&](const std::vector<Var>& v) {
        return layer_norm(v[0], with_weight ? v[1] : Var(), with_bias ? v[2] : Var());
      },
      in);
}

TEST_CASE("mse_loss and pseudo_huber_loss gradients to both inputs", "[autodiff][grad]") {
  const Shape s = GENERATE(Shape{3, 4}, Shape{2, 3, 2}, Shape{5});
  const float c = GENERATE(0.0f, 0.25f, 2.0f);  // 0 means mse
  CAPTURE(shape_str(s), c);
  check_gradients(
      [&](const std::vector<Var>& v) {
        return c == 0.0f ? mse_loss(v[0], v[1]) : pseudo_huber_loss(v[0], v[1], c);
      },
      {normal(s, 43), normal(s, 44)});
}

TEST_CASE("a small MLP step end to end", "[autodiff][grad]") {
  // linear -> silu -> layer_norm -> linear -> mse: the ops a training step chains.
  const Tensor target = normal({6, 2}, 45);
  check_gradients(
      [&](const std::vector<Var>& v) {
        const Var h = layer_norm(silu(linear(v[0], v[1], v[2])), Var(), Var());
        return mse_loss(linear(h, v[3], v[4]), Var(target));
      },
      {normal({6, 3}, 46), normal({5, 3}, 47), normal({5}, 48), normal({2, 5}, 49),
       normal({2}, 50)});
}

// ---- Forward values against closed forms ----

TEST_CASE("softmax rows sum to one and log_softmax is log(softmax)", "[autodiff]") {
  Tensor x = normal({4, 6}, 51);
  x.data()[0] = 80.0f;  // large logits must not overflow
  const int axis = GENERATE(0, 1, -1);
  CAPTURE(axis);
  const Tensor p = softmax(Var(x), axis).value();
  const Tensor lp = log_softmax(Var(x), axis).value();
  const Tensor s = sum(Var(p), {axis}).value();
  for (float v : s) REQUIRE_THAT(v, WithinAbs(1.0, 1e-5));
  for (std::size_t i = 0; i < p.size(); ++i) {
    REQUIRE(std::isfinite(lp.data()[i]));
    REQUIRE_THAT(std::exp(lp.data()[i]), WithinAbs(p.data()[i], 1e-6));
  }
}

TEST_CASE("pointwise functions against closed forms", "[autodiff]") {
  const auto at = [](Var (*f)(const Var&), float x) { return f(Var(scalar(x))).item(); };
  CHECK_THAT(at(gelu, 1.0f), WithinAbs(0.8413447, 1e-6));
  CHECK_THAT(at(gelu, -1.0f), WithinAbs(-0.1586553, 1e-6));
  CHECK_THAT(at(silu, 2.0f), WithinRel(2.0 / (1.0 + std::exp(-2.0)), 1e-6));
  CHECK_THAT(at(softplus, 0.0f), WithinRel(std::log(2.0), 1e-6));
  CHECK_THAT(at(softplus, 100.0f), WithinRel(100.0, 1e-6));  // no overflow
  CHECK_THAT(at(softplus, -100.0f), WithinAbs(0.0, 1e-30));
  CHECK_THAT(at(sigmoid, -100.0f), WithinAbs(0.0, 1e-30));
  CHECK_THAT(at(sigmoid, 100.0f), WithinAbs(1.0, 1e-7));
  CHECK(at(relu, -2.0f) == 0.0f);
  CHECK(at(abs, -2.0f) == 2.0f);
  CHECK_THAT(pow(Var(scalar(2.0f)), 3.0f).item(), WithinRel(8.0, 1e-6));
}

TEST_CASE("exp is within 2 ulp of std::exp over the float range", "[autodiff]") {
  // exp, sigmoid, silu use a vectorisable exp of their own; check it against libm.
  Tensor x = Tensor::from_shape({200001});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = -110.0f + 200.0f * i / 200000.0f;
  const Tensor y = exp(Var(x)).value();
  double worst_rel = 0.0;
  std::size_t off = 0;  // subnormal, 0 or inf results that differ
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(x.data()[i]), got = y.data()[i];
    if (ref >= 1.17549435e-38 && ref <= 3.40282347e38)
      worst_rel = std::max(worst_rel, std::fabs(got - ref) / ref);
    else if (!(std::isinf(ref) ? got == ref : std::fabs(got - ref) <= 1e-44))
      ++off;
  }
  CHECK(worst_rel <= 2.5e-7);
  CHECK(off == 0);
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor e = exp(Var(Tensor{inf, -inf, 1e10f, -1e10f, 88.73f, -104.5f})).value();
  CHECK(e(0) == inf);
  CHECK(e(1) == 0.0f);
  CHECK(e(2) == inf);
  CHECK(e(3) == 0.0f);
  CHECK(e(4) == inf);
  CHECK(e(5) == 0.0f);
  CHECK(std::isnan(exp(Var(scalar(std::nanf("")))).item()));
}

TEST_CASE("gelu and its derivative match the exact erf forms over the float range", "[autodiff]") {
  // gelu reads a vectorisable erf (Abramowitz & Stegun 7.1.26); check x Phi(x) and
  // Phi(x) + x phi(x) against libm's erf in double. The bound is absolute in 1 + erf (1.5e-7
  // from the approximation, the rest float rounding), so scaled by max(1, |x|) for gelu.
  Tensor x = Tensor::from_shape({40001});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = -20.0f + 40.0f * i / 40000.0f;
  Var v(x, true);
  Var y = gelu(v);
  sum(y).backward();
  double worst_y = 0.0, worst_dy = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double z = x.data()[i], cdf = 0.5 * (1.0 + std::erf(z / std::sqrt(2.0)));
    const double pdf = std::exp(-0.5 * z * z) / std::sqrt(2.0 * M_PI);
    worst_y = std::max(worst_y, std::fabs(y.value().data()[i] - z * cdf) / std::max(1.0, std::fabs(z)));
    worst_dy = std::max(worst_dy, std::fabs(v.grad().data()[i] - (cdf + z * pdf)));
  }
  CHECK(worst_y <= 3e-7);
  CHECK(worst_dy <= 3e-7);
  CHECK(gelu(Var(scalar(-1e30f))).item() == 0.0f);
  CHECK(gelu(Var(scalar(1e30f))).item() == 1e30f);
  CHECK(std::isnan(gelu(Var(scalar(std::nanf("")))).item()));
}

TEST_CASE("gradients at kinks: relu and abs give 0 at 0", "[autodiff]") {
  for (auto f : {+[](const Var& v) { return relu(v); }, +[](const Var& v) { return abs(v); }}) {
    Var x(scalar(0.0f), true);
    f(x).backward();
    CHECK(x.grad().data()[0] == 0.0f);
  }
}

TEST_CASE("layer_norm output has mean 0 and variance 1 per row", "[autodiff]") {
  Tensor x = normal({5, 16}, 52);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = 3.0f * x.data()[i] + 10.0f;
  const Tensor y = layer_norm(Var(x), Var(), Var()).value();
  for (std::size_t r = 0; r < 5; ++r) {
    double m = 0, v = 0;
    for (std::size_t j = 0; j < 16; ++j) m += y.data()[r * 16 + j];
    m /= 16;
    for (std::size_t j = 0; j < 16; ++j) v += (y.data()[r * 16 + j] - m) * (y.data()[r * 16 + j] - m);
    v /= 16;  // biased, as layer_norm normalises
    CHECK_THAT(m, WithinAbs(0.0, 1e-5));
    CHECK_THAT(v, WithinAbs(1.0, 1e-3));  // eps = 1e-5 against variance ~9
  }
  // Weight and bias apply per feature after normalising.
  const Tensor w = normal({16}, 53), b = normal({16}, 54);
  const Tensor z = layer_norm(Var(x), Var(w), Var(b)).value();
  for (std::size_t i = 0; i < z.size(); ++i)
    REQUIRE_THAT(z.data()[i], WithinAbs(y.data()[i] * w.data()[i % 16] + b.data()[i % 16], 1e-5));
}

TEST_CASE("matmul, sum, losses against direct formulas", "[autodiff]") {
  const Tensor a = normal({2, 3, 4}, 55), b = normal({2, 4, 5}, 56), b2 = normal({4, 5}, 57);
  const Tensor c = matmul(Var(a), Var(b)).value();
  const Tensor c2 = matmul(Var(a), Var(b2)).value();
  REQUIRE(shape_of(c) == Shape{2, 3, 5});
  REQUIRE(shape_of(c2) == Shape{2, 3, 5});
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t i = 0; i < 3; ++i)
      for (std::size_t j = 0; j < 5; ++j) {
        double s = 0, s2 = 0;
        for (std::size_t k = 0; k < 4; ++k) {
          s += a(n, i, k) * b(n, k, j);
          s2 += a(n, i, k) * b2(k, j);
        }
        REQUIRE_THAT(c(n, i, j), WithinAbs(s, 1e-5));
        REQUIRE_THAT(c2(n, i, j), WithinAbs(s2, 1e-5));
      }
  const Tensor s1 = sum(Var(a), {0, 2}, true).value();
  REQUIRE(shape_of(s1) == Shape{1, 3, 1});
  double ref = 0;
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t k = 0; k < 4; ++k) ref += a(n, 1, k);
  CHECK_THAT(s1(0, 1, 0), WithinAbs(ref, 1e-5));

  const Tensor p = Tensor{1.0f, -2.0f}, t = Tensor{0.0f, 1.0f};
  CHECK_THAT(mse_loss(Var(p), Var(t)).item(), WithinRel(5.0, 1e-6));  // (1 + 9) / 2
  const double ph = ((std::sqrt(1.0 + 4.0) - 2.0) + (std::sqrt(9.0 + 4.0) - 2.0)) / 2.0;
  CHECK_THAT(pseudo_huber_loss(Var(p), Var(t), 2.0f).item(), WithinRel(ph, 1e-6));
}
