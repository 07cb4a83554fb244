// Metrics and the exact assignment solver, against brute force and closed forms.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <functional>
#include <numeric>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "diffusion/metrics/assignment.hpp"
#include "diffusion/metrics/metrics.hpp"
#include "diffusion/metrics/sample_metrics.hpp"
#include "diffusion/metrics/stop_request.hpp"
#include "diffusion/tensor/random.hpp"

using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;
using diffusion::Error;
using diffusion::Rng;
using diffusion::Shape;
using diffusion::Tensor;

namespace {

double brute_force_assignment(const std::vector<double>& c, std::size_t n) {
  std::vector<std::size_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  double best = INFINITY;
  do {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += c[i * n + p[i]];
    best = std::min(best, s);
  } while (std::next_permutation(p.begin(), p.end()));
  return best;
}

double squared_distance(const Tensor& x, std::size_t i, const Tensor& y, std::size_t j) {
  const std::size_t d = x.size() / x.shape()[0];
  double s = 0.0;
  for (std::size_t k = 0; k < d; ++k) {
    const double t = double(x.data()[i * d + k]) - double(y.data()[j * d + k]);
    s += t * t;
  }
  return s;
}

double brute_force_w2(const Tensor& x, const Tensor& y) {
  const std::size_t n = x.shape()[0];
  std::vector<double> c(n * n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) c[i * n + j] = squared_distance(x, i, y, j);
  return std::sqrt(brute_force_assignment(c, n) / double(n));
}

// The assignment is a permutation, its cost is what it claims, and the potentials are a
// feasible dual whose value equals that cost: together a proof of optimality.
void check_certificate(const std::vector<double>& c, std::size_t n,
                       const diffusion::Assignment& a) {
  REQUIRE(a.col_of_row.size() == n);
  std::vector<bool> used(n, false);
  double cost = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(a.col_of_row[i] < n);
    REQUIRE_FALSE(used[a.col_of_row[i]]);
    used[a.col_of_row[i]] = true;
    cost += c[i * n + a.col_of_row[i]];
  }
  for (double v : c) scale = std::max(scale, std::abs(v));
  const double tol = 1e-12 * (1.0 + scale);
  REQUIRE_THAT(a.cost, WithinAbs(cost, tol * n));
  double dual = 0.0;
  double worst_violation = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    dual += a.row_potential[i] + a.col_potential[i];
    for (std::size_t j = 0; j < n; ++j)
      worst_violation =
          std::max(worst_violation, a.row_potential[i] + a.col_potential[j] - c[i * n + j]);
  }
  CHECK(worst_violation <= tol);
  REQUIRE_THAT(dual, WithinAbs(cost, tol * n));
}

std::vector<double> random_costs(std::size_t n, Rng& rng, bool ties) {
  std::vector<double> c(n * n);
  // Small integers make many equal costs and many optimal assignments: the hard case for
  // tie handling. Continuous costs exercise the generic path.
  for (auto& v : c) v = ties ? double(rng.integer(4)) : rng.uniform_double() * 10.0 - 3.0;
  return c;
}

Tensor shifted(const Tensor& x, const std::vector<float>& v) {
  Tensor y = x;
  const std::size_t d = v.size();
  for (std::size_t k = 0; k < y.size(); ++k) y.data()[k] += v[k % d];
  return y;
}

}  // namespace

TEST_CASE("solve_assignment matches brute force on small problems", "[metrics][assignment]") {
  const bool ties = GENERATE(false, true);
  const std::size_t n = GENERATE(2, 3, 5, 7);
  const std::uint64_t seed = GENERATE(1, 2, 3, 4, 5);
  CAPTURE(ties, n, seed);
  Rng rng(seed);
  const auto c = random_costs(n, rng, ties);
  const auto a = diffusion::solve_assignment(c, n);
  REQUIRE_THAT(a.cost, WithinAbs(brute_force_assignment(c, n), 1e-9));
  check_certificate(c, n, a);
}

