// The 2-D toy data sets: shapes, labels, determinism, exact geometry at zero noise, statistics.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <algorithm>

#include <diffusion/metrics/metrics.hpp>

#include "toy_data/toy_datasets.hpp"

using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;
using diffusion::Error;
using diffusion::Rng;
using diffusion::Tensor;
namespace toy = diffusion::toy;

namespace {

constexpr double kPi = 3.14159265358979323846;

struct Named {
  std::string name;
  int classes;  // 0: no integer labels
  std::function<Tensor(std::size_t, Rng&, std::vector<int>*)> draw;
};

std::vector<Named> all_datasets() {
  return {
      {"moons", 2,
       [](std::size_t n, Rng& r, std::vector<int>* l) { return toy::moons(n, 0.1, r, l); }},
      {"circles", 2,
       [](std::size_t n, Rng& r, std::vector<int>* l) { return toy::circles(n, 0.05, 0.5, r, l); }},
      {"swiss_roll", 0,
       [](std::size_t n, Rng& r, std::vector<int>*) { return toy::swiss_roll(n, 0.1, r); }},
      {"eight_gaussians", 8,
       [](std::size_t n, Rng& r, std::vector<int>* l) {
         return toy::eight_gaussians(n, 0.1, 2.0, r, l);
       }},
      {"checkerboard", 8,
       [](std::size_t n, Rng& r, std::vector<int>* l) { return toy::checkerboard(n, r, l); }},
      {"pinwheel", 5,
       [](std::size_t n, Rng& r, std::vector<int>* l) {
         return toy::pinwheel(n, 0.3, 0.1, 5, 0.25, r, l);
       }},
  };
}

double distance(const Tensor& x, std::size_t i, double cx, double cy) {
  return std::hypot(double(x(i, 0)) - cx, double(x(i, 1)) - cy);
}

// The label frequencies are multinomial: each within 4 standard errors of 1/classes.
void check_uniform_labels(const std::vector<int>& labels, int classes) {
  const double n = double(labels.size()), p = 1.0 / classes;
  std::vector<double> count(classes, 0.0);
  for (int l : labels) count[l] += 1.0;
  for (int k = 0; k < classes; ++k) {
    CAPTURE(k, count[k]);
    CHECK_THAT(count[k] / n, WithinAbs(p, 4.0 * std::sqrt(p * (1.0 - p) / n)));
  }
}

}  // namespace

TEST_CASE("toy data sets: shapes, labels and determinism", "[plugins][toy_data]") {
  for (const auto& ds : all_datasets()) {
    const std::size_t n = GENERATE(0, 1, 777);
    CAPTURE(ds.name, n);
    Rng a(5), b(5), c(6);
    // Stale contents must be replaced, not appended to (swiss_roll has no integer labels).
    std::vector<int> la, lb;
    if (ds.classes > 0) la = {1, 2, 3};
    const Tensor xa = ds.draw(n, a, &la);
    REQUIRE(xa.dimension() == 2);
    REQUIRE(xa.shape()[0] == n);
    REQUIRE(xa.shape()[1] == 2);
    for (float v : xa) REQUIRE(std::isfinite(v));
    if (ds.classes > 0) {
      REQUIRE(la.size() == n);
      for (int l : la) REQUIRE((l >= 0 && l < ds.classes));
    }
    const Tensor xb = ds.draw(n, b, &lb);
    REQUIRE(xa == xb);
    REQUIRE(la == lb);
    if (n > 1) REQUIRE(xa != ds.draw(n, c, nullptr));
  }
}

TEST_CASE("moons: two draws are as close as sklearn's (evenly spread, equal halves)", "[plugins][toy_data]") {
  // sklearn's make_moons(2000, noise=0.05) draws are ~0.028 apart in exact W2; i.i.d. arc
  // positions and a random split would put them ~0.05-0.1 apart.
  Rng a(1), b(2);
  const double w2 = diffusion::w2_exact(toy::moons(2000, 0.05, a), toy::moons(2000, 0.05, b));
  CAPTURE(w2);
  REQUIRE(w2 < 0.04);
}

