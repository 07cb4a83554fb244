// Condition (condition.hpp): labels, null mask and named tensors with one row per sample,
// checked where they are set and where a batch meets its condition; slicing, gathering and
// joining keep every part's rows together.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/nn_test_helpers.hpp"
#include "diffusion/model/condition.hpp"
#include "diffusion/model/denoiser.hpp"
#if __has_include("diffusion/model/predictions.hpp")
#include "diffusion/model/predictions.hpp"
#endif

using namespace diffusion;
using diffusion::testing::error_of;

namespace {

/// (rows, 3) with row i = (i, 10 i, 100 i): which row landed where is visible in the values.
Tensor rows_tensor(std::size_t rows) {
  Tensor t = Tensor::from_shape({rows, 3});
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < 3; ++j) t(i, j) = float(i * std::size_t(std::pow(10, j)));
  return t;
}

/// Labels 100 + i, mask i % 3 == 0, tensor "emb" = rows_tensor: a condition of `rows` rows.
Condition full_condition(std::size_t rows) {
  std::vector<int> labels(rows);
  std::vector<std::uint8_t> mask(rows);
  for (std::size_t i = 0; i < rows; ++i) labels[i] = int(100 + i), mask[i] = i % 3 == 0;
  Condition c = Condition::from_labels(labels);
  c.set_null_mask(mask);
  c.set("emb", rows_tensor(rows));
  return c;
}

/// Row r of `c` is row `from` of full_condition: labels, mask and the tensor's row agree.
void require_row(const Condition& c, std::size_t r, std::size_t from) {
  CAPTURE(r, from);
  REQUIRE(c.labels()[r] == int(100 + from));
  REQUIRE(c.null_mask()[r] == (from % 3 == 0));
  REQUIRE(c.is_null(r) == (from % 3 == 0));
  for (std::size_t j = 0; j < 3; ++j) REQUIRE(c.tensor("emb")(r, j) == float(from * std::size_t(std::pow(10, j))));
}

}  // namespace

TEST_CASE("an empty condition has no parts and fits any batch", "[condition]") {
  const Condition c;
  REQUIRE(c.empty());
  REQUIRE(c.rows() == 0);
  REQUIRE_FALSE(c.has_labels());
  REQUIRE_FALSE(c.has_null_mask());
  REQUIRE(c.names().empty());
  REQUIRE_FALSE(c.has("emb"));
  REQUIRE_FALSE(c.is_null(0));
  for (const std::size_t n : {0, 1, 50, 200, 100000}) REQUIRE_NOTHROW(c.check_rows(n, "loss"));
  REQUIRE_THROWS_WITH(c.labels(), Catch::Contains("no class labels"));
  REQUIRE_THROWS_WITH(c.null_mask(), Catch::Contains("no null mask"));
  REQUIRE_THROWS_WITH(c.tensor("emb"), Catch::Contains("no tensor 'emb'"));
  // Slicing and gathering nothing from nothing is still nothing.
  REQUIRE(c.slice(0, 0).empty());
  REQUIRE(c.select({}).empty());
  REQUIRE(Condition::concat(c, c).empty());
}

TEST_CASE("labels, null mask and named tensors share one row count", "[condition]") {
  Condition c = Condition::from_labels({3, 1, 4, 1});
  REQUIRE_FALSE(c.empty());
  REQUIRE(c.rows() == 4);
  REQUIRE(c.has_labels());
  REQUIRE(c.labels() == std::vector<int>{3, 1, 4, 1});
  REQUIRE_FALSE(c.has_null_mask());
  REQUIRE_FALSE(c.is_null(2));  // no mask: nothing dropped
  c.set_null_mask({0, 1, 0, 1});
  REQUIRE(c.has_null_mask());
  REQUIRE(c.null_mask() == std::vector<std::uint8_t>{0, 1, 0, 1});
  REQUIRE_FALSE(c.is_null(0));
  REQUIRE(c.is_null(1));
  c.set("image", Tensor::from_shape({4, 1, 2, 2}));
  c.set("text", rows_tensor(4));
  REQUIRE(c.has("image"));
  REQUIRE(c.has("text"));
  REQUIRE_FALSE(c.has("audio"));
  REQUIRE(c.names() == std::vector<std::string>{"image", "text"});  // in the order set
  REQUIRE(shape_of(c.tensor("image")) == Shape{4, 1, 2, 2});
  // Setting a name again replaces the tensor (same rows), keeping its place.
  Tensor other = rows_tensor(4);
  other(2, 1) = -7;
  c.set("image", other);
  REQUIRE(c.names() == std::vector<std::string>{"image", "text"});
  REQUIRE(c.tensor("image")(2, 1) == -7.0f);
  REQUIRE(c.rows() == 4);
  REQUIRE_NOTHROW(c.check_rows(4, "denoiser"));
}