TEST_CASE("solve_assignment is certified optimal on larger problems", "[metrics][assignment]") {
  const bool ties = GENERATE(false, true);
  const std::size_t n = GENERATE(20, 150, 400);
  CAPTURE(ties, n);
  Rng rng(42 + n);
  const auto c = random_costs(n, rng, ties);
  check_certificate(c, n, diffusion::solve_assignment(c, n));
}

TEST_CASE("solve_assignment on structured costs", "[metrics][assignment]") {
  SECTION("all equal") {
    const std::vector<double> c(36, 2.5);
    const auto a = diffusion::solve_assignment(c, 6);
    REQUIRE(a.cost == 15.0);
    check_certificate(c, 6, a);
  }
  SECTION("a planted permutation with zero cost") {
    const std::size_t n = 50;
    Rng rng(7);
    std::vector<std::size_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    for (std::size_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng.integer(i + 1)]);
    std::vector<double> c(n * n);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) c[i * n + j] = j == perm[i] ? 0.0 : 1.0 + rng.uniform();
    const auto a = diffusion::solve_assignment(c, n);
    REQUIRE(a.cost == 0.0);
    REQUIRE(a.col_of_row == perm);
  }
  SECTION("n = 0 and n = 1") {
    REQUIRE(diffusion::solve_assignment(std::vector<double>{}, 0).col_of_row.empty());
    const auto a = diffusion::solve_assignment(std::vector<double>{3.5}, 1);
    REQUIRE(a.cost == 3.5);
    REQUIRE(a.col_of_row == std::vector<std::size_t>{0});
  }
  SECTION("bad input") {
    REQUIRE_THROWS_AS(diffusion::solve_assignment(std::vector<double>(5), 2), Error);
    std::vector<double> c{1.0, 2.0, NAN, 0.0};
    REQUIRE_THROWS_AS(diffusion::solve_assignment(c, 2), Error);
    c[2] = INFINITY;
    REQUIRE_THROWS_AS(diffusion::solve_assignment(c, 2), Error);
  }
}

TEST_CASE("solve_assignment_sqeuclidean is certified optimal", "[metrics][assignment]") {
  // dim > 3 takes the matrix path, dim >= 32 with dgemm.
  const std::size_t n = GENERATE(1, 2, 9, 300, 1300);
  const std::size_t dim = GENERATE(1, 2, 3, 5, 40);
  CAPTURE(n, dim);
  if (n == 1300 && dim > 3) return;  // the same code as n = 300 there, and slow to certify
  Rng rng(n * 100 + dim);
  std::vector<double> x(n * dim), y(n * dim);
  // Different shapes, offsets and spreads: a Gaussian against a shifted uniform box.
  for (auto& t : x) t = rng.normal();
  for (auto& t : y) t = 3.0 * rng.uniform_double() + 0.5;
  std::vector<double> c(n * n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (std::size_t k = 0; k < dim; ++k) {
        const double t = x[i * dim + k] - y[j * dim + k];
        s += t * t;
      }
      c[i * n + j] = s;
    }
  const auto a = diffusion::solve_assignment_sqeuclidean(x.data(), y.data(), n, dim);
  check_certificate(c, n, a);
  if (n <= 300) REQUIRE_THAT(a.cost, WithinRel(diffusion::solve_assignment(c, n).cost, 1e-12));
}

TEST_CASE("solve_assignment_sqeuclidean rejects bad input", "[metrics][assignment]") {
  std::vector<double> x{0.0, 1.0}, y{1.0, NAN};
  REQUIRE_THROWS_AS(diffusion::solve_assignment_sqeuclidean(x.data(), y.data(), 2, 1), Error);
  REQUIRE_THROWS_AS(diffusion::solve_assignment_sqeuclidean(x.data(), x.data(), 2, 0), Error);
  REQUIRE(diffusion::solve_assignment_sqeuclidean(x.data(), x.data(), 0, 1).col_of_row.empty());
}

