#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "diffusion/tensor/random.hpp"

using namespace diffusion;
using Catch::Matchers::WithinAbs;

TEST_CASE("same seed gives bit-identical streams", "[random]") {
  Rng a(42), b(42);
  const Tensor x = a.normal({1000});
  const Tensor y = b.normal({1000});
  REQUIRE(std::equal(x.begin(), x.end(), y.begin()));
  REQUIRE(a.next_u64() == b.next_u64());
}

TEST_CASE("different seeds and split streams differ", "[random]") {
  Rng a(1), b(2);
  REQUIRE(a.next_u64() != b.next_u64());
  const Rng root(7);
  Rng s1 = root.split("dataset"), s2 = root.split("sampler"), s3 = root.split("dataset");
  const auto v1 = s1.next_u64(), v2 = s2.next_u64(), v3 = s3.next_u64();
  REQUIRE(v1 != v2);
  REQUIRE(v1 == v3);  // a split depends only on the parent's seed and the name
  REQUIRE(root.split(0).next_u64() != root.split(1).next_u64());
}

TEST_CASE("splitting does not advance the parent", "[random]") {
  Rng a(3), b(3);
  (void)a.split("x");
  (void)a.split(5);
  REQUIRE(a.next_u64() == b.next_u64());
}

TEST_CASE("state save and restore reproduces the stream", "[random]") {
  Rng a(11);
  a.normal({17});
  const Rng::State st = a.state();
  const Tensor x = a.normal({100});
  Rng b(0);
  b.set_state(st);
  const Tensor y = b.normal({100});
  REQUIRE(std::equal(x.begin(), x.end(), y.begin()));
}

TEST_CASE("normal draws have mean 0 and variance 1 within 4 standard errors", "[random][stat]") {
  const std::size_t n = 200000;
  Rng rng(5);
  const Tensor x = rng.normal({n}, 2.0f, 3.0f);
  double m = 0, m2 = 0, m4 = 0;
  for (float v : x) m += v;
  m /= n;
  for (float v : x) {
    const double d = v - m;
    m2 += d * d;
    m4 += d * d * d * d;
  }
  m2 /= n;
  m4 /= n;
  REQUIRE_THAT(m, WithinAbs(2.0, 4 * 3.0 / std::sqrt(double(n))));
  REQUIRE_THAT(m2, WithinAbs(9.0, 4 * 9.0 * std::sqrt(2.0 / n)));
  REQUIRE_THAT(m4 / (m2 * m2), WithinAbs(3.0, 4 * std::sqrt(96.0 / n)));  // Gaussian kurtosis
}

TEST_CASE("uniform draws cover lo to hi with the right moments", "[random][stat]") {
  const std::size_t n = 100000;
  Rng rng(9);
  const Tensor u = rng.uniform({n}, -1.0f, 3.0f);
  double m = 0;
  for (float v : u) {
    REQUIRE(v >= -1.0f);
    REQUIRE(v < 3.0f);
    m += v;
  }
  m /= n;
  // Var U(-1,3) = 16/12.
  REQUIRE_THAT(m, WithinAbs(1.0, 4 * std::sqrt(16.0 / 12.0 / n)));
}

TEST_CASE("integers are uniform over 0 to n-1", "[random][stat]") {
  const std::size_t n = 70000, k = 7;
  Rng rng(13);
  std::vector<double> count(k, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto v = rng.integer(k);
    REQUIRE(v < k);
    count[v] += 1;
  }
  const double p = 1.0 / k, se = std::sqrt(n * p * (1 - p));
  for (double c : count) REQUIRE_THAT(c, WithinAbs(n * p, 4 * se));
  REQUIRE_THROWS_AS(rng.integer(0), Error);
}