TEST_CASE("setting a part with another row count throws naming both counts", "[condition]") {
  Condition c = Condition::from_labels({0, 1, 2, 3});
  const std::string t = error_of([&] { c.set("emb", rows_tensor(3)); });
  CAPTURE(t);
  REQUIRE_THAT(t, Catch::Contains("tensor 'emb'") && Catch::Contains("3 rows") && Catch::Contains("4"));
  const std::string m = error_of([&] { c.set_null_mask({0, 1}); });
  CAPTURE(m);
  REQUIRE_THAT(m, Catch::Contains("null mask") && Catch::Contains("2 rows") && Catch::Contains("4"));
  // Tensor first, labels second: the same rule.
  Condition d;
  d.set("emb", rows_tensor(5));
  REQUIRE(d.rows() == 5);
  const std::string l = error_of([&] { d.set_labels({1, 2}); });
  CAPTURE(l);
  REQUIRE_THAT(l, Catch::Contains("labels") && Catch::Contains("2 rows") && Catch::Contains("5"));
  // A failed set changes nothing.
  REQUIRE(c.rows() == 4);
  REQUIRE_FALSE(c.has("emb"));
  REQUIRE_FALSE(c.has_null_mask());
  REQUIRE_FALSE(d.has_labels());
}

TEST_CASE("check_rows: a clear error where a batch meets a condition of another size", "[condition]") {
  const Condition labels = Condition::from_labels(std::vector<int>(200, 1));
  REQUIRE_NOTHROW(labels.check_rows(200, "loss"));
  REQUIRE_THROWS_WITH(labels.check_rows(50, "loss"),
                      Catch::Equals("loss: the condition has 200 rows (labels) but the batch has 50"));
  REQUIRE_THROWS_WITH(labels.check_rows(0, "sampler ddim"),
                      Catch::Equals("sampler ddim: the condition has 200 rows (labels) but the batch has 0"));
  // The part named is one the condition has.
  Condition mask;
  mask.set_null_mask(std::vector<std::uint8_t>(7, 0));
  REQUIRE_THROWS_WITH(mask.check_rows(8, "denoiser"),
                      Catch::Equals("denoiser: the condition has 7 rows (null mask) but the batch has 8"));
  Condition tensors;
  tensors.set("emb", rows_tensor(3));
  REQUIRE_THROWS_WITH(tensors.check_rows(2, "denoiser"),
                      Catch::Contains("has 3 rows (tensors) but the batch has 2"));
}

TEST_CASE("slice and select carry every part's rows together", "[condition]") {
  const Condition c = full_condition(10);
  SECTION("slice") {
    const Condition s = c.slice(3, 7);
    REQUIRE(s.rows() == 4);
    REQUIRE(s.has_labels());
    REQUIRE(s.has_null_mask());
    REQUIRE(s.names() == std::vector<std::string>{"emb"});
    REQUIRE(shape_of(s.tensor("emb")) == Shape{4, 3});
    for (std::size_t r = 0; r < 4; ++r) require_row(s, r, 3 + r);
    REQUIRE(c.slice(0, 10).rows() == 10);
    REQUIRE(c.slice(10, 10).rows() == 0);
    REQUIRE_THROWS_WITH(c.slice(4, 11), Catch::Contains("[4, 11)") && Catch::Contains("10"));
    REQUIRE_THROWS(c.slice(5, 4));
  }
  SECTION("select, with repeats and out of order (resampling particles)") {
    const std::vector<std::size_t> rows = {9, 0, 0, 4, 9, 9, 2};
    const Condition s = c.select(rows);
    REQUIRE(s.rows() == rows.size());
    REQUIRE(shape_of(s.tensor("emb")) == Shape{rows.size(), 3});
    for (std::size_t r = 0; r < rows.size(); ++r) require_row(s, r, rows[r]);
    REQUIRE_THROWS_WITH(c.select({1, 10}), Catch::Contains("row 10 of 10"));
    // The original is untouched.
    for (std::size_t r = 0; r < 10; ++r) require_row(c, r, r);
  }
  SECTION("a higher-rank tensor is gathered by whole rows") {
    Condition img;
    Tensor x = Tensor::from_shape({3, 2, 2, 2});
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float(i);
    img.set("image", x);
    const Condition s = img.select({2, 0});
    REQUIRE(shape_of(s.tensor("image")) == Shape{2, 2, 2, 2});
    for (std::size_t k = 0; k < 8; ++k) {
      REQUIRE(s.tensor("image").data()[k] == float(16 + k));
      REQUIRE(s.tensor("image").data()[8 + k] == float(k));
    }
  }
}