TEST_CASE("w2_exact of a shifted copy is the shift length", "[metrics][w2]") {
  const std::size_t d = GENERATE(1, 2, 5, 40);  // 40 takes the dgemm cost path
  CAPTURE(d);
  Rng rng(11);
  const Tensor x = rng.normal(Shape{300, d});
  std::vector<float> v(d);
  for (auto& t : v) t = rng.normal() * 0.7f;
  double norm = 0.0;
  for (float t : v) norm += double(t) * t;
  REQUIRE_THAT(diffusion::w2_exact(x, shifted(x, v)), WithinRel(std::sqrt(norm), 1e-5));
  REQUIRE_THAT(diffusion::w2_exact(x, x), WithinAbs(0.0, 1e-6));
}

TEST_CASE("w2_exact matches brute force over all permutations", "[metrics][w2]") {
  const std::size_t n = GENERATE(1, 2, 4, 6, 7);
  const std::size_t d = GENERATE(1, 2, 3, 33);
  const std::uint64_t seed = GENERATE(0, 1, 2, 3);
  CAPTURE(n, d, seed);
  Rng rng(seed);
  const Tensor x = rng.normal(Shape{n, d});
  const Tensor y = rng.normal(Shape{n, d}, 0.5f, 2.0f);
  REQUIRE_THAT(diffusion::w2_exact(x, y), WithinAbs(brute_force_w2(x, y), 1e-9));
}

TEST_CASE("w2_exact is symmetric and 1-D W2 matches sorted samples", "[metrics][w2]") {
  Rng rng(5);
  const Tensor x = rng.normal(Shape{500, 3});
  const Tensor y = rng.uniform(Shape{500, 3}, -2.0f, 2.0f);
  REQUIRE_THAT(diffusion::w2_exact(x, y), WithinRel(diffusion::w2_exact(y, x), 1e-12));

  const Tensor a = rng.normal(Shape{800});
  const Tensor b = rng.uniform(Shape{800, 1}, -1.0f, 3.0f);
  std::vector<double> sa(a.begin(), a.end()), sb(b.begin(), b.end());
  std::sort(sa.begin(), sa.end());
  std::sort(sb.begin(), sb.end());
  double s = 0.0;
  for (std::size_t i = 0; i < sa.size(); ++i) s += (sa[i] - sb[i]) * (sa[i] - sb[i]);
  Tensor a2 = a;
  a2.reshape({800, 1});
  REQUIRE_THAT(diffusion::w2_exact(a2, b), WithinRel(std::sqrt(s / 800.0), 1e-12));
}

TEST_CASE("w2_exact with duplicated points and tied costs", "[metrics][w2]") {
  Rng rng(31);
  SECTION("a set against itself, every point repeated") {
    Tensor x = Tensor::from_shape({1400, 2});
    for (std::size_t i = 0; i < 1400; ++i) x(i, 0) = float(i % 70), x(i, 1) = float(i % 7);
    REQUIRE(diffusion::w2_exact(x, x) == 0.0);
  }
  SECTION("a single repeated point against a sample: the mean squared distance to it") {
    const Tensor y = rng.normal(Shape{50, 3});
    Tensor x = Tensor::from_shape({50, 3});
    for (std::size_t i = 0; i < 50; ++i) x(i, 0) = 1.0f, x(i, 1) = -2.0f, x(i, 2) = 0.5f;
    double s = 0.0;
    for (std::size_t i = 0; i < 50; ++i) s += squared_distance(x, i, y, i);
    REQUIRE_THAT(diffusion::w2_exact(x, y), WithinRel(std::sqrt(s / 50.0), 1e-12));
  }
  SECTION("integer grids: many equal costs, certified on the full matrix") {
    const std::size_t n = GENERATE(200, 1300);
    CAPTURE(n);
    std::vector<double> x(2 * n), y(2 * n);
    for (auto& t : x) t = double(rng.integer(6));
    for (auto& t : y) t = double(rng.integer(4));
    std::vector<double> c(n * n);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) {
        const double a = x[2 * i] - y[2 * j], b = x[2 * i + 1] - y[2 * j + 1];
        c[i * n + j] = a * a + b * b;
      }
    check_certificate(c, n, diffusion::solve_assignment_sqeuclidean(x.data(), y.data(), n, 2));
  }
}

