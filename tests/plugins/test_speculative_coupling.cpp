// The reflection maximal coupling of speculative sampling (De Bortoli et al. 2025, Algorithm 2;
// plugins/speculative/reflection_coupling.hpp), on its own: for fixed means m_p != m_q and one
// variance, its output is distributed exactly as p = N(m_p, sd^2 I) (mean, variance, covariance
// within 4 standard errors, Kolmogorov-Smirnov along and across the means' difference), it keeps
// the draft's proposal with the maximal coupling's probability 1 - TV(p, q) = 2 Phi(-|Delta| / 2)
// (within 4 standard errors), and what it does not keep is the proposal reflected in the
// hyperplane through the midpoint orthogonal to m_p - m_q.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include <diffusion/tensor/random.hpp>

#include "speculative/reflection_coupling.hpp"

using diffusion::Rng;
using diffusion::speculative::reflection_coupling;

namespace {

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

/// The Kolmogorov-Smirnov distance between the sample and N(0, 1).
double ks_standard_normal(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const double n = double(v.size());
  double d = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double f = normal_cdf(v[i]);
    d = std::max({d, double(i + 1) / n - f, f - double(i) / n});
  }
  return d;
}

/// Kolmogorov's 0.1% critical value: P(sqrt(n) D_n > 1.949) = 0.001 under the null.
double ks_critical(std::size_t n) { return 1.949 / std::sqrt(double(n)); }

}  // namespace

TEST_CASE("The reflection coupling's output is distributed as the target Gaussian and keeps the proposal maximally often",
          "[speculative][coupling][stat]") {
  // |Delta| = |m_p - m_q| / sd from nearly equal kernels to nearly disjoint ones.
  const double scale = GENERATE(0.2, 1.0, 3.0);
  const double sd = 0.7;
  const double m_q[2] = {0.3, -1.1};
  const double dir[2] = {0.8, -0.6};  // unit
  const double m_p[2] = {m_q[0] + scale * sd * dir[0], m_q[1] + scale * sd * dir[1]};
  CAPTURE(scale);
  const std::size_t n = 100000;
  Rng rng(7);
  double sum[2] = {0, 0}, sq[2] = {0, 0}, cross = 0;
  std::size_t kept = 0;
  std::vector<double> along(n), across(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double z0 = rng.normal(), z1 = rng.normal();
    const float y[2] = {float(m_q[0] + sd * z0), float(m_q[1] + sd * z1)};
    float x[2];
    const bool accepted = reflection_coupling(y, m_q, m_p, sd, rng.uniform_double(), x, 2);
    if (accepted) {
      ++kept;
      REQUIRE((x[0] == y[0] && x[1] == y[1]));
    } else {
      // The reflection: x - m_p = (y - m_q) - 2 <y - m_q, e> e, with e = dir.
      const double u0 = y[0] - m_q[0], u1 = y[1] - m_q[1], dot = u0 * dir[0] + u1 * dir[1];
      REQUIRE_THAT(x[0], Catch::Matchers::WithinAbs(m_p[0] + u0 - 2 * dot * dir[0], 1e-5));
      REQUIRE_THAT(x[1], Catch::Matchers::WithinAbs(m_p[1] + u1 - 2 * dot * dir[1], 1e-5));
    }
    const double e0 = (x[0] - m_p[0]) / sd, e1 = (x[1] - m_p[1]) / sd;
    sum[0] += e0, sum[1] += e1, sq[0] += e0 * e0, sq[1] += e1 * e1, cross += e0 * e1;
    along[i] = e0 * dir[0] + e1 * dir[1];
    across[i] = -e0 * dir[1] + e1 * dir[0];
  }
  const double nn = double(n);
  // Standardised output eta = (x - m_p) / sd must be N(0, I): mean SE 1/sqrt(n), variance SE
  // sqrt(2 / (n - 1)), covariance SE 1/sqrt(n).
  for (int j = 0; j < 2; ++j) {
    const double mean = sum[j] / nn, var = (sq[j] - nn * mean * mean) / (nn - 1);
    CAPTURE(j, mean, var);
    REQUIRE(std::abs(mean) <= 4 / std::sqrt(nn));
    REQUIRE(std::abs(var - 1) <= 4 * std::sqrt(2 / (nn - 1)));
  }
  REQUIRE(std::abs(cross / nn) <= 4 / std::sqrt(nn));
  // Along e the rejected part is reflected, across e it is left alone: both must be N(0, 1).
  const double ks_along = ks_standard_normal(along), ks_across = ks_standard_normal(across);
  CAPTURE(ks_along, ks_across, ks_critical(n));
  REQUIRE(ks_along <= ks_critical(n));
  REQUIRE(ks_across <= ks_critical(n));
  // A maximal coupling keeps y with probability 1 - TV = 2 Phi(-|Delta| / 2).
  const double p_keep = 2 * normal_cdf(-scale / 2), frac = double(kept) / nn;
  CAPTURE(frac, p_keep);
  REQUIRE(std::abs(frac - p_keep) <= 4 * std::sqrt(p_keep * (1 - p_keep) / nn));
}

TEST_CASE("The reflection coupling keeps every proposal of an identical kernel and couples point masses",
          "[speculative][coupling]") {
  Rng rng(3);
  const double m[2] = {0.5, 2.0};
  for (int i = 0; i < 1000; ++i) {
    const float y[2] = {float(m[0] + 0.3 * rng.normal()), float(m[1] + 0.3 * rng.normal())};
    float x[2];
    REQUIRE(reflection_coupling(y, m, m, 0.3, rng.uniform_double(), x, 2));
    REQUIRE((x[0] == y[0] && x[1] == y[1]));
  }
  // sd = 0 (the deterministic last step): the proposal is the draft's mean; it is kept only when
  // the target's mean is the same point, otherwise the output is the target's mean.
  const float same[2] = {0.5f, 2.0f}, other[2] = {0.25f, 2.0f};
  const double mp[2] = {0.5, 2.0};
  float x[2];
  REQUIRE(reflection_coupling(same, same, mp, 0.0, 0.999, x, 2));
  REQUIRE((x[0] == 0.5f && x[1] == 2.0f));
  REQUIRE_FALSE(reflection_coupling(other, other, mp, 0.0, 0.0, x, 2));
  REQUIRE((x[0] == 0.5f && x[1] == 2.0f));
}