TEST_CASE("moons: exact arcs at zero noise, mean (1/2, 1/4)", "[plugins][toy_data]") {
  Rng rng(1);
  std::vector<int> labels;
  const Tensor x = toy::moons(2000, 0.0, rng, &labels);
  for (std::size_t i = 0; i < 2000; ++i) {
    CAPTURE(i, labels[i]);
    if (labels[i] == 0) {
      REQUIRE_THAT(distance(x, i, 0.0, 0.0), WithinAbs(1.0, 1e-6));
      REQUIRE(x(i, 1) >= 0.0f);
    } else {
      REQUIRE_THAT(distance(x, i, 1.0, 0.5), WithinAbs(1.0, 1e-6));
      REQUIRE(x(i, 1) <= 0.5f);
    }
  }
  check_uniform_labels(labels, 2);
  REQUIRE(std::count(labels.begin(), labels.end(), 0) == 1000);  // exact halves, as sklearn

  const std::size_t n = 20000;
  const Tensor y = toy::moons(n, 0.1, rng, nullptr);
  for (std::size_t k = 0; k < 2; ++k) {
    double mean = 0.0, sq = 0.0;
    for (std::size_t i = 0; i < n; ++i) mean += y(i, k) / double(n);
    for (std::size_t i = 0; i < n; ++i) sq += (y(i, k) - mean) * (y(i, k) - mean) / (n - 1.0);
    CAPTURE(k, mean);
    CHECK_THAT(mean, WithinAbs(k == 0 ? 0.5 : 0.25, 4.0 * std::sqrt(sq / n)));
  }
}

TEST_CASE("circles and swiss roll: exact geometry at zero noise", "[plugins][toy_data]") {
  Rng rng(2);
  std::vector<int> labels;
  const Tensor c = toy::circles(1000, 0.0, 0.3, rng, &labels);
  for (std::size_t i = 0; i < 1000; ++i)
    REQUIRE_THAT(distance(c, i, 0.0, 0.0), WithinAbs(labels[i] == 0 ? 1.0 : 0.3, 1e-6));
  check_uniform_labels(labels, 2);

  std::vector<float> u;
  const Tensor s = toy::swiss_roll(1000, 0.0, rng, &u);
  REQUIRE(u.size() == 1000);
  for (std::size_t i = 0; i < 1000; ++i) {
    REQUIRE((u[i] >= 0.0f && u[i] <= 1.0f));
    const double t = 1.5 * kPi * (1.0 + 2.0 * u[i]);
    CAPTURE(i, u[i]);
    // u is stored in float: compare through the radius, which moves slowly with t.
    REQUIRE_THAT(distance(s, i, 0.0, 0.0), WithinAbs(t / 5.0, 1e-5));
    REQUIRE((distance(s, i, 0.0, 0.0) >= 0.94 && distance(s, i, 0.0, 0.0) <= 2.83));
  }
}

TEST_CASE("eight_gaussians: uniform mixture, modes at the right centres", "[plugins][toy_data]") {
  Rng rng(3);
  const std::size_t n = 16000;
  const double stddev = 0.1, radius = 2.0;
  std::vector<int> labels;
  const Tensor x = toy::eight_gaussians(n, stddev, radius, rng, &labels);
  check_uniform_labels(labels, 8);
  std::vector<double> sx(8, 0.0), sy(8, 0.0), count(8, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    sx[labels[i]] += x(i, 0), sy[labels[i]] += x(i, 1), count[labels[i]] += 1.0;
    // 7 standard deviations: the nearest other centre is 1.53 away.
    const double a = labels[i] * kPi / 4;
    REQUIRE(distance(x, i, radius * std::cos(a), radius * std::sin(a)) < 7 * stddev);
  }
  for (int k = 0; k < 8; ++k) {
    CAPTURE(k);
    const double se = stddev / std::sqrt(count[k]);
    CHECK_THAT(sx[k] / count[k], WithinAbs(radius * std::cos(k * kPi / 4), 4 * se));
    CHECK_THAT(sy[k] / count[k], WithinAbs(radius * std::sin(k * kPi / 4), 4 * se));
  }
}