TEST_CASE("w2_exact rejects mismatched inputs", "[metrics][w2]") {
  Rng rng(0);
  REQUIRE_THROWS_AS(diffusion::w2_exact(rng.normal(Shape{5, 2}), rng.normal(Shape{6, 2})), Error);
  REQUIRE_THROWS_AS(diffusion::w2_exact(rng.normal(Shape{5, 2}), rng.normal(Shape{5, 3})), Error);
  REQUIRE_THROWS_AS(diffusion::w2_exact(Tensor::from_shape({0, 2}), Tensor::from_shape({0, 2})),
                    Error);
  REQUIRE_THROWS_AS(diffusion::w2_exact(diffusion::scalar(1.0f), diffusion::scalar(1.0f)), Error);
  try {
    diffusion::w2_exact(rng.normal(Shape{5, 2}), rng.normal(Shape{6, 2}));
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("(5, 2)") != std::string::npos);
    CHECK(msg.find("(6, 2)") != std::string::npos);
  }
}

TEST_CASE("sliced_w2 of a shifted copy is |v| / sqrt(D)", "[metrics][sliced_w2]") {
  const std::size_t d = GENERATE(2, 3, 10);
  CAPTURE(d);
  Rng rng(3);
  const Tensor x = rng.normal(Shape{400, d});
  std::vector<float> v(d);
  for (auto& t : v) t = rng.normal();
  double norm2 = 0.0;
  for (float t : v) norm2 += double(t) * t;
  const std::size_t p = 4000;
  Rng proj(17);
  const double sw = diffusion::sliced_w2(x, shifted(x, v), p, proj);
  // (theta.v)^2 / |v|^2 ~ Beta(1/2, (D-1)/2): mean 1/D, variance 2(D-1) / (D^2 (D+2)).
  const double dd = double(d);
  const double se = norm2 * std::sqrt(2.0 * (dd - 1.0) / (dd * dd * (dd + 2.0)) / double(p));
  CAPTURE(sw * sw, norm2 / dd, se);
  REQUIRE_THAT(sw * sw, WithinAbs(norm2 / dd, 4.0 * se));
}

TEST_CASE("sliced_w2 basics", "[metrics][sliced_w2]") {
  Rng rng(8);
  const Tensor x = rng.normal(Shape{200, 2});
  const Tensor y = rng.normal(Shape{200, 2}, 1.0f);
  SECTION("zero between a set and itself") {
    Rng proj(1);
    REQUIRE(diffusion::sliced_w2(x, x, 50, proj) == 0.0);
  }
  SECTION("deterministic for a seed, and it consumes the generator") {
    Rng a(9), b(9);
    const double first = diffusion::sliced_w2(x, y, 64, a);
    REQUIRE(first == diffusion::sliced_w2(x, y, 64, b));
    REQUIRE(first != diffusion::sliced_w2(x, y, 64, a));
  }
  SECTION("equals the exact W2 in one dimension") {
    const Tensor a = rng.normal(Shape{300, 1});
    const Tensor b = rng.uniform(Shape{300, 1});
    Rng proj(2);
    REQUIRE_THAT(diffusion::sliced_w2(a, b, 3, proj),
                 WithinRel(diffusion::w2_exact(a, b), 1e-12));
  }
  SECTION("unequal sizes use exact quantile matching") {
    // {0, 2} against {0, 0, 2, 2}: the same measure.
    Tensor a = Tensor::from_shape({2, 1}), b = Tensor::from_shape({4, 1});
    a(0, 0) = 0, a(1, 0) = 2;
    b(0, 0) = 2, b(1, 0) = 0, b(2, 0) = 0, b(3, 0) = 2;
    Rng proj(3);
    REQUIRE_THAT(diffusion::sliced_w2(a, b, 5, proj), WithinAbs(0.0, 1e-15));
    // Replicating each set to a common size N*M leaves both measures unchanged.
    const std::size_t n = 7, m = 5;
    const Tensor c = rng.normal(Shape{n, 1}), e = rng.uniform(Shape{m, 1});
    Tensor cr = Tensor::from_shape({n * m, 1}), er = Tensor::from_shape({n * m, 1});
    for (std::size_t k = 0; k < n * m; ++k) cr(k, 0) = c(k % n, 0), er(k, 0) = e(k % m, 0);
    Rng p1(4);
    REQUIRE_THAT(diffusion::sliced_w2(c, e, 2, p1), WithinRel(diffusion::w2_exact(cr, er), 1e-12));
  }
  SECTION("bad input") {
    Rng proj(0);
    REQUIRE_THROWS_AS(diffusion::sliced_w2(x, y, 0, proj), Error);
    REQUIRE_THROWS_AS(diffusion::sliced_w2(x, rng.normal(Shape{200, 3}), 10, proj), Error);
  }
}

