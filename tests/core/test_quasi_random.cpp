#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "diffusion/tensor/quasi_random.hpp"

using namespace diffusion;

namespace {
double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
}  // namespace

TEST_CASE("normal_quantile inverts the normal CDF to rounding error", "[random][qmc]") {
  CHECK(std::abs(normal_quantile(0.5)) < 1e-16);
  CHECK(std::abs(normal_quantile(0.975) - 1.959963984540054) < 1e-14);
  CHECK(std::abs(normal_quantile(0.8413447460685429) - 1.0) < 1e-14);  // Phi(1)
  CHECK(std::abs(normal_quantile(1e-10) + 6.361340902404056) < 1e-12);
  // The error in x, (Phi(x) - p) / phi(x), within a few ulps of x, from 1/2 far into the lower
  // tail; the upper half mirrors it.
  for (double p = 0.4999; p > 1e-300; p *= 0.37) {
    const double x = normal_quantile(p);
    const double density = std::exp(-0.5 * x * x) / std::sqrt(2.0 * 3.14159265358979323846);
    INFO("p = " << p << ", x = " << x);
    CHECK(std::abs(normal_cdf(x) - p) / density <= 8e-16 * std::max(1.0, std::abs(x)));
    const double upper = 1.0 - p;  // rounded; the quantile is odd about 1/2 for what it gets
    CHECK(normal_quantile(upper) == -normal_quantile(1.0 - upper));
  }
  for (double p = 0.5; p < 1.0; p += 0.0123) CHECK(std::abs(normal_cdf(normal_quantile(p)) - p) < 1e-15);
}

TEST_CASE("normal_quantile at and beyond the ends of the unit interval", "[random][qmc]") {
  CHECK(normal_quantile(0.0) == -std::numeric_limits<double>::infinity());
  CHECK(normal_quantile(1.0) == std::numeric_limits<double>::infinity());
  CHECK(std::isnan(normal_quantile(-0.1)));
  CHECK(std::isnan(normal_quantile(1.5)));
  CHECK(std::isnan(normal_quantile(std::numeric_limits<double>::quiet_NaN())));
}

TEST_CASE("each rqmc row is exactly standard normal across seeds", "[random][qmc]") {
  // Row i of many independently randomised point sets: mean 0, variance 1, no correlation
  // between coordinates, within 4 standard errors.
  const int seeds = 4000;
  for (std::size_t row : {0u, 5u, 1000u}) {
    double m0 = 0, m1 = 0, s00 = 0, s11 = 0, s01 = 0;
    for (int seed = 0; seed < seeds; ++seed) {
      Rng rng(seed);
      const Tensor x = rqmc_normal({1001, 2}, rng);
      const double a = x(row, 0), b = x(row, 1);
      m0 += a, m1 += b, s00 += a * a, s11 += b * b, s01 += a * b;
    }
    m0 /= seeds, m1 /= seeds, s00 /= seeds, s11 /= seeds, s01 /= seeds;
    INFO("row " << row);
    const double se_mean = 1.0 / std::sqrt(seeds), se_var = std::sqrt(2.0 / seeds);
    CHECK(std::abs(m0) < 4 * se_mean);
    CHECK(std::abs(m1) < 4 * se_mean);
    CHECK(std::abs(s00 - 1.0) < 4 * se_var);
    CHECK(std::abs(s11 - 1.0) < 4 * se_var);
    CHECK(std::abs(s01) < 4 * se_mean);
  }
}

TEST_CASE("rqmc draws spread evenly: set statistics vary far less than with iid draws", "[random][qmc]") {
  // Over 40 seeds, the RMS error of the sample mean and of the mass in one quadrant, for
  // n = 2000 points in 2-D. Independent draws: 1 / sqrt(n) = 0.022 for the mean and
  // sqrt(3 / 16 n) = 0.0097 for the quadrant's share.
  const std::size_t n = 2000;
  const int seeds = 40;
  double mean_sq = 0, quad_sq = 0, iid_mean_sq = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    Rng rng(seed);
    const Tensor x = rqmc_normal({n, 2}, rng);
    const Tensor y = rng.normal({n, 2});
    double m = 0, iid_m = 0, quadrant = 0;
    for (std::size_t i = 0; i < n; ++i) {
      m += x(i, 0), iid_m += y(i, 0);
      quadrant += x(i, 0) < 0 && x(i, 1) < 0;
    }
    m /= n, iid_m /= n;
    mean_sq += m * m, iid_mean_sq += iid_m * iid_m;
    quad_sq += std::pow(quadrant / n - 0.25, 2);
  }
  const double mean_rms = std::sqrt(mean_sq / seeds), quad_rms = std::sqrt(quad_sq / seeds);
  INFO("mean RMS " << mean_rms << " (iid " << std::sqrt(iid_mean_sq / seeds) << "), quadrant RMS " << quad_rms);
  CHECK(mean_rms < 0.1 / std::sqrt(double(n)));
  CHECK(quad_rms < 0.1 * std::sqrt(3.0 / (16.0 * n)));
  CHECK(std::sqrt(iid_mean_sq / seeds) > 0.5 / std::sqrt(double(n)));  // the iid reference is as claimed
}

TEST_CASE("rqmc draws: reproducible, scaled, and refused in many dimensions", "[random][qmc]") {
  Rng a(9), b(9), c(10);
  const Tensor x = rqmc_normal({64, 3}, a, 1.0f, 2.0f), y = rqmc_normal({64, 3}, b, 1.0f, 2.0f);
  REQUIRE(std::equal(x.begin(), x.end(), y.begin()));
  const Tensor z = rqmc_normal({64, 3}, c, 1.0f, 2.0f);
  REQUIRE_FALSE(std::equal(x.begin(), x.end(), z.begin()));
  // Scaling: the same draw as the standard one, mapped to 1 + 2 N(0, 1).
  Rng d(9);
  const Tensor s = rqmc_normal({64, 3}, d);
  for (std::size_t i = 0; i < s.size(); ++i) CHECK(std::abs(x.data()[i] - (1.0f + 2.0f * s.data()[i])) < 1e-5f);
  // Trailing dimensions count as one sample: 4 x 8 = 32 values are allowed, 33 are not.
  REQUIRE_NOTHROW(rqmc_normal({5, 4, 8}, a));
  REQUIRE_THROWS_WITH(rqmc_normal({5, 33}, a), Catch::Contains("33 values") && Catch::Contains("at most 32"));
}