TEST_CASE("eight_gaussians: the closed-form log density integrates to one and is the mixture's", "[plugins][toy_data]") {
  const double stddev = 0.3, radius = 2.0;
  // A Riemann sum over [-4, 4]^2 (beyond it the mass is below 1e-9).
  const double h = 0.01;
  double mass = 0;
  for (double x = -4 + h / 2; x < 4; x += h)
    for (double y = -4 + h / 2; y < 4; y += h) mass += std::exp(toy::eight_gaussians_log_density(x, y, stddev, radius)) * h * h;
  CHECK_THAT(mass, WithinAbs(1.0, 1e-6));
  // At a mode's centre: its peak / 8, plus its two neighbours (2 radius sin(pi/8) away); the
  // others are more than 2.8 away, below exp(-44) relative.
  const double peak = 1.0 / (8 * 2 * kPi * stddev * stddev), d = 2 * radius * std::sin(kPi / 8);
  CHECK_THAT(toy::eight_gaussians_log_density(radius, 0.0, stddev, radius),
             WithinAbs(std::log(peak * (1 + 2 * std::exp(-d * d / (2 * stddev * stddev)))), 1e-9));
  // Between two modes both contribute equally: twice one component's value there.
  const double mx = radius * (1 + std::cos(kPi / 4)) / 2, my = radius * std::sin(kPi / 4) / 2;
  const double half = (radius * radius) * ((1 - std::cos(kPi / 4)) * (1 - std::cos(kPi / 4)) + std::sin(kPi / 4) * std::sin(kPi / 4)) / 4;
  const double one = std::exp(-half / (2 * stddev * stddev)) / (8 * 2 * kPi * stddev * stddev);
  CHECK_THAT(toy::eight_gaussians_log_density(mx, my, stddev, radius), WithinRel(std::log(2 * one), 1e-6));
  CHECK_THROWS_AS(toy::eight_gaussians_log_density(0, 0, 0.0, radius), Error);
}

TEST_CASE("checkerboard: every point on a black cell", "[plugins][toy_data]") {
  Rng rng(4);
  const std::size_t n = 16000;
  std::vector<int> labels;
  const Tensor x = toy::checkerboard(n, rng, &labels);
  std::vector<int> seen_cell(8, -1);
  for (std::size_t i = 0; i < n; ++i) {
    const float a = x(i, 0), b = x(i, 1);
    CAPTURE(i, a, b);
    REQUIRE((a >= -4.0f && a < 4.0f && b >= -4.0f && b < 4.0f));
    const int cx = int(std::floor(a / 2.0f)), cy = int(std::floor(b / 2.0f));
    REQUIRE((cx + cy) % 2 == 0);
    // Each label names one cell.
    const int cell = (cx + 2) + 4 * (cy + 2);
    if (seen_cell[labels[i]] < 0) seen_cell[labels[i]] = cell;
    REQUIRE(seen_cell[labels[i]] == cell);
  }
  check_uniform_labels(labels, 8);
  CHECK(seen_cell[0] == 0);  // label 0 is the bottom-left cell [-4, -2)^2
}

TEST_CASE("pinwheel: arms, labels and zero-noise spiral", "[plugins][toy_data]") {
  Rng rng(5);
  std::vector<int> labels;
  const Tensor x = toy::pinwheel(10000, 0.3, 0.1, 5, 0.25, rng, &labels);
  check_uniform_labels(labels, 5);
  // Without noise each arm collapses to the point 2 (cos a, sin a), a = 2 pi k / 5 + 0.25 e.
  const Tensor p = toy::pinwheel(50, 0.0, 0.0, 5, 0.25, rng, &labels);
  for (std::size_t i = 0; i < 50; ++i) {
    const double a = 2 * kPi * labels[i] / 5.0 + 0.25 * std::exp(1.0);
    REQUIRE_THAT(double(p(i, 0)), WithinAbs(2 * std::cos(a), 1e-6));
    REQUIRE_THAT(double(p(i, 1)), WithinAbs(2 * std::sin(a), 1e-6));
  }
}

TEST_CASE("toy data sets reject invalid parameters", "[plugins][toy_data]") {
  Rng rng(0);
  REQUIRE_THROWS_AS(toy::moons(10, -0.1, rng), Error);
  REQUIRE_THROWS_AS(toy::circles(10, 0.1, 1.0, rng), Error);
  REQUIRE_THROWS_AS(toy::circles(10, 0.1, 0.0, rng), Error);
  REQUIRE_THROWS_AS(toy::swiss_roll(10, NAN, rng), Error);
  REQUIRE_THROWS_AS(toy::eight_gaussians(10, -1.0, 2.0, rng), Error);
  REQUIRE_THROWS_AS(toy::eight_gaussians(10, 0.1, 0.0, rng), Error);
  REQUIRE_THROWS_AS(toy::pinwheel(10, 0.3, 0.1, 0, 0.25, rng), Error);
  REQUIRE_THROWS_AS(toy::pinwheel(10, -0.3, 0.1, 5, 0.25, rng), Error);
}