TEST_CASE("concat joins two conditions with the same parts, rows of a then of b", "[condition]") {
  const Condition a = full_condition(10).slice(0, 4), b = full_condition(10).slice(6, 9);
  const Condition j = Condition::concat(a, b);
  REQUIRE(j.rows() == 7);
  REQUIRE(shape_of(j.tensor("emb")) == Shape{7, 3});
  for (std::size_t r = 0; r < 4; ++r) require_row(j, r, r);
  for (std::size_t r = 0; r < 3; ++r) require_row(j, 4 + r, 6 + r);
  // The halves of one classifier-free guidance batch: the same labels, the mask 0 then 1.
  Condition cond = Condition::from_labels({5, 6}), null = Condition::from_labels({5, 6});
  cond.set_null_mask({0, 0});
  null.set_null_mask({1, 1});
  const Condition g = Condition::concat(cond, null);
  REQUIRE(g.labels() == std::vector<int>{5, 6, 5, 6});
  REQUIRE(g.null_mask() == std::vector<std::uint8_t>{0, 0, 1, 1});
  // Different parts, or tensors that do not join by rows, are refused.
  REQUIRE_THROWS_WITH(Condition::concat(Condition::from_labels({1}), cond), Catch::Contains("different parts"));
  Condition p, q;
  p.set("emb", Tensor::from_shape({2, 3}));
  q.set("emb", Tensor::from_shape({2, 4}));
  REQUIRE_THROWS_WITH(Condition::concat(p, q), Catch::Contains("(2, 3)") && Catch::Contains("(2, 4)"));
}

namespace {

/// Records whether it ran; returns its input.
class WatchNet : public Network {
 public:
  bool ran = false;
  Var forward(const Var& x, const Tensor&, const Condition&) override {
    ran = true;
    return x;
  }
};

struct UnitVp : Path {
  double alpha(double t) const override { return std::cos(t); }
  double sigma(double t) const override { return std::sin(t); }
  double alpha_deriv(double t) const override { return -std::sin(t); }
  double sigma_deriv(double t) const override { return std::cos(t); }
  double t_min() const override { return 0.01; }
  double t_max() const override { return 1.5; }
};

}  // namespace

TEST_CASE("a denoiser refuses a condition of another batch size before the network runs", "[condition][denoiser]") {
  const auto net = std::make_shared<WatchNet>();
  const NetworkDenoiser d(net, std::make_shared<UnitVp>(), make_prediction("eps"));
  const Tensor x = Tensor::from_shape({50, 2});
  const Condition c = Condition::from_labels(std::vector<int>(200, 3));
  const std::string expected = "the condition has 200 rows (labels) but the batch has 50";
  Prediction p;
  REQUIRE_THROWS_WITH(d.predict(x, 0.5, c, p), Catch::Contains(expected));
  REQUIRE_FALSE(net->ran);
  REQUIRE_THROWS_WITH(d.predict_var(Var(x), same_time(50, 0.5), c), Catch::Contains(expected));
  REQUIRE_FALSE(net->ran);
  // The wrappers check as well, before doubling the batch for guidance.
  const auto inner = std::make_shared<NetworkDenoiser>(net, std::make_shared<UnitVp>(), make_prediction("eps"));
  const ClassifierFreeGuidance cfg(inner, 1.5);
  REQUIRE_THROWS_WITH(cfg.predict(x, 0.5, c, p), Catch::Contains(expected));
  REQUIRE_THROWS_WITH(cfg.predict_var(Var(x), same_time(50, 0.5), c), Catch::Contains(expected));
  REQUIRE_FALSE(net->ran);
  // And the times must be one per row.
  REQUIRE_THROWS_WITH(d.predict(x, same_time(49, 0.5), Condition(), p), Catch::Contains("49 times for a batch of 50"));
  REQUIRE_FALSE(net->ran);
  // With the right size it runs.
  REQUIRE_NOTHROW(d.predict(x, 0.5, Condition::from_labels(std::vector<int>(50, 3)), p));
  REQUIRE(net->ran);
}