namespace {
// E k(A, B) for A - B ~ N(m, tau^2 I_D), k = exp(-|.|^2 / (2 s^2)):
// (s^2 / (s^2 + tau^2))^(D/2) exp(-|m|^2 / (2 (s^2 + tau^2))).
double gaussian_kernel_mean(double s, double tau2, double m2, double d) {
  return std::pow(s * s / (s * s + tau2), d / 2.0) * std::exp(-m2 / (2.0 * (s * s + tau2)));
}
}  // namespace

TEST_CASE("mmd_rbf is unbiased for Gaussians", "[metrics][mmd]") {
  // X ~ N(0, I), Y ~ N(mu, I) in 2-D: MMD^2 = sum_s 2 E k(X, X') - 2 E k(X, Y), both closed form;
  // the mean of independent replicates must be within 4 standard errors of it.
  const double shift = GENERATE(0.0, 0.5);
  CAPTURE(shift);
  const std::vector<double> bw{0.5, 1.0, 2.0};
  double expected = 0.0;
  for (double s : bw)
    expected += 2.0 * gaussian_kernel_mean(s, 2.0, 0.0, 2.0) -
                2.0 * gaussian_kernel_mean(s, 2.0, shift * shift, 2.0);
  Rng rng(100);
  const int reps = 40;
  std::vector<double> vals;
  for (int r = 0; r < reps; ++r) {
    const Tensor x = rng.normal(Shape{150, 2});
    Tensor y = rng.normal(Shape{150, 2});
    for (std::size_t i = 0; i < 150; ++i) y(i, 0) += float(shift);
    vals.push_back(diffusion::mmd_rbf(x, y, bw));
  }
  double mean = 0.0, var = 0.0;
  for (double v : vals) mean += v / reps;
  for (double v : vals) var += (v - mean) * (v - mean) / (reps - 1);
  CAPTURE(mean, expected, std::sqrt(var / reps));
  REQUIRE_THAT(mean, WithinAbs(expected, 4.0 * std::sqrt(var / reps)));
  if (shift == 0.0)
    for (double v : vals) CHECK(std::abs(v) < 0.05);  // each one small, not only the mean
}

TEST_CASE("mmd_rbf of a set against itself and under shifts", "[metrics][mmd]") {
  Rng rng(21);
  const Tensor x = rng.normal(Shape{300, 2});
  const auto& bw = diffusion::default_mmd_bandwidths();
  // Against itself: 2 (mean off-diagonal kernel - S) / N, slightly negative.
  const double self = diffusion::mmd_rbf(x, x, bw);
  CHECK(self <= 0.0);
  CHECK(self >= -2.0 * double(bw.size()) / 300.0);
  double previous = self;
  for (float s : {0.1f, 0.3f, 0.6f, 1.0f, 2.0f}) {
    CAPTURE(s);
    const double m = diffusion::mmd_rbf(x, shifted(x, {s, -s}), bw);
    CHECK(m > previous);
    previous = m;
  }
  REQUIRE_THROWS_AS(diffusion::mmd_rbf(x, rng.normal(Shape{1, 2}), bw), Error);
  REQUIRE_THROWS_AS(diffusion::mmd_rbf(x, x, {}), Error);
  REQUIRE_THROWS_AS(diffusion::mmd_rbf(x, x, {1.0, 0.0}), Error);
  REQUIRE_THROWS_AS(diffusion::mmd_rbf(x, x, {-1.0}), Error);
}

TEST_CASE("median_heuristic_bandwidth", "[metrics][mmd]") {
  Tensor a = Tensor::from_shape({2, 1});
  a(0, 0) = 0, a(1, 0) = 1;
  // Pooled {0, 1, 0, 1}: distances 0, 0, 1, 1, 1, 1; the (upper) median is 1.
  REQUIRE(diffusion::median_heuristic_bandwidth(a, a) == 1.0);
  // Standard normal in 2-D: |X - X'| ~ sqrt(2) Rayleigh(1), median sqrt(2 * 2 ln 2) = 1.665.
  Rng rng(4);
  const double m =
      diffusion::median_heuristic_bandwidth(rng.normal(Shape{3000, 2}), rng.normal(Shape{2000, 2}));
  REQUIRE_THAT(m, WithinRel(std::sqrt(4.0 * std::log(2.0)), 0.03));
  const Tensor zeros = diffusion::zeros({4, 2});
  REQUIRE(diffusion::median_heuristic_bandwidth(zeros, zeros) == 1.0);
}

TEST_CASE("energy_distance closed forms", "[metrics][energy]") {
  Rng rng(12);
  SECTION("zero for identical sets, positive and symmetric otherwise") {
    const Tensor x = rng.normal(Shape{400, 3});
    REQUIRE_THAT(diffusion::energy_distance(x, x), WithinAbs(0.0, 1e-12));
    const Tensor y = shifted(x, {0.5f, 0.0f, 0.0f});
    const double e = diffusion::energy_distance(x, y);
    CHECK(e > 0.0);
    REQUIRE_THAT(diffusion::energy_distance(y, x), WithinRel(e, 1e-12));
  }
  SECTION("point masses: 2 |a - b|") {
    const std::size_t d = GENERATE(1, 3);
    Tensor x = Tensor::from_shape({5, d}), y = Tensor::from_shape({8, d});
    std::vector<float> a(d), b(d);
    for (std::size_t k = 0; k < d; ++k) a[k] = rng.normal(), b[k] = rng.normal();
    double dist = 0.0;
    for (std::size_t k = 0; k < d; ++k) dist += double(a[k] - b[k]) * (a[k] - b[k]);
    for (std::size_t i = 0; i < 5; ++i)
      for (std::size_t k = 0; k < d; ++k) x(i, k) = a[k];
    for (std::size_t i = 0; i < 8; ++i)
      for (std::size_t k = 0; k < d; ++k) y(i, k) = b[k];
    REQUIRE_THAT(diffusion::energy_distance(x, y), WithinRel(2.0 * std::sqrt(dist), 1e-6));
  }
  SECTION("V-statistic expectation for 1-D Gaussians") {
    // X ~ N(0, 1), Y ~ N(m, 1): X - Y ~ N(-m, s^2), s^2 = 2, and for Z ~ N(m, s^2)
    // E|Z| = s sqrt(2/pi) exp(-m^2 / (2 s^2)) + m erf(m / (s sqrt 2)); E|X - X'| = 2/sqrt(pi).
    // The V-statistic's zero diagonal scales the within terms by (1 - 1/N).
    const double m = 0.8, s = std::sqrt(2.0);
    const double exy = s * std::sqrt(2.0 / M_PI) * std::exp(-m * m / (2.0 * s * s)) +
                       m * std::erf(m / (s * std::sqrt(2.0)));
    const double exx = 2.0 / std::sqrt(M_PI);
    const std::size_t n = 100;
    const double expected = 2.0 * exy - 2.0 * (1.0 - 1.0 / double(n)) * exx;
    const int reps = 40;
    std::vector<double> vals;
    for (int r = 0; r < reps; ++r) {
      const Tensor x = rng.normal(Shape{n, 1});
      const Tensor y = rng.normal(Shape{n, 1}, float(m));
      vals.push_back(diffusion::energy_distance(x, y));
    }
    double mean = 0.0, var = 0.0;
    for (double v : vals) mean += v / reps;
    for (double v : vals) var += (v - mean) * (v - mean) / (reps - 1);
    CAPTURE(mean, expected);
    REQUIRE_THAT(mean, WithinAbs(expected, 4.0 * std::sqrt(var / reps)));
  }
}

// Timing of the exact W2 at the sizes the runner uses: `diffusion_tests "[.benchmark]" -s`.
TEST_CASE("w2_exact timing", "[.][benchmark][metrics][w2]") {
  for (std::size_t n : {2000, 5000}) {
    Rng rng(n);
    const Tensor x = rng.normal(Shape{n, 2});
    for (int mismatch = 0; mismatch < 2; ++mismatch) {
      // Two samples of one Gaussian (a good model), or a Gaussian against a uniform square (a
      // poor one: mass has to move across the set).
      const Tensor y = mismatch ? rng.uniform(Shape{n, 2}, -2.0f, 2.0f) : rng.normal(Shape{n, 2});
      const auto t0 = std::chrono::steady_clock::now();
      const double w = diffusion::w2_exact(x, y);
      const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
      WARN("w2_exact N=" << n << " D=2 " << (mismatch ? "gauss-vs-uniform" : "gauss-vs-gauss")
                         << ": W2 " << w << " in " << dt.count() << " s");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Sizes a metric cannot finish, and stop requests (issue: nothing lost at the edges, case 5)

TEST_CASE("metric sizes: exact W2 refuses more points than its limit and names sliced_w2", "[metrics][w2][limits]") {
  const diffusion::ExactW2Metric w2(100);
  CHECK_NOTHROW(w2.check_sizes(100, 100, 2));
  CHECK_THROWS_WITH(w2.check_sizes(101, 101, 2),
                    Catch::Contains("w2 (exact W2) of 101 points would not finish") &&
                        Catch::Contains("limited to 100 points; use sliced_w2 for more points"));
  CHECK_THROWS_WITH(w2.check_sizes(50, 60, 2), Catch::Contains("use sliced_w2 for unequal sizes"));
  // The default limit: the sizes the shipped experiments use pass, ten million do not.
  const diffusion::ExactW2Metric standard;
  CHECK_NOTHROW(standard.check_sizes(10000, 10000, 2));
  CHECK_THROWS_WITH(standard.check_sizes(10000000, 10000000, 2), Catch::Contains("sliced_w2"));
  // Sliced W2 takes any size.
  CHECK_NOTHROW(diffusion::SlicedW2Metric(16).check_sizes(10000000, 10000000, 2));
}

TEST_CASE("metric sizes: mmd needs two points per set, energy one, both have a limit", "[metrics][mmd][limits]") {
  const diffusion::MmdMetric mmd(diffusion::default_mmd_bandwidths(), 1000);
  CHECK_THROWS_WITH(mmd.check_sizes(1, 1, 2), "mmd needs at least 2 samples and 2 reference points, got 1 and 1");
  CHECK_THROWS_WITH(mmd.check_sizes(5, 1, 2), Catch::Contains("at least 2"));
  CHECK_NOTHROW(mmd.check_sizes(2, 2, 2));
  CHECK_THROWS_WITH(mmd.check_sizes(1001, 1001, 2), Catch::Contains("limited to 1000 points; use sliced_w2"));
  // What check_sizes refuses, compute refuses too: the check says it before training.
  Rng rng(3);
  CHECK_THROWS_AS(mmd.compute(rng.normal(Shape{1, 2}), rng.normal(Shape{1, 2}), rng), Error);
  const diffusion::EnergyMetric energy(1000);
  CHECK_NOTHROW(energy.check_sizes(1, 1, 2));
  CHECK_THROWS_WITH(energy.check_sizes(1001, 1001, 2), Catch::Contains("energy of 1001 points"));
}

TEST_CASE("metric sizes: the memory each metric says it needs", "[metrics][limits]") {
  const diffusion::ExactW2Metric w2;
  // Up to dim 3 costs are computed on the fly: linear in n.
  CHECK(w2.memory_bytes(2000, 2000, 2) == 2 * w2.memory_bytes(1000, 1000, 2));
  CHECK(w2.memory_bytes(1000, 1000, 2) < 1000u * 200);
  // Above dim 3 the n x n matrix, while it fits in 1 GiB.
  CHECK(w2.memory_bytes(1000, 1000, 8) >= 1000u * 1000 * 8);
  CHECK(w2.memory_bytes(20000, 20000, 8) < std::size_t(20000) * 20000 * 8);
  const diffusion::SlicedW2Metric sliced(512);
  CHECK(sliced.memory_bytes(1000, 1000, 2) == 2000u * 3 * 8);
}

namespace {

/// Runs `metric` with a stop requested `after` into it; the seconds from the request to the
/// MetricStopped it throws (a metric that ends without throwing fails the test).
double seconds_to_stop(const std::function<void()>& metric, std::chrono::milliseconds after) {
  volatile std::sig_atomic_t flag = 0;
  const diffusion::StopRequestScope scope(&flag);
  std::chrono::steady_clock::time_point asked;
  std::thread requester([&] {
    std::this_thread::sleep_for(after);
    asked = std::chrono::steady_clock::now();
    flag = 1;
  });
  bool stopped = false;
  try {
    metric();
  } catch (const diffusion::MetricStopped&) {
    stopped = true;
  }
  const auto end = std::chrono::steady_clock::now();
  requester.join();
  REQUIRE(stopped);
  return std::chrono::duration<double>(end - asked).count();
}

}  // namespace

TEST_CASE("stop requests: each long metric ends within a fraction of a second", "[metrics][limits][stop]") {
  // Each of these runs for seconds to minutes in a release build (exact W2 of 5000 Gaussian
  // points against a uniform square ~5 s, MMD of 20000 ~20 s, the energy distance of 20000 ~4 s,
  // sliced W2 of 200000 with 512 projections ~30 s); the stop comes 100 ms in.
  Rng rng(7);
  const auto after = std::chrono::milliseconds(100);
  const Tensor x5 = rng.normal(Shape{5000, 2}), y5 = rng.uniform(Shape{5000, 2}, -2.0f, 2.0f);
  const Tensor x20 = rng.normal(Shape{20000, 2}), y20 = rng.uniform(Shape{20000, 2}, -2.0f, 2.0f);
  const Tensor x200 = rng.normal(Shape{200000, 2}), y200 = rng.uniform(Shape{200000, 2}, -2.0f, 2.0f);
  // "Within a second" on a loaded machine or under a sanitizer: the loops poll every O(n) step.
  CHECK(seconds_to_stop([&] { diffusion::w2_exact(x5, y5); }, after) < 1.0);
  CHECK(seconds_to_stop([&] { diffusion::mmd_rbf(x20, y20, diffusion::default_mmd_bandwidths()); }, after) < 1.0);
  CHECK(seconds_to_stop([&] { diffusion::energy_distance(x20, y20); }, after) < 1.0);
  CHECK(seconds_to_stop([&] { diffusion::sliced_w2(x200, y200, 512, rng); }, after) < 1.0);
}

TEST_CASE("stop requests: only a scope's flag is polled, and only while the scope lives", "[metrics][limits][stop]") {
  Rng rng(8);
  const Tensor x = rng.normal(Shape{50, 2}), y = rng.normal(Shape{50, 2});
  const double w = diffusion::w2_exact(x, y);
  volatile std::sig_atomic_t flag = 1;
  {
    const diffusion::StopRequestScope scope(&flag);
    CHECK_THROWS_AS(diffusion::w2_exact(x, y), diffusion::MetricStopped);
    {
      const diffusion::StopRequestScope inner(nullptr);  // an inner scope without a flag: never stops
      CHECK(diffusion::w2_exact(x, y) == w);
    }
    CHECK_THROWS_AS(diffusion::energy_distance(x, y), diffusion::MetricStopped);
  }
  // Outside any scope (a test, the flow-matching coupling) nothing is polled.
  CHECK(diffusion::w2_exact(x, y) == w);
}
